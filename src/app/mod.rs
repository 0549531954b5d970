//! Assembles the application from the config: opens the store, loads the
//! users, builds the second-factor providers, the authenticator and the
//! gateway, and runs the background tasks and the metrics listener. The
//! transport (`server`) gets only the finished handler.

mod background;
mod factors;

pub use factors::sealer as totp_sealer;

use std::sync::Arc;

use crate::admin::listener::{AdminSocket, AdminSocketError};
use crate::admin::{self, AdminService};
use crate::audit::Audit;
use crate::audit::writer::{self, Sink};
use crate::auth::password::{PasswordChecker, PasswordError};
use crate::auth::regulation::Regulation;
use crate::auth::{AuthDeps, AuthSettings, Authenticator, SessionAdmin};
use crate::clock::SystemClock;
use crate::config::Config;
use crate::gateway::Gateway;
use crate::metrics::{Metrics, MetricsServer};
use crate::proxy::{ProxyError, Upstream};
use crate::store::redis::Link;
use crate::store::{Backend, LiveSessions, StoreError};
use crate::store::{MemoryPushIndex, MemoryReplayGuard, PushIndex, ReplayGuard};
use crate::store::{RedisPushIndex, RedisReplayGuard};
use crate::users::{Directory, LiveUsers, UsersFile, UsersFileError};

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("users.file: {0}")]
    Users(#[from] UsersFileError),
    #[error(transparent)]
    Upstream(#[from] ProxyError),
    #[error(transparent)]
    Password(#[from] PasswordError),
    /// A second-factor provider could not be set up; starts with its name.
    #[error("{0}")]
    Provider(String),
    /// The metrics listener could not start; the message names the key.
    #[error("{0}")]
    Metrics(#[from] std::io::Error),
    /// The audit trail could not start; the message names `audit.file`.
    #[error("{0}")]
    Audit(std::io::Error),
    /// `[portal]`'s files or templates; the message names the key.
    #[error("config error: {0}")]
    Pages(#[from] crate::pages::PagesError),
    #[error(transparent)]
    AdminSocket(#[from] AdminSocketError),
}

/// The running application: what the listener serves, and what must stop
/// (and flush) after it.
pub struct App {
    gateway: Arc<Gateway>,
    sessions: Arc<LiveSessions>,
    metrics: MetricsServer,
    tasks: background::Tasks,
    admin_socket: Option<AdminSocket>,
}

impl App {
    /// Everything the config names, started; the listener comes next.
    pub async fn build(config: &Config) -> Result<App, AppError> {
        let pages = crate::pages::Pages::load(&config.portal, &config.server.path_prefix)?;
        let metrics = Arc::new(Metrics::new());
        let store = Backend::open(&config.store, &config.session)?;
        // A shared store is read when a sign-up user is first met (they
        // may sign up on another replica), so a replica starts while Redis
        // is down and answers 503 until it is back.
        let signed_up = match store.shared {
            Some(_) => Vec::new(),
            None => store.sessions.signup_users()?,
        };
        let factors = factors::build(config, &metrics, &store)?;
        // Before the sessions load: its argon2 hash (19 MiB, given back at
        // once) then adds to a small RSS rather than to the peak.
        let passwords = password_checker(config).await?;
        let sessions = Arc::new(store.live_sessions()?);
        let users = Arc::new(LiveUsers::new(
            UsersFile::load(&config.users.file)?.into_users(),
        ));
        let directory = Arc::new(Directory::new(users.clone(), signed_up));
        let upstream = config
            .upstream
            .as_ref()
            .map(|u| Upstream::new(u, &config.server.allowed_upgrades, &config.proxy))
            .transpose()?;
        let shared_link = store.shared.as_ref().map(|redis| redis.link().clone());
        let (pushes, webhook_replays) = push_state(shared_link);
        let deps = AuthDeps {
            sessions: sessions.clone(),
            users: directory,
            passwords,
            regulation: regulation(config, store.shared.as_deref()),
            clock: Arc::new(SystemClock),
            providers: factors.providers,
            totp: factors.totp,
            webauthn: factors.webauthn,
            factor_store: Some(factors.store),
            pushes,
        };
        let (audit, audit_writer) = audit_trail(config, &metrics).await?;
        let auth = Arc::new(
            Authenticator::new(deps, settings(config))
                .with_audit(audit.clone())
                .with_disabled_users(store.disabled.clone()),
        );
        let session_admin = Arc::new(
            SessionAdmin::new(
                sessions.clone(),
                store.disabled.clone(),
                Arc::new(SystemClock),
                admin::lifetimes(config),
            )
            .with_audit(audit.clone()),
        );
        let admin_socket = match &config.server.admin_socket {
            Some(path) => {
                let service = AdminService::new(
                    session_admin.clone(),
                    sessions.clone(),
                    store.factors.clone(),
                );
                Some(admin::listener::start(path, Arc::new(service))?)
            }
            None => None,
        };
        let gateway = Gateway::new(
            config,
            auth.clone(),
            sessions.clone(),
            upstream,
            metrics.clone(),
            webhook_replays,
        )
        .with_audit(audit)
        .with_pages(pages)
        .with_session_admin(session_admin.clone());
        let metrics = crate::metrics::serve(&config.metrics, metrics, sessions.clone()).await?;
        let mut tasks = background::start(config, sessions.clone(), auth, users);
        tasks.add(audit_writer);
        tracing::info!(sessions = sessions.len(), "sessions loaded");
        Ok(App {
            gateway: Arc::new(gateway),
            sessions,
            metrics,
            tasks,
            admin_socket,
        })
    }

    /// What the listener serves.
    pub fn handler(&self) -> Arc<Gateway> {
        self.gateway.clone()
    }

    /// After the listener has drained: stops the background work and makes
    /// every session write durable.
    pub fn stop(self) -> Result<(), AppError> {
        if let Some(socket) = self.admin_socket {
            socket.stop();
        }
        self.metrics.stop();
        self.tasks.stop();
        self.sessions.flush()?;
        tracing::info!("authgate stopped");
        Ok(())
    }
}

/// The regulation counters: on Redis when the replicas share a store, so
/// N replicas keep one limit, not N.
fn regulation(config: &Config, shared: Option<&crate::store::RedisStore>) -> Regulation {
    use crate::store::CounterLimits;
    use crate::store::redis::RedisAttemptCounters;
    let Some(redis) = shared else {
        return Regulation::new(&config.regulation);
    };
    let limits = CounterLimits::new(&config.regulation);
    let counters = RedisAttemptCounters::new(redis.link().clone(), limits);
    Regulation::with_counters(&config.regulation, Arc::new(counters))
}

/// Pending pushes and the webhook calls seen: in this process, or in the
/// store the replicas share.
fn push_state(shared: Option<Arc<Link>>) -> (Arc<dyn PushIndex>, Arc<dyn ReplayGuard>) {
    match shared {
        None => (
            Arc::new(MemoryPushIndex::default()),
            Arc::new(MemoryReplayGuard::default()),
        ),
        Some(link) => (
            Arc::new(RedisPushIndex::new(link.clone())),
            Arc::new(RedisReplayGuard::new(link)),
        ),
    }
}

/// The audit trail `audit.output` asks for, and its writer, started.
async fn audit_trail(
    config: &Config,
    metrics: &Metrics,
) -> Result<(Audit, Option<tokio::task::JoinHandle<()>>), AppError> {
    let Some(sink) = Sink::of(&config.audit.output) else {
        return Ok((Audit::off(), None));
    };
    let (audit, records) = Audit::bounded(
        config.audit.queue,
        &config.audit.replica,
        metrics.audit_dropped(),
    );
    let writer = writer::start(sink, records)
        .await
        .map_err(AppError::Audit)?;
    Ok((audit, Some(tokio::spawn(writer))))
}

async fn password_checker(config: &Config) -> Result<PasswordChecker, PasswordError> {
    let hashes = config.auth.max_concurrent_hashes;
    tokio::task::spawn_blocking(move || PasswordChecker::new(hashes))
        .await
        .map_err(|e| PasswordError::Hash(e.to_string()))?
}

fn settings(config: &Config) -> AuthSettings {
    AuthSettings {
        idle_timeout: config.session.idle_timeout.as_secs(),
        lifetime: config.session.lifetime.as_secs(),
        second_factor: config.auth.second_factor,
        challenge_timeout: config.auth.challenge_timeout.as_secs(),
        onetouch_message: config
            .authy
            .as_ref()
            .map_or_else(String::new, |a| a.onetouch_message.clone()),
        totp_enrollment: config.totp.enrollment,
        passwordless: config.webauthn.as_ref().is_some_and(|w| w.passwordless),
    }
}
