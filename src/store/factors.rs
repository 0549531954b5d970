//! What the second factors keep per user, beside the sessions: the TOTP
//! secret (sealed) with its last used step, the WebAuthn credentials, and
//! the method the user confirmed with last. Keyed by the lower-cased email, one value per user,
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

/// One registered security key or passkey.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebauthnRecord {
    /// The credential id, base64url: the key of the id → user index too.
    pub id: String,
    /// The user's name for it ("YubiKey", "laptop").
    pub name: String,
    /// The credential as webauthn-rs serialised it at registration (public
    /// key, algorithm, flags); its counter is `counter`, not the one inside.
    pub credential: String,
    pub created_at: u64,
    pub last_used: Option<u64>,
    /// The highest signature counter seen: a lower one is a cloned key.
    pub counter: u32,
    /// The authenticator may sync it (a passkey in a password manager).
    pub backup_eligible: bool,
    /// It is synced or backed up now, as of its last use.
    pub backup_state: bool,
}

/// What one successful assertion reports about its credential.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CredentialUse {
    pub counter: u32,
    pub backup_state: bool,
    pub at: u64,
}

/// What recording a credential's use did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialUseOutcome {
    Recorded,
    /// The user has no such credential (removed meanwhile).
    Unknown,
    /// The counter did not move past the stored one: two copies of the key
    /// exist, or an old assertion came back.
    CounterRegressed {
        stored: u32,
    },
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
    fn webauthn_credentials(&self, email: &str) -> Result<Vec<WebauthnRecord>, StoreError>;
    /// Keeps a new credential, on disk before it returns. False when its id
    /// is registered already, to this user or another: the id → user index
    /// is claimed first, so of two users racing for one id one gets it.
    fn add_webauthn(&self, email: &str, record: &WebauthnRecord) -> Result<bool, StoreError>;
    /// Records a use, atomically: only a counter past the stored one (or
    /// zero for a key that keeps none) is taken.
    fn use_webauthn(
        &self,
        email: &str,
        id: &str,
        used: CredentialUse,
    ) -> Result<CredentialUseOutcome, StoreError>;
    /// Removes one credential and its index entry. True when it was there.
    fn remove_webauthn(&self, email: &str, id: &str) -> Result<bool, StoreError>;
    /// Removes every credential of the user (an admin reset); the count.
    fn remove_all_webauthn(&self, email: &str) -> Result<usize, StoreError>;
    /// The user a credential id is registered to (a passkey login knows
    /// only the id). Readers check the user's own list too: the index may
    /// name a user whose removal was cut short.
    fn webauthn_owner(&self, id: &str) -> Result<Option<String>, StoreError>;
}

/// What each backend gives the WebAuthn edits below, which then run the
/// same on all of them: the user's value changed atomically, and the
/// id → user index.
pub(super) trait FactorCells {
    fn read_factors(&self, email: &str) -> Result<UserFactors, StoreError>;
    /// One atomic read-modify-write of the user's value; `change` says
    /// whether to write. On disk before it returns when `durable`.
    fn modify_factors_with(
        &self,
        email: &str,
        durable: bool,
        change: &mut dyn FnMut(&mut UserFactors) -> bool,
    ) -> Result<bool, StoreError>;
    /// Points `id` at `owner` unless it points at someone else already.
    /// True when it now points at `owner`.
    fn claim_credential_id(&self, id: &str, owner: &str) -> Result<bool, StoreError>;
    /// Drops `id` from the index if it points at `owner`.
    fn release_credential_id(&self, id: &str, owner: &str) -> Result<(), StoreError>;
    fn credential_id_owner(&self, id: &str) -> Result<Option<String>, StoreError>;
}

/// `FactorStore`'s WebAuthn methods, written once over `FactorCells`.
pub(super) mod webauthn_edits {
    use super::*;

    pub fn credentials(
        cells: &dyn FactorCells,
        email: &str,
    ) -> Result<Vec<WebauthnRecord>, StoreError> {
        Ok(cells.read_factors(email)?.webauthn)
    }

    /// The index first: a crash between the two leaves an entry naming a
    /// user without the credential, which readers check for.
    pub fn add(
        cells: &dyn FactorCells,
        email: &str,
        record: &WebauthnRecord,
    ) -> Result<bool, StoreError> {
        let owner = UserFactors::key(email);
        if !cells.claim_credential_id(&record.id, &owner)? {
            return Ok(false);
        }
        cells.modify_factors_with(email, true, &mut |f| f.add_webauthn(record))
    }

    pub fn record_use(
        cells: &dyn FactorCells,
        email: &str,
        id: &str,
        used: CredentialUse,
    ) -> Result<CredentialUseOutcome, StoreError> {
        let mut outcome = CredentialUseOutcome::Unknown;
        cells.modify_factors_with(email, false, &mut |f| {
            f.use_webauthn(id, used, &mut outcome)
        })?;
        Ok(outcome)
    }

    pub fn remove(cells: &dyn FactorCells, email: &str, id: &str) -> Result<bool, StoreError> {
        let removed = cells.modify_factors_with(email, true, &mut |f| f.remove_webauthn(id))?;
        if removed {
            cells.release_credential_id(id, &UserFactors::key(email))?;
        }
        Ok(removed)
    }

    pub fn remove_all(cells: &dyn FactorCells, email: &str) -> Result<usize, StoreError> {
        let mut removed = Vec::new();
        cells.modify_factors_with(email, true, &mut |f| {
            removed.clear();
            f.remove_all_webauthn(&mut removed)
        })?;
        let owner = UserFactors::key(email);
        for id in &removed {
            cells.release_credential_id(id, &owner)?;
        }
        Ok(removed.len())
    }

    pub fn owner(cells: &dyn FactorCells, id: &str) -> Result<Option<String>, StoreError> {
        let Some(owner) = cells.credential_id_owner(id)? else {
            return Ok(None);
        };
        let holds = cells
            .read_factors(&owner)?
            .webauthn
            .iter()
            .any(|c| c.id == id);
        Ok(holds.then_some(owner))
    }
}

/// The `FactorStore` WebAuthn methods of a backend that is `FactorCells`.
macro_rules! webauthn_methods {
    () => {
        fn webauthn_credentials(
            &self,
            email: &str,
        ) -> Result<Vec<$crate::store::WebauthnRecord>, StoreError> {
            super::factors::webauthn_edits::credentials(self, email)
        }

        fn add_webauthn(
            &self,
            email: &str,
            record: &$crate::store::WebauthnRecord,
        ) -> Result<bool, StoreError> {
            super::factors::webauthn_edits::add(self, email, record)
        }

        fn use_webauthn(
            &self,
            email: &str,
            id: &str,
            used: $crate::store::CredentialUse,
        ) -> Result<$crate::store::CredentialUseOutcome, StoreError> {
            super::factors::webauthn_edits::record_use(self, email, id, used)
        }

        fn remove_webauthn(&self, email: &str, id: &str) -> Result<bool, StoreError> {
            super::factors::webauthn_edits::remove(self, email, id)
        }

        fn remove_all_webauthn(&self, email: &str) -> Result<usize, StoreError> {
            super::factors::webauthn_edits::remove_all(self, email)
        }

        fn webauthn_owner(&self, id: &str) -> Result<Option<String>, StoreError> {
            super::factors::webauthn_edits::owner(self, id)
        }
    };
}
pub(super) use webauthn_methods;

/// A counter moves forward, or both are zero: a key that keeps no counter
/// (most synced passkeys) reports zero every time.
fn counter_moves_forward(stored: u32, seen: u32) -> bool {
    seen > stored || (stored == 0 && seen == 0)
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
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub webauthn: Vec<WebauthnRecord>,
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
        self.totp.is_none() && self.last_method.is_none() && self.webauthn.is_empty()
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

    pub fn add_webauthn(&mut self, record: &WebauthnRecord) -> bool {
        if self.webauthn.iter().any(|c| c.id == record.id) {
            return false;
        }
        self.webauthn.push(record.clone());
        true
    }

    /// The outcome goes to `outcome`; the return says whether to write.
    pub fn use_webauthn(
        &mut self,
        id: &str,
        used: CredentialUse,
        outcome: &mut CredentialUseOutcome,
    ) -> bool {
        let Some(record) = self.webauthn.iter_mut().find(|c| c.id == id) else {
            *outcome = CredentialUseOutcome::Unknown;
            return false;
        };
        if !counter_moves_forward(record.counter, used.counter) {
            *outcome = CredentialUseOutcome::CounterRegressed {
                stored: record.counter,
            };
            return false;
        }
        record.counter = used.counter;
        record.backup_state = used.backup_state;
        record.last_used = Some(used.at);
        *outcome = CredentialUseOutcome::Recorded;
        true
    }

    pub fn remove_webauthn(&mut self, id: &str) -> bool {
        let before = self.webauthn.len();
        self.webauthn.retain(|c| c.id != id);
        self.webauthn.len() != before
    }

    /// The ids removed go to `removed`.
    pub fn remove_all_webauthn(&mut self, removed: &mut Vec<String>) -> bool {
        removed.extend(self.webauthn.drain(..).map(|c| c.id));
        !removed.is_empty()
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

    pub fn credential(id: &str, counter: u32) -> WebauthnRecord {
        WebauthnRecord {
            id: id.into(),
            name: format!("key {id}"),
            credential: "{}".into(),
            created_at: 100,
            last_used: None,
            counter,
            backup_eligible: false,
            backup_state: false,
        }
    }

    fn used(counter: u32, at: u64) -> CredentialUse {
        CredentialUse {
            counter,
            backup_state: true,
            at,
        }
    }

    pub fn credentials_are_kept_and_indexed(store: &dyn FactorStore) {
        assert!(
            store
                .webauthn_credentials("a@example.com")
                .unwrap()
                .is_empty()
        );
        assert!(
            store
                .add_webauthn("A@example.com", &credential("k1", 0))
                .unwrap()
        );
        assert!(
            store
                .add_webauthn("a@example.com", &credential("k2", 5))
                .unwrap()
        );
        assert!(
            !store
                .add_webauthn("b@example.com", &credential("k1", 0))
                .unwrap(),
            "an id belongs to one user"
        );
        assert!(
            !store
                .add_webauthn("a@example.com", &credential("k1", 0))
                .unwrap()
        );
        let ids: Vec<String> = store
            .webauthn_credentials("a@example.com")
            .unwrap()
            .into_iter()
            .map(|c| c.id)
            .collect();
        assert_eq!(ids, ["k1", "k2"]);
        assert!(
            store
                .webauthn_credentials("b@example.com")
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            store.webauthn_owner("k2").unwrap().as_deref(),
            Some("a@example.com")
        );
        assert_eq!(store.webauthn_owner("k9").unwrap(), None);
        assert!(store.remove_webauthn("a@example.com", "k1").unwrap());
        assert!(!store.remove_webauthn("a@example.com", "k1").unwrap());
        assert_eq!(store.webauthn_owner("k1").unwrap(), None);
        assert!(
            store
                .add_webauthn("b@example.com", &credential("k1", 0))
                .unwrap(),
            "a removed id is free again"
        );
        assert_eq!(store.remove_all_webauthn("a@example.com").unwrap(), 1);
        assert_eq!(store.webauthn_owner("k2").unwrap(), None);
        assert_eq!(
            store.webauthn_owner("k1").unwrap().as_deref(),
            Some("b@example.com")
        );
    }

    pub fn a_credential_counter_only_moves_forward(store: &dyn FactorStore) {
        store
            .add_webauthn("c@example.com", &credential("c1", 5))
            .unwrap();
        store
            .add_webauthn("c@example.com", &credential("cz", 0))
            .unwrap();
        assert_eq!(
            store
                .use_webauthn("c@example.com", "c1", used(5, 200))
                .unwrap(),
            CredentialUseOutcome::CounterRegressed { stored: 5 }
        );
        assert_eq!(
            store
                .use_webauthn("c@example.com", "c1", used(6, 200))
                .unwrap(),
            CredentialUseOutcome::Recorded
        );
        assert_eq!(
            store
                .use_webauthn("c@example.com", "c1", used(2, 300))
                .unwrap(),
            CredentialUseOutcome::CounterRegressed { stored: 6 }
        );
        assert_eq!(
            store
                .use_webauthn("c@example.com", "cz", used(0, 300))
                .unwrap(),
            CredentialUseOutcome::Recorded,
            "a key without a counter says zero every time"
        );
        assert_eq!(
            store
                .use_webauthn("c@example.com", "gone", used(9, 300))
                .unwrap(),
            CredentialUseOutcome::Unknown
        );
        let k1 = store.webauthn_credentials("c@example.com").unwrap()[0].clone();
        assert_eq!(
            (k1.counter, k1.last_used, k1.backup_state),
            (6, Some(200), true)
        );
    }

    pub fn concurrent_uses_of_one_counter_pass_once(store: Arc<dyn FactorStore>) {
        store
            .add_webauthn("d@example.com", &credential("d1", 1))
            .unwrap();
        const THREADS: usize = 8;
        let barrier = Arc::new(Barrier::new(THREADS));
        let winners: usize = (0..THREADS)
            .map(|_| {
                let store = Arc::clone(&store);
                let barrier = Arc::clone(&barrier);
                std::thread::spawn(move || {
                    barrier.wait();
                    let outcome = store
                        .use_webauthn("d@example.com", "d1", used(2, 9))
                        .unwrap();
                    usize::from(outcome == CredentialUseOutcome::Recorded)
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .sum();
        assert_eq!(winners, 1);
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
