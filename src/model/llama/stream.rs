//! A decoder loaded from GGUF bytes as they arrive: one file, or the files of a `gguf-split`
//! model one after another. The browser feeds it a download chunk by chunk, so WebAssembly
//! memory holds the header and one band of rows, never the model.

use super::{Llama, LlamaOptions, LlamaUpload};
use crate::gpu::Context;
use crate::loader::gguf::stream::{GgufSink, GgufStream};
use crate::loader::gguf_split::check_split;
use crate::loader::{GgufError, GgufHeader, SourceTensor, TensorInfo};
use crate::model::tokenizer::{Tokenizer, TokenizerError};
use crate::model::ModelError;
use crate::Error;

/// A decoder and its tokenizer loading from pushed GGUF bytes.
pub struct StreamedLlama {
    options: Option<LlamaOptions>,
    /// How many files the model has (1 unless split).
    files: usize,
    /// Files begun so far.
    file: usize,
    stream: Option<GgufStream>,
    /// Made from the first file's header.
    upload: Option<LlamaUpload>,
    /// Read from the first header; a model without one still loads (tests, `qgpu bench`).
    tokenizer: Option<Result<Tokenizer, TokenizerError>>,
    /// Tensors received whole, and declared by the headers so far.
    tensors_done: usize,
    tensors_declared: usize,
}

/// What the stream of one file hands on to.
struct Sink<'a> {
    ctx: &'a Context,
    model: &'a mut StreamedLlama,
    progress: &'a mut dyn FnMut(usize, usize),
}

impl GgufSink for Sink<'_> {
    type Error = Error;

    fn header(&mut self, header: &GgufHeader) -> Result<(), Error> {
        let m = &mut *self.model;
        let index = m.file - 1;
        check_split(&format!("file {} of {}", m.file, m.files), header.metadata(), index, m.files).map_err(ModelError::from)?;
        if index == 0 {
            m.tokenizer = Some(Tokenizer::from_gguf(header.metadata()));
            let options = m.options.take().expect("options are taken by the first header only");
            m.upload = Some(LlamaUpload::new(self.ctx, header.metadata(), options)?);
        }
        let upload = m.upload.as_mut().expect("made by the first header");
        upload.declare(header.tensors().iter().map(SourceTensor::from));
        m.tensors_declared += header.tensors().len();
        Ok(())
    }

    fn tensor_bytes(&mut self, tensor: &TensorInfo, bytes: &[u8], last: bool) -> Result<(), Error> {
        let m = &mut *self.model;
        let upload = m.upload.as_mut().expect("bytes come after the header");
        upload.tensor_bytes(self.ctx, &SourceTensor::from(tensor), bytes, last)?;
        if last {
            m.tensors_done += 1;
            (self.progress)(m.tensors_done, m.tensors_declared);
        }
        Ok(())
    }
}

impl StreamedLlama {
    /// A model of `files` files (1 unless split by gguf-split), to be loaded with `options`.
    pub fn new(files: usize, options: LlamaOptions) -> Self {
        Self { options: Some(options), files: files.max(1), file: 0, stream: None, upload: None, tokenizer: None, tensors_done: 0, tensors_declared: 0 }
    }

    /// Starts the next file, of `len` bytes when that is known.
    pub fn begin_file(&mut self, len: Option<u64>) -> Result<(), Error> {
        if self.stream.is_some() || self.file == self.files {
            return Err(ModelError::BadStream { reason: format!("file {} begun while {} of {} is open or all are done", self.file + 1, self.file, self.files) }.into());
        }
        self.file += 1;
        self.stream = Some(GgufStream::new(len));
        Ok(())
    }

    /// The next bytes of the current file; `progress(done, declared)` counts whole tensors.
    pub fn push(&mut self, ctx: &Context, chunk: &[u8], progress: &mut dyn FnMut(usize, usize)) -> Result<(), Error> {
        let mut stream = self.stream.take().ok_or_else(|| ModelError::BadStream { reason: "bytes pushed outside a file".into() })?;
        let result = stream.push(chunk, &mut Sink { ctx, model: self, progress });
        self.stream = Some(stream);
        result
    }

    /// Ends the current file: every tensor it declared must be complete.
    pub fn end_file(&mut self, ctx: &Context, progress: &mut dyn FnMut(usize, usize)) -> Result<(), Error> {
        let stream = self.stream.take().ok_or_else(|| ModelError::BadStream { reason: "no file to end".into() })?;
        stream.finish(&mut Sink { ctx, model: self, progress })?;
        Ok(())
    }

    /// The model and its tokenizer (or why the metadata gives none), once every file has ended.
    pub async fn finish(self, ctx: &Context) -> Result<(Llama, Result<Tokenizer, TokenizerError>), Error> {
        if self.stream.is_some() || self.file != self.files {
            return Err(ModelError::BadStream { reason: format!("{} of {} files received", self.file - usize::from(self.stream.is_some()), self.files) }.into());
        }
        let (Some(upload), Some(tokenizer)) = (self.upload, self.tokenizer) else {
            return Err(GgufError::Truncated { what: "GGUF header", offset: 0, needed: 1, available: 0 }.into());
        };
        Ok((upload.finish(ctx).await?, tokenizer))
    }
}
