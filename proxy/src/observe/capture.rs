//! Content capture for the request view: what the client sent, what went upstream after
//! translation and fixes, and the answer (a stream reassembled into one message).
//!
//! Off by default; on for every request with `server.logContent`, or for one key's requests
//! with that key's `logContent`. Every part is redacted (secret-looking string values) and
//! shortened to at most [`PART_BYTES`] while staying valid JSON: long strings are cut first
//! (a Claude Code request is mostly a long system prompt and tool descriptions, and the turn
//! that matters sits at the end), so the whole structure stays visible.

use crate::protocol::sse;
use regex::Regex;
use serde::Serialize;
use serde_json::{json, Map, Value};
use std::sync::LazyLock;

/// Largest size of one captured part, in bytes of JSON text.
pub const PART_BYTES: usize = 64 * 1024;
/// String lengths (in characters) tried in turn until a part fits [`PART_BYTES`].
const STRING_CUTS: [usize; 4] = [4_000, 1_000, 200, 40];

/// A request's content, as the request page shows it. Each part is JSON text.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Captured {
    /// The client's request body, in the protocol it spoke.
    pub request: Option<String>,
    /// The body sent to the backend (the last attempt's): translated to Chat Completions for
    /// an OpenAI backend, the fixed Messages request for an Anthropic one.
    pub upstream: Option<String>,
    /// The answer in Anthropic Messages form; a stream reassembled from its events.
    pub response: Option<String>,
}

impl Captured {
    /// A capture that starts with the client's body (not JSON: kept as text, shortened).
    pub fn of_request(body: &[u8]) -> Self {
        let request = match serde_json::from_slice::<Value>(body) {
            Ok(v) => shown(&v),
            Err(_) => {
                let text = String::from_utf8_lossy(body);
                shown(&Value::String(text.into_owned()))
            }
        };
        Self {
            request: Some(request),
            ..Self::default()
        }
    }
}

static SECRET: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"(?i)(sk-[a-z0-9_\-]{8,}|bearer\s+[a-z0-9_\-\.=]{8,}|(api[_-]?key|token|password|secret)(["']?\s*[:=]\s*["']?)[^\s"',}]{4,})"#)
        .expect("valid regex")
});

/// Object keys whose string value is a credential however it looks.
static SECRET_KEY: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"(?i)^(.*[_-])?(api[_-]?key|access[_-]?token|token|password|secret|authorization)$")
        .expect("valid regex")
});

/// Text with secret-looking values (`sk-…`, `Bearer …`, `api_key=…`) replaced.
pub fn redact(text: &str) -> String {
    SECRET
        .replace_all(text, |c: &regex::Captures| match c.get(2) {
            Some(name) => format!("{}{}[REDACTED]", name.as_str(), &c[3]),
            None => "[REDACTED]".to_owned(),
        })
        .into_owned()
}

/// A JSON value as the request page shows it: redacted, at most [`PART_BYTES`] of JSON.
pub fn shown(value: &Value) -> String {
    let mut text = String::new();
    for cut in STRING_CUTS {
        text = shorten(value, cut).to_string();
        if text.len() <= PART_BYTES {
            return text;
        }
    }
    // Still too large (a huge number of short values): the text itself is cut, no longer JSON.
    let head = prefix(&text, PART_BYTES);
    format!("{head}… [{} more bytes]", text.len() - head.len())
}

/// Any serializable body as [`shown`]; `None` if it does not serialize.
pub fn shown_of<T: Serialize>(body: &T) -> Option<String> {
    serde_json::to_value(body).ok().map(|v| shown(&v))
}

/// The longest start of `text` of at most `max` bytes that ends on a character boundary.
pub fn prefix(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// A copy with strings redacted and cut to `cut` characters.
fn shorten(value: &Value, cut: usize) -> Value {
    match value {
        Value::String(s) => Value::String(cut_string(&redact(s), cut)),
        Value::Array(items) => Value::Array(items.iter().map(|v| shorten(v, cut)).collect()),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = match v {
                        Value::String(_) if SECRET_KEY.is_match(k) => json!("[REDACTED]"),
                        v => shorten(v, cut),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn cut_string(s: &str, cut: usize) -> String {
    match s.char_indices().nth(cut) {
        None => s.to_owned(),
        Some((at, _)) => {
            let rest = s[at..].chars().count();
            format!("{}… [{rest} more characters]", &s[..at])
        }
    }
}

/// Rebuilds one Anthropic message from the Messages stream the client was sent (whatever
/// the backend spoke: the proxy's own stream is always Anthropic SSE before a front door
/// re-frames it).
pub struct Assembler {
    decoder: sse::Decoder,
    message: Value,
    /// `input_json_delta` fragments of the tool call being streamed, by block index.
    partial_json: Vec<(usize, String)>,
}

impl Default for Assembler {
    fn default() -> Self {
        Self {
            decoder: sse::Decoder::new(16 * 1024 * 1024),
            message: json!({"content": []}),
            partial_json: Vec::new(),
        }
    }
}

impl Assembler {
    /// Takes the bytes of SSE the client was sent.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.decoder.feed(bytes);
        while let Some(Ok(ev)) = self.decoder.next_event() {
            let Ok(data) = serde_json::from_str::<Value>(ev.data) else {
                continue;
            };
            let name = ev.event.to_owned();
            apply(&mut self.message, &mut self.partial_json, &name, data);
        }
    }

    /// The message as far as it went.
    pub fn finish(mut self) -> Value {
        for (index, text) in std::mem::take(&mut self.partial_json) {
            set_input(&mut self.message, index, &text);
        }
        self.message
    }
}

fn apply(msg: &mut Value, partial: &mut Vec<(usize, String)>, event: &str, data: Value) {
    let index = data["index"].as_u64().unwrap_or(0) as usize;
    match event {
        "message_start" => {
            let mut started = data["message"].clone();
            if !started.is_object() {
                return;
            }
            if !started["content"].is_array() {
                started["content"] = json!([]);
            }
            *msg = started;
        }
        "content_block_start" => {
            if let Some(blocks) = msg["content"].as_array_mut() {
                blocks.push(data["content_block"].clone());
            }
        }
        "content_block_delta" => {
            let delta = &data["delta"];
            let append = |field: &str| delta[field].as_str().map(|s| (field.to_owned(), s));
            if let Some(json) = delta["partial_json"].as_str() {
                match partial.iter_mut().find(|(i, _)| *i == index) {
                    Some((_, text)) => text.push_str(json),
                    None => partial.push((index, json.to_owned())),
                }
            } else if let Some((field, s)) = append("text")
                .or_else(|| append("thinking"))
                .or_else(|| append("signature"))
            {
                // A delta for a block that never started is not shown (and never panics).
                if let Some(block) = msg["content"].get_mut(index).filter(|b| b.is_object()) {
                    let so_far = block[&field].as_str().unwrap_or_default().to_owned();
                    block[&field] = Value::String(so_far + s);
                }
            }
        }
        "content_block_stop" => {
            if let Some(at) = partial.iter().position(|(i, _)| *i == index) {
                let (_, text) = partial.remove(at);
                set_input(msg, index, &text);
            }
        }
        "message_delta" => {
            if let (Some(m), Some(delta)) = (msg.as_object_mut(), data["delta"].as_object()) {
                merge(m, delta);
            }
            if let Some(delta) = data["usage"].as_object() {
                if !msg["usage"].is_object() {
                    msg["usage"] = json!({});
                }
                if let Some(usage) = msg["usage"].as_object_mut() {
                    merge(usage, delta);
                }
            }
        }
        "error" => msg["error"] = data["error"].clone(),
        _ => {}
    }
}

fn merge(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (k, v) in from {
        into.insert(k.clone(), v.clone());
    }
}

/// A tool call's streamed arguments as its `input`: the parsed object, or the text when it
/// did not parse (a cut stream).
fn set_input(msg: &mut Value, index: usize, text: &str) {
    if let Some(block) = msg["content"].get_mut(index).filter(|b| b.is_object()) {
        block["input"] = serde_json::from_str(text).unwrap_or_else(|_| json!(text));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stream_becomes_the_message_it_carried() {
        let sse = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"m\",\"content\":[],\"stop_reason\":null,\"usage\":{\"input_tokens\":12,\"output_tokens\":0}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"thinking\",\"thinking\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"Let me \"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"thinking_delta\",\"thinking\":\"look.\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
            "event: ping\ndata: {\"type\":\"ping\"}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hel\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"text_delta\",\"text\":\"lo\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":1}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":2,\"content_block\":{\"type\":\"tool_use\",\"id\":\"toolu_1\",\"name\":\"Bash\",\"input\":{}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"command\\\": \"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":2,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"\\\"ls\\\"}\"}}\n\n",
            "event: content_block_stop\ndata: {\"type\":\"content_block_stop\",\"index\":2}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":9}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        let mut a = Assembler::default();
        // Split mid-event, as a network would.
        for piece in sse.as_bytes().chunks(37) {
            a.feed(piece);
        }
        let msg = a.finish();
        assert_eq!(
            msg["content"],
            json!([
                {"type": "thinking", "thinking": "Let me look."},
                {"type": "text", "text": "Hello"},
                {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
            ])
        );
        assert_eq!(msg["stop_reason"], "tool_use");
        assert_eq!(
            msg["usage"],
            json!({"input_tokens": 12, "output_tokens": 9})
        );
        assert_eq!(msg["id"], "msg_1");
    }

    #[test]
    fn a_cut_stream_keeps_what_came_and_its_error() {
        let mut a = Assembler::default();
        a.feed(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m\",\"content\":[],\"usage\":{}}}\n\n");
        a.feed(b"event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"tool_use\",\"id\":\"t\",\"name\":\"Read\",\"input\":{}}}\n\n");
        a.feed(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"file_pa\"}}\n\n");
        // A delta for a block that never started is left out, not a panic.
        a.feed(b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":7,\"delta\":{\"type\":\"text_delta\",\"text\":\"x\"}}\n\n");
        a.feed(b"event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":\"backend gone\"}}\n\n");
        let msg = a.finish();
        assert_eq!(msg["content"][0]["input"], "{\"file_pa");
        assert_eq!(msg["error"]["message"], "backend gone");
    }

    #[test]
    fn shown_redacts_and_cuts_long_strings_but_stays_json() {
        let long = "x".repeat(300_000);
        let v = json!({
            "system": long,
            "api_key": "plainsecretvalue",
            "messages": [{"role": "user", "content": "run with sk-ant-api03-abcdefghijkl please"}],
            "max_tokens": 32000,
        });
        let text = shown(&v);
        assert!(text.len() <= PART_BYTES, "{}", text.len());
        let back: Value = serde_json::from_str(&text).expect("still JSON");
        assert_eq!(back["api_key"], "[REDACTED]");
        assert_eq!(back["max_tokens"], 32000);
        assert_eq!(back["messages"][0]["content"], "run with [REDACTED] please");
        let system = back["system"].as_str().unwrap();
        assert!(system.starts_with(&"x".repeat(4_000)), "{}", &system[..50]);
        assert!(
            system.ends_with("… [296000 more characters]"),
            "{system:.80}"
        );
    }

    #[test]
    fn many_long_strings_are_cut_shorter_until_the_part_fits() {
        let v = Value::Array((0..50).map(|_| json!("y".repeat(2_000))).collect());
        let back: Value = serde_json::from_str(&shown(&v)).unwrap();
        // 50 × 2,000 characters is over 64 KiB; cut at 1,000 they fit.
        let first = back[0].as_str().unwrap();
        assert!(
            first.starts_with(&"y".repeat(1_000)) && first.ends_with("… [1000 more characters]")
        );
    }

    #[test]
    fn a_body_that_is_not_json_is_kept_as_text() {
        let c = Captured::of_request(b"not json { token=abcdefgh");
        assert_eq!(
            c.request.as_deref(),
            Some("\"not json { token=[REDACTED]\"")
        );
    }
}
