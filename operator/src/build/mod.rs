//! Desired Kubernetes objects for an `InferenceBackend`, as pure functions of the resource.
//! The reconciler applies what these return and nothing else.

pub mod args;
mod pod;
pub mod snapshot;

use args::{Role, SpecError};
use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind};
use kube::{Resource, ResourceExt};
use std::collections::BTreeMap;
use switchyard_api::crd::{InferenceBackend, VllmSpec, VLLM_PORT};

/// Field manager of every server-side apply the operator makes.
pub const FIELD_MANAGER: &str = "switchyard-operator";
/// Label selecting a backend's pods.
pub const BACKEND_LABEL: &str = "switchyard.dev/backend";
/// Pod condition (and readiness gate) the warm-up loop sets once a serving pod answered its
/// warm-up requests (`controller::warmup`).
pub const WARMED_CONDITION: &str = "switchyard.dev/warmed";
/// Label the LeaderWorkerSet controller puts on every pod: `0` is the leader.
pub const LWS_WORKER_INDEX_LABEL: &str = "leaderworkerset.sigs.k8s.io/worker-index";

/// `leaderworkerset.x-k8s.io/v1 LeaderWorkerSet` (kubernetes-sigs/lws); no typed crate exists.
pub fn lws_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("leaderworkerset.x-k8s.io", "v1", "LeaderWorkerSet"),
        "leaderworkersets",
    )
}

/// What runs one `vllm` backend.
#[derive(Debug, Clone)]
pub enum Workload {
    Deployment(Box<Deployment>),
    LeaderWorkerSet(Box<DynamicObject>),
}

#[derive(Debug, Clone)]
pub struct Desired {
    pub workload: Workload,
    pub service: Service,
    /// What the leader (or only) container runs, for `status.command`.
    pub command: String,
    /// Not fatal; shown as a `Warning` condition.
    pub warnings: Vec<String>,
}

/// The objects for a `vllm` backend, or every reason the spec cannot be built.
/// `None`: an `external` backend, for which nothing runs.
pub fn desired(ib: &InferenceBackend) -> Option<Result<Desired, Vec<SpecError>>> {
    let spec = ib.spec.vllm.as_ref()?;
    let errors = args::check_escape_hatches(spec);
    if !errors.is_empty() {
        return Some(Err(errors));
    }
    let warnings = args::warnings(spec);
    let (workload, command) = if spec.nodes > 1 {
        let (lws, command) = leader_worker_set(ib, spec);
        (Workload::LeaderWorkerSet(Box::new(lws)), command)
    } else {
        let (deployment, command) = deployment(ib, spec);
        (Workload::Deployment(Box::new(deployment)), command)
    };
    Some(Ok(Desired {
        workload,
        service: service(ib, spec),
        command,
        warnings,
    }))
}

/// Labels on everything the operator creates for a backend.
pub fn labels(ib: &InferenceBackend) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("app.kubernetes.io/name".into(), "vllm".into()),
        ("app.kubernetes.io/instance".into(), ib.name_any()),
        ("app.kubernetes.io/component".into(), "inference".into()),
        (
            "app.kubernetes.io/managed-by".into(),
            FIELD_MANAGER.to_owned(),
        ),
        (BACKEND_LABEL.into(), ib.name_any()),
    ])
}

fn metadata(ib: &InferenceBackend) -> ObjectMeta {
    ObjectMeta {
        name: Some(ib.name_any()),
        namespace: ib.namespace(),
        labels: Some(labels(ib)),
        // Owned (controller=true): deleting the backend deletes its workload and Service, and
        // changes to them wake the backend's reconciler.
        owner_references: ib.controller_owner_ref(&()).map(|o| vec![o]),
        ..Default::default()
    }
}

fn deployment(ib: &InferenceBackend, spec: &VllmSpec) -> (Deployment, String) {
    let (template, command) = pod::template(ib, spec, Role::Single);
    let deployment = Deployment {
        metadata: metadata(ib),
        spec: Some(DeploymentSpec {
            replicas: Some(spec.replicas as i32),
            selector: LabelSelector {
                match_labels: Some(BTreeMap::from([(BACKEND_LABEL.into(), ib.name_any())])),
                ..Default::default()
            },
            // A DGX Spark has one GPU: a surge pod could never schedule, so replace in place.
            strategy: Some(DeploymentStrategy {
                type_: Some("RollingUpdate".into()),
                rolling_update: Some(RollingUpdateDeployment {
                    max_surge: Some(IntOrString::Int(0)),
                    max_unavailable: Some(IntOrString::Int(1)),
                }),
            }),
            template,
            ..Default::default()
        }),
        ..Default::default()
    };
    (deployment, command)
}

fn leader_worker_set(ib: &InferenceBackend, spec: &VllmSpec) -> (DynamicObject, String) {
    let (leader, command) = pod::template(ib, spec, Role::Leader);
    let (worker, _) = pod::template(ib, spec, Role::Worker);
    let mut lws = DynamicObject::new(&ib.name_any(), &lws_resource());
    lws.metadata = metadata(ib);
    lws.data = serde_json::json!({
        "spec": {
            "replicas": spec.replicas,
            // Workers start once the leader pod exists, so `$(LWS_LEADER_ADDRESS)` resolves.
            "startupPolicy": "LeaderCreated",
            "rolloutStrategy": {
                "type": "RollingUpdate",
                "rollingUpdateConfiguration": {"maxUnavailable": 1, "maxSurge": 0},
            },
            "leaderWorkerTemplate": {
                "size": spec.nodes,
                // A group whose member died has lost its shards: restart it whole.
                "restartPolicy": "RecreateGroupOnPodRestart",
                "leaderTemplate": leader,
                "workerTemplate": worker,
            },
        }
    });
    (lws, command)
}

fn service(ib: &InferenceBackend, spec: &VllmSpec) -> Service {
    let mut selector = BTreeMap::from([(BACKEND_LABEL.into(), ib.name_any())]);
    if spec.nodes > 1 {
        // Only leaders serve the API.
        selector.insert(LWS_WORKER_INDEX_LABEL.into(), "0".into());
    }
    Service {
        metadata: metadata(ib),
        spec: Some(ServiceSpec {
            selector: Some(selector),
            ports: Some(vec![ServicePort {
                name: Some("http".into()),
                port: i32::from(VLLM_PORT),
                target_port: Some(IntOrString::String("http".into())),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]),
            // Proxies balance over ready pods themselves (EndpointSlices); the ClusterIP is the
            // fallback base URL.
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `45m`, `1h30m`, `90s` → seconds. `None` for anything else (the schema's pattern refuses it
/// at apply time; this is for objects that predate the pattern).
pub fn parse_duration(s: &str) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let (mut total, mut digits) = (0u64, String::new());
    let mut last_unit = 0;
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let (rank, scale) = match c {
            'h' => (1, 3600),
            'm' => (2, 60),
            's' => (3, 1),
            _ => return None,
        };
        if digits.is_empty() || rank <= last_unit {
            return None;
        }
        total = total.checked_add(digits.parse::<u64>().ok()?.checked_mul(scale)?)?;
        digits.clear();
        last_unit = rank;
    }
    digits.is_empty().then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("45m"), Some(2700));
        assert_eq!(parse_duration("1h30m"), Some(5400));
        assert_eq!(parse_duration("90s"), Some(90));
        for bad in ["", "30", "m", "5m1h", "1h1h", "3d"] {
            assert_eq!(parse_duration(bad), None, "{bad}");
        }
    }
}
