//! Forwarding a confirmed request to the upstream and its answer back.

mod forward;
pub mod headers;
mod pool;
mod upgrade;

pub use forward::{ForwardContext, ProxyError, Upstream};
pub use headers::StrippedHeaders;
pub use upgrade::{TUNNEL_IDLE, Tunnels, tunnels};
