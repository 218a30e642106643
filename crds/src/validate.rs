//! Checks a snapshot beyond what its schema says, naming the exact field at fault.

use crate::snapshot::RoutingSnapshot;
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
    /// Every problem at once, so a user fixes the file in one pass.
    pub fn validate(&self) -> Result<(), Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut backend_names = HashSet::new();
        if self.backends.is_empty() {
            errors.push(FieldError::new(
                "backends",
                "at least one backend is required",
            ));
        }
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
            if !(b.base_url.starts_with("http://") || b.base_url.starts_with("https://")) {
                errors.push(FieldError::new(
                    at("baseUrl"),
                    format!("`{}` must be an http:// or https:// URL", b.base_url),
                ));
            }
            if b.context_window == Some(0) {
                errors.push(FieldError::new(
                    at("contextWindow"),
                    "must be greater than 0",
                ));
            }
            if let Some(key) = &b.api_key {
                if key.env.is_some() == key.file.is_some() {
                    errors.push(FieldError::new(
                        at("apiKey"),
                        "set exactly one of `env` or `file`",
                    ));
                }
            }
        }
        let mut route_names = HashSet::new();
        if self.routes.is_empty() {
            errors.push(FieldError::new("routes", "at least one route is required"));
        }
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
            if !backend_names.contains(r.backend.as_str()) {
                errors.push(FieldError::new(
                    at("backend"),
                    format!(
                        "no backend named `{}` (known: {})",
                        r.backend,
                        join_names(&self.backends)
                    ),
                ));
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }
}

fn join_names(backends: &[crate::snapshot::Backend]) -> String {
    let names: Vec<&str> = backends.iter().map(|b| b.name.as_str()).collect();
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
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
        assert!(errs[4].message.contains("known: a, a"), "{}", errs[4]);
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
    fn minimal_config_is_valid() {
        let snap = parse(
            "backends: [{name: a, baseUrl: 'http://127.0.0.1:8000/v1'}]\nroutes: [{name: all, models: ['*'], backend: a}]\n",
        );
        snap.validate().unwrap();
        assert!(snap.backends[0].text_tool_calls);
    }
}
