//! The snapshot publisher: every `ModelRoute` and `InferenceBackend`, plus the ready endpoints
//! of each managed backend, compiled (`switchyard_api::compile`, pure) into one routing
//! snapshot, written to the ConfigMap and credentials Secret the proxies watch, with each
//! object's verdict on its own status.
//!
//! The snapshot is one object for the whole fleet, so this is a singleton loop rather than a
//! per-object `Controller`: watches on routes, backends and their EndpointSlices feed
//! in-memory stores, any change schedules one (debounced) publish over the whole state, and a
//! timer re-polls the proxies for `proxies synced N/M`. Metadata watches on Secrets wake it
//! too, for the ones backends reference (rotated API keys) and the client-keys Secret, so a
//! changed key reaches the credentials Secret in about the debounce (0.5 s), not at the next
//! periodic publish (30 s).

use super::client_keys::{self, Verdict};
use super::proxy::{self, ProxySync};
use super::{apply_status, Context, Error, FIELD_MANAGER, SNAPSHOT_FIELD_MANAGER};
use crate::build::snapshot::{
    credentials_secret, snapshot_config_map, CREDENTIALS_SECRET, SNAPSHOT_CONFIGMAP,
};
use crate::build::BACKEND_LABEL;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Pod, Secret};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::chrono::{DateTime, Utc};
use kube::api::{Patch, PatchParams};
use kube::runtime::reflector::{self, Store};
use kube::runtime::{metadata_watcher, watcher, WatchStreamExt};
use kube::{Api, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;
use std::future::Future;
use std::pin::pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use switchyard_api::compile::{snapshot_version, Compiled, Problem, RouteReport};
use switchyard_api::crd::condition::{
    reason, remove_condition, set_condition, PUBLISHED, READY, RECONCILING, STALLED, SYNCED,
};
use switchyard_api::crd::{InferenceBackend, ModelRoute, ModelRouteStatus, VLLM_PORT};
use switchyard_api::wire::{
    CLIENT_KEYS_ANNOTATION, CLIENT_KEYS_KEY, CLIENT_KEYS_REQUIRED, SNAPSHOT_KEY,
};
use switchyard_api::{compile, CompileInput, RoutingSnapshot};

const CONTROLLER: &str = "snapshot";
/// Changes that arrive together (a `kubectl apply -f dir/`) become one publish.
const DEBOUNCE: Duration = Duration::from_millis(500);
/// How often to re-poll the proxies while some still run an older snapshot, and otherwise.
const SYNCING_POLL: Duration = Duration::from_secs(5);
const STEADY_POLL: Duration = Duration::from_secs(30);

/// Everything the publisher reads, as the watches last saw it.
#[derive(Debug, Clone, Default)]
pub struct Inputs {
    pub backends: Vec<InferenceBackend>,
    pub routes: Vec<ModelRoute>,
    pub endpoint_slices: Vec<EndpointSlice>,
}

/// Objects whose names another, older object of the same kind already uses in another
/// namespace. Snapshot names are flat (a route names its backends by name), so one name is
/// one object across the namespaces this operator serves; the older keeps it.
pub fn unique_names<K: Resource + Clone>(
    objects: &[K],
    kind: &str,
) -> (Vec<K>, BTreeMap<(String, String), Problem>) {
    let mut by_age: Vec<&K> = objects.iter().filter(|o| o.meta().name.is_some()).collect();
    by_age.sort_by(|a, b| {
        let key = |o: &K| {
            let m = o.meta();
            (
                m.creation_timestamp.as_ref().map(|t| t.0),
                m.namespace.clone(),
                m.name.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    let mut owners: BTreeMap<String, String> = BTreeMap::new();
    let (mut kept, mut refused) = (Vec::new(), BTreeMap::new());
    for o in by_age {
        let name = o.meta().name.clone().unwrap_or_default();
        let ns = o.meta().namespace.clone().unwrap_or_default();
        match owners.get(&name) {
            Some(owner) => {
                refused.insert(
                    (ns, name.clone()),
                    Problem {
                        reason: reason::NAME_CONFLICT,
                        message: format!(
                            "the older {kind} `{name}` in namespace `{owner}` has this name: names are unique across the namespaces the operator serves"
                        ),
                    },
                );
            }
            None => {
                owners.insert(name, ns);
                kept.push(o.clone());
            }
        }
    }
    (kept, refused)
}

/// Ready vLLM endpoints of each managed backend, from the EndpointSlices of its Service:
/// `http://<ip>:<port>/v1`, sorted.
pub fn ready_endpoints(
    slices: &[EndpointSlice],
    backends: &[InferenceBackend],
) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for ib in backends.iter().filter(|b| b.spec.vllm.is_some()) {
        let (name, ns) = (ib.name_any(), ib.namespace());
        let mut urls = BTreeSet::new();
        for slice in slices.iter().filter(|s| {
            s.metadata.namespace == ns
                && s.labels().get("kubernetes.io/service-name") == Some(&name)
                && s.address_type != "FQDN"
        }) {
            let port = slice
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some("http"))
                .and_then(|p| p.port)
                .unwrap_or(i32::from(VLLM_PORT));
            // `ready` unset means ready (discovery/v1); terminating endpoints are not ready.
            for endpoint in slice
                .endpoints
                .iter()
                .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) != Some(false))
            {
                for ip in &endpoint.addresses {
                    let host = if ip.contains(':') {
                        format!("[{ip}]")
                    } else {
                        ip.clone()
                    };
                    urls.insert(format!("http://{host}:{port}/v1"));
                }
            }
        }
        if !urls.is_empty() {
            out.insert(name, urls.into_iter().collect());
        }
    }
    out
}

/// The snapshot the proxies are meant to run, and what became of each object.
struct Publication {
    compiled: Compiled,
    /// In the ConfigMap now (just written, or left as it was when this one is invalid).
    current: Option<RoutingSnapshot>,
    /// By (namespace, name): objects refused before `compile` (name conflicts).
    backend_conflicts: BTreeMap<(String, String), Problem>,
    route_conflicts: BTreeMap<(String, String), Problem>,
    sync: ProxySync,
    /// Secret changes wake no publish (the watch was refused): said on backends with keys.
    secret_watch_denied: bool,
}

/// One publish: compile, write ConfigMap and Secret when their content changed, poll the
/// proxies, then write every object's status. Returns when to poll the proxies again.
///
/// Status writes are isolated: one that fails does not stop the others; the first error is
/// returned afterwards so the publish is retried.
pub async fn publish(inputs: &Inputs, ctx: &Context) -> Result<Duration, Error> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let (backends, backend_conflicts) = unique_names(&inputs.backends, "InferenceBackend");
    let (routes, route_conflicts) = unique_names(&inputs.routes, "ModelRoute");
    let (secrets, refused) = read_credentials(ctx, &backends).await?;
    let verdict = client_keys::current(ctx).await?;
    let keys = match &verdict {
        Verdict::Keys(keys) => keys.clone(),
        Verdict::Off | Verdict::Withhold(_) => Vec::new(),
    };
    // With keys, `compile` refuses backends that would forward a client's gateway key.
    let mut compiled = compile(&CompileInput {
        backends: &backends,
        routes: &routes,
        endpoints: ready_endpoints(&inputs.endpoint_slices, &backends),
        refused,
        keys,
        ..Default::default()
    });
    if verdict != Verdict::Off {
        restrict_keys_to_served_routes(&mut compiled, &verdict);
    }
    // The keys travel in the credentials Secret, not the ConfigMap (`client_keys`).
    let client_keys = std::mem::take(&mut compiled.snapshot.keys);

    let ns = &ctx.settings.snapshot_namespace;
    let current = if compiled.snapshot_errors.is_empty() {
        let mut values: BTreeMap<String, Vec<u8>> = compiled
            .credentials
            .iter()
            .filter_map(|c| Some((c.key.clone(), secrets.get(&c.backend)?.clone())))
            .collect();
        if verdict != Verdict::Off {
            let yaml = serde_yaml::to_string(&client_keys).expect("keys serialize");
            values.insert(CLIENT_KEYS_KEY.into(), yaml.into_bytes());
        }
        // Credentials first: a proxy that sees the new snapshot must find its keys.
        let secret = credentials_secret(ns, &compiled.snapshot, values);
        write_if_changed(ctx, ns, CREDENTIALS_SECRET, &secret, |old: &Secret| {
            old.data == secret.data
        })
        .await?;
        let mut config_map = snapshot_config_map(ns, &compiled.snapshot);
        if verdict != Verdict::Off {
            config_map
                .metadata
                .annotations
                .get_or_insert_with(BTreeMap::new)
                .insert(CLIENT_KEYS_ANNOTATION.into(), CLIENT_KEYS_REQUIRED.into());
        }
        let keys_required = |cm: &ConfigMap| {
            cm.metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(CLIENT_KEYS_ANNOTATION))
                .cloned()
        };
        write_if_changed(
            ctx,
            ns,
            SNAPSHOT_CONFIGMAP,
            &config_map,
            |old: &ConfigMap| {
                old.data == config_map.data && keys_required(old) == keys_required(&config_map)
            },
        )
        .await?;
        let mut versioned = compiled.snapshot.clone();
        versioned.version = Some(snapshot_version(&versioned));
        Some(versioned)
    } else {
        tracing::warn!(errors = ?compiled.snapshot_errors, "snapshot not published; proxies keep the current one");
        published_snapshot(ctx, ns).await?
    };

    let sync = match &current {
        Some(snapshot) => proxy::poll(
            &ctx.api::<Pod>(ns),
            ctx.probe.as_ref(),
            ctx.settings.proxy_admin_port,
            snapshot,
        )
        .await
        .map_err(|source| Error::Read {
            what: "proxy pods".into(),
            source: Box::new(source),
        })?,
        None => ProxySync::default(),
    };
    ctx.metrics.proxies_total.set(sync.total as i64);
    ctx.metrics.proxies_synced.set(sync.synced as i64);

    let publication = Publication {
        compiled,
        current,
        backend_conflicts,
        route_conflicts,
        sync,
        secret_watch_denied: ctx.secret_watch_denied.load(Ordering::Relaxed),
    };
    write_statuses(ctx, inputs, &publication).await?;
    Ok(if sync.total > 0 && !sync.all() {
        SYNCING_POLL
    } else {
        STEADY_POLL
    })
}

/// Client keys limited to routes this snapshot does not serve keep only the served ones (see
/// `client_keys::prune`), then the snapshot is checked again. With client keys on and none
/// usable, the snapshot is not published: an empty key list would open the proxies.
fn restrict_keys_to_served_routes(compiled: &mut Compiled, verdict: &Verdict) {
    let served: Vec<String> = compiled
        .snapshot
        .routes
        .iter()
        .map(|r| r.name.clone())
        .collect();
    let served: BTreeSet<&str> = served.iter().map(String::as_str).collect();
    for note in client_keys::prune(&mut compiled.snapshot.keys, &served) {
        tracing::warn!("client keys: {note}");
    }
    compiled.snapshot_errors = compiled.snapshot.validate().err().unwrap_or_default();
    if let Verdict::Withhold(why) = verdict {
        compiled
            .snapshot_errors
            .push(client_keys::no_usable_key(why));
    } else if compiled.snapshot.keys.is_empty() {
        compiled.snapshot_errors.push(client_keys::no_usable_key(
            "every key is limited to routes that are not served",
        ));
    }
}

/// API keys of external backends, by backend name; backends whose Secret cannot be read are
/// refused (left out of the snapshot) rather than published with a key the proxies lack.
async fn read_credentials(
    ctx: &Context,
    backends: &[InferenceBackend],
) -> Result<(BTreeMap<String, Vec<u8>>, BTreeMap<String, Problem>), Error> {
    let (mut values, mut refused) = (BTreeMap::new(), BTreeMap::new());
    for ib in backends {
        let Some(r) = ib
            .spec
            .external
            .as_ref()
            .and_then(|e| e.api_key_secret_ref.as_ref())
        else {
            continue;
        };
        let ns = ib.namespace().unwrap_or_default();
        let missing = |message: String| Problem {
            reason: reason::CREDENTIALS_MISSING,
            message,
        };
        match ctx.api::<Secret>(&ns).get_opt(&r.name).await {
            Ok(secret) => {
                let value = secret
                    .as_ref()
                    .and_then(|s| s.data.as_ref())
                    .and_then(|d| d.get(&r.key))
                    .map(|v| v.0.clone());
                match (secret, value) {
                    (_, Some(v)) => {
                        values.insert(ib.name_any(), v);
                    }
                    (Some(_), None) => {
                        refused.insert(
                            ib.name_any(),
                            missing(format!(
                                "Secret `{}` has no key `{}` (spec.external.apiKeySecretRef)",
                                r.name, r.key
                            )),
                        );
                    }
                    (None, _) => {
                        refused.insert(ib.name_any(), missing(format!("Secret `{}` not found in namespace `{ns}` (spec.external.apiKeySecretRef)", r.name)));
                    }
                }
            }
            Err(kube::Error::Api(e)) if e.code == 403 => {
                refused.insert(
                    ib.name_any(),
                    missing(format!(
                        "the operator may not read Secret `{}` in namespace `{ns}`",
                        r.name
                    )),
                );
            }
            Err(source) => {
                return Err(Error::Read {
                    what: format!("Secret {ns}/{}", r.name),
                    source: Box::new(source),
                })
            }
        }
    }
    Ok((values, refused))
}

/// Server-side apply of `desired` unless the object already holds the same content, so
/// proxies (which watch these objects) are not woken for nothing.
async fn write_if_changed<K>(
    ctx: &Context,
    ns: &str,
    name: &str,
    desired: &K,
    same: impl Fn(&K) -> bool,
) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + serde::Serialize
        + Debug,
{
    let api: Api<K> = ctx.api(ns);
    let what = if K::kind(&()) == "Secret" {
        "the credentials Secret"
    } else {
        "the snapshot ConfigMap"
    };
    let existing = api.get_opt(name).await.map_err(|source| Error::Publish {
        what,
        source: Box::new(source),
    })?;
    if existing.as_ref().is_some_and(&same) {
        return Ok(());
    }
    api.patch(
        name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(desired),
    )
    .await
    .map_err(|source| Error::Publish {
        what,
        source: Box::new(source),
    })?;
    ctx.metrics.snapshot_writes.inc();
    tracing::info!(%ns, %name, "published");
    Ok(())
}

/// The snapshot in the ConfigMap, if there is a readable one.
async fn published_snapshot(ctx: &Context, ns: &str) -> Result<Option<RoutingSnapshot>, Error> {
    let cm = ctx
        .api::<ConfigMap>(ns)
        .get_opt(SNAPSHOT_CONFIGMAP)
        .await
        .map_err(|source| Error::Read {
            what: "the snapshot ConfigMap".into(),
            source: Box::new(source),
        })?;
    Ok(cm
        .and_then(|c| c.data)
        .and_then(|d| d.get(SNAPSHOT_KEY).cloned())
        .and_then(|yaml| serde_yaml::from_str(&yaml).ok()))
}

async fn write_statuses(ctx: &Context, inputs: &Inputs, p: &Publication) -> Result<(), Error> {
    let now = Utc::now();
    let mut first_error = None;
    let mut backends: Vec<&InferenceBackend> = inputs.backends.iter().collect();
    backends.sort_by_key(|b| (b.namespace(), b.name_any()));
    for ib in backends {
        let Some(condition) = backend_condition(ib, p, now) else {
            continue;
        };
        if let Err(e) = write_backend(ctx, ib, condition).await {
            tracing::warn!(backend = %ib.name_any(), error = %e, "status not written");
            ctx.metrics.error(CONTROLLER, e.metric_label());
            first_error.get_or_insert(e);
        }
    }
    let mut routes: Vec<&ModelRoute> = inputs.routes.iter().collect();
    routes.sort_by_key(|r| (r.namespace(), r.name_any()));
    for mr in routes {
        let status = route_status(mr, p, now);
        if mr.status.as_ref() == Some(&status) {
            continue;
        }
        let api: Api<ModelRoute> = ctx.api(&mr.namespace().unwrap_or_default());
        if let Err(source) = apply_status(&api, FIELD_MANAGER, &mr.name_any(), &status).await {
            let e = Error::Status {
                name: mr.name_any(),
                source: Box::new(source),
            };
            tracing::warn!(route = %mr.name_any(), error = %e, "status not written");
            ctx.metrics.error(CONTROLLER, e.metric_label());
            first_error.get_or_insert(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn write_backend(
    ctx: &Context,
    ib: &InferenceBackend,
    condition: Condition,
) -> Result<(), Error> {
    let api: Api<InferenceBackend> = ctx.api(&ib.namespace().unwrap_or_default());
    // Only the `Published` entry: the backend controller owns the rest of the status.
    let status = serde_json::json!({ "conditions": [condition] });
    apply_status(&api, SNAPSHOT_FIELD_MANAGER, &ib.name_any(), &status)
        .await
        .map(drop)
        .map_err(|source| Error::Status {
            name: ib.name_any(),
            source: Box::new(source),
        })
}

fn key_of<K: ResourceExt>(o: &K) -> (String, String) {
    (o.namespace().unwrap_or_default(), o.name_any())
}

fn problems_text(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| p.message.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

/// Why a snapshot was not published, for status messages: the first snapshot error.
fn not_published_because(compiled: &Compiled) -> String {
    compiled
        .snapshot_errors
        .first()
        .map_or_else(|| "no valid route".to_owned(), ToString::to_string)
}

/// The backend's `Published` condition, or `None` when it already says the same.
fn backend_condition(
    ib: &InferenceBackend,
    p: &Publication,
    now: DateTime<Utc>,
) -> Option<Condition> {
    let name = ib.name_any();
    let (on, why, message) = if let Some(problem) = p.backend_conflicts.get(&key_of(ib)) {
        (false, problem.reason, problem.message.clone())
    } else {
        let report = p.compiled.backends.get(&name).cloned().unwrap_or_default();
        match (&p.current, report.accepted) {
            (Some(current), true) if p.compiled.snapshot_errors.is_empty() => {
                let version = current.version.clone().unwrap_or_default();
                let message = match ib.spec.vllm {
                    Some(_) => {
                        let n = current
                            .backends
                            .iter()
                            .find(|b| b.name == name)
                            .map_or(0, |b| b.endpoints.len());
                        format!("in snapshot {version} with {n} ready endpoint(s)")
                    }
                    None => format!("in snapshot {version}"),
                };
                let watched = ib
                    .spec
                    .external
                    .as_ref()
                    .and_then(|e| e.api_key_secret_ref.as_ref())
                    .is_none()
                    || !p.secret_watch_denied;
                let message = if watched {
                    message
                } else {
                    format!("{message}; the operator may not list/watch Secrets, so a changed API key reaches the proxies at the next periodic publish (within {}s)", STEADY_POLL.as_secs())
                };
                (true, reason::ACCEPTED, message)
            }
            (_, true) => (
                false,
                reason::SNAPSHOT_INVALID,
                format!(
                    "the snapshot was not published ({}); proxies keep the previous one",
                    not_published_because(&p.compiled)
                ),
            ),
            (_, false) => {
                let first = report
                    .problems
                    .first()
                    .map_or(reason::INVALID_SPEC, |x| x.reason);
                (false, first, problems_text(&report.problems))
            }
        }
    };
    let mut conditions: Vec<Condition> = ib
        .status
        .as_ref()
        .map(|s| {
            s.conditions
                .iter()
                .filter(|c| c.type_ == PUBLISHED)
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    let before = conditions.clone();
    set_condition(
        &mut conditions,
        PUBLISHED,
        on,
        why,
        message,
        ib.metadata.generation,
        now,
    );
    (conditions != before).then(|| conditions.remove(0))
}

/// A route's whole status (it has one writer): kstatus conditions, the models it serves, the
/// snapshot version and how many proxies run it.
fn route_status(mr: &ModelRoute, p: &Publication, now: DateTime<Utc>) -> ModelRouteStatus {
    let generation = mr.metadata.generation;
    let report = match p.route_conflicts.get(&key_of(mr)) {
        Some(problem) => RouteReport {
            accepted: false,
            models: vec![],
            problems: vec![problem.clone()],
        },
        None => p
            .compiled
            .routes
            .get(&mr.name_any())
            .cloned()
            .unwrap_or_default(),
    };
    let published = report.accepted && p.compiled.snapshot_errors.is_empty() && p.current.is_some();
    let version = p.current.as_ref().and_then(|s| s.version.clone());
    let mut conditions = mr
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default();
    let mut set = |type_: &str, on: bool, why: &str, message: String| {
        set_condition(&mut conditions, type_, on, why, message, generation, now)
    };

    let problems = problems_text(&report.problems);
    let first_reason = report.problems.first().map(|x| x.reason);
    if published {
        set(
            PUBLISHED,
            true,
            reason::ACCEPTED,
            format!(
                "serving {} in snapshot {}",
                report.models.join(", "),
                version.clone().unwrap_or_default()
            ),
        );
    } else if report.accepted {
        set(
            PUBLISHED,
            false,
            reason::SNAPSHOT_INVALID,
            format!(
                "the snapshot was not published ({}); proxies keep the previous one",
                not_published_because(&p.compiled)
            ),
        );
    } else {
        set(
            PUBLISHED,
            false,
            first_reason.unwrap_or(reason::INVALID_SPEC),
            problems.clone(),
        );
    }

    let sync = p.sync;
    let (synced, sync_reason, sync_message) = if sync.total == 0 {
        (
            false,
            reason::NO_PROXIES,
            "no proxy pods found (app.kubernetes.io/name=switchyard,app.kubernetes.io/component=proxy)".to_owned(),
        )
    } else if sync.all() {
        (
            true,
            reason::PROXIES_SYNCED,
            format!("{sync} proxies run the current snapshot"),
        )
    } else {
        (
            false,
            reason::PROXIES_SYNCING,
            format!("{sync} proxies run the current snapshot"),
        )
    };
    let syncing = published && sync.total > 0 && !sync.all();
    match (published, first_reason) {
        (true, None) if !syncing => set(READY, true, reason::ACCEPTED, "published".into()),
        (true, None) => set(READY, false, reason::PROXIES_SYNCING, sync_message.clone()),
        (_, Some(why)) => set(READY, false, why, problems.clone()),
        (false, None) => set(
            READY,
            false,
            reason::SNAPSHOT_INVALID,
            "the snapshot was not published; proxies keep the previous one".into(),
        ),
    }
    set(SYNCED, synced, sync_reason, sync_message.clone());
    // kstatus: `Reconciling` while proxies catch up, `Stalled` while the user must act.
    if syncing {
        set_condition(
            &mut conditions,
            RECONCILING,
            true,
            reason::PROXIES_SYNCING,
            sync_message,
            generation,
            now,
        );
    } else {
        remove_condition(&mut conditions, RECONCILING);
    }
    match first_reason {
        Some(why) => set_condition(
            &mut conditions,
            STALLED,
            true,
            why,
            problems,
            generation,
            now,
        ),
        None => remove_condition(&mut conditions, STALLED),
    }
    ModelRouteStatus {
        observed_generation: generation,
        conditions,
        models: if published { report.models } else { vec![] },
        snapshot_version: if published { version } else { None },
        proxies_synced: Some(sync.to_string()),
    }
}

fn watch<K>(api: Api<K>, config: watcher::Config) -> (Store<K>, impl Stream<Item = ()> + Send)
where
    K: Resource<DynamicType = ()> + Clone + DeserializeOwned + Debug + Send + Sync + 'static,
{
    let (store, writer) = reflector::store();
    let events = reflector::reflector(writer, watcher(api, config).default_backoff()).filter_map(
        |event| async move {
            match event {
                Ok(_) => Some(()),
                Err(e) => {
                    tracing::warn!(error = %e, "watch");
                    None
                }
            }
        },
    );
    (store, events)
}

/// Which Secret events wake the publisher.
pub enum SecretFilter {
    /// Those an `InferenceBackend`'s `spec.external.apiKeySecretRef` names (same namespace).
    Referenced(Store<InferenceBackend>),
    /// Every event of the watch (already limited to one Secret by name).
    Any,
}

impl SecretFilter {
    fn wakes(&self, ns: Option<&str>, name: &str) -> bool {
        match self {
            SecretFilter::Any => true,
            SecretFilter::Referenced(backends) => backends.state().iter().any(|ib| {
                ib.metadata.namespace.as_deref() == ns
                    && ib
                        .spec
                        .external
                        .as_ref()
                        .and_then(|e| e.api_key_secret_ref.as_ref())
                        .is_some_and(|r| r.name == name)
            }),
        }
    }
}

/// Wake-ups from Secret changes. A metadata watch: the publisher reads the values itself
/// (`read_credentials`, `client_keys::current`), so none travel on the watch and the
/// operator holds no copy of every Secret. It needs `list` and `watch` on Secrets (kube's
/// `metadata_watcher` lists, then watches, with the `PartialObjectMetadata` media type).
///
/// Refused (403): said once in the log and on the backends' status; the watch keeps
/// retrying with backoff (RBAC may be granted later) and the periodic publish re-reads the
/// Secrets meanwhile. A relist (`InitDone`) wakes too: changes may have been missed.
pub fn secret_events(
    api: Api<Secret>,
    config: watcher::Config,
    filter: SecretFilter,
    ctx: Arc<Context>,
) -> impl Stream<Item = ()> + Send {
    // Only the backends' watch speaks for their status; each watch logs its own refusal.
    let for_status = matches!(filter, SecretFilter::Referenced(_));
    let mut denied = false;
    metadata_watcher(api, config)
        .default_backoff()
        .filter_map(move |event| {
            let woke = match event {
                Ok(watcher::Event::Apply(m) | watcher::Event::Delete(m)) => {
                    filter.wakes(m.metadata.namespace.as_deref(), &m.name_any())
                }
                Ok(watcher::Event::InitDone) => {
                    if std::mem::take(&mut denied) {
                        tracing::info!(
                            "Secret watch allowed now: Secret changes wake the publisher again"
                        );
                    }
                    if for_status {
                        ctx.secret_watch_denied.store(false, Ordering::Relaxed);
                    }
                    true
                }
                Ok(watcher::Event::Init | watcher::Event::InitApply(_)) => false,
                Err(e) if forbidden(&e) => {
                    if !std::mem::replace(&mut denied, true) {
                        tracing::warn!(
                            error = %e,
                            "the operator may not list/watch these Secrets: a changed API key or client key reaches the proxies only at the next periodic publish (within {}s); grant `list` and `watch` on secrets (chart: operator.readBackendSecrets, clientKeys)",
                            STEADY_POLL.as_secs()
                        );
                    }
                    if for_status {
                        ctx.secret_watch_denied.store(true, Ordering::Relaxed);
                    }
                    false
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Secret watch");
                    false
                }
            };
            async move { woke.then_some(()) }
        })
}

fn forbidden(e: &watcher::Error) -> bool {
    let api = match e {
        watcher::Error::InitialListFailed(kube::Error::Api(a))
        | watcher::Error::WatchStartFailed(kube::Error::Api(a))
        | watcher::Error::WatchFailed(kube::Error::Api(a)) => Some(a.code),
        watcher::Error::WatchError(a) => Some(a.code),
        _ => None,
    };
    api == Some(403)
}

fn api<K>(ctx: &Context) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match &ctx.settings.watch_namespace {
        Some(ns) => ctx.api(ns),
        None => Api::all(ctx.client.clone()),
    }
}

/// Runs the publisher until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send) {
    let (backends, backend_events) =
        watch(api::<InferenceBackend>(&ctx), watcher::Config::default());
    let (routes, route_events) = watch(api::<ModelRoute>(&ctx), watcher::Config::default());
    // The EndpointSlice controller copies the Service's labels, so the backend label selects
    // exactly the slices of managed backends.
    let (slices, slice_events) = watch(
        api::<EndpointSlice>(&ctx),
        watcher::Config::default().labels(BACKEND_LABEL),
    );
    let mut streams = vec![
        backend_events.boxed(),
        route_events.boxed(),
        slice_events.boxed(),
        // Rotated API keys: without this a changed Secret waited for the next periodic
        // publish (up to `STEADY_POLL`), failing every request meanwhile once the old key
        // was revoked.
        secret_events(
            api::<Secret>(&ctx),
            watcher::Config::default(),
            SecretFilter::Referenced(backends.clone()),
            ctx.clone(),
        )
        .boxed(),
    ];
    if let Some(name) = &ctx.settings.client_keys_secret {
        // By name, so a Role limited with `resourceNames` allows it.
        streams.push(
            secret_events(
                ctx.api::<Secret>(&ctx.settings.snapshot_namespace),
                watcher::Config::default().fields(&format!("metadata.name={name}")),
                SecretFilter::Any,
                ctx.clone(),
            )
            .boxed(),
        );
    }
    let mut changes = pin!(futures::stream::select_all(streams));
    let mut shutdown = pin!(shutdown);
    let ready = async {
        let _ = tokio::join!(
            backends.wait_until_ready(),
            routes.wait_until_ready(),
            slices.wait_until_ready()
        );
    };
    // The stores fill from the change stream, so drive it while waiting.
    tokio::select! {
        _ = &mut shutdown => return,
        _ = ready => {},
        _ = async { while changes.next().await.is_some() {} } => return,
    }
    let mut next = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = &mut shutdown => break,
            change = changes.next() => match change {
                Some(()) => next = next.min(tokio::time::Instant::now() + DEBOUNCE),
                None => break,
            },
            _ = tokio::time::sleep_until(next) => {
                let inputs = Inputs {
                    backends: backends.state().iter().map(|o| (**o).clone()).collect(),
                    routes: routes.state().iter().map(|o| (**o).clone()).collect(),
                    endpoint_slices: slices.state().iter().map(|o| (**o).clone()).collect(),
                };
                let delay = match publish(&inputs, &ctx).await {
                    Ok(delay) => {
                        ctx.record_success(CONTROLLER);
                        delay
                    }
                    Err(e) => {
                        ctx.metrics.error(CONTROLLER, e.metric_label());
                        let delay = ctx.backoff(CONTROLLER);
                        tracing::warn!(error = %e, retry_in = ?delay, "publish failed");
                        delay
                    }
                };
                next = tokio::time::Instant::now() + delay;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice(ns: &str, service: &str, port: i32, endpoints: serde_json::Value) -> EndpointSlice {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("{service}-x"), "namespace": ns, "labels": {"kubernetes.io/service-name": service}},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": port}],
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    fn backend(ns: &str, name: &str, created: &str) -> InferenceBackend {
        serde_yaml::from_str(&format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: InferenceBackend\nmetadata: {{name: {name}, namespace: {ns}, creationTimestamp: '{created}'}}\nspec: {{vllm: {{model: m}}}}\n"
        ))
        .unwrap()
    }

    #[test]
    fn only_ready_endpoints_of_managed_backends() {
        let slices = [
            slice(
                "ai",
                "qwen",
                8000,
                serde_json::json!([
                    {"addresses": ["10.0.0.2"], "conditions": {"ready": true}},
                    {"addresses": ["10.0.0.1"]},
                    {"addresses": ["10.0.0.3"], "conditions": {"ready": false}},
                ]),
            ),
            slice(
                "other",
                "qwen",
                8000,
                serde_json::json!([{"addresses": ["10.9.9.9"]}]),
            ),
            slice(
                "ai",
                "gone",
                8000,
                serde_json::json!([{"addresses": ["10.0.0.5"]}]),
            ),
        ];
        let out = ready_endpoints(&slices, &[backend("ai", "qwen", "2026-01-01T00:00:00Z")]);
        assert_eq!(
            out,
            BTreeMap::from([(
                "qwen".to_owned(),
                vec![
                    "http://10.0.0.1:8000/v1".to_owned(),
                    "http://10.0.0.2:8000/v1".to_owned()
                ]
            )])
        );
    }

    #[test]
    fn a_refused_secret_watch_is_said_on_backends_with_an_api_key() {
        let forbidden_list =
            watcher::Error::InitialListFailed(kube::Error::Api(kube::core::ErrorResponse {
                status: "Failure".into(),
                message: "secrets is forbidden".into(),
                reason: "Forbidden".into(),
                code: 403,
            }));
        assert!(forbidden(&forbidden_list));
        assert!(!forbidden(&watcher::Error::NoResourceVersion));

        let external: InferenceBackend = serde_yaml::from_str(
            "apiVersion: switchyard.dev/v1alpha1\nkind: InferenceBackend\nmetadata: {name: anthropic, namespace: ai}\nspec:\n  external: {url: 'https://api.anthropic.com/v1', protocol: anthropic, servedModelName: m, apiKeySecretRef: {name: k}}\n",
        )
        .unwrap();
        let route: ModelRoute = serde_yaml::from_str(
            "apiVersion: switchyard.dev/v1alpha1\nkind: ModelRoute\nmetadata: {name: r, namespace: ai}\nspec: {models: [m], backend: anthropic}\n",
        )
        .unwrap();
        let compiled = compile(&CompileInput {
            backends: std::slice::from_ref(&external),
            routes: std::slice::from_ref(&route),
            ..Default::default()
        });
        let mut current = compiled.snapshot.clone();
        current.version = Some("v".into());
        let mut p = Publication {
            compiled,
            current: Some(current),
            backend_conflicts: BTreeMap::new(),
            route_conflicts: BTreeMap::new(),
            sync: ProxySync::default(),
            secret_watch_denied: true,
        };
        let message =
            |p: &Publication| backend_condition(&external, p, Utc::now()).unwrap().message;
        let m = message(&p);
        assert!(
            m.starts_with("in snapshot v; the operator may not list/watch Secrets")
                && m.contains("within 30s"),
            "{m}"
        );
        p.secret_watch_denied = false;
        assert_eq!(message(&p), "in snapshot v");
    }

    #[test]
    fn the_older_object_keeps_a_name_across_namespaces() {
        let objects = [
            backend("b", "qwen", "2026-02-01T00:00:00Z"),
            backend("a", "qwen", "2026-01-01T00:00:00Z"),
            backend("a", "other", "2026-03-01T00:00:00Z"),
        ];
        let (kept, refused) = unique_names(&objects, "InferenceBackend");
        let kept: Vec<_> = kept.iter().map(key_of).collect();
        assert_eq!(
            kept,
            [("a".into(), "qwen".into()), ("a".into(), "other".into())]
        );
        let problem = &refused[&("b".to_owned(), "qwen".to_owned())];
        assert_eq!(problem.reason, reason::NAME_CONFLICT);
        assert!(
            problem.message.contains("namespace `a`"),
            "{}",
            problem.message
        );
    }
}
