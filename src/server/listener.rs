//! The accept loop: per TCP connection, the plain-`GET` fast path
//! (`fast_path.rs`), then a hyper-util auto connection (HTTP/1.1 or HTTP/2:
//! h2c by prior knowledge in plain text, h2 by ALPN over TLS) for whatever
//! the fast path leaves, or a hyper HTTP/1.1 connection when the fast path
//! answered requests first; a header-read timeout, a connection cap, and
//! graceful shutdown bounded by `server.shutdown_timeout`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::{Service, service_fn};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::{GracefulShutdown, Watcher};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

use super::fast_path::{self, Limits, Outcome, Replay, log_header_timeout};
use super::tls::{self, LiveTls};
use crate::config::ServerConfig;
use crate::wire::{Body, ConnInfo, ConnectionSlot, Handler};

/// hyper refuses a smaller read buffer than this.
const MIN_BUF_SIZE: usize = 8192;

const BUSY_RESPONSE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

/// Everything a connection task needs, shared by all of a listener's.
struct Connections<H> {
    builder: auto::Builder<TokioExecutor>,
    /// The same HTTP/1 settings as `builder`'s, for connections that must
    /// stay HTTP/1.1.
    http1: http1::Builder,
    handler: Arc<H>,
    /// `Some`: every connection starts with a TLS handshake.
    tls: Option<Arc<LiveTls>>,
    limits: Limits,
    /// Cancelled at shutdown: ends the fast path's idle connections, as
    /// `GracefulShutdown` does hyper's.
    stop: CancellationToken,
}

pub async fn serve<H: Handler>(
    listener: TcpListener,
    tls: Option<Arc<LiveTls>>,
    handler: Arc<H>,
    server: &ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let connections = Arc::new(Connections::new(handler, tls, HttpSettings::of(server)));
    let graceful = GracefulShutdown::new();
    let slots = Arc::new(Semaphore::new(server.max_connections));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let Ok(slot) = slots.clone().try_acquire_owned() else {
                        tokio::spawn(refuse_busy(stream));
                        continue;
                    };
                    let _ = stream.set_nodelay(true);
                    let connections = connections.clone();
                    let watcher = graceful.watcher();
                    tokio::spawn(async move {
                        connections.run(stream, peer, watcher, slot).await;
                    });
                }
                Err(e) => accept_failed(e).await,
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    connections.stop.cancel();
    // Upgraded connections (WebSockets) left hyper's sight at the 101; they
    // are ended here too, within the same bound.
    let upgraded = connections.handler.shutdown_upgraded();
    tokio::select! {
        _ = async { tokio::join!(graceful.shutdown(), upgraded) } => {}
        () = tokio::time::sleep(server.shutdown_timeout) => {
            tracing::warn!("shutdown timeout reached; closing remaining connections");
        }
    }
}

impl<H: Handler> Connections<H> {
    fn new(handler: Arc<H>, tls: Option<Arc<LiveTls>>, settings: HttpSettings) -> Self {
        Connections {
            builder: connection_builder(settings),
            http1: http1_builder(settings),
            handler,
            tls,
            limits: Limits {
                header_read_timeout: settings.header_read_timeout,
                max_head_bytes: settings.max_buf_size(),
            },
            stop: CancellationToken::new(),
        }
    }

    /// One connection, in its own task: the TLS handshake (if any), then
    /// HTTP until either side closes or shutdown drains it. The slot is
    /// given back when the connection ends, or when a tunnel it became
    /// closes.
    async fn run(
        &self,
        stream: TcpStream,
        peer: SocketAddr,
        watcher: Watcher,
        slot: OwnedSemaphorePermit,
    ) {
        let Some(tls) = &self.tls else {
            let conn = ConnInfo { peer, tls: false };
            return self.serve(stream, conn, watcher, slot).await;
        };
        // The handshake is part of what a client must send promptly.
        let limit = self.limits.header_read_timeout;
        let Some(stream) = tls::handshake(tls.acceptor(), stream, limit).await else {
            return;
        };
        let conn = ConnInfo { peer, tls: true };
        if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
            let io = Replay::new(Bytes::new(), stream);
            return self.serve_http(io, conn, watcher, slot).await;
        }
        self.serve(stream, conn, watcher, slot).await;
    }

    /// HTTP/1.1 (or h2c by prior knowledge): the fast path first.
    async fn serve<I>(&self, io: I, conn: ConnInfo, watcher: Watcher, slot: OwnedSemaphorePermit)
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let handler = &*self.handler;
        match fast_path::serve(io, handler, conn, self.limits, &self.stop).await {
            Outcome::Closed => {}
            Outcome::HandOff {
                io,
                answered: false,
            } => self.serve_http(io, conn, watcher, slot).await,
            Outcome::HandOff { io, answered: true } => {
                self.serve_http1(io, conn, watcher, slot).await
            }
        }
    }

    async fn serve_http<I>(
        &self,
        io: Replay<I>,
        conn: ConnInfo,
        watcher: Watcher,
        slot: OwnedSemaphorePermit,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let service = self.service(conn, slot);
        let connection = self
            .builder
            .serve_connection_with_upgrades(TokioIo::new(io), service);
        if let Err(e) = watcher.watch(connection).await {
            log_connection_error(e.as_ref(), &conn);
        }
    }

    /// HTTP/1.1 only. hyper-util's graceful shutdown does not take this
    /// connection type, so the shutdown is asked for here; `_watcher`
    /// holds the drain open until the connection ends.
    async fn serve_http1<I>(
        &self,
        io: Replay<I>,
        conn: ConnInfo,
        _watcher: Watcher,
        slot: OwnedSemaphorePermit,
    ) where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let service = self.service(conn, slot);
        let connection = self
            .http1
            .serve_connection(TokioIo::new(io), service)
            .with_upgrades();
        tokio::pin!(connection);
        let ended = tokio::select! {
            ended = connection.as_mut() => ended,
            () = self.stop.cancelled() => {
                connection.as_mut().graceful_shutdown();
                connection.await
            }
        };
        if let Err(e) = ended {
            log_connection_error(&e, &conn);
        }
    }

    /// The handler as hyper's service. A request hyper may upgrade carries
    /// the connection's slot to the proxy, whose tunnel keeps it
    /// (`ConnectionSlot`); others never see it.
    fn service(
        &self,
        conn: ConnInfo,
        slot: OwnedSemaphorePermit,
    ) -> impl Service<
        Request<Incoming>,
        Response = Response<Body>,
        Error = Infallible,
        Future: Send + 'static,
    > + Clone
    + Send
    + 'static {
        let handler = self.handler.clone();
        let slot = ConnectionSlot(Arc::new(slot));
        service_fn(move |mut req: Request<Incoming>| {
            let handler = handler.clone();
            if req.extensions().get::<OnUpgrade>().is_some() {
                req.extensions_mut().insert(slot.clone());
            }
            async move { Ok::<_, Infallible>(handler.handle(req, conn).await) }
        })
    }
}

/// The limits hyper enforces itself are logged here, once per event; other
/// connection errors (a client going away) only at debug.
fn log_connection_error(e: &(dyn std::error::Error + 'static), conn: &ConnInfo) {
    let peer = conn.peer;
    match e.downcast_ref::<hyper::Error>() {
        Some(h) if h.is_timeout() => log_header_timeout(conn),
        Some(h) if h.is_parse_too_large() => {
            tracing::warn!(%peer, "request head over server.max_header_bytes; answered 431");
        }
        _ => tracing::debug!(error = %e, %peer, "connection ended with an error"),
    }
}

/// What hyper and the fast path take from `server.*`.
#[derive(Debug, Clone, Copy)]
struct HttpSettings {
    header_read_timeout: Duration,
    max_header_bytes: usize,
    keepalive_timeout: Duration,
}

impl HttpSettings {
    fn of(server: &ServerConfig) -> Self {
        HttpSettings {
            header_read_timeout: server.header_read_timeout,
            max_header_bytes: server.max_header_bytes,
            keepalive_timeout: server.keepalive_timeout,
        }
    }

    /// hyper's head limit: its read buffer, which hyper keeps at least
    /// `MIN_BUF_SIZE`.
    fn max_buf_size(self) -> usize {
        self.max_header_bytes.max(MIN_BUF_SIZE)
    }
}

fn connection_builder(server: HttpSettings) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Without a timer hyper silently skips the header timeout (slowloris).
    // The same settings as `http1_builder`.
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .max_buf_size(server.max_buf_size());
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(server.keepalive_timeout));
    builder
}

/// The HTTP/1 settings of `connection_builder`, for a connection that
/// must not become HTTP/2.
fn http1_builder(server: HttpSettings) -> http1::Builder {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .max_buf_size(server.max_buf_size());
    builder
}

async fn refuse_busy(mut stream: TcpStream) {
    tracing::warn!("max_connections reached; refusing a connection with 503");
    let _ = stream.write_all(BUSY_RESPONSE).await;
    let _ = stream.shutdown().await;
}

/// Per-connection errors (reset, aborted) are ignored; others, such as
/// running out of file descriptors, are logged and slowed down.
async fn accept_failed(e: std::io::Error) {
    use std::io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

#[cfg(test)]
mod differential;

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    /// Records whether the listener asked it to end what it took over.
    #[derive(Default)]
    struct Upgrades {
        ended: AtomicBool,
    }

    impl Handler for Upgrades {
        async fn handle(&self, _req: Request<Incoming>, _conn: ConnInfo) -> Response<Body> {
            Response::new(crate::wire::full(Bytes::new()))
        }

        async fn shutdown_upgraded(&self) {
            self.ended.store(true, Ordering::SeqCst);
        }
    }

    fn server(listen: SocketAddr) -> ServerConfig {
        ServerConfig {
            listen,
            public_url: "http://127.0.0.1/".parse().unwrap(),
            path_prefix: "/_authgate".to_owned(),
            trusted_proxies: Vec::new(),
            header_read_timeout: Duration::from_secs(5),
            max_header_bytes: MIN_BUF_SIZE,
            max_form_bytes: 1024,
            max_connections: 4,
            keepalive_timeout: Duration::from_secs(5),
            shutdown_timeout: Duration::from_secs(5),
            authelia_paths: false,
            tls: None,
            redirect_http: None,
            allowed_upgrades: Vec::new(),
            hsts: false,
            admin_socket: None,
        }
    }

    /// Upgraded connections left hyper's sight at the switch: the
    /// listener's shutdown asks the handler to end them.
    #[tokio::test]
    async fn shutdown_ends_the_handlers_upgraded_connections() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let server = server(listener.local_addr().unwrap());
        let handler = Arc::new(Upgrades::default());
        serve(
            listener,
            None,
            handler.clone(),
            &server,
            std::future::ready(()),
        )
        .await;
        assert!(handler.ended.load(Ordering::SeqCst));
    }
}
