//! Anthropic server tools (`web_search_*`, `web_fetch_*`, …) in front of a self-hosted model
//! (pure).
//!
//! Anthropic runs these tools itself; a vLLM backend cannot. Claude Code's WebSearch and
//! WebFetch tools send a separate request whose only tool is the server tool: the gateway
//! answers it directly with Anthropic's own "tool unavailable" shapes (a `server_tool_use`
//! block, its result block carrying `error_code: "unavailable"`, and a sentence saying why), so
//! the CLI reports a clean tool error instead of a failed request. Alongside custom tools, the
//! server tools are only removed (`fixes::remove_server_tools`).

use crate::protocol::anthropic::{Content, MessagesRequest, Role, StopReason, Tool, Usage};
use crate::translate::stream::write_sse;
use serde::Serialize;
use serde_json::{json, Value};

/// Versioned `type` prefixes of Anthropic's server tools (those Anthropic executes).
const SERVER_TOOL_TYPES: [&str; 4] = [
    "web_search_",
    "web_fetch_",
    "code_execution_",
    "tool_search_tool_",
];

/// What the answer says in its text block.
pub const UNAVAILABLE_TEXT: &str = "Web search is not available through this self-hosted gateway: the model behind it cannot run Anthropic's server tools (web_search, web_fetch).";

/// Whether Anthropic, not the client, would execute this tool.
pub fn is_server_tool(tool: &Tool) -> bool {
    tool.kind
        .as_deref()
        .is_some_and(|k| SERVER_TOOL_TYPES.iter().any(|p| k.starts_with(p)))
}

/// The server tools the gateway answers for, and the wire names of their blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Family {
    WebSearch,
    WebFetch,
}

impl Family {
    fn of(tool: &Tool) -> Option<Self> {
        match tool.kind.as_deref()? {
            k if k.starts_with("web_search_") => Some(Family::WebSearch),
            k if k.starts_with("web_fetch_") => Some(Family::WebFetch),
            _ => None,
        }
    }

    /// The result block's `type` and its error object's `type`.
    fn result_types(self) -> (&'static str, &'static str) {
        match self {
            Family::WebSearch => ("web_search_tool_result", "web_search_tool_result_error"),
            Family::WebFetch => ("web_fetch_tool_result", "web_fetch_tool_result_error"),
        }
    }
}

/// The whole answer to a server-tool-only request: three content blocks, `end_turn`.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerToolAnswer {
    pub id: String,
    pub model: String,
    /// The content blocks, each a complete Anthropic block.
    pub blocks: Vec<Value>,
    pub usage: Usage,
}

/// `Some` when the request carries tools, all of them server tools, and the first web
/// search/fetch one can be answered here (no custom tool for the model to use instead).
/// `message_id` and `tool_use_id` come from the caller so this stays pure.
pub fn answer(
    req: &MessagesRequest,
    input_tokens: u64,
    message_id: String,
    tool_use_id: String,
) -> Option<ServerToolAnswer> {
    let tools = req.tools.as_deref().filter(|t| !t.is_empty())?;
    if !tools.iter().all(is_server_tool) {
        return None;
    }
    let (tool, family) = tools.iter().find_map(|t| Some((t, Family::of(t)?)))?;
    let asked = last_user_text(req);
    let input = match family {
        Family::WebSearch => json!({"query": search_query(&asked)}),
        Family::WebFetch => json!({"url": first_url(&asked)}),
    };
    let (result_type, error_type) = family.result_types();
    let blocks = vec![
        json!({"type": "server_tool_use", "id": tool_use_id, "name": tool.name, "input": input}),
        json!({"type": result_type, "tool_use_id": tool_use_id,
               "content": {"type": error_type, "error_code": "unavailable"}}),
        json!({"type": "text", "text": UNAVAILABLE_TEXT}),
    ];
    Some(ServerToolAnswer {
        id: message_id,
        model: req.model.clone(),
        blocks,
        usage: Usage {
            input_tokens,
            output_tokens: UNAVAILABLE_TEXT.len().div_ceil(4) as u64,
            ..Usage::default()
        },
    })
}

/// Text of the last user turn (Claude Code puts the search request there).
fn last_user_text(req: &MessagesRequest) -> String {
    req.messages
        .iter()
        .rev()
        .find(|m| m.role == Role::User)
        .map(|m| match &m.content {
            Content::Text(t) => t.clone(),
            c => c.all_text(),
        })
        .unwrap_or_default()
}

/// Claude Code's WebSearch asks "Perform a web search for the query: Q"; anything else is
/// taken as the query itself.
fn search_query(text: &str) -> String {
    const MARKER: &str = "for the query:";
    let q = match text.find(MARKER) {
        Some(i) => &text[i + MARKER.len()..],
        None => text,
    };
    q.trim().to_owned()
}

fn first_url(text: &str) -> String {
    text.split_whitespace()
        .find(|w| w.starts_with("http://") || w.starts_with("https://"))
        .map(|w| w.trim_end_matches(['.', ',', ')', '"', '\'']).to_owned())
        .unwrap_or_default()
}

#[derive(Serialize)]
struct Message<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: &'a [Value],
    stop_reason: Option<StopReason>,
    stop_sequence: Option<String>,
    usage: Usage,
}

impl ServerToolAnswer {
    fn message<'a>(&'a self, content: &'a [Value], stop: Option<StopReason>) -> Message<'a> {
        Message {
            id: &self.id,
            kind: "message",
            role: "assistant",
            model: &self.model,
            content,
            stop_reason: stop,
            stop_sequence: None,
            usage: self.usage,
        }
    }

    /// The non-streaming body.
    pub fn to_json(&self) -> Value {
        json!(self.message(&self.blocks, Some(StopReason::EndTurn)))
    }

    /// The streamed body, event for event as Anthropic streams server tool use: the tool
    /// input as one `input_json_delta`, the result block whole in its `content_block_start`,
    /// text as one `text_delta`.
    pub fn to_sse(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut start = self.message(&[], None);
        start.usage.output_tokens = 1; // as Anthropic reports it in message_start
        event(&mut out, "message_start", json!({"message": start}));
        for (index, block) in self.blocks.iter().enumerate() {
            let (opened, delta) = split_block(block);
            event(
                &mut out,
                "content_block_start",
                json!({"index": index, "content_block": opened}),
            );
            if let Some(delta) = delta {
                event(
                    &mut out,
                    "content_block_delta",
                    json!({"index": index, "delta": delta}),
                );
            }
            event(&mut out, "content_block_stop", json!({"index": index}));
        }
        event(
            &mut out,
            "message_delta",
            json!({"delta": {"stop_reason": StopReason::EndTurn, "stop_sequence": null},
                   "usage": self.usage}),
        );
        event(&mut out, "message_stop", json!({}));
        out
    }
}

/// A block as its `content_block_start` carries it, and the one delta that completes it.
fn split_block(block: &Value) -> (Value, Option<Value>) {
    let mut opened = block.clone();
    match block["type"].as_str() {
        Some("server_tool_use") => {
            opened["input"] = json!({});
            let partial = block["input"].to_string();
            (
                opened,
                Some(json!({"type": "input_json_delta", "partial_json": partial})),
            )
        }
        Some("text") => {
            opened["text"] = json!("");
            let text = block["text"].clone();
            (opened, Some(json!({"type": "text_delta", "text": text})))
        }
        _ => (opened, None),
    }
}

/// One SSE event; `data` gets its `type` set to the event name, as Anthropic's do.
fn event(out: &mut Vec<u8>, name: &str, mut data: Value) {
    if let Value::Object(obj) = &mut data {
        obj.insert("type".into(), json!(name));
    }
    write_sse(out, name, |out| {
        serde_json::to_writer(out, &data).expect("serializing to a Vec cannot fail")
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn req(v: Value) -> MessagesRequest {
        serde_json::from_value(v).unwrap()
    }

    fn search_request() -> MessagesRequest {
        req(json!({"model": "claude-opus-5-5", "max_tokens": 100,
            "tools": [{"type": "web_search_20250305", "name": "web_search", "max_uses": 8}],
            "messages": [{"role": "user", "content": "Perform a web search for the query: rust axum 0.8 release"}]}))
    }

    fn answered(r: &MessagesRequest) -> Option<ServerToolAnswer> {
        answer(r, 42, "msg_1".into(), "srvtoolu_1".into())
    }

    #[test]
    fn only_server_tools_are_answered_with_anthropics_unavailable_shapes() {
        let a = answered(&search_request()).unwrap();
        assert_eq!(
            a.to_json(),
            json!({"id": "msg_1", "type": "message", "role": "assistant",
                "model": "claude-opus-5-5", "stop_reason": "end_turn", "stop_sequence": null,
                "usage": {"input_tokens": 42, "output_tokens": 36,
                          "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
                "content": [
                    {"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search",
                     "input": {"query": "rust axum 0.8 release"}},
                    {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_1",
                     "content": {"type": "web_search_tool_result_error", "error_code": "unavailable"}},
                    {"type": "text", "text": UNAVAILABLE_TEXT}]})
        );
    }

    #[test]
    fn web_fetch_gets_its_own_result_type_and_the_url() {
        let r = req(json!({"model": "m", "max_tokens": 1,
            "tools": [{"type": "web_fetch_20250910", "name": "web_fetch"}],
            "messages": [{"role": "user", "content": [{"type": "text", "text": "Fetch https://example.com/a."}]}]}));
        let a = answered(&r).unwrap();
        assert_eq!(
            a.blocks[0]["input"],
            json!({"url": "https://example.com/a"})
        );
        assert_eq!(a.blocks[1]["type"], "web_fetch_tool_result");
        assert_eq!(
            a.blocks[1]["content"]["type"],
            "web_fetch_tool_result_error"
        );
    }

    #[test]
    fn custom_tools_or_no_tools_go_to_the_model() {
        let with_custom = req(json!({"model": "m", "max_tokens": 1,
            "tools": [{"type": "web_search_20250305", "name": "web_search"},
                      {"name": "Bash", "input_schema": {"type": "object"}}],
            "messages": [{"role": "user", "content": "hi"}]}));
        assert!(answered(&with_custom).is_none());
        let none = req(json!({"model": "m", "max_tokens": 1,
            "messages": [{"role": "user", "content": "hi"}]}));
        assert!(answered(&none).is_none());
        // A server tool the gateway has no answer shape for is not answered either.
        let code = req(json!({"model": "m", "max_tokens": 1,
            "tools": [{"type": "code_execution_20250825", "name": "code_execution"}],
            "messages": [{"role": "user", "content": "hi"}]}));
        assert!(answered(&code).is_none());
    }

    #[test]
    fn query_is_empty_without_a_user_turn_text() {
        let mut r = search_request();
        r.messages[0].content = Content::Blocks(Vec::new());
        assert_eq!(
            answered(&r).unwrap().blocks[0]["input"],
            json!({"query": ""})
        );
    }

    #[test]
    fn stream_has_anthropics_exact_event_sequence() {
        let a = answered(&search_request()).unwrap();
        let text = String::from_utf8(a.to_sse()).unwrap();
        let events: Vec<(String, Value)> = text
            .split("\n\n")
            .filter(|b| !b.is_empty())
            .map(|b| {
                let (name, data) = b.split_once('\n').unwrap();
                let name = name.strip_prefix("event: ").unwrap().to_owned();
                let data = serde_json::from_str(data.strip_prefix("data: ").unwrap()).unwrap();
                (name, data)
            })
            .collect();
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
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
        for (name, data) in &events {
            assert_eq!(data["type"], name.as_str());
        }
        assert_eq!(events[0].1["message"]["content"], json!([]));
        assert_eq!(events[0].1["message"]["usage"]["output_tokens"], 1);
        assert_eq!(
            events[1].1["content_block"],
            json!({"type": "server_tool_use", "id": "srvtoolu_1", "name": "web_search", "input": {}})
        );
        assert_eq!(
            events[2].1["delta"],
            json!({"type": "input_json_delta", "partial_json": "{\"query\":\"rust axum 0.8 release\"}"})
        );
        assert_eq!(events[4].1["index"], 1);
        assert_eq!(
            events[4].1["content_block"]["content"]["error_code"],
            "unavailable"
        );
        assert_eq!(
            events[6].1["content_block"],
            json!({"type": "text", "text": ""})
        );
        assert_eq!(events[7].1["delta"]["text"], UNAVAILABLE_TEXT);
        assert_eq!(events[9].1["delta"]["stop_reason"], "end_turn");
        assert_eq!(events[9].1["usage"]["output_tokens"], 36);
        assert_eq!(events[10].1, json!({"type": "message_stop"}));
    }
}
