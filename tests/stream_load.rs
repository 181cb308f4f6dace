//! Models loaded as their bytes arrive (the browser's streamed upload) and models split by
//! llama.cpp's `gguf-split` (tests/fixtures/split, made by scripts/make_split_fixtures.sh with
//! llama.cpp's own tool): the same weights reach the GPU as from a whole file, so the logits
//! are the same to the bit; a file cut short or out of order is a typed error.

mod common;

use common::{context, context_with};
use qgpu::gpu::{Context, ContextOptions};
use qgpu::loader::gguf::stream::{GgufSink, GgufStream};
use qgpu::loader::{GgufError, GgufFile, GgufHeader, GgufSplit, LoadError, TensorInfo, TensorSource};
use qgpu::model::llama::{Llama, LlamaOptions, Logits, StreamedLlama};
use qgpu::model::ModelError;
use qgpu::ops::{linear, GpuMatrix, GpuTensor, LinearKernel, MatrixUpload, MatvecKernel};
use qgpu::quant::reference::{self, TestRng};
use qgpu::quant::Format;
use qgpu::Error;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures");

fn split_paths() -> Vec<String> {
    (1..=3).map(|i| format!("{FIXTURES}/split/gemma3-{i:05}-of-00003.gguf")).collect()
}

/// Tokens of the arch fixture's sequence.
fn tokens() -> Vec<u32> {
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(format!("{FIXTURES}/arch/gemma3.json")).unwrap()).unwrap();
    json["tokens"].as_array().unwrap().iter().map(|t| t.as_u64().unwrap() as u32).collect()
}

fn logits(ctx: &Context, mut model: Llama) -> Vec<f32> {
    pollster::block_on(model.forward(ctx, &tokens(), Logits::All)).unwrap()
}

/// Pushes each file in pieces of `piece` bytes (the last piece of a file shorter).
fn stream(ctx: &Context, files: &[Vec<u8>], piece: usize, known_length: bool) -> Result<Llama, Error> {
    let mut model = StreamedLlama::new(files.len(), LlamaOptions::default());
    let mut progress = |_: usize, _: usize| {};
    for bytes in files {
        model.begin_file(known_length.then_some(bytes.len() as u64))?;
        for chunk in bytes.chunks(piece) {
            model.push(ctx, chunk, &mut progress)?;
        }
        model.end_file(ctx, &mut progress)?;
    }
    Ok(pollster::block_on(model.finish(ctx))?.0)
}

#[test]
fn a_streamed_gguf_gives_the_whole_files_logits() {
    let Some(ctx) = context() else { return };
    let bytes = std::fs::read(format!("{FIXTURES}/arch/gemma3.gguf")).unwrap();
    let file = GgufFile::from_bytes(bytes.clone()).unwrap();
    let want = logits(&ctx, pollster::block_on(Llama::load(&ctx, &file, LlamaOptions::default(), &mut |_, _| {})).unwrap());
    // One byte at a time (the header parsed as it grows), an odd size, the whole file; with
    // and without a stated length.
    for (piece, known) in [(1, true), (4093, false), (bytes.len(), true)] {
        let got = logits(&ctx, stream(&ctx, std::slice::from_ref(&bytes), piece, known).unwrap());
        assert!(got == want, "pieces of {piece} bytes: logits differ from the whole file's");
    }
}

#[test]
fn a_split_model_loads_as_one_natively_and_streamed() {
    let Some(ctx) = context() else { return };
    let whole = GgufFile::read(format!("{FIXTURES}/arch/gemma3.gguf")).unwrap();
    let want = logits(&ctx, pollster::block_on(Llama::load(&ctx, &whole, LlamaOptions::default(), &mut |_, _| {})).unwrap());
    let paths = split_paths();
    // Named by its second file, as a user might.
    let split = GgufSplit::open(std::path::Path::new(&paths[1])).unwrap();
    assert_eq!(split.file_count(), 3);
    assert_eq!(split.tensors().len(), whole.tensors().len());
    let native = logits(&ctx, pollster::block_on(Llama::load(&ctx, &split, LlamaOptions::default(), &mut |_, _| {})).unwrap());
    assert!(native == want, "split files: logits differ from the whole file's");
    let files: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let streamed = logits(&ctx, stream(&ctx, &files, 65536, true).unwrap());
    assert!(streamed == want, "streamed split files: logits differ from the whole file's");
}

#[test]
fn split_files_out_of_order_or_missing_are_typed_errors() {
    let Some(ctx) = context() else { return };
    let paths = split_paths();
    let read = |i: usize| (paths[i].clone(), GgufFile::read(&paths[i]).unwrap());
    let err = GgufSplit::from_files(vec![read(0), read(2), read(1)]).err().expect("out of order");
    assert!(matches!(&err, LoadError::BadSplit { file, reason } if file.ends_with("00003-of-00003.gguf") && reason.contains("split 3 of 3, expected 2 of 3")), "{err}");
    let err = GgufSplit::from_files(vec![read(0), read(1)]).err().expect("one missing");
    assert!(matches!(err, LoadError::BadSplit { .. }), "{err}");

    let files: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let err = stream(&ctx, &[files[0].clone(), files[2].clone(), files[1].clone()], 65536, true).err().expect("streamed out of order");
    assert!(matches!(err, Error::Model(ModelError::Load(LoadError::BadSplit { .. }))), "{err}");
    // Two files of three, then finish.
    let mut model = StreamedLlama::new(3, LlamaOptions::default());
    for bytes in &files[..2] {
        model.begin_file(Some(bytes.len() as u64)).unwrap();
        model.push(&ctx, bytes, &mut |_, _| {}).unwrap();
        model.end_file(&ctx, &mut |_, _| {}).unwrap();
    }
    let err = pollster::block_on(model.finish(&ctx)).err().expect("a file short");
    assert!(matches!(err, Error::Model(ModelError::BadStream { .. })), "{err}");
}

#[test]
fn a_stream_cut_short_names_the_tensor_it_cut() {
    let Some(ctx) = context() else { return };
    let bytes = std::fs::read(format!("{FIXTURES}/arch/gemma3.gguf")).unwrap();
    let header = GgufHeader::parse(&bytes).unwrap();
    let last = header.tensors().iter().max_by_key(|t| t.offset).unwrap().clone();
    let cut = &bytes[..bytes.len() - 100];
    // Without a stated length the end of the stream is the first sign.
    let err = stream(&ctx, &[cut.to_vec()], 4096, false).err().expect("cut short");
    assert!(matches!(&err, Error::Gguf(GgufError::TensorOutOfBounds { tensor, .. }) if *tensor == last.name), "{err}");
    // With the length stated, more bytes than it says are refused as they arrive.
    let mut model = StreamedLlama::new(1, LlamaOptions::default());
    model.begin_file(Some(1000)).unwrap();
    let err = model.push(&ctx, &bytes[..4096], &mut |_, _| {}).expect_err("too long");
    assert!(matches!(err, Error::Gguf(GgufError::LongerThanStated { file_len: 1000 })), "{err}");
    // A header that claims a string past what a stream buffers fails at once, not after 256 MiB.
    let mut evil = bytes[..24].to_vec();
    evil.extend_from_slice(&(1u64 << 40).to_le_bytes());
    evil.resize(70 << 10, b'x');
    let mut model = StreamedLlama::new(1, LlamaOptions::default());
    model.begin_file(None).unwrap();
    let err = model.push(&ctx, &evil, &mut |_, _| {}).expect_err("header too large");
    assert!(matches!(err, Error::Gguf(GgufError::HeaderTooLarge { .. })), "{err}");
}

/// Collects what a stream hands on.
#[derive(Default)]
struct Collect {
    header: Option<GgufHeader>,
    tensors: Vec<(String, Vec<u8>)>,
}

impl GgufSink for Collect {
    type Error = GgufError;
    fn header(&mut self, header: &GgufHeader) -> Result<(), GgufError> {
        self.header = Some(header.clone());
        Ok(())
    }
    fn tensor_bytes(&mut self, tensor: &TensorInfo, bytes: &[u8], _last: bool) -> Result<(), GgufError> {
        match self.tensors.last_mut() {
            Some((name, data)) if *name == tensor.name => data.extend_from_slice(bytes),
            _ => self.tensors.push((tensor.name.clone(), bytes.to_vec())),
        }
        Ok(())
    }
}

#[test]
fn a_gguf_stream_hands_on_every_tensors_bytes_in_file_order() {
    let bytes = std::fs::read(format!("{FIXTURES}/arch/qwen3.gguf")).unwrap();
    let file = GgufFile::from_bytes(bytes.clone()).unwrap();
    let mut by_offset: Vec<&TensorInfo> = file.tensors().iter().collect();
    by_offset.sort_by_key(|t| t.offset);
    let mut rng = TestRng::new(5);
    for known in [true, false] {
        let mut sink = Collect::default();
        let mut stream = GgufStream::new(known.then_some(bytes.len() as u64));
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            // Pieces of 1 to 9000 bytes.
            let n = ((rng.next_u64() % 9000) as usize + 1).min(rest.len());
            stream.push(&rest[..n], &mut sink).unwrap();
            rest = &rest[n..];
        }
        stream.finish(&mut sink).unwrap();
        assert_eq!(sink.header.as_ref(), Some(file.header()));
        assert_eq!(sink.tensors.len(), by_offset.len());
        for ((name, data), t) in sink.tensors.iter().zip(&by_offset) {
            assert_eq!(name, &t.name);
            assert!(data.as_slice() == file.tensor_data(t).unwrap(), "{name}: bytes differ");
        }
    }
}

/// A GGUF by hand: tensor `a` (64 f32 at data offset 0) and an empty tensor `z` whose offset
/// points inside `a`'s bytes (the parser allows it: an empty tensor overlaps nothing).
fn empty_tensor_inside_another() -> Vec<u8> {
    let mut b = b"GGUF".to_vec();
    b.extend_from_slice(&3u32.to_le_bytes());
    b.extend_from_slice(&2u64.to_le_bytes()); // tensors
    b.extend_from_slice(&0u64.to_le_bytes()); // metadata entries
    for (name, dim, offset) in [("a", 64u64, 0u64), ("z", 0, 32)] {
        b.extend_from_slice(&(name.len() as u64).to_le_bytes());
        b.extend_from_slice(name.as_bytes());
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&dim.to_le_bytes());
        b.extend_from_slice(&0u32.to_le_bytes()); // F32
        b.extend_from_slice(&offset.to_le_bytes());
    }
    b.resize(b.len().next_multiple_of(32), 0);
    b.extend((0..256u32).map(|i| i as u8));
    b
}

#[test]
fn an_empty_tensor_inside_another_is_handed_on_empty() {
    let bytes = empty_tensor_inside_another();
    let file = GgufFile::from_bytes(bytes.clone()).unwrap();
    for piece in [1, 7, bytes.len()] {
        let mut sink = Collect::default();
        let mut stream = GgufStream::new(Some(bytes.len() as u64));
        for chunk in bytes.chunks(piece) {
            stream.push(chunk, &mut sink).unwrap();
        }
        stream.finish(&mut sink).unwrap();
        let got: Vec<(&str, usize)> = sink.tensors.iter().map(|(n, d)| (n.as_str(), d.len())).collect();
        assert_eq!(got, [("a", 256), ("z", 0)], "pieces of {piece}");
        assert!(sink.tensors[0].1 == file.tensor_bytes("a").unwrap());
    }
}

/// `w` uploaded through a [`MatrixUpload`] of `band` bytes a band, pushed in pieces of `piece`.
fn upload_in_pieces(ctx: &Context, w: &qgpu::quant::QuantMatrix, band: u64, piece: usize) -> GpuMatrix {
    let mut upload = MatrixUpload::with_band(ctx, w.format(), w.rows(), w.cols(), band).unwrap();
    for chunk in w.data().chunks(piece) {
        upload.push(ctx, chunk).unwrap();
    }
    upload.finish().unwrap()
}

#[test]
fn matrices_uploaded_in_pieces_match_the_oracle() {
    // Bands smaller than a buffer and buffers smaller than the matrix: rows arrive split across
    // pieces, bands start mid-buffer, buffers end mid-band.
    let Some(ctx) = context_with(ContextOptions { max_binding_size: Some(8 << 10), ..Default::default() }) else { return };
    let mut rng = TestRng::new(9);
    // Odd row counts and, for Q6_K at K = 256 and MXFP4 at K = 96, an odd number of scales a
    // row (packed two or four a word).
    for (format, n, k) in [(Format::Q8_0, 301, 96), (Format::Q6_K, 517, 256), (Format::Q4_1, 263, 160), (Format::MXFP4, 411, 96), (Format::Q4_K, 133, 512)] {
        let w = reference::quantize(format, n, k, &rng.vec(n * k)).unwrap();
        let whole = GpuMatrix::upload(&ctx, w.as_ref()).unwrap();
        assert!(whole.chunk_count() > 1, "{format}: the matrix should need several buffers");
        let x = rng.vec(k);
        let want = reference::matmul(&x, 1, w.as_ref());
        let gx = GpuTensor::from_slice(&ctx, 1, k, &x).unwrap();
        for (band, piece) in [(1000, 997), (3000, 1), (1 << 20, 12345)] {
            let gw = upload_in_pieces(&ctx, &w, band, piece);
            assert_eq!((gw.gpu_bytes(), gw.chunk_count()), (whole.gpu_bytes(), whole.chunk_count()), "{format}");
            let gy = GpuTensor::zeros(&ctx, 1, n).unwrap();
            pollster::block_on(linear(&ctx, &gw, &gx, &gy, Some(LinearKernel::Matvec(MatvecKernel::Lane)))).unwrap();
            let got = pollster::block_on(gy.read(&ctx)).unwrap();
            let (rel, first) = common::compare(&got, &want, 1e-3);
            assert!(rel <= 1e-5 && first.is_none(), "{format} band {band} pieces {piece}: relative error {rel:e} at {first:?}");
        }
        // Too many bytes, or too few, are typed errors.
        let mut upload = MatrixUpload::new(&ctx, format, n, k).unwrap();
        let err = upload.push(&ctx, &vec![0u8; w.data().len() + 1]).expect_err("too many bytes");
        assert!(matches!(err, Error::Quant(qgpu::quant::QuantError::ByteCount { .. })), "{err}");
        let mut upload = MatrixUpload::new(&ctx, format, n, k).unwrap();
        upload.push(&ctx, &w.data()[..w.data().len() - 1]).unwrap();
        let err = upload.finish().err().expect("a byte short");
        assert!(matches!(err, Error::Quant(qgpu::quant::QuantError::ByteCount { .. })), "{err}");
    }
}
