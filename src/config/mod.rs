//! Configuration: figment layers (defaults < TOML file < `AUTHGATE_` env)
//! into a raw serde mirror (`raw.rs`), then a fallible conversion into the
//! typed [`Config`] below (`validate.rs`). Every error names the key.

mod error;
mod files;
mod load;
mod portal;
mod raw;
mod validate;
mod webauthn;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::IpNet;

pub use error::ConfigError;
pub use load::{ConfigSource, effective_config_masked, load, load_for_store_copy, users_file_path};
pub use portal::{FooterLink, ImageType, Logo, PortalConfig};
pub use webauthn::{Attestation, UserVerification, WebauthnConfig, parse_aaguid};

/// The validated, typed configuration the rest of the program uses.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub upstream: Option<UpstreamConfig>,
    pub session: SessionConfig,
    pub store: StoreConfig,
    pub users: UsersConfig,
    pub auth: AuthConfig,
    pub regulation: RegulationConfig,
    pub access_control: crate::access::AccessControl,
    pub log: LogConfig,
    /// `[authy]`, on when `authy.api_key` is set.
    pub authy: Option<AuthyConfig>,
    /// `[totp]`: always present, since TOTP needs no third party.
    pub totp: TotpConfig,
    /// `[verify]` (Twilio Verify), on when its credentials are set or
    /// `auth.methods` lists `verify`.
    pub verify: Option<VerifyConfig>,
    /// `[webauthn]`, on when `auth.methods` lists `webauthn`.
    pub webauthn: Option<WebauthnConfig>,
    pub signup: SignupConfig,
    pub metrics: MetricsConfig,
    pub proxy: ProxyConfig,
    pub audit: AuditConfig,
    pub portal: PortalConfig,
    pub approval: ApprovalConfig,
}

/// `[approval]`: limits of the requests held for `approve` rules
/// (docs/approval.md).
#[derive(Debug, Clone)]
pub struct ApprovalConfig {
    pub max_body: usize,
    /// Seconds a held request waits for its approval.
    pub timeout: u64,
    pub max_pending_bytes: usize,
    pub max_per_session: usize,
}

/// `[proxy]`: what proxy mode does to requests beyond the built-in rules.
#[derive(Debug, Clone, Default)]
pub struct ProxyConfig {
    /// `proxy.strip_request_headers`: lower case, `_` written as `-`; a
    /// trailing `*` makes the rest a prefix.
    pub strip_request_headers: Vec<String>,
}

/// `[audit]`: where the audit trail goes (docs/audit.md).
#[derive(Debug, Clone)]
pub struct AuditConfig {
    pub output: AuditOutput,
    /// `audit.queue`: events waiting for the writer, at least 1.
    pub queue: usize,
    /// `audit.replica`: this gateway's name in every event.
    pub replica: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditOutput {
    Off,
    Stdout,
    /// `audit.file`, reopened on SIGHUP.
    File(PathBuf),
}

/// `[metrics]`: Prometheus text on its own listener, never the public one.
#[derive(Debug, Clone)]
pub struct MetricsConfig {
    /// `metrics.listen`; `None` (an empty string) turns metrics off.
    pub listen: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct SignupConfig {
    pub enabled: bool,
    /// Lower-case; empty means any domain.
    pub allowed_email_domains: Vec<String>,
    /// Given to every sign-up account, so rules and upstreams can tell
    /// these unverified identities apart.
    pub groups: Vec<String>,
    pub min_password_length: usize,
}

#[derive(Debug, Clone)]
pub struct AuthyConfig {
    pub api_key: Secret,
    pub api_url: url::Url,
    /// The exact URL Authy calls; part of the signed string.
    pub callback_url: String,
    /// `{host}` is replaced by the host of the page asked for.
    pub onetouch_message: String,
    pub poll_interval: Duration,
    pub timeout: Duration,
    pub send_install_link: bool,
}

/// `[totp]`: the built-in authenticator-app codes (RFC 6238).
#[derive(Debug, Clone)]
pub struct TotpConfig {
    /// The otpauth URI's issuer and label prefix; non-empty, no ':'.
    pub issuer: String,
    pub enrollment: TotpEnrollment,
    /// Seals the TOTP secrets at rest; `None`: derived from `session.secret`.
    pub encryption_key: Option<Secret>,
    /// Keys from before a rotation: secrets sealed with them still open,
    /// and are sealed again with the current key when next used.
    pub previous_encryption_keys: Vec<Secret>,
}

/// Who may enroll a TOTP authenticator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TotpEnrollment {
    /// Any user without a second factor, at their first login.
    FirstLogin,
    /// Only users an admin reset with `authgate user reset-2fa`.
    Admin,
}

impl TotpEnrollment {
    pub fn as_str(self) -> &'static str {
        match self {
            TotpEnrollment::FirstLogin => "first_login",
            TotpEnrollment::Admin => "admin",
        }
    }
}

/// `[verify]`: Twilio Verify v2, Authy's successor.
#[derive(Debug, Clone)]
pub struct VerifyConfig {
    /// https unless the host is a loopback address (a local simulator).
    pub api_url: url::Url,
    /// `AC` + 32 hex digits.
    pub account_sid: String,
    pub auth_token: Secret,
    /// `VA` + 32 hex digits: the Verify service that sends the codes.
    pub service_sid: String,
    pub channel: VerifyChannel,
    /// Every call to Twilio.
    pub timeout: Duration,
}

/// How Twilio Verify delivers a code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerifyChannel {
    Sms,
    Call,
    Email,
}

impl VerifyChannel {
    /// Twilio's name for the channel, as sent in `Channel=`.
    pub fn as_str(self) -> &'static str {
        match self {
            VerifyChannel::Sms => "sms",
            VerifyChannel::Call => "call",
            VerifyChannel::Email => "email",
        }
    }
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Where the portal is reached; decides the cookies' `Secure` flag.
    pub public_url: url::Url,
    /// Prefix of the gateway's own paths, `/_authgate` by default, no trailing slash.
    pub path_prefix: String,
    pub trusted_proxies: Vec<IpNet>,
    pub header_read_timeout: Duration,
    pub max_header_bytes: usize,
    pub max_form_bytes: usize,
    pub max_connections: usize,
    pub keepalive_timeout: Duration,
    pub shutdown_timeout: Duration,
    /// Serve `/api/authz/*` and `/api/verify` although an upstream is set.
    pub authelia_paths: bool,
    /// `server.tls_cert` + `server.tls_key`: TLS on the listener when set.
    pub tls: Option<TlsFiles>,
    /// `server.redirect_http`: a plain listener answering 301 to https.
    pub redirect_http: Option<SocketAddr>,
    /// `server.allowed_upgrades`: lower-case protocol names that may be
    /// tunnelled; any other `Upgrade` is taken off the request.
    pub allowed_upgrades: Vec<String>,
    /// `server.hsts`: `Strict-Transport-Security` on the portal's answers
    /// when `public_url` is https.
    pub hsts: bool,
    /// `server.admin_socket`: the Unix socket of `authgate session` and
    /// `authgate user disable`; off when unset (docs/admin-socket.md).
    pub admin_socket: Option<PathBuf>,
}

/// The PEM files TLS is served from; read at start-up and again on SIGHUP
/// or when they change. Validation only checked that they can be read.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// http(s) URL; only scheme and authority are used.
    pub url: http::Uri,
    pub connect_timeout: Duration,
    pub response_timeout: Duration,
    /// `upstream.ca_file`: when set, the only roots an https upstream's
    /// certificate is checked against; otherwise the webpki roots.
    pub ca: Option<CaBundle>,
}

/// The certificates of `upstream.ca_file`, read and parsed at start-up.
#[derive(Debug, Clone)]
pub struct CaBundle {
    pub path: PathBuf,
    pub certs: Vec<rustls::pki_types::CertificateDer<'static>>,
}

#[derive(Debug, Clone)]
pub struct SessionConfig {
    pub cookie_name: String,
    pub cookie_domain: Option<String>,
    /// At least 32 bytes; keys the cookie signature and the CSRF tokens.
    pub secret: Secret,
    pub idle_timeout: Duration,
    pub lifetime: Duration,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// `store.path`: sled's directory, and what `store copy` reads or
    /// writes on the sled side.
    pub path: PathBuf,
    pub flush_interval: Duration,
    /// `store.backend`: where sessions and everything shared live.
    pub backend: StoreBackend,
}

/// `store.backend`.
#[derive(Debug, Clone)]
pub enum StoreBackend {
    /// One process, sled on disk at `store.path` (the default).
    Sled,
    /// Several replicas share one Redis (or Valkey): `[store.redis]`.
    Redis(RedisConfig),
}

/// `[store.redis]`.
#[derive(Debug, Clone)]
pub struct RedisConfig {
    /// `store.redis.url`: `redis://` or `rediss://` (TLS through rustls),
    /// host, port and database. With `[store.redis.sentinel]` only its
    /// scheme (TLS or not) and database are used: Sentinel names the host.
    pub url: String,
    pub username: Option<String>,
    /// `store.redis.password` or `store.redis.password_file`.
    pub password: Option<Secret>,
    /// `store.redis.key_prefix`: every key starts with it (default
    /// `authgate:`), so several gateways can share one Redis.
    pub key_prefix: String,
    /// `store.redis.timeout`: the longest a command or a connect may take.
    pub timeout: Duration,
    /// `store.redis.min_replicas_ack`: a login waits (`WAIT`) until this
    /// many replicas hold the new session; 0 does not wait.
    pub min_replicas_ack: u32,
    pub sentinel: Option<SentinelConfig>,
}

/// `[store.redis.sentinel]`.
#[derive(Debug, Clone)]
pub struct SentinelConfig {
    pub master_name: String,
    /// `host:port` of each Sentinel.
    pub nodes: Vec<String>,
    /// `store.redis.sentinel.password` or `..._password_file`.
    pub password: Option<Secret>,
}

#[derive(Debug, Clone)]
pub struct UsersConfig {
    pub file: PathBuf,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecondFactorMode {
    /// `two_factor` resources need a confirmed second factor.
    Required,
    /// Development only: `two_factor` resources need the password alone.
    Off,
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub second_factor: SecondFactorMode,
    pub challenge_timeout: Duration,
    pub max_concurrent_hashes: usize,
    /// The second factors offered, in the order offered; no duplicates,
    /// each one configured. Empty only with `second_factor` off.
    pub methods: Vec<crate::model::Method>,
}

#[derive(Debug, Clone)]
pub struct RegulationConfig {
    pub max_failures: u32,
    pub max_failures_per_address: u32,
    pub window: Duration,
    pub ban: Duration,
    /// IPv6 clients are counted by their address masked to this many bits.
    pub ipv6_prefix: u8,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub format: LogFormat,
}

/// A secret string that never shows up in `Debug` output or logs.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(********)")
    }
}
