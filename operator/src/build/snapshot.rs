//! The snapshot ConfigMap and credentials Secret the proxies watch (by name, with RBAC
//! limited to these two objects).

use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use k8s_openapi::ByteString;
use std::collections::BTreeMap;
use switchyard_api::compile::snapshot_version;
use switchyard_api::RoutingSnapshot;

pub const SNAPSHOT_CONFIGMAP: &str = "switchyard-snapshot";
pub const CREDENTIALS_SECRET: &str = "switchyard-credentials";
use switchyard_api::wire::SNAPSHOT_KEY;
pub const VERSION_ANNOTATION: &str = "switchyard.dev/snapshot-version";

fn meta(name: &str, namespace: &str, version: &str) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.into()),
        namespace: Some(namespace.into()),
        labels: Some(BTreeMap::from([
            ("app.kubernetes.io/name".into(), "switchyard".into()),
            (
                "app.kubernetes.io/managed-by".into(),
                super::FIELD_MANAGER.into(),
            ),
        ])),
        annotations: Some(BTreeMap::from([(
            VERSION_ANNOTATION.into(),
            version.into(),
        )])),
        ..Default::default()
    }
}

/// The snapshot as human-readable YAML, its `version` set to its content hash.
pub fn snapshot_config_map(namespace: &str, snapshot: &RoutingSnapshot) -> ConfigMap {
    let version = snapshot_version(snapshot);
    let mut versioned = snapshot.clone();
    versioned.version = Some(version.clone());
    let yaml = serde_yaml::to_string(&versioned).expect("a snapshot serializes");
    ConfigMap {
        metadata: meta(SNAPSHOT_CONFIGMAP, namespace, &version),
        data: Some(BTreeMap::from([(SNAPSHOT_KEY.into(), yaml)])),
        ..Default::default()
    }
}

/// Backend API keys, already read from the Secrets the backends name, under the keys
/// `compile` chose (`backend.<name>.apiKey`). The snapshot refers to them by file name.
pub fn credentials_secret(
    namespace: &str,
    snapshot: &RoutingSnapshot,
    values: BTreeMap<String, Vec<u8>>,
) -> Secret {
    Secret {
        metadata: meta(CREDENTIALS_SECRET, namespace, &snapshot_version(snapshot)),
        type_: Some("Opaque".into()),
        data: Some(
            values
                .into_iter()
                .map(|(k, v)| (k, ByteString(v)))
                .collect(),
        ),
        ..Default::default()
    }
}
