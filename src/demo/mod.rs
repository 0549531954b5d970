//! `authgate demo`: the gateway, the Authy sandbox and a demo upstream on
//! one machine, with a temporary store and a demo user. No account and no
//! network needed.

mod upstream;

use std::net::SocketAddr;
use std::path::Path;

use crate::config::{self, ConfigSource};
use crate::factor::authy::sandbox::{Sandbox, SandboxConfig, SandboxError};
use crate::users::{User, UsersFile};

pub const DEMO_EMAIL: &str = "demo@example.com";
pub const DEMO_PASSWORD: &str = "demo-password";

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
    #[error(transparent)]
    Server(#[from] crate::server::ServerError),
    #[error("demo: {0}")]
    Password(#[from] crate::auth::password::PasswordError),
}

/// Runs until SIGTERM/SIGINT; everything lives in a temporary directory.
pub async fn run(listen: SocketAddr) -> Result<(), DemoError> {
    let dir = tempfile::tempdir()?;
    let api_key = random_key()?;
    let gateway_url = format!("http://{listen}");
    let mut sandbox_config = SandboxConfig::new(api_key.clone());
    sandbox_config.callback_url = Some(format!("{gateway_url}/_authgate/authy/callback"));
    let sandbox = Sandbox::start(SocketAddr::from(([127, 0, 0, 1], 0)), sandbox_config).await?;
    let (listener, upstream_addr) = upstream::bind().await?;
    let app = tokio::spawn(upstream::serve(listener));
    let config_path = write_files(dir.path(), listen, &sandbox.url(), upstream_addr, &api_key)?;
    let config = config::load(&ConfigSource::Explicit(config_path))?;
    print_banner(&gateway_url, &sandbox.page_url());
    let result = crate::server::run(config).await;
    app.abort();
    sandbox.shutdown();
    Ok(result?)
}

fn write_files(
    dir: &Path,
    listen: SocketAddr,
    sandbox_url: &str,
    upstream: SocketAddr,
    api_key: &str,
) -> Result<std::path::PathBuf, DemoError> {
    let users_path = dir.join("users.toml");
    let mut users = UsersFile::open_or_empty(&users_path)?;
    users.add(User {
        email: DEMO_EMAIL.into(),
        name: "Demo User".into(),
        country_code: "1".into(),
        phone: "5551234567".into(),
        password: crate::auth::password::hash_password(DEMO_PASSWORD)?,
        groups: vec!["demo".into()],
        second_factor: Some("authy".into()),
    })?;
    users.save()?;
    let toml = format!(
        r#"[server]
listen = "{listen}"
public_url = "http://{listen}"

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

[authy]
api_key = "{api_key}"
api_url = "{sandbox_url}"
"#,
        secret = random_key()?,
        store = dir.join("store").display().to_string(),
        users = users_path.display().to_string(),
    );
    let config_path = dir.join("authgate.toml");
    std::fs::write(&config_path, toml)?;
    Ok(config_path)
}

fn print_banner(gateway_url: &str, sandbox_page: &str) {
    println!(
        "\nauthgate demo is running.\n\n  \
         open      {gateway_url}/\n  \
         log in    {DEMO_EMAIL} / {DEMO_PASSWORD}\n  \
         approve   the push, or read the SMS and app codes, at {sandbox_page}\n\n\
         Everything is on this machine; stop with Ctrl-C.\n"
    );
}

fn random_key() -> Result<String, DemoError> {
    let mut bytes = [0u8; 24];
    getrandom::getrandom(&mut bytes).map_err(|e| std::io::Error::other(e.to_string()))?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}
