//! Built-in TOTP end to end, with a config that has no Authy and no Verify
//! at all (`auth.methods` left out, so TOTP is the default): enrollment at
//! the first login, codes computed here as an authenticator app would
//! (RFC 6238 via totp-rs, see `support`), each code taken once, five wrong
//! codes ending the pending session, admin enrollment and `authgate user
//! reset-2fa`, the issuer in the otpauth URI, and the secret surviving a
//! restart sealed in the store.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::Value;

use crate::support::*;

const BOB: &str = "bob@example.com";
const BOB_PW: &str = "bob's long password";

/// The users-file watcher polls about once a second; 20 s is generous.
const RELOAD_TRIES: usize = 100;
const RELOAD_EVERY: Duration = Duration::from_millis(200);

// ---------------------------------------------------------------------------
// Set-up
// ---------------------------------------------------------------------------

struct Env {
    upstream: Upstream,
    gw: Gateway,
}

/// The second factor required, no `[authy]`, no `[verify]`, no
/// `auth.methods`: TOTP only. Alice has no phone.
async fn start_env(tweak: impl FnOnce(&mut Setup)) -> Env {
    let upstream = Upstream::start().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    setup.set("auth.second_factor", "required");
    tweak(&mut setup);
    setup.add_alice().await;
    let gw = setup.start().await;
    Env { upstream, gw }
}

// ---------------------------------------------------------------------------
// Browser steps
// ---------------------------------------------------------------------------

/// Password login, then the app: 302 to the verify page.
async fn logged_in(gw: &Gateway, email: &str, password: &str) -> Browser {
    let mut b = gw.browser();
    b.login(email, password).await;
    let reply = b.get(APP_PATH).await;
    assert_eq!(reply.status, StatusCode::FOUND, "{reply:?}");
    assert_eq!(
        reply.location(),
        gw.url(&portal_path("verify", &app_rd(gw))),
        "a one_factor session is sent to the second factor"
    );
    b
}

/// The verify page of a user with no second factor: 303 to the enrollment
/// page, which is then loaded.
async fn sent_to_enrollment(gw: &Gateway, b: &mut Browser) -> Reply {
    let reply = b.get(&portal_path("verify", &app_rd(gw))).await;
    assert_eq!(
        reply.status,
        StatusCode::SEE_OTHER,
        "the verify page sends a user without a factor to the enrollment: {reply:?}"
    );
    assert_eq!(
        reply.location(),
        gw.url(&portal_path("enroll/totp", &app_rd(gw)))
    );
    let page = b.get(&portal_path("enroll/totp", &app_rd(gw))).await;
    assert_eq!(page.status, StatusCode::OK, "enrollment page: {page:?}");
    page
}

/// What the enrollment page shows.
struct EnrollPage {
    secret_text: String,
    uri: String,
    csrf: String,
}

fn enroll_page(html: &str) -> EnrollPage {
    EnrollPage {
        secret_text: element_text(html, "code", "totp-secret")
            .unwrap_or_else(|| panic!("no #totp-secret on the page: {html}")),
        uri: element_text(html, "code", "totp-uri")
            .unwrap_or_else(|| panic!("no #totp-uri on the page: {html}")),
        csrf: csrf_field(html).expect("a csrf field on the enrollment page"),
    }
}

async fn post_enroll(b: &mut Browser, gw: &Gateway, csrf: &str, code: &str) -> Reply {
    let rd = app_rd(gw);
    b.post_form(
        &format!("{PREFIX}/enroll/totp"),
        &[("code", code), ("csrf", csrf), ("rd", &rd)],
    )
    .await
}

async fn post_enroll_json(b: &mut Browser, gw: &Gateway, csrf: &str, code: &str) -> Reply {
    let rd = app_rd(gw);
    b.post_form_json(
        &format!("{PREFIX}/enroll/totp"),
        &[("code", code), ("csrf", csrf), ("rd", &rd)],
    )
    .await
}

/// Posts `code` to the verify form and checks the step up.
async fn code_steps_up(b: &mut Browser, gw: &Gateway, code: &str) {
    let old = session_of(b);
    let reply = post_code(b, gw, code).await;
    stepped_up(gw, &reply, &old);
}

/// 303 to the app with a new session cookie (not `old`); returns it.
fn stepped_up(gw: &Gateway, reply: &Reply, old: &str) -> String {
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{reply:?}");
    assert_eq!(reply.location(), app_rd(gw));
    let new = set_cookie_value(reply, SESSION_COOKIE)
        .unwrap_or_else(|| panic!("a new session cookie: {reply:?}"));
    assert!(!new.is_empty());
    assert_ne!(new, old, "the step up issues a new session id");
    new
}

async fn reaches_app_as(b: &mut Browser, user: &str) {
    let echo = b.get(APP_PATH).await.echo();
    assert_eq!(echo.header("remote-user").as_deref(), Some(user));
}

/// The session is gone: 302 to the login page.
async fn sent_to_login(b: &mut Browser, gw: &Gateway) {
    let reply = b.get(APP_PATH).await;
    assert_eq!(reply.status, StatusCode::FOUND, "{reply:?}");
    assert_eq!(reply.location(), login_redirect(&gw.base(), APP_PATH));
}

/// The verify page as JSON: a TOTP code form for an enrolled user.
async fn totp_form(b: &mut Browser, gw: &Gateway) -> Value {
    let reply = b.get_json(&portal_path("verify", &app_rd(gw))).await;
    assert_eq!(reply.status, StatusCode::OK, "verify page: {reply:?}");
    let page = reply.json();
    assert_eq!(page["method"], "totp", "{page}");
    assert_eq!(page["methods"], serde_json::json!(["totp"]), "{page}");
    assert_eq!(page["code_sent"], false, "TOTP sends nothing: {page}");
    page
}

/// Logs in and enrolls through the enrollment page with a code of the
/// current step (`current`) or the oldest acceptable one; returns the
/// two_factor browser and the app holding the secret.
async fn enroll(gw: &Gateway, email: &str, password: &str, current: bool) -> (Browser, TotpApp) {
    let mut b = logged_in(gw, email, password).await;
    let page = enroll_page(&sent_to_enrollment(gw, &mut b).await.body);
    let mut app = TotpApp::from_base32(&page.secret_text);
    let code = if current {
        app.current_code().await
    } else {
        app.fresh_code().await
    };
    let old = session_of(&b);
    let reply = post_enroll(&mut b, gw, &page.csrf, &code).await;
    stepped_up(gw, &reply, &old);
    (b, app)
}

// ---------------------------------------------------------------------------
// 1. Enrollment at the first login
// ---------------------------------------------------------------------------

#[tokio::test]
async fn first_login_enrolls_totp_and_reaches_the_app() {
    let env = start_env(|_| {}).await;
    let gw = &env.gw;
    let mut b = logged_in(gw, ALICE, ALICE_PW).await;
    let page = sent_to_enrollment(gw, &mut b).await;
    assert!(page.body.contains("<svg"), "an inline SVG QR code");
    let shown = enroll_page(&page.body);

    // 160 bits of base32 (32 characters), shown in groups of four.
    let groups: Vec<&str> = shown.secret_text.split(' ').collect();
    assert_eq!(groups.len(), 8, "{:?}", shown.secret_text);
    assert!(
        groups.iter().all(|g| g.len() == 4
            && g.chars()
                .all(|c| c.is_ascii_uppercase() || ('2'..='7').contains(&c))),
        "{:?}",
        shown.secret_text
    );
    let base32 = shown.secret_text.replace(' ', "");
    assert_eq!(base32_decode(&base32).len(), 20);
    let uri = url::Url::parse(&shown.uri).expect("the otpauth URI parses");
    assert_eq!(uri.scheme(), "otpauth");
    assert_eq!(uri.host_str(), Some("totp"));
    assert_eq!(uri.path(), "/authgate:alice%40example.com");
    let query: Vec<(String, String)> = uri.query_pairs().into_owned().collect();
    assert!(
        query.contains(&("secret".into(), base32.clone())),
        "{query:?}"
    );
    assert!(query.contains(&("issuer".into(), "authgate".into())));

    // A reload and the JSON variant show the same pending secret.
    let again = enroll_page(&b.get(&portal_path("enroll/totp", &app_rd(gw))).await.body);
    assert_eq!(again.secret_text, shown.secret_text);
    let json = b.get_json(&portal_path("enroll/totp", &app_rd(gw))).await;
    assert_eq!(json.status, StatusCode::OK, "{json:?}");
    let json = json.json();
    assert_eq!(json["secret"], base32.as_str(), "{json}");
    assert_eq!(json["uri"], shown.uri.as_str());
    assert_eq!(json["was_reset"], false);
    assert!(json["csrf"].as_str().is_some_and(|c| !c.is_empty()));

    // A pending enrollment grants nothing yet.
    still_needs_second_factor(&mut b, gw).await;
    let hits = env.upstream.hits();

    let mut app = TotpApp::from_base32(&shown.secret_text);
    let old = session_of(&b);
    let reply = post_enroll(&mut b, gw, &shown.csrf, &app.fresh_code().await).await;
    stepped_up(gw, &reply, &old);
    reaches_app_as(&mut b, ALICE).await;
    assert_eq!(env.upstream.hits(), hits + 1);

    // The password-only id ended with the step up.
    let mut stale = gw.browser();
    stale.set_cookie_value(SESSION_COOKIE, &old);
    sent_to_login(&mut stale, gw).await;

    // The next login asks for a TOTP code instead of enrolling again.
    let mut next = logged_in(gw, ALICE, ALICE_PW).await;
    totp_form(&mut next, gw).await;
    let html = next.get(&portal_path("verify", &app_rd(gw))).await;
    assert_eq!(html.status, StatusCode::OK);
    assert!(
        html.body.contains("authenticator app") && !html.body.contains("totp-secret"),
        "the code form, not the enrollment: {}",
        html.body
    );
    code_steps_up(&mut next, gw, &app.fresh_code().await).await;
    reaches_app_as(&mut next, ALICE).await;
}

// ---------------------------------------------------------------------------
// 2. A code is taken once
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_replayed_code_is_refused_and_the_next_steps_code_works() {
    let env = start_env(|_| {}).await;
    let gw = &env.gw;
    // The enrollment takes the current step: its replay stays inside the
    // ±1 step window for at least 30 s.
    let (mut first, mut app) = enroll(gw, ALICE, ALICE_PW, true).await;
    let used = app.last_step.unwrap();
    assert_eq!(first.logout().await.status, StatusCode::SEE_OTHER);

    let mut b = logged_in(gw, ALICE, ALICE_PW).await;
    totp_form(&mut b, gw).await;
    let replay = post_code_json(&mut b, gw, &app.last_code()).await;
    assert!(
        totp_step_now() <= used + 1,
        "the replay was still inside the code's window"
    );
    assert_eq!(replay.status, StatusCode::UNAUTHORIZED, "{replay:?}");
    assert_eq!(replay.json()["error"], "invalid_code", "{replay:?}");
    still_needs_second_factor(&mut b, gw).await;

    // The code of the next step is accepted already (one step of drift).
    code_steps_up(&mut b, gw, &app.fresh_code().await).await;
    reaches_app_as(&mut b, ALICE).await;
}

#[tokio::test]
async fn a_code_confirms_one_session_only() {
    let env = start_env(|_| {}).await;
    let gw = &env.gw;
    let (_enrolled, mut app) = enroll(gw, ALICE, ALICE_PW, false).await;

    let mut a = logged_in(gw, ALICE, ALICE_PW).await;
    let mut b = logged_in(gw, ALICE, ALICE_PW).await;
    totp_form(&mut a, gw).await;
    totp_form(&mut b, gw).await;

    let code = app.fresh_code().await;
    let old_a = session_of(&a);
    let reply = post_code(&mut a, gw, &code).await;
    stepped_up(gw, &reply, &old_a);

    let refused = post_code(&mut b, gw, &code).await;
    assert_eq!(
        refused.status,
        StatusCode::UNAUTHORIZED,
        "the same code in another session: {refused:?}"
    );
    assert!(
        refused.body.contains("Wrong code. 4 tries left."),
        "{}",
        refused.body
    );
    still_needs_second_factor(&mut b, gw).await;

    let old_b = session_of(&b);
    let reply = post_code(&mut b, gw, &app.fresh_code().await).await;
    stepped_up(gw, &reply, &old_b);
    reaches_app_as(&mut a, ALICE).await;
    reaches_app_as(&mut b, ALICE).await;
}

// ---------------------------------------------------------------------------
// 3. Five wrong codes
// ---------------------------------------------------------------------------

/// The fifth wrong code: 401 `too_many_attempts` and the cookie cleared.
fn session_ended(reply: &Reply) {
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
    assert_eq!(reply.json()["error"], "too_many_attempts", "{reply:?}");
    let cleared = reply
        .set_cookie(SESSION_COOKIE)
        .unwrap_or_else(|| panic!("the session cookie is cleared: {reply:?}"));
    assert!(
        set_cookie_value(reply, SESSION_COOKIE).is_some_and(|v| v.is_empty())
            || has_attribute(&cleared, "Max-Age=0"),
        "{cleared}"
    );
}

#[tokio::test]
async fn five_wrong_codes_end_the_pending_session() {
    let env = start_env(|_| {}).await;
    let gw = &env.gw;

    // During the enrollment.
    let mut b = logged_in(gw, ALICE, ALICE_PW).await;
    let page = enroll_page(&sent_to_enrollment(gw, &mut b).await.body);
    let mut pending = TotpApp::from_base32(&page.secret_text);
    let wrong = wrong_totp_code(&pending.secret);
    let old = session_of(&b);
    for left in (1..=4).rev() {
        let reply = post_enroll(&mut b, gw, &page.csrf, &wrong).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
        assert!(
            reply
                .body
                .contains(&format!("Wrong code. {left} tries left.")),
            "{}",
            reply.body
        );
        let shown = enroll_page(&reply.body);
        assert_eq!(shown.secret_text, page.secret_text, "the same secret again");
    }
    session_ended(&post_enroll_json(&mut b, gw, &page.csrf, &wrong).await);
    assert_eq!(b.cookie(SESSION_COOKIE), None);
    let mut stale = gw.browser();
    stale.set_cookie_value(SESSION_COOKIE, &old);
    let late = post_enroll(&mut stale, gw, &page.csrf, &pending.fresh_code().await).await;
    assert_ne!(late.status, StatusCode::SEE_OTHER, "{late:?}");
    sent_to_login(&mut stale, gw).await;

    // The enrollment itself still works from a new login.
    let (_enrolled, mut app) = enroll(gw, ALICE, ALICE_PW, false).await;

    // On the verify page of an enrolled user.
    let mut b = logged_in(gw, ALICE, ALICE_PW).await;
    totp_form(&mut b, gw).await;
    let wrong = wrong_totp_code(&app.secret);
    let old = session_of(&b);
    for left in (1..=4).rev() {
        let reply = post_code_json(&mut b, gw, &wrong).await;
        assert_eq!(reply.status, StatusCode::UNAUTHORIZED, "{reply:?}");
        assert_eq!(
            reply.json()["error"],
            "invalid_code",
            "{left} left: {reply:?}"
        );
    }
    session_ended(&post_code_json(&mut b, gw, &wrong).await);
    let mut stale = gw.browser();
    stale.set_cookie_value(SESSION_COOKIE, &old);
    let late = post_code(&mut stale, gw, &app.fresh_code().await).await;
    assert_ne!(late.status, StatusCode::SEE_OTHER, "{late:?}");
    sent_to_login(&mut stale, gw).await;
}

#[tokio::test]
async fn a_concurrent_burst_of_wrong_codes_checks_at_most_five() {
    let env = start_env(|_| {}).await;
    let gw = &env.gw;

    // During the enrollment.
    let mut b = logged_in(gw, ALICE, ALICE_PW).await;
    let page = enroll_page(&sent_to_enrollment(gw, &mut b).await.body);
    let pending = TotpApp::from_base32(&page.secret_text);
    let wrong = wrong_totp_code(&pending.secret);
    let path = format!("{PREFIX}/enroll/totp");
    let answers = code_burst(&b, gw, &path, &page.csrf, &wrong, 40).await;
    let checked = checked_codes(&answers);
    assert!(
        (1..=5).contains(&checked),
        "{checked} codes checked: {answers:?}"
    );

    // On the verify page of an enrolled user.
    let (_enrolled, app) = enroll(gw, ALICE, ALICE_PW, false).await;
    let mut b = logged_in(gw, ALICE, ALICE_PW).await;
    totp_form(&mut b, gw).await;
    let wrong = wrong_totp_code(&app.secret);
    let csrf = b.csrf().await;
    let path = format!("{PREFIX}/verify");
    let answers = code_burst(&b, gw, &path, &csrf, &wrong, 40).await;
    let checked = checked_codes(&answers);
    assert!(
        (1..=5).contains(&checked),
        "{checked} codes checked: {answers:?}"
    );
}

// ---------------------------------------------------------------------------
// 4. No second enrollment from a password; admin enrollment; reset-2fa
// ---------------------------------------------------------------------------

async fn enrollment_refused(b: &mut Browser, gw: &Gateway) {
    let page = b.get(&portal_path("enroll/totp", &app_rd(gw))).await;
    assert_eq!(page.status, StatusCode::FORBIDDEN, "{page:?}");
    assert!(!page.body.contains("totp-secret"), "{}", page.body);
    let json = b.get_json(&portal_path("enroll/totp", &app_rd(gw))).await;
    assert_eq!(json.status, StatusCode::FORBIDDEN, "{json:?}");
    assert_eq!(json.json()["error"], "no_second_factor", "{json:?}");
    assert!(json.json()["secret"].is_null());
}

/// Logs in until the verify page sends `email` to the enrollment (the
/// gateway picks up the users file within about a second).
async fn enrollment_after_reload(gw: &Gateway, email: &str, password: &str) -> Browser {
    let target = gw.url(&portal_path("enroll/totp", &app_rd(gw)));
    let mut found = None;
    for _ in 0..RELOAD_TRIES {
        let mut b = gw.browser();
        b.login(email, password).await;
        let reply = b.get(&portal_path("verify", &app_rd(gw))).await;
        if reply.status == StatusCode::SEE_OTHER && reply.location() == target {
            found = Some(b);
            break;
        }
        tokio::time::sleep(RELOAD_EVERY).await;
    }
    found.unwrap_or_else(|| {
        panic!(
            "the reset did not send {email} to the enrollment; stderr:\n{}",
            gw.stderr()
        )
    })
}

/// The next wall-clock second: an enrollment and a reset in different
/// seconds (the reset is kept with one-second precision).
async fn next_second() {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap();
    let rest = 1_000 - u64::from(now.subsec_millis()) + 20;
    tokio::time::sleep(Duration::from_millis(rest)).await;
}

#[tokio::test]
async fn a_user_with_totp_cannot_enroll_again_until_an_admin_resets_them() {
    let env = start_env(|_| {}).await;
    let gw = &env.gw;
    let (_enrolled, mut old_app) = enroll(gw, ALICE, ALICE_PW, false).await;

    // A password-only session cannot replace the factor.
    let mut b = logged_in(gw, ALICE, ALICE_PW).await;
    enrollment_refused(&mut b, gw).await;
    let csrf = b.csrf().await;
    let forged = post_enroll(&mut b, gw, &csrf, &old_app.last_code()).await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{forged:?}");
    totp_form(&mut b, gw).await;

    next_second().await;
    gw.setup().reset_2fa(ALICE).await;
    let mut b = enrollment_after_reload(gw, ALICE, ALICE_PW).await;
    let page = b.get(&portal_path("enroll/totp", &app_rd(gw))).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(
        page.body
            .contains("An administrator reset your second factor"),
        "{}",
        page.body
    );
    let json = b
        .get_json(&portal_path("enroll/totp", &app_rd(gw)))
        .await
        .json();
    assert_eq!(json["was_reset"], true, "{json}");
    let shown = enroll_page(&page.body);
    assert_ne!(
        shown.secret_text.replace(' ', ""),
        old_app.base32,
        "a new secret"
    );

    // The old app's codes no longer count, on either form.
    let old_code = old_app.fresh_code().await;
    let on_verify = post_code(&mut b, gw, &old_code).await;
    assert_ne!(on_verify.status, StatusCode::SEE_OTHER, "{on_verify:?}");
    assert!(on_verify.status.is_client_error(), "{on_verify:?}");
    let on_enroll = post_enroll(&mut b, gw, &shown.csrf, &old_code).await;
    assert_eq!(on_enroll.status, StatusCode::UNAUTHORIZED, "{on_enroll:?}");
    still_needs_second_factor(&mut b, gw).await;

    let mut new_app = TotpApp::from_base32(&shown.secret_text);
    let old = session_of(&b);
    let reply = post_enroll(&mut b, gw, &shown.csrf, &new_app.fresh_code().await).await;
    stepped_up(gw, &reply, &old);
    reaches_app_as(&mut b, ALICE).await;

    // From now on the new secret counts and the old one does not.
    let mut next = logged_in(gw, ALICE, ALICE_PW).await;
    totp_form(&mut next, gw).await;
    let refused = post_code(&mut next, gw, &old_app.fresh_code().await).await;
    assert_eq!(refused.status, StatusCode::UNAUTHORIZED, "{refused:?}");
    code_steps_up(&mut next, gw, &new_app.fresh_code().await).await;
    // And enrolling yet again is refused once more.
    let mut again = logged_in(gw, ALICE, ALICE_PW).await;
    enrollment_refused(&mut again, gw).await;
}

/// `second_factor_reset` of `email` in the users file.
fn reset_time(setup: &Setup, email: &str) -> Option<i64> {
    let text = std::fs::read_to_string(setup.path("users.toml")).expect("the users file");
    let users: toml::Table = toml::from_str(&text).expect("the users file parses");
    users["user"]
        .as_array()?
        .iter()
        .find(|u| u["email"].as_str() == Some(email))?
        .get("second_factor_reset")?
        .as_integer()
}

fn unix_secs() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64
}

/// An admin who resets a user right after the user enrolled (in the same
/// wall-clock second, as a script or a quick admin does) must still reset
/// them: the reset is the newer event.
#[tokio::test]
async fn a_reset_in_the_second_of_the_enrollment_still_counts() {
    let env = start_env(|_| {}).await;
    let gw = &env.gw;
    let mut b = logged_in(gw, ALICE, ALICE_PW).await;
    for _attempt in 0..3 {
        let page = enroll_page(&sent_to_enrollment(gw, &mut b).await.body);
        let mut app = TotpApp::from_base32(&page.secret_text);
        let code = app.fresh_code().await;
        next_second().await;
        let enrolled = unix_secs();
        let old = session_of(&b);
        let reply = post_enroll(&mut b, gw, &page.csrf, &code).await;
        stepped_up(gw, &reply, &old);
        gw.setup().reset_2fa(ALICE).await;
        let same_second = reset_time(gw.setup(), ALICE) == Some(enrolled);
        if !same_second {
            // A slow run: not the case under test; enroll again and retry.
            b = enrollment_after_reload(gw, ALICE, ALICE_PW).await;
            continue;
        }
        // The reset must win: the next login enrolls again, with the notice.
        let mut next = enrollment_after_reload(gw, ALICE, ALICE_PW).await;
        let page = next.get(&portal_path("enroll/totp", &app_rd(gw))).await;
        assert!(
            page.body
                .contains("An administrator reset your second factor"),
            "{}",
            page.body
        );
        return;
    }
    panic!("could not enroll and reset within one second in 3 attempts");
}

#[tokio::test]
async fn with_admin_enrollment_only_a_reset_user_may_enroll() {
    let env = start_env(|s| {
        s.set("totp.enrollment", "admin");
    })
    .await;
    let gw = &env.gw;
    gw.setup().add_user(BOB, "Bob", "", BOB_PW).await;

    // No factor and no reset: no enrollment page, the no-factor error.
    let mut b = logged_in(gw, ALICE, ALICE_PW).await;
    let verify = b.get(&portal_path("verify", &app_rd(gw))).await;
    assert_eq!(verify.status, StatusCode::FORBIDDEN, "{verify:?}");
    assert!(
        verify.body.contains("No second factor is set up"),
        "{}",
        verify.body
    );
    let json = b.get_json(&portal_path("verify", &app_rd(gw))).await;
    assert_eq!(json.status, StatusCode::FORBIDDEN, "{json:?}");
    assert_eq!(json.json()["error"], "no_second_factor");
    enrollment_refused(&mut b, gw).await;
    let csrf = b.csrf().await;
    let forged = post_enroll(&mut b, gw, &csrf, "123456").await;
    assert_eq!(forged.status, StatusCode::FORBIDDEN, "{forged:?}");
    still_needs_second_factor(&mut b, gw).await;

    gw.setup().reset_2fa(ALICE).await;
    let mut b = enrollment_after_reload(gw, ALICE, ALICE_PW).await;
    let page = b.get(&portal_path("enroll/totp", &app_rd(gw))).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(
        page.body
            .contains("An administrator reset your second factor"),
        "{}",
        page.body
    );
    let shown = enroll_page(&page.body);
    let mut app = TotpApp::from_base32(&shown.secret_text);
    let old = session_of(&b);
    let reply = post_enroll(&mut b, gw, &shown.csrf, &app.fresh_code().await).await;
    stepped_up(gw, &reply, &old);
    reaches_app_as(&mut b, ALICE).await;

    // Enrolled now: a password-only session may not enroll again, and the
    // verify page asks for the code.
    let mut next = logged_in(gw, ALICE, ALICE_PW).await;
    enrollment_refused(&mut next, gw).await;
    totp_form(&mut next, gw).await;

    // Bob, never reset, is still refused.
    let mut bob = logged_in(gw, BOB, BOB_PW).await;
    enrollment_refused(&mut bob, gw).await;
}

// ---------------------------------------------------------------------------
// 5. The issuer
// ---------------------------------------------------------------------------

#[tokio::test]
async fn the_otpauth_uri_names_the_configured_issuer() {
    const ISSUER: &str = "ACME Ops & Co";
    let env = start_env(|s| {
        s.set("totp.issuer", ISSUER);
    })
    .await;
    let gw = &env.gw;
    let mut b = logged_in(gw, ALICE, ALICE_PW).await;
    let page = sent_to_enrollment(gw, &mut b).await;
    assert!(
        page.body.contains("<strong>ACME Ops &amp; Co</strong>"),
        "the issuer named for typing the key in by hand: {}",
        page.body
    );
    let shown = enroll_page(&page.body);
    let uri = url::Url::parse(&shown.uri).expect("the otpauth URI parses");
    assert_eq!(uri.scheme(), "otpauth");
    assert_eq!(uri.path(), "/ACME%20Ops%20%26%20Co:alice%40example.com");
    let query: Vec<(String, String)> = uri.query_pairs().into_owned().collect();
    for expected in [
        ("issuer", ISSUER.to_owned()),
        ("secret", shown.secret_text.replace(' ', "")),
        ("algorithm", "SHA1".to_owned()),
        ("digits", "6".to_owned()),
        ("period", "30".to_owned()),
    ] {
        assert!(
            query.contains(&(expected.0.to_owned(), expected.1.clone())),
            "{expected:?} in {query:?}"
        );
    }
    let json = b
        .get_json(&portal_path("enroll/totp", &app_rd(gw)))
        .await
        .json();
    assert_eq!(json["uri"], shown.uri.as_str());

    // The issuer changes nothing about the codes.
    let mut app = TotpApp::from_base32(&shown.secret_text);
    let old = session_of(&b);
    let reply = post_enroll(&mut b, gw, &shown.csrf, &app.fresh_code().await).await;
    stepped_up(gw, &reply, &old);
}

// ---------------------------------------------------------------------------
// 6. A restart keeps the enrollment; the secret is sealed at rest
// ---------------------------------------------------------------------------

/// Every regular file under `dir`, read whole.
fn files_under(dir: &std::path::Path) -> Vec<(std::path::PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(next) = todo.pop() {
        for entry in std::fs::read_dir(&next).expect("read the store directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                out.push((path.clone(), std::fs::read(&path).unwrap_or_default()));
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn a_restart_keeps_the_enrollment_sealed_in_the_store() {
    let mut env = start_env(|s| {
        s.set(
            "totp.encryption_key",
            "a-separate-totp-sealing-key-0123456789abcdef",
        );
    })
    .await;
    let (_enrolled, mut app) = enroll(&env.gw, ALICE, ALICE_PW, false).await;
    let status = env.gw.stop().await;
    assert!(status.success(), "graceful stop: {status:?}");

    let store = env.gw.setup().path("data");
    let files = files_under(&store);
    // The search below means something: sled keeps the record readable
    // (no compression), and it is there, under the user's email.
    assert!(
        files
            .iter()
            .any(|(_, bytes)| contains(bytes, ALICE.as_bytes()) && contains(bytes, b"sealed")),
        "the TOTP record is in the store files"
    );
    let lower = app.base32.to_ascii_lowercase();
    for (path, bytes) in &files {
        for (what, needle) in [
            ("the base32 secret", app.base32.as_bytes()),
            ("the base32 secret in lower case", lower.as_bytes()),
            ("the raw secret", app.secret.as_slice()),
        ] {
            assert!(
                !contains(bytes, needle),
                "{} holds {what} in the clear",
                path.display()
            );
        }
    }

    env.gw.restart().await;
    let gw = &env.gw;
    let mut b = logged_in(gw, ALICE, ALICE_PW).await;
    totp_form(&mut b, gw).await;
    code_steps_up(&mut b, gw, &app.fresh_code().await).await;
    reaches_app_as(&mut b, ALICE).await;
    assert!(env.upstream.hits() >= 1);
}

/// `authgate store copy --to TARGET` for the stopped gateway; must work.
async fn store_copy(gw: &Gateway, to: &str) {
    gw.setup().write_config();
    let config = gw.setup().config_path();
    let args = [
        "store",
        "copy",
        "--config",
        config.to_str().unwrap(),
        "--to",
        to,
    ];
    let out = gw.setup().run(&args, "", &[]).await;
    assert_success(&out, &format!("store copy --to {to}"));
}

#[tokio::test]
async fn a_totp_user_moves_to_redis_and_back_without_enrolling_again() {
    let mut env = start_env(|_| {}).await;
    let (_enrolled, mut app) = enroll(&env.gw, ALICE, ALICE_PW, false).await;
    env.gw.stop().await;

    // `[store.redis]` (its key prefix) first: `store copy` writes with it.
    let redis = crate::ha::Redis::start();
    env.gw
        .setup_mut()
        .set("store.redis", crate::ha::plain(&redis));
    store_copy(&env.gw, &redis.url()).await;
    env.gw.setup_mut().set("store.backend", "redis");
    env.gw.restart().await;
    logs_in_with_a_code(&env.gw, &mut app).await;

    env.gw.stop().await;
    // Into an empty sled store: a copy never merges.
    std::fs::remove_dir_all(env.gw.setup().path("data")).unwrap();
    store_copy(&env.gw, "sled").await;
    env.gw.setup_mut().set("store.backend", "sled");
    env.gw.restart().await;
    logs_in_with_a_code(&env.gw, &mut app).await;
}

/// Password, then the TOTP form (not the enrollment), then the app.
async fn logs_in_with_a_code(gw: &Gateway, app: &mut TotpApp) {
    let mut b = logged_in(gw, ALICE, ALICE_PW).await;
    totp_form(&mut b, gw).await;
    code_steps_up(&mut b, gw, &app.fresh_code().await).await;
    reaches_app_as(&mut b, ALICE).await;
}
