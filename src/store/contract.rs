//! One test body over every backend: the durable sessions, sign-up users,
//! provider ids and factors behave the same on sled, on Redis and in the
//! memory store the flow's tests use.

use std::sync::Arc;

use super::factors::contract as factors;
use super::redis::testing::TestRedis;
use super::{
    AuthLevel, FactorStore, MemoryStore, RedisStore, SessionKey, SessionRecord, SessionStore,
    SessionTimeouts, SledStore, SubjectCache,
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
    S: SessionStore + SubjectCache + FactorStore + 'static,
{
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
