//! A cluster CA and its certificates, generated with rcgen: the coordinator's server certificate
//! (`localhost`, `127.0.0.1`) and one client certificate per node (`<node_id>.node`).

use std::path::Path;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

/// Writes `ca.pem`, `coordinator.pem`/`.key`, `<node>.pem`/`.key` and an API client certificate
/// (`exchange.client`) into `dir`, if absent.
pub fn ensure_pki(dir: &Path, nodes: &[String], coordinator_host: &str) -> anyhow::Result<()> {
    if dir.join("ca.pem").exists() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    let mut ca = CertificateParams::new(Vec::<String>::new())?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "custody cluster CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    let ca_key = KeyPair::generate()?;
    let ca_cert = ca.self_signed(&ca_key)?;
    let leaf =
        |names: Vec<String>, eku: ExtendedKeyUsagePurpose, file: &str| -> anyhow::Result<()> {
            let mut p = CertificateParams::new(names.clone())?;
            p.distinguished_name
                .push(DnType::CommonName, names[0].clone());
            p.extended_key_usages = vec![eku];
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
            let key = KeyPair::generate()?;
            let cert = p.signed_by(&key, &ca_cert, &ca_key)?;
            std::fs::write(dir.join(format!("{file}.pem")), cert.pem())?;
            write_private(
                &dir.join(format!("{file}.key")),
                key.serialize_pem().as_bytes(),
            )
        };
    let mut server_names = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    if !server_names.iter().any(|n| n == coordinator_host) {
        server_names.push(coordinator_host.to_string());
    }
    leaf(
        server_names,
        ExtendedKeyUsagePurpose::ServerAuth,
        "coordinator",
    )?;
    for n in nodes {
        leaf(
            vec![runtime::tls::node_cert_name(n)],
            ExtendedKeyUsagePurpose::ClientAuth,
            n,
        )?;
    }
    leaf(
        vec!["exchange.client".into()],
        ExtendedKeyUsagePurpose::ClientAuth,
        "api-client",
    )?;
    write_private(&dir.join("ca.key"), ca_key.serialize_pem().as_bytes())?;
    std::fs::write(dir.join("ca.pem"), ca_cert.pem()).context("writing ca.pem")?;
    Ok(())
}

/// Writes a file readable only by its owner (0600).
pub fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts
        .open(path)
        .with_context(|| format!("cannot write `{}`", path.display()))?;
    f.write_all(bytes)?;
    Ok(())
}
