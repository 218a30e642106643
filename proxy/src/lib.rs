//! Switchyard translation proxy: serves the Anthropic Messages API in front of vLLM
//! (OpenAI Chat Completions) and Anthropic-protocol backends.

pub mod anthropic;
pub mod config;
pub mod context;
pub mod error;
pub mod fixes;
pub mod metrics;
pub mod openai;
pub mod route;
pub mod server;
pub mod translate;
pub mod upstream;
