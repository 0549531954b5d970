//! The portal's pages defend themselves: every answer under the prefix
//! (pages, errors, JSON, the static files) carries the Content-Security-
//! Policy, `X-Frame-Options`, `X-Content-Type-Options` and
//! `Referrer-Policy`; forward-auth answers and the upstream's answers do
//! not. `Strict-Transport-Security` only with `server.hsts` and an https
//! `public_url` (over real TLS: `tls.rs`).

use authgate::sandbox::{Sandbox, SandboxConfig};
use reqwest::{Method, StatusCode};

use crate::support::*;

const API_KEY: &str = "authy-headers-sandbox-key-0123456789";
const BOB: &str = "bob@example.com";
const BOB_PW: &str = "bob's long password";

/// What every portal answer carries; `what` names the answer.
fn assert_defended(reply: &Reply, what: &str) {
    let csp = reply
        .header("content-security-policy")
        .unwrap_or_else(|| panic!("{what}: no Content-Security-Policy: {reply:?}"));
    for directive in [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
        "form-action 'self'",
    ] {
        assert!(
            csp.split(';').any(|d| d.trim().starts_with(directive)),
            "{what}: {directive} missing from {csp}"
        );
    }
    assert!(!csp.contains("unsafe-inline"), "{what}: {csp}");
    assert_eq!(reply.header("x-frame-options"), Some("DENY"), "{what}");
    assert_eq!(
        reply.header("x-content-type-options"),
        Some("nosniff"),
        "{what}"
    );
    assert_eq!(
        reply.header("referrer-policy"),
        Some("no-referrer"),
        "{what}"
    );
    assert_eq!(
        reply.header("strict-transport-security"),
        None,
        "{what}: HSTS is off by default"
    );
}

/// None of the portal's headers: forward-auth and the upstream's answers.
fn assert_untouched(reply: &Reply, what: &str) {
    for name in [
        "content-security-policy",
        "x-frame-options",
        "referrer-policy",
        "strict-transport-security",
    ] {
        assert_eq!(reply.header(name), None, "{what}: {name} in {reply:?}");
    }
}

/// The `src`/`href` that follows `marker` in `html` (auto-escaping
/// writes `/` as `&#x2f;`).
fn url_after(html: &str, marker: &str) -> String {
    let start = html
        .find(marker)
        .unwrap_or_else(|| panic!("{marker} in {html}"))
        + marker.len();
    let end = html[start..].find('"').expect("a closing quote") + start;
    html[start..end].replace("&#x2f;", "/")
}

/// Authy (the sandbox, no callbacks) and TOTP, sign-up on; alice has a
/// phone, bob has no second factor yet.
async fn start_portal(upstream: &Upstream, sandbox: &Sandbox) -> Gateway {
    let mut setup = Setup::new(Some(&upstream.url()));
    setup
        .set("auth.second_factor", "required")
        .set("auth.methods", vec!["authy", "totp"])
        .set("authy.api_key", API_KEY)
        .set("authy.api_url", sandbox.url())
        .set("authy.poll_interval", "1h")
        .set("signup.enabled", true);
    setup.write_config();
    let phone = ["--country-code", "1", "--phone", "5551234567"];
    setup
        .add_user_with(ALICE, ALICE_NAME, "a", ALICE_PW, &phone)
        .await;
    setup.add_user(BOB, "Bob", "b", BOB_PW).await;
    setup.start().await
}

#[tokio::test]
async fn every_portal_answer_carries_the_security_headers() {
    let upstream = Upstream::start().await;
    let config = SandboxConfig {
        callbacks_enabled: false,
        ..SandboxConfig::new(API_KEY)
    };
    let sandbox = Sandbox::start("127.0.0.1:0".parse().unwrap(), config)
        .await
        .expect("the Authy sandbox starts");
    let gw = start_portal(&upstream, &sandbox).await;
    let mut b = gw.browser();

    let login = b.get(&format!("{PREFIX}/login")).await;
    assert_eq!(login.status, StatusCode::OK);
    assert_defended(&login, "the login page");
    let wrong = b.post_login(ALICE, "not the password", None).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
    assert_defended(&wrong, "the login page after a wrong password");
    let logout_page = b.get(&format!("{PREFIX}/logout")).await;
    assert_defended(&logout_page, "the logout page");
    let signup = b.get(&format!("{PREFIX}/signup")).await;
    assert_eq!(signup.status, StatusCode::OK, "{signup:?}");
    assert_defended(&signup, "the sign-up page");
    let missing = b.get(&format!("{PREFIX}/no-such-page")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_defended(&missing, "the error page");
    assert_defended(&b.get(&format!("{PREFIX}/healthz")).await, "healthz");
    let anonymous = b.get_json(&format!("{PREFIX}/status")).await;
    assert_defended(&anonymous, "status (JSON)");

    // The waiting view: its script is a file of the gateway's own.
    let rd = app_rd(&gw);
    let posted = b.post_login(ALICE, ALICE_PW, Some(&rd)).await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER, "{posted:?}");
    assert_defended(&posted, "the login post's redirect");
    let verify = b.get(&portal_path("verify", &rd)).await;
    assert_eq!(verify.status, StatusCode::OK, "{verify:?}");
    assert!(
        verify.body.contains(r#"id="push-state""#),
        "{}",
        verify.body
    );
    assert_defended(&verify, "the waiting view");
    assert_eq!(
        verify.body.matches("<script").count(),
        verify.body.matches("<script src=").count(),
        "no inline script: {}",
        verify.body
    );
    for (marker, content_type, sample) in [
        (r#"<script src=""#, "text/javascript", "statusUrl"),
        (
            r#"<link rel="stylesheet" href=""#,
            "text/css",
            "font-family",
        ),
    ] {
        let path = url_after(&verify.body, marker);
        assert!(path.starts_with(&format!("{PREFIX}/static/")), "{path}");
        let file = b.get(&path).await;
        assert_eq!(file.status, StatusCode::OK, "{path}: {file:?}");
        assert_defended(&file, &path);
        let served_as = file.header("content-type").unwrap_or_default();
        assert!(served_as.starts_with(content_type), "{path}: {served_as}");
        let caching = file.header("cache-control").unwrap_or_default();
        assert!(caching.contains("max-age="), "{path}: {caching}");
        assert!(file.body.contains(sample), "{path}: {}", file.body);
    }
    let unknown = b.get(&format!("{PREFIX}/static/nope.js")).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_defended(&unknown, "an unknown static file");
    assert_defended(&b.get_json(&format!("{PREFIX}/status")).await, "status");
    let logout = b.logout().await;
    assert_eq!(logout.status, StatusCode::SEE_OTHER);
    assert_defended(&logout, "the logout post's redirect");

    // bob has no second factor: the TOTP enrollment page with its QR code.
    let mut bob = gw.browser();
    let posted = bob.post_login(BOB, BOB_PW, Some(&rd)).await;
    assert_eq!(posted.status, StatusCode::SEE_OTHER, "{posted:?}");
    let enroll = bob.get(&portal_path("enroll/totp", &rd)).await;
    assert_eq!(enroll.status, StatusCode::OK, "{enroll:?}");
    assert!(enroll.body.contains("<svg"), "{}", enroll.body);
    assert_defended(&enroll, "the enrollment page");

    // Not on forward-auth answers, whatever they say.
    for path in ["auth-request", "forward-auth"] {
        let reply = b.get(&format!("{PREFIX}/{path}")).await;
        assert_untouched(&reply, path);
    }
    drop(sandbox);
}

/// The upstream's own answers pass as the app made them, while the
/// gateway's error pages on the proxy's paths are defended.
#[tokio::test]
async fn proxied_answers_are_left_alone() {
    let upstream = Upstream::start().await;
    let (_gw, mut b) = alice_logged_in(&upstream.url()).await;
    let app = b.get(APP_PATH).await;
    assert_eq!(app.status, StatusCode::OK, "{app:?}");
    assert_untouched(&app, "a proxied answer");
    let refused = b.get("/app/..;/admin").await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{refused:?}");
    assert_defended(&refused, "the proxy's error page");
}

/// `server.hsts` needs an https `public_url` (TLS may end in front of the
/// gateway); over real TLS see `tls.rs`.
#[tokio::test]
async fn hsts_only_when_on_and_the_public_url_is_https() {
    for (hsts, scheme, expected) in [
        (true, "https", Some("max-age=31536000; includeSubDomains")),
        (true, "http", None),
        (false, "https", None),
    ] {
        let mut setup = Setup::new(None);
        std::fs::write(setup.path("users.toml"), "").unwrap();
        let public = format!("{scheme}://127.0.0.1:{}", setup.port);
        setup
            .set("server.public_url", public)
            .set("server.hsts", hsts);
        let gw = setup.start().await;
        let client = client();
        let login = client
            .request(Method::GET, gw.url(&format!("{PREFIX}/login")))
            .send()
            .await
            .expect("the login page");
        let seen = login
            .headers()
            .get("strict-transport-security")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(seen.as_deref(), expected, "hsts {hsts}, {scheme}");
        let nginx = client
            .get(gw.url(&format!("{PREFIX}/auth-request")))
            .send()
            .await
            .expect("auth-request");
        assert!(
            !nginx.headers().contains_key("strict-transport-security"),
            "not on forward-auth answers"
        );
    }
}
