//! The batching engine behind `qgpu serve`. One thread owns the GPU model; every admitted
//! request gets a KV-cache slot of its own. Each turn of the loop:
//! 1. admits queued requests into free slots, reusing the longest cached prefix;
//! 2. drops sequences whose client went away;
//! 3. prefills one piece of one waiting prompt (small while others decode, so their streams
//!    stall for one piece, not a whole prompt);
//! 4. advances every decoding sequence by one token in a single pass over the weights
//!    ([`Llama::decode_batch`]), each with its own sampler.

use super::log::{RequestLog, Logger};
use crate::gpu::{Context, DeviceLoss, GpuError};
use crate::model::generate::StopReason;
use crate::model::llama::Llama;
use crate::model::sampler::{apply_frequency_presence_penalties, Sampler, SamplerConfig, StopChecker, StopStatus};
use crate::model::tokenizer::{TokenStream, Tokenizer};
use crate::Error;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::mpsc::UnboundedSender;

/// One generation request, tokenized and validated.
pub struct Job {
    pub id: String,
    pub prompt: Vec<u32>,
    pub max_tokens: usize,
    pub sampler: SamplerConfig,
    pub frequency_penalty: f32,
    pub presence_penalty: f32,
    pub stop: Vec<String>,
    /// Where the engine sends the text and the end; dropping the receiver cancels the job.
    pub events: UnboundedSender<Event>,
    pub received: Instant,
}

/// What the engine tells a request's handler.
#[derive(Debug)]
pub enum Event {
    /// Text generated since the last event.
    Text(String),
    /// The end, with the token counts; nothing follows.
    Done(Usage),
    /// The request failed; nothing follows.
    Failed(Failure),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Usage {
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV entries were reused from an earlier request in the same slot.
    pub cached_tokens: usize,
    pub completion_tokens: usize,
    pub finish: StopReason,
}

/// Why a request got no (complete) answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Failure {
    /// The GPU device was lost; the server cannot answer any more.
    DeviceLost(String),
    /// The server is shutting down.
    ShuttingDown,
    /// The model failed on this request.
    Model(String),
}

/// State the HTTP side reads without asking the engine thread.
#[derive(Debug, Default)]
pub struct EngineState {
    /// The context's device: once it is lost (found by a pass, or reported by the driver while
    /// idle), every request is a 503 and /health fails.
    pub device: DeviceLoss,
    /// Set on SIGINT/SIGTERM: no new requests, running ones get `grace` to finish.
    pub shutting_down: AtomicBool,
    /// Sequences holding a slot.
    pub active: AtomicUsize,
    pub slots: AtomicUsize,
    /// Jobs submitted and not yet ended: running or waiting for a slot.
    pub outstanding: AtomicUsize,
}

/// Counts a job as outstanding until it is dropped, however it ends.
struct Ticket(Arc<EngineState>);

impl Drop for Ticket {
    fn drop(&mut self) {
        self.0.outstanding.fetch_sub(1, Ordering::Relaxed);
    }
}

/// The HTTP side's end of the engine.
#[derive(Clone)]
pub struct EngineHandle {
    queue: SyncSender<(Job, Ticket)>,
    /// Jobs outstanding at most: every slot and the queue.
    capacity: usize,
    pub state: Arc<EngineState>,
}

/// Why a job was not queued.
#[derive(Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The queue is full; try again later.
    Busy,
    /// The engine has stopped (device lost, shutting down).
    Unavailable,
}

impl EngineHandle {
    pub fn submit(&self, job: Job) -> Result<(), SubmitError> {
        if self.state.device.reason().is_some() || self.state.shutting_down.load(Ordering::Relaxed) {
            return Err(SubmitError::Unavailable);
        }
        // Counted here, not by the channel: jobs wait in the channel while the engine runs a
        // pass even when slots are free, and those do not fill the queue.
        let ticket = Ticket(self.state.clone());
        if self.state.outstanding.fetch_add(1, Ordering::Relaxed) >= self.capacity {
            return Err(SubmitError::Busy);
        }
        self.queue.try_send((job, ticket)).map_err(|e| match e {
            TrySendError::Full(_) => SubmitError::Busy,
            TrySendError::Disconnected(_) => SubmitError::Unavailable,
        })
    }
}

/// How the engine runs.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Requests waiting for a slot at most (beside one running per slot); past it,
    /// submissions fail with `Busy`.
    pub queue: usize,
    /// Prompt tokens prefilled per turn while other sequences are decoding.
    pub prefill_step: usize,
    /// How long running sequences may go on after a shutdown signal.
    pub grace: Duration,
}

/// A slot's KV cache contents, kept after its request ends for the next one to reuse.
#[derive(Default)]
struct Slot {
    /// Tokens in the slot's KV cache, in order.
    tokens: Vec<u32>,
    busy: bool,
    /// Turn of the last admission, to pick the least recently used of equal slots.
    used: u64,
}

/// A request holding a slot.
struct Sequence {
    job: Job,
    _ticket: Ticket,
    slot: usize,
    /// Prompt tokens in the cache so far.
    prefilled: usize,
    cached: usize,
    /// The last sampled token, not yet in the cache.
    pending: Option<u32>,
    sampler: Sampler,
    stream: TokenStream,
    stops: StopChecker,
    generated: Vec<u32>,
    /// Prompt and generated tokens, for the repetition penalty.
    history: Vec<u32>,
    first_token: Option<Instant>,
}

/// Starts the engine thread; it owns `model` and runs until every handle is dropped (or a
/// shutdown's grace ends) and nothing is left to do.
pub fn start(ctx: Arc<Context>, model: Llama, tokenizer: Arc<Tokenizer>, options: EngineOptions, logger: Logger) -> (EngineHandle, std::thread::JoinHandle<()>) {
    let capacity = model.slots() + options.queue;
    let (queue, jobs) = std::sync::mpsc::sync_channel(capacity);
    let state = Arc::new(EngineState { device: ctx.device_loss(), ..Default::default() });
    state.slots.store(model.slots(), Ordering::Relaxed);
    let engine = Engine { slots: (0..model.slots()).map(|_| Slot::default()).collect(), ctx, model, tokenizer, options, logger, state: state.clone(), running: Vec::new(), turn: 0 };
    let thread = std::thread::Builder::new().name("qgpu-engine".into()).spawn(move || engine.run(jobs)).expect("spawning the engine thread");
    (EngineHandle { queue, capacity, state }, thread)
}

struct Engine {
    ctx: Arc<Context>,
    model: Llama,
    tokenizer: Arc<Tokenizer>,
    options: EngineOptions,
    logger: Logger,
    state: Arc<EngineState>,
    slots: Vec<Slot>,
    running: Vec<Sequence>,
    turn: u64,
}

impl Engine {
    fn run(mut self, jobs: Receiver<(Job, Ticket)>) {
        let mut closed = false;
        let mut shutdown_at: Option<Instant> = None;
        loop {
            self.turn += 1;
            // 1. Admit.
            while !closed && self.slots.iter().any(|s| !s.busy) {
                let job = if self.running.is_empty() {
                    match jobs.recv_timeout(Duration::from_millis(100)) {
                        Ok(job) => job,
                        Err(RecvTimeoutError::Timeout) => break,
                        Err(RecvTimeoutError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                } else {
                    match jobs.try_recv() {
                        Ok(job) => job,
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Disconnected) => {
                            closed = true;
                            break;
                        }
                    }
                };
                self.admit(job.0, job.1);
            }
            if self.state.shutting_down.load(Ordering::Relaxed) {
                // Queued requests are refused; running ones get the grace period.
                while let Ok((job, _)) = jobs.try_recv() {
                    let _ = job.events.send(Event::Failed(Failure::ShuttingDown));
                }
                let at = *shutdown_at.get_or_insert_with(Instant::now);
                if at.elapsed() >= self.options.grace {
                    for i in (0..self.running.len()).rev() {
                        self.fail(i, Failure::ShuttingDown);
                    }
                }
            }
            if self.running.is_empty() {
                if closed || self.state.shutting_down.load(Ordering::Relaxed) {
                    return;
                }
                continue;
            }
            // 2. Drop sequences nobody listens to.
            for i in (0..self.running.len()).rev() {
                if self.running[i].job.events.is_closed() {
                    self.finish(i, StopReason::Cancelled);
                }
            }
            // 3. One prefill piece, 4. one batched decode step.
            if let Err(e) = self.prefill_piece().and_then(|()| self.decode_step()) {
                self.gpu_failed(e);
            }
        }
    }

    /// Puts `job` into the free slot whose cache shares the longest prefix with its prompt.
    fn admit(&mut self, job: Job, ticket: Ticket) {
        if let Some(reason) = self.state.device.reason() {
            let _ = job.events.send(Event::Failed(Failure::DeviceLost(reason)));
            return;
        }
        let common = |s: &Slot| s.tokens.iter().zip(&job.prompt).take_while(|(a, b)| a == b).count();
        let slot = (0..self.slots.len()).filter(|&i| !self.slots[i].busy).max_by_key(|&i| (common(&self.slots[i]), std::cmp::Reverse(self.slots[i].used))).expect("a free slot");
        // At least the last prompt token runs again: its logits start the answer.
        let mut keep = common(&self.slots[slot]).min(job.prompt.len().saturating_sub(1));
        self.model.select(slot).expect("slot in range");
        if keep == 0 || self.model.rewind(keep).is_err() {
            self.model.reset();
            keep = 0;
        }
        let s = &mut self.slots[slot];
        s.tokens.truncate(keep);
        s.busy = true;
        s.used = self.turn;
        self.state.active.fetch_add(1, Ordering::Relaxed);
        self.running.push(Sequence {
            slot,
            prefilled: keep,
            cached: keep,
            pending: None,
            sampler: Sampler::new(job.sampler),
            stream: TokenStream::new(),
            stops: StopChecker::new(job.stop.iter().cloned()),
            generated: Vec::new(),
            history: job.prompt.clone(),
            first_token: None,
            job,
            _ticket: ticket,
        });
    }

    /// Prefills the next piece of the oldest prompt still waiting; its last piece yields the
    /// first token.
    fn prefill_piece(&mut self) -> Result<(), Error> {
        let waiting = (0..self.running.len()).filter(|&i| self.running[i].prefilled < self.running[i].job.prompt.len());
        let Some(i) = waiting.min_by_key(|&i| self.running[i].job.received) else { return Ok(()) };
        let decoding = self.running.iter().any(|s| s.pending.is_some());
        let step = if decoding { self.options.prefill_step } else { self.model.chunk() }.max(1);
        let seq = &self.running[i];
        let end = (seq.prefilled + step).min(seq.job.prompt.len());
        let piece = seq.job.prompt[seq.prefilled..end].to_vec();
        self.model.select(seq.slot)?;
        let logits = pollster::block_on(self.model.forward(&self.ctx, &piece, crate::model::llama::Logits::Last))?;
        let seq = &mut self.running[i];
        self.slots[seq.slot].tokens.extend_from_slice(&piece);
        seq.prefilled = end;
        if end == seq.job.prompt.len() {
            self.take_token(i, logits);
        }
        Ok(())
    }

    /// Feeds every decoding sequence's pending token in one pass and samples the next.
    fn decode_step(&mut self) -> Result<(), Error> {
        let mut batch: Vec<(usize, u32)> = self.running.iter().filter_map(|s| s.pending.map(|t| (s.slot, t))).collect();
        // In slot order: the model plans each distinct batch once.
        batch.sort_unstable_by_key(|&(slot, _)| slot);
        if batch.is_empty() {
            return Ok(());
        }
        let rows = pollster::block_on(self.model.decode_batch(&self.ctx, &batch))?;
        for ((slot, token), logits) in batch.into_iter().zip(rows) {
            self.slots[slot].tokens.push(token);
            let i = self.running.iter().position(|s| s.slot == slot).expect("batched sequences are running");
            self.running[i].pending = None;
            self.take_token(i, logits);
        }
        Ok(())
    }

    /// Samples sequence `i`'s next token from `logits`, streams its text, and either ends the
    /// sequence or leaves the token pending for the next decode step.
    fn take_token(&mut self, i: usize, mut logits: Vec<f32>) {
        let seq = &mut self.running[i];
        apply_frequency_presence_penalties(&mut logits, &seq.generated, seq.job.frequency_penalty, seq.job.presence_penalty);
        let next = match seq.sampler.sample(&logits, &seq.history) {
            Ok(t) => t,
            Err(e) => return self.fail(i, Failure::Model(e.to_string())),
        };
        seq.first_token.get_or_insert_with(Instant::now);
        if self.tokenizer.is_end_of_generation(next) {
            return self.finish(i, StopReason::EndOfText);
        }
        seq.generated.push(next);
        seq.history.push(next);
        let piece = match seq.stream.push(&self.tokenizer, next) {
            Ok(p) => p,
            Err(e) => return self.fail(i, Failure::Model(e.to_string())),
        };
        let (piece, stopped) = match seq.stops.push(&piece) {
            StopStatus::Continue(p) => (p, false),
            StopStatus::Stopped(p) => (p, true),
        };
        if !piece.is_empty() && seq.job.events.send(Event::Text(piece)).is_err() {
            return self.finish(i, StopReason::Cancelled);
        }
        if stopped {
            return self.finish(i, StopReason::StopString);
        }
        if seq.generated.len() >= seq.job.max_tokens {
            return self.finish(i, StopReason::MaxTokens);
        }
        if self.model.position_of(seq.slot) >= self.model.context() {
            return self.finish(i, StopReason::ContextFull);
        }
        seq.pending = Some(next);
    }

    /// Ends sequence `i`: flushes held-back text, reports usage, logs, frees the slot.
    fn finish(&mut self, i: usize, reason: StopReason) {
        let mut seq = self.running.swap_remove(i);
        if !matches!(reason, StopReason::StopString | StopReason::Cancelled) {
            let tail = match seq.stops.push(&seq.stream.finish()) {
                StopStatus::Continue(p) => p + &seq.stops.finish(),
                StopStatus::Stopped(p) => p,
            };
            if !tail.is_empty() {
                let _ = seq.job.events.send(Event::Text(tail));
            }
        }
        let usage = Usage { prompt_tokens: seq.job.prompt.len(), cached_tokens: seq.cached, completion_tokens: seq.generated.len(), finish: reason };
        let _ = seq.job.events.send(Event::Done(usage));
        self.log(&seq, &usage, super::api::finish_reason(usage.finish));
        self.release(seq.slot);
    }

    /// Ends sequence `i` with an error. Its slot's cache is forgotten: a failed pass may
    /// have left it half written.
    fn fail(&mut self, i: usize, failure: Failure) {
        let seq = self.running.swap_remove(i);
        let _ = seq.job.events.send(Event::Failed(failure.clone()));
        let usage = Usage { prompt_tokens: seq.job.prompt.len(), cached_tokens: seq.cached, completion_tokens: seq.generated.len(), finish: StopReason::Cancelled };
        // Logged as an error, not as the cancellation the usage carries.
        self.log(&seq, &usage, "error");
        self.slots[seq.slot].tokens.clear();
        self.release(seq.slot);
    }

    fn release(&mut self, slot: usize) {
        self.slots[slot].busy = false;
        self.state.active.fetch_sub(1, Ordering::Relaxed);
    }

    /// A forward pass failed: a lost device ends the server's usefulness, anything else only
    /// the sequences that were running.
    fn gpu_failed(&mut self, e: Error) {
        let failure = match &e {
            // The context has recorded the loss already: later requests see it in `state.device`.
            Error::Gpu(GpuError::DeviceLost { reason }) => Failure::DeviceLost(reason.clone()),
            e => Failure::Model(e.to_string()),
        };
        for i in (0..self.running.len()).rev() {
            self.fail(i, failure.clone());
        }
    }

    fn log(&self, seq: &Sequence, usage: &Usage, finish: &'static str) {
        let now = Instant::now();
        let first = seq.first_token.unwrap_or(now);
        let decode = now.duration_since(first).as_secs_f64();
        self.logger.request(&RequestLog {
            id: &seq.job.id,
            prompt_tokens: usage.prompt_tokens,
            cached_tokens: usage.cached_tokens,
            generated_tokens: usage.completion_tokens,
            ttft_ms: seq.first_token.map(|t| t.duration_since(seq.job.received).as_secs_f64() * 1e3),
            tokens_per_second: if usage.completion_tokens > 1 && decode > 0.0 { Some((usage.completion_tokens - 1) as f64 / decode) } else { None },
            finish,
        });
    }
}
