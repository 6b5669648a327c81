//! Secret-typed values: zeroized on drop, redacted in `Debug`, read only through `expose_secret`.

use zeroize::Zeroizing;

/// Bytes that must never be logged: serialised key shares, aux info, Paillier primes, keys.
pub struct SecretBytes(Zeroizing<Vec<u8>>);

impl SecretBytes {
    /// Wraps bytes; they are wiped when dropped.
    pub fn new(bytes: Vec<u8>) -> Self {
        Self(Zeroizing::new(bytes))
    }

    /// The secret bytes. Call sites are easy to audit with `grep expose_secret`.
    pub fn expose_secret(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SecretBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SecretBytes([REDACTED; {} bytes])", self.0.len())
    }
}

/// The operator's passphrase. Never a CLI argument: a prompt, a file or an environment variable.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    /// Wraps a passphrase, trimming one trailing newline (as files usually have).
    pub fn new(mut s: String) -> Self {
        if s.ends_with('\n') {
            s.pop();
            if s.ends_with('\r') {
                s.pop();
            }
        }
        Self(Zeroizing::new(s))
    }

    /// The passphrase text.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase([REDACTED])")
    }
}

/// Serialises a value to JSON inside a zeroizing buffer.
pub fn to_secret_json<T: serde::Serialize>(v: &T) -> Result<SecretBytes, serde_json::Error> {
    let mut buf = Zeroizing::new(Vec::with_capacity(64 * 1024));
    serde_json::to_writer(&mut *buf, v)?;
    Ok(SecretBytes(buf))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted() {
        let s = SecretBytes::new(b"hunter2-share".to_vec());
        assert!(!format!("{s:?}").contains("hunter2"));
        let p = Passphrase::new("correct horse\n".into());
        assert_eq!(p.expose_secret(), "correct horse");
        assert!(!format!("{p:?}").contains("horse"));
    }
}
