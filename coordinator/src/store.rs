//! The coordinator's redb store: keys and sign requests. Nothing in it is secret.

use std::{collections::BTreeMap, path::Path};

use proto::api::{ApiError, KeyInfo, SignRequestBody, SignRequestView};
use redb::{Database, ReadableTable, TableDefinition};
use serde::{de::DeserializeOwned, Deserialize, Serialize};

const KEYS: TableDefinition<&str, &[u8]> = TableDefinition::new("keys");
const REQUESTS: TableDefinition<&str, &[u8]> = TableDefinition::new("requests");
/// Vetoes, freezes and unfreezes, in arrival order (replayed to nodes that reconnect).
const ORDERS: TableDefinition<&str, &[u8]> = TableDefinition::new("orders");
/// Ledger entries relayed between nodes: `<origin>/<seq:020>`.
const LEDGER: TableDefinition<&str, &[u8]> = TableDefinition::new("ledger");
/// Singletons: the latest policy bundle.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Signing and ceremony sessions by id (hex): who took part and how each ended.
const SESSIONS: TableDefinition<&str, &[u8]> = TableDefinition::new("sessions");
/// Unused presignatures: `<key id>\0<parties, comma-separated>\0<created at:020><id hex>`
/// (oldest first per key and subset; counts and ages come from the keys alone).
const PRESIGS: TableDefinition<&str, &[u8]> = TableDefinition::new("presigs");
/// Segregated accounts: `<key id>\0<account name>`.
const ACCOUNTS: TableDefinition<&str, &[u8]> = TableDefinition::new("accounts");

/// Store errors.
#[derive(Debug, thiserror::Error)]
#[error("coordinator store error: {0}")]
pub struct StoreError(String);

macro_rules! db_err {
    ($($t:ty),*) => {$(impl From<$t> for StoreError {
        fn from(e: $t) -> Self { StoreError(e.to_string()) }
    })*};
}
db_err!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    serde_json::Error
);

/// A key as the coordinator knows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyRecord {
    /// Public view.
    pub info: KeyInfo,
    /// HD chain code (hex), for later derivation.
    #[serde(default)]
    pub chain_code: Option<String>,
    /// Presignature pool depth per signer subset, if set for this key (else the default).
    #[serde(default)]
    pub presign_depth: Option<u32>,
    /// The certificate that activated the key's current epoch (replayed to every node that
    /// connects, before its sync mark); `None` at epoch 0.
    #[serde(default)]
    pub activation: Option<proto::lifecycle::Activation>,
    /// When the key's current epoch became active (unix seconds: the key's ceremony, or the
    /// activation certificate stored); the refresh schedule counts from it.
    #[serde(default)]
    pub epoch_since: Option<u64>,
}

/// A sign request as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RequestRecord {
    /// The body as accepted (for idempotency checks and for resuming after a restart).
    pub body: SignRequestBody,
    /// Public view.
    pub view: SignRequestView,
    /// Approvals received, as sent (the nodes verify them).
    #[serde(default)]
    pub approvals: Vec<proto::authz::Approval>,
    /// Presignatures taken from the pool for parts of this request (a presignature is
    /// assigned once; a resumed request signs the part with the same one).
    #[serde(default)]
    pub presigs: std::collections::BTreeMap<u32, PoolEntry>,
}

/// A presignature in the pool, with the public data its parties reported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PoolEntry {
    /// Id (hex): the presign session's id.
    pub id: String,
    /// Key.
    pub key_id: String,
    /// Parties, in session order.
    pub parties: Vec<String>,
    /// Public data, for checking and combining partial signatures.
    pub public: proto::presig::PresigPublic,
    /// When it was made (unix seconds).
    pub created_at: u64,
}

impl PoolEntry {
    fn table_key(&self) -> String {
        format!(
            "{}{:020}{}",
            subset_prefix(&self.key_id, &self.parties),
            self.created_at,
            self.id
        )
    }

    /// The id as bytes.
    pub fn id_bytes(&self) -> Option<proto::presig::PresigId> {
        hex::decode(&self.id).ok()?.try_into().ok()
    }
}

/// A segregated account as the coordinator knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountRecord {
    /// Key.
    pub key_id: String,
    /// Name.
    pub name: String,
    /// Account number `a` (keys `m/a/i`).
    pub index: u32,
    /// Creation (unix seconds).
    pub created_at: u64,
    /// The keys at least t nodes derived and agreed on (`None` until then).
    pub keys: Option<proto::hd::AccountKeys>,
    /// Nodes that registered the account and reported those keys.
    pub nodes: Vec<String>,
}

/// A session as stored: written before its start frame is sent, updated when it ends.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SessionRecord {
    /// Session id (hex).
    pub session_id: String,
    /// Key.
    pub key_id: String,
    /// `sign`, `keygen` or `aux`.
    pub kind: String,
    /// For signing: the request and part.
    #[serde(default)]
    pub request_id: Option<String>,
    /// For signing: the part.
    #[serde(default)]
    pub part: Option<u32>,
    /// Parties, in session order.
    pub parties: Vec<String>,
    /// Start (unix seconds).
    pub started_at: u64,
    /// End (unix seconds); `None` while running or if the coordinator stopped meanwhile.
    #[serde(default)]
    pub ended_at: Option<u64>,
    /// `ok`, or the failure code.
    #[serde(default)]
    pub outcome: Option<String>,
    /// Parties blamed for a failure.
    #[serde(default)]
    pub blame: Vec<String>,
}

/// The coordinator's store.
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens or creates `coordinator.redb` in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError(e.to_string()))?;
        let db = Database::create(dir.join("coordinator.redb"))?;
        let tx = db.begin_write()?;
        tx.open_table(KEYS)?;
        tx.open_table(REQUESTS)?;
        tx.open_table(ORDERS)?;
        tx.open_table(LEDGER)?;
        tx.open_table(META)?;
        tx.open_table(SESSIONS)?;
        tx.open_table(PRESIGS)?;
        tx.open_table(ACCOUNTS)?;
        tx.commit()?;
        Ok(Self { db })
    }

    fn get<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        k: &str,
    ) -> Result<Option<T>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(table)?;
        let v = t.get(k)?;
        Ok(match v {
            Some(v) => Some(serde_json::from_slice(v.value())?),
            None => None,
        })
    }

    fn put<T: Serialize>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        k: &str,
        v: &T,
    ) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(v)?;
        let tx = self.db.begin_write()?;
        tx.open_table(table)?.insert(k, bytes.as_slice())?;
        tx.commit()?;
        Ok(())
    }

    fn all<T: DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
    ) -> Result<Vec<T>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(table)?;
        let mut out = Vec::new();
        for item in t.iter()? {
            let (_, v) = item?;
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }

    /// One key.
    pub fn key(&self, key_id: &str) -> Result<Option<KeyRecord>, StoreError> {
        self.get(KEYS, key_id)
    }

    /// Stores a key.
    pub fn put_key(&self, rec: &KeyRecord) -> Result<(), StoreError> {
        self.put(KEYS, &rec.info.key_id, rec)
    }

    /// Creates a key record only if the id is free; returns `false` if taken.
    pub fn insert_key(&self, rec: &KeyRecord) -> Result<bool, StoreError> {
        self.insert_new(KEYS, &rec.info.key_id, rec)
    }

    /// Every key.
    pub fn keys(&self) -> Result<Vec<KeyRecord>, StoreError> {
        self.all(KEYS)
    }

    /// One request.
    pub fn request(&self, id: &str) -> Result<Option<RequestRecord>, StoreError> {
        self.get(REQUESTS, id)
    }

    /// Stores a request.
    pub fn put_request(&self, rec: &RequestRecord) -> Result<(), StoreError> {
        self.put(REQUESTS, &rec.view.request_id, rec)
    }

    /// Creates a request only if the id is free; otherwise returns the existing one.
    pub fn insert_request(&self, rec: &RequestRecord) -> Result<Option<RequestRecord>, StoreError> {
        let tx = self.db.begin_write()?;
        let existing = {
            let mut t = tx.open_table(REQUESTS)?;
            let existing = t
                .get(rec.view.request_id.as_str())?
                .map(|v| serde_json::from_slice::<RequestRecord>(v.value()))
                .transpose()?;
            if existing.is_none() {
                let bytes = serde_json::to_vec(rec)?;
                t.insert(rec.view.request_id.as_str(), bytes.as_slice())?;
            }
            existing
        };
        tx.commit()?;
        Ok(existing)
    }

    /// Reads, changes and writes a request in one transaction; `None` if there is no such request.
    pub fn update_request(
        &self,
        id: &str,
        f: impl FnOnce(&mut RequestRecord),
    ) -> Result<Option<RequestRecord>, StoreError> {
        self.update(REQUESTS, id, f)
    }

    /// Reads, changes and writes one record in one transaction; `None` if it does not exist.
    fn update<T: Serialize + DeserializeOwned>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        id: &str,
        f: impl FnOnce(&mut T),
    ) -> Result<Option<T>, StoreError> {
        let tx = self.db.begin_write()?;
        let out = {
            let mut t = tx.open_table(table)?;
            let existing = t
                .get(id)?
                .map(|v| serde_json::from_slice::<T>(v.value()))
                .transpose()?;
            match existing {
                None => None,
                Some(mut rec) => {
                    f(&mut rec);
                    let bytes = serde_json::to_vec(&rec)?;
                    t.insert(id, bytes.as_slice())?;
                    Some(rec)
                }
            }
        };
        tx.commit()?;
        Ok(out)
    }

    /// Records a session (before it starts, and again when it ends).
    pub fn put_session(&self, rec: &SessionRecord) -> Result<(), StoreError> {
        self.put(SESSIONS, &rec.session_id, rec)
    }

    /// Every session.
    pub fn sessions(&self) -> Result<Vec<SessionRecord>, StoreError> {
        self.all(SESSIONS)
    }

    /// Reads, changes and writes a key in one transaction; `None` if there is no such key.
    pub fn update_key(
        &self,
        id: &str,
        f: impl FnOnce(&mut KeyRecord),
    ) -> Result<Option<KeyRecord>, StoreError> {
        self.update(KEYS, id, f)
    }

    /// Every request.
    pub fn requests(&self) -> Result<Vec<RequestRecord>, StoreError> {
        self.all(REQUESTS)
    }

    fn insert_new<T: Serialize>(
        &self,
        table: TableDefinition<&str, &[u8]>,
        k: &str,
        v: &T,
    ) -> Result<bool, StoreError> {
        let bytes = serde_json::to_vec(v)?;
        let tx = self.db.begin_write()?;
        let fresh = {
            let mut t = tx.open_table(table)?;
            let fresh = t.get(k)?.is_none();
            if fresh {
                t.insert(k, bytes.as_slice())?;
            }
            fresh
        };
        tx.commit()?;
        Ok(fresh)
    }

    /// Appends an order to the order log unless the same order is stored; returns `true` if
    /// new. The duplicate check, the position and the write are one transaction, so concurrent
    /// appends each get their own position.
    pub fn append_order(&self, order: &proto::authz::Order) -> Result<bool, StoreError> {
        let id = order.id();
        let bytes = serde_json::to_vec(order)?;
        let tx = self.db.begin_write()?;
        let fresh = {
            let mut t = tx.open_table(ORDERS)?;
            let mut next = 0u64;
            let mut dup = false;
            for item in t.iter()? {
                let (_, v) = item?;
                let held: proto::authz::Order = serde_json::from_slice(v.value())?;
                dup |= held.id() == id;
                next += 1;
            }
            if !dup {
                t.insert(format!("{next:020}").as_str(), bytes.as_slice())?;
            }
            !dup
        };
        tx.commit()?;
        Ok(fresh)
    }

    /// Every order, in arrival order.
    pub fn orders(&self) -> Result<Vec<proto::authz::Order>, StoreError> {
        self.all(ORDERS)
    }

    /// The orders from position `from` on, in arrival order (a node's replay cursor).
    pub fn orders_from(&self, from: u64) -> Result<Vec<proto::authz::Order>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(ORDERS)?;
        let start = format!("{from:020}");
        let mut out = Vec::new();
        for item in t.range(start.as_str()..)? {
            let (_, v) = item?;
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }

    /// The highest contiguous ledger sequence held per origin.
    pub fn ledger_heads(&self) -> Result<BTreeMap<String, u64>, StoreError> {
        let mut heads = BTreeMap::<String, u64>::new();
        // Keys sort by origin, then by zero-padded sequence: one pass finds each run from 1.
        for e in self.all::<proto::authz::LedgerEntry>(LEDGER)? {
            let head = heads.entry(e.origin.clone()).or_insert(0);
            if e.seq == *head + 1 {
                *head = e.seq;
            }
        }
        heads.retain(|_, h| *h > 0);
        Ok(heads)
    }

    /// Stores a ledger entry; `false` if that origin and sequence is already held.
    pub fn put_ledger(&self, e: &proto::authz::LedgerEntry) -> Result<bool, StoreError> {
        self.insert_new(LEDGER, &format!("{}/{:020}", e.origin, e.seq), e)
    }

    /// Ledger entries above per-origin heads, at most `limit`, lowest sequences of each origin
    /// first.
    pub fn ledger_after(
        &self,
        heads: &BTreeMap<String, u64>,
        limit: usize,
    ) -> Result<Vec<proto::authz::LedgerEntry>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(LEDGER)?;
        let mut out = Vec::new();
        // Keys are `origin/seq` (zero-padded): at an origin's first entry at or below its
        // head, jump straight past the head, so the scan never walks what the node holds.
        let mut from = String::new();
        loop {
            let mut jump = None;
            for item in t.range(from.as_str()..)? {
                let (_, v) = item?;
                let e: proto::authz::LedgerEntry = serde_json::from_slice(v.value())?;
                let head = heads.get(&e.origin).copied().unwrap_or(0);
                if e.seq <= head {
                    jump = Some(format!("{}/{:020}", e.origin, head.saturating_add(1)));
                    break;
                }
                out.push(e);
                if out.len() >= limit {
                    return Ok(out);
                }
            }
            match jump {
                Some(next) if next > from => from = next,
                _ => return Ok(out),
            }
        }
    }

    /// Adds a presignature to the pool.
    pub fn put_presig(&self, e: &PoolEntry) -> Result<(), StoreError> {
        self.put(PRESIGS, &e.table_key(), e)
    }

    /// Per signer subset of a key: unused presignatures and the oldest one's creation time,
    /// read from the table keys alone.
    pub fn presig_counts(
        &self,
        key_id: &str,
    ) -> Result<BTreeMap<Vec<String>, (u64, u64)>, StoreError> {
        let tx = self.db.begin_read()?;
        let t = tx.open_table(PRESIGS)?;
        let prefix = format!("{key_id}\0");
        let mut out: BTreeMap<Vec<String>, (u64, u64)> = BTreeMap::new();
        for item in t.range(prefix.as_str()..)? {
            let (k, _) = item?;
            let Some(rest) = k.value().strip_prefix(prefix.as_str()) else {
                break;
            };
            let Some((subset, tail)) = rest.split_once('\0') else {
                continue;
            };
            let created: u64 = tail.get(..20).and_then(|c| c.parse().ok()).unwrap_or(0);
            let parties = subset.split(',').map(str::to_string).collect();
            let slot = out.entry(parties).or_insert((0, created));
            slot.0 += 1;
            slot.1 = slot.1.min(created);
        }
        Ok(out)
    }

    /// Takes the oldest presignature of a key's subset out of the pool and assigns it to a
    /// request part, in one transaction: it is never handed out twice.
    pub fn take_presig(
        &self,
        request_id: &str,
        part: u32,
        key_id: &str,
        parties: &[String],
    ) -> Result<Option<PoolEntry>, StoreError> {
        let prefix = subset_prefix(key_id, parties);
        let tx = self.db.begin_write()?;
        let taken = {
            let mut pool = tx.open_table(PRESIGS)?;
            let first = match pool.range(prefix.as_str()..)?.next() {
                Some(item) => {
                    let (k, v) = item?;
                    let k = k.value().to_string();
                    match k.starts_with(&prefix) {
                        true => Some((k, serde_json::from_slice::<PoolEntry>(v.value())?)),
                        false => None,
                    }
                }
                None => None,
            };
            let mut reqs = tx.open_table(REQUESTS)?;
            let rec = reqs
                .get(request_id)?
                .map(|v| serde_json::from_slice::<RequestRecord>(v.value()))
                .transpose()?;
            match (first, rec) {
                (Some((k, e)), Some(mut rec)) => {
                    pool.remove(k.as_str())?;
                    rec.presigs.insert(part, e.clone());
                    let bytes = serde_json::to_vec(&rec)?;
                    reqs.insert(request_id, bytes.as_slice())?;
                    Some(e)
                }
                _ => None,
            }
        };
        tx.commit()?;
        Ok(taken)
    }

    /// Deletes every presignature of a key from the pool (its share epoch ended).
    pub fn drop_presigs(&self, key_id: &str) -> Result<usize, StoreError> {
        let prefix = format!("{key_id}\0");
        let tx = self.db.begin_write()?;
        let n = {
            let mut pool = tx.open_table(PRESIGS)?;
            let keys: Vec<String> = pool
                .range(prefix.as_str()..)?
                .map_while(|item| {
                    item.ok()
                        .map(|(k, _)| k.value().to_string())
                        .filter(|k| k.starts_with(&prefix))
                })
                .collect();
            for k in &keys {
                pool.remove(k.as_str())?;
            }
            keys.len()
        };
        tx.commit()?;
        Ok(n)
    }

    /// One account.
    pub fn account(&self, key_id: &str, name: &str) -> Result<Option<AccountRecord>, StoreError> {
        self.get(ACCOUNTS, &format!("{key_id}\0{name}"))
    }

    /// Every account of every key.
    pub fn all_accounts(&self) -> Result<Vec<AccountRecord>, StoreError> {
        self.all(ACCOUNTS)
    }

    /// Stores an account.
    pub fn put_account(&self, rec: &AccountRecord) -> Result<(), StoreError> {
        self.put(ACCOUNTS, &format!("{}\0{}", rec.key_id, rec.name), rec)
    }

    /// The account `name` of a key: the stored one, or a new one numbered after the key's last
    /// account (in one transaction, so two creations never share a number).
    pub fn reserve_account(
        &self,
        key_id: &str,
        name: &str,
        now: u64,
    ) -> Result<AccountRecord, StoreError> {
        let tx = self.db.begin_write()?;
        let rec = {
            let mut t = tx.open_table(ACCOUNTS)?;
            let k = format!("{key_id}\0{name}");
            if let Some(v) = t.get(k.as_str())? {
                return Ok(serde_json::from_slice(v.value())?);
            }
            let prefix = format!("{key_id}\0");
            let mut next = 0u32;
            for item in t.range(prefix.as_str()..)? {
                let (key, v) = item?;
                if !key.value().starts_with(&prefix) {
                    break;
                }
                let other: AccountRecord = serde_json::from_slice(v.value())?;
                next = next.max(other.index.saturating_add(1));
            }
            let rec = AccountRecord {
                key_id: key_id.to_string(),
                name: name.to_string(),
                index: next,
                created_at: now,
                keys: None,
                nodes: vec![],
            };
            t.insert(k.as_str(), serde_json::to_vec(&rec)?.as_slice())?;
            rec
        };
        tx.commit()?;
        Ok(rec)
    }

    /// A singleton value.
    pub fn meta<T: DeserializeOwned>(&self, k: &str) -> Result<Option<T>, StoreError> {
        self.get(META, k)
    }

    /// Sets a singleton value.
    pub fn set_meta<T: Serialize>(&self, k: &str, v: &T) -> Result<(), StoreError> {
        self.put(META, k, v)
    }
}

fn subset_prefix(key_id: &str, parties: &[String]) -> String {
    format!("{key_id}\0{}\0", parties.join(","))
}

/// Convenience constructor for an API error.
pub fn api_error(code: &str, message: impl Into<String>) -> ApiError {
    ApiError {
        code: code.to_string(),
        message: message.into(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    fn veto(n: u32) -> proto::authz::Order {
        proto::authz::Order::Veto(proto::authz::Veto {
            request_id: format!("req-{n}"),
            guardian: [n as u8; 32],
            signature: [7; 64],
        })
    }

    /// Two threads appending orders at once: every order is kept, each once, in one sequence.
    #[test]
    fn concurrent_order_appends_are_all_kept() {
        let dir = std::env::temp_dir().join(format!("coord-orders-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = std::sync::Arc::new(Store::open(&dir).unwrap());
        let per = 150u32;
        let threads: Vec<_> = (0..2u32)
            .map(|t| {
                let store = store.clone();
                std::thread::spawn(move || {
                    for i in 0..per {
                        assert!(store.append_order(&veto(t * 1000 + i)).unwrap());
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let held = store.orders().unwrap();
        assert_eq!(held.len(), 2 * per as usize, "an order was overwritten");
        let ids: std::collections::BTreeSet<String> = held.iter().map(|o| o.id()).collect();
        assert_eq!(ids.len(), held.len());
        // A duplicate is not appended again; the cursor reads the tail.
        assert!(!store.append_order(&veto(0)).unwrap());
        assert_eq!(store.orders_from(2 * per as u64 - 1).unwrap().len(), 1);
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Pages of ledger entries start past the asker's heads and hold at most the page size.
    #[test]
    fn ledger_pages_skip_what_the_node_holds() {
        let dir = std::env::temp_dir().join(format!("coord-ledger-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let store = Store::open(&dir).unwrap();
        for origin in ["node-1", "node-10", "node-2"] {
            for seq in 1..=5 {
                let e: proto::authz::LedgerEntry = serde_json::from_value(serde_json::json!({
                    "origin": origin, "seq": seq, "request_id": format!("r{seq}"),
                    "key_id": "k", "signed_at": 1, "moves": [],
                    "signature": hex::encode([0u8; 64]),
                }))
                .unwrap();
                store.put_ledger(&e).unwrap();
            }
        }
        let heads: BTreeMap<String, u64> =
            [("node-1".to_string(), 3), ("node-2".to_string(), 5)].into();
        let page = store.ledger_after(&heads, 100).unwrap();
        let got: Vec<(String, u64)> = page.iter().map(|e| (e.origin.clone(), e.seq)).collect();
        let mut want = vec![("node-1".to_string(), 4), ("node-1".to_string(), 5)];
        want.extend((1..=5).map(|s| ("node-10".to_string(), s)));
        assert_eq!(got, want);
        assert_eq!(store.ledger_after(&heads, 3).unwrap().len(), 3);
        assert_eq!(store.ledger_heads().unwrap()["node-10"], 5);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
