//! One `model_list` entry → a [`Deployment`] (its backend and load-balancing settings), or a
//! [`Skip`] saying, by the config's own field path, why it cannot be served.

use super::model::{non_chat, parse_model, Provider};
use super::settings::Settings;
use super::values::{key_name, millis, push_unique, scalar};
use super::{Converter, ENV_PREFIX};
use serde_yaml::{Mapping, Value};
use std::fmt;
use switchyard_api::{Backend, ParameterPolicy, SystemMessagePlacement, ThinkingStyle};

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

/// One servable `model_list` entry.
pub(super) struct Deployment {
    pub model_name: String,
    /// Position in `model_list`, for warnings about the group.
    pub index: usize,
    /// `name` is empty until the backend is interned.
    pub backend: Backend,
    /// Source of the backend's name.
    pub hint: String,
    pub weight: Option<f64>,
    pub rpm: Option<f64>,
    pub tpm: Option<f64>,
    pub timeout: Option<f64>,
    pub stream_timeout: Option<f64>,
    pub num_retries: Option<u32>,
}

/// Why an entry is not served: the field at fault, and the reason.
#[derive(Debug)]
pub(super) struct Skip {
    pub path: String,
    pub model_name: Option<String>,
    pub message: String,
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}; ", self.path, self.message)?;
        match &self.model_name {
            Some(name) => write!(f, "deployment of `{name}` skipped"),
            None => f.write_str("deployment skipped"),
        }
    }
}

impl Converter<'_> {
    pub(super) fn entry(
        &mut self,
        index: usize,
        value: &Value,
        settings: &Settings,
    ) -> Result<Deployment, Skip> {
        let at = format!("model_list[{index}]");
        let skip = |path: String, name: Option<&str>, message: &str| Skip {
            path,
            model_name: name.map(str::to_owned),
            message: message.to_owned(),
        };
        let Some(map) = value.as_mapping() else {
            let why = "expected a mapping with `model_name` and `litellm_params`";
            return Err(skip(at, None, why));
        };
        let model_name = match map.get("model_name").and_then(scalar) {
            Some(name) if !name.trim().is_empty() => name,
            _ => return Err(skip(format!("{at}.model_name"), None, "missing or empty")),
        };
        let name = Some(model_name.as_str());
        for (k, _) in map {
            let key = key_name(k);
            if !matches!(key.as_str(), "model_name" | "litellm_params" | "model_info") {
                self.unsupported(format!("{at}.{key}"));
            }
        }
        let Some(params) = map.get("litellm_params").and_then(Value::as_mapping) else {
            let path = format!("{at}.litellm_params");
            return Err(skip(path, name, "missing or not a mapping"));
        };
        let pat = format!("{at}.litellm_params");
        let Some(model) = params.get("model").and_then(scalar) else {
            return Err(skip(format!("{pat}.model"), name, "missing"));
        };
        let info = match map.get("model_info") {
            Some(Value::Mapping(info)) => Some(info),
            None | Some(Value::Null) => None,
            Some(_) => {
                self.warn(format!("{at}.model_info"), "not a mapping; ignored");
                None
            }
        };
        let mode = info.and_then(|i| i.get("mode")).and_then(scalar);
        if let Some(why) = non_chat(mode.as_deref(), &model) {
            let field = if mode.is_some() {
                format!("{at}.model_info.mode")
            } else {
                format!("{pat}.model")
            };
            return Err(skip(field, name, &why));
        }
        let custom = params.get("custom_llm_provider").and_then(scalar);
        let (provider, served, inferred) = parse_model(&model, custom.as_deref())
            .map_err(|(field, why)| skip(format!("{pat}.{field}"), name, &why))?;
        let backend = self
            .backend_for(provider, &served, params, &pat)
            .map_err(|(path, why)| skip(path, name, &why))?;
        let mut d = Deployment {
            model_name: model_name.clone(),
            index,
            hint: hint(provider, &served),
            backend,
            weight: None,
            rpm: None,
            tpm: None,
            timeout: None,
            stream_timeout: None,
            num_retries: None,
        };
        d.backend.outlier = settings.outlier();
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
        self.params(&mut d, params, &pat);
        if let Some(info) = info {
            self.model_info(&mut d.backend, info, &at);
        }
        for name in &settings.additional_drop {
            push_unique(&mut d.backend.parameters.drop, name.clone());
        }
        self.entry_notes(&d, provider, &model, &pat);
        Ok(d)
    }

    /// The backend's address, protocol, model and key; `Err((path, reason))` when the
    /// deployment cannot be reached.
    fn backend_for(
        &mut self,
        provider: Provider,
        served: &str,
        params: &Mapping,
        pat: &str,
    ) -> Result<Backend, (String, String)> {
        let given = |field: &str| params.get(field).filter(|v| !v.is_null());
        let (field, raw_base) = match (given("api_base"), given("base_url")) {
            (None, Some(v)) => ("base_url", Some(v)),
            (v, _) => ("api_base", v),
        };
        let base_path = format!("{pat}.{field}");
        let base_url = self.base_url(provider, raw_base, &base_path)?;
        let key_path = format!("{pat}.api_key");
        let has_base = raw_base.is_some();
        let hint = hint(provider, served);
        let api_key = self.api_key(provider, params.get("api_key"), has_base, &hint, &key_path)?;
        Ok(Backend {
            name: String::new(),
            base_url,
            endpoints: Vec::new(),
            protocol: provider.protocol(),
            served_model: (!served.contains('*')).then(|| served.to_owned()),
            context_window: None,
            api_key,
            thinking: ThinkingStyle::Auto,
            system_messages: SystemMessagePlacement::Inline,
            text_tool_calls: true,
            parameters: ParameterPolicy::default(),
            forward_client_auth: false,
            health_check: None,
            outlier: Default::default(),
            retry_budget: Default::default(),
        })
    }

    fn base_url(
        &mut self,
        provider: Provider,
        raw: Option<&Value>,
        path: &str,
    ) -> Result<String, (String, String)> {
        let fail = |message: String| (path.to_owned(), message);
        let url = match raw {
            Some(v) => {
                let s = scalar(v).ok_or_else(|| fail("not a string".into()))?;
                match s.strip_prefix(ENV_PREFIX) {
                    Some(name) => {
                        let name = name.trim();
                        let url = self.lookup(name).ok_or_else(|| {
                            fail(format!("environment variable {name} is not set"))
                        })?;
                        self.warn(path, format!("read from `{name}` at conversion time"));
                        url
                    }
                    None => s,
                }
            }
            None => self.default_base(provider, path)?,
        };
        let mut url = url.trim().trim_end_matches('/').to_owned();
        if !(url.starts_with("http://") || url.starts_with("https://")) {
            let shown = without_userinfo(&url);
            return Err(fail(format!(
                "`{shown}` must be an http:// or https:// URL"
            )));
        }
        if provider.under_v1() {
            // LiteLLM calls `{api_base}/v1/messages` (Ollama: `/api/chat`) on a host;
            // Switchyard calls `{baseUrl}/messages` (or `/chat/completions`).
            if let Some(base) = url.strip_suffix("/messages") {
                url = base.to_owned();
            }
            if !url.ends_with("/v1") {
                url.push_str("/v1");
            }
        } else if let Some(base) = url.strip_suffix("/chat/completions") {
            url = base.to_owned();
            self.warn(
                path,
                "ends with /chat/completions, which the client appends itself; cut",
            );
        }
        Ok(url)
    }

    /// LiteLLM's base for a deployment without `api_base`: its variables, else its default.
    fn default_base(&mut self, provider: Provider, path: &str) -> Result<String, (String, String)> {
        let (vars, default) = provider.default_base();
        if let Some((var, url)) = vars
            .iter()
            .find_map(|v| self.lookup(v).map(|url| (*v, url)))
        {
            self.warn(
                path,
                format!(
                    "not set; read from `{var}` at conversion time, as LiteLLM would at startup"
                ),
            );
            return Ok(url);
        }
        default.map(str::to_owned).ok_or_else(|| {
            let vars = if vars.is_empty() {
                String::new()
            } else {
                format!(" (or {})", vars.join(", "))
            };
            (
                path.to_owned(),
                format!(
                    "missing: `{}/` needs the server's URL, e.g. http://host:8000/v1{vars}",
                    provider.name()
                ),
            )
        })
    }

    fn params(&mut self, d: &mut Deployment, params: &Mapping, pat: &str) {
        for (k, v) in params {
            let key = key_name(k);
            let path = format!("{pat}.{key}");
            match key.as_str() {
                "model" | "custom_llm_provider" | "api_base" | "base_url" | "api_key" => {}
                "timeout" => d.timeout = self.seconds(v, &path),
                "stream_timeout" => d.stream_timeout = self.seconds(v, &path),
                "num_retries" => d.num_retries = self.count(v, &path),
                "weight" => d.weight = self.non_negative(v, &path),
                "rpm" => d.rpm = self.rate(v, &path),
                "tpm" => d.tpm = self.rate(v, &path),
                "cooldown_time" => {
                    if let Some(secs) = self.seconds(v, &path) {
                        let o = &mut d.backend.outlier;
                        o.base_ejection_ms = millis(secs);
                        o.max_ejection_ms = o.max_ejection_ms.max(o.base_ejection_ms);
                        self.warn(path, super::settings::COOLDOWN_NOTE);
                    }
                }
                "drop_params" => {
                    if self.flag(v, &path) == Some(false) {
                        self.drop_params_false(&path);
                    }
                }
                "additional_drop_params" => {
                    for name in self.string_list(v, &path) {
                        push_unique(&mut d.backend.parameters.drop, name);
                    }
                }
                "extra_body" => self.extra_body(&mut d.backend, v, &path),
                k if SAMPLING_PARAMS.contains(&k) => match serde_json::to_value(v) {
                    Ok(json) => {
                        d.backend.parameters.extra_body.insert(key.clone(), json);
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
    }

    fn rate(&mut self, v: &Value, path: &str) -> Option<f64> {
        let n = self.non_negative(v, path);
        self.warn(
            path,
            "per-deployment rate limits are not enforced (Switchyard limits per client key, \
             keys[].limits); used only as a load-balancing weight, as LiteLLM's simple-shuffle \
             does",
        );
        n
    }

    fn extra_body(&mut self, backend: &mut Backend, v: &Value, path: &str) {
        match v {
            Value::Mapping(m) => {
                for (k, v) in m {
                    let name = key_name(k);
                    match serde_json::to_value(v) {
                        Ok(json) => {
                            backend.parameters.extra_body.insert(name, json);
                        }
                        Err(e) => self.warn(format!("{path}.{name}"), format!("{e}; ignored")),
                    }
                }
            }
            Value::Null => {}
            _ => self.warn(path, "not a mapping; ignored"),
        }
    }

    fn model_info(&mut self, backend: &mut Backend, info: &Mapping, at: &str) {
        for (k, v) in info {
            let key = key_name(k);
            let path = format!("{at}.model_info.{key}");
            match key.as_str() {
                "max_input_tokens" => {
                    backend.context_window = self
                        .count(v, &path)
                        .filter(|n| *n > 0)
                        .or(backend.context_window);
                }
                // `chat`: anything else was skipped before.
                "mode" => {}
                _ => self.unsupported(path),
            }
        }
    }

    /// Warnings about how a converted deployment differs from LiteLLM's.
    fn entry_notes(&mut self, d: &Deployment, provider: Provider, model: &str, pat: &str) {
        if provider == Provider::Anthropic && !d.backend.parameters.extra_body.is_empty() {
            self.warn(
                pat,
                "parameters.extraBody is currently applied to openai-protocol backends only; \
                 this anthropic backend sends the client's parameters unchanged",
            );
        }
        if d.backend.served_model.is_none() {
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
    }
}

/// Source of a backend's name: the served model, or `<provider>-wildcard`.
fn hint(provider: Provider, served: &str) -> String {
    if served.contains('*') {
        format!("{}-wildcard", provider.name())
    } else {
        served.to_owned()
    }
}

/// A URL for a message, without `user:password@`.
fn without_userinfo(url: &str) -> String {
    match url.rsplit_once('@') {
        Some((_, host)) => format!("…@{host}"),
        None => url.to_owned(),
    }
}
