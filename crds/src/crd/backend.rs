//! `InferenceBackend`: one model server, either run by the operator (`vllm`) or an existing
//! endpoint (`external`).

use super::schema;
use crate::snapshot::{
    HealthCheck, OutlierPolicy, ParameterPolicy, Protocol, RetryBudget, SystemMessagePlacement,
    ThinkingStyle,
};
use k8s_openapi::api::core::v1::{EnvVar, ResourceRequirements, Toleration};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::{CustomResource, KubeSchema};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Port vLLM listens on in every pod the operator runs.
pub const VLLM_PORT: u16 = 8000;
/// Default serving image. NVIDIA's vLLM build carries the GB10 (sm_121) kernels DGX Spark needs.
pub const DEFAULT_VLLM_IMAGE: &str = "nvcr.io/nvidia/vllm:25.11-py3";

/// A model server the proxies can route to.
///
/// `vllm`: the operator runs `vllm serve` as a Deployment (one node per replica) or a
/// LeaderWorkerSet (`nodes > 1`: one serving group spans several machines), plus a Service.
/// `external`: an endpoint that already exists (another cluster, a hosted API).
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[kube(
    group = "switchyard.dev",
    version = "v1alpha1",
    kind = "InferenceBackend",
    namespaced,
    status = "InferenceBackendStatus",
    shortname = "ib",
    category = "switchyard",
    printcolumn = r#"{"name":"Ready","type":"string","jsonPath":".status.conditions[?(@.type==\"Ready\")].status"}"#,
    printcolumn = r#"{"name":"Model","type":"string","jsonPath":".status.servedModelName"}"#,
    printcolumn = r#"{"name":"URL","type":"string","jsonPath":".status.url"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    validation = Rule::new(
        "!has(self.spec.vllm) || (size(self.metadata.name) <= 63 && self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$'))"
    ).message(
        "a vllm backend's name is also its Service name: use at most 63 lowercase letters, digits and '-', starting with a letter"
    )
)]
#[x_kube(validation = Rule::new("has(self.vllm) != has(self.external)").message(
    "set exactly one of `vllm` (run a model) or `external` (use an existing endpoint)"
))]
#[serde(rename_all = "camelCase")]
pub struct InferenceBackendSpec {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vllm: Option<VllmSpec>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub external: Option<ExternalSpec>,
    /// How the proxies talk to this backend (the same fields as a backend in the proxy config).
    #[serde(default)]
    pub proxy: ProxySettings,
}

/// `vllm serve` run by the operator.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[x_kube(validation = Rule::new("self.tensorParallel * self.pipelineParallel == self.nodes * self.gpusPerNode").message(
    "tensorParallel × pipelineParallel must equal nodes × gpusPerNode: every GPU of a serving group holds one shard (a DGX Spark has 1 GPU)"
))]
#[serde(rename_all = "camelCase")]
pub struct VllmSpec {
    /// Hugging Face hub id (`nvidia/Qwen3-Next-80B-A3B-Instruct-NVFP4`) or a path inside the
    /// model cache.
    #[x_kube(validation = Rule::new("self != ''").message("name a model (hub id or local path)"))]
    pub model: String,
    /// Name clients and the proxies use (`--served-model-name`). Defaults to `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_model_name: Option<String>,
    #[serde(default = "default_image")]
    pub image: String,
    /// `--tool-call-parser` (and `--enable-auto-tool-choice`): `hermes`, `qwen3_coder`,
    /// `openai`, … An unknown name is a `Warning` condition, not a refusal: vLLM versions differ.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_parser: Option<String>,
    /// `--reasoning-parser`: `qwen3`, `deepseek_r1`, `openai_gptoss`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reasoning_parser: Option<String>,
    /// `--chat-template`: a path in the container, or the template itself.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_template: Option<String>,
    /// `--max-model-len`; also the context window the proxies clamp `max_tokens` to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_model_len: Option<u32>,
    /// `--gpu-memory-utilization`. On DGX Spark the GPU shares its 128 GB with the CPU, so
    /// leave room for the system (0.8–0.9).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0.05, max = 1.0))]
    pub gpu_memory_utilization: Option<f64>,
    #[serde(default)]
    pub quantization: Quantization,
    /// `--kv-cache-dtype`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kv_cache_dtype: Option<KvCacheDtype>,
    #[serde(default)]
    pub kernels: Kernels,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speculative: Option<SpeculativeDecoding>,
    /// `--enable-prefix-caching` / `--no-enable-prefix-caching`; vLLM's default when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix_caching: Option<bool>,
    /// `--max-num-seqs`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_num_seqs: Option<u32>,
    /// `--load-format` (`auto`, `safetensors`, `fastsafetensors`, `runai_streamer`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_format: Option<String>,
    /// More `vllm serve` arguments, appended last. A flag the operator manages (one of the
    /// fields above) is refused with an `InvalidSpec` condition: set the field instead.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extra_args: Vec<String>,
    /// More environment variables. Variables the operator manages (`NCCL_SOCKET_IFNAME`,
    /// `HF_TOKEN`, …) are refused like managed flags.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
    /// CPU and memory for each vLLM container. GPUs come from `gpusPerNode` (and RDMA devices
    /// from `network.rdmaResource`): setting `nvidia.com/gpu` here is refused.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_cache: Option<ModelCache>,
    /// Secret holding a Hugging Face token (`HF_TOKEN`), for gated models.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hub_token_secret: Option<SecretKeyRef>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub node_selector: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tolerations: Vec<Toleration>,
    /// Size of the memory-backed `/dev/shm` (PyTorch and NCCL use it between processes).
    #[serde(default = "default_shm_size")]
    pub shm_size: Quantity,
    /// How long the model may take to download and load before the pod is restarted
    /// (`45m`, `1h30m`). Large checkpoints on a first pull take tens of minutes.
    #[serde(default = "default_startup_budget")]
    #[schemars(schema_with = "schema::duration")]
    pub startup_budget: String,
    /// Serving groups (each `nodes` machines) behind the Service.
    #[serde(default = "one")]
    pub replicas: u32,
    /// Machines in one serving group. Above 1 the group is a LeaderWorkerSet.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 64))]
    pub nodes: u32,
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 16))]
    pub gpus_per_node: u32,
    /// `--tensor-parallel-size`.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1024))]
    pub tensor_parallel: u32,
    /// `--pipeline-parallel-size`.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 1024))]
    pub pipeline_parallel: u32,
    /// How the machines of a group cooperate when `nodes > 1`.
    #[serde(default)]
    pub distributed: DistributedMode,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub network: Option<Network>,
    /// Chat completions sent to each serving group's server before it takes traffic: the
    /// pod carries the readiness gate `switchyard.dev/warmed`, which the operator sets once
    /// they were answered. Turning it on or off replaces the pods; the other fields do not.
    #[serde(default)]
    pub warmup: Warmup,
}

/// The warm-up of a serving group: the first requests after `vllm serve` starts are slow
/// (kernels compiled or autotuned on first use, caches allocated), so each leader (or only)
/// pod stays out of the Service's ready endpoints, and out of the routing snapshot, until
/// the operator has sent it `requests` chat completions of about `promptTokens` tokens.
/// On: the pod gets the readiness gate `switchyard.dev/warmed`, so turning it on or off
/// replaces the pods; the other fields apply to the next warm-up without a restart.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Warmup {
    /// Off: a pod is Ready as soon as vLLM's `/health` passes.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Approximate prompt length of each request (kept below `maxModelLen`).
    #[serde(default = "default_warmup_prompt_tokens")]
    #[schemars(range(min = 1, max = 1048576))]
    pub prompt_tokens: u32,
    /// Requests sent one after the other; each starts with a different line, so the prefix
    /// cache does not answer for the later ones.
    #[serde(default = "one")]
    #[schemars(range(min = 1, max = 32))]
    pub requests: u32,
    /// `max_tokens` of each request: a few decode steps.
    #[serde(default = "default_warmup_max_tokens")]
    #[schemars(range(min = 1, max = 4096))]
    pub max_tokens: u32,
    /// Bound on all the requests of one warm-up; past it the warm-up failed and is retried
    /// with backoff (`5m`, `90s`).
    #[serde(default = "default_warmup_timeout")]
    #[schemars(schema_with = "schema::duration")]
    pub timeout: String,
}

impl Default for Warmup {
    fn default() -> Self {
        Self {
            enabled: true,
            prompt_tokens: default_warmup_prompt_tokens(),
            requests: 1,
            max_tokens: default_warmup_max_tokens(),
            timeout: default_warmup_timeout(),
        }
    }
}

/// Checkpoint quantization, as vLLM's `--quantization` names it.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Quantization {
    /// No flag: vLLM reads the format from the checkpoint's own config (ModelOpt NVFP4,
    /// compressed-tensors and MXFP4 checkpoints all declare it). Also the value for
    /// unquantized (BF16) weights.
    #[default]
    #[serde(rename = "auto")]
    Auto,
    /// NVFP4 checkpoint produced by NVIDIA ModelOpt.
    #[serde(rename = "modelopt_fp4")]
    ModeloptFp4,
    /// FP8 checkpoint produced by NVIDIA ModelOpt.
    #[serde(rename = "modelopt")]
    Modelopt,
    /// llm-compressor checkpoint (NVFP4, FP8, INT4 …).
    #[serde(rename = "compressed-tensors")]
    CompressedTensors,
    /// Quantize BF16 weights to FP8 on load.
    #[serde(rename = "fp8")]
    Fp8,
    /// MXFP4 checkpoint (gpt-oss).
    #[serde(rename = "mxfp4")]
    Mxfp4,
}

impl Quantization {
    /// The `--quantization` value, if a flag is rendered at all.
    pub fn flag_value(self) -> Option<&'static str> {
        match self {
            Self::Auto => None,
            Self::ModeloptFp4 => Some("modelopt_fp4"),
            Self::Modelopt => Some("modelopt"),
            Self::CompressedTensors => Some("compressed-tensors"),
            Self::Fp8 => Some("fp8"),
            Self::Mxfp4 => Some("mxfp4"),
        }
    }
}

#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvCacheDtype {
    #[serde(rename = "auto")]
    Auto,
    #[serde(rename = "fp8")]
    Fp8,
    #[serde(rename = "fp8_e4m3")]
    Fp8E4m3,
    #[serde(rename = "fp8_e5m2")]
    Fp8E5m2,
}

impl KvCacheDtype {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "auto",
            Self::Fp8 => "fp8",
            Self::Fp8E4m3 => "fp8_e4m3",
            Self::Fp8E5m2 => "fp8_e5m2",
        }
    }
}

/// Kernel choices. Which ones are fastest (or work at all) on GB10 changes between vLLM
/// builds, so they are free strings passed through.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Kernels {
    /// `--moe-backend` (`triton`, `flashinfer_cutlass`, `marlin`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub moe: Option<String>,
    /// Linear-layer FP4 GEMM kernel, `VLLM_NVFP4_GEMM_BACKEND` (`flashinfer-cutlass`,
    /// `cutlass`, `marlin`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear: Option<String>,
    /// `--attention-backend` (`FLASHINFER`, `FLASH_ATTN`, `TRITON_ATTN`, …).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub attention: Option<String>,
}

/// `--speculative-config`.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SpeculativeDecoding {
    /// `mtp` (the model's own multi-token-prediction heads), `eagle3`, `ngram`, `draft_model`, …
    pub method: String,
    #[schemars(range(min = 1, max = 16))]
    pub num_speculative_tokens: u32,
    /// Draft model for methods that need one (`eagle3`, `draft_model`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// Where downloaded weights live, so a restart does not download them again.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[x_kube(validation = Rule::new("has(self.hostPath) != has(self.persistentVolumeClaim)").message(
    "set exactly one of `hostPath` or `persistentVolumeClaim`"
))]
#[serde(rename_all = "camelCase")]
pub struct ModelCache {
    /// A directory on the node (a DGX Spark's local NVMe).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host_path: Option<String>,
    /// Name of a PersistentVolumeClaim (ReadWriteMany for several nodes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<String>,
    /// Mount point in the container; `HF_HOME` points here.
    #[serde(default = "default_cache_mount")]
    pub mount_path: String,
}

/// A key of a Secret in the object's namespace.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct SecretKeyRef {
    pub name: String,
    #[serde(default = "default_secret_key")]
    pub key: String,
}

#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Copy, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
pub enum DistributedMode {
    /// vLLM's own multi-node mode: the leader serves with `--nnodes/--node-rank/--master-addr`,
    /// workers run `--headless`.
    #[default]
    Native,
    /// A Ray cluster per group: the leader is the Ray head and serves with
    /// `--distributed-executor-backend ray`; workers join it.
    Ray,
}

/// The fabric between the machines of a group (DGX Spark: ConnectX-7, 200 Gbps).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Network {
    /// Interface of the fabric (`enp1s0f1np1`): sets `NCCL_SOCKET_IFNAME`,
    /// `GLOO_SOCKET_IFNAME`, `UCX_NET_DEVICES`, and `VLLM_HOST_IP` to its IPv4 address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interface: Option<String>,
    /// RoCE host channel adapters (`rocep1s0f1`, `roceP2p1s0f1`): `NCCL_IB_HCA`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roce_hcas: Vec<String>,
    /// Run in the node's network namespace (the fabric interface is then visible as is).
    #[serde(default)]
    pub host_network: bool,
    /// Extended resource exposing RDMA devices (`rdma/rdma_shared_device_a`), one per pod.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rdma_resource: Option<String>,
}

/// An endpoint the operator does not run.
#[derive(KubeSchema, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ExternalSpec {
    /// Base URL including the API version path (`https://api.anthropic.com/v1`).
    #[x_kube(validation = Rule::new("self.startsWith('http://') || self.startsWith('https://')").message(
        "url must start with http:// or https://"
    ))]
    pub url: String,
    #[serde(default)]
    pub protocol: Protocol,
    /// Secret key holding the API key the proxies send.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_secret_ref: Option<SecretKeyRef>,
    /// Model name sent upstream; discovered from `/v1/models` when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_model_name: Option<String>,
}

/// Per-backend proxy behaviour; each field means what it means in the proxy config.
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ProxySettings {
    /// Context window in tokens. Defaults to `vllm.maxModelLen`, else discovered from the server.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub context_window: Option<u32>,
    #[serde(default)]
    pub thinking: ThinkingStyle,
    #[serde(default)]
    pub system_messages: SystemMessagePlacement,
    /// Recover tool calls left in text (Hermes `<tool_call>`, gpt-oss Harmony).
    #[serde(default = "yes")]
    pub text_tool_calls: bool,
    #[serde(default)]
    #[schemars(schema_with = "schema::structural::<ParameterPolicy>")]
    pub parameters: ParameterPolicy,
    /// Send the client's own credentials upstream instead of the API key.
    #[serde(default)]
    pub forward_client_auth: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "schema::structural::<HealthCheck>")]
    pub health_check: Option<HealthCheck>,
    #[serde(default)]
    #[schemars(schema_with = "schema::structural::<OutlierPolicy>")]
    pub outlier: OutlierPolicy,
    #[serde(default)]
    #[schemars(schema_with = "schema::structural::<RetryBudget>")]
    pub retry_budget: RetryBudget,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            context_window: None,
            thinking: ThinkingStyle::default(),
            system_messages: SystemMessagePlacement::default(),
            text_tool_calls: true,
            parameters: ParameterPolicy::default(),
            forward_client_auth: false,
            health_check: None,
            outlier: OutlierPolicy::default(),
            retry_budget: RetryBudget::default(),
        }
    }
}

/// Observed state, in the shape kstatus reads (see [`crate::crd::condition`]).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct InferenceBackendStatus {
    /// The `metadata.generation` this status describes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// `Ready`, `Reconciling`, `Stalled`, `Warning`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(schema_with = "schema::conditions")]
    pub conditions: Vec<Condition>,
    /// Serving groups wanted and ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ready_replicas: Option<i32>,
    /// Where the proxies reach the backend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub served_model_name: Option<String>,
    /// The exact command the leader (or only) container runs, shell-quoted, for debugging.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<String>,
    /// The last warm-up of a serving group (`spec.vllm.warmup`), written by the operator's
    /// warm-up loop under its own field manager.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<WarmupStatus>,
}

/// One warm-up of one pod (the leader of its serving group).
#[derive(Serialize, Deserialize, JsonSchema, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WarmupStatus {
    pub pod: String,
    /// `WarmedUp` (the pod takes traffic now) or `WarmupFailed` (retried with backoff).
    pub reason: String,
    pub message: String,
    /// From the first request to the last answer (or to the failure).
    pub duration_ms: u64,
    /// When it ended.
    pub time: Time,
}

impl InferenceBackend {
    /// Name clients' requests are served under upstream, if known without asking the server.
    pub fn served_model_name(&self) -> Option<&str> {
        match (&self.spec.vllm, &self.spec.external) {
            (Some(v), _) => Some(v.served_model_name.as_deref().unwrap_or(&v.model)),
            (None, Some(e)) => e.served_model_name.as_deref(),
            (None, None) => None,
        }
    }

    /// Base URL (with `/v1`) the proxies use: the backend's Service for `vllm`, the given URL
    /// for `external`.
    pub fn base_url(&self) -> Option<String> {
        match (&self.spec.vllm, &self.spec.external) {
            (Some(_), _) => {
                let name = self.metadata.name.as_deref()?;
                let ns = self.metadata.namespace.as_deref().unwrap_or("default");
                Some(format!("http://{name}.{ns}.svc:{VLLM_PORT}/v1"))
            }
            (None, Some(e)) => Some(e.url.clone()),
            (None, None) => None,
        }
    }
}

impl VllmSpec {
    /// A spec with every default, for `model` (tests and examples start from it).
    pub fn for_model(model: impl Into<String>) -> Self {
        Self {
            model: model.into(),
            served_model_name: None,
            image: default_image(),
            tool_call_parser: None,
            reasoning_parser: None,
            chat_template: None,
            max_model_len: None,
            gpu_memory_utilization: None,
            quantization: Quantization::default(),
            kv_cache_dtype: None,
            kernels: Kernels::default(),
            speculative: None,
            prefix_caching: None,
            max_num_seqs: None,
            load_format: None,
            extra_args: Vec::new(),
            env: Vec::new(),
            resources: None,
            model_cache: None,
            hub_token_secret: None,
            node_selector: BTreeMap::new(),
            tolerations: Vec::new(),
            shm_size: default_shm_size(),
            startup_budget: default_startup_budget(),
            replicas: 1,
            nodes: 1,
            gpus_per_node: 1,
            tensor_parallel: 1,
            pipeline_parallel: 1,
            distributed: DistributedMode::default(),
            network: None,
            warmup: Warmup::default(),
        }
    }
}

fn default_image() -> String {
    DEFAULT_VLLM_IMAGE.to_owned()
}

fn default_shm_size() -> Quantity {
    Quantity("8Gi".to_owned())
}

fn default_startup_budget() -> String {
    "30m".to_owned()
}

fn default_warmup_prompt_tokens() -> u32 {
    1024
}

fn default_warmup_max_tokens() -> u32 {
    16
}

fn default_warmup_timeout() -> String {
    "10m".to_owned()
}

fn default_cache_mount() -> String {
    "/root/.cache/huggingface".to_owned()
}

fn default_secret_key() -> String {
    "token".to_owned()
}

fn one() -> u32 {
    1
}

fn yes() -> bool {
    true
}
