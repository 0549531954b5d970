//! Twilio Verify v2 end to end: the real gateway binary against the Verify
//! endpoints of the Authy sandbox (in this process), with the echo
//! upstream. A verification started by the verify page, the code read back
//! from the sandbox's control API, wrong and used codes, "resend" limits,
//! Verify down, and switching between Authy and Verify.

use std::time::Duration;

use authgate::sandbox::{
    DEFAULT_VERIFY_ACCOUNT_SID, DEFAULT_VERIFY_AUTH_TOKEN, DEFAULT_VERIFY_SERVICE_SID, Sandbox,
    SandboxConfig,
};
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::support::*;

const API_KEY: &str = "verify-it-sandbox-authy-key-0123";
const COUNTRY_CODE: &str = "1";
const PHONE: &str = "5551234567";
/// Alice's number as Twilio wants it.
const TO: &str = "+15551234567";

// ---------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------

struct Env {
    _upstream: Upstream,
    sandbox: Sandbox,
    gw: Gateway,
}

async fn start_sandbox() -> Sandbox {
    let config = SandboxConfig {
        callbacks_enabled: false,
        ..SandboxConfig::new(API_KEY)
    };
    Sandbox::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("the sandbox starts")
}

/// `[verify]` pointing at `api_url` with the sandbox's credentials.
fn with_verify(setup: &mut Setup, api_url: &str) {
    setup
        .set("auth.second_factor", "required")
        .set("verify.api_url", api_url)
        .set("verify.account_sid", DEFAULT_VERIFY_ACCOUNT_SID)
        .set("verify.auth_token", DEFAULT_VERIFY_AUTH_TOKEN)
        .set("verify.service_sid", DEFAULT_VERIFY_SERVICE_SID);
}

/// Verify only (no `auth.methods`: the configured provider is the
/// default), alice with a phone. `tweak` sees the sandbox's URL.
async fn start_env(tweak: impl FnOnce(&mut Setup, &str)) -> Env {
    let upstream = Upstream::start().await;
    let sandbox = start_sandbox().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    with_verify(&mut setup, &sandbox.url());
    tweak(&mut setup, &sandbox.url());
    let phone = ["--country-code", COUNTRY_CODE, "--phone", PHONE];
    setup
        .add_user_with(ALICE, ALICE_NAME, "a,b", ALICE_PW, &phone)
        .await;
    let gw = setup.start().await;
    Env {
        _upstream: upstream,
        sandbox,
        gw,
    }
}

// ---------------------------------------------------------------------------
// The sandbox's Verify side
// ---------------------------------------------------------------------------

/// `GET /_sandbox/api/verify/codes?to=…`: the last verification sent to
/// `to`, or `None` (404) when nothing was sent there.
async fn sent_to(sandbox: &Sandbox, to: &str) -> Option<Value> {
    let mut url = url::Url::parse(&format!("{}/_sandbox/api/verify/codes", sandbox.url())).unwrap();
    url.query_pairs_mut().append_pair("to", to);
    let resp = client().get(url).send().await.expect("sandbox control API");
    match resp.status() {
        StatusCode::OK => Some(resp.json().await.expect("JSON")),
        StatusCode::NOT_FOUND => None,
        other => panic!("sandbox verify codes: {other}"),
    }
}

async fn code_sent_to(sandbox: &Sandbox, to: &str) -> String {
    let sent = sent_to(sandbox, to)
        .await
        .unwrap_or_else(|| panic!("no Verify code was sent to {to}"));
    sent["code"].as_str().expect("a code").to_owned()
}

async fn set_fault(sandbox: &Sandbox, mode: &str) {
    let resp = client()
        .post(format!("{}/_sandbox/api/verify/fault", sandbox.url()))
        .json(&json!({"mode": mode}))
        .send()
        .await
        .expect("sandbox control API");
    assert_eq!(resp.status(), StatusCode::OK, "fault {mode}");
}

/// How many requests each Verify endpoint of the sandbox received.
fn verify_requests(sandbox: &Sandbox, endpoint: &str) -> u64 {
    sandbox.snapshot()["verify"]["requests"][endpoint]
        .as_u64()
        .unwrap_or_else(|| panic!("no request counter {endpoint}: {}", sandbox.snapshot()))
}

/// Every verification the sandbox holds, oldest first.
fn verifications(sandbox: &Sandbox) -> Vec<Value> {
    sandbox.snapshot()["verify"]["verifications"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn approvals(sandbox: &Sandbox) -> Vec<Value> {
    sandbox.snapshot()["approval_requests"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A six-digit code that is not `code`.
fn other_than(code: &str) -> &'static str {
    if code == "000000" { "111111" } else { "000000" }
}

// ---------------------------------------------------------------------------
// Browser steps
// ---------------------------------------------------------------------------

/// Password login, then the app: 302 to the verify page.
async fn logged_in(gw: &Gateway) -> Browser {
    let mut b = gw.browser();
    b.login(ALICE, ALICE_PW).await;
    let reply = b.get(APP_PATH).await;
    assert_eq!(reply.status, StatusCode::FOUND, "{reply:?}");
    assert_eq!(
        reply.location(),
        gw.url(&portal_path("verify", &app_rd(gw)))
    );
    b
}

/// The verify page as JSON (it starts or keeps the challenge).
async fn verify_json(b: &mut Browser, gw: &Gateway, method: Option<&str>) -> Value {
    let path = match method {
        Some(m) => format!("{PREFIX}/verify?method={m}&{}", rd_query(&app_rd(gw))),
        None => portal_path("verify", &app_rd(gw)),
    };
    let reply = b.get_json(&path).await;
    assert_eq!(reply.status, StatusCode::OK, "verify page: {reply:?}");
    reply.json()
}

async fn post_resend_json(b: &mut Browser, gw: &Gateway) -> Reply {
    let csrf = b.csrf().await;
    let rd = app_rd(gw);
    b.post_form_json(&format!("{PREFIX}/resend"), &[("csrf", &csrf), ("rd", &rd)])
        .await
}

/// Posts `code` and checks the step up: see [`confirmed`].
async fn confirm_with(b: &mut Browser, gw: &Gateway, code: &str) {
    let old = session_of(b);
    let reply = post_code(b, gw, code).await;
    confirmed(b, gw, &reply, &old).await;
}

/// 303 to the app with a new session id, and the app reached as alice.
async fn confirmed(b: &mut Browser, gw: &Gateway, reply: &Reply, old: &str) {
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{reply:?}");
    assert_eq!(reply.location(), app_rd(gw));
    let new = set_cookie_value(reply, SESSION_COOKIE)
        .unwrap_or_else(|| panic!("a new session cookie: {reply:?}"));
    assert!(!new.is_empty() && new != old, "a new session id");
    let echo = b.get(APP_PATH).await.echo();
    assert_eq!(echo.header("remote-user").as_deref(), Some(ALICE));
}

fn error_of(reply: &Reply) -> String {
    reply.json()["error"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

// ---------------------------------------------------------------------------
// 1. The code Verify sent gets the user in
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_verify_page_sends_a_code_that_reaches_the_app() {
    let env = start_env(|_, _| {}).await;
    let gw = &env.gw;
    let mut b = logged_in(gw).await;
    assert!(
        sent_to(&env.sandbox, TO).await.is_none(),
        "nothing sent yet"
    );

    let page = verify_json(&mut b, gw, None).await;
    assert_eq!(page["method"], "verify", "{page}");
    assert_eq!(page["methods"], json!(["verify"]), "{page}");
    assert_eq!(page["code_sent"], true, "{page}");
    let sent = sent_to(&env.sandbox, TO)
        .await
        .expect("a code sent to alice");
    assert_eq!(sent["channel"], "sms", "{sent}");
    assert_eq!(sent["status"], "pending", "{sent}");
    let code = sent["code"].as_str().unwrap().to_owned();

    // The HTML page keeps the live challenge: no second send.
    let html = b.get(&portal_path("verify", &app_rd(gw))).await;
    assert_eq!(html.status, StatusCode::OK);
    assert!(html.body.contains("We sent you a code"), "{}", html.body);
    assert!(
        html_unescape(&html.body).contains(&format!("action=\"{PREFIX}/resend\""))
            && html.body.contains("Send a new code"),
        "a resend form: {}",
        html.body
    );
    assert_eq!(verify_requests(&env.sandbox, "start"), 1);
    assert_eq!(code_sent_to(&env.sandbox, TO).await, code);

    confirm_with(&mut b, gw, &code).await;
    let after = sent_to(&env.sandbox, TO).await.unwrap();
    assert_eq!(after["status"], "approved", "{after}");
}

#[tokio::test]
async fn the_email_channel_sends_to_the_users_email() {
    let upstream = Upstream::start().await;
    let sandbox = start_sandbox().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    with_verify(&mut setup, &sandbox.url());
    setup.set("verify.channel", "email");
    setup.add_alice().await; // no phone
    let gw = setup.start().await;

    let mut b = logged_in(&gw).await;
    let page = verify_json(&mut b, &gw, None).await;
    assert_eq!(page["method"], "verify", "{page}");
    assert_eq!(page["code_sent"], true, "{page}");
    let sent = sent_to(&sandbox, ALICE)
        .await
        .expect("a code sent by email");
    assert_eq!(sent["channel"], "email", "{sent}");
    confirm_with(&mut b, &gw, sent["code"].as_str().unwrap()).await;
}

// ---------------------------------------------------------------------------
// 2. Wrong codes and resend
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_wrong_code_is_refused_and_the_sent_code_still_works() {
    let env = start_env(|_, _| {}).await;
    let gw = &env.gw;
    let mut b = logged_in(gw).await;
    verify_json(&mut b, gw, None).await;
    let code = code_sent_to(&env.sandbox, TO).await;

    let wrong = post_code(&mut b, gw, other_than(&code)).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{wrong:?}");
    assert!(
        wrong.body.contains("Wrong code. 4 tries left."),
        "{}",
        wrong.body
    );
    let sent = sent_to(&env.sandbox, TO).await.unwrap();
    assert_eq!(sent["attempts"], 1, "the wrong code reached Verify: {sent}");
    assert_eq!(sent["status"], "pending");
    let json = post_code_json(&mut b, gw, other_than(&code)).await;
    assert_eq!(json.status, StatusCode::UNAUTHORIZED, "{json:?}");
    assert_eq!(error_of(&json), "invalid_code");
    still_needs_second_factor(&mut b, gw).await;

    // "Send a new code" within 30 s of the first send: 429, nothing sent.
    let resend = post_resend_json(&mut b, gw).await;
    assert_eq!(resend.status, StatusCode::TOO_MANY_REQUESTS, "{resend:?}");
    assert_eq!(error_of(&resend), "rate_limited");
    let retry: u64 = resend
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header");
    assert!((1..=30).contains(&retry), "retry after {retry}");
    assert_eq!(verify_requests(&env.sandbox, "start"), 1);
    assert_eq!(code_sent_to(&env.sandbox, TO).await, code);

    confirm_with(&mut b, gw, &code).await;
}

// ---------------------------------------------------------------------------
// 3. A used verification
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_used_code_is_expired_for_every_other_session() {
    let env = start_env(|_, _| {}).await;
    let gw = &env.gw;
    let sandbox = &env.sandbox;

    // Two pending sessions; the second start replaces the code of the
    // verification still pending for the same number (Twilio's rule).
    let mut a = logged_in(gw).await;
    let mut b = logged_in(gw).await;
    verify_json(&mut a, gw, None).await;
    let first = code_sent_to(sandbox, TO).await;
    verify_json(&mut b, gw, None).await;
    let code = code_sent_to(sandbox, TO).await;
    assert_eq!(verifications(sandbox).len(), 1, "one verification");

    confirm_with(&mut b, gw, &code).await;

    // Verify deleted the approved verification (404): the used code, or
    // any other, gets `code_expired`, never a step up.
    let used = post_code_json(&mut a, gw, &code).await;
    assert_eq!(used.status, StatusCode::UNAUTHORIZED, "{used:?}");
    assert_eq!(error_of(&used), "code_expired", "{used:?}");
    if first != code {
        let older = post_code_json(&mut a, gw, &first).await;
        assert_eq!(error_of(&older), "code_expired", "{older:?}");
    }
    let html = post_code(&mut a, gw, &code).await;
    assert_eq!(html.status, StatusCode::UNAUTHORIZED);
    assert!(
        html.body.contains("This code expired or was used already"),
        "{}",
        html.body
    );
    still_needs_second_factor(&mut a, gw).await;

    // A new session that posts the used code straight away, before any
    // verification of its own.
    let mut c = logged_in(gw).await;
    let late = post_code_json(&mut c, gw, &code).await;
    assert_eq!(late.status, StatusCode::UNAUTHORIZED, "{late:?}");
    assert_eq!(error_of(&late), "code_expired", "{late:?}");
    still_needs_second_factor(&mut c, gw).await;

    // "Send a new code" starts a new verification whose code works.
    let starts = verify_requests(sandbox, "start");
    let resend = post_resend_json(&mut c, gw).await;
    assert_eq!(resend.status, StatusCode::OK, "{resend:?}");
    assert_eq!(verify_requests(sandbox, "start"), starts + 1);
    let fresh = code_sent_to(sandbox, TO).await;
    confirm_with(&mut c, gw, &fresh).await;
}

// ---------------------------------------------------------------------------
// 4. Verify down
// ---------------------------------------------------------------------------

#[tokio::test]
async fn verify_down_is_503_and_counts_no_wrong_code() {
    let env = start_env(|setup, _| {
        setup.set("verify.timeout", "1s");
    })
    .await;
    let gw = &env.gw;
    let sandbox = &env.sandbox;
    let mut b = logged_in(gw).await;
    verify_json(&mut b, gw, None).await;
    let code = code_sent_to(sandbox, TO).await;

    // More posts than the five wrong codes that would end the session.
    set_fault(sandbox, "error").await;
    let checks = verify_requests(sandbox, "check");
    for _ in 0..6 {
        let reply = post_code_json(&mut b, gw, &code).await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
        assert_eq!(error_of(&reply), "provider_unavailable", "{reply:?}");
    }
    assert_eq!(
        verify_requests(sandbox, "check"),
        checks + 6,
        "each post asked Verify"
    );
    let html = post_code(&mut b, gw, &code).await;
    assert_eq!(html.status, StatusCode::SERVICE_UNAVAILABLE);
    assert!(
        html.body.contains("cannot be reached right now"),
        "{}",
        html.body
    );

    // A Verify that does not answer at all: bounded by verify.timeout.
    set_fault(sandbox, "hang").await;
    let started = std::time::Instant::now();
    let reply = post_code_json(&mut b, gw, &code).await;
    assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
    assert_eq!(error_of(&reply), "provider_unavailable");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
    still_needs_second_factor(&mut b, gw).await;

    // None of that counted as a wrong code: the first real one leaves 4.
    set_fault(sandbox, "none").await;
    let wrong = post_code(&mut b, gw, other_than(&code)).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{wrong:?}");
    assert!(
        wrong.body.contains("Wrong code. 4 tries left."),
        "{}",
        wrong.body
    );
    confirm_with(&mut b, gw, &code).await;
}

#[tokio::test]
async fn verify_unreachable_leaves_the_code_form_and_answers_503() {
    let closed = format!("http://127.0.0.1:{}", free_port());
    let env = start_env(|setup, _| {
        setup.set("verify.api_url", closed.as_str());
    })
    .await;
    let gw = &env.gw;
    let mut b = logged_in(gw).await;
    let page = verify_json(&mut b, gw, None).await;
    assert_eq!(page["method"], "verify", "{page}");
    assert_eq!(page["code_sent"], false, "{page}");
    assert_eq!(page["push_failed"], true, "{page}");
    let html = b.get(&portal_path("verify", &app_rd(gw))).await;
    assert_eq!(html.status, StatusCode::OK);
    assert!(
        html.body.contains("We could not send you a code"),
        "{}",
        html.body
    );
    for _ in 0..6 {
        let reply = post_code_json(&mut b, gw, "123456").await;
        assert_eq!(reply.status, StatusCode::SERVICE_UNAVAILABLE, "{reply:?}");
        assert_eq!(error_of(&reply), "provider_unavailable");
    }
    // The session is still there, waiting for its second factor.
    still_needs_second_factor(&mut b, gw).await;
    let resend = post_resend_json(&mut b, gw).await;
    assert_eq!(resend.status, StatusCode::SERVICE_UNAVAILABLE, "{resend:?}");
    assert!(sent_to(&env.sandbox, TO).await.is_none());
}

// ---------------------------------------------------------------------------
// 5. Switching between Authy and Verify
// ---------------------------------------------------------------------------

/// The "Use another method" links of a verify page, as `method=` values.
fn switch_links(html: &str) -> Vec<String> {
    let Some(start) = html.find("id=\"switch\"") else {
        return Vec::new();
    };
    let block = &html[start..];
    let block = &block[..block.find("</p>").unwrap_or(block.len())];
    html_unescape(block)
        .split("href=\"")
        .skip(1)
        .filter_map(|link| {
            let link = &link[..link.find('"')?];
            let url = url::Url::parse(&format!("http://x{link}")).ok()?;
            url.query_pairs()
                .find(|(k, _)| k == "method")
                .map(|(_, v)| v.into_owned())
        })
        .collect()
}

#[tokio::test]
async fn a_user_switches_to_verify_and_it_comes_first_next_time() {
    let env = start_env(|setup, sandbox_url| {
        setup
            .set("auth.methods", vec!["authy", "verify"])
            .set("authy.api_key", API_KEY)
            .set("authy.api_url", sandbox_url)
            .set("authy.poll_interval", "1h");
    })
    .await;
    let gw = &env.gw;
    let sandbox = &env.sandbox;

    let mut b = logged_in(gw).await;
    let page = verify_json(&mut b, gw, None).await;
    assert_eq!(page["method"], "authy", "{page}");
    assert_eq!(page["methods"], json!(["authy", "verify"]), "{page}");
    assert_eq!(approvals(sandbox).len(), 1, "the Authy push went out");
    assert!(sent_to(sandbox, TO).await.is_none(), "no Verify code yet");
    let html = b.get(&portal_path("verify", &app_rd(gw))).await;
    assert!(html.body.contains("Use another method:"), "{}", html.body);
    assert_eq!(switch_links(&html.body), ["verify"]);

    // A wrong Authy code first: the count carries over the switch.
    let wrong = post_code_json(&mut b, gw, "0000000").await;
    assert_eq!(error_of(&wrong), "invalid_code", "{wrong:?}");

    let switched = verify_json(&mut b, gw, Some("verify")).await;
    assert_eq!(switched["method"], "verify", "{switched}");
    assert_eq!(switched["code_sent"], true, "{switched}");
    let code = code_sent_to(sandbox, TO).await;
    let wrong = post_code(&mut b, gw, other_than(&code)).await;
    assert!(
        wrong.body.contains("Wrong code. 3 tries left."),
        "switching does not reset the count: {}",
        wrong.body
    );
    let html = b
        .get(&format!(
            "{PREFIX}/verify?method=verify&{}",
            rd_query(&app_rd(gw))
        ))
        .await;
    assert!(html.body.contains("We sent you a code"), "{}", html.body);
    assert_eq!(switch_links(&html.body), ["authy"]);
    assert_eq!(verify_requests(sandbox, "start"), 1, "the page kept it");

    confirm_with(&mut b, gw, &code).await;
    assert_eq!(b.logout().await.status, StatusCode::SEE_OTHER);

    // Next login: Verify, used last, comes first and starts at once.
    let mut again = logged_in(gw).await;
    let page = verify_json(&mut again, gw, None).await;
    assert_eq!(page["method"], "verify", "{page}");
    assert_eq!(page["methods"], json!(["verify", "authy"]), "{page}");
    assert_eq!(page["code_sent"], true, "{page}");
    assert_eq!(approvals(sandbox).len(), 1, "no second push");
    let html = again.get(&portal_path("verify", &app_rd(gw))).await;
    assert_eq!(switch_links(&html.body), ["authy"]);
    let code = code_sent_to(sandbox, TO).await;
    confirm_with(&mut again, gw, &code).await;
}

#[tokio::test]
async fn a_user_pinned_to_authy_is_offered_nothing_else() {
    const BOB: &str = "bob@example.com";
    const BOB_PW: &str = "bob's long password";
    let env = start_env(|setup, sandbox_url| {
        setup
            .set("auth.methods", vec!["authy", "verify"])
            .set("authy.api_key", API_KEY)
            .set("authy.api_url", sandbox_url)
            .set("authy.poll_interval", "1h");
    })
    .await;
    let gw = &env.gw;
    let pinned = [
        "--country-code",
        COUNTRY_CODE,
        "--phone",
        "5557654321",
        "--second-factor",
        "authy",
    ];
    gw.setup()
        .add_user_with(BOB, "Bob", "", BOB_PW, &pinned)
        .await;
    // The running gateway picks the new user up within about a second.
    let mut found = None;
    for _ in 0..100 {
        let mut browser = gw.browser();
        if browser.post_login(BOB, BOB_PW, None).await.status == StatusCode::SEE_OTHER {
            found = Some(browser);
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut b = found.expect("bob can log in once the users file is reloaded");
    let page = verify_json(&mut b, gw, None).await;
    assert_eq!(page["method"], "authy", "{page}");
    assert_eq!(page["methods"], json!(["authy"]), "{page}");
    let asked = verify_json(&mut b, gw, Some("verify")).await;
    assert_eq!(asked["method"], "authy", "verify is not bob's: {asked}");
    assert!(sent_to(&env.sandbox, "+15557654321").await.is_none());
    let html = b.get(&portal_path("verify", &app_rd(gw))).await;
    assert!(!html.body.contains("Use another method"), "{}", html.body);
}

// ---------------------------------------------------------------------------
// Verify's own send limit
// ---------------------------------------------------------------------------

#[tokio::test]
async fn verify_send_limit_is_429_on_resend() {
    let env = start_env(|_, _| {}).await;
    let gw = &env.gw;
    let sandbox = &env.sandbox;
    // Verify allows five sends to one number in ten minutes; each new
    // session's verify page is one.
    for _ in 0..5 {
        let mut b = logged_in(gw).await;
        let page = verify_json(&mut b, gw, None).await;
        assert_eq!(page["code_sent"], true, "{page}");
    }
    let mut b = logged_in(gw).await;
    let page = verify_json(&mut b, gw, None).await;
    assert_eq!(
        page["code_sent"], false,
        "the sixth send was refused: {page}"
    );
    assert_eq!(page["push_failed"], true, "{page}");
    let resend = post_resend_json(&mut b, gw).await;
    assert_eq!(resend.status, StatusCode::TOO_MANY_REQUESTS, "{resend:?}");
    assert_eq!(error_of(&resend), "rate_limited");
    let retry: u64 = resend
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header");
    assert!(retry > 30, "Verify's own wait, not ours: {retry}");
    assert_eq!(verify_requests(sandbox, "start"), 7);
    // The last code sent still works for this session.
    let code = code_sent_to(sandbox, TO).await;
    confirm_with(&mut b, gw, &code).await;
}

// ---------------------------------------------------------------------------
// TOTP beside Verify
// ---------------------------------------------------------------------------

#[tokio::test]
async fn totp_enrollment_is_only_for_users_without_a_usable_factor() {
    const CAROL: &str = "carol@example.com";
    const CAROL_PW: &str = "carol's long password";
    let env = start_env(|setup, _| {
        setup.set("auth.methods", vec!["verify", "totp"]);
    })
    .await;
    let gw = &env.gw;

    // Alice has a phone, so Verify: no TOTP enrollment from a password.
    let mut b = logged_in(gw).await;
    let enroll = b.get(&portal_path("enroll/totp", &app_rd(gw))).await;
    assert_eq!(enroll.status, StatusCode::FORBIDDEN, "{enroll:?}");
    assert!(!enroll.body.contains("totp-secret"));
    let page = verify_json(&mut b, gw, None).await;
    assert_eq!(page["methods"], json!(["verify"]), "{page}");

    // Carol has no phone: the verify page sends her to the enrollment.
    gw.setup().add_user(CAROL, "Carol", "", CAROL_PW).await;
    let target = gw.url(&portal_path("enroll/totp", &app_rd(gw)));
    let mut sent = false;
    for _ in 0..100 {
        let mut c = gw.browser();
        if c.post_login(CAROL, CAROL_PW, None).await.status == StatusCode::SEE_OTHER {
            let reply = c.get(&portal_path("verify", &app_rd(gw))).await;
            assert_eq!(reply.status, StatusCode::SEE_OTHER, "{reply:?}");
            assert_eq!(reply.location(), target);
            sent = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(sent, "carol can log in once the users file is reloaded");
    assert!(
        sent_to(&env.sandbox, TO).await.is_some(),
        "alice's code only"
    );
}
