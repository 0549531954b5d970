//! sled 0.34 as the durable store. Writes land in sled's in-memory log and
//! reach disk on `flush`, which the server calls every `store.flush_interval`
//! and at shutdown, and `LiveSessions` after every new session.
//!
//! sled keeps the first I/O error it meets (a full disk, say) and fails
//! every later call with it, even once the cause is gone; `reopen` closes
//! the database and opens it again, which is how the store comes back.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;

use super::{SessionKey, SessionRecord, SessionStore, StoreError, subject_key};
use crate::users::User;

/// sled's page cache; the request path reads memory, not sled, so a small
/// cache is enough (DESIGN.md "Measured").
const CACHE_BYTES: u64 = 16 * 1024 * 1024;

/// sled lets go of its file lock shortly after the last handle is dropped
/// (its flusher thread ends first): how long a reopen waits for that.
const REOPEN_TRIES: u32 = 50;
const REOPEN_EVERY: Duration = Duration::from_millis(20);

/// What a reopened store must be able to write and flush before it counts
/// as working again: a flush with nothing to write succeeds even on a full
/// disk, and a few bytes still fit into a half-used block.
const PROBE_BYTES: usize = 64 * 1024;
const PROBE_KEY: &[u8] = b"authgate-write-probe";

pub struct SledStore {
    /// `None` for a temporary database, which cannot be reopened.
    path: Option<PathBuf>,
    /// `None` between a failed reopen and the next one.
    trees: ArcSwapOption<Trees>,
}

struct Trees {
    db: sled::Db,
    sessions: sled::Tree,
    subjects: sled::Tree,
    signups: sled::Tree,
}

fn write_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Write(e.to_string())
}

fn read_error(e: impl std::fmt::Display) -> StoreError {
    StoreError::Read(e.to_string())
}

impl SledStore {
    /// Opens (creating) the database at `store.path`. Errors name the key:
    /// a path that is a regular file, or a database another process holds.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(SledStore {
            trees: ArcSwapOption::from_pointee(open_trees(path)?),
            path: Some(path.to_owned()),
        })
    }

    /// A throw-away database for tests.
    pub fn temporary() -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(write_error)?;
        Ok(SledStore {
            trees: ArcSwapOption::from_pointee(Trees::of(db).map_err(read_error)?),
            path: None,
        })
    }

    fn trees(&self) -> Result<Arc<Trees>, StoreError> {
        self.trees
            .load_full()
            .ok_or_else(|| StoreError::Write("the store is closed after a failure".into()))
    }
}

impl Trees {
    fn of(db: sled::Db) -> sled::Result<Self> {
        Ok(Trees {
            sessions: db.open_tree("sessions")?,
            subjects: db.open_tree("factor_subjects")?,
            signups: db.open_tree("signup_users")?,
            db,
        })
    }
}

fn open_trees(path: &Path) -> Result<Trees, StoreError> {
    let open_error = |reason: String| StoreError::Open {
        path: path.display().to_string(),
        reason,
    };
    if path.exists() && !path.is_dir() {
        return Err(open_error(
            "is not a directory (sled keeps its files in a directory)".into(),
        ));
    }
    let db = sled::Config::new()
        .path(path)
        .cache_capacity(CACHE_BYTES)
        .open()
        .map_err(|e| open_error(describe_open_error(&e)))?;
    Trees::of(db).map_err(|e| open_error(e.to_string()))
}

/// Writes, flushes and removes `PROBE_BYTES` in sled's default tree.
fn probe(trees: &Trees) -> Result<(), StoreError> {
    let db = &trees.db;
    db.insert(PROBE_KEY, vec![0u8; PROBE_BYTES])
        .and_then(|_| db.flush())
        .and_then(|_| db.remove(PROBE_KEY))
        .and_then(|_| db.flush())
        .map(|_| ())
        .map_err(write_error)
}

const LOCKED: &str = "could not acquire lock";

/// Another handle (ours, on its way out, or another process) holds the
/// database's file lock.
fn is_locked(err: &StoreError) -> bool {
    matches!(err, StoreError::Open { reason, .. } if reason.contains(LOCKED))
}

fn describe_open_error(err: &sled::Error) -> String {
    let text = err.to_string();
    if text.contains(LOCKED) {
        format!("{text} (is another authgate running on this store?)")
    } else {
        text
    }
}

impl SessionStore for SledStore {
    fn put(&self, key: &SessionKey, session: &SessionRecord) -> Result<(), StoreError> {
        let value = serde_json::to_vec(session).map_err(write_error)?;
        self.trees()?
            .sessions
            .insert(key.0, value)
            .map_err(write_error)?;
        Ok(())
    }

    fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        self.trees()?.sessions.remove(key.0).map_err(write_error)?;
        Ok(())
    }

    fn load_all(&self) -> Result<Vec<(SessionKey, SessionRecord)>, StoreError> {
        let mut all = Vec::new();
        for entry in self.trees()?.sessions.iter() {
            let (key, value) = entry.map_err(read_error)?;
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
        self.trees()?.db.flush().map(|_| ()).map_err(write_error)
    }

    fn reopen(&self) -> Result<(), StoreError> {
        let Some(path) = &self.path else {
            return Ok(());
        };
        // Our handle goes first: sled's lock is free once the last one is.
        drop(self.trees.swap(None));
        let mut tries = 0;
        let trees = loop {
            match open_trees(path) {
                Ok(trees) => break trees,
                Err(e) if is_locked(&e) && tries < REOPEN_TRIES => {
                    tries += 1;
                    std::thread::sleep(REOPEN_EVERY);
                }
                Err(e) => return Err(e),
            }
        };
        let probed = probe(&trees);
        self.trees.store(Some(Arc::new(trees)));
        probed
    }

    fn factor_subject(&self, method: &str, email: &str) -> Result<Option<String>, StoreError> {
        let value = self
            .trees()?
            .subjects
            .get(subject_key(method, email))
            .map_err(read_error)?;
        Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }

    fn set_factor_subject(
        &self,
        method: &str,
        email: &str,
        subject: &str,
    ) -> Result<(), StoreError> {
        self.trees()?
            .subjects
            .insert(subject_key(method, email), subject.as_bytes())
            .map_err(write_error)?;
        Ok(())
    }

    fn signup_users(&self) -> Result<Vec<User>, StoreError> {
        let mut users = Vec::new();
        for entry in self.trees()?.signups.iter() {
            let (_, value) = entry.map_err(read_error)?;
            let user = serde_json::from_slice(&value).map_err(read_error)?;
            users.push(user);
        }
        Ok(users)
    }

    /// Compare-and-swap from "absent": two sign-ups of one email race
    /// safely. Flushed before it returns: an account the user was told
    /// about survives a crash.
    fn insert_signup_user(&self, user: &User) -> Result<bool, StoreError> {
        let value = serde_json::to_vec(user).map_err(write_error)?;
        let key = user.email.to_lowercase();
        let trees = self.trees()?;
        let swapped = trees
            .signups
            .compare_and_swap(key, None as Option<&[u8]>, Some(value))
            .map_err(write_error)?;
        if swapped.is_ok() {
            trees.db.flush().map_err(write_error)?;
        }
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

    #[test]
    fn a_regular_file_as_the_path_is_refused_naming_the_key() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let err = SledStore::open(file.path())
            .err()
            .expect("a file is no database directory");
        assert!(err.to_string().starts_with("store.path"), "{err}");
        assert!(err.to_string().contains("not a directory"), "{err}");
    }

    #[test]
    fn reopen_keeps_what_was_flushed_and_the_store_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        store
            .put(&SessionKey([1; 32]), &record("a@example.com"))
            .unwrap();
        store.flush().unwrap();
        store.reopen().unwrap();
        assert_eq!(store.load_all().unwrap().len(), 1);
        store
            .put(&SessionKey([2; 32]), &record("b@example.com"))
            .unwrap();
        store.flush().unwrap();
        drop(store);
        assert_eq!(reopen(dir.path()).load_all().unwrap().len(), 2);
    }
}
