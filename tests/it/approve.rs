//! The `approve` policy end to end (docs/approval.md): the real gateway,
//! the Authy sandbox in this process and the echo upstream (which counts
//! what reaches it). A request an `approve` rule matches is held; it goes
//! upstream once, after the user approved that request, through the
//! one-time continue URL; never after a deny, a time-out, a replay, or for
//! another request or session.

use std::time::Duration;

use authgate::sandbox::{Sandbox, SandboxConfig};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

const API_KEY: &str = "authy-it-approve-key-0123456789";
const TRANSFER: &str = "amount=12.50&currency=EUR&to=Bob+%3Cb%3EBuilder%3C%2Fb%3E";

struct Env {
    upstream: Upstream,
    sandbox: Sandbox,
    gw: Gateway,
}

/// `/transfer` (POST) and `/report` (GET) need an approval; alice has a
/// phone (Authy push). No callbacks: the gateway asks the sandbox about
/// pushes itself (the login's every second, an approval's when looked at).
async fn start_env(tweak: impl FnOnce(&mut Setup)) -> Env {
    let upstream = Upstream::start().await;
    let config = SandboxConfig {
        callbacks_enabled: false,
        ..SandboxConfig::new(API_KEY)
    };
    let sandbox = Sandbox::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("the Authy sandbox starts");
    let mut setup = Setup::new(Some(&upstream.url()));
    setup
        .set("auth.second_factor", "required")
        .set("authy.api_key", API_KEY)
        .set("authy.api_url", sandbox.url())
        .set("authy.poll_interval", "1s")
        .set("access_control.rules", approve_rules());
    tweak(&mut setup);
    setup.write_config();
    let phone = ["--country-code", "1", "--phone", "5551234567"];
    setup
        .add_user_with(ALICE, ALICE_NAME, "a,b", ALICE_PW, &phone)
        .await;
    let gw = setup.start().await;
    Env {
        upstream,
        sandbox,
        gw,
    }
}

pub(crate) fn approve_rules() -> toml::Value {
    let rules = json!([
        {"path": "^/transfer", "methods": ["POST"], "policy": "approve",
         "approve": {"message": "Send {amount} {currency} to {to}",
                     "fields": {"amount": "form:amount", "currency": "form:currency",
                                "to": "form:to"}}},
        {"path": "^/report", "methods": ["GET"], "policy": "approve"},
        {"path": "^/api/pay", "policy": "approve",
         "approve": {"message": "Pay {sum}", "fields": {"sum": "json:/sum"}}},
    ]);
    toml::Value::try_from(rules).unwrap()
}

fn pushes(sandbox: &Sandbox) -> Vec<Value> {
    sandbox.snapshot()["approval_requests"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

fn newest_push(sandbox: &Sandbox) -> Value {
    pushes(sandbox).pop().expect("a push was sent")
}

async fn decide(sandbox: &Sandbox, uuid: &str, status: &str) {
    let resp = client()
        .post(format!("{}/_sandbox/api/approvals/{uuid}", sandbox.url()))
        .json(&json!({"status": status}))
        .send()
        .await
        .expect("sandbox control API");
    assert_eq!(resp.status(), StatusCode::OK, "decide {uuid} {status}");
}

/// Password, then the login push approved on the sandbox: two_factor.
async fn logged_in(env: &Env) -> Browser {
    let mut b = env.gw.browser();
    let rd = app_rd(&env.gw);
    let reply = b.post_login(ALICE, ALICE_PW, Some(&rd)).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "login: {reply:?}");
    let page = b.get(&portal_path("verify", &rd)).await;
    assert_eq!(page.status, StatusCode::OK, "verify page: {page:?}");
    let uuid = newest_push(&env.sandbox)["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    decide(&env.sandbox, &uuid, "approved").await;
    for _ in 0..60 {
        let status = b.get_json(&format!("{PREFIX}/status")).await;
        if status.json()["status"] == "approved" {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the login push was never found approved");
}

/// Posts the transfer form: 303 to the approval page; returns its path.
pub(crate) async fn held_transfer(b: &mut Browser, body: &'static str) -> String {
    let builder = b
        .request(Method::POST, "/transfer?from=savings")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body);
    let reply = b.send(builder).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "held: {reply:?}");
    let page = reply.location().to_owned();
    assert!(page.starts_with(&format!("{PREFIX}/approval/")), "{page}");
    page
}

/// Polls the approval's status until it is no longer pending.
async fn settled(b: &mut Browser, page: &str) -> String {
    for _ in 0..60 {
        let reply = b.get_json(&format!("{page}/status")).await;
        assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
        let status = reply.json()["status"].as_str().unwrap().to_owned();
        if status != "pending" {
            return status;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    panic!("the approval stayed pending");
}

/// POST to the continue URL with the CSRF token of the approval page
/// (its JSON carries one in every state).
pub(crate) async fn post_continue(b: &mut Browser, page: &str) -> Reply {
    let shown = b.get_json(page).await.json();
    let csrf = shown["csrf"].as_str().expect("a csrf token").to_owned();
    b.post_form(&format!("{page}/continue"), &[("csrf", &csrf)])
        .await
}

#[tokio::test]
async fn an_approved_transfer_reaches_the_upstream_once_byte_for_byte() {
    let env = start_env(|_| {}).await;
    let mut b = logged_in(&env).await;
    let hits = env.upstream.hits();
    let page = held_transfer(&mut b, TRANSFER).await;
    assert_eq!(env.upstream.hits(), hits, "held, not sent");

    let shown = b.get(&page).await;
    assert_eq!(shown.status, StatusCode::OK, "{shown:?}");
    assert!(shown.body.contains("Approve this action"), "{}", shown.body);
    assert!(
        shown
            .body
            .contains("Send 12.50 EUR to Bob &lt;b&gt;Builder&lt;&#x2f;b&gt;"),
        "the details, escaped: {}",
        shown.body
    );
    let push = newest_push(&env.sandbox);
    assert_eq!(push["message"], "Send 12.50 EUR to Bob <b>Builder</b>");
    assert_eq!(push["details"]["amount"], "12.50");
    assert_eq!(push["details"]["to"], "Bob <b>Builder</b>");
    assert_eq!(push["details"]["User"], ALICE);

    decide(&env.sandbox, push["uuid"].as_str().unwrap(), "approved").await;
    assert_eq!(settled(&mut b, &page).await, "approved");
    assert_eq!(env.upstream.hits(), hits, "approved, still not sent");

    let answer = post_continue(&mut b, &page).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    let echo = answer.echo();
    assert_eq!(echo.method(), "POST");
    assert_eq!(echo.uri(), "/transfer?from=savings");
    assert_eq!(echo.body(), TRANSFER, "byte for byte");
    assert_eq!(echo.header("remote-user").as_deref(), Some(ALICE));
    assert_eq!(echo.header("remote-groups").as_deref(), Some("a,b"));
    let id = page.rsplit('/').next().unwrap();
    assert_eq!(echo.header("authgate-approval").as_deref(), Some(id));
    assert!(
        !echo
            .header_all("cookie")
            .iter()
            .any(|c| c.contains(SESSION_COOKIE)),
        "the credential stays here"
    );
    assert_eq!(env.upstream.hits(), hits + 1);

    let replay = post_continue(&mut b, &page).await;
    assert_eq!(replay.status, StatusCode::CONFLICT, "{replay:?}");
    assert!(replay.body.contains("sent already"), "{}", replay.body);
    assert_eq!(
        env.upstream.hits(),
        hits + 1,
        "a replayed continue sends nothing"
    );
}

#[tokio::test]
async fn approving_one_request_never_releases_another_nor_for_another_session() {
    let env = start_env(|_| {}).await;
    let mut b = logged_in(&env).await;
    let a = held_transfer(&mut b, "amount=1&currency=EUR&to=A").await;
    let push_a = newest_push(&env.sandbox);
    let other = held_transfer(&mut b, "amount=2&currency=EUR&to=B").await;
    assert_ne!(a, other);
    let hits = env.upstream.hits();

    decide(&env.sandbox, push_a["uuid"].as_str().unwrap(), "approved").await;
    assert_eq!(settled(&mut b, &a).await, "approved");
    let status = b.get_json(&format!("{other}/status")).await;
    assert_eq!(
        status.json()["status"],
        "pending",
        "B is not approved by A's push"
    );
    let refused = post_continue(&mut b, &other).await;
    assert_eq!(refused.status, StatusCode::CONFLICT, "{refused:?}");
    assert_eq!(env.upstream.hits(), hits);

    // A second session of the same user cannot see or release A.
    let mut second = logged_in(&env).await;
    assert_eq!(second.get(&a).await.status, StatusCode::NOT_FOUND);
    let csrf = {
        let shown = b.get(&a).await;
        csrf_field(&shown.body).unwrap()
    };
    let stolen = second
        .post_form(&format!("{a}/continue"), &[("csrf", &csrf)])
        .await;
    assert!(
        matches!(stolen.status, StatusCode::NOT_FOUND | StatusCode::FORBIDDEN),
        "{stolen:?}"
    );
    assert_eq!(env.upstream.hits(), hits);

    let answer = post_continue(&mut b, &a).await;
    assert_eq!(answer.echo().body(), "amount=1&currency=EUR&to=A");
    assert_eq!(env.upstream.hits(), hits + 1);
}

#[tokio::test]
async fn a_denied_or_cancelled_request_never_reaches_the_upstream() {
    let env = start_env(|_| {}).await;
    let mut b = logged_in(&env).await;
    let hits = env.upstream.hits();
    let page = held_transfer(&mut b, TRANSFER).await;
    let push = newest_push(&env.sandbox);
    decide(&env.sandbox, push["uuid"].as_str().unwrap(), "denied").await;
    assert_eq!(settled(&mut b, &page).await, "denied");
    let shown = b.get(&page).await;
    assert!(shown.body.contains("was denied"), "{}", shown.body);
    assert_eq!(
        post_continue(&mut b, &page).await.status,
        StatusCode::CONFLICT
    );

    let cancelled = held_transfer(&mut b, TRANSFER).await;
    let shown = b.get(&cancelled).await;
    let csrf = csrf_field(&shown.body).unwrap();
    let reply = b
        .post_form(&format!("{cancelled}/cancel"), &[("csrf", &csrf)])
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{reply:?}");
    assert_eq!(settled(&mut b, &cancelled).await, "cancelled");
    assert_eq!(
        post_continue(&mut b, &cancelled).await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(env.upstream.hits(), hits);
}

#[tokio::test]
async fn an_expired_approval_sends_nothing() {
    let env = start_env(|s| {
        s.set("approval.timeout", "1s");
    })
    .await;
    let mut b = logged_in(&env).await;
    let hits = env.upstream.hits();
    let page = held_transfer(&mut b, TRANSFER).await;
    assert_eq!(newest_push(&env.sandbox)["seconds_to_expire"], 1);
    assert_eq!(settled(&mut b, &page).await, "expired");
    assert_eq!(
        post_continue(&mut b, &page).await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(env.upstream.hits(), hits);
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_and_nothing_is_held() {
    let env = start_env(|s| {
        s.set("approval.max_body", 1024);
    })
    .await;
    let mut b = logged_in(&env).await;
    let pushes_before = pushes(&env.sandbox).len();
    let big = format!("amount=1&to={}", "x".repeat(2000));
    let builder = b
        .request(Method::POST, "/transfer")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(big);
    let reply = b.send(builder).await;
    assert_eq!(reply.status, StatusCode::PAYLOAD_TOO_LARGE, "{reply:?}");
    // Chunked, with no length to refuse up front.
    let chunk = format!("190\r\n{}\r\n", "x".repeat(400));
    let request = format!(
        "POST /transfer HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nCookie: {}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n{}0\r\n\r\n",
        env.gw.setup().port,
        b.cookie_header(),
        chunk.repeat(4)
    );
    let reply = raw_request(env.gw.setup().port, request.as_bytes()).await;
    assert_eq!(reply.status, 413, "{reply:?}");
    assert_eq!(pushes(&env.sandbox).len(), pushes_before, "no push sent");
    assert_eq!(env.upstream.hits(), 0);
}

#[tokio::test]
async fn an_api_client_gets_202_then_the_app_answer_from_the_result_url() {
    let env = start_env(|_| {}).await;
    let mut b = logged_in(&env).await;
    let body = r#"{"sum":"99.00","note":"rent"}"#;
    let builder = b
        .request(Method::POST, "/api/pay")
        .header("accept", "application/json")
        .header("content-type", "application/json")
        .body(body);
    let accepted = b.send(builder).await;
    assert_eq!(accepted.status, StatusCode::ACCEPTED, "{accepted:?}");
    let ticket = accepted.json();
    assert_eq!(ticket["status"], "pending");
    let status_url = ticket["status_url"].as_str().unwrap().to_owned();
    let result_url = ticket["result_url"].as_str().unwrap().to_owned();
    let page_url = status_url.trim_end_matches("/status").to_owned();

    let shown = b.get_json(&page_url).await.json();
    assert_eq!(shown["summary"], "Pay 99.00", "{shown}");
    assert_eq!(shown["fields"]["sum"], "99.00");
    let csrf = shown["csrf"].as_str().unwrap().to_owned();
    assert_eq!(newest_push(&env.sandbox)["message"], "Pay 99.00");

    let early = b
        .send(
            b.request(Method::POST, &result_url)
                .header("accept", "application/json")
                .header("x-csrf-token", &csrf),
        )
        .await;
    assert_eq!(early.status, StatusCode::CONFLICT, "not approved yet");

    let uuid = newest_push(&env.sandbox)["uuid"]
        .as_str()
        .unwrap()
        .to_owned();
    decide(&env.sandbox, &uuid, "approved").await;
    assert_eq!(settled(&mut b, &page_url).await, "approved");
    let no_csrf = b
        .send(
            b.request(Method::POST, &result_url)
                .header("accept", "application/json"),
        )
        .await;
    assert_eq!(no_csrf.status, StatusCode::FORBIDDEN, "{no_csrf:?}");
    let result = b
        .send(
            b.request(Method::POST, &result_url)
                .header("accept", "application/json")
                .header("x-csrf-token", &csrf),
        )
        .await;
    assert_eq!(result.status, StatusCode::OK, "{result:?}");
    assert_eq!(result.echo().body(), body);
    assert_eq!(
        result.echo().header("content-type").as_deref(),
        Some("application/json")
    );
    assert_eq!(env.upstream.hits(), 1);
}

#[tokio::test]
async fn a_get_matched_by_approve_is_held_the_same_way() {
    let env = start_env(|_| {}).await;
    let mut b = logged_in(&env).await;
    let reply = b.get("/report?year=2026").await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{reply:?}");
    let page = reply.location().to_owned();
    let push = newest_push(&env.sandbox);
    assert_eq!(
        push["details"]["Request"],
        format!("GET 127.0.0.1:{}/report", env.gw.setup().port)
    );
    assert_eq!(env.upstream.hits(), 0);
    decide(&env.sandbox, push["uuid"].as_str().unwrap(), "approved").await;
    assert_eq!(settled(&mut b, &page).await, "approved");
    let echo = post_continue(&mut b, &page).await.echo();
    assert_eq!(echo.method(), "GET");
    assert_eq!(echo.uri(), "/report?year=2026");
    assert_eq!(echo.body(), "");
    assert_eq!(env.upstream.hits(), 1);
    // Other paths are not held.
    assert_eq!(b.get(APP_PATH).await.status, StatusCode::OK);
}

#[tokio::test]
async fn a_client_copy_of_the_approval_header_never_reaches_the_upstream() {
    let env = start_env(|_| {}).await;
    let mut b = logged_in(&env).await;
    let builder = b
        .request(Method::GET, APP_PATH)
        .header("authgate-approval", "forged")
        .header("Authgate_Approval", "forged");
    let echo = b.send(builder).await.echo();
    assert!(
        echo.header_all("authgate-approval").is_empty(),
        "{:?}",
        echo.0
    );
    assert!(
        echo.header_all("authgate_approval").is_empty(),
        "{:?}",
        echo.0
    );
}

/// TOTP only (no provider: every approval is by code), alice enrolled and
/// two_factor; the code of the login is returned with her app.
async fn totp_env(tweak: impl FnOnce(&mut Setup)) -> (Upstream, Gateway, Browser, TotpApp, String) {
    let upstream = Upstream::start().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    setup
        .set("auth.second_factor", "required")
        .set("access_control.rules", approve_rules());
    tweak(&mut setup);
    setup.add_alice().await;
    let gw = setup.start().await;
    let mut b = gw.browser();
    b.login(ALICE, ALICE_PW).await;
    let enroll = b.get(&portal_path("enroll/totp", &app_rd(&gw))).await;
    assert_eq!(enroll.status, StatusCode::OK, "{enroll:?}");
    let secret = element_text(&enroll.body, "code", "totp-secret").expect("the secret");
    let mut app = TotpApp::from_base32(&secret);
    let login_code = app.current_code().await;
    let csrf = csrf_field(&enroll.body).unwrap();
    let rd = app_rd(&gw);
    let reply = b
        .post_form(
            &format!("{PREFIX}/enroll/totp"),
            &[("code", &login_code), ("csrf", &csrf), ("rd", &rd)],
        )
        .await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{reply:?}");
    (upstream, gw, b, app, login_code)
}

/// The approval asks for a fresh code, and the one used for the login (the
/// same TOTP step) is refused by the reuse guard.
#[tokio::test]
async fn a_totp_user_approves_with_a_fresh_code_and_the_login_code_is_refused() {
    let (upstream, _gw, mut b, mut app, login_code) = totp_env(|_| {}).await;
    let page = held_transfer(&mut b, TRANSFER).await;
    let shown = b.get(&page).await;
    assert!(
        shown.body.contains("not the one you logged in with"),
        "{}",
        shown.body
    );
    let csrf = csrf_field(&shown.body).unwrap();
    let reused = b
        .post_form(&page, &[("code", &login_code), ("csrf", &csrf)])
        .await;
    assert_eq!(reused.status, StatusCode::UNAUTHORIZED, "{reused:?}");
    assert_eq!(settled_or_pending(&mut b, &page).await, "pending");
    let fresh = app.fresh_code().await;
    let approved = b
        .post_form(&page, &[("code", &fresh), ("csrf", &csrf)])
        .await;
    assert_eq!(approved.status, StatusCode::OK, "{approved:?}");
    assert_eq!(settled(&mut b, &page).await, "approved");
    assert_eq!(upstream.hits(), 0);
    let echo = post_continue(&mut b, &page).await.echo();
    assert_eq!(echo.body(), TRANSFER);
    assert_eq!(upstream.hits(), 1);
}

async fn settled_or_pending(b: &mut Browser, page: &str) -> String {
    let reply = b.get_json(&format!("{page}/status")).await;
    reply.json()["status"].as_str().unwrap().to_owned()
}

/// `check-config` on `setup`'s config: exit 1, and what it printed.
async fn refused_by_check_config(setup: &Setup) -> String {
    setup.write_config();
    let config = setup.config_path();
    let out = setup
        .run(
            &["check-config", "--config", config.to_str().unwrap()],
            "",
            &[],
        )
        .await;
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn check_config_refuses_approve_without_an_upstream_and_secret_fields() {
    let mut setup = Setup::new(None);
    setup.set("access_control.rules", approve_rules());
    let stderr = refused_by_check_config(&setup).await;
    assert!(
        stderr.contains("access_control.rules[0].policy"),
        "{stderr}"
    );

    let mut setup = Setup::new(Some("http://127.0.0.1:9"));
    let rules = json!([{"path": "^/pay", "policy": "approve",
        "approve": {"fields": {"card_pin": "form:pin"}}}]);
    setup.set(
        "access_control.rules",
        toml::Value::try_from(rules).unwrap(),
    );
    let stderr = refused_by_check_config(&setup).await;
    assert!(
        stderr.contains("access_control.rules[0].approve.fields.card_pin"),
        "{stderr}"
    );
}

/// With no push to expire on the phone, only the gateway's own
/// `approval.timeout` ends it; nothing is sent.
#[tokio::test]
async fn an_approval_past_its_timeout_expires_on_the_gateway_and_sends_nothing() {
    let (upstream, _gw, mut b, _app, _) = totp_env(|s| {
        s.set("approval.timeout", "1s");
    })
    .await;
    let page = held_transfer(&mut b, TRANSFER).await;
    assert_eq!(settled(&mut b, &page).await, "expired");
    assert_eq!(
        post_continue(&mut b, &page).await.status,
        StatusCode::CONFLICT
    );
    assert_eq!(upstream.hits(), 0);
}

/// 100 concurrent 1000-byte transfers of one session against 4096 bytes in
/// all: the bytes are reserved before the bodies are read, so exactly four
/// are held and the rest refused (503), never more.
#[tokio::test]
async fn a_burst_of_held_requests_never_passes_max_pending_bytes() {
    let (upstream, _gw, b, _app, _) = totp_env(|s| {
        s.set("approval.max_body", 1024)
            .set("approval.max_pending_bytes", 4096)
            .set("approval.max_per_session", 1000);
    })
    .await;
    let body = format!("amount=1&to={}", "x".repeat(1000 - 12));
    let sends = (0..100).map(|_| {
        b.request(Method::POST, "/transfer")
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()
    });
    let statuses: Vec<StatusCode> = futures_util::future::join_all(sends)
        .await
        .into_iter()
        .map(|r| r.expect("an answer").status())
        .collect();
    let held = statuses
        .iter()
        .filter(|s| **s == StatusCode::SEE_OTHER)
        .count();
    let full = statuses
        .iter()
        .filter(|s| **s == StatusCode::SERVICE_UNAVAILABLE)
        .count();
    assert_eq!((held, full), (4, 96), "{statuses:?}");
    assert_eq!(upstream.hits(), 0);
}
