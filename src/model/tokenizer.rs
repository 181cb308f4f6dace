//! Text ⇄ token ids for GGUF models, built from the `tokenizer.ggml.*` metadata.
//!
//! Encoding runs on the Hugging Face [`tokenizers`] crate, assembled in memory
//! from the GGUF vocabulary (no `tokenizer.json`):
//!
//! * `gpt2` (byte-level BPE): the file's merges, the pre-tokenizer split
//!   regexes that llama.cpp associates with `tokenizer.ggml.pre`, then GPT-2's
//!   byte-to-char mapping.
//! * `llama` (SentencePiece BPE): the file's merges when it has them (a
//!   Hugging Face `tokenizer.json` converted by qgpu), else merges derived
//!   from the token scores the way `transformers`' `LlamaConverter` does (each
//!   pair of vocabulary pieces that concatenates to a normal piece, ranked by
//!   that piece's score); byte
//!   fallback to `<0xAB>` tokens, `▁` for spaces and an optional `▁` prefix.
//!
//! Control tokens (`token_type` 3, e.g. `<|im_start|>`) are matched whole only
//! in the chat template's own markup, or when asked ([`SpecialText::Parse`]):
//! text from a user that spells one is plain text. User-defined tokens
//! (`token_type` 4) are matched whole in any text, as in llama.cpp. Decoding is
//! done here from a table of each token's bytes, which also drives
//! [`TokenStream`].

use std::borrow::Cow;

use tokenizers::models::bpe::{Merges, Vocab, BPE};
use tokenizers::normalizers::{Prepend, Replace, Sequence as NormSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use aho_corasick::{AhoCorasick, MatchKind};
use tokenizers::{NormalizerWrapper, PreTokenizerWrapper, SplitDelimiterBehavior};

use super::chat::{ChatMessage, ChatTemplate, CHATML_TEMPLATE, GEMMA_TEMPLATE};
use super::limits::{self, MAX_MERGES, MAX_MERGE_PIECE_BYTES, MAX_VOCAB};
use crate::loader::gguf::{GgufError, Metadata, OptionalKey};

/// Everything that can go wrong building or using a [`Tokenizer`].
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum TokenizerError {
    /// A `tokenizer.*` metadata value could not be read (wrong type, out of range...).
    #[error("tokenizer: {0}")]
    Gguf(#[from] GgufError),
    /// A metadata key the tokenizer needs is absent.
    #[error("tokenizer: missing metadata key `{key}`")]
    MissingKey { key: String },
    /// `tokenizer.ggml.model` names a tokenizer this crate does not implement.
    #[error("tokenizer: unsupported tokenizer model `{model}` (supported: gpt2, llama)")]
    UnsupportedModel { model: String },
    /// `tokenizer.ggml.tokens` is empty.
    #[error("tokenizer: the vocabulary is empty")]
    EmptyVocab,
    /// A per-token array (`key`) does not have one entry per token.
    #[error("tokenizer: `{key}` has {len} entries for {vocab_size} tokens")]
    LengthMismatch { key: &'static str, len: usize, vocab_size: usize },
    /// The special token id stored under `key` is not in the vocabulary.
    #[error("tokenizer: `{key}` = {id} is outside the vocabulary of {vocab_size} tokens")]
    SpecialTokenOutOfRange { key: &'static str, id: u32, vocab_size: usize },
    /// Entry `index` of `tokenizer.ggml.merges` is unusable.
    #[error("tokenizer: merge #{index} {merge:?}: {reason}")]
    BadMerge { index: usize, merge: String, reason: &'static str },
    /// The `tokenizers` crate rejected the assembled model or pre-tokenizer.
    #[error("tokenizer: building the {what} failed: {message}")]
    Build { what: &'static str, message: String },
    /// The `tokenizers` crate failed to encode the text.
    #[error("tokenizer: encoding failed: {message}")]
    Encode { message: String },
    /// A token id passed to decoding is not in the vocabulary.
    #[error("tokenizer: unknown token id {id} (vocabulary has {vocab_size} tokens)")]
    UnknownTokenId { id: u32, vocab_size: usize },
    /// The chat template failed to compile or render.
    #[error("tokenizer: chat template: {message}")]
    Template { message: String },
    /// A tag of the chat template (starting at `line`) has more than `limit` operators.
    #[error("tokenizer: chat template: the tag at line {line} has more than {limit} operators")]
    TemplateTooDeep { line: usize, limit: usize },
    /// A template, its output or the vocabulary is above qgpu's budget for it.
    #[error("tokenizer: {0}")]
    Limit(#[from] crate::model::limits::LimitError),
}

/// Which algorithm a [`Tokenizer`] runs.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenizerKind {
    /// GGUF `gpt2`: byte-level BPE with regex pre-tokenization (GPT-2, Llama 3, Qwen, SmolLM...).
    ByteLevelBpe,
    /// GGUF `llama`: SentencePiece BPE with scores and byte fallback (Llama 1/2, Mistral...).
    SentencePiece,
}

// `tokenizer.ggml.token_type` values (llama.cpp's `llama_token_type`).
const TYPE_NORMAL: i32 = 1;
const TYPE_UNKNOWN: i32 = 2;
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;
const TYPE_BYTE: i32 = 6;

const GPT2_RE: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+";
const DIGIT_RE: &str = r"\p{N}";
const LLAMA3_RE: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const QWEN2_RE: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT4O_RE: &str = r"[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]*[\p{Ll}\p{Lm}\p{Lo}\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\r\n\p{L}\p{N}]?[\p{Lu}\p{Lt}\p{Lm}\p{Lo}\p{M}]+[\p{Ll}\p{Lm}\p{Lo}\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n/]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Split regexes (applied in turn, matches isolated), `ignore_merges`, and
/// the default of `add_bos_token`, per `tokenizer.ggml.pre` (llama-vocab.cpp).
fn pre_tokenizer(pre: &str) -> Option<(&'static [&'static str], bool, bool)> {
    Some(match pre {
        "default" | "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es" | "jina-v2-de"
        | "jina-v1-en" | "jina-v2-code" | "roberta-bpe" | "a.x-4.0" | "mellum" | "mpt" | "olmo" | "jais"
        | "exaone4" | "trillion" | "granite-docling" => (&[GPT2_RE], false, false),
        "smollm" | "starcoder" | "refact" | "command-r" | "codeshell" | "exaone" | "minerva-7b" => {
            (&[DIGIT_RE, GPT2_RE], false, false)
        }
        "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral" | "midm-2.0" | "lfm2" => {
            (&[LLAMA3_RE], true, true)
        }
        "dbrx" | "smaug-bpe" | "glm4" | "chatglm-bpe" => (&[LLAMA3_RE], false, false),
        "qwen2" | "deepseek-r1-qwen" | "kormo" | "stablelm2" | "megrez" | "hunyuan" => (&[QWEN2_RE], false, false),
        "gpt-4o" | "llama4" | "minimax-m2" => (&[GPT4O_RE], false, false),
        _ => return None,
    })
}

/// Texts of control tokens that end a turn even when they are not the EOS id.
const END_OF_GENERATION_TEXTS: &[&str] = &[
    "<|endoftext|>",
    "<|im_end|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<end_of_turn>",
    "<|end|>",
    "<|end_of_text|>",
    "<|return|>",
    "<|call|>",
    "<EOT>",
    "<|END_OF_TURN_TOKEN|>",
    "<｜end▁of▁sentence｜>",
];

/// GPT-2's byte-to-char map sends these bytes to themselves and the rest, in
/// order, to U+0100 onwards.
fn gpt2_printable(b: u8) -> bool {
    matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF)
}

/// Inverse of GPT-2's byte-to-char map.
fn gpt2_byte(c: char, shifted: &[u8]) -> Option<u8> {
    let code = c as u32;
    match u8::try_from(code) {
        Ok(b) if gpt2_printable(b) => Some(b),
        _ => code.checked_sub(256).and_then(|i| shifted.get(i as usize).copied()),
    }
}

/// `<0xAB>` → `0xAB`.
fn byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    (hex.len() == 2).then(|| u8::from_str_radix(hex, 16).ok()).flatten()
}

/// Maps a missing key to [`TokenizerError::MissingKey`].
fn required<T>(r: Result<T, GgufError>) -> Result<T, TokenizerError> {
    r.map_err(|e| match e {
        GgufError::MissingKey { key } => TokenizerError::MissingKey { key },
        e => TokenizerError::Gguf(e),
    })
}

fn build_err(what: &'static str) -> impl Fn(Box<dyn std::error::Error + Send + Sync>) -> TokenizerError {
    move |e| TokenizerError::Build { what, message: e.to_string() }
}

/// A GGUF model's tokenizer: encoding, decoding, special ids and chat template.
#[derive(Clone)]
pub struct Tokenizer {
    kind: TokenizerKind,
    hf: tokenizers::Tokenizer,
    tokens: Vec<String>,
    /// Decoded bytes of token `i` are `bytes[offsets[i]..offsets[i + 1]]`.
    bytes: Vec<u8>,
    offsets: Vec<usize>,
    bos: Option<u32>,
    eos: Option<u32>,
    add_bos: bool,
    add_eos: bool,
    /// `decode` drops one leading space (SentencePiece's `▁` prefix).
    strip_leading_space: bool,
    end_of_generation: Vec<u32>,
    chat: ChatTemplate,
    /// User-defined tokens (`token_type` 4): matched whole in any text, as llama.cpp does.
    user_defined: Option<SpecialMatcher>,
    /// Control and user-defined tokens: matched whole only in text that may hold markup (the
    /// chat template's output, or input under [`SpecialText::Parse`]).
    specials: Option<SpecialMatcher>,
}

/// `tokenizers` 0.23 keeps each BPE model's word cache in a thread-local map keyed by the
/// model's id and never removes it when the model is dropped, so every tokenizer built (each
/// model load, in a page or a server that loads models again) left up to 10,000 words behind in
/// every thread that encoded with it (found by the `tokenizer` fuzz target: memory grew 5 KB an
/// input). Without the cache a word is merged each time it is seen, which costs little next to
/// a forward pass.
const NO_BPE_CACHE: usize = 0;

/// Whether control-token text (`<|im_end|>`) in an input becomes control tokens.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SpecialText {
    /// Plain text: `<|im_end|>` typed by a user is tokenized as the characters it is made of, so
    /// a user cannot forge a chat role or end a turn.
    #[default]
    Plain,
    /// Control-token text becomes the control token (`--parse-special`).
    Parse,
}

/// A leftmost-longest matcher over token texts (the way `tokenizers` splits its added tokens).
#[derive(Clone, Debug)]
struct SpecialMatcher {
    automaton: AhoCorasick,
    /// Pattern index → token id.
    ids: Vec<u32>,
}

impl SpecialMatcher {
    fn new(tokens: &[String], types: &[i32], keep: impl Fn(i32) -> bool) -> Result<Option<Self>, TokenizerError> {
        let (ids, texts): (Vec<u32>, Vec<&str>) = tokens
            .iter()
            .zip(types)
            .enumerate()
            .filter(|(_, (t, &ty))| !t.is_empty() && keep(ty))
            .map(|(i, (t, _))| (i as u32, t.as_str()))
            .unzip();
        if ids.is_empty() {
            return Ok(None);
        }
        let automaton = AhoCorasick::builder()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&texts)
            .map_err(|e| TokenizerError::Build { what: "special-token matcher", message: e.to_string() })?;
        Ok(Some(Self { automaton, ids }))
    }
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("kind", &self.kind)
            .field("vocab_size", &self.tokens.len())
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("add_bos", &self.add_bos)
            .field("end_of_generation", &self.end_of_generation)
            .finish_non_exhaustive()
    }
}

impl Tokenizer {
    /// Builds the tokenizer described by a GGUF file's `tokenizer.ggml.*` keys
    /// (and `tokenizer.chat_template`).
    pub fn from_gguf(meta: &Metadata) -> Result<Self, TokenizerError> {
        let model = required(meta.get_str("tokenizer.ggml.model"))?;
        let kind = match model {
            "gpt2" => TokenizerKind::ByteLevelBpe,
            "llama" => TokenizerKind::SentencePiece,
            other => return Err(TokenizerError::UnsupportedModel { model: other.to_owned() }),
        };
        let tokens = required(meta.get_string_array("tokenizer.ggml.tokens"))?;
        let n = tokens.len();
        if n == 0 {
            return Err(TokenizerError::EmptyVocab);
        }
        limits::check("tokenizer.ggml.tokens entries", n, MAX_VOCAB)?;
        let per_token = |key: &'static str, len: usize| {
            if len == n {
                Ok(())
            } else {
                Err(TokenizerError::LengthMismatch { key, len, vocab_size: n })
            }
        };
        let types: Cow<'_, [i32]> = match meta.get_i32_array("tokenizer.ggml.token_type").optional()? {
            Some(t) => {
                per_token("tokenizer.ggml.token_type", t.len())?;
                t
            }
            None => Cow::Owned(vec![TYPE_NORMAL; n]),
        };
        let id = |key: &'static str| -> Result<Option<u32>, TokenizerError> {
            match meta.get_u32(key).optional()? {
                Some(id) if id as usize >= n => Err(TokenizerError::SpecialTokenOutOfRange { key, id, vocab_size: n }),
                id => Ok(id),
            }
        };
        let spm = kind == TokenizerKind::SentencePiece;
        // Absent ids default to llama.cpp's SentencePiece choices (BPE has none).
        let default = |id: u32| (spm && (id as usize) < n).then_some(id);
        let bos = id("tokenizer.ggml.bos_token_id")?.or(default(1));
        let eos = id("tokenizer.ggml.eos_token_id")?.or(default(2));
        let optional_id = |key: &'static str| match id(key) {
            Err(TokenizerError::SpecialTokenOutOfRange { .. }) => {
                log::warn!("tokenizer: ignoring out-of-range `{key}`");
                Ok(None)
            }
            r => r,
        };

        // Vocabulary: first occurrence wins for duplicated texts, like HF.
        let mut vocab = Vocab::with_capacity(n);
        for (i, t) in tokens.iter().enumerate() {
            if t.is_empty() {
                log::warn!("tokenizer: token {i} is empty");
            } else if vocab.contains_key(t.as_str()) {
                log::warn!("tokenizer: token {i} {t:?} duplicates an earlier token");
            } else {
                vocab.insert(t.clone(), i as u32);
            }
        }

        let user_defined = SpecialMatcher::new(tokens, &types, |ty| ty == TYPE_USER_DEFINED)?;
        let specials = SpecialMatcher::new(tokens, &types, |ty| ty == TYPE_CONTROL || ty == TYPE_USER_DEFINED)?;

        let add_space_prefix = spm && meta.get_bool("tokenizer.ggml.add_space_prefix").optional()?.unwrap_or(true);
        let (hf, default_add_bos) = if spm {
            // Ranked merges when the file has them (converted from a Hugging Face tokenizer.json),
            // else derived from the scores as transformers does.
            let merges = match meta.get_string_array("tokenizer.ggml.merges").optional()? {
                Some(merges) => bpe_merges(merges, &vocab)?,
                None => {
                    let scores = required(meta.get_f32_array("tokenizer.ggml.scores"))?;
                    per_token("tokenizer.ggml.scores", scores.len())?;
                    sentencepiece_merges(tokens, &types, &scores, &vocab)?
                }
            };
            let mut builder =
                BPE::builder().vocab_and_merges(vocab, merges).byte_fallback(true).fuse_unk(true).cache_capacity(NO_BPE_CACHE);
            if let Some(unk) = optional_id("tokenizer.ggml.unknown_token_id")? {
                builder = builder.unk_token(tokens[unk as usize].clone());
            }
            let mut hf = tokenizers::Tokenizer::new(builder.build().map_err(build_err("BPE model"))?);
            let mut norm: Vec<NormalizerWrapper> = Vec::new();
            if add_space_prefix {
                norm.push(Prepend::new("▁".into()).into());
            }
            norm.push(Replace::new(" ", "▁").map_err(build_err("normalizer"))?.into());
            hf.with_normalizer(Some(NormSequence::new(norm))).map_err(build_err("normalizer"))?;
            (hf, true)
        } else {
            let merges = bpe_merges(required(meta.get_string_array("tokenizer.ggml.merges"))?, &vocab)?;
            let pre = meta.get_str("tokenizer.ggml.pre").optional()?.unwrap_or("default");
            let (regexes, ignore_merges, default_add_bos) = pre_tokenizer(pre).unwrap_or_else(|| {
                log::warn!("tokenizer: unknown pre-tokenizer `{pre}`, using GPT-2's");
                (&[GPT2_RE], false, false)
            });
            let model =
                BPE::builder().vocab_and_merges(vocab, merges).ignore_merges(ignore_merges).cache_capacity(NO_BPE_CACHE);
            let mut hf = tokenizers::Tokenizer::new(model.build().map_err(build_err("BPE model"))?);
            let mut stages = regexes
                .iter()
                .map(|re| {
                    let split = Split::new(SplitPattern::Regex((*re).into()), SplitDelimiterBehavior::Isolated, false);
                    split.map(PreTokenizerWrapper::from).map_err(build_err("pre-tokenizer"))
                })
                .collect::<Result<Vec<_>, _>>()?;
            stages.push(ByteLevel::new(false, false, false).into());
            hf.with_pre_tokenizer(Some(PreSequence::new(stages)));
            (hf, default_add_bos)
        };

        let (bytes, offsets) = token_bytes(kind, tokens, &types);
        let add_bos = meta.get_bool("tokenizer.ggml.add_bos_token").optional()?.unwrap_or(default_add_bos);
        let add_eos = meta.get_bool("tokenizer.ggml.add_eos_token").optional()?.unwrap_or(false);
        if add_bos && bos.is_none() {
            log::warn!("tokenizer: add_bos_token is set but there is no bos_token_id");
        }
        let mut end_of_generation: Vec<u32> =
            [eos, optional_id("tokenizer.ggml.eot_token_id")?, optional_id("tokenizer.ggml.eom_token_id")?]
                .into_iter()
                .flatten()
                .collect();
        for (i, (t, &ty)) in tokens.iter().zip(types.iter()).enumerate() {
            if (ty == TYPE_CONTROL || ty == TYPE_USER_DEFINED) && END_OF_GENERATION_TEXTS.contains(&t.as_str()) {
                end_of_generation.push(i as u32);
            }
        }
        end_of_generation.sort_unstable();
        end_of_generation.dedup();

        let text_of = |id: Option<u32>| id.map_or("", |i| tokens[i as usize].as_str());
        let template = meta.get_str("tokenizer.chat_template").optional()?;
        // Without a template, a vocabulary with Gemma's turn markers gets Gemma's format.
        let fallback = if tokens.iter().any(|t| t == "<start_of_turn>") { GEMMA_TEMPLATE } else { CHATML_TEMPLATE };
        let chat = ChatTemplate::with_fallback(template, fallback, text_of(bos), text_of(eos));
        Ok(Self {
            kind,
            hf,
            tokens: tokens.to_vec(),
            bytes,
            offsets,
            bos,
            eos,
            add_bos,
            add_eos,
            strip_leading_space: add_space_prefix,
            end_of_generation,
            chat,
            user_defined,
            specials,
        })
    }

    /// Encodes `text` as plain text ([`SpecialText::Plain`]), adding BOS (and
    /// EOS) where the model's metadata asks for it.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.encode_with(text, SpecialText::Plain)
    }

    /// [`encode`](Self::encode), with control-token text in `text`
    /// (`<|im_start|>`) becoming its single id: for input that is markup, not
    /// someone else's words.
    pub fn encode_special(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        self.encode_with(text, SpecialText::Parse)
    }

    /// Encodes `text`, adding BOS (and EOS) where the model's metadata asks for it.
    pub fn encode_with(&self, text: &str, special: SpecialText) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = Vec::new();
        ids.extend(self.bos.filter(|_| self.add_bos));
        self.encode_into(text, special, &mut ids)?;
        ids.extend(self.eos.filter(|_| self.add_eos));
        Ok(ids)
    }

    /// Encodes `text` as plain text without adding BOS/EOS.
    pub fn encode_raw(&self, text: &str) -> Result<Vec<u32>, TokenizerError> {
        let mut ids = Vec::new();
        self.encode_into(text, SpecialText::Plain, &mut ids)?;
        Ok(ids)
    }

    /// Splits `text` at the special tokens `special` allows and encodes the pieces between
    /// them on their own, as `tokenizers` does with its added tokens.
    fn encode_into(&self, text: &str, special: SpecialText, ids: &mut Vec<u32>) -> Result<(), TokenizerError> {
        let matcher = match special {
            SpecialText::Plain => self.user_defined.as_ref(),
            SpecialText::Parse => self.specials.as_ref(),
        };
        let mut at = 0;
        if let Some(m) = matcher {
            for found in m.automaton.find_iter(text) {
                self.encode_piece(&text[at..found.start()], ids)?;
                ids.push(m.ids[found.pattern().as_usize()]);
                at = found.end();
            }
        }
        self.encode_piece(&text[at..], ids)
    }

    fn encode_piece(&self, piece: &str, ids: &mut Vec<u32>) -> Result<(), TokenizerError> {
        if !piece.is_empty() {
            let enc = self.hf.encode_fast(piece, false).map_err(|e| TokenizerError::Encode { message: e.to_string() })?;
            ids.extend_from_slice(enc.get_ids());
        }
        Ok(())
    }

    /// Renders `messages` with the chat template and encodes the result
    /// without adding BOS/EOS (templates write `bos_token` themselves), like
    /// `transformers`' `apply_chat_template(tokenize=True)`, except that only
    /// the template's own markup becomes control tokens: control-token text
    /// inside a message's role or content stays plain text
    /// ([`SpecialText::Plain`]).
    pub fn encode_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<Vec<u32>, TokenizerError> {
        self.encode_chat_with(messages, add_generation_prompt, SpecialText::Plain)
    }

    /// [`encode_chat`](Self::encode_chat); under [`SpecialText::Parse`], control-token text in
    /// the messages becomes control tokens too (`transformers`' behaviour).
    pub fn encode_chat_with(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
        special: SpecialText,
    ) -> Result<Vec<u32>, TokenizerError> {
        if special == SpecialText::Parse {
            let mut ids = Vec::new();
            self.encode_into(&self.apply_chat_template(messages, add_generation_prompt)?, SpecialText::Parse, &mut ids)?;
            return Ok(ids);
        }
        let Some(specials) = &self.specials else {
            return self.encode_raw(&self.apply_chat_template(messages, add_generation_prompt)?);
        };
        // Special-token text in the messages is replaced by `marker index marker` before
        // rendering, so the rendered markup's special tokens are the template's own; each
        // piece between them is restored and encoded as plain text.
        let marker = escape_marker(messages, self.chat.source());
        let escape = |text: &str| {
            let mut out = String::with_capacity(text.len());
            let mut at = 0;
            for found in specials.automaton.find_iter(text) {
                out.push_str(&text[at..found.start()]);
                out.push(marker);
                out.push_str(&found.pattern().as_usize().to_string());
                out.push(marker);
                at = found.end();
            }
            out.push_str(&text[at..]);
            out
        };
        let escaped: Vec<ChatMessage> = messages.iter().map(|m| ChatMessage::new(escape(&m.role), escape(&m.content))).collect();
        let rendered = self.chat.render(&escaped, add_generation_prompt)?;
        let mut ids = Vec::new();
        let mut at = 0;
        for found in specials.automaton.find_iter(&rendered) {
            self.encode_into(&unescape(&rendered[at..found.start()], marker, specials, &self.tokens), SpecialText::Plain, &mut ids)?;
            ids.push(specials.ids[found.pattern().as_usize()]);
            at = found.end();
        }
        self.encode_into(&unescape(&rendered[at..], marker, specials, &self.tokens), SpecialText::Plain, &mut ids)?;
        Ok(ids)
    }

    /// Renders `tokenizer.chat_template` (or a ChatML fallback when the file
    /// has none) for `messages`; `add_generation_prompt` appends the opening
    /// of the assistant's turn.
    pub fn apply_chat_template(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String, TokenizerError> {
        self.chat.render(messages, add_generation_prompt)
    }

    /// The chat template in use (the file's, or the ChatML fallback).
    pub fn chat_template(&self) -> &ChatTemplate {
        &self.chat
    }

    /// Decodes `ids` to text, special tokens included verbatim. Bytes that do
    /// not form valid UTF-8 become U+FFFD. A SentencePiece tokenizer drops the
    /// space its `▁` prefix put in front of the first word.
    pub fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend_from_slice(self.bytes_of(id)?);
        }
        let mut text = String::from_utf8_lossy(&bytes).into_owned();
        if self.strip_leading_space && text.starts_with(' ') {
            text.remove(0);
        }
        Ok(text)
    }

    fn bytes_of(&self, id: u32) -> Result<&[u8], TokenizerError> {
        self.token_bytes(id).ok_or(TokenizerError::UnknownTokenId { id, vocab_size: self.tokens.len() })
    }

    /// The bytes token `id` stands for (a byte-level token may hold part of a
    /// UTF-8 character).
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        let i = id as usize;
        Some(&self.bytes[*self.offsets.get(i)?..*self.offsets.get(i + 1)?])
    }

    /// The vocabulary entry of `id` as stored in the GGUF (`Ġthe`, `▁the`, `<0x0A>`...).
    pub fn token_text(&self, id: u32) -> Option<&str> {
        self.tokens.get(id as usize).map(String::as_str)
    }

    /// The id of a vocabulary entry, spelled as stored in the GGUF.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.hf.token_to_id(text)
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.tokens.len()
    }

    /// Which algorithm this tokenizer runs.
    pub fn kind(&self) -> TokenizerKind {
        self.kind
    }

    /// Beginning-of-sequence id, if the model has one.
    pub fn bos_id(&self) -> Option<u32> {
        self.bos
    }

    /// End-of-sequence id, if the model has one.
    pub fn eos_id(&self) -> Option<u32> {
        self.eos
    }

    /// Whether [`encode`](Self::encode) prepends BOS.
    pub fn adds_bos(&self) -> bool {
        self.add_bos && self.bos.is_some()
    }

    /// Whether generation should stop at `id`: EOS, `eot`/`eom` ids, and
    /// control tokens such as `<|im_end|>`, `<|eot_id|>`, `<|endoftext|>`.
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.end_of_generation.binary_search(&id).is_ok()
    }

    /// All ids for which [`is_end_of_generation`](Self::is_end_of_generation) holds, sorted.
    pub fn end_of_generation_ids(&self) -> &[u32] {
        &self.end_of_generation
    }
}

/// A private-use character that appears in no message and not in the template.
fn escape_marker(messages: &[ChatMessage], template: &str) -> char {
    let used = |c: char| template.contains(c) || messages.iter().any(|m| m.role.contains(c) || m.content.contains(c));
    // Plane 15's private-use area: 65,534 candidates, far more than any text can use up.
    (0xF0000..=0xFFFFD).filter_map(char::from_u32).find(|&c| !used(c)).unwrap_or('\u{FFFD}')
}

/// Restores the `marker index marker` escapes of [`Tokenizer::encode_chat`]; a malformed one
/// (a template that cut a message) stays as it is.
fn unescape<'a>(piece: &'a str, marker: char, specials: &SpecialMatcher, tokens: &[String]) -> Cow<'a, str> {
    if !piece.contains(marker) {
        return Cow::Borrowed(piece);
    }
    let mut out = String::with_capacity(piece.len());
    let mut rest = piece;
    while let Some(start) = rest.find(marker) {
        out.push_str(&rest[..start]);
        let after = &rest[start + marker.len_utf8()..];
        let digits = after.find(|c: char| !c.is_ascii_digit()).unwrap_or(after.len());
        let token = after[..digits].parse::<usize>().ok().and_then(|i| specials.ids.get(i));
        match token {
            Some(&id) if after[digits..].starts_with(marker) => {
                out.push_str(&tokens[id as usize]);
                rest = &after[digits + marker.len_utf8()..];
            }
            _ => {
                out.push(marker);
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

/// Parses `tokenizer.ggml.merges` ("left right", split at the first space
/// after the first character, as llama.cpp does) and checks that both parts
/// and their concatenation are in the vocabulary.
fn bpe_merges(lines: &[String], vocab: &Vocab) -> Result<Merges, TokenizerError> {
    let mut joined = String::new();
    lines
        .iter()
        .enumerate()
        .map(|(index, line)| {
            let bad = |reason| TokenizerError::BadMerge { index, merge: line.clone(), reason };
            let first = line.chars().next().map_or(0, char::len_utf8);
            let pos =
                line[first..].find(' ').map(|p| p + first).ok_or_else(|| bad("no space separating two tokens"))?;
            let (left, right) = (&line[..pos], &line[pos + 1..]);
            if !vocab.contains_key(left) || !vocab.contains_key(right) {
                return Err(bad("a part is not in the vocabulary"));
            }
            joined.clear();
            joined.push_str(left);
            joined.push_str(right);
            if !vocab.contains_key(joined.as_str()) {
                return Err(bad("the merged token is not in the vocabulary"));
            }
            Ok((left.to_owned(), right.to_owned()))
        })
        .collect()
}

/// SentencePiece BPE as ranked merges: every split of a normal piece into two
/// vocabulary pieces, by descending score of the piece, then piece id, then
/// the ids of the parts (`transformers`' `SentencePieceExtractor`).
///
/// Trying every split costs the square of a piece's length, so pieces over
/// [`MAX_MERGE_PIECE_BYTES`] get no merges (they still decode), and more than
/// [`MAX_MERGES`] merges is an error rather than gigabytes.
fn sentencepiece_merges(tokens: &[String], types: &[i32], scores: &[f32], vocab: &Vocab) -> Result<Merges, TokenizerError> {
    let mut ranked: Vec<(f32, u32, u32, u32, &str, &str)> = Vec::new();
    let mut skipped = 0usize;
    for (i, piece) in tokens.iter().enumerate() {
        if types[i] != TYPE_NORMAL || byte_token(piece).is_some() {
            continue;
        }
        if piece.len() > MAX_MERGE_PIECE_BYTES {
            skipped += 1;
            continue;
        }
        for (pos, _) in piece.char_indices().skip(1) {
            let (l, r) = piece.split_at(pos);
            if let (Some(&li), Some(&ri)) = (vocab.get(l), vocab.get(r)) {
                limits::check("SentencePiece merges", ranked.len() + 1, MAX_MERGES)?;
                ranked.push((scores[i], i as u32, li, ri, l, r));
            }
        }
    }
    if skipped > 0 {
        log::warn!("tokenizer: {skipped} vocabulary entries over {MAX_MERGE_PIECE_BYTES} bytes get no merges");
    }
    ranked.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)).then(a.3.cmp(&b.3)));
    Ok(ranked.into_iter().map(|(.., l, r)| (l.to_owned(), r.to_owned())).collect())
}

/// Each token's bytes, flattened, with offsets (`n + 1` entries).
fn token_bytes(kind: TokenizerKind, tokens: &[String], types: &[i32]) -> (Vec<u8>, Vec<usize>) {
    let shifted: Vec<u8> = (0..=255u8).filter(|&b| !gpt2_printable(b)).collect();
    let mut bytes = Vec::with_capacity(tokens.iter().map(String::len).sum());
    let mut offsets = Vec::with_capacity(tokens.len() + 1);
    offsets.push(0);
    let mut utf8 = [0u8; 4];
    for (t, &ty) in tokens.iter().zip(types) {
        match (kind, ty) {
            (_, TYPE_CONTROL) | (_, TYPE_UNKNOWN) | (TokenizerKind::ByteLevelBpe, TYPE_USER_DEFINED) => {
                bytes.extend_from_slice(t.as_bytes())
            }
            (TokenizerKind::ByteLevelBpe, _) => {
                for c in t.chars() {
                    match gpt2_byte(c, &shifted) {
                        Some(b) => bytes.push(b),
                        None => bytes.extend_from_slice(c.encode_utf8(&mut utf8).as_bytes()),
                    }
                }
            }
            (TokenizerKind::SentencePiece, ty) => match byte_token(t) {
                Some(b) if ty == TYPE_BYTE || ty == TYPE_NORMAL => bytes.push(b),
                _ => bytes.extend_from_slice(t.replace('▁', " ").as_bytes()),
            },
        }
        offsets.push(bytes.len());
    }
    (bytes, offsets)
}

/// Incremental decoding for generation: feed ids one at a time and get back
/// the text they complete. A character split across tokens is held back
/// until its last byte arrives, so the pieces concatenate to exactly what
/// [`Tokenizer::decode`] gives for the ids as a continuation (no leading-space
/// stripping: the stream is meant to follow a prompt).
#[derive(Clone, Debug, Default)]
pub struct TokenStream {
    pending: Vec<u8>,
}

impl TokenStream {
    /// An empty stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds token `id`; returns the newly completed text (possibly empty).
    pub fn push(&mut self, tokenizer: &Tokenizer, id: u32) -> Result<String, TokenizerError> {
        self.pending.extend_from_slice(tokenizer.bytes_of(id)?);
        let mut out = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        // Invalid bytes: replace them like `from_utf8_lossy` does.
                        Some(len) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[len..];
                        }
                        // An incomplete character at the end: wait for more.
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        self.pending.drain(..self.pending.len() - keep);
        Ok(out)
    }

    /// Flushes bytes still waiting for the rest of a character (as U+FFFD).
    pub fn finish(&mut self) -> String {
        let out = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        out
    }

    /// Whether bytes of an unfinished character are waiting.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }
}
