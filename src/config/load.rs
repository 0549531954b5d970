//! Where the config comes from: built-in defaults < the TOML file <
//! `AUTHGATE_SECTION__KEY` environment variables.

use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::PathBuf;

use figment::providers::{Env, Format, Serialized, Toml};
use figment::value::{Dict, Empty, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};

use super::raw::RawConfig;
use super::{Config, ConfigError, validate};

const DEFAULT_FILE: &str = "authgate.toml";
const ENV_PREFIX: &str = "AUTHGATE_";
const MASK: &str = "********";

/// Which config file to read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigSource {
    /// `authgate.toml` in the current directory when it exists; without it
    /// the config comes from defaults and the environment alone (Docker).
    Default,
    /// `--config FILE`: the file must exist.
    Explicit(PathBuf),
}

/// Loads and validates the whole config.
pub fn load(source: &ConfigSource) -> Result<Config, ConfigError> {
    validate::validate(&load_raw(source)?)
}

/// The effective config as TOML with secrets masked, for `check-config`.
/// Fails exactly where [`load`] would, so a printed config is a valid one.
pub fn effective_config_masked(source: &ConfigSource) -> Result<String, ConfigError> {
    let raw = load_raw(source)?;
    validate::validate(&raw)?;
    Ok(render_masked(raw))
}

/// The config for `store copy`: always on the Redis backend, whose
/// `[store.redis]` settings say how to reach it; `redis_url` (the copy's
/// target) stands in for `store.redis.url` when given.
pub fn load_for_store_copy(
    source: &ConfigSource,
    redis_url: Option<&str>,
) -> Result<Config, ConfigError> {
    let mut raw = load_raw(source)?;
    raw.store.backend = "redis".to_owned();
    if let Some(url) = redis_url {
        raw.store.redis.url = Some(url.to_owned());
    }
    validate::validate(&raw)
}

/// Only `users.file`, so that `authgate user add` works before the rest of
/// the config (a secret, say) is in place.
pub fn users_file_path(source: &ConfigSource) -> Result<PathBuf, ConfigError> {
    figment(source)?
        .extract_inner::<String>("users.file")
        .map(PathBuf::from)
        .map_err(ConfigError::from_figment)
}

fn load_raw(source: &ConfigSource) -> Result<RawConfig, ConfigError> {
    figment(source)?
        .extract()
        .map_err(ConfigError::from_figment)
}

fn figment(source: &ConfigSource) -> Result<Figment, ConfigError> {
    let mut figment = Figment::from(Serialized::defaults(RawConfig::default()));
    if let Some(path) = config_file(source)? {
        // `file_exact`: `Toml::file` would also search parent directories.
        figment = figment.merge(Toml::file_exact(path));
    }
    Ok(figment.merge(KnownEnv::new()))
}

fn config_file(source: &ConfigSource) -> Result<Option<PathBuf>, ConfigError> {
    let (path, optional) = match source {
        ConfigSource::Default => (PathBuf::from(DEFAULT_FILE), true),
        ConfigSource::Explicit(path) => (path.clone(), false),
    };
    match std::fs::File::open(&path) {
        Ok(_) => Ok(Some(path)),
        Err(err) if optional && err.kind() == ErrorKind::NotFound => Ok(None),
        Err(err) => Err(ConfigError::in_file(
            &path,
            format!("cannot read the config file: {err}"),
        )),
    }
}

fn render_masked(mut raw: RawConfig) -> String {
    for secret in [
        &mut raw.session.secret,
        &mut raw.authy.api_key,
        &mut raw.totp.encryption_key,
        &mut raw.verify.auth_token,
        &mut raw.store.redis.password,
        &mut raw.store.redis.sentinel.password,
    ] {
        if secret.is_some() {
            *secret = Some(MASK.to_owned());
        }
    }
    for key in &mut raw.totp.previous_encryption_keys {
        *key = MASK.to_owned();
    }
    toml::to_string(&raw).expect("the raw config is plain tables, strings and numbers")
}

/// How an environment value becomes a config value. figment would type
/// every value by its look (`123` an integer, `1e3` a float), which breaks
/// string keys such as a numeric secret, so the type comes from the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EnvKind {
    /// Taken verbatim.
    Text,
    /// Verbatim; empty means "not set".
    Optional,
    /// `[a, b]`, or the friendlier `a,b`.
    List,
    /// Numbers and booleans, parsed the figment way.
    Typed,
}

impl EnvKind {
    fn of(value: &Value) -> Self {
        match value {
            Value::String(..) => EnvKind::Text,
            Value::Empty(..) => EnvKind::Optional,
            Value::Array(..) => EnvKind::List,
            _ => EnvKind::Typed,
        }
    }

    fn value(self, raw: String) -> Value {
        match self {
            EnvKind::Text => Value::from(raw),
            EnvKind::Optional if raw.trim().is_empty() => Value::from(Empty::None),
            EnvKind::Optional => Value::from(raw),
            EnvKind::List if raw.trim_start().starts_with('[') => parse_value(&raw),
            EnvKind::List => Value::from(split_list(&raw)),
            EnvKind::Typed => parse_value(&raw),
        }
    }
}

fn parse_value(raw: &str) -> Value {
    match raw.parse::<Value>() {
        Ok(value) => value,
        Err(never) => match never {},
    }
}

fn split_list(raw: &str) -> Vec<String> {
    raw.split(',')
        .map(str::trim)
        .filter(|item| !item.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Every dotted key the raw config accepts, read off the serialized
/// defaults (optional keys serialize as empty values, so they count too).
fn known_keys() -> BTreeMap<String, EnvKind> {
    let defaults =
        Value::serialize(RawConfig::default()).expect("the raw defaults serialize into figment");
    let mut keys = BTreeMap::new();
    collect_keys(String::new(), &defaults, &mut keys);
    keys
}

fn collect_keys(prefix: String, value: &Value, keys: &mut BTreeMap<String, EnvKind>) {
    let Value::Dict(_, dict) = value else {
        keys.insert(prefix, EnvKind::of(value));
        return;
    };
    for (name, child) in dict {
        let key = match prefix.is_empty() {
            true => name.clone(),
            false => format!("{prefix}.{name}"),
        };
        collect_keys(key, child, keys);
    }
}

/// The `AUTHGATE_` environment limited to known keys. DESIGN.md wants a
/// warning, not a failure, for unknown variables: a stray variable in a
/// container must not stop the gateway, while an unknown key in the file
/// (which the operator wrote on purpose) does.
struct KnownEnv {
    known: BTreeMap<String, EnvKind>,
}

impl KnownEnv {
    fn new() -> Self {
        KnownEnv {
            known: known_keys(),
        }
    }

    /// The known values as a nested dict, and the names of unknown variables.
    fn read(&self) -> (Dict, Vec<String>) {
        let mut dict = Dict::new();
        let mut unknown = Vec::new();
        for (key, raw) in Env::prefixed(ENV_PREFIX).split("__").iter() {
            let Some(kind) = self.known.get(key.as_str()) else {
                unknown.push(env_name(key.as_str()));
                continue;
            };
            insert(&mut dict, key.as_str(), kind.value(raw));
        }
        (dict, unknown)
    }
}

fn insert(dict: &mut Dict, key: &str, value: Value) {
    match key.split_once('.') {
        None => {
            dict.insert(key.to_owned(), value);
        }
        Some((section, rest)) => {
            let child = dict
                .entry(section.to_owned())
                .or_insert_with(|| Value::from(Dict::new()));
            if let Value::Dict(_, child) = child {
                insert(child, rest, value);
            }
        }
    }
}

fn env_name(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.replace('.', "__").to_ascii_uppercase()
    )
}

impl Provider for KnownEnv {
    fn metadata(&self) -> Metadata {
        Metadata::named("environment variable")
            .interpolater(|_: &Profile, keys: &[&str]| env_name(&keys.join(".")))
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        let (dict, unknown) = self.read();
        for name in unknown {
            // Logging is not set up yet while the config loads.
            eprintln!("authgate: warning: unknown environment variable {name} ignored");
        }
        Ok(Profile::Default.collect(dict))
    }
}

#[cfg(test)]
#[allow(clippy::result_large_err)] // the error type of `Jail` closures is figment's
mod tests {
    use std::collections::BTreeSet;
    use std::path::Path;

    use figment::Jail;

    use super::*;
    use crate::config::{LogFormat, SecondFactorMode, TotpEnrollment, VerifyChannel};
    use crate::model::Method;
    use crate::model::Policy;

    const SECRET: &str = "0123456789abcdef0123456789abcdef-test";
    const ACCOUNT_SID: &str = "AC0123456789abcdef0123456789abcdef";
    const SERVICE_SID: &str = "VA0123456789abcdef0123456789ABCDEF";

    /// The smallest config this build accepts: a secret and a users file
    /// (the second factor is then the built-in TOTP).
    fn minimal(jail: &mut Jail) -> figment::Result<()> {
        jail.create_file("users.toml", "")?;
        jail.set_env("AUTHGATE_SESSION__SECRET", SECRET);
        Ok(())
    }

    fn expect_err(source: &ConfigSource) -> ConfigError {
        load(source).expect_err("the config should be refused")
    }

    fn assert_key(err: &ConfigError, key: &str, text: &str) {
        assert_eq!(err.key(), Some(key), "{err}");
        let message = err.to_string();
        assert!(
            message.starts_with(&format!("config error: {key}: ")),
            "{message}"
        );
        assert!(message.contains(text), "{message:?} lacks {text:?}");
    }

    #[test]
    fn defaults_load_without_a_file() {
        Jail::expect_with(|jail| {
            minimal(jail)?;
            let config = load(&ConfigSource::Default).map_err(|e| e.to_string())?;
            assert_eq!(config.server.listen, "127.0.0.1:8080".parse().unwrap());
            assert_eq!(config.server.public_url.as_str(), "http://127.0.0.1:8080/");
            assert_eq!(config.server.path_prefix, "/_authgate");
            assert_eq!(config.server.trusted_proxies.len(), 2);
            assert_eq!(config.server.max_header_bytes, 16384);
            assert_eq!(config.session.cookie_name, "authgate_session");
            assert_eq!(config.session.secret.expose(), SECRET);
            assert_eq!(config.session.idle_timeout.as_secs(), 30 * 60);
            assert_eq!(config.session.lifetime.as_secs(), 12 * 3600);
            assert_eq!(config.store.path, Path::new("data"));
            assert_eq!(config.users.file, Path::new("users.toml"));
            assert_eq!(config.auth.challenge_timeout.as_secs(), 300);
            assert!(config.auth.max_concurrent_hashes >= 1);
            assert_eq!(config.auth.second_factor, SecondFactorMode::Required);
            assert_eq!(config.auth.methods, [Method::Totp]);
            assert_eq!(config.totp.issuer, "authgate");
            assert_eq!(config.totp.enrollment, TotpEnrollment::FirstLogin);
            assert!(config.totp.encryption_key.is_none());
            assert!(config.totp.previous_encryption_keys.is_empty());
            assert!(config.verify.is_none());
            assert_eq!(config.regulation.max_failures, 5);
            assert_eq!(config.access_control.default_policy(), Policy::TwoFactor);
            assert_eq!(config.log.format, LogFormat::Text);
            assert!(config.upstream.is_none());
            Ok(())
        });
    }

    #[test]
    fn missing_secret_is_named() {
        Jail::expect_with(|jail| {
            jail.create_file("users.toml", "")?;
            let err = expect_err(&ConfigSource::Default);
            assert_key(
                &err,
                "session.secret",
                "missing; set it in the config file or AUTHGATE_SESSION__SECRET",
            );
            Ok(())
        });
    }

    #[test]
    fn methods_default_to_the_configured_providers() {
        Jail::expect_with(|jail| {
            minimal(jail)?;
            let config = load(&ConfigSource::Default).map_err(|e| e.to_string())?;
            assert_eq!(config.auth.methods, [Method::Totp], "nothing configured");
            jail.set_env("AUTHGATE_AUTHY__API_KEY", "0123456789");
            let config = load(&ConfigSource::Default).map_err(|e| e.to_string())?;
            assert_eq!(config.authy.expect("authy").api_key.expose(), "0123456789");
            assert_eq!(config.auth.methods, [Method::Authy]);
            jail.set_env("AUTHGATE_VERIFY__ACCOUNT_SID", ACCOUNT_SID);
            jail.set_env("AUTHGATE_VERIFY__AUTH_TOKEN", "token");
            jail.set_env("AUTHGATE_VERIFY__SERVICE_SID", SERVICE_SID);
            let config = load(&ConfigSource::Default).map_err(|e| e.to_string())?;
            assert_eq!(config.auth.methods, [Method::Authy, Method::Verify]);
            Ok(())
        });
    }

    #[test]
    fn env_methods_are_a_list() {
        Jail::expect_with(|jail| {
            minimal(jail)?;
            jail.set_env("AUTHGATE_AUTHY__API_KEY", "0123456789");
            jail.set_env("AUTHGATE_AUTH__METHODS", "totp, authy");
            let config = load(&ConfigSource::Default).map_err(|e| e.to_string())?;
            assert_eq!(config.auth.methods, [Method::Totp, Method::Authy]);

            jail.set_env("AUTHGATE_AUTH__METHODS", "[\"totp\"]");
            let config = load(&ConfigSource::Default).map_err(|e| e.to_string())?;
            assert_eq!(config.auth.methods, [Method::Totp]);

            // Empty means unset, so the default applies again.
            jail.set_env("AUTHGATE_AUTH__METHODS", "");
            let config = load(&ConfigSource::Default).map_err(|e| e.to_string())?;
            assert_eq!(config.auth.methods, [Method::Authy]);

            // `[]` is a real empty list, which "required" cannot work with.
            jail.set_env("AUTHGATE_AUTH__METHODS", "[]");
            let err = expect_err(&ConfigSource::Default);
            assert_key(&err, "auth.methods", "is empty");

            jail.set_env("AUTHGATE_AUTH__METHODS", "totp,sms");
            let err = expect_err(&ConfigSource::Default);
            assert_key(&err, "auth.methods", "\"sms\" is not a second factor");
            Ok(())
        });
    }

    #[test]
    fn totp_and_verify_load_from_toml() {
        Jail::expect_with(|jail| {
            minimal(jail)?;
            jail.create_file(
                "authgate.toml",
                &format!(
                    r#"
                    [auth]
                    methods = ["verify", "totp"]
                    [totp]
                    issuer = "Example Corp"
                    enrollment = "admin"
                    encryption_key = "{SECRET}"
                    [verify]
                    account_sid = "{ACCOUNT_SID}"
                    auth_token = "token"
                    service_sid = "{SERVICE_SID}"
                    channel = "call"
                    timeout = "3s"
                    "#
                ),
            )?;
            let config = load(&ConfigSource::Default).map_err(|e| e.to_string())?;
            assert_eq!(config.auth.methods, [Method::Verify, Method::Totp]);
            assert_eq!(config.totp.issuer, "Example Corp");
            assert_eq!(config.totp.enrollment, TotpEnrollment::Admin);
            let key = config.totp.encryption_key.expect("encryption_key is set");
            assert_eq!(key.expose(), SECRET);
            let verify = config.verify.expect("verify is configured");
            assert_eq!(verify.api_url.as_str(), "https://verify.twilio.com/");
            assert_eq!(verify.account_sid, ACCOUNT_SID);
            assert_eq!(verify.auth_token.expose(), "token");
            assert_eq!(verify.service_sid, SERVICE_SID);
            assert_eq!(verify.channel, VerifyChannel::Call);
            assert_eq!(verify.timeout.as_secs(), 3);
            Ok(())
        });
    }

    #[test]
    fn totp_and_verify_keys_come_from_env() {
        let old = "an-old-key-that-opens-old-secrets-0123";
        let older = "an-older-key-that-opens-older-ones-0123";
        Jail::expect_with(|jail| {
            minimal(jail)?;
            jail.set_env("AUTHGATE_TOTP__ISSUER", "12345");
            jail.set_env("AUTHGATE_TOTP__ENROLLMENT", "admin");
            jail.set_env(
                "AUTHGATE_TOTP__PREVIOUS_ENCRYPTION_KEYS",
                format!("{old}, {older}"),
            );
            jail.set_env("AUTHGATE_VERIFY__ACCOUNT_SID", ACCOUNT_SID);
            jail.set_env("AUTHGATE_VERIFY__SERVICE_SID", SERVICE_SID);
            jail.create_file("token.txt", "0123456789\n")?;
            jail.set_env("AUTHGATE_VERIFY__AUTH_TOKEN_FILE", "token.txt");
            jail.set_env("AUTHGATE_VERIFY__CHANNEL", "email");
            let config = load(&ConfigSource::Default).map_err(|e| e.to_string())?;
            // Verbatim: the env layer would otherwise read "12345" as a number.
            assert_eq!(config.totp.issuer, "12345");
            assert_eq!(config.totp.enrollment, TotpEnrollment::Admin);
            let previous: Vec<&str> = config
                .totp
                .previous_encryption_keys
                .iter()
                .map(|k| k.expose())
                .collect();
            assert_eq!(previous, [old, older]);
            let verify = config.verify.expect("verify is configured");
            assert_eq!(verify.auth_token.expose(), "0123456789");
            assert_eq!(verify.channel, VerifyChannel::Email);
            assert_eq!(config.auth.methods, [Method::Verify]);

            jail.set_env("AUTHGATE_VERIFY__SERVICE_SID", "");
            let err = expect_err(&ConfigSource::Default);
            assert_key(&err, "verify.service_sid", "missing");
            Ok(())
        });
    }

    #[test]
    fn toml_overrides_defaults() {
        Jail::expect_with(|jail| {
            minimal(jail)?;
            jail.create_file(
                "authgate.toml",
                r#"
                [server]
                listen = "127.0.0.1:9000"
                path_prefix = "/auth/"
                [upstream]
                url = "http://127.0.0.1:3000"
                [session]
                idle_timeout = "5m"
                [log]
                format = "json"
                "#,
            )?;
            let config = load(&ConfigSource::Default).map_err(|e| e.to_string())?;
            assert_eq!(config.server.listen.port(), 9000);
            assert_eq!(config.server.path_prefix, "/auth");
            assert_eq!(config.session.idle_timeout.as_secs(), 300);
            assert_eq!(config.log.format, LogFormat::Json);
            let upstream = config.upstream.expect("upstream.url is set");
            assert_eq!(upstream.url.authority().unwrap().as_str(), "127.0.0.1:3000");
            // Untouched keys keep their defaults.
            assert_eq!(config.session.lifetime.as_secs(), 12 * 3600);
            Ok(())
        });
    }

    #[test]
    fn env_overrides_toml() {
        Jail::expect_with(|jail| {
            minimal(jail)?;
            jail.create_file("authgate.toml", "[server]\nlisten = \"127.0.0.1:9000\"\n")?;
            jail.set_env("AUTHGATE_SERVER__LISTEN", "127.0.0.2:9001");
            let config = load(&ConfigSource::Default).map_err(|e| e.to_string())?;
            assert_eq!(config.server.listen, "127.0.0.2:9001".parse().unwrap());
            Ok(())
        });
    }

    #[test]
    fn explicit_file_is_read_and_must_exist() {
        Jail::expect_with(|jail| {
            minimal(jail)?;
            jail.create_file("other.toml", "[store]\npath = \"elsewhere\"\n")?;
            let config =
                load(&ConfigSource::Explicit("other.toml".into())).map_err(|e| e.to_string())?;
            assert_eq!(config.store.path, Path::new("elsewhere"));

            let err = expect_err(&ConfigSource::Explicit("absent.toml".into()));
            assert_eq!(err.file(), Some(Path::new("absent.toml")));
            assert!(
                err.to_string()
                    .starts_with("config error: absent.toml: cannot read"),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn default_file_is_not_searched_in_parent_directories() {
        Jail::expect_with(|jail| {
            minimal(jail)?;
            jail.create_file("authgate.toml", "[log]\nformat = \"json\"\n")?;
            jail.create_dir("sub")?;
            jail.create_file("sub/users.toml", "")?;
            jail.change_dir("sub")?;
            let config = load(&ConfigSource::Default).map_err(|e| e.to_string())?;
            assert_eq!(config.log.format, LogFormat::Text);
            Ok(())
        });
    }

    #[test]
    fn bad_toml_names_the_file() {
        Jail::expect_with(|jail| {
            minimal(jail)?;
            jail.create_file("authgate.toml", "[server\nlisten = 1")?;
            let err = expect_err(&ConfigSource::Default);
            assert_eq!(err.key(), None, "{err}");
            assert!(
                err.to_string().starts_with("config error: authgate.toml: "),
                "{err}"
            );
            Ok(())
        });
    }

    #[test]
    fn access_rules_load_and_bad_rules_name_their_index() {
        Jail::expect_with(|jail| {
            minimal(jail)?;
            jail.create_file(
                "authgate.toml",
                "[[access_control.rules]]\npath = \"^/public/\"\npolicy = \"bypass\"\n\
                 [[access_control.rules]]\nsubject = \"group:x\"\npolicy = \"bypass\"\n",
            )?;
            let err = expect_err(&ConfigSource::Default);
            assert_key(&err, "access_control.rules[1].subject", "bypass");
            Ok(())
        });
    }

    #[test]
    fn unknown_toml_keys_are_named() {
        let cases = [
            ("[duo]\nikey = \"k\"\n", "duo"),
            ("[server]\nauthelia = true\n", "server.authelia"),
            ("[auth]\nmethod = [\"authy\"]\n", "auth.method"),
            ("[totp]\ndigits = 8\n", "totp.digits"),
        ];
        for (toml, key) in cases {
            Jail::expect_with(|jail| {
                minimal(jail)?;
                jail.create_file("authgate.toml", toml)?;
                let err = expect_err(&ConfigSource::Default);
                assert_key(&err, key, "unknown key");
                assert!(err.to_string().contains("authgate.toml"), "{err}");
                Ok(())
            });
        }
    }

    #[test]
    fn wrong_toml_type_names_the_key() {
        Jail::expect_with(|jail| {
            minimal(jail)?;
            jail.create_file("authgate.toml", "[server]\nmax_connections = \"many\"\n")?;
            let err = expect_err(&ConfigSource::Default);
            assert_key(&err, "server.max_connections", "many");
            Ok(())
        });
        Jail::expect_with(|jail| {
            jail.create_file("users.toml", "")?;
            jail.create_file("authgate.toml", "[session]\nsecret = 12345\n")?;
            let err = expect_err(&ConfigSource::Default);
            assert_key(&err, "session.secret", "expected a string");
            Ok(())
        });
    }

    #[test]
    fn unknown_env_vars_are_ignored() {
        Jail::expect_with(|jail| {
            minimal(jail)?;
            jail.set_env("AUTHGATE_SESION__SECRET", "typo");
            jail.set_env("AUTHGATE_AUTHY__APIKEY", "123");
            jail.set_env("AUTHGATE_SERVER_LISTEN", "0.0.0.0:1");
            let (_, unknown) = KnownEnv::new().read();
            for name in [
                "AUTHGATE_SESION__SECRET",
                "AUTHGATE_AUTHY__APIKEY",
                "AUTHGATE_SERVER_LISTEN",
            ] {
                assert!(
                    unknown.iter().any(|u| u == name),
                    "{name} not in {unknown:?}"
                );
            }
            assert!(!unknown.iter().any(|u| u == "AUTHGATE_SESSION__SECRET"));
            let config = load(&ConfigSource::Default).map_err(|e| e.to_string())?;
            assert_eq!(config.server.listen.port(), 8080);
            Ok(())
        });
    }

    #[test]
    fn env_strings_are_taken_verbatim() {
        // figment alone would read these as an integer and a float.
        let digits = "0123456789012345678901234567890123456789";
        Jail::expect_with(|jail| {
            minimal(jail)?;
            jail.set_env("AUTHGATE_SESSION__SECRET", digits);
            jail.set_env("AUTHGATE_SESSION__COOKIE_NAME", "12345");
            let config = load(&ConfigSource::Default).map_err(|e| e.to_string())?;
            assert_eq!(config.session.secret.expose(), digits);
            assert_eq!(config.session.cookie_name, "12345");
            Ok(())
        });
    }

    #[test]
    fn env_numbers_and_lists_are_typed() {
        Jail::expect_with(|jail| {
            minimal(jail)?;
            jail.set_env("AUTHGATE_SERVER__MAX_CONNECTIONS", "10");
            jail.set_env("AUTHGATE_AUTH__MAX_CONCURRENT_HASHES", "3");
            jail.set_env(
                "AUTHGATE_SERVER__TRUSTED_PROXIES",
                "10.0.0.0/8, 192.168.1.1",
            );
            let config = load(&ConfigSource::Default).map_err(|e| e.to_string())?;
            assert_eq!(config.server.max_connections, 10);
            assert_eq!(config.auth.max_concurrent_hashes, 3);
            let proxies: Vec<String> = config
                .server
                .trusted_proxies
                .iter()
                .map(|n| n.to_string())
                .collect();
            assert_eq!(proxies, ["10.0.0.0/8", "192.168.1.1/32"]);

            jail.set_env("AUTHGATE_SERVER__TRUSTED_PROXIES", "[\"10.1.0.0/16\"]");
            let config = load(&ConfigSource::Default).map_err(|e| e.to_string())?;
            assert_eq!(config.server.trusted_proxies[0].to_string(), "10.1.0.0/16");
            Ok(())
        });
    }

    #[test]
    fn bad_env_value_names_key_and_variable() {
        Jail::expect_with(|jail| {
            minimal(jail)?;
            jail.set_env("AUTHGATE_SERVER__MAX_HEADER_BYTES", "16k");
            let err = expect_err(&ConfigSource::Default);
            assert_key(
                &err,
                "server.max_header_bytes",
                "AUTHGATE_SERVER__MAX_HEADER_BYTES",
            );

            jail.set_env("AUTHGATE_SERVER__MAX_HEADER_BYTES", "1");
            jail.set_env("AUTHGATE_AUTH__MAX_CONCURRENT_HASHES", "two");
            let err = expect_err(&ConfigSource::Default);
            assert_key(&err, "auth.max_concurrent_hashes", "two");
            Ok(())
        });
    }

    #[test]
    fn empty_env_value_unsets_an_optional_key() {
        Jail::expect_with(|jail| {
            minimal(jail)?;
            jail.create_file(
                "authgate.toml",
                "[upstream]\nurl = \"http://127.0.0.1:3000\"\n",
            )?;
            jail.set_env("AUTHGATE_UPSTREAM__URL", "");
            let config = load(&ConfigSource::Default).map_err(|e| e.to_string())?;
            assert!(config.upstream.is_none());
            Ok(())
        });
    }

    #[test]
    fn secret_file_is_read_without_its_newline() {
        Jail::expect_with(|jail| {
            minimal(jail)?;
            jail.set_env("AUTHGATE_SESSION__SECRET", "");
            jail.create_file("secret.txt", &format!("{SECRET}\n"))?;
            jail.set_env("AUTHGATE_SESSION__SECRET_FILE", "secret.txt");
            let config = load(&ConfigSource::Default).map_err(|e| e.to_string())?;
            assert_eq!(config.session.secret.expose(), SECRET);
            Ok(())
        });
    }

    #[test]
    fn secret_file_errors_name_the_key() {
        Jail::expect_with(|jail| {
            minimal(jail)?;
            jail.set_env("AUTHGATE_SESSION__SECRET_FILE", "nowhere.txt");
            let err = expect_err(&ConfigSource::Default);
            assert_key(&err, "session.secret_file", "only one");

            jail.set_env("AUTHGATE_SESSION__SECRET", "");
            let err = expect_err(&ConfigSource::Default);
            assert_key(&err, "session.secret_file", "nowhere.txt");
            Ok(())
        });
    }

    #[test]
    fn masked_config_hides_the_secret() {
        Jail::expect_with(|jail| {
            minimal(jail)?;
            let text =
                effective_config_masked(&ConfigSource::Default).map_err(|e| e.to_string())?;
            assert!(!text.contains(SECRET), "{text}");
            assert!(text.contains("secret = \"********\""), "{text}");
            assert!(text.contains("listen = \"127.0.0.1:8080\""), "{text}");
            // What it prints is valid config again.
            let reparsed: RawConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
            assert_eq!(reparsed.server.listen, "127.0.0.1:8080");
            Ok(())
        });
    }

    #[test]
    fn masked_config_hides_every_secret() {
        let secrets = [
            "totp-key-0123456789abcdef0123456789ab",
            "old-totp-key-0123456789abcdef01234567",
            "twilio-auth-token-value",
            "authy-api-key-value",
        ];
        Jail::expect_with(|jail| {
            minimal(jail)?;
            jail.set_env("AUTHGATE_TOTP__ENCRYPTION_KEY", secrets[0]);
            jail.set_env("AUTHGATE_TOTP__PREVIOUS_ENCRYPTION_KEYS", secrets[1]);
            jail.set_env("AUTHGATE_VERIFY__ACCOUNT_SID", ACCOUNT_SID);
            jail.set_env("AUTHGATE_VERIFY__AUTH_TOKEN", secrets[2]);
            jail.set_env("AUTHGATE_VERIFY__SERVICE_SID", SERVICE_SID);
            jail.set_env("AUTHGATE_AUTHY__API_KEY", secrets[3]);
            let text =
                effective_config_masked(&ConfigSource::Default).map_err(|e| e.to_string())?;
            for secret in secrets {
                assert!(!text.contains(secret), "{secret} shown:\n{text}");
            }
            let reparsed: RawConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
            assert_eq!(reparsed.totp.encryption_key.as_deref(), Some(MASK));
            assert_eq!(reparsed.totp.previous_encryption_keys, [MASK]);
            assert_eq!(reparsed.verify.auth_token.as_deref(), Some(MASK));
            assert_eq!(reparsed.authy.api_key.as_deref(), Some(MASK));
            // Identifiers are not secrets, and help the operator check.
            assert_eq!(reparsed.verify.account_sid.as_deref(), Some(ACCOUNT_SID));
            Ok(())
        });
    }

    #[test]
    fn masked_config_fails_like_load() {
        Jail::expect_with(|jail| {
            minimal(jail)?;
            jail.set_env("AUTHGATE_SERVER__LISTEN", "nonsense");
            let err = effective_config_masked(&ConfigSource::Default).unwrap_err();
            assert_key(&err, "server.listen", "nonsense");
            Ok(())
        });
    }

    #[test]
    fn users_file_path_needs_no_valid_config() {
        Jail::expect_with(|jail| {
            // No secret, no users file, second factor left at "required".
            assert_eq!(
                users_file_path(&ConfigSource::Default).map_err(|e| e.to_string())?,
                Path::new("users.toml")
            );
            jail.create_file("authgate.toml", "[users]\nfile = \"people.toml\"\n")?;
            assert_eq!(
                users_file_path(&ConfigSource::Default).map_err(|e| e.to_string())?,
                Path::new("people.toml")
            );
            jail.set_env("AUTHGATE_USERS__FILE", "/srv/users.toml");
            assert_eq!(
                users_file_path(&ConfigSource::Default).map_err(|e| e.to_string())?,
                Path::new("/srv/users.toml")
            );
            let err = users_file_path(&ConfigSource::Explicit("absent.toml".into())).unwrap_err();
            assert_eq!(err.file(), Some(Path::new("absent.toml")));
            Ok(())
        });
    }

    /// Every field of the raw config, optional ones included, must be
    /// settable from the environment; the reference is a config with every
    /// option filled in, flattened to dotted keys.
    #[test]
    fn every_raw_field_is_a_known_env_key() {
        let mut full = RawConfig::default();
        full.upstream.url = Some("http://x".into());
        full.session.cookie_domain = Some("example.com".into());
        full.session.secret = Some("s".into());
        full.session.secret_file = Some("f".into());
        full.auth.max_concurrent_hashes = Some(1);
        full.authy.api_key = Some("k".into());
        full.authy.api_key_file = Some("f".into());
        full.authy.callback_url = Some("http://x/cb".into());
        full.server.tls_cert = Some("cert.pem".into());
        full.server.tls_key = Some("key.pem".into());
        full.server.redirect_http = Some("127.0.0.1:80".into());
        full.upstream.ca_file = Some("ca.pem".into());
        full.auth.methods = Some(vec!["totp".into()]);
        full.totp.encryption_key = Some("k".into());
        full.webauthn.rp_id = Some("example.com".into());
        full.totp.encryption_key_file = Some("f".into());
        full.verify.account_sid = Some("AC".into());
        full.verify.auth_token = Some("t".into());
        full.verify.auth_token_file = Some("f".into());
        full.verify.service_sid = Some("VA".into());
        full.store.redis.url = Some("redis://x".into());
        full.store.redis.username = Some("u".into());
        full.store.redis.password = Some("p".into());
        full.store.redis.password_file = Some("f".into());
        full.store.redis.sentinel.master_name = Some("m".into());
        full.store.redis.sentinel.password = Some("p".into());
        full.store.redis.sentinel.password_file = Some("f".into());
        let table = toml::Table::try_from(&full).expect("serializes");
        let mut expected = BTreeSet::new();
        flatten(String::new(), &table, &mut expected);
        let known: BTreeSet<String> = known_keys().into_keys().collect();
        assert_eq!(known, expected);
        assert_eq!(known_keys()["session.secret"], EnvKind::Optional);
        assert_eq!(known_keys()["server.listen"], EnvKind::Text);
        assert_eq!(known_keys()["server.trusted_proxies"], EnvKind::List);
        assert_eq!(known_keys()["server.max_connections"], EnvKind::Typed);
        // Optional, so that an empty variable leaves the default list; the
        // field's deserializer splits the text.
        assert_eq!(known_keys()["auth.methods"], EnvKind::Optional);
        assert_eq!(known_keys()["totp.previous_encryption_keys"], EnvKind::List);
        assert_eq!(known_keys()["store.redis.url"], EnvKind::Optional);
        assert_eq!(known_keys()["store.redis.sentinel.nodes"], EnvKind::List);
        assert_eq!(known_keys()["store.redis.min_replicas_ack"], EnvKind::Typed);
    }

    /// The dotted keys of the leaves (values that are not tables).
    fn flatten(prefix: String, table: &toml::Table, keys: &mut BTreeSet<String>) {
        for (name, value) in table {
            let key = match prefix.is_empty() {
                true => name.clone(),
                false => format!("{prefix}.{name}"),
            };
            match value.as_table() {
                Some(inner) => flatten(key, inner, keys),
                None => {
                    keys.insert(key);
                }
            }
        }
    }

    #[test]
    fn redis_keys_come_from_the_environment_and_passwords_are_masked() {
        let passwords = ["redis-password-value", "sentinel-password-value"];
        Jail::expect_with(|jail| {
            minimal(jail)?;
            jail.create_file(
                "authgate.toml",
                "[store]\nbackend = \"redis\"\n[store.redis]\nurl = \"redis://file:6379\"\n",
            )?;
            jail.set_env("AUTHGATE_STORE__REDIS__URL", "rediss://env.example:6380/1");
            jail.set_env("AUTHGATE_STORE__REDIS__PASSWORD", passwords[0]);
            jail.set_env("AUTHGATE_STORE__REDIS__KEY_PREFIX", "gw1:");
            jail.set_env("AUTHGATE_STORE__REDIS__MIN_REPLICAS_ACK", "2");
            jail.set_env("AUTHGATE_STORE__REDIS__SENTINEL__MASTER_NAME", "main");
            jail.set_env(
                "AUTHGATE_STORE__REDIS__SENTINEL__NODES",
                "s1:26379, s2:26379",
            );
            jail.set_env("AUTHGATE_STORE__REDIS__SENTINEL__PASSWORD", passwords[1]);
            let config = load(&ConfigSource::Default).map_err(|e| e.to_string())?;
            let crate::config::StoreBackend::Redis(redis) = config.store.backend else {
                return Err("the redis backend expected".into());
            };
            assert_eq!(redis.url, "rediss://env.example:6380/1");
            assert_eq!(redis.password.unwrap().expose(), passwords[0]);
            assert_eq!(redis.key_prefix, "gw1:");
            assert_eq!(redis.min_replicas_ack, 2);
            let sentinel = redis.sentinel.expect("sentinel from the environment");
            assert_eq!(sentinel.nodes, ["s1:26379", "s2:26379"]);
            assert_eq!(sentinel.password.unwrap().expose(), passwords[1]);

            let text =
                effective_config_masked(&ConfigSource::Default).map_err(|e| e.to_string())?;
            for password in passwords {
                assert!(!text.contains(password), "{password} shown:\n{text}");
            }
            let reparsed: RawConfig = toml::from_str(&text).map_err(|e| e.to_string())?;
            assert_eq!(reparsed.store.redis.password.as_deref(), Some(MASK));
            assert_eq!(
                reparsed.store.redis.sentinel.password.as_deref(),
                Some(MASK)
            );
            assert_eq!(
                reparsed.store.redis.sentinel.master_name.as_deref(),
                Some("main")
            );

            jail.set_env("AUTHGATE_STORE__REDIS__MIN_REPLICAS_ACK", "some");
            let err = expect_err(&ConfigSource::Default);
            assert_key(&err, "store.redis.min_replicas_ack", "some");
            Ok(())
        });
    }

    #[test]
    fn store_copy_reads_the_redis_settings_whatever_the_backend() {
        Jail::expect_with(|jail| {
            minimal(jail)?;
            jail.set_env("AUTHGATE_STORE__REDIS__KEY_PREFIX", "copy:");
            let err = load_for_store_copy(&ConfigSource::Default, None).unwrap_err();
            assert_key(&err, "store.redis.url", "missing");
            let config = load_for_store_copy(&ConfigSource::Default, Some("redis://h:1"))
                .map_err(|e| e.to_string())?;
            let crate::config::StoreBackend::Redis(redis) = config.store.backend else {
                return Err("the redis backend expected".into());
            };
            assert_eq!(
                (redis.url.as_str(), redis.key_prefix.as_str()),
                ("redis://h:1", "copy:")
            );
            Ok(())
        });
    }

    #[test]
    fn hsts_is_off_by_default_and_a_non_bool_names_the_key() {
        Jail::expect_with(|jail| {
            minimal(jail)?;
            let config = load(&ConfigSource::Default).map_err(|e| e.to_string())?;
            assert!(!config.server.hsts);
            jail.create_file("authgate.toml", "[server]\nhsts = \"yes\"\n")?;
            let err = expect_err(&ConfigSource::Default);
            assert_key(&err, "server.hsts", "yes");
            jail.create_file("authgate.toml", "[server]\nhsts = true\n")?;
            let config = load(&ConfigSource::Default).map_err(|e| e.to_string())?;
            assert!(config.server.hsts);
            jail.set_env("AUTHGATE_SERVER__HSTS", "maybe");
            let err = expect_err(&ConfigSource::Default);
            assert_key(&err, "server.hsts", "maybe");
            Ok(())
        });
    }

    #[test]
    fn the_admin_socket_is_off_by_default_and_must_be_an_absolute_path() {
        Jail::expect_with(|jail| {
            minimal(jail)?;
            let config = load(&ConfigSource::Default).map_err(|e| e.to_string())?;
            assert_eq!(config.server.admin_socket, None);
            jail.create_file("authgate.toml", "[server]\nadmin_socket = \"admin.sock\"\n")?;
            let err = expect_err(&ConfigSource::Default);
            assert_key(&err, "server.admin_socket", "admin.sock");
            jail.set_env("AUTHGATE_SERVER__ADMIN_SOCKET", "/run/authgate/admin.sock");
            let config = load(&ConfigSource::Default).map_err(|e| e.to_string())?;
            assert_eq!(
                config.server.admin_socket.as_deref(),
                Some(Path::new("/run/authgate/admin.sock"))
            );
            Ok(())
        });
    }
}
