//! A whole (non-streaming) OpenAI chat completion → an Anthropic message (pure).

use super::text_tools::{Piece, TextToolParser};
use super::{anthropic_usage, stop_reason, Finish};
use crate::protocol::anthropic::{MessageResponse, OutBlock};
use crate::protocol::openai::ChatResponse;
use serde_json::Value;

pub fn to_anthropic(
    resp: ChatResponse,
    id: String,
    model: String,
    prompt_estimate: u64,
    text_tools: bool,
    stop_sequences: &[String],
) -> MessageResponse {
    let mut msg = MessageResponse::new(id, model);
    msg.usage = anthropic_usage(resp.usage.as_ref(), prompt_estimate);
    let Some(choice) = resp.choices.into_iter().next() else {
        msg.stop_reason = Some(stop_reason(&Finish::default(), false, stop_sequences).0);
        return msg;
    };
    let m = choice.message;
    if let Some(r) = m
        .reasoning_content
        .or(m.reasoning)
        .filter(|r| !r.is_empty())
    {
        msg.content.push(thinking(r));
    }
    if let Some(text) = m.content.filter(|t| !t.is_empty()) {
        if text_tools {
            let mut parser = TextToolParser::new();
            let mut pieces = Vec::new();
            parser.push(&text, &mut pieces);
            parser.finish(&mut pieces);
            for p in pieces {
                msg.content.push(match p {
                    Piece::Text(text) => OutBlock::Text { text },
                    Piece::Reasoning(r) => thinking(r),
                    Piece::ToolCall { name, arguments } => {
                        tool_use(new_tool_id(), name, &arguments)
                    }
                });
            }
        } else {
            msg.content.push(OutBlock::Text { text });
        }
    }
    for call in m.tool_calls.unwrap_or_default() {
        let id = if call.id.is_empty() {
            new_tool_id()
        } else {
            call.id
        };
        msg.content
            .push(tool_use(id, call.function.name, &call.function.arguments));
    }
    let any_tool = msg
        .content
        .iter()
        .any(|b| matches!(b, OutBlock::ToolUse { .. }));
    let finish = Finish {
        reason: choice.finish_reason,
        matched_stop: choice
            .stop_reason
            .and_then(|v| v.as_str().map(str::to_owned)),
    };
    let (reason, sequence) = stop_reason(&finish, any_tool, stop_sequences);
    msg.stop_reason = Some(reason);
    msg.stop_sequence = sequence;
    msg
}

fn thinking(thinking: String) -> OutBlock {
    OutBlock::Thinking {
        thinking,
        signature: String::new(),
    }
}

/// Arguments that are not a JSON object become `{}`: Claude Code then reports the missing
/// parameters to the model, which can retry; a string would crash the tool call instead.
fn tool_use(id: String, name: String, arguments: &str) -> OutBlock {
    let input = match serde_json::from_str::<Value>(arguments) {
        Ok(v @ Value::Object(_)) => v,
        _ => {
            tracing::warn!(tool = %name, "backend returned tool arguments that are not a JSON object");
            Value::Object(Default::default())
        }
    };
    OutBlock::ToolUse { id, name, input }
}

pub fn new_tool_id() -> String {
    format!("toolu_{}", uuid::Uuid::new_v4().simple())
}
