//! API credentials: each has scopes, is stored only as a SHA-256 hash, and is rate-limited.
//!
//! Credentials live in a JSON file managed with `coordinator credential add|revoke|list`. The
//! coordinator re-reads the file whenever it changes, so adding or revoking takes effect on the
//! next request without a restart. A file that does not parse disables every credential in it
//! (fail closed) until it is fixed. Tokens in `api_token_sha256` of the config hold every scope;
//! a client certificate named in `api_client_cert_names` holds `submit` and `read`.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::Mutex,
    time::{Instant, SystemTime},
};

use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a credential may do.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Serialize,
    Deserialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Submit sign requests (the protocol or exchange).
    Submit,
    /// Carry approvals, vetoes, freezes and unfreezes (people's signed orders).
    Approve,
    /// Key ceremonies and policy bundles (operators).
    Operate,
    /// Read keys, requests, nodes, policy and metrics.
    Read,
}

impl Scope {
    /// Lowercase name.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Submit => "submit",
            Scope::Approve => "approve",
            Scope::Operate => "operate",
            Scope::Read => "read",
        }
    }
}

/// The id of the credential that authenticated a request (a request extension).
#[derive(Debug, Clone)]
pub struct CredentialId(pub String);

/// The scope a route needs.
pub fn required_scope(method: &axum::http::Method, path: &str) -> Scope {
    if method == axum::http::Method::GET {
        return Scope::Read;
    }
    if path == "/v1/sign-requests" {
        return Scope::Submit;
    }
    if path == "/v1/keys"
        || path == "/v1/policy"
        || path.ends_with("/unlock")
        || path.ends_with("/presignatures")
        || path.ends_with("/accounts")
        || path.ends_with("/reserves")
        || path.ends_with("/refresh")
        || path.ends_with("/reshare")
    {
        return Scope::Operate;
    }
    Scope::Approve
}

/// One credential in the file.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    /// Name, e.g. `exchange-hot` (shown in logs and the audit log).
    pub id: String,
    /// Hex SHA-256 of the token.
    pub sha256: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// Requests per second (burst of the same size); the configured default if absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_sec: Option<u32>,
    /// When it was created (unix seconds).
    pub created_at: u64,
}

/// Credential-file errors.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Reading or writing the file.
    #[error("credentials file `{0}`: {1}")]
    Io(String, String),
    /// The file does not parse.
    #[error("credentials file `{0}` is malformed: {1}")]
    Malformed(String, String),
    /// Bad argument.
    #[error("{0}")]
    Invalid(String),
}

/// Reads a credentials file; a missing file is empty.
pub fn load(path: &Path) -> Result<Vec<Credential>, AuthError> {
    let name = path.display().to_string();
    match std::fs::read_to_string(path) {
        Ok(text) => {
            serde_json::from_str(&text).map_err(|e| AuthError::Malformed(name, e.to_string()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(AuthError::Io(name, e.to_string())),
    }
}

fn save(path: &Path, creds: &[Credential]) -> Result<(), AuthError> {
    let name = path.display().to_string();
    let text = serde_json::to_string_pretty(creds)
        .map_err(|e| AuthError::Io(name.clone(), e.to_string()))?;
    // Write a sibling file, then rename: the coordinator never reads a half-written file.
    let tmp = path.with_extension(format!("json.{}.tmp", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let write = || -> std::io::Result<()> {
        use std::io::Write;
        let mut f = options.open(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| AuthError::Io(name, e.to_string()))
}

fn sha256_hex(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Holds an exclusive lock on `<file>.lock` while a command reads, changes and writes the file,
/// so that two concurrent commands cannot lose each other's change.
fn locked<T>(path: &Path, f: impl FnOnce() -> Result<T, AuthError>) -> Result<T, AuthError> {
    let lock_path = path.with_extension("json.lock");
    let io = |e: std::io::Error| AuthError::Io(lock_path.display().to_string(), e.to_string());
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io)?;
    file.lock().map_err(io)?;
    let out = f();
    let _ = file.unlock();
    out
}

/// Adds a credential and returns its token (shown once, never stored).
pub fn add(
    path: &Path,
    id: &str,
    scopes: &[Scope],
    rate_per_sec: Option<u32>,
) -> Result<String, AuthError> {
    if !proto::api::valid_key_id(id) {
        return Err(AuthError::Invalid(format!(
            "credential id `{id}` must be 1-64 characters of [A-Za-z0-9._-]"
        )));
    }
    if scopes.is_empty() {
        return Err(AuthError::Invalid("give at least one `--scope`".into()));
    }
    locked(path, || add_locked(path, id, scopes, rate_per_sec))
}

fn add_locked(
    path: &Path,
    id: &str,
    scopes: &[Scope],
    rate_per_sec: Option<u32>,
) -> Result<String, AuthError> {
    let mut creds = load(path)?;
    if creds.iter().any(|c| c.id == id) {
        return Err(AuthError::Invalid(format!(
            "credential `{id}` exists; revoke it first"
        )));
    }
    let mut raw = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut raw);
    let token = hex::encode(raw);
    let mut scopes = scopes.to_vec();
    scopes.sort();
    scopes.dedup();
    creds.push(Credential {
        id: id.to_string(),
        sha256: sha256_hex(&token),
        scopes,
        rate_per_sec,
        created_at: crate::control::unix_now(),
    });
    save(path, &creds)?;
    Ok(token)
}

/// Removes a credential; `false` if there was none with that id.
pub fn revoke(path: &Path, id: &str) -> Result<bool, AuthError> {
    locked(path, || revoke_locked(path, id))
}

fn revoke_locked(path: &Path, id: &str) -> Result<bool, AuthError> {
    let mut creds = load(path)?;
    let before = creds.len();
    creds.retain(|c| c.id != id);
    if creds.len() == before {
        return Ok(false);
    }
    save(path, &creds)?;
    Ok(true)
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Credential id (`config-token`, `cert:<name>` or the file's id).
    pub id: String,
    scopes: Vec<Scope>,
    rate: u32,
}

/// The answer of [`Authenticator::check`].
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Go ahead.
    Allowed(String),
    /// No credential.
    Missing,
    /// Unknown or revoked token.
    Invalid,
    /// Known, but without the scope.
    Forbidden {
        /// Credential id.
        id: String,
        /// The scope it lacks.
        scope: Scope,
    },
    /// Over its rate; retry after this many seconds.
    Limited {
        /// Credential id.
        id: String,
        /// Seconds.
        retry_after: u64,
    },
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

type FileStamp = Option<(SystemTime, u64)>;

/// Checks credentials, scopes and rates.
pub struct Authenticator {
    config_tokens: Vec<[u8; 32]>,
    cert_names: Vec<String>,
    file: Option<PathBuf>,
    cache: Mutex<(FileStamp, Vec<Credential>)>,
    buckets: Mutex<HashMap<String, Bucket>>,
    default_rate: u32,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Authenticator {
    /// Creates the authenticator.
    pub fn new(
        config_tokens: Vec<[u8; 32]>,
        cert_names: Vec<String>,
        file: Option<PathBuf>,
        default_rate: u32,
    ) -> Self {
        Self {
            config_tokens,
            cert_names,
            file,
            cache: Mutex::new((None, Vec::new())),
            buckets: Mutex::new(HashMap::new()),
            default_rate: default_rate.max(1),
        }
    }

    /// The file's credentials, re-read if it changed since the last request.
    fn file_credentials(&self) -> Vec<Credential> {
        let Some(path) = &self.file else {
            return Vec::new();
        };
        let stamp = std::fs::metadata(path)
            .ok()
            .and_then(|m| Some((m.modified().ok()?, m.len())));
        let mut cache = lock(&self.cache);
        if cache.0 != stamp || stamp.is_none() {
            let creds = load(path).unwrap_or_else(|e| {
                tracing::error!(error = %e, "credentials file unusable; its credentials are disabled until it is fixed");
                Vec::new()
            });
            *cache = (stamp, creds);
        }
        cache.1.clone()
    }

    fn principal(&self, token: Option<&str>, cert: Option<&str>) -> Option<Option<Principal>> {
        if let Some(name) = cert {
            if self.cert_names.iter().any(|n| n == name) {
                return Some(Some(Principal {
                    id: format!("cert:{name}"),
                    scopes: vec![Scope::Submit, Scope::Read],
                    rate: self.default_rate,
                }));
            }
        }
        let token = token?;
        let h: [u8; 32] = Sha256::digest(token.trim().as_bytes()).into();
        if self.config_tokens.iter().any(|k| constant_time_eq(k, &h)) {
            return Some(Some(Principal {
                id: "config-token".into(),
                scopes: vec![Scope::Submit, Scope::Approve, Scope::Operate, Scope::Read],
                rate: self.default_rate,
            }));
        }
        let hex_h = hex::encode(h);
        let found = self
            .file_credentials()
            .into_iter()
            .find(|c| constant_time_eq(c.sha256.as_bytes(), hex_h.as_bytes()));
        Some(found.map(|c| Principal {
            id: c.id,
            scopes: c.scopes,
            rate: c.rate_per_sec.unwrap_or(self.default_rate).max(1),
        }))
    }

    /// Authenticates, checks the scope, and takes one request from the credential's rate.
    pub fn check(&self, token: Option<&str>, cert: Option<&str>, need: Scope) -> Outcome {
        let p = match self.principal(token, cert) {
            None => return Outcome::Missing,
            Some(None) => return Outcome::Invalid,
            Some(Some(p)) => p,
        };
        if !p.scopes.contains(&need) {
            return Outcome::Forbidden {
                id: p.id,
                scope: need,
            };
        }
        let now = Instant::now();
        let mut buckets = lock(&self.buckets);
        let rate = f64::from(p.rate);
        let b = buckets.entry(p.id.clone()).or_insert(Bucket {
            tokens: rate,
            at: now,
        });
        b.tokens = (b.tokens + now.duration_since(b.at).as_secs_f64() * rate).min(rate);
        b.at = now;
        if b.tokens < 1.0 {
            let wait = ((1.0 - b.tokens) / rate).ceil().max(1.0);
            return Outcome::Limited {
                id: p.id,
                retry_after: wait as u64,
            };
        }
        b.tokens -= 1.0;
        Outcome::Allowed(p.id)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn scopes_rates_and_revocation_apply_without_restart() {
        let dir = std::env::temp_dir().join(format!("auth-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("credentials.json");
        let _ = std::fs::remove_file(&file);
        let auth = Authenticator::new(vec![], vec![], Some(file.clone()), 1000);
        let reader = add(&file, "reader", &[Scope::Read], Some(2)).unwrap();
        assert_eq!(
            auth.check(Some(&reader), None, Scope::Read),
            Outcome::Allowed("reader".into())
        );
        assert_eq!(
            auth.check(Some(&reader), None, Scope::Submit),
            Outcome::Forbidden {
                id: "reader".into(),
                scope: Scope::Submit
            }
        );
        // Rate 2/s: the burst is spent after two allowed reads (one above, one here).
        assert!(matches!(
            auth.check(Some(&reader), None, Scope::Read),
            Outcome::Allowed(_)
        ));
        assert!(matches!(
            auth.check(Some(&reader), None, Scope::Read),
            Outcome::Limited { retry_after: 1, .. }
        ));
        assert_eq!(auth.check(None, None, Scope::Read), Outcome::Missing);
        assert_eq!(
            auth.check(Some("nope"), None, Scope::Read),
            Outcome::Invalid
        );
        assert!(revoke(&file, "reader").unwrap());
        assert_eq!(
            auth.check(Some(&reader), None, Scope::Read),
            Outcome::Invalid
        );
        // A broken file disables its credentials (fail closed).
        let w = add(&file, "writer", &[Scope::Submit], None).unwrap();
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(!text.contains(&w), "tokens are never stored");
        assert!(matches!(
            auth.check(Some(&w), None, Scope::Submit),
            Outcome::Allowed(_)
        ));
        std::fs::write(&file, b"{not json").unwrap();
        assert_eq!(auth.check(Some(&w), None, Scope::Submit), Outcome::Invalid);
        let _ = std::fs::remove_dir_all(dir);
    }
}
