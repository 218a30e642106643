//! The committed CRD YAML must be what `crdgen` prints today, and must be a schema a real API
//! server accepts (structural: see
//! https://kubernetes.io/docs/tasks/extend-kubernetes/custom-resources/custom-resource-definitions/#specifying-a-structural-schema).

use serde_json::Value;
use std::path::PathBuf;

fn committed_copies() -> [PathBuf; 2] {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    [
        root.join("yaml/switchyard.dev.yaml"),
        root.join("../charts/switchyard/crds/switchyard.dev.yaml"),
    ]
}

#[test]
fn committed_yaml_is_current() {
    let generated = switchyard_api::crd::yaml();
    for path in committed_copies() {
        if std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1") {
            std::fs::write(&path, &generated).unwrap();
            continue;
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is stale: run `UPDATE_GOLDEN=1 cargo test -p switchyard-api --test crd_yaml` \
             (or `cargo run -p switchyard-api --bin crdgen > {}`)",
            path.display(),
            path.display()
        );
    }
}

/// Every violation of the structural-schema rules the API server enforces, by JSON path.
fn structural_violations(schema: &Value, at: &str, out: &mut Vec<String>) {
    let Some(obj) = schema.as_object() else {
        out.push(format!("{at}: schema is not an object"));
        return;
    };
    let preserve = obj.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(true));
    let int_or_string = obj.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true));
    if !obj.contains_key("type") && !preserve && !int_or_string {
        out.push(format!("{at}: no type"));
    }
    for forbidden in [
        "$ref",
        "oneOf",
        "anyOf",
        "allOf",
        "not",
        "definitions",
        "uniqueItems",
    ] {
        if obj.contains_key(forbidden) {
            out.push(format!("{at}: `{forbidden}` is not allowed"));
        }
    }
    if let Some(t) = obj.get("type") {
        if !t.is_string() {
            out.push(format!("{at}: type must be one string, got {t}"));
        }
    }
    if let Some(ap) = obj.get("additionalProperties") {
        if ap.is_boolean() {
            out.push(format!(
                "{at}: additionalProperties must be a schema, not {ap}"
            ));
        } else {
            if obj.contains_key("properties") {
                out.push(format!(
                    "{at}: additionalProperties and properties are mutually exclusive"
                ));
            }
            structural_violations(ap, &format!("{at}.additionalProperties"), out);
        }
    }
    if let Some(props) = obj.get("properties").and_then(Value::as_object) {
        for (name, sub) in props {
            structural_violations(sub, &format!("{at}.{name}"), out);
        }
        if let Some(required) = obj.get("required").and_then(Value::as_array) {
            for r in required {
                if !props.contains_key(r.as_str().unwrap_or_default()) {
                    out.push(format!("{at}: required `{r}` is not a property"));
                }
            }
        }
    }
    if let Some(items) = obj.get("items") {
        structural_violations(items, &format!("{at}.items"), out);
        if obj.get("x-kubernetes-list-type") == Some(&Value::String("map".into())) {
            let required = items.get("required").and_then(Value::as_array);
            for key in obj["x-kubernetes-list-map-keys"].as_array().unwrap() {
                let has_default = items["properties"][key.as_str().unwrap()]
                    .get("default")
                    .is_some();
                if !required.is_some_and(|r| r.contains(key)) && !has_default {
                    out.push(format!("{at}: list map key {key} must be required"));
                }
            }
        }
    }
    if let Some(rules) = obj.get("x-kubernetes-validations") {
        for rule in rules.as_array().unwrap() {
            if rule["rule"].as_str().is_none_or(str::is_empty) {
                out.push(format!("{at}: validation without a rule"));
            }
            if rule["message"].as_str().is_none_or(str::is_empty) {
                out.push(format!(
                    "{at}: validation rule without a message for the user"
                ));
            }
        }
    }
}

#[test]
fn schemas_are_structural() {
    for crd in switchyard_api::crd::all() {
        let crd = serde_json::to_value(&crd).unwrap();
        for version in crd["spec"]["versions"].as_array().unwrap() {
            let schema = &version["schema"]["openAPIV3Schema"];
            let mut violations = Vec::new();
            structural_violations(schema, "openAPIV3Schema", &mut violations);
            assert!(
                violations.is_empty(),
                "{}: {violations:#?}",
                crd["metadata"]["name"]
            );
            assert_eq!(
                version["subresources"]["status"],
                serde_json::json!({}),
                "status is a subresource (kstatus, server-side apply of status)"
            );
        }
    }
}

#[test]
fn checker_catches_what_the_api_server_refuses() {
    // The checker above must be able to fail: feed it the shapes schemars emits by default.
    let bad = serde_json::json!({
        "type": "object",
        "properties": {
            "a": {"type": "object", "properties": {"x": {"type": "string"}}, "additionalProperties": false},
            "b": true,
            "c": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "d": {"type": "object", "additionalProperties": true},
        }
    });
    let mut violations = Vec::new();
    structural_violations(&bad, "s", &mut violations);
    assert_eq!(
        violations,
        [
            "s.a: additionalProperties must be a schema, not false",
            "s.b: schema is not an object",
            "s.c: no type",
            "s.c: `anyOf` is not allowed",
            "s.d: additionalProperties must be a schema, not true",
        ]
    );
}
