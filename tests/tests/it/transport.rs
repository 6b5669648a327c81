//! Row 31 of the security matrix (TLS), checked with an independent client, `openssl s_client`:
//! the node link accepts only TLS 1.3 with a client certificate from the cluster CA, and the API
//! refuses TLS 1.2 (unless configured) and client certificates from a foreign CA.

use std::process::{Command, Stdio};

use crate::common::{scratch, shared, Shared};

/// What `openssl s_client` saw, told apart definitely: a stalled or silent server is neither a
/// refusal nor a success.
enum Handshake {
    /// The server ended the handshake: s_client exited with an error before the deadline,
    /// reporting the alert (or the closed connection) in `out`.
    Refused(String),
    /// The handshake completed (TLS 1.3, the server's certificate verified against the cluster
    /// CA) and the server kept the connection open until the deadline: it accepted the client.
    Established(String),
    /// Anything else: a stall before the handshake completed, or an exit without an error.
    Unclear(Option<i32>, String),
}

impl Handshake {
    fn describe(&self) -> String {
        match self {
            Handshake::Refused(out) => format!("refused:\n{out}"),
            Handshake::Established(out) => format!("established:\n{out}"),
            Handshake::Unclear(code, out) => format!("unclear (exit {code:?}):\n{out}"),
        }
    }

    /// Asserts a refusal whose output contains `alert`.
    #[track_caller]
    fn assert_refused_with(&self, alert: &str) {
        match self {
            Handshake::Refused(out) => assert!(out.contains(alert), "no `{alert}` in:\n{out}"),
            other => panic!(
                "expected a refusal with `{alert}`, got {}",
                other.describe()
            ),
        }
    }

    /// Asserts that the handshake completed and the server kept the connection.
    #[track_caller]
    fn assert_established(&self) {
        match self {
            Handshake::Established(_) => {}
            other => panic!(
                "expected an established connection, got {}",
                other.describe()
            ),
        }
    }
}

/// Runs `openssl s_client` against a local port with `args` for at most 4 seconds.
fn s_client(port: u16, ca: &std::path::Path, args: &[&str]) -> Handshake {
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
    let code = out.status.code();
    // Printed once the handshake completed on the client's side (TLS 1.3 servers check the
    // client certificate after that, and refuse with an alert that s_client then reads).
    let completed = text.contains("Verify return code: 0 (ok)")
        && text.contains("TLSv1.3")
        && (text.contains("Cipher is") || text.contains("Cipher    :"));
    match code {
        // `timeout` killed it: still connected at the deadline.
        Some(124) if completed && !text.contains("alert") => Handshake::Established(text),
        Some(c) if c != 0 && c != 124 => Handshake::Refused(text),
        other => Handshake::Unclear(other, text),
    }
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
    s_client(port, &ca, &["-tls1_2", "-cert", &cert, "-key", &key])
        .assert_refused_with("alert protocol version");
    s_client(port, &ca, &["-tls1_3"]).assert_refused_with("alert certificate required");
    let (fc, fk) = foreign_cert(&scratch("foreign-ca"));
    s_client(port, &ca, &["-tls1_3", "-cert", &fc, "-key", &fk])
        .assert_refused_with("alert certificate unknown");
    // The control: the cluster's own node certificate completes the handshake.
    s_client(port, &ca, &["-tls1_3", "-cert", &cert, "-key", &key]).assert_established();
}

#[test]
fn row31_tls_api_refuses_tls12_by_default_and_foreign_client_certificates() {
    let s = shared();
    let (port, ca) = (s.cluster.layout.api_port, s.cluster.layout.ca());
    s_client(port, &ca, &["-tls1_2"]).assert_refused_with("alert protocol version");
    let (fc, fk) = foreign_cert(&scratch("foreign-ca-api"));
    s_client(port, &ca, &["-tls1_3", "-cert", &fc, "-key", &fk])
        .assert_refused_with("alert certificate unknown");
    // The control: a token client needs no certificate.
    s_client(port, &ca, &["-tls1_3"]).assert_established();
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
