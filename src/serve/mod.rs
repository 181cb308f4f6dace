//! `qgpu serve`: an OpenAI-compatible HTTP server (chat and text completions, streamed or
//! not) over one GPU model whose slots decode every client's sequence together
//! ([`engine`]). Native only.

pub mod api;
pub mod embed;
pub mod engine;
mod http;
pub mod log;

use crate::gpu::Context;
use crate::model::bert::Embedder;
use crate::model::llama::Llama;
use crate::model::tokenizer::Tokenizer;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// How the server runs.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub host: String,
    pub port: u16,
    /// Requests must carry `Authorization: Bearer KEY` (except /health).
    pub api_key: Option<String>,
    /// The name `/v1/models` lists and answers carry.
    pub model_id: String,
    pub queue: usize,
    pub prefill_step: usize,
    /// `max_tokens` at most (default: the context).
    pub max_tokens: Option<usize>,
    pub body_bytes: usize,
    pub log: log::LogFormat,
    /// How long running streams may go on after SIGINT/SIGTERM.
    pub grace: Duration,
}

/// Why the server could not run.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The address could not be bound (in use, no permission, not an address).
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    /// The runtime or the listener failed.
    #[error("server I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// What a server serves. Built once and moved once, so its size does not matter.
#[allow(clippy::large_enum_variant)]
pub enum Model {
    /// A language model: chat and text completions.
    Decoder(Llama, Tokenizer),
    /// A sentence encoder: embeddings.
    Encoder(Embedder),
}

/// Serves `model` until SIGINT or SIGTERM; `listening` is called with the bound address (port 0
/// picks a free one) once requests can be made. `ctx` is shared: a caller that keeps it may
/// destroy the device, and the server answers 503 from then on.
pub fn serve(ctx: Arc<Context>, model: Model, options: ServeOptions, listening: impl FnOnce(SocketAddr)) -> Result<(), ServeError> {
    let (backend, thread) = match model {
        Model::Decoder(model, tokenizer) => {
            let limits = api::Limits { context: model.context(), max_tokens: options.max_tokens.unwrap_or(model.context()).min(model.context()), vocab: model.config().vocab };
            let tokenizer = Arc::new(tokenizer);
            let engine_options = engine::EngineOptions { queue: options.queue, prefill_step: options.prefill_step, grace: options.grace };
            let (engine, thread) = engine::start(ctx, model, tokenizer.clone(), engine_options, log::Logger { format: options.log });
            (http::Backend::Decoder { engine, tokenizer, limits }, thread)
        }
        Model::Encoder(embedder) => {
            let (handle, thread) = embed::start(ctx, embedder, options.queue);
            (http::Backend::Encoder(handle), thread)
        }
    };
    let seed_base = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let logger = log::Logger { format: options.log };
    let app = Arc::new(http::App { backend, body_bytes: options.body_bytes, model_id: options.model_id.clone(), api_key: options.api_key.clone(), requests: AtomicU64::new(0), seed_base, logger });
    let state = app.state().clone();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    runtime.block_on(async move {
        let addr = format!("{}:{}", options.host, options.port);
        let listener = tokio::net::TcpListener::bind(&addr).await.map_err(|source| ServeError::Bind { addr: addr.clone(), source })?;
        listening(listener.local_addr()?);
        let shutdown = async move {
            shutdown_signal().await;
            state.shutting_down.store(true, Ordering::Relaxed);
        };
        axum::serve(listener, http::router(app)).with_graceful_shutdown(shutdown).await?;
        Ok::<(), ServeError>(())
    })?;
    // Every handler (and so every handle to the engine) is gone: the engine ends its loop.
    let _ = thread.join();
    Ok(())
}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(_) => return std::future::pending().await,
        };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
