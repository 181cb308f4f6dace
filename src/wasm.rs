//! The browser API (wasm32 only): a `Qgpu` class for JavaScript, wrapped by `web/qgpu.js`.
//!
//! Every async method returns a `Promise`; errors reject it with a JS `Error` carrying the
//! typed error's message. One operation runs at a time: a second call while loading or
//! generating is rejected. Generation yields to the event loop at every token (each readback
//! is a `mapAsync`), so the page stays responsive and `cancel()` takes effect at the next token.
//!
//! Known gap: `Context::scoped` cannot await wgpu's error-scope pops on the web (they resolve
//! through the event loop), so a validation or out-of-memory error during an upload is not
//! reported where it happens; device loss is, through `deviceLost()` and the next call.

use crate::gpu::{Context, ContextOptions};
use crate::loader::{GgufFile, HfFiles, HfModel, SafetensorsFile, SafetensorsSet, TensorSource};
use crate::model::generate::{GenerateOptions, GenerationStats, Generator, StopReason};
use crate::model::chat::ChatMessage;
use crate::model::tokenizer::SpecialText;
use crate::model::llama::{Llama, LlamaOptions, StreamedLlama};
use crate::model::sampler::SamplerConfig;
use crate::model::tokenizer::Tokenizer;
use crate::ops::{linear, GpuMatrix, GpuTensor, LinearKernel, MatvecKernel, MATVEC_MAX_ROWS};
use crate::quant::reference::{self, TestRng};
use crate::quant::Format;
use serde_json::{json, Value};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

mod embed;
pub use embed::QgpuEmbedder;
mod bench;

/// Relative L2 error allowed against the f64 oracle (as in tests/kernels.rs).
const SELF_TEST_TOLERANCE: f64 = 1e-5;

fn js_err(e: impl std::fmt::Display) -> JsValue {
    js_sys::Error::new(&e.to_string()).into()
}

fn to_js(v: &Value) -> JsValue {
    js_sys::JSON::parse(&v.to_string()).unwrap_or(JsValue::NULL)
}

/// Bytes of a model file, filled from JavaScript chunk by chunk as a download streams in, so
/// the page never holds a second whole copy.
#[wasm_bindgen]
pub struct ModelBytes {
    data: Vec<u8>,
}

#[wasm_bindgen]
impl ModelBytes {
    /// An empty buffer with room for `capacity` bytes (the Content-Length, when known).
    #[wasm_bindgen(constructor)]
    pub fn new(capacity: usize) -> Result<ModelBytes, JsValue> {
        let mut data = Vec::new();
        data.try_reserve_exact(capacity)
            .map_err(|_| js_err(format!("cannot allocate {} MiB for the model in WebAssembly memory (the limit is 4 GiB, often less)", capacity >> 20)))?;
        Ok(ModelBytes { data })
    }

    /// Appends one chunk.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), JsValue> {
        self.data
            .try_reserve(chunk.len())
            .map_err(|_| js_err("out of WebAssembly memory while receiving the model"))?;
        self.data.extend_from_slice(chunk);
        Ok(())
    }

    #[wasm_bindgen(getter)]
    pub fn length(&self) -> usize {
        self.data.len()
    }
}

/// The text files of a Hugging Face directory, as JavaScript read them.
struct HfParts {
    config: String,
    tokenizer: String,
    tokenizer_config: Option<String>,
    chat_template: Option<String>,
    sentence_config: Option<String>,
}

/// A model's bytes as the page handed them over: a Hugging Face directory's safetensors shards
/// with its text files, or (the embedder's) one GGUF file.
enum ModelSource {
    Gguf(Vec<u8>),
    Hf(Vec<Vec<u8>>, HfParts),
}

impl ModelSource {
    /// Bytes of the weights files together.
    fn len(&self) -> usize {
        match self {
            ModelSource::Gguf(bytes) => bytes.len(),
            ModelSource::Hf(shards, _) => shards.iter().map(Vec::len).sum(),
        }
    }

    /// Parses the files (checking every header against its bytes) into a tensor source.
    fn open(self) -> Result<Box<dyn TensorSource>, JsValue> {
        match self {
            ModelSource::Gguf(bytes) => Ok(Box::new(GgufFile::from_bytes(bytes).map_err(js_err)?)),
            ModelSource::Hf(shards, parts) => {
                if shards.is_empty() {
                    return Err(js_err("a Hugging Face model needs at least one .safetensors file"));
                }
                let files = shards.into_iter().map(SafetensorsFile::from_bytes).collect::<Result<Vec<_>, _>>().map_err(js_err)?;
                let weights = SafetensorsSet::from_files(files).map_err(js_err)?;
                let files = HfFiles {
                    config: parts.config.as_bytes(),
                    tokenizer: parts.tokenizer.as_bytes(),
                    sentence_config: parts.sentence_config.as_deref().map(str::as_bytes),
                    pooling_config: None,
                    tokenizer_config: parts.tokenizer_config.as_deref().map(str::as_bytes),
                    chat_template: parts.chat_template.as_deref().map(str::as_bytes),
                };
                Ok(Box::new(HfModel::from_parts("model.safetensors", files, weights).map_err(js_err)?))
            }
        }
    }
}

struct Inner {
    ctx: Context,
    generator: RefCell<Option<Generator>>,
    model_info: RefCell<Option<Value>>,
    last_stats: RefCell<Option<GenerationStats>>,
    busy: Cell<bool>,
    cancel: Cell<bool>,
}

/// Marks the instance busy for the life of an operation.
struct BusyGuard(Rc<Inner>);

impl BusyGuard {
    fn take(inner: &Rc<Inner>, what: &str) -> Result<Self, JsValue> {
        if inner.busy.replace(true) {
            return Err(js_err(format!("qgpu is busy; wait for the current operation to finish before {what}")));
        }
        Ok(BusyGuard(inner.clone()))
    }
}

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.busy.set(false);
    }
}

/// A GPU context with at most one model, for JavaScript.
#[wasm_bindgen]
pub struct Qgpu {
    inner: Rc<Inner>,
}

#[wasm_bindgen(start)]
fn start() {
    console_error_panic_hook::set_once();
    let _ = console_log::init_with_level(log::Level::Warn);
}

#[wasm_bindgen]
impl Qgpu {
    /// Opens the browser's WebGPU adapter and a device with the adapter's own limits.
    pub fn create() -> js_sys::Promise {
        future_to_promise(async move {
            let options = ContextOptions { backend: crate::gpu::BackendChoice::WebGpu, ..Default::default() };
            let ctx = Context::new(options).await.map_err(js_err)?;
            let inner = Rc::new(Inner {
                ctx,
                generator: RefCell::new(None),
                model_info: RefCell::new(None),
                last_stats: RefCell::new(None),
                busy: Cell::new(false),
                cancel: Cell::new(false),
            });
            Ok(Qgpu { inner }.into())
        })
    }

    /// Adapter, limits, capabilities and the kernel variants qgpu will use.
    pub fn info(&self) -> JsValue {
        to_js(&info_json(&self.inner.ctx))
    }

    /// The reason the device was lost, or `undefined` while it is alive.
    #[wasm_bindgen(js_name = deviceLost)]
    pub fn device_lost(&self) -> Option<String> {
        self.inner.ctx.check_lost().err().map(|e| e.to_string())
    }

    /// Starts loading a GGUF model as its bytes arrive, replacing any loaded model (whose GPU
    /// memory is freed now): `files` is 1, or the file count of a `gguf-split` model, whose
    /// files then come in order. For each file call `beginFile(length?)`, `push(chunk)` as the
    /// bytes arrive and `endFile()`; then `finish()`. WebAssembly memory holds the header and
    /// one band of rows, never the file. `on_progress(done, declared)` is called as each tensor
    /// completes; `kv_type` (`f32`, `f16`, `q8_0`, `q4_0`; default `f16`) is how the KV cache
    /// stores values. Until `finish()` (or `free()` of the returned object) qgpu is busy.
    #[wasm_bindgen(js_name = beginGguf)]
    pub fn begin_gguf(&self, files: usize, on_progress: Option<js_sys::Function>, kv_type: Option<String>) -> Result<GgufUpload, JsValue> {
        let kv_type: crate::quant::kv::KvType = kv_type.as_deref().map(str::parse).transpose().map_err(js_err)?.unwrap_or_default();
        let busy = BusyGuard::take(&self.inner, "loading a model")?;
        self.inner.ctx.check_lost().map_err(js_err)?;
        self.inner.generator.borrow_mut().take();
        self.inner.model_info.borrow_mut().take();
        let options = LlamaOptions { tune: bench::stored_tune_table().map(std::sync::Arc::new), kv_type, ..Default::default() };
        Ok(GgufUpload { inner: self.inner.clone(), _busy: busy, model: StreamedLlama::new(files, options), on_progress, file_bytes: 0, kv_type })
    }

    /// Loads a Hugging Face directory's files: `weights` holds its safetensors shards (consumed);
    /// `texts` is `{config, tokenizer, tokenizerConfig?, chatTemplate?}`, the contents of its
    /// config.json, tokenizer.json, tokenizer_config.json and chat_template.jinja. Quantized
    /// checkpoints (bitsandbytes 4-bit, GPTQ, AWQ) upload in their own format. Progress and
    /// `kv_type` as for `beginGguf`; resolves to model information.
    #[wasm_bindgen(js_name = loadHfModel)]
    pub fn load_hf_model(&self, weights: Vec<ModelBytes>, texts: JsValue, on_progress: Option<js_sys::Function>, kv_type: Option<String>) -> js_sys::Promise {
        let text = |key: &str| get(&texts, key).and_then(|v| v.as_string());
        let (Some(config), Some(tokenizer)) = (text("config"), text("tokenizer")) else {
            return js_sys::Promise::reject(&js_err("a Hugging Face model needs its config.json and tokenizer.json"));
        };
        let parts = HfParts { config, tokenizer, tokenizer_config: text("tokenizerConfig"), chat_template: text("chatTemplate"), sentence_config: None };
        self.load(ModelSource::Hf(weights.into_iter().map(|w| w.data).collect(), parts), on_progress, kv_type)
    }

    fn load(&self, source: ModelSource, on_progress: Option<js_sys::Function>, kv_type: Option<String>) -> js_sys::Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let kv_type: crate::quant::kv::KvType = kv_type.as_deref().map(str::parse).transpose().map_err(js_err)?.unwrap_or_default();
            let _busy = BusyGuard::take(&inner, "loading a model")?;
            inner.ctx.check_lost().map_err(js_err)?;
            // Free the old model's GPU memory before allocating the new one.
            inner.generator.borrow_mut().take();
            inner.model_info.borrow_mut().take();
            let file_bytes = source.len();
            let file = source.open()?;
            let tokenizer = Tokenizer::from_gguf(file.metadata()).map_err(js_err)?;
            let mut progress = |done: usize, total: usize| report_progress(&on_progress, done, total);
            let options = LlamaOptions { tune: bench::stored_tune_table().map(std::sync::Arc::new), kv_type, ..Default::default() };
            let model = Llama::load(&inner.ctx, file.as_ref(), options, &mut progress).await.map_err(js_err)?;
            drop(file);
            install(&inner, model, tokenizer, file_bytes as u64, kv_type)
        })
    }

    /// Information on the loaded model, or `null`.
    #[wasm_bindgen(js_name = modelInfo)]
    pub fn model_info(&self) -> JsValue {
        self.inner.model_info.borrow().as_ref().map(to_js).unwrap_or(JsValue::NULL)
    }

    /// Generates a continuation of `prompt`, or with `options.messages` (`[{role, content}]`)
    /// the next assistant message of that chat, keeping the KV cache of the turns the previous
    /// call already saw. `options`: `{maxTokens, temperature, topK, topP,
    /// minP, repetitionPenalty, repeatLastN, seed, chat, stop, messages}` (all optional; the sampling
    /// defaults are `SamplerConfig::default()`'s, llama.cpp's: 0.8, 40, 0.95, 0.05, 1.0, 64,
    /// seed 42). `on_token(piece)` receives each
    /// piece of text; returning `false` cancels. Resolves to the whole text.
    pub fn generate(&self, prompt: String, options: JsValue, on_token: Option<js_sys::Function>) -> js_sys::Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let _busy = BusyGuard::take(&inner, "generating")?;
            inner.ctx.check_lost().map_err(js_err)?;
            let messages = chat_messages(&options)?;
            let mut options = generate_options(&options)?;
            // A chat's earlier turns keep their KV cache.
            options.reuse_prefix = messages.is_some();
            let mut generator = inner.generator.borrow_mut().take().ok_or_else(|| js_err("no model is loaded"))?;
            inner.cancel.set(false);
            let mut callback_error = None;
            let mut on_text = |piece: &str| -> bool {
                if inner.cancel.get() {
                    return false;
                }
                match &on_token {
                    Some(f) => match f.call1(&JsValue::NULL, &JsValue::from_str(piece)) {
                        Ok(v) => v != JsValue::FALSE,
                        Err(e) => {
                            callback_error = Some(e);
                            false
                        }
                    },
                    None => true,
                }
            };
            let result = match &messages {
                Some(messages) => generator.generate_chat(&inner.ctx, messages, &options, &mut on_text).await,
                None => generator.generate(&inner.ctx, &prompt, &options, &mut on_text).await,
            };
            *inner.generator.borrow_mut() = Some(generator);
            if let Some(e) = callback_error {
                return Err(e);
            }
            let (text, stats) = result.map_err(|e| match inner.ctx.check_lost() {
                Err(lost) => js_err(lost),
                Ok(()) => js_err(e),
            })?;
            *inner.last_stats.borrow_mut() = Some(stats);
            Ok(JsValue::from_str(&text))
        })
    }

    /// Stops a running generation after the current token.
    pub fn cancel(&self) {
        self.inner.cancel.set(true);
    }

    /// Statistics of the last generation, or `null`.
    pub fn stats(&self) -> JsValue {
        match *self.inner.last_stats.borrow() {
            Some(s) => to_js(&stats_json(&s)),
            None => JsValue::NULL,
        }
    }

    /// Drops the model and its GPU memory; the context stays usable.
    pub fn unload(&self) -> Result<(), JsValue> {
        if self.inner.busy.get() {
            return Err(js_err("qgpu is busy; cancel generation before unloading"));
        }
        self.inner.generator.borrow_mut().take();
        self.inner.model_info.borrow_mut().take();
        self.inner.last_stats.borrow_mut().take();
        Ok(())
    }

    /// Releases the whole device now; every later call fails.
    pub fn destroy(&self) -> Result<(), JsValue> {
        self.unload()?;
        self.inner.ctx.destroy();
        Ok(())
    }

    /// Every weight format × every supported kernel (each matvec variant and matmul) against
    /// the CPU oracle on small odd shapes with seeded random data. Resolves to a report
    /// `{passed, tolerance, cases: [{format, kernel, m, n, k, relL2, ok}], seconds}`.
    #[wasm_bindgen(js_name = selfTest)]
    pub fn self_test(&self) -> js_sys::Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            let _busy = BusyGuard::take(&inner, "running the self-test")?;
            let report = self_test(&inner.ctx).await.map_err(js_err)?;
            Ok(to_js(&report))
        })
    }
}

fn report_progress(on_progress: &Option<js_sys::Function>, done: usize, total: usize) {
    if let Some(f) = on_progress {
        let _ = f.call2(&JsValue::NULL, &JsValue::from(done as f64), &JsValue::from(total as f64));
    }
}

/// Makes a loaded model the instance's model; resolves to its description.
fn install(inner: &Inner, model: Llama, tokenizer: Tokenizer, file_bytes: u64, kv_type: crate::quant::kv::KvType) -> Result<JsValue, JsValue> {
    inner.ctx.check_lost().map_err(js_err)?;
    let c = model.config();
    let m = model.memory();
    let info = json!({
        "architecture": c.architecture,
        "fileBytes": file_bytes,
        "vocab": c.vocab,
        "dim": c.dim,
        "layers": c.layers,
        "ffn": c.ffn,
        "heads": c.heads,
        "kvHeads": c.kv_heads,
        "context": model.context(),
        "trainedContext": c.trained_context,
        "memory": { "weights": m.weights, "kvCache": m.kv_cache, "activations": m.activations },
        "kvType": kv_type.name(),
    });
    *inner.generator.borrow_mut() = Some(Generator::new(model, tokenizer));
    *inner.model_info.borrow_mut() = Some(info.clone());
    Ok(to_js(&info))
}

/// A GGUF model on its way in from JavaScript (see `Qgpu.beginGguf`).
#[wasm_bindgen]
pub struct GgufUpload {
    inner: Rc<Inner>,
    _busy: BusyGuard,
    model: StreamedLlama,
    on_progress: Option<js_sys::Function>,
    file_bytes: u64,
    kv_type: crate::quant::kv::KvType,
}

#[wasm_bindgen]
impl GgufUpload {
    /// Starts the next file, of `length` bytes when known (Content-Length, a File's size):
    /// tensor extents are then checked against it before their bytes arrive.
    #[wasm_bindgen(js_name = beginFile)]
    pub fn begin_file(&mut self, length: Option<f64>) -> Result<(), JsValue> {
        self.model.begin_file(length.filter(|l| l.is_finite() && *l >= 0.0).map(|l| l as u64)).map_err(js_err)
    }

    /// The next bytes of the current file: tensors complete in them go to the GPU now.
    pub fn push(&mut self, chunk: &[u8]) -> Result<(), JsValue> {
        self.file_bytes += chunk.len() as u64;
        let on_progress = &self.on_progress;
        self.model.push(&self.inner.ctx, chunk, &mut |done, total| report_progress(on_progress, done, total)).map_err(js_err)
    }

    /// Ends the current file; fails if it was cut short.
    #[wasm_bindgen(js_name = endFile)]
    pub fn end_file(&mut self) -> Result<(), JsValue> {
        let on_progress = &self.on_progress;
        self.model.end_file(&self.inner.ctx, &mut |done, total| report_progress(on_progress, done, total)).map_err(js_err)
    }

    /// Builds the model once every file has ended; resolves to model information (as
    /// `loadHfModel`). Consumes this object.
    pub fn finish(self) -> js_sys::Promise {
        future_to_promise(async move {
            let GgufUpload { inner, _busy, model, file_bytes, kv_type, .. } = self;
            let (model, tokenizer) = model.finish(&inner.ctx).await.map_err(js_err)?;
            install(&inner, model, tokenizer.map_err(js_err)?, file_bytes, kv_type)
        })
    }
}

fn get(obj: &JsValue, key: &str) -> Option<JsValue> {
    if !obj.is_object() {
        return None;
    }
    js_sys::Reflect::get(obj, &JsValue::from_str(key)).ok().filter(|v| !v.is_undefined() && !v.is_null())
}

fn get_number(obj: &JsValue, key: &str) -> Result<Option<f64>, JsValue> {
    match get(obj, key) {
        None => Ok(None),
        Some(v) => v.as_f64().map(Some).ok_or_else(|| js_err(format!("option `{key}` must be a number"))),
    }
}

fn generate_options(obj: &JsValue) -> Result<GenerateOptions, JsValue> {
    let mut o = GenerateOptions::default();
    let mut s = SamplerConfig::default();
    let count = |v: f64, key: &str| -> Result<usize, JsValue> {
        if v.is_finite() && v >= 0.0 && v.fract() == 0.0 {
            Ok(v as usize)
        } else {
            Err(js_err(format!("option `{key}` must be a non-negative integer")))
        }
    };
    if let Some(v) = get_number(obj, "maxTokens")? {
        o.max_tokens = count(v, "maxTokens")?;
    }
    if let Some(v) = get_number(obj, "temperature")? {
        s.temperature = v as f32;
    }
    if let Some(v) = get_number(obj, "topK")? {
        s.top_k = count(v, "topK")?;
    }
    if let Some(v) = get_number(obj, "topP")? {
        s.top_p = v as f32;
    }
    if let Some(v) = get_number(obj, "minP")? {
        s.min_p = v as f32;
    }
    if let Some(v) = get_number(obj, "repetitionPenalty")? {
        s.repetition_penalty = v as f32;
    }
    if let Some(v) = get_number(obj, "repeatLastN")? {
        s.repetition_window = count(v, "repeatLastN")?;
    }
    if let Some(v) = get_number(obj, "seed")? {
        s.seed = count(v, "seed")? as u64;
    }
    if let Some(v) = get(obj, "chat") {
        o.chat = v.is_truthy();
    }
    // Control-token text in the prompt stays plain text unless the page asks.
    if let Some(v) = get(obj, "parseSpecial") {
        o.special = if v.is_truthy() { SpecialText::Parse } else { SpecialText::Plain };
    }
    if let Some(v) = get(obj, "stop") {
        let arr: js_sys::Array = v.dyn_into().map_err(|_| js_err("option `stop` must be an array of strings"))?;
        o.stop = arr.iter().map(|s| s.as_string().ok_or_else(|| js_err("option `stop` must be an array of strings"))).collect::<Result<_, _>>()?;
    }
    o.sampler = s;
    Ok(o)
}

/// `options.messages`: `[{role, content}, ...]`, the chat to continue, if given.
fn chat_messages(obj: &JsValue) -> Result<Option<Vec<ChatMessage>>, JsValue> {
    let Some(v) = get(obj, "messages") else { return Ok(None) };
    let bad = || js_err("option `messages` must be an array of {role, content} objects with string values");
    let arr: js_sys::Array = v.dyn_into().map_err(|_| bad())?;
    let text = |m: &JsValue, key: &str| get(m, key).and_then(|v| v.as_string()).ok_or_else(bad);
    arr.iter().map(|m| Ok(ChatMessage::new(text(&m, "role")?, text(&m, "content")?))).collect::<Result<Vec<_>, JsValue>>().map(Some)
}

fn info_json(ctx: &Context) -> Value {
    let info = ctx.adapter_info();
    let caps = ctx.capabilities();
    let limits = ctx.limits();
    let supported: Vec<&str> = MatvecKernel::ALL.into_iter().filter(|v| v.supported(caps)).map(|v| v.name()).collect();
    json!({
        "adapter": {
            "name": info.name,
            "vendor": info.vendor,
            "driver": info.driver,
            "driverInfo": info.driver_info,
            "deviceType": format!("{:?}", info.device_type),
            "backend": format!("{:?}", info.backend),
        },
        "capabilities": {
            "shaderF16": caps.shader_f16,
            "subgroups": caps.subgroups,
            "timestamps": caps.timestamps,
            "integerDot": caps.integer_dot,
            "cpuDevice": caps.cpu_device,
        },
        "limits": {
            "maxStorageBufferBindingSize": ctx.max_binding_size(),
            "maxBufferSize": limits.max_buffer_size,
            "maxComputeInvocationsPerWorkgroup": limits.max_compute_invocations_per_workgroup,
            "maxComputeWorkgroupStorageSize": limits.max_compute_workgroup_storage_size,
            "maxStorageBuffersPerShaderStage": limits.max_storage_buffers_per_shader_stage,
        },
        "kernels": {
            "matvec": MatvecKernel::preferred(caps).name(),
            "matvecSupported": supported,
            "matvecMaxRows": MATVEC_MAX_ROWS,
            "prefill": "matmul",
        },
    })
}

fn stats_json(s: &GenerationStats) -> Value {
    let stop = match s.stop {
        StopReason::EndOfText => "endOfText",
        StopReason::StopString => "stopString",
        StopReason::MaxTokens => "maxTokens",
        StopReason::ContextFull => "contextFull",
        StopReason::Cancelled => "cancelled",
    };
    json!({
        "promptTokens": s.prompt_tokens,
        "cachedTokens": s.cached_tokens,
        "prefillSeconds": s.prefill_seconds,
        "prefillTokensPerSecond": s.prefill_tokens_per_second(),
        "generatedTokens": s.generated_tokens,
        "decodeSteps": s.decode_steps,
        "decodeSeconds": s.decode_seconds,
        "decodeTokensPerSecond": s.decode_tokens_per_second(),
        "stop": stop,
        "memory": { "weights": s.memory.weights, "kvCache": s.memory.kv_cache, "activations": s.memory.activations },
    })
}

fn kernel_name(k: LinearKernel) -> &'static str {
    match k {
        LinearKernel::Matmul => "matmul",
        LinearKernel::Matvec(v) => v.name(),
        LinearKernel::MatvecVariant(v) => v.kernel.name(),
    }
}

async fn self_test(ctx: &Context) -> Result<Value, crate::Error> {
    let start = web_time::Instant::now();
    let caps = ctx.capabilities();
    let mut rng = TestRng::new(2026);
    let mut cases = Vec::new();
    let mut passed = true;
    for format in Format::ALL {
        // Odd block counts: 3 and 18 blocks of 32, 1 and 9 blocks of 64 (NF4, FP4), or 1 and 3
        // super-blocks of 256 (K-quants).
        let ks = match format.k_multiple() {
            256 => [256usize, 768],
            64 => [64, 576],
            _ => [96, 576],
        };
        for k in ks {
            for n in [3usize, 67] {
                let w = reference::quantize(format, n, k, &rng.vec(n * k))?;
                let gw = GpuMatrix::upload(ctx, w.as_ref())?;
                for m in [1usize, 3, 17] {
                    let x = rng.vec(m * k);
                    let want = reference::matmul(&x, m, w.as_ref());
                    let gx = GpuTensor::from_slice(ctx, m, k, &x)?;
                    // The matmul at 1 row and at a partial tile (17; 3 would be another partial
                    // tile at the same cost). Exact kernels only: the integer-dot one rounds
                    // activations (tests/kernels.rs bounds it). M = 17 runs the matvec in three
                    // passes.
                    let mut kernels = if m == 3 { vec![] } else { vec![LinearKernel::Matmul] };
                    kernels.extend(MatvecKernel::ALL.into_iter().filter(|v| v.supported(caps) && v.handles(format) && !v.quantizes_activations()).map(LinearKernel::Matvec));
                    for kernel in kernels {
                        let gy = GpuTensor::zeros(ctx, m, n)?;
                        let (rel, error) = match linear(ctx, &gw, &gx, &gy, Some(kernel)).await {
                            Ok(()) => match gy.read(ctx).await {
                                Ok(got) => (relative_l2(&got, &want), None),
                                Err(e) => (f64::NAN, Some(e.to_string())),
                            },
                            Err(e) => (f64::NAN, Some(e.to_string())),
                        };
                        let ok = error.is_none() && rel <= SELF_TEST_TOLERANCE;
                        passed &= ok;
                        cases.push(json!({
                            "format": format.to_string(),
                            "kernel": kernel_name(kernel),
                            "m": m, "n": n, "k": k,
                            "relL2": if rel.is_finite() { json!(rel) } else { Value::Null },
                            "ok": ok,
                            "error": error,
                        }));
                    }
                }
            }
        }
    }
    ctx.check_lost()?;
    Ok(json!({
        "passed": passed,
        "tolerance": SELF_TEST_TOLERANCE,
        "count": cases.len(),
        "failed": cases.iter().filter(|c| c["ok"] == false).count(),
        "seconds": start.elapsed().as_secs_f64(),
        "info": info_json(ctx),
        "cases": cases,
    }))
}

fn relative_l2(got: &[f32], want: &[f64]) -> f64 {
    if got.len() != want.len() {
        return f64::NAN;
    }
    let (mut err, mut norm) = (0.0f64, 0.0f64);
    for (g, w) in got.iter().zip(want) {
        err += (*g as f64 - w).powi(2);
        norm += w * w;
    }
    let rel = (err / norm.max(1e-300)).sqrt();
    if rel.is_nan() {
        f64::INFINITY
    } else {
        rel
    }
}
