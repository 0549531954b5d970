use std::collections::HashMap;
use std::sync::Mutex;

use super::{SessionKey, SessionRecord, SessionStore, StoreError, subject_key};
use crate::users::User;

/// A store that forgets everything on exit; for tests of the auth flow.
#[derive(Default)]
pub struct MemoryStore {
    sessions: Mutex<HashMap<SessionKey, SessionRecord>>,
    subjects: Mutex<HashMap<String, String>>,
    signups: Mutex<HashMap<String, User>>,
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

    fn factor_subject(&self, method: &str, email: &str) -> Result<Option<String>, StoreError> {
        let subjects = self.subjects.lock().unwrap_or_else(|e| e.into_inner());
        Ok(subjects.get(&subject_key(method, email)).cloned())
    }

    fn set_factor_subject(
        &self,
        method: &str,
        email: &str,
        subject: &str,
    ) -> Result<(), StoreError> {
        let mut subjects = self.subjects.lock().unwrap_or_else(|e| e.into_inner());
        subjects.insert(subject_key(method, email), subject.to_owned());
        Ok(())
    }

    fn signup_users(&self) -> Result<Vec<User>, StoreError> {
        let signups = self.signups.lock().unwrap_or_else(|e| e.into_inner());
        Ok(signups.values().cloned().collect())
    }

    fn insert_signup_user(&self, user: &User) -> Result<bool, StoreError> {
        let mut signups = self.signups.lock().unwrap_or_else(|e| e.into_inner());
        let key = user.email.to_lowercase();
        if signups.contains_key(&key) {
            return Ok(false);
        }
        signups.insert(key, user.clone());
        Ok(true)
    }
}
