//! One test body over every backend: the durable sessions, sign-up users,
//! provider ids and factors behave the same on sled, on Redis and in the
//! memory store the flow's tests use.

use std::net::IpAddr;
use std::sync::Arc;

use super::factors::contract as factors;
use super::redis::testing::TestRedis;
use super::{
    AuthLevel, FactorStore, LiveSessions, MemoryStore, RedisStore, SessionId, SessionKey,
    SessionRecord, SessionStore, SessionTimeouts, SledStore, SubjectCache,
};
use crate::model::User;

fn record(user: &str, last_seen: u64) -> SessionRecord {
    SessionRecord {
        user: user.into(),
        level: AuthLevel::OneFactor,
        auth_time: 100,
        second_factor_time: None,
        created_at: 100,
        last_seen,
        challenge: None,
        device: None,
        second_factor_method: None,
        client: None,
    }
}

fn sessions_are_put_replaced_listed_and_deleted(store: &dyn SessionStore) {
    let (one, two) = (SessionKey([1; 32]), SessionKey([2; 32]));
    store.put(&one, &record("a@example.com", 100)).unwrap();
    store.put(&two, &record("b@example.com", 100)).unwrap();
    store.put(&one, &record("a@example.com", 150)).unwrap();
    store.flush().unwrap();
    let mut all = store.load_all().unwrap();
    all.sort_by_key(|(key, _)| key.0);
    assert_eq!(
        all,
        vec![
            (one, record("a@example.com", 150)),
            (two, record("b@example.com", 100))
        ]
    );
    store.delete(&two).unwrap();
    store.delete(&two).unwrap();
    assert_eq!(store.load_all().unwrap().len(), 1);
}

fn sign_up_users_are_kept_once_per_email(store: &dyn SessionStore) {
    let user: User =
        serde_json::from_str(r#"{"email":"New@Example.com","name":"N","password":"$argon2id$x"}"#)
            .unwrap();
    assert!(store.insert_signup_user(&user).unwrap());
    let again = User {
        name: "Someone else".into(),
        ..user.clone()
    };
    assert!(
        !store.insert_signup_user(&again).unwrap(),
        "the email is taken"
    );
    assert_eq!(store.signup_users().unwrap(), vec![user.clone()]);
    assert_eq!(store.signup_user("new@example.COM").unwrap(), Some(user));
    assert_eq!(store.signup_user("other@example.com").unwrap(), None);
}

fn provider_ids_are_kept_per_method_and_email(store: &dyn SubjectCache) {
    assert_eq!(
        store.factor_subject("authy", "a@example.com").unwrap(),
        None
    );
    store
        .set_factor_subject("authy", "A@example.com", "42")
        .unwrap();
    assert_eq!(
        store
            .factor_subject("authy", "a@EXAMPLE.com")
            .unwrap()
            .as_deref(),
        Some("42")
    );
    assert_eq!(
        store.factor_subject("verify", "a@example.com").unwrap(),
        None
    );
}

fn keeps_the_contract<S>(store: Arc<S>)
where
    S: SessionStore + SubjectCache + FactorStore + super::DisabledUsers + 'static,
{
    super::disabled::contract::users_are_disabled_and_enabled_by_email(store.as_ref());
    sessions_are_put_replaced_listed_and_deleted(store.as_ref());
    sign_up_users_are_kept_once_per_email(store.as_ref());
    provider_ids_are_kept_per_method_and_email(store.as_ref());
    factors::totp_records_are_kept_per_lower_cased_email(store.as_ref());
    factors::a_step_is_used_once_and_only_forward(store.as_ref());
    factors::reseal_only_replaces_the_expected_secret(store.as_ref());
    factors::the_last_method_is_kept_beside_the_totp(store.as_ref());
    factors::credentials_are_kept_and_indexed(store.as_ref());
    factors::a_credential_counter_only_moves_forward(store.as_ref());
    factors::concurrent_uses_of_one_counter_pass_once(store.clone());
    factors::concurrent_uses_of_one_step_pass_once(store);
}

#[test]
fn every_backend_keeps_the_store_contract() {
    keeps_the_contract(Arc::new(MemoryStore::default()));
    keeps_the_contract(Arc::new(SledStore::temporary().unwrap()));
    let redis = TestRedis::start();
    let timeouts = SessionTimeouts {
        idle: std::time::Duration::from_secs(3600),
        lifetime: std::time::Duration::from_secs(12 * 3600),
    };
    keeps_the_contract(Arc::new(
        RedisStore::connect(&redis.config("contract:"), timeouts).unwrap(),
    ));
}

/// The user's sessions' keys as the index lists them, sorted.
fn listed(sessions: &LiveSessions, email: &str) -> Vec<SessionKey> {
    let mut keys: Vec<SessionKey> = sessions
        .sessions_of(email)
        .unwrap()
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    keys.sort_unstable_by_key(|key| key.0);
    keys
}

fn sorted(mut keys: Vec<SessionKey>) -> Vec<SessionKey> {
    keys.sort_unstable_by_key(|key| key.0);
    keys
}

fn new_key() -> SessionKey {
    SessionId::generate().unwrap().key()
}

/// A login, a step-up (a new key, the old one taken), a logout: the
/// index lists exactly the user's live sessions after each, in any case
/// of the email, and so does a second `LiveSessions` opened on the same
/// store (a restart). Returns the keys left live: a@ one, b@ one.
fn the_index_follows_login_step_up_and_logout(
    sessions: &LiveSessions,
    reopen: &dyn Fn() -> LiveSessions,
) -> (SessionKey, SessionKey) {
    let (a1, a2, b1) = (new_key(), new_key(), new_key());
    sessions.insert(a1, record("a@example.com", 100)).unwrap();
    sessions.insert(a2, record("a@example.com", 100)).unwrap();
    sessions.insert(b1, record("b@example.com", 100)).unwrap();
    assert_eq!(listed(sessions, "a@example.com"), sorted(vec![a1, a2]));
    assert_eq!(listed(sessions, "A@Example.COM"), sorted(vec![a1, a2]));
    assert_eq!(listed(sessions, "b@example.com"), vec![b1]);
    assert_eq!(listed(sessions, "c@example.com"), vec![]);

    let a3 = new_key();
    sessions.insert(a3, record("a@example.com", 100)).unwrap();
    assert!(sessions.take(&a1).unwrap());
    assert_eq!(listed(sessions, "a@example.com"), sorted(vec![a2, a3]));

    sessions.remove(&a2).unwrap();
    assert_eq!(listed(sessions, "a@example.com"), vec![a3]);
    sessions
        .update(&a3, |s| {
            s.level = AuthLevel::TwoFactor;
            true
        })
        .unwrap();
    let listed_a3 = sessions.sessions_of("a@example.com").unwrap();
    assert_eq!(listed_a3.len(), 1);
    assert_eq!(listed_a3[0].1.level, AuthLevel::TwoFactor);

    sessions.flush().unwrap();
    let restarted = reopen();
    assert_eq!(listed(&restarted, "a@example.com"), vec![a3]);
    assert_eq!(listed(&restarted, "b@example.com"), vec![b1]);
    (a3, b1)
}

/// A private store's sweep takes the swept sessions out of the index.
fn a_private_index_follows_the_sweep(sessions: &LiveSessions, reopen: &dyn Fn() -> LiveSessions) {
    let (a, _) = the_index_follows_login_step_up_and_logout(sessions, reopen);
    assert_eq!(sessions.sweep(|s| &*s.user != "b@example.com"), 1);
    assert_eq!(listed(sessions, "b@example.com"), vec![]);
    assert_eq!(listed(sessions, "a@example.com"), vec![a]);
    assert_eq!(listed(&reopen(), "b@example.com"), vec![]);
}

/// The client's address noted at the login is carried by the step-up (a
/// new key, the record carried over as `auth::challenge` does) and comes
/// back from the store after a restart: IPv4, IPv6, or none.
fn the_client_address_survives_step_up_and_reload(
    sessions: &LiveSessions,
    reopen: &dyn Fn() -> LiveSessions,
) {
    let v4: IpAddr = "203.0.113.9".parse().unwrap();
    let v6: IpAddr = "2001:db8::9".parse().unwrap();
    let mut confirmed = Vec::new();
    for client in [Some(v4), Some(v6), None] {
        let login = new_key();
        let one_factor = SessionRecord {
            client,
            ..record("c@example.com", 100)
        };
        sessions.insert(login, one_factor).unwrap();
        let session = sessions.get(&login).unwrap().unwrap();
        assert!(sessions.take(&login).unwrap());
        let stepped = new_key();
        let two_factor = SessionRecord {
            level: AuthLevel::TwoFactor,
            second_factor_time: Some(130),
            ..session
        };
        sessions.insert(stepped, two_factor).unwrap();
        confirmed.push((stepped, client));
    }
    sessions.flush().unwrap();
    let restarted = reopen();
    for (key, client) in confirmed {
        let reloaded = restarted.get(&key).unwrap().expect("the session is kept");
        assert_eq!(reloaded.client, client);
        assert_eq!(reloaded.level, AuthLevel::TwoFactor);
    }
}

#[test]
fn every_backend_keeps_the_client_address() {
    let memory = Arc::new(MemoryStore::default());
    the_client_address_survives_step_up_and_reload(
        &LiveSessions::load(memory.clone()).unwrap(),
        &|| LiveSessions::load(memory.clone()).unwrap(),
    );
    let sled = Arc::new(SledStore::temporary().unwrap());
    the_client_address_survives_step_up_and_reload(
        &LiveSessions::load(sled.clone()).unwrap(),
        &|| LiveSessions::load(sled.clone()).unwrap(),
    );
    let redis = TestRedis::start();
    let timeouts = SessionTimeouts {
        idle: std::time::Duration::from_secs(3600),
        lifetime: std::time::Duration::from_secs(12 * 3600),
    };
    let open = || Arc::new(RedisStore::connect(&redis.config("client:"), timeouts).unwrap());
    the_client_address_survives_step_up_and_reload(&LiveSessions::shared(open()), &|| {
        LiveSessions::shared(open())
    });
}

#[test]
fn every_backend_keeps_the_user_index_exact() {
    let memory = Arc::new(MemoryStore::default());
    a_private_index_follows_the_sweep(&LiveSessions::load(memory.clone()).unwrap(), &|| {
        LiveSessions::load(memory.clone()).unwrap()
    });
    let sled = Arc::new(SledStore::temporary().unwrap());
    a_private_index_follows_the_sweep(&LiveSessions::load(sled.clone()).unwrap(), &|| {
        LiveSessions::load(sled.clone()).unwrap()
    });

    let redis = TestRedis::start();
    let timeouts = SessionTimeouts {
        idle: std::time::Duration::from_secs(3600),
        lifetime: std::time::Duration::from_secs(12 * 3600),
    };
    let open = || Arc::new(RedisStore::connect(&redis.config("index:"), timeouts).unwrap());
    let shared = LiveSessions::shared(open());
    the_index_follows_login_step_up_and_logout(&shared, &|| LiveSessions::shared(open()));
}

/// On Redis a session ends by expiring, too: the set lists it no more
/// once its key is gone, though the set itself lives on.
#[test]
fn a_shared_index_never_lists_an_expired_session() {
    let redis = TestRedis::start();
    let short = SessionTimeouts {
        idle: std::time::Duration::from_secs(1),
        lifetime: std::time::Duration::from_secs(12 * 3600),
    };
    let long = SessionTimeouts {
        idle: std::time::Duration::from_secs(3600),
        ..short
    };
    let brief = LiveSessions::shared(Arc::new(
        RedisStore::connect(&redis.config("expiry:"), short).unwrap(),
    ));
    let lasting = LiveSessions::shared(Arc::new(
        RedisStore::connect(&redis.config("expiry:"), long).unwrap(),
    ));
    let (gone, kept) = (new_key(), new_key());
    lasting.insert(kept, record("a@example.com", 100)).unwrap();
    brief.insert(gone, record("a@example.com", 100)).unwrap();
    assert_eq!(listed(&lasting, "a@example.com"), sorted(vec![gone, kept]));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while listed(&lasting, "a@example.com") != vec![kept] {
        assert!(
            std::time::Instant::now() < deadline,
            "the expired session is still listed"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}
