//! Forward-auth over plain HTTP, no proxy program: the gateway without an
//! upstream (a forward-auth deployment), asked exactly the way Traefik's
//! ForwardAuth asks (`X-Forwarded-Method/-Proto/-Host/-Uri/-For` plus the
//! client's own headers) and the way nginx's `auth_request` asks
//! (`X-Original-URL`/`-Method`). Traefik has no Debian package, so this file
//! is its protocol test; nginx, Caddy and HAProxy are also run for real in
//! `proxies.rs`.

use crate::support::*;

/// The four identity headers, as DESIGN.md lists them.
const IDENTITY: [&str; 4] = [
    "remote-user",
    "remote-name",
    "remote-email",
    "remote-groups",
];

/// What a browser sends as `Accept` for a page.
const BROWSER_ACCEPT: &str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8";

/// The protected site's public name (the gateway's own is 127.0.0.1).
const APP: &str = "app.example.com";

/// `^/public/` bypass, `^/admin` deny, `/bob-only/` only for bob (a
/// `subject` rule, then deny), everything else the default `two_factor`.
fn rules() -> toml::Value {
    let table: toml::Table = toml::from_str(
        r#"
        [[rules]]
        path = "^/public/"
        policy = "bypass"

        [[rules]]
        path = "^/admin"
        policy = "deny"

        [[rules]]
        path = "^/bob-only/"
        subject = ["user:bob@example.com"]
        policy = "two_factor"

        [[rules]]
        path = "^/bob-only/"
        policy = "deny"
        "#,
    )
    .expect("rules parse");
    table["rules"].clone()
}

/// A forward-auth gateway (no `upstream.url`, second factor off on
/// loopback) with [`rules`] and alice, after `tweak`.
async fn gateway_with(tweak: impl FnOnce(&mut Setup)) -> Gateway {
    let mut setup = Setup::new(None);
    setup
        .set("access_control.default_policy", "two_factor")
        .set("access_control.rules", rules());
    tweak(&mut setup);
    setup.add_alice().await;
    setup.start().await
}

async fn gateway() -> Gateway {
    gateway_with(|_| {}).await
}

/// Logs alice in at the portal; the session cookie's value.
async fn alice_session(gw: &Gateway) -> String {
    gw.browser().login(ALICE, ALICE_PW).await
}

/// `<public_url>/_authgate/<page>?rd=<rd>`.
fn portal_url(gw: &Gateway, page: &str, rd: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("rd", rd)
        .finish();
    format!("{}{PREFIX}/{page}?{query}", gw.base())
}

/// The headers of one forward-auth request, in order, sent raw so that
/// nothing is added or tidied on the way.
#[derive(Clone, Debug)]
struct Ask {
    headers: Vec<(String, String)>,
}

impl Ask {
    /// What Traefik's ForwardAuth sends for a browser's `method` request of
    /// `https://app.example.com{uri}` (`trustForwardHeader` off): the
    /// client's own headers, then X-Forwarded-For (the client's address),
    /// -Method, -Proto, -Host, -Uri.
    fn traefik(method: &str, uri: &str) -> Ask {
        Ask { headers: vec![] }
            .with(
                "User-Agent",
                "Mozilla/5.0 (X11; Linux x86_64) authgate-test",
            )
            .with("Accept", BROWSER_ACCEPT)
            .with("Accept-Encoding", "gzip")
            .with("X-Forwarded-For", "203.0.113.7")
            .with("X-Forwarded-Method", method)
            .with("X-Forwarded-Proto", "https")
            .with("X-Forwarded-Host", APP)
            .with("X-Forwarded-Uri", uri)
    }

    /// What `examples/nginx/authgate.conf` makes nginx send for `method`
    /// `url`: the client's headers, X-Original-URL/-Method, X-Forwarded-For.
    fn nginx(method: &str, url: &str) -> Ask {
        Ask { headers: vec![] }
            .with(
                "User-Agent",
                "Mozilla/5.0 (X11; Linux x86_64) authgate-test",
            )
            .with("Accept", BROWSER_ACCEPT)
            .with("X-Original-URL", url)
            .with("X-Original-Method", method)
            .with("X-Forwarded-For", "203.0.113.7")
    }

    /// Sets `name` (replacing a header of the same name).
    fn with(mut self, name: &str, value: &str) -> Ask {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    fn without(mut self, name: &str) -> Ask {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
        self
    }

    fn session(self, session: &str) -> Ask {
        self.with("Cookie", &format!("theme=dark; {SESSION_COOKIE}={session}"))
    }

    /// `GET path` on the gateway with exactly these headers (plus Host),
    /// sent twice on one connection: kept alive, as a proxy sends it (the
    /// listener's fast path answers), then with `Connection: close` (hyper
    /// answers). Both answers must be the same but for their `date`.
    async fn send(&self, gw: &Gateway, path: &str) -> RawReply {
        let port = gw.setup().port;
        let mut request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
        for (name, value) in &self.headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        let pair = format!("{request}\r\n{request}Connection: close\r\n\r\n");
        let [fast, hyper] = raw_exchange(port, pair.as_bytes(), 2)
            .await
            .try_into()
            .unwrap();
        let without_date = |reply: &RawReply| {
            let mut headers = reply.headers.clone();
            headers.retain(|(name, _)| name != "date" && name != "connection");
            headers.sort();
            (reply.status, headers, reply.body.clone())
        };
        assert_eq!(without_date(&fast), without_date(&hyper), "{path} {self:?}");
        hyper
    }
}

const FORWARD_AUTH: &str = "/_authgate/forward-auth";
const AUTH_REQUEST: &str = "/_authgate/auth-request";

fn assert_identity(reply: &RawReply) {
    assert_eq!(reply.status, 200, "{reply:?}");
    assert_eq!(reply.header("remote-user"), Some(ALICE), "{reply:?}");
    assert_eq!(reply.header("remote-name"), Some(ALICE_NAME), "{reply:?}");
    assert_eq!(reply.header("remote-email"), Some(ALICE), "{reply:?}");
    assert_eq!(reply.header("remote-groups"), Some("a,b"), "{reply:?}");
    assert_empty_body(reply);
}

/// A 200 for an anonymous request: all four headers there, all empty, so a
/// proxy that copies them overwrites any client copy.
fn assert_anonymous_pass(reply: &RawReply) {
    assert_eq!(reply.status, 200, "{reply:?}");
    for name in IDENTITY {
        assert_eq!(reply.header(name), Some(""), "{name} in {reply:?}");
    }
    assert_empty_body(reply);
}

/// nginx cannot reuse the connection after an auth answer with a body.
fn assert_empty_body(reply: &RawReply) {
    assert!(reply.body.is_empty(), "a body: {reply:?}");
    assert!(
        matches!(reply.header("content-length"), None | Some("0")),
        "{reply:?}"
    );
    assert!(reply.header("transfer-encoding").is_none(), "{reply:?}");
}

fn assert_redirect(reply: &RawReply, status: u16, location: &str) {
    assert_eq!(reply.status, status, "{reply:?}");
    assert_eq!(reply.header("location"), Some(location), "{reply:?}");
}

fn assert_login_required_json(reply: &RawReply) {
    assert_eq!(reply.status, 401, "{reply:?}");
    assert!(reply.header("location").is_none(), "{reply:?}");
    assert!(
        reply
            .header("content-type")
            .is_some_and(|t| t.starts_with("application/json")),
        "{reply:?}"
    );
    let body: serde_json::Value = serde_json::from_str(&reply.body).expect("a JSON body");
    assert_eq!(body["error"], "login_required", "{body}");
}

/// The nginx flavour's answer to an untrusted peer: 401 with no Location
/// (a refusal, not a login).
fn assert_nginx_untrusted(reply: &RawReply) {
    assert_eq!(reply.status, 401, "{reply:?}");
    assert!(reply.header("location").is_none(), "{reply:?}");
}

/// The nginx flavour's answer to a target it refuses: 403 with no Location
/// (no login can make it acceptable).
fn assert_nginx_refusal(reply: &RawReply) {
    assert_eq!(reply.status, 403, "{reply:?}");
    assert!(reply.header("location").is_none(), "{reply:?}");
}

#[tokio::test]
async fn without_a_session_traefik_gets_the_needs_login_answer() {
    let gw = gateway().await;
    let rd = format!("https://{APP}/docs/page?x=1&y=%20z");
    let login = portal_url(&gw, "login", &rd);
    let uri = "/docs/page?x=1&y=%20z";

    // Browsers: 302 for GET, HEAD and OPTIONS, 303 for everything else,
    // always to <public_url>/_authgate/login?rd=<the original URL>.
    for method in ["GET", "HEAD", "OPTIONS"] {
        let reply = Ask::traefik(method, uri).send(&gw, FORWARD_AUTH).await;
        assert_redirect(&reply, 302, &login);
    }
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let reply = Ask::traefik(method, uri).send(&gw, FORWARD_AUTH).await;
        assert_redirect(&reply, 303, &login);
    }
    // No Accept at all is a browser too; so is `*/*`.
    let reply = Ask::traefik("GET", uri)
        .without("Accept")
        .send(&gw, FORWARD_AUTH)
        .await;
    assert_redirect(&reply, 302, &login);
    let reply = Ask::traefik("GET", uri)
        .with("Accept", "*/*")
        .send(&gw, FORWARD_AUTH)
        .await;
    assert_redirect(&reply, 302, &login);

    // API clients: 401 JSON, whatever the method.
    for method in ["GET", "POST"] {
        let reply = Ask::traefik(method, uri)
            .with("Accept", "application/json")
            .send(&gw, FORWARD_AUTH)
            .await;
        assert_login_required_json(&reply);
    }
    let reply = Ask::traefik("GET", uri)
        .with("Accept", "*/*")
        .with("X-Requested-With", "XMLHttpRequest")
        .send(&gw, FORWARD_AUTH)
        .await;
    assert_login_required_json(&reply);

    // A session cookie that is not a session changes nothing.
    let reply = Ask::traefik("GET", uri)
        .session("bm90LWEtc2Vzc2lvbg==forged")
        .send(&gw, FORWARD_AUTH)
        .await;
    assert_redirect(&reply, 302, &login);

    // A subject rule reached without a user: log in first.
    let reply = Ask::traefik("GET", "/bob-only/x")
        .send(&gw, FORWARD_AUTH)
        .await;
    assert_redirect(
        &reply,
        302,
        &portal_url(&gw, "login", &format!("https://{APP}/bob-only/x")),
    );

    // The host and path of rd are the normalized ones.
    let reply = Ask::traefik("GET", "/docs/%61/p%61ge")
        .with("X-Forwarded-Host", "App.Example.COM:443")
        .send(&gw, FORWARD_AUTH)
        .await;
    assert_redirect(
        &reply,
        302,
        &portal_url(&gw, "login", &format!("https://{APP}/docs/a/page")),
    );
}

#[tokio::test]
async fn with_a_session_traefik_gets_200_and_the_identity() {
    let gw = gateway().await;
    let session = alice_session(&gw).await;

    for method in ["GET", "POST", "DELETE"] {
        let reply = Ask::traefik(method, "/docs/page?x=1")
            .session(&session)
            .send(&gw, FORWARD_AUTH)
            .await;
        assert_identity(&reply);
    }
    // An API client with a session is let through the same way.
    let reply = Ask::traefik("GET", "/api/items")
        .with("Accept", "application/json")
        .session(&session)
        .send(&gw, FORWARD_AUTH)
        .await;
    assert_identity(&reply);

    // A bypass rule needs no session: 200, the four headers empty.
    for method in ["GET", "POST"] {
        let reply = Ask::traefik(method, "/public/logo.png")
            .send(&gw, FORWARD_AUTH)
            .await;
        assert_anonymous_pass(&reply);
    }

    // A deny rule: 403 with or without a session; the subject rule that
    // does not name alice falls through to its deny.
    for path in ["/admin", "/admin/users?id=1", "/administrator"] {
        let anonymous = Ask::traefik("GET", path).send(&gw, FORWARD_AUTH).await;
        assert_eq!(anonymous.status, 403, "{path}: {anonymous:?}");
        let alice = Ask::traefik("GET", path)
            .session(&session)
            .send(&gw, FORWARD_AUTH)
            .await;
        assert_eq!(alice.status, 403, "{path}: {alice:?}");
        assert!(alice.header("remote-user").is_none(), "{alice:?}");
    }
    let reply = Ask::traefik("GET", "/bob-only/x")
        .session(&session)
        .send(&gw, FORWARD_AUTH)
        .await;
    assert_eq!(reply.status, 403, "{reply:?}");

    // After logout the same cookie is worth nothing.
    let mut b = gw.browser();
    b.set_cookie_value(SESSION_COOKIE, &session);
    b.logout().await;
    let reply = Ask::traefik("GET", "/docs/page")
        .session(&session)
        .send(&gw, FORWARD_AUTH)
        .await;
    assert_eq!(reply.status, 302, "{reply:?}");
}

#[tokio::test]
async fn nginx_endpoint_answers_only_200_401_and_403() {
    let gw = gateway().await;
    let session = alice_session(&gw).await;
    let url = format!("https://{APP}/docs/page?x=1");
    let login = portal_url(&gw, "login", &url);

    let mut seen = Vec::new();
    for path in [AUTH_REQUEST, "/api/verify", "/api/authz/auth-request"] {
        // No session: 401 with the login URL in Location, for any method
        // and any Accept (nginx turns a 302 or a 303 into a 500).
        for method in ["GET", "POST"] {
            let reply = Ask::nginx(method, &url).send(&gw, path).await;
            assert_redirect(&reply, 401, &login);
            assert_empty_body(&reply);
            seen.push(reply.status);
        }
        let reply = Ask::nginx("GET", &url)
            .with("Accept", "application/json")
            .send(&gw, path)
            .await;
        assert_redirect(&reply, 401, &login);
        seen.push(reply.status);

        // A session: 200 with the identity and no body.
        let reply = Ask::nginx("GET", &url)
            .session(&session)
            .send(&gw, path)
            .await;
        assert_identity(&reply);
        seen.push(reply.status);

        // Bypass: 200, four empty headers.
        let reply = Ask::nginx("GET", &format!("https://{APP}/public/a.css"))
            .send(&gw, path)
            .await;
        assert_anonymous_pass(&reply);
        seen.push(reply.status);

        // Deny: 403, with or without a session.
        let reply = Ask::nginx("GET", &format!("https://{APP}/admin/"))
            .session(&session)
            .send(&gw, path)
            .await;
        assert_eq!(reply.status, 403, "{reply:?}");
        seen.push(reply.status);

        // Missing, unparsable or sneaky metadata: 403 without a Location,
        // never 400 (nginx would make it a 500) and never 2xx.
        let refused = [
            Ask::nginx("GET", &url).without("X-Original-URL"),
            Ask::nginx("GET", "not a url"),
            Ask::nginx("GET", "ftp://app.example.com/docs"),
            Ask::nginx("GET", "https://user@app.example.com/docs"),
            Ask::nginx("GET", &format!("https://{APP}/public/..%2fadmin")),
            Ask::nginx("GET", &format!("https://{APP}/public/..;/admin")),
            Ask::nginx("GET", &format!("https://{APP}/public/%00")),
            Ask::nginx("BAD METHOD", &url),
        ];
        for ask in refused {
            let reply = ask.clone().session(&session).send(&gw, path).await;
            assert_nginx_refusal(&reply);
            seen.push(reply.status);
        }
        // Dot and empty segments: nginx forwards them as sent, so refused.
        for sneaky in ["/public/../admin", "/public/%2e%2e/admin", "//admin"] {
            let reply = Ask::nginx("GET", &format!("https://{APP}{sneaky}"))
                .send(&gw, path)
                .await;
            assert_eq!(reply.status, 403, "{sneaky}: {reply:?}");
            seen.push(reply.status);
        }
    }
    assert!(seen.iter().all(|s| [200, 401, 403].contains(s)), "{seen:?}");
}

#[tokio::test]
async fn untrusted_peers_are_refused_and_never_get_a_2xx() {
    // The test client is 127.0.0.1, outside the only trusted network.
    let gw = gateway_with(|s| {
        s.set("server.trusted_proxies", vec!["10.0.0.0/8".to_owned()]);
    })
    .await;
    // The portal still works for an ordinary client.
    let session = alice_session(&gw).await;

    for path in [FORWARD_AUTH, "/api/authz/forward-auth"] {
        for uri in ["/docs/page", "/public/a.css", "/admin"] {
            for ask in [
                Ask::traefik("GET", uri),
                Ask::traefik("GET", uri).session(&session),
            ] {
                let reply = ask.send(&gw, path).await;
                assert_eq!(reply.status, 400, "{path} {uri}: {reply:?}");
                assert!(reply.header("remote-user").is_none(), "{reply:?}");
            }
        }
    }
    for path in [AUTH_REQUEST, "/api/verify", "/api/authz/auth-request"] {
        for uri in ["/docs/page", "/public/a.css", "/admin"] {
            let url = format!("https://{APP}{uri}");
            for ask in [
                Ask::nginx("GET", &url),
                Ask::nginx("GET", &url).session(&session),
            ] {
                let reply = ask.send(&gw, path).await;
                assert_nginx_untrusted(&reply);
            }
        }
    }
}

#[tokio::test]
async fn missing_or_unparsable_metadata_is_a_400() {
    let gw = gateway().await;
    let session = alice_session(&gw).await;
    let good = Ask::traefik("GET", "/public/a.css");
    // The good request passes (so the refusals below are about the headers).
    assert_anonymous_pass(&good.send(&gw, FORWARD_AUTH).await);
    assert_identity(
        &Ask::traefik("GET", "/docs")
            .session(&session)
            .send(&gw, FORWARD_AUTH)
            .await,
    );

    let mut cases = vec![
        ("no X-Forwarded-* at all", {
            let mut ask = good.clone();
            for name in [
                "X-Forwarded-For",
                "X-Forwarded-Method",
                "X-Forwarded-Proto",
                "X-Forwarded-Host",
                "X-Forwarded-Uri",
            ] {
                ask = ask.without(name);
            }
            ask
        }),
        ("no proto", good.clone().without("X-Forwarded-Proto")),
        ("no host", good.clone().without("X-Forwarded-Host")),
        ("no uri", good.clone().without("X-Forwarded-Uri")),
        ("ftp", good.clone().with("X-Forwarded-Proto", "ftp")),
        ("empty host", good.clone().with("X-Forwarded-Host", "")),
        (
            "host with a space",
            good.clone().with("X-Forwarded-Host", "app example.com"),
        ),
        (
            "host with userinfo",
            good.clone().with("X-Forwarded-Host", "me@app.example.com"),
        ),
        (
            "bad port",
            good.clone()
                .with("X-Forwarded-Host", "app.example.com:99999"),
        ),
        (
            "bad method",
            good.clone().with("X-Forwarded-Method", "GE(T"),
        ),
        ("%2f", good.clone().with("X-Forwarded-Uri", "/public/a%2fb")),
        ("%5c", good.clone().with("X-Forwarded-Uri", "/public/a%5cb")),
        ("%00", good.clone().with("X-Forwarded-Uri", "/public/a%00")),
        ("..;", good.clone().with("X-Forwarded-Uri", "/public/..;/a")),
        (
            "bad utf-8",
            good.clone().with("X-Forwarded-Uri", "/public/%ff"),
        ),
    ];
    let with_session: Vec<_> = cases
        .iter()
        .map(|(what, ask)| (*what, ask.clone().session(&session)))
        .collect();
    cases.extend(with_session);
    for (what, ask) in cases {
        let reply = ask.send(&gw, FORWARD_AUTH).await;
        assert_eq!(reply.status, 400, "{what}: {reply:?}");
        assert!(reply.header("remote-user").is_none(), "{what}: {reply:?}");
        let nginx = ask.send(&gw, AUTH_REQUEST).await;
        assert_nginx_refusal(&nginx);
    }
}

#[tokio::test]
async fn bypass_vectors_through_the_forwarded_uri_are_closed() {
    let gw = gateway().await;
    let session = alice_session(&gw).await;
    // The front proxy forwards the path as sent, and the app resolves it
    // its own way (Flask routes `/admin/x/../../public/y` to `/admin/...`):
    // dot and empty segments are refused, 400 (nginx: 403), whatever the
    // session, whatever the normalized path would be.
    let refused = [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/%2E%2E/admin",
        "/public/.%2e/admin",
        "/public/./../admin",
        "//admin",
        "/public/../admin?/public/",
        "/admin/secret/../../public/x",
        "/admin/secret/%2e%2e/%2e%2e/public/x",
        "/admin//..//public/x",
        "/public//x",
        "/public/a/../b.css",
        "/public/..%2fadmin",
        "/public/..%2Fadmin",
        "/public%2f..%2fadmin",
        "/public/..;/admin",
        "/public/..%5cadmin",
    ];
    for uri in refused {
        for ask in [
            Ask::traefik("GET", uri),
            Ask::traefik("GET", uri).session(&session),
        ] {
            let reply = ask.send(&gw, FORWARD_AUTH).await;
            assert_eq!(reply.status, 400, "{uri}: {reply:?}");
            let nginx = Ask::nginx("GET", &format!("https://{APP}{uri}"))
                .send(&gw, AUTH_REQUEST)
                .await;
            assert_nginx_refusal(&nginx);
        }
    }
    // Whatever else normalization changes, the stricter reading decides:
    // `/publi%63/x` is `/public/x` (bypass) to us but a path no rule names
    // (two_factor) as sent; `/%61dmin` is denied either way.
    let reply = Ask::traefik("GET", "/publi%63/x")
        .send(&gw, FORWARD_AUTH)
        .await;
    assert_eq!(reply.status, 302, "{reply:?}");
    let reply = Ask::traefik("GET", "/publi%63/x")
        .session(&session)
        .send(&gw, FORWARD_AUTH)
        .await;
    assert_identity(&reply);
    let reply = Ask::traefik("GET", "/%61dmin")
        .session(&session)
        .send(&gw, FORWARD_AUTH)
        .await;
    assert_eq!(reply.status, 403, "{reply:?}");
    // Still a bypass when it really is under /public/.
    let reply = Ask::traefik("GET", "/public/b.css")
        .send(&gw, FORWARD_AUTH)
        .await;
    assert_anonymous_pass(&reply);
}

/// Traefik and Caddy copy every header of the client's request into the
/// question, so at `forward-auth` the nginx headers (`X-Original-URL`,
/// `X-Original-Method`) can only come from the client: they must not
/// replace what the proxy itself wrote in `X-Forwarded-*`.
#[tokio::test]
async fn client_copies_of_nginx_headers_do_not_steer_the_forward_auth_endpoint() {
    let gw = gateway_with(|s| {
        s.set("access_control.allow_preflight", true);
    })
    .await;
    let forged_url = format!("https://{APP}/public/x");
    for path in [FORWARD_AUTH, "/api/authz/forward-auth"] {
        // A protected page stays protected ...
        let reply = Ask::traefik("GET", "/docs")
            .with("X-Original-URL", &forged_url)
            .with("X-Original-Method", "GET")
            .send(&gw, path)
            .await;
        assert_redirect(
            &reply,
            302,
            &portal_url(&gw, "login", &format!("https://{APP}/docs")),
        );
        // ... a denied one denied ...
        let reply = Ask::traefik("GET", "/admin")
            .with("X-Original-URL", &forged_url)
            .send(&gw, path)
            .await;
        assert_eq!(reply.status, 403, "{path}: {reply:?}");
        // ... and a GET is not turned into a preflight.
        let reply = Ask::traefik("GET", "/docs")
            .with("X-Original-Method", "OPTIONS")
            .with("Access-Control-Request-Method", "POST")
            .send(&gw, path)
            .await;
        assert_eq!(reply.status, 302, "{path}: {reply:?}");
    }
}

#[tokio::test]
async fn undocumented_forwarding_headers_are_ignored() {
    let gw = gateway().await;
    // A prefix would turn /admin into /public/admin, or /public/x into
    // /admin/public/x, if it were believed.
    let reply = Ask::traefik("GET", "/admin")
        .with("X-Forwarded-Prefix", "/public")
        .send(&gw, FORWARD_AUTH)
        .await;
    assert_eq!(reply.status, 403, "{reply:?}");
    let reply = Ask::traefik("GET", "/public/x")
        .with("X-Forwarded-Prefix", "/admin")
        .send(&gw, FORWARD_AUTH)
        .await;
    assert_anonymous_pass(&reply);
    // Neither the prefix nor X-Forwarded-Port changes the rd.
    let reply = Ask::traefik("GET", "/docs")
        .with("X-Forwarded-Prefix", "/public")
        .with("X-Forwarded-Port", "8443")
        .with("X-Forwarded-Path", "/public/docs")
        .with("X-Original-URI", "/public/docs")
        .send(&gw, FORWARD_AUTH)
        .await;
    assert_redirect(
        &reply,
        302,
        &portal_url(&gw, "login", &format!("https://{APP}/docs")),
    );
}

#[tokio::test]
async fn authelia_paths_answer_the_same_without_an_upstream() {
    let gw = gateway().await;
    let session = alice_session(&gw).await;
    let asks = [
        Ask::traefik("GET", "/docs?a=1"),
        Ask::traefik("POST", "/docs"),
        Ask::traefik("GET", "/docs").with("Accept", "application/json"),
        Ask::traefik("GET", "/docs").session(&session),
        Ask::traefik("GET", "/public/x"),
        Ask::traefik("GET", "/admin").session(&session),
        Ask::traefik("GET", "/public/..%2fadmin"),
        Ask::traefik("GET", "/docs").without("X-Forwarded-Uri"),
    ];
    let mut statuses = Vec::new();
    for ask in asks {
        let ours = ask.send(&gw, FORWARD_AUTH).await;
        let authelia = ask.send(&gw, "/api/authz/forward-auth").await;
        assert_same_answer(&ours, &authelia);
        statuses.push(ours.status);
    }
    assert_eq!(statuses, [302, 303, 401, 200, 200, 403, 400, 400]);

    let url = format!("https://{APP}/docs");
    for ask in [
        Ask::nginx("GET", &url),
        Ask::nginx("GET", &url).session(&session),
        Ask::nginx("GET", &format!("https://{APP}/admin")),
        Ask::nginx("GET", "garbage"),
    ] {
        let ours = ask.send(&gw, AUTH_REQUEST).await;
        for path in ["/api/verify", "/api/authz/auth-request"] {
            assert_same_answer(&ours, &ask.send(&gw, path).await);
        }
    }
}

fn assert_same_answer(ours: &RawReply, theirs: &RawReply) {
    assert_eq!(ours.status, theirs.status, "{ours:?}\n{theirs:?}");
    for name in ["location", "content-type"].into_iter().chain(IDENTITY) {
        assert_eq!(ours.header(name), theirs.header(name), "{name}");
    }
    assert_eq!(ours.body, theirs.body);
}

#[tokio::test]
async fn authelia_paths_with_an_upstream_only_when_asked() {
    // With an upstream, /api/verify is the app's own path unless
    // server.authelia_paths says otherwise.
    let upstream = Upstream::start().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    setup.set("access_control.rules", rules());
    setup.add_alice().await;
    let gw = setup.start().await;
    let session = alice_session(&gw).await;
    let ask = Ask::traefik("GET", "/docs").session(&session);
    let reply = ask.send(&gw, "/api/verify").await;
    let echo = Echo(serde_json::from_str(&reply.body).expect("the upstream's echo"));
    assert_eq!(echo.uri(), "/api/verify");
    // `send` asks twice.
    assert_eq!(upstream.hits(), 2);
    // ... while our own prefix always answers forward-auth.
    assert_identity(&ask.send(&gw, FORWARD_AUTH).await);
    drop(gw);

    let mut setup = Setup::new(Some(&upstream.url()));
    setup
        .set("access_control.rules", rules())
        .set("server.authelia_paths", true);
    setup.add_alice().await;
    let gw = setup.start().await;
    let session = alice_session(&gw).await;
    let ask = Ask::traefik("GET", "/docs").session(&session);
    assert_identity(&ask.send(&gw, "/api/authz/forward-auth").await);
    let reply = Ask::nginx("GET", &format!("https://{APP}/admin"))
        .send(&gw, "/api/verify")
        .await;
    assert_eq!(reply.status, 403, "{reply:?}");
    assert_eq!(upstream.hits(), 2, "nothing more reached the upstream");
}

#[tokio::test]
async fn portal_root_leads_to_the_login_page_keeping_rd() {
    let gw = gateway_with(|s| {
        s.set("session.cookie_domain", "example.com");
    })
    .await;
    let b = gw.browser();
    let root = format!("{}/", gw.base());
    let cases = [
        ("/".to_owned(), root.clone()),
        (
            format!("/?rd={}", enc(&format!("{}/docs?a=1", gw.base()))),
            format!("{}/docs?a=1", gw.base()),
        ),
        (
            format!("/?rd={}", enc("https://app.example.com/x?y=1")),
            "https://app.example.com/x?y=1".to_owned(),
        ),
        (
            format!("/?rd={}", enc("https://evil.example/")),
            root.clone(),
        ),
        (
            format!("/?rd={}", enc("https://evilexample.com/")),
            root.clone(),
        ),
    ];
    for (path, rd) in cases {
        for method in [reqwest::Method::GET, reqwest::Method::HEAD] {
            let reply = b.request(method.clone(), &path).send().await.unwrap();
            assert_eq!(reply.status(), 302, "{method} {path}");
            assert_eq!(
                reply.headers()["location"].to_str().unwrap(),
                portal_url(&gw, "login", &rd),
                "{method} {path}"
            );
        }
    }
}

fn enc(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

#[tokio::test]
async fn multi_host_login_follows_rd_only_under_the_cookie_domain() {
    let gw = gateway_with(|s| {
        s.set("session.cookie_domain", "example.com");
    })
    .await;
    // app.example.com asks; the portal is on its own host (here 127.0.0.1).
    let reply = Ask::traefik("GET", "/reports?q=1")
        .send(&gw, FORWARD_AUTH)
        .await;
    let rd = format!("https://{APP}/reports?q=1");
    assert_redirect(&reply, 302, &portal_url(&gw, "login", &rd));

    // The browser follows the redirect to the portal and logs in there.
    let mut b = gw.browser();
    let location = reply.header("location").unwrap().to_owned();
    let page = b.get(location.strip_prefix(&gw.base()).unwrap()).await;
    assert_eq!(page.status, 200, "{page:?}");
    let login = b.post_login(ALICE, ALICE_PW, Some(&rd)).await;
    assert_eq!(login.status, 303, "{login:?}");
    assert_eq!(
        login.location(),
        rd,
        "rd under the cookie domain is followed"
    );
    let cookie = login.set_cookie(SESSION_COOKIE).expect("a session cookie");
    assert!(
        has_attribute(&cookie, "Domain=example.com"),
        "the cookie covers every host under the domain: {cookie}"
    );
    let session = b.cookie(SESSION_COOKIE).unwrap().to_owned();

    // Back on app.example.com, and on any other host under the domain.
    for host in [APP, "wiki.example.com"] {
        let reply = Ask::traefik("GET", "/reports?q=1")
            .with("X-Forwarded-Host", host)
            .session(&session)
            .send(&gw, FORWARD_AUTH)
            .await;
        assert_identity(&reply);
    }

    // Anywhere else, the login lands on the portal's own root.
    for evil in [
        "https://evil.example/",
        "https://evilexample.com/",
        "https://app.example.com.evil.net/x",
        "https://user@app.example.com/x",
        "//evil.example/",
    ] {
        let mut b = gw.browser();
        let login = b.post_login(ALICE, ALICE_PW, Some(evil)).await;
        assert_eq!(login.status, 303, "{evil}: {login:?}");
        assert_eq!(login.location(), format!("{}/", gw.base()), "{evil}");
    }
}

#[tokio::test]
async fn cors_preflights_pass_only_when_allowed() {
    let allowed = gateway_with(|s| {
        s.set("access_control.allow_preflight", true);
    })
    .await;
    let refused = gateway().await;
    let preflight = Ask::traefik("OPTIONS", "/api/items")
        .with("Origin", "https://other.example.com")
        .with("Access-Control-Request-Method", "POST")
        .with("Access-Control-Request-Headers", "content-type")
        .with("Accept", "*/*");

    assert_anonymous_pass(&preflight.send(&allowed, FORWARD_AUTH).await);
    let url = format!("https://{APP}/api/items");
    let nginx = Ask::nginx("OPTIONS", &url)
        .with("Origin", "https://other.example.com")
        .with("Access-Control-Request-Method", "POST");
    assert_anonymous_pass(&nginx.send(&allowed, AUTH_REQUEST).await);

    // An OPTIONS that is no preflight, and a preflight header on a GET,
    // still need a login.
    let login = portal_url(&allowed, "login", &url);
    let reply = preflight
        .clone()
        .without("Access-Control-Request-Method")
        .send(&allowed, FORWARD_AUTH)
        .await;
    assert_redirect(&reply, 302, &login);
    let reply = preflight
        .clone()
        .with("X-Forwarded-Method", "GET")
        .send(&allowed, FORWARD_AUTH)
        .await;
    assert_redirect(&reply, 302, &login);

    // Off (the default): a preflight is an anonymous OPTIONS.
    let reply = preflight.send(&refused, FORWARD_AUTH).await;
    assert_redirect(&reply, 302, &portal_url(&refused, "login", &url));
    let reply = nginx.send(&refused, AUTH_REQUEST).await;
    assert_eq!(reply.status, 401, "{reply:?}");
}

/// `examples/authgate.toml`, the gateway config the proxy examples assume,
/// passes `check-config` once its secret files and paths exist (here given
/// by environment, as Docker would), also in its multi-host variant.
#[tokio::test]
async fn the_example_gateway_config_is_valid() {
    let dir = tempfile::tempdir().expect("temp dir");
    let secret = dir.path().join("session");
    let api_key = dir.path().join("authy");
    let users = dir.path().join("users.toml");
    std::fs::write(&secret, SECRET).unwrap();
    std::fs::write(&api_key, "authy-api-key-0123456789").unwrap();
    std::fs::write(&users, "").unwrap();
    let example = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/authgate.toml");
    let data = dir.path().join("data");
    let env = [
        ("AUTHGATE_SESSION__SECRET_FILE", secret.to_str().unwrap()),
        ("AUTHGATE_AUTHY__API_KEY_FILE", api_key.to_str().unwrap()),
        ("AUTHGATE_USERS__FILE", users.to_str().unwrap()),
        ("AUTHGATE_STORE__PATH", data.to_str().unwrap()),
    ];
    let args = ["check-config", "--config", example.to_str().unwrap()];
    let out = run_bin(dir.path(), &args, "", &env).await;
    assert_success(&out, "check-config examples/authgate.toml");
    let printed = String::from_utf8_lossy(&out.stdout);
    assert!(
        printed.contains("public_url = \"https://app.example.com"),
        "{printed}"
    );
    assert!(
        !printed.contains("[upstream]\nurl"),
        "no upstream: {printed}"
    );

    let mut multi = env.to_vec();
    multi.push(("AUTHGATE_SERVER__PUBLIC_URL", "https://auth.example.com"));
    multi.push(("AUTHGATE_SESSION__COOKIE_DOMAIN", "example.com"));
    let out = run_bin(dir.path(), &args, "", &multi).await;
    assert_success(&out, "check-config, multi-host");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("cookie_domain = \"example.com\""),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

/// Traefik cannot run here; at least its examples must name the endpoint,
/// copy all four identity headers, remove the `_` spellings, and never
/// trust the client's X-Forwarded-* (what the tests above assume).
#[test]
fn the_traefik_examples_match_what_these_tests_send() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/traefik");
    for file in ["dynamic.yml", "docker-compose.yml"] {
        let text = std::fs::read_to_string(dir.join(file)).expect("read the example");
        let flat: String = text.split_whitespace().collect();
        assert!(text.contains(FORWARD_AUTH), "{file}: the endpoint");
        assert!(
            flat.contains("trustForwardHeader:false") || flat.contains("trustForwardHeader=false"),
            "{file}: trustForwardHeader"
        );
        for name in [
            "Remote-User",
            "Remote-Name",
            "Remote-Email",
            "Remote-Groups",
        ] {
            assert!(text.contains(name), "{file}: {name} in authResponseHeaders");
            let underscored = name.replace('-', "_");
            assert!(
                flat.contains(&format!("{underscored}:\"\""))
                    || flat.contains(&format!("{underscored}=")),
                "{file}: {underscored} removed"
            );
        }
        assert!(
            text.contains("PathPrefix(`/_authgate/`)"),
            "{file}: the portal router"
        );
    }
}
