//! Keep-alive connections to the one upstream, HTTP/1.1 over TCP or TLS.
//!
//! A request takes the most recently returned connection (the one least
//! likely to be closing) and gives it back when its response body has been
//! read to the end; a body dropped half-read takes its connection with it.
//! One upstream needs no pool keyed by host: this replaces hyper-util's
//! general client, whose checkout, keyed maps and per-request task cost
//! more than the rest of a proxied request (issue 6).

use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use super::ProxyError;

/// Idle connections are dropped before a typical upstream's own keep-alive
/// timeout, so a request is rarely sent on a closing socket.
const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Idle connections kept at most; more are closed when given back.
const MAX_IDLE: usize = 512;

/// What a request body must be to go upstream.
pub trait RequestBody:
    Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static
{
}

impl<T> RequestBody for T where
    T: Body<Data = Bytes, Error: Into<Box<dyn std::error::Error + Send + Sync>>> + Send + 'static
{
}

/// Where connections go, and how.
#[derive(Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// `Some` for an https upstream: the handshake's configuration and the
    /// name the certificate must carry.
    pub tls: Option<(TlsConnector, ServerName<'static>)>,
    pub connect_timeout: Duration,
}

/// Generic over the request body for tests; the gateway sends the
/// client's `Incoming`.
pub struct UpstreamPool<B = Incoming> {
    endpoint: Endpoint,
    /// Oldest first: taken from the back, expired from the front.
    idle: Mutex<Vec<Idle<B>>>,
}

struct Idle<B> {
    sender: SendRequest<B>,
    since: Instant,
}

impl<B: RequestBody> UpstreamPool<B> {
    pub fn new(endpoint: Endpoint) -> Arc<Self> {
        Arc::new(UpstreamPool {
            endpoint,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends `req` (origin-form URI, `Host` set) on an idle connection, or
    /// on a new one when none is left. A request that a closing connection
    /// did not take is sent again on the next one.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Request<B>,
    ) -> Result<Response<PooledBody<B>>, ProxyError> {
        while let Some(mut sender) = self.take_idle() {
            if sender.ready().await.is_err() {
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(response) => return Ok(self.lease(sender, response)),
                Err(mut err) => match err.take_message() {
                    Some(unsent) => req = unsent,
                    None => return Err(ProxyError::Request(err.into_error().to_string())),
                },
            }
        }
        let mut sender = self.connect().await?;
        let response = sender
            .send_request(req)
            .await
            .map_err(|e| ProxyError::Request(e.to_string()))?;
        Ok(self.lease(sender, response))
    }

    /// The response with its connection attached to the body, except after
    /// a 101: that connection is now the tunnel's.
    fn lease(
        self: &Arc<Self>,
        sender: SendRequest<B>,
        response: Response<Incoming>,
    ) -> Response<PooledBody<B>> {
        let lease =
            (response.status() != StatusCode::SWITCHING_PROTOCOLS).then(|| (sender, self.clone()));
        response.map(|inner| PooledBody { inner, lease })
    }

    fn take_idle(&self) -> Option<SendRequest<B>> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        while let Some(entry) = idle.pop() {
            if !entry.sender.is_closed() && entry.since.elapsed() < IDLE_TIMEOUT {
                return Some(entry.sender);
            }
        }
        None
    }

    fn give_back(&self, sender: SendRequest<B>) {
        if sender.is_closed() {
            return;
        }
        let now = Instant::now();
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let expired = idle
            .iter()
            .take_while(|entry| now.duration_since(entry.since) >= IDLE_TIMEOUT)
            .count();
        idle.drain(..expired);
        if idle.len() < MAX_IDLE {
            idle.push(Idle { sender, since: now });
        }
    }

    async fn connect(&self) -> Result<SendRequest<B>, ProxyError> {
        let endpoint = &self.endpoint;
        let tcp = tokio::time::timeout(endpoint.connect_timeout, self.connect_tcp())
            .await
            .map_err(|_| ProxyError::Connect("connect timed out".into()))??;
        match &endpoint.tls {
            None => handshake(tcp).await,
            Some((connector, name)) => {
                let tls = tokio::time::timeout(
                    endpoint.connect_timeout,
                    connector.connect(name.clone(), tcp),
                )
                .await
                .map_err(|_| ProxyError::Connect("TLS handshake timed out".into()))?
                .map_err(|e| ProxyError::Connect(format!("TLS handshake: {e}")))?;
                handshake(tls).await
            }
        }
    }

    /// Every address the name resolves to, in order, until one answers.
    async fn connect_tcp(&self) -> Result<TcpStream, ProxyError> {
        let endpoint = &self.endpoint;
        let addrs = tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port))
            .await
            .map_err(|e| ProxyError::Connect(format!("resolving {}: {e}", endpoint.host)))?;
        let mut last = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(tcp) => {
                    let _ = tcp.set_nodelay(true);
                    return Ok(tcp);
                }
                Err(e) => last = Some(format!("{addr}: {e}")),
            }
        }
        Err(ProxyError::Connect(last.unwrap_or_else(|| {
            format!("{} resolves to no address", endpoint.host)
        })))
    }
}

/// HTTP/1.1 on a fresh connection, driven by its own task (with upgrades,
/// for WebSocket tunnels).
async fn handshake<T, B>(io: T) -> Result<SendRequest<B>, ProxyError>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: RequestBody,
{
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(|e| ProxyError::Connect(e.to_string()))?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}

/// An upstream response body that gives its connection back to the pool
/// once read to the end.
pub struct PooledBody<B: RequestBody = Incoming> {
    inner: Incoming,
    lease: Option<(SendRequest<B>, Arc<UpstreamPool<B>>)>,
}

impl<B: RequestBody> PooledBody<B> {
    fn release(&mut self) {
        if let Some((sender, pool)) = self.lease.take() {
            pool.give_back(sender);
        }
    }
}

impl<B: RequestBody> Body for PooledBody<B> {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            // A broken body leaves the connection unusable.
            Poll::Ready(Some(Err(_))) => self.lease = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl<B: RequestBody> Drop for PooledBody<B> {
    /// A body read to its end (or empty) frees the connection; one dropped
    /// half-read does not: hyper closes that connection.
    fn drop(&mut self) {
        if self.inner.is_end_stream() {
            self.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::convert::Infallible;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use http_body_util::{BodyExt, Empty, Full};
    use hyper::service::service_fn;
    use tokio::net::TcpListener;

    type Pool = Arc<UpstreamPool<Empty<Bytes>>>;

    /// An upstream that counts its connections. `/big` answers 1 MiB,
    /// `/close` asks to close the connection, anything else "hello".
    async fn upstream() -> (u16, Arc<AtomicUsize>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let counter = accepted.clone();
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                counter.fetch_add(1, Ordering::SeqCst);
                let service = service_fn(|req: Request<Incoming>| async move {
                    let mut response = Response::new(Full::new(Bytes::from_static(b"hello")));
                    match req.uri().path() {
                        "/big" => {
                            *response.body_mut() = Full::new(Bytes::from(vec![b'x'; 1 << 20]))
                        }
                        "/close" => {
                            response
                                .headers_mut()
                                .insert(http::header::CONNECTION, "close".parse().unwrap());
                        }
                        _ => {}
                    }
                    Ok::<_, Infallible>(response)
                });
                tokio::spawn(
                    hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service),
                );
            }
        });
        (port, accepted)
    }

    fn pool(port: u16) -> Pool {
        UpstreamPool::new(Endpoint {
            host: "127.0.0.1".into(),
            port,
            tls: None,
            connect_timeout: Duration::from_secs(2),
        })
    }

    async fn get(pool: &Pool, path: &str) -> Response<PooledBody<Empty<Bytes>>> {
        let req = Request::get(path)
            .header(http::header::HOST, "upstream")
            .body(Empty::new())
            .unwrap();
        pool.send(req).await.unwrap()
    }

    /// The whole body of `path`, read to the end.
    async fn fetch(pool: &Pool, path: &str) -> Bytes {
        read(get(pool, path).await).await
    }

    async fn read(response: Response<PooledBody<Empty<Bytes>>>) -> Bytes {
        response.into_body().collect().await.unwrap().to_bytes()
    }

    #[tokio::test]
    async fn a_body_read_to_the_end_gives_its_connection_back() {
        let (port, accepted) = upstream().await;
        let pool = pool(port);
        for _ in 0..5 {
            assert_eq!(fetch(&pool, "/").await, "hello");
        }
        assert_eq!(fetch(&pool, "/big").await.len(), 1 << 20);
        assert_eq!(fetch(&pool, "/").await, "hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_body_dropped_half_read_takes_its_connection_along() {
        let (port, accepted) = upstream().await;
        let pool = pool(port);
        let mut big = get(&pool, "/big").await.into_body();
        let first = big.frame().await.unwrap().unwrap();
        assert!(first.data_ref().is_some_and(|d| d.len() < 1 << 20));
        drop(big);
        assert_eq!(fetch(&pool, "/").await, "hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_connection_the_upstream_closed_is_replaced() {
        let (port, accepted) = upstream().await;
        let pool = pool(port);
        assert_eq!(fetch(&pool, "/close").await, "hello");
        assert_eq!(fetch(&pool, "/").await, "hello");
        assert_eq!(fetch(&pool, "/").await, "hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn concurrent_requests_each_get_a_connection_and_all_come_back() {
        let (port, accepted) = upstream().await;
        let pool = pool(port);
        let responses = held_at_once(&pool, 4).await;
        for response in responses {
            assert_eq!(read(response).await, "hello");
        }
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
        assert_eq!(pool.idle.lock().unwrap().len(), 4);
        assert_eq!(fetch(&pool, "/").await, "hello");
        assert_eq!(accepted.load(Ordering::SeqCst), 4);
    }

    /// `n` responses held at once, so no connection is free in between.
    async fn held_at_once(pool: &Pool, n: usize) -> Vec<Response<PooledBody<Empty<Bytes>>>> {
        let mut held = Vec::new();
        for _ in 0..n {
            held.push(get(pool, "/").await);
        }
        held
    }

    #[tokio::test]
    async fn a_closed_port_is_a_connect_error() {
        let port = {
            let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
            listener.local_addr().unwrap().port()
        };
        let req = Request::get("/")
            .header(http::header::HOST, "upstream")
            .body(Empty::new())
            .unwrap();
        let Err(err) = pool(port).send(req).await else {
            panic!("a closed port answered");
        };
        assert!(matches!(err, ProxyError::Connect(_)), "{err}");
    }
}
