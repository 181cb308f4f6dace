//! `qgpu serve` end to end: the binary on a loopback port, driven by the official `openai`
//! Python package (tests/serve/openai_client.py) as users drive it, then stopped by SIGTERM.
//! The Python side needs `openai` (tests/serve/requirements.txt; scripts/test.sh installs it
//! and sets QGPU_PYTHON). A lost device is checked in process, where the test can destroy the
//! server's device.

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
    let key = "test-key-123";
    let (parallel, context, queue) = (PARALLEL.to_string(), CONTEXT.to_string(), QUEUE.to_string());
    let args = ["--port", "0", "--api-key", key, "--body-limit", "65536", "--parallel", &parallel, "--context", &context, "--queue", &queue];
    let (server, url) = start_server(&args, &model, &log_path);
    let batch = ["Name a fruit.", "What is 2 + 2?", "Say hello in French.", "What color is the sky?"];
    let env = [
        ("QGPU_SERVE_URL", url),
        ("QGPU_API_KEY", key.to_owned()),
        ("QGPU_SERVE_LOG", log_path.display().to_string()),
        ("QGPU_MAX_TOKENS", MAX_TOKENS.to_string()),
        ("QGPU_CONTEXT", context.clone()),
        ("QGPU_PARALLEL", parallel.clone()),
        ("QGPU_QUEUE", queue.clone()),
        ("QGPU_CHAT_PROMPT", chat_prompt.to_owned()),
        ("QGPU_EXPECTED_CHAT", expected_chat),
        ("QGPU_TEXT_PROMPT", text_prompt.to_owned()),
        ("QGPU_EXPECTED_TEXT", expected_text),
        ("QGPU_BATCH_PROMPTS", serde_json::to_string(&batch).unwrap()),
    ];
    let passed = run_client(&python, "tests/serve/openai_client.py", &env);
    // SIGTERM: a graceful exit with status 0.
    let status = stop_server(server);
    let log = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(passed, "the openai client failed; server log:\n{log}");
    assert!(status.success(), "qgpu serve after SIGTERM: {status}\n{log}");
    // One log line per answered request, with its token counts.
    let lines: Vec<&str> = log.lines().filter(|l| l.starts_with("chatcmpl-") || l.starts_with("cmpl-")).collect();
    assert!(lines.len() >= 14 && lines.iter().all(|l| l.contains(" prompt=") && l.contains(" cached=") && l.contains(" finish=")), "request log:\n{log}");
}

/// Starts `qgpu serve` with `args` and returns it with its URL, once it listens; its stderr
/// goes to `log`.
fn start_server(args: &[&str], model: &Path, log: &Path) -> (std::process::Child, String) {
    let mut server = Command::new(env!("CARGO_BIN_EXE_qgpu")).arg("serve").args(args).arg("--model").arg(model).stderr(std::fs::File::create(log).unwrap()).spawn().unwrap();
    let started = Instant::now();
    loop {
        let text = std::fs::read_to_string(log).unwrap();
        if let Some(at) = text.find("listening on ") {
            return (server, text[at + 13..].lines().next().unwrap().trim().to_owned());
        }
        if let Some(status) = server.try_wait().unwrap() {
            panic!("qgpu serve exited with {status}: {text}");
        }
        assert!(started.elapsed() < Duration::from_secs(600), "qgpu serve did not start: {text}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// SIGTERM, then the exit status within a minute.
fn stop_server(mut server: std::process::Child) -> std::process::ExitStatus {
    let _ = Command::new("kill").args(["-TERM", &server.id().to_string()]).status();
    let stopping = Instant::now();
    loop {
        if let Some(status) = server.try_wait().unwrap() {
            return status;
        }
        if stopping.elapsed() > Duration::from_secs(60) {
            let _ = server.kill();
            panic!("qgpu serve did not stop within 60 s of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs a client script to its end, echoing its lines; true if it reported every check passed.
fn run_client(python: &Path, script: &str, env: &[(&str, String)]) -> bool {
    let mut cmd = Command::new(python);
    cmd.arg(script).stdout(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().unwrap();
    let mut passed = false;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        eprintln!("{line}");
        passed |= line.ends_with("checks passed");
    }
    child.wait().unwrap().success() && passed
}

/// An encoder served: /v1/embeddings through the `openai` package equals `qgpu embed`.
#[test]
fn openai_embeddings_from_an_encoder() {
    if common::context().is_none() {
        return;
    }
    let Some(python) = python() else { return };
    let Some(minilm) = common::require_minilm() else { return };
    let texts = ["A man is eating food.", "The new movie is awesome", "A cheetah chases its prey across a field, running faster than any car on the road."];
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qgpu"));
    cmd.arg("embed").arg("--model").arg(&minilm);
    for t in texts {
        cmd.args(["--text", t]);
    }
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "qgpu embed: {}", String::from_utf8_lossy(&out.stderr));
    let expected: Vec<serde_json::Value> = String::from_utf8(out.stdout).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();

    let dir = std::env::temp_dir().join(format!("qgpu-serve-embed-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("server.log");
    let (server, url) = start_server(&["--port", "0", "--log-format", "json"], &minilm, &log);
    let passed = run_client(
        &python,
        "tests/serve/openai_embeddings.py",
        &[("QGPU_SERVE_URL", url), ("QGPU_EMBED_TEXTS", serde_json::to_string(&texts).unwrap()), ("QGPU_EXPECTED_EMBEDDINGS", serde_json::to_string(&expected).unwrap())],
    );
    let status = stop_server(server);
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(passed, "the openai client failed; server log:\n{text}");
    assert!(status.success(), "qgpu serve after SIGTERM: {status}\n{text}");
    // --log-format json: one object per answered request (3 formats, 1 single input).
    let lines: Vec<serde_json::Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert!(lines.len() >= 4 && lines.iter().all(|l| l["id"].as_str().is_some_and(|id| id.starts_with("embd-")) && l["prompt_tokens"].as_u64() > Some(0)), "request log:\n{text}");
}

/// One HTTP/1.1 request on its own connection: the status and the body.
fn http(addr: std::net::SocketAddr, method: &str, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(600))).unwrap();
    let request = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status = answer.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("no status line in {answer:?}"));
    (status, answer.split_once("\r\n\r\n").map_or(String::new(), |(_, b)| b.to_owned()))
}

/// A lost GPU device, while a request runs and afterwards: that request and every later one
/// get a 503 naming the loss, /health fails, and the server keeps answering. The server runs
/// in this process so that the test can destroy its device (`Context::destroy`, which ends
/// the device as a driver reset would); its thread ends with the test process.
#[test]
fn lost_device_makes_every_request_a_503() {
    use qgpu::model::llama::{Llama, LlamaOptions};
    use qgpu::serve::{log::LogFormat, Model, ServeOptions};
    let Some(ctx) = common::context() else { return };
    let path = common::model_path();
    if !path.is_file() {
        assert!(!std::env::var("CI").is_ok_and(|v| v == "true"), "CI=true and the model is missing at {}; run `qgpu fetch`", path.display());
        eprintln!("skipping: no model at {}", path.display());
        return;
    }
    let file = qgpu::loader::GgufFile::open(&path).unwrap();
    let tokenizer = qgpu::model::tokenizer::Tokenizer::from_gguf(file.metadata()).unwrap();
    let options = LlamaOptions { context: 128, slots: 1, ..Default::default() };
    let model = pollster::block_on(Llama::load(&ctx, &file, options, &mut |_, _| {})).unwrap();
    let ctx = std::sync::Arc::new(ctx);
    let serve = ServeOptions {
        host: "127.0.0.1".into(),
        port: 0,
        api_key: None,
        model_id: "smollm2".into(),
        queue: 4,
        prefill_step: 32,
        max_tokens: None,
        body_bytes: 1 << 20,
        log: LogFormat::Text,
        grace: Duration::from_secs(1),
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let server_ctx = ctx.clone();
    std::thread::spawn(move || qgpu::serve::serve(server_ctx, Model::Decoder(model, tokenizer), serve, |addr| tx.send(addr).unwrap()));
    let addr = rx.recv_timeout(Duration::from_secs(600)).unwrap();

    let (status, body) = http(addr, "GET", "/health", "");
    assert_eq!(status, 200, "{body}");
    let (status, body) = http(addr, "POST", "/v1/completions", r#"{"prompt": "Once upon a time", "max_tokens": 2, "temperature": 0}"#);
    assert_eq!(status, 200, "before the loss: {body}");

    // A long request, running when the device goes.
    let running = std::thread::spawn(move || http(addr, "POST", "/v1/completions", r#"{"prompt": "Once upon a time", "max_tokens": 100, "temperature": 0}"#));
    let started = Instant::now();
    while !http(addr, "GET", "/health", "").1.contains("\"slots_processing\":1") {
        assert!(started.elapsed() < Duration::from_secs(120), "the long request never took its slot");
        std::thread::sleep(Duration::from_millis(50));
    }
    ctx.destroy();
    let (status, body) = running.join().unwrap();
    assert_eq!(status, 503, "the request running when the device was lost: {body}");
    assert!(body.contains("lost"), "{body}");

    let (status, body) = http(addr, "GET", "/health", "");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("lost"), "{body}");
    for _ in 0..2 {
        let (status, body) = http(addr, "POST", "/v1/chat/completions", r#"{"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 2}"#);
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("\"code\":\"unavailable\"") && body.contains("lost"), "{body}");
    }
    // Routes that need no device still answer.
    let (status, body) = http(addr, "GET", "/v1/models", "");
    assert_eq!(status, 200, "{body}");
}
