//! Segregated accounts: the coordinator numbers them, every node registers the number in its
//! own registry and derives the account's keys itself, and the coordinator keeps an account
//! only once at least t nodes reported the same keys (and they match its own derivation).

use std::{collections::BTreeMap, time::Duration};

use proto::{
    api::{self, AccountAddress, AccountView, KeyStatus},
    hd::{AccountKeys, SpendKeys, Xpub},
    wire::SessionFailure,
};

use crate::{
    control::unix_now,
    error::{DomainError, ErrorKind},
    orchestrator::Orchestrator,
    store::{AccountRecord, KeyRecord},
};

/// How long account registration waits for the nodes.
const REGISTER_TIMEOUT: Duration = Duration::from_secs(10);

/// The key's master xpub as the coordinator stored it after the DKG.
pub fn master_xpub(key: &KeyRecord) -> Result<Xpub, DomainError> {
    let pk = key
        .info
        .public_key
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
        .unwrap_or_default();
    let cc = key
        .chain_code
        .as_deref()
        .and_then(|h| hex::decode(h).ok())
        .unwrap_or_default();
    Xpub::new(&pk, &cc).map_err(|e| {
        DomainError::new(
            ErrorKind::Conflict,
            "account.not_hd",
            format!("key `{}` cannot have accounts: {e}", key.info.key_id),
        )
    })
}

/// The key, if it exists and its ceremony finished (`key.not_found`, `key.not_ready`).
pub fn ready_key(orch: &Orchestrator, key_id: &str) -> Result<KeyRecord, DomainError> {
    let key = orch
        .store
        .key(key_id)
        .map_err(DomainError::internal)?
        .ok_or_else(|| DomainError::no_key(key_id))?;
    if key.info.status != KeyStatus::Ready {
        return Err(DomainError::new(
            ErrorKind::Conflict,
            "key.not_ready",
            format!("key `{key_id}` is not ready"),
        ));
    }
    Ok(key)
}

/// The public view of an account, with addresses encoded from the node-derived keys.
pub fn view(rec: &AccountRecord) -> AccountView {
    let keys = rec.keys.as_ref();
    let addresses = keys
        .and_then(|k| k.address_key_bytes())
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, pk)| AccountAddress {
            index: i as u32,
            path: proto::hd::path_text(&[rec.index, i as u32]),
            public_key: hex::encode(pk),
            ethereum_address: proto::eth::address_from_pubkey(pk).unwrap_or_default(),
            bitcoin: crate::orchestrator::bitcoin_addresses(pk),
        })
        .collect::<Vec<_>>();
    AccountView {
        key_id: rec.key_id.clone(),
        name: rec.name.clone(),
        index: rec.index,
        path: proto::hd::path_text(&[rec.index]),
        status: if keys.is_some() { "ready" } else { "pending" }.into(),
        public_key: keys.map(|k| k.public_key.clone()),
        chain_code: keys.map(|k| k.chain_code.clone()),
        ethereum_address: addresses.first().map(|a| a.ethereum_address.clone()),
        addresses,
        nodes: rec.nodes.clone(),
        created_at: rec.created_at,
    }
}

/// How [`create`] found or made the account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Created {
    /// Registered now.
    New,
    /// It existed already (ready).
    Existing,
}

/// Numbers the account, has the key's nodes register it and derive its keys, and keeps the keys
/// t nodes agree on. Repeating it with the same name returns the account (and retries
/// registration while it is pending).
pub async fn create(
    orch: &Orchestrator,
    key_id: &str,
    name: &str,
) -> Result<(Created, AccountView), DomainError> {
    if !api::valid_key_id(name) {
        return Err(DomainError::new(
            ErrorKind::Invalid,
            "account.invalid",
            "`name` must be 1-64 characters of [A-Za-z0-9._-]",
        ));
    }
    let key = ready_key(orch, key_id)?;
    let master = master_xpub(&key)?;
    let mut rec = orch
        .store
        .reserve_account(key_id, name, unix_now())
        .map_err(DomainError::internal)?;
    if rec.keys.is_some() {
        return Ok((Created::Existing, view(&rec)));
    }
    let expected = AccountKeys::derive(&master, rec.index)
        .map_err(|e| DomainError::new(ErrorKind::Conflict, "account.not_hd", e.to_string()))?;
    let answers = orch
        .control
        .register_account(&rec, &key.info.nodes, REGISTER_TIMEOUT)
        .await;
    let t = key.info.threshold as usize;
    let (agreed, refusal) = agree(&answers, &expected);
    orch.control.record(
        "account.register",
        serde_json::json!({"key_id": key_id, "account": rec.name, "index": rec.index,
                           "agreed": agreed, "refused": refusal}),
    );
    if agreed.len() < t {
        return Err(register_failure(&answers, refusal, t));
    }
    rec.keys = Some(expected);
    rec.nodes = agreed;
    orch.store
        .put_account(&rec)
        .map_err(DomainError::internal)?;
    Ok((Created::New, view(&rec)))
}

/// Nodes whose keys equal the expected derivation, and the first refusal or disagreement.
fn agree(
    answers: &BTreeMap<String, Result<AccountKeys, SessionFailure>>,
    expected: &AccountKeys,
) -> (Vec<String>, Option<SessionFailure>) {
    let mut agreed = Vec::new();
    let mut refusal = None;
    for (node, answer) in answers {
        match answer {
            Ok(keys) if keys == expected => agreed.push(node.clone()),
            Ok(_) => {
                tracing::error!(node, "a node derived different account keys");
                refusal.get_or_insert(SessionFailure {
                    code: "account.disagreement".into(),
                    message: format!("node `{node}` derived different keys for the account"),
                    blame: vec![node.clone()],
                });
            }
            Err(f) => {
                refusal.get_or_insert(SessionFailure {
                    code: f.code.clone(),
                    message: format!("{node}: {}", f.message),
                    blame: vec![node.clone()],
                });
            }
        }
    }
    (agreed, refusal)
}

fn register_failure(
    answers: &BTreeMap<String, Result<AccountKeys, SessionFailure>>,
    refusal: Option<SessionFailure>,
    t: usize,
) -> DomainError {
    match refusal {
        Some(f) if f.code == "account.conflict" || f.code == "account.disagreement" => {
            DomainError::new(ErrorKind::Conflict, &f.code, f.message)
        }
        Some(f) => DomainError::new(ErrorKind::Invalid, &f.code, f.message),
        None => DomainError::new(
            ErrorKind::Unavailable,
            "nodes.unavailable",
            format!(
                "{} node(s) registered the account; {t} must (the account stays pending: repeat the call)",
                answers.len()
            ),
        ),
    }
}

/// One account of a key (`account.not_found`).
pub fn get(orch: &Orchestrator, key_id: &str, name: &str) -> Result<AccountView, DomainError> {
    orch.store
        .account(key_id, name)
        .map_err(DomainError::internal)?
        .map(|r| view(&r))
        .ok_or_else(|| {
            DomainError::new(
                ErrorKind::NotFound,
                "account.not_found",
                format!("no account `{name}` of key `{key_id}`"),
            )
        })
}

/// Every account of a key.
pub fn list(orch: &Orchestrator, key_id: &str) -> Result<Vec<AccountView>, DomainError> {
    let all = orch.store.all_accounts().map_err(DomainError::internal)?;
    Ok(all
        .iter()
        .filter(|r| r.key_id == key_id)
        .map(view)
        .collect())
}

/// The keys a request may spend from: the master key, or a ready account's address keys.
pub fn spend_keys(
    store: &crate::store::Store,
    key: &KeyRecord,
    account: Option<&str>,
) -> Result<SpendKeys, SessionFailure> {
    let pk = crate::orchestrator::key_pk(key)?;
    let Some(name) = account else {
        return Ok(SpendKeys::master(pk));
    };
    let fail = |code: &str, message: String| SessionFailure {
        code: code.into(),
        message,
        blame: vec![],
    };
    let rec = store
        .account(&key.info.key_id, name)
        .map_err(|e| fail("internal", e.to_string()))?
        .ok_or_else(|| {
            fail(
                "account.not_found",
                format!("no account `{name}` of key `{}`", key.info.key_id),
            )
        })?;
    let keys = rec.keys.as_ref().ok_or_else(|| {
        fail(
            "account.not_ready",
            format!("account `{name}` is not registered on enough nodes yet"),
        )
    })?;
    SpendKeys::account(name, keys)
        .ok_or_else(|| fail("internal", "stored account keys are malformed".into()))
}
