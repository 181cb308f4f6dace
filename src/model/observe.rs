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
