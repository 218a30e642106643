use super::keys::sha256_hex;
use super::values::glob_literal;
use super::*;
use std::collections::HashMap;
use std::path::PathBuf;
use switchyard_api::{Backend, Protocol, Route, RoutingSnapshot, SecretRef, Timeouts};

/// `$SWITCHYARD_FIXTURES/litellm`, else the repository's `fixtures/`.
fn fixtures_dir() -> PathBuf {
    match std::env::var_os("SWITCHYARD_FIXTURES") {
        Some(dir) => PathBuf::from(dir).join("litellm"),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/litellm")),
    }
}

fn no_env(_: &str) -> Option<String> {
    None
}

fn fixture(name: &str) -> Conversion {
    fixture_env(name, &[])
}

fn fixture_env(name: &str, vars: &[(&str, &str)]) -> Conversion {
    let path = fixtures_dir().join(name);
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    conv_env(&text, vars)
}

fn conv(yaml: &str) -> Conversion {
    convert_with_env(yaml, &no_env).unwrap_or_else(|e| panic!("{e}"))
}

fn conv_env(yaml: &str, vars: &[(&str, &str)]) -> Conversion {
    let vars: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    convert_with_env(yaml, &|name| vars.get(name).cloned()).unwrap_or_else(|e| panic!("{e}"))
}

fn backend<'a>(c: &'a Conversion, name: &str) -> &'a Backend {
    c.snapshot
        .backends
        .iter()
        .find(|b| b.name == name)
        .unwrap_or_else(|| {
            let names: Vec<&str> = c
                .snapshot
                .backends
                .iter()
                .map(|b| b.name.as_str())
                .collect();
            panic!("no backend `{name}` in {names:?}")
        })
}

fn route<'a>(c: &'a Conversion, name: &str) -> &'a Route {
    c.snapshot
        .routes
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no route `{name}`"))
}

fn names<T>(items: &[T], f: impl Fn(&T) -> &str) -> Vec<&str> {
    items.iter().map(f).collect()
}

/// Warnings that start with `path` (the setting they name).
fn warnings_at<'a>(c: &'a Conversion, path: &str) -> Vec<&'a str> {
    c.warnings
        .iter()
        .map(String::as_str)
        .filter(|w| w.starts_with(path))
        .collect()
}

fn env_key(name: &str) -> Option<SecretRef> {
    Some(SecretRef {
        env: Some(name.into()),
        file: None,
        secret_key: None,
    })
}

fn assert_round_trips(c: &Conversion) {
    let full = serde_yaml::to_string(&c.snapshot).unwrap();
    let back: RoutingSnapshot = serde_yaml::from_str(&full).unwrap();
    assert_eq!(back, c.snapshot, "full YAML round trip");
    let compact = c.to_yaml();
    let back: RoutingSnapshot = serde_yaml::from_str(&compact)
        .unwrap_or_else(|e| panic!("compact YAML does not parse: {e}\n{compact}"));
    assert_eq!(back, c.snapshot, "compact YAML round trip:\n{compact}");
    assert!(compact.len() < full.len());
}

#[test]
fn every_fixture_converts_validates_and_round_trips() {
    let mut seen = 0;
    for entry in std::fs::read_dir(fixtures_dir()).expect("fixtures directory") {
        let path = entry.unwrap().path();
        if !matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("yaml" | "yml")
        ) {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let c =
            convert_with_env(&text, &no_env).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        c.snapshot.validate().unwrap();
        assert_round_trips(&c);
        // No secret of the config reaches the output or the warnings.
        let out = format!("{}\n{}", c.to_yaml(), c.warnings.join("\n"));
        for secret in c.secret_env.values() {
            assert!(
                !out.contains(secret.expose()),
                "{}: secret printed",
                path.display()
            );
        }
        for secret in ["sk-litellm-local-master-key", "sk-1234", "token-abc123"] {
            assert!(
                !out.contains(secret),
                "{}: `{secret}` printed",
                path.display()
            );
        }
        seen += 1;
    }
    assert!(seen >= 4, "expected the 4 LiteLLM fixtures, found {seen}");
}

#[test]
fn claude_aliases_wildcard_fixture() {
    let c = fixture("claude-aliases-wildcard.yaml");
    // Two distinct deployments; the wildcard shares the sonnet alias's backend.
    assert_eq!(
        names(&c.snapshot.backends, |b| &b.name),
        [
            "qwen-qwen3-coder-next-32b-instruct",
            "deepseek-deepseek-coder-v3-236b-instruct"
        ]
    );
    let qwen = backend(&c, "qwen-qwen3-coder-next-32b-instruct");
    assert_eq!(qwen.base_url, "http://localhost:8000/v1");
    assert_eq!(qwen.protocol, Protocol::Openai);
    // openai/ strips the prefix and sends the rest, slashes included.
    assert_eq!(
        qwen.served_model.as_deref(),
        Some("Qwen/Qwen3-Coder-Next-32B-Instruct")
    );
    assert_eq!(qwen.api_key, None);
    let deepseek = backend(&c, "deepseek-deepseek-coder-v3-236b-instruct");
    assert_eq!(
        deepseek.served_model.as_deref(),
        Some("DeepSeek/DeepSeek-Coder-V3-236B-Instruct")
    );
    // The literal key becomes an environment variable; its value stays out of the snapshot.
    let var = "SWITCHYARD_DEEPSEEK_DEEPSEEK_CODER_V3_236B_INSTRUCT_API_KEY";
    assert_eq!(deepseek.api_key, env_key(var));
    assert_eq!(c.secret_env[var].expose(), "token-abc123");
    let w = warnings_at(&c, "model_list[1].litellm_params.api_key");
    assert_eq!(w.len(), 1, "{:?}", c.warnings);
    assert!(
        w[0].contains(var) && !w[0].contains("token-abc123"),
        "{}",
        w[0]
    );

    assert_eq!(
        names(&c.snapshot.routes, |r| &r.name),
        [
            "claude-3-sonnet-20240229",
            "claude-3-opus-20240229",
            "claude-*"
        ]
    );
    assert_eq!(route(&c, "claude-*").models, ["claude-*"]);
    assert_eq!(
        route(&c, "claude-*").backend.as_deref(),
        Some("qwen-qwen3-coder-next-32b-instruct")
    );
    assert_eq!(
        route(&c, "claude-3-opus-20240229").backend.as_deref(),
        Some("deepseek-deepseek-coder-v3-236b-instruct")
    );
    for r in &c.snapshot.routes {
        // request_timeout: 600 bounds the wait for each read, not the whole stream.
        assert_eq!(r.timeouts.first_token_ms, 600_000);
        assert_eq!(r.timeouts.idle_ms, 600_000);
        assert_eq!(r.timeouts.total_ms, Timeouts::default().total_ms);
        assert!(r.fallbacks.is_empty());
        assert_eq!(r.retries.attempts, 3);
    }
    assert!(c.snapshot.keys.is_empty());
    // drop_params: true and request_timeout are understood: the key is the only warning.
    assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
}

#[test]
fn gateway_fallbacks_fixture() {
    let c = fixture_env("gateway-fallbacks.yaml", &[("GATEWAY_API_KEY", "gw-key")]);
    assert_eq!(
        names(&c.snapshot.backends, |b| &b.name),
        ["qwen3-coder", "qwen3p6-plus", "deepseek-v3p2"]
    );
    let local = backend(&c, "qwen3-coder");
    assert_eq!(local.base_url, "http://vllm.llm.svc:8000/v1");
    assert_eq!(local.served_model.as_deref(), Some("qwen3-coder"));
    assert_eq!(local.api_key, None);
    for name in ["qwen3p6-plus", "deepseek-v3p2"] {
        let b = backend(&c, name);
        assert_eq!(b.base_url, "https://gateway.example.com/v1");
        assert_eq!(b.served_model.as_deref(), Some(name));
        assert_eq!(b.api_key, env_key("GATEWAY_API_KEY"));
    }
    for b in &c.snapshot.backends {
        assert_eq!(b.outlier.consecutive_failures, 3);
        assert_eq!(b.outlier.base_ejection_ms, 30_000);
    }
    let local_route = route(&c, "local-coder");
    assert_eq!(local_route.backend.as_deref(), Some("qwen3-coder"));
    assert_eq!(local_route.fallbacks, ["qwen3p6-plus", "deepseek-v3p2"]);
    // num_retries: 2 → 3 attempts on the primary, and on each fallback.
    assert_eq!(local_route.retries.attempts, 3);
    assert_eq!(route(&c, "qwen3p6-plus").retries.attempts, 3);
    assert!(route(&c, "deepseek-v3p2").fallbacks.is_empty());
    assert_eq!(route(&c, "deepseek-v3p2").timeouts.first_token_ms, 600_000);

    assert_eq!(c.snapshot.keys.len(), 1);
    let key = &c.snapshot.keys[0];
    assert_eq!(key.name, MASTER_KEY_NAME);
    assert_eq!(
        key.sha256,
        "1cdddee4e4a5f00987f1af7dfbdec40aced917ddf022add2a09bf7e13e74423f"
    );
    assert!(key.routes.is_empty());
    assert!(c.secret_env.is_empty());
    assert_eq!(warnings_at(&c, "router_settings.allowed_fails").len(), 1);
    assert_eq!(warnings_at(&c, "router_settings.cooldown_time").len(), 1);
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
}

#[test]
fn lan_spark_qwen_fixture() {
    let c = fixture("lan-spark-qwen.yaml");
    assert_eq!(
        names(&c.snapshot.backends, |b| &b.name),
        [
            "intel-qwen3-6-35b-a3b-int4-autoround",
            "intel-qwen3-5-27b-int4-autoround"
        ]
    );
    for b in &c.snapshot.backends {
        assert_eq!(b.base_url, "http://192.0.2.10:8888/v1");
        assert_eq!(b.api_key, None, "`api_key: none` is a placeholder");
    }
    assert_eq!(
        backend(&c, "intel-qwen3-6-35b-a3b-int4-autoround")
            .served_model
            .as_deref(),
        Some("Intel/Qwen3.6-35B-A3B-int4-AutoRound")
    );
    assert_eq!(
        names(&c.snapshot.routes, |r| &r.name),
        [
            "claude-sonnet-4-20250514",
            "claude-3-5-sonnet-20241022",
            "claude-3-opus-20240229"
        ]
    );
    // Two Claude names share one backend.
    for r in ["claude-sonnet-4-20250514", "claude-3-5-sonnet-20241022"] {
        assert_eq!(
            route(&c, r).backend.as_deref(),
            Some("intel-qwen3-6-35b-a3b-int4-autoround")
        );
    }
    assert_eq!(
        route(&c, "claude-3-opus-20240229").backend.as_deref(),
        Some("intel-qwen3-5-27b-int4-autoround")
    );
    assert_eq!(
        route(&c, "claude-3-opus-20240229").timeouts,
        Timeouts::default()
    );
    assert!(c.snapshot.keys.is_empty());
    assert_eq!(warnings_at(&c, "litellm_settings.set_verbose").len(), 1);
    let placeholders: Vec<&String> = c
        .warnings
        .iter()
        .filter(|w| w.contains(".api_key: looks like a placeholder"))
        .collect();
    assert_eq!(placeholders.len(), 3, "{:?}", c.warnings);
    assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);
}

#[test]
fn spark_gpt_oss_fixture() {
    let c = fixture("spark-gpt-oss.yaml");
    assert_eq!(
        names(&c.snapshot.backends, |b| &b.name),
        ["openai-gpt-oss-120b"]
    );
    let b = &c.snapshot.backends[0];
    // hosted_vllm/ keeps the rest verbatim, `openai/` included.
    assert_eq!(b.served_model.as_deref(), Some("openai/gpt-oss-120b"));
    assert_eq!(b.protocol, Protocol::Openai);
    assert_eq!(b.base_url, "http://host.docker.internal:8000/v1");
    assert_eq!(b.api_key, None, "`api_key: dummy` is a placeholder");
    assert_eq!(c.snapshot.routes.len(), 1);
    let r = &c.snapshot.routes[0];
    assert_eq!(r.name, "openai/gpt-oss-120b");
    assert_eq!(r.models, ["openai/gpt-oss-120b"]);
    assert_eq!(r.backend.as_deref(), Some("openai-gpt-oss-120b"));
    assert_eq!(c.snapshot.keys.len(), 1);
    assert_eq!(
        c.snapshot.keys[0].sha256,
        "88dc28d0f030c55ed4ab77ed8faf098196cb1c05df778539800c9f1243fe6b4b"
    );
    let callbacks = warnings_at(&c, "litellm_settings.callbacks");
    assert_eq!(callbacks.len(), 1, "{:?}", c.warnings);
    assert!(callbacks[0].contains("litellm_tool_fix.litellm_tool_fix"));
    assert_eq!(
        warnings_at(&c, "model_list[0].litellm_params.api_key").len(),
        1
    );
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
}

#[test]
fn provider_prefixes_and_the_name_sent() {
    let c = conv_env(
        r#"
model_list:
  - model_name: a
    litellm_params: {model: openai/openai/gpt-oss-20b, api_base: "http://h:8000/v1/"}
  - model_name: b
    litellm_params: {model: hosted_vllm/meta-llama/Llama-3.1-8B, api_base: "http://h:8001/v1"}
  - model_name: c
    litellm_params: {model: anthropic/claude-sonnet-4-5}
  - model_name: d
    litellm_params: {model: anthropic/qwen3, api_base: "http://vllm:8000", api_key: os.environ/VLLM_KEY}
  - model_name: e
    litellm_params: {model: anthropic/qwen3, api_base: "http://vllm:9000/v1/messages"}
  - model_name: f
    litellm_params: {model: my-model, custom_llm_provider: hosted_vllm, api_base: "http://h:8002/v1"}
  - model_name: g
    litellm_params: {model: gpt-4o}
  - model_name: h
    litellm_params: {model: claude-3-5-haiku-latest}
  - model_name: i
    litellm_params: {model: groq/llama-3.3-70b-versatile}
  - model_name: j
    litellm_params: {model: ollama_chat/qwen3:32b, api_base: "http://spark:11434"}
  - model_name: k
    litellm_params: {model: openrouter/qwen/qwen3-coder, api_key: os.environ/OR_KEY}
"#,
        &[
            ("ANTHROPIC_API_KEY", "a"),
            ("OPENAI_API_KEY", "o"),
            ("VLLM_KEY", "v"),
            ("GROQ_API_KEY", "g"),
            ("OR_KEY", "r"),
        ],
    );
    let served = |name: &str| {
        let r = route(&c, name);
        let b = backend(&c, r.backend.as_deref().unwrap());
        (
            b.served_model.clone().unwrap(),
            b.base_url.clone(),
            b.protocol,
            b.api_key.clone(),
        )
    };
    // openai/ strips exactly one prefix.
    assert_eq!(
        served("a"),
        (
            "openai/gpt-oss-20b".into(),
            "http://h:8000/v1".into(),
            Protocol::Openai,
            None
        )
    );
    assert_eq!(
        served("b"),
        (
            "meta-llama/Llama-3.1-8B".into(),
            "http://h:8001/v1".into(),
            Protocol::Openai,
            None
        )
    );
    // anthropic/: LiteLLM's default host and key variable, `/v1` added.
    assert_eq!(
        served("c"),
        (
            "claude-sonnet-4-5".into(),
            "https://api.anthropic.com/v1".into(),
            Protocol::Anthropic,
            env_key("ANTHROPIC_API_KEY")
        )
    );
    assert_eq!(
        served("d"),
        (
            "qwen3".into(),
            "http://vllm:8000/v1".into(),
            Protocol::Anthropic,
            env_key("VLLM_KEY")
        )
    );
    assert_eq!(served("e").1, "http://vllm:9000/v1");
    assert_eq!(served("f").0, "my-model");
    assert_eq!(
        served("g"),
        (
            "gpt-4o".into(),
            "https://api.openai.com/v1".into(),
            Protocol::Openai,
            env_key("OPENAI_API_KEY")
        )
    );
    assert_eq!(served("h").2, Protocol::Anthropic);
    // OpenAI-compatible hosted APIs: LiteLLM's base and key variable; Ollama's /v1 API.
    assert_eq!(
        served("i"),
        (
            "llama-3.3-70b-versatile".into(),
            "https://api.groq.com/openai/v1".into(),
            Protocol::Openai,
            env_key("GROQ_API_KEY")
        )
    );
    assert_eq!(
        served("j"),
        (
            "qwen3:32b".into(),
            "http://spark:11434/v1".into(),
            Protocol::Openai,
            None
        )
    );
    assert_eq!(
        served("k"),
        (
            "qwen/qwen3-coder".into(),
            "https://openrouter.ai/api/v1".into(),
            Protocol::Openai,
            env_key("OR_KEY")
        )
    );
    assert_eq!(
        warnings_at(&c, "model_list[6].litellm_params.model").len(),
        1
    );
    assert_eq!(
        warnings_at(&c, "model_list[7].litellm_params.model").len(),
        1
    );
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
}

#[test]
fn default_bases_come_from_litellm_env_vars() {
    let yaml = "model_list:\n  - model_name: a\n    litellm_params: {model: hosted_vllm/m}\n  - model_name: b\n    litellm_params: {model: anthropic/m}\n";
    let c = conv_env(
        yaml,
        &[
            ("HOSTED_VLLM_API_BASE", "http://vllm:8000/v1"),
            ("ANTHROPIC_BASE_URL", "https://proxy.example/"),
            ("ANTHROPIC_API_KEY", "sk-ant"),
        ],
    );
    assert_eq!(c.snapshot.backends[0].base_url, "http://vllm:8000/v1");
    assert_eq!(c.snapshot.backends[1].base_url, "https://proxy.example/v1");
    assert_eq!(c.snapshot.backends[1].api_key, env_key("ANTHROPIC_API_KEY"));
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    // Without the variables nothing can be reached: an error listing both reasons.
    let err = convert_with_env(yaml, &no_env).unwrap_err();
    let LitellmError::NothingServable(reasons) = &err else {
        panic!("{err}");
    };
    assert_eq!(
        reasons,
        &[
            "model_list[0].litellm_params.api_base: missing: `hosted_vllm/` needs the server's \
             URL, e.g. http://host:8000/v1 (or HOSTED_VLLM_API_BASE); deployment of `a` skipped",
            "model_list[1].litellm_params.api_key: not set, and environment variable \
             ANTHROPIC_API_KEY (LiteLLM's default for `anthropic/`) is not set; deployment of \
             `b` skipped",
        ]
    );
}

#[test]
fn every_unservable_entry_is_skipped_with_its_path_and_reason() {
    let yaml = r#"
model_list:
  - model_name: ok
    litellm_params: {model: openai/x, api_base: 'http://h/v1'}
  - model_name: bad
    litellm_params: {model: bedrock/anthropic.claude-v2}
  - model_name: v
    litellm_params: {model: vllm/qwen, api_base: 'http://h/v1'}
  - model_name: n
    litellm_params: {model: my-local-model, api_base: 'http://h/v1'}
  - model_name: m
    litellm_params: {api_base: 'http://h/v1'}
  - model_name: p
  - litellm_params: {model: openai/x}
  - model_name: u
    litellm_params: {model: openai/x, api_base: 'localhost:8000/v1'}
  - model_name: e
    litellm_params: {model: openai/x, api_base: os.environ/UNSET_BASE}
  - model_name: c
    litellm_params: {model: x, custom_llm_provider: azure}
  - just-a-string
  - model_name: k
    litellm_params: {model: openai/x, api_base: 'http://h/v1', api_key: os.environ/UNSET_KEY}
  - model_name: emb
    litellm_params: {model: openai/text-embedding-3-small}
  - model_name: ok
    litellm_params: {model: hosted_vllm/y, api_base: 'http://i/v1', rpm: 5}
    model_info: {mode: embedding}
"#;
    let c = conv(yaml);
    let expect = [
        ("model_list[1].litellm_params.model", "`bedrock/`", "bad"),
        (
            "model_list[2].litellm_params.model",
            "hosted_vllm/qwen",
            "v",
        ),
        (
            "model_list[3].litellm_params.model",
            "no provider prefix",
            "n",
        ),
        ("model_list[4].litellm_params.model", "missing", "m"),
        (
            "model_list[5].litellm_params",
            "missing or not a mapping",
            "p",
        ),
        ("model_list[6].model_name", "missing or empty", ""),
        ("model_list[7].litellm_params.api_base", "http://", "u"),
        (
            "model_list[8].litellm_params.api_base",
            "environment variable UNSET_BASE is not set",
            "e",
        ),
        (
            "model_list[9].litellm_params.custom_llm_provider",
            "`azure`",
            "c",
        ),
        ("model_list[10]", "expected a mapping", ""),
        (
            "model_list[11].litellm_params.api_key",
            "environment variable UNSET_KEY is not set",
            "k",
        ),
        (
            "model_list[12].litellm_params.model",
            "an embedding model",
            "emb",
        ),
        ("model_list[13].model_info.mode", "`mode: embedding`", "ok"),
    ];
    for (path, why, name) in expect {
        let w: Vec<&str> = warnings_at(&c, &format!("{path}:"));
        assert_eq!(w.len(), 1, "{path}: {:?}", c.warnings);
        assert!(w[0].contains(why), "{}", w[0]);
        let tail = if name.is_empty() {
            "; deployment skipped".to_owned()
        } else {
            format!("; deployment of `{name}` skipped")
        };
        assert!(w[0].ends_with(&tail), "{}", w[0]);
    }
    // The skipped entry's own settings are not reported (rpm of model_list[13]).
    assert!(warnings_at(&c, "model_list[13].litellm_params.rpm").is_empty());
    // Groups left empty are named once each; `ok` keeps its servable deployment.
    let dropped: Vec<&String> = c
        .warnings
        .iter()
        .filter(|w| w.contains("has no servable deployment"))
        .collect();
    assert_eq!(dropped.len(), 10, "{dropped:#?}");
    assert_eq!(
        c.warnings.len(),
        expect.len() + dropped.len(),
        "{:?}",
        c.warnings
    );
    assert_eq!(names(&c.snapshot.routes, |r| &r.name), ["ok"]);
    assert_eq!(route(&c, "ok").backend.as_deref(), Some("x"));
    c.snapshot.validate().unwrap();
}

#[test]
fn document_errors() {
    let Err(LitellmError::Yaml(message)) = convert_with_env("model_list: [", &no_env) else {
        panic!("expected a YAML error");
    };
    assert!(message.contains("line"), "{message}");
    assert!(matches!(
        convert_with_env("", &no_env),
        Err(LitellmError::NoModelList)
    ));
    assert!(matches!(
        convert_with_env("- a\n- b\n", &no_env),
        Err(LitellmError::NotAMapping)
    ));
    for yaml in [
        "litellm_settings: {drop_params: true}\n",
        "model_list: []\n",
        "model_list: {a: b}\n",
    ] {
        assert!(
            matches!(
                convert_with_env(yaml, &no_env),
                Err(LitellmError::NoModelList)
            ),
            "{yaml}"
        );
    }
    let err = convert_with_env("model_list:\n  - model_name: x\n", &no_env).unwrap_err();
    assert_eq!(
        err.to_string(),
        "nothing in model_list can be served by Switchyard, so the proxy would have no route; \
         every deployment was skipped:\n  - model_list[0].litellm_params: missing or not a \
         mapping; deployment of `x` skipped"
    );
}

#[test]
fn yaml_errors_never_quote_values() {
    // A duplicate key and a type error: serde_yaml's messages quote the offending text.
    for yaml in [
        "general_settings:\n  master_key: sk-secret-master\n  master_key: sk-secret-master\nmodel_list: []\n",
        "model_list:\n  - model_name: a\n    litellm_params: {api_key: \"sk-secret-master\n",
        "a: &x sk-secret-master\nb: *y\n",
        "general_settings: {master_key: sk-secret-master\n",
    ] {
        let err = convert_with_env(yaml, &no_env).unwrap_err();
        let text = err.to_string();
        assert!(matches!(err, LitellmError::Yaml(_)), "{text}");
        assert!(!text.contains("sk-secret"), "{text}");
        assert!(text.contains("line"), "{text}");
    }
    assert_eq!(
        redact_quoted(r#"invalid type: string "sk-1", expected ':' at line 2 column 3"#),
        r#"invalid type: string "…", expected ':' at line 2 column 3"#
    );
    assert_eq!(redact_quoted("unknown variant `abc"), "unknown variant `…");
}

#[test]
fn same_name_differing_only_in_api_base_becomes_endpoints() {
    let c = conv(
        r#"
model_list:
  - model_name: coder
    litellm_params: {model: hosted_vllm/qwen3-coder, api_base: "http://vllm-0:8000/v1"}
  - model_name: coder
    litellm_params: {model: hosted_vllm/qwen3-coder, api_base: "http://vllm-1:8000/v1"}
  - model_name: coder
    litellm_params: {model: hosted_vllm/qwen3-coder, api_base: "http://vllm-1:8000/v1/"}
"#,
    );
    assert_eq!(c.snapshot.backends.len(), 1);
    let b = &c.snapshot.backends[0];
    assert_eq!(b.base_url, "http://vllm-0:8000/v1");
    assert_eq!(
        b.endpoints,
        ["http://vllm-0:8000/v1", "http://vllm-1:8000/v1"]
    );
    assert_eq!(c.snapshot.routes[0].backend.as_deref(), Some("qwen3-coder"));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn same_name_with_different_deployments_becomes_weighted_targets() {
    let c = conv_env(
        r#"
model_list:
  - model_name: big
    litellm_params: {model: hosted_vllm/qwen3-235b, api_base: "http://a:8000/v1", weight: 3}
  - model_name: big
    litellm_params: {model: openai/qwen3-235b, api_base: "https://gw.example/v1", api_key: os.environ/GW_KEY, weight: 1}
  - model_name: rpm
    litellm_params: {model: hosted_vllm/m, api_base: "http://a:8000/v1", rpm: 600}
  - model_name: rpm
    litellm_params: {model: hosted_vllm/m, api_base: "http://b:8000/v1", rpm: 300}
  - model_name: plain
    litellm_params: {model: hosted_vllm/x, api_base: "http://a:8000/v1"}
  - model_name: plain
    litellm_params: {model: hosted_vllm/y, api_base: "http://a:8000/v1"}
"#,
        &[("GW_KEY", "k")],
    );
    let weights = |name: &str| -> Vec<(String, u32)> {
        let r = route(&c, name);
        assert_eq!(r.backend, None);
        r.targets
            .iter()
            .map(|t| (t.backend.clone(), t.weight))
            .collect()
    };
    assert_eq!(
        weights("big"),
        [
            ("qwen3-235b".to_string(), 3),
            ("qwen3-235b-2".to_string(), 1)
        ]
    );
    assert_eq!(backend(&c, "qwen3-235b-2").api_key, env_key("GW_KEY"));
    // Different weights: two backends, not one with endpoints.
    assert_eq!(
        weights("rpm"),
        [("m".to_string(), 600), ("m-2".to_string(), 300)]
    );
    assert_eq!(
        weights("plain"),
        [("x".to_string(), 1), ("y".to_string(), 1)]
    );
    assert_eq!(warnings_at(&c, "model_list[2].litellm_params.rpm").len(), 1);
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
}

#[test]
fn fractional_weights_are_scaled() {
    let c = conv(
        r#"
model_list:
  - model_name: m
    litellm_params: {model: hosted_vllm/a, api_base: "http://a/v1", weight: 0.9}
  - model_name: m
    litellm_params: {model: hosted_vllm/b, api_base: "http://a/v1", weight: 0.1}
  - model_name: m
    litellm_params: {model: hosted_vllm/c, api_base: "http://a/v1"}
"#,
    );
    let w: Vec<u32> = c.snapshot.routes[0]
        .targets
        .iter()
        .map(|t| t.weight)
        .collect();
    assert_eq!(w, [1000, 111, 0]);
}

#[test]
fn wildcard_passthrough_leaves_the_served_model_to_discovery() {
    let c = conv(
        r#"
model_list:
  - model_name: "*"
    litellm_params: {model: "openai/*", api_base: "http://vllm:8000/v1"}
  - model_name: "claude-*"
    litellm_params: {model: "hosted_vllm/qwen3", api_base: "http://vllm:8000/v1"}
"#,
    );
    let star = route(&c, "*");
    assert_eq!(star.models, ["*"]);
    let b = backend(&c, star.backend.as_deref().unwrap());
    assert_eq!(b.name, "openai-wildcard");
    assert_eq!(b.served_model, None);
    assert_eq!(route(&c, "claude-*").models, ["claude-*"]);
    let w = warnings_at(&c, "model_list[0].litellm_params.model");
    assert_eq!(w.len(), 1, "{:?}", c.warnings);
    assert!(w[0].contains("openai/*") && w[0].contains("exactly one model"));
    assert_eq!(c.warnings.len(), 1);
}

#[test]
fn model_names_are_escaped_except_for_the_litellm_wildcard() {
    for (name, other) in [("weird[1]?", "weird1x"), ("a{b,c}", "ab"), ("x\\y", "xy")] {
        let glob = globset::Glob::new(&glob_literal(name))
            .unwrap()
            .compile_matcher();
        assert!(glob.is_match(name), "{name} → {}", glob_literal(name));
        assert!(!glob.is_match(other), "{name} matched {other}");
    }
    let glob = globset::Glob::new(&glob_literal("claude-*"))
        .unwrap()
        .compile_matcher();
    assert!(glob.is_match("claude-opus-4-1"));
    let c = conv("model_list:\n  - model_name: 'q?'\n    litellm_params: {model: hosted_vllm/q, api_base: 'http://a/v1'}\n");
    assert_eq!(c.snapshot.routes[0].models, ["q[?]"]);
}

#[test]
fn fallbacks_star_defaults_and_unknown_names() {
    let c = conv(
        r#"
model_list:
  - model_name: a
    litellm_params: {model: hosted_vllm/a, api_base: "http://a/v1"}
  - model_name: b
    litellm_params: {model: hosted_vllm/b, api_base: "http://b/v1"}
  - model_name: c
    litellm_params: {model: hosted_vllm/c, api_base: "http://c/v1"}
  - model_name: c2
    litellm_params: {model: hosted_vllm/c, api_base: "http://c/v1"}
router_settings:
  num_retries: 0
  fallbacks:
    - a: [b, nope, c2, c]
    - ghost: [a]
    - "*": [c]
  context_window_fallbacks: [{a: [b]}]
"#,
    );
    // c2 and c share a backend: it is listed once.
    assert_eq!(route(&c, "a").fallbacks, ["b", "c"]);
    // num_retries 0: one attempt on each backend of the plan.
    assert_eq!(route(&c, "a").retries.attempts, 1);
    assert_eq!(route(&c, "b").fallbacks, ["c"]);
    // The catch-all does not make c fall back to itself, nor c2 to its own backend.
    assert!(route(&c, "c").fallbacks.is_empty());
    assert!(route(&c, "c2").fallbacks.is_empty());
    assert_eq!(route(&c, "c").retries.attempts, 1);
    assert_eq!(
        warnings_at(&c, "router_settings.fallbacks[0].a"),
        ["router_settings.fallbacks[0].a: no model_list entry named `nope`; skipped"]
    );
    assert_eq!(
        warnings_at(&c, "router_settings.fallbacks[1].ghost"),
        ["router_settings.fallbacks[1].ghost: no model_list entry named `ghost`; ignored"]
    );
    // context_window_fallbacks → contextFallbacks of that route only.
    assert_eq!(route(&c, "a").context_fallbacks, ["b"]);
    assert!(route(&c, "b").context_fallbacks.is_empty());
    assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
}

#[test]
fn litellm_settings_fallbacks_and_router_override() {
    let c = conv(
        r#"
model_list:
  - model_name: a
    litellm_params: {model: hosted_vllm/a, api_base: "http://a/v1"}
  - model_name: b
    litellm_params: {model: hosted_vllm/b, api_base: "http://b/v1"}
litellm_settings:
  default_fallbacks: [b]
  num_retries: 5
router_settings:
  num_retries: 1
"#,
    );
    assert_eq!(route(&c, "a").fallbacks, ["b"]);
    assert_eq!(route(&c, "a").retries.attempts, 2);
    assert_eq!(route(&c, "b").retries.attempts, 2);
    assert_eq!(
        c.warnings,
        ["litellm_settings.num_retries: overridden by `router_settings.num_retries`"]
    );
}

#[test]
fn timeouts_retries_and_their_precedence() {
    let c = conv(
        r#"
model_list:
  - model_name: own
    litellm_params: {model: hosted_vllm/a, api_base: "http://a/v1", timeout: 7200, stream_timeout: 30, num_retries: 4}
  - model_name: router
    litellm_params: {model: hosted_vllm/b, api_base: "http://b/v1"}
router_settings:
  timeout: 45.5
  retry_after: 3
litellm_settings:
  request_timeout: 600
"#,
    );
    let own = route(&c, "own");
    assert_eq!(own.timeouts.first_token_ms, 30_000);
    assert_eq!(own.timeouts.idle_ms, 7_200_000);
    assert_eq!(own.timeouts.total_ms, 7_200_000);
    assert_eq!(own.retries.attempts, 5);
    assert_eq!(own.retries.backoff_ms, 3_000);
    assert_eq!(own.retries.max_backoff_ms, 3_000);
    let router = route(&c, "router");
    assert_eq!(router.timeouts.first_token_ms, 45_500);
    assert_eq!(router.timeouts.idle_ms, 45_500);
    assert_eq!(router.retries.attempts, 3);
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
}

#[test]
fn parameters_drop_extra_body_and_model_info() {
    let c = conv_env(
        r#"
model_list:
  - model_name: a
    litellm_params:
      model: hosted_vllm/qwen3
      api_base: "http://a/v1"
      additional_drop_params: [top_k]
      extra_body: {chat_template_kwargs: {enable_thinking: false}}
      temperature: 0.7
      drop_params: false
    model_info: {max_input_tokens: 131072, input_cost_per_token: 0.0}
  - model_name: b
    litellm_params: {model: anthropic/claude-x, top_p: 0.9}
litellm_settings:
  drop_params: true
  additional_drop_params: [logit_bias]
"#,
        &[("ANTHROPIC_API_KEY", "k")],
    );
    let a = backend(&c, "qwen3");
    assert_eq!(a.parameters.drop, ["top_k", "logit_bias"]);
    assert_eq!(
        serde_json::to_value(&a.parameters.extra_body).unwrap(),
        serde_json::json!({"chat_template_kwargs": {"enable_thinking": false}, "temperature": 0.7})
    );
    assert_eq!(a.context_window, Some(131_072));
    let b = backend(&c, "claude-x");
    assert_eq!(b.parameters.drop, ["logit_bias"]);
    for path in [
        "model_list[0].litellm_params.temperature",
        "model_list[0].litellm_params.drop_params",
        "model_list[0].model_info.input_cost_per_token",
        "model_list[1].litellm_params.top_p",
        "model_list[1].litellm_params: parameters.extraBody",
    ] {
        assert_eq!(warnings_at(&c, path).len(), 1, "{path}: {:?}", c.warnings);
    }
    assert_eq!(c.warnings.len(), 5, "{:?}", c.warnings);
}

#[test]
fn unknown_settings_are_listed_without_their_values() {
    let c = conv(
        r#"
model_list:
  - model_name: a
    litellm_params:
      model: hosted_vllm/a
      api_base: "http://a/v1"
      api_version: "2024-01-01"
      max_retries: 3
    tpm: 100
    model_info: {id: abc}
litellm_settings:
  success_callback: [langfuse]
  failure_callback: langfuse
  cache: true
  json_logs: true
  max_budget: 100
router_settings:
  routing_strategy: latency-based-routing
  redis_password: hunter2-redis
  enable_pre_call_checks: true
general_settings:
  database_url: postgresql://user:pg-secret@db/litellm
  alerting: [slack]
  store_model_in_db: true
guardrails: []
mcp_servers: {}
"#,
    );
    for path in [
        "guardrails",
        "mcp_servers",
        "litellm_settings.success_callback",
        "litellm_settings.failure_callback",
        "litellm_settings.cache",
        "litellm_settings.json_logs",
        "litellm_settings.max_budget",
        "router_settings.routing_strategy",
        "router_settings.redis_password",
        "router_settings.enable_pre_call_checks",
        "general_settings.database_url",
        "general_settings.alerting",
        "general_settings.store_model_in_db",
        "model_list[0].tpm",
        "model_list[0].model_info.id",
        "model_list[0].litellm_params.api_version",
        "model_list[0].litellm_params.max_retries",
    ] {
        assert_eq!(warnings_at(&c, path).len(), 1, "{path}: {:?}", c.warnings);
    }
    assert_eq!(c.warnings.len(), 17, "{:?}", c.warnings);
    assert!(warnings_at(&c, "litellm_settings.success_callback")[0].contains("langfuse"));
    let all = c.warnings.join("\n");
    for secret in ["hunter2-redis", "pg-secret", "postgresql://"] {
        assert!(!all.contains(secret), "{secret} printed");
    }
}

#[test]
fn master_key_from_the_environment() {
    let yaml = "model_list:\n  - model_name: a\n    litellm_params: {model: hosted_vllm/a, api_base: 'http://a/v1'}\ngeneral_settings:\n  master_key: os.environ/LITELLM_MASTER_KEY\n";
    let c = conv_env(yaml, &[("LITELLM_MASTER_KEY", "from-env-master")]);
    assert_eq!(
        c.snapshot.keys[0].sha256,
        "6f999b3b04600b1c685fee9d6551283bfa475756a426843bcad89a798ef8c120"
    );
    assert_eq!(warnings_at(&c, "general_settings.master_key").len(), 1);
    assert!(!c.warnings.join("\n").contains("from-env-master"));

    // A config that asks for a key never runs open: unset, empty or not a string is an error.
    for vars in [&[][..], &[("LITELLM_MASTER_KEY", "")][..]] {
        let err = convert_with_env(yaml, &|n| {
            vars.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.to_string())
        })
        .unwrap_err();
        assert!(matches!(err, LitellmError::MasterKey(_)), "{err}");
        let text = err.to_string();
        assert!(
            text.starts_with(
                "general_settings.master_key: environment variable LITELLM_MASTER_KEY is not set"
            ),
            "{text}"
        );
    }
    for value in ["''", "[a, b]"] {
        let yaml = yaml.replace("os.environ/LITELLM_MASTER_KEY", value);
        let err = convert_with_env(&yaml, &no_env).unwrap_err();
        assert!(matches!(err, LitellmError::MasterKey(_)), "{value}: {err}");
    }
    // `master_key: null` asks for nothing.
    let c = conv(&yaml.replace("os.environ/LITELLM_MASTER_KEY", "null"));
    assert!(c.snapshot.keys.is_empty());
    // Even when nothing else can be served, the missing key is reported first.
    let none = "model_list:\n  - model_name: a\n    litellm_params: {model: bedrock/x}\ngeneral_settings:\n  master_key: os.environ/K\n";
    assert!(matches!(
        convert_with_env(none, &no_env),
        Err(LitellmError::MasterKey(_))
    ));
}

#[test]
fn environment_variables_feed_secrets_and_lookups() {
    let c = conv(
        r#"
environment_variables:
  GW_KEY: gw-secret-value
  MASTER: env-master
  VLLM_BASE: "http://vllm:8000/v1"
  LANGFUSE_SECRET_KEY: lf-secret
model_list:
  - model_name: a
    litellm_params: {model: openai/a, api_base: os.environ/VLLM_BASE, api_key: os.environ/GW_KEY}
general_settings:
  master_key: os.environ/MASTER
"#,
    );
    let b = &c.snapshot.backends[0];
    assert_eq!(b.base_url, "http://vllm:8000/v1");
    assert_eq!(b.api_key, env_key("GW_KEY"));
    assert_eq!(c.secret_env.len(), 1);
    assert_eq!(c.secret_env["GW_KEY"].expose(), "gw-secret-value");
    assert_eq!(c.snapshot.keys[0].sha256, sha256_hex("env-master"));
    let w = warnings_at(&c, "environment_variables");
    assert_eq!(w.len(), 1, "{:?}", c.warnings);
    assert!(w[0].contains("GW_KEY") && w[0].contains("LANGFUSE_SECRET_KEY"));
    let all = format!("{}\n{}", c.warnings.join("\n"), c.to_yaml());
    for secret in ["gw-secret-value", "env-master", "lf-secret"] {
        assert!(!all.contains(secret), "{secret} printed");
    }
}

#[test]
fn literal_keys_share_one_variable_per_value() {
    let c = conv(
        r#"
model_list:
  - model_name: a
    litellm_params: {model: openai/a, api_base: "http://h/v1", api_key: sk-real-1}
  - model_name: b
    litellm_params: {model: openai/b, api_base: "http://h/v1", api_key: sk-real-1}
  - model_name: c
    litellm_params: {model: openai/c, api_base: "http://h/v1", api_key: sk-real-2}
  - model_name: d
    litellm_params: {model: openai/d, api_base: "http://h/v1", api_key: EMPTY}
"#,
    );
    assert_eq!(backend(&c, "a").api_key, env_key("SWITCHYARD_A_API_KEY"));
    assert_eq!(backend(&c, "b").api_key, env_key("SWITCHYARD_A_API_KEY"));
    assert_eq!(backend(&c, "c").api_key, env_key("SWITCHYARD_C_API_KEY"));
    assert_eq!(backend(&c, "d").api_key, None);
    assert_eq!(
        c.secret_env.keys().collect::<Vec<_>>(),
        ["SWITCHYARD_A_API_KEY", "SWITCHYARD_C_API_KEY"]
    );
    assert_eq!(
        format!("{:?}", c.secret_env["SWITCHYARD_A_API_KEY"]),
        "SecretValue(***)"
    );
    assert!(!format!("{c:?}").contains("sk-real"));
}

#[test]
fn aliases_outliers_and_server_limits() {
    let c = conv(
        r#"
model_list:
  - model_name: claude-sonnet-4-5
    litellm_params: {model: hosted_vllm/qwen3, api_base: "http://a/v1"}
router_settings:
  model_group_alias:
    claude-3-7-sonnet-latest: claude-sonnet-4-5
    claude-opus-4: {model: claude-sonnet-4-5, hidden: true}
    missing: nowhere
  allowed_fails: 5
  cooldown_time: 120
  routing_strategy: least-busy
general_settings:
  max_request_size_mb: 64
"#,
    );
    assert_eq!(
        c.snapshot.routes[0].models,
        [
            "claude-sonnet-4-5",
            "claude-3-7-sonnet-latest",
            "claude-opus-4"
        ]
    );
    let o = &c.snapshot.backends[0].outlier;
    assert_eq!(
        (
            o.consecutive_failures,
            o.base_ejection_ms,
            o.max_ejection_ms
        ),
        (5, 120_000, 120_000)
    );
    assert_eq!(c.snapshot.server.max_body_bytes, 64 * 1024 * 1024);
    for path in [
        "router_settings.model_group_alias.claude-opus-4",
        "router_settings.model_group_alias.missing",
        "router_settings.allowed_fails",
        "router_settings.cooldown_time",
    ] {
        assert_eq!(warnings_at(&c, path).len(), 1, "{path}: {:?}", c.warnings);
    }
    assert_eq!(c.warnings.len(), 4, "{:?}", c.warnings);
}

#[test]
fn compact_yaml_keeps_only_what_differs_from_defaults() {
    let c = fixture("gateway-fallbacks.yaml");
    let yaml = c.to_yaml();
    assert!(!yaml.contains("thinking:"), "{yaml}");
    assert!(!yaml.contains("server:"), "{yaml}");
    assert!(yaml.contains("baseEjectionMs: 30000"), "{yaml}");
    assert!(!yaml.contains("consecutiveFailures"), "{yaml}");
    assert!(yaml.contains("firstTokenMs: 600000"), "{yaml}");
    assert!(
        !yaml.contains("attempts:"),
        "3 attempts is the default: {yaml}"
    );
    let top: Vec<&str> = yaml
        .lines()
        .filter(|l| !l.starts_with([' ', '-']))
        .map(|l| l.split(':').next().unwrap())
        .collect();
    assert_eq!(top, ["version", "backends", "routes", "keys"]);
    assert!(
        yaml.find("firstTokenMs").unwrap() < yaml.find("idleMs").unwrap(),
        "field order kept: {yaml}"
    );
    assert_round_trips(&c);
}

#[test]
fn fallback_keys_matched_only_by_a_glob_get_their_own_route() {
    let c = conv(
        r#"
model_list:
  - model_name: claude-*
    litellm_params: {model: hosted_vllm/qwen3-coder, api_base: "http://spark:8000/v1", timeout: 900}
  - model_name: backup
    litellm_params: {model: hosted_vllm/qwen3-30b, api_base: "http://backup:8000/v1"}
  - model_name: long
    litellm_params: {model: hosted_vllm/qwen3-1m, api_base: "http://long:8000/v1"}
  - model_name: gone
    litellm_params: {model: vertex_ai/gemini-2.5-pro}
router_settings:
  num_retries: 1
  fallbacks:
    - claude-sonnet-4-5: [backup, gone]
    - claude-sonnet-4-5: [long]
    - gone: [backup]
    - "*": [long]
  default_fallbacks: [backup]
  context_window_fallbacks:
    - claude-opus-4-1: [long]
    - claude-*: [backup]
  model_group_alias: {old: gone}
"#,
    );
    assert_eq!(
        names(&c.snapshot.routes, |r| &r.name),
        [
            "claude-*",
            "backup",
            "long",
            "claude-sonnet-4-5",
            "claude-opus-4-1"
        ]
    );
    let glob = route(&c, "claude-*");
    let sonnet = route(&c, "claude-sonnet-4-5");
    assert_eq!(sonnet.models, ["claude-sonnet-4-5"]);
    // A copy of the glob group's route: same backend, timeouts and retries.
    assert_eq!(sonnet.backend, glob.backend);
    assert_eq!(sonnet.timeouts, glob.timeouts);
    assert_eq!(sonnet.timeouts.idle_ms, 900_000);
    assert_eq!(sonnet.retries.attempts, 2);
    // Its own entry (the first one wins); the dropped group is left out.
    assert_eq!(sonnet.fallbacks, ["qwen3-30b"]);
    // default_fallbacks is LiteLLM's last "*" entry: it replaces the explicit "*".
    assert_eq!(glob.fallbacks, ["qwen3-30b"]);
    assert_eq!(route(&c, "long").fallbacks, ["qwen3-30b"]);
    assert!(route(&c, "backup").fallbacks.is_empty());
    // Context fallbacks: own entry, else the glob parent's.
    assert_eq!(route(&c, "claude-opus-4-1").context_fallbacks, ["qwen3-1m"]);
    assert_eq!(sonnet.context_fallbacks, ["qwen3-30b"]);
    assert_eq!(glob.context_fallbacks, ["qwen3-30b"]);
    assert!(route(&c, "backup").context_fallbacks.is_empty());
    let opus = route(&c, "claude-opus-4-1");
    assert_eq!(opus.fallbacks, glob.fallbacks);
    for (path, text) in [
        (
            "model_list[3].litellm_params.model",
            "`vertex_ai/` is not supported",
        ),
        (
            "model_list[3].model_name",
            "`gone` has no servable deployment",
        ),
        (
            "router_settings.fallbacks[0].claude-sonnet-4-5",
            "`gone` has no servable deployment; skipped",
        ),
        (
            "router_settings.fallbacks[1].claude-sonnet-4-5",
            "an earlier entry",
        ),
        (
            "router_settings.fallbacks[2].gone",
            "`gone` has no servable deployment; ignored",
        ),
        (
            "router_settings.model_group_alias.old",
            "`gone` has no servable deployment",
        ),
    ] {
        let w = warnings_at(&c, &format!("{path}:"));
        assert_eq!(w.len(), 1, "{path}: {:?}", c.warnings);
        assert!(w[0].contains(text), "{}", w[0]);
    }
    assert_eq!(c.warnings.len(), 6, "{:?}", c.warnings);
    c.snapshot.validate().unwrap();
}

#[test]
fn a_dropped_group_names_the_glob_route_that_serves_it() {
    let c = conv(
        r#"
model_list:
  - model_name: claude-opus-4-1
    litellm_params: {model: azure/gpt-4o, api_base: "https://x.openai.azure.com"}
  - model_name: claude-*
    litellm_params: {model: hosted_vllm/q, api_base: "http://q/v1"}
"#,
    );
    let w = warnings_at(&c, "model_list[0].model_name:");
    assert_eq!(w.len(), 1, "{:?}", c.warnings);
    assert!(
        w[0].contains("requests for it go to route `claude-*`"),
        "{}",
        w[0]
    );
}

#[test]
fn implicit_keys_of_local_servers_are_optional() {
    let c = conv(
        "model_list:\n  - model_name: a\n    litellm_params: {model: anthropic/qwen3, api_base: 'http://vllm:8000'}\n",
    );
    assert_eq!(c.snapshot.backends[0].api_key, None);
    let w = warnings_at(&c, "model_list[0].litellm_params.api_key:");
    assert_eq!(w.len(), 1, "{:?}", c.warnings);
    assert!(w[0].contains("ANTHROPIC_API_KEY") && w[0].contains("no key is sent"));
}

#[test]
fn non_chat_models_are_recognised() {
    use super::model::non_chat;
    for model in [
        "openai/text-embedding-3-large",
        "bedrock/amazon.titan-embed-text-v2:0",
        "ollama/nomic-embed-text",
        "cohere/rerank-english-v3.0",
        "openai/whisper-1",
        "openai/tts-1",
        "openai/gpt-4o-mini-tts",
        "openai/dall-e-3",
        "openai/omni-moderation-latest",
    ] {
        assert!(non_chat(None, model).is_some(), "{model}");
    }
    for model in [
        "hosted_vllm/Qwen/Qwen3-Coder-30B",
        "openai/gpt-oss-120b",
        "anthropic/claude-sonnet-4-5",
    ] {
        assert_eq!(non_chat(None, model), None, "{model}");
        assert_eq!(non_chat(Some("chat"), model), None, "{model}");
    }
    assert!(non_chat(Some("completion"), "openai/x").is_some());
}
