//! `coordinator pki`: the cluster's certificate authority and the certificates the cluster needs,
//! with the names each side checks:
//! - the coordinator's **server** certificate carries the host names nodes and API clients dial
//!   (each node's `coordinator_name` must be one of them);
//! - a node's **client** certificate carries the DNS name `<node_id>.node` (the coordinator
//!   accepts a node link only with the certificate of the node it claims to be);
//! - an API **client** certificate carries a name listed in `api_client_cert_names`.
//!
//! Run it on the machine that keeps the CA key (offline between uses). A leaf is either issued
//! with a fresh key written next to it, or issued for a certificate signing request (`--csr`),
//! so the key never leaves the machine that made it.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// File names inside the PKI directory.
pub const CA_CERT: &str = "ca.pem";
/// The CA's private key (mode 0600).
pub const CA_KEY: &str = "ca.key";

/// Days a CA certificate is valid for.
pub const CA_DAYS: u32 = 3650;
/// Days a leaf certificate is valid for, unless told otherwise.
pub const LEAF_DAYS: u32 = 397;

/// PKI errors.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    /// A file that must not be overwritten exists.
    #[error("`{0}` exists; refusing to overwrite it (move it away first)")]
    Exists(PathBuf),
    /// Reading or writing a file failed.
    #[error("`{path}`: {msg}")]
    Io {
        /// File.
        path: PathBuf,
        /// What failed.
        msg: String,
    },
    /// The CA key does not belong to the CA certificate.
    #[error("`{key}` is not the key of `{cert}`")]
    KeyMismatch {
        /// The key file.
        key: PathBuf,
        /// The certificate file.
        cert: PathBuf,
    },
    /// A name is not usable in a certificate.
    #[error("invalid name `{0}`: {1}")]
    Name(String, String),
    /// Certificate generation failed.
    #[error("certificate: {0}")]
    Rcgen(#[from] rcgen::Error),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> PkiError + '_ {
    move |e| PkiError::Io {
        path: path.to_path_buf(),
        msg: e.to_string(),
    }
}

/// What a leaf certificate is for.
#[derive(Debug, Clone)]
pub enum Leaf {
    /// The coordinator's server certificate, valid for these host names or IP addresses.
    Server(Vec<String>),
    /// A signer node's client certificate (`<node_id>.node`).
    Node(String),
    /// An API client certificate with this name.
    ApiClient(String),
}

impl Leaf {
    /// Names in the certificate's subject alternative names (the first is its common name).
    pub fn names(&self) -> Vec<String> {
        match self {
            Leaf::Server(names) => names.clone(),
            Leaf::Node(id) => vec![runtime::tls::node_cert_name(id)],
            Leaf::ApiClient(name) => vec![name.clone()],
        }
    }

    /// File stem of the certificate and key: `coordinator`, the node id, or the client name.
    pub fn file_stem(&self) -> String {
        match self {
            Leaf::Server(_) => "coordinator".into(),
            Leaf::Node(id) => id.clone(),
            Leaf::ApiClient(name) => name.clone(),
        }
    }

    fn usage(&self) -> ExtendedKeyUsagePurpose {
        match self {
            Leaf::Server(_) => ExtendedKeyUsagePurpose::ServerAuth,
            Leaf::Node(_) | Leaf::ApiClient(_) => ExtendedKeyUsagePurpose::ClientAuth,
        }
    }
}

fn validity(p: &mut CertificateParams, days: u32) {
    let now = time::OffsetDateTime::now_utc();
    // An hour of slack for clocks that are slightly behind.
    p.not_before = now - time::Duration::hours(1);
    p.not_after = now + time::Duration::days(i64::from(days));
}

/// Creates the cluster CA in `dir` (`ca.pem`, `ca.key`); refuses to overwrite one.
pub fn create_ca(dir: &Path, name: &str) -> Result<PathBuf, PkiError> {
    let cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    for p in [&cert_path, &key_path] {
        if p.exists() {
            return Err(PkiError::Exists(p.clone()));
        }
    }
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, name);
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    validity(&mut ca, CA_DAYS);
    let key = KeyPair::generate()?;
    let cert = ca.self_signed(&key)?;
    write_private(&key_path, key.serialize_pem().as_bytes())?;
    std::fs::write(&cert_path, cert.pem()).map_err(io(&cert_path))?;
    Ok(cert_path)
}

/// The CA of `dir`, checked: its key must be the one in its certificate.
fn load_ca(dir: &Path) -> Result<(rcgen::Certificate, KeyPair), PkiError> {
    let cert_path = dir.join(CA_CERT);
    let key_path = dir.join(CA_KEY);
    let pem = std::fs::read_to_string(&cert_path).map_err(io(&cert_path))?;
    let key_pem =
        zeroize::Zeroizing::new(std::fs::read_to_string(&key_path).map_err(io(&key_path))?);
    let key = KeyPair::from_pem(&key_pem)?;
    let der = pem_der(&pem).ok_or_else(|| PkiError::Io {
        path: cert_path.clone(),
        msg: "no PEM certificate in the file".into(),
    })?;
    // The certificate embeds its subject public key info verbatim.
    let spki = key.public_key_der();
    if !der.windows(spki.len()).any(|w| w == spki.as_slice()) {
        return Err(PkiError::KeyMismatch {
            key: key_path,
            cert: cert_path,
        });
    }
    // Re-signing the CA's own parameters with its key gives an issuer with the same name and key
    // identifier, which is all a leaf's signature and issuer fields depend on.
    let params = CertificateParams::from_ca_cert_pem(&pem)?;
    let cert = params.self_signed(&key)?;
    Ok((cert, key))
}

fn pem_der(pem: &str) -> Option<Vec<u8>> {
    use rustls::pki_types::{pem::PemObject, CertificateDer};
    CertificateDer::from_pem_slice(pem.as_bytes())
        .ok()
        .map(|c| c.as_ref().to_vec())
}

/// Issues a leaf certificate signed by the CA in `ca_dir`, writing `<stem>.pem` (and, without a
/// CSR, `<stem>.key`) into `out_dir`. With `csr`, the certificate is for the request's public key
/// and the names given here (the request's own names are ignored). Refuses to overwrite.
pub fn issue(
    ca_dir: &Path,
    out_dir: &Path,
    leaf: &Leaf,
    csr: Option<&Path>,
    days: u32,
) -> Result<PathBuf, PkiError> {
    let names = leaf.names();
    let Some(common_name) = names.first().cloned() else {
        return Err(PkiError::Name(
            String::new(),
            "a certificate needs a name".into(),
        ));
    };
    for n in &names {
        if n.is_empty() || n.len() > 253 || n.chars().any(|c| c.is_whitespace()) {
            return Err(PkiError::Name(
                n.clone(),
                "empty, too long or with spaces".into(),
            ));
        }
    }
    if let Leaf::Node(id) = leaf {
        if !proto::api::valid_node_id(id) {
            return Err(PkiError::Name(
                id.clone(),
                "a node id is 1-64 characters of [A-Za-z0-9._-]".into(),
            ));
        }
    }
    let stem = leaf.file_stem();
    let cert_path = out_dir.join(format!("{stem}.pem"));
    let key_path = out_dir.join(format!("{stem}.key"));
    if cert_path.exists() {
        return Err(PkiError::Exists(cert_path));
    }
    if csr.is_none() && key_path.exists() {
        return Err(PkiError::Exists(key_path));
    }
    let (ca, ca_key) = load_ca(ca_dir)?;
    let mut p = CertificateParams::new(names.clone())?;
    p.distinguished_name.push(DnType::CommonName, common_name);
    p.extended_key_usages = vec![leaf.usage()];
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    validity(&mut p, days);
    std::fs::create_dir_all(out_dir).map_err(io(out_dir))?;
    let cert = match csr {
        Some(path) => {
            let text = std::fs::read_to_string(path).map_err(io(path))?;
            let req = CertificateSigningRequestParams::from_pem(&text)?;
            p.signed_by(&req.public_key, &ca, &ca_key)?
        }
        None => {
            let key = KeyPair::generate()?;
            let cert = p.signed_by(&key, &ca, &ca_key)?;
            write_private(&key_path, key.serialize_pem().as_bytes())?;
            cert
        }
    };
    std::fs::write(&cert_path, cert.pem()).map_err(io(&cert_path))?;
    Ok(cert_path)
}

/// Writes a file created readable only by its owner (0600). An existing file keeps its mode:
/// callers refuse to overwrite key files.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), PkiError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path).map_err(io(path))?;
    f.write_all(bytes).map_err(io(path))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    #[test]
    fn a_leaf_chains_to_the_ca_and_a_foreign_key_is_refused() {
        let dir = std::env::temp_dir().join(format!("pki-unit-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        create_ca(&dir, "unit CA").unwrap();
        assert!(matches!(create_ca(&dir, "again"), Err(PkiError::Exists(_))));
        let leaf = Leaf::Node("node-1".into());
        issue(&dir, &dir, &leaf, None, 30).unwrap();
        assert!(matches!(
            issue(&dir, &dir, &leaf, None, 30),
            Err(PkiError::Exists(_))
        ));
        let pem = std::fs::read(dir.join("node-1.pem")).unwrap();
        let der = rustls_pemfile_der(&pem);
        assert!(runtime::tls::cert_has_dns_name(&der.into(), "node-1.node"));
        // A CA key that is not the certificate's is named, not used.
        let other = dir.join("other");
        create_ca(&other, "other CA").unwrap();
        std::fs::copy(other.join(CA_KEY), dir.join(CA_KEY)).unwrap();
        let err = issue(&dir, &dir, &Leaf::Node("node-2".into()), None, 30).unwrap_err();
        assert!(matches!(err, PkiError::KeyMismatch { .. }), "{err}");
        for bad in [Leaf::Node("bad id".into()), Leaf::Server(vec![])] {
            assert!(matches!(
                issue(&other, &other, &bad, None, 30),
                Err(PkiError::Name(..))
            ));
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    fn rustls_pemfile_der(pem: &[u8]) -> Vec<u8> {
        pem_der(std::str::from_utf8(pem).unwrap()).unwrap()
    }
}
