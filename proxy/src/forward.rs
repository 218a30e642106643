//! Sending one client request to a backend: the route's plan, endpoint choice, retries with
//! backoff and a retry budget, fallbacks, and the per-protocol exchange.
//!
//! A request moves to another endpoint or the next backend only while nothing has reached
//! the client: on connect failure, timeout, 5xx/429/503/529, or a stream that fails before it
//! is committed. Once `message_start` is out, failures become an `error` event.

use crate::access_log::{redacted_content, AccessLog};
use crate::anthropic::{Content, ContentBlock, MessagesRequest, ThinkingKind};
use crate::balance::{self, Endpoint};
use crate::config::{BackendRuntime, Runtime};
use crate::context::{clamp_max_tokens, estimate_prompt_tokens, Overflow};
use crate::error::{ApiError, ErrorKind};
use crate::metrics::{BackendLabels, KindLabels};
use crate::relay::{self, Relay, StreamGuard, Timers};
use crate::route::{CompiledRoute, RequestFacts};
use crate::server::{new_id, AppState};
use crate::translate::request::{to_openai, BackendShape};
use crate::translate::response::to_anthropic;
use crate::translate::stream::StreamTranslator;
use crate::upstream::{self, Item, UpstreamError};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use serde_json::{json, Value};
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_api::Protocol;

/// How a forwarded request ended.
pub enum Forwarded {
    /// Fully answered; the caller writes the access log.
    Complete(Response),
    /// A committed stream; its body writes the access log when it ends.
    Streaming(Response),
}

enum AttemptError {
    Upstream(UpstreamError),
    Client(ApiError),
}

impl From<UpstreamError> for AttemptError {
    fn from(e: UpstreamError) -> Self {
        AttemptError::Upstream(e)
    }
}

pub fn count_upstream_error(app: &AppState, backend: &str, e: &UpstreamError) {
    app.metrics
        .upstream_errors
        .get_or_create(&KindLabels {
            backend: backend.to_owned(),
            kind: e.kind(),
        })
        .inc();
}

/// The Claude Code session: the `X-Claude-Code-Session-Id` header, else the `session_id`
/// inside the JSON string `metadata.user_id`.
pub fn session_id(headers: &HeaderMap, req: &MessagesRequest) -> Option<String> {
    if let Some(v) = headers
        .get("x-claude-code-session-id")
        .and_then(|v| v.to_str().ok())
    {
        return Some(v.to_owned());
    }
    let user_id = req.metadata.as_ref()?.user_id.as_deref()?;
    let v: Value = serde_json::from_str(user_id).ok()?;
    v.get("session_id")?.as_str().map(str::to_owned)
}

fn has_images(req: &MessagesRequest) -> bool {
    fn blocks_have_images(blocks: &[ContentBlock]) -> bool {
        blocks.iter().any(|b| match b {
            ContentBlock::Image { .. } => true,
            ContentBlock::ToolResult {
                content: Some(Content::Blocks(inner)),
                ..
            } => blocks_have_images(inner),
            _ => false,
        })
    }
    req.messages
        .iter()
        .any(|m| matches!(&m.content, Content::Blocks(b) if blocks_have_images(b)))
}

pub fn facts<'a>(
    req: &'a MessagesRequest,
    headers: &'a HeaderMap,
    input_tokens: u64,
) -> RequestFacts<'a> {
    RequestFacts {
        model: &req.model,
        agent_header: headers.contains_key("x-claude-code-agent-id"),
        thinking: req
            .thinking
            .as_ref()
            .is_some_and(|t| t.kind != ThinkingKind::Disabled),
        input_tokens,
        images: has_images(req),
        tools: req.tools.as_ref().is_some_and(|t| !t.is_empty()),
        headers: headers
            .iter()
            .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)))
            .collect(),
    }
}

pub async fn messages(
    app: &Arc<AppState>,
    rt: &Arc<Runtime>,
    route: &CompiledRoute,
    headers: &HeaderMap,
    req: MessagesRequest,
    log: &mut AccessLog,
) -> Result<Forwarded, ApiError> {
    let estimate = estimate_prompt_tokens(&req);
    let session = session_id(headers, &req);
    let session_hash = session.as_deref().map(balance::session_hash);
    log.session_id = session;
    log.stream = req.stream;
    if rt.settings.log_content {
        log.content = Some(redacted_content(
            &serde_json::to_value(&req.messages).unwrap_or_default(),
        ));
    }
    let point = session_hash.unwrap_or_else(rand_u64);
    let plan = route.plan(&facts(&req, headers, estimate), point);
    log.rule = plan.rule.map(str::to_owned);

    // (backend, endpoint, reachable) of every attempt so far.
    let mut tried: Vec<(usize, usize, bool)> = Vec::new();
    let mut last_error: Option<UpstreamError> = None;
    'plan: for (position, &bi) in plan.backends.iter().enumerate() {
        let backend = &rt.backends[bi];
        let mut attempts_here = 0;
        loop {
            if attempts_here >= route.retries.attempts {
                continue 'plan;
            }
            let now = Instant::now();
            // Untried endpoints first; then any that answered (a 5xx or 429 may pass), never
            // one that refused the connection in this request.
            let here = || tried.iter().filter(|(b, _, _)| *b == bi);
            let all_tried: Vec<usize> = here().map(|(_, e, _)| *e).collect();
            let unreachable: Vec<usize> = here()
                .filter(|(_, _, ok)| !ok)
                .map(|(_, e, _)| *e)
                .collect();
            let Some(ei) = balance::pick(&backend.endpoints, session_hash, &all_tried, now)
                .or_else(|| balance::pick(&backend.endpoints, session_hash, &unreachable, now))
            else {
                continue 'plan;
            };
            if !tried.is_empty() {
                if !backend.retry_budget.try_retry(now) {
                    app.metrics
                        .retry_budget_exhausted
                        .get_or_create(&KindLabels {
                            backend: backend.spec.name.clone(),
                            kind: "retry",
                        })
                        .inc();
                    tracing::warn!(backend = %backend.spec.name, "retry budget exhausted; not retrying");
                    break 'plan;
                }
                app.metrics
                    .retries
                    .get_or_create(&KindLabels {
                        backend: backend.spec.name.clone(),
                        kind: "attempt",
                    })
                    .inc();
                // Back off before retrying the same backend; a fallback is tried at once.
                if attempts_here > 0 {
                    let r = &route.retries;
                    tokio::time::sleep(balance::backoff(
                        r.backoff_ms,
                        r.max_backoff_ms,
                        attempts_here,
                        rand_u64(),
                    ))
                    .await;
                }
            }
            backend.retry_budget.record_request(now);
            attempts_here += 1;
            log.attempts += 1;
            let endpoint = backend.endpoints[ei].clone();
            log.backend = backend.spec.name.clone();
            log.endpoint = endpoint.url.clone();
            match attempt(
                app,
                rt,
                backend,
                &endpoint,
                route,
                headers,
                req.clone(),
                estimate,
                log,
            )
            .await
            {
                Ok(done) => {
                    endpoint.record_success();
                    if position > 0 {
                        app.metrics
                            .fallbacks
                            .get_or_create(&BackendLabels {
                                route: route.name.clone(),
                                backend: backend.spec.name.clone(),
                            })
                            .inc();
                    }
                    return Ok(done);
                }
                Err(AttemptError::Client(e)) => return Err(e),
                Err(AttemptError::Upstream(e)) => {
                    tried.push((bi, ei, !matches!(e, UpstreamError::Unreachable { .. })));
                    count_upstream_error(app, &backend.spec.name, &e);
                    if !e.retryable() {
                        endpoint.record_success(); // it answered; the request was at fault
                        return Err(e.to_api());
                    }
                    tracing::info!(backend = %backend.spec.name, endpoint = %endpoint.url, error = %e, "attempt failed");
                    // A 429 means busy, not broken: it does not count towards ejection.
                    let broken = !matches!(e, UpstreamError::Status { status: 429, .. });
                    if broken && endpoint.record_failure(&backend.spec.outlier, Instant::now()) {
                        app.metrics
                            .ejections
                            .get_or_create(&KindLabels {
                                backend: backend.spec.name.clone(),
                                kind: "consecutive_failures",
                            })
                            .inc();
                        tracing::warn!(backend = %backend.spec.name, endpoint = %endpoint.url, "endpoint ejected");
                    }
                    last_error = Some(e);
                }
            }
        }
    }
    Err(match last_error {
        Some(e) => e.to_api(),
        None => ApiError::new(
            ErrorKind::Overloaded,
            format!(
                "no healthy backend for route `{}`; try again shortly",
                route.name
            ),
        ),
    })
}

fn rand_u64() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

/// Headers a pass-through backend gets from the client when it forwards client auth.
fn client_auth_headers(backend: &BackendRuntime, headers: &HeaderMap) -> Vec<(String, String)> {
    if !backend.spec.forward_client_auth {
        return Vec::new();
    }
    ["x-api-key", "authorization"]
        .iter()
        .filter_map(|k| {
            headers
                .get(*k)
                .and_then(|v| v.to_str().ok())
                .map(|v| (k.to_string(), v.to_owned()))
        })
        .collect()
}

/// One try against one endpoint.
#[allow(clippy::too_many_arguments)]
async fn attempt(
    app: &Arc<AppState>,
    rt: &Runtime,
    backend: &Arc<BackendRuntime>,
    endpoint: &Arc<Endpoint>,
    route: &CompiledRoute,
    headers: &HeaderMap,
    mut req: MessagesRequest,
    estimate: u64,
    log: &mut AccessLog,
) -> Result<Forwarded, AttemptError> {
    let in_flight = endpoint.start();
    let discovered = upstream::discover(&app.client, backend).await?;
    crate::fixes::apply(&mut req, backend.spec.system_messages);
    let max_tokens = match discovered.context_window {
        Some(window) => clamp_max_tokens(req.max_tokens, window, estimate),
        None => req.max_tokens,
    };
    let timers = Timers::new(rt.settings.ping_interval_ms, &route.timeouts);
    let commit_after = Duration::from_millis(rt.settings.commit_after_ms);
    let client_model = req.model.clone();
    let mut extra_headers = client_auth_headers(backend, headers);
    let stream = req.stream;

    match backend.spec.protocol {
        Protocol::Openai => {
            let stop_sequences = req.stop_sequences.clone().unwrap_or_default();
            let text_tools =
                backend.spec.text_tool_calls && req.tools.as_ref().is_some_and(|t| !t.is_empty());
            let shape = BackendShape {
                served_model: &discovered.served_model,
                thinking: backend.spec.thinking,
                parameters: &backend.spec.parameters,
            };
            let translated = to_openai(req, max_tokens, &shape).map_err(AttemptError::Client)?;
            for name in &translated.dropped {
                tracing::debug!(field = %name, backend = %backend.spec.name, "field not supported by backend; dropped");
                app.metrics
                    .dropped_params
                    .get_or_create(&KindLabels {
                        backend: backend.spec.name.clone(),
                        kind: crate::metrics::param_class(name),
                    })
                    .inc();
            }
            let mut chat = translated.request;
            let resp = send(
                app,
                rt.client_for(&route.timeouts),
                backend,
                endpoint,
                "/chat/completions",
                &route.timeouts,
                chat.max_tokens,
                &extra_headers,
                |m| {
                    chat.max_tokens = m;
                    serde_json::to_vec(&chat).expect("request serializes")
                },
            )
            .await?;
            let message_id = new_id("msg");
            if !stream {
                let bytes = read_whole(backend, resp, &timers, log.started).await?;
                let chat_resp: crate::openai::ChatResponse = serde_json::from_slice(&bytes)
                    .map_err(|e| UpstreamError::Protocol {
                        backend: backend.spec.name.clone(),
                        detail: e.to_string(),
                    })?;
                let msg = to_anthropic(
                    chat_resp,
                    message_id,
                    client_model,
                    estimate,
                    text_tools,
                    &stop_sequences,
                );
                log.usage = msg.usage;
                log.stop_reason = msg.stop_reason;
                return Ok(Forwarded::Complete(Json(msg).into_response()));
            }
            let mut chunks = upstream::chat_chunks(backend, resp);
            let mut tr = StreamTranslator::new(
                message_id,
                client_model,
                estimate,
                text_tools,
                stop_sequences,
            );
            let mut first = Vec::new();
            // Hold the response back briefly: a failure now can still be retried or become a
            // real HTTP status.
            let wait = commit_after.min(timers.first_token);
            match tokio::time::timeout(wait, chunks.next()).await {
                Ok(Some(Ok(Item::Data(chunk)))) => {
                    tr.on_chunk(chunk, &mut first);
                    log.ttft = Some(log.started.elapsed());
                }
                Ok(Some(Ok(Item::Done))) => tr.finish(&mut first),
                Ok(Some(Err(e))) => return Err(e.into()),
                Ok(None) => {
                    return Err(UpstreamError::Interrupted {
                        backend: backend.spec.name.clone(),
                        detail: "empty response".into(),
                    }
                    .into())
                }
                Err(_) => tr.start(&mut first),
            }
            let guard = StreamGuard::new(app.clone(), log.clone(), in_flight);
            Ok(Forwarded::Streaming(relay::sse_response(
                relay::openai_body(chunks, tr, first, guard, timers),
            )))
        }
        Protocol::Anthropic => {
            let version = headers
                .get("anthropic-version")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("2023-06-01")
                .to_owned();
            extra_headers.push(("anthropic-version".into(), version));
            req.model = discovered.served_model.clone();
            for name in &backend.spec.parameters.drop {
                req.extra.remove(name);
            }
            let resp = send(
                app,
                rt.client_for(&route.timeouts),
                backend,
                endpoint,
                "/messages",
                &route.timeouts,
                max_tokens,
                &extra_headers,
                |m| {
                    req.max_tokens = m;
                    serde_json::to_vec(&req).expect("request serializes")
                },
            )
            .await?;
            if !stream {
                let bytes = read_whole(backend, resp, &timers, log.started).await?;
                let mut msg: Value =
                    serde_json::from_slice(&bytes).map_err(|e| UpstreamError::Protocol {
                        backend: backend.spec.name.clone(),
                        detail: e.to_string(),
                    })?;
                msg["model"] = json!(client_model);
                log.usage = relay::ensure_usage(&mut msg["usage"]);
                log.stop_reason = serde_json::from_value(msg["stop_reason"].clone()).ok();
                return Ok(Forwarded::Complete(Json(msg).into_response()));
            }
            let mut events = upstream::anthropic_events(backend, resp);
            let first =
                match tokio::time::timeout(commit_after.min(timers.first_token), events.next())
                    .await
                {
                    Ok(Some(Err(e))) => return Err(e.into()),
                    Ok(Some(Ok(item))) => Some(item),
                    Ok(None) => {
                        return Err(UpstreamError::Interrupted {
                            backend: backend.spec.name.clone(),
                            detail: "empty response".into(),
                        }
                        .into())
                    }
                    Err(_) => None,
                };
            let guard = StreamGuard::new(app.clone(), log.clone(), in_flight);
            let relay = Relay::new(client_model, estimate);
            Ok(Forwarded::Streaming(relay::sse_response(
                relay::anthropic_body(events, relay, first, guard, timers),
            )))
        }
    }
}

/// Sends with the route's first-token timeout on the response headers. When vLLM says
/// prompt + `max_tokens` is too large it also states the exact prompt size, so one resend with
/// the exact clamp always fits.
#[allow(clippy::too_many_arguments)]
async fn send(
    app: &AppState,
    client: &reqwest::Client,
    backend: &BackendRuntime,
    endpoint: &Endpoint,
    path: &str,
    timeouts: &switchyard_api::Timeouts,
    mut max_tokens: u32,
    extra_headers: &[(String, String)],
    mut body: impl FnMut(u32) -> Vec<u8>,
) -> Result<reqwest::Response, UpstreamError> {
    let limit = Duration::from_millis(timeouts.first_token_ms);
    let timeout_error = || UpstreamError::Timeout {
        backend: backend.spec.name.clone(),
        detail: "no response headers within the route's firstTokenMs".into(),
    };
    let once = |bytes: Vec<u8>| async move {
        tokio::time::timeout(
            limit,
            upstream::send(client, backend, &endpoint.url, path, bytes, extra_headers),
        )
        .await
        .unwrap_or_else(|_| Err(timeout_error()))
    };
    match once(body(max_tokens)).await {
        Err(UpstreamError::Overflow(Overflow::OutputTooLarge { prompt, window })) => {
            app.metrics
                .context_retries
                .get_or_create(&KindLabels {
                    backend: backend.spec.name.clone(),
                    kind: "max_tokens",
                })
                .inc();
            max_tokens = clamp_max_tokens(max_tokens, window as u32, prompt);
            tracing::debug!(
                prompt,
                window,
                max_tokens,
                "re-clamped max_tokens to vLLM's prompt count"
            );
            once(body(max_tokens)).await
        }
        other => other,
    }
}

/// A non-streaming body, within the route's total timeout.
async fn read_whole(
    backend: &BackendRuntime,
    resp: reqwest::Response,
    timers: &Timers,
    started: Instant,
) -> Result<axum::body::Bytes, UpstreamError> {
    let left = (started + timers.total).saturating_duration_since(Instant::now());
    tokio::time::timeout(left, upstream::json_body(backend, resp))
        .await
        .unwrap_or_else(|_| {
            Err(UpstreamError::Timeout {
                backend: backend.spec.name.clone(),
                detail: "response not complete within the route's totalMs".into(),
            })
        })
}
