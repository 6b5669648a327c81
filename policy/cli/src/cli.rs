//! Command-line arguments (clap derive).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

/// Withdrawal policy tooling for security officers.
#[derive(Parser, Debug)]
#[command(name = "policy", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Lint a policy file: every error with file, line and column.
    Check {
        /// The policy TOML file.
        file: PathBuf,
        /// Print a JSON report instead of diagnostics.
        #[arg(long)]
        json: bool,
    },
    /// Print the policy hash (SHA-256 over the canonical form).
    Hash {
        /// The policy TOML file.
        file: PathBuf,
        /// Print the file, version and hash as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Sign a policy as a security officer, adding the signature to a bundle.
    Sign {
        /// The policy TOML file, or an existing bundle (`.json`) to add a signature to.
        file: PathBuf,
        /// The officer's secret key file (from `policy keygen`).
        #[arg(long)]
        key: PathBuf,
        /// The bundle to create or extend; defaults to FILE with the extension `.bundle.json`.
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the bundle's path, the hash, the officer and the signature count as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify a bundle against pinned officer keys.
    Verify {
        /// The bundle JSON file.
        bundle: PathBuf,
        /// Pinned officer public keys: hex, or files with one hex key per line.
        #[arg(long, value_delimiter = ',', required = true)]
        officers: Vec<String>,
        /// How many distinct pinned officers must have signed.
        #[arg(long)]
        threshold: usize,
        /// Refuse the bundle unless its version is above this one.
        #[arg(long)]
        installed_version: Option<u64>,
        /// Print the verdict (version, hash, signers) as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Evaluate a withdrawal intent against a policy, as a signer node would.
    Eval {
        /// The policy TOML file.
        file: PathBuf,
        /// The withdrawal intent (JSON).
        #[arg(long)]
        intent: PathBuf,
        /// Past signed withdrawals (JSON array); none if omitted.
        #[arg(long)]
        history: Option<PathBuf>,
        /// Approvals (JSON array); none if omitted.
        #[arg(long)]
        approvals: Option<PathBuf>,
        /// Evaluation time, unix seconds; defaults to the current time.
        #[arg(long)]
        now: Option<u64>,
        /// When the node first saw the request, unix seconds; defaults to `--now`.
        #[arg(long)]
        first_seen: Option<u64>,
        /// The request id approvals are bound to.
        #[arg(long, default_value = "cli-eval")]
        request_id: String,
        /// The payload hash approvals are bound to (hex; `policy approve` prints it).
        #[arg(long, value_parser = parse_hash32)]
        payload_hash: Option<[u8; 32]>,
        /// The request's expiry, unix seconds.
        #[arg(long)]
        expires_at: Option<u64>,
        /// Evaluate as if the node had frozen the key.
        #[arg(long)]
        frozen: bool,
        /// Print the decision as JSON (the audit-log form).
        #[arg(long)]
        json: bool,
    },
    /// Generate an Ed25519 key for an officer or an approver.
    Keygen {
        /// Where to write the secret key (mode 0600; never overwritten).
        #[arg(long)]
        out: PathBuf,
        /// Print the key file and public key as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Print the public key of a secret key file.
    Pubkey {
        /// The secret key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Sign an approval for a withdrawal request, as a member of an approver group.
    ///
    /// The intent comes from `--intent` (JSON), or is decoded here from `--sign-request` (the
    /// body the client posted) with the key's `--public-key`: approvers sign what they decoded
    /// themselves, never a summary handed to them.
    Approve {
        /// The policy TOML file, or the signed bundle (`.json`), the approval is bound to.
        file: PathBuf,
        /// The withdrawal intent (JSON).
        #[arg(long, conflicts_with = "sign_request")]
        intent: Option<PathBuf>,
        /// The sign-request body (JSON, as posted to `/v1/sign-requests`).
        #[arg(long, requires = "public_key")]
        sign_request: Option<PathBuf>,
        /// The key's compressed public key (hex, from `GET /v1/keys/{id}`).
        #[arg(long)]
        public_key: Option<String>,
        /// The request id (taken from `--sign-request` when omitted).
        #[arg(long)]
        request_id: Option<String>,
        /// With `--intent`: the hash of the exact payload to approve (hex, 32 bytes; the
        /// request's verdict view shows it). With `--sign-request` it is computed here.
        #[arg(long, value_parser = parse_hash32, conflicts_with = "sign_request")]
        payload_hash: Option<[u8; 32]>,
        /// For a request naming an `account`: the key's chain code (hex, `GET /v1/keys/{id}`
        /// shows it) and the account's number (`index` in `GET …/accounts/{name}`); the
        /// account's keys are derived here from `--public-key`.
        #[arg(long, requires = "account_index")]
        chain_code: Option<String>,
        /// The account's number `a` (its keys are `m/a/i`).
        #[arg(long, requires = "chain_code")]
        account_index: Option<u32>,
        /// The approver's secret key file.
        #[arg(long)]
        key: PathBuf,
        /// The approval is void from this time on (unix seconds).
        #[arg(long, conflicts_with = "expires_in")]
        expires_at: Option<u64>,
        /// The approval is void this many seconds from now.
        #[arg(long)]
        expires_in: Option<u64>,
        /// Append the approval to this JSON array file (created if missing).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Verify a proof-of-reserves report offline: every address key re-derived from the master
    /// key along its path, every address re-encoded, every attestation's signature checked.
    ReservesVerify {
        /// The report JSON (`report` of `GET /v1/keys/{id}/reserves/{report_id}`).
        report: PathBuf,
        /// The master public key the auditor expects (hex); the report must name it.
        #[arg(long)]
        public_key: Option<String>,
        /// Print the verdict as JSON.
        #[arg(long)]
        json: bool,
    },
    /// As a guardian, veto a sign request: prints the body for `POST …/cancel`.
    Veto {
        /// The request id.
        #[arg(long)]
        request_id: String,
        /// The guardian's secret key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// As a guardian, freeze a key: prints the body for `POST /v1/keys/{id}/freeze`.
    Freeze {
        /// The key id.
        #[arg(long)]
        key_id: String,
        /// The key's current freeze epoch (shown by `GET /v1/keys/{id}`; 0 if never unfrozen).
        #[arg(long, default_value_t = 0)]
        epoch: u64,
        /// The guardian's secret key file.
        #[arg(long)]
        key: PathBuf,
    },
    /// Draft or co-sign a membership order (refresh or reshare of a key), the body for
    /// `POST /v1/keys/{id}/refresh` or `…/reshare`.
    ReshareOrder {
        #[command(subcommand)]
        action: ReshareAction,
    },
    /// As an officer, sign an unfreeze: adds the signature to the body for
    /// `POST /v1/keys/{id}/unfreeze` in `--out` (created if missing), and prints it.
    Unfreeze {
        /// The key id.
        #[arg(long)]
        key_id: String,
        /// The epoch being ended (the key's current freeze epoch).
        #[arg(long)]
        epoch: u64,
        /// The officer's secret key file.
        #[arg(long)]
        key: PathBuf,
        /// The body file to create or extend.
        #[arg(long)]
        out: PathBuf,
    },
}

/// `policy reshare-order` actions.
#[derive(Subcommand, Debug)]
pub enum ReshareAction {
    /// Write an unsigned order to `--out` (every field the nodes check; the officers sign it
    /// next).
    Draft {
        /// The key id.
        #[arg(long)]
        key_id: String,
        /// The key's current share epoch (`epoch` of `GET /v1/keys/{id}`).
        #[arg(long)]
        epoch: u64,
        /// `refresh` (same guardians and threshold) or `reshare`.
        #[arg(long, value_parser = ["refresh", "reshare"])]
        kind: String,
        /// The key's guardians now, in order (`nodes` of `GET /v1/keys/{id}`), comma-separated.
        #[arg(long, value_delimiter = ',')]
        old: Vec<String>,
        /// The guardians after the change, in their new order; defaults to `--old`.
        #[arg(long, value_delimiter = ',')]
        new: Vec<String>,
        /// The new threshold t' (2 ≤ t' ≤ the number of new guardians).
        #[arg(long)]
        threshold: u16,
        /// A new guardian's public identity (its `identity.json`: `node_id`, `sign_key`,
        /// `dh_key`), compared out of band by fingerprint; once per new guardian.
        #[arg(long)]
        identity: Vec<PathBuf>,
        /// The order is void this many seconds from now.
        #[arg(long, default_value_t = 86_400)]
        expires_in: u64,
        /// The order file to write (refuses to overwrite).
        #[arg(long)]
        out: PathBuf,
    },
    /// As an officer, add your signature to an order file (rewritten in place) and print it.
    Sign {
        /// The order file.
        order: PathBuf,
        /// The officer's secret key file (from `policy keygen`).
        #[arg(long)]
        key: PathBuf,
    },
}

/// Parses 32 bytes of hex (an optional `0x` prefix allowed).
fn parse_hash32(s: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(s.trim_start_matches("0x"), &mut out)
        .map_err(|_| format!("expected 64 hex digits, found `{s}`"))?;
    Ok(out)
}
