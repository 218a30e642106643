//! Turns a snapshot (from a file, or from `--upstream` alone) into the proxy's runtime state.

use crate::balance::{Endpoint, RetryBudgetState};
use crate::route::RouteTable;
use std::path::Path;
use std::sync::Arc;
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
            message: e.to_string(),
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
        }],
        keys: Vec::new(),
    }
}

/// A secret value that never prints.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// A backend ready to serve: secrets read, URLs normalised. Discovery of the served model and
/// context window happens on first use (see `upstream::discover`), since vLLM may still be
/// loading when the proxy starts.
#[derive(Debug)]
pub struct BackendRuntime {
    pub spec: Backend,
    /// Base URL without a trailing slash, e.g. `http://127.0.0.1:8000/v1`.
    pub base_url: String,
    /// Replicas requests are spread over (`baseUrl` alone when none are listed).
    pub endpoints: Vec<Arc<Endpoint>>,
    pub api_key: Option<Secret>,
    pub discovered: Arc<tokio::sync::OnceCell<crate::upstream::Discovered>>,
    pub retry_budget: Arc<RetryBudgetState>,
}

/// Everything a request needs, swapped whole on reload. In-flight requests keep the `Arc`
/// they started with, so a reload never changes a request half-way.
#[derive(Debug)]
pub struct Runtime {
    pub settings: ServerSettings,
    pub backends: Vec<Arc<BackendRuntime>>,
    pub routes: RouteTable,
    /// Upstream clients by connect timeout (routes' `connectMs`); reqwest has no per-request
    /// connect timeout, so each distinct value gets its own pool, kept across reloads.
    pub clients: std::collections::HashMap<u64, reqwest::Client>,
    /// Per-route limiters (routes with `limits`), kept across reloads while unchanged.
    pub route_limits: std::collections::HashMap<String, Arc<crate::keys::KeyEntry>>,
    /// Rebuilt on reload keeping the limit state of unchanged keys.
    pub keys: Arc<crate::keys::KeyTable>,
    pub version: String,
    /// The snapshot this runtime was built from, to carry state into the next one.
    pub snapshot: RoutingSnapshot,
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
                .find(|e| e.url == url.trim_end_matches('/'))
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
            let endpoints = urls
                .into_iter()
                .map(|u| old_endpoint(u).unwrap_or_else(|| Endpoint::new(u)))
                .collect();
            let same = previous.and_then(|p| p.backends.iter().find(|b| b.spec == *spec));
            backends.push(Arc::new(BackendRuntime {
                base_url: spec.base_url.trim_end_matches('/').to_owned(),
                endpoints,
                api_key,
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
            None => crate::keys::KeyTable::new(&snapshot.keys),
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
                    Arc::new(crate::keys::KeyEntry::route_limiter(&r.name, &r.limits))
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
            .map(Secret)
            .map_err(|_| err(format!("environment variable `{var}` is not set"))),
        (None, Some(path), None) => std::fs::read_to_string(path)
            .map(|s| Secret(s.trim_end().to_owned()))
            .map_err(|e| err(format!("cannot read `{path}`: {e}"))),
        (None, None, Some(key)) => match credentials {
            Some(c) => c
                .get(key)
                .map(|v| Secret(v.trim_end().to_owned()))
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
