//! sled 0.34 as the durable store. Writes land in sled's in-memory log and
//! reach disk on `flush`, which the server calls every `store.flush_interval`
//! and at shutdown.

use std::path::Path;

use super::{SessionKey, SessionRecord, SessionStore, StoreError};

/// sled's page cache; the request path reads memory, not sled, so a small
/// cache is enough (DESIGN.md "Measured").
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

pub struct SledStore {
    db: sled::Db,
    sessions: sled::Tree,
}

impl SledStore {
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let open_error = |reason: String| StoreError::Open {
            path: path.display().to_string(),
            reason,
        };
        let db = sled::Config::new()
            .path(path)
            .cache_capacity(CACHE_BYTES)
            .open()
            .map_err(|e| open_error(e.to_string()))?;
        let sessions = db
            .open_tree("sessions")
            .map_err(|e| open_error(e.to_string()))?;
        Ok(SledStore { db, sessions })
    }

    /// A throw-away database for tests.
    pub fn temporary() -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(|e| StoreError::Write(e.to_string()))?;
        let sessions = db
            .open_tree("sessions")
            .map_err(|e| StoreError::Write(e.to_string()))?;
        Ok(SledStore { db, sessions })
    }
}

impl SessionStore for SledStore {
    fn put(&self, key: &SessionKey, session: &SessionRecord) -> Result<(), StoreError> {
        let value = serde_json::to_vec(session).map_err(|e| StoreError::Write(e.to_string()))?;
        self.sessions
            .insert(key.0, value)
            .map_err(|e| StoreError::Write(e.to_string()))?;
        Ok(())
    }

    fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        self.sessions
            .remove(key.0)
            .map_err(|e| StoreError::Write(e.to_string()))?;
        Ok(())
    }

    fn load_all(&self) -> Result<Vec<(SessionKey, SessionRecord)>, StoreError> {
        let mut all = Vec::new();
        for entry in self.sessions.iter() {
            let (key, value) = entry.map_err(|e| StoreError::Read(e.to_string()))?;
            let Ok(key) = <[u8; 32]>::try_from(key.as_ref()) else {
                continue;
            };
            // A record this version cannot read is skipped, not fatal: the
            // user logs in again, every other session survives.
            if let Ok(record) = serde_json::from_slice(&value) {
                all.push((SessionKey(key), record));
            }
        }
        Ok(all)
    }

    fn flush(&self) -> Result<(), StoreError> {
        self.db
            .flush()
            .map(|_| ())
            .map_err(|e| StoreError::Write(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::AuthLevel;

    fn record(user: &str) -> SessionRecord {
        SessionRecord {
            user: user.into(),
            level: AuthLevel::OneFactor,
            auth_time: 10,
            second_factor_time: None,
            created_at: 10,
            last_seen: 10,
        }
    }

    #[test]
    fn sessions_survive_reopening_the_database() {
        let dir = tempfile::tempdir().unwrap();
        let key = SessionKey([7; 32]);
        {
            let store = SledStore::open(dir.path()).unwrap();
            store.put(&key, &record("a@example.com")).unwrap();
            store
                .put(&SessionKey([8; 32]), &record("b@example.com"))
                .unwrap();
            store.delete(&SessionKey([8; 32])).unwrap();
            store.flush().unwrap();
        }
        let store = SledStore::open(dir.path()).unwrap();
        assert_eq!(
            store.load_all().unwrap(),
            vec![(key, record("a@example.com"))]
        );
    }

    #[test]
    fn a_second_opener_of_the_same_path_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let _first = SledStore::open(dir.path()).unwrap();
        let err = SledStore::open(dir.path())
            .err()
            .expect("lock must be exclusive");
        assert!(err.to_string().starts_with("store.path"), "{err}");
    }
}
