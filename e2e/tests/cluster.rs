//! Cluster end-to-end: CRDs install on a real API server, an `InferenceBackend` and a
//! `ModelRoute` applied, the operator publishes the snapshot and writes status, and a proxy in
//! cluster mode serves the route.
//!
//! Needs a real cluster: it runs only with `KUBECONFIG` set and `--ignored`
//! (`.ci/run` does both when `KUBECONFIG` is set, and prints that it skipped otherwise). The
//! operator and the proxy run here as processes against that cluster; the model is the mock
//! vLLM on loopback, reached by the local proxy as an external backend.

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::Client;
use serde_json::{json, Value};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use switchyard_e2e::proxy_process::ProxyProcess;
use switchyard_e2e::testkit::{http, mock};

const MANAGER: &str = "switchyard-e2e";

async fn eventually<T, F, Fut>(what: &str, within: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {within:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

fn resource(group: &str, version: &str, kind: &str, plural: &str) -> ApiResource {
    ApiResource::from_gvk_with_plural(&GroupVersionKind::gvk(group, version, kind), plural)
}

/// Kills the operator when the test ends, however it ends.
struct Operator(Child);

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn operator_binary() -> std::path::PathBuf {
    if let Ok(path) = std::env::var("SWITCHYARD_OPERATOR_BIN") {
        return path.into();
    }
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let ok = Command::new(cargo)
        .args(["build", "-q", "--workspace", "--bins"])
        .current_dir(&root)
        .status()
        .expect("cargo runs")
        .success();
    assert!(ok, "building switchyard-operator failed");
    root.join("target/debug/switchyard-operator")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs a Kubernetes cluster: set KUBECONFIG and run with --ignored"]
async fn crds_operator_and_proxy_on_a_real_cluster() {
    assert!(
        std::env::var_os("KUBECONFIG").is_some(),
        "set KUBECONFIG to a test cluster"
    );
    let client = Client::try_default()
        .await
        .expect("KUBECONFIG gives a client");

    // 1. CRDs: the generated YAML is accepted (structural schemas) and becomes Established.
    let crd_res = resource(
        "apiextensions.k8s.io",
        "v1",
        "CustomResourceDefinition",
        "customresourcedefinitions",
    );
    let crds: Api<DynamicObject> = Api::all_with(client.clone(), &crd_res);
    let yaml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../crds/yaml/switchyard.dev.yaml"
    ))
    .unwrap();
    for doc in serde_yaml::Deserializer::from_str(&yaml) {
        let crd: Value = serde::Deserialize::deserialize(doc).unwrap();
        let name = crd["metadata"]["name"].as_str().unwrap().to_owned();
        crds.patch(
            &name,
            &PatchParams::apply(MANAGER).force(),
            &Patch::Apply(&crd),
        )
        .await
        .unwrap_or_else(|e| panic!("API server refused CRD {name}: {e}"));
        eventually(
            &format!("CRD {name} Established"),
            Duration::from_secs(60),
            || {
                let crds = crds.clone();
                let name = name.clone();
                async move {
                    let crd = crds.get(&name).await.ok()?;
                    let conds = crd.data["status"]["conditions"].as_array()?.clone();
                    conds
                        .iter()
                        .any(|c| c["type"] == "Established" && c["status"] == "True")
                        .then_some(())
                }
            },
        )
        .await;
    }

    // 2. A namespace of our own.
    let ns = format!(
        "switchyard-e2e-{}",
        &uuid::Uuid::new_v4().simple().to_string()[..8]
    );
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap(),
        )
        .await
        .unwrap();
    let _cleanup = scopeguard(namespaces.clone(), ns.clone());

    // 3. The operator, watching that namespace.
    let _operator = Operator(
        Command::new(operator_binary())
            .args(["--snapshot-namespace", &ns, "--watch-namespace", &ns])
            .args([
                "--leader-election-namespace",
                &ns,
                "--identity",
                "e2e",
                "--metrics-listen",
                "127.0.0.1:0",
                "--admin-key-secret",
                "switchyard-admin-key",
            ])
            .stdout(Stdio::null())
            .spawn()
            .expect("operator starts"),
    );

    // 4. An external backend (the mock on this machine's loopback) and a route to it.
    let model = mock().await;
    let backends: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &resource(
            "switchyard.dev",
            "v1alpha1",
            "InferenceBackend",
            "inferencebackends",
        ),
    );
    let routes: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        &ns,
        &resource("switchyard.dev", "v1alpha1", "ModelRoute", "modelroutes"),
    );
    let backend = json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": "InferenceBackend",
        "metadata": {"name": "local-mock"},
        "spec": {"external": {"url": model.base_url(), "protocol": "openai"},
                 "proxy": {"contextWindow": 32768}}});
    backends
        .patch(
            "local-mock",
            &PatchParams::apply(MANAGER),
            &Patch::Apply(&backend),
        )
        .await
        .expect("InferenceBackend accepted");
    let route = json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": "ModelRoute",
        "metadata": {"name": "claude"}, "spec": {"models": ["claude-*"], "backend": "local-mock"}});
    routes
        .patch(
            "claude",
            &PatchParams::apply(MANAGER),
            &Patch::Apply(&route),
        )
        .await
        .expect("ModelRoute accepted");

    // A bad manifest is refused at apply time with a message that says what to fix.
    let neither = json!({"apiVersion": "switchyard.dev/v1alpha1", "kind": "InferenceBackend",
        "metadata": {"name": "broken"}, "spec": {}});
    let err = backends
        .patch(
            "broken",
            &PatchParams::apply(MANAGER),
            &Patch::Apply(&neither),
        )
        .await
        .expect_err("a backend with neither vllm nor external is refused");
    assert!(
        err.to_string().contains("vllm") || err.to_string().contains("external"),
        "{err}"
    );

    // 5. The operator publishes the snapshot and reports status.
    let configmaps: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let snapshot = eventually(
        "snapshot ConfigMap with the route",
        Duration::from_secs(90),
        || {
            let configmaps = configmaps.clone();
            async move {
                let cm = configmaps.get("switchyard-snapshot").await.ok()?;
                let text = cm.data?.get("snapshot.yaml")?.clone();
                text.contains("claude-*").then_some(text)
            }
        },
    )
    .await;
    assert!(snapshot.contains(&model.base_url()), "{snapshot}");

    // The proxies' admin key: a Secret the operator made with 64 random hex digits.
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    let admin_key = eventually("admin key Secret", Duration::from_secs(30), || {
        let secrets = secrets.clone();
        async move {
            let s = secrets.get("switchyard-admin-key").await.ok()?;
            let bytes = s.data?.get("admin-key")?.0.clone();
            String::from_utf8(bytes).ok()
        }
    })
    .await;
    assert_eq!(admin_key.len(), 64);
    assert!(admin_key.chars().all(|c| c.is_ascii_hexdigit()));
    eventually(
        "ModelRoute status Published",
        Duration::from_secs(60),
        || {
            let routes = routes.clone();
            async move {
                let r = routes.get("claude").await.ok()?;
                let conds = r.data["status"]["conditions"].as_array()?.clone();
                conds
                    .iter()
                    .any(|c| c["type"] == "Published" && c["status"] == "True")
                    .then_some(())
            }
        },
    )
    .await;

    // 6. A proxy in cluster mode picks the snapshot up and serves the route.
    let proxy = ProxyProcess::start(&[
        "--kube-namespace",
        &ns,
        "--kube-snapshot",
        "switchyard-snapshot",
        "--kube-credentials",
        "switchyard-credentials",
    ])
    .expect("proxy starts in cluster mode");
    let resp = http()
        .post(format!("{}/v1/messages", proxy.url()))
        .json(&json!({"model": "claude-opus-5-5", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["content"][0]["text"], "Hello from mock vLLM.");
}

/// Deletes the test namespace when dropped (on a worker thread: the test runtime is
/// multi-threaded, so the request makes progress while this thread waits).
fn scopeguard(namespaces: Api<Namespace>, ns: String) -> impl Drop {
    struct Guard(Option<(Api<Namespace>, String)>);
    impl Drop for Guard {
        fn drop(&mut self) {
            if let Some((api, ns)) = self.0.take() {
                let handle = tokio::runtime::Handle::current();
                std::thread::spawn(move || {
                    handle.block_on(async {
                        let _ = api.delete(&ns, &DeleteParams::default()).await;
                    })
                })
                .join()
                .ok();
            }
        }
    }
    Guard(Some((namespaces, ns)))
}
