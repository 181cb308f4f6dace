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

/// A safetensors file of raw tensors: (name, dtype as safetensors names it, shape, bytes).
pub fn write_raw_safetensors(path: &Path, tensors: &[(String, String, Vec<u64>, Vec<u8>)]) {
    let mut header = serde_json::Map::new();
    let mut offset = 0usize;
    for (name, dtype, shape, bytes) in tensors {
        header.insert(name.clone(), json!({"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + bytes.len()]}));
        offset += bytes.len();
    }
    let header = Value::Object(header).to_string();
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    for t in tensors {
        out.extend_from_slice(&t.3);
    }
    std::fs::write(path, out).unwrap();
}

/// An F32 tensor of a safetensors set, as values.
pub fn f32_tensor(set: &qgpu::loader::SafetensorsSet, name: &str) -> Vec<f32> {
    let (_, bytes) = set.get(name).unwrap_or_else(|| panic!("no tensor {name}"));
    bytes.chunks_exact(4).map(|b| f32::from_le_bytes(b.try_into().unwrap())).collect()
}
