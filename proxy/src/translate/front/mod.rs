//! OpenAI front doors. A Chat Completions or Responses request becomes the Messages request
//! every other part of the proxy handles (routing, rules, keys, limits, fixes, the context
//! clamp, failover, translation to the backend's protocol, metrics, the access log), and the
//! Anthropic answer that comes out (a whole message or its SSE events) goes back out in the
//! client's protocol. One request model inside, so each door is two pure translations and no
//! second copy of the request path.

pub mod chat;
pub mod responses;

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
