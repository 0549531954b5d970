//! The accept loop: one hyper-util auto connection (HTTP/1.1 or h2c) per
//! TCP connection; `/_sandbox` goes to the control surface, `/v2/` to
//! Twilio Verify, the rest to the Authy API.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;

use super::authy::api;
use super::wire::{Incoming, Reply};
use super::{Shared, control, verify};

/// In-flight requests get this long after shutdown; a sandbox has no
/// reason to linger.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);

pub async fn serve(listener: TcpListener, shared: Arc<Shared>, shutdown: impl Future<Output = ()>) {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Without a timer hyper skips the header-read timeout.
    builder.http1().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _peer)) => {
                    let shared = shared.clone();
                    let service = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
                    });
                    let conn = builder.serve_connection(TokioIo::new(stream), service);
                    let conn = graceful.watch(conn.into_owned());
                    tokio::spawn(async move {
                        if let Err(e) = conn.await {
                            tracing::debug!(error = %e, "Authy sandbox connection error");
                        }
                    });
                }
                Err(e) => {
                    // Usually out of file descriptors: back off, don't spin.
                    tracing::warn!(error = %e, "Authy sandbox accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await;
}

async fn handle(shared: &Shared, req: hyper::Request<hyper::body::Incoming>) -> Reply {
    let req = match Incoming::read(req).await {
        Ok(req) => req,
        Err(reply) => return reply,
    };
    let reply = if req.path == "/_sandbox" || req.path.starts_with("/_sandbox/") {
        control::handle(shared, &req).await
    } else if req.path.starts_with("/v2/") {
        verify::handle(shared, &req).await
    } else {
        api::handle(shared, &req)
    };
    let status = reply.status().as_u16();
    tracing::debug!(method = %req.method, path = %req.path, status, "Authy sandbox request");
    reply
}
