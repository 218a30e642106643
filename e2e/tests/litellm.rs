//! LiteLLM configs served by the real proxy binary (`--litellm-config`) over loopback with
//! in-process mock vLLMs: failover inside a model group, fallbacks named by the client's model
//! under a wildcard group, a master key that cannot be known, and a partly servable config.

use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use switchyard_e2e::proxy_process::{proxy_binary, ProxyProcess};
use switchyard_e2e::testkit::{http, mock, TempFile};

/// Every test's whole run, start-up included.
const BOUND: Duration = Duration::from_secs(120);

fn request(model: &str) -> Value {
    json!({"model": model, "max_tokens": 200,
        "messages": [{"role": "user", "content": "hi"}]})
}

async fn post(proxy: &ProxyProcess, model: &str, session: &str) -> reqwest::Response {
    http()
        .post(format!("{}/v1/messages", proxy.url()))
        .header("X-Claude-Code-Session-Id", session)
        .json(&request(model))
        .send()
        .await
        .expect("proxy answers")
}

/// A loopback port nothing listens on (bound, then released).
fn closed_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("address").port()
}

/// Starts the proxy off the async threads: it blocks until the proxy listens, while the
/// in-process mocks must answer its start-up discovery.
async fn start(config: &TempFile) -> anyhow::Result<ProxyProcess> {
    let path = config.path().to_owned();
    tokio::task::spawn_blocking(move || ProxyProcess::start(&["--litellm-config", &path]))
        .await
        .expect("start task")
}

/// Two deployments under one `model_name` (different weights: two weighted targets of one
/// route); one replica dies; 20 new sessions are all served by the other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_survives_the_death_of_one_deployment() {
    tokio::time::timeout(BOUND, async {
        let (a, b) = (mock().await, mock().await);
        let cfg = TempFile::new(&format!(
            "model_list:\n\
             \x20 - model_name: claude-sonnet-4-5\n\
             \x20   litellm_params: {{model: hosted_vllm/qwen3-coder, api_base: '{}', weight: 2}}\n\
             \x20 - model_name: claude-sonnet-4-5\n\
             \x20   litellm_params: {{model: hosted_vllm/qwen3-coder, api_base: '{}', weight: 1}}\n\
             router_settings:\n  num_retries: 1\n",
            a.base_url(),
            b.base_url()
        ));
        let proxy = start(&cfg).await.unwrap();
        a.shutdown().await;
        for s in 0..20 {
            let resp = post(&proxy, "claude-sonnet-4-5", &format!("session-{s}")).await;
            let status = resp.status();
            let body = resp.text().await.unwrap();
            assert_eq!(status, 200, "session-{s}: {body}\n{}", proxy.log_text());
        }
        assert_eq!(b.stats.requests.load(Ordering::SeqCst), 20);
    })
    .await
    .expect("bounded");
}

/// `fallbacks: [{claude-sonnet-4-5: [backup]}]` with `model_name: claude-*`: LiteLLM looks
/// fallbacks up by the client's model name, so a dead primary sends sonnet to `backup`, and
/// only sonnet.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fallbacks_keyed_by_the_client_model_under_a_wildcard_group() {
    tokio::time::timeout(BOUND, async {
        let backup = mock().await;
        let cfg = TempFile::new(&format!(
            "model_list:\n\
             \x20 - model_name: claude-*\n\
             \x20   litellm_params: {{model: hosted_vllm/qwen3-coder, api_base: 'http://127.0.0.1:{}/v1'}}\n\
             \x20 - model_name: backup\n\
             \x20   litellm_params: {{model: hosted_vllm/qwen3-coder, api_base: '{}'}}\n\
             router_settings:\n  num_retries: 0\n  fallbacks: [{{claude-sonnet-4-5: [backup]}}]\n",
            closed_port(),
            backup.base_url()
        ));
        let proxy = start(&cfg).await.unwrap();
        let resp = post(&proxy, "claude-sonnet-4-5", "s1").await;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 200, "{body}\n{}", proxy.log_text());
        assert_eq!(body["content"][0]["text"], "Hello from mock vLLM.");
        assert_eq!(backup.stats.requests.load(Ordering::SeqCst), 1);
        // Another Claude name has no fallbacks: the dead primary's error reaches the client.
        let resp = post(&proxy, "claude-opus-4-1", "s2").await;
        assert_eq!(resp.status(), 529, "{}", resp.text().await.unwrap());
        assert_eq!(backup.stats.requests.load(Ordering::SeqCst), 1);
    })
    .await
    .expect("bounded");
}

/// `master_key: os.environ/X` with X unset: the proxy refuses to start (exit status 1) and
/// says which field and variable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unknowable_master_key_refuses_to_start() {
    let var = "SWITCHYARD_E2E_LITELLM_UNSET_MASTER_KEY";
    let cfg = TempFile::new(&format!(
        "model_list:\n  - model_name: claude-*\n    litellm_params: {{model: hosted_vllm/q, api_base: 'http://127.0.0.1:{}/v1'}}\n\
         general_settings:\n  master_key: os.environ/{var}\n",
        closed_port()
    ));
    let path = cfg.path().to_owned();
    let run = tokio::task::spawn_blocking(move || {
        let mut child = std::process::Command::new(proxy_binary().unwrap())
            .args(["--litellm-config", &path])
            .args(["--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .env_remove(var)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("the proxy kept running without its master key");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        child.wait_with_output().unwrap()
    });
    let out = tokio::time::timeout(BOUND, run)
        .await
        .expect("bounded")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("general_settings.master_key"), "{stderr}");
    assert!(stderr.contains(var), "{stderr}");
    assert!(!stderr.contains("listening"), "{stderr}");
}

/// One servable deployment beside a Bedrock and an embedding one: the proxy starts, serves
/// the servable one, and its log names both skipped ones by config path.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partly_servable_config_starts_and_names_what_it_skipped() {
    tokio::time::timeout(BOUND, async {
        let m = mock().await;
        let cfg = TempFile::new(&format!(
            "model_list:\n\
             \x20 - model_name: claude-sonnet-4-5\n\
             \x20   litellm_params: {{model: hosted_vllm/qwen3-coder, api_base: '{}'}}\n\
             \x20 - model_name: claude-opus-4-1\n\
             \x20   litellm_params: {{model: bedrock/anthropic.claude-opus-4-1-20250805-v1:0, aws_region_name: us-east-1}}\n\
             \x20 - model_name: embed\n\
             \x20   litellm_params: {{model: openai/text-embedding-3-small, api_key: os.environ/OPENAI_API_KEY}}\n",
            m.base_url()
        ));
        let proxy = start(&cfg).await.unwrap();
        let resp = post(&proxy, "claude-sonnet-4-5", "s").await;
        assert_eq!(resp.status(), 200, "{}", proxy.log_text());
        assert_eq!(m.stats.last_body().unwrap()["model"], "qwen3-coder");
        assert_eq!(post(&proxy, "claude-opus-4-1", "s").await.status(), 404);
        let logs = proxy.log_text();
        for needle in [
            "model_list[1].litellm_params.model",
            "bedrock/",
            "model_list[2].litellm_params.model",
            "embedding model",
        ] {
            assert!(logs.contains(needle), "`{needle}` not logged:\n{logs}");
        }
    })
    .await
    .expect("bounded");
}
