//! Switchyard operator: `InferenceBackend`s into vLLM workloads, `ModelRoute`s into the routing
//! snapshot the proxies serve from. `build` is pure; the controllers apply what it returns.

pub mod build;
pub mod controller;
pub mod leader;
pub mod metrics;
