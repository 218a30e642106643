//! Warm-up: a vLLM serving pod takes traffic only after it has answered real chat
//! completions, so the first user request after a start does not pay for kernels compiled or
//! autotuned on first use and caches allocated on the first batch.
//!
//! Gating is Kubernetes' own: the pod template carries the readiness gate
//! `switchyard.dev/warmed` (`build::pod`), and a pod is Ready only when all its containers are
//! ready *and* every readiness-gate condition is True ("Pod readiness gate",
//! kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-readiness-gate). Until then
//! its address is not ready in the Service's EndpointSlices (so the snapshot publisher leaves
//! it out of the routing snapshot) and the Deployment or LeaderWorkerSet does not count it
//! ready (so the backend stays `Ready=False`). A replaced or recreated pod is a new pod without
//! the condition: it is warmed again.
//!
//! This loop watches the operator's vLLM pods. Once a gated pod's containers are ready (vLLM's
//! `/health` passes: the readiness probe of `build::pod`), it sends `spec.vllm.warmup.requests`
//! chat completions to the pod's own address, then writes the pod condition through the
//! `pods/status` subresource with a **strategic merge patch**: `PodStatus.conditions` is
//! declared `patchStrategy:"merge" patchMergeKey:"type"` (k8s.io/api core/v1 types.go), so the
//! patch carries only this condition and the kubelet's (`Ready`, `ContainersReady`, …) stay;
//! the kubelet itself keeps conditions it does not own when it writes the status
//! (`mergePodStatus` in pkg/kubelet/status/status_manager.go). A JSON merge patch would replace
//! the whole list. A failed warm-up is written as `False`/`WarmupFailed` with its message and
//! retried with backoff (5 s doubling to 5 min, from the condition's `lastProbeTime`). The last
//! warm-up of each backend goes to `status.warmup` (own field manager) and to
//! `switchyard_operator_warmup_duration_seconds` / `_warmup_failures_total`.
//!
//! `step` (what a pod needs) and `request_body` are pure; `warm_up` is the HTTP part.

use super::{
    apply_status, error_policy, name_of, namespace_of, retry_delay, Context, Error, FIELD_MANAGER,
};
use crate::build::{parse_duration, BACKEND_LABEL, WARMED_CONDITION};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::chrono::{DateTime, Utc};
use kube::api::{Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::watcher;
use kube::{Api, ResourceExt};
use serde_json::{json, Value};
use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use switchyard_api::crd::condition::reason;
use switchyard_api::crd::{InferenceBackend, VllmSpec, WarmupStatus, VLLM_PORT};

const CONTROLLER: &str = "warmup";
/// Field manager of `status.warmup` on backends (the backend controller owns the rest).
pub const WARMUP_FIELD_MANAGER: &str = "switchyard-operator-warmup";
/// Tokens left for the chat template around the prompt when it is clamped to the window.
const TEMPLATE_MARGIN: u32 = 64;
/// Longest piece of an error answer quoted in a condition message.
const QUOTE: usize = 300;

/// What a pod needs from the warm-up loop.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Not a gated serving pod, already warmed, being deleted, or its backend is gone.
    Nothing,
    /// The containers are not ready yet (the model is loading): the pod's next change wakes
    /// the loop.
    Wait,
    /// The last warm-up failed; the next one is due after this long.
    RetryIn(Duration),
    /// Warm-up was turned off after this pod was created with the gate: open it as is.
    Open {
        message: String,
    },
    WarmUp(Plan),
}

/// One warm-up: `requests` chat completions, one after the other, within `timeout`.
#[derive(Clone, PartialEq)]
pub struct Plan {
    /// `http://<pod IP>:<port>/v1/chat/completions`.
    pub url: String,
    pub model: String,
    pub prompt_tokens: u32,
    pub max_tokens: u32,
    pub requests: u32,
    pub timeout: Duration,
    /// A literal `--api-key` of `extraArgs`: vLLM then refuses requests without it.
    pub api_key: Option<String>,
}

impl fmt::Debug for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Plan")
            .field("url", &self.url)
            .field("model", &self.model)
            .field("prompt_tokens", &self.prompt_tokens)
            .field("max_tokens", &self.max_tokens)
            .field("requests", &self.requests)
            .field("timeout", &self.timeout)
            .field("api_key", &self.api_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

fn pod_condition<'a>(pod: &'a Pod, type_: &str) -> Option<&'a PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

fn is_true(c: Option<&PodCondition>) -> bool {
    c.is_some_and(|c| c.status == "True")
}

/// The pod carries the gate, is not being deleted, and the gate is not open yet.
fn gate_pending(pod: &Pod) -> bool {
    let gated = pod
        .spec
        .as_ref()
        .and_then(|s| s.readiness_gates.as_ref())
        .is_some_and(|gates| gates.iter().any(|g| g.condition_type == WARMED_CONDITION));
    gated
        && pod.metadata.deletion_timestamp.is_none()
        && !is_true(pod_condition(pod, WARMED_CONDITION))
}

/// The gate is pending and the server answers `/health`: time to look at the backend.
pub fn awaits_warmup(pod: &Pod) -> bool {
    gate_pending(pod)
        && is_true(pod_condition(pod, "ContainersReady"))
        && pod
            .status
            .as_ref()
            .and_then(|s| s.pod_ip.as_ref())
            .is_some()
}

/// What `pod` needs, given its backend (`None`: deleted) and the failures of its warm-up so
/// far (this operator's count, for the backoff).
pub fn step(
    pod: &Pod,
    backend: Option<&InferenceBackend>,
    failures: u32,
    now: DateTime<Utc>,
) -> Step {
    if !gate_pending(pod) {
        return Step::Nothing;
    }
    if !awaits_warmup(pod) {
        return Step::Wait;
    }
    // A pod whose backend is gone is garbage-collected with its workload.
    let Some(ib) = backend else {
        return Step::Nothing;
    };
    let Some(spec) = ib.spec.vllm.as_ref().filter(|s| s.warmup.enabled) else {
        return Step::Open {
            message: "warm-up is off (spec.vllm.warmup.enabled): opened without a request".into(),
        };
    };
    let last = pod_condition(pod, WARMED_CONDITION);
    if let Some(probed) = last
        .filter(|c| c.reason.as_deref() == Some(reason::WARMUP_FAILED))
        .and_then(|c| c.last_probe_time.as_ref())
    {
        let due = probed.0 + retry_delay(failures.max(1));
        if let Ok(left) = (due - now).to_std() {
            if !left.is_zero() {
                return Step::RetryIn(left);
            }
        }
    }
    let ip = pod
        .status
        .as_ref()
        .and_then(|s| s.pod_ip.as_deref())
        .unwrap_or_default();
    let host = if ip.contains(':') {
        format!("[{ip}]")
    } else {
        ip.to_owned()
    };
    Step::WarmUp(Plan {
        url: format!("http://{host}:{}/v1/chat/completions", http_port(pod)),
        model: ib.served_model_name().unwrap_or(&spec.model).to_owned(),
        prompt_tokens: prompt_tokens(spec),
        max_tokens: spec.warmup.max_tokens,
        requests: spec.warmup.requests.max(1),
        timeout: Duration::from_secs(parse_duration(&spec.warmup.timeout).unwrap_or(600)),
        api_key: api_key(&spec.extra_args),
    })
}

/// The container port named `http` (what the Service targets), else vLLM's port.
fn http_port(pod: &Pod) -> i32 {
    pod.spec
        .iter()
        .flat_map(|s| &s.containers)
        .flat_map(|c| c.ports.iter().flatten())
        .find(|p| p.name.as_deref() == Some("http"))
        .map(|p| p.container_port)
        .unwrap_or(i32::from(VLLM_PORT))
}

/// The asked prompt size, kept inside `maxModelLen` with room for the answer and the chat
/// template (vLLM refuses a prompt that does not fit with a 400).
fn prompt_tokens(spec: &VllmSpec) -> u32 {
    let asked = spec.warmup.prompt_tokens;
    match spec.max_model_len {
        Some(window) => asked
            .min(window.saturating_sub(spec.warmup.max_tokens + TEMPLATE_MARGIN))
            .max(1),
        None => asked,
    }
}

/// `--api-key KEY` / `--api-key=KEY` among the extra arguments (vLLM's own flag).
fn api_key(extra_args: &[String]) -> Option<String> {
    let mut args = extra_args.iter();
    while let Some(arg) = args.next() {
        if arg == "--api-key" {
            return args.next().cloned();
        }
        if let Some(key) = arg.strip_prefix("--api-key=") {
            return Some(key.to_owned());
        }
    }
    None
}

/// Common English words that are one token each in the BPE vocabularies of the models served
/// here (Qwen, Llama, gpt-oss), so `n` words make about `n` prompt tokens.
const WORDS: [&str; 16] = [
    "the", "of", "and", "to", "in", "is", "that", "for", "it", "as", "with", "was", "on", "be",
    "at", "by",
];

/// About `tokens` tokens of text. The first line differs per request, so a later request's
/// blocks are not in vLLM's prefix cache and it runs a real prefill too.
pub fn prompt(index: u32, tokens: u32) -> String {
    let mut text = format!("Warm-up request {}.", index + 1);
    // "Warm-up request N." is about 6 tokens.
    let mut state = u64::from(index).wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    for _ in 6..tokens {
        // xorshift64: a fixed, varied word sequence.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        text.push(' ');
        text.push_str(WORDS[(state % WORDS.len() as u64) as usize]);
    }
    text
}

/// The OpenAI Chat Completions body vLLM serves (`model`, `messages`, `max_tokens`,
/// `stream`): the same path as a routed request, so the same kernels warm up.
pub fn request_body(plan: &Plan, index: u32) -> Value {
    json!({
        "model": plan.model,
        "messages": [{"role": "user", "content": prompt(index, plan.prompt_tokens)}],
        "max_tokens": plan.max_tokens,
        "stream": false,
    })
}

/// How one warm-up went: its duration either way, and why it failed.
#[derive(Debug)]
pub struct Outcome {
    pub took: Duration,
    pub result: Result<(), String>,
}

/// Sends the plan's requests one after the other; every answer must be a 200 with at least
/// one choice. The whole warm-up is bounded by `plan.timeout`.
pub async fn warm_up(http: &reqwest::Client, plan: &Plan) -> Outcome {
    let start = Instant::now();
    let requests = async {
        for i in 0..plan.requests {
            let n = format!("request {}/{}", i + 1, plan.requests);
            let mut request = http.post(&plan.url).json(&request_body(plan, i));
            if let Some(key) = &plan.api_key {
                request = request.bearer_auth(key);
            }
            let response = request.send().await.map_err(|e| format!("{n}: {e}"))?;
            let status = response.status();
            let body = response.bytes().await.map_err(|e| format!("{n}: {e}"))?;
            if !status.is_success() {
                return Err(format!("{n}: HTTP {status}: {}", quote(&body)));
            }
            let answer: Value = serde_json::from_slice(&body)
                .map_err(|e| format!("{n}: answer is not JSON ({e}): {}", quote(&body)))?;
            if answer["choices"].as_array().is_none_or(Vec::is_empty) {
                return Err(format!("{n}: answer has no choices: {}", quote(&body)));
            }
        }
        Ok(())
    };
    let result = match tokio::time::timeout(plan.timeout, requests).await {
        Ok(result) => result,
        Err(_) => Err(format!(
            "no answer within {}s (spec.vllm.warmup.timeout)",
            plan.timeout.as_secs()
        )),
    };
    Outcome {
        took: start.elapsed(),
        result,
    }
}

fn quote(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    match text.char_indices().nth(QUOTE) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

/// The strategic-merge patch of `pods/status` that sets the warm-up condition. The transition
/// time moves only when the status changes; `lastProbeTime` is this attempt (the retry clock).
pub fn condition_patch(
    pod: &Pod,
    warmed: bool,
    why: &str,
    message: &str,
    now: DateTime<Utc>,
) -> Value {
    let status = if warmed { "True" } else { "False" };
    let transition = match pod_condition(pod, WARMED_CONDITION) {
        Some(c) if c.status == status => c.last_transition_time.clone(),
        _ => None,
    }
    .unwrap_or(Time(now));
    let condition = PodCondition {
        type_: WARMED_CONDITION.into(),
        status: status.into(),
        reason: Some(why.into()),
        message: Some(message.into()),
        last_probe_time: Some(Time(now)),
        last_transition_time: Some(transition),
    };
    json!({"status": {"conditions": [condition]}})
}

/// The state of the warm-up loop: the shared context and the HTTP client for warm-ups.
pub struct Warmer {
    pub ctx: Arc<Context>,
    http: reqwest::Client,
}

impl Warmer {
    pub fn new(ctx: Arc<Context>) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .expect("a client with default TLS builds");
        Self { ctx, http }
    }
}

pub async fn reconcile(pod: Arc<Pod>, warmer: Arc<Warmer>) -> Result<Action, Error> {
    let ctx = &warmer.ctx;
    // Most pod events (kubelet status updates of loading or warmed pods) end here, without a
    // request to the API server.
    if !awaits_warmup(&pod) {
        return Ok(Action::await_change());
    }
    let Some(backend) = pod.labels().get(BACKEND_LABEL).cloned() else {
        return Ok(Action::await_change());
    };
    let _timer = ctx.metrics.reconcile(CONTROLLER);
    let ns = namespace_of(pod.as_ref())?;
    let name = name_of(pod.as_ref());
    let key = format!("{ns}/{name}");
    let backends: Api<InferenceBackend> = ctx.api(&ns);
    let ib = backends
        .get_opt(&backend)
        .await
        .map_err(|source| Error::Read {
            what: format!("InferenceBackend `{ns}/{backend}`"),
            source: Box::new(source),
        })?;
    let plan = match step(&pod, ib.as_ref(), ctx.failures(&key), Utc::now()) {
        Step::Nothing | Step::Wait => return Ok(Action::await_change()),
        Step::RetryIn(delay) => return Ok(Action::requeue(delay)),
        Step::Open { message } => {
            set_condition(ctx, &pod, true, reason::WARMUP_DISABLED, &message).await?;
            return Ok(Action::await_change());
        }
        Step::WarmUp(plan) => plan,
    };
    tracing::info!(pod = %key, url = %plan.url, requests = plan.requests, "warming up");
    let outcome = warm_up(&warmer.http, &plan).await;
    let seconds = outcome.took.as_secs_f64();
    let (warmed, why, message, action) = match &outcome.result {
        Ok(()) => {
            ctx.metrics.warmed_up(&ns, &backend, outcome.took);
            ctx.record_success(&key);
            tracing::info!(pod = %key, seconds, "warmed up");
            let message = format!(
                "warmed up in {seconds:.1}s ({} request(s) of about {} prompt tokens)",
                plan.requests, plan.prompt_tokens
            );
            (true, reason::WARMED_UP, message, Action::await_change())
        }
        Err(e) => {
            ctx.metrics.warmup_failed(&ns, &backend);
            let delay = ctx.backoff(&key);
            tracing::warn!(pod = %key, error = %e, retry_in = ?delay, "warm-up failed");
            let message = format!("warm-up failed after {seconds:.1}s: {e}");
            (
                false,
                reason::WARMUP_FAILED,
                message,
                Action::requeue(delay),
            )
        }
    };
    // The gate first: it is what lets the pod take traffic.
    set_condition(ctx, &pod, warmed, why, &message).await?;
    let status = WarmupStatus {
        pod: name.clone(),
        reason: why.to_owned(),
        message,
        duration_ms: u64::try_from(outcome.took.as_millis()).unwrap_or(u64::MAX),
        time: Time(Utc::now()),
    };
    apply_status(
        &backends,
        WARMUP_FIELD_MANAGER,
        &backend,
        &json!({ "warmup": status }),
    )
    .await
    .map_err(|source| Error::Status {
        name: backend.clone(),
        source: Box::new(source),
    })?;
    Ok(action)
}

async fn set_condition(
    ctx: &Context,
    pod: &Pod,
    warmed: bool,
    why: &str,
    message: &str,
) -> Result<(), Error> {
    let ns = namespace_of(pod)?;
    let name = name_of(pod);
    let patch = condition_patch(pod, warmed, why, message, Utc::now());
    let pods: Api<Pod> = ctx.api(&ns);
    pods.patch_status(&name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .map_err(|source| Error::Status {
            name,
            source: Box::new(source),
        })?;
    Ok(())
}

/// Runs the warm-up loop over the operator's vLLM pods until `shutdown` resolves.
pub async fn run(ctx: Arc<Context>, shutdown: impl Future<Output = ()> + Send + Sync + 'static) {
    let pods: Api<Pod> = match &ctx.settings.watch_namespace {
        Some(ns) => Api::namespaced(ctx.client.clone(), ns),
        None => Api::all(ctx.client.clone()),
    };
    let selector =
        format!("app.kubernetes.io/managed-by={FIELD_MANAGER},app.kubernetes.io/name=vllm");
    Controller::new(pods, watcher::Config::default().labels(&selector))
        .graceful_shutdown_on(shutdown)
        .run(
            reconcile,
            |pod, error, warmer| error_policy(CONTROLLER, pod.as_ref(), error, &warmer.ctx),
            Arc::new(Warmer::new(ctx)),
        )
        .for_each(|result| async move {
            if let Err(e) = result {
                tracing::warn!(error = %e, "warm-up controller");
            }
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::chrono::TimeZone;

    fn t(sec: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, sec).unwrap()
    }

    fn backend(warmup: &str) -> InferenceBackend {
        serde_yaml::from_str(&format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: InferenceBackend\nmetadata: {{name: qwen, namespace: ai}}\nspec:\n  vllm: {{model: Qwen/Qwen3-8B, servedModelName: qwen3, maxModelLen: 4096, extraArgs: ['--api-key', 's3cret'], warmup: {warmup}}}\n"
        ))
        .unwrap()
    }

    /// A serving pod: gated unless `gated` is false, with these conditions.
    fn pod(gated: bool, conditions: Value) -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "qwen-7d9f-x", "namespace": "ai", "labels": {"switchyard.dev/backend": "qwen"}},
            "spec": {
                "containers": [{"name": "vllm", "ports": [{"name": "http", "containerPort": 8000}]}],
                "readinessGates": if gated { json!([{"conditionType": "switchyard.dev/warmed"}]) } else { json!(null) },
            },
            "status": {"podIP": "10.0.3.7", "conditions": conditions},
        }))
        .unwrap()
    }

    fn containers_ready() -> Value {
        json!({"type": "ContainersReady", "status": "True"})
    }

    #[test]
    fn a_ready_gated_pod_is_warmed_through_its_own_address() {
        let ib = backend("{promptTokens: 2048, requests: 3, timeout: 2m}");
        let p = pod(true, json!([containers_ready()]));
        let Step::WarmUp(plan) = step(&p, Some(&ib), 0, t(0)) else {
            panic!("{:?}", step(&p, Some(&ib), 0, t(0)));
        };
        assert_eq!(plan.url, "http://10.0.3.7:8000/v1/chat/completions");
        assert_eq!(plan.model, "qwen3");
        assert_eq!(plan.prompt_tokens, 2048);
        assert_eq!((plan.requests, plan.max_tokens), (3, 16));
        assert_eq!(plan.timeout, Duration::from_secs(120));
        assert_eq!(plan.api_key.as_deref(), Some("s3cret"));
        assert!(!format!("{plan:?}").contains("s3cret"), "{plan:?}");
    }

    #[test]
    fn the_prompt_is_kept_inside_the_window() {
        let ib = backend("{promptTokens: 100000}");
        let p = pod(true, json!([containers_ready()]));
        let Step::WarmUp(plan) = step(&p, Some(&ib), 0, t(0)) else {
            panic!("a warm-up");
        };
        assert_eq!(plan.prompt_tokens, 4096 - 16 - 64);
    }

    #[test]
    fn nothing_to_do_for_ungated_warmed_or_orphaned_pods() {
        let ib = backend("{}");
        let ungated = pod(false, json!([containers_ready()]));
        assert_eq!(step(&ungated, Some(&ib), 0, t(0)), Step::Nothing);
        let warmed = pod(
            true,
            json!([containers_ready(), {"type": "switchyard.dev/warmed", "status": "True"}]),
        );
        assert_eq!(step(&warmed, Some(&ib), 0, t(0)), Step::Nothing);
        assert!(!awaits_warmup(&warmed));
        let p = pod(true, json!([containers_ready()]));
        assert_eq!(step(&p, None, 0, t(0)), Step::Nothing);
        let mut deleting = p.clone();
        deleting.metadata.deletion_timestamp = Some(Time(t(0)));
        assert_eq!(step(&deleting, Some(&ib), 0, t(0)), Step::Nothing);
    }

    #[test]
    fn a_loading_pod_waits() {
        let ib = backend("{}");
        let loading = pod(
            true,
            json!([{"type": "ContainersReady", "status": "False"}]),
        );
        assert_eq!(step(&loading, Some(&ib), 0, t(0)), Step::Wait);
        let mut no_ip = pod(true, json!([containers_ready()]));
        no_ip.status.as_mut().unwrap().pod_ip = None;
        assert_eq!(step(&no_ip, Some(&ib), 0, t(0)), Step::Wait);
    }

    #[test]
    fn turned_off_after_the_pod_was_created_opens_the_gate() {
        let ib = backend("{enabled: false}");
        let p = pod(true, json!([containers_ready()]));
        assert!(matches!(step(&p, Some(&ib), 0, t(0)), Step::Open { .. }));
    }

    #[test]
    fn a_failed_warmup_is_retried_after_the_backoff() {
        let ib = backend("{}");
        let failed = pod(
            true,
            json!([containers_ready(), {"type": "switchyard.dev/warmed", "status": "False",
                   "reason": "WarmupFailed", "lastProbeTime": "2026-01-01T00:00:00Z"}]),
        );
        // Two failures so far: 10 s after the last attempt.
        assert_eq!(
            step(&failed, Some(&ib), 2, t(4)),
            Step::RetryIn(Duration::from_secs(6))
        );
        assert!(matches!(
            step(&failed, Some(&ib), 2, t(10)),
            Step::WarmUp(_)
        ));
        // After an operator restart (no count): the first delay, 5 s.
        assert!(matches!(step(&failed, Some(&ib), 0, t(5)), Step::WarmUp(_)));
    }

    #[test]
    fn requests_are_chat_completions_with_distinct_prompts() {
        let plan = Plan {
            url: String::new(),
            model: "qwen3".into(),
            prompt_tokens: 1024,
            max_tokens: 16,
            requests: 2,
            timeout: Duration::from_secs(1),
            api_key: None,
        };
        let body = request_body(&plan, 0);
        assert_eq!(body["model"], "qwen3");
        assert_eq!(body["max_tokens"], 16);
        assert_eq!(body["stream"], false);
        assert_eq!(body["messages"][0]["role"], "user");
        let text = body["messages"][0]["content"].as_str().unwrap();
        assert!(text.starts_with("Warm-up request 1."), "{text}");
        let words = text.split_whitespace().count();
        assert!((1015..=1024).contains(&words), "{words} words");
        let second = request_body(&plan, 1);
        assert!(second["messages"][0]["content"]
            .as_str()
            .unwrap()
            .starts_with("Warm-up request 2."));
    }

    #[test]
    fn the_condition_patch_keeps_the_transition_time_of_an_unchanged_status() {
        let failed = pod(
            true,
            json!([{"type": "switchyard.dev/warmed", "status": "False", "reason": "WarmupFailed",
                    "lastTransitionTime": "2026-01-01T00:00:01Z"}]),
        );
        let again = condition_patch(&failed, false, reason::WARMUP_FAILED, "HTTP 500", t(9));
        let c = &again["status"]["conditions"][0];
        assert_eq!(c["type"], "switchyard.dev/warmed");
        assert_eq!(c["status"], "False");
        assert_eq!(c["lastTransitionTime"], "2026-01-01T00:00:01Z");
        assert_eq!(c["lastProbeTime"], "2026-01-01T00:00:09Z");
        let ok = condition_patch(&failed, true, reason::WARMED_UP, "warmed up", t(9));
        let c = &ok["status"]["conditions"][0];
        assert_eq!(
            (c["status"].as_str(), c["reason"].as_str()),
            (Some("True"), Some("WarmedUp"))
        );
        assert_eq!(c["lastTransitionTime"], "2026-01-01T00:00:09Z");
        assert_eq!(ok["status"]["conditions"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn api_key_forms() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(api_key(&args(&["--api-key=k1"])).as_deref(), Some("k1"));
        assert_eq!(
            api_key(&args(&["-x", "--api-key", "k2"])).as_deref(),
            Some("k2")
        );
        assert_eq!(api_key(&args(&["--enable-chunked-prefill"])), None);
    }
}
