//! Forwarding a confirmed request to the upstream and its answer back.

mod forward;
pub mod headers;

pub use forward::{ForwardContext, ProxyError, Upstream};
