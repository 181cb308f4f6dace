//! The WGSL sources, embedded at build time. Each module is the concatenation of whole files,
//! each of which is valid WGSL (helpers declare only functions, constants and bindings).

/// A shader module: one or more files from `shaders/`, concatenated in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ShaderModuleId {
    Matvec,
    MatvecSubgroup,
    Matmul,
    Copy,
    Embed,
    Norm,
    Rope,
    KvStore,
    FlashAttention,
    FlashCombine,
    Elementwise,
    Unary,
    LayerNorm,
    Bias,
    EncoderAttention,
    Pool,
    LogitMetrics,
    FmaProbe,
    QuantizeX,
    MatvecDot4,
}

const WEIGHTS: &str = include_str!("../../shaders/weights.wgsl");
const WEIGHTS_SUPER: &str = include_str!("../../shaders/weights_super.wgsl");
const MATVEC_IO: &str = include_str!("../../shaders/matvec_io.wgsl");
const REDUCE: &str = include_str!("../../shaders/reduce.wgsl");
const OUTPUT_PARTS: &str = include_str!("../../shaders/output_parts.wgsl");

impl ShaderModuleId {
    pub const ALL: [ShaderModuleId; 20] = [
        ShaderModuleId::Matvec,
        ShaderModuleId::MatvecSubgroup,
        ShaderModuleId::Matmul,
        ShaderModuleId::Copy,
        ShaderModuleId::Embed,
        ShaderModuleId::Norm,
        ShaderModuleId::Rope,
        ShaderModuleId::KvStore,
        ShaderModuleId::FlashAttention,
        ShaderModuleId::FlashCombine,
        ShaderModuleId::Elementwise,
        ShaderModuleId::Unary,
        ShaderModuleId::LayerNorm,
        ShaderModuleId::Bias,
        ShaderModuleId::EncoderAttention,
        ShaderModuleId::Pool,
        ShaderModuleId::LogitMetrics,
        ShaderModuleId::FmaProbe,
        ShaderModuleId::QuantizeX,
        ShaderModuleId::MatvecDot4,
    ];

    /// The source files, in concatenation order.
    pub fn files(self) -> &'static [&'static str] {
        match self {
            ShaderModuleId::Matvec => &[WEIGHTS, WEIGHTS_SUPER, OUTPUT_PARTS, MATVEC_IO, include_str!("../../shaders/matvec.wgsl")],
            ShaderModuleId::MatvecSubgroup => &[WEIGHTS, WEIGHTS_SUPER, OUTPUT_PARTS, MATVEC_IO, include_str!("../../shaders/matvec_subgroup.wgsl")],
            ShaderModuleId::Matmul => &[WEIGHTS, WEIGHTS_SUPER, OUTPUT_PARTS, include_str!("../../shaders/matmul.wgsl")],
            ShaderModuleId::Copy => &[include_str!("../../shaders/copy.wgsl")],
            ShaderModuleId::Embed => &[WEIGHTS, WEIGHTS_SUPER, include_str!("../../shaders/embed.wgsl")],
            ShaderModuleId::Norm => &[REDUCE, include_str!("../../shaders/norm.wgsl")],
            ShaderModuleId::Rope => &[include_str!("../../shaders/rope.wgsl")],
            ShaderModuleId::KvStore => &[include_str!("../../shaders/kv_store.wgsl")],
            ShaderModuleId::FlashAttention => &[include_str!("../../shaders/flash_attention.wgsl")],
            ShaderModuleId::FlashCombine => &[include_str!("../../shaders/flash_combine.wgsl")],
            ShaderModuleId::Elementwise => &[include_str!("../../shaders/elementwise.wgsl")],
            ShaderModuleId::Unary => &[include_str!("../../shaders/unary.wgsl")],
            ShaderModuleId::LayerNorm => &[REDUCE, include_str!("../../shaders/layer_norm.wgsl")],
            ShaderModuleId::Bias => &[include_str!("../../shaders/bias.wgsl")],
            ShaderModuleId::EncoderAttention => &[include_str!("../../shaders/encoder_attention.wgsl")],
            ShaderModuleId::Pool => &[REDUCE, include_str!("../../shaders/pool.wgsl")],
            ShaderModuleId::LogitMetrics => &[REDUCE, include_str!("../../shaders/logit_metrics.wgsl")],
            ShaderModuleId::FmaProbe => &[include_str!("../../shaders/fma.wgsl")],
            ShaderModuleId::QuantizeX => &[include_str!("../../shaders/quantize_x.wgsl")],
            ShaderModuleId::MatvecDot4 => &[WEIGHTS, OUTPUT_PARTS, include_str!("../../shaders/matvec_dot4.wgsl")],
        }
    }

    /// The module's source, files joined by newlines.
    pub fn source(self) -> String {
        self.files().join("\n")
    }

    pub fn name(self) -> &'static str {
        match self {
            ShaderModuleId::Matvec => "matvec.wgsl",
            ShaderModuleId::MatvecSubgroup => "matvec_subgroup.wgsl",
            ShaderModuleId::Matmul => "matmul.wgsl",
            ShaderModuleId::Copy => "copy.wgsl",
            ShaderModuleId::Embed => "embed.wgsl",
            ShaderModuleId::Norm => "norm.wgsl",
            ShaderModuleId::Rope => "rope.wgsl",
            ShaderModuleId::KvStore => "kv_store.wgsl",
            ShaderModuleId::FlashAttention => "flash_attention.wgsl",
            ShaderModuleId::FlashCombine => "flash_combine.wgsl",
            ShaderModuleId::Elementwise => "elementwise.wgsl",
            ShaderModuleId::Unary => "unary.wgsl",
            ShaderModuleId::LayerNorm => "layer_norm.wgsl",
            ShaderModuleId::Bias => "bias.wgsl",
            ShaderModuleId::EncoderAttention => "encoder_attention.wgsl",
            ShaderModuleId::Pool => "pool.wgsl",
            ShaderModuleId::LogitMetrics => "logit_metrics.wgsl",
            ShaderModuleId::FmaProbe => "fma.wgsl",
            ShaderModuleId::QuantizeX => "quantize_x.wgsl",
            ShaderModuleId::MatvecDot4 => "matvec_dot4.wgsl",
        }
    }

    /// Whether every buffer index the module's kernels compute is bounded by values the host
    /// checks against the bound buffers' sizes before each dispatch ([`Context::dispatch_bounded`](super::Context::dispatch_bounded)),
    /// so the module may be built without wgpu's runtime checks ([`ShaderChecks`](super::ShaderChecks)).
    /// The linear-layer kernels, which are where decode spends its time: their rows, K and
    /// output offsets are uniforms the planner wrote. Kernels indexed by data (token ids,
    /// positions) stay checked.
    pub fn host_bounded(self) -> bool {
        matches!(self, ShaderModuleId::Matvec | ShaderModuleId::MatvecSubgroup | ShaderModuleId::Matmul | ShaderModuleId::MatvecDot4 | ShaderModuleId::QuantizeX)
    }

    /// Whether the module needs `wgpu::Features::SUBGROUP` to compile.
    pub fn needs_subgroups(self) -> bool {
        matches!(self, ShaderModuleId::MatvecSubgroup)
    }

    /// Whether the module needs the WGSL language feature `packed_4x8_integer_dot_product`
    /// (`Capabilities::integer_dot`).
    pub fn needs_integer_dot(self) -> bool {
        matches!(self, ShaderModuleId::QuantizeX | ShaderModuleId::MatvecDot4)
    }
}

/// How a kernel binds one resource; a kernel's bindings are numbered in slice order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Binding {
    ReadOnly,
    ReadWrite,
    Uniform,
}

/// A compute entry point: its module, its name and its bind-group layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Kernel {
    MatvecLane,
    MatvecWorkgroup,
    MatvecSubgroup,
    MatvecSubgroupRows,
    Matmul,
    Copy,
    Embed,
    RmsNorm,
    Rope,
    KvStore,
    FlashSplit,
    FlashCombine,
    Add,
    SiluMul,
    GeluTanhMul,
    Scale,
    Softcap,
    AddLayerNorm,
    AddBias,
    AddBiasGelu,
    EncoderAttention,
    MeanPoolNormalize,
    LogitMetrics,
    FmaProbe,
    QuantizeX,
    MatvecDot4,
}

impl Kernel {
    pub const ALL: [Kernel; 26] = [
        Kernel::MatvecLane,
        Kernel::MatvecWorkgroup,
        Kernel::MatvecSubgroup,
        Kernel::MatvecSubgroupRows,
        Kernel::Matmul,
        Kernel::Copy,
        Kernel::Embed,
        Kernel::RmsNorm,
        Kernel::Rope,
        Kernel::KvStore,
        Kernel::FlashSplit,
        Kernel::FlashCombine,
        Kernel::Add,
        Kernel::SiluMul,
        Kernel::GeluTanhMul,
        Kernel::Scale,
        Kernel::Softcap,
        Kernel::AddLayerNorm,
        Kernel::AddBias,
        Kernel::AddBiasGelu,
        Kernel::EncoderAttention,
        Kernel::MeanPoolNormalize,
        Kernel::LogitMetrics,
        Kernel::FmaProbe,
        Kernel::QuantizeX,
        Kernel::MatvecDot4,
    ];
}

use Binding::{ReadOnly as R, ReadWrite as W, Uniform as U};

/// weights.wgsl bindings 0-1, then x, y, params.
const LINEAR_BINDINGS: &[Binding] = &[R, R, R, W, U];

impl Kernel {
    pub fn module(self) -> ShaderModuleId {
        match self {
            Kernel::MatvecLane | Kernel::MatvecWorkgroup => ShaderModuleId::Matvec,
            Kernel::MatvecSubgroup | Kernel::MatvecSubgroupRows => ShaderModuleId::MatvecSubgroup,
            Kernel::Matmul => ShaderModuleId::Matmul,
            Kernel::Copy => ShaderModuleId::Copy,
            Kernel::Embed => ShaderModuleId::Embed,
            Kernel::RmsNorm => ShaderModuleId::Norm,
            Kernel::Rope => ShaderModuleId::Rope,
            Kernel::KvStore => ShaderModuleId::KvStore,
            Kernel::FlashSplit => ShaderModuleId::FlashAttention,
            Kernel::FlashCombine => ShaderModuleId::FlashCombine,
            Kernel::Add | Kernel::SiluMul | Kernel::GeluTanhMul => ShaderModuleId::Elementwise,
            Kernel::Scale | Kernel::Softcap => ShaderModuleId::Unary,
            Kernel::AddLayerNorm => ShaderModuleId::LayerNorm,
            Kernel::AddBias | Kernel::AddBiasGelu => ShaderModuleId::Bias,
            Kernel::EncoderAttention => ShaderModuleId::EncoderAttention,
            Kernel::MeanPoolNormalize => ShaderModuleId::Pool,
            Kernel::LogitMetrics => ShaderModuleId::LogitMetrics,
            Kernel::FmaProbe => ShaderModuleId::FmaProbe,
            Kernel::QuantizeX => ShaderModuleId::QuantizeX,
            Kernel::MatvecDot4 => ShaderModuleId::MatvecDot4,
        }
    }

    pub fn entry(self) -> &'static str {
        match self {
            Kernel::MatvecLane => "matvec_lane",
            Kernel::MatvecWorkgroup => "matvec_workgroup",
            Kernel::MatvecSubgroup => "matvec_subgroup",
            Kernel::MatvecSubgroupRows => "matvec_subgroup_rows",
            Kernel::Matmul => "matmul",
            Kernel::Copy => "copy",
            Kernel::Embed => "embed",
            Kernel::RmsNorm => "rms_norm",
            Kernel::Rope => "rope",
            Kernel::KvStore => "kv_store",
            Kernel::FlashSplit => "flash_split",
            Kernel::FlashCombine => "flash_combine",
            Kernel::Add => "add",
            Kernel::SiluMul => "silu_mul",
            Kernel::GeluTanhMul => "gelu_tanh_mul",
            Kernel::Scale => "scale",
            Kernel::Softcap => "softcap",
            Kernel::AddLayerNorm => "add_layer_norm",
            Kernel::AddBias => "add_bias",
            Kernel::AddBiasGelu => "add_bias_gelu",
            Kernel::EncoderAttention => "encoder_attention",
            Kernel::MeanPoolNormalize => "mean_pool_normalize",
            Kernel::LogitMetrics => "logit_metrics",
            Kernel::FmaProbe => "fma_probe",
            Kernel::QuantizeX => "quantize_x",
            Kernel::MatvecDot4 => "matvec_dot4",
        }
    }

    /// The bind-group layout, in binding order; must match the `@binding`s of the entry's module.
    pub fn bindings(self) -> &'static [Binding] {
        match self {
            Kernel::MatvecLane | Kernel::MatvecWorkgroup | Kernel::MatvecSubgroup | Kernel::MatvecSubgroupRows | Kernel::MatvecDot4 | Kernel::Matmul | Kernel::Embed => LINEAR_BINDINGS,
            Kernel::Copy => &[R, W],
            Kernel::RmsNorm => &[R, R, W, U],
            Kernel::Rope => &[W, W, R, U, U],
            Kernel::KvStore => &[R, R, W, W, U, U],
            Kernel::FlashSplit => &[R, R, R, W, W, U, U],
            Kernel::FlashCombine => &[R, R, W, U, U],
            // Elementwise b is read_write so that a and b may share a buffer (elementwise.wgsl).
            Kernel::Add | Kernel::SiluMul | Kernel::GeluTanhMul => &[W, W, U],
            Kernel::AddBias | Kernel::AddBiasGelu => &[W, R, U],
            Kernel::Scale | Kernel::Softcap => &[W, U],
            Kernel::AddLayerNorm => &[W, R, R, R, R, U],
            Kernel::EncoderAttention => &[R, R, R, R, W, U],
            Kernel::MeanPoolNormalize => &[R, R, W, U],
            Kernel::LogitMetrics => &[R, R, R, W, U],
            Kernel::FmaProbe => &[W],
            Kernel::QuantizeX => &[R, W, U],
        }
    }
}
