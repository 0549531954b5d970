//! Test 1: a request without a session gets DESIGN.md's "needs login"
//! answer and never reaches the upstream.

use reqwest::{Method, StatusCode};

use crate::support::*;

#[tokio::test]
async fn anonymous_requests_get_the_needs_login_answer_and_never_reach_the_upstream() {
    let upstream = Upstream::start().await;
    let setup = Setup::new(Some(&upstream.url()));
    setup.add_alice().await;
    let gw = setup.start().await;
    let base = gw.base();
    let mut b = gw.browser();
    let path = "/app/page?x=1&y=two%20words";

    // A browser GET: 302 to the login page with the original URL in `rd`.
    let r = b.get(path).await;
    assert_eq!(r.status, StatusCode::FOUND, "{r:?}");
    assert_eq!(r.location(), login_redirect(&base, path));
    assert!(
        r.location().starts_with(&format!(
            "{base}{PREFIX}/login?rd=http%3A%2F%2F127.0.0.1%3A"
        )),
        "rd must be percent-encoded: {}",
        r.location()
    );
    assert_eq!(
        query_param(r.location(), "rd").as_deref(),
        Some(format!("{base}{path}").as_str())
    );
    assert!(
        r.set_cookie(SESSION_COOKIE).is_none(),
        "no session for anonymous"
    );

    // HEAD and OPTIONS are safe methods too: 302.
    for method in [Method::HEAD, Method::OPTIONS] {
        let req = b
            .request(method.clone(), path)
            .header("accept", "text/html");
        let r = b.send(req).await;
        assert_eq!(r.status, StatusCode::FOUND, "{method}: {r:?}");
        assert_eq!(r.location(), login_redirect(&base, path), "{method}");
    }

    // Other methods: 303, so that the browser follows with a GET.
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let req = b
            .request(method.clone(), "/api/things")
            .header("accept", "text/html,application/xhtml+xml")
            .body("name=x");
        let r = b.send(req).await;
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{method}: {r:?}");
        assert_eq!(r.location(), login_redirect(&base, "/api/things"));
    }

    // No Accept header at all counts as a browser (raw: reqwest adds one).
    let port = gw.setup().port;
    let raw = raw_request(
        port,
        format!("GET /x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n")
            .as_bytes(),
    )
    .await;
    assert_eq!(raw.status, 302, "{raw:?}");
    assert_eq!(
        raw.header("location"),
        Some(login_redirect(&base, "/x").as_str())
    );

    // JSON clients (and XHR) get 401 with the JSON error instead.
    for (name, value) in [
        ("accept", "application/json"),
        ("x-requested-with", "XMLHttpRequest"),
    ] {
        for method in [Method::GET, Method::POST] {
            let req = b.request(method.clone(), path).header(name, value);
            let r = b.send(req).await;
            assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{name} {method}: {r:?}");
            assert!(r.header("location").is_none(), "{r:?}");
            assert!(
                r.header("content-type")
                    .is_some_and(|t| t.starts_with("application/json")),
                "{r:?}"
            );
            let body = r.json();
            assert_eq!(body["error"], "login_required", "{body}");
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }

    // A cookie the gateway did not sign is no session.
    b.set_cookie_value(
        SESSION_COOKIE,
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    );
    let r = b.get(path).await;
    assert_eq!(r.status, StatusCode::FOUND, "unsigned cookie: {r:?}");
    b.set_cookie_value(SESSION_COOKIE, "garbage");
    let r = b.get(path).await;
    assert_eq!(r.status, StatusCode::FOUND, "garbage cookie: {r:?}");

    // Paths that merely share the prefix belong to the upstream: login too.
    let r = b.get("/_authgatex/page").await;
    assert_eq!(r.status, StatusCode::FOUND, "{r:?}");

    assert_eq!(upstream.hits(), 0, "the upstream was called");
}
