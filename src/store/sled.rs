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

use super::factors::UserFactors;
use super::{
    FactorStore, SessionKey, SessionRecord, SessionStore, StoreError, SubjectCache, TotpRecord,
    subject_key,
};
use crate::model::Method;
use crate::model::User;

/// sled's page cache; the request path reads memory, not sled (only the
/// flush task writes refreshed sessions), so a small cache is enough: with
/// 1,000,000 sessions a larger one only grows the RSS.
const CACHE_BYTES: u64 = 8 * 1024 * 1024;

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
    factors: sled::Tree,
    /// WebAuthn credential id → lower-cased email.
    credential_ids: sled::Tree,
    disabled: sled::Tree,
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
            trees: ArcSwapOption::from_pointee(open_trees_waiting(path)?),
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
            factors: db.open_tree("user_factors")?,
            credential_ids: db.open_tree("webauthn_credential_ids")?,
            disabled: db.open_tree("disabled_users")?,
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

/// Opens, waiting a little for a lock that a handle on its way out still
/// holds (our own after a reopen, `authgate demo`'s set-up, a previous
/// process of a restart).
fn open_trees_waiting(path: &Path) -> Result<Trees, StoreError> {
    let mut tries = 0;
    loop {
        match open_trees(path) {
            Err(e) if is_locked(&e) && tries < REOPEN_TRIES => {
                tries += 1;
                std::thread::sleep(REOPEN_EVERY);
            }
            result => return result,
        }
    }
}

fn describe_open_error(err: &sled::Error) -> String {
    let text = err.to_string();
    if text.contains(LOCKED) {
        format!("{text} (is another authgate running on this store?)")
    } else {
        text
    }
}

/// A disabled user is a key of its own tree (the value is empty); each
/// change is flushed at once, as it must outlive a crash.
impl super::DisabledUsers for SledStore {
    fn is_disabled(&self, email: &str) -> Result<bool, StoreError> {
        let key = super::disabled::disabled_key(email);
        self.trees()?
            .disabled
            .contains_key(key.as_bytes())
            .map_err(read_error)
    }

    fn set_disabled(&self, email: &str, disabled: bool) -> Result<bool, StoreError> {
        let key = super::disabled::disabled_key(email);
        let trees = self.trees()?;
        let before = if disabled {
            trees.disabled.insert(key.as_bytes(), &[])
        } else {
            trees.disabled.remove(key.as_bytes())
        }
        .map_err(write_error)?;
        trees.disabled.flush().map_err(write_error)?;
        Ok(before.is_some() != disabled)
    }

    fn disabled_users(&self) -> Result<Vec<String>, StoreError> {
        self.trees()?
            .disabled
            .iter()
            .keys()
            .map(|key| {
                let key = key.map_err(read_error)?;
                Ok(String::from_utf8_lossy(&key).into_owned())
            })
            .collect()
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

    fn load_each(
        &self,
        visit: &mut dyn FnMut(SessionKey, SessionRecord),
    ) -> Result<(), StoreError> {
        for entry in self.trees()?.sessions.iter() {
            let (key, value) = entry.map_err(read_error)?;
            let Ok(key) = <[u8; 32]>::try_from(key.as_ref()) else {
                continue;
            };
            // A record this version cannot read is skipped, not fatal: the
            // user logs in again, every other session survives.
            if let Ok(record) = serde_json::from_slice(&value) {
                visit(SessionKey(key), record);
            }
        }
        Ok(())
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
        let trees = open_trees_waiting(path)?;
        let probed = probe(&trees);
        self.trees.store(Some(Arc::new(trees)));
        probed
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

impl SledStore {
    fn user_factors(&self, email: &str) -> Result<UserFactors, StoreError> {
        let value = self
            .trees()?
            .factors
            .get(UserFactors::key(email))
            .map_err(read_error)?;
        value.map_or_else(|| Ok(UserFactors::default()), |v| UserFactors::decode(&v))
    }

    /// Applies `change` to the user's value with compare-and-swap, again on
    /// a fresh read whenever another writer came first; `change` says
    /// whether it changed anything (and is what this returns). `durable`
    /// flushes before returning.
    fn modify_factors(
        &self,
        email: &str,
        durable: bool,
        mut change: impl FnMut(&mut UserFactors) -> bool,
    ) -> Result<bool, StoreError> {
        let trees = self.trees()?;
        let key = UserFactors::key(email);
        loop {
            let current = trees.factors.get(&key).map_err(read_error)?;
            let mut factors = match &current {
                Some(value) => UserFactors::decode(value)?,
                None => UserFactors::default(),
            };
            if !change(&mut factors) {
                return Ok(false);
            }
            let new = if factors.is_empty() {
                None
            } else {
                Some(factors.encode()?)
            };
            let swapped = trees
                .factors
                .compare_and_swap(&key, current, new)
                .map_err(write_error)?;
            if swapped.is_ok() {
                if durable {
                    trees.db.flush().map_err(write_error)?;
                }
                return Ok(true);
            }
        }
    }
}

/// Only enrollments and resets are flushed at once. A used step is not:
/// the session it confirms is flushed right after (sled flushes every
/// tree), and the periodic flush covers the rest.
impl super::factors::FactorCells for SledStore {
    fn read_factors(&self, email: &str) -> Result<UserFactors, StoreError> {
        self.user_factors(email)
    }

    fn modify_factors_with(
        &self,
        email: &str,
        durable: bool,
        change: &mut dyn FnMut(&mut UserFactors) -> bool,
    ) -> Result<bool, StoreError> {
        self.modify_factors(email, durable, change)
    }

    fn claim_credential_id(&self, id: &str, owner: &str) -> Result<bool, StoreError> {
        let trees = self.trees()?;
        let claimed = trees
            .credential_ids
            .compare_and_swap(id, None as Option<&[u8]>, Some(owner.as_bytes()))
            .map_err(write_error)?;
        match claimed {
            Ok(()) => Ok(true),
            Err(seen) => Ok(seen.current.as_deref() == Some(owner.as_bytes())),
        }
    }

    fn release_credential_id(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        let trees = self.trees()?;
        // Only while it names `owner`: a new owner's claim stays.
        let _ = trees
            .credential_ids
            .compare_and_swap(id, Some(owner.as_bytes()), None as Option<&[u8]>)
            .map_err(write_error)?;
        Ok(())
    }

    fn credential_id_owner(&self, id: &str) -> Result<Option<String>, StoreError> {
        let value = self.trees()?.credential_ids.get(id).map_err(read_error)?;
        Ok(value.map(|v| String::from_utf8_lossy(&v).into_owned()))
    }
}

impl FactorStore for SledStore {
    super::factors::webauthn_methods!();

    fn totp(&self, email: &str) -> Result<Option<TotpRecord>, StoreError> {
        Ok(self.user_factors(email)?.totp)
    }

    fn set_totp(&self, email: &str, record: &TotpRecord) -> Result<(), StoreError> {
        self.modify_factors(email, true, |f| f.set_totp(record))?;
        Ok(())
    }

    fn remove_totp(&self, email: &str) -> Result<bool, StoreError> {
        self.modify_factors(email, true, UserFactors::remove_totp)
    }

    fn use_totp_step(&self, email: &str, step: u64) -> Result<bool, StoreError> {
        self.modify_factors(email, false, |f| f.use_totp_step(step))
    }

    fn reseal_totp(&self, email: &str, from: &str, to: &str) -> Result<bool, StoreError> {
        self.modify_factors(email, false, |f| f.reseal_totp(from, to))
    }

    fn last_method(&self, email: &str) -> Result<Option<Method>, StoreError> {
        Ok(self.user_factors(email)?.last_method())
    }

    fn set_last_method(&self, email: &str, method: Method) -> Result<(), StoreError> {
        self.modify_factors(email, false, |f| f.set_last_method(method))?;
        Ok(())
    }
}

impl SubjectCache for SledStore {
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
}

/// Listing and whole-record writes for `store copy`.
impl super::copy::StoreDump for SledStore {
    fn is_blank(&self) -> Result<bool, StoreError> {
        let trees = self.trees()?;
        Ok([
            &trees.sessions,
            &trees.subjects,
            &trees.signups,
            &trees.factors,
            &trees.disabled,
        ]
        .iter()
        .all(|tree| tree.is_empty()))
    }

    fn all_user_factors(&self) -> Result<Vec<(String, UserFactors)>, StoreError> {
        let mut all = Vec::new();
        for entry in self.trees()?.factors.iter() {
            let (key, value) = entry.map_err(read_error)?;
            let email = String::from_utf8(key.to_vec()).map_err(read_error)?;
            all.push((email, UserFactors::decode(&value)?));
        }
        Ok(all)
    }

    fn put_user_factors(&self, email: &str, factors: &UserFactors) -> Result<(), StoreError> {
        self.trees()?
            .factors
            .insert(UserFactors::key(email), factors.encode()?)
            .map_err(write_error)?;
        Ok(())
    }

    fn all_factor_subjects(&self) -> Result<Vec<super::copy::FactorSubject>, StoreError> {
        let mut all = Vec::new();
        for entry in self.trees()?.subjects.iter() {
            let (key, value) = entry.map_err(read_error)?;
            all.push(factor_subject(&key, &value)?);
        }
        Ok(all)
    }
}

/// A `subjects` entry: key `<method>\0<email>` (see `subject_key`).
fn factor_subject(key: &[u8], value: &[u8]) -> Result<super::copy::FactorSubject, StoreError> {
    let key = std::str::from_utf8(key).map_err(read_error)?;
    let (method, email) = key
        .split_once('\0')
        .ok_or_else(|| read_error(format!("provider id key {key:?} has no method")))?;
    Ok(super::copy::FactorSubject {
        method: method.to_owned(),
        email: email.to_owned(),
        subject: String::from_utf8_lossy(value).into_owned(),
    })
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
            device: None,
            second_factor_method: None,
            client: None,
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

    #[test]
    fn an_enrollment_is_on_disk_when_set_totp_returns() {
        let dir = tempfile::tempdir().unwrap();
        let record = TotpRecord {
            sealed: "v1.abc".into(),
            enrolled_at: 100,
            last_step: 3,
        };
        let store = SledStore::open(dir.path()).unwrap();
        store.set_totp("a@example.com", &record).unwrap();
        let crashed = on_disk_now(dir.path());
        drop(store);
        let store = reopen(crashed.path());
        assert_eq!(store.totp("A@example.com").unwrap(), Some(record));
    }

    #[test]
    fn a_removal_is_on_disk_when_remove_totp_returns() {
        let dir = tempfile::tempdir().unwrap();
        let record = TotpRecord {
            sealed: "v1.abc".into(),
            enrolled_at: 100,
            last_step: 3,
        };
        let store = SledStore::open(dir.path()).unwrap();
        store.set_totp("a@example.com", &record).unwrap();
        assert!(store.remove_totp("a@example.com").unwrap());
        let crashed = on_disk_now(dir.path());
        drop(store);
        let store = reopen(crashed.path());
        assert_eq!(store.totp("a@example.com").unwrap(), None);
    }

    /// A copy of the database files as they are now, while the store is
    /// still open: what a crash would leave behind, without the flush that
    /// sled does when the last handle is dropped.
    fn on_disk_now(path: &Path) -> tempfile::TempDir {
        fn copy_dir(from: &Path, to: &Path) {
            for entry in std::fs::read_dir(from).unwrap() {
                let entry = entry.unwrap();
                let target = to.join(entry.file_name());
                if entry.file_type().unwrap().is_dir() {
                    std::fs::create_dir_all(&target).unwrap();
                    copy_dir(&entry.path(), &target);
                } else {
                    std::fs::copy(entry.path(), target).unwrap();
                }
            }
        }
        let copy = tempfile::tempdir().unwrap();
        copy_dir(path, copy.path());
        copy
    }

    /// A session stored before the client's address was kept loads, with
    /// none; one with an address comes back with it after a reopen.
    #[test]
    fn a_session_stored_without_a_client_address_loads() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (SessionKey([8; 32]), SessionKey([9; 32]));
        let client = "2001:db8::9".parse().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            let stored = br#"{"user":"a@example.com","level":"two_factor","auth_time":100,"second_factor_time":130,"created_at":100,"last_seen":160,"device":{"browser":"firefox","os":"linux"},"second_factor_method":"totp"}"#;
            store
                .trees()
                .unwrap()
                .sessions
                .insert(old.0, &stored[..])
                .unwrap();
            let with = SessionRecord {
                client: Some(client),
                ..record("b@example.com")
            };
            store.put(&new, &with).unwrap();
            store.flush().unwrap();
        }
        let store = reopen(dir.path());
        let mut loaded = store.load_all().unwrap();
        loaded.sort_by_key(|(key, _)| key.0);
        assert_eq!(loaded.len(), 2);
        assert_eq!(&*loaded[0].1.user, "a@example.com");
        assert_eq!(loaded[0].1.client, None);
        assert_eq!(loaded[1].1.client, Some(client));
    }
}
