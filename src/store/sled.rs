//! sled 0.34 as the durable store. Writes land in sled's in-memory log and
//! reach disk on `flush`, which the server calls every `store.flush_interval`
//! and at shutdown.

use std::path::Path;

use super::{SessionKey, SessionRecord, SessionStore, StoreError, subject_key};
use crate::users::User;

/// sled's page cache; the request path reads memory, not sled, so a small
/// cache is enough (DESIGN.md "Measured").
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

pub struct SledStore {
    db: sled::Db,
    sessions: sled::Tree,
    subjects: sled::Tree,
    signups: sled::Tree,
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
        Self::with_trees(db).map_err(|e| open_error(e.to_string()))
    }

    fn with_trees(db: sled::Db) -> Result<Self, StoreError> {
        let tree = |name: &str| {
            db.open_tree(name)
                .map_err(|e| StoreError::Read(e.to_string()))
        };
        Ok(SledStore {
            sessions: tree("sessions")?,
            subjects: tree("factor_subjects")?,
            signups: tree("signup_users")?,
            db,
        })
    }

    /// A throw-away database for tests.
    pub fn temporary() -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(|e| StoreError::Write(e.to_string()))?;
        Self::with_trees(db)
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

    fn factor_subject(&self, method: &str, email: &str) -> Result<Option<String>, StoreError> {
        let value = self
            .subjects
            .get(subject_key(method, email))
            .map_err(|e| StoreError::Read(e.to_string()))?;
        Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn set_factor_subject(
        &self,
        method: &str,
        email: &str,
        subject: &str,
    ) -> Result<(), StoreError> {
        self.subjects
            .insert(subject_key(method, email), subject.as_bytes())
            .map_err(|e| StoreError::Write(e.to_string()))?;
        Ok(())
    }

    fn signup_users(&self) -> Result<Vec<User>, StoreError> {
        let mut users = Vec::new();
        for entry in self.signups.iter() {
            let (_, value) = entry.map_err(|e| StoreError::Read(e.to_string()))?;
            let user =
                serde_json::from_slice(&value).map_err(|e| StoreError::Read(e.to_string()))?;
            users.push(user);
        }
        Ok(users)
    }

    /// Compare-and-swap from "absent": two sign-ups of one email race safely.
    fn insert_signup_user(&self, user: &User) -> Result<bool, StoreError> {
        let value = serde_json::to_vec(user).map_err(|e| StoreError::Write(e.to_string()))?;
        let key = user.email.to_lowercase();
        let swapped = self
            .signups
            .compare_and_swap(key, None as Option<&[u8]>, Some(value))
            .map_err(|e| StoreError::Write(e.to_string()))?;
        Ok(swapped.is_ok())
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
            challenge: None,
        }
    }

    /// sled's flusher thread lets go of the file lock shortly after the
    /// last handle is dropped.
    fn reopen(path: &Path) -> SledStore {
        for _ in 0..100 {
            if let Ok(store) = SledStore::open(path) {
                return store;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("the database stayed locked");
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
        let store = reopen(dir.path());
        assert_eq!(
            store.load_all().unwrap(),
            vec![(key, record("a@example.com"))]
        );
    }

    #[test]
    fn factor_subjects_are_cached_per_method_and_email() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            store
                .set_factor_subject("authy", "A@example.com", "1001")
                .unwrap();
            store.flush().unwrap();
        }
        let store = reopen(dir.path());
        assert_eq!(
            store
                .factor_subject("authy", "a@example.com")
                .unwrap()
                .as_deref(),
            Some("1001")
        );
        assert_eq!(store.factor_subject("totp", "a@example.com").unwrap(), None);
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
