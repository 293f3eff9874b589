//! `tokenfab serve`: an OpenAI-compatible HTTP server over one [`Engine`] (axum on tokio).
//!
//! Request handlers parse and check a request ([`api`]), tokenize its prompt with the shared
//! tokenizer, and hand it to the [`scheduler`] thread, which decodes every request in flight
//! together (continuous batching) and sends tokens back; handlers answer with one JSON object
//! or a server-sent-event stream. Every `usage` carries what the tokens cost (seconds, bytes,
//! joules, dollars). [`metrics`] is `GET /metrics`.
//!
//! Endpoints: `POST /v1/chat/completions`, `POST /v1/completions`, `GET /v1/models`,
//! `GET /health`, `POST /tokenize`, `POST /detokenize`, `GET /metrics`. With an API key, every
//! endpoint but `/health` wants `Authorization: Bearer KEY`.
//!
//! Serving a model from an app (`tokenfab serve` does this):
//!
//! ```no_run
//! use tokenfab::engine::{Engine, EngineOptions};
//! use tokenfab::model::LoadOptions;
//! use tokenfab::server::{serve, ServeOptions};
//!
//! let opts = ServeOptions { port: 0, parallel: 4, ..Default::default() };
//! // one row of logits and one KV cache per slot
//! let load = LoadOptions { logit_rows: 4, n_seq: 4, ..Default::default() };
//! let engine = Engine::load(
//!     "models/gemma-3-270m-q4_k_m.gguf".as_ref(),
//!     &EngineOptions { load, ..Default::default() },
//! )?;
//! // blocks until the process is interrupted; the address is known once it listens
//! serve(engine, &opts, |addr| println!("OpenAI-compatible API on http://{addr}/v1"))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod api;
pub mod metrics;
pub mod scheduler;

use crate::engine::{chat_prompt, Engine};
use crate::tokenizer::Tokenizer;
use api::{ApiError, Endpoint, Prompt};
use axum::body::Bytes;
use axum::extract::{Request as HttpRequest, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use scheduler::{Job, Shared, Update};
use serde_json::{json, Value};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Instant, SystemTime, UNIX_EPOCH};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
use tokio_stream::wrappers::UnboundedReceiverStream;

/// How to serve.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    pub host: String,
    /// 0: any free port (the address is passed to `on_listening`).
    pub port: u16,
    /// Requests decoded at once (slots).
    pub parallel: usize,
    /// Requests that may wait for a slot; more get 503 with Retry-After.
    pub max_queue: usize,
    /// Require `Authorization: Bearer KEY`.
    pub api_key: Option<String>,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            host: "127.0.0.1".into(),
            port: 8080,
            parallel: 4,
            max_queue: 64,
            api_key: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("invalid option: {0}")]
    Options(String),
}

/// What the handlers share.
struct AppState {
    jobs: mpsc::Sender<Job>,
    tokenizer: Arc<Tokenizer>,
    model_id: String,
    model_ids: Vec<String>,
    ctx: usize,
    vocab: usize,
    shared: Arc<Shared>,
    api_key: Option<String>,
    energy_source: String,
    next_id: AtomicU64,
}

/// Serves `engine` until the process is stopped (Ctrl-C / SIGTERM: in-flight requests are
/// answered first). `on_listening` gets the bound address.
pub fn serve(
    mut engine: Engine,
    opts: &ServeOptions,
    on_listening: impl FnOnce(SocketAddr),
) -> Result<(), ServeError> {
    if opts.parallel == 0 {
        return Err(ServeError::Options("--parallel must be at least 1".into()));
    }
    if engine.model().logit_rows() < opts.parallel {
        return Err(ServeError::Options(format!(
            "the model was loaded for {} rows of logits, --parallel {} needs one per slot",
            engine.model().logit_rows(),
            opts.parallel
        )));
    }
    let model_id = engine
        .path()
        .file_stem()
        .map_or("model".into(), |s| s.to_string_lossy().into_owned());
    let mut model_ids = vec![model_id.clone(), engine.name()];
    model_ids.dedup();
    let shared = Arc::new(Shared {
        metrics: Mutex::new(metrics::Metrics::default()),
        waiting: AtomicUsize::new(0),
        max_queue: opts.max_queue,
    });
    let (tx, rx) = mpsc::channel();
    let state = Arc::new(AppState {
        jobs: tx,
        tokenizer: Arc::clone(engine.tokenizer()),
        model_id,
        model_ids,
        ctx: engine.ctx(),
        vocab: engine.config().n_vocab,
        shared: Arc::clone(&shared),
        api_key: opts.api_key.clone(),
        energy_source: engine.energy_source().to_string(),
        next_id: AtomicU64::new(1),
    });
    let parallel = opts.parallel;
    let worker = std::thread::Builder::new()
        .name("tokenfab-scheduler".into())
        .spawn(move || scheduler::run(engine, rx, parallel, shared))?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let addr = format!("{}:{}", opts.host, opts.port);
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(&addr)
            .await
            .map_err(|source| ServeError::Bind {
                addr: addr.clone(),
                source,
            })?;
        on_listening(listener.local_addr()?);
        axum::serve(listener, router(Arc::clone(&state)))
            .with_graceful_shutdown(shutdown())
            .await?;
        Ok::<(), ServeError>(())
    })?;
    // the scheduler ends when its last sender is gone
    drop(state);
    let _ = worker.join();
    Ok(())
}

async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => {
                    let _ = ctrl_c.await;
                    return;
                }
            };
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn router(state: Arc<AppState>) -> Router {
    let protected = Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/tokenize", post(tokenize))
        .route("/detokenize", post(detokenize))
        .route("/metrics", get(metrics_text))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&state), auth));
    Router::new()
        .route("/health", get(health))
        .merge(protected)
        .fallback(not_found)
        .with_state(state)
}

/// An error answer; a 503 (queue full) says when to retry.
fn error(e: &ApiError) -> Response {
    let mut resp = (e.status, Json(e.body())).into_response();
    if e.status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    resp
}

async fn not_found() -> Response {
    error(&ApiError {
        status: StatusCode::NOT_FOUND,
        kind: "invalid_request_error",
        code: Some("not_found"),
        message: "no such endpoint".into(),
        param: None,
    })
}

async fn auth(State(st): State<Arc<AppState>>, req: HttpRequest, next: Next) -> Response {
    if let Some(key) = &st.api_key {
        let given = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(key.as_str()) {
            let path = req.uri().path().to_string();
            st.shared.metrics().count_request(&path, 401);
            return error(&ApiError {
                status: StatusCode::UNAUTHORIZED,
                kind: "invalid_request_error",
                code: Some("invalid_api_key"),
                message: "a valid API key is required (Authorization: Bearer KEY)".into(),
                param: None,
            });
        }
    }
    next.run(req).await
}

/// 200 while steps succeed; 503 with the reason after a step failed (a lost device fails
/// every request until the server is restarted), until one succeeds again.
async fn health(State(st): State<Arc<AppState>>) -> Response {
    match st.shared.metrics().fault.clone() {
        None => Json(json!({"status": "ok"})).into_response(),
        Some(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "error", "error": e})),
        )
            .into_response(),
    }
}

async fn models(State(st): State<Arc<AppState>>) -> Response {
    st.shared.metrics().count_request("/v1/models", 200);
    Json(json!({
        "object": "list",
        "data": [{
            "id": st.model_id,
            "object": "model",
            "created": now_s(),
            "owned_by": "tokenfab",
            "meta": {"n_ctx": st.ctx, "n_vocab": st.vocab},
        }],
    }))
    .into_response()
}

async fn metrics_text(State(st): State<Arc<AppState>>) -> Response {
    let mut m = st.shared.metrics();
    m.queue_len = st.shared.waiting.load(Ordering::Relaxed);
    m.count_request("/metrics", 200);
    let text = m.render(&st.energy_source);
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        text,
    )
        .into_response()
}

async fn tokenize(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let r = (|| {
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
        let text = v
            .get("content")
            .and_then(Value::as_str)
            .ok_or_else(|| ApiError::invalid("content", "content must be a string"))?;
        let special = match v.get("add_special") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(_) => return Err(ApiError::invalid("add_special", "must be a boolean")),
        };
        let ids = st
            .tokenizer
            .encode(text, special)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(json!({ "tokens": ids }))
    })();
    answer(&st, "/tokenize", r)
}

async fn detokenize(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    let r = (|| {
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| ApiError::bad_request(format!("the body is not valid JSON: {e}")))?;
        let bad = || ApiError::invalid("tokens", "tokens must be an array of token ids");
        let ids: Vec<u32> = v
            .get("tokens")
            .and_then(Value::as_array)
            .ok_or_else(bad)?
            .iter()
            .map(|t| {
                t.as_u64()
                    .filter(|&t| (t as usize) < st.vocab)
                    .map(|t| t as u32)
            })
            .collect::<Option<_>>()
            .ok_or_else(|| {
                ApiError::invalid(
                    "tokens",
                    format!("tokens must be ids below the vocabulary size {}", st.vocab),
                )
            })?;
        let text = st
            .tokenizer
            .decode(&ids)
            .map_err(|e| ApiError::bad_request(e.to_string()))?;
        Ok(json!({ "content": text }))
    })();
    answer(&st, "/detokenize", r)
}

fn answer(st: &AppState, endpoint: &str, r: Result<Value, ApiError>) -> Response {
    let resp = match r {
        Ok(v) => Json(v).into_response(),
        Err(e) => error(&e),
    };
    st.shared
        .metrics()
        .count_request(endpoint, resp.status().as_u16());
    resp
}

async fn chat(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    generate(st, Endpoint::Chat, body).await
}

async fn completions(State(st): State<Arc<AppState>>, body: Bytes) -> Response {
    generate(st, Endpoint::Completion, body).await
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A parsed, tokenized request handed to the scheduler, and its channel.
async fn generate(st: Arc<AppState>, endpoint: Endpoint, body: Bytes) -> Response {
    let path = match endpoint {
        Endpoint::Chat => "/v1/chat/completions",
        Endpoint::Completion => "/v1/completions",
    };
    let resp = match submit(&st, endpoint, &body) {
        Err(e) => error(&e),
        Ok((req, rx)) => {
            let id = st.next_id.fetch_add(1, Ordering::Relaxed);
            let meta = Meta {
                id: match endpoint {
                    Endpoint::Chat => format!("chatcmpl-{id}"),
                    Endpoint::Completion => format!("cmpl-{id}"),
                },
                created: now_s(),
                model: st.model_id.clone(),
                endpoint,
                tokenizer: Arc::clone(&st.tokenizer),
            };
            if req.stream {
                stream(meta, rx, req.include_usage)
            } else {
                whole(meta, rx).await
            }
        }
    };
    st.shared
        .metrics()
        .count_request(path, resp.status().as_u16());
    resp
}

/// Checks and tokenizes a request and queues it (503 when the queue is full).
fn submit(
    st: &AppState,
    endpoint: Endpoint,
    body: &[u8],
) -> Result<(api::Request, UnboundedReceiver<Update>), ApiError> {
    let mut req = api::parse(endpoint, body, &st.model_ids, st.vocab)?;
    let prompt = match &req.prompt {
        Prompt::Chat(m) => chat_prompt(&st.tokenizer, m, true)
            .map_err(|e| ApiError::invalid("messages", e.to_string()))?,
        Prompt::Text(t) => st
            .tokenizer
            .encode(t, true)
            .map_err(|e| ApiError::invalid("prompt", e.to_string()))?,
        Prompt::Tokens(ids) => ids.clone(),
    };
    let too_long = |msg: String| ApiError {
        status: StatusCode::BAD_REQUEST,
        kind: "invalid_request_error",
        code: Some("context_length_exceeded"),
        message: msg,
        param: Some("messages".into()),
    };
    if prompt.is_empty() {
        return Err(ApiError::bad_request("the prompt has no tokens"));
    }
    if prompt.len() >= st.ctx {
        return Err(too_long(format!(
            "the prompt has {} tokens, the context holds {} (start the server with a larger -c)",
            prompt.len(),
            st.ctx
        )));
    }
    if let Some(m) = req.max_tokens {
        // prompt.len() < ctx here: a subtraction that cannot wrap, where an addition could
        if m > st.ctx - prompt.len() {
            return Err(too_long(format!(
                "{} prompt tokens + max_tokens {m} exceed the context of {}",
                prompt.len(),
                st.ctx
            )));
        }
    }
    if st.shared.waiting.load(Ordering::Relaxed) >= st.shared.max_queue {
        return Err(ApiError {
            status: StatusCode::SERVICE_UNAVAILABLE,
            kind: "server_error",
            code: Some("queue_full"),
            message: format!(
                "{} requests are waiting already; try again shortly",
                st.shared.max_queue
            ),
            param: None,
        });
    }
    let (tx, rx) = unbounded_channel();
    let job = Job {
        prompt,
        sampling: req.sampling.clone(),
        gen: std::mem::take(&mut req.gen),
        tx,
        received: Instant::now(),
    };
    st.shared.waiting.fetch_add(1, Ordering::Relaxed);
    if st.jobs.send(job).is_err() {
        st.shared.waiting.fetch_sub(1, Ordering::Relaxed);
        return Err(ApiError::server("the scheduler is gone"));
    }
    Ok((req, rx))
}

/// What every response object of one request repeats.
struct Meta {
    id: String,
    created: u64,
    model: String,
    endpoint: Endpoint,
    tokenizer: Arc<Tokenizer>,
}

impl Meta {
    fn object(&self, chunk: bool) -> &'static str {
        match (self.endpoint, chunk) {
            (Endpoint::Chat, false) => "chat.completion",
            (Endpoint::Chat, true) => "chat.completion.chunk",
            (Endpoint::Completion, _) => "text_completion",
        }
    }

    fn wrap(&self, chunk: bool, choices: Value, usage: Option<Value>) -> Value {
        let mut v = json!({
            "id": self.id,
            "object": self.object(chunk),
            "created": self.created,
            "model": self.model,
            "system_fingerprint": format!("tokenfab-{}", env!("CARGO_PKG_VERSION")),
            "choices": choices,
        });
        if let Some(u) = usage {
            v["usage"] = u;
        }
        v
    }

    fn logprobs(&self, items: &[(u32, crate::generate::TokenLogprob)], at: usize) -> Value {
        match self.endpoint {
            Endpoint::Chat => api::chat_logprobs(&self.tokenizer, items),
            Endpoint::Completion => api::completion_logprobs(&self.tokenizer, items, at),
        }
    }
}

/// Collects a whole answer (non-streaming).
async fn whole(meta: Meta, mut rx: UnboundedReceiver<Update>) -> Response {
    let (mut text, mut lps) = (String::new(), Vec::new());
    let mut want_lp = false;
    while let Some(u) = rx.recv().await {
        match u {
            Update::Token {
                token,
                text: t,
                logprob,
            } => {
                text.push_str(&t);
                if let Some(l) = logprob {
                    want_lp = true;
                    lps.push((token, l));
                }
            }
            Update::Text(t) => text.push_str(&t),
            Update::Failed(e) => return error(&ApiError::server(e)),
            Update::Done(f) => {
                let logprobs = if want_lp {
                    meta.logprobs(&lps, 0)
                } else {
                    Value::Null
                };
                let mut choice = match meta.endpoint {
                    Endpoint::Chat => json!({
                        "index": 0,
                        "message": {"role": "assistant", "content": text},
                        "logprobs": logprobs,
                        "finish_reason": f.reason,
                    }),
                    Endpoint::Completion => json!({
                        "index": 0,
                        "text": text,
                        "logprobs": logprobs,
                        "finish_reason": f.reason,
                    }),
                };
                if let Some(b) = f.budget {
                    choice["stop_budget"] = json!(b);
                }
                let usage = serde_json::to_value(&f.usage).unwrap_or(Value::Null);
                return Json(meta.wrap(false, json!([choice]), Some(usage))).into_response();
            }
        }
    }
    error(&ApiError::server("the request ended without an answer"))
}

/// Streams an answer as server-sent events, `data: [DONE]` last.
fn stream(meta: Meta, mut rx: UnboundedReceiver<Update>, include_usage: bool) -> Response {
    let (out, events) = unbounded_channel::<Result<Event, Infallible>>();
    tokio::spawn(async move {
        let send = |v: Value| out.send(Ok(Event::default().data(v.to_string()))).is_ok();
        let chat = meta.endpoint == Endpoint::Chat;
        if chat {
            let first = json!([{
                "index": 0,
                "delta": {"role": "assistant", "content": ""},
                "logprobs": null,
                "finish_reason": null,
            }]);
            if !send(meta.wrap(true, first, None)) {
                return;
            }
        }
        let mut at = 0;
        while let Some(u) = rx.recv().await {
            let (text, lp) = match u {
                Update::Token {
                    token,
                    text,
                    logprob,
                } => (text, logprob.map(|l| meta.logprobs(&[(token, l)], at))),
                Update::Text(t) => (t, None),
                Update::Failed(e) => {
                    let _ = send(ApiError::server(e).body());
                    return;
                }
                Update::Done(f) => {
                    let mut choice = if chat {
                        json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": f.reason})
                    } else {
                        json!({"index": 0, "text": "", "logprobs": null, "finish_reason": f.reason})
                    };
                    if let Some(b) = f.budget {
                        choice["stop_budget"] = json!(b);
                    }
                    if !send(meta.wrap(true, json!([choice]), None)) {
                        return;
                    }
                    if include_usage {
                        let usage = serde_json::to_value(&f.usage).unwrap_or(Value::Null);
                        if !send(meta.wrap(true, json!([]), Some(usage))) {
                            return;
                        }
                    }
                    let _ = out.send(Ok(Event::default().data("[DONE]")));
                    return;
                }
            };
            if text.is_empty() && lp.is_none() {
                // nothing to show; a closed stream still cancels the request
                if out.is_closed() {
                    return;
                }
                continue;
            }
            at += text.len();
            let choice = if chat {
                json!({"index": 0, "delta": {"content": text}, "logprobs": lp, "finish_reason": null})
            } else {
                json!({"index": 0, "text": text, "logprobs": lp, "finish_reason": null})
            };
            if !send(meta.wrap(true, json!([choice]), None)) {
                return;
            }
        }
    });
    let mut resp = Sse::new(UnboundedReceiverStream::new(events))
        .keep_alive(KeepAlive::default())
        .into_response();
    resp.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    resp
}
