//! Test fixtures both doors share: Anthropic SSE event sequences as the proxy's Messages
//! path produces them, feeding them to a door's stream writer, the proxy's own OpenAI →
//! Anthropic stream translation in front of a door, and the backend request a Messages
//! request becomes.

use super::FrontStream;
use crate::protocol::anthropic::MessagesRequest;
use crate::translate::request::{to_openai, BackendShape, Translated};
use crate::translate::stream::StreamTranslator;
use serde_json::{json, Value};
use switchyard_api::{ParameterPolicy, ThinkingStyle};

/// One Anthropic event: its `event:` name and its `data:` JSON.
pub(super) type Event = (&'static str, Value);

/// Anthropic usage figures (no cache writes).
fn usage(input: u64, output: u64, cache_read: u64) -> Value {
    json!({"input_tokens": input, "output_tokens": output,
        "cache_creation_input_tokens": 0, "cache_read_input_tokens": cache_read})
}

/// `message_start` of message `msg_1` with `input` prompt tokens and `cache_read` cache reads.
pub(super) fn message_start(input: u64, cache_read: u64) -> Event {
    let message = json!({"id": "msg_1", "type": "message", "role": "assistant",
        "model": "served", "content": [], "stop_reason": null, "stop_sequence": null,
        "usage": usage(input, 1, cache_read)});
    (
        "message_start",
        json!({"type": "message_start", "message": message}),
    )
}

pub(super) fn ping() -> Event {
    ("ping", json!({"type": "ping"}))
}

pub(super) fn block_stop(index: usize) -> Event {
    (
        "content_block_stop",
        json!({"type": "content_block_stop", "index": index}),
    )
}

/// A content block: its start (`content_block`), a delta event each of `deltas`, its stop.
pub(super) fn block(index: usize, content_block: Value, deltas: Vec<Value>) -> Vec<Event> {
    let start = json!({"type": "content_block_start", "index": index,
        "content_block": content_block});
    let mut events = vec![("content_block_start", start)];
    events.extend(deltas.into_iter().map(|delta| {
        let data = json!({"type": "content_block_delta", "index": index, "delta": delta});
        ("content_block_delta", data)
    }));
    events.push(block_stop(index));
    events
}

/// A thinking block streamed as `pieces`.
pub(super) fn thinking_block(index: usize, pieces: &[&str]) -> Vec<Event> {
    let deltas = pieces
        .iter()
        .map(|t| json!({"type": "thinking_delta", "thinking": t}));
    let start = json!({"type": "thinking", "thinking": "", "signature": ""});
    block(index, start, deltas.collect())
}

/// A text block streamed as `pieces`.
pub(super) fn text_block(index: usize, pieces: &[&str]) -> Vec<Event> {
    let deltas = pieces
        .iter()
        .map(|t| json!({"type": "text_delta", "text": t}));
    block(index, json!({"type": "text", "text": ""}), deltas.collect())
}

/// A `tool_use` block whose input JSON is streamed as `pieces`.
pub(super) fn tool_block(index: usize, id: &str, name: &str, pieces: &[&str]) -> Vec<Event> {
    let deltas = pieces
        .iter()
        .map(|p| json!({"type": "input_json_delta", "partial_json": p}));
    let start = json!({"type": "tool_use", "id": id, "name": name, "input": {}});
    block(index, start, deltas.collect())
}

/// `message_delta` (with `stop_reason` and the final usage) and `message_stop`.
pub(super) fn message_end(
    stop_reason: &str,
    input: u64,
    output: u64,
    cache_read: u64,
) -> Vec<Event> {
    let delta = json!({"type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": null},
        "usage": usage(input, output, cache_read)});
    vec![("message_delta", delta), message_stop()]
}

pub(super) fn message_stop() -> Event {
    ("message_stop", json!({"type": "message_stop"}))
}

/// An `error` event of Anthropic error `kind`.
pub(super) fn error_event(kind: &str, message: &str) -> Event {
    (
        "error",
        json!({"type": "error", "error": {"type": kind, "message": message}}),
    )
}

/// Feeds `(event name, data)` pairs to `stream`; returns what it wrote.
pub(super) fn feed(stream: &mut impl FrontStream, events: &[(&str, Value)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in events {
        stream.event(name, &data.to_string(), &mut out);
    }
    out
}

/// Anthropic SSE bytes → `(event name, data)` pairs.
pub(super) fn anthropic_events(sse: &[u8]) -> Vec<(String, String)> {
    std::str::from_utf8(sse)
        .unwrap()
        .split_terminator("\n\n")
        .map(|frame| {
            let (name, data) = frame.split_once('\n').unwrap();
            (
                name.strip_prefix("event: ").unwrap().to_owned(),
                data.strip_prefix("data: ").unwrap().to_owned(),
            )
        })
        .collect()
}

/// Feeds Anthropic SSE bytes to `stream`; returns what it wrote.
pub(super) fn replay(stream: &mut impl FrontStream, sse: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in anthropic_events(sse) {
        stream.event(&name, &data, &mut out);
    }
    out
}

/// A backend's Chat Completions chunks through the proxy's own OpenAI → Anthropic stream
/// translation (message `msg_1` of `model`, `prompt_tokens` estimated): the Anthropic SSE.
pub(super) fn translated(model: &str, prompt_tokens: u64, chunks: Vec<Value>) -> Vec<u8> {
    let mut translator =
        StreamTranslator::new("msg_1".into(), model.into(), prompt_tokens, false, vec![]);
    let mut sse = Vec::new();
    for chunk in chunks {
        translator.on_chunk(serde_json::from_value(chunk).unwrap(), &mut sse);
    }
    translator.finish(&mut sse);
    sse
}

/// The proxy's translation of `req` for an OpenAI-protocol backend serving `served_model`.
pub(super) fn backend_translation(
    req: MessagesRequest,
    served_model: &str,
    thinking: ThinkingStyle,
) -> Translated {
    let policy = ParameterPolicy::default();
    let shape = BackendShape {
        served_model,
        thinking,
        parameters: &policy,
    };
    let max = req.max_tokens;
    to_openai(req, max, &shape).unwrap()
}

/// The request the proxy would send an OpenAI-protocol backend serving `served_model`.
pub(super) fn backend_request(
    req: MessagesRequest,
    served_model: &str,
    thinking: ThinkingStyle,
) -> Value {
    serde_json::to_value(backend_translation(req, served_model, thinking).request).unwrap()
}
