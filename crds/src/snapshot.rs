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
}

impl Default for ServerSettings {
    fn default() -> Self {
        Self {
            commit_after_ms: 1_000,
            ping_interval_ms: 5_000,
            max_body_bytes: 32 * 1024 * 1024,
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
}

/// One upstream model server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Backend {
    /// Unique name routes refer to.
    pub name: String,
    /// Base URL including the API version path, e.g. `http://vllm:8000/v1`.
    pub base_url: String,
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

/// Client model names (exact or glob) served by one backend.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Route {
    pub name: String,
    /// Exact names or globs (`claude-*`, `*`). The most specific match wins: an exact name
    /// beats any glob, and a longer literal prefix beats a shorter one.
    pub models: Vec<String>,
    /// Name of the backend in `backends`.
    pub backend: String,
}

fn default_true() -> bool {
    true
}
