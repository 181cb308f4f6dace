//! `qgpu quantize` against hostile inputs and outputs (issue 11): an `--out` that is not a
//! regular file is refused before any work, partial files are fresh and stale ones swept,
//! empty weight matrices and huge layer numbers are typed errors or handled, and tens of
//! thousands of tensors convert (in linear time: lookups are indexed).
#![cfg(not(target_arch = "wasm32"))]

mod common;

use std::ops::ControlFlow;
use std::path::Path;

use qgpu::convert::{quantize_model, ConvertError, ConvertOptions, PlanError, Progress, QuantPlan};
use qgpu::loader::{GgmlType, GgufFile, GgufWriter, HfFiles, HfModel, SafetensorsFile, SafetensorsSet, TensorSource};
use qgpu::quant::{reference, Format};

use common::TempDir;

fn f32_bytes(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// A GGUF (in memory) of `n` weight matrices `blk.{i}.ffn_up.weight`, 32 × 2 each.
fn many_tensors_gguf(n: usize) -> GgufFile {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", "llama").unwrap();
    for i in 0..n {
        let values: Vec<f32> = (0..64).map(|j| ((i * 64 + j) % 97) as f32 / 97.0 - 0.5).collect();
        w.add_tensor(format!("blk.{i}.ffn_up.weight"), &[32, 2], GgmlType::F32, f32_bytes(&values)).unwrap();
    }
    GgufFile::from_bytes(w.to_bytes()).unwrap()
}

/// Converts with Q8_0 on one thread, counting progress calls.
fn run(source: &dyn TensorSource, out: &Path) -> (Result<qgpu::convert::Report, ConvertError>, usize) {
    let mut calls = 0;
    let mut progress = |_: &Progress<'_>| {
        calls += 1;
        ControlFlow::Continue(())
    };
    let options = ConvertOptions { threads: 1, ..Default::default() };
    let result = quantize_model(source, &QuantPlan::new(Format::Q8_0), &options, out, &mut progress);
    (result, calls)
}

#[cfg(unix)]
#[test]
fn an_out_that_is_not_a_regular_file_is_refused_before_any_work() {
    let dir = TempDir::new("notfile");
    let source = many_tensors_gguf(3);
    let victim = dir.0.join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    let link = dir.0.join("link.gguf");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let fifo = dir.0.join("fifo.gguf");
    assert!(std::process::Command::new("mkfifo").arg(&fifo).status().unwrap().success());
    let socket = dir.0.join("socket.gguf");
    let _listener = std::os::unix::net::UnixListener::bind(&socket).unwrap();
    let subdir = dir.0.join("dir.gguf");
    std::fs::create_dir(&subdir).unwrap();
    for (out, kind) in [(&subdir, "directory"), (&fifo, "FIFO"), (&socket, "socket"), (&link, "symbolic link")] {
        let (result, calls) = run(&source, out);
        match result {
            Err(ConvertError::OutNotAFile { path, kind: k }) => assert_eq!((&path, k), (out, kind)),
            other => panic!("{}: expected OutNotAFile, got {other:?}", out.display()),
        }
        assert_eq!(calls, 0, "{kind}: refused only after converting");
    }
    use std::os::unix::fs::FileTypeExt;
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO was replaced");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink());
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    // No partial file was even created.
    let partials = std::fs::read_dir(&dir.0).unwrap().filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().ends_with(".part")).count();
    assert_eq!(partials, 0);
}

#[test]
fn an_out_in_a_missing_directory_is_refused_up_front() {
    let dir = TempDir::new("nodir");
    let out = dir.0.join("no").join("such").join("model.gguf");
    let (result, calls) = run(&many_tensors_gguf(2), &out);
    match result {
        Err(ConvertError::OutDirMissing { path, dir: d }) => assert_eq!((path, d), (out.clone(), out.parent().unwrap().to_path_buf())),
        other => panic!("expected OutDirMissing, got {other:?}"),
    }
    assert_eq!(calls, 0);
}

#[test]
fn an_existing_regular_out_is_replaced() {
    let dir = TempDir::new("replace");
    let out = dir.0.join("model.gguf");
    std::fs::write(&out, b"old model").unwrap();
    let (result, _) = run(&many_tensors_gguf(2), &out);
    result.unwrap();
    assert_eq!(GgufFile::open(&out).unwrap().tensors().len(), 2);
    let names: Vec<String> = std::fs::read_dir(&dir.0).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert_eq!(names, ["model.gguf"]);
}

#[cfg(target_os = "linux")]
#[test]
fn quantize_sweeps_stale_partial_files_and_never_follows_a_planted_link() {
    let dir = TempDir::new("sweep");
    let out = dir.0.join("model.gguf");
    let victim = dir.0.join("victim");
    std::fs::write(&victim, b"precious").unwrap();
    // A pid above Linux's pid_max ceiling: its process cannot exist.
    let stale = dir.0.join(".model.gguf.4000000000.00000000000000aa.part");
    std::fs::write(&stale, b"half a model").unwrap();
    let link = dir.0.join(".model.gguf.4000000000.00000000000000bb.part");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    for p in [&stale, &link] {
        assert!(std::process::Command::new("touch").args(["-h", "-d", "1 hour ago"]).arg(p).status().unwrap().success());
    }
    // The old scheme's predictable name, planted as a link: not this scheme, never opened.
    let old_scheme = dir.0.join(format!(".model.gguf.partial-{}", std::process::id()));
    std::os::unix::fs::symlink(&victim, &old_scheme).unwrap();
    run(&many_tensors_gguf(2), &out).0.unwrap();
    assert!(!stale.exists());
    assert!(std::fs::symlink_metadata(&link).is_err(), "the stale link was kept");
    assert!(std::fs::symlink_metadata(&old_scheme).is_ok());
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert_eq!(GgufFile::open(&out).unwrap().tensors().len(), 2);
}

#[test]
fn an_empty_weight_matrix_from_gguf_is_a_typed_error() {
    let dir = TempDir::new("emptygguf");
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", "llama").unwrap();
    w.add_tensor("blk.0.ffn_up.weight", &[0, 4], GgmlType::F32, Vec::new()).unwrap();
    let source = GgufFile::from_bytes(w.to_bytes()).unwrap();
    let (result, calls) = run(&source, &dir.0.join("out.gguf"));
    match result {
        Err(ConvertError::Plan(PlanError::EmptyMatrix { tensor, dims })) => {
            assert_eq!((tensor.as_str(), dims), ("blk.0.ffn_up.weight", vec![0, 4]));
        }
        other => panic!("expected EmptyMatrix, got {other:?}"),
    }
    assert_eq!(calls, 0);
}

/// A BERT directory in memory (the tokenizer is only stored, not parsed, by the source).
fn bert_source(safetensors: Vec<u8>, layers: usize) -> HfModel {
    let config = format!(
        r#"{{"model_type": "bert", "hidden_size": 32, "num_attention_heads": 2, "max_position_embeddings": 16,
            "intermediate_size": 64, "num_hidden_layers": {layers}}}"#
    );
    let files = HfFiles {
        config: config.as_bytes(),
        tokenizer: b"{}",
        sentence_config: None,
        pooling_config: None,
        tokenizer_config: None,
        chat_template: None,
    };
    let weights = SafetensorsSet::from_files(vec![SafetensorsFile::from_bytes(safetensors).unwrap()]).unwrap();
    HfModel::from_parts("mem", files, weights).unwrap()
}

/// A safetensors file of F32 tensors `(name, PyTorch shape, values)`.
fn safetensors(tensors: &[(String, Vec<u64>, Vec<f32>)]) -> Vec<u8> {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, values) in tensors {
        let bytes = f32_bytes(values);
        header.insert(name.clone(), serde_json::json!({"dtype": "F32", "shape": shape, "data_offsets": [data.len(), data.len() + bytes.len()]}));
        data.extend(bytes);
    }
    let header = serde_json::to_vec(&serde_json::Value::Object(header)).unwrap();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header);
    out.extend(data);
    out
}

#[test]
fn an_empty_weight_matrix_from_safetensors_is_a_typed_error() {
    let dir = TempDir::new("emptyst");
    // PyTorch [out = 4, in = 0]: GGUF dims [0, 4].
    let source = bert_source(safetensors(&[("encoder.layer.0.intermediate.dense.weight".into(), vec![4, 0], vec![])]), 1);
    let (result, _) = run(&source, &dir.0.join("out.gguf"));
    match result {
        Err(ConvertError::Plan(PlanError::EmptyMatrix { tensor, dims })) => {
            assert_eq!((tensor.as_str(), dims), ("blk.0.ffn_up.weight", vec![0, 4]));
        }
        other => panic!("expected EmptyMatrix, got {other:?}"),
    }
}

#[test]
fn a_huge_layer_number_in_a_name_does_not_overflow() {
    let dir = TempDir::new("hugelayer");
    // usize::MAX overflowed `N + 1` (the layer count from names); 2^62 overflowed `7 * n` in
    // the Q4_K_M layer pattern.
    for n in [usize::MAX, 1 << 62] {
        let mut w = GgufWriter::new();
        w.add_metadata("general.architecture", "llama").unwrap();
        w.add_tensor(format!("blk.{n}.ffn_down.weight"), &[32, 2], GgmlType::F32, f32_bytes(&[0.25; 64])).unwrap();
        let source = GgufFile::from_bytes(w.to_bytes()).unwrap();
        let options = ConvertOptions { threads: 1, ..Default::default() };
        let plan = QuantPlan::parse("Q4_K_M", "").unwrap();
        let report = quantize_model(&source, &plan, &options, &dir.0.join("out.gguf"), &mut qgpu::convert::no_progress).unwrap();
        assert_eq!(report.tensors.len(), 1, "blk.{n}");
    }
}

/// Quantize handles 20,000 tensors from GGUF and from safetensors, each as the reference
/// quantizer writes it (correctness only; the lookups behind it are indexed).
#[test]
fn twenty_thousand_tiny_tensors_convert() {
    const N: usize = 20_000;
    let dir = TempDir::new("many");
    let check = |source: &dyn TensorSource, out: &Path| {
        let start = std::time::Instant::now();
        let report = run(source, out).0.unwrap();
        eprintln!("{N} tensors: {:.2} s", start.elapsed().as_secs_f64());
        assert_eq!(report.tensors.len(), N);
        let file = GgufFile::open(out).unwrap();
        assert_eq!(file.tensors().len(), N);
        for i in [0, N / 2, N - 1] {
            let name = format!("blk.{i}.ffn_up.weight");
            let want = reference::quantize(Format::Q8_0, 2, 32, &source.tensor_f32(&name).unwrap()).unwrap();
            assert_eq!(file.tensor_data(file.tensor(&name).unwrap()).unwrap(), want.data(), "{name}");
        }
    };
    check(&many_tensors_gguf(N), &dir.0.join("gguf.gguf"));
    let tensors: Vec<(String, Vec<u64>, Vec<f32>)> = (0..N)
        .map(|i| (format!("encoder.layer.{i}.intermediate.dense.weight"), vec![2, 32], (0..64).map(|j| ((i + j) % 13) as f32 - 6.0).collect()))
        .collect();
    check(&bert_source(safetensors(&tensors), N), &dir.0.join("hf.gguf"));
}

/// The CLI checks `--out` before opening or converting anything.
#[test]
fn cli_refuses_a_directory_as_out_before_reading_the_model() {
    let dir = TempDir::new("cli");
    let out = dir.0.join("out.gguf");
    std::fs::create_dir(&out).unwrap();
    let missing_model = dir.0.join("missing.gguf");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_qgpu"))
        .args(["quantize", "--format", "Q8_0", "--model"])
        .arg(&missing_model)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("is a directory, not a regular file"), "{stderr}");
    assert!(out.is_dir());
}
