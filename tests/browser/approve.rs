//! The `approve` policy in a real browser, through the demo: its app's
//! "Send money" form posts to `/transfer`, which an `approve` rule holds.
//! The "Approve this action" page lists the transfer; the push on the
//! sandbox "phone" carries the amount and recipient; once approved, the
//! page moves on by itself (approve.js) to the continue button, and the
//! app receives the POST once, byte for byte, with the identity headers.
//! A denied transfer never reaches the app. (Approved by a security key:
//! tests/browser/webauthn.rs.)

use crate::Stage;
use crate::harness::{PAGE, bounded};

const FORM_BODY: &str = "amount=250.75&currency=EUR&to=Carol";

impl Stage {
    /// Logged in (push approved), then the demo app's form filled in and
    /// sent: the approval page for it. Returns the push's uuid.
    async fn transfer_held(&self) -> String {
        self.log_in().await;
        let sandbox = &self.gateway.sandbox;
        let login_push = sandbox.pending_push().await;
        sandbox.decide(&login_push, "approved").await;
        self.expect_upstream("after the login").await;
        self.send_transfer().await;

        let push = wait_push(self).await;
        let state = sandbox.state().await.expect("sandbox state");
        let shown = state["approval_requests"]
            .as_array()
            .and_then(|all| all.iter().find(|a| a["uuid"] == push.as_str()))
            .cloned()
            .expect("the approval's push");
        assert_eq!(shown["message"], "Send 250.75 EUR to Carol", "{shown}");
        assert_eq!(shown["details"]["amount"], "250.75", "{shown}");
        assert_eq!(shown["details"]["to"], "Carol", "{shown}");
        push
    }

    /// The demo app's form, on the page the browser shows, filled in and
    /// sent: the approval page for it.
    pub(crate) async fn send_transfer(&self) {
        let b = &self.browser;
        let amount = b.find("input[name=amount]").await;
        bounded("clearing the amount", amount.clear()).await;
        b.type_into("input[name=amount]", "250.75").await;
        let to = b.find("input[name=to]").await;
        bounded("clearing the recipient", to.clear()).await;
        b.type_into("input[name=to]", "Carol").await;
        b.click("#send").await;
        b.wait_page("the approval page", PAGE, |url, source| {
            url.path().starts_with("/_authgate/approval/")
                && source.contains("Approve this action")
                && source.contains("Send 250.75 EUR to Carol")
        })
        .await;
    }

    /// Once approved, the page gets to its continue button; the button
    /// sends the transfer, and the app's answer comes back through the
    /// continue URL. Sent once: going back and on again sends nothing.
    pub(crate) async fn continue_transfer(&self) {
        let b = &self.browser;
        b.wait_page("the approved page", PAGE, |_, source| {
            source.contains(r#"id="continue""#)
        })
        .await;
        b.click("#continue button[type=submit]").await;
        let (url, _) = b
            .wait_page("the app's answer", PAGE, |_, source| {
                source.contains("Transfer received")
            })
            .await;
        assert!(
            url.path().starts_with("/_authgate/approval/") && url.path().ends_with("/continue"),
            "the app's answer comes through the continue URL: {url}"
        );
        let body = b.find("#transfer-body").await;
        let body = bounded("reading the body the app got", body.text()).await;
        assert_eq!(body, FORM_BODY, "byte for byte");
        let sent = b.find("#transfer").await;
        let sent = bounded("reading the transfer", sent.text()).await;
        assert_eq!(sent, "Sent 250.75 EUR to Carol.");
        assert_eq!(self.transfers_received().await, "1");

        b.goto(&self.gateway.url(url.path().trim_end_matches("/continue")))
            .await;
        b.wait_page("the page of the sent approval", PAGE, |_, source| {
            source.contains("sent already")
        })
        .await;
        b.goto(&self.gateway.url("/")).await;
        assert_eq!(self.transfers_received().await, "1", "once");
    }

    /// What the demo app shows as the number of transfers it received.
    async fn transfers_received(&self) -> String {
        let count = self.browser.find("#transfers").await;
        bounded("reading the transfer count", count.text()).await
    }
}

/// The newest pending push: the approval's (the login's is decided).
async fn wait_push(stage: &Stage) -> String {
    stage.gateway.sandbox.pending_push().await
}

#[tokio::test]
async fn an_approved_transfer_reaches_the_app_once() {
    let stage = Stage::start("approve").await;
    let push = stage.transfer_held().await;
    stage.gateway.sandbox.decide(&push, "approved").await;
    // The page's own poll gets it to the continue button.
    stage.continue_transfer().await;
    stage.finish().await;
}

#[tokio::test]
async fn a_denied_transfer_never_reaches_the_app() {
    let stage = Stage::start("approve-denied").await;
    let push = stage.transfer_held().await;
    stage.gateway.sandbox.decide(&push, "denied").await;
    let b = &stage.browser;
    b.wait_page("the denied page", PAGE, |_, source| {
        source.contains("This request was denied. It was not sent.")
    })
    .await;
    b.goto(&stage.gateway.url("/")).await;
    assert_eq!(stage.transfers_received().await, "0");
    stage.finish().await;
}
