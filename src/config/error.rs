//! Config errors. Every one names what the operator must fix: the dotted key
//! (`session.secret`), or the file when the file itself is the problem.

use std::path::{Path, PathBuf};

use figment::error::Kind;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A key has a bad, missing or unknown value.
    #[error("config error: {key}: {problem}")]
    Key { key: String, problem: String },
    /// The config file cannot be read or is not valid TOML.
    #[error("config error: {}: {problem}", path.display())]
    File { path: PathBuf, problem: String },
}

impl ConfigError {
    pub(super) fn at(key: impl Into<String>, problem: impl Into<String>) -> Self {
        ConfigError::Key {
            key: key.into(),
            problem: problem.into(),
        }
    }

    pub(super) fn in_file(path: &Path, problem: impl Into<String>) -> Self {
        ConfigError::File {
            path: path.to_owned(),
            problem: problem.into(),
        }
    }

    /// The dotted key at fault, `None` when the file as a whole is.
    pub fn key(&self) -> Option<&str> {
        match self {
            ConfigError::Key { key, .. } => Some(key),
            ConfigError::File { .. } => None,
        }
    }

    /// The config file at fault, when the error is about the file itself.
    pub fn file(&self) -> Option<&Path> {
        match self {
            ConfigError::Key { .. } => None,
            ConfigError::File { path, .. } => Some(path),
        }
    }

    /// Keeps only the first of figment's chained errors: the operator fixes
    /// one thing at a time, and the first is the one serde stopped at.
    pub(super) fn from_figment(err: figment::Error) -> Self {
        let file = err
            .metadata
            .as_ref()
            .and_then(|md| md.source.as_ref())
            .and_then(|src| src.file_path())
            .map(Path::to_owned);
        let mut key = dotted_key(&err.path);
        let problem = match &err.kind {
            Kind::UnknownField(field, known) => {
                // figment usually has the field in the path already.
                if err.path.last() != Some(field) {
                    push_key(&mut key, field);
                }
                unknown_key(known)
            }
            kind => kind.to_string().trim_end().to_owned(),
        };
        match (key.is_empty(), file) {
            (true, Some(path)) => ConfigError::in_file(&path, format!("cannot load: {problem}")),
            (true, None) => ConfigError::at("(config)", problem),
            (false, _) => ConfigError::at(key, with_origin(problem, &err)),
        }
    }
}

/// Refused rather than ignored: a misspelt key, or a rule or provider this
/// build does not implement, must not look as if it were in effect.
fn unknown_key(known: &[&str]) -> String {
    let mut problem = "unknown key (misspelt, or not implemented in this build)".to_owned();
    if !known.is_empty() {
        problem.push_str(&format!("; known keys here: {}", known.join(", ")));
    }
    problem
}

fn push_key(key: &mut String, part: &str) {
    if !key.is_empty() {
        key.push('.');
    }
    key.push_str(part);
}

/// figment may prefix a path with the profile it was read from; the
/// operator never sees profiles, only sections.
fn dotted_key(path: &[String]) -> String {
    let parts = match path.split_first() {
        Some((first, rest)) if first == "default" => rest,
        _ => path,
    };
    parts.join(".")
}

/// Says where a bad value came from: the file, or which env variable.
fn with_origin(problem: String, err: &figment::Error) -> String {
    let Some(md) = &err.metadata else {
        return problem;
    };
    match &md.source {
        Some(source @ figment::Source::File(_)) => format!("{problem} (in {} {source})", md.name),
        // Built-in defaults: nothing the operator wrote.
        Some(_) => problem,
        None => {
            let profile = err.profile.clone().unwrap_or_default();
            let path: Vec<&str> = err.path.iter().map(String::as_str).collect();
            format!(
                "{problem} (in {} {})",
                md.name,
                md.interpolate(&profile, &path)
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_names_the_key() {
        let err = ConfigError::at("session.secret", "missing");
        assert_eq!(err.to_string(), "config error: session.secret: missing");
        assert_eq!(err.key(), Some("session.secret"));
        assert!(err.file().is_none());
    }

    #[test]
    fn display_names_the_file() {
        let err = ConfigError::in_file(Path::new("/etc/authgate.toml"), "cannot read");
        assert_eq!(
            err.to_string(),
            "config error: /etc/authgate.toml: cannot read"
        );
        assert_eq!(err.key(), None);
        assert_eq!(err.file(), Some(Path::new("/etc/authgate.toml")));
    }

    #[test]
    fn profile_prefix_is_stripped() {
        let path = vec![
            "default".to_owned(),
            "server".to_owned(),
            "listen".to_owned(),
        ];
        assert_eq!(dotted_key(&path), "server.listen");
    }

    #[test]
    fn unknown_field_is_not_named_twice() {
        let mut err = figment::Error::from(Kind::UnknownField("authy".into(), &[]));
        err.path = vec!["authy".into()];
        assert_eq!(ConfigError::from_figment(err).key(), Some("authy"));
    }

    #[test]
    fn unknown_field_names_the_full_key() {
        let mut err = figment::Error::from(Kind::UnknownField("rules".into(), &[]));
        err.path = vec!["access_control".into()];
        let err = ConfigError::from_figment(err);
        assert_eq!(err.key(), Some("access_control.rules"));
        assert!(err.to_string().contains("unknown key"), "{err}");
    }
}
