//! Integration tests of the mock vLLM server over real HTTP on 127.0.0.1.

use std::time::Duration;

use serde_json::{json, Value};
use switchyard_e2e::mock_vllm::{
    anthropic_to_chat, count_prompt_tokens, count_prompt_tokens_without_tools, MockConfig,
    MockVllm, ReasoningField, VllmRelease,
};
use switchyard_e2e::testkit::http;

async fn start(cfg: MockConfig) -> MockVllm {
    MockVllm::start(cfg, "127.0.0.1:0".parse().unwrap())
        .await
        .expect("mock starts")
}

async fn post(mock: &MockVllm, path: &str, body: &Value) -> reqwest::Response {
    http()
        .post(format!("{}{path}", mock.root_url()))
        .header("authorization", "Bearer test-key")
        .json(body)
        .send()
        .await
        .expect("request sent")
}

/// `data:` payloads of an OpenAI SSE body.
fn sse_data(text: &str) -> Vec<String> {
    text.split("\n\n")
        .filter_map(|ev| ev.strip_prefix("data: "))
        .map(str::to_string)
        .collect()
}

/// (event, data) pairs of an Anthropic SSE body.
fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|ev| !ev.trim().is_empty())
        .map(|ev| {
            let mut name = String::new();
            let mut data = Value::Null;
            for line in ev.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data = serde_json::from_str(d).expect("event data is JSON");
                }
            }
            (name, data)
        })
        .collect()
}

fn chat(content: &str) -> Value {
    json!({"model": "qwen3-coder", "messages": [{"role": "user", "content": content}]})
}

fn bash_tool() -> Value {
    json!({"type": "function", "function": {"name": "Bash", "description": "Run a command",
        "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}}})
}

#[tokio::test]
async fn health_and_models() {
    let mock = start(MockConfig::default()).await;
    let r = http()
        .get(format!("{}/health", mock.root_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "");

    let models: Value = http()
        .get(format!("{}/models", mock.base_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(models["object"], "list");
    let card = &models["data"][0];
    assert_eq!(card["id"], "qwen3-coder");
    assert_eq!(card["object"], "model");
    assert_eq!(card["owned_by"], "vllm");
    assert_eq!(card["root"], "/models/Qwen3-Coder");
    assert_eq!(card["parent"], Value::Null);
    assert_eq!(card["max_model_len"], 32768);
    assert_eq!(card["permission"][0]["object"], "model_permission");
    assert!(card["created"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn non_streaming_default_reply() {
    let mock = start(MockConfig::default()).await;
    let body = chat("hello");
    let r = post(&mock, "/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert_eq!(v["object"], "chat.completion");
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["content"], "Hello from mock vLLM.");
    assert_eq!(choice["message"]["reasoning"], Value::Null);
    assert!(choice["message"].get("reasoning_content").is_none());
    assert_eq!(choice["message"]["tool_calls"], json!([]));
    assert_eq!(choice["finish_reason"], "stop");
    assert_eq!(choice["stop_reason"], Value::Null);
    assert_eq!(v["usage"]["prompt_tokens"], count_prompt_tokens(&body));
    assert_eq!(v["usage"]["completion_tokens"], 4);
    assert_eq!(v["usage"]["prompt_tokens_details"], Value::Null);
    assert_eq!(
        mock.stats.last_authorization().as_deref(),
        Some("Bearer test-key")
    );
}

#[tokio::test]
async fn streamed_tool_call_reassembles() {
    let mock = start(MockConfig::default()).await;
    let mut body = chat("run it [[mock:tool]]");
    body["tools"] = json!([bash_tool()]);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = post(&mock, "/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(
        chunks[0]["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let (mut name, mut id, mut args, mut fragments) =
        (String::new(), String::new(), String::new(), 0);
    let mut finish = None;
    for c in &chunks {
        let Some(choice) = c["choices"].get(0) else {
            continue;
        };
        if let Some(calls) = choice["delta"]["tool_calls"].as_array() {
            let call = &calls[0];
            assert_eq!(call["index"], 0);
            if let Some(n) = call["function"]["name"].as_str() {
                name = n.to_string();
                id = call["id"].as_str().unwrap().to_string();
                assert_eq!(call["type"], "function");
            } else {
                fragments += 1;
            }
            args.push_str(call["function"]["arguments"].as_str().unwrap());
        }
        if !choice["finish_reason"].is_null() {
            finish = Some(choice["finish_reason"].clone());
        }
    }
    assert_eq!(name, "Bash");
    assert!(id.starts_with("chatcmpl-tool-"));
    assert!(fragments >= 3, "arguments in {fragments} fragments");
    let parsed: Value = serde_json::from_str(&args).expect("arguments are JSON");
    assert_eq!(parsed["command"], "ls -la");
    assert_eq!(finish, Some(json!("tool_calls")));
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], count_prompt_tokens(&body));
}

fn with_release(release: VllmRelease, max_model_len: u32) -> MockConfig {
    MockConfig {
        vllm_release: release,
        max_model_len,
        ..MockConfig::default()
    }
}

async fn error_of(mock: &MockVllm, path: &str, body: &Value) -> (u16, Value) {
    let r = post(mock, path, body).await;
    (r.status().as_u16(), r.json().await.unwrap())
}

#[tokio::test]
async fn context_window_current_release() {
    let mock = start(with_release(VllmRelease::V0_34, 1000)).await;
    // The prompt alone is over the window: N is always L + 1, never the size.
    let big = chat(&"word ".repeat(3000));
    assert!(count_prompt_tokens(&big) > 3000);
    let (status, v) = error_of(&mock, "/v1/chat/completions", &big).await;
    assert_eq!(status, 400);
    assert_eq!(
        v["error"],
        json!({"message": "This model's maximum context length is 1000 tokens. However, your prompt contains at least 1001 input tokens, which exceeds this limit even without any output tokens. Please reduce the length of the input prompt. (parameter=input_tokens, value=1001)",
            "type": "BadRequestError", "param": "input_tokens", "code": 400})
    );

    // prompt + max_tokens over the window: clamped to the rest, finish `length`.
    let mut medium = chat(&format!("{} [[mock:text:2000]]", "word ".repeat(400)));
    let prompt = count_prompt_tokens(&medium);
    assert!(prompt < 1000);
    medium["max_tokens"] = json!(900);
    let v: Value = post(&mock, "/v1/chat/completions", &medium)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "length");
    assert_eq!(v["usage"]["completion_tokens"], 1000 - prompt);

    // max_tokens above the window alone.
    medium["max_tokens"] = json!(1001);
    let (status, v) = error_of(&mock, "/v1/chat/completions", &medium).await;
    assert_eq!(status, 400);
    assert_eq!(
        v["error"]["message"],
        "max_tokens=1001 cannot be greater than max_model_len=1000. Please request fewer output tokens. (parameter=max_tokens, value=1001)"
    );
    assert_eq!(v["error"]["param"], "max_tokens");
    medium.as_object_mut().unwrap().remove("max_tokens");
    medium["max_completion_tokens"] = json!(5000);
    let (_, v) = error_of(&mock, "/v1/chat/completions", &medium).await;
    assert_eq!(
        v["error"]["message"],
        "max_completion_tokens=5000 cannot be greater than max_model_len=1000. Please request fewer output tokens. (parameter=max_completion_tokens, value=5000)"
    );

    // /tokenize never enforces the window: the full count, 200.
    let r = post(&mock, "/tokenize", &big).await;
    assert_eq!(r.status(), 200);
    let t: Value = r.json().await.unwrap();
    assert_eq!(t["count"], count_prompt_tokens(&big));
    assert_eq!(t["max_model_len"], 1000);
    assert_eq!(
        t["tokens"].as_array().unwrap().len() as u32,
        count_prompt_tokens(&big)
    );
}

#[tokio::test]
async fn prompt_filling_the_window_leaves_no_budget() {
    // Find a prompt of exactly L tokens: `max_tokens` defaults to L - P = 0.
    let probe = chat("hi");
    let l = count_prompt_tokens(&probe);
    let mock = start(with_release(VllmRelease::V0_34, l)).await;
    let (status, v) = error_of(&mock, "/v1/chat/completions", &probe).await;
    assert_eq!(status, 400);
    assert_eq!(
        v["error"]["message"],
        "max_tokens must be at least 1, got 0. (parameter=max_tokens, value=0)"
    );
    assert_eq!(v["error"]["param"], "max_tokens");
}

#[tokio::test]
async fn context_window_0_30_reserves_max_tokens() {
    let mock = start(with_release(VllmRelease::V0_30, 1000)).await;
    let mut medium = chat(&"word ".repeat(400));
    assert!(count_prompt_tokens(&medium) + 900 > 1000);
    medium["max_tokens"] = json!(900);
    let (status, v) = error_of(&mock, "/v1/chat/completions", &medium).await;
    assert_eq!(status, 400);
    // N = L - M + 1, a lower bound: resending with max_tokens = L - N is one short.
    assert_eq!(
        v["error"],
        json!({"message": "This model's maximum context length is 1000 tokens. However, you requested 900 output tokens and your prompt contains at least 101 input tokens, for a total of at least 1001 tokens. Please reduce the length of the input prompt or the number of requested output tokens. (parameter=input_tokens, value=101)",
            "type": "BadRequestError", "param": "input_tokens", "code": 400})
    );
    // Without max_tokens the reservation is 0.
    let big = chat(&"word ".repeat(3000));
    let (_, v) = error_of(&mock, "/v1/chat/completions", &big).await;
    assert_eq!(
        v["error"]["message"],
        "This model's maximum context length is 1000 tokens. However, you requested 0 output tokens and your prompt contains at least 1001 input tokens, for a total of at least 1001 tokens. Please reduce the length of the input prompt or the number of requested output tokens. (parameter=input_tokens, value=1001)"
    );
    medium["max_tokens"] = json!(4096);
    let (_, v) = error_of(&mock, "/v1/chat/completions", &medium).await;
    assert_eq!(
        v["error"]["message"],
        "max_tokens=4096 cannot be greater than max_model_len=max_total_tokens=1000. Please request fewer output tokens. (parameter=max_tokens, value=4096)"
    );
    let v: Value = http()
        .get(format!("{}/version", mock.root_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!({"version": "0.30.0"}));
}

#[tokio::test]
async fn context_window_0_11_exact_counts() {
    let mock = start(with_release(VllmRelease::V0_11, 1000)).await;
    let big = chat(&"x ".repeat(4000));
    let prompt = count_prompt_tokens(&big);
    let (_, v) = error_of(&mock, "/v1/chat/completions", &big).await;
    assert_eq!(v["error"]["type"], "BadRequestError");
    assert_eq!(
        v["error"]["message"],
        format!("This model's maximum context length is 1000 tokens. However, your request has {prompt} input tokens. Please reduce the length of the input messages. None")
    );
    let mut medium = chat(&"y ".repeat(300));
    medium["max_tokens"] = json!(900);
    let prompt = count_prompt_tokens(&medium);
    let (_, v) = error_of(&mock, "/v1/chat/completions", &medium).await;
    assert_eq!(
        v["error"]["message"],
        format!("'max_tokens' or 'max_completion_tokens' is too large: 900. This model's maximum context length is 1000 tokens and your request has {prompt} input tokens (900 > 1000 - {prompt}). None")
    );
}

#[tokio::test]
async fn anthropic_context_overflow_shape() {
    let req = json!({"model": "qwen3-coder", "max_tokens": 100,
        "messages": [{"role": "user", "content": "word ".repeat(3000)}]});
    let mock = start(with_release(VllmRelease::V0_34, 500)).await;
    let (status, v) = error_of(&mock, "/v1/messages", &req).await;
    assert_eq!(status, 400);
    assert_eq!(
        v,
        json!({"type": "error", "error": {"type": "invalid_request_error",
            "message": "This model's maximum context length is 500 tokens. However, your prompt contains at least 501 input tokens, which exceeds this limit even without any output tokens. Please reduce the length of the input prompt. (parameter=input_tokens, value=501)"}})
    );
    // max_tokens travels as both fields, so the error names max_completion_tokens.
    let mut small = req.clone();
    small["messages"][0]["content"] = json!("hi");
    small["max_tokens"] = json!(128000);
    let (_, v) = error_of(&mock, "/v1/messages", &small).await;
    assert_eq!(
        v["error"]["message"],
        "max_completion_tokens=128000 cannot be greater than max_model_len=500. Please request fewer output tokens. (parameter=max_completion_tokens, value=128000)"
    );

    // 0.30: vLLM's type names, the reserving wording.
    let old = start(with_release(VllmRelease::V0_30, 500)).await;
    let (_, v) = error_of(&old, "/v1/messages", &req).await;
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "BadRequestError");
    assert_eq!(
        v["error"]["message"],
        "This model's maximum context length is 500 tokens. However, you requested 100 output tokens and your prompt contains at least 401 input tokens, for a total of at least 501 tokens. Please reduce the length of the input prompt or the number of requested output tokens. (parameter=input_tokens, value=401)"
    );
}

#[tokio::test]
async fn non_leading_system_rejected() {
    let body = json!({"model": "qwen3-coder", "messages": [
        {"role": "system", "content": "a"},
        {"role": "user", "content": "hi"},
        {"role": "system", "content": "b"}
    ]});
    let mock = start(MockConfig::default()).await;
    let (status, v) = error_of(&mock, "/v1/chat/completions", &body).await;
    assert_eq!(status, 400);
    assert_eq!(
        v["error"],
        json!({"message": "System message must be at the beginning.", "type": "BadRequestError", "param": null, "code": 400})
    );

    let old = start(with_release(VllmRelease::V0_11, 32768)).await;
    let (_, v) = error_of(&old, "/v1/chat/completions", &body).await;
    assert_eq!(
        v["error"]["message"],
        "System message must be at the beginning. System message must be at the beginning."
    );

    let relaxed = start(MockConfig {
        strict_system: false,
        ..MockConfig::default()
    })
    .await;
    assert_eq!(
        post(&relaxed, "/v1/chat/completions", &body).await.status(),
        200
    );
}

#[tokio::test]
async fn validation_and_routing_errors() {
    let mock = start(MockConfig::default()).await;
    let mut wrong_model = chat("hi");
    wrong_model["model"] = json!("gpt-4");
    let r = post(&mock, "/v1/chat/completions", &wrong_model).await;
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"],
        json!({"message": "The model `gpt-4` does not exist. Valid aliases: qwen3-coder.", "type": "NotFoundError", "param": "model", "code": 404})
    );

    let r = post(
        &mock,
        "/v1/chat/completions",
        &json!({"model": "qwen3-coder", "messages": "hi"}),
    )
    .await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "Bad Request");
    assert_eq!(v["error"]["param"], "body.messages");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("1 validation error:\n  {'type': 'list_type', 'loc': 'body.messages'"),
        "{message}"
    );

    let r = http()
        .post(format!("{}/chat/completions", mock.base_url()))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("json_invalid"));

    let mut tools_no_parser = chat("hi");
    tools_no_parser["tools"] = json!([bash_tool()]);
    let no_parser = start(MockConfig {
        tool_parser: false,
        ..MockConfig::default()
    })
    .await;
    let r = post(&no_parser, "/v1/chat/completions", &tools_no_parser).await;
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"]["message"],
        "\"auto\" tool choice requires --enable-auto-tool-choice and --tool-call-parser to be set"
    );

    let r = post(&mock, "/v1/chat/completions", &chat("[[mock:error:503]]")).await;
    assert_eq!(r.status(), 503);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"],
        json!({"message": "The engine is currently busy and cannot accept new requests. Please try again later or on a different instance.",
            "type": "Service Unavailable", "param": null, "code": 503})
    );

    let stats: Value = http()
        .get(format!("{}/mock/stats", mock.root_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requests"], 4);
    assert_eq!(stats["errors"], 4);
}

#[tokio::test]
async fn cancellation_is_counted() {
    let mock = start(MockConfig::default()).await;
    let mut body = chat("[[mock:text:2000]] [[mock:pace:10]]");
    body["stream"] = json!(true);
    let mut r = post(&mock, "/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    let first = r.chunk().await.unwrap().expect("first chunk");
    assert!(first.starts_with(b"data: "));
    drop(r);
    let mut cancelled = 0;
    for _ in 0..40 {
        cancelled = mock
            .stats
            .cancelled
            .load(std::sync::atomic::Ordering::SeqCst);
        if cancelled > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(cancelled, 1);
    assert_eq!(
        mock.stats
            .completed
            .load(std::sync::atomic::Ordering::SeqCst),
        0
    );
}

#[tokio::test]
async fn die_cuts_the_stream() {
    let mock = start(MockConfig::default()).await;
    let mut body = chat("[[mock:die:3]]");
    body["stream"] = json!(true);
    let r = post(&mock, "/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);
    let result = r.text().await;
    assert!(result.is_err(), "body must end with an error: {result:?}");
}

#[tokio::test]
async fn stop_sequences_and_length() {
    let mock = start(MockConfig::default()).await;
    let mut body = chat("[[mock:stop]]");
    body["stop"] = json!(["STOP"]);
    let v: Value = post(&mock, "/v1/chat/completions", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "alpha beta ");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(v["choices"][0]["stop_reason"], "STOP");

    let mut body = chat("[[mock:text:50]]");
    body["max_tokens"] = json!(5);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true, "continuous_usage_stats": true});
    let text = post(&mock, "/v1/chat/completions", &body)
        .await
        .text()
        .await
        .unwrap();
    let data = sse_data(&text);
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c["usage"].is_object()));
    let finishing: Vec<&Value> = chunks
        .iter()
        .filter(|c| {
            c["choices"]
                .get(0)
                .is_some_and(|ch| !ch["finish_reason"].is_null())
        })
        .collect();
    assert_eq!(finishing.len(), 1);
    assert_eq!(finishing[0]["choices"][0]["finish_reason"], "length");
    assert_eq!(finishing[0]["choices"][0]["delta"]["content"], " word4");
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 5);
}

#[tokio::test]
async fn reasoning_field_defaults_to_reasoning() {
    let mock = start(MockConfig::default()).await;
    let v: Value = post(&mock, "/v1/chat/completions", &chat("[[mock:reasoning]]"))
        .await
        .json()
        .await
        .unwrap();
    let msg = &v["choices"][0]["message"];
    assert_eq!(msg["reasoning"], "Let me think about this.");
    assert!(msg.get("reasoning_content").is_none());
    assert_eq!(msg["content"], "The answer is 42.");

    let old = start(MockConfig {
        reasoning_field: ReasoningField::ReasoningContent,
        ..MockConfig::default()
    })
    .await;
    let v: Value = post(&old, "/v1/chat/completions", &chat("[[mock:reasoning]]"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["choices"][0]["message"]["reasoning_content"],
        "Let me think about this."
    );
}

#[tokio::test]
async fn anthropic_stream_with_tool_use() {
    let mock = start(MockConfig::default()).await;
    let req = json!({
        "model": "qwen3-coder", "max_tokens": 1024, "stream": true,
        "system": "You are helpful.",
        "tools": [{"name": "Bash", "description": "Run", "input_schema": {"type": "object", "properties": {}}}],
        "messages": [{"role": "user", "content": [{"type": "text", "text": "go [[mock:tool]]"}]}]
    });
    let r = post(&mock, "/v1/messages", &req).await;
    assert_eq!(r.status(), 200);
    let events = sse_events(&r.text().await.unwrap());
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.first(), Some(&"message_start"));
    assert_eq!(&names[names.len() - 2..], ["message_delta", "message_stop"]);
    for (name, data) in &events {
        assert_eq!(data["type"], name.as_str());
    }
    let start_usage = &events[0].1["message"]["usage"];
    assert_eq!(
        start_usage["input_tokens"],
        count_prompt_tokens(&anthropic_to_chat(&req))
    );
    let tool_start = events
        .iter()
        .find(|(n, d)| n == "content_block_start" && d["content_block"]["type"] == "tool_use")
        .expect("tool_use block");
    assert_eq!(tool_start.1["content_block"]["name"], "Bash");
    let idx = tool_start.1["index"].clone();
    let json_args: String = events
        .iter()
        .filter(|(_, d)| d["index"] == idx && d["delta"]["type"] == "input_json_delta")
        .map(|(_, d)| d["delta"]["partial_json"].as_str().unwrap().to_string())
        .collect();
    let input: Value = serde_json::from_str(&json_args).unwrap();
    assert_eq!(input["command"], "ls -la");
    let delta = &events[events.len() - 2].1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");

    // Tool loop: a tool_result without a marker ends the loop with text.
    let follow = json!({
        "model": "qwen3-coder", "max_tokens": 1024,
        "messages": [
            {"role": "user", "content": "go [[mock:tool]]"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls -la"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": "file.txt"}]}
        ]
    });
    let v: Value = post(&mock, "/v1/messages", &follow)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["content"][0]["text"], "Tool result received: file.txt");
}

#[tokio::test]
async fn anthropic_inline_system_is_merged_and_billing_header_dropped() {
    let mock = start(MockConfig::default()).await;
    let req = json!({"model": "qwen3-coder", "max_tokens": 10,
        "system": [{"type": "text", "text": "x-anthropic-billing-header: cc_version=2.1.330.c4f;"},
                   {"type": "text", "text": "Be brief."}],
        "messages": [{"role": "user", "content": "hi [[mock:echo]]"},
                     {"role": "system", "content": "Late note."}]});
    let r = post(&mock, "/v1/messages", &req).await;
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["content"][0]["text"], "roles: system,user");
    let chat_body = anthropic_to_chat(&req);
    assert_eq!(chat_body["messages"][0]["content"], "Be brief.Late note.");
    assert_eq!(v["usage"]["input_tokens"], count_prompt_tokens(&chat_body));

    // 0.11: `role` is Literal["user", "assistant"], a validation 400.
    let old = start(with_release(VllmRelease::V0_11, 32768)).await;
    let (status, v) = error_of(&old, "/v1/messages", &req).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["type"], "Bad Request");
}

#[tokio::test]
async fn anthropic_validation_errors_are_openai_shaped() {
    let mock = start(MockConfig::default()).await;
    let base = json!({"model": "qwen3-coder", "max_tokens": 2000,
        "messages": [{"role": "user", "content": "hi"}]});
    let mut req = base.clone();
    req["max_tokens"] = json!(0);
    let (status, v) = error_of(&mock, "/v1/messages", &req).await;
    assert_eq!(status, 400);
    assert_eq!(
        v["error"],
        json!({"message": "1 validation error:\n  {'type': 'value_error', 'loc': 'body.max_tokens', 'msg': 'Value error, max_tokens must be positive', 'input': '0', 'ctx': {'error': ValueError('max_tokens must be positive')}}",
            "type": "Bad Request", "param": "body.max_tokens", "code": 400})
    );
    let mut req = base.clone();
    req.as_object_mut().unwrap().remove("max_tokens");
    let (_, v) = error_of(&mock, "/v1/messages", &req).await;
    assert_eq!(
        v["error"]["message"],
        "1 validation error:\n  {'type': 'missing', 'loc': 'body.max_tokens', 'msg': 'Field required', 'input': '<dict of 2 items>'}"
    );
    let mut req = base.clone();
    req["thinking"] = json!({"type": "enabled", "budget_tokens": 2000});
    let (status, v) = error_of(&mock, "/v1/messages", &req).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["param"], "body");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("'msg': 'Value error, thinking.budget_tokens must be less than max_tokens'"));
    req["thinking"]["budget_tokens"] = json!(1000);
    let (_, v) = error_of(&mock, "/v1/messages", &req).await;
    assert_eq!(v["error"]["param"], "body.thinking.enabled.budget_tokens");
    req["thinking"]["budget_tokens"] = json!(1024);
    assert_eq!(post(&mock, "/v1/messages", &req).await.status(), 200);
}

#[tokio::test]
async fn anthropic_stream_events_current_and_old() {
    let req = json!({"model": "qwen3-coder", "max_tokens": 100, "stream": true,
        "stop_sequences": ["STOP"],
        "messages": [{"role": "user", "content": "[[mock:stop]]"}]});
    let mock = start(MockConfig::default()).await;
    let events = sse_events(
        &post(&mock, "/v1/messages", &req)
            .await
            .text()
            .await
            .unwrap(),
    );
    assert!(events.iter().all(|(n, _)| n != "ping"));
    let start = &events[0].1["message"];
    assert_eq!(
        (&start["type"], &start["role"]),
        (&json!("message"), &json!("assistant"))
    );
    let (name, delta) = &events[events.len() - 2];
    assert_eq!(name, "message_delta");
    assert_eq!(
        delta["delta"],
        json!({"stop_reason": "stop_sequence", "stop_sequence": "STOP"})
    );

    let old = start_old().await;
    let events = sse_events(&post(&old, "/v1/messages", &req).await.text().await.unwrap());
    assert!(events[0].1["message"].get("type").is_none());
    assert!(events[0].1["message"].get("role").is_none());
    assert_eq!(
        events[events.len() - 2].1["delta"],
        json!({"stop_reason": "end_turn"})
    );
}

async fn start_old() -> MockVllm {
    start(MockConfig {
        vllm_release: VllmRelease::V0_11,
        reasoning_field: ReasoningField::ReasoningContent,
        ..MockConfig::default()
    })
    .await
}

#[tokio::test]
async fn count_tokens_route() {
    let mock = start(with_release(VllmRelease::V0_34, 500)).await;
    let req = json!({"model": "qwen3-coder", "system": "Be brief.",
        "tools": [{"name": "Bash", "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}],
        "messages": [{"role": "user", "content": "hello world"}]});
    let r = post(&mock, "/v1/messages/count_tokens", &req).await;
    assert_eq!(r.status(), 200);
    let n = count_prompt_tokens(&anthropic_to_chat(&req));
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({"input_tokens": n, "context_management": {"original_input_tokens": n}})
    );
    // Longer than the window: still the full count (like /tokenize).
    let mut long = req.clone();
    long["messages"][0]["content"] = json!("word ".repeat(3000));
    let v: Value = post(&mock, "/v1/messages/count_tokens", &long)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["input_tokens"],
        count_prompt_tokens(&anthropic_to_chat(&long))
    );
    let mut wrong = req.clone();
    wrong["model"] = json!("claude-x");
    let (status, v) = error_of(&mock, "/v1/messages/count_tokens", &wrong).await;
    assert_eq!(status, 404);
    assert_eq!(
        v,
        json!({"type": "error", "error": {"type": "not_found_error",
            "message": "The model `claude-x` does not exist. Valid aliases: qwen3-coder."}})
    );
    let stats: Value = http()
        .get(format!("{}/mock/stats", mock.root_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["count_tokens_calls"], 3);
    assert_eq!(stats["tokenize_calls"], 0);

    // 0.30 refuses the over-long prompt; 0.11 does not serve the route.
    let old = start(with_release(VllmRelease::V0_30, 500)).await;
    let (status, v) = error_of(&old, "/v1/messages/count_tokens", &long).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["type"], "BadRequestError");
    assert!(v["error"]["message"].as_str().unwrap().contains(
        "you requested 0 output tokens and your prompt contains at least 501 input tokens"
    ));
    let oldest = start_old().await;
    let (status, v) = error_of(&oldest, "/v1/messages/count_tokens", &req).await;
    assert_eq!((status, v), (404, json!({"detail": "Not Found"})));
}

#[tokio::test]
async fn tokenize_counts_tools_unless_configured_as_before_0_9() {
    let mut body = chat("hi");
    body["tools"] = json!([bash_tool()]);
    let mock = start(MockConfig::default()).await;
    let t: Value = post(&mock, "/tokenize", &body).await.json().await.unwrap();
    assert_eq!(t["count"], count_prompt_tokens(&body));
    assert!(count_prompt_tokens(&body) > count_prompt_tokens(&chat("hi")) + 50);
    let old = start(MockConfig {
        tokenize_tools: false,
        ..MockConfig::default()
    })
    .await;
    let t: Value = post(&old, "/tokenize", &body).await.json().await.unwrap();
    assert_eq!(t["count"], count_prompt_tokens_without_tools(&body));
    assert_eq!(t["count"], count_prompt_tokens(&chat("hi")));
    assert_eq!(
        old.stats
            .tokenize_calls
            .load(std::sync::atomic::Ordering::SeqCst),
        1
    );
}

#[tokio::test]
async fn stream_headers_then_proportional_prefill_then_role_chunk() {
    let mock = start(MockConfig {
        prefill_per_1k_tokens: Duration::from_millis(100),
        prefill_cap: Duration::from_millis(2000),
        ..MockConfig::default()
    })
    .await;
    let mut body = chat(&"word ".repeat(5000));
    body["stream"] = json!(true);
    let prompt = count_prompt_tokens(&body);
    let started = std::time::Instant::now();
    let mut r = post(&mock, "/v1/chat/completions", &body).await;
    let headers_after = started.elapsed();
    assert_eq!(r.status(), 200);
    let first = r.chunk().await.unwrap().expect("first chunk");
    let first_after = started.elapsed();
    let expected = Duration::from_millis(100) * prompt / 1000;
    assert!(
        headers_after < expected / 2,
        "{headers_after:?} vs {expected:?}"
    );
    assert!(first_after >= expected, "{first_after:?} vs {expected:?}");
    let text = String::from_utf8(first.to_vec()).unwrap();
    let chunk: Value = serde_json::from_str(
        text.split("\n\n")
            .next()
            .unwrap()
            .strip_prefix("data: ")
            .unwrap(),
    )
    .unwrap();
    assert_eq!(
        chunk["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    assert_eq!(chunk["prompt_token_ids"], Value::Null);
    assert!(chunk.as_object().unwrap().contains_key("prompt_token_ids"));
    assert!(chunk.as_object().unwrap().contains_key("prompt_text"));
}

#[tokio::test]
async fn injected_failures_once_and_next() {
    let mock = start(MockConfig::default()).await;
    let body = chat("[[mock:error_once:503]]");
    let r = post(&mock, "/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 503);
    let r = post(&mock, "/v1/chat/completions", &body).await;
    assert_eq!(r.status(), 200);

    let r = http()
        .post(format!(
            "{}/mock/fail_next?status=503&count=2",
            mock.root_url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let req = json!({"model": "qwen3-coder", "max_tokens": 10,
        "messages": [{"role": "user", "content": "hi"}]});
    let (status, v) = error_of(&mock, "/v1/messages", &req).await;
    assert_eq!(status, 503);
    assert_eq!(v["error"]["type"], "overloaded_error");
    assert_eq!(
        post(&mock, "/v1/chat/completions", &chat("hi"))
            .await
            .status(),
        503
    );
    assert_eq!(
        post(&mock, "/v1/chat/completions", &chat("hi"))
            .await
            .status(),
        200
    );
    let v: Value = http()
        .get(format!("{}/version", mock.root_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!({"version": "0.34.0"}));
}

#[tokio::test]
async fn binary_prints_listen_line() {
    use tokio::io::AsyncBufReadExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_mock-vllm"))
        .args(["--listen", "127.0.0.1:0", "--max-model-len", "4096"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn mock-vllm");
    let stdout = child.stdout.take().unwrap();
    let mut lines = tokio::io::BufReader::new(stdout).lines();
    let line = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .expect("listen line in time")
        .unwrap()
        .unwrap();
    let url = line
        .strip_prefix("mock-vllm listening on ")
        .expect("listen line");
    assert!(!url.ends_with(":0"));
    let v: Value = http()
        .get(format!("{url}/v1/models"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"][0]["max_model_len"], 4096);
    child.kill().await.unwrap();
}

// ---------------------------------------------------------------------------
// `/v1/responses` (vLLM 0.34's `vllm/entrypoints/openai/responses/`).

fn responses_req(input: Value) -> Value {
    json!({"model": "qwen3-coder", "input": input})
}

fn responses_bash_tool() -> Value {
    json!({"type": "function", "name": "Bash", "description": "Run a command",
        "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}})
}

/// Event types of a Responses SSE body, checking that each frame's `event:`
/// line matches its `type` and that `sequence_number`s count from 0.
fn responses_events(text: &str) -> Vec<(String, Value)> {
    let events = sse_events(text);
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], name.as_str(), "event line matches type");
        assert_eq!(data["sequence_number"], i, "sequence_number of {name}");
    }
    assert!(!text.contains("[DONE]"), "no [DONE] on /v1/responses");
    events
}

#[tokio::test]
async fn responses_text_whole() {
    let mock = start(MockConfig::default()).await;
    let body = json!({"model": "qwen3-coder", "instructions": "Be brief.",
        "input": "hi [[mock:text:5]]"});
    let r = post(&mock, "/v1/responses", &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/json");
    let raw = r.text().await.unwrap();
    let v: Value = serde_json::from_str(&raw).unwrap();
    let id = v["id"].as_str().unwrap();
    assert!(id.starts_with("resp_") && id.len() == 37, "{id}");
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["model"], "qwen3-coder");
    assert_eq!(v["instructions"], "Be brief.");
    assert_eq!(v["incomplete_details"], Value::Null);
    assert_eq!(
        v["tool_choice"], "none",
        "check_tool_usage: no tools -> none"
    );
    assert_eq!(v["tools"], json!([]));
    assert_eq!(v["temperature"], 1.0);
    assert_eq!(v["truncation"], "disabled");
    assert_eq!(v["background"], false);
    assert!(v.get("metrics").is_none(), "metrics excluded while None");
    // Field order of `ResponsesResponse`.
    assert!(raw.starts_with(r#"{"id":"resp_"#), "{raw}");
    assert!(raw.find(r#""created_at""#) < raw.find(r#""output""#));
    let output = v["output"].as_array().unwrap();
    assert_eq!(output.len(), 1);
    let msg = &output[0];
    assert!(msg["id"].as_str().unwrap().starts_with("msg_"));
    assert_eq!(msg["type"], "message");
    assert_eq!(msg["role"], "assistant");
    assert_eq!(msg["status"], "completed");
    assert_eq!(
        msg["content"],
        json!([{"annotations": [], "text": "word0 word1 word2 word3 word4",
            "type": "output_text", "logprobs": null}])
    );
    // Usage: the prompt counted as the equivalent chat request (instructions
    // as the system message), one token per scripted piece.
    let chat_equiv = json!({"model": "qwen3-coder", "messages": [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "hi [[mock:text:5]]"}]});
    let prompt = count_prompt_tokens(&chat_equiv);
    let tokenized: Value = post(&mock, "/tokenize", &chat_equiv)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(tokenized["count"], prompt);
    assert_eq!(
        v["usage"],
        json!({"input_tokens": prompt,
            "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0,
                "input_tokens_per_turn": [], "cached_tokens_per_turn": []},
            "output_tokens": 5,
            "output_tokens_details": {"reasoning_tokens": 0, "tool_output_tokens": 0,
                "output_tokens_per_turn": [], "tool_output_tokens_per_turn": []},
            "total_tokens": prompt + 5})
    );
    // The budget reported is `min(max_output_tokens, max_model_len - prompt)`.
    assert_eq!(v["max_output_tokens"], 32768 - prompt);
    assert_eq!(mock.stats.requests_to("/v1/responses"), 1);
    assert_eq!(mock.stats.bodies.lock().unwrap()[0], body);
}

#[tokio::test]
async fn responses_text_streamed() {
    let mock = start(MockConfig::default()).await;
    let mut body = responses_req(json!([
        {"role": "user", "content": [{"type": "input_text", "text": "[[mock:text:3]]"}]}]));
    body["stream"] = json!(true);
    body["max_output_tokens"] = json!(100);
    let r = post(&mock, "/v1/responses", &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    let text = r.text().await.unwrap();
    assert!(
        text.starts_with("event: response.created\ndata: {"),
        "{text}"
    );
    let events = responses_events(&text);
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    let created = &events[0].1["response"];
    assert_eq!(created["status"], "in_progress");
    assert_eq!(created["output"], json!([]));
    assert_eq!(created["usage"], Value::Null);
    assert_eq!(created["max_output_tokens"], 100);
    let added = &events[2].1;
    let item_id = added["item"]["id"].as_str().unwrap();
    assert_eq!(
        added["item"],
        json!({"id": item_id, "content": [], "role": "assistant", "status": "in_progress",
            "type": "message", "phase": null})
    );
    assert_eq!(
        events[3].1["part"],
        json!({"annotations": [], "text": "", "type": "output_text", "logprobs": []})
    );
    let deltas: Vec<&str> = events[4..7]
        .iter()
        .map(|(_, d)| d["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, ["word0", " word1", " word2"]);
    assert_eq!(events[4].1["item_id"], item_id);
    assert_eq!(events[4].1["logprobs"], json!([]));
    assert_eq!(events[7].1["text"], "word0 word1 word2");
    let part = json!({"annotations": [], "text": "word0 word1 word2", "type": "output_text",
        "logprobs": null});
    assert_eq!(events[8].1["part"], part);
    assert_eq!(events[9].1["item"]["status"], "completed");
    assert_eq!(events[9].1["item"]["content"], json!([part.clone()]));
    let done = &events[10].1["response"];
    assert_eq!(done["id"], created["id"]);
    assert_eq!(done["status"], "completed");
    assert_eq!(done["output"], json!([events[9].1["item"].clone()]));
    assert_eq!(done["usage"]["output_tokens"], 3);
    let prompt = count_prompt_tokens(&json!({"messages": [
        {"role": "user", "content": [{"type": "text", "text": "[[mock:text:3]]"}]}]}));
    assert_eq!(done["usage"]["input_tokens"], prompt);
}

#[tokio::test]
async fn responses_budget_exhausted_is_incomplete() {
    let mock = start(MockConfig::default()).await;
    let mut body = responses_req(json!("[[mock:text:10]]"));
    body["max_output_tokens"] = json!(4);
    let v: Value = post(&mock, "/v1/responses", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "incomplete");
    assert_eq!(
        v["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(v["output"][0]["status"], "incomplete");
    assert_eq!(v["usage"]["output_tokens"], 4);
    body["stream"] = json!(true);
    let text = post(&mock, "/v1/responses", &body)
        .await
        .text()
        .await
        .unwrap();
    let events = responses_events(&text);
    let (last, data) = events.last().unwrap();
    assert_eq!(last, "response.incomplete");
    assert_eq!(data["response"]["status"], "incomplete");
    let item_done = &events[events.len() - 2].1;
    assert_eq!(item_done["item"]["status"], "incomplete");
}

#[tokio::test]
async fn responses_function_call() {
    let mock = start(MockConfig::default()).await;
    let mut body = responses_req(json!("[[mock:tool]] list files"));
    body["tools"] = json!([responses_bash_tool()]);
    let v: Value = post(&mock, "/v1/responses", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["tool_choice"], "auto");
    assert_eq!(
        v["tools"],
        json!([{"name": "Bash", "parameters": responses_bash_tool()["parameters"],
            "strict": null, "type": "function", "defer_loading": null,
            "description": "Run a command"}])
    );
    let output = v["output"].as_array().unwrap();
    assert_eq!(output.len(), 2, "{v}");
    assert_eq!(output[0]["type"], "message");
    assert_eq!(output[0]["content"][0]["text"], "I'll run that.");
    assert_eq!(output[0]["status"], "completed");
    let call = &output[1];
    assert_eq!(call["type"], "function_call");
    assert!(call["id"].as_str().unwrap().starts_with("fc_"));
    assert!(call["call_id"]
        .as_str()
        .unwrap()
        .starts_with("chatcmpl-tool-"));
    assert_eq!(call["name"], "Bash");
    assert_eq!(call["status"], "completed");
    let args: Value = serde_json::from_str(call["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args["command"], "ls -la");
    // The prompt includes the tool rendered in chat form.
    let chat_equiv = json!({"messages": [{"role": "user", "content": "[[mock:tool]] list files"}],
        "tools": [{"type": "function", "function": {"name": "Bash",
            "description": "Run a command", "parameters": responses_bash_tool()["parameters"]}}]});
    assert_eq!(v["usage"]["input_tokens"], count_prompt_tokens(&chat_equiv));

    // Streamed: 0.34 streams the arguments on the non-Harmony path.
    body["stream"] = json!(true);
    let text = post(&mock, "/v1/responses", &body)
        .await
        .text()
        .await
        .unwrap();
    let events = responses_events(&text);
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    let first_call = kinds
        .iter()
        .position(|k| *k == "response.function_call_arguments.delta")
        .unwrap();
    assert_eq!(kinds[first_call - 1], "response.output_item.added");
    assert_eq!(
        &kinds[first_call - 4..first_call - 1],
        [
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done"
        ]
    );
    let added = &events[first_call - 1].1;
    assert_eq!(added["output_index"], 1);
    assert_eq!(added["item"]["type"], "function_call");
    assert_eq!(added["item"]["arguments"], "");
    assert_eq!(added["item"]["status"], "in_progress");
    let n = kinds.len();
    assert_eq!(
        &kinds[n - 3..],
        [
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let streamed: String = events
        .iter()
        .filter(|(k, _)| k == "response.function_call_arguments.delta")
        .map(|(_, d)| d["delta"].as_str().unwrap())
        .collect();
    let args_done = &events[n - 3].1;
    assert_eq!(args_done["arguments"], streamed);
    assert_eq!(args_done["name"], "Bash");
    assert_eq!(events[n - 2].1["item"]["arguments"], streamed);
    assert_eq!(events[n - 2].1["item"]["call_id"], added["item"]["call_id"]);
    assert_eq!(
        events[n - 1].1["response"]["output"][1],
        events[n - 2].1["item"]
    );
}

#[tokio::test]
async fn responses_reasoning_and_tool_loop_input() {
    let mock = start(MockConfig::default()).await;
    let body = responses_req(json!("[[mock:reasoning]]"));
    let v: Value = post(&mock, "/v1/responses", &body)
        .await
        .json()
        .await
        .unwrap();
    let rs = &v["output"][0];
    assert_eq!(rs["type"], "reasoning");
    assert!(rs["id"].as_str().unwrap().starts_with("rs_"));
    assert_eq!(rs["summary"], json!([]));
    assert_eq!(
        rs["content"],
        json!([{"text": "Let me think about this.", "type": "reasoning_text"}])
    );
    assert_eq!(rs["status"], Value::Null);
    assert_eq!(v["output"][1]["content"][0]["text"], "The answer is 42.");
    assert_eq!(v["usage"]["output_tokens_details"]["reasoning_tokens"], 5);

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let text = post(&mock, "/v1/responses", &streamed)
        .await
        .text()
        .await
        .unwrap();
    let events = responses_events(&text);
    let kinds: Vec<&str> = events.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        &kinds[2..5],
        [
            "response.output_item.added",
            "response.content_part.added",
            "response.reasoning_text.delta"
        ]
    );
    assert_eq!(
        events[3].1["part"],
        json!({"text": "", "type": "reasoning_text"})
    );
    let done = kinds
        .iter()
        .position(|k| *k == "response.reasoning_text.done")
        .unwrap();
    assert_eq!(events[done].1["text"], "Let me think about this.");
    assert_eq!(kinds[done + 1], "response.content_part.done");
    assert_eq!(kinds[done + 2], "response.output_item.done");
    assert_eq!(events[done + 2].1["item"]["status"], "completed");
    assert_eq!(kinds[done + 3], "response.output_item.added");
    assert_eq!(events[done + 3].1["output_index"], 1);

    // A tool loop sent back as items: the last turn is the tool output.
    let body = responses_req(json!([
        {"role": "user", "content": "[[mock:tool]]"},
        {"type": "function_call", "call_id": "call_1", "name": "Bash",
            "arguments": "{\"command\": \"ls\"}"},
        {"type": "function_call_output", "call_id": "call_1", "output": "README.md"}]));
    let mut body = body;
    body["tools"] = json!([responses_bash_tool()]);
    let v: Value = post(&mock, "/v1/responses", &body)
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["output"][0]["content"][0]["text"],
        "Tool result received: README.md"
    );
}

#[tokio::test]
async fn responses_store_is_off() {
    let mock = start(MockConfig::default()).await;
    let mut body = responses_req(json!("hi"));
    body["previous_response_id"] = json!("resp_abc");
    let (status, err) = error_of(&mock, "/v1/responses", &body).await;
    assert_eq!(status, 404);
    assert_eq!(
        err,
        json!({"error": {"message": "Response with id 'resp_abc' not found.",
            "type": "invalid_request_error", "param": "response_id", "code": 404}})
    );
    // `store: true` is the default and silently ignored...
    let first: Value = post(&mock, "/v1/responses", &responses_req(json!("hi")))
        .await
        .json()
        .await
        .unwrap();
    // ...so even a response just returned cannot be retrieved or chained.
    let id = first["id"].as_str().unwrap();
    let r = http()
        .get(format!("{}/v1/responses/{id}", mock.root_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"]["message"],
        format!("Response with id '{id}' not found.")
    );
    body["previous_response_id"] = json!(id);
    assert_eq!(error_of(&mock, "/v1/responses", &body).await.0, 404);
    // `background` needs the store.
    let mut bg = responses_req(json!("hi"));
    bg["background"] = json!(true);
    let (status, err) = error_of(&mock, "/v1/responses", &bg).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["type"], "invalid_request_error");
    assert_eq!(err["error"]["param"], "background");
    assert!(err["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("This vLLM engine does not support `store=True`"));
    bg["store"] = json!(false);
    let (status, err) = error_of(&mock, "/v1/responses", &bg).await;
    assert_eq!(status, 400);
    assert_eq!(
        err["error"]["message"],
        "background can only be used when `store` is true (parameter=background)"
    );
}

#[tokio::test]
async fn responses_errors() {
    let mock = start(MockConfig {
        max_model_len: 64,
        ..MockConfig::default()
    })
    .await;
    let mut body = responses_req(json!("hi"));
    body["model"] = json!("gpt-4");
    let (status, err) = error_of(&mock, "/v1/responses", &body).await;
    assert_eq!(status, 404);
    assert_eq!(
        err,
        json!({"error": {"message": "The model `gpt-4` does not exist. Valid aliases: qwen3-coder.",
            "type": "NotFoundError", "param": "model", "code": 404}})
    );
    let (status, err) = error_of(&mock, "/v1/responses", &json!({"model": "qwen3-coder"})).await;
    assert_eq!(status, 400);
    assert_eq!(err["error"]["type"], "Bad Request");
    assert_eq!(err["error"]["param"], "body.input");
    let mut body = responses_req(json!("hi"));
    body["tool_choice"] = json!("required");
    let (_, err) = error_of(&mock, "/v1/responses", &body).await;
    assert_eq!(
        err["error"]["message"],
        "Tool choice 'required' must be specified with 'tools' parameter. (parameter=tool_choice)"
    );
    let mut body = responses_req(json!("hi"));
    body["max_output_tokens"] = json!(100);
    let (_, err) = error_of(&mock, "/v1/responses", &body).await;
    assert_eq!(
        err["error"]["message"],
        "max_output_tokens=100 cannot be greater than max_model_len=64. Please request fewer output tokens. (parameter=max_output_tokens, value=100)"
    );
    let (status, err) = error_of(
        &mock,
        "/v1/responses",
        &responses_req(json!("word ".repeat(200))),
    )
    .await;
    assert_eq!(status, 400);
    assert_eq!(
        err["error"]["message"],
        "This model's maximum context length is 64 tokens. However, your prompt contains at least 65 input tokens, which exceeds this limit even without any output tokens. Please reduce the length of the input prompt. (parameter=input_tokens, value=65)"
    );
    // Injected failures and crashes work as on the other routes.
    let (status, err) = error_of(
        &mock,
        "/v1/responses",
        &responses_req(json!("[[mock:error:503]]")),
    )
    .await;
    assert_eq!(status, 503);
    assert_eq!(err["error"]["type"], "Service Unavailable");
    let mut die = responses_req(json!("[[mock:die:2]]"));
    die["stream"] = json!(true);
    let r = post(&mock, "/v1/responses", &die).await;
    assert_eq!(r.status(), 200);
    let cut = r.text().await;
    assert!(cut.is_err(), "the stream is cut");
    assert_eq!(
        mock.stats.aborted.load(std::sync::atomic::Ordering::SeqCst),
        1
    );
    assert_eq!(mock.stats.requests_to("/v1/responses"), 7);
}
