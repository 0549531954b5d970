//! The Authy sandbox: a local HTTP server that speaks the legacy Authy API's
//! wire format (`authy-api.md`) with its state in memory. The gateway's
//! tests, `authgate demo` and `authgate sandbox` use it, because the real
//! API cannot be reached from where we build and is closed to new customers.
//!
//! Besides the Authy API (`/protected/json/...`, `/onetouch/json/...`) it
//! serves a control surface under `/_sandbox/` that needs no API key: a page
//! for people and a JSON API for tests (see `control.rs`). Because that
//! surface approves pushes without a login, the sandbox refuses to listen on
//! anything but a loopback address.
//!
//! It also speaks Twilio Verify v2 under `/v2/Services/...` (see
//! `verify/mod.rs` for the endpoints and its simulator policies), with
//! fixed credentials so tests and `authgate demo` need no flags:
//! account SID [`DEFAULT_VERIFY_ACCOUNT_SID`], auth token
//! [`DEFAULT_VERIFY_AUTH_TOKEN`], service SID [`DEFAULT_VERIFY_SERVICE_SID`].
//! The codes it "sent" are on the page, in the state JSON and at
//! `GET /_sandbox/api/verify/codes?to=...`.
//!
//! Simulator policies, where the real behaviour is unknown or unhelpful:
//! - users are removed at once (real Authy waits up to 24 h);
//! - there is no magic token such as the old sandbox's `0000000`;
//! - callbacks are sent once per decision, never retried; after three
//!   consecutive failed deliveries the callback URL is disabled, like real
//!   Authy does (see `callback.rs`).

mod authy;
mod codes;
mod control;
mod server;
mod state;
mod verify;
mod wire;

#[cfg(test)]
mod tests;

use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::oneshot;

use crate::clock::{Clock, SystemClock};

use self::state::State;

/// The Verify account SID the sandbox accepts unless told otherwise.
pub const DEFAULT_VERIFY_ACCOUNT_SID: &str = "AC00000000000000000000000000000001";
/// The Verify auth token the sandbox accepts unless told otherwise; a
/// sandbox value, public on purpose.
pub const DEFAULT_VERIFY_AUTH_TOKEN: &str = "5a4db0c0ffee5a4db0c0ffee5a4db0c0";
/// The one Verify service the sandbox serves unless told otherwise.
pub const DEFAULT_VERIFY_SERVICE_SID: &str = "VA00000000000000000000000000000001";

/// How long the sandbox waits for a callback receiver to answer.
const CALLBACK_TIMEOUT: Duration = Duration::from_secs(5);

/// How the OneTouch callback reaches `callback_url` (set per app in the
/// Twilio console for real Authy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CallbackMethod {
    /// A JSON body, `Content-Type: application/json`.
    #[default]
    Post,
    /// The same data as Rails bracket query parameters.
    Get,
}

impl CallbackMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            CallbackMethod::Post => "POST",
            CallbackMethod::Get => "GET",
        }
    }
}

impl FromStr for CallbackMethod {
    type Err = SandboxError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "POST" => Ok(CallbackMethod::Post),
            "GET" => Ok(CallbackMethod::Get),
            _ => Err(SandboxError::CallbackMethod(s.to_owned())),
        }
    }
}

#[derive(Clone)]
pub struct SandboxConfig {
    /// The key clients must send; it also signs the callbacks.
    pub api_key: String,
    /// Where OneTouch callbacks go; `None` means nowhere (poll only).
    pub callback_url: Option<String>,
    pub callback_method: CallbackMethod,
    /// Can also be switched at run time (`POST /_sandbox/api/callbacks`).
    pub callbacks_enabled: bool,
    /// What Verify clients must send as HTTP Basic user and password.
    pub verify_account_sid: String,
    pub verify_auth_token: String,
    /// The only service `/v2/Services/{sid}/...` knows.
    pub verify_service_sid: String,
}

impl SandboxConfig {
    /// Callbacks on, by POST, to no URL yet; the default Verify credentials.
    pub fn new(api_key: impl Into<String>) -> Self {
        SandboxConfig {
            api_key: api_key.into(),
            callback_url: None,
            callback_method: CallbackMethod::Post,
            callbacks_enabled: true,
            verify_account_sid: DEFAULT_VERIFY_ACCOUNT_SID.to_owned(),
            verify_auth_token: DEFAULT_VERIFY_AUTH_TOKEN.to_owned(),
            verify_service_sid: DEFAULT_VERIFY_SERVICE_SID.to_owned(),
        }
    }
}

// The API key is a secret even in a sandbox: it signs the callbacks. The
// Verify token is masked too, so a real one pasted here does not leak.
impl std::fmt::Debug for SandboxConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SandboxConfig")
            .field("api_key", &"***")
            .field("callback_url", &self.callback_url)
            .field("callback_method", &self.callback_method)
            .field("callbacks_enabled", &self.callbacks_enabled)
            .field("verify_account_sid", &self.verify_account_sid)
            .field("verify_auth_token", &"***")
            .field("verify_service_sid", &self.verify_service_sid)
            .finish()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    #[error(
        "the Authy sandbox approves pushes without a login, so it only listens on \
         loopback addresses; {0} is not one"
    )]
    NotLoopback(SocketAddr),
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("callback URL {0:?} is not an absolute http(s) URL")]
    CallbackUrl(String),
    #[error("callback method {0:?} is neither POST nor GET")]
    CallbackMethod(String),
    #[error("cannot build the HTTP client for callbacks: {0}")]
    HttpClient(#[source] reqwest::Error),
}

/// A running sandbox. Dropping it (or `shutdown`) stops the server.
pub struct Sandbox {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<oneshot::Sender<()>>,
}

impl Sandbox {
    /// Binds `listen` (port 0 picks a free port) and serves in a spawned
    /// task. Refuses non-loopback addresses.
    pub async fn start(listen: SocketAddr, config: SandboxConfig) -> Result<Sandbox, SandboxError> {
        Sandbox::start_with_clock(listen, config, Arc::new(SystemClock)).await
    }

    /// `start` with a clock the caller controls (tests move time by hand).
    pub(crate) async fn start_with_clock(
        listen: SocketAddr,
        config: SandboxConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<Sandbox, SandboxError> {
        let shared = Arc::new(Shared::new(config, clock)?);
        let listener = bind(listen).await?;
        let addr = listener.local_addr().map_err(|source| SandboxError::Bind {
            addr: listen,
            source,
        })?;
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = shared.clone();
        tokio::spawn(async move {
            server::serve(listener, serving, async {
                let _ = stopped.await;
            })
            .await;
        });
        tracing::info!(%addr, "Authy sandbox listening");
        Ok(Sandbox {
            addr,
            shared,
            stop: Some(stop),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The base URL to configure as the gateway's `authy.api_url` and
    /// `verify.api_url`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The page where people approve pushes and read the codes "sent".
    pub fn page_url(&self) -> String {
        format!("{}/_sandbox/", self.url())
    }

    /// Points callbacks somewhere else (or nowhere); for `authgate demo`,
    /// which may learn the gateway's port only after the sandbox started.
    pub fn set_callback_url(&self, url: Option<String>) -> Result<(), SandboxError> {
        let url = url.map(checked_callback_url).transpose()?;
        self.shared.state().callback.set_url(url);
        Ok(())
    }

    pub fn set_callbacks_enabled(&self, enabled: bool) {
        self.shared.state().callback.set_enabled(enabled);
    }

    /// The same JSON as `GET /_sandbox/api/state`, for in-process callers.
    pub fn snapshot(&self) -> serde_json::Value {
        self.shared.state().to_json(self.shared.now())
    }

    pub fn shutdown(self) {
        drop(self);
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

/// Serves until `shutdown` completes; for the `authgate sandbox` command.
pub async fn run_until(
    listen: SocketAddr,
    config: SandboxConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SandboxError> {
    let shared = Arc::new(Shared::new(config, Arc::new(SystemClock))?);
    let listener = bind(listen).await?;
    let addr = listener.local_addr().unwrap_or(listen);
    tracing::info!(%addr, page = %format!("http://{addr}/_sandbox/"), "Authy sandbox listening");
    server::serve(listener, shared, shutdown).await;
    Ok(())
}

async fn bind(listen: SocketAddr) -> Result<TcpListener, SandboxError> {
    if !listen.ip().is_loopback() {
        return Err(SandboxError::NotLoopback(listen));
    }
    TcpListener::bind(listen)
        .await
        .map_err(|source| SandboxError::Bind {
            addr: listen,
            source,
        })
}

/// Only absolute http(s) URLs: the signature covers scheme, host and path.
fn checked_callback_url(url: String) -> Result<String, SandboxError> {
    match url::Url::parse(&url) {
        Ok(parsed) if matches!(parsed.scheme(), "http" | "https") && parsed.has_host() => Ok(url),
        _ => Err(SandboxError::CallbackUrl(url)),
    }
}

/// What every request handler sees.
pub(crate) struct Shared {
    api_key: String,
    verify: verify::Credentials,
    state: Mutex<State>,
    clock: Arc<dyn Clock>,
    http: reqwest::Client,
    page: minijinja::Environment<'static>,
}

impl Shared {
    fn new(config: SandboxConfig, clock: Arc<dyn Clock>) -> Result<Shared, SandboxError> {
        let callback_url = config.callback_url.map(checked_callback_url).transpose()?;
        let http = reqwest::Client::builder()
            .timeout(CALLBACK_TIMEOUT)
            .build()
            .map_err(SandboxError::HttpClient)?;
        let mut state = State::default();
        state.callback.set_url(callback_url);
        state.callback.method = config.callback_method;
        state.callback.set_enabled(config.callbacks_enabled);
        Ok(Shared {
            api_key: config.api_key,
            verify: verify::Credentials {
                account_sid: config.verify_account_sid,
                auth_token: config.verify_auth_token,
                service_sid: config.verify_service_sid,
            },
            state: Mutex::new(state),
            clock,
            http,
            page: control::page_environment(),
        })
    }

    fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Never held across an `.await`. A panic while holding it leaves the
    /// state usable enough for a simulator, so poisoning is ignored.
    fn state(&self) -> MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}
