//! What differs between the decoder architectures qgpu runs, as data (llama.cpp's `llm_arch`
//! idea): one decoder reads an [`ArchSpec`] and the file's metadata and tensors, instead of one
//! copied decoder per model family.
//!
//! Some differences are announced by the file itself and need no entry here: biases
//! (`blk.N.attn_q.bias`, Qwen2), per-head Q/K norms (`attn_q_norm`, Qwen3 and Gemma 3),
//! post-attention and post-FFN norms (Gemma 2/3), RoPE frequency factors (`rope_freqs`, Llama
//! 3.x), soft-capping (`{arch}.attn_logit_softcapping`) and sliding windows
//! (`{arch}.attention.sliding_window`, for the architectures whose window layers are not
//! [`WindowLayers::Never`]) are used when present.

/// How RoPE pairs the dimensions of a head: adjacent pairs for llama (GGUF llama files hold Q
/// and K permuted for it), halves for the Hugging Face layouts of Qwen, Gemma and Phi-3, whose
/// GGUF tensors are not permuted.
pub use crate::ops::RopeStyle;

/// The gate's activation in the gated feed-forward network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Activation {
    /// SwiGLU: silu(gate) · up.
    Silu,
    /// GeGLU with the tanh approximation of GELU (Gemma).
    GeluTanh,
}

/// Which layers attend only within the sliding window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WindowLayers {
    /// None, even when the file names a window: llama.cpp ignores `attention.sliding_window`
    /// for these architectures (Phi-3's is disabled there, Qwen's unused), and qgpu gives
    /// llama.cpp's answer.
    Never,
    /// Every layer, when the file names a window.
    All,
    /// Layer `i` is a window layer unless `i % n == n - 1` (llama.cpp's `set_swa_pattern`):
    /// Gemma 2 alternates (n = 2), Gemma 3 has five window layers per global one (n = 6).
    AllButEvery(usize),
}

/// How Q·Kᵀ is scaled before the softmax.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryScale {
    /// 1/√head_dim.
    HeadDim,
    /// 1/√head_dim, except 1/√(width/heads) for the model with this many layers (Gemma 2 27B
    /// and Gemma 3 27B were trained with `query_pre_attn_scalar` = width / heads; llama.cpp
    /// keys the same rule on the layer count, since GGUF does not carry the scalar).
    HeadDimUnlessLayers(usize),
}

/// One architecture's differences from llama.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ArchSpec {
    /// `general.architecture`, and the prefix of its metadata keys.
    pub name: &'static str,
    pub rope: RopeStyle,
    pub activation: Activation,
    /// Embeddings are multiplied by √width before the first layer (Gemma).
    pub embed_scale: bool,
    pub window_layers: WindowLayers,
    /// RoPE base of the sliding-window layers when it is not the global `rope.freq_base`.
    pub window_rope_base: Option<f32>,
    pub query_scale: QueryScale,
    /// Q, K and V in one `attn_qkv` matrix, and gate and up in one `ffn_up` (gate rows first):
    /// split by rows when uploaded, so the rest of the decoder never sees the fusion.
    pub fused: bool,
    /// Layer `i` skips RoPE when `(i + 1) % n == 0` (SmolLM3's NoPE layers, n = 4).
    pub no_rope_every: Option<usize>,
}

const LLAMA: ArchSpec = ArchSpec {
    name: "llama",
    rope: RopeStyle::AdjacentPairs,
    activation: Activation::Silu,
    embed_scale: false,
    window_layers: WindowLayers::Never,
    window_rope_base: None,
    query_scale: QueryScale::HeadDim,
    fused: false,
    no_rope_every: None,
};

/// Every architecture the decoder runs.
pub const ARCHITECTURES: &[ArchSpec] = &[
    LLAMA,
    ArchSpec { name: "mistral", ..LLAMA },
    ArchSpec { name: "granite", ..LLAMA },
    ArchSpec { name: "qwen2", rope: RopeStyle::Halves, ..LLAMA },
    ArchSpec { name: "qwen3", rope: RopeStyle::Halves, ..LLAMA },
    ArchSpec { name: "smollm3", no_rope_every: Some(4), ..LLAMA },
    ArchSpec { name: "phi3", rope: RopeStyle::Halves, fused: true, ..LLAMA },
    ArchSpec {
        name: "gemma",
        rope: RopeStyle::Halves,
        activation: Activation::GeluTanh,
        embed_scale: true,
        ..LLAMA
    },
    ArchSpec {
        name: "gemma2",
        rope: RopeStyle::Halves,
        activation: Activation::GeluTanh,
        embed_scale: true,
        window_layers: WindowLayers::AllButEvery(2),
        query_scale: QueryScale::HeadDimUnlessLayers(46),
        ..LLAMA
    },
    ArchSpec {
        name: "gemma3",
        rope: RopeStyle::Halves,
        activation: Activation::GeluTanh,
        embed_scale: true,
        window_layers: WindowLayers::AllButEvery(6),
        window_rope_base: Some(10_000.0),
        query_scale: QueryScale::HeadDimUnlessLayers(62),
        ..LLAMA
    },
];

impl WindowLayers {
    /// Whether layer `layer` attends only within a window (when the model has one).
    pub fn is_window_layer(self, layer: usize) -> bool {
        match self {
            WindowLayers::Never => false,
            WindowLayers::All => true,
            WindowLayers::AllButEvery(n) => n == 0 || layer % n < n - 1,
        }
    }
}

impl ArchSpec {
    /// The entry for `general.architecture` = `name`.
    pub fn find(name: &str) -> Option<&'static ArchSpec> {
        ARCHITECTURES.iter().find(|a| a.name == name)
    }

    /// Whether layer `layer` rotates Q and K.
    pub fn uses_rope(&self, layer: usize) -> bool {
        self.no_rope_every.is_none_or(|n| n == 0 || !(layer + 1).is_multiple_of(n))
    }

    /// The supported names, comma-separated, for error messages.
    pub fn names() -> String {
        ARCHITECTURES.iter().map(|a| a.name).collect::<Vec<_>>().join(", ")
    }
}
