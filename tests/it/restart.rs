//! Test 7: sessions survive a graceful restart (SIGTERM, exit 0, same
//! store), and `authgate healthcheck` follows the gateway's state.

use reqwest::StatusCode;

use crate::support::*;

#[tokio::test]
async fn sessions_survive_a_graceful_restart() {
    let upstream = Upstream::start().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    // No periodic flush to lean on: what survives is what the graceful
    // stop wrote.
    setup.set("store.flush_interval", "1h");
    setup.add_alice().await;
    let mut gw = setup.start().await;
    let config = gw.setup().config_path();
    let config = config.to_str().unwrap();
    let mut b = gw.browser();
    let cookie = b.login(ALICE, ALICE_PW).await;
    assert_eq!(
        b.get("/before")
            .await
            .echo()
            .header("remote-user")
            .as_deref(),
        Some(ALICE)
    );
    let health = gw
        .setup()
        .run(&["healthcheck", "--config", config], "", &[])
        .await;
    assert_success(&health, "healthcheck of a running gateway");

    let status = gw.stop().await;
    assert_eq!(
        status.code(),
        Some(0),
        "exit status after SIGTERM: {status:?}"
    );
    assert!(gw.stderr().contains("authgate stopped"), "{}", gw.stderr());
    let health = gw
        .setup()
        .run(&["healthcheck", "--config", config], "", &[])
        .await;
    assert_eq!(
        health.status.code(),
        Some(1),
        "healthcheck of a stopped gateway"
    );

    gw.restart().await;
    // A fresh browser that only holds the old cookie.
    let mut again = gw.browser();
    again.set_cookie_value(SESSION_COOKIE, &cookie);
    let r = again.get("/after").await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the session did not survive: {r:?}"
    );
    let echo = r.echo();
    assert_eq!(echo.header("remote-user").as_deref(), Some(ALICE));
    assert_eq!(echo.header("remote-groups").as_deref(), Some("a,b"));
    assert_eq!(upstream.hits(), 2);

    // A second restart works as well (the store was closed cleanly).
    assert_eq!(gw.stop().await.code(), Some(0));
    gw.restart().await;
    assert_eq!(again.get("/third").await.status, StatusCode::OK);
}
