//! Validates the CPU llama reference (`common/llama_ref.rs`), the oracle of the GPU decoder:
//! against transformers' logits for SmolLM2-135M-Instruct (when the model file is present), and
//! on the synthetic models of `common/tiny_gguf.rs`.

#[path = "common/llama_ref.rs"]
mod llama_ref;
#[path = "common/tiny_gguf.rs"]
mod tiny_gguf;

use std::path::PathBuf;
use std::time::Instant;

use llama_ref::RefLlama;
use qgpu::loader::GgufFile;
use qgpu::quant::Format;
use tiny_gguf::{tiny_llama_gguf, TinySpec};

const MODEL_FILE: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/smollm2_reference.json");
/// Largest |logit difference| allowed against transformers (f32) over each position's top 10.
const TOLERANCE: f32 = 0.02;

/// `$QGPU_MODEL`, else `<cache>/models/SmolLM2-135M-Instruct.Q4_1.gguf` with `<cache>` the
/// first of `$QGPU_CACHE_DIR`, `$XDG_CACHE_HOME/qgpu`, `$HOME/.cache/qgpu` that is set.
fn model_path() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("QGPU_MODEL") {
        return Some(PathBuf::from(p));
    }
    let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let cache = var("QGPU_CACHE_DIR")
        .or_else(|| var("XDG_CACHE_HOME").map(|p| p.join("qgpu")))
        .or_else(|| var("HOME").map(|p| p.join(".cache/qgpu")))?;
    Some(cache.join("models").join(MODEL_FILE))
}

/// The model, or `None` (skip) when it is absent; absent under `CI=true` is a failure.
fn open_model() -> Option<GgufFile> {
    let path = model_path().filter(|p| p.is_file());
    match path {
        Some(p) => Some(GgufFile::open(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))),
        None if std::env::var("CI").is_ok_and(|v| v == "true") => {
            panic!("CI=true and {MODEL_FILE} not found (set QGPU_MODEL or QGPU_CACHE_DIR)")
        }
        None => {
            eprintln!("skipping: {MODEL_FILE} not found (set QGPU_MODEL or QGPU_CACHE_DIR)");
            None
        }
    }
}

struct Case {
    input_ids: Vec<u32>,
    /// Per position: transformers' top-10 ids and their logits.
    top10: Vec<(Vec<u32>, Vec<f32>)>,
}

fn load_cases() -> Vec<Case> {
    let text = std::fs::read_to_string(FIXTURE).unwrap();
    let root = json::parse(&text);
    let nums = |v: &json::Value| -> Vec<f64> { v.arr().iter().map(json::Value::num).collect() };
    root.get("cases")
        .arr()
        .iter()
        .map(|c| Case {
            input_ids: nums(c.get("input_ids")).into_iter().map(|x| x as u32).collect(),
            top10: c
                .get("top10_per_position")
                .arr()
                .iter()
                .map(|p| {
                    let ids = nums(p.get("ids")).into_iter().map(|x| x as u32).collect();
                    let logits = nums(p.get("logits")).into_iter().map(|x| x as f32).collect();
                    (ids, logits)
                })
                .collect(),
        })
        .collect()
}

/// Max |logit difference| over every position's top 10, and the positions whose top 1 differs.
fn compare(case: &Case, logits: &[Vec<f32>]) -> (f32, Vec<usize>) {
    assert_eq!(logits.len(), case.top10.len());
    let mut max_diff = 0.0f32;
    let mut top1_mismatch = Vec::new();
    for (pos, ((ids, want), got)) in case.top10.iter().zip(logits).enumerate() {
        for (&id, &w) in ids.iter().zip(want) {
            max_diff = max_diff.max((got[id as usize] - w).abs());
        }
        let argmax = got.iter().enumerate().fold(0, |b, (i, &v)| if v > got[b] { i } else { b });
        if argmax != ids[0] as usize {
            top1_mismatch.push(pos);
        }
    }
    (max_diff, top1_mismatch)
}

/// The reference against transformers on every fixture case. Set `QGPU_REF_ALL_CASES=0` to
/// check only the shortest case.
#[test]
fn reference_matches_transformers_on_smollm2() {
    let Some(file) = open_model() else { return };
    let start = Instant::now();
    let model = RefLlama::from_gguf(&file).unwrap();
    eprintln!("loaded and dequantized in {:.2?}: {:?}", start.elapsed(), model.config);
    let c = &model.config;
    assert_eq!((c.arch.as_str(), c.n_heads, c.n_kv_heads, c.head_dim, c.tied_head), ("llama", 9, 3, 64, true));

    let mut cases = load_cases();
    assert_eq!(cases.len(), 3);
    if std::env::var("QGPU_REF_ALL_CASES").is_ok_and(|v| v == "0") {
        cases.sort_by_key(|c| c.input_ids.len());
        cases.truncate(1);
    }
    let mut failures = Vec::new();
    for case in &cases {
        let start = Instant::now();
        let logits = model.forward(&case.input_ids);
        let (max_diff, mismatch) = compare(case, &logits);
        eprintln!(
            "{} tokens: max |Δlogit| over top-10 = {max_diff:.5}, top-1 mismatches at {mismatch:?} ({:.2?})",
            case.input_ids.len(),
            start.elapsed()
        );
        if max_diff.is_nan() || max_diff > TOLERANCE || !mismatch.is_empty() {
            failures.push((case.input_ids.len(), max_diff, mismatch));
        }
    }
    assert!(failures.is_empty(), "reference disagrees with transformers (tokens, max diff, top-1 mismatches): {failures:?}");
}

#[test]
fn tiny_model_loads_and_is_causal() {
    for spec in [
        TinySpec::odd(),
        TinySpec { tied_head: true, weight_format: Format::Q4_1, embed_format: Format::F16, ..TinySpec::odd() },
        TinySpec { weight_format: Format::F32, embed_format: Format::F32, n_kv_heads: 3, ..TinySpec::odd() },
    ] {
        let bytes = tiny_llama_gguf(&spec, 7);
        assert_eq!(bytes, tiny_llama_gguf(&spec, 7), "deterministic in the seed");
        assert_ne!(bytes, tiny_llama_gguf(&spec, 8));
        let file = GgufFile::from_bytes(bytes).unwrap();
        assert_eq!(file.get_str("tokenizer.ggml.model").unwrap(), "gpt2");
        assert_eq!(file.get_string_array("tokenizer.ggml.tokens").unwrap().len(), spec.vocab);
        let model = RefLlama::from_gguf(&file).unwrap();
        let c = &model.config;
        assert_eq!(
            (c.vocab, c.dim, c.n_layers, c.n_heads, c.n_kv_heads, c.head_dim, c.ffn, c.tied_head, c.context),
            (spec.vocab, spec.dim, spec.n_layers, spec.n_heads, spec.n_kv_heads, spec.head_dim(), spec.ffn, spec.tied_head, spec.context),
        );
        assert_eq!((c.eps, c.rope_base, c.rope_dim), (spec.eps, spec.rope_base, spec.head_dim()));

        let tokens: Vec<u32> = (0..11).map(|i| (i * 97 + 5) % spec.vocab as u32).collect();
        let all = model.forward(&tokens);
        assert_eq!(all.len(), tokens.len());
        for row in &all {
            assert_eq!(row.len(), spec.vocab);
            assert!(row.iter().all(|v| v.is_finite()));
            let rms = (row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32).sqrt();
            assert!((0.1..100.0).contains(&rms), "logit RMS {rms} out of range for {spec:?}");
        }
        // Causal: a prefix sees the same logits; a different later token changes only later ones.
        let prefix = model.forward(&tokens[..4]);
        let mut other = tokens.clone();
        other[6] = (other[6] + 1) % spec.vocab as u32;
        let changed = model.forward(&other);
        for p in 0..4 {
            assert_eq!(prefix[p], all[p]);
        }
        for p in 0..6 {
            assert_eq!(changed[p], all[p]);
        }
        assert_ne!(changed[6], all[6]);
        assert_ne!(changed[10], all[10]);
    }
}

/// Just enough JSON for the fixture (no dependency on serde).
mod json {
    #[derive(Debug)]
    #[allow(dead_code)] // strings and bools are parsed but not read
    pub enum Value {
        Null,
        Bool(bool),
        Num(f64),
        Str(String),
        Arr(Vec<Value>),
        Obj(Vec<(String, Value)>),
    }

    impl Value {
        pub fn get(&self, key: &str) -> &Value {
            match self {
                Value::Obj(o) => &o.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("no key `{key}`")).1,
                _ => panic!("not an object looking up `{key}`"),
            }
        }
        pub fn arr(&self) -> &[Value] {
            match self {
                Value::Arr(a) => a,
                other => panic!("not an array: {other:?}"),
            }
        }
        pub fn num(&self) -> f64 {
            match self {
                Value::Num(x) => *x,
                other => panic!("not a number: {other:?}"),
            }
        }
    }

    pub fn parse(text: &str) -> Value {
        let mut p = Parser { s: text.as_bytes(), i: 0 };
        let v = p.value();
        p.ws();
        assert_eq!(p.i, p.s.len(), "trailing characters in JSON");
        v
    }

    struct Parser<'a> {
        s: &'a [u8],
        i: usize,
    }

    impl Parser<'_> {
        fn ws(&mut self) {
            while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
                self.i += 1;
            }
        }
        fn eat(&mut self, c: u8) -> bool {
            self.ws();
            let hit = self.s.get(self.i) == Some(&c);
            self.i += hit as usize;
            hit
        }
        fn lit(&mut self, word: &str, v: Value) -> Value {
            assert!(self.s[self.i..].starts_with(word.as_bytes()), "bad JSON at {}", self.i);
            self.i += word.len();
            v
        }
        fn value(&mut self) -> Value {
            self.ws();
            match self.s[self.i] {
                b'{' => {
                    self.i += 1;
                    let mut o = Vec::new();
                    if !self.eat(b'}') {
                        loop {
                            self.ws();
                            let k = self.string();
                            assert!(self.eat(b':'), "expected ':' at {}", self.i);
                            o.push((k, self.value()));
                            if self.eat(b'}') {
                                break;
                            }
                            assert!(self.eat(b','), "expected ',' at {}", self.i);
                        }
                    }
                    Value::Obj(o)
                }
                b'[' => {
                    self.i += 1;
                    let mut a = Vec::new();
                    if !self.eat(b']') {
                        loop {
                            a.push(self.value());
                            if self.eat(b']') {
                                break;
                            }
                            assert!(self.eat(b','), "expected ',' at {}", self.i);
                        }
                    }
                    Value::Arr(a)
                }
                b'"' => Value::Str(self.string()),
                b't' => self.lit("true", Value::Bool(true)),
                b'f' => self.lit("false", Value::Bool(false)),
                b'n' => self.lit("null", Value::Null),
                _ => {
                    let start = self.i;
                    while self.i < self.s.len() && matches!(self.s[self.i], b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9') {
                        self.i += 1;
                    }
                    let t = std::str::from_utf8(&self.s[start..self.i]).unwrap();
                    Value::Num(t.parse().unwrap_or_else(|_| panic!("bad JSON number `{t}` at {start}")))
                }
            }
        }
        fn string(&mut self) -> String {
            assert_eq!(self.s[self.i], b'"', "expected a string at {}", self.i);
            self.i += 1;
            let mut out = String::new();
            loop {
                let c = self.s[self.i];
                self.i += 1;
                match c {
                    b'"' => return out,
                    b'\\' => {
                        let e = self.s[self.i];
                        self.i += 1;
                        match e {
                            b'n' => out.push('\n'),
                            b't' => out.push('\t'),
                            b'r' => out.push('\r'),
                            b'b' => out.push('\u{8}'),
                            b'f' => out.push('\u{c}'),
                            b'u' => {
                                let hex = std::str::from_utf8(&self.s[self.i..self.i + 4]).unwrap();
                                self.i += 4;
                                let mut cp = u32::from_str_radix(hex, 16).unwrap();
                                // A surrogate pair.
                                if (0xD800..0xDC00).contains(&cp) && self.s[self.i..].starts_with(b"\\u") {
                                    let lo = u32::from_str_radix(std::str::from_utf8(&self.s[self.i + 2..self.i + 6]).unwrap(), 16).unwrap();
                                    self.i += 6;
                                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                                }
                                out.push(char::from_u32(cp).unwrap_or('\u{FFFD}'));
                            }
                            other => out.push(other as char),
                        }
                    }
                    _ => {
                        // Copy a whole UTF-8 sequence.
                        let start = self.i - 1;
                        while self.i < self.s.len() && (self.s[self.i] & 0xC0) == 0x80 {
                            self.i += 1;
                        }
                        out.push_str(std::str::from_utf8(&self.s[start..self.i]).unwrap());
                    }
                }
            }
        }
    }
}
