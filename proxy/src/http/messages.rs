//! `POST /v1/messages`: body, authentication, parsing, context edits and routing; then
//! `forward` takes over.

use super::guard::{GuardedBody, REQUEST_ID};
use crate::config::Runtime;
use crate::error::{ApiError, ErrorKind};
use crate::fixes::context::estimate_prompt_tokens;
use crate::forward::{self, Forwarded};
use crate::observe::access_log::AccessLog;
use crate::observe::capture::Captured;
use crate::protocol::anthropic::MessagesRequest;
use crate::routing::keys::KeyEntry;
use crate::routing::route::CompiledRoute;
use crate::state::{new_id, AppState};
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_api::ResponsesApi;
use switchyard_api::ServerSettings;
use tracing::Instrument;

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
///
/// The happy path parses once without path tracking; only a body that fails is parsed again
/// with it, for the message (tracking wraps the deserializer of every field: bench/PROFILE.md).
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes)
        .or_else(|_| deserialize(&mut serde_json::Deserializer::from_slice(bytes)))
}

/// Deserializes with the path of the offending field in the error message.
pub(super) fn deserialize<'de, D, T>(de: D) -> Result<T, ApiError>
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

pub(super) async fn messages(
    State(app): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
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
            span.in_scope(|| log.finish(&app.metrics, &app.records));
            resp
        }
        Err(err) => {
            log.status = err.kind.status().as_u16();
            log.error = Some(err.message.clone());
            span.in_scope(|| log.finish(&app.metrics, &app.records));
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
    let admitted = admit(app, headers, body, log).await?;
    let req: MessagesRequest = parse_json(&admitted.body)?;
    route_and_forward(app, admitted, headers, req, log).await
}

/// A request past authentication and its key's admission, body read.
pub(super) struct Admitted {
    rt: Arc<Runtime>,
    key: Arc<KeyEntry>,
    pub body: Bytes,
}

/// The key, then the body (before the key's limits: a slow sender holds its connection and
/// a place under maxInFlight, both bounded by bodyReadTimeoutMs, never one of the key's
/// concurrency slots or a request of its quota), then the key's admission.
pub(super) async fn admit(
    app: &Arc<AppState>,
    headers: &HeaderMap,
    body: Body,
    log: &mut AccessLog,
) -> Result<Admitted, ApiError> {
    let rt = app.runtime.load_full();
    let key = rt.keys.authenticate(headers)?;
    log.key = key.name().to_owned();
    let body = read_body_within(app, headers, body, &rt.settings).await?;
    if rt.settings.log_content || key.log_content() {
        log.capture = Some(Box::new(Captured::of_request(&body)));
    }
    let permit = Arc::new(key.admit()?);
    log.limiters.push((key.clone(), permit));
    Ok(Admitted { rt, key, body })
}

impl Admitted {
    /// Whether `model`'s route forwards Responses requests unchanged (`responsesApi:
    /// forward`) instead of translating them.
    pub(super) fn forwards_responses(&self, model: &str) -> bool {
        self.rt
            .routes
            .resolve(model)
            .is_some_and(|r| r.responses_api == ResponsesApi::Forward)
    }
}

/// Validation, the route and its limits, context edits; then `forward` takes over. Every
/// front door (Messages, Chat Completions, Responses) ends here with a Messages request.
pub(super) async fn route_and_forward(
    app: &Arc<AppState>,
    admitted: Admitted,
    headers: &HeaderMap,
    mut req: MessagesRequest,
    log: &mut AccessLog,
) -> Result<Forwarded, ApiError> {
    let Admitted { rt, key, .. } = admitted;
    validate_request(&req)?;
    let (route, route_limiter) = enter_route(&rt, &key, &req.model, log)?;
    let (estimate, edited) = edit_context(&mut req);
    if let Some(note) = edited {
        log.fixed_because("context_edits", note);
    }
    check_size(&key, route_limiter, estimate)?;
    if let Some(answer) = answer_server_tools(&req, estimate, log) {
        return Ok(Forwarded::Complete(answer));
    }
    forward::messages(app, &rt, route, headers, req, estimate, log).await
}

/// A Responses request on a forwarding route: the same gates, then `forward::responses`.
pub(super) async fn forward_responses(
    app: &Arc<AppState>,
    admitted: Admitted,
    headers: &HeaderMap,
    body: serde_json::Value,
    log: &mut AccessLog,
) -> Result<Forwarded, ApiError> {
    let Admitted {
        rt,
        key,
        body: bytes,
    } = admitted;
    let model = body["model"].as_str().unwrap_or_default().to_owned();
    let (route, route_limiter) = enter_route(&rt, &key, &model, log)?;
    // Bytes / 4: nothing is translated here, so no finer estimate is at hand.
    check_size(&key, route_limiter, (bytes.len() / 4) as u64)?;
    forward::responses(app, &rt, route, headers, body, bytes.len(), log).await
}

/// The route for `model`, once the key may use it and the route's own limits admit the
/// request (its concurrency slot is held by the access line until the request ends).
fn enter_route<'a>(
    rt: &'a Runtime,
    key: &KeyEntry,
    model: &str,
    log: &mut AccessLog,
) -> Result<(&'a CompiledRoute, Option<&'a Arc<KeyEntry>>), ApiError> {
    log.model = model.to_owned();
    let route = resolve(rt, model)?;
    log.route = route.name.clone();
    key.authorize_route(&route.name)?;
    let route_limiter = rt.route_limits.get(&route.name);
    if let Some(limiter) = route_limiter {
        let permit = Arc::new(limiter.admit()?);
        log.limiters.push((limiter.clone(), permit));
    }
    Ok((route, route_limiter))
}

/// The key's and the route's token quotas have room for a prompt of `estimate` tokens.
fn check_size(
    key: &KeyEntry,
    route_limiter: Option<&Arc<KeyEntry>>,
    estimate: u64,
) -> Result<(), ApiError> {
    key.check_size(estimate)?;
    if let Some(limiter) = route_limiter {
        limiter.check_size(estimate)?;
    }
    Ok(())
}

/// Carries out the request's `context_management` edits; returns the prompt estimate and,
/// when an edit cleared anything, what.
///
/// Here rather than in `fixes::apply`: the edits shrink the prompt, and everything after this
/// point must see the shrunk one: the size check against the token quotas, the routing rules
/// on input tokens and the `max_tokens` clamp in `forward` (which estimate the request they
/// are given), and `count_tokens`. `fixes` runs per attempt and backend, after those.
pub(super) fn edit_context(req: &mut MessagesRequest) -> (u64, Option<String>) {
    let applied = crate::fixes::context_edits::apply(req);
    let note = (applied.cleared_tool_uses > 0).then(|| {
        tracing::debug!(
            cleared_tool_uses = applied.cleared_tool_uses,
            cleared_input_tokens = applied.cleared_input_tokens,
            "context_management: old tool results cleared"
        );
        format!(
            "context_management: {} old tool result(s) cleared, ≈ {} input tokens",
            applied.cleared_tool_uses, applied.cleared_input_tokens
        )
    });
    (estimate_prompt_tokens(req), note)
}

/// A request whose only tools are Anthropic server tools (Claude Code's WebSearch/WebFetch
/// call) is answered here: the backend could not run them (see `server_tools`).
fn answer_server_tools(
    req: &MessagesRequest,
    estimate: u64,
    log: &mut AccessLog,
) -> Option<Response> {
    let answer =
        crate::fixes::server_tools::answer(req, estimate, new_id("msg"), new_id("srvtoolu"))?;
    tracing::debug!("server tools only: answered by the gateway, backend not called");
    // No model ran: the access line and the token quotas see no tokens.
    log.stream = req.stream;
    log.stop_reason = Some(crate::protocol::anthropic::StopReason::EndTurn);
    if log.capture.is_some() {
        log.capture_response(&answer.to_json());
    }
    Some(if req.stream {
        crate::forward::relay::sse_response(Body::from(answer.to_sse()))
    } else {
        Json(answer.to_json()).into_response()
    })
}

pub(super) fn validate_request(req: &MessagesRequest) -> Result<(), ApiError> {
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

pub(super) fn resolve<'a>(rt: &'a Runtime, model: &str) -> Result<&'a CompiledRoute, ApiError> {
    rt.routes.resolve(model).ok_or_else(|| {
        ApiError::new(
            ErrorKind::NotFound,
            format!("model `{model}` is not served here (no route matches it)"),
        )
    })
}

/// The request body, within `maxBodyBytes` (413) and `bodyReadTimeoutMs` (408).
pub(super) async fn read_body_within(
    app: &AppState,
    headers: &HeaderMap,
    body: Body,
    settings: &ServerSettings,
) -> Result<Bytes, ApiError> {
    let limit = Duration::from_millis(settings.body_read_timeout_ms);
    let read = read_body(headers, body, settings.max_body_bytes);
    match tokio::time::timeout(limit, read).await {
        Ok(result) => result,
        Err(_) => {
            app.refused("body_read_timeout");
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
