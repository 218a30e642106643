//! The client-facing HTTP API (Anthropic Messages) and the admin listener.
//!
//! A request reads top-down: `messages` → parse → `route` → `fixes` → `translate` →
//! `upstream` → back through `translate::stream` (or `translate::response`). Every error on the
//! way is an `ApiError`, rendered once as Anthropic error JSON.

use crate::anthropic::{MessagesRequest, ModelInfo};
use crate::config::{BackendRuntime, Runtime};
use crate::context::{clamp_max_tokens, estimate_prompt_tokens, Overflow};
use crate::error::{ApiError, ErrorKind};
use crate::metrics::{
    self, BackendLabels, KindLabels, Metrics, RequestLabels, TokenLabels, VersionLabels,
};
use crate::translate::request::{to_openai, BackendShape};
use crate::translate::response::to_anthropic;
use crate::translate::stream::{ping, StreamTranslator};
use crate::upstream::{self, Discovered, Item, UpstreamError};
use crate::{anthropic, openai};
use arc_swap::ArcSwap;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::StreamExt;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_api::Protocol;
use tracing::Instrument;

pub struct AppState {
    pub runtime: ArcSwap<Runtime>,
    pub client: reqwest::Client,
    pub metrics: Metrics,
    pub ready: AtomicBool,
}

impl AppState {
    pub fn new(runtime: Runtime) -> Arc<Self> {
        let metrics = Metrics::new();
        metrics
            .config_info
            .get_or_create(&VersionLabels {
                version: runtime.version.clone(),
            })
            .set(1);
        Arc::new(Self {
            runtime: ArcSwap::from_pointee(runtime),
            client: upstream::client(),
            metrics,
            ready: AtomicBool::new(true),
        })
    }
}

pub fn api_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(root).head(root))
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
        .fallback(not_found)
        .with_state(state)
}

pub fn admin_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/config", get(config_version))
        .with_state(state)
}

async fn root(method: Method) -> Response {
    if method == Method::HEAD {
        return StatusCode::OK.into_response();
    }
    Json(json!({"name": "switchyard-proxy", "status": "ok"})).into_response()
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        format!("no such endpoint: {method} {}", uri.path()),
    )
}

async fn metrics_text(State(app): State<Arc<AppState>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.metrics.encode(),
    )
        .into_response()
}

async fn readyz(State(app): State<Arc<AppState>>) -> Response {
    if app.ready.load(Ordering::Relaxed) {
        "ready".into_response()
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down").into_response()
    }
}

async fn config_version(State(app): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({"version": app.runtime.load().version}))
}

/// Reads a body up to the configured limit; larger ones get Anthropic's 413.
async fn read_body(headers: &HeaderMap, body: Body, limit: usize) -> Result<Bytes, ApiError> {
    let too_large = || {
        ApiError::new(
            ErrorKind::RequestTooLarge,
            format!(
                "request body exceeds the {} MB limit",
                limit / (1024 * 1024)
            ),
        )
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(too_large());
    }
    axum::body::to_bytes(body, limit)
        .await
        .map_err(|_| too_large())
}

/// JSON → type, with the path of the offending field in the message.
fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::invalid(format!("request body is not valid JSON: {inner}"))
        } else if path == "." {
            ApiError::invalid(inner.to_string())
        } else {
            ApiError::invalid(format!("{path}: {inner}"))
        }
    })
}

fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// What the access log and metrics need to know about one request.
struct Outcome {
    route: String,
    backend: String,
}

async fn messages(State(app): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let request_id = new_id("req");
    let span = tracing::info_span!("request", id = %request_id);
    let started = Instant::now();
    let mut outcome = Outcome {
        route: String::new(),
        backend: String::new(),
    };
    let result = handle_messages(&app, &headers, body, &request_id, started, &mut outcome)
        .instrument(span.clone())
        .await;
    let mut resp = match result {
        Ok(resp) => resp,
        Err(err) => {
            span.in_scope(|| tracing::info!(status = err.kind.status().as_u16(), error = %err, "request failed"));
            err.into_response()
        }
    };
    if !outcome.backend.is_empty() {
        app.metrics
            .requests
            .get_or_create(&RequestLabels {
                route: outcome.route,
                backend: outcome.backend,
                status: resp.status().as_u16(),
            })
            .inc();
    }
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert("request-id", v);
    }
    resp
}

/// A routed request, ready to go out.
struct Prepared {
    req: MessagesRequest,
    backend: Arc<BackendRuntime>,
    discovered: Discovered,
    settings: switchyard_api::ServerSettings,
    prompt_estimate: u64,
    max_tokens: u32,
    client_model: String,
}

async fn prepare(
    app: &AppState,
    bytes: &[u8],
    outcome: &mut Outcome,
    need_max_tokens: bool,
) -> Result<Prepared, ApiError> {
    let mut req: MessagesRequest = if need_max_tokens {
        parse_json(bytes)?
    } else {
        // count_tokens takes a Messages body without `max_tokens`.
        let mut v: Value = parse_json(bytes)?;
        if let Some(obj) = v.as_object_mut() {
            obj.entry("max_tokens").or_insert(json!(1));
        }
        parse_json(&serde_json::to_vec(&v).unwrap_or_default())?
    };
    if req.messages.is_empty() {
        return Err(ApiError::invalid(
            "messages: at least one message is required",
        ));
    }
    let runtime = app.runtime.load_full();
    let Some(matched) = runtime.routes.resolve(&req.model) else {
        return Err(ApiError::new(
            ErrorKind::NotFound,
            format!(
                "model `{}` is not served here (no route matches it)",
                req.model
            ),
        ));
    };
    let backend = runtime.backends[matched.backend].clone();
    outcome.route = matched.route.to_owned();
    outcome.backend = backend.spec.name.clone();
    tracing::debug!(model = %req.model, route = %outcome.route, backend = %outcome.backend, "routed");
    let discovered = upstream::discover(&app.client, &backend)
        .await
        .map_err(|e| {
            count_upstream_error(app, &backend, &e);
            e.to_api()
        })?;
    crate::fixes::apply(&mut req, backend.spec.system_messages);
    let prompt_estimate = estimate_prompt_tokens(&req);
    let max_tokens = match discovered.context_window {
        Some(window) => clamp_max_tokens(req.max_tokens, window, prompt_estimate),
        None => req.max_tokens,
    };
    Ok(Prepared {
        client_model: req.model.clone(),
        req,
        backend,
        discovered,
        settings: runtime.settings.clone(),
        prompt_estimate,
        max_tokens,
    })
}

fn count_upstream_error(app: &AppState, backend: &BackendRuntime, e: &UpstreamError) {
    let kind = match e {
        UpstreamError::Unreachable { .. } => "unreachable",
        UpstreamError::Status { .. } => "status",
        UpstreamError::Overflow(_) => "context_overflow",
        UpstreamError::Protocol { .. } => "protocol",
        UpstreamError::Interrupted { .. } => "interrupted",
        UpstreamError::Discovery { .. } => "discovery",
    };
    app.metrics
        .upstream_errors
        .get_or_create(&KindLabels {
            backend: backend.spec.name.clone(),
            kind,
        })
        .inc();
}

async fn handle_messages(
    app: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
    request_id: &str,
    started: Instant,
    outcome: &mut Outcome,
) -> Result<Response, ApiError> {
    let limit = app.runtime.load().settings.max_body_bytes;
    let bytes = read_body(headers, body, limit).await?;
    let p = prepare(app, &bytes, outcome, true).await?;
    match p.backend.spec.protocol {
        Protocol::Openai => openai_flow(app, p, request_id, started).await,
        Protocol::Anthropic => anthropic_flow(app, p, headers, request_id, started).await,
    }
}

/// Sends the request; when vLLM says prompt + `max_tokens` is too large it also states the
/// exact prompt size, so one resend with the exact clamp always fits.
async fn send_with_exact_clamp(
    app: &AppState,
    backend: &BackendRuntime,
    path: &str,
    max_tokens: &mut u32,
    mut body: impl FnMut(u32) -> Vec<u8>,
    extra_headers: &[(String, String)],
) -> Result<reqwest::Response, UpstreamError> {
    let first = upstream::send(&app.client, backend, path, body(*max_tokens), extra_headers).await;
    match first {
        Err(UpstreamError::Overflow(Overflow::OutputTooLarge { prompt, window })) => {
            app.metrics
                .context_retries
                .get_or_create(&KindLabels {
                    backend: backend.spec.name.clone(),
                    kind: "max_tokens",
                })
                .inc();
            *max_tokens = clamp_max_tokens(*max_tokens, window as u32, prompt);
            tracing::debug!(
                prompt,
                window,
                max_tokens = *max_tokens,
                "re-clamped max_tokens to vLLM's prompt count"
            );
            upstream::send(&app.client, backend, path, body(*max_tokens), extra_headers).await
        }
        other => other,
    }
}

async fn openai_flow(
    app: &Arc<AppState>,
    p: Prepared,
    request_id: &str,
    started: Instant,
) -> Result<Response, ApiError> {
    let stream = p.req.stream;
    let stop_sequences = p.req.stop_sequences.clone().unwrap_or_default();
    let text_tools =
        p.backend.spec.text_tool_calls && p.req.tools.as_ref().is_some_and(|t| !t.is_empty());
    let shape = BackendShape {
        served_model: &p.discovered.served_model,
        thinking: p.backend.spec.thinking,
        parameters: &p.backend.spec.parameters,
    };
    let translated = to_openai(p.req, p.max_tokens, &shape)?;
    for name in &translated.dropped {
        tracing::debug!(field = %name, backend = %p.backend.spec.name, "field not supported by backend; dropped");
        app.metrics
            .dropped_params
            .get_or_create(&KindLabels {
                backend: p.backend.spec.name.clone(),
                kind: metrics::param_class(name),
            })
            .inc();
    }
    let mut chat = translated.request;
    let mut max_tokens = chat.max_tokens;
    let resp = send_with_exact_clamp(
        app,
        &p.backend,
        "/chat/completions",
        &mut max_tokens,
        |m| {
            chat.max_tokens = m;
            serde_json::to_vec(&chat).expect("request serializes")
        },
        &[],
    )
    .await
    .map_err(|e| {
        count_upstream_error(app, &p.backend, &e);
        e.to_api()
    })?;
    let message_id = new_id("msg");
    let labels = BackendLabels {
        route: String::new(),
        backend: p.backend.spec.name.clone(),
    };
    if !stream {
        let bytes = upstream::json_body(&p.backend, resp)
            .await
            .map_err(|e| e.to_api())?;
        let chat_resp: openai::ChatResponse = serde_json::from_slice(&bytes).map_err(|e| {
            UpstreamError::Protocol {
                backend: p.backend.spec.name.clone(),
                detail: e.to_string(),
            }
            .to_api()
        })?;
        let msg = to_anthropic(
            chat_resp,
            message_id,
            p.client_model,
            p.prompt_estimate,
            text_tools,
            &stop_sequences,
        );
        record_usage(app, &p.backend, &msg.usage);
        access_log(
            request_id,
            &p.backend,
            started,
            None,
            &msg.usage,
            msg.stop_reason,
        );
        app.metrics
            .duration
            .get_or_create(&labels)
            .observe(started.elapsed().as_secs_f64());
        return Ok(Json(msg).into_response());
    }

    let mut chunks = upstream::chat_chunks(&p.backend, resp);
    let mut tr = StreamTranslator::new(
        message_id,
        p.client_model,
        p.prompt_estimate,
        text_tools,
        stop_sequences,
    );
    let mut first = Vec::new();
    // Hold the response back briefly: an error in the first chunk can still be a real status.
    match tokio::time::timeout(
        Duration::from_millis(p.settings.commit_after_ms),
        chunks.next(),
    )
    .await
    {
        Ok(Some(Ok(Item::Data(chunk)))) => tr.on_chunk(chunk, &mut first),
        Ok(Some(Ok(Item::Done))) => tr.finish(&mut first),
        Ok(Some(Err(e))) => {
            count_upstream_error(app, &p.backend, &e);
            return Err(e.to_api());
        }
        Ok(None) => {
            return Err(UpstreamError::Interrupted {
                backend: p.backend.spec.name.clone(),
                detail: "empty response".into(),
            }
            .to_api())
        }
        Err(_) => tr.start(&mut first),
    }
    let ttft = (!first.is_empty() && tr.usage().output_tokens > 0).then(|| started.elapsed());
    let guard = StreamGuard::new(
        app.clone(),
        p.backend.clone(),
        request_id.to_owned(),
        started,
        ttft,
    );
    let ping_every = Duration::from_millis(p.settings.ping_interval_ms);
    let body = async_stream::stream! {
        let mut guard = guard;
        yield Ok::<Bytes, Infallible>(Bytes::from(first));
        while !tr.finished() {
            let mut out = Vec::new();
            match tokio::time::timeout(ping_every, chunks.next()).await {
                Err(_) => ping(&mut out),
                Ok(Some(Ok(Item::Data(chunk)))) => {
                    tr.on_chunk(chunk, &mut out);
                    guard.first_token();
                }
                Ok(Some(Ok(Item::Done))) => tr.finish(&mut out),
                Ok(Some(Err(e))) => {
                    count_upstream_error(&guard.app, &guard.backend, &e);
                    tracing::warn!(error = %e, "backend failed mid-stream");
                    tr.fail(&e.to_api(), &mut out);
                }
                Ok(None) => {
                    let e = UpstreamError::Interrupted {
                        backend: guard.backend.spec.name.clone(),
                        detail: "connection closed without [DONE]".into(),
                    };
                    count_upstream_error(&guard.app, &guard.backend, &e);
                    tracing::warn!(error = %e, "backend stream cut");
                    tr.fail(&e.to_api(), &mut out);
                }
            }
            if !out.is_empty() {
                yield Ok(Bytes::from(out));
            }
        }
        if tr.anomalies > 0 {
            tracing::warn!(fragments = tr.anomalies, "tool-call fragments arrived after their call was closed");
        }
        guard.complete(tr.usage(), tr.stop_reason());
    };
    Ok(sse_response(Body::from_stream(body)))
}

fn sse_response(body: Body) -> Response {
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "text/event-stream; charset=utf-8")
        .header(header::CACHE_CONTROL, "no-cache")
        .header("x-accel-buffering", "no")
        .body(body)
        .expect("static response parts are valid")
}

/// Keeps the stream's bookkeeping; if dropped before `complete`, the client went away.
struct StreamGuard {
    app: Arc<AppState>,
    backend: Arc<BackendRuntime>,
    request_id: String,
    started: Instant,
    ttft: Option<Duration>,
    done: bool,
}

impl StreamGuard {
    fn new(
        app: Arc<AppState>,
        backend: Arc<BackendRuntime>,
        request_id: String,
        started: Instant,
        ttft: Option<Duration>,
    ) -> Self {
        app.metrics.active_streams.inc();
        Self {
            app,
            backend,
            request_id,
            started,
            ttft,
            done: false,
        }
    }

    fn first_token(&mut self) {
        if self.ttft.is_none() {
            self.ttft = Some(self.started.elapsed());
        }
    }

    fn labels(&self) -> BackendLabels {
        BackendLabels {
            route: String::new(),
            backend: self.backend.spec.name.clone(),
        }
    }

    fn complete(&mut self, usage: anthropic::Usage, stop: Option<anthropic::StopReason>) {
        self.done = true;
        record_usage(&self.app, &self.backend, &usage);
        if let Some(t) = self.ttft {
            self.app
                .metrics
                .ttft
                .get_or_create(&self.labels())
                .observe(t.as_secs_f64());
        }
        access_log(
            &self.request_id,
            &self.backend,
            self.started,
            self.ttft,
            &usage,
            stop,
        );
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        self.app.metrics.active_streams.dec();
        self.app
            .metrics
            .duration
            .get_or_create(&self.labels())
            .observe(self.started.elapsed().as_secs_f64());
        if !self.done {
            self.app.metrics.client_disconnects.inc();
            tracing::info!(request_id = %self.request_id, backend = %self.backend.spec.name,
                "client disconnected; upstream request cancelled");
        }
    }
}

fn record_usage(app: &AppState, backend: &BackendRuntime, usage: &anthropic::Usage) {
    for (kind, n) in [
        ("input", usage.input_tokens),
        ("output", usage.output_tokens),
        ("cache_read", usage.cache_read_input_tokens),
    ] {
        if n > 0 {
            app.metrics
                .tokens
                .get_or_create(&TokenLabels {
                    backend: backend.spec.name.clone(),
                    r#type: kind,
                })
                .inc_by(n);
        }
    }
}

fn access_log(
    request_id: &str,
    backend: &BackendRuntime,
    started: Instant,
    ttft: Option<Duration>,
    usage: &anthropic::Usage,
    stop: Option<anthropic::StopReason>,
) {
    tracing::info!(
        request_id,
        backend = %backend.spec.name,
        duration_ms = started.elapsed().as_millis() as u64,
        ttft_ms = ttft.map(|t| t.as_millis() as u64),
        input_tokens = usage.input_tokens,
        output_tokens = usage.output_tokens,
        cache_read_tokens = usage.cache_read_input_tokens,
        stop_reason = ?stop,
        "request completed"
    );
}

/// Anthropic-protocol backends: the fixed request goes out as is; the stream is relayed.
async fn anthropic_flow(
    app: &Arc<AppState>,
    p: Prepared,
    headers: &HeaderMap,
    request_id: &str,
    started: Instant,
) -> Result<Response, ApiError> {
    let version = headers
        .get("anthropic-version")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("2023-06-01")
        .to_owned();
    let extra_headers = [("anthropic-version".to_owned(), version)];
    let stream = p.req.stream;
    let mut req = p.req;
    req.model = p.discovered.served_model.clone();
    for name in &p.backend.spec.parameters.drop {
        req.extra.remove(name);
    }
    let mut max_tokens = p.max_tokens;
    let resp = send_with_exact_clamp(
        app,
        &p.backend,
        "/messages",
        &mut max_tokens,
        |m| {
            req.max_tokens = m;
            serde_json::to_vec(&req).expect("request serializes")
        },
        &extra_headers,
    )
    .await
    .map_err(|e| {
        count_upstream_error(app, &p.backend, &e);
        e.to_api()
    })?;
    if !stream {
        let bytes = upstream::json_body(&p.backend, resp)
            .await
            .map_err(|e| e.to_api())?;
        let mut msg: Value = serde_json::from_slice(&bytes).map_err(|e| {
            UpstreamError::Protocol {
                backend: p.backend.spec.name.clone(),
                detail: e.to_string(),
            }
            .to_api()
        })?;
        msg["model"] = json!(p.client_model);
        let usage = ensure_usage(&mut msg["usage"]);
        record_usage(app, &p.backend, &usage);
        access_log(request_id, &p.backend, started, None, &usage, None);
        return Ok(Json(msg).into_response());
    }
    let mut events = upstream::anthropic_events(&p.backend, resp);
    let guard = StreamGuard::new(
        app.clone(),
        p.backend.clone(),
        request_id.to_owned(),
        started,
        None,
    );
    let ping_every = Duration::from_millis(p.settings.ping_interval_ms);
    let commit_after = Duration::from_millis(p.settings.commit_after_ms);
    let client_model = p.client_model;
    // The first event decides between a real HTTP error and a committed stream.
    let first = match tokio::time::timeout(commit_after, events.next()).await {
        Ok(Some(Err(e))) => {
            count_upstream_error(app, &p.backend, &e);
            return Err(e.to_api());
        }
        Ok(other) => other,
        Err(_) => None,
    };
    let estimate = p.prompt_estimate;
    let body = async_stream::stream! {
        let mut guard = guard;
        let mut relay = Relay {
            client_model,
            started: false,
            stopped: false,
            usage: anthropic::Usage { input_tokens: estimate, ..Default::default() },
            stop: None,
        };
        let mut out = Vec::new();
        match first {
            Some(Ok(Item::Data(ev))) => relay.event(ev, &mut out),
            Some(Ok(Item::Done)) => { relay.stop_event(&mut out); }
            _ => relay.start(&mut out),
        }
        let mut finished = relay.stopped;
        yield Ok::<Bytes, Infallible>(Bytes::from(out));
        while !finished {
            let mut out = Vec::new();
            match tokio::time::timeout(ping_every, events.next()).await {
                Err(_) => ping(&mut out),
                Ok(Some(Ok(Item::Data(ev)))) => { relay.event(ev, &mut out); guard.first_token(); }
                Ok(Some(Ok(Item::Done))) => { relay.stop_event(&mut out); finished = true; }
                Ok(Some(Err(e))) => {
                    count_upstream_error(&guard.app, &guard.backend, &e);
                    crate::translate::stream::error_event(&mut out, &e.to_api());
                    finished = true;
                }
                Ok(None) => {
                    let e = UpstreamError::Interrupted { backend: guard.backend.spec.name.clone(), detail: "connection closed before message_stop".into() };
                    crate::translate::stream::error_event(&mut out, &e.to_api());
                    finished = true;
                }
            }
            if !out.is_empty() {
                yield Ok(Bytes::from(out));
            }
        }
        guard.complete(relay.usage, relay.stop);
    };
    Ok(sse_response(Body::from_stream(body)))
}

/// Relays Anthropic events, fixing what clients trip on: a missing or null `usage`, and the
/// backend's model name in place of the one the client asked for.
struct Relay {
    client_model: String,
    started: bool,
    stopped: bool,
    usage: anthropic::Usage,
    stop: Option<anthropic::StopReason>,
}

impl Relay {
    /// Our own `message_start`, when the stream is committed before the backend's.
    fn start(&mut self, out: &mut Vec<u8>) {
        self.started = true;
        let mut msg = anthropic::MessageResponse::new(new_id("msg"), self.client_model.clone());
        msg.usage = self.usage;
        write_raw(
            out,
            "message_start",
            &json!({"type": "message_start", "message": msg}).to_string(),
        );
    }

    fn event(&mut self, ev: upstream::RawEvent, out: &mut Vec<u8>) {
        match ev.event.as_str() {
            "message_start" => {
                if self.started {
                    return; // ours already went out
                }
                self.started = true;
                let mut v: Value = serde_json::from_str(&ev.data).unwrap_or_else(|_| json!({}));
                v["message"]["model"] = json!(self.client_model);
                self.usage = ensure_usage(&mut v["message"]["usage"]);
                write_raw(out, "message_start", &v.to_string());
            }
            "message_delta" => {
                if !self.started {
                    self.start(out);
                }
                let mut v: Value = serde_json::from_str(&ev.data).unwrap_or_else(|_| json!({}));
                let delta_usage = ensure_usage(&mut v["usage"]);
                self.usage.output_tokens = delta_usage.output_tokens;
                self.stop = serde_json::from_value(v["delta"]["stop_reason"].clone()).ok();
                write_raw(out, "message_delta", &v.to_string());
            }
            name => {
                if !self.started {
                    self.start(out);
                }
                write_raw(out, name, &ev.data);
            }
        }
    }

    fn stop_event(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.start(out);
        }
        self.stopped = true;
        write_raw(out, "message_stop", "{\"type\":\"message_stop\"}");
    }
}

fn write_raw(out: &mut Vec<u8>, event: &str, data: &str) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    out.extend_from_slice(data.as_bytes());
    out.extend_from_slice(b"\n\n");
}

/// Replaces a missing or partly null `usage` with numbers, and returns it.
fn ensure_usage(v: &mut Value) -> anthropic::Usage {
    if !v.is_object() {
        *v = json!({});
    }
    let obj = v.as_object_mut().expect("just made an object");
    for key in [
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    ] {
        let entry = obj.entry(key).or_insert(json!(0));
        if !entry.is_u64() {
            *entry = json!(0);
        }
    }
    serde_json::from_value(v.clone()).unwrap_or_default()
}

async fn count_tokens(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let limit = app.runtime.load().settings.max_body_bytes;
    let bytes = read_body(&headers, body, limit).await?;
    let mut outcome = Outcome {
        route: String::new(),
        backend: String::new(),
    };
    let p = prepare(&app, &bytes, &mut outcome, false).await?;
    let estimate = p.prompt_estimate;
    if p.backend.spec.protocol != Protocol::Openai {
        return Ok(Json(json!({"input_tokens": estimate})));
    }
    let shape = BackendShape {
        served_model: &p.discovered.served_model,
        thinking: p.backend.spec.thinking,
        parameters: &p.backend.spec.parameters,
    };
    let chat = to_openai(p.req, 1, &shape)?.request;
    let mut body = json!({
        "model": chat.model,
        "messages": chat.messages,
        "add_generation_prompt": true,
    });
    if !chat.tools.is_empty() {
        body["tools"] = json!(chat.tools);
    }
    if let Some(kwargs) = chat.params.get("chat_template_kwargs") {
        body["chat_template_kwargs"] = kwargs.clone();
    }
    let tokens = match upstream::tokenize(&app.client, &p.backend, body).await {
        Ok(n) => n,
        Err(e) => {
            tracing::debug!(error = %e, "exact token count unavailable; using the estimate");
            estimate
        }
    };
    Ok(Json(json!({"input_tokens": tokens})))
}

/// Exact route names plus each routable backend's served model, in Anthropic's list format.
async fn model_ids(app: &AppState) -> Vec<String> {
    let runtime = app.runtime.load_full();
    let mut ids: Vec<String> = runtime.routes.exact_names().map(str::to_owned).collect();
    for backend in &runtime.backends {
        if let Ok(d) = upstream::discover(&app.client, backend).await {
            if runtime.routes.resolve(&d.served_model).is_some() && !ids.contains(&d.served_model) {
                ids.push(d.served_model);
            }
        }
    }
    ids
}

fn model_info(id: String) -> ModelInfo {
    ModelInfo {
        kind: "model",
        display_name: id.clone(),
        id,
        created_at: "2025-01-01T00:00:00Z",
    }
}

async fn list_models(State(app): State<Arc<AppState>>) -> Json<Value> {
    let data: Vec<ModelInfo> = model_ids(&app).await.into_iter().map(model_info).collect();
    let first = data.first().map(|m| m.id.clone());
    let last = data.last().map(|m| m.id.clone());
    Json(json!({"data": data, "has_more": false, "first_id": first, "last_id": last}))
}

async fn get_model(
    State(app): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<ModelInfo>, ApiError> {
    if app.runtime.load().routes.resolve(&id).is_some() {
        Ok(Json(model_info(id)))
    } else {
        Err(ApiError::new(
            ErrorKind::NotFound,
            format!("model `{id}` is not served here"),
        ))
    }
}
