//! The system: real coordinator and node processes on loopback, signing through the REST API
//! over TLS (keep-alive connections, as a client library would use), each latency from POST
//! to the long poll (`?wait_ms=`) returning `signed`.

use std::{
    sync::atomic::{AtomicUsize, Ordering},
    time::{Duration, Instant},
};

use custody_tests::cluster::{free_port, Cluster, Layout, PrimeSource};
use serde_json::json;

pub const KEY: &str = "bench-key";

/// A started cluster of `n` nodes with a t-of-n key; also the ceremony's duration.
pub fn cluster(
    tag: &str,
    n: usize,
    t: u16,
    primes: PrimeSource,
) -> anyhow::Result<(Cluster, Duration)> {
    let dir = std::env::temp_dir().join(format!("custody-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let layout = Layout::loopback(dir, n, std::env::current_exe()?, free_port()?, free_port()?);
    let t0 = Instant::now();
    layout.ensure(primes)?;
    let cluster = Cluster::start(layout)?;
    cluster.ensure_key(KEY, t, Duration::from_secs(1800))?;
    Ok((cluster, t0.elapsed()))
}

/// Signs one request; its latency and whether it was signed from a presignature.
pub fn sign_one(cluster: &Cluster, id: &str, nonce: u64) -> anyhow::Result<(Duration, bool)> {
    sign_as(cluster, id, nonce, None)
}

/// Signs one request from the master key or from `account`'s derived key.
pub fn sign_as(
    cluster: &Cluster,
    id: &str,
    nonce: u64,
    account: Option<&str>,
) -> anyhow::Result<(Duration, bool)> {
    let mut body = json!({"request_id": id, "key_id": KEY, "chain": "ethereum",
        "unsigned_tx": custody_tests::sample::eth_transfer(nonce, [0x42; 20], 1)});
    if let Some(a) = account {
        body["account"] = json!(a);
    }
    let t = Instant::now();
    let (status, v) = cluster.api.post("/v1/sign-requests", &body)?;
    anyhow::ensure!(status == 202, "sign request refused: {v}");
    let v = loop {
        let (_, v) = cluster
            .api
            .get(&format!("/v1/sign-requests/{id}?wait_ms=30000"))?;
        match v["status"].as_str() {
            Some("signed") | Some("failed") | Some("denied") | Some("cancelled") => break v,
            _ if t.elapsed() > Duration::from_secs(600) => anyhow::bail!("{id} did not finish"),
            _ => {}
        }
    };
    let took = t.elapsed();
    anyhow::ensure!(v["status"] == "signed", "request {id} did not sign: {v}");
    Ok((took, v["presigned"].as_u64().unwrap_or(0) > 0))
}

/// `total` requests by `concurrency` clients: every latency, how many were presigned, and the
/// wall time.
pub fn load(
    cluster: &Cluster,
    tag: &str,
    total: usize,
    concurrency: usize,
) -> anyhow::Result<(Vec<Duration>, usize, Duration)> {
    let next = AtomicUsize::new(0);
    let t = Instant::now();
    let results: Vec<anyhow::Result<Vec<(Duration, bool)>>> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..concurrency)
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        let k = next.fetch_add(1, Ordering::SeqCst);
                        if k >= total {
                            return Ok(out);
                        }
                        let nonce = 1_000_000 + k as u64;
                        out.push(sign_one(cluster, &format!("{tag}-{k}"), nonce)?);
                    }
                })
            })
            .collect();
        hs.into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("client thread panicked")))
            })
            .collect()
    });
    let wall = t.elapsed();
    let mut lat = Vec::new();
    let mut warm = 0;
    for r in results {
        for (d, presigned) in r? {
            lat.push(d);
            warm += usize::from(presigned);
        }
    }
    Ok((lat, warm, wall))
}

/// Creates `account` and signs `runs` requests from it, one at a time: derived keys always sign
/// fully (no presignature), so this is cold signing with the HD derivation path.
pub fn account_latencies(
    cluster: &Cluster,
    account: &str,
    runs: usize,
) -> anyhow::Result<Vec<Duration>> {
    let (st, v) = cluster.api.post(
        &format!("/v1/keys/{KEY}/accounts"),
        &json!({ "name": account }),
    )?;
    anyhow::ensure!(st == 201 || st == 200, "account creation failed: {v}");
    (0..runs)
        .map(|k| {
            let id = format!("{account}-{k}");
            sign_as(cluster, &id, 2_000_000 + k as u64, Some(account)).map(|(d, _)| d)
        })
        .collect()
}

/// Sets the key's pool depth and waits until every subset holds `depth` (or `limit` passes).
pub fn fill_pool(
    cluster: &Cluster,
    depth: u32,
    limit: Duration,
) -> anyhow::Result<(u64, Duration)> {
    let (st, v) = cluster.api.put(
        &format!("/v1/keys/{KEY}/presignatures"),
        &json!({ "depth": depth }),
    )?;
    anyhow::ensure!(st == 200, "setting the pool depth failed: {v}");
    let t = Instant::now();
    loop {
        let (_, v) = cluster.api.get(&format!("/v1/keys/{KEY}/presignatures"))?;
        let subsets = v["subsets"].as_array().cloned().unwrap_or_default();
        let full = subsets
            .iter()
            .all(|s| s["available"].as_u64().unwrap_or(0) >= depth as u64);
        if full || t.elapsed() > limit {
            return Ok((v["available"].as_u64().unwrap_or(0), t.elapsed()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Stops refilling (the pool keeps what it holds) and lets a refill already running finish,
/// so that warm latencies are not measured against one.
pub fn stop_refill(cluster: &Cluster) -> anyhow::Result<()> {
    let (st, v) = cluster.api.put(
        &format!("/v1/keys/{KEY}/presignatures"),
        &json!({ "depth": 0 }),
    )?;
    anyhow::ensure!(st == 200, "setting the pool depth failed: {v}");
    std::thread::sleep(Duration::from_secs(3));
    Ok(())
}

/// Refresh and reshare wall times of the cluster's key, from the POST of the officers' order
/// to the ceremony's `active` phase: a refresh (same guardians, same t), a reshare to t+1 of
/// the same guardians and one back to t (no new guardian, so no aux info runs). Each row gives
/// the time as a multiple of the key ceremony's.
pub fn lifecycle(
    c: &Cluster,
    n: usize,
    t: u16,
    ceremony: Duration,
    rows: &mut Vec<crate::Row>,
) -> anyhow::Result<()> {
    use custody_tests::lifecycle::{order, run, signed};
    use proto::{api::CeremonyPhase, lifecycle::MembershipKind};
    let (_, v) = c.api.get(&format!("/v1/keys/{KEY}"))?;
    let mut k: proto::api::KeyInfo = serde_json::from_value(v)?;
    let nodes = k.nodes.clone();
    let set: Vec<&str> = nodes.iter().map(String::as_str).collect();
    let steps = [
        (
            MembershipKind::Refresh,
            "refresh",
            t,
            format!("{t}-of-{n} refresh"),
        ),
        (
            MembershipKind::Reshare,
            "reshare",
            t + 1,
            format!("{t}-of-{n} → {}-of-{n} reshare", t + 1),
        ),
        (
            MembershipKind::Reshare,
            "reshare",
            t,
            format!("{}-of-{n} → {t}-of-{n} reshare", t + 1),
        ),
    ];
    for (kind, route, to, name) in steps {
        eprintln!("system: {name} ...");
        let body = signed(c, order(&k, kind, &set, to), &["officer-1", "officer-2"])?;
        let t0 = Instant::now();
        let after = run(c, route, &body, Duration::from_secs(1800))?;
        let took = t0.elapsed();
        let phase = after.ceremony.as_ref().map(|c| c.phase);
        anyhow::ensure!(
            phase == Some(CeremonyPhase::Active) && after.epoch == k.epoch + 1,
            "{name} did not activate: {after:?}"
        );
        rows.push(crate::Row {
            measure: format!("{name} via API (order to active)"),
            p50: None,
            p99: None,
            extra: format!(
                "{:.1} s ({:.2}× the key ceremony)",
                took.as_secs_f64(),
                took.as_secs_f64() / ceremony.as_secs_f64().max(1e-9)
            ),
        });
        k = after;
    }
    Ok(())
}
