//! The node's redb store. Secrets are sealed records (see [`crate::seal`]); public bookkeeping
//! (key metadata, used session ids, request bindings) is plain. Every write commits with redb's
//! default immediate durability before the caller acts on it.

use std::path::{Path, PathBuf};

use rand_core::{OsRng, RngCore};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::{
    seal::{KdfParams, SealError, SealKey},
    secret::{Passphrase, SecretBytes},
};

const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
const SEALED: TableDefinition<&str, &[u8]> = TableDefinition::new("sealed");
const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
const SESSIONS: TableDefinition<&[u8], u64> = TableDefinition::new("sessions");
const REQUESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("requests");
/// Policy, first-seen times, vetoes, freezes, reservations and the ledger (JSON values).
const STATE: TableDefinition<&str, &[u8]> = TableDefinition::new("state");

const VERIFIER: &[u8] = b"custody passphrase verifier v1";

/// `meta` key set once the time indexes are built (see [`crate::prune::index`]).
const INDEX_MARK: &str = "time_index_v1";

/// File name of the store inside the data directory.
pub const DB_FILE: &str = "node.redb";

/// Store errors. Messages name the record or file and never include secret bytes.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No store at the path.
    #[error("no node store at `{0}`: run `signer-node init` first")]
    NotInitialized(PathBuf),
    /// `init` on an existing store.
    #[error("a node store already exists at `{0}`; refusing to overwrite it")]
    AlreadyInitialized(PathBuf),
    /// Verifier did not open.
    #[error("wrong passphrase for the node store at `{0}`")]
    WrongPassphrase(PathBuf),
    /// A sealed record failed to open although the passphrase is right.
    #[error(
        "stored record `{0}` is corrupted or was tampered with; restore this node from backup"
    )]
    Corrupt(String),
    /// A required record is missing.
    #[error("stored record `{0}` is missing")]
    Missing(String),
    /// Database error.
    #[error("node store error: {0}")]
    Db(String),
    /// Sealing failed.
    #[error(transparent)]
    Seal(#[from] SealError),
}

macro_rules! db_err {
    ($($t:ty),*) => {$(impl From<$t> for StoreError {
        fn from(e: $t) -> Self { StoreError::Db(e.to_string()) }
    })*};
}
db_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

/// Public metadata about a key this node holds a share of.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyMeta {
    /// Key id.
    pub key_id: String,
    /// Node ids in keygen index order.
    pub group: Vec<String>,
    /// t.
    pub threshold: u16,
    /// Compressed public key.
    pub public_key: Vec<u8>,
    /// Whether the share is completed with aux info and can sign.
    pub complete: bool,
    /// HD chain code from the DKG (accounts derive from it); empty for a non-HD key.
    #[serde(default)]
    pub chain_code: Vec<u8>,
    /// The share epoch that signs: 0 from DKG, one more per activated refresh or reshare.
    #[serde(default)]
    pub epoch: u64,
    /// A new share stored by a redistribution and waiting for its activation certificate.
    #[serde(default)]
    pub pending: Option<PendingEpoch>,
    /// When this node's share of `epoch` became able to sign (unix seconds, this node's
    /// clock): a scheduled refresh is due `refresh_every` after it. 0 in records written
    /// before it existed (a scheduled refresh is then due at once).
    #[serde(default)]
    pub since: u64,
}

/// A share of the next epoch, stored (sealed under its epoch's record) but not yet active.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct PendingEpoch {
    /// The epoch it belongs to.
    pub epoch: u64,
    /// The new guardians, in share index order.
    pub group: Vec<String>,
    /// t'.
    pub threshold: u16,
    /// Hash of the agreed commitments (hex).
    pub commitments: String,
    /// Digest of the officers' order (hex).
    pub order: String,
}

/// Outcome of binding a request id to the intent a node decoded for it.
#[derive(Debug, PartialEq, Eq)]
pub enum RequestBinding {
    /// First time this request id is seen.
    New,
    /// Seen before with the same intent (a retry).
    Same,
    /// Seen before with a different intent: refuse.
    Conflict,
}

/// The node's store.
pub struct Store {
    db: Database,
    seal: SealKey,
    node_id: String,
    path: PathBuf,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Store({})", self.path.display())
    }
}

impl Store {
    /// Creates a fresh store for `node_id`.
    pub fn create(
        dir: &Path,
        node_id: &str,
        passphrase: &Passphrase,
        params: KdfParams,
    ) -> Result<Self, StoreError> {
        let path = dir.join(DB_FILE);
        if path.exists() {
            return Err(StoreError::AlreadyInitialized(path));
        }
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Db(e.to_string()))?;
        let db = Database::create(&path)?;
        let mut salt = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        let seal = SealKey::derive(passphrase, &salt, params, node_id)?;
        let verifier = seal.seal("verifier", VERIFIER)?;
        let params_json = serde_json::to_vec(&params).map_err(|e| StoreError::Db(e.to_string()))?;
        let tx = db.begin_write()?;
        {
            let mut meta = tx.open_table(META)?;
            meta.insert("node_id", node_id.as_bytes())?;
            meta.insert("salt", salt.as_slice())?;
            meta.insert("kdf", params_json.as_slice())?;
            meta.insert("verifier", verifier.as_slice())?;
            meta.insert(INDEX_MARK, b"1".as_slice())?;
            tx.open_table(SEALED)?;
            tx.open_table(KEYS)?;
            tx.open_table(SESSIONS)?;
            tx.open_table(REQUESTS)?;
            tx.open_table(STATE)?;
        }
        tx.commit()?;
        Ok(Self {
            db,
            seal,
            node_id: node_id.to_string(),
            path,
        })
    }

    /// Opens an existing store and checks the passphrase.
    pub fn open(dir: &Path, passphrase: &Passphrase) -> Result<Self, StoreError> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Err(StoreError::NotInitialized(path));
        }
        let db = Database::open(&path)?;
        let (node_id, salt, params, verifier) = {
            let tx = db.begin_read()?;
            let meta = tx.open_table(META)?;
            let get = |k: &str| -> Result<Vec<u8>, StoreError> {
                meta.get(k)?
                    .map(|v| v.value().to_vec())
                    .ok_or_else(|| StoreError::Missing(format!("meta/{k}")))
            };
            let node_id = String::from_utf8(get("node_id")?)
                .map_err(|_| StoreError::Corrupt("meta/node_id".into()))?;
            let params: KdfParams = serde_json::from_slice(&get("kdf")?)
                .map_err(|_| StoreError::Corrupt("meta/kdf".into()))?;
            (node_id, get("salt")?, params, get("verifier")?)
        };
        let seal = SealKey::derive(passphrase, &salt, params, &node_id)?;
        seal.open("verifier", &verifier)
            .map_err(|_| StoreError::WrongPassphrase(path.clone()))?;
        // Stores created before a table existed get it now.
        let tx = db.begin_write()?;
        tx.open_table(STATE)?;
        tx.commit()?;
        let store = Self {
            db,
            seal,
            node_id,
            path,
        };
        store.build_indexes(crate::session::unix_now())?;
        Ok(store)
    }

    /// The node id recorded at init.
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// Seals and stores a secret record.
    pub fn put_secret(&self, name: &str, plaintext: &[u8]) -> Result<(), StoreError> {
        let sealed = self.seal.seal(name, plaintext)?;
        let tx = self.db.begin_write()?;
        tx.open_table(SEALED)?.insert(name, sealed.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    /// Opens a secret record, if present.
    pub fn get_secret(&self, name: &str) -> Result<Option<SecretBytes>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(SEALED)?;
        let Some(v) = table.get(name)? else {
            return Ok(None);
        };
        self.seal
            .open(name, v.value())
            .map(Some)
            .map_err(|_| StoreError::Corrupt(name.to_string()))
    }

    /// Names of all sealed records.
    pub fn secret_names(&self) -> Result<Vec<String>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(SEALED)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (k, _) = item?;
            out.push(k.value().to_string());
        }
        Ok(out)
    }

    /// Atomically stores a sealed record and key metadata, and deletes `remove` records.
    pub fn commit_key(
        &self,
        meta: &KeyMeta,
        secret: (&str, &[u8]),
        remove: &[&str],
    ) -> Result<(), StoreError> {
        let sealed = self.seal.seal(secret.0, secret.1)?;
        let meta_json = serde_json::to_vec(meta).map_err(|e| StoreError::Db(e.to_string()))?;
        let tx = self.db.begin_write()?;
        {
            let mut s = tx.open_table(SEALED)?;
            s.insert(secret.0, sealed.as_slice())?;
            for r in remove {
                s.remove(*r)?;
            }
            tx.open_table(KEYS)?
                .insert(meta.key_id.as_str(), meta_json.as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// One durable transaction: a key's metadata, state writes (`None` deletes) and sealed
    /// records removed (an epoch's activation).
    pub fn commit_meta(
        &self,
        meta: &KeyMeta,
        items: &[(String, Option<Vec<u8>>)],
        unseal: &[String],
    ) -> Result<(), StoreError> {
        let meta_json = serde_json::to_vec(meta).map_err(|e| StoreError::Db(e.to_string()))?;
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(STATE)?;
            crate::prune::index::write_indexed(&mut t, items)?;
            let mut t = tx.open_table(SEALED)?;
            for name in unseal {
                t.remove(name.as_str())?;
            }
            tx.open_table(KEYS)?
                .insert(meta.key_id.as_str(), meta_json.as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Rewrites a key's metadata (the sealed share is unchanged).
    pub fn put_key_meta(&self, meta: &KeyMeta) -> Result<(), StoreError> {
        let meta_json = serde_json::to_vec(meta).map_err(|e| StoreError::Db(e.to_string()))?;
        let tx = self.db.begin_write()?;
        tx.open_table(KEYS)?
            .insert(meta.key_id.as_str(), meta_json.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    /// Deletes a sealed record.
    pub fn delete_secret(&self, name: &str) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        tx.open_table(SEALED)?.remove(name)?;
        tx.commit()?;
        Ok(())
    }

    /// Metadata of one key.
    pub fn key_meta(&self, key_id: &str) -> Result<Option<KeyMeta>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(KEYS)?;
        match table.get(key_id)? {
            None => Ok(None),
            Some(v) => serde_json::from_slice(v.value())
                .map(Some)
                .map_err(|_| StoreError::Corrupt(format!("keys/{key_id}"))),
        }
    }

    /// Metadata of every key.
    pub fn key_metas(&self) -> Result<Vec<KeyMeta>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(KEYS)?;
        let mut out = Vec::new();
        for item in table.iter()? {
            let (k, v) = item?;
            out.push(
                serde_json::from_slice(v.value())
                    .map_err(|_| StoreError::Corrupt(format!("keys/{}", k.value())))?,
            );
        }
        Ok(out)
    }

    /// Durably records a session id as used. Returns `false` if it was used before.
    pub fn claim_session(&self, session_id: &[u8; 32], now: u64) -> Result<bool, StoreError> {
        let tx = self.db.begin_write()?;
        let fresh = {
            let mut t = tx.open_table(SESSIONS)?;
            let seen = t.get(session_id.as_slice())?.is_some();
            if !seen {
                t.insert(session_id.as_slice(), now)?;
            }
            !seen
        };
        tx.commit()?;
        Ok(fresh)
    }

    /// Durably binds a request id to the intent context this node decoded for it.
    pub fn bind_request(
        &self,
        request_id: &str,
        ctx: &[u8; 32],
    ) -> Result<RequestBinding, StoreError> {
        {
            let tx = self.db.begin_read()?;
            if let Some(v) = tx.open_table(REQUESTS)?.get(request_id)? {
                return Ok(match v.value() == ctx.as_slice() {
                    true => RequestBinding::Same,
                    false => RequestBinding::Conflict,
                });
            }
        }
        let tx = self.db.begin_write()?;
        let binding = {
            let mut t = tx.open_table(REQUESTS)?;
            let existing = t.get(request_id)?.map(|v| v.value().to_vec());
            match existing {
                Some(v) if v == ctx => RequestBinding::Same,
                Some(_) => RequestBinding::Conflict,
                None => {
                    t.insert(request_id, ctx.as_slice())?;
                    RequestBinding::New
                }
            }
        };
        tx.commit()?;
        Ok(binding)
    }

    /// One state value.
    pub fn state_get<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(STATE)?;
        let Some(v) = table.get(key)? else {
            return Ok(None);
        };
        serde_json::from_slice(v.value())
            .map(Some)
            .map_err(|_| StoreError::Corrupt(format!("state/{key}")))
    }

    /// Writes several state values (and deletes `None`s) in one durable transaction.
    pub fn state_write(&self, items: &[(String, Option<Vec<u8>>)]) -> Result<(), StoreError> {
        self.commit(items, None, &[])
    }

    /// One durable transaction: state writes (`None` deletes), at most one new sealed record,
    /// and sealed records removed if present.
    pub fn commit(
        &self,
        items: &[(String, Option<Vec<u8>>)],
        seal_new: Option<(&str, &[u8])>,
        unseal: &[String],
    ) -> Result<(), StoreError> {
        self.commit_with(items, seal_new, unseal, false)
    }

    /// Like [`Self::commit`], but consumes the `consume` sealed records: if one is already gone
    /// (another session consumed it first), nothing is written and the result is
    /// [`StoreError::Missing`]. Check and delete are one write transaction, and redb runs one
    /// at a time, so two sessions can never both consume the same presignature.
    pub fn commit_consuming(
        &self,
        items: &[(String, Option<Vec<u8>>)],
        consume: &[String],
    ) -> Result<(), StoreError> {
        self.commit_with(items, None, consume, true)
    }

    fn commit_with(
        &self,
        items: &[(String, Option<Vec<u8>>)],
        seal_new: Option<(&str, &[u8])>,
        unseal: &[String],
        required: bool,
    ) -> Result<(), StoreError> {
        let sealed = match seal_new {
            Some((name, plain)) => Some((name, self.seal.seal(name, plain)?)),
            None => None,
        };
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(STATE)?;
            crate::prune::index::write_indexed(&mut t, items)?;
            let mut t = tx.open_table(SEALED)?;
            if let Some((name, bytes)) = &sealed {
                t.insert(*name, bytes.as_slice())?;
            }
            for name in unseal {
                if t.remove(name.as_str())?.is_none() && required {
                    // Dropping the transaction aborts it: nothing above is written.
                    return Err(StoreError::Missing(name.clone()));
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Stores `value` under `key` unless a value is there; returns the value now stored.
    pub fn state_insert_new<T: Serialize + serde::de::DeserializeOwned>(
        &self,
        key: &str,
        value: &T,
    ) -> Result<T, StoreError> {
        // Fast path without a write transaction (and its fsync): re-evaluations find it set.
        if let Some(v) = self.state_get::<T>(key)? {
            return Ok(v);
        }
        let tx = self.db.begin_write()?;
        let out = {
            let mut t = tx.open_table(STATE)?;
            let existing = t.get(key)?.map(|v| v.value().to_vec());
            match existing {
                Some(bytes) => serde_json::from_slice(&bytes)
                    .map_err(|_| StoreError::Corrupt(format!("state/{key}")))?,
                None => {
                    let bytes =
                        serde_json::to_vec(value).map_err(|e| StoreError::Db(e.to_string()))?;
                    t.insert(key, bytes.as_slice())?;
                    serde_json::from_slice(&bytes)
                        .map_err(|_| StoreError::Corrupt(format!("state/{key}")))?
                }
            }
        };
        tx.commit()?;
        Ok(out)
    }

    /// Binds `a` to `va` and `b` to `vb` in one transaction, unless either is bound to
    /// something else: returns `Ok(None)` when both are (now) bound as asked, or the values
    /// already there when one differs (nothing is written then).
    pub fn state_bind_pair(
        &self,
        (a, va): (&str, &[u8]),
        (b, vb): (&str, &[u8]),
    ) -> Result<Option<PairBound>, StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(STATE)?;
            let old_a = t.get(a)?.map(|v| v.value().to_vec());
            let old_b = t.get(b)?.map(|v| v.value().to_vec());
            match (&old_a, &old_b) {
                (None, None) => {
                    t.insert(a, va)?;
                    t.insert(b, vb)?;
                }
                (Some(x), Some(y)) if x.as_slice() == va && y.as_slice() == vb => return Ok(None),
                _ => return Ok(Some((old_a, old_b))),
            }
        }
        tx.commit()?;
        Ok(None)
    }

    /// Every state key that starts with `prefix`, in order (values not read).
    pub fn state_keys(&self, prefix: &str) -> Result<Vec<String>, StoreError> {
        self.state_range(prefix, |k, _| Ok(k))
    }

    /// Every state value whose key starts with `prefix`, in key order.
    pub fn state_scan<T: serde::de::DeserializeOwned>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, T)>, StoreError> {
        self.state_range(prefix, |k, v| {
            let parsed =
                serde_json::from_slice(v).map_err(|_| StoreError::Corrupt(format!("state/{k}")))?;
            Ok((k, parsed))
        })
    }

    /// Up to `limit` state entries whose key starts with `prefix`, from key `start` on, in key
    /// order, values unparsed.
    pub fn state_raw_from(
        &self,
        prefix: &str,
        start: &str,
        limit: usize,
    ) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(STATE)?;
        let mut out = Vec::new();
        for item in table.range(start.max(prefix)..)? {
            let (k, v) = item?;
            let k = k.value();
            if !k.starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.to_string(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Several state values read in one transaction (`None` where absent).
    pub fn state_get_many<T: serde::de::DeserializeOwned>(
        &self,
        keys: &[String],
    ) -> Result<Vec<Option<T>>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(STATE)?;
        keys.iter()
            .map(|k| match table.get(k.as_str())? {
                None => Ok(None),
                Some(v) => serde_json::from_slice(v.value())
                    .map(Some)
                    .map_err(|_| StoreError::Corrupt(format!("state/{k}"))),
            })
            .collect()
    }

    /// Forgets requests in one durable transaction: for each `(request id, latest activity,
    /// state keys)`, deletes the keys (keeping the indexes in step) and the request's binding,
    /// unless the request's activity changed since the keys were collected (it is kept then).
    /// Returns the requests forgotten.
    pub fn forget(&self, requests: &[(String, u64, Vec<String>)]) -> Result<usize, StoreError> {
        use crate::prune::index;
        let tx = self.db.begin_write()?;
        let mut forgotten = 0;
        {
            let mut t = tx.open_table(STATE)?;
            let mut bound = tx.open_table(REQUESTS)?;
            for (rid, at, keys) in requests {
                let last = index::read_state(&t, &format!("{}{rid}", index::REQ_LAST))?
                    .and_then(|b| serde_json::from_slice::<u64>(&b).ok());
                if last.is_some_and(|l| l != *at) {
                    continue;
                }
                let items: Vec<(String, Option<Vec<u8>>)> =
                    keys.iter().map(|k| (k.clone(), None)).collect();
                index::write_indexed(&mut t, &items)?;
                bound.remove(rid.as_str())?;
                forgotten += 1;
            }
        }
        tx.commit()?;
        Ok(forgotten)
    }

    /// Records and bytes (keys plus values) in every table: what the store holds, apart from
    /// redb's own overhead and free pages (for measuring growth).
    pub fn usage(&self) -> Result<Usage, StoreError> {
        let tx = self.db.begin_read()?;
        let mut u = Usage::default();
        for t in [META, SEALED, KEYS, REQUESTS, STATE] {
            for (k, v) in dump(&tx, t, |k, v| (k.len(), v.len()))? {
                u.records += 1;
                u.bytes += (k + v) as u64;
            }
        }
        for (k, _) in dump(&tx, SESSIONS, |k, v| (k.len(), v))? {
            u.records += 1;
            u.bytes += k as u64 + 8;
        }
        Ok(u)
    }

    /// Whether a request id is bound (see [`Self::bind_request`]).
    pub fn request_bound(&self, request_id: &str) -> Result<bool, StoreError> {
        let tx = self.db.begin_read()?;
        Ok(tx.open_table(REQUESTS)?.get(request_id)?.is_some())
    }

    /// Builds the time indexes of a store written before they existed (once; marked in `meta`).
    /// A request binding with no dated record counts as active at `now`.
    fn build_indexes(&self, now: u64) -> Result<(), StoreError> {
        use crate::prune::index;
        {
            let tx = self.db.begin_read()?;
            if tx.open_table(META)?.get(INDEX_MARK)?.is_some() {
                return Ok(());
            }
        }
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(STATE)?;
            let mut subjects = Vec::new();
            for item in t.iter()? {
                let (k, _) = item?;
                subjects.extend(index::subject(k.value()));
            }
            subjects.sort();
            subjects.dedup();
            for s in &subjects {
                let d = index::derive(s, |k| index::read_state(&t, k))?;
                if let Some(k) = &d.index {
                    t.insert(k.as_str(), index::MARK)?;
                }
                if let Some((rid, at)) = d.activity {
                    index::touch(&mut t, &rid, at)?;
                }
            }
            let mut bound = Vec::new();
            for item in tx.open_table(REQUESTS)?.iter()? {
                bound.push(item?.0.value().to_string());
            }
            for rid in bound {
                if index::read_state(&t, &format!("{}{rid}", index::REQ_LAST))?.is_none() {
                    index::touch(&mut t, &rid, now)?;
                }
            }
            tx.open_table(META)?.insert(INDEX_MARK, b"1".as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Maps every state entry whose key starts with `prefix`, in key order.
    fn state_range<T>(
        &self,
        prefix: &str,
        mut f: impl FnMut(String, &[u8]) -> Result<T, StoreError>,
    ) -> Result<Vec<T>, StoreError> {
        let tx = self.db.begin_read()?;
        let table = tx.open_table(STATE)?;
        let mut out = Vec::new();
        for item in table.range(prefix..)? {
            let (k, v) = item?;
            let k = k.value().to_string();
            if !k.starts_with(prefix) {
                break;
            }
            out.push(f(k, v.value())?);
        }
        Ok(out)
    }
}

/// What a store holds (see [`Store::usage`]).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// Records in all tables.
    pub records: u64,
    /// Bytes of their keys and values.
    pub bytes: u64,
}

/// The values already bound to the two keys of [`Store::state_bind_pair`], when one differs.
pub type PairBound = (Option<Vec<u8>>, Option<Vec<u8>>);

/// JSON bytes of a state value (for [`Store::state_write`]).
pub fn json_bytes<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(v).map_err(|e| StoreError::Db(e.to_string()))
}

/// Everything in a node's store, with secrets decrypted: the content of an encrypted backup.
/// No `Debug`; the secrets are wiped on drop.
#[derive(Serialize, Deserialize)]
pub struct Snapshot {
    /// The node id recorded at init.
    pub node_id: String,
    /// Sealed records, opened: `(record name, plaintext)`.
    secrets: Vec<(String, Vec<u8>)>,
    keys: Vec<(String, Vec<u8>)>,
    sessions: Vec<(Vec<u8>, u64)>,
    requests: Vec<(String, Vec<u8>)>,
    state: Vec<(String, Vec<u8>)>,
}

impl Drop for Snapshot {
    fn drop(&mut self) {
        use zeroize::Zeroize;
        for (_, v) in &mut self.secrets {
            v.zeroize();
        }
    }
}

impl Snapshot {
    /// Names of the secret records it holds (never their content).
    pub fn secret_names(&self) -> Vec<String> {
        self.secrets.iter().map(|(n, _)| n.clone()).collect()
    }
}

fn dump<K: redb::Key + 'static, V: redb::Value + 'static, A, B>(
    tx: &redb::ReadTransaction,
    table: TableDefinition<K, V>,
    f: impl Fn(K::SelfType<'_>, V::SelfType<'_>) -> (A, B),
) -> Result<Vec<(A, B)>, StoreError> {
    let t = tx.open_table(table)?;
    let mut out = Vec::new();
    for item in t.iter()? {
        let (k, v) = item?;
        out.push(f(k.value(), v.value()));
    }
    Ok(out)
}

impl Store {
    /// Reads every table, opening every sealed record (for an encrypted backup).
    pub fn snapshot(&self) -> Result<Snapshot, StoreError> {
        let tx = self.db.begin_read()?;
        let sealed = dump(&tx, SEALED, |k, v| (k.to_string(), v.to_vec()))?;
        let mut secrets = Vec::new();
        for (name, bytes) in sealed {
            // A presignature must never be used twice: a backup restored after one was used
            // would bring it back, so none is ever backed up (the pool refills).
            if name.starts_with(crate::presig::RECORD_PREFIX) {
                continue;
            }
            let plain = self
                .seal
                .open(&name, &bytes)
                .map_err(|_| StoreError::Corrupt(name.clone()))?;
            secrets.push((name, plain.expose_secret().to_vec()));
        }
        Ok(Snapshot {
            node_id: self.node_id.clone(),
            secrets,
            keys: dump(&tx, KEYS, |k, v| (k.to_string(), v.to_vec()))?,
            sessions: dump(&tx, SESSIONS, |k, v| (k.to_vec(), v))?,
            requests: dump(&tx, REQUESTS, |k, v| (k.to_string(), v.to_vec()))?,
            state: dump(&tx, STATE, |k, v| (k.to_string(), v.to_vec()))?
                .into_iter()
                .filter(|(k, _)| !k.starts_with(crate::presig::META_PREFIX))
                .collect(),
        })
    }

    /// Creates a store in `dir` from a snapshot, sealing every secret under `passphrase`.
    pub fn restore(
        dir: &Path,
        snap: &Snapshot,
        passphrase: &Passphrase,
        params: KdfParams,
    ) -> Result<Self, StoreError> {
        let store = Self::create(dir, &snap.node_id, passphrase, params)?;
        let tx = store.db.begin_write()?;
        {
            let mut t = tx.open_table(SEALED)?;
            for (name, plain) in &snap.secrets {
                t.insert(name.as_str(), store.seal.seal(name, plain)?.as_slice())?;
            }
            let mut t = tx.open_table(KEYS)?;
            for (k, v) in &snap.keys {
                t.insert(k.as_str(), v.as_slice())?;
            }
            let mut t = tx.open_table(SESSIONS)?;
            for (k, v) in &snap.sessions {
                t.insert(k.as_slice(), *v)?;
            }
            let mut t = tx.open_table(REQUESTS)?;
            for (k, v) in &snap.requests {
                t.insert(k.as_str(), v.as_slice())?;
            }
            let mut t = tx.open_table(STATE)?;
            for (k, v) in &snap.state {
                t.insert(k.as_str(), v.as_slice())?;
            }
            // A backup from before the time indexes has none: rebuild them.
            tx.open_table(META)?.remove(INDEX_MARK)?;
        }
        tx.commit()?;
        store.build_indexes(crate::session::unix_now())?;
        Ok(store)
    }
}

/// A fresh store in a unique temporary directory, with a fast KDF (unit tests only).
#[cfg(test)]
#[allow(clippy::unwrap_used)]
pub(crate) fn test_store(tag: &str) -> (Store, std::path::PathBuf) {
    let dir = std::env::temp_dir().join(format!(
        "{tag}-{}-{}",
        std::process::id(),
        rand_core::RngCore::next_u32(&mut rand_core::OsRng)
    ));
    let fast = crate::seal::KdfParams {
        m_kib: 256,
        t: 1,
        p: 1,
    };
    let pass = crate::secret::Passphrase::new("pw".into());
    (Store::create(&dir, "n1", &pass, fast).unwrap(), dir)
}
