//! Switchyard's API: the routing snapshot schema shared by the operator and the proxies.

pub mod snapshot;
pub mod validate;
pub mod wire;

pub use snapshot::*;
pub use validate::FieldError;
pub mod compile;
pub mod crd;
pub mod version;
pub use compile::{compile, CompileInput, Compiled};
pub use version::version_of;
