//! y = x · Wᵀ with W quantized on the GPU: upload (repack, split by rows), and planning.

use crate::gpu::{Capabilities, Constant, Context, Dispatch, GpuError, Kernel, PipelineKey};
use crate::quant::repack::{quant_words_per_row, scale_words};
use super::MatrixUpload;
use crate::quant::{Format, QuantMatrixRef};
use crate::tensor::ShapeError;
use crate::Error;

use super::GpuTensor;

/// Activation rows a matvec kernel handles in one pass (`MAX_ROWS` in matvec_io.wgsl); more
/// rows run as several passes, each reading the weights again.
pub const MATVEC_MAX_ROWS: usize = 8;
/// Up to this many rows, CPU adapters run matvec passes rather than the matmul: its 64-row
/// tiles cost the same for 9 rows as for 64, and their barriers are what a CPU pays most for.
/// lavapipe, 4096×4096 Q4_1: 16 rows in 2 passes ~100 ms against the matmul's 307 ms; 64 rows
/// in 8 passes ~400 ms against 319 ms (one row a subgroup).
pub const CPU_MATVEC_PASS_ROWS: usize = 32;
/// With four rows a subgroup, passes beat the matmul on lavapipe up to a whole 128-row prefill
/// chunk: 1.3-2.4× at 64 and 128 rows (576×1536) for every format except those whose matvec
/// span is a 32-weight sub-block (Q4_K, Q5_K, IQ4_XS: 0.53-0.6×), which keep
/// [`CPU_MATVEC_PASS_ROWS`].
pub const CPU_SUBGROUP_PASS_ROWS: usize = 128;
/// `TILE_M` and `TILE_N` of matmul.wgsl.
const MATMUL_TILE: u64 = 64;
/// Invocations per workgroup of the lane and subgroup matvec kernels.
const MATVEC_WORKGROUP: u32 = 64;

/// How a matrix-vector product reduces over K.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MatvecKernel {
    /// One invocation per output row, no communication (best on CPU adapters).
    Lane,
    /// One workgroup per output row with a reduction in workgroup memory (GPUs without subgroups,
    /// browsers).
    Workgroup,
    /// One subgroup per output row with `subgroupAdd` (tuned only: four rows measured faster).
    Subgroup,
    /// One subgroup per four output rows (the default wherever SUBGROUP exists): four sums in
    /// flight per lane, and each activation load serves all four rows.
    SubgroupRows,
    /// Q8_0, Q4_0 and Q4_1: quantizes the activations to int8 per block of 32 first (quantize_x.wgsl),
    /// then one invocation per output row sums `dot4I8Packed` products in i32 (matvec_dot4.wgsl).
    /// Approximate (activation rounding), so never a default; `qgpu tune` may pick it. Needs
    /// the WGSL language feature `packed_4x8_integer_dot_product`.
    IntegerDot,
}

/// Which kernel computes a linear layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum LinearKernel {
    /// A matvec variant at its default workgroup size.
    Matvec(MatvecKernel),
    /// A matvec variant at a chosen workgroup size (what `qgpu tune` picks between).
    MatvecVariant(MatvecVariant),
    Matmul,
}

impl LinearKernel {
    /// A short name: `matmul`, `matvec/subgroup`, `matvec/lane/wg128`.
    pub fn name(self) -> String {
        match self {
            LinearKernel::Matvec(v) => format!("matvec/{}", v.name()),
            LinearKernel::MatvecVariant(v) => format!("matvec/{}", v.name()),
            LinearKernel::Matmul => "matmul".into(),
        }
    }
}

/// A matvec kernel, its workgroup size, and how many weights an invocation takes a step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MatvecVariant {
    pub kernel: MatvecKernel,
    /// Invocations per workgroup. The workgroup kernel's reduction is sized for 64, so it only
    /// takes 64; the lane and subgroup kernels take any power of two the device allows.
    pub workgroup: u32,
    /// Weights of a row an invocation takes per loop step (the `SPAN` constant × 8): 8, 16 or
    /// 32, the vector width of the inner loop. K must be a multiple of it. The K-quants always
    /// take a whole sub-block, and the integer-dot kernel 32, so for them it stays 8.
    pub step: u32,
}

/// Workgroup sizes `qgpu tune` tries for the lane and subgroup kernels.
pub const MATVEC_WORKGROUPS: [u32; 4] = [32, 64, 128, 256];
/// Steps (weights an invocation takes per loop iteration) `qgpu tune` tries.
pub const MATVEC_STEPS: [u32; 3] = [8, 16, 32];

impl MatvecVariant {
    /// A kernel at a workgroup size, 8 weights a step.
    pub const fn new(kernel: MatvecKernel, workgroup: u32) -> Self {
        MatvecVariant { kernel, workgroup, step: 8 }
    }

    /// `lane/wg128`, `subgroup/wg64/w32`, ... (the step only when it is not 8); parsed back
    /// by [`MatvecVariant::from_name`].
    pub fn name(self) -> String {
        match self.step {
            8 => format!("{}/wg{}", self.kernel.name(), self.workgroup),
            step => format!("{}/wg{}/w{step}", self.kernel.name(), self.workgroup),
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        let (kernel, rest) = name.split_once("/wg")?;
        let kernel = MatvecKernel::ALL.into_iter().find(|k| k.name() == kernel)?;
        let (wg, step) = match rest.split_once("/w") {
            Some((wg, step)) => (wg, step.parse().ok()?),
            None => (rest, 8),
        };
        let v = MatvecVariant { kernel, workgroup: wg.parse().ok()?, step };
        v.well_formed().then_some(v)
    }

    /// A workgroup size and step this kernel's shader accepts (independent of the device).
    fn well_formed(self) -> bool {
        let workgroup = match self.kernel {
            MatvecKernel::Workgroup => self.workgroup == MATVEC_WORKGROUP,
            MatvecKernel::Lane | MatvecKernel::Subgroup | MatvecKernel::SubgroupRows | MatvecKernel::IntegerDot => MATVEC_WORKGROUPS.contains(&self.workgroup),
        };
        let step = match self.kernel {
            MatvecKernel::IntegerDot => self.step == 8,
            _ => MATVEC_STEPS.contains(&self.step),
        };
        workgroup && step
    }

    /// Whether it can multiply `format` weights with rows of `k` values.
    pub fn handles(self, format: Format, k: usize) -> bool {
        self.kernel.handles(format) && self.step_applies(format) && k.is_multiple_of(self.step as usize)
    }

    /// Whether the step means anything for `format`: the K-quants take a sub-block a step
    /// whatever it says, so for them only 8 is a distinct variant.
    fn step_applies(self, format: Format) -> bool {
        self.step == 8 || format.k_multiple() < 256
    }

    /// Whether the device can run it: the kernel's feature, the invocation limit, and for
    /// subgroups a workgroup of at least one whole subgroup.
    pub fn supported(self, ctx: &Context) -> bool {
        let caps = ctx.capabilities();
        self.well_formed()
            && self.kernel.supported(caps)
            && self.workgroup <= ctx.limits().max_compute_invocations_per_workgroup
            && (!self.kernel.uses_subgroups() || self.workgroup >= caps.subgroup_max_size)
    }

    /// Every variant the device can run on `format` weights, the candidates of `qgpu tune`.
    pub fn candidates(ctx: &Context, format: Format) -> Vec<Self> {
        let mut all = Vec::new();
        for step in MATVEC_STEPS {
            all.push(MatvecVariant { kernel: MatvecKernel::Workgroup, workgroup: MATVEC_WORKGROUP, step });
            for kernel in [MatvecKernel::Lane, MatvecKernel::Subgroup, MatvecKernel::SubgroupRows, MatvecKernel::IntegerDot] {
                all.extend(MATVEC_WORKGROUPS.iter().map(|&workgroup| MatvecVariant { kernel, workgroup, step }));
            }
        }
        all.retain(|v| v.supported(ctx) && v.kernel.handles(format) && v.step_applies(format));
        all
    }
}

impl MatvecKernel {
    pub const ALL: [MatvecKernel; 5] = [MatvecKernel::Lane, MatvecKernel::Workgroup, MatvecKernel::Subgroup, MatvecKernel::SubgroupRows, MatvecKernel::IntegerDot];

    /// The variant qgpu uses by default on a device with `caps`. With subgroups, four rows a
    /// subgroup: more sums in flight, each activation load serving four rows. On lavapipe it
    /// measured 1.7x one row a subgroup at one activation row and 2.6x at 2-32 (docs/benchmarks.md,
    /// "Four rows a subgroup"); untimed on real GPUs so far. Without subgroups, CPU adapters avoid
    /// barriers (lane) and GPUs reduce in workgroup memory.
    pub fn preferred(caps: Capabilities) -> Self {
        if caps.subgroups {
            MatvecKernel::SubgroupRows
        } else if caps.cpu_device {
            MatvecKernel::Lane
        } else {
            MatvecKernel::Workgroup
        }
    }

    /// Whether the device can run this variant.
    pub fn supported(self, caps: Capabilities) -> bool {
        match self {
            MatvecKernel::Subgroup | MatvecKernel::SubgroupRows => caps.subgroups,
            MatvecKernel::IntegerDot => caps.integer_dot,
            MatvecKernel::Lane | MatvecKernel::Workgroup => true,
        }
    }

    /// Whether it reduces with subgroup operations (so needs a workgroup of whole subgroups).
    pub fn uses_subgroups(self) -> bool {
        matches!(self, MatvecKernel::Subgroup | MatvecKernel::SubgroupRows)
    }

    /// Whether this variant takes `format` weights.
    pub fn handles(self, format: Format) -> bool {
        self != MatvecKernel::IntegerDot || matches!(format, Format::Q8_0 | Format::Q4_0 | Format::Q4_1)
    }

    /// Whether it rounds the activations (so it matches the f64 oracle only to int8 precision).
    pub fn quantizes_activations(self) -> bool {
        self == MatvecKernel::IntegerDot
    }

    pub fn name(self) -> &'static str {
        match self {
            MatvecKernel::Lane => "lane",
            MatvecKernel::Workgroup => "workgroup",
            MatvecKernel::Subgroup => "subgroup",
            MatvecKernel::SubgroupRows => "subgroup4",
            MatvecKernel::IntegerDot => "dot4",
        }
    }

    /// The shader file and entry point, for errors.
    fn shader(self) -> (&'static str, &'static str) {
        match self {
            MatvecKernel::Lane => ("matvec.wgsl", "matvec_lane"),
            MatvecKernel::Workgroup => ("matvec.wgsl", "matvec_workgroup"),
            MatvecKernel::Subgroup => ("matvec_subgroup.wgsl", "matvec_subgroup"),
            MatvecKernel::SubgroupRows => ("matvec_subgroup.wgsl", "matvec_subgroup_rows"),
            MatvecKernel::IntegerDot => ("matvec_dot4.wgsl", "matvec_dot4"),
        }
    }
}

/// Rows `row_start..row_start + rows` of a matrix, in buffers that each fit one binding.
pub(crate) struct Chunk {
    pub(crate) row_start: usize,
    pub(crate) rows: usize,
    pub(crate) quants: wgpu::Buffer,
    pub(crate) scales: wgpu::Buffer,
}

/// A weight matrix on the GPU, still quantized: `rows` outputs (N) of `cols` inputs (K).
pub struct GpuMatrix {
    format: Format,
    rows: usize,
    cols: usize,
    bytes: u64,
    chunks: Vec<Chunk>,
}

impl GpuMatrix {
    /// Repacks `w` into the GPU layout and uploads it, split by rows into as many buffers as
    /// the adapter's binding limit needs.
    pub fn upload(ctx: &Context, w: QuantMatrixRef<'_>) -> Result<Self, Error> {
        let mut upload = MatrixUpload::new(ctx, w.format(), w.rows(), w.cols())?;
        upload.push(ctx, w.data())?;
        upload.finish()
    }

    pub(crate) fn from_chunks(format: Format, rows: usize, cols: usize, bytes: u64, chunks: Vec<Chunk>) -> Self {
        Self { format, rows, cols, bytes, chunks }
    }

    /// The matrices stacked by rows into one (Q, K and V as one Q|K|V matrix), copied on the
    /// GPU, so one dispatch computes them all ([`plan_linear_parts`] writes each part's
    /// outputs where it belongs). Only where they share format and K, each is one buffer,
    /// every part but the last has a multiple of four rows (so its scales end on a whole
    /// word), and the stack fits one binding; otherwise the matrices come back unchanged.
    pub fn stack_rows(ctx: &Context, parts: Vec<GpuMatrix>) -> Result<Result<GpuMatrix, Vec<GpuMatrix>>, Error> {
        let Some(head) = parts.first() else { return Ok(Err(parts)) };
        let (format, k) = (head.format, head.cols);
        let rows: usize = parts.iter().map(|p| p.rows).sum();
        let stackable = parts.len() > 1
            && parts.iter().all(|p| p.format == format && p.cols == k && p.chunks.len() == 1)
            && parts[..parts.len() - 1].iter().all(|p| p.rows.is_multiple_of(4));
        let quant_bytes = |rows: usize| (rows * quant_words_per_row(format, k) * 4) as u64;
        let scale_bytes = |rows: usize| (scale_words(format, rows, k) * 4) as u64;
        if !stackable || quant_bytes(rows).max(scale_bytes(rows)) > ctx.max_binding_size() {
            return Ok(Err(parts));
        }
        let quants = ctx.zeroed_buffer("weight quants", quant_bytes(rows))?;
        let scales = ctx.zeroed_buffer("weight scales", scale_bytes(rows))?;
        let mut copies = Vec::with_capacity(2 * parts.len());
        let mut before = 0;
        for p in &parts {
            let chunk = &p.chunks[0];
            copies.push((&chunk.quants, quant_bytes(p.rows), &quants, quant_bytes(before)));
            copies.push((&chunk.scales, scale_bytes(p.rows), &scales, scale_bytes(before)));
            before += p.rows;
        }
        ctx.copy_into(&copies)?;
        let bytes = parts.iter().map(|p| p.bytes).sum();
        Ok(Ok(GpuMatrix { format, rows, cols: k, bytes, chunks: vec![Chunk { row_start: 0, rows, quants, scales }] }))
    }

    /// The larger of one row's quant and scale bytes: the smallest binding a matrix of rows of
    /// `k` values can be split into. A row larger than the adapter's binding limit cannot be
    /// uploaded at all.
    pub fn row_binding_bytes(format: Format, k: usize) -> u64 {
        let quant_row = (quant_words_per_row(format, k) * 4) as u64;
        let scale_row = (scale_words(format, 2, k) * 2) as u64; // per row, rounded up
        quant_row.max(scale_row)
    }

    pub fn format(&self) -> Format {
        self.format
    }
    /// N: output features.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// K: input features.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Bytes of quants and scales held on the GPU.
    pub fn gpu_bytes(&self) -> u64 {
        self.bytes
    }
    pub(crate) fn chunks(&self) -> &[Chunk] {
        &self.chunks
    }
    /// How many buffers the matrix was split into.
    pub fn chunk_count(&self) -> usize {
        self.chunks.len()
    }
}

/// Planned dispatches of one linear layer for fixed x and y buffers; replay with
/// [`Context::run`]. Holds its uniform buffers.
pub struct LinearPlan {
    pub dispatches: Vec<Dispatch>,
    pub kernel: LinearKernel,
}

/// The most activation rows a CPU adapter gives the matvec (in passes) for `format` weights;
/// more take the matmul.
pub fn cpu_matvec_rows(caps: Capabilities, format: Format) -> usize {
    // The formats matvec_io.wgsl's span_groups() gives four groups of 8: their four-row spans
    // unroll into more sums than lavapipe keeps in registers at 8 activation rows.
    let sub_block_span = matches!(format, Format::Q4_K | Format::Q5_K | Format::IQ4_XS);
    if caps.subgroups && !sub_block_span {
        CPU_SUBGROUP_PASS_ROWS
    } else {
        CPU_MATVEC_PASS_ROWS
    }
}

/// The kernel qgpu picks for `m` activation rows of `format` weights on this device.
pub fn default_kernel(ctx: &Context, m: usize, format: Format) -> LinearKernel {
    let caps = ctx.capabilities();
    if m <= MATVEC_MAX_ROWS || (caps.cpu_device && m <= cpu_matvec_rows(caps, format)) {
        LinearKernel::Matvec(MatvecKernel::preferred(caps))
    } else {
        LinearKernel::Matmul
    }
}

/// Checks shapes and plans y = x · Wᵀ. `kernel` defaults to [`default_kernel`].
pub async fn plan_linear(ctx: &Context, w: &GpuMatrix, x: &GpuTensor, y: &GpuTensor, kernel: Option<LinearKernel>) -> Result<LinearPlan, Error> {
    if y.rows() != x.rows() {
        return Err(ShapeError::Mismatch { op: "linear", what: "y rows (M)", expected: x.rows(), actual: y.rows() }.into());
    }
    if y.cols() != w.rows {
        return Err(ShapeError::Mismatch { op: "linear", what: "y columns (N)", expected: w.rows, actual: y.cols() }.into());
    }
    plan_linear_parts(ctx, w, x, y, &[y.cols()], 0, kernel).await
}

/// Plans x · Wᵀ into features `first..first + N` of `block`, a tensor of planar parts of
/// `widths` (at most three; [`GpuTensor::planar_parts`]): the rows of a fused projection
/// (Q|K|V, gate|up) land in the parts they belong to, for the first `x.rows()` rows of each.
/// Several matrices may fill one block, each its own features.
pub async fn plan_linear_parts(
    ctx: &Context,
    w: &GpuMatrix,
    x: &GpuTensor,
    block: &GpuTensor,
    widths: &[usize],
    first: usize,
    kernel: Option<LinearKernel>,
) -> Result<LinearPlan, Error> {
    const OP: &str = "linear";
    let m = x.rows();
    if x.cols() != w.cols {
        return Err(ShapeError::Mismatch { op: OP, what: "x columns (K)", expected: w.cols, actual: x.cols() }.into());
    }
    if m > block.rows() {
        return Err(ShapeError::TooLarge { op: OP, what: "x rows (M) for the output block", actual: m, max: block.rows() }.into());
    }
    let n_total: usize = widths.iter().sum();
    if widths.is_empty() || widths.len() > 3 || n_total != block.cols() {
        return Err(ShapeError::Mismatch { op: OP, what: "sum of the output parts' widths", expected: block.cols(), actual: n_total }.into());
    }
    if first.checked_add(w.rows).is_none_or(|end| end > n_total) {
        return Err(ShapeError::TooLarge { op: OP, what: "output features (first + N)", actual: first.saturating_add(w.rows), max: n_total }.into());
    }
    ctx.check_binding("activations x", x.bytes())?;
    ctx.check_binding("output y", block.bytes())?;
    // Part boundaries; with one part both are N and the output is plain row-major.
    let part1 = widths.get(1).map_or(n_total, |_| widths[0]);
    let part2 = widths.get(2).map_or(n_total, |_| widths[0] + widths[1]);
    let parts = [part1 as u32, part2 as u32, block.rows() as u32];
    // Bytes of y up to the last element a chunk's kernel writes for `rows` activation rows
    // (row r, feature j at r * N + j): with parts, the block whole.
    let y_reach = |rows: usize, chunk: &Chunk| match widths.len() {
        1 => ((rows.saturating_sub(1) * n_total + first + chunk.row_start + chunk.rows) * 4) as u64,
        _ => block.bytes(),
    };
    let kernel = kernel.unwrap_or_else(|| default_kernel(ctx, m, w.format));
    let matvec = match kernel {
        LinearKernel::Matvec(kernel) => Some(MatvecVariant::new(kernel, default_workgroup(ctx.capabilities(), kernel))),
        LinearKernel::MatvecVariant(v) => Some(v),
        LinearKernel::Matmul => None,
    };
    let format = Constant { name: "FORMAT", value: w.format.shader_code() };
    let mut dispatches = Vec::with_capacity(w.chunks.len() + 1);
    // The integer-dot kernel reads int8 activations that a first dispatch writes.
    let mut activations = x.bind();
    let scratch;
    if let Some(variant) = matvec.filter(|v| v.kernel == MatvecKernel::IntegerDot) {
        let (shader, entry) = variant.kernel.shader();
        if !variant.kernel.handles(w.format) {
            return Err(GpuError::Shader { shader, entry, message: format!("does not take {} weights", w.format) }.into());
        }
        if !variant.kernel.supported(ctx.capabilities()) {
            return Err(GpuError::Shader { shader, entry, message: "the WGSL language feature packed_4x8_integer_dot_product is missing".into() }.into());
        }
        if m > MATVEC_MAX_ROWS {
            return Err(ShapeError::TooLarge { op: OP, what: "integer-dot matvec rows (M)", actual: m, max: MATVEC_MAX_ROWS }.into());
        }
        let (plan, buffer) = plan_quantize_activations(ctx, x).await?;
        dispatches.push(plan);
        scratch = buffer;
        activations = (&scratch).into();
    }
    for chunk in &w.chunks {
        let passes = match matvec {
            Some(variant) => {
                let (shader, entry) = variant.kernel.shader();
                if !variant.kernel.supported(ctx.capabilities()) {
                    return Err(GpuError::Shader { shader, entry, message: "the device lacks the feature this kernel needs".into() }.into());
                }
                if !variant.kernel.handles(w.format) {
                    return Err(GpuError::Shader { shader, entry, message: format!("does not take {} weights", w.format) }.into());
                }
                if !variant.supported(ctx) {
                    return Err(GpuError::Shader { shader, entry, message: format!("workgroup size {} is not one this kernel runs with on this device", variant.workgroup) }.into());
                }
                if !variant.handles(w.format, w.cols) {
                    return Err(ShapeError::NotMultiple { op: OP, what: "K (the variant's step)", actual: w.cols, multiple: variant.step as usize }.into());
                }
                let (entry, workgroup, rows_per_group) = matvec_geometry(ctx.capabilities(), variant);
                let groups = ctx.workgroup_grid("matvec", (chunk.rows as u64).div_ceil(rows_per_group))?;
                // Passes of at most MATVEC_MAX_ROWS rows (the integer-dot kernel has one).
                let mut passes = Vec::with_capacity(m.div_ceil(MATVEC_MAX_ROWS));
                for m0 in (0..m).step_by(MATVEC_MAX_ROWS) {
                    let rows = (m - m0).min(MATVEC_MAX_ROWS) as u32;
                    let mut constants = vec![format, Constant { name: "ROWS", value: rows }, Constant { name: "WORKGROUP", value: workgroup }];
                    let mut params = vec![chunk.rows as u32, w.cols as u32, n_total as u32, (first + chunk.row_start) as u32];
                    // The integer-dot module has neither SPAN (it takes 32 weights a step) nor
                    // m0 (it runs one pass).
                    if variant.kernel != MatvecKernel::IntegerDot {
                        constants.push(Constant { name: "SPAN", value: variant.step / 8 });
                        params.push(m0 as u32);
                        params.extend(parts);
                    } else {
                        params.extend(parts);
                        params.push(0);
                    }
                    // The integer-dot kernel reads the quantized rows (K/4 words of quants, K/32
                    // scales and K/32 sums each), the others rows of K floats; both write rows of y.
                    let x_row = if variant.kernel == MatvecKernel::IntegerDot { quantized_row_bytes(w.cols) } else { w.cols as u64 * 4 };
                    let reach = m0 + rows as usize;
                    passes.push((PipelineKey { kernel: entry, constants }, params, groups, [x_row * reach as u64, y_reach(reach, chunk)]));
                }
                passes
            }
            None => {
                let key = PipelineKey { kernel: Kernel::Matmul, constants: vec![format] };
                let params = [m as u32, chunk.rows as u32, w.cols as u32, n_total as u32, (first + chunk.row_start) as u32, parts[0], parts[1], parts[2]];
                let gx = (chunk.rows as u64).div_ceil(MATMUL_TILE);
                let gy = (m as u64).div_ceil(MATMUL_TILE);
                let limit = ctx.limits().max_compute_workgroups_per_dimension;
                if gx > limit as u64 || gy > limit as u64 {
                    return Err(GpuError::TooManyWorkgroups { what: "matmul", workgroups: gx.max(gy), limit }.into());
                }
                vec![(key, params.to_vec(), [gx as u32, gy as u32, 1], [(m * w.cols * 4) as u64, y_reach(m, chunk)])]
            }
        };
        // What the kernel indexes in the weights: the chunk's rows, whole.
        let quants = (chunk.rows * quant_words_per_row(w.format, w.cols) * 4) as u64;
        let scales = (scale_words(w.format, chunk.rows, w.cols) * 4) as u64;
        for (key, params, workgroups, [x_bytes, y_bytes]) in passes {
            let pipeline = ctx.pipeline(&key).await?;
            let uniform = ctx.uniform_buffer("linear params", bytemuck::cast_slice(&params));
            let bindings = [((&chunk.quants).into(), quants), ((&chunk.scales).into(), scales), (activations, x_bytes), (block.bind(), y_bytes), ((&uniform).into(), (params.len() * 4) as u64)];
            dispatches.push(ctx.dispatch_bounded(pipeline, &bindings, workgroups)?);
        }
    }
    Ok(LinearPlan { dispatches, kernel })
}

/// The workgroup size a matvec kernel runs with when nothing was tuned.
fn default_workgroup(caps: Capabilities, kernel: MatvecKernel) -> u32 {
    match kernel {
        MatvecKernel::Lane | MatvecKernel::Workgroup | MatvecKernel::IntegerDot => MATVEC_WORKGROUP,
        // At least one whole subgroup of the largest size the device may pick.
        MatvecKernel::Subgroup | MatvecKernel::SubgroupRows => MATVEC_WORKGROUP.max(caps.subgroup_max_size.clamp(1, 128)),
    }
}

/// Entry point, workgroup size and output rows per workgroup of a matvec variant.
fn matvec_geometry(caps: Capabilities, variant: MatvecVariant) -> (Kernel, u32, u64) {
    let workgroup = variant.workgroup;
    match variant.kernel {
        MatvecKernel::Lane => (Kernel::MatvecLane, workgroup, workgroup as u64),
        MatvecKernel::IntegerDot => (Kernel::MatvecDot4, workgroup, workgroup as u64),
        MatvecKernel::Workgroup => (Kernel::MatvecWorkgroup, MATVEC_WORKGROUP, 1),
        MatvecKernel::Subgroup | MatvecKernel::SubgroupRows => {
            // Size the dispatch for the largest subgroup the device may pick.
            let subgroups = (workgroup / caps.subgroup_max_size.clamp(1, 128)).max(1) as u64;
            match variant.kernel {
                MatvecKernel::Subgroup => (Kernel::MatvecSubgroup, workgroup, subgroups),
                _ => (Kernel::MatvecSubgroupRows, workgroup, subgroups * 4),
            }
        }
    }
}

/// Bytes of one activation row quantized by quantize_x.wgsl: K/4 words of packed int8, then
/// K/32 f32 scales and K/32 i32 sums of quants.
fn quantized_row_bytes(k: usize) -> u64 {
    ((k / 4 + k / 16) * 4) as u64
}

/// Invocations per workgroup of quantize_x.wgsl (one per block of 32 activations).
const QUANTIZE_WORKGROUP: u32 = 64;

/// The dispatch that quantizes every row of `x` to int8 per block of 32, and the buffer it
/// writes: per row, K/4 words of packed quants, K/32 f32 scales and K/32 i32 sums (quantize_x.wgsl).
async fn plan_quantize_activations(ctx: &Context, x: &GpuTensor) -> Result<(Dispatch, wgpu::Buffer), Error> {
    let (m, k) = (x.rows(), x.cols());
    if !k.is_multiple_of(32) {
        return Err(ShapeError::NotMultiple { op: "quantize activations", what: "K", actual: k, multiple: 32 }.into());
    }
    let bytes = quantized_row_bytes(k).checked_mul(m as u64).ok_or(GpuError::BindingTooLarge { what: "int8 activations", bytes: u64::MAX, limit: ctx.max_binding_size() })?;
    ctx.check_binding("int8 activations", bytes)?;
    let buffer = ctx.zeroed_buffer("int8 activations", bytes)?;
    let key = PipelineKey { kernel: Kernel::QuantizeX, constants: vec![Constant { name: "WORKGROUP", value: QUANTIZE_WORKGROUP }] };
    let pipeline = ctx.pipeline(&key).await?;
    let params = [m as u32, k as u32];
    let uniform = ctx.uniform_buffer("quantize params", bytemuck::cast_slice(&params));
    let groups = ctx.workgroup_grid("quantize activations", ((m * k / 32) as u64).div_ceil(QUANTIZE_WORKGROUP as u64))?;
    let dispatch = ctx.dispatch_bounded(pipeline, &[(x.bind(), (m * k * 4) as u64), ((&buffer).into(), bytes), ((&uniform).into(), 8)], groups)?;
    Ok((dispatch, buffer))
}

/// Plans and runs y = x · Wᵀ once.
pub async fn linear(ctx: &Context, w: &GpuMatrix, x: &GpuTensor, y: &GpuTensor, kernel: Option<LinearKernel>) -> Result<(), Error> {
    let plan = plan_linear(ctx, w, x, y, kernel).await?;
    let refs: Vec<&Dispatch> = plan.dispatches.iter().collect();
    ctx.run(&refs).await?;
    Ok(())
}
