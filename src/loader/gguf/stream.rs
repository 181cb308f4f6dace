//! A GGUF file read front to back as its bytes arrive (a download, a `File` stream), without
//! ever holding the whole file: the header is parsed as soon as it is complete, then each
//! tensor's bytes are handed on piece by piece, in file order.

use super::{GgufError, GgufHeader, TensorInfo};

/// The largest header a stream waits for. Real headers are a few MiB (Gemma 3's 262k-token
/// vocabulary makes 6.5 MiB); without a known file length, this is what bounds the buffer.
pub const MAX_STREAM_HEADER: u64 = 256 << 20;

/// What a [`GgufStream`] hands on.
pub trait GgufSink {
    /// The error the sink's own work can fail with.
    type Error: From<GgufError>;
    /// The header, once, before any tensor bytes.
    fn header(&mut self, header: &GgufHeader) -> Result<(), Self::Error>;
    /// The next `bytes` of `tensor`, in order; `last` on its final piece (a tensor of zero bytes
    /// gets one empty, last piece).
    fn tensor_bytes(&mut self, tensor: &TensorInfo, bytes: &[u8], last: bool) -> Result<(), Self::Error>;
}

/// A push parser for one GGUF file.
#[derive(Debug)]
pub struct GgufStream {
    file_len: Option<u64>,
    /// Bytes of the header seen so far (emptied once it is parsed).
    buf: Vec<u8>,
    /// How long `buf` must be before the next parse is worth trying: re-parsing on every
    /// chunk would be quadratic in the header size.
    want: usize,
    /// The header's tensors in data order, once it is parsed (the metadata is the sink's to
    /// keep: a large vocabulary is megabytes).
    tensors: Option<Vec<TensorInfo>>,
    /// File offset of the next byte pushed.
    pos: u64,
    /// Index into the data-ordered tensors of the one being received.
    next: usize,
}

impl GgufStream {
    /// A stream for a file of `file_len` bytes, when that is known (`Content-Length`, a
    /// `File`'s size); tensor extents are then checked against it before any byte of data.
    pub fn new(file_len: Option<u64>) -> Self {
        Self { file_len, buf: Vec::new(), want: 64 << 10, tensors: None, pos: 0, next: 0 }
    }

    /// Bytes pushed so far.
    pub fn position(&self) -> u64 {
        self.pos
    }

    /// Feeds the next bytes of the file.
    pub fn push<S: GgufSink>(&mut self, mut chunk: &[u8], sink: &mut S) -> Result<(), S::Error> {
        if let Some(len) = self.file_len {
            if self.pos + chunk.len() as u64 > len {
                return Err(GgufError::LongerThanStated { file_len: len }.into());
            }
        }
        if self.tensors.is_none() {
            self.buf.extend_from_slice(chunk);
            self.pos += chunk.len() as u64;
            if self.buf.len() >= self.want || Some(self.pos) == self.file_len {
                self.try_header(self.file_len, sink)?;
            }
            return Ok(());
        }
        while !chunk.is_empty() {
            // Bounded pieces keep a sink's per-piece work small.
            let n = chunk.len().min(1 << 20);
            self.data(&chunk[..n], sink)?;
            chunk = &chunk[n..];
        }
        Ok(())
    }

    /// Parses the buffered bytes as a header of a file of `file_len` bytes, and on success hands
    /// it on with the data bytes already buffered. Too few bytes is not an error until the file
    /// is known to be over.
    fn try_header<S: GgufSink>(&mut self, file_len: Option<u64>, sink: &mut S) -> Result<(), S::Error> {
        let header = match GgufHeader::parse_prefix(&self.buf, file_len) {
            Ok(header) => header,
            Err(GgufError::Truncated { offset, needed, .. }) if Some(self.pos) != file_len => {
                let reach = offset.saturating_add(needed);
                if reach > MAX_STREAM_HEADER {
                    return Err(GgufError::HeaderTooLarge { needed: reach, max: MAX_STREAM_HEADER }.into());
                }
                self.want = usize::try_from(reach).unwrap_or(usize::MAX).max(self.buf.len().saturating_mul(2));
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        sink.header(&header)?;
        let mut tensors = header.tensors().to_vec();
        tensors.sort_by_key(|t| t.offset);
        drop(header);
        // The buffer past the header is the start of the data section.
        let buf = std::mem::take(&mut self.buf);
        self.pos -= buf.len() as u64;
        self.tensors = Some(tensors);
        self.data(&buf, sink)
    }

    /// Hands the data bytes `chunk` (at `self.pos`) to the tensors they belong to.
    fn data<S: GgufSink>(&mut self, mut chunk: &[u8], sink: &mut S) -> Result<(), S::Error> {
        let Some(tensors) = &self.tensors else { unreachable!("data before the header") };
        loop {
            let Some(t) = tensors.get(self.next) else {
                // Past the last tensor: padding or trailing bytes.
                self.pos += chunk.len() as u64;
                return Ok(());
            };
            if t.size_bytes == 0 {
                // Holds no bytes, wherever its offset points (possibly inside another tensor).
                sink.tensor_bytes(t, &[], true)?;
                self.next += 1;
                continue;
            }
            // The parser refused overlaps, so the data tensors come one after another.
            let end = t.offset + t.size_bytes;
            if self.pos < t.offset {
                let skip = (t.offset - self.pos).min(chunk.len() as u64) as usize;
                chunk = &chunk[skip..];
                self.pos += skip as u64;
                if self.pos < t.offset {
                    return Ok(());
                }
            }
            let take = (end - self.pos).min(chunk.len() as u64) as usize;
            let last = self.pos + take as u64 == end;
            if take > 0 {
                sink.tensor_bytes(t, &chunk[..take], last)?;
            }
            chunk = &chunk[take..];
            self.pos += take as u64;
            if !last {
                return Ok(());
            }
            self.next += 1;
        }
    }

    /// Ends the stream: the header is parsed now if it was not (a small file of unknown
    /// length), and it fails if the header or any tensor is incomplete.
    pub fn finish<S: GgufSink>(mut self, sink: &mut S) -> Result<(), S::Error> {
        if self.tensors.is_none() {
            self.try_header(Some(self.pos), sink)?;
        }
        let tensors = self.tensors.as_deref().unwrap_or_default();
        if let Some(t) = tensors.get(self.next) {
            return Err(GgufError::TensorOutOfBounds { tensor: t.name.clone(), start: t.offset, end: t.offset + t.size_bytes, file_len: self.pos }.into());
        }
        Ok(())
    }
}
