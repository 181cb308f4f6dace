//! A BERT encoder for sentence embeddings on the GPU: word + position + token-type embeddings,
//! LayerNorm, then per layer Q/K/V (+ bias), bidirectional attention within each sentence,
//! output projection, residual + LayerNorm, up projection + erf GELU, down projection, residual +
//! LayerNorm; finally the mean over each sentence's tokens, L2-normalised. Linear weights may be
//! in any format qgpu runs (F32 from a Hugging Face directory, quantized from a GGUF). Sentences
//! are packed one after another without padding; only the embeddings come back to the host.

mod config;
mod tokenizer;
mod weights;

pub use config::BertConfig;
pub use tokenizer::{BertTokenizer, Sentence};

use crate::gpu::{Context, Dispatch};
use crate::loader::TensorSource;
use crate::model::{LinearInputObserver, ModelError};
use crate::ops::*;
use crate::tensor::ShapeError;
use crate::Error;
use std::collections::HashMap;
use weights::Weights;

/// How a model is set up on the GPU.
#[derive(Clone, Debug)]
pub struct BertOptions {
    /// Tokens one forward pass holds (all sentences of a batch together); raised to the
    /// model's maximum sequence length if smaller.
    pub batch_tokens: usize,
}

impl BertOptions {
    /// Tokens the activations are allocated for: `batch_tokens`, at least one longest sentence.
    pub fn capacity(&self, config: &BertConfig) -> usize {
        self.batch_tokens.max(config.max_sequence)
    }
}

impl Default for BertOptions {
    fn default() -> Self {
        Self { batch_tokens: 512 }
    }
}

/// Plans kept for distinct (tokens, sentences) batch shapes before the cache is cleared.
const MAX_PLANS: usize = 16;

/// Activations for up to `capacity` tokens (and as many sentences), reused by every layer.
struct Activations {
    capacity: usize,
    ids: GpuIds,
    positions: GpuIds,
    types: GpuIds,
    key_spans: GpuSpans,
    sentence_spans: GpuSpans,
    x: GpuTensor,
    tmp: GpuTensor,
    tmp2: GpuTensor,
    q: GpuTensor,
    k: GpuTensor,
    v: GpuTensor,
    attn: GpuTensor,
    up: GpuTensor,
    pooled: GpuTensor,
}

impl Activations {
    fn new(ctx: &Context, c: &BertConfig, capacity: usize) -> Result<Self, Error> {
        let t = capacity;
        Ok(Self {
            capacity,
            ids: GpuIds::new(ctx, t)?,
            positions: GpuIds::new(ctx, t)?,
            types: GpuIds::new(ctx, t)?,
            key_spans: GpuSpans::new(ctx, t)?,
            sentence_spans: GpuSpans::new(ctx, t)?,
            x: GpuTensor::zeros(ctx, t, c.dim)?,
            tmp: GpuTensor::zeros(ctx, t, c.dim)?,
            tmp2: GpuTensor::zeros(ctx, t, c.dim)?,
            q: GpuTensor::zeros(ctx, t, c.dim)?,
            k: GpuTensor::zeros(ctx, t, c.dim)?,
            v: GpuTensor::zeros(ctx, t, c.dim)?,
            attn: GpuTensor::zeros(ctx, t, c.dim)?,
            up: GpuTensor::zeros(ctx, t, c.ffn)?,
            pooled: GpuTensor::zeros(ctx, t, c.dim)?,
        })
    }

}

/// Where an observed forward pass reads a linear layer's input: before dispatch `at`, tensor
/// `x`, which feeds the weights `names`.
struct ObservePoint {
    at: usize,
    names: Vec<String>,
    x: GpuTensor,
}

struct Plan {
    dispatches: Vec<Dispatch>,
    observe: Vec<ObservePoint>,
}

/// GPU bytes held by a model.
#[derive(Clone, Copy, Debug, Default)]
pub struct BertMemory {
    pub weights: u64,
    pub activations: u64,
}

impl BertMemory {
    /// Activation bytes for `capacity` tokens, as [`Bert::load`] allocates them: nine f32
    /// matrices (eight `dim` wide, `up` `ffn` wide), three u32 id buffers and two spans of
    /// two u32. A pure function, so `qgpu inspect` can tell without a GPU.
    pub fn activations_for(config: &BertConfig, capacity: usize) -> u64 {
        capacity as u64 * ((8 * config.dim + config.ffn) as u64 * 4 + 3 * 4 + 2 * 8)
    }
}

pub struct Bert {
    config: BertConfig,
    weights: Weights,
    acts: Activations,
    plans: HashMap<(usize, usize), Plan>,
}

impl Bert {
    /// Uploads the model from any source whose `general.architecture` is `bert`.
    pub async fn load(ctx: &Context, source: &dyn TensorSource, options: BertOptions) -> Result<Self, Error> {
        let config = BertConfig::from_source(source)?;
        let weights = weights::load(ctx, source, &config)?;
        let capacity = options.capacity(&config);
        let acts = Activations::new(ctx, &config, capacity)?;
        let mut model = Self { config, weights, acts, plans: HashMap::new() };
        // Build every pipeline now (matvec for short batches, in passes on CPU adapters, matmul
        // beyond), so the first call does not pay for driver compilation.
        for tokens in [1, MATVEC_MAX_ROWS + 1, CPU_MATVEC_PASS_ROWS + 1, CPU_SUBGROUP_PASS_ROWS + 1].into_iter().filter(|&t| t <= capacity) {
            let plan = model.plan(ctx, tokens, 1).await?;
            model.plans.insert((tokens, 1), plan);
        }
        Ok(model)
    }

    pub fn config(&self) -> &BertConfig {
        &self.config
    }

    pub fn memory(&self) -> BertMemory {
        BertMemory { weights: self.weights.bytes, activations: BertMemory::activations_for(&self.config, self.acts.capacity) }
    }

    /// The L2-normalised mean-pooled embedding of each sentence (`dim` values each).
    pub async fn forward(&mut self, ctx: &Context, sentences: &[Sentence]) -> Result<Vec<Vec<f32>>, Error> {
        self.forward_inner(ctx, sentences, None).await
    }

    /// As [`Bert::forward`], handing each linear layer's input (read back from the GPU) to
    /// `observer` with the GGUF name of its weight, for calibration.
    pub async fn forward_observed(&mut self, ctx: &Context, sentences: &[Sentence], observer: &mut dyn LinearInputObserver) -> Result<Vec<Vec<f32>>, Error> {
        self.forward_inner(ctx, sentences, Some(observer)).await
    }

    async fn forward_inner(&mut self, ctx: &Context, sentences: &[Sentence], mut observer: Option<&mut (dyn LinearInputObserver + '_)>) -> Result<Vec<Vec<f32>>, Error> {
        if sentences.is_empty() {
            return Err(ModelError::EmptyInput.into());
        }
        for s in sentences {
            self.check(s)?;
        }
        let mut out = Vec::with_capacity(sentences.len());
        let mut start = 0;
        while start < sentences.len() {
            // As many whole sentences as fit the activations.
            let mut end = start;
            let mut tokens = 0;
            while end < sentences.len() && tokens + sentences[end].ids.len() <= self.acts.capacity {
                tokens += sentences[end].ids.len();
                end += 1;
            }
            out.extend(self.run_batch(ctx, &sentences[start..end], observer.as_deref_mut()).await?);
            start = end;
        }
        Ok(out)
    }

    fn check(&self, s: &Sentence) -> Result<(), Error> {
        let c = &self.config;
        if s.ids.is_empty() {
            return Err(ModelError::EmptyInput.into());
        }
        if s.type_ids.len() != s.ids.len() {
            return Err(ShapeError::Mismatch { op: "bert", what: "token type ids", expected: s.ids.len(), actual: s.type_ids.len() }.into());
        }
        if s.ids.len() > c.context {
            return Err(ModelError::ContextFull { needed: s.ids.len(), context: c.context }.into());
        }
        if let Some(&id) = s.ids.iter().find(|&&id| id as usize >= c.vocab) {
            return Err(ModelError::TokenOutOfRange { id, vocab: c.vocab }.into());
        }
        if let Some(&id) = s.type_ids.iter().find(|&&id| id as usize >= c.token_types) {
            return Err(ModelError::TokenTypeOutOfRange { id, types: c.token_types }.into());
        }
        Ok(())
    }

    /// One forward pass over sentences whose tokens fit the activations.
    async fn run_batch(&mut self, ctx: &Context, batch: &[Sentence], observer: Option<&mut (dyn LinearInputObserver + '_)>) -> Result<Vec<Vec<f32>>, Error> {
        let mut ids = Vec::new();
        let mut positions = Vec::new();
        let mut types = Vec::new();
        let mut key_spans = Vec::new();
        let mut sentence_spans = Vec::with_capacity(batch.len());
        for s in batch {
            let start = ids.len() as u32;
            let end = start + s.ids.len() as u32;
            ids.extend_from_slice(&s.ids);
            types.extend_from_slice(&s.type_ids);
            positions.extend(0..s.ids.len() as u32);
            key_spans.extend(std::iter::repeat_n((start, end), s.ids.len()));
            sentence_spans.push((start, end));
        }
        let key = (ids.len(), batch.len());
        if !self.plans.contains_key(&key) {
            if self.plans.len() >= MAX_PLANS {
                self.plans.clear();
            }
            let plan = self.plan(ctx, key.0, key.1).await?;
            self.plans.insert(key, plan);
        }
        let a = &self.acts;
        a.ids.write(ctx, &ids)?;
        a.positions.write(ctx, &positions)?;
        a.types.write(ctx, &types)?;
        a.key_spans.write(ctx, &key_spans)?;
        a.sentence_spans.write(ctx, &sentence_spans)?;
        let plan = &self.plans[&key];
        let refs: Vec<&Dispatch> = plan.dispatches.iter().collect();
        match observer {
            None => ctx.run(&refs).await?,
            Some(observer) => {
                let mut done = 0;
                for point in &plan.observe {
                    ctx.run(&refs[done..point.at]).await?;
                    done = point.at;
                    let x = point.x.read(ctx).await?;
                    for name in &point.names {
                        observer.observe(name, point.x.cols(), &x);
                    }
                }
                ctx.run(&refs[done..]).await?;
            }
        }
        let pooled = a.pooled.read_rows(ctx, batch.len()).await?;
        Ok(pooled.chunks_exact(self.config.dim).map(<[f32]>::to_vec).collect())
    }

    /// Every dispatch of a forward pass over `t` packed tokens in `n` sentences.
    async fn plan(&self, ctx: &Context, t: usize, n: usize) -> Result<Plan, Error> {
        let (c, a, w) = (&self.config, &self.acts, &self.weights);
        let rows = |x: &GpuTensor| x.view_rows(t);
        let (x, tmp, tmp2, q, k, v, attn, up) = (rows(&a.x)?, rows(&a.tmp)?, rows(&a.tmp2)?, rows(&a.q)?, rows(&a.k)?, rows(&a.v)?, rows(&a.attn)?, rows(&a.up)?);
        let mut d = plan_embed(ctx, &w.word, &a.ids, &x, t).await?;
        d.extend(plan_embed(ctx, &w.position, &a.positions, &tmp, t).await?);
        d.extend(plan_embed(ctx, &w.token_types, &a.types, &tmp2, t).await?);
        d.push(plan_add(ctx, &tmp, &tmp2, t * c.dim).await?);
        d.push(plan_add_layer_norm(ctx, &x, &tmp, &w.zeros, &w.embed_norm, &w.embed_norm_bias, c.eps).await?);
        let mut observe = Vec::new();
        for (i, l) in w.layers.iter().enumerate() {
            let name = |part: &str| format!("blk.{i}.{part}.weight");
            observe.push(ObservePoint { at: d.len(), names: vec![name("attn_q"), name("attn_k"), name("attn_v")], x: rows(&a.x)? });
            for (m, bias, y) in [(&l.q, &l.q_bias, &q), (&l.k, &l.k_bias, &k), (&l.v, &l.v_bias, &v)] {
                d.extend(plan_linear(ctx, m, &x, y, None).await?.dispatches);
                d.push(plan_add_bias(ctx, y, bias).await?);
            }
            d.push(plan_encoder_attention(ctx, c.heads, t, &q, &k, &v, &a.key_spans, &attn).await?);
            observe.push(ObservePoint { at: d.len(), names: vec![name("attn_output")], x: rows(&a.attn)? });
            d.extend(plan_linear(ctx, &l.o, &attn, &tmp, None).await?.dispatches);
            d.push(plan_add_layer_norm(ctx, &x, &tmp, &l.o_bias, &l.attn_norm, &l.attn_norm_bias, c.eps).await?);
            observe.push(ObservePoint { at: d.len(), names: vec![name("ffn_up")], x: rows(&a.x)? });
            d.extend(plan_linear(ctx, &l.up, &x, &up, None).await?.dispatches);
            d.push(plan_add_bias_gelu(ctx, &up, &l.up_bias).await?);
            observe.push(ObservePoint { at: d.len(), names: vec![name("ffn_down")], x: rows(&a.up)? });
            d.extend(plan_linear(ctx, &l.down, &up, &tmp, None).await?.dispatches);
            d.push(plan_add_layer_norm(ctx, &x, &tmp, &l.down_bias, &l.out_norm, &l.out_norm_bias, c.eps).await?);
        }
        let pooled = a.pooled.view_rows(n)?;
        d.push(plan_mean_pool_normalize(ctx, &x, &a.sentence_spans, n, &pooled).await?);
        Ok(Plan { dispatches: d, observe })
    }
}

/// A BERT model with its tokenizer: text in, embeddings out.
pub struct Embedder {
    pub model: Bert,
    pub tokenizer: BertTokenizer,
}

impl Embedder {
    /// Loads the model and the tokenizer its source carries (`tokenizer.huggingface.json`).
    pub async fn load(ctx: &Context, source: &dyn TensorSource, options: BertOptions) -> Result<Self, Error> {
        let model = Bert::load(ctx, source, options).await?;
        let tokenizer = BertTokenizer::from_metadata(source.metadata(), model.config().max_sequence)?;
        Ok(Self { model, tokenizer })
    }

    /// Tokenizes each text (truncated to the model's maximum sequence length).
    pub fn tokenize(&self, texts: &[&str]) -> Result<Vec<Sentence>, Error> {
        Ok(texts.iter().map(|t| self.tokenizer.encode(t)).collect::<Result<Vec<_>, _>>()?)
    }

    /// The normalized embedding of each text.
    pub async fn embed(&mut self, ctx: &Context, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        let sentences = self.tokenize(texts)?;
        self.model.forward(ctx, &sentences).await
    }
}
