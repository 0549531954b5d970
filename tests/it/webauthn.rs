//! Security keys and passkeys over HTTP, against the spawned gateway, with
//! webauthn-rs's software authenticator standing in for the browser and
//! the key: enrollment at the first login, the second step, a replayed
//! answer, another user's key, the passkey sign-in, the security page,
//! and `user reset-2fa` voiding a key. The browser's own part (the page's
//! script, Chromium's authenticator) is in tests/browser/webauthn.rs.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use url::Url;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;

use crate::support::*;

const BOB: &str = "bob@example.com";
const BOB_PW: &str = "bob's long password";

struct Env {
    upstream: Upstream,
    gw: Gateway,
}

/// WebAuthn the only method, passkeys on, a PIN or biometric required
/// (the soft key claims one when asked); the public URL on `localhost`
/// (browsers refuse an IP address as the relying party).
async fn start_env() -> Env {
    start_env_with("required").await
}

async fn start_env_with(user_verification: &str) -> Env {
    start_env_tweaked(user_verification, |_| {}).await
}

async fn start_env_tweaked(user_verification: &str, tweak: impl FnOnce(&mut Setup)) -> Env {
    let upstream = Upstream::start().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    let public = format!("http://localhost:{}", setup.port);
    setup
        .set("server.public_url", public)
        .set("auth.second_factor", "required")
        .set("auth.methods", vec!["webauthn"])
        .set("webauthn.passwordless", true)
        .set("webauthn.user_verification", user_verification);
    tweak(&mut setup);
    setup.write_config();
    setup.add_alice().await;
    setup.add_user(BOB, "Bob", "b", BOB_PW).await;
    let gw = setup.start().await;
    Env { upstream, gw }
}

fn origin(gw: &Gateway) -> Url {
    Url::parse(&format!("http://localhost:{}", gw.setup().port)).unwrap()
}

fn app_url(gw: &Gateway) -> String {
    format!("http://localhost:{}{APP_PATH}", gw.setup().port)
}

/// The script's post to one of the `webauthn/` endpoints.
async fn post(b: &mut Browser, endpoint: &str, fields: Value) -> Reply {
    post_to(b, &format!("{PREFIX}/webauthn/{endpoint}"), fields).await
}

async fn options(b: &mut Browser, endpoint: &str) -> Value {
    let reply = post(b, endpoint, json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{endpoint}: {reply:?}");
    reply.json()
}

/// The soft key cannot keep resident (discoverable) credentials, which
/// the gateway asks for with passkeys on: it is asked for a plain one.
fn register(key: &mut SoftPasskey, gw: &Gateway, mut options: Value) -> String {
    let selection = &mut options["publicKey"]["authenticatorSelection"];
    selection["requireResidentKey"] = json!(false);
    selection["residentKey"] = json!("discouraged");
    let options = serde_json::from_value(options).unwrap();
    let answer = key.do_registration(origin(gw), options).unwrap();
    serde_json::to_string(&answer).unwrap()
}

fn sign(key: &mut SoftPasskey, gw: &Gateway, options: Value) -> String {
    let options = serde_json::from_value(options).unwrap();
    let answer = key.do_authentication(origin(gw), options).unwrap();
    serde_json::to_string(&answer).unwrap()
}

async fn reaches_app(b: &mut Browser) -> bool {
    b.get(APP_PATH).await.status == StatusCode::OK
}

/// Password, then the first key: the session steps up under a new id.
async fn enrolled(gw: &Gateway, email: &str, password: &str, key: &mut SoftPasskey) -> Browser {
    let mut b = gw.browser();
    b.login(email, password).await;
    let verify = b.get(&portal_path("verify", &app_url(gw))).await;
    assert_eq!(verify.status, StatusCode::SEE_OTHER, "{verify:?}");
    assert!(
        verify.location().contains("/enroll/webauthn"),
        "a user with no factor is sent to register a key: {verify:?}"
    );
    let old = session_of(&b);
    let created = options(&mut b, "register/options").await;
    let credential = register(key, gw, created);
    let reply = post(
        &mut b,
        "register",
        json!({"credential": credential, "name": "Test key", "rd": app_url(gw)}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(reply.json()["next"], app_url(gw));
    assert_ne!(session_of(&b), old, "a new session id on the step up");
    assert!(reaches_app(&mut b).await);
    b
}

/// Alice with a new key, enrolled at her first login.
async fn alice_enrolled(gw: &Gateway) -> (SoftPasskey, Browser) {
    let mut key = SoftPasskey::new(true);
    let b = enrolled(gw, ALICE, ALICE_PW, &mut key).await;
    (key, b)
}

/// The second step with `key`: options, the key's answer, the app.
async fn confirmed_with(b: &mut Browser, gw: &Gateway, key: &mut SoftPasskey) {
    let requested = options(b, "assert/options").await;
    let answer = sign(key, gw, requested);
    let reply = post(
        b,
        "assert",
        json!({"credential": answer, "rd": app_url(gw)}),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert!(reaches_app(b).await);
}

/// Password, then the key on the verify page.
async fn signed_in(gw: &Gateway, email: &str, password: &str, key: &mut SoftPasskey) -> Browser {
    let mut b = gw.browser();
    b.login(email, password).await;
    assert!(!reaches_app(&mut b).await, "one factor is not enough");
    confirmed_with(&mut b, gw, key).await;
    b
}

#[tokio::test]
async fn a_key_enrolled_at_the_first_login_confirms_the_next_ones() {
    let env = start_env().await;
    let gw = &env.gw;
    let (mut key, mut b) = alice_enrolled(gw).await;
    let app = b.get(APP_PATH).await;
    assert_eq!(app.echo().header("remote-user").as_deref(), Some(ALICE));
    b.logout().await;
    signed_in(gw, ALICE, ALICE_PW, &mut key).await;
}

#[tokio::test]
async fn an_answer_is_taken_once_and_only_for_its_own_challenge() {
    let env = start_env().await;
    let gw = &env.gw;
    let mut key = SoftPasskey::new(true);
    enrolled(gw, ALICE, ALICE_PW, &mut key).await;
    let mut b = gw.browser();
    b.login(ALICE, ALICE_PW).await;
    let first = options(&mut b, "assert/options").await;
    let answer = sign(&mut key, gw, first);
    // A new ceremony replaces the first: its answer no longer fits.
    let _second = options(&mut b, "assert/options").await;
    let stale = post(&mut b, "assert", json!({"credential": answer})).await;
    assert_eq!(stale.status, StatusCode::UNAUTHORIZED, "{stale:?}");
    assert_eq!(stale.json()["error"], "key_refused", "{stale:?}");
    // The same answer again finds no ceremony at all.
    let replayed = post(&mut b, "assert", json!({"credential": answer})).await;
    assert_eq!(replayed.status, StatusCode::UNAUTHORIZED, "{replayed:?}");
    assert_eq!(
        replayed.json()["error"],
        "challenge_expired",
        "{replayed:?}"
    );
    assert!(!reaches_app(&mut b).await);
}

#[tokio::test]
async fn another_users_key_does_not_confirm_this_user() {
    let env = start_env().await;
    let gw = &env.gw;
    let mut alices = SoftPasskey::new(true);
    let mut bobs = SoftPasskey::new(true);
    enrolled(gw, ALICE, ALICE_PW, &mut alices).await;
    let mut bob = enrolled(gw, BOB, BOB_PW, &mut bobs).await;
    bob.logout().await;
    let mut bob = gw.browser();
    bob.login(BOB, BOB_PW).await;
    let bobs_options = options(&mut bob, "assert/options").await;
    // Bob's key answers a challenge issued to Alice's session.
    let mut alice = gw.browser();
    alice.login(ALICE, ALICE_PW).await;
    let mut alices_options = options(&mut alice, "assert/options").await;
    alices_options["publicKey"]["allowCredentials"] =
        bobs_options["publicKey"]["allowCredentials"].clone();
    let answer = sign(&mut bobs, gw, alices_options);
    let reply = post(&mut alice, "assert", json!({"credential": answer})).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    assert!(!reaches_app(&mut alice).await);
}

/// The id of the user's one key, from the security page's JSON.
async fn key_ids(b: &mut Browser) -> Vec<String> {
    let page = b.get_json(&format!("{PREFIX}/account/security")).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    page.json()["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["id"].as_str().unwrap().to_owned())
        .collect()
}

/// "Sign in with a passkey": the soft key keeps no resident credentials,
/// so it is told its id, which a discoverable key would know by itself.
/// A passkey sign-in from Firefox on Linux (its User-Agent).
async fn passkey_sign_in(gw: &Gateway, key: &mut SoftPasskey, id: &str) -> (Browser, Reply) {
    let mut b = gw.browser();
    let mut requested = options(&mut b, "passkey/options").await;
    requested["publicKey"]["allowCredentials"] = json!([{"type": "public-key", "id": id}]);
    let answer = sign(key, gw, requested);
    let csrf = b.csrf().await;
    let builder = b
        .request(Method::POST, &format!("{PREFIX}/webauthn/passkey"))
        .header("accept", "application/json")
        .header("user-agent", FIREFOX)
        .json(&json!({"credential": answer, "rd": app_url(gw), "csrf": csrf}));
    let reply = b.send(builder).await;
    (b, reply)
}

const FIREFOX: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";

#[tokio::test]
async fn a_passkey_signs_in_alone_once_and_not_after_a_reset() {
    let env = start_env().await;
    let gw = &env.gw;
    let (mut key, mut b) = alice_enrolled(gw).await;
    let id = key_ids(&mut b).await.remove(0);
    let (mut signed, reply) = passkey_sign_in(gw, &mut key, &id).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    assert_eq!(
        reply.json()["next"],
        app_url(gw),
        "user verified: both factors"
    );
    assert!(reaches_app(&mut signed).await);
    let listing = crate::account_sessions::sessions_json(&mut signed).await;
    let this = listing["sessions"]
        .as_array()
        .and_then(|rows| rows.iter().find(|row| row["this_device"] == true))
        .expect("the passkey's session is listed");
    assert_eq!(this["client"], "127.0.0.1", "{listing}");
    assert_eq!(this["device"], "Firefox on Linux", "{listing}");

    // The same answer with the same ceremony cookie, sent again.
    let mut b = gw.browser();
    let mut requested = options(&mut b, "passkey/options").await;
    let ceremony = b
        .cookie("authgate_passkey")
        .expect("the ceremony cookie")
        .to_owned();
    requested["publicKey"]["allowCredentials"] = json!([{"type": "public-key", "id": id}]);
    let answer = sign(&mut key, gw, requested);
    let first = post(&mut b, "passkey", json!({"credential": answer})).await;
    assert_eq!(first.status, StatusCode::OK, "{first:?}");
    let mut replay = gw.browser();
    replay.set_cookie_value("authgate_passkey", &ceremony);
    let again = post(&mut replay, "passkey", json!({"credential": answer})).await;
    assert_eq!(again.status, StatusCode::UNAUTHORIZED, "{again:?}");
    assert_eq!(
        again.json()["error"],
        "challenge_expired",
        "the ceremony is spent"
    );
    assert!(replay.cookie(SESSION_COOKIE).is_none());

    gw.setup().reset_2fa(ALICE).await;
    // The gateway reads the users file within about a second.
    let mut refused = None;
    for _ in 0..100 {
        let (_, reply) = passkey_sign_in(gw, &mut key, &id).await;
        if reply.status != StatusCode::OK {
            refused = Some(reply);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    let refused = refused.expect("the reset voids the passkey");
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{refused:?}");
    assert_eq!(refused.json()["error"], "invalid_credentials");
    // The old key no longer counts: the next login registers a new one.
    let mut again = gw.browser();
    again.login(ALICE, ALICE_PW).await;
    let verify = again.get(&portal_path("verify", &app_url(gw))).await;
    assert!(verify.location().contains("/enroll/webauthn"), "{verify:?}");
}

/// With verification only preferred, the soft key answers without it: the
/// passkey then stands for the password only, and the second step follows.
#[tokio::test]
async fn a_passkey_without_user_verification_is_one_factor() {
    let env = start_env_with("preferred").await;
    let gw = &env.gw;
    let (mut key, mut b) = alice_enrolled(gw).await;
    let id = key_ids(&mut b).await.remove(0);
    let (mut signed, reply) = passkey_sign_in(gw, &mut key, &id).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    let verify = reply.json()["next"].as_str().unwrap().to_owned();
    assert!(verify.contains("/_authgate/verify?rd="), "{verify}");
    assert!(!reaches_app(&mut signed).await, "one factor only");
    confirmed_with(&mut signed, gw, &mut key).await;
}

#[tokio::test]
async fn the_security_page_adds_a_key_and_keeps_the_last_one() {
    let env = start_env().await;
    let gw = &env.gw;
    let mut first = SoftPasskey::new(true);
    let mut second = SoftPasskey::new(true);
    let mut b = enrolled(gw, ALICE, ALICE_PW, &mut first).await;
    let ids = key_ids(&mut b).await;
    assert_eq!(ids.len(), 1);
    let csrf = b.csrf().await;
    let path = format!("{PREFIX}/account/security");
    let last = b
        .post_form(
            &path,
            &[("csrf", &csrf), ("action", "remove"), ("id", &ids[0])],
        )
        .await;
    assert_eq!(
        last.status,
        StatusCode::CONFLICT,
        "the last factor stays: {last:?}"
    );

    let session = session_of(&b);
    let created = options(&mut b, "register/options").await;
    let credential = register(&mut second, gw, created);
    let added = post(
        &mut b,
        "register",
        json!({"credential": credential, "name": "Spare <b>"}),
    )
    .await;
    assert_eq!(added.status, StatusCode::OK, "{added:?}");
    assert_eq!(session_of(&b), session, "adding a key is no step up");
    let page = b.get(&path).await;
    assert!(page.body.contains("Spare &lt;b&gt;"), "{}", page.body);
    assert_eq!(key_ids(&mut b).await.len(), 2);

    let removed = b
        .post_form(
            &path,
            &[("csrf", &csrf), ("action", "remove"), ("id", &ids[0])],
        )
        .await;
    assert_eq!(removed.status, StatusCode::OK, "{removed:?}");
    assert_eq!(key_ids(&mut b).await.len(), 1);
    b.logout().await;
    let mut old_key = gw.browser();
    old_key.login(ALICE, ALICE_PW).await;
    let requested = options(&mut old_key, "assert/options").await;
    let allowed = requested["publicKey"]["allowCredentials"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(allowed, 1, "only the second key is asked for");
    signed_in(gw, ALICE, ALICE_PW, &mut second).await;
}

#[tokio::test]
async fn the_endpoints_want_a_csrf_token_and_a_session() {
    let env = start_env().await;
    let gw = &env.gw;
    let mut b = gw.browser();
    let anonymous = post(&mut b, "assert/options", json!({})).await;
    assert_eq!(anonymous.status, StatusCode::UNAUTHORIZED, "{anonymous:?}");
    b.login(ALICE, ALICE_PW).await;
    let builder = b
        .request(Method::POST, &format!("{PREFIX}/webauthn/register/options"))
        .header("accept", "application/json")
        .json(&json!({}));
    let forged = b.send(builder).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{forged:?}");
}

/// What approve.html's script does for a key: options bound to the held
/// request at `page`, then the key's answer.
async fn approval_options(b: &mut Browser, page: &str) -> Value {
    let reply = post_to(b, &format!("{page}/key/options"), json!({})).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.json()
}

/// What the page's script does: posts `fields` as JSON with the token.
async fn post_to(b: &mut Browser, path: &str, fields: Value) -> Reply {
    let csrf = b.csrf().await;
    let mut body = fields;
    body["csrf"] = json!(csrf);
    let builder = b
        .request(Method::POST, path)
        .header("accept", "application/json")
        .json(&body);
    b.send(builder).await
}

async fn status_of(b: &mut Browser, page: &str) -> Value {
    b.get_json(&format!("{page}/status")).await.json()["status"].clone()
}

#[tokio::test]
async fn a_key_approves_its_own_held_request_once_and_no_other() {
    let env = start_env_tweaked("required", |setup| {
        setup.set("access_control.rules", crate::approve::approve_rules());
    })
    .await;
    let gw = &env.gw;
    let (mut key, mut b) = alice_enrolled(gw).await;
    let hits = env.upstream.hits();
    let a = crate::approve::held_transfer(&mut b, "amount=1&currency=EUR&to=A").await;
    let other = crate::approve::held_transfer(&mut b, "amount=2&currency=EUR&to=B").await;
    let shown = b.get(&a).await;
    let options_url = format!("{a}/key/options").replace('/', "&#x2f;");
    assert!(
        shown
            .body
            .contains(&format!(r#"data-options-url="{options_url}""#)),
        "the page offers the key: {}",
        shown.body
    );

    // A's answer, offered to B (whose own ceremony is waiting): refused.
    let for_a = sign(&mut key, gw, approval_options(&mut b, &a).await);
    approval_options(&mut b, &other).await;
    let crossed = post_to(
        &mut b,
        &format!("{other}/key"),
        json!({"credential": for_a}),
    )
    .await;
    assert_eq!(crossed.status, StatusCode::UNAUTHORIZED, "{crossed:?}");
    assert_eq!(status_of(&mut b, &other).await, "pending");

    let approved = post_to(&mut b, &format!("{a}/key"), json!({"credential": for_a})).await;
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
    assert_eq!(approved.json()["next"], a.as_str());
    assert_eq!(status_of(&mut b, &a).await, "approved");
    let replayed = post_to(&mut b, &format!("{a}/key"), json!({"credential": for_a})).await;
    assert_eq!(replayed.status, StatusCode::CONFLICT, "{replayed:?}");
    assert_eq!(env.upstream.hits(), hits, "approved, not sent yet");

    let answer = crate::approve::post_continue(&mut b, &a).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(answer.echo().body(), "amount=1&currency=EUR&to=A");
    assert_eq!(env.upstream.hits(), hits + 1);
    let refused = crate::approve::post_continue(&mut b, &other).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{refused:?}");
    assert_eq!(env.upstream.hits(), hits + 1, "B was never approved");
}
