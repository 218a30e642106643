//! Cluster mode: the routing snapshot and its credentials come from the Kubernetes API.
//!
//! The operator publishes the compiled snapshot as one ConfigMap (key `snapshot.yaml`, a
//! YAML `RoutingSnapshot`) and backend API keys as one Secret (keys such as
//! `backend.<name>.apiKey`, referenced from the snapshot as `apiKey: {secretKey: …}`; and,
//! with client keys on, `keys.yaml`: the snapshot's `keys`, merged into it here). A proxy
//! watches exactly those two objects, by name (a `metadata.name` field selector, so its Role can
//! be limited with `resourceNames`), and swaps each valid change in atomically. An invalid
//! snapshot, a missing object or an unreachable API server is logged and counted, and the last
//! good snapshot keeps serving; the watch retries with backoff and never exits.
//!
//! Decoding (objects → snapshot + credentials) is pure: see [`decode`]. Secret values never
//! reach a log line, an error message or a `Debug` output.

use crate::config::reload;
use crate::config::{ConfigError, Credentials, Runtime};
use crate::state::AppState;
use crate::upstream::health::HealthChecks;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::{Api, Client};
use std::sync::Arc;
use std::time::Duration;
use switchyard_api::{ClientKey, FieldError, RoutingSnapshot};

use switchyard_api::wire::{
    CLIENT_KEYS_ANNOTATION, CLIENT_KEYS_KEY, CLIENT_KEYS_REQUIRED, SNAPSHOT_KEY,
};

/// Where the operator publishes the snapshot and its credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    pub namespace: String,
    /// ConfigMap name (`switchyard-snapshot`).
    pub configmap: String,
    /// Secret name (`switchyard-credentials`).
    pub secret: String,
}

impl Source {
    fn configmap_ref(&self) -> String {
        format!("ConfigMap {}/{}", self.namespace, self.configmap)
    }

    fn secret_ref(&self) -> String {
        format!("Secret {}/{}", self.namespace, self.secret)
    }
}

/// Why a snapshot from the cluster cannot be served. Names objects, keys and fields, never
/// secret values.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("{object} not found (has the operator published it yet?)")]
    NotFound { object: String },
    #[error("{object} has no `{key}` key (keys present: {present})")]
    MissingKey {
        object: String,
        key: String,
        present: String,
    },
    #[error("{object} key `{key}`: {message}")]
    Parse {
        object: String,
        key: String,
        message: String,
    },
    #[error("{object} key `{key}`: invalid snapshot:\n{}", .errors.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        object: String,
        key: String,
        errors: Vec<FieldError>,
    },
    #[error("{object} key `{key}` is not UTF-8 text")]
    NotUtf8 { object: String, key: String },
    #[error("{object} not found, but the snapshot reads {keys} from it")]
    SecretMissing { object: String, keys: String },
    #[error("{object} has no client keys (`{key}`), but the snapshot requires them ({annotation}); refused so the proxy does not accept anyone")]
    ClientKeysMissing {
        object: String,
        key: &'static str,
        annotation: &'static str,
    },
    #[error("{0}")]
    Build(#[from] ConfigError),
    #[error("reading {object}: {source}")]
    Api {
        object: String,
        #[source]
        source: Box<kube::Error>,
    },
    #[error("the Kubernetes API server did not answer")]
    NotAnswered,
    #[error("no servable snapshot after {waited:?}: {last}")]
    Timeout {
        waited: Duration,
        last: Box<ClusterError>,
    },
}

/// Reads the snapshot out of the published ConfigMap and validates it.
pub fn snapshot_from(source: &Source, cm: &ConfigMap) -> Result<RoutingSnapshot, ClusterError> {
    let object = source.configmap_ref();
    let text = cm
        .data
        .as_ref()
        .and_then(|d| d.get(SNAPSHOT_KEY))
        .ok_or_else(|| {
            let mut keys: Vec<&str> = Vec::new();
            keys.extend(cm.data.iter().flat_map(|d| d.keys().map(String::as_str)));
            keys.extend(
                cm.binary_data
                    .iter()
                    .flat_map(|d| d.keys().map(String::as_str)),
            );
            ClusterError::MissingKey {
                object: object.clone(),
                key: SNAPSHOT_KEY.into(),
                present: if keys.is_empty() {
                    "none".into()
                } else {
                    keys.join(", ")
                },
            }
        })?;
    let snapshot: RoutingSnapshot =
        serde_yaml::from_str(text).map_err(|e| ClusterError::Parse {
            object: object.clone(),
            key: SNAPSHOT_KEY.into(),
            // Location and kind only: serde quotes the offending value, which may be a key.
            message: crate::config::describe_yaml_error(&e),
        })?;
    snapshot
        .validate()
        .map_err(|errors| ClusterError::Invalid {
            object,
            key: SNAPSHOT_KEY.into(),
            errors,
        })?;
    Ok(snapshot)
}

/// Every key of the credentials Secret (`data`, and `stringData` should a client have left
/// it), values as text with trailing whitespace kept (trimmed where they are used).
pub fn credentials_from(source: &Source, secret: &Secret) -> Result<Credentials, ClusterError> {
    let mut out = Credentials::new();
    for (key, value) in secret.data.iter().flatten() {
        let text = String::from_utf8(value.0.clone()).map_err(|_| ClusterError::NotUtf8 {
            object: source.secret_ref(),
            key: key.clone(),
        })?;
        out.insert(key.clone(), text);
    }
    for (key, value) in secret.string_data.iter().flatten() {
        out.insert(key.clone(), value.clone());
    }
    Ok(out)
}

/// The published objects as a validated snapshot and its credentials. A missing Secret is
/// fine as long as the snapshot reads no `secretKey` from it.
pub fn decode(
    source: &Source,
    configmap: Option<&ConfigMap>,
    secret: Option<&Secret>,
) -> Result<(RoutingSnapshot, Credentials), ClusterError> {
    let cm = configmap.ok_or_else(|| ClusterError::NotFound {
        object: source.configmap_ref(),
    })?;
    let mut snapshot = snapshot_from(source, cm)?;
    let credentials = match secret {
        Some(s) => credentials_from(source, s)?,
        None => {
            let wanted: Vec<String> = snapshot
                .backends
                .iter()
                .filter_map(|b| b.api_key.as_ref()?.secret_key.as_ref())
                .map(|k| format!("`{k}`"))
                .collect();
            if !wanted.is_empty() {
                return Err(ClusterError::SecretMissing {
                    object: source.secret_ref(),
                    keys: wanted.join(", "),
                });
            }
            Credentials::new()
        }
    };
    merge_client_keys(source, &mut snapshot, &credentials, keys_required(cm))?;
    Ok((snapshot, credentials))
}

fn keys_required(cm: &ConfigMap) -> bool {
    cm.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(CLIENT_KEYS_ANNOTATION))
        .is_some_and(|v| v == CLIENT_KEYS_REQUIRED)
}

/// Adds the client keys of the credentials Secret to the snapshot, then checks the whole
/// (names unique, hashes well-formed, routes served). Errors name the Secret key and the
/// field, never a hash.
fn merge_client_keys(
    source: &Source,
    snapshot: &mut RoutingSnapshot,
    credentials: &Credentials,
    required: bool,
) -> Result<(), ClusterError> {
    let object = source.secret_ref();
    if let Some(text) = credentials.get(CLIENT_KEYS_KEY) {
        let keys: Vec<ClientKey> = serde_yaml::from_str(text).map_err(|e| ClusterError::Parse {
            object: object.clone(),
            key: CLIENT_KEYS_KEY.into(),
            message: crate::config::describe_yaml_error(&e),
        })?;
        snapshot.keys.extend(keys);
        snapshot
            .validate()
            .map_err(|errors| ClusterError::Invalid {
                object: object.clone(),
                key: CLIENT_KEYS_KEY.into(),
                errors,
            })?;
    }
    if required && snapshot.keys.is_empty() {
        return Err(ClusterError::ClientKeysMissing {
            object,
            key: CLIENT_KEYS_KEY,
            annotation: CLIENT_KEYS_ANNOTATION,
        });
    }
    Ok(())
}

/// Decodes the objects and builds a runtime from them, carrying endpoint state, budgets and
/// discovery over from `previous`.
pub fn build(
    source: &Source,
    configmap: Option<&ConfigMap>,
    secret: Option<&Secret>,
    previous: Option<&Runtime>,
) -> Result<Runtime, ClusterError> {
    let (snapshot, credentials) = decode(source, configmap, secret)?;
    Ok(Runtime::build_from(snapshot, previous, Some(&credentials))?)
}

/// Whether `next` would serve exactly what `current` serves: same snapshot (the version
/// carries its content hash) and the same backend keys (a rotated key changes no version).
fn same_as(current: &Runtime, next: &Runtime) -> bool {
    current.version == next.version
        && current.backends.len() == next.backends.len()
        && current.backends.iter().zip(&next.backends).all(|(a, b)| {
            a.api_key.as_ref().map(|k| k.expose()) == b.api_key.as_ref().map(|k| k.expose())
        })
}

const INITIAL_RETRY: Duration = Duration::from_secs(2);

/// Reads both objects once and builds the first runtime, retrying (every 2 s) while they are
/// missing, invalid or the API server is unreachable, for at most `timeout`. Await it before
/// listening so the proxy never serves without a real snapshot.
pub async fn initial_load(
    client: &Client,
    source: &Source,
    timeout: Duration,
) -> Result<Runtime, ClusterError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last: Option<ClusterError> = None;
    loop {
        let attempt = async {
            let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &source.namespace);
            let secrets: Api<Secret> = Api::namespaced(client.clone(), &source.namespace);
            let cm = cms
                .get_opt(&source.configmap)
                .await
                .map_err(|e| ClusterError::Api {
                    object: source.configmap_ref(),
                    source: Box::new(e),
                })?;
            let secret = secrets
                .get_opt(&source.secret)
                .await
                .map_err(|e| ClusterError::Api {
                    object: source.secret_ref(),
                    source: Box::new(e),
                })?;
            build(source, cm.as_ref(), secret.as_ref(), None)
        };
        let err = match tokio::time::timeout_at(deadline, attempt).await {
            Ok(Ok(runtime)) => {
                tracing::info!(
                    configmap = %source.configmap_ref(),
                    version = %runtime.version,
                    "snapshot loaded from the cluster"
                );
                return Ok(runtime);
            }
            Ok(Err(e)) => e,
            Err(_) => {
                return Err(ClusterError::Timeout {
                    waited: timeout,
                    last: Box::new(last.unwrap_or(ClusterError::NotAnswered)),
                })
            }
        };
        let shown = err.to_string();
        if last.as_ref().map(ToString::to_string) != Some(shown.clone()) {
            tracing::warn!(error = %shown, "waiting for a servable snapshot");
        }
        if tokio::time::Instant::now() + INITIAL_RETRY >= deadline {
            return Err(ClusterError::Timeout {
                waited: timeout,
                last: Box::new(err),
            });
        }
        last = Some(err);
        tokio::time::sleep(INITIAL_RETRY).await;
    }
}

/// One watched object as the watcher reports it: relists are buffered until complete, so a
/// reconnect never looks like a deletion half-way.
struct Tracked<K> {
    current: Option<K>,
    relist: Option<K>,
    synced: bool,
}

impl<K> Default for Tracked<K> {
    fn default() -> Self {
        Self {
            current: None,
            relist: None,
            synced: false,
        }
    }
}

impl<K> Tracked<K> {
    /// Returns whether the object's known state changed.
    fn observe(&mut self, event: Event<K>) -> bool {
        match event {
            Event::Apply(o) => {
                self.current = Some(o);
                self.synced
            }
            Event::Delete(_) => {
                self.current = None;
                self.synced
            }
            Event::Init => {
                self.relist = None;
                false
            }
            Event::InitApply(o) => {
                self.relist = Some(o);
                false
            }
            Event::InitDone => {
                self.current = self.relist.take();
                self.synced = true;
                true
            }
        }
    }
}

enum Change {
    ConfigMap(Event<ConfigMap>),
    Secret(Event<Secret>),
}

/// The content that decides what is served; compared to skip resyncs that changed nothing.
#[derive(PartialEq)]
struct Inputs {
    snapshot: Option<(Option<String>, bool)>,
    credentials: Option<Result<Credentials, ()>>,
}

fn inputs(source: &Source, cm: Option<&ConfigMap>, secret: Option<&Secret>) -> Inputs {
    Inputs {
        snapshot: cm.map(|c| {
            (
                c.data.as_ref().and_then(|d| d.get(SNAPSHOT_KEY).cloned()),
                keys_required(c),
            )
        }),
        credentials: secret.map(|s| credentials_from(source, s).map_err(|_| ())),
    }
}

/// Watches the two objects and applies every change for as long as the process runs.
pub async fn watch(app: Arc<AppState>, health: Arc<HealthChecks>, client: Client, source: Source) {
    let events = change_stream(&client, &source);
    run(app, health, source, events).await;
}

fn change_stream(
    client: &Client,
    source: &Source,
) -> impl Stream<Item = Result<Change, watcher::Error>> + Send + 'static {
    let cms = watcher::watcher(
        Api::<ConfigMap>::namespaced(client.clone(), &source.namespace),
        watcher::Config::default().fields(&format!("metadata.name={}", source.configmap)),
    )
    .default_backoff()
    .map(|e| e.map(Change::ConfigMap));
    let secrets = watcher::watcher(
        Api::<Secret>::namespaced(client.clone(), &source.namespace),
        watcher::Config::default().fields(&format!("metadata.name={}", source.secret)),
    )
    .default_backoff()
    .map(|e| e.map(Change::Secret));
    futures::stream::select(cms, secrets)
}

async fn run(
    app: Arc<AppState>,
    health: Arc<HealthChecks>,
    source: Source,
    events: impl Stream<Item = Result<Change, watcher::Error>>,
) {
    let mut events = std::pin::pin!(events);
    let mut cm = Tracked::<ConfigMap>::default();
    let mut secret = Tracked::<Secret>::default();
    let mut last: Option<Inputs> = None;
    tracing::info!(
        configmap = %source.configmap_ref(),
        secret = %source.secret_ref(),
        "watching the published snapshot"
    );
    while let Some(event) = events.next().await {
        let changed = match event {
            Ok(Change::ConfigMap(e)) => cm.observe(e),
            Ok(Change::Secret(e)) => secret.observe(e),
            Err(e) => {
                // The watcher retries with backoff; nothing changes what is served.
                app.metrics.config_watch_errors.inc();
                tracing::warn!(error = %e, "Kubernetes API watch failed; still serving the last good config, retrying");
                continue;
            }
        };
        if !changed || !cm.synced || !secret.synced {
            continue;
        }
        let now = inputs(&source, cm.current.as_ref(), secret.current.as_ref());
        if last.as_ref() == Some(&now) {
            continue;
        }
        last = Some(now);
        apply(
            &app,
            &health,
            &source,
            cm.current.as_ref(),
            secret.current.as_ref(),
        );
    }
}

/// Builds and swaps in the snapshot the objects hold. Returns whether it was applied.
pub fn apply(
    app: &AppState,
    health: &HealthChecks,
    source: &Source,
    configmap: Option<&ConfigMap>,
    secret: Option<&Secret>,
) -> bool {
    let current = app.runtime.load_full();
    match build(source, configmap, secret, Some(&current)) {
        Ok(next) if same_as(&current, &next) => false,
        Ok(next) => {
            reload::install(app, health, next, &current.version);
            true
        }
        Err(e) => {
            reload::refuse(app, &e, &current.version);
            false
        }
    }
}

#[cfg(test)]
mod tests;
