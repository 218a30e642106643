//! A mock of vLLM's OpenAI-compatible HTTP server (`vllm serve`), close enough
//! to the real thing that Switchyard's proxy can be tested against it without a
//! GPU.
//!
//! What is imitated, and from which vLLM version, is documented next to each
//! piece of behaviour.  The baseline is vLLM 0.10/0.11 (`reasoning_content`,
//! errors nested under `"error"`, preprocessing errors formatted as
//! `f"{e} {e.__cause__}"`), with the Anthropic `/v1/messages` endpoint as
//! served by later releases.
//!
//! Replies are scripted: a marker such as `[[mock:tool]]` in the last user
//! message picks a scenario (the list is in `scenario.rs`).
//!
//! Modules:
//! - `errors` — vLLM / FastAPI error bodies, including pydantic-style lists.
//! - `tokens` — the deterministic "tokenizer" shared by `/tokenize` and the
//!   context-length checks.
//! - `validate` — request schema checks and the preprocessing pipeline
//!   (model check, tool-parser check, chat-template check, context length).
//! - `scenario` — marker parsing and the scripted replies.
//! - `generate` — applies `max_tokens` and `stop` to a script.
//! - `chat` — `/v1/chat/completions`, streaming and not.
//! - `anthropic` — `/v1/messages`.
//! - `stats` — counters and recorded requests for tests.

mod anthropic;
mod chat;
pub mod errors;
mod generate;
mod scenario;
mod stats;
mod tokens;
mod validate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use anthropic::anthropic_to_chat;
pub use stats::MockStats;
pub use tokens::{count_prompt_tokens, render_prompt};

/// Which field vLLM uses for reasoning text (reasoning parsers).
///
/// vLLM <= 0.11 sends `reasoning_content`; later releases renamed it to
/// `reasoning`.  Proxies must cope with both.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasoningField {
    ReasoningContent,
    Reasoning,
}

impl ReasoningField {
    /// The JSON field name used in messages and deltas.
    pub fn as_str(self) -> &'static str {
        match self {
            ReasoningField::ReasoningContent => "reasoning_content",
            ReasoningField::Reasoning => "reasoning",
        }
    }
}

impl std::str::FromStr for ReasoningField {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "reasoning_content" => Ok(ReasoningField::ReasoningContent),
            "reasoning" => Ok(ReasoningField::Reasoning),
            other => Err(format!(
                "unknown reasoning field `{other}` (expected reasoning_content or reasoning)"
            )),
        }
    }
}

/// How the mock server is configured; mirrors the `vllm serve` flags that
/// change behaviour the proxy can observe.
#[derive(Debug, Clone)]
pub struct MockConfig {
    /// `--served-model-name`: the only model name accepted in requests.
    pub served_model_name: String,
    /// `--max-model-len`: context window used by the length checks.
    pub max_model_len: u32,
    /// Reasoning field name (`reasoning_content` before vLLM 0.12).
    pub reasoning_field: ReasoningField,
    /// Chat template only allows one leading system message, raising
    /// `System message must be at the beginning.` otherwise (Qwen3.5/3.6
    /// templates do this; Qwen3-Coder's does not).
    pub strict_system: bool,
    /// `--enable-auto-tool-choice --tool-call-parser ...` given.
    pub tool_parser: bool,
    /// Serve the Anthropic `/v1/messages` endpoint.
    pub anthropic_endpoint: bool,
    /// `root` reported by `/v1/models` (the model path given to `vllm serve`).
    pub root: String,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            served_model_name: "qwen3-coder".to_string(),
            max_model_len: 32768,
            reasoning_field: ReasoningField::ReasoningContent,
            strict_system: true,
            tool_parser: true,
            anthropic_endpoint: true,
            root: "/models/Qwen3-Coder".to_string(),
        }
    }
}

/// Shared state of a running mock.
pub(crate) struct AppState {
    pub cfg: MockConfig,
    pub stats: Arc<MockStats>,
}

/// A running mock vLLM server.  Dropping it stops accepting connections.
pub struct MockVllm {
    /// The bound address (the real port when started on port 0).
    pub addr: SocketAddr,
    /// Counters and recorded requests.
    pub stats: Arc<MockStats>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl MockVllm {
    /// Binds `listen` and serves in a background task.
    pub async fn start(cfg: MockConfig, listen: SocketAddr) -> anyhow::Result<MockVllm> {
        let listener = tokio::net::TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let stats = Arc::new(MockStats::default());
        let state = Arc::new(AppState {
            cfg,
            stats: stats.clone(),
        });
        let app = router(state);
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let serve = axum::serve(listener, app).with_graceful_shutdown(async move {
                let _ = rx.await;
            });
            if let Err(err) = serve.await {
                tracing::error!(%err, "mock vLLM server failed");
            }
        });
        Ok(MockVllm {
            addr,
            stats,
            shutdown: Some(tx),
            task: Some(task),
        })
    }

    /// `http://127.0.0.1:PORT/v1`, the OpenAI base URL clients are given.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// `http://127.0.0.1:PORT` without the `/v1` suffix.
    pub fn root_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops accepting connections and waits (at most 2 s) for in-flight
    /// requests to finish, then aborts the server task.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(mut task) = self.task.take() {
            if tokio::time::timeout(Duration::from_secs(2), &mut task)
                .await
                .is_err()
            {
                task.abort();
            }
        }
    }

    /// Waits until the server task ends (used by the binary).
    pub async fn wait(mut self) {
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for MockVllm {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/version", get(version))
        .route("/v1/models", get(models))
        .route("/tokenize", post(tokenize))
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/messages", post(anthropic::messages))
        .route("/mock/stats", get(mock_stats))
        .route("/mock/reset", post(mock_reset))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        // vLLM (uvicorn) has no request body limit; agent requests are big.
        .layer(DefaultBodyLimit::disable())
        .with_state(state)
}

pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `uuid4().hex`, vLLM's `random_uuid()`.
pub(crate) fn random_hex() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

/// vLLM's `/health`: 200 with an empty body.
async fn health() -> StatusCode {
    StatusCode::OK
}

/// vLLM's `/version`.
async fn version() -> Json<Value> {
    Json(json!({ "version": "0.11.0" }))
}

/// vLLM's `/v1/models` (`ModelList` of one `ModelCard`).
async fn models(State(st): State<Arc<AppState>>) -> Json<Value> {
    let now = unix_now();
    Json(json!({
        "object": "list",
        "data": [{
            "id": st.cfg.served_model_name,
            "object": "model",
            "created": now,
            "owned_by": "vllm",
            "root": st.cfg.root,
            "parent": null,
            "max_model_len": st.cfg.max_model_len,
            "permission": [{
                "id": format!("modelperm-{}", random_hex()),
                "object": "model_permission",
                "created": now,
                "allow_create_engine": false,
                "allow_sampling": true,
                "allow_logprobs": true,
                "allow_search_indices": false,
                "allow_view": true,
                "allow_fine_tuning": false,
                "organization": "*",
                "group": null,
                "is_blocking": false
            }]
        }]
    }))
}

/// vLLM's `/tokenize` (`TokenizeChatRequest` or `TokenizeCompletionRequest`).
///
/// Uses the same [`count_prompt_tokens`] as the context-length checks, so a
/// client that asks `/tokenize` gets exactly the number the 400 errors use.
async fn tokenize(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    let value = match validate::parse_json_body(&headers, &body) {
        Ok(v) => v,
        Err(e) => return e.into_openai_response(),
    };
    if let Err(e) = validate::validate_tokenize(&value) {
        return e.into_openai_response();
    }
    if let Err(e) = validate::check_model(&st.cfg, &value) {
        return e.into_openai_response();
    }
    if value.get("messages").is_some() {
        if let Err(e) = validate::check_template(&st.cfg, &value) {
            return e.into_openai_response();
        }
    }
    let count = count_prompt_tokens(&value);
    let return_strs = value
        .get("return_token_strs")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    let text = tokens::prompt_text(&value);
    /// `TokenizeResponse`, in field order.
    #[derive(serde::Serialize)]
    struct TokenizeOut {
        count: u32,
        max_model_len: u32,
        tokens: Vec<u32>,
        token_strs: Option<Vec<String>>,
    }
    let out = TokenizeOut {
        count,
        max_model_len: st.cfg.max_model_len,
        tokens: tokens::token_ids(&text),
        token_strs: return_strs.then(|| tokens::token_strs(&text)),
    };
    chat::json_response(StatusCode::OK, serde_json::to_vec(&out).unwrap_or_default())
}

async fn mock_stats(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(st.stats.snapshot_json(50))
}

async fn mock_reset(State(st): State<Arc<AppState>>) -> StatusCode {
    st.stats.reset();
    StatusCode::OK
}

/// FastAPI's default 405 body.
async fn method_not_allowed() -> Response {
    (
        StatusCode::METHOD_NOT_ALLOWED,
        Json(json!({ "detail": "Method Not Allowed" })),
    )
        .into_response()
}

/// FastAPI's default 404 body for unknown routes.
async fn not_found() -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({ "detail": "Not Found" })),
    )
        .into_response()
}
