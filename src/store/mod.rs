//! Durable storage behind a trait. sled is the default; `MemoryStore` keeps
//! the same contract without a disk for the flow's unit tests. The request
//! path never reads from the durable store: `LiveSessions` (`live.rs`) holds
//! the live sessions in memory and writes through.

mod backend;
mod compact;
#[cfg(test)]
mod contract;
mod copy;
mod disabled;
mod factors;
mod live;
mod memory;
mod pushes;
mod record;
pub mod redis;
mod regulation;
mod replay;
mod session_map;
mod sled;
mod user_index;

pub use backend::Backend;
pub use copy::{Copied, CopyDirection, CopyError, copy_store};
pub use disabled::DisabledUsers;
pub use factors::{CredentialUse, CredentialUseOutcome, FactorStore, TotpRecord, WebauthnRecord};
pub use live::{LiveSessions, SessionId, touch_interval};
pub use memory::MemoryStore;
pub use pushes::{MemoryPushIndex, PushIndex};
pub use record::{AuthLevel, CeremonyKind, Challenge, Phase, SessionKey, SessionRecord};
pub use redis::{RedisPushIndex, RedisReplayGuard, RedisStore, SessionTimeouts};
pub use regulation::{
    AttemptCounters, AttemptKeys, CounterLimits, MemoryAttemptCounters, Reservation,
};
pub use replay::{MemoryReplayGuard, ReplayGuard};
pub use sled::SledStore;

use crate::model::User;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store.path {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("session store write failed: {0}")]
    Write(String),
    #[error("session store read failed: {0}")]
    Read(String),
    /// The shared store cannot be reached (Redis down, a failover).
    #[error("session store unreachable: {0}")]
    Unavailable(String),
}

/// Runs a blocking store call (a flush, a Redis round trip) from wherever
/// it is made. On tokio's worker threads the runtime first hands the
/// worker's other tasks to another thread; elsewhere it just runs.
pub(crate) fn blocking<T>(work: impl FnOnce() -> T) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

/// Durable copy of the sessions, keyed by the hash of the session id.
pub trait SessionStore: Send + Sync {
    fn put(&self, key: &SessionKey, session: &SessionRecord) -> Result<(), StoreError>;
    fn delete(&self, key: &SessionKey) -> Result<(), StoreError>;
    /// Every stored session.
    fn load_all(&self) -> Result<Vec<(SessionKey, SessionRecord)>, StoreError> {
        let mut all = Vec::new();
        self.load_each(&mut |key, record| all.push((key, record)))?;
        Ok(all)
    }
    /// Every stored session, one at a time, for loading the in-memory copy
    /// at start-up: a store that can read them one by one never holds the
    /// whole list (with 1,000,000 sessions, 100 MB more at the peak).
    fn load_each(&self, visit: &mut dyn FnMut(SessionKey, SessionRecord))
    -> Result<(), StoreError>;
    /// Makes every write so far survive a crash.
    fn flush(&self) -> Result<(), StoreError>;
    /// Closes and opens the store again, after a failure that the open
    /// store cannot recover from by itself (sled keeps the first I/O error,
    /// a full disk say, and fails every later call until reopened). Writes
    /// that were not flushed may be gone afterwards: the caller writes its
    /// live state again.
    fn reopen(&self) -> Result<(), StoreError> {
        Ok(())
    }
    /// Users who signed up themselves (they live beside the users file).
    fn signup_users(&self) -> Result<Vec<User>, StoreError>;
    /// One sign-up user, by email (any case).
    fn signup_user(&self, email: &str) -> Result<Option<User>, StoreError> {
        Ok(self
            .signup_users()?
            .into_iter()
            .find(|u| u.email.eq_ignore_ascii_case(email)))
    }
    /// Stores a sign-up user unless the email is taken; true when stored.
    fn insert_signup_user(&self, user: &User) -> Result<bool, StoreError>;
}

/// What a store shared by several replicas adds: `LiveSessions` is then a
/// cache in front of it, which reads what it misses, changes a session
/// only by compare-and-swap against the stored copy, and drops what the
/// feed says another replica changed.
pub trait SharedSessions: Send + Sync {
    /// The stored copy (a cache miss, or a check before a change).
    fn fetch(&self, key: &SessionKey) -> Result<Option<SessionRecord>, StoreError>;
    /// Stores `new` only while the stored copy is still `expected`.
    fn replace(
        &self,
        key: &SessionKey,
        expected: &SessionRecord,
        new: &SessionRecord,
    ) -> Result<bool, StoreError>;
    /// Deletes; true for exactly one of several racing callers.
    fn take(&self, key: &SessionKey) -> Result<bool, StoreError>;
    /// Waits until enough replicas of the store hold what was written.
    fn acknowledge(&self) -> Result<(), StoreError>;
    /// The user's live sessions (the email in any case), whichever
    /// replica made them; never one that has ended.
    fn sessions_of(&self, email: &str) -> Result<Vec<(SessionKey, SessionRecord)>, StoreError>;
    /// Starts telling `cache` what other replicas change.
    fn watch(&self, cache: std::sync::Arc<dyn SessionCache>);
}

/// The receiving end of the invalidation feed.
pub trait SessionCache: Send + Sync {
    fn evict(&self, key: &SessionKey);
    fn evict_all(&self);
    /// False while the feed is down: nothing cached may be served then.
    fn set_usable(&self, usable: bool);
}

/// The provider's id for a user (for `authy`, the Authy id), kept so that
/// a user is registered with the provider once. Apart from the sessions:
/// a provider needs this and nothing else of the store.
pub trait SubjectCache: Send + Sync {
    fn factor_subject(&self, method: &str, email: &str) -> Result<Option<String>, StoreError>;
    fn set_factor_subject(
        &self,
        method: &str,
        email: &str,
        subject: &str,
    ) -> Result<(), StoreError>;
}

/// The key of a cached provider id: method and lower-cased email.
fn subject_key(method: &str, email: &str) -> String {
    format!("{method}\0{}", email.to_lowercase())
}
