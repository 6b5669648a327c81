//! What a node counts against velocity: its own reservations and every peer's ledger entry,
//! merged so that no peer can take anything away from a window.

use std::collections::BTreeMap;

use proto::authz::{LedgerEntry, LedgerMove};

use super::{canonical, Reservation};
use crate::{
    prune::index::{self, HIST_T, LEDGER_T},
    store::{Store, StoreError},
};

type Group = (
    Option<Reservation>,
    BTreeMap<Vec<LedgerMove>, (String, u64)>,
);

/// Times and tails (`<at>`, `<rest>` of `<prefix><at:020>/<rest>`) of an index's keys from
/// `since` on.
fn indexed(store: &Store, prefix: &str, since: u64) -> Result<Vec<(u64, String)>, StoreError> {
    Ok(store
        .state_raw_from(prefix, &index::from_time(prefix, since), usize::MAX)?
        .into_iter()
        .filter_map(|(k, _)| {
            let (at, tail) = index::split_time(&k[prefix.len()..])?;
            Some((at, tail.to_string()))
        })
        .collect())
}

/// Every past withdrawal this node knows of, except the request being evaluated (`exclude`:
/// its id and payload hash).
///
/// Grouped per request id and payload hash: one id signed for two payloads is two withdrawals.
/// Within a group this node's own reservation decides, since it is what this node decoded
/// itself; without one, every distinct set of movements that origins signed counts once, at the
/// latest time any origin gave it (a liar can add to a window, never take away from it). A
/// time ahead of this node's clock counts from the entry's arrival.
pub fn history(
    store: &Store,
    exclude: (&str, Option<&[u8; 32]>),
) -> Result<Vec<policy::HistoryEntry>, StoreError> {
    history_since(store, exclude, 0)
}

/// [`history`] restricted to what counts at or after `since`: reads only the time indexes
/// from `since` on (see [`crate::prune::index`]), so a decision costs the entries in its
/// longest window, however long the ledger is. A withdrawal counted before `since` by the
/// full history is left out; nothing counted at or after `since` is.
pub fn history_since(
    store: &Store,
    exclude: (&str, Option<&[u8; 32]>),
    since: u64,
) -> Result<Vec<policy::HistoryEntry>, StoreError> {
    let mut groups: BTreeMap<(String, Option<[u8; 32]>), Group> = BTreeMap::new();
    let excluded = |rid: &str, p: &Option<[u8; 32]>| {
        rid == exclude.0 && (p.is_none() || p.as_ref() == exclude.1)
    };
    let own_ids: Vec<String> = indexed(store, HIST_T, since)?
        .into_iter()
        .map(|(_, tail)| format!("hist/{tail}"))
        .collect();
    let ledger: Vec<(String, u64)> = indexed(store, LEDGER_T, since)?
        .into_iter()
        .map(|(at, tail)| (format!("ledger/{tail}"), at))
        .collect();
    let keys: Vec<String> = ledger.iter().map(|(k, _)| k.clone()).collect();
    let entries = store.state_get_many::<LedgerEntry>(&keys)?;
    // This node's own reservation decides a request even when it is older than `since`.
    let mut own_keys = own_ids;
    own_keys.extend(
        entries
            .iter()
            .flatten()
            .map(|e| format!("hist/{}", e.request_id)),
    );
    own_keys.sort();
    own_keys.dedup();
    let own = store.state_get_many::<Reservation>(&own_keys)?;
    for (k, r) in own_keys.iter().zip(own) {
        let Some(r) = r else { continue };
        let rid = k["hist/".len()..].to_string();
        if !excluded(&rid, &r.payload_hash) {
            let payload = r.payload_hash;
            groups.entry((rid, payload)).or_default().0 = Some(r);
        }
    }
    for ((_, at), e) in ledger.into_iter().zip(entries) {
        let Some(e) = e else { continue };
        if excluded(&e.request_id, &e.payload_hash) {
            continue;
        }
        let variants = &mut groups.entry((e.request_id, e.payload_hash)).or_default().1;
        let slot = variants
            .entry(canonical(e.moves))
            .or_insert_with(|| (e.key_id.clone(), at));
        slot.1 = slot.1.max(at);
    }
    let mut out = Vec::new();
    for (own, variants) in groups.into_values() {
        let counted: Vec<(String, u64, Vec<LedgerMove>)> = match own {
            Some(r) => vec![(r.key_id, r.at, r.moves)],
            None => variants
                .into_iter()
                .map(|(moves, (key_id, at))| (key_id, at, moves))
                .collect(),
        };
        for (key_id, at, moves) in counted {
            out.extend(moves.into_iter().map(|m| policy::HistoryEntry {
                key_id: key_id.clone(),
                account: m.account,
                chain: m.chain,
                asset: m.asset,
                destination: m.destination,
                amount: m.amount,
                signed_at: at,
            }));
        }
    }
    Ok(out)
}
