//! A LLaMA-family decoder on the GPU: embedding lookup from the quantized table, RMSNorm, RoPE,
//! grouped-query attention over a GPU KV cache, SwiGLU, and the (possibly tied) head. Every
//! matrix product reads quantized weights; only logits come back to the host.

mod arch;
mod config;
mod observed;
mod stream;
mod weights;

pub use arch::{Activation, ArchSpec, QueryScale, WindowLayers, ARCHITECTURES};
pub use config::LlamaConfig;
pub use stream::StreamedLlama;
pub use weights::format_of;

use crate::gpu::{Context, Dispatch};
use crate::loader::{Metadata, SourceTensor, TensorSource};
use crate::model::ModelError;
use crate::ops::*;
use crate::Error;
use std::collections::HashMap;
use std::sync::Arc;
use weights::Weights;

/// How a model is set up on the GPU.
#[derive(Clone, Debug)]
pub struct LlamaOptions {
    /// Positions the KV cache holds (capped at the trained context).
    pub context: usize,
    /// Longest prompt chunk run at once; longer prompts run in chunks of this many tokens.
    pub chunk: usize,
    /// Matvec variants measured by `qgpu tune` on this adapter; the defaults where absent.
    pub tune: Option<Arc<TuneTable>>,
    /// How the KV cache stores each value.
    pub kv_type: KvType,
    /// Sequences held at once, each with a KV cache of `context` positions ([`Llama::select`]);
    /// [`Llama::decode_batch`] advances several in one pass over the weights.
    pub slots: usize,
    /// Q, K, V in one matrix and gate, up in another where their formats agree
    /// ([`GpuMatrix::stack_rows`]): one dispatch each instead of three and two.
    pub fuse_projections: bool,
}

impl Default for LlamaOptions {
    fn default() -> Self {
        Self { context: 2048, chunk: 128, tune: None, kv_type: KvType::default(), slots: 1, fuse_projections: true }
    }
}

impl LlamaOptions {
    /// The options [`Llama::load`] runs `config` with: the context capped at the trained one,
    /// the chunk at the context, and both at least 1.
    pub fn resolve(&self, config: &LlamaConfig) -> LlamaOptions {
        let context = self.context.min(config.trained_context).max(1);
        let chunk = self.chunk.min(context).max(1);
        // A batched decode step holds one activation row per sequence.
        LlamaOptions { context, chunk, tune: self.tune.clone(), kv_type: self.kv_type, slots: self.slots.clamp(1, chunk), fuse_projections: self.fuse_projections }
    }
}

/// Which logits a forward pass returns.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Logits {
    /// The last position's only (generation).
    Last,
    /// Every position's (evaluation and tests).
    All,
}

/// Activations for up to `chunk` tokens, reused by every layer.
struct Activations {
    x: GpuTensor,
    xn: GpuTensor,
    /// The Q, K and V projections' outputs as planar parts of one block, so that a fused
    /// Q|K|V matrix writes them in one dispatch (`qkv_parts`: Q, K, V).
    qkv: GpuTensor,
    qkv_parts: [GpuTensor; 3],
    /// Q and K after their per-head norms, when the model has them.
    q_normed: GpuTensor,
    k_normed: GpuTensor,
    attn: GpuTensor,
    proj: GpuTensor,
    /// Gate and up as planar parts of one block, for a fused gate|up matrix (`gate_up_parts`).
    gate_up: GpuTensor,
    gate_up_parts: [GpuTensor; 2],
    logits: GpuTensor,
    ids: GpuIds,
}

/// Rows of a block of planar parts for chunks of `chunk` rows: a multiple of 64, so that every
/// part starts on a 256-byte boundary (the storage offset alignment every adapter accepts).
fn block_rows(chunk: usize) -> usize {
    chunk.next_multiple_of(64)
}

/// GPU bytes held by a model, by purpose.
#[derive(Clone, Copy, Debug, Default)]
pub struct MemoryUse {
    pub weights: u64,
    pub kv_cache: u64,
    pub activations: u64,
}

/// The f32 buffers besides weights and KV cache that [`Llama::load`] allocates, as (name,
/// rows, cols): first the `Activations` matrices in field order, then the attention's partial
/// results, then the RoPE tables.
/// Resolve `options` first ([`LlamaOptions::resolve`]).
pub fn activation_shapes(c: &LlamaConfig, options: &LlamaOptions) -> Vec<(&'static str, usize, usize)> {
    let (t, n) = (options.chunk, options.context);
    let mut shapes = vec![
        ("x", t, c.dim),
        ("xn", t, c.dim),
        ("qkv", block_rows(t), c.q_dim() + 2 * c.kv_dim()),
        ("q_normed", t, c.q_dim()),
        ("k_normed", t, c.kv_dim()),
        ("attn", t, c.q_dim()),
        ("proj", t, c.dim),
        ("gate_up", block_rows(t), 2 * c.ffn),
        ("logits", 1, c.vocab),
    ];
    let [acc, ml] = attention_partials(dims_of(c), n, t);
    shapes.extend([("attn_partial_acc", acc.0, acc.1), ("attn_partial_ml", ml.0, ml.1), ("rope", n, c.rope_dims)]);
    if c.window.is_some() && c.window_rope_base.is_some() {
        shapes.push(("window_rope", n, c.rope_dims));
    }
    if !(0..c.layers).all(|i| c.arch.uses_rope(i)) {
        shapes.push(("no_rope", n, c.rope_dims));
    }
    shapes
}

/// Bytes of a K and a V cache of `context` positions of `kv_heads` heads of `head_dim` values,
/// stored as `kv_type`, for each of `layers` layers (no sliding windows).
pub fn kv_cache_bytes(layers: usize, context: usize, kv_heads: usize, head_dim: usize, kv_type: KvType) -> u64 {
    layers as u64 * KvCache::bytes_for(kv_type, context, kv_heads, head_dim)
}

/// Positions layer `i`'s KV cache holds: the whole context, or in a sliding-window layer a
/// ring of the window plus a chunk (every position a query of the chunk can still see).
pub fn cache_rows(c: &LlamaConfig, options: &LlamaOptions, i: usize) -> usize {
    match c.layer_window(i) {
        Some(w) => (w + options.chunk - 1).min(options.context),
        None => options.context,
    }
}

fn dims_of(c: &LlamaConfig) -> AttnDims {
    AttnDims { heads: c.heads, kv_heads: c.kv_heads, head_dim: c.head_dim }
}

impl MemoryUse {
    /// What [`Llama::load`] allocates besides `weights` for resolved `options`, computed
    /// without a GPU: for each slot a K and V cache of [`cache_rows`] positions per layer in
    /// `options.kv_type`, and the activations of [`activation_shapes`].
    pub fn estimate(c: &LlamaConfig, options: &LlamaOptions, weights: u64) -> MemoryUse {
        let f32s = |rows: usize, cols: usize| rows as u64 * cols as u64 * 4;
        MemoryUse {
            weights,
            kv_cache: options.slots as u64 * (0..c.layers).map(|i| KvCache::bytes_for(options.kv_type, cache_rows(c, options, i), c.kv_heads, c.head_dim)).sum::<u64>(),
            activations: activation_shapes(c, options).iter().map(|&(_, r, k)| f32s(r, k)).sum(),
        }
    }
}

/// Fails with [`ModelError::ContextTooLarge`] where a buffer that grows with the context would
/// not fit one binding of `limit` bytes: a full layer's K (or V) cache, or a RoPE table.
pub fn check_context_fits(c: &LlamaConfig, options: &LlamaOptions, limit: u64) -> Result<(), ModelError> {
    let kv_per_position = KvCache::buffer_bytes(options.kv_type, 1, c.kv_heads, c.head_dim);
    let rope_per_position = c.rope_dims as u64 * 4;
    let full_layers = (0..c.layers).any(|i| c.layer_window(i).is_none());
    let mut buffers = vec![("RoPE table", rope_per_position)];
    if full_layers {
        buffers.push(("K cache per layer", kv_per_position));
    }
    let fits = buffers.iter().map(|&(_, per)| limit / per.max(1)).min().unwrap_or(u64::MAX).min(c.trained_context as u64) as usize;
    for (what, per) in buffers {
        let needed = per * options.context as u64;
        if needed > limit {
            return Err(ModelError::ContextTooLarge { context: options.context, what, needed, limit, fits });
        }
    }
    Ok(())
}

/// A decoder uploaded as its file streams in (a download in the browser, the files of a
/// `gguf-split` model one after another): made from the first header's metadata, fed each
/// tensor's bytes as they arrive, in any tensor order, and finished into a [`Llama`] once every
/// file is through. The host holds one band of rows at a time, never the file.
pub struct LlamaUpload {
    config: LlamaConfig,
    options: LlamaOptions,
    weights: weights::WeightUpload,
    /// The tensors the headers declared so far, checked against the config at the end.
    tensors: Vec<SourceTensor>,
}

impl LlamaUpload {
    /// Starts an upload from the model's metadata (the first file's header).
    pub fn new(ctx: &Context, metadata: &Metadata, options: LlamaOptions) -> Result<Self, Error> {
        let config = LlamaConfig::from_metadata(metadata)?;
        let options = options.resolve(&config);
        check_context_fits(&config, &options, ctx.max_binding_size())?;
        Ok(Self { weights: weights::WeightUpload::new(&config), config, options, tensors: Vec::new() })
    }

    /// Records the tensors one file's header declares (before their bytes).
    pub fn declare(&mut self, tensors: impl IntoIterator<Item = SourceTensor>) {
        self.tensors.extend(tensors);
    }

    /// The next `bytes` of tensor `info`, `last` on its final piece; tensors the decoder does not
    /// read are skipped.
    pub fn tensor_bytes(&mut self, ctx: &Context, info: &SourceTensor, bytes: &[u8], last: bool) -> Result<(), Error> {
        self.weights.tensor_bytes(ctx, info, bytes, last)
    }

    /// The model, once every tensor's bytes have arrived.
    pub async fn finish(self, ctx: &Context) -> Result<Llama, Error> {
        let mut config = self.config;
        config.check_tensors(&self.tensors)?;
        let weights = self.weights.finish(&config)?;
        Llama::from_weights(ctx, config, self.options, weights).await
    }
}

/// One sequence's state: its KV cache (every layer's) and where it stands.
struct Sequence {
    caches: Vec<KvCache>,
    /// Its first position in this call, for the kernels.
    step: StepParams,
    /// Its attention's split count.
    args: AttnArgs,
    /// Tokens in the cache.
    pos: usize,
    /// The furthest position written since the last reset: what a rewind must check a
    /// sliding-window ring against.
    written: usize,
}

/// Which rows of a forward pass belong to which sequence: (slot, tokens) in row order.
type Layout = Vec<(usize, usize)>;

/// Forward-pass plans kept at most (see [`Llama::ensure_plan`]).
/// Each holds a uniform buffer and a bind group per dispatch: on lavapipe about 1.5 MB of host
/// memory for SmolLM2's ~450 dispatches.
const MAX_PLANS: usize = 32;

pub struct Llama {
    config: LlamaConfig,
    options: LlamaOptions,
    weights: Weights,
    acts: Activations,
    seqs: Vec<Sequence>,
    /// The slot [`Llama::forward`] and the other single-sequence calls work on.
    slot: usize,
    attn_work: AttnWorkspace,
    rope: RopeTable,
    /// The sliding-window layers' table, when their RoPE base differs (Gemma 3).
    window_rope: Option<RopeTable>,
    /// The identity table of layers without RoPE (SmolLM3).
    no_rope: Option<RopeTable>,
    plans: HashMap<(Layout, Logits), Vec<Dispatch>>,
    /// The plans made at load, which the bounded cache never evicts.
    pinned: Vec<(Layout, Logits)>,
    /// Plans of the observed forward (calibration), with their read-back points, by slot and
    /// length.
    observed_plans: HashMap<(usize, usize), (Vec<Dispatch>, Vec<observed::Tap>)>,
    all_logits: Option<GpuTensor>,
    memory: MemoryUse,
}

impl Llama {
    /// Uploads the model (a GGUF file, or a Hugging Face LLaMA directory); `progress(done,
    /// total)` is called after each tensor.
    pub async fn load(ctx: &Context, source: &dyn TensorSource, options: LlamaOptions, progress: &mut dyn FnMut(usize, usize)) -> Result<Self, Error> {
        let config = LlamaConfig::from_source(source)?;
        let options = options.resolve(&config);
        check_context_fits(&config, &options, ctx.max_binding_size())?;
        let weights = weights::load(ctx, source, &config, progress)?;
        Self::from_weights(ctx, config, options, weights).await
    }

    /// The model around uploaded weights: activations, KV caches, RoPE tables and the plans of
    /// the first forward passes.
    async fn from_weights(ctx: &Context, config: LlamaConfig, options: LlamaOptions, mut weights: Weights) -> Result<Self, Error> {
        let c = &config;
        if options.fuse_projections {
            for layer in &mut weights.layers {
                layer.qkv = weights::stack_projections(ctx, std::mem::take(&mut layer.qkv))?;
                layer.gate_up = weights::stack_projections(ctx, std::mem::take(&mut layer.gate_up))?;
            }
        }
        let shapes = activation_shapes(c, &options);
        let t = |i: usize| GpuTensor::zeros(ctx, shapes[i].1, shapes[i].2);
        let (qkv, gate_up) = (t(2)?, t(7)?);
        let parts = |block: &GpuTensor, widths: &[usize]| block.planar_parts(ctx, widths);
        let [q, k, v]: [GpuTensor; 3] = parts(&qkv, &[c.q_dim(), c.kv_dim(), c.kv_dim()])?.try_into().ok().expect("three widths");
        let [gate, up]: [GpuTensor; 2] = parts(&gate_up, &[c.ffn, c.ffn])?.try_into().ok().expect("two widths");
        let acts = Activations {
            x: t(0)?,
            xn: t(1)?,
            qkv,
            qkv_parts: [q, k, v],
            q_normed: t(3)?,
            k_normed: t(4)?,
            attn: t(5)?,
            proj: t(6)?,
            gate_up,
            gate_up_parts: [gate, up],
            logits: t(8)?,
            ids: GpuIds::new(ctx, options.chunk)?,
        };
        let attn_work = AttnWorkspace::new(ctx, dims_of(c), options.context, options.chunk)?;
        let new_sequence = || -> Result<Sequence, Error> {
            let caches = (0..c.layers).map(|i| KvCache::new(ctx, options.kv_type, cache_rows(c, &options, i), c.kv_heads, c.head_dim)).collect::<Result<Vec<_>, _>>()?;
            Ok(Sequence { caches, step: StepParams::new(ctx), args: AttnArgs::new(ctx, options.context), pos: 0, written: 0 })
        };
        let seqs = (0..options.slots).map(|_| new_sequence()).collect::<Result<Vec<_>, _>>().map_err(|e| match e {
            Error::Gpu(crate::gpu::GpuError::OutOfMemory { .. }) => {
                let m = MemoryUse::estimate(c, &options, weights.bytes);
                ModelError::OutOfMemory { context: options.context, needed: m.weights + m.kv_cache + m.activations, weights: m.weights, kv_cache: m.kv_cache }.into()
            }
            e => e,
        })?;
        // As llama.cpp: `rope_freqs` if present, else LongRoPE's short or long factors by
        // whether the cache outgrows the original context.
        let long = options.context > c.rope_original_context;
        let freq_factors = weights.rope_freqs.clone().or_else(|| if long { weights.rope_factors_long.clone() } else { weights.rope_factors_short.clone() });
        let scaling = RopeScaling { linear: c.rope_linear_scale as f64, freq_factors, attn_factor: c.rope_attn_factor as f64 };
        let rope = RopeTable::new(ctx, c.rope_dims, options.context, c.rope_base, c.arch.rope, &scaling)?;
        // Window layers with a base of their own are unscaled, as in llama.cpp.
        let window_rope = match (c.window, c.window_rope_base) {
            (Some(_), Some(base)) => Some(RopeTable::new(ctx, c.rope_dims, options.context, base, c.arch.rope, &RopeScaling::default())?),
            _ => None,
        };
        let no_rope = if (0..c.layers).all(|i| c.arch.uses_rope(i)) { None } else { Some(RopeTable::identity(ctx, c.rope_dims, options.context)?) };
        // The estimate (which `qgpu inspect` shows) must be what was allocated.
        let memory = MemoryUse::estimate(c, &options, weights.bytes);
        debug_assert_eq!(
            memory.activations,
            [&acts.x, &acts.xn, &acts.qkv, &acts.q_normed, &acts.k_normed, &acts.attn, &acts.proj, &acts.gate_up, &acts.logits].iter().map(|t| t.bytes()).sum::<u64>()
                + attn_work.bytes()
                + rope.bytes()
                + [&window_rope, &no_rope].iter().filter_map(|t| t.as_ref()).map(|t| t.bytes()).sum::<u64>()
        );
        debug_assert_eq!(memory.kv_cache, seqs.iter().flat_map(|s| &s.caches).map(KvCache::bytes).sum::<u64>());
        let mut model = Self {
            rope,
            window_rope,
            no_rope,
            config,
            options,
            weights,
            acts,
            seqs,
            slot: 0,
            attn_work,
            plans: HashMap::new(),
            pinned: Vec::new(),
            observed_plans: HashMap::new(),
            all_logits: None,
            memory,
        };
        // Plan decode and a full prefill chunk now (and on CPU adapters a short prompt, which
        // runs matvec passes of 8 rows): this builds the pipelines a forward pass uses, so
        // driver compile time is paid while loading, not in the first answer.
        let mut lengths = vec![1, model.options.chunk];
        if ctx.capabilities().cpu_device {
            lengths.push(CPU_MATVEC_PASS_ROWS.min(model.options.chunk));
        }
        for key in lengths.into_iter().map(|t| (vec![(0, t)], Logits::Last)) {
            let plan = model.plan(ctx, &key.0, key.1, None).await?;
            model.pinned.push(key.clone());
            model.plans.insert(key, plan);
        }
        Ok(model)
    }

    pub fn config(&self) -> &LlamaConfig {
        &self.config
    }
    /// Dispatches of one decode step of the selected sequence (its plan is made at load):
    /// what fusing projections saves, counted.
    pub fn dispatches_per_token(&self) -> Option<usize> {
        self.plans.get(&(vec![(self.slot, 1)], Logits::Last)).map(Vec::len)
    }
    /// Positions the KV cache holds.
    pub fn context(&self) -> usize {
        self.options.context
    }
    /// Tokens already in the selected slot's KV cache.
    pub fn position(&self) -> usize {
        self.seqs[self.slot].pos
    }
    /// Sequences the model holds at once.
    pub fn slots(&self) -> usize {
        self.seqs.len()
    }
    /// Tokens in slot `slot`'s KV cache.
    pub fn position_of(&self, slot: usize) -> usize {
        self.seqs.get(slot).map_or(0, |s| s.pos)
    }
    /// Makes `slot` the sequence that [`Llama::forward`], [`Llama::reset`],
    /// [`Llama::rewind`] and [`Llama::position`] work on.
    pub fn select(&mut self, slot: usize) -> Result<(), ModelError> {
        if slot >= self.seqs.len() {
            return Err(ModelError::NoSuchSlot { slot, slots: self.seqs.len() });
        }
        self.slot = slot;
        Ok(())
    }
    pub fn memory(&self) -> MemoryUse {
        self.memory
    }
    /// The options the model was loaded with, resolved (context capped at the trained one).
    pub fn options(&self) -> &LlamaOptions {
        &self.options
    }
    /// Forgets the selected sequence: its next forward starts at position 0.
    pub fn reset(&mut self) {
        let seq = &mut self.seqs[self.slot];
        seq.pos = 0;
        seq.written = 0;
    }

    /// Forgets the positions from `position` on, keeping the KV cache before it, so the same
    /// prefix need not be prefilled again (benchmarks at a depth). Full layers keep every
    /// position; a sliding-window ring may have overwritten slots of the window before
    /// `position` once more than a chunk was appended past it, and then this fails with
    /// [`ModelError::CannotRewind`] (reset and prefill again instead).
    pub fn rewind(&mut self, position: usize) -> Result<(), ModelError> {
        let seq = &self.seqs[self.slot];
        let refuse = |reason| Err(ModelError::CannotRewind { to: position, position: seq.pos, reason });
        if position > seq.pos {
            return refuse("that is past the end of the sequence");
        }
        for i in 0..self.config.layers {
            let (Some(window), rows) = (self.config.layer_window(i), cache_rows(&self.config, &self.options, i)) else { continue };
            // Writing position p overwrote slot p % rows, i.e. position p - rows; the window of
            // a query at `position` starts at position - window + 1.
            if rows < self.options.context && seq.written + window > position + rows + 1 {
                return refuse("a sliding-window layer's ring has overwritten part of the window before it");
            }
        }
        self.seqs[self.slot].pos = position;
        Ok(())
    }

    /// Weight bytes one single-token forward pass reads: every matrix and norm, except that an
    /// embedding table that is not also the head is read one row at a time.
    pub fn decode_weight_bytes(&self) -> u64 {
        match &self.weights.head {
            Some(_) => {
                let embed = &self.weights.embed;
                self.weights.bytes - embed.gpu_bytes() + embed.gpu_bytes() / embed.rows().max(1) as u64
            }
            None => self.weights.bytes,
        }
    }

    /// Appends `tokens` to the sequence and returns logits: the last position's (`vocab`
    /// values) or every position's (`tokens.len() × vocab`, row-major).
    pub async fn forward(&mut self, ctx: &Context, tokens: &[u32], logits: Logits) -> Result<Vec<f32>, Error> {
        self.check_tokens(self.slot, tokens)?;
        if logits == Logits::All {
            self.ensure_all_logits(ctx)?;
        }
        let mut out = Vec::new();
        let chunks: Vec<&[u32]> = tokens.chunks(self.options.chunk).collect();
        for (i, chunk) in chunks.iter().enumerate() {
            let last = i + 1 == chunks.len();
            // Only the final chunk needs the head when generating.
            let want = if logits == Logits::All { Some(Logits::All) } else if last { Some(Logits::Last) } else { None };
            self.run_chunk(ctx, chunk, want).await?;
            match want {
                Some(Logits::All) => {
                    let t = self.all_logits.as_ref().expect("allocated above");
                    out.extend(t.read_rows(ctx, chunk.len()).await?);
                }
                Some(Logits::Last) => out = self.acts.logits.read(ctx).await?,
                None => {}
            }
        }
        Ok(out)
    }

    /// Appends `tokens` (at most one chunk) and leaves every position's logits on the GPU, in
    /// the first `tokens.len()` rows of the returned tensor, which the next call overwrites.
    /// Evaluation compares two models there without reading `vocab` logits per token back.
    pub async fn forward_logits_on_gpu(&mut self, ctx: &Context, tokens: &[u32]) -> Result<&GpuTensor, Error> {
        self.check_tokens(self.slot, tokens)?;
        if tokens.len() > self.options.chunk {
            return Err(crate::tensor::ShapeError::TooLarge { op: "forward", what: "tokens", actual: tokens.len(), max: self.options.chunk }.into());
        }
        self.ensure_all_logits(ctx)?;
        self.run_chunk(ctx, tokens, Some(Logits::All)).await?;
        Ok(self.all_logits.as_ref().expect("allocated above"))
    }

    /// Longest token run [`Llama::forward_logits_on_gpu`] takes.
    pub fn chunk(&self) -> usize {
        self.options.chunk
    }

    /// Checks that `tokens` can be appended to slot `slot`'s sequence.
    fn check_tokens(&self, slot: usize, tokens: &[u32]) -> Result<(), Error> {
        if tokens.is_empty() {
            return Err(ModelError::EmptyInput.into());
        }
        if let Some(&id) = tokens.iter().find(|&&id| id as usize >= self.config.vocab) {
            return Err(ModelError::TokenOutOfRange { id, vocab: self.config.vocab }.into());
        }
        let pos = self.seqs[slot].pos;
        if pos + tokens.len() > self.options.context {
            return Err(ModelError::ContextFull { needed: pos + tokens.len(), context: self.options.context }.into());
        }
        Ok(())
    }

    /// Allocates the every-position logits on first use (generation never needs them).
    fn ensure_all_logits(&mut self, ctx: &Context) -> Result<(), Error> {
        let rows = self.all_logits.as_ref().map_or(0, |t| t.rows());
        if rows < self.options.chunk {
            self.all_logits = Some(GpuTensor::zeros(ctx, self.options.chunk, self.config.vocab)?);
            // Plans that wrote the old tensor are stale.
            self.plans.retain(|(_, l), _| *l != Logits::All);
            self.observed_plans.clear();
        }
        Ok(())
    }

    /// Runs one chunk of at most `options.chunk` tokens at the current position; `want` says
    /// which logits to compute (none for a prompt chunk that is not the last).
    async fn run_chunk(&mut self, ctx: &Context, chunk: &[u32], want: Option<Logits>) -> Result<(), Error> {
        let key = (vec![(self.slot, chunk.len())], want.unwrap_or(Logits::Last));
        self.ensure_plan(ctx, &key).await?;
        self.acts.ids.write(ctx, chunk)?;
        self.write_positions(ctx, &key.0);
        let plan = &self.plans[&key];
        // The head's dispatches come last; skip them for chunks whose logits nobody reads.
        let body = if want.is_none() { &plan[..plan.len() - self.head_dispatches()] } else { &plan[..] };
        let refs: Vec<&Dispatch> = body.iter().collect();
        ctx.run(&refs).await?;
        self.advance(&key.0);
        Ok(())
    }

    async fn ensure_plan(&mut self, ctx: &Context, key: &(Layout, Logits)) -> Result<(), Error> {
        if !self.plans.contains_key(key) {
            // Slots, prompt lengths and batches make many layouts; each plan holds bind groups
            // and uniform buffers, so the cache is bounded. The plans made at load stay.
            if self.plans.len() >= MAX_PLANS {
                let pinned = &self.pinned;
                self.plans.retain(|key, _| pinned.contains(key));
            }
            let plan = self.plan(ctx, &key.0, key.1, None).await?;
            self.plans.insert(key.clone(), plan);
        }
        Ok(())
    }

    /// Writes each sequence's position (and attention split count) for a pass over `layout`.
    fn write_positions(&self, ctx: &Context, layout: &[(usize, usize)]) {
        let dims = self.dims();
        for &(slot, t) in layout {
            let seq = &self.seqs[slot];
            seq.step.write(ctx, seq.pos as u32);
            seq.args.write(ctx, dims, seq.pos, t);
        }
    }

    fn advance(&mut self, layout: &[(usize, usize)]) {
        for &(slot, t) in layout {
            let seq = &mut self.seqs[slot];
            seq.pos += t;
            seq.written = seq.written.max(seq.pos);
        }
    }

    /// One decode step for several sequences in one pass over the weights: `batch` holds
    /// (slot, token) pairs, each slot at most once, and each token is appended to its slot's
    /// sequence. Returns each row's logits (`vocab` values), in `batch` order. The selected
    /// slot does not change.
    pub async fn decode_batch(&mut self, ctx: &Context, batch: &[(usize, u32)]) -> Result<Vec<Vec<f32>>, Error> {
        if batch.is_empty() {
            return Err(ModelError::EmptyInput.into());
        }
        if batch.len() > self.options.chunk {
            return Err(crate::tensor::ShapeError::TooLarge { op: "decode batch", what: "sequences", actual: batch.len(), max: self.options.chunk }.into());
        }
        for (i, &(slot, id)) in batch.iter().enumerate() {
            if slot >= self.seqs.len() {
                return Err(ModelError::NoSuchSlot { slot, slots: self.seqs.len() }.into());
            }
            if batch[..i].iter().any(|&(s, _)| s == slot) {
                return Err(ModelError::SlotRepeated { slot }.into());
            }
            self.check_tokens(slot, &[id])?;
        }
        self.ensure_all_logits(ctx)?;
        let key = (batch.iter().map(|&(slot, _)| (slot, 1)).collect::<Layout>(), Logits::All);
        self.ensure_plan(ctx, &key).await?;
        let ids: Vec<u32> = batch.iter().map(|&(_, id)| id).collect();
        self.acts.ids.write(ctx, &ids)?;
        self.write_positions(ctx, &key.0);
        let refs: Vec<&Dispatch> = self.plans[&key].iter().collect();
        ctx.run(&refs).await?;
        self.advance(&key.0);
        let vocab = self.config.vocab;
        let all = self.all_logits.as_ref().expect("allocated above").read_rows(ctx, batch.len()).await?;
        Ok(all.chunks(vocab).map(<[f32]>::to_vec).collect())
    }

    fn dims(&self) -> AttnDims {
        dims_of(&self.config)
    }

    fn head_matrix(&self) -> &GpuMatrix {
        self.weights.head.as_ref().unwrap_or(&self.weights.embed)
    }

    /// Dispatches at the end of a plan that compute logits: the final norm, the head's chunks
    /// and the soft-cap.
    fn head_dispatches(&self) -> usize {
        1 + self.head_matrix().chunk_count() + usize::from(self.config.final_softcap.is_some())
    }

    /// x += out, with `out` RMS-normed first where the layer has a post-norm (Gemma 2/3);
    /// `scratch` holds the normed copy.
    async fn residual(&self, ctx: &Context, x: &GpuTensor, out: &GpuTensor, post_norm: &Option<GpuTensor>, scratch: &GpuTensor, t: usize) -> Result<Vec<Dispatch>, Error> {
        let dim = self.config.dim;
        Ok(match post_norm {
            Some(norm) => vec![plan_rms_norm(ctx, out, 0, t, norm, scratch, self.config.eps).await?, plan_add(ctx, x, scratch, t * dim).await?],
            None => vec![plan_add(ctx, x, out, t * dim).await?],
        })
    }

    /// The tuned kernel for `w` applied to `x`'s rows, if `qgpu tune` measured one.
    fn tuned(&self, ctx: &Context, w: &GpuMatrix, x: &GpuTensor) -> Option<LinearKernel> {
        self.options.tune.as_ref()?.choose(ctx, w.format(), x.rows(), w.rows(), w.cols())
    }

    /// Every dispatch of a forward pass over the rows of `layout` (each sequence's tokens in
    /// turn), in order. With `taps`, also where each linear layer's input can be read back (for
    /// the observed forward).
    async fn plan(&self, ctx: &Context, layout: &[(usize, usize)], logits: Logits, mut taps: Option<&mut Vec<observed::Tap>>) -> Result<Vec<Dispatch>, Error> {
        let t: usize = layout.iter().map(|&(_, n)| n).sum();
        use observed::{Tap, TapInput};
        let mut tap = |after: usize, input: TapInput, weights: Vec<String>| {
            if let Some(taps) = taps.as_deref_mut() {
                taps.push(Tap { after, input, weights });
            }
        };
        let (c, a, dims) = (&self.config, &self.acts, self.dims());
        let rows = |x: &GpuTensor| x.view_rows(t);
        let (x, xn, attn, proj) = (rows(&a.x)?, rows(&a.xn)?, rows(&a.attn)?, rows(&a.proj)?);
        let [q_raw, k_raw, v] = [rows(&a.qkv_parts[0])?, rows(&a.qkv_parts[1])?, rows(&a.qkv_parts[2])?];
        let [gate, up] = [rows(&a.gate_up_parts[0])?, rows(&a.gate_up_parts[1])?];
        let (q_normed, k_normed) = (rows(&a.q_normed)?, rows(&a.k_normed)?);
        let qkv_widths = [c.q_dim(), c.kv_dim(), c.kv_dim()];
        let gate_up_widths = [c.ffn, c.ffn];
        let mut d = plan_embed(ctx, &self.weights.embed, &a.ids, &x, t).await?;
        if c.arch.embed_scale {
            d.push(plan_scale(ctx, &x, t * c.dim, (c.dim as f32).sqrt()).await?);
        }
        for (i, w) in self.weights.layers.iter().enumerate() {
            let n = |name: &str| format!("blk.{i}.{name}.weight");
            d.push(plan_rms_norm(ctx, &x, 0, t, &w.attn_norm, &xn, c.eps).await?);
            tap(d.len(), TapInput::Normed, vec![n("attn_q"), n("attn_k"), n("attn_v")]);
            for (m, first) in &w.qkv {
                d.extend(plan_linear_parts(ctx, m, &xn, &a.qkv, &qkv_widths, *first, self.tuned(ctx, m, &xn)).await?.dispatches);
            }
            for (y, bias) in [(&q_raw, &w.q_bias), (&k_raw, &w.k_bias), (&v, &w.v_bias)] {
                if let Some(b) = bias {
                    d.push(plan_add_bias(ctx, y, b).await?);
                }
            }
            // Q and K as they enter RoPE: after their per-head norms where the model has them.
            let q = if w.q_norm.is_some() { &q_normed } else { &q_raw };
            let k = if w.k_norm.is_some() { &k_normed } else { &k_raw };
            for (norm, raw, out, heads) in [(&w.q_norm, &q_raw, q, c.heads), (&w.k_norm, &k_raw, k, c.kv_heads)] {
                if let Some(norm) = norm {
                    let (raw, out) = (raw.view_as(t * heads, c.head_dim)?, out.view_as(t * heads, c.head_dim)?);
                    d.push(plan_rms_norm(ctx, &raw, 0, t * heads, norm, &out, c.eps).await?);
                }
            }
            let window = c.layer_window(i);
            let rope = match (&self.no_rope, window) {
                (Some(identity), _) if !c.arch.uses_rope(i) => identity,
                (_, Some(_)) => self.window_rope.as_ref().unwrap_or(&self.rope),
                _ => &self.rope,
            };
            // The rest of the layer is row-wise; these three read and write each sequence's cache.
            let options = AttnOptions { scale: c.attn_scale, window, softcap: c.attn_softcap };
            let mut row0 = 0;
            for &(slot, n) in layout {
                let seq = &self.seqs[slot];
                d.push(plan_rope_rows(ctx, dims, row0, n, q, k, rope, &seq.step).await?);
                d.push(plan_kv_store_rows(ctx, dims, row0, n, k, &v, &seq.caches[i], &seq.step).await?);
                d.extend(plan_attention_rows(ctx, dims, row0, n, q, &seq.caches[i], &self.attn_work, &attn, &seq.step, &seq.args, options).await?);
                row0 += n;
            }
            tap(d.len(), TapInput::Attention, vec![n("attn_output")]);
            d.extend(plan_linear(ctx, &w.o, &attn, &proj, self.tuned(ctx, &w.o, &attn)).await?.dispatches);
            d.extend(self.residual(ctx, &x, &proj, &w.post_attn_norm, &xn, t).await?);
            d.push(plan_rms_norm(ctx, &x, 0, t, &w.ffn_norm, &xn, c.eps).await?);
            tap(d.len(), TapInput::Normed, vec![n("ffn_gate"), n("ffn_up")]);
            for (m, first) in &w.gate_up {
                d.extend(plan_linear_parts(ctx, m, &xn, &a.gate_up, &gate_up_widths, *first, self.tuned(ctx, m, &xn)).await?.dispatches);
            }
            d.push(match c.arch.activation {
                Activation::Silu => plan_silu_mul(ctx, &gate, &up, t * c.ffn).await?,
                Activation::GeluTanh => plan_gelu_tanh_mul(ctx, &gate, &up, t * c.ffn).await?,
            });
            tap(d.len(), TapInput::Gated, vec![n("ffn_down")]);
            d.extend(plan_linear(ctx, &w.down, &gate, &proj, self.tuned(ctx, &w.down, &gate)).await?.dispatches);
            d.extend(self.residual(ctx, &x, &proj, &w.post_ffn_norm, &xn, t).await?);
        }
        let head = self.head_matrix();
        match logits {
            Logits::Last => {
                let xn_last = a.xn.view_rows(1)?;
                d.push(plan_rms_norm(ctx, &x, t - 1, 1, &self.weights.output_norm, &xn_last, c.eps).await?);
                d.extend(plan_linear(ctx, head, &xn_last, &a.logits, self.tuned(ctx, head, &xn_last)).await?.dispatches);
                if let Some(cap) = c.final_softcap {
                    d.push(plan_softcap(ctx, &a.logits, c.vocab, cap).await?);
                }
            }
            Logits::All => {
                let out = self.all_logits.as_ref().expect("allocated before planning").view_rows(t)?;
                d.push(plan_rms_norm(ctx, &x, 0, t, &self.weights.output_norm, &xn, c.eps).await?);
                let head_name = if self.weights.head.is_some() { "output.weight" } else { "token_embd.weight" };
                tap(d.len(), TapInput::Normed, vec![head_name.to_owned()]);
                d.extend(plan_linear(ctx, head, &xn, &out, self.tuned(ctx, head, &xn)).await?.dispatches);
                if let Some(cap) = c.final_softcap {
                    d.push(plan_softcap(ctx, &out, t * c.vocab, cap).await?);
                }
            }
        }
        Ok(d)
    }
}
