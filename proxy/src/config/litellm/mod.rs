//! LiteLLM proxy config (`config.yaml`) → Switchyard [`RoutingSnapshot`].
//!
//! Pure: [`convert`] reads the YAML text (and, for `os.environ/NAME` values that must be known
//! at conversion time, the process environment; [`convert_with_env`] takes the lookup as an
//! argument) and returns the snapshot plus one warning for every setting that has no
//! Switchyard equivalent or only an approximate one. Nothing is ignored silently, and no
//! warning or error ever contains a secret value.
//!
//! # Lenient import
//!
//! A LiteLLM config usually mixes what Switchyard can serve (vLLM, OpenAI-compatible servers,
//! Anthropic) with what it cannot (Bedrock, Vertex, Azure, embeddings, …). Every deployment
//! that can be served is; each one that cannot is skipped with a warning naming its config
//! path (`model_list[3].litellm_params.model: …`) and why, all of them, not only the first. A
//! `model_name` left without any deployment gets no route (warned); fallbacks and aliases that
//! point at it are dropped (warned). Only a config of which nothing can be served is an error,
//! [`LitellmError::NothingServable`], listing every reason.
//!
//! Environment variables (`os.environ/NAME`) are read at conversion time where the value
//! decides what is built, and a missing one is reported by the config's own field path:
//! - `api_base`: the deployment has nowhere to go → skipped.
//! - `api_key`: the snapshot would name a variable the proxy cannot read, and the runtime
//!   refuses a snapshot with an unreadable secret (one missing key would stop every route),
//!   while a deployment without its credential only earns 401s, which are not failed over →
//!   skipped, so its group's other deployments and fallbacks take the traffic. The same holds
//!   for LiteLLM's implicit key variables (`ANTHROPIC_API_KEY`, `OPENAI_API_KEY`, …) of a hosted
//!   API; with an explicit `api_base` (a local server) an unset implicit key sends no key.
//! - `general_settings.master_key`: an error, [`LitellmError::MasterKey`]: a config that asks
//!   for a client key must never run open.
//! - numbers (`timeout`, `num_retries`, …): the setting is ignored (warned).
//!
//! # Mapping
//!
//! | LiteLLM | Switchyard |
//! |---|---|
//! | `model_list[].model_name` | one route per distinct name, `routes[].name` and `models` (`*` stays a glob; other glob characters are escaped) |
//! | `model: openai/NAME` | `protocol: openai`, `servedModel: NAME` (the one prefix is stripped: `openai/openai/x` sends `openai/x`) |
//! | `model: hosted_vllm/NAME` | `protocol: openai`, `servedModel: NAME` verbatim (`hosted_vllm/openai/gpt-oss-120b` sends `openai/gpt-oss-120b`) |
//! | `model: anthropic/NAME` | `protocol: anthropic`, `servedModel: NAME` |
//! | `groq/`, `openrouter/`, `deepseek/`, `xai/`, `cerebras/`, `ollama/`, `ollama_chat/`, `lm_studio/` | `protocol: openai` at the provider's OpenAI-compatible base URL (Ollama: its `/v1` API) with LiteLLM's key variable |
//! | `custom_llm_provider` | the provider when `model` has no prefix |
//! | no prefix: `claude…` / `gpt-…`, `o1…`, `o3…`, `o4…`, `chatgpt-…` | inferred `anthropic` / `openai`, with a warning |
//! | any other provider (`bedrock/`, `vertex_ai/`, `azure/`, `gemini/`, `cohere/`, `vllm/`, …) or an unprefixed unknown name | deployment skipped, warning |
//! | `model_info.mode` other than `chat`; embedding, rerank, speech, image and moderation model names | deployment skipped, warning (Switchyard serves Messages, a chat API) |
//! | `model: PROVIDER/…*…` (wildcard passthrough) | `servedModel` unset (discovered from `GET /models`), warning: the client's name is not passed through |
//! | `api_base` (or `base_url`; may be `os.environ/NAME`, resolved now) | `baseUrl`; anthropic: LiteLLM appends `/v1/messages` to a host, so `baseUrl` is host + `/v1`; a trailing `/chat/completions` is cut (warning) |
//! | no `api_base` | openai: `$OPENAI_BASE_URL`/`$OPENAI_API_BASE` or `https://api.openai.com/v1`; anthropic: `$ANTHROPIC_API_BASE`/`$ANTHROPIC_BASE_URL` or `https://api.anthropic.com/v1`; hosted_vllm: `$HOSTED_VLLM_API_BASE`, else skipped |
//! | `api_key: os.environ/NAME` | `apiKey: {env: NAME}` (NAME unset: skipped) |
//! | `api_key:` literal | `apiKey: {env: SWITCHYARD_<BACKEND>_API_KEY}` + warning (value in [`Conversion::secret_env`], never in the snapshot or warnings) |
//! | `api_key:` placeholder (`none`, `dummy`, `EMPTY`, `fake`, …) | no `apiKey` + warning |
//! | no `api_key` | anthropic: `{env: ANTHROPIC_API_KEY}`; openai without `api_base`: `{env: OPENAI_API_KEY}`; hosted providers: their variable (LiteLLM's defaults); otherwise none |
//! | same `model_name` several times, differing only in `api_base` | one backend with `endpoints` |
//! | same `model_name` several times, otherwise | weighted `targets` (`weight`, else `rpm`, else `tpm`, as LiteLLM's simple-shuffle; else equal); all are tried on failure |
//! | identical deployments under several names | one shared backend |
//! | `litellm_params.rpm` / `tpm` | load-balancing weight only, warning (not enforced) |
//! | `litellm_params.timeout` / `router_settings.timeout` / `litellm_settings.request_timeout` (first set wins) | `timeouts.firstTokenMs` and `idleMs` (LiteLLM hands it to the HTTP client as a per-read timeout, so a long stream is not cut); `totalMs` only grows to stay ≥ them |
//! | `stream_timeout` (entry or router) | `timeouts.firstTokenMs` |
//! | `num_retries` (entry, `router_settings`, `litellm_settings`; LiteLLM's default 2) | `retries.attempts = num_retries + 1` (LiteLLM counts retries, Switchyard attempts; per backend: each fallback gets its own) |
//! | `retry_after` | `retries.backoffMs` |
//! | `fallbacks: [{a: [b, c]}]` (`router_settings` or `litellm_settings`) | `routes[a].fallbacks`: the backends of `b` then `c`; the first entry for `a` wins, as in LiteLLM |
//! | a fallback key no `model_name` equals but a glob group matches (`claude-sonnet-4-5` with `model_name: claude-*`) | a route for that exact name, a copy of the glob group's route with these fallbacks (LiteLLM looks fallbacks up by the name the client sent; exact names beat globs) |
//! | `"*"` key, `default_fallbacks` (appended as a last `"*"` entry, as LiteLLM does) | fallbacks of every route without its own entry |
//! | `context_window_fallbacks` (same keys, `"*"` and globs as `fallbacks`) | `routes[a].contextFallbacks` |
//! | `content_policy_fallbacks` | warning |
//! | `allowed_fails`, `cooldown_time` (router or per deployment) | the backends' `outlier.consecutiveFailures`, `baseEjectionMs` (warning: approximation) |
//! | `routing_strategy` | `simple-shuffle`, `least-busy`: nothing to do; others: warning |
//! | `model_group_alias` | the alias is added to the group's route `models` |
//! | `drop_params: true` | nothing to do: Switchyard always drops fields a backend cannot take |
//! | `drop_params: false` | warning (Switchyard drops instead of rejecting) |
//! | `additional_drop_params` (entry or `litellm_settings`) | `parameters.drop` |
//! | `extra_body` | `parameters.extraBody` |
//! | `temperature`, `top_p`, `top_k`, … in `litellm_params` | `parameters.extraBody`, warning (overrides the client's value instead of defaulting it) |
//! | `model_info.max_input_tokens` | `contextWindow` |
//! | `general_settings.master_key` (literal or `os.environ/NAME` resolved now) | `keys: [{name: litellm-master-key, sha256}]`; unresolvable or empty: an error |
//! | `general_settings.max_request_size_mb` | `server.maxBodyBytes` |
//! | `environment_variables` | values referenced by `os.environ/NAME` go to [`Conversion::secret_env`]; warning naming them |
//! | callbacks, caching, logging, database, alerting, guardrails, budgets, anything else | warning naming the setting |

mod deployment;
mod keys;
mod model;
mod routes;
mod settings;
#[cfg(test)]
mod tests;
mod values;

use deployment::{Deployment, Skip};
use serde_yaml::{Mapping, Value};
use settings::Settings;
use std::collections::BTreeMap;
use std::fmt;
use switchyard_api::{Backend, ClientKey, FieldError, Route, RoutingSnapshot, ServerSettings};
use values::key_name;

/// Name of the client key made from `general_settings.master_key`.
pub const MASTER_KEY_NAME: &str = "litellm-master-key";

/// LiteLLM's way of naming an environment variable in a config value.
const ENV_PREFIX: &str = "os.environ/";

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
        let template =
            |yaml: &str| -> Value { serde_yaml::from_str(yaml).expect("template parses") };
        let backend = defaults_of::<Backend>(template("{name: '', baseUrl: ''}"));
        let route = defaults_of::<Route>(template("{name: '', models: []}"));
        let key = defaults_of::<ClientKey>(template("{name: '', sha256: ''}"));
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

/// The serialized form of a `T` built from its required fields alone: all defaults.
fn defaults_of<T: serde::de::DeserializeOwned + serde::Serialize>(required: Value) -> Value {
    let value: T = serde_yaml::from_value(required).expect("template deserializes");
    serde_yaml::to_value(value).expect("template serializes")
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
    /// The parser's message with every quoted value redacted (see [`redact_quoted`]).
    #[error("invalid YAML: {0}")]
    Yaml(String),
    #[error("not a LiteLLM proxy config: the document must be a mapping with a `model_list`")]
    NotAMapping,
    #[error(
        "no usable `model_list`: a LiteLLM proxy config needs a non-empty list of model entries"
    )]
    NoModelList,
    /// `general_settings.master_key` asks for a client key that cannot be known.
    #[error("general_settings.master_key: {0}")]
    MasterKey(String),
    /// Every deployment was skipped; one line per deployment, `path: reason`.
    #[error(
        "nothing in model_list can be served by Switchyard, so the proxy would have no route; \
         every deployment was skipped:\n{}",
        .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n")
    )]
    NothingServable(Vec<String>),
    #[error("the converted snapshot is invalid:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<FieldError>),
}

impl From<serde_yaml::Error> for LitellmError {
    fn from(e: serde_yaml::Error) -> Self {
        Self::Yaml(redact_quoted(&e.to_string()))
    }
}

/// serde_yaml's messages can quote the offending value (`invalid type: string "sk-…"`,
/// `duplicate entry with key "…"`) and a LiteLLM config holds keys, so every quoted run
/// longer than one character is replaced by `…`; the kind of error, its line and column and
/// one-character tokens (`':'`) stay.
pub(crate) fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(start) = rest.find(['"', '`', '\'']) {
        let quote = rest[start..].chars().next().expect("found a quote");
        out.push_str(&rest[..=start]);
        let after = &rest[start + 1..];
        match after.find(quote) {
            Some(end) if after[..end].chars().count() > 1 => {
                out.push('…');
                out.push(quote);
                rest = &after[end + 1..];
            }
            Some(end) => {
                out.push_str(&after[..=end]);
                rest = &after[end + 1..];
            }
            None => {
                out.push('…');
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// Converts a LiteLLM proxy config, reading `os.environ/NAME` values that are needed at
/// conversion time (a master key's hash, an `api_base`, whether an `api_key` is set) from the
/// process environment.
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

/// One `model_name`'s servable deployments, in config order.
struct Group {
    name: String,
    deployments: Vec<Deployment>,
}

/// A `model_name` all of whose deployments were skipped.
struct Dropped {
    name: String,
    indexes: Vec<usize>,
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

    /// The config's `environment_variables`, then the process environment; empty is unset.
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
        let keys = self.master_key(settings.master_key.as_ref())?;
        let list = match root.get("model_list") {
            Some(Value::Sequence(list)) if !list.is_empty() => list,
            _ => return Err(LitellmError::NoModelList),
        };
        let (groups, dropped) = self.deployments(list, &settings)?;
        let routes = self.routes(&groups, &dropped, &settings);
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

    /// Every entry converted or skipped (warned), grouped by `model_name` in order of first
    /// appearance; an error only when none is servable.
    fn deployments(
        &mut self,
        list: &[Value],
        settings: &Settings,
    ) -> Result<(Vec<Group>, Vec<Dropped>), LitellmError> {
        let mut groups: Vec<Group> = Vec::new();
        let mut skipped: Vec<(Skip, usize)> = Vec::new();
        for (index, entry) in list.iter().enumerate() {
            // A skipped entry's other settings do not matter: only its reason is reported.
            let mark = self.warnings.len();
            match self.entry(index, entry, settings) {
                Ok(d) => match groups.iter_mut().find(|g| g.name == d.model_name) {
                    Some(g) => g.deployments.push(d),
                    None => groups.push(Group {
                        name: d.model_name.clone(),
                        deployments: vec![d],
                    }),
                },
                Err(skip) => {
                    self.warnings.truncate(mark);
                    self.warnings.push(skip.to_string());
                    skipped.push((skip, index));
                }
            }
        }
        if groups.is_empty() {
            let reasons = skipped.iter().map(|(s, _)| s.to_string()).collect();
            return Err(LitellmError::NothingServable(reasons));
        }
        let mut dropped: Vec<Dropped> = Vec::new();
        for (skip, index) in skipped {
            let Some(name) = skip.model_name else {
                continue;
            };
            if groups.iter().any(|g| g.name == name) {
                continue;
            }
            match dropped.iter_mut().find(|d| d.name == name) {
                Some(d) => d.indexes.push(index),
                None => dropped.push(Dropped {
                    name,
                    indexes: vec![index],
                }),
            }
        }
        for d in &dropped {
            self.warn_dropped(d, &groups);
        }
        Ok((groups, dropped))
    }

    fn warn_dropped(&mut self, d: &Dropped, groups: &[Group]) {
        let entries: Vec<String> = d
            .indexes
            .iter()
            .map(|i| format!("model_list[{i}]"))
            .collect();
        let names: Vec<&str> = groups.iter().map(|g| g.name.as_str()).collect();
        let goes = match routes::most_specific_glob(&names, &d.name) {
            Some(i) => format!("requests for it go to route `{}`", names[i]),
            None => "requests for it get 404".to_owned(),
        };
        self.warn(
            format!("model_list[{}].model_name", d.indexes[0]),
            format!(
                "`{}` has no servable deployment ({} skipped), so it gets no route: {goes}",
                d.name,
                entries.join(", ")
            ),
        );
    }
}
