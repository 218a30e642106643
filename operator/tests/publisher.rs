//! The snapshot publisher's whole loop (`snapshot::run`: watches, debounce, publish) against a
//! fake API server that answers lists, streams watch events the test sends, and keeps what the
//! operator applies, as an API server would. `controller.rs` checks single publishes request
//! by request; this checks what wakes the loop and how fast.

use axum::body::Bytes;
use futures::future::BoxFuture;
use http::{Method, Request, Response};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::client::Body as KubeBody;
use kube::Client;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use switchyard_operator::controller::proxy::ProxyProbe;
use switchyard_operator::controller::{snapshot, Context, Settings};
use switchyard_operator::metrics::Metrics;
use tokio::sync::{mpsc, oneshot};

type Body = axum::body::Body;

const NS: &str = "switchyard";
const HASH_A: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const HASH_B: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

struct NoProxies;

impl ProxyProbe for NoProxies {
    fn applied_version<'a>(&'a self, _ip: &'a str, _port: u16) -> BoxFuture<'a, Option<String>> {
        Box::pin(async { None })
    }
}

/// One request the operator made, as the fake saw it.
#[derive(Debug, Clone)]
struct Seen {
    method: Method,
    path: String,
    body: Value,
    at: Instant,
}

#[derive(Default)]
struct FakeApi {
    /// GET answers by path (objects the test set up, and what the operator applied).
    objects: Mutex<BTreeMap<String, Value>>,
    /// List answers by collection path.
    lists: Mutex<BTreeMap<String, Value>>,
    /// Watch streams by collection path, fed by the test.
    watches: Mutex<BTreeMap<String, mpsc::UnboundedReceiver<Bytes>>>,
}

fn reply(code: u16, body: &Value) -> Response<Body> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json")
        .body(Body::from(serde_json::to_vec(body).unwrap()))
        .unwrap()
}

fn not_found() -> Response<Body> {
    reply(
        404,
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": "not found", "reason": "NotFound", "code": 404}),
    )
}

impl FakeApi {
    fn serve(
        self: Arc<Self>,
        mut handle: tower_test::mock::Handle<Request<KubeBody>, Response<Body>>,
    ) -> mpsc::UnboundedReceiver<Seen> {
        let (seen_tx, seen_rx) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let method = request.method().clone();
                let path = request.uri().path().to_owned();
                let query = request.uri().query().unwrap_or_default().to_owned();
                let bytes = request.into_body().collect_bytes().await.unwrap();
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                let response = if query.contains("watch=true") {
                    let rx = self.watches.lock().unwrap().remove(&path);
                    let stream = match rx {
                        Some(rx) => futures::stream::unfold(rx, |mut rx| async move {
                            rx.recv()
                                .await
                                .map(|b| (Ok::<_, std::convert::Infallible>(b), rx))
                        })
                        .boxed(),
                        // A re-watch: hang like a quiet watch.
                        None => futures::stream::pending().boxed(),
                    };
                    Response::builder()
                        .status(200)
                        .header("content-type", "application/json")
                        .body(Body::from_stream(stream))
                        .unwrap()
                } else if method == Method::GET {
                    let list = self.lists.lock().unwrap().get(&path).cloned();
                    let object = self.objects.lock().unwrap().get(&path).cloned();
                    match (list, object) {
                        (Some(list), _) => reply(200, &list),
                        (None, Some(object)) => reply(200, &object),
                        (None, None) => not_found(),
                    }
                } else {
                    // Applies (objects and /status) and Events: answered with what was sent,
                    // minimal metadata and spec filled in as the API server's answer has them.
                    let mut echo = body.clone();
                    if echo.get("metadata").is_none() {
                        let name = path.trim_end_matches("/status").rsplit('/').next();
                        echo["metadata"] = json!({"name": name});
                    }
                    if echo.get("spec").is_none() && path.contains("/modelroutes/") {
                        echo["spec"] = json!({"models": ["x"], "backend": "x"});
                    } else if echo.get("spec").is_none() && path.contains("/inferencebackends/") {
                        echo["spec"] = json!({});
                    }
                    if method == Method::PATCH && !path.ends_with("/status") {
                        self.objects
                            .lock()
                            .unwrap()
                            .insert(path.clone(), echo.clone());
                    }
                    reply(if method == Method::POST { 201 } else { 200 }, &echo)
                };
                seen_tx
                    .send(Seen {
                        method,
                        path,
                        body,
                        at: Instant::now(),
                    })
                    .ok();
                send.send_response(response);
            }
        });
        seen_rx
    }
}

use futures::StreamExt;

fn list(api_version: &str, kind: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

fn secret(ns: &str, name: &str, rv: &str, data: &[(&str, &str)]) -> Value {
    let mut s: Secret = serde_json::from_value(json!({
        "metadata": {"name": name, "namespace": ns, "resourceVersion": rv}}))
    .unwrap();
    s.data = Some(
        data.iter()
            .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
            .collect(),
    );
    let mut v = serde_json::to_value(s).unwrap();
    v["apiVersion"] = json!("v1");
    v["kind"] = json!("Secret");
    v
}

/// What a metadata watch carries: no data.
fn meta(ns: &str, name: &str, rv: &str) -> Value {
    json!({"apiVersion": "meta.k8s.io/v1", "kind": "PartialObjectMetadata",
           "metadata": {"name": name, "namespace": ns, "resourceVersion": rv}})
}

fn event(type_: &str, object: &Value) -> Bytes {
    let mut line = serde_json::to_vec(&json!({"type": type_, "object": object})).unwrap();
    line.push(b'\n');
    Bytes::from(line)
}

fn decoded(secret: &Value, key: &str) -> Option<String> {
    let s: Secret = serde_json::from_value(secret.clone()).unwrap();
    let bytes = s.data?.remove(key)?.0;
    Some(String::from_utf8(bytes).unwrap())
}

const SECRETS: &str = "/api/v1/secrets";
const CLIENT_KEYS_WATCH: &str = "/api/v1/namespaces/switchyard/secrets";
const CREDENTIALS: &str = "/api/v1/namespaces/switchyard/secrets/switchyard-credentials";
const CONFIGMAP: &str = "/api/v1/namespaces/switchyard/configmaps/switchyard-snapshot";
const API_KEY_SECRET: &str = "/api/v1/namespaces/ai/secrets/anthropic-key";
const CLIENT_KEYS_SECRET: &str = "/api/v1/namespaces/switchyard/secrets/client-keys";

struct Harness {
    fake: Arc<FakeApi>,
    seen: mpsc::UnboundedReceiver<Seen>,
    /// Watch feeds by collection path.
    feeds: BTreeMap<&'static str, mpsc::UnboundedSender<Bytes>>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Harness {
    /// An external backend whose key is in Secret `ai/anthropic-key`, a route to it, and the
    /// publisher running (with `client_keys` as its client-keys Secret's `keys.yaml`).
    fn start(client_keys: Option<&str>) -> Harness {
        let (service, handle) = tower_test::mock::pair::<Request<KubeBody>, Response<Body>>();
        let client = Client::new(service, "default");
        let fake = Arc::new(FakeApi::default());
        let backend = json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": "InferenceBackend",
            "metadata": {"name": "anthropic", "namespace": "ai", "uid": "u1", "generation": 1,
                         "resourceVersion": "1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"external": {"url": "https://api.anthropic.com/v1", "protocol": "anthropic",
                                  "servedModelName": "claude-sonnet-4-5",
                                  "apiKeySecretRef": {"name": "anthropic-key"}}}});
        let route = json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": "ModelRoute",
            "metadata": {"name": "claude", "namespace": "ai", "uid": "u2", "generation": 1,
                         "resourceVersion": "1", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "spec": {"models": ["claude-*"], "backend": "anthropic"}});
        {
            let mut lists = fake.lists.lock().unwrap();
            lists.insert(
                "/apis/switchyard.dev/v1alpha1/inferencebackends".into(),
                list(
                    "switchyard.dev/v1alpha1",
                    "InferenceBackendList",
                    vec![backend],
                ),
            );
            lists.insert(
                "/apis/switchyard.dev/v1alpha1/modelroutes".into(),
                list("switchyard.dev/v1alpha1", "ModelRouteList", vec![route]),
            );
            lists.insert(
                "/apis/discovery.k8s.io/v1/endpointslices".into(),
                list("discovery.k8s.io/v1", "EndpointSliceList", vec![]),
            );
            let metas = vec![
                meta("ai", "anthropic-key", "1"),
                meta("ai", "unrelated", "1"),
            ];
            lists.insert(
                SECRETS.into(),
                list("meta.k8s.io/v1", "PartialObjectMetadataList", metas),
            );
            lists.insert(
                CLIENT_KEYS_WATCH.into(),
                list(
                    "meta.k8s.io/v1",
                    "PartialObjectMetadataList",
                    vec![meta(NS, "client-keys", "1")],
                ),
            );
            lists.insert(
                "/api/v1/namespaces/switchyard/pods".into(),
                list("v1", "PodList", vec![]),
            );
        }
        let mut objects = fake.objects.lock().unwrap();
        objects.insert(
            API_KEY_SECRET.into(),
            secret("ai", "anthropic-key", "1", &[("token", "sk-ant-one")]),
        );
        if let Some(keys) = client_keys {
            objects.insert(
                CLIENT_KEYS_SECRET.into(),
                secret(NS, "client-keys", "1", &[("keys.yaml", keys)]),
            );
        }
        drop(objects);
        let mut feeds = BTreeMap::new();
        for path in [
            "/apis/switchyard.dev/v1alpha1/inferencebackends",
            "/apis/switchyard.dev/v1alpha1/modelroutes",
            "/apis/discovery.k8s.io/v1/endpointslices",
            SECRETS,
            CLIENT_KEYS_WATCH,
        ] {
            let (tx, rx) = mpsc::unbounded_channel();
            fake.watches.lock().unwrap().insert(path.into(), rx);
            feeds.insert(path, tx);
        }
        let seen = fake.clone().serve(handle);
        let ctx = Arc::new(Context::new(
            client,
            Arc::new(Metrics::default()),
            Settings {
                snapshot_namespace: NS.into(),
                watch_namespace: None,
                proxy_admin_port: 4001,
                client_keys_secret: client_keys.map(|_| "client-keys".to_owned()),
            },
            Arc::new(NoProxies),
        ));
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(snapshot::run(ctx, async {
            stopped.await.ok();
        }));
        Harness {
            fake,
            seen,
            feeds,
            stop: Some(stop),
            task,
        }
    }

    /// The next request matching, within `wait`; the others are skipped.
    async fn until(&mut self, wait: Duration, what: impl Fn(&Seen) -> bool) -> Option<Seen> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            match tokio::time::timeout_at(deadline, self.seen.recv()).await {
                Ok(Some(seen)) if what(&seen) => return Some(seen),
                Ok(Some(_)) => continue,
                Ok(None) | Err(_) => return None,
            }
        }
    }

    async fn credentials_written(&mut self) -> Seen {
        self.until(Duration::from_secs(10), |s| {
            s.method == Method::PATCH && s.path == CREDENTIALS
        })
        .await
        .expect("the credentials Secret is written")
    }

    /// Changes a Secret as the API server would: the object (read by GET) and a metadata
    /// watch event on `feed`.
    fn change_secret(&self, feed: &str, path: &str, object: Value) {
        let m = meta(
            object["metadata"]["namespace"].as_str().unwrap(),
            object["metadata"]["name"].as_str().unwrap(),
            object["metadata"]["resourceVersion"].as_str().unwrap(),
        );
        self.fake
            .objects
            .lock()
            .unwrap()
            .insert(path.into(), object);
        self.feeds[feed].send(event("MODIFIED", &m)).unwrap();
    }

    async fn stop(mut self) {
        self.stop.take().unwrap().send(()).ok();
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("the publisher stops")
            .unwrap();
    }
}

/// A rotated API key reaches the credentials Secret on the Secret's watch event, not at the
/// next periodic publish (30 s); a Secret no backend names wakes nothing.
#[tokio::test]
async fn a_rotated_api_key_is_published_on_the_secret_watch_event() {
    let mut h = Harness::start(None);
    let first = h.credentials_written().await;
    assert_eq!(
        decoded(&first.body, "backend.anthropic.apiKey").as_deref(),
        Some("sk-ant-one")
    );
    // The first publish is done once its statuses are written.
    h.until(Duration::from_secs(10), |s| {
        s.path.ends_with("/modelroutes/claude/status")
    })
    .await
    .expect("route status written");

    // A Secret no backend references: no publish (not even a read of the key).
    h.change_secret(
        SECRETS,
        "/api/v1/namespaces/ai/secrets/unrelated",
        secret("ai", "unrelated", "5", &[("x", "y")]),
    );
    let woke = h
        .until(Duration::from_millis(1500), |s| s.path == API_KEY_SECRET)
        .await;
    assert!(
        woke.is_none(),
        "an unreferenced Secret woke the publisher: {woke:?}"
    );

    // The referenced Secret changes: a new key, published within the debounce.
    let changed = Instant::now();
    h.change_secret(
        SECRETS,
        API_KEY_SECRET,
        secret("ai", "anthropic-key", "6", &[("token", "sk-ant-two")]),
    );
    let written = h.credentials_written().await;
    let latency = written.at - changed;
    assert_eq!(
        decoded(&written.body, "backend.anthropic.apiKey").as_deref(),
        Some("sk-ant-two")
    );
    eprintln!("Secret watch event → credentials Secret written: {latency:?}");
    assert!(
        latency < Duration::from_secs(2),
        "published after {latency:?}, not on the watch event"
    );
    h.stop().await;
}

/// Client keys from the chart's Secret travel in the credentials Secret (`keys.yaml`), with
/// the ConfigMap marked `switchyard.dev/client-keys: required` and no hash in it. A bad
/// `keys.yaml` is refused with an Event naming the field (no hash, no value) and the last good
/// set stays published; a good change is published on its watch event.
#[tokio::test]
async fn client_keys_are_published_and_a_bad_set_keeps_the_last_good_one() {
    let good = format!("- {{name: alice, sha256: {HASH_A}}}\n");
    let mut h = Harness::start(Some(&good));
    let first = h.credentials_written().await;
    let keys: Vec<switchyard_api::ClientKey> =
        serde_yaml::from_str(&decoded(&first.body, "keys.yaml").expect("keys.yaml published"))
            .unwrap();
    assert_eq!(keys.len(), 1);
    assert_eq!(
        (keys[0].name.as_str(), keys[0].sha256.as_str()),
        ("alice", HASH_A)
    );
    let cm = h
        .until(Duration::from_secs(10), |s| {
            s.method == Method::PATCH && s.path == CONFIGMAP
        })
        .await
        .expect("the ConfigMap is written");
    assert_eq!(
        cm.body["metadata"]["annotations"]["switchyard.dev/client-keys"],
        "required"
    );
    let yaml = cm.body["data"]["snapshot.yaml"].as_str().unwrap();
    assert!(!yaml.contains(HASH_A) && !yaml.contains("keys"), "{yaml}");
    h.until(Duration::from_secs(10), |s| {
        s.path.ends_with("/modelroutes/claude/status")
    })
    .await
    .expect("route status written");

    // A bad entry (a plaintext key where the hash goes): an Event naming the field; the
    // credentials Secret keeps the last good set (not rewritten).
    let plaintext = "sk-switchyard-plaintext-key";
    let bad =
        format!("- {{name: alice, sha256: {HASH_A}}}\n- {{name: bob, sha256: {plaintext}}}\n");
    h.change_secret(
        CLIENT_KEYS_WATCH,
        CLIENT_KEYS_SECRET,
        secret(NS, "client-keys", "7", &[("keys.yaml", &bad)]),
    );
    let warning = h
        .until(Duration::from_secs(5), |s| {
            s.method == Method::POST && s.path.ends_with("/events")
        })
        .await
        .expect("a Warning event");
    assert_eq!(warning.body["type"], "Warning");
    assert_eq!(warning.body["reason"], "ClientKeysInvalid");
    assert_eq!(warning.body["regarding"]["kind"], "Secret");
    assert_eq!(warning.body["regarding"]["name"], "client-keys");
    let note = warning.body["note"].as_str().unwrap();
    assert!(
        note.contains("keys[1].sha256: must be 64 hex digits")
            && note.contains("the last good set stays published"),
        "{note}"
    );
    assert!(
        !note.contains(plaintext) && !note.contains(HASH_A),
        "{note}"
    );
    let rewritten = h
        .until(Duration::from_millis(1500), |s| {
            s.method == Method::PATCH && s.path == CREDENTIALS
        })
        .await;
    assert!(
        rewritten.is_none(),
        "a bad set was published: {rewritten:?}"
    );
    let stored = h.fake.objects.lock().unwrap()[CREDENTIALS].clone();
    assert!(decoded(&stored, "keys.yaml").unwrap().contains(HASH_A));

    // Fixed, with a second key: published on the watch event.
    let two = format!("- {{name: alice, sha256: {HASH_A}}}\n- {{name: bob, sha256: {HASH_B}, limits: {{requestsPerMinute: 10}}}}\n");
    let changed = Instant::now();
    h.change_secret(
        CLIENT_KEYS_WATCH,
        CLIENT_KEYS_SECRET,
        secret(NS, "client-keys", "8", &[("keys.yaml", &two)]),
    );
    let accepted = h
        .until(Duration::from_secs(5), |s| {
            s.method == Method::POST && s.path.ends_with("/events")
        })
        .await
        .expect("an Event");
    assert_eq!(accepted.body["reason"], "ClientKeysAccepted");
    let written = h.credentials_written().await;
    assert!(written.at - changed < Duration::from_secs(2));
    let keys: Vec<switchyard_api::ClientKey> =
        serde_yaml::from_str(&decoded(&written.body, "keys.yaml").unwrap()).unwrap();
    let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["alice", "bob"]);
    assert_eq!(keys[1].limits.requests_per_minute, Some(10));
    // The backend key is still there beside them.
    assert_eq!(
        decoded(&written.body, "backend.anthropic.apiKey").as_deref(),
        Some("sk-ant-one")
    );
    h.stop().await;
}

/// With client keys on but no good set yet (the Secret is missing at start), nothing is
/// published: an empty key list would let anyone in.
#[tokio::test]
async fn without_a_good_client_key_set_nothing_is_published() {
    let mut h = Harness::start(Some("unused"));
    // Removed before the publisher task first runs (the test runtime has one thread).
    h.fake.objects.lock().unwrap().remove(CLIENT_KEYS_SECRET);
    let warning = h
        .until(Duration::from_secs(10), |s| {
            s.method == Method::POST && s.path.ends_with("/events")
        })
        .await
        .expect("a Warning event");
    let note = warning.body["note"].as_str().unwrap();
    assert!(
        note.contains("not found") && note.contains("nothing is published"),
        "{note}"
    );
    let status = h
        .until(Duration::from_secs(10), |s| {
            s.path.ends_with("/modelroutes/claude/status")
        })
        .await
        .expect("route status written");
    let published = status.body["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Published")
        .unwrap()
        .clone();
    assert_eq!(published["reason"], "SnapshotInvalid");
    assert!(
        published["message"]
            .as_str()
            .unwrap()
            .contains("client keys: Secret switchyard/client-keys not found"),
        "{published}"
    );
    assert!(!h.fake.objects.lock().unwrap().contains_key(CREDENTIALS));
    assert!(!h.fake.objects.lock().unwrap().contains_key(CONFIGMAP));
    h.stop().await;
}
