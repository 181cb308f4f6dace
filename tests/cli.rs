//! The `qgpu` binary end to end: `run` streams exactly the reference greedy continuation to
//! stdout (and nothing else), `info` lists the adapter, bad input exits non-zero with a message.

mod common;

use std::process::Command;

fn qgpu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_qgpu"))
}

fn reference_case(index: usize) -> (String, String) {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smollm2_reference.json")).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let case = &json["cases"][index];
    (case["prompt"].as_str().unwrap().to_string(), case["greedy_text"].as_str().unwrap().to_string())
}

#[test]
fn run_streams_the_reference_greedy_continuation() {
    let path = common::model_path();
    if !path.exists() {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI=true and no model at {}", path.display());
        eprintln!("skipping: no model at {}", path.display());
        return;
    }
    let (prompt, greedy) = reference_case(2);
    // `--temperature 0` alone: with no default repetition penalty it is transformers' (and
    // llama.cpp's) greedy decoding.
    let out = qgpu()
        .args(["run", "--model"])
        .arg(&path)
        .args(["--prompt", &prompt, "--temperature", "0", "--max-tokens", "12", "--stats", "--context", "64"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "qgpu run failed: {stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let answer = stdout.trim_end_matches('\n');
    assert!(!answer.is_empty() && greedy.starts_with(answer), "stdout {answer:?} is not a prefix of the reference {greedy:?}");
    assert!(answer.len() > 30, "12 tokens should give more text than {answer:?}");
    assert!(stderr.contains("decode:") && stderr.contains("tokens/s"), "--stats goes to stderr: {stderr}");
}

#[test]
fn info_lists_an_adapter() {
    let out = qgpu().arg("info").output().unwrap();
    if !out.status.success() {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI=true and qgpu info failed: {}", String::from_utf8_lossy(&out.stderr));
        return;
    }
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("adapter 0:") && stdout.contains("qgpu kernels:"), "{stdout}");
}

#[test]
fn a_malformed_model_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("qgpu-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.gguf");
    std::fs::write(&bad, b"GGUF\x03\x00\x00\x00truncated").unwrap();
    let out = qgpu().args(["run", "--model"]).arg(&bad).args(["--prompt", "hi"]).output().unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing on stdout on error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("GGUF"), "the error names the file format: {stderr}");
}

#[test]
fn eval_of_a_model_against_itself_loses_nothing_and_prices_kv_types() {
    let path = common::model_path();
    if !path.exists() {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI=true and no model at {}", path.display());
        return;
    }
    let json = std::env::temp_dir().join(format!("qgpu-eval-{}.json", std::process::id()));
    let out = qgpu()
        .args(["eval", "--reference"])
        .arg(&path)
        .arg("--model")
        .arg(&path)
        .args(["--tokens", "12", "--window", "12", "--kv-type", "f32,q4_0", "--json"])
        .arg(&json)
        .output()
        .unwrap();
    assert!(out.status.success(), "qgpu eval failed: {}", String::from_utf8_lossy(&out.stderr));
    let doc: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&json).unwrap()).unwrap();
    let _ = std::fs::remove_file(&json);
    // One row per KV cache type, in the order asked; the reference keeps an f32 cache.
    let kv: Vec<&str> = doc["models"].as_array().unwrap().iter().map(|m| m["kv_type"].as_str().unwrap()).collect();
    assert_eq!((kv, doc["reference"]["kv_type"].as_str()), (vec!["f32", "q4_0"], Some("f32")), "{doc}");
    // A 4-bit cache loses something, and the table says which row it is.
    assert!(doc["models"][1]["kl_mean"].as_f64().unwrap() > 0.0, "{doc}");
    let model = &doc["models"][0];
    assert_eq!((doc["kind"].as_str(), doc["tokens"].as_u64()), (Some("language_model"), Some(12)), "{doc}");
    assert_eq!((model["kl_max"].as_f64(), model["top1_agreement"].as_f64()), (Some(0.0), Some(1.0)), "{doc}");
    let ppl = model["perplexity"].as_f64().unwrap();
    assert!(ppl > 1.0 && ppl == doc["reference"]["perplexity"].as_f64().unwrap(), "{doc}");
    assert_eq!(model["size_bytes"].as_u64(), Some(96_576_768), "SmolLM2 Q4_1 tensor bytes");
    assert!(model["tokens_per_second"].as_f64().is_some_and(|t| t > 0.0), "{doc}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains("perplexity") && stdout.contains("(reference)"), "{stdout}");
    assert!(stdout.lines().any(|l| l.contains(" q4_0 ")), "{stdout}");
}

#[test]
fn embed_prints_one_normalized_json_array_per_text() {
    let Some(dir) = common::require_minilm() else { return };
    let cases = common::minilm_cases();
    let mut cmd = qgpu();
    cmd.args(["embed", "--model"]).arg(&dir);
    for (text, _, _) in &cases {
        cmd.args(["--text", text]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "qgpu embed failed: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), cases.len(), "one line per text: {stdout}");
    for (line, (text, _, want)) in lines.iter().zip(&cases) {
        let got: Vec<f32> = serde_json::from_str(line).unwrap();
        let cos = common::cosine(&got, want);
        assert!(cos >= 0.99999, "{text:?}: cosine {cos}");
    }
}

#[test]
fn embed_of_a_non_bert_directory_is_a_clear_error() {
    let dir = std::env::temp_dir().join(format!("qgpu-cli-embed-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("config.json"), br#"{"model_type":"gpt2"}"#).unwrap();
    std::fs::write(dir.join("tokenizer.json"), b"{}").unwrap();
    let out = qgpu().args(["embed", "--model"]).arg(&dir).args(["--text", "hi"]).output().unwrap();
    std::fs::remove_dir_all(&dir).ok();
    assert!(!out.status.success());
    assert!(out.stdout.is_empty(), "nothing on stdout on error");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("model_type") && stderr.contains("bert"), "the error says what is wrong: {stderr}");
}
