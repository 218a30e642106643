//! `litellm_settings`, `router_settings`, `general_settings` and `environment_variables`.

use super::values::{key_name, millis, scalar};
use super::Converter;
use serde_yaml::{Mapping, Value};
use std::collections::BTreeSet;
use switchyard_api::OutlierPolicy;

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

pub(super) const COOLDOWN_NOTE: &str =
    "approximated by the backend's outlier.baseEjectionMs (Switchyard doubles the ejection on \
     each repeat, up to maxEjectionMs)";

/// `{from: [to, …]}`, from `fallbacks`, `context_window_fallbacks` or `default_fallbacks`
/// (`from: "*"`).
pub(super) struct FallbackRule {
    /// The setting's path, for warnings.
    pub path: String,
    pub from: String,
    pub to: Vec<String>,
}

/// `litellm_settings`, `router_settings` and `general_settings`, gathered.
#[derive(Default)]
pub(super) struct Settings {
    pub additional_drop: Vec<String>,
    pub request_timeout: Option<f64>,
    pub timeout: Option<f64>,
    pub stream_timeout: Option<f64>,
    pub num_retries: Option<u32>,
    pub retry_after: Option<f64>,
    pub allowed_fails: Option<u32>,
    pub cooldown_time: Option<f64>,
    pub fallbacks: Vec<FallbackRule>,
    pub context_fallbacks: Vec<FallbackRule>,
    /// LiteLLM appends it to `fallbacks` as a last `"*"` entry.
    pub default_fallbacks: Option<FallbackRule>,
    /// (alias, model_name, path)
    pub aliases: Vec<(String, String, String)>,
    pub max_body_bytes: Option<usize>,
    pub master_key: Option<Value>,
}

impl Settings {
    pub(super) fn outlier(&self) -> OutlierPolicy {
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

impl Converter<'_> {
    pub(super) fn settings(&mut self, root: &Mapping) -> Settings {
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
                } else {
                    self.other_setting(&mut s, section, &key, path, v);
                }
            }
        }
        s
    }

    fn other_setting(
        &mut self,
        s: &mut Settings,
        section: &str,
        key: &str,
        path: String,
        v: &Value,
    ) {
        match (section, key) {
            ("litellm_settings", "drop_params") => {
                if self.flag(v, &path) == Some(false) {
                    self.drop_params_false(&path);
                }
            }
            ("litellm_settings", "additional_drop_params") => {
                let names = self.string_list(v, &path);
                s.additional_drop.extend(names);
            }
            ("litellm_settings", "request_timeout") => s.request_timeout = self.seconds(v, &path),
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
                        "callback `{}` cannot run in Switchyard (no custom modules or logging \
                         integrations); ignored. Switchyard's own fixes (tool calls left in \
                         text, gpt-oss Harmony, Claude Code quirks), Prometheus metrics and \
                         access log are built in",
                        names.join("`, `")
                    ),
                );
            }
            ("litellm_settings", "set_verbose" | "json_logs") => self.warn(
                path,
                "no Switchyard equivalent; logging is set with SWITCHYARD_LOG and --log-format; \
                 ignored",
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
                "Switchyard has no database: virtual keys, teams, budgets, spend logs and models \
                 stored there are not converted; ignored",
            ),
            _ => self.unsupported(path),
        }
    }

    fn router_setting(&mut self, s: &mut Settings, key: &str, path: &str, v: &Value) {
        match key {
            "fallbacks" => s.fallbacks = self.fallback_rules(v, path),
            "context_window_fallbacks" => s.context_fallbacks = self.fallback_rules(v, path),
            "default_fallbacks" => {
                s.default_fallbacks = Some(FallbackRule {
                    path: path.to_owned(),
                    from: "*".into(),
                    to: self.string_list(v, path),
                });
            }
            "content_policy_fallbacks" => self.warn(
                path,
                "Switchyard cannot tell a content-policy refusal from other errors; \
                 content-policy fallbacks are not supported; ignored",
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
                self.warn(path, COOLDOWN_NOTE);
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
                let path = format!("{at}.{from}");
                let to = self.string_list(v, &path);
                rules.push(FallbackRule { path, from, to });
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

    pub(super) fn drop_params_false(&mut self, path: &str) {
        self.warn(
            path,
            "Switchyard never rejects a request for parameters a backend does not support: it \
             drops them (logged at debug level and counted in a metric), as `drop_params: true` \
             would",
        );
    }

    pub(super) fn environment_variables(&mut self, v: &Value) {
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
    pub(super) fn report_environment(&mut self) {
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
}
