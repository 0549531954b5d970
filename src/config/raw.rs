//! The serde mirror of the TOML file: plain strings and numbers, DESIGN.md's
//! defaults, nothing checked yet. `deny_unknown_fields` everywhere so that a
//! key this build does not implement (an access rule, a provider) is an
//! error instead of being silently ignored.

use serde::{Deserialize, Deserializer, Serialize, de};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub server: RawServer,
    pub upstream: RawUpstream,
    pub session: RawSession,
    pub store: RawStore,
    pub users: RawUsers,
    pub auth: RawAuth,
    pub regulation: RawRegulation,
    pub access_control: RawAccessControl,
    pub log: RawLog,
    pub authy: RawAuthy,
    pub totp: RawTotp,
    pub verify: RawVerify,
    pub webauthn: super::webauthn::RawWebauthn,
    pub signup: RawSignup,
    pub metrics: RawMetrics,
    pub proxy: RawProxy,
    pub audit: RawAudit,
    pub portal: super::portal::RawPortal,
    pub approval: RawApproval,
}

/// `[approval]`: the limits of requests held for an `approve` rule.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawApproval {
    /// The largest body held; larger requests get 413.
    pub max_body: usize,
    /// How long a held request waits for its approval.
    pub timeout: String,
    /// Every held body together, across sessions.
    pub max_pending_bytes: usize,
    /// Held requests waiting per session.
    pub max_per_session: usize,
}

impl Default for RawApproval {
    fn default() -> Self {
        RawApproval {
            max_body: 64 * 1024,
            timeout: "2m".into(),
            max_pending_bytes: 16 * 1024 * 1024,
            max_per_session: 4,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    pub listen: String,
    pub public_url: String,
    pub path_prefix: String,
    pub trusted_proxies: Vec<String>,
    pub header_read_timeout: String,
    pub max_header_bytes: usize,
    pub max_form_bytes: usize,
    pub max_connections: usize,
    pub keepalive_timeout: String,
    pub shutdown_timeout: String,
    /// Serve Authelia's forward-auth paths also when an upstream is set.
    pub authelia_paths: bool,
    /// PEM certificate chain; TLS is on when this and `tls_key` are set.
    pub tls_cert: Option<String>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1).
    pub tls_key: Option<String>,
    /// A plain-HTTP listener that only redirects to https.
    pub redirect_http: Option<String>,
    /// `Upgrade` protocols that may open a tunnel to the upstream.
    pub allowed_upgrades: Vec<String>,
    /// `Strict-Transport-Security` on the portal's answers (https only).
    pub hsts: bool,
    /// The admin socket's path (a Unix socket); off when empty.
    pub admin_socket: String,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen: "127.0.0.1:8080".into(),
            public_url: "http://127.0.0.1:8080".into(),
            path_prefix: "/_authgate".into(),
            trusted_proxies: vec!["127.0.0.1/32".into(), "::1/128".into()],
            header_read_timeout: "10s".into(),
            max_header_bytes: 16384,
            max_form_bytes: 16384,
            max_connections: 4096,
            keepalive_timeout: "60s".into(),
            shutdown_timeout: "30s".into(),
            authelia_paths: false,
            tls_cert: None,
            tls_key: None,
            redirect_http: None,
            allowed_upgrades: vec!["websocket".into()],
            hsts: false,
            admin_socket: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUpstream {
    /// Absent: forward-auth only.
    pub url: Option<String>,
    pub connect_timeout: String,
    pub response_timeout: String,
    /// PEM CA certificates that alone verify an https upstream.
    pub ca_file: Option<String>,
}

impl Default for RawUpstream {
    fn default() -> Self {
        RawUpstream {
            url: None,
            connect_timeout: "5s".into(),
            response_timeout: "60s".into(),
            ca_file: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSession {
    pub cookie_name: String,
    pub cookie_domain: Option<String>,
    pub secret: Option<String>,
    pub secret_file: Option<String>,
    pub idle_timeout: String,
    pub lifetime: String,
}

impl Default for RawSession {
    fn default() -> Self {
        RawSession {
            cookie_name: "authgate_session".into(),
            cookie_domain: None,
            secret: None,
            secret_file: None,
            idle_timeout: "30m".into(),
            lifetime: "12h".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawStore {
    pub path: String,
    pub flush_interval: String,
    /// "sled" or "redis".
    pub backend: String,
    /// Read only with `backend = "redis"` (and by `store copy`).
    pub redis: RawRedis,
}

impl Default for RawStore {
    fn default() -> Self {
        RawStore {
            path: "data".into(),
            flush_interval: "1s".into(),
            backend: "sled".into(),
            redis: RawRedis::default(),
        }
    }
}

/// `[store.redis]`. A table with defaults, not an `Option`, so that the
/// env layer finds every nested key (`AUTHGATE_STORE__REDIS__URL`).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRedis {
    /// Required with `backend = "redis"`.
    pub url: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
    pub key_prefix: String,
    pub timeout: String,
    pub min_replicas_ack: u32,
    pub sentinel: RawSentinel,
}

impl Default for RawRedis {
    fn default() -> Self {
        RawRedis {
            url: None,
            username: None,
            password: None,
            password_file: None,
            key_prefix: "authgate:".into(),
            timeout: "2s".into(),
            min_replicas_ack: 0,
            sentinel: RawSentinel::default(),
        }
    }
}

/// `[store.redis.sentinel]`: on when `master_name` or `nodes` is set.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSentinel {
    pub master_name: Option<String>,
    /// `host:port` of each Sentinel.
    pub nodes: Vec<String>,
    pub password: Option<String>,
    pub password_file: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawUsers {
    pub file: String,
}

impl Default for RawUsers {
    fn default() -> Self {
        RawUsers {
            file: "users.toml".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuth {
    pub second_factor: String,
    pub challenge_timeout: String,
    /// Absent: available cores - 1, at least 1 (decided in validation, so
    /// the default follows the machine the config runs on).
    #[serde(deserialize_with = "optional_count")]
    pub max_concurrent_hashes: Option<usize>,
    /// Absent: the configured third-party providers, else built-in TOTP
    /// (decided in validation, which knows what is configured). Present
    /// and empty is different: no second factor offered at all.
    #[serde(deserialize_with = "optional_names")]
    pub methods: Option<Vec<String>>,
}

impl Default for RawAuth {
    fn default() -> Self {
        RawAuth {
            second_factor: "required".into(),
            challenge_timeout: "5m".into(),
            max_concurrent_hashes: None,
            methods: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAuthy {
    pub api_key: Option<String>,
    pub api_key_file: Option<String>,
    pub api_url: String,
    /// Absent: public_url + path_prefix + "/authy/callback".
    pub callback_url: Option<String>,
    pub onetouch_message: String,
    pub poll_interval: String,
    pub timeout: String,
    pub send_install_link: bool,
}

impl Default for RawAuthy {
    fn default() -> Self {
        RawAuthy {
            api_key: None,
            api_key_file: None,
            api_url: "https://api.authy.com".into(),
            callback_url: None,
            onetouch_message: "Log in to {host}".into(),
            poll_interval: "2s".into(),
            timeout: "5s".into(),
            send_install_link: false,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawTotp {
    pub issuer: String,
    pub enrollment: String,
    /// Absent: the server derives the key from `session.secret`.
    pub encryption_key: Option<String>,
    pub encryption_key_file: Option<String>,
    /// Keys that still open secrets sealed before a rotation.
    pub previous_encryption_keys: Vec<String>,
    /// Files holding more previous keys, one key per file.
    pub previous_encryption_keys_file: Vec<String>,
}

impl Default for RawTotp {
    fn default() -> Self {
        RawTotp {
            issuer: "authgate".into(),
            enrollment: "first_login".into(),
            encryption_key: None,
            encryption_key_file: None,
            previous_encryption_keys: Vec::new(),
            previous_encryption_keys_file: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawVerify {
    pub api_url: String,
    pub account_sid: Option<String>,
    pub auth_token: Option<String>,
    pub auth_token_file: Option<String>,
    pub service_sid: Option<String>,
    pub channel: String,
    pub timeout: String,
}

impl Default for RawVerify {
    fn default() -> Self {
        RawVerify {
            api_url: "https://verify.twilio.com".into(),
            account_sid: None,
            auth_token: None,
            auth_token_file: None,
            service_sid: None,
            channel: "sms".into(),
            timeout: "5s".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSignup {
    pub enabled: bool,
    pub allowed_email_domains: Vec<String>,
    pub groups: Vec<String>,
    pub min_password_length: usize,
}

impl Default for RawSignup {
    fn default() -> Self {
        RawSignup {
            enabled: false,
            allowed_email_domains: Vec::new(),
            groups: vec!["signup".into()],
            min_password_length: 10,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    /// Empty: no metrics listener.
    pub listen: String,
}

/// `[audit]`: the audit trail (docs/audit.md).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAudit {
    /// "off", "stdout" or "file".
    pub output: String,
    /// Required when `output = "file"`.
    pub file: String,
    /// Events waiting for the writer; more are dropped and counted.
    pub queue: usize,
    /// The host name unless set (check-config shows which).
    pub replica: String,
}

impl Default for RawAudit {
    fn default() -> Self {
        RawAudit {
            output: "off".into(),
            file: String::new(),
            queue: 4096,
            replica: host_name(),
        }
    }
}

/// `audit.replica`'s default: the kernel's host name.
pub(super) fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "authgate".to_owned())
}

impl Default for RawMetrics {
    fn default() -> Self {
        RawMetrics {
            listen: "127.0.0.1:9959".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawRegulation {
    pub max_failures: u32,
    pub max_failures_per_address: u32,
    pub window: String,
    pub ban: String,
    pub ipv6_prefix: u32,
}

impl Default for RawRegulation {
    fn default() -> Self {
        RawRegulation {
            max_failures: 5,
            max_failures_per_address: 50,
            window: "10m".into(),
            ban: "15m".into(),
            ipv6_prefix: 64,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAccessControl {
    pub default_policy: String,
    /// Let CORS preflights (`OPTIONS` + `Access-Control-Request-Method`) through.
    pub allow_preflight: bool,
    pub rules: Vec<crate::access::RawRule>,
}

impl Default for RawAccessControl {
    fn default() -> Self {
        RawAccessControl {
            default_policy: "two_factor".into(),
            allow_preflight: false,
            rules: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLog {
    pub format: String,
}

impl Default for RawLog {
    fn default() -> Self {
        RawLog {
            format: "text".into(),
        }
    }
}

/// An optional count that also accepts a decimal string: the env layer
/// hands optional keys over as raw strings (it cannot know their type), and
/// an empty string means "not set".
fn optional_count<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<usize>, D::Error> {
    deserializer.deserialize_any(OptionalCount)
}

struct OptionalCount;

impl<'de> de::Visitor<'de> for OptionalCount {
    type Value = Option<usize>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a non-negative integer")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        usize::try_from(v)
            .map(Some)
            .map_err(|_| E::invalid_value(de::Unexpected::Unsigned(v), &self))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        usize::try_from(v)
            .map(Some)
            .map_err(|_| E::invalid_value(de::Unexpected::Signed(v), &self))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        v.parse()
            .map(Some)
            .map_err(|_| E::invalid_value(de::Unexpected::Str(v), &self))
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawProxy {
    /// Request headers removed before forwarding, besides the built-in ones.
    pub strip_request_headers: Vec<String>,
}

/// An optional list of plain names (no commas or quotes inside a name).
/// From the environment it arrives as one string, `a,b` or `["a", "b"]`,
/// because the env layer types optional keys as raw strings; an empty
/// string means "not set", while `[]` is an empty list.
fn optional_names<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Vec<String>>, D::Error> {
    deserializer.deserialize_any(OptionalNames)
}

struct OptionalNames;

impl<'de> de::Visitor<'de> for OptionalNames {
    type Value = Option<Vec<String>>;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a list of names")
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        let mut names = Vec::new();
        while let Some(name) = seq.next_element::<String>()? {
            names.push(name);
        }
        Ok(Some(names))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        let v = v.trim();
        if v.is_empty() {
            return Ok(None);
        }
        let inner = match v.strip_prefix('[') {
            Some(rest) => rest
                .strip_suffix(']')
                .ok_or_else(|| E::invalid_value(de::Unexpected::Str(v), &self))?,
            None => v,
        };
        let names = inner
            .split(',')
            .map(|name| name.trim().trim_matches(['"', '\'']).trim())
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect();
        Ok(Some(names))
    }
}
