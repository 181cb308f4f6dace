//! Synthetic BERT models with odd sizes (tests/common/bert_ref.rs) on the GPU against a CPU
//! forward pass in f64, for f32 and quantized weights and tables; batches larger than the
//! activations; typed errors for bad input and bad tensors.

mod common;

use common::bert_ref::{cpu_embed, open, TinyBert};
use qgpu::loader::{GgmlType, GgufWriter, TensorSource};
use qgpu::model::bert::{Bert, BertOptions, Sentence};
use qgpu::model::ModelError;
use qgpu::quant::reference::TestRng;
use qgpu::quant::Format;
use qgpu::Error;

/// Relative L2 error of an embedding against the f64 pass: every path accumulates in f32.
const TOLERANCE: f64 = 1e-5;

/// Sentences of 1, 5, 13 and 37 (the whole context) tokens, with both token types.
fn sentences(spec: &TinyBert, seed: u64) -> Vec<Sentence> {
    let mut rng = TestRng::new(seed);
    [1usize, 5, 13, 37]
        .iter()
        .map(|&n| Sentence {
            ids: (0..n).map(|_| (rng.next_u64() % spec.vocab as u64) as u32).collect(),
            type_ids: (0..n).map(|i| u32::from(i >= n / 2 && n > 1)).collect(),
        })
        .collect()
}

fn check(spec: &TinyBert, options: BertOptions) {
    let Some(ctx) = common::context() else { return };
    let file = open(spec.gguf(7));
    let mut model = pollster::block_on(Bert::load(&ctx, &file, options)).unwrap();
    let batch = sentences(spec, 11);
    let got = pollster::block_on(model.forward(&ctx, &batch)).unwrap();
    assert_eq!(got.len(), batch.len());
    for (s, g) in batch.iter().zip(&got) {
        let want = cpu_embed(&file, &s.ids, &s.type_ids);
        let (rel, first) = common::compare(g, &want, 1e-3);
        assert!(rel <= TOLERANCE && first.is_none(), "{:?}/{:?}, {} tokens: relative error {rel:e}, first bad index {first:?}", spec.weight_format, spec.embed_format, s.ids.len());
    }
}

#[test]
fn f32_model_matches_the_cpu_pass() {
    check(&TinyBert::odd(Format::F32, Format::F32), BertOptions::default());
}

#[test]
fn quantized_weights_and_tables_match_the_cpu_pass() {
    for (weights, tables) in [(Format::Q8_0, Format::F16), (Format::Q4_0, Format::Q8_0), (Format::Q4_1, Format::F32)] {
        check(&TinyBert::odd(weights, tables), BertOptions::default());
    }
}

#[test]
fn batches_larger_than_the_activations_are_split() {
    // 56 tokens against room for 37 (the context): two forward passes.
    check(&TinyBert::odd(Format::F32, Format::F32), BertOptions { batch_tokens: 8 });
}

#[test]
fn bad_input_is_a_typed_error() {
    let Some(ctx) = common::context() else { return };
    let spec = TinyBert::odd(Format::F32, Format::F32);
    let file = open(spec.gguf(3));
    let mut model = pollster::block_on(Bert::load(&ctx, &file, BertOptions::default())).unwrap();
    let mut run = |s: Vec<Sentence>| pollster::block_on(model.forward(&ctx, &s)).unwrap_err();
    assert!(matches!(run(vec![]), Error::Model(ModelError::EmptyInput)));
    assert!(matches!(run(vec![Sentence::new(vec![])]), Error::Model(ModelError::EmptyInput)));
    assert!(matches!(run(vec![Sentence::new(vec![101])]), Error::Model(ModelError::TokenOutOfRange { id: 101, vocab: 101 })));
    assert!(matches!(run(vec![Sentence { ids: vec![1, 2], type_ids: vec![0, 2] }]), Error::Model(ModelError::TokenTypeOutOfRange { id: 2, types: 2 })));
    assert!(matches!(run(vec![Sentence::new(vec![1; 38])]), Error::Model(ModelError::ContextFull { needed: 38, context: 37 })));
    assert!(matches!(run(vec![Sentence { ids: vec![1, 2], type_ids: vec![0] }]), Error::Shape(_)));
}

/// `spec`'s GGUF with tensor `name` dropped, or re-added with `dims`.
fn altered(spec: &TinyBert, name: &str, dims: Option<&[u64]>) -> Vec<u8> {
    let file = open(spec.gguf(5));
    let mut w = GgufWriter::new();
    for (k, v) in file.metadata().iter() {
        w.add_metadata(k, v.clone()).unwrap();
    }
    for t in TensorSource::tensors(&file) {
        let bytes = file.tensor_bytes(&t.name).unwrap().to_vec();
        if t.name != name {
            w.add_tensor(t.name.clone(), &t.dims, t.ggml_type, bytes).unwrap();
        } else if let Some(dims) = dims {
            let n: u64 = dims.iter().product();
            w.add_tensor(t.name.clone(), dims, GgmlType::F32, vec![0u8; n as usize * 4]).unwrap();
        }
    }
    w.to_bytes()
}

#[test]
fn missing_and_misshapen_tensors_are_typed_errors() {
    let Some(ctx) = common::context() else { return };
    let spec = TinyBert::odd(Format::F32, Format::F32);
    let load = |bytes: Vec<u8>| pollster::block_on(Bert::load(&ctx, &open(bytes), BertOptions::default())).err().expect("load must fail");
    let err = load(altered(&spec, "blk.1.ffn_down.bias", None));
    assert!(matches!(&err, Error::Model(ModelError::MissingTensor { name }) if name == "blk.1.ffn_down.bias"), "{err}");
    let err = load(altered(&spec, "blk.0.attn_k.weight", Some(&[96, 95])));
    assert!(matches!(&err, Error::Model(ModelError::TensorShape { name, .. }) if name == "blk.0.attn_k.weight"), "{err}");
    let err = load(altered(&spec, "token_embd_norm.bias", Some(&[95])));
    assert!(matches!(&err, Error::Model(ModelError::TensorShape { name, .. }) if name == "token_embd_norm.bias"), "{err}");
}
