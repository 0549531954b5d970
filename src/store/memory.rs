use std::collections::HashMap;
use std::sync::Mutex;

use super::{SessionKey, SessionRecord, SessionStore, StoreError};

/// A store that forgets everything on exit; for tests of the auth flow.
#[derive(Default)]
pub struct MemoryStore {
    sessions: Mutex<HashMap<SessionKey, SessionRecord>>,
}

impl MemoryStore {
    fn sessions(
        &self,
    ) -> Result<std::sync::MutexGuard<'_, HashMap<SessionKey, SessionRecord>>, StoreError> {
        self.sessions
            .lock()
            .map_err(|_| StoreError::Write("memory store poisoned".into()))
    }
}

impl SessionStore for MemoryStore {
    fn put(&self, key: &SessionKey, session: &SessionRecord) -> Result<(), StoreError> {
        self.sessions()?.insert(*key, session.clone());
        Ok(())
    }

    fn delete(&self, key: &SessionKey) -> Result<(), StoreError> {
        self.sessions()?.remove(key);
        Ok(())
    }

    fn load_all(&self) -> Result<Vec<(SessionKey, SessionRecord)>, StoreError> {
        Ok(self
            .sessions()?
            .iter()
            .map(|(k, v)| (*k, v.clone()))
            .collect())
    }

    fn flush(&self) -> Result<(), StoreError> {
        Ok(())
    }
}
