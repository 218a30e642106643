//! One blip never costs a user a turn: outlier detection that cannot take the last endpoint
//! out, overload that is not breakage, discovery through any live replica, and a
//! misconfigured base URL reported as such. Through the real proxy binary and mock vLLMs.

use serde_json::{json, Value};
use switchyard_e2e::proxy_process::ProxyProcess;
use switchyard_e2e::testkit::{http, mock, sample, TempFile};

fn request(text: &str) -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 500,
        "messages": [{"role": "user", "content": text}]})
}

async fn post(proxy: &ProxyProcess, body: &Value) -> reqwest::Response {
    http()
        .post(format!("{}/v1/messages", proxy.url()))
        .json(body)
        .send()
        .await
        .expect("proxy answers")
}

/// Before: the 503's three attempts counted as three consecutive failures and ejected the
/// only endpoint for 5 s, so every request right after got 529 "no healthy backend".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_503_then_ordinary_requests_are_all_served() {
    let m = mock().await;
    let cfg = TempFile::new(&format!(
        "backends:\n  - name: vllm\n    baseUrl: '{}'\n    servedModel: qwen3-coder\n    contextWindow: 32768\n\
         routes:\n  - name: all\n    models: ['*']\n    backend: vllm\n    retries: {{attempts: 3, backoffMs: 1}}\n",
        m.base_url()
    ));
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    let blip = post(&proxy, &request("[[mock:error:503]]")).await;
    assert_eq!(
        blip.status().as_u16(),
        529,
        "an overloaded backend is 529 to the client"
    );
    for i in 0..20 {
        let resp = post(&proxy, &request(&format!("hello {i}"))).await;
        assert_eq!(resp.status(), 200, "request {i} after the blip");
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["content"][0]["text"], "Hello from mock vLLM.");
    }
    let metrics = proxy.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "switchyard_ejections_total{backend=\"vllm\",kind=\"consecutive_failures\"}"
        ),
        0.0,
        "{metrics}"
    );
}

/// A dead replica (connection refused) is ejected, but a backend whose every replica failed
/// keeps its last one: the next request is still sent to it and served once it is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_endpoint_is_never_ejected() {
    let m = mock().await;
    let dead = "http://127.0.0.1:9/v1";
    let cfg = TempFile::new(&format!(
        "backends:\n  - name: vllm\n    baseUrl: '{dead}'\n    endpoints: ['{dead}', '{}']\n    servedModel: qwen3-coder\n    contextWindow: 32768\n    outlier: {{consecutiveFailures: 1, baseEjectionMs: 60000}}\n\
         routes:\n  - name: all\n    models: ['*']\n    backend: vllm\n    retries: {{attempts: 2, backoffMs: 1}}\n",
        m.base_url()
    ));
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    for i in 0..6 {
        let resp = post(&proxy, &request(&format!("hi {i}"))).await;
        assert_eq!(resp.status(), 200, "request {i}");
    }
    // The live replica now fails (engine error) once: it is the only one available, so it
    // stays in and the very next request reaches it.
    let failed = post(&proxy, &request("[[mock:error:500]]")).await;
    assert_eq!(failed.status().as_u16(), 500);
    let after = post(&proxy, &request("still there?")).await;
    assert_eq!(after.status(), 200, "{}", after.text().await.unwrap());
    let metrics = proxy.metrics().await;
    assert_eq!(
        sample(
            &metrics,
            "switchyard_ejections_total{backend=\"vllm\",kind=\"consecutive_failures\"}"
        ),
        1.0,
        "only the dead replica is ejected: {metrics}"
    );
}

/// Discovery (no servedModel/contextWindow, as LiteLLM configs have it) goes through any
/// live replica: with the first one down, the second serves and is never ejected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_uses_whichever_replica_answers() {
    let m = mock().await;
    let dead = "http://127.0.0.1:9/v1";
    let cfg = TempFile::new(&format!(
        "backends:\n  - name: vllm\n    baseUrl: '{dead}'\n    endpoints: ['{dead}', '{}']\n\
         routes:\n  - name: all\n    models: ['*']\n    backend: vllm\n",
        m.base_url()
    ));
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    for i in 0..8 {
        let resp = post(&proxy, &request(&format!("hi {i}"))).await;
        assert_eq!(
            resp.status(),
            200,
            "request {i}: {}",
            resp.text().await.unwrap()
        );
    }
    let chats = m.stats.bodies.lock().unwrap().len();
    assert!(
        chats >= 8,
        "the live replica served every request ({chats} bodies)"
    );
}

/// A base URL without `/v1` (LiteLLM's `api_base` habit) makes `/models` answer 404: that
/// is a configuration error, final (`x-should-retry: false`), naming the URL, not a 529.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_base_url_without_v1_is_a_clear_final_error() {
    let m = mock().await;
    let proxy = ProxyProcess::start(&["--upstream", &m.root_url()]).unwrap();
    let resp = post(&proxy, &request("hi")).await;
    assert_eq!(resp.status().as_u16(), 500);
    assert_eq!(resp.headers()["x-should-retry"], "false");
    assert!(resp.headers().contains_key("request-id"));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "api_error");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("GET {}/models answered 404", m.root_url())),
        "{message}"
    );
    assert!(message.contains("/v1"), "{message}");
    assert!(
        m.stats.bodies.lock().unwrap().is_empty(),
        "no chat request was sent"
    );
}
