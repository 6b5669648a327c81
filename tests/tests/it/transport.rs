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

/// Issues a new certificate from the cluster CA with openssl (a new key pair, a new serial).
fn reissue(s: &Shared, file: &str, san: &str, eku: &str) {
    let dir = s.cluster.layout.dir.join("pki");
    let tmp = scratch(&format!("reissue-{file}"));
    std::fs::create_dir_all(&tmp).unwrap();
    let ext = tmp.join("ext.cnf");
    std::fs::write(
        &ext,
        format!("subjectAltName={san}\nextendedKeyUsage={eku}\nkeyUsage=digitalSignature\n"),
    )
    .unwrap();
    let run = |args: &[&str]| {
        let st = Command::new("openssl")
            .args(args)
            .current_dir(&tmp)
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "openssl {args:?}");
    };
    run(&[
        "req",
        "-new",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-keyout",
        "new.key",
        "-out",
        "new.csr",
        "-subj",
        "/CN=rotated",
    ]);
    let (ca, ca_key) = (pki(s, "ca.pem"), pki(s, "ca.key"));
    run(&[
        "x509",
        "-req",
        "-in",
        "new.csr",
        "-CA",
        &ca,
        "-CAkey",
        &ca_key,
        "-set_serial",
        "4242",
        "-days",
        "30",
        "-out",
        "new.pem",
        "-extfile",
        "ext.cnf",
    ]);
    std::fs::copy(tmp.join("new.pem"), dir.join(format!("{file}.pem"))).unwrap();
    std::fs::copy(tmp.join("new.key"), dir.join(format!("{file}.key"))).unwrap();
}

#[test]
fn certificate_rotation_of_a_node_and_the_coordinator_needs_no_new_key_ceremony() {
    let mut s = crate::common::exclusive();
    let before = std::fs::read_to_string(pki(&s, "node-1.pem")).unwrap();
    reissue(&s, "node-1", "DNS:node-1.node", "clientAuth");
    reissue(
        &s,
        "coordinator",
        "DNS:localhost,IP:127.0.0.1",
        "serverAuth",
    );
    assert_ne!(
        before,
        std::fs::read_to_string(pki(&s, "node-1.pem")).unwrap()
    );
    s.cluster.kill_coordinator();
    s.cluster.start_coordinator().unwrap();
    s.cluster.restart_node(0).unwrap();
    let all = s.cluster.layout.nodes.clone();
    s.cluster
        .wait_connected(&all, std::time::Duration::from_secs(30))
        .unwrap();
    // With node-2 down, node-1 (new certificate) must sign with the same key share.
    s.cluster.kill_node(1).unwrap();
    let r = crate::signing::sign_transfer(&s, 55);
    crate::signing::assert_valid_signature(&s, &r);
    assert!(r.signers.contains(&"node-1".to_string()), "{r:?}");
    s.cluster.start_node_and_wait(1).unwrap();
}
