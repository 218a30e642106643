//! Talking to backends: discovery, requests, SSE reading, and the mapping of every upstream
//! failure to the client's error (done once, here).
//!
//! Dropping a stream returned from here drops the HTTP response, which closes the connection;
//! vLLM sees the disconnect and aborts the request, freeing its KV cache.

pub mod backend;
pub mod count_cache;
pub mod health;

use crate::error::{ApiError, ErrorKind};
use crate::fixes::context::{parse_overflow, Overflow};
use crate::protocol::openai::{ChatChunk, ChatRequest, ModelList};
use crate::protocol::sse;
use backend::BackendRuntime;
use bytes::Bytes;
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

/// Idle connections kept per backend host. A burst of 1,000 streams would otherwise leave
/// 1,000 idle connections (and their buffers) for a minute; steady traffic reuses these.
const MAX_IDLE_PER_HOST: usize = 64;

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
    /// An answer (whole body, or one SSE event) over the proxy's limits (see
    /// [`MAX_RESPONSE_BYTES`]): read no further, its connection is dropped.
    #[error("backend `{backend}` sent {what} larger than {limit} bytes; connection dropped")]
    TooLarge {
        backend: String,
        what: &'static str,
        limit: usize,
    },
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
            | UpstreamError::TooLarge { .. }
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
            | UpstreamError::TooLarge { .. }
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
            UpstreamError::TooLarge { .. } => "too_large",
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
            UpstreamError::Protocol { .. }
            | UpstreamError::Interrupted { .. }
            | UpstreamError::TooLarge { .. } => ApiError::new(ErrorKind::Api, self.to_string()),
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
///
/// Redirects are not followed: a model server that redirects a POST is misconfigured (the
/// 3xx is reported as the backend's error, not silently turned into a GET).
pub fn client_with_connect_timeout(connect: Duration) -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect)
        .tcp_nodelay(true)
        .pool_idle_timeout(Duration::from_secs(60))
        .pool_max_idle_per_host(MAX_IDLE_PER_HOST)
        .build()
        .expect("HTTP client builds")
}

/// Size limits on what a backend sends. A backend is trusted to be correct, not to be small:
/// without limits one broken answer (a non-stream body without end, a server streaming one
/// line forever) grows the proxy's memory until the process is killed, and with it every
/// other client's stream. Each limit is far above anything legitimate, so only a broken
/// backend ever meets one; it then gets [`UpstreamError::TooLarge`] (the client sees
/// `api_error`, as for any invalid answer) and its connection is dropped, unread.
///
/// Error bodies: only the message is used, and vLLM's longest (pydantic error lists) are a
/// few KiB; the first 64 KiB are kept and the rest is never read.
pub const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// A whole non-stream answer: 1 M tokens of output at a few bytes each, JSON-escaped, stays
/// well below 64 MiB.
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// One SSE event (bytes between two empty lines, the partial line included: what the SSE
/// parser buffers). vLLM sends a token or a few per event; 16 MiB leaves room for a whole
/// tool call's arguments in one event. Only `\n` line ends reset it (vLLM's and Anthropic's).
pub const MAX_SSE_EVENT_BYTES: usize = 16 * 1024 * 1024;
/// Small JSON answers: `/models`, `/version`, token counts.
pub const MAX_SMALL_JSON_BYTES: usize = 4 * 1024 * 1024;
/// Reading an error body: it is already complete on the backend when the status comes.
const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(10);

/// At most `limit` bytes of a body, and whether more was left unread (a declared length
/// over the limit reads nothing). Bounded in time by the caller's timeout; in size by
/// `limit`.
async fn read_limited(
    mut resp: reqwest::Response,
    limit: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let declared = resp.content_length().unwrap_or(0);
    if declared > limit as u64 {
        return Ok((Vec::new(), true));
    }
    let mut out = Vec::with_capacity(declared as usize);
    while let Some(chunk) = resp.chunk().await? {
        let room = limit - out.len();
        if chunk.len() > room {
            out.extend_from_slice(&chunk[..room]);
            return Ok((out, true));
        }
        out.extend_from_slice(&chunk);
    }
    Ok((out, false))
}

/// A small JSON answer, at most [`MAX_SMALL_JSON_BYTES`].
async fn small_json<T: serde::de::DeserializeOwned>(resp: reqwest::Response) -> Result<T, String> {
    match read_limited(resp, MAX_SMALL_JSON_BYTES).await {
        Ok((_, true)) => Err(format!("answer larger than {MAX_SMALL_JSON_BYTES} bytes")),
        Ok((bytes, false)) => serde_json::from_slice(&bytes).map_err(|e| e.to_string()),
        Err(e) => Err(redact_error(e)),
    }
}

/// The start of an error body, bounded in size and time; the rest is never read (dropping
/// the response closes its connection).
async fn error_text(resp: reqwest::Response) -> String {
    let read = read_limited(resp, MAX_ERROR_BODY_BYTES);
    match tokio::time::timeout(ERROR_BODY_TIMEOUT, read).await {
        Ok(Ok((bytes, _))) => String::from_utf8_lossy(&bytes).into_owned(),
        _ => String::new(),
    }
}

/// The backend's credentials on a request built with `client.METHOD(url)`: those its
/// configured URL carried (user info → basic auth, query pairs appended; the proxy keeps and
/// shows its URLs without them), then `apiKey` unless the client's own credentials are
/// forwarded. An `apiKey` sent as `authorization` wins over URL user info.
pub(crate) fn authorize(
    req: reqwest::RequestBuilder,
    url: &str,
    backend: &BackendRuntime,
) -> reqwest::RequestBuilder {
    let key_in_authorization = !backend.spec.forward_client_auth
        && backend.api_key.is_some()
        && backend.spec.protocol == Protocol::Openai;
    let mut req = req;
    if !backend.url_credentials.is_empty() {
        let under = |base: &str| {
            url.strip_prefix(base)
                .is_some_and(|rest| rest.is_empty() || rest.starts_with(['/', '?']))
        };
        let creds = backend
            .url_credentials
            .iter()
            .filter(|c| under(&c.base))
            .max_by_key(|c| c.base.len())
            .or_else(|| {
                let origin = reqwest::Url::parse(url)
                    .ok()?
                    .origin()
                    .ascii_serialization();
                backend.url_credentials.iter().find(|c| c.origin == origin)
            });
        if let Some(c) = creds {
            if !c.query.is_empty() {
                let pairs: Vec<(&str, &str)> = c
                    .query
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.expose()))
                    .collect();
                req = req.query(&pairs);
            }
            if let (Some((user, pass)), false) = (&c.basic, key_in_authorization) {
                req = req.basic_auth(user.expose(), pass.as_ref().map(|p| p.expose()));
            }
        }
    }
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
            format!("connection failed: {}", root_cause(&e))
        } else if e.is_timeout() {
            "timed out".into()
        } else {
            redact_error(e)
        },
    }
}

/// The innermost cause of a connect error, which names what went wrong ("Connection refused
/// (os error 111)", "invalid peer certificate: UnknownIssuer") where reqwest's own text only
/// says the connection failed. It holds no URL: the causes come from the socket and TLS.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
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
    // Nothing to ask when the config says it all. A backend that forwards the client's own
    // credentials has none the proxy could ask with (discovery would be refused and every
    // request answered 529): validation requires its `servedModel`, and its window is the
    // configured one or unknown (then the backend itself judges the length).
    let configured = match (&spec.served_model, spec.context_window) {
        (Some(served), Some(window)) => Some((served, Some(window))),
        (Some(served), None) if spec.forward_client_auth => Some((served, None)),
        _ => None,
    };
    if let Some((served, window)) = configured {
        let d = Discovered {
            served_model: served.clone(),
            context_window: window,
            clamps_max_tokens: false,
        };
        return Ok(backend.discovered.get_or_init(|| async { d }).await.clone());
    }
    if spec.forward_client_auth {
        return Err(UpstreamError::Misconfigured {
            backend: spec.name.clone(),
            detail: "`forwardClientAuth` needs `servedModel`: the proxy has no credentials \
                     of its own to discover it with"
                .into(),
        });
    }
    let url = format!("{base}/models");
    let resp = authorize(client.get(&url), &url, backend)
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
    let list: ModelList = small_json(resp)
        .await
        .map_err(|e| UpstreamError::Discovery {
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
    let url = format!("{root}/version");
    let resp = authorize(client.get(&url), &url, backend)
        .timeout(Duration::from_secs(3))
        .send()
        .await
        .ok()?;
    let v: Value = small_json(resp.error_for_status().ok()?).await.ok()?;
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

/// A reqwest error as it may be shown: its message names the request URL, whose query
/// carries the credentials of a backend URL (`?key=…`, put back by `authorize`).
pub fn redact_error(e: reqwest::Error) -> String {
    e.without_url().to_string()
}

/// A URL without user info, query or fragment, which may carry credentials.
pub fn redact_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.set_query(None);
            u.set_fragment(None);
            u.to_string()
        }
        Err(_) => switchyard_api::validate::redact_url(url),
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
    let url = format!("{base}{path}");
    let req = authorize(client.post(&url), &url, backend)
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
    let text = error_text(resp).await;
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

/// The events of an SSE answer, each mapped by `map` as it is read: bounded in size and
/// checked to be UTF-8 (`sse.rs`). A cut body is `Interrupted`; after the first error the
/// stream ends (the response is dropped with it, closing its connection).
fn sse_items<T, F>(backend: &BackendRuntime, resp: reqwest::Response, map: F) -> UpstreamStream<T>
where
    T: Send + 'static,
    F: FnMut(&str, sse::Event<'_>) -> Result<Item<T>, UpstreamError> + Send + 'static,
{
    struct State<F> {
        body: Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>,
        decoder: sse::Decoder,
        backend: String,
        map: F,
        ended: bool,
    }
    let state = State {
        body: Box::pin(resp.bytes_stream()),
        decoder: sse::Decoder::new(MAX_SSE_EVENT_BYTES),
        backend: backend.spec.name.clone(),
        map,
        ended: false,
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        if s.ended {
            return None;
        }
        loop {
            match s.decoder.next_event() {
                Some(Ok(ev)) => {
                    let item = (s.map)(&s.backend, ev);
                    s.ended = item.is_err();
                    return Some((item, s));
                }
                Some(Err(e)) => {
                    s.ended = true;
                    let backend = s.backend.clone();
                    let err = match e {
                        sse::SseError::TooLarge(limit) => UpstreamError::TooLarge {
                            backend,
                            what: "an SSE event",
                            limit,
                        },
                        e @ sse::SseError::NotUtf8 => UpstreamError::Protocol {
                            backend,
                            detail: e.to_string(),
                        },
                    };
                    return Some((Err(err), s));
                }
                None => {}
            }
            if s.decoder.is_ended() {
                return None;
            }
            match s.body.next().await {
                None => s.decoder.end(),
                Some(Ok(chunk)) => s.decoder.feed(&chunk),
                Some(Err(e)) => {
                    s.ended = true;
                    let err = UpstreamError::Interrupted {
                        backend: s.backend.clone(),
                        detail: redact_error(e),
                    };
                    return Some((Err(err), s));
                }
            }
        }
    });
    Box::pin(stream)
}

/// OpenAI SSE chunks of a streaming chat completion.
pub fn chat_chunks(backend: &BackendRuntime, resp: reqwest::Response) -> UpstreamStream<ChatChunk> {
    sse_items(backend, resp, |name, ev| {
        if ev.data == "[DONE]" {
            return Ok(Item::Done);
        }
        match serde_json::from_str::<ChatChunk>(ev.data) {
            Ok(chunk) if !chunk.choices.is_empty() || chunk.usage.is_some() => {
                Ok(Item::Data(chunk))
            }
            Ok(chunk) => match stream_error(name, ev.data) {
                Some(e) => Err(e),
                None => Ok(Item::Data(chunk)),
            },
            Err(e) => Err(
                stream_error(name, ev.data).unwrap_or_else(|| UpstreamError::Protocol {
                    backend: name.to_owned(),
                    detail: format!("bad chunk: {e}"),
                }),
            ),
        }
    })
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
    sse_items(backend, resp, |name, ev| match ev.event {
        "error" => Err(
            stream_error(name, ev.data).unwrap_or_else(|| UpstreamError::Protocol {
                backend: name.to_owned(),
                detail: ev.data.to_owned(),
            }),
        ),
        "message_stop" => Ok(Item::Done),
        // An event without a type is the standard's "message".
        event => Ok(Item::Data(RawEvent {
            event: if event.is_empty() { "message" } else { event }.to_owned(),
            data: ev.data.to_owned(),
        })),
    })
}

/// Every SSE event of an answer as it came, for forwarding (`responsesApi: forward`).
pub fn raw_events(backend: &BackendRuntime, resp: reqwest::Response) -> UpstreamStream<RawEvent> {
    sse_items(backend, resp, |_, ev| {
        Ok(Item::Data(RawEvent {
            event: ev.event.to_owned(),
            data: ev.data.to_owned(),
        }))
    })
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
    let req = authorize(client.post(url), url, backend)
        .json(body)
        .timeout(COUNT_TIMEOUT);
    let protocol = |detail: String| UpstreamError::Protocol {
        backend: backend.spec.name.clone(),
        detail,
    };
    let resp = checked(backend, with_headers(req, extra_headers)).await?;
    let v: Value = small_json(resp).await.map_err(protocol)?;
    v.get(field)
        .and_then(Value::as_u64)
        .ok_or_else(|| protocol(format!("token count answer has no `{field}`")))
}

/// Reads a whole JSON body, at most [`MAX_RESPONSE_BYTES`]. An error object in a 200 body
/// (`{"error": {...}}`, as a proxy in front of vLLM or vLLM itself may answer) is that
/// error, not an answer missing its fields.
pub async fn json_body(
    backend: &BackendRuntime,
    resp: reqwest::Response,
) -> Result<Bytes, UpstreamError> {
    let name = &backend.spec.name;
    let (bytes, cut) =
        read_limited(resp, MAX_RESPONSE_BYTES)
            .await
            .map_err(|e| UpstreamError::Interrupted {
                backend: name.clone(),
                detail: redact_error(e),
            })?;
    if cut {
        return Err(UpstreamError::TooLarge {
            backend: name.clone(),
            what: "a response body",
            limit: MAX_RESPONSE_BYTES,
        });
    }
    if let Some(e) = body_error(name, &bytes) {
        return Err(e);
    }
    Ok(Bytes::from(bytes))
}

/// The error object of a whole body, if it is one. Fields other than `error` are skipped
/// without being built, and a body without the text `"error"` is not parsed at all: every
/// good answer used to be parsed twice (5% of a small request, bench/PROFILE.md).
fn body_error(backend: &str, bytes: &[u8]) -> Option<UpstreamError> {
    memchr::memmem::find(bytes, b"\"error\"")?;
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(default)]
        error: Option<Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).ok()?;
    probe.error.filter(Value::is_object)?;
    stream_error(backend, &String::from_utf8_lossy(bytes))
}
