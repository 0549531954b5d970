//! What the second factors keep per user, beside the sessions: the TOTP
//! secret (sealed) with its last used step, and the method the user
//! confirmed with last. Keyed by the lower-cased email, one value per user,
//! so every change is a single atomic read-modify-write of that value.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::StoreError;
use crate::model::Method;

/// A user's enrolled TOTP secret.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TotpRecord {
    /// The secret as `SecretSealer` sealed it (bound to the email).
    pub sealed: String,
    /// Unix seconds; an admin reset after it voids the enrollment.
    pub enrolled_at: u64,
    /// The newest TOTP step accepted: no code of this step or an older one
    /// is accepted again.
    pub last_step: u64,
}

/// Even sealed, the secret stays out of logs: a leaked key would open it.
impl fmt::Debug for TotpRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TotpRecord")
            .field("sealed", &"<redacted>")
            .field("enrolled_at", &self.enrolled_at)
            .field("last_step", &self.last_step)
            .finish()
    }
}

pub trait FactorStore: Send + Sync {
    fn totp(&self, email: &str) -> Result<Option<TotpRecord>, StoreError>;
    /// Replaces the user's record; on disk before it returns, so a user
    /// who enrolled does not lose the enrollment in a crash.
    fn set_totp(&self, email: &str, record: &TotpRecord) -> Result<(), StoreError>;
    /// Forgets the user's TOTP (an admin reset); on disk before it returns.
    /// True when there was one.
    fn remove_totp(&self, email: &str) -> Result<bool, StoreError>;
    /// Marks `step` used, atomically: true only when the user has a record
    /// and `step` is newer than its `last_step`, so of two submissions of
    /// one code (from any sessions) exactly one gets true.
    fn use_totp_step(&self, email: &str, step: u64) -> Result<bool, StoreError>;
    /// Swaps the sealed secret for one sealed under the current key, only
    /// while the record still holds `from`: a re-enrollment or a reset that
    /// came in between wins. True when swapped.
    fn reseal_totp(&self, email: &str, from: &str, to: &str) -> Result<bool, StoreError>;
    fn last_method(&self, email: &str) -> Result<Option<Method>, StoreError>;
    fn set_last_method(&self, email: &str, method: Method) -> Result<(), StoreError>;
}

/// The stored value of one user. Both stores apply the same edits to it,
/// so the rules (newer step only, reseal only from the expected value)
/// live here once.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct UserFactors {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<TotpRecord>,
    /// `Method::as_str`; a name this build does not know reads as none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_method: Option<String>,
}

impl UserFactors {
    pub fn key(email: &str) -> String {
        email.to_lowercase()
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, StoreError> {
        // An unreadable value is an error, not "nothing enrolled": treating
        // it as absent would let the user enroll a second secret silently.
        serde_json::from_slice(bytes).map_err(|e| StoreError::Read(format!("user factors: {e}")))
    }

    pub fn encode(&self) -> Result<Vec<u8>, StoreError> {
        serde_json::to_vec(self).map_err(|e| StoreError::Write(e.to_string()))
    }

    /// Nothing left to keep: the stores drop the key instead.
    pub fn is_empty(&self) -> bool {
        self.totp.is_none() && self.last_method.is_none()
    }

    pub fn last_method(&self) -> Option<Method> {
        self.last_method.as_deref().and_then(Method::parse)
    }

    pub fn set_totp(&mut self, record: &TotpRecord) -> bool {
        self.totp = Some(record.clone());
        true
    }

    pub fn remove_totp(&mut self) -> bool {
        self.totp.take().is_some()
    }

    pub fn use_totp_step(&mut self, step: u64) -> bool {
        match &mut self.totp {
            Some(record) if step > record.last_step => {
                record.last_step = step;
                true
            }
            _ => false,
        }
    }

    pub fn reseal_totp(&mut self, from: &str, to: &str) -> bool {
        match &mut self.totp {
            Some(record) if record.sealed == from => {
                record.sealed = to.to_owned();
                true
            }
            _ => false,
        }
    }

    pub fn set_last_method(&mut self, method: Method) -> bool {
        let name = Some(method.as_str().to_owned());
        let changed = self.last_method != name;
        self.last_method = name;
        changed
    }
}

/// The contract both stores must keep; each store's tests run it.
#[cfg(test)]
pub(super) mod contract {
    use std::sync::{Arc, Barrier};

    use super::*;

    fn record(sealed: &str, last_step: u64) -> TotpRecord {
        TotpRecord {
            sealed: sealed.into(),
            enrolled_at: 100,
            last_step,
        }
    }

    pub fn totp_records_are_kept_per_lower_cased_email(store: &dyn FactorStore) {
        assert_eq!(store.totp("a@example.com").unwrap(), None);
        store
            .set_totp("A@Example.com", &record("v1.abc", 5))
            .unwrap();
        assert_eq!(
            store.totp("a@example.com").unwrap(),
            Some(record("v1.abc", 5))
        );
        assert_eq!(store.totp("b@example.com").unwrap(), None);
        store
            .set_totp("a@example.com", &record("v1.new", 0))
            .unwrap();
        assert_eq!(
            store.totp("a@EXAMPLE.com").unwrap(),
            Some(record("v1.new", 0))
        );
        assert!(store.remove_totp("a@example.com").unwrap());
        assert!(!store.remove_totp("a@example.com").unwrap());
        assert_eq!(store.totp("a@example.com").unwrap(), None);
    }

    pub fn a_step_is_used_once_and_only_forward(store: &dyn FactorStore) {
        assert!(
            !store.use_totp_step("a@example.com", 10).unwrap(),
            "no record, no step"
        );
        store
            .set_totp("a@example.com", &record("v1.x", 10))
            .unwrap();
        assert!(!store.use_totp_step("a@example.com", 10).unwrap());
        assert!(!store.use_totp_step("a@example.com", 9).unwrap());
        assert!(store.use_totp_step("A@example.com", 11).unwrap());
        assert!(!store.use_totp_step("a@example.com", 11).unwrap());
        assert_eq!(store.totp("a@example.com").unwrap().unwrap().last_step, 11);
    }

    pub fn concurrent_uses_of_one_step_pass_once(store: Arc<dyn FactorStore>) {
        store.set_totp("a@example.com", &record("v1.x", 0)).unwrap();
        const THREADS: usize = 8;
        let barrier = Arc::new(Barrier::new(THREADS));
        let winners: usize = (0..THREADS)
            .map(|_| {
                let store = Arc::clone(&store);
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    usize::from(store.use_totp_step("a@example.com", 7).unwrap())
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(winners, 1);
    }

    pub fn reseal_only_replaces_the_expected_secret(store: &dyn FactorStore) {
        assert!(
            !store
                .reseal_totp("a@example.com", "v1.old", "v1.new")
                .unwrap()
        );
        store
            .set_totp("a@example.com", &record("v1.old", 3))
            .unwrap();
        assert!(
            !store
                .reseal_totp("a@example.com", "v1.other", "v1.new")
                .unwrap()
        );
        assert!(
            store
                .reseal_totp("a@example.com", "v1.old", "v1.new")
                .unwrap()
        );
        assert_eq!(
            store.totp("a@example.com").unwrap(),
            Some(record("v1.new", 3)),
            "only the sealed secret changes"
        );
    }

    pub fn the_last_method_is_kept_beside_the_totp(store: &dyn FactorStore) {
        assert_eq!(store.last_method("a@example.com").unwrap(), None);
        store
            .set_last_method("A@example.com", Method::Totp)
            .unwrap();
        store.set_totp("a@example.com", &record("v1.x", 1)).unwrap();
        store
            .set_last_method("a@example.com", Method::Authy)
            .unwrap();
        assert_eq!(
            store.last_method("a@example.com").unwrap(),
            Some(Method::Authy)
        );
        assert_eq!(
            store.totp("a@example.com").unwrap(),
            Some(record("v1.x", 1))
        );
        assert!(store.remove_totp("a@example.com").unwrap());
        assert_eq!(
            store.last_method("a@example.com").unwrap(),
            Some(Method::Authy),
            "a reset of the TOTP keeps the method order"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_sealed_secret() {
        let record = TotpRecord {
            sealed: "v1.c2VjcmV0".into(),
            enrolled_at: 1,
            last_step: 2,
        };
        let shown = format!("{record:?}");
        assert!(!shown.contains("c2VjcmV0"), "{shown}");
        assert!(shown.contains("last_step: 2"), "{shown}");
    }

    #[test]
    fn an_unknown_method_name_reads_as_none() {
        let factors = UserFactors::decode(br#"{"last_method":"carrier-pigeon"}"#).unwrap();
        assert_eq!(factors.last_method(), None);
        assert!(factors.totp.is_none());
    }

    #[test]
    fn an_unreadable_value_is_an_error_not_an_empty_user() {
        assert!(matches!(
            UserFactors::decode(b"{not json"),
            Err(StoreError::Read(_))
        ));
    }
}
