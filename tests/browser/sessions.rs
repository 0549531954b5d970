//! "Your sessions" in two real browsers of one user: both sessions are
//! listed, one signs the other out with its "Sign out" button, and the
//! other is sent to the login page at its next request.

use authgate::demo::{DEMO_EMAIL, DEMO_PASSWORD};

use crate::harness::{Browser, PAGE};
use crate::{HELLO, Stage, TARGET, TARGET_PATH, WAITING_VIEW};

const SESSIONS: &str = "/_authgate/account/sessions";

/// Logs `b` in with the demo password and approves the push: the
/// browser ends on the upstream page.
async fn log_in_confirmed(stage: &Stage, b: &Browser) {
    b.goto(&stage.gateway.url(TARGET)).await;
    b.wait_page("the login page", PAGE, |url, source| {
        url.path() == "/_authgate/login" && source.contains(r#"name="password""#)
    })
    .await;
    b.type_into("input[name=email]", DEMO_EMAIL).await;
    b.type_into("input[name=password]", DEMO_PASSWORD).await;
    b.click("form button[type=submit]").await;
    b.wait_page("the waiting view", PAGE, |url, source| {
        url.path() == "/_authgate/verify" && source.contains(WAITING_VIEW)
    })
    .await;
    let uuid = stage.gateway.sandbox.pending_push().await;
    stage.gateway.sandbox.decide(&uuid, "approved").await;
    b.wait_page("the upstream page", PAGE, |url, source| {
        url.path() == TARGET_PATH && source.contains(HELLO)
    })
    .await;
}

#[tokio::test]
async fn one_browser_signs_the_other_out() {
    let stage = Stage::start("sessions-here").await;
    let there = Browser::start("sessions-there").await;
    log_in_confirmed(&stage, &stage.browser).await;
    log_in_confirmed(&stage, &there).await;

    let here = &stage.browser;
    here.goto(&stage.gateway.url(SESSIONS)).await;
    let rows = |source: &str| source.matches("<code>").count();
    here.wait_page("the sessions page with both", PAGE, |url, source| {
        url.path() == SESSIONS && rows(source) == 2 && source.contains("(this device)")
    })
    .await;
    let (_, source) = here
        .wait_page("the rows' device and method", PAGE, |_, _| true)
        .await;
    assert_eq!(source.matches("Chrome on Linux").count(), 2, "{source}");
    assert!(
        source.contains("<td>authy</td>"),
        "confirmed by the push: {source}"
    );
    here.click(r#"form button[name=sign_out]"#).await;
    here.wait_page("the sessions page after the sign-out", PAGE, |_, source| {
        source.contains("1 session was signed out") && rows(source) == 1
    })
    .await;

    there.goto(&stage.gateway.url(TARGET)).await;
    there
        .wait_page(
            "the login page for the signed-out browser",
            PAGE,
            |url, _| url.path() == "/_authgate/login",
        )
        .await;
    let violations = there.csp_violations().await;
    assert!(violations.is_empty(), "{violations:#?}");
    there.quit().await;
    stage.finish().await;
}
