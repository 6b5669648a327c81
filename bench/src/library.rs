//! The library baseline: cggmp24 in one process, each party on its own blocking thread of a
//! 2-worker tokio runtime (round-based's async simulator), i.e. the protocol's CPU cost without
//! network, TLS, envelopes or storage. Keys come from an in-process DKG + aux info with the
//! committed TEST-ONLY primes.

use std::time::{Duration, Instant};

use anyhow::Context;
use cggmp24::{security_level::SecurityLevel128, supported_curves::Secp256k1, ExecutionId};
use sha2::Sha256;

pub type KeyShare = cggmp24::KeyShare<Secp256k1, SecurityLevel128>;
type Presig = (
    cggmp24::signing::Presignature<Secp256k1>,
    cggmp24::signing::PresignaturePublicData<Secp256k1>,
);

/// Runs one party's protocol on its own blocking thread (as the node does).
async fn on_thread<T, E>(f: impl FnOnce() -> Result<T, E> + Send + 'static) -> anyhow::Result<T>
where
    T: Send + 'static,
    E: std::fmt::Debug + Send + 'static,
{
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| anyhow::anyhow!("party thread: {e}"))?
        .map_err(|e| anyhow::anyhow!("{e:?}"))
}

/// t-of-n key shares from an in-process ceremony.
pub async fn keys(n: u16, t: u16) -> anyhow::Result<Vec<KeyShare>> {
    let primes = custody_tests::test_primes()?;
    let eid = ExecutionId::new(b"bench-keygen");
    let incomplete = round_based::sim::async_env::run(n, |i, party| async move {
        let mut rng = signer_node::mpc::rng();
        cggmp24::keygen::<Secp256k1>(eid, i, n)
            .set_threshold(t)
            .hd_wallet(true)
            .start(&mut rng, party)
            .await
    })
    .await
    .expect_ok()
    .into_vec();
    let eid = ExecutionId::new(b"bench-aux");
    let aux = round_based::sim::async_env::run_with_setup(
        primes.into_iter().take(n as usize),
        |i, party, p| async move {
            on_thread(move || {
                futures::executor::block_on(async move {
                    let mut rng = signer_node::mpc::rng();
                    cggmp24::aux_info_gen(eid, i, n, p)
                        .start(&mut rng, party)
                        .await
                })
            })
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

fn t_of(shares: &[KeyShare]) -> u16 {
    use cggmp24::key_share::AnyKeyShare;
    shares.first().map(|s| s.min_signers()).unwrap_or(2)
}

/// One full interactive signing by the first t parties.
pub async fn sign(shares: &[KeyShare], nonce: u8) -> anyhow::Result<()> {
    let t = t_of(shares);
    let data = cggmp24::DataToSign::digest::<sha3::Keccak256>(&[nonce; 64]);
    let eid_bytes = [nonce; 32];
    round_based::sim::async_env::run_with_setup(
        shares.iter().take(t as usize).cloned(),
        |i, party, share| async move {
            on_thread(move || {
                futures::executor::block_on(async move {
                    let parties: Vec<u16> = (0..t).collect();
                    let mut rng = signer_node::mpc::rng();
                    cggmp24::signing(ExecutionId::new(&eid_bytes), i, &parties, &share)
                        .set_digest::<Sha256>()
                        .sign(&mut rng, party, &data)
                        .await
                })
            })
            .await
        },
    )
    .await
    .expect_ok()
    .expect_eq();
    Ok(())
}

/// One presignature of the first t parties.
pub async fn presign(shares: &[KeyShare], nonce: u64) -> anyhow::Result<Vec<Presig>> {
    let t = t_of(shares);
    let mut eid_bytes = [0u8; 32];
    eid_bytes[..8].copy_from_slice(&nonce.to_be_bytes());
    eid_bytes[8] = 0x50;
    Ok(round_based::sim::async_env::run_with_setup(
        shares.iter().take(t as usize).cloned(),
        |i, party, share| async move {
            on_thread(move || {
                futures::executor::block_on(async move {
                    let parties: Vec<u16> = (0..t).collect();
                    let mut rng = signer_node::mpc::rng();
                    cggmp24::signing(ExecutionId::new(&eid_bytes), i, &parties, &share)
                        .set_digest::<Sha256>()
                        .generate_presignature(&mut rng, party)
                        .await
                })
            })
            .await
        },
    )
    .await
    .expect_ok()
    .into_vec())
}

/// Latencies of `runs` sequential full signings and presignings.
pub fn latencies(
    rt: &tokio::runtime::Runtime,
    shares: &[KeyShare],
    runs: usize,
) -> anyhow::Result<(Vec<Duration>, Vec<Duration>)> {
    let (mut full, mut pre) = (Vec::new(), Vec::new());
    for k in 0..runs {
        let t = Instant::now();
        rt.block_on(sign(shares, k as u8))?;
        full.push(t.elapsed());
        let t = Instant::now();
        rt.block_on(presign(shares, k as u64))?;
        pre.push(t.elapsed());
    }
    Ok((full, pre))
}

/// Presignatures per second with `parallel` presign protocols running at once on the same
/// runtime (the library's rate on these cores).
pub fn presign_rate(
    rt: &tokio::runtime::Runtime,
    shares: &[KeyShare],
    total: usize,
    parallel: usize,
) -> anyhow::Result<f64> {
    let t = Instant::now();
    rt.block_on(async {
        let mut next = 0usize;
        while next < total {
            let batch =
                (next..(next + parallel).min(total)).map(|k| presign(shares, 1000 + k as u64));
            for r in futures::future::join_all(batch).await {
                r?;
            }
            next += parallel;
        }
        anyhow::Ok(())
    })?;
    Ok(total as f64 / t.elapsed().as_secs_f64())
}

/// Microseconds to issue t partial signatures from a presignature and combine them.
pub fn issue_and_combine(rt: &tokio::runtime::Runtime, shares: &[KeyShare]) -> anyhow::Result<f64> {
    let presigs = rt.block_on(presign(shares, 9999))?;
    let public = presigs
        .first()
        .map(|p| p.1.clone())
        .context("no presignature")?;
    let data = cggmp24::DataToSign::<Secp256k1>::digest::<sha3::Keccak256>(b"bench");
    let t = Instant::now();
    let partials: Vec<_> = presigs
        .into_iter()
        .map(|(p, _)| p.issue_partial_signature(data))
        .collect();
    let sig = cggmp24::PartialSignature::combine(&partials, &public, data)
        .context("partials do not combine")?;
    let us = t.elapsed().as_secs_f64() * 1e6;
    let pk = shares
        .first()
        .map(|s| s.shared_public_key)
        .context("no share")?;
    sig.verify(&pk, &data)
        .map_err(|_| anyhow::anyhow!("combined signature invalid"))?;
    Ok(us)
}
