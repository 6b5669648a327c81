//! Proof of reserves per account: one message sign request per address (EIP-191 for the
//! account's Ethereum address, BIP-322 simple for each P2WPKH address), each signed by t nodes
//! under the address's derived key and gated by every node's message scope, then assembled
//! into a report an auditor verifies offline (`policy reserves-verify`).

use std::sync::Arc;

use proto::{
    api::{self, RequestStatus, ReservesBody, ReservesView, SignRequestBody},
    hd::ADDRESS_WINDOW,
    reserves::{attestation, ReserveEntry, ReservesReport, REPORT_VERSION},
};
use serde::{Deserialize, Serialize};

use crate::{
    control::unix_now,
    error::{DomainError, ErrorKind},
    intake::submit,
    orchestrator::Orchestrator,
};

/// Accounts in one report at most.
const MAX_ACCOUNTS: usize = 100;

/// A report as stored: what was asked and, per address, the entry and its sign request.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ReportRecord {
    body: ReservesBody,
    key_id: String,
    master_public_key: String,
    master_chain_code: String,
    generated_at: u64,
    /// Each address's entry (unsigned) and the sign request that attests it.
    entries: Vec<(ReserveEntry, SignRequestBody)>,
}

fn meta_key(key_id: &str, report_id: &str) -> String {
    format!("reserves/{key_id}/{report_id}")
}

fn invalid(code: &str, msg: impl Into<String>) -> DomainError {
    DomainError::new(ErrorKind::Invalid, code, msg)
}

fn check_body(b: &ReservesBody) -> Result<(proto::btc::Network, u32), DomainError> {
    if !api::valid_key_id(&b.report_id) {
        return Err(invalid(
            "reserves.invalid",
            "`report_id` must be 1-64 characters of [A-Za-z0-9._-]",
        ));
    }
    if b.accounts.is_empty() || b.accounts.len() > MAX_ACCOUNTS {
        return Err(invalid(
            "reserves.invalid",
            format!("name 1 to {MAX_ACCOUNTS} accounts"),
        ));
    }
    if b.statement.trim().is_empty() || b.statement.len() > 512 || b.statement.contains('\n') {
        return Err(invalid(
            "reserves.invalid",
            "`statement` is one line of 1-512 bytes",
        ));
    }
    let network = b
        .bitcoin_network
        .as_deref()
        .unwrap_or("mainnet")
        .parse()
        .map_err(|e: proto::btc::BtcError| invalid(e.code(), e.to_string()))?;
    let count = b.bitcoin_addresses.unwrap_or(ADDRESS_WINDOW);
    if !(1..=ADDRESS_WINDOW).contains(&count) {
        return Err(invalid(
            "reserves.invalid",
            format!("`bitcoin_addresses` is 1 to {ADDRESS_WINDOW}"),
        ));
    }
    Ok((network, count))
}

/// The entries (unsigned) and the sign request of each.
fn plan(
    orch: &Orchestrator,
    key_id: &str,
    b: &ReservesBody,
) -> Result<Vec<(ReserveEntry, SignRequestBody)>, DomainError> {
    let (network, count) = check_body(b)?;
    // The longest request id must be a valid one.
    let last = b.accounts.len() * (1 + count as usize);
    if !api::valid_request_id(&format!("reserves.{key_id}.{}.{last}", b.report_id)) {
        return Err(invalid(
            "reserves.invalid",
            "`report_id` is too long for this key id (request ids are at most 128 characters)",
        ));
    }
    let mut out = Vec::new();
    for name in &b.accounts {
        let rec = orch
            .store
            .account(key_id, name)
            .map_err(DomainError::internal)?
            .ok_or_else(|| {
                DomainError::new(
                    ErrorKind::NotFound,
                    "account.not_found",
                    format!("no account `{name}` of key `{key_id}`"),
                )
            })?;
        let view = crate::accounts::view(&rec);
        if view.status != "ready" {
            return Err(DomainError::new(
                ErrorKind::Conflict,
                "account.not_ready",
                format!("account `{name}` is not registered on enough nodes yet"),
            ));
        }
        let mut add = |chain: &str, address: String, addr: &api::AccountAddress| {
            let n = out.len();
            let message = attestation(key_id, name, chain, &address, &b.statement);
            let entry = ReserveEntry {
                account: name.clone(),
                chain: chain.to_string(),
                address,
                path: addr.path.clone(),
                public_key: addr.public_key.clone(),
                message: message.clone(),
                eip191_signature: None,
                bip322_signature: None,
            };
            let eth = chain == "ethereum";
            let body = SignRequestBody {
                request_id: format!("reserves.{key_id}.{}.{n}", b.report_id),
                key_id: key_id.to_string(),
                chain: if eth { "ethereum" } else { "bitcoin" }.into(),
                network: (!eth).then(|| chain.to_string()),
                unsigned_tx: None,
                psbt: None,
                message: Some(message),
                typed_data: None,
                account: Some(name.clone()),
                address_index: (!eth).then_some(addr.index),
            };
            out.push((entry, body));
        };
        if let Some(first) = view.addresses.first() {
            add("ethereum", first.ethereum_address.clone(), first);
        }
        for addr in view.addresses.iter().take(count as usize) {
            let address = addr
                .bitcoin
                .get(network.as_str())
                .cloned()
                .unwrap_or_default();
            add(network.as_str(), address, addr);
        }
    }
    Ok(out)
}

/// Starts a report (`true`), or with the same body shows it (`false`), first submitting any of
/// its requests that a crash kept from being submitted.
pub fn start(
    orch: &Arc<Orchestrator>,
    key_id: &str,
    b: ReservesBody,
) -> Result<(bool, ReservesView), DomainError> {
    let store = &orch.store;
    if let Some(rec) = store
        .meta::<ReportRecord>(&meta_key(key_id, &b.report_id))
        .map_err(DomainError::internal)?
    {
        if rec.body != b {
            return Err(DomainError::new(
                ErrorKind::Conflict,
                "reserves.id_conflict",
                format!("report `{}` was started with other parameters", b.report_id),
            ));
        }
        // Submitting is idempotent: requests a crash kept from being submitted are now.
        for (_, body) in &rec.entries {
            submit(orch, body.clone())?;
        }
        return Ok((false, view(orch, &rec)?));
    }
    let key = crate::accounts::ready_key(orch, key_id)?;
    let master = crate::accounts::master_xpub(&key)?;
    let planned = plan(orch, key_id, &b)?;
    // Every request must be acceptable before the report exists.
    for (_, body) in &planned {
        crate::intake::validate(orch, body)?;
    }
    let rec = ReportRecord {
        body: b,
        key_id: key_id.to_string(),
        master_public_key: hex::encode(master.public_key),
        master_chain_code: hex::encode(master.chain_code),
        generated_at: unix_now(),
        entries: planned,
    };
    store
        .set_meta(&meta_key(key_id, &rec.body.report_id), &rec)
        .map_err(DomainError::internal)?;
    for (_, body) in &rec.entries {
        submit(orch, body.clone())?;
    }
    orch.control.record(
        "reserves.started",
        serde_json::json!({"key_id": key_id, "report_id": rec.body.report_id,
                           "accounts": rec.body.accounts, "entries": rec.entries.len()}),
    );
    Ok((true, view(orch, &rec)?))
}

/// A report's state (`reserves.not_found`).
pub fn get(
    orch: &Orchestrator,
    key_id: &str,
    report_id: &str,
) -> Result<ReservesView, DomainError> {
    let rec = orch
        .store
        .meta::<ReportRecord>(&meta_key(key_id, report_id))
        .map_err(DomainError::internal)?
        .ok_or_else(|| {
            DomainError::new(
                ErrorKind::NotFound,
                "reserves.not_found",
                format!("no report `{report_id}` of key `{key_id}`"),
            )
        })?;
    view(orch, &rec)
}

/// The report's state from its sign requests; the report itself once all are signed.
fn view(orch: &Orchestrator, rec: &ReportRecord) -> Result<ReservesView, DomainError> {
    let mut entries = Vec::new();
    let mut error = None;
    for (entry, body) in &rec.entries {
        let request_id = &body.request_id;
        let Some(r) = orch
            .store
            .request(request_id)
            .map_err(DomainError::internal)?
        else {
            continue;
        };
        match r.view.status {
            RequestStatus::Signed => entries.push(signed_entry(entry, &r.view)),
            s if s.is_final() => {
                error.get_or_insert(r.view.error.clone().unwrap_or_else(|| {
                    crate::store::api_error("reserves.failed", format!("{request_id} ended {s:?}"))
                }));
            }
            _ => {}
        }
    }
    let total = rec.entries.len();
    let signed = entries.len();
    let status = match (&error, signed == total) {
        (Some(_), _) => "failed",
        (None, true) => "complete",
        (None, false) => "signing",
    };
    let report = (status == "complete").then(|| ReservesReport {
        version: REPORT_VERSION,
        key_id: rec.key_id.clone(),
        master_public_key: rec.master_public_key.clone(),
        master_chain_code: rec.master_chain_code.clone(),
        statement: rec.body.statement.clone(),
        generated_at: rec.generated_at,
        entries,
    });
    Ok(ReservesView {
        report_id: rec.body.report_id.clone(),
        status: status.into(),
        signed,
        total,
        requests: rec
            .entries
            .iter()
            .map(|(_, b)| b.request_id.clone())
            .collect(),
        error,
        report,
    })
}

fn signed_entry(entry: &ReserveEntry, v: &api::SignRequestView) -> ReserveEntry {
    let mut e = entry.clone();
    if e.chain == "ethereum" {
        e.eip191_signature = v.signature.as_ref().map(|s| {
            format!(
                "0x{}{}{:02x}",
                s.r.trim_start_matches("0x"),
                s.s.trim_start_matches("0x"),
                27 + s.y_parity
            )
        });
    } else {
        e.bip322_signature = v.bip322_signature.clone();
    }
    e
}
