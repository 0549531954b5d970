//! Command line: parses arguments, runs a subcommand, maps errors to exit
//! codes. Everything below this file returns typed errors; `anyhow` lives
//! only here.

use std::io::{IsTerminal, Read};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use std::net::SocketAddr;

use authgate::admin::client::ClientError;
use authgate::admin::{AdminService, Reply, Request};
use authgate::app::App;
use authgate::audit::Audit;
use authgate::audit::writer::{self as audit_writer, Sink};
use authgate::config::{self, ConfigSource, LogFormat};
use authgate::model::{Method, User};
use authgate::sandbox::{self, SandboxConfig};
use authgate::server::{self, shutdown_signal};
use authgate::store::{CopyDirection, SessionTimeouts, copy_store};
use authgate::users::UsersFile;

#[derive(Parser)]
#[command(
    name = "authgate",
    version,
    about = "Two-factor authentication gateway"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    config: ConfigArg,
}

#[derive(Args, Clone)]
struct ConfigArg {
    /// Config file (TOML). Default: authgate.toml, optional when absent.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Log as `text` or `json` lines; overrides `log.format`.
    #[arg(long, global = true, value_parser = ["text", "json"])]
    log_format: Option<String>,
}

impl ConfigArg {
    fn source(&self) -> ConfigSource {
        match &self.config {
            Some(path) => ConfigSource::Explicit(path.clone()),
            None => ConfigSource::Default,
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway (the default command).
    Serve,
    /// Validate the config (and render every portal template once) and
    /// print it with secrets masked.
    CheckConfig,
    /// Read a password (stdin or prompt) and print its argon2id hash.
    HashPassword,
    /// Edit the users file named by `users.file`.
    #[command(subcommand)]
    User(UserCommand),
    /// Work on the store itself, with the gateway stopped.
    #[command(subcommand)]
    Store(StoreCommand),
    /// List and end live sessions: through the running gateway's admin
    /// socket (`server.admin_socket`), else on the store directly.
    #[command(subcommand)]
    Session(SessionCommand),
    /// Ask the running gateway's healthz endpoint; exit 0 when healthy.
    Healthcheck,
    /// Which access rule decides a URL, and why.
    CheckAccess {
        /// The URL asked for, e.g. https://app.example.com/admin
        url: String,
        /// Decide as this user (subject rules need one).
        #[arg(long)]
        user: Option<String>,
        #[arg(long, default_value = "GET")]
        method: String,
        /// The client address, for `networks` rules.
        #[arg(long, default_value = "127.0.0.1")]
        client: std::net::IpAddr,
    },
    /// Everything on one machine: gateway, Authy sandbox, demo upstream.
    Demo {
        /// Where the gateway listens (loopback).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: SocketAddr,
    },
    /// The Authy sandbox alone (loopback only).
    Sandbox {
        #[arg(long, default_value = "127.0.0.1:9090")]
        listen: SocketAddr,
        /// The API key clients must send; it also signs callbacks.
        #[arg(long, default_value = "sandbox-api-key")]
        api_key: String,
        /// Where OneTouch callbacks are sent; none: poll only.
        #[arg(long)]
        callback_url: Option<String>,
        /// POST (JSON) or GET (query).
        #[arg(long, default_value = "POST")]
        callback_method: String,
        /// Twilio Verify v2: the account SID clients authenticate with.
        #[arg(long, default_value = sandbox::DEFAULT_VERIFY_ACCOUNT_SID)]
        verify_account_sid: String,
        /// Twilio Verify v2: the auth token clients authenticate with.
        #[arg(long, default_value = sandbox::DEFAULT_VERIFY_AUTH_TOKEN)]
        verify_auth_token: String,
        /// Twilio Verify v2: the one service the sandbox knows.
        #[arg(long, default_value = sandbox::DEFAULT_VERIFY_SERVICE_SID)]
        verify_service_sid: String,
    },
}

#[derive(Subcommand)]
enum StoreCommand {
    /// Copy sessions, sign-up users, users' factors and provider ids
    /// between sled and Redis, into an empty target; stop the gateway first.
    Copy {
        /// `sled`: from `[store.redis]` into sled at `store.path`. A
        /// redis:// or rediss:// URL: from sled at `store.path` into that
        /// Redis, reached with the other `[store.redis]` settings.
        #[arg(long, value_name = "TARGET")]
        to: String,
    },
}

#[derive(Subcommand)]
enum SessionCommand {
    /// Every live session, or one user's.
    List {
        #[arg(long, value_name = "EMAIL")]
        user: Option<String>,
    },
    /// End every session of a user, or the one session a reference names.
    Revoke {
        #[arg(
            long,
            value_name = "EMAIL",
            required_unless_present = "id",
            conflicts_with = "id"
        )]
        user: Option<String>,
        /// The session's reference (`session list`, the audit trail): at
        /// least 6 of its hex digits.
        #[arg(long, value_name = "PREFIX")]
        id: Option<String>,
    },
}

#[derive(Subcommand)]
enum UserCommand {
    /// Add a user; the password is read from stdin or prompted for.
    Add {
        #[arg(long)]
        email: String,
        #[arg(long, default_value = "")]
        name: String,
        #[arg(long, default_value = "")]
        country_code: String,
        #[arg(long, default_value = "")]
        phone: String,
        /// Comma-separated group names.
        #[arg(long, value_delimiter = ',')]
        groups: Vec<String>,
        /// authy | totp | verify
        #[arg(long)]
        second_factor: Option<String>,
    },
    /// List users (never their hashes).
    List,
    /// Remove a user; their sessions end at their next request.
    Remove { email: String },
    /// The user keeps their factors but cannot log in; their sessions end
    /// now (through the admin socket, or on the store directly).
    Disable { email: String },
    /// Lets a disabled user log in again.
    Enable { email: String },
    /// Reset a user's second factor: their TOTP no longer counts and they
    /// enroll again at their next login (and are told why).
    #[command(name = "reset-2fa")]
    Reset2fa { email: String },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("authgate: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let source = cli.config.source();
    let log_format = cli.config.log_format.as_deref();
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(&source, log_format),
        Command::CheckConfig => {
            let text = config::effective_config_masked(&source)?;
            check_pages(&config::load(&source)?)?;
            print!("{text}");
            Ok(())
        }
        Command::HashPassword => {
            let password = read_password("Password: ")?;
            println!("{}", authgate::auth::password::hash_password(&password)?);
            Ok(())
        }
        Command::User(cmd) => user_command(&source, cmd),
        Command::Store(StoreCommand::Copy { to }) => store_copy(&source, &to),
        Command::Session(cmd) => session_command(&source, cmd),
        Command::Healthcheck => healthcheck(&source),
        Command::CheckAccess {
            url,
            user,
            method,
            client,
        } => check_access(&source, &url, user.as_deref(), &method, client),
        Command::Demo { listen } => {
            authgate::logging::init(log_format_or(log_format, LogFormat::Text));
            let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
            runtime.block_on(async {
                let demo = authgate::demo::Demo::start(listen).await?;
                run_gateway(&demo.config).await
            })
        }
        Command::Sandbox {
            listen,
            api_key,
            callback_url,
            callback_method,
            verify_account_sid,
            verify_auth_token,
            verify_service_sid,
        } => {
            let mut config = SandboxConfig::new(api_key);
            config.callback_url = callback_url;
            config.callback_method = callback_method.parse()?;
            config.verify_account_sid = verify_account_sid;
            config.verify_auth_token = verify_auth_token;
            config.verify_service_sid = verify_service_sid;
            in_runtime(
                log_format,
                sandbox::run_until(listen, config, shutdown_signal()),
            )
        }
    }
}

/// `[portal]`'s files read and every template rendered once with sample
/// data, as the gateway does at start: the one that fails is named.
fn check_pages(config: &config::Config) -> anyhow::Result<()> {
    authgate::pages::Pages::load(&config.portal, &config.server.path_prefix)
        .map_err(|err| anyhow::anyhow!("config error: {err}"))?;
    Ok(())
}

/// `--log-format` when given, else the configured format.
fn log_format_or(flag: Option<&str>, configured: LogFormat) -> LogFormat {
    match flag {
        Some("json") => LogFormat::Json,
        Some(_) => LogFormat::Text,
        None => configured,
    }
}

/// Runs a long-lived async command (demo, sandbox).
fn in_runtime<E>(
    log_format: Option<&str>,
    work: impl Future<Output = Result<(), E>>,
) -> anyhow::Result<()>
where
    E: std::error::Error + Send + Sync + 'static,
{
    authgate::logging::init(log_format_or(log_format, LogFormat::Text));
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(work)?;
    Ok(())
}

fn serve(source: &ConfigSource, log_format: Option<&str>) -> anyhow::Result<()> {
    let config = config::load(source)?;
    authgate::logging::init(log_format_or(log_format, config.log.format));
    // Before any thread starts: the arena limit covers only later threads.
    server::tune_allocator();
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(run_gateway(&config))
}

/// The gateway: the application assembled from `config`, served by the
/// transport until SIGTERM/SIGINT, then stopped with every session flushed.
async fn run_gateway(config: &config::Config) -> anyhow::Result<()> {
    let tls = server::load_tls(&config.server)?;
    let app = App::build(config).await?;
    server::run(&config.server, tls, app.handler()).await?;
    app.stop()?;
    Ok(())
}

fn user_command(source: &ConfigSource, cmd: UserCommand) -> anyhow::Result<()> {
    let users_path = config::users_file_path(source)?;
    let mut file = UsersFile::open_or_empty(&users_path)?;
    match cmd {
        UserCommand::Add {
            email,
            name,
            country_code,
            phone,
            groups,
            second_factor,
        } => {
            let password = read_password("Password for the new user: ")?;
            let password = authgate::auth::password::hash_password(&password)?;
            file.add(User {
                email,
                name,
                country_code,
                phone,
                password,
                groups,
                second_factor,
                second_factor_reset: None,
                identity: Default::default(),
            })?;
            file.save()?;
        }
        UserCommand::Reset2fa { email } if file.contains(&email) => {
            file.reset_second_factor(&email, unix_now())?;
            file.save()?;
            println!(
                "{email}: second factor reset; their TOTP secret and security keys no longer \
                 count, and they set up a second factor again at their next login (a running \
                 gateway picks this up within a second and removes the old keys)"
            );
        }
        UserCommand::Reset2fa { email } => reset_signup_user(source, &email)?,
        UserCommand::List => {
            let offered = config::load(source).map(|c| c.auth.methods).ok();
            let disabled = disabled_users(source);
            for user in file.users() {
                let methods = user_methods(user, offered.as_deref());
                let state = match &disabled {
                    Some(d) if d.contains(&user.email.to_ascii_lowercase()) => "\tdisabled",
                    _ => "",
                };
                println!(
                    "{}\t{}\t{}\t{methods}{state}",
                    user.email,
                    user.name,
                    user.groups.join(",")
                );
            }
        }
        UserCommand::Disable { email } => {
            print_reply(admin_request(source, Request::DisableUser { user: email })?)?;
        }
        UserCommand::Enable { email } => {
            print_reply(admin_request(source, Request::EnableUser { user: email })?)?;
        }
        UserCommand::Remove { email } => {
            file.remove(&email)?;
            file.save()?;
        }
    }
    Ok(())
}

/// The second factors a user may confirm with: the one the users file
/// pins, else every one `auth.methods` offers ("?" without a config).
fn user_methods(user: &User, offered: Option<&[Method]>) -> String {
    if let Some(pinned) = &user.second_factor {
        return pinned.clone();
    }
    match offered {
        Some(methods) => methods
            .iter()
            .map(|m| m.as_str())
            .collect::<Vec<_>>()
            .join(","),
        None => "?".into(),
    }
}

/// A sign-up user lives in the store: reset through the running
/// gateway's admin socket, else in the store directly (sled's is held
/// locked by a gateway running without the socket). Their TOTP is
/// removed, so they enroll again at their next login.
fn reset_signup_user(source: &ConfigSource, email: &str) -> anyhow::Result<()> {
    let reply = admin_request(
        source,
        Request::ResetSecondFactor {
            user: email.to_owned(),
        },
    )
    .with_context(|| {
        format!("{email} is not in the users file, so it can only be a sign-up user")
    })?;
    match reply {
        Reply::SecondFactorReset {
            had_totp,
            security_keys,
            ..
        } if had_totp || security_keys > 0 => {
            println!(
                "{email}: TOTP {} and {security_keys} security key(s) removed; they set up a \
                 second factor again at their next login",
                if had_totp { "secret" } else { "(none)" }
            );
        }
        Reply::SecondFactorReset { .. } => {
            println!("{email}: had no TOTP and no security key; nothing to reset")
        }
        Reply::Error { .. } => {
            bail!("no user {email} in the users file or among the sign-up users")
        }
        other => bail!("unexpected answer {other:?}"),
    }
    Ok(())
}

fn session_command(source: &ConfigSource, cmd: SessionCommand) -> anyhow::Result<()> {
    let request = match cmd {
        SessionCommand::List { user } => Request::ListSessions { user },
        SessionCommand::Revoke {
            user: Some(user), ..
        } => Request::RevokeUser { user },
        SessionCommand::Revoke { id: Some(id), .. } => Request::RevokeSession { id },
        SessionCommand::Revoke { .. } => bail!("session revoke takes --user EMAIL or --id PREFIX"),
    };
    print_reply(admin_request(source, request)?)
}

/// Asks the running gateway on `server.admin_socket`; when none listens
/// there (or no socket is configured), does the same on the store.
fn admin_request(source: &ConfigSource, request: Request) -> anyhow::Result<Reply> {
    let config = config::load(source)?;
    if let Some(path) = &config.server.admin_socket {
        match authgate::admin::client::ask(path, &request) {
            Ok(reply) => return Ok(reply),
            Err(ClientError::NotRunning(_)) => {}
            Err(err) => return Err(err.into()),
        }
    }
    // The audit trail as the gateway would write it; a current-thread
    // runtime runs the writer at the end, when the command waits for it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let (audit, writer) = match Sink::of(&config.audit.output) {
        Some(sink) if !request.is_read_only() => {
            let (audit, records) = Audit::for_command(&config.audit.replica);
            let writer = runtime.block_on(audit_writer::start(sink, records))?;
            (audit, Some(runtime.spawn(writer)))
        }
        _ => (Audit::off(), None),
    };
    let answered = AdminService::open(&config, audit)
        .context(
            "no gateway answers on server.admin_socket, so this works on the store directly; \
             with sled, stop the gateway first (it holds the store) or set server.admin_socket",
        )
        .and_then(|service| {
            let reply = service.handle(request);
            service.flush()?;
            Ok(reply)
        });
    // The service (and with it every sender) is gone: the writer writes
    // what is queued and ends.
    if let Some(writer) = writer {
        runtime
            .block_on(writer)
            .context("writing the audit trail")?;
    }
    answered
}

/// The disabled users for `user list`, when they can be had without
/// creating a store: from the running gateway, from Redis, or from an
/// existing sled store.
fn disabled_users(source: &ConfigSource) -> Option<Vec<String>> {
    let config = config::load(source).ok()?;
    let reachable = config.server.admin_socket.is_some()
        || !matches!(config.store.backend, config::StoreBackend::Sled)
        || config.store.path.exists();
    if !reachable {
        return Some(Vec::new());
    }
    match admin_request(source, Request::ListDisabled) {
        Ok(Reply::DisabledUsers { users }) => Some(users),
        Ok(_) | Err(_) => {
            eprintln!("authgate: could not read which users are disabled; not shown");
            None
        }
    }
}

fn print_reply(reply: Reply) -> anyhow::Result<()> {
    match reply {
        Reply::Sessions { sessions } => {
            println!("REFERENCE\tUSER\tLEVEL\tCREATED\tLAST SEEN\tDEVICE\tMETHOD\tCLIENT");
            for s in sessions {
                println!(
                    "{}\t{}\t{}\t{}\t{}\t{}\t{}\t{}",
                    s.reference,
                    s.user,
                    serde_json::to_value(s.level)?.as_str().unwrap_or("?"),
                    time(s.created_at),
                    time(s.last_seen),
                    s.device.as_deref().unwrap_or("-"),
                    s.method.as_deref().unwrap_or("-"),
                    s.client.map_or_else(|| "-".to_owned(), |c| c.to_string())
                );
            }
        }
        Reply::Revoked { sessions } => println!("revoked {sessions} session(s)"),
        Reply::Disabled {
            user,
            was_enabled,
            sessions_ended,
        } => {
            let state = if was_enabled {
                "disabled"
            } else {
                "was disabled already"
            };
            println!("{user}: {state}; {sessions_ended} session(s) ended");
        }
        Reply::Enabled { user, was_disabled } => {
            let state = if was_disabled {
                "enabled"
            } else {
                "was not disabled"
            };
            println!("{user}: {state}");
        }
        Reply::DisabledUsers { users } => users.iter().for_each(|u| println!("{u}")),
        Reply::SecondFactorReset {
            user,
            had_totp,
            security_keys,
        } => {
            println!(
                "{user}: second factor reset (had TOTP: {had_totp}; security keys removed: \
                 {security_keys})"
            );
        }
        Reply::Error { message } => bail!("{message}"),
    }
    Ok(())
}

fn time(unix: u64) -> String {
    let at = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix);
    humantime::format_rfc3339_seconds(at).to_string()
}

/// `store copy --to TARGET`: the direction from the target, the Redis
/// settings from the config (the URL from `--to` when it is one).
fn store_copy(source: &ConfigSource, to: &str) -> anyhow::Result<()> {
    let (direction, url) = match to {
        "sled" => (CopyDirection::RedisToSled, None),
        url if url.starts_with("redis://") || url.starts_with("rediss://") => {
            (CopyDirection::SledToRedis, Some(url))
        }
        _ => bail!("--to takes \"sled\" or a redis:// or rediss:// URL"),
    };
    let config = config::load_for_store_copy(source, url)?;
    let config::StoreBackend::Redis(redis) = &config.store.backend else {
        bail!("store copy needs the Redis settings of [store.redis]");
    };
    let timeouts = SessionTimeouts {
        idle: config.session.idle_timeout,
        lifetime: config.session.lifetime,
    };
    let copied = copy_store(direction, &config.store.path, redis, timeouts).context(
        "store copy failed (a target written in part must be emptied before another try)",
    )?;
    let (from, into) = match direction {
        CopyDirection::SledToRedis => ("sled", "Redis"),
        CopyDirection::RedisToSled => ("Redis", "sled"),
    };
    println!(
        "copied from {from} to {into} (sled at {}):",
        config.store.path.display()
    );
    println!("  sessions:      {}", copied.sessions);
    println!("  disabled:      {} user(s)", copied.disabled_users);
    println!("  sign-up users: {}", copied.signup_users);
    println!("  user factors:  {}", copied.user_factors);
    println!("  provider ids:  {}", copied.factor_subjects);
    Ok(())
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Reads a password from stdin when it is not a terminal (scripts, tests),
/// else prompts without echo.
fn read_password(prompt: &str) -> anyhow::Result<String> {
    let password = if std::io::stdin().is_terminal() {
        rpassword::prompt_password(prompt).context("reading the password")?
    } else {
        let mut input = String::new();
        std::io::stdin()
            .read_to_string(&mut input)
            .context("reading the password from stdin")?;
        input.trim_end_matches(['\r', '\n']).to_owned()
    };
    if password.is_empty() {
        bail!("the password is empty");
    }
    if password.chars().count() > authgate::auth::password::MAX_PASSWORD_CHARS {
        bail!(
            "the password is longer than {} characters",
            authgate::auth::password::MAX_PASSWORD_CHARS
        );
    }
    Ok(password)
}

fn check_access(
    source: &ConfigSource,
    url: &str,
    email: Option<&str>,
    method: &str,
    client: std::net::IpAddr,
) -> anyhow::Result<()> {
    let config = config::load(source)?;
    let users = UsersFile::load(&config.users.file)?;
    let user = match email {
        Some(email) => Some(
            users
                .users()
                .iter()
                .find(|u| u.email.eq_ignore_ascii_case(email))
                .with_context(|| format!("no user {email} in {}", config.users.file.display()))?,
        ),
        None => None,
    };
    let (scheme, rest) = url.split_once("://").context("the URL needs a scheme")?;
    let (authority, path) = rest.find('/').map_or((rest, "/"), |i| rest.split_at(i));
    let target = authgate::access::normalize(scheme, authority, path, method, client)
        .with_context(|| format!("{url} cannot be normalized"))?;
    let decision = config.access_control.decide(&target, user);
    println!("target:   {} {}", target.method, target.url());
    println!("policy:   {}", decision.policy.as_str());
    println!("because:  {}", decision.reason);
    if decision.needs_user {
        println!("note:     a subject rule needs to know the user; pass --user EMAIL");
    }
    Ok(())
}

fn healthcheck(source: &ConfigSource) -> anyhow::Result<()> {
    let config = config::load(source)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    let healthy = runtime.block_on(server::probe_health(&config.server))?;
    if !healthy {
        bail!("the gateway at {} is not healthy", config.server.listen);
    }
    Ok(())
}
