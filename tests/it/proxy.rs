//! Test 4: what a confirmed request looks like at the upstream, and what
//! of the upstream's answer reaches the client.

use reqwest::{Method, StatusCode};

use crate::support::*;

/// A gateway that trusts no proxy, so the test client (127.0.0.1) is an
/// ordinary client whose `X-Forwarded-*` must be replaced; alice logged in.
async fn untrusting_gateway() -> (Upstream, Gateway, Browser) {
    let upstream = Upstream::start().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    setup.set("server.trusted_proxies", Vec::<String>::new());
    setup.add_alice().await;
    let gw = setup.start().await;
    let mut b = gw.browser();
    b.login(ALICE, ALICE_PW).await;
    (upstream, gw, b)
}

fn assert_identity(echo: &Echo) {
    assert_eq!(echo.header_all("remote-user"), [ALICE]);
    assert_eq!(echo.header_all("remote-name"), [ALICE_NAME]);
    assert_eq!(echo.header_all("remote-email"), [ALICE]);
    assert_eq!(echo.header_all("remote-groups"), ["a,b"]);
}

#[tokio::test]
async fn forged_identity_and_hop_by_hop_headers_never_reach_the_upstream() {
    let (upstream, gw, b) = untrusting_gateway().await;
    let port = gw.setup().port;
    // Raw, so that header names go out in the letter case written here.
    let request = format!(
        "GET /some/path?q=1 HTTP/1.1\r\n\
         Host: 127.0.0.1:{port}\r\n\
         Accept: */*\r\n\
         Cookie: {cookies}\r\n\
         Remote-User: mallory\r\n\
         remote_user: mallory\r\n\
         REMOTE-GROUPS: admins\r\n\
         Remote_Groups: admins\r\n\
         remote-email: mallory@evil.example\r\n\
         REMOTE_NAME: Mallory\r\n\
         Remote-User-Agent: kept\r\n\
         X-Custom: kept too\r\n\
         Connection: close, X-Hop-Secret\r\n\
         X-Hop-Secret: only for the next hop\r\n\
         Keep-Alive: timeout=5\r\n\
         Proxy-Authorization: Basic bWFsbG9yeTpwdw==\r\n\
         \r\n",
        cookies = b.cookie_header()
    );
    let raw = raw_request(port, request.as_bytes()).await;
    assert_eq!(raw.status, 200, "{raw:?}");
    let echo = Echo(serde_json::from_str(&raw.body).expect("the upstream's echo"));
    assert_eq!(echo.uri(), "/some/path?q=1");

    // Exactly the gateway's four values, however the client spelled them.
    assert_identity(&echo);
    for name in echo.header_names() {
        let normalized = name.replace('_', "-");
        if normalized.starts_with("remote-") && normalized != "remote-user-agent" {
            assert!(
                [
                    "remote-user",
                    "remote-name",
                    "remote-email",
                    "remote-groups"
                ]
                .contains(&name.as_str()),
                "a client copy {name:?} reached the upstream: {:?}",
                echo.0["headers"]
            );
        }
    }
    let everything = echo.0["headers"].to_string();
    assert!(!everything.contains("mallory"), "{everything}");
    assert!(!everything.contains("Mallory"), "{everything}");
    assert!(!everything.contains("admins"), "{everything}");

    // Ordinary headers pass; hop-by-hop ones (fixed or named in
    // Connection) do not.
    assert_eq!(echo.header("remote-user-agent").as_deref(), Some("kept"));
    assert_eq!(echo.header("x-custom").as_deref(), Some("kept too"));
    for hop in ["x-hop-secret", "keep-alive", "proxy-authorization"] {
        assert!(
            echo.header_all(hop).is_empty(),
            "hop-by-hop {hop} was forwarded: {:?}",
            echo.0["headers"]
        );
    }
    assert!(
        echo.header_all("connection")
            .iter()
            .all(|v| !v.to_ascii_lowercase().contains("x-hop-secret")),
        "{:?}",
        echo.header_all("connection")
    );
    assert_eq!(upstream.hits(), 1);
}

#[tokio::test]
async fn gateway_cookies_are_stripped_and_forwarded_for_headers_replaced() {
    let (_upstream, gw, mut b) = untrusting_gateway().await;
    let host = format!("127.0.0.1:{}", gw.setup().port);
    assert!(b.cookie(CSRF_COOKIE).is_some() && b.cookie(SESSION_COOKIE).is_some());
    // Sorted jar: a_first, authgate_csrf, authgate_session, other, zz_last.
    b.set_cookie_value("a_first", "1");
    b.set_cookie_value("other", "two");
    b.set_cookie_value("zz_last", "3");
    let req = b
        .request(Method::GET, "/cookies?x=%20y")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-host", "evil.example")
        .header("x-forwarded-proto", "https");
    let echo = b.send(req).await.echo();

    assert_identity(&echo);
    assert_eq!(echo.uri(), "/cookies?x=%20y");
    let cookies = echo.header_all("cookie").join("; ");
    assert!(
        !cookies.contains(SESSION_COOKIE),
        "the session cookie reached the upstream: {cookies}"
    );
    assert!(
        !cookies.contains(CSRF_COOKIE),
        "the CSRF cookie reached the upstream: {cookies}"
    );
    assert_eq!(cookies, "a_first=1; other=two; zz_last=3");

    // The client is not a trusted proxy: its X-Forwarded-* are replaced.
    assert_eq!(echo.header("x-forwarded-for").as_deref(), Some("127.0.0.1"));
    assert_eq!(
        echo.header("x-forwarded-host").as_deref(),
        Some(host.as_str())
    );
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(echo.header("host").as_deref(), Some(host.as_str()));

    // Only the gateway's cookies: the Cookie header goes entirely.
    let mut only_ours = gw.browser();
    only_ours.jar = b
        .jar
        .iter()
        .filter(|(k, _)| k.starts_with("authgate_"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let echo = only_ours.get("/only-ours").await.echo();
    assert!(
        echo.header_all("cookie").is_empty(),
        "{:?}",
        echo.header_all("cookie")
    );
}

#[tokio::test]
async fn request_bodies_stream_through_intact() {
    let (_upstream, gw, mut b) = untrusting_gateway().await;
    // 96 KiB of varied text: more than one read buffer.
    let body: String = (0..96 * 1024)
        .map(|i| char::from(b'a' + (i * 7 % 26) as u8))
        .collect();
    let req = b
        .request(Method::POST, "/upload?kind=text")
        .header("content-type", "text/plain")
        .body(body.clone());
    let echo = b.send(req).await.echo();
    assert_eq!(echo.method(), "POST");
    assert_eq!(echo.0["body_len"], body.len());
    assert!(echo.body() == body, "the body changed on the way");

    // A chunked body (no Content-Length), raw.
    let port = gw.setup().port;
    let payload: Vec<u8> = (0..20_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let payload = payload.iter().map(|b| b'A' + b % 26).collect::<Vec<u8>>();
    let mut request = format!(
        "PUT /chunked HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        b.cookie_header()
    )
    .into_bytes();
    request.extend(chunked(&payload, 3000));
    let raw = raw_request(port, &request).await;
    assert_eq!(raw.status, 200, "{raw:?}");
    let echo = Echo(serde_json::from_str(&raw.body).unwrap());
    assert_eq!(echo.method(), "PUT");
    assert_eq!(echo.0["body_len"], payload.len());
    assert!(echo.body().as_bytes() == payload.as_slice());
}

#[tokio::test]
async fn upstream_cannot_set_gateway_cookies_or_send_hop_by_hop_headers() {
    let (upstream, _gw, mut b) = untrusting_gateway().await;
    let session = b.cookie(SESSION_COOKIE).unwrap().to_owned();
    let req = b
        .request(Method::GET, "/sets-cookies")
        .header(UP_SET_COOKIE, "authgate_session=evil; Path=/")
        .header(UP_SET_COOKIE, "app=1; Path=/")
        .header(UP_SET_COOKIE, "authgate_csrf=evil; Path=/")
        .header(UP_RESPONSE_HOP, "yes");
    let r = b.send(req).await;
    assert_eq!(r.status, StatusCode::OK, "{r:?}");
    assert_eq!(
        r.set_cookies(),
        ["app=1; Path=/"],
        "the upstream's Set-Cookie for the gateway's names must be dropped"
    );
    assert!(
        r.header("x-upstream-hop").is_none(),
        "a header the upstream named in Connection was passed on: {r:?}"
    );
    assert_eq!(b.cookie(SESSION_COOKIE), Some(session.as_str()));
    let echo = b.get("/still-in").await.echo();
    assert_eq!(echo.header("remote-user").as_deref(), Some(ALICE));

    // Under the prefix but not a page of ours: 404, never forwarded.
    let before = upstream.hits();
    let r = b.get(&format!("{PREFIX}/unknown")).await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{r:?}");
    assert_eq!(upstream.hits(), before);
}

#[tokio::test]
async fn a_trusted_proxy_extends_the_forwarded_chain() {
    // Default trusted_proxies: 127.0.0.1 is a trusted proxy.
    let upstream = Upstream::start().await;
    let (gw, mut b) = alice_logged_in(&upstream.url()).await;
    let req = b
        .request(Method::GET, "/chain")
        .header("x-forwarded-for", "203.0.113.9")
        .header("x-forwarded-proto", "https")
        .header("x-forwarded-host", "app.example.com")
        .header("remote-user", "mallory");
    let echo = b.send(req).await.echo();
    assert_eq!(
        echo.header("x-forwarded-for").as_deref(),
        Some("203.0.113.9, 127.0.0.1")
    );
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("https"));
    // The host the rules were decided on, not the proxy's (issue 13 item 7).
    let host = format!("127.0.0.1:{}", gw.setup().port);
    assert_eq!(
        echo.header("x-forwarded-host").as_deref(),
        Some(host.as_str())
    );
    // Trust in a proxy never extends to identity headers.
    assert_eq!(echo.header_all("remote-user"), [ALICE]);
}

/// Names and groups are often not ASCII (Zoë, Müller, José). The identity
/// must reach the upstream, not an empty header.
#[tokio::test]
async fn non_ascii_names_and_groups_reach_the_upstream() {
    let upstream = Upstream::start().await;
    let setup = Setup::new(Some(&upstream.url()));
    let name = "Zoë Müller";
    setup
        .add_user("zoe@example.com", name, "équipe,ops", "zoe's password")
        .await;
    let gw = setup.start().await;
    let mut b = gw.browser();
    b.login("zoe@example.com", "zoe's password").await;
    let echo = b.get("/").await.echo();
    assert_eq!(echo.header_all("remote-user"), ["zoe@example.com"]);
    // Raw UTF-8 (what Authelia sends) or percent-encoded UTF-8.
    let decoded = |value: &str| {
        url::form_urlencoded::parse(format!("v={}", value.replace('+', "%2B")).as_bytes())
            .next()
            .map(|(_, v)| v.into_owned())
            .unwrap_or_default()
    };
    let sent_name = echo.header("remote-name").unwrap_or_default();
    assert!(
        sent_name == name || decoded(&sent_name) == name,
        "Remote-Name for {name:?} reached the upstream as {sent_name:?}"
    );
    let groups = echo.header("remote-groups").unwrap_or_default();
    assert!(
        groups == "équipe,ops" || decoded(&groups) == "équipe,ops",
        "Remote-Groups reached the upstream as {groups:?}"
    );
}

/// DESIGN.md "Normalization": the path is normalized once and the
/// normalized path is what goes upstream; `%2F`, `%00` and `..;` are 400.
#[tokio::test]
async fn paths_are_normalized_before_they_go_upstream() {
    let (upstream, gw, b) = untrusting_gateway().await;
    let port = gw.setup().port;
    let get = |path: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nCookie: {}\r\n\
             Connection: close\r\n\r\n",
            b.cookie_header()
        )
    };
    for (raw_path, expected) in [
        ("/a/./b/../c//d?q=1", "/a/c/d?q=1"),
        ("/%61pp/page", "/app/page"),
        ("/a/b/..", "/a/"),
    ] {
        let raw = raw_request(port, get(raw_path).as_bytes()).await;
        assert_eq!(raw.status, 200, "{raw_path}: {raw:?}");
        let echo = Echo(serde_json::from_str(&raw.body).unwrap());
        assert_eq!(echo.uri(), expected, "{raw_path}");
    }
    let hits = upstream.hits();
    for bad in ["/x%2Fy", "/x%5Cy", "/x%00y", "/a/..;/b", "/a/%2e%2e;x/b"] {
        let raw = raw_request(port, get(bad).as_bytes()).await;
        assert_eq!(raw.status, 400, "{bad}: {raw:?}");
    }
    assert_eq!(upstream.hits(), hits, "a refused path reached the upstream");
}

/// HTTP/2 (h2c, prior knowledge): cookies arrive as separate `cookie`
/// fields; the session is still found and still stripped.
#[tokio::test]
async fn http2_clients_are_served_and_their_cookies_handled() {
    use bytes::Bytes;
    use http_body_util::{BodyExt, Empty};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let (_upstream, gw, b) = untrusting_gateway().await;
    let port = gw.setup().port;
    let stream = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .expect("h2c handshake");
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .uri(format!("http://127.0.0.1:{port}/h2?x=1"))
        .header("accept", "*/*")
        .header("remote-user", "mallory")
        .header("cookie", "before=1");
    for (name, value) in &b.jar {
        req = req.header("cookie", format!("{name}={value}"));
    }
    let req = req
        .header("cookie", "after=2")
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(std::time::Duration::from_secs(10), send.send_request(req))
        .await
        .expect("h2 answer in time")
        .expect("h2 response");
    assert_eq!(resp.status(), 200, "{resp:?}");
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    let echo = Echo(serde_json::from_slice(&body).expect("the upstream's echo"));
    assert_eq!(echo.uri(), "/h2?x=1");
    assert_identity(&echo);
    let cookies = echo.header_all("cookie").join("; ");
    assert!(!cookies.contains("authgate_"), "{cookies}");
    assert!(
        cookies.contains("before=1") && cookies.contains("after=2"),
        "{cookies}"
    );
    let host = format!("127.0.0.1:{port}");
    assert_eq!(echo.header("host").as_deref(), Some(host.as_str()));
}

/// Issue 13 item 7: a trusted proxy's `X-Forwarded-Host` does not reach
/// the app as the host: the rule was decided on `Host`, so the app gets
/// that host (normalized) as `X-Forwarded-Host`.
#[tokio::test]
async fn the_upstream_gets_the_host_the_rule_was_decided_on() {
    // Default trusted_proxies: 127.0.0.1 is a trusted proxy.
    let upstream = Upstream::start().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    let rules: toml::Table = toml::from_str(
        r#"
        [[rules]]
        domain = ["app.local"]
        policy = "bypass"
        "#,
    )
    .expect("rules parse");
    setup
        .set("access_control.default_policy", "deny")
        .set("access_control.rules", rules["rules"].clone());
    setup.add_alice().await;
    let gw = setup.start().await;
    let request = "GET /open HTTP/1.1\r\n\
         Host: App.Local:80\r\n\
         X-Forwarded-Host: other.example\r\n\
         Connection: close\r\n\r\n";
    let raw = raw_request(gw.setup().port, request.as_bytes()).await;
    assert_eq!(raw.status, 200, "{raw:?}");
    let echo = Echo(serde_json::from_str(&raw.body).expect("the upstream's echo"));
    assert_eq!(
        echo.header_all("x-forwarded-host"),
        ["app.local"],
        "{:?}",
        echo.0
    );
}

/// Headers that oauth2-proxy, Authelia and nginx setups use for identity,
/// each in mixed case and with `_` for `-`.
const OTHER_GATEWAYS_HEADERS: [&str; 12] = [
    "X-Forwarded-User",
    "x_forwarded_user",
    "X-FORWARDED-EMAIL",
    "X_Forwarded_Groups",
    "X-Forwarded-Preferred-Username",
    "x_forwarded_preferred_username",
    "X-Auth-Request-User",
    "X_Auth_Request_Email",
    "x-auth-request-access-token",
    "X-AUTH-REQUEST-GROUPS",
    "x-auth-request-preferred-username",
    "X-Auth-Request-Anything-Else",
];

/// The upstream's echo of one raw request from alice with `extra` header
/// lines, asking the upstream to answer with `X-Accel-*` headers.
async fn echo_with_headers(gw: &Gateway, b: &Browser, extra: &str) -> (RawReply, Echo) {
    let port = gw.setup().port;
    let request = format!(
        "GET /headers HTTP/1.1\r\n\
         Host: 127.0.0.1:{port}\r\n\
         Cookie: {cookies}\r\n\
         {extra}\
         X-Request-Id: keep-me\r\n\
         X-Forwarded-Userinfo: keep-me\r\n\
         {UP_RESPONSE_HEADER}: X-Accel-Redirect: /internal/secret\r\n\
         {UP_RESPONSE_HEADER}: x-accel-buffering: no\r\n\
         {UP_RESPONSE_HEADER}: X-ACCEL-Limit-Rate: 1\r\n\
         {UP_RESPONSE_HEADER}: X-Accelerated: kept\r\n\
         Connection: close\r\n\r\n",
        cookies = b.cookie_header()
    );
    let raw = raw_request(port, request.as_bytes()).await;
    assert_eq!(raw.status, 200, "{raw:?}");
    let echo = Echo(serde_json::from_str(&raw.body).expect("the upstream's echo"));
    (raw, echo)
}

/// Issue 13 item 10: other gateways' identity headers never reach the
/// upstream, and the upstream's `X-Accel-*` never reach the client (an
/// nginx in front would obey them).
#[tokio::test]
async fn other_gateways_identity_headers_and_x_accel_are_stripped() {
    let upstream = Upstream::start().await;
    let (gw, b) = alice_logged_in(&upstream.url()).await;
    let extra: String = OTHER_GATEWAYS_HEADERS
        .iter()
        .map(|name| format!("{name}: mallory@evil.example\r\n"))
        .collect();
    let (raw, echo) = echo_with_headers(&gw, &b, &extra).await;

    let names = echo.header_names();
    for forged in OTHER_GATEWAYS_HEADERS {
        let forged = forged.to_ascii_lowercase();
        assert!(!names.contains(&forged), "{forged} reached the upstream");
    }
    assert!(!echo.0.to_string().contains("mallory"), "{:?}", echo.0);
    assert_eq!(echo.header_all("x-request-id"), ["keep-me"]);
    assert_eq!(echo.header_all("x-forwarded-userinfo"), ["keep-me"]);
    assert_identity(&echo);

    let accel: Vec<_> = raw
        .headers
        .iter()
        .filter(|(name, _)| name.starts_with("x-accel-"))
        .collect();
    assert!(accel.is_empty(), "reached the client: {accel:?}");
    assert_eq!(raw.header("x-accelerated"), Some("kept"), "{raw:?}");
    assert_eq!(raw.header("x-test-upstream"), Some("1"), "{raw:?}");
}

/// `proxy.strip_request_headers` adds names (and `*` prefix families) to
/// the stripped ones, in every spelling.
#[tokio::test]
async fn configured_request_headers_are_stripped_too() {
    let upstream = Upstream::start().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    setup.set(
        "proxy.strip_request_headers",
        vec!["X-Legacy-User".to_owned(), "x-sso-*".to_owned()],
    );
    setup.add_alice().await;
    let gw = setup.start().await;
    let mut b = gw.browser();
    b.login(ALICE, ALICE_PW).await;
    let extra = "X-LEGACY-USER: mallory\r\n\
                 x_legacy_user: mallory\r\n\
                 X-Sso-Role: admin\r\n\
                 X_SSO_Groups: admins\r\n\
                 X-Legacy-User-Agent: keep-me\r\n";
    let (_, echo) = echo_with_headers(&gw, &b, extra).await;
    let names = echo.header_names();
    for forged in [
        "x-legacy-user",
        "x_legacy_user",
        "x-sso-role",
        "x_sso_groups",
    ] {
        assert!(!names.contains(&forged.to_owned()), "{forged}: {names:?}");
    }
    assert_eq!(echo.header_all("x-legacy-user-agent"), ["keep-me"]);
    assert_eq!(echo.header_all("x-request-id"), ["keep-me"]);
    assert_identity(&echo);
}
