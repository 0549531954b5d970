//! The Authy second factor end to end: the real gateway binary, the Authy
//! sandbox in this process (`authgate::sandbox`), and the
//! echo upstream. Pushes confirmed by the webhook and by polling, bound to
//! their session; denied pushes; SMS and app codes; the webhook's signature
//! and matching rules; Authy down or slow; `force=true`; sign-up; and the
//! `authgate sandbox` subcommand.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use authgate::factor::authy::signature::{canonical_params, sign};
use authgate::sandbox::{Sandbox, SandboxConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

const API_KEY: &str = "authy-it-sandbox-key-0123456789";
const COUNTRY_CODE: &str = "1";
const PHONE: &str = "5551234567";
/// `auth.challenge_timeout` left at its default, 5 min.
const DEFAULT_CHALLENGE_SECS: u64 = 300;

// ---------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------

/// Upstream, sandbox and gateway of one test. The gateway is killed and the
/// sandbox stopped on drop.
struct Env {
    upstream: Upstream,
    sandbox: Sandbox,
    gw: Gateway,
}

struct Options {
    poll_interval: &'static str,
    /// Whether the sandbox sends OneTouch callbacks to the gateway.
    callbacks: bool,
}

const WEBHOOK_ONLY: Options = Options {
    poll_interval: "1h",
    callbacks: true,
};
const POLL_ONLY: Options = Options {
    poll_interval: "1s",
    callbacks: false,
};
/// Neither a callback nor a useful poll: the test posts callbacks itself.
const NO_ANSWERS: Options = Options {
    poll_interval: "1h",
    callbacks: false,
};

async fn start_sandbox(callbacks: bool) -> Sandbox {
    let config = SandboxConfig {
        callbacks_enabled: callbacks,
        ..SandboxConfig::new(API_KEY)
    };
    Sandbox::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("the Authy sandbox starts")
}

/// A config with the second factor required and `[authy]` pointing at
/// `api_url`; alice has a phone.
async fn authy_setup(upstream: &Upstream, api_url: &str, poll_interval: &str) -> Setup {
    let mut setup = Setup::new(Some(&upstream.url()));
    setup
        .set("auth.second_factor", "required")
        .set("authy.api_key", API_KEY)
        .set("authy.api_url", api_url)
        .set("authy.poll_interval", poll_interval);
    setup.write_config();
    add_phone_user(&setup, ALICE, ALICE_NAME, "a,b", ALICE_PW).await;
    setup
}

/// `authgate user add` with a country code and phone, through the real CLI.
async fn add_phone_user(setup: &Setup, email: &str, name: &str, groups: &str, password: &str) {
    let phone = ["--country-code", COUNTRY_CODE, "--phone", PHONE];
    setup
        .add_user_with(email, name, groups, password, &phone)
        .await;
}

/// Starts everything; the sandbox's callbacks go to the gateway's webhook
/// (set once the gateway's port is final).
async fn start_env(options: Options, tweak: impl FnOnce(&mut Setup)) -> Env {
    let upstream = Upstream::start().await;
    let sandbox = start_sandbox(options.callbacks).await;
    let mut setup = authy_setup(&upstream, &sandbox.url(), options.poll_interval).await;
    tweak(&mut setup);
    let gw = setup.start().await;
    sandbox
        .set_callback_url(Some(callback_url(&gw)))
        .expect("callback URL");
    Env {
        upstream,
        sandbox,
        gw,
    }
}

/// The gateway's webhook, exactly as it derives it (public_url + prefix).
fn callback_url(gw: &Gateway) -> String {
    gw.url(&format!("{PREFIX}/authy/callback"))
}

// ---------------------------------------------------------------------------
// Sandbox helpers
// ---------------------------------------------------------------------------

fn approvals(sandbox: &Sandbox) -> Vec<Value> {
    sandbox.snapshot()["approval_requests"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn sandbox_users(sandbox: &Sandbox) -> Vec<Value> {
    sandbox.snapshot()["users"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn callbacks_sent(sandbox: &Sandbox) -> Vec<Value> {
    sandbox.snapshot()["callbacks"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The sandbox user for `email` (panics when there is none).
fn sandbox_user(sandbox: &Sandbox, email: &str) -> Value {
    sandbox_users(sandbox)
        .into_iter()
        .find(|u| u["email"] == email)
        .unwrap_or_else(|| panic!("no sandbox user {email}: {}", sandbox.snapshot()))
}

/// Approves or denies through the control API, as a person on the sandbox
/// page would; the answer carries the callback's delivery.
async fn decide(sandbox: &Sandbox, uuid: &str, status: &str) -> Value {
    let resp = client()
        .post(format!("{}/_sandbox/api/approvals/{uuid}", sandbox.url()))
        .json(&json!({"status": status}))
        .send()
        .await
        .expect("sandbox control API");
    assert_eq!(resp.status(), StatusCode::OK, "decide {uuid} {status}");
    resp.json().await.expect("JSON from the control API")
}

/// A 7-digit code that is neither the user's current app code nor the
/// last SMS code.
fn wrong_code(sandbox: &Sandbox) -> String {
    let taken: Vec<String> = sandbox_users(sandbox)
        .iter()
        .flat_map(|u| [u["app_code"].clone(), u["last_sms_code"].clone()])
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    ["0000000", "1111111", "2222222"]
        .into_iter()
        .find(|c| !taken.iter().any(|t| t == c))
        .unwrap()
        .to_owned()
}

// ---------------------------------------------------------------------------
// Browser helpers
// ---------------------------------------------------------------------------

fn encoded_rd(rd: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("rd", rd)
        .finish()
}

/// `/_authgate/verify?rd=…` for `rd`.
fn verify_path(rd: &str) -> String {
    format!("{PREFIX}/verify?{}", encoded_rd(rd))
}

/// Password login asking for `rd`: 303 to the second-factor page.
async fn login_to_verify(gw: &Gateway, email: &str, password: &str, rd: &str) -> Browser {
    let mut b = gw.browser();
    let reply = b.post_login(email, password, Some(rd)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "login: {reply:?}");
    assert_eq!(
        reply.location(),
        format!("{}{}", gw.base(), verify_path(rd)),
        "after the password comes the second factor"
    );
    assert!(b.cookie(SESSION_COOKIE).is_some(), "a one_factor session");
    b
}

/// Logs alice in and opens the verify page (which sends the push).
async fn challenged(env: &Env) -> (Browser, String, Reply) {
    let rd = env.gw.url(APP_PATH);
    let mut b = login_to_verify(&env.gw, ALICE, ALICE_PW, &rd).await;
    let page = b.get(&verify_path(&rd)).await;
    assert_eq!(page.status, StatusCode::OK, "verify page: {page:?}");
    (b, rd, page)
}

async fn status(b: &mut Browser) -> Reply {
    b.get_json(&format!("{PREFIX}/status")).await
}

fn status_of(reply: &Reply) -> String {
    assert_eq!(reply.status, StatusCode::OK, "status: {reply:?}");
    reply.json()["status"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

/// Polls `status` (bounded: 60 × 250 ms) until it is no longer `pending`.
async fn settled_status(b: &mut Browser) -> Reply {
    for _ in 0..60 {
        let reply = status(b).await;
        if status_of(&reply) != "pending" {
            return reply;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the push stayed pending");
}

async fn post_code(b: &mut Browser, csrf: &str, rd: &str, code: &str) -> Reply {
    let builder = b.request(Method::POST, &format!("{PREFIX}/verify")).form(&[
        ("code", code),
        ("csrf", csrf),
        ("rd", rd),
    ]);
    b.send(builder).await
}

async fn post_resend(b: &mut Browser, csrf: &str, rd: &str) -> Reply {
    let builder = b
        .request(Method::POST, &format!("{PREFIX}/resend"))
        .form(&[("csrf", csrf), ("rd", rd)]);
    b.send(builder).await
}

/// A browser that holds only this session cookie.
fn browser_with_session(gw: &Gateway, session: &str) -> Browser {
    let mut b = gw.browser();
    b.set_cookie_value(SESSION_COOKIE, session);
    b
}

/// Through the proxy with this browser: the upstream's echo, which must
/// name `user`.
async fn reaches_upstream_as(b: &mut Browser, user: &str) -> Echo {
    let reply = b.get(APP_PATH).await;
    let echo = reply.echo();
    assert_eq!(echo.header("remote-user").as_deref(), Some(user));
    echo
}

/// Through the proxy: 302 to the login page (the session is gone).
async fn sent_to_login(b: &mut Browser, gw: &Gateway) {
    let reply = b.get(APP_PATH).await;
    assert_eq!(reply.status, StatusCode::FOUND, "{reply:?}");
    assert_eq!(reply.location(), login_redirect(&gw.base(), APP_PATH));
}

/// Through the proxy: 302 to the second-factor page.
async fn sent_to_verify(b: &mut Browser, gw: &Gateway) {
    let reply = b.get(APP_PATH).await;
    assert_eq!(reply.status, StatusCode::FOUND, "{reply:?}");
    assert_eq!(
        reply.location(),
        format!("{}{}", gw.base(), verify_path(&gw.url(APP_PATH)))
    );
}

fn new_session_cookie(reply: &Reply, old: &str) -> String {
    let line = reply
        .set_cookie(SESSION_COOKIE)
        .unwrap_or_else(|| panic!("a new session cookie: {reply:?}"));
    let value = line
        .split(';')
        .next()
        .and_then(|p| p.split_once('='))
        .map(|(_, v)| v.to_owned())
        .unwrap_or_default();
    assert!(!value.is_empty(), "{line}");
    assert_ne!(value, old, "the step up issues a new session id");
    value
}

/// The text of the page's `role="alert"` message.
fn alert(html: &str) -> Option<String> {
    let start = html.find("role=\"alert\">")? + "role=\"alert\">".len();
    let end = html[start..].find("</p>")?;
    Some(html[start..start + end].trim().to_owned())
}

fn is_code_form(html: &str) -> bool {
    html.contains("name=\"code\"") && csrf_field(html).is_some()
}

// ---------------------------------------------------------------------------
// 1-4: OneTouch pushes
// ---------------------------------------------------------------------------

/// Test 1: a push approved on the phone reaches the gateway by the webhook
/// alone (polling is 1 h), confirms the session under a new id, ends the
/// old id, and the new one reaches the upstream as alice.
#[tokio::test]
async fn push_approved_through_the_webhook_steps_up_under_a_new_id() {
    let env = start_env(WEBHOOK_ONLY, |_| {}).await;
    let (mut b, rd, page) = challenged(&env).await;
    assert!(
        page.body.contains("Approve it"),
        "the waiting view: {}",
        page.body
    );
    // Opening the page again keeps the live challenge: still one push.
    let again = b.get(&verify_path(&rd)).await;
    assert_eq!(again.status, StatusCode::OK);

    let pushes = approvals(&env.sandbox);
    assert_eq!(pushes.len(), 1, "one approval request: {pushes:?}");
    let push = &pushes[0];
    assert_eq!(push["status"], "pending");
    assert_eq!(
        push["message"],
        format!("Log in to 127.0.0.1:{}", env.gw.setup().port)
    );
    let details = push["details"].to_string();
    assert!(details.contains(ALICE), "details name the user: {details}");
    assert_eq!(push["seconds_to_expire"], DEFAULT_CHALLENGE_SECS);
    let user = sandbox_user(&env.sandbox, ALICE);
    assert_eq!(user["cellphone"], PHONE);
    assert_eq!(user["country_code"], COUNTRY_CODE);
    assert_eq!(push["authy_id"], user["authy_id"]);

    let old = b.cookie(SESSION_COOKIE).unwrap().to_owned();
    let hits = env.upstream.hits();
    let uuid = push["uuid"].as_str().unwrap();
    let answer = decide(&env.sandbox, uuid, "approved").await;
    assert_eq!(answer["callback"]["http_status"], 200, "{answer}");
    let delivered = callbacks_sent(&env.sandbox);
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0]["http_status"], 200);
    assert_eq!(delivered[0]["uuid"], uuid);

    let reply = status(&mut b).await;
    assert_eq!(status_of(&reply), "approved", "{reply:?}");
    let new = new_session_cookie(&reply, &old);
    assert_eq!(b.cookie(SESSION_COOKIE), Some(new.as_str()));

    sent_to_login(&mut browser_with_session(&env.gw, &old), &env.gw).await;
    assert_eq!(env.upstream.hits(), hits, "the old id reached nothing");
    let echo = reaches_upstream_as(&mut b, ALICE).await;
    assert_eq!(echo.header("remote-email").as_deref(), Some(ALICE));
    assert_eq!(echo.header("remote-groups").as_deref(), Some("a,b"));
    assert_eq!(env.upstream.hits(), hits + 1);
}

/// Test 2: with callbacks off, the gateway's own polling of the approval
/// request (1 s) finds the approval.
#[tokio::test]
async fn push_approved_without_callbacks_is_found_by_polling() {
    let env = start_env(POLL_ONLY, |_| {}).await;
    let (mut b, _rd, _page) = challenged(&env).await;
    let pushes = approvals(&env.sandbox);
    assert_eq!(pushes.len(), 1, "{pushes:?}");
    let old = b.cookie(SESSION_COOKIE).unwrap().to_owned();

    let answer = decide(
        &env.sandbox,
        pushes[0]["uuid"].as_str().unwrap(),
        "approved",
    )
    .await;
    assert!(answer["callback"].is_null(), "no callback sent: {answer}");

    let reply = settled_status(&mut b).await;
    assert_eq!(status_of(&reply), "approved", "{reply:?}");
    new_session_cookie(&reply, &old);
    assert!(callbacks_sent(&env.sandbox).is_empty());
    reaches_upstream_as(&mut b, ALICE).await;
}

/// Test 3: two sessions of the same user, two pushes; approving the first
/// confirms the first session only.
#[tokio::test]
async fn a_push_approval_confirms_only_the_session_that_asked() {
    let env = start_env(
        Options {
            poll_interval: "1s",
            callbacks: true,
        },
        |_| {},
    )
    .await;
    let (mut first, _, _) = challenged(&env).await;
    let pushes = approvals(&env.sandbox);
    assert_eq!(pushes.len(), 1);
    let first_uuid = pushes[0]["uuid"].as_str().unwrap().to_owned();
    let (mut second, _, _) = challenged(&env).await;
    let pushes = approvals(&env.sandbox);
    assert_eq!(pushes.len(), 2, "one push per session: {pushes:?}");
    let second_uuid = pushes
        .iter()
        .map(|p| p["uuid"].as_str().unwrap().to_owned())
        .find(|u| *u != first_uuid)
        .unwrap();
    assert_ne!(first.cookie(SESSION_COOKIE), second.cookie(SESSION_COOKIE));

    let answer = decide(&env.sandbox, &first_uuid, "approved").await;
    assert_eq!(answer["callback"]["http_status"], 200, "{answer}");
    assert_eq!(status_of(&status(&mut first).await), "approved");
    reaches_upstream_as(&mut first, ALICE).await;

    // Let the 1 s poller run past both pushes, then look again.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(status_of(&status(&mut second).await), "pending");
    sent_to_verify(&mut second, &env.gw).await;

    // The second session's own push still works.
    decide(&env.sandbox, &second_uuid, "approved").await;
    assert_eq!(status_of(&settled_status(&mut second).await), "approved");
    reaches_upstream_as(&mut second, ALICE).await;
}

/// Test 4: a denied push answers `denied`; the verify page then offers the
/// code form with the "denied" message; the session stays one_factor.
#[tokio::test]
async fn a_denied_push_offers_the_code_form() {
    let env = start_env(WEBHOOK_ONLY, |_| {}).await;
    let (mut b, rd, _page) = challenged(&env).await;
    let uuid = approvals(&env.sandbox)[0]["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = decide(&env.sandbox, &uuid, "denied").await;
    assert_eq!(answer["callback"]["http_status"], 200, "{answer}");

    let reply = status(&mut b).await;
    assert_eq!(status_of(&reply), "denied");
    assert!(reply.set_cookie(SESSION_COOKIE).is_none(), "{reply:?}");

    let page = b.get(&verify_path(&rd)).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(
        page.body.contains("was denied"),
        "the denied message: {}",
        page.body
    );
    assert!(is_code_form(&page.body), "{}", page.body);
    assert!(!page.body.contains("Approve it"), "no waiting view");
    assert_eq!(approvals(&env.sandbox).len(), 1, "no new push");
    sent_to_verify(&mut b, &env.gw).await;
}

// ---------------------------------------------------------------------------
// 5, 9: codes
// ---------------------------------------------------------------------------

/// Test 5a: "resend" sends an SMS code (at most once per 30 s); a wrong
/// code is 401 with the tries left; the SMS code confirms the session.
#[tokio::test]
async fn an_sms_code_confirms_the_session() {
    let env = start_env(WEBHOOK_ONLY, |_| {}).await;
    let (mut b, rd, page) = challenged(&env).await;
    let csrf = csrf_field(&page.body).expect("csrf on the verify page");
    let authy_id = sandbox_user(&env.sandbox, ALICE)["authy_id"].clone();

    let sent = post_resend(&mut b, &csrf, &rd).await;
    assert_eq!(sent.status, StatusCode::OK, "{sent:?}");
    let sms = env.sandbox.snapshot()["sms"].clone();
    let sms = sms.as_array().unwrap();
    assert_eq!(sms.len(), 1, "one SMS: {sms:?}");
    assert_eq!(sms[0]["authy_id"], authy_id);
    let code = sms[0]["code"].as_str().unwrap().to_owned();

    let again = post_resend(&mut b, &csrf, &rd).await;
    assert_eq!(again.status, StatusCode::TOO_MANY_REQUESTS, "{again:?}");
    assert_eq!(
        env.sandbox.snapshot()["sms"].as_array().unwrap().len(),
        1,
        "no second SMS"
    );

    let wrong = wrong_code(&env.sandbox);
    let refused = post_code(&mut b, &csrf, &rd, &wrong).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{refused:?}");
    assert_eq!(
        alert(&refused.body).as_deref(),
        Some("Wrong code. 4 tries left."),
        "{}",
        refused.body
    );
    assert!(is_code_form(&refused.body));
    assert!(refused.set_cookie(SESSION_COOKIE).is_none());

    let old = b.cookie(SESSION_COOKIE).unwrap().to_owned();
    let ok = post_code(&mut b, &csrf, &rd, &code).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{ok:?}");
    assert_eq!(ok.location(), rd);
    new_session_cookie(&ok, &old);
    reaches_upstream_as(&mut b, ALICE).await;
    sent_to_login(&mut browser_with_session(&env.gw, &old), &env.gw).await;
}

/// Test 5b: the code the Authy app shows confirms a fresh session too.
#[tokio::test]
async fn an_authy_app_code_confirms_the_session() {
    let env = start_env(WEBHOOK_ONLY, |_| {}).await;
    let (mut b, rd, page) = challenged(&env).await;
    let csrf = csrf_field(&page.body).unwrap();
    let old = b.cookie(SESSION_COOKIE).unwrap().to_owned();
    let code = sandbox_user(&env.sandbox, ALICE)["app_code"]
        .as_str()
        .unwrap()
        .to_owned();

    let ok = post_code(&mut b, &csrf, &rd, &code).await;
    assert_eq!(ok.status, StatusCode::SEE_OTHER, "{ok:?}");
    assert_eq!(ok.location(), rd);
    new_session_cookie(&ok, &old);
    reaches_upstream_as(&mut b, ALICE).await;
    assert!(
        env.sandbox.snapshot()["sms"].as_array().unwrap().is_empty(),
        "no SMS was needed"
    );
}

/// Test 5c: the fifth wrong code ends the session.
#[tokio::test]
async fn five_wrong_codes_end_the_session() {
    let env = start_env(WEBHOOK_ONLY, |_| {}).await;
    let (mut b, rd, page) = challenged(&env).await;
    let csrf = csrf_field(&page.body).unwrap();
    let session = b.cookie(SESSION_COOKIE).unwrap().to_owned();
    let wrong = wrong_code(&env.sandbox);

    for left in (1..=4).rev() {
        let reply = post_code(&mut b, &csrf, &rd, &wrong).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
        assert_eq!(
            alert(&reply.body),
            Some(format!("Wrong code. {left} tries left.")),
            "{}",
            reply.body
        );
    }
    let last = post_code(&mut b, &csrf, &rd, &wrong).await;
    assert_eq!(last.status, StatusCode::UNAUTHORIZED, "{last:?}");
    let cleared = last
        .set_cookie(SESSION_COOKIE)
        .expect("the session cookie is cleared");
    assert!(
        cleared.starts_with(&format!("{SESSION_COOKIE}=;")) || has_attribute(&cleared, "Max-Age=0"),
        "{cleared}"
    );

    let mut old = browser_with_session(&env.gw, &session);
    sent_to_login(&mut old, &env.gw).await;
    let reply = status(&mut old).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    // Even the right code no longer helps that id.
    let code = sandbox_user(&env.sandbox, ALICE)["app_code"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut old = browser_with_session(&env.gw, &session);
    old.set_cookie_value(CSRF_COOKIE, b.cookie(CSRF_COOKIE).unwrap());
    let reply = post_code(&mut old, &csrf, &rd, &code).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    assert!(reply.set_cookie(SESSION_COOKIE).is_none());
}

/// Codes posted at once are counted before Authy is asked: at most five
/// are checked, the others are refused unchecked.
#[tokio::test]
async fn a_concurrent_burst_of_wrong_codes_checks_at_most_five() {
    let env = start_env(WEBHOOK_ONLY, |_| {}).await;
    let (b, _rd, page) = challenged(&env).await;
    let csrf = csrf_field(&page.body).unwrap();
    let wrong = wrong_code(&env.sandbox);
    let path = format!("{PREFIX}/verify");
    let answers = code_burst(&b, &env.gw, &path, &csrf, &wrong, 40).await;
    let checked = checked_codes(&answers);
    assert!(
        (1..=5).contains(&checked),
        "{checked} codes checked: {answers:?}"
    );
}

/// Test 9: the gateway sends `force=true` when it checks a code. The
/// sandbox, like Authy, accepts any code for a user who never verified one
/// unless `force=true` is sent; the gateway must still refuse a wrong code.
#[tokio::test]
async fn a_wrong_code_is_refused_for_an_unconfirmed_user() {
    let env = start_env(WEBHOOK_ONLY, |_| {}).await;
    let (mut b, rd, page) = challenged(&env).await;
    let csrf = csrf_field(&page.body).unwrap();
    let user = sandbox_user(&env.sandbox, ALICE);
    assert_eq!(user["confirmed"], false, "a fresh user: {user}");
    let wrong = wrong_code(&env.sandbox);

    // The trap is armed: without force the sandbox says "valid".
    let id = user["authy_id"].as_u64().unwrap();
    let unforced: Value = client()
        .get(format!(
            "{}/protected/json/verify/{wrong}/{id}",
            env.sandbox.url()
        ))
        .header("X-Authy-API-Key", API_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(unforced["token"], "is valid", "{unforced}");

    let reply = post_code(&mut b, &csrf, &rd, &wrong).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    assert!(reply.set_cookie(SESSION_COOKIE).is_none(), "{reply:?}");
    assert_eq!(sandbox_user(&env.sandbox, ALICE)["confirmed"], false);
    sent_to_verify(&mut b, &env.gw).await;
}

// ---------------------------------------------------------------------------
// 6: one_factor
// ---------------------------------------------------------------------------

/// Test 6: a session with the password alone never reaches a two_factor
/// upstream, before or during its challenge.
#[tokio::test]
async fn a_one_factor_session_never_reaches_the_upstream() {
    let env = start_env(WEBHOOK_ONLY, |_| {}).await;
    let rd = env.gw.url(APP_PATH);
    let mut b = login_to_verify(&env.gw, ALICE, ALICE_PW, &rd).await;
    let hits = env.upstream.hits();

    sent_to_verify(&mut b, &env.gw).await;
    let json = b
        .send(
            b.request(Method::GET, APP_PATH)
                .header("accept", "application/json"),
        )
        .await;
    assert_eq!(json.status, StatusCode::UNAUTHORIZED, "{json:?}");
    let post = b.send(b.request(Method::POST, APP_PATH).body("x")).await;
    assert_eq!(post.status, StatusCode::SEE_OTHER, "{post:?}");

    // With a pending push, still nothing.
    let page = b.get(&verify_path(&rd)).await;
    assert_eq!(page.status, StatusCode::OK);
    sent_to_verify(&mut b, &env.gw).await;
    assert_eq!(env.upstream.hits(), hits, "nothing reached the upstream");
}

// ---------------------------------------------------------------------------
// 7: the webhook against the real gateway
// ---------------------------------------------------------------------------

/// A callback body as Authy sends it (the fields the gateway reads, and a
/// few it does not).
fn callback_body(uuid: &str, authy_id: &Value, status: &str) -> Value {
    json!({
        "authy_id": authy_id,
        "device_uuid": 5001000,
        "callback_action": "approval_request_status",
        "uuid": uuid,
        "status": status,
        "approval_request": {
            "transaction": {"message": "Log in", "status": status, "uuid": uuid},
            "logos": null,
        },
    })
}

/// A signed POST to the gateway's webhook: signature over `url` with `key`.
struct Callback {
    body: Vec<u8>,
    nonce: String,
    signature: Option<String>,
}

impl Callback {
    fn signed(body: &Value, key: &str, url: &str, nonce: &str) -> Callback {
        let signature = sign(key, nonce, "POST", url, &canonical_params(body));
        Callback {
            body: serde_json::to_vec(body).unwrap(),
            nonce: nonce.to_owned(),
            signature: Some(signature),
        }
    }

    async fn post(&self, gw: &Gateway) -> StatusCode {
        let mut req = client()
            .post(callback_url(gw))
            .header("content-type", "application/json")
            .header("X-Authy-Signature-Nonce", &self.nonce)
            .body(self.body.clone());
        if let Some(signature) = &self.signature {
            req = req.header("X-Authy-Signature", signature);
        }
        req.send().await.expect("webhook answered").status()
    }
}

fn nonce(n: u64) -> String {
    (1_700_000_000 + n).to_string()
}

/// Test 7a: bad or missing signatures get 401 and change nothing; a signed
/// callback for an unknown uuid gets 200 and changes nothing; a signed
/// approval confirms the session; its replay gets 200 and is ignored.
#[tokio::test]
async fn webhook_checks_signatures_and_matches_the_push() {
    let env = start_env(NO_ANSWERS, |_| {}).await;
    let (mut b, _rd, _page) = challenged(&env).await;
    let push = approvals(&env.sandbox)[0].clone();
    let uuid = push["uuid"].as_str().unwrap().to_owned();
    let authy_id = push["authy_id"].clone();
    let url = callback_url(&env.gw);
    let approve = callback_body(&uuid, &authy_id, "approved");

    let wrong_key = Callback::signed(&approve, "not-the-api-key", &url, &nonce(1));
    assert_eq!(wrong_key.post(&env.gw).await, StatusCode::UNAUTHORIZED);
    let other_url = Callback::signed(
        &approve,
        API_KEY,
        "http://127.0.0.1:1/_authgate/authy/callback",
        &nonce(2),
    );
    assert_eq!(other_url.post(&env.gw).await, StatusCode::UNAUTHORIZED);
    let unsigned = Callback {
        signature: None,
        ..Callback::signed(&approve, API_KEY, &url, &nonce(3))
    };
    assert_eq!(unsigned.post(&env.gw).await, StatusCode::UNAUTHORIZED);
    let mut tampered = Callback::signed(
        &callback_body(&uuid, &authy_id, "denied"),
        API_KEY,
        &url,
        &nonce(4),
    );
    tampered.body = serde_json::to_vec(&approve).unwrap();
    assert_eq!(tampered.post(&env.gw).await, StatusCode::UNAUTHORIZED);
    assert_eq!(status_of(&status(&mut b).await), "pending");

    let unknown = callback_body(
        "6f1c2d3e-0000-4000-8000-000000000000",
        &authy_id,
        "approved",
    );
    let unknown = Callback::signed(&unknown, API_KEY, &url, &nonce(5));
    assert_eq!(unknown.post(&env.gw).await, StatusCode::OK);
    assert_eq!(status_of(&status(&mut b).await), "pending");
    sent_to_verify(&mut b, &env.gw).await;

    let old = b.cookie(SESSION_COOKIE).unwrap().to_owned();
    let valid = Callback::signed(&approve, API_KEY, &url, &nonce(6));
    assert_eq!(valid.post(&env.gw).await, StatusCode::OK);
    let reply = status(&mut b).await;
    assert_eq!(status_of(&reply), "approved", "{reply:?}");
    let new = new_session_cookie(&reply, &old);
    reaches_upstream_as(&mut b, ALICE).await;

    assert_eq!(valid.post(&env.gw).await, StatusCode::OK, "a replay is 2xx");
    assert!(
        env.gw.stderr().contains("seen before"),
        "the replay was recognised: {}",
        env.gw.stderr()
    );
    assert_eq!(b.cookie(SESSION_COOKIE), Some(new.as_str()));
    reaches_upstream_as(&mut b, ALICE).await;
    sent_to_login(&mut browser_with_session(&env.gw, &old), &env.gw).await;
}

/// Test 7b: a signed callback naming the real uuid but another Authy id is
/// answered 200 and changes nothing: the session stays pending, and the
/// real approval still confirms it afterwards.
#[tokio::test]
async fn webhook_for_another_authy_id_changes_nothing() {
    let env = start_env(NO_ANSWERS, |_| {}).await;
    let (mut b, _rd, _page) = challenged(&env).await;
    let push = approvals(&env.sandbox)[0].clone();
    let uuid = push["uuid"].as_str().unwrap().to_owned();
    let authy_id = push["authy_id"].as_u64().unwrap();
    let url = callback_url(&env.gw);

    let other = callback_body(&uuid, &json!(authy_id + 1), "approved");
    let other = Callback::signed(&other, API_KEY, &url, &nonce(1));
    assert_eq!(other.post(&env.gw).await, StatusCode::OK);
    assert_eq!(status_of(&status(&mut b).await), "pending");
    sent_to_verify(&mut b, &env.gw).await;

    let real = callback_body(&uuid, &json!(authy_id), "approved");
    let real = Callback::signed(&real, API_KEY, &url, &nonce(2));
    assert_eq!(real.post(&env.gw).await, StatusCode::OK);
    let reply = status(&mut b).await;
    assert_eq!(
        status_of(&reply),
        "approved",
        "the real approval after a mismatched one: {reply:?}"
    );
    reaches_upstream_as(&mut b, ALICE).await;
}

/// The sandbox set to Authy's other callback method (GET, signed over the
/// query string) confirms the push as well.
#[tokio::test]
async fn push_approved_through_a_get_webhook() {
    let env = start_env(WEBHOOK_ONLY, |_| {}).await;
    let set = client()
        .post(format!("{}/_sandbox/api/callbacks", env.sandbox.url()))
        .json(&json!({"method": "GET"}))
        .send()
        .await
        .unwrap();
    assert_eq!(set.status(), StatusCode::OK);
    let (mut b, _rd, _page) = challenged(&env).await;
    let uuid = approvals(&env.sandbox)[0]["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    let answer = decide(&env.sandbox, &uuid, "approved").await;
    assert_eq!(answer["callback"]["http_status"], 200, "{answer}");
    assert_eq!(status_of(&status(&mut b).await), "approved");
    reaches_upstream_as(&mut b, ALICE).await;
}

// ---------------------------------------------------------------------------
// 8: Authy down or slow
// ---------------------------------------------------------------------------

const UNAVAILABLE_TEXT: &str = "cannot be reached";

/// Test 8a: Authy down from the start (nothing listens at `api_url`): the
/// password still works, the verify page is a clear 503, and code posts say
/// "unavailable" (503) without ever counting as wrong codes.
#[tokio::test]
async fn authy_down_gives_a_clear_page_and_counts_no_wrong_codes() {
    let upstream = Upstream::start().await;
    let closed = format!("http://127.0.0.1:{}", free_port());
    let setup = authy_setup(&upstream, &closed, "1s").await;
    let gw = setup.start().await;
    let rd = gw.url(APP_PATH);
    let mut b = login_to_verify(&gw, ALICE, ALICE_PW, &rd).await;

    let page = b.get(&verify_path(&rd)).await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE, "{page:?}");
    assert!(page.body.contains(UNAVAILABLE_TEXT), "{}", page.body);

    let csrf = b.csrf().await;
    for attempt in 1..=6 {
        let reply = post_code(&mut b, &csrf, &rd, "1234567").await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "code post {attempt} while Authy is down: {reply:?}"
        );
        assert!(reply.body.contains(UNAVAILABLE_TEXT), "{}", reply.body);
    }
    let alive = status(&mut b).await;
    assert_eq!(alive.status, StatusCode::OK, "the session lives: {alive:?}");
    sent_to_verify(&mut b, &gw).await;
    assert_eq!(upstream.hits(), 0);
}

/// Test 8a': Authy goes down after the push was sent: code posts answer
/// 503 with the code form, and six of them do not end the session (five
/// wrong codes would).
#[tokio::test]
async fn authy_down_mid_challenge_counts_no_wrong_codes() {
    let env = start_env(WEBHOOK_ONLY, |_| {}).await;
    let (mut b, rd, page) = challenged(&env).await;
    let csrf = csrf_field(&page.body).unwrap();
    let addr = env.sandbox.addr();
    let Env {
        upstream,
        sandbox,
        gw,
    } = env;
    sandbox.shutdown();
    let closed = eventually(40, Duration::from_millis(100), || async {
        tokio::net::TcpStream::connect(addr).await.is_err()
    })
    .await;
    assert!(closed, "the sandbox stopped listening");

    for attempt in 1..=6 {
        let reply = post_code(&mut b, &csrf, &rd, "1234567").await;
        assert_eq!(
            reply.status,
            StatusCode::SERVICE_UNAVAILABLE,
            "code post {attempt}: {reply:?}"
        );
        assert!(reply.body.contains(UNAVAILABLE_TEXT), "{}", reply.body);
        assert!(is_code_form(&reply.body), "the code path stays offered");
        assert!(reply.set_cookie(SESSION_COOKIE).is_none(), "{reply:?}");
    }
    assert_eq!(status_of(&status(&mut b).await), "pending");
    sent_to_verify(&mut b, &gw).await;

    // A new login while Authy is down (its Authy id is known by now): the
    // push cannot be sent, the page says so and offers the code form.
    let mut fresh = login_to_verify(&gw, ALICE, ALICE_PW, &rd).await;
    let page = fresh.get(&verify_path(&rd)).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(
        page.body.contains("could not send a request to your phone"),
        "{}",
        page.body
    );
    assert!(is_code_form(&page.body), "{}", page.body);
    assert_eq!(status_of(&status(&mut fresh).await), "none");
    assert_eq!(upstream.hits(), 0);
}

/// Test 8b: Authy accepts connections but never answers; with
/// `authy.timeout = "1s"` the verify page still answers (within the test
/// client's 10 s) with a clear message.
#[tokio::test]
async fn authy_slow_times_out_into_a_clear_page() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let slow = format!("http://{}", listener.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let upstream = Upstream::start().await;
    let mut setup = authy_setup(&upstream, &slow, "1h").await;
    setup.set("authy.timeout", "1s");
    let gw = setup.start().await;
    let rd = gw.url(APP_PATH);
    let mut b = login_to_verify(&gw, ALICE, ALICE_PW, &rd).await;

    let page = b.get(&verify_path(&rd)).await;
    assert_eq!(page.status, StatusCode::SERVICE_UNAVAILABLE, "{page:?}");
    assert!(page.body.contains(UNAVAILABLE_TEXT), "{}", page.body);
    sent_to_verify(&mut b, &gw).await;
    hold.abort();
}

// ---------------------------------------------------------------------------
// 10: sign-up
// ---------------------------------------------------------------------------

const BOB: &str = "bob@example.com";
const BOB_PW: &str = "bob-password-0123";

async fn post_signup(b: &mut Browser, fields: &[(&str, &str)]) -> Reply {
    let csrf = b.csrf().await;
    let mut form = fields.to_vec();
    form.push(("csrf", &csrf));
    let builder = b
        .request(Method::POST, &format!("{PREFIX}/signup"))
        .form(&form);
    b.send(builder).await
}

fn signup_fields<'a>(email: &'a str, phone: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("name", "Bob Signup"),
        ("email", email),
        ("country_code", "44"),
        ("phone", phone),
        ("password", BOB_PW),
    ]
}

/// Test 10: sign-up registers the user with Authy; the new user logs in,
/// completes a push and reaches the upstream in group `signup`; existing
/// emails get the same answer; other domains are refused; the account
/// survives a restart.
#[tokio::test]
async fn signup_registers_with_authy_and_survives_a_restart() {
    let mut env = start_env(WEBHOOK_ONLY, |s| {
        s.set("signup.enabled", true)
            .set("signup.allowed_email_domains", vec!["example.com"]);
    })
    .await;
    let mut b = env.gw.browser();
    let page = b.get(&format!("{PREFIX}/signup")).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    for field in ["name", "email", "country_code", "phone", "password"] {
        assert!(
            page.body.contains(&format!("name=\"{field}\"")),
            "{field}: {}",
            page.body
        );
    }
    assert!(csrf_field(&page.body).is_some());

    let created = post_signup(&mut b, &signup_fields(BOB, "7700 900123")).await;
    assert_eq!(created.status, StatusCode::SEE_OTHER, "{created:?}");
    let to_login = created.location().to_owned();
    assert!(to_login.ends_with(&format!("{PREFIX}/login")), "{to_login}");
    let bob = sandbox_user(&env.sandbox, BOB);
    assert_eq!(bob["cellphone"], "7700900123");
    assert_eq!(bob["country_code"], "44");

    // An existing email (from the users file, or signed up) gets the same
    // answer and registers nothing.
    let users_before = sandbox_users(&env.sandbox).len();
    for existing in [ALICE, BOB] {
        let again = post_signup(&mut b, &signup_fields(existing, "7700 900999")).await;
        assert_eq!(again.status, StatusCode::SEE_OTHER, "{existing}: {again:?}");
        assert_eq!(again.location(), to_login);
    }
    assert_eq!(sandbox_users(&env.sandbox).len(), users_before);
    let foreign = post_signup(&mut b, &signup_fields("eve@example.org", "7700 900888")).await;
    assert_eq!(foreign.status, StatusCode::BAD_REQUEST, "{foreign:?}");
    assert_eq!(sandbox_users(&env.sandbox).len(), users_before);

    // Bob logs in and approves the push on his phone.
    let rd = env.gw.url(APP_PATH);
    let mut bob_browser = login_to_verify(&env.gw, BOB, BOB_PW, &rd).await;
    let page = bob_browser.get(&verify_path(&rd)).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    let push = approvals(&env.sandbox)
        .into_iter()
        .find(|p| p["authy_id"] == bob["authy_id"])
        .expect("a push to Bob's phone");
    decide(&env.sandbox, push["uuid"].as_str().unwrap(), "approved").await;
    assert_eq!(status_of(&status(&mut bob_browser).await), "approved");
    let echo = reaches_upstream_as(&mut bob_browser, BOB).await;
    assert_eq!(echo.header("remote-groups").as_deref(), Some("signup"));
    assert_eq!(echo.header("remote-name").as_deref(), Some("Bob Signup"));

    env.gw.stop().await;
    env.gw.restart().await;
    login_to_verify(&env.gw, BOB, BOB_PW, &env.gw.url(APP_PATH)).await;
}

// ---------------------------------------------------------------------------
// 11: `authgate sandbox`
// ---------------------------------------------------------------------------

/// A child process killed on drop.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Test 11: `authgate sandbox` serves the control API and the Authy API
/// with the given key; it refuses a non-loopback address.
#[tokio::test]
async fn sandbox_subcommand_serves_on_loopback_only() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let child = Command::new(BIN)
        .args(["sandbox", "--listen", &format!("127.0.0.1:{port}")])
        .args(["--api-key", "k-subcommand"])
        .current_dir(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn authgate sandbox");
    let mut child = KillOnDrop(child);
    let base = format!("http://127.0.0.1:{port}");
    let http = client();
    let mut state = None;
    for _ in 0..100 {
        if let Ok(resp) = http.get(format!("{base}/_sandbox/api/state")).send().await
            && resp.status() == StatusCode::OK
        {
            state = resp.json::<Value>().await.ok();
            break;
        }
        assert!(
            child.0.try_wait().unwrap().is_none(),
            "authgate sandbox exited"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let state = state.expect("the sandbox's state within 5 s");
    assert!(
        state["users"].as_array().is_some_and(Vec::is_empty),
        "{state}"
    );
    assert!(state["approval_requests"].is_array(), "{state}");

    let details = |key: &'static str| {
        http.get(format!("{base}/protected/json/app/details"))
            .header("X-Authy-API-Key", key)
            .send()
    };
    assert_eq!(
        details("k-subcommand").await.unwrap().status(),
        StatusCode::OK
    );
    assert_eq!(
        details("another-key").await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );
    drop(child);

    let wide = format!("0.0.0.0:{}", free_port());
    let out = run_bin(
        dir.path(),
        &["sandbox", "--listen", &wide, "--api-key", "k"],
        "",
        &[],
    )
    .await;
    assert!(!out.status.success(), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("loopback"), "{stderr}");
}
