//! `authgate store copy`: moves everything a gateway keeps from sled to
//! Redis or back, with the gateway stopped. Sessions, disabled users,
//! sign-up users, the users' factors (sealed TOTP secrets, last step,
//! last method) and the providers' ids. The target must be empty: a copy never mixes two
//! stores' data, so running it twice cannot merge stale records in.

use std::path::Path;

use super::factors::UserFactors;
use super::{
    DisabledUsers, RedisStore, SessionStore, SessionTimeouts, SledStore, StoreError, SubjectCache,
};
use crate::config::RedisConfig;

/// Which way the data goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CopyDirection {
    SledToRedis,
    RedisToSled,
}

/// How many records of each kind were copied.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Copied {
    pub sessions: usize,
    pub disabled_users: usize,
    pub signup_users: usize,
    pub user_factors: usize,
    pub factor_subjects: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    /// A store call failed at this step.
    #[error("{step}: {reason}")]
    Store { step: String, reason: StoreError },
    /// Opening would create an empty store and copy nothing.
    #[error("there is no sled store at store.path {0}")]
    NoSledStore(String),
    #[error("{0} already holds authgate data; copy only into an empty store")]
    TargetNotEmpty(&'static str),
    /// Written to while the copy ran: a gateway is using the target.
    #[error("sign-up user {email} appeared in {target} during the copy; stop the gateway")]
    TargetChanged { email: String, target: &'static str },
}

/// The provider's id for one user, as listed by [`StoreDump`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct FactorSubject {
    pub method: String,
    pub email: String,
    pub subject: String,
}

/// What a copy needs of a store beyond the traits the gateway uses: the
/// lists of everything, and writing a user's factors whole.
pub(super) trait StoreDump:
    SessionStore + SubjectCache + DisabledUsers + super::factors::FactorCells
{
    /// True when the store holds nothing a copy would write.
    fn is_blank(&self) -> Result<bool, StoreError>;
    /// Every user's factors, keyed by the lower-cased email.
    fn all_user_factors(&self) -> Result<Vec<(String, UserFactors)>, StoreError>;
    fn put_user_factors(&self, email: &str, factors: &UserFactors) -> Result<(), StoreError>;
    fn all_factor_subjects(&self) -> Result<Vec<FactorSubject>, StoreError>;
}

/// Opens both stores and copies from one to the other. `timeouts` are the
/// sessions' (`[session]`): Redis keys expire with them.
pub fn copy_store(
    direction: CopyDirection,
    sled_path: &Path,
    redis: &RedisConfig,
    timeouts: SessionTimeouts,
) -> Result<Copied, CopyError> {
    if direction == CopyDirection::SledToRedis && !sled_path.is_dir() {
        return Err(CopyError::NoSledStore(sled_path.display().to_string()));
    }
    let sled = SledStore::open(sled_path).map_err(at(format!(
        "opening sled at store.path {} (is the gateway stopped?)",
        sled_path.display()
    )))?;
    let redis = RedisStore::connect(redis, timeouts).map_err(at("connecting to Redis"))?;
    match direction {
        CopyDirection::SledToRedis => copy(&sled, "sled", &redis, "Redis"),
        CopyDirection::RedisToSled => copy(&redis, "Redis", &sled, "sled"),
    }
}

fn at(step: impl Into<String>) -> impl FnOnce(StoreError) -> CopyError {
    let step = step.into();
    move |reason| CopyError::Store { step, reason }
}

/// Copies every kind in turn; the first failure stops it.
pub(super) fn copy(
    from: &dyn StoreDump,
    from_name: &'static str,
    to: &dyn StoreDump,
    to_name: &'static str,
) -> Result<Copied, CopyError> {
    let blank = to
        .is_blank()
        .map_err(at(format!("checking that {to_name} is empty")))?;
    if !blank {
        return Err(CopyError::TargetNotEmpty(to_name));
    }
    let reading = |kind: &str| format!("reading the {kind} from {from_name}");
    let writing = |kind: &str| format!("writing the {kind} to {to_name}");
    let mut copied = Copied::default();

    // One at a time: a million sessions are never all in memory.
    let mut write_failed = None;
    from.load_each(&mut |key, record| {
        if write_failed.is_none() {
            match to.put(&key, &record) {
                Ok(()) => copied.sessions += 1,
                Err(err) => write_failed = Some(err),
            }
        }
    })
    .map_err(at(reading("sessions")))?;
    if let Some(err) = write_failed {
        return Err(at(writing("sessions"))(err));
    }

    for email in from
        .disabled_users()
        .map_err(at(reading("disabled users")))?
    {
        to.set_disabled(&email, true)
            .map_err(at(writing("disabled users")))?;
        copied.disabled_users += 1;
    }

    for user in from.signup_users().map_err(at(reading("sign-up users")))? {
        let stored = to
            .insert_signup_user(&user)
            .map_err(at(writing("sign-up users")))?;
        if !stored {
            return Err(CopyError::TargetChanged {
                email: user.email,
                target: to_name,
            });
        }
        copied.signup_users += 1;
    }

    for (email, factors) in from
        .all_user_factors()
        .map_err(at(reading("user factors")))?
    {
        to.put_user_factors(&email, &factors)
            .map_err(at(writing("user factors")))?;
        // The id → user index goes along, so a passkey finds its user there.
        for credential in &factors.webauthn {
            to.claim_credential_id(&credential.id, &email)
                .map_err(at(writing("WebAuthn credential ids")))?;
        }
        copied.user_factors += 1;
    }

    for entry in from
        .all_factor_subjects()
        .map_err(at(reading("provider ids")))?
    {
        to.set_factor_subject(&entry.method, &entry.email, &entry.subject)
            .map_err(at(writing("provider ids")))?;
        copied.factor_subjects += 1;
    }

    to.flush().map_err(at(format!("flushing {to_name}")))?;
    Ok(copied)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::model::{Method, User};
    use crate::store::redis::testing::TestRedis;
    use crate::store::{AuthLevel, FactorStore, SessionKey, SessionRecord, TotpRecord};

    const TIMEOUTS: SessionTimeouts = SessionTimeouts {
        idle: Duration::from_secs(1800),
        lifetime: Duration::from_secs(12 * 3600),
    };

    fn session(user: &str, byte: u8) -> (SessionKey, SessionRecord) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let record = SessionRecord {
            user: Arc::from(user),
            level: AuthLevel::TwoFactor,
            auth_time: now - 60,
            second_factor_time: Some(now - 30),
            created_at: now - 60,
            last_seen: now - 10,
            challenge: None,
            device: None,
            second_factor_method: None,
            client: None,
        };
        (SessionKey([byte; 32]), record)
    }

    fn signup_user(email: &str) -> User {
        User {
            email: email.into(),
            name: "Sign Up".into(),
            country_code: "1".into(),
            phone: "5551234567".into(),
            password: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdA$aGFzaA".into(),
            groups: vec!["signup".into()],
            second_factor: Some("totp".into()),
            second_factor_reset: None,
            identity: Default::default(),
        }
    }

    fn totp(sealed: &str) -> TotpRecord {
        TotpRecord {
            sealed: sealed.into(),
            enrolled_at: 1_700_000_000,
            last_step: 56_666_666,
        }
    }

    /// Everything a store can hold, one of each kind or more.
    fn fill(store: &SledStore) {
        for (key, record) in [
            session("alice@example.com", 1),
            session("bob@example.com", 2),
        ] {
            store.put(&key, &record).unwrap();
        }
        assert!(
            store
                .insert_signup_user(&signup_user("new@example.com"))
                .unwrap()
        );
        store
            .set_totp("alice@example.com", &totp("v1.sealed-a"))
            .unwrap();
        store
            .set_last_method("alice@example.com", Method::Totp)
            .unwrap();
        // Factors with a last method alone (no TOTP) are copied too.
        store
            .set_last_method("bob@example.com", Method::Authy)
            .unwrap();
        store
            .set_factor_subject("authy", "Bob@Example.com", "12345")
            .unwrap();
        assert!(store.set_disabled("Carol@Example.com", true).unwrap());
        store.flush().unwrap();
    }

    fn sorted<T: Ord>(mut items: Vec<T>) -> Vec<T> {
        items.sort();
        items
    }

    fn sessions(store: &dyn StoreDump) -> Vec<([u8; 32], String)> {
        let all = store.load_all().unwrap();
        sorted(
            all.into_iter()
                .map(|(key, record)| (key.0, serde_json::to_string(&record).unwrap()))
                .collect(),
        )
    }

    fn subjects(store: &dyn StoreDump) -> Vec<(String, String, String)> {
        let all = store.all_factor_subjects().unwrap();
        sorted(
            all.into_iter()
                .map(|s| (s.method, s.email, s.subject))
                .collect(),
        )
    }

    fn factors(store: &dyn StoreDump) -> Vec<(String, String)> {
        let all = store.all_user_factors().unwrap();
        sorted(
            all.into_iter()
                .map(|(email, f)| (email, String::from_utf8(f.encode().unwrap()).unwrap()))
                .collect(),
        )
    }

    fn assert_same(a: &dyn StoreDump, b: &dyn StoreDump) {
        assert_eq!(sessions(a), sessions(b));
        assert_eq!(a.signup_users().unwrap(), b.signup_users().unwrap());
        assert_eq!(factors(a), factors(b));
        assert_eq!(subjects(a), subjects(b));
        assert_eq!(a.disabled_users().unwrap(), b.disabled_users().unwrap());
    }

    #[test]
    fn sled_to_redis_and_back_keeps_everything() {
        let redis = TestRedis::start();
        let source = SledStore::temporary().unwrap();
        fill(&source);
        let shared = RedisStore::connect(&redis.config("copy:"), TIMEOUTS).unwrap();

        let copied = copy(&source, "sled", &shared, "Redis").unwrap();
        let expected = Copied {
            sessions: 2,
            disabled_users: 1,
            signup_users: 1,
            user_factors: 2,
            factor_subjects: 1,
        };
        assert_eq!(copied, expected);
        assert_same(&source, &shared);
        // Through the gateway's own traits, too.
        assert_eq!(
            shared.totp("ALICE@example.com").unwrap(),
            Some(totp("v1.sealed-a"))
        );
        assert_eq!(
            shared.last_method("bob@example.com").unwrap(),
            Some(Method::Authy)
        );
        assert_eq!(
            shared.factor_subject("authy", "bob@example.com").unwrap(),
            Some("12345".into())
        );

        // A disabled user stays disabled, whatever the case of the email.
        assert!(shared.is_disabled("carol@example.com").unwrap());
        assert!(!shared.is_disabled("alice@example.com").unwrap());

        let back = SledStore::temporary().unwrap();
        assert_eq!(copy(&shared, "Redis", &back, "sled").unwrap(), expected);
        assert_same(&source, &back);
        assert!(back.is_disabled("CAROL@example.com").unwrap());
    }

    #[test]
    fn a_store_holding_data_is_not_written_to() {
        let redis = TestRedis::start();
        let shared = RedisStore::connect(&redis.config("busy:"), TIMEOUTS).unwrap();
        let source = SledStore::temporary().unwrap();
        fill(&source);
        let (key, record) = session("carol@example.com", 3);
        shared.put(&key, &record).unwrap();

        let err = copy(&source, "sled", &shared, "Redis").unwrap_err();
        assert!(err.to_string().contains("already holds"), "{err}");
        assert_eq!(shared.load_all().unwrap().len(), 1, "nothing was copied");

        // Another prefix in the same Redis is another, empty store.
        let other = RedisStore::connect(&redis.config("other:"), TIMEOUTS).unwrap();
        assert!(other.is_blank().unwrap());
        // A glob character in the prefix is matched as itself ("b*:"
        // as a pattern would match "busy:").
        let globbed = RedisStore::connect(&redis.config("b*:"), TIMEOUTS).unwrap();
        assert!(globbed.is_blank().unwrap());
        let target = SledStore::temporary().unwrap();
        target.set_totp("x@example.com", &totp("v1.x")).unwrap();
        assert!(!target.is_blank().unwrap());
        // A disabled user alone is data, too: a copy would merge into it.
        let disabled = SledStore::temporary().unwrap();
        disabled.set_disabled("x@example.com", true).unwrap();
        assert!(!disabled.is_blank().unwrap());
        other.set_disabled("x@example.com", true).unwrap();
        assert!(!other.is_blank().unwrap());
    }

    #[test]
    fn an_unreachable_redis_fails_the_copy() {
        let redis = TestRedis::start();
        let config = redis.config("gone:");
        drop(redis);
        let shared = RedisStore::connect(&config, TIMEOUTS).unwrap();
        let source = SledStore::temporary().unwrap();
        fill(&source);
        let err = copy(&source, "sled", &shared, "Redis").unwrap_err();
        assert!(
            err.to_string()
                .starts_with("checking that Redis is empty: "),
            "{err}"
        );
    }
}
