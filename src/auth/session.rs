//! Session ids and the live sessions. The request path reads only the
//! in-memory map; every change is written through to the durable store
//! first, so a session the browser holds a cookie for is always on disk
//! (after the next flush) and a store failure never hands out a cookie.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use dashmap::DashMap;
use sha2::{Digest, Sha256};

use crate::store::{SessionKey, SessionRecord, SessionStore, StoreError};

/// How stale `last_seen` may get before it is written again: the idle
/// timer is refreshed at most about once a minute, never on every request.
pub const TOUCH_INTERVAL_SECS: u64 = 60;

/// The refresh interval for an idle timeout: once a minute, but at least
/// twice per timeout, so steady use keeps even a short-timeout session.
pub fn touch_interval(idle_timeout: u64) -> u64 {
    TOUCH_INTERVAL_SECS.min(idle_timeout / 2)
}

/// The value a browser holds: 256 bits from the OS RNG, base64url.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionId(String);

impl SessionId {
    pub fn generate() -> Result<Self, StoreError> {
        let mut bytes = [0u8; 32];
        getrandom::getrandom(&mut bytes).map_err(|e| StoreError::Write(e.to_string()))?;
        Ok(SessionId(URL_SAFE_NO_PAD.encode(bytes)))
    }

    /// Accepts only the shape `generate` makes, so junk never reaches a hash.
    pub fn parse(value: &str) -> Option<Self> {
        let ok = value.len() == 43
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        ok.then(|| SessionId(value.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The store key: SHA-256 of the id.
    pub fn key(&self) -> SessionKey {
        SessionKey(Sha256::digest(self.0.as_bytes()).into())
    }
}

impl std::fmt::Debug for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SessionId(..)")
    }
}

pub struct LiveSessions {
    live: DashMap<SessionKey, Arc<SessionRecord>>,
    store: Arc<dyn SessionStore>,
    healthy: AtomicBool,
}

impl LiveSessions {
    /// Loads every stored session into memory.
    pub fn load(store: Arc<dyn SessionStore>) -> Result<Self, StoreError> {
        let live = DashMap::new();
        for (key, record) in store.load_all()? {
            live.insert(key, Arc::new(record));
        }
        Ok(LiveSessions {
            live,
            store,
            healthy: AtomicBool::new(true),
        })
    }

    pub fn get(&self, key: &SessionKey) -> Option<Arc<SessionRecord>> {
        self.live.get(key).map(|entry| entry.value().clone())
    }

    pub fn insert(&self, key: SessionKey, record: SessionRecord) -> Result<(), StoreError> {
        self.track(self.store.put(&key, &record))?;
        self.live.insert(key, Arc::new(record));
        Ok(())
    }

    /// Removes from memory first: even if the disk write fails, the
    /// session stops working now.
    pub fn remove(&self, key: &SessionKey) -> Result<(), StoreError> {
        self.live.remove(key);
        self.track(self.store.delete(key))
    }

    /// Applies `change` to a copy of the session under the map's entry lock
    /// and stores it when `change` returns true: a compare-and-swap, so the
    /// webhook and the poller cannot both confirm one push.
    pub fn update(
        &self,
        key: &SessionKey,
        change: impl FnOnce(&mut SessionRecord) -> bool,
    ) -> Result<bool, StoreError> {
        let Some(mut entry) = self.live.get_mut(key) else {
            return Ok(false);
        };
        let mut record = SessionRecord::clone(&entry);
        if !change(&mut record) {
            return Ok(false);
        }
        self.track(self.store.put(key, &record))?;
        *entry = Arc::new(record);
        Ok(true)
    }

    /// Removes the session and says whether it was there: of two racing
    /// callers exactly one gets true.
    pub fn take(&self, key: &SessionKey) -> Result<bool, StoreError> {
        let was_there = self.live.remove(key).is_some();
        self.track(self.store.delete(key))?;
        Ok(was_there)
    }

    pub fn for_each(&self, mut visit: impl FnMut(&SessionKey, &SessionRecord)) {
        for entry in self.live.iter() {
            visit(entry.key(), entry.value());
        }
    }

    /// The durable store, for data beside the sessions (provider ids).
    pub fn store(&self) -> &dyn SessionStore {
        self.store.as_ref()
    }

    /// Refreshes the idle timer when it is `every` seconds old or older.
    pub fn touch(&self, key: &SessionKey, now: u64, every: u64) {
        let Some(mut entry) = self.live.get_mut(key) else {
            return;
        };
        if now.saturating_sub(entry.last_seen) < every {
            return;
        }
        let mut record = SessionRecord::clone(&entry);
        record.last_seen = now;
        // A failed refresh only shortens the session; the health flag tells.
        let _ = self.track(self.store.put(key, &record));
        *entry = Arc::new(record);
    }

    /// Drops every session for which `keep` is false; returns how many.
    pub fn sweep(&self, keep: impl Fn(&SessionRecord) -> bool) -> usize {
        let dead: Vec<SessionKey> = self
            .live
            .iter()
            .filter(|entry| !keep(entry.value()))
            .map(|entry| *entry.key())
            .collect();
        for key in &dead {
            let _ = self.remove(key);
        }
        dead.len()
    }

    pub fn flush(&self) -> Result<(), StoreError> {
        self.track(self.store.flush())
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }

    /// False after the last write or flush failed, until one succeeds.
    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    fn track<T>(&self, result: Result<T, StoreError>) -> Result<T, StoreError> {
        self.healthy.store(result.is_ok(), Ordering::Relaxed);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{AuthLevel, MemoryStore};

    fn record(last_seen: u64) -> SessionRecord {
        SessionRecord {
            user: "a@example.com".into(),
            level: AuthLevel::OneFactor,
            auth_time: 100,
            second_factor_time: None,
            created_at: 100,
            last_seen,
            challenge: None,
        }
    }

    #[test]
    fn ids_are_unique_well_formed_and_hashed_for_the_store() {
        let a = SessionId::generate().unwrap();
        let b = SessionId::generate().unwrap();
        assert_ne!(a, b);
        assert_eq!(SessionId::parse(a.as_str()), Some(a.clone()));
        assert_ne!(a.key().0.as_slice(), a.as_str().as_bytes());
        assert_eq!(a.key(), SessionId::parse(a.as_str()).unwrap().key());
        assert!(SessionId::parse("short").is_none());
        assert!(SessionId::parse(&"=".repeat(43)).is_none());
    }

    #[test]
    fn writes_go_through_to_the_store_and_reload() {
        let store = Arc::new(MemoryStore::default());
        let sessions = LiveSessions::load(store.clone()).unwrap();
        let key = SessionId::generate().unwrap().key();
        sessions.insert(key, record(100)).unwrap();
        let reloaded = LiveSessions::load(store.clone()).unwrap();
        assert_eq!(reloaded.get(&key).as_deref(), Some(&record(100)));
        sessions.remove(&key).unwrap();
        assert!(sessions.get(&key).is_none());
        assert!(store.load_all().unwrap().is_empty());
    }

    #[test]
    fn short_idle_timeouts_are_refreshed_twice_per_timeout() {
        assert_eq!(touch_interval(1800), 60);
        assert_eq!(touch_interval(30), 15);
        assert_eq!(touch_interval(1), 0);
    }

    #[test]
    fn touch_writes_at_most_once_a_minute() {
        let store = Arc::new(MemoryStore::default());
        let sessions = LiveSessions::load(store.clone()).unwrap();
        let key = SessionId::generate().unwrap().key();
        sessions.insert(key, record(100)).unwrap();
        sessions.touch(&key, 130, TOUCH_INTERVAL_SECS);
        assert_eq!(sessions.get(&key).unwrap().last_seen, 100);
        assert_eq!(store.load_all().unwrap()[0].1.last_seen, 100);
        sessions.touch(&key, 161, TOUCH_INTERVAL_SECS);
        assert_eq!(sessions.get(&key).unwrap().last_seen, 161);
        assert_eq!(store.load_all().unwrap()[0].1.last_seen, 161);
    }

    #[test]
    fn sweep_removes_what_keep_rejects_from_memory_and_store() {
        let store = Arc::new(MemoryStore::default());
        let sessions = LiveSessions::load(store.clone()).unwrap();
        let old = SessionId::generate().unwrap().key();
        let new = SessionId::generate().unwrap().key();
        sessions.insert(old, record(10)).unwrap();
        sessions.insert(new, record(500)).unwrap();
        assert_eq!(sessions.sweep(|r| r.last_seen > 100), 1);
        assert!(sessions.get(&old).is_none());
        assert_eq!(store.load_all().unwrap().len(), 1);
    }
}
