//! Converting tensor by tensor into a temporary file, then renaming it into place.

use std::fs::File;
use std::io::BufWriter;
use std::ops::ControlFlow;
use std::path::Path;

use half::f16;

use super::{
    ConvertError, ConvertOptions, Decision, DecisionKind, Progress, QuantPlan, Report, TensorReport,
};
use crate::loader::{GgmlType, GgufWriter, MetadataValue, TensorSource};
use crate::partial::PartialFile;
use crate::quant::weighted::quantize_weighted;
use crate::quant::{reference, Format, QuantError};

/// Metadata keys that describe the old file's quantization; the new file sets its own.
const REPLACED_KEYS: [&str; 3] = ["general.file_type", "general.quantization_version", "qgpu.quantization"];

/// Converts `source` as `plan` says and writes the GGUF to `out`. `progress` is called after
/// every tensor; returning `Break` cancels (→ [`ConvertError::Cancelled`], nothing written under
/// `out`). Metadata (architecture, hyper-parameters, tokenizer) is copied, with
/// `general.file_type`, `general.quantization_version` and `qgpu.quantization` set anew.
pub fn quantize_model(
    source: &dyn TensorSource,
    plan: &QuantPlan,
    options: &ConvertOptions<'_>,
    out: &Path,
    progress: &mut dyn FnMut(&Progress<'_>) -> ControlFlow<()>,
) -> Result<Report, ConvertError> {
    check_out(out)?;
    let decisions = plan.decide(source)?;
    let mut writer = GgufWriter::new();
    for (key, value) in source.metadata().iter() {
        if !REPLACED_KEYS.contains(&key) {
            writer.add_metadata(key, value.clone())?;
        }
    }
    writer.add_metadata("general.file_type", MetadataValue::U32(plan.file_type()))?;
    writer.add_metadata("general.quantization_version", MetadataValue::U32(2))?;
    writer.add_metadata("qgpu.quantization", MetadataValue::String(describe(plan, options)))?;
    for d in &decisions {
        writer.declare_tensor(d.tensor.name.as_str(), &d.tensor.dims, ggml_type(d.written()))?;
    }

    let (temp, file) = beside(out)?;
    let mut stream = writer.stream(BufWriter::with_capacity(1 << 20, file))?;
    // Saturating: dims come from the header and are checked against the bytes only when read.
    let values_total = decisions.iter().fold(0u64, |a, d| a.saturating_add(d.tensor.n_elements().unwrap_or(0)));
    let (mut values_done, total) = (0u64, decisions.len());
    let mut reports = Vec::with_capacity(total);
    for (i, d) in decisions.iter().enumerate() {
        let (bytes, report) = convert_tensor(source, d, options)?;
        stream.write_tensor(&d.tensor.name, &bytes)?;
        reports.push(report);
        values_done = values_done.saturating_add(d.tensor.n_elements().unwrap_or(0));
        let p = Progress { done: i + 1, total, tensor: &d.tensor.name, values_done, values_total };
        if progress(&p).is_break() {
            return Err(ConvertError::Cancelled { done: i + 1, total });
        }
    }
    let (buffered, file_bytes) = stream.finish()?;
    let file = buffered.into_inner().map_err(|e| io(temp.path(), e.into_error()))?;
    file.sync_all().map_err(|e| io(temp.path(), e))?;
    drop(file);
    commit(temp, out)?;
    Ok(Report { tensors: reports, file_bytes })
}

fn io(path: &Path, source: std::io::Error) -> ConvertError {
    ConvertError::Io { path: path.to_owned(), source }
}

/// The `qgpu.quantization` note: the plan in words.
fn describe(plan: &QuantPlan, options: &ConvertOptions<'_>) -> String {
    let mut s = format!("qgpu quantize: {}", plan.name());
    for r in &plan.rules {
        s.push_str(&format!(", {}={}", r.pattern, r.format));
    }
    if let (true, Some(imp)) = (plan.calibrated, options.importance) {
        s.push_str(&format!("; importance-weighted from {} calibration tokens", imp.tokens));
    }
    if let Some(note) = &options.note {
        s.push_str("; ");
        s.push_str(note);
    }
    s
}

fn ggml_type(format: Format) -> GgmlType {
    GgmlType::from_element_id(format.ggml_type()).expect("every Format is an element type")
}

/// One tensor's output bytes and report.
fn convert_tensor(
    source: &dyn TensorSource,
    d: &Decision,
    options: &ConvertOptions<'_>,
) -> Result<(Vec<u8>, TensorReport), ConvertError> {
    let t = &d.tensor;
    let written = d.written();
    let mut report = TensorReport {
        name: t.name.clone(),
        dims: t.dims.clone(),
        source_type: t.ggml_type,
        requested: None,
        written,
        calibrated: false,
        copied: false,
        bytes: 0,
    };
    let quant = |source: QuantError| ConvertError::Quant { tensor: t.name.clone(), source };
    let bytes = match d.kind {
        // Already in the target format and nothing to improve: the bytes as they are.
        DecisionKind::Quantize { written, calibrated: false, .. } | DecisionKind::Float { written }
            if t.ggml_type.id() == written.ggml_type() =>
        {
            report.copied = true;
            report.requested = matches!(d.kind, DecisionKind::Quantize { .. }).then_some(written);
            source.tensor_bytes(&t.name)?.into_owned()
        }
        DecisionKind::Float { written } => {
            let values = source.tensor_f32(&t.name)?;
            float_bytes(written, &values)
        }
        DecisionKind::Quantize { requested, written, calibrated } => {
            report.requested = Some(requested);
            let values = source.tensor_f32(&t.name)?;
            let cols = t.dims[0] as usize;
            // The plan refuses empty rows; checked again so no division can be by zero.
            let empty = || super::PlanError::EmptyMatrix { tensor: t.name.clone(), dims: t.dims.clone() };
            let rows = values.len().checked_div(cols).ok_or_else(empty)?;
            let importance = if calibrated { options.importance.and_then(|imp| imp.get(&t.name)) } else { None };
            report.calibrated = importance.is_some();
            if matches!(written, Format::F32 | Format::F16) && !cols.is_multiple_of(8) {
                // The fallback of last resort: float with no row-length requirement.
                float_bytes(written, &values)
            } else {
                quantize_rows(written, rows, cols, &values, importance, options.threads).map_err(quant)?
            }
        }
    };
    report.bytes = bytes.len() as u64;
    Ok((bytes, report))
}

fn float_bytes(format: Format, values: &[f32]) -> Vec<u8> {
    match format {
        Format::F16 => values.iter().flat_map(|v| f16::from_f32(*v).to_le_bytes()).collect(),
        _ => values.iter().flat_map(|v| v.to_le_bytes()).collect(),
    }
}

/// Quantizes `rows × cols` values, splitting the rows over `threads` workers (0: one per core).
fn quantize_rows(
    format: Format,
    rows: usize,
    cols: usize,
    values: &[f32],
    importance: Option<&[f32]>,
    threads: usize,
) -> Result<Vec<u8>, QuantError> {
    let threads = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        n => n,
    };
    let rows_per = rows.div_ceil(threads.clamp(1, rows.max(1))).max(1);
    let one = |chunk: &[f32]| -> Result<Vec<u8>, QuantError> {
        let n = chunk.len() / cols;
        let m = match importance {
            Some(imp) => quantize_weighted(format, n, cols, chunk, imp)?,
            None => reference::quantize(format, n, cols, chunk)?,
        };
        Ok(m.data().to_vec())
    };
    let parts: Vec<Result<Vec<u8>, QuantError>> = std::thread::scope(|s| {
        let handles: Vec<_> = values.chunks(rows_per * cols).map(|c| s.spawn(move || one(c))).collect();
        handles.into_iter().map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))).collect()
    });
    let mut out = Vec::with_capacity(format.row_bytes(cols).unwrap_or(0).saturating_mul(rows));
    for part in parts {
        out.extend_from_slice(&part?);
    }
    Ok(out)
}

/// Refuses an `out` that cannot be replaced by a renamed regular file: an existing directory,
/// FIFO, device, socket or symlink (judged without following it), or a path whose directory
/// does not exist. Checked before any work, so a mistake is not found after the conversion.
pub fn check_out(out: &Path) -> Result<(), ConvertError> {
    if out.file_name().is_none() {
        return Err(ConvertError::OutNotAFile { path: out.to_owned(), kind: "directory" });
    }
    match std::fs::symlink_metadata(out) {
        Ok(meta) if meta.is_file() => Ok(()),
        Ok(meta) => Err(ConvertError::OutNotAFile { path: out.to_owned(), kind: file_kind(&meta.file_type()) }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let dir = out_dir(out);
            match std::fs::metadata(dir) {
                Ok(meta) if meta.is_dir() => Ok(()),
                _ => Err(ConvertError::OutDirMissing { path: out.to_owned(), dir: dir.to_owned() }),
            }
        }
        Err(e) => Err(io(out, e)),
    }
}

fn file_kind(t: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if t.is_fifo() {
            return "FIFO";
        }
        if t.is_char_device() {
            return "character device";
        }
        if t.is_block_device() {
            return "block device";
        }
        if t.is_socket() {
            return "socket";
        }
    }
    if t.is_dir() {
        "directory"
    } else if t.is_symlink() {
        "symbolic link"
    } else {
        "special file"
    }
}

fn out_dir(out: &Path) -> &Path {
    match out.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// A partial file in the output's directory (so the rename stays within one file system),
/// removed on drop unless committed.
fn beside(out: &Path) -> Result<(PartialFile, File), ConvertError> {
    let name = out.file_name().ok_or_else(|| io(out, std::io::Error::other("the output path names no file")))?;
    PartialFile::create(out_dir(out), &name.to_string_lossy()).map_err(|(path, e)| io(&path, e))
}

/// Renames the (synced) file to `out`, then syncs the directory so the rename is durable.
fn commit(temp: PartialFile, out: &Path) -> Result<(), ConvertError> {
    temp.persist(out).map_err(|e| io(out, e))?;
    #[cfg(unix)]
    {
        // Best effort: some file systems refuse to sync a directory.
        let _ = File::open(out_dir(out)).and_then(|d| d.sync_all());
    }
    Ok(())
}
