//! Forwarding a confirmed request to the upstream and its answer back.

mod forward;
pub mod headers;
mod pool;
mod upgrade;

pub use forward::{ForwardContext, ProxyError, Upstream};
pub use upgrade::{TUNNEL_IDLE, Tunnels, tunnels};

/// Whether the request asks to switch protocols (WebSocket): HTTP/1.1 with
/// `Connection: upgrade` and an `Upgrade` header.
pub fn is_upgrade<B>(req: &http::Request<B>) -> bool {
    upgrade::requested(req).is_some()
}
