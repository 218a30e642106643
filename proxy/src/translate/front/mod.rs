//! OpenAI front doors. A Chat Completions or Responses request becomes the Messages request
//! every other part of the proxy handles (routing, rules, keys, limits, fixes, the context
//! clamp, failover, translation to the backend's protocol, metrics, the access log), and the
//! Anthropic answer that comes out (a whole message or its SSE events) goes back out in the
//! client's protocol. One request model inside, so each door is two pure translations and no
//! second copy of the request path.

pub mod chat;
pub mod responses;
#[cfg(test)]
mod testkit;

use serde::Deserialize;
use serde_json::Value;

/// A door's stream writer: fed the proxy's Messages stream event by event, it appends the
/// client's protocol to `out`.
pub trait FrontStream: Send {
    /// One Anthropic event: its `event:` name and `data:` JSON text.
    fn event(&mut self, name: &str, data: &str, out: &mut Vec<u8>);
    /// The Messages stream ended without `message_stop` (cut): end the client's stream with
    /// an error the door's way.
    fn cut(&mut self, out: &mut Vec<u8>);
}

impl FrontStream for chat::ChatStream {
    fn event(&mut self, name: &str, data: &str, out: &mut Vec<u8>) {
        chat::ChatStream::event(self, name, data, out)
    }
    fn cut(&mut self, out: &mut Vec<u8>) {
        chat::ChatStream::cut(self, out)
    }
}

impl FrontStream for responses::ResponsesStream {
    fn event(&mut self, name: &str, data: &str, out: &mut Vec<u8>) {
        responses::ResponsesStream::event(self, name, data, out)
    }
    fn cut(&mut self, out: &mut Vec<u8>) {
        responses::ResponsesStream::cut(self, out)
    }
}

/// How an Anthropic answer stopped, as both doors tell their clients.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// `end_turn`, `stop_sequence`, `pause_turn`, and anything unknown.
    Done,
    /// Out of output tokens or context window.
    Length,
    ToolUse,
    Refusal,
}

impl Stop {
    pub(super) fn of(stop_reason: Option<&str>) -> Self {
        match stop_reason {
            Some("max_tokens" | "model_context_window_exceeded") => Stop::Length,
            Some("tool_use") => Stop::ToolUse,
            Some("refusal") => Stop::Refusal,
            _ => Stop::Done,
        }
    }
}

/// Anthropic usage figures, as far as an answer reported them.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub(super) struct Usage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

impl Usage {
    /// The figures `usage` holds as whole numbers (others count as not reported).
    pub(super) fn read(usage: Option<&Value>) -> Self {
        let n = |key: &str| usage.and_then(|u| u.get(key)).and_then(Value::as_u64);
        Usage {
            input_tokens: n("input_tokens"),
            output_tokens: n("output_tokens"),
            cache_creation_input_tokens: n("cache_creation_input_tokens"),
            cache_read_input_tokens: n("cache_read_input_tokens"),
        }
    }

    /// Figures reported later replace earlier ones (`message_delta` after `message_start`).
    pub(super) fn update(&mut self, later: Usage) {
        self.input_tokens = later.input_tokens.or(self.input_tokens);
        self.output_tokens = later.output_tokens.or(self.output_tokens);
        self.cache_creation_input_tokens = later
            .cache_creation_input_tokens
            .or(self.cache_creation_input_tokens);
        self.cache_read_input_tokens = later
            .cache_read_input_tokens
            .or(self.cache_read_input_tokens);
    }

    /// Every prompt token, cached or not, as OpenAI counts them; Anthropic's
    /// `input_tokens` leaves cache reads and writes out.
    pub(super) fn prompt(&self) -> u64 {
        self.input_tokens
            .unwrap_or(0)
            .saturating_add(self.cache_read())
            .saturating_add(self.cache_creation())
    }

    pub(super) fn output(&self) -> u64 {
        self.output_tokens.unwrap_or(0)
    }

    pub(super) fn cache_read(&self) -> u64 {
        self.cache_read_input_tokens.unwrap_or(0)
    }

    pub(super) fn cache_creation(&self) -> u64 {
        self.cache_creation_input_tokens.unwrap_or(0)
    }
}
