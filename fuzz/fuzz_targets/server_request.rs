//! Feeds fuzzed request bodies to `qgpu serve`'s parsing, as its handlers do before anything
//! reaches the model: `cargo +nightly fuzz run server_request`.
//!
//! Every body must give a request or an `ApiError` with a 4xx status; nothing may panic, and a
//! request's token budget must stay within the limits.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qgpu::serve::api::{self, Limits};

fuzz_target!(|data: &[u8]| {
    let Ok(object) = api::parse_object(data) else { return };
    let limits = Limits { context: 512, max_tokens: 256, vocab: 1000 };
    let checked = |e: &api::ApiError| assert!((400..500).contains(&e.status), "{e:?}");
    match api::generation(&object, 7) {
        Ok(generation) => {
            assert!(generation.stop.len() <= 4);
            for prompt in [1, 100, 511, 512, 10_000] {
                match generation.max_tokens_for(prompt, &limits) {
                    Ok(n) => assert!(n >= 1 && n <= limits.max_tokens && prompt < limits.context),
                    Err(e) => checked(&e),
                }
            }
        }
        Err(e) => checked(&e),
    }
    if let Err(e) = api::chat_prompt(&object) {
        checked(&e);
    }
    match api::completion_prompt(&object, limits.vocab) {
        Ok(api::Prompt::Tokens(ids)) => assert!(ids.iter().all(|&t| (t as usize) < limits.vocab)),
        Ok(_) => {}
        Err(e) => checked(&e),
    }
    match api::embedding_request(&object) {
        Ok(r) => assert!(!r.texts.is_empty() && r.texts.len() <= api::MAX_EMBEDDING_INPUTS),
        Err(e) => checked(&e),
    }
});
