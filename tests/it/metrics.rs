//! Metrics: Prometheus text on `metrics.listen` after a few requests, with
//! requests by route and status, login outcomes, forward-auth decisions,
//! the live-sessions gauge and the upstream latency histogram; `/metrics`
//! on the public listener never serves them.

use std::time::Duration;

use reqwest::StatusCode;

use crate::support::*;

/// The address the gateway logged for its metrics listener (it was told
/// to bind port 0, so no two tests fight over a port).
pub async fn metrics_addr(gw: &Gateway) -> String {
    let mut found = None;
    let logged = eventually(100, Duration::from_millis(50), || {
        found = gw
            .stderr()
            .lines()
            .rev()
            .filter(|l| l.contains("metrics listening"))
            .filter_map(|l| l.split("listen=").nth(1))
            .filter_map(|rest| rest.split_whitespace().next())
            .map(str::to_owned)
            .next();
        let done = found.is_some();
        async move { done }
    })
    .await;
    assert!(logged, "no \"metrics listening\" line:\n{}", gw.stderr());
    found.unwrap()
}

pub async fn scrape(addr: &str) -> (StatusCode, String, String) {
    let r = client()
        .get(format!("http://{addr}/metrics"))
        .send()
        .await
        .expect("scrape the metrics listener");
    let status = r.status();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    (status, content_type, r.text().await.unwrap())
}

fn assert_line(text: &str, line: &str) {
    assert!(
        text.lines().any(|l| l == line),
        "missing the line {line:?} in:\n{text}"
    );
}

fn assert_not_prometheus(r: &Reply, what: &str) {
    assert!(
        !r.body.contains("# TYPE") && !r.body.contains("authgate_http_requests_total"),
        "{what}: the public listener served metrics: {r:?}"
    );
}

fn auth_request(b: &Browser, url: &str) -> reqwest::RequestBuilder {
    b.request(reqwest::Method::GET, &format!("{PREFIX}/auth-request"))
        .header("x-original-url", url)
        .header("x-original-method", "GET")
}

#[tokio::test]
async fn metrics_listener_counts_requests_logins_decisions_and_latency() {
    let upstream = Upstream::start().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    setup
        .set("metrics.listen", "127.0.0.1:0")
        .set("regulation.max_failures", 2)
        .set("server.trusted_proxies", vec!["127.0.0.1/32"]);
    setup.add_alice().await;
    let gw = setup.start().await;
    let addr = metrics_addr(&gw).await;
    let app = gw.url("/app");

    // Anonymous: proxy mode sends the browser to the login page, nginx's
    // auth-request says 401.
    let mut anon = gw.browser();
    assert_eq!(anon.get("/app").await.status, StatusCode::FOUND);
    let r = anon.send(auth_request(&anon, &app)).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");

    // Login outcomes: one bad password, a ban, one success.
    let mut mallory = gw.browser();
    let r = mallory
        .post_login("mallory@example.com", "guess 1", None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    let r = mallory
        .post_login("mallory@example.com", "guess 2", None)
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{r:?}");
    let r = mallory
        .post_login("mallory@example.com", "guess 3", None)
        .await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS, "{r:?}");
    let mut alice = gw.browser();
    alice.login(ALICE, ALICE_PW).await;

    // Confirmed: through the proxy (upstream latency) and forward-auth.
    assert_eq!(
        alice
            .get("/app")
            .await
            .echo()
            .header("remote-user")
            .as_deref(),
        Some(ALICE)
    );
    let r = alice.send(auth_request(&alice, &app)).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    // A target the app could read differently (a dot segment, forwarded
    // as sent): refused, and counted as such.
    let r = alice.send(auth_request(&alice, &gw.url("/x/../app"))).await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{r:?}");

    // /metrics on the public listener is the upstream's path, behind the
    // login like any other; it never answers with our numbers.
    let r = anon.get("/metrics").await;
    assert_eq!(r.status, StatusCode::FOUND, "{r:?}");
    assert_not_prometheus(&r, "anonymous");
    let r = alice.get("/metrics").await;
    assert_not_prometheus(&r, "logged in");
    assert!(r.headers.contains_key("x-test-upstream"), "{r:?}");

    let (status, content_type, text) = scrape(&addr).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    for line in [
        // Requests by route kind and status.
        "authgate_http_requests_total{route=\"proxy\",status=\"302\"} 2",
        "authgate_http_requests_total{route=\"proxy\",status=\"200\"} 2",
        "authgate_http_requests_total{route=\"login\",status=\"401\"} 2",
        "authgate_http_requests_total{route=\"login\",status=\"429\"} 1",
        "authgate_http_requests_total{route=\"login\",status=\"303\"} 1",
        "authgate_http_requests_total{route=\"auth_request\",status=\"401\"} 1",
        "authgate_http_requests_total{route=\"auth_request\",status=\"200\"} 1",
        // Logins by outcome.
        "authgate_logins_total{outcome=\"success\"} 1",
        "authgate_logins_total{outcome=\"bad_password\"} 2",
        "authgate_logins_total{outcome=\"banned\"} 1",
        "authgate_logins_total{outcome=\"store_unavailable\"} 0",
        // Forward-auth decisions by outcome.
        "authgate_forward_auth_decisions_total{endpoint=\"nginx\",outcome=\"allowed\"} 1",
        "authgate_forward_auth_decisions_total{endpoint=\"nginx\",outcome=\"needs_login\"} 1",
        "authgate_forward_auth_decisions_total{endpoint=\"nginx\",outcome=\"denied\"} 0",
        "authgate_forward_auth_decisions_total{endpoint=\"nginx\",outcome=\"refused\"} 1",
        "authgate_http_requests_total{route=\"auth_request\",status=\"403\"} 1",
        // Live sessions and the store.
        "authgate_live_sessions 1",
        "authgate_store_healthy 1",
        // The upstream latency histogram: two forwarded requests.
        "# TYPE authgate_upstream_response_seconds histogram",
        "authgate_upstream_response_seconds_bucket{le=\"+Inf\"} 2",
        "authgate_upstream_response_seconds_count 2",
    ] {
        assert_line(&text, line);
    }
    assert!(
        text.contains("authgate_http_requests_total{route=\"healthz\",status=\"200\"}"),
        "{text}"
    );
    assert!(
        text.contains("authgate_upstream_response_seconds_bucket{le=\"0.001\"}"),
        "{text}"
    );
    // Nothing from the client (paths, emails) becomes a label.
    assert!(
        !text.contains("/app") && !text.contains("mallory"),
        "{text}"
    );

    // Only /metrics on the metrics listener.
    let other = client()
        .get(format!("http://{addr}/"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_forward_auth_deployment_does_not_serve_metrics_publicly() {
    let mut setup = Setup::new(None);
    setup.set("metrics.listen", "127.0.0.1:0");
    std::fs::write(setup.path("users.toml"), "").unwrap();
    let gw = setup.start().await;
    let addr = metrics_addr(&gw).await;
    let mut b = gw.browser();
    let r = b.get("/metrics").await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    assert_not_prometheus(&r, "forward-auth deployment");
    let (status, _, text) = scrape(&addr).await;
    assert_eq!(status, StatusCode::OK);
    assert_line(
        &text,
        "authgate_http_requests_total{route=\"not_found\",status=\"404\"} 1",
    );
}

/// Second-factor outcomes and the Authy API calls, against the Authy
/// sandbox: a wrong code, an approved push, and a push that cannot be sent
/// because Authy is gone.
#[tokio::test]
async fn second_factor_outcomes_and_authy_calls_are_counted() {
    use authgate::sandbox::{Sandbox, SandboxConfig};

    const API_KEY: &str = "authy-metrics-sandbox-key-0123456789";
    let upstream = Upstream::start().await;
    let sandbox = Sandbox::start("127.0.0.1:0".parse().unwrap(), SandboxConfig::new(API_KEY))
        .await
        .expect("the Authy sandbox starts");
    let mut setup = Setup::new(Some(&upstream.url()));
    setup
        .set("metrics.listen", "127.0.0.1:0")
        .set("auth.second_factor", "required")
        .set("authy.api_key", API_KEY)
        .set("authy.api_url", sandbox.url())
        .set("authy.poll_interval", "1h");
    setup.write_config();
    let config = setup.config_path();
    let add = [
        "user",
        "add",
        "--config",
        config.to_str().unwrap(),
        "--email",
        ALICE,
        "--country-code",
        "1",
        "--phone",
        "5551234567",
    ];
    assert_success(
        &setup.run(&add, &format!("{ALICE_PW}\n"), &[]).await,
        "user add",
    );
    let gw = setup.start().await;
    sandbox
        .set_callback_url(Some(gw.url(&format!("{PREFIX}/authy/callback"))))
        .unwrap();
    let addr = metrics_addr(&gw).await;

    // Password, then the verify page: the user is registered, a push sent.
    let rd = gw.url("/app");
    let verify = format!(
        "{PREFIX}/verify?{}",
        url::form_urlencoded::Serializer::new(String::new())
            .append_pair("rd", &rd)
            .finish()
    );
    let mut b = gw.browser();
    assert_eq!(
        b.post_login(ALICE, ALICE_PW, Some(&rd)).await.status,
        StatusCode::SEE_OTHER
    );
    let page = b.get(&verify).await;
    assert_eq!(page.status, StatusCode::OK, "{page:?}");

    // A wrong code.
    let taken = sandbox.snapshot()["users"].to_string();
    let wrong = ["0000000", "1111111", "2222222"]
        .into_iter()
        .find(|c| !taken.contains(c))
        .unwrap();
    let csrf = csrf_field(&page.body).expect("csrf on the verify page");
    let post = b
        .request(reqwest::Method::POST, &format!("{PREFIX}/verify"))
        .form(&[
            ("code", wrong),
            ("csrf", csrf.as_str()),
            ("rd", rd.as_str()),
        ]);
    assert_eq!(b.send(post).await.status, StatusCode::UNAUTHORIZED);

    // The push, approved on the "phone": the status poll steps up.
    let uuid = sandbox.snapshot()["approval_requests"][0]["uuid"]
        .as_str()
        .expect("one approval request")
        .to_owned();
    let decided = client()
        .post(format!("{}/_sandbox/api/approvals/{uuid}", sandbox.url()))
        .json(&serde_json::json!({"status": "approved"}))
        .send()
        .await
        .unwrap();
    assert_eq!(decided.status(), StatusCode::OK);
    let status = b.get_json(&format!("{PREFIX}/status")).await;
    assert_eq!(status.json()["status"], "approved", "{status:?}");

    // Authy gone: a new login's push cannot be sent.
    sandbox.shutdown();
    let mut second = gw.browser();
    assert_eq!(
        second.post_login(ALICE, ALICE_PW, Some(&rd)).await.status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(second.get(&verify).await.status, StatusCode::OK);

    let (_, _, text) = scrape(&addr).await;
    for line in [
        "authgate_second_factor_total{method=\"code\",outcome=\"invalid\"} 1",
        "authgate_second_factor_total{method=\"push\",outcome=\"success\"} 1",
        "authgate_authy_request_seconds_count{call=\"register_user\"} 1",
        "authgate_authy_request_seconds_count{call=\"create_approval_request\"} 2",
        "authgate_authy_request_seconds_count{call=\"verify_token\"} 1",
        "authgate_authy_errors_total{call=\"create_approval_request\",kind=\"unavailable\"} 1",
    ] {
        assert_line(&text, line);
    }
    assert!(
        !text.contains("authgate_authy_errors_total{call=\"verify_token\""),
        "a wrong code is no API error:\n{text}"
    );
}
