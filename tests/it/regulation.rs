//! Test 5: brute-force regulation of password attempts.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::support::*;

const BOB: &str = "bob@example.com";
const BOB_PW: &str = "bob's own password";

fn assert_banned(r: &Reply, what: &str) {
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{what}: {r:?}");
    assert!(r.set_cookie(SESSION_COOKIE).is_none(), "{what}: {r:?}");
    let retry: u64 = r
        .header("retry-after")
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{what}: no Retry-After: {r:?}"));
    assert!(
        (1..=15 * 60).contains(&retry),
        "{what}: Retry-After {retry}"
    );
}

#[tokio::test]
async fn max_failures_wrong_passwords_ban_the_email_even_with_the_right_password() {
    let upstream = Upstream::start().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    setup
        .set("regulation.max_failures", 3)
        .set("regulation.ban", "15m")
        // The test client must not escape the ban with X-Forwarded-For.
        .set("server.trusted_proxies", Vec::<String>::new());
    setup.add_alice().await;
    setup.add_user(BOB, "Bob", "", BOB_PW).await;
    let gw = setup.start().await;
    let mut b = gw.browser();

    for email in [ALICE, "ghost@example.com"] {
        for attempt in 1..=3 {
            let r = b.post_login(email, "wrong password", None).await;
            assert_eq!(
                r.status,
                StatusCode::UNAUTHORIZED,
                "{email} attempt {attempt}: {r:?}"
            );
        }
        // The next attempt is refused whatever the password.
        let password = if email == ALICE { ALICE_PW } else { "anything" };
        let r = b.post_login(email, password, None).await;
        assert_banned(&r, email);
        assert!(
            r.body.contains("name=\"password\""),
            "the 429 page shows the form again: {}",
            r.body
        );
    }
    assert!(b.cookie(SESSION_COOKIE).is_none());

    // Unknown and known emails answer alike.
    let csrf = b.csrf().await;
    let mut answers = Vec::new();
    for email in [ALICE, "ghost@example.com"] {
        let r = b
            .send(
                b.request(Method::POST, &format!("{PREFIX}/login"))
                    .header("accept", "application/json")
                    .header("x-csrf-token", &csrf)
                    .json(&json!({"email": email, "password": "x"})),
            )
            .await;
        assert_banned(&r, email);
        assert_eq!(r.json()["error"], "rate_limited", "{email}");
        answers.push(r.json());
    }
    assert_eq!(answers[0], answers[1]);

    // Neither another letter case nor X-Forwarded-For gets around it.
    let r = b.post_login("ALICE@Example.COM", ALICE_PW, None).await;
    assert_banned(&r, "upper-case email");
    let csrf = b.csrf().await;
    let req = b
        .request(Method::POST, &format!("{PREFIX}/login"))
        .header("x-forwarded-for", "203.0.113.77")
        .form(&[("email", ALICE), ("password", ALICE_PW), ("csrf", &csrf)]);
    let r = b.send(req).await;
    assert_banned(&r, "X-Forwarded-For from an untrusted client");

    // The ban is per email (and address): bob still gets in.
    b.login(BOB, BOB_PW).await;
    let echo = b.get("/").await.echo();
    assert_eq!(echo.header("remote-user").as_deref(), Some(BOB));
    // All four identity headers are sent, empty when unknown.
    assert_eq!(echo.header_all("remote-groups"), [""]);
}

#[tokio::test]
async fn failures_across_emails_ban_the_address() {
    let (_upstream, gw) = regulated(100, 4).await;
    let mut b = gw.browser();
    for i in 0..4 {
        let r = b
            .post_login(&format!("user{i}@example.com"), "wrong", None)
            .await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{i}: {r:?}");
    }
    let r = b.post_login(ALICE, ALICE_PW, None).await;
    assert_banned(&r, "per-address limit");
}

/// A gateway with alice in front of an upstream, allowing `max_failures`
/// per (email, address) and `per_address` per address.
async fn regulated(max_failures: u32, per_address: u32) -> (Upstream, Gateway) {
    let upstream = Upstream::start().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    setup
        .set("regulation.max_failures", max_failures)
        .set("regulation.max_failures_per_address", per_address);
    setup.add_alice().await;
    let gw = setup.start().await;
    (upstream, gw)
}

/// Posts one login per password, all released at once with the browser's
/// cookies and CSRF token; the statuses, in the order of `attempts`.
async fn login_burst(b: &mut Browser, attempts: &[(String, String)]) -> Vec<StatusCode> {
    let csrf = b.csrf().await;
    let start = std::sync::Arc::new(tokio::sync::Barrier::new(attempts.len()));
    let posts: Vec<_> = attempts
        .iter()
        .map(|(email, password)| {
            let post = b
                .request(Method::POST, &format!("{PREFIX}/login"))
                // argon2 runs one at a time: a slow queue is not a failure.
                .timeout(std::time::Duration::from_secs(120))
                .form(&[("email", email), ("password", password), ("csrf", &csrf)]);
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                post.send().await.expect("login post").status()
            })
        })
        .collect();
    let mut statuses = Vec::new();
    for post in posts {
        statuses.push(post.await.expect("login task"));
    }
    statuses
}

fn count(statuses: &[StatusCode], wanted: StatusCode) -> usize {
    statuses.iter().filter(|s| **s == wanted).count()
}

#[tokio::test]
async fn a_concurrent_burst_checks_at_most_max_failures_passwords() {
    let (_upstream, gw) = regulated(5, 1000).await;
    let mut b = gw.browser();

    // 59 wrong passwords, then the right one, all at once.
    let mut attempts: Vec<_> = (0..59)
        .map(|i| (ALICE.to_owned(), format!("wrong password {i}")))
        .collect();
    attempts.push((ALICE.to_owned(), ALICE_PW.to_owned()));
    let statuses = login_burst(&mut b, &attempts).await;

    // 401: a wrong password was checked; 303: the right one was (and was
    // inside the limit); 429: refused before argon2 ran.
    let wrong = count(&statuses, StatusCode::UNAUTHORIZED);
    let right = count(&statuses, StatusCode::SEE_OTHER);
    let refused = count(&statuses, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        wrong + right <= 5,
        "{wrong} wrong and {right} right passwords checked, limit 5: {statuses:?}"
    );
    assert_eq!(wrong + right + refused, attempts.len(), "{statuses:?}");
    if wrong == 5 {
        let r = b.post_login(ALICE, ALICE_PW, None).await;
        assert_banned(&r, "after five checked wrong passwords");
    }
}

#[tokio::test]
async fn a_concurrent_burst_over_many_emails_checks_at_most_the_address_limit() {
    let (_upstream, gw) = regulated(100, 4).await;
    let mut b = gw.browser();

    let attempts: Vec<_> = (0..30)
        .map(|i| (format!("user{i}@example.com"), "wrong".to_owned()))
        .collect();
    let statuses = login_burst(&mut b, &attempts).await;
    let checked = count(&statuses, StatusCode::UNAUTHORIZED);
    let refused = count(&statuses, StatusCode::TOO_MANY_REQUESTS);
    assert!(
        checked <= 4,
        "{checked} passwords checked, limit 4: {statuses:?}"
    );
    assert_eq!(checked + refused, attempts.len(), "{statuses:?}");
}
