//! Test 6: logout. GET shows a form and changes nothing; POST needs the
//! CSRF token, ends the session on the server and clears the cookie.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn logout_needs_a_post_with_csrf_and_ends_the_session_for_good() {
    let upstream = Upstream::start().await;
    let setup = Setup::new(Some(&upstream.url()));
    setup.add_alice().await;
    let gw = setup.start().await;
    let base = gw.base();
    let logout = format!("{PREFIX}/logout");
    let mut b = gw.browser();
    let old = b.login(ALICE, ALICE_PW).await;

    // GET: a page with a logout button, and the session is untouched.
    let page = b.get(&logout).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");
    assert!(page.body.contains("<form"), "{}", page.body);
    // minijinja escapes '/' in attribute values as `&#x2f;`.
    let unescaped = page.body.replace("&#x2f;", "/").replace("&#47;", "/");
    assert!(
        unescaped.contains(&format!("action=\"{logout}\"")),
        "{}",
        page.body
    );
    assert!(csrf_field(&page.body).is_some(), "{}", page.body);
    assert!(page.body.contains(ALICE), "shows who is logged in");
    assert!(page.set_cookie(SESSION_COOKIE).is_none(), "{page:?}");
    let json_page = b.get_json(&logout).await;
    assert_eq!(json_page.status, StatusCode::OK);
    assert_eq!(json_page.json()["user"], ALICE);
    assert_eq!(
        b.get("/after-get")
            .await
            .echo()
            .header("remote-user")
            .as_deref(),
        Some(ALICE),
        "GET logout must not end the session"
    );

    // POST without the token, or with a wrong one: 403, nothing changes.
    for form in [vec![], vec![("csrf", "AAAA")]] {
        let r = b.send(b.request(Method::POST, &logout).form(&form)).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{form:?}: {r:?}");
        assert!(r.set_cookie(SESSION_COOKIE).is_none(), "{r:?}");
    }
    assert_eq!(
        b.get("/after-403")
            .await
            .echo()
            .header("remote-user")
            .as_deref(),
        Some(ALICE)
    );

    // POST with the token: 303 to the login page, the cookie cleared.
    let r = b.logout().await;
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{r:?}");
    assert_eq!(r.location(), login_redirect(&base, "/"));
    let clear = r
        .set_cookie(SESSION_COOKIE)
        .expect("the logout clears the session cookie");
    assert!(
        clear.starts_with(&format!("{SESSION_COOKIE}=;")),
        "empty value: {clear}"
    );
    assert!(
        has_attribute(&clear, "Max-Age=0")
            || cookie_attributes(&clear).iter().any(|a| a
                .to_ascii_lowercase()
                .starts_with("expires=thu, 01 jan 1970")),
        "expired: {clear}"
    );
    assert!(has_attribute(&clear, "Path=/"), "{clear}");
    assert!(b.cookie(SESSION_COOKIE).is_none());

    // The old cookie is dead on the server, not just in the browser.
    let hits = upstream.hits();
    let mut replay = gw.browser();
    replay.set_cookie_value(SESSION_COOKIE, &old);
    let r = replay.get("/replayed").await;
    assert_eq!(r.status, StatusCode::FOUND, "replayed cookie: {r:?}");
    assert_eq!(r.location(), login_redirect(&base, "/replayed"));
    assert_eq!(
        upstream.hits(),
        hits,
        "a replayed cookie reached the upstream"
    );

    // JSON clients: token in X-CSRF-Token, 200 {"state": "anonymous"}.
    let second = b.login(ALICE, ALICE_PW).await;
    let csrf = b.csrf().await;
    let r = b
        .send(
            b.request(Method::POST, &logout)
                .header("accept", "application/json")
                .header("x-csrf-token", &csrf),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(r.json()["state"], json!("anonymous"));
    assert!(r.set_cookie(SESSION_COOKIE).is_some());
    replay.set_cookie_value(SESSION_COOKIE, &second);
    assert_eq!(replay.get("/x").await.status, StatusCode::FOUND);
}
