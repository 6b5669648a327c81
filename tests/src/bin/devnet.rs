//! `devnet`: one command for a local cluster on loopback — 3 signer nodes and a coordinator as
//! separate processes, generated certificates, embedded redb stores and a 2-of-3 key.
//!
//! It is also a multi-call binary: `devnet signer-node …`, `devnet coordinator …` and `devnet
//! policy …` run the real node, coordinator and policy CLIs, so one build gives the launcher (and
//! the runbook tests) every process it starts.

use std::time::Duration;

use anyhow::Context;
use clap::Parser;
use custody_tests::cluster::{Cluster, Layout, PrimeSource};
use custody_tests::devnet_cli::Args;
use serde_json::json;

fn main() -> std::process::ExitCode {
    let argv: Vec<String> = std::env::args().collect();
    // `policy` has exit codes of its own (0 ok, 1 refused or invalid, 2 usage).
    if argv.get(1).map(String::as_str) == Some("policy") {
        return custody_policy_cli::main_with(argv[1..].to_vec());
    }
    match run(argv) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("Error: {e:?}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(argv: Vec<String>) -> anyhow::Result<()> {
    if std::env::var_os(custody_tests::cluster::EXIT_WITH_PARENT).is_some() {
        exit_when_stdin_closes();
    }
    match argv.get(1).map(String::as_str) {
        Some("signer-node") => return signer_node::cli::main_with(argv[1..].to_vec()),
        Some("coordinator") => return coordinator::cli::main_with(argv[1..].to_vec()),
        Some("account-psbt") => return account_psbt(&argv[2..]),
        _ => {}
    }
    let args = Args::parse_from(&argv);
    let dir = std::path::absolute(&args.dir)?;
    let mut layout = Layout::loopback(
        dir.clone(),
        args.nodes + args.spare_nodes,
        std::env::current_exe()?,
        args.api_port,
        args.node_port,
    );
    layout.coordinator_host = args.coordinator_host.clone();
    layout.bind_host = args.bind.clone();
    layout.presign_depth = args.presign_depth;
    layout.messages = args.messages;
    layout.ensure(PrimeSource::Fresh)?;
    // The sample request names only the key id, so setup writes it too (the README's
    // container path copies it out of the volume).
    let sample = json!({
        "request_id": "devnet-sample-1",
        "key_id": args.key_id,
        "chain": "ethereum",
        "unsigned_tx": custody_tests::sample::eth_transfer(0, [0x11; 20], 1_000_000_000_000_000),
    });
    write_json(&dir, "sample-sign-request.json", &sample)?;
    if args.prepare_only {
        println!("prepared {}", dir.display());
        return Ok(());
    }
    eprintln!(
        "starting coordinator and {} signer nodes (logs in {})",
        args.nodes + args.spare_nodes,
        dir.join("logs").display()
    );
    let cluster = Cluster::start(layout)?;
    let spinner = indicatif::ProgressBar::new_spinner();
    spinner.set_message(format!(
        "key `{}`: distributed key generation and aux-info ceremony",
        args.key_id
    ));
    spinner.enable_steady_tick(Duration::from_millis(120));
    let guardians: Vec<String> = cluster
        .layout
        .nodes
        .iter()
        .take(args.nodes)
        .cloned()
        .collect();
    let key = cluster.ensure_key_on(
        &args.key_id,
        args.threshold,
        &guardians,
        Duration::from_secs(900),
    );
    spinner.finish_and_clear();
    let key = key?;
    write_more_samples(&dir, &key)?;
    let info = json!({
        "api_url": format!("https://127.0.0.1:{}", args.api_port),
        "ca_cert": dir.join("pki/ca.pem"),
        "api_token": cluster.layout.token()?,
        "key_id": key.key_id,
        "public_key": key.public_key,
        "ethereum_address": key.ethereum_address,
        "nodes": cluster.layout.nodes,
        "logs": dir.join("logs"),
        "sample_request": dir.join("sample-sign-request.json"),
    });
    write_json(&dir, "devnet.json", &info)?;
    println!("devnet ready: {}", dir.join("devnet.json").display());
    println!(
        "key `{}`: address {}",
        key.key_id,
        key.ethereum_address.unwrap_or_default()
    );
    if args.smoke {
        let (status, v) = cluster.api.post("/v1/sign-requests", &sample)?;
        anyhow::ensure!(
            status == 202 || status == 200,
            "sample request refused: {status} {v}"
        );
        let r = cluster.wait_request("devnet-sample-1", Duration::from_secs(120))?;
        println!("{}", serde_json::to_string_pretty(&r)?);
        anyhow::ensure!(
            r.status == proto::api::RequestStatus::Signed,
            "sample request not signed"
        );
        smoke_settle(&cluster, &dir)?;
        return smoke_account(&cluster, &args.key_id);
    }
    println!("sign the sample transaction with the README's curl; Ctrl-C stops the devnet");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(tokio_signal()).context("waiting for Ctrl-C")?;
    eprintln!("stopping devnet");
    drop(cluster);
    Ok(())
}

/// ERC-20, Bitcoin (regtest PSBT) and time-locked (2 ETH) sample requests for the README.
fn write_more_samples(dir: &std::path::Path, key: &proto::api::KeyInfo) -> anyhow::Result<()> {
    let large = json!({
        "request_id": "devnet-large-1",
        "key_id": key.key_id,
        "chain": "ethereum",
        "unsigned_tx": custody_tests::sample::eth_transfer(5, [0x22; 20], 2_000_000_000_000_000_000),
    });
    write_json(dir, "sample-large-request.json", &large)?;
    // The veto walkthrough's request: another transaction (nodes refuse one transaction under
    // two request ids).
    let veto = json!({
        "request_id": "devnet-large-2",
        "key_id": key.key_id,
        "chain": "ethereum",
        "unsigned_tx": custody_tests::sample::eth_transfer(6, [0x22; 20], 2_000_000_000_000_000_000),
    });
    write_json(dir, "sample-veto-request.json", &veto)?;
    let erc20 = json!({
        "request_id": "devnet-erc20-1",
        "key_id": key.key_id,
        "chain": "ethereum",
        "unsigned_tx": custody_tests::sample::erc20_transfer(1, [0x33; 20], [0x44; 20], 2_500_000),
    });
    write_json(dir, "sample-erc20-request.json", &erc20)?;
    // A settlement call to the policy's vault: `settle(batch, to, amount)`, 250 test tokens.
    let settle = json!({
        "request_id": "devnet-settle-1",
        "key_id": key.key_id,
        "chain": "ethereum",
        "unsigned_tx": custody_tests::sample::eth_tx(
            2,
            custody_tests::sample::VAULT,
            0,
            custody_tests::sample::settle_calldata([0x0b; 32], [0x42; 20], 250_000_000_000_000_000_000),
        ),
    });
    write_json(dir, "sample-settle-request.json", &settle)?;
    // An EIP-2612 permit of the test token: 100 tokens to 0x42…42 (typed data, no transaction).
    let permit = json!({
        "request_id": "devnet-permit-1",
        "key_id": key.key_id,
        "chain": "ethereum",
        "typed_data": custody_tests::sample::permit_typed_data(
            [0x33; 20],
            key.ethereum_address.as_deref().unwrap_or_default(),
            [0x42; 20],
            100_000_000_000_000_000_000,
        ),
    });
    write_json(dir, "sample-permit-request.json", &permit)?;
    let pk: [u8; 33] = hex::decode(key.public_key.as_deref().unwrap_or_default())?
        .try_into()
        .map_err(|_| anyhow::anyhow!("malformed public key"))?;
    let script = proto::btc::p2wpkh_script(&pk)?;
    let psbt = custody_tests::sample::btc_psbt(&script, &[50_000, 51_000, 52_000], 100_000, 50_000);
    let btc = json!({
        "request_id": "devnet-psbt-1",
        "key_id": key.key_id,
        "chain": "bitcoin",
        "network": "regtest",
        "psbt": psbt.to_string(),
    });
    write_json(dir, "sample-psbt-request.json", &btc)?;
    Ok(())
}

/// Writes one pretty-printed JSON file into the devnet directory.
fn write_json(dir: &std::path::Path, file: &str, value: &serde_json::Value) -> anyhow::Result<()> {
    std::fs::write(dir.join(file), serde_json::to_string_pretty(value)?)?;
    Ok(())
}

/// Test harness processes exit when the harness does (their stdin pipe closes), so a crashed
/// or finished test run never leaves nodes behind.
fn exit_when_stdin_closes() {
    std::thread::spawn(|| {
        let mut buf = [0u8; 64];
        loop {
            match std::io::Read::read(&mut std::io::stdin(), &mut buf) {
                Ok(0) | Err(_) => std::process::exit(0),
                Ok(_) => {}
            }
        }
    });
}

async fn tokio_signal() -> std::io::Result<()> {
    coordinator::cli::shutdown_signal().await;
    Ok(())
}

/// `devnet account-psbt ACCOUNT.json [KEY_ID]`: from an account as `GET …/accounts/{name}`
/// returns it, prints a sign request withdrawing a regtest deposit to the account's first
/// address (`m/a/0`, 100 000 sat): 60 000 sat out, 39 000 sat change to `m/a/1`.
fn account_psbt(args: &[String]) -> anyhow::Result<()> {
    let path = args
        .first()
        .context("usage: devnet account-psbt ACCOUNT.json")?;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let acct: proto::api::AccountView =
        serde_json::from_str(&text).with_context(|| format!("{path} is not an account"))?;
    println!(
        "{}",
        serde_json::to_string_pretty(&account_withdrawal(&acct)?)?
    );
    Ok(())
}

/// The README's account path: create an account, withdraw a deposit to its first address.
/// Signs the sample `settle` call (every node must show it as `vault.settle`) and the sample
/// permit.
fn smoke_settle(cluster: &Cluster, dir: &std::path::Path) -> anyhow::Result<()> {
    let body: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        dir.join("sample-settle-request.json"),
    )?)?;
    let (status, v) = cluster.api.post("/v1/sign-requests", &body)?;
    anyhow::ensure!(
        status == 202 || status == 200,
        "settle refused: {status} {v}"
    );
    let r = cluster.wait_request("devnet-settle-1", Duration::from_secs(120))?;
    anyhow::ensure!(
        r.status == proto::api::RequestStatus::Signed,
        "settle not signed: {r:?}"
    );
    for (node, v) in &r.verdicts {
        let call = v.call.as_ref().map(|c| c.lines().join("; "));
        anyhow::ensure!(
            call.as_deref()
                .is_some_and(|c| c.starts_with("vault.settle(")),
            "{node} did not show the settle call: {v:?}"
        );
        println!("{node} decoded: {}", call.unwrap_or_default());
    }
    println!("settle call signed");
    let body: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        dir.join("sample-permit-request.json"),
    )?)?;
    let (status, v) = cluster.api.post("/v1/sign-requests", &body)?;
    anyhow::ensure!(
        status == 202 || status == 200,
        "permit refused: {status} {v}"
    );
    let r = cluster.wait_request("devnet-permit-1", Duration::from_secs(120))?;
    anyhow::ensure!(
        r.status == proto::api::RequestStatus::Signed && r.signature.is_some(),
        "permit not signed: {r:?}"
    );
    println!("permit signed");
    Ok(())
}

fn smoke_account(cluster: &Cluster, key_id: &str) -> anyhow::Result<()> {
    let (st, v) = cluster.api.post(
        &format!("/v1/keys/{key_id}/accounts"),
        &json!({"name": "smoke-client"}),
    )?;
    anyhow::ensure!(st == 201 || st == 200, "account creation failed: {st} {v}");
    let acct: proto::api::AccountView = serde_json::from_value(v)?;
    let body = account_withdrawal(&acct)?;
    let (st, v) = cluster.api.post("/v1/sign-requests", &body)?;
    anyhow::ensure!(st == 202 || st == 200, "account request refused: {st} {v}");
    let r = cluster.wait_request("smoke-client-withdraw-1", Duration::from_secs(120))?;
    anyhow::ensure!(
        r.status == proto::api::RequestStatus::Signed,
        "account request not signed: {r:?}"
    );
    println!("account smoke-client ({}): withdrawal signed", acct.path);
    Ok(())
}

/// A sign request spending a 100 000 sat deposit to the account's `m/a/0`.
fn account_withdrawal(acct: &proto::api::AccountView) -> anyhow::Result<serde_json::Value> {
    let script = |i: usize| -> anyhow::Result<Vec<u8>> {
        let pk: [u8; 33] = acct
            .addresses
            .get(i)
            .and_then(|a| hex::decode(&a.public_key).ok())
            .and_then(|v| v.try_into().ok())
            .context("the account has no such address")?;
        Ok(proto::btc::p2wpkh_script(&pk)?)
    };
    let psbt = custody_tests::sample::btc_psbt_from(
        &[(&script(0)?, 100_000)],
        60_000,
        &script(1)?,
        39_000,
    );
    Ok(
        json!({"request_id": format!("{}-withdraw-1", acct.name), "key_id": acct.key_id,
        "chain": "bitcoin", "network": "regtest", "account": acct.name, "psbt": psbt.to_string()}),
    )
}
