//! The real `switchyard-proxy` binary over loopback, in front of the mock vLLM.
//!
//! Each test starts its own mock (in-process) and proxy (child process), so scenarios and
//! counters never mix. Waits are bounded; nothing leaves 127.0.0.1.

use futures::StreamExt;
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use switchyard_e2e::mock_vllm::{count_prompt_tokens, MockConfig, MockVllm, VllmRelease};
use switchyard_e2e::proxy_process::ProxyProcess;
use switchyard_e2e::testkit::{http, sse_events, TempFile};

async fn mock(cfg: MockConfig) -> MockVllm {
    MockVllm::start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("mock starts")
}

/// A config with one backend at `base_url`, every model routed to it, and fast stream timers.
fn config(base_url: &str, backend_extra: &str, routes: &str) -> TempFile {
    TempFile::new(&format!(
        "server:\n  commitAfterMs: 100\n  pingIntervalMs: 100\n  maxBodyBytes: 200000\n\
         backends:\n  - name: vllm\n    baseUrl: {base_url}\n{backend_extra}\
         routes:\n{routes}"
    ))
}

const ALL: &str = "  - name: all\n    models: ['*']\n    backend: vllm\n";

fn body(text: &str, stream: bool) -> Value {
    json!({"model": "claude-opus-5-5", "max_tokens": 32000, "stream": stream,
           "messages": [{"role": "user", "content": text}]})
}

async fn post(proxy: &ProxyProcess, body: &Value) -> reqwest::Response {
    http()
        .post(format!("{}/v1/messages", proxy.url()))
        .header("x-api-key", "client-key")
        .json(body)
        .send()
        .await
        .expect("proxy answers")
}

async fn wait_for(mut check: impl FnMut() -> bool, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pings_keep_a_slow_prefill_alive_then_tokens_flow() {
    let m = mock(MockConfig::default()).await;
    let cfg = config(&m.base_url(), "", ALL);
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    let resp = post(&proxy, &body("[[mock:slow:800]]", true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let ev = sse_events(&resp.text().await.unwrap());
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[0], "message_start");
    let first_block = names
        .iter()
        .position(|n| *n == "content_block_start")
        .unwrap();
    let pings = names[..first_block]
        .iter()
        .filter(|n| **n == "ping")
        .count();
    assert!(
        pings >= 3,
        "expected pings during the 800 ms prefill, got {names:?}"
    );
    assert_eq!(names[names.len() - 2..], ["message_delta", "message_stop"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_disconnect_cancels_the_upstream_request() {
    let m = mock(MockConfig::default()).await;
    let cfg = config(&m.base_url(), "", ALL);
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    let resp = post(&proxy, &body("[[mock:text:5000]] [[mock:pace:20]]", true)).await;
    assert_eq!(resp.status(), 200);
    let mut stream = resp.bytes_stream();
    // Read until tokens flow, then hang up.
    let mut seen = String::new();
    while !seen.contains("text_delta") {
        let chunk = tokio::time::timeout(Duration::from_secs(5), stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        seen.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    drop(stream);
    let stats = m.stats.clone();
    let cancelled = wait_for(
        || stats.cancelled.load(std::sync::atomic::Ordering::SeqCst) == 1,
        Duration::from_secs(3),
    )
    .await;
    assert!(
        cancelled,
        "vLLM must see the disconnect and abort the request"
    );
    assert_eq!(stats.completed.load(std::sync::atomic::Ordering::SeqCst), 0);
    let text = proxy.metrics().await;
    assert!(
        text.contains("switchyard_client_disconnects_total 1"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backend_death_mid_stream_is_an_error_event() {
    let m = mock(MockConfig::default()).await;
    let cfg = config(&m.base_url(), "", ALL);
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    let resp = post(&proxy, &body("[[mock:die:3]]", true)).await;
    assert_eq!(resp.status(), 200);
    let ev = sse_events(&resp.text().await.unwrap());
    let (last, data) = ev.last().unwrap();
    assert_eq!(last, "error");
    assert_eq!(data["error"]["type"], "api_error");
    // The text block that was open is closed before the error.
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names[names.len() - 2], "content_block_stop");
}

/// vLLM 0.22–0.31 refuses prompt + max_tokens over the window and reports only a lower
/// bound of the prompt. The proxy counts first (`/tokenize`, one round trip) and sends the
/// largest max_tokens that fits: exactly window − prompt, in one chat request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn max_tokens_is_fitted_to_the_exact_prompt_size_on_vllm_0_30() {
    let m = mock(MockConfig {
        vllm_release: VllmRelease::V0_30,
        ..MockConfig::default()
    })
    .await;
    let proxy = ProxyProcess::start(&["--upstream", &m.base_url()]).unwrap();
    // Short turns: the chat template adds far more tokens than bytes/4 sees.
    let messages: Vec<Value> = (0..1001)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": format!("turn {i} ok")}))
        .collect();
    let req = json!({"model": "claude-opus-5-5", "max_tokens": 32000, "messages": messages});
    let resp = post(&proxy, &req).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let bodies = m.stats.bodies.lock().unwrap().clone();
    assert_eq!(bodies.len(), 1, "no rejected attempt");
    let prompt = count_prompt_tokens(&bodies[0]) as u64;
    assert!(
        prompt > 6_000,
        "the template's count ({prompt}) is the real size"
    );
    assert_eq!(bodies[0]["max_tokens"].as_u64().unwrap(), 32_768 - prompt);
    assert_eq!(
        m.stats
            .tokenize_calls
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    let v: Value = resp_json(&proxy, &req).await;
    assert_eq!(v["stop_reason"], "end_turn");
}

async fn resp_json(proxy: &ProxyProcess, req: &Value) -> Value {
    post(proxy, req).await.json().await.unwrap()
}

/// vLLM ≥ 0.32 lowers max_tokens to the window's rest itself, so the proxy sends no count
/// and only keeps max_tokens within the window; an answer that fills the window ends with
/// `model_context_window_exceeded`, one cut by the client's max_tokens with `max_tokens`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn current_vllm_clamps_itself_and_window_stops_are_reported() {
    let m = mock(MockConfig::default()).await;
    let proxy = ProxyProcess::start(&["--upstream", &m.base_url()]).unwrap();
    for stream in [false, true] {
        let mut req = body("[[mock:text:40000]]", stream);
        req["max_tokens"] = json!(64000);
        let resp = post(&proxy, &req).await;
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        let stop = if stream {
            let ev = sse_events(&text);
            let delta = ev.iter().find(|(n, _)| n == "message_delta").unwrap();
            delta.1["delta"]["stop_reason"].clone()
        } else {
            serde_json::from_str::<Value>(&text).unwrap()["stop_reason"].clone()
        };
        assert_eq!(stop, "model_context_window_exceeded", "stream={stream}");
        assert_eq!(m.stats.last_body().unwrap()["max_tokens"], 32_768);
    }
    let mut req = body("[[mock:text:40000]]", false);
    req["max_tokens"] = json!(50);
    let v = resp_json(&proxy, &req).await;
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(v["usage"]["output_tokens"], 50);
    assert_eq!(
        m.stats
            .tokenize_calls
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

/// A prompt over the window: current vLLM says only "at least window + 1"; the client gets
/// the real size from one `/tokenize`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prompt_too_long_reports_the_real_size() {
    let m = mock(MockConfig::default()).await;
    let proxy = ProxyProcess::start(&["--upstream", &m.base_url()]).unwrap();
    let text = "word ".repeat(40_000);
    let resp = post(&proxy, &body(&text, true)).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    let msg = v["error"]["message"].as_str().unwrap().to_owned();
    let real = count_prompt_tokens(&json!({"messages": [{"role": "user", "content": text}]}));
    assert_eq!(
        msg,
        format!("prompt is too long: {real} tokens > 32768 maximum")
    );
    assert!(real > 32_769, "more than vLLM's lower bound");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_have_anthropic_shape_and_status() {
    let m = mock(MockConfig::default()).await;
    let routes = "  - name: claude\n    models: ['claude-*']\n    backend: vllm\n";
    // Ejection is tested elsewhere; here every error must reach the client as it is.
    let cfg = config(
        &m.base_url(),
        "    outlier: {consecutiveFailures: 1000}\n",
        routes,
    );
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    let cases: Vec<(Value, u16, &str)> = vec![
        (
            json!({"model": "gpt-4", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}),
            404,
            "not_found_error",
        ),
        (
            json!({"model": "claude-x", "messages": [{"role": "user", "content": "hi"}]}),
            400,
            "invalid_request_error",
        ),
        (body("[[mock:error:500]]", false), 500, "api_error"),
        (body("[[mock:error:503]]", true), 529, "overloaded_error"),
        (body("[[mock:error:429]]", false), 429, "rate_limit_error"),
        (body(&"x".repeat(300_000), false), 413, "request_too_large"),
    ];
    for (req, status, kind) in cases {
        let resp = post(&proxy, &req).await;
        assert_eq!(resp.status().as_u16(), status, "{req:.100}");
        assert!(resp.headers().contains_key("request-id"));
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], kind, "{v}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|s| !s.is_empty()));
    }
    let text = proxy.metrics().await;
    assert!(
        text.contains(
            "switchyard_requests_total{route=\"claude\",backend=\"vllm\",key=\"anonymous\",status=\"500\"} 1"
        ),
        "{text}"
    );
    assert!(
        text.contains(
            "switchyard_requests_total{route=\"claude\",backend=\"vllm\",key=\"anonymous\",status=\"529\"} 1"
        ),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_backend_is_overloaded_529() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}/v1");
    let cfg = config(&url, "    servedModel: m\n    contextWindow: 8192\n", ALL);
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    let resp = post(&proxy, &body("hi", true)).await;
    assert_eq!(resp.status().as_u16(), 529);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "overloaded_error");
    // The cause is named (a refused port here; a TLS failure names the certificate problem).
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("unreachable") && message.contains("Connection refused"),
        "{v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_template_error_passes_through_when_system_messages_are_kept() {
    let m = mock(MockConfig::default()).await;
    let keep = config(&m.base_url(), "    systemMessages: keep\n", ALL);
    let proxy = ProxyProcess::start(&["--config", keep.path()]).unwrap();
    let req = json!({"model": "claude-x", "max_tokens": 100, "messages": [
        {"role": "user", "content": "hi"}, {"role": "system", "content": "late instruction"}]});
    let resp = post(&proxy, &req).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("System message must be at the beginning"),
        "{v}"
    );
    drop(proxy);

    // The default placement makes the same request acceptable, text preserved.
    let inline = config(&m.base_url(), "", ALL);
    let proxy = ProxyProcess::start(&["--config", inline.path()]).unwrap();
    let resp = post(&proxy, &req).await;
    assert_eq!(resp.status(), 200);
    let sent = m.stats.last_body().unwrap();
    assert_eq!(sent["messages"].as_array().unwrap().len(), 1);
    assert!(sent["messages"][0]["content"]
        .as_str()
        .unwrap()
        .contains("late instruction"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_tokens_is_exact_from_the_backend_tokenizer() {
    let m = mock(MockConfig::default()).await;
    let proxy = ProxyProcess::start(&["--upstream", &m.base_url()]).unwrap();
    let req = json!({"model": "claude-opus-5-5", "system": "Be brief.",
        "messages": [{"role": "user", "content": "hello world, count these tokens please"}]});
    let resp = http()
        .post(format!("{}/v1/messages/count_tokens", proxy.url()))
        .json(&req)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let got: Value = resp.json().await.unwrap();
    let want = count_prompt_tokens(&json!({"messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hello world, count these tokens please"}]}));
    assert_eq!(got["input_tokens"].as_u64().unwrap(), want as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_protocol_backend_is_passed_through_with_fixes() {
    let m = mock(MockConfig::default()).await;
    let proxy = ProxyProcess::start(&[
        "--upstream",
        &m.base_url(),
        "--upstream-protocol",
        "anthropic",
    ])
    .unwrap();
    // Claude Code's shape: a billing header block and a trailing system message, which vLLM's
    // /v1/messages would reject.
    let req = json!({"model": "claude-opus-5-5", "max_tokens": 128000, "stream": true,
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.330.c4f;"},
                   {"type": "text", "text": "You are helpful.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": "[[mock:reasoning]]"},
                     {"role": "system", "content": "env: linux"}]});
    let resp = post(&proxy, &req).await;
    assert_eq!(resp.status(), 200);
    let ev = sse_events(&resp.text().await.unwrap());
    assert_eq!(ev[0].0, "message_start");
    assert_eq!(ev[0].1["message"]["model"], "claude-opus-5-5");
    assert!(ev[0].1["message"]["usage"]["input_tokens"].is_u64());
    assert_eq!(ev.last().unwrap().0, "message_stop");
    let text: String = ev
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    assert_eq!(text, "The answer is 42.");
    let sent = m.stats.last_body().unwrap();
    assert_eq!(sent["model"], "qwen3-coder");
    assert!(!sent.to_string().contains("billing-header"));
    assert_eq!(
        sent["max_tokens"], 32_768,
        "128000 lowered to the window; vLLM 0.34 fits it to the prompt itself"
    );
    assert!(sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["role"] != "system"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn root_and_models_answer_cleanly() {
    let m = mock(MockConfig::default()).await;
    let proxy = ProxyProcess::start(&["--upstream", &m.base_url()]).unwrap();
    let c = http();
    assert_eq!(c.head(proxy.url()).send().await.unwrap().status(), 200);
    assert_eq!(c.get(proxy.url()).send().await.unwrap().status(), 200);
    let list = |anthropic: bool| {
        let req = c.get(format!("{}/v1/models?limit=1000", proxy.url()));
        let req = if anthropic {
            req.header("anthropic-version", "2023-06-01")
        } else {
            req
        };
        async move { req.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    // Anthropic clients (they send `anthropic-version`) get Anthropic's shape...
    let models = list(true).await;
    assert_eq!(models["data"][0]["id"], "qwen3-coder");
    assert_eq!(models["data"][0]["type"], "model");
    assert_eq!(models["has_more"], false);
    // ...every other client OpenAI's.
    let models = list(false).await;
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "qwen3-coder");
    assert_eq!(models["data"][0]["object"], "model");
    assert_eq!(models["data"][0]["owned_by"], "switchyard");
    assert!(models.get("has_more").is_none(), "{models}");
    let health = c
        .get(format!("{}/healthz", proxy.admin_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), 200);
    let ready = c
        .get(format!("{}/readyz", proxy.admin_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_config_exits_naming_the_field() {
    let cfg = TempFile::new("backends:\n  - name: a\n    baseUrl: localhost:8000\nroutes:\n  - name: r\n    models: ['*']\n    backend: b\n");
    let err = ProxyProcess::start(&["--config", cfg.path()])
        .err()
        .expect("proxy must refuse the config");
    let msg = err.to_string();
    assert!(msg.contains("backends[0].baseUrl"), "{msg}");
    assert!(msg.contains("routes[0].backend"), "{msg}");
    let typo = TempFile::new("backends: []\nroutes: []\nservr: {}\n");
    let msg = ProxyProcess::start(&["--config", typo.path()])
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("unknown field `servr`"), "{msg}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_logs_and_are_sent_only_upstream() {
    let m = mock(MockConfig::default()).await;
    let cfg = config(
        &m.base_url(),
        "    apiKey:\n      env: TEST_BACKEND_KEY\n",
        ALL,
    );
    let proxy = ProxyProcess::start_with_env(
        &["--config", cfg.path()],
        &[
            ("TEST_BACKEND_KEY", "sk-backend-secret-123"),
            ("SWITCHYARD_LOG", "debug"),
        ],
    )
    .unwrap();
    let resp = http()
        .post(format!("{}/v1/messages", proxy.url()))
        .header("authorization", "Bearer sk-client-secret-456")
        .json(&body("hi", true))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    resp.text().await.unwrap();
    assert_eq!(
        m.stats.last_authorization().as_deref(),
        Some("Bearer sk-backend-secret-123")
    );
    assert!(
        proxy.wait_for_log("request completed", Duration::from_secs(5)),
        "access log line expected"
    );
    let logs = proxy.log_text();
    assert!(!logs.contains("sk-backend-secret-123") && !logs.contains("sk-client-secret-456"));
    assert!(!proxy.metrics().await.contains("secret"));
}
