//! Raw strings and numbers into the typed [`Config`]. Each check names its
//! key and shows the bad value, so an operator can fix the config from the
//! error message alone.

use super::files::readable_file;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use super::raw::{
    RawAccessControl, RawApproval, RawAudit, RawAuth, RawAuthy, RawConfig, RawLog, RawMetrics,
    RawProxy, RawRedis, RawRegulation, RawSentinel, RawServer, RawSession, RawSignup, RawStore,
    RawTotp, RawUpstream, RawUsers, RawVerify, host_name,
};
use super::{ApprovalConfig, CaBundle, TlsFiles};
use super::{
    AuditConfig, AuditOutput, AuthConfig, AuthyConfig, Config, ConfigError, LogConfig, LogFormat,
    MetricsConfig, ProxyConfig, RedisConfig, RegulationConfig, SecondFactorMode, Secret,
    SentinelConfig, ServerConfig, SessionConfig, SignupConfig, StoreBackend, StoreConfig,
    TotpConfig, TotpEnrollment, UpstreamConfig, UsersConfig, VerifyChannel, VerifyConfig,
};
use crate::model::Method;
use crate::model::Policy;

type Result<T> = std::result::Result<T, ConfigError>;

const MIN_SECRET_BYTES: usize = 32;
const MAX_CHALLENGE_TIMEOUT: Duration = Duration::from_secs(10 * 60);
/// The pre-session cookie the login page sets; the session cookie must not
/// take its name.
const CSRF_COOKIE: &str = "authgate_csrf";

pub(super) fn validate(raw: &RawConfig) -> Result<Config> {
    let server = server(&raw.server)?;
    let authy = authy(&raw.authy, &server)?;
    let verify = verify(&raw.verify, lists(&raw.auth, Method::Verify))?;
    let configured = Configured {
        authy: authy.is_some(),
        verify: verify.is_some(),
    };
    let session = session(&raw.session)?;
    let webauthn = super::webauthn::webauthn(
        &raw.webauthn,
        lists(&raw.auth, Method::Webauthn),
        &server.public_url,
        session.cookie_domain.as_deref(),
    )?;
    let upstream = upstream(&raw.upstream)?;
    let access_control = access_control(&raw.access_control)?;
    approve_needs_upstream(&access_control, upstream.as_ref())?;
    Ok(Config {
        upstream,
        session,
        store: store(&raw.store)?,
        users: users(&raw.users)?,
        auth: auth(&raw.auth, server.listen, configured)?,
        signup: signup(&raw.signup)?,
        authy,
        totp: totp(&raw.totp)?,
        verify,
        webauthn,
        regulation: regulation(&raw.regulation)?,
        access_control,
        log: log(&raw.log)?,
        metrics: metrics(&raw.metrics)?,
        proxy: proxy(&raw.proxy)?,
        audit: audit(&raw.audit)?,
        portal: super::portal::portal(&raw.portal)?,
        approval: approval(&raw.approval)?,
        server,
    })
}

fn server(raw: &RawServer) -> Result<ServerConfig> {
    let mut server = ServerConfig {
        listen: listen(&raw.listen)?,
        public_url: public_url(&raw.public_url)?,
        path_prefix: path_prefix(&raw.path_prefix)?,
        trusted_proxies: trusted_proxies(&raw.trusted_proxies)?,
        header_read_timeout: duration("server.header_read_timeout", &raw.header_read_timeout)?,
        max_header_bytes: at_least_one("server.max_header_bytes", raw.max_header_bytes)?,
        max_form_bytes: at_least_one("server.max_form_bytes", raw.max_form_bytes)?,
        max_connections: at_least_one("server.max_connections", raw.max_connections)?,
        keepalive_timeout: duration("server.keepalive_timeout", &raw.keepalive_timeout)?,
        shutdown_timeout: duration("server.shutdown_timeout", &raw.shutdown_timeout)?,
        authelia_paths: raw.authelia_paths,
        tls: tls_files(raw)?,
        redirect_http: None,
        allowed_upgrades: allowed_upgrades(&raw.allowed_upgrades)?,
        hsts: raw.hsts,
        admin_socket: admin_socket(&raw.admin_socket)?,
    };
    server.redirect_http = redirect_http(raw.redirect_http.as_deref(), &server)?;
    Ok(server)
}

/// An optional string key; empty counts as not set, as it does from env.
fn given(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|v| !v.is_empty())
}

/// Both files or neither. Here only that they can be read: their contents
/// (PEM, a matching key) are checked when the listener loads them, which
/// also happens on every reload.
fn tls_files(raw: &RawServer) -> Result<Option<TlsFiles>> {
    let (cert, key) = (raw.tls_cert.as_deref(), raw.tls_key.as_deref());
    match (given(cert), given(key)) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(ConfigError::at(
            "server.tls_key",
            "missing: TLS needs both server.tls_cert and server.tls_key",
        )),
        (None, Some(_)) => Err(ConfigError::at(
            "server.tls_cert",
            "missing: TLS needs both server.tls_cert and server.tls_key",
        )),
        (Some(cert), Some(key)) => Ok(Some(TlsFiles {
            cert: readable_file("server.tls_cert", cert)?,
            key: readable_file("server.tls_key", key)?,
        })),
    }
}

/// An absolute path: the gateway and the CLI, started in different
/// directories, must meet at the same socket.
fn admin_socket(value: &str) -> Result<Option<PathBuf>> {
    let Some(value) = given(Some(value)) else {
        return Ok(None);
    };
    let path = PathBuf::from(value);
    if !path.is_absolute() {
        return Err(ConfigError::at(
            "server.admin_socket",
            format!("{value:?} is not an absolute path"),
        ));
    }
    Ok(Some(path))
}

/// The redirect points at `server.public_url`, so that must be https and
/// served by this process's TLS listener.
fn redirect_http(value: Option<&str>, server: &ServerConfig) -> Result<Option<SocketAddr>> {
    let key = "server.redirect_http";
    let Some(value) = given(value) else {
        return Ok(None);
    };
    let addr: SocketAddr = value.parse().map_err(|_| {
        ConfigError::at(
            key,
            format!("invalid address {value:?}; expected IP:PORT such as \"0.0.0.0:80\""),
        )
    })?;
    if server.tls.is_none() {
        return Err(ConfigError::at(
            key,
            "redirects to https, so TLS must be on: set server.tls_cert and server.tls_key",
        ));
    }
    if server.public_url.scheme() != "https" {
        return Err(ConfigError::at(
            key,
            format!(
                "redirects to server.public_url, which must then be https (it is {:?})",
                server.public_url.as_str()
            ),
        ));
    }
    if addr == server.listen {
        return Err(ConfigError::at(
            key,
            format!("{addr} is also server.listen; use another port"),
        ));
    }
    Ok(Some(addr))
}

fn listen(value: &str) -> Result<SocketAddr> {
    value.trim().parse().map_err(|_| {
        ConfigError::at(
            "server.listen",
            format!("invalid address {value:?}; expected IP:PORT such as \"127.0.0.1:8080\" or \"[::]:8080\""),
        )
    })
}

fn public_url(value: &str) -> Result<url::Url> {
    let key = "server.public_url";
    let url = http_url(key, value)?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::at(
            key,
            format!("{value:?} must not have a query or fragment"),
        ));
    }
    Ok(url)
}

/// An absolute http(s) URL with a host and no credentials in it.
fn http_url(key: &str, value: &str) -> Result<url::Url> {
    let bad = || {
        ConfigError::at(
            key,
            format!("{value:?} is not an absolute http:// or https:// URL with a host"),
        )
    };
    let url = url::Url::parse(value.trim()).map_err(|_| bad())?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(bad());
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(ConfigError::at(
            key,
            format!("{value:?} must not contain a user name or password"),
        ));
    }
    Ok(url)
}

fn path_prefix(value: &str) -> Result<String> {
    let key = "server.path_prefix";
    if !value.starts_with('/') {
        return Err(ConfigError::at(
            key,
            format!("{value:?} must start with \"/\", e.g. \"/_authgate\""),
        ));
    }
    let prefix = value.strip_suffix('/').unwrap_or(value);
    if prefix.is_empty() {
        return Err(ConfigError::at(
            key,
            "must not be \"/\" alone: the gateway's own paths would shadow the upstream's",
        ));
    }
    let bad_char = |c: char| !c.is_ascii_graphic() || matches!(c, '?' | '#' | '%' | '\\');
    let bad_segment = |s: &str| s.is_empty() || s == "." || s == "..";
    if prefix.contains(bad_char) || prefix[1..].split('/').any(bad_segment) {
        return Err(ConfigError::at(
            key,
            format!(
                "{value:?} must be a plain path: printable ASCII without '?', '#', '%' or '\\', \
                 and no empty, \".\" or \"..\" segments"
            ),
        ));
    }
    Ok(prefix.to_owned())
}

fn trusted_proxies(entries: &[String]) -> Result<Vec<IpNet>> {
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            network(entry).ok_or_else(|| {
                ConfigError::at(
                    format!("server.trusted_proxies[{i}]"),
                    format!("invalid network {entry:?}; expected CIDR such as \"10.0.0.0/8\" or an IP address"),
                )
            })
        })
        .collect()
}

/// Protocol names (RFC 9110 `token`, no version), lower-cased.
fn allowed_upgrades(entries: &[String]) -> Result<Vec<String>> {
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let token = entry.trim();
            if token.is_empty() || !token.bytes().all(is_tchar) {
                return Err(ConfigError::at(
                    format!("server.allowed_upgrades[{i}]"),
                    format!("invalid protocol {entry:?}; expected a name such as \"websocket\""),
                ));
            }
            Ok(token.to_ascii_lowercase())
        })
        .collect()
}

/// RFC 9110 5.6.2 `tchar`: what a header name or protocol name is made of.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn proxy(raw: &RawProxy) -> Result<ProxyConfig> {
    let strip_request_headers = raw
        .strip_request_headers
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            stripped_header(entry).ok_or_else(|| {
                ConfigError::at(
                    format!("proxy.strip_request_headers[{i}]"),
                    format!(
                        "invalid header name {entry:?}; expected a name such as \"X-Legacy-User\", \
                         or a prefix ending in * such as \"X-Legacy-*\""
                    ),
                )
            })
        })
        .collect::<Result<_>>()?;
    Ok(ProxyConfig {
        strip_request_headers,
    })
}

/// A header name, or a non-empty prefix followed by `*`; lower-cased with
/// `_` as `-`, the spelling the proxy compares against.
fn stripped_header(entry: &str) -> Option<String> {
    let entry = entry.trim();
    let name = entry.strip_suffix('*').unwrap_or(entry);
    if name.is_empty() || !name.bytes().all(|b| is_tchar(b) && b != b'*') {
        return None;
    }
    Some(entry.to_ascii_lowercase().replace('_', "-"))
}

/// A bare address means just that host (/32 or /128).
fn network(entry: &str) -> Option<IpNet> {
    let entry = entry.trim();
    let net = entry
        .parse::<IpNet>()
        .ok()
        .or_else(|| entry.parse::<IpAddr>().ok().map(IpNet::from))?;
    Some(net.trunc())
}

fn upstream(raw: &RawUpstream) -> Result<Option<UpstreamConfig>> {
    let connect_timeout = duration("upstream.connect_timeout", &raw.connect_timeout)?;
    let response_timeout = duration("upstream.response_timeout", &raw.response_timeout)?;
    let Some(url) = &raw.url else {
        return Ok(None);
    };
    let url = upstream_url(url)?;
    let ca = ca_bundle(raw.ca_file.as_deref(), &url)?;
    Ok(Some(UpstreamConfig {
        url,
        connect_timeout,
        response_timeout,
        ca,
    }))
}

/// The CA certificates for an https upstream, read and parsed now so that a
/// bad file stops the start with the key named.
fn ca_bundle(value: Option<&str>, url: &http::Uri) -> Result<Option<CaBundle>> {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject;
    let key = "upstream.ca_file";
    let Some(value) = given(value) else {
        return Ok(None);
    };
    if url.scheme_str() != Some("https") {
        return Err(ConfigError::at(
            key,
            format!("only used for an https upstream, and upstream.url is {url}"),
        ));
    }
    let pem = std::fs::read(value)
        .map_err(|err| ConfigError::at(key, format!("cannot read {value:?}: {err}")))?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|err| ConfigError::at(key, format!("{value:?} is not valid PEM: {err}")))?;
    if certs.is_empty() {
        return Err(ConfigError::at(
            key,
            format!("no certificate (-----BEGIN CERTIFICATE-----) found in {value:?}"),
        ));
    }
    let mut roots = rustls::RootCertStore::empty();
    let (_, unusable) = roots.add_parsable_certificates(certs.iter().cloned());
    if unusable > 0 {
        return Err(ConfigError::at(
            key,
            format!("{unusable} certificate(s) in {value:?} cannot be parsed"),
        ));
    }
    Ok(Some(CaBundle {
        path: PathBuf::from(value),
        certs,
    }))
}

fn upstream_url(value: &str) -> Result<http::Uri> {
    let key = "upstream.url";
    let url = http_url(key, value)?;
    // Only scheme and authority are used; a path would be silently dropped,
    // which an operator who wrote one would not expect.
    if url.path() != "/" || url.query().is_some() || url.fragment().is_some() {
        return Err(ConfigError::at(
            key,
            format!(
                "{value:?} must not have a path, query or fragment: requests keep their own path"
            ),
        ));
    }
    url.as_str()
        .parse()
        .map_err(|err| ConfigError::at(key, format!("{value:?} is not a valid URI: {err}")))
}

fn session(raw: &RawSession) -> Result<SessionConfig> {
    Ok(SessionConfig {
        cookie_name: cookie_name(&raw.cookie_name)?,
        cookie_domain: raw
            .cookie_domain
            .as_deref()
            .map(cookie_domain)
            .transpose()?,
        secret: secret(raw)?,
        idle_timeout: duration("session.idle_timeout", &raw.idle_timeout)?,
        lifetime: duration("session.lifetime", &raw.lifetime)?,
    })
}

fn cookie_name(value: &str) -> Result<String> {
    let key = "session.cookie_name";
    // RFC 6265 cookie-name is an RFC 2616 token.
    let separator = |c: char| "()<>@,;:\\\"/[]?={} \t".contains(c);
    if value.is_empty() || value.chars().any(|c| !c.is_ascii_graphic() || separator(c)) {
        return Err(ConfigError::at(
            key,
            format!("{value:?} is not a valid cookie name (letters, digits and -_.!#$%&'*+^`|~)"),
        ));
    }
    if value.eq_ignore_ascii_case(CSRF_COOKIE) {
        return Err(ConfigError::at(
            key,
            format!("{value:?} is the name of the gateway's CSRF cookie"),
        ));
    }
    Ok(value.to_owned())
}

/// A leading dot is old-RFC spelling that browsers ignore; drop it so that
/// the `rd` check compares plain host names.
fn cookie_domain(value: &str) -> Result<String> {
    let domain = value.trim().trim_start_matches('.').to_ascii_lowercase();
    let label_ok =
        |l: &str| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
    if !domain.split('.').all(label_ok) {
        return Err(ConfigError::at(
            "session.cookie_domain",
            format!("{value:?} is not a domain name such as \"example.com\""),
        ));
    }
    Ok(domain)
}

fn secret(raw: &RawSession) -> Result<Secret> {
    strong_secret(
        ("session.secret", raw.secret.as_deref()),
        ("session.secret_file", raw.secret_file.as_deref()),
    )?
    .ok_or_else(|| {
        ConfigError::at(
            "session.secret",
            format!(
                "missing; set it in the config file or AUTHGATE_SESSION__SECRET \
                 (at least {MIN_SECRET_BYTES} bytes)"
            ),
        )
    })
}

/// Key material, given directly or as `X_file`, long enough to resist
/// guessing; an error names its length, never its value.
fn strong_secret(
    direct: (&str, Option<&str>),
    file: (&str, Option<&str>),
) -> Result<Option<Secret>> {
    let from = if file.1.is_some() { file.0 } else { direct.0 };
    secret_value(direct, file)?
        .map(|value| long_enough(from, value))
        .transpose()
}

fn long_enough(key: &str, value: String) -> Result<Secret> {
    if value.len() < MIN_SECRET_BYTES {
        return Err(ConfigError::at(
            key,
            format!(
                "too short: {} bytes, at least {MIN_SECRET_BYTES} are needed \
                 (e.g. `openssl rand -base64 48`)",
                value.len()
            ),
        ));
    }
    Ok(Secret::new(value))
}

/// `[authy]` is on when an API key is set.
fn authy(raw: &RawAuthy, server: &ServerConfig) -> Result<Option<AuthyConfig>> {
    let Some(api_key) = secret_value(
        ("authy.api_key", raw.api_key.as_deref()),
        ("authy.api_key_file", raw.api_key_file.as_deref()),
    )?
    else {
        return Ok(None);
    };
    let api_url = provider_url("authy.api_url", &raw.api_url)?;
    let callback_url = match &raw.callback_url {
        Some(url) => http_url("authy.callback_url", url)?.to_string(),
        None => format!(
            "{}{}/authy/callback",
            server.public_url.as_str().trim_end_matches('/'),
            server.path_prefix
        ),
    };
    Ok(Some(AuthyConfig {
        api_key: Secret::new(api_key),
        api_url,
        callback_url,
        onetouch_message: raw.onetouch_message.clone(),
        poll_interval: duration("authy.poll_interval", &raw.poll_interval)?,
        timeout: duration("authy.timeout", &raw.timeout)?,
        send_install_link: raw.send_install_link,
    }))
}

/// A third-party API's URL. Plain http would expose its credentials and
/// let anyone on the path approve logins; only a local simulator (the
/// sandbox, a test double) may use it.
fn provider_url(key: &str, value: &str) -> Result<url::Url> {
    let url = http_url(key, value)?;
    let loopback = url.host().is_some_and(|h| match h {
        url::Host::Domain(d) => d == "localhost",
        url::Host::Ipv4(ip) => ip.is_loopback(),
        url::Host::Ipv6(ip) => ip.is_loopback(),
    });
    if url.scheme() != "https" && !loopback {
        return Err(ConfigError::at(
            key,
            format!("{value:?} must be https unless its host is a loopback address"),
        ));
    }
    Ok(url)
}

fn totp(raw: &RawTotp) -> Result<TotpConfig> {
    let issuer = raw.issuer.trim();
    if issuer.is_empty() {
        return Err(ConfigError::at(
            "totp.issuer",
            "must not be empty: authenticator apps show it beside the account",
        ));
    }
    // The otpauth label is "issuer:account"; a ':' in the issuer would make
    // apps split it in the wrong place.
    if issuer.contains(':') {
        return Err(ConfigError::at(
            "totp.issuer",
            format!("{issuer:?} must not contain ':'"),
        ));
    }
    let enrollment = match raw.enrollment.as_str() {
        "first_login" => TotpEnrollment::FirstLogin,
        "admin" => TotpEnrollment::Admin,
        other => {
            return Err(ConfigError::at(
                "totp.enrollment",
                format!("{other:?} is not \"first_login\" or \"admin\""),
            ));
        }
    };
    let encryption_key = strong_secret(
        ("totp.encryption_key", raw.encryption_key.as_deref()),
        (
            "totp.encryption_key_file",
            raw.encryption_key_file.as_deref(),
        ),
    )?;
    let inline = raw
        .previous_encryption_keys
        .iter()
        .enumerate()
        .map(|(i, key)| long_enough(&format!("totp.previous_encryption_keys[{i}]"), key.clone()));
    let from_files = raw
        .previous_encryption_keys_file
        .iter()
        .enumerate()
        .map(|(i, path)| {
            let key = format!("totp.previous_encryption_keys_file[{i}]");
            long_enough(&key, read_secret(&key, path)?)
        });
    Ok(TotpConfig {
        issuer: issuer.to_owned(),
        enrollment,
        encryption_key,
        previous_encryption_keys: inline.chain(from_files).collect::<Result<_>>()?,
    })
}

/// `[verify]` is on when any of its credentials is set, or when
/// `auth.methods` asks for it; then all of them are needed, so a half
/// configured provider stops the start instead of failing at login.
fn verify(raw: &RawVerify, listed: bool) -> Result<Option<VerifyConfig>> {
    let api_url = provider_url("verify.api_url", &raw.api_url)?;
    let channel = match raw.channel.as_str() {
        "sms" => VerifyChannel::Sms,
        "call" => VerifyChannel::Call,
        "email" => VerifyChannel::Email,
        other => {
            return Err(ConfigError::at(
                "verify.channel",
                format!("{other:?} is not one of sms, call, email"),
            ));
        }
    };
    let timeout = duration("verify.timeout", &raw.timeout)?;
    let account_sid = given(raw.account_sid.as_deref());
    let service_sid = given(raw.service_sid.as_deref());
    let auth_token = secret_value(
        ("verify.auth_token", raw.auth_token.as_deref()),
        ("verify.auth_token_file", raw.auth_token_file.as_deref()),
    )?;
    let credentials = [
        account_sid.is_some(),
        auth_token.is_some(),
        service_sid.is_some(),
    ];
    if !listed && !credentials.contains(&true) {
        return Ok(None);
    }
    let missing = |key: &str| {
        let why = match listed {
            true => "auth.methods lists \"verify\"",
            false => "[verify] is partly configured",
        };
        ConfigError::at(
            key,
            format!(
                "missing: {why}, and Twilio Verify needs verify.account_sid, \
                 verify.auth_token (or verify.auth_token_file) and verify.service_sid"
            ),
        )
    };
    let account_sid = account_sid.ok_or_else(|| missing("verify.account_sid"))?;
    let auth_token = auth_token.ok_or_else(|| missing("verify.auth_token"))?;
    let service_sid = service_sid.ok_or_else(|| missing("verify.service_sid"))?;
    Ok(Some(VerifyConfig {
        api_url,
        account_sid: twilio_sid("verify.account_sid", account_sid, "AC", "an account")?,
        auth_token: Secret::new(auth_token),
        service_sid: twilio_sid("verify.service_sid", service_sid, "VA", "a Verify service")?,
        channel,
        timeout,
    }))
}

/// Twilio's SIDs are a two-letter type prefix and 32 hex digits; checking
/// the prefix catches the common mix-up of the account and service SIDs.
fn twilio_sid(key: &str, value: &str, prefix: &str, what: &str) -> Result<String> {
    let shaped = value
        .strip_prefix(prefix)
        .is_some_and(|hex| hex.len() == 32 && hex.chars().all(|c| c.is_ascii_hexdigit()));
    if !shaped {
        return Err(ConfigError::at(
            key,
            format!("{value:?} is not {what} SID: \"{prefix}\" and 32 hex digits"),
        ));
    }
    Ok(value.to_owned())
}

fn signup(raw: &RawSignup) -> Result<SignupConfig> {
    if raw.min_password_length < 8 || raw.min_password_length > 128 {
        return Err(ConfigError::at(
            "signup.min_password_length",
            format!("{} is not between 8 and 128", raw.min_password_length),
        ));
    }
    let domains = raw.allowed_email_domains.iter();
    Ok(SignupConfig {
        enabled: raw.enabled,
        allowed_email_domains: domains
            .map(|d| d.trim().trim_start_matches('@').to_lowercase())
            .collect(),
        groups: raw.groups.clone(),
        min_password_length: raw.min_password_length,
    })
}

/// A secret given directly or as `X_file`; never both.
fn secret_value(
    (key, value): (&str, Option<&str>),
    (file_key, file): (&str, Option<&str>),
) -> Result<Option<String>> {
    match (value, file) {
        (Some(_), Some(_)) => Err(ConfigError::at(
            file_key,
            format!("set together with {key}; set only one of them"),
        )),
        (Some(value), None) if !value.is_empty() => Ok(Some(value.to_owned())),
        (None, Some(path)) => read_secret(file_key, path).map(Some),
        _ => Ok(None),
    }
}

/// Docker and Kubernetes secrets usually end with a newline that is not
/// part of the secret.
fn read_secret(key: &str, path: &str) -> Result<String> {
    let text = std::fs::read_to_string(path)
        .map_err(|err| ConfigError::at(key, format!("cannot read {path:?}: {err}")))?;
    Ok(text.trim_end_matches(['\r', '\n']).to_owned())
}

fn store(raw: &RawStore) -> Result<StoreConfig> {
    if raw.path.trim().is_empty() {
        return Err(ConfigError::at("store.path", "must not be empty"));
    }
    Ok(StoreConfig {
        path: PathBuf::from(&raw.path),
        flush_interval: duration("store.flush_interval", &raw.flush_interval)?,
        backend: backend(raw)?,
    })
}

/// `[store.redis]` is read only for the Redis backend: a sled gateway
/// ignores it, so a half-written Redis section does not stop it.
fn backend(raw: &RawStore) -> Result<StoreBackend> {
    match raw.backend.trim() {
        "sled" => Ok(StoreBackend::Sled),
        "redis" => redis(&raw.redis).map(StoreBackend::Redis),
        other => Err(ConfigError::at(
            "store.backend",
            format!("unknown backend {other:?}; expected \"sled\" or \"redis\""),
        )),
    }
}

fn redis(raw: &RawRedis) -> Result<RedisConfig> {
    let url = raw
        .url
        .as_deref()
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .ok_or_else(|| {
            ConfigError::at(
                "store.redis.url",
                "missing; store.backend = \"redis\" needs it, e.g. \"redis://127.0.0.1:6379\"",
            )
        })?;
    let password = secret_value(
        ("store.redis.password", raw.password.as_deref()),
        ("store.redis.password_file", raw.password_file.as_deref()),
    )?;
    Ok(RedisConfig {
        url: redis_url(url)?,
        username: raw.username.clone().filter(|name| !name.is_empty()),
        password: password.map(Secret::new),
        key_prefix: key_prefix(&raw.key_prefix)?,
        timeout: duration("store.redis.timeout", &raw.timeout)?,
        min_replicas_ack: raw.min_replicas_ack,
        sentinel: sentinel(&raw.sentinel)?,
    })
}

/// The value is never shown in an error: a URL may carry a password.
fn redis_url(value: &str) -> Result<String> {
    const KEY: &str = "store.redis.url";
    let url = url::Url::parse(value).map_err(|err| {
        ConfigError::at(
            KEY,
            format!("not a URL ({err}); write e.g. \"redis://127.0.0.1:6379\""),
        )
    })?;
    if !matches!(url.scheme(), "redis" | "rediss") {
        return Err(ConfigError::at(
            KEY,
            format!(
                "scheme {:?} is not supported; use redis:// or rediss:// (TLS)",
                url.scheme()
            ),
        ));
    }
    if !url.username().is_empty() || url.password().is_some() {
        // In the URL, check-config could not mask the password.
        return Err(ConfigError::at(
            KEY,
            "holds credentials; set store.redis.username and store.redis.password \
             (or store.redis.password_file) instead",
        ));
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(ConfigError::at(
            KEY,
            "needs a host, e.g. redis://127.0.0.1:6379",
        ));
    }
    let database = url.path().trim_start_matches('/');
    if !database.is_empty() && database.parse::<u16>().is_err() {
        return Err(ConfigError::at(
            KEY,
            format!(
                "the path {database:?} is not a database number; write e.g. redis://host:6379/0"
            ),
        ));
    }
    Ok(value.to_owned())
}

fn key_prefix(value: &str) -> Result<String> {
    if value.is_empty() || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(ConfigError::at(
            "store.redis.key_prefix",
            format!("{value:?} must be non-empty, without spaces or control characters"),
        ));
    }
    Ok(value.to_owned())
}

/// On as soon as any of its keys is set; then it needs both the master's
/// name and at least one Sentinel.
fn sentinel(raw: &RawSentinel) -> Result<Option<SentinelConfig>> {
    let password = secret_value(
        ("store.redis.sentinel.password", raw.password.as_deref()),
        (
            "store.redis.sentinel.password_file",
            raw.password_file.as_deref(),
        ),
    )?;
    if raw.master_name.is_none() && raw.nodes.is_empty() && password.is_none() {
        return Ok(None);
    }
    let master_name = raw.master_name.as_deref().unwrap_or_default().trim();
    if master_name.is_empty() {
        return Err(ConfigError::at(
            "store.redis.sentinel.master_name",
            "missing; the Sentinels are asked for the master of this name",
        ));
    }
    if raw.nodes.is_empty() {
        return Err(ConfigError::at(
            "store.redis.sentinel.nodes",
            "must list at least one Sentinel as \"host:port\"",
        ));
    }
    let nodes = raw
        .nodes
        .iter()
        .map(|node| sentinel_node(node))
        .collect::<Result<_>>()?;
    Ok(Some(SentinelConfig {
        master_name: master_name.to_owned(),
        nodes,
        password: password.map(Secret::new),
    }))
}

/// `host:port`, an IPv6 host in brackets.
fn sentinel_node(node: &str) -> Result<String> {
    let node = node.trim();
    let valid = node.rsplit_once(':').is_some_and(|(host, port)| {
        !host.trim_matches(['[', ']']).is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
    });
    if !valid {
        return Err(ConfigError::at(
            "store.redis.sentinel.nodes",
            format!("{node:?} is not host:port, e.g. \"10.0.0.5:26379\""),
        ));
    }
    Ok(node.to_owned())
}

/// Only that the file can be read; its contents are the users module's.
fn users(raw: &RawUsers) -> Result<UsersConfig> {
    let path = Path::new(&raw.file);
    let problem = match std::fs::File::open(path).and_then(|f| f.metadata()) {
        Ok(meta) if meta.is_file() => {
            return Ok(UsersConfig {
                file: path.to_owned(),
            });
        }
        Ok(_) => "is not a regular file".to_owned(),
        Err(err) => format!("cannot be read: {err}"),
    };
    Err(ConfigError::at(
        "users.file",
        format!(
            "{:?} {problem} (create it with `authgate user add`)",
            raw.file
        ),
    ))
}

/// Which third-party providers have their credentials configured.
#[derive(Debug, Clone, Copy)]
struct Configured {
    authy: bool,
    verify: bool,
}

fn auth(raw: &RawAuth, listen: SocketAddr, configured: Configured) -> Result<AuthConfig> {
    let challenge_timeout = duration("auth.challenge_timeout", &raw.challenge_timeout)?;
    if challenge_timeout > MAX_CHALLENGE_TIMEOUT {
        return Err(ConfigError::at(
            "auth.challenge_timeout",
            format!(
                "{:?} is longer than the maximum of 10m",
                raw.challenge_timeout
            ),
        ));
    }
    let second_factor = second_factor(&raw.second_factor, listen)?;
    let methods = methods(raw.methods.as_deref(), configured)?;
    // Every two_factor resource would be locked for everyone.
    if methods.is_empty() && second_factor == SecondFactorMode::Required {
        return Err(ConfigError::at(
            "auth.methods",
            format!(
                "is empty, but auth.second_factor is \"required\": list at least one of {}",
                method_names()
            ),
        ));
    }
    Ok(AuthConfig {
        second_factor,
        challenge_timeout,
        max_concurrent_hashes: max_concurrent_hashes(raw.max_concurrent_hashes)?,
        methods,
    })
}

/// Whether `auth.methods` names `method`, before the list is checked.
fn lists(raw: &RawAuth, method: Method) -> bool {
    raw.methods
        .iter()
        .flatten()
        .any(|name| name == method.as_str())
}

/// `auth.methods`, or without it every configured third-party provider
/// (the operator set them up to be used), else the built-in TOTP.
fn methods(value: Option<&[String]>, configured: Configured) -> Result<Vec<Method>> {
    let key = "auth.methods";
    let Some(names) = value else {
        let mut methods = Vec::new();
        if configured.authy {
            methods.push(Method::Authy);
        }
        if configured.verify {
            methods.push(Method::Verify);
        }
        if methods.is_empty() {
            methods.push(Method::Totp);
        }
        return Ok(methods);
    };
    let mut methods = Vec::new();
    for name in names {
        let method = Method::parse(name).ok_or_else(|| {
            ConfigError::at(
                key,
                format!("{name:?} is not a second factor; known: {}", method_names()),
            )
        })?;
        if methods.contains(&method) {
            return Err(ConfigError::at(key, format!("{name:?} is listed twice")));
        }
        // A listed "verify" was checked with [verify], which names the
        // missing key; Authy has a single one.
        if method == Method::Authy && !configured.authy {
            return Err(ConfigError::at(
                key,
                "lists \"authy\", which is not configured: set authy.api_key \
                 (or authy.api_key_file)",
            ));
        }
        methods.push(method);
    }
    Ok(methods)
}

fn method_names() -> String {
    let names: Vec<&str> = Method::ALL.iter().map(|m| m.as_str()).collect();
    names.join(", ")
}

fn second_factor(value: &str, listen: SocketAddr) -> Result<SecondFactorMode> {
    let key = "auth.second_factor";
    match value {
        "required" => Ok(SecondFactorMode::Required),
        "off" if listen.ip().to_canonical().is_loopback() => Ok(SecondFactorMode::Off),
        "off" => Err(ConfigError::at(
            key,
            format!(
                "\"off\" is a development setting, allowed only when server.listen is a \
                 loopback address (it is {listen})"
            ),
        )),
        other => Err(ConfigError::at(
            key,
            format!("{other:?} is not \"required\" or \"off\""),
        )),
    }
}

/// Argon2 hashing is CPU-bound; one core is left for serving requests.
fn max_concurrent_hashes(value: Option<usize>) -> Result<usize> {
    let default = || {
        std::thread::available_parallelism()
            .map_or(1, |n| n.get())
            .saturating_sub(1)
            .max(1)
    };
    at_least_one("auth.max_concurrent_hashes", value.unwrap_or_else(default))
}

fn regulation(raw: &RawRegulation) -> Result<RegulationConfig> {
    Ok(RegulationConfig {
        max_failures: at_least_one("regulation.max_failures", raw.max_failures)?,
        max_failures_per_address: at_least_one(
            "regulation.max_failures_per_address",
            raw.max_failures_per_address,
        )?,
        window: duration("regulation.window", &raw.window)?,
        ban: duration("regulation.ban", &raw.ban)?,
        ipv6_prefix: ipv6_prefix(raw.ipv6_prefix)?,
    })
}

/// An IPv6 prefix length, in bits.
fn ipv6_prefix(value: u32) -> Result<u8> {
    u8::try_from(value)
        .ok()
        .filter(|bits| (1..=128).contains(bits))
        .ok_or_else(|| {
            ConfigError::at(
                "regulation.ipv6_prefix",
                format!("must be 1 to 128 bits, got {value}"),
            )
        })
}

fn access_control(raw: &RawAccessControl) -> Result<crate::access::AccessControl> {
    let default_policy = match raw.default_policy.as_str() {
        "bypass" => Policy::Bypass,
        "one_factor" => Policy::OneFactor,
        "two_factor" => Policy::TwoFactor,
        "deny" => Policy::Deny,
        other => {
            return Err(ConfigError::at(
                "access_control.default_policy",
                format!("{other:?} is not one of bypass, one_factor, two_factor, deny"),
            ));
        }
    };
    crate::access::AccessControl::new(default_policy, raw.allow_preflight, &raw.rules)
        .map_err(|e| ConfigError::at(e.key(), e.problem))
}

/// An `approve` rule holds the request body until it is approved: only
/// proxy mode sees bodies (forward-auth is asked with the headers alone).
fn approve_needs_upstream(
    access: &crate::access::AccessControl,
    upstream: Option<&UpstreamConfig>,
) -> Result<()> {
    match access.first_approve_rule() {
        Some(index) if upstream.is_none() => Err(ConfigError::at(
            format!("access_control.rules[{index}].policy"),
            "\"approve\" needs upstream.url (proxy mode): forward-auth never sees \
             request bodies, so it cannot hold a request (docs/approval.md)",
        )),
        _ => Ok(()),
    }
}

fn approval(raw: &RawApproval) -> Result<ApprovalConfig> {
    let timeout = duration("approval.timeout", &raw.timeout)?;
    if timeout > MAX_CHALLENGE_TIMEOUT {
        return Err(ConfigError::at(
            "approval.timeout",
            format!("{:?} is longer than the 10m a push may live", raw.timeout),
        ));
    }
    let max_body = at_least_one("approval.max_body", raw.max_body)?;
    let max_pending_bytes = at_least_one("approval.max_pending_bytes", raw.max_pending_bytes)?;
    if max_pending_bytes < max_body {
        return Err(ConfigError::at(
            "approval.max_pending_bytes",
            format!("{max_pending_bytes} is less than approval.max_body ({max_body})"),
        ));
    }
    Ok(ApprovalConfig {
        max_body,
        timeout: timeout.as_secs().max(1),
        max_pending_bytes,
        max_per_session: at_least_one("approval.max_per_session", raw.max_per_session)?,
    })
}

fn log(raw: &RawLog) -> Result<LogConfig> {
    let format = match raw.format.as_str() {
        "text" => LogFormat::Text,
        "json" => LogFormat::Json,
        other => {
            return Err(ConfigError::at(
                "log.format",
                format!("{other:?} is not \"text\" or \"json\""),
            ));
        }
    };
    Ok(LogConfig { format })
}

fn audit(raw: &RawAudit) -> Result<AuditConfig> {
    let output = match raw.output.as_str() {
        "off" => AuditOutput::Off,
        "stdout" => AuditOutput::Stdout,
        "file" if raw.file.trim().is_empty() => {
            return Err(ConfigError::at(
                "audit.file",
                "required when audit.output = \"file\"",
            ));
        }
        "file" => AuditOutput::File(PathBuf::from(raw.file.trim())),
        other => {
            return Err(ConfigError::at(
                "audit.output",
                format!("{other:?} is not \"off\", \"stdout\" or \"file\""),
            ));
        }
    };
    let replica = match raw.replica.trim() {
        "" => host_name(),
        name => name.to_owned(),
    };
    Ok(AuditConfig {
        output,
        queue: at_least_one("audit.queue", raw.queue)?,
        replica,
    })
}

/// `metrics.listen`: an address, or empty for no metrics listener.
fn metrics(raw: &RawMetrics) -> Result<MetricsConfig> {
    let value = raw.listen.trim();
    if value.is_empty() {
        return Ok(MetricsConfig { listen: None });
    }
    let listen = value.parse().map_err(|_| {
        ConfigError::at(
            "metrics.listen",
            format!("invalid address {value:?}; expected IP:PORT such as \"127.0.0.1:9959\", or \"\" for no metrics"),
        )
    })?;
    Ok(MetricsConfig {
        listen: Some(listen),
    })
}

/// humantime durations ("30s", "10m", "12h"); zero is refused because no
/// timeout, interval or ban here means anything at zero.
fn duration(key: &str, value: &str) -> Result<Duration> {
    let parsed = humantime::parse_duration(value.trim()).map_err(|err| {
        ConfigError::at(
            key,
            format!("invalid duration {value:?} ({err}); write e.g. \"30s\", \"10m\", \"12h\""),
        )
    })?;
    if parsed.is_zero() {
        return Err(ConfigError::at(
            key,
            format!("{value:?} must be longer than zero"),
        ));
    }
    Ok(parsed)
}

fn at_least_one<N: PartialOrd + From<u8> + Copy>(key: &str, value: N) -> Result<N> {
    if value < N::from(1) {
        return Err(ConfigError::at(key, "must be at least 1, got 0"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    /// A raw config that validates; each test breaks one thing.
    fn valid(users: &tempfile::NamedTempFile) -> RawConfig {
        let mut raw = RawConfig::default();
        raw.session.secret = Some(SECRET.into());
        raw.users.file = users.path().to_string_lossy().into_owned();
        raw.auth.second_factor = "off".into();
        raw
    }

    fn users_file() -> tempfile::NamedTempFile {
        tempfile::NamedTempFile::new().expect("temp users file")
    }

    /// Breaks the config with `edit` and checks the error names `key` and
    /// contains `text`.
    fn refused(edit: impl FnOnce(&mut RawConfig), key: &str, text: &str) {
        let users = users_file();
        let mut raw = valid(&users);
        edit(&mut raw);
        let err = validate(&raw).expect_err("should be refused");
        assert_eq!(err.key(), Some(key), "{err}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("config error: {key}: ")),
            "{message}"
        );
        assert!(message.contains(text), "{message:?} lacks {text:?}");
    }

    #[test]
    fn the_baseline_is_valid() {
        let users = users_file();
        let config = validate(&valid(&users)).expect("valid");
        assert_eq!(config.auth.second_factor, SecondFactorMode::Off);
        assert_eq!(config.session.secret.expose(), SECRET);
    }

    #[test]
    fn secret_is_required_and_long_enough() {
        refused(|r| r.session.secret = None, "session.secret", "missing");
        refused(
            |r| r.session.secret = Some("short".into()),
            "session.secret",
            "5 bytes",
        );
    }

    #[test]
    fn secret_file_content_is_length_checked() {
        let file = users_file();
        std::fs::write(file.path(), "short\n").unwrap();
        let path = file.path().to_string_lossy().into_owned();
        refused(
            |r| {
                r.session.secret = None;
                r.session.secret_file = Some(path);
            },
            "session.secret_file",
            "too short",
        );
    }

    #[test]
    fn approve_rules_need_an_upstream_and_sane_limits() {
        let approve = |r: &mut RawConfig| {
            r.access_control.rules.push(crate::access::RawRule {
                path: vec!["^/transfer".into()],
                policy: "approve".into(),
                ..Default::default()
            });
        };
        refused(
            |r| {
                approve(r);
                r.upstream.url = None;
            },
            "access_control.rules[0].policy",
            "needs upstream.url",
        );
        refused(
            |r| {
                approve(r);
                r.access_control.rules[0].approve = Some(crate::access::RawApprove {
                    message: String::new(),
                    fields: [("pin".to_owned(), "form:pin".to_owned())].into(),
                });
            },
            "access_control.rules[0].approve.fields.pin",
            "secret",
        );
        refused(
            |r| r.approval.timeout = "11m".into(),
            "approval.timeout",
            "10m",
        );
        refused(
            |r| r.approval.max_pending_bytes = 10,
            "approval.max_pending_bytes",
            "approval.max_body",
        );
        let users = users_file();
        let mut raw = valid(&users);
        approve(&mut raw);
        raw.upstream.url = Some("http://127.0.0.1:3000".into());
        let config = validate(&raw).unwrap();
        assert_eq!(config.approval.max_body, 64 * 1024);
        assert_eq!(config.approval.timeout, 120);
    }

    #[test]
    fn durations_are_parsed() {
        refused(
            |r| r.session.idle_timeout = "30 minutes please".into(),
            "session.idle_timeout",
            "30 minutes please",
        );
        refused(
            |r| r.server.header_read_timeout = "10".into(),
            "server.header_read_timeout",
            "\"10\"",
        );
        refused(
            |r| r.store.flush_interval = "0s".into(),
            "store.flush_interval",
            "longer than zero",
        );
        refused(
            |r| r.regulation.ban = "soon".into(),
            "regulation.ban",
            "soon",
        );
        refused(
            |r| r.upstream.connect_timeout = "x".into(),
            "upstream.connect_timeout",
            "\"x\"",
        );
        let users = users_file();
        let mut raw = valid(&users);
        raw.session.lifetime = "1m".into();
        let config = validate(&raw).expect("lifetime below idle_timeout is allowed");
        assert_eq!(config.session.lifetime, Duration::from_secs(60));
    }

    #[test]
    fn listen_must_be_a_socket_address() {
        refused(
            |r| r.server.listen = "localhost:8080".into(),
            "server.listen",
            "localhost:8080",
        );
        refused(
            |r| r.server.listen = "8080".into(),
            "server.listen",
            "IP:PORT",
        );
    }

    #[test]
    fn public_url_must_be_absolute_http() {
        refused(
            |r| r.server.public_url = "auth.example.com".into(),
            "server.public_url",
            "auth.example.com",
        );
        refused(
            |r| r.server.public_url = "ftp://example.com".into(),
            "server.public_url",
            "http",
        );
        refused(
            |r| r.server.public_url = "https://example.com/?a=b".into(),
            "server.public_url",
            "query",
        );
    }

    #[test]
    fn path_prefix_is_a_plain_path() {
        refused(
            |r| r.server.path_prefix = "_authgate".into(),
            "server.path_prefix",
            "start with",
        );
        refused(
            |r| r.server.path_prefix = "/".into(),
            "server.path_prefix",
            "alone",
        );
        refused(
            |r| r.server.path_prefix = "/a//b".into(),
            "server.path_prefix",
            "segments",
        );
        refused(
            |r| r.server.path_prefix = "/a/../b".into(),
            "server.path_prefix",
            "segments",
        );
        refused(
            |r| r.server.path_prefix = "/a?b".into(),
            "server.path_prefix",
            "'?'",
        );
        let users = users_file();
        let mut raw = valid(&users);
        raw.server.path_prefix = "/sso/auth/".into();
        assert_eq!(validate(&raw).unwrap().server.path_prefix, "/sso/auth");
    }

    #[test]
    fn upstream_url_must_be_http_with_a_host() {
        for bad in [
            "ftp://x",
            "localhost:3000",
            "http://",
            "http://u:p@host",
            "http://h/app",
        ] {
            refused(|r| r.upstream.url = Some(bad.into()), "upstream.url", bad);
        }
        let users = users_file();
        let mut raw = valid(&users);
        raw.upstream.url = Some("https://[::1]:8443".into());
        let upstream = validate(&raw).unwrap().upstream.unwrap();
        assert_eq!(upstream.url.scheme_str(), Some("https"));
        assert_eq!(upstream.url.authority().unwrap().as_str(), "[::1]:8443");
    }

    #[test]
    fn trusted_proxies_are_networks_or_addresses() {
        refused(
            |r| r.server.trusted_proxies = vec!["10.0.0.0/8".into(), "10.0.0.0/33".into()],
            "server.trusted_proxies[1]",
            "10.0.0.0/33",
        );
        refused(
            |r| r.server.trusted_proxies = vec!["proxy".into()],
            "server.trusted_proxies[0]",
            "CIDR",
        );
        let users = users_file();
        let mut raw = valid(&users);
        raw.server.trusted_proxies = vec!["::1".into(), "192.168.1.7/24".into()];
        let nets = validate(&raw).unwrap().server.trusted_proxies;
        let nets: Vec<String> = nets.iter().map(ToString::to_string).collect();
        assert_eq!(nets, ["::1/128", "192.168.1.0/24"]);
    }

    #[test]
    fn users_file_must_be_readable() {
        refused(
            |r| r.users.file = "/nonexistent/users.toml".into(),
            "users.file",
            "/nonexistent/users.toml",
        );
        let dir = tempfile::tempdir().unwrap();
        let dir = dir.path().to_string_lossy().into_owned();
        refused(|r| r.users.file = dir, "users.file", "not a regular file");
    }

    #[test]
    fn second_factor_rules() {
        refused(
            |r| r.auth.second_factor = "sometimes".into(),
            "auth.second_factor",
            "sometimes",
        );
        refused(
            |r| r.server.listen = "0.0.0.0:8080".into(),
            "auth.second_factor",
            "loopback",
        );
        refused(
            |r| r.server.listen = "192.168.1.2:8080".into(),
            "auth.second_factor",
            "loopback",
        );
        // TOTP is built in, so "required" needs no third party.
        let users = users_file();
        let mut raw = valid(&users);
        raw.auth.second_factor = "required".into();
        raw.server.listen = "0.0.0.0:8080".into();
        let auth = validate(&raw).unwrap().auth;
        assert_eq!(auth.second_factor, SecondFactorMode::Required);
        assert_eq!(auth.methods, [Method::Totp]);
        for listen in ["[::1]:8080", "127.0.0.9:80", "[::ffff:127.0.0.1]:80"] {
            let mut raw = valid(&users);
            raw.server.listen = listen.into();
            assert!(validate(&raw).is_ok(), "{listen} is loopback");
        }
    }

    #[test]
    fn auth_limits() {
        refused(
            |r| r.auth.challenge_timeout = "11m".into(),
            "auth.challenge_timeout",
            "10m",
        );
        refused(
            |r| r.auth.max_concurrent_hashes = Some(0),
            "auth.max_concurrent_hashes",
            "at least 1",
        );
        let users = users_file();
        let mut raw = valid(&users);
        raw.auth.challenge_timeout = "10m".into();
        assert!(validate(&raw).is_ok());
    }

    #[test]
    fn counts_and_enums() {
        refused(
            |r| r.regulation.max_failures = 0,
            "regulation.max_failures",
            "at least 1",
        );
        refused(
            |r| r.server.max_connections = 0,
            "server.max_connections",
            "at least 1",
        );
        refused(|r| r.log.format = "xml".into(), "log.format", "xml");
        refused(
            |r| r.access_control.default_policy = "allow".into(),
            "access_control.default_policy",
            "allow",
        );
        let users = users_file();
        let mut raw = valid(&users);
        raw.access_control.default_policy = "one_factor".into();
        assert_eq!(
            validate(&raw).unwrap().access_control.default_policy(),
            Policy::OneFactor
        );
    }

    #[test]
    fn audit_settings() {
        let users = users_file();
        let mut raw = valid(&users);
        let audit = validate(&raw).unwrap().audit;
        assert_eq!(audit.output, AuditOutput::Off, "off by default");
        assert_eq!(audit.queue, 4096);
        assert!(!audit.replica.is_empty(), "the host name by default");
        raw.audit.output = "file".into();
        raw.audit.file = "/var/log/audit.jsonl".into();
        raw.audit.replica = "gw-1".into();
        let audit = validate(&raw).unwrap().audit;
        assert_eq!(
            audit.output,
            AuditOutput::File("/var/log/audit.jsonl".into())
        );
        assert_eq!(audit.replica, "gw-1");
        refused(|r| r.audit.output = "file".into(), "audit.file", "required");
        refused(
            |r| r.audit.output = "syslog".into(),
            "audit.output",
            "syslog",
        );
        refused(|r| r.audit.queue = 0, "audit.queue", "at least 1");
    }

    #[test]
    fn authy_settings() {
        let users = users_file();
        let mut raw = valid(&users);
        assert!(validate(&raw).unwrap().authy.is_none(), "off without a key");
        raw.authy.api_key = Some("key".into());
        let authy = validate(&raw).unwrap().authy.unwrap();
        assert_eq!(
            authy.callback_url,
            "http://127.0.0.1:8080/_authgate/authy/callback"
        );
        assert_eq!(authy.poll_interval, Duration::from_secs(2));
        refused(
            |r| {
                r.authy.api_key = Some("key".into());
                r.authy.api_url = "http://authy.example.com".into();
            },
            "authy.api_url",
            "must be https",
        );
        refused(
            |r| {
                r.authy.api_key = Some("key".into());
                r.authy.api_key_file = Some("/nonexistent".into());
            },
            "authy.api_key_file",
            "only one",
        );
        refused(
            |r| r.authy.api_key_file = Some("/nonexistent/key".into()),
            "authy.api_key_file",
            "cannot read",
        );
        raw.authy.api_url = "http://127.0.0.1:9000".into();
        raw.authy.callback_url = Some("https://auth.example.com/cb".into());
        let authy = validate(&raw).unwrap().authy.unwrap();
        assert_eq!(authy.callback_url, "https://auth.example.com/cb");
    }

    #[test]
    fn signup_works_with_any_method_and_needs_a_sane_minimum() {
        let users = users_file();
        let mut raw = valid(&users);
        raw.signup.enabled = true;
        let config = validate(&raw).expect("sign-up without Authy");
        assert!(config.signup.enabled);
        assert_eq!(config.auth.methods, [Method::Totp]);
        refused(
            |r| r.signup.min_password_length = 4,
            "signup.min_password_length",
            "between 8 and 128",
        );
        let users = users_file();
        let mut raw = valid(&users);
        raw.signup.allowed_email_domains = vec!["@Example.COM".into()];
        let signup = validate(&raw).unwrap().signup;
        assert_eq!(signup.allowed_email_domains, vec!["example.com".to_owned()]);
        assert_eq!(signup.groups, vec!["signup".to_owned()]);
    }

    #[test]
    fn cookie_settings() {
        refused(
            |r| r.session.cookie_name = "my session".into(),
            "session.cookie_name",
            "my session",
        );
        refused(
            |r| r.session.cookie_name = "authgate_csrf".into(),
            "session.cookie_name",
            "CSRF",
        );
        refused(
            |r| r.session.cookie_domain = Some("exa mple.com".into()),
            "session.cookie_domain",
            "exa mple.com",
        );
        let users = users_file();
        let mut raw = valid(&users);
        raw.session.cookie_domain = Some(".Example.COM".into());
        assert_eq!(
            validate(&raw).unwrap().session.cookie_domain.as_deref(),
            Some("example.com")
        );
    }

    /// Two readable files in a temp dir; their contents are the listener's
    /// business, not validation's.
    fn tls_pair(dir: &tempfile::TempDir) -> (String, String) {
        let cert = dir.path().join("cert.pem");
        let key = dir.path().join("key.pem");
        std::fs::write(&cert, "cert").unwrap();
        std::fs::write(&key, "key").unwrap();
        let text = |p: PathBuf| p.to_string_lossy().into_owned();
        (text(cert), text(key))
    }

    #[test]
    fn tls_needs_both_readable_files() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = tls_pair(&dir);
        let only_cert = cert.clone();
        refused(
            |r| r.server.tls_cert = Some(only_cert),
            "server.tls_key",
            "needs both",
        );
        let only_key = key.clone();
        refused(
            |r| r.server.tls_key = Some(only_key),
            "server.tls_cert",
            "needs both",
        );
        let (c, k) = (cert.clone(), key.clone());
        refused(
            |r| {
                r.server.tls_cert = Some("/nonexistent/cert.pem".into());
                r.server.tls_key = Some(k);
            },
            "server.tls_cert",
            "/nonexistent/cert.pem\" cannot be read",
        );
        let dir_path = dir.path().to_string_lossy().into_owned();
        refused(
            |r| {
                r.server.tls_cert = Some(c);
                r.server.tls_key = Some(dir_path);
            },
            "server.tls_key",
            "not a regular file",
        );
        let users = users_file();
        let mut raw = valid(&users);
        raw.server.tls_cert = Some(cert.clone());
        raw.server.tls_key = Some(key);
        let tls = validate(&raw).unwrap().server.tls.expect("TLS on");
        assert_eq!(tls.cert, PathBuf::from(cert));
        raw.server.tls_cert = Some(String::new());
        raw.server.tls_key = Some(String::new());
        assert!(
            validate(&raw).unwrap().server.tls.is_none(),
            "empty = unset"
        );
    }

    #[test]
    fn redirect_http_needs_tls_and_an_https_public_url() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = tls_pair(&dir);
        let with_tls = |r: &mut RawConfig| {
            r.server.tls_cert = Some(cert.clone());
            r.server.tls_key = Some(key.clone());
            r.server.public_url = "https://auth.example.com".into();
        };
        refused(
            |r| {
                with_tls(r);
                r.server.redirect_http = Some("80".into());
            },
            "server.redirect_http",
            "IP:PORT",
        );
        refused(
            |r| r.server.redirect_http = Some("127.0.0.1:8081".into()),
            "server.redirect_http",
            "TLS must be on",
        );
        refused(
            |r| {
                with_tls(r);
                r.server.public_url = "http://auth.example.com".into();
                r.server.redirect_http = Some("127.0.0.1:8081".into());
            },
            "server.redirect_http",
            "must then be https",
        );
        refused(
            |r| {
                with_tls(r);
                r.server.redirect_http = Some(r.server.listen.clone());
            },
            "server.redirect_http",
            "also server.listen",
        );
        let users = users_file();
        let mut raw = valid(&users);
        with_tls(&mut raw);
        raw.server.redirect_http = Some("127.0.0.1:8081".into());
        let server = validate(&raw).unwrap().server;
        assert_eq!(
            server.redirect_http,
            Some("127.0.0.1:8081".parse().unwrap())
        );
    }

    #[test]
    fn upstream_ca_file_holds_certificates_for_an_https_upstream() {
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let cert = params.self_signed(&key).unwrap();
        std::fs::write(&ca, cert.pem()).unwrap();
        let ca = ca.to_string_lossy().into_owned();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let junk = junk.to_string_lossy().into_owned();

        let https = |r: &mut RawConfig, file: &str| {
            r.upstream.url = Some("https://127.0.0.1:8443".into());
            r.upstream.ca_file = Some(file.to_owned());
        };
        refused(
            |r| {
                https(r, &ca);
                r.upstream.url = Some("http://127.0.0.1:3000".into());
            },
            "upstream.ca_file",
            "https upstream",
        );
        refused(
            |r| https(r, "/nonexistent/ca.pem"),
            "upstream.ca_file",
            "cannot read",
        );
        refused(|r| https(r, &junk), "upstream.ca_file", "no certificate");
        let users = users_file();
        let mut raw = valid(&users);
        https(&mut raw, &ca);
        let bundle = validate(&raw).unwrap().upstream.unwrap().ca.unwrap();
        assert_eq!(bundle.certs.len(), 1);
        assert_eq!(bundle.certs[0].as_ref(), cert.der().as_ref());
    }

    const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
    const SERVICE_SID: &str = "VA0123456789ABCDEF0123456789abcdef";

    fn with_verify(r: &mut RawConfig) {
        r.verify.account_sid = Some(ACCOUNT_SID.into());
        r.verify.auth_token = Some("token".into());
        r.verify.service_sid = Some(SERVICE_SID.into());
    }

    fn methods_of(edit: impl FnOnce(&mut RawConfig)) -> Vec<Method> {
        let users = users_file();
        let mut raw = valid(&users);
        edit(&mut raw);
        validate(&raw).expect("valid").auth.methods
    }

    fn names(list: &[&str]) -> Option<Vec<String>> {
        Some(list.iter().map(|&name| name.to_owned()).collect())
    }

    #[test]
    fn methods_default_to_the_configured_providers() {
        assert_eq!(methods_of(|_| {}), [Method::Totp]);
        assert_eq!(
            methods_of(|r| r.authy.api_key = Some("k".into())),
            [Method::Authy]
        );
        assert_eq!(methods_of(with_verify), [Method::Verify]);
        assert_eq!(
            methods_of(|r| {
                with_verify(r);
                r.authy.api_key = Some("k".into());
            }),
            [Method::Authy, Method::Verify]
        );
    }

    #[test]
    fn listed_methods_keep_their_order() {
        let listed = methods_of(|r| {
            with_verify(r);
            r.authy.api_key = Some("k".into());
            r.auth.methods = names(&["verify", "totp", "authy"]);
        });
        assert_eq!(listed, [Method::Verify, Method::Totp, Method::Authy]);
        // Listing only TOTP leaves a configured provider unused.
        let listed = methods_of(|r| {
            r.authy.api_key = Some("k".into());
            r.auth.methods = names(&["totp"]);
        });
        assert_eq!(listed, [Method::Totp]);
    }

    #[test]
    fn methods_must_be_known_once_and_configured() {
        refused(
            |r| r.auth.methods = names(&["totp", "duo"]),
            "auth.methods",
            "\"duo\" is not a second factor; known: authy, totp, verify",
        );
        refused(
            |r| r.auth.methods = names(&["TOTP"]),
            "auth.methods",
            "\"TOTP\"",
        );
        refused(
            |r| r.auth.methods = names(&["totp", "totp"]),
            "auth.methods",
            "\"totp\" is listed twice",
        );
        refused(
            |r| r.auth.methods = names(&["authy"]),
            "auth.methods",
            "set authy.api_key (or authy.api_key_file)",
        );
    }

    #[test]
    fn no_methods_only_without_a_required_second_factor() {
        refused(
            |r| {
                r.auth.second_factor = "required".into();
                r.auth.methods = Some(Vec::new());
            },
            "auth.methods",
            "is empty, but auth.second_factor is \"required\"",
        );
        assert!(
            methods_of(|r| r.auth.methods = Some(Vec::new())).is_empty(),
            "off on loopback needs no method"
        );
    }

    #[test]
    fn listed_verify_names_each_missing_key() {
        let listed = |r: &mut RawConfig| r.auth.methods = names(&["verify"]);
        refused(
            listed,
            "verify.account_sid",
            "auth.methods lists \"verify\"",
        );
        refused(
            |r| {
                listed(r);
                r.verify.account_sid = Some(ACCOUNT_SID.into());
            },
            "verify.auth_token",
            "missing",
        );
        refused(
            |r| {
                listed(r);
                r.verify.account_sid = Some(ACCOUNT_SID.into());
                r.verify.auth_token = Some("token".into());
            },
            "verify.service_sid",
            "missing",
        );
    }

    #[test]
    fn partial_verify_credentials_are_refused() {
        refused(
            |r| r.verify.service_sid = Some(SERVICE_SID.into()),
            "verify.account_sid",
            "[verify] is partly configured",
        );
        refused(
            |r| r.verify.account_sid = Some(ACCOUNT_SID.into()),
            "verify.auth_token",
            "partly configured",
        );
        let users = users_file();
        let mut raw = valid(&users);
        raw.verify.account_sid = Some(String::new());
        assert!(validate(&raw).unwrap().verify.is_none(), "empty = unset");
    }

    #[test]
    fn verify_settings() {
        let users = users_file();
        let mut raw = valid(&users);
        with_verify(&mut raw);
        let verify = validate(&raw).unwrap().verify.expect("verify on");
        assert_eq!(verify.api_url.as_str(), "https://verify.twilio.com/");
        assert_eq!(verify.account_sid, ACCOUNT_SID);
        assert_eq!(verify.service_sid, SERVICE_SID);
        assert_eq!(verify.auth_token.expose(), "token");
        assert_eq!(verify.channel, VerifyChannel::Sms);
        assert_eq!(verify.timeout, Duration::from_secs(5));
        for (name, channel) in [
            ("sms", VerifyChannel::Sms),
            ("call", VerifyChannel::Call),
            ("email", VerifyChannel::Email),
        ] {
            raw.verify.channel = name.into();
            let verify = validate(&raw).unwrap().verify.unwrap();
            assert_eq!(verify.channel, channel);
            assert_eq!(channel.as_str(), name);
        }
        raw.verify.api_url = "http://[::1]:9100".into();
        let verify = validate(&raw).unwrap().verify.unwrap();
        assert_eq!(verify.api_url.as_str(), "http://[::1]:9100/");
        refused(
            |r| {
                with_verify(r);
                r.verify.channel = "whatsapp".into();
            },
            "verify.channel",
            "\"whatsapp\" is not one of sms, call, email",
        );
        refused(
            |r| {
                with_verify(r);
                r.verify.api_url = "http://verify.twilio.com".into();
            },
            "verify.api_url",
            "must be https unless its host is a loopback address",
        );
        refused(
            |r| {
                with_verify(r);
                r.verify.timeout = "0s".into();
            },
            "verify.timeout",
            "longer than zero",
        );
    }

    #[test]
    fn verify_sids_have_their_shape() {
        let bad_accounts = [
            SERVICE_SID,
            "AC0123456789abcdef0123456789abcde",
            "AC0123456789abcdef0123456789abcdef0",
            "AC0123456789abcdef0123456789abcdeg",
            "ac0123456789abcdef0123456789abcdef",
        ];
        for bad in bad_accounts {
            refused(
                |r| {
                    with_verify(r);
                    r.verify.account_sid = Some(bad.into());
                },
                "verify.account_sid",
                "\"AC\" and 32 hex digits",
            );
        }
        refused(
            |r| {
                with_verify(r);
                r.verify.service_sid = Some(ACCOUNT_SID.into());
            },
            "verify.service_sid",
            "is not a Verify service SID: \"VA\" and 32 hex digits",
        );
    }

    #[test]
    fn verify_auth_token_file_is_exclusive_and_read() {
        let file = users_file();
        std::fs::write(file.path(), "from-file\n").unwrap();
        let path = file.path().to_string_lossy().into_owned();
        let both = path.clone();
        refused(
            |r| {
                with_verify(r);
                r.verify.auth_token_file = Some(both);
            },
            "verify.auth_token_file",
            "only one",
        );
        let users = users_file();
        let mut raw = valid(&users);
        with_verify(&mut raw);
        raw.verify.auth_token = None;
        raw.verify.auth_token_file = Some(path);
        let verify = validate(&raw).unwrap().verify.unwrap();
        assert_eq!(verify.auth_token.expose(), "from-file");
    }

    #[test]
    fn totp_issuer_and_enrollment() {
        refused(|r| r.totp.issuer = " ".into(), "totp.issuer", "empty");
        refused(
            |r| r.totp.issuer = "Example:Corp".into(),
            "totp.issuer",
            "must not contain ':'",
        );
        refused(
            |r| r.totp.enrollment = "never".into(),
            "totp.enrollment",
            "\"never\" is not \"first_login\" or \"admin\"",
        );
        let users = users_file();
        let mut raw = valid(&users);
        raw.totp.issuer = "Example Corp".into();
        raw.totp.enrollment = "admin".into();
        let totp = validate(&raw).unwrap().totp;
        assert_eq!(totp.issuer, "Example Corp");
        assert_eq!(totp.enrollment, TotpEnrollment::Admin);
        assert_eq!(totp.enrollment.as_str(), "admin");
    }

    #[test]
    fn totp_keys_are_long_enough() {
        refused(
            |r| r.totp.encryption_key = Some("short".into()),
            "totp.encryption_key",
            "too short: 5 bytes",
        );
        refused(
            |r| r.totp.previous_encryption_keys = vec![SECRET.into(), "old".into()],
            "totp.previous_encryption_keys[1]",
            "too short: 3 bytes",
        );
        let file = users_file();
        std::fs::write(file.path(), "short\n").unwrap();
        let short = file.path().to_string_lossy().into_owned();
        let short_again = short.clone();
        refused(
            |r| r.totp.encryption_key_file = Some(short),
            "totp.encryption_key_file",
            "too short",
        );
        refused(
            |r| r.totp.previous_encryption_keys_file = vec![short_again],
            "totp.previous_encryption_keys_file[0]",
            "too short",
        );
        refused(
            |r| r.totp.previous_encryption_keys_file = vec!["/nonexistent/key".into()],
            "totp.previous_encryption_keys_file[0]",
            "cannot read",
        );
    }

    #[test]
    fn totp_key_file_is_exclusive_and_read() {
        let file = users_file();
        std::fs::write(file.path(), format!("{SECRET}-from-file\n")).unwrap();
        let path = file.path().to_string_lossy().into_owned();
        let both = path.clone();
        refused(
            |r| {
                r.totp.encryption_key = Some(SECRET.into());
                r.totp.encryption_key_file = Some(both);
            },
            "totp.encryption_key_file",
            "only one",
        );
        let users = users_file();
        let mut raw = valid(&users);
        raw.totp.encryption_key_file = Some(path.clone());
        raw.totp.previous_encryption_keys = vec![format!("{SECRET}-old")];
        raw.totp.previous_encryption_keys_file = vec![path];
        let totp = validate(&raw).unwrap().totp;
        let from_file = format!("{SECRET}-from-file");
        assert_eq!(totp.encryption_key.unwrap().expose(), from_file);
        let previous: Vec<&str> = totp
            .previous_encryption_keys
            .iter()
            .map(Secret::expose)
            .collect();
        assert_eq!(previous, [format!("{SECRET}-old"), from_file]);
    }

    #[test]
    fn secrets_stay_out_of_debug_output() {
        let (token, key, old) = (
            "twilio-token",
            "the-current-totp-key-0123456789abcdef",
            "the-previous-totp-key-0123456789abcdef",
        );
        let users = users_file();
        let mut raw = valid(&users);
        with_verify(&mut raw);
        raw.verify.auth_token = Some(token.into());
        raw.totp.encryption_key = Some(key.into());
        raw.totp.previous_encryption_keys = vec![old.into()];
        let config = validate(&raw).unwrap();
        let debug = format!("{:?} {:?}", config.totp, config.verify);
        for secret in [token, key, old] {
            assert!(!debug.contains(secret), "{secret} in {debug}");
        }
        assert!(debug.contains("Secret(********)"), "{debug}");
    }

    #[test]
    fn allowed_upgrades_are_protocol_names() {
        refused(
            |r| r.server.allowed_upgrades = vec!["websocket".into(), "h2c/2.0".into()],
            "server.allowed_upgrades[1]",
            "h2c/2.0",
        );
        refused(
            |r| r.server.allowed_upgrades = vec![" ".into()],
            "server.allowed_upgrades[0]",
            "websocket",
        );
        let users = users_file();
        let mut raw = valid(&users);
        assert_eq!(
            validate(&raw).unwrap().server.allowed_upgrades,
            ["websocket"]
        );
        raw.server.allowed_upgrades = vec!["WebSocket".into(), "IRC".into()];
        assert_eq!(
            validate(&raw).unwrap().server.allowed_upgrades,
            ["websocket", "irc"]
        );
        raw.server.allowed_upgrades = vec![];
        assert!(validate(&raw).unwrap().server.allowed_upgrades.is_empty());
    }

    #[test]
    fn stripped_request_headers_are_names_or_prefixes() {
        for bad in ["X Legacy", "*", "x-*-user", "", "x:y"] {
            refused(
                |r| r.proxy.strip_request_headers = vec!["x-ok".into(), bad.into()],
                "proxy.strip_request_headers[1]",
                "X-Legacy-User",
            );
        }
        let users = users_file();
        let mut raw = valid(&users);
        raw.proxy.strip_request_headers = vec!["X_Legacy-User".into(), "X-SSO-*".into()];
        assert_eq!(
            validate(&raw).unwrap().proxy.strip_request_headers,
            ["x-legacy-user", "x-sso-*"]
        );
    }

    #[test]
    fn ipv6_prefix_is_1_to_128_bits() {
        for bad in [0, 129, 300] {
            refused(
                |r| r.regulation.ipv6_prefix = bad,
                "regulation.ipv6_prefix",
                "1 to 128",
            );
        }
        let users = users_file();
        let mut raw = valid(&users);
        assert_eq!(validate(&raw).unwrap().regulation.ipv6_prefix, 64);
        raw.regulation.ipv6_prefix = 128;
        assert_eq!(validate(&raw).unwrap().regulation.ipv6_prefix, 128);
    }

    /// The baseline on the Redis backend.
    fn on_redis(r: &mut RawConfig) {
        r.store.backend = "redis".into();
        r.store.redis.url = Some("redis://127.0.0.1:6379/2".into());
    }

    #[test]
    fn store_backend_is_sled_or_redis() {
        let users = users_file();
        let mut raw = valid(&users);
        assert!(matches!(
            validate(&raw).unwrap().store.backend,
            StoreBackend::Sled
        ));
        // Redis settings beside the sled backend are not read.
        raw.store.redis.key_prefix = "has space".into();
        raw.store.redis.url = Some("ftp://x".into());
        assert!(matches!(
            validate(&raw).unwrap().store.backend,
            StoreBackend::Sled
        ));
        on_redis(&mut raw);
        raw.store.redis.key_prefix = "authgate:".into();
        let StoreBackend::Redis(redis) = validate(&raw).unwrap().store.backend else {
            panic!("redis expected");
        };
        assert_eq!(redis.url, "redis://127.0.0.1:6379/2");
        assert_eq!(redis.key_prefix, "authgate:");
        assert_eq!(redis.timeout, Duration::from_secs(2));
        assert_eq!(redis.min_replicas_ack, 0);
        assert!(redis.password.is_none() && redis.sentinel.is_none());
        refused(
            |r| r.store.backend = "postgres".into(),
            "store.backend",
            "postgres",
        );
    }

    #[test]
    fn redis_url_is_required_and_checked() {
        refused(
            |r| {
                on_redis(r);
                r.store.redis.url = None;
            },
            "store.redis.url",
            "missing",
        );
        for (url, text) in [
            ("http://127.0.0.1:6379", "\"http\" is not supported"),
            ("localhost:6379", "\"localhost\" is not supported"),
            ("127.0.0.1:6379", "not a URL"),
            ("redis://", "needs a host"),
            ("redis:///0", "needs a host"),
            ("redis://127.0.0.1:6379/zero", "database number"),
            ("redis://:hunter2@127.0.0.1", "credentials"),
            ("not a url", "not a URL"),
        ] {
            refused(
                |r| {
                    on_redis(r);
                    r.store.redis.url = Some(url.into());
                },
                "store.redis.url",
                text,
            );
        }
        let users = users_file();
        let mut raw = valid(&users);
        on_redis(&mut raw);
        raw.store.redis.url = Some("rediss://redis.example.com:6380".into());
        assert!(validate(&raw).is_ok());
    }

    #[test]
    fn a_password_in_the_url_is_not_shown() {
        let users = users_file();
        let mut raw = valid(&users);
        on_redis(&mut raw);
        raw.store.redis.url = Some("redis://user:hunter2@127.0.0.1".into());
        let err = validate(&raw).unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
    }

    #[test]
    fn redis_settings_are_checked() {
        for prefix in ["", "two words", "tab\t", "nul\0"] {
            refused(
                |r| {
                    on_redis(r);
                    r.store.redis.key_prefix = prefix.into();
                },
                "store.redis.key_prefix",
                "non-empty",
            );
        }
        refused(
            |r| {
                on_redis(r);
                r.store.redis.timeout = "0s".into();
            },
            "store.redis.timeout",
            "longer than zero",
        );
        refused(
            |r| {
                on_redis(r);
                r.store.redis.password = Some("p".into());
                r.store.redis.password_file = Some("/nowhere".into());
            },
            "store.redis.password_file",
            "only one",
        );
    }

    #[test]
    fn redis_passwords_come_from_files() {
        let users = users_file();
        let file = users_file();
        std::fs::write(file.path(), "redis-password\n").unwrap();
        let path = file.path().to_string_lossy().into_owned();
        let mut raw = valid(&users);
        on_redis(&mut raw);
        raw.store.redis.username = Some("gateway".into());
        raw.store.redis.password_file = Some(path.clone());
        raw.store.redis.min_replicas_ack = 1;
        raw.store.redis.sentinel.master_name = Some("main".into());
        raw.store.redis.sentinel.nodes = vec!["10.0.0.5:26379".into(), "[::1]:26379".into()];
        raw.store.redis.sentinel.password_file = Some(path);
        let StoreBackend::Redis(redis) = validate(&raw).unwrap().store.backend else {
            panic!("redis expected");
        };
        assert_eq!(redis.username.as_deref(), Some("gateway"));
        assert_eq!(redis.password.unwrap().expose(), "redis-password");
        assert_eq!(redis.min_replicas_ack, 1);
        let sentinel = redis.sentinel.expect("sentinel configured");
        assert_eq!(sentinel.master_name, "main");
        assert_eq!(sentinel.nodes, ["10.0.0.5:26379", "[::1]:26379"]);
        assert_eq!(sentinel.password.unwrap().expose(), "redis-password");
    }

    #[test]
    fn sentinel_needs_a_master_name_and_nodes() {
        refused(
            |r| {
                on_redis(r);
                r.store.redis.sentinel.nodes = vec!["10.0.0.5:26379".into()];
            },
            "store.redis.sentinel.master_name",
            "missing",
        );
        refused(
            |r| {
                on_redis(r);
                r.store.redis.sentinel.master_name = Some("main".into());
            },
            "store.redis.sentinel.nodes",
            "at least one",
        );
        for node in ["10.0.0.5", "10.0.0.5:port", ":26379", "10.0.0.5:0"] {
            refused(
                |r| {
                    on_redis(r);
                    r.store.redis.sentinel.master_name = Some("main".into());
                    r.store.redis.sentinel.nodes = vec!["ok:26379".into(), node.into()];
                },
                "store.redis.sentinel.nodes",
                node,
            );
        }
        refused(
            |r| {
                on_redis(r);
                r.store.redis.sentinel.master_name = Some("main".into());
                r.store.redis.sentinel.nodes = vec!["ok:26379".into()];
                r.store.redis.sentinel.password = Some("p".into());
                r.store.redis.sentinel.password_file = Some("/nowhere".into());
            },
            "store.redis.sentinel.password_file",
            "only one",
        );
    }
}
