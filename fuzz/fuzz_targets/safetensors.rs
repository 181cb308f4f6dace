//! Feeds arbitrary bytes to the safetensors reader and to a Hugging Face directory built from
//! them (`config.json`, `tokenizer.json`, `tokenizer_config.json`, `model.safetensors`):
//! `cargo +nightly fuzz run safetensors`.
//!
//! Any input must load or return an error: no panic, no allocation sized by an unchecked
//! header. What loads is read back in full: every tensor's bytes, as f32, and the model
//! configurations built from the metadata.

#![no_main]

use libfuzzer_sys::fuzz_target;
use qgpu::loader::{HfFiles, HfModel, SafetensorsFile, SafetensorsSet, TensorSource};
use qgpu::model::bert::BertConfig;
use qgpu::model::llama::LlamaConfig;

#[path = "split.rs"]
mod split;

fuzz_target!(|data: &[u8]| {
    let p = split::parts(data, 4);
    let (config, tokenizer, tokenizer_config, weights) = (p[0], p[1], p[2], p[3]);
    let Ok(file) = SafetensorsFile::from_bytes(weights.to_vec()) else { return };
    for t in file.tensors() {
        let bytes = file.data(t);
        assert!(bytes.len() <= weights.len());
        let _ = t.gguf_dims();
    }
    let _ = file.metadata();
    let Ok(set) = SafetensorsSet::from_files(vec![file]) else { return };
    let files = HfFiles {
        config,
        tokenizer,
        sentence_config: None,
        pooling_config: None,
        tokenizer_config: (!tokenizer_config.is_empty()).then_some(tokenizer_config),
        chat_template: None,
    };
    let Ok(model) = HfModel::from_parts("fuzz", files, set) else { return };
    for t in model.tensors() {
        if let Ok(values) = model.tensor_f32(&t.name) {
            assert_eq!(Some(values.len() as u64), t.n_elements());
        }
    }
    let _ = LlamaConfig::from_source(&model);
    let _ = BertConfig::from_source(&model);
});
