//! TLS: termination with the test CA's certificate (made here with rcgen,
//! nothing committed that could expire), HTTP/2 by ALPN and by prior
//! knowledge, the start-up errors that name `server.tls_cert` /
//! `server.tls_key`, certificate rotation, the http→https redirect
//! listener, and an https upstream checked against `upstream.ca_file`.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::process::{Child, Command};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use reqwest::tls::TlsInfo;
use reqwest::{Method, StatusCode, Version};
use serde_json::json;
use tokio::task::JoinHandle;

use crate::support::*;

// ---------------------------------------------------------------------------
// A test CA and its certificates
// ---------------------------------------------------------------------------

/// A CA made for one test; it signs server certificates for `localhost`
/// and 127.0.0.1.
struct TestCa {
    issuer: rcgen::Issuer<'static, rcgen::KeyPair>,
    pem: String,
}

/// A server certificate (chain: leaf, CA) and its key, as PEM.
struct Leaf {
    chain_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
        ];
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            issuer: rcgen::Issuer::new(params, key),
            pem: cert.pem(),
        }
    }

    fn leaf(&self, common_name: &str) -> Leaf {
        let names = vec!["localhost".to_owned(), "127.0.0.1".to_owned()];
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        let key = rcgen::KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            chain_pem: format!("{}{}", cert.pem(), self.pem),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    fn certificate(&self) -> reqwest::Certificate {
        reqwest::Certificate::from_pem(self.pem.as_bytes()).unwrap()
    }
}

/// Writes the pair where `server.tls_cert` / `server.tls_key` point.
fn install(setup: &Setup, leaf: &Leaf) {
    std::fs::write(setup.path("cert.pem"), &leaf.chain_pem).unwrap();
    std::fs::write(setup.path("key.pem"), &leaf.key_pem).unwrap();
}

/// TLS on, with `leaf`; an empty users file unless a test adds users.
fn with_tls(setup: &mut Setup, leaf: &Leaf) {
    std::fs::write(setup.path("users.toml"), "").unwrap();
    install(setup, leaf);
    let (cert, key) = (setup.path("cert.pem"), setup.path("key.pem"));
    setup
        .set("server.tls_cert", cert.to_str().unwrap())
        .set("server.tls_key", key.to_str().unwrap());
}

/// reqwest trusting only `ca`, reporting the peer certificate, redirects
/// off. ALPN offers h2 and http/1.1 unless `http1_only` is called.
fn tls_client(ca: &TestCa) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        .tls_certs_only([ca.certificate()])
        .tls_info(true)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(2))
}

fn peer_certificate(resp: &reqwest::Response) -> Vec<u8> {
    resp.extensions()
        .get::<TlsInfo>()
        .and_then(TlsInfo::peer_certificate)
        .expect("TLS info with the peer certificate")
        .to_vec()
}

// ---------------------------------------------------------------------------
// The gateway with TLS on (the harness's readiness check speaks plain HTTP)
// ---------------------------------------------------------------------------

struct TlsGateway {
    setup: Setup,
    child: Child,
}

impl TlsGateway {
    /// Starts `authgate serve` with `public_url` https and waits until
    /// healthz answers over TLS; picks another port when a parallel test
    /// took the chosen one.
    async fn start(mut setup: Setup, ca: &TestCa) -> TlsGateway {
        for _attempt in 0..3 {
            let port = setup.port;
            setup
                .set("server.listen", format!("127.0.0.1:{port}"))
                .set("server.public_url", format!("https://127.0.0.1:{port}"));
            let mut child = spawn_serve(&setup);
            if wait_ready(&mut child, port, ca).await {
                return TlsGateway { setup, child };
            }
            let _ = child.kill();
            let _ = child.wait();
            let log = std::fs::read_to_string(setup.stderr_path()).unwrap_or_default();
            assert!(
                log.contains("in use"),
                "the TLS gateway did not become ready; stderr:\n{log}"
            );
            setup.port = free_port();
        }
        panic!("no free port for the TLS gateway after 3 attempts");
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.setup.port)
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.setup.stderr_path()).unwrap_or_default()
    }

    fn hangup(&self) {
        let status = Command::new("kill")
            .arg("-HUP")
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -HUP failed");
    }
}

impl Drop for TlsGateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn wait_ready(child: &mut Child, port: u16, ca: &TestCa) -> bool {
    let client = tls_client(ca).build().unwrap();
    let url = format!("https://127.0.0.1:{port}{PREFIX}/healthz");
    for _ in 0..200 {
        if child.try_wait().ok().flatten().is_some() {
            return false;
        }
        if let Ok(resp) = client.get(&url).send().await
            && resp.status() == StatusCode::OK
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

// ---------------------------------------------------------------------------
// Logging in with any reqwest client (the harness's Browser is plain HTTP)
// ---------------------------------------------------------------------------

struct Session {
    client: reqwest::Client,
    base: String,
    jar: BTreeMap<String, String>,
}

impl Session {
    fn new(client: reqwest::Client, base: &str) -> Session {
        Session {
            client,
            base: base.to_owned(),
            jar: BTreeMap::new(),
        }
    }

    async fn send(&mut self, method: Method, path: &str, form: &[(&str, &str)]) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if !self.jar.is_empty() {
            let cookies: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            request = request.header("cookie", cookies.join("; "));
        }
        if !form.is_empty() {
            request = request.form(form);
        }
        let resp = request.send().await.expect("request to the gateway");
        let reply = Reply {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: resp.text().await.expect("response body"),
        };
        for line in reply.set_cookies() {
            let pair = line.split(';').next().unwrap_or_default();
            if let Some((name, value)) = pair.split_once('=') {
                self.jar.insert(name.trim().to_owned(), value.to_owned());
            }
        }
        reply
    }

    /// The login page, then the login post; returns the two answers.
    async fn login(&mut self) -> (Reply, Reply) {
        let page = self
            .send(Method::GET, &format!("{PREFIX}/login"), &[])
            .await;
        assert_eq!(page.status, StatusCode::OK, "login page: {page:?}");
        let csrf = csrf_field(&page.body).expect("csrf field");
        let form = [("email", ALICE), ("password", ALICE_PW), ("csrf", &csrf)];
        let posted = self
            .send(Method::POST, &format!("{PREFIX}/login"), &form)
            .await;
        assert_eq!(posted.status, StatusCode::SEE_OTHER, "login: {posted:?}");
        assert!(self.jar.contains_key(SESSION_COOKIE), "{posted:?}");
        (page, posted)
    }
}

// ---------------------------------------------------------------------------
// An https echo upstream (tokio-rustls + hyper HTTP/1.1)
// ---------------------------------------------------------------------------

struct TlsUpstream {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl TlsUpstream {
    async fn start(leaf: &Leaf) -> TlsUpstream {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs = CertificateDer::pem_slice_iter(leaf.chain_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        let key = PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).unwrap();
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .unwrap();
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (acceptor, counter) = (acceptor.clone(), counter.clone());
                tokio::spawn(async move {
                    let Ok(stream) = acceptor.accept(stream).await else {
                        return;
                    };
                    let service = service_fn(move |req| echo(req, counter.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        TlsUpstream { addr, hits, task }
    }

    fn url(&self) -> String {
        format!("https://{}", self.addr)
    }
}

impl Drop for TlsUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The harness's echo, reduced: method, target, headers (what `Echo` reads).
async fn echo(
    req: hyper::Request<Incoming>,
    hits: Arc<AtomicUsize>,
) -> Result<hyper::Response<Full<Bytes>>, Infallible> {
    hits.fetch_add(1, Ordering::SeqCst);
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in req.headers() {
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        headers.entry(name.to_string()).or_default().push(value);
    }
    let body = json!({
        "method": req.method().as_str(),
        "uri": req.uri().path_and_query().map_or("/", |p| p.as_str()),
        "version": format!("{:?}", req.version()),
        "headers": headers,
    });
    let mut response = hyper::Response::new(Full::new(Bytes::from(body.to_string())));
    let h = response.headers_mut();
    h.insert("content-type", "application/json".parse().unwrap());
    h.insert("x-test-upstream", "1".parse().unwrap());
    Ok(response)
}

fn assert_identity(echo: &Echo) {
    assert_eq!(echo.header_all("remote-user"), [ALICE]);
    assert_eq!(echo.header_all("remote-name"), [ALICE_NAME]);
    assert_eq!(echo.header_all("remote-email"), [ALICE]);
    assert_eq!(echo.header_all("remote-groups"), ["a,b"]);
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

/// TLS termination end to end over HTTP/1.1: the portal's cookies are
/// `Secure` because public_url is https, the login works, and the upstream
/// is told the client came over https.
#[tokio::test]
async fn https_login_round_trip_with_secure_cookies() {
    let ca = TestCa::new("authgate test CA");
    let upstream = Upstream::start().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    with_tls(&mut setup, &ca.leaf("gateway"));
    setup.add_alice().await;
    let gw = TlsGateway::start(setup, &ca).await;

    let client = tls_client(&ca).http1_only().build().unwrap();
    let mut session = Session::new(client, &gw.url(""));
    let (page, posted) = session.login().await;
    let csrf = page.set_cookie(CSRF_COOKIE).expect("CSRF cookie");
    assert!(has_attribute(&csrf, "Secure"), "{csrf}");
    let cookie = posted.set_cookie(SESSION_COOKIE).expect("session cookie");
    assert!(has_attribute(&cookie, "Secure"), "{cookie}");
    assert!(has_attribute(&cookie, "HttpOnly"), "{cookie}");

    let reply = session.send(Method::GET, "/app/page?x=1", &[]).await;
    let echo = reply.echo();
    assert_eq!(echo.uri(), "/app/page?x=1");
    assert_identity(&echo);
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("https"));
    assert!(upstream.hits() >= 1);

    // Forward-auth over TLS on one kept-alive connection: the listener's
    // fast path answers both through rustls.
    let cookie = format!(
        "{SESSION_COOKIE}={}",
        session.jar.get(SESSION_COOKIE).unwrap()
    );
    let port = gw.setup.port;
    let forward_auth = tls_client(&ca).http1_only().build().unwrap();
    for uri in ["/app/one", "/app/two"] {
        let resp = forward_auth
            .get(gw.url(&format!("{PREFIX}/forward-auth")))
            .header("cookie", &cookie)
            .header("x-forwarded-method", "GET")
            .header("x-forwarded-proto", "https")
            .header("x-forwarded-host", format!("127.0.0.1:{port}"))
            .header("x-forwarded-uri", uri)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), StatusCode::OK, "{uri}");
        assert_eq!(resp.headers()["remote-user"], ALICE, "{uri}");
    }
}

/// ALPN picks h2 when the client offers it; an HTTP/2 request (no `Host`
/// header, the host in `:authority`) reaches the HTTP/1.1 upstream with the
/// public host.
#[tokio::test]
async fn alpn_negotiates_h2_and_proxies_to_an_http1_upstream() {
    let ca = TestCa::new("authgate test CA");
    let upstream = Upstream::start().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    with_tls(&mut setup, &ca.leaf("gateway"));
    setup.add_alice().await;
    let gw = TlsGateway::start(setup, &ca).await;

    let client = tls_client(&ca).build().unwrap();
    let health = client
        .get(gw.url(&format!("{PREFIX}/healthz")))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.version(), Version::HTTP_2, "ALPN did not pick h2");

    // Only http/1.1 offered: still served, over HTTP/1.1.
    let h1 = tls_client(&ca).http1_only().build().unwrap();
    let health = h1
        .get(gw.url(&format!("{PREFIX}/healthz")))
        .send()
        .await
        .unwrap();
    assert_eq!(health.version(), Version::HTTP_11);

    let mut session = Session::new(client.clone(), &gw.url(""));
    session.login().await;
    let cookies = format!(
        "{SESSION_COOKIE}={}",
        session.jar.get(SESSION_COOKIE).unwrap()
    );
    let resp = client
        .get(gw.url("/h2/app?q=2"))
        .header("cookie", cookies)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.version(), Version::HTTP_2);
    let reply = Reply {
        status: resp.status(),
        headers: resp.headers().clone(),
        body: resp.text().await.unwrap(),
    };
    let echo = reply.echo();
    assert_eq!(echo.uri(), "/h2/app?q=2");
    assert_identity(&echo);
    let port = gw.setup.port;
    assert_eq!(
        echo.header("host").as_deref(),
        Some(format!("127.0.0.1:{port}").as_str())
    );
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("https"));
}

/// The plain listener speaks h2c to a client with prior knowledge, and
/// tells the upstream the scheme was http.
#[tokio::test]
async fn h2c_prior_knowledge_on_the_plain_listener() {
    let upstream = Upstream::start().await;
    let setup = Setup::new(Some(&upstream.url()));
    setup.add_alice().await;
    let gw = setup.start().await;

    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let health = client
        .get(gw.url(&format!("{PREFIX}/healthz")))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    assert_eq!(health.version(), Version::HTTP_2);

    let mut session = Session::new(client, &gw.base());
    let (page, _) = session.login().await;
    let csrf = page.set_cookie(CSRF_COOKIE).expect("CSRF cookie");
    assert!(
        !has_attribute(&csrf, "Secure"),
        "public_url is http: {csrf}"
    );
    let reply = session.send(Method::GET, "/plain?y=3", &[]).await;
    let echo = reply.echo();
    assert_eq!(echo.uri(), "/plain?y=3");
    assert_identity(&echo);
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("http"));
}

/// `authgate serve` with a config that cannot start: exit 1 and the key.
async fn refused_start(setup: &Setup) -> String {
    let config = setup.config_path();
    let out = setup
        .run(&["serve", "--config", config.to_str().unwrap()], "", &[])
        .await;
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn a_key_that_does_not_match_the_certificate_stops_the_start() {
    let ca = TestCa::new("authgate test CA");
    let mut setup = Setup::new(None);
    with_tls(&mut setup, &ca.leaf("one"));
    let other = ca.leaf("two");
    std::fs::write(setup.path("key.pem"), &other.key_pem).unwrap();
    let stderr = refused_start(&setup).await;
    assert!(stderr.contains("server.tls_key"), "{stderr}");
    assert!(stderr.contains("does not match"), "{stderr}");
    assert!(
        !setup.path("data").exists(),
        "nothing is opened before the certificate is checked"
    );
}

#[tokio::test]
async fn missing_or_empty_tls_files_stop_the_start_naming_the_key() {
    let ca = TestCa::new("authgate test CA");
    let mut setup = Setup::new(None);
    with_tls(&mut setup, &ca.leaf("gateway"));

    let gone = setup.path("gone.pem");
    setup.set("server.tls_cert", gone.to_str().unwrap());
    let stderr = refused_start(&setup).await;
    assert!(stderr.contains("server.tls_cert"), "{stderr}");
    assert!(stderr.contains("gone.pem"), "{stderr}");

    let cert = setup.path("cert.pem");
    setup.set("server.tls_cert", cert.to_str().unwrap());
    setup.set("server.tls_key", gone.to_str().unwrap());
    let stderr = refused_start(&setup).await;
    assert!(stderr.contains("server.tls_key"), "{stderr}");

    setup.unset("server.tls_key");
    let stderr = refused_start(&setup).await;
    assert!(stderr.contains("server.tls_key"), "{stderr}");
    assert!(stderr.contains("needs both"), "{stderr}");

    // A key where the certificate should be: no certificate in it.
    let key = setup.path("key.pem");
    setup.set("server.tls_cert", key.to_str().unwrap());
    setup.set("server.tls_key", key.to_str().unwrap());
    let stderr = refused_start(&setup).await;
    assert!(stderr.contains("server.tls_cert"), "{stderr}");
    assert!(stderr.contains("no certificate"), "{stderr}");
}

/// SIGHUP swaps the certificate for new connections; a connection opened
/// before keeps working on the old one.
#[tokio::test]
async fn sighup_rotates_the_certificate_and_keeps_open_connections() {
    let ca = TestCa::new("authgate test CA");
    let (first, second) = (ca.leaf("first"), ca.leaf("second"));
    assert_ne!(first.der, second.der);
    let mut setup = Setup::new(None);
    with_tls(&mut setup, &first);
    let gw = TlsGateway::start(setup, &ca).await;
    let healthz = gw.url(&format!("{PREFIX}/healthz"));

    // A pooled keep-alive (h2) connection, opened before the rotation.
    let kept = tls_client(&ca).build().unwrap();
    let resp = kept.get(&healthz).send().await.unwrap();
    assert_eq!(peer_certificate(&resp), first.der);

    install(&gw.setup, &second);
    gw.hangup();
    let fresh_sees_second = eventually(100, Duration::from_millis(50), || async {
        let fresh = tls_client(&ca).pool_max_idle_per_host(0).build().unwrap();
        match fresh.get(&healthz).send().await {
            Ok(resp) => peer_certificate(&resp) == second.der,
            Err(_) => false,
        }
    })
    .await;
    assert!(fresh_sees_second, "stderr:\n{}", gw.stderr());

    let resp = kept
        .get(&healthz)
        .send()
        .await
        .expect("old connection works");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(
        peer_certificate(&resp),
        first.der,
        "the open connection was replaced"
    );
    let log = gw.stderr();
    assert!(log.contains("TLS certificate reloaded"), "{log}");
    assert!(log.contains("SIGHUP"), "{log}");
}

/// Without a signal: the files' change is noticed by the poll. A pair that
/// does not match is refused and the current certificate stays.
#[tokio::test]
async fn changed_files_are_reloaded_and_a_bad_pair_keeps_the_old_one() {
    let ca = TestCa::new("authgate test CA");
    let (first, second) = (ca.leaf("first"), ca.leaf("second"));
    let mut setup = Setup::new(None);
    with_tls(&mut setup, &first);
    let gw = TlsGateway::start(setup, &ca).await;
    let healthz = gw.url(&format!("{PREFIX}/healthz"));
    let served = || async {
        let fresh = tls_client(&ca).pool_max_idle_per_host(0).build().unwrap();
        let resp = fresh.get(&healthz).send().await.expect("TLS still served");
        peer_certificate(&resp)
    };

    // The second certificate with the first key: refused.
    std::fs::write(gw.setup.path("cert.pem"), &second.chain_pem).unwrap();
    gw.hangup();
    let refused = eventually(100, Duration::from_millis(50), || async {
        gw.stderr().contains("TLS reload failed")
    })
    .await;
    assert!(refused, "stderr:\n{}", gw.stderr());
    assert!(gw.stderr().contains("does not match"), "{}", gw.stderr());
    assert_eq!(served().await, first.der, "the old pair stays");

    // Completing the pair is picked up by the poll alone.
    std::fs::write(gw.setup.path("key.pem"), &second.key_pem).unwrap();
    let picked_up = eventually(100, Duration::from_millis(100), || async {
        served().await == second.der
    })
    .await;
    assert!(picked_up, "stderr:\n{}", gw.stderr());
}

/// `authgate healthcheck` asks the listener over TLS when TLS is on.
#[tokio::test]
async fn healthcheck_speaks_tls() {
    let ca = TestCa::new("authgate test CA");
    let mut setup = Setup::new(None);
    with_tls(&mut setup, &ca.leaf("gateway"));
    let gw = TlsGateway::start(setup, &ca).await;
    let config = gw.setup.config_path();
    let args = ["healthcheck", "--config", config.to_str().unwrap()];
    let out = gw.setup.run(&args, "", &[]).await;
    assert_success(&out, "healthcheck over TLS");
}

/// `server.redirect_http`: every request on the plain port gets a 301 to
/// the same path and query on public_url's host, whatever `Host` says.
#[tokio::test]
async fn redirect_listener_sends_301_to_the_https_public_url() {
    let ca = TestCa::new("authgate test CA");
    let mut setup = Setup::new(None);
    with_tls(&mut setup, &ca.leaf("gateway"));
    let plain = free_port();
    setup.set("server.redirect_http", format!("127.0.0.1:{plain}"));
    let gw = TlsGateway::start(setup, &ca).await;
    let port = gw.setup.port;

    let raw = raw_request(
        plain,
        b"GET /some/path?a=1&b=two HTTP/1.1\r\nHost: evil.example\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(raw.status, 301, "{raw:?}");
    assert_eq!(
        raw.header("location"),
        Some(format!("https://127.0.0.1:{port}/some/path?a=1&b=two").as_str())
    );

    let client = client();
    let resp = client
        .post(format!("http://127.0.0.1:{plain}{PREFIX}/login"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), StatusCode::MOVED_PERMANENTLY);
    assert_eq!(
        resp.headers()["location"],
        format!("https://127.0.0.1:{port}{PREFIX}/login").as_str()
    );
}

/// `upstream.url = "https://…"` with `upstream.ca_file`: the upstream's
/// certificate is checked against that CA, and the request arrives with
/// the identity headers.
#[tokio::test]
async fn https_upstream_verified_against_ca_file() {
    let upstream_ca = TestCa::new("upstream CA");
    let upstream = TlsUpstream::start(&upstream_ca.leaf("upstream")).await;
    let mut setup = Setup::new(Some(&upstream.url()));
    std::fs::write(setup.path("upstream-ca.pem"), &upstream_ca.pem).unwrap();
    let ca_file = setup.path("upstream-ca.pem");
    setup.set("upstream.ca_file", ca_file.to_str().unwrap());
    setup.add_alice().await;
    let gw = setup.start().await;
    let mut b = gw.browser();
    b.login(ALICE, ALICE_PW).await;

    let reply = b.get("/secure/app?z=9").await;
    let echo = reply.echo();
    assert_eq!(echo.uri(), "/secure/app?z=9");
    assert_eq!(echo.0["version"], json!("HTTP/1.1"));
    assert_identity(&echo);
    assert_eq!(echo.header("x-forwarded-proto").as_deref(), Some("http"));
    assert_eq!(upstream.hits.load(Ordering::SeqCst), 1);
}

/// An upstream certificate from another CA, or a private CA without
/// `upstream.ca_file` (only the built-in roots): a prompt 502, and the
/// upstream never sees the request.
#[tokio::test]
async fn https_upstream_with_the_wrong_ca_gives_502() {
    let upstream_ca = TestCa::new("upstream CA");
    let other_ca = TestCa::new("some other CA");
    let upstream = TlsUpstream::start(&upstream_ca.leaf("upstream")).await;
    for ca_pem in [Some(&other_ca.pem), None] {
        let mut setup = Setup::new(Some(&upstream.url()));
        if let Some(pem) = ca_pem {
            std::fs::write(setup.path("ca.pem"), pem).unwrap();
            let ca_file = setup.path("ca.pem");
            setup.set("upstream.ca_file", ca_file.to_str().unwrap());
        }
        setup.add_alice().await;
        let gw = setup.start().await;
        let mut b = gw.browser();
        b.login(ALICE, ALICE_PW).await;

        let started = Instant::now();
        let reply = b.get_json("/app").await;
        assert_eq!(reply.status, StatusCode::BAD_GATEWAY, "{reply:?}");
        assert_eq!(reply.json()["error"], json!("upstream_unavailable"));
        assert!(started.elapsed() < Duration::from_secs(5), "not prompt");
    }
    assert_eq!(upstream.hits.load(Ordering::SeqCst), 0);
}

/// `server.hsts` over real TLS: the portal's answers carry
/// `Strict-Transport-Security`; the upstream's answers and forward-auth's
/// do not (the app keeps its own policy, forward-auth stays minimal).
#[tokio::test]
async fn hsts_on_the_portal_answers_over_https() {
    let ca = TestCa::new("authgate test CA");
    let upstream = Upstream::start().await;
    let mut setup = Setup::new(Some(&upstream.url()));
    with_tls(&mut setup, &ca.leaf("gateway"));
    setup.set("server.hsts", true);
    setup.add_alice().await;
    let gw = TlsGateway::start(setup, &ca).await;

    let client = tls_client(&ca).build().unwrap();
    let mut session = Session::new(client, &gw.url(""));
    let (page, posted) = session.login().await;
    for (reply, what) in [(&page, "the login page"), (&posted, "the login post")] {
        assert_eq!(
            reply.header("strict-transport-security"),
            Some("max-age=31536000; includeSubDomains"),
            "{what}: {reply:?}"
        );
    }
    let app = session.send(Method::GET, "/app/page", &[]).await;
    assert_eq!(app.status, StatusCode::OK, "{app:?}");
    assert_eq!(app.header("strict-transport-security"), None, "{app:?}");
    let forward_auth = session
        .send(Method::GET, &format!("{PREFIX}/auth-request"), &[])
        .await;
    assert_eq!(
        forward_auth.header("strict-transport-security"),
        None,
        "{forward_auth:?}"
    );
}
