//! Forwarding a confirmed request to the upstream and its answer back.

mod error;
mod forward;
pub mod headers;
mod pool;
mod upgrade;

pub use error::ProxyError;
pub use forward::{ForwardContext, Upstream};
pub use headers::StrippedHeaders;
pub use upgrade::{TUNNEL_IDLE, Tunnels, tunnels};
