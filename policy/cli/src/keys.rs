//! Key files: Ed25519 secrets as hex, written with mode 0600 and never printed.

use std::fmt;
use std::fs;
use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context, Result};
use ed25519_dalek::SigningKey;
use rand::RngCore;
use zeroize::Zeroizing;

/// An officer's or approver's secret key. No derived `Debug`; zeroized on drop by `SigningKey`.
pub struct SecretKey(SigningKey);

impl fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretKey(<redacted>)")
    }
}

impl SecretKey {
    /// The signing key, for the few places that sign.
    pub fn expose_secret(&self) -> &SigningKey {
        &self.0
    }

    /// The public half as hex.
    pub fn public_hex(&self) -> String {
        hex::encode(self.0.verifying_key().to_bytes())
    }
}

/// Generates a key and writes it to a new file with mode 0600.
pub fn generate(out: &Path) -> Result<SecretKey> {
    let mut seed = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng.fill_bytes(seed.as_mut());
    let key = SecretKey(SigningKey::from_bytes(&seed));
    let text = Zeroizing::new(format!("{}\n", hex::encode(&seed[..])));
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(out).with_context(|| {
        format!(
            "cannot create key file `{}` (it must not exist yet)",
            out.display()
        )
    })?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write key file `{}`", out.display()))?;
    Ok(key)
}

/// Reads a key file, refusing one that other users can read.
pub fn read(path: &Path) -> Result<SecretKey> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let meta = fs::metadata(path)
            .with_context(|| format!("cannot read key file `{}`", path.display()))?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            bail!(
                "key file `{}` is accessible by other users (mode {mode:o}); run `chmod 600 {}`",
                path.display(),
                path.display()
            );
        }
    }
    let text = Zeroizing::new(
        fs::read_to_string(path)
            .with_context(|| format!("cannot read key file `{}`", path.display()))?,
    );
    let mut seed = Zeroizing::new([0u8; 32]);
    if hex::decode_to_slice(text.trim(), seed.as_mut()).is_err() {
        bail!(
            "key file `{}` is malformed: expected 64 hex digits from `policy keygen`",
            path.display()
        );
    }
    Ok(SecretKey(SigningKey::from_bytes(&seed)))
}

/// Parses officer keys: each item is 64 hex digits or a file of such keys, one per line
/// (`#` starts a comment).
pub fn officers(items: &[String]) -> Result<Vec<[u8; 32]>> {
    let mut out = Vec::new();
    for item in items {
        if item.len() == 64 && item.bytes().all(|b| b.is_ascii_hexdigit()) {
            out.push(parse_public(item)?);
            continue;
        }
        let text = fs::read_to_string(item).with_context(|| {
            format!("`{item}` is neither an officer public key (64 hex digits) nor a readable file")
        })?;
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("").trim();
            if !line.is_empty() {
                out.push(parse_public(line).with_context(|| format!("in officer file `{item}`"))?);
            }
        }
    }
    Ok(out)
}

fn parse_public(text: &str) -> Result<[u8; 32]> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(text, &mut key)
        .ok()
        .filter(|()| ed25519_dalek::VerifyingKey::from_bytes(&key).is_ok())
        .with_context(|| {
            format!("malformed officer public key `{text}`: expected 64 hex digits")
        })?;
    Ok(key)
}
