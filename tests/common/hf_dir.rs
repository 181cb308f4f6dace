//! Writing Hugging Face LLaMA checkpoints from GGUF tensors: HF names, HF (rotate-halves) q/k
//! row order, safetensors in f32/f16/bf16.
#![allow(dead_code)]

use std::path::Path;

use half::{bf16, f16};
use serde_json::{json, Value};

/// Hugging Face name of a GGUF llama tensor.
pub fn hf_name(gguf: &str) -> String {
    let stem = gguf.strip_suffix(".weight").unwrap();
    match stem {
        "token_embd" => "model.embed_tokens.weight".into(),
        "output_norm" => "model.norm.weight".into(),
        "output" => "lm_head.weight".into(),
        _ => {
            let (layer, part) = stem.strip_prefix("blk.").unwrap().split_once('.').unwrap();
            let part = match part {
                "attn_q" => "self_attn.q_proj",
                "attn_k" => "self_attn.k_proj",
                "attn_v" => "self_attn.v_proj",
                "attn_output" => "self_attn.o_proj",
                "ffn_gate" => "mlp.gate_proj",
                "ffn_up" => "mlp.up_proj",
                "ffn_down" => "mlp.down_proj",
                "attn_norm" => "input_layernorm",
                "ffn_norm" => "post_attention_layernorm",
                other => panic!("unexpected tensor {other}"),
            };
            format!("model.layers.{layer}.{part}.weight")
        }
    }
}

/// GGUF (adjacent pairs) rows → HF (halves) rows: the inverse of llama.cpp's permutation.
pub fn unpermute(values: &[f32], rows: usize, heads: usize) -> Vec<f32> {
    let k = values.len() / rows;
    let (per_head, half) = (rows / heads, rows / heads / 2);
    let mut out = vec![0.0; values.len()];
    for h in 0..heads {
        for j in 0..2 {
            for i in 0..half {
                let hf = h * per_head + j * half + i;
                let gguf = h * per_head + 2 * i + j;
                out[hf * k..(hf + 1) * k].copy_from_slice(&values[gguf * k..(gguf + 1) * k]);
            }
        }
    }
    out
}

#[derive(Clone, Copy, PartialEq, Debug)]
pub enum Dtype {
    F32,
    F16,
    BF16,
}

impl Dtype {
    pub fn name(self) -> &'static str {
        match self {
            Dtype::F32 => "F32",
            Dtype::F16 => "F16",
            Dtype::BF16 => "BF16",
        }
    }
    pub fn encode(self, values: &[f32]) -> Vec<u8> {
        match self {
            Dtype::F32 => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
            Dtype::F16 => values.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect(),
            Dtype::BF16 => values.iter().flat_map(|v| bf16::from_f32(*v).to_le_bytes()).collect(),
        }
    }
    pub fn round(self, v: f32) -> f32 {
        match self {
            Dtype::F32 => v,
            Dtype::F16 => f16::from_f32(v).to_f32(),
            Dtype::BF16 => bf16::from_f32(v).to_f32(),
        }
    }
}

/// One HF tensor: name, PyTorch shape, dtype, values (already in HF row order).
pub type HfTensor = (String, Vec<u64>, Dtype, Vec<f32>);

pub fn write_safetensors(path: &Path, tensors: &[&HfTensor]) {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, shape, dtype, values) in tensors {
        let bytes = dtype.encode(values);
        header.insert(name.clone(), json!({"dtype": dtype.name(), "shape": shape, "data_offsets": [data.len(), data.len() + bytes.len()]}));
        data.extend(bytes);
    }
    let header = serde_json::to_vec(&Value::Object(header)).unwrap();
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend(header);
    file.extend(data);
    std::fs::write(path, file).unwrap();
}

/// Tensors as stored: name → (dtype as safetensors names it, shape, bytes).
pub type RawTensors = std::collections::BTreeMap<String, (String, Vec<u64>, Vec<u8>)>;

/// The tensors of `set` named `{from}{rest}`, renamed `{to}{rest}`, with their stored bytes.
pub fn renamed(set: &qgpu::loader::SafetensorsSet, from: &str, to: &str) -> RawTensors {
    set.tensors()
        .filter_map(|t| {
            let rest = t.name.strip_prefix(from)?;
            let (_, bytes) = set.get(&t.name)?;
            Some((format!("{to}{rest}"), (t.dtype_name.to_owned(), t.shape.clone(), bytes.to_vec())))
        })
        .collect()
}

/// `tensors` as one in-memory safetensors file, opened as a set.
pub fn raw_set(tensors: &RawTensors) -> qgpu::loader::SafetensorsSet {
    let mut header = serde_json::Map::new();
    let mut data = Vec::new();
    for (name, (dtype, shape, bytes)) in tensors {
        header.insert(name.clone(), json!({"dtype": dtype, "shape": shape, "data_offsets": [data.len(), data.len() + bytes.len()]}));
        data.extend_from_slice(bytes);
    }
    let header = Value::Object(header).to_string();
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    file.extend(data);
    let file = qgpu::loader::SafetensorsFile::from_bytes(file).unwrap();
    qgpu::loader::SafetensorsSet::from_files(vec![file]).unwrap()
}

/// One safetensors file on disk, opened as a set.
pub fn open_set(path: &Path) -> qgpu::loader::SafetensorsSet {
    qgpu::loader::SafetensorsSet::from_files(vec![qgpu::loader::SafetensorsFile::open(path).unwrap()]).unwrap()
}

/// One position's logits: (position, qgpu's, the fixture's).
pub type PositionLogits = (usize, Vec<f32>, Vec<f32>);

/// The decoder loaded from `source` over the tokens of `dir/logits.json`, against the logits
/// that fixture stores for its last positions: (position, qgpu's logits, the fixture's) for
/// each; `None` without a GPU adapter (`common::context`).
pub fn logits_against_fixture(source: &dyn qgpu::loader::TensorSource, dir: &Path) -> Option<Vec<PositionLogits>> {
    use qgpu::model::llama::{Llama, LlamaOptions, Logits};
    let fixture: Value = serde_json::from_slice(&std::fs::read(dir.join("logits.json")).unwrap()).unwrap();
    let tokens: Vec<u32> = fixture["tokens"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
    let want: Vec<Vec<f32>> =
        fixture["logits"].as_array().unwrap().iter().map(|r| r.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect()).collect();
    let ctx = super::context()?;
    let options = LlamaOptions { context: 64, chunk: 16, kv_type: qgpu::ops::KvType::F32, ..Default::default() };
    let mut model = pollster::block_on(Llama::load(&ctx, source, options, &mut |_, _| {})).unwrap();
    let all = pollster::block_on(model.forward(&ctx, &tokens, Logits::All)).unwrap();
    let vocab = want[0].len();
    let first = tokens.len() - want.len();
    Some(want.into_iter().enumerate().map(|(i, w)| (first + i, all[(first + i) * vocab..(first + i + 1) * vocab].to_vec(), w)).collect())
}

/// An F32 tensor of a safetensors set, as values.
pub fn f32_tensor(set: &qgpu::loader::SafetensorsSet, name: &str) -> Vec<f32> {
    let (_, bytes) = set.get(name).unwrap_or_else(|| panic!("no tensor {name}"));
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}
