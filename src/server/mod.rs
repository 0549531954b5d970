//! Transport: the listener, hyper's connection builder, TLS termination
//! (and its certificate reload), the http→https redirect listener, and
//! graceful shutdown. It serves whatever `Handler` it is given and knows
//! nothing of sessions or users; `app` assembles the gateway it serves.

mod allocator;
mod fast_path;
mod listener;
mod redirect;
pub mod tls;

pub use allocator::tune as tune_allocator;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::ServerConfig;
use crate::wire::Handler;

pub use listener::{serve, shutdown_signal};

/// How often the TLS files' modification times are looked at.
const TLS_POLL_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{key} {addr}: {reason}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        reason: String,
    },
    /// A TLS file problem at start-up; the message starts with the key.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Binds `server.listen` (and `server.redirect_http`) and serves `handler`
/// until SIGTERM/SIGINT; returns once the connections have drained.
pub async fn run<H: Handler>(
    server: &ServerConfig,
    tls: Option<Arc<tls::LiveTls>>,
    handler: Arc<H>,
) -> Result<(), ServerError> {
    let listener = bind("server.listen", server.listen).await?;
    let redirect = match server.redirect_http {
        Some(addr) => Some(bind("server.redirect_http", addr).await?),
        None => None,
    };
    let reloads = match &tls {
        Some(live) => Some(tls::watch(live.clone(), TLS_POLL_EVERY)?),
        None => None,
    };
    tracing::info!(
        listen = %listener.local_addr()?,
        tls = tls.is_some(),
        redirect_http = ?server.redirect_http,
        public_url = %server.public_url,
        "authgate listening"
    );
    serve_all(server, handler, (listener, tls), redirect).await;
    if let Some(reloads) = reloads {
        reloads.abort();
    }
    Ok(())
}

/// The certificate, loaded before anything else starts: a bad pair stops
/// the start before any state is opened.
pub fn load_tls(server: &ServerConfig) -> Result<Option<Arc<tls::LiveTls>>, ServerError> {
    let Some(files) = &server.tls else {
        return Ok(None);
    };
    let live = tls::LiveTls::load(files.clone())?;
    if server.public_url.scheme() != "https" {
        tracing::warn!(
            public_url = %server.public_url,
            "TLS is on but server.public_url is http: cookies will not be Secure"
        );
    }
    Ok(Some(Arc::new(live)))
}

/// The main listener and the redirect listener, until SIGTERM/SIGINT;
/// both drain their connections before this returns.
async fn serve_all<H: Handler>(
    server: &ServerConfig,
    handler: Arc<H>,
    (listener, tls): (TcpListener, Option<Arc<tls::LiveTls>>),
    redirect: Option<TcpListener>,
) {
    let stop = stop_on_signal();
    let redirects = async {
        let Some(listener) = redirect else { return };
        let handler = Arc::new(redirect::RedirectToHttps::new(&server.public_url));
        serve(listener, None, handler, server, stopped(&stop)).await;
    };
    let main = serve(listener, tls, handler, server, stopped(&stop));
    tokio::join!(main, redirects);
}

async fn bind(key: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr)
        .await
        .map_err(|e| ServerError::Bind {
            key,
            addr,
            reason: e.to_string(),
        })
}

/// One SIGTERM/SIGINT, seen by every listener.
fn stop_on_signal() -> watch::Receiver<bool> {
    let (tx, rx) = watch::channel(false);
    tokio::spawn(async move {
        listener::shutdown_signal().await;
        let _ = tx.send(true);
    });
    rx
}

fn stopped(stop: &watch::Receiver<bool>) -> impl Future<Output = ()> + use<> {
    let mut stop = stop.clone();
    async move {
        let _ = stop.wait_for(|stopped| *stopped).await;
    }
}

/// `authgate healthcheck`: GET healthz on the configured listener, over
/// TLS when it serves TLS.
pub async fn probe_health(server: &ServerConfig) -> Result<bool, reqwest::Error> {
    let mut addr = server.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let scheme = if server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let url = format!("{scheme}://{addr}{}/healthz", server.path_prefix);
    // A liveness probe of our own loopback listener, by IP: the certificate
    // names the public host, not this address, and nothing secret is sent,
    // so it is not verified. (Checking it here would also turn a rejected
    // certificate rotation, which keeps the old one serving, into a failed
    // healthcheck and a restart that cannot start.)
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .tls_danger_accept_invalid_certs(true)
        .build()?;
    Ok(client.get(url).send().await?.status().is_success())
}
