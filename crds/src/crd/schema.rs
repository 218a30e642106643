//! Schema fragments the derives cannot express, and the rewrite that makes reused snapshot
//! types acceptable to the API server.
//!
//! Kubernetes requires *structural* schemas: every node has a `type` (or
//! `x-kubernetes-preserve-unknown-fields`), and `additionalProperties` is never a boolean.
//! The snapshot types use `deny_unknown_fields` (schemars renders it as
//! `additionalProperties: false`, which the API server refuses) and free-form JSON values
//! (rendered as `true` schemas), so they are rewritten here rather than duplicated: a
//! `ModelRoute` field then means exactly what the proxy config field means.

use schemars::gen::SchemaGenerator;
use schemars::schema::{InstanceType, Schema, SchemaObject};
use schemars::visit::{visit_schema_object, Visitor};
use schemars::JsonSchema;
use serde_json::{json, Value};

/// The schema of `T`, rewritten to be structural (see the module comment).
pub(crate) fn structural<T: JsonSchema>(gen: &mut SchemaGenerator) -> Schema {
    let mut schema = gen.subschema_for::<T>();
    if let Schema::Object(obj) = &mut schema {
        StructuralFix.visit_schema_object(obj);
    }
    schema
}

struct StructuralFix;

impl Visitor for StructuralFix {
    fn visit_schema_object(&mut self, schema: &mut SchemaObject) {
        visit_schema_object(self, schema);
        if let Some(obj) = &mut schema.object {
            match obj.additional_properties.as_deref() {
                // `deny_unknown_fields`: the API server prunes unknown fields anyway.
                Some(Schema::Bool(false)) => obj.additional_properties = None,
                // A map of free-form JSON values (`extraBody`).
                Some(Schema::Bool(true)) => {
                    obj.additional_properties = None;
                    preserve_unknown(schema);
                }
                _ => {}
            }
        }
    }
}

fn preserve_unknown(schema: &mut SchemaObject) {
    schema
        .extensions
        .insert("x-kubernetes-preserve-unknown-fields".into(), json!(true));
}

fn from_json(value: Value) -> Schema {
    serde_json::from_value(value).expect("static schema fragment is valid")
}

/// `metav1.Condition` list keyed by `type`, so server-side apply merges conditions one by one.
pub(crate) fn conditions(gen: &mut SchemaGenerator) -> Schema {
    let item = gen.subschema_for::<k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition>();
    let mut schema = SchemaObject {
        instance_type: Some(InstanceType::Array.into()),
        ..Default::default()
    };
    schema.array().items = Some(item.into());
    schema
        .extensions
        .insert("x-kubernetes-list-type".into(), json!("map"));
    schema
        .extensions
        .insert("x-kubernetes-list-map-keys".into(), json!(["type"]));
    Schema::Object(schema)
}

/// A duration such as `45m`, `1h30m` or `90s`.
pub(crate) fn duration(_: &mut SchemaGenerator) -> Schema {
    from_json(json!({
        "type": "string",
        "pattern": "^([0-9]+h([0-9]+m)?([0-9]+s)?|[0-9]+m([0-9]+s)?|[0-9]+s)$",
    }))
}
