//! Controller behaviour against a mocked API server (`tower_test`): each scenario asserts the
//! exact requests a reconciliation makes, in order, and answers them.

use futures::future::BoxFuture;
use http::{Method, Request, Response};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::Client;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use switchyard_api::crd::{InferenceBackend, ModelRoute};
use switchyard_api::{version_of, RoutingSnapshot};
use switchyard_e2e::mock_vllm::{MockConfig, MockVllm};
use switchyard_operator::controller::proxy::ProxyProbe;
use switchyard_operator::controller::snapshot::{publish, Inputs};
use switchyard_operator::controller::warmup::{self, Warmer};
use switchyard_operator::controller::{backend, Context, Error, Settings};
use switchyard_operator::metrics::Metrics;
use tokio::time::timeout;
use tower_test::mock::{Handle, SendResponse};

const WAIT: Duration = Duration::from_secs(10);
const SNAPSHOT_NS: &str = "switchyard";

/// Versions the fake proxies report, by pod IP (set by a scenario once it knows the snapshot).
#[derive(Default, Clone)]
struct FakeProxies(Arc<Mutex<BTreeMap<String, String>>>);

impl ProxyProbe for FakeProxies {
    fn applied_version<'a>(&'a self, pod_ip: &'a str, _port: u16) -> BoxFuture<'a, Option<String>> {
        let v = self.0.lock().unwrap().get(pod_ip).cloned();
        Box::pin(async move { v })
    }
}

struct ApiServer(Handle<Request<Body>, Response<Body>>);

struct Call {
    method: Method,
    path: String,
    query: String,
    content_type: String,
    body: Value,
    respond: SendResponse<Response<Body>>,
}

impl Call {
    fn reply(self, code: u16, body: Value) {
        let response = Response::builder()
            .status(code)
            .body(Body::from(serde_json::to_vec(&body).unwrap()))
            .unwrap();
        self.respond.send_response(response);
    }

    /// Answers an apply with the object it applied. A `/status` apply carries no metadata or
    /// spec, which the API server's answer would; the minimal ones are filled in.
    fn echo(self) {
        let mut body = self.body.clone();
        let mut segments = self.path.rsplit('/');
        let last = segments.next().unwrap_or_default();
        let (name, plural) = match last {
            "status" => (segments.next(), segments.next()),
            _ => (Some(last), segments.next()),
        };
        if body.get("metadata").is_none() {
            body["metadata"] = json!({"name": name});
        }
        if body.get("spec").is_none() {
            body["spec"] = match plural {
                Some("modelroutes") => json!({"models": ["x"], "backend": "x"}),
                _ => json!({}),
            };
        }
        self.reply(200, body);
    }

    fn created(self) {
        let body = self.body.clone();
        self.reply(201, body);
    }

    fn not_found(self) {
        self.reply(
            404,
            json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                   "message": "not found", "reason": "NotFound", "code": 404}),
        );
    }

    fn field_manager(&self) -> Option<&str> {
        self.query
            .split('&')
            .find_map(|kv| kv.strip_prefix("fieldManager="))
    }
}

impl ApiServer {
    async fn next(&mut self) -> Call {
        let (request, respond) = timeout(WAIT, self.0.next_request())
            .await
            .expect("a request within the timeout")
            .expect("the client is alive");
        let method = request.method().clone();
        let path = request.uri().path().to_owned();
        let query = request.uri().query().unwrap_or_default().to_owned();
        let content_type = request
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = request.into_body().collect_bytes().await.unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap()
        };
        Call {
            method,
            path,
            query,
            content_type,
            body,
            respond,
        }
    }

    async fn expect(&mut self, method: Method, path: &str) -> Call {
        let call = self.next().await;
        assert_eq!(
            (&call.method, call.path.as_str()),
            (&method, path),
            "unexpected request (body {})",
            call.body
        );
        call
    }

    /// Once every client is gone, no request may be left.
    async fn done(mut self) {
        let left = timeout(WAIT, self.0.next_request())
            .await
            .expect("the client shuts down");
        if let Some((request, _)) = left {
            panic!(
                "unexpected extra request {} {}",
                request.method(),
                request.uri()
            );
        }
    }
}

fn context(probe: FakeProxies) -> (Arc<Context>, ApiServer) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let ctx = Context::new(
        client,
        Arc::new(Metrics::default()),
        Settings {
            snapshot_namespace: SNAPSHOT_NS.into(),
            watch_namespace: None,
            proxy_admin_port: 4001,
            client_keys_secret: None,
        },
        Arc::new(probe),
    );
    (Arc::new(ctx), ApiServer(handle))
}

/// Runs `work` against the scenario `server`, both bounded by a timeout, then checks that no
/// request is left over.
async fn run<T, W, S>(ctx: Arc<Context>, server: ApiServer, work: W, scenario: S) -> T
where
    W: FnOnce(Arc<Context>) -> BoxFuture<'static, T>,
    S: FnOnce(ApiServer) -> BoxFuture<'static, ApiServer> + Send + 'static,
{
    let scenario = tokio::spawn(scenario(server));
    let out = timeout(WAIT, work(ctx))
        .await
        .expect("work finished in time");
    let server = timeout(WAIT, scenario)
        .await
        .expect("scenario finished in time")
        .expect("scenario passed");
    server.done().await;
    out
}

fn condition<'a>(status: &'a Value, type_: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
}

fn cond(status: &Value, type_: &str) -> (String, String) {
    let c = condition(status, type_).unwrap_or_else(|| panic!("no {type_} in {status}"));
    (
        c["status"].as_str().unwrap().to_owned(),
        c["reason"].as_str().unwrap().to_owned(),
    )
}

fn backend_from(yaml: &str) -> InferenceBackend {
    serde_yaml::from_str(yaml).unwrap()
}

fn qwen(vllm: &str) -> InferenceBackend {
    backend_from(&format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: InferenceBackend\nmetadata: {{name: qwen, namespace: ai, uid: 7c1d, generation: 2, creationTimestamp: '2026-01-01T00:00:00Z'}}\nspec:\n  vllm: {vllm}\n"
    ))
}

fn route(name: &str, created: &str, spec: &str) -> ModelRoute {
    serde_yaml::from_str(&format!(
        "apiVersion: switchyard.dev/v1alpha1\nkind: ModelRoute\nmetadata: {{name: {name}, namespace: ai, generation: 1, creationTimestamp: '{created}'}}\nspec: {spec}\n"
    ))
    .unwrap()
}

fn reconcile(
    ib: InferenceBackend,
) -> impl FnOnce(Arc<Context>) -> BoxFuture<'static, Result<Action, Error>> {
    move |ctx| Box::pin(backend::reconcile(Arc::new(ib), ctx))
}

fn boxed<F: Future<Output = ApiServer> + Send + 'static>(f: F) -> BoxFuture<'static, ApiServer> {
    Box::pin(f)
}

#[tokio::test]
async fn backend_applies_deployment_and_service_then_reports_loading() {
    let (ctx, server) = context(FakeProxies::default());
    let ib = qwen("{model: Qwen/Qwen3-8B, servedModelName: qwen3}");
    let action = run(ctx, server, reconcile(ib), |mut s| {
        boxed(async move {
            let call = s
                .expect(Method::PATCH, "/apis/apps/v1/namespaces/ai/deployments/qwen")
                .await;
            assert_eq!(call.field_manager(), Some("switchyard-operator"));
            assert!(call.query.contains("force=true"), "{}", call.query);
            assert_eq!(call.body["kind"], "Deployment");
            assert_eq!(call.body["metadata"]["ownerReferences"][0]["uid"], "7c1d");
            let mut applied = call.body.clone();
            applied["metadata"]["generation"] = json!(1);
            applied["status"] = json!({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 0});
            call.reply(200, applied);

            let call = s
                .expect(Method::PATCH, "/api/v1/namespaces/ai/services/qwen")
                .await;
            assert_eq!(call.body["kind"], "Service");
            assert_eq!(call.field_manager(), Some("switchyard-operator"));
            call.echo();

            let call = s
                .expect(
                    Method::PATCH,
                    "/apis/switchyard.dev/v1alpha1/namespaces/ai/inferencebackends/qwen/status",
                )
                .await;
            assert_eq!(call.field_manager(), Some("switchyard-operator"));
            let status = &call.body["status"];
            assert_eq!(status["observedGeneration"], 2);
            assert_eq!(cond(status, "Ready"), ("False".into(), "Loading".into()));
            assert_eq!(cond(status, "Reconciling"), ("True".into(), "Loading".into()));
            assert!(condition(status, "Stalled").is_none());
            assert_eq!(status["readyReplicas"], 0);
            assert_eq!(status["url"], "http://qwen.ai.svc:8000/v1");
            assert_eq!(status["servedModelName"], "qwen3");
            assert!(
                status["command"].as_str().unwrap().contains("--served-model-name qwen3"),
                "{status}"
            );
            call.echo();

            let call = s
                .expect(Method::POST, "/apis/events.k8s.io/v1/namespaces/ai/events")
                .await;
            assert_eq!(call.body["type"], "Normal");
            assert_eq!(call.body["reason"], "Loading");
            assert_eq!(call.body["regarding"]["name"], "qwen");
            call.created();
            s
        })
    })
    .await;
    assert_eq!(action.unwrap(), Action::requeue(Duration::from_secs(30)));
}

#[tokio::test]
async fn a_refused_extra_arg_stalls_without_applying_anything() {
    let (ctx, server) = context(FakeProxies::default());
    let ib = qwen("{model: Qwen/Qwen3-8B, extraArgs: ['--max-model-len', '4096']}");
    let action = run(ctx, server, reconcile(ib), |mut s| {
        boxed(async move {
            // The first request is the status: nothing was applied.
            let call = s
                .expect(
                    Method::PATCH,
                    "/apis/switchyard.dev/v1alpha1/namespaces/ai/inferencebackends/qwen/status",
                )
                .await;
            let status = &call.body["status"];
            assert_eq!(
                cond(status, "Stalled"),
                ("True".into(), "InvalidSpec".into())
            );
            assert_eq!(
                cond(status, "Ready"),
                ("False".into(), "InvalidSpec".into())
            );
            let message = condition(status, "Stalled").unwrap()["message"]
                .as_str()
                .unwrap();
            assert!(message.starts_with("spec.vllm.extraArgs[0]"), "{message}");
            assert!(status.get("command").is_none(), "{status}");
            call.echo();
            let call = s
                .expect(Method::POST, "/apis/events.k8s.io/v1/namespaces/ai/events")
                .await;
            assert_eq!(call.body["type"], "Warning");
            assert_eq!(call.body["reason"], "InvalidSpec");
            call.created();
            s
        })
    })
    .await;
    assert_eq!(action.unwrap(), Action::await_change());
}

#[tokio::test]
async fn multi_node_without_the_leader_worker_set_api_says_so() {
    let (ctx, server) = context(FakeProxies::default());
    let ib = qwen("{model: openai/gpt-oss-120b, nodes: 2, tensorParallel: 2}");
    let action = run(ctx, server, reconcile(ib), |mut s| {
        boxed(async move {
            s.expect(
                Method::PATCH,
                "/apis/leaderworkerset.x-k8s.io/v1/namespaces/ai/leaderworkersets/qwen",
            )
            .await
            .not_found();
            // No Service for a workload that cannot exist.
            let call = s
                .expect(
                    Method::PATCH,
                    "/apis/switchyard.dev/v1alpha1/namespaces/ai/inferencebackends/qwen/status",
                )
                .await;
            assert_eq!(
                cond(&call.body["status"], "Stalled"),
                ("True".into(), "LeaderWorkerSetMissing".into())
            );
            call.echo();
            let call = s
                .expect(Method::POST, "/apis/events.k8s.io/v1/namespaces/ai/events")
                .await;
            assert_eq!(call.body["reason"], "LeaderWorkerSetMissing");
            call.created();
            s
        })
    })
    .await;
    assert_eq!(action.unwrap(), Action::requeue(Duration::from_secs(60)));
}

#[tokio::test]
async fn an_unchanged_ready_backend_writes_no_status() {
    let (ctx, server) = context(FakeProxies::default());
    let mut ib = qwen("{model: Qwen/Qwen3-8B}");
    // The status this reconcile will compute, as if written by an earlier one.
    let ready = k8s_openapi::api::apps::v1::Deployment {
        metadata: kube::api::ObjectMeta {
            generation: Some(1),
            ..Default::default()
        },
        spec: Some(Default::default()),
        status: Some(k8s_openapi::api::apps::v1::DeploymentStatus {
            observed_generation: Some(1),
            replicas: Some(1),
            updated_replicas: Some(1),
            ready_replicas: Some(1),
            ..Default::default()
        }),
    };
    let desired = switchyard_operator::build::desired(&ib).unwrap().unwrap();
    let observed = backend::Observed::Workload(backend::WorkloadState::from_deployment(&ready));
    ib.status = Some(backend::status(
        &ib,
        &observed,
        Some(&desired),
        k8s_openapi::chrono::Utc::now(),
    ));
    let action = run(ctx, server, reconcile(ib), |mut s| {
        boxed(async move {
            let call = s
                .expect(Method::PATCH, "/apis/apps/v1/namespaces/ai/deployments/qwen")
                .await;
            let mut applied = call.body.clone();
            applied["metadata"]["generation"] = json!(1);
            applied["status"] = json!({"observedGeneration": 1, "replicas": 1, "updatedReplicas": 1, "readyReplicas": 1});
            call.reply(200, applied);
            s.expect(Method::PATCH, "/api/v1/namespaces/ai/services/qwen")
                .await
                .echo();
            s
        })
    })
    .await;
    assert_eq!(action.unwrap(), Action::requeue(Duration::from_secs(300)));
}

fn endpoint_slice(ip: &str) -> EndpointSlice {
    serde_json::from_value(json!({
        "metadata": {"name": "qwen-abc", "namespace": "ai",
                     "labels": {"kubernetes.io/service-name": "qwen", "switchyard.dev/backend": "qwen"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": 8000}],
        "endpoints": [{"addresses": [ip], "conditions": {"ready": true}}],
    }))
    .unwrap()
}

fn pods(ips: &[&str]) -> Value {
    json!({
        "kind": "PodList", "apiVersion": "v1", "metadata": {},
        "items": ips.iter().enumerate().map(|(i, ip)| json!({
            "metadata": {"name": format!("switchyard-proxy-{i}"), "namespace": SNAPSHOT_NS},
            "status": {"phase": "Running", "podIP": ip},
        })).collect::<Vec<_>>(),
    })
}

#[tokio::test]
async fn routes_compile_into_the_snapshot_and_the_newer_route_gets_the_conflict() {
    let proxies = FakeProxies::default();
    let (ctx, server) = context(proxies.clone());
    let inputs = Inputs {
        backends: vec![qwen("{model: Qwen/Qwen3-8B}")],
        routes: vec![
            route(
                "old",
                "2026-01-01T00:00:00Z",
                "{models: [shared], backend: qwen}",
            ),
            route(
                "new",
                "2026-03-01T00:00:00Z",
                "{models: [shared, own], backend: qwen}",
            ),
        ],
        endpoint_slices: vec![endpoint_slice("10.0.3.7")],
    };
    let delay = run(
        ctx,
        server,
        move |ctx| Box::pin(async move { publish(&inputs, &ctx).await }),
        move |mut s| {
            boxed(async move {
                // Credentials first, so a proxy never sees a snapshot whose keys are missing.
                s.expect(Method::GET, "/api/v1/namespaces/switchyard/secrets/switchyard-credentials")
                    .await
                    .not_found();
                let call = s
                    .expect(Method::PATCH, "/api/v1/namespaces/switchyard/secrets/switchyard-credentials")
                    .await;
                assert_eq!(call.field_manager(), Some("switchyard-operator"));
                assert_eq!(call.body["data"], json!({}));
                call.echo();

                s.expect(Method::GET, "/api/v1/namespaces/switchyard/configmaps/switchyard-snapshot")
                    .await
                    .not_found();
                let call = s
                    .expect(Method::PATCH, "/api/v1/namespaces/switchyard/configmaps/switchyard-snapshot")
                    .await;
                let yaml = call.body["data"]["snapshot.yaml"].as_str().unwrap().to_owned();
                let snapshot: RoutingSnapshot = serde_yaml::from_str(&yaml).unwrap();
                let routes: Vec<(&str, &Vec<String>)> = snapshot
                    .routes
                    .iter()
                    .map(|r| (r.name.as_str(), &r.models))
                    .collect();
                assert_eq!(
                    routes,
                    [("new", &vec!["own".to_owned()]), ("old", &vec!["shared".to_owned()])]
                );
                assert_eq!(snapshot.backends[0].endpoints, ["http://10.0.3.7:8000/v1"]);
                let version = snapshot.version.clone().unwrap();
                call.echo();

                // One proxy runs it, the other still the previous snapshot.
                proxies.0.lock().unwrap().extend([
                    ("10.1.0.1".to_owned(), version_of(&snapshot)),
                    ("10.1.0.2".to_owned(), "0000000000000000-0000000000000000".to_owned()),
                ]);
                let call = s.expect(Method::GET, "/api/v1/namespaces/switchyard/pods").await;
                assert!(
                    call.query.contains("labelSelector=app.kubernetes.io%2Fname%3Dswitchyard%2Capp.kubernetes.io%2Fcomponent%3Dproxy"),
                    "{}",
                    call.query
                );
                call.reply(200, pods(&["10.1.0.1", "10.1.0.2"]));

                let call = s
                    .expect(
                        Method::PATCH,
                        "/apis/switchyard.dev/v1alpha1/namespaces/ai/inferencebackends/qwen/status",
                    )
                    .await;
                // Its own manager: the backend controller's conditions are not touched.
                assert_eq!(call.field_manager(), Some("switchyard-operator-snapshot"));
                let conditions = call.body["status"]["conditions"].as_array().unwrap();
                assert_eq!(conditions.len(), 1);
                assert_eq!(conditions[0]["type"], "Published");
                assert_eq!(conditions[0]["status"], "True");
                assert!(
                    conditions[0]["message"].as_str().unwrap().contains("1 ready endpoint"),
                    "{}",
                    conditions[0]
                );
                call.echo();

                let call = s
                    .expect(Method::PATCH, "/apis/switchyard.dev/v1alpha1/namespaces/ai/modelroutes/new/status")
                    .await;
                let status = &call.body["status"];
                assert_eq!(cond(status, "Stalled"), ("True".into(), "ModelConflict".into()));
                let message = condition(status, "Stalled").unwrap()["message"].as_str().unwrap();
                assert!(message.contains("`shared`") && message.contains("`old`"), "{message}");
                assert_eq!(cond(status, "Published"), ("True".into(), "Accepted".into()));
                assert_eq!(status["models"], json!(["own"]));
                assert_eq!(status["proxiesSynced"], "1/2");
                call.echo();

                let call = s
                    .expect(Method::PATCH, "/apis/switchyard.dev/v1alpha1/namespaces/ai/modelroutes/old/status")
                    .await;
                let status = &call.body["status"];
                assert!(condition(status, "Stalled").is_none(), "{status}");
                assert_eq!(cond(status, "Ready"), ("False".into(), "ProxiesSyncing".into()));
                assert_eq!(cond(status, "Reconciling"), ("True".into(), "ProxiesSyncing".into()));
                assert_eq!(cond(status, "Synced"), ("False".into(), "ProxiesSyncing".into()));
                assert_eq!(status["proxiesSynced"], "1/2");
                assert_eq!(status["snapshotVersion"], version.as_str());
                assert_eq!(status["models"], json!(["shared"]));
                call.echo();
                s
            })
        },
    )
    .await;
    assert_eq!(
        delay.unwrap(),
        Duration::from_secs(5),
        "re-poll soon while proxies sync"
    );
}

#[tokio::test]
async fn unchanged_content_is_not_rewritten_and_one_failed_status_does_not_block_the_others() {
    let (ctx, server) = context(FakeProxies::default());
    let inputs = Inputs {
        backends: vec![qwen("{model: Qwen/Qwen3-8B}")],
        routes: vec![
            route(
                "a-typo",
                "2026-01-01T00:00:00Z",
                "{models: [x], backend: qwne}",
            ),
            route(
                "b-good",
                "2026-01-01T00:00:00Z",
                "{models: ['*'], backend: qwen}",
            ),
        ],
        endpoint_slices: vec![],
    };
    // What the ConfigMap and Secret already hold: exactly this publish's content.
    let compiled = switchyard_api::compile(&switchyard_api::CompileInput {
        backends: &inputs.backends,
        routes: &inputs.routes,
        ..Default::default()
    });
    let config_map = serde_json::to_value(
        switchyard_operator::build::snapshot::snapshot_config_map(SNAPSHOT_NS, &compiled.snapshot),
    )
    .unwrap();
    let secret = serde_json::to_value(switchyard_operator::build::snapshot::credentials_secret(
        SNAPSHOT_NS,
        &compiled.snapshot,
        BTreeMap::new(),
    ))
    .unwrap();
    let result = run(
        ctx,
        server,
        move |ctx| Box::pin(async move { publish(&inputs, &ctx).await }),
        move |mut s| {
            boxed(async move {
                s.expect(Method::GET, "/api/v1/namespaces/switchyard/secrets/switchyard-credentials")
                    .await
                    .reply(200, secret);
                s.expect(Method::GET, "/api/v1/namespaces/switchyard/configmaps/switchyard-snapshot")
                    .await
                    .reply(200, config_map);
                // No writes: straight to the proxies (none running).
                s.expect(Method::GET, "/api/v1/namespaces/switchyard/pods")
                    .await
                    .reply(200, pods(&[]));
                let call = s
                    .expect(
                        Method::PATCH,
                        "/apis/switchyard.dev/v1alpha1/namespaces/ai/inferencebackends/qwen/status",
                    )
                    .await;
                call.echo();
                let call = s
                    .expect(Method::PATCH, "/apis/switchyard.dev/v1alpha1/namespaces/ai/modelroutes/a-typo/status")
                    .await;
                let status = &call.body["status"];
                assert_eq!(cond(status, "Stalled"), ("True".into(), "BackendNotFound".into()));
                assert_eq!(cond(status, "Published"), ("False".into(), "BackendNotFound".into()));
                assert!(status.get("models").is_none(), "{status}");
                call.reply(
                    500,
                    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                           "message": "etcd is sad", "reason": "InternalError", "code": 500}),
                );
                let call = s
                    .expect(Method::PATCH, "/apis/switchyard.dev/v1alpha1/namespaces/ai/modelroutes/b-good/status")
                    .await;
                let status = &call.body["status"];
                assert_eq!(cond(status, "Ready"), ("True".into(), "Accepted".into()));
                assert_eq!(cond(status, "Synced"), ("False".into(), "NoProxies".into()));
                assert!(condition(status, "Reconciling").is_none());
                assert_eq!(status["proxiesSynced"], "0/0");
                call.echo();
                s
            })
        },
    )
    .await;
    match result {
        Err(Error::Status { name, .. }) => assert_eq!(name, "a-typo"),
        other => panic!("expected the failed status write to be returned, got {other:?}"),
    }
}

#[tokio::test]
async fn an_unreadable_api_key_refuses_the_backend_not_the_snapshot() {
    let (ctx, server) = context(FakeProxies::default());
    let anthropic = backend_from(
        "apiVersion: switchyard.dev/v1alpha1\nkind: InferenceBackend\nmetadata: {name: anthropic, namespace: ai}\nspec:\n  external: {url: 'https://api.anthropic.com/v1', protocol: anthropic, apiKeySecretRef: {name: anthropic-key}}\n",
    );
    let inputs = Inputs {
        backends: vec![anthropic, qwen("{model: Qwen/Qwen3-8B}")],
        routes: vec![
            route(
                "claude",
                "2026-01-01T00:00:00Z",
                "{models: ['claude-*'], backend: qwen, fallbacks: [anthropic]}",
            ),
            route(
                "local",
                "2026-01-01T00:00:00Z",
                "{models: [local], backend: qwen}",
            ),
        ],
        endpoint_slices: vec![],
    };
    let result = run(
        ctx,
        server,
        move |ctx| Box::pin(async move { publish(&inputs, &ctx).await }),
        move |mut s| {
            boxed(async move {
                s.expect(Method::GET, "/api/v1/namespaces/ai/secrets/anthropic-key")
                    .await
                    .not_found();
                s.expect(Method::GET, "/api/v1/namespaces/switchyard/secrets/switchyard-credentials")
                    .await
                    .not_found();
                let call = s
                    .expect(Method::PATCH, "/api/v1/namespaces/switchyard/secrets/switchyard-credentials")
                    .await;
                assert_eq!(call.body["data"], json!({}), "no key for a refused backend");
                call.echo();
                s.expect(Method::GET, "/api/v1/namespaces/switchyard/configmaps/switchyard-snapshot")
                    .await
                    .not_found();
                let call = s
                    .expect(Method::PATCH, "/api/v1/namespaces/switchyard/configmaps/switchyard-snapshot")
                    .await;
                let snapshot: RoutingSnapshot =
                    serde_yaml::from_str(call.body["data"]["snapshot.yaml"].as_str().unwrap()).unwrap();
                let names: Vec<&str> = snapshot.routes.iter().map(|r| r.name.as_str()).collect();
                assert_eq!(names, ["local"]);
                call.echo();
                s.expect(Method::GET, "/api/v1/namespaces/switchyard/pods")
                    .await
                    .reply(200, pods(&[]));
                let call = s
                    .expect(
                        Method::PATCH,
                        "/apis/switchyard.dev/v1alpha1/namespaces/ai/inferencebackends/anthropic/status",
                    )
                    .await;
                let published = &call.body["status"]["conditions"][0];
                assert_eq!(published["reason"], "CredentialsMissing");
                assert!(
                    published["message"].as_str().unwrap().contains("`anthropic-key`"),
                    "{published}"
                );
                call.echo();
                s.expect(
                    Method::PATCH,
                    "/apis/switchyard.dev/v1alpha1/namespaces/ai/inferencebackends/qwen/status",
                )
                .await
                .echo();
                let call = s
                    .expect(Method::PATCH, "/apis/switchyard.dev/v1alpha1/namespaces/ai/modelroutes/claude/status")
                    .await;
                let stalled = condition(&call.body["status"], "Stalled").unwrap();
                assert_eq!(stalled["reason"], "BackendNotFound");
                assert!(stalled["message"].as_str().unwrap().contains("was refused"), "{stalled}");
                call.echo();
                s.expect(Method::PATCH, "/apis/switchyard.dev/v1alpha1/namespaces/ai/modelroutes/local/status")
                    .await
                    .echo();
                s
            })
        },
    )
    .await;
    assert_eq!(result.unwrap(), Duration::from_secs(30));
}

/// A vLLM pod of backend `qwen` with the warm-up gate, its server on `127.0.0.1:port`.
fn vllm_pod(port: u16, containers_ready: bool) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "qwen-7d9f-x", "namespace": "ai",
                     "labels": {"switchyard.dev/backend": "qwen", "app.kubernetes.io/name": "vllm"}},
        "spec": {
            "containers": [{"name": "vllm", "ports": [{"name": "http", "containerPort": port}]}],
            "readinessGates": [{"conditionType": "switchyard.dev/warmed"}],
        },
        "status": {
            "phase": "Running",
            "podIP": "127.0.0.1",
            "conditions": [
                {"type": "ContainersReady", "status": if containers_ready { "True" } else { "False" }},
                {"type": "Ready", "status": "False", "reason": "ReadinessGatesNotReady"},
            ],
        },
    })
}

async fn mock_vllm() -> MockVllm {
    MockVllm::start(
        MockConfig {
            served_model_name: "qwen3".into(),
            ..Default::default()
        },
        "127.0.0.1:0".parse().unwrap(),
    )
    .await
    .unwrap()
}

fn warm(pod: Value) -> impl FnOnce(Arc<Context>) -> BoxFuture<'static, Result<Action, Error>> {
    move |ctx| {
        let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(pod).unwrap();
        Box::pin(warmup::reconcile(Arc::new(pod), Arc::new(Warmer::new(ctx))))
    }
}

const BACKEND_PATH: &str = "/apis/switchyard.dev/v1alpha1/namespaces/ai/inferencebackends/qwen";
const POD_STATUS_PATH: &str = "/api/v1/namespaces/ai/pods/qwen-7d9f-x/status";

#[tokio::test]
async fn a_ready_pod_is_warmed_up_through_vllm_then_its_gate_opens() {
    let mock = mock_vllm().await;
    let (ctx, server) = context(FakeProxies::default());
    let metrics = ctx.metrics.clone();
    let ib = qwen(
        "{model: Qwen/Qwen3-8B, servedModelName: qwen3, warmup: {promptTokens: 512, requests: 2}}",
    );
    let ib = serde_json::to_value(&ib).unwrap();
    let pod = vllm_pod(mock.addr.port(), true);
    let answer = pod.clone();
    let action = run(ctx, server, warm(pod), move |mut s| {
        boxed(async move {
            s.expect(Method::GET, BACKEND_PATH).await.reply(200, ib);
            // Sent only after both requests were answered.
            let call = s.expect(Method::PATCH, POD_STATUS_PATH).await;
            // Strategic merge: the list is merged by `type`, the kubelet's conditions stay.
            assert_eq!(call.content_type, "application/strategic-merge-patch+json");
            let conditions = call.body["status"]["conditions"].as_array().unwrap();
            assert_eq!(conditions.len(), 1, "{}", call.body);
            let c = &conditions[0];
            assert_eq!(c["type"], "switchyard.dev/warmed");
            assert_eq!(c["status"], "True");
            assert_eq!(c["reason"], "WarmedUp");
            let message = c["message"].as_str().unwrap();
            assert!(
                message.starts_with("warmed up in ")
                    && message.ends_with("(2 request(s) of about 512 prompt tokens)"),
                "{message}"
            );
            call.reply(200, answer);

            let call = s
                .expect(Method::PATCH, &format!("{BACKEND_PATH}/status"))
                .await;
            assert_eq!(call.field_manager(), Some("switchyard-operator-warmup"));
            let warmup = &call.body["status"]["warmup"];
            assert_eq!(warmup["pod"], "qwen-7d9f-x");
            assert_eq!(warmup["reason"], "WarmedUp");
            assert!(warmup["durationMs"].is_u64(), "{warmup}");
            assert_eq!(
                call.body["status"].as_object().unwrap().len(),
                1,
                "only its own field: {}",
                call.body
            );
            call.echo();
            s
        })
    })
    .await;
    assert_eq!(action.unwrap(), Action::await_change());

    // What vLLM received: two chat completions for the served model, not streamed, each with
    // its own first line (the prefix cache does not answer the second).
    let bodies = mock.stats.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(
        mock.stats.errors.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    for (i, body) in bodies.iter().enumerate() {
        assert_eq!(body["model"], "qwen3");
        assert_eq!(body["stream"], false);
        assert_eq!(body["max_tokens"], 16);
        let text = body["messages"][0]["content"].as_str().unwrap();
        assert!(
            text.starts_with(&format!("Warm-up request {}.", i + 1)),
            "{text}"
        );
    }
    let tokens = switchyard_e2e::mock_vllm::count_prompt_tokens(&bodies[0]);
    assert!((480..=560).contains(&tokens), "{tokens} prompt tokens");
    let text = metrics.encode();
    assert!(
        text.contains(
            "switchyard_operator_warmup_duration_seconds_count{namespace=\"ai\",backend=\"qwen\"} 1"
        ),
        "{text}"
    );
    mock.shutdown().await;
}

#[tokio::test]
async fn a_failed_warmup_keeps_the_gate_closed_and_is_retried_with_backoff() {
    let mock = mock_vllm().await;
    mock.stats.fail_next(500, 1);
    let (ctx, server) = context(FakeProxies::default());
    let metrics = ctx.metrics.clone();
    let ib = serde_json::to_value(qwen("{model: Qwen/Qwen3-8B, servedModelName: qwen3}")).unwrap();
    let pod = vllm_pod(mock.addr.port(), true);
    let answer = pod.clone();
    let action = run(ctx, server, warm(pod), move |mut s| {
        boxed(async move {
            s.expect(Method::GET, BACKEND_PATH).await.reply(200, ib);
            let call = s.expect(Method::PATCH, POD_STATUS_PATH).await;
            let c = &call.body["status"]["conditions"][0];
            assert_eq!(c["type"], "switchyard.dev/warmed");
            assert_eq!(c["status"], "False");
            assert_eq!(c["reason"], "WarmupFailed");
            let message = c["message"].as_str().unwrap();
            assert!(message.contains("request 1/1: HTTP 500"), "{message}");
            assert!(c["lastProbeTime"].is_string(), "the retry clock: {c}");
            call.reply(200, answer);
            let call = s
                .expect(Method::PATCH, &format!("{BACKEND_PATH}/status"))
                .await;
            assert_eq!(call.body["status"]["warmup"]["reason"], "WarmupFailed");
            call.echo();
            s
        })
    })
    .await;
    assert_eq!(action.unwrap(), Action::requeue(Duration::from_secs(5)));
    assert_eq!(
        mock.stats
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    let text = metrics.encode();
    assert!(
        text.contains(
            "switchyard_operator_warmup_failures_total{namespace=\"ai\",backend=\"qwen\"} 1"
        ),
        "{text}"
    );
    assert!(!text.contains("warmup_duration_seconds_count"), "{text}");
    mock.shutdown().await;
}

#[tokio::test]
async fn a_loading_pod_costs_no_request() {
    let mock = mock_vllm().await;
    let (ctx, server) = context(FakeProxies::default());
    let pod = vllm_pod(mock.addr.port(), false);
    let action = run(ctx, server, warm(pod), |s| boxed(async move { s })).await;
    assert_eq!(action.unwrap(), Action::await_change());
    assert_eq!(
        mock.stats
            .requests
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    mock.shutdown().await;
}
