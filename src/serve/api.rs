//! OpenAI's JSON: requests checked field by field into what the engine runs (every wrong
//! type or value is an [`ApiError`] that names the field), and the answers and stream chunks.

use crate::model::chat::ChatMessage;
use crate::model::generate::StopReason;
use crate::model::sampler::SamplerConfig;
use serde_json::{json, Map, Value};

/// An error as OpenAI's API returns it: an HTTP status and `{"error": {...}}`.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub message: String,
    /// OpenAI's `type`: `invalid_request_error`, `authentication_error`, `server_error`, ...
    pub kind: &'static str,
    /// The request field at fault, if one is.
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn invalid(param: &str, message: impl Into<String>) -> Self {
        Self { status: 400, message: message.into(), kind: "invalid_request_error", param: Some(param.to_owned()), code: None }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self { status: 400, message: message.into(), kind: "invalid_request_error", param: None, code: None }
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self { status: 503, message: message.into(), kind: "server_error", param: None, code: Some("unavailable") }
    }
    pub fn body(&self) -> Value {
        json!({ "error": { "message": self.message, "type": self.kind, "param": self.param, "code": self.code } })
    }
}

/// What the server accepts.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Positions of each slot's KV cache: prompt and answer together.
    pub context: usize,
    /// `max_tokens` at most.
    pub max_tokens: usize,
    pub vocab: usize,
}

/// Generation settings common to both endpoints.
#[derive(Clone, Debug)]
pub struct Generation {
    pub stream: bool,
    pub include_usage: bool,
    /// Asked for, if asked; [`Generation::max_tokens_for`] applies the default and limits.
    pub max_tokens: Option<u64>,
    pub sampler: SamplerConfig,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub stop: Vec<String>,
}

/// What the prompt is.
#[derive(Clone, Debug)]
pub enum Prompt {
    Chat(Vec<ChatMessage>),
    Text(String),
    Tokens(Vec<u32>),
}

/// The request object's fields, each read with a typed error naming it. `null` counts as absent.
struct Fields<'a>(&'a Map<String, Value>);

impl<'a> Fields<'a> {
    fn get(&self, name: &str) -> Option<&'a Value> {
        self.0.get(name).filter(|v| !v.is_null())
    }
    fn number(&self, name: &str, lo: f64, hi: f64) -> Result<Option<f64>, ApiError> {
        let Some(v) = self.get(name) else { return Ok(None) };
        let x = v.as_f64().ok_or_else(|| ApiError::invalid(name, format!("`{name}` must be a number, not {}", kind(v))))?;
        if !(lo..=hi).contains(&x) {
            return Err(ApiError::invalid(name, format!("`{name}` is {x}; it must be in [{lo}, {hi}]")));
        }
        Ok(Some(x))
    }
    fn integer(&self, name: &str) -> Result<Option<i64>, ApiError> {
        let Some(v) = self.get(name) else { return Ok(None) };
        v.as_i64().or_else(|| v.as_u64().map(|u| u as i64)).map(Some).ok_or_else(|| ApiError::invalid(name, format!("`{name}` must be an integer, not {}", kind(v))))
    }
    fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        let Some(v) = self.get(name) else { return Ok(None) };
        v.as_bool().map(Some).ok_or_else(|| ApiError::invalid(name, format!("`{name}` must be true or false, not {}", kind(v))))
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Parses a request body into its JSON object.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(ApiError::bad_request(format!("the request body must be a JSON object, not {}", kind(&other)))),
        Err(e) => Err(ApiError::bad_request(format!("the request body is not valid JSON: {e}"))),
    }
}

/// Reads the generation settings. `seed` is used when the request gives none.
pub fn generation(obj: &Map<String, Value>, seed: u64) -> Result<Generation, ApiError> {
    let f = Fields(obj);
    // Options that would change the answer's shape are refused rather than ignored.
    if let Some(n) = f.integer("n")? {
        if n != 1 {
            return Err(ApiError::invalid("n", format!("`n` is {n}; qgpu serve returns one choice (n = 1)")));
        }
    }
    if let Some(n) = f.integer("best_of")? {
        if n != 1 {
            return Err(ApiError::invalid("best_of", format!("`best_of` is {n}; qgpu serve supports only 1")));
        }
    }
    if f.get("logprobs").is_some_and(|v| v != &Value::Bool(false)) {
        return Err(ApiError::invalid("logprobs", "`logprobs` is not supported"));
    }
    if f.get("tools").is_some_and(|v| v.as_array().is_none_or(|a| !a.is_empty())) {
        return Err(ApiError::invalid("tools", "`tools` (function calling) is not supported"));
    }
    if let Some(format) = f.get("response_format") {
        if format.get("type").and_then(Value::as_str) != Some("text") {
            return Err(ApiError::invalid("response_format", "only `{\"type\": \"text\"}` is supported as `response_format`"));
        }
    }
    let stream = f.bool("stream")?.unwrap_or(false);
    let include_usage = match f.get("stream_options") {
        None => false,
        Some(Value::Object(o)) => Fields(o).bool("include_usage").map_err(|e| ApiError { param: Some("stream_options.include_usage".into()), ..e })?.unwrap_or(false),
        Some(v) => return Err(ApiError::invalid("stream_options", format!("`stream_options` must be an object, not {}", kind(v)))),
    };
    let max_tokens = match (f.integer("max_completion_tokens")?, f.integer("max_tokens")?) {
        (Some(n), _) | (None, Some(n)) if n < 1 => return Err(ApiError::invalid("max_tokens", format!("`max_tokens` is {n}; it must be at least 1"))),
        (Some(n), _) | (None, Some(n)) => Some(n as u64),
        (None, None) => None,
    };
    // OpenAI's defaults: temperature 1, top-p 1, nothing else.
    let seed = match f.integer("seed")? {
        Some(s) => s as u64,
        None => seed,
    };
    let sampler = SamplerConfig {
        temperature: f.number("temperature", 0.0, 2.0)?.unwrap_or(1.0) as f32,
        top_p: match f.number("top_p", 0.0, 1.0)? {
            Some(0.0) => return Err(ApiError::invalid("top_p", "`top_p` must be above 0")),
            p => p.unwrap_or(1.0) as f32,
        },
        // llama-server's extensions, which many clients send.
        top_k: f.integer("top_k")?.map_or(Ok(0), |k| usize::try_from(k).map_err(|_| ApiError::invalid("top_k", format!("`top_k` is {k}; it must be ≥ 0"))))?,
        min_p: f.number("min_p", 0.0, 1.0)?.unwrap_or(0.0) as f32,
        repetition_penalty: f.number("repeat_penalty", 1e-3, 100.0)?.unwrap_or(1.0) as f32,
        repetition_window: 64,
        seed,
    };
    let stop = match f.get("stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => {
            if items.len() > 4 {
                return Err(ApiError::invalid("stop", format!("`stop` has {} strings; at most 4 are allowed", items.len())));
            }
            items.iter().map(|v| v.as_str().map(str::to_owned).ok_or_else(|| ApiError::invalid("stop", format!("`stop` must hold strings, not {}", kind(v))))).collect::<Result<_, _>>()?
        }
        Some(v) => return Err(ApiError::invalid("stop", format!("`stop` must be a string or an array of strings, not {}", kind(v)))),
    };
    let stop = stop.into_iter().filter(|s: &String| !s.is_empty()).collect();
    Ok(Generation {
        stream,
        include_usage,
        max_tokens,
        sampler,
        frequency_penalty: f.number("frequency_penalty", -2.0, 2.0)?.unwrap_or(0.0) as f32,
        presence_penalty: f.number("presence_penalty", -2.0, 2.0)?.unwrap_or(0.0) as f32,
        stop,
    })
}

impl Generation {
    /// The answer's token budget for a prompt of `prompt` tokens: what was asked (at most
    /// `limits.max_tokens`), by default all the context left.
    pub fn max_tokens_for(&self, prompt: usize, limits: &Limits) -> Result<usize, ApiError> {
        if prompt >= limits.context {
            return Err(ApiError {
                code: Some("context_length_exceeded"),
                ..ApiError::invalid("messages", format!("the prompt has {prompt} tokens; the context holds {} (prompt and answer together)", limits.context))
            });
        }
        match self.max_tokens {
            Some(n) if n > limits.max_tokens as u64 => Err(ApiError::invalid("max_tokens", format!("`max_tokens` is {n}; this server's limit is {}", limits.max_tokens))),
            Some(n) => Ok(n as usize),
            None => Ok((limits.context - prompt).min(limits.max_tokens)),
        }
    }
}

/// The `messages` of a chat request.
pub fn chat_prompt(obj: &Map<String, Value>) -> Result<Prompt, ApiError> {
    let Some(Value::Array(items)) = Fields(obj).get("messages") else {
        return Err(ApiError::invalid("messages", "`messages` must be an array of messages"));
    };
    if items.is_empty() {
        return Err(ApiError::invalid("messages", "`messages` is empty"));
    }
    let mut messages = Vec::with_capacity(items.len());
    for (i, m) in items.iter().enumerate() {
        let param = format!("messages[{i}]");
        let Value::Object(m) = m else { return Err(ApiError::invalid(&param, format!("{param} must be an object, not {}", kind(m)))) };
        let role = match m.get("role") {
            Some(Value::String(r)) if ["system", "developer", "user", "assistant", "tool"].contains(&r.as_str()) => if r == "developer" { "system" } else { r.as_str() },
            Some(r) => return Err(ApiError::invalid(&format!("{param}.role"), format!("{param}.role must be system, developer, user, assistant or tool, not {r}"))),
            None => return Err(ApiError::invalid(&format!("{param}.role"), format!("{param} has no role"))),
        };
        let content = match m.get("content") {
            Some(Value::String(s)) => s.clone(),
            None | Some(Value::Null) if role == "assistant" => String::new(),
            // Content parts: only text ones.
            Some(Value::Array(parts)) => {
                let mut text = String::new();
                for (j, part) in parts.iter().enumerate() {
                    match (part.get("type").and_then(Value::as_str), part.get("text").and_then(Value::as_str)) {
                        (Some("text"), Some(t)) => text.push_str(t),
                        _ => return Err(ApiError::invalid(&format!("{param}.content[{j}]"), format!("{param}.content[{j}] is not a text part; only text is supported"))),
                    }
                }
                text
            }
            Some(v) => return Err(ApiError::invalid(&format!("{param}.content"), format!("{param}.content must be a string or an array of text parts, not {}", kind(v)))),
            None => return Err(ApiError::invalid(&format!("{param}.content"), format!("{param} has no content"))),
        };
        messages.push(ChatMessage::new(role, content));
    }
    Ok(Prompt::Chat(messages))
}

/// The `prompt` of a completion request: a string, or token ids (one prompt only).
pub fn completion_prompt(obj: &Map<String, Value>, vocab: usize) -> Result<Prompt, ApiError> {
    let f = Fields(obj);
    if f.get("suffix").is_some() {
        return Err(ApiError::invalid("suffix", "`suffix` is not supported"));
    }
    if f.bool("echo")? == Some(true) {
        return Err(ApiError::invalid("echo", "`echo` is not supported"));
    }
    let tokens = |items: &Vec<Value>| -> Result<Vec<u32>, ApiError> {
        items.iter().map(|v| v.as_u64().filter(|&t| (t as usize) < vocab).map(|t| t as u32).ok_or_else(|| ApiError::invalid("prompt", format!("`prompt` token {v} is not an id below the vocabulary size {vocab}")))).collect()
    };
    let one = |v: &Value| -> Result<Prompt, ApiError> {
        match v {
            Value::String(s) => Ok(Prompt::Text(s.clone())),
            Value::Array(items) if items.iter().all(Value::is_number) && !items.is_empty() => Ok(Prompt::Tokens(tokens(items)?)),
            v => Err(ApiError::invalid("prompt", format!("`prompt` must be a string or an array of token ids, not {}", kind(v)))),
        }
    };
    match f.get("prompt") {
        None => Err(ApiError::invalid("prompt", "`prompt` is missing")),
        Some(Value::Array(items)) if items.iter().all(|v| v.is_string() || v.is_array()) => match items.as_slice() {
            [single] => one(single),
            _ => Err(ApiError::invalid("prompt", format!("`prompt` holds {} prompts; qgpu serve takes one per request", items.len()))),
        },
        Some(v) => one(v),
    }
}

/// OpenAI's `finish_reason` for a [`StopReason`].
pub fn finish_reason(stop: StopReason) -> &'static str {
    match stop {
        StopReason::EndOfText | StopReason::StopString => "stop",
        StopReason::MaxTokens | StopReason::ContextFull => "length",
        StopReason::Cancelled => "cancelled",
    }
}

pub fn usage_json(u: &super::engine::Usage) -> Value {
    json!({
        "prompt_tokens": u.prompt_tokens,
        "completion_tokens": u.completion_tokens,
        "total_tokens": u.prompt_tokens + u.completion_tokens,
        "prompt_tokens_details": { "cached_tokens": u.cached_tokens },
    })
}

/// Which endpoint an answer is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    Chat,
    Completion,
}

impl Endpoint {
    pub fn id_prefix(self) -> &'static str {
        match self {
            Endpoint::Chat => "chatcmpl",
            Endpoint::Completion => "cmpl",
        }
    }
}

/// The fields every answer and chunk share.
#[derive(Clone, Debug)]
pub struct Header {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub endpoint: Endpoint,
}

impl Header {
    /// The whole answer of a request without `stream`.
    pub fn answer(&self, text: &str, usage: &super::engine::Usage) -> Value {
        let choice = match self.endpoint {
            Endpoint::Chat => json!({ "index": 0, "message": { "role": "assistant", "content": text }, "logprobs": null, "finish_reason": finish_reason(usage.finish) }),
            Endpoint::Completion => json!({ "index": 0, "text": text, "logprobs": null, "finish_reason": finish_reason(usage.finish) }),
        };
        let object = if self.endpoint == Endpoint::Chat { "chat.completion" } else { "text_completion" };
        json!({ "id": self.id, "object": object, "created": self.created, "model": self.model, "choices": [choice], "usage": usage_json(usage), "system_fingerprint": fingerprint() })
    }

    /// A stream chunk: `text` (chat: with the role on the first), or the end's reason.
    pub fn chunk(&self, text: Option<&str>, first: bool, finish: Option<StopReason>) -> Value {
        let reason = finish.map(finish_reason);
        let choice = match self.endpoint {
            Endpoint::Chat => {
                let mut delta = Map::new();
                if first {
                    delta.insert("role".into(), "assistant".into());
                }
                if let Some(t) = text {
                    delta.insert("content".into(), t.into());
                }
                json!({ "index": 0, "delta": delta, "logprobs": null, "finish_reason": reason })
            }
            Endpoint::Completion => json!({ "index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": reason }),
        };
        self.wrap(vec![choice], None)
    }

    /// The last chunk of `stream_options.include_usage`: no choices, the usage.
    pub fn usage_chunk(&self, usage: &super::engine::Usage) -> Value {
        self.wrap(vec![], Some(usage_json(usage)))
    }

    fn wrap(&self, choices: Vec<Value>, usage: Option<Value>) -> Value {
        let object = if self.endpoint == Endpoint::Chat { "chat.completion.chunk" } else { "text_completion" };
        json!({ "id": self.id, "object": object, "created": self.created, "model": self.model, "choices": choices, "usage": usage, "system_fingerprint": fingerprint() })
    }
}

fn fingerprint() -> String {
    format!("qgpu-{}", env!("CARGO_PKG_VERSION"))
}

/// An embeddings request: its texts, and whether the answer is base64 (the `openai` package
/// asks for that by default).
pub struct EmbeddingRequest {
    pub texts: Vec<String>,
    pub base64: bool,
}

/// Inputs one embeddings request may hold (OpenAI's limit).
pub const MAX_EMBEDDING_INPUTS: usize = 2048;

pub fn embedding_request(obj: &Map<String, Value>) -> Result<EmbeddingRequest, ApiError> {
    let f = Fields(obj);
    let texts = match f.get("input") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) if items.iter().all(Value::is_string) => items.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        Some(Value::Array(_)) => return Err(ApiError::invalid("input", "`input` must be a string or an array of strings; token ids are not supported")),
        Some(v) => return Err(ApiError::invalid("input", format!("`input` must be a string or an array of strings, not {}", kind(v)))),
        None => return Err(ApiError::invalid("input", "`input` is missing")),
    };
    if texts.is_empty() || texts.len() > MAX_EMBEDDING_INPUTS {
        return Err(ApiError::invalid("input", format!("`input` holds {} texts; 1 to {MAX_EMBEDDING_INPUTS} are allowed", texts.len())));
    }
    if let Some(i) = texts.iter().position(String::is_empty) {
        return Err(ApiError::invalid("input", format!("`input[{i}]` is empty")));
    }
    if f.get("dimensions").is_some() {
        return Err(ApiError::invalid("dimensions", "`dimensions` is not supported: the model's own width is returned"));
    }
    let base64 = match f.get("encoding_format") {
        None => false,
        Some(Value::String(s)) if s == "float" => false,
        Some(Value::String(s)) if s == "base64" => true,
        Some(v) => return Err(ApiError::invalid("encoding_format", format!("`encoding_format` must be \"float\" or \"base64\", not {v}"))),
    };
    Ok(EmbeddingRequest { texts, base64 })
}

pub fn embedding_answer(embeddings: &[Vec<f32>], tokens: usize, base64: bool, model: &str) -> Value {
    let data: Vec<Value> = embeddings
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let embedding = if base64 { Value::String(base64_f32(e)) } else { json!(e) };
            json!({ "object": "embedding", "index": i, "embedding": embedding })
        })
        .collect();
    json!({ "object": "list", "data": data, "model": model, "usage": { "prompt_tokens": tokens, "total_tokens": tokens } })
}

/// The little-endian bytes of `values` in standard base64 (OpenAI's `encoding_format: base64`).
fn base64_f32(values: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |n, (i, &b)| n | (b as u32) << (16 - 8 * i));
        for i in 0..4 {
            out.push(if i <= chunk.len() { ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char } else { '=' });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_alphabet_and_padding() {
        // 1.0f32 is 00 00 80 3f; two values make 8 bytes, so one `=` of padding.
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[1.0, -2.0]), "AACAPwAAAMA=");
        assert_eq!(base64_f32(&[]), "");
    }
}
