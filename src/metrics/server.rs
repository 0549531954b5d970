//! The metrics listener: plain HTTP/1.1 on `metrics.listen`, `GET /metrics`
//! and nothing else. It is its own socket so that the public listener never
//! serves the numbers, and so a firewall can keep it private.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;

use super::Metrics;
use crate::config::MetricsConfig;
use crate::store::LiveSessions;

/// A scraper needs one or two connections; more are refused, not queued.
const MAX_CONNECTIONS: usize = 16;
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);

const PROMETHEUS_TEXT: &str = "text/plain; version=0.0.4; charset=utf-8";
const OPENMETRICS_TEXT: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// The running listener (or none, when `metrics.listen` is empty). Stops
/// when stopped or dropped.
pub struct MetricsServer {
    addr: Option<SocketAddr>,
    task: Option<JoinHandle<()>>,
}

impl MetricsServer {
    /// The bound address (the real port when `metrics.listen` used port 0).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.addr
    }

    pub fn stop(self) {}
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

/// Binds `metrics.listen` (an error names the key) and serves `/metrics`
/// in the background. The live-sessions gauge and the store's health are
/// sampled from `sessions` at every scrape.
pub async fn serve(
    config: &MetricsConfig,
    metrics: Arc<Metrics>,
    sessions: Arc<LiveSessions>,
) -> std::io::Result<MetricsServer> {
    let Some(addr) = config.listen else {
        tracing::info!("metrics off (metrics.listen is empty)");
        return Ok(MetricsServer {
            addr: None,
            task: None,
        });
    };
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|e| std::io::Error::new(e.kind(), format!("metrics.listen {addr}: {e}")))?;
    let local = listener.local_addr()?;
    tracing::info!(listen = %local, "metrics listening");
    let task = tokio::spawn(accept_loop(listener, metrics, sessions));
    Ok(MetricsServer {
        addr: Some(local),
        task: Some(task),
    })
}

async fn accept_loop(listener: TcpListener, metrics: Arc<Metrics>, sessions: Arc<LiveSessions>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::debug!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            continue;
        };
        let metrics = metrics.clone();
        let sessions = sessions.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let answer = answer(&req, &metrics, &sessions);
                async move { Ok::<_, Infallible>(answer) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, %peer, "metrics connection ended with an error");
            }
            drop(slot);
        });
    }
}

fn answer(
    req: &Request<Incoming>,
    metrics: &Metrics,
    sessions: &LiveSessions,
) -> Response<Full<Bytes>> {
    if req.uri().path() != "/metrics" {
        return plain(
            StatusCode::NOT_FOUND,
            "not found; metrics are at /metrics\n",
        );
    }
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return plain(StatusCode::METHOD_NOT_ALLOWED, "method not allowed\n");
    }
    metrics.set_live_sessions(sessions.len());
    metrics.set_store_healthy(sessions.is_healthy());
    metrics.set_store_connected(sessions.is_connected());
    let (hits, misses) = sessions.cache_lookups();
    metrics.set_cache_lookups(hits, misses);
    let openmetrics = req
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let (body, content_type) = if openmetrics {
        (metrics.encode_openmetrics(), OPENMETRICS_TEXT)
    } else {
        (metrics.encode_prometheus(), PROMETHEUS_TEXT)
    };
    let mut response = Response::new(Full::new(Bytes::from(body)));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    response
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(text.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::MemoryStore;

    async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut buf = String::new();
        stream.read_to_string(&mut buf).await.unwrap();
        let (head, body) = buf.split_once("\r\n\r\n").unwrap();
        let status = head.split(' ').nth(1).unwrap().parse().unwrap();
        (status, head.to_lowercase(), body.to_owned())
    }

    #[tokio::test]
    async fn serves_metrics_on_its_own_port_and_nothing_else() {
        let sessions = Arc::new(LiveSessions::load(Arc::new(MemoryStore::default())).unwrap());
        let metrics = Arc::new(Metrics::new());
        metrics.requests_of("proxy").answered(StatusCode::OK);
        let config = MetricsConfig {
            listen: Some("127.0.0.1:0".parse().unwrap()),
        };
        let server = serve(&config, metrics, sessions).await.unwrap();
        let addr = server.local_addr().unwrap();
        let (status, head, body) = get(addr, "/metrics").await;
        assert_eq!(status, 200);
        assert!(
            head.contains("content-type: text/plain; version=0.0.4"),
            "{head}"
        );
        assert!(body.contains("authgate_http_requests_total{route=\"proxy\",status=\"200\"} 1"));
        assert!(body.contains("authgate_live_sessions 0"), "{body}");
        assert_eq!(get(addr, "/").await.0, 404);
        server.stop();
    }

    #[tokio::test]
    async fn an_empty_listen_is_off_and_a_taken_port_names_the_key() {
        let sessions = Arc::new(LiveSessions::load(Arc::new(MemoryStore::default())).unwrap());
        let off = MetricsConfig { listen: None };
        let server = serve(&off, Arc::new(Metrics::new()), sessions.clone())
            .await
            .unwrap();
        assert!(server.local_addr().is_none());
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let config = MetricsConfig {
            listen: Some(taken.local_addr().unwrap()),
        };
        let err = serve(&config, Arc::new(Metrics::new()), sessions)
            .await
            .err()
            .expect("the port is taken");
        assert!(err.to_string().starts_with("metrics.listen"), "{err}");
    }
}
