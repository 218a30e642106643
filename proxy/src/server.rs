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
use crate::metrics::{Metrics, VersionLabels};
use crate::route::{CompiledRoute, RequestFacts};
use crate::translate::request::{to_openai, BackendShape};
use crate::upstream;
use arc_swap::ArcSwap;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
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

/// The `request-id` header: Anthropic's name for it, read by Claude Code and the SDKs.
const REQUEST_ID: &str = "request-id";

pub fn api_router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/", get(root).head(root))
        .route("/api/hello", get(hello))
        .route("/v1/messages", post(messages))
        .route("/v1/messages/count_tokens", post(count_tokens))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{id}", get(get_model))
        // After every route: it applies to the routes registered before it.
        .method_not_allowed_fallback(method_not_allowed)
        .fallback(not_found)
        .layer(axum::middleware::map_response(stamp_request_id))
        .with_state(state)
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
    let result = handle_messages(&app, &headers, body, &mut log)
        .instrument(span.clone())
        .await;
    let mut resp = match result {
        Ok(Forwarded::Streaming(resp)) => resp,
        Ok(Forwarded::Complete(resp)) => {
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
    let permit = Arc::new(key.admit()?);
    log.limiters.push((key.clone(), permit));
    let bytes = read_body(headers, body, rt.settings.max_body_bytes).await?;
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
    forward::messages(app, &rt, route, headers, req, log).await
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
async fn count_tokens(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let rt = app.runtime.load_full();
    let key = rt.keys.authenticate(&headers)?;
    let bytes = read_body(&headers, body, rt.settings.max_body_bytes).await?;
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
    let discovered = match upstream::discover(&app.client, &backend).await {
        Ok(d) if backend.spec.protocol == Protocol::Openai => d,
        _ => return Ok(Json(json!({"input_tokens": estimate}))),
    };
    let shape = BackendShape {
        served_model: &discovered.served_model,
        thinking: backend.spec.thinking,
        parameters: &backend.spec.parameters,
    };
    let chat = to_openai(req, 1, &shape)?.request;
    let tokens = match upstream::tokenize(&app.client, &backend, &backend.base_url, &chat).await {
        Ok(n) => n,
        Err(e) => {
            tracing::debug!(error = %e, "exact token count unavailable; using the estimate");
            estimate
        }
    };
    Ok(Json(json!({"input_tokens": tokens})))
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
