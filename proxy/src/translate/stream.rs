//! OpenAI chat-completion chunks → the exact Anthropic SSE event sequence (pure).
//!
//! Anthropic streams one content block at a time, each `content_block_start`, deltas,
//! `content_block_stop`, with indices counting up from 0. OpenAI deltas mix reasoning, text and
//! several tool calls freely, so the translator opens and closes blocks as the kind of output
//! changes. The first tool call is streamed live; arguments for any other call that arrive
//! while it is open wait in a buffer and are emitted, complete, when it closes (vLLM's parsers
//! emit calls one after another, so in practice every call streams live).

use super::text_tools::{Piece, TextToolParser};
use super::{anthropic_usage, fills_window, stop_reason, Finish};
use crate::error::ApiError;
use crate::error::ErrorKind;
use crate::protocol::anthropic::{MessageResponse, StopReason, Usage};
use crate::protocol::openai::{ChatChunk, ChatUsage, ToolCallDelta};
use serde::Serialize;
use std::collections::BTreeMap;

/// Tool-call indexes a backend may use in one turn. vLLM numbers the calls of a turn 0..n;
/// an index past this is garbage (one chunk with `"index": 100000000000` used to size a
/// table by it), and ends the stream with an `error` event.
pub const MAX_TOOL_CALLS: usize = 1024;

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Event<'a> {
    MessageStart {
        message: &'a MessageResponse,
    },
    ContentBlockStart {
        index: u32,
        content_block: BlockStart<'a>,
    },
    ContentBlockDelta {
        index: u32,
        delta: BlockDelta<'a>,
    },
    ContentBlockStop {
        index: u32,
    },
    MessageDelta {
        delta: MessageDeltaBody<'a>,
        usage: Usage,
    },
    MessageStop,
    Ping,
}

impl Event<'_> {
    fn name(&self) -> &'static str {
        match self {
            Event::MessageStart { .. } => "message_start",
            Event::ContentBlockStart { .. } => "content_block_start",
            Event::ContentBlockDelta { .. } => "content_block_delta",
            Event::ContentBlockStop { .. } => "content_block_stop",
            Event::MessageDelta { .. } => "message_delta",
            Event::MessageStop => "message_stop",
            Event::Ping => "ping",
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockStart<'a> {
    Text {
        text: &'a str,
    },
    Thinking {
        thinking: &'a str,
        signature: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: EmptyObject,
    },
}

#[derive(Serialize)]
struct EmptyObject {}

/// Variant names are the wire names (`text_delta`, …).
#[allow(clippy::enum_variant_names)]
#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta<'a> {
    TextDelta { text: &'a str },
    ThinkingDelta { thinking: &'a str },
    InputJsonDelta { partial_json: &'a str },
}

#[derive(Serialize)]
struct MessageDeltaBody<'a> {
    stop_reason: StopReason,
    stop_sequence: Option<&'a str>,
}

/// Writes one SSE event.
fn write_event(out: &mut Vec<u8>, event: &Event) {
    if let Event::ContentBlockDelta { index, delta } = event {
        return write_delta(out, *index, delta);
    }
    write_sse(out, event.name(), |out| {
        serde_json::to_writer(out, event).expect("serializing to a Vec cannot fail")
    });
}

/// The per-token event, written without serde's map machinery (a third of the translator's
/// cost per token): the bytes serde writes for it (a test holds them equal), the text
/// escaped by serde_json.
fn write_delta(out: &mut Vec<u8>, index: u32, delta: &BlockDelta) {
    let (head, text): (&[u8], &str) = match delta {
        BlockDelta::TextDelta { text } => (b"{\"type\":\"text_delta\",\"text\":", text),
        BlockDelta::ThinkingDelta { thinking } => {
            (b"{\"type\":\"thinking_delta\",\"thinking\":", thinking)
        }
        BlockDelta::InputJsonDelta { partial_json } => (
            b"{\"type\":\"input_json_delta\",\"partial_json\":",
            partial_json,
        ),
    };
    out.extend_from_slice(
        b"event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":",
    );
    out.extend_from_slice(itoa::Buffer::new().format(index).as_bytes());
    out.extend_from_slice(b",\"delta\":");
    out.extend_from_slice(head);
    serde_json::to_writer(&mut *out, text).expect("serializing to a Vec cannot fail");
    out.extend_from_slice(b"}}\n\n");
}

/// Frames one SSE event: `event: NAME`, then the data `write_data` appends.
pub fn write_sse(out: &mut Vec<u8>, name: &str, write_data: impl FnOnce(&mut Vec<u8>)) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    write_data(out);
    out.extend_from_slice(b"\n\n");
}

/// The `ping` event, for keeping a silent stream alive.
pub fn ping(out: &mut Vec<u8>) {
    write_event(out, &Event::Ping);
}

/// The in-stream `error` event, for failures after the stream has been committed.
pub fn error_event(out: &mut Vec<u8>, err: &ApiError) {
    write_sse(out, "error", |out| {
        serde_json::to_writer(out, &err.body()).expect("serializing to a Vec cannot fail")
    });
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Text(u32),
    Thinking(u32),
    /// A live tool call: Anthropic block index, OpenAI tool index.
    Tool(u32, usize),
}

#[derive(Debug, Default)]
struct ToolCallState {
    id: Option<String>,
    name: Option<String>,
    /// Arguments not yet written to the client.
    pending: String,
    /// Already streamed or emitted whole; later fragments are an upstream anomaly.
    emitted: bool,
}

/// Per-request stream state.
#[derive(Debug)]
pub struct StreamTranslator {
    message: MessageResponse,
    started: bool,
    finished: bool,
    open: Option<Open>,
    next_index: u32,
    /// Tool calls by their OpenAI `index` (below `MAX_TOOL_CALLS`).
    tools: BTreeMap<usize, ToolCallState>,
    text_tools: Option<TextToolParser>,
    stop_sequences: Vec<String>,
    finish: Finish,
    any_tool_use: bool,
    usage: Option<ChatUsage>,
    /// The window limits this answer (see `context::Fit`).
    window_bound: bool,
    /// The backend's window, to tell a window-bound `length` finish by its usage.
    window: Option<u32>,
    /// Fragments for tool calls that were already closed (counted, logged by the caller).
    pub anomalies: u32,
    /// Tool calls recovered from the answer's text (the backend's parser left them there).
    pub text_tool_calls: u32,
    /// Why the translator itself ended the stream with an `error` event (the backend sent
    /// something no client can be given), for the caller's log.
    failure: Option<ApiError>,
}

impl StreamTranslator {
    /// `prompt_estimate` fills `message_start` if no chunk has reported real usage yet.
    pub fn new(
        id: String,
        model: String,
        prompt_estimate: u64,
        text_tools: bool,
        stop_sequences: Vec<String>,
    ) -> Self {
        let mut message = MessageResponse::new(id, model);
        message.usage.input_tokens = prompt_estimate;
        Self {
            message,
            started: false,
            finished: false,
            open: None,
            next_index: 0,
            tools: BTreeMap::new(),
            text_tools: text_tools.then(TextToolParser::new),
            stop_sequences,
            finish: Finish::default(),
            any_tool_use: false,
            usage: None,
            window_bound: false,
            window: None,
            anomalies: 0,
            text_tool_calls: 0,
            failure: None,
        }
    }

    /// A `length` finish is reported as `model_context_window_exceeded` when the window bound
    /// the answer: by the proxy's own fit, or as the usage shows against `window`.
    pub fn window_bound(mut self, window_bound: bool, window: Option<u32>) -> Self {
        self.window_bound = window_bound;
        self.window = window;
        self
    }

    pub fn started(&self) -> bool {
        self.started
    }

    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Usage as last reported by the backend.
    pub fn usage(&self) -> Usage {
        anthropic_usage(self.usage.as_ref(), self.message.usage.input_tokens)
    }

    pub fn stop_reason(&self) -> Option<StopReason> {
        self.message.stop_reason
    }

    /// The error the translator ended the stream with, when the backend's own output was
    /// unusable (the stream's `error` event carries it too).
    pub fn failure(&self) -> Option<&ApiError> {
        self.failure.as_ref()
    }

    /// Emits `message_start` if it has not been sent yet.
    pub fn start(&mut self, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        if let Some(u) = &self.usage {
            self.message.usage = anthropic_usage(Some(u), self.message.usage.input_tokens);
        }
        // Anthropic reports the first output token in message_start.
        self.message.usage.output_tokens = self.message.usage.output_tokens.max(1);
        write_event(
            out,
            &Event::MessageStart {
                message: &self.message,
            },
        );
        self.message.usage.output_tokens = 0;
    }

    pub fn on_chunk(&mut self, chunk: ChatChunk, out: &mut Vec<u8>) {
        if self.finished {
            // Nothing may follow `message_stop` or `error`.
            return;
        }
        if let Some(u) = chunk.usage {
            self.usage = Some(u);
        }
        self.start(out);
        let Some(choice) = chunk.choices.into_iter().next() else {
            return;
        };
        let delta = choice.delta;
        if let Some(r) = delta.reasoning_content.or(delta.reasoning) {
            self.reasoning(&r, out);
        }
        if let Some(text) = delta.content {
            match &mut self.text_tools {
                Some(parser) => {
                    let mut pieces = Vec::new();
                    parser.push(&text, &mut pieces);
                    self.pieces(pieces, out);
                }
                None => self.text(&text, out),
            }
        }
        for call in delta.tool_calls.unwrap_or_default() {
            self.tool_delta(call, out);
            if self.finished {
                return;
            }
        }
        if let Some(reason) = choice.finish_reason {
            self.finish = Finish {
                reason: Some(reason),
                matched_stop: choice
                    .stop_reason
                    .and_then(|v| v.as_str().map(str::to_owned)),
            };
        }
    }

    /// Closes everything and writes `message_delta` and `message_stop`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.start(out);
        if let Some(mut parser) = self.text_tools.take() {
            let mut pieces = Vec::new();
            parser.finish(&mut pieces);
            self.pieces(pieces, out);
        }
        self.close(out);
        self.flush_pending_tools(out);
        let (reason, sequence) = stop_reason(&self.finish, self.any_tool_use, &self.stop_sequences);
        let reason = reason
            .window_bound(self.window_bound || fills_window(self.usage.as_ref(), self.window));
        self.message.stop_reason = Some(reason);
        write_event(
            out,
            &Event::MessageDelta {
                delta: MessageDeltaBody {
                    stop_reason: reason,
                    stop_sequence: sequence.as_deref(),
                },
                usage: self.usage(),
            },
        );
        write_event(out, &Event::MessageStop);
        self.finished = true;
    }

    /// Ends a committed stream with an `error` event (the backend failed mid-way).
    pub fn fail(&mut self, err: &ApiError, out: &mut Vec<u8>) {
        if self.finished {
            return;
        }
        self.start(out);
        self.close(out);
        error_event(out, err);
        self.finished = true;
    }

    fn pieces(&mut self, pieces: Vec<Piece>, out: &mut Vec<u8>) {
        for piece in pieces {
            match piece {
                Piece::Text(t) => self.text(&t, out),
                Piece::Reasoning(r) => self.reasoning(&r, out),
                Piece::ToolCall { name, arguments } => {
                    self.text_tool_calls += 1;
                    let id = super::response::new_tool_id();
                    self.whole_tool(&id, &name, &arguments, out);
                }
            }
        }
    }

    fn text(&mut self, text: &str, out: &mut Vec<u8>) {
        if text.is_empty() {
            return;
        }
        let index = match self.open {
            Some(Open::Text(i)) => i,
            _ => {
                self.close_and_flush(out);
                let i = self.open_block(out, BlockStart::Text { text: "" });
                self.open = Some(Open::Text(i));
                i
            }
        };
        write_event(
            out,
            &Event::ContentBlockDelta {
                index,
                delta: BlockDelta::TextDelta { text },
            },
        );
    }

    fn reasoning(&mut self, thinking: &str, out: &mut Vec<u8>) {
        if thinking.is_empty() {
            return;
        }
        let index = match self.open {
            Some(Open::Thinking(i)) => i,
            _ => {
                self.close_and_flush(out);
                let i = self.open_block(
                    out,
                    BlockStart::Thinking {
                        thinking: "",
                        signature: "",
                    },
                );
                self.open = Some(Open::Thinking(i));
                i
            }
        };
        write_event(
            out,
            &Event::ContentBlockDelta {
                index,
                delta: BlockDelta::ThinkingDelta { thinking },
            },
        );
    }

    fn tool_delta(&mut self, call: ToolCallDelta, out: &mut Vec<u8>) {
        let slot = call.index;
        if slot >= MAX_TOOL_CALLS {
            tracing::warn!(
                index = slot,
                max = MAX_TOOL_CALLS,
                "backend sent a tool call index out of range; ending the stream"
            );
            let err = ApiError::new(
                ErrorKind::Api,
                format!(
                    "the backend sent an invalid tool call (index {slot}, at most {} expected)",
                    MAX_TOOL_CALLS - 1
                ),
            );
            self.fail(&err, out);
            self.failure = Some(err);
            return;
        }
        let state = self.tools.entry(slot).or_default();
        if let Some(id) = call.id.filter(|s| !s.is_empty()) {
            state.id.get_or_insert(id);
        }
        let (name, args) = match call.function {
            Some(f) => (f.name, f.arguments.unwrap_or_default()),
            None => (None, String::new()),
        };
        if let Some(name) = name.filter(|s| !s.is_empty()) {
            state.name.get_or_insert(name);
        }
        match self.open {
            // A live call's own fragments (it is marked emitted as soon as it opens).
            Some(Open::Tool(index, live)) if live == slot => {
                if !args.is_empty() {
                    write_event(
                        out,
                        &Event::ContentBlockDelta {
                            index,
                            delta: BlockDelta::InputJsonDelta {
                                partial_json: &args,
                            },
                        },
                    );
                }
            }
            _ if state.emitted => {
                if !args.is_empty() {
                    self.anomalies = self.anomalies.saturating_add(1);
                }
            }
            Some(Open::Tool(..)) => state.pending.push_str(&args),
            _ => {
                state.pending.push_str(&args);
                if state.name.is_some() {
                    self.close_and_flush(out);
                    self.open_live_tool(slot, out);
                }
            }
        }
    }

    fn open_live_tool(&mut self, slot: usize, out: &mut Vec<u8>) {
        let state = self.tools.entry(slot).or_default();
        state.emitted = true;
        let id = state
            .id
            .clone()
            .unwrap_or_else(super::response::new_tool_id);
        let name = state.name.clone().unwrap_or_default();
        let pending = std::mem::take(&mut state.pending);
        let index = self.open_block(
            out,
            BlockStart::ToolUse {
                id: &id,
                name: &name,
                input: EmptyObject {},
            },
        );
        self.any_tool_use = true;
        if !pending.is_empty() {
            write_event(
                out,
                &Event::ContentBlockDelta {
                    index,
                    delta: BlockDelta::InputJsonDelta {
                        partial_json: &pending,
                    },
                },
            );
        }
        self.open = Some(Open::Tool(index, slot));
    }

    /// A complete tool call (recovered from text, or flushed from the buffer).
    fn whole_tool(&mut self, id: &str, name: &str, arguments: &str, out: &mut Vec<u8>) {
        self.close_and_flush(out);
        let index = self.open_block(
            out,
            BlockStart::ToolUse {
                id,
                name,
                input: EmptyObject {},
            },
        );
        self.any_tool_use = true;
        if !arguments.is_empty() {
            write_event(
                out,
                &Event::ContentBlockDelta {
                    index,
                    delta: BlockDelta::InputJsonDelta {
                        partial_json: arguments,
                    },
                },
            );
        }
        write_event(out, &Event::ContentBlockStop { index });
    }

    fn open_block(&mut self, out: &mut Vec<u8>, block: BlockStart) -> u32 {
        let index = self.next_index;
        self.next_index = self.next_index.saturating_add(1);
        write_event(
            out,
            &Event::ContentBlockStart {
                index,
                content_block: block,
            },
        );
        index
    }

    fn close(&mut self, out: &mut Vec<u8>) {
        if let Some(open) = self.open.take() {
            let (Open::Text(index) | Open::Thinking(index) | Open::Tool(index, _)) = open;
            write_event(out, &Event::ContentBlockStop { index });
        }
    }

    /// Closes the open block; if it was a live tool call, emits the calls that waited behind it.
    fn close_and_flush(&mut self, out: &mut Vec<u8>) {
        let was_tool = matches!(self.open, Some(Open::Tool(..)));
        self.close(out);
        if was_tool {
            self.flush_pending_tools(out);
        }
    }

    fn flush_pending_tools(&mut self, out: &mut Vec<u8>) {
        let mut ready = Vec::new();
        for state in self.tools.values_mut() {
            if state.emitted || (state.name.is_none() && state.pending.is_empty()) {
                continue;
            }
            state.emitted = true;
            let id = state.id.take().unwrap_or_else(super::response::new_tool_id);
            let name = state.name.clone().unwrap_or_default();
            ready.push((id, name, std::mem::take(&mut state.pending)));
        }
        for (id, name, args) in ready {
            self.whole_tool(&id, &name, &args, out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deltas_are_written_as_serde_writes_them() {
        let texts = [
            "",
            "plain",
            "quote \" and \\",
            "line\nbreak\ttab\u{1}",
            "é 日本 🙂",
        ];
        for text in texts {
            for (index, delta) in [
                (0, BlockDelta::TextDelta { text }),
                (7, BlockDelta::ThinkingDelta { thinking: text }),
                (
                    4_000_000_000,
                    BlockDelta::InputJsonDelta { partial_json: text },
                ),
            ] {
                let event = Event::ContentBlockDelta { index, delta };
                let mut fast = Vec::new();
                write_event(&mut fast, &event);
                let mut serde = Vec::new();
                write_sse(&mut serde, event.name(), |out| {
                    serde_json::to_writer(out, &event).unwrap()
                });
                assert_eq!(
                    String::from_utf8(fast).unwrap(),
                    String::from_utf8(serde).unwrap()
                );
            }
        }
    }
    use serde_json::{json, Value};

    fn chunk(v: Value) -> ChatChunk {
        serde_json::from_value(v).unwrap()
    }

    fn delta(d: Value) -> ChatChunk {
        chunk(json!({"choices": [{"index": 0, "delta": d, "finish_reason": null}]}))
    }

    fn finish(reason: &str) -> ChatChunk {
        chunk(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": reason}]}))
    }

    /// Parses SSE bytes into (event name, data) pairs, checking that each `event:` name
    /// matches the data's `type`.
    fn events(bytes: &[u8]) -> Vec<(String, Value)> {
        let text = std::str::from_utf8(bytes).unwrap();
        text.split("\n\n")
            .filter(|s| !s.is_empty())
            .map(|block| {
                let mut lines = block.lines();
                let name = lines
                    .next()
                    .unwrap()
                    .strip_prefix("event: ")
                    .unwrap()
                    .to_owned();
                let data: Value =
                    serde_json::from_str(lines.next().unwrap().strip_prefix("data: ").unwrap())
                        .unwrap();
                assert_eq!(data["type"], name.as_str());
                (name, data)
            })
            .collect()
    }

    fn run(chunks: Vec<ChatChunk>, text_tools: bool) -> Vec<(String, Value)> {
        let mut tr =
            StreamTranslator::new("msg_1".into(), "claude-x".into(), 100, text_tools, vec![]);
        let mut out = Vec::new();
        for c in chunks {
            tr.on_chunk(c, &mut out);
        }
        tr.finish(&mut out);
        events(&out)
    }

    fn names(ev: &[(String, Value)]) -> Vec<&str> {
        ev.iter().map(|(n, _)| n.as_str()).collect()
    }

    /// Rebuilds the final message the way the Anthropic SDKs accumulate a stream, checking
    /// block indices count up and every block is closed before the next opens.
    fn accumulate(ev: &[(String, Value)]) -> Value {
        let mut message = Value::Null;
        let mut open: Option<u64> = None;
        let mut json_buf = String::new();
        for (name, data) in ev {
            match name.as_str() {
                "message_start" => message = data["message"].clone(),
                "content_block_start" => {
                    assert!(open.is_none(), "block opened while another is open");
                    let idx = data["index"].as_u64().unwrap();
                    assert_eq!(idx as usize, message["content"].as_array().unwrap().len());
                    message["content"]
                        .as_array_mut()
                        .unwrap()
                        .push(data["content_block"].clone());
                    open = Some(idx);
                    json_buf.clear();
                }
                "content_block_delta" => {
                    let idx = data["index"].as_u64().unwrap();
                    assert_eq!(Some(idx), open);
                    let block = &mut message["content"][idx as usize];
                    let d = &data["delta"];
                    match d["type"].as_str().unwrap() {
                        "text_delta" => {
                            block["text"] = json!(
                                block["text"].as_str().unwrap().to_owned()
                                    + d["text"].as_str().unwrap()
                            )
                        }
                        "thinking_delta" => {
                            block["thinking"] = json!(
                                block["thinking"].as_str().unwrap().to_owned()
                                    + d["thinking"].as_str().unwrap()
                            )
                        }
                        "input_json_delta" => {
                            json_buf.push_str(d["partial_json"].as_str().unwrap())
                        }
                        other => panic!("unexpected delta {other}"),
                    }
                }
                "content_block_stop" => {
                    let idx = data["index"].as_u64().unwrap();
                    assert_eq!(Some(idx), open);
                    let block = &mut message["content"][idx as usize];
                    if block["type"] == "tool_use" && !json_buf.is_empty() {
                        block["input"] =
                            serde_json::from_str(&json_buf).expect("tool input is valid JSON");
                    }
                    open = None;
                }
                "message_delta" => {
                    message["stop_reason"] = data["delta"]["stop_reason"].clone();
                    message["usage"] = data["usage"].clone();
                }
                "message_stop" | "ping" => {}
                other => panic!("unexpected event {other}"),
            }
        }
        assert!(open.is_none(), "stream ended with an open block");
        message
    }

    #[test]
    fn text_stream_has_exact_event_sequence() {
        let ev = run(
            vec![
                delta(json!({"role": "assistant", "content": ""})),
                delta(json!({"content": "Hel"})),
                delta(json!({"content": "lo"})),
                finish("stop"),
                chunk(
                    json!({"choices": [], "usage": {"prompt_tokens": 12, "completion_tokens": 2, "total_tokens": 14}}),
                ),
            ],
            false,
        );
        assert_eq!(
            names(&ev),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let msg = accumulate(&ev);
        assert_eq!(msg["content"], json!([{"type": "text", "text": "Hello"}]));
        assert_eq!(msg["stop_reason"], "end_turn");
        assert_eq!(msg["usage"]["input_tokens"], 12);
        assert_eq!(msg["usage"]["output_tokens"], 2);
        assert_eq!(msg["model"], "claude-x");
    }

    #[test]
    fn continuous_usage_puts_real_input_tokens_in_message_start() {
        let ev = run(
            vec![chunk(
                json!({"choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}}],
                "usage": {"prompt_tokens": 4321, "completion_tokens": 0, "prompt_tokens_details": {"cached_tokens": 4000}}}),
            )],
            false,
        );
        assert_eq!(ev[0].1["message"]["usage"]["input_tokens"], 321);
        assert_eq!(ev[0].1["message"]["usage"]["cache_read_input_tokens"], 4000);
    }

    #[test]
    fn usage_is_numeric_even_when_backend_sends_none() {
        let ev = run(vec![delta(json!({"content": "x"})), finish("stop")], false);
        let (_, last_delta) = ev.iter().find(|(n, _)| n == "message_delta").unwrap();
        assert_eq!(
            last_delta["usage"]["input_tokens"], 100,
            "falls back to the estimate"
        );
        assert_eq!(last_delta["usage"]["output_tokens"], 0);
    }

    #[test]
    fn reasoning_text_and_tool_calls_interleave_into_ordered_blocks() {
        let ev = run(
            vec![
                delta(json!({"reasoning_content": "Think"})),
                delta(json!({"reasoning": "ing."})),
                delta(json!({"content": "Running it."})),
                delta(
                    json!({"tool_calls": [{"index": 0, "id": "call_a", "type": "function", "function": {"name": "Bash", "arguments": ""}}]}),
                ),
                delta(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"command\":"}}]}),
                ),
                delta(
                    json!({"tool_calls": [{"index": 1, "id": "call_b", "type": "function", "function": {"name": "Read", "arguments": "{\"file_path\":"}}]}),
                ),
                delta(json!({"tool_calls": [{"index": 0, "function": {"arguments": "\"ls\"}"}}]})),
                delta(json!({"tool_calls": [{"index": 1, "function": {"arguments": "\"/a\"}"}}]})),
                finish("tool_calls"),
            ],
            false,
        );
        let msg = accumulate(&ev);
        assert_eq!(
            msg["content"],
            json!([
                {"type": "thinking", "thinking": "Thinking.", "signature": ""},
                {"type": "text", "text": "Running it."},
                {"type": "tool_use", "id": "call_a", "name": "Bash", "input": {"command": "ls"}},
                {"type": "tool_use", "id": "call_b", "name": "Read", "input": {"file_path": "/a"}},
            ])
        );
        assert_eq!(msg["stop_reason"], "tool_use");
    }

    #[test]
    fn hermes_text_tool_call_becomes_tool_use() {
        let text = "Let me check.\n<tool_call>\n{\"name\": \"Bash\", \"arguments\": {\"command\": \"ls\"}}\n</tool_call>";
        let chunks: Vec<ChatChunk> = text
            .as_bytes()
            .chunks(5)
            .map(|c| delta(json!({"content": std::str::from_utf8(c).unwrap()})))
            .chain([finish("stop")])
            .collect();
        let msg = accumulate(&run(chunks, true));
        assert_eq!(
            msg["content"][0],
            json!({"type": "text", "text": "Let me check.\n"})
        );
        assert_eq!(msg["content"][1]["name"], "Bash");
        assert_eq!(msg["content"][1]["input"], json!({"command": "ls"}));
        assert_eq!(
            msg["stop_reason"], "tool_use",
            "a recovered call ends the turn as tool_use"
        );
    }

    #[test]
    fn length_maps_to_max_tokens_and_stop_sequence_is_reported() {
        let msg = accumulate(&run(
            vec![delta(json!({"content": "a"})), finish("length")],
            false,
        ));
        assert_eq!(msg["stop_reason"], "max_tokens");
        let mut tr = StreamTranslator::new("m".into(), "c".into(), 1, false, vec!["STOP".into()]);
        let mut out = Vec::new();
        tr.on_chunk(delta(json!({"content": "alpha"})), &mut out);
        tr.on_chunk(chunk(json!({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop", "stop_reason": "STOP"}]})), &mut out);
        tr.finish(&mut out);
        let ev = events(&out);
        let (_, md) = ev.iter().find(|(n, _)| n == "message_delta").unwrap();
        assert_eq!(
            md["delta"],
            json!({"stop_reason": "stop_sequence", "stop_sequence": "STOP"})
        );
    }

    #[test]
    fn absurd_tool_call_index_ends_the_stream_with_an_api_error() {
        // One chunk used to size the call table by its index: 100000000000 asked for ~8 TB
        // (abort of the whole process), usize::MAX overflowed `index + 1`.
        for index in [
            json!(100_000_000_000u64),
            json!(u64::MAX),
            json!(MAX_TOOL_CALLS),
        ] {
            let mut tr = StreamTranslator::new("m".into(), "c".into(), 1, false, vec![]);
            let mut out = Vec::new();
            tr.on_chunk(delta(json!({"content": "partial"})), &mut out);
            tr.on_chunk(
                delta(json!({"tool_calls": [{"index": index, "id": "x", "function": {"name": "Bash", "arguments": "{}"}}]})),
                &mut out,
            );
            assert!(tr.finished());
            assert!(tr.failure().is_some());
            // Anything after the error is ignored.
            tr.on_chunk(delta(json!({"content": "more"})), &mut out);
            tr.finish(&mut out);
            let ev = events(&out);
            assert_eq!(
                names(&ev),
                [
                    "message_start",
                    "content_block_start",
                    "content_block_delta",
                    "content_block_stop",
                    "error"
                ],
                "index {index}"
            );
            assert_eq!(ev[4].1["error"]["type"], "api_error");
            assert!(ev[4].1["error"]["message"]
                .as_str()
                .unwrap()
                .contains("tool call"));
        }
    }

    #[test]
    fn sparse_tool_call_indexes_are_kept_apart_and_in_order() {
        let ev = run(
            vec![
                delta(
                    json!({"tool_calls": [{"index": 7, "id": "call_b", "function": {"name": "Read", "arguments": "{\"a\":1}"}}]}),
                ),
                delta(
                    json!({"tool_calls": [{"index": MAX_TOOL_CALLS - 1, "id": "call_c", "function": {"name": "Grep", "arguments": "{}"}}]}),
                ),
                delta(
                    json!({"tool_calls": [{"index": 2, "id": "call_a", "function": {"name": "Bash", "arguments": "{}"}}]}),
                ),
                finish("tool_calls"),
            ],
            false,
        );
        let msg = accumulate(&ev);
        let ids: Vec<&str> = msg["content"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["id"].as_str().unwrap())
            .collect();
        // The first call streams live; the buffered ones follow by index.
        assert_eq!(ids, ["call_b", "call_a", "call_c"]);
        assert_eq!(msg["content"][0]["input"], json!({"a": 1}));
    }

    #[test]
    fn chunks_after_message_stop_are_ignored() {
        let mut tr = StreamTranslator::new("m".into(), "c".into(), 1, false, vec![]);
        let mut out = Vec::new();
        tr.on_chunk(delta(json!({"content": "a"})), &mut out);
        tr.finish(&mut out);
        let len = out.len();
        tr.on_chunk(delta(json!({"content": "b"})), &mut out);
        assert_eq!(out.len(), len);
        assert_eq!(names(&events(&out)).last(), Some(&"message_stop"));
    }

    #[test]
    fn huge_usage_figures_do_not_overflow() {
        let mut tr = StreamTranslator::new("m".into(), "c".into(), 1, false, vec![])
            .window_bound(false, Some(1000));
        let mut out = Vec::new();
        tr.on_chunk(
            chunk(json!({"choices": [{"index": 0, "delta": {"content": "a"}, "finish_reason": "length"}],
                "usage": {"prompt_tokens": u64::MAX, "completion_tokens": u64::MAX,
                          "prompt_tokens_details": {"cached_tokens": u64::MAX}}})),
            &mut out,
        );
        tr.finish(&mut out);
        assert_eq!(
            tr.stop_reason(),
            Some(StopReason::ModelContextWindowExceeded)
        );
        assert_eq!(tr.usage().cache_read_input_tokens, u64::MAX);
    }

    #[test]
    fn failure_after_commit_closes_block_and_emits_error() {
        let mut tr = StreamTranslator::new("m".into(), "c".into(), 1, false, vec![]);
        let mut out = Vec::new();
        tr.on_chunk(delta(json!({"content": "partial"})), &mut out);
        tr.fail(
            &ApiError::new(crate::error::ErrorKind::Api, "backend died"),
            &mut out,
        );
        let ev = events(&out);
        assert_eq!(
            names(&ev),
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "error"
            ]
        );
        assert_eq!(ev[4].1["error"]["type"], "api_error");
        assert!(tr.finished());
    }
}
