//! What a node counts against velocity: its own reservations and every peer's ledger entry,
//! merged so that no peer can take anything away from a window.

use std::collections::BTreeMap;

use proto::authz::{LedgerEntry, LedgerMove};

use super::{canonical, Reservation};
use crate::store::{Store, StoreError};

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
    type Group = (
        Option<Reservation>,
        BTreeMap<Vec<LedgerMove>, (String, u64)>,
    );
    let mut groups: BTreeMap<(String, Option<[u8; 32]>), Group> = BTreeMap::new();
    let excluded = |rid: &str, p: &Option<[u8; 32]>| {
        rid == exclude.0 && (p.is_none() || p.as_ref() == exclude.1)
    };
    for (k, r) in store.state_scan::<Reservation>("hist/")? {
        let rid = k["hist/".len()..].to_string();
        if !excluded(&rid, &r.payload_hash) {
            let payload = r.payload_hash;
            groups.entry((rid, payload)).or_default().0 = Some(r);
        }
    }
    let arrived: BTreeMap<String, u64> =
        store.state_scan::<u64>("ledger_at/")?.into_iter().collect();
    for (k, e) in store.state_scan::<LedgerEntry>("ledger/")? {
        if excluded(&e.request_id, &e.payload_hash) {
            continue;
        }
        let at_k = format!("ledger_at/{}", &k["ledger/".len()..]);
        let at = arrived.get(&at_k).copied().unwrap_or(e.signed_at);
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
