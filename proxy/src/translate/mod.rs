//! Translation between the Anthropic Messages API and OpenAI Chat Completions. Pure: no I/O,
//! so every mapping is tested on plain values.
//!
//! `request`, `response`, `stream`: a Messages request to an OpenAI-protocol backend and its
//! answer back. `front`: the OpenAI front doors (Chat Completions, Responses) into the
//! Messages request the rest of the proxy handles, and its answer back out.

pub mod front;
pub mod request;
pub mod response;
pub mod stream;
pub mod text_tools;

use crate::protocol::anthropic::{StopReason, Usage};
use crate::protocol::openai::ChatUsage;

/// How the backend said generation ended.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Finish {
    /// OpenAI `finish_reason`: `stop`, `length`, `tool_calls`, …
    pub reason: Option<String>,
    /// vLLM's `stop_reason`: the stop string that matched, if any.
    pub matched_stop: Option<String>,
}

/// `finish_reason` → Anthropic `stop_reason` (and the matched `stop_sequence`).
pub fn stop_reason(
    finish: &Finish,
    emitted_tool_use: bool,
    stop_sequences: &[String],
) -> (StopReason, Option<String>) {
    match finish.reason.as_deref() {
        Some("length") => (StopReason::MaxTokens, None),
        Some("tool_calls" | "function_call") => (StopReason::ToolUse, None),
        _ if emitted_tool_use => (StopReason::ToolUse, None),
        _ => match &finish.matched_stop {
            Some(s) if stop_sequences.iter().any(|q| q == s) => {
                (StopReason::StopSequence, Some(s.clone()))
            }
            _ => (StopReason::EndTurn, None),
        },
    }
}

/// OpenAI usage → Anthropic usage. Anthropic's `input_tokens` excludes cache reads, which are
/// reported apart; with no usage from the backend the prompt estimate stands in.
pub fn anthropic_usage(usage: Option<&ChatUsage>, prompt_estimate: u64) -> Usage {
    match usage {
        Some(u) => {
            let cached = u.cached_tokens().min(u.prompt_tokens);
            Usage {
                input_tokens: u.prompt_tokens - cached,
                output_tokens: u.completion_tokens,
                cache_creation_input_tokens: 0,
                cache_read_input_tokens: cached,
            }
        }
        None => Usage {
            input_tokens: prompt_estimate,
            ..Usage::default()
        },
    }
}

/// Whether prompt + output reached the window: a `length` finish then means the window, not
/// the client's `max_tokens`, ended the answer (vLLM ≥ 0.32 lowers `max_tokens` to the
/// window's rest without saying so).
pub fn fills_window(usage: Option<&ChatUsage>, window: Option<u32>) -> bool {
    usage.is_some_and(|u| {
        // Backend-sent figures: saturate rather than overflow.
        crate::fixes::context::reaches_window(
            u.prompt_tokens.saturating_add(u.completion_tokens),
            window,
        )
    })
}
