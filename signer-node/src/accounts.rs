//! This node's registry of segregated accounts: name ↔ account number, per key, written once.
//!
//! The coordinator assigns account numbers, but each node keeps its own registry and refuses
//! to map a name to a second number or a number to a second name. A coordinator that lies
//! about an account therefore cannot make a node treat one account's coins as another's. The
//! account's keys (`m/a/i`) are always derived here from the key's own master public key and
//! chain code.

use proto::{
    hd::{AccountKeys, SpendKeys, Xpub, MAX_ACCOUNTS},
    wire::{AccountRegistration, SessionFailure},
};

use crate::{
    session::fail,
    store::{KeyMeta, Store},
};

fn name_key(key_id: &str, name: &str) -> String {
    format!("account/{key_id}\0{name}")
}

fn index_key(key_id: &str, index: u32) -> String {
    format!("account_index/{key_id}\0{index:010}")
}

fn store_err(e: impl std::fmt::Display) -> SessionFailure {
    fail("store.error", e.to_string())
}

/// The key's master xpub (public key and DKG chain code).
pub fn master_xpub(meta: &KeyMeta) -> Result<Xpub, SessionFailure> {
    Xpub::new(&meta.public_key, &meta.chain_code).map_err(|e| {
        fail(
            "account.not_hd",
            format!("key `{}` cannot have accounts: {e}", meta.key_id),
        )
    })
}

fn complete_meta(store: &Store, key_id: &str) -> Result<KeyMeta, SessionFailure> {
    store
        .key_meta(key_id)
        .map_err(store_err)?
        .filter(|m| m.complete)
        .ok_or_else(|| {
            fail(
                "key.not_ready",
                format!("no complete share of key `{key_id}` on this node"),
            )
        })
}

/// Registers an account (idempotent for the same name and number) and derives its keys.
pub fn register(store: &Store, reg: &AccountRegistration) -> Result<AccountKeys, SessionFailure> {
    if !proto::api::valid_key_id(&reg.name) {
        return Err(fail(
            "account.invalid",
            "an account name is 1-64 characters of [A-Za-z0-9._-]",
        ));
    }
    if reg.index >= MAX_ACCOUNTS {
        return Err(fail(
            "account.invalid",
            format!("account number {} is hardened", reg.index),
        ));
    }
    let meta = complete_meta(store, &reg.key_id)?;
    let master = master_xpub(&meta)?;
    let index_json = reg.index.to_string();
    let name_json = serde_json::to_string(&reg.name).map_err(store_err)?;
    let conflict = store
        .state_bind_pair(
            (&name_key(&reg.key_id, &reg.name), index_json.as_bytes()),
            (&index_key(&reg.key_id, reg.index), name_json.as_bytes()),
        )
        .map_err(store_err)?;
    if let Some((old_index, old_name)) = conflict {
        let show = |v: Option<Vec<u8>>| {
            v.map(|b| String::from_utf8_lossy(&b).into_owned())
                .unwrap_or_else(|| "nothing".into())
        };
        return Err(fail(
            "account.conflict",
            format!(
                "this node registered account `{}` as number {} and number {} as {}: refusing `{}` = {}",
                reg.name,
                show(old_index),
                reg.index,
                show(old_name),
                reg.name,
                reg.index
            ),
        ));
    }
    AccountKeys::derive(&master, reg.index).map_err(|e| {
        fail(
            "account.not_hd",
            format!("deriving the account failed: {e}"),
        )
    })
}

/// The account number this node registered for `name`, if any.
pub fn number(store: &Store, key_id: &str, name: &str) -> Result<Option<u32>, SessionFailure> {
    store
        .state_get::<u32>(&name_key(key_id, name))
        .map_err(store_err)
}

/// The keys a request may spend: the master key, or the named account's address keys as this
/// node derives them from its own registry.
pub fn spend_keys(
    store: &Store,
    meta: &KeyMeta,
    account: Option<&str>,
) -> Result<SpendKeys, SessionFailure> {
    let pk: [u8; 33] = meta
        .public_key
        .as_slice()
        .try_into()
        .map_err(|_| fail("store.corrupt", "stored public key is malformed"))?;
    let Some(name) = account else {
        return Ok(SpendKeys::master(pk));
    };
    let index = number(store, &meta.key_id, name)?.ok_or_else(|| {
        fail(
            "account.not_found",
            format!(
                "account `{name}` of key `{}` is not registered on this node",
                meta.key_id
            ),
        )
    })?;
    let keys = AccountKeys::derive(&master_xpub(meta)?, index).map_err(|e| {
        fail(
            "account.not_hd",
            format!("deriving the account failed: {e}"),
        )
    })?;
    SpendKeys::account(name, &keys)
        .ok_or_else(|| fail("session.internal", "derived account keys do not parse"))
}
