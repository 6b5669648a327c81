//! A small blocking client for the coordinator API, trusting only the cluster CA.

use std::path::Path;

use serde_json::Value;

/// API client.
pub struct Api {
    base: String,
    http: reqwest::blocking::Client,
    token: Option<String>,
}

impl Api {
    /// Client for `base` (https://…) trusting `ca`.
    pub fn new(base: &str, ca: &Path, token: Option<String>) -> anyhow::Result<Self> {
        let ca = reqwest::Certificate::from_pem(&std::fs::read(ca)?)?;
        let http = reqwest::blocking::Client::builder()
            .add_root_certificate(ca)
            .tls_built_in_root_certs(false)
            .timeout(std::time::Duration::from_secs(30))
            .build()?;
        Ok(Self {
            base: base.trim_end_matches('/').to_string(),
            http,
            token,
        })
    }

    /// The same client with another token (or none).
    pub fn with_token(&self, token: Option<&str>) -> Self {
        Self {
            base: self.base.clone(),
            http: self.http.clone(),
            token: token.map(str::to_string),
        }
    }

    fn send(&self, rb: reqwest::blocking::RequestBuilder) -> anyhow::Result<(u16, Value)> {
        let rb = match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        };
        let resp = rb.send()?;
        let status = resp.status().as_u16();
        let text = resp.text()?;
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok((status, v))
    }

    /// GET, also returning the `Retry-After` header if any.
    pub fn get_retry_after(&self, path: &str) -> anyhow::Result<(u16, Option<String>)> {
        let rb = self.http.get(format!("{}{path}", self.base));
        let rb = match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        };
        let resp = rb.send()?;
        let retry = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        Ok((resp.status().as_u16(), retry))
    }

    /// GET.
    pub fn get(&self, path: &str) -> anyhow::Result<(u16, Value)> {
        self.send(self.http.get(format!("{}{path}", self.base)))
    }

    /// POST a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
    }

    /// PUT a JSON body.
    pub fn put(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        self.send(self.http.put(format!("{}{path}", self.base)).json(body))
    }

    /// POST raw bytes as JSON content.
    pub fn post_raw(&self, path: &str, body: Vec<u8>) -> anyhow::Result<(u16, Value)> {
        self.send(
            self.http
                .post(format!("{}{path}", self.base))
                .header("content-type", "application/json")
                .body(body),
        )
    }
}

/// Sends raw bytes over TLS (trusting only `ca`) and returns what the server answers before it
/// closes or `timeout` passes: for requests a well-behaved client library would not send.
pub fn raw_https(
    port: u16,
    ca: &Path,
    request: &[u8],
    timeout: std::time::Duration,
) -> anyhow::Result<String> {
    let whole = request.len().max(1);
    raw_https_trickle(port, ca, request, whole, std::time::Duration::ZERO, timeout)
}

/// Like [`raw_https`], but a slow client: it sends `chunk` bytes at a time, `delay` apart.
pub fn raw_https_trickle(
    port: u16,
    ca: &Path,
    request: &[u8],
    chunk: usize,
    delay: std::time::Duration,
    timeout: std::time::Duration,
) -> anyhow::Result<String> {
    use std::io::{Read, Write};
    let mut roots = rustls::RootCertStore::empty();
    for c in runtime::tls::load_certs(ca)? {
        roots.add(c)?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let conn = rustls::ClientConnection::new(std::sync::Arc::new(cfg), name)?;
    let tcp = std::net::TcpStream::connect(("127.0.0.1", port))?;
    tcp.set_read_timeout(Some(timeout))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    for piece in request.chunks(chunk.max(1)) {
        tls.write_all(piece)?;
        tls.flush()?;
        std::thread::sleep(delay);
    }
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tls.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}
