//! Row 31 of the security matrix (TLS), checked with an independent client, `openssl s_client`:
//! the node link accepts only TLS 1.3 with a client certificate from the cluster CA, and the API
//! refuses TLS 1.2 (unless configured) and client certificates from a foreign CA.

use std::process::{Command, Stdio};

use crate::common::{scratch, shared, Shared};

/// Runs `openssl s_client` against a local port with `args`; returns its exit status (None when
/// it was still connected after 4 seconds, i.e. the handshake succeeded) and its output.
fn s_client(port: u16, ca: &std::path::Path, args: &[&str]) -> (Option<i32>, String) {
    let out = Command::new("timeout")
        .args(["4", "openssl", "s_client", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .arg("-CAfile")
        .arg(ca)
        .arg("-ign_eof")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("openssl and timeout must be installed (.ci/run installs openssl)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let code = out.status.code().filter(|c| *c != 124);
    (code, text)
}

fn foreign_cert(dir: &std::path::Path) -> (String, String) {
    std::fs::create_dir_all(dir).unwrap();
    let (key, cert) = (dir.join("foreign.key"), dir.join("foreign.pem"));
    let st = Command::new("openssl")
        .args([
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
        ])
        .args(["-nodes", "-days", "2", "-subj", "/CN=node-1.node"])
        .args([
            "-addext",
            "subjectAltName=DNS:node-1.node,DNS:exchange.client",
        ])
        .arg("-keyout")
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    (
        cert.to_str().unwrap().to_string(),
        key.to_str().unwrap().to_string(),
    )
}

fn pki(s: &Shared, f: &str) -> String {
    s.cluster
        .layout
        .dir
        .join("pki")
        .join(f)
        .to_str()
        .unwrap()
        .to_string()
}

#[test]
fn row31_tls_node_link_refuses_tls12_missing_and_foreign_client_certificates() {
    let s = shared();
    let (port, ca) = (s.cluster.layout.node_port, s.cluster.layout.ca());
    let (cert, key) = (pki(&s, "node-1.pem"), pki(&s, "node-1.key"));
    let (code, out) = s_client(port, &ca, &["-tls1_2", "-cert", &cert, "-key", &key]);
    assert!(
        code.is_some() && out.contains("alert protocol version"),
        "{out}"
    );
    let (code, out) = s_client(port, &ca, &["-tls1_3"]);
    assert!(
        code.is_some() && out.contains("alert certificate required"),
        "{out}"
    );
    let (fc, fk) = foreign_cert(&scratch("foreign-ca"));
    let (code, out) = s_client(port, &ca, &["-tls1_3", "-cert", &fc, "-key", &fk]);
    assert!(
        code.is_some() && out.contains("alert certificate unknown"),
        "{out}"
    );
    // The control: the cluster's own node certificate completes the handshake.
    let (code, out) = s_client(port, &ca, &["-tls1_3", "-cert", &cert, "-key", &key]);
    assert!(code.is_none(), "{out}");
}

#[test]
fn row31_tls_api_refuses_tls12_by_default_and_foreign_client_certificates() {
    let s = shared();
    let (port, ca) = (s.cluster.layout.api_port, s.cluster.layout.ca());
    let (code, out) = s_client(port, &ca, &["-tls1_2"]);
    assert!(
        code.is_some() && out.contains("alert protocol version"),
        "{out}"
    );
    let (fc, fk) = foreign_cert(&scratch("foreign-ca-api"));
    let (code, out) = s_client(port, &ca, &["-tls1_3", "-cert", &fc, "-key", &fk]);
    assert!(code.is_some() && out.contains("alert"), "{out}");
    let (code, out) = s_client(port, &ca, &["-tls1_3"]);
    assert!(code.is_none(), "a token client needs no certificate: {out}");
}
