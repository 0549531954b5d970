//! Durable storage behind a trait. sled is the default; `MemoryStore` keeps
//! the same contract without a disk for the flow's unit tests. The request
//! path never reads from here: `auth::session::LiveSessions` holds the live
//! sessions in memory and writes through.

mod memory;
mod record;
mod sled;

pub use memory::MemoryStore;
pub use record::{AuthLevel, SessionKey, SessionRecord};
pub use sled::SledStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store.path {path}: {reason}")]
    Open { path: String, reason: String },
    #[error("session store write failed: {0}")]
    Write(String),
    #[error("session store read failed: {0}")]
    Read(String),
}

/// Durable copy of the sessions, keyed by the hash of the session id.
pub trait SessionStore: Send + Sync {
    fn put(&self, key: &SessionKey, session: &SessionRecord) -> Result<(), StoreError>;
    fn delete(&self, key: &SessionKey) -> Result<(), StoreError>;
    /// Every stored session, for loading the in-memory copy at start-up.
    fn load_all(&self) -> Result<Vec<(SessionKey, SessionRecord)>, StoreError>;
    /// Makes every write so far survive a crash.
    fn flush(&self) -> Result<(), StoreError>;
}
