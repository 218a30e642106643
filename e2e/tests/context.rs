//! Context truth through the real proxy binary: every request Claude Code recorded
//! (`fixtures/claude-code`), replayed at windows of 16k, 32k, 64k and 128k against the
//! mock in each vLLM form it imitates and over both backend protocols, either succeeds or gets
//! `prompt is too long: N tokens > M maximum` with N within 10% of the backend's own count;
//! never any other 400.

use serde_json::{json, Value};
use std::path::PathBuf;
use switchyard_e2e::mock_vllm::{MockConfig, MockVllm, VllmRelease};
use switchyard_e2e::proxy_process::ProxyProcess;
use switchyard_e2e::testkit::{http, sse_events};

const WINDOWS: [u32; 4] = [16_384, 32_768, 65_536, 131_072];

fn fixtures_dir() -> PathBuf {
    std::env::var_os("SWITCHYARD_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures"))
        .join("claude-code")
}

/// Every recorded `POST /v1/messages` body, with its file name.
fn recorded_requests() -> Vec<(String, Value)> {
    let mut out = Vec::new();
    let dir = fixtures_dir();
    let mut scenarios: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .flatten()
        .filter(|e| e.path().is_dir())
        .collect();
    scenarios.sort_by_key(|e| e.path());
    for scenario in scenarios {
        let mut files: Vec<_> = std::fs::read_dir(scenario.path())
            .unwrap()
            .flatten()
            .collect();
        files.sort_by_key(|e| e.path());
        for f in files {
            let name = f.file_name().to_string_lossy().into_owned();
            if !name.contains("_messages") || name.contains("count_tokens") {
                continue;
            }
            let v: Value = serde_json::from_slice(&std::fs::read(f.path()).unwrap()).unwrap();
            let label = format!("{}/{name}", scenario.file_name().to_string_lossy());
            out.push((label, v["body"].clone()));
        }
    }
    assert!(out.len() >= 25, "fixtures found: {}", out.len());
    out
}

async fn start(window: u32, release: VllmRelease, protocol: &str) -> (MockVllm, ProxyProcess) {
    let cfg = MockConfig {
        max_model_len: window,
        vllm_release: release,
        ..MockConfig::default()
    };
    let mock = MockVllm::start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .unwrap();
    let proxy = ProxyProcess::start(&[
        "--upstream",
        &mock.base_url(),
        "--upstream-protocol",
        protocol,
    ])
    .unwrap();
    (mock, proxy)
}

/// The backend's own count of the prompt a request renders to, as the client would see it
/// with a window so large that nothing is clamped: the answer's `input_tokens`.
async fn reference_counts(requests: &[(String, Value)]) -> Vec<u64> {
    let (_mock, proxy) = start(2_000_000, VllmRelease::default(), "openai").await;
    let mut out = Vec::new();
    for (label, body) in requests {
        let mut body = body.clone();
        body["stream"] = json!(false);
        body["max_tokens"] = json!(100);
        let resp = post(&proxy, &body).await;
        assert_eq!(resp.status(), 200, "{label}");
        let v: Value = resp.json().await.unwrap();
        out.push(
            v["usage"]["input_tokens"].as_u64().unwrap()
                + v["usage"]["cache_read_input_tokens"].as_u64().unwrap(),
        );
    }
    out
}

async fn post(proxy: &ProxyProcess, body: &Value) -> reqwest::Response {
    http()
        .post(format!("{}/v1/messages?beta=true", proxy.url()))
        .json(body)
        .send()
        .await
        .expect("proxy answers")
}

/// "prompt is too long: N tokens > M maximum" → (N, M).
fn too_long_numbers(message: &str) -> Option<(u64, u64)> {
    let rest = message.strip_prefix("prompt is too long: ")?;
    let (n, rest) = rest.split_once(" tokens > ")?;
    let m = rest.strip_suffix(" maximum")?;
    Some((n.parse().ok()?, m.parse().ok()?))
}

async fn replay(release: VllmRelease, protocol: &str) {
    let requests = recorded_requests();
    let reference = reference_counts(&requests).await;
    let (mut served, mut too_long) = (0, 0);
    for window in WINDOWS {
        let (mock, proxy) = start(window, release, protocol).await;
        for ((label, body), real) in requests.iter().zip(&reference) {
            let resp = post(&proxy, body).await;
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            let at = format!("{label} at {window} ({release:?}, {protocol})");
            match status {
                200 => {
                    served += 1;
                    if body["stream"] == json!(true) {
                        let events = sse_events(&text);
                        let last = events.last().map(|e| e.0.as_str());
                        assert_eq!(last, Some("message_stop"), "{at}: {text}");
                        assert!(!events.iter().any(|e| e.0 == "error"), "{at}: {text}");
                    }
                    assert!(
                        *real < u64::from(window),
                        "{at}: served a prompt of {real} tokens"
                    );
                }
                400 => {
                    too_long += 1;
                    let v: Value = serde_json::from_str(&text).unwrap();
                    assert_eq!(v["error"]["type"], "invalid_request_error", "{at}");
                    let msg = v["error"]["message"].as_str().unwrap();
                    let (n, m) =
                        too_long_numbers(msg).unwrap_or_else(|| panic!("{at}: other 400: {msg}"));
                    assert!(n > m, "{at}: {msg}");
                    assert!(m <= u64::from(window), "{at}: {msg}");
                    let off = n.abs_diff(*real) as f64 / *real as f64;
                    assert!(off <= 0.10, "{at}: N={n}, backend counts {real}");
                    assert!(
                        *real >= u64::from(window),
                        "{at}: a prompt of {real} tokens fits a window of {window}"
                    );
                }
                other => panic!("{at}: status {other}: {text}"),
            }
        }
        drop(proxy);
        mock.shutdown().await;
    }
    assert!(
        served > 0 && too_long > 0,
        "served {served}, too long {too_long}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_requests_at_every_window_current_vllm_chat() {
    replay(VllmRelease::V0_34, "openai").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_requests_at_every_window_current_vllm_native() {
    replay(VllmRelease::V0_34, "anthropic").await;
}

/// vLLM 0.22–0.31 answers "at least N input tokens" (a lower bound) when prompt +
/// max_tokens is too large: the form that broke Claude Code on its first turn.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_requests_at_every_window_vllm_0_30_chat() {
    replay(VllmRelease::V0_30, "openai").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_requests_at_every_window_vllm_0_30_native() {
    replay(VllmRelease::V0_30, "anthropic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recorded_requests_at_every_window_vllm_0_11_chat() {
    replay(VllmRelease::V0_11, "openai").await;
}
