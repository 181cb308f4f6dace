//! Builds a tokenizer from fuzzed GGUF tokenizer metadata (SentencePiece or byte-level BPE)
//! and encodes fuzzed text with it: `cargo +nightly fuzz run tokenizer`.
//!
//! Construction must succeed or return an error within the budgets of `qgpu::model::limits`;
//! encoding must not panic, and decoding what was encoded must give back valid text.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qgpu::loader::gguf::{Metadata, MetadataValue};
use qgpu::model::chat::ChatMessage;
use qgpu::model::tokenizer::{SpecialText, TokenStream, Tokenizer};

#[path = "split.rs"]
mod split;

/// Token types: mostly normal, some control, user-defined, byte and unknown.
const TYPES: [i32; 8] = [1, 1, 1, 1, 3, 4, 6, 2];

fuzz_target!(|data: &[u8]| {
    let p = split::parts(data, 3);
    let (flags, vocab, text) = (p[0], p[1], String::from_utf8_lossy(p[2]));
    let flag = |i: usize| flags.get(i).copied().unwrap_or(0);
    let spm = flag(0) & 1 == 0;
    // The vocabulary: pieces separated by NUL bytes.
    let tokens: Vec<String> = String::from_utf8_lossy(vocab).split('\0').map(str::to_owned).collect();
    let n = tokens.len();
    let types: Vec<i32> = (0..n).map(|i| TYPES[(flag(1 + i % 8) as usize + i) % TYPES.len()]).collect();
    let scores: Vec<f32> = (0..n).map(|i| -((i * 7919 % 1009) as f32)).collect();
    let mut kv: Vec<(&str, MetadataValue)> = vec![
        ("tokenizer.ggml.model", if spm { "llama" } else { "gpt2" }.into()),
        ("tokenizer.ggml.tokens", tokens.clone().into()),
        ("tokenizer.ggml.token_type", types.into()),
        ("tokenizer.ggml.bos_token_id", (flag(9) as u32).into()),
        ("tokenizer.ggml.eos_token_id", (flag(10) as u32).into()),
        ("tokenizer.ggml.add_space_prefix", (flag(0) & 2 != 0).into()),
        ("tokenizer.ggml.add_bos_token", (flag(0) & 4 != 0).into()),
    ];
    if spm {
        kv.push(("tokenizer.ggml.scores", scores.into()));
    } else {
        // Merges for every split of a token into two tokens, so BPE has work to do.
        let known: std::collections::HashSet<&str> = tokens.iter().map(String::as_str).collect();
        let mut merges = Vec::new();
        for t in &tokens {
            for (at, _) in t.char_indices().skip(1) {
                let (l, r) = t.split_at(at);
                if known.contains(l) && known.contains(r) && !r.starts_with(' ') {
                    merges.push(format!("{l} {r}"));
                }
            }
        }
        kv.push(("tokenizer.ggml.merges", merges.into()));
        kv.push(("tokenizer.ggml.pre", ["default", "llama-bpe", "qwen2", "smollm", "unknown"][flag(11) as usize % 5].into()));
    }
    let mut meta = Metadata::new();
    for (k, v) in kv {
        if meta.insert(k, v).is_err() {
            return;
        }
    }
    let Ok(tok) = Tokenizer::from_gguf(&meta) else { return };
    for special in [SpecialText::Plain, SpecialText::Parse] {
        let Ok(ids) = tok.encode_with(&text, special) else { continue };
        let decoded = tok.decode(&ids).expect("ids from encode decode");
        let mut stream = TokenStream::new();
        let mut streamed: String = ids.iter().map(|&id| stream.push(&tok, id).expect("ids from encode stream")).collect();
        streamed.push_str(&stream.finish());
        // A stream continues a prompt, so it keeps the space decode drops at the start.
        assert!(streamed == decoded || streamed.strip_prefix(' ') == Some(decoded.as_str()), "{streamed:?} vs {decoded:?}");
    }
    let _ = tok.encode_chat(&[ChatMessage::system("s"), ChatMessage::user(text.as_ref())], true);
});
