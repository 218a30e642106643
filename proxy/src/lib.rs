//! Switchyard translation proxy: serves the Anthropic Messages API in front of vLLM
//! (OpenAI Chat Completions) and Anthropic-protocol backends.

pub mod access_log;
pub mod anthropic;
pub mod balance;
pub mod cluster;
pub mod config;
pub mod context;
pub mod context_edits;
pub mod error;
pub mod fixes;
pub mod forward;
pub mod health;
pub mod keys;
pub mod litellm;
pub mod metrics;
pub mod openai;
pub mod relay;
pub mod reload;
pub mod route;
pub mod serve;
pub mod server;
pub mod server_tools;
pub mod translate;
pub mod upstream;
