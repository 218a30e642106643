//! The request view's admin key: a Secret the operator creates once when the chart asks
//! (`--admin-key-secret`), so the proxies' admin API (`/api/…`, what `/ui` shows) is behind a
//! key from the first install, with nothing for the user to generate.
//!
//! Created, never updated: a Secret of that name that exists (made by an earlier start, or by
//! the user) is left as it is. Deleting it makes a new key at the operator's next start;
//! the proxies read it when they start. The key never appears in logs, events or status.

use crate::build::FIELD_MANAGER;
use k8s_openapi::api::core::v1::Secret;
use kube::api::{ObjectMeta, PostParams};
use kube::{Api, Client};
use std::collections::BTreeMap;
use std::time::Duration;

/// The Secret's entry the proxies read (`SWITCHYARD_ADMIN_KEY` from a secretKeyRef).
pub const KEY_ENTRY: &str = "admin-key";

/// The Secret holding `key` (pure).
pub fn desired(namespace: &str, name: &str, key: String) -> Secret {
    Secret {
        metadata: ObjectMeta {
            name: Some(name.to_owned()),
            namespace: Some(namespace.to_owned()),
            labels: Some(BTreeMap::from([(
                "app.kubernetes.io/managed-by".to_owned(),
                "switchyard-operator".to_owned(),
            )])),
            ..ObjectMeta::default()
        },
        string_data: Some(BTreeMap::from([(KEY_ENTRY.to_owned(), key)])),
        type_: Some("Opaque".to_owned()),
        ..Secret::default()
    }
}

/// 32 bytes from the operating system's generator, as 64 hex digits.
pub fn random_key() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random number generator is available");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// What `ensure` found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ensured {
    Created,
    /// Already there: kept as it is.
    Existed,
}

/// Creates the Secret unless it exists (create only: the operator's Role has no `get` on it).
pub async fn ensure(client: Client, namespace: &str, name: &str) -> Result<Ensured, kube::Error> {
    let api: Api<Secret> = Api::namespaced(client, namespace);
    let params = PostParams {
        field_manager: Some(FIELD_MANAGER.to_owned()),
        ..PostParams::default()
    };
    match api
        .create(&params, &desired(namespace, name, random_key()))
        .await
    {
        Ok(_) => Ok(Ensured::Created),
        Err(kube::Error::Api(e)) if e.code == 409 => Ok(Ensured::Existed),
        Err(e) => Err(e),
    }
}

/// Tries until the Secret exists (the API server may not answer yet), backing off to 30 s.
pub async fn run(client: Client, namespace: String, name: String) {
    let mut pause = Duration::from_secs(1);
    loop {
        match ensure(client.clone(), &namespace, &name).await {
            Ok(Ensured::Created) => {
                tracing::info!(secret = %name, %namespace, "created the request view's admin key Secret");
                return;
            }
            Ok(Ensured::Existed) => return,
            Err(e) => {
                tracing::warn!(secret = %name, %namespace, error = %e, "cannot create the admin key Secret; retrying");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(Duration::from_secs(30));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::{Request, Response};
    use kube::client::Body;
    use serde_json::{json, Value};

    #[test]
    fn keys_are_64_hex_digits_and_differ() {
        let (a, b) = (random_key(), random_key());
        assert_eq!(a.len(), 64);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()), "{a}");
        assert_ne!(a, b);
    }

    /// One create against a fake API server answering `code` with `body`; what was posted.
    async fn create_answered(code: u16, body: Value) -> (Result<Ensured, kube::Error>, Value) {
        let (service, mut handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
        let client = Client::new(service, "default");
        let server = tokio::spawn(async move {
            let (request, send) = handle.next_request().await.expect("one request");
            assert_eq!(request.method(), http::Method::POST);
            assert_eq!(
                request.uri().path(),
                "/api/v1/namespaces/switchyard/secrets"
            );
            let bytes = request.into_body().collect_bytes().await.unwrap();
            send.send_response(
                Response::builder()
                    .status(code)
                    .header("content-type", "application/json")
                    .body(Body::from(serde_json::to_vec(&body).unwrap()))
                    .unwrap(),
            );
            serde_json::from_slice::<Value>(&bytes).unwrap()
        });
        let result = tokio::time::timeout(
            Duration::from_secs(10),
            ensure(client, "switchyard", "switchyard-admin-key"),
        )
        .await
        .expect("answered in time");
        (result, server.await.unwrap())
    }

    #[tokio::test]
    async fn a_missing_secret_is_created_with_a_random_key() {
        let (result, posted) = create_answered(
            201,
            json!({"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "switchyard-admin-key", "namespace": "switchyard"}}),
        )
        .await;
        assert_eq!(result.unwrap(), Ensured::Created);
        assert_eq!(posted["metadata"]["name"], "switchyard-admin-key");
        let key = posted["stringData"][KEY_ENTRY].as_str().unwrap();
        assert_eq!(key.len(), 64, "{posted}");
        assert_eq!(
            posted["metadata"]["labels"]["app.kubernetes.io/managed-by"],
            "switchyard-operator"
        );
    }

    #[tokio::test]
    async fn an_existing_secret_is_kept_and_other_failures_are_errors() {
        let conflict = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "secrets \"switchyard-admin-key\" already exists",
            "reason": "AlreadyExists", "code": 409});
        let (result, _) = create_answered(409, conflict).await;
        assert_eq!(result.unwrap(), Ensured::Existed);
        let forbidden = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
            "message": "secrets is forbidden", "reason": "Forbidden", "code": 403});
        let (result, _) = create_answered(403, forbidden).await;
        assert!(
            matches!(result, Err(kube::Error::Api(ref e)) if e.code == 403),
            "{result:?}"
        );
    }
}
