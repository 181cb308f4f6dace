//! The autotune table: which kernel was fastest on which adapter, per format and bucketed
//! shape: a matvec variant for decode (1-8 rows), and for short batches (9-64 rows) matvec
//! passes or the matmul. `qgpu tune` fills it; the runtime consults it when planning a linear
//! layer and falls back to [`default_kernel`](super::default_kernel) where it has no entry.
//! Stored as versioned JSON (a file natively, `localStorage` in the browser); a table that
//! does not parse, has another version or names an unknown variant is rejected as a whole.

use super::linear::{LinearKernel, MatvecVariant, MATVEC_MAX_ROWS};

/// The most activation rows a short-batch entry covers (its buckets: 16, 32, 64).
pub const TUNED_BATCH_ROWS: usize = 64;
use crate::gpu::Context;
use crate::quant::Format;
use serde_json::{json, Value};
use std::collections::BTreeMap;

/// Version of the stored table; bump it when keys or variants change meaning.
pub const TUNE_VERSION: u64 = 1;

/// The adapter a measurement belongs to: a driver update or another backend re-tunes.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AdapterKey {
    pub name: String,
    pub vendor: u32,
    pub driver: String,
    pub backend: String,
}

impl AdapterKey {
    pub fn of(ctx: &Context) -> Self {
        let info = ctx.adapter_info();
        AdapterKey { name: info.name.clone(), vendor: info.vendor, driver: format!("{} {}", info.driver, info.driver_info).trim().to_string(), backend: format!("{:?}", info.backend) }
    }
}

/// The operation a table entry tunes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TunedOp {
    /// Decode: 1..=8 activation rows, one matvec pass.
    Matvec,
    /// A short batch: 9..=64 rows, matvec passes or the matmul.
    Batch,
}

impl TunedOp {
    pub fn name(self) -> &'static str {
        match self {
            TunedOp::Matvec => "matvec",
            TunedOp::Batch => "batch",
        }
    }

    /// The op that covers `rows` activation rows, if any is tuned.
    pub fn for_rows(rows: usize) -> Option<Self> {
        match rows {
            1..=MATVEC_MAX_ROWS => Some(TunedOp::Matvec),
            r if r <= TUNED_BATCH_ROWS && r > MATVEC_MAX_ROWS => Some(TunedOp::Batch),
            _ => None,
        }
    }
}

/// What a table entry chose.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TunedKernel {
    /// A matvec variant (several passes above 8 rows).
    Matvec(MatvecVariant),
    /// The tiled matmul (short batches only).
    Matmul,
}

impl TunedKernel {
    /// `matmul`, or the variant's name (`lane/wg128`); parsed back by [`TunedKernel::from_name`].
    pub fn name(self) -> String {
        match self {
            TunedKernel::Matvec(v) => v.name(),
            TunedKernel::Matmul => "matmul".into(),
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "matmul" => Some(TunedKernel::Matmul),
            _ => MatvecVariant::from_name(name).map(TunedKernel::Matvec),
        }
    }

    pub fn linear(self) -> LinearKernel {
        match self {
            TunedKernel::Matvec(v) => LinearKernel::MatvecVariant(v),
            TunedKernel::Matmul => LinearKernel::Matmul,
        }
    }

    /// Whether an entry for `op` on `format` weights may hold this choice: decode entries are
    /// matvec variants that take the format; batch entries the matmul or a matvec variant that
    /// runs passes (not the integer-dot one, which takes one pass of at most 8 rows).
    pub fn fits(self, op: TunedOp, format: Format) -> bool {
        match (self, op) {
            (TunedKernel::Matmul, TunedOp::Batch) => true,
            (TunedKernel::Matmul, TunedOp::Matvec) => false,
            (TunedKernel::Matvec(v), TunedOp::Matvec) => v.kernel.handles(format),
            (TunedKernel::Matvec(v), TunedOp::Batch) => v.kernel.handles(format) && !v.kernel.quantizes_activations(),
        }
    }
}

/// A shape rounded up to powers of two, so nearby shapes share a measurement.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShapeBucket {
    pub rows: u32,
    pub n: u32,
    pub k: u32,
}

impl ShapeBucket {
    pub fn of(rows: usize, n: usize, k: usize) -> Self {
        let up = |v: usize| u32::try_from(v.max(1).next_power_of_two()).unwrap_or(u32::MAX);
        ShapeBucket { rows: up(rows), n: up(n), k: up(k) }
    }
}

/// What one measurement is about.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TuneKey {
    pub adapter: AdapterKey,
    pub op: TunedOp,
    pub format: Format,
    pub bucket: ShapeBucket,
}

/// A stored table that cannot be used.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    /// The text is not JSON.
    #[error("tune table is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// Written by another version of qgpu.
    #[error("tune table has version {found:?}, this qgpu reads version {TUNE_VERSION}")]
    Version { found: Option<u64> },
    /// An entry lacks a field, or names a format or variant this qgpu does not know.
    #[error("tune table entry {index}: bad or missing `{field}`")]
    Entry { index: usize, field: &'static str },
}

/// Fastest kernel per [`TuneKey`].
#[derive(Clone, Debug, Default, PartialEq)]
pub struct TuneTable {
    entries: BTreeMap<TuneKey, TunedKernel>,
}

impl TuneTable {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
    pub fn len(&self) -> usize {
        self.entries.len()
    }
    pub fn insert(&mut self, key: TuneKey, kernel: TunedKernel) {
        self.entries.insert(key, kernel);
    }
    pub fn get(&self, key: &TuneKey) -> Option<TunedKernel> {
        self.entries.get(key).copied()
    }
    /// Entries of `other` replace this table's for the same key.
    pub fn merge(&mut self, other: TuneTable) {
        self.entries.extend(other.entries);
    }

    /// The tuned kernel for `rows` activation rows of an `n × k` `format` matrix on `ctx`'s
    /// adapter, if one was measured and the device can still run it.
    pub fn choose(&self, ctx: &Context, format: Format, rows: usize, n: usize, k: usize) -> Option<LinearKernel> {
        let op = TunedOp::for_rows(rows)?;
        let key = TuneKey { adapter: AdapterKey::of(ctx), op, format, bucket: ShapeBucket::of(rows, n, k) };
        let usable = |t: &TunedKernel| {
            t.fits(op, format)
                && match t {
                    // A bucket spans several K: the step must divide this one.
                    TunedKernel::Matvec(v) => v.supported(ctx) && v.handles(format, k),
                    TunedKernel::Matmul => true,
                }
        };
        self.get(&key).filter(usable).map(TunedKernel::linear)
    }

    pub fn to_json(&self) -> Value {
        let entries: Vec<Value> = self
            .entries
            .iter()
            .map(|(key, kernel)| {
                json!({
                    "adapter": key.adapter.name, "vendor": key.adapter.vendor, "driver": key.adapter.driver, "backend": key.adapter.backend,
                    "op": key.op.name(), "format": key.format.name(),
                    "rows": key.bucket.rows, "n": key.bucket.n, "k": key.bucket.k,
                    "variant": kernel.name(),
                })
            })
            .collect();
        json!({ "version": TUNE_VERSION, "entries": entries })
    }

    /// Parses a stored table, rejecting it whole if any part is wrong.
    pub fn from_json(text: &str) -> Result<Self, TuneError> {
        let value: Value = serde_json::from_str(text)?;
        let version = value.get("version").and_then(Value::as_u64);
        if version != Some(TUNE_VERSION) {
            return Err(TuneError::Version { found: version });
        }
        let entries = value.get("entries").and_then(Value::as_array).ok_or(TuneError::Entry { index: 0, field: "entries" })?;
        let mut table = TuneTable::default();
        for (index, e) in entries.iter().enumerate() {
            let bad = |field| TuneError::Entry { index, field };
            let text = |field| e.get(field).and_then(Value::as_str).map(str::to_string).ok_or(bad(field));
            let number = |field| e.get(field).and_then(Value::as_u64).and_then(|v| u32::try_from(v).ok()).ok_or(bad(field));
            let adapter = AdapterKey { name: text("adapter")?, vendor: number("vendor")?, driver: text("driver")?, backend: text("backend")? };
            let op = match text("op")?.as_str() {
                "matvec" => TunedOp::Matvec,
                "batch" => TunedOp::Batch,
                _ => return Err(bad("op")),
            };
            let format = text("format")?.parse::<Format>().map_err(|_| bad("format"))?;
            let bucket = ShapeBucket { rows: number("rows")?, n: number("n")?, k: number("k")? };
            let kernel = TunedKernel::from_name(&text("variant")?).filter(|t| t.fits(op, format)).ok_or(bad("variant"))?;
            table.insert(TuneKey { adapter, op, format, bucket }, kernel);
        }
        Ok(table)
    }
}
