//! Nothing lost under load (issue 8): a thousand concurrent streams arrive whole and in order,
//! memory goes back down after them, and a config reload and a SIGTERM drain during load
//! complete every request that was accepted. Through the real proxy binary and a mock vLLM on
//! loopback; every wait is bounded.

use futures::StreamExt;
use serde_json::json;
use std::time::{Duration, Instant};
use switchyard_e2e::mock_vllm::{MockConfig, MockVllm};
use switchyard_e2e::proxy_process::ProxyProcess;
use switchyard_e2e::testkit::{readiness_fails, sample, sse_events, TempFile};

const WORDS: usize = 40;

async fn mock() -> MockVllm {
    // No proportional prefill: the load is the streams, not the mock's sleeps.
    let cfg = MockConfig {
        prefill_per_1k_tokens: Duration::ZERO,
        ..MockConfig::default()
    };
    MockVllm::start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("mock starts")
}

fn config(m: &MockVllm, server: &str, idle_ms: u64) -> String {
    format!(
        "server: {{{server}}}\nbackends:\n  - name: vllm\n    baseUrl: '{}'\n    servedModel: qwen3-coder\n    \
         contextWindow: 32768\nroutes:\n  - name: all\n    models: ['*']\n    backend: vllm\n    \
         timeouts: {{idleMs: {idle_ms}}}\n",
        m.base_url()
    )
}

/// A client whose pool holds every concurrent stream, each bounded in time.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(120))
        .pool_max_idle_per_host(2_000)
        .build()
        .unwrap()
}

/// Streams one request and checks it arrived whole: message_start first, `word0` …
/// `word{WORDS-1}` in order and nothing else, message_stop last. Err describes the damage.
async fn one_stream(
    client: reqwest::Client,
    url: String,
    i: usize,
    pace_ms: u64,
) -> Result<(), String> {
    let body = json!({"model": "claude-sonnet-4-5", "max_tokens": 500, "stream": true,
        "messages": [{"role": "user", "content": format!("[[mock:text:{WORDS}]] [[mock:pace:{pace_ms}]] #{i}")}]});
    let resp = client
        .post(format!("{url}/v1/messages"))
        .header("x-claude-code-session-id", format!("load-{i}"))
        .json(&body)
        .send()
        .await
        .map_err(|e| format!("#{i}: {e}"))?;
    if resp.status() != 200 {
        return Err(format!("#{i}: status {}", resp.status()));
    }
    let mut text = Vec::new();
    let mut chunks = resp.bytes_stream();
    while let Some(chunk) = chunks.next().await {
        text.extend_from_slice(&chunk.map_err(|e| format!("#{i}: cut: {e}"))?);
    }
    let events = sse_events(&String::from_utf8(text).map_err(|e| format!("#{i}: {e}"))?);
    let names: Vec<&str> = events.iter().map(|(e, _)| e.as_str()).collect();
    if names.first() != Some(&"message_start") || names.last() != Some(&"message_stop") {
        return Err(format!("#{i}: events {names:?}"));
    }
    let streamed: String = events
        .iter()
        .filter_map(|(_, d)| d["delta"]["text"].as_str())
        .collect();
    let expected: Vec<String> = (0..WORDS).map(|w| format!("word{w}")).collect();
    if streamed.split_whitespace().collect::<Vec<_>>() != expected {
        return Err(format!("#{i}: text {streamed:?}"));
    }
    Ok(())
}

async fn run_streams(
    proxy: &ProxyProcess,
    range: std::ops::Range<usize>,
    pace_ms: u64,
) -> Vec<tokio::task::JoinHandle<Result<(), String>>> {
    let c = client();
    range
        .map(|i| tokio::spawn(one_stream(c.clone(), proxy.url(), i, pace_ms)))
        .collect()
}

async fn failures(handles: Vec<tokio::task::JoinHandle<Result<(), String>>>) -> Vec<String> {
    let mut failed = Vec::new();
    for h in handles {
        if let Err(e) = h.await.expect("stream task") {
            failed.push(e);
        }
    }
    failed
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_concurrent_streams_arrive_whole_and_memory_returns() {
    let m = mock().await;
    let cfg = TempFile::new(&config(&m, "", 120_000));
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    // Warm up (discovery, pools), then the idle level.
    failures(run_streams(&proxy, 0..4, 0).await).await;
    let idle = proxy.rss_kib();

    // 40 tokens 25 ms apart: each stream lives about a second, so all 1,000 overlap.
    let started = Instant::now();
    let handles = run_streams(&proxy, 0..1_000, 25).await;
    let mut peak = idle;
    while handles.iter().any(|h| !h.is_finished()) && started.elapsed() < Duration::from_secs(110) {
        peak = peak.max(proxy.rss_kib());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let failed = failures(handles).await;
    assert!(
        failed.is_empty(),
        "{} of 1000 damaged: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    let metrics = proxy.metrics().await;
    assert_eq!(
        sample(&metrics, "switchyard_requests_total{route=\"all\",backend=\"vllm\",key=\"anonymous\",status=\"200\"}"),
        1004.0
    );

    // Memory goes back down once the streams are gone (allocator caches allowed: half of
    // what the load added at most).
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut after = proxy.rss_kib();
    while after > idle + (peak - idle) / 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(200)).await;
        after = proxy.rss_kib();
    }
    eprintln!("proxy RSS: idle {idle} KiB, peak {peak} KiB with 1,000 streams, after {after} KiB");
    assert!(peak > idle, "the load was visible in memory");
    assert!(
        after <= idle + (peak - idle) / 2,
        "RSS idle {idle} KiB, peak {peak} KiB, after {after} KiB"
    );
}

/// A config change and then SIGTERM while 300 streams run: every stream accepted before or
/// during the grace period completes whole, the reload applies, and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_and_sigterm_during_load_cut_no_stream() {
    let m = mock().await;
    let server = "shutdownGraceMs: 1500, drainTimeoutMs: 60000";
    let cfg = TempFile::new(&config(&m, server, 120_000));
    let mut proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    let first = run_streams(&proxy, 0..300, 50).await;
    tokio::time::sleep(Duration::from_millis(300)).await;

    cfg.replace(&config(&m, server, 90_000));
    let reloaded = "switchyard_config_reloads_total{result=\"applied\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    while sample(&proxy.metrics().await, reloaded) < 1.0 {
        assert!(Instant::now() < deadline, "the reload never applied");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let second = run_streams(&proxy, 300..400, 50).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let admin = proxy.admin_url();
    let url = proxy.url();
    let term = tokio::task::spawn_blocking(move || {
        let status = proxy.terminate(Duration::from_secs(90));
        (proxy, status)
    });
    // Requests sent in the grace period (readiness already failing) are still served.
    assert!(readiness_fails(&admin).await, "readyz never failed");
    let c = client();
    let during_grace: Vec<_> = (400..450)
        .map(|i| tokio::spawn(one_stream(c.clone(), url.clone(), i, 20)))
        .collect();

    let mut failed = failures(first).await;
    failed.extend(failures(second).await);
    failed.extend(failures(during_grace).await);
    assert!(
        failed.is_empty(),
        "{} of 450 damaged: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    let (_proxy, status) = term.await.unwrap();
    assert!(status.unwrap().success(), "exit 0 after draining");
}

/// A client that connected during the grace period but sends its request only after the
/// listener closed is still answered: the connection was accepted, so its first request is
/// in flight (hyper-util's own graceful shutdown would cancel it while it waits for its first
/// bytes, and the request would be lost). A connection that sends nothing within the head
/// timeout is still closed, and the process exits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_opened_in_the_grace_period_gets_its_request_served() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let m = mock().await;
    let server = "shutdownGraceMs: 2000, drainTimeoutMs: 30000";
    let cfg = TempFile::new(&config(&m, server, 120_000));
    let mut proxy =
        ProxyProcess::start(&["--config", cfg.path(), "--header-read-timeout-ms", "8000"]).unwrap();
    let addr = proxy.url().trim_start_matches("http://").to_owned();
    let admin = proxy.admin_url();
    let term = tokio::task::spawn_blocking(move || {
        let status = proxy.terminate(Duration::from_secs(60));
        (proxy, status)
    });
    assert!(readiness_fails(&admin).await, "readyz never failed");
    // Inside the grace period: connect, then stay silent until the listener has closed.
    let connect = || tokio::net::TcpStream::connect(addr.clone());
    let mut late = connect().await.expect("accepted in the grace period");
    let silent = connect().await.expect("accepted in the grace period");
    let deadline = Instant::now() + Duration::from_secs(10);
    while connect().await.is_ok() {
        assert!(Instant::now() < deadline, "the listener never closed");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let body = r#"{"model":"claude-sonnet-4-5","max_tokens":50,"messages":[{"role":"user","content":"hi"}]}"#;
    let request = format!(
        "POST /v1/messages HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\n\
         content-length: {}\r\n\r\n{body}",
        body.len()
    );
    late.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), late.read_to_end(&mut answer))
        .await
        .expect("answered, then closed")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 200 OK"), "{answer}");
    assert!(answer.contains("Hello from mock vLLM."), "{answer}");
    // Told to close after its request: no keep-alive past shutdown.
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    drop(silent); // closed by the proxy after the head timeout at the latest
    let (_proxy, status) = term.await.unwrap();
    assert!(status.unwrap().success(), "exit 0 after draining");
}
