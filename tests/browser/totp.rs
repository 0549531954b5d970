//! TOTP enrollment in a real browser: the demo's user without a second
//! factor logs in through the form, lands on the enrollment page, and types
//! the code an authenticator app would show for the key on the page.

use authgate::demo::{DEMO_PASSWORD, ENROLL_EMAIL};
use fantoccini::Locator;

use crate::Stage;
use crate::harness::{PAGE, bounded};

const TARGET: &str = "/reports/weekly?week=12";
const TARGET_PATH: &str = "/reports/weekly";
const HELLO: &str = "Hello, New User!";

/// RFC 6238 (HMAC-SHA-1, 6 digits, 30 s) for the current time, as an
/// authenticator app computes it; base32 with the page's spaces.
fn totp_now(base32: &str) -> String {
    use totp_rs::{Algorithm, Builder, Secret};
    let clean: String = base32.chars().filter(|c| !c.is_whitespace()).collect();
    let secret = Secret::try_from_base32(&clean).expect("the key on the page is base32");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs();
    Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_skew(0)
        .with_secret(secret)
        .build_noncompliant()
        .generate(now)
        .to_string()
}

#[tokio::test]
async fn totp_enrollment_through_the_pages() {
    let stage = Stage::start("totp-enroll").await;
    let b = &stage.browser;
    b.goto(&stage.gateway.url(TARGET)).await;
    b.wait_page("the login page", PAGE, |url, source| {
        url.path() == "/_authgate/login" && source.contains(r#"name="password""#)
    })
    .await;
    b.type_into("input[name=email]", ENROLL_EMAIL).await;
    b.type_into("input[name=password]", DEMO_PASSWORD).await;
    b.click("form button[type=submit]").await;

    let (url, source) = b
        .wait_page("the TOTP enrollment page", PAGE, |url, source| {
            url.path() == "/_authgate/enroll/totp" && source.contains("totp-secret")
        })
        .await;
    let rd = url
        .query_pairs()
        .find(|(k, _)| k == "rd")
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    assert!(rd.ends_with(TARGET), "rd {rd:?} keeps the page asked for");
    assert!(source.contains("<svg"), "the QR code is an inline SVG");
    let secret = bounded("reading #totp-secret", b.find("#totp-secret").await.text()).await;
    assert_eq!(
        secret.split_whitespace().count(),
        8,
        "32 base32 characters in groups of four: {secret:?}"
    );

    b.type_into("input[name=code]", &totp_now(&secret)).await;
    b.click(r#"form[action$="/enroll/totp"] button[type=submit]"#)
        .await;
    let (url, _) = b
        .wait_page(
            "the upstream page after the enrollment",
            PAGE,
            |url, source| url.path() == TARGET_PATH && source.contains(HELLO),
        )
        .await;
    assert_eq!(url.query(), Some("week=12"));
    let cell = bounded(
        "finding the remote-user row",
        b.client
            .find(Locator::XPath("//tr[td/code[text()='remote-user']]/td[2]")),
    )
    .await;
    let shown = bounded("reading the remote-user cell", cell.text()).await;
    assert_eq!(shown.trim(), ENROLL_EMAIL);
    stage.finish().await;
}
