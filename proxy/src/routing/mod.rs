//! Which backend and endpoint a request goes to, and whether it may: routes and task rules,
//! client keys and limits, load balancing with session affinity, outlier ejection. Pure.

pub mod balance;
pub mod keys;
pub mod route;
