//! Which proxies run the published snapshot: each proxy pod reports the version it applied on
//! its admin endpoint (`GET http://<podIP>:<admin port>/config` → `{"version": "…"}`).

use futures::future::BoxFuture;
use k8s_openapi::api::core::v1::Pod;
use kube::api::ListParams;
use kube::Api;
use std::time::Duration;
use switchyard_api::version::is_applied;
use switchyard_api::RoutingSnapshot;

/// Labels of the proxy pods (the Helm chart sets them), in the snapshot namespace.
pub const PROXY_SELECTOR: &str =
    "app.kubernetes.io/name=switchyard,app.kubernetes.io/component=proxy";

/// Asks one proxy which snapshot version it runs. A trait so tests use a fake.
pub trait ProxyProbe: Send + Sync {
    /// `None` when the proxy cannot be asked or does not answer in time.
    fn applied_version<'a>(&'a self, pod_ip: &'a str, port: u16) -> BoxFuture<'a, Option<String>>;
}

/// The real probe: HTTP with a 2 s timeout, so one stuck proxy cannot hold up the status.
pub struct HttpProbe {
    client: reqwest::Client,
}

impl Default for HttpProbe {
    fn default() -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(2))
                .build()
                .expect("a client without TLS settings builds"),
        }
    }
}

impl ProxyProbe for HttpProbe {
    fn applied_version<'a>(&'a self, pod_ip: &'a str, port: u16) -> BoxFuture<'a, Option<String>> {
        Box::pin(async move {
            // IPv6 pod addresses need brackets in a URL.
            let host = if pod_ip.contains(':') {
                format!("[{pod_ip}]")
            } else {
                pod_ip.to_owned()
            };
            let url = format!("http://{host}:{port}/config");
            let response = self.client.get(&url).send().await.ok()?;
            if !response.status().is_success() {
                return None;
            }
            let body: serde_json::Value = response.json().await.ok()?;
            body.get("version")?.as_str().map(str::to_owned)
        })
    }
}

/// `synced` of `total` proxies run the published snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ProxySync {
    pub synced: usize,
    pub total: usize,
}

impl ProxySync {
    pub fn all(&self) -> bool {
        self.total > 0 && self.synced == self.total
    }
}

impl std::fmt::Display for ProxySync {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.synced, self.total)
    }
}

/// Counts the reports that name the published snapshot. `None` (no answer) counts as not
/// synced: a proxy that cannot be reached cannot be shown to serve the new routes.
pub fn count(reports: &[Option<String>], published: &RoutingSnapshot) -> ProxySync {
    ProxySync {
        synced: reports
            .iter()
            .flatten()
            .filter(|v| is_applied(v, published))
            .count(),
        total: reports.len(),
    }
}

/// Addresses of the proxy pods that should be serving: running, with an IP, not terminating.
pub fn serving_ips(pods: &[Pod]) -> Vec<String> {
    let mut ips: Vec<String> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .filter_map(|p| p.status.as_ref())
        .filter(|s| s.phase.as_deref() == Some("Running"))
        .filter_map(|s| s.pod_ip.clone())
        .collect();
    ips.sort();
    ips
}

/// Polls every proxy pod in `pods` concurrently.
pub async fn poll(
    pods: &Api<Pod>,
    probe: &dyn ProxyProbe,
    port: u16,
    published: &RoutingSnapshot,
) -> Result<ProxySync, kube::Error> {
    let list = pods
        .list(&ListParams::default().labels(PROXY_SELECTOR))
        .await?;
    let ips = serving_ips(&list.items);
    let reports =
        futures::future::join_all(ips.iter().map(|ip| probe.applied_version(ip, port))).await;
    Ok(count(&reports, published))
}

#[cfg(test)]
mod tests {
    use super::*;
    use switchyard_api::version_of;

    #[test]
    fn counts_only_proxies_on_the_published_version() {
        let published = RoutingSnapshot {
            version: Some("0123456789abcdef".into()),
            ..Default::default()
        };
        let reports = [
            Some(version_of(&published)),
            Some("0123456789abcdef-ffffffffffffffff".into()),
            Some("fedcba9876543210-0123456789abcdef".into()),
            None,
        ];
        let sync = count(&reports, &published);
        assert_eq!(
            sync,
            ProxySync {
                synced: 2,
                total: 4
            }
        );
        assert_eq!(sync.to_string(), "2/4");
        assert!(!sync.all());
        assert!(!ProxySync::default().all(), "no proxies is not synced");
    }

    #[test]
    fn only_running_pods_with_an_address_count() {
        let pod = |ip: Option<&str>, phase: &str, deleting: bool| -> Pod {
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p", "deletionTimestamp": deleting.then_some("2026-01-01T00:00:00Z")},
                "status": {"phase": phase, "podIP": ip},
            }))
            .unwrap()
        };
        let pods = [
            pod(Some("10.0.0.2"), "Running", false),
            pod(Some("10.0.0.1"), "Running", false),
            pod(None, "Pending", false),
            pod(Some("10.0.0.3"), "Running", true),
            pod(Some("10.0.0.4"), "Succeeded", false),
        ];
        assert_eq!(serving_ips(&pods), ["10.0.0.1", "10.0.0.2"]);
    }
}
