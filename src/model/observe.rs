//! A hook for calibration: the activations that enter each linear layer of a forward pass.
//!
//! `qgpu quantize --calibrate` runs the full-precision model over a text with an observer attached
//! and uses the per-input-channel statistics to choose quantization scales. Models read the
//! activations back only when an observer is attached, so normal inference pays nothing.

/// Receives the inputs of linear layers during a forward pass.
pub trait LinearInputObserver {
    /// `weight` is the GGUF name of the weight these rows are multiplied by (e.g.
    /// `blk.0.attn_q.weight`); `x` holds `x.len() / cols` rows of `cols` values, row-major.
    fn observe(&mut self, weight: &str, cols: usize, x: &[f32]);
}

/// Collects the mean square of every input channel of every observed linear layer: the
/// importance `E[x_j²]` that calibrated quantization weighs errors by.
#[derive(Clone, Debug, Default)]
pub struct SquaredInputMeans {
    /// Per weight: the sum of x_j² per channel, and the rows seen.
    sums: std::collections::HashMap<String, (Vec<f64>, usize)>,
}

impl SquaredInputMeans {
    pub fn new() -> Self {
        Self::default()
    }

    /// Weight name → `E[x_j²]` per input channel.
    pub fn means(&self) -> std::collections::HashMap<String, Vec<f32>> {
        self.sums
            .iter()
            .map(|(name, (sum, rows))| (name.clone(), sum.iter().map(|s| (s / (*rows).max(1) as f64) as f32).collect()))
            .collect()
    }

    /// Rows observed for `weight`.
    pub fn rows(&self, weight: &str) -> usize {
        self.sums.get(weight).map_or(0, |s| s.1)
    }
}

impl LinearInputObserver for SquaredInputMeans {
    fn observe(&mut self, weight: &str, cols: usize, x: &[f32]) {
        if cols == 0 {
            return;
        }
        let entry = self.sums.entry(weight.to_owned()).or_insert_with(|| (vec![0.0; cols], 0));
        if entry.0.len() != cols {
            return; // a different width under the same name: not a linear input we can use
        }
        for row in x.chunks_exact(cols) {
            for (s, &v) in entry.0.iter_mut().zip(row) {
                *s += v as f64 * v as f64;
            }
            entry.1 += 1;
        }
    }
}
