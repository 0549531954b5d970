//! Test 10: an unreachable or slow upstream gives a clear 502/504, and the
//! gateway keeps serving.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::*;

#[tokio::test]
async fn upstream_down_gives_502_and_the_gateway_keeps_serving() {
    let dead = free_port();
    let setup = Setup::new(Some(&format!("http://127.0.0.1:{dead}")));
    setup.add_alice().await;
    let gw = setup.start().await;
    let mut b = gw.browser();
    b.login(ALICE, ALICE_PW).await;

    for round in 0..2 {
        let r = b.get("/app").await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "round {round}: {r:?}");
        assert!(
            r.header("content-type")
                .is_some_and(|t| t.starts_with("text/html")),
            "{r:?}"
        );
        assert!(r.body.contains("502"), "{}", r.body);
        assert!(
            !r.body.contains(&dead.to_string()),
            "the page leaks the upstream address: {}",
            r.body
        );

        let r = b.get_json("/app").await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "{r:?}");
        assert_eq!(r.json()["error"], json!("upstream_unavailable"));

        let r = b.send(b.request(Method::POST, "/app").body("x=1")).await;
        assert_eq!(r.status, StatusCode::BAD_GATEWAY, "POST: {r:?}");

        // Still serving its own pages, and the session is intact.
        assert_eq!(
            b.get(&format!("{PREFIX}/healthz")).await.status,
            StatusCode::OK
        );
        assert_eq!(
            b.get(&format!("{PREFIX}/login")).await.status,
            StatusCode::OK
        );
        let who = b.get_json(&format!("{PREFIX}/logout")).await.json();
        assert_eq!(who["user"], json!(ALICE));
    }
    assert!(
        gw.stderr().contains("upstream"),
        "the failure is logged: {}",
        gw.stderr()
    );
}

#[tokio::test]
async fn slow_upstream_gives_504_after_response_timeout() {
    let upstream = Upstream::start().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    setup.set("upstream.response_timeout", "1s");
    setup.add_alice().await;
    let gw = setup.start().await;
    let mut b = gw.browser();
    b.login(ALICE, ALICE_PW).await;

    let req = b
        .request(Method::GET, "/slow")
        .header("accept", "application/json")
        .header(UP_DELAY_MS, "4000");
    let r = b.send(req).await;
    assert_eq!(r.status, StatusCode::GATEWAY_TIMEOUT, "{r:?}");
    assert_eq!(r.json()["error"], json!("upstream_timeout"));

    // A prompt answer right after is fine.
    let echo = b.get("/fast").await.echo();
    assert_eq!(echo.header("remote-user").as_deref(), Some(ALICE));
}
