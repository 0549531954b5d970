//! Each user's live sessions, for a private store (sled, memory). Built
//! from the sessions as they load, so a crash cannot leave it stale, and
//! changed only together with the live map, under its own lock taken
//! first: a reader never sees a key in one and not in the other.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::compact::CompactRecord;
use super::session_map::SessionMap;
use super::{SessionKey, SessionRecord};

/// User (their email as the sessions hold it, the one shared copy) →
/// keys of their live sessions.
#[derive(Default)]
pub(super) struct UserIndex(Mutex<HashMap<Arc<str>, Vec<SessionKey>>>);

impl UserIndex {
    /// While the sessions load, before anyone else can see the index.
    pub(super) fn add(&mut self, user: &Arc<str>, key: SessionKey) {
        let index = self.0.get_mut().unwrap_or_else(|e| e.into_inner());
        index.entry(Arc::clone(user)).or_default().push(key);
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<Arc<str>, Vec<SessionKey>>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Makes the session live and lists it, in one step.
    pub(super) fn insert(&self, live: &SessionMap, key: SessionKey, record: CompactRecord) {
        let mut index = self.lock();
        let user = Arc::clone(record.user());
        live.insert(&key, record);
        index.entry(user).or_default().push(key);
    }

    /// Ends the session and unlists it, in one step; whether it was live.
    pub(super) fn remove(&self, live: &SessionMap, key: &SessionKey) -> bool {
        let mut index = self.lock();
        let Some(record) = live.take(key) else {
            return false;
        };
        if let Some(keys) = index.get_mut(record.user()) {
            keys.retain(|listed| listed != key);
            if keys.is_empty() {
                index.remove(record.user());
            }
        }
        true
    }

    /// The user's sessions (the email in any case), read from the map.
    pub(super) fn sessions_of(
        &self,
        live: &SessionMap,
        email: &str,
    ) -> Vec<(SessionKey, SessionRecord)> {
        let index = self.lock();
        let keys = index.get(email).or_else(|| {
            index
                .iter()
                .find(|(user, _)| user.eq_ignore_ascii_case(email))
                .map(|(_, keys)| keys)
        });
        keys.into_iter()
            .flatten()
            .filter_map(|key| live.get(key).map(|record| (*key, record.record())))
            .collect()
    }
}
