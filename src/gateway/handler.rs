//! The gateway as the listener's `Handler`: every request through hyper,
//! and the forward-auth questions on the listener's fast path.

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use hyper::body::Incoming;

use super::Gateway;
use super::forward_auth::Flavor;
use super::route::Route;
use crate::wire::{Body, ConnInfo, Handler};

impl Handler for Gateway {
    fn handle(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> impl Future<Output = Response<Body>> + Send {
        Gateway::handle(self, req, conn)
    }

    /// A plain `GET` of a forward-auth path is answered without hyper,
    /// which is most of what nginx and Traefik send. Anything else is
    /// `None`.
    fn answer_plain_get(
        &self,
        path: &str,
        headers: &HeaderMap,
        conn: ConnInfo,
    ) -> Option<Response<Bytes>> {
        let route = self.route(path);
        let flavor = match route {
            Route::AuthRequest => Flavor::Nginx,
            Route::ForwardAuth => Flavor::Forward,
            _ => return None,
        };
        let response = self.forward_auth(headers, conn, flavor);
        self.requests[route as usize].answered(response.status());
        Some(response)
    }

    /// The proxy's WebSocket (and other upgrade) tunnels.
    fn shutdown_upgraded(&self) -> impl Future<Output = ()> + Send {
        crate::proxy::tunnels().shutdown()
    }
}
