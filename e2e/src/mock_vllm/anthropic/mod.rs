//! `POST /v1/messages` and `POST /v1/messages/count_tokens`: vLLM's native
//! Anthropic Messages endpoints (`vllm/entrypoints/anthropic/api_router.py`,
//! `protocol.py`, `serving.py`).
//!
//! vLLM validates the body against its `AnthropicMessagesRequest` pydantic
//! model, converts it to a `ChatCompletionRequest`
//! (`to_chat_completion_request`) and runs the normal chat pipeline, then
//! converts the result back.  Behaviour imitated, per [`VllmRelease`]:
//! - schema errors go through the app-wide FastAPI validation handler, so they
//!   come back in the *OpenAI* shape (`{"error": {..., "type": "Bad Request"}}`,
//!   issue #57997): `max_tokens` must be > 0 (`max_tokens must be positive`);
//!   0.34 checks `thinking` (`enabled` needs `budget_tokens >= 1024` and
//!   `< max_tokens`); roles include `system` from 0.26 (0.11: a 400);
//! - pipeline errors are translated by `translate_error_response` into
//!   `{"type": "error", "error": {"type": ..., "message": ...}}`: 0.33+ map
//!   the status to Anthropic's vocabulary (`translate_error_type`:
//!   `invalid_request_error`, `not_found_error`, `overloaded_error`, …);
//!   earlier releases copy vLLM's type (`BadRequestError`).  The context
//!   check is the chat one, same wording (`max_tokens` is sent as both
//!   `max_tokens` and `max_completion_tokens`, so the parameter quoted is
//!   `max_completion_tokens`); nothing clamps for the client;
//! - streaming always uses `include_usage` + `continuous_usage_stats`;
//!   headers at once, then nothing until the first chat chunk (no `ping`
//!   event is ever emitted, though the Literal allows it);
//!   `message_start.message` carries `type`/`role` from 0.26 (set explicitly
//!   for strict SDKs, issue #45367 / PR #45376); `message_delta.delta`
//!   carries `stop_sequence` (explicitly set, so `exclude_unset` keeps it;
//!   0.30+); thinking blocks end with a `signature_delta`; finish reasons
//!   map `length -> max_tokens`, `tool_calls -> tool_use`, a matched stop
//!   string -> `stop_sequence` with the string (0.32+;
//!   `_to_anthropic_stop_reason`), else `end_turn`;
//! - `count_tokens` (not in the 0.11 form) answers
//!   `{"input_tokens": N, "context_management": {"original_input_tokens": N}}`;
//!   0.34 counts prompts longer than the window (`_CountTokensChatRequest`),
//!   0.30 refuses them with the context error.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use bytes::Bytes;
use futures::Stream;
use serde::Serialize;
use serde_json::{json, Value};

mod convert;

use super::chat::{self, assemble, json_response, sse_response, CRASH_FLUSH};
use super::generate::{self, Generation};
use super::scenario::{self, Piece};
use super::stats::ResponseGuard;
use super::{random_hex, validate, AppState, VllmRelease};
pub use convert::anthropic_to_chat;
use convert::{anthropic_to_chat_for, validate_anthropic_schema, AnthropicKind};

pub(crate) async fn messages(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if !st.cfg.anthropic_endpoint {
        // The route does not exist: FastAPI's 404.
        return json_response(StatusCode::NOT_FOUND, br#"{"detail":"Not Found"}"#.to_vec());
    }
    let mut guard = ResponseGuard::new(st.stats.clone());
    let parsed = validate::parse_json_body(&headers, &body);
    st.stats.record_request(
        "/v1/messages",
        &headers,
        match &parsed {
            Ok(v) => v.clone(),
            Err(_) => Value::String(String::from_utf8_lossy(&body).into_owned()),
        },
    );
    let release = st.cfg.vllm_release;
    let planned = parsed.and_then(|body| {
        validate_anthropic_schema(&body, release, AnthropicKind::Messages)?;
        let chat_body = anthropic_to_chat_for(&body, &st.cfg);
        let messages = body
            .get("messages")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        chat::plan(&st, &chat_body, scenario::last_turn_anthropic(&messages))
    });
    let planned = match planned {
        Ok(p) => p,
        Err(e) => {
            guard.errored();
            return e.into_anthropic_response(release);
        }
    };
    let id = format!("chatcmpl-{}", random_hex());
    let model = st.cfg.served_model_name.clone();
    let prompt_tokens = planned.prepared.prompt_tokens;
    if planned.prepared.params.stream {
        let stream = anthropic_stream(
            AnthropicCtx {
                id,
                model,
                prompt_tokens,
                usage_null: planned.script.usage_null,
                release,
            },
            planned.generation,
            planned.prefill,
            planned.script.pace,
            guard,
        );
        return sse_response(Body::from_stream(stream));
    }
    if !planned.prefill.is_zero() {
        tokio::time::sleep(planned.prefill).await;
    }
    if planned.generation.finish.is_none() {
        guard.abort();
        return chat::crashed_json_response(format!("{{\"id\":\"{id}\",\"type\":\"message\""));
    }
    let body = message_json(&id, &model, prompt_tokens, &planned.generation, release);
    guard.complete();
    json_response(
        StatusCode::OK,
        serde_json::to_vec(&body).unwrap_or_default(),
    )
}

/// `POST /v1/messages/count_tokens` (`AnthropicServingMessages.count_tokens`):
/// the request is converted like `/v1/messages` (without `max_tokens` or
/// stream options), rendered and tokenized; the answer is
/// `{"input_tokens": N, "context_management": {"original_input_tokens": N}}`
/// (`model_dump(exclude_none=True)`).  Errors take the Anthropic envelope.
pub(crate) async fn count_tokens(
    State(st): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    st.stats
        .count_tokens_calls
        .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    let release = st.cfg.vllm_release;
    if !st.cfg.anthropic_endpoint || !release.serves_count_tokens() {
        return json_response(StatusCode::NOT_FOUND, br#"{"detail":"Not Found"}"#.to_vec());
    }
    let counted = validate::parse_json_body(&headers, &body).and_then(|body| {
        validate_anthropic_schema(&body, release, AnthropicKind::CountTokens)?;
        let chat_body = anthropic_to_chat_for(&body, &st.cfg);
        validate::check_model(&st.cfg, &chat_body)?;
        validate::check_template(&st.cfg, &chat_body)?;
        let n = super::count_prompt_tokens(&chat_body);
        validate::check_count_tokens_window(&st.cfg, n)?;
        Ok(n)
    });
    match counted {
        Ok(n) => json_response(
            StatusCode::OK,
            serde_json::to_vec(&json!({
                "input_tokens": n,
                "context_management": {"original_input_tokens": n},
            }))
            .unwrap_or_default(),
        ),
        Err(e) => e.into_anthropic_response(release),
    }
}

/// `(stop_reason, stop_sequence)` for a finish (`_to_anthropic_stop_reason`):
/// `length` always wins; a matched stop string is `stop_sequence` from 0.32
/// (earlier: `end_turn`); tool calls are `tool_use`.
fn stop_reason(
    finish: &generate::Finish,
    tool_used: bool,
    release: VllmRelease,
) -> (&'static str, Option<&str>) {
    match finish.reason {
        "length" => ("max_tokens", None),
        _ if tool_used => ("tool_use", None),
        _ => match finish.stop_reason.as_deref() {
            Some(s) if release == VllmRelease::V0_34 => ("stop_sequence", Some(s)),
            _ if finish.reason == "tool_calls" => ("tool_use", None),
            _ => ("end_turn", None),
        },
    }
}

/// Non-streaming response (`model_dump(exclude_none=True)`).
fn message_json(
    id: &str,
    model: &str,
    prompt_tokens: u32,
    generation: &Generation,
    release: VllmRelease,
) -> Value {
    let a = assemble(generation);
    let mut content = Vec::new();
    if !a.reasoning.is_empty() {
        content
            .push(json!({"type": "thinking", "thinking": a.reasoning, "signature": random_hex()}));
    }
    if !a.content.is_empty() {
        content.push(json!({"type": "text", "text": a.content}));
    }
    for (tid, name, args) in &a.tool_calls {
        let input: Value = serde_json::from_str(args).unwrap_or_else(|_| json!({}));
        content.push(json!({"type": "tool_use", "id": tid, "name": name, "input": input}));
    }
    // 0.34 (`messages_full_converter`): an empty completion is one empty
    // text block, not `[]`.
    if content.is_empty() && release == VllmRelease::V0_34 {
        content.push(json!({"type": "text", "text": ""}));
    }
    let default_finish = generate::Finish {
        reason: "stop",
        stop_reason: None,
        on_last_piece: false,
        tail: String::new(),
    };
    let finish = generation.finish.as_ref().unwrap_or(&default_finish);
    let (reason, sequence) = stop_reason(finish, !a.tool_calls.is_empty(), release);
    let mut out = json!({
        "id": id,
        "type": "message",
        "role": "assistant",
        "content": content,
        "model": model,
        "stop_reason": reason,
        "usage": {"input_tokens": prompt_tokens, "output_tokens": generation.completion_tokens},
    });
    if let Some(seq) = sequence {
        out["stop_sequence"] = json!(seq);
    }
    out
}

struct AnthropicCtx {
    id: String,
    model: String,
    prompt_tokens: u32,
    usage_null: bool,
    release: VllmRelease,
}

/// `AnthropicStreamEvent` (field order type, message, delta, content_block, index, usage).
#[derive(Serialize)]
struct EventOut {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<Ordered>,
    #[serde(skip_serializing_if = "Option::is_none")]
    delta: Option<Ordered>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content_block: Option<Ordered>,
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Ordered>,
}

/// A JSON object that keeps its key order (pydantic dumps fields in
/// declaration order; `serde_json::Map` would sort them).
struct Ordered(Vec<(&'static str, Value)>);

impl Serialize for Ordered {
    fn serialize<S: serde::Serializer>(&self, ser: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = ser.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

fn obj(fields: Vec<(&'static str, Value)>) -> Ordered {
    Ordered(fields)
}

fn usage(input: u32, output: u32) -> Ordered {
    obj(vec![
        ("input_tokens", json!(input)),
        ("output_tokens", json!(output)),
    ])
}

impl EventOut {
    fn new(kind: &'static str) -> Self {
        EventOut {
            kind,
            message: None,
            delta: None,
            content_block: None,
            index: None,
            usage: None,
        }
    }

    fn bytes(&self) -> Bytes {
        let data = serde_json::to_string(self).unwrap_or_default();
        Bytes::from(format!("event: {}\ndata: {data}\n\n", self.kind))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BlockKind {
    Thinking,
    Text,
    Tool(u32),
}

/// Tracks the open content block, like vLLM's `_ActiveBlockState`.
struct Blocks {
    next_index: u32,
    active: Option<(BlockKind, u32)>,
}

impl Blocks {
    /// Events that close the open block (a thinking block first gets its signature).
    fn stop(&mut self) -> Vec<Bytes> {
        let mut out = Vec::new();
        if let Some((kind, index)) = self.active.take() {
            if kind == BlockKind::Thinking {
                let mut e = EventOut::new("content_block_delta");
                e.delta = Some(obj(vec![
                    ("type", json!("signature_delta")),
                    ("signature", json!(random_hex())),
                ]));
                e.index = Some(index);
                out.push(e.bytes());
            }
            let mut e = EventOut::new("content_block_stop");
            e.index = Some(index);
            out.push(e.bytes());
            self.next_index += 1;
        }
        out
    }

    /// Events that make `kind` the open block.
    fn ensure(&mut self, kind: BlockKind, block: impl FnOnce() -> Ordered) -> Vec<Bytes> {
        if self.active.map(|a| a.0) == Some(kind) {
            return Vec::new();
        }
        let mut out = self.stop();
        let mut e = EventOut::new("content_block_start");
        e.content_block = Some(block());
        e.index = Some(self.next_index);
        out.push(e.bytes());
        self.active = Some((kind, self.next_index));
        out
    }

    fn delta(&self, delta: Ordered) -> Bytes {
        let mut e = EventOut::new("content_block_delta");
        e.delta = Some(delta);
        e.index = Some(self.active.map(|a| a.1).unwrap_or(self.next_index));
        e.bytes()
    }
}

/// Anthropic content blocks are sequential, so interleaved tool-call
/// fragments are regrouped per call (vLLM does the same via its
/// tool-index-to-id map).
fn deinterleave(pieces: &[Piece]) -> Vec<Piece> {
    let Some(first_tool) = pieces
        .iter()
        .position(|p| matches!(p, Piece::ToolHeader { .. } | Piece::ToolArgs { .. }))
    else {
        return pieces.to_vec();
    };
    let mut out = pieces[..first_tool].to_vec();
    let rest = &pieces[first_tool..];
    let order: Vec<u32> = rest
        .iter()
        .filter_map(|p| match p {
            Piece::ToolHeader { index, .. } => Some(*index),
            _ => None,
        })
        .collect();
    for idx in order {
        out.extend(
            rest.iter()
                .filter(|p| match p {
                    Piece::ToolHeader { index, .. } | Piece::ToolArgs { index, .. } => {
                        *index == idx
                    }
                    _ => false,
                })
                .cloned(),
        );
    }
    out.extend(
        rest.iter()
            .filter(|p| !matches!(p, Piece::ToolHeader { .. } | Piece::ToolArgs { .. }))
            .cloned(),
    );
    out
}

fn anthropic_stream(
    ctx: AnthropicCtx,
    generation: Generation,
    prefill: Duration,
    pace: Duration,
    guard: ResponseGuard,
) -> impl Stream<Item = Result<Bytes, io::Error>> + Send + 'static {
    async_stream::stream! {
        let mut guard = guard;
        if !prefill.is_zero() {
            tokio::time::sleep(prefill).await;
        }
        // `message_start` is written on the first chunk of the chat stream underneath, which
        // comes with the first token (see `chat::openai_stream`): that token's time first.
        if !pace.is_zero() {
            tokio::time::sleep(pace).await;
        }
        let mut start = EventOut::new("message_start");
        let mut message = vec![("id", json!(ctx.id))];
        if ctx.release != VllmRelease::V0_11 {
            message.push(("type", json!("message")));
            message.push(("role", json!("assistant")));
        }
        message.extend([
            ("content", json!([])),
            ("model", json!(ctx.model)),
            ("stop_reason", Value::Null),
            ("stop_sequence", Value::Null),
            ("usage", serde_json::to_value(usage(ctx.prompt_tokens, 0)).unwrap_or_default()),
        ]);
        start.message = Some(obj(message));
        yield Ok(start.bytes());
        let mut blocks = Blocks { next_index: 0, active: None };
        let mut first_token = true;
        for piece in deinterleave(&generation.pieces) {
            let mut events = Vec::new();
            match &piece {
                Piece::Reasoning(t) if !t.is_empty() => {
                    events.extend(blocks.ensure(BlockKind::Thinking, || obj(vec![("type", json!("thinking")), ("thinking", json!(""))])));
                    events.push(blocks.delta(obj(vec![("type", json!("thinking_delta")), ("thinking", json!(t))])));
                }
                Piece::Content(t) if !t.is_empty() => {
                    events.extend(blocks.ensure(BlockKind::Text, || obj(vec![("type", json!("text")), ("text", json!(""))])));
                    events.push(blocks.delta(obj(vec![("type", json!("text_delta")), ("text", json!(t))])));
                }
                Piece::ToolHeader { index, id, name } => {
                    events.extend(blocks.ensure(BlockKind::Tool(*index), || {
                        obj(vec![("type", json!("tool_use")), ("id", json!(id)), ("name", json!(name)), ("input", json!({}))])
                    }));
                }
                Piece::ToolArgs { args, .. } => {
                    events.push(blocks.delta(obj(vec![("type", json!("input_json_delta")), ("partial_json", json!(args))])));
                }
                _ => {}
            }
            if events.is_empty() {
                continue;
            }
            if !pace.is_zero() && !std::mem::replace(&mut first_token, false) {
                tokio::time::sleep(pace).await;
            }
            for e in events {
                yield Ok(e);
            }
        }
        let Some(finish) = generation.finish.as_ref() else {
            guard.abort();
            // Let hyper flush what was sent, then cut the connection.
            tokio::time::sleep(CRASH_FLUSH).await;
            yield Err(io::Error::other("mock vLLM: simulated engine crash"));
            return;
        };
        if !finish.tail.is_empty() {
            for e in blocks.ensure(BlockKind::Text, || obj(vec![("type", json!("text")), ("text", json!(""))])) {
                yield Ok(e);
            }
            yield Ok(blocks.delta(obj(vec![("type", json!("text_delta")), ("text", json!(finish.tail))])));
        }
        for e in blocks.stop() {
            yield Ok(e);
        }
        let (input, output) = if ctx.usage_null {
            (0, 0)
        } else {
            (ctx.prompt_tokens, generation.completion_tokens)
        };
        let mut delta = EventOut::new("message_delta");
        let (reason, sequence) = stop_reason(finish, generation.has_tool_calls(), ctx.release);
        let mut fields = vec![("stop_reason", json!(reason))];
        if ctx.release != VllmRelease::V0_11 {
            fields.push(("stop_sequence", json!(sequence)));
        }
        delta.delta = Some(obj(fields));
        delta.usage = Some(usage(input, output));
        yield Ok(delta.bytes());
        yield Ok(EventOut::new("message_stop").bytes());
        guard.complete();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regroups_interleaved_tools() {
        let p = vec![
            Piece::ToolHeader {
                index: 0,
                id: "a".into(),
                name: "A".into(),
            },
            Piece::ToolArgs {
                index: 0,
                args: "1".into(),
            },
            Piece::ToolHeader {
                index: 1,
                id: "b".into(),
                name: "B".into(),
            },
            Piece::ToolArgs {
                index: 1,
                args: "2".into(),
            },
            Piece::ToolArgs {
                index: 0,
                args: "3".into(),
            },
        ];
        let d = deinterleave(&p);
        assert_eq!(
            d[2],
            Piece::ToolArgs {
                index: 0,
                args: "3".into()
            }
        );
        assert!(matches!(d[3], Piece::ToolHeader { index: 1, .. }));
    }
}
