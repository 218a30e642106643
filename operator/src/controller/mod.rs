//! The reconcilers: `backend` (an `InferenceBackend` into its vLLM workload, Service and
//! status; it also runs `warmup`, which opens each serving pod's readiness gate once the pod
//! answered its warm-up requests) and `snapshot` (every route and backend compiled into the
//! routing snapshot, published to the proxies, with each object's verdict on its status).
//! Both are thin shells around the pure `build` and `switchyard_api::compile`.

pub mod admin_key;
pub mod backend;
pub mod client_keys;
pub mod proxy;
pub mod snapshot;
pub mod warmup;

use crate::metrics::Metrics;
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::runtime::events::{Recorder, Reporter};
use kube::{Api, Client, Resource, ResourceExt};
use proxy::ProxyProbe;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use crate::build::FIELD_MANAGER;
/// Field manager of the conditions the snapshot publisher writes on backends (`Published`),
/// so they never clash with the backend controller's own (`Ready`, `Reconciling`, …): status
/// conditions are a list keyed by `type`, merged entry by entry.
pub const SNAPSHOT_FIELD_MANAGER: &str = "switchyard-operator-snapshot";

#[derive(Debug, Clone)]
pub struct Settings {
    /// Where the snapshot ConfigMap, credentials Secret and proxy pods live.
    pub snapshot_namespace: String,
    /// Only this namespace's resources; all namespaces when `None`.
    pub watch_namespace: Option<String>,
    /// Port of each proxy's admin endpoint (`GET /config`).
    pub proxy_admin_port: u16,
    /// Secret in `snapshot_namespace` whose `keys.yaml` lists the client keys the proxies
    /// require; `None`: the proxies ask for no key.
    pub client_keys_secret: Option<String>,
}

/// Shared by every reconciliation (controller-rs's shape).
pub struct Context {
    pub client: Client,
    pub recorder: Recorder,
    pub metrics: Arc<Metrics>,
    pub settings: Settings,
    pub probe: Arc<dyn ProxyProbe>,
    /// Consecutive failures per object, for the retry backoff.
    failures: Mutex<HashMap<String, u32>>,
    /// The last good client keys (`client_keys`), kept while their Secret is bad.
    pub(crate) client_keys: Mutex<client_keys::ClientKeysState>,
    /// The Secret watch was refused (no `list`/`watch` on Secrets): key rotations wait for
    /// the periodic publish, which backend statuses say.
    pub(crate) secret_watch_denied: AtomicBool,
}

impl Context {
    pub fn new(
        client: Client,
        metrics: Arc<Metrics>,
        settings: Settings,
        probe: Arc<dyn ProxyProbe>,
    ) -> Self {
        let reporter = Reporter {
            controller: FIELD_MANAGER.into(),
            instance: std::env::var("POD_NAME").ok(),
        };
        Self {
            recorder: Recorder::new(client.clone(), reporter),
            client,
            metrics,
            settings,
            probe,
            failures: Mutex::default(),
            client_keys: Mutex::default(),
            secret_watch_denied: AtomicBool::new(false),
        }
    }

    /// Api for a namespaced resource in `ns`.
    pub fn api<K>(&self, ns: &str) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
    {
        Api::namespaced(self.client.clone(), ns)
    }

    fn record_success(&self, key: &str) {
        self.failures.lock().expect("not poisoned").remove(key);
    }

    /// Consecutive failures of `key` so far.
    fn failures(&self, key: &str) -> u32 {
        let failures = self.failures.lock().expect("not poisoned");
        failures.get(key).copied().unwrap_or(0)
    }

    /// Delay before retrying `key` after one more failure: 5 s doubling to 5 min.
    fn backoff(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().expect("not poisoned");
        let n = failures.entry(key.to_owned()).or_default();
        *n = n.saturating_add(1);
        retry_delay(*n)
    }
}

/// 5 s, 10 s, 20 s, … capped at 5 minutes.
pub fn retry_delay(failures: u32) -> Duration {
    let secs = 5u64.saturating_mul(1 << failures.saturating_sub(1).min(6));
    Duration::from_secs(secs.min(300))
}

/// Kube errors are boxed: they are large and every `Result` of the controllers carries them.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("applying {kind} `{name}`: {source}")]
    Apply {
        kind: &'static str,
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("writing the status of `{name}`: {source}")]
    Status {
        name: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("reading {what}: {source}")]
    Read {
        what: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("publishing {what}: {source}")]
    Publish {
        what: &'static str,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("{0} has no namespace")]
    NoNamespace(String),
}

impl Error {
    /// A bounded label for `switchyard_operator_reconcile_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Apply { .. } => "apply",
            Error::Status { .. } => "status",
            Error::Read { .. } => "read",
            Error::Publish { .. } => "publish",
            Error::NoNamespace(_) => "no_namespace",
        }
    }
}

/// What the controllers do after a failed reconciliation: count it and retry with backoff.
pub fn error_policy<K: Resource>(
    controller: &'static str,
    obj: &K,
    error: &Error,
    ctx: &Context,
) -> Action {
    ctx.metrics.error(controller, error.metric_label());
    let key = object_key(obj);
    let delay = ctx.backoff(&key);
    tracing::warn!(controller, object = %key, error = %error, retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

fn object_key<K: Resource>(obj: &K) -> String {
    format!(
        "{}/{}",
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    )
}

/// Server-side apply of `status` on the `/status` subresource of `K` `name`.
pub(crate) async fn apply_status<K>(
    api: &Api<K>,
    manager: &str,
    name: &str,
    status: &impl serde::Serialize,
) -> Result<K, kube::Error>
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug,
{
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        name,
        &PatchParams::apply(manager).force(),
        &Patch::Apply(&body),
    )
    .await
}

/// `Some(namespace)` of a namespaced object.
pub(crate) fn namespace_of<K: Resource>(obj: &K) -> Result<String, Error> {
    obj.meta()
        .namespace
        .clone()
        .ok_or_else(|| Error::NoNamespace(obj.meta().name.clone().unwrap_or_default()))
}

pub(crate) fn name_of<K: ResourceExt>(obj: &K) -> String {
    obj.name_any()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_to_five_minutes() {
        let delays: Vec<u64> = (1..=9).map(|n| retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [5, 10, 20, 40, 80, 160, 300, 300, 300]);
    }
}
