//! Choosing the next token from a row of logits, and spotting stop strings in the output.
//!
//! Pure CPU and dependency-free so it builds for wasm32 too. The random numbers come from a
//! small PCG32 generator defined here (not `rand`), so a given seed yields the same stream of
//! uniforms natively and in the browser.
//!
//! Pipeline of [`Sampler::sample`], llama.cpp's common chain (`penalties → top_k → top_p →
//! min_p → temperature → dist`; its dry, top-n-sigma, typical-p and xtc samplers are off by
//! default and qgpu has none):
//! 1. repetition penalty on the raw logits (distinct ids of the last `repetition_window` tokens);
//! 2. greedy (`temperature == 0`): argmax, ties to the lowest id, and stop here;
//! 3. top-k (a partial select, not a sort);
//! 4. top-p, then min-p, both on probabilities at temperature 1, as in llama.cpp, where they
//!    run before its temperature sampler (transformers instead warps by temperature first).
//!    So the temperature never changes *which* tokens survive, only how likely each is;
//! 5. temperature and softmax (f64, max-subtracted) over the survivors, and one draw.

use std::cmp::Ordering;

/// What can go wrong when sampling. Checked before any work, so a bad call changes no state
/// (the generator only advances on success).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplerError {
    /// `sample` was given no logits at all.
    #[error("sampler: the logits slice is empty")]
    EmptyLogits,
    /// A logit is NaN, which usually means the forward pass overflowed or read garbage.
    #[error("sampler: logit {index} is NaN")]
    NanLogit {
        /// Position of the first NaN in the logits slice (the token id).
        index: usize,
    },
    /// A logit is +∞, for which no probability distribution exists.
    #[error("sampler: logit {index} is +infinity")]
    InfiniteLogit {
        /// Position of the first +∞ in the logits slice (the token id).
        index: usize,
    },
    /// Every logit is −∞ (every token masked), so there is nothing to choose from.
    #[error("sampler: all {len} logits are -infinity")]
    AllMasked {
        /// Number of logits given.
        len: usize,
    },
    /// More logits than a `u32` token id can name.
    #[error("sampler: {len} logits do not fit u32 token ids")]
    VocabTooLarge {
        /// Number of logits given.
        len: usize,
    },
    /// A [`SamplerConfig`] field out of its allowed range.
    #[error("sampler config: {field} = {value} is invalid, expected {expected}")]
    InvalidConfig {
        /// Name of the offending field, as spelled in [`SamplerConfig`].
        field: &'static str,
        /// The value that was given.
        value: f32,
        /// The allowed range, in words.
        expected: &'static str,
    },
}

/// How [`Sampler`] picks tokens.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SamplerConfig {
    /// Softmax temperature, ≥ 0. `0.0` means greedy: argmax with ties to the lowest id, with
    /// `top_k`, `top_p` and `min_p` ignored (they cannot change an argmax) but the repetition
    /// penalty still applied when it is not 1.0, so greedy decoding can still be steered out
    /// of loops.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; `0` turns this off.
    pub top_k: usize,
    /// Nucleus sampling: keep the smallest set of most likely tokens whose probabilities (at
    /// temperature 1, after top-k) sum to at least `top_p` (never fewer than one). In (0, 1];
    /// `1.0` turns this off.
    pub top_p: f32,
    /// Drop tokens whose probability (at temperature 1) is below `min_p` times the most likely
    /// token's. In [0, 1]; `0.0` turns this off.
    pub min_p: f32,
    /// Repetition penalty as in llama.cpp / transformers: positive logits of recent tokens are
    /// divided by it, negative ones multiplied. > 0; `1.0` turns this off.
    pub repetition_penalty: f32,
    /// How many of the most recent history tokens the penalty looks at.
    pub repetition_window: usize,
    /// Seed of the random generator; equal seeds give equal token streams.
    pub seed: u64,
}

impl Default for SamplerConfig {
    /// llama.cpp's defaults (`common_params_sampling`): temperature 0.8, top-k 40, top-p 0.95,
    /// min-p 0.05, no repetition penalty (1.0) over a window of 64. The seed is qgpu's fixed
    /// 42, not llama.cpp's random one, so equal inputs give equal output (set `seed` yourself
    /// for varied output, e.g. from the clock).
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repetition_penalty: 1.0,
            repetition_window: 64,
            seed: 42,
        }
    }
}

impl SamplerConfig {
    /// Plain greedy decoding: temperature 0 and no repetition penalty.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repetition_penalty: 1.0,
            ..Self::default()
        }
    }

    /// The defaults with the given seed.
    pub fn with_seed(seed: u64) -> Self {
        Self {
            seed,
            ..Self::default()
        }
    }

    /// Checks every field is in range. [`Sampler::sample`] calls this on each call.
    pub fn validate(&self) -> Result<(), SamplerError> {
        let bad = |field, value, expected| {
            Err(SamplerError::InvalidConfig {
                field,
                value,
                expected,
            })
        };
        // Written so NaN fails every check.
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return bad("temperature", self.temperature, "a finite value >= 0");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", self.top_p, "a value in (0, 1]");
        }
        if !(self.min_p >= 0.0 && self.min_p <= 1.0) {
            return bad("min_p", self.min_p, "a value in [0, 1]");
        }
        if !(self.repetition_penalty > 0.0 && self.repetition_penalty.is_finite()) {
            return bad(
                "repetition_penalty",
                self.repetition_penalty,
                "a finite value > 0",
            );
        }
        Ok(())
    }
}

/// PCG-XSH-RR 64/32 (O'Neill 2014): tiny, fast, and bit-identical on every target.
#[derive(Debug, Clone)]
struct Pcg32 {
    state: u64,
    inc: u64,
}

impl Pcg32 {
    const MUL: u64 = 6364136223846793005;
    // Fixed stream; only the seed varies.
    const STREAM: u64 = 0xda3e_39cb_94b9_5bdb;

    fn new(seed: u64) -> Self {
        // The reference pcg32_srandom_r initialisation.
        let mut rng = Self {
            state: 0,
            inc: (Self::STREAM << 1) | 1,
        };
        rng.next_u32();
        rng.state = rng.state.wrapping_add(seed);
        rng.next_u32();
        rng
    }

    fn next_u32(&mut self) -> u32 {
        let old = self.state;
        self.state = old.wrapping_mul(Self::MUL).wrapping_add(self.inc);
        let xorshifted = (((old >> 18) ^ old) >> 27) as u32;
        let rot = (old >> 59) as u32;
        xorshifted.rotate_right(rot)
    }

    /// Uniform in [0, 1) with 53 random bits.
    fn next_f64(&mut self) -> f64 {
        let bits = ((self.next_u32() as u64) << 32) | self.next_u32() as u64;
        (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }
}

/// Most likely first; equal logits put the lower id first, so every cut is deterministic and
/// top-k=1 / tiny top-p agree with greedy.
fn by_logit_desc(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    b.1.partial_cmp(&a.1)
        .unwrap_or(Ordering::Equal)
        .then(a.0.cmp(&b.0))
}

/// Applies the llama.cpp / transformers repetition penalty in place: each distinct id among
/// the last `window` entries of `history` has its logit divided by `penalty` if positive,
/// multiplied if negative. Ids outside `logits` (e.g. special tokens of another vocab) are
/// skipped. Each id is penalised once, however often it repeats. `penalty` must be > 0 (as
/// [`SamplerConfig::validate`] requires); finite logits stay finite.
pub fn apply_repetition_penalty(logits: &mut [f32], history: &[u32], penalty: f32, window: usize) {
    if penalty == 1.0 || window == 0 {
        return;
    }
    let recent = &history[history.len().saturating_sub(window)..];
    let mut ids: Vec<u32> = recent.to_vec();
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        match logits.get_mut(id as usize) {
            // Clamped so an extreme penalty cannot turn a live token into ±inf (a masked -inf
            // stays -inf).
            Some(l) if l.is_finite() => {
                *l = if *l > 0.0 {
                    (*l / penalty).min(f32::MAX)
                } else {
                    (*l * penalty).max(f32::MIN)
                };
            }
            _ => {}
        }
    }
}

/// Applies OpenAI's frequency and presence penalties in place: each id that occurs `n > 0`
/// times in `generated` loses `n × frequency + presence` from its logit. Both are in [-2, 2]
/// in OpenAI's API; 0 turns each off. Ids outside `logits` are skipped.
pub fn apply_frequency_presence_penalties(logits: &mut [f32], generated: &[u32], frequency: f32, presence: f32) {
    if frequency == 0.0 && presence == 0.0 {
        return;
    }
    let mut ids = generated.to_vec();
    ids.sort_unstable();
    for run in ids.chunk_by(|a, b| a == b) {
        if let Some(l) = logits.get_mut(run[0] as usize) {
            if l.is_finite() {
                *l -= run.len() as f32 * frequency + presence;
            }
        }
    }
}

/// Picks tokens from logits according to a [`SamplerConfig`]; owns the random generator and
/// scratch buffers, so keep one per generation stream.
#[derive(Debug, Clone)]
pub struct Sampler {
    config: SamplerConfig,
    rng: Pcg32,
    // Reused across calls so a 49k vocab costs no allocation per token.
    work: Vec<f32>,
    cands: Vec<(u32, f32)>,
    probs: Vec<f64>,
}

impl Sampler {
    /// A sampler whose generator is seeded with `config.seed`. The config is checked on each
    /// [`sample`](Self::sample) call (or up front with [`SamplerConfig::validate`]).
    pub fn new(config: SamplerConfig) -> Self {
        Self {
            config,
            rng: Pcg32::new(config.seed),
            work: Vec::new(),
            cands: Vec::new(),
            probs: Vec::new(),
        }
    }

    /// The configuration in use.
    pub fn config(&self) -> &SamplerConfig {
        &self.config
    }

    /// Restarts the random stream from `seed`, as if newly created with it.
    pub fn reseed(&mut self, seed: u64) {
        self.config.seed = seed;
        self.rng = Pcg32::new(seed);
    }

    /// Chooses the next token id from `logits` (one per vocab entry), penalising the tokens in
    /// the tail of `history` (previously generated or prompt ids).
    ///
    /// The uniform stream is identical on every target; the exp() used for probabilities comes
    /// from the platform's libm, so a draw landing within an ulp of a bucket edge could in
    /// principle differ between native and wasm.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> Result<u32, SamplerError> {
        let cfg = self.config;
        cfg.validate()?;
        if logits.is_empty() {
            return Err(SamplerError::EmptyLogits);
        }
        // Ids are u32; on 32-bit targets (wasm) every length fits.
        if u32::try_from(logits.len() - 1).is_err() {
            return Err(SamplerError::VocabTooLarge { len: logits.len() });
        }
        // One pass over the vocab for all three checks.
        let mut any_live = false;
        for (index, &l) in logits.iter().enumerate() {
            if l.is_nan() {
                return Err(SamplerError::NanLogit { index });
            }
            if l == f32::INFINITY {
                return Err(SamplerError::InfiniteLogit { index });
            }
            any_live |= l != f32::NEG_INFINITY;
        }
        if !any_live {
            return Err(SamplerError::AllMasked { len: logits.len() });
        }

        self.work.clear();
        self.work.extend_from_slice(logits);
        apply_repetition_penalty(
            &mut self.work,
            history,
            cfg.repetition_penalty,
            cfg.repetition_window,
        );

        if cfg.temperature == 0.0 {
            return Ok(argmax(&self.work));
        }

        // Masked (-inf) tokens can never be drawn; dropping them keeps top-k honest.
        self.cands.clear();
        self.cands.extend(
            self.work
                .iter()
                .enumerate()
                .filter(|(_, &l)| l != f32::NEG_INFINITY)
                .map(|(i, &l)| (i as u32, l)),
        );

        if cfg.top_k > 0 && cfg.top_k < self.cands.len() {
            // O(n) partition instead of sorting the whole vocab.
            self.cands
                .select_nth_unstable_by(cfg.top_k - 1, by_logit_desc);
            self.cands.truncate(cfg.top_k);
        }
        let max = self
            .cands
            .iter()
            .map(|c| c.1)
            .fold(f32::NEG_INFINITY, f32::max) as f64;

        // top-p and min-p see temperature-1 probabilities (see the module doc). Both keep the
        // most likely token, so `max` stays the survivors' maximum.
        if cfg.top_p < 1.0 {
            let weight = |l: f32| (l as f64 - max).exp();
            let total: f64 = self.cands.iter().map(|c| weight(c.1)).sum();
            let kept = self.nucleus(cfg.top_p as f64 * total, weight);
            self.cands.truncate(kept);
        }
        if cfg.min_p > 0.0 {
            // p_i >= min_p * p_max  <=>  l_i - max >= ln(min_p): no softmax needed.
            let floor = max + (cfg.min_p as f64).ln();
            self.cands.retain(|c| c.1 as f64 >= floor);
        }

        let inv_t = 1.0 / cfg.temperature as f64;
        self.probs.clear();
        self.probs
            .extend(self.cands.iter().map(|c| ((c.1 as f64 - max) * inv_t).exp()));
        let kept = self.cands.len();
        let kept_mass: f64 = self.probs.iter().sum();

        let mut u = self.rng.next_f64() * kept_mass;
        for (c, p) in self.cands[..kept].iter().zip(&self.probs[..kept]) {
            if u < *p {
                return Ok(c.0);
            }
            u -= p;
        }
        // Rounding can leave u a hair above the last bucket: that bucket is the draw. (kept ≥ 1:
        // the checks above leave at least one finite candidate.)
        self.cands[..kept]
            .last()
            .map(|c| c.0)
            .ok_or(SamplerError::AllMasked { len: logits.len() })
    }
}

impl Sampler {
    /// Orders the most likely candidates first, only as far as needed for their weights to
    /// reach `target`, and returns how many that takes. Sorting grows in doubling batches from
    /// 64, because a nucleus is usually tiny next to a 49k vocab and a full sort costs
    /// milliseconds.
    fn nucleus(&mut self, target: f64, weight: impl Fn(f32) -> f64) -> usize {
        let len = self.cands.len();
        let mut sorted = 0;
        let mut batch = 64;
        let mut acc = 0.0;
        while sorted < len {
            let end = (sorted + batch).min(len);
            let rest = &mut self.cands[sorted..];
            if end < len {
                rest.select_nth_unstable_by(end - sorted - 1, by_logit_desc);
            }
            self.cands[sorted..end].sort_unstable_by(by_logit_desc);
            for (i, c) in self.cands[sorted..end].iter().enumerate() {
                acc += weight(c.1);
                if acc >= target {
                    return sorted + i + 1;
                }
            }
            sorted = end;
            batch *= 2;
        }
        len
    }
}

/// Index of the largest value, ties to the lowest index. Callers guarantee no NaN.
fn argmax(values: &[f32]) -> u32 {
    let mut best = 0;
    for (i, &v) in values.iter().enumerate().skip(1) {
        if v > values[best] {
            best = i;
        }
    }
    best as u32
}

/// What [`StopChecker::push`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopStatus {
    /// No stop string yet: stream this text (possibly empty while a partial match is held).
    Continue(String),
    /// A stop string appeared: stream this text (what preceded it), then end generation.
    Stopped(String),
}

/// Watches generated text for stop strings without ever streaming one, even when it arrives
/// split across several tokens: any tail that could still grow into a stop string is held back
/// until it either completes one or stops matching.
#[derive(Debug, Clone, Default)]
pub struct StopChecker {
    stops: Vec<String>,
    held: String,
    stopped: bool,
}

impl StopChecker {
    /// A checker for the given stop strings; empty strings are ignored (they would match at
    /// once).
    pub fn new<I, S>(stops: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self {
            stops: stops
                .into_iter()
                .map(Into::into)
                .filter(|s: &String| !s.is_empty())
                .collect(),
            held: String::new(),
            stopped: false,
        }
    }

    /// Whether a stop string has been seen.
    pub fn is_stopped(&self) -> bool {
        self.stopped
    }

    /// Adds the text of one generated token. After a stop, every call returns
    /// `Stopped("")`.
    pub fn push(&mut self, piece: &str) -> StopStatus {
        if self.stopped {
            return StopStatus::Stopped(String::new());
        }
        self.held.push_str(piece);

        // Earliest match wins: text before it is all the caller may see.
        let first = self
            .stops
            .iter()
            .filter_map(|s| self.held.find(s.as_str()))
            .min();
        if let Some(pos) = first {
            self.stopped = true;
            let mut text = std::mem::take(&mut self.held);
            text.truncate(pos);
            return StopStatus::Stopped(text);
        }

        // Hold back the longest tail that is a proper prefix of some stop string. Only the
        // last (longest stop − 1) bytes can qualify, and `held` never grows past that plus
        // one piece, so this stays cheap.
        let keep_from = self
            .held
            .char_indices()
            .map(|(i, _)| i)
            .find(|&i| {
                let tail = &self.held.as_bytes()[i..];
                self.stops.iter().any(|s| s.as_bytes().starts_with(tail))
            })
            .unwrap_or(self.held.len());
        let rest = self.held.split_off(keep_from);
        StopStatus::Continue(std::mem::replace(&mut self.held, rest))
    }

    /// Ends the stream without a stop: returns the held-back text, which turned out not to be
    /// a stop string. Returns "" after a stop.
    pub fn finish(&mut self) -> String {
        if self.stopped {
            return String::new();
        }
        std::mem::take(&mut self.held)
    }
}
