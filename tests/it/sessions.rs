//! Session lifetime: activity keeps a session alive; idleness ends it.

use std::time::Duration;

use reqwest::StatusCode;

use crate::support::*;

/// `session.idle_timeout` is a valid setting at any length. With one
/// shorter than the gateway's idle-refresh interval (about a minute), an
/// active user must not be logged out mid-work. (Refusing such a value at
/// start-up, naming `session.idle_timeout`, would be a fix as well.)
#[tokio::test]
async fn activity_keeps_a_short_idle_timeout_session_alive_and_idleness_ends_it() {
    let upstream = Upstream::start().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    setup.set("session.idle_timeout", "3s");
    setup.add_alice().await;
    let config = setup.config_path();
    let check = setup
        .run(
            &["check-config", "--config", config.to_str().unwrap()],
            "",
            &[],
        )
        .await;
    if check.status.code() == Some(1)
        && String::from_utf8_lossy(&check.stderr).contains("session.idle_timeout")
    {
        return; // refused with the key named: fine too
    }
    let gw = setup.start().await;
    let mut b = gw.browser();
    b.login(ALICE, ALICE_PW).await;

    // Twice the idle timeout of steady activity, a request every 0.5 s.
    for i in 0..12 {
        let r = b.get(&format!("/busy/{i}")).await;
        assert_eq!(
            r.status,
            StatusCode::OK,
            "request {i} ({:.1} s after the login, never idle for more than 0.5 s) \
             was sent to the login page: {r:?}",
            i as f64 * 0.5
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // Then idle for longer than the timeout: the session is over.
    tokio::time::sleep(Duration::from_secs(5)).await;
    let r = b.get("/after-idle").await;
    assert_eq!(r.status, StatusCode::FOUND, "{r:?}");
}
