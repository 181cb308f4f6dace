//! What a model file may cost before qgpu refuses it.
//!
//! A model file is code from a stranger: its header counts size allocations, its chat template
//! runs, its vocabulary drives the tokenizer's construction. Each number here bounds one of those
//! costs. They sit far above every real model (the largest real value is given beside each) and
//! far below what would exhaust a laptop. `docs/security.md` lists the same numbers; a test
//! checks that the two agree.

/// Bytes of a chat template's source. Real templates: under 20 KiB (tool-calling ones).
pub const MAX_TEMPLATE_BYTES: usize = 128 * 1024;
/// Operators (`+ ~ | . [ ( and or not ...`) in one `{{ }}` or `{% %}` tag. Left-associative
/// chains nest the template's syntax tree one level per operator, and compiling a deep tree
/// recurses once per level, so this bounds the compiler's stack. Real templates: under 40.
pub const MAX_TAG_OPERATORS: usize = 256;
/// Bytes one render of a chat template may produce, checked as it writes. Real prompts: a few
/// bytes per token of context.
pub const MAX_RENDER_BYTES: usize = 8 << 20;
/// Fuel of one render: one instruction costs one, and 64 bytes allocated or written cost one
/// (minijinja's rates), so a render allocates at most 128 MiB in all. The `chat_template` fuzz
/// target reached 1.1 GB of memory under the 20 million this was before. Real templates: about
/// 30 per message.
pub const TEMPLATE_FUEL: u64 = 2_000_000;

/// Bytes of a SentencePiece vocabulary entry that takes part in merges: building merges tries
/// every split of every entry, so the work grows with the square of its length. Longer entries
/// stay in the vocabulary (they decode) but no merge produces them. Real: 48 bytes (Gemma 3).
pub const MAX_MERGE_PIECE_BYTES: usize = 256;
/// SentencePiece merges derived from a vocabulary. Real: 513,511 (Gemma 3's 262,144 tokens).
pub const MAX_MERGES: usize = 4 << 20;
/// Tokens in a vocabulary. Real: 262,144 (Gemma 3).
pub const MAX_VOCAB: usize = 4 << 20;
/// Characters of one word WordPiece looks up (a `tokenizer.json`'s larger
/// `max_input_chars_per_word` is lowered to this): its greedy longest match is quadratic in the
/// word's length. Real: 100 (BERT's default).
pub const MAX_WORDPIECE_CHARS: usize = 200;

/// Transformer blocks. Real: 126 (Llama 3.1 405B).
pub const MAX_LAYERS: usize = 1024;
/// Model width, feed-forward width and head width. Real: 53,248 (Llama 3.1 405B's FFN).
pub const MAX_WIDTH: usize = 1 << 20;
/// Attention heads. Real: 128.
pub const MAX_HEADS: usize = 1024;
/// Positions a model may claim to be trained for. Real: 10,485,760 (Llama 4 Scout).
pub const MAX_CONTEXT: usize = 1 << 26;

/// `value` of the header count `what`, refused above `limit`.
pub fn check(what: &'static str, value: usize, limit: usize) -> Result<usize, LimitError> {
    if value > limit {
        Err(LimitError { what, value: value as u64, limit: limit as u64 })
    } else {
        Ok(value)
    }
}

/// A count from a model file above the budget qgpu allows it.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{what} is {value}, above qgpu's limit of {limit} (docs/security.md)")]
pub struct LimitError {
    /// What was counted (a metadata key, `chat template bytes`...).
    pub what: &'static str,
    pub value: u64,
    pub limit: u64,
}
