//! Wire types of the protocols the proxy speaks: Anthropic Messages, OpenAI Chat Completions
//! (and, at the front door, Responses), and the server-sent events all of them stream in.
//! Data and framing only; translation between them is in `translate`.

pub mod anthropic;
pub mod openai;
pub mod sse;
