//! The `claude` workload's request: a real Claude Code CLI request (the `text1` fixture,
//! ~50 KB with 12 tools) with a mock marker in its last user turn, for either protocol.
//!
//! The fixture is compiled in, so the binary does not depend on the directory it runs from.

use anyhow::{bail, Context};
use bytes::Bytes;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::{json, Map, Value};

use super::load::Proto;

/// Where the request comes from (relative to the repository root).
pub const FIXTURE_PATH: &str = "fixtures/claude-code/text1/01_messages_stream.json";
const FIXTURE: &str = include_str!("../../../fixtures/claude-code/text1/01_messages_stream.json");

/// The recorded headers sent along with the body (the ones `bench/profile/drive.py` copies,
/// bar `authorization`, which holds a placeholder: each path gets its own key).
const COPIED_HEADERS: &[&str] = &[
    "user-agent",
    "x-claude-code-session-id",
    "anthropic-beta",
    "x-app",
    "x-stainless-arch",
    "x-stainless-lang",
    "x-stainless-os",
    "x-stainless-package-version",
    "x-stainless-retry-count",
    "x-stainless-runtime",
    "x-stainless-runtime-version",
    "x-stainless-timeout",
    "accept",
];

const SESSION_HEADER: &str = "x-claude-code-session-id";

/// The recorded request with its marker, ready to be specialised per path and per worker.
#[derive(Debug, Clone)]
pub struct ClaudeCode {
    /// The Messages body: the marker in the last user turn ([`add_marker`]), `stream: true`.
    body: Value,
    /// Lower-case names, recorded values.
    headers: Vec<(String, String)>,
}

impl ClaudeCode {
    /// The fixture with `[[mock:text:TOKENS]]` in its last user turn ([`add_marker`]).
    pub fn load(tokens: u32) -> anyhow::Result<Self> {
        Self::from_record(FIXTURE, &format!("[[mock:text:{tokens}]]"))
    }

    fn from_record(record: &str, marker: &str) -> anyhow::Result<Self> {
        let rec: Value = serde_json::from_str(record).context("parsing the Claude Code fixture")?;
        let mut body = rec
            .get("body")
            .filter(|b| b.is_object())
            .cloned()
            .context("the fixture has no `body` object")?;
        add_marker(&mut body, marker)?;
        body["stream"] = json!(true);
        let headers = rec
            .get("headers")
            .and_then(Value::as_object)
            .context("the fixture has no `headers` object")?
            .iter()
            .filter_map(|(k, v)| {
                let k = k.to_ascii_lowercase();
                let v = v.as_str()?.to_string();
                COPIED_HEADERS.contains(&k.as_str()).then_some((k, v))
            })
            .collect();
        Ok(ClaudeCode { body, headers })
    }

    /// The body and headers one worker sends to a path speaking `proto`, with the model
    /// name `model` and its own Claude Code session id (`session`), set both in the
    /// `x-claude-code-session-id` header and in `metadata.user_id`, as the CLI does.
    pub fn request(
        &self,
        proto: Proto,
        model: &str,
        session: &str,
    ) -> anyhow::Result<(Bytes, HeaderMap)> {
        let mut body = self.body.clone();
        body["model"] = json!(model);
        set_metadata_session(&mut body, session);
        let mut headers = HeaderMap::new();
        let v = match proto {
            Proto::Anthropic => {
                for (k, v) in &self.headers {
                    let v = if k == SESSION_HEADER { session } else { v };
                    headers.insert(
                        HeaderName::from_bytes(k.as_bytes())?,
                        HeaderValue::from_str(v)?,
                    );
                }
                body
            }
            // The mock is spoken to as an OpenAI client would: no Claude Code headers.
            Proto::OpenAi => to_openai(&body)?,
        };
        Ok((Bytes::from(serde_json::to_vec(&v)?), headers))
    }
}

/// Appends `marker` to the last user message: a text block if its content is an array, else
/// to the string.
///
/// Claude Code's last message is often a `role: "system"` entry, not a user turn. Switchyard
/// merges it into the user turn before it, but LiteLLM sends it on as a user message of its
/// own, the last one, where the mock looks for markers; so each system entry after the last
/// user message gets the marker as well. The mock acts on the first `text` marker it finds,
/// so a turn holding two runs the same script.
pub fn add_marker(body: &mut Value, marker: &str) -> anyhow::Result<()> {
    let msgs = body
        .get_mut("messages")
        .and_then(Value::as_array_mut)
        .context("the fixture has no messages")?;
    let last_user = msgs
        .iter()
        .rposition(|m| m["role"] == "user")
        .context("the fixture has no user message")?;
    for m in &mut msgs[last_user..] {
        if m["role"] == "user" || m["role"] == "system" {
            append_text(&mut m["content"], marker)?;
        }
    }
    Ok(())
}

fn append_text(content: &mut Value, text: &str) -> anyhow::Result<()> {
    match content {
        Value::String(s) => {
            s.push(' ');
            s.push_str(text);
        }
        Value::Array(blocks) => blocks.push(json!({"type": "text", "text": text})),
        other => bail!("unexpected message content {other}"),
    }
    Ok(())
}

/// Rewrites the `session_id` inside the JSON string `metadata.user_id`, if there is one.
fn set_metadata_session(body: &mut Value, session: &str) {
    let Some(uid) = body.pointer_mut("/metadata/user_id") else {
        return;
    };
    let Some(mut inner) = uid
        .as_str()
        .and_then(|s| serde_json::from_str::<Value>(s).ok())
    else {
        return;
    };
    if inner.get("session_id").is_some() {
        inner["session_id"] = json!(session);
        *uid = json!(inner.to_string());
    }
}

/// The text of a content value: the string, or its blocks' text joined by blank lines
/// (`text` blocks; a `tool_result`'s content; a `tool_use` as its name and JSON input).
fn flatten(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(blocks) => blocks
            .iter()
            .map(|b| match b["type"].as_str() {
                Some("tool_result") => flatten(&b["content"]),
                Some("tool_use") => format!("{} {}", b["name"].as_str().unwrap_or(""), b["input"]),
                _ => b["text"].as_str().unwrap_or_default().to_string(),
            })
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("\n\n"),
        _ => String::new(),
    }
}

/// The OpenAI Chat Completions equivalent of a Messages body, for the `direct` path: a simple,
/// faithful conversion, the same text and tools as the model would see them through a proxy.
///
/// - `system` (string or text blocks, joined by blank lines) becomes the leading system
///   message;
/// - every user and assistant message is flattened to one text string ([`flatten`]);
/// - a `role: "system"` entry inside `messages` (Claude Code sends them mid-conversation) is
///   appended to the preceding user turn as `<system-reminder>` text (to the next one if none
///   precedes it), as Switchyard does by default: the chat template (and the mock's, with its
///   default `strict_system`) refuses a system message that is not the first;
/// - each custom tool becomes `{"type": "function", "function": {name, description,
///   parameters}}` with its `input_schema` as `parameters` (no description: none sent, never
///   `null`); server tools and Anthropic-only fields (`defer_loading`, `cache_control`) are
///   left out;
/// - `model`, `max_tokens` and `stream: true` carry over, with `stream_options:
///   {include_usage: true}`; `metadata.user_id` becomes `user`, as the proxies send it;
///   `thinking`, `context_management`, `output_config` (Anthropic-only) are dropped.
pub fn to_openai(body: &Value) -> anyhow::Result<Value> {
    let mut messages: Vec<Value> = Vec::new();
    let system = flatten(&body["system"]);
    if !system.is_empty() {
        messages.push(json!({"role": "system", "content": system}));
    }
    let mut pending: Vec<String> = Vec::new();
    for m in body["messages"].as_array().context("no messages")? {
        let text = flatten(&m["content"]);
        match m["role"].as_str() {
            Some("system") => {
                let reminder = format!("<system-reminder>\n{text}\n</system-reminder>");
                match messages.last_mut() {
                    Some(prev) if prev["role"] == "user" => {
                        let joined =
                            format!("{}\n\n{reminder}", prev["content"].as_str().unwrap_or(""));
                        prev["content"] = json!(joined);
                    }
                    _ => pending.push(reminder),
                }
            }
            Some(role @ ("user" | "assistant")) => {
                let mut text = text;
                if role == "user" && !pending.is_empty() {
                    pending.push(text);
                    text = std::mem::take(&mut pending).join("\n\n");
                }
                messages.push(json!({"role": role, "content": text}));
            }
            other => bail!("unexpected message role {other:?}"),
        }
    }
    if !pending.is_empty() {
        messages.push(json!({"role": "user", "content": pending.join("\n\n")}));
    }
    let mut tools = Vec::new();
    for t in body["tools"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        if t["type"].as_str().is_some_and(|k| k != "custom") {
            continue;
        }
        let mut f = Map::new();
        f.insert("name".into(), t["name"].clone());
        if let Some(d) = t["description"].as_str() {
            f.insert("description".into(), json!(d));
        }
        f.insert("parameters".into(), t["input_schema"].clone());
        tools.push(json!({"type": "function", "function": f}));
    }
    let mut v = json!({
        "model": body["model"],
        "messages": messages,
        "max_tokens": body["max_tokens"],
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if !tools.is_empty() {
        v["tools"] = json!(tools);
    }
    if let Some(user) = body.pointer("/metadata/user_id").filter(|u| u.is_string()) {
        v["user"] = user.clone();
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MARKER: &str = "[[mock:text:1024]]";

    fn body_of(b: &Bytes) -> Value {
        serde_json::from_slice(b).unwrap()
    }

    /// Every object key anywhere in `v`.
    fn keys(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    out.push(k.clone());
                    keys(x, out);
                }
            }
            Value::Array(a) => a.iter().for_each(|x| keys(x, out)),
            _ => {}
        }
    }

    #[test]
    fn marker_lands_in_the_last_user_turn() {
        let cc = ClaudeCode::load(1024).unwrap();
        let (bytes, headers) = cc.request(Proto::Anthropic, "m", "s-1").unwrap();
        let b = body_of(&bytes);
        assert_eq!(b["stream"], true);
        assert_eq!(b["model"], "m");
        let msgs = b["messages"].as_array().unwrap();
        // The fixture ends with a system entry after its only user message: both end with
        // the marker, nothing else has one.
        let roles: Vec<&str> = msgs.iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["user", "system"]);
        for m in msgs {
            let blocks = m["content"].as_array().unwrap();
            assert_eq!(
                blocks.last().unwrap(),
                &json!({"type": "text", "text": MARKER})
            );
        }
        assert_eq!(
            String::from_utf8_lossy(&bytes).matches("[[mock:").count(),
            2
        );
        assert_eq!(b["tools"].as_array().unwrap().len(), 12);
        // The worker's own session, in the header and in metadata.user_id.
        assert_eq!(headers[SESSION_HEADER], "s-1");
        let uid: Value = serde_json::from_str(b["metadata"]["user_id"].as_str().unwrap()).unwrap();
        assert_eq!(uid["session_id"], "s-1");
        assert!(headers["user-agent"]
            .to_str()
            .unwrap()
            .starts_with("claude-cli/"));
        assert!(headers.contains_key("anthropic-beta"));
        assert!(headers.contains_key("x-stainless-timeout"));
        assert!(!headers.contains_key("authorization"));
        assert!(!headers.contains_key("content-length"));
    }

    #[test]
    fn marker_goes_to_the_last_user_message_and_system_entries_after_it() {
        let mut b = json!({"messages": [
            {"role": "user", "content": "first"},
            {"role": "system", "content": "early"},
            {"role": "assistant", "content": "ok"},
            {"role": "user", "content": "second"},
            {"role": "system", "content": "late"}]});
        add_marker(&mut b, MARKER).unwrap();
        let content: Vec<&str> = b["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["content"].as_str().unwrap())
            .collect();
        let (second, late) = (format!("second {MARKER}"), format!("late {MARKER}"));
        assert_eq!(content, ["first", "early", "ok", &second, &late]);
    }

    #[test]
    fn direct_body_is_plain_openai() {
        let cc = ClaudeCode::load(1024).unwrap();
        let (bytes, headers) = cc.request(Proto::OpenAi, "qwen3-coder", "s-2").unwrap();
        assert!(headers.is_empty());
        let v = body_of(&bytes);
        let mut top: Vec<&str> = v.as_object().unwrap().keys().map(String::as_str).collect();
        top.sort_unstable();
        assert_eq!(
            top,
            [
                "max_tokens",
                "messages",
                "model",
                "stream",
                "stream_options",
                "tools",
                "user"
            ]
        );
        let mut all = Vec::new();
        keys(&v, &mut all);
        for anthropic_only in [
            "cache_control",
            "defer_loading",
            "input_schema",
            "thinking",
            "context_management",
            "output_config",
            "metadata",
        ] {
            assert!(
                !all.iter().any(|k| k == anthropic_only),
                "{anthropic_only} left in"
            );
        }
        assert_eq!(v["max_tokens"], 128000);
        assert_eq!(v["stream"], true);
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert!(v["user"]
            .as_str()
            .unwrap()
            .contains("\"session_id\":\"s-2\""));
        // One leading system message, then plain text turns; the template refuses any other
        // system message.
        let msgs = v["messages"].as_array().unwrap();
        assert_eq!(msgs[0]["role"], "system");
        assert!(msgs[1..].iter().all(|m| m["role"] != "system"));
        assert!(msgs.iter().all(|m| m["content"].is_string()));
        let last_user = msgs.iter().rev().find(|m| m["role"] == "user").unwrap();
        let text = last_user["content"].as_str().unwrap();
        assert!(text.contains(MARKER));
        // The mid-conversation system entry is kept, as a reminder in the user turn.
        assert!(text.contains("<system-reminder>\n# Environment"));
        let tools = v["tools"].as_array().unwrap();
        assert_eq!(tools.len(), 12);
        for t in tools {
            assert_eq!(t["type"], "function");
            assert!(t["function"]["name"].is_string());
            assert!(t["function"]["description"].is_string());
            assert!(t["function"]["parameters"].is_object());
        }
    }

    /// The direct body goes through the mock's vLLM-strict validation and streams all its
    /// tokens, with no field ignored.
    #[tokio::test]
    async fn mock_vllm_accepts_the_direct_body() {
        use super::super::load::{stream_once_with, Target};
        use std::sync::atomic::AtomicU64;
        use switchyard_e2e::mock_vllm::{MockConfig, MockVllm};

        let cfg = MockConfig {
            max_model_len: 1_000_000,
            ..Default::default()
        };
        let mock = MockVllm::start(cfg, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let t = Target::new(
            "direct",
            &mock.root_url(),
            Proto::OpenAi,
            "qwen3-coder",
            "k",
            None,
        )
        .unwrap();
        let (body, headers) = ClaudeCode::load(1024)
            .unwrap()
            .request(Proto::OpenAi, "qwen3-coder", "s-3")
            .unwrap();
        let tokens = AtomicU64::new(0);
        let out = stream_once_with(&t, body, &headers, &tokens, None)
            .await
            .unwrap();
        assert_eq!(out.tokens, 1024);
        let stats = mock.stats.snapshot_json(0);
        assert_eq!(stats["errors"], 0);
        assert_eq!(stats["ignored_fields"], json!([]));
        mock.shutdown().await;
    }
}
