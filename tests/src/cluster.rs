//! A cluster of real processes on loopback: one coordinator and n signer nodes, each started from
//! the multi-call `devnet` binary (`devnet coordinator run …`, `devnet signer-node run …`).

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context};
use proto::api::{KeyInfo, KeyStatus, SignRequestView};
use rand::RngCore;
use serde_json::{json, Value};

use crate::{api::Api, pki};

/// Where node Paillier primes come from.
pub enum PrimeSource {
    /// Fresh primes: `signer-node init` runs as a process and shows its progress bar.
    Fresh,
    /// TEST-ONLY committed primes (tests/fixtures), so CI does not spend minutes on them.
    TestFixture,
}

/// Layout of a cluster directory.
pub struct Layout {
    /// Root directory.
    pub dir: PathBuf,
    /// Node ids.
    pub nodes: Vec<String>,
    /// Multi-call binary.
    pub exe: PathBuf,
    /// API port.
    pub api_port: u16,
    /// Node link port.
    pub node_port: u16,
    /// Host name nodes dial and the coordinator certificate carries (`127.0.0.1` locally,
    /// `coordinator` under docker-compose).
    pub coordinator_host: String,
    /// Address the coordinator binds (`127.0.0.1` locally, `0.0.0.0` in a container).
    pub bind_host: String,
    /// Presignature pool depth per key and subset (`presign.default_depth`); 0 in tests, so
    /// background refills do not compete with them (the pool tests set a key's depth).
    pub presign_depth: u32,
    /// Whether nodes sign proof-of-reserves messages (`[scope] messages`); off by default.
    pub messages: bool,
    /// Whether nodes sign contract calls at all (`[scope] contract_calls`); on, so that the
    /// calls the devnet policy names (`[contracts.vault]`) can be signed.
    pub contract_calls: bool,
}

impl Layout {
    /// A loopback layout (what the devnet, the tests and the bench use).
    pub fn loopback(
        dir: PathBuf,
        nodes: usize,
        exe: PathBuf,
        api_port: u16,
        node_port: u16,
    ) -> Self {
        Self {
            dir,
            nodes: (1..=nodes).map(|i| format!("node-{i}")).collect(),
            exe,
            api_port,
            node_port,
            coordinator_host: "127.0.0.1".into(),
            bind_host: "127.0.0.1".into(),
            presign_depth: 0,
            messages: false,
            contract_calls: true,
        }
    }

    /// Cluster CA certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.join("pki/ca.pem")
    }

    fn node_dir(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// The API token, created on first setup.
    pub fn token(&self) -> anyhow::Result<String> {
        Ok(std::fs::read_to_string(self.dir.join("api-token"))?
            .trim()
            .to_string())
    }

    /// Creates everything that is missing: PKI, node stores, roster, configs, API token.
    pub fn ensure(&self, primes: PrimeSource) -> anyhow::Result<()> {
        std::fs::create_dir_all(self.dir.join("logs"))?;
        pki::ensure_pki(&self.dir.join("pki"), &self.nodes, &self.coordinator_host)?;
        self.init_nodes(self.nodes.len(), primes)?;
        self.write_roster()?;
        crate::governance::Governance::at(&self.dir).ensure()?;
        self.write_configs()
    }

    /// Initialises the first `count` nodes that are not initialised yet (`signer-node init`).
    /// The devnet test seeds some nodes with TEST-ONLY primes before running the devnet, which
    /// keeps a node it finds initialised.
    pub fn init_nodes(&self, count: usize, primes: PrimeSource) -> anyhow::Result<()> {
        let fixtures = match primes {
            PrimeSource::TestFixture => Some(crate::test_primes()?),
            PrimeSource::Fresh => None,
        };
        for (k, id) in self.nodes.iter().enumerate().take(count) {
            let nd = self.node_dir(id);
            let pass = nd.join("passphrase");
            if nd.join(signer_node::store::DB_FILE).exists() {
                continue;
            }
            std::fs::create_dir_all(&nd)?;
            let mut secret = [0u8; 24];
            rand::rngs::OsRng.fill_bytes(&mut secret);
            pki::write_private(&pass, hex::encode(secret).as_bytes())?;
            match &fixtures {
                Some(list) => {
                    let p = list.get(k).cloned().context("not enough fixture primes")?;
                    let pp = signer_node::secret::Passphrase::new(hex::encode(secret));
                    signer_node::init::init_node(&nd, id, &pp, Some(p), Default::default(), false)?;
                }
                None => {
                    eprintln!(
                        "initialising {id} ({}/{}): generating its Paillier safe primes",
                        k + 1,
                        self.nodes.len()
                    );
                    let st = Command::new(&self.exe)
                        .args(["signer-node", "init", "--node-id", id, "--data-dir"])
                        .arg(&nd)
                        .arg("--passphrase-file")
                        .arg(&pass)
                        .stdout(Stdio::null())
                        .status()?;
                    if !st.success() {
                        bail!("signer-node init failed for {id}");
                    }
                }
            }
        }
        Ok(())
    }

    fn write_roster(&self) -> anyhow::Result<()> {
        let mut ids = Vec::new();
        for id in &self.nodes {
            let text =
                std::fs::read_to_string(self.node_dir(id).join(signer_node::init::IDENTITY_FILE))?;
            ids.push(serde_json::from_str::<Value>(&text)?);
        }
        std::fs::write(
            self.dir.join("roster.json"),
            serde_json::to_string_pretty(&ids)?,
        )?;
        Ok(())
    }

    fn write_configs(&self) -> anyhow::Result<()> {
        let pki = self.dir.join("pki");
        let governance = crate::governance::Governance::at(&self.dir).node_section()?;
        for id in &self.nodes {
            let cfg = format!(
                "node_id = \"{id}\"\ndata_dir = \".\"\ncoordinator_addr = \"{}:{}\"\ncoordinator_name = \"{}\"\nca_cert = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\nroster = \"{}\"\n# /healthz and /readyz (plain HTTP, loopback only).\nhealth_listen = \"127.0.0.1:{}\"\n\n# What this node signs at all (devnet: Sepolia, Holesky, Hoodi and regtest; messages only with `devnet --messages`; contract calls that the policy names).\n[scope]\nethereum_chain_ids = [11155111, 17000, 560048]\nbitcoin_networks = [\"regtest\"]\nmessages = {}\ncontract_calls = {}\n{}",
                self.coordinator_host,
                self.node_port,
                self.coordinator_host,
                pki.join("ca.pem").display(),
                pki.join(format!("{id}.pem")).display(),
                pki.join(format!("{id}.key")).display(),
                self.dir.join("roster.json").display(),
                free_port()?,
                self.messages,
                self.contract_calls,
                governance,
            );
            std::fs::write(self.node_dir(id).join("node.toml"), cfg)?;
        }
        let token_file = self.dir.join("api-token");
        if !token_file.exists() {
            let mut t = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut t);
            pki::write_private(&token_file, hex::encode(t).as_bytes())?;
        }
        let hash = coordinator::cli::token_sha256(&self.token()?);
        let bind = &self.bind_host;
        let cd = self.dir.join("coordinator");
        std::fs::create_dir_all(&cd)?;
        let cfg = format!(
            "data_dir = \".\"\napi_listen = \"{bind}:{}\"\nnode_listen = \"{bind}:{}\"\nca_cert = \"{}\"\ncert = \"{}\"\nkey = \"{}\"\napi_token_sha256 = [\"{hash}\"]\napi_client_cert_names = [\"exchange.client\"]\ncredentials_file = \"credentials.json\"\n\n[limits]\n# The bench polls every 5 ms; the default is 100 requests/s per credential.\napi_rate_per_sec = 1000\n\n[presign]\ndefault_depth = {}\n",
            self.api_port,
            self.node_port,
            pki.join("ca.pem").display(),
            pki.join("coordinator.pem").display(),
            pki.join("coordinator.key").display(),
            self.presign_depth,
        );
        std::fs::write(cd.join("coordinator.toml"), cfg)?;
        Ok(())
    }

    /// Command line that runs node `id` (for tests that start it by hand).
    pub fn node_command(&self, id: &str) -> Command {
        let nd = self.node_dir(id);
        let mut c = Command::new(&self.exe);
        c.args(["signer-node", "run", "--config"])
            .arg(nd.join("node.toml"))
            .arg("--passphrase-file")
            .arg(nd.join("passphrase"))
            .env_remove(signer_node::cli::PASSPHRASE_ENV);
        c
    }
}

/// Environment variable that makes `devnet` child processes exit when their stdin closes.
pub const EXIT_WITH_PARENT: &str = "CUSTODY_EXIT_WITH_PARENT";

/// Picks a free loopback port.
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Running processes of a cluster. Dropping it kills them.
pub struct Cluster {
    /// Layout.
    pub layout: Layout,
    /// API client.
    pub api: Api,
    coordinator: Option<Child>,
    nodes: Vec<Option<Child>>,
    /// Kept open so children live exactly as long as this process.
    lifelines: Vec<std::process::ChildStdin>,
}

fn spawn_logged(
    mut cmd: Command,
    log: &Path,
    lifelines: &mut Vec<std::process::ChildStdin>,
) -> anyhow::Result<Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    let err = out.try_clone()?;
    cmd.stdin(Stdio::piped())
        .stdout(out)
        .stderr(err)
        .env(EXIT_WITH_PARENT, "1");
    let mut child = cmd.spawn()?;
    if let Some(stdin) = child.stdin.take() {
        lifelines.push(stdin);
    }
    Ok(child)
}

impl Cluster {
    /// Starts the coordinator and every node, and waits until all nodes are connected.
    pub fn start(layout: Layout) -> anyhow::Result<Self> {
        let mut c = Self::attach(layout)?;
        c.start_coordinator()?;
        for i in 0..c.nodes.len() {
            c.start_node(i)?;
        }
        c.wait_connected(&c.layout.nodes.clone(), Duration::from_secs(60))?;
        Ok(c)
    }

    /// A prepared layout with no process running yet, for a test that starts each process with
    /// its own command line ([`Self::start_coordinator_as`], [`Self::start_node_as`]).
    pub fn attach(layout: Layout) -> anyhow::Result<Self> {
        let api = Api::new(
            &format!("https://127.0.0.1:{}", layout.api_port),
            &layout.ca(),
            Some(layout.token()?),
        )?;
        Ok(Cluster {
            nodes: layout.nodes.iter().map(|_| None).collect(),
            layout,
            api,
            coordinator: None,
            lifelines: Vec::new(),
        })
    }

    /// (Re)starts the coordinator process.
    pub fn start_coordinator(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new(&self.layout.exe);
        cmd.args(["coordinator", "run", "--config"])
            .arg(self.layout.dir.join("coordinator/coordinator.toml"));
        self.start_coordinator_as(cmd)
    }

    /// Starts the coordinator with another command line and waits until it serves `/healthz`.
    pub fn start_coordinator_as(&mut self, cmd: Command) -> anyhow::Result<()> {
        self.coordinator = Some(spawn_logged(
            cmd,
            &self.layout.dir.join("logs/coordinator.log"),
            &mut self.lifelines,
        )?);
        let deadline = Instant::now() + Duration::from_secs(30);
        while self.api.get("/healthz").is_err() {
            if Instant::now() > deadline {
                bail!(
                    "coordinator did not come up; see {}",
                    self.layout.dir.join("logs/coordinator.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Ok(())
    }

    /// (Re)starts node `i`.
    pub fn start_node(&mut self, i: usize) -> anyhow::Result<()> {
        let cmd = self.layout.node_command(&self.layout.nodes[i]);
        self.start_node_as(i, cmd)
    }

    /// Kills the coordinator (SIGKILL).
    pub fn kill_coordinator(&mut self) {
        if let Some(mut c) = self.coordinator.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts node `i` and waits until every node is connected and node `i` has caught up with
    /// the coordinator's replay (it signs nothing before: `node.syncing`).
    pub fn start_node_and_wait(&mut self, i: usize) -> anyhow::Result<()> {
        self.start_node(i)?;
        let all = self.layout.nodes.clone();
        self.wait_connected(&all, Duration::from_secs(30))?;
        self.wait_synced(i, Duration::from_secs(30))
    }

    /// Waits until node `i`'s `/readyz` says it has caught up (`checks.sync` is `ok`); a node
    /// without a health port is not waited for.
    pub fn wait_synced(&self, i: usize, timeout: Duration) -> anyhow::Result<()> {
        let Ok(url) = self.node_health_url(i) else {
            return Ok(());
        };
        let deadline = Instant::now() + timeout;
        loop {
            let body: Option<serde_json::Value> = reqwest::blocking::get(format!("{url}/readyz"))
                .ok()
                .and_then(|r| r.json().ok());
            let sync = body.as_ref().map(|b| b["checks"]["sync"].clone());
            if sync.as_ref().and_then(|s| s.as_str()) == Some("ok") {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "node {} did not catch up with the coordinator: {sync:?}",
                    i + 1
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Kills node `i` (SIGKILL), starts it again and waits until every node is connected.
    pub fn restart_node(&mut self, i: usize) -> anyhow::Result<()> {
        self.kill_node(i)?;
        self.start_node_and_wait(i)
    }

    /// Kills node `i` (SIGKILL) and waits for the coordinator to notice.
    pub fn kill_node(&mut self, i: usize) -> anyhow::Result<()> {
        if let Some(mut c) = self.nodes[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let id = self.layout.nodes[i].clone();
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.connected()?.contains(&id) {
            if Instant::now() > deadline {
                bail!("coordinator still lists {id} as connected");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Starts node `i` with another command line (e.g. a test's compromised node binary).
    pub fn start_node_as(&mut self, i: usize, cmd: Command) -> anyhow::Result<()> {
        let id = self.layout.nodes[i].clone();
        self.nodes[i] = Some(spawn_logged(
            cmd,
            &self.layout.dir.join(format!("logs/{id}.log")),
            &mut self.lifelines,
        )?);
        Ok(())
    }

    /// Sends SIGTERM to node `i` and waits up to `timeout` for it to exit.
    pub fn terminate_node(
        &mut self,
        i: usize,
        timeout: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let child = self.nodes[i].take();
        terminate(child, timeout)
    }

    /// Sends SIGTERM to the coordinator and waits up to `timeout` for it to exit.
    pub fn terminate_coordinator(
        &mut self,
        timeout: Duration,
    ) -> anyhow::Result<std::process::ExitStatus> {
        let child = self.coordinator.take();
        terminate(child, timeout)
    }

    /// Process id of the coordinator, if it runs.
    pub fn coordinator_pid(&self) -> Option<u32> {
        self.coordinator.as_ref().map(Child::id)
    }

    /// `http://127.0.0.1:port` of node `i`'s health endpoints (from its `node.toml`).
    pub fn node_health_url(&self, i: usize) -> anyhow::Result<String> {
        let cfg = std::fs::read_to_string(
            self.layout
                .node_dir(&self.layout.nodes[i])
                .join("node.toml"),
        )?;
        let addr = cfg
            .lines()
            .find_map(|l| l.strip_prefix("health_listen = "))
            .map(|v| v.trim().trim_matches('"').to_string())
            .ok_or_else(|| anyhow::anyhow!("no health_listen in node.toml"))?;
        Ok(format!("http://{addr}"))
    }

    /// Process id of node `i`, if it runs.
    pub fn node_pid(&self, i: usize) -> Option<u32> {
        self.nodes[i].as_ref().map(Child::id)
    }

    /// Node ids the coordinator lists as connected.
    pub fn connected(&self) -> anyhow::Result<Vec<String>> {
        let (_, v) = self.api.get("/v1/nodes")?;
        Ok(serde_json::from_value(v["connected"].clone())?)
    }

    /// Waits until every id in `ids` is connected and has caught up with the coordinator's
    /// replay (its `/readyz` shows `sync: ok`), so that it can sign.
    pub fn wait_connected(&self, ids: &[String], timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            let c = self.connected().unwrap_or_default();
            if ids.iter().all(|i| c.contains(i)) {
                for id in ids {
                    if let Some(i) = self.layout.nodes.iter().position(|n| n == id) {
                        let left = deadline.saturating_duration_since(Instant::now());
                        self.wait_synced(i, left.max(Duration::from_secs(1)))?;
                    }
                }
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "nodes {ids:?} not all connected (connected: {c:?}); logs in {}",
                    self.layout.dir.join("logs").display()
                );
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Returns the key, creating it (DKG + aux info) if it does not exist yet.
    pub fn ensure_key(&self, key_id: &str, t: u16, timeout: Duration) -> anyhow::Result<KeyInfo> {
        self.ensure_key_on(key_id, t, &self.layout.nodes, timeout)
    }

    /// [`Cluster::ensure_key`] with the key's guardians given (a subset of the nodes).
    pub fn ensure_key_on(
        &self,
        key_id: &str,
        t: u16,
        nodes: &[String],
        timeout: Duration,
    ) -> anyhow::Result<KeyInfo> {
        let (status, v) = self.api.get(&format!("/v1/keys/{key_id}"))?;
        if status == 404 {
            let (s, v) = self.api.post(
                "/v1/keys",
                &json!({"key_id": key_id, "threshold": t, "nodes": nodes}),
            )?;
            if s != 202 {
                bail!("create key failed: {s} {v}");
            }
        } else if serde_json::from_value::<KeyInfo>(v.clone())?.status == KeyStatus::Failed {
            bail!("key {key_id} failed: {v}");
        }
        self.wait_key(key_id, timeout)
    }

    /// Polls a key until it is ready or failed.
    pub fn wait_key(&self, key_id: &str, timeout: Duration) -> anyhow::Result<KeyInfo> {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, v) = self.api.get(&format!("/v1/keys/{key_id}"))?;
            let k: KeyInfo = serde_json::from_value(v.clone())?;
            match k.status {
                KeyStatus::Ready => return Ok(k),
                KeyStatus::Failed => bail!("key ceremony failed: {v}"),
                KeyStatus::Generating if Instant::now() > deadline => {
                    bail!("key not ready after {timeout:?}")
                }
                KeyStatus::Generating => std::thread::sleep(Duration::from_millis(250)),
            }
        }
    }

    /// Polls a sign request until its status is final.
    pub fn wait_request(
        &self,
        request_id: &str,
        timeout: Duration,
    ) -> anyhow::Result<SignRequestView> {
        let deadline = Instant::now() + timeout;
        loop {
            let (_, v) = self.api.get(&format!("/v1/sign-requests/{request_id}"))?;
            let r: SignRequestView = serde_json::from_value(v.clone())?;
            if r.status.is_final() {
                return Ok(r);
            }
            if Instant::now() > deadline {
                bail!("request {request_id} not final after {timeout:?}: {v}");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// SIGTERM, then wait (SIGKILL after `timeout`, reported as an error).
fn terminate(child: Option<Child>, timeout: Duration) -> anyhow::Result<std::process::ExitStatus> {
    let Some(mut child) = child else {
        bail!("process not running");
    };
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()?
        .success();
    if !ok {
        bail!("kill -TERM failed");
    }
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(st) = child.try_wait()? {
            return Ok(st);
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("process did not exit within {timeout:?} of SIGTERM");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for c in self
            .nodes
            .iter_mut()
            .chain(std::iter::once(&mut self.coordinator))
        {
            if let Some(mut c) = c.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
    }
}
