//! `InferenceBackend` → its vLLM workload and Service (server-side apply, one field manager),
//! then status in the shape kstatus reads (Argo CD and Flux judge health from it).

use super::{
    apply_status, error_policy, name_of, namespace_of, warmup, Context, Error, FIELD_MANAGER,
};
use crate::build::{self, lws_resource, Desired, Workload};
use futures::{FutureExt, StreamExt};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use k8s_openapi::chrono::{DateTime, Utc};
use kube::api::{DynamicObject, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::watcher;
use kube::{Api, Resource};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use switchyard_api::crd::condition::{
    reason, remove_condition, set_condition, READY, RECONCILING, STALLED, WARNING,
};
use switchyard_api::crd::{InferenceBackend, InferenceBackendStatus};

const CONTROLLER: &str = "backend";
/// Condition types this controller owns on a backend (the snapshot publisher owns `Published`).
const OWNED_CONDITIONS: [&str; 4] = [READY, RECONCILING, STALLED, WARNING];

/// What the cluster says about a backend after the apply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Observed {
    /// Nothing runs: the proxies use the given URL.
    External,
    /// The spec cannot be built (a managed flag in `extraArgs`, …); nothing was applied.
    Invalid(Vec<String>),
    /// `nodes > 1` and the LeaderWorkerSet API is not installed.
    LeaderWorkerSetMissing,
    Workload(WorkloadState),
}

/// Replica counts of a Deployment or LeaderWorkerSet (serving groups for the latter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WorkloadState {
    pub wanted: i32,
    /// Pods (groups) that exist.
    pub current: i32,
    pub updated: i32,
    pub ready: i32,
    /// The workload controller has seen the latest spec.
    pub observed: bool,
}

impl WorkloadState {
    pub fn from_deployment(d: &Deployment) -> Self {
        let wanted = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
        let status = d.status.clone().unwrap_or_default();
        Self {
            wanted,
            current: status.replicas.unwrap_or(0),
            updated: status.updated_replicas.unwrap_or(0),
            ready: status.ready_replicas.unwrap_or(0),
            observed: matches!(
                (status.observed_generation, d.metadata.generation),
                (Some(seen), Some(generation)) if seen >= generation
            ),
        }
    }

    /// LeaderWorkerSet status (`replicas`, `readyReplicas`, `updatedReplicas` count groups).
    /// It has no `observedGeneration`; a rollout shows as `updatedReplicas < replicas`.
    pub fn from_leader_worker_set(lws: &DynamicObject) -> Self {
        let int = |v: &serde_json::Value| v.as_i64().map(|n| n as i32);
        let wanted = int(&lws.data["spec"]["replicas"]).unwrap_or(1);
        let status = &lws.data["status"];
        Self {
            wanted,
            current: int(&status["replicas"]).unwrap_or(0),
            updated: int(&status["updatedReplicas"]).unwrap_or(0),
            ready: int(&status["readyReplicas"]).unwrap_or(0),
            observed: !status.is_null(),
        }
    }

    pub fn is_ready(&self) -> bool {
        self.observed && self.ready >= self.wanted && self.updated >= self.wanted
    }
}

/// The status for `observed`, keeping transition times of unchanged conditions. Conditions
/// owned by others (`Published`) are left out: server-side apply merges them by type.
pub fn status(
    ib: &InferenceBackend,
    observed: &Observed,
    desired: Option<&Desired>,
    now: DateTime<Utc>,
) -> InferenceBackendStatus {
    let generation = ib.metadata.generation;
    let mut conditions: Vec<Condition> = ib
        .status
        .as_ref()
        .map(|s| s.conditions.clone())
        .unwrap_or_default()
        .into_iter()
        .filter(|c| OWNED_CONDITIONS.contains(&c.type_.as_str()))
        .collect();
    let mut set = |type_: &str, on: bool, why: &str, message: String| {
        set_condition(&mut conditions, type_, on, why, message, generation, now)
    };
    let mut replicas = None;
    let mut ready_replicas = None;
    // kstatus reads an absent `Reconciling`/`Stalled` as False; they are present only when True.
    let (reconciling, stalled) = match observed {
        Observed::External => {
            let url = ib.base_url().unwrap_or_default();
            set(
                READY,
                true,
                reason::EXTERNAL,
                format!("external endpoint {url}: nothing to run"),
            );
            (None, None)
        }
        Observed::Invalid(errors) => {
            let message = errors.join("; ");
            set(READY, false, reason::INVALID_SPEC, message.clone());
            (None, Some((reason::INVALID_SPEC, message)))
        }
        Observed::LeaderWorkerSetMissing => {
            let message = "nodes > 1 needs the LeaderWorkerSet API (leaderworkerset.x-k8s.io/v1), which is not installed in this cluster: install kubernetes-sigs/lws".to_owned();
            set(
                READY,
                false,
                reason::LEADER_WORKER_SET_MISSING,
                message.clone(),
            );
            (None, Some((reason::LEADER_WORKER_SET_MISSING, message)))
        }
        Observed::Workload(w) => {
            replicas = Some(w.wanted);
            ready_replicas = Some(w.ready);
            let counts = format!("{}/{} serving groups ready", w.ready, w.wanted);
            if w.is_ready() {
                set(READY, true, reason::AVAILABLE, counts);
                (None, None)
            } else {
                let (why, message) = if !w.observed || w.current == 0 {
                    (
                        reason::PROGRESSING,
                        format!("{counts}; waiting for the pods to be created"),
                    )
                } else if let Some(failed) = failed_warmup(ib) {
                    // Containers ready, gate closed: say why rather than "loading".
                    (
                        reason::WARMUP_FAILED,
                        format!(
                            "{counts}; the warm-up of pod {} failed, retrying: {}",
                            failed.pod, failed.message
                        ),
                    )
                } else {
                    let budget = ib
                        .spec
                        .vllm
                        .as_ref()
                        .map(|v| v.startup_budget.as_str())
                        .unwrap_or("?");
                    (
                        reason::LOADING,
                        format!("{counts}; the model is loading (start-up budget {budget})"),
                    )
                };
                set(READY, false, why, message.clone());
                (Some((why, message)), None)
            }
        }
    };
    for (type_, value) in [(RECONCILING, reconciling), (STALLED, stalled)] {
        match value {
            Some((why, message)) => {
                set_condition(&mut conditions, type_, true, why, message, generation, now)
            }
            None => remove_condition(&mut conditions, type_),
        }
    }
    match desired.map(|d| &d.warnings).filter(|w| !w.is_empty()) {
        Some(warnings) => set_condition(
            &mut conditions,
            WARNING,
            true,
            reason::UNKNOWN_PARSER,
            warnings.join("; "),
            generation,
            now,
        ),
        None => remove_condition(&mut conditions, WARNING),
    }
    InferenceBackendStatus {
        observed_generation: generation,
        conditions,
        replicas,
        ready_replicas,
        url: ib.base_url(),
        served_model_name: ib.served_model_name().map(str::to_owned),
        command: desired.map(|d| d.command.clone()),
        // The warm-up loop's field (its own field manager); never written here.
        warmup: None,
    }
}

/// The last warm-up the warm-up loop reported, if it failed and warm-up is still on.
fn failed_warmup(ib: &InferenceBackend) -> Option<&switchyard_api::crd::WarmupStatus> {
    let on = ib.spec.vllm.as_ref().is_some_and(|v| v.warmup.enabled);
    ib.status
        .as_ref()
        .and_then(|s| s.warmup.as_ref())
        .filter(|w| on && w.reason == reason::WARMUP_FAILED)
}

/// When to look again, beyond the watches on the backend and what it owns.
pub fn requeue(observed: &Observed) -> Action {
    match observed {
        Observed::Invalid(_) => Action::await_change(),
        // Picked up if someone installs the API meanwhile.
        Observed::LeaderWorkerSetMissing => Action::requeue(Duration::from_secs(60)),
        Observed::Workload(w) if !w.is_ready() => Action::requeue(Duration::from_secs(30)),
        _ => Action::requeue(Duration::from_secs(300)),
    }
}

pub async fn reconcile(ib: Arc<InferenceBackend>, ctx: Arc<Context>) -> Result<Action, Error> {
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let ns = namespace_of(ib.as_ref())?;
    let name = name_of(ib.as_ref());
    let (observed, desired) = match build::desired(&ib) {
        None => (Observed::External, None),
        Some(Err(errors)) => (
            Observed::Invalid(errors.iter().map(ToString::to_string).collect()),
            None,
        ),
        Some(Ok(desired)) => (apply(&ctx, &ns, &name, &desired).await?, Some(desired)),
    };

    let new = status(&ib, &observed, desired.as_ref(), Utc::now());
    let old = owned_status(ib.status.as_ref());
    if old.as_ref() != Some(&new) {
        let api: Api<InferenceBackend> = ctx.api(&ns);
        apply_status(&api, FIELD_MANAGER, &name, &new)
            .await
            .map_err(|source| Error::Status {
                name: name.clone(),
                source: Box::new(source),
            })?;
        announce(&ctx, &ib, old.as_ref(), &new).await;
    }
    ctx.record_success(&format!("{ns}/{name}"));
    Ok(requeue(&observed))
}

/// The status as this controller last wrote it (other managers' conditions and the warm-up
/// loop's `warmup` removed).
fn owned_status(status: Option<&InferenceBackendStatus>) -> Option<InferenceBackendStatus> {
    status.map(|s| {
        let mut s = s.clone();
        s.conditions
            .retain(|c| OWNED_CONDITIONS.contains(&c.type_.as_str()));
        s.warmup = None;
        s
    })
}

/// Applies the workload and the Service; reads the workload's state from the apply response.
async fn apply(ctx: &Context, ns: &str, name: &str, desired: &Desired) -> Result<Observed, Error> {
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let state = match &desired.workload {
        Workload::Deployment(d) => {
            let api: Api<Deployment> = ctx.api(ns);
            let applied = api
                .patch(name, &params, &Patch::Apply(d.as_ref()))
                .await
                .map_err(|source| Error::Apply {
                    kind: "Deployment",
                    name: name.to_owned(),
                    source: Box::new(source),
                })?;
            WorkloadState::from_deployment(&applied)
        }
        Workload::LeaderWorkerSet(lws) => {
            let api: Api<DynamicObject> =
                Api::namespaced_with(ctx.client.clone(), ns, &lws_resource());
            match api.patch(name, &params, &Patch::Apply(lws.as_ref())).await {
                Ok(applied) => WorkloadState::from_leader_worker_set(&applied),
                // The resource type does not exist: the CRD is not installed.
                Err(kube::Error::Api(e)) if e.code == 404 => {
                    return Ok(Observed::LeaderWorkerSetMissing)
                }
                Err(source) => {
                    return Err(Error::Apply {
                        kind: "LeaderWorkerSet",
                        name: name.to_owned(),
                        source: Box::new(source),
                    })
                }
            }
        }
    };
    let api: Api<Service> = ctx.api(ns);
    api.patch(name, &params, &Patch::Apply(&desired.service))
        .await
        .map_err(|source| Error::Apply {
            kind: "Service",
            name: name.to_owned(),
            source: Box::new(source),
        })?;
    Ok(Observed::Workload(state))
}

/// An Event when the `Ready` verdict changes (not on every reconcile: Events are for people).
async fn announce(
    ctx: &Context,
    ib: &InferenceBackend,
    old: Option<&InferenceBackendStatus>,
    new: &InferenceBackendStatus,
) {
    let verdict = |s: &InferenceBackendStatus| {
        s.conditions
            .iter()
            .find(|c| c.type_ == READY)
            .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
    };
    let (Some((status, why, message)), previous) = (verdict(new), old.and_then(verdict)) else {
        return;
    };
    if previous
        .as_ref()
        .is_some_and(|(s, r, _)| *s == status && *r == why)
    {
        return;
    }
    let type_ = match why.as_str() {
        reason::INVALID_SPEC | reason::LEADER_WORKER_SET_MISSING => EventType::Warning,
        _ => EventType::Normal,
    };
    let event = Event {
        type_,
        reason: why,
        note: Some(message),
        action: "Reconcile".into(),
        secondary: None,
    };
    if let Err(e) = ctx.recorder.publish(&event, &ib.object_ref(&())).await {
        // Events are best effort; the status carries the same message.
        tracing::debug!(error = %e, "could not publish an event");
    }
}

/// Runs the backend controller, and beside it the warm-up loop over its pods
/// (`controller::warmup`: the readiness gate the pod template carries is opened there, so the
/// two always run together), until `shutdown` resolves. `leader_worker_sets`: the API is
/// installed (discovered at start-up), so LeaderWorkerSets are watched too.
pub async fn run(
    ctx: Arc<Context>,
    leader_worker_sets: bool,
    shutdown: impl Future<Output = ()> + Send + Sync + 'static,
) {
    let client = ctx.client.clone();
    let scoped = |ns: &Option<String>| -> (Api<InferenceBackend>, Api<Deployment>, Api<Service>) {
        match ns {
            Some(ns) => (
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
                Api::namespaced(client.clone(), ns),
            ),
            None => (
                Api::all(client.clone()),
                Api::all(client.clone()),
                Api::all(client.clone()),
            ),
        }
    };
    let (backends, deployments, services) = scoped(&ctx.settings.watch_namespace);
    let owned =
        watcher::Config::default().labels(&format!("app.kubernetes.io/managed-by={FIELD_MANAGER}"));
    let mut controller = Controller::new(backends, watcher::Config::default())
        .owns(deployments, owned.clone())
        .owns(services, owned.clone());
    if leader_worker_sets {
        let api = match &ctx.settings.watch_namespace {
            Some(ns) => Api::<DynamicObject>::namespaced_with(client.clone(), ns, &lws_resource()),
            None => Api::<DynamicObject>::all_with(client.clone(), &lws_resource()),
        };
        controller = controller.owns_with(api, lws_resource(), owned);
    }
    let shutdown = shutdown.shared();
    let backends = controller
        .graceful_shutdown_on(shutdown.clone())
        .run(
            reconcile,
            |ib, error, ctx| error_policy(CONTROLLER, ib.as_ref(), error, &ctx),
            ctx.clone(),
        )
        .for_each(|result| async move {
            match result {
                Ok((obj, _)) => tracing::debug!(object = %obj, "backend reconciled"),
                Err(e) => tracing::warn!(error = %e, "backend controller"),
            }
        });
    tokio::join!(backends, warmup::run(ctx, shutdown));
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::chrono::TimeZone;

    fn backend(yaml: &str) -> InferenceBackend {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn qwen() -> InferenceBackend {
        backend(
            "apiVersion: switchyard.dev/v1alpha1\nkind: InferenceBackend\nmetadata: {name: qwen, namespace: ai, generation: 3, uid: u1}\nspec:\n  vllm: {model: Qwen/Qwen3-8B, replicas: 2}\n",
        )
    }

    fn t(min: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, min, 0).unwrap()
    }

    fn condition<'a>(s: &'a InferenceBackendStatus, type_: &str) -> Option<&'a Condition> {
        s.conditions.iter().find(|c| c.type_ == type_)
    }

    #[test]
    fn loading_then_available() {
        let ib = qwen();
        let desired = build::desired(&ib).unwrap().unwrap();
        let loading = Observed::Workload(WorkloadState {
            wanted: 2,
            current: 2,
            updated: 2,
            ready: 1,
            observed: true,
        });
        let s = status(&ib, &loading, Some(&desired), t(0));
        assert_eq!(s.observed_generation, Some(3));
        assert_eq!(s.ready_replicas, Some(1));
        assert_eq!(s.replicas, Some(2));
        assert_eq!(s.url.as_deref(), Some("http://qwen.ai.svc:8000/v1"));
        assert_eq!(s.served_model_name.as_deref(), Some("Qwen/Qwen3-8B"));
        assert!(s.command.as_deref().unwrap().contains("vllm serve"));
        let ready = condition(&s, READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", reason::LOADING)
        );
        assert!(
            ready.message.starts_with("1/2 serving groups ready"),
            "{}",
            ready.message
        );
        assert_eq!(condition(&s, RECONCILING).unwrap().status, "True");
        assert!(condition(&s, STALLED).is_none());

        let mut ib = ib;
        ib.status = Some(s);
        let available = Observed::Workload(WorkloadState {
            wanted: 2,
            current: 2,
            updated: 2,
            ready: 2,
            observed: true,
        });
        let s = status(&ib, &available, Some(&desired), t(5));
        let ready = condition(&s, READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("True", reason::AVAILABLE)
        );
        assert_eq!(ready.last_transition_time.0, t(5));
        assert!(condition(&s, RECONCILING).is_none(), "kstatus: done");
        assert_eq!(
            requeue(&available),
            Action::requeue(Duration::from_secs(300))
        );
        assert_eq!(requeue(&loading), Action::requeue(Duration::from_secs(30)));
    }

    #[test]
    fn an_unobserved_workload_is_progressing() {
        let ib = qwen();
        let s = status(
            &ib,
            &Observed::Workload(WorkloadState {
                wanted: 2,
                ..Default::default()
            }),
            None,
            t(0),
        );
        assert_eq!(condition(&s, READY).unwrap().reason, reason::PROGRESSING);
        assert_eq!(
            condition(&s, RECONCILING).unwrap().reason,
            reason::PROGRESSING
        );
    }

    #[test]
    fn invalid_and_missing_api_stall() {
        let ib = qwen();
        let s = status(
            &ib,
            &Observed::Invalid(vec!["spec.vllm.extraArgs[0]: no".into()]),
            None,
            t(0),
        );
        let stalled = condition(&s, STALLED).unwrap();
        assert_eq!(
            (stalled.status.as_str(), stalled.reason.as_str()),
            ("True", reason::INVALID_SPEC)
        );
        assert_eq!(stalled.message, "spec.vllm.extraArgs[0]: no");
        assert!(condition(&s, RECONCILING).is_none());
        assert_eq!(requeue(&Observed::Invalid(vec![])), Action::await_change());

        let s = status(&ib, &Observed::LeaderWorkerSetMissing, None, t(0));
        assert_eq!(
            condition(&s, STALLED).unwrap().reason,
            reason::LEADER_WORKER_SET_MISSING
        );
        assert_eq!(condition(&s, READY).unwrap().status, "False");
    }

    #[test]
    fn foreign_conditions_are_not_part_of_this_controllers_status() {
        let mut ib = qwen();
        let mut conditions = Vec::new();
        set_condition(
            &mut conditions,
            "Published",
            true,
            "Accepted",
            "in",
            None,
            t(0),
        );
        ib.status = Some(InferenceBackendStatus {
            conditions,
            ..Default::default()
        });
        let s = status(&ib, &Observed::External, None, t(1));
        assert!(condition(&s, "Published").is_none());
        assert_eq!(
            owned_status(ib.status.as_ref()).unwrap().conditions.len(),
            0
        );
    }

    #[test]
    fn a_failed_warmup_is_the_ready_verdict_until_the_group_is_ready() {
        let mut ib = qwen();
        ib.status = Some(InferenceBackendStatus {
            warmup: Some(switchyard_api::crd::WarmupStatus {
                pod: "qwen-7d9f-x".into(),
                reason: reason::WARMUP_FAILED.into(),
                message: "warm-up failed after 0.1s: request 1/1: HTTP 500".into(),
                duration_ms: 100,
                time: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(t(0)),
            }),
            ..Default::default()
        });
        let mut w = WorkloadState {
            wanted: 2,
            current: 2,
            updated: 2,
            ready: 1,
            observed: true,
        };
        let s = status(&ib, &Observed::Workload(w), None, t(1));
        let ready = condition(&s, READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", reason::WARMUP_FAILED)
        );
        assert_eq!(
            ready.message,
            "1/2 serving groups ready; the warm-up of pod qwen-7d9f-x failed, retrying: warm-up failed after 0.1s: request 1/1: HTTP 500"
        );
        assert_eq!(
            condition(&s, RECONCILING).unwrap().reason,
            reason::WARMUP_FAILED,
            "retried: still progressing, not stalled"
        );
        assert!(s.warmup.is_none(), "the warm-up loop's field");
        assert!(owned_status(ib.status.as_ref()).unwrap().warmup.is_none());

        w.ready = 2;
        let s = status(&ib, &Observed::Workload(w), None, t(2));
        assert_eq!(condition(&s, READY).unwrap().reason, reason::AVAILABLE);

        // Turned off: the old failure is no longer the verdict.
        ib.spec.vllm.as_mut().unwrap().warmup.enabled = false;
        w.ready = 1;
        let s = status(&ib, &Observed::Workload(w), None, t(3));
        assert_eq!(condition(&s, READY).unwrap().reason, reason::LOADING);
    }

    #[test]
    fn workload_state_from_objects() {
        let d: Deployment = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "q", "generation": 4},
            "spec": {"replicas": 2, "selector": {}, "template": {}},
            "status": {"observedGeneration": 4, "replicas": 2, "updatedReplicas": 2, "readyReplicas": 2}
        }))
        .unwrap();
        assert!(WorkloadState::from_deployment(&d).is_ready());
        let mut stale = d.clone();
        stale.metadata.generation = Some(5);
        assert!(!WorkloadState::from_deployment(&stale).is_ready());

        let mut lws = DynamicObject::new("q", &lws_resource());
        lws.data = serde_json::json!({"spec": {"replicas": 1}, "status": {"replicas": 1, "updatedReplicas": 1, "readyReplicas": 0}});
        let w = WorkloadState::from_leader_worker_set(&lws);
        assert_eq!((w.wanted, w.current, w.ready, w.observed), (1, 1, 0, true));
        assert!(!w.is_ready());
    }
}
