//! The pod template shared by Deployments and both LeaderWorkerSet roles.

use super::args::{self, Role, RAY_PORT};
use super::{labels, parse_duration, WARMED_CONDITION};
use k8s_openapi::api::core::v1::{
    Capabilities, Container, ContainerPort, EmptyDirVolumeSource, EnvVar, EnvVarSource,
    HTTPGetAction, HostPathVolumeSource, PersistentVolumeClaimVolumeSource, PodReadinessGate,
    PodSpec, PodTemplateSpec, Probe, ResourceRequirements, SecretKeySelector, SecurityContext,
    Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use switchyard_api::crd::{DistributedMode, InferenceBackend, VllmSpec, VLLM_PORT};

const STARTUP_PERIOD_SECONDS: i32 = 10;

/// The pod for `role`, and the command its vLLM container runs (shell-quoted).
pub fn template(ib: &InferenceBackend, spec: &VllmSpec, role: Role) -> (PodTemplateSpec, String) {
    let (command, shown) = container_command(spec, role);
    let network = spec.network.clone().unwrap_or_default();
    let rdma = !network.roce_hcas.is_empty() || network.rdma_resource.is_some();
    let serves = role != Role::Worker;

    let mut volumes = vec![Volume {
        name: "dshm".into(),
        empty_dir: Some(EmptyDirVolumeSource {
            medium: Some("Memory".into()),
            size_limit: Some(spec.shm_size.clone()),
        }),
        ..Default::default()
    }];
    let mut mounts = vec![VolumeMount {
        name: "dshm".into(),
        mount_path: "/dev/shm".into(),
        ..Default::default()
    }];
    if let Some(cache) = &spec.model_cache {
        volumes.push(Volume {
            name: "model-cache".into(),
            host_path: cache.host_path.as_ref().map(|path| HostPathVolumeSource {
                path: path.clone(),
                type_: Some("DirectoryOrCreate".into()),
            }),
            persistent_volume_claim: cache.persistent_volume_claim.as_ref().map(|claim| {
                PersistentVolumeClaimVolumeSource {
                    claim_name: claim.clone(),
                    read_only: None,
                }
            }),
            ..Default::default()
        });
        mounts.push(VolumeMount {
            name: "model-cache".into(),
            mount_path: cache.mount_path.clone(),
            ..Default::default()
        });
    }

    let container = Container {
        name: "vllm".into(),
        image: Some(spec.image.clone()),
        command: Some(command),
        env: Some(env(spec)),
        ports: serves.then(|| {
            vec![ContainerPort {
                name: Some("http".into()),
                container_port: i32::from(VLLM_PORT),
                protocol: Some("TCP".into()),
                ..Default::default()
            }]
        }),
        resources: Some(resources(spec)),
        volume_mounts: Some(mounts),
        startup_probe: serves.then(|| startup_probe(spec)),
        readiness_probe: serves.then(|| health_probe(10, 5, 3)),
        // Restarting a loaded model costs minutes: only a long-hung server is restarted.
        liveness_probe: serves.then(|| health_probe(30, 10, 5)),
        // RDMA registers (pins) large buffers, which needs IPC_LOCK.
        security_context: rdma.then(|| SecurityContext {
            capabilities: Some(Capabilities {
                add: Some(vec!["IPC_LOCK".into()]),
                drop: None,
            }),
            ..Default::default()
        }),
        ..Default::default()
    };

    let mut pod_labels = labels(ib);
    if spec.nodes > 1 {
        let role = if role == Role::Worker {
            "worker"
        } else {
            "leader"
        };
        pod_labels.insert("switchyard.dev/role".into(), role.into());
    }
    let template = PodTemplateSpec {
        metadata: Some(ObjectMeta {
            labels: Some(pod_labels),
            ..Default::default()
        }),
        spec: Some(PodSpec {
            containers: vec![container],
            volumes: Some(volumes),
            node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
            tolerations: (!spec.tolerations.is_empty()).then(|| spec.tolerations.clone()),
            host_network: network.host_network.then_some(true),
            dns_policy: network
                .host_network
                .then(|| "ClusterFirstWithHostNet".into()),
            // vLLM finishes in-flight requests on SIGTERM; give it time.
            termination_grace_period_seconds: Some(60),
            // The pod is Ready (an endpoint the proxies use, a ready replica of the backend)
            // only once its containers are ready *and* the operator has set this condition
            // True after the warm-up requests (`controller::warmup`). Only pods that serve
            // the API are gated: LeaderWorkerSet workers are never sent requests.
            readiness_gates: (serves && spec.warmup.enabled).then(|| {
                vec![PodReadinessGate {
                    condition_type: WARMED_CONDITION.into(),
                }]
            }),
            ..Default::default()
        }),
    };
    (template, shown)
}

/// The container's `command`, and how the status shows it. Plain `vllm serve …` when nothing
/// has to happen first; `sh -c` when the fabric address must be looked up or Ray started.
/// The shown form has the values of secret-looking flags (`--api-key`, `--hf-token=…`)
/// replaced: the status is readable by anyone who can read the object.
fn container_command(spec: &VllmSpec, role: Role) -> (Vec<String>, String) {
    let argv = args::vllm_argv(spec, role);
    let shown_argv = args::redact_secret_args(&argv);
    let interface = spec.network.as_ref().and_then(|n| n.interface.as_deref());
    let ray = spec.nodes > 1 && spec.distributed == DistributedMode::Ray;
    if interface.is_none() && !ray {
        return (argv, args::shell_join(&shown_argv));
    }
    let run = script(spec, role, &argv, interface, ray);
    let shown = script(spec, role, &shown_argv, interface, ray);
    (vec!["/bin/sh".into(), "-c".into(), run], shown)
}

/// The `sh -c` script: fabric address lookup, Ray start, then `exec` of `argv`.
fn script(
    spec: &VllmSpec,
    role: Role,
    argv: &[String],
    interface: Option<&str>,
    ray: bool,
) -> String {
    let mut steps = Vec::new();
    if let Some(iface) = interface {
        // vLLM and Ray advertise VLLM_HOST_IP to the other ranks: it must be the fabric
        // address, not the pod's primary one. Python is in every vLLM image; `ip` is not.
        steps.push(format!(
            "export VLLM_HOST_IP=\"$(python3 -c 'import fcntl,socket,struct,sys; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); print(socket.inet_ntoa(fcntl.ioctl(s.fileno(), 0x8915, struct.pack(\"256s\", sys.argv[1][:15].encode()))[20:24]))' {})\"",
            args::shell_join(&[iface.to_owned()])
        ));
    }
    let node_ip = if interface.is_some() {
        " --node-ip-address=\"$VLLM_HOST_IP\""
    } else {
        ""
    };
    match (ray, role) {
        (true, Role::Worker) => steps.push(format!(
            "exec ray start --address=$(LWS_LEADER_ADDRESS):{RAY_PORT} --block{node_ip}"
        )),
        (true, _) => {
            steps.push(format!("ray start --head --port={RAY_PORT}{node_ip}"));
            // vLLM places its workers once; wait until every node of the group has joined.
            steps.push(format!(
                "until python3 -c 'import ray, sys; ray.init(address=\"auto\", logging_level=\"ERROR\"); sys.exit(0 if sum(n[\"Alive\"] for n in ray.nodes()) >= {} else 1)'; do sleep 5; done",
                spec.nodes
            ));
            steps.push(format!("exec {}", args::shell_join(argv)));
        }
        (false, _) => steps.push(format!("exec {}", args::shell_join(argv))),
    }
    steps.join("\n")
}

fn env(spec: &VllmSpec) -> Vec<EnvVar> {
    let mut env = Vec::new();
    let mut set = |name: &str, value: String| {
        env.push(EnvVar {
            name: name.into(),
            value: Some(value),
            value_from: None,
        })
    };
    if let Some(cache) = &spec.model_cache {
        set("HF_HOME", cache.mount_path.clone());
    }
    if let Some(n) = &spec.network {
        if let Some(iface) = &n.interface {
            set("NCCL_SOCKET_IFNAME", iface.clone());
            set("GLOO_SOCKET_IFNAME", iface.clone());
            set("UCX_NET_DEVICES", iface.clone());
        }
        if !n.roce_hcas.is_empty() {
            set("NCCL_IB_HCA", n.roce_hcas.join(","));
        }
    }
    if let Some(linear) = &spec.kernels.linear {
        set("VLLM_NVFP4_GEMM_BACKEND", linear.clone());
    }
    if let Some(token) = &spec.hub_token_secret {
        env.push(EnvVar {
            name: "HF_TOKEN".into(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: token.name.clone(),
                    key: token.key.clone(),
                    optional: None,
                }),
                ..Default::default()
            }),
        });
    }
    env.extend(spec.env.iter().cloned());
    env
}

fn resources(spec: &VllmSpec) -> ResourceRequirements {
    let mut r = spec.resources.clone().unwrap_or_default();
    let limits = r.limits.get_or_insert_with(Default::default);
    limits.insert(
        "nvidia.com/gpu".into(),
        Quantity(spec.gpus_per_node.to_string()),
    );
    if let Some(rdma) = spec.network.as_ref().and_then(|n| n.rdma_resource.as_ref()) {
        limits.insert(rdma.clone(), Quantity("1".into()));
    }
    r
}

fn http_health() -> HTTPGetAction {
    HTTPGetAction {
        path: Some("/health".into()),
        port: IntOrString::String("http".into()),
        ..Default::default()
    }
}

fn health_probe(period: i32, timeout: i32, failures: i32) -> Probe {
    Probe {
        http_get: Some(http_health()),
        period_seconds: Some(period),
        timeout_seconds: Some(timeout),
        failure_threshold: Some(failures),
        ..Default::default()
    }
}

/// vLLM opens its port only once the weights are loaded (download included on a first start),
/// so the start-up probe allows the whole budget before liveness takes over.
fn startup_probe(spec: &VllmSpec) -> Probe {
    let budget = parse_duration(&spec.startup_budget).unwrap_or(30 * 60);
    let failures = budget.div_ceil(STARTUP_PERIOD_SECONDS as u64).max(1);
    Probe {
        http_get: Some(http_health()),
        period_seconds: Some(STARTUP_PERIOD_SECONDS),
        timeout_seconds: Some(5),
        failure_threshold: Some(i32::try_from(failures).unwrap_or(i32::MAX)),
        ..Default::default()
    }
}
