//! OpenAI chat-completion chunks → the exact Anthropic SSE event sequence (pure).
//!
//! Anthropic streams one content block at a time, each `content_block_start`, deltas,
//! `content_block_stop`, with indices counting up from 0. OpenAI deltas mix reasoning, text and
//! several tool calls freely, so the translator opens and closes blocks as the kind of output
//! changes. The first tool call is streamed live; arguments for any other call that arrive
//! while it is open wait in a buffer and are emitted, complete, when it closes (vLLM's parsers
//! emit calls one after another, so in practice every call streams live).

use super::text_tools::{Piece, TextToolParser};
use super::{anthropic_usage, stop_reason, Finish};
use crate::anthropic::{MessageResponse, StopReason, Usage};
use crate::error::ApiError;
use crate::openai::{ChatChunk, ChatUsage, ToolCallDelta};
use serde::Serialize;

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
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.name().as_bytes());
    out.extend_from_slice(b"\ndata: ");
    serde_json::to_writer(&mut *out, event).expect("serializing to a Vec cannot fail");
    out.extend_from_slice(b"\n\n");
}

/// The `ping` event, for keeping a silent stream alive.
pub fn ping(out: &mut Vec<u8>) {
    write_event(out, &Event::Ping);
}

/// The in-stream `error` event, for failures after the stream has been committed.
pub fn error_event(out: &mut Vec<u8>, err: &ApiError) {
    out.extend_from_slice(b"event: error\ndata: ");
    serde_json::to_writer(&mut *out, &err.body()).expect("serializing to a Vec cannot fail");
    out.extend_from_slice(b"\n\n");
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
    tools: Vec<ToolCallState>,
    text_tools: Option<TextToolParser>,
    stop_sequences: Vec<String>,
    finish: Finish,
    any_tool_use: bool,
    usage: Option<ChatUsage>,
    /// Fragments for tool calls that were already closed (counted, logged by the caller).
    pub anomalies: u32,
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
            tools: Vec::new(),
            text_tools: text_tools.then(TextToolParser::new),
            stop_sequences,
            finish: Finish::default(),
            any_tool_use: false,
            usage: None,
            anomalies: 0,
        }
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
        if self.tools.len() <= slot {
            self.tools.resize_with(slot + 1, ToolCallState::default);
        }
        let state = &mut self.tools[slot];
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
        if state.emitted {
            if !args.is_empty() {
                self.anomalies += 1;
            }
            return;
        }
        match self.open {
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
        let state = &mut self.tools[slot];
        state.emitted = true;
        let id = state
            .id
            .clone()
            .unwrap_or_else(|| super::response::new_tool_id());
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
        self.next_index += 1;
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
        for slot in 0..self.tools.len() {
            let state = &mut self.tools[slot];
            if state.emitted || (state.name.is_none() && state.pending.is_empty()) {
                continue;
            }
            state.emitted = true;
            let id = state
                .id
                .take()
                .unwrap_or_else(|| super::response::new_tool_id());
            let name = state.name.clone().unwrap_or_default();
            let args = std::mem::take(&mut state.pending);
            self.whole_tool(&id, &name, &args, out);
        }
    }
}
