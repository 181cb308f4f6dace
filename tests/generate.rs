//! `Generator` over a chat: a later turn keeps the KV cache of the tokens the earlier turn
//! already fed (its prompt and answer), prefills only the rest, and answers as a fresh
//! sequence does. Model: the tiny bitsandbytes LLaMA of tests/fixtures/bnb (ChatML fallback
//! template, byte-level tokenizer).

mod common;

use std::path::PathBuf;

use qgpu::loader::{HfModel, TensorSource};
use qgpu::model::chat::ChatMessage;
use qgpu::model::generate::{GenerateOptions, Generator};
use qgpu::model::llama::{Llama, LlamaOptions};
use qgpu::model::sampler::SamplerConfig;
use qgpu::model::tokenizer::Tokenizer;

fn generator(ctx: &qgpu::gpu::Context) -> Generator {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bnb/llama-nf4");
    let source = HfModel::open(dir).unwrap();
    let tokenizer = Tokenizer::from_gguf(source.metadata()).unwrap();
    let options = LlamaOptions { context: 128, kv_type: qgpu::ops::KvType::F32, ..Default::default() };
    let model = pollster::block_on(Llama::load(ctx, &source, options, &mut |_, _| {})).unwrap();
    Generator::new(model, tokenizer)
}

#[test]
fn later_chat_turns_keep_the_earlier_turns_cache() {
    let Some(ctx) = common::context() else { return };
    let greedy = SamplerConfig { temperature: 0.0, repetition_penalty: 1.0, ..Default::default() };
    let options = GenerateOptions { max_tokens: 6, sampler: greedy, reuse_prefix: true, ..Default::default() };
    let mut g = generator(&ctx);
    let mut messages = vec![ChatMessage::user("the hello")];
    let (first, stats) = pollster::block_on(g.generate_chat(&ctx, &messages, &options, &mut |_| true)).unwrap();
    assert_eq!(stats.cached_tokens, 0, "nothing to keep on the first turn");

    messages.push(ChatMessage::new("assistant", first));
    messages.push(ChatMessage::user("there the"));
    let (second, stats) = pollster::block_on(g.generate_chat(&ctx, &messages, &options, &mut |_| true)).unwrap();
    // The first turn's prompt at least is kept; the new user turn is prefilled.
    let first_prompt = g.tokenizer.encode_chat_with(&messages[..1], true, Default::default()).unwrap().len();
    assert!(stats.cached_tokens >= first_prompt && stats.cached_tokens < stats.prompt_tokens, "{stats:?}");

    // A fresh sequence (no reuse) gives the same answer.
    let fresh = GenerateOptions { reuse_prefix: false, ..options.clone() };
    let (again, stats) = pollster::block_on(g.generate_chat(&ctx, &messages, &fresh, &mut |_| true)).unwrap();
    assert_eq!(stats.cached_tokens, 0);
    assert_eq!(again, second);

    // A prompt that shares nothing with the cache starts afresh even when reuse is asked.
    let (_, stats) = pollster::block_on(g.generate(&ctx, "hello", &options, &mut |_| true)).unwrap();
    assert_eq!(stats.cached_tokens, 0);
}
