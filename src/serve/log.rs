//! One line per request on stderr, as text or JSON (`--log-format`).

use std::io::Write;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!("unknown log format `{other}` (text, json)")),
        }
    }
}

/// What is logged when a request ends.
pub struct RequestLog<'a> {
    pub id: &'a str,
    pub prompt_tokens: usize,
    pub cached_tokens: usize,
    pub generated_tokens: usize,
    /// From the request's arrival to its first sampled token (embeddings: to the answer).
    pub ttft_ms: Option<f64>,
    /// Generated tokens after the first, per second.
    pub tokens_per_second: Option<f64>,
    pub finish: &'static str,
}

#[derive(Clone, Copy, Debug)]
pub struct Logger {
    pub format: LogFormat,
}

impl Logger {
    pub fn request(&self, r: &RequestLog) {
        let line = match self.format {
            LogFormat::Json => serde_json::json!({
                "id": r.id,
                "prompt_tokens": r.prompt_tokens,
                "cached_tokens": r.cached_tokens,
                "generated_tokens": r.generated_tokens,
                "ttft_ms": r.ttft_ms,
                "tokens_per_second": r.tokens_per_second,
                "finish_reason": r.finish,
            })
            .to_string(),
            LogFormat::Text => {
                let opt = |v: Option<f64>, digits: usize| v.map_or("-".to_owned(), |v| format!("{v:.digits$}"));
                format!(
                    "{} prompt={} cached={} generated={} ttft_ms={} tok/s={} finish={}",
                    r.id,
                    r.prompt_tokens,
                    r.cached_tokens,
                    r.generated_tokens,
                    opt(r.ttft_ms, 0),
                    opt(r.tokens_per_second, 2),
                    r.finish
                )
            }
        };
        // A closed stderr must not take the server down.
        let _ = writeln!(std::io::stderr().lock(), "{line}");
    }
}
