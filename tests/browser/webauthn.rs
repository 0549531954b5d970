//! WebAuthn in a real browser: chromium's virtual authenticators (the
//! WebDriver WebAuthn extension) stand in for security keys and passkeys,
//! and the demo's `passkey@example.com`, pinned to `webauthn` with no
//! credential yet, enrols one at the first login. The pages are browsed
//! at `localhost`, the demo's relying-party id.

use std::time::Duration;

use authgate::demo::{DEMO_PASSWORD, PASSKEY_EMAIL};
use fantoccini::Locator;

use crate::Stage;
use crate::harness::{
    AuthenticatorOptions, Browser, Gateway, PAGE, VirtualAuthenticator, bounded, tried, wait_for,
};

/// The page the user asks for before logging in.
const TARGET: &str = "/reports/keys?x=1";
const TARGET_PATH: &str = "/reports/keys";
const ENROL_PATH: &str = "/_authgate/enroll/webauthn";
const SECURITY_PATH: &str = "/_authgate/account/security";
const REGISTER_WIDGET: &str = r#"data-mode="register""#;
const ASSERT_WIDGET: &str = r#"data-mode="assert""#;
/// A ceremony (key generation included) on the slow 2-core machine.
const CEREMONY: Duration = Duration::from_secs(30);

impl Stage {
    /// Asks for `TARGET` at `localhost`, lands on the login page and sends
    /// the passkey user's password.
    async fn send_password(&self) {
        let b = &self.browser;
        self.expect_login_page().await;
        b.type_into("input[name=email]", PASSKEY_EMAIL).await;
        b.type_into("input[name=password]", DEMO_PASSWORD).await;
        b.click("form:has(input[name=password]) button[type=submit]")
            .await;
    }

    /// Asks for `TARGET` and lands on the login page, which keeps it in `rd`.
    async fn expect_login_page(&self) {
        let b = &self.browser;
        b.goto(&self.gateway.url(TARGET)).await;
        let (login, _) = b
            .wait_page("the login page", PAGE, |url, source| {
                url.path() == "/_authgate/login" && source.contains(r#"name="password""#)
            })
            .await;
        let rd = query_value(&login, "rd");
        assert!(
            rd.ends_with(TARGET),
            "the login URL {login} keeps the page in rd"
        );
    }

    /// The first login goes on to the enrolment page, with the widget.
    async fn expect_enrol_page(&self) {
        self.browser
            .wait_page("the WebAuthn enrolment page", PAGE, |url, source| {
                url.path() == ENROL_PATH && source.contains(REGISTER_WIDGET)
            })
            .await;
    }

    /// From the first login's enrolment page: names the key, runs the
    /// registration, and lands on `TARGET`.
    async fn enrol_at_first_login(&self, key_name: &str) {
        let b = &self.browser;
        self.expect_enrol_page().await;
        b.type_into("#webauthn-name", key_name).await;
        b.click("#webauthn-start").await;
        self.expect_app("after the enrolment").await;
    }

    /// The enrolment page's message says `words`, and the browser is still
    /// on the page.
    async fn expect_enrol_message(&self, words: &str) {
        let b = &self.browser;
        let message = wait_for(&format!("a message with {words:?}"), CEREMONY, || async {
            let text = b
                .client
                .find(Locator::Css("#webauthn-message"))
                .await
                .map_err(|e| e.to_string())?
                .text()
                .await
                .map_err(|e| e.to_string())?;
            match text.contains(words) {
                true => Ok(text),
                false => Err(format!("#webauthn-message: {text:?}")),
            }
        })
        .await;
        let url = bounded("reading the URL", b.client.current_url()).await;
        assert_eq!(url.path(), ENROL_PATH, "after {message:?}");
    }

    /// The verify page offers the key; a click runs the assertion.
    async fn confirm_with_key(&self) {
        self.press_key_button(
            "the verify page with the key",
            |url| url.path() == "/_authgate/verify",
            "Use your security key or passkey",
        )
        .await;
    }

    /// Waits for `what`, a page (where `at` holds) with the key widget,
    /// whose button says `label`, and presses the button.
    async fn press_key_button(&self, what: &str, at: impl Fn(&url::Url) -> bool, label: &str) {
        let b = &self.browser;
        b.wait_page(what, PAGE, |url, source| {
            at(url) && source.contains(ASSERT_WIDGET)
        })
        .await;
        let button = bounded(
            "reading the key button",
            b.find("#webauthn-start").await.text(),
        )
        .await;
        assert!(button.contains(label), "the button on {what}: {button:?}");
        b.click("#webauthn-start").await;
    }

    /// The demo upstream shows `TARGET` to the passkey user.
    async fn expect_app(&self, how: &str) {
        let b = &self.browser;
        let (url, _) = b
            .wait_page(
                &format!("the upstream page {how}"),
                CEREMONY,
                |url, source| url.path() == TARGET_PATH && source.contains("remote-user"),
            )
            .await;
        assert_eq!(url.host_str(), Some("localhost"), "{url}");
        assert_eq!(url.query(), Some("x=1"), "the query of {url} was lost");
        let cell = bounded(
            "finding the remote-user row",
            b.client
                .find(Locator::XPath("//tr[td/code[text()='remote-user']]/td[2]")),
        )
        .await;
        let shown = bounded("reading the remote-user cell", cell.text()).await;
        assert_eq!(shown.trim(), PASSKEY_EMAIL, "remote-user {how}");
    }

    /// The logout page's button; leaves the logout page.
    async fn log_out(&self) {
        let b = &self.browser;
        b.goto(&self.gateway.url("/_authgate/logout")).await;
        b.wait_page("the logout page", PAGE, |url, _| {
            url.path() == "/_authgate/logout"
        })
        .await;
        b.click("form button[type=submit]").await;
        // Usually the login page; with a platform passkey its autofill
        // may sign in again at once and move on before a look at it.
        b.wait_page("the page after logout", PAGE, |url, _| {
            url.path() != "/_authgate/logout"
        })
        .await;
    }

    /// The names in the security page's table of keys, in its order; an
    /// error while the page reloads under the reading.
    async fn key_names(&self) -> Result<Vec<String>, String> {
        let cells = tried(
            "finding the key names",
            self.browser
                .client
                .find_all(Locator::Css("tr.credential td.name")),
        )
        .await?;
        let mut names = Vec::new();
        for cell in cells {
            let name = tried("reading a key name", cell.text()).await?;
            names.push(name.trim().to_owned());
        }
        Ok(names)
    }

    /// The remove button in the row of the key `name`.
    async fn remove_key(&self, name: &str) {
        let xpath = format!(
            "{}//form[contains(@class, 'remove')]//button[@type = 'submit']",
            key_row(name)
        );
        let button = bounded(
            &format!("finding the remove button of {name:?}"),
            self.browser.client.find(Locator::XPath(&xpath)),
        )
        .await;
        bounded(&format!("removing {name:?}"), button.click()).await;
    }

    /// When the key `name` was last used, as its row says.
    async fn last_used(&self, name: &str) -> String {
        let xpath = format!("{}/td[contains(@class, 'last-used')]", key_row(name));
        let cell = bounded(
            &format!("finding when {name:?} was last used"),
            self.browser.client.find(Locator::XPath(&xpath)),
        )
        .await;
        let text = bounded("reading the last-used cell", cell.text()).await;
        text.trim().to_owned()
    }

    /// Waits until the security page (a new load of it) lists `expected`.
    async fn expect_keys(&self, expected: &[&str]) {
        wait_for(&format!("the keys {expected:?}"), CEREMONY, || async {
            let url = self
                .browser
                .client
                .current_url()
                .await
                .map_err(|e| e.to_string())?;
            if url.path() != SECURITY_PATH {
                return Err(format!("the browser is at {url}"));
            }
            let names = self.key_names().await?;
            match names == expected {
                true => Ok(()),
                false => Err(format!("keys listed: {names:?}")),
            }
        })
        .await;
    }
}

/// XPath of the security page's row for the key `name`.
fn key_row(name: &str) -> String {
    format!(
        "//tr[contains(@class, 'credential')][td[contains(@class, 'name')][normalize-space() = '{name}']]"
    )
}

fn query_value(url: &url::Url, key: &str) -> String {
    url.query_pairs()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

impl Stage {
    /// A security key on the browser, enrolled at the first login (which
    /// lands on `TARGET`); its signature counter then.
    async fn security_key_enrolled(&self) -> (VirtualAuthenticator, u64) {
        let key = self
            .browser
            .add_authenticator(AuthenticatorOptions::security_key())
            .await;
        self.send_password().await;
        self.enrol_at_first_login("my key").await;
        let enrolled = only_credential(self, &key).await;
        (key, enrolled)
    }
}

/// The one credential `authenticator` holds, for `localhost`.
async fn only_credential(stage: &Stage, authenticator: &VirtualAuthenticator) -> u64 {
    let held = authenticator.credentials(&stage.browser).await;
    assert_eq!(held.len(), 1, "credentials on the authenticator: {held:?}");
    assert_eq!(held[0].rp_id, "localhost", "{held:?}");
    assert!(!held[0].id.is_empty(), "{held:?}");
    held[0].sign_count
}

/// The first login enrols a security key; after logout the password and
/// the key get the user in again, and the key has signed once more.
#[tokio::test]
async fn first_login_enrols_a_key_that_then_confirms_the_login() {
    let stage = Stage::start("webauthn-enrol").await;
    let (key, enrolled) = stage.security_key_enrolled().await;

    stage.log_out().await;
    stage.send_password().await;
    stage.confirm_with_key().await;
    stage.expect_app("after the key").await;
    let used = only_credential(&stage, &key).await;
    assert!(
        used > enrolled,
        "the key signed the login: counter {enrolled} then {used}"
    );
    stage.finish().await;
}

/// A passkey that verifies the user is both factors: "Sign in with a
/// passkey" on the login page, nothing typed, lands on the app. (On a
/// security key: chromium offers only platform passkeys in the autofill,
/// so the button is what signs in.)
#[tokio::test]
async fn a_verified_passkey_signs_in_without_a_password() {
    let stage = Stage::start("webauthn-passwordless").await;
    let key = stage
        .browser
        .add_authenticator(AuthenticatorOptions::security_key())
        .await;
    stage.send_password().await;
    stage.enrol_at_first_login("key ring").await;
    let held = key.credentials(&stage.browser).await;
    assert!(
        held.len() == 1 && held[0].resident,
        "one discoverable credential: {held:?}"
    );

    stage.log_out().await;
    stage.expect_login_page().await;
    let b = &stage.browser;
    let button = bounded(
        "reading the passkey button",
        b.find("#passkey-start").await.text(),
    )
    .await;
    assert!(button.contains("Sign in with a passkey"), "{button:?}");
    b.click("#passkey-start").await;
    stage.expect_app("after the passkey alone").await;
    stage.finish().await;
}

/// A passkey on this device (a platform authenticator) is offered in the
/// login page's autofill (conditional mediation); chromium's virtual one
/// answers it at once, so the login page moves on to the app by itself.
#[tokio::test]
async fn a_platform_passkey_signs_in_from_the_autofill() {
    let stage = Stage::start("webauthn-autofill").await;
    stage
        .browser
        .add_authenticator(AuthenticatorOptions::passkey())
        .await;
    stage.send_password().await;
    stage.enrol_at_first_login("laptop").await;

    stage.log_out().await;
    stage.browser.goto(&stage.gateway.url(TARGET)).await;
    stage.expect_app("after the autofill").await;
    stage.finish().await;
}

/// The security page adds a second key under a name, removes the first,
/// refuses to remove the last one, and the second key logs in.
#[tokio::test]
async fn the_security_page_adds_a_key_and_removes_the_first() {
    let stage = Stage::start("webauthn-security").await;
    let b = &stage.browser;
    let first = b
        .add_authenticator(AuthenticatorOptions::security_key())
        .await;
    stage.send_password().await;
    stage.enrol_at_first_login("first key").await;

    b.goto(&stage.gateway.url(SECURITY_PATH)).await;
    stage.expect_keys(&["first key"]).await;
    // Unplugged, so that the browser can only reach the second key.
    first.remove(b).await;
    let second = b
        .add_authenticator(AuthenticatorOptions::security_key())
        .await;
    b.type_into("#webauthn-name", "backup key").await;
    b.click("#webauthn-start").await;
    stage.expect_keys(&["first key", "backup key"]).await;
    only_credential(&stage, &second).await;

    stage.remove_key("first key").await;
    stage.expect_keys(&["backup key"]).await;

    // The last factor stays while the second factor is required.
    mark_document(&stage).await;
    stage.remove_key("backup key").await;
    b.wait_page(
        "the security page after the refusal",
        PAGE,
        |url, source| url.path() == SECURITY_PATH && !source.contains(MARK),
    )
    .await;
    stage.expect_keys(&["backup key"]).await;
    let unused = stage.last_used("backup key").await;

    stage.log_out().await;
    stage.send_password().await;
    stage.confirm_with_key().await;
    stage.expect_app("after the second key").await;
    b.goto(&stage.gateway.url(SECURITY_PATH)).await;
    stage.expect_keys(&["backup key"]).await;
    let used = stage.last_used("backup key").await;
    assert!(
        used != unused && !used.is_empty(),
        "last used {unused:?} before the login with the key, then {used:?}"
    );
    stage.finish().await;
}

/// Set on the page's body by `mark_document`; gone once a new page loads.
const MARK: &str = "data-before-submit";

async fn mark_document(stage: &Stage) {
    let script = format!("document.body.setAttribute('{MARK}', 'yes');");
    bounded(
        "marking the page",
        stage.browser.client.execute(&script, vec![]),
    )
    .await;
}

/// A user who cancels (the key's user verification fails, as when the
/// PIN or fingerprint prompt is dismissed) stays on the enrolment page
/// with a message and no credential is made; trying again works.
#[tokio::test]
async fn a_cancelled_ceremony_stays_on_the_page_with_a_message() {
    let stage = Stage::start("webauthn-cancel").await;
    let b = &stage.browser;
    let passkey = b
        .add_authenticator(AuthenticatorOptions {
            user_verified: false,
            ..AuthenticatorOptions::passkey()
        })
        .await;
    stage.send_password().await;
    stage.expect_enrol_page().await;
    b.type_into("#webauthn-name", "phone").await;
    b.click("#webauthn-start").await;
    stage.expect_enrol_message("cancelled").await;
    let held = passkey.credentials(b).await;
    assert!(held.is_empty(), "a cancelled ceremony made {held:?}");

    passkey.set_user_verified(b, true).await;
    b.click("#webauthn-start").await;
    stage.expect_app("after trying again").await;
    only_credential(&stage, &passkey).await;
    stage.finish().await;
}

/// A browser without WebAuthn (chromium with its Web Authentication API
/// switched off, as in a browser too old for it) is told so on the page.
#[tokio::test]
async fn a_browser_without_webauthn_is_told_so() {
    let turn = crate::ONE_AT_A_TIME.lock().await;
    let gateway = Gateway::start().await;
    let switches = ["--disable-blink-features=WebAuth".to_owned()];
    let browser = Browser::start_with("webauthn-missing", &switches).await;
    let stage = Stage {
        browser,
        gateway,
        _turn: turn,
    };
    stage.send_password().await;
    let b = &stage.browser;
    stage.expect_enrol_page().await;
    b.type_into("#webauthn-name", "my key").await;
    b.click("#webauthn-start").await;
    stage.expect_enrol_message("cannot use security keys").await;
    stage.finish().await;
}

/// The demo app's transfer, approved with the key that confirmed the
/// login: the approval page's button runs an assertion whose challenge
/// binds the held request, the key signs once more, and the app gets the
/// POST once through the continue button.
#[tokio::test]
async fn a_key_approves_a_held_transfer() {
    let stage = Stage::start("webauthn-approve").await;
    let (key, enrolled) = stage.security_key_enrolled().await;

    stage.send_transfer().await;
    stage
        .press_key_button(
            "the approval page with the key",
            |url| url.path().starts_with("/_authgate/approval/"),
            "Approve with your security key",
        )
        .await;
    stage.continue_transfer().await;
    let used = only_credential(&stage, &key).await;
    assert!(
        used > enrolled,
        "the key signed the approval: counter {enrolled} then {used}"
    );
    stage.finish().await;
}
