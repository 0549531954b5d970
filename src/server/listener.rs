//! The accept loop: one hyper-util auto connection (HTTP/1.1 or h2c) per
//! TCP connection, a header-read timeout, a connection cap, and graceful
//! shutdown bounded by `server.shutdown_timeout`.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::config::ServerConfig;
use crate::gateway::Gateway;
use crate::gateway::request::ConnInfo;

/// hyper refuses a smaller read buffer than this.
const MIN_BUF_SIZE: usize = 8192;

const BUSY_RESPONSE: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";

pub async fn serve(
    listener: TcpListener,
    gateway: Arc<Gateway>,
    server: &ServerConfig,
    shutdown: impl Future<Output = ()>,
) {
    let builder = connection_builder(server);
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
                    let service_gateway = gateway.clone();
                    let service = service_fn(move |req| {
                        let gateway = service_gateway.clone();
                        async move { Ok::<_, Infallible>(gateway.handle(req, ConnInfo { peer }).await) }
                    });
                    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn.into_owned());
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, %peer, "connection ended with an error");
                        }
                        drop(slot);
                    });
                }
                Err(e) => accept_failed(e).await,
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    tracing::info!("shutting down: waiting for in-flight requests");
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(server.shutdown_timeout) => {
            tracing::warn!("shutdown timeout reached; closing remaining connections");
        }
    }
}

fn connection_builder(server: &ServerConfig) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Without a timer hyper silently skips the header timeout (slowloris).
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(server.header_read_timeout)
        .max_buf_size(server.max_header_bytes.max(MIN_BUF_SIZE));
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(server.keepalive_timeout));
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
