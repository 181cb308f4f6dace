//! Chat templates: the Jinja template a GGUF stores under
//! `tokenizer.chat_template`, rendered with [`minijinja`] the way
//! `transformers`' `apply_chat_template` renders it (`trim_blocks` and
//! `lstrip_blocks` on, `bos_token`/`eos_token`/`add_generation_prompt`
//! variables, `raise_exception`, Python string and dict methods such as
//! `.strip()`, `.startswith()`, `.items()`).
//!
//! Templates come from model files and are treated as untrusted (budgets in
//! [`limits`](super::limits)): the source size and the operators in each tag
//! are checked before it compiles (the compiler recurses once per nesting
//! level), it compiles only when first rendered, rendering runs on a fuel
//! budget (instructions and allocated bytes) and its output is capped as it
//! is written.

use std::sync::{Arc, OnceLock};

use minijinja::machinery::{tokenize, Token};
use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, Error as JinjaError, ErrorKind, Value};

use super::limits::{self, MAX_RENDER_BYTES, MAX_TAG_OPERATORS, MAX_TEMPLATE_BYTES, TEMPLATE_FUEL};
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

/// A chat template with the model's BOS/EOS texts, compiled on first use.
#[derive(Clone)]
pub struct ChatTemplate {
    source: String,
    is_fallback: bool,
    /// The environment holding the compiled template, or why it cannot compile (reported by
    /// every render, so loading a model never fails over its template).
    compiled: Arc<OnceLock<Result<Environment<'static>, CompileError>>>,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("source", &self.source)
            .field("is_fallback", &self.is_fallback)
            .field("compiled", &self.compiled.get().map(|r| r.as_ref().map(|_| "ok")))
            .finish_non_exhaustive()
    }
}

/// Why a template cannot be rendered, kept to be reported by every render.
#[derive(Clone, Debug)]
enum CompileError {
    Limit(limits::LimitError),
    TooDeep { line: usize, limit: usize },
    Template(String),
}

impl From<CompileError> for TokenizerError {
    fn from(e: CompileError) -> Self {
        match e {
            CompileError::Limit(e) => TokenizerError::Limit(e),
            CompileError::TooDeep { line, limit } => TokenizerError::TemplateTooDeep { line, limit },
            CompileError::Template(message) => TokenizerError::Template { message },
        }
    }
}

fn syntax() -> SyntaxConfig {
    SyntaxConfig::builder().trim_blocks(true).lstrip_blocks(true).build().unwrap_or_default()
}

/// Refuses a source over [`MAX_TEMPLATE_BYTES`] or with a tag of more than
/// [`MAX_TAG_OPERATORS`] operators, before the compiler sees it. Lexing is
/// iterative, so this cannot overflow the stack itself; lexer errors are left
/// for the compiler to report.
fn check_shape(source: &str) -> Result<(), CompileError> {
    limits::check("chat template bytes", source.len(), MAX_TEMPLATE_BYTES).map_err(CompileError::Limit)?;
    let mut operators = 0usize;
    for token in tokenize(source, false, syntax()) {
        let Ok((token, span)) = token else { return Ok(()) };
        let operator = match token {
            Token::VariableStart | Token::BlockStart => {
                operators = 0;
                false
            }
            Token::Ident(word) => matches!(word, "and" | "or" | "not" | "in" | "is" | "if"),
            Token::Plus
            | Token::Minus
            | Token::Mul
            | Token::Div
            | Token::FloorDiv
            | Token::Pow
            | Token::Mod
            | Token::Dot
            | Token::Tilde
            | Token::Pipe
            | Token::Eq
            | Token::Ne
            | Token::Gt
            | Token::Gte
            | Token::Lt
            | Token::Lte
            | Token::BracketOpen
            | Token::ParenOpen
            | Token::BraceOpen => true,
            _ => false,
        };
        if operator {
            operators += 1;
            if operators > MAX_TAG_OPERATORS {
                return Err(CompileError::TooDeep { line: span.start_line as usize, limit: MAX_TAG_OPERATORS });
            }
        }
    }
    Ok(())
}

fn compile(source: &str) -> Result<Environment<'static>, CompileError> {
    check_shape(source)?;
    let mut env = Environment::new();
    env.set_syntax(syntax());
    env.set_fuel(Some(TEMPLATE_FUEL));
    env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
    env.add_function("raise_exception", raise_exception);
    env.add_template_owned(NAME, source.to_owned()).map_err(|e| {
        let message = jinja_message(&e);
        log::warn!("tokenizer: chat template does not compile: {message}");
        CompileError::Template(message)
    })?;
    Ok(env)
}

/// A writer that refuses to grow past [`MAX_RENDER_BYTES`].
struct CappedOutput {
    text: Vec<u8>,
    /// The length the refused write would have reached.
    overflowed: Option<usize>,
}

impl std::io::Write for CappedOutput {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.text.len() + buf.len() > MAX_RENDER_BYTES {
            self.overflowed = Some(self.text.len() + buf.len());
            return Err(std::io::Error::other("chat template output too large"));
        }
        self.text.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
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
    /// Keeps `source` (or [`CHATML_TEMPLATE`], with a warning, when `None`) to compile at the
    /// first render. A template that does not compile (or breaks a budget) is kept: every render
    /// then returns the error, so loading a model never fails over it.
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
        Self {
            source,
            is_fallback,
            compiled: Arc::default(),
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        }
    }

    /// Renders the conversation; `add_generation_prompt` appends the opening
    /// of the assistant's turn.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String, TokenizerError> {
        let env = self.compiled.get_or_init(|| compile(&self.source)).as_ref().map_err(|e| TokenizerError::from(e.clone()))?;
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
        let template = env.get_template(NAME).map_err(template_error)?;
        let mut out = CappedOutput { text: Vec::new(), overflowed: None };
        match template.render_captured_to(ctx, &mut out) {
            Ok(_) => String::from_utf8(out.text).map_err(|_| TokenizerError::Template { message: "the output is not UTF-8".into() }),
            Err(e) => match out.overflowed {
                Some(value) => Err(limits::LimitError { what: "chat template output bytes", value: value as u64, limit: MAX_RENDER_BYTES as u64 }.into()),
                None => Err(template_error(e)),
            },
        }
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
