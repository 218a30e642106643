//! The routing snapshot: the one document a proxy serves from.
//!
//! The same schema is the standalone proxy's YAML config file and (later) the body of the
//! ConfigMap the operator publishes, so a proxy never needs to know which one it runs from.
//! Field names are camelCase to match the Kubernetes manifests users already write.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A whole routing configuration: backends and the routes that point at them.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RoutingSnapshot {
    /// Free-form version label; the proxy reports it (plus a content hash) on its admin port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default)]
    pub server: ServerSettings,
    pub backends: Vec<Backend>,
    pub routes: Vec<Route>,
    /// Client API keys. Empty: no key is required (any `x-api-key` or bearer is accepted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keys: Vec<ClientKey>,
}

/// Stream-keeping and limits shared by every route.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ServerSettings {
    /// How long to hold a streaming response back waiting for the backend's first chunk, so
    /// that an early backend error can still become a real HTTP error status.
    pub commit_after_ms: u64,
    /// Interval of `ping` events while the backend is silent (long prefill).
    pub ping_interval_ms: u64,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long a client may take to send its whole request body (slow senders hold a
    /// connection and a key's concurrency slot otherwise). Over it → 408.
    pub body_read_timeout_ms: u64,
    /// Requests in flight on this proxy, all keys and routes together; over it → 529
    /// `overloaded_error` at once (Claude Code retries it), before the body is read.
    pub max_in_flight: usize,
    /// On SIGTERM: how long new requests are still accepted after `/readyz` starts failing,
    /// so load balancers stop sending before the listener closes.
    pub shutdown_grace_ms: u64,
    /// On SIGTERM: how long in-flight streams may run before the process exits anyway.
    pub drain_timeout_ms: u64,
    /// Capture every request's content (what the client sent, what went upstream, the
    /// answer) for the request view, and the client's request in the access log; secrets
    /// redacted. Off by default; a key's own `logContent` turns it on for that key alone.
    pub log_content: bool,
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            commit_after_ms: 1_000,
            ping_interval_ms: 5_000,
            max_body_bytes: 32 * 1024 * 1024,
            body_read_timeout_ms: 30_000,
            max_in_flight: 4_096,
            shutdown_grace_ms: 2_000,
            drain_timeout_ms: 600_000,
            log_content: false,
        }
    }
}

/// Wire protocol a backend speaks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// OpenAI Chat Completions (`/v1/chat/completions`): requests are translated.
    #[default]
    Openai,
    /// Anthropic Messages (`/v1/messages`, vLLM ≥ 0.11 or Anthropic): passed through after the
    /// Claude Code fixes.
    Anthropic,
}

/// How a backend turns reasoning on and off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ThinkingStyle {
    /// `reasoningEffort` for gpt-oss models, `chatTemplateKwargs` otherwise.
    #[default]
    Auto,
    /// `chat_template_kwargs: {enable_thinking, thinking}` (Qwen3, DeepSeek, GLM templates).
    ChatTemplateKwargs,
    /// `reasoning_effort: low|medium|high` (gpt-oss and OpenAI reasoning models).
    ReasoningEffort,
    /// Send no reasoning switch at all.
    None,
}

/// Where mid-conversation `role: "system"` messages go for templates that allow only a
/// leading one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum SystemMessagePlacement {
    /// Kept where they are, as `<system-reminder>` text merged into the neighbouring user turn
    /// (Claude Code's own convention for mid-conversation instructions).
    #[default]
    Inline,
    /// Appended to the leading system message.
    Hoist,
    /// Sent unchanged (for templates that accept system messages anywhere).
    Keep,
}

/// Where a secret comes from. Secrets never live in the snapshot itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SecretRef {
    /// Read from this environment variable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub env: Option<String>,
    /// Read from this file (trailing whitespace trimmed), e.g. a mounted Kubernetes Secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// Key in the credentials Secret the operator publishes beside the snapshot (cluster mode:
    /// the proxy watches that Secret through the Kubernetes API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_key: Option<String>,
}

/// One upstream model server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backend {
    /// Unique name routes refer to.
    pub name: String,
    /// Base URL including the API version path, e.g. `http://vllm:8000/v1`. Used for model
    /// discovery, and for requests when `endpoints` is empty.
    pub base_url: String,
    /// Replicas of the same model (same URL shape as `baseUrl`). Requests are spread over them
    /// by least outstanding requests with session affinity.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<String>,
    #[serde(default)]
    pub protocol: Protocol,
    /// Model name to send upstream. Discovered from `/v1/models` when the server serves one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_model: Option<String>,
    /// Total context window in tokens. Discovered from vLLM's `max_model_len` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context_window: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key: Option<SecretRef>,
    #[serde(default)]
    pub thinking: ThinkingStyle,
    #[serde(default)]
    pub system_messages: SystemMessagePlacement,
    /// Recover tool calls the backend left in text (Hermes `<tool_call>`, gpt-oss Harmony).
    #[serde(default = "default_true")]
    pub text_tool_calls: bool,
    #[serde(default)]
    pub parameters: ParameterPolicy,
    /// Forward the client's own credentials instead of `apiKey` (a pass-through to Anthropic
    /// with the user's key). Off by default: client keys never leave the proxy otherwise.
    #[serde(default)]
    pub forward_client_auth: bool,
    /// Active health checking; passive outlier ejection is always on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub health_check: Option<HealthCheck>,
    #[serde(default)]
    pub outlier: OutlierPolicy,
    #[serde(default)]
    pub retry_budget: RetryBudget,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct HealthCheck {
    /// Path under the server root (vLLM: `/health`).
    pub path: String,
    pub interval_ms: u64,
}

impl Default for HealthCheck {
    fn default() -> Self {
        Self {
            path: "/health".into(),
            interval_ms: 5_000,
        }
    }
}

/// Passive ejection: an endpoint that fails this many times in a row is skipped for a
/// backoff that doubles on each repeat ejection, up to the maximum.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct OutlierPolicy {
    pub consecutive_failures: u32,
    pub base_ejection_ms: u64,
    pub max_ejection_ms: u64,
}

impl Default for OutlierPolicy {
    fn default() -> Self {
        Self {
            consecutive_failures: 3,
            base_ejection_ms: 5_000,
            max_ejection_ms: 60_000,
        }
    }
}

/// Retries to one backend may add at most `ratio` of its recent requests (plus a small
/// floor), so a failing backend is not hammered by every client's retries at once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RetryBudget {
    pub ratio: f64,
    pub min_per_second: u32,
}

impl Default for RetryBudget {
    fn default() -> Self {
        Self {
            ratio: 0.2,
            min_per_second: 5,
        }
    }
}

/// Which request parameters reach the backend, beyond the translated core.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct ParameterPolicy {
    /// OpenAI-side parameter names never sent (e.g. `top_k` for a hosted OpenAI endpoint).
    /// Each drop is logged at debug level and counted in a metric.
    pub drop: Vec<String>,
    /// Extra fields merged into every upstream request body (e.g. `repetition_penalty`).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra_body: BTreeMap<String, serde_json::Value>,
}

/// Client model names (exact or glob) and where their requests go.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Route {
    pub name: String,
    /// Exact names or globs (`claude-*`, `*`). The most specific match wins: an exact name
    /// beats any glob, and a longer literal prefix beats a shorter one.
    pub models: Vec<String>,
    /// Shorthand for `targets: [{backend: NAME}]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Weighted backends, for gradual moves between models.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<Target>,
    /// Task-aware rules, tried in order; the first that matches picks the targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// Backends tried in order when the chosen target fails before the first byte reached
    /// the client.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
    /// Backends with a larger context window, tried in order when the prompt is too long for
    /// the backend that would serve it; the client is told to compact only when none fits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context_fallbacks: Vec<String>,
    #[serde(default)]
    pub retries: RetryPolicy,
    #[serde(default)]
    pub timeouts: Timeouts,
    /// Limits on all traffic of this route together, whoever sends it (per-key limits are in
    /// `keys`). Over a limit → 429 with `retry-after`.
    #[serde(default, skip_serializing_if = "Limits::is_unlimited")]
    pub limits: Limits,
    /// How OpenAI Responses requests (`POST /v1/responses`, Codex) reach this route's
    /// backends.
    #[serde(default, skip_serializing_if = "ResponsesApi::is_translate")]
    pub responses_api: ResponsesApi,
}

/// How a route serves OpenAI's Responses API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum ResponsesApi {
    /// Translated into the Messages request every door shares (fixes, context clamp, text
    /// tool calls, any backend protocol); no response state is kept.
    #[default]
    Translate,
    /// Sent unchanged (but the model name) to backends that serve `/v1/responses`
    /// themselves (vLLM does), which then answer what the proxy does not translate:
    /// `previous_response_id`, hosted tools, gpt-oss Harmony items. OpenAI-protocol
    /// backends only.
    Forward,
}

impl ResponsesApi {
    pub fn is_translate(&self) -> bool {
        *self == ResponsesApi::Translate
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Target {
    pub backend: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    pub name: String,
    pub when: RuleMatch,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<Target>,
}

/// Conditions of a rule; every one given must hold.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RuleMatch {
    /// A Claude Code subagent or background call: the `x-claude-code-agent-id` header is
    /// present, or the requested model is a haiku-tier name (`*haiku*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subagent: Option<bool>,
    /// The request asks for thinking (`enabled` or `adaptive`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub thinking: Option<bool>,
    /// Estimated input tokens at least this many (long-context requests).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min_input_tokens: Option<u64>,
    /// The conversation contains images.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<bool>,
    /// The request offers tools.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tools: Option<bool>,
    /// A request header has this exact value (a user's "profile").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub header: Option<HeaderMatch>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderMatch {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct RetryPolicy {
    /// Attempts on each backend of the plan (the first included) before moving to the next
    /// fallback. An endpoint that refused the connection is not retried in the same request.
    pub attempts: u32,
    /// First backoff; doubles per retry, with full jitter.
    pub backoff_ms: u64,
    pub max_backoff_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            attempts: 3,
            backoff_ms: 100,
            max_backoff_ms: 2_000,
        }
    }
}

/// Defaults suit long agent turns: a 600 s stream is never cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Timeouts {
    pub connect_ms: u64,
    /// Until the backend's first byte (vLLM sends it after prefill: long prompts take seconds).
    pub first_token_ms: u64,
    /// Longest silence between chunks once tokens flow.
    pub idle_ms: u64,
    /// Whole request.
    pub total_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect_ms: 5_000,
            first_token_ms: 300_000,
            idle_ms: 120_000,
            total_ms: 3_600_000,
        }
    }
}

/// A client API key, stored only as the SHA-256 of the key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientKey {
    /// Shown in logs and metrics instead of the key.
    pub name: String,
    /// Hex SHA-256 of the key (`printf %s "$KEY" | sha256sum`).
    pub sha256: String,
    /// Routes this key may use; empty means all.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routes: Vec<String>,
    #[serde(default)]
    pub limits: Limits,
    /// Capture this key's request and answer content for the request view (redacted), as
    /// `server.logContent` does for every key.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub log_content: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct Limits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub concurrent: Option<u32>,
    /// Input plus output tokens per minute, charged when a request completes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
}

impl Limits {
    pub fn is_unlimited(&self) -> bool {
        *self == Limits::default()
    }
}

impl Route {
    /// The route's default targets (`backend` shorthand or `targets`).
    pub fn default_targets(&self) -> Vec<Target> {
        targets_of(self.backend.as_deref(), &self.targets)
    }

    /// Every backend the route can send to: targets, rules' targets, fallbacks and context
    /// fallbacks, in that order, each once.
    pub fn backend_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .default_targets()
            .into_iter()
            .map(|t| t.backend)
            .collect();
        for rule in &self.rules {
            names.extend(rule.targets().into_iter().map(|t| t.backend));
        }
        names.extend(self.fallbacks.iter().cloned());
        names.extend(self.context_fallbacks.iter().cloned());
        let mut seen = std::collections::HashSet::new();
        names.retain(|n| seen.insert(n.clone()));
        names
    }
}

impl Rule {
    pub fn targets(&self) -> Vec<Target> {
        targets_of(self.backend.as_deref(), &self.targets)
    }
}

fn targets_of(backend: Option<&str>, targets: &[Target]) -> Vec<Target> {
    let mut out: Vec<Target> = backend
        .map(|b| Target {
            backend: b.to_owned(),
            weight: 1,
        })
        .into_iter()
        .collect();
    out.extend(targets.iter().cloned());
    out
}

fn default_weight() -> u32 {
    1
}

fn default_true() -> bool {
    true
}
