//! The decoder side of [`HfModel`](super::HfModel): a Hugging Face LLaMA, Qwen2/3, Gemma 1/2/3,
//! Phi-3 or SmolLM3 directory seen with llama.cpp's GGUF names, keys and tokenizer metadata, as
//! `convert_hf_to_gguf.py` writes them. What differs between the families is data (a
//! [`Family`] each), not code.
//!
//! - Tensors: `model.layers.3.self_attn.q_proj.weight` → `blk.3.attn_q.weight`, ... The rows of
//!   q and k are reordered per head for llama-derived families (see [`permute_rows`]): Hugging
//!   Face rotates the two halves of a head while GGUF llama (and qgpu) rotate adjacent pairs.
//!   Gemma's RMSNorm weights `w` are applied as `1 + w`, so they gain one (llama.cpp does the
//!   same), which makes them f32.
//! - Metadata: `{arch}.*` hyper-parameters from `config.json`, refused where qgpu would compute
//!   something else than transformers (RoPE scaling, other activations, another window pattern).
//! - Tokenizer: a byte-level BPE `tokenizer.json` becomes `tokenizer.ggml.model = "gpt2"`; a
//!   SentencePiece-style one (BPE with byte fallback: Gemma, Llama 2, Phi-3) becomes `"llama"`
//!   with its merges kept in their ranked order. Either way with token types, special ids,
//!   `add_bos_token` and the chat template of `tokenizer_config.json` (or `chat_template.jinja`).

use serde_json::Value;

use super::hf::{bad, HfFiles};
use super::source::LoadError;
use super::{Metadata, MetadataValue};

// llama.cpp's `tokenizer.ggml.token_type` values.
const TYPE_NORMAL: i32 = 1;
const TYPE_UNKNOWN: i32 = 2;
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;
const TYPE_UNUSED: i32 = 5;
const TYPE_BYTE: i32 = 6;

/// Split regexes of the pre-tokenizers qgpu's tokenizer knows, as `tokenizer.json` spells them,
/// with their `tokenizer.ggml.pre` name.
const SPLIT_PRE: &[(&str, &str)] = &[
    (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        "llama3",
    ),
    (
        r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+",
        "qwen2",
    ),
];

/// How a family names its per-layer RMSNorms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Norms {
    /// `input_layernorm` before attention, `post_attention_layernorm` before the FFN.
    Pre,
    /// Gemma 2/3: also a norm after each: `post_attention_layernorm` follows attention and
    /// `pre_feedforward_layernorm` / `post_feedforward_layernorm` wrap the FFN.
    Sandwich,
}

/// One Hugging Face decoder family, as llama.cpp's converter treats it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Family {
    /// `config.json`'s `model_type`.
    pub model_type: &'static str,
    /// The `general.architecture` llama.cpp converts it to, and the prefix of its keys.
    pub arch: &'static str,
    /// q and k rows are reordered for adjacent-pair RoPE (llama and its descendants).
    pub permute: bool,
    pub norms: Norms,
    /// RMSNorm weights are stored as `w` and applied as `1 + w` (Gemma).
    pub norm_plus_one: bool,
    /// The head size is config.json's `head_dim`, which need not be width / heads.
    pub stated_head_dim: bool,
    /// Q, K and V carry biases in every checkpoint, with no flag (Qwen2).
    pub qkv_bias: bool,
    /// The FFN gate's activation, as config.json names it.
    pub activation: &'static str,
    /// Q/K/V in one `qkv_proj`, gate and up in one `gate_up_proj` (Phi-3).
    pub fused: bool,
    /// `attn_logit_softcapping` is applied (Gemma 2); transformers' Gemma 3 reads but ignores it.
    pub attn_softcap: bool,
}

const LLAMA: Family = Family {
    model_type: "llama",
    arch: "llama",
    permute: true,
    norms: Norms::Pre,
    norm_plus_one: false,
    stated_head_dim: false,
    qkv_bias: false,
    activation: "silu",
    fused: false,
    attn_softcap: false,
};

const GEMMA: Family = Family {
    model_type: "gemma",
    arch: "gemma",
    permute: false,
    norm_plus_one: true,
    stated_head_dim: true,
    activation: "gelu_pytorch_tanh",
    ..LLAMA
};

/// The decoder families qgpu reads from Hugging Face directories.
pub(crate) const FAMILIES: &[Family] = &[
    LLAMA,
    Family { model_type: "qwen2", arch: "qwen2", permute: false, qkv_bias: true, ..LLAMA },
    Family { model_type: "qwen3", arch: "qwen3", permute: false, stated_head_dim: true, ..LLAMA },
    Family { model_type: "smollm3", arch: "smollm3", ..LLAMA },
    Family { model_type: "phi3", arch: "phi3", permute: false, fused: true, ..LLAMA },
    GEMMA,
    Family { model_type: "gemma2", arch: "gemma2", norms: Norms::Sandwich, attn_softcap: true, ..GEMMA },
    Family { model_type: "gemma3_text", arch: "gemma3", norms: Norms::Sandwich, ..GEMMA },
];

impl Family {
    /// The family of `model_type`.
    pub fn find(model_type: &str) -> Option<&'static Family> {
        FAMILIES.iter().find(|f| f.model_type == model_type)
    }

    /// llama.cpp's GGUF name for one of this family's Hugging Face tensors; `None` for tensors
    /// the model does not use (`rotary_emb.inv_freq` buffers).
    pub fn gguf_name(&self, hf: &str) -> Option<String> {
        let (stem, param) = hf.rsplit_once('.')?;
        let mapped = match stem {
            "model.embed_tokens" => "token_embd".to_owned(),
            "model.norm" => "output_norm".to_owned(),
            "lm_head" => "output".to_owned(),
            _ => {
                let (layer, part) = stem.strip_prefix("model.layers.")?.split_once('.')?;
                let layer: usize = layer.parse().ok()?;
                let sandwich = self.norms == Norms::Sandwich;
                let part = match part {
                    "self_attn.q_proj" => "attn_q",
                    "self_attn.k_proj" => "attn_k",
                    "self_attn.v_proj" => "attn_v",
                    "self_attn.qkv_proj" if self.fused => "attn_qkv",
                    "self_attn.o_proj" => "attn_output",
                    "mlp.gate_proj" => "ffn_gate",
                    "mlp.up_proj" => "ffn_up",
                    "mlp.gate_up_proj" if self.fused => "ffn_up",
                    "mlp.down_proj" => "ffn_down",
                    "input_layernorm" => "attn_norm",
                    "post_attention_layernorm" if sandwich => "post_attention_norm",
                    "post_attention_layernorm" => "ffn_norm",
                    "pre_feedforward_layernorm" if sandwich => "ffn_norm",
                    "post_feedforward_layernorm" if sandwich => "post_ffw_norm",
                    "self_attn.q_norm" => "attn_q_norm",
                    "self_attn.k_norm" => "attn_k_norm",
                    _ => return None,
                };
                format!("blk.{layer}.{part}")
            }
        };
        // Weights everywhere; biases only on q, k and v (Qwen2's).
        let biased = [".attn_q", ".attn_k", ".attn_v"].iter().any(|p| mapped.ends_with(p));
        match param {
            "weight" => Some(format!("{mapped}.weight")),
            "bias" if biased => Some(format!("{mapped}.bias")),
            _ => None,
        }
    }

    /// Whether GGUF tensor `name` is a norm weight stored as `w` for `1 + w`.
    pub fn plus_one(&self, name: &str) -> bool {
        self.norm_plus_one && name.ends_with("norm.weight")
    }
}

/// A decoder directory's family and head counts (which decide how q and k rows are reordered).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct DecoderShape {
    pub family: &'static Family,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
}

impl DecoderShape {
    /// How many heads the rows of GGUF tensor `name` are reordered over: q by the query heads,
    /// k by the key/value heads, nothing else (and nothing at all for families with HF's RoPE).
    pub fn permuted_heads(&self, name: &str) -> Option<usize> {
        if !self.family.permute {
            None
        } else if name.ends_with(".attn_q.weight") {
            Some(self.heads)
        } else if name.ends_with(".attn_k.weight") {
            Some(self.kv_heads)
        } else {
            None
        }
    }
}

/// Reorders the `rows` rows of `bytes` (whole rows, whatever the element type) the way
/// llama.cpp's converter does for q and k: within each of `heads` heads, row `j·d/2 + i`
/// (half `j`, index `i`) moves to `2i + j`, so the rotated pairs become adjacent.
pub fn permute_rows(bytes: &[u8], rows: usize, heads: usize) -> Option<Vec<u8>> {
    if rows == 0 || heads == 0 || !bytes.len().is_multiple_of(rows) || !rows.is_multiple_of(2 * heads) {
        return None;
    }
    let row = bytes.len() / rows;
    let head_rows = rows / heads;
    let half = head_rows / 2;
    let mut out = vec![0u8; bytes.len()];
    for h in 0..heads {
        for j in 0..2 {
            for i in 0..half {
                let from = h * head_rows + j * half + i;
                let to = h * head_rows + 2 * i + j;
                out[to * row..(to + 1) * row].copy_from_slice(&bytes[from * row..(from + 1) * row]);
            }
        }
    }
    Some(out)
}

fn parse_json(path: &str, what: &str, bytes: &[u8]) -> Result<Value, LoadError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| bad(path, format!("{what}: {e}")))?;
    if !value.is_object() {
        return Err(bad(path, format!("{what} is not a JSON object")));
    }
    Ok(value)
}

/// `config.json` and the tokenizer files as GGUF metadata under `family.arch`'s keys, and the
/// head counts for q/k rows.
pub(crate) fn decoder_metadata(path: &str, family: &'static Family, config: &Value, files: &HfFiles<'_>) -> Result<(Metadata, DecoderShape), LoadError> {
    let positive = |key: &str| -> Result<u32, LoadError> {
        config
            .get(key)
            .and_then(Value::as_u64)
            .filter(|&v| v > 0 && v <= u32::MAX as u64)
            .map(|v| v as u32)
            .ok_or_else(|| bad(path, format!("config.json: `{key}` must be a positive integer")))
    };
    let set = |key: &str| config.get(key).is_some_and(|v| !v.is_null());
    let arch = family.arch;
    if config.get("use_sliding_window").and_then(Value::as_bool) == Some(true) {
        return Err(bad(path, format!("config.json: `use_sliding_window` is true; qgpu's {arch} attends to the whole context")));
    }
    // Qwen2's q/k/v biases are in every checkpoint (no flag); others' would need their own paths.
    for flag in ["attention_bias", "mlp_bias"] {
        if config.get(flag).and_then(Value::as_bool) == Some(true) {
            return Err(bad(path, format!("config.json: `{flag}` is true; qgpu reads no {arch} biases but Qwen2's q/k/v ones")));
        }
    }
    // Gemma names it `hidden_activation` (and may keep a stale `hidden_act`).
    if let Some((key, act)) = ["hidden_activation", "hidden_act"].iter().find_map(|k| Some((*k, config.get(*k)?.as_str()?))) {
        if act != family.activation {
            return Err(bad(path, format!("config.json: {key} `{act}` (qgpu's {arch} runs `{}`)", family.activation)));
        }
    }
    let hidden = positive("hidden_size")?;
    let heads = positive("num_attention_heads")?;
    let kv_heads = if set("num_key_value_heads") { positive("num_key_value_heads")? } else { heads };
    let stated = family.stated_head_dim && set("head_dim");
    if (!stated && hidden % heads != 0) || heads % kv_heads != 0 {
        return Err(bad(path, format!("config.json: {heads} heads sharing {kv_heads} KV heads do not split width {hidden} into head sizes")));
    }
    let head_dim = if stated { positive("head_dim")? } else { hidden / heads };
    if head_dim % 2 != 0 || (set("head_dim") && positive("head_dim")? != head_dim) {
        return Err(bad(path, format!("config.json: `head_dim` differs from hidden_size / num_attention_heads = {head_dim}, or is odd")));
    }
    let layers = positive("num_hidden_layers")?;
    let vocab = positive("vocab_size")?;
    let rope_dims = match config.get("partial_rotary_factor").and_then(Value::as_f64) {
        None => head_dim,
        Some(f) => {
            let dims = f * head_dim as f64;
            if !(f > 0.0 && f <= 1.0) || dims.fract() != 0.0 || !(dims as u32).is_multiple_of(2) {
                return Err(bad(path, format!("config.json: `partial_rotary_factor` {f} does not rotate an even number of the {head_dim} head dimensions")));
            }
            dims as u32
        }
    };

    let mut m = Metadata::new();
    let mut put = |key: &str, value: MetadataValue| m.insert(key, value).map_err(LoadError::from);
    put("general.architecture", arch.into())?;
    if let Some(name) = config.get("_name_or_path").and_then(Value::as_str).filter(|s| !s.is_empty()) {
        put("general.name", name.into())?;
    }
    let key = |k: &str| format!("{arch}.{k}");
    put(&key("context_length"), positive("max_position_embeddings")?.into())?;
    put(&key("embedding_length"), hidden.into())?;
    put(&key("feed_forward_length"), positive("intermediate_size")?.into())?;
    put(&key("block_count"), layers.into())?;
    put(&key("attention.head_count"), heads.into())?;
    put(&key("attention.head_count_kv"), kv_heads.into())?;
    put(&key("attention.key_length"), head_dim.into())?;
    put(&key("attention.value_length"), head_dim.into())?;
    put(&key("rope.freq_base"), (rope_theta(path, config, FULL)?.unwrap_or(10_000.0) as f32).into())?;
    put(&key("attention.layer_norm_rms_epsilon"), (positive_number(path, config, "rms_norm_eps")?.unwrap_or(1e-6) as f32).into())?;
    put(&key("rope.dimension_count"), rope_dims.into())?;
    put(&key("vocab_size"), vocab.into())?;
    if family.norms == Norms::Sandwich {
        gemma_metadata(path, family, config, layers as usize, &mut m)?;
    }
    if family.model_type == "smollm3" {
        check_no_rope_layers(path, config, layers as usize)?;
    }
    tokenizer_metadata(path, config, files, vocab as usize, &mut m)?;
    let shape = DecoderShape { family, heads: heads as usize, kv_heads: kv_heads as usize, head_dim: head_dim as usize };
    Ok((m, shape))
}

/// Gemma 2/3's attention as GGUF keys: the sliding window and which layers use it, the window
/// layers' RoPE base, soft-capping and the query scale.
fn gemma_metadata(path: &str, family: &Family, config: &Value, layers: usize, m: &mut Metadata) -> Result<(), LoadError> {
    let arch = family.arch;
    let mut put = |key: &str, value: MetadataValue| m.insert(format!("{arch}.{key}"), value).map(|_| ()).map_err(LoadError::from);
    let positive_number = |key: &str| positive_number(path, config, key);
    if let Some(window) = positive_number("sliding_window")? {
        put("attention.sliding_window", (window as u32).into())?;
    }
    // Which layers are windowed: `layer_types` spelled out, else a pattern length.
    let pattern = match config.get("layer_types").and_then(Value::as_array) {
        Some(types) => {
            let n = types.iter().position(|t| t.as_str() == Some("full_attention")).map_or(0, |i| i + 1);
            let matches = |i: usize, t: &Value| t.as_str() == Some(if n > 0 && i % n == n - 1 { "full_attention" } else { "sliding_attention" });
            if n == 0 || types.len() != layers || !types.iter().enumerate().all(|(i, t)| matches(i, t)) {
                return Err(bad(path, "config.json: `layer_types` is not a repeating run of sliding layers ending in a full one".into()));
            }
            Some(n)
        }
        None => ["sliding_window_pattern", "_sliding_window_pattern"].iter().find_map(|k| config.get(*k).and_then(Value::as_u64)).map(|n| n as usize),
    };
    if let Some(n) = pattern.filter(|&n| n > 0) {
        put("attention.sliding_window_pattern", (n as u32).into())?;
    }
    if let Some(base) = rope_theta(path, config, SLIDING)? {
        put("rope.freq_base_swa", (base as f32).into())?;
    }
    let caps: &[&str] = if family.attn_softcap { &["attn_logit_softcapping", "final_logit_softcapping"] } else { &["final_logit_softcapping"] };
    for cap in caps {
        if let Some(c) = positive_number(cap)? {
            put(cap, (c as f32).into())?;
        }
    }
    // Queries are scaled by 1/√query_pre_attn_scalar: head_dim for most sizes, width / heads
    // for the 27B ones. llama.cpp's key for that scale is `attention.scale`.
    if let Some(scalar) = positive_number("query_pre_attn_scalar")? {
        put("attention.scale", ((1.0 / scalar.sqrt()) as f32).into())?;
    }
    Ok(())
}

/// transformers' names of the two kinds of attention layer.
const FULL: &str = "full_attention";
const SLIDING: &str = "sliding_attention";

/// The RoPE base of `layer_type`'s layers: from transformers 5's `rope_parameters` (one entry,
/// or one per layer type), else from the older `rope_theta` (`rope_local_base_freq` for
/// window layers). Any RoPE but the plain one (scaled, YaRN, LongRoPE...) is refused.
fn rope_theta(path: &str, config: &Value, layer_type: &str) -> Result<Option<f64>, LoadError> {
    if let Some(params) = config.get("rope_parameters").filter(|p| p.is_object()) {
        let per_type = params.get(FULL).is_some() || params.get(SLIDING).is_some();
        let entry = match (per_type, params.get(layer_type)) {
            (true, Some(entry)) => entry,
            (false, _) if layer_type == FULL => params,
            _ => return Ok(None),
        };
        let kind = entry.get("rope_type").and_then(Value::as_str).unwrap_or("default");
        if kind != "default" {
            return Err(bad(path, format!("config.json: `rope_parameters` has rope_type `{kind}`; qgpu runs plain RoPE only")));
        }
        return positive_number(path, entry, "rope_theta");
    }
    if config.get("rope_scaling").is_some_and(|v| !v.is_null()) {
        return Err(bad(path, "config.json: `rope_scaling` is set; qgpu runs plain RoPE only".into()));
    }
    positive_number(path, config, if layer_type == SLIDING { "rope_local_base_freq" } else { "rope_theta" })
}

/// `object[key]` (config.json or one of its entries) as a positive number; `None` when absent
/// or null, an error naming the key when it is anything else.
fn positive_number(path: &str, object: &Value, key: &str) -> Result<Option<f64>, LoadError> {
    match object.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_f64().filter(|x| x.is_finite() && *x > 0.0).map(Some).ok_or_else(|| bad(path, format!("config.json: `{key}` must be a positive number"))),
    }
}

/// SmolLM3 skips RoPE in every fourth layer; `no_rope_layers` (1 = RoPE) must say exactly that.
fn check_no_rope_layers(path: &str, config: &Value, layers: usize) -> Result<(), LoadError> {
    let Some(flags) = config.get("no_rope_layers").and_then(Value::as_array) else { return Ok(()) };
    let expected = |i: usize| u64::from(!(i + 1).is_multiple_of(4));
    if flags.len() != layers || flags.iter().enumerate().any(|(i, f)| f.as_u64() != Some(expected(i))) {
        return Err(bad(path, "config.json: `no_rope_layers` is not SmolLM3's every-fourth-layer pattern".into()));
    }
    Ok(())
}

/// How a `tokenizer.json` turns text into BPE symbols.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Style {
    /// GPT-2's byte-to-character mapping after a regex split (`tokenizer.ggml.pre` names it).
    ByteLevel { pre: &'static str },
    /// SentencePiece's: spaces become `▁` (one prepended when `add_space_prefix`), and
    /// characters outside the vocabulary fall back to `<0xAB>` byte pieces.
    SentencePiece { add_space_prefix: bool },
}

/// `<0xAB>`: a SentencePiece byte piece.
fn is_byte_piece(text: &str) -> bool {
    text.len() == 6 && text.starts_with("<0x") && text.ends_with('>') && u8::from_str_radix(&text[3..5], 16).is_ok()
}

/// Whether a SentencePiece-style tokenizer prepends `▁`, if its normalizer and pre-tokenizer are
/// ones qgpu reproduces: `Replace(" ", "▁")`, optionally after `Prepend("▁")` (Llama 2, Gemma;
/// a pre-tokenizer splitting on " " then has nothing to split), or no normalizer and a
/// non-splitting `Metaspace` (newer Mistral-style files).
fn sentencepiece_prefix(json: &Value) -> Option<bool> {
    let kind = |v: &Value| v.get("type").and_then(Value::as_str).map(str::to_owned);
    let string = |v: &Value, key: &str| v.get(key).and_then(|p| p.get("String").or(Some(p))).and_then(Value::as_str).map(str::to_owned);
    let is_replace = |v: &Value| kind(v).as_deref() == Some("Replace") && string(v, "pattern").as_deref() == Some(" ") && v.get("content").and_then(Value::as_str) == Some("▁");
    let is_prepend = |v: &Value| kind(v).as_deref() == Some("Prepend") && v.get("prepend").and_then(Value::as_str) == Some("▁");
    let normalizer = json.get("normalizer").filter(|v| !v.is_null());
    let pre = json.get("pre_tokenizer").filter(|v| !v.is_null());
    match normalizer {
        Some(n) => {
            let prefix = if is_replace(n) {
                false
            } else {
                match n.get("normalizers").and_then(Value::as_array).map(Vec::as_slice) {
                    Some([p, r]) if kind(n).as_deref() == Some("Sequence") && is_prepend(p) && is_replace(r) => true,
                    Some([r]) if kind(n).as_deref() == Some("Sequence") && is_replace(r) => false,
                    _ => return None,
                }
            };
            let splits_spaces = |p: &Value| kind(p).as_deref() == Some("Split") && string(p, "pattern").as_deref() == Some(" ");
            pre.is_none_or(splits_spaces).then_some(prefix)
        }
        None => {
            let p = pre?;
            let metaspace = kind(p).as_deref() == Some("Metaspace")
                && p.get("replacement").and_then(Value::as_str) == Some("▁")
                && p.get("split").and_then(Value::as_bool) == Some(false);
            let scheme = p.get("prepend_scheme").and_then(Value::as_str).unwrap_or("always");
            metaspace.then_some(scheme != "never")
        }
    }
}

/// SentencePiece scores for a vocabulary known by its ranked merges: a piece scores minus the
/// rank of the first merge that makes it, so llama.cpp, which merges by score, merges in the
/// same order; pieces no merge makes score below every merged one.
fn merge_scores(texts: &[String], merges: &[String]) -> Vec<f32> {
    let mut rank: std::collections::HashMap<String, usize> = std::collections::HashMap::with_capacity(merges.len());
    for (i, merge) in merges.iter().enumerate() {
        // The separating space is the first after the first character (a part may be a space).
        let first = merge.chars().next().map_or(0, char::len_utf8);
        if let Some(pos) = merge[first..].find(' ').map(|p| p + first) {
            rank.entry(format!("{}{}", &merge[..pos], &merge[pos + 1..])).or_insert(i);
        }
    }
    texts.iter().enumerate().map(|(i, t)| -(rank.get(t).copied().unwrap_or(merges.len() + i) as f32)).collect()
}

/// `"<s>"` or `{"content": "<s>", ...}` (how tokenizer_config.json spells special tokens).
fn token_content(v: &Value) -> Option<&str> {
    v.as_str().or_else(|| v.get("content").and_then(Value::as_str))
}

/// The `tokenizer.ggml.pre` name of a byte-level `pre_tokenizer`, or `None` if qgpu's tokenizer
/// would split text differently.
fn pre_tokenizer_name(pre: &Value) -> Option<&'static str> {
    let kind = |v: &Value| v.get("type").and_then(Value::as_str).unwrap_or("").to_owned();
    let byte_level = |v: &Value, regex: bool| kind(v) == "ByteLevel" && v.get("use_regex").and_then(Value::as_bool).unwrap_or(true) == regex;
    if byte_level(pre, true) {
        return Some("default");
    }
    let stages = pre.get("pretokenizers").and_then(Value::as_array).filter(|_| kind(pre) == "Sequence")?;
    match stages.as_slice() {
        [digits, level] if kind(digits) == "Digits" && digits.get("individual_digits").and_then(Value::as_bool) == Some(true) && byte_level(level, true) => Some("smollm"),
        [split, level] if kind(split) == "Split" && byte_level(level, false) => {
            let regex = split.get("pattern").and_then(|p| p.get("Regex")).and_then(Value::as_str)?;
            let isolated = split.get("behavior").and_then(Value::as_str) == Some("Isolated");
            let name = SPLIT_PRE.iter().find(|(r, _)| *r == regex).map(|(_, n)| *n)?;
            isolated.then_some(name)
        }
        _ => None,
    }
}

/// A byte-level BPE `tokenizer.json` (+ `tokenizer_config.json`) as `tokenizer.ggml.*` keys.
fn tokenizer_metadata(path: &str, config: &Value, files: &HfFiles<'_>, vocab_size: usize, m: &mut Metadata) -> Result<(), LoadError> {
    let json = parse_json(path, "tokenizer.json", files.tokenizer)?;
    let model = json.get("model").ok_or_else(|| bad(path, "tokenizer.json: no `model`".into()))?;
    let model_type = model.get("type").and_then(Value::as_str).unwrap_or("BPE");
    if model_type != "BPE" {
        return Err(bad(path, format!("tokenizer.json: a `{model_type}` model; qgpu converts BPE (byte-level, or SentencePiece-style with byte fallback)")));
    }
    let style = if model.get("byte_fallback").and_then(Value::as_bool) == Some(true) {
        let prefix = sentencepiece_prefix(&json)
            .ok_or_else(|| bad(path, "tokenizer.json: a normalizer/pre_tokenizer qgpu does not reproduce (SentencePiece style: spaces as ▁, optionally one prepended)".into()))?;
        Style::SentencePiece { add_space_prefix: prefix }
    } else {
        let pre = json
            .get("pre_tokenizer")
            .and_then(pre_tokenizer_name)
            .ok_or_else(|| bad(path, "tokenizer.json: a pre_tokenizer qgpu does not reproduce (byte-level GPT-2, SmolLM, Llama 3 and Qwen2 splits)".into()))?;
        Style::ByteLevel { pre }
    };
    let spm = matches!(style, Style::SentencePiece { .. });
    let unk_text = model.get("unk_token").and_then(Value::as_str);
    // SentencePiece vocabularies mark byte pieces and the unknown piece by type.
    let normal_type = |text: &str| match () {
        _ if spm && is_byte_piece(text) => TYPE_BYTE,
        _ if spm && Some(text) == unk_text => TYPE_UNKNOWN,
        _ => TYPE_NORMAL,
    };

    let mut tokens: Vec<Option<(String, i32)>> = vec![None; vocab_size];
    let mut place = |text: &str, id: Option<u64>, ty: i32| -> Result<(), LoadError> {
        let slot = id
            .and_then(|id| tokens.get_mut(usize::try_from(id).ok()?))
            .ok_or_else(|| bad(path, format!("tokenizer.json: token {text:?} has no id below vocab_size {vocab_size}")))?;
        *slot = Some((text.to_owned(), ty));
        Ok(())
    };
    let vocab = model.get("vocab").and_then(Value::as_object).ok_or_else(|| bad(path, "tokenizer.json: `model.vocab` is not an object".into()))?;
    for (text, id) in vocab {
        place(text, id.as_u64(), normal_type(text))?;
    }
    for added in json.get("added_tokens").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
        let text = added.get("content").and_then(Value::as_str).ok_or_else(|| bad(path, "tokenizer.json: an added token has no `content`".into()))?;
        let special = added.get("special").and_then(Value::as_bool).unwrap_or(false);
        place(text, added.get("id").and_then(Value::as_u64), if special { TYPE_CONTROL } else { TYPE_USER_DEFINED })?;
    }
    let (texts, types): (Vec<String>, Vec<i32>) =
        tokens.into_iter().enumerate().map(|(i, t)| t.unwrap_or_else(|| (format!("[PAD{i}]"), TYPE_UNUSED))).unzip();

    let merges = model.get("merges").and_then(Value::as_array).ok_or_else(|| bad(path, "tokenizer.json: `model.merges` is not an array".into()))?;
    let merges = merges
        .iter()
        .map(|merge| match merge {
            Value::String(s) => Some(s.clone()),
            Value::Array(pair) => match pair.as_slice() {
                [Value::String(a), Value::String(b)] => Some(format!("{a} {b}")),
                _ => None,
            },
            _ => None,
        })
        .collect::<Option<Vec<String>>>()
        .ok_or_else(|| bad(path, "tokenizer.json: a merge is neither \"a b\" nor [\"a\", \"b\"]".into()))?;

    let tokenizer_config = files.tokenizer_config.map(|b| parse_json(path, "tokenizer_config.json", b)).transpose()?;
    let from_config = |key: &str| tokenizer_config.as_ref().and_then(|c| c.get(key));
    let id_of = |text: &str| texts.iter().position(|t| t == text).map(|i| i as u32);
    // The ids config.json gives, else the token tokenizer_config.json names.
    let special = |id_key: &str, token_key: &str| -> Option<u32> {
        let id = config.get(id_key).and_then(|v| v.as_u64().or_else(|| v.as_array()?.first()?.as_u64()));
        id.and_then(|id| u32::try_from(id).ok()).filter(|&id| (id as usize) < vocab_size).or_else(|| from_config(token_key).and_then(token_content).and_then(id_of))
    };
    let bos = special("bos_token_id", "bos_token");
    let eos = special("eos_token_id", "eos_token");
    let pad = special("pad_token_id", "pad_token");
    let unk = from_config("unk_token").and_then(token_content).and_then(id_of);
    let add_bos = match from_config("add_bos_token").and_then(Value::as_bool) {
        Some(add) => add,
        // No setting: whether the post-processor's single-sequence template starts with BOS.
        None => json
            .get("post_processor")
            .and_then(|p| p.get("single"))
            .and_then(Value::as_array)
            .and_then(|single| single.first()?.get("SpecialToken")?.get("id")?.as_str().and_then(id_of))
            .is_some_and(|first| Some(first) == bos),
    };
    let template = match from_config("chat_template") {
        Some(Value::String(t)) => Some(t.clone()),
        Some(Value::Array(named)) => named
            .iter()
            .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
            .and_then(|t| t.get("template").and_then(Value::as_str).map(str::to_owned)),
        _ => None,
    };
    let template = match (template, files.chat_template) {
        (Some(t), _) => Some(t),
        (None, Some(bytes)) => Some(String::from_utf8(bytes.to_vec()).map_err(|e| bad(path, format!("chat_template.jinja is not UTF-8: {e}")))?),
        (None, None) => None,
    };

    let mut put = |key: &str, value: MetadataValue| m.insert(key, value).map(|_| ()).map_err(LoadError::from);
    match style {
        Style::ByteLevel { pre } => {
            put("tokenizer.ggml.model", "gpt2".into())?;
            put("tokenizer.ggml.pre", pre.into())?;
        }
        Style::SentencePiece { add_space_prefix } => {
            put("tokenizer.ggml.model", "llama".into())?;
            put("tokenizer.ggml.add_space_prefix", add_space_prefix.into())?;
            put("tokenizer.ggml.scores", merge_scores(&texts, &merges).into())?;
        }
    }
    put("tokenizer.ggml.tokens", texts.into())?;
    put("tokenizer.ggml.token_type", types.into())?;
    put("tokenizer.ggml.merges", merges.into())?;
    for (key, id) in [
        ("tokenizer.ggml.bos_token_id", bos),
        ("tokenizer.ggml.eos_token_id", eos),
        ("tokenizer.ggml.padding_token_id", pad),
        ("tokenizer.ggml.unknown_token_id", unk),
    ] {
        if let Some(id) = id {
            put(key, id.into())?;
        }
    }
    put("tokenizer.ggml.add_bos_token", add_bos.into())?;
    if let Some(t) = template {
        put("tokenizer.chat_template", t.into())?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_hf_decoder_names_per_family() {
        let llama = Family::find("llama").unwrap();
        let gguf_name = |hf: &str| llama.gguf_name(hf);
        assert_eq!(gguf_name("model.embed_tokens.weight").as_deref(), Some("token_embd.weight"));
        assert_eq!(gguf_name("model.layers.7.self_attn.o_proj.weight").as_deref(), Some("blk.7.attn_output.weight"));
        assert_eq!(gguf_name("model.layers.0.post_attention_layernorm.weight").as_deref(), Some("blk.0.ffn_norm.weight"));
        assert_eq!(gguf_name("model.layers.2.mlp.down_proj.weight").as_deref(), Some("blk.2.ffn_down.weight"));
        assert_eq!(gguf_name("lm_head.weight").as_deref(), Some("output.weight"));
        assert_eq!(gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq"), None);
        assert_eq!(gguf_name("model.layers.x.mlp.up_proj.weight"), None);
        // Fused projections exist only where the family fuses them.
        assert_eq!(gguf_name("model.layers.0.self_attn.qkv_proj.weight"), None);
        let phi3 = Family::find("phi3").unwrap();
        assert_eq!(phi3.gguf_name("model.layers.0.self_attn.qkv_proj.weight").as_deref(), Some("blk.0.attn_qkv.weight"));
        assert_eq!(phi3.gguf_name("model.layers.0.mlp.gate_up_proj.weight").as_deref(), Some("blk.0.ffn_up.weight"));
        // Gemma 3's four norms a layer: post_attention_layernorm follows attention there.
        let gemma3 = Family::find("gemma3_text").unwrap();
        assert_eq!(gemma3.arch, "gemma3");
        assert_eq!(gemma3.gguf_name("model.layers.1.post_attention_layernorm.weight").as_deref(), Some("blk.1.post_attention_norm.weight"));
        assert_eq!(gemma3.gguf_name("model.layers.1.pre_feedforward_layernorm.weight").as_deref(), Some("blk.1.ffn_norm.weight"));
        assert_eq!(gemma3.gguf_name("model.layers.1.post_feedforward_layernorm.weight").as_deref(), Some("blk.1.post_ffw_norm.weight"));
        assert_eq!(llama.gguf_name("model.layers.1.pre_feedforward_layernorm.weight"), None);
        assert!(gemma3.plus_one("blk.1.attn_q_norm.weight") && gemma3.plus_one("output_norm.weight"));
        assert!(!gemma3.plus_one("blk.1.attn_q.weight") && !llama.plus_one("output_norm.weight"));
    }

    #[test]
    fn sentencepiece_normalizers_are_read_or_refused() {
        let v = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        let replace = r#"{"type":"Replace","pattern":{"String":" "},"content":"▁"}"#;
        let prepend = r#"{"type":"Prepend","prepend":"▁"}"#;
        // Llama 2: prepend, then replace; no pre-tokenizer.
        let llama2 = format!(r#"{{"normalizer":{{"type":"Sequence","normalizers":[{prepend},{replace}]}},"pre_tokenizer":null}}"#);
        assert_eq!(sentencepiece_prefix(&v(&llama2)), Some(true));
        // Gemma: replace only, and a split on spaces that has none left to split.
        let gemma = format!(r#"{{"normalizer":{replace},"pre_tokenizer":{{"type":"Split","pattern":{{"String":" "}},"behavior":"MergedWithPrevious","invert":false}}}}"#);
        assert_eq!(sentencepiece_prefix(&v(&gemma)), Some(false));
        let metaspace = r#"{"normalizer":null,"pre_tokenizer":{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":false}}"#;
        assert_eq!(sentencepiece_prefix(&v(metaspace)), Some(true));
        let splitting = r#"{"normalizer":null,"pre_tokenizer":{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":true}}"#;
        assert_eq!(sentencepiece_prefix(&v(splitting)), None);
        let lowercase = format!(r#"{{"normalizer":{{"type":"Sequence","normalizers":[{{"type":"Lowercase"}},{replace}]}}}}"#);
        assert_eq!(sentencepiece_prefix(&v(&lowercase)), None);
    }

    #[test]
    fn merge_scores_follow_merge_rank() {
        let texts: Vec<String> = ["<unk>", "a", "b", "ab", "c", "abc", " x"].iter().map(|s| s.to_string()).collect();
        let merges: Vec<String> = ["a b", "ab c", "a bc", "  x"].iter().map(|s| s.to_string()).collect();
        let scores = merge_scores(&texts, &merges);
        // "ab" from merge 0, "abc" first from merge 1, " x" (a part that is a space) from merge 3;
        // pieces no merge makes score below all of those.
        assert_eq!(scores, [-4.0, -5.0, -6.0, 0.0, -8.0, -1.0, -3.0]);
        assert!(is_byte_piece("<0x0A>") && !is_byte_piece("<0xZZ>") && !is_byte_piece("<unk>"));
    }

    #[test]
    fn rows_of_each_head_interleave_their_halves() {
        // 2 heads of 4 rows, one byte a row: head rows [a0 a1 b0 b1] → [a0 b0 a1 b1].
        let out = permute_rows(&[0, 1, 2, 3, 4, 5, 6, 7], 8, 2).unwrap();
        assert_eq!(out, [0, 2, 1, 3, 4, 6, 5, 7]);
        // Rows of 3 bytes move whole.
        let out = permute_rows(&[1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4], 4, 1).unwrap();
        assert_eq!(out, [1, 1, 1, 3, 3, 3, 2, 2, 2, 4, 4, 4]);
        assert_eq!(permute_rows(&[0; 6], 6, 2), None);
        assert_eq!(permute_rows(&[0; 7], 4, 1), None);
    }

    #[test]
    fn pre_tokenizers_are_named_or_refused() {
        let v = |s: &str| serde_json::from_str::<Value>(s).unwrap();
        assert_eq!(pre_tokenizer_name(&v(r#"{"type":"ByteLevel","add_prefix_space":false,"use_regex":true}"#)), Some("default"));
        let smollm = r#"{"type":"Sequence","pretokenizers":[{"type":"Digits","individual_digits":true},{"type":"ByteLevel","use_regex":true}]}"#;
        assert_eq!(pre_tokenizer_name(&v(smollm)), Some("smollm"));
        let llama3 = serde_json::json!({"type":"Sequence","pretokenizers":[
            {"type":"Split","pattern":{"Regex":SPLIT_PRE[0].0},"behavior":"Isolated","invert":false},
            {"type":"ByteLevel","use_regex":false}]});
        assert_eq!(pre_tokenizer_name(&llama3), Some("llama3"));
        assert_eq!(pre_tokenizer_name(&v(r#"{"type":"Metaspace"}"#)), None);
        assert_eq!(pre_tokenizer_name(&v(r#"{"type":"ByteLevel","use_regex":false}"#)), None);
    }
}
