//! `ModelRoute`: which client model names go to which `InferenceBackend`s. Each field means
//! what it means in a route of the proxy config (`crate::snapshot::Route`); the route's name
//! is the object's name.

use super::schema;
use crate::snapshot::{Limits, ResponsesApi, RetryPolicy, Rule as RouteRule, Target, Timeouts};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Client-facing model names (exact or globs) and the backends that serve them.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "ModelRoute",
    namespaced,
    status = "ModelRouteStatus",
    shortname = "mr",
    category = "switchyard",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Models","type":"string","jsonPath":".spec.models"}"#,
    printcolumn = r#"{"name":"Synced","type":"string","jsonPath":".status.proxiesSynced"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[x_kube(validation = Rule::new("has(self.backend) || (has(self.targets) && size(self.targets) > 0)").message(
    "set `backend` (one InferenceBackend) or `targets` (weighted InferenceBackends)"
))]
#[serde(rename_all = "camelCase")]
pub struct ModelRouteSpec {
    /// Exact names or globs (`claude-*`, `*`). The most specific match wins across all routes:
    /// an exact name beats any glob, a longer literal prefix beats a shorter one. When two
    /// routes list the same entry, the older route keeps it.
    #[schemars(length(min = 1))]
    pub models: Vec<String>,
    /// Name of an `InferenceBackend` (shorthand for one target of weight 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend: Option<String>,
    /// Weighted `InferenceBackend`s, for gradual moves between models.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::structural::<Vec<Target>>")]
    pub targets: Vec<Target>,
    /// Task-aware rules, tried in order; the first that matches picks the targets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::structural::<Vec<RouteRule>>")]
    pub rules: Vec<RouteRule>,
    /// `InferenceBackend`s tried in order when the chosen target fails before the first byte
    /// reached the client.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<String>,
    /// `InferenceBackend`s with a larger context window, tried in order when the prompt is too
    /// long for the backend that would serve it (before the client is told to compact).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub context_fallbacks: Vec<String>,
    #[serde(default)]
    #[schemars(schema_with = "schema::structural::<RetryPolicy>")]
    pub retries: RetryPolicy,
    #[serde(default)]
    #[schemars(schema_with = "schema::structural::<Timeouts>")]
    pub timeouts: Timeouts,
    /// Limits on all traffic of this route together (per-key limits are separate).
    #[serde(default)]
    #[schemars(schema_with = "schema::structural::<Limits>")]
    pub limits: Limits,
    /// How OpenAI Responses requests (Codex) reach the backends: `translate` (default: through
    /// the proxy's translation, any backend) or `forward` (unchanged to backends that serve
    /// `/v1/responses` themselves; OpenAI-protocol backends only).
    #[serde(default, skip_serializing_if = "ResponsesApi::is_translate")]
    pub responses_api: ResponsesApi,
}

#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ModelRouteStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready` (in the published snapshot), `Stalled` (refused: bad reference, conflict).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::conditions")]
    pub conditions: Vec<Condition>,
    /// The model names this route serves in the published snapshot (a name another, older
    /// route claims is left out).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// Version of the snapshot the route was last published in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_version: Option<String>,
    /// Proxies that applied that snapshot, `N/M`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxies_synced: Option<String>,
}
