//! Real-browser end-to-end tests: Debian's headless chromium, driven over
//! WebDriver (chromedriver, fantoccini), walks the end-user flow through
//! `authgate demo`: the login page, the second-factor page, and the demo
//! upstream page with the identity headers it received.
//!
//! Every test ends by reading chromium's console: a Content-Security-Policy
//! violation on any page it visited fails it.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver`
//! (`scripts/browser-deps` installs them). Run: `cargo test --test browser`.
//! The tests take turns: one chromium at a time on a 2-core machine.

mod approve;
mod harness;
mod process;
mod sessions;
mod totp;
mod webauthn;

use authgate::demo::{DEMO_EMAIL, DEMO_PASSWORD};
use fantoccini::Locator;
use serde_json::json;
use tokio::sync::{Mutex, MutexGuard};

use harness::{Browser, Gateway, PAGE, bounded, wait_for};

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

    /// Fails on any CSP violation chromium reported during the test.
    async fn finish(self) {
        let violations = self.browser.csp_violations().await;
        assert!(
            violations.is_empty(),
            "Content-Security-Policy violations on the pages visited: {violations:#?}"
        );
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
        self.log_in_at(&self.gateway.url(TARGET)).await;
    }

    /// `log_in`, starting at `start` (a page that leads to the login page,
    /// or the login page itself with `rd` ending in `TARGET`).
    async fn log_in_at(&self, start: &str) {
        let b = &self.browser;
        b.goto(start).await;
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
    /// identity headers it shows; the URL it is at.
    async fn expect_upstream(&self, how: &str) -> url::Url {
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
        url
    }

    /// "Send me a code by SMS" on the waiting view, then the code.
    async fn confirm_by_sms(&self) {
        let sandbox = &self.gateway.sandbox;
        let before = sandbox.sms_count().await;
        self.browser
            .click(r#"form[action$="/resend"] button[type=submit]"#)
            .await;
        self.browser
            .wait_page("the verify page after resend", PAGE, |_, source| {
                source.contains("We sent you a new code by SMS.")
            })
            .await;
        let code = sandbox.sms_code_after(before).await;
        self.enter_code(&code).await;
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

    stage.confirm_by_sms().await;
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

/// Adds an inline script to the page; true when it ran.
const INJECT_INLINE_SCRIPT: &str = r#"
    var script = document.createElement("script");
    script.textContent = "document.body.dataset.inlineRan = 'yes';";
    document.head.appendChild(script);
    return document.body.dataset.inlineRan === "yes";
"#;

/// The login button's background, set by the gateway's style sheet.
const BUTTON_COLOUR: &str =
    "return getComputedStyle(document.querySelector('button')).backgroundColor;";

/// The policy is in force on the portal: the style sheet (a file of the
/// gateway's) applies, an inline script does not run, and chromium reports
/// the refusal on its console, where every test's `finish` looks.
#[tokio::test]
async fn the_portal_refuses_inline_script_and_says_so_on_the_console() {
    let stage = Stage::start("csp").await;
    let b = &stage.browser;
    b.goto(&stage.gateway.url("/_authgate/login")).await;
    b.wait_page("the login page", PAGE, |url, source| {
        url.path() == "/_authgate/login" && source.contains(r#"name="password""#)
    })
    .await;
    let colour = bounded("the button colour", b.client.execute(BUTTON_COLOUR, vec![])).await;
    assert_eq!(colour, json!("rgb(36, 87, 197)"), "the style sheet applies");
    let ran = bounded(
        "adding an inline script",
        b.client.execute(INJECT_INLINE_SCRIPT, vec![]),
    )
    .await;
    assert_eq!(ran, json!(false), "an inline script ran on the login page");
    // chromedriver may take the console entry a moment after the script.
    let seen = std::cell::RefCell::new(Vec::new());
    wait_for("the refusal on the console", PAGE, || async {
        let new = b.csp_violations().await;
        let mut seen = seen.borrow_mut();
        seen.extend(new);
        match seen.iter().any(|v| v.contains("script-src")) {
            true => Ok(()),
            false => Err(format!("{seen:?}")),
        }
    })
    .await;
    stage.finish().await;
}

/// The code form posts to the portal, which answers 303 to `rd` on another
/// host under `session.cookie_domain`. Chromium checks that redirect
/// against `form-action` too, so the policy must name those hosts: the
/// user lands on the app's host, and no violation is reported. (With
/// `form-action 'self'` alone the redirect is blocked, reported under the
/// URL posted to, and the waiting page's poll still gets the user there:
/// only the console shows it, which `finish` reads.)
#[tokio::test]
async fn a_code_post_lands_on_another_host_under_the_cookie_domain() {
    let turn = ONE_AT_A_TIME.lock().await;
    let gateway = Gateway::start_with(|port| {
        vec![
            (
                "AUTHGATE_SESSION__COOKIE_DOMAIN".into(),
                "example.test".into(),
            ),
            (
                "AUTHGATE_SERVER__PUBLIC_URL".into(),
                format!("http://auth.example.test:{port}"),
            ),
        ]
    })
    .await;
    let switches = [
        // Every *.example.test is this machine; plain http stays plain.
        "--host-resolver-rules=MAP *.example.test 127.0.0.1".to_owned(),
        "--disable-features=HttpsUpgrades".to_owned(),
    ];
    let browser = Browser::start_with("cross-host", &switches).await;
    let stage = Stage {
        browser,
        gateway,
        _turn: turn,
    };
    let port = stage.gateway.port();
    let app = format!("http://app.example.test:{port}{TARGET}");
    let rd: String = url::form_urlencoded::byte_serialize(app.as_bytes()).collect();
    let login = format!("http://auth.example.test:{port}/_authgate/login?rd={rd}");
    stage.log_in_at(&login).await;
    stage.confirm_by_sms().await;
    let landed = stage.expect_upstream("on the app's host").await;
    assert_eq!(landed.host_str(), Some("app.example.test"), "{landed}");
    stage.finish().await;
}

/// A chromium whose language is German (`--lang=de`: it sends
/// `Accept-Language: de`) gets the portal in German: the login page, and
/// after the password the second-factor page.
#[tokio::test]
async fn a_german_browser_gets_the_portal_in_german() {
    let turn = ONE_AT_A_TIME.lock().await;
    let gateway = Gateway::start().await;
    let switches = ["--lang=de".to_owned(), "--accept-lang=de".to_owned()];
    let browser = Browser::start_with("german", &switches).await;
    let stage = Stage {
        browser,
        gateway,
        _turn: turn,
    };
    let b = &stage.browser;
    b.goto(&stage.gateway.url("/_authgate/login")).await;
    b.wait_page("the German login page", PAGE, |_, source| {
        source.contains(r#"<html lang="de">"#) && source.contains("<h1>Anmelden</h1>")
    })
    .await;
    b.type_into("input[name=email]", DEMO_EMAIL).await;
    b.type_into("input[name=password]", DEMO_PASSWORD).await;
    b.click("form button[type=submit]").await;
    b.wait_page("the German second-factor page", PAGE, |url, source| {
        url.path() == "/_authgate/verify"
            && source.contains("<h1>Bestätigen Sie, dass Sie es sind</h1>")
    })
    .await;
    let waiting = b.find("#push-state").await;
    let text = bounded("reading the waiting text", waiting.text()).await;
    assert_eq!(text, "Warten auf Ihre Bestätigung …");
    stage.finish().await;
}
