//! The HTTP side: routes, the API key, request bodies into engine jobs, and answers (whole or
//! as server-sent events). Every failure is an OpenAI-style JSON error with its status.

use super::api::{self, ApiError, Endpoint, Header, Limits, Prompt};
use super::embed::{EmbedHandle, EmbedJob};
use super::engine::{EngineHandle, EngineState, Event, Failure, Job, SubmitError};
use crate::model::tokenizer::{SpecialText, Tokenizer};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;
use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};

/// The model behind the routes: a decoder answers completions, an encoder embeddings.
pub enum Backend {
    Decoder { engine: EngineHandle, tokenizer: Arc<Tokenizer>, limits: Limits },
    Encoder(EmbedHandle),
}

/// What every handler shares.
pub struct App {
    pub backend: Backend,
    /// Request body bytes at most.
    pub body_bytes: usize,
    pub model_id: String,
    pub api_key: Option<String>,
    pub requests: AtomicU64,
    /// Seeds requests without a `seed` differently from run to run.
    pub seed_base: u64,
    /// The per-request log line (the decoder's engine writes its own).
    pub logger: super::log::Logger,
}

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/embeddings", post(embeddings))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(app.clone(), authorize))
        .with_state(app)
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (status, Json(self.body())).into_response();
        if self.code == Some("queue_full") {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// With `--api-key`, every route but /health wants `Authorization: Bearer KEY`.
async fn authorize(State(app): State<Arc<App>>, request: Request, next: Next) -> Response {
    if let Some(key) = &app.api_key {
        let given = request.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        if request.uri().path() != "/health" && !given.is_some_and(|g| same_bytes(g.as_bytes(), key.as_bytes())) {
            return ApiError { status: 401, message: "missing or wrong API key (Authorization: Bearer KEY)".into(), kind: "authentication_error", param: None, code: Some("invalid_api_key") }.into_response();
        }
    }
    next.run(request).await
}

/// Compares in time independent of where the bytes differ.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl App {
    pub fn state(&self) -> &Arc<EngineState> {
        match &self.backend {
            Backend::Decoder { engine, .. } => &engine.state,
            Backend::Encoder(embedder) => &embedder.state,
        }
    }

    /// Reads a request body up to the limit.
    async fn body(&self, body: Body) -> Result<axum::body::Bytes, ApiError> {
        let limit = self.body_bytes;
        axum::body::to_bytes(body, limit).await.map_err(|_| ApiError { status: 413, code: Some("body_too_large"), ..ApiError::bad_request(format!("the request body is over this server's limit of {limit} bytes")) })
    }
}

async fn health(State(app): State<Arc<App>>) -> Response {
    let state = app.state();
    let (active, slots) = (state.active.load(Ordering::Relaxed), state.slots.load(Ordering::Relaxed));
    if let Some(reason) = state.device.reason() {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "error", "reason": format!("the GPU device was lost: {reason}") }))).into_response();
    }
    if state.shutting_down.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({ "status": "shutting down" }))).into_response();
    }
    Json(json!({ "status": "ok", "slots_idle": slots - active.min(slots), "slots_processing": active })).into_response()
}

async fn models(State(app): State<Arc<App>>) -> Response {
    Json(json!({ "object": "list", "data": [{ "id": app.model_id, "object": "model", "created": unix_seconds(), "owned_by": "qgpu" }] })).into_response()
}

async fn not_found(request: Request) -> ApiError {
    ApiError { status: 404, message: format!("no route for {} {}", request.method(), request.uri().path()), kind: "invalid_request_error", param: None, code: Some("not_found") }
}

async fn embeddings(State(app): State<Arc<App>>, body: Body) -> Response {
    embed(app, body).await.unwrap_or_else(IntoResponse::into_response)
}

async fn embed(app: Arc<App>, body: Body) -> Result<Response, ApiError> {
    let Backend::Encoder(embedder) = &app.backend else {
        return Err(ApiError::bad_request(format!("the served model `{}` is a decoder; /v1/embeddings needs an encoder (serve a BERT model)", app.model_id)));
    };
    let object = api::parse_object(&app.body(body).await?)?;
    let request = api::embedding_request(&object)?;
    let (reply, answer) = tokio::sync::oneshot::channel();
    let count = request.texts.len();
    let received = Instant::now();
    let id = format!("embd-{}", app.requests.fetch_add(1, Ordering::Relaxed));
    embedder.submit(EmbedJob { texts: request.texts, reply }).map_err(|e| match e {
        SubmitError::Busy => ApiError { code: Some("queue_full"), ..ApiError::unavailable("the encoder's queue is full; retry later") },
        SubmitError::Unavailable => unavailable(app.state()),
    })?;
    let (embeddings, tokens) = answer.await.map_err(|_| ApiError::unavailable("the encoder stopped before answering"))?.map_err(failure_error)?;
    debug_assert_eq!(embeddings.len(), count);
    let ms = received.elapsed().as_secs_f64() * 1e3;
    app.logger.request(&super::log::RequestLog { id: &id, prompt_tokens: tokens, cached_tokens: 0, generated_tokens: 0, ttft_ms: Some(ms), tokens_per_second: None, finish: "stop" });
    Ok(Json(api::embedding_answer(&embeddings, tokens, request.base64, &app.model_id)).into_response())
}

async fn chat(State(app): State<Arc<App>>, body: Body) -> Response {
    answer(app, body, Endpoint::Chat).await.unwrap_or_else(IntoResponse::into_response)
}

async fn completions(State(app): State<Arc<App>>, body: Body) -> Response {
    answer(app, body, Endpoint::Completion).await.unwrap_or_else(IntoResponse::into_response)
}

async fn answer(app: Arc<App>, body: Body, endpoint: Endpoint) -> Result<Response, ApiError> {
    let received = Instant::now();
    let Backend::Decoder { engine, tokenizer, limits } = &app.backend else {
        return Err(ApiError::bad_request(format!("the served model `{}` is an encoder; it answers /v1/embeddings only", app.model_id)));
    };
    let object = api::parse_object(&app.body(body).await?)?;
    let n = app.requests.fetch_add(1, Ordering::Relaxed);
    let generation = api::generation(&object, app.seed_base.wrapping_add(n))?;
    let prompt = match endpoint {
        Endpoint::Chat => api::chat_prompt(&object)?,
        Endpoint::Completion => api::completion_prompt(&object, limits.vocab)?,
    };
    // Templates and long prompts take CPU time: off the async workers.
    let tokenizer = tokenizer.clone();
    let ids = tokio::task::spawn_blocking(move || match prompt {
        Prompt::Chat(messages) => tokenizer.encode_chat_with(&messages, true, SpecialText::Plain),
        Prompt::Text(text) => tokenizer.encode_with(&text, SpecialText::Plain),
        Prompt::Tokens(ids) => Ok(ids),
    })
    .await
    .map_err(|e| ApiError { status: 500, kind: "server_error", ..ApiError::bad_request(format!("tokenizing failed: {e}")) })?
    .map_err(|e| ApiError::bad_request(format!("the prompt cannot be tokenized: {e}")))?;
    if ids.is_empty() {
        return Err(ApiError::invalid(if endpoint == Endpoint::Chat { "messages" } else { "prompt" }, "the prompt is empty"));
    }
    let max_tokens = generation.max_tokens_for(ids.len(), limits)?;
    let header = Header { id: format!("{}-{n}", endpoint.id_prefix()), created: unix_seconds(), model: app.model_id.clone(), endpoint };
    let (events, rx) = unbounded_channel();
    let job = Job {
        id: header.id.clone(),
        prompt: ids,
        max_tokens,
        sampler: generation.sampler,
        frequency_penalty: generation.frequency_penalty,
        presence_penalty: generation.presence_penalty,
        stop: generation.stop.clone(),
        events,
        received,
    };
    engine.submit(job).map_err(|e| match e {
        SubmitError::Busy => ApiError { code: Some("queue_full"), ..ApiError::unavailable("every slot is busy and the queue is full; retry later") },
        SubmitError::Unavailable => unavailable(&engine.state),
    })?;
    if generation.stream {
        Ok(stream(header, rx, generation.include_usage))
    } else {
        collect(header, rx).await
    }
}

fn unavailable(state: &EngineState) -> ApiError {
    if let Some(reason) = state.device.reason() {
        ApiError::unavailable(format!("the GPU device was lost ({reason}); restart the server"))
    } else {
        ApiError::unavailable("the server is shutting down")
    }
}

fn failure_error(failure: Failure) -> ApiError {
    match failure {
        Failure::DeviceLost(reason) => ApiError::unavailable(format!("the GPU device was lost: {reason}")),
        Failure::ShuttingDown => ApiError::unavailable("the server is shutting down"),
        Failure::Model(message) => ApiError { status: 500, kind: "server_error", ..ApiError::bad_request(message) },
    }
}

async fn collect(header: Header, mut rx: UnboundedReceiver<Event>) -> Result<Response, ApiError> {
    let mut text = String::new();
    while let Some(event) = rx.recv().await {
        match event {
            Event::Text(t) => text.push_str(&t),
            Event::Done(usage) => return Ok(Json(header.answer(&text, &usage)).into_response()),
            Event::Failed(f) => return Err(failure_error(f)),
        }
    }
    Err(ApiError::unavailable("the engine stopped before answering"))
}

/// Server-sent events in OpenAI's chunk format, `data: [DONE]` last. Dropping the stream (the
/// client went away) drops `rx`, which cancels the sequence.
fn stream(header: Header, rx: UnboundedReceiver<Event>, include_usage: bool) -> Response {
    struct State {
        rx: UnboundedReceiver<Event>,
        header: Header,
        include_usage: bool,
        first: bool,
        queue: VecDeque<String>,
        finished: bool,
    }
    let state = State { rx, header, include_usage, first: true, queue: VecDeque::new(), finished: false };
    let events = futures_util::stream::unfold(state, |mut s| async move {
        loop {
            if let Some(data) = s.queue.pop_front() {
                return Some((Ok::<_, Infallible>(SseEvent::default().data(data)), s));
            }
            if s.finished {
                return None;
            }
            match s.rx.recv().await {
                Some(Event::Text(t)) => {
                    s.queue.push_back(s.header.chunk(Some(&t), s.first, None).to_string());
                    s.first = false;
                }
                Some(Event::Done(usage)) => {
                    if s.first && s.header.endpoint == Endpoint::Chat {
                        s.queue.push_back(s.header.chunk(Some(""), true, None).to_string());
                    }
                    s.queue.push_back(s.header.chunk(None, false, Some(usage.finish)).to_string());
                    if s.include_usage {
                        s.queue.push_back(s.header.usage_chunk(&usage).to_string());
                    }
                    s.queue.push_back("[DONE]".to_owned());
                    s.finished = true;
                }
                Some(Event::Failed(f)) => {
                    s.queue.push_back(failure_error(f).body().to_string());
                    s.finished = true;
                }
                None => {
                    s.queue.push_back(ApiError::unavailable("the engine stopped before answering").body().to_string());
                    s.finished = true;
                }
            }
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default()).into_response()
}

fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
}
