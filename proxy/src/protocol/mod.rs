//! Wire types of the two protocols the proxy speaks: Anthropic Messages and OpenAI Chat
//! Completions. Data only; translation between them is in `translate`.

pub mod anthropic;
pub mod openai;
