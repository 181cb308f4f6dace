//! The observed forward pass: the same dispatches as [`Llama::forward`], run in segments so
//! every linear layer's input can be read back and handed to a [`LinearInputObserver`]
//! (calibration for `qgpu quantize --calibrate`). Slow (one read-back per tap), so only used
//! there; the normal forward pays nothing.

use super::{Llama, Logits};
use crate::gpu::{Context, Dispatch};
use crate::model::LinearInputObserver;
use crate::Error;

/// Which activation buffer holds a linear layer's input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum TapInput {
    /// The RMS-normed residual (input of Q/K/V, gate/up and the head).
    Normed,
    /// The attention output (input of the output projection).
    Attention,
    /// SiLU(gate)·up (input of the down projection).
    Gated,
}

/// After dispatch `after`, `input` holds the input rows of the linear layers `weights`.
#[derive(Clone, Debug)]
pub(super) struct Tap {
    pub after: usize,
    pub input: TapInput,
    pub weights: Vec<String>,
}

impl Llama {
    /// Appends `tokens` to the sequence like [`Llama::forward`] with [`Logits::All`], and hands
    /// the input of every linear layer (every position) to `observer`, under the GGUF name of
    /// the layer's weight. The head's input is reported under `output.weight`, or
    /// `token_embd.weight` when the head is tied to the embedding.
    pub async fn forward_observed(&mut self, ctx: &Context, tokens: &[u32], observer: &mut dyn LinearInputObserver) -> Result<(), Error> {
        self.check_tokens(self.slot, tokens)?;
        self.ensure_all_logits(ctx)?;
        for chunk in tokens.chunks(self.options.chunk) {
            let t = chunk.len();
            let layout = [(self.slot, t)];
            if !self.observed_plans.contains_key(&(self.slot, t)) {
                let mut taps = Vec::new();
                let plan = self.plan(ctx, &layout, Logits::All, Some(&mut taps)).await?;
                self.observed_plans.insert((self.slot, t), (plan, taps));
            }
            self.acts.ids.write(ctx, chunk)?;
            self.write_positions(ctx, &layout);
            let (plan, taps) = &self.observed_plans[&(self.slot, t)];
            let mut start = 0;
            for tap in taps {
                let refs: Vec<&Dispatch> = plan[start..tap.after].iter().collect();
                ctx.run(&refs).await?;
                start = tap.after;
                let source = match tap.input {
                    TapInput::Normed => &self.acts.xn,
                    TapInput::Attention => &self.acts.attn,
                    TapInput::Gated => &self.acts.gate_up_parts[0],
                };
                let x = source.read_rows(ctx, t).await?;
                for weight in &tap.weights {
                    observer.observe(weight, source.cols(), &x);
                }
            }
            let refs: Vec<&Dispatch> = plan[start..].iter().collect();
            ctx.run(&refs).await?;
            self.advance(&layout);
        }
        Ok(())
    }
}
