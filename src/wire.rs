//! The HTTP vocabulary that transport, routing and the proxy share: one
//! response body type for generated pages and streamed upstream bodies,
//! what the accept loop knows of a connection, and the `Handler` a
//! listener serves. A leaf: it imports nothing of ours.

mod handler;

pub use handler::Handler;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full};
use tokio::sync::OwnedSemaphorePermit;

pub type Body = BoxBody<Bytes, hyper::Error>;

/// A body that is whole at once.
pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into())
        .map_err(|never| match never {})
        .boxed()
}

/// Per-connection facts handed down from the accept loop.
#[derive(Debug, Clone, Copy)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    /// The connection came in over TLS (our own, not a proxy's in front).
    pub tls: bool,
}

impl ConnInfo {
    /// The scheme the client used to reach this listener.
    pub fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }
}

/// The connection slot (`server.max_connections`) of the connection an
/// upgrade request came on. The listener puts it in the request's
/// extensions when hyper offers the upgrade; whoever takes the upgraded
/// connection over holds it until that closes, since hyper's connection
/// ends (and gives its own share back) at the switch.
#[derive(Clone)]
pub struct ConnectionSlot(pub Arc<OwnedSemaphorePermit>);
