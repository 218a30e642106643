//! What Claude Code needs from a gateway beyond `/v1/messages` itself, through the real proxy
//! binary in front of the mock vLLM: the warm-up probe, error JSON and `request-id` on every
//! answer, model discovery, hard quotas, server tools and `context_management`.

use serde_json::{json, Value};
use std::time::{Duration, Instant};
use switchyard_e2e::proxy_process::ProxyProcess;
use switchyard_e2e::testkit::{hash_key, http, mock, sse_events, TempFile};

fn backend(name: &str, url: &str, extra: &str) -> String {
    format!("  - name: {name}\n    baseUrl: '{url}'\n{extra}")
}

fn config(backends: &[String], routes: &str, keys: &str) -> TempFile {
    TempFile::new(&format!(
        "server:\n  maxBodyBytes: 400000\nbackends:\n{}routes:\n{routes}{keys}",
        backends.concat()
    ))
}

const SERVED: &str = "    servedModel: qwen3-coder\n    contextWindow: 32768\n";

async fn post(
    proxy: &ProxyProcess,
    path: &str,
    key: Option<&str>,
    body: &Value,
) -> reqwest::Response {
    let mut req = http().post(format!("{}{path}", proxy.url())).json(body);
    if let Some(k) = key {
        req = req.header("x-api-key", k);
    }
    req.send().await.expect("proxy answers")
}

fn request_id(resp: &reqwest::Response) -> String {
    resp.headers()
        .get("request-id")
        .unwrap_or_else(|| panic!("no request-id on {} {}", resp.status(), resp.url()))
        .to_str()
        .unwrap()
        .to_owned()
}

/// Status, `request-id`, and the Anthropic error type of an error answer.
async fn error_of(resp: reqwest::Response) -> (u16, String, String) {
    let status = resp.status().as_u16();
    let id = request_id(&resp);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{v}"
    );
    (status, id, v["error"]["type"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_up_probe_answers_200_with_a_request_id() {
    let m = mock().await;
    let proxy = ProxyProcess::start(&["--upstream", &m.base_url()]).unwrap();
    let c = http();
    let head = c
        .head(format!("{}/api/hello", proxy.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(head.status(), 200);
    assert!(request_id(&head).starts_with("req_"));
    let get = c
        .get(format!("{}/api/hello", proxy.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(get.status(), 200);
    assert!(request_id(&get).starts_with("req_"));
    assert_eq!(
        m.stats.requests.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_is_anthropic_json_with_a_request_id() {
    let m = mock().await;
    let proxy = ProxyProcess::start(&["--upstream", &m.base_url()]).unwrap();
    let c = http();
    let url = |p: &str| format!("{}{p}", proxy.url());
    let cases = [
        (c.get(url("/v1/nothing-here")), 404, "not_found_error"),
        (c.get(url("/v1/messages")), 405, "invalid_request_error"),
        (c.delete(url("/v1/models")), 405, "invalid_request_error"),
        (
            c.get(url("/v1/messages/count_tokens")),
            405,
            "invalid_request_error",
        ),
        (
            c.post(url("/v1/messages/count_tokens"))
                .json(&json!({"messages": []})),
            400,
            "invalid_request_error",
        ),
    ];
    let mut ids = Vec::new();
    for (req, status, kind) in cases {
        let (got, id, got_kind) = error_of(req.send().await.unwrap()).await;
        assert_eq!((got, got_kind.as_str()), (status, kind));
        ids.push(id);
    }
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 5, "every answer gets its own id");
    // Successful answers of the other endpoints carry one too.
    let counted = post(
        &proxy,
        "/v1/messages/count_tokens",
        None,
        &json!({"model": "claude-x", "messages": [{"role": "user", "content": "hi"}]}),
    )
    .await;
    assert_eq!(counted.status(), 200);
    assert!(request_id(&counted).starts_with("req_"));
    let models = c.get(url("/v1/models")).send().await.unwrap();
    assert_eq!(models.status(), 200);
    assert!(request_id(&models).starts_with("req_"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn model_discovery_lists_exact_routes_with_served_names_without_waiting() {
    let m = mock().await;
    // A backend that never answers, without servedModel: listing must not wait for it.
    let dead = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}/v1", l.local_addr().unwrap())
    };
    let (good, narrow) = (hash_key("sk-gw-good"), hash_key("sk-gw-narrow"));
    let cfg = config(
        &[backend("vllm", &m.base_url(), SERVED), backend("dead", &dead, "")],
        "  - name: main\n    models: ['claude-opus-4-5', 'claude-sonnet-4-5']\n    backend: vllm\n\
         \x20 - name: globbed\n    models: ['claude-haiku-*']\n    backend: vllm\n\
         \x20 - name: offline\n    models: ['anthropic-local']\n    backend: dead\n",
        &format!("keys:\n  - name: good\n    sha256: {good}\n  - name: narrow\n    sha256: {narrow}\n    routes: [offline]\n"),
    );
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    // As Claude Code asks (fixtures/claude-code/discovery): the Anthropic SDK always sends
    // `anthropic-version`, which selects the Anthropic shape.
    let list = |key: Option<&'static str>| {
        let mut req = http()
            .get(format!("{}/v1/models?limit=1000", proxy.url()))
            .header("anthropic-version", "2023-06-01");
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        req.send()
    };
    let (status, _, kind) = error_of(list(None).await.unwrap()).await;
    assert_eq!((status, kind.as_str()), (401, "authentication_error"));

    let started = Instant::now();
    let v: Value = list(Some("sk-gw-good"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    let entry = |id: &str, display: &str| json!({"type": "model", "id": id, "display_name": display, "created_at": "2025-01-01T00:00:00Z"});
    assert_eq!(
        v,
        json!({"data": [entry("anthropic-local", "anthropic-local"),
                        entry("claude-opus-4-5", "qwen3-coder"),
                        entry("claude-sonnet-4-5", "qwen3-coder")],
               "has_more": false, "first_id": "anthropic-local", "last_id": "claude-sonnet-4-5"})
    );
    let v: Value = list(Some("sk-gw-narrow"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["data"],
        json!([entry("anthropic-local", "anthropic-local")])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_refusals_no_retry_can_fix_say_so() {
    let m = mock().await;
    let (small, closed, slow) = (
        hash_key("sk-small"),
        hash_key("sk-closed"),
        hash_key("sk-slow"),
    );
    let cfg = config(
        &[backend("vllm", &m.base_url(), SERVED)],
        "  - name: main\n    models: ['claude-*']\n    backend: vllm\n\
         \x20 - name: tight\n    models: ['tight']\n    backend: vllm\n    limits: {tokensPerMinute: 500}\n",
        &format!(
            "keys:\n  - name: small\n    sha256: {small}\n    limits: {{tokensPerMinute: 1000}}\n\
             \x20 - name: closed\n    sha256: {closed}\n    limits: {{requestsPerMinute: 0}}\n\
             \x20 - name: slow\n    sha256: {slow}\n    limits: {{requestsPerMinute: 1}}\n"
        ),
    );
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    let body = |model: &str, text: &str| json!({"model": model, "max_tokens": 100, "messages": [{"role": "user", "content": text}]});
    let big = "x".repeat(8_000); // ≈ 2000 estimated tokens
    let cases = [
        (
            "sk-small",
            body("claude-a", &big),
            "tokensPerMinute limit of 1000 for `small`",
        ),
        (
            "sk-closed",
            body("claude-a", "hi"),
            "`closed` has requestsPerMinute set to 0",
        ),
        (
            "sk-slow",
            body("tight", &"y".repeat(2_400)),
            "tokensPerMinute limit of 500 for `route:tight`",
        ),
    ];
    for (key, req, wording) in cases {
        let resp = post(&proxy, "/v1/messages", Some(key), &req).await;
        assert_eq!(resp.status(), 429, "{key}");
        assert_eq!(resp.headers()["x-should-retry"], "false", "{key}");
        assert!(!resp.headers().contains_key("retry-after"), "{key}");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], "rate_limit_error");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(wording),
            "{v}"
        );
    }
    // An ordinary rate limit stays retryable: retry-after, no x-should-retry. (The route-size
    // refusal above came after the key's admission, so `slow` has used its one request.)
    let resp = post(
        &proxy,
        "/v1/messages",
        Some("sk-slow"),
        &body("claude-a", "hi"),
    )
    .await;
    assert_eq!(resp.status(), 429);
    assert!(!resp.headers().contains_key("x-should-retry"));
    let secs: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&secs), "{secs}");
    // The small key's ordinary requests pass.
    let ok = post(
        &proxy,
        "/v1/messages",
        Some("sk-small"),
        &body("claude-a", "hi"),
    )
    .await;
    assert_eq!(ok.status(), 200);
}

fn web_search(stream: bool) -> Value {
    json!({"model": "claude-haiku-4-5", "max_tokens": 32000, "stream": stream,
        "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 8}],
        "messages": [{"role": "user", "content": "Perform a web search for the query: vllm 0.34 release notes"}]})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn web_search_alone_is_answered_by_the_gateway() {
    let m = mock().await;
    let proxy = ProxyProcess::start(&["--upstream", &m.base_url()]).unwrap();
    let resp = post(&proxy, "/v1/messages", None, &web_search(false)).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    let types: Vec<&str> = v["content"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["server_tool_use", "web_search_tool_result", "text"]);
    let id = v["content"][0]["id"].as_str().unwrap();
    assert!(id.starts_with("srvtoolu_"), "{id}");
    assert_eq!(v["content"][0]["name"], "web_search");
    assert_eq!(
        v["content"][0]["input"],
        json!({"query": "vllm 0.34 release notes"})
    );
    assert_eq!(v["content"][1]["tool_use_id"], id);
    assert_eq!(
        v["content"][1]["content"],
        json!({"type": "web_search_tool_result_error", "error_code": "unavailable"})
    );
    assert!(v["content"][2]["text"]
        .as_str()
        .unwrap()
        .contains("not available through this self-hosted gateway"));
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["model"], "claude-haiku-4-5");
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);
    assert!(v["usage"]["output_tokens"].as_u64().unwrap() > 0);

    let resp = post(&proxy, "/v1/messages", None, &web_search(true)).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let ev = sse_events(&resp.text().await.unwrap());
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "content_block_start",
            "content_block_stop",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ]
    );
    assert_eq!(ev[2].1["delta"]["type"], "input_json_delta");
    assert_eq!(ev[4].1["content_block"]["type"], "web_search_tool_result");
    assert_eq!(ev[9].1["delta"]["stop_reason"], "end_turn");
    // The backend never saw either request; both were logged.
    assert_eq!(
        m.stats.requests.load(std::sync::atomic::Ordering::SeqCst),
        0
    );
    let logged = proxy.wait_for_log_lines(
        |l| l.contains("request completed") && l.contains("claude-haiku-4-5"),
        2,
        Duration::from_secs(5),
    );
    assert_eq!(logged, 2, "{}", proxy.log_text());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_tools_beside_custom_tools_are_removed_before_forwarding() {
    let m = mock().await;
    let proxy = ProxyProcess::start(&["--upstream", &m.base_url()]).unwrap();
    let mut req = web_search(false);
    req["tools"].as_array_mut().unwrap().extend([
        json!({"type": "web_fetch_20250910", "name": "web_fetch"}),
        json!({"name": "Bash", "description": "Run a command", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}),
    ]);
    let resp = post(&proxy, "/v1/messages", None, &req).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let sent = m.stats.last_body().unwrap();
    let names: Vec<&str> = sent["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Bash"]);
}

/// Five Bash tool uses t1..t5 with 4000-byte results, and `context_management`.
fn tool_loop(context_management: Value) -> Value {
    let mut messages = vec![json!({"role": "user", "content": "list things"})];
    for i in 1..=5 {
        messages.push(json!({"role": "assistant", "content": [
            {"type": "tool_use", "id": format!("toolu_{i}"), "name": "Bash", "input": {"command": format!("ls {i}")}}]}));
        messages.push(json!({"role": "user", "content": [
            {"type": "tool_result", "tool_use_id": format!("toolu_{i}"), "content": format!("result {i} ").repeat(500)}]}));
    }
    json!({"model": "claude-opus-4-5", "max_tokens": 1000, "messages": messages,
        "tools": [{"name": "Bash", "description": "Run", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}],
        "context_management": context_management})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_management_is_done_by_the_proxy_and_never_forwarded() {
    let m = mock().await;
    let proxy = ProxyProcess::start(&["--upstream", &m.base_url()]).unwrap();
    let edits = json!({"edits": [
        {"type": "clear_thinking_20251015", "keep": "all"},
        {"type": "clear_tool_uses_20250919", "trigger": {"type": "input_tokens", "value": 3000},
         "keep": {"type": "tool_uses", "value": 2}}]});
    let resp = post(&proxy, "/v1/messages", None, &tool_loop(edits)).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let sent = m.stats.last_body().unwrap();
    assert!(!sent.to_string().contains("context_management"));
    let results: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|msg| msg["role"] == "tool")
        .map(|msg| msg["content"].as_str().unwrap())
        .collect();
    assert_eq!(results.len(), 5);
    let placeholder = "[tool result cleared by the gateway to fit the context window]";
    assert_eq!(results[..3], [placeholder; 3]);
    assert!(results[3].starts_with("result 4 ") && results[4].starts_with("result 5 "));

    // Below the trigger nothing is cleared, and unsupported edits alone never cause a 400.
    let edits =
        json!({"edits": [{"type": "compact_20260112"}, {"type": "clear_tool_uses_20250919"}]});
    let resp = post(&proxy, "/v1/messages", None, &tool_loop(edits)).await;
    assert_eq!(resp.status(), 200);
    let sent = m.stats.last_body().unwrap();
    assert!(
        !sent.to_string().contains(placeholder) && !sent.to_string().contains("context_management")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn context_management_never_reaches_an_anthropic_protocol_backend() {
    let m = mock().await;
    let proxy = ProxyProcess::start(&[
        "--upstream",
        &m.base_url(),
        "--upstream-protocol",
        "anthropic",
    ])
    .unwrap();
    let edits = json!({"edits": [{"type": "clear_tool_uses_20250919",
        "trigger": {"type": "tool_uses", "value": 1}, "keep": {"type": "tool_uses", "value": 4}}]});
    let resp = post(&proxy, "/v1/messages", None, &tool_loop(edits)).await;
    assert_eq!(resp.status(), 200, "{}", resp.text().await.unwrap());
    let sent = m.stats.last_body().unwrap();
    assert!(sent.get("context_management").is_none());
    let first_result = &sent["messages"][2]["content"][0];
    assert_eq!(first_result["tool_use_id"], "toolu_1");
    assert_eq!(
        first_result["content"],
        "[tool result cleared by the gateway to fit the context window]"
    );
    assert!(sent["messages"][4]["content"][0]["content"]
        .as_str()
        .unwrap()
        .starts_with("result 2 "));
}
