//! Text generation: tokenize (with the chat template if asked), prefill, then sample and decode
//! token by token, streaming text as it completes. Shared by the CLI and the browser API.

use super::chat::ChatMessage;
use super::llama::{Llama, Logits, MemoryUse};
use super::sampler::{Sampler, SamplerConfig, StopChecker, StopStatus};
use super::tokenizer::{SpecialText, TokenStream, Tokenizer};
use crate::gpu::Context;
use crate::Error;
use web_time::Instant;

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerateOptions {
    /// New tokens at most.
    pub max_tokens: usize,
    /// Wrap the prompt as a user message in the model's chat template.
    pub chat: bool,
    pub sampler: SamplerConfig,
    /// Generation ends before any of these strings; they are never emitted.
    pub stop: Vec<String>,
    /// Whether control-token text in the prompt (`<|im_end|>`) becomes control tokens; by
    /// default it is plain text, so a prompt cannot forge chat roles.
    pub special: SpecialText,
    /// Keep the KV cache of the longest prefix this prompt shares with the previous sequence
    /// (a chat's earlier turns) instead of prefilling it again. Off by default: a prefix
    /// prefilled in other chunks can differ in the last bits, and a seeded run should repeat.
    pub reuse_prefix: bool,
}

impl Default for GenerateOptions {
    fn default() -> Self {
        Self { max_tokens: 128, chat: false, sampler: SamplerConfig::default(), stop: Vec::new(), special: SpecialText::Plain, reuse_prefix: false }
    }
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StopReason {
    EndOfText,
    StopString,
    MaxTokens,
    ContextFull,
    Cancelled,
}

/// Measured cost of one generation.
#[derive(Clone, Copy, Debug)]
pub struct GenerationStats {
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV cache was kept from the previous sequence (not prefilled).
    pub cached_tokens: usize,
    pub prefill_seconds: f64,
    pub generated_tokens: usize,
    /// Single-token forward passes (each generated token after the first costs one).
    pub decode_steps: usize,
    pub decode_seconds: f64,
    pub stop: StopReason,
    pub memory: MemoryUse,
}

impl GenerationStats {
    /// Prompt tokens prefilled (those not kept from the previous sequence) per second.
    pub fn prefill_tokens_per_second(&self) -> f64 {
        (self.prompt_tokens - self.cached_tokens) as f64 / self.prefill_seconds.max(1e-9)
    }
    pub fn decode_tokens_per_second(&self) -> f64 {
        self.decode_steps as f64 / self.decode_seconds.max(1e-9)
    }
}

/// A language model with its tokenizer.
pub struct Generator {
    pub model: Llama,
    pub tokenizer: Tokenizer,
    /// The tokens whose keys and values the model's cache holds, in order (empty when unknown).
    cached: Vec<u32>,
}

impl Generator {
    pub fn new(model: Llama, tokenizer: Tokenizer) -> Self {
        Self { model, tokenizer, cached: Vec::new() }
    }

    /// Token ids of `prompt`, through the chat template when `chat` is set.
    pub fn prompt_ids(&self, prompt: &str, chat: bool, special: SpecialText) -> Result<Vec<u32>, Error> {
        Ok(if chat {
            self.tokenizer.encode_chat_with(&[ChatMessage::user(prompt)], true, special)?
        } else {
            self.tokenizer.encode_with(prompt, special)?
        })
    }

    /// Generates a continuation of `prompt` (a fresh sequence). `on_text` receives each piece
    /// of text as it completes and returns `false` to cancel. Returns the whole text.
    pub async fn generate(
        &mut self,
        ctx: &Context,
        prompt: &str,
        options: &GenerateOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(String, GenerationStats), Error> {
        let ids = self.prompt_ids(prompt, options.chat, options.special)?;
        self.generate_ids(ctx, ids, options, on_text).await
    }

    /// Generates the next assistant message of a chat (`messages` through the chat template,
    /// with the assistant's turn opened); `options.chat` is not consulted.
    pub async fn generate_chat(
        &mut self,
        ctx: &Context,
        messages: &[ChatMessage],
        options: &GenerateOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(String, GenerationStats), Error> {
        let ids = self.tokenizer.encode_chat_with(messages, true, options.special)?;
        self.generate_ids(ctx, ids, options, on_text).await
    }

    /// Where the model's cache stands for a sequence starting with `ids`: the KV of the
    /// longest prefix shared with the cached tokens is kept when `reuse` is set (at least one
    /// token is always fed, for its logits), else the sequence starts afresh. Returns how many
    /// tokens were kept.
    fn start_sequence(&mut self, ids: &[u32], reuse: bool) -> usize {
        let cached = std::mem::take(&mut self.cached);
        let shared = cached.iter().zip(ids).take_while(|(a, b)| a == b).count().min(ids.len().saturating_sub(1));
        if reuse && shared > 0 && self.model.position() == cached.len() && self.model.rewind(shared).is_ok() {
            return shared;
        }
        self.model.reset();
        0
    }

    async fn generate_ids(
        &mut self,
        ctx: &Context,
        ids: Vec<u32>,
        options: &GenerateOptions,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<(String, GenerationStats), Error> {
        options.sampler.validate()?;
        let kept = self.start_sequence(&ids, options.reuse_prefix);
        let mut sampler = Sampler::new(options.sampler);
        let mut stream = TokenStream::new();
        let mut stops = StopChecker::new(options.stop.iter().cloned());
        let mut history = ids.clone();
        let mut text = String::new();
        let mut stats = GenerationStats {
            prompt_tokens: ids.len(),
            cached_tokens: kept,
            prefill_seconds: 0.0,
            generated_tokens: 0,
            decode_steps: 0,
            decode_seconds: 0.0,
            stop: StopReason::MaxTokens,
            memory: self.model.memory(),
        };

        let start = Instant::now();
        let mut logits = self.model.forward(ctx, &ids[kept..], Logits::Last).await?;
        // The cache now holds the prompt; each token fed below joins it.
        let mut fed = ids;
        stats.prefill_seconds = start.elapsed().as_secs_f64();

        let mut emit = |piece: &str, text: &mut String| -> bool {
            text.push_str(piece);
            piece.is_empty() || on_text(piece)
        };
        let decode_start = Instant::now();
        loop {
            if stats.generated_tokens >= options.max_tokens {
                break;
            }
            let next = sampler.sample(&logits, &history)?;
            if self.tokenizer.is_end_of_generation(next) {
                stats.stop = StopReason::EndOfText;
                break;
            }
            stats.generated_tokens += 1;
            history.push(next);
            let piece = stream.push(&self.tokenizer, next)?;
            let (piece, stopped) = match stops.push(&piece) {
                StopStatus::Continue(p) => (p, false),
                StopStatus::Stopped(p) => (p, true),
            };
            if !emit(&piece, &mut text) {
                stats.stop = StopReason::Cancelled;
                break;
            }
            if stopped {
                stats.stop = StopReason::StopString;
                break;
            }
            if stats.generated_tokens >= options.max_tokens {
                break;
            }
            if self.model.position() >= self.model.context() {
                stats.stop = StopReason::ContextFull;
                break;
            }
            logits = self.model.forward(ctx, &[next], Logits::Last).await?;
            fed.push(next);
            stats.decode_steps += 1;
        }
        stats.decode_seconds = decode_start.elapsed().as_secs_f64();
        if !matches!(stats.stop, StopReason::StopString | StopReason::Cancelled) {
            // Bytes of an unfinished character, and text held back as a possible stop prefix.
            let tail = match stops.push(&stream.finish()) {
                StopStatus::Continue(p) => p + &stops.finish(),
                StopStatus::Stopped(p) => p,
            };
            emit(&tail, &mut text);
        }
        self.cached = fed;
        Ok((text, stats))
    }
}
