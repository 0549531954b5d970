//! Opens the store `store.backend` names, as the handles each part of the
//! program needs: the durable sessions, the factors, the provider ids and,
//! with Redis, the shared store itself (the cache in front of it and
//! whatever else the replicas share).

use std::sync::Arc;

use super::{
    DisabledUsers, FactorStore, LiveSessions, RedisStore, SessionStore, SessionTimeouts, SledStore,
    StoreError, SubjectCache,
};
use crate::config::{SessionConfig, StoreBackend, StoreConfig};

pub struct Backend {
    pub sessions: Arc<dyn SessionStore>,
    pub factors: Arc<dyn FactorStore>,
    pub subjects: Arc<dyn SubjectCache>,
    pub disabled: Arc<dyn DisabledUsers>,
    /// Set when several replicas share the store.
    pub shared: Option<Arc<RedisStore>>,
}

impl Backend {
    pub fn open(store: &StoreConfig, session: &SessionConfig) -> Result<Self, StoreError> {
        match &store.backend {
            StoreBackend::Sled => {
                let sled = Arc::new(SledStore::open(&store.path)?);
                Ok(Backend {
                    sessions: sled.clone(),
                    factors: sled.clone(),
                    disabled: sled.clone(),
                    subjects: sled,
                    shared: None,
                })
            }
            StoreBackend::Redis(redis) => {
                let timeouts = SessionTimeouts {
                    idle: session.idle_timeout,
                    lifetime: session.lifetime,
                };
                let redis = Arc::new(RedisStore::connect(redis, timeouts)?);
                Ok(Backend {
                    sessions: redis.clone(),
                    factors: redis.clone(),
                    subjects: redis.clone(),
                    disabled: redis.clone(),
                    shared: Some(redis),
                })
            }
        }
    }

    /// The live sessions: all of them loaded (sled), or a cache in front
    /// of the shared store.
    pub fn live_sessions(&self) -> Result<LiveSessions, StoreError> {
        match &self.shared {
            Some(redis) => Ok(LiveSessions::shared(redis.clone())),
            None => LiveSessions::load(self.sessions.clone()),
        }
    }
}
