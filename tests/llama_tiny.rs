//! The GPU decoder against a plain CPU forward pass (tests/common/llama_ref.rs) on tiny
//! synthetic GGUF models with odd sizes: prefill, chunked prefill, and token-by-token decode.

mod common;

use common::llama_ref::RefLlama;
use common::tiny_gguf::{tiny_llama_gguf, TinySpec};
use qgpu::loader::GgufFile;
use qgpu::model::llama::{Llama, LlamaOptions, Logits};
use qgpu::ops::KvType;
use qgpu::model::ModelError;
use qgpu::quant::Format;
use qgpu::Error;

/// Largest |GPU − CPU| logit difference allowed; both accumulate in f32 in different orders.
const TOLERANCE: f32 = 2e-3;

fn assert_close(what: &str, got: &[f32], want: &[f32]) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let (i, diff) = got.iter().zip(want).map(|(a, b)| (a - b).abs()).enumerate().fold((0, 0.0f32), |m, (i, d)| if d > m.1 { (i, d) } else { m });
    assert!(diff <= TOLERANCE, "{what}: first worst difference {diff} at index {i}: {} vs {}", got[i], want[i]);
}

fn check(spec: &TinySpec, seed: u64, chunk: usize) {
    let Some(ctx) = common::context() else { return };
    let file = GgufFile::from_bytes(tiny_llama_gguf(spec, seed)).unwrap();
    let reference = RefLlama::from_gguf(&file).unwrap();
    // The f32 KV cache: the CPU forward pass keeps K and V in f32 (the rounded caches are
    // checked by tests/attention.rs and tests/arch_reference.rs).
    let options = LlamaOptions { context: spec.context, chunk, kv_type: KvType::F32, ..Default::default() };
    let mut model = pollster::block_on(Llama::load(&ctx, &file, options, &mut |_, _| {})).unwrap();
    let vocab = spec.vocab;
    let tokens: Vec<u32> = (0..13u32).map(|i| (i * 37 + 5) % vocab as u32).collect();
    let want = reference.forward(&tokens);
    let what = format!(
        "{:?} (down {:?}, head {:?})/{:?} tied {} chunk {chunk}",
        spec.weight_format, spec.down_format, spec.head_format, spec.embed_format, spec.tied_head
    );

    // Prefill, every position's logits (the matmul path once the chunk exceeds 8 rows).
    let all = pollster::block_on(model.forward(&ctx, &tokens, Logits::All)).unwrap();
    for (pos, row) in want.iter().enumerate() {
        assert_close(&format!("{what} prefill position {pos}"), &all[pos * vocab..(pos + 1) * vocab], row);
    }

    // Decode: a short prefill, then one token at a time through the KV cache (the matvec path).
    model.reset();
    let last = pollster::block_on(model.forward(&ctx, &tokens[..3], Logits::Last)).unwrap();
    assert_close(&format!("{what} decode position 2"), &last, &want[2]);
    for pos in 3..tokens.len() {
        let last = pollster::block_on(model.forward(&ctx, &tokens[pos..pos + 1], Logits::Last)).unwrap();
        assert_close(&format!("{what} decode position {pos}"), &last, &want[pos]);
    }
    assert_eq!(model.position(), tokens.len());
}

#[test]
fn q4_0_untied_head_matches_cpu() {
    check(&TinySpec::odd(), 1, 64);
}

#[test]
fn tied_head_and_chunked_prefill_match_cpu() {
    let spec = TinySpec { tied_head: true, ..TinySpec::odd() };
    check(&spec, 2, 5);
}

#[test]
fn every_weight_format_matches_cpu() {
    for (weight_format, embed_format) in [(Format::Q8_0, Format::Q4_1), (Format::Q4_1, Format::F16), (Format::F16, Format::F32), (Format::F32, Format::Q4_0)] {
        let spec = TinySpec { weight_format, embed_format, ..TinySpec::odd() };
        check(&spec, 3, 16);
    }
}

/// A Q4_K_M-like file (Q4_K embedding and matrices, Q6_K ffn_down and head), then Q6_K
/// everywhere with the head tied to the Q6_K embedding (the embedding lookup of Q6_K rows).
#[test]
fn k_quant_weights_match_cpu() {
    check(&TinySpec::q4_k_m(), 6, 16);
    let spec = TinySpec { weight_format: Format::Q6_K, embed_format: Format::Q6_K, tied_head: true, ..TinySpec::q4_k_m() };
    check(&spec, 7, 5);
}

/// The newer formats in a whole model: the 32-value ones and BF16 on odd sizes, the 256-value
/// ones in a Q4_K_M-like mix.
#[test]
fn newer_formats_match_cpu() {
    for (weight_format, embed_format) in [(Format::Q5_0, Format::BF16), (Format::Q5_1, Format::MXFP4), (Format::BF16, Format::Q5_1)] {
        check(&TinySpec { weight_format, embed_format, ..TinySpec::odd() }, 8, 16);
    }
    let spec = TinySpec {
        weight_format: Format::Q3_K,
        down_format: Some(Format::Q5_K),
        head_format: Some(Format::Q2_K),
        embed_format: Format::IQ4_XS,
        ..TinySpec::q4_k_m()
    };
    check(&spec, 9, 16);
}

/// Continuous batching: three sequences of different lengths, prefilled in their own slots,
/// then decoded together one token a step (one pass over the weights, one row each, in a
/// shuffled slot order) match the CPU reference of each sequence alone, and a finished slot
/// can restart while the others go on.
#[test]
fn batched_decode_of_three_slots_matches_each_sequence_alone() {
    let Some(ctx) = common::context() else { return };
    let spec = TinySpec::odd();
    let file = GgufFile::from_bytes(tiny_llama_gguf(&spec, 11)).unwrap();
    let reference = RefLlama::from_gguf(&file).unwrap();
    let options = LlamaOptions { context: spec.context, chunk: 16, kv_type: KvType::F32, slots: 3, ..Default::default() };
    let mut model = pollster::block_on(Llama::load(&ctx, &file, options, &mut |_, _| {})).unwrap();
    assert_eq!(model.slots(), 3);
    let vocab = spec.vocab as u32;
    let seqs: Vec<Vec<u32>> = [(11usize, 3u32), (7, 5), (10, 11)].iter().map(|&(n, a)| (0..n as u32).map(|i| (i * a * 7 + a) % vocab).collect()).collect();
    let want: Vec<_> = seqs.iter().map(|s| reference.forward(s)).collect();
    // Prompts of 4, 2 and 5 tokens, each in its slot.
    let prompt = [4usize, 2, 5];
    for (slot, &n) in prompt.iter().enumerate() {
        model.select(slot).unwrap();
        let last = pollster::block_on(model.forward(&ctx, &seqs[slot][..n], Logits::Last)).unwrap();
        assert_close(&format!("slot {slot} prefill"), &last, &want[slot][n - 1]);
    }
    let mut pos = prompt;
    for step in 0..4 {
        let order = [[2, 0, 1], [1, 2, 0], [0, 1, 2], [2, 1, 0]][step];
        let batch: Vec<(usize, u32)> = order.iter().map(|&s| (s, seqs[s][pos[s]])).collect();
        let rows = pollster::block_on(model.decode_batch(&ctx, &batch)).unwrap();
        for (&(slot, _), row) in batch.iter().zip(&rows) {
            assert_close(&format!("step {step} slot {slot} position {}", pos[slot]), row, &want[slot][pos[slot]]);
            pos[slot] += 1;
        }
    }
    assert_eq!((0..3).map(|s| model.position_of(s)).collect::<Vec<_>>(), pos.to_vec());
    // Slot 1 restarts from its first token while slots 0 and 2 keep decoding beside it.
    model.select(1).unwrap();
    model.reset();
    pollster::block_on(model.forward(&ctx, &seqs[1][..1], Logits::Last)).unwrap();
    let batch = [(0, seqs[0][pos[0]]), (1, seqs[1][1]), (2, seqs[2][pos[2]])];
    let rows = pollster::block_on(model.decode_batch(&ctx, &batch)).unwrap();
    assert_close("slot 0 after the restart", &rows[0], &want[0][pos[0]]);
    assert_close("slot 1 restarted", &rows[1], &want[1][1]);
    assert_close("slot 2 after the restart", &rows[2], &want[2][pos[2]]);

    let e = pollster::block_on(model.decode_batch(&ctx, &[(0, 1), (0, 2)])).unwrap_err();
    assert!(matches!(e, Error::Model(ModelError::SlotRepeated { slot: 0 })), "{e}");
    let e = pollster::block_on(model.decode_batch(&ctx, &[(3, 1)])).unwrap_err();
    assert!(matches!(e, Error::Model(ModelError::NoSuchSlot { slot: 3, slots: 3 })), "{e}");
    assert!(matches!(model.select(3), Err(ModelError::NoSuchSlot { slot: 3, slots: 3 })));
}

#[test]
fn bad_requests_are_typed_errors() {
    let Some(ctx) = common::context() else { return };
    let spec = TinySpec::odd();
    let file = GgufFile::from_bytes(tiny_llama_gguf(&spec, 4)).unwrap();
    let mut model = pollster::block_on(Llama::load(&ctx, &file, LlamaOptions { context: 8, chunk: 4, ..Default::default() }, &mut |_, _| {})).unwrap();
    let e = pollster::block_on(model.forward(&ctx, &[], Logits::Last)).unwrap_err();
    assert!(matches!(e, Error::Model(ModelError::EmptyInput)), "{e}");
    let e = pollster::block_on(model.forward(&ctx, &[spec.vocab as u32], Logits::Last)).unwrap_err();
    assert!(matches!(e, Error::Model(ModelError::TokenOutOfRange { .. })), "{e}");
    let e = pollster::block_on(model.forward(&ctx, &[1; 9], Logits::Last)).unwrap_err();
    assert!(matches!(e, Error::Model(ModelError::ContextFull { needed: 9, context: 8 })), "{e}");
}

#[test]
fn missing_tensors_are_typed_errors() {
    let Some(ctx) = common::context() else { return };
    let spec = TinySpec::odd();
    let bytes = tiny_llama_gguf(&spec, 5);
    // Rename a tensor so the loader cannot find it: same length, so offsets stay valid.
    let needle = b"blk.1.ffn_up.weight";
    let at = bytes.windows(needle.len()).position(|w| w == needle).unwrap();
    let mut broken = bytes.clone();
    broken[at..at + needle.len()].copy_from_slice(b"blk.1.ffn_uq.weight");
    let file = GgufFile::from_bytes(broken).unwrap();
    let e = pollster::block_on(Llama::load(&ctx, &file, LlamaOptions::default(), &mut |_, _| {})).err().unwrap();
    assert!(matches!(e, Error::Model(ModelError::MissingTensor { ref name }) if name == "blk.1.ffn_up.weight"), "{e}");
}

#[test]
fn an_unsupported_tensor_type_names_the_tensor_and_type() {
    use qgpu::loader::{GgmlType, GgufWriter};
    let Some(ctx) = common::context() else { return };
    let mut w = GgufWriter::new();
    for (key, value) in [("llama.embedding_length", 256u32), ("llama.attention.head_count", 1), ("llama.block_count", 1), ("llama.feed_forward_length", 32)] {
        w.add_metadata(key, value).unwrap();
    }
    w.add_metadata("general.architecture", "llama").unwrap();
    // IQ2_XXS: 66 bytes per 256 values, a real GGUF type qgpu has no kernel for.
    w.add_tensor("token_embd.weight", &[256, 4], GgmlType::IQ2_XXS, vec![0u8; 4 * 66]).unwrap();
    // The one block the header counts exists (it is checked before any tensor is read).
    w.add_tensor("blk.0.attn_norm.weight", &[256], GgmlType::F32, vec![0u8; 4 * 256]).unwrap();
    let file = GgufFile::from_bytes(w.to_bytes()).unwrap();
    let e = pollster::block_on(Llama::load(&ctx, &file, LlamaOptions::default(), &mut |_, _| {})).err().unwrap();
    assert!(
        matches!(e, Error::Model(ModelError::UnsupportedTensorType { ref tensor, ref ggml_type }) if tensor == "token_embd.weight" && ggml_type == "IQ2_XXS"),
        "{e}"
    );
}

#[test]
fn a_context_past_the_binding_limit_says_what_fits() {
    let Some(ctx) = common::context() else { return };
    // Trained for 2^24 positions: there the RoPE table (32 dimensions × 4 bytes a position)
    // passes any adapter's binding; the error names the limit and the longest context under it.
    let spec = TinySpec { context: 1 << 24, ..TinySpec::odd() };
    let file = GgufFile::from_bytes(tiny_llama_gguf(&spec, 5)).unwrap();
    let options = LlamaOptions { context: 1 << 24, kv_type: KvType::Q8_0, ..Default::default() };
    let e = pollster::block_on(Llama::load(&ctx, &file, options.clone(), &mut |_, _| {})).err().unwrap();
    let limit = ctx.max_binding_size();
    let Error::Model(ModelError::ContextTooLarge { context, needed, fits, limit: said, .. }) = e else { panic!("{e}") };
    assert_eq!((context, said), (1 << 24, limit));
    assert!(needed > limit && fits as u64 == (limit / 128).min(1 << 24), "needed {needed}, fits {fits}");
    let config = qgpu::model::llama::LlamaConfig::from_source(&file).unwrap();
    let at = |context| qgpu::model::llama::check_context_fits(&config, &LlamaOptions { context, ..options.clone() }.resolve(&config), limit);
    assert!(at(fits).is_ok() && at(fits + 1).is_err());
}

/// Q|K|V and gate|up stacked at load compute every output exactly as the separate matrices do
/// (each output row is the same dot product), in three fewer dispatches a layer.
#[test]
fn stacked_projections_give_the_same_logits_in_fewer_dispatches() {
    let Some(ctx) = common::context() else { return };
    let spec = TinySpec::odd();
    let file = GgufFile::from_bytes(tiny_llama_gguf(&spec, 7)).unwrap();
    let tokens: Vec<u32> = (0..11u32).map(|i| (i * 29 + 3) % spec.vocab as u32).collect();
    let mut runs = Vec::new();
    for fuse_projections in [true, false] {
        let options = LlamaOptions { context: spec.context, chunk: 16, fuse_projections, ..Default::default() };
        let mut model = pollster::block_on(Llama::load(&ctx, &file, options, &mut |_, _| {})).unwrap();
        let all = pollster::block_on(model.forward(&ctx, &tokens, Logits::All)).unwrap();
        model.reset();
        let mut decoded = pollster::block_on(model.forward(&ctx, &tokens[..4], Logits::Last)).unwrap();
        for t in &tokens[4..] {
            decoded.extend(pollster::block_on(model.forward(&ctx, std::slice::from_ref(t), Logits::Last)).unwrap());
        }
        runs.push((all, decoded, model.dispatches_per_token().unwrap()));
    }
    let ((all, decoded, fused), (all_apart, decoded_apart, apart)) = (&runs[0], &runs[1]);
    assert!(all == all_apart, "prefill logits differ between stacked and separate projections");
    assert!(decoded == decoded_apart, "decode logits differ between stacked and separate projections");
    assert_eq!(apart - fused, 3 * spec.n_layers, "dispatches per token: {fused} stacked, {apart} apart");
}
