//! Honest timing: GPU timestamps around the compute pass where the device has TIMESTAMP_QUERY,
//! else the host clock around submit-and-wait. Warm-up calls first, then the median and the
//! minimum of the timed calls.

use crate::gpu::{Context, Dispatch, GpuTimer};
use crate::Error;

/// How a case was timed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Clock {
    /// GPU timestamps written at the start and end of the compute pass.
    Timestamp,
    /// Host clock around submit-and-wait of each call (includes submission and wake-up).
    WallClock,
}

impl Clock {
    pub fn name(self) -> &'static str {
        match self {
            Clock::Timestamp => "timestamp",
            Clock::WallClock => "wall-clock",
        }
    }
}

/// Median and minimum over the timed calls, in seconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Timing {
    pub median: f64,
    pub min: f64,
    pub runs: usize,
    pub clock: Clock,
}

/// Times dispatch lists with the best clock the device offers.
pub struct Stopwatch<'a> {
    ctx: &'a Context,
    gpu: Option<GpuTimer>,
}

impl<'a> Stopwatch<'a> {
    /// Timestamps where the device has them, unless `wall_clock` forces the host clock.
    pub fn new(ctx: &'a Context, wall_clock: bool) -> Self {
        Self { ctx, gpu: if wall_clock { None } else { ctx.timer() } }
    }

    pub fn clock(&self) -> Clock {
        if self.gpu.is_some() {
            Clock::Timestamp
        } else {
            Clock::WallClock
        }
    }

    /// Runs the lists `warmup` times, then times `repeats` calls (at least one), cycling
    /// through the lists so that rotated weights are read from memory, not cache.
    pub async fn time(&self, calls: &[Vec<&Dispatch>], warmup: usize, repeats: usize) -> Result<Timing, Error> {
        let ctx = self.ctx;
        for i in 0..warmup {
            ctx.run(&calls[i % calls.len()]).await?;
            ctx.finish().await?;
        }
        let mut times = Vec::with_capacity(repeats.max(1));
        for i in 0..repeats.max(1) {
            let call = &calls[(warmup + i) % calls.len()];
            let seconds = match &self.gpu {
                Some(timer) => ctx.run_timed(timer, call).await?,
                None => {
                    let start = web_time::Instant::now();
                    ctx.run(call).await?;
                    ctx.finish().await?;
                    start.elapsed().as_secs_f64()
                }
            };
            times.push(seconds);
        }
        Ok(summarize(&mut times, self.clock()))
    }
}

/// Median (upper middle for an even count) and minimum of `times`.
pub fn summarize(times: &mut [f64], clock: Clock) -> Timing {
    times.sort_by(f64::total_cmp);
    Timing { median: times[times.len() / 2], min: times[0], runs: times.len(), clock }
}
