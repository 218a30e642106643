//! The client-facing HTTP API (Anthropic Messages) and the admin listener.
//!
//! A request reads top-down: `messages` (keys, limits, parse, route) → `forward` (plan,
//! endpoint, retries, fallbacks; `fixes` → `translate` → `upstream`) → `relay` for streams.
//! Every error on the way is an `ApiError`, rendered once as Anthropic error JSON.

use crate::access_log::AccessLog;
use crate::anthropic::{MessagesRequest, ModelInfo};
use crate::config::Runtime;
use crate::context::estimate_prompt_tokens;
use crate::error::{ApiError, ErrorKind};
use crate::forward::{self, Forwarded};
use crate::metrics::{Metrics, VersionLabels};
use crate::route::CompiledRoute;
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
        resp.headers_mut().insert("request-id", v);
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
    let req: MessagesRequest = parse_json(&bytes)?;
    validate_request(&req)?;
    log.model = req.model.clone();
    let route = resolve(&rt, &req.model)?;
    log.route = route.name.clone();
    key.authorize_route(&route.name)?;
    if let Some(limiter) = rt.route_limits.get(&route.name) {
        let permit = Arc::new(limiter.admit()?);
        log.limiters.push((limiter.clone(), permit));
    }
    forward::messages(app, &rt, route, headers, req, log).await
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
    let estimate = estimate_prompt_tokens(&req);
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
    let tokens = match upstream::tokenize(&app.client, &backend, body).await {
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
