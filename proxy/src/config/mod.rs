//! Turns a snapshot (from a file, or from `--upstream` alone) into the proxy's runtime state.

pub mod cluster;
pub mod litellm;
pub mod reload;

use crate::upstream::backend::{split_url, BackendRuntime, Secret};

use crate::routing::balance::{Endpoint, RetryBudgetState};
use crate::routing::route::RouteTable;
use regex::Regex;
use std::path::Path;
use std::sync::{Arc, LazyLock};
use switchyard_api::{
    Backend, ParameterPolicy, Protocol, Route, RoutingSnapshot, SecretRef, ServerSettings,
    SystemMessagePlacement, ThinkingStyle,
};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Parse { path: String, message: String },
    #[error("{path}: invalid configuration:\n{}", .errors.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid {
        path: String,
        errors: Vec<switchyard_api::FieldError>,
    },
    #[error("{field}: {message}")]
    Secret { field: String, message: String },
}

/// Parses and validates a YAML snapshot file.
pub fn load_file(path: &Path) -> Result<RoutingSnapshot, ConfigError> {
    let shown = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: shown.clone(),
        source,
    })?;
    let snapshot: RoutingSnapshot =
        serde_yaml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: shown.clone(),
            message: describe_yaml_error(&e),
        })?;
    let mut errors = snapshot.validate().err().unwrap_or_default();
    // A file that routes nothing is a mistake here (an operator's empty snapshot is not).
    if snapshot.routes.is_empty() {
        errors.insert(
            0,
            switchyard_api::FieldError {
                field: "routes".into(),
                message: "at least one route is required".into(),
            },
        );
    }
    if !errors.is_empty() {
        return Err(ConfigError::Invalid {
            path: shown,
            errors,
        });
    }
    Ok(snapshot)
}

/// A YAML parse error by location and kind only. serde's messages quote the offending value
/// (`invalid type: string "sk-…", expected struct SecretRef`), and a misplaced literal key is
/// exactly such a value: values are left out, field names and what was expected are kept.
pub fn describe_yaml_error(e: &serde_yaml::Error) -> String {
    static VALUE: LazyLock<Regex> = LazyLock::new(|| {
        // serde's `Unexpected`: `string "…"` (Debug-escaped), `integer `5``, `boolean `true``…
        Regex::new(r#"(invalid (?:type|value): [a-z ]+?) ?(?:"(?:[^"\\]|\\.)*"|`[^`]*`)"#)
            .expect("valid regex")
    });
    static VARIANT: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"unknown variant `[^`]*`").expect("valid regex"));
    static FIELD: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"unknown field `([^`]*)`").expect("valid regex"));
    static QUOTED: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r#""(?:[^"\\]|\\.)*""#).expect("valid regex"));
    let text = e.to_string();
    let text = VALUE.replace_all(&text, "$1");
    let text = VARIANT.replace_all(&text, "unknown variant");
    // A mistyped field name is worth showing; anything else in a key's place may be a value.
    let text = FIELD.replace_all(&text, |c: &regex::Captures| {
        let name = &c[1];
        let typo = name.len() <= 40
            && name.starts_with(|c: char| c.is_ascii_lowercase())
            && name.chars().all(|c| c.is_ascii_alphabetic());
        if typo {
            format!("unknown field `{name}`")
        } else {
            "unknown field".to_owned()
        }
    });
    QUOTED.replace_all(&text, "\"…\"").into_owned()
}

/// The zero-config snapshot: every client model name goes to the one upstream.
pub fn single_upstream(
    base_url: &str,
    protocol: Protocol,
    served_model: Option<String>,
    context_window: Option<u32>,
    api_key_env: Option<String>,
) -> RoutingSnapshot {
    RoutingSnapshot {
        version: Some("standalone".into()),
        server: ServerSettings::default(),
        backends: vec![Backend {
            name: "upstream".into(),
            base_url: base_url.trim_end_matches('/').to_owned(),
            protocol,
            served_model,
            context_window,
            api_key: api_key_env.map(|env| SecretRef {
                env: Some(env),
                file: None,
                secret_key: None,
            }),
            thinking: ThinkingStyle::Auto,
            system_messages: SystemMessagePlacement::Inline,
            text_tool_calls: true,
            parameters: ParameterPolicy::default(),
            endpoints: Vec::new(),
            forward_client_auth: false,
            health_check: None,
            outlier: Default::default(),
            retry_budget: Default::default(),
        }],
        routes: vec![Route {
            name: "all".into(),
            models: vec!["*".into()],
            backend: Some("upstream".into()),
            targets: Vec::new(),
            rules: Vec::new(),
            fallbacks: Vec::new(),
            context_fallbacks: Vec::new(),
            retries: Default::default(),
            timeouts: Default::default(),
            limits: Default::default(),
            responses_api: Default::default(),
        }],
        keys: Vec::new(),
    }
}

/// Everything a request needs, swapped whole on reload. In-flight requests keep the `Arc`
/// they started with, so a reload never changes a request half-way.
pub struct Runtime {
    pub settings: ServerSettings,
    pub backends: Vec<Arc<BackendRuntime>>,
    pub routes: RouteTable,
    /// Upstream clients by connect timeout (routes' `connectMs`); reqwest has no per-request
    /// connect timeout, so each distinct value gets its own pool, kept across reloads.
    pub clients: std::collections::HashMap<u64, reqwest::Client>,
    /// Per-route limiters (routes with `limits`), kept across reloads while unchanged.
    pub route_limits: std::collections::HashMap<String, Arc<crate::routing::keys::KeyEntry>>,
    /// Rebuilt on reload keeping the limit state of unchanged keys.
    pub keys: Arc<crate::routing::keys::KeyTable>,
    pub version: String,
    /// The snapshot this runtime was built from, to carry state into the next one.
    pub snapshot: RoutingSnapshot,
}

/// Without the snapshot, whose URLs may hold credentials.
impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("version", &self.version)
            .field("backends", &self.backends)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// The upstream client honouring `timeouts.connectMs` of a route.
    pub fn client_for(&self, timeouts: &switchyard_api::Timeouts) -> &reqwest::Client {
        self.clients
            .get(&timeouts.connect_ms)
            .or_else(|| self.clients.values().next())
            .expect("build_from creates at least the default client")
    }

    pub fn build(snapshot: RoutingSnapshot) -> Result<Self, ConfigError> {
        Self::build_from(snapshot, None, None)
    }

    /// Builds a runtime, reusing endpoint load and ejection state, retry budgets and
    /// discovery results of `previous` for whatever did not change. `credentials` resolves
    /// `secretKey` references (cluster mode).
    pub fn build_from(
        snapshot: RoutingSnapshot,
        previous: Option<&Runtime>,
        credentials: Option<&Credentials>,
    ) -> Result<Self, ConfigError> {
        snapshot.validate().map_err(|errors| ConfigError::Invalid {
            path: "config".into(),
            errors,
        })?;
        let version = switchyard_api::version_of(&snapshot);
        let old_endpoint = |url: &str| {
            previous
                .into_iter()
                .flat_map(|p| p.backends.iter())
                .flat_map(|b| b.endpoints.iter())
                .find(|e| e.url == url)
                .cloned()
        };
        let mut backends = Vec::with_capacity(snapshot.backends.len());
        for (i, spec) in snapshot.backends.iter().enumerate() {
            let api_key = spec
                .api_key
                .as_ref()
                .map(|r| read_secret(r, &format!("backends[{i}].apiKey"), credentials))
                .transpose()?;
            let urls: Vec<&str> = if spec.endpoints.is_empty() {
                vec![spec.base_url.as_str()]
            } else {
                spec.endpoints.iter().map(String::as_str).collect()
            };
            // Endpoints keep the shown URL (no credentials): it is what logs, metrics and
            // error messages print. The credentials go on each request (`authorize`).
            let mut url_credentials = Vec::new();
            let mut shown = |u: &str| {
                let (shown, creds) = split_url(u);
                if let Some(c) = creds {
                    if !url_credentials.contains(&c) {
                        url_credentials.push(c);
                    }
                }
                shown
            };
            let base_url = shown(&spec.base_url);
            let endpoints = urls
                .into_iter()
                .map(|u| {
                    let u = shown(u);
                    old_endpoint(&u).unwrap_or_else(|| Endpoint::new(&u))
                })
                .collect();
            let same = previous.and_then(|p| p.backends.iter().find(|b| b.spec == *spec));
            backends.push(Arc::new(BackendRuntime {
                base_url,
                endpoints,
                api_key,
                url_credentials,
                discovered: same.map(|b| b.discovered.clone()).unwrap_or_default(),
                retry_budget: same.map(|b| b.retry_budget.clone()).unwrap_or_else(|| {
                    Arc::new(RetryBudgetState::new(
                        spec.retry_budget.clone(),
                        std::time::Instant::now(),
                    ))
                }),
                spec: spec.clone(),
            }));
        }
        let routes = RouteTable::new(&snapshot.routes, &snapshot.backends);
        let keys = Arc::new(match previous {
            Some(p) => p.keys.reload(&snapshot.keys),
            None => crate::routing::keys::KeyTable::new(&snapshot.keys),
        });
        let route_limits = snapshot
            .routes
            .iter()
            .filter(|r| !r.limits.is_unlimited())
            .map(|r| {
                let unchanged = previous
                    .filter(|p| {
                        p.snapshot
                            .routes
                            .iter()
                            .any(|old| old.name == r.name && old.limits == r.limits)
                    })
                    .and_then(|p| p.route_limits.get(&r.name).cloned());
                let limiter = unchanged.unwrap_or_else(|| {
                    Arc::new(crate::routing::keys::KeyEntry::route_limiter(
                        &r.name, &r.limits,
                    ))
                });
                (r.name.clone(), limiter)
            })
            .collect();
        let clients = snapshot
            .routes
            .iter()
            .map(|r| r.timeouts.connect_ms)
            .chain([switchyard_api::Timeouts::default().connect_ms])
            .map(|ms| {
                let client = previous
                    .and_then(|p| p.clients.get(&ms).cloned())
                    .unwrap_or_else(|| {
                        crate::upstream::client_with_connect_timeout(
                            std::time::Duration::from_millis(ms),
                        )
                    });
                (ms, client)
            })
            .collect();
        Ok(Self {
            clients,
            route_limits,
            settings: snapshot.server.clone(),
            backends,
            routes,
            keys,
            version,
            snapshot,
        })
    }
}

/// Values of the credentials Secret published beside the snapshot (cluster mode).
pub type Credentials = std::collections::BTreeMap<String, String>;

fn read_secret(
    r: &SecretRef,
    field: &str,
    credentials: Option<&Credentials>,
) -> Result<Secret, ConfigError> {
    let err = |message: String| ConfigError::Secret {
        field: field.into(),
        message,
    };
    match (&r.env, &r.file, &r.secret_key) {
        (Some(var), None, None) => std::env::var(var)
            .map(Secret::new)
            .map_err(|_| err(format!("environment variable `{var}` is not set"))),
        (None, Some(path), None) => std::fs::read_to_string(path)
            .map(|s| Secret::new(s.trim_end().to_owned()))
            .map_err(|e| err(format!("cannot read `{path}`: {e}"))),
        (None, None, Some(key)) => match credentials {
            Some(c) => c
                .get(key)
                .map(|v| Secret::new(v.trim_end().to_owned()))
                .ok_or_else(|| err(format!("key `{key}` is not in the credentials Secret"))),
            None => Err(err(format!(
                "`secretKey: {key}` needs cluster mode (the operator's credentials Secret)"
            ))),
        },
        _ => Err(err("set exactly one of `env`, `file` or `secretKey`".into())),
    }
}

/// Protocol as given on the command line.
pub fn parse_protocol(s: &str) -> Result<Protocol, String> {
    match s {
        "openai" => Ok(Protocol::Openai),
        "anthropic" => Ok(Protocol::Anthropic),
        other => Err(format!(
            "unknown protocol `{other}` (expected `openai` or `anthropic`)"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(yaml: &str) -> RoutingSnapshot {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn parse_errors_give_location_and_kind_never_the_value() {
        let secret = "sk-ant-api03-literal-secret";
        let cases = [
            // A literal key where a SecretRef belongs.
            format!("backends:\n  - name: a\n    baseUrl: http://x/v1\n    apiKey: {secret}\nroutes: []\n"),
            format!("backends:\n  - name: a\n    baseUrl: http://x/v1\n    apiKey: {{env: [{secret}]}}\nroutes: []\n"),
            format!("backends:\n  - name: a\n    baseUrl: http://x/v1\n    protocol: {secret}\nroutes: []\n"),
            format!("backends:\n  - name: a\n    baseUrl: http://x/v1\n    contextWindow: \"{secret}\"\nroutes: []\n"),
            format!("backends:\n  - name: a\n    baseUrl: http://x/v1\n    {secret}: 1\nroutes: []\n"),
            format!("backends:\n  - name: a\n    baseUrl: http://x/v1\n    apiKey: {{\"{secret}\"\nroutes: []\n"),
        ];
        for yaml in &cases {
            let file = std::env::temp_dir().join(format!(
                "switchyard-config-test-{}.yaml",
                uuid::Uuid::new_v4().simple()
            ));
            std::fs::write(&file, yaml).unwrap();
            let err = load_file(&file).unwrap_err().to_string();
            let _ = std::fs::remove_file(&file);
            assert!(!err.contains("literal-secret"), "{err}");
            assert!(err.contains("line 4"), "{err}");
        }
        // What is safe to show stays: the field, the expected kind, a mistyped field name.
        let e = serde_yaml::from_str::<RoutingSnapshot>(&cases[0]).unwrap_err();
        let shown = describe_yaml_error(&e);
        assert!(
            shown.contains("apiKey") && shown.contains("invalid type: string, expected"),
            "{shown}"
        );
        let e = serde_yaml::from_str::<RoutingSnapshot>(
            "backends: [{name: a, baseUrl: 'http://x/v1', contextWindo: 5}]\nroutes: []\n",
        )
        .unwrap_err();
        assert!(describe_yaml_error(&e).contains("unknown field `contextWindo`"));
    }

    #[test]
    fn the_fleet_example_is_valid() {
        let file = concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/fleet.yaml");
        load_file(Path::new(file)).unwrap();
    }

    #[test]
    fn url_credentials_are_kept_apart_from_the_shown_url() {
        let snap = snapshot(
            "backends:\n  - name: a\n    baseUrl: 'http://user:secret%40pass@127.0.0.1:9/v1?key=urlsecret'\n    \
             endpoints: ['http://127.0.0.1:9/v1/', 'http://other:pw@127.0.0.2:9/v1']\n\
             routes: [{name: all, models: ['*'], backend: a}]\n",
        );
        let rt = Runtime::build(snap).unwrap();
        let b = &rt.backends[0];
        assert_eq!(b.base_url, "http://127.0.0.1:9/v1");
        let urls: Vec<&str> = b.endpoints.iter().map(|e| e.url.as_str()).collect();
        assert_eq!(urls, ["http://127.0.0.1:9/v1", "http://127.0.0.2:9/v1"]);
        assert_eq!(b.url_credentials.len(), 2);
        let c = &b.url_credentials[0];
        assert_eq!(c.base, "http://127.0.0.1:9/v1");
        let (user, pass) = c.basic.as_ref().unwrap();
        assert_eq!(
            (user.expose(), pass.as_ref().unwrap().expose()),
            ("user", "secret@pass")
        );
        assert_eq!(c.query[0].0, "key");
        assert_eq!(c.query[0].1.expose(), "urlsecret");
        let debug = format!("{rt:?}");
        for secret in ["secret", "urlsecret", "pw", "user"] {
            assert!(!debug.contains(secret), "{debug}");
        }
    }

    /// What `authorize` puts on a request to `url` of the backend built from `backend_yaml`.
    fn authorized(backend_yaml: &str, url: &str) -> reqwest::Request {
        let snap = snapshot(&format!(
            "backends:\n  - {backend_yaml}\nroutes: [{{name: all, models: ['*'], backend: a}}]\n"
        ));
        let rt = Runtime::build(snap).unwrap();
        let client = reqwest::Client::new();
        crate::upstream::authorize(client.post(url), url, &rt.backends[0])
            .build()
            .unwrap()
    }

    #[test]
    fn url_credentials_go_back_on_each_request() {
        let b = "{name: a, baseUrl: 'http://u:p@127.0.0.1:9/v1?key=k1&x=y'}";
        let r = authorized(b, "http://127.0.0.1:9/v1/chat/completions");
        assert_eq!(
            r.url().as_str(),
            "http://127.0.0.1:9/v1/chat/completions?key=k1&x=y"
        );
        assert_eq!(r.headers()["authorization"], "Basic dTpw");
        // The server root (/version, /tokenize) of the same origin too.
        let r = authorized(b, "http://127.0.0.1:9/tokenize");
        assert_eq!(r.url().query(), Some("key=k1&x=y"));
        // Another server: nothing.
        let r = authorized(b, "http://127.0.0.3:9/v1/models");
        assert!(r.url().query().is_none() && !r.headers().contains_key("authorization"));
        // An apiKey sent as a bearer wins over user info (one authorization header).
        std::env::set_var("SWITCHYARD_CONFIG_TEST_KEY", "k");
        let r = authorized(
            "{name: a, baseUrl: 'http://u:p@127.0.0.1:9/v1', apiKey: {env: SWITCHYARD_CONFIG_TEST_KEY}}",
            "http://127.0.0.1:9/v1/models",
        );
        let auth: Vec<_> = r.headers().get_all("authorization").iter().collect();
        assert_eq!(auth, ["Bearer k"]);
    }

    #[tokio::test]
    async fn a_forward_client_auth_backend_is_served_without_discovery() {
        // Nothing listens on port 9: any discovery request would fail.
        let snap = snapshot(
            "backends: [{name: a, baseUrl: 'http://127.0.0.1:9/v1', protocol: anthropic, \
             forwardClientAuth: true, servedModel: claude-x}]\n\
             routes: [{name: all, models: ['*'], backend: a}]\n",
        );
        let rt = Runtime::build(snap).unwrap();
        let d = crate::upstream::discover(&reqwest::Client::new(), &rt.backends[0])
            .await
            .unwrap();
        assert_eq!(d.served_model, "claude-x");
        assert_eq!(d.context_window, None);
    }

    #[test]
    fn forward_client_auth_with_client_keys_is_refused_at_load() {
        let snap = snapshot(&format!(
            "backends: [{{name: a, baseUrl: 'https://api.anthropic.com/v1', protocol: anthropic, \
             forwardClientAuth: true, servedModel: claude-x}}]\n\
             routes: [{{name: all, models: ['*'], backend: a}}]\n\
             keys: [{{name: team, sha256: '{}'}}]\n",
            "0".repeat(64)
        ));
        let err = Runtime::build(snap).unwrap_err().to_string();
        assert!(
            err.contains("backends[0].forwardClientAuth") && err.contains("gateway key"),
            "{err}"
        );
    }

    #[test]
    fn each_route_connect_timeout_gets_a_client_and_state_carries_over() {
        let snapshot: RoutingSnapshot = serde_yaml::from_str(
            "backends: [{name: a, baseUrl: 'http://127.0.0.1:9/v1'}]\n\
             routes:\n  - {name: fast, models: [f], backend: a, timeouts: {connectMs: 250}, limits: {concurrent: 1}}\n  - {name: all, models: ['*'], backend: a}\n",
        )
        .unwrap();
        let first = Runtime::build(snapshot.clone()).unwrap();
        let mut ms: Vec<u64> = first.clients.keys().copied().collect();
        ms.sort_unstable();
        assert_eq!(ms, [250, 5_000]);
        let fast = first.routes.resolve("f").unwrap();
        assert!(std::ptr::eq(
            first.client_for(&fast.timeouts),
            &first.clients[&250]
        ));
        // A held permit of the route limiter survives a reload of the same config.
        let permit = first.route_limits["fast"].admit().unwrap();
        let second = Runtime::build_from(snapshot, Some(&first), None).unwrap();
        assert!(
            second.route_limits["fast"].admit().is_err(),
            "limit state carried over"
        );
        drop(permit);
        assert!(second.route_limits["fast"].admit().is_ok());
        assert!(Arc::ptr_eq(
            &first.backends[0].endpoints[0],
            &second.backends[0].endpoints[0]
        ));
    }
}
