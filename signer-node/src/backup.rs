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

/// Counts the bytes a serialiser writes, to size a buffer that then never reallocates (a
/// reallocation would leave an unwiped copy of the plaintext behind on the heap).
struct Counter(usize);

impl std::io::Write for Counter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 = self.0.saturating_add(buf.len());
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The backup's plaintext (format tag, then the CBOR snapshot) in one wiped-on-drop buffer
/// allocated once at its final size.
fn plaintext<T: serde::Serialize>(snap: &T, out: &Path) -> Result<Zeroizing<Vec<u8>>, BackupError> {
    let mut count = Counter(0);
    ciborium::into_writer(snap, &mut count).map_err(|e| io(out, e))?;
    let size = MAGIC.len().saturating_add(count.0);
    let mut plain = Zeroizing::new(Vec::with_capacity(size));
    plain.extend_from_slice(MAGIC);
    ciborium::into_writer(snap, &mut *plain).map_err(|e| io(out, e))?;
    if plain.len() != size {
        return Err(io(out, "the snapshot changed size while it was encoded"));
    }
    Ok(plain)
}

/// Reads a secret file into a wiped-on-drop buffer sized from its length (no reallocation).
fn read_secret(path: &Path) -> Result<Zeroizing<Vec<u8>>, BackupError> {
    use std::io::Read;
    let f = std::fs::File::open(path).map_err(|e| io(path, e))?;
    let len = f.metadata().map_err(|e| io(path, e))?.len();
    let cap = usize::try_from(len).map_err(|e| io(path, e))?;
    let mut buf = Zeroizing::new(Vec::with_capacity(cap.saturating_add(1)));
    f.take(len).read_to_end(&mut buf).map_err(|e| io(path, e))?;
    Ok(buf)
}

/// Decrypts `sealed` into a wiped-on-drop buffer allocated once: the plaintext is shorter than
/// the ciphertext, so reading never grows it (`age::decrypt` grows a plain `Vec`).
fn decrypt(
    identity: &age::x25519::Identity,
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, BackupError> {
    use std::io::Read;
    let decryptor = age::Decryptor::new_buffered(sealed).map_err(|_| BackupError::Decrypt)?;
    let mut reader = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(|_| BackupError::Decrypt)?;
    let mut plain = Zeroizing::new(Vec::with_capacity(sealed.len()));
    reader
        .read_to_end(&mut plain)
        .map_err(|_| BackupError::Decrypt)?;
    Ok(plain)
}

/// Writes an encrypted backup of the store to `out` (mode 0600, never overwritten).
pub fn backup(store: &Store, recipient: &str, out: &Path) -> Result<Vec<String>, BackupError> {
    let recipient = age::x25519::Recipient::from_str(recipient.trim())
        .map_err(|e| BackupError::Key(format!("invalid age recipient: {e}")))?;
    let snap = store.snapshot()?;
    let names = snap.secret_names();
    let plain = plaintext(&snap, out)?;
    drop(snap);
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
    let bytes = read_secret(identity_file)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| {
        BackupError::Key(format!("`{}` is not a text file", identity_file.display()))
    })?;
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
    let plain = decrypt(&identity, &sealed)?;
    let body = plain.strip_prefix(MAGIC).ok_or(BackupError::Format)?;
    let snap: Snapshot = ciborium::from_reader(body).map_err(|_| BackupError::Format)?;
    let store = Store::restore(dir, &snap, passphrase, KdfParams::default())?;
    // The backup holds no audit log: the restored node anchors the log it finds at its first
    // start, instead of refusing it as truncated against the head anchored at backup time.
    store.state_write(&[(crate::AUDIT_ANCHOR.to_string(), None)])?;
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// Buffers are allocated once at their final size: a reallocation would have left an
    /// unwiped copy of the plaintext on the heap (and would show as a larger capacity).
    #[test]
    fn plaintext_buffers_never_reallocate() {
        let value: Vec<(String, Vec<u8>)> = (0..64u8)
            .map(|i| (format!("share/{i}"), vec![i; 4096]))
            .collect();
        let plain = plaintext(&value, Path::new("out")).unwrap();
        assert_eq!(plain.capacity(), plain.len());
        assert!(plain.starts_with(MAGIC));

        let id = age::x25519::Identity::generate();
        let sealed = age::encrypt(&id.to_public(), &plain).unwrap();
        let opened = decrypt(&id, &sealed).unwrap();
        assert_eq!(*opened, *plain);
        assert_eq!(
            opened.capacity(),
            sealed.len(),
            "sized once from the ciphertext"
        );
        let other = age::x25519::Identity::generate();
        assert!(matches!(
            decrypt(&other, &sealed),
            Err(BackupError::Decrypt)
        ));
    }
}
