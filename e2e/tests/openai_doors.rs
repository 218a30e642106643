//! The OpenAI front doors (`/v1/chat/completions`, `/v1/responses`) through the real binary,
//! in front of the mock vLLM's OpenAI route and its native Anthropic route: the same routes,
//! keys, clamp and access line as `/v1/messages`, answers and errors in OpenAI's shapes.
//! The official SDKs and the Codex CLI drive the same doors in `e2e/clients/`.

use serde_json::{json, Value};
use std::time::Duration;
use switchyard_e2e::mock_vllm::{MockConfig, MockVllm};
use switchyard_e2e::proxy_process::ProxyProcess;
use switchyard_e2e::testkit::{hash_key, http, sse_events, TempFile};

async fn mock() -> MockVllm {
    MockVllm::start(MockConfig::default(), "127.0.0.1:0".parse().unwrap())
        .await
        .expect("mock starts")
}

/// A proxy with a client key and one route (`gpt-local`, `claude-*`) to the mock, spoken to
/// in `protocol`.
fn start(m: &MockVllm, protocol: &str) -> (ProxyProcess, TempFile) {
    let cfg = TempFile::new(&format!(
        "server:\n  commitAfterMs: 100\n  pingIntervalMs: 100\n\
         backends:\n  - name: vllm\n    baseUrl: {}\n    protocol: {protocol}\n\
         routes:\n  - name: local\n    models: ['gpt-local', 'claude-*']\n    backend: vllm\n\
         keys:\n  - name: dev\n    sha256: {}\n",
        m.base_url(),
        hash_key("sk-door")
    ));
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    (proxy, cfg)
}

/// Status and body; every answer carries its request id under OpenAI's name too.
async fn post(proxy: &ProxyProcess, path: &str, key: &str, body: &Value) -> (u16, String) {
    let resp = http()
        .post(format!("{}{path}", proxy.url()))
        .bearer_auth(key)
        .json(body)
        .send()
        .await
        .expect("proxy answers");
    let id = |name: &str| {
        resp.headers()
            .get(name)
            .map(|v| v.to_str().unwrap().to_owned())
    };
    assert!(id("x-request-id").is_some_and(|v| v.starts_with("req_")));
    assert_eq!(id("x-request-id"), id("request-id"));
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The `data:` payloads of a Chat Completions stream.
fn chunks(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|b| b.trim().strip_prefix("data: ").map(str::to_owned))
        .collect()
}

fn chat(text: &str, stream: bool) -> Value {
    json!({"model": "gpt-local", "stream": stream,
           "stream_options": {"include_usage": true},
           "messages": [{"role": "system", "content": "Be brief."},
                        {"role": "user", "content": text}]})
}

async fn chat_round_trip(protocol: &str) {
    let m = mock().await;
    let (proxy, _cfg) = start(&m, protocol);

    let (status, body) = post(
        &proxy,
        "/v1/chat/completions",
        "sk-door",
        &chat("hi", false),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(
        v["model"], "gpt-local",
        "the client's model name, not the served one"
    );
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Hello from mock vLLM."
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["prompt_tokens"].as_u64().unwrap() > 0);

    let (status, body) = post(
        &proxy,
        "/v1/chat/completions",
        "sk-door",
        &chat("[[mock:text:5]]", true),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let data = chunks(&body);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let parsed: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = parsed
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "word0 word1 word2 word3 word4");
    let usage = &parsed.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], 5, "{usage}");
    assert_eq!(parsed.last().unwrap()["choices"], json!([]));

    // What reached the backend: the served model, the system prompt, one request each.
    let sent = m.stats.last_body().unwrap();
    assert_eq!(sent["model"], "qwen3-coder");
    assert!(sent.to_string().contains("Be brief."), "{sent}");
    assert_eq!(
        m.stats.requests.load(std::sync::atomic::Ordering::SeqCst),
        2
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completions_to_an_openai_backend() {
    chat_round_trip("openai").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_completions_to_an_anthropic_backend() {
    chat_round_trip("anthropic").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_tool_calls_and_results_round_trip() {
    let m = mock().await;
    let (proxy, _cfg) = start(&m, "openai");
    let tools = json!([{"type": "function", "function": {"name": "shell",
        "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}}}]);
    let ask = json!({"model": "gpt-local", "tools": tools,
        "messages": [{"role": "user", "content": "[[mock:tool]]"}]});
    let (status, body) = post(&proxy, "/v1/chat/completions", "sk-door", &ask).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    let msg = &v["choices"][0]["message"];
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls", "{v}");
    let call = &msg["tool_calls"][0];
    assert_eq!(call["function"]["name"], "shell");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap())
        .expect("arguments are a JSON string");
    assert!(args.is_object(), "{args}");

    let follow = json!({"model": "gpt-local", "tools": tools, "messages": [
        {"role": "user", "content": "[[mock:tool]]"},
        msg,
        {"role": "tool", "tool_call_id": call["id"], "content": "file-a file-b"}]});
    let (status, body) = post(&proxy, "/v1/chat/completions", "sk-door", &follow).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["choices"][0]["message"]["content"],
        "Tool result received: file-a file-b"
    );
    let sent = m.stats.last_body().unwrap();
    let tool_msg = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("the tool result reached vLLM as a tool message");
    assert_eq!(tool_msg["tool_call_id"], call["id"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn responses_stream_and_whole_answer() {
    let m = mock().await;
    let (proxy, _cfg) = start(&m, "openai");
    let req = json!({"model": "gpt-local", "stream": true, "store": false,
        "input": [{"type": "message", "role": "developer", "content": "Be brief."},
                  {"type": "message", "role": "user",
                   "content": [{"type": "input_text", "text": "[[mock:text:3]]"}]}]});
    let (status, body) = post(&proxy, "/v1/responses", "sk-door", &req).await;
    assert_eq!(status, 200, "{body}");
    let events = sse_events(&body);
    let types: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(types.first(), Some(&"response.created"));
    assert_eq!(types.last(), Some(&"response.completed"));
    let deltas: String = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .filter_map(|(_, d)| d["delta"].as_str())
        .collect();
    assert_eq!(deltas, "word0 word1 word2");
    let done = &events.last().unwrap().1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"][0]["content"][0]["text"], "word0 word1 word2");
    assert_eq!(done["usage"]["output_tokens"], 3);

    let mut whole = req.clone();
    whole["stream"] = json!(false);
    let (status, body) = post(&proxy, "/v1/responses", "sk-door", &whole).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["model"], "gpt-local");
    assert_eq!(v["output"][0]["content"][0]["text"], "word0 word1 word2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_are_openai_shaped_with_openai_statuses() {
    let m = mock().await;
    let (proxy, _cfg) = start(&m, "openai");
    let error_of = |body: &str| -> Value {
        let v: Value = serde_json::from_str(body).unwrap();
        assert!(
            v["error"]["message"]
                .as_str()
                .is_some_and(|s| !s.is_empty()),
            "{v}"
        );
        assert!(v.get("type").is_none(), "not Anthropic's shape: {v}");
        v["error"].clone()
    };
    let (status, body) = post(
        &proxy,
        "/v1/chat/completions",
        "sk-wrong",
        &chat("hi", false),
    )
    .await;
    assert_eq!(status, 401);
    assert_eq!(error_of(&body)["code"], "invalid_api_key");

    let mut unknown = chat("hi", false);
    unknown["model"] = json!("llama-elsewhere");
    let (status, body) = post(&proxy, "/v1/chat/completions", "sk-door", &unknown).await;
    assert_eq!(status, 404);
    assert_eq!(error_of(&body)["code"], "model_not_found");

    let bad =
        json!({"model": "gpt-local", "messages": [{"role": "user", "content": "hi"}], "n": 2});
    let (status, body) = post(&proxy, "/v1/chat/completions", "sk-door", &bad).await;
    assert_eq!(status, 400);
    assert_eq!(error_of(&body)["type"], "invalid_request_error");

    let stored = json!({"model": "gpt-local", "input": "hi", "previous_response_id": "resp_1"});
    let (status, body) = post(&proxy, "/v1/responses", "sk-door", &stored).await;
    assert_eq!(status, 400);
    assert!(error_of(&body)["message"]
        .as_str()
        .unwrap()
        .contains("previous_response_id"));

    // The backend overloaded on every try: 503 (OpenAI's), not Anthropic's 529.
    let (status, body) = post(
        &proxy,
        "/v1/chat/completions",
        "sk-door",
        &chat("[[mock:error:503]]", false),
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(error_of(&body)["type"], "server_error");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_cut_after_commit_ends_each_protocol_its_own_way() {
    let m = mock().await;
    let (proxy, _cfg) = start(&m, "openai");
    let (status, body) = post(
        &proxy,
        "/v1/chat/completions",
        "sk-door",
        &chat("[[mock:die:3]]", true),
    )
    .await;
    assert_eq!(status, 200);
    let data = chunks(&body);
    let last: Value = serde_json::from_str(data.last().unwrap()).expect("no [DONE] after a cut");
    assert!(last["error"]["message"].as_str().is_some(), "{last}");
    assert!(
        data.iter().any(|d| d.contains("\"content\":\"chunk0\"")),
        "the tokens before the cut reached the client: {body}"
    );

    let req = json!({"model": "gpt-local", "stream": true, "input": "[[mock:die:3]]"});
    let (status, body) = post(&proxy, "/v1/responses", "sk-door", &req).await;
    assert_eq!(status, 200);
    let events = sse_events(&body);
    assert_eq!(events.last().unwrap().0, "response.failed", "{body}");
    assert!(!events.iter().any(|(n, _)| n == "response.completed"));
}

/// A route with `responsesApi: forward` in front of the mock's own `/v1/responses` (vLLM
/// 0.34's), a dead backend first in the plan.
fn start_forwarding(m: &MockVllm) -> (ProxyProcess, TempFile) {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_url = format!("http://{}/v1", dead.local_addr().unwrap());
    drop(dead);
    let cfg = TempFile::new(&format!(
        "server:\n  commitAfterMs: 100\n\
         backends:\n  - name: gone\n    baseUrl: {dead_url}\n    servedModel: qwen3-coder\n\
         \x20 - name: vllm\n    baseUrl: {}\n\
         routes:\n  - name: codex\n    models: ['gpt-local']\n    backend: gone\n    \
         fallbacks: [vllm]\n    responsesApi: forward\n",
        m.base_url()
    ));
    let proxy = ProxyProcess::start(&["--config", cfg.path()]).unwrap();
    (proxy, cfg)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarding_route_sends_responses_to_vllms_own_api() {
    let m = mock().await;
    let (proxy, _cfg) = start_forwarding(&m);
    let req = json!({"model": "gpt-local", "stream": true, "prompt_cache_key": "thread-7",
        "input": [{"type": "message", "role": "user", "content": "[[mock:text:3]]"}]});
    let (status, body) = post(&proxy, "/v1/responses", "any", &req).await;
    assert_eq!(status, 200, "{body}");
    let events = sse_events(&body);
    assert_eq!(events.first().unwrap().0, "response.created");
    let done = &events.last().unwrap();
    assert_eq!(done.0, "response.completed", "{body}");
    assert_eq!(
        done.1["response"]["model"], "gpt-local",
        "the client's name"
    );
    let text: String = events
        .iter()
        .filter(|(n, _)| n == "response.output_text.delta")
        .filter_map(|(_, d)| d["delta"].as_str())
        .collect();
    assert_eq!(text, "word0 word1 word2");
    // vLLM got the body as sent, but for the served model; nothing went to chat/completions.
    let sent = m.stats.last_body().unwrap();
    assert_eq!(sent["model"], "qwen3-coder");
    assert_eq!(sent["prompt_cache_key"], "thread-7");
    assert_eq!(m.stats.requests_to("/v1/responses"), 1);
    assert_eq!(m.stats.requests_to("/v1/chat/completions"), 0);

    let mut whole = req.clone();
    whole["stream"] = json!(false);
    let (status, body) = post(&proxy, "/v1/responses", "any", &whole).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["model"], "gpt-local");
    assert_eq!(v["output"][0]["content"][0]["text"], "word0 word1 word2");

    // What only the backend can answer is its answer: vLLM keeps no responses by default.
    let mut follow = whole.clone();
    follow["previous_response_id"] = v["id"].clone();
    let (status, body) = post(&proxy, "/v1/responses", "any", &follow).await;
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("not found"), "{body}");

    let answered = |l: &str| {
        l.contains("api=\"responses\"")
            && l.contains("backend=vllm")
            && l.contains("output_tokens=3")
    };
    assert_eq!(
        proxy.wait_for_log_lines(answered, 2, Duration::from_secs(10)),
        2,
        "both answers counted with their usage: {}",
        proxy.log_text()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarded_stream_cut_by_the_backend_ends_with_response_failed() {
    let m = mock().await;
    let (proxy, _cfg) = start_forwarding(&m);
    let req = json!({"model": "gpt-local", "stream": true, "input": "[[mock:die:2]]"});
    let (status, body) = post(&proxy, "/v1/responses", "any", &req).await;
    assert_eq!(status, 200, "{body}");
    let events = sse_events(&body);
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names[names.len() - 2..],
        ["error", "response.failed"],
        "{body}"
    );
    let seq: Vec<u64> = events
        .iter()
        .filter_map(|(_, d)| d["sequence_number"].as_u64())
        .collect();
    assert!(seq.windows(2).all(|w| w[0] < w[1]), "increasing: {seq:?}");
    assert_eq!(events.last().unwrap().1["response"]["model"], "gpt-local");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_prefill_is_kept_alive_with_sse_comments() {
    let m = mock().await;
    let (proxy, _cfg) = start(&m, "openai");
    for (path, body) in [
        (
            "/v1/chat/completions",
            chat("[[mock:slow:700]] [[mock:text:2]]", true),
        ),
        (
            "/v1/responses",
            json!({"model": "gpt-local", "stream": true, "input": "[[mock:slow:700]] [[mock:text:2]]"}),
        ),
    ] {
        let (status, text) = post(&proxy, path, "sk-door", &body).await;
        assert_eq!(status, 200, "{text}");
        let ping = text
            .find("\n\n: ping\n\n")
            .expect("the silence as SSE comments");
        let token = text.find("word0").expect("then the tokens");
        assert!(ping < token, "{path}: {text}");
        assert!(
            !text.contains("event: ping"),
            "{path}: no Anthropic event: {text}"
        );
    }
}
