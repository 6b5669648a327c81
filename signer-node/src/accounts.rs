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

/// Keys made before nodes kept the DKG chain code in their metadata get it from their share
/// (read at start, when every share is checked anyway), so their accounts work too.
pub fn backfill_chain_code(
    store: &Store,
    record: &str,
    share: &crate::mpc::KeyShare,
) -> Result<(), crate::store::StoreError> {
    let Some(key_id) = record.strip_prefix("share/") else {
        return Ok(());
    };
    let (Some(mut meta), Some(cc)) = (store.key_meta(key_id)?, share.core.chain_code) else {
        return Ok(());
    };
    if meta.chain_code.is_empty() {
        meta.chain_code = cc.to_vec();
        store.put_key_meta(&meta)?;
        tracing::info!(key = %key_id, "stored the key's chain code from its share");
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    /// The secp256k1 generator, compressed: a valid master public key for derivation tests.
    const G: &str = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";

    fn setup(chain_code: Vec<u8>) -> (Store, KeyMeta, std::path::PathBuf) {
        let (store, dir) = crate::store::test_store("accounts");
        let meta = KeyMeta {
            key_id: "k".into(),
            group: vec!["n1".into(), "n2".into()],
            threshold: 2,
            public_key: hex::decode(G).unwrap(),
            complete: true,
            chain_code,
            epoch: 0,
            pending: None,
            since: 0,
        };
        store.commit_key(&meta, ("share/k", b"x"), &[]).unwrap();
        (store, meta, dir)
    }

    fn reg(name: &str, index: u32) -> AccountRegistration {
        AccountRegistration {
            key_id: "k".into(),
            name: name.into(),
            index,
        }
    }

    /// The refusal's code; an `Ok` fails the test outright instead of reading as `""`.
    fn code(r: Result<AccountKeys, SessionFailure>) -> String {
        r.err().map(|f| f.code).expect("expected a refusal")
    }

    #[test]
    fn a_name_and_a_number_register_once_and_derive_here() {
        let (store, meta, dir) = setup(vec![7; 32]);
        let a = register(&store, &reg("a", 0)).unwrap();
        assert_eq!(register(&store, &reg("a", 0)).unwrap(), a, "idempotent");
        assert_eq!(code(register(&store, &reg("a", 1))), "account.conflict");
        assert_eq!(code(register(&store, &reg("b", 0))), "account.conflict");
        let b = register(&store, &reg("b", 1)).unwrap();
        assert_ne!(a.address_keys, b.address_keys);
        assert_eq!(number(&store, "k", "a").unwrap(), Some(0));
        let spend = spend_keys(&store, &meta, Some("b")).unwrap();
        assert_eq!(Some(spend.keys.clone()), b.address_key_bytes());
        assert_eq!(spend.path(3), vec![1, 3]);
        let unknown = spend_keys(&store, &meta, Some("zz")).err().unwrap();
        assert_eq!(unknown.code, "account.not_found");
        assert_eq!(
            code(register(&store, &reg("no spaces", 2))),
            "account.invalid"
        );
        assert_eq!(
            code(register(&store, &reg("c", MAX_ACCOUNTS))),
            "account.invalid"
        );
        let mut other = reg("c", 2);
        other.key_id = "nope".into();
        assert_eq!(code(register(&store, &other)), "key.not_ready");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn a_key_without_a_chain_code_has_no_accounts() {
        let (store, _, dir) = setup(vec![]);
        assert_eq!(code(register(&store, &reg("a", 0))), "account.not_hd");
        assert_eq!(
            number(&store, "k", "a").unwrap(),
            None,
            "nothing registered"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
