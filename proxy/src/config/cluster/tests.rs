use super::*;
use crate::observe::metrics::ResultLabels;
use bytes::Bytes;
use k8s_openapi::ByteString;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Mutex;
use tokio::sync::mpsc;

const KEY_VALUE: &str = "sk-very-secret-value";

fn source() -> Source {
    Source {
        namespace: "switchyard".into(),
        configmap: "switchyard-snapshot".into(),
        secret: "switchyard-credentials".into(),
    }
}

fn snapshot_yaml(version: &str, with_key: bool) -> String {
    let key = if with_key {
        "\n    apiKey: {secretKey: backend.local.apiKey}"
    } else {
        ""
    };
    format!(
        "version: {version}\nbackends:\n  - name: local\n    baseUrl: http://127.0.0.1:9/v1\n    servedModel: m\n    contextWindow: 8192{key}\nroutes:\n  - name: all\n    models: ['*']\n    backend: local\n"
    )
}

fn configmap(data: &[(&str, &str)], resource_version: &str) -> ConfigMap {
    let data: BTreeMap<String, String> = data
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "switchyard-snapshot", "namespace": "switchyard", "resourceVersion": resource_version},
        "data": data,
    }))
    .unwrap()
}

fn snapshot_cm(version: &str, with_key: bool) -> ConfigMap {
    configmap(&[(SNAPSHOT_KEY, &snapshot_yaml(version, with_key))], "1")
}

fn secret(data: &[(&str, &[u8])], resource_version: &str) -> Secret {
    let mut s: Secret = serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "switchyard-credentials", "namespace": "switchyard", "resourceVersion": resource_version},
    }))
    .unwrap();
    s.data = Some(
        data.iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.to_vec())))
            .collect(),
    );
    s
}

fn key_secret(value: &str) -> Secret {
    secret(&[("backend.local.apiKey", value.as_bytes())], "1")
}

fn api_key(rt: &Runtime) -> Option<String> {
    rt.backends[0]
        .api_key
        .as_ref()
        .map(|k| k.expose().to_owned())
}

// ---- decoding (pure) ----

#[test]
fn decodes_snapshot_and_credentials() {
    let (snapshot, credentials) = decode(
        &source(),
        Some(&snapshot_cm("v1", true)),
        Some(&key_secret(KEY_VALUE)),
    )
    .unwrap();
    assert_eq!(snapshot.version.as_deref(), Some("v1"));
    assert_eq!(snapshot.backends[0].name, "local");
    assert_eq!(credentials["backend.local.apiKey"], KEY_VALUE);
    let rt = build(
        &source(),
        Some(&snapshot_cm("v1", true)),
        Some(&key_secret(&format!("{KEY_VALUE}\n"))),
        None,
    )
    .unwrap();
    assert_eq!(
        api_key(&rt).as_deref(),
        Some(KEY_VALUE),
        "trailing newline trimmed"
    );
    assert!(rt.version.starts_with("v1-"));
}

#[test]
fn missing_configmap_is_named() {
    let err = decode(&source(), None, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ConfigMap switchyard/switchyard-snapshot not found (has the operator published it yet?)"
    );
}

#[test]
fn missing_key_lists_the_keys_present() {
    let cm = configmap(&[("config.yaml", "x"), ("other", "y")], "1");
    let err = decode(&source(), Some(&cm), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "ConfigMap switchyard/switchyard-snapshot has no `snapshot.yaml` key (keys present: config.yaml, other)"
    );
    let empty = configmap(&[], "1");
    assert!(decode(&source(), Some(&empty), None)
        .unwrap_err()
        .to_string()
        .ends_with("(keys present: none)"));
}

#[test]
fn yaml_errors_name_object_key_and_position() {
    let cm = configmap(
        &[(SNAPSHOT_KEY, "backends: [\n  - name: x\n    baseUrl: [")],
        "1",
    );
    let err = decode(&source(), Some(&cm), None).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ClusterError::Parse { .. }), "{msg}");
    assert!(
        msg.starts_with("ConfigMap switchyard/switchyard-snapshot key `snapshot.yaml`: "),
        "{msg}"
    );
    assert!(msg.contains("line"), "{msg}");

    let unknown = configmap(&[(SNAPSHOT_KEY, "backendz: []\nroutes: []\n")], "1");
    let msg = decode(&source(), Some(&unknown), None)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("backendz"), "{msg}");
}

#[test]
fn a_literal_key_in_the_snapshot_is_not_echoed_by_the_parse_error() {
    let yaml = format!(
        "backends:\n  - name: x\n    baseUrl: http://h/v1\n    apiKey: {KEY_VALUE}\nroutes: []\n"
    );
    let cm = configmap(&[(SNAPSHOT_KEY, &yaml)], "1");
    let msg = decode(&source(), Some(&cm), None).unwrap_err().to_string();
    assert!(!msg.contains(KEY_VALUE), "{msg}");
    assert!(msg.contains("apiKey") && msg.contains("line 4"), "{msg}");
}

#[test]
fn invalid_snapshot_names_each_field() {
    let text = "backends:\n  - name: a\n    baseUrl: ftp://x\nroutes:\n  - name: r\n    models: ['*']\n    backend: nope\n";
    let cm = configmap(&[(SNAPSHOT_KEY, text)], "1");
    let err = decode(&source(), Some(&cm), None).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "ConfigMap switchyard/switchyard-snapshot key `snapshot.yaml`: invalid snapshot:\n  - backends[0].baseUrl:"
        ),
        "{msg}"
    );
    assert!(msg.contains("routes[0].backend"), "{msg}");
}

#[test]
fn secret_is_optional_unless_referenced() {
    let (_, creds) = decode(&source(), Some(&snapshot_cm("v1", false)), None).unwrap();
    assert!(creds.is_empty());
    let err = decode(&source(), Some(&snapshot_cm("v1", true)), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Secret switchyard/switchyard-credentials not found, but the snapshot reads `backend.local.apiKey` from it"
    );
}

#[test]
fn key_absent_from_secret_is_a_build_error_without_values() {
    let s = secret(&[("backend.other.apiKey", KEY_VALUE.as_bytes())], "1");
    let err = build(&source(), Some(&snapshot_cm("v1", true)), Some(&s), None).unwrap_err();
    let msg = err.to_string();
    assert_eq!(
        msg,
        "backends[0].apiKey: key `backend.local.apiKey` is not in the credentials Secret"
    );
    assert!(!format!("{err:?}").contains(KEY_VALUE));
}

#[test]
fn non_utf8_secret_value_is_refused_by_key() {
    let s = secret(&[("backend.local.apiKey", &[0xff, 0xfe][..])], "1");
    let err = decode(&source(), Some(&snapshot_cm("v1", true)), Some(&s)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Secret switchyard/switchyard-credentials key `backend.local.apiKey` is not UTF-8 text"
    );
}

#[test]
fn runtime_debug_never_shows_the_key() {
    let rt = build(
        &source(),
        Some(&snapshot_cm("v1", true)),
        Some(&key_secret(KEY_VALUE)),
        None,
    )
    .unwrap();
    assert!(!format!("{rt:?}").contains(KEY_VALUE));
}

#[test]
fn relist_is_buffered_until_done() {
    let mut t = Tracked::<u32>::default();
    assert!(!t.observe(Event::Init));
    assert!(!t.observe(Event::InitApply(1)));
    assert_eq!(t.current, None, "not visible before InitDone");
    assert!(t.observe(Event::InitDone));
    assert_eq!(t.current, Some(1));
    assert!(t.observe(Event::Apply(2)));
    assert_eq!(t.current, Some(2));
    // A relist (after a reconnect) keeps the old object until the new list is complete.
    assert!(!t.observe(Event::Init));
    assert_eq!(t.current, Some(2));
    assert!(t.observe(Event::InitDone));
    assert_eq!(t.current, None, "absent from the relist: deleted");
    assert!(t.observe(Event::Apply(3)));
    assert!(t.observe(Event::Delete(3)));
    assert_eq!(t.current, None);
}

// ---- applying ----

fn state(rt: Runtime) -> (Arc<AppState>, Arc<HealthChecks>) {
    let app = AppState::new(rt);
    let health = HealthChecks::start(app.client.clone(), &app.runtime.load());
    (app, health)
}

fn reloads(app: &AppState, result: &'static str) -> u64 {
    app.metrics
        .reloads
        .get_or_create(&ResultLabels { result })
        .get()
}

#[tokio::test]
async fn apply_swaps_valid_refuses_invalid_and_notices_key_rotation() {
    let src = source();
    let first = build(
        &src,
        Some(&snapshot_cm("v1", true)),
        Some(&key_secret("k1")),
        None,
    )
    .unwrap();
    let v1 = first.version.clone();
    let (app, health) = state(first);

    // Same content: nothing to do, nothing counted.
    assert!(!apply(
        &app,
        &health,
        &src,
        Some(&snapshot_cm("v1", true)),
        Some(&key_secret("k1"))
    ));
    assert_eq!(reloads(&app, "applied"), 0);

    // A rotated key changes no version but must be applied.
    assert!(apply(
        &app,
        &health,
        &src,
        Some(&snapshot_cm("v1", true)),
        Some(&key_secret("k2"))
    ));
    assert_eq!(app.runtime.load().version, v1);
    assert_eq!(api_key(&app.runtime.load()).as_deref(), Some("k2"));

    // Invalid: refused, the last good one keeps serving.
    let bad = configmap(
        &[(
            SNAPSHOT_KEY,
            "backends: []\nroutes: [{name: r, models: ['*'], backend: nope}]\n",
        )],
        "2",
    );
    assert!(!apply(
        &app,
        &health,
        &src,
        Some(&bad),
        Some(&key_secret("k2"))
    ));
    assert!(!apply(&app, &health, &src, None, Some(&key_secret("k2"))));
    assert_eq!(app.runtime.load().version, v1);
    assert_eq!(reloads(&app, "rejected"), 2);

    // New snapshot.
    assert!(apply(
        &app,
        &health,
        &src,
        Some(&snapshot_cm("v2", true)),
        Some(&key_secret("k2"))
    ));
    assert!(app.runtime.load().version.starts_with("v2-"));
    assert_eq!(reloads(&app, "applied"), 2);
    assert!(app
        .metrics
        .encode()
        .contains("switchyard_config_info{version=\"v2-"));
}

// ---- the watch loop against a mocked API server ----

type MockHandle =
    tower_test::mock::Handle<http::Request<kube::client::Body>, http::Response<axum::body::Body>>;

/// What the fake API server answers: lists from the current objects (or an error status
/// while `outage` lasts), watches from a channel per resource that the test feeds.
struct FakeApi {
    configmap: Mutex<Option<ConfigMap>>,
    secret: Mutex<Option<Secret>>,
    /// Failing list calls still to answer with 503, per resource.
    outage: Mutex<BTreeMap<&'static str, u32>>,
    watches: Mutex<BTreeMap<&'static str, mpsc::UnboundedReceiver<Bytes>>>,
    requests: Mutex<Vec<String>>,
}

fn watch_event(kind: &str, object: &impl serde::Serialize) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": kind, "object": object})).unwrap();
    line.push(b'\n');
    Bytes::from(line)
}

fn respond(status: u16, body: axum::body::Body) -> http::Response<axum::body::Body> {
    http::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(body)
        .unwrap()
}

impl FakeApi {
    fn serve(self: Arc<Self>, mut handle: MockHandle) {
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let uri = request.uri().to_string();
                self.requests.lock().unwrap().push(uri.clone());
                let resource = if uri.contains("/configmaps") {
                    "configmaps"
                } else if uri.contains("/secrets") {
                    "secrets"
                } else {
                    send.send_response(respond(404, axum::body::Body::empty()));
                    continue;
                };
                let expected_name = if resource == "configmaps" {
                    "metadata.name%3Dswitchyard-snapshot"
                } else {
                    "metadata.name%3Dswitchyard-credentials"
                };
                assert!(uri.contains(expected_name), "watch by name only: {uri}");
                assert!(uri.starts_with("/api/v1/namespaces/switchyard/"), "{uri}");
                if uri.contains("watch=true") {
                    let body = match self.watches.lock().unwrap().remove(resource) {
                        Some(rx) => axum::body::Body::from_stream(futures::stream::unfold(
                            rx,
                            |mut rx| async move {
                                rx.recv()
                                    .await
                                    .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
                            },
                        )),
                        // A re-watch after the test's stream ended: hang like a quiet watch.
                        None => axum::body::Body::from_stream(futures::stream::pending::<
                            Result<Bytes, std::convert::Infallible>,
                        >()),
                    };
                    send.send_response(respond(200, body));
                    continue;
                }
                let failing = {
                    let mut outage = self.outage.lock().unwrap();
                    match outage.get_mut(resource) {
                        Some(n) if *n > 0 => {
                            *n -= 1;
                            true
                        }
                        _ => false,
                    }
                };
                if failing {
                    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "message": "etcdserver: request timed out", "reason": "ServiceUnavailable", "code": 503});
                    send.send_response(respond(
                        503,
                        axum::body::Body::from(serde_json::to_vec(&status).unwrap()),
                    ));
                    continue;
                }
                let (kind, items) = if resource == "configmaps" {
                    let cm = self.configmap.lock().unwrap().clone();
                    (
                        "ConfigMapList",
                        serde_json::to_value(cm.into_iter().collect::<Vec<_>>()),
                    )
                } else {
                    let s = self.secret.lock().unwrap().clone();
                    (
                        "SecretList",
                        serde_json::to_value(s.into_iter().collect::<Vec<_>>()),
                    )
                };
                let list = json!({"apiVersion": "v1", "kind": kind,
                    "metadata": {"resourceVersion": "1"}, "items": items.unwrap()});
                send.send_response(respond(
                    200,
                    axum::body::Body::from(serde_json::to_vec(&list).unwrap()),
                ));
            }
        });
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting: {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn watch_applies_changes_keeps_last_good_and_survives_api_errors() {
    let (svc, handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<axum::body::Body>,
    >();
    let client = Client::new(svc, "default");
    let (cm_tx, cm_rx) = mpsc::unbounded_channel();
    let (secret_tx, secret_rx) = mpsc::unbounded_channel::<Bytes>();
    let fake = Arc::new(FakeApi {
        configmap: Mutex::new(Some(snapshot_cm("v1", true))),
        secret: Mutex::new(Some(key_secret("k1"))),
        // The API server is unavailable for the first ConfigMap list.
        outage: Mutex::new(BTreeMap::from([("configmaps", 1)])),
        watches: Mutex::new(BTreeMap::from([
            ("configmaps", cm_rx),
            ("secrets", secret_rx),
        ])),
        requests: Mutex::default(),
    });
    fake.clone().serve(handle);

    // The proxy started from an older snapshot (as if the initial load had read it).
    let start = build(
        &source(),
        Some(&snapshot_cm("v0", true)),
        Some(&key_secret("k0")),
        None,
    )
    .unwrap();
    let (app, health) = state(start);
    let task = tokio::spawn(watch(app.clone(), health, client, source()));

    // The failed list is counted, then the retry picks up v1 with its key.
    eventually("v1 applied", || {
        app.runtime.load().version.starts_with("v1-")
    })
    .await;
    assert_eq!(app.metrics.config_watch_errors.get(), 1);
    assert_eq!(api_key(&app.runtime.load()).as_deref(), Some("k1"));
    assert_eq!(reloads(&app, "applied"), 1);

    // An invalid snapshot is refused; v1 keeps serving.
    let mut bad = configmap(
        &[(
            SNAPSHOT_KEY,
            "backends: []\nroutes: [{name: r, models: ['*'], backend: nope}]\n",
        )],
        "2",
    );
    bad.metadata.resource_version = Some("2".into());
    cm_tx.send(watch_event("MODIFIED", &bad)).unwrap();
    eventually("invalid refused", || reloads(&app, "rejected") == 1).await;
    assert!(app.runtime.load().version.starts_with("v1-"));

    // The key is rotated in the Secret: applied although the snapshot is unchanged... once
    // the snapshot is valid again.
    let mut good = snapshot_cm("v2", true);
    good.metadata.resource_version = Some("3".into());
    cm_tx.send(watch_event("MODIFIED", &good)).unwrap();
    eventually("v2 applied", || {
        app.runtime.load().version.starts_with("v2-")
    })
    .await;
    let mut rotated = key_secret("k2");
    rotated.metadata.resource_version = Some("4".into());
    secret_tx.send(watch_event("MODIFIED", &rotated)).unwrap();
    eventually("key rotated", || {
        api_key(&app.runtime.load()).as_deref() == Some("k2")
    })
    .await;
    assert_eq!(reloads(&app, "applied"), 3);

    // The ConfigMap is deleted: refused (counted), v2 keeps serving.
    cm_tx.send(watch_event("DELETED", &good)).unwrap();
    eventually("deletion refused", || reloads(&app, "rejected") == 2).await;
    assert!(app.runtime.load().version.starts_with("v2-"));
    assert!(!task.is_finished(), "the watch never exits");

    let requests = fake.requests.lock().unwrap().clone();
    assert!(
        requests.iter().all(|r| !r.contains(KEY_VALUE)),
        "{requests:?}"
    );
    task.abort();
}

#[tokio::test]
async fn initial_load_waits_for_a_servable_snapshot() {
    let (svc, mut handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<axum::body::Body>,
    >();
    let client = Client::new(svc, "default");
    tokio::spawn(async move {
        let mut configmap_gets = 0;
        while let Some((request, send)) = handle.next_request().await {
            let uri = request.uri().to_string();
            let body = if uri == "/api/v1/namespaces/switchyard/configmaps/switchyard-snapshot" {
                configmap_gets += 1;
                if configmap_gets == 1 {
                    // Not published yet.
                    let status = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                        "reason": "NotFound", "code": 404, "message": "configmaps \"switchyard-snapshot\" not found"});
                    send.send_response(respond(
                        404,
                        axum::body::Body::from(serde_json::to_vec(&status).unwrap()),
                    ));
                    continue;
                }
                serde_json::to_vec(&snapshot_cm("v1", true)).unwrap()
            } else if uri == "/api/v1/namespaces/switchyard/secrets/switchyard-credentials" {
                serde_json::to_vec(&key_secret(KEY_VALUE)).unwrap()
            } else {
                panic!("unexpected request {uri}");
            };
            send.send_response(respond(200, axum::body::Body::from(body)));
        }
    });
    let rt = initial_load(&client, &source(), Duration::from_secs(20))
        .await
        .unwrap();
    assert!(rt.version.starts_with("v1-"));
    assert_eq!(api_key(&rt).as_deref(), Some(KEY_VALUE));
}

#[tokio::test]
async fn initial_load_times_out_with_the_last_reason() {
    let (svc, mut handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<axum::body::Body>,
    >();
    let client = Client::new(svc, "default");
    tokio::spawn(async move {
        while let Some((request, send)) = handle.next_request().await {
            if request.uri().path().contains("/secrets/") {
                send.send_response(respond(
                    404,
                    axum::body::Body::from(
                        r#"{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"NotFound","code":404}"#,
                    ),
                ));
                continue;
            }
            let cm = configmap(&[("wrong.yaml", "x")], "1");
            send.send_response(respond(
                200,
                axum::body::Body::from(serde_json::to_vec(&cm).unwrap()),
            ));
        }
    });
    let err = initial_load(&client, &source(), Duration::from_millis(300))
        .await
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "no servable snapshot after 300ms: ConfigMap switchyard/switchyard-snapshot has no `snapshot.yaml` key (keys present: wrong.yaml)"
    );
}

// ---- client keys (published in the credentials Secret, merged into the snapshot) ----

/// What `printf %s "$KEY" | sha256sum` prints.
fn sha256_hex(key: &str) -> String {
    crate::routing::keys::hash_key(key)
}

fn keys_yaml(keys: &[(&str, &str)]) -> String {
    keys.iter()
        .map(|(name, key)| format!("- {{name: {name}, sha256: {}}}\n", sha256_hex(key)))
        .collect()
}

fn keyed_cm(version: &str) -> ConfigMap {
    let mut cm = snapshot_cm(version, true);
    cm.metadata.annotations = Some(BTreeMap::from([(
        CLIENT_KEYS_ANNOTATION.to_owned(),
        CLIENT_KEYS_REQUIRED.to_owned(),
    )]));
    cm
}

fn keyed_secret(api_key: &str, keys: &str, resource_version: &str) -> Secret {
    secret(
        &[
            ("backend.local.apiKey", api_key.as_bytes()),
            (CLIENT_KEYS_KEY, keys.as_bytes()),
        ],
        resource_version,
    )
}

#[test]
fn client_keys_from_the_secret_are_merged_into_the_snapshot() {
    let yaml = keys_yaml(&[("alice", "alice-key")]);
    let (snapshot, _) = decode(
        &source(),
        Some(&keyed_cm("v1")),
        Some(&keyed_secret("k", &yaml, "1")),
    )
    .unwrap();
    assert_eq!(snapshot.keys.len(), 1);
    assert_eq!(snapshot.keys[0].name, "alice");
    assert_eq!(snapshot.keys[0].sha256, sha256_hex("alice-key"));
}

#[test]
fn bad_client_keys_are_refused_naming_the_field_never_the_value() {
    let plaintext = "sk-plaintext-client-key";
    let bad = format!("- {{name: alice, sha256: {plaintext}}}\n");
    let err = decode(
        &source(),
        Some(&keyed_cm("v1")),
        Some(&keyed_secret("k", &bad, "1")),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Secret switchyard/switchyard-credentials key `keys.yaml`: invalid snapshot:\n  - keys[0].sha256: must be 64 hex digits (the SHA-256 of the key, never the key)"
    );
    let garbled = format!(
        "- {{name: alice, sha256: {}, limits: {{concurrent: {plaintext}}}}}\n",
        sha256_hex("a")
    );
    let msg = decode(
        &source(),
        Some(&keyed_cm("v1")),
        Some(&keyed_secret("k", &garbled, "1")),
    )
    .unwrap_err()
    .to_string();
    assert!(
        msg.starts_with("Secret switchyard/switchyard-credentials key `keys.yaml`: "),
        "{msg}"
    );
    assert!(
        !msg.contains(plaintext) && !msg.contains(&sha256_hex("a")),
        "{msg}"
    );
}

#[test]
fn a_snapshot_that_requires_client_keys_is_refused_without_them() {
    // The credentials Secret lost its `keys.yaml` (or lists none): serving would let anyone in.
    let err = decode(&source(), Some(&keyed_cm("v1")), Some(&key_secret("k"))).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Secret switchyard/switchyard-credentials has no client keys (`keys.yaml`), but the snapshot requires them (switchyard.dev/client-keys); refused so the proxy does not accept anyone"
    );
    let err = decode(
        &source(),
        Some(&keyed_cm("v1")),
        Some(&keyed_secret("k", "[]\n", "1")),
    )
    .unwrap_err();
    assert!(
        matches!(err, ClusterError::ClientKeysMissing { .. }),
        "{err}"
    );
}

async fn serve(router: axum::Router) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, router).await });
    format!("http://{addr}")
}

/// Through the watch and the real HTTP routers: keys from the credentials Secret are
/// enforced (401 without, 200 with), a changed set is applied on its watch event keeping the
/// limiter state of unchanged keys, and `/config` shows the version, no hash.
#[tokio::test]
async fn client_keys_in_the_secret_are_enforced_and_reloaded() {
    let (svc, handle) = tower_test::mock::pair::<
        http::Request<kube::client::Body>,
        http::Response<axum::body::Body>,
    >();
    let client = Client::new(svc, "default");
    let (_cm_tx, cm_rx) = mpsc::unbounded_channel();
    let (secret_tx, secret_rx) = mpsc::unbounded_channel::<Bytes>();
    let fake = Arc::new(FakeApi {
        configmap: Mutex::new(Some(keyed_cm("v1"))),
        secret: Mutex::new(Some(keyed_secret(
            "k1",
            &keys_yaml(&[("alice", "alice-key")]),
            "1",
        ))),
        outage: Mutex::default(),
        watches: Mutex::new(BTreeMap::from([
            ("configmaps", cm_rx),
            ("secrets", secret_rx),
        ])),
        requests: Mutex::default(),
    });
    fake.clone().serve(handle);
    // Started open (as if from an older snapshot without keys).
    let start = build(
        &source(),
        Some(&snapshot_cm("v0", true)),
        Some(&key_secret("k0")),
        None,
    )
    .unwrap();
    assert!(start.keys.is_open());
    let (app, health) = state(start);
    let task = tokio::spawn(watch(app.clone(), health, client, source()));
    eventually("keys applied", || !app.runtime.load().keys.is_open()).await;

    let api = serve(crate::http::api_router(app.clone())).await;
    let admin = serve(crate::http::admin_router(app.clone(), None)).await;
    let http = reqwest::Client::new();
    let models = |key: Option<&'static str>| {
        let mut req = http.get(format!("{api}/v1/models"));
        if let Some(k) = key {
            req = req.header("x-api-key", k);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    assert_eq!(models(None).await, 401);
    assert_eq!(models(Some("wrong-key")).await, 401);
    assert_eq!(models(Some("alice-key")).await, 200);
    let config = http
        .get(format!("{admin}/config"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(config.contains("\"version\":\"v1-"), "{config}");
    assert!(!config.contains(&sha256_hex("alice-key")), "{config}");
    let alice = app.runtime.load().keys.get("alice").unwrap().clone();

    // Bob is added: applied on the Secret's watch event; Alice keeps her limiter entry.
    let mut rotated = keyed_secret(
        "k1",
        &keys_yaml(&[("alice", "alice-key"), ("bob", "bob-key")]),
        "2",
    );
    rotated.metadata.resource_version = Some("2".into());
    secret_tx.send(watch_event("MODIFIED", &rotated)).unwrap();
    eventually("bob added", || app.runtime.load().keys.get("bob").is_some()).await;
    assert_eq!(models(Some("bob-key")).await, 200);
    assert_eq!(models(Some("alice-key")).await, 200);
    assert!(Arc::ptr_eq(
        &alice,
        app.runtime.load().keys.get("alice").unwrap()
    ));

    // A bad set is refused; the good one keeps serving.
    let mut bad = keyed_secret("k1", "- {name: bob, sha256: nothex}\n", "3");
    bad.metadata.resource_version = Some("3".into());
    secret_tx.send(watch_event("MODIFIED", &bad)).unwrap();
    eventually("bad keys refused", || reloads(&app, "rejected") == 1).await;
    assert_eq!(models(Some("bob-key")).await, 200);
    assert_eq!(models(None).await, 401);
    task.abort();
}
