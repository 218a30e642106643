//! What the proxy tells operators: Prometheus metrics, the access log and the request
//! records behind the admin UI.

pub mod access_log;
pub mod capture;
pub mod history;
pub mod metrics;
pub mod record;
pub mod records;
