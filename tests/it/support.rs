//! The harness: a real upstream served from the test process, the real
//! `authgate` binary as a child process with its own temp dir and port, and
//! a small cookie-keeping browser on top of reqwest (redirects off).

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::fs::{File, OpenOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use reqwest::header::{HeaderMap, HeaderValue, SET_COOKIE};
use reqwest::{Method, RequestBuilder, StatusCode};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;
use tokio::task::JoinHandle;

pub const BIN: &str = env!("CARGO_BIN_EXE_authgate");
/// 40 bytes: comfortably above the 32-byte minimum.
pub const SECRET: &str = "integration-secret-0123456789abcdefghijk";
pub const SESSION_COOKIE: &str = "authgate_session";
pub const CSRF_COOKIE: &str = "authgate_csrf";
pub const PREFIX: &str = "/_authgate";

/// Alice: the user most tests log in as.
pub const ALICE: &str = "alice@example.com";
pub const ALICE_NAME: &str = "Alice Example";
pub const ALICE_PW: &str = "correct horse battery staple";

/// A port that was free a moment ago (bound to 127.0.0.1:0, then dropped).
/// Also what a "nothing listens here" upstream uses.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Bounded polling: `tries` × `every`, until `check` is true.
pub async fn eventually<F, Fut>(tries: usize, every: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    for _ in 0..tries {
        if check().await {
            return true;
        }
        tokio::time::sleep(every).await;
    }
    false
}

// ---------------------------------------------------------------------------
// Upstream
// ---------------------------------------------------------------------------

/// Request headers that steer the echo upstream (they reach it because the
/// gateway forwards ordinary headers).
pub const UP_DELAY_MS: &str = "x-test-delay-ms";
pub const UP_SET_COOKIE: &str = "x-test-set-cookie";
pub const UP_RESPONSE_HOP: &str = "x-test-response-hop";
/// Each value `name: value` becomes a header of the upstream's answer.
pub const UP_RESPONSE_HEADER: &str = "x-test-response-header";

/// A hyper HTTP/1.1 server on 127.0.0.1:0 that answers every request with
/// 200 and a JSON echo: method, path and query, every header (name → list
/// of values) and the body.
pub struct Upstream {
    addr: SocketAddr,
    hits: Arc<AtomicUsize>,
    task: JoinHandle<()>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind the upstream");
        let addr = listener.local_addr().expect("upstream addr");
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let counter = counter.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req| echo(req, counter.clone()));
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream { addr, hits, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many requests reached the upstream so far.
    pub fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

impl Drop for Upstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn echo(
    req: Request<Incoming>,
    hits: Arc<AtomicUsize>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    hits.fetch_add(1, Ordering::SeqCst);
    let (parts, body) = req.into_parts();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in &parts.headers {
        headers
            .entry(name.as_str().to_owned())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    let body = body
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let delay = parts
        .headers
        .get(UP_DELAY_MS)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    if delay > 0 {
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }
    let echo = json!({
        "method": parts.method.as_str(),
        "uri": parts.uri.path_and_query().map_or("/", |p| p.as_str()),
        "headers": headers,
        "body_len": body.len(),
        "body": String::from_utf8_lossy(&body),
    });
    let mut response = Response::new(Full::new(Bytes::from(echo.to_string())));
    let h = response.headers_mut();
    h.insert("content-type", HeaderValue::from_static("application/json"));
    h.insert("x-test-upstream", HeaderValue::from_static("1"));
    for value in parts.headers.get_all(UP_SET_COOKIE) {
        h.append("set-cookie", value.clone());
    }
    if parts.headers.contains_key(UP_RESPONSE_HOP) {
        h.insert("connection", HeaderValue::from_static("x-upstream-hop"));
        h.insert("x-upstream-hop", HeaderValue::from_static("secret"));
    }
    for (name, value) in parts
        .headers
        .get_all(UP_RESPONSE_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok()?.split_once(':'))
    {
        h.append(
            hyper::header::HeaderName::from_bytes(name.trim().as_bytes()).unwrap(),
            HeaderValue::from_str(value.trim()).unwrap(),
        );
    }
    Ok(response)
}

/// What the upstream saw, from its JSON echo.
pub struct Echo(pub Value);

impl Echo {
    /// Every value of header `name` (lower case) the upstream received.
    pub fn header_all(&self, name: &str) -> Vec<String> {
        self.0["headers"][name]
            .as_array()
            .map(|values| {
                values
                    .iter()
                    .map(|v| v.as_str().unwrap_or_default().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The single value of header `name`; panics when there are several.
    pub fn header(&self, name: &str) -> Option<String> {
        let all = self.header_all(name);
        assert!(all.len() <= 1, "{name} reached the upstream {all:?}");
        all.into_iter().next()
    }

    pub fn header_names(&self) -> Vec<String> {
        self.0["headers"]
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default()
    }

    pub fn uri(&self) -> &str {
        self.0["uri"].as_str().unwrap_or_default()
    }

    pub fn method(&self) -> &str {
        self.0["method"].as_str().unwrap_or_default()
    }

    pub fn body(&self) -> &str {
        self.0["body"].as_str().unwrap_or_default()
    }
}

// ---------------------------------------------------------------------------
// Config and CLI
// ---------------------------------------------------------------------------

/// A temp dir with `authgate.toml`, a users file and a store directory.
/// The config is a TOML table that tests edit by dotted key before start.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub config: toml::Table,
    pub port: u16,
}

impl Setup {
    /// A config that starts: loopback listener on a fresh port, matching
    /// public_url, the given upstream, a 40-byte secret, store and users
    /// file in the temp dir, second factor off.
    pub fn new(upstream: Option<&str>) -> Setup {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut setup = Setup {
            config: toml::Table::new(),
            dir,
            port,
        };
        setup.set_port(port);
        if let Some(url) = upstream {
            setup.set("upstream.url", url);
        }
        let store = setup.path("data");
        let users = setup.path("users.toml");
        setup
            .set("session.secret", SECRET)
            .set("store.path", store.to_str().unwrap())
            .set("users.file", users.to_str().unwrap())
            .set("auth.second_factor", "off")
            .set("metrics.listen", "127.0.0.1:0");
        let audit = setup.audit_path();
        setup
            .set("audit.output", "file")
            .set("audit.file", audit.to_str().unwrap())
            .set("audit.replica", "it");
        setup
    }

    /// Every gateway of the suite writes its audit trail here; a stopped
    /// or dropped gateway's trail is checked for secrets.
    pub fn audit_path(&self) -> PathBuf {
        self.path("audit.jsonl")
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn config_path(&self) -> PathBuf {
        self.path("authgate.toml")
    }

    pub fn stderr_path(&self) -> PathBuf {
        self.path("gateway.stderr")
    }

    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn set_port(&mut self, port: u16) {
        self.port = port;
        let base = self.base();
        self.set("server.listen", format!("127.0.0.1:{port}"))
            .set("server.public_url", base);
    }

    /// Sets `section.key` (creating the section).
    pub fn set(&mut self, key: &str, value: impl Into<toml::Value>) -> &mut Self {
        let (section, name) = key.split_once('.').expect("dotted key");
        let table = self
            .config
            .entry(section.to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        table
            .as_table_mut()
            .expect("a section is a table")
            .insert(name.to_owned(), value.into());
        self
    }

    pub fn unset(&mut self, key: &str) -> &mut Self {
        let (section, name) = key.split_once('.').expect("dotted key");
        if let Some(table) = self
            .config
            .get_mut(section)
            .and_then(toml::Value::as_table_mut)
        {
            table.remove(name);
        }
        self
    }

    pub fn write_config(&self) {
        let text = toml::to_string(&self.config).expect("config serializes");
        std::fs::write(self.config_path(), text).expect("write authgate.toml");
    }

    /// `authgate ARGS`, run in the temp dir with no `AUTHGATE_*` variables
    /// from the test's environment, `stdin` piped in.
    pub async fn run(&self, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
        self.write_config();
        run_bin(self.dir.path(), args, stdin, env).await
    }

    /// `authgate user add` through the real CLI, password on stdin.
    pub async fn add_user(&self, email: &str, name: &str, groups: &str, password: &str) {
        self.add_user_with(email, name, groups, password, &[]).await;
    }

    /// `add_user` with more `user add` arguments (`--phone`, ...).
    pub async fn add_user_with(
        &self,
        email: &str,
        name: &str,
        groups: &str,
        password: &str,
        extra: &[&str],
    ) {
        let config = self.config_path();
        let mut args = vec![
            "user",
            "add",
            "--config",
            config.to_str().unwrap(),
            "--email",
            email,
            "--name",
            name,
        ];
        if !groups.is_empty() {
            args.extend(["--groups", groups]);
        }
        args.extend(extra);
        remember_secret(password);
        let out = self.run(&args, &format!("{password}\n"), &[]).await;
        assert_success(&out, "user add");
    }

    pub async fn remove_user(&self, email: &str) {
        let config = self.config_path();
        let args = [
            "user",
            "remove",
            "--config",
            config.to_str().unwrap(),
            email,
        ];
        let out = self.run(&args, "", &[]).await;
        assert_success(&out, "user remove");
    }

    /// The common case: alice with groups a,b.
    pub async fn add_alice(&self) {
        self.add_user(ALICE, ALICE_NAME, "a,b", ALICE_PW).await;
    }

    /// Starts the gateway and waits until `healthz` answers 200.
    pub async fn start(self) -> Gateway {
        let mut gateway = Gateway {
            setup: self,
            child: None,
        };
        gateway.spawn_until_ready().await;
        gateway
    }
}

fn clean_command(bin: &str, dir: &Path) -> Command {
    let mut cmd = Command::new(bin);
    cmd.current_dir(dir);
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("AUTHGATE_") {
            cmd.env_remove(name);
        }
    }
    // Log lines asserted on are at info; keep RUST_LOG from the outside out.
    cmd.env_remove("RUST_LOG");
    cmd
}

/// A gateway in front of `upstream` with alice logged in in a browser:
/// how most proxy-mode tests begin.
pub async fn alice_logged_in(upstream: &str) -> (Gateway, Browser) {
    let setup = Setup::new(Some(upstream));
    setup.add_alice().await;
    let gw = setup.start().await;
    let mut b = gw.browser();
    b.login(ALICE, ALICE_PW).await;
    (gw, b)
}

pub async fn run_bin(dir: &Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = tokio::process::Command::from(clean_command(BIN, dir));
    cmd.args(args)
        .envs(env.iter().copied())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = cmd.spawn().expect("spawn authgate");
    let mut input = child.stdin.take().expect("stdin");
    input
        .write_all(stdin.as_bytes())
        .await
        .expect("write stdin");
    drop(input);
    tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("authgate CLI finished within 30 s")
        .expect("authgate CLI output")
}

pub fn assert_success(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed: {:?}\nstdout: {}\nstderr: {}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

// ---------------------------------------------------------------------------
// Gateway process
// ---------------------------------------------------------------------------

/// The `authgate serve` child process; killed on drop.
pub struct Gateway {
    setup: Setup,
    child: Option<Child>,
}

const READY_TRIES: usize = 200;
const READY_EVERY: Duration = Duration::from_millis(50);

impl Gateway {
    pub fn setup(&self) -> &Setup {
        &self.setup
    }

    /// The setup to change between a `stop` and a `restart`.
    pub fn setup_mut(&mut self) -> &mut Setup {
        assert!(self.child.is_none(), "stop() first");
        &mut self.setup
    }

    pub fn base(&self) -> String {
        self.setup.base()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base())
    }

    pub fn browser(&self) -> Browser {
        Browser::new(&self.base())
    }

    /// Everything the gateway wrote to stderr so far (every run).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.setup.stderr_path()).unwrap_or_default()
    }

    fn spawn(&mut self) {
        self.child = Some(spawn_serve(&self.setup));
    }

    /// Starts the child and polls healthz (bounded). When the picked port
    /// was taken in the meantime by a parallel test, tries another one.
    async fn spawn_until_ready(&mut self) {
        for _attempt in 0..3 {
            let log_start = File::open(self.setup.stderr_path())
                .and_then(|f| f.metadata())
                .map_or(0, |m| m.len() as usize);
            self.spawn();
            match self.wait_ready().await {
                Ok(()) => return,
                Err(status) => {
                    let log = self.stderr();
                    let log = log.get(log_start..).unwrap_or(&log).to_owned();
                    if log.contains("server.listen") && log.contains("in use") {
                        let port = free_port();
                        self.setup.set_port(port);
                        continue;
                    }
                    panic!("the gateway did not become ready ({status:?}); stderr:\n{log}");
                }
            }
        }
        panic!("no free port for the gateway after 3 attempts");
    }

    async fn wait_ready(&mut self) -> Result<(), Option<ExitStatus>> {
        let client = client();
        let url = self.url(&format!("{PREFIX}/healthz"));
        for _ in 0..READY_TRIES {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                self.child = None;
                return Err(Some(status));
            }
            if let Ok(resp) = client.get(&url).send().await
                && resp.status() == StatusCode::OK
            {
                return Ok(());
            }
            tokio::time::sleep(READY_EVERY).await;
        }
        Err(None)
    }

    /// SIGTERM (graceful stop) via `kill`, then waits (bounded) for the exit.
    pub async fn stop(&mut self) -> ExitStatus {
        let mut child = self.child.take().expect("the gateway is running");
        let status = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
        for _ in 0..200 {
            if let Some(status) = child.try_wait().expect("try_wait") {
                return status;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "the gateway did not exit within 10 s of SIGTERM; stderr:\n{}",
            self.stderr()
        );
    }

    /// The running gateway's process id, for signals.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("the gateway is running").id()
    }

    /// Starts the gateway again with the same config, store and users.
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop() first");
        self.spawn_until_ready().await;
    }
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if !std::thread::panicking() {
            assert_no_secret_in(&self.setup.audit_path());
        }
    }
}

/// Passwords, TOTP secrets and codes the tests have used: none may appear
/// in an audit trail (issue 17).
static SECRETS: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());

/// Holds `secret` against every audit trail checked from now on.
pub fn remember_secret(secret: &str) {
    let mut secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner());
    if !secret.is_empty() && !secrets.iter().any(|s| s == secret) {
        secrets.push(secret.to_owned());
    }
}

/// Fails naming the secret when the audit trail at `path` contains one of
/// the remembered secrets (or the session secret) as a token of its own.
pub fn assert_no_secret_in(path: &Path) {
    let trail = std::fs::read_to_string(path).unwrap_or_default();
    let secrets = SECRETS.lock().unwrap_or_else(|e| e.into_inner()).clone();
    for secret in secrets.iter().map(String::as_str).chain([SECRET, ALICE_PW]) {
        assert!(
            !contains_token(&trail, secret),
            "the audit trail {} contains the secret {secret:?}",
            path.display()
        );
    }
}

/// Whether `needle` occurs in `text` with no letter or digit right before
/// or after it: a six-digit code is found as a value, never inside the
/// random hex of a request id or session reference (where "941077" turns
/// up by chance once in a while).
fn contains_token(text: &str, needle: &str) -> bool {
    let bytes = text.as_bytes();
    text.match_indices(needle).any(|(at, _)| {
        let end = at + needle.len();
        let before = at.checked_sub(1).map(|i| bytes[i]);
        let after = bytes.get(end).copied();
        !before.is_some_and(|b| b.is_ascii_alphanumeric())
            && !after.is_some_and(|b| b.is_ascii_alphanumeric())
    })
}

#[test]
fn a_secret_is_found_as_a_token_and_not_inside_hex() {
    assert!(contains_token(r#"{"code":"941077"}"#, "941077"));
    assert!(contains_token("941077", "941077"));
    assert!(contains_token(r#"{"note":"code 941077 used"}"#, "941077"));
    assert!(!contains_token(
        r#"{"request_id":"a3941077fe0c5b12"}"#,
        "941077"
    ));
    assert!(!contains_token(r#"{"session":"9410770c5b12"}"#, "941077"));
}

// ---------------------------------------------------------------------------
// Browser
// ---------------------------------------------------------------------------

/// reqwest with redirects off, short timeouts and no connection pool (so a
/// restarted gateway never meets a stale pooled connection).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .connect_timeout(Duration::from_secs(2))
        .pool_max_idle_per_host(0)
        .build()
        .expect("reqwest client")
}

/// A response read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {:?} {}", self.status, self.body))
    }

    pub fn echo(&self) -> Echo {
        assert_eq!(
            self.status,
            StatusCode::OK,
            "expected the upstream's echo: {}",
            self.body
        );
        assert!(
            self.headers.contains_key("x-test-upstream"),
            "not from the upstream: {self:?}"
        );
        Echo(self.json())
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    pub fn location(&self) -> &str {
        self.header("location")
            .unwrap_or_else(|| panic!("no Location: {self:?}"))
    }

    pub fn set_cookies(&self) -> Vec<String> {
        self.headers
            .get_all(SET_COOKIE)
            .iter()
            .map(|v| v.to_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The `Set-Cookie` line for cookie `name`, if any.
    pub fn set_cookie(&self, name: &str) -> Option<String> {
        let prefix = format!("{name}=");
        self.set_cookies()
            .into_iter()
            .find(|c| c.starts_with(&prefix))
    }
}

/// The attributes of a `Set-Cookie` line, lower-cased names.
pub fn cookie_attributes(set_cookie: &str) -> Vec<String> {
    set_cookie
        .split(';')
        .skip(1)
        .map(|a| a.trim().to_owned())
        .collect()
}

pub fn has_attribute(set_cookie: &str, attribute: &str) -> bool {
    cookie_attributes(set_cookie)
        .iter()
        .any(|a| a.eq_ignore_ascii_case(attribute))
}

/// The hidden `csrf` input of a page.
pub fn csrf_field(html: &str) -> Option<String> {
    let start = html.find("name=\"csrf\"")?;
    let rest = &html[start..];
    let value = rest.find("value=\"")? + "value=\"".len();
    let end = rest[value..].find('"')?;
    Some(rest[value..value + end].to_owned())
}

/// The query parameter `name` of an absolute URL, decoded.
pub fn query_param(url: &str, name: &str) -> Option<String> {
    let url = url::Url::parse(url).ok()?;
    url.query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Keeps cookies by hand: the gateway's Set-Cookie lines are asserted on,
/// so no cookie store sits in between.
pub struct Browser {
    client: reqwest::Client,
    base: String,
    pub jar: BTreeMap<String, String>,
    csrf: Option<(String, String)>,
}

impl Browser {
    pub fn new(base: &str) -> Browser {
        Browser {
            client: client(),
            base: base.to_owned(),
            jar: BTreeMap::new(),
            csrf: None,
        }
    }

    pub fn cookie(&self, name: &str) -> Option<&str> {
        self.jar.get(name).map(String::as_str)
    }

    pub fn set_cookie_value(&mut self, name: &str, value: &str) {
        self.jar.insert(name.to_owned(), value.to_owned());
    }

    pub fn cookie_header(&self) -> String {
        self.jar
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// A request to `path` (on the gateway) carrying the jar's cookies.
    pub fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let builder = self.client.request(method, format!("{}{path}", self.base));
        if self.jar.is_empty() {
            builder
        } else {
            builder.header("cookie", self.cookie_header())
        }
    }

    /// Sends, reads the whole body, and takes in the Set-Cookie lines.
    pub async fn send(&mut self, builder: RequestBuilder) -> Reply {
        let resp = builder.send().await.expect("request to the gateway");
        let reply = Reply {
            status: resp.status(),
            headers: resp.headers().clone(),
            body: resp.text().await.expect("response body"),
        };
        self.absorb(&reply);
        reply
    }

    pub fn absorb(&mut self, reply: &Reply) {
        for line in reply.set_cookies() {
            let pair = line.split(';').next().unwrap_or_default();
            let Some((name, value)) = pair.split_once('=') else {
                continue;
            };
            let removed = value.is_empty()
                || cookie_attributes(&line)
                    .iter()
                    .any(|a| a.eq_ignore_ascii_case("max-age=0"));
            if removed {
                self.jar.remove(name.trim());
            } else {
                self.jar.insert(name.trim().to_owned(), value.to_owned());
            }
        }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        let builder = self.request(Method::GET, path);
        self.send(builder).await
    }

    pub async fn get_json(&mut self, path: &str) -> Reply {
        let builder = self
            .request(Method::GET, path)
            .header("accept", "application/json");
        self.send(builder).await
    }

    /// The CSRF token for the current `authgate_csrf` cookie, loading the
    /// login page when there is none yet.
    pub async fn csrf(&mut self) -> String {
        if let (Some((cookie, token)), Some(current)) = (&self.csrf, self.cookie(CSRF_COOKIE))
            && cookie == current
        {
            return token.clone();
        }
        let page = self.get(&format!("{PREFIX}/login")).await;
        assert_eq!(page.status, StatusCode::OK, "login page: {page:?}");
        let token = csrf_field(&page.body).expect("csrf field on the login page");
        let cookie = self
            .cookie(CSRF_COOKIE)
            .expect("the login page set the CSRF cookie")
            .to_owned();
        self.csrf = Some((cookie, token.clone()));
        token
    }

    /// POST /login as a form, with this browser's CSRF token.
    pub async fn post_login(&mut self, email: &str, password: &str, rd: Option<&str>) -> Reply {
        let csrf = self.csrf().await;
        let mut form = vec![("email", email), ("password", password), ("csrf", &csrf)];
        if let Some(rd) = rd {
            form.push(("rd", rd));
        }
        let builder = self
            .request(Method::POST, &format!("{PREFIX}/login"))
            .form(&form);
        self.send(builder).await
    }

    /// Logs in and checks that a session cookie came back.
    pub async fn login(&mut self, email: &str, password: &str) -> String {
        let reply = self.post_login(email, password, None).await;
        assert_eq!(reply.status, StatusCode::SEE_OTHER, "login: {reply:?}");
        self.cookie(SESSION_COOKIE)
            .expect("a session cookie after the login")
            .to_owned()
    }

    /// POST /logout with this browser's CSRF token.
    pub async fn logout(&mut self) -> Reply {
        let csrf = self.csrf().await;
        let builder = self
            .request(Method::POST, &format!("{PREFIX}/logout"))
            .form(&[("csrf", csrf.as_str())]);
        self.send(builder).await
    }
}

/// `url`'s query value for `rd` when a request to `path` needs a login.
pub fn login_redirect(base: &str, path: &str) -> String {
    let query = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("rd", &format!("{base}{path}"))
        .finish();
    format!("{base}{PREFIX}/login?{query}")
}

// ---------------------------------------------------------------------------
// Raw HTTP/1.1, for what reqwest would tidy up (header case, chunked bodies)
// ---------------------------------------------------------------------------

/// A raw response: status, headers (lower-case names, in order) and body.
#[derive(Debug)]
pub struct RawReply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl RawReply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Writes `request` as-is to the gateway and reads the answer until the
/// connection closes (send `Connection: close`).
pub async fn raw_request(port: u16, request: &[u8]) -> RawReply {
    parse_raw(&written_and_read(port, request).await)
}

/// Everything the gateway sends back for `request` until it closes.
async fn written_and_read(port: u16, request: &[u8]) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let io = async {
        let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        stream.write_all(request).await?;
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await?;
        Ok::<_, std::io::Error>(buf)
    };
    tokio::time::timeout(Duration::from_secs(10), io)
        .await
        .expect("raw request answered within 10 s")
        .expect("raw request I/O")
}

/// Writes `requests` (pipelined) as-is and reads `count` answers, each
/// framed by its `content-length`, until the connection closes.
pub async fn raw_exchange(port: u16, requests: &[u8], count: usize) -> Vec<RawReply> {
    let buf = written_and_read(port, requests).await;
    let mut rest = &buf[..];
    let replies: Vec<RawReply> = (0..count)
        .map(|_| {
            let head_end = rest.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
            let head = parse_raw(&rest[..head_end]);
            let length: usize = head.header("content-length").unwrap().parse().unwrap();
            let (one, more) = rest.split_at(head_end + length);
            rest = more;
            parse_raw(one)
        })
        .collect();
    assert!(rest.is_empty(), "more than {count} answers");
    replies
}

fn parse_raw(buf: &[u8]) -> RawReply {
    let split = buf
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(buf)));
    let head = String::from_utf8_lossy(&buf[..split]).into_owned();
    let mut body = buf[split + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.eq_ignore_ascii_case("chunked"));
    if chunked {
        body = dechunk(&body);
    }
    RawReply {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(end) = data.windows(2).position(|w| w == b"\r\n") {
        let size_text = String::from_utf8_lossy(&data[..end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let Ok(size) = usize::from_str_radix(size_text, 16) else {
            break;
        };
        data = &data[end + 2..];
        if size == 0 || data.len() < size {
            break;
        }
        out.extend_from_slice(&data[..size]);
        data = data.get(size + 2..).unwrap_or_default();
    }
    out
}

/// `body` as HTTP/1.1 chunks of at most `chunk` bytes, with the last chunk.
pub fn chunked(body: &[u8], chunk: usize) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in body.chunks(chunk) {
        out.extend_from_slice(format!("{:x}\r\n", piece.len()).as_bytes());
        out.extend_from_slice(piece);
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"0\r\n\r\n");
    out
}

/// `authgate serve` on `setup`'s config (written first), with a clean
/// environment and stderr appended to the setup's log file.
pub fn spawn_serve(setup: &Setup) -> Child {
    setup.write_config();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(setup.stderr_path())
        .expect("open the stderr file");
    let mut cmd = clean_command(BIN, setup.dir.path());
    cmd.arg("serve")
        .arg("--config")
        .arg(setup.config_path())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
    cmd.spawn().expect("spawn authgate serve")
}

/// A finished child's stderr as text.
pub fn stderr_of(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

// ---------------------------------------------------------------------------
// Second factors: TOTP codes as an authenticator app computes them, the
// enrollment page, and posts of the second step
// ---------------------------------------------------------------------------

/// RFC 6238 step length.
pub const TOTP_STEP_SECS: u64 = 30;

fn unix_now_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

/// The TOTP step the wall clock is in now.
pub fn totp_step_now() -> u64 {
    unix_now_secs() / TOTP_STEP_SECS
}

/// The 6-digit RFC 6238 (HMAC-SHA-1, 30 s) code of `step`, computed by
/// totp-rs, independently of the gateway's own code.
pub fn totp_code(secret: &[u8], step: u64) -> String {
    use totp_rs::{Algorithm, Builder, Secret};
    let code = Builder::new()
        .with_algorithm(Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(TOTP_STEP_SECS)
        .with_skew(0)
        .with_secret(Secret::new(secret.to_vec().into_boxed_slice()))
        .build_noncompliant()
        .generate(step * TOTP_STEP_SECS)
        .to_string();
    remember_secret(&code);
    code
}

/// RFC 4648 base32 (spaces ignored, as the enrollment page groups it).
pub fn base32_decode(text: &str) -> Vec<u8> {
    let clean: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    totp_rs::Secret::try_from_base32(&clean)
        .unwrap_or_else(|e| panic!("{clean:?} is not base32: {e:?}"))
        .as_bytes()
        .to_vec()
}

/// A six-digit code that none of the steps around now (−2…+2) gives.
pub fn wrong_totp_code(secret: &[u8]) -> String {
    let now = totp_step_now();
    let taken: Vec<String> = (now - 2..=now + 2).map(|s| totp_code(secret, s)).collect();
    ["000000", "111111", "222222", "333333", "444444", "555555"]
        .into_iter()
        .find(|c| !taken.iter().any(|t| t == c))
        .expect("six candidates, five taken at most")
        .to_owned()
}

/// An authenticator app holding one secret, which also remembers the
/// newest step it has handed out (the gateway takes each step once).
pub struct TotpApp {
    pub secret: Vec<u8>,
    pub base32: String,
    pub last_step: Option<u64>,
}

impl TotpApp {
    /// From the secret as the enrollment page shows it.
    pub fn from_base32(text: &str) -> TotpApp {
        let base32: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        remember_secret(&base32);
        TotpApp {
            secret: base32_decode(&base32),
            base32,
            last_step: None,
        }
    }

    pub fn code(&self, step: u64) -> String {
        totp_code(&self.secret, step)
    }

    /// The code of the newest step handed out.
    pub fn last_code(&self) -> String {
        self.code(self.last_step.expect("a code was handed out"))
    }

    /// A code of a step not handed out before that the gateway accepts now
    /// (one step of drift either way), the oldest such one when `oldest`,
    /// else one no older than the current step. Waits (bounded) when every
    /// acceptable step is used up, and near a step's end so that the code
    /// is still acceptable when it arrives.
    async fn next(&mut self, oldest: bool) -> String {
        for _ in 0..70 {
            let now = unix_now_secs();
            let current = now / TOTP_STEP_SECS;
            let left_in_step = TOTP_STEP_SECS - now % TOTP_STEP_SECS;
            let earliest = if oldest { current - 1 } else { current };
            let step = self.last_step.map_or(earliest, |l| (l + 1).max(earliest));
            let ripe = step <= current + 1;
            // A code of the previous (or current, when asked for) step
            // must not fall out of the window on its way.
            let at_risk = step < current + 1 && left_in_step < 3;
            if ripe && !at_risk {
                self.last_step = Some(step);
                return self.code(step);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("no acceptable TOTP step within 35 s");
    }

    /// The oldest acceptable fresh code (usually the previous step's), so
    /// that two more fresh codes are acceptable right away.
    pub async fn fresh_code(&mut self) -> String {
        self.next(true).await
    }

    /// A fresh code of the current step (or later): its replay stays
    /// inside the ±1 step window for at least 30 s.
    pub async fn current_code(&mut self) -> String {
        self.next(false).await
    }
}

/// Decodes the entities minijinja's auto-escaping writes.
pub fn html_unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#x27;", "'")
        .replace("&#39;", "'")
        .replace("&#x2f;", "/")
        .replace("&#x2F;", "/")
        .replace("&amp;", "&")
}

/// The unescaped text of the element that opens with `<tag id="id">`
/// (no nested element of the same tag).
pub fn element_text(html: &str, tag: &str, id: &str) -> Option<String> {
    let open = format!("<{tag} id=\"{id}\"");
    let start = html.find(&open)?;
    let content = start + html[start..].find('>')? + 1;
    let end = content + html[content..].find(&format!("</{tag}>"))?;
    Some(html_unescape(html[content..end].trim()))
}

/// `rd=…` form-encoded.
pub fn rd_query(rd: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .append_pair("rd", rd)
        .finish()
}

/// `/_authgate/{page}?rd=…`.
pub fn portal_path(page: &str, rd: &str) -> String {
    format!("{PREFIX}/{page}?{}", rd_query(rd))
}

/// The value of cookie `name` that a reply sets (empty when it clears it).
pub fn set_cookie_value(reply: &Reply, name: &str) -> Option<String> {
    let line = reply.set_cookie(name)?;
    let pair = line.split(';').next().unwrap_or_default();
    pair.split_once('=').map(|(_, v)| v.to_owned())
}

impl Setup {
    /// `authgate user reset-2fa EMAIL --config …` through the real CLI.
    pub async fn reset_2fa(&self, email: &str) {
        let config = self.config_path();
        let args = [
            "user",
            "reset-2fa",
            "--config",
            config.to_str().unwrap(),
            email,
        ];
        let out = self.run(&args, "", &[]).await;
        assert_success(&out, "user reset-2fa");
    }
}

impl Browser {
    /// POSTs `fields` as a form to `path` with this browser's cookies.
    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let builder = self.request(Method::POST, path).form(fields);
        self.send(builder).await
    }

    /// POSTs `fields` as a form asking for JSON (`Accept: application/json`).
    pub async fn post_form_json(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let builder = self
            .request(Method::POST, path)
            .header("accept", "application/json")
            .form(fields);
        self.send(builder).await
    }
}

#[test]
fn the_test_totp_matches_rfc_6238() {
    // RFC 6238 appendix B, SHA-1, T = 59 s: 94287082; six digits: 287082.
    let secret = b"12345678901234567890";
    assert_eq!(totp_code(secret, 59 / TOTP_STEP_SECS), "287082");
    assert_eq!(totp_code(secret, 1_111_111_109 / TOTP_STEP_SECS), "081804");
    assert_eq!(
        base32_decode("GEZD GNBV GY3T QOJQ GEZD GNBV GY3T QOJQ"),
        secret.to_vec()
    );
}

// ---------------------------------------------------------------------------
// The second step, as the TOTP, Verify and Authy tests drive it
// ---------------------------------------------------------------------------

/// The page the second-factor tests ask for; it needs `two_factor`.
pub const APP_PATH: &str = "/app/dashboard?tab=1";

/// `rd` for `APP_PATH` on this gateway.
pub fn app_rd(gw: &Gateway) -> String {
    gw.url(APP_PATH)
}

/// The browser's session cookie.
pub fn session_of(b: &Browser) -> String {
    b.cookie(SESSION_COOKIE)
        .expect("a session cookie")
        .to_owned()
}

/// Posts a code to the verify form (with the browser's CSRF token).
pub async fn post_code(b: &mut Browser, gw: &Gateway, code: &str) -> Reply {
    let csrf = b.csrf().await;
    let rd = app_rd(gw);
    let form = [("code", code), ("csrf", csrf.as_str()), ("rd", rd.as_str())];
    b.post_form(&format!("{PREFIX}/verify"), &form).await
}

/// The same post as JSON.
pub async fn post_code_json(b: &mut Browser, gw: &Gateway, code: &str) -> Reply {
    let csrf = b.csrf().await;
    let rd = app_rd(gw);
    let form = [("code", code), ("csrf", csrf.as_str()), ("rd", rd.as_str())];
    b.post_form_json(&format!("{PREFIX}/verify"), &form).await
}

/// The app is still out of reach: 302 to the verify page.
pub async fn still_needs_second_factor(b: &mut Browser, gw: &Gateway) {
    let reply = b.get(APP_PATH).await;
    assert_eq!(reply.status, reqwest::StatusCode::FOUND, "{reply:?}");
    assert_eq!(
        reply.location(),
        gw.url(&portal_path("verify", &app_rd(gw)))
    );
}

// ---------------------------------------------------------------------------
// Bursts of second-factor codes, sent at once
// ---------------------------------------------------------------------------

/// Posts `code` `count` times at once to the form at `path` with the
/// browser's cookies, asking for JSON; each answer's status and `error`.
pub async fn code_burst(
    b: &Browser,
    gw: &Gateway,
    path: &str,
    csrf: &str,
    code: &str,
    count: usize,
) -> Vec<(StatusCode, String)> {
    let start = Arc::new(tokio::sync::Barrier::new(count));
    let rd = app_rd(gw);
    let posts: Vec<_> = (0..count)
        .map(|_| {
            let post = b
                .request(Method::POST, path)
                .header("accept", "application/json")
                .form(&[("code", code), ("csrf", csrf), ("rd", rd.as_str())]);
            let start = start.clone();
            tokio::spawn(async move {
                start.wait().await;
                let reply = post.send().await.expect("code post");
                let status = reply.status();
                let body: Value = reply.json().await.unwrap_or_default();
                (
                    status,
                    body["error"].as_str().unwrap_or_default().to_owned(),
                )
            })
        })
        .collect();
    let mut answers = Vec::new();
    for post in posts {
        answers.push(post.await.expect("code task"));
    }
    answers
}

/// A checked wrong code answers `invalid_code`, or `too_many_attempts` for
/// the one that ends the session; a post refused before any check answers
/// 429 `rate_limited`, or `login_required` once the session is gone.
pub fn checked_codes(answers: &[(StatusCode, String)]) -> usize {
    for (status, error) in answers {
        let expected = match error.as_str() {
            "invalid_code" | "too_many_attempts" | "login_required" => StatusCode::UNAUTHORIZED,
            "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
            other => panic!("unexpected answer {status} {other:?}: {answers:?}"),
        };
        assert_eq!(*status, expected, "{error}: {answers:?}");
    }
    answers
        .iter()
        .filter(|(_, error)| error == "invalid_code" || error == "too_many_attempts")
        .count()
}
