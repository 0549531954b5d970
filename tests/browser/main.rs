//! Real-browser end-to-end tests: Debian's headless chromium, driven over
//! WebDriver (chromedriver, fantoccini), walks the end-user flow through
//! `authgate demo`: the login page, the second-factor page, and the demo
//! upstream page with the identity headers it received.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver`
//! (`scripts/browser-deps` installs them). Run: `cargo test --test browser`.
//! The tests take turns: one chromium at a time on a 2-core machine.

mod harness;
mod process;
mod totp;

use authgate::demo::{DEMO_EMAIL, DEMO_PASSWORD};
use fantoccini::Locator;
use tokio::sync::{Mutex, MutexGuard};

use harness::{Browser, Gateway, PAGE, bounded};

/// The page the user asks for before logging in.
const TARGET: &str = "/some/page?x=1";
const TARGET_PATH: &str = "/some/page";
const WAITING_VIEW: &str = r#"id="push-state""#;
const HELLO: &str = "Hello, Demo User!";

static ONE_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// One test's gateway and browser; fields drop in order (browser first).
struct Stage {
    browser: Browser,
    gateway: Gateway,
    _turn: MutexGuard<'static, ()>,
}

impl Stage {
    async fn start(name: &str) -> Stage {
        let turn = ONE_AT_A_TIME.lock().await;
        let gateway = Gateway::start().await;
        let browser = Browser::start(name).await;
        Stage {
            browser,
            gateway,
            _turn: turn,
        }
    }

    async fn finish(self) {
        let Stage {
            browser,
            gateway,
            _turn,
        } = self;
        browser.quit().await;
        drop(gateway);
    }

    /// Asks for `TARGET`, lands on the login page, logs in with the demo
    /// password, and lands on the second-factor page's waiting view.
    async fn log_in(&self) {
        let b = &self.browser;
        b.goto(&self.gateway.url(TARGET)).await;
        let (login, _) = b
            .wait_page("the login page", PAGE, |url, source| {
                url.path() == "/_authgate/login" && source.contains(r#"name="password""#)
            })
            .await;
        let rd = login
            .query_pairs()
            .find(|(k, _)| k == "rd")
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default();
        assert!(
            rd.ends_with(TARGET),
            "the login URL {login} should keep the page asked for in rd"
        );
        b.type_into("input[name=email]", DEMO_EMAIL).await;
        b.type_into("input[name=password]", DEMO_PASSWORD).await;
        b.click("form button[type=submit]").await;
        b.wait_page(
            "the waiting view of the verify page",
            PAGE,
            |url, source| url.path() == "/_authgate/verify" && source.contains(WAITING_VIEW),
        )
        .await;
        let waiting = b.find("#push-state").await;
        let text = bounded("reading the waiting text", waiting.text()).await;
        assert!(
            text.contains("Waiting for your approval"),
            "waiting view text: {text:?}"
        );
    }

    /// Types `code` into the code form and submits it.
    async fn enter_code(&self, code: &str) {
        self.browser.type_into("input[name=code]", code).await;
        self.browser
            .click(r#"form[method=post][action$="/verify"] button[type=submit]"#)
            .await;
    }

    /// Waits for the demo upstream page for `TARGET` and checks the
    /// identity headers it shows.
    async fn expect_upstream(&self, how: &str) {
        let b = &self.browser;
        let (url, _) = b
            .wait_page(&format!("the upstream page {how}"), PAGE, |url, source| {
                url.path() == TARGET_PATH && source.contains(HELLO)
            })
            .await;
        assert_eq!(url.query(), Some("x=1"), "the query of {url} was lost");
        for (header, expected) in [
            ("remote-user", DEMO_EMAIL),
            ("remote-email", DEMO_EMAIL),
            ("remote-name", "Demo User"),
            ("remote-groups", "demo"),
        ] {
            let xpath = format!("//tr[td/code[text()='{header}']]/td[2]");
            let cell = bounded(
                &format!("finding the {header} row"),
                b.client.find(Locator::XPath(&xpath)),
            )
            .await;
            let shown = bounded("reading a header cell", cell.text()).await;
            assert_eq!(shown.trim(), expected, "{header} as the upstream saw it");
        }
    }
}

/// Push approved on the "phone": the waiting page moves on by itself.
#[tokio::test]
async fn approved_push_moves_the_waiting_page_on_by_itself() {
    let stage = Stage::start("push").await;
    stage.log_in().await;

    let uuid = stage.gateway.sandbox.pending_push().await;
    let decided = stage.gateway.sandbox.decide(&uuid, "approved").await;
    assert_eq!(decided["status"], "approved", "sandbox answer: {decided}");

    // No click, no navigation: only the page's own status poll can get the
    // browser to the upstream now.
    stage.expect_upstream("after the approval").await;
    stage.finish().await;
}

/// "Send me a code by SMS", then the code from the SMS.
#[tokio::test]
async fn sms_code_gets_to_the_page() {
    let stage = Stage::start("sms").await;
    stage.log_in().await;

    let sandbox = &stage.gateway.sandbox;
    let before = sandbox.sms_count().await;
    stage
        .browser
        .click(r#"form[action$="/resend"] button[type=submit]"#)
        .await;
    stage
        .browser
        .wait_page("the verify page after resend", PAGE, |_, source| {
            source.contains("We sent you a new code by SMS.")
        })
        .await;
    let code = sandbox.sms_code_after(before).await;
    stage.enter_code(&code).await;
    stage.expect_upstream("after the SMS code").await;
    stage.finish().await;
}

/// Push denied: the waiting page moves on by itself to the code form with
/// the denial message; the Authy app code still gets the user in.
#[tokio::test]
async fn denied_push_moves_to_the_code_form() {
    let stage = Stage::start("denied").await;
    stage.log_in().await;

    let sandbox = &stage.gateway.sandbox;
    let uuid = sandbox.pending_push().await;
    let decided = sandbox.decide(&uuid, "denied").await;
    assert_eq!(decided["status"], "denied", "sandbox answer: {decided}");

    stage
        .browser
        .wait_page("the code form with the denial", PAGE, |url, source| {
            url.path() == "/_authgate/verify"
                && source.contains("The request on your phone was denied.")
                && !source.contains(WAITING_VIEW)
        })
        .await;
    let code = sandbox.app_code(DEMO_EMAIL).await;
    stage.enter_code(&code).await;
    stage.expect_upstream("after the app code").await;
    stage.finish().await;
}
