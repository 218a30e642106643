//! Backend faults through the real proxy binary: each one reaches the client as the right
//! Anthropic error (an HTTP status before the first byte, an `error` event after it) within
//! the route's timeouts, the upstream connection is freed, and the proxy goes on serving.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use switchyard_e2e::fault_backend::{refusing_url, Fault, FaultBackend};
use switchyard_e2e::mock_vllm::MockVllm;
use switchyard_e2e::proxy_process::ProxyProcess;
use switchyard_e2e::testkit::{http, mock, sse_events, TempFile};

/// Route timeouts of the faulty route: small, so every fault ends fast.
const FIRST_TOKEN_MS: u64 = 1_500;
const IDLE_MS: u64 = 1_000;
/// The longest any fault may take to reach the client (the slowest is a stall: first token
/// or idle timeout, plus slack for a debug build on a busy machine).
const BOUND: Duration = Duration::from_secs(6);

/// A proxy with route `fault` (models `fault-*`) on `fault_url`, and every other model on a
/// good mock vLLM.
struct Setup {
    proxy: ProxyProcess,
    _good: MockVllm,
    _cfg: TempFile,
}

async fn setup(fault_url: &str, discover: bool) -> Setup {
    setup_with(fault_url, discover, FIRST_TOKEN_MS).await
}

/// `setup` with another `firstTokenMs`, for faults that take a while to reach their limit.
async fn setup_with(fault_url: &str, discover: bool, first_token_ms: u64) -> Setup {
    let good = mock().await;
    // Discovery goes through the fault backend (its /v1/models and /version) unless it
    // refuses connections.
    let known = if discover {
        String::new()
    } else {
        "    servedModel: fault-model\n    contextWindow: 32768\n".into()
    };
    let cfg = TempFile::new(&format!(
        "server: {{commitAfterMs: 300, pingIntervalMs: 5000}}\n\
         backends:\n  - name: faulty\n    baseUrl: '{fault_url}'\n{known}\
         \x20 - name: good\n    baseUrl: '{}'\n    servedModel: qwen3-coder\n    contextWindow: 32768\n\
         routes:\n  - name: fault\n    models: ['fault-*']\n    backend: faulty\n\
         \x20   retries: {{attempts: 1}}\n\
         \x20   timeouts: {{connectMs: 1000, firstTokenMs: {first_token_ms}, idleMs: {IDLE_MS}, totalMs: 20000}}\n\
         \x20 - name: rest\n    models: ['*']\n    backend: good\n",
        good.base_url()
    ));
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).expect("proxy starts");
    Setup {
        proxy,
        _good: good,
        _cfg: cfg,
    }
}

fn request(model: &str, stream: bool) -> Value {
    json!({"model": model, "max_tokens": 100, "stream": stream,
        "messages": [{"role": "user", "content": "hello"}]})
}

/// Status, body text and how long the whole answer took.
async fn call(proxy: &ProxyProcess, body: &Value) -> (u16, String, Duration) {
    let started = Instant::now();
    let resp = http()
        .post(format!("{}/v1/messages", proxy.url()))
        .json(body)
        .send()
        .await
        .expect("proxy answers");
    let status = resp.status().as_u16();
    let text = resp.text().await.expect("body ends");
    (status, text, started.elapsed())
}

/// An HTTP error before the first byte: `status` with Anthropic error JSON of `kind`.
fn assert_http_error(status: u16, text: &str, want_status: u16, kind: &str) -> Value {
    assert_eq!(status, want_status, "{text}");
    let v: Value = serde_json::from_str(text).expect("error JSON");
    assert_eq!(v["type"], "error", "{text}");
    assert_eq!(v["error"]["type"], kind, "{text}");
    v
}

/// A committed stream ending with an `error` event of `kind` (and no `message_stop`).
fn assert_stream_error(status: u16, text: &str, kind: &str) -> Value {
    assert_eq!(status, 200, "{text}");
    let events = sse_events(text);
    assert_eq!(
        events.first().map(|e| e.0.as_str()),
        Some("message_start"),
        "{text}"
    );
    let (name, data) = events.last().expect("events").clone();
    assert_eq!(name, "error", "{text}");
    assert_eq!(data["error"]["type"], kind, "{text}");
    assert!(!events.iter().any(|e| e.0 == "message_stop"), "{text}");
    data
}

/// The proxy still serves a good backend after the fault.
async fn assert_healthy(s: &Setup) {
    let (status, text, _) = call(&s.proxy, &request("claude-sonnet-4-5", true)).await;
    assert_eq!(status, 200, "{text}");
    assert!(text.contains("message_stop"), "{text}");
    let (status, text, _) = call(&s.proxy, &request("claude-sonnet-4-5", false)).await;
    assert_eq!(status, 200, "{text}");
}

/// What a fault must come to: the client's answer, and the proof the proxy let go of the
/// backend and still serves.
struct Expect {
    stream: bool,
    /// `Some(status)`: an HTTP error before the first byte; `None`: an `error` event.
    http: Option<u16>,
    kind: &'static str,
    message_has: &'static str,
    within: Duration,
}

/// Runs one request against a backend with `fault` and checks `want`; returns the backend
/// and the error object for further checks.
async fn fault_comes_to(fault: Fault, want: Expect) -> (FaultBackend, Value) {
    let fb = FaultBackend::start(fault).await.unwrap();
    let s = setup(&fb.base_url(), true).await;
    let (status, text, took) = call(&s.proxy, &request("fault-a", want.stream)).await;
    let error = match want.http {
        Some(code) => assert_http_error(status, &text, code, want.kind),
        None => assert_stream_error(status, &text, want.kind),
    };
    let message = error["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(want.message_has), "{error}");
    assert!(took < want.within, "{took:?}");
    assert!(
        fb.wait_peer_closed(1, BOUND).await,
        "upstream connection closed"
    );
    assert_healthy(&s).await;
    (fb, error)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_connections_are_529_overloaded() {
    let s = setup(&refusing_url(), false).await;
    for stream in [true, false] {
        let (status, text, took) = call(&s.proxy, &request("fault-a", stream)).await;
        assert_http_error(status, &text, 529, "overloaded_error");
        assert!(took < BOUND, "{took:?}");
    }
    assert_healthy(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_mid_stream_is_an_api_error_event() {
    let fb = FaultBackend::start(Fault::ResetMidStream).await.unwrap();
    let s = setup(&fb.base_url(), true).await;
    let (status, text, took) = call(&s.proxy, &request("fault-a", true)).await;
    assert_stream_error(status, &text, "api_error");
    assert!(
        text.contains("Hello"),
        "what came before the reset reached the client: {text}"
    );
    assert!(took < BOUND, "{took:?}");
    assert_healthy(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_silent_before_its_headers_is_529_within_first_token_ms() {
    let fb = FaultBackend::start(Fault::StallBeforeHeaders)
        .await
        .unwrap();
    let s = setup(&fb.base_url(), true).await;
    let (status, text, took) = call(&s.proxy, &request("fault-a", true)).await;
    assert_http_error(status, &text, 529, "overloaded_error");
    assert!(
        took >= Duration::from_millis(FIRST_TOKEN_MS) && took < BOUND,
        "{took:?}"
    );
    assert!(
        fb.wait_peer_closed(1, BOUND).await,
        "the proxy closed the stalled upstream connection"
    );
    assert_healthy(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backend_silent_after_its_first_chunk_ends_the_stream_within_idle_ms() {
    let fb = FaultBackend::start(Fault::StallAfterFirstChunk)
        .await
        .unwrap();
    let s = setup(&fb.base_url(), true).await;
    let (status, text, took) = call(&s.proxy, &request("fault-a", true)).await;
    let data = assert_stream_error(status, &text, "overloaded_error");
    assert!(
        data["error"]["message"]
            .as_str()
            .unwrap()
            .contains("idleMs"),
        "{data}"
    );
    assert!(
        took >= Duration::from_millis(IDLE_MS) && took < BOUND,
        "{took:?}"
    );
    assert!(
        fb.wait_peer_closed(1, BOUND).await,
        "upstream connection closed"
    );
    assert_healthy(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_sse_after_the_first_chunk_is_an_api_error_event() {
    let want = Expect {
        stream: true,
        http: None,
        kind: "api_error",
        message_has: "malformed SSE",
        within: BOUND,
    };
    fault_comes_to(Fault::MalformedSse, want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_in_the_first_data_line_is_a_500_api_error() {
    let want = Expect {
        stream: true,
        http: Some(500),
        kind: "api_error",
        message_has: "bad chunk",
        within: BOUND,
    };
    fault_comes_to(Fault::MalformedJsonData, want).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vllms_in_stream_error_object_becomes_an_error_event_with_its_message() {
    let want = Expect {
        stream: true,
        http: None,
        kind: "api_error",
        message_has: "engine died",
        within: BOUND,
    };
    fault_comes_to(Fault::InStreamError, want).await;
}

/// Before: the whole process aborted (an 8 TB allocation), every client's stream with it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tool_call_index_of_1e11_ends_that_stream_not_the_process() {
    let want = Expect {
        stream: true,
        http: None,
        kind: "api_error",
        message_has: "tool call",
        within: BOUND,
    };
    fault_comes_to(Fault::HugeToolCallIndex, want).await;
}

/// Before: the error object was read as an answer without `choices`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_200_with_an_error_body_is_that_error() {
    let fb = FaultBackend::start(Fault::ErrorBody200).await.unwrap();
    let s = setup(&fb.base_url(), true).await;
    let (status, text, took) = call(&s.proxy, &request("fault-a", false)).await;
    let v = assert_http_error(status, &text, 500, "api_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("engine died"),
        "{v}"
    );
    assert!(took < BOUND, "{took:?}");
    assert_healthy(&s).await;
}

/// Before: the proxy read the whole body (256 MiB) into memory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_without_end_is_cut_at_the_limit() {
    let want = Expect {
        stream: false,
        http: Some(500),
        kind: "api_error",
        message_has: "larger than",
        within: Duration::from_secs(20),
    };
    let (fb, _) = fault_comes_to(Fault::EndlessBody, want).await;
    assert!(
        fb.written() < 128 << 20,
        "read no further: {} bytes",
        fb.written()
    );
}

/// Before: the proxy buffered the line without bound (and re-parsed it on every chunk).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_sse_line_without_end_is_cut_at_the_limit() {
    let fb = FaultBackend::start(Fault::EndlessSseLine).await.unwrap();
    // Reading 16 MiB through a debug build on a busy CI machine took longer than 1.5 s
    // (the first-token timeout fired first): this test is about the size limit.
    let s = setup_with(&fb.base_url(), true, 15_000).await;
    let (status, text, took) = call(&s.proxy, &request("fault-a", true)).await;
    // Cut before or after the stream was committed, depending on the machine's speed.
    let kind = if status == 200 {
        assert_stream_error(status, &text, "api_error")
    } else {
        assert_http_error(status, &text, 500, "api_error")
    };
    assert!(
        kind["error"]["message"]
            .as_str()
            .unwrap()
            .contains("larger than"),
        "{kind}"
    );
    assert!(took < Duration::from_secs(20), "{took:?}");
    assert!(
        fb.wait_peer_closed(1, BOUND).await,
        "upstream connection dropped"
    );
    assert!(
        fb.written() < 128 << 20,
        "read no further: {} bytes",
        fb.written()
    );
    assert_healthy(&s).await;
}
