//! The LLaMA side of [`HfModel`](super::HfModel): a Hugging Face `model_type: "llama"` directory
//! seen with llama.cpp's GGUF names, keys and tokenizer metadata, as `convert_hf_to_gguf.py`
//! writes them.
//!
//! - Tensors: `model.layers.3.self_attn.q_proj.weight` → `blk.3.attn_q.weight`, ... The rows of
//!   q and k are reordered per head (see [`permute_rows`]): Hugging Face rotates the two halves
//!   of a head while GGUF llama (and qgpu) rotate adjacent pairs.
//! - Metadata: `llama.*` hyper-parameters from `config.json`.
//! - Tokenizer: a byte-level BPE `tokenizer.json` becomes `tokenizer.ggml.model = "gpt2"` with
//!   tokens, token types, merges, the pre-tokenizer name, special ids, `add_bos_token` and the
//!   chat template of `tokenizer_config.json` (or `chat_template.jinja`).

use serde_json::Value;

use super::hf::{bad, HfFiles};
use super::source::LoadError;
use super::{Metadata, MetadataValue};

// llama.cpp's `tokenizer.ggml.token_type` values.
const TYPE_NORMAL: i32 = 1;
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;
const TYPE_UNUSED: i32 = 5;

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

/// Head counts that decide how q and k rows are reordered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LlamaHeads {
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    /// Reorder q and k rows (llama, whose GGUF RoPE pairs adjacent dimensions); Qwen2/3 keep
    /// Hugging Face's order, as llama.cpp's converter does (their RoPE rotates halves).
    pub permute: bool,
}

/// The Hugging Face `model_type`s read as this decoder family: llama, and Qwen2/3 (same
/// tensors, plus q/k/v biases in Qwen2 and per-head q/k norms in Qwen3).
pub const MODEL_TYPES: [&str; 3] = ["llama", "qwen2", "qwen3"];

/// llama.cpp's GGUF name for a Hugging Face LLaMA (or Qwen2/3) tensor; `None` for tensors the
/// model does not use (`rotary_emb.inv_freq` buffers).
pub fn gguf_name(hf: &str) -> Option<String> {
    let (stem, param) = hf.rsplit_once('.')?;
    let mapped = match stem {
        "model.embed_tokens" => "token_embd".to_owned(),
        "model.norm" => "output_norm".to_owned(),
        "lm_head" => "output".to_owned(),
        _ => {
            let (layer, part) = stem.strip_prefix("model.layers.")?.split_once('.')?;
            let layer: usize = layer.parse().ok()?;
            let part = match part {
                "self_attn.q_proj" => "attn_q",
                "self_attn.k_proj" => "attn_k",
                "self_attn.v_proj" => "attn_v",
                "self_attn.o_proj" => "attn_output",
                "mlp.gate_proj" => "ffn_gate",
                "mlp.up_proj" => "ffn_up",
                "mlp.down_proj" => "ffn_down",
                "input_layernorm" => "attn_norm",
                "post_attention_layernorm" => "ffn_norm",
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

/// How many heads the rows of GGUF tensor `name` are reordered over: q by the query heads, k by
/// the key/value heads, nothing else.
pub(crate) fn permuted_heads(name: &str, heads: LlamaHeads) -> Option<usize> {
    if !heads.permute {
        None
    } else if name.ends_with(".attn_q.weight") {
        Some(heads.heads)
    } else if name.ends_with(".attn_k.weight") {
        Some(heads.kv_heads)
    } else {
        None
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

/// `config.json` and the tokenizer files as GGUF metadata under `arch`'s keys (`llama`,
/// `qwen2`, `qwen3`: the `model_type`), and the head counts for q/k rows.
pub(crate) fn llama_metadata(path: &str, arch: &str, config: &Value, files: &HfFiles<'_>) -> Result<(Metadata, LlamaHeads), LoadError> {
    let positive = |key: &str| -> Result<u32, LoadError> {
        config
            .get(key)
            .and_then(Value::as_u64)
            .filter(|&v| v > 0 && v <= u32::MAX as u64)
            .map(|v| v as u32)
            .ok_or_else(|| bad(path, format!("config.json: `{key}` must be a positive integer")))
    };
    let set = |key: &str| config.get(key).is_some_and(|v| !v.is_null());
    let number = |key: &str, default: f64| -> Result<f64, LoadError> {
        match config.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(v) => v.as_f64().filter(|x| x.is_finite() && *x > 0.0).ok_or_else(|| bad(path, format!("config.json: `{key}` must be a positive number"))),
        }
    };
    if set("rope_scaling") {
        return Err(bad(path, "config.json: `rope_scaling` is set; qgpu runs plain RoPE only".into()));
    }
    // Qwen2's q/k/v biases are in every checkpoint (no flag); llama's would need permuting too.
    for flag in ["attention_bias", "mlp_bias"] {
        if config.get(flag).and_then(Value::as_bool) == Some(true) {
            return Err(bad(path, format!("config.json: `{flag}` is true; qgpu reads no {arch} biases but Qwen2's q/k/v ones")));
        }
    }
    let act = config.get("hidden_act").and_then(Value::as_str).unwrap_or("silu");
    if act != "silu" {
        return Err(bad(path, format!("config.json: hidden_act `{act}` (qgpu's llama runs `silu`)")));
    }
    let hidden = positive("hidden_size")?;
    let heads = positive("num_attention_heads")?;
    let kv_heads = if set("num_key_value_heads") { positive("num_key_value_heads")? } else { heads };
    if (arch != "qwen3" && hidden % heads != 0) || heads % kv_heads != 0 || (arch != "qwen3" && (hidden / heads) % 2 != 0) {
        return Err(bad(path, format!("config.json: {heads} heads sharing {kv_heads} KV heads do not split width {hidden} into even head sizes")));
    }
    // Qwen3 states its head size, which need not be width / heads.
    let head_dim = if arch == "qwen3" && set("head_dim") { positive("head_dim")? } else { hidden / heads };
    if head_dim % 2 != 0 || (arch != "qwen3" && set("head_dim") && positive("head_dim")? != head_dim) {
        return Err(bad(path, format!("config.json: `head_dim` differs from hidden_size / num_attention_heads = {head_dim}")));
    }
    let vocab = positive("vocab_size")?;

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
    put(&key("block_count"), positive("num_hidden_layers")?.into())?;
    put(&key("attention.head_count"), heads.into())?;
    put(&key("attention.head_count_kv"), kv_heads.into())?;
    put(&key("attention.key_length"), head_dim.into())?;
    put(&key("attention.value_length"), head_dim.into())?;
    put(&key("rope.freq_base"), (number("rope_theta", 10_000.0)? as f32).into())?;
    put(&key("attention.layer_norm_rms_epsilon"), (number("rms_norm_eps", 1e-6)? as f32).into())?;
    put(&key("rope.dimension_count"), head_dim.into())?;
    put(&key("vocab_size"), vocab.into())?;
    tokenizer_metadata(path, config, files, vocab as usize, &mut m)?;
    Ok((m, LlamaHeads { heads: heads as usize, kv_heads: kv_heads as usize, head_dim: head_dim as usize, permute: arch == "llama" }))
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
    if model_type != "BPE" || model.get("byte_fallback").and_then(Value::as_bool) == Some(true) {
        return Err(bad(path, format!("tokenizer.json: a `{model_type}` model with byte fallback (SentencePiece style); qgpu converts byte-level BPE only")));
    }
    let pre = json
        .get("pre_tokenizer")
        .and_then(pre_tokenizer_name)
        .ok_or_else(|| bad(path, "tokenizer.json: a pre_tokenizer qgpu does not reproduce (byte-level GPT-2, SmolLM, Llama 3 and Qwen2 splits)".into()))?;

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
        place(text, id.as_u64(), TYPE_NORMAL)?;
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
    put("tokenizer.ggml.model", "gpt2".into())?;
    put("tokenizer.ggml.pre", pre.into())?;
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
    fn maps_hf_llama_names() {
        assert_eq!(gguf_name("model.embed_tokens.weight").as_deref(), Some("token_embd.weight"));
        assert_eq!(gguf_name("model.layers.7.self_attn.o_proj.weight").as_deref(), Some("blk.7.attn_output.weight"));
        assert_eq!(gguf_name("model.layers.0.post_attention_layernorm.weight").as_deref(), Some("blk.0.ffn_norm.weight"));
        assert_eq!(gguf_name("model.layers.2.mlp.down_proj.weight").as_deref(), Some("blk.2.ffn_down.weight"));
        assert_eq!(gguf_name("lm_head.weight").as_deref(), Some("output.weight"));
        assert_eq!(gguf_name("model.layers.0.self_attn.rotary_emb.inv_freq"), None);
        assert_eq!(gguf_name("model.layers.x.mlp.up_proj.weight"), None);
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
