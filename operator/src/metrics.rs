//! Operator metrics (Prometheus text at `/metrics`) and the admin HTTP server (`/healthz`).

use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::Router;
use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ErrorLabels {
    pub controller: &'static str,
    /// `Error::metric_label()`: a bounded set.
    pub error: &'static str,
}

/// A backend, by namespace and name (objects the user created: a bounded set).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BackendLabels {
    pub namespace: String,
    pub backend: String,
}

type HistogramFamily = Family<ControllerLabels, Histogram, fn() -> Histogram>;
type BackendHistogramFamily = Family<BackendLabels, Histogram, fn() -> Histogram>;

pub struct Metrics {
    registry: Registry,
    pub reconciles: Family<ControllerLabels, Counter>,
    pub errors: Family<ErrorLabels, Counter>,
    pub duration: HistogramFamily,
    /// ConfigMap/Secret writes (content changed).
    pub snapshot_writes: Counter,
    pub proxies_total: Gauge,
    pub proxies_synced: Gauge,
    /// 1 while this replica holds the Lease.
    pub leader: Gauge,
    /// Successful warm-ups of a serving pod, first request to last answer.
    pub warmup_duration: BackendHistogramFamily,
    /// Warm-ups that failed (error answer, refused connection, timeout).
    pub warmup_failures: Family<BackendLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("switchyard_operator");
        let reconciles = Family::<ControllerLabels, Counter>::default();
        registry.register("reconciles", "Reconciliations run", reconciles.clone());
        let errors = Family::<ErrorLabels, Counter>::default();
        registry.register(
            "reconcile_errors",
            "Reconciliations that failed, by error kind",
            errors.clone(),
        );
        let duration: HistogramFamily = Family::new_with_constructor(|| {
            // 5 ms … ~20 s: an apply round trip up to a slow proxy poll.
            Histogram::new(exponential_buckets(0.005, 2.0, 12))
        });
        registry.register(
            "reconcile_duration_seconds",
            "Duration of reconciliations",
            duration.clone(),
        );
        let snapshot_writes = Counter::default();
        registry.register(
            "snapshot_writes",
            "Writes of the snapshot ConfigMap or credentials Secret",
            snapshot_writes.clone(),
        );
        let proxies_total = Gauge::default();
        registry.register("proxies", "Proxy pods found", proxies_total.clone());
        let proxies_synced = Gauge::default();
        registry.register(
            "proxies_synced",
            "Proxy pods running the current snapshot",
            proxies_synced.clone(),
        );
        let leader = Gauge::default();
        registry.register(
            "leader",
            "1 while this replica is the leader",
            leader.clone(),
        );
        let warmup_duration: BackendHistogramFamily = Family::new_with_constructor(|| {
            // 0.25 s … ~8.5 min: a warm server answers in under a second, a cold one compiling
            // kernels on first use takes minutes.
            Histogram::new(exponential_buckets(0.25, 2.0, 12))
        });
        registry.register(
            "warmup_duration_seconds",
            "Duration of successful warm-ups of a vLLM serving pod",
            warmup_duration.clone(),
        );
        let warmup_failures = Family::<BackendLabels, Counter>::default();
        registry.register(
            "warmup_failures",
            "Warm-ups of a vLLM serving pod that failed (retried with backoff)",
            warmup_failures.clone(),
        );
        Self {
            registry,
            reconciles,
            errors,
            duration,
            snapshot_writes,
            proxies_total,
            proxies_synced,
            leader,
            warmup_duration,
            warmup_failures,
        }
    }
}

impl Metrics {
    /// Counts a reconciliation and observes its duration when the guard drops.
    pub fn reconcile(&self, controller: &'static str) -> ReconcileTimer<'_> {
        self.reconciles
            .get_or_create(&ControllerLabels { controller })
            .inc();
        ReconcileTimer {
            metrics: self,
            controller,
            start: Instant::now(),
        }
    }

    pub fn error(&self, controller: &'static str, error: &'static str) {
        self.errors
            .get_or_create(&ErrorLabels { controller, error })
            .inc();
    }

    pub fn warmed_up(&self, namespace: &str, backend: &str, took: std::time::Duration) {
        self.warmup_duration
            .get_or_create(&BackendLabels {
                namespace: namespace.to_owned(),
                backend: backend.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn warmup_failed(&self, namespace: &str, backend: &str) {
        self.warmup_failures
            .get_or_create(&BackendLabels {
                namespace: namespace.to_owned(),
                backend: backend.to_owned(),
            })
            .inc();
    }

    pub fn encode(&self) -> String {
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String cannot fail");
        out
    }
}

pub struct ReconcileTimer<'a> {
    metrics: &'a Metrics,
    controller: &'static str,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .duration
            .get_or_create(&ControllerLabels {
                controller: self.controller,
            })
            .observe(self.start.elapsed().as_secs_f64());
    }
}

pub fn router(metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route(
            "/metrics",
            get(move || {
                let metrics = metrics.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.encode(),
                    )
                }
            }),
        )
        // Liveness only: a follower replica is healthy too.
        .route("/healthz", get(|| async { (StatusCode::OK, "ok") }))
        .fallback(|| async { StatusCode::NOT_FOUND.into_response() })
}

/// Serves `/metrics` and `/healthz` until `shutdown` resolves.
pub async fn serve(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "metrics and health listening");
    axum::serve(listener, router(metrics))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_as_prometheus_text() {
        let m = Metrics::default();
        drop(m.reconcile("backend"));
        m.error("backend", "apply");
        let text = m.encode();
        assert!(
            text.contains("switchyard_operator_reconciles_total{controller=\"backend\"} 1"),
            "{text}"
        );
        assert!(
            text.contains(
                "switchyard_operator_reconcile_errors_total{controller=\"backend\",error=\"apply\"} 1"
            ),
            "{text}"
        );
        assert!(text.contains(
            "switchyard_operator_reconcile_duration_seconds_count{controller=\"backend\"} 1"
        ));
    }

    #[test]
    fn warmups_render_by_backend() {
        let m = Metrics::default();
        m.warmed_up("ai", "qwen", std::time::Duration::from_millis(1500));
        m.warmup_failed("ai", "qwen");
        let text = m.encode();
        assert!(
            text.contains(
                "switchyard_operator_warmup_duration_seconds_sum{namespace=\"ai\",backend=\"qwen\"} 1.5"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "switchyard_operator_warmup_duration_seconds_bucket{le=\"2.0\",namespace=\"ai\",backend=\"qwen\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "switchyard_operator_warmup_failures_total{namespace=\"ai\",backend=\"qwen\"} 1"
            ),
            "{text}"
        );
    }
}
