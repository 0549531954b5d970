//! What each browser test stands on: `authgate demo` (gateway, Authy
//! sandbox, demo upstream), chromedriver with a headless chromium, and
//! bounded waits. Everything listens on 127.0.0.1 only.

use std::future::Future;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fantoccini::wd::WebDriverCompatibleCommand;
use fantoccini::{Client, ClientBuilder, Locator, elements::Element};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::{Value, json};

use crate::process::Proc;

pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
pub const CHROMIUM: &str = "/usr/bin/chromium";

/// Chromium's first start on a slow 2-core machine.
const BROWSER_START: Duration = Duration::from_secs(30);
/// The gateway hashes the demo password with argon2 before it listens.
const GATEWAY_START: Duration = Duration::from_secs(30);
/// Any one WebDriver command (a navigation included).
const COMMAND: Duration = Duration::from_secs(30);
/// A page the browser is expected to reach.
pub const PAGE: Duration = Duration::from_secs(15);
const POLL: Duration = Duration::from_millis(200);

/// Polls `check` until it gives `Ok`, or panics after `timeout` with the
/// last `Err` (what was seen instead).
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        let seen = match tokio::time::timeout(timeout, check()).await {
            Ok(Ok(done)) => return done,
            Ok(Err(seen)) => seen,
            Err(_) => "the check itself did not finish".to_owned(),
        };
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}; last seen: {seen}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A WebDriver command (or any future) that must finish within `COMMAND`.
pub async fn bounded<T, E: std::fmt::Debug>(
    what: &str,
    work: impl Future<Output = Result<T, E>>,
) -> T {
    tried(what, work)
        .await
        .unwrap_or_else(|err| panic!("{err}"))
}

/// `work` within the command timeout, its error as text: for a reading
/// that a page load may interrupt, inside a [`wait_for`].
pub async fn tried<T, E: std::fmt::Debug>(
    what: &str,
    work: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(COMMAND, work).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(err)) => Err(format!("{what} failed: {err:?}")),
        Err(_) => Err(format!("{what} did not finish within {COMMAND:?}")),
    }
}

/// A port that was free a moment ago (the caller retries if it is taken).
fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("binding 127.0.0.1:0");
    listener.local_addr().expect("local address").port()
}

/// An HTTP client for the test's own calls; proxy variables are ignored.
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(5))
        .build()
        .expect("building the HTTP client")
}

async fn status_of(http: &reqwest::Client, url: &str) -> Result<reqwest::StatusCode, String> {
    http.get(url)
        .send()
        .await
        .map(|r| r.status())
        .map_err(|e| e.to_string())
}

/// `authgate demo`, with the URL of its Authy sandbox.
pub struct Gateway {
    pub base: String,
    pub sandbox: Sandbox,
    /// Ended when the gateway is dropped; its output is shown on failure.
    _process: Proc,
}

impl Gateway {
    /// Starts the demo on a free port (a few tries in case another process
    /// takes the port first) and waits until `healthz` answers 200.
    pub async fn start() -> Gateway {
        Gateway::start_with(|_| Vec::new()).await
    }

    /// The demo with config keys set through `AUTHGATE_*` variables, made
    /// from the port it listens on.
    pub async fn start_with(env: impl Fn(u16) -> Vec<(String, String)>) -> Gateway {
        let mut last_failure = String::new();
        for _ in 0..3 {
            let port = free_port();
            let mut command = Command::new(env!("CARGO_BIN_EXE_authgate"));
            command
                .args(["demo", "--listen", &format!("127.0.0.1:{port}")])
                .env("RUST_LOG", "info")
                .envs(env(port));
            let mut process = Proc::spawn("authgate demo", command).expect("starting authgate");
            // The demo's public URL: `localhost`, as a WebAuthn relying
            // party must be a host name; the session cookie is bound to it.
            let base = format!("http://localhost:{port}");
            match Gateway::ready(&mut process, &base).await {
                Ok(sandbox) => {
                    return Gateway {
                        base,
                        sandbox,
                        _process: process,
                    };
                }
                Err(failure) => last_failure = format!("{failure}\n{}", process.output()),
            }
        }
        panic!("authgate demo did not start: {last_failure}");
    }

    async fn ready(process: &mut Proc, base: &str) -> Result<Sandbox, String> {
        let http = http();
        let healthz = format!("{base}/_authgate/healthz");
        let deadline = Instant::now() + GATEWAY_START;
        let mut sandbox = None;
        loop {
            if let Some(status) = process.exited() {
                return Err(format!("authgate demo exited early ({status})"));
            }
            if sandbox.is_none() {
                sandbox = sandbox_page(&process.output());
            }
            let health = status_of(&http, &healthz).await;
            if let (Some(page), Ok(reqwest::StatusCode::OK)) = (&sandbox, &health) {
                return Ok(Sandbox::new(page));
            }
            if Instant::now() >= deadline {
                return Err(format!(
                    "not ready after {GATEWAY_START:?}: sandbox page {sandbox:?}, healthz {health:?}"
                ));
            }
            tokio::time::sleep(POLL).await;
        }
    }

    pub fn url(&self, path_and_query: &str) -> String {
        format!("{}{path_and_query}", self.base)
    }

    /// The port the demo listens on.
    pub fn port(&self) -> u16 {
        url::Url::parse(&self.base)
            .ok()
            .and_then(|base| base.port())
            .expect("the base URL has a port")
    }
}

/// The sandbox page URL from the demo's banner line
/// `approve   the push, or read the SMS and app codes, at http://…/_sandbox/`.
fn sandbox_page(output: &str) -> Option<String> {
    output
        .lines()
        .filter(|line| line.contains("approve"))
        .flat_map(str::split_whitespace)
        .find(|word| word.starts_with("http://") && word.ends_with("/_sandbox/"))
        .map(str::to_owned)
}

/// The Authy sandbox's control API (`/_sandbox/api/...`).
pub struct Sandbox {
    /// `http://127.0.0.1:PORT`
    base: String,
    http: reqwest::Client,
}

impl Sandbox {
    fn new(page: &str) -> Sandbox {
        Sandbox {
            base: page
                .trim_end_matches('/')
                .trim_end_matches("/_sandbox")
                .to_owned(),
            http: http(),
        }
    }

    pub async fn state(&self) -> Result<Value, String> {
        let response = self
            .http
            .get(format!("{}/_sandbox/api/state", self.base))
            .send()
            .await
            .map_err(|e| format!("sandbox state: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("sandbox state: HTTP {}", response.status()));
        }
        response
            .json::<Value>()
            .await
            .map_err(|e| format!("sandbox state: {e}"))
    }

    /// The uuid of the newest pending OneTouch approval request.
    pub async fn pending_push(&self) -> String {
        wait_for("a pending push in the sandbox", PAGE, || async {
            let state = self.state().await?;
            list(&state, "approval_requests")
                .iter()
                .rev()
                .find(|a| a["status"] == "pending")
                .and_then(|a| a["uuid"].as_str())
                .map(str::to_owned)
                .ok_or_else(|| format!("approval requests: {}", state["approval_requests"]))
        })
        .await
    }

    /// Approves or denies a push, as the user's phone would.
    pub async fn decide(&self, uuid: &str, status: &str) -> Value {
        let url = format!("{}/_sandbox/api/approvals/{uuid}", self.base);
        let response = self
            .http
            .post(&url)
            .json(&json!({ "status": status }))
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {url}: {e}"));
        let code = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(code.is_success(), "POST {url}: HTTP {code}: {body}");
        serde_json::from_str(&body).unwrap_or(Value::Null)
    }

    /// How many SMS the sandbox has "sent" so far.
    pub async fn sms_count(&self) -> usize {
        let state = self.state().await.expect("sandbox state");
        list(&state, "sms").len()
    }

    /// The code of the newest SMS once more than `before` were sent.
    pub async fn sms_code_after(&self, before: usize) -> String {
        wait_for("a new SMS in the sandbox", PAGE, || async {
            let state = self.state().await?;
            let sms = list(&state, "sms");
            sms.get(before..)
                .and_then(<[Value]>::last)
                .and_then(|s| s["code"].as_str())
                .map(str::to_owned)
                .ok_or_else(|| format!("sms: {}", state["sms"]))
        })
        .await
    }

    /// The code the Authy app of the user `email` shows now.
    pub async fn app_code(&self, email: &str) -> String {
        let state = self.state().await.expect("sandbox state");
        list(&state, "users")
            .iter()
            .find(|u| u["email"] == email)
            .and_then(|u| u["app_code"].as_str())
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no app code for {email} in {}", state["users"]))
    }
}

fn list<'a>(state: &'a Value, key: &str) -> &'a [Value] {
    state[key].as_array().map(Vec::as_slice).unwrap_or_default()
}

/// A headless chromium driven through its own chromedriver.
pub struct Browser {
    pub client: Client,
    /// Where a failing wait leaves a screenshot and the page source.
    name: String,
    // Dropped after the client: the process group first, then the profile.
    _driver: Proc,
    _profile: tempfile::TempDir,
}

impl Browser {
    pub async fn start(name: &str) -> Browser {
        Browser::start_with(name, &[]).await
    }

    /// With more chromium command-line switches.
    pub async fn start_with(name: &str, switches: &[String]) -> Browser {
        for path in [CHROMEDRIVER, CHROMIUM] {
            assert!(
                Path::new(path).exists(),
                "{path} is missing: run scripts/browser-deps (Debian's chromium and chromium-driver)"
            );
        }
        let (driver, url) = start_driver().await;
        let profile = tempfile::Builder::new()
            .prefix("authgate-chromium-")
            .tempdir()
            .expect("a temporary chromium profile");
        let capabilities = capabilities(profile.path(), switches);
        let client = bounded(
            "opening a chromium session",
            ClientBuilder::new(HttpConnector::new())
                .capabilities(capabilities)
                .connect(&url),
        )
        .await;
        Browser {
            client,
            name: name.to_owned(),
            _driver: driver,
            _profile: profile,
        }
    }

    pub async fn goto(&self, url: &str) {
        bounded(&format!("opening {url}"), self.client.goto(url)).await;
    }

    pub async fn find(&self, css: &str) -> Element {
        bounded(
            &format!("finding {css:?}"),
            self.client.find(Locator::Css(css)),
        )
        .await
    }

    pub async fn type_into(&self, css: &str, text: &str) {
        let field = self.find(css).await;
        bounded(&format!("typing into {css:?}"), field.send_keys(text)).await;
    }

    pub async fn click(&self, css: &str) {
        let element = self.find(css).await;
        bounded(&format!("clicking {css:?}"), element.click()).await;
    }

    /// Waits until the current page passes `check(url, source)`; on timeout
    /// saves a screenshot and the source, and panics with what was seen.
    pub async fn wait_page<F>(&self, what: &str, timeout: Duration, check: F) -> (url::Url, String)
    where
        F: Fn(&url::Url, &str) -> bool,
    {
        let deadline = Instant::now() + timeout;
        loop {
            // The URL is read on both sides of the source: a navigation
            // that lands between two reads would pair the old page's URL
            // with the new page's source.
            let url = tokio::time::timeout(COMMAND, self.client.current_url()).await;
            let source = tokio::time::timeout(COMMAND, self.client.source()).await;
            let url_after = tokio::time::timeout(COMMAND, self.client.current_url()).await;
            if let (Ok(Ok(url)), Ok(Ok(source)), Ok(Ok(url_after))) = (&url, &source, &url_after)
                && url == url_after
                && check(url, source)
            {
                return (url.clone(), source.clone());
            }
            if Instant::now() >= deadline {
                let saved = self.save_evidence(what).await;
                let source = match source {
                    Ok(Ok(source)) => source,
                    other => format!("{other:?}"),
                };
                panic!(
                    "timed out after {timeout:?} waiting for {what}; the browser is at {url:?}; \
                     evidence in {saved:?}; page source:\n{source}"
                );
            }
            tokio::time::sleep(POLL).await;
        }
    }

    async fn save_evidence(&self, what: &str) -> Option<PathBuf> {
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser");
        std::fs::create_dir_all(&dir).ok()?;
        let stem: String = format!("{}-{what}", self.name)
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
            .collect();
        let png = tokio::time::timeout(COMMAND, self.client.screenshot()).await;
        if let Ok(Ok(png)) = png {
            std::fs::write(dir.join(format!("{stem}.png")), png).ok()?;
        }
        let html = tokio::time::timeout(COMMAND, self.client.source()).await;
        if let Ok(Ok(html)) = html {
            std::fs::write(dir.join(format!("{stem}.html")), html).ok()?;
        }
        Some(dir)
    }

    /// The Content-Security-Policy violations chromium reported on its
    /// console since the last call (it reports each one there, "Refused to
    /// … because it violates the following Content Security Policy
    /// directive …"), whatever page they happened on.
    pub async fn csp_violations(&self) -> Vec<String> {
        let log = bounded(
            "reading the browser console log",
            self.client.issue_cmd(ConsoleLog),
        )
        .await;
        let entries = log.as_array().map(Vec::as_slice).unwrap_or_default();
        entries
            .iter()
            .filter_map(|entry| entry["message"].as_str())
            .filter(|message| message.contains("Content Security Policy"))
            .map(str::to_owned)
            .collect()
    }

    /// Ends the WebDriver session (chromium quits); dropping the browser
    /// after a failure kills the process group instead.
    pub async fn quit(self) {
        let _ = tokio::time::timeout(COMMAND, self.client.clone().close()).await;
    }
}

fn capabilities(profile: &Path, switches: &[String]) -> serde_json::Map<String, Value> {
    let mut args = vec![
        "--headless=new".to_owned(),
        "--no-sandbox".to_owned(),
        "--disable-gpu".to_owned(),
        "--disable-dev-shm-usage".to_owned(),
        "--disable-quic".to_owned(),
        "--no-first-run".to_owned(),
        "--disable-background-networking".to_owned(),
        "--disable-component-update".to_owned(),
        "--disable-sync".to_owned(),
        "--no-proxy-server".to_owned(),
        "--window-size=1024,768".to_owned(),
        format!("--user-data-dir={}", profile.display()),
    ];
    args.extend_from_slice(switches);
    let capabilities = json!({
        "browserName": "chrome",
        "pageLoadStrategy": "normal",
        "timeouts": {"pageLoad": COMMAND.as_millis() as u64, "script": COMMAND.as_millis() as u64, "implicit": 0},
        "goog:chromeOptions": {"binary": CHROMIUM, "args": args},
        // Keeps the console (CSP violations included) for `csp_violations`.
        "goog:loggingPrefs": {"browser": "ALL"},
    });
    match capabilities {
        Value::Object(map) => map,
        _ => unreachable!("a JSON object literal"),
    }
}

/// chromedriver on a free port, once its `/status` says it is ready.
async fn start_driver() -> (Proc, String) {
    let http = http();
    let mut last_failure = String::new();
    for _ in 0..3 {
        let port = free_port();
        let mut command = Command::new(CHROMEDRIVER);
        // Without --allowed-ips chromedriver listens on loopback only.
        command.arg(format!("--port={port}"));
        let mut driver = Proc::spawn("chromedriver", command).expect("starting chromedriver");
        let url = format!("http://127.0.0.1:{port}");
        let deadline = Instant::now() + BROWSER_START;
        loop {
            if let Some(status) = driver.exited() {
                last_failure = format!("chromedriver exited ({status}):\n{}", driver.output());
                break;
            }
            let ready = match http.get(format!("{url}/status")).send().await {
                Ok(response) => response
                    .json::<Value>()
                    .await
                    .is_ok_and(|s| s["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                return (driver, url);
            }
            if Instant::now() >= deadline {
                last_failure = format!(
                    "chromedriver not ready after {BROWSER_START:?}:\n{}",
                    driver.output()
                );
                break;
            }
            tokio::time::sleep(POLL).await;
        }
    }
    panic!("chromedriver did not start: {last_failure}");
}

/// chromedriver's console log (an extension, not W3C WebDriver): the
/// entries since the last read, kept because of `goog:loggingPrefs`.
#[derive(Debug)]
struct ConsoleLog;

impl WebDriverCompatibleCommand for ConsoleLog {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        base_url.join(&format!(
            "session/{}/se/log",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        let body = json!({"type": "browser"}).to_string();
        (http::Method::POST, Some(body))
    }
}

/// How a virtual authenticator reaches the browser.
#[derive(Debug, Clone, Copy)]
pub enum Transport {
    /// Built into the device (a platform authenticator: Touch ID, Windows Hello).
    Internal,
    /// A roaming security key on USB.
    Usb,
}

impl Transport {
    fn as_str(self) -> &'static str {
        match self {
            Transport::Internal => "internal",
            Transport::Usb => "usb",
        }
    }
}

/// What a virtual authenticator can do and what its "user" does: the
/// options of the WebDriver WebAuthn extension (CTAP2 always).
#[derive(Debug, Clone, Copy)]
pub struct AuthenticatorOptions {
    pub transport: Transport,
    /// Keeps discoverable credentials (passkeys).
    pub resident_key: bool,
    /// Can verify the user (PIN, biometrics).
    pub user_verification: bool,
    /// The verification succeeds (when it is asked for).
    pub user_verified: bool,
    /// The user touches the key or accepts the prompt; `false` is a user
    /// who cancels every ceremony.
    pub user_consenting: bool,
}

impl AuthenticatorOptions {
    /// A USB security key with a PIN (chromium creates a passkey on a key
    /// only once it can verify the user).
    pub fn security_key() -> AuthenticatorOptions {
        AuthenticatorOptions {
            transport: Transport::Usb,
            resident_key: true,
            user_verification: true,
            user_verified: true,
            user_consenting: true,
        }
    }

    /// A platform passkey authenticator that verifies the user.
    pub fn passkey() -> AuthenticatorOptions {
        AuthenticatorOptions {
            transport: Transport::Internal,
            resident_key: true,
            user_verification: true,
            user_verified: true,
            user_consenting: true,
        }
    }

    fn to_json(self) -> Value {
        json!({
            "protocol": "ctap2",
            "transport": self.transport.as_str(),
            "hasResidentKey": self.resident_key,
            "hasUserVerification": self.user_verification,
            "isUserVerified": self.user_verified,
            "isUserConsenting": self.user_consenting,
        })
    }
}

/// A credential a virtual authenticator holds, as chromedriver lists it.
#[derive(Debug, Clone)]
pub struct VirtualCredential {
    /// base64url, as the browser sends it to the server.
    pub id: String,
    /// A discoverable credential (a passkey).
    pub resident: bool,
    pub rp_id: String,
    pub sign_count: u64,
}

impl VirtualCredential {
    fn from_json(value: &Value) -> VirtualCredential {
        VirtualCredential {
            id: value["credentialId"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            resident: value["isResidentCredential"] == true,
            rp_id: value["rpId"].as_str().unwrap_or_default().to_owned(),
            sign_count: value["signCount"].as_u64().unwrap_or_default(),
        }
    }
}

/// An authenticator chromium simulates for the current tab, in place of a
/// real key; it lives until `remove` or the end of the session.
#[derive(Debug)]
pub struct VirtualAuthenticator {
    id: String,
}

impl Browser {
    /// Adds a virtual authenticator: from now on the page's WebAuthn calls
    /// reach it instead of a real key (no prompt is shown).
    pub async fn add_authenticator(&self, options: AuthenticatorOptions) -> VirtualAuthenticator {
        let answer = bounded(
            "adding a virtual authenticator",
            self.client
                .issue_cmd(WebAuthnCommand::AddAuthenticator(options)),
        )
        .await;
        let id = answer
            .as_str()
            .unwrap_or_else(|| panic!("the authenticator id, not {answer}"));
        VirtualAuthenticator { id: id.to_owned() }
    }
}

impl VirtualAuthenticator {
    /// The credentials it holds now.
    pub async fn credentials(&self, browser: &Browser) -> Vec<VirtualCredential> {
        let answer = bounded(
            "listing the credentials of a virtual authenticator",
            browser
                .client
                .issue_cmd(WebAuthnCommand::Credentials(self.id.clone())),
        )
        .await;
        answer
            .as_array()
            .unwrap_or_else(|| panic!("a list of credentials, not {answer}"))
            .iter()
            .map(VirtualCredential::from_json)
            .collect()
    }

    /// Whether the next user verification succeeds.
    pub async fn set_user_verified(&self, browser: &Browser, verified: bool) {
        bounded(
            "setting user verification",
            browser
                .client
                .issue_cmd(WebAuthnCommand::SetUserVerified(self.id.clone(), verified)),
        )
        .await;
    }

    /// Unplugs it: its credentials are gone with it.
    pub async fn remove(self, browser: &Browser) {
        bounded(
            "removing a virtual authenticator",
            browser
                .client
                .issue_cmd(WebAuthnCommand::RemoveAuthenticator(self.id)),
        )
        .await;
    }
}

/// The WebDriver WebAuthn extension's commands
/// (<https://w3c.github.io/webauthn/#sctn-automation>), which chromedriver
/// serves under `/session/{id}/webauthn/`.
#[derive(Debug)]
enum WebAuthnCommand {
    AddAuthenticator(AuthenticatorOptions),
    /// The authenticator's id.
    RemoveAuthenticator(String),
    Credentials(String),
    SetUserVerified(String, bool),
}

impl WebDriverCompatibleCommand for WebAuthnCommand {
    fn endpoint(
        &self,
        base_url: &url::Url,
        session_id: Option<&str>,
    ) -> Result<url::Url, url::ParseError> {
        let authenticator = match self {
            WebAuthnCommand::AddAuthenticator(_) => "authenticator".to_owned(),
            WebAuthnCommand::RemoveAuthenticator(id) => format!("authenticator/{id}"),
            WebAuthnCommand::Credentials(id) => format!("authenticator/{id}/credentials"),
            WebAuthnCommand::SetUserVerified(id, _) => format!("authenticator/{id}/uv"),
        };
        base_url.join(&format!(
            "session/{}/webauthn/{authenticator}",
            session_id.unwrap_or_default()
        ))
    }

    fn method_and_body(&self, _request_url: &url::Url) -> (http::Method, Option<String>) {
        match self {
            WebAuthnCommand::AddAuthenticator(options) => {
                (http::Method::POST, Some(options.to_json().to_string()))
            }
            WebAuthnCommand::RemoveAuthenticator(_) => (http::Method::DELETE, None),
            WebAuthnCommand::Credentials(_) => (http::Method::GET, None),
            WebAuthnCommand::SetUserVerified(_, verified) => {
                let body = json!({ "isUserVerified": verified }).to_string();
                (http::Method::POST, Some(body))
            }
        }
    }
}
