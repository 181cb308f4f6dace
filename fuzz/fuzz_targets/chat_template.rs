//! Compiles and renders a fuzzed chat template with fuzzed messages, as a model file's
//! `tokenizer.chat_template` would be: `cargo +nightly fuzz run chat_template`.
//!
//! Every input must render or return an error within the budgets of `qgpu::model::limits`
//! (source size, operators per tag, fuel, output size): no stack overflow, no panic, no
//! unbounded memory.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qgpu::model::chat::{ChatMessage, ChatTemplate};

#[path = "split.rs"]
mod split;

fuzz_target!(|data: &[u8]| {
    let p = split::parts(data, 3);
    let source = String::from_utf8_lossy(p[0]);
    let role = String::from_utf8_lossy(p[1]);
    let content = String::from_utf8_lossy(p[2]);
    let template = ChatTemplate::new(Some(&source), "<s>", "</s>");
    let messages = [ChatMessage::system("be brief"), ChatMessage::new(role.as_ref(), content.as_ref()), ChatMessage::assistant("ok")];
    for add_generation_prompt in [true, false] {
        if let Ok(text) = template.render(&messages, add_generation_prompt) {
            assert!(text.len() <= qgpu::model::limits::MAX_RENDER_BYTES);
        }
    }
});
