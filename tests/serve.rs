//! `qgpu serve` end to end: the binary on a loopback port, driven by the official `openai`
//! Python package (tests/serve/openai_client.py) as users drive it, then stopped by SIGTERM.
//! The Python side needs `openai` (tests/serve/requirements.txt; scripts/test.sh installs it
//! and sets QGPU_PYTHON).

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const MAX_TOKENS: usize = 8;
const CONTEXT: usize = 512;
const PARALLEL: usize = 4;
const QUEUE: usize = 2;

/// A Python with `openai`: QGPU_PYTHON, else python3 if it has it.
fn python() -> Option<PathBuf> {
    if let Ok(p) = std::env::var("QGPU_PYTHON") {
        return Some(PathBuf::from(p));
    }
    let has = Command::new("python3").args(["-c", "import openai"]).stderr(Stdio::null()).status().is_ok_and(|s| s.success());
    if has {
        return Some(PathBuf::from("python3"));
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("CI=true and no Python with `openai`: set QGPU_PYTHON (scripts/test.sh does)");
    }
    eprintln!("skipping: no Python with `openai` (pip install -r tests/serve/requirements.txt)");
    None
}

/// What `qgpu run` answers greedily.
fn qgpu_run(model: &Path, prompt: &str, chat: bool) -> String {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qgpu"));
    cmd.args(["run", "--temperature", "0", "--max-tokens", &MAX_TOKENS.to_string(), "--prompt", prompt]).arg("--model").arg(model);
    if chat {
        cmd.arg("--chat");
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "qgpu run: {}", String::from_utf8_lossy(&out.stderr));
    // `run` ends the answer with one newline of its own.
    String::from_utf8(out.stdout).unwrap().strip_suffix('\n').unwrap().to_owned()
}

#[test]
fn openai_client_against_qgpu_serve() {
    if common::context().is_none() {
        return;
    }
    let Some(python) = python() else { return };
    let model = common::model_path();
    if !model.is_file() {
        assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "CI=true and the model is missing at {}; run `qgpu fetch`", model.display());
        eprintln!("skipping: no model at {}", model.display());
        return;
    }
    let (chat_prompt, text_prompt) = ("What is the capital of France?", "Once upon a time");
    let expected_chat = qgpu_run(&model, chat_prompt, true);
    let expected_text = qgpu_run(&model, text_prompt, false);

    let dir = std::env::temp_dir().join(format!("qgpu-serve-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log_path = dir.join("server.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let key = "test-key-123";
    let mut server = Command::new(env!("CARGO_BIN_EXE_qgpu"))
        .args(["serve", "--port", "0", "--api-key", key, "--body-limit", "65536"])
        .args(["--parallel", &PARALLEL.to_string(), "--context", &CONTEXT.to_string(), "--queue", &QUEUE.to_string()])
        .arg("--model")
        .arg(&model)
        .stderr(log)
        .spawn()
        .unwrap();
    // The address is printed once requests can be made.
    let started = Instant::now();
    let url = loop {
        let text = std::fs::read_to_string(&log_path).unwrap();
        if let Some(at) = text.find("listening on ") {
            break text[at + 13..].lines().next().unwrap().trim().to_owned();
        }
        if let Some(status) = server.try_wait().unwrap() {
            panic!("qgpu serve exited with {status}: {text}");
        }
        assert!(started.elapsed() < Duration::from_secs(600), "qgpu serve did not start: {text}");
        std::thread::sleep(Duration::from_millis(200));
    };
    let batch = ["Name a fruit.", "What is 2 + 2?", "Say hello in French.", "What color is the sky?"];
    let client = Command::new(python)
        .arg("tests/serve/openai_client.py")
        .env("QGPU_SERVE_URL", &url)
        .env("QGPU_API_KEY", key)
        .env("QGPU_SERVE_LOG", &log_path)
        .env("QGPU_MAX_TOKENS", MAX_TOKENS.to_string())
        .env("QGPU_CONTEXT", CONTEXT.to_string())
        .env("QGPU_PARALLEL", PARALLEL.to_string())
        .env("QGPU_QUEUE", QUEUE.to_string())
        .env("QGPU_CHAT_PROMPT", chat_prompt)
        .env("QGPU_EXPECTED_CHAT", &expected_chat)
        .env("QGPU_TEXT_PROMPT", text_prompt)
        .env("QGPU_EXPECTED_TEXT", &expected_text)
        .env("QGPU_BATCH_PROMPTS", serde_json::to_string(&batch).unwrap())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut passed = None;
    for line in BufReader::new(client.stdout.unwrap()).lines() {
        let line = line.unwrap();
        eprintln!("{line}");
        if line.ends_with("checks passed") {
            passed = Some(line);
        }
    }

    // SIGTERM: a graceful exit with status 0.
    let _ = Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    let stopping = Instant::now();
    let status = loop {
        if let Some(status) = server.try_wait().unwrap() {
            break status;
        }
        if stopping.elapsed() > Duration::from_secs(60) {
            let _ = server.kill();
            panic!("qgpu serve did not stop within 60 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let log = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(passed.is_some(), "the openai client failed; server log:\n{log}");
    assert!(status.success(), "qgpu serve after SIGTERM: {status}\n{log}");
    // One log line per answered request, with its token counts.
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with("chatcmpl-") || l.starts_with("cmpl-")).collect();
    assert!(lines.len() >= 14 && lines.iter().all(|l| l.contains(" prompt=") && l.contains(" cached=") && l.contains(" finish=")), "request log:\n{log}");
}
