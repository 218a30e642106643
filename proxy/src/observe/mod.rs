//! What the proxy tells operators: Prometheus metrics and the access log.

pub mod access_log;
pub mod metrics;
