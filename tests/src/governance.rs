//! The people of a devnet or test cluster: three security officers (2-of-3 sign policies and
//! unfreezes), one guardian (vetoes and freezes) and three approvers, each an Ed25519 key file
//! in `governance/` (the same format `policy keygen` writes), plus the signed policy bundle that
//! every node is configured with.
//!
//! The policy (`governance/policy.toml`) covers:
//! - Sepolia (`eth`, `test-token`) and regtest (`btc`) for the devnet and the general tests, with
//!   a 60-second time-lock and one approval at or above 1 ETH (the README walkthrough);
//! - Holesky (`gate`): per-transaction limit 5000 wei, two approvals at or above 500 wei and a
//!   20-second time-lock at or above 1000 wei (the policy tests);
//! - Hoodi (`vel`): at most 30 wei per 24 hours per key (the velocity test); `vel-token`, at
//!   most 30 units per 24 hours per key, moved by ERC-20 transfers and by the `vel-vault`'s
//!   `settle` calls alike (the test of a window filled by both).

use std::path::{Path, PathBuf};

use anyhow::Context;
use ed25519_dalek::SigningKey;
use rand::RngCore;

/// Key files, by role.
pub const OFFICERS: [&str; 3] = ["officer-1", "officer-2", "officer-3"];
/// The guardian.
pub const GUARDIAN: &str = "guardian-1";
/// Approvers (group `ops`).
pub const APPROVERS: [&str; 3] = ["approver-1", "approver-2", "approver-3"];
/// Chain id of the policy tests' chain (Holesky).
pub const GATE_CHAIN: u64 = 17_000;
/// The devnet policy's settlement vault (`[contracts.vault]` on Sepolia).
pub const VAULT: &str = "0x4444444444444444444444444444444444444444";
/// The devnet policy's test token (`[assets.test-token]` on Sepolia).
pub const TEST_TOKEN: &str = "0x3333333333333333333333333333333333333333";
/// Chain id of the velocity test's chain (Hoodi).
pub const VELOCITY_CHAIN: u64 = 560_048;
/// The velocity-limited token on Hoodi (`[assets.vel-token]`).
pub const VEL_TOKEN: &str = "0x5555555555555555555555555555555555555555";
/// The vault on Hoodi whose `settle` is counted as `vel-token` (`[contracts.vel-vault]`).
pub const VEL_VAULT: &str = "0x6666666666666666666666666666666666666666";
/// Keys the policy names: the devnet's (default `--key-id`), the tests' and the bench's.
pub const TEST_KEYS: [&str; 11] = [
    "devnet-key",
    "it-key",
    "bench-key",
    "gate-key",
    "vel-key",
    "frz-key",
    "inc-key",
    "pool-key",
    "acct-key",
    "life-key",
    "bcast-key",
];

/// The `governance/` directory of a cluster.
pub struct Governance {
    /// Directory.
    pub dir: PathBuf,
}

impl Governance {
    /// Governance of the cluster at `cluster_dir`.
    pub fn at(cluster_dir: &Path) -> Self {
        Self {
            dir: cluster_dir.join("governance"),
        }
    }

    /// Path of a key file.
    pub fn key_file(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.key"))
    }

    /// Reads a key.
    pub fn key(&self, name: &str) -> anyhow::Result<SigningKey> {
        let text = std::fs::read_to_string(self.key_file(name))?;
        let mut seed = [0u8; 32];
        hex::decode_to_slice(text.trim(), &mut seed).context("malformed key file")?;
        Ok(SigningKey::from_bytes(&seed))
    }

    /// Hex public key.
    pub fn public(&self, name: &str) -> anyhow::Result<String> {
        Ok(hex::encode(self.key(name)?.verifying_key().as_bytes()))
    }

    /// The signed bundle every node loads at start.
    pub fn bundle_file(&self) -> PathBuf {
        self.dir.join("policy.bundle.json")
    }

    /// Creates missing keys, the policy file and its bundle (signed by officers 1 and 2).
    pub fn ensure(&self) -> anyhow::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        for name in OFFICERS.iter().chain(&APPROVERS).chain([&GUARDIAN]) {
            let f = self.key_file(name);
            if !f.exists() {
                let mut seed = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut seed);
                crate::pki::write_private(&f, format!("{}\n", hex::encode(seed)).as_bytes())?;
            }
        }
        if !self.bundle_file().exists() {
            let toml = self.policy_toml(1)?;
            std::fs::write(self.dir.join("policy.toml"), &toml)?;
            let bundle = self.bundle(&toml, &OFFICERS[..2])?;
            std::fs::write(self.bundle_file(), bundle.to_json())?;
        }
        Ok(())
    }

    /// A bundle of `toml` signed by `officers`.
    pub fn bundle(&self, toml: &str, officers: &[&str]) -> anyhow::Result<policy::Bundle> {
        let mut b = policy::Bundle::new(toml.to_string());
        for o in officers {
            b.sign(&self.key(o)?)?;
        }
        Ok(b)
    }

    /// The `[policy]` section of every node's configuration.
    pub fn node_section(&self) -> anyhow::Result<String> {
        let officers: Vec<String> = OFFICERS
            .iter()
            .map(|o| self.public(o).map(|k| format!("\"{k}\"")))
            .collect::<Result<_, _>>()?;
        Ok(format!(
            "\n# Pinned here, never taken from a policy or the coordinator.\n[policy]\nofficers = [{}]\nthreshold = 2\nguardians = [\"{}\"]\nbundle = \"{}\"\n",
            officers.join(", "),
            self.public(GUARDIAN)?,
            self.bundle_file().display()
        ))
    }

    /// The policy file, at `version`.
    pub fn policy_toml(&self, version: u64) -> anyhow::Result<String> {
        let approvers: Vec<String> = APPROVERS
            .iter()
            .map(|a| self.public(a).map(|k| format!("\"{k}\"")))
            .collect::<Result<_, _>>()?;
        let keys: String = TEST_KEYS
            .iter()
            .map(|k| {
                let assets = match *k {
                    "gate-key" | "frz-key" => "[\"gate\"]",
                    "vel-key" => "[\"vel\", \"vel-token\"]",
                    "acct-key" => "[\"eth\", \"btc\", \"eip191\", \"vel\"]",
                    _ => "[\"eth\", \"test-token\", \"btc\", \"eip191\"]",
                };
                format!("[keys.{k}]\nassets = {assets}\n\n")
            })
            .collect();
        Ok(format!(
            r#"# Devnet and test policy. See tests/src/governance.rs and docs/policy.md.
version = {version}
name = "devnet"

[chains.sepolia]
id = "ethereum:11155111"
max_fee = "1_000_000_000_000_000_000"
contract_calls = true
messages = true

[chains.regtest]
id = "bitcoin:regtest"
max_fee = 10_000_000
messages = true

[chains.eip191]
id = "ethereum:0" # EIP-191 messages name no chain
max_fee = 1
messages = true

[chains.holesky]
id = "ethereum:{GATE_CHAIN}"
max_fee = "1_000_000_000_000_000"

[chains.hoodi]
id = "ethereum:{VELOCITY_CHAIN}"
max_fee = "1_000_000_000_000_000"
contract_calls = true

[approvers.ops]
keys = [{approvers}]

[assets.eth]
chain = "sepolia"
asset = "native"
per_tx = "100_000_000_000_000_000_000" # 100 ETH

[[assets.eth.timelock]]
at_or_above = "1_000_000_000_000_000_000" # 1 ETH
delay = "60s"

[[assets.eth.approval]]
at_or_above = "1_000_000_000_000_000_000" # 1 ETH
require = {{ ops = 1 }}

[assets.eip191]
chain = "eip191"
asset = "native"
per_tx = 1

[assets.test-token]
chain = "sepolia"
asset = "erc20:0x3333333333333333333333333333333333333333"
per_tx = "1_000_000_000_000_000_000_000"

[assets.btc]
chain = "regtest"
asset = "native"
per_tx = 2_100_000_000_000_000

[assets.gate]
chain = "holesky"
asset = "native"
per_tx = 5000

[[assets.gate.timelock]]
at_or_above = 1000
delay = "20s"

[[assets.gate.approval]]
at_or_above = 500
require = {{ ops = 2 }}

[assets.vel]
chain = "hoodi"
asset = "native"
per_tx = 100

[[assets.vel.velocity]]
window = "24h"
max = 30

[assets.vel-token]
chain = "hoodi"
asset = "erc20:{VEL_TOKEN}"
per_tx = 100

[[assets.vel-token.velocity]]
window = "24h"
max = 30

# Every client account (intents naming an `account`) is held to this class, with its own ledger.
[account_classes.default.limits.btc]
per_tx = 1_000_000 # 0.01 BTC per withdrawal

[[account_classes.default.limits.btc.velocity]]
window = "24h"
max = 5_000_000 # 0.05 BTC per account per day

# The venue's settlement vault: `settle` moves test tokens to `to`, at most 500 per call.
[contracts.vault]
chain = "sepolia"
address = "{VAULT}"

[contracts.vault.functions.settle]
signature = "settle(bytes32 batch, address to, uint256 amount)"
amount = "amount"
asset = "test-token"
recipient = "to"
args.amount = {{ max = "500_000_000_000_000_000_000" }} # 500 tokens

# A vault on Hoodi whose `settle` moves `vel-token`: the same velocity window as its transfers.
[contracts.vel-vault]
chain = "hoodi"
address = "{VEL_VAULT}"

[contracts.vel-vault.functions.settle]
signature = "settle(bytes32 batch, address to, uint256 amount)"
amount = "amount"
asset = "vel-token"
recipient = "to"

# EIP-2612 permits of the test token: an allowance of `value` to `spender`, counted like a transfer.
[typed_data.test-token-permit]
chain = "sepolia"
verifying_contract = "{TEST_TOKEN}"
name = "Test Token"
version = "1"
primary_type = "Permit"
permit = "test-token"

{keys}[destinations]
require_allowlist = false
"#,
            approvers = approvers.join(", "),
        ))
    }
}
