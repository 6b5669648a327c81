//! `bench`: end-to-end signing through the REST API over TLS, next to the library's own
//! in-process signing measured in the same run on the same machine.
//!
//! Baseline: cggmp24 full 2-of-3 signing with both parties as tasks on a 2-worker tokio runtime
//! in one process (round-based's async simulator), i.e. the protocol's CPU cost without network,
//! TLS, envelopes or storage. System: one 2-of-3 sign request through the coordinator's HTTPS
//! API, from POST to `signed`, with nodes as separate processes.

use std::time::{Duration, Instant};

use anyhow::Context;
use cggmp24::{security_level::SecurityLevel128, supported_curves::Secp256k1, ExecutionId};
use custody_tests::cluster::{free_port, Cluster, Layout, PrimeSource};
use serde_json::json;
use sha2::Sha256;

type KeyShare = cggmp24::KeyShare<Secp256k1, SecurityLevel128>;

fn main() -> anyhow::Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("signer-node") {
        return signer_node::cli::main_with(argv[1..].to_vec());
    }
    if argv.get(1).map(String::as_str) == Some("coordinator") {
        return coordinator::cli::main_with(argv[1..].to_vec());
    }
    let runs: usize = argv.get(1).and_then(|s| s.parse().ok()).unwrap_or(10);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    eprintln!("library baseline: in-process DKG + aux info (test-only primes) ...");
    let shares = rt.block_on(library_keys())?;
    let mut lib = Vec::new();
    for k in 0..runs {
        let t = Instant::now();
        rt.block_on(library_sign(&shares, k as u8))?;
        lib.push(t.elapsed());
    }
    drop(rt);
    eprintln!("system: starting a 3-node cluster ...");
    let (sys, ceremony) = system_runs(runs)?;
    report(&lib, &sys, ceremony);
    Ok(())
}

async fn library_keys() -> anyhow::Result<Vec<KeyShare>> {
    let primes = custody_tests::test_primes()?;
    let eid = ExecutionId::new(b"bench-keygen");
    let incomplete = round_based::sim::async_env::run(3, |i, party| async move {
        let mut rng = signer_node::mpc::rng();
        cggmp24::keygen::<Secp256k1>(eid, i, 3)
            .set_threshold(2)
            .hd_wallet(true)
            .start(&mut rng, party)
            .await
    })
    .await
    .expect_ok()
    .into_vec();
    let eid = ExecutionId::new(b"bench-aux");
    let aux = round_based::sim::async_env::run_with_setup(
        primes.into_iter().take(3),
        |i, party, p| async move {
            let mut rng = signer_node::mpc::rng();
            cggmp24::aux_info_gen(eid, i, 3, p)
                .start(&mut rng, party)
                .await
        },
    )
    .await
    .expect_ok()
    .into_vec();
    incomplete
        .into_iter()
        .zip(aux)
        .map(|(s, a)| KeyShare::from_parts((s, a)).context("share does not fit aux info"))
        .collect()
}

async fn library_sign(shares: &[KeyShare], nonce: u8) -> anyhow::Result<()> {
    let msg = [nonce; 64];
    let data = cggmp24::DataToSign::digest::<sha3::Keccak256>(&msg);
    let eid_bytes = [nonce; 32];
    // Each party on its own blocking thread, as in the node: the parties compute in parallel.
    round_based::sim::async_env::run_with_setup(
        shares.iter().take(2).cloned(),
        |i, party, share| async move {
            tokio::task::spawn_blocking(move || {
                futures::executor::block_on(async move {
                    let parties: [u16; 2] = [0, 1];
                    let mut rng = signer_node::mpc::rng();
                    cggmp24::signing(ExecutionId::new(&eid_bytes), i, &parties, &share)
                        .set_digest::<Sha256>()
                        .sign(&mut rng, party, &data)
                        .await
                })
            })
            .await
            .map_err(|e| anyhow::anyhow!("party thread: {e}"))?
            .map_err(|e| anyhow::anyhow!("{e:?}"))
        },
    )
    .await
    .expect_ok()
    .expect_eq();
    Ok(())
}

fn system_runs(runs: usize) -> anyhow::Result<(Vec<Duration>, Duration)> {
    let dir = std::env::temp_dir().join(format!("custody-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let layout = Layout::loopback(
        dir.clone(),
        3,
        std::env::current_exe()?,
        free_port()?,
        free_port()?,
    );
    layout.ensure(PrimeSource::TestFixture)?;
    let cluster = Cluster::start(layout)?;
    let t = Instant::now();
    cluster.ensure_key("bench-key", 2, Duration::from_secs(600))?;
    let ceremony = t.elapsed();
    let mut out = Vec::new();
    for k in 0..runs {
        let id = format!("bench-{k}");
        let body = json!({"request_id": id, "key_id": "bench-key", "chain": "ethereum",
            "unsigned_tx": custody_tests::sample::eth_transfer(k as u64, [0x42; 20], 1)});
        let t = Instant::now();
        let (status, v) = cluster.api.post("/v1/sign-requests", &body)?;
        anyhow::ensure!(status == 202, "sign request refused: {v}");
        let r = poll_signed(&cluster, &id)?;
        out.push(t.elapsed());
        anyhow::ensure!(r, "request {id} did not sign");
    }
    drop(cluster);
    let _ = std::fs::remove_dir_all(&dir);
    Ok((out, ceremony))
}

fn poll_signed(cluster: &Cluster, id: &str) -> anyhow::Result<bool> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let (_, v) = cluster.api.get(&format!("/v1/sign-requests/{id}"))?;
        match v["status"].as_str() {
            Some("signed") => return Ok(true),
            Some("failed") | Some("denied") => return Ok(false),
            _ => std::thread::sleep(Duration::from_millis(5)),
        }
    }
    Ok(false)
}

fn pct(v: &[Duration], p: f64) -> Duration {
    let mut s = v.to_vec();
    s.sort();
    let i = ((s.len() as f64 - 1.0) * p).round() as usize;
    s.get(i).copied().unwrap_or_default()
}

fn report(lib: &[Duration], sys: &[Duration], ceremony: Duration) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let (l50, s50) = (pct(lib, 0.5), pct(sys, 0.5));
    println!(
        "| measure (2-of-3, num-bigint, {} runs) | p50 | p90 | ratio to library p50 |",
        lib.len()
    );
    println!("|---|---|---|---|");
    println!(
        "| library in-process full signing | {:.0} ms | {:.0} ms | 1.00 |",
        ms(l50),
        ms(pct(lib, 0.9))
    );
    println!(
        "| REST API sign over TLS (POST to signed) | {:.0} ms | {:.0} ms | {:.2} |",
        ms(s50),
        ms(pct(sys, 0.9)),
        s50.as_secs_f64() / l50.as_secs_f64().max(1e-9)
    );
    println!(
        "| key ceremony via API (DKG + aux info, test-only primes) | {:.1} s | | |",
        ceremony.as_secs_f64()
    );
}
