//! The encoder behind `/v1/embeddings`: one thread owns the BERT model and embeds every request
//! waiting when it looks, in one forward pass (texts of several requests share the batch).

use super::engine::{EngineState, Failure, SubmitError};
use crate::gpu::{Context, GpuError};
use crate::model::bert::{Embedder, Sentence};
use crate::Error;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use tokio::sync::oneshot;

/// Embeddings and the tokens they took.
pub type EmbedReply = Result<(Vec<Vec<f32>>, usize), Failure>;

/// One `/v1/embeddings` request.
pub struct EmbedJob {
    pub texts: Vec<String>,
    pub reply: oneshot::Sender<EmbedReply>,
}

/// The HTTP side's end of the encoder.
#[derive(Clone)]
pub struct EmbedHandle {
    queue: SyncSender<EmbedJob>,
    pub state: Arc<EngineState>,
    /// Tokens one input may hold (longer ones are truncated, as sentence-transformers does).
    pub max_tokens: usize,
}

impl EmbedHandle {
    pub fn submit(&self, job: EmbedJob) -> Result<(), SubmitError> {
        if self.state.device.reason().is_some() || self.state.shutting_down.load(Ordering::Relaxed) {
            return Err(SubmitError::Unavailable);
        }
        self.queue.try_send(job).map_err(|e| match e {
            TrySendError::Full(_) => SubmitError::Busy,
            TrySendError::Disconnected(_) => SubmitError::Unavailable,
        })
    }
}

/// Starts the encoder thread; it runs until every handle is dropped.
pub fn start(ctx: Arc<Context>, embedder: Embedder, queue: usize) -> (EmbedHandle, std::thread::JoinHandle<()>) {
    let (tx, rx) = std::sync::mpsc::sync_channel(queue.max(1));
    let state = Arc::new(EngineState { device: ctx.device_loss(), ..Default::default() });
    let max_tokens = embedder.model.config().max_sequence;
    let worker = state.clone();
    let thread = std::thread::Builder::new().name("qgpu-encoder".into()).spawn(move || run(ctx, embedder, rx, worker)).expect("spawning the encoder thread");
    (EmbedHandle { queue: tx, state, max_tokens }, thread)
}

fn run(ctx: Arc<Context>, mut embedder: Embedder, jobs: Receiver<EmbedJob>, state: Arc<EngineState>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while let Ok(job) = jobs.try_recv() {
            batch.push(job);
        }
        // Requests whose client left are skipped.
        batch.retain(|job| !job.reply.is_closed());
        if batch.is_empty() {
            continue;
        }
        if let Some(reason) = state.device.reason() {
            for job in batch {
                let _ = job.reply.send(Err(Failure::DeviceLost(reason.clone())));
            }
            continue;
        }
        state.active.store(batch.len(), Ordering::Relaxed);
        let result = embed_batch(&ctx, &mut embedder, &batch);
        state.active.store(0, Ordering::Relaxed);
        match result {
            Ok(per_job) => {
                for (job, reply) in batch.into_iter().zip(per_job) {
                    let _ = job.reply.send(reply);
                }
            }
            Err(e) => {
                let failure = match &e {
                    Error::Gpu(GpuError::DeviceLost { reason }) => Failure::DeviceLost(reason.clone()),
                    e => Failure::Model(e.to_string()),
                };
                for job in batch {
                    let _ = job.reply.send(Err(failure.clone()));
                }
            }
        }
    }
}

/// Embeds every job's texts in one forward pass; a job whose text cannot be tokenized fails
/// alone.
fn embed_batch(ctx: &Context, embedder: &mut Embedder, batch: &[EmbedJob]) -> Result<Vec<EmbedReply>, Error> {
    let mut sentences: Vec<Sentence> = Vec::new();
    let mut spans = Vec::with_capacity(batch.len());
    for job in batch {
        let texts: Vec<&str> = job.texts.iter().map(String::as_str).collect();
        match embedder.tokenize(&texts) {
            Ok(s) => {
                let tokens = s.iter().map(|s| s.ids.len()).sum::<usize>();
                spans.push(Ok((sentences.len(), s.len(), tokens)));
                sentences.extend(s);
            }
            Err(e) => spans.push(Err(Failure::Model(e.to_string()))),
        }
    }
    let embeddings = if sentences.is_empty() { Vec::new() } else { pollster::block_on(embedder.model.forward(ctx, &sentences))? };
    Ok(spans.into_iter().map(|span| span.map(|(at, n, tokens)| (embeddings[at..at + n].to_vec(), tokens))).collect())
}
