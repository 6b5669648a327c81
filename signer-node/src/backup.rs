//! Encrypted backups of a node's whole state (key shares, aux info, identity, spare primes,
//! policy, ledger, used session ids, first-seen times), encrypted to an offline age X25519
//! recovery key. The node holds only the recipient, so a running node cannot read its backups.
//!
//! A backup is taken with the node stopped (redb allows one process per store). Restoring
//! needs the backup, the recovery identity and a new passphrase: it rebuilds the store with
//! every secret sealed under the new passphrase, and keeps the used session ids, so execution
//! ids still never repeat.

use std::{io::Write, path::Path, str::FromStr};

use zeroize::Zeroizing;

use crate::{
    identity::{NodeIdentity, IDENTITY_RECORD},
    init::IDENTITY_FILE,
    seal::KdfParams,
    secret::Passphrase,
    store::{Snapshot, Store, StoreError},
};

/// Format tag at the start of the decrypted content.
const MAGIC: &[u8] = b"custody-node-backup/v1\n";

/// Backup and restore errors; none contains secret material.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A file.
    #[error("`{0}`: {1}")]
    Io(String, String),
    /// The recipient or identity does not parse.
    #[error("{0}")]
    Key(String),
    /// Decryption failed: wrong recovery identity, or the file was altered.
    #[error("the backup does not decrypt with this recovery identity, or it was altered")]
    Decrypt,
    /// The decrypted content is not a node backup.
    #[error("the file is not a custody node backup (or is from an unknown version)")]
    Format,
}

fn io(path: &Path, e: impl std::fmt::Display) -> BackupError {
    BackupError::Io(path.display().to_string(), e.to_string())
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), BackupError> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut f = options.open(path).map_err(|e| io(path, e))?;
    f.write_all(bytes).map_err(|e| io(path, e))?;
    f.sync_all().map_err(|e| io(path, e))
}

/// Creates a recovery identity file (mode 0600, never overwritten); returns its recipient.
pub fn recovery_keygen(out: &Path) -> Result<String, BackupError> {
    use age::secrecy::ExposeSecret;
    let id = age::x25519::Identity::generate();
    let text = Zeroizing::new(format!(
        "# custody node recovery identity: keep offline\n{}\n",
        id.to_string().expose_secret()
    ));
    write_private(out, text.as_bytes())?;
    Ok(id.to_public().to_string())
}

/// Writes an encrypted backup of the store to `out` (mode 0600, never overwritten).
pub fn backup(store: &Store, recipient: &str, out: &Path) -> Result<Vec<String>, BackupError> {
    let recipient = age::x25519::Recipient::from_str(recipient.trim())
        .map_err(|e| BackupError::Key(format!("invalid age recipient: {e}")))?;
    let snap = store.snapshot()?;
    let names = snap.secret_names();
    let mut plain = Zeroizing::new(MAGIC.to_vec());
    ciborium::into_writer(&snap, &mut *plain).map_err(|e| io(out, e))?;
    let sealed = age::encrypt(&recipient, &plain).map_err(|e| io(out, e))?;
    write_private(out, &sealed)?;
    Ok(names)
}

/// Rebuilds a node's store in `dir` from a backup and the recovery identity file.
pub fn restore(
    file: &Path,
    identity_file: &Path,
    dir: &Path,
    passphrase: &Passphrase,
) -> Result<String, BackupError> {
    let text =
        Zeroizing::new(std::fs::read_to_string(identity_file).map_err(|e| io(identity_file, e))?);
    let line = text
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-"))
        .ok_or_else(|| {
            BackupError::Key(format!(
                "`{}` holds no age identity",
                identity_file.display()
            ))
        })?;
    let identity = age::x25519::Identity::from_str(line.trim())
        .map_err(|e| BackupError::Key(format!("invalid age identity: {e}")))?;
    let sealed = std::fs::read(file).map_err(|e| io(file, e))?;
    let plain = Zeroizing::new(age::decrypt(&identity, &sealed).map_err(|_| BackupError::Decrypt)?);
    let body = plain.strip_prefix(MAGIC).ok_or(BackupError::Format)?;
    let snap: Snapshot = ciborium::from_reader(body).map_err(|_| BackupError::Format)?;
    let store = Store::restore(dir, &snap, passphrase, KdfParams::default())?;
    let id_bytes = store
        .get_secret(IDENTITY_RECORD)?
        .ok_or_else(|| StoreError::Missing(IDENTITY_RECORD.into()))?;
    let identity = NodeIdentity::from_secret_bytes(&snap.node_id, id_bytes.expose_secret())
        .map_err(|_| BackupError::Format)?;
    let public = serde_json::to_string_pretty(&identity.public()).unwrap_or_default();
    let path = dir.join(IDENTITY_FILE);
    std::fs::write(&path, public + "\n").map_err(|e| io(&path, e))?;
    Ok(snap.node_id.clone())
}
