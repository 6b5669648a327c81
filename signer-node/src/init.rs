//! `signer-node init`: create the store, the identity keys and the Paillier safe primes.

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};

use crate::{
    identity::{NodeIdentity, PublicIdentity, IDENTITY_RECORD},
    mpc::Primes,
    plan::PRIMES_RECORD,
    seal::KdfParams,
    secret::{to_secret_json, Passphrase},
    store::{Store, StoreError},
};

/// Bits of each safe prime (cggmp24's 128-bit security level).
const PRIME_BITS: u32 = 1536;

/// File (public) where `init` writes the node's identity for the roster.
pub const IDENTITY_FILE: &str = "identity.json";

/// Init errors.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    /// Invalid node id.
    #[error("invalid node id `{0}`: use 1-64 characters of [A-Za-z0-9._-]")]
    NodeId(String),
    /// Store problem.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// File problem.
    #[error("cannot write `{path}`: {msg}")]
    Io {
        /// File.
        path: String,
        /// Error.
        msg: String,
    },
}

/// Generates the four safe primes, two threads at a time, each with a ChaCha20 CSPRNG seeded
/// once from the OS. `bar`, if given, advances once per prime.
pub fn generate_primes(bar: Option<&ProgressBar>) -> Primes {
    use cggmp24::backend::Integer;
    let mut primes: Vec<Integer> = Vec::with_capacity(4);
    for _pair in 0..2 {
        let pair: Vec<Integer> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..2)
                .map(|_| {
                    s.spawn(|| {
                        let mut rng = crate::mpc::rng();
                        Integer::generate_safe_prime(&mut rng, PRIME_BITS)
                    })
                })
                .collect();
            hs.into_iter().filter_map(|h| h.join().ok()).collect()
        });
        for p in pair {
            primes.push(p);
            if let Some(b) = bar {
                b.inc(1);
            }
        }
    }
    // Two joined threads per pair always yield 4 primes of the right size; fall back to the
    // library's own generator if a thread died.
    match <[Integer; 4]>::try_from(primes)
        .ok()
        .and_then(|a| Primes::try_from(a).ok())
    {
        Some(p) => p,
        None => Primes::generate(&mut crate::mpc::rng()),
    }
}

/// Fresh Paillier primes, with a progress bar on the terminal when `progress`.
fn fresh_primes(progress: bool) -> Primes {
    let bar = if progress {
        let b = ProgressBar::new(4);
        b.set_style(
            ProgressStyle::with_template(
                "{spinner} generating Paillier safe primes [{bar:30}] {pos}/{len} ({elapsed})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        b.enable_steady_tick(std::time::Duration::from_millis(200));
        b
    } else {
        ProgressBar::hidden()
    };
    let p = generate_primes(Some(&bar));
    bar.finish_and_clear();
    p
}

/// Stores spare Paillier primes in a stopped node's store, so that the next aux-info ceremony
/// (a reshare to a new guardian set) starts at once instead of generating them. `primes` as in
/// [`init_node`]. Returns `false`, changing nothing, when the node holds spare primes already.
pub fn spare_primes(
    store: &Store,
    primes: Option<Primes>,
    progress: bool,
) -> Result<bool, InitError> {
    if store.get_secret(PRIMES_RECORD)?.is_some() {
        return Ok(false);
    }
    let primes = primes.unwrap_or_else(|| fresh_primes(progress));
    let sealed = to_secret_json(&primes).map_err(|e| InitError::Io {
        path: "primes".into(),
        msg: e.to_string(),
    })?;
    drop(primes);
    store.put_secret(PRIMES_RECORD, sealed.expose_secret())?;
    Ok(true)
}

/// Initialises a node's data directory. `primes` lets tests inject committed test-only primes;
/// production passes `None` and generates fresh ones.
pub fn init_node(
    dir: &Path,
    node_id: &str,
    passphrase: &Passphrase,
    primes: Option<Primes>,
    params: KdfParams,
    progress: bool,
) -> Result<PublicIdentity, InitError> {
    if !proto::api::valid_node_id(node_id) {
        return Err(InitError::NodeId(node_id.to_string()));
    }
    let store = Store::create(dir, node_id, passphrase, params)?;
    let identity = NodeIdentity::generate(node_id);
    store.put_secret(IDENTITY_RECORD, &identity.to_secret_bytes())?;
    spare_primes(&store, primes, progress)?;
    let public = identity.public();
    let path = dir.join(IDENTITY_FILE);
    let json = serde_json::to_string_pretty(&public).unwrap_or_default();
    std::fs::write(&path, json + "\n").map_err(|e| InitError::Io {
        path: path.display().to_string(),
        msg: e.to_string(),
    })?;
    Ok(public)
}
