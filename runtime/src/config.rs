//! Config files of the daemons: TOML, with relative paths resolved against the file's directory.

use std::path::{Path, PathBuf};

use serde::de::DeserializeOwned;

/// A config file that does not load, naming the file.
#[derive(Debug, thiserror::Error)]
#[error("config `{path}`: {msg}")]
pub struct ConfigError {
    path: String,
    msg: String,
}

impl ConfigError {
    /// An error about the file at `path`.
    pub fn new(path: &Path, msg: impl Into<String>) -> Self {
        Self {
            path: path.display().to_string(),
            msg: msg.into(),
        }
    }
}

/// Reads a TOML file. Relative paths in `paths(&mut cfg)` are resolved against the file's
/// directory, so a config works from any working directory.
pub fn load_toml<T: DeserializeOwned>(
    path: &Path,
    paths: impl FnOnce(&mut T) -> Vec<&mut PathBuf>,
) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|e| ConfigError::new(path, e.to_string()))?;
    let mut cfg: T = toml::from_str(&text).map_err(|e| ConfigError::new(path, e.to_string()))?;
    let base = path.parent().unwrap_or(Path::new("."));
    for p in paths(&mut cfg) {
        if p.is_relative() {
            *p = base.join(&*p);
        }
    }
    Ok(cfg)
}
