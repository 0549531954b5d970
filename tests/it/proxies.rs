//! The examples in `examples/` run for real: Debian's nginx, Caddy and
//! HAProxy, each started by its test with the example config (only the
//! addresses and paths substituted) in a temp dir, in front of the echo
//! upstream, asking a forward-auth gateway (no `upstream.url`). The whole
//! login round trip goes through the proxy, whose `/_authgate/` location
//! is the portal (DESIGN.md's single-host setup); the nginx multi-host test
//! puts the portal on its own host name under `session.cookie_domain`.
//!
//! `scripts/proxy-deps` installs the programs when missing (once per test
//! run); a program that is still missing fails the test, it never skips.
//! Traefik has no Debian package: `forward_auth.rs` sends exactly its
//! headers instead.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use reqwest::StatusCode;

use crate::support::*;

const IDENTITY: [&str; 4] = [
    "remote-user",
    "remote-name",
    "remote-email",
    "remote-groups",
];

/// What a client forges, in several spellings: none of it may reach the
/// upstream.
const FORGED: &str = "Remote-User: mallory\r\n\
                      remote_user: mallory\r\n\
                      REMOTE-EMAIL: mallory@evil.example\r\n\
                      Remote_Name: Mallory\r\n\
                      remote-groups: admins\r\n";

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// `scripts/proxy-deps`, run once per test binary; its failure is every
/// proxy test's failure.
pub(crate) fn proxy_deps() -> &'static Result<(), String> {
    static DEPS: OnceLock<Result<(), String>> = OnceLock::new();
    DEPS.get_or_init(|| {
        let script = repo().join("scripts/proxy-deps");
        let out = Command::new(&script)
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("could not run {}: {e}", script.display()))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{} failed ({}); it installs nginx-light, caddy and haproxy with apt-get \
                 and needs root.\nstdout: {}\nstderr: {}",
                script.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    })
}

/// The program's path, after `scripts/proxy-deps`; panics (the test fails)
/// when it is not there.
pub(crate) fn program(name: &str) -> PathBuf {
    if let Err(err) = proxy_deps() {
        panic!("{name} is needed for this test and could not be installed: {err}");
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin", "/usr/bin", "/usr/local/sbin", "/sbin"].map(PathBuf::from))
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed even after scripts/proxy-deps; \
                 install it with `apt-get install {name}` (Debian 12)"
            )
        })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Nginx,
    Caddy,
    Haproxy,
}

/// A proxy process with its config in its own temp dir; killed on drop.
struct Proxy {
    kind: Kind,
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    /// nginx only: keep the example's own `Host` check.
    host_check: bool,
}

/// The example nginx config's check of `Host`, which a test takes out to
/// see that the gateway holds without it.
const NGINX_HOST_CHECK: &str = r#"    if ($http_host !~ "^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+)(:[0-9]+)?$") {
        return 400;
    }"#;

/// `template` with every `(from, to)` replaced; each `from` must occur, so
/// an edit of the example that the test no longer matches fails loudly.
pub(crate) fn render(template: &str, replacements: &[(&str, String)]) -> String {
    let mut text = template.to_owned();
    for (from, to) in replacements {
        assert!(
            text.contains(from),
            "the example no longer contains {from:?}: update tests/it/proxies.rs"
        );
        text = text.replace(from, to);
    }
    text
}

/// nginx with `site` (an example, which goes inside `http { }` as in
/// conf.d), keeping every file nginx writes inside `dir` (its log is
/// `proxy.log`). One process (no master), so killing it leaves nothing
/// behind.
pub(crate) fn nginx_command(dir: &Path, site: &str) -> Command {
    let path = |name: &str| dir.join(name);
    fs::write(path("authgate.conf"), site).expect("write authgate.conf");
    let dir = dir.to_str().expect("utf-8 temp dir");
    let main = format!(
        "master_process off;\n\
         worker_processes 1;\n\
         pid {dir}/nginx.pid;\n\
         error_log {dir}/proxy.log warn;\n\
         events {{ worker_connections 256; }}\n\
         http {{\n\
             access_log off;\n\
             client_body_temp_path {dir}/client_body;\n\
             proxy_temp_path {dir}/proxy_temp;\n\
             fastcgi_temp_path {dir}/fastcgi_temp;\n\
             uwsgi_temp_path {dir}/uwsgi_temp;\n\
             scgi_temp_path {dir}/scgi_temp;\n\
             include {dir}/authgate.conf;\n\
         }}\n"
    );
    fs::write(path("nginx.conf"), main).expect("write nginx.conf");
    let mut cmd = Command::new(program("nginx"));
    cmd.arg("-c")
        .arg(path("nginx.conf"))
        .arg("-p")
        .arg(dir)
        .arg("-e")
        .arg(path("proxy.log"))
        .arg("-g")
        .arg("daemon off;");
    cmd
}

pub(crate) fn example(path: &str) -> String {
    let path = repo().join("examples").join(path);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

impl Proxy {
    /// Starts `kind` from its example on a free port, with the gateway at
    /// `gateway` and the app at `app` (both `127.0.0.1:PORT`), and with
    /// `auth_path` for the example's forward-auth path when given. Tries
    /// another port when a parallel test took the chosen one.
    async fn start(kind: Kind, gateway: &str, app: &str, auth_path: Option<&str>) -> Proxy {
        let mut last_log = String::new();
        for _attempt in 0..3 {
            let mut proxy = Proxy {
                kind,
                port: free_port(),
                dir: tempfile::tempdir().expect("temp dir"),
                child: None,
                host_check: true,
            };
            proxy.spawn(gateway, app, auth_path);
            if proxy.wait_ready().await {
                return proxy;
            }
            last_log = proxy.log();
            if !last_log.contains("in use") {
                break;
            }
        }
        panic!("{kind:?} did not start; its log:\n{last_log}");
    }

    fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self) -> String {
        fs::read_to_string(self.path("proxy.log")).unwrap_or_default()
    }

    fn spawn(&mut self, gateway: &str, app: &str, auth_path: Option<&str>) {
        let dir = self.dir.path().to_str().expect("utf-8 temp dir").to_owned();
        let listen = format!("127.0.0.1:{}", self.port);
        let mut cmd = match self.kind {
            Kind::Nginx => {
                let mut replacements = vec![
                    ("127.0.0.1:9091", gateway.to_owned()),
                    ("127.0.0.1:3000", app.to_owned()),
                    ("listen 80;", format!("listen {listen};")),
                ];
                if let Some(path) = auth_path {
                    replacements.push(("/_authgate/auth-request", path.to_owned()));
                }
                if !self.host_check {
                    replacements.push((NGINX_HOST_CHECK, String::new()));
                }
                let site = render(&example("nginx/authgate.conf"), &replacements);
                nginx_command(self.dir.path(), &site)
            }
            Kind::Caddy => {
                let mut replacements = vec![
                    ("127.0.0.1:9091", gateway.to_owned()),
                    ("127.0.0.1:3000", app.to_owned()),
                    ("app.example.com {", format!("http://{listen} {{")),
                ];
                if let Some(path) = auth_path {
                    replacements.push(("uri /_authgate/forward-auth", format!("uri {path}")));
                }
                let site = render(&example("caddy/Caddyfile"), &replacements);
                let global = "{\n\tadmin off\n\tauto_https off\n\tdefault_bind 127.0.0.1\n}\n\n";
                fs::write(self.path("Caddyfile"), format!("{global}{site}"))
                    .expect("write Caddyfile");
                let mut cmd = Command::new(program("caddy"));
                cmd.arg("run")
                    .arg("--config")
                    .arg(self.path("Caddyfile"))
                    .arg("--adapter")
                    .arg("caddyfile")
                    .env("HOME", &dir)
                    .env("XDG_DATA_HOME", self.path("data"))
                    .env("XDG_CONFIG_HOME", self.path("config"));
                cmd
            }
            Kind::Haproxy => {
                fs::write(self.path("authgate.lua"), example("haproxy/authgate.lua"))
                    .expect("write authgate.lua");
                let lua = self.path("authgate.lua").to_str().unwrap().to_owned();
                let mut replacements = vec![
                    ("127.0.0.1:9091", gateway.to_owned()),
                    ("127.0.0.1:3000", app.to_owned()),
                    ("bind :80", format!("bind {listen}")),
                    ("/etc/haproxy/authgate.lua", lua),
                ];
                if let Some(path) = auth_path {
                    replacements.push(("/_authgate/forward-auth", path.to_owned()));
                }
                let cfg = render(&example("haproxy/haproxy.cfg"), &replacements);
                fs::write(self.path("haproxy.cfg"), cfg).expect("write haproxy.cfg");
                let mut cmd = Command::new(program("haproxy"));
                cmd.arg("-f").arg(self.path("haproxy.cfg")).arg("-db");
                cmd
            }
        };
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path("proxy.log"))
            .expect("open the proxy log");
        cmd.current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log);
        self.child = Some(
            cmd.spawn()
                .unwrap_or_else(|e| panic!("spawn {:?}: {e}", self.kind)),
        );
    }

    /// Bounded: until the port accepts connections (true), or the process
    /// exited or 10 s passed (false).
    async fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut()
                && child.try_wait().ok().flatten().is_some()
            {
                self.child = None;
                return false;
            }
            if tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                .await
                .is_ok()
            {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Everything one test needs: the echo upstream, the gateway and the proxy.
struct Stack {
    upstream: Upstream,
    /// `None` once the test killed it.
    gw: Option<Gateway>,
    proxy: Proxy,
}

impl Stack {
    /// `tweak` edits the gateway's config; `public_url` gets the proxy's
    /// base (the single-host setup) unless `tweak` changes it.
    async fn start(
        kind: Kind,
        auth_path: Option<&str>,
        tweak: impl FnOnce(&mut Setup, &str),
    ) -> Stack {
        let upstream = Upstream::start().await;
        let mut setup = Setup::new(None);
        use_example_config(&mut setup);
        setup.add_alice().await;
        let gw_port = setup.port;
        let app = upstream.url().trim_start_matches("http://").to_owned();
        let proxy = Proxy::start(kind, &format!("127.0.0.1:{gw_port}"), &app, auth_path).await;
        setup.set("server.public_url", proxy.base());
        tweak(&mut setup, &proxy.base());
        let gw = setup.start().await;
        assert_eq!(
            gw.setup().port,
            gw_port,
            "a parallel test took the gateway's port, so it moved and the proxy \
             config points at the old one: run the test again"
        );
        Stack {
            upstream,
            gw: Some(gw),
            proxy,
        }
    }

    fn base(&self) -> String {
        self.proxy.base()
    }

    /// nginx again on its port, from the example without its `Host` check.
    async fn restart_nginx_without_host_check(&mut self) {
        let gateway = format!("127.0.0.1:{}", self.gw.as_ref().unwrap().setup().port);
        let app = self.upstream.url().trim_start_matches("http://").to_owned();
        if let Some(mut child) = self.proxy.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.proxy.host_check = false;
        self.proxy.spawn(&gateway, &app, None);
        assert!(self.proxy.wait_ready().await, "{}", self.proxy.log());
    }

    /// For failure messages: both logs.
    fn logs(&self) -> String {
        format!(
            "--- {:?} log:\n{}\n--- gateway log:\n{}",
            self.proxy.kind,
            self.proxy.log(),
            self.gw.as_ref().map(Gateway::stderr).unwrap_or_default()
        )
    }

    /// `GET path` through the proxy, raw (the path exactly as written),
    /// with `cookie` when not empty and `extra` header lines.
    async fn raw_get(&self, path: &str, host: Option<&str>, cookie: &str, extra: &str) -> RawReply {
        let host = host.map_or_else(|| format!("127.0.0.1:{}", self.proxy.port), str::to_owned);
        let cookie = if cookie.is_empty() {
            String::new()
        } else {
            format!("Cookie: {cookie}\r\n")
        };
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/html,*/*;q=0.8\r\n\
             {cookie}{extra}Connection: close\r\n\r\n"
        );
        raw_request(self.proxy.port, request.as_bytes()).await
    }

    /// The upstream's echo in `reply`, with the logs when it is not one.
    fn echo(&self, reply: &RawReply) -> Echo {
        assert_eq!(reply.status, 200, "{reply:?}\n{}", self.logs());
        assert_eq!(
            reply.header("x-test-upstream"),
            Some("1"),
            "not from the upstream: {reply:?}\n{}",
            self.logs()
        );
        Echo(serde_json::from_str(&reply.body).expect("the upstream's echo"))
    }
}

/// `examples/authgate.toml` (its rules: `/public/` bypass, `/admin` only
/// for the group admins, which alice is not in), with the harness's own
/// listener, public URL, secret, store, users file and second factor on
/// top, and without `[authy]`: the password alone is enough on loopback.
fn use_example_config(setup: &mut Setup) {
    let mut config: toml::Table =
        toml::from_str(&example("authgate.toml")).expect("examples/authgate.toml parses");
    config.remove("authy");
    if let Some(session) = config
        .get_mut("session")
        .and_then(toml::Value::as_table_mut)
    {
        session.remove("secret_file");
    }
    for (section, values) in std::mem::take(&mut setup.config) {
        let target = config
            .entry(section)
            .or_insert_with(|| toml::Value::Table(toml::Table::new()))
            .as_table_mut()
            .expect("a section is a table");
        for (key, value) in values.as_table().expect("a section is a table") {
            target.insert(key.clone(), value.clone());
        }
    }
    setup.config = config;
}

/// No client copy of an identity header reached the upstream, in any
/// spelling; `expected` is what the four must say (`None`: absent or
/// empty).
fn assert_identity(echo: &Echo, expected: Option<[&str; 4]>) {
    for name in echo.header_names() {
        let normalized = name.to_ascii_lowercase().replace('_', "-");
        assert!(
            !IDENTITY.contains(&normalized.as_str()) || IDENTITY.contains(&name.as_str()),
            "a client copy {name:?} reached the upstream: {}",
            echo.0["headers"]
        );
    }
    let everything = echo.0["headers"].to_string();
    for forged in ["mallory", "admins"] {
        assert!(
            !everything.to_ascii_lowercase().contains(forged),
            "a forged value reached the upstream: {everything}"
        );
    }
    for (i, name) in IDENTITY.into_iter().enumerate() {
        let values = echo.header_all(name);
        match expected {
            Some(values_expected) => {
                assert_eq!(
                    values,
                    [values_expected[i]],
                    "{name}: {}",
                    echo.0["headers"]
                );
            }
            None => assert!(
                values.iter().all(String::is_empty),
                "{name} {values:?} on an anonymous request"
            ),
        }
    }
}

const ALICE_IDENTITY: [&str; 4] = [ALICE, ALICE_NAME, ALICE, "a,b"];

/// The round trip and the rules, through `kind` with its example config.
async fn round_trip(kind: Kind, auth_path: Option<&str>) {
    let mut stack = Stack::start(kind, auth_path, |_, _| {}).await;
    let base = stack.base();
    let page = "/app/page?x=1&y=two";

    // An unauthenticated GET: to the portal's login page with rd, and
    // nothing reaches the app, forged identity or not.
    let reply = stack.raw_get(page, None, "", FORGED).await;
    assert_eq!(reply.status, 302, "{reply:?}\n{}", stack.logs());
    let login = login_redirect(&base, page);
    assert_eq!(
        reply.header("location"),
        Some(login.as_str()),
        "{}",
        stack.logs()
    );
    assert_eq!(stack.upstream.hits(), 0);
    if kind != Kind::Nginx {
        // Traefik-style proxies relay the 401 JSON to API clients as is
        // (nginx's auth_request knows only 401 → the login redirect).
        let reply = stack
            .raw_get(page, None, "", "X-Requested-With: XMLHttpRequest\r\n")
            .await;
        assert_eq!(reply.status, 401, "{reply:?}\n{}", stack.logs());
        assert!(reply.body.contains("login_required"), "{reply:?}");
    }

    // nginx's headers, forged by the client, must not steer the check:
    // Traefik and Caddy pass every client header on to authgate.
    let forged_original =
        format!("X-Original-URL: {base}/public/logo.png\r\nX-Original-Method: GET\r\n");
    let reply = stack.raw_get(page, None, "", &forged_original).await;
    assert_eq!(
        reply.status,
        302,
        "a forged X-Original-URL let an anonymous request through: {reply:?}\n{}",
        stack.logs()
    );
    assert_eq!(reply.header("location"), Some(login.as_str()));
    // (/admin: a `subject` rule, so an anonymous client must log in first.)
    let reply = stack.raw_get("/admin", None, "", &forged_original).await;
    assert_eq!(reply.status, 302, "{reply:?}\n{}", stack.logs());
    assert_eq!(stack.upstream.hits(), 0);

    if kind == Kind::Nginx {
        // The auth location is `internal`: no client can ask it directly.
        let path = auth_path.unwrap_or("/_authgate/auth-request");
        let reply = stack.raw_get(path, None, "", "").await;
        assert_eq!(reply.status, 404, "{path}: {reply:?}");
    }

    // The browser follows the redirect to the login page (through the
    // proxy), logs in there, and is sent back to the page.
    let mut b = Browser::new(&base);
    let form = b.get(login.strip_prefix(&base).unwrap()).await;
    assert_eq!(form.status, StatusCode::OK, "{form:?}\n{}", stack.logs());
    assert!(csrf_field(&form.body).is_some(), "{}", form.body);
    let rd = format!("{base}{page}");
    let done = b.post_login(ALICE, ALICE_PW, Some(&rd)).await;
    assert_eq!(
        done.status,
        StatusCode::SEE_OTHER,
        "{done:?}\n{}",
        stack.logs()
    );
    assert_eq!(done.location(), rd);
    let cookies = b.cookie_header();
    assert!(b.cookie(SESSION_COOKIE).is_some());

    // The same GET with the session: the app sees alice, and only alice,
    // whatever the client forged.
    let reply = stack.raw_get(page, None, &cookies, FORGED).await;
    let echo = stack.echo(&reply);
    assert_eq!(echo.uri(), page);
    assert_identity(&echo, Some(ALICE_IDENTITY));

    // A deny rule: 403 even with a session, and the app never sees it.
    let hits = stack.upstream.hits();
    for path in ["/admin", "/admin/users"] {
        let reply = stack.raw_get(path, None, &cookies, "").await;
        assert_eq!(reply.status, 403, "{path}: {reply:?}\n{}", stack.logs());
    }
    // A path the gateway would read differently from the app (the proxy
    // forwards it as sent) is refused: 400, 403 through nginx (whose
    // auth_request takes only 2xx, 401 and 403). Never the app.
    let refused = if kind == Kind::Nginx { 403 } else { 400 };
    for path in [
        "/public/../admin",
        "/public/%2e%2e/admin",
        "/public/..%2fadmin",
        "/public/..;/admin",
    ] {
        let reply = stack.raw_get(path, None, &cookies, "").await;
        assert_eq!(reply.status, refused, "{path}: {reply:?}\n{}", stack.logs());
    }
    // A Host that is not a host (`?` and `#` pass nginx and HAProxy): the
    // question would be about another path than the one forwarded.
    for odd in ["?", "#", "?/public/x"] {
        let host = format!("127.0.0.1:{}{odd}", stack.proxy.port);
        let reply = stack.raw_get("/admin", Some(&host), &cookies, "").await;
        assert!(
            [400, 403].contains(&reply.status),
            "Host {host}: {reply:?}\n{}",
            stack.logs()
        );
    }
    assert_eq!(
        stack.upstream.hits(),
        hits,
        "a refused request reached the app"
    );

    // A bypass rule: through without a login, and the forged identity is
    // still not there.
    let reply = stack.raw_get("/public/logo.png", None, "", FORGED).await;
    let echo = stack.echo(&reply);
    assert_eq!(echo.uri(), "/public/logo.png");
    assert_identity(&echo, None);

    // authgate gone (killed): the proxy fails closed, with the session and
    // even on the bypass path (only authgate knows the rules).
    drop(stack.gw.take());
    let hits = stack.upstream.hits();
    // Side by side: HAProxy's Lua client retries a refused connection for
    // about 3 s before it gives up.
    let (protected, bypass) = tokio::join!(
        stack.raw_get(page, None, &cookies, ""),
        stack.raw_get("/public/logo.png", None, "", ""),
    );
    for reply in [protected, bypass] {
        assert!(
            reply.status >= 500,
            "with authgate down: {reply:?}\n{}",
            stack.logs()
        );
    }
    assert_eq!(
        stack.upstream.hits(),
        hits,
        "the app was reached without authgate"
    );
}

#[tokio::test]
async fn nginx_example_round_trip_and_rules() {
    round_trip(Kind::Nginx, None).await;
}

#[tokio::test]
async fn nginx_example_with_authelias_auth_request_path() {
    round_trip(Kind::Nginx, Some("/api/authz/auth-request")).await;
}

#[tokio::test]
async fn caddy_example_round_trip_and_rules() {
    round_trip(Kind::Caddy, None).await;
}

#[tokio::test]
async fn caddy_example_with_authelias_forward_auth_path() {
    round_trip(Kind::Caddy, Some("/api/authz/forward-auth")).await;
}

#[tokio::test]
async fn haproxy_example_round_trip_and_rules() {
    round_trip(Kind::Haproxy, None).await;
}

/// docs/forward-auth.md's multi-host setup with nginx: the portal on
/// auth.example.com, apps on other hosts under `session.cookie_domain`;
/// one login covers them all. The host names only travel in `Host`: every
/// connection goes to 127.0.0.1.
#[tokio::test]
async fn nginx_example_multi_host_under_the_cookie_domain() {
    let stack = Stack::start(Kind::Nginx, None, |setup, base| {
        let port = base.rsplit(':').next().unwrap().to_owned();
        setup
            .set(
                "server.public_url",
                format!("http://auth.example.com:{port}"),
            )
            .set("session.cookie_domain", "example.com");
    })
    .await;
    let port = stack.proxy.port;
    let app = format!("app.example.com:{port}");
    let portal = format!("http://auth.example.com:{port}");

    let reply = stack.raw_get("/reports?q=1", Some(&app), "", "").await;
    let rd = format!("http://{app}/reports?q=1");
    assert_eq!(reply.status, 302, "{reply:?}\n{}", stack.logs());
    assert_eq!(
        reply.header("location"),
        Some(login_url(&portal, &rd).as_str()),
        "{}",
        stack.logs()
    );

    // The login (through the same nginx) goes back to the app's host.
    let mut b = Browser::new(&stack.base());
    let done = b.post_login(ALICE, ALICE_PW, Some(&rd)).await;
    assert_eq!(
        done.status,
        StatusCode::SEE_OTHER,
        "{done:?}\n{}",
        stack.logs()
    );
    assert_eq!(done.location(), rd);
    let set = done.set_cookie(SESSION_COOKIE).expect("a session cookie");
    assert!(has_attribute(&set, "Domain=example.com"), "{set}");
    let cookies = b.cookie_header();

    for host in [app.clone(), format!("wiki.example.com:{port}")] {
        let reply = stack
            .raw_get("/reports?q=1", Some(&host), &cookies, FORGED)
            .await;
        let echo = stack.echo(&reply);
        assert_identity(&echo, Some(ALICE_IDENTITY));
    }

    // rd anywhere else: the login lands on the portal's root.
    let mut b = Browser::new(&stack.base());
    let done = b
        .post_login(
            ALICE,
            ALICE_PW,
            Some(&format!("http://evil.example:{port}/")),
        )
        .await;
    assert_eq!(done.status, StatusCode::SEE_OTHER, "{done:?}");
    assert_eq!(done.location(), format!("{portal}/"));
}

/// What the gateway decides on must be what nginx forwards: a `Host` with
/// `?` (nginx takes it, and the example builds `X-Original-URL` from it)
/// and dot or empty segments (nginx forwards `$request_uri` as sent) are
/// refused, and the app never sees them. Once with the example as shipped
/// (nginx refuses the odd `Host` itself), once without its `Host` check
/// (the gateway must hold on its own).
#[tokio::test]
async fn nginx_example_forwards_nothing_the_gateway_decided_differently() {
    for host_check in [true, false] {
        let mut stack = Stack::start(Kind::Nginx, None, |_, _| {}).await;
        if !host_check {
            stack.restart_nginx_without_host_check().await;
        }
        let mut b = Browser::new(&stack.base());
        let done = b.post_login(ALICE, ALICE_PW, None).await;
        assert_eq!(done.status, StatusCode::SEE_OTHER, "{done:?}");
        let cookies = b.cookie_header();
        // Anonymous, `/public/` is a bypass; as sent these are under /admin.
        for path in [
            "/admin/secret/../../public/x",
            "/admin/secret/%2e%2e/%2E%2e/public/x",
            "/admin//..//public/x",
        ] {
            for cookie in ["", cookies.as_str()] {
                let reply = stack.raw_get(path, None, cookie, "").await;
                assert_eq!(reply.status, 403, "{path}: {reply:?}\n{}", stack.logs());
            }
        }
        let host = format!("127.0.0.1:{}?", stack.proxy.port);
        // alice may see `/` but not `/admin` (she is not in admins).
        let reply = stack.raw_get("/admin", Some(&host), &cookies, "").await;
        let expected = if host_check { 400 } else { 403 };
        assert_eq!(reply.status, expected, "{reply:?}\n{}", stack.logs());
        assert_eq!(stack.upstream.hits(), 0, "the app saw a refused request");
    }
}

fn login_url(portal: &str, rd: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("rd", rd)
        .finish();
    format!("{portal}{PREFIX}/login?{query}")
}
