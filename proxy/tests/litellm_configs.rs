//! A corpus of LiteLLM proxy configs shaped like the ones users run (Claude Code on DGX Spark,
//! mixed clouds, embeddings, wildcard groups, reliability settings), converted by
//! `litellm::convert_with_env` with a fixed environment. Each file's test pins what is served
//! (routes, backends, fallbacks) and what is reported (warnings at config paths).

use std::collections::HashMap;
use std::path::PathBuf;
use switchyard_api::{Backend, Protocol, Route, RoutingSnapshot};
use switchyard_proxy::config::litellm::{
    convert_with_env, Conversion, LitellmError, MASTER_KEY_NAME,
};

/// The environment every config is converted in; anything else is unset.
const ENV: &[(&str, &str)] = &[
    ("LITELLM_MASTER_KEY", "sk-test-master"),
    ("OPENROUTER_API_KEY", "or-key-value"),
    ("GROQ_API_KEY", "groq-key-value"),
    ("ANTHROPIC_API_KEY", "ant-key-value"),
    ("VLLM_API_KEY", "vllm-key-value"),
];

/// Values that must never appear in a snapshot, a warning or an error.
const SECRETS: &[&str] = &[
    "sk-test-master",
    "or-key-value",
    "groq-key-value",
    "ant-key-value",
    "vllm-key-value",
    "sk-enterprise-master-1234",
    "sk-gw-pasted-literal-9f8e7d",
    "gw-token-from-config-77",
    "pg-password-123",
    "sk-litellm-local-master-key",
    "sk-1234",
    "token-abc123",
];

fn corpus_dir() -> PathBuf {
    PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/litellm_configs"
    ))
}

/// The shared fixtures beside the repository (as the unit tests find them).
fn shared_dir() -> PathBuf {
    match std::env::var_os("SWITCHYARD_FIXTURES") {
        Some(dir) => PathBuf::from(dir).join("litellm"),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/litellm")),
    }
}

fn read(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn convert_text(text: &str, extra: &[(&str, &str)]) -> Result<Conversion, LitellmError> {
    let env: HashMap<&str, &str> = ENV.iter().chain(extra).copied().collect();
    convert_with_env(text, &|name| env.get(name).map(|v| v.to_string()))
}

fn try_convert(name: &str) -> Result<Conversion, LitellmError> {
    convert_text(&read(corpus_dir().join(name)), &[])
}

/// Converts, then checks what holds for every successful conversion.
fn checked(c: Conversion, name: &str) -> Conversion {
    c.snapshot
        .validate()
        .unwrap_or_else(|e| panic!("{name}: invalid snapshot: {e:?}"));
    let back: RoutingSnapshot = serde_yaml::from_str(&c.to_yaml()).expect("compact YAML parses");
    assert_eq!(back, c.snapshot, "{name}: compact YAML round trip");
    let printed = format!("{}\n{}", c.to_yaml(), c.warnings.join("\n"));
    for secret in SECRETS {
        assert!(!printed.contains(secret), "{name}: `{secret}` printed");
    }
    c
}

fn convert(name: &str) -> Conversion {
    let c = try_convert(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    checked(c, name)
}

fn shared(name: &str, extra: &[(&str, &str)]) -> Conversion {
    let c = convert_text(&read(shared_dir().join(name)), extra)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    checked(c, name)
}

fn route_names(c: &Conversion) -> Vec<&str> {
    c.snapshot.routes.iter().map(|r| r.name.as_str()).collect()
}

fn route<'a>(c: &'a Conversion, name: &str) -> &'a Route {
    c.snapshot
        .routes
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no route `{name}` in {:?}", route_names(c)))
}

fn backend<'a>(c: &'a Conversion, name: &str) -> &'a Backend {
    c.snapshot
        .backends
        .iter()
        .find(|b| b.name == name)
        .unwrap_or_else(|| panic!("no backend `{name}`"))
}

/// The one backend a route sends to.
fn served_by<'a>(c: &'a Conversion, route_name: &str) -> &'a Backend {
    let r = route(c, route_name);
    let name = r
        .backend
        .as_deref()
        .unwrap_or_else(|| panic!("route `{route_name}` has targets {:?}", r.targets));
    backend(c, name)
}

/// The single warning at `path` (exactly that path, then `: `), containing `text`.
fn assert_warning(c: &Conversion, path: &str, text: &str) {
    let at = format!("{path}: ");
    let found: Vec<&String> = c.warnings.iter().filter(|w| w.starts_with(&at)).collect();
    assert_eq!(found.len(), 1, "{path}: {:#?}", c.warnings);
    assert!(
        found[0].contains(text),
        "{path}: `{text}` not in {}",
        found[0]
    );
}

/// Warnings about deployments that were skipped, and about groups left without a route.
fn skipped_and_dropped(c: &Conversion) -> (usize, usize) {
    let skipped = c
        .warnings
        .iter()
        .filter(|w| w.contains("; deployment of `") || w.ends_with("; deployment skipped"))
        .count();
    let dropped = c
        .warnings
        .iter()
        .filter(|w| w.contains("so it gets no route"))
        .count();
    (skipped, dropped)
}

#[test]
fn every_config_of_the_corpus_has_a_test_and_none_prints_a_secret() {
    let mut names: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names.len(), 20, "{names:?}");
    let source = include_str!("litellm_configs.rs");
    for name in &names {
        assert!(
            source.contains(&format!("\"{name}\"")),
            "{name} has no test"
        );
        match try_convert(name) {
            Ok(c) => drop(checked(c, name)),
            Err(e) => {
                let text = e.to_string();
                for secret in SECRETS {
                    assert!(!text.contains(secret), "{name}: `{secret}` in the error");
                }
            }
        }
    }
}

#[test]
fn claude_code_on_spark() {
    let c = convert("01-claude-code-spark-vllm.yaml");
    assert_eq!(
        route_names(&c),
        [
            "claude-sonnet-4-5-20250929",
            "claude-opus-4-1-20250805",
            "claude-3-5-haiku-20241022"
        ]
    );
    let coder = served_by(&c, "claude-sonnet-4-5-20250929");
    assert_eq!(coder.name, "qwen-qwen3-coder-30b-a3b-instruct");
    assert_eq!(coder.base_url, "http://spark.local:8000/v1");
    assert_eq!(coder.context_window, Some(262_144));
    assert_eq!(served_by(&c, "claude-3-5-haiku-20241022").name, coder.name);
    let oss = served_by(&c, "claude-opus-4-1-20250805");
    assert_eq!(oss.served_model.as_deref(), Some("openai/gpt-oss-120b"));
    assert_eq!(oss.base_url, "http://spark.local:8001/v1");
    assert_eq!(oss.api_key, None);
    assert_eq!(c.snapshot.backends.len(), 2);
    assert_eq!(c.snapshot.keys.len(), 1);
    assert_eq!(c.snapshot.keys[0].name, MASTER_KEY_NAME);
    assert_eq!(
        c.snapshot.keys[0].sha256,
        switchyard_proxy::routing::keys::hash_key("sk-test-master")
    );
    for r in &c.snapshot.routes {
        assert_eq!(r.timeouts.first_token_ms, 600_000);
        assert_eq!(r.retries.attempts, 3, "LiteLLM's default 2 retries");
    }
    assert_warning(&c, "model_list[1].litellm_params.api_key", "placeholder");
    assert_warning(&c, "general_settings.master_key", "LITELLM_MASTER_KEY");
    assert_eq!(c.warnings.len(), 2, "{:#?}", c.warnings);
}

#[test]
fn two_sparks_in_one_group_and_a_weighted_group() {
    let c = convert("02-two-sparks-one-group.yaml");
    assert_eq!(route_names(&c), ["claude-sonnet-4-5", "claude-opus-4-1"]);
    let sonnet = served_by(&c, "claude-sonnet-4-5");
    assert_eq!(
        sonnet.endpoints,
        ["http://spark-1:8000/v1", "http://spark-2:8000/v1"]
    );
    let opus = route(&c, "claude-opus-4-1");
    assert_eq!(opus.backend, None);
    let targets: Vec<(&str, u32)> = opus
        .targets
        .iter()
        .map(|t| (t.backend.as_str(), t.weight))
        .collect();
    assert_eq!(
        targets,
        [
            ("qwen-qwen3-235b-a22b-instruct-2507", 3),
            ("qwen-qwen3-coder-30b-a3b-instruct-2", 1)
        ]
    );
    assert_eq!(
        backend(&c, "qwen-qwen3-coder-30b-a3b-instruct-2").base_url,
        "http://spark-1:8000/v1"
    );
    // num_retries: 3 retries → 4 attempts.
    assert_eq!(opus.retries.attempts, 4);
    assert_eq!(route(&c, "claude-sonnet-4-5").retries.attempts, 4);
    assert!(c.warnings.is_empty(), "{:#?}", c.warnings);
}

#[test]
fn mixed_clouds_serve_the_local_model_and_name_every_skipped_one() {
    let c = convert("03-mixed-cloud-providers.yaml");
    assert_eq!(route_names(&c), ["local-coder"]);
    assert_eq!(c.snapshot.backends.len(), 1);
    assert_eq!(
        served_by(&c, "local-coder").base_url,
        "http://vllm.ai.svc.cluster.local:8000/v1"
    );
    for (i, provider) in [
        (1, "`bedrock/`"),
        (2, "`vertex_ai/`"),
        (3, "`azure/`"),
        (4, "`gemini/`"),
        (5, "`cohere/`"),
    ] {
        assert_warning(
            &c,
            &format!("model_list[{i}].litellm_params.model"),
            provider,
        );
        assert_warning(
            &c,
            &format!("model_list[{i}].model_name"),
            "no servable deployment",
        );
    }
    assert_warning(
        &c,
        "router_settings.fallbacks[0].claude-sonnet-4-5",
        "`claude-sonnet-4-5` has no servable deployment; ignored",
    );
    let at = "router_settings.fallbacks[1].local-coder: ";
    let to_dropped: Vec<&String> = c.warnings.iter().filter(|w| w.starts_with(at)).collect();
    assert_eq!(to_dropped.len(), 2, "{to_dropped:?}");
    assert!(to_dropped[0].contains("`gemini-2.5-pro` has no servable deployment; skipped"));
    assert!(to_dropped[1].contains("`gpt-4o` has no servable deployment; skipped"));
    assert!(route(&c, "local-coder").fallbacks.is_empty());
    // Settings of skipped deployments (aws_region_name, api_version) are not reported.
    assert!(!c.warnings.iter().any(|w| w.contains("aws_region_name")));
    assert_eq!(skipped_and_dropped(&c), (5, 5));
    assert_eq!(c.warnings.len(), 13, "{:#?}", c.warnings);
}

#[test]
fn embeddings_rerank_and_speech_are_skipped_beside_chat() {
    let c = convert("04-embeddings-beside-chat.yaml");
    assert_eq!(route_names(&c), ["chat"]);
    let chat = served_by(&c, "chat");
    assert_eq!(chat.base_url, "http://gpu-box:11434/v1");
    assert_eq!(chat.served_model.as_deref(), Some("qwen3:32b"));
    assert_eq!(chat.protocol, Protocol::Openai);
    assert_warning(
        &c,
        "model_list[1].litellm_params.model",
        "an embedding model",
    );
    assert_warning(
        &c,
        "model_list[2].litellm_params.model",
        "an embedding model",
    );
    assert_warning(&c, "model_list[3].model_info.mode", "`mode: embedding`");
    assert_warning(&c, "model_list[4].litellm_params.model", "a rerank model");
    assert_warning(
        &c,
        "model_list[5].model_info.mode",
        "`mode: audio_transcription`",
    );
    assert_eq!(skipped_and_dropped(&c), (5, 5));
    assert_eq!(c.warnings.len(), 10, "{:#?}", c.warnings);
}

#[test]
fn fallbacks_named_by_the_client_model_under_a_wildcard_group() {
    let c = convert("05-wildcard-with-named-fallbacks.yaml");
    assert_eq!(
        route_names(&c),
        ["claude-*", "backup", "claude-sonnet-4-5", "claude-opus-4-1"]
    );
    let glob = route(&c, "claude-*");
    let primary = served_by(&c, "claude-*");
    assert_eq!(primary.base_url, "http://spark.local:8000/v1");
    let backup = served_by(&c, "backup");
    assert_eq!(backup.base_url, "http://workstation.local:8000/v1");
    for name in ["claude-sonnet-4-5", "claude-opus-4-1"] {
        let r = route(&c, name);
        assert_eq!(r.models, [name]);
        assert_eq!(r.backend, glob.backend);
        assert_eq!(r.fallbacks, [backup.name.as_str()]);
        assert_eq!(r.retries.attempts, 2);
    }
    // Other Claude names keep the glob route, which has no fallbacks.
    assert!(glob.fallbacks.is_empty());
    assert!(c.warnings.is_empty(), "{:#?}", c.warnings);
}

#[test]
fn retries_timeouts_and_cooldowns() {
    let c = convert("06-router-retries-cooldowns.yaml");
    let coder = route(&c, "coder");
    assert_eq!(coder.retries.attempts, 5, "entry num_retries 4 wins");
    assert_eq!(coder.retries.backoff_ms, 1_000);
    assert_eq!(coder.timeouts.first_token_ms, 60_000);
    assert_eq!(coder.timeouts.idle_ms, 1_200_000);
    let fast = route(&c, "fast");
    assert_eq!(fast.retries.attempts, 3);
    assert_eq!(fast.timeouts.first_token_ms, 300_000);
    assert_eq!(fast.timeouts.idle_ms, 300_000);
    let o = &served_by(&c, "coder").outlier;
    assert_eq!((o.consecutive_failures, o.base_ejection_ms), (2, 45_000));
    let o = &served_by(&c, "fast").outlier;
    assert_eq!((o.consecutive_failures, o.base_ejection_ms), (2, 10_000));
    assert_warning(&c, "model_list[0].litellm_params.api_key", "placeholder");
    assert_warning(&c, "model_list[1].litellm_params.api_key", "placeholder");
    assert_warning(
        &c,
        "model_list[1].litellm_params.cooldown_time",
        "baseEjectionMs",
    );
    assert_warning(&c, "router_settings.allowed_fails", "consecutiveFailures");
    assert_warning(&c, "router_settings.cooldown_time", "baseEjectionMs");
    assert_eq!(c.warnings.len(), 5, "{:#?}", c.warnings);
}

#[test]
fn context_window_fallbacks_become_context_fallbacks() {
    let c = convert("07-context-window-fallbacks.yaml");
    let short = route(&c, "claude-sonnet-4-5");
    let long = served_by(&c, "long-context");
    assert_eq!(long.context_window, Some(262_144));
    assert_eq!(
        served_by(&c, "claude-sonnet-4-5").context_window,
        Some(32_768)
    );
    assert_eq!(short.context_fallbacks, [long.name.as_str()]);
    assert!(short.fallbacks.is_empty(), "not a general fallback");
    assert!(route(&c, "long-context").context_fallbacks.is_empty());
    assert_warning(
        &c,
        "litellm_settings.content_policy_fallbacks",
        "not supported",
    );
    assert_eq!(c.warnings.len(), 1, "{:#?}", c.warnings);
}

#[test]
fn hosted_openai_compatible_apis_with_and_without_their_keys() {
    let c = convert("08-hosted-openai-compatible.yaml");
    assert_eq!(
        route_names(&c),
        ["claude-sonnet-4-5", "claude-3-5-haiku-20241022"]
    );
    let or = served_by(&c, "claude-sonnet-4-5");
    assert_eq!(or.base_url, "https://openrouter.ai/api/v1");
    assert_eq!(or.served_model.as_deref(), Some("qwen/qwen3-coder"));
    assert_eq!(
        or.api_key.as_ref().unwrap().env.as_deref(),
        Some("OPENROUTER_API_KEY")
    );
    let groq = served_by(&c, "claude-3-5-haiku-20241022");
    assert_eq!(groq.base_url, "https://api.groq.com/openai/v1");
    assert_eq!(
        groq.api_key.as_ref().unwrap().env.as_deref(),
        Some("GROQ_API_KEY")
    );
    assert_warning(
        &c,
        "model_list[2].litellm_params.api_key",
        "environment variable DEEPSEEK_API_KEY is not set",
    );
    assert_warning(
        &c,
        "model_list[3].litellm_params.api_key",
        "environment variable XAI_API_KEY (LiteLLM's default for `xai/`) is not set",
    );
    assert_warning(&c, "model_list[4].litellm_params.model", "`mistral/`");
    assert_eq!(skipped_and_dropped(&c), (3, 3));
    assert_eq!(c.warnings.len(), 6, "{:#?}", c.warnings);
}

#[test]
fn ollama_on_a_laptop() {
    let c = convert("09-ollama-laptop.yaml");
    assert_eq!(
        route_names(&c),
        ["claude-sonnet-4-5", "claude-3-5-haiku-20241022"]
    );
    assert_eq!(
        served_by(&c, "claude-sonnet-4-5").base_url,
        "http://localhost:11434/v1"
    );
    let haiku = served_by(&c, "claude-3-5-haiku-20241022");
    assert_eq!(
        haiku.base_url, "http://localhost:11434/v1",
        "Ollama's default"
    );
    assert_eq!(haiku.served_model.as_deref(), Some("qwen2.5-coder:7b"));
    assert_eq!(haiku.api_key, None);
    assert_warning(
        &c,
        "model_list[2].litellm_params.api_base",
        "environment variable OLLAMA_HOST_URL is not set",
    );
    assert_warning(
        &c,
        "model_list[2].model_name",
        "`gpt-oss` has no servable deployment",
    );
    assert_eq!(c.warnings.len(), 2, "{:#?}", c.warnings);
}

#[test]
fn nothing_servable_is_an_error_listing_every_reason() {
    let err = try_convert("10-azure-and-bedrock-only.yaml").unwrap_err();
    let LitellmError::NothingServable(reasons) = &err else {
        panic!("{err}");
    };
    assert_eq!(reasons.len(), 3, "{reasons:#?}");
    assert!(reasons[0].starts_with("model_list[0].litellm_params.model: provider `azure/`"));
    assert!(reasons[1].starts_with("model_list[1].litellm_params.model: provider `bedrock/`"));
    assert!(reasons[2].starts_with(
        "model_list[2].litellm_params.model: `azure/text-embedding-ada-002` is an embedding model"
    ));
    let text = err.to_string();
    assert!(
        text.starts_with("nothing in model_list can be served"),
        "{text}"
    );
    assert!(!text.contains("sk-enterprise-master-1234"));
}

#[test]
fn master_key_from_an_unset_variable_is_an_error() {
    let err = try_convert("11-master-key-env-unset.yaml").unwrap_err();
    assert!(matches!(err, LitellmError::MasterKey(_)), "{err}");
    assert!(
        err.to_string().starts_with(
            "general_settings.master_key: environment variable SWITCHYARD_TEST_UNSET_MASTER_KEY \
             is not set"
        ),
        "{err}"
    );
    let text = read(corpus_dir().join("11-master-key-env-unset.yaml"));
    let c = convert_text(&text, &[("SWITCHYARD_TEST_UNSET_MASTER_KEY", "sk-now-set")]).unwrap();
    assert_eq!(
        c.snapshot.keys[0].sha256,
        switchyard_proxy::routing::keys::hash_key("sk-now-set")
    );
}

#[test]
fn literal_keys_and_lm_studio() {
    let c = convert("12-literal-keys-lm-studio.yaml");
    assert_eq!(route_names(&c), ["local", "gateway-big", "gateway-small"]);
    let local = served_by(&c, "local");
    assert_eq!(local.base_url, "http://127.0.0.1:1234/v1");
    assert_eq!(local.served_model.as_deref(), Some("qwen/qwen3-coder-30b"));
    let var = "SWITCHYARD_QWEN3_CODER_480B_API_KEY";
    for r in ["gateway-big", "gateway-small"] {
        assert_eq!(
            served_by(&c, r).api_key.as_ref().unwrap().env.as_deref(),
            Some(var)
        );
    }
    assert_eq!(c.secret_env.len(), 1);
    assert_eq!(c.secret_env[var].expose(), "sk-gw-pasted-literal-9f8e7d");
    assert_warning(&c, "model_list[1].litellm_params.api_key", var);
    assert_warning(&c, "model_list[2].litellm_params.api_key", var);
    assert_warning(
        &c,
        "model_list[3].litellm_params.api_base",
        "LM_STUDIO_API_BASE",
    );
    assert_warning(&c, "model_list[3].model_name", "no servable deployment");
    assert_eq!(c.warnings.len(), 4, "{:#?}", c.warnings);
}

#[test]
fn rpm_weights_and_a_skipped_member_of_the_group() {
    let c = convert("13-rpm-tpm-load-balancing.yaml");
    assert_eq!(route_names(&c), ["coder"]);
    let targets: Vec<(&str, u32)> = route(&c, "coder")
        .targets
        .iter()
        .map(|t| (t.backend.as_str(), t.weight))
        .collect();
    assert_eq!(
        targets,
        [
            ("qwen3-coder", 600),
            ("qwen3-coder-2", 600),
            ("qwen3-coder-3", 100)
        ]
    );
    assert_eq!(
        backend(&c, "qwen3-coder-3").base_url,
        "http://spark:8000/v1"
    );
    for i in 0..3 {
        assert_warning(
            &c,
            &format!("model_list[{i}].litellm_params.rpm"),
            "not enforced",
        );
    }
    assert_warning(&c, "model_list[3].litellm_params.model", "`bedrock/`");
    assert_eq!(skipped_and_dropped(&c), (1, 0));
    assert_eq!(c.warnings.len(), 4, "{:#?}", c.warnings);
}

#[test]
fn aliases_of_served_and_dropped_groups() {
    let c = convert("14-model-group-alias.yaml");
    assert_eq!(route_names(&c), ["claude-sonnet-4-5"]);
    assert_eq!(
        route(&c, "claude-sonnet-4-5").models,
        [
            "claude-sonnet-4-5",
            "claude-3-7-sonnet-20250219",
            "claude-sonnet-4-20250514"
        ]
    );
    assert_warning(&c, "model_list[1].litellm_params.model", "`vertex_ai/`");
    assert_warning(&c, "model_list[1].model_name", "no servable deployment");
    assert_warning(
        &c,
        "router_settings.model_group_alias.claude-sonnet-4-20250514",
        "`hidden`",
    );
    assert_warning(
        &c,
        "router_settings.model_group_alias.claude-opus-4-20250514",
        "`claude-opus-4-1` has no servable deployment; the alias is ignored",
    );
    assert_eq!(c.warnings.len(), 4, "{:#?}", c.warnings);
}

#[test]
fn default_fallbacks_apply_where_no_entry_does() {
    let c = convert("15-default-fallbacks.yaml");
    assert_eq!(route_names(&c), ["big", "mid", "small", "hosted"]);
    assert_eq!(route(&c, "big").fallbacks, ["qwen3-30b", "qwen3-8b"]);
    assert_eq!(route(&c, "small").fallbacks, ["qwen-qwen3-235b-a22b"]);
    assert_eq!(route(&c, "mid").fallbacks, ["qwen3-8b"]);
    assert_eq!(route(&c, "hosted").fallbacks, ["qwen3-8b"]);
    assert_warning(
        &c,
        "router_settings.fallbacks[1].big",
        "no model_list entry named `nonexistent`; skipped",
    );
    assert_eq!(c.warnings.len(), 1, "{:#?}", c.warnings);
}

#[test]
fn production_trimmings_are_each_named() {
    let c = convert("16-callbacks-database-guardrails.yaml");
    assert_eq!(route_names(&c), ["claude-sonnet-4-5"]);
    let b = served_by(&c, "claude-sonnet-4-5");
    assert_eq!(
        b.api_key.as_ref().unwrap().env.as_deref(),
        Some("VLLM_API_KEY")
    );
    for path in [
        "guardrails",
        "model_list[0].model_info.id",
        "model_list[0].model_info.input_cost_per_token",
        "litellm_settings.success_callback",
        "litellm_settings.failure_callback",
        "litellm_settings.cache",
        "litellm_settings.cache_params",
        "litellm_settings.max_budget",
        "litellm_settings.set_verbose",
        "router_settings.redis_host",
        "router_settings.redis_password",
        "general_settings.master_key",
        "general_settings.database_url",
        "general_settings.alerting",
        "general_settings.store_model_in_db",
    ] {
        assert_warning(&c, path, "");
    }
    assert_warning(
        &c,
        "litellm_settings.success_callback",
        "langfuse`, `prometheus",
    );
    assert_eq!(c.warnings.len(), 15, "{:#?}", c.warnings);
    assert_eq!(c.snapshot.keys.len(), 1);
}

#[test]
fn anthropic_hosted_and_native_vllm() {
    let c = convert("17-anthropic-passthrough.yaml");
    let opus = served_by(&c, "claude-opus-4-1");
    assert_eq!(opus.protocol, Protocol::Anthropic);
    assert_eq!(opus.base_url, "https://api.anthropic.com/v1");
    assert_eq!(
        opus.api_key.as_ref().unwrap().env.as_deref(),
        Some("ANTHROPIC_API_KEY")
    );
    let sonnet = served_by(&c, "claude-sonnet-4-5");
    assert_eq!(sonnet.protocol, Protocol::Anthropic);
    assert_eq!(sonnet.base_url, "http://spark:8000/v1");
    assert_eq!(sonnet.api_key, None);
    let haiku = served_by(&c, "claude-haiku-4-5");
    assert_eq!(
        haiku.served_model.as_deref(),
        Some("claude-haiku-4-5-20251001")
    );
    assert_eq!(haiku.protocol, Protocol::Anthropic);
    assert_eq!(
        route(&c, "claude-opus-4-1").fallbacks,
        [sonnet.name.as_str()]
    );
    assert_warning(&c, "model_list[1].litellm_params.api_key", "placeholder");
    assert_warning(&c, "model_list[2].litellm_params.model", "inferred");
    assert_eq!(c.warnings.len(), 2, "{:#?}", c.warnings);
}

#[test]
fn environment_variables_of_the_config_and_missing_ones() {
    let c = convert("18-environment-variables.yaml");
    assert_eq!(route_names(&c), ["primary", "gateway"]);
    let primary = served_by(&c, "primary");
    assert_eq!(primary.base_url, "http://vllm-head:8000/v1");
    assert!(primary.endpoints.is_empty(), "the worker was skipped");
    assert_eq!(
        c.secret_env["GATEWAY_TOKEN"].expose(),
        "gw-token-from-config-77"
    );
    assert_warning(&c, "model_list[0].litellm_params.api_base", "VLLM_BASE");
    assert_warning(
        &c,
        "model_list[2].litellm_params.api_base",
        "environment variable SECONDARY_VLLM_BASE is not set",
    );
    assert_warning(
        &c,
        "model_list[2].model_name",
        "`secondary` has no servable deployment",
    );
    assert_warning(
        &c,
        "model_list[3].litellm_params.api_key",
        "environment variable WORKER_KEY is not set; deployment of `primary` skipped",
    );
    assert_warning(&c, "environment_variables", "GATEWAY_TOKEN");
    assert_eq!(c.warnings.len(), 5, "{:#?}", c.warnings);
}

#[test]
fn star_passthrough_with_a_context_fallback_by_client_name() {
    let c = convert("19-star-passthrough.yaml");
    assert_eq!(
        route_names(&c),
        [
            "*",
            "claude-*",
            "claude-3-5-haiku*",
            "claude-3-5-haiku-20241022"
        ]
    );
    let star = served_by(&c, "*");
    assert_eq!(star.served_model, None);
    assert_eq!(star.name, "hosted-vllm-wildcard");
    let small = served_by(&c, "claude-3-5-haiku*");
    // The most specific glob is copied; the fallback name resolves through `claude-*`.
    let exact = route(&c, "claude-3-5-haiku-20241022");
    assert_eq!(exact.backend.as_deref(), Some(small.name.as_str()));
    assert_eq!(
        exact.context_fallbacks,
        [served_by(&c, "claude-*").name.as_str()]
    );
    assert!(route(&c, "claude-3-5-haiku*").context_fallbacks.is_empty());
    assert_warning(
        &c,
        "model_list[0].litellm_params.model",
        "exactly one model",
    );
    assert_eq!(c.warnings.len(), 1, "{:#?}", c.warnings);
}

#[test]
fn yaml_anchors_and_merge_keys() {
    let c = convert("20-yaml-anchors-and-merge.yaml");
    assert_eq!(route_names(&c), ["claude-sonnet-4-5", "claude-opus-4-1"]);
    assert_eq!(c.snapshot.backends.len(), 1);
    assert_eq!(route(&c, "claude-opus-4-1").retries.attempts, 1);
    assert_eq!(route(&c, "claude-sonnet-4-5").retries.attempts, 3);
    assert_eq!(route(&c, "claude-sonnet-4-5").timeouts.idle_ms, 900_000);
    assert_warning(&c, "x-vllm", "not supported");
    assert_warning(&c, "model_list[0].litellm_params.api_key", "placeholder");
    assert_warning(&c, "model_list[1].litellm_params.api_key", "placeholder");
    assert_warning(&c, "model_list[2].model_info.mode", "`mode: embedding`");
    assert_warning(
        &c,
        "model_list[2].model_name",
        "`embed` has no servable deployment",
    );
    assert_eq!(c.warnings.len(), 5, "{:#?}", c.warnings);
}

#[test]
fn shared_fixtures() {
    let c = shared("claude-aliases-wildcard.yaml", &[]);
    assert_eq!(
        route_names(&c),
        [
            "claude-3-sonnet-20240229",
            "claude-3-opus-20240229",
            "claude-*"
        ]
    );
    assert_eq!(route(&c, "claude-*").models, ["claude-*"]);
    assert_eq!(c.warnings.len(), 1, "{:#?}", c.warnings);

    let c = shared("lan-spark-qwen.yaml", &[]);
    assert_eq!(c.snapshot.backends.len(), 2);
    assert_eq!(route_names(&c).len(), 3);

    let c = shared("spark-gpt-oss.yaml", &[]);
    assert_eq!(
        c.snapshot.keys[0].sha256,
        switchyard_proxy::routing::keys::hash_key("sk-1234")
    );
    assert_eq!(route_names(&c), ["openai/gpt-oss-120b"]);

    // With the gateway key: the local model falls back to both hosted ones.
    let c = shared("gateway-fallbacks.yaml", &[("GATEWAY_API_KEY", "gw")]);
    assert_eq!(
        route(&c, "local-coder").fallbacks,
        ["qwen3p6-plus", "deepseek-v3p2"]
    );
    // Without it: the hosted deployments are skipped, the local one still served.
    let c = shared("gateway-fallbacks.yaml", &[]);
    assert_eq!(route_names(&c), ["local-coder"]);
    assert!(route(&c, "local-coder").fallbacks.is_empty());
    assert_warning(
        &c,
        "model_list[1].litellm_params.api_key",
        "environment variable GATEWAY_API_KEY is not set",
    );
    assert_warning(
        &c,
        "model_list[2].litellm_params.api_key",
        "GATEWAY_API_KEY",
    );
    assert_eq!(skipped_and_dropped(&c), (2, 2));
    let at = "router_settings.fallbacks[0].local-coder: ";
    assert_eq!(c.warnings.iter().filter(|w| w.starts_with(at)).count(), 2);
}
