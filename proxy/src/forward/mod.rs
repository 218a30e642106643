//! Sending one client request to a backend: the route's plan, endpoint choice, retries with
//! backoff and a retry budget, fallbacks, and the per-protocol exchange.
//!
//! A request moves to another endpoint or the next backend only while nothing has reached
//! the client: on connect failure, timeout, 5xx/429/503/529, or a stream that fails before it
//! is committed. Once `message_start` is out, failures become an `error` event.

pub mod relay;
mod responses;

pub use responses::responses;

use crate::config::Runtime;
use crate::error::{ApiError, ErrorKind};
use crate::fixes::context::{self, Budget, Fit, Overflow, TooLong};
use crate::observe::access_log::AccessLog;
use crate::observe::metrics::{BackendLabels, KindLabels};
use crate::protocol::anthropic::{Content, ContentBlock, MessagesRequest, OutBlock, ThinkingKind};
use crate::protocol::openai::ChatRequest;
use crate::routing::balance::{self, Endpoint, InFlight, Verdict};
use crate::routing::route::{CompiledRoute, RequestFacts};
use crate::state::{new_id, AppState};
use crate::translate::fills_window;
use crate::translate::request::{to_openai, BackendShape};
use crate::translate::response::to_anthropic;
use crate::translate::stream::StreamTranslator;
use crate::upstream::backend::BackendRuntime;
use crate::upstream::{self, Discovered, Item, UpstreamError, UpstreamStream};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures::StreamExt;
use relay::{Relay, StreamGuard, Timers};
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
    /// The prompt does not fit this backend's window (a larger one may take it).
    TooLong(ApiError),
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

/// Claude Code's subagent id, sent on a subagent's requests (fixtures/claude-code).
const AGENT_HEADER: &str = "x-claude-code-agent-id";

/// The client's session, for affinity: Claude Code's `X-Claude-Code-Session-Id` header or
/// Codex's `session-id`; else the `session_id` inside the JSON string `metadata.user_id`
/// (Claude Code), else `metadata.user_id` itself (OpenAI clients' `user`, older Claude Code
/// CLIs' `user_…_session_…`): the same conversation keeps its backend and prefix cache.
pub fn session_id(headers: &HeaderMap, req: &MessagesRequest) -> Option<String> {
    if let Some(v) = session_header(headers) {
        return Some(v.to_owned());
    }
    let user_id = req.metadata.as_ref()?.user_id.as_deref()?;
    match serde_json::from_str::<Value>(user_id) {
        Ok(v) => v.get("session_id")?.as_str().map(str::to_owned),
        Err(_) => Some(user_id.to_owned()),
    }
}

/// A client's session header: Claude Code's `X-Claude-Code-Session-Id`, Codex's
/// `session-id`.
fn session_header(headers: &HeaderMap) -> Option<&str> {
    ["x-claude-code-session-id", "session-id"]
        .iter()
        .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()))
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
        agent_header: headers.contains_key(AGENT_HEADER),
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

/// What is forwarded: a Messages request (every door but a forwarding Responses route), or
/// a Responses request sent unchanged (`responsesApi: forward`, `responses.rs`).
#[derive(Clone)]
enum Payload {
    Messages(Box<MessagesRequest>),
    Responses(Value),
}

/// Forwards a parsed, admitted request; `estimate` is the caller's prompt estimate of it
/// (made once, after the context edits).
pub async fn messages(
    app: &Arc<AppState>,
    rt: &Arc<Runtime>,
    route: &CompiledRoute,
    headers: &HeaderMap,
    req: MessagesRequest,
    estimate: u64,
    log: &mut AccessLog,
) -> Result<Forwarded, ApiError> {
    let session = note(log, session_id(headers, &req), req.stream);
    log.subagent = headers
        .get(AGENT_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let plan = route.plan(
        &facts(&req, headers, estimate),
        session.unwrap_or_else(rand_u64),
    );
    log.rule = plan.rule.map(str::to_owned);
    app.records.started(|| log.started_event());
    let life = Life::new(app, rt, route, headers, session, estimate, log.started);
    life.run(plan.backends, Payload::Messages(Box::new(req)), log)
        .await
}

/// Notes in the access line what is known before sending (session, stream); returns the
/// session's hash for affinity.
fn note(log: &mut AccessLog, session: Option<String>, stream: bool) -> Option<u64> {
    let hash = session.as_deref().map(balance::session_hash);
    log.session_id = session;
    log.stream = stream;
    hash
}

impl<'a> Life<'a> {
    fn new(
        app: &'a Arc<AppState>,
        rt: &'a Arc<Runtime>,
        route: &'a CompiledRoute,
        headers: &'a HeaderMap,
        session: Option<u64>,
        estimate: u64,
        started: Instant,
    ) -> Self {
        Life {
            app,
            rt,
            route,
            headers,
            session,
            estimate,
            deadline: started + Duration::from_millis(route.timeouts.first_token_ms),
        }
    }

    /// Tries the plan's backends in order (healthy first) until one answers.
    async fn run(
        &self,
        plan: Vec<usize>,
        payload: Payload,
        log: &mut AccessLog,
    ) -> Result<Forwarded, ApiError> {
        let mut order = healthy_first(self.rt, plan, Instant::now());
        let mut tries = Tries::default();
        let mut too_long = None;
        let mut position = 0;
        while position < order.len() {
            match self
                .backend(order[position], position, &payload, &mut tries, log)
                .await
            {
                Outcome::Done(done) => return Ok(done),
                Outcome::Final(e) => return Err(e),
                Outcome::OutOfTime => break,
                Outcome::Exhausted => {}
                Outcome::TooLong(e) => {
                    // Only a larger window helps now: the rest of the plan gives way to the
                    // route's context fallbacks.
                    let tried = order[..=position].to_vec();
                    order.truncate(position + 1);
                    order.extend(
                        self.route
                            .context_fallbacks
                            .iter()
                            .filter(|b| !tried.contains(b)),
                    );
                    too_long = Some(e);
                }
            }
            position += 1;
        }
        Err(too_long
            .or_else(|| tries.last_error.map(|e| e.to_api()))
            .unwrap_or_else(|| {
                ApiError::new(
                    ErrorKind::Overloaded,
                    format!(
                        "no healthy backend for route `{}`; try again shortly",
                        self.route.name
                    ),
                )
            }))
    }
}

/// The plan with backends that have a preferred endpoint first (order kept within each
/// part): a session stays on its target while it is healthy and moves while it is not.
/// When none is available the plan is tried as it is (panic mode, as for endpoints).
fn healthy_first(rt: &Runtime, plan: Vec<usize>, now: Instant) -> Vec<usize> {
    let (mut healthy, down): (Vec<usize>, Vec<usize>) = plan
        .into_iter()
        .partition(|&b| rt.backends[b].endpoints.iter().any(|e| e.preferred(now)));
    healthy.extend(down);
    healthy
}

/// What a request carries through its failover, shared by every attempt.
struct Life<'a> {
    app: &'a Arc<AppState>,
    rt: &'a Arc<Runtime>,
    route: &'a CompiledRoute,
    headers: &'a HeaderMap,
    session: Option<u64>,
    estimate: u64,
    /// No new attempt starts after this (the route's first-token timeout from arrival).
    deadline: Instant,
}

/// Attempts made so far: (backend, endpoint, reachable), and the last retryable failure.
#[derive(Default)]
struct Tries {
    tried: Vec<(usize, usize, bool)>,
    last_error: Option<UpstreamError>,
}

/// How trying one backend of the plan ended.
enum Outcome {
    Done(Forwarded),
    /// Not retryable anywhere: the client's answer.
    Final(ApiError),
    /// The prompt does not fit this backend's window.
    TooLong(ApiError),
    /// Attempts, endpoints or retry budget used up here: next backend.
    Exhausted,
    /// The first-token deadline passed: no more attempts.
    OutOfTime,
}

impl Life<'_> {
    /// Up to `retries.attempts` attempts on backend `bi`, on untried endpoints first.
    async fn backend(
        &self,
        bi: usize,
        position: usize,
        payload: &Payload,
        tries: &mut Tries,
        log: &mut AccessLog,
    ) -> Outcome {
        let backend = &self.rt.backends[bi];
        for attempts_here in 0..self.route.retries.attempts {
            let now = Instant::now();
            if !tries.tried.is_empty() && now >= self.deadline {
                return Outcome::OutOfTime;
            }
            let Some(ei) = self.pick(bi, tries, now) else {
                return Outcome::Exhausted;
            };
            if !tries.tried.is_empty() && !self.may_retry(backend, attempts_here, now).await {
                return Outcome::Exhausted;
            }
            backend.retry_budget.record_request(now);
            log.attempts += 1;
            let endpoint = backend.endpoints[ei].clone();
            log.backend = backend.spec.name.clone();
            log.endpoint = endpoint.url.clone();
            let attempt = Attempt {
                app: self.app,
                rt: self.rt,
                backend,
                endpoint: &endpoint,
                route: self.route,
                headers: self.headers,
            };
            let result = match payload.clone() {
                Payload::Messages(req) => attempt.run(*req, self.estimate, log).await,
                Payload::Responses(body) => attempt.responses(body, log).await,
            };
            match result {
                Ok(done) => {
                    endpoint.record_success();
                    if position > 0 {
                        self.count_fallback(backend);
                    }
                    return Outcome::Done(done);
                }
                Err(AttemptError::Client(e)) => return Outcome::Final(e),
                Err(AttemptError::TooLong(e)) => return Outcome::TooLong(e),
                Err(AttemptError::Upstream(e)) => {
                    tries
                        .tried
                        .push((bi, ei, !matches!(e, UpstreamError::Unreachable { .. })));
                    count_upstream_error(self.app, &backend.spec.name, &e);
                    if !e.retryable() {
                        endpoint.record_success(); // it answered; the request was at fault
                        return Outcome::Final(e.to_api());
                    }
                    tracing::info!(backend = %backend.spec.name, endpoint = %endpoint.url, error = %e, "attempt failed");
                    self.judge(bi, ei, &e, tries);
                    tries.last_error = Some(e);
                }
            }
        }
        Outcome::Exhausted
    }

    /// Untried endpoints first; then any that answered (a 5xx or 429 may pass), never one
    /// that refused the connection in this request.
    fn pick(&self, bi: usize, tries: &Tries, now: Instant) -> Option<usize> {
        let endpoints = &self.rt.backends[bi].endpoints;
        let here = || tries.tried.iter().filter(|(b, _, _)| *b == bi);
        let all_tried: Vec<usize> = here().map(|(_, e, _)| *e).collect();
        let unreachable: Vec<usize> = here()
            .filter(|(_, _, ok)| !ok)
            .map(|(_, e, _)| *e)
            .collect();
        balance::pick(endpoints, self.session, &all_tried, now)
            .or_else(|| balance::pick(endpoints, self.session, &unreachable, now))
    }

    /// A retry (any attempt after the request's first) needs the backend's retry budget;
    /// one on the same backend backs off first, a move to another backend goes at once.
    async fn may_retry(&self, backend: &BackendRuntime, attempts_here: u32, now: Instant) -> bool {
        let labels = |kind| KindLabels {
            backend: backend.spec.name.clone(),
            kind,
        };
        if !backend.retry_budget.try_retry(now) {
            let m = &self.app.metrics;
            m.retry_budget_exhausted
                .get_or_create(&labels("retry"))
                .inc();
            tracing::warn!(backend = %backend.spec.name, "retry budget exhausted; not retrying");
            return false;
        }
        self.app
            .metrics
            .retries
            .get_or_create(&labels("attempt"))
            .inc();
        if attempts_here > 0 {
            let r = &self.route.retries;
            let pause = balance::backoff(r.backoff_ms, r.max_backoff_ms, attempts_here, rand_u64());
            tokio::time::sleep(pause.min(self.deadline.saturating_duration_since(now))).await;
        }
        true
    }

    /// Counts a breaking failure against the endpoint, once per request however often it
    /// retried there, and ejects it after enough in a row.
    fn judge(&self, bi: usize, ei: usize, e: &UpstreamError, tries: &Tries) {
        let backend = &self.rt.backends[bi];
        let endpoint = &backend.endpoints[ei];
        let first_failure_here = tries
            .tried
            .iter()
            .filter(|t| (t.0, t.1) == (bi, ei))
            .count()
            == 1;
        let now = Instant::now();
        let others = balance::others_available(&backend.endpoints, ei, now);
        if !e.breaks_endpoint() || !first_failure_here {
            return;
        }
        let why = e.to_string();
        let kind = match endpoint.record_failure(&backend.spec.outlier, now, others, &why) {
            Verdict::Counted => return,
            Verdict::Ejected => "consecutive_failures",
            Verdict::Cooling => "cooldown",
        };
        self.app
            .metrics
            .ejections
            .get_or_create(&KindLabels {
                backend: backend.spec.name.clone(),
                kind,
            })
            .inc();
        tracing::warn!(backend = %backend.spec.name, endpoint = %endpoint.url, kind, "endpoint ejected");
    }

    fn count_fallback(&self, backend: &BackendRuntime) {
        self.app
            .metrics
            .fallbacks
            .get_or_create(&BackendLabels {
                route: self.route.name.clone(),
                backend: backend.spec.name.clone(),
            })
            .inc();
    }
}

fn rand_u64() -> u64 {
    uuid::Uuid::new_v4().as_u64_pair().0
}

/// A request body, serialized into a buffer sized from the prompt estimate (≈ 4 bytes a
/// token) rather than grown by doubling from empty (bench/PROFILE.md).
fn json_body<T: serde::Serialize>(value: &T, estimate: u64) -> Vec<u8> {
    let hint = usize::try_from(estimate.saturating_mul(5)).unwrap_or(usize::MAX);
    let mut out = Vec::with_capacity(hint.clamp(1024, 16 << 20));
    serde_json::to_writer(&mut out, value).expect("request serializes");
    out
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

/// One try against one endpoint: what it needs from the request's life, borrowed.
struct Attempt<'a> {
    app: &'a Arc<AppState>,
    rt: &'a Runtime,
    backend: &'a Arc<BackendRuntime>,
    endpoint: &'a Arc<Endpoint>,
    route: &'a CompiledRoute,
    headers: &'a HeaderMap,
}

/// What the stream or body of an attempt needs once the backend has answered.
struct Answer {
    client_model: String,
    /// Exact prompt size when it was counted, else the estimate.
    prompt: u64,
    fit: Fit,
    in_flight: InFlight,
}

impl Attempt<'_> {
    fn name(&self) -> &str {
        &self.backend.spec.name
    }

    fn client(&self) -> &reqwest::Client {
        self.rt.client_for(&self.route.timeouts)
    }

    async fn run(
        &self,
        mut req: MessagesRequest,
        estimate: u64,
        log: &mut AccessLog,
    ) -> Result<Forwarded, AttemptError> {
        let in_flight = self.endpoint.start();
        let discovered =
            upstream::discover_at(&self.app.client, self.backend, &self.endpoint.url).await?;
        for fix in crate::fixes::apply(&mut req, self.backend.spec.system_messages) {
            log.fixed(fix);
        }
        let answer = Answer {
            client_model: req.model.clone(),
            prompt: estimate,
            fit: Fit::as_asked(req.max_tokens),
            in_flight,
        };
        match self.backend.spec.protocol {
            Protocol::Openai => self.openai(req, &discovered, answer, log).await,
            Protocol::Anthropic => self.anthropic(req, &discovered, answer, log).await,
        }
    }

    /// Posts with the route's first-token timeout on the response headers.
    async fn post(
        &self,
        path: &str,
        body: Vec<u8>,
        extra_headers: &[(String, String)],
    ) -> Result<reqwest::Response, UpstreamError> {
        let limit = Duration::from_millis(self.route.timeouts.first_token_ms);
        let send = upstream::send(
            self.client(),
            self.backend,
            &self.endpoint.url,
            path,
            body,
            extra_headers,
        );
        tokio::time::timeout(limit, send).await.unwrap_or_else(|_| {
            Err(UpstreamError::Timeout {
                backend: self.name().to_owned(),
                detail: "no response headers within the route's firstTokenMs".into(),
            })
        })
    }

    fn count_context_retry(&self, kind: &'static str) {
        self.app
            .metrics
            .context_retries
            .get_or_create(&KindLabels {
                backend: self.name().to_owned(),
                kind,
            })
            .inc();
    }

    /// Exact size of a translated prompt from vLLM's `/tokenize`.
    async fn tokenize(&self, chat: &ChatRequest) -> Result<u64, UpstreamError> {
        self.count_context_retry("count");
        upstream::tokenize(&self.app.client, self.backend, &self.endpoint.url, chat).await
    }

    /// The answer for a prompt that cannot fit, with its exact size when the backend can
    /// count it (a lower bound is never reported as a size while a count is possible).
    async fn counted_too_long(
        &self,
        chat: &ChatRequest,
        at_least: u64,
        window: u64,
    ) -> AttemptError {
        let prompt = match self.tokenize(chat).await {
            Ok(n) => n.max(window),
            Err(e) => {
                tracing::debug!(error = %e, "exact prompt size unavailable; reporting vLLM's lower bound");
                at_least.max(window + 1)
            }
        };
        too_long(TooLong { prompt, window })
    }

    async fn openai(
        &self,
        req: MessagesRequest,
        d: &Discovered,
        mut answer: Answer,
        log: &mut AccessLog,
    ) -> Result<Forwarded, AttemptError> {
        let asked = req.max_tokens;
        let stop_sequences = req.stop_sequences.clone().unwrap_or_default();
        let text_tools =
            self.backend.spec.text_tool_calls && req.tools.as_ref().is_some_and(|t| !t.is_empty());
        let shape = BackendShape {
            served_model: &d.served_model,
            thinking: self.backend.spec.thinking,
            parameters: &self.backend.spec.parameters,
        };
        let translated = to_openai(req, asked, &shape).map_err(AttemptError::Client)?;
        self.count_dropped(&translated.dropped, log);
        let mut chat = translated.request;
        let budget = context::budget(asked, d.context_window, d.clamps_max_tokens, answer.prompt);
        answer.fit = match budget {
            Budget::Send(fit) => fit,
            Budget::Count { window } => match self.tokenize(&chat).await {
                Ok(n) => {
                    answer.prompt = n;
                    context::fit(asked, window, n).map_err(too_long)?
                }
                // No counting endpoint: when even the estimate leaves less than was asked,
                // let vLLM fill the window; else send as asked and let an overflow decide.
                Err(e) => {
                    tracing::debug!(error = %e, "no exact prompt count; relying on vLLM's own check");
                    if answer.prompt + u64::from(asked) > u64::from(window) {
                        Fit::fill_window()
                    } else {
                        Fit::as_asked(asked)
                    }
                }
            },
        };
        chat.max_tokens = answer.fit.max_tokens;
        let resp = self.send_chat(&mut chat, &mut answer, log).await?;
        note_fit(log, asked, answer.fit);
        let message_id = new_id("msg");
        let timers = Timers::new(self.rt.settings.ping_interval_ms, &self.route.timeouts);
        if !chat.stream {
            let bytes = read_whole(self.backend, resp, &timers, log.started).await?;
            let chat_resp: crate::protocol::openai::ChatResponse =
                serde_json::from_slice(&bytes).map_err(|e| UpstreamError::Protocol {
                    backend: self.name().to_owned(),
                    detail: e.to_string(),
                })?;
            let fills = fills_window(chat_resp.usage.as_ref(), d.context_window);
            let native_calls = chat_resp
                .choices
                .first()
                .map_or(0, |c| c.message.tool_calls.as_ref().map_or(0, Vec::len));
            let mut msg = to_anthropic(
                chat_resp,
                message_id,
                answer.client_model,
                answer.prompt,
                text_tools,
                &stop_sequences,
            );
            msg.stop_reason = msg
                .stop_reason
                .map(|r| r.window_bound(answer.fit.window_bound || fills));
            let calls = msg
                .content
                .iter()
                .filter(|b| matches!(b, OutBlock::ToolUse { .. }));
            let recovered = calls.count().saturating_sub(native_calls);
            if recovered > 0 {
                log.fixed_because("text_tool_calls", recovered_note(recovered));
            }
            log.usage = msg.usage;
            log.stop_reason = msg.stop_reason;
            log.capture_response(&msg);
            return Ok(Forwarded::Complete(Json(msg).into_response()));
        }
        let chunks = upstream::chat_chunks(self.backend, resp);
        let tr = StreamTranslator::new(
            message_id,
            answer.client_model,
            answer.prompt,
            text_tools,
            stop_sequences,
        )
        .window_bound(answer.fit.window_bound, d.context_window);
        self.commit_openai(chunks, tr, timers, answer.in_flight, log)
            .await
    }

    /// Sends a chat request; when vLLM still finds prompt + `max_tokens` too large (the
    /// estimate was short, or the count left out what the template adds), resends once
    /// without `max_tokens` so vLLM fills the window's rest: that is less than the client
    /// asked, since the prompt is over `window − max_tokens`.
    async fn send_chat(
        &self,
        chat: &mut ChatRequest,
        answer: &mut Answer,
        log: &mut AccessLog,
    ) -> Result<reqwest::Response, AttemptError> {
        let prompt = answer.prompt;
        let mut body = |chat: &ChatRequest| {
            log.capture_upstream(chat);
            json_body(chat, prompt)
        };
        let overflow = match self.post("/chat/completions", body(chat), &[]).await {
            Err(UpstreamError::Overflow(o)) => o,
            other => return Ok(other?),
        };
        let window = match overflow {
            Overflow::PromptTooLong { prompt, window } => {
                return Err(too_long(TooLong { prompt, window }))
            }
            Overflow::AtLeast { prompt, window } if chat.max_tokens.is_none() => {
                return Err(self.counted_too_long(chat, prompt, window).await)
            }
            Overflow::PromptOverWindow { at_least, window } => {
                return Err(self.counted_too_long(chat, at_least, window).await)
            }
            Overflow::OutputTooLarge { window, .. }
            | Overflow::AtLeast { window, .. }
            | Overflow::MaxTokensOverWindow { window } => window,
        };
        self.count_context_retry("fill_window");
        tracing::debug!(
            window,
            "prompt + max_tokens over the window; resending without max_tokens"
        );
        answer.fit = Fit::fill_window();
        chat.max_tokens = None;
        match self.post("/chat/completions", body(chat), &[]).await {
            Err(UpstreamError::Overflow(
                Overflow::AtLeast { prompt, .. }
                | Overflow::PromptOverWindow {
                    at_least: prompt, ..
                },
            )) => Err(self.counted_too_long(chat, prompt, window).await),
            Err(UpstreamError::Overflow(Overflow::PromptTooLong { prompt, window })) => {
                Err(too_long(TooLong { prompt, window }))
            }
            other => Ok(other?),
        }
    }

    /// Holds the response back briefly (a failure now can still be retried or become a real
    /// HTTP status), then commits the translated stream.
    async fn commit_openai(
        &self,
        mut chunks: UpstreamStream<crate::protocol::openai::ChatChunk>,
        mut tr: StreamTranslator,
        timers: Timers,
        in_flight: InFlight,
        log: &mut AccessLog,
    ) -> Result<Forwarded, AttemptError> {
        let commit_after = Duration::from_millis(self.rt.settings.commit_after_ms);
        let mut first = Vec::new();
        match tokio::time::timeout(commit_after.min(timers.first_token), chunks.next()).await {
            Ok(Some(Ok(Item::Data(chunk)))) => {
                tr.on_chunk(chunk, &mut first);
                if let Some(e) = tr.failure() {
                    // Nothing is committed yet: a garbled first chunk is a backend failure
                    // like any other, retried elsewhere or a real HTTP error.
                    return Err(self.garbled(e).into());
                }
                log.ttft = Some(log.started.elapsed());
            }
            Ok(Some(Ok(Item::Done))) => tr.finish(&mut first),
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(None) => return Err(self.empty_response()),
            Err(_) => tr.start(&mut first),
        }
        let guard = StreamGuard::new(self.app.clone(), log.clone(), in_flight).reassembling();
        Ok(Forwarded::Streaming(relay::sse_response(
            relay::openai_body(chunks, tr, first, guard, timers),
        )))
    }

    fn garbled(&self, e: &ApiError) -> UpstreamError {
        UpstreamError::Protocol {
            backend: self.name().to_owned(),
            detail: e.message.clone(),
        }
    }

    fn empty_response(&self) -> AttemptError {
        UpstreamError::Interrupted {
            backend: self.name().to_owned(),
            detail: "empty response".into(),
        }
        .into()
    }

    /// Client fields this backend cannot take: a debug line and a count each.
    fn count_dropped(&self, names: &[String], log: &mut AccessLog) {
        if !names.is_empty() {
            log.fixed_because(
                "dropped_fields",
                format!(
                    "not taken by `{}`, dropped: {}",
                    self.name(),
                    names.join(", ")
                ),
            );
        }
        for name in names {
            tracing::debug!(field = %name, backend = %self.name(), "field not supported by backend; dropped");
            self.app
                .metrics
                .dropped_params
                .get_or_create(&KindLabels {
                    backend: self.name().to_owned(),
                    kind: crate::observe::metrics::param_class(name),
                })
                .inc();
        }
    }

    async fn anthropic(
        &self,
        mut req: MessagesRequest,
        d: &Discovered,
        mut answer: Answer,
        log: &mut AccessLog,
    ) -> Result<Forwarded, AttemptError> {
        let asked = req.max_tokens;
        let extra_headers = self.anthropic_headers();
        req.model = d.served_model.clone();
        // An OpenAI client's Chat Completions-only parameters have no Messages field here.
        let dropped: Vec<String> = std::mem::take(&mut req.openai_params)
            .into_iter()
            .map(|(k, _)| k)
            .collect();
        self.count_dropped(&dropped, log);
        for name in &self.backend.spec.parameters.drop {
            req.extra.remove(name);
        }
        let budget = context::budget(asked, d.context_window, d.clamps_max_tokens, answer.prompt);
        let counted = matches!(budget, Budget::Count { .. });
        answer.fit = match budget {
            Budget::Send(fit) => fit,
            Budget::Count { window } => match self.count_anthropic(&req, d, &extra_headers).await {
                Ok(n) => {
                    answer.prompt = n;
                    context::fit(asked, window, n).map_err(too_long)?
                }
                Err(e) => {
                    tracing::debug!(error = %e, "no exact prompt count; clamping to the estimate");
                    context::fit_estimated(asked, window, answer.prompt)
                }
            },
        };
        apply_fit(&mut req, answer.fit);
        let prompt = answer.prompt;
        log.capture_upstream(&req);
        let resp = match self
            .post("/messages", json_body(&req, prompt), &extra_headers)
            .await
        {
            Err(UpstreamError::Overflow(o)) => {
                req.max_tokens = asked;
                answer.fit = self
                    .refit_anthropic(o, &req, d, &extra_headers, counted)
                    .await?;
                apply_fit(&mut req, answer.fit);
                self.count_context_retry("max_tokens");
                log.capture_upstream(&req);
                self.post("/messages", json_body(&req, prompt), &extra_headers)
                    .await?
            }
            other => other?,
        };
        note_fit(log, asked, answer.fit);
        let timers = Timers::new(self.rt.settings.ping_interval_ms, &self.route.timeouts);
        if !req.stream {
            let bytes = read_whole(self.backend, resp, &timers, log.started).await?;
            let (msg, usage, stop) = relay::relay_message(
                &bytes,
                &answer.client_model,
                answer.fit.window_bound,
                d.context_window,
            )
            .ok_or_else(|| UpstreamError::Protocol {
                backend: self.name().to_owned(),
                detail: "the answer is not an Anthropic message object".into(),
            })?;
            log.usage = usage;
            log.stop_reason = stop;
            log.capture_response(&msg);
            return Ok(Forwarded::Complete(Json(msg).into_response()));
        }
        let mut events = upstream::anthropic_events(self.backend, resp);
        let commit_after = Duration::from_millis(self.rt.settings.commit_after_ms);
        let wait = commit_after.min(timers.first_token);
        let first = match tokio::time::timeout(wait, events.next()).await {
            Ok(Some(Err(e))) => return Err(e.into()),
            Ok(Some(Ok(item))) => Some(item),
            Ok(None) => return Err(self.empty_response()),
            Err(_) => None,
        };
        let guard =
            StreamGuard::new(self.app.clone(), log.clone(), answer.in_flight).reassembling();
        let relay = Relay::new(answer.client_model, answer.prompt)
            .window_bound(answer.fit.window_bound, d.context_window);
        Ok(Forwarded::Streaming(relay::sse_response(
            relay::anthropic_body(events, relay, first, guard, timers),
        )))
    }

    /// Headers for an Anthropic-protocol backend: the client's credentials when forwarded,
    /// its `anthropic-version`, and `anthropic-beta` as a whole (an open list that changes
    /// with every Claude Code release: never filtered).
    fn anthropic_headers(&self) -> Vec<(String, String)> {
        let mut out = client_auth_headers(self.backend, self.headers);
        let header = |k: &str| self.headers.get(k).and_then(|v| v.to_str().ok());
        let version = header("anthropic-version")
            .unwrap_or("2023-06-01")
            .to_owned();
        out.push(("anthropic-version".into(), version));
        if let Some(beta) = header("anthropic-beta") {
            out.push(("anthropic-beta".into(), beta.to_owned()));
        }
        out
    }

    /// Exact prompt size on an Anthropic-protocol backend: its `count_tokens`, else (older
    /// vLLM) `/tokenize` on the same request in Chat Completions form, which vLLM's Anthropic
    /// route renders with the same chat template.
    async fn count_anthropic(
        &self,
        req: &MessagesRequest,
        d: &Discovered,
        extra_headers: &[(String, String)],
    ) -> Result<u64, UpstreamError> {
        let mut body = json!({"model": req.model, "messages": req.messages});
        for (key, value) in [
            ("system", req.system.as_ref().map(|s| json!(s))),
            ("tools", req.tools.as_ref().map(|t| json!(t))),
            ("tool_choice", req.tool_choice.as_ref().map(|t| json!(t))),
            ("thinking", req.thinking.as_ref().map(|t| json!(t))),
        ] {
            if let Some(v) = value {
                body[key] = v;
            }
        }
        self.count_context_retry("count");
        let base = &self.endpoint.url;
        match upstream::count_tokens(self.client(), self.backend, base, &body, extra_headers).await
        {
            // Not served (older vLLM), or it refuses an over-long prompt (vLLM < 0.34
            // applies the window to count_tokens too); /tokenize counts any size.
            Err(
                UpstreamError::Status {
                    status: 404 | 405, ..
                }
                | UpstreamError::Overflow(_),
            ) => {
                let shape = BackendShape {
                    served_model: &d.served_model,
                    thinking: self.backend.spec.thinking,
                    parameters: &self.backend.spec.parameters,
                };
                let chat = to_openai(req.clone(), req.max_tokens, &shape)
                    .map_err(|e| UpstreamError::Protocol {
                        backend: self.name().to_owned(),
                        detail: e.message,
                    })?
                    .request;
                self.tokenize(&chat).await
            }
            other => other,
        }
    }

    /// A new fit after an overflow answer to a request sent on the estimate (or with a count
    /// that left something out).
    async fn refit_anthropic(
        &self,
        overflow: Overflow,
        req: &MessagesRequest,
        d: &Discovered,
        extra_headers: &[(String, String)],
        counted: bool,
    ) -> Result<Fit, AttemptError> {
        let asked = req.max_tokens;
        let exact = |prompt: u64, window: u64| {
            context::fit(asked, window.min(u64::from(u32::MAX)) as u32, prompt).map_err(too_long)
        };
        let (at_least, window) = match overflow {
            Overflow::PromptTooLong { prompt, window }
            | Overflow::OutputTooLarge { prompt, window } => return exact(prompt, window),
            Overflow::AtLeast { prompt, window } => (prompt, window),
            Overflow::MaxTokensOverWindow { window } => (0, window),
            Overflow::PromptOverWindow { at_least, window } => {
                let prompt = self.count_anthropic(req, d, extra_headers).await;
                return Err(too_long(TooLong {
                    prompt: prompt.unwrap_or(at_least).max(window),
                    window,
                }));
            }
        };
        if !counted {
            if let Ok(n) = self.count_anthropic(req, d, extra_headers).await {
                return exact(n, window);
            }
        }
        // No count to be had: Claude Code's other context wording makes it retry with a
        // smaller max_tokens (and compact when none fits).
        Err(AttemptError::TooLong(ApiError::invalid(format!(
            "input length and `max_tokens` exceed context limit: {at_least} + {asked} > {window}, \
             decrease input length or `max_tokens` and try again"
        ))))
    }
}

/// What `text_tool_calls` says it did.
pub(crate) fn recovered_note(calls: usize) -> String {
    format!("{calls} tool call(s) recovered from the model's text")
}

fn too_long(t: TooLong) -> AttemptError {
    // A prompt of exactly the window leaves no room for one output token: its maximum is
    // one less, so that N > M holds (Claude Code parses both numbers).
    let maximum = t.window.min(t.prompt.saturating_sub(1));
    AttemptError::TooLong(ApiError::prompt_too_long(t.prompt, maximum))
}

/// A `max_tokens` other than the client's (lowered to fit the window, or left to the
/// backend to fill it) is the context clamp.
fn note_fit(log: &mut AccessLog, asked: u32, fit: Fit) {
    match fit.max_tokens {
        Some(m) if m == asked => {}
        Some(m) => log.fixed_because(
            "context_clamp",
            format!("max_tokens {asked} → {m}: the context window leaves no more"),
        ),
        None => log.fixed_because(
            "context_clamp",
            format!("max_tokens {asked} not sent: the backend fills what its window leaves"),
        ),
    }
}

/// Sets the fitted `max_tokens` on a native request and keeps an enabled thinking budget
/// below it (vLLM refuses `budget_tokens >= max_tokens`), dropping thinking when even the
/// minimum budget does not fit.
fn apply_fit(req: &mut MessagesRequest, fit: Fit) {
    if let Some(m) = fit.max_tokens {
        req.max_tokens = m;
    }
    let Some(thinking) = req.thinking.as_mut() else {
        return;
    };
    let Some(budget) = thinking
        .budget_tokens
        .filter(|_| thinking.kind == ThinkingKind::Enabled)
    else {
        return;
    };
    match context::fit_thinking_budget(budget, req.max_tokens) {
        Some(b) => thinking.budget_tokens = Some(b),
        None => req.thinking = None,
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
