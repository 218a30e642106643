//! Switchyard translation proxy: serves the Anthropic Messages API in front of vLLM
//! (OpenAI Chat Completions) and Anthropic-protocol backends.
//!
//! Layers, each depending only on those below it (ARCHITECTURE.md has the request's path):
//! `http` (client and admin APIs) → `forward` (a request's life: plan, attempts, relay) →
//! `routing` (routes, rules, keys, balancing, outliers) · `upstream` (client, discovery,
//! health) · `fixes` and `translate` (pure) → `protocol` (wire types), with `config`
//! (snapshot, reload, cluster mode, LiteLLM import) and `observe` (metrics, access log) beside.

pub mod config;
pub mod error;
pub mod fixes;
pub mod forward;
pub mod http;
pub mod observe;
pub mod protocol;
pub mod routing;
pub mod state;
pub mod translate;
pub mod upstream;
