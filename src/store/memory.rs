use std::collections::{BTreeSet, HashMap};
use std::sync::Mutex;

use super::factors::{FactorCells, UserFactors, webauthn_methods};
use super::{
    FactorStore, SessionKey, SessionRecord, SessionStore, StoreError, SubjectCache, TotpRecord,
    subject_key,
};
use crate::model::Method;
use crate::model::User;

/// A store that forgets everything on exit; for tests of the auth flow.
#[derive(Default)]
pub struct MemoryStore {
    sessions: Mutex<HashMap<SessionKey, SessionRecord>>,
    subjects: Mutex<HashMap<String, String>>,
    signups: Mutex<HashMap<String, User>>,
    factors: Mutex<HashMap<String, UserFactors>>,
    /// WebAuthn credential id → lower-cased email.
    credential_ids: Mutex<HashMap<String, String>>,
    disabled: Mutex<BTreeSet<String>>,
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

impl MemoryStore {
    fn user_factors(&self, email: &str) -> UserFactors {
        let factors = self.factors.lock().unwrap_or_else(|e| e.into_inner());
        factors
            .get(&UserFactors::key(email))
            .cloned()
            .unwrap_or_default()
    }

    /// The lock is held across the read and the write, which is what makes
    /// `use_totp_step` atomic here.
    fn modify_factors(&self, email: &str, change: impl FnOnce(&mut UserFactors) -> bool) -> bool {
        let mut factors = self.factors.lock().unwrap_or_else(|e| e.into_inner());
        let key = UserFactors::key(email);
        let mut user = factors.remove(&key).unwrap_or_default();
        let changed = change(&mut user);
        if !user.is_empty() {
            factors.insert(key, user);
        }
        changed
    }
}

impl FactorCells for MemoryStore {
    fn read_factors(&self, email: &str) -> Result<UserFactors, StoreError> {
        Ok(self.user_factors(email))
    }

    fn modify_factors_with(
        &self,
        email: &str,
        _durable: bool,
        change: &mut dyn FnMut(&mut UserFactors) -> bool,
    ) -> Result<bool, StoreError> {
        Ok(self.modify_factors(email, change))
    }

    fn claim_credential_id(&self, id: &str, owner: &str) -> Result<bool, StoreError> {
        let mut ids = self
            .credential_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Ok(ids.entry(id.to_owned()).or_insert_with(|| owner.to_owned()) == owner)
    }

    fn release_credential_id(&self, id: &str, owner: &str) -> Result<(), StoreError> {
        let mut ids = self
            .credential_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if ids.get(id).is_some_and(|o| o == owner) {
            ids.remove(id);
        }
        Ok(())
    }

    fn credential_id_owner(&self, id: &str) -> Result<Option<String>, StoreError> {
        let ids = self
            .credential_ids
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        Ok(ids.get(id).cloned())
    }
}

impl FactorStore for MemoryStore {
    webauthn_methods!();

    fn totp(&self, email: &str) -> Result<Option<TotpRecord>, StoreError> {
        Ok(self.user_factors(email).totp)
    }

    fn set_totp(&self, email: &str, record: &TotpRecord) -> Result<(), StoreError> {
        self.modify_factors(email, |f| f.set_totp(record));
        Ok(())
    }

    fn remove_totp(&self, email: &str) -> Result<bool, StoreError> {
        Ok(self.modify_factors(email, UserFactors::remove_totp))
    }

    fn use_totp_step(&self, email: &str, step: u64) -> Result<bool, StoreError> {
        Ok(self.modify_factors(email, |f| f.use_totp_step(step)))
    }

    fn reseal_totp(&self, email: &str, from: &str, to: &str) -> Result<bool, StoreError> {
        Ok(self.modify_factors(email, |f| f.reseal_totp(from, to)))
    }

    fn last_method(&self, email: &str) -> Result<Option<Method>, StoreError> {
        Ok(self.user_factors(email).last_method())
    }

    fn set_last_method(&self, email: &str, method: Method) -> Result<(), StoreError> {
        self.modify_factors(email, |f| f.set_last_method(method));
        Ok(())
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

    fn load_each(
        &self,
        visit: &mut dyn FnMut(SessionKey, SessionRecord),
    ) -> Result<(), StoreError> {
        for (key, record) in self.sessions()?.iter() {
            visit(*key, record.clone());
        }
        Ok(())
    }

    fn flush(&self) -> Result<(), StoreError> {
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

impl super::DisabledUsers for MemoryStore {
    fn is_disabled(&self, email: &str) -> Result<bool, StoreError> {
        let disabled = self.disabled.lock().unwrap_or_else(|e| e.into_inner());
        Ok(disabled.contains(&super::disabled::disabled_key(email)))
    }

    fn set_disabled(&self, email: &str, disabled: bool) -> Result<bool, StoreError> {
        let mut set = self.disabled.lock().unwrap_or_else(|e| e.into_inner());
        let key = super::disabled::disabled_key(email);
        Ok(if disabled {
            set.insert(key)
        } else {
            set.remove(&key)
        })
    }

    fn disabled_users(&self) -> Result<Vec<String>, StoreError> {
        let set = self.disabled.lock().unwrap_or_else(|e| e.into_inner());
        Ok(set.iter().cloned().collect())
    }
}

impl SubjectCache for MemoryStore {
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
}
