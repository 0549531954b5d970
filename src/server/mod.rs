//! Transport: the listener, hyper's connection builder, TLS termination,
//! the http→https redirect listener, graceful shutdown, and the background
//! tasks (store flush, session sweep, users reload, certificate reload).

mod allocator;
mod background;
mod factors;
mod fast_path;

pub use allocator::tune as tune_allocator;
pub use factors::sealer as totp_sealer;
mod listener;
mod redirect;
pub mod tls;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::auth::password::{PasswordChecker, PasswordError};
use crate::auth::regulation::Regulation;
use crate::auth::{AuthDeps, AuthSettings, Authenticator, LiveSessions, SystemClock};
use crate::config::{Config, ServerConfig};
use crate::gateway::Gateway;
use crate::metrics::Metrics;
use crate::proxy::{ProxyError, Upstream};
use crate::store::SessionStore;
use crate::store::{SledStore, StoreError};
use crate::users::{Directory, LiveUsers, UsersFile, UsersFileError};

pub use listener::{Handler, serve, shutdown_signal};

/// How often the TLS files' modification times are looked at.
const TLS_POLL_EVERY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("users.file: {0}")]
    Users(#[from] UsersFileError),
    #[error(transparent)]
    Upstream(#[from] ProxyError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    #[error("{key} {addr}: {reason}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        reason: String,
    },
    /// A TLS file problem at start-up; the message starts with the key.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// A second-factor provider could not be set up; starts with its name.
    #[error("{0}")]
    Provider(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Opens everything the config names, then serves until SIGTERM/SIGINT.
pub async fn run(config: Config) -> Result<(), ServerError> {
    allocator::tune();
    // The certificate first: a bad pair stops the start before any state
    // is opened.
    let tls = load_tls(&config)?;
    let metrics = Arc::new(crate::metrics::Metrics::new());
    let (gateway, sessions, auth, users) = build(&config, &metrics).await?;
    let listener = bind("server.listen", config.server.listen).await?;
    let redirect = match config.server.redirect_http {
        Some(addr) => Some(bind("server.redirect_http", addr).await?),
        None => None,
    };
    let metrics = crate::metrics::serve(&config.metrics, metrics, sessions.clone()).await?;
    let tasks = background::start(&config, sessions.clone(), auth, users);
    let reloads = match &tls {
        Some(live) => Some(tls::watch(live.clone(), TLS_POLL_EVERY)?),
        None => None,
    };
    tracing::info!(
        listen = %listener.local_addr()?,
        tls = tls.is_some(),
        redirect_http = ?config.server.redirect_http,
        public_url = %config.server.public_url,
        sessions = sessions.len(),
        "authgate listening"
    );
    serve_all(&config.server, gateway, (listener, tls), redirect).await;
    if let Some(reloads) = reloads {
        reloads.abort();
    }
    metrics.stop();
    tasks.stop();
    sessions.flush()?;
    tracing::info!("authgate stopped");
    Ok(())
}

fn load_tls(config: &Config) -> Result<Option<Arc<tls::LiveTls>>, ServerError> {
    let Some(files) = &config.server.tls else {
        return Ok(None);
    };
    let live = tls::LiveTls::load(files.clone())?;
    if config.server.public_url.scheme() != "https" {
        tracing::warn!(
            public_url = %config.server.public_url,
            "TLS is on but server.public_url is http: cookies will not be Secure"
        );
    }
    Ok(Some(Arc::new(live)))
}

/// The gateway's listener and the redirect listener, until SIGTERM/SIGINT;
/// both drain their connections before this returns.
async fn serve_all(
    server: &ServerConfig,
    gateway: Gateway,
    (listener, tls): (TcpListener, Option<Arc<tls::LiveTls>>),
    redirect: Option<TcpListener>,
) {
    let stop = stop_on_signal();
    let redirects = async {
        let Some(listener) = redirect else { return };
        let handler = Arc::new(redirect::RedirectToHttps::new(&server.public_url));
        serve(listener, None, handler, server, stopped(&stop)).await;
    };
    let gateway = serve(listener, tls, Arc::new(gateway), server, stopped(&stop));
    tokio::join!(gateway, redirects);
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

type Parts = (
    Gateway,
    Arc<LiveSessions>,
    Arc<Authenticator>,
    Arc<LiveUsers>,
);

async fn build(config: &Config, metrics: &Arc<Metrics>) -> Result<Parts, ServerError> {
    let store = Arc::new(SledStore::open(&config.store.path)?);
    let signed_up = store.signup_users()?;
    let factors = factors::build(config, metrics, &store)?;
    let sessions = Arc::new(LiveSessions::load(store)?);
    let users = Arc::new(LiveUsers::new(
        UsersFile::load(&config.users.file)?.into_users(),
    ));
    let directory = Arc::new(Directory::new(users.clone(), signed_up));
    let upstream = config
        .upstream
        .as_ref()
        .map(|u| Upstream::new(u, &config.server.allowed_upgrades, &config.proxy))
        .transpose()?;
    let hashes = config.auth.max_concurrent_hashes;
    let passwords = tokio::task::spawn_blocking(move || PasswordChecker::new(hashes))
        .await
        .map_err(|e| PasswordError::Hash(e.to_string()))??;
    let settings = AuthSettings {
        idle_timeout: config.session.idle_timeout.as_secs(),
        lifetime: config.session.lifetime.as_secs(),
        second_factor: config.auth.second_factor,
        challenge_timeout: config.auth.challenge_timeout.as_secs(),
        onetouch_message: config
            .authy
            .as_ref()
            .map_or_else(String::new, |a| a.onetouch_message.clone()),
        totp_enrollment: config.totp.enrollment,
    };
    let deps = AuthDeps {
        sessions: sessions.clone(),
        users: directory,
        passwords,
        regulation: Regulation::new(&config.regulation),
        clock: Arc::new(SystemClock),
        providers: factors.providers,
        totp: factors.totp,
        factor_store: Some(factors.store),
    };
    let auth = Arc::new(Authenticator::new(deps, settings));
    let gateway = Gateway::new(
        config,
        auth.clone(),
        sessions.clone(),
        upstream,
        metrics.clone(),
    );
    Ok((gateway, sessions, auth, users))
}

/// `authgate healthcheck`: GET healthz on the configured listener, over
/// TLS when it serves TLS.
pub async fn probe_health(config: &Config) -> Result<bool, reqwest::Error> {
    let mut addr = config.server.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let scheme = if config.server.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let url = format!("{scheme}://{addr}{}/healthz", config.server.path_prefix);
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
