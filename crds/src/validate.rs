//! Checks a snapshot beyond what its schema says, naming the exact field at fault.

use crate::snapshot::{Protocol, ResponsesApi, RoutingSnapshot, Target};
use std::collections::HashSet;

/// One problem in a snapshot, with the path of the field that has it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// Dotted path such as `routes[1].backend`.
    pub field: String,
    pub message: String,
}

impl FieldError {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

impl RoutingSnapshot {
    /// Every problem at once, so a user fixes the file in one pass. An empty snapshot is
    /// valid: a cluster with no ModelRoutes yet publishes one, and its proxies answer 404.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut backend_names = HashSet::new();
        for (i, b) in self.backends.iter().enumerate() {
            let at = |f: &str| format!("backends[{i}].{f}");
            if b.name.trim().is_empty() {
                errors.push(FieldError::new(at("name"), "must not be empty"));
            } else if !backend_names.insert(b.name.as_str()) {
                errors.push(FieldError::new(
                    at("name"),
                    format!("duplicate backend name `{}`", b.name),
                ));
            }
            // URLs are shown without user info or query: either may carry a credential.
            if !(b.base_url.starts_with("http://") || b.base_url.starts_with("https://")) {
                errors.push(FieldError::new(
                    at("baseUrl"),
                    format!(
                        "`{}` must be an http:// or https:// URL",
                        redact_url(&b.base_url)
                    ),
                ));
            }
            for (j, e) in b.endpoints.iter().enumerate() {
                if !(e.starts_with("http://") || e.starts_with("https://")) {
                    errors.push(FieldError::new(
                        format!("backends[{i}].endpoints[{j}]"),
                        format!("`{}` must be an http:// or https:// URL", redact_url(e)),
                    ));
                }
            }
            if b.forward_client_auth {
                check_forward_client_auth(b, !self.keys.is_empty(), &at, &mut errors);
            }
            if b.context_window == Some(0) {
                errors.push(FieldError::new(
                    at("contextWindow"),
                    "must be greater than 0",
                ));
            }
            if let Some(key) = &b.api_key {
                let sources = [
                    key.env.is_some(),
                    key.file.is_some(),
                    key.secret_key.is_some(),
                ];
                if sources.iter().filter(|s| **s).count() != 1 {
                    errors.push(FieldError::new(
                        at("apiKey"),
                        "set exactly one of `env`, `file` or `secretKey`",
                    ));
                }
            }
        }
        let mut route_names = HashSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            let at = |f: &str| format!("routes[{i}].{f}");
            if !route_names.insert(r.name.as_str()) {
                errors.push(FieldError::new(
                    at("name"),
                    format!("duplicate route name `{}`", r.name),
                ));
            }
            if r.models.is_empty() {
                errors.push(FieldError::new(
                    at("models"),
                    "list at least one model name or glob",
                ));
            }
            for (j, m) in r.models.iter().enumerate() {
                if let Err(e) = globset::Glob::new(m) {
                    errors.push(FieldError::new(
                        format!("routes[{i}].models[{j}]"),
                        format!("invalid glob `{m}`: {e}"),
                    ));
                }
            }
            let targets = r.default_targets();
            if targets.is_empty() {
                errors.push(FieldError::new(at("backend"), "set `backend` or `targets`"));
            }
            check_targets(
                r.backend.as_deref(),
                &r.targets,
                &format!("routes[{i}]"),
                &backend_names,
                &mut errors,
            );
            for (j, rule) in r.rules.iter().enumerate() {
                let rule_at = format!("routes[{i}].rules[{j}]");
                let targets = rule.targets();
                if targets.is_empty() {
                    errors.push(FieldError::new(
                        format!("{rule_at}.backend"),
                        "set `backend` or `targets`",
                    ));
                }
                check_targets(
                    rule.backend.as_deref(),
                    &rule.targets,
                    &rule_at,
                    &backend_names,
                    &mut errors,
                );
                if rule.when == Default::default() {
                    errors.push(FieldError::new(
                        format!("{rule_at}.when"),
                        "give at least one condition",
                    ));
                }
            }
            for (field, list) in [
                ("fallbacks", &r.fallbacks),
                ("contextFallbacks", &r.context_fallbacks),
            ] {
                for (j, f) in list.iter().enumerate() {
                    if !backend_names.contains(f.as_str()) {
                        errors.push(FieldError::new(
                            format!("routes[{i}].{field}[{j}]"),
                            format!("no backend named `{f}`"),
                        ));
                    }
                }
            }
            if r.responses_api == ResponsesApi::Forward {
                let speaks_anthropic = |n: &String| {
                    self.backends
                        .iter()
                        .any(|b| &b.name == n && b.protocol != Protocol::Openai)
                };
                for name in r.backend_names().iter().filter(|n| speaks_anthropic(n)) {
                    errors.push(FieldError::new(
                        at("responsesApi"),
                        format!(
                            "`forward` sends Responses requests unchanged, but backend `{name}` \
                             speaks the Anthropic protocol; use `translate` or only \
                             OpenAI-protocol backends"
                        ),
                    ));
                }
            }
            if r.retries.attempts == 0 {
                errors.push(FieldError::new(
                    at("retries.attempts"),
                    "must be at least 1 (the first attempt counts)",
                ));
            }
            let t = &r.timeouts;
            for (name, v) in [
                ("connectMs", t.connect_ms),
                ("firstTokenMs", t.first_token_ms),
                ("idleMs", t.idle_ms),
                ("totalMs", t.total_ms),
            ] {
                if v == 0 {
                    errors.push(FieldError::new(
                        at(&format!("timeouts.{name}")),
                        "must be greater than 0",
                    ));
                }
            }
        }
        let mut key_names = HashSet::new();
        for (i, k) in self.keys.iter().enumerate() {
            let at = |f: &str| format!("keys[{i}].{f}");
            if k.name.trim().is_empty() || !key_names.insert(k.name.as_str()) {
                errors.push(FieldError::new(at("name"), "must be present and unique"));
            }
            if k.sha256.len() != 64 || !k.sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
                errors.push(FieldError::new(
                    at("sha256"),
                    "must be 64 hex digits (the SHA-256 of the key, never the key)",
                ));
            }
            for (j, r) in k.routes.iter().enumerate() {
                if !route_names.contains(r.as_str()) {
                    errors.push(FieldError::new(
                        format!("keys[{i}].routes[{j}]"),
                        format!("no route named `{r}`"),
                    ));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

/// A backend that forwards the client's own credentials (`x-api-key`, `authorization`).
///
/// - With client `keys` the client's credential *is* its Switchyard key: forwarding it would
///   hand every user's gateway key to the backend (e.g. api.anthropic.com). Refused.
/// - The proxy has no credential of its own for such a backend, so it cannot ask `/models`
///   which model it serves: `servedModel` must be given (discovery is skipped for it).
pub(crate) fn check_forward_client_auth(
    b: &crate::snapshot::Backend,
    has_keys: bool,
    at: &dyn Fn(&str) -> String,
    errors: &mut Vec<FieldError>,
) {
    if has_keys {
        errors.push(FieldError::new(
            at("forwardClientAuth"),
            format!(
                "cannot be combined with client `keys`: clients authenticate to Switchyard with \
                 their gateway key, so the client's gateway key would be sent to backend `{}` \
                 ({}); give the backend its own `apiKey` instead, or remove `keys`",
                b.name,
                redact_url(&b.base_url)
            ),
        ));
    }
    if b.served_model
        .as_deref()
        .is_none_or(|m| m.trim().is_empty())
    {
        errors.push(FieldError::new(
            at("servedModel"),
            "required with `forwardClientAuth`: the proxy holds no credential of its own for \
             this backend, so it cannot discover the served model from `/models`",
        ));
    }
}

/// A URL as it may be shown (errors, logs, metrics): user info, query and fragment removed,
/// since any of them may carry a credential (`http://user:pass@host`, `?key=…`).
pub fn redact_url(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let rest = rest.split(['?', '#']).next().unwrap_or_default();
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let host = match authority.rfind('@') {
        Some(i) => &authority[i + 1..],
        None => authority,
    };
    format!("{scheme}{host}{path}")
}

/// `backend` shorthand and `targets` of a route or rule at path `at`.
fn check_targets(
    backend: Option<&str>,
    targets: &[Target],
    at: &str,
    backends: &HashSet<&str>,
    errors: &mut Vec<FieldError>,
) {
    let unknown = |name: &str| {
        let mut known: Vec<&str> = backends.iter().copied().collect();
        known.sort_unstable();
        let known = if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        };
        format!("no backend named `{name}` (known: {known})")
    };
    if let Some(b) = backend {
        if !backends.contains(b) {
            errors.push(FieldError::new(format!("{at}.backend"), unknown(b)));
        }
    }
    for (j, t) in targets.iter().enumerate() {
        if !backends.contains(t.backend.as_str()) {
            errors.push(FieldError::new(
                format!("{at}.targets[{j}].backend"),
                unknown(&t.backend),
            ));
        }
    }
    if backend.is_none() && !targets.is_empty() && targets.iter().all(|t| t.weight == 0) {
        errors.push(FieldError::new(
            format!("{at}.targets"),
            "at least one target needs a weight above 0",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> RoutingSnapshot {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn names_every_bad_field() {
        let snap = parse(
            r#"
backends:
  - name: a
    baseUrl: ftp://x
  - name: a
    baseUrl: http://y/v1
    apiKey: {}
routes:
  - name: r
    models: ["claude-[*"]
    backend: nope
"#,
        );
        let errs = snap.validate().unwrap_err();
        let fields: Vec<&str> = errs.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "backends[0].baseUrl",
                "backends[1].name",
                "backends[1].apiKey",
                "routes[0].models[0]",
                "routes[0].backend"
            ]
        );
        assert!(errs[4].message.contains("known: a"), "{}", errs[4]);
    }

    #[test]
    fn responses_forwarding_needs_openai_backends_everywhere_the_route_goes() {
        let yaml = |fallback_protocol: &str| {
            format!(
                "backends:\n  - {{name: vllm, baseUrl: 'http://v/v1'}}\n  \
                 - {{name: spare, baseUrl: 'http://s/v1', protocol: {fallback_protocol}}}\n\
                 routes: [{{name: codex, models: ['*'], backend: vllm, fallbacks: [spare], \
                 responsesApi: forward}}]\n"
            )
        };
        parse(&yaml("openai")).validate().unwrap();
        let errs = parse(&yaml("anthropic")).validate().unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "routes[0].responsesApi");
        assert!(
            errs[0].message.contains("backend `spare`"),
            "{}",
            errs[0].message
        );
    }

    #[test]
    fn unknown_field_is_rejected_by_name() {
        let err = serde_yaml::from_str::<RoutingSnapshot>(
            "backends: [{name: a, baseUrl: 'http://x/v1', contextWindo: 5}]\nroutes: []\n",
        )
        .unwrap_err();
        assert!(err.to_string().contains("contextWindo"), "{err}");
    }

    #[test]
    fn forward_client_auth_with_client_keys_is_refused_saying_why() {
        let yaml = "backends:\n  - {name: anthropic, baseUrl: 'https://u:p@api.anthropic.com/v1?key=k', protocol: anthropic, forwardClientAuth: true, servedModel: claude-x}\n\
             routes: [{name: all, models: ['*'], backend: anthropic}]\n";
        parse(yaml).validate().unwrap();
        let keyed = format!("{yaml}keys: [{{name: a, sha256: '{}'}}]\n", "0".repeat(64));
        let errs = parse(&keyed).validate().unwrap_err();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert_eq!(errs[0].field, "backends[0].forwardClientAuth");
        let m = &errs[0].message;
        assert!(
            m.contains("`keys`") && m.contains("gateway key would be sent"),
            "{m}"
        );
        assert!(!m.contains("u:p") && !m.contains("key=k"), "{m}");
    }

    #[test]
    fn forward_client_auth_needs_a_served_model() {
        let errs = parse(
            "backends: [{name: a, baseUrl: 'http://x/v1', forwardClientAuth: true}]\nroutes: []\n",
        )
        .validate()
        .unwrap_err();
        assert_eq!(errs[0].field, "backends[0].servedModel");
    }

    #[test]
    fn urls_in_messages_are_redacted() {
        assert_eq!(
            redact_url("http://user:secret@host:8000/v1?key=abc#x"),
            "http://host:8000/v1"
        );
        assert_eq!(redact_url("ftp://a:b@h"), "ftp://h");
        let errs = parse(
            "backends: [{name: a, baseUrl: 'ftp://user:hunter2@x/v1?token=t0k', endpoints: ['x:y@z?k=v']}]\nroutes: []\n",
        )
        .validate()
        .unwrap_err();
        let text = format!("{errs:?}");
        for secret in ["hunter2", "t0k", "x:y", "k=v"] {
            assert!(!text.contains(secret), "{text}");
        }
    }

    #[test]
    fn minimal_config_is_valid() {
        let snap = parse(
            "backends: [{name: a, baseUrl: 'http://127.0.0.1:8000/v1'}]\nroutes: [{name: all, models: ['*'], backend: a}]\n",
        );
        snap.validate().unwrap();
        assert!(snap.backends[0].text_tool_calls);
    }
}
