//! Talking to backends: discovery, requests, SSE reading, and the mapping of every upstream
//! failure to the client's error (done once, here).
//!
//! Dropping a stream returned from here drops the HTTP response, which closes the connection;
//! vLLM sees the disconnect and aborts the request, freeing its KV cache.

use crate::config::BackendRuntime;
use crate::context::{parse_overflow, Overflow};
use crate::error::{ApiError, ErrorKind};
use crate::openai::{ChatChunk, ChatRequest, ModelList};
use bytes::Bytes;
use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
use reqwest::StatusCode;
use serde_json::Value;
use std::pin::Pin;
use std::time::Duration;
use switchyard_api::Protocol;

/// What `/v1/models` told us about a backend.
#[derive(Debug, Clone)]
pub struct Discovered {
    pub served_model: String,
    pub context_window: Option<u32>,
    /// vLLM ≥ 0.32 lowers an oversized `max_tokens` to the window's rest itself (its
    /// `get_max_tokens`); older releases answer 400 and need the exact prompt size first.
    pub clamps_max_tokens: bool,
}

/// The first vLLM release whose renderer clamps `max_tokens` instead of refusing it.
const VLLM_CLAMPS_SINCE: (u64, u64) = (0, 32);

/// Whether vLLM's `/version` answer (`{"version": "0.34.0"}`) is a release that clamps.
pub fn version_clamps(version: &str) -> bool {
    let mut parts = version
        .split(['.', '+', '-'])
        .map(|p| p.parse::<u64>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(major), Some(minor)) => (major, minor) >= VLLM_CLAMPS_SINCE,
        _ => false,
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("backend `{backend}` is unreachable: {detail}")]
    Unreachable { backend: String, detail: String },
    #[error("backend `{backend}` answered {status}: {message}")]
    Status {
        backend: String,
        status: u16,
        message: String,
        retry_after: Option<u64>,
    },
    #[error("context overflow: {0:?}")]
    Overflow(Overflow),
    #[error("backend `{backend}` sent an invalid response: {detail}")]
    Protocol { backend: String, detail: String },
    #[error("backend `{backend}` stream ended before completion: {detail}")]
    Interrupted { backend: String, detail: String },
    #[error("backend `{backend}`: {detail}")]
    Discovery { backend: String, detail: String },
    #[error("backend `{backend}` timed out: {detail}")]
    Timeout { backend: String, detail: String },
    /// The backend answers, but not as the configuration says it should (a base URL without
    /// `/v1`, a wrong protocol): no retry or other replica will fix it.
    #[error("backend `{backend}` is misconfigured: {detail}")]
    Misconfigured { backend: String, detail: String },
}

impl UpstreamError {
    /// Worth trying elsewhere: the backend failed, not the request.
    pub fn retryable(&self) -> bool {
        match self {
            UpstreamError::Unreachable { .. }
            | UpstreamError::Discovery { .. }
            | UpstreamError::Interrupted { .. }
            | UpstreamError::Timeout { .. } => true,
            UpstreamError::Status { status, .. } => matches!(*status, 408 | 429 | 500..=599),
            UpstreamError::Overflow(_)
            | UpstreamError::Protocol { .. }
            | UpstreamError::Misconfigured { .. } => false,
        }
    }

    /// Says the endpoint is broken (counts towards its ejection). An overloaded answer
    /// (429, 503, 529) says it is busy: retry later, but keep it in.
    pub fn breaks_endpoint(&self) -> bool {
        match self {
            UpstreamError::Unreachable { .. }
            | UpstreamError::Discovery { .. }
            | UpstreamError::Interrupted { .. }
            | UpstreamError::Timeout { .. }
            | UpstreamError::Protocol { .. } => true,
            UpstreamError::Status { status, .. } => {
                (500..=599).contains(status) && !matches!(*status, 503 | 529)
            }
            UpstreamError::Overflow(_) | UpstreamError::Misconfigured { .. } => false,
        }
    }

    /// Bounded metric label.
    pub fn kind(&self) -> &'static str {
        match self {
            UpstreamError::Unreachable { .. } => "unreachable",
            UpstreamError::Status { .. } => "status",
            UpstreamError::Overflow(_) => "context_overflow",
            UpstreamError::Protocol { .. } => "protocol",
            UpstreamError::Interrupted { .. } => "interrupted",
            UpstreamError::Discovery { .. } => "discovery",
            UpstreamError::Timeout { .. } => "timeout",
            UpstreamError::Misconfigured { .. } => "misconfigured",
        }
    }

    /// The one place an upstream failure becomes a client error.
    pub fn to_api(&self) -> ApiError {
        match self {
            UpstreamError::Unreachable { .. }
            | UpstreamError::Discovery { .. }
            | UpstreamError::Timeout { .. } => {
                ApiError::new(ErrorKind::Overloaded, self.to_string())
            }
            UpstreamError::Overflow(
                Overflow::PromptTooLong { prompt, window }
                | Overflow::PromptOverWindow {
                    at_least: prompt,
                    window,
                },
            ) => ApiError::prompt_too_long(*prompt, *window),
            // Reached only where the proxy could not resend (it fits max_tokens itself):
            // Claude Code's other context wording makes the CLI retry with less.
            UpstreamError::Overflow(
                Overflow::OutputTooLarge { prompt, window } | Overflow::AtLeast { prompt, window },
            ) => ApiError::invalid(format!(
                "input length and `max_tokens` exceed context limit: {prompt} + {} > {window}, \
                 decrease input length or `max_tokens` and try again",
                window + 1 - (*prompt).min(*window)
            )),
            UpstreamError::Overflow(Overflow::MaxTokensOverWindow { window }) => {
                ApiError::invalid(format!(
                    "max_tokens: must be at most the model's context window of {window} tokens"
                ))
            }
            UpstreamError::Status {
                status,
                message,
                retry_after,
                backend,
            } => {
                let kind = match *status {
                    400 | 422 => ErrorKind::InvalidRequest,
                    404 => ErrorKind::NotFound,
                    413 => ErrorKind::RequestTooLarge,
                    429 => ErrorKind::RateLimit,
                    // A backend refusing our credentials is a proxy configuration problem, not
                    // the client's: Claude Code would otherwise ask its user to log in again.
                    401 | 403 => ErrorKind::Api,
                    502..=504 | 529 => ErrorKind::Overloaded,
                    _ => ErrorKind::Api,
                };
                let message = if kind == ErrorKind::Api && matches!(*status, 401 | 403) {
                    format!("backend `{backend}` rejected the proxy's credentials ({status})")
                } else {
                    message.clone()
                };
                ApiError {
                    kind,
                    message,
                    retry_after: *retry_after,
                    final_answer: false,
                }
            }
            UpstreamError::Protocol { .. } | UpstreamError::Interrupted { .. } => {
                ApiError::new(ErrorKind::Api, self.to_string())
            }
            UpstreamError::Misconfigured { .. } => {
                ApiError::new(ErrorKind::Api, self.to_string()).final_answer()
            }
        }
    }
}

pub fn client() -> reqwest::Client {
    client_with_connect_timeout(Duration::from_secs(10))
}

/// A pooled client; model requests use one per distinct route `connectMs`.
pub fn client_with_connect_timeout(connect: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .connect_timeout(connect)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .build()
        .expect("HTTP client builds")
}

fn authorize(req: reqwest::RequestBuilder, backend: &BackendRuntime) -> reqwest::RequestBuilder {
    if backend.spec.forward_client_auth {
        return req; // the caller forwards the client's own credentials
    }
    match (&backend.api_key, backend.spec.protocol) {
        (None, _) => req,
        (Some(key), Protocol::Openai) => req.bearer_auth(key.expose()),
        (Some(key), Protocol::Anthropic) => req.header("x-api-key", key.expose()),
    }
}

fn unreachable(backend: &BackendRuntime, e: reqwest::Error) -> UpstreamError {
    UpstreamError::Unreachable {
        backend: backend.spec.name.clone(),
        detail: if e.is_connect() {
            "connection refused or failed".into()
        } else if e.is_timeout() {
            "timed out".into()
        } else {
            e.to_string()
        },
    }
}

/// Served model and context window, from the config or from the first endpoint of the
/// backend that answers `/models`.
pub async fn discover(
    client: &reqwest::Client,
    backend: &BackendRuntime,
) -> Result<Discovered, UpstreamError> {
    let mut last = None;
    for endpoint in &backend.endpoints {
        match discover_at(client, backend, &endpoint.url).await {
            Ok(d) => return Ok(d),
            Err(e @ UpstreamError::Misconfigured { .. }) => return Err(e),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| UpstreamError::Discovery {
        backend: backend.spec.name.clone(),
        detail: "no endpoints".into(),
    }))
}

/// Discovery through one endpoint (`base` includes `/v1`). The first answer from any replica
/// is kept for the backend; no lock is held while asking, so a replica that is down (10 s
/// connect timeout) never holds up requests going to the others.
pub async fn discover_at(
    client: &reqwest::Client,
    backend: &BackendRuntime,
    base: &str,
) -> Result<Discovered, UpstreamError> {
    if let Some(d) = backend.discovered.get() {
        return Ok(d.clone());
    }
    let spec = &backend.spec;
    if let (Some(served), Some(window)) = (&spec.served_model, spec.context_window) {
        let d = Discovered {
            served_model: served.clone(),
            context_window: Some(window),
            clamps_max_tokens: false,
        };
        return Ok(backend.discovered.get_or_init(|| async { d }).await.clone());
    }
    let url = format!("{base}/models");
    let resp = authorize(client.get(&url), backend)
        .header("anthropic-version", "2023-06-01")
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .map_err(|e| unreachable(backend, e))?;
    let status = resp.status();
    if matches!(status.as_u16(), 404 | 405) {
        return Err(UpstreamError::Misconfigured {
            backend: spec.name.clone(),
            detail: format!(
                "GET {} answered {status}; the base URL must be the API root that serves /models \
                 (for vLLM it ends in /v1, e.g. http://host:8000/v1)",
                redact_url(&url)
            ),
        });
    }
    if !status.is_success() {
        return Err(UpstreamError::Discovery {
            backend: spec.name.clone(),
            detail: format!("GET {} answered {status}", redact_url(&url)),
        });
    }
    let list: ModelList = resp.json().await.map_err(|e| UpstreamError::Discovery {
        backend: spec.name.clone(),
        detail: format!("GET {}: {e}", redact_url(&url)),
    })?;
    let mut d = pick_model(spec, &list)?;
    if spec.protocol == Protocol::Openai || d.context_window.is_some() {
        d.clamps_max_tokens = vllm_version(client, backend, base)
            .await
            .is_some_and(|v| version_clamps(&v));
    }
    tracing::info!(clamps_max_tokens = d.clamps_max_tokens, backend = %spec.name, served_model = %d.served_model, context_window = ?d.context_window, "discovered backend model");
    Ok(backend.discovered.get_or_init(|| async { d }).await.clone())
}

/// vLLM's release from `GET /version` at the server root; `None` for other servers.
async fn vllm_version(
    client: &reqwest::Client,
    backend: &BackendRuntime,
    base: &str,
) -> Option<String> {
    let root = base.strip_suffix("/v1").unwrap_or(base);
    let resp = authorize(client.get(format!("{root}/version")), backend)
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .ok()?;
    let v: Value = resp.error_for_status().ok()?.json().await.ok()?;
    v.get("version")?.as_str().map(str::to_owned)
}

/// The configured model in a `/models` list, or the only one served.
fn pick_model(
    spec: &switchyard_api::Backend,
    list: &ModelList,
) -> Result<Discovered, UpstreamError> {
    let entry = match &spec.served_model {
        Some(name) => list.data.iter().find(|m| &m.id == name),
        None if list.data.len() == 1 => list.data.first(),
        None => {
            let ids: Vec<&str> = list.data.iter().map(|m| m.id.as_str()).collect();
            return Err(UpstreamError::Misconfigured {
                backend: spec.name.clone(),
                detail: format!(
                    "serves {} models ({}); set servedModel",
                    ids.len(),
                    ids.join(", ")
                ),
            });
        }
    };
    Ok(Discovered {
        served_model: spec
            .served_model
            .clone()
            .or_else(|| entry.map(|m| m.id.clone()))
            .unwrap_or_default(),
        context_window: spec
            .context_window
            .or_else(|| entry.and_then(|m| m.max_model_len)),
        clamps_max_tokens: false,
    })
}

/// A URL without user info or query, which may carry credentials.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.to_string()
        }
        Err(_) => "<invalid URL>".into(),
    }
}

/// One item of an upstream stream.
#[derive(Debug)]
pub enum Item<T> {
    Data(T),
    Done,
}

pub type UpstreamStream<T> = Pin<Box<dyn Stream<Item = Result<Item<T>, UpstreamError>> + Send>>;

/// Sends a request to one endpoint (`base` is its URL including `/v1`) and checks the
/// status; errors are read and mapped here.
pub async fn send(
    client: &reqwest::Client,
    backend: &BackendRuntime,
    base: &str,
    path: &str,
    body: Vec<u8>,
    extra_headers: &[(String, String)],
) -> Result<reqwest::Response, UpstreamError> {
    let req = authorize(client.post(format!("{base}{path}")), backend)
        .header("content-type", "application/json")
        .body(body);
    checked(backend, with_headers(req, extra_headers)).await
}

fn with_headers(
    mut req: reqwest::RequestBuilder,
    headers: &[(String, String)],
) -> reqwest::RequestBuilder {
    for (k, v) in headers {
        req = req.header(k, v);
    }
    req
}

/// Sends and turns a failure (no connection, or a non-2xx answer) into an `UpstreamError`.
async fn checked(
    backend: &BackendRuntime,
    req: reqwest::RequestBuilder,
) -> Result<reqwest::Response, UpstreamError> {
    let resp = req.send().await.map_err(|e| unreachable(backend, e))?;
    if resp.status().is_success() {
        return Ok(resp);
    }
    let status = resp.status();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let text = resp.text().await.unwrap_or_default();
    Err(status_error(&backend.spec.name, status, &text, retry_after))
}

fn status_error(
    backend: &str,
    status: StatusCode,
    body: &str,
    retry_after: Option<u64>,
) -> UpstreamError {
    let message = error_message(body).unwrap_or_else(|| body.chars().take(500).collect());
    if matches!(status.as_u16(), 400 | 413 | 422) {
        if let Some(overflow) = parse_overflow(&message) {
            return UpstreamError::Overflow(overflow);
        }
    }
    UpstreamError::Status {
        backend: backend.to_owned(),
        status: status.as_u16(),
        message,
        retry_after,
    }
}

/// The message of an OpenAI-, vLLM- or Anthropic-shaped error body.
fn error_message(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let msg = v
        .pointer("/error/message")
        .or_else(|| v.get("message"))
        .or_else(|| v.get("detail"))?;
    Some(match msg {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    })
}

/// An error delivered inside a 200 stream (vLLM: `data: {"error": {...}}`; Anthropic: an
/// `error` event). `None` if `data` is not an error object.
fn stream_error(backend: &str, data: &str) -> Option<UpstreamError> {
    let v: Value = serde_json::from_str(data).ok()?;
    let err = v.get("error")?;
    let status = err.get("code").and_then(Value::as_u64).unwrap_or(500) as u16;
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    Some(status_error(backend, status, data, None))
}

/// OpenAI SSE chunks of a streaming chat completion.
pub fn chat_chunks(backend: &BackendRuntime, resp: reqwest::Response) -> UpstreamStream<ChatChunk> {
    let name = backend.spec.name.clone();
    let events = resp.bytes_stream().eventsource();
    let stream = events.map(move |ev| match ev {
        Err(e) => Err(UpstreamError::Interrupted {
            backend: name.clone(),
            detail: e.to_string(),
        }),
        Ok(ev) if ev.data == "[DONE]" => Ok(Item::Done),
        Ok(ev) => match serde_json::from_str::<ChatChunk>(&ev.data) {
            Ok(chunk) if !chunk.choices.is_empty() || chunk.usage.is_some() => {
                Ok(Item::Data(chunk))
            }
            Ok(chunk) => match stream_error(&name, &ev.data) {
                Some(e) => Err(e),
                None => Ok(Item::Data(chunk)),
            },
            Err(e) => {
                Err(
                    stream_error(&name, &ev.data).unwrap_or_else(|| UpstreamError::Protocol {
                        backend: name.clone(),
                        detail: format!("bad chunk: {e}"),
                    }),
                )
            }
        },
    });
    Box::pin(stream)
}

/// A raw Anthropic SSE event from a pass-through backend.
#[derive(Debug)]
pub struct RawEvent {
    pub event: String,
    pub data: String,
}

/// Anthropic SSE events of a streaming pass-through.
pub fn anthropic_events(
    backend: &BackendRuntime,
    resp: reqwest::Response,
) -> UpstreamStream<RawEvent> {
    let name = backend.spec.name.clone();
    let stream =
        resp.bytes_stream().eventsource().map(move |ev| match ev {
            Err(e) => Err(UpstreamError::Interrupted {
                backend: name.clone(),
                detail: e.to_string(),
            }),
            Ok(ev) if ev.event == "error" => Err(stream_error(&name, &ev.data).unwrap_or_else(
                || UpstreamError::Protocol {
                    backend: name.clone(),
                    detail: ev.data.clone(),
                },
            )),
            Ok(ev) if ev.event == "message_stop" => Ok(Item::Done),
            Ok(ev) => Ok(Item::Data(RawEvent {
                event: ev.event,
                data: ev.data,
            })),
        });
    Box::pin(stream)
}

/// The exact prompt size from vLLM's `POST /tokenize` (at the server root, beside `/v1`) for
/// the chat request about to be sent (`vllm/entrypoints/serve/tokenize`): the same messages,
/// tools and template switches render the same prompt. It never applies the window, so it
/// counts prompts that do not fit too.
pub async fn tokenize(
    client: &reqwest::Client,
    backend: &BackendRuntime,
    base: &str,
    chat: &ChatRequest,
) -> Result<u64, UpstreamError> {
    let mut body = serde_json::json!({
        "model": chat.model,
        "messages": chat.messages,
        "add_generation_prompt": true,
    });
    if !chat.tools.is_empty() {
        body["tools"] = serde_json::json!(chat.tools);
    }
    if let Some(kwargs) = chat.params.get("chat_template_kwargs") {
        body["chat_template_kwargs"] = kwargs.clone();
    }
    let root = base.strip_suffix("/v1").unwrap_or(base);
    let url = format!("{root}/tokenize");
    count(client, backend, &url, &body, &[], "count").await
}

/// The exact prompt size from an Anthropic-protocol backend's `POST /messages/count_tokens`
/// (Anthropic; vLLM's Anthropic route in recent releases): `{"input_tokens": N}`.
pub async fn count_tokens(
    client: &reqwest::Client,
    backend: &BackendRuntime,
    base: &str,
    body: &Value,
    extra_headers: &[(String, String)],
) -> Result<u64, UpstreamError> {
    let url = format!("{base}/messages/count_tokens");
    count(client, backend, &url, body, extra_headers, "input_tokens").await
}

/// Counting is a tokenizer pass on the backend's CPU: seconds at most, even for big prompts.
const COUNT_TIMEOUT: Duration = Duration::from_secs(30);

/// Posts `body` to a counting endpoint and reads the number in `field` of its answer.
async fn count(
    client: &reqwest::Client,
    backend: &BackendRuntime,
    url: &str,
    body: &Value,
    extra_headers: &[(String, String)],
    field: &str,
) -> Result<u64, UpstreamError> {
    let req = authorize(client.post(url), backend)
        .json(body)
        .timeout(COUNT_TIMEOUT);
    let protocol = |detail: String| UpstreamError::Protocol {
        backend: backend.spec.name.clone(),
        detail,
    };
    let v: Value = checked(backend, with_headers(req, extra_headers))
        .await?
        .json()
        .await
        .map_err(|e| protocol(e.to_string()))?;
    v.get(field)
        .and_then(Value::as_u64)
        .ok_or_else(|| protocol(format!("token count answer has no `{field}`")))
}

/// Reads a whole JSON body.
pub async fn json_body(
    backend: &BackendRuntime,
    resp: reqwest::Response,
) -> Result<Bytes, UpstreamError> {
    resp.bytes().await.map_err(|e| UpstreamError::Interrupted {
        backend: backend.spec.name.clone(),
        detail: e.to_string(),
    })
}
