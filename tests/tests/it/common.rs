use std::{
    sync::{OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard},
    time::Duration,
};

use custody_tests::cluster::{free_port, Cluster, Layout, PrimeSource};
use proto::api::KeyInfo;

pub const KEY: &str = "it-key";

pub struct Shared {
    pub cluster: Cluster,
    pub key: KeyInfo,
}

static SHARED: OnceLock<Result<RwLock<Shared>, String>> = OnceLock::new();

fn init() -> Result<RwLock<Shared>, String> {
    // Set up once; a failure is remembered so that every test reports it instead of retrying.
    try_init().map_err(|e| format!("{e:#}"))
}

fn try_init() -> anyhow::Result<RwLock<Shared>> {
    let dir = std::env::temp_dir().join(format!("custody-it-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let layout = Layout::loopback(
        dir,
        3,
        env!("CARGO_BIN_EXE_devnet").into(),
        free_port()?,
        free_port()?,
    );
    layout.ensure(PrimeSource::TestFixture)?;
    let cluster = Cluster::start(layout)?;
    let key = cluster.ensure_key(KEY, 2, Duration::from_secs(300))?;
    Ok(RwLock::new(Shared { cluster, key }))
}

fn get() -> &'static RwLock<Shared> {
    match SHARED.get_or_init(init) {
        Ok(s) => s,
        Err(e) => panic!("cluster setup failed: {e}"),
    }
}

/// Shared cluster, read access (all nodes up).
pub fn shared() -> RwLockReadGuard<'static, Shared> {
    get().read().unwrap_or_else(|p| p.into_inner())
}

/// Shared cluster, exclusive access (may stop and restart nodes; must leave all nodes up).
pub fn exclusive() -> RwLockWriteGuard<'static, Shared> {
    get().write().unwrap_or_else(|p| p.into_inner())
}

/// A fresh request id.
pub fn rid(tag: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::SeqCst)
    )
}
