//! `qgpu bench --compare a.json b.json`: two reports, case by case. Cases match on format,
//! op, shape and rows; the ratio is how many times faster B is than A (A's median time over
//! B's), next to both bandwidth fractions.

use serde_json::Value;

/// A report that cannot be compared.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum CompareError {
    /// Not a qgpu bench report of the version this qgpu writes.
    #[error("report {which}: schema_version {found:?}, expected {expected}")]
    Version { which: &'static str, found: Option<u64>, expected: u64 },
    /// A case lacks a field the comparison needs.
    #[error("report {which}: case {index} lacks a valid `{field}`")]
    Field { which: &'static str, index: usize, field: &'static str },
    /// A kernel report and a model report (`qgpu bench --model`).
    #[error("report A is a {a} report and report B a {b} report; compare two of a kind")]
    Kinds { a: &'static str, b: &'static str },
}

/// One case present in both reports.
#[derive(Clone, Debug, PartialEq)]
pub struct CompareRow {
    /// `format op NxK rows R`.
    pub case: String,
    pub a_seconds: f64,
    pub b_seconds: f64,
    /// A's median time over B's: above 1, B is faster.
    pub speedup: f64,
    pub a_bandwidth_fraction: f64,
    pub b_bandwidth_fraction: f64,
}

/// Rows in A's order, plus the cases found in only one report.
#[derive(Clone, Debug, PartialEq)]
pub struct Comparison {
    pub a_adapter: String,
    pub b_adapter: String,
    pub rows: Vec<CompareRow>,
    pub only_a: Vec<String>,
    pub only_b: Vec<String>,
}

struct Entry {
    case: String,
    seconds: f64,
    fraction: f64,
}

fn entries(which: &'static str, report: &Value) -> Result<Vec<Entry>, CompareError> {
    let version = report.get("schema_version").and_then(Value::as_u64);
    if version != Some(super::report::REPORT_VERSION) {
        return Err(CompareError::Version { which, found: version, expected: super::report::REPORT_VERSION });
    }
    let cases = report.get("cases").and_then(Value::as_array).ok_or(CompareError::Field { which, index: 0, field: "cases" })?;
    cases
        .iter()
        .enumerate()
        .map(|(index, c)| {
            let bad = |field| CompareError::Field { which, index, field };
            let text = |field| c.get(field).and_then(Value::as_str).ok_or(bad(field));
            let int = |field| c.get(field).and_then(Value::as_u64).ok_or(bad(field));
            let positive = |v: Option<f64>, field| v.filter(|v| *v > 0.0 && v.is_finite()).ok_or(bad(field));
            let case = format!("{} {} {}x{} rows {}", text("format")?, text("op")?, int("n")?, int("k")?, int("rows")?);
            let seconds = positive(c.pointer("/time/median_s").and_then(Value::as_f64), "time.median_s")?;
            let fraction = positive(c.get("bandwidth_fraction").and_then(Value::as_f64), "bandwidth_fraction")?;
            Ok(Entry { case, seconds, fraction })
        })
        .collect()
}

fn adapter(report: &Value) -> String {
    let name = report.pointer("/adapter/name").and_then(Value::as_str).unwrap_or("?");
    let backend = report.pointer("/adapter/backend").and_then(Value::as_str).unwrap_or("?");
    let commit = report.pointer("/qgpu/git_commit").and_then(Value::as_str).unwrap_or("?");
    format!("{name} ({backend}, qgpu {})", &commit[..commit.len().min(12)])
}

pub fn compare(a: &Value, b: &Value) -> Result<Comparison, CompareError> {
    let (ea, eb) = (entries("A", a)?, entries("B", b)?);
    let mut rows = Vec::new();
    let mut only_a = Vec::new();
    for x in &ea {
        match eb.iter().find(|y| y.case == x.case) {
            Some(y) => rows.push(CompareRow {
                case: x.case.clone(),
                a_seconds: x.seconds,
                b_seconds: y.seconds,
                speedup: x.seconds / y.seconds,
                a_bandwidth_fraction: x.fraction,
                b_bandwidth_fraction: y.fraction,
            }),
            None => only_a.push(x.case.clone()),
        }
    }
    let only_b = eb.iter().filter(|y| !ea.iter().any(|x| x.case == y.case)).map(|y| y.case.clone()).collect();
    Ok(Comparison { a_adapter: adapter(a), b_adapter: adapter(b), rows, only_a, only_b })
}

impl Comparison {
    /// The comparison as a table, with the geometric mean of the speedups.
    pub fn table(&self) -> String {
        let mut out = format!("A: {}\nB: {}\n", self.a_adapter, self.b_adapter);
        out += &format!("{:<34} {:>10} {:>10} {:>8} {:>8} {:>8}\n", "case", "A ms", "B ms", "A/B", "A copy", "B copy");
        for r in &self.rows {
            out += &format!(
                "{:<34} {:>10.3} {:>10.3} {:>7.2}x {:>7.1}% {:>7.1}%\n",
                r.case,
                r.a_seconds * 1e3,
                r.b_seconds * 1e3,
                r.speedup,
                100.0 * r.a_bandwidth_fraction,
                100.0 * r.b_bandwidth_fraction
            );
        }
        if let Some(mean) = self.geometric_mean_speedup() {
            out += &format!("geometric mean A/B over {} cases: {mean:.3}x\n", self.rows.len());
        }
        for c in &self.only_a {
            out += &format!("only in A: {c}\n");
        }
        for c in &self.only_b {
            out += &format!("only in B: {c}\n");
        }
        out
    }

    pub fn geometric_mean_speedup(&self) -> Option<f64> {
        (!self.rows.is_empty()).then(|| (self.rows.iter().map(|r| r.speedup.ln()).sum::<f64>() / self.rows.len() as f64).exp())
    }
}
