//! The client-facing HTTP API (Anthropic Messages) and the admin listener.
//!
//! A request reads top-down: `messages` (keys, limits, parse, route) → `forward` (plan,
//! endpoint, retries, fallbacks; `fixes` → `translate` → `upstream`) → `relay` for streams.
//! Every error on the way is an `ApiError`, rendered once as Anthropic error JSON; every
//! answer of the API listener, unknown paths and wrong methods included, carries a
//! `request-id` (one layer, `stamp_request_id`).

use crate::access_log::AccessLog;
use crate::anthropic::{MessagesRequest, ModelInfo};
use crate::config::{BackendRuntime, Runtime};
use crate::context::estimate_prompt_tokens;
use crate::error::{ApiError, ErrorKind};
use crate::forward::{self, Forwarded};
use crate::keys::KeyEntry;
use crate::metrics::{Metrics, ReasonLabels, VersionLabels};
use crate::openai::ChatRequest;
use crate::route::{CompiledRoute, RequestFacts};
use crate::translate::request::{to_openai, BackendShape};
use crate::upstream;
use arc_swap::ArcSwap;
use axum::body::{Body, BodyDataStream, Bytes};
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures::{FutureExt, Stream, StreamExt};
use serde_json::{json, Value};
use std::collections::{HashMap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use switchyard_api::{Protocol, ServerSettings};
use tokio::sync::Semaphore;
use tracing::Instrument;

pub struct AppState {
    pub runtime: ArcSwap<Runtime>,
    pub client: reqwest::Client,
    pub metrics: Metrics,
    pub ready: AtomicBool,
    /// Requests being served now, all keys and routes (`server.maxInFlight`).
    in_flight: Arc<AtomicUsize>,
    counts: CountCache,
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
            in_flight: Arc::new(AtomicUsize::new(0)),
            counts: CountCache::new(),
        })
    }

    /// A place under `server.maxInFlight`, held until the answer (a stream: its last byte)
    /// is sent; over the cap → 529 `overloaded_error` at once, before the body is read.
    fn enter(&self) -> Result<InFlightSlot, ApiError> {
        let max = self.runtime.load().settings.max_in_flight;
        let before = self.in_flight.fetch_add(1, Ordering::AcqRel);
        let slot = InFlightSlot(self.in_flight.clone());
        if before < max {
            return Ok(slot);
        }
        self.refused("max_in_flight");
        Err(ApiError::new(
            ErrorKind::Overloaded,
            format!("the gateway is serving its limit of {max} requests; retry shortly"),
        ))
    }

    fn refused(&self, reason: &'static str) {
        let labels = ReasonLabels { reason };
        self.metrics.requests_refused.get_or_create(&labels).inc();
    }

    /// The request body, within `maxBodyBytes` (413) and `bodyReadTimeoutMs` (408).
    async fn read_body(
        &self,
        headers: &HeaderMap,
        body: Body,
        settings: &ServerSettings,
    ) -> Result<Bytes, ApiError> {
        let limit = Duration::from_millis(settings.body_read_timeout_ms);
        let read = read_body(headers, body, settings.max_body_bytes);
        match tokio::time::timeout(limit, read).await {
            Ok(result) => result,
            Err(_) => {
                self.refused("body_read_timeout");
                Err(ApiError::new(
                    ErrorKind::BodyTimeout,
                    format!(
                        "request body not received within {} ms",
                        settings.body_read_timeout_ms
                    ),
                ))
            }
        }
    }
}

/// One request's place under `maxInFlight`; given back when dropped.
struct InFlightSlot(Arc<AtomicUsize>);

impl Drop for InFlightSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The `request-id` header: Anthropic's name for it, read by Claude Code and the SDKs.
const REQUEST_ID: &str = "request-id";

pub fn api_router(state: Arc<AppState>) -> Router {
    let routes = Router::new()
        .route("/", get(root).head(root))
        .route("/api/hello", get(hello))
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
        // After every route: it applies to the routes registered before it.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found);
    guarded(routes).with_state(state)
}

/// The layers every API answer goes through: a handler's panic becomes that client's 500
/// `api_error` (the process and every other request go on), and every answer gets a
/// `request-id`.
fn guarded<S: Clone + Send + Sync + 'static>(routes: Router<S>) -> Router<S> {
    routes
        .layer(axum::middleware::from_fn(catch_panic))
        .layer(axum::middleware::map_response(stamp_request_id))
}

/// A panicking handler (a bug) answers 500 `api_error` instead of dropping the connection.
/// Panics inside a stream body are caught by [`GuardedBody`].
async fn catch_panic(req: Request, next: Next) -> Response {
    match AssertUnwindSafe(next.run(req)).catch_unwind().await {
        Ok(resp) => resp,
        Err(panic) => {
            tracing::error!(panic = panic_text(&*panic), "request handler panicked");
            internal_error().into_response()
        }
    }
}

fn internal_error() -> ApiError {
    ApiError::new(
        ErrorKind::Api,
        "internal error in the gateway while handling this request",
    )
}

fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<&str>()
        .copied()
        .or_else(|| panic.downcast_ref::<String>().map(String::as_str))
        .unwrap_or("(non-text panic)")
}

/// A stream body that holds its request's place under `maxInFlight` until it ends, and
/// ends with an `error` event (not a cut connection) if producing it panics.
struct GuardedBody {
    inner: BodyDataStream,
    _slot: InFlightSlot,
    done: bool,
}

impl GuardedBody {
    fn wrap(resp: Response, slot: InFlightSlot) -> Response {
        resp.map(|body| {
            Body::from_stream(GuardedBody {
                inner: body.into_data_stream(),
                _slot: slot,
                done: false,
            })
        })
    }
}

impl Stream for GuardedBody {
    type Item = Result<Bytes, axum::Error>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if self.done {
            return Poll::Ready(None);
        }
        let inner = &mut self.inner;
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll_next_unpin(cx))) {
            Ok(poll) => poll,
            Err(panic) => {
                self.done = true;
                tracing::error!(panic = panic_text(&*panic), "stream body panicked");
                let mut out = Vec::new();
                crate::translate::stream::error_event(&mut out, &internal_error());
                Poll::Ready(Some(Ok(Bytes::from(out))))
            }
        }
    }
}

/// Gives an answer without a `request-id` (everything but `messages`, which sets the id of
/// its access line itself) a fresh one.
async fn stamp_request_id(mut resp: Response) -> Response {
    if !resp.headers().contains_key(REQUEST_ID) {
        if let Ok(v) = HeaderValue::from_str(&new_id("req")) {
            resp.headers_mut().insert(REQUEST_ID, v);
        }
    }
    resp
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

/// Claude Code's connection warm-up probe (`HEAD /api/hello`, also `GET`): no I/O, no auth.
/// Axum answers `HEAD` from the `GET` handler, without the body.
async fn hello() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        ErrorKind::NotFound,
        format!("no such endpoint: {method} {}", uri.path()),
    )
}

/// A known path with the wrong method: Anthropic error JSON instead of axum's empty 405.
async fn method_not_allowed(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        ErrorKind::MethodNotAllowed,
        format!("method {method} is not allowed on {}", uri.path()),
    )
}

async fn metrics_text(State(app): State<Arc<AppState>>) -> Response {
    let now = app.in_flight.load(Ordering::Acquire);
    app.metrics
        .requests_in_flight
        .set(i64::try_from(now).unwrap_or(i64::MAX));
    let text = app.metrics.encode();
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
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
    axum::body::to_bytes(body, limit).await.map_err(|e| {
        // http-body-util's `LengthLimitError`, behind axum's error: its only trace is its text.
        if e.to_string().contains("length limit") {
            too_large()
        } else {
            ApiError::invalid(format!("request body could not be read: {e}"))
        }
    })
}

/// JSON → type, with the path of the offending field in the message.
fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    deserialize(&mut serde_json::Deserializer::from_slice(bytes))
}

/// Deserializes with the path of the offending field in the error message.
fn deserialize<'de, D, T>(de: D) -> Result<T, ApiError>
where
    D: serde::Deserializer<'de, Error = serde_json::Error>,
    T: serde::Deserialize<'de>,
{
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

pub fn new_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

async fn messages(State(app): State<Arc<AppState>>, headers: HeaderMap, body: Body) -> Response {
    let request_id = new_id("req");
    let span = tracing::info_span!("request", id = %request_id);
    let mut log = AccessLog::new(request_id.clone(), Instant::now());
    let result = match app.enter() {
        Ok(slot) => handle_messages(&app, &headers, body, &mut log)
            .instrument(span.clone())
            .await
            .map(|done| (done, slot)),
        Err(e) => Err(e),
    };
    let mut resp = match result {
        Ok((Forwarded::Streaming(resp), slot)) => GuardedBody::wrap(resp, slot),
        Ok((Forwarded::Complete(resp), _slot)) => {
            log.status = resp.status().as_u16();
            span.in_scope(|| log.finish(&app.metrics));
            resp
        }
        Err(err) => {
            log.status = err.kind.status().as_u16();
            log.error = Some(err.message.clone());
            span.in_scope(|| log.finish(&app.metrics));
            err.into_response()
        }
    };
    if let Ok(v) = HeaderValue::from_str(&request_id) {
        resp.headers_mut().insert(REQUEST_ID, v);
    }
    resp
}

/// Authentication, parsing and routing; then `forward` takes over.
async fn handle_messages(
    app: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
    log: &mut AccessLog,
) -> Result<Forwarded, ApiError> {
    let rt = app.runtime.load_full();
    let key = rt.keys.authenticate(headers)?;
    log.key = key.name().to_owned();
    // The body before the key's limits: a slow sender holds its connection and a place
    // under maxInFlight (both bounded by bodyReadTimeoutMs), never one of the key's
    // concurrency slots or a request of its quota.
    let bytes = app.read_body(headers, body, &rt.settings).await?;
    let permit = Arc::new(key.admit()?);
    log.limiters.push((key.clone(), permit));
    let mut req: MessagesRequest = parse_json(&bytes)?;
    validate_request(&req)?;
    log.model = req.model.clone();
    let route = resolve(&rt, &req.model)?;
    log.route = route.name.clone();
    key.authorize_route(&route.name)?;
    let route_limiter = rt.route_limits.get(&route.name);
    if let Some(limiter) = route_limiter {
        let permit = Arc::new(limiter.admit()?);
        log.limiters.push((limiter.clone(), permit));
    }
    let estimate = edit_context(&mut req);
    key.check_size(estimate)?;
    if let Some(limiter) = route_limiter {
        limiter.check_size(estimate)?;
    }
    if let Some(answer) = answer_server_tools(&req, estimate, log) {
        return Ok(Forwarded::Complete(answer));
    }
    forward::messages(app, &rt, route, headers, req, estimate, log).await
}

/// Carries out the request's `context_management` edits and returns the prompt estimate.
///
/// Here rather than in `fixes::apply`: the edits shrink the prompt, and everything after this
/// point must see the shrunk one: the size check against the token quotas, the routing rules
/// on input tokens and the `max_tokens` clamp in `forward` (which estimate the request they
/// are given), and `count_tokens`. `fixes` runs per attempt and backend, after those.
fn edit_context(req: &mut MessagesRequest) -> u64 {
    let applied = crate::context_edits::apply(req);
    if applied.cleared_tool_uses > 0 {
        tracing::debug!(
            cleared_tool_uses = applied.cleared_tool_uses,
            cleared_input_tokens = applied.cleared_input_tokens,
            "context_management: old tool results cleared"
        );
    }
    estimate_prompt_tokens(req)
}

/// A request whose only tools are Anthropic server tools (Claude Code's WebSearch/WebFetch
/// call) is answered here: the backend could not run them (see `server_tools`).
fn answer_server_tools(
    req: &MessagesRequest,
    estimate: u64,
    log: &mut AccessLog,
) -> Option<Response> {
    let answer = crate::server_tools::answer(req, estimate, new_id("msg"), new_id("srvtoolu"))?;
    tracing::debug!("server tools only: answered by the gateway, backend not called");
    // No model ran: the access line and the token quotas see no tokens.
    log.stream = req.stream;
    log.stop_reason = Some(crate::anthropic::StopReason::EndTurn);
    Some(if req.stream {
        crate::relay::sse_response(Body::from(answer.to_sse()))
    } else {
        Json(answer.to_json()).into_response()
    })
}

fn validate_request(req: &MessagesRequest) -> Result<(), ApiError> {
    if req.messages.is_empty() {
        return Err(ApiError::invalid(
            "messages: at least one message is required",
        ));
    }
    if req.max_tokens == 0 {
        return Err(ApiError::invalid("max_tokens: must be at least 1"));
    }
    Ok(())
}

fn resolve<'a>(rt: &'a Runtime, model: &str) -> Result<&'a CompiledRoute, ApiError> {
    rt.routes.resolve(model).ok_or_else(|| {
        ApiError::new(
            ErrorKind::NotFound,
            format!("model `{model}` is not served here (no route matches it)"),
        )
    })
}

/// Exact via the backend's `/tokenize` (vLLM) on the translated prompt, else the estimate.
///
/// Limits: a place under `maxInFlight` and the body limits as for `messages`, then the
/// key's requests-per-minute quota (`KeyEntry::admit_count`: not its token quota or
/// concurrency). The backend's cost is bounded by [`CountCache`].
async fn count_tokens(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let _slot = app.enter()?;
    let rt = app.runtime.load_full();
    let key = rt.keys.authenticate(&headers)?;
    let bytes = app.read_body(&headers, body, &rt.settings).await?;
    key.admit_count()?;
    // count_tokens takes a Messages body without `max_tokens`.
    let mut v: Value = parse_json(&bytes)?;
    if let Some(obj) = v.as_object_mut() {
        obj.entry("max_tokens").or_insert(json!(1));
    }
    let mut req: MessagesRequest = deserialize(v)?;
    validate_request(&req)?;
    let route = resolve(&rt, &req.model)?;
    key.authorize_route(&route.name)?;
    let estimate = edit_context(&mut req);
    let plan = route.plan(&forward::facts(&req, &headers, estimate), 0);
    let Some(backend) = plan.backends.first().map(|i| rt.backends[*i].clone()) else {
        return Ok(Json(json!({"input_tokens": estimate})));
    };
    crate::fixes::apply(&mut req, backend.spec.system_messages);
    let estimate = estimate_prompt_tokens(&req);
    let exact = exact_count(&app, &backend, req).await?;
    Ok(Json(json!({"input_tokens": exact.unwrap_or(estimate)})))
}

/// The backend's own count of the translated prompt (Chat Completions backends), `None`
/// when it cannot be had now (the estimate is answered then).
async fn exact_count(
    app: &AppState,
    backend: &BackendRuntime,
    req: MessagesRequest,
) -> Result<Option<u64>, ApiError> {
    let discovered = match upstream::discover(&app.client, backend).await {
        Ok(d) if backend.spec.protocol == Protocol::Openai => d,
        _ => return Ok(None),
    };
    let shape = BackendShape {
        served_model: &discovered.served_model,
        thinking: backend.spec.thinking,
        parameters: &backend.spec.parameters,
    };
    let chat = to_openai(req, 1, &shape)?.request;
    Ok(app.counts.count(&app.client, backend, &chat).await)
}

/// Entries kept by [`CountCache`] (a digest and a number each: ~50 bytes).
const COUNT_CACHE_ENTRIES: usize = 1024;
/// Upstream `/tokenize` calls for `count_tokens` at once, the whole proxy together.
const COUNTS_IN_FLIGHT: usize = 4;

/// Cached counts by digest, and the digests oldest first.
type CountEntries = (HashMap<[u8; 32], u64>, VecDeque<[u8; 32]>);

/// Bounds what `count_tokens` costs the backends, which would otherwise run a tokenizer
/// pass over a whole conversation on every call, for anyone who can reach the proxy.
///
/// - Answers are cached by the SHA-256 of (backend, translated request): Claude Code counts
///   the same prefix (system prompt, tool definitions) again and again. First in, first out,
///   [`COUNT_CACHE_ENTRIES`] entries.
/// - At most [`COUNTS_IN_FLIGHT`] counts go upstream at once; a call beyond that gets the
///   estimate at once rather than queueing behind them (a count is advisory: it must be
///   fast, and generation requests must not wait behind tokenizer passes).
///
/// Not chosen: asking upstream only when the estimate is near the window. Clients show the
/// count (Claude Code's context display), so it must be exact at any size.
struct CountCache {
    entries: Mutex<CountEntries>,
    upstream: Semaphore,
}

impl CountCache {
    fn new() -> Self {
        Self {
            entries: Mutex::new((HashMap::new(), VecDeque::new())),
            upstream: Semaphore::new(COUNTS_IN_FLIGHT),
        }
    }

    async fn count(
        &self,
        client: &reqwest::Client,
        backend: &BackendRuntime,
        chat: &ChatRequest,
    ) -> Option<u64> {
        use sha2::Digest;
        let mut digest = sha2::Sha256::new();
        digest.update(backend.spec.name.as_bytes());
        digest.update([0]);
        digest.update(serde_json::to_vec(chat).ok()?);
        let key: [u8; 32] = digest.finalize().into();
        if let Some(n) = self.lock().0.get(&key) {
            return Some(*n);
        }
        let Ok(_permit) = self.upstream.try_acquire() else {
            tracing::debug!("count_tokens: upstream counts busy; answering the estimate");
            return None;
        };
        match upstream::tokenize(client, backend, &backend.base_url, chat).await {
            Ok(n) => {
                self.insert(key, n);
                Some(n)
            }
            Err(e) => {
                tracing::debug!(error = %e, "exact token count unavailable; using the estimate");
                None
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, CountEntries> {
        self.entries.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn insert(&self, key: [u8; 32], n: u64) {
        let mut guard = self.lock();
        let (map, order) = &mut *guard;
        if map.insert(key, n).is_none() {
            order.push_back(key);
        }
        while order.len() > COUNT_CACHE_ENTRIES {
            if let Some(old) = order.pop_front() {
                map.remove(&old);
            }
        }
    }
}

/// `GET /v1/models` (Claude Code's gateway model discovery, 3 s timeout): built from the
/// configuration alone, never waiting on a backend.
///
/// - Every exact model name of a route, `display_name` the model its backend serves
///   (`servedModel`, else what discovery already found; the id itself until then).
/// - Glob routes (`claude-*`, `*`) list no pattern, since a pattern is not a model id.
///   Instead, each backend's served model is listed when some route matches that name (so
///   `--upstream` lists e.g. `qwen3-coder`). Claude Code keeps only ids containing "claude"
///   or "anthropic": name a route's models exactly to offer them in its `/model` picker.
/// - Only models of routes the caller's key may use.
fn model_list(rt: &Runtime, key: &KeyEntry) -> Vec<ModelInfo> {
    let allowed = |model: &str| {
        rt.routes
            .resolve(model)
            .filter(|r| key.allows_route(&r.name))
    };
    let mut data: Vec<ModelInfo> = rt
        .routes
        .exact_names()
        .filter_map(|id| {
            let route = allowed(id)?;
            let served = first_backend(rt, route, id).and_then(served_model);
            Some(model_info(id.to_owned(), served))
        })
        .collect();
    for served in rt.backends.iter().filter_map(|b| served_model(b)) {
        if allowed(&served).is_some() && !data.iter().any(|m| m.id == served) {
            data.push(model_info(served, None));
        }
    }
    data
}

/// The backend a plain request for `model` goes to first.
fn first_backend<'a>(
    rt: &'a Runtime,
    route: &CompiledRoute,
    model: &str,
) -> Option<&'a BackendRuntime> {
    let facts = RequestFacts {
        model,
        ..Default::default()
    };
    let i = *route.plan(&facts, 0).backends.first()?;
    rt.backends.get(i).map(|b| &**b)
}

/// The backend's model name, if known without asking it.
fn served_model(b: &BackendRuntime) -> Option<String> {
    b.spec
        .served_model
        .clone()
        .or_else(|| b.discovered.get().map(|d| d.served_model.clone()))
}

fn model_info(id: String, display_name: Option<String>) -> ModelInfo {
    ModelInfo {
        kind: "model",
        display_name: display_name.unwrap_or_else(|| id.clone()),
        id,
        created_at: "2025-01-01T00:00:00Z",
    }
}

/// Same authentication as `/v1/messages`.
async fn list_models(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let rt = app.runtime.load_full();
    let key = rt.keys.authenticate(&headers)?;
    let data = model_list(&rt, &key);
    let first = data.first().map(|m| m.id.clone());
    let last = data.last().map(|m| m.id.clone());
    Ok(Json(
        json!({"data": data, "has_more": false, "first_id": first, "last_id": last}),
    ))
}

async fn get_model(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<ModelInfo>, ApiError> {
    let rt = app.runtime.load_full();
    let key = rt.keys.authenticate(&headers)?;
    let route = rt.routes.resolve(&id).filter(|r| key.allows_route(&r.name));
    if let Some(route) = route {
        let served = first_backend(&rt, route, &id).and_then(served_model);
        Ok(Json(model_info(id, served)))
    } else {
        Err(ApiError::new(
            ErrorKind::NotFound,
            format!("model `{id}` is not served here"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn serve(router: Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await });
        format!("http://{addr}")
    }

    /// A panicking handler answers its own client 500 `api_error`; the server goes on.
    #[tokio::test]
    async fn a_handler_panic_is_that_clients_500() {
        async fn boom() -> &'static str {
            panic!("a bug in one request")
        }
        let routes = Router::new()
            .route("/boom", get(boom))
            .route("/ok", get(|| async { "ok" }));
        let url = serve(guarded(routes)).await;
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let resp = client.get(format!("{url}/boom")).send().await.unwrap();
        assert_eq!(resp.status(), 500);
        assert!(resp.headers().contains_key(REQUEST_ID));
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["type"], "error");
        assert_eq!(body["error"]["type"], "api_error");
        let ok = client.get(format!("{url}/ok")).send().await.unwrap();
        assert_eq!(ok.text().await.unwrap(), "ok");
    }

    /// A stream body that panics ends with an `error` event and frees its place.
    #[tokio::test]
    async fn a_stream_panic_ends_with_an_error_event() {
        let in_flight = Arc::new(AtomicUsize::new(1));
        let chunks =
            futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from("a")), Ok(Bytes::new())])
                .map(|c| match c {
                    Ok(b) if b.is_empty() => panic!("a bug mid-stream"),
                    other => other,
                });
        let resp = Response::new(Body::from_stream(chunks));
        let resp = GuardedBody::wrap(resp, InFlightSlot(in_flight.clone()));
        let bytes = axum::body::to_bytes(resp.into_body(), 1 << 20)
            .await
            .unwrap();
        let text = String::from_utf8(bytes.to_vec()).unwrap();
        assert!(text.starts_with("a"), "{text}");
        assert!(
            text.contains("event: error") && text.contains("api_error"),
            "{text}"
        );
        assert_eq!(in_flight.load(Ordering::Acquire), 0);
    }
}
