//! `compile`: the custom resources of one namespace, plus which vLLM endpoints are ready, into
//! the routing snapshot the proxies serve from. Pure: the operator gathers the inputs and
//! publishes the output.
//!
//! Errors are isolated per object. A backend or route that cannot be compiled is left out and
//! reported on its own (the operator writes the report to that object's status); everything
//! else is still published. Two routes that list the same model entry: the older route keeps
//! it, the newer one loses that entry and is told why.

use crate::crd::condition::reason;
use crate::crd::{InferenceBackend, ModelRoute};
use crate::snapshot::{
    Backend, ClientKey, HealthCheck, Protocol, Route, RoutingSnapshot, SecretRef, ServerSettings,
};
use crate::FieldError;
use std::collections::{BTreeMap, BTreeSet};

/// Everything `compile` reads.
#[derive(Debug, Clone, Default)]
pub struct CompileInput<'a> {
    pub backends: &'a [InferenceBackend],
    pub routes: &'a [ModelRoute],
    /// Ready endpoints of each operator-run backend, by backend name: base URLs with `/v1`
    /// (`http://10.0.3.7:8000/v1`). A backend missing here has none ready.
    pub endpoints: BTreeMap<String, Vec<String>>,
    pub server: ServerSettings,
    pub keys: Vec<ClientKey>,
    /// Backends the operator refuses for a reason outside their spec (a credentials Secret it
    /// cannot read), by name: left out of the snapshot and reported with this problem, so
    /// their routes say they were refused rather than missing.
    pub refused: BTreeMap<String, Problem>,
}

/// One thing wrong with one object, worded for its status condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Condition reason (`crate::crd::condition::reason`).
    pub reason: &'static str,
    pub message: String,
}

/// What became of one `InferenceBackend`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BackendReport {
    /// In the snapshot.
    pub accepted: bool,
    pub problems: Vec<Problem>,
}

/// What became of one `ModelRoute`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RouteReport {
    /// In the snapshot (possibly with fewer models than asked, see `problems`).
    pub accepted: bool,
    /// The model entries it serves in the snapshot.
    pub models: Vec<String>,
    pub problems: Vec<Problem>,
}

/// A Secret key the operator copies into the credentials Secret under `key`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credential {
    /// The `InferenceBackend` (by name) whose Secret this is.
    pub backend: String,
    /// Key in the credentials Secret, referenced from the snapshot as `apiKey.secretKey`.
    pub key: String,
    pub secret_name: String,
    pub secret_key: String,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Compiled {
    pub snapshot: RoutingSnapshot,
    /// By object name.
    pub backends: BTreeMap<String, BackendReport>,
    pub routes: BTreeMap<String, RouteReport>,
    pub credentials: Vec<Credential>,
    /// Problems of the snapshot as a whole (no route at all yet): the operator does not
    /// publish such a snapshot and the proxies keep the one they have.
    pub snapshot_errors: Vec<FieldError>,
}

pub fn compile(input: &CompileInput<'_>) -> Compiled {
    let mut backend_reports = BTreeMap::new();
    let mut backends = Vec::new();
    let mut credentials = Vec::new();
    for ib in input.backends {
        let Some(name) = ib.metadata.name.clone() else {
            continue;
        };
        let mut report = BackendReport::default();
        if let Some(problem) = input.refused.get(&name) {
            report.problems.push(problem.clone());
            backend_reports.insert(name, report);
            continue;
        }
        match compile_backend(ib, &name, &input.endpoints, !input.keys.is_empty()) {
            Ok((backend, credential)) => {
                report.accepted = true;
                backends.push(backend);
                credentials.extend(credential);
            }
            Err(problem) => report.problems.push(problem),
        }
        backend_reports.insert(name, report);
    }
    backends.sort_by(|a, b| a.name.cmp(&b.name));

    // Validity of a route depends only on the backends; which models it keeps depends on the
    // older routes, so routes are judged first and then claim their models oldest first.
    let mut by_age: Vec<&ModelRoute> = input
        .routes
        .iter()
        .filter(|r| r.metadata.name.is_some())
        .collect();
    by_age.sort_by(|a, b| {
        let created = |r: &ModelRoute| r.metadata.creation_timestamp.as_ref().map(|t| t.0);
        created(a)
            .cmp(&created(b))
            .then_with(|| a.metadata.name.cmp(&b.metadata.name))
    });
    let mut route_reports = BTreeMap::new();
    let mut routes = Vec::new();
    let mut claimed: BTreeMap<String, String> = BTreeMap::new();
    for mr in by_age {
        let name = mr.metadata.name.clone().unwrap_or_default();
        let mut report = RouteReport::default();
        match compile_route(mr, &name, &backends, &backend_reports) {
            Err(problems) => report.problems = problems,
            Ok(mut route) => {
                let mut kept: Vec<String> = Vec::new();
                for model in &route.models {
                    if kept.contains(model) {
                        continue;
                    }
                    match claimed.get(model) {
                        Some(owner) if owner != &name => report.problems.push(Problem {
                            reason: reason::MODEL_CONFLICT,
                            message: format!(
                                "model `{model}` is already routed by the older route `{owner}`"
                            ),
                        }),
                        _ => kept.push(model.clone()),
                    }
                }
                for model in &kept {
                    claimed.insert(model.clone(), name.clone());
                }
                if !kept.is_empty() {
                    route.models = kept.clone();
                    report.accepted = true;
                    report.models = kept;
                    routes.push(route);
                }
            }
        }
        route_reports.insert(name, report);
    }
    routes.sort_by(|a, b| a.name.cmp(&b.name));

    let snapshot = RoutingSnapshot {
        version: None,
        server: input.server.clone(),
        backends,
        routes,
        keys: input.keys.clone(),
    };
    let snapshot_errors = snapshot.validate().err().unwrap_or_default();
    Compiled {
        snapshot,
        backends: backend_reports,
        routes: route_reports,
        credentials,
        snapshot_errors,
    }
}

fn compile_backend(
    ib: &InferenceBackend,
    name: &str,
    endpoints: &BTreeMap<String, Vec<String>>,
    client_keys: bool,
) -> Result<(Backend, Option<Credential>), Problem> {
    let invalid = |message: String| Problem {
        reason: reason::INVALID_SPEC,
        message,
    };
    let spec = &ib.spec;
    let base_url = match (&spec.vllm, &spec.external) {
        (Some(_), None) | (None, Some(_)) => ib.base_url().expect("one kind is set"),
        _ => {
            return Err(invalid(
                "set exactly one of `vllm` or `external`".to_owned(),
            ))
        }
    };
    let mut credential = None;
    let api_key = match spec
        .external
        .as_ref()
        .and_then(|e| e.api_key_secret_ref.as_ref())
    {
        Some(secret) => {
            let key = format!("backend.{name}.apiKey");
            credential = Some(Credential {
                backend: name.to_owned(),
                key: key.clone(),
                secret_name: secret.name.clone(),
                secret_key: secret.key.clone(),
            });
            Some(SecretRef {
                env: None,
                file: None,
                secret_key: Some(key),
            })
        }
        None => None,
    };
    let proxy = &spec.proxy;
    let backend = Backend {
        name: name.to_owned(),
        base_url,
        endpoints: match spec.vllm {
            Some(_) => endpoints.get(name).cloned().unwrap_or_default(),
            None => Vec::new(),
        },
        protocol: match &spec.external {
            Some(e) => e.protocol,
            None => Protocol::Openai,
        },
        served_model: ib.served_model_name().map(str::to_owned),
        context_window: proxy
            .context_window
            .or_else(|| spec.vllm.as_ref().and_then(|v| v.max_model_len)),
        api_key,
        thinking: proxy.thinking,
        system_messages: proxy.system_messages,
        text_tool_calls: proxy.text_tool_calls,
        parameters: proxy.parameters.clone(),
        forward_client_auth: proxy.forward_client_auth,
        // vLLM serves `/health`; probing it lets proxies skip a replica that is restarting.
        health_check: proxy
            .health_check
            .clone()
            .or_else(|| spec.vllm.as_ref().map(|_| HealthCheck::default())),
        outlier: proxy.outlier.clone(),
        retry_budget: proxy.retry_budget.clone(),
    };
    // The snapshot's own checks, on this backend alone (with the client keys, if any, so a
    // backend that would leak them is refused here rather than making the whole snapshot one
    // the proxies refuse).
    let mut errors = Vec::new();
    if backend.forward_client_auth {
        let at = |f: &str| format!("backends[0].{f}");
        crate::validate::check_forward_client_auth(&backend, client_keys, &at, &mut errors);
    }
    let probe = RoutingSnapshot {
        backends: vec![backend.clone()],
        ..Default::default()
    };
    if let Err(more) = probe.validate() {
        for e in more {
            if !errors.contains(&e) {
                errors.push(e);
            }
        }
    }
    if !errors.is_empty() {
        let mine: Vec<String> = errors
            .iter()
            .filter_map(|e| {
                let field = e.field.strip_prefix("backends[0].")?;
                Some(format!("{}: {}", backend_spec_path(field), e.message))
            })
            .collect();
        if !mine.is_empty() {
            return Err(invalid(mine.join("; ")));
        }
    }
    Ok((backend, credential))
}

fn compile_route(
    mr: &ModelRoute,
    name: &str,
    backends: &[Backend],
    backend_reports: &BTreeMap<String, BackendReport>,
) -> Result<Route, Vec<Problem>> {
    let spec = &mr.spec;
    let route = Route {
        name: name.to_owned(),
        models: spec.models.clone(),
        backend: spec.backend.clone(),
        targets: spec.targets.clone(),
        rules: spec.rules.clone(),
        fallbacks: spec.fallbacks.clone(),
        context_fallbacks: spec.context_fallbacks.clone(),
        retries: spec.retries.clone(),
        timeouts: spec.timeouts.clone(),
        limits: spec.limits.clone(),
        responses_api: spec.responses_api,
    };
    let mut problems = Vec::new();

    // References first, with a message that says whether the backend is missing or refused.
    let names = route.backend_names();
    let known: BTreeSet<&str> = backends.iter().map(|b| b.name.as_str()).collect();
    let mut missing = BTreeSet::new();
    for n in &names {
        if !known.contains(n.as_str()) && missing.insert(n.clone()) {
            let message = match backend_reports.get(n) {
                Some(_) => format!(
                    "InferenceBackend `{n}` was refused (see its status); requests cannot go there"
                ),
                None => format!("no InferenceBackend named `{n}` in this namespace"),
            };
            problems.push(Problem {
                reason: reason::BACKEND_NOT_FOUND,
                message,
            });
        }
    }
    if !problems.is_empty() {
        return Err(problems);
    }

    // Then the snapshot's own checks (globs, weights, rule conditions, retries, timeouts).
    let probe = RoutingSnapshot {
        backends: backends.to_vec(),
        routes: vec![route.clone()],
        ..Default::default()
    };
    if let Err(errors) = probe.validate() {
        for e in errors {
            if let Some(field) = e.field.strip_prefix("routes[0].") {
                problems.push(Problem {
                    reason: reason::INVALID_SPEC,
                    message: format!("{}: {}", spec_path(field), e.message),
                });
            }
        }
    }
    if problems.is_empty() {
        Ok(route)
    } else {
        Err(problems)
    }
}

/// A snapshot backend field → where the user sets it in an `InferenceBackend`.
fn backend_spec_path(snapshot_field: &str) -> String {
    match snapshot_field {
        "forwardClientAuth" => "spec.proxy.forwardClientAuth".into(),
        "servedModel" => "spec.external.servedModelName".into(),
        "baseUrl" => "spec.external.url".into(),
        "contextWindow" => "spec.proxy.contextWindow".into(),
        other => spec_path(other),
    }
}

/// `models[0]` → `spec.models[0]`: the path a user finds in the manifest.
fn spec_path(snapshot_field: &str) -> String {
    format!("spec.{snapshot_field}")
}

/// Content version of a snapshot (FNV-1a over its canonical JSON): equal snapshots get equal
/// versions on every machine, so the operator can tell which proxies run the current one.
pub fn snapshot_version(snapshot: &RoutingSnapshot) -> String {
    let mut unversioned = snapshot.clone();
    unversioned.version = None;
    format!("{:016x}", crate::version::content_hash(&unversioned))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn backend(yaml: &str) -> InferenceBackend {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn route(name: &str, created: &str, spec: &str) -> ModelRoute {
        serde_yaml::from_str(&format!(
            "apiVersion: switchyard.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: {name}, namespace: ai, creationTimestamp: '{created}'}}\nspec: {spec}\n"
        ))
        .unwrap()
    }

    fn qwen() -> InferenceBackend {
        backend(
            r#"
apiVersion: switchyard.dev/v1alpha1
kind: InferenceBackend
metadata: {name: qwen, namespace: ai}
spec:
  vllm:
    model: nvidia/Qwen3-Next-80B-A3B-Instruct-NVFP4
    servedModelName: qwen3-next
    maxModelLen: 131072
"#,
        )
    }

    fn anthropic() -> InferenceBackend {
        backend(
            r#"
apiVersion: switchyard.dev/v1alpha1
kind: InferenceBackend
metadata: {name: anthropic, namespace: ai}
spec:
  external:
    url: https://api.anthropic.com/v1
    protocol: anthropic
    apiKeySecretRef: {name: anthropic-key}
  proxy:
    contextWindow: 200000
"#,
        )
    }

    fn run(backends: &[InferenceBackend], routes: &[ModelRoute]) -> Compiled {
        let mut endpoints = BTreeMap::new();
        endpoints.insert(
            "qwen".to_owned(),
            vec!["http://10.0.0.7:8000/v1".to_owned()],
        );
        compile(&CompileInput {
            backends,
            routes,
            endpoints,
            ..Default::default()
        })
    }

    #[test]
    fn backends_and_routes_become_a_valid_snapshot() {
        let routes = [route(
            "claude",
            "2026-01-01T00:00:00Z",
            "{models: ['claude-*'], backend: qwen, fallbacks: [anthropic]}",
        )];
        let out = run(&[qwen(), anthropic()], &routes);
        assert!(out.snapshot_errors.is_empty(), "{:?}", out.snapshot_errors);
        out.snapshot.validate().unwrap();
        let names: Vec<&str> = out
            .snapshot
            .backends
            .iter()
            .map(|b| b.name.as_str())
            .collect();
        assert_eq!(names, ["anthropic", "qwen"]);

        let q = &out.snapshot.backends[1];
        assert_eq!(q.base_url, "http://qwen.ai.svc:8000/v1");
        assert_eq!(q.endpoints, ["http://10.0.0.7:8000/v1"]);
        assert_eq!(q.served_model.as_deref(), Some("qwen3-next"));
        assert_eq!(q.context_window, Some(131_072));
        assert_eq!(q.protocol, Protocol::Openai);
        assert_eq!(q.health_check, Some(HealthCheck::default()));

        let a = &out.snapshot.backends[0];
        assert_eq!(a.base_url, "https://api.anthropic.com/v1");
        assert_eq!(a.protocol, Protocol::Anthropic);
        assert!(a.endpoints.is_empty());
        assert_eq!(a.health_check, None);
        assert_eq!(
            a.api_key.as_ref().and_then(|k| k.secret_key.as_deref()),
            Some("backend.anthropic.apiKey")
        );
        assert_eq!(
            out.credentials,
            [Credential {
                backend: "anthropic".into(),
                key: "backend.anthropic.apiKey".into(),
                secret_name: "anthropic-key".into(),
                secret_key: "token".into(),
            }]
        );

        let r = &out.snapshot.routes[0];
        assert_eq!(r.name, "claude");
        assert_eq!(r.fallbacks, ["anthropic"]);
        assert_eq!(
            out.routes["claude"],
            RouteReport {
                accepted: true,
                models: vec!["claude-*".into()],
                problems: vec![],
            }
        );
    }

    #[test]
    fn a_bad_route_is_reported_and_the_rest_is_published() {
        let routes = [
            route(
                "good",
                "2026-01-01T00:00:00Z",
                "{models: [a], backend: qwen}",
            ),
            route(
                "typo",
                "2026-01-01T00:00:00Z",
                "{models: [b], backend: qwen, fallbacks: [antropic]}",
            ),
            route(
                "bad-glob",
                "2026-01-01T00:00:00Z",
                "{models: ['c-[*'], backend: qwen}",
            ),
        ];
        let out = run(&[qwen(), anthropic()], &routes);
        let published: Vec<&str> = out
            .snapshot
            .routes
            .iter()
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(published, ["good"]);
        assert!(out.snapshot_errors.is_empty());

        let typo = &out.routes["typo"];
        assert!(!typo.accepted);
        assert_eq!(typo.problems.len(), 1);
        assert_eq!(typo.problems[0].reason, reason::BACKEND_NOT_FOUND);
        assert!(typo.problems[0].message.contains("`antropic`"), "{typo:?}");

        let glob = &out.routes["bad-glob"];
        assert_eq!(glob.problems[0].reason, reason::INVALID_SPEC);
        assert!(
            glob.problems[0]
                .message
                .starts_with("spec.models[0]: invalid glob"),
            "{glob:?}"
        );
    }

    #[test]
    fn a_forwarding_route_that_reaches_an_anthropic_backend_is_refused_saying_why() {
        let spec = |fallbacks: &str| {
            format!("{{models: ['gpt-*'], backend: qwen, fallbacks: [{fallbacks}], responsesApi: forward}}")
        };
        let ok = run(
            &[qwen(), anthropic()],
            &[route("codex", "2026-01-01T00:00:00Z", &spec(""))],
        );
        assert!(ok.routes["codex"].accepted, "{:?}", ok.routes["codex"]);
        let bad = run(
            &[qwen(), anthropic()],
            &[route("codex", "2026-01-01T00:00:00Z", &spec("anthropic"))],
        );
        let report = &bad.routes["codex"];
        assert!(!report.accepted);
        assert_eq!(report.problems.len(), 1, "{report:?}");
        assert_eq!(report.problems[0].reason, reason::INVALID_SPEC);
        assert!(
            report.problems[0]
                .message
                .starts_with("spec.responsesApi: `forward` sends Responses requests unchanged, but backend `anthropic`"),
            "{report:?}"
        );
    }

    #[test]
    fn the_older_route_keeps_a_contested_model() {
        // Names sort the other way round from age, so only the timestamps can decide.
        let routes = [
            route(
                "a-new",
                "2026-03-01T00:00:00Z",
                "{models: [shared, own], backend: qwen}",
            ),
            route(
                "z-old",
                "2026-01-01T00:00:00Z",
                "{models: [shared], backend: anthropic}",
            ),
            route(
                "b-newest",
                "2026-04-01T00:00:00Z",
                "{models: [shared], backend: qwen}",
            ),
        ];
        let out = run(&[qwen(), anthropic()], &routes);
        assert_eq!(out.routes["z-old"].models, ["shared"]);
        assert!(out.routes["z-old"].problems.is_empty());

        let newer = &out.routes["a-new"];
        assert!(newer.accepted);
        assert_eq!(newer.models, ["own"]);
        assert_eq!(newer.problems[0].reason, reason::MODEL_CONFLICT);
        assert!(newer.problems[0].message.contains("`z-old`"), "{newer:?}");

        let newest = &out.routes["b-newest"];
        assert!(!newest.accepted, "nothing left to serve");
        assert!(newest.models.is_empty());

        let shared_owner: Vec<&str> = out
            .snapshot
            .routes
            .iter()
            .filter(|r| r.models.iter().any(|m| m == "shared"))
            .map(|r| r.name.as_str())
            .collect();
        assert_eq!(shared_owner, ["z-old"]);
    }

    #[test]
    fn an_invalid_route_claims_nothing() {
        // The older route is refused, so the newer one gets the model without a conflict.
        let routes = [
            route(
                "old",
                "2026-01-01T00:00:00Z",
                "{models: [m], backend: gone}",
            ),
            route(
                "new",
                "2026-02-01T00:00:00Z",
                "{models: [m], backend: qwen}",
            ),
        ];
        let out = run(&[qwen()], &routes);
        assert!(!out.routes["old"].accepted);
        assert_eq!(out.routes["new"].models, ["m"]);
        assert!(out.routes["new"].problems.is_empty());
    }

    #[test]
    fn a_refused_backend_is_named_as_refused_by_its_routes() {
        let both = backend(
            r#"
apiVersion: switchyard.dev/v1alpha1
kind: InferenceBackend
metadata: {name: both, namespace: ai}
spec:
  vllm: {model: m}
  external: {url: 'http://x/v1'}
"#,
        );
        let routes = [
            route("r", "2026-01-01T00:00:00Z", "{models: [m], backend: both}"),
            route("ok", "2026-01-01T00:00:00Z", "{models: [n], backend: qwen}"),
        ];
        let out = run(&[both, qwen()], &routes);
        assert!(!out.backends["both"].accepted);
        assert_eq!(
            out.backends["both"].problems[0].reason,
            reason::INVALID_SPEC
        );
        assert!(out.backends["qwen"].accepted);
        assert!(out.routes["r"].problems[0].message.contains("was refused"));
        assert_eq!(out.snapshot.routes.len(), 1);
        assert_eq!(out.snapshot.backends.len(), 1);
    }

    #[test]
    fn a_managed_backend_without_ready_endpoints_still_has_its_service_url() {
        let out = compile(&CompileInput {
            backends: &[qwen()],
            routes: &[route(
                "r",
                "2026-01-01T00:00:00Z",
                "{models: ['*'], backend: qwen}",
            )],
            ..Default::default()
        });
        assert!(out.snapshot.backends[0].endpoints.is_empty());
        assert_eq!(
            out.snapshot.backends[0].base_url,
            "http://qwen.ai.svc:8000/v1"
        );
    }

    #[test]
    fn nothing_to_route_publishes_an_empty_valid_snapshot() {
        // Deleting the last ModelRoute must reach the proxies (they then answer 404).
        let out = compile(&CompileInput::default());
        assert!(out.snapshot_errors.is_empty(), "{:?}", out.snapshot_errors);
        assert!(out.snapshot.routes.is_empty() && out.snapshot.backends.is_empty());
        out.snapshot.validate().unwrap();
    }

    #[test]
    fn a_backend_refused_by_the_operator_is_left_out_and_named_refused() {
        let routes = [
            route(
                "r",
                "2026-01-01T00:00:00Z",
                "{models: [m], backend: anthropic}",
            ),
            route("ok", "2026-01-01T00:00:00Z", "{models: [n], backend: qwen}"),
        ];
        let refused = BTreeMap::from([(
            "anthropic".to_owned(),
            Problem {
                reason: reason::CREDENTIALS_MISSING,
                message: "Secret `anthropic-key` not found".into(),
            },
        )]);
        let out = compile(&CompileInput {
            backends: &[qwen(), anthropic()],
            routes: &routes,
            refused,
            ..Default::default()
        });
        let report = &out.backends["anthropic"];
        assert!(!report.accepted);
        assert_eq!(report.problems[0].reason, reason::CREDENTIALS_MISSING);
        assert!(out.credentials.is_empty());
        assert!(out.routes["r"].problems[0].message.contains("was refused"));
        assert_eq!(out.snapshot.backends.len(), 1);
        assert!(out.routes["ok"].accepted);
    }

    #[test]
    fn forward_client_auth_with_client_keys_is_a_backend_condition_not_a_refused_snapshot() {
        let passthrough = backend(
            r#"
apiVersion: switchyard.dev/v1alpha1
kind: InferenceBackend
metadata: {name: anthropic, namespace: ai}
spec:
  external:
    url: https://api.anthropic.com/v1
    protocol: anthropic
    servedModelName: claude-sonnet-4-5
  proxy: {forwardClientAuth: true}
"#,
        );
        let routes = [
            route(
                "r",
                "2026-01-01T00:00:00Z",
                "{models: [m], backend: anthropic}",
            ),
            route("ok", "2026-01-01T00:00:00Z", "{models: [n], backend: qwen}"),
        ];
        let keys = vec![ClientKey {
            name: "team".into(),
            sha256: "0".repeat(64),
            routes: Vec::new(),
            limits: Default::default(),
            log_content: false,
        }];
        let out = compile(&CompileInput {
            backends: &[qwen(), passthrough.clone()],
            routes: &routes,
            keys: keys.clone(),
            ..Default::default()
        });
        assert!(out.snapshot_errors.is_empty(), "{:?}", out.snapshot_errors);
        out.snapshot.validate().unwrap();
        let report = &out.backends["anthropic"];
        assert!(!report.accepted);
        assert_eq!(report.problems[0].reason, reason::INVALID_SPEC);
        let m = &report.problems[0].message;
        assert!(
            m.contains("spec.proxy.forwardClientAuth") && m.contains("gateway key would be sent"),
            "{m}"
        );
        assert!(out.routes["r"].problems[0].message.contains("was refused"));
        assert!(out.routes["ok"].accepted);

        // Without client keys it is accepted; without a served model it is not.
        let out = run(&[qwen(), passthrough.clone()], &routes);
        assert!(out.backends["anthropic"].accepted);
        let mut unnamed = passthrough;
        unnamed.spec.external.as_mut().unwrap().served_model_name = None;
        let out = run(&[qwen(), unnamed], &routes);
        let m = &out.backends["anthropic"].problems[0].message;
        assert!(
            m.starts_with("spec.external.servedModelName: required"),
            "{m}"
        );
    }

    #[test]
    fn version_follows_content_only() {
        let routes = [route(
            "r",
            "2026-01-01T00:00:00Z",
            "{models: ['*'], backend: qwen}",
        )];
        let a = run(&[qwen()], &routes).snapshot;
        let mut b = a.clone();
        b.version = Some("whatever".into());
        assert_eq!(snapshot_version(&a), snapshot_version(&b));
        assert_eq!(snapshot_version(&a).len(), 16);
        b.routes[0].models.push("x".into());
        assert_ne!(snapshot_version(&a), snapshot_version(&b));
    }
}
