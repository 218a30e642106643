//! LiteLLM proxy config (`config.yaml`) → Switchyard [`RoutingSnapshot`].
//!
//! Pure: [`convert`] reads the YAML text (and, for `os.environ/NAME` values that must be known
//! at conversion time, the process environment; [`convert_with_env`] takes the lookup as an
//! argument) and returns the snapshot plus one warning for every setting that has no
//! Switchyard equivalent or only an approximate one. Nothing is ignored silently, and no
//! warning ever contains a secret value.
//!
//! # Mapping
//!
//! | LiteLLM | Switchyard |
//! |---|---|
//! | `model_list[].model_name` | one route per distinct name, `routes[].name` and `models` (`*` stays a glob; other glob characters are escaped) |
//! | `model: openai/NAME` | `protocol: openai`, `servedModel: NAME` (the one prefix is stripped: `openai/openai/x` sends `openai/x`) |
//! | `model: hosted_vllm/NAME` | `protocol: openai`, `servedModel: NAME` verbatim (`hosted_vllm/openai/gpt-oss-120b` sends `openai/gpt-oss-120b`) |
//! | `model: anthropic/NAME` | `protocol: anthropic`, `servedModel: NAME` |
//! | `custom_llm_provider` | the provider when `model` has no prefix |
//! | no prefix: `claude…` / `gpt-…`, `o1…`, `o3…`, `o4…`, `chatgpt-…` | inferred `anthropic` / `openai`, with a warning; any other unprefixed or unknown provider is an error |
//! | `model: PROVIDER/…*…` (wildcard passthrough) | `servedModel` unset (discovered from `GET /models`), warning: the client's name is not passed through |
//! | `api_base` (or `base_url`; may be `os.environ/NAME`, resolved now) | `baseUrl`; anthropic: LiteLLM appends `/v1/messages` to a host, so `baseUrl` is host + `/v1`; a trailing `/chat/completions` is cut (warning) |
//! | no `api_base` | openai: `$OPENAI_BASE_URL`/`$OPENAI_API_BASE` or `https://api.openai.com/v1`; anthropic: `$ANTHROPIC_API_BASE`/`$ANTHROPIC_BASE_URL` or `https://api.anthropic.com/v1`; hosted_vllm: `$HOSTED_VLLM_API_BASE`, else an error |
//! | `api_key: os.environ/NAME` | `apiKey: {env: NAME}` |
//! | `api_key:` literal | `apiKey: {env: SWITCHYARD_<BACKEND>_API_KEY}` + warning (value in [`Conversion::secret_env`], never in the snapshot or warnings) |
//! | `api_key:` placeholder (`none`, `dummy`, `EMPTY`, `fake`, …) | no `apiKey` + warning |
//! | no `api_key` | anthropic: `{env: ANTHROPIC_API_KEY}`; openai without `api_base`: `{env: OPENAI_API_KEY}` (LiteLLM's defaults); otherwise none |
//! | same `model_name` several times, differing only in `api_base` | one backend with `endpoints` |
//! | same `model_name` several times, otherwise | weighted `targets` (`weight`, else `rpm`, else `tpm`, as LiteLLM's simple-shuffle; else equal) |
//! | identical deployments under several names | one shared backend |
//! | `litellm_params.rpm` / `tpm` | load-balancing weight only, warning (not enforced) |
//! | `litellm_params.timeout` / `router_settings.timeout` / `litellm_settings.request_timeout` (first set wins) | `timeouts.firstTokenMs` and `idleMs` (LiteLLM hands it to the HTTP client as a per-read timeout, so a long stream is not cut); `totalMs` only grows to stay ≥ them |
//! | `stream_timeout` (entry or router) | `timeouts.firstTokenMs` |
//! | `num_retries` (entry, `router_settings`, `litellm_settings`; LiteLLM's default 2) | `retries.attempts = num_retries + 1` (per backend; each fallback gets its own attempts) |
//! | `retry_after` | `retries.backoffMs` |
//! | `fallbacks: [{a: [b, c]}]` (`router_settings` or `litellm_settings`), `"*"` key, `default_fallbacks` | `routes[a].fallbacks`: the backends of `b` then `c` |
//! | `context_window_fallbacks`, `content_policy_fallbacks` | warning |
//! | `allowed_fails`, `cooldown_time` | every backend's `outlier.consecutiveFailures`, `baseEjectionMs` (warning: approximation) |
//! | `routing_strategy` | `simple-shuffle`, `least-busy`: nothing to do; others: warning |
//! | `model_group_alias` | the alias is added to the group's route `models` |
//! | `drop_params: true` | nothing to do: Switchyard always drops fields a backend cannot take |
//! | `drop_params: false` | warning (Switchyard drops instead of rejecting) |
//! | `additional_drop_params` (entry or `litellm_settings`) | `parameters.drop` |
//! | `extra_body` | `parameters.extraBody` |
//! | `temperature`, `top_p`, `top_k`, … in `litellm_params` | `parameters.extraBody`, warning (overrides the client's value instead of defaulting it) |
//! | `model_info.max_input_tokens` | `contextWindow` |
//! | `general_settings.master_key` (literal or `os.environ/NAME` resolved now) | `keys: [{name: litellm-master-key, sha256}]`; unresolvable: warning, no key |
//! | `general_settings.max_request_size_mb` | `server.maxBodyBytes` |
//! | `environment_variables` | values referenced by `os.environ/NAME` go to [`Conversion::secret_env`]; warning naming them |
//! | callbacks, caching, logging, database, alerting, guardrails, budgets, anything else | warning naming the setting |

use serde_yaml::{Mapping, Value};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use switchyard_api::{
    Backend, ClientKey, FieldError, OutlierPolicy, ParameterPolicy, Protocol, RetryPolicy, Route,
    RoutingSnapshot, SecretRef, ServerSettings, SystemMessagePlacement, Target, ThinkingStyle,
    Timeouts,
};

/// Name of the client key made from `general_settings.master_key`.
pub const MASTER_KEY_NAME: &str = "litellm-master-key";

/// LiteLLM's way of naming an environment variable in a config value.
const ENV_PREFIX: &str = "os.environ/";
const OPENAI_DEFAULT_BASE: &str = "https://api.openai.com/v1";
const ANTHROPIC_DEFAULT_HOST: &str = "https://api.anthropic.com";
/// LiteLLM's router retries twice when nothing says otherwise.
const LITELLM_DEFAULT_RETRIES: u32 = 2;

/// Settings LiteLLM reads from either `router_settings` or `litellm_settings`.
const ROUTER_KEYS: &[&str] = &[
    "fallbacks",
    "default_fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "num_retries",
    "timeout",
    "stream_timeout",
    "retry_after",
    "allowed_fails",
    "cooldown_time",
    "model_group_alias",
    "routing_strategy",
];

/// Request parameters LiteLLM accepts as per-deployment defaults in `litellm_params`.
const SAMPLING_PARAMS: &[&str] = &[
    "temperature",
    "top_p",
    "top_k",
    "min_p",
    "presence_penalty",
    "frequency_penalty",
    "repetition_penalty",
    "seed",
    "stop",
];

/// The result of a conversion.
#[derive(Debug, Clone)]
pub struct Conversion {
    /// Valid (it passed [`RoutingSnapshot::validate`]) and free of secrets.
    pub snapshot: RoutingSnapshot,
    /// One line per setting that was not converted exactly, as `path: explanation`.
    pub warnings: Vec<String>,
    /// Environment variables the snapshot's `apiKey.env` names whose values the LiteLLM
    /// config itself carried (literal `api_key` values, and `environment_variables` entries
    /// referenced through `os.environ/NAME`). Never print these: `convert-litellm` shows
    /// only the names (they are in the warnings); `--litellm-config` can set them in the
    /// process environment before building the runtime so the config is served as it is.
    pub secret_env: BTreeMap<String, SecretValue>,
}

impl Conversion {
    /// The snapshot as the YAML `--config` reads, without the fields that only repeat their
    /// defaults (it deserializes to exactly [`Conversion::snapshot`]).
    pub fn to_yaml(&self) -> String {
        let mut doc = serde_yaml::to_value(&self.snapshot).expect("a snapshot serializes");
        let backend = serde_yaml::to_value(
            serde_yaml::from_str::<Backend>("{name: '', baseUrl: ''}").expect("backend template"),
        )
        .expect("backend serializes");
        let route = serde_yaml::to_value(
            serde_yaml::from_str::<Route>("{name: '', models: []}").expect("route template"),
        )
        .expect("route serializes");
        let key = serde_yaml::to_value(
            serde_yaml::from_str::<ClientKey>("{name: '', sha256: ''}").expect("key template"),
        )
        .expect("key serializes");
        let server = serde_yaml::to_value(ServerSettings::default()).expect("server serializes");
        if let Value::Mapping(root) = &mut doc {
            prune_field(root, &Value::from("server"), &server);
            for (field, template) in [("backends", &backend), ("routes", &route), ("keys", &key)] {
                if let Some(Value::Sequence(items)) = root.get_mut(field) {
                    for item in items {
                        prune(item, template);
                    }
                }
            }
        }
        serde_yaml::to_string(&doc).expect("a snapshot serializes")
    }
}

/// Removes from `value` every field equal to the same field of `default`, recursively.
fn prune(value: &mut Value, default: &Value) {
    let (Value::Mapping(map), Value::Mapping(defaults)) = (value, default) else {
        return;
    };
    let keys: Vec<Value> = map.keys().cloned().collect();
    for k in keys {
        if let Some(d) = defaults.get(&k) {
            prune_field(map, &k, d);
        }
    }
}

fn prune_field(map: &mut Mapping, key: &Value, default: &Value) {
    let Some(v) = map.get_mut(key) else {
        return;
    };
    if v == default {
        map.shift_remove(key);
        return;
    }
    prune(v, default);
    if matches!(v, Value::Mapping(m) if m.is_empty()) {
        map.shift_remove(key);
    }
}

/// A secret taken from the LiteLLM config. Its `Debug` never shows the value.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LitellmError {
    #[error("invalid YAML: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("not a LiteLLM proxy config: the document must be a mapping with a `model_list`")]
    NotAMapping,
    #[error(
        "no usable `model_list`: a LiteLLM proxy config needs a non-empty list of model entries"
    )]
    NoModelList,
    #[error("model_list[{index}] ({name}): {message}")]
    Entry {
        index: usize,
        /// The entry's `model_name`, or `<no model_name>`.
        name: String,
        message: String,
    },
    #[error("the converted snapshot is invalid:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

/// Converts a LiteLLM proxy config, reading `os.environ/NAME` values that are needed at
/// conversion time (a master key's hash, an `api_base`) from the process environment.
pub fn convert(yaml: &str) -> Result<Conversion, LitellmError> {
    convert_with_env(yaml, &|name| std::env::var(name).ok())
}

/// [`convert`] with an explicit environment lookup (tests, or a caller with its own
/// environment). The config's own `environment_variables` take precedence over it, as in
/// LiteLLM, which exports them at startup.
pub fn convert_with_env(
    yaml: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Conversion, LitellmError> {
    let mut root: Value = serde_yaml::from_str(yaml)?;
    root.apply_merge()?;
    let root = match root {
        Value::Mapping(m) => m,
        Value::Null => return Err(LitellmError::NoModelList),
        _ => return Err(LitellmError::NotAMapping),
    };
    Converter::new(env).run(&root)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Provider {
    Openai,
    HostedVllm,
    Anthropic,
}

impl Provider {
    fn from_name(name: &str) -> Option<Self> {
        match name {
            "openai" => Some(Self::Openai),
            "hosted_vllm" => Some(Self::HostedVllm),
            "anthropic" => Some(Self::Anthropic),
            _ => None,
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Openai => "openai",
            Self::HostedVllm => "hosted_vllm",
            Self::Anthropic => "anthropic",
        }
    }

    fn protocol(self) -> Protocol {
        match self {
            Self::Openai | Self::HostedVllm => Protocol::Openai,
            Self::Anthropic => Protocol::Anthropic,
        }
    }
}

/// One `model_list` entry, converted.
struct Deployment {
    model_name: String,
    /// `name` is empty until the backend is interned.
    backend: Backend,
    /// Source of the backend's name.
    hint: String,
    weight: Option<f64>,
    rpm: Option<f64>,
    tpm: Option<f64>,
    timeout: Option<f64>,
    stream_timeout: Option<f64>,
    num_retries: Option<u32>,
}

struct FallbackRule {
    path: String,
    from: String,
    to: Vec<String>,
}

/// `litellm_settings`, `router_settings` and `general_settings`, gathered.
#[derive(Default)]
struct Settings {
    additional_drop: Vec<String>,
    request_timeout: Option<f64>,
    timeout: Option<f64>,
    stream_timeout: Option<f64>,
    num_retries: Option<u32>,
    retry_after: Option<f64>,
    allowed_fails: Option<u32>,
    cooldown_time: Option<f64>,
    fallbacks: Vec<FallbackRule>,
    default_fallbacks: Option<(String, Vec<String>)>,
    aliases: Vec<(String, String, String)>,
    max_body_bytes: Option<usize>,
    master_key: Option<Value>,
}

impl Settings {
    fn outlier(&self) -> OutlierPolicy {
        let mut o = OutlierPolicy::default();
        if let Some(n) = self.allowed_fails {
            o.consecutive_failures = n.max(1);
        }
        if let Some(secs) = self.cooldown_time {
            o.base_ejection_ms = millis(secs);
            o.max_ejection_ms = o.max_ejection_ms.max(o.base_ejection_ms);
        }
        o
    }
}

struct Converter<'a> {
    env: &'a dyn Fn(&str) -> Option<String>,
    /// `environment_variables` of the config.
    config_env: BTreeMap<String, String>,
    warnings: Vec<String>,
    secret_env: BTreeMap<String, SecretValue>,
    backends: Vec<Backend>,
}

impl<'a> Converter<'a> {
    fn new(env: &'a dyn Fn(&str) -> Option<String>) -> Self {
        Self {
            env,
            config_env: BTreeMap::new(),
            warnings: Vec::new(),
            secret_env: BTreeMap::new(),
            backends: Vec::new(),
        }
    }

    fn warn(&mut self, path: impl fmt::Display, message: impl fmt::Display) {
        self.warnings.push(format!("{path}: {message}"));
    }

    fn unsupported(&mut self, path: impl fmt::Display) {
        self.warn(path, "not supported by Switchyard; ignored");
    }

    /// The config's `environment_variables`, then the process environment.
    fn lookup(&self, name: &str) -> Option<String> {
        self.config_env
            .get(name)
            .cloned()
            .or_else(|| (self.env)(name))
            .filter(|v| !v.is_empty())
    }

    fn run(mut self, root: &Mapping) -> Result<Conversion, LitellmError> {
        for (k, _) in root {
            let key = key_name(k);
            match key.as_str() {
                "model_list"
                | "litellm_settings"
                | "router_settings"
                | "general_settings"
                | "environment_variables" => {}
                _ => self.unsupported(key),
            }
        }
        if let Some(v) = root.get("environment_variables") {
            self.environment_variables(v);
        }
        let settings = self.settings(root);
        let list = match root.get("model_list") {
            Some(Value::Sequence(list)) if !list.is_empty() => list,
            _ => return Err(LitellmError::NoModelList),
        };

        // Entries grouped by model_name, in order of first appearance.
        let mut groups: Vec<(String, Vec<Deployment>)> = Vec::new();
        for (index, entry) in list.iter().enumerate() {
            let d = self.entry(index, entry, &settings)?;
            match groups.iter_mut().find(|(name, _)| *name == d.model_name) {
                Some((_, group)) => group.push(d),
                None => groups.push((d.model_name.clone(), vec![d])),
            }
        }

        let mut routes = Vec::with_capacity(groups.len());
        let mut retries = Vec::with_capacity(groups.len());
        for (name, group) in &groups {
            let (backend, targets) = self.place(group);
            let timeouts = self.timeouts(name, group, &settings);
            retries.push(
                max_of(group.iter().map(|d| d.num_retries))
                    .or(settings.num_retries)
                    .unwrap_or(LITELLM_DEFAULT_RETRIES),
            );
            let mut policy = RetryPolicy::default();
            if let Some(secs) = settings.retry_after {
                policy.backoff_ms = millis(secs);
                policy.max_backoff_ms = policy.max_backoff_ms.max(policy.backoff_ms);
            }
            routes.push(Route {
                name: name.clone(),
                models: vec![glob_literal(name)],
                backend,
                targets,
                rules: Vec::new(),
                fallbacks: Vec::new(),
                context_fallbacks: Vec::new(),
                retries: policy,
                timeouts,
                limits: Default::default(),
            });
        }
        self.fallbacks(&mut routes, &settings);
        // Switchyard counts attempts per backend of the plan, so each fallback gets its own.
        for (route, n) in routes.iter_mut().zip(retries) {
            route.retries.attempts = n.saturating_add(1);
        }
        self.aliases(&mut routes, &settings);
        let keys = self.master_key(settings.master_key.as_ref());
        self.report_environment();

        let mut server = ServerSettings::default();
        if let Some(bytes) = settings.max_body_bytes {
            server.max_body_bytes = bytes;
        }
        let snapshot = RoutingSnapshot {
            version: Some("litellm".into()),
            server,
            backends: self.backends,
            routes,
            keys,
        };
        snapshot.validate().map_err(LitellmError::Invalid)?;
        Ok(Conversion {
            snapshot,
            warnings: self.warnings,
            secret_env: self.secret_env,
        })
    }

    fn environment_variables(&mut self, v: &Value) {
        match v {
            Value::Null => {}
            Value::Mapping(m) => {
                for (k, v) in m {
                    let name = key_name(k);
                    match scalar(v) {
                        Some(value) => {
                            self.config_env.insert(name, value);
                        }
                        None => self.warn(
                            format!("environment_variables.{name}"),
                            "not a string; ignored",
                        ),
                    }
                }
            }
            _ => self.warn("environment_variables", "not a mapping; ignored"),
        }
    }

    /// Names the config's environment variables without their values.
    fn report_environment(&mut self) {
        if self.config_env.is_empty() {
            return;
        }
        let (used, unused): (Vec<&String>, Vec<&String>) = self
            .config_env
            .keys()
            .partition(|name| self.secret_env.contains_key(*name));
        let join = |names: &[&String]| {
            names
                .iter()
                .map(|n| n.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut message =
            String::from("LiteLLM exports these at startup; a snapshot holds no secret values.");
        if !used.is_empty() {
            message.push_str(&format!(
                " The snapshot reads {} from the environment: export them for switchyard-proxy.",
                join(&used)
            ));
        }
        if !unused.is_empty() {
            message.push_str(&format!(
                " Not used by anything converted: {}.",
                join(&unused)
            ));
        }
        self.warn("environment_variables", message);
    }

    fn settings(&mut self, root: &Mapping) -> Settings {
        let mut s = Settings::default();
        let mut from_litellm: BTreeSet<String> = BTreeSet::new();
        for section in ["litellm_settings", "router_settings", "general_settings"] {
            let map = match root.get(section) {
                None | Some(Value::Null) => continue,
                Some(Value::Mapping(m)) => m,
                Some(_) => {
                    self.warn(section, "not a mapping; ignored");
                    continue;
                }
            };
            for (k, v) in map {
                let key = key_name(k);
                let path = format!("{section}.{key}");
                if section != "general_settings" && ROUTER_KEYS.contains(&key.as_str()) {
                    if section == "litellm_settings" {
                        from_litellm.insert(key.clone());
                    } else if from_litellm.contains(&key) {
                        self.warn(
                            format!("litellm_settings.{key}"),
                            format!("overridden by `{path}`"),
                        );
                    }
                    self.router_setting(&mut s, &key, &path, v);
                    continue;
                }
                match (section, key.as_str()) {
                    ("litellm_settings", "drop_params") => {
                        if self.flag(v, &path) == Some(false) {
                            self.drop_params_false(&path);
                        }
                    }
                    ("litellm_settings", "additional_drop_params") => {
                        let names = self.string_list(v, &path);
                        s.additional_drop.extend(names);
                    }
                    ("litellm_settings", "request_timeout") => {
                        s.request_timeout = self.seconds(v, &path);
                    }
                    (
                        "litellm_settings",
                        "callbacks"
                        | "success_callback"
                        | "failure_callback"
                        | "service_callback"
                        | "input_callback"
                        | "audit_log_callbacks",
                    ) => {
                        let names = self.string_list(v, &path);
                        self.warn(
                            path,
                            format!(
                                "callback `{}` cannot run in Switchyard (no custom modules or \
                                 logging integrations); ignored. Switchyard's own fixes (tool calls \
                                 left in text, gpt-oss Harmony, Claude Code quirks), Prometheus \
                                 metrics and access log are built in",
                                names.join("`, `")
                            ),
                        );
                    }
                    ("litellm_settings", "set_verbose" | "json_logs") => self.warn(
                        path,
                        "no Switchyard equivalent; logging is set with SWITCHYARD_LOG and \
                         --log-format; ignored",
                    ),
                    ("litellm_settings", "cache" | "cache_params") => {
                        self.warn(path, "response caching is not supported; ignored")
                    }
                    ("general_settings", "master_key") => s.master_key = Some(v.clone()),
                    ("general_settings", "max_request_size_mb") => {
                        if let Some(mb) = self.positive(v, &path) {
                            s.max_body_bytes = Some((mb * 1024.0 * 1024.0) as usize);
                        }
                    }
                    ("general_settings", "database_url") => self.warn(
                        path,
                        "Switchyard has no database: virtual keys, teams, budgets, spend logs \
                         and models stored there are not converted; ignored",
                    ),
                    _ => self.unsupported(path),
                }
            }
        }
        s
    }

    fn router_setting(&mut self, s: &mut Settings, key: &str, path: &str, v: &Value) {
        match key {
            "fallbacks" => s.fallbacks = self.fallback_rules(v, path),
            "default_fallbacks" => {
                s.default_fallbacks = Some((path.to_owned(), self.string_list(v, path)));
            }
            "context_window_fallbacks" | "content_policy_fallbacks" => self.warn(
                path,
                "Switchyard falls back only when a backend fails before the first byte; \
                 context-window and content-policy fallbacks are not supported; ignored",
            ),
            "num_retries" => s.num_retries = self.count(v, path),
            "timeout" => s.timeout = self.seconds(v, path),
            "stream_timeout" => s.stream_timeout = self.seconds(v, path),
            "retry_after" => s.retry_after = self.seconds(v, path),
            "allowed_fails" => {
                s.allowed_fails = self.count(v, path);
                self.warn(
                    path,
                    "approximated by every backend's outlier.consecutiveFailures (LiteLLM counts \
                     failures per minute, Switchyard consecutive failures per endpoint)",
                );
            }
            "cooldown_time" => {
                s.cooldown_time = self.seconds(v, path);
                self.warn(
                    path,
                    "approximated by every backend's outlier.baseEjectionMs (Switchyard doubles \
                     the ejection on each repeat, up to maxEjectionMs)",
                );
            }
            "model_group_alias" => s.aliases = self.alias_rules(v, path),
            "routing_strategy" => match scalar(v).as_deref() {
                Some("simple-shuffle" | "least-busy") => {}
                Some(other) => self.warn(
                    path,
                    format!(
                        "`{other}` is not supported: Switchyard picks targets by weight and \
                         endpoints by least outstanding requests with session affinity; ignored"
                    ),
                ),
                None => self.warn(path, "not a string; ignored"),
            },
            _ => self.unsupported(path),
        }
    }

    fn fallback_rules(&mut self, v: &Value, path: &str) -> Vec<FallbackRule> {
        let mut rules = Vec::new();
        let items: Vec<(usize, &Value)> = match v {
            Value::Sequence(seq) => seq.iter().enumerate().collect(),
            Value::Mapping(_) => vec![(0, v)],
            Value::Null => return rules,
            _ => {
                self.warn(
                    path,
                    "expected a list like [{model: [fallback, ...]}]; ignored",
                );
                return rules;
            }
        };
        for (i, item) in items {
            let at = format!("{path}[{i}]");
            let Some(map) = item.as_mapping() else {
                self.warn(
                    &at,
                    "expected a mapping like {model: [fallback, ...]}; ignored",
                );
                continue;
            };
            for (k, v) in map {
                let from = key_name(k);
                let to = self.string_list(v, &format!("{at}.{from}"));
                rules.push(FallbackRule {
                    path: format!("{at}.{from}"),
                    from,
                    to,
                });
            }
        }
        rules
    }

    fn alias_rules(&mut self, v: &Value, path: &str) -> Vec<(String, String, String)> {
        let mut out = Vec::new();
        let Some(map) = v.as_mapping() else {
            if !v.is_null() {
                self.warn(path, "expected a mapping of alias to model_name; ignored");
            }
            return out;
        };
        for (k, v) in map {
            let alias = key_name(k);
            let at = format!("{path}.{alias}");
            let group = match v {
                Value::Mapping(m) => {
                    if m.get("hidden").and_then(Value::as_bool) == Some(true) {
                        self.warn(
                            &at,
                            "`hidden` is not supported: the alias is listed in /v1/models",
                        );
                    }
                    m.get("model").and_then(scalar)
                }
                other => scalar(other),
            };
            match group {
                Some(group) => out.push((alias, group, at)),
                None => self.warn(&at, "no model_name given; ignored"),
            }
        }
        out
    }

    fn drop_params_false(&mut self, path: &str) {
        self.warn(
            path,
            "Switchyard never rejects a request for parameters a backend does not support: it \
             drops them (logged at debug level and counted in a metric), as `drop_params: true` \
             would",
        );
    }

    fn entry(
        &mut self,
        index: usize,
        value: &Value,
        settings: &Settings,
    ) -> Result<Deployment, LitellmError> {
        let fail = |name: &str, message: String| LitellmError::Entry {
            index,
            name: name.to_owned(),
            message,
        };
        let unnamed = "<no model_name>";
        let Some(map) = value.as_mapping() else {
            return Err(fail(
                unnamed,
                "expected a mapping with `model_name` and `litellm_params`".into(),
            ));
        };
        let model_name = match map.get("model_name").and_then(scalar) {
            Some(name) if !name.trim().is_empty() => name,
            _ => return Err(fail(unnamed, "`model_name` is missing or empty".into())),
        };
        let fail = |message: String| fail(&model_name, message);
        let at = format!("model_list[{index}] ({model_name})");
        for (k, _) in map {
            let key = key_name(k);
            if !matches!(key.as_str(), "model_name" | "litellm_params" | "model_info") {
                self.unsupported(format!("{at}.{key}"));
            }
        }
        let Some(params) = map.get("litellm_params").and_then(Value::as_mapping) else {
            return Err(fail("`litellm_params` is missing or not a mapping".into()));
        };
        let Some(model) = params.get("model").and_then(scalar) else {
            return Err(fail("`litellm_params.model` is missing".into()));
        };
        let custom = params.get("custom_llm_provider").and_then(scalar);
        let (provider, served, inferred) = parse_model(&model, custom.as_deref()).map_err(fail)?;
        let pat = format!("{at}.litellm_params");
        if inferred {
            self.warn(
                format!("{pat}.model"),
                format!(
                    "`{model}` has no provider prefix; `{}/` inferred from the name, as LiteLLM \
                     does",
                    provider.name()
                ),
            );
        }
        let wildcard = served.contains('*');
        let hint = if wildcard {
            format!("{}-wildcard", provider.name())
        } else {
            served.clone()
        };
        let raw_base = params.get("api_base").or_else(|| params.get("base_url"));
        let base_url = self.base_url(provider, raw_base, &pat).map_err(fail)?;
        let has_base = raw_base.is_some_and(|v| !v.is_null());
        let api_key = self.api_key(
            provider,
            params.get("api_key"),
            has_base,
            &hint,
            &format!("{pat}.api_key"),
        );
        let mut backend = Backend {
            name: String::new(),
            base_url,
            endpoints: Vec::new(),
            protocol: provider.protocol(),
            served_model: (!wildcard).then(|| served.clone()),
            context_window: None,
            api_key,
            thinking: ThinkingStyle::Auto,
            system_messages: SystemMessagePlacement::Inline,
            text_tool_calls: true,
            parameters: ParameterPolicy::default(),
            forward_client_auth: false,
            health_check: None,
            outlier: settings.outlier(),
            retry_budget: Default::default(),
        };
        let mut d = Deployment {
            model_name: model_name.clone(),
            backend: backend.clone(),
            hint,
            weight: None,
            rpm: None,
            tpm: None,
            timeout: None,
            stream_timeout: None,
            num_retries: None,
        };
        for (k, v) in params {
            let key = key_name(k);
            let path = format!("{pat}.{key}");
            match key.as_str() {
                "model" | "custom_llm_provider" | "api_base" | "base_url" | "api_key" => {}
                "timeout" => d.timeout = self.seconds(v, &path),
                "stream_timeout" => d.stream_timeout = self.seconds(v, &path),
                "num_retries" => d.num_retries = self.count(v, &path),
                "weight" => d.weight = self.non_negative(v, &path),
                "rpm" | "tpm" => {
                    let n = self.non_negative(v, &path);
                    if key == "rpm" {
                        d.rpm = n;
                    } else {
                        d.tpm = n;
                    }
                    self.warn(
                        path,
                        "per-deployment rate limits are not enforced (Switchyard limits per client \
                         key, keys[].limits); used only as a load-balancing weight, as LiteLLM's \
                         simple-shuffle does",
                    );
                }
                "drop_params" => {
                    if self.flag(v, &path) == Some(false) {
                        self.drop_params_false(&path);
                    }
                }
                "additional_drop_params" => {
                    for name in self.string_list(v, &path) {
                        push_unique(&mut backend.parameters.drop, name);
                    }
                }
                "extra_body" => match v {
                    Value::Mapping(m) => {
                        for (k, v) in m {
                            let name = key_name(k);
                            match serde_json::to_value(v) {
                                Ok(json) => {
                                    backend.parameters.extra_body.insert(name, json);
                                }
                                Err(e) => {
                                    self.warn(format!("{path}.{name}"), format!("{e}; ignored"))
                                }
                            }
                        }
                    }
                    Value::Null => {}
                    _ => self.warn(path, "not a mapping; ignored"),
                },
                k if SAMPLING_PARAMS.contains(&k) => match serde_json::to_value(v) {
                    Ok(json) => {
                        backend.parameters.extra_body.insert(key.clone(), json);
                        self.warn(
                            path,
                            "LiteLLM uses it as a default the client can override; it becomes \
                             parameters.extraBody, which overrides the client's value",
                        );
                    }
                    Err(e) => self.warn(path, format!("{e}; ignored")),
                },
                "max_retries" => self.warn(
                    path,
                    "the OpenAI SDK's own retries have no equivalent; Switchyard retries per \
                     route (routes[].retries, from num_retries); ignored",
                ),
                _ => self.unsupported(path),
            }
        }
        match map.get("model_info") {
            None | Some(Value::Null) => {}
            Some(Value::Mapping(info)) => {
                for (k, v) in info {
                    let key = key_name(k);
                    let path = format!("{at}.model_info.{key}");
                    if key == "max_input_tokens" {
                        backend.context_window = self
                            .count(v, &path)
                            .filter(|n| *n > 0)
                            .or(backend.context_window);
                    } else {
                        self.unsupported(path);
                    }
                }
            }
            Some(_) => self.warn(format!("{at}.model_info"), "not a mapping; ignored"),
        }
        for name in &settings.additional_drop {
            push_unique(&mut backend.parameters.drop, name.clone());
        }
        if provider == Provider::Anthropic && !backend.parameters.extra_body.is_empty() {
            self.warn(
                &pat,
                "parameters.extraBody is currently applied to openai-protocol backends only; \
                 this anthropic backend sends the client's parameters unchanged",
            );
        }
        if wildcard {
            self.warn(
                format!("{pat}.model"),
                format!(
                    "`{model}` passes the client's model name through (LiteLLM wildcard \
                     routing); a Switchyard backend sends one model, so servedModel is left unset \
                     and discovered from the server's /models list, which works only when it \
                     serves exactly one model. Give each model its own model_list entry to \
                     route several"
                ),
            );
        }
        d.backend = backend;
        Ok(d)
    }

    fn base_url(
        &mut self,
        provider: Provider,
        raw: Option<&Value>,
        at: &str,
    ) -> Result<String, String> {
        let given = match raw {
            None | Some(Value::Null) => None,
            Some(v) => Some(scalar(v).ok_or("`api_base` must be a string")?),
        };
        let url = match given {
            Some(s) => match s.strip_prefix(ENV_PREFIX) {
                Some(name) => {
                    let name = name.trim();
                    let url = self.lookup(name).ok_or_else(|| {
                        format!(
                            "`api_base: {s}` names the environment variable `{name}`, which is \
                             not set at conversion time; set it and convert again"
                        )
                    })?;
                    self.warn(
                        format!("{at}.api_base"),
                        format!("read from `{name}` at conversion time"),
                    );
                    url
                }
                None => s,
            },
            None => {
                let (vars, default): (&[&str], Option<&str>) = match provider {
                    Provider::Openai => (
                        &["OPENAI_BASE_URL", "OPENAI_API_BASE"],
                        Some(OPENAI_DEFAULT_BASE),
                    ),
                    Provider::Anthropic => (
                        &["ANTHROPIC_API_BASE", "ANTHROPIC_BASE_URL"],
                        Some(ANTHROPIC_DEFAULT_HOST),
                    ),
                    Provider::HostedVllm => (&["HOSTED_VLLM_API_BASE"], None),
                };
                match vars
                    .iter()
                    .find_map(|v| self.lookup(v).map(|url| (*v, url)))
                {
                    Some((var, url)) => {
                        self.warn(
                            format!("{at}.api_base"),
                            format!("not set; read from `{var}` at conversion time, as LiteLLM would at startup"),
                        );
                        url
                    }
                    None => default
                        .ok_or_else(|| {
                            format!(
                                "`{}/` needs `api_base` (the vLLM server's URL, e.g. \
                                 http://host:8000/v1) or HOSTED_VLLM_API_BASE",
                                provider.name()
                            )
                        })?
                        .to_owned(),
                }
            }
        };
        let mut url = url.trim().trim_end_matches('/').to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            return Err(format!(
                "api_base `{url}` must be an http:// or https:// URL"
            ));
        }
        match provider {
            Provider::Anthropic => {
                // LiteLLM calls `{api_base}/v1/messages` unless api_base already ends with it;
                // Switchyard calls `{baseUrl}/messages`.
                if let Some(base) = url.strip_suffix("/messages") {
                    url = base.to_owned();
                }
                if !url.ends_with("/v1") {
                    url.push_str("/v1");
                }
            }
            Provider::Openai | Provider::HostedVllm => {
                if let Some(base) = url.strip_suffix("/chat/completions") {
                    url = base.to_owned();
                    self.warn(
                        format!("{at}.api_base"),
                        "ends with /chat/completions, which the client appends itself; cut",
                    );
                }
            }
        }
        Ok(url)
    }

    fn api_key(
        &mut self,
        provider: Provider,
        value: Option<&Value>,
        has_base: bool,
        hint: &str,
        path: &str,
    ) -> Option<SecretRef> {
        let env = |name: &str| {
            Some(SecretRef {
                env: Some(name.to_owned()),
                file: None,
                secret_key: None,
            })
        };
        let raw = match value {
            None | Some(Value::Null) => None,
            Some(v) => {
                let s = scalar(v);
                if s.is_none() {
                    self.warn(path, "not a string; ignored");
                }
                s
            }
        };
        let Some(raw) = raw else {
            // LiteLLM's own defaults for a deployment without a key.
            return match provider {
                Provider::Anthropic => env("ANTHROPIC_API_KEY"),
                Provider::Openai if !has_base => env("OPENAI_API_KEY"),
                _ => None,
            };
        };
        if let Some(name) = raw.strip_prefix(ENV_PREFIX) {
            let name = name.trim();
            if name.is_empty() {
                self.warn(path, "`os.environ/` without a variable name; ignored");
                return None;
            }
            if let Some(value) = self.config_env.get(name) {
                self.secret_env
                    .insert(name.to_owned(), SecretValue(value.clone()));
            }
            return env(name);
        }
        if is_placeholder_key(&raw) {
            self.warn(
                path,
                "looks like a placeholder, not a credential (LiteLLM's openai/ needs some value; a \
                 vLLM started without --api-key ignores it), so no key is sent; if the server does \
                 check a key, set the backend's apiKey.env",
            );
            return None;
        }
        let name = self.literal_env_name(&raw, hint);
        self.secret_env.insert(name.clone(), SecretValue(raw));
        self.warn(
            path,
            format!(
                "a literal key cannot go into a snapshot (secrets live in the environment or a \
                 file), so the backend reads it from the environment variable `{name}`: export \
                 it with the api_key value of the LiteLLM config"
            ),
        );
        env(&name)
    }

    /// `SWITCHYARD_<HINT>_API_KEY`; one variable per distinct literal value.
    fn literal_env_name(&self, value: &str, hint: &str) -> String {
        if let Some((name, _)) = self
            .secret_env
            .iter()
            .find(|(name, v)| v.expose() == value && !self.config_env.contains_key(*name))
        {
            return name.clone();
        }
        let stem = sanitize(hint).to_ascii_uppercase().replace('-', "_");
        let base = format!("SWITCHYARD_{stem}_API_KEY");
        let mut name = base.clone();
        let mut n = 2;
        while self.secret_env.contains_key(&name) || self.config_env.contains_key(&name) {
            name = format!("{base}_{n}");
            n += 1;
        }
        name
    }

    /// A backend (or the route's weighted targets) for one model_name's deployments.
    fn place(&mut self, group: &[Deployment]) -> (Option<String>, Vec<Target>) {
        let first = &group[0];
        if group.len() == 1 {
            return (
                Some(self.intern(first.backend.clone(), &first.hint)),
                Vec::new(),
            );
        }
        let weights = effective_weights(group);
        let same_but_url = group.iter().all(|d| {
            Backend {
                base_url: first.backend.base_url.clone(),
                ..d.backend.clone()
            } == first.backend
        });
        if same_but_url && weights.iter().all(|w| *w == weights[0]) {
            let mut urls: Vec<String> = Vec::new();
            for d in group {
                push_unique(&mut urls, d.backend.base_url.clone());
            }
            let mut spec = first.backend.clone();
            if urls.len() > 1 {
                spec.endpoints = urls;
            }
            return (Some(self.intern(spec, &first.hint)), Vec::new());
        }
        let mut targets: Vec<Target> = Vec::new();
        for (d, weight) in group.iter().zip(weights) {
            let name = self.intern(d.backend.clone(), &d.hint);
            match targets.iter_mut().find(|t| t.backend == name) {
                Some(t) => t.weight = t.weight.saturating_add(weight),
                None => targets.push(Target {
                    backend: name,
                    weight,
                }),
            }
        }
        if targets.len() == 1 {
            return (Some(targets.remove(0).backend), Vec::new());
        }
        (None, targets)
    }

    /// The name of an identical existing backend, or of `spec` added under a new name.
    fn intern(&mut self, mut spec: Backend, hint: &str) -> String {
        spec.name = String::new();
        if let Some(b) = self.backends.iter().find(|b| {
            Backend {
                name: String::new(),
                ..(*b).clone()
            } == spec
        }) {
            return b.name.clone();
        }
        let base = sanitize(hint);
        let mut name = base.clone();
        let mut n = 2;
        while self.backends.iter().any(|b| b.name == name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        spec.name = name.clone();
        self.backends.push(spec);
        name
    }

    fn timeouts(&mut self, name: &str, group: &[Deployment], s: &Settings) -> Timeouts {
        let mut out = Timeouts::default();
        let own: Vec<f64> = group.iter().filter_map(|d| d.timeout).collect();
        if own.iter().any(|t| *t != own[0]) {
            self.warn(
                format!("model_list ({name})"),
                "deployments of this model_name set different timeouts; the route uses the largest",
            );
        }
        let timeout = max_of(group.iter().map(|d| d.timeout))
            .or(s.timeout)
            .or(s.request_timeout);
        if let Some(secs) = timeout {
            out.first_token_ms = millis(secs);
            out.idle_ms = millis(secs);
        }
        if let Some(secs) = max_of(group.iter().map(|d| d.stream_timeout)).or(s.stream_timeout) {
            out.first_token_ms = millis(secs);
        }
        out.total_ms = out.total_ms.max(out.first_token_ms).max(out.idle_ms);
        out
    }

    fn fallbacks(&mut self, routes: &mut [Route], s: &Settings) {
        let targets_of: HashMap<String, Vec<String>> = routes
            .iter()
            .map(|r| {
                let names = r.default_targets().into_iter().map(|t| t.backend).collect();
                (r.name.clone(), names)
            })
            .collect();
        let mut explicit: HashMap<&str, &[String]> = HashMap::new();
        let mut star: Option<&[String]> = None;
        let check = |c: &mut Self, path: &str, to: &[String]| {
            for m in to {
                if !targets_of.contains_key(m) {
                    c.warn(path, format!("no model_list entry named `{m}`; skipped"));
                }
            }
        };
        for rule in &s.fallbacks {
            check(self, &rule.path, &rule.to);
            if rule.from == "*" {
                star = Some(&rule.to);
            } else if targets_of.contains_key(&rule.from) {
                explicit.insert(&rule.from, &rule.to);
            } else {
                self.warn(
                    &rule.path,
                    format!("no model_list entry named `{}`; ignored", rule.from),
                );
            }
        }
        if let Some((path, to)) = &s.default_fallbacks {
            check(self, path, to);
            star = star.or(Some(to));
        }
        for route in routes.iter_mut() {
            let Some(list) = explicit.get(route.name.as_str()).copied().or(star) else {
                continue;
            };
            let own = &targets_of[&route.name];
            for model in list {
                if *model == route.name {
                    continue;
                }
                for backend in targets_of.get(model).into_iter().flatten() {
                    if !own.contains(backend) && !route.fallbacks.contains(backend) {
                        route.fallbacks.push(backend.clone());
                    }
                }
            }
        }
    }

    fn aliases(&mut self, routes: &mut [Route], s: &Settings) {
        for (alias, group, path) in &s.aliases {
            if routes.iter().any(|r| r.name == *alias) {
                self.warn(
                    path,
                    format!("`{alias}` is itself a model_name; the alias is ignored"),
                );
                continue;
            }
            match routes.iter_mut().find(|r| r.name == *group) {
                Some(route) => push_unique(&mut route.models, glob_literal(alias)),
                None => self.warn(
                    path,
                    format!("no model_list entry named `{group}`; ignored"),
                ),
            }
        }
    }

    fn master_key(&mut self, value: Option<&Value>) -> Vec<ClientKey> {
        const AT: &str = "general_settings.master_key";
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return Vec::new();
        };
        let Some(raw) = scalar(value) else {
            self.warn(AT, "not a string; no client key is configured");
            return Vec::new();
        };
        let key = match raw.strip_prefix(ENV_PREFIX) {
            Some(name) => {
                let name = name.trim();
                match self.lookup(name) {
                    Some(key) => {
                        self.warn(
                            AT,
                            format!(
                                "read from `{name}` at conversion time; the snapshot keeps only \
                                 its SHA-256, so convert again when the key changes"
                            ),
                        );
                        key
                    }
                    None => {
                        self.warn(
                            AT,
                            format!(
                                "`os.environ/{name}` is not set at conversion time, so the key's \
                                 SHA-256 cannot be computed and no client key is configured: the \
                                 proxy accepts any key. Set {name} and convert again, or add \
                                 `keys: [{{name: {MASTER_KEY_NAME}, sha256: ...}}]` with the \
                                 output of `printf %s \"${name}\" | sha256sum`"
                            ),
                        );
                        return Vec::new();
                    }
                }
            }
            None => raw,
        };
        if key.is_empty() {
            self.warn(AT, "empty; no client key is configured");
            return Vec::new();
        }
        vec![ClientKey {
            name: MASTER_KEY_NAME.into(),
            sha256: sha256_hex(&key),
            routes: Vec::new(),
            limits: Default::default(),
        }]
    }

    // ---- scalar helpers (each warns and returns None on a bad value) ----

    /// A number, a numeric string, or `os.environ/NAME` holding one.
    fn number(&mut self, v: &Value, path: &str) -> Option<f64> {
        let parsed = match v {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => match s.strip_prefix(ENV_PREFIX) {
                Some(name) => self.lookup(name.trim()).and_then(|s| s.trim().parse().ok()),
                None => s.trim().parse().ok(),
            },
            _ => None,
        };
        match parsed {
            Some(n) if n.is_finite() => Some(n),
            _ => {
                self.warn(path, "not a number; ignored");
                None
            }
        }
    }

    fn non_negative(&mut self, v: &Value, path: &str) -> Option<f64> {
        let n = self.number(v, path)?;
        if n < 0.0 {
            self.warn(path, "negative; ignored");
            return None;
        }
        Some(n)
    }

    fn positive(&mut self, v: &Value, path: &str) -> Option<f64> {
        let n = self.number(v, path)?;
        if n <= 0.0 {
            self.warn(path, "must be greater than 0; ignored");
            return None;
        }
        Some(n)
    }

    fn seconds(&mut self, v: &Value, path: &str) -> Option<f64> {
        if v.is_null() {
            return None;
        }
        self.positive(v, path)
    }

    fn count(&mut self, v: &Value, path: &str) -> Option<u32> {
        let n = self.non_negative(v, path)?;
        if n.fract() != 0.0 || n > f64::from(u32::MAX) {
            self.warn(path, "not a whole number; ignored");
            return None;
        }
        Some(n as u32)
    }

    fn flag(&mut self, v: &Value, path: &str) -> Option<bool> {
        match v {
            Value::Bool(b) => Some(*b),
            Value::String(s) if s.eq_ignore_ascii_case("true") => Some(true),
            Value::String(s) if s.eq_ignore_ascii_case("false") => Some(false),
            _ => {
                self.warn(path, "not true or false; ignored");
                None
            }
        }
    }

    /// A list of strings, or one string.
    fn string_list(&mut self, v: &Value, path: &str) -> Vec<String> {
        match v {
            Value::Null => Vec::new(),
            Value::Sequence(seq) => {
                let mut out = Vec::new();
                for (i, item) in seq.iter().enumerate() {
                    match scalar(item) {
                        Some(s) => out.push(s),
                        None => self.warn(format!("{path}[{i}]"), "not a string; ignored"),
                    }
                }
                out
            }
            other => match scalar(other) {
                Some(s) => vec![s],
                None => {
                    self.warn(path, "expected a list of strings; ignored");
                    Vec::new()
                }
            },
        }
    }
}

/// Provider, the model name sent upstream, and whether the provider was inferred.
fn parse_model(model: &str, custom: Option<&str>) -> Result<(Provider, String, bool), String> {
    let supported = "Switchyard converts `openai/` (OpenAI-compatible), `hosted_vllm/` (vLLM) \
                     and `anthropic/` models";
    let model = model.trim();
    let (provider, rest, inferred) = if let Some(custom) = custom {
        let provider = Provider::from_name(custom).ok_or_else(|| {
            format!("custom_llm_provider `{custom}` is not supported: {supported}")
        })?;
        let rest = model
            .strip_prefix(custom)
            .and_then(|r| r.strip_prefix('/'))
            .unwrap_or(model);
        (provider, rest, false)
    } else if let Some((prefix, rest)) = model.split_once('/') {
        let provider = Provider::from_name(prefix).ok_or_else(|| {
            if prefix == "vllm" {
                format!(
                    "`vllm/` runs vLLM inside LiteLLM's process; for a vLLM server use \
                     `hosted_vllm/{rest}` with its api_base"
                )
            } else {
                format!(
                    "provider `{prefix}/` (from `model: {model}`) is not supported: {supported}"
                )
            }
        })?;
        (provider, rest, false)
    } else {
        let lower = model.to_ascii_lowercase();
        let provider = if lower.starts_with("claude") {
            Provider::Anthropic
        } else if ["gpt-", "o1", "o3", "o4", "chatgpt-"]
            .iter()
            .any(|p| lower.starts_with(p))
        {
            Provider::Openai
        } else {
            return Err(format!(
                "`model: {model}` has no provider prefix: {supported} (e.g. \
                 `hosted_vllm/{model}`)"
            ));
        };
        (provider, model, true)
    };
    if rest.trim().is_empty() {
        return Err(format!(
            "`model: {model}` names no model after the provider"
        ));
    }
    Ok((provider, rest.to_owned(), inferred))
}

/// Values people put in `api_key` only because the client insists on one.
fn is_placeholder_key(key: &str) -> bool {
    const PLACEHOLDERS: &[&str] = &[
        "",
        "none",
        "null",
        "nil",
        "dummy",
        "empty",
        "fake",
        "fake-key",
        "fake-api-key",
        "sk-fake",
        "sk-dummy",
        "sk-none",
        "sk-no-key-required",
        "no-key",
        "nokey",
        "no_key",
        "not-needed",
        "not_needed",
        "notneeded",
        "not-used",
        "unused",
        "na",
        "n/a",
        "x",
        "xxx",
        "sk-xxx",
        "placeholder",
        "anything",
        "vllm",
    ];
    PLACEHOLDERS.contains(&key.trim().to_ascii_lowercase().as_str())
}

/// Weights for a group's deployments: `weight`, else `rpm`, else `tpm`, else equal.
fn effective_weights(group: &[Deployment]) -> Vec<u32> {
    type Field = fn(&Deployment) -> Option<f64>;
    let fields: [Field; 3] = [|d| d.weight, |d| d.rpm, |d| d.tpm];
    let raw = fields.iter().find_map(|f| {
        group.iter().any(|d| f(d).is_some()).then(|| {
            group
                .iter()
                .map(|d| f(d).unwrap_or(0.0))
                .collect::<Vec<f64>>()
        })
    });
    let equal = vec![1; group.len()];
    let Some(raw) = raw else {
        return equal;
    };
    let max = raw.iter().copied().fold(0.0, f64::max);
    if max <= 0.0 {
        return equal;
    }
    if max <= 1_000_000.0 && raw.iter().all(|w| w.fract() == 0.0) {
        return raw.iter().map(|w| *w as u32).collect();
    }
    raw.iter()
        .map(|w| match ((w / max) * 1000.0).round() as u32 {
            0 if *w > 0.0 => 1,
            n => n,
        })
        .collect()
}

fn max_of<T: PartialOrd + Copy>(items: impl Iterator<Item = Option<T>>) -> Option<T> {
    items.flatten().fold(None, |acc, x| match acc {
        Some(a) if a >= x => Some(a),
        _ => Some(x),
    })
}

fn millis(secs: f64) -> u64 {
    ((secs * 1000.0).round() as u64).max(1)
}

fn push_unique(list: &mut Vec<String>, item: String) {
    if !list.contains(&item) {
        list.push(item);
    }
}

/// A LiteLLM model name as a Switchyard model pattern: `*` stays a wildcard, the other glob
/// characters match themselves.
fn glob_literal(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '?' | '[' | ']' | '{' | '}' | '\\' => {
                out.push('[');
                out.push(c);
                out.push(']');
            }
            c => out.push(c),
        }
    }
    out
}

/// Lower-case letters, digits and single dashes.
fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_matches('-');
    if out.is_empty() {
        "backend".to_owned()
    } else {
        out.to_owned()
    }
}

fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A scalar as text (YAML may type `600`, `true` or `none` however it likes).
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        Value::Tagged(t) => scalar(&t.value),
        _ => None,
    }
}

fn key_name(k: &Value) -> String {
    scalar(k).unwrap_or_else(|| "<non-string key>".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    /// `$SWITCHYARD_FIXTURES/litellm`, else the shared fixtures beside the repository.
    fn fixtures_dir() -> PathBuf {
        match std::env::var_os("SWITCHYARD_FIXTURES") {
            Some(dir) => PathBuf::from(dir).join("litellm"),
            None => PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../../shared/fixtures/litellm"
            )),
        }
    }

    fn no_env(_: &str) -> Option<String> {
        None
    }

    fn fixture(name: &str) -> Conversion {
        let path = fixtures_dir().join(name);
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        convert_with_env(&text, &no_env).unwrap_or_else(|e| panic!("{name}: {e}"))
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
            let c = convert_with_env(&text, &no_env)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
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
        let w = warnings_at(
            &c,
            "model_list[1] (claude-3-opus-20240229).litellm_params.api_key",
        );
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
        let c = fixture("gateway-fallbacks.yaml");
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
            warnings_at(
                &c,
                "model_list[0] (openai/gpt-oss-120b).litellm_params.api_key"
            )
            .len(),
            1
        );
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    }

    #[test]
    fn provider_prefixes_and_the_name_sent() {
        let c = conv(
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
"#,
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
        assert_eq!(
            warnings_at(&c, "model_list[6] (g).litellm_params.model").len(),
            1
        );
        assert_eq!(
            warnings_at(&c, "model_list[7] (h).litellm_params.model").len(),
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
            ],
        );
        assert_eq!(c.snapshot.backends[0].base_url, "http://vllm:8000/v1");
        assert_eq!(c.snapshot.backends[1].base_url, "https://proxy.example/v1");
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
        let err = convert_with_env(yaml, &no_env).unwrap_err();
        assert!(
            matches!(&err, LitellmError::Entry { index: 0, name, message }
                if name == "a" && message.contains("api_base")),
            "{err}"
        );
    }

    #[test]
    fn unusable_entries_are_errors_naming_the_entry() {
        let cases: &[(&str, usize, &str, &str)] = &[
            (
                "model_list:\n  - model_name: ok\n    litellm_params: {model: openai/x, api_base: 'http://h/v1'}\n  - model_name: bad\n    litellm_params: {model: bedrock/anthropic.claude-v2}\n",
                1,
                "bad",
                "`bedrock/`",
            ),
            (
                "model_list:\n  - model_name: v\n    litellm_params: {model: vllm/qwen, api_base: 'http://h/v1'}\n",
                0,
                "v",
                "hosted_vllm/qwen",
            ),
            (
                "model_list:\n  - model_name: n\n    litellm_params: {model: my-local-model, api_base: 'http://h/v1'}\n",
                0,
                "n",
                "no provider prefix",
            ),
            (
                "model_list:\n  - model_name: m\n    litellm_params: {api_base: 'http://h/v1'}\n",
                0,
                "m",
                "`litellm_params.model` is missing",
            ),
            (
                "model_list:\n  - model_name: p\n",
                0,
                "p",
                "`litellm_params` is missing",
            ),
            (
                "model_list:\n  - litellm_params: {model: openai/x}\n",
                0,
                "<no model_name>",
                "`model_name`",
            ),
            (
                "model_list:\n  - model_name: u\n    litellm_params: {model: openai/x, api_base: 'localhost:8000/v1'}\n",
                0,
                "u",
                "http://",
            ),
            (
                "model_list:\n  - model_name: e\n    litellm_params: {model: openai/x, api_base: os.environ/UNSET_BASE}\n",
                0,
                "e",
                "UNSET_BASE",
            ),
            (
                "model_list:\n  - model_name: c\n    litellm_params: {model: x, custom_llm_provider: azure}\n",
                0,
                "c",
                "custom_llm_provider `azure`",
            ),
            ("model_list:\n  - just-a-string\n", 0, "<no model_name>", "mapping"),
        ];
        for (yaml, want_index, want_name, want_text) in cases {
            match convert_with_env(yaml, &no_env) {
                Err(LitellmError::Entry {
                    index,
                    name,
                    message,
                }) => {
                    assert_eq!((index, name.as_str()), (*want_index, *want_name), "{yaml}");
                    assert!(message.contains(want_text), "{message}");
                }
                other => panic!("{yaml}: expected an entry error, got {other:?}"),
            }
        }
    }

    #[test]
    fn document_errors() {
        assert!(matches!(
            convert_with_env("model_list: [", &no_env),
            Err(LitellmError::Yaml(_))
        ));
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
            "model_list[0] (x): `litellm_params` is missing or not a mapping"
        );
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
        let c = conv(
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
        assert_eq!(
            warnings_at(&c, "model_list[2] (rpm).litellm_params.rpm").len(),
            1
        );
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
        let w = warnings_at(&c, "model_list[0] (*).litellm_params.model");
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
        assert_eq!(
            warnings_at(&c, "router_settings.context_window_fallbacks").len(),
            1
        );
        assert_eq!(c.warnings.len(), 3, "{:?}", c.warnings);
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
        let c = conv(
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
            "model_list[0] (a).litellm_params.temperature",
            "model_list[0] (a).litellm_params.drop_params",
            "model_list[0] (a).model_info.input_cost_per_token",
            "model_list[1] (b).litellm_params.top_p",
            "model_list[1] (b).litellm_params: parameters.extraBody",
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
            "model_list[0] (a).tpm",
            "model_list[0] (a).model_info.id",
            "model_list[0] (a).litellm_params.api_version",
            "model_list[0] (a).litellm_params.max_retries",
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

        let c = conv(yaml);
        assert!(c.snapshot.keys.is_empty());
        let w = warnings_at(&c, "general_settings.master_key");
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("LITELLM_MASTER_KEY") && w[0].contains("accepts any key"));
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
}
