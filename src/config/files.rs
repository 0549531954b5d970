//! Checks of the files a config names, shared by every section.

use std::path::{Path, PathBuf};

use super::ConfigError;

/// A file that opens now (`server.tls_cert`, `portal.logo_file`, …): the
/// check happens at start, so a typo fails there, naming the key.
pub(super) fn readable_file(key: &str, value: &str) -> Result<PathBuf, ConfigError> {
    let path = Path::new(value);
    match std::fs::File::open(path).and_then(|f| f.metadata()) {
        Ok(meta) if meta.is_file() => Ok(path.to_owned()),
        Ok(_) => Err(ConfigError::at(
            key,
            format!("{value:?} is not a regular file"),
        )),
        Err(err) => Err(ConfigError::at(
            key,
            format!("{value:?} cannot be read: {err}"),
        )),
    }
}
