//! Chat templates: the Jinja template a GGUF stores under
//! `tokenizer.chat_template`, rendered with [`minijinja`] the way
//! `transformers`' `apply_chat_template` renders it (`trim_blocks` and
//! `lstrip_blocks` on, `bos_token`/`eos_token`/`add_generation_prompt`
//! variables, `raise_exception`, Python string and dict methods such as
//! `.strip()`, `.startswith()`, `.items()`).
//!
//! Templates come from model files and are treated as untrusted: rendering
//! runs on a fuel budget, so a template cannot loop for ever.

use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, Error as JinjaError, ErrorKind, Value};

use super::tokenizer::TokenizerError;

/// Used when a model has no `tokenizer.chat_template`.
pub const CHATML_TEMPLATE: &str = "{% for message in messages %}\
{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}\
{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Used when a model has no `tokenizer.chat_template` but its vocabulary has Gemma's turn
/// markers (some Gemma GGUFs ship without a template). Gemma has no system role: a system
/// message opens the next user turn, as Gemma's own template does.
pub const GEMMA_TEMPLATE: &str = "{{ bos_token }}{% set system = namespace(text='') %}\
{% for message in messages %}{% if message['role'] == 'system' %}{% set system.text = message['content'] | trim + '\n\n' %}\
{% else %}{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}\
{{ '<start_of_turn>' + role + '\n' + system.text + message['content'] | trim + '<end_of_turn>\n' }}{% set system.text = '' %}\
{% endif %}{% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}";

/// Instructions one render may execute (about 30 per message for typical templates).
const FUEL: u64 = 20_000_000;
const NAME: &str = "chat_template";

/// One turn of a conversation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, or whatever else the template knows.
    pub role: String,
    /// The message text.
    pub content: String,
}

impl ChatMessage {
    /// A message with any role.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Self { role: role.into(), content: content.into() }
    }

    /// A `system` message.
    pub fn system(content: impl Into<String>) -> Self {
        Self::new("system", content)
    }

    /// A `user` message.
    pub fn user(content: impl Into<String>) -> Self {
        Self::new("user", content)
    }

    /// An `assistant` message.
    pub fn assistant(content: impl Into<String>) -> Self {
        Self::new("assistant", content)
    }
}

/// A compiled chat template with the model's BOS/EOS texts.
#[derive(Clone)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    is_fallback: bool,
    /// Set when the template does not compile; reported by every render.
    compile_error: Option<String>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source", &self.source)
            .field("is_fallback", &self.is_fallback)
            .field("compile_error", &self.compile_error)
            .finish_non_exhaustive()
    }
}

fn raise_exception(message: String) -> Result<Value, JinjaError> {
    Err(JinjaError::new(ErrorKind::InvalidOperation, message))
}

/// The error with its chain of causes.
fn jinja_message(e: &JinjaError) -> String {
    let mut message = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        message.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    message
}

fn template_error(e: JinjaError) -> TokenizerError {
    TokenizerError::Template { message: jinja_message(&e) }
}

impl ChatTemplate {
    /// Compiles `source` (or [`CHATML_TEMPLATE`], with a warning, when `None`).
    /// A template that does not compile is kept: every render then returns
    /// [`TokenizerError::Template`], so loading a model never fails over it.
    pub fn new(source: Option<&str>, bos_token: &str, eos_token: &str) -> Self {
        Self::with_fallback(source, CHATML_TEMPLATE, bos_token, eos_token)
    }

    /// [`ChatTemplate::new`] with `fallback` ([`CHATML_TEMPLATE`] or [`GEMMA_TEMPLATE`]) used
    /// when the model has no template.
    pub fn with_fallback(source: Option<&str>, fallback: &str, bos_token: &str, eos_token: &str) -> Self {
        let is_fallback = source.is_none();
        if is_fallback {
            let name = if fallback == GEMMA_TEMPLATE { "Gemma's" } else { "ChatML" };
            log::warn!("tokenizer: no tokenizer.chat_template in the model, using {name}");
        }
        let source = source.unwrap_or(fallback).to_owned();
        let mut env = Environment::new();
        if let Ok(syntax) = SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build() {
            env.set_syntax(syntax);
        }
        env.set_fuel(Some(FUEL));
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        let compile_error = env.add_template_owned(NAME, source.clone()).err().map(|e| {
            let message = jinja_message(&e);
            log::warn!("tokenizer: chat template does not compile: {message}");
            message
        });
        Self {
            env,
            source,
            is_fallback,
            compile_error,
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        }
    }

    /// Renders the conversation; `add_generation_prompt` appends the opening
    /// of the assistant's turn.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String, TokenizerError> {
        if let Some(message) = &self.compile_error {
            return Err(TokenizerError::Template { message: message.clone() });
        }
        let messages: Vec<Value> = messages
            .iter()
            .map(|m| Value::from_pairs([("role", m.role.as_str()), ("content", m.content.as_str())]))
            .collect();
        let ctx = Value::from_pairs([
            ("messages", Value::from(messages)),
            ("add_generation_prompt", Value::from(add_generation_prompt)),
            ("bos_token", Value::from(self.bos_token.as_str())),
            ("eos_token", Value::from(self.eos_token.as_str())),
        ]);
        let template = self.env.get_template(NAME).map_err(template_error)?;
        template.render(ctx).map_err(template_error)
    }

    /// The Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Whether this is the ChatML fallback (the model had no template).
    pub fn is_fallback(&self) -> bool {
        self.is_fallback
    }
}
