//! Credentials: backend `api_key`s (never copied into the snapshot) and the client key made
//! from `general_settings.master_key` (only its SHA-256 is kept).

use super::model::Provider;
use super::values::{sanitize, scalar};
use super::{Converter, LitellmError, SecretValue, ENV_PREFIX, MASTER_KEY_NAME};
use serde_yaml::Value;
use sha2::{Digest, Sha256};
use switchyard_api::{ClientKey, SecretRef};

fn env_ref(name: &str) -> SecretRef {
    SecretRef {
        env: Some(name.to_owned()),
        file: None,
        secret_key: None,
    }
}

impl Converter<'_> {
    /// The backend's key. `Err((path, reason))` skips the deployment: a key named by a
    /// variable that is not set (see the module docs for why that skips rather than runs).
    pub(super) fn api_key(
        &mut self,
        provider: Provider,
        value: Option<&Value>,
        has_base: bool,
        hint: &str,
        path: &str,
    ) -> Result<Option<SecretRef>, (String, String)> {
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
            return self.implicit_key(provider, has_base, path);
        };
        if let Some(name) = raw.strip_prefix(ENV_PREFIX) {
            let name = name.trim();
            if name.is_empty() {
                self.warn(path, "`os.environ/` without a variable name; ignored");
                return Ok(None);
            }
            if self.lookup(name).is_none() {
                let why = format!("environment variable {name} is not set");
                return Err((path.to_owned(), why));
            }
            if let Some(value) = self.config_env.get(name) {
                self.secret_env
                    .insert(name.to_owned(), SecretValue(value.clone()));
            }
            return Ok(Some(env_ref(name)));
        }
        if is_placeholder_key(&raw) {
            self.warn(
                path,
                "looks like a placeholder, not a credential (LiteLLM's openai/ needs some value; a \
                 vLLM started without --api-key ignores it), so no key is sent; if the server does \
                 check a key, set the backend's apiKey.env",
            );
            return Ok(None);
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
        Ok(Some(env_ref(&name)))
    }

    /// LiteLLM's key variable for a deployment without `api_key`. A hosted API without its
    /// key cannot answer, so the deployment is skipped; a server at an explicit `api_base`
    /// (often a local vLLM that checks no key) is sent none.
    fn implicit_key(
        &mut self,
        provider: Provider,
        has_base: bool,
        path: &str,
    ) -> Result<Option<SecretRef>, (String, String)> {
        let Some(var) = provider.default_key_env(has_base) else {
            return Ok(None);
        };
        if self.lookup(var).is_some() {
            return Ok(Some(env_ref(var)));
        }
        if has_base {
            self.warn(
                path,
                format!("not set, and {var} (LiteLLM's default for it) is not set either: no key is sent"),
            );
            return Ok(None);
        }
        let why = format!(
            "not set, and environment variable {var} (LiteLLM's default for `{}/`) is not set",
            provider.name()
        );
        Err((path.to_owned(), why))
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

    /// The client key. A config that sets `master_key` asks for one: when its value cannot be
    /// known (an unset variable, empty, not a string) that is an error, never an open proxy.
    pub(super) fn master_key(
        &mut self,
        value: Option<&Value>,
    ) -> Result<Vec<ClientKey>, LitellmError> {
        const AT: &str = "general_settings.master_key";
        let Some(value) = value.filter(|v| !v.is_null()) else {
            return Ok(Vec::new());
        };
        let fail = |m: String| Err(LitellmError::MasterKey(m));
        let Some(raw) = scalar(value) else {
            return fail("not a string; the proxy would accept any key".into());
        };
        let key = match raw.strip_prefix(ENV_PREFIX) {
            Some(name) => {
                let name = name.trim();
                let Some(key) = self.lookup(name) else {
                    return fail(format!(
                        "environment variable {name} is not set (or empty), so the client key \
                         cannot be known; a config that asks for a key never runs without one. \
                         Set {name}, or remove master_key to run without client keys"
                    ));
                };
                self.warn(
                    AT,
                    format!(
                        "read from `{name}` at conversion time; the snapshot keeps only its \
                         SHA-256, so convert again when the key changes"
                    ),
                );
                key
            }
            None => raw,
        };
        if key.is_empty() {
            return fail("empty; the proxy would accept any key".into());
        }
        Ok(vec![ClientKey {
            name: MASTER_KEY_NAME.into(),
            sha256: sha256_hex(&key),
            routes: Vec::new(),
            limits: Default::default(),
            log_content: false,
        }])
    }
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
        "ollama",
        "lm-studio",
    ];
    PLACEHOLDERS.contains(&key.trim().to_ascii_lowercase().as_str())
}

pub(super) fn sha256_hex(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
