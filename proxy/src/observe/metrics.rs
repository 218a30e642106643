//! Prometheus metrics, served on the admin listener. Every label value comes from the config
//! (route and backend names) or from a fixed set, so cardinality stays bounded.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub route: String,
    pub backend: String,
    /// Client key name (never the key), `anonymous` without keys.
    pub key: String,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub route: String,
    pub backend: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TokenLabels {
    pub route: String,
    pub backend: String,
    /// `input`, `output` or `cache_read`; named after OpenTelemetry GenAI's
    /// `gen_ai.token.type` attribute.
    pub gen_ai_token_type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabels {
    pub backend: String,
    pub kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: String,
}

pub struct Metrics {
    registry: Registry,
    pub requests: Family<RequestLabels, Counter>,
    pub duration: Family<BackendLabels, Histogram>,
    pub ttft: Family<BackendLabels, Histogram>,
    pub tokens: Family<TokenLabels, Counter>,
    pub active_streams: Gauge,
    pub upstream_errors: Family<KindLabels, Counter>,
    /// Request fields a backend could not take, by fixed name class.
    pub dropped_params: Family<KindLabels, Counter>,
    /// Corrective resends after vLLM reported the exact prompt size.
    pub context_retries: Family<KindLabels, Counter>,
    pub client_disconnects: Counter,
    pub config_info: Family<VersionLabels, Gauge>,
    /// Attempts after the first, by backend retried on.
    pub retries: Family<KindLabels, Counter>,
    /// Requests served by a fallback backend rather than the route's first choice.
    pub fallbacks: Family<BackendLabels, Counter>,
    pub ejections: Family<KindLabels, Counter>,
    pub retry_budget_exhausted: Family<KindLabels, Counter>,
    /// Config reloads by result (`applied`, `rejected`).
    pub reloads: Family<ResultLabels, Counter>,
    /// Failed list/watch calls to the Kubernetes API (cluster mode); the last good config
    /// keeps serving meanwhile.
    pub config_watch_errors: Counter,
    /// Requests refused before being served, by reason (`max_in_flight`, `body_read_timeout`).
    pub requests_refused: Family<ReasonLabels, Counter>,
    /// Requests being served now (`server.maxInFlight` caps them); set when scraped.
    pub requests_in_flight: Gauge,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~65 s
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("switchyard");
        let requests = Family::default();
        let duration = Family::<BackendLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let ttft = Family::<BackendLabels, Histogram>::new_with_constructor(
            latency_histogram as fn() -> Histogram,
        );
        let tokens = Family::default();
        let active_streams = Gauge::default();
        let upstream_errors = Family::default();
        let dropped_params = Family::default();
        let context_retries = Family::default();
        let client_disconnects = Counter::default();
        let config_info = Family::default();
        let retries = Family::default();
        let fallbacks = Family::default();
        let ejections = Family::default();
        let retry_budget_exhausted = Family::default();
        let reloads = Family::default();
        let config_watch_errors = Counter::default();
        let requests_refused = Family::default();
        let requests_in_flight = Gauge::default();
        registry.register(
            "requests",
            "Client requests by route, backend and HTTP status",
            requests.clone(),
        );
        registry.register(
            "request_duration_seconds",
            "Time from request to last byte",
            duration.clone(),
        );
        registry.register(
            "time_to_first_token_seconds",
            "Time from request to the first streamed token",
            ttft.clone(),
        );
        registry.register(
            "tokens",
            "Tokens by route, backend and type (input, output, cache_read)",
            tokens.clone(),
        );
        registry.register(
            "active_streams",
            "Streams being served now",
            active_streams.clone(),
        );
        registry.register(
            "upstream_errors",
            "Backend failures by kind",
            upstream_errors.clone(),
        );
        registry.register(
            "dropped_params",
            "Request fields not sent to a backend, by parameter class",
            dropped_params.clone(),
        );
        registry.register(
            "context_retries",
            "Resends with max_tokens clamped to vLLM's exact prompt count",
            context_retries.clone(),
        );
        registry.register(
            "client_disconnects",
            "Streams the client abandoned (upstream request cancelled)",
            client_disconnects.clone(),
        );
        registry.register(
            "config_info",
            "Applied configuration version",
            config_info.clone(),
        );
        registry.register(
            "retries",
            "Attempts after the first, by backend",
            retries.clone(),
        );
        registry.register(
            "fallbacks",
            "Requests answered by a fallback backend",
            fallbacks.clone(),
        );
        registry.register(
            "ejections",
            "Endpoints ejected after consecutive failures",
            ejections.clone(),
        );
        registry.register(
            "retry_budget_exhausted",
            "Retries refused because the backend's retry budget was spent",
            retry_budget_exhausted.clone(),
        );
        registry.register(
            "config_reloads",
            "Configuration reloads by result",
            reloads.clone(),
        );
        registry.register(
            "config_watch_errors",
            "Failed list/watch calls for the snapshot ConfigMap and credentials Secret (cluster mode)",
            config_watch_errors.clone(),
        );
        registry.register(
            "requests_refused",
            "Requests refused before being served, by reason",
            requests_refused.clone(),
        );
        registry.register(
            "requests_in_flight",
            "Requests being served (server.maxInFlight caps them)",
            requests_in_flight.clone(),
        );
        Self {
            registry,
            requests,
            duration,
            ttft,
            tokens,
            active_streams,
            upstream_errors,
            dropped_params,
            context_retries,
            client_disconnects,
            config_info,
            retries,
            fallbacks,
            ejections,
            retry_budget_exhausted,
            reloads,
            config_watch_errors,
            requests_refused,
            requests_in_flight,
        }
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

/// Label class of a dropped field: a known parameter name, or `other` for client-invented
/// keys (which must not become label values).
pub fn param_class(name: &str) -> &'static str {
    const KNOWN: &[&str] = &[
        "temperature",
        "top_p",
        "top_k",
        "stop",
        "user",
        "parallel_tool_calls",
        "chat_template_kwargs",
        "reasoning_effort",
    ];
    if name.starts_with("tools[") {
        return "server_tool";
    }
    KNOWN
        .iter()
        .find(|k| **k == name)
        .copied()
        .unwrap_or("other")
}
