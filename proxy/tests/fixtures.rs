//! Golden tests over every request the real Claude Code CLI sent (`fixtures/claude-code`).
//!
//! Each fixture goes through the Claude Code fixes and the OpenAI translation; a compact
//! summary of the result is compared with `tests/golden/<scenario>__<file>.json`
//! (`UPDATE_GOLDEN=1 cargo test` rewrites them for review in the diff), and invariants that
//! vLLM's strictness depends on are checked on the full output.

use serde_json::{json, Value};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use switchyard_api::{ParameterPolicy, SystemMessagePlacement, ThinkingStyle};
use switchyard_proxy::fixes::context::{estimate_prompt_tokens, fit_estimated};
use switchyard_proxy::protocol::anthropic::MessagesRequest;
use switchyard_proxy::translate::request::{to_openai, BackendShape};

const WINDOW: u32 = 32_768;

fn fixtures_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("SWITCHYARD_FIXTURES") {
        return PathBuf::from(dir).join("claude-code");
    }
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fixtures/claude-code")
}

fn message_fixtures() -> Vec<(String, Value)> {
    let dir = fixtures_dir();
    let index: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.join("INDEX.json")).unwrap_or_else(|e| {
            panic!(
                "fixtures not found at {} ({e}); set SWITCHYARD_FIXTURES",
                dir.display()
            )
        }),
    )
    .unwrap();
    let mut out = Vec::new();
    for entry in index.as_array().unwrap() {
        if entry["method"] != "POST" || !entry["path"].as_str().unwrap().starts_with("/v1/messages")
        {
            continue;
        }
        let file = entry["file"].as_str().unwrap();
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join(file)).unwrap()).unwrap();
        out.push((file.replace('/', "__").replace(".json", ""), v));
    }
    assert!(
        out.len() >= 20,
        "expected the full fixture set, found {}",
        out.len()
    );
    out
}

fn translate(body: &Value) -> (Value, u64) {
    let mut req: MessagesRequest =
        serde_json::from_value(body.clone()).expect("fixture parses as a Messages request");
    switchyard_proxy::fixes::apply(&mut req, SystemMessagePlacement::Inline);
    let estimate = estimate_prompt_tokens(&req);
    let max = fit_estimated(req.max_tokens, WINDOW, estimate)
        .max_tokens
        .expect("an estimated fit always sets max_tokens");
    let policy = ParameterPolicy::default();
    let shape = BackendShape {
        served_model: "qwen3-coder",
        thinking: ThinkingStyle::Auto,
        parameters: &policy,
    };
    let t = to_openai(req, max, &shape).expect("fixture translates");
    (serde_json::to_value(&t.request).unwrap(), estimate)
}

fn summary(chat: &Value, estimate: u64) -> Value {
    let messages = chat["messages"].as_array().unwrap();
    let msgs: Vec<Value> = messages
        .iter()
        .map(|m| {
            let content = match &m["content"] {
                Value::String(s) => json!({"chars": s.chars().count(), "head": s.chars().take(60).collect::<String>()}),
                Value::Null => Value::Null,
                other => json!({"parts": other.as_array().map(|a| a.len())}),
            };
            let mut s = json!({"role": m["role"], "content": content});
            if let Some(calls) = m.get("tool_calls") {
                s["tool_calls"] = json!(calls.as_array().unwrap().iter().map(|c| &c["function"]["name"]).collect::<Vec<_>>());
            }
            if let Some(id) = m.get("tool_call_id") {
                s["tool_call_id"] = id.clone();
            }
            s
        })
        .collect();
    let mut params: Vec<&String> = chat.as_object().unwrap().keys().collect();
    params.sort();
    json!({
        "model": chat["model"],
        "max_tokens": chat["max_tokens"],
        "estimated_prompt_tokens": estimate,
        "stream": chat["stream"],
        "stream_options": chat["stream_options"],
        "chat_template_kwargs": chat["chat_template_kwargs"],
        "user": chat["user"],
        "fields": params,
        "tools": chat["tools"].as_array().map(|t| t.iter().map(|t| &t["function"]["name"]).collect::<Vec<_>>()),
        "messages": msgs,
    })
}

#[test]
fn every_fixture_matches_its_golden_summary() {
    let golden_dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let update = std::env::var("UPDATE_GOLDEN").as_deref() == Ok("1");
    let mut mismatches = Vec::new();
    for (name, fixture) in message_fixtures() {
        let (chat, estimate) = translate(&fixture["body"]);
        let got = serde_json::to_string_pretty(&summary(&chat, estimate)).unwrap() + "\n";
        let path = golden_dir.join(format!("{name}.json"));
        if update {
            std::fs::write(&path, &got).unwrap();
            continue;
        }
        match std::fs::read_to_string(&path) {
            Ok(want) if want == got => {}
            Ok(_) => mismatches.push(format!("{name}: differs from {}", path.display())),
            Err(_) => mismatches.push(format!("{name}: no golden file {}", path.display())),
        }
    }
    assert!(
        mismatches.is_empty(),
        "run with UPDATE_GOLDEN=1 and review the diff:\n{}",
        mismatches.join("\n")
    );
}

#[test]
fn every_fixture_satisfies_vllm_strictness() {
    for (name, fixture) in message_fixtures() {
        let (chat, _) = translate(&fixture["body"]);
        let text = chat.to_string();
        let messages = chat["messages"].as_array().unwrap();
        // One leading system message at most: strict chat templates raise otherwise.
        for (i, m) in messages.iter().enumerate() {
            assert!(
                i == 0 || m["role"] != "system",
                "{name}: system message at {i}"
            );
        }
        assert!(
            !text.contains("x-anthropic-billing-header"),
            "{name}: billing header left in"
        );
        assert!(
            !text.contains("cache_control"),
            "{name}: cache_control leaked"
        );
        assert!(
            !text.contains("context_management"),
            "{name}: context_management leaked"
        );
        assert!(
            !text.contains("\"defer_loading\""),
            "{name}: defer_loading leaked"
        );
        assert!(
            !text.contains("tool_reference"),
            "{name}: tool_reference block leaked"
        );
        assert!(
            chat["max_tokens"].as_u64().unwrap() < WINDOW as u64,
            "{name}: max_tokens not clamped"
        );
        for t in chat["tools"].as_array().into_iter().flatten() {
            let f = &t["function"];
            assert!(
                f["description"].is_string(),
                "{name}: tool {} description",
                f["name"]
            );
            assert_eq!(
                f["parameters"]["type"], "object",
                "{name}: tool {} schema",
                f["name"]
            );
            assert!(
                f["name"] != "DeferredToolPlaceholder",
                "{name}: unreferenced deferred tool sent"
            );
        }
        // Every tool result answers a call made in the assistant turn just before it.
        let mut open_calls: HashSet<String> = HashSet::new();
        for m in messages {
            match m["role"].as_str().unwrap() {
                "assistant" => {
                    open_calls = m["tool_calls"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|c| c["id"].as_str().unwrap().to_owned())
                        .collect();
                    for c in m["tool_calls"].as_array().into_iter().flatten() {
                        let args: Value =
                            serde_json::from_str(c["function"]["arguments"].as_str().unwrap())
                                .unwrap();
                        assert!(
                            args.is_object(),
                            "{name}: tool arguments must be a JSON object string"
                        );
                    }
                }
                "tool" => assert!(
                    open_calls.contains(m["tool_call_id"].as_str().unwrap()),
                    "{name}: tool result without a matching call"
                ),
                _ => open_calls.clear(),
            }
        }
    }
}

#[test]
fn tool_search_fixture_loads_the_referenced_tool() {
    let fixtures = message_fixtures();
    let (_, fixture) = fixtures
        .iter()
        .find(|(n, _)| n == "toolsearch__02_messages_stream")
        .unwrap();
    let (chat, _) = translate(&fixture["body"]);
    let names: Vec<&str> = chat["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"WebFetch"),
        "referenced deferred tool must be sent: {names:?}"
    );
    let tool_msg = chat["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap();
    assert_eq!(
        tool_msg["content"],
        "Tool `WebFetch` is now loaded and available to call."
    );
}

#[test]
fn denied_tool_result_is_marked_as_error() {
    let fixtures = message_fixtures();
    let (_, fixture) = fixtures
        .iter()
        .find(|(n, _)| n == "tooldeny__02_messages_stream")
        .unwrap();
    let (chat, _) = translate(&fixture["body"]);
    let tool_msg = chat["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .unwrap();
    assert!(
        tool_msg["content"].as_str().unwrap().starts_with("Error: "),
        "{}",
        tool_msg["content"]
    );
}
