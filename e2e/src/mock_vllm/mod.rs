//! A mock of vLLM's OpenAI-compatible HTTP server (`vllm serve`), close enough
//! to the real thing that Switchyard's proxy can be tested against it without a
//! GPU.
//!
//! By default it behaves as the **current release, vLLM 0.34.0**, on the wire;
//! [`VllmRelease`] (`--vllm-release`) selects an older form: `0.30`
//! (0.22.1–0.31: the "at least N" context errors that reserve `max_tokens`)
//! or `0.11` (`reasoning_content`-era wordings).  Every behaviour is cited to
//! vLLM's source next to the code that imitates it; the sources were read
//! from the PyPI wheels of the named releases.  A mock kinder than vLLM hides
//! bugs, so the defaults are the strict, current ones:
//!
//! - context window (`validate::preprocess`, from `vllm/renderers/params.py`
//!   and `get_max_tokens` in `vllm/entrypoints/serve/utils/api_utils.py`):
//!   0.34 clamps `max_tokens` to the window's rest and refuses only a prompt
//!   that alone exceeds it, reporting `at least L+1` tokens; 0.30 reserves
//!   `max_tokens` and reports `at least L-M+1`; 0.11 reports exact counts;
//! - tokens are counted by a tokenizer that behaves like a real BPE over
//!   Qwen3's chat template ([`count_prompt_tokens`], `tokens.rs`);
//! - `/tokenize` and `/v1/messages/count_tokens` return the full count of a
//!   prompt longer than the window (`max_total_tokens=None`);
//! - reasoning goes in `reasoning` (PR #27752; `reasoning_content` removed by
//!   PR #33402);
//! - streams send headers at once, then nothing for a prefill time that grows
//!   with the prompt ([`MockConfig::prefill_per_1k_tokens`]);
//! - `/v1/messages`: inline `role: "system"` messages accepted and merged,
//!   billing header dropped, Anthropic error types, `message_start` with
//!   `type`/`role`, `message_delta` with `stop_sequence`, no `ping`;
//! - `/v1/responses`: the non-Harmony path's `response.*` SSE events
//!   (tool-call arguments streamed, as 0.34 does), `resp_` ids, usage with
//!   `input_tokens_details`/`output_tokens_details`; the response store off
//!   (`VLLM_ENABLE_RESPONSES_API_STORE` unset), so `previous_response_id`
//!   is a 404.
//!
//! Replies are scripted: a marker such as `[[mock:tool]]` in the last user
//! message picks a scenario (the list is in `scenario.rs`).
//!
//! Modules:
//! - `errors` — vLLM / FastAPI error bodies, including pydantic-style lists.
//! - `tokens` — the tokenizer shared by `/tokenize`, `count_tokens`, usage and
//!   the context-length checks.
//! - `validate` — request schema checks and the preprocessing pipeline
//!   (model check, tool-parser check, chat-template check, context length).
//! - `scenario` — marker parsing and the scripted replies.
//! - `generate` — applies `max_tokens` and `stop` to a script.
//! - `chat` — `/v1/chat/completions`, streaming and not.
//! - `anthropic` — `/v1/messages` and `/v1/messages/count_tokens`.
//! - `responses` — `/v1/responses` (OpenAI Responses API, non-Harmony path;
//!   the response store is off, as by default, so `previous_response_id`,
//!   `GET /v1/responses/{id}` and `background` are refused).
//! - `stats` — counters and recorded requests for tests.

mod anthropic;
mod chat;
pub mod errors;
mod generate;
mod responses;
mod scenario;
mod stats;
mod tokens;
mod validate;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::extract::{DefaultBodyLimit, Query, State};
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
pub use tokens::{count_prompt_tokens, count_prompt_tokens_without_tools, render_prompt};

/// The vLLM release whose wire behaviour the mock imitates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub enum VllmRelease {
    /// vLLM 0.10/0.11: exact counts in the context errors (`your request has P
    /// input tokens`, `'max_tokens' or 'max_completion_tokens' is too large`),
    /// `" None"`-suffixed preprocessing errors, `reasoning_content`, pydantic
    /// error lists as `repr`, `/v1/messages` without `role: "system"`,
    /// `count_tokens` or `message_start.type`.
    V0_11,
    /// vLLM 0.22.1–0.30 (`renderers/params.py` `_token_len_check`): the prompt
    /// window is `L - max_tokens`, the tokenizer stops one token past it, so
    /// the 400 reports `at least L-M+1` input tokens; `max_model_len=max_total_tokens=L`
    /// in the `max_tokens` error; vLLM type names on `/v1/messages`;
    /// `count_tokens` refuses over-long prompts.
    V0_30,
    /// vLLM 0.34.0, the current release (the default).
    #[default]
    V0_34,
}

impl VllmRelease {
    /// What `/version` answers.
    pub fn version(self) -> &'static str {
        match self {
            VllmRelease::V0_11 => "0.11.0",
            VllmRelease::V0_30 => "0.30.0",
            VllmRelease::V0_34 => "0.34.0",
        }
    }

    /// `POST /v1/messages/count_tokens` is served (present in every wheel
    /// from 0.19.1 on; not in the 0.11 form).
    pub fn serves_count_tokens(self) -> bool {
        self != VllmRelease::V0_11
    }

    /// `role: "system"` inside Anthropic `messages` is accepted (the
    /// `AnthropicMessage.role` Literal gained `"system"` in 0.26).
    pub fn anthropic_inline_system(self) -> bool {
        self != VllmRelease::V0_11
    }
}

impl std::str::FromStr for VllmRelease {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim_start_matches('v') {
            "0.11" | "0.11.0" => Ok(VllmRelease::V0_11),
            "0.30" | "0.30.0" => Ok(VllmRelease::V0_30),
            "0.34" | "0.34.0" | "current" => Ok(VllmRelease::V0_34),
            other => Err(format!(
                "unknown vLLM release `{other}` (expected 0.11, 0.30 or 0.34)"
            )),
        }
    }
}

/// Which field vLLM uses for reasoning text (reasoning parsers).
///
/// `reasoning` since PR #27752 (Nov 2025), which deprecated
/// `reasoning_content`; PR #33402 removed the old name from the output
/// (absent from 0.19.1 on).  Proxies must cope with both.
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
    /// The release whose wire behaviour is imitated (default: current, 0.34).
    pub vllm_release: VllmRelease,
    /// Reasoning field name (`reasoning`; `reasoning_content` before PR #27752).
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
    /// `/tokenize` renders `tools`.  `TokenizeChatRequest` gained `tools` in
    /// v0.9.0 (PR #18187); set false to imitate 0.8.5 and earlier, where the
    /// field was ignored and the count left the tool schemas out.
    pub tokenize_tools: bool,
    /// Prefill time per 1,000 prompt tokens: streams send their headers at
    /// once and the first chunk only after this (capped by `prefill_cap`).
    /// A `[[mock:slow:MS]]` marker replaces it.
    pub prefill_per_1k_tokens: Duration,
    /// Upper bound of the proportional prefill time.
    pub prefill_cap: Duration,
}

impl Default for MockConfig {
    fn default() -> Self {
        MockConfig {
            served_model_name: "qwen3-coder".to_string(),
            max_model_len: 32768,
            vllm_release: VllmRelease::default(),
            reasoning_field: ReasoningField::Reasoning,
            strict_system: true,
            tool_parser: true,
            anthropic_endpoint: true,
            root: "/models/Qwen3-Coder".to_string(),
            tokenize_tools: true,
            prefill_per_1k_tokens: Duration::from_millis(1),
            prefill_cap: Duration::from_millis(50),
        }
    }
}

impl MockConfig {
    /// The prefill delay for a prompt of `prompt_tokens` tokens.
    pub fn prefill_for(&self, prompt_tokens: u32) -> Duration {
        (self.prefill_per_1k_tokens * prompt_tokens / 1000).min(self.prefill_cap)
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
        .route("/v1/messages/count_tokens", post(anthropic::count_tokens))
        .route(responses::PATH, post(responses::create))
        .route("/v1/responses/{response_id}", get(responses::retrieve))
        .route(
            "/v1/responses/{response_id}/cancel",
            post(responses::cancel),
        )
        .route("/mock/stats", get(mock_stats))
        .route("/mock/reset", post(mock_reset))
        .route("/mock/fail_next", post(mock_fail_next))
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

/// vLLM's `/version`: the release imitated.
async fn version(State(st): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({ "version": st.cfg.vllm_release.version() }))
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

/// vLLM's `/tokenize` (`TokenizeChatRequest` or `TokenizeCompletionRequest`,
/// `vllm/entrypoints/serve/tokenize/`).
///
/// Uses the same [`count_prompt_tokens`] as the context-length checks, so a
/// client that asks `/tokenize` gets exactly the number the 400 errors use.
/// It never enforces the window: every release builds its `TokenizeParams`
/// with `max_total_tokens=None`, so a prompt longer than `max_model_len`
/// gets its full count with a 200 (0.8.5's `_validate_input` returned early
/// for tokenize requests too).  `tools` count unless
/// [`MockConfig::tokenize_tools`] is off (before v0.9.0, PR #18187).
async fn tokenize(State(st): State<Arc<AppState>>, headers: HeaderMap, body: Bytes) -> Response {
    st.stats
        .tokenize_calls
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let release = st.cfg.vllm_release;
    let value = match validate::parse_json_body(&headers, &body) {
        Ok(v) => v,
        Err(e) => return e.into_openai_response(release),
    };
    if let Err(e) = validate::validate_tokenize(&value) {
        return e.into_openai_response(release);
    }
    if let Err(e) = validate::check_model(&st.cfg, &value) {
        return e.into_openai_response(release);
    }
    if value.get("messages").is_some() {
        if let Err(e) = validate::check_template(&st.cfg, &value) {
            return e.into_openai_response(release);
        }
    }
    let text = tokens::prompt_text(&value, st.cfg.tokenize_tools);
    let ids = tokens::token_ids(&text);
    let return_strs = value
        .get("return_token_strs")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    /// `TokenizeResponse`, in field order.
    #[derive(serde::Serialize)]
    struct TokenizeOut {
        count: u32,
        max_model_len: u32,
        tokens: Vec<u32>,
        token_strs: Option<Vec<String>>,
    }
    let out = TokenizeOut {
        count: ids.len() as u32,
        max_model_len: st.cfg.max_model_len,
        tokens: ids,
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

#[derive(serde::Deserialize)]
struct FailNext {
    status: Option<u16>,
    count: Option<u64>,
}

/// `POST /mock/fail_next?status=503&count=1`: the next `count` model calls
/// (`/v1/chat/completions`, `/v1/messages`, `/v1/responses`) answer `status` as the
/// `[[mock:error:CODE]]` scenario would, then the mock serves normally again.
async fn mock_fail_next(State(st): State<Arc<AppState>>, Query(q): Query<FailNext>) -> Json<Value> {
    let status = q.status.unwrap_or(503);
    let count = q.count.unwrap_or(1);
    st.stats.fail_next(status, count);
    Json(json!({ "status": status, "count": count }))
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
