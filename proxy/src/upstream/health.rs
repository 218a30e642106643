//! Active health checks: a backend with `healthCheck` has each endpoint probed on its
//! interval (vLLM answers `GET /health` with 200 once the model is loaded); an endpoint that
//! fails is skipped until it answers again. Passive ejection (balance.rs) works without this.

use crate::config::Runtime;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Starts the probes of one runtime; cancel the token when the runtime is replaced.
pub fn spawn(client: reqwest::Client, rt: &Runtime) -> CancellationToken {
    let token = CancellationToken::new();
    for backend in &rt.backends {
        let Some(check) = backend.spec.health_check.clone() else {
            continue;
        };
        for endpoint in backend.endpoints.clone() {
            let (client, token, path) = (client.clone(), token.clone(), check.path.clone());
            let backend = backend.clone();
            let every = Duration::from_millis(check.interval_ms.max(100));
            let root = endpoint
                .url
                .strip_suffix("/v1")
                .unwrap_or(&endpoint.url)
                .to_owned();
            let url = format!("{root}{path}");
            tokio::spawn(async move {
                loop {
                    let ok = matches!(
                        // With the credentials the backend's URL carried (kept apart from it).
                        crate::upstream::authorize(client.get(&url), &url, &backend)
                            .timeout(every.min(Duration::from_secs(5)))
                            .send()
                            .await,
                        Ok(r) if r.status().is_success()
                    );
                    if endpoint.active_healthy.swap(ok, Ordering::Relaxed) != ok {
                        tracing::info!(endpoint = %endpoint.url, healthy = ok, "health check changed");
                    }
                    tokio::select! {
                        _ = token.cancelled() => break,
                        _ = tokio::time::sleep(every) => {}
                    }
                }
            });
        }
    }
    token
}

/// Keeps the health checks of the current runtime running.
pub struct HealthChecks {
    client: reqwest::Client,
    current: std::sync::Mutex<CancellationToken>,
}

impl HealthChecks {
    pub fn start(client: reqwest::Client, rt: &Runtime) -> Arc<Self> {
        let token = spawn(client.clone(), rt);
        Arc::new(Self {
            client,
            current: std::sync::Mutex::new(token),
        })
    }

    pub fn replace(&self, rt: &Runtime) {
        let next = spawn(self.client.clone(), rt);
        let old = std::mem::replace(&mut *self.current.lock().expect("health lock"), next);
        old.cancel();
    }
}
