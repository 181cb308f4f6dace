//! `qgpu inspect` end to end on tiny synthetic GGUF files: the JSON report against values
//! computed here from the model's spec, an unsupported tensor type and architecture, bad files.

mod common;

use common::tiny_gguf::{rewrite_gguf, tiny_llama_gguf, TinySpec};
use qgpu::loader::GgmlType;
use qgpu::quant::Format;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn qgpu() -> Command {
    Command::new(env!("CARGO_BIN_EXE_qgpu"))
}

/// A fresh directory per test, so tests running in parallel do not share files.
fn temp_dir(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("qgpu-inspect-{}-{test}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn inspect(path: &Path, extra: &[&str]) -> Output {
    qgpu().arg("inspect").arg(path).args(extra).output().unwrap()
}

fn inspect_json(path: &Path, extra: &[&str]) -> Value {
    let out = inspect(path, &[&["--json"], extra].concat());
    assert!(out.status.success(), "qgpu inspect failed: {}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// Bytes of `n` values stored as `ty`, from the block sizes written out here.
fn stored(ty: &str, n: u64) -> u64 {
    match ty {
        "F32" => 4 * n,
        "Q8_0" => n / 32 * 34,
        "Q4_0" => n / 32 * 18,
        _ => panic!("no size for {ty}"),
    }
}

/// Elements per ggml type of `tiny_llama_gguf(spec)`: embedding (Q8_0), block matrices and
/// head (Q4_0), norms (F32).
fn elements_by_type(s: &TinySpec) -> [(&'static str, u64); 3] {
    let kv_dim = s.n_kv_heads * s.head_dim();
    let per_layer = 2 * s.dim * s.dim + 2 * kv_dim * s.dim + 3 * s.dim * s.ffn;
    [
        ("Q8_0", (s.vocab * s.dim) as u64),
        ("Q4_0", (s.n_layers * per_layer + s.vocab * s.dim) as u64),
        ("F32", ((2 * s.n_layers + 1) * s.dim) as u64),
    ]
}

fn type_row<'a>(doc: &'a Value, ty: &str) -> &'a Value {
    doc["tensor_types"].as_array().unwrap().iter().find(|r| r["type"] == ty).unwrap_or_else(|| panic!("no {ty} row in {doc}"))
}

#[test]
fn json_report_matches_the_spec() {
    let spec = TinySpec::odd();
    assert_eq!((spec.embed_format, spec.weight_format, spec.tied_head), (Format::Q8_0, Format::Q4_0, false));
    let dir = temp_dir("spec");
    let path = dir.join("tiny.gguf");
    std::fs::write(&path, tiny_llama_gguf(&spec, 1)).unwrap();
    let doc = inspect_json(&path, &[]);

    let by_type = elements_by_type(&spec);
    let params: u64 = by_type.iter().map(|t| t.1).sum();
    let bytes: u64 = by_type.iter().map(|&(ty, n)| stored(ty, n)).sum();
    assert_eq!(doc["architecture"], "llama");
    assert_eq!(doc["name"], "qgpu tiny llama");
    assert_eq!(doc["parameters"].as_u64(), Some(params), "{doc}");
    assert_eq!(doc["total_bytes"].as_u64(), Some(bytes), "{doc}");
    assert_eq!(doc["tensors"].as_u64(), Some((3 + 9 * spec.n_layers) as u64));
    for (ty, n) in by_type {
        let row = type_row(&doc, ty);
        assert_eq!((row["elements"].as_u64(), row["bytes"].as_u64()), (Some(n), Some(stored(ty, n))), "{ty}: {row}");
        let share = row["share"].as_f64().unwrap();
        assert!((share - stored(ty, n) as f64 / bytes as f64).abs() < 1e-12, "{ty}: {row}");
    }
    assert_eq!(type_row(&doc, "F32")["tensors"].as_u64(), Some((2 * spec.n_layers + 1) as u64));
    let bpw = doc["bits_per_weight"].as_f64().unwrap();
    assert!((bpw - bytes as f64 * 8.0 / params as f64).abs() < 1e-12, "{bpw}");

    let shape = (&doc["layers"], &doc["width"], &doc["heads"], &doc["kv_heads"], &doc["head_dim"], &doc["trained_context"]);
    assert_eq!(shape, (&Value::from(2), &Value::from(96), &Value::from(3), &Value::from(1), &Value::from(32), &Value::from(64)));
    let tok = &doc["tokenizer"];
    assert_eq!((&tok["model"], tok["vocab"].as_u64(), &tok["chat_template"]), (&Value::from("gpt2"), Some(263), &Value::Bool(false)));

    // Default context: qgpu run's 2048, capped at the trained 64. KV (the default f16 cache):
    // 2 × layers × context × kv_dim × 2 bytes. Weights as uploaded equal the file's tensor
    // bytes (norms are F32).
    let kv = |context: u64| 2 * spec.n_layers as u64 * context * (spec.n_kv_heads * spec.head_dim()) as u64 * 2;
    let mem = &doc["gpu_memory"];
    assert_eq!((mem["context"].as_u64(), mem["kv_cache"].as_u64(), mem["weights"].as_u64()), (Some(64), Some(kv(64)), Some(bytes)), "{mem}");
    let total = mem["weights"].as_u64().unwrap() + mem["kv_cache"].as_u64().unwrap() + mem["activations"].as_u64().unwrap();
    assert!(mem["activations"].as_u64().unwrap() > 0 && mem["total"].as_u64() == Some(total), "{mem}");
    let mem = inspect_json(&path, &["--context", "32"])["gpu_memory"].clone();
    assert_eq!((mem["context"].as_u64(), mem["kv_cache"].as_u64()), (Some(32), Some(kv(32))), "{mem}");
    // Other cache types: f32 twice f16; q8_0 a head of 32 in 8 words of quants and one of scale.
    let mem = inspect_json(&path, &["--context", "32", "--kv-type", "f32"])["gpu_memory"].clone();
    assert_eq!(mem["kv_cache"].as_u64(), Some(2 * kv(32)), "{mem}");
    let mem = inspect_json(&path, &["--context", "32", "--kv-type", "q8_0"])["gpu_memory"].clone();
    assert_eq!(mem["kv_cache"].as_u64(), Some(kv(32) / 64 * 36), "{mem}");

    // Runnable here, or the adapter check said why it was skipped; never a problem listed.
    assert_eq!(doc["problems"], Value::Array(vec![]), "{doc}");
    match doc["adapter_check"].as_str().unwrap() {
        "done" => assert_eq!(doc["runnable"], Value::Bool(true)),
        skipped => assert!(skipped.starts_with("skipped") && doc["runnable"].is_null(), "{doc}"),
    }

    // The table shows the same numbers.
    let out = inspect(&path, &[]);
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success() && text.contains(&params.to_string()) && text.contains("bits per weight") && text.contains("KV cache"), "{text}");
    std::fs::remove_dir_all(&dir).ok();
}

/// A ggml type qgpu has no kernel for, in 32-value blocks (so a 160-wide row is whole blocks),
/// chosen from the library's lists so the test outlives new kernels.
fn no_kernel_type() -> GgmlType {
    GgmlType::ALL
        .into_iter()
        .find(|t| Format::from_ggml_type(t.id()).is_none() && t.is_quantized() && t.block_size() == 32)
        .expect("some 32-value block type without a kernel")
}

#[test]
fn an_unsupported_tensor_type_is_named() {
    let spec = TinySpec::odd();
    let ty = no_kernel_type();
    let dir = temp_dir("type");
    let path = dir.join("no-kernel.gguf");
    let bytes = rewrite_gguf(&tiny_llama_gguf(&spec, 2), &[], &[("blk.1.ffn_down.weight", ty)]);
    std::fs::write(&path, bytes).unwrap();
    let doc = inspect_json(&path, &[]);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(doc["runnable"], Value::Bool(false), "{doc}");
    let problems = doc["problems"].as_array().unwrap();
    assert_eq!(problems.len(), 1, "{doc}");
    assert_eq!(problems[0]["kind"], "tensor_type");
    let msg = problems[0]["message"].as_str().unwrap();
    assert!(msg.contains(ty.name()) && msg.contains("blk.1.ffn_down.weight"), "{msg}");
    // Still counted: one tensor of ffn × dim values in 32-value blocks.
    let n = (spec.ffn * spec.dim) as u64;
    let row = type_row(&doc, ty.name());
    assert_eq!((row["tensors"].as_u64(), row["elements"].as_u64(), row["bytes"].as_u64()), (Some(1), Some(n), Some(n / 32 * ty.type_size())));
}

#[test]
fn an_unsupported_architecture_is_reported_with_the_rest() {
    let dir = temp_dir("arch");
    let path = dir.join("arch.gguf");
    let mut bytes = tiny_llama_gguf(&TinySpec::odd(), 3);
    let keys = [
        ("general.architecture", "not-a-llama".into()),
        ("not-a-llama.block_count", 7u32.into()),
        ("not-a-llama.embedding_length", 96u32.into()),
        ("not-a-llama.attention.head_count", 3u32.into()),
        ("not-a-llama.attention.head_count_kv", 1u32.into()),
        ("not-a-llama.context_length", 64u32.into()),
    ];
    bytes = rewrite_gguf(&bytes, &keys, &[]);
    std::fs::write(&path, bytes).unwrap();
    let doc = inspect_json(&path, &[]);
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!((&doc["runnable"], &doc["architecture"], &doc["layers"]), (&Value::Bool(false), &Value::from("not-a-llama"), &Value::from(7)), "{doc}");
    let problems = doc["problems"].as_array().unwrap();
    assert!(problems.iter().any(|p| p["kind"] == "architecture" && p["message"].as_str().unwrap().contains("not-a-llama")), "{doc}");
    // Everything else still reported: the KV cache from the metadata's shape (7 layers of one
    // KV head of 96 / 3 = 32, at the trained 64 positions, f16), no activation estimate.
    let mem = &doc["gpu_memory"];
    assert_eq!((mem["context"].as_u64(), mem["kv_cache"].as_u64(), &mem["activations"]), (Some(64), Some(2 * 7 * 64 * 32 * 2), &Value::Null), "{mem}");
    let params: u64 = elements_by_type(&TinySpec::odd()).iter().map(|t| t.1).sum();
    assert_eq!(doc["parameters"].as_u64(), Some(params));
}

/// Header counts past qgpu's budgets are reported, not multiplied: a `block_count` of 2^62
/// overflowed the KV-cache estimate.
#[test]
fn huge_header_counts_are_reported_not_computed() {
    let dir = temp_dir("huge");
    for (arch, key) in [("llama", "llama.block_count"), ("not-a-llama", "not-a-llama.block_count")] {
        let path = dir.join(format!("{arch}.gguf"));
        let keys = [
            ("general.architecture", arch.into()),
            (key, (1u64 << 62).into()),
            ("not-a-llama.attention.head_count", 3u32.into()),
            ("not-a-llama.embedding_length", 96u32.into()),
        ];
        std::fs::write(&path, rewrite_gguf(&tiny_llama_gguf(&TinySpec::odd(), 3), &keys, &[])).unwrap();
        let doc = inspect_json(&path, &[]);
        assert_eq!(doc["runnable"], Value::Bool(false), "{doc}");
        assert_eq!(doc["gpu_memory"]["kv_cache"].as_u64(), Some(0), "{doc}");
        if arch == "llama" {
            let problems = doc["problems"].as_array().unwrap();
            assert!(problems.iter().any(|p| p["kind"] == "config" && p["message"].as_str().unwrap().contains("block_count")), "{doc}");
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_files_are_clear_errors() {
    let dir = temp_dir("bad");
    let not_gguf = dir.join("notes.gguf");
    std::fs::write(&not_gguf, b"these are not the weights you are looking for").unwrap();
    let truncated = dir.join("truncated.gguf");
    let whole = tiny_llama_gguf(&TinySpec::odd(), 4);
    std::fs::write(&truncated, &whole[..whole.len() / 2]).unwrap();
    let missing = dir.join("missing.gguf");
    for (path, what) in [(&not_gguf, "notes.gguf"), (&truncated, "truncated.gguf"), (&missing, "missing.gguf")] {
        for json in [false, true] {
            let out = inspect(path, if json { &["--json"] } else { &[] });
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success() && out.stdout.is_empty(), "{}: {stderr}", path.display());
            // The file named, and the loader's typed GGUF error underneath.
            assert!(stderr.contains(what) && stderr.contains("GGUF") && !stderr.contains("panicked"), "{}: {stderr}", path.display());
        }
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_context_whose_buffers_exceed_the_binding_limit_is_not_runnable() {
    // Trained for 2^24 positions (metadata only): at that context the RoPE table (2^24 × 32
    // dimensions × 4 bytes = 2 GiB) and each layer's f16 K cache (1 GiB) outgrow lavapipe's
    // binding. (Attention keeps no score buffer of the context's size.)
    let spec = TinySpec { context: 1 << 24, ..TinySpec::odd() };
    let dir = temp_dir("binding");
    let path = dir.join("long.gguf");
    std::fs::write(&path, tiny_llama_gguf(&spec, 5)).unwrap();
    let long = inspect_json(&path, &["--context", &(1 << 24).to_string()]);
    let short = inspect_json(&path, &["--context", "64"]);
    std::fs::remove_dir_all(&dir).ok();
    if long["adapter_check"] != "done" {
        assert!(std::env::var("CI").map_or(true, |v| v != "true"), "CI=true and the adapter check was skipped: {long}");
        return;
    }
    assert_eq!(long["gpu_memory"]["largest_buffer"].as_u64(), Some((1 << 24) * 32 * 4), "{long}");
    assert_eq!(long["runnable"], Value::Bool(false), "{long}");
    let problems = long["problems"].as_array().unwrap();
    assert!(problems.iter().any(|p| p["kind"] == "binding_limit" && p["message"].as_str().unwrap().contains("--context")), "{long}");
    assert_eq!(short["runnable"], Value::Bool(true), "{short}");
}
