//! Failover that always finds a live backend (issue 8): a route's weighted targets fail over
//! within the group, sessions keep their target while it is healthy and move when it is not,
//! and a prompt too long for one model goes to a larger window before the client is told to
//! compact. Through the real proxy binary and mock vLLMs on loopback.

use serde_json::{json, Value};
use std::sync::atomic::Ordering;
use switchyard_e2e::mock_vllm::{MockConfig, MockVllm};
use switchyard_e2e::proxy_process::ProxyProcess;
use switchyard_e2e::testkit::{http, sample, TempFile};

async fn mock_with(served: &str, window: u32) -> MockVllm {
    let cfg = MockConfig {
        served_model_name: served.into(),
        max_model_len: window,
        ..MockConfig::default()
    };
    MockVllm::start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("mock starts")
}

fn backend(name: &str, m: &MockVllm, served: &str, window: u32) -> String {
    format!(
        "  - name: {name}\n    baseUrl: '{}'\n    servedModel: {served}\n    contextWindow: {window}\n    \
         outlier: {{consecutiveFailures: 1, baseEjectionMs: 60000}}\n",
        m.base_url()
    )
}

async fn ask(proxy: &ProxyProcess, session: &str, text: &str) -> reqwest::Response {
    http()
        .post(format!("{}/v1/messages", proxy.url()))
        .header("x-claude-code-session-id", session)
        .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 300,
            "messages": [{"role": "user", "content": text}]}))
        .send()
        .await
        .expect("proxy answers")
}

fn served(m: &MockVllm) -> u64 {
    m.stats.completed.load(Ordering::Relaxed)
}

/// Which of the two mocks served one request of `session`.
async fn served_by(proxy: &ProxyProcess, session: &str, a: &MockVllm, b: &MockVllm) -> char {
    let (before_a, before_b) = (served(a), served(b));
    let resp = ask(proxy, session, "hello").await;
    let status = resp.status();
    assert_eq!(status, 200, "{session}: {}", resp.text().await.unwrap());
    match (served(a) - before_a, served(b) - before_b) {
        (1, 0) => 'a',
        (0, 1) => 'b',
        other => panic!("{session}: served {other:?} times by (a, b)"),
    }
}

/// Before: two targets of one route (a LiteLLM model group) became a weighted pick by session
/// and nothing else; with one dead, every session that hashed to it got 529 after one
/// attempt ("no healthy backend" once it was ejected: 16 of 20 requests in one run).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_fails_over_within_itself_and_sessions_keep_their_target() {
    let a = mock_with("qwen-a", 32768).await;
    let b = mock_with("qwen-b", 32768).await;
    let cfg = TempFile::new(&format!(
        "backends:\n{}{}routes:\n  - name: group\n    models: ['claude-*']\n    \
         targets: [{{backend: a, weight: 1}}, {{backend: b, weight: 1}}]\n    \
         retries: {{attempts: 1, backoffMs: 1}}\n",
        backend("a", &a, "qwen-a", 32768),
        backend("b", &b, "qwen-b", 32768),
    ));
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    let sessions: Vec<String> = (0..20).map(|i| format!("session-{i}")).collect();
    let mut first = Vec::new();
    for s in &sessions {
        first.push(served_by(&proxy, s, &a, &b).await);
    }
    let on_a = first.iter().filter(|c| **c == 'a').count();
    assert!(
        (1..20).contains(&on_a),
        "sessions spread over both: {first:?}"
    );
    for (s, was) in sessions.iter().zip(&first) {
        assert_eq!(
            served_by(&proxy, s, &a, &b).await,
            *was,
            "{s} keeps its target while it is healthy"
        );
    }

    let completed_on_b = served(&b);
    a.shutdown().await;
    for s in &sessions {
        let resp = ask(&proxy, s, "after a died").await;
        assert_eq!(resp.status(), 200, "{s}: {}", resp.text().await.unwrap());
    }
    assert_eq!(served(&b) - completed_on_b, 20, "b served every session");
    let metrics = proxy.metrics().await;
    let fallbacks = "switchyard_fallbacks_total{route=\"group\",backend=\"b\"}";
    // Only the first request to the dead target tried it (and ejected it); the others of its
    // sessions went to the healthy target first, which is not a fallback.
    assert_eq!(sample(&metrics, fallbacks), 1.0, "{metrics}");

    // a stays ejected: no request tries it again, so none counts as a fallback or a retry.
    let retries = "switchyard_retries_total{backend=\"b\",kind=\"attempt\"}";
    let retries_before = sample(&metrics, retries);
    for s in &sessions {
        assert_eq!(ask(&proxy, s, "again").await.status(), 200);
    }
    let metrics = proxy.metrics().await;
    assert_eq!(sample(&metrics, fallbacks), 1.0, "{metrics}");
    assert_eq!(sample(&metrics, retries), retries_before, "{metrics}");
}

fn long_prompt() -> String {
    // ~12,000 tokens by any count (≥ 4 bytes per token would still be 12k): over 8k, under 64k.
    "The quick brown fox jumps over the lazy dog near the riverbank. ".repeat(800)
}

async fn ask_long(proxy: &ProxyProcess) -> (u16, Value) {
    let resp = ask(proxy, "long-session", &long_prompt()).await;
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap())
}

/// LiteLLM's `context_window_fallbacks`: a prompt too long for the route's model is served by
/// a larger-window one; without one the client gets Anthropic's "prompt is too long" (Claude
/// Code compacts on it), and a prompt too long for every model gets it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_too_long_for_one_window_goes_to_a_larger_one() {
    let small = mock_with("qwen-small", 8192).await;
    let large = mock_with("qwen-large", 65536).await;
    let backends = format!(
        "backends:\n{}{}",
        backend("small", &small, "qwen-small", 8192),
        backend("large", &large, "qwen-large", 65536),
    );
    let with = TempFile::new(&format!(
        "{backends}routes:\n  - name: r\n    models: ['*']\n    backend: small\n    \
         contextFallbacks: [large]\n"
    ));
    let proxy = ProxyProcess::start(&["--config", with.path()]).unwrap();
    let (status, body) = ask_long(&proxy).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["content"][0]["text"], "Hello from mock vLLM.");
    assert_eq!(served(&large), 1, "the larger window served it");
    assert_eq!(served(&small), 0);
    let short = ask(&proxy, "s", "hello").await;
    assert_eq!(short.status(), 200);
    assert_eq!(
        served(&small),
        1,
        "a prompt that fits stays on the route's model"
    );
    drop(proxy);

    let without = TempFile::new(&format!(
        "{backends}routes:\n  - name: r\n    models: ['*']\n    backend: small\n    fallbacks: [large]\n"
    ));
    let proxy = ProxyProcess::start(&["--config", without.path()]).unwrap();
    let (status, body) = ask_long(&proxy).await;
    assert_eq!(status, 400, "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("prompt is too long: ") && message.ends_with(" tokens > 8192 maximum"),
        "an ordinary fallback is not a larger window: {message}"
    );
    assert_eq!(served(&large), 1, "not tried for a prompt too long");
}
