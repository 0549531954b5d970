//! The ceremonies against a software authenticator (webauthn-rs's own
//! `SoftPasskey`), no browser: what a key from elsewhere, a phishing site,
//! a replay, a cloned key and a reset each get.

use std::sync::Arc;

use url::Url;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs_core::proto::{CreationChallengeResponse, RequestChallengeResponse};

use super::*;
use crate::clock::testing::ManualClock;
use crate::store::MemoryStore;

const ORIGIN: &str = "https://auth.example.com";

fn config(attestation: Attestation) -> WebauthnConfig {
    WebauthnConfig {
        rp_id: "example.com".into(),
        rp_name: "Example".into(),
        origin: Url::parse(ORIGIN).unwrap(),
        user_verification: UserVerification::Preferred,
        attestation,
        passwordless: false,
    }
}

struct World {
    factor: WebauthnFactor,
    store: Arc<MemoryStore>,
    clock: Arc<ManualClock>,
}

fn world(attestation: Attestation) -> World {
    let store = Arc::new(MemoryStore::default());
    let clock = Arc::new(ManualClock::at(1_000));
    World {
        factor: WebauthnFactor::new(&config(attestation), store.clone(), clock.clone()),
        store,
        clock,
    }
}

impl World {
    fn ceremony(&self, user: &FactorUser<'_>) -> Ceremony {
        self.factor.start_assertion(user).unwrap()
    }

    fn finish(
        &self,
        user: &FactorUser<'_>,
        state: &str,
        answer: &str,
    ) -> Result<Asserted, Refused> {
        self.factor.finish_assertion(user, state, answer).unwrap()
    }
}

fn user(email: &str) -> FactorUser<'_> {
    FactorUser {
        email,
        country_code: "",
        phone: "",
        reset_at: None,
    }
}

fn origin() -> Url {
    Url::parse(ORIGIN).unwrap()
}

/// The browser's part: the authenticator answers the options at `at`.
fn register_at(key: &mut SoftPasskey, at: Url, options: &str) -> Result<String, String> {
    let options: CreationChallengeResponse = serde_json::from_str(options).unwrap();
    key.do_registration(at, options)
        .map(|answer| serde_json::to_string(&answer).unwrap())
        .map_err(|e| format!("{e:?}"))
}

fn assert_at(key: &mut SoftPasskey, at: Url, options: &str) -> Result<String, String> {
    let options: RequestChallengeResponse = serde_json::from_str(options).unwrap();
    key.do_authentication(at, options)
        .map(|answer| serde_json::to_string(&answer).unwrap())
        .map_err(|e| format!("{e:?}"))
}

fn enroll(world: &World, email: &str, key: &mut SoftPasskey) -> WebauthnRecord {
    let ceremony = world
        .factor
        .start_registration(&user(email), email)
        .unwrap();
    let answer = register_at(key, origin(), &ceremony.options).unwrap();
    world
        .factor
        .finish_registration(&user(email), &ceremony.state, &answer, " My key ")
        .unwrap()
        .unwrap()
}

fn sign_in(world: &World, email: &str, key: &mut SoftPasskey) -> Result<Asserted, Refused> {
    let ceremony = world.ceremony(&user(email));
    let answer = assert_at(key, origin(), &ceremony.options).unwrap();
    world.finish(&user(email), &ceremony.state, &answer)
}

#[test]
fn a_registered_key_confirms_its_user_and_its_use_is_kept() {
    let world = world(Attestation::None);
    let mut key = SoftPasskey::new(true);
    let record = enroll(&world, "alice@example.com", &mut key);
    assert_eq!(record.name, "My key");
    assert!(
        world
            .factor
            .is_enrolled(&user("alice@example.com"))
            .unwrap()
    );
    assert!(!world.factor.is_enrolled(&user("bob@example.com")).unwrap());
    world.clock.advance(60);
    let asserted = sign_in(&world, "alice@example.com", &mut key).unwrap();
    assert_eq!(asserted.email, "alice@example.com");
    let kept = world
        .store
        .webauthn_credentials("alice@example.com")
        .unwrap();
    assert_eq!(kept[0].last_used, Some(1_060));
    assert!(kept[0].counter > record.counter);
}

#[test]
fn another_users_key_does_not_confirm_this_user() {
    let world = world(Attestation::None);
    let mut alices = SoftPasskey::new(true);
    let mut mallorys = SoftPasskey::new(true);
    enroll(&world, "alice@example.com", &mut alices);
    enroll(&world, "mallory@example.com", &mut mallorys);
    // Mallory's key answers a challenge made for Alice, with Mallory's
    // credential offered in place of Alice's.
    let ceremony = world.ceremony(&user("alice@example.com"));
    let theirs = world.ceremony(&user("mallory@example.com"));
    let mut options: RequestChallengeResponse = serde_json::from_str(&ceremony.options).unwrap();
    let their_options: RequestChallengeResponse = serde_json::from_str(&theirs.options).unwrap();
    options.public_key.allow_credentials = their_options.public_key.allow_credentials;
    let answer = mallorys.do_authentication(origin(), options).unwrap();
    let answer = serde_json::to_string(&answer).unwrap();
    assert_eq!(
        world.finish(&user("alice@example.com"), &ceremony.state, &answer),
        Err(Refused::NotThisUsersKey)
    );
}

#[test]
fn an_answer_made_for_another_site_is_refused() {
    let world = world(Attestation::None);
    let mut key = SoftPasskey::new(true);
    enroll(&world, "alice@example.com", &mut key);
    let ceremony = world.ceremony(&user("alice@example.com"));
    // A look-alike site relays our challenge; the browser binds the answer
    // to the site it is on, and the key to that site's RP id.
    let mut options: RequestChallengeResponse = serde_json::from_str(&ceremony.options).unwrap();
    options.public_key.rp_id = "example.net".into();
    let phished = key
        .do_authentication(Url::parse("https://example.net").unwrap(), options)
        .map(|a| serde_json::to_string(&a).unwrap());
    if let Ok(answer) = phished {
        let outcome = world.finish(&user("alice@example.com"), &ceremony.state, &answer);
        assert!(matches!(outcome, Err(Refused::Invalid(_))), "{outcome:?}");
    }
    // Our RP id, but the page on another origin.
    let ceremony = world.ceremony(&user("alice@example.com"));
    let answer = assert_at(
        &mut key,
        Url::parse("https://evil.example.com").unwrap(),
        &ceremony.options,
    )
    .unwrap();
    let outcome = world.finish(&user("alice@example.com"), &ceremony.state, &answer);
    assert!(matches!(outcome, Err(Refused::Invalid(_))), "{outcome:?}");
}

#[test]
fn an_answer_for_another_challenge_is_refused() {
    let world = world(Attestation::None);
    let mut key = SoftPasskey::new(true);
    enroll(&world, "alice@example.com", &mut key);
    let first = world.ceremony(&user("alice@example.com"));
    let second = world.ceremony(&user("alice@example.com"));
    let answer = assert_at(&mut key, origin(), &first.options).unwrap();
    let outcome = world.finish(&user("alice@example.com"), &second.state, &answer);
    assert!(matches!(outcome, Err(Refused::Invalid(_))), "{outcome:?}");
}

#[test]
fn a_replayed_answer_is_refused_by_its_counter() {
    let world = world(Attestation::None);
    let mut key = SoftPasskey::new(true);
    enroll(&world, "alice@example.com", &mut key);
    let ceremony = world.ceremony(&user("alice@example.com"));
    let answer = assert_at(&mut key, origin(), &ceremony.options).unwrap();
    let alice = user("alice@example.com");
    assert!(world.finish(&alice, &ceremony.state, &answer).is_ok());
    let again = world.finish(&alice, &ceremony.state, &answer);
    assert!(
        matches!(again, Err(Refused::CounterRegressed { .. })),
        "{again:?}"
    );
}

#[test]
fn a_counter_that_goes_backwards_is_refused() {
    let world = world(Attestation::None);
    let mut key = SoftPasskey::new(true);
    enroll(&world, "alice@example.com", &mut key);
    let alice = user("alice@example.com");
    // Two answers; the later one (higher counter) arrives first, as from
    // a clone of the key that was used meanwhile.
    let older = world.ceremony(&alice);
    let newer = world.ceremony(&alice);
    let older_answer = assert_at(&mut key, origin(), &older.options).unwrap();
    let newer_answer = assert_at(&mut key, origin(), &newer.options).unwrap();
    assert!(world.finish(&alice, &newer.state, &newer_answer).is_ok());
    let stale = world.finish(&alice, &older.state, &older_answer);
    assert!(
        matches!(stale, Err(Refused::CounterRegressed { .. })),
        "{stale:?}"
    );
}

#[test]
fn a_key_registered_before_a_reset_no_longer_works_and_is_removed() {
    let world = world(Attestation::None);
    let mut key = SoftPasskey::new(true);
    let record = enroll(&world, "alice@example.com", &mut key);
    let ceremony = world.ceremony(&user("alice@example.com"));
    let answer = assert_at(&mut key, origin(), &ceremony.options).unwrap();
    let reset = FactorUser {
        reset_at: Some(record.created_at),
        ..user("alice@example.com")
    };
    assert!(!world.factor.is_enrolled(&reset).unwrap());
    assert_eq!(
        world.finish(&reset, &ceremony.state, &answer),
        Err(Refused::NotThisUsersKey)
    );
    assert!(
        world
            .store
            .webauthn_credentials("alice@example.com")
            .unwrap()
            .is_empty()
    );
    assert_eq!(world.store.webauthn_owner(&record.id).unwrap(), None);
}

#[test]
fn a_passkey_login_finds_its_user_and_refuses_a_removed_or_reset_one() {
    let world = world(Attestation::None);
    let mut key = SoftPasskey::new(true);
    let record = enroll(&world, "alice@example.com", &mut key);
    let answer_for = |key: &mut SoftPasskey, ceremony: &Ceremony| {
        // The soft key keeps no resident credentials: it is told which.
        let own = world.ceremony(&user("alice@example.com"));
        let own: RequestChallengeResponse = serde_json::from_str(&own.options).unwrap();
        let mut options: RequestChallengeResponse =
            serde_json::from_str(&ceremony.options).unwrap();
        options.public_key.allow_credentials = own.public_key.allow_credentials;
        serde_json::to_string(&key.do_authentication(origin(), options).unwrap()).unwrap()
    };
    let ceremony = world.factor.start_passwordless().unwrap();
    let answer = answer_for(&mut key, &ceremony);
    let found = world
        .factor
        .finish_passwordless(&ceremony.state, &answer, |_| Some(None))
        .unwrap()
        .unwrap();
    assert_eq!(found.email, "alice@example.com");

    let ceremony = world.factor.start_passwordless().unwrap();
    let answer = answer_for(&mut key, &ceremony);
    assert_eq!(
        world
            .factor
            .finish_passwordless(&ceremony.state, &answer, |_| None)
            .unwrap(),
        Err(Refused::NotThisUsersKey),
        "a user the users file no longer has"
    );
    assert_eq!(
        world
            .factor
            .finish_passwordless(&ceremony.state, &answer, |_| Some(Some(record.created_at)))
            .unwrap(),
        Err(Refused::NotThisUsersKey),
        "a user reset since"
    );
}

#[test]
fn only_allowed_models_register() {
    let world = world(Attestation::Aaguids(vec![[7; 16]]));
    let mut key = SoftPasskey::new(true);
    let ceremony = world
        .factor
        .start_registration(&user("a@example.com"), "A")
        .unwrap();
    let answer = register_at(&mut key, origin(), &ceremony.options).unwrap();
    assert_eq!(
        world
            .factor
            .finish_registration(&user("a@example.com"), &ceremony.state, &answer, "k")
            .unwrap(),
        Err(Refused::ModelNotAllowed)
    );
    // The soft key states the all-zero AAGUID.
    let world = world_with_zero_aaguid();
    let ceremony = world
        .factor
        .start_registration(&user("a@example.com"), "A")
        .unwrap();
    let answer = register_at(&mut key, origin(), &ceremony.options).unwrap();
    assert!(
        world
            .factor
            .finish_registration(&user("a@example.com"), &ceremony.state, &answer, "k")
            .unwrap()
            .is_ok()
    );
}

fn world_with_zero_aaguid() -> World {
    world(Attestation::Aaguids(vec![[0; 16]]))
}

#[test]
fn a_key_registers_once() {
    let world = world(Attestation::None);
    let mut key = SoftPasskey::new(true);
    enroll(&world, "alice@example.com", &mut key);
    let options = world
        .factor
        .start_registration(&user("alice@example.com"), "A")
        .unwrap();
    let parsed: CreationChallengeResponse = serde_json::from_str(&options.options).unwrap();
    assert_eq!(
        parsed.public_key.exclude_credentials.map(|c| c.len()),
        Some(1),
        "the browser is told which keys are registered already"
    );
}

#[test]
fn a_bound_answer_approves_its_own_request_and_no_other() {
    let world = world(Attestation::None);
    let mut key = SoftPasskey::new(true);
    enroll(&world, "alice@example.com", &mut key);
    let alice = user("alice@example.com");
    let (transfer, other) = ([1u8; 32], [2u8; 32]);

    let (options, ceremony) = world
        .factor
        .start_bound_assertion(&alice, &transfer)
        .unwrap();
    let sent: RequestChallengeResponse = serde_json::from_str(&options).unwrap();
    assert_eq!(
        sent.public_key.challenge.as_ref(),
        bound_challenge(&ceremony.nonce, &transfer),
        "the key signs the request's binding"
    );
    let answer = assert_at(&mut key, origin(), &options).unwrap();
    let refused = world
        .factor
        .finish_bound_assertion(&alice, &ceremony, &other, &answer)
        .unwrap();
    assert!(matches!(refused, Err(Refused::Invalid(_))), "{refused:?}");
    let approved = world
        .factor
        .finish_bound_assertion(&alice, &ceremony, &transfer, &answer)
        .unwrap();
    assert_eq!(approved.unwrap().email, "alice@example.com");

    // The same request approved again gets another challenge.
    let (again, _) = world
        .factor
        .start_bound_assertion(&alice, &transfer)
        .unwrap();
    assert_ne!(again, options);
}
