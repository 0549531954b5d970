//! "Your sessions" over HTTP: the page and its JSON twin list the user's
//! sessions with "this device", a post without the CSRF token changes
//! nothing, "sign out" ends the named session at its next request, and
//! "sign out everywhere else" every one but this.

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::support::*;

const PAGE: &str = "/_authgate/account/sessions";

pub(crate) async fn sessions_json(browser: &mut Browser) -> Value {
    let reply = browser.get_json(PAGE).await;
    assert_eq!(reply.status, StatusCode::OK, "{reply:?}");
    reply.json()
}

/// The reference of the listed session that is (or is not) this one.
fn reference(listing: &Value, this_device: bool) -> String {
    listing["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["this_device"] == this_device)
        .and_then(|s| s["reference"].as_str())
        .expect("such a session is listed")
        .to_owned()
}

async fn post(browser: &mut Browser, fields: &[(&str, &str)], with_csrf: bool) -> Reply {
    let csrf = browser.csrf().await;
    let mut form: Vec<(&str, &str)> = fields.to_vec();
    if with_csrf {
        form.push(("csrf", &csrf));
    }
    let builder = browser.request(Method::POST, PAGE).form(&form);
    browser.send(builder).await
}

/// A gateway in front of an upstream, with Alice in its users file.
async fn alice_gateway() -> (Upstream, Gateway) {
    let upstream = Upstream::start().await;
    let setup = Setup::new(Some(&upstream.url()));
    setup.add_alice().await;
    (upstream, setup.start().await)
}

#[tokio::test]
async fn a_user_sees_their_sessions_and_signs_one_out() {
    let (_upstream, gw) = alice_gateway().await;
    let mut here = gw.browser();
    here.login(ALICE, ALICE_PW).await;
    let mut there = gw.browser();
    there.login(ALICE, ALICE_PW).await;

    let listing = sessions_json(&mut here).await;
    assert_eq!(listing["user"], ALICE);
    let sessions = listing["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2, "{listing}");
    let mine: Vec<bool> = sessions.iter().map(|s| s["this_device"] == true).collect();
    assert_eq!(mine.iter().filter(|m| **m).count(), 1, "{listing}");

    let page = here.get(PAGE).await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("(this device)"), "{}", page.body);
    assert!(page.body.contains("Sign out everywhere else"));
    assert!(
        !page.body.contains("<script"),
        "no script: the portal's CSP"
    );

    let other = reference(&listing, false);
    let refused = post(&mut here, &[("session", &other)], false).await;
    assert_eq!(refused.status, StatusCode::FORBIDDEN, "no CSRF token");
    assert_eq!(there.get("/").await.status, StatusCode::OK);

    let done = post(&mut here, &[("session", &other)], true).await;
    assert_eq!(done.status, StatusCode::OK);
    assert!(
        done.body.contains("1 session was signed out"),
        "{}",
        done.body
    );
    assert_eq!(there.get("/").await.status, StatusCode::FOUND);
    assert_eq!(here.get("/").await.status, StatusCode::OK);
    assert_eq!(
        sessions_json(&mut here).await["sessions"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[tokio::test]
async fn sign_out_everywhere_else_keeps_this_session_only() {
    let (_upstream, gw) = alice_gateway().await;
    let mut here = gw.browser();
    here.login(ALICE, ALICE_PW).await;
    let mut others = Vec::new();
    for _ in 0..3 {
        let mut browser = gw.browser();
        browser.login(ALICE, ALICE_PW).await;
        others.push(browser);
    }
    let csrf = here.csrf().await;
    let builder = here
        .request(Method::POST, PAGE)
        .header("accept", "application/json")
        .header("x-csrf-token", csrf)
        .form(&[("others", "1")]);
    let reply = here.send(builder).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.json()["ended"], 3);
    for browser in &mut others {
        assert_eq!(browser.get("/").await.status, StatusCode::FOUND);
    }
    let listing = sessions_json(&mut here).await;
    assert_eq!(listing["sessions"].as_array().unwrap().len(), 1);
    assert_eq!(listing["sessions"][0]["this_device"], true);
}

#[tokio::test]
async fn without_a_session_the_page_sends_to_the_login() {
    let setup = Setup::new(None);
    setup.add_alice().await;
    let gw = setup.start().await;
    let mut browser = gw.browser();
    let reply = browser.get(PAGE).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER);
    assert!(
        reply.location().contains("/_authgate/login?rd="),
        "{}",
        reply.location()
    );
    assert!(reply.location().contains("account%2Fsessions"));
    let reply = browser.get_json(PAGE).await;
    assert_eq!(reply.status, StatusCode::UNAUTHORIZED);
}

/// Each row names the browser and system the session logged in from,
/// parsed from its User-Agent.
#[tokio::test]
async fn a_session_is_named_by_its_browser_and_system() {
    let setup = Setup::new(None);
    setup.add_alice().await;
    let gw = setup.start().await;
    let mut browser = gw.browser();
    let csrf = browser.csrf().await;
    let firefox = "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0";
    let builder = browser
        .request(Method::POST, "/_authgate/login")
        .header("user-agent", firefox)
        .form(&[("email", ALICE), ("password", ALICE_PW), ("csrf", &csrf)]);
    let reply = browser.send(builder).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{reply:?}");
    let listing = sessions_json(&mut browser).await;
    assert_eq!(
        listing["sessions"][0]["device"], "Firefox on Linux",
        "{listing}"
    );
    let page = browser.get(PAGE).await;
    assert!(page.body.contains("Firefox on Linux"), "{}", page.body);
}

/// Logs in with `X-Forwarded-For: 203.0.113.9` and returns the address
/// the sessions page lists for the session.
async fn client_listed(setup: Setup) -> Value {
    setup.add_alice().await;
    let gw = setup.start().await;
    let mut browser = gw.browser();
    let csrf = browser.csrf().await;
    let builder = browser
        .request(Method::POST, "/_authgate/login")
        .header("x-forwarded-for", "203.0.113.9")
        .form(&[("email", ALICE), ("password", ALICE_PW), ("csrf", &csrf)]);
    let reply = browser.send(builder).await;
    assert_eq!(reply.status, StatusCode::SEE_OTHER, "{reply:?}");
    let listing = sessions_json(&mut browser).await;
    let client = listing["sessions"][0]["client"].clone();
    let page = browser.get(PAGE).await;
    assert!(
        page.body
            .contains(&format!("<td>{}</td>", client.as_str().unwrap())),
        "{}",
        page.body
    );
    client
}

/// Each row names the client's address at the login as the gateway
/// decided it (the audit trail's `client`): behind a trusted proxy the
/// forwarded one, else the peer's.
#[tokio::test]
async fn a_session_is_listed_with_the_client_address_the_gateway_saw() {
    let mut trusted = Setup::new(None);
    trusted.set("server.trusted_proxies", vec!["127.0.0.1/32"]);
    assert_eq!(client_listed(trusted).await, "203.0.113.9");
    let mut untrusted = Setup::new(None);
    untrusted.set("server.trusted_proxies", Vec::<String>::new());
    assert_eq!(client_listed(untrusted).await, "127.0.0.1");
}
