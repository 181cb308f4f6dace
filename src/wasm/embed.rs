//! Sentence embeddings in the browser: the `QgpuEmbedder` class, wrapped by `QgpuEmbedder` in
//! `web/qgpu.js`. It opens its own WebGPU device, loads a BERT model from bytes (a Hugging Face
//! `model.safetensors` with its `config.json` and `tokenizer.json`, or a GGUF that carries its
//! tokenizer) and embeds texts on the f32 path (no shader-f16 needed).

use super::{js_err, HfParts, ModelBytes, ModelSource};
use crate::gpu::{BackendChoice, Context, ContextOptions};
use crate::model::bert::{BertOptions, Embedder};
use serde_json::json;
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::future_to_promise;

struct EmbedInner {
    ctx: Context,
    embedder: RefCell<Option<Embedder>>,
    busy: Cell<bool>,
}

/// A BERT sentence-embedding model on its own GPU device, for JavaScript.
#[wasm_bindgen]
pub struct QgpuEmbedder {
    inner: Rc<EmbedInner>,
}

#[wasm_bindgen]
impl QgpuEmbedder {
    /// Loads a model. `weights` is a GGUF (then the text files are ignored) or a safetensors file,
    /// which needs `config` (config.json) and `tokenizer` (tokenizer.json); `sentence_config`
    /// (sentence_bert_config.json) sets the truncation length. Resolves to a `QgpuEmbedder`.
    pub fn load(weights: ModelBytes, config: Option<String>, tokenizer: Option<String>, sentence_config: Option<String>) -> js_sys::Promise {
        future_to_promise(async move {
            let data = weights.data;
            let source = if data.starts_with(b"GGUF") {
                ModelSource::Gguf(data)
            } else {
                let config = config.ok_or_else(|| js_err("a safetensors model needs its config.json"))?;
                let tokenizer = tokenizer.ok_or_else(|| js_err("a safetensors model needs its tokenizer.json"))?;
                ModelSource::Hf(vec![data], HfParts { config, tokenizer, tokenizer_config: None, chat_template: None, sentence_config })
            }
            .open()?;
            let options = ContextOptions { backend: BackendChoice::WebGpu, ..Default::default() };
            let ctx = Context::new(options).await.map_err(js_err)?;
            let embedder = Embedder::load(&ctx, source.as_ref(), BertOptions::default()).await.map_err(js_err)?;
            let inner = Rc::new(EmbedInner { ctx, embedder: RefCell::new(Some(embedder)), busy: Cell::new(false) });
            Ok(QgpuEmbedder { inner }.into())
        })
    }

    /// Dimensions of the loaded model: `{dim, layers, heads, maxSequence, weightBytes}`.
    pub fn info(&self) -> JsValue {
        let slot = self.inner.embedder.borrow();
        let Some(e) = slot.as_ref() else { return JsValue::NULL };
        let c = e.model.config();
        let v = json!({ "dim": c.dim, "layers": c.layers, "heads": c.heads, "maxSequence": c.max_sequence, "weightBytes": e.model.memory().weights });
        js_sys::JSON::parse(&v.to_string()).unwrap_or(JsValue::NULL)
    }

    /// Resolves to one L2-normalised `Float32Array` per text.
    pub fn embed(&self, texts: Vec<String>) -> js_sys::Promise {
        let inner = self.inner.clone();
        future_to_promise(async move {
            if inner.busy.replace(true) {
                return Err(js_err("the embedder is busy; wait for the current call to finish"));
            }
            // Taken out for the call so no RefCell borrow lives across an await.
            let taken = inner.embedder.borrow_mut().take();
            let result = match taken {
                None => Err(js_err("the embedder was destroyed")),
                Some(mut embedder) => {
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    let r = embedder.embed(&inner.ctx, &refs).await.map_err(js_err);
                    *inner.embedder.borrow_mut() = Some(embedder);
                    r
                }
            };
            inner.busy.set(false);
            let out = js_sys::Array::new();
            for e in result? {
                out.push(&js_sys::Float32Array::from(&e[..]));
            }
            Ok(out.into())
        })
    }

    /// Drops the model and releases the device; later calls reject.
    pub fn destroy(&self) {
        self.inner.embedder.borrow_mut().take();
        self.inner.ctx.destroy();
    }
}
