//! `authgate demo`: the gateway, the Authy sandbox and a demo upstream on
//! one machine, with a temporary store and a demo user. No account and no
//! network needed.

mod upstream;

use std::net::SocketAddr;
use std::path::Path;

use crate::config::{self, ConfigSource};
use crate::model::User;
use crate::sandbox::{
    DEFAULT_VERIFY_ACCOUNT_SID, DEFAULT_VERIFY_AUTH_TOKEN, DEFAULT_VERIFY_SERVICE_SID, Sandbox,
    SandboxConfig, SandboxError,
};
use crate::users::UsersFile;

pub const DEMO_EMAIL: &str = "demo@example.com";
pub const DEMO_PASSWORD: &str = "demo-password";
/// Confirms with built-in TOTP; the demo enrolls them and prints the secret.
pub const TOTP_EMAIL: &str = "totp@example.com";
/// Confirms with Twilio Verify (the sandbox's).
pub const VERIFY_EMAIL: &str = "verify@example.com";
/// Has no second factor yet: enrolls TOTP at the first login.
pub const ENROLL_EMAIL: &str = "new@example.com";
/// Has no second factor yet: registers a passkey or security key at the
/// first login, then may sign in with it alone.
pub const PASSKEY_EMAIL: &str = "passkey@example.com";

#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("demo: {0}")]
    Io(#[from] std::io::Error),
    #[error(transparent)]
    Sandbox(#[from] SandboxError),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Users(#[from] crate::users::UsersFileError),
    #[error("demo: {0}")]
    Password(#[from] crate::auth::password::PasswordError),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// The demo's world: a temporary directory with the config, users and
/// store, the sandbox and the demo upstream, running until dropped. The
/// caller runs the gateway on `config`.
pub struct Demo {
    pub config: config::Config,
    /// Stops when dropped.
    _sandbox: Sandbox,
    upstream: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl Demo {
    pub async fn start(listen: SocketAddr) -> Result<Demo, DemoError> {
        let dir = tempfile::tempdir()?;
        let api_key = random_key()?;
        let gateway_url = public_url(listen);
        let mut sandbox_config = SandboxConfig::new(api_key.clone());
        sandbox_config.callback_url = Some(format!("{gateway_url}/_authgate/authy/callback"));
        let sandbox = Sandbox::start(SocketAddr::from(([127, 0, 0, 1], 0)), sandbox_config).await?;
        let (listener, upstream_addr) = upstream::bind().await?;
        let upstream = tokio::spawn(upstream::serve(listener));
        let config_path = write_files(
            dir.path(),
            listen,
            &gateway_url,
            &sandbox.url(),
            upstream_addr,
            &api_key,
        )?;
        let config = config::load(&ConfigSource::Explicit(config_path))?;
        let totp_secret = enroll_totp_user(&config)?;
        print_banner(&gateway_url, &sandbox.page_url(), &totp_secret);
        Ok(Demo {
            config,
            _sandbox: sandbox,
            upstream,
            _dir: dir,
        })
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.upstream.abort();
    }
}

/// `localhost` for a loopback address: browsers refuse an IP address as
/// WebAuthn's relying party, and passkeys are part of the demo.
fn public_url(listen: SocketAddr) -> String {
    match listen.ip().is_loopback() {
        true => format!("http://localhost:{}", listen.port()),
        false => format!("http://{listen}"),
    }
}

fn write_files(
    dir: &Path,
    listen: SocketAddr,
    public_url: &str,
    sandbox_url: &str,
    upstream: SocketAddr,
    api_key: &str,
) -> Result<std::path::PathBuf, DemoError> {
    let users_path = dir.join("users.toml");
    let mut users = UsersFile::open_or_empty(&users_path)?;
    let password = crate::auth::password::hash_password(DEMO_PASSWORD)?;
    let people = [
        (DEMO_EMAIL, "Demo User", "5551234567", "authy"),
        (TOTP_EMAIL, "TOTP User", "", "totp"),
        (VERIFY_EMAIL, "Verify User", "5557654321", "verify"),
        (ENROLL_EMAIL, "New User", "", "totp"),
        (PASSKEY_EMAIL, "Passkey User", "", "webauthn"),
    ];
    let passkeys = listen.ip().is_loopback();
    for (email, name, phone, method) in people {
        if method == "webauthn" && !passkeys {
            continue;
        }
        users.add(User {
            email: email.into(),
            name: name.into(),
            country_code: if phone.is_empty() { "" } else { "1" }.into(),
            phone: phone.into(),
            password: password.clone(),
            groups: vec!["demo".into()],
            second_factor: Some(method.into()),
            second_factor_reset: None,
            identity: Default::default(),
        })?;
    }
    users.save()?;
    let toml = format!(
        r#"[server]
listen = "{listen}"
public_url = "{public_url}"

[upstream]
url = "http://{upstream}"

[session]
secret = "{secret}"

[store]
path = {store:?}

[users]
file = {users:?}

[metrics]
listen = ""

[auth]
methods = ["authy", "totp", "verify"{webauthn_method}]
{webauthn}
[authy]
api_key = "{api_key}"
api_url = "{sandbox_url}"

[verify]
api_url = "{sandbox_url}"
account_sid = "{DEFAULT_VERIFY_ACCOUNT_SID}"
auth_token = "{DEFAULT_VERIFY_AUTH_TOKEN}"
service_sid = "{DEFAULT_VERIFY_SERVICE_SID}"

# The demo app's transfer form: each transfer is approved on its own
# (docs/approval.md), with its amount and recipient on the phone.
[[access_control.rules]]
path = "^/transfer$"
methods = ["POST"]
policy = "approve"
approve.message = "Send {{amount}} {{currency}} to {{to}}"
approve.fields = {{ amount = "form:amount", currency = "form:currency", to = "form:to" }}
"#,
        webauthn_method = if passkeys { ", \"webauthn\"" } else { "" },
        webauthn = if passkeys {
            "\n[webauthn]\nrp_name = \"authgate demo\"\npasswordless = true\n"
        } else {
            ""
        },
        secret = random_key()?,
        store = dir.join("store").display().to_string(),
        users = users_path.display().to_string(),
    );
    let config_path = dir.join("authgate.toml");
    std::fs::write(&config_path, toml)?;
    Ok(config_path)
}

/// Enrolls the TOTP demo user before the gateway starts, so any
/// authenticator app (or `oathtool --totp -b SECRET`) gives their codes.
fn enroll_totp_user(config: &config::Config) -> Result<String, DemoError> {
    let store = std::sync::Arc::new(crate::store::SledStore::open(&config.store.path)?);
    let totp = crate::factor::totp::TotpFactor::new(
        store.clone(),
        crate::app::totp_sealer(config),
        config.totp.issuer.clone(),
        std::sync::Arc::new(crate::clock::SystemClock),
    );
    let secret = totp
        .enroll_unconfirmed(TOTP_EMAIL)
        .map_err(|e| std::io::Error::other(e.to_string()))?;
    crate::store::SessionStore::flush(store.as_ref())?;
    Ok(secret)
}

fn print_banner(gateway_url: &str, sandbox_page: &str, totp_secret: &str) {
    println!(
        "\nauthgate demo is running.\n\n  \
         open      {gateway_url}/\n  \
         password  {DEMO_PASSWORD} for every user below\n\n  \
         {DEMO_EMAIL:<20} Authy: approve the push, or read the SMS and app codes, at {sandbox_page}\n  \
         {TOTP_EMAIL:<20} TOTP: add the key {totp_secret} to an authenticator app,\n  \
         {:<20}   or run `oathtool --totp -b {totp_secret}`\n  \
         {VERIFY_EMAIL:<20} Twilio Verify: read the code \"sent\" by SMS at {sandbox_page}\n  \
         {ENROLL_EMAIL:<20} no second factor yet: the first login shows the TOTP set-up page\n  \
         {PASSKEY_EMAIL:<20} no second factor yet: the first login registers a passkey or security key\n  \
         {:<20}   (no key at hand? Chrome DevTools > More tools > WebAuthn: enable a virtual authenticator)\n  \
         {:<20}   then \"Sign in with a passkey\" on the login page needs no password\n\n  \
         The app's \"Send money\" form is behind an approve rule: each transfer waits\n  \
         for its own approval (a push showing amount and recipient, a fresh code,\n  \
         or the passkey user's key).\n\n\
         Everything is on this machine; stop with Ctrl-C.\n",
        "", "", ""
    );
}

fn random_key() -> Result<String, DemoError> {
    let mut bytes = [0u8; 24];
    getrandom::getrandom(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
