//! What a listener asks of whatever answers its requests. In transport
//! words only: the listener knows requests and connections, not what
//! answers them.

use bytes::Bytes;
use http::{HeaderMap, Request, Response};
use hyper::body::Incoming;

use super::{Body, ConnInfo};

/// What answers the requests of a listener. Infallible by type: an error
/// would make hyper drop the connection without an answer.
pub trait Handler: Send + Sync + 'static {
    fn handle(
        &self,
        req: Request<Incoming>,
        conn: ConnInfo,
    ) -> impl Future<Output = Response<Body>> + Send;

    /// A plain HTTP/1.1 `GET` (no body, no upgrade) that the listener
    /// parsed itself: `Some` answers it there; `None` leaves it, and the
    /// rest of its connection, to hyper and `handle`. The answer's body
    /// is whole by type, so the listener writes it in one piece; a body
    /// that could stream is refused by the compiler:
    ///
    /// ```compile_fail,E0053
    /// use authgate::wire::{Body, ConnInfo, Handler};
    /// use http::{HeaderMap, Request, Response};
    /// use hyper::body::Incoming;
    ///
    /// struct Streams;
    ///
    /// impl Handler for Streams {
    ///     async fn handle(&self, _: Request<Incoming>, _: ConnInfo) -> Response<Body> {
    ///         Response::new(authgate::wire::full(""))
    ///     }
    ///
    ///     fn answer_plain_get(&self, _: &str, _: &HeaderMap, _: ConnInfo) -> Option<Response<Body>> {
    ///         None
    ///     }
    /// }
    /// ```
    fn answer_plain_get(
        &self,
        _path: &str,
        _headers: &HeaderMap,
        _conn: ConnInfo,
    ) -> Option<Response<Bytes>> {
        None
    }

    /// At shutdown: ends the connections this handler took over after an
    /// upgrade (they left hyper's sight at the switch, so its graceful
    /// shutdown cannot see them) and waits until they are gone. The
    /// listener bounds the wait, as it does its own connections'.
    fn shutdown_upgraded(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}
