//! The `vllm serve` command line, as a pure function of the spec, and the checks on the
//! escape hatches (`extraArgs`, `env`) that keep them from fighting the managed fields.

use switchyard_api::crd::{DistributedMode, VllmSpec, VLLM_PORT};

/// Which process of a serving group a container runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// The only process (`nodes == 1`).
    Single,
    /// Rank 0 of a multi-node group: serves the API.
    Leader,
    /// Any other rank: holds shards, serves nothing.
    Worker,
}

/// Port of the `torch.distributed` rendezvous on the leader (vLLM native multi-node).
pub const MASTER_PORT: u16 = 29500;
/// Port of the Ray head on the leader.
pub const RAY_PORT: u16 = 6379;

/// Flags rendered from typed fields. `extraArgs` may not repeat them (vLLM would take the
/// last one silently, and the status would show a command that is not what runs).
pub const MANAGED_FLAGS: &[&str] = &[
    "--model",
    "--host",
    "--port",
    "--served-model-name",
    "--tensor-parallel-size",
    "-tp",
    "--pipeline-parallel-size",
    "-pp",
    "--nnodes",
    "--node-rank",
    "--master-addr",
    "--master-port",
    "--headless",
    "--distributed-executor-backend",
    "--max-model-len",
    "--gpu-memory-utilization",
    "--quantization",
    "-q",
    "--kv-cache-dtype",
    "--moe-backend",
    "--attention-backend",
    "--speculative-config",
    "--enable-prefix-caching",
    "--no-enable-prefix-caching",
    "--max-num-seqs",
    "--load-format",
    "--enable-auto-tool-choice",
    "--tool-call-parser",
    "--reasoning-parser",
    "--chat-template",
];

/// Environment variables set from typed fields.
pub const MANAGED_ENV: &[&str] = &[
    "HF_HOME",
    "HF_TOKEN",
    "NCCL_SOCKET_IFNAME",
    "GLOO_SOCKET_IFNAME",
    "UCX_NET_DEVICES",
    "VLLM_HOST_IP",
    "NCCL_IB_HCA",
    "VLLM_NVFP4_GEMM_BACKEND",
];

/// Tool-call parsers vLLM ships (as of 0.11–0.12). Unknown names only warn.
pub const KNOWN_TOOL_CALL_PARSERS: &[&str] = &[
    "deepseek_v3",
    "deepseek_v31",
    "ernie45",
    "glm45",
    "granite",
    "granite-20b-fc",
    "hermes",
    "hunyuan_a13b",
    "internlm",
    "jamba",
    "kimi_k2",
    "llama3_json",
    "llama4_json",
    "llama4_pythonic",
    "longcat",
    "minimax",
    "minimax_m2",
    "mistral",
    "olmo3",
    "openai",
    "phi4_mini_json",
    "pythonic",
    "qwen3_coder",
    "qwen3_xml",
    "seed_oss",
    "step3",
    "xlam",
];

/// Reasoning parsers vLLM ships (as of 0.11–0.12). Unknown names only warn.
pub const KNOWN_REASONING_PARSERS: &[&str] = &[
    "deepseek_r1",
    "deepseek_v3",
    "ernie45",
    "glm45",
    "gpt_oss",
    "granite",
    "hunyuan_a13b",
    "kimi_k2",
    "minimax_m2",
    "minimax_m2_append_think",
    "mistral",
    "olmo3",
    "openai_gptoss",
    "qwen3",
    "seed_oss",
    "step3",
];

/// A spec problem, with the manifest path at fault.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecError {
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for SpecError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// `vllm serve …` for one process of the group. Workers' `$(LWS_…)` references are expanded by
/// the kubelet from the variables the LeaderWorkerSet controller injects.
pub fn vllm_argv(spec: &VllmSpec, role: Role) -> Vec<String> {
    let mut a: Vec<String> = vec!["vllm".into(), "serve".into(), spec.model.clone()];
    let mut flag = |name: &str, value: String| {
        a.push(name.to_owned());
        a.push(value);
    };
    if role != Role::Worker {
        flag("--host", "0.0.0.0".into());
        flag("--port", VLLM_PORT.to_string());
        flag(
            "--served-model-name",
            spec.served_model_name.clone().unwrap_or(spec.model.clone()),
        );
    }
    if spec.tensor_parallel > 1 {
        flag("--tensor-parallel-size", spec.tensor_parallel.to_string());
    }
    if spec.pipeline_parallel > 1 {
        flag(
            "--pipeline-parallel-size",
            spec.pipeline_parallel.to_string(),
        );
    }
    if spec.nodes > 1 {
        match spec.distributed {
            DistributedMode::Native => {
                flag("--nnodes", spec.nodes.to_string());
                let rank = match role {
                    Role::Worker => "$(LWS_WORKER_INDEX)",
                    _ => "0",
                };
                flag("--node-rank", rank.into());
                flag("--master-addr", "$(LWS_LEADER_ADDRESS)".into());
                flag("--master-port", MASTER_PORT.to_string());
            }
            DistributedMode::Ray => flag("--distributed-executor-backend", "ray".into()),
        }
    }
    if let Some(v) = spec.max_model_len {
        flag("--max-model-len", v.to_string());
    }
    if let Some(v) = spec.gpu_memory_utilization {
        flag("--gpu-memory-utilization", v.to_string());
    }
    if let Some(q) = spec.quantization.flag_value() {
        flag("--quantization", q.into());
    }
    if let Some(d) = spec.kv_cache_dtype {
        flag("--kv-cache-dtype", d.as_str().into());
    }
    if let Some(m) = &spec.kernels.moe {
        flag("--moe-backend", m.clone());
    }
    if let Some(m) = &spec.kernels.attention {
        flag("--attention-backend", m.clone());
    }
    if let Some(s) = &spec.speculative {
        // vLLM parses this flag as JSON with its own snake_case keys.
        let mut config = serde_json::Map::new();
        config.insert("method".into(), s.method.clone().into());
        if let Some(model) = &s.model {
            config.insert("model".into(), model.clone().into());
        }
        config.insert(
            "num_speculative_tokens".into(),
            s.num_speculative_tokens.into(),
        );
        flag(
            "--speculative-config",
            serde_json::Value::Object(config).to_string(),
        );
    }
    if let Some(v) = spec.max_num_seqs {
        flag("--max-num-seqs", v.to_string());
    }
    if let Some(v) = &spec.load_format {
        flag("--load-format", v.clone());
    }
    if role != Role::Worker {
        if let Some(p) = &spec.tool_call_parser {
            a.push("--enable-auto-tool-choice".into());
            a.push("--tool-call-parser".into());
            a.push(p.clone());
        }
        if let Some(p) = &spec.reasoning_parser {
            a.push("--reasoning-parser".into());
            a.push(p.clone());
        }
        if let Some(t) = &spec.chat_template {
            a.push("--chat-template".into());
            a.push(t.clone());
        }
    }
    match spec.prefix_caching {
        Some(true) => a.push("--enable-prefix-caching".into()),
        Some(false) => a.push("--no-enable-prefix-caching".into()),
        None => {}
    }
    if role == Role::Worker && spec.distributed == DistributedMode::Native {
        a.push("--headless".into());
    }
    a.extend(spec.extra_args.iter().cloned());
    a
}

/// `extraArgs` and `env` entries that repeat a managed flag or variable, and resources that
/// set what `gpusPerNode` or the network block owns.
pub fn check_escape_hatches(spec: &VllmSpec) -> Vec<SpecError> {
    let mut errors = Vec::new();
    for (i, arg) in spec.extra_args.iter().enumerate() {
        if let Some(managed) = managed_flag(arg) {
            errors.push(SpecError {
                field: format!("spec.vllm.extraArgs[{i}]"),
                message: format!(
                    "`{managed}` is managed by the operator: set the matching spec.vllm field instead"
                ),
            });
        }
    }
    for (i, env) in spec.env.iter().enumerate() {
        if MANAGED_ENV.contains(&env.name.as_str()) {
            errors.push(SpecError {
                field: format!("spec.vllm.env[{i}]"),
                message: format!(
                    "`{}` is managed by the operator (model cache, hub token or network settings)",
                    env.name
                ),
            });
        }
    }
    let resources = spec.resources.as_ref();
    for (kind, map) in [
        ("limits", resources.and_then(|r| r.limits.as_ref())),
        ("requests", resources.and_then(|r| r.requests.as_ref())),
    ] {
        for key in map.into_iter().flat_map(|m| m.keys()) {
            let rdma = spec
                .network
                .as_ref()
                .and_then(|n| n.rdma_resource.as_deref());
            if key == "nvidia.com/gpu" || Some(key.as_str()) == rdma {
                errors.push(SpecError {
                    field: format!("spec.vllm.resources.{kind}"),
                    message: format!(
                        "`{key}` comes from gpusPerNode / network.rdmaResource: do not set it here"
                    ),
                });
            }
        }
    }
    if crate::build::parse_duration(&spec.startup_budget).is_none() {
        errors.push(SpecError {
            field: "spec.vllm.startupBudget".into(),
            message: format!(
                "`{}` is not a duration like `45m` or `1h30m`",
                spec.startup_budget
            ),
        });
    }
    errors
}

/// The managed flag `arg` sets, if any. vLLM's parser accepts `--flag=value` and underscores
/// in flag names (`--max_model_len`), so both spellings are caught.
fn managed_flag(arg: &str) -> Option<&'static str> {
    if !arg.starts_with('-') {
        return None;
    }
    let name = arg.split('=').next().unwrap_or(arg).replace('_', "-");
    MANAGED_FLAGS.iter().copied().find(|f| *f == name)
}

/// Names vLLM may not know: a warning, since vLLM versions add parsers.
pub fn warnings(spec: &VllmSpec) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(p) = &spec.tool_call_parser {
        if !KNOWN_TOOL_CALL_PARSERS.contains(&p.as_str()) {
            out.push(format!(
                "toolCallParser `{p}` is not a parser this operator knows (vLLM will refuse to start if its version lacks it)"
            ));
        }
    }
    if let Some(p) = &spec.reasoning_parser {
        if !KNOWN_REASONING_PARSERS.contains(&p.as_str()) {
            out.push(format!(
                "reasoningParser `{p}` is not a parser this operator knows (vLLM will refuse to start if its version lacks it)"
            ));
        }
    }
    out
}

/// Shown in place of a secret flag value.
pub const REDACTED: &str = "<redacted>";

/// Whether a flag (`--api-key`, `--hf_token`) takes a secret value: one of its words is a
/// key, token, secret, password or credential. `--max-num-batched-tokens`, `--tokenizer`
/// and `--ssl-keyfile` (counts, names, paths) are not.
pub fn is_secret_flag(flag: &str) -> bool {
    let name = flag.trim_start_matches('-').to_ascii_lowercase();
    if name.is_empty() || !flag.starts_with('-') {
        return false;
    }
    name.split(['-', '_', '.']).any(|word| {
        matches!(
            word,
            "key"
                | "keys"
                | "apikey"
                | "token"
                | "secret"
                | "password"
                | "passwd"
                | "credential"
                | "credentials"
                | "auth"
        ) || word.ends_with("token")
            || word.ends_with("secret")
            || word.ends_with("password")
    })
}

/// `argv` with the values of secret flags replaced (`--api-key X`, `--hf-token=X`), for the
/// status, events and logs; the container runs the real one.
pub fn redact_secret_args(argv: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(argv.len());
    let mut value_next = false;
    for arg in argv {
        if value_next && !arg.starts_with("--") {
            out.push(REDACTED.to_owned());
            value_next = false;
            continue;
        }
        value_next = false;
        match arg.split_once('=') {
            Some((flag, _)) if is_secret_flag(flag) => out.push(format!("{flag}={REDACTED}")),
            None if is_secret_flag(arg) => {
                out.push(arg.clone());
                value_next = true;
            }
            _ => out.push(arg.clone()),
        }
    }
    out
}

/// POSIX-shell rendering of an argv, for the status and for `sh -c` scripts.
pub fn shell_join(argv: &[String]) -> String {
    argv.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

fn shell_quote(arg: &str) -> String {
    let plain = !arg.is_empty()
        && arg
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@%+=:,./-_".contains(&b));
    // `$(VAR)` is kubelet syntax, expanded before the shell runs: keep it readable.
    let kubelet_ref = arg.starts_with("$(") && arg.ends_with(')') && !arg.contains(' ');
    if plain || kubelet_ref {
        arg.to_owned()
    } else {
        format!("'{}'", arg.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::EnvVar;

    #[test]
    fn secret_flag_values_are_redacted_for_the_status() {
        let argv: Vec<String> = [
            "vllm",
            "serve",
            "--api-key",
            "sk-one",
            "--hf-token=hf_two",
            "--hf_token",
            "hf_three",
            "--client-secret=s3",
            "--db-password",
            "pw4",
            "--max-num-batched-tokens",
            "8192",
            "--tokenizer",
            "org/tok",
            "--ssl-keyfile",
            "/etc/k.pem",
            "--api-key",
            "--enforce-eager",
        ]
        .map(String::from)
        .to_vec();
        let shown = redact_secret_args(&argv).join(" ");
        for secret in ["sk-one", "hf_two", "hf_three", "s3", "pw4"] {
            assert!(!shown.contains(secret), "{shown}");
        }
        assert_eq!(
            shown,
            "vllm serve --api-key <redacted> --hf-token=<redacted> --hf_token <redacted> \
             --client-secret=<redacted> --db-password <redacted> --max-num-batched-tokens 8192 \
             --tokenizer org/tok --ssl-keyfile /etc/k.pem --api-key --enforce-eager"
        );
    }

    #[test]
    fn managed_flags_are_refused_in_every_spelling() {
        let mut spec = VllmSpec::for_model("m");
        spec.extra_args = vec![
            "--max_model_len=4096".into(),
            "--enforce-eager".into(),
            "-tp".into(),
            "2".into(),
            "--port".into(),
        ];
        spec.env = vec![EnvVar {
            name: "NCCL_IB_HCA".into(),
            value: Some("x".into()),
            ..Default::default()
        }];
        let fields: Vec<String> = check_escape_hatches(&spec)
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(
            fields,
            [
                "spec.vllm.extraArgs[0]",
                "spec.vllm.extraArgs[2]",
                "spec.vllm.extraArgs[4]",
                "spec.vllm.env[0]"
            ]
        );
    }

    #[test]
    fn unknown_parsers_warn() {
        let mut spec = VllmSpec::for_model("m");
        spec.tool_call_parser = Some("hermes".into());
        spec.reasoning_parser = Some("qwen4".into());
        let w = warnings(&spec);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("`qwen4`"));
    }

    #[test]
    fn worker_serves_nothing_and_joins_the_leader() {
        let mut spec = VllmSpec::for_model("openai/gpt-oss-120b");
        spec.nodes = 2;
        spec.tensor_parallel = 2;
        spec.tool_call_parser = Some("openai".into());
        let worker = vllm_argv(&spec, Role::Worker);
        assert!(!worker.contains(&"--port".to_owned()));
        assert!(!worker.contains(&"--tool-call-parser".to_owned()));
        assert_eq!(worker.last().map(String::as_str), Some("--headless"));
        let rank = worker.iter().position(|a| a == "--node-rank").unwrap();
        assert_eq!(worker[rank + 1], "$(LWS_WORKER_INDEX)");
        let leader = vllm_argv(&spec, Role::Leader);
        let rank = leader.iter().position(|a| a == "--node-rank").unwrap();
        assert_eq!(leader[rank + 1], "0");
    }

    #[test]
    fn quoting_survives_a_round_trip_through_sh() {
        let argv: Vec<String> = vec![
            "printf".into(),
            "%s|".into(),
            r#"{"method":"mtp"}"#.into(),
            "it's".into(),
            "".into(),
        ];
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(shell_join(&argv))
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8(out.stdout).unwrap(),
            r#"{"method":"mtp"}|it's||"#
        );
    }
}
