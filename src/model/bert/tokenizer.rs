//! BERT's WordPiece tokenizer, read from the model's `tokenizer.json` (carried in metadata as
//! `tokenizer.huggingface.json`) by the `tokenizers` crate.

use crate::loader::hf::TOKENIZER_JSON_KEY;
use crate::loader::{GgufError, Metadata};
use crate::model::limits::MAX_WORDPIECE_CHARS;
use crate::model::tokenizer::TokenizerError;
use tokenizers::TruncationParams;

/// One tokenized sentence: word-piece ids with `[CLS]`/`[SEP]`, and their token types.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sentence {
    pub ids: Vec<u32>,
    pub type_ids: Vec<u32>,
}

impl Sentence {
    /// A single-segment sentence (every token type 0).
    pub fn new(ids: Vec<u32>) -> Self {
        let type_ids = vec![0; ids.len()];
        Self { ids, type_ids }
    }
}

/// `tokenizer.json` with WordPiece's `max_input_chars_per_word` lowered to
/// [`MAX_WORDPIECE_CHARS`]: its greedy longest match is quadratic in a word's length, and a
/// file could set it to millions.
fn clamp_word_length(json: &[u8]) -> Result<Vec<u8>, serde_json::Error> {
    let mut value: serde_json::Value = serde_json::from_slice(json)?;
    if let Some(chars) = value.pointer_mut("/model/max_input_chars_per_word") {
        if chars.as_u64().is_none_or(|n| n > MAX_WORDPIECE_CHARS as u64) {
            log::warn!("tokenizer: max_input_chars_per_word {chars} lowered to {MAX_WORDPIECE_CHARS}");
            *chars = MAX_WORDPIECE_CHARS.into();
        }
    }
    serde_json::to_vec(&value)
}

/// Text → [`Sentence`], truncated to the model's maximum sequence length.
pub struct BertTokenizer {
    hf: tokenizers::Tokenizer,
}

impl BertTokenizer {
    /// Parses `tokenizer.json`, dropping its own padding (the model packs sentences without
    /// padding) and truncating to `max_len` tokens, as sentence-transformers does.
    pub fn from_json(json: &[u8], max_len: usize) -> Result<Self, TokenizerError> {
        let build = |message: String| TokenizerError::Build { what: "tokenizer.json", message };
        let json = clamp_word_length(json).map_err(|e| build(e.to_string()))?;
        let mut hf = tokenizers::Tokenizer::from_bytes(&json).map_err(|e| build(e.to_string()))?;
        hf.with_padding(None);
        hf.with_truncation(Some(TruncationParams { max_length: max_len, ..Default::default() })).map_err(|e| build(e.to_string()))?;
        Ok(Self { hf })
    }

    /// The tokenizer a BERT source carries in its metadata.
    pub fn from_metadata(metadata: &Metadata, max_len: usize) -> Result<Self, TokenizerError> {
        let json = match metadata.get_str(TOKENIZER_JSON_KEY) {
            Ok(json) => json,
            Err(GgufError::MissingKey { .. }) => return Err(TokenizerError::MissingKey { key: TOKENIZER_JSON_KEY.into() }),
            Err(e) => return Err(e.into()),
        };
        Self::from_json(json.as_bytes(), max_len)
    }

    /// Tokenizes `text` with the special tokens.
    pub fn encode(&self, text: &str) -> Result<Sentence, TokenizerError> {
        let encoding = self.hf.encode(text, true).map_err(|e| TokenizerError::Encode { message: e.to_string() })?;
        Ok(Sentence { ids: encoding.get_ids().to_vec(), type_ids: encoding.get_type_ids().to_vec() })
    }
}
