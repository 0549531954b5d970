//! The one seam to Redis. The store's traits are synchronous (sled answers
//! from memory), so the link owns a small tokio runtime of its own that
//! drives an async multiplexed connection, and a caller waits for its
//! answer. On a tokio worker the wait first hands the worker's other tasks
//! to another thread (`block_in_place`): a slow Redis delays the request
//! that needs it, never the others.
//!
//! The connection is made again after any failure, at most once per
//! backoff step; in between, calls fail at once with
//! `StoreError::Unavailable` (a 503), so a dead Redis costs no timeouts.
//! With Sentinel, every new connection first asks the Sentinels for the
//! current master.

use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::MultiplexedConnection;
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{AsyncConnectionConfig, Client, ConnectionAddr, FromRedisValue, IntoConnectionInfo};

use crate::config::RedisConfig;
use crate::store::{StoreError, blocking};

/// Backoff between connection attempts: doubles from the first to the last.
const BACKOFF_FIRST: Duration = Duration::from_millis(50);
const BACKOFF_LAST: Duration = Duration::from_secs(2);

/// Where a connection goes: one fixed server, or whatever master the
/// Sentinels name at the time.
enum Target {
    Server(Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
}

pub struct Link {
    /// Taken on drop: a runtime dropped the usual way from async code
    /// (the gateway's shutdown) would panic.
    runtime: Option<tokio::runtime::Runtime>,
    state: Arc<State>,
    prefix: String,
}

struct State {
    target: Target,
    timeout: Duration,
    /// The working connection; `None` after a failure until a reconnect.
    connection: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    /// No new attempt before this, and the wait to add after a failure.
    backoff: Mutex<(Instant, Duration)>,
    connected: AtomicBool,
    /// Counts the connections made: a subscriber that sees it change knows
    /// the master may have changed (a failover) and starts over.
    generation: AtomicU64,
}

impl Link {
    /// Checks the settings and starts the runtime; the first connection is
    /// made by the first call, so a gateway starts while Redis is down (and
    /// answers 503 until it is up).
    pub fn new(config: &RedisConfig) -> Result<Self, StoreError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("authgate-redis")
            .enable_all()
            .build()
            .map_err(|e| StoreError::Unavailable(format!("starting the Redis runtime: {e}")))?;
        Ok(Link {
            runtime: Some(runtime),
            state: Arc::new(State {
                target: target(config)?,
                timeout: config.timeout,
                connection: tokio::sync::Mutex::new(None),
                backoff: Mutex::new((Instant::now(), BACKOFF_FIRST)),
                connected: AtomicBool::new(false),
                generation: AtomicU64::new(0),
            }),
            prefix: config.key_prefix.clone(),
        })
    }

    fn runtime(&self) -> &tokio::runtime::Runtime {
        self.runtime.as_ref().expect("only taken on drop")
    }

    /// `key_prefix` followed by `name`.
    pub fn key(&self, name: &str) -> String {
        format!("{}{name}", self.prefix)
    }

    /// Whether the last call reached Redis.
    pub fn is_connected(&self) -> bool {
        self.state.connected.load(Ordering::Relaxed)
    }

    pub fn generation(&self) -> u64 {
        self.state.generation.load(Ordering::Acquire)
    }

    pub fn call<T: FromRedisValue + Send + 'static>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, StoreError> {
        let cmd = cmd.clone();
        self.run(move |mut conn| async move { cmd.query_async(&mut conn).await })
    }

    pub fn pipe<T: FromRedisValue + Send + 'static>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        let pipe = pipe.clone();
        self.run(move |mut conn| async move { pipe.query_async(&mut conn).await })
    }

    pub fn script<T: FromRedisValue + Send + 'static>(
        &self,
        script: &redis::Script,
        keys: &[&str],
        args: &[&[u8]],
    ) -> Result<T, StoreError> {
        let script = script.clone();
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let args: Vec<Vec<u8>> = args.iter().map(|a| a.to_vec()).collect();
        self.run(move |mut conn| async move {
            let mut invocation = script.prepare_invoke();
            for key in &keys {
                invocation.key(key);
            }
            for arg in &args {
                invocation.arg(arg.as_slice());
            }
            invocation.invoke_async(&mut conn).await
        })
    }

    /// Runs `work` on a connection and waits for it, from any thread.
    fn run<T, F, Fut>(&self, work: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(MultiplexedConnection) -> Fut + Send + 'static,
        Fut: Future<Output = redis::RedisResult<T>> + Send,
    {
        let state = Arc::clone(&self.state);
        self.block_on(async move { state.run(work).await })
    }

    /// Runs `future` on the link's runtime and waits for its result.
    pub fn block_on<T: Send + 'static>(
        &self,
        future: impl Future<Output = Result<T, StoreError>> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.runtime().spawn(async move {
            let _ = tx.send(future.await);
        });
        blocking(|| rx.recv()).unwrap_or_else(|_| {
            Err(StoreError::Unavailable(
                "the Redis runtime stopped".to_owned(),
            ))
        })
    }

    /// Starts `future` on the link's runtime (the subscriber).
    pub fn spawn(&self, future: impl Future<Output = ()> + Send + 'static) {
        self.runtime().spawn(future);
    }

    /// A connection for a subscriber: made fresh, to the current master.
    pub async fn pubsub(state: &LinkHandle) -> Result<redis::aio::PubSub, StoreError> {
        let client = state.0.client().await?;
        timed(state.0.timeout, client.get_async_pubsub()).await
    }

    pub fn handle(&self) -> LinkHandle {
        LinkHandle(Arc::clone(&self.state))
    }
}

/// What a task on the link's runtime keeps of the link.
#[derive(Clone)]
pub struct LinkHandle(Arc<State>);

impl LinkHandle {
    pub fn timeout(&self) -> Duration {
        self.0.timeout
    }

    pub fn generation(&self) -> u64 {
        self.0.generation.load(Ordering::Acquire)
    }

    /// Makes sure the command connection stands (made now if need be).
    pub async fn connect(&self) -> Result<(), StoreError> {
        self.0.connection().await.map(|_| ())
    }
}

impl State {
    async fn run<T, F, Fut>(&self, work: F) -> Result<T, StoreError>
    where
        F: FnOnce(MultiplexedConnection) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.connection().await?;
        match tokio::time::timeout(self.timeout, work(conn)).await {
            Ok(Ok(value)) => {
                self.connected.store(true, Ordering::Relaxed);
                Ok(value)
            }
            Ok(Err(err)) if !must_reconnect(&err) => Err(StoreError::Read(err.to_string())),
            Ok(Err(err)) => {
                self.drop_connection().await;
                Err(StoreError::Unavailable(err.to_string()))
            }
            Err(_) => {
                self.drop_connection().await;
                Err(StoreError::Unavailable(format!(
                    "no answer from Redis within {:?}",
                    self.timeout
                )))
            }
        }
    }

    /// The working connection, or a new one when the backoff allows.
    async fn connection(&self) -> Result<MultiplexedConnection, StoreError> {
        let mut slot = self.connection.lock().await;
        if let Some(conn) = slot.as_ref() {
            return Ok(conn.clone());
        }
        self.may_try()?;
        match self.connect().await {
            Ok(conn) => {
                *self.backoff.lock().unwrap_or_else(|e| e.into_inner()) =
                    (Instant::now(), BACKOFF_FIRST);
                self.generation.fetch_add(1, Ordering::AcqRel);
                self.connected.store(true, Ordering::Relaxed);
                *slot = Some(conn.clone());
                Ok(conn)
            }
            Err(err) => {
                self.failed();
                Err(err)
            }
        }
    }

    fn may_try(&self) -> Result<(), StoreError> {
        let (not_before, _) = *self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        if Instant::now() < not_before {
            return Err(StoreError::Unavailable(
                "Redis is unreachable; waiting before the next attempt".to_owned(),
            ));
        }
        Ok(())
    }

    fn failed(&self) {
        self.connected.store(false, Ordering::Relaxed);
        let mut backoff = self.backoff.lock().unwrap_or_else(|e| e.into_inner());
        let wait = backoff.1;
        *backoff = (Instant::now() + wait, (wait * 2).min(BACKOFF_LAST));
    }

    async fn drop_connection(&self) {
        *self.connection.lock().await = None;
        self.failed();
    }

    async fn connect(&self) -> Result<MultiplexedConnection, StoreError> {
        let client = self.client().await?;
        tracing::info!(addr = %client.get_connection_info().addr(), "connecting to Redis");
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        timed(
            self.timeout,
            client.get_multiplexed_async_connection_with_config(&config),
        )
        .await
    }

    /// A client for the server to talk to now.
    async fn client(&self) -> Result<Client, StoreError> {
        match &self.target {
            Target::Server(client) => Ok(client.clone()),
            Target::Sentinel(sentinel) => {
                let mut sentinel = sentinel.lock().await;
                timed(self.timeout, sentinel.async_get_client()).await
            }
        }
    }
}

/// A failure after which the connection is not trusted again: it broke,
/// or the server it reaches is no longer the master (a failover).
fn must_reconnect(err: &redis::RedisError) -> bool {
    err.is_io_error()
        || err.is_connection_dropped()
        || err.is_timeout()
        || err.is_unrecoverable_error()
        || err.code() == Some("READONLY")
}

async fn timed<T>(
    limit: Duration,
    future: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(limit, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(StoreError::Unavailable(err.to_string())),
        Err(_) => Err(StoreError::Unavailable(format!(
            "no answer from Redis within {limit:?}"
        ))),
    }
}

fn target(config: &RedisConfig) -> Result<Target, StoreError> {
    let invalid = |e: redis::RedisError| StoreError::Open {
        path: "store.redis.url".to_owned(),
        reason: e.to_string(),
    };
    let mut info = config
        .url
        .as_str()
        .into_connection_info()
        .map_err(invalid)?;
    let mut settings = info.redis_settings().clone();
    if let Some(username) = &config.username {
        settings = settings.set_username(username);
    }
    if let Some(password) = &config.password {
        settings = settings.set_password(password.expose());
    }
    info = info.set_redis_settings(settings.clone());
    let Some(sentinel) = &config.sentinel else {
        return Ok(Target::Server(Client::open(info).map_err(invalid)?));
    };
    let tls = matches!(info.addr(), ConnectionAddr::TcpTls { .. });
    let nodes = sentinel
        .nodes
        .iter()
        .map(|node| sentinel_addr(node, tls))
        .collect::<Result<Vec<_>, _>>()?;
    let mut builder = SentinelClientBuilder::new(
        nodes,
        sentinel.master_name.clone(),
        SentinelServerType::Master,
    )
    .map_err(invalid)?
    .set_client_to_redis_db(settings.db());
    if tls {
        builder = builder
            .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
            .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure);
    }
    if let Some(username) = settings.username() {
        builder = builder.set_client_to_redis_username(username);
    }
    if let Some(password) = settings.password() {
        builder = builder.set_client_to_redis_password(password);
    }
    if let Some(password) = &sentinel.password {
        builder = builder.set_client_to_sentinel_password(password.expose());
    }
    let client = builder.build().map_err(invalid)?;
    Ok(Target::Sentinel(tokio::sync::Mutex::new(client)))
}

fn sentinel_addr(node: &str, tls: bool) -> Result<ConnectionAddr, StoreError> {
    let bad = || StoreError::Open {
        path: "store.redis.sentinel.nodes".to_owned(),
        reason: format!("{node:?} is not host:port"),
    };
    let (host, port) = node.rsplit_once(':').ok_or_else(bad)?;
    let port: u16 = port.parse().map_err(|_| bad())?;
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_owned();
    Ok(if tls {
        ConnectionAddr::TcpTls {
            host,
            port,
            insecure: false,
            tls_params: None,
        }
    } else {
        ConnectionAddr::Tcp(host, port)
    })
}

impl Drop for Link {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}
