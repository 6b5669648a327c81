//! Signed orders for guardians and officers (veto, freeze, unfreeze) and the subject of an
//! approval. Each command prints exactly the JSON body the coordinator's API takes.

use std::{fs, path::Path};

use anyhow::{bail, Context, Result};
use ed25519_dalek::Signer;
use proto::{
    api::SignRequestBody,
    authz::{freeze_digest, unfreeze_digest, veto_digest, OfficerSignature},
    intent::WithdrawalIntent,
    payload::SignPayload,
};
use serde_json::json;

use crate::commands::{print_json, read_json, Status};
use crate::keys;

/// The intent, request id and payload hash an approval binds: from an intent file, or decoded
/// here from the sign-request body with the key's public key.
pub fn approval_subject(
    intent: Option<&Path>,
    sign_request: Option<&Path>,
    (public_key, account): (Option<&str>, Option<(&str, u32)>),
    (request_id, payload_hash): (Option<String>, Option<[u8; 32]>),
) -> Result<(WithdrawalIntent, String, [u8; 32])> {
    match (intent, sign_request) {
        (Some(path), None) => {
            let intent: WithdrawalIntent = read_json(path, "withdrawal intent")?;
            let id = request_id.context("`--request-id` is required with `--intent`")?;
            let hash = payload_hash.context(
                "`--payload-hash` is required with `--intent`: an approval is bound to one payload",
            )?;
            Ok((intent, id, hash))
        }
        (None, Some(path)) => {
            let body: SignRequestBody = read_json(path, "sign-request body")?;
            let pk_hex = public_key.context("`--public-key` is required with `--sign-request`")?;
            let pk: [u8; 33] = hex::decode(pk_hex.trim_start_matches("0x"))
                .ok()
                .and_then(|v| v.try_into().ok())
                .context("`--public-key` must be a 33-byte compressed key in hex")?;
            let payload = SignPayload::from_body(&body).map_err(|e| anyhow::anyhow!("{e}"))?;
            let spend = spend_keys(&pk, body.account.as_deref(), account)?;
            let decoded = payload
                .decode_for(&spend)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let intent = decoded
                .intent(&body.key_id)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            if request_id.as_ref().is_some_and(|r| *r != body.request_id) {
                bail!("`--request-id` differs from the request body's `request_id`");
            }
            let hash = payload.payload_hash();
            eprintln!(
                "approving: {} (payload hash {})",
                serde_json::to_string(&intent).unwrap_or_default(),
                hex::encode(hash)
            );
            Ok((intent, body.request_id, hash))
        }
        _ => bail!("give exactly one of `--intent` or `--sign-request`"),
    }
}

/// The keys a request spends from: the master key, or the named account's keys derived here.
fn spend_keys(
    pk: &[u8; 33],
    name: Option<&str>,
    account: Option<(&str, u32)>,
) -> Result<proto::hd::SpendKeys> {
    match (name, account) {
        (None, None) => Ok(proto::hd::SpendKeys::master(*pk)),
        (None, Some(_)) => {
            bail!("the request names no `account`: drop `--chain-code`/`--account-index`")
        }
        (Some(n), None) => bail!(
            "the request spends from account `{n}`: give `--chain-code` and `--account-index`"
        ),
        (Some(n), Some((cc, index))) => {
            let cc =
                hex::decode(cc.trim_start_matches("0x")).context("`--chain-code` is not hex")?;
            let master = proto::hd::Xpub::new(pk, &cc).map_err(|e| anyhow::anyhow!("{e}"))?;
            let keys = proto::hd::AccountKeys::derive(&master, index)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            proto::hd::SpendKeys::account(n, &keys).context("derived keys do not parse")
        }
    }
}

/// `policy reserves-verify`.
pub fn reserves_verify(path: &Path, public_key: Option<&str>, json: bool) -> Result<Status> {
    let report: proto::reserves::ReservesReport = read_json(path, "proof-of-reserves report")?;
    let pinned = public_key.map(|k| k.trim_start_matches("0x").to_lowercase());
    let result = match pinned {
        Some(k) if k != report.master_public_key => Err(format!(
            "the report is for master key {}, not {k}",
            report.master_public_key
        )),
        _ => proto::reserves::verify(&report).map_err(|e| e.to_string()),
    };
    let accounts: std::collections::BTreeSet<&str> =
        report.entries.iter().map(|e| e.account.as_str()).collect();
    let (status, line) = match &result {
        Ok(n) => (
            Status::Ok,
            format!(
                "ok: {n} attestations for {} account(s) of key `{}` verify (statement: {})",
                accounts.len(),
                report.key_id,
                report.statement
            ),
        ),
        Err(e) => (Status::Invalid, format!("INVALID: {e}")),
    };
    if json {
        print_json(
            &json!({"valid": result.is_ok(), "attestations": result.as_ref().ok(),
                           "error": result.as_ref().err(), "key_id": report.key_id,
                           "accounts": accounts}),
        )?;
    } else {
        println!("{line}");
    }
    Ok(status)
}

/// `policy veto`.
pub fn veto(request_id: &str, key: &Path) -> Result<Status> {
    let key = keys::read(key)?;
    let sig = key.expose_secret().sign(&veto_digest(request_id));
    print_json(&json!({"guardian": key.public_hex(), "signature": hex::encode(sig.to_bytes())}))?;
    Ok(Status::Ok)
}

/// `policy freeze`.
pub fn freeze(key_id: &str, epoch: u64, key: &Path) -> Result<Status> {
    let key = keys::read(key)?;
    let sig = key.expose_secret().sign(&freeze_digest(key_id, epoch));
    print_json(&json!({"epoch": epoch, "guardian": key.public_hex(),
        "signature": hex::encode(sig.to_bytes())}))?;
    Ok(Status::Ok)
}

/// `policy unfreeze`: adds this officer's signature to the body in `out`.
pub fn unfreeze(key_id: &str, epoch: u64, key: &Path, out: &Path) -> Result<Status> {
    let key = keys::read(key)?;
    let sig = key.expose_secret().sign(&unfreeze_digest(key_id, epoch));
    let mut signatures: Vec<OfficerSignature> = if out.exists() {
        let body: serde_json::Value = read_json(out, "unfreeze body")?;
        if body["epoch"] != json!(epoch) {
            bail!("`{}` is for another epoch", out.display());
        }
        serde_json::from_value(body["signatures"].clone())
            .with_context(|| format!("`{}` has malformed signatures", out.display()))?
    } else {
        Vec::new()
    };
    let me = key.expose_secret().verifying_key().to_bytes();
    signatures.retain(|s| s.officer != me);
    signatures.push(OfficerSignature {
        officer: me,
        signature: sig.to_bytes(),
    });
    let body = json!({"epoch": epoch, "signatures": signatures});
    fs::write(out, serde_json::to_string_pretty(&body)? + "\n")
        .with_context(|| format!("cannot write `{}`", out.display()))?;
    print_json(&body)?;
    Ok(Status::Ok)
}
