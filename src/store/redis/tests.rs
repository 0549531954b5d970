//! RedisStore and the shared cache against a real `redis-server`.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use super::testing::TestRedis;
use super::*;
use crate::store::{AuthLevel, LiveSessions, SessionId};

/// How long a revocation may take to reach another replica (issue 15).
const PROPAGATION_BOUND: Duration = Duration::from_secs(1);

const TIMEOUTS: SessionTimeouts = SessionTimeouts {
    idle: Duration::from_secs(3600),
    lifetime: Duration::from_secs(12 * 3600),
};

fn store(redis: &TestRedis) -> Arc<RedisStore> {
    Arc::new(RedisStore::connect(&redis.config("test:"), TIMEOUTS).unwrap())
}

fn record(user: &str, last_seen: u64) -> SessionRecord {
    SessionRecord {
        user: user.into(),
        level: AuthLevel::TwoFactor,
        auth_time: 100,
        second_factor_time: Some(100),
        created_at: 100,
        last_seen,
        challenge: None,
        device: None,
        second_factor_method: None,
        client: None,
    }
}

/// Polls `condition` until it holds or `bound` has passed.
fn within(bound: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + bound;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A replica's cache starts serving once its feed stands.
fn replica(store: Arc<RedisStore>) -> LiveSessions {
    let live = LiveSessions::shared(store);
    assert!(
        within(Duration::from_secs(5), || live.is_connected()),
        "the invalidation feed never came up"
    );
    live
}

#[test]
fn sessions_are_stored_with_a_ttl_swapped_only_from_the_expected_copy_and_taken_once() {
    let redis = TestRedis::start();
    let store = store(&redis);
    let key = SessionKey([3; 32]);
    store.put(&key, &record("a@example.com", 100)).unwrap();
    assert_eq!(
        store.fetch(&key).unwrap(),
        Some(record("a@example.com", 100))
    );
    let ttl: i64 = store
        .link()
        .call(cmd("TTL").arg(store.session_key(&key)))
        .unwrap();
    assert!(ttl > 3500 && ttl <= 3600, "idle timeout as TTL, got {ttl}");

    let stale = record("a@example.com", 50);
    assert!(
        !store
            .replace(&key, &stale, &record("a@example.com", 200))
            .unwrap()
    );
    assert!(
        store
            .replace(
                &key,
                &record("a@example.com", 100),
                &record("a@example.com", 200)
            )
            .unwrap()
    );
    assert_eq!(store.fetch(&key).unwrap().unwrap().last_seen, 200);

    assert!(store.take(&key).unwrap());
    assert!(!store.take(&key).unwrap(), "taken once");
    assert_eq!(store.fetch(&key).unwrap(), None);
}

#[test]
fn a_session_near_the_end_of_its_lifetime_expires_with_it() {
    let redis = TestRedis::start();
    let store = store(&redis);
    let key = SessionKey([4; 32]);
    // 12 h lifetime, created at 100, last used 11 h 59 min 58 s later.
    let old = record("a@example.com", 100 + 12 * 3600 - 2);
    store.put(&key, &old).unwrap();
    let ttl: i64 = store
        .link()
        .call(cmd("TTL").arg(store.session_key(&key)))
        .unwrap();
    assert!(
        (1..=2).contains(&ttl),
        "what the lifetime leaves, got {ttl}"
    );
}

#[test]
fn every_stored_session_is_listed() {
    let redis = TestRedis::start();
    let store = store(&redis);
    for i in 0..2500u16 {
        let mut key = [0u8; 32];
        key[..2].copy_from_slice(&i.to_be_bytes());
        store
            .put(&SessionKey(key), &record("a@example.com", 100))
            .unwrap();
    }
    assert_eq!(store.load_all().unwrap().len(), 2500);
}

#[test]
fn sign_up_users_and_provider_ids_are_shared() {
    let redis = TestRedis::start();
    let (a, b) = (store(&redis), store(&redis));
    let user: User =
        serde_json::from_str(r#"{"email":"New@Example.com","name":"N","password":"$argon2id$x"}"#)
            .unwrap();
    assert!(a.insert_signup_user(&user).unwrap());
    assert!(!b.insert_signup_user(&user).unwrap(), "the email is taken");
    assert_eq!(b.signup_users().unwrap().len(), 1);
    a.set_factor_subject("authy", "New@Example.com", "42")
        .unwrap();
    assert_eq!(
        b.factor_subject("authy", "new@example.com")
            .unwrap()
            .as_deref(),
        Some("42")
    );
}

#[test]
fn a_totp_step_used_on_one_replica_is_refused_on_the_other() {
    let redis = TestRedis::start();
    let (a, b) = (store(&redis), store(&redis));
    let totp = TotpRecord {
        sealed: "v1.x".into(),
        enrolled_at: 1,
        last_step: 0,
    };
    a.set_totp("a@example.com", &totp).unwrap();
    assert!(a.use_totp_step("a@example.com", 7).unwrap());
    assert!(!b.use_totp_step("a@example.com", 7).unwrap());
}

#[test]
fn a_session_made_on_one_replica_is_found_on_another() {
    let redis = TestRedis::start();
    let (a, b) = (replica(store(&redis)), replica(store(&redis)));
    let key = SessionId::generate().unwrap().key();
    a.insert(key, record("a@example.com", 100)).unwrap();
    assert_eq!(b.get(&key).unwrap(), Some(record("a@example.com", 100)));
    assert_eq!(b.cache_lookups(), (0, 1), "read from Redis once");
    assert!(b.get(&key).unwrap().is_some());
    assert_eq!(b.cache_lookups(), (1, 1), "then from memory");
}

#[test]
fn a_logout_on_one_replica_is_refused_on_the_other_within_a_second() {
    let redis = TestRedis::start();
    let (a, b) = (replica(store(&redis)), replica(store(&redis)));
    let key = SessionId::generate().unwrap().key();
    a.insert(key, record("a@example.com", 100)).unwrap();
    assert!(b.get(&key).unwrap().is_some(), "cached on b");
    let revoked = Instant::now();
    a.remove(&key).unwrap();
    assert!(
        within(PROPAGATION_BOUND, || b.get(&key).unwrap().is_none()),
        "b still served the session {:?} after the logout",
        revoked.elapsed()
    );
}

#[test]
fn a_change_on_one_replica_replaces_the_other_ones_copy() {
    let redis = TestRedis::start();
    let (a, b) = (replica(store(&redis)), replica(store(&redis)));
    let key = SessionId::generate().unwrap().key();
    let mut one_factor = record("a@example.com", 100);
    one_factor.level = AuthLevel::OneFactor;
    a.insert(key, one_factor).unwrap();
    assert_eq!(b.get(&key).unwrap().unwrap().level, AuthLevel::OneFactor);
    assert!(
        a.update(&key, |s| {
            s.level = AuthLevel::TwoFactor;
            true
        })
        .unwrap()
    );
    assert!(within(PROPAGATION_BOUND, || {
        b.get(&key).unwrap().unwrap().level == AuthLevel::TwoFactor
    }));
}

#[test]
fn of_two_replicas_changing_one_session_at_once_each_change_lands_once() {
    let redis = TestRedis::start();
    let replicas = [
        Arc::new(replica(store(&redis))),
        Arc::new(replica(store(&redis))),
    ];
    let key = SessionId::generate().unwrap().key();
    replicas[0]
        .insert(key, record("a@example.com", 100))
        .unwrap();
    const EACH: u64 = 20;
    let barrier = Arc::new(Barrier::new(2));
    let workers: Vec<_> = replicas
        .iter()
        .map(|live| {
            let (live, barrier) = (Arc::clone(live), Arc::clone(&barrier));
            std::thread::spawn(move || {
                barrier.wait();
                for _ in 0..EACH {
                    // A counter in `auth_time`: a lost update shows as a
                    // smaller total.
                    assert!(
                        live.update(&key, |s| {
                            s.auth_time += 1;
                            true
                        })
                        .unwrap()
                    );
                }
            })
        })
        .collect();
    for worker in workers {
        worker.join().unwrap();
    }
    let stored = replicas[1].reread(&key).unwrap().unwrap();
    assert_eq!(stored.auth_time, 100 + 2 * EACH);
}

#[test]
fn a_revoked_session_is_never_served_from_a_cache_while_redis_is_down_and_all_comes_back() {
    let mut redis = TestRedis::start();
    let (a, b) = (replica(store(&redis)), replica(store(&redis)));
    let key = SessionId::generate().unwrap().key();
    a.insert(key, record("a@example.com", 100)).unwrap();
    assert!(b.get(&key).unwrap().is_some(), "cached on b");

    redis.stop();
    // The cache goes with the feed: the session can no longer be read,
    // which is an error (a 503), not a session.
    assert!(
        within(PROPAGATION_BOUND, || b.get(&key).is_err()),
        "b kept serving from its cache with Redis down"
    );
    assert!(within(PROPAGATION_BOUND, || !b.is_healthy()));

    redis.restart();
    assert!(
        within(Duration::from_secs(10), || b.is_connected()),
        "the feed came back"
    );
    // The restarted Redis is empty: the session is gone, not resurrected.
    assert!(within(Duration::from_secs(5), || matches!(
        b.get(&key),
        Ok(None)
    )));
    let again = SessionId::generate().unwrap().key();
    assert!(within(Duration::from_secs(5), || a
        .insert(again, record("a@example.com", 100))
        .is_ok()));
    assert!(b.get(&again).unwrap().is_some());
}

#[test]
fn an_idle_refresh_never_writes_over_a_logout_from_another_replica() {
    let redis = TestRedis::start();
    let (a, b) = (replica(store(&redis)), replica(store(&redis)));
    let key = SessionId::generate().unwrap().key();
    a.insert(key, record("a@example.com", 100)).unwrap();
    a.touch(&key, 5000, 60);
    b.remove(&key).unwrap();
    a.flush().unwrap();
    assert_eq!(b.reread(&key).unwrap(), None);
}

/// A session stored before the client's address was kept (by an older
/// replica) loads, with none; one with an address is read back with it.
#[test]
fn a_session_stored_without_a_client_address_loads() {
    let redis = TestRedis::start();
    let store = store(&redis);
    let (old, new) = (SessionKey([8; 32]), SessionKey([9; 32]));
    let stored = r#"{"user":"a@example.com","level":"two_factor","auth_time":100,"second_factor_time":130,"created_at":100,"last_seen":160,"device":{"browser":"firefox","os":"linux"},"second_factor_method":"totp"}"#;
    let _: () = store
        .link()
        .call(cmd("SET").arg(store.session_key(&old)).arg(stored))
        .unwrap();
    let loaded = store.fetch(&old).unwrap().expect("the old session loads");
    assert_eq!(&*loaded.user, "a@example.com");
    assert_eq!(loaded.client, None);
    let client = "203.0.113.9".parse().unwrap();
    let with = SessionRecord {
        client: Some(client),
        ..record("b@example.com", 100)
    };
    store.put(&new, &with).unwrap();
    assert_eq!(store.fetch(&new).unwrap().unwrap().client, Some(client));
}
