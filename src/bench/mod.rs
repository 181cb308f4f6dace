//! Kernel benchmarks shared by `qgpu bench`, `benches/`, `qgpu tune` and the browser page:
//! every format × shape × rows, timed honestly (timestamps, else wall-clock), reported as
//! time, GB/s, GFLOP/s and fractions of the adapter's copy bandwidth and FMA throughput
//! measured by qgpu's probes in the same run; and `qgpu bench --model`, a whole decoder's
//! prompt and generation speed at depths, as llama.cpp's `llama-bench` measures it.

pub mod attention;
pub mod compare;
pub mod model;
pub mod model_report;
pub mod probes;
pub mod report;
pub mod suite;
pub mod svg;
pub mod timing;
pub mod tune;

pub use compare::{compare, CompareError, CompareRow, Comparison};
pub use model::{run_model_bench, ModelBench, ModelBenchError, ModelBenchOptions, ModelInfo, TestKind, TestResult};
pub use model_report::{compare_models, compare_table, is_model_report, ModelCompareRow, ModelComparison};
pub use suite::{run_suite, Case, SuiteOptions, SuiteResult, MODEL_ROWS, MODEL_SHAPES};
pub use timing::{Clock, Stopwatch, Timing};

/// A weight shape: `n` outputs of `k` inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shape {
    pub n: usize,
    pub k: usize,
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.n, self.k)
    }
}

impl std::str::FromStr for Shape {
    type Err = String;
    /// `NxK`, e.g. `4096x4096`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (n, k) = s.split_once(['x', 'X']).ok_or_else(|| format!("shape `{s}` is not NxK"))?;
        let parse = |v: &str| v.trim().parse::<usize>().map_err(|e| format!("shape `{s}`: {e}"));
        let shape = Shape { n: parse(n)?, k: parse(k)? };
        if shape.n == 0 || shape.k == 0 {
            return Err(format!("shape `{s}` has a zero dimension"));
        }
        Ok(shape)
    }
}
