//! Test 8: the running gateway follows `authgate user add|remove` without
//! a restart.

use std::time::Duration;

use reqwest::StatusCode;

use crate::support::*;

const CAROL: &str = "carol@example.com";
const CAROL_PW: &str = "carol's password";

/// The watcher polls the file about once a second; 20 s is generous.
const TRIES: usize = 100;
const EVERY: Duration = Duration::from_millis(200);

#[tokio::test]
async fn removed_users_lose_their_session_and_added_users_can_log_in() {
    let upstream = Upstream::start().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    // Polling with login attempts must not trip the regulation.
    setup
        .set("regulation.max_failures", 1000)
        .set("regulation.max_failures_per_address", 1000);
    setup.add_alice().await;
    setup.add_user("bob@example.com", "Bob", "", "bob pw").await;
    let gw = setup.start().await;
    let mut alice = gw.browser();
    let cookie = alice.login(ALICE, ALICE_PW).await;
    assert_eq!(alice.get("/").await.status, StatusCode::OK);

    gw.setup().remove_user(ALICE).await;
    let base = gw.base();
    let logged_out = eventually(TRIES, EVERY, || {
        let base = base.clone();
        let cookie = cookie.clone();
        async move {
            let mut b = Browser::new(&base);
            b.set_cookie_value(SESSION_COOKIE, &cookie);
            b.get("/").await.status == StatusCode::FOUND
        }
    })
    .await;
    assert!(
        logged_out,
        "the removed user's session still works; stderr:\n{}",
        gw.stderr()
    );
    // Her password no longer works either.
    let r = gw.browser().post_login(ALICE, ALICE_PW, None).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");

    // A new user can log in without a restart.
    gw.setup().add_user(CAROL, "Carol", "ops", CAROL_PW).await;
    let logged_in = eventually(TRIES, EVERY, || {
        let base = base.clone();
        async move {
            let mut b = Browser::new(&base);
            b.post_login(CAROL, CAROL_PW, None).await.status == StatusCode::SEE_OTHER
        }
    })
    .await;
    assert!(logged_in, "carol cannot log in; stderr:\n{}", gw.stderr());
    let mut carol = gw.browser();
    carol.login(CAROL, CAROL_PW).await;
    let echo = carol.get("/carol").await.echo();
    assert_eq!(echo.header("remote-user").as_deref(), Some(CAROL));
    assert_eq!(echo.header("remote-groups").as_deref(), Some("ops"));

    // Adding alice back does not revive the session that ended.
    gw.setup().add_alice().await;
    let back = eventually(TRIES, EVERY, || {
        let base = base.clone();
        async move {
            let mut b = Browser::new(&base);
            b.post_login(ALICE, ALICE_PW, None).await.status == StatusCode::SEE_OTHER
        }
    })
    .await;
    assert!(back, "alice cannot log in again");
    let mut replay = gw.browser();
    replay.set_cookie_value(SESSION_COOKIE, &cookie);
    assert_eq!(replay.get("/").await.status, StatusCode::FOUND);
}
