//! Transport: the listener, hyper's connection builder, graceful shutdown,
//! and the background tasks (store flush, session sweep, users reload).

mod background;
mod listener;

use std::net::SocketAddr;
use std::sync::Arc;

use crate::auth::password::{PasswordChecker, PasswordError};
use crate::auth::regulation::Regulation;
use crate::auth::{AuthDeps, AuthSettings, Authenticator, LiveSessions, SystemClock};
use crate::config::Config;
use crate::factor::SecondFactor;
use crate::factor::authy::client::AuthyClient;
use crate::factor::authy::provider::AuthyFactor;
use crate::gateway::Gateway;
use crate::proxy::{ProxyError, Upstream};
use crate::store::SessionStore;
use crate::store::{SledStore, StoreError};
use crate::users::{Directory, LiveUsers, UsersFile, UsersFileError};

pub use listener::{serve, shutdown_signal};

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
    #[error("server.listen {addr}: {reason}")]
    Bind { addr: SocketAddr, reason: String },
    #[error("authy: {0}")]
    Provider(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// Opens everything the config names, then serves until SIGTERM/SIGINT.
pub async fn run(config: Config) -> Result<(), ServerError> {
    let (gateway, sessions, auth, users) = build(&config).await?;
    let listener = tokio::net::TcpListener::bind(config.server.listen)
        .await
        .map_err(|e| ServerError::Bind {
            addr: config.server.listen,
            reason: e.to_string(),
        })?;
    let tasks = background::start(&config, sessions.clone(), auth, users);
    tracing::info!(
        listen = %listener.local_addr()?,
        public_url = %config.server.public_url,
        sessions = sessions.len(),
        "authgate listening"
    );
    serve(
        listener,
        Arc::new(gateway),
        &config.server,
        listener::shutdown_signal(),
    )
    .await;
    tasks.stop();
    sessions.flush()?;
    tracing::info!("authgate stopped");
    Ok(())
}

type Parts = (
    Gateway,
    Arc<LiveSessions>,
    Arc<Authenticator>,
    Arc<LiveUsers>,
);

async fn build(config: &Config) -> Result<Parts, ServerError> {
    let store = Arc::new(SledStore::open(&config.store.path)?);
    let signed_up = store.signup_users()?;
    let sessions = Arc::new(LiveSessions::load(store)?);
    let users = Arc::new(LiveUsers::new(
        UsersFile::load(&config.users.file)?.into_users(),
    ));
    let directory = Arc::new(Directory::new(users.clone(), signed_up));
    let upstream = config.upstream.as_ref().map(Upstream::new).transpose()?;
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
    };
    let deps = AuthDeps {
        sessions: sessions.clone(),
        users: directory,
        passwords,
        regulation: Regulation::new(&config.regulation),
        clock: Arc::new(SystemClock),
        provider: second_factor(config)?,
    };
    let auth = Arc::new(Authenticator::new(deps, settings));
    let gateway = Gateway::new(config, auth.clone(), sessions.clone(), upstream);
    Ok((gateway, sessions, auth, users))
}

fn second_factor(config: &Config) -> Result<Option<Arc<dyn SecondFactor>>, ServerError> {
    let Some(authy) = &config.authy else {
        return Ok(None);
    };
    let key = authy.api_key.expose().to_owned();
    let client = AuthyClient::new(authy.api_url.as_str(), key, authy.timeout)
        .map_err(|e| ServerError::Provider(e.to_string()))?;
    Ok(Some(Arc::new(AuthyFactor::new(
        client,
        authy.send_install_link,
    ))))
}

/// `authgate healthcheck`: GET healthz on the configured listener.
pub async fn probe_health(config: &Config) -> Result<bool, reqwest::Error> {
    let mut addr = config.server.listen;
    if addr.ip().is_unspecified() {
        addr.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
    }
    let url = format!("http://{addr}{}/healthz", config.server.path_prefix);
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(5))
        .build()?;
    Ok(client.get(url).send().await?.status().is_success())
}
