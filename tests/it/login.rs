//! Tests 2 and 3: the login page, its CSRF cookie, and the login post.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::*;

async fn gateway_with_alice() -> (Upstream, Gateway) {
    let upstream = Upstream::start().await;
    let setup = Setup::new(Some(&upstream.url()));
    setup.add_alice().await;
    let gw = setup.start().await;
    (upstream, gw)
}

/// The text of the `role="alert"` paragraph of a login page.
fn alert(html: &str) -> Option<String> {
    let start = html.find("role=\"alert\">")? + "role=\"alert\">".len();
    let end = html[start..].find("</p>")?;
    Some(html[start..start + end].trim().to_owned())
}

fn is_login_form(html: &str) -> bool {
    html.contains("<form")
        && html.contains("name=\"email\"")
        && html.contains("name=\"password\"")
        && csrf_field(html).is_some_and(|t| !t.is_empty())
}

#[tokio::test]
async fn login_page_has_a_csrf_field_and_sets_a_strict_csrf_cookie() {
    let (_upstream, gw) = gateway_with_alice().await;
    let mut b = gw.browser();

    let page = b.get(&format!("{PREFIX}/login")).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(
        page.header("content-type")
            .is_some_and(|t| t.starts_with("text/html")),
        "{page:?}"
    );
    assert!(is_login_form(&page.body), "{}", page.body);
    let token = csrf_field(&page.body).unwrap();

    let set = page
        .set_cookie(CSRF_COOKIE)
        .expect("the login page sets authgate_csrf");
    assert!(has_attribute(&set, "HttpOnly"), "{set}");
    assert!(has_attribute(&set, "SameSite=Strict"), "{set}");
    assert!(has_attribute(&set, "Path=/"), "{set}");
    assert!(!has_attribute(&set, "Secure"), "public_url is http: {set}");
    assert!(
        page.set_cookie(SESSION_COOKIE).is_none(),
        "no session before the login"
    );

    // The same browser keeps its cookie and gets the same token.
    let again = b.get(&format!("{PREFIX}/login")).await;
    assert!(again.set_cookie(CSRF_COOKIE).is_none(), "{again:?}");
    assert_eq!(csrf_field(&again.body).as_deref(), Some(token.as_str()));

    // JSON: {"csrf": "..."}, the same token for the same cookie.
    let json = b.get_json(&format!("{PREFIX}/login")).await;
    assert_eq!(json.status, StatusCode::OK, "{json:?}");
    assert_eq!(json.json(), json!({"csrf": token}));

    // A fresh JSON client gets a cookie and a token of its own.
    let mut other = gw.browser();
    let json = other.get_json(&format!("{PREFIX}/login")).await;
    assert_eq!(json.status, StatusCode::OK, "{json:?}");
    let other_token = json.json()["csrf"].as_str().unwrap_or_default().to_owned();
    assert!(!other_token.is_empty(), "{json:?}");
    assert_ne!(other_token, token, "a token belongs to one cookie");
    assert!(json.set_cookie(CSRF_COOKIE).is_some(), "{json:?}");

    // `rd` is kept in the form, HTML-escaped.
    let page = b
        .get(&format!(
            "{PREFIX}/login?rd=%22%3E%3Cscript%3Ealert(1)%3C%2Fscript%3E"
        ))
        .await;
    assert_eq!(page.status, StatusCode::OK);
    assert!(!page.body.contains("<script>alert(1)"), "{}", page.body);
}

#[tokio::test]
async fn login_post_without_a_valid_csrf_token_is_refused() {
    let (upstream, gw) = gateway_with_alice().await;
    let login = format!("{PREFIX}/login");
    let mut b = gw.browser();
    let token = b.csrf().await;
    let mut other = gw.browser();
    let other_token = other.csrf().await;

    let form = |csrf: Option<&str>| {
        let mut f = vec![("email", ALICE), ("password", ALICE_PW)];
        if let Some(csrf) = csrf {
            f.push(("csrf", csrf));
        }
        f.into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect::<Vec<_>>()
    };
    let cases = [
        ("no CSRF cookie", false, Some(token.as_str())),
        ("no csrf field", true, None),
        ("empty csrf field", true, Some("")),
        (
            "forged token",
            true,
            Some("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
        ),
        ("another browser's token", true, Some(other_token.as_str())),
    ];
    for (what, with_cookie, csrf) in cases {
        // Without the cookie: the same token, from a browser that lacks
        // the cookie it is bound to.
        let mut fresh = gw.browser();
        let sender = if with_cookie { &mut b } else { &mut fresh };
        let builder = sender.request(Method::POST, &login).form(&form(csrf));
        let r = sender.send(builder).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{what}: {r:?}");
        assert!(
            r.set_cookie(SESSION_COOKIE).is_none(),
            "{what}: a session cookie despite the CSRF failure: {r:?}"
        );
    }

    // JSON posts carry the token in X-CSRF-Token; without it: 403 JSON.
    let r = b
        .send(
            b.request(Method::POST, &login)
                .header("accept", "application/json")
                .json(&json!({"email": ALICE, "password": ALICE_PW})),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");
    assert_eq!(r.json()["error"], "csrf");
    assert!(r.set_cookie(SESSION_COOKIE).is_none());
    assert!(b.cookie(SESSION_COOKIE).is_none());

    // The same credentials with the right token work.
    b.login(ALICE, ALICE_PW).await;
    assert_eq!(upstream.hits(), 0);
}

#[tokio::test]
async fn wrong_password_and_unknown_email_get_the_same_401() {
    let (_upstream, gw) = gateway_with_alice().await;
    let mut b = gw.browser();

    let wrong = b.post_login(ALICE, "not the password", None).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED, "{wrong:?}");
    assert!(
        is_login_form(&wrong.body),
        "the form is shown again: {}",
        wrong.body
    );
    assert!(
        wrong.body.contains(&format!("value=\"{ALICE}\"")),
        "email kept"
    );
    assert!(wrong.set_cookie(SESSION_COOKIE).is_none());
    let message = alert(&wrong.body).expect("an error message on the page");
    assert!(!message.is_empty());

    let unknown = b
        .post_login("nobody@example.com", "not the password", None)
        .await;
    assert_eq!(unknown.status, StatusCode::UNAUTHORIZED, "{unknown:?}");
    assert!(is_login_form(&unknown.body));
    assert_eq!(
        alert(&unknown.body).as_deref(),
        Some(message.as_str()),
        "unknown email and wrong password must read the same"
    );
    assert!(unknown.set_cookie(SESSION_COOKIE).is_none());

    // JSON: the same code and message for both.
    let csrf = b.csrf().await;
    let mut answers = Vec::new();
    for email in [ALICE, "nobody@example.com"] {
        let r = b
            .send(
                b.request(Method::POST, &format!("{PREFIX}/login"))
                    .header("accept", "application/json")
                    .header("x-csrf-token", &csrf)
                    .json(&json!({"email": email, "password": "nope"})),
            )
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{email}: {r:?}");
        assert_eq!(r.json()["error"], "invalid_credentials", "{email}");
        answers.push(r.json());
    }
    assert_eq!(answers[0], answers[1]);
    assert!(b.cookie(SESSION_COOKIE).is_none());
}

#[tokio::test]
async fn right_password_sets_a_lax_http_only_session_cookie_and_follows_rd() {
    let (_upstream, gw) = gateway_with_alice().await;
    let base = gw.base();
    let mut b = gw.browser();

    let rd = format!("{base}/app/page?x=1");
    let r = b.post_login(ALICE, ALICE_PW, Some(&rd)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{r:?}");
    assert_eq!(r.location(), rd);
    let set = r
        .set_cookie(SESSION_COOKIE)
        .expect("Set-Cookie authgate_session");
    assert!(has_attribute(&set, "HttpOnly"), "{set}");
    assert!(has_attribute(&set, "SameSite=Lax"), "{set}");
    assert!(has_attribute(&set, "Path=/"), "{set}");
    assert!(!has_attribute(&set, "Secure"), "public_url is http: {set}");
    assert!(
        !cookie_attributes(&set)
            .iter()
            .any(|a| a.to_ascii_lowercase().starts_with("domain")),
        "no Domain without session.cookie_domain: {set}"
    );
    let first = b.cookie(SESSION_COOKIE).unwrap().to_owned();

    // The cookie reaches the page it was sent to.
    let page = b.get("/app/page?x=1").await.echo();
    assert_eq!(page.header("remote-user").as_deref(), Some(ALICE));
    assert_eq!(page.uri(), "/app/page?x=1");

    // A login from the same browser issues a new id and ends the old one;
    // an `rd` to another host falls back to the public root.
    let r = b
        .post_login(ALICE, ALICE_PW, Some("https://evil.example/"))
        .await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{r:?}");
    assert_eq!(r.location(), format!("{base}/"));
    let second = b.cookie(SESSION_COOKIE).unwrap().to_owned();
    assert_ne!(first, second, "a login issues a new session id");
    let mut replay = gw.browser();
    replay.set_cookie_value(SESSION_COOKIE, &first);
    let r = replay.get("/app/page").await;
    assert_eq!(
        r.status,
        StatusCode::FOUND,
        "the session before the login must end: {r:?}"
    );

    // Other unsafe rd values fall back too; a relative one is resolved.
    let port = gw.setup().port;
    let other_port = format!("http://127.0.0.1:{}/", free_port());
    let userinfo = format!("http://user@127.0.0.1:{port}/");
    let cases = [
        ("//evil.example/x", format!("{base}/")),
        ("javascript:alert(1)", format!("{base}/")),
        (other_port.as_str(), format!("{base}/")),
        (userinfo.as_str(), format!("{base}/")),
        ("/reports?q=1", format!("{base}/reports?q=1")),
    ];
    for (rd, expected) in cases {
        let r = b.post_login(ALICE, ALICE_PW, Some(rd)).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{rd}: {r:?}");
        assert_eq!(r.location(), expected, "rd {rd:?}");
    }

    // The email is matched in any letter case; the identity sent upstream
    // is the one in the users file.
    let mut shouting = gw.browser();
    shouting.login("  ALICE@Example.COM ", ALICE_PW).await;
    let echo = shouting.get("/case").await.echo();
    assert_eq!(echo.header("remote-user").as_deref(), Some(ALICE));
    assert_eq!(echo.header("remote-email").as_deref(), Some(ALICE));

    // JSON login: 200 {"state": "one_factor", "next": rd} and the cookie.
    let mut json_client = gw.browser();
    let csrf = json_client
        .get_json(&format!("{PREFIX}/login"))
        .await
        .json()["csrf"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = json_client
        .send(
            json_client
                .request(Method::POST, &format!("{PREFIX}/login"))
                .header("accept", "application/json")
                .header("x-csrf-token", &csrf)
                .json(&json!({"email": ALICE, "password": ALICE_PW, "rd": rd})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json(), json!({"state": "one_factor", "next": rd}));
    assert!(r.set_cookie(SESSION_COOKIE).is_some(), "{r:?}");
    let page = json_client.get("/app/page").await.echo();
    assert_eq!(page.header("remote-user").as_deref(), Some(ALICE));

    // The log tells who logged in, never the password or a session id.
    let log = gw.stderr();
    assert!(
        log.contains("login succeeded") && log.contains(ALICE),
        "{log}"
    );
    assert!(!log.contains(ALICE_PW), "the password is in the log");
    for cookie in [&first, &second] {
        // The signed value ends with the 43-character session id.
        let id = &cookie[cookie.len().saturating_sub(43)..];
        assert!(!log.contains(id), "a session id is in the log");
    }
}

/// DESIGN.md: `Secure` exactly when `server.public_url` is https, also
/// when a proxy in front terminates TLS and authgate itself speaks http.
#[tokio::test]
async fn an_https_public_url_makes_both_cookies_secure() {
    let upstream = Upstream::start().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    let public = format!("https://127.0.0.1:{}", setup.port);
    setup.set("server.public_url", public.as_str());
    setup.add_alice().await;
    let gw = setup.start().await;
    let mut b = gw.browser();

    let page = b.get(&format!("{PREFIX}/login")).await;
    let csrf = page.set_cookie(CSRF_COOKIE).expect("CSRF cookie");
    assert!(has_attribute(&csrf, "Secure"), "{csrf}");

    let rd = format!("{public}/app");
    let r = b.post_login(ALICE, ALICE_PW, Some(&rd)).await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{r:?}");
    assert_eq!(r.location(), rd);
    let session = r.set_cookie(SESSION_COOKIE).expect("session cookie");
    assert!(has_attribute(&session, "Secure"), "{session}");
    assert!(has_attribute(&session, "HttpOnly"), "{session}");

    // The redirect to the login page uses the public (https) URL.
    let r = gw.browser().get("/app?x=1").await;
    assert_eq!(r.status, StatusCode::FOUND, "{r:?}");
    assert_eq!(r.location(), login_redirect(&public, "/app?x=1"));
}
