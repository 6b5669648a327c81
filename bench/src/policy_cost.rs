//! What a node spends judging one Ethereum request before any MPC: decoding the transaction,
//! reading its call with the policy's ABI (`[contracts]`), and evaluating every rule against a
//! history of 1,000 signed withdrawals. The baseline is an ERC-20 `transfer` judged the same way
//! in the same run; the rows give each call's cost as a ratio to it.

use std::time::{Duration, Instant};

use policy::{evaluate_counted, EvalContext, HistoryEntry, Policy};
use proto::eth::UnsignedEip1559;
use proto::intent::{Asset, ChainRef};

use crate::{pct, row, Row};

const POLICY: &str = include_str!("policy_cost.toml");

fn judge(policy: &Policy, tx: &[u8], history: &[HistoryEntry], ctx: &EvalContext) -> bool {
    let Ok(decoded) = UnsignedEip1559::decode(tx) else {
        return false;
    };
    let Ok(intent) = decoded.intent("hot", &[0x5e; 20]) else {
        return false;
    };
    // As a node does: one reading of the call gives the decision and the counted moves.
    let (d, _counted) = evaluate_counted(&intent, policy, history, &[], ctx);
    d.is_allow()
}

fn hex_tx(s: &str) -> anyhow::Result<Vec<u8>> {
    Ok(hex::decode(s.trim_start_matches("0x"))?)
}

/// Rows: the transfer baseline, a `settle` call, an ERC-20 `approve` (allowance).
pub fn rows(rows: &mut Vec<Row>) -> anyhow::Result<()> {
    use custody_tests::sample;
    let policy =
        Policy::from_toml(POLICY, "policy_cost.toml").map_err(|e| anyhow::anyhow!("{e}"))?;
    let token = [0x33; 20];
    let history: Vec<HistoryEntry> = (0..1000u64)
        .map(|i| HistoryEntry {
            key_id: "hot".into(),
            account: None,
            chain: ChainRef::Ethereum {
                chain_id: 11_155_111,
            },
            asset: Asset::Erc20 {
                contract: format!("0x{}", "33".repeat(20)),
            },
            destination: format!("0x{}", "42".repeat(20)),
            amount: 1,
            signed_at: 1_000_000 - i,
        })
        .collect();
    let ctx = EvalContext {
        now: 1_000_000,
        request_id: "bench".into(),
        payload_hash: [0; 32],
        first_seen: 1_000_000,
        frozen: false,
        request_expires_at: None,
    };
    let mut approve = vec![0x09, 0x5e, 0xa7, 0xb3];
    approve.extend([0u8; 12]);
    approve.extend([0x42u8; 20]);
    approve.extend([0u8; 31]);
    approve.push(100);
    let cases = [
        (
            "ERC-20 transfer (baseline)",
            hex_tx(&sample::erc20_transfer(1, token, [0x42; 20], 100))?,
        ),
        (
            "settle(bytes32,address,uint256) call",
            hex_tx(&sample::eth_tx(
                1,
                sample::VAULT,
                0,
                sample::settle_calldata([0x0b; 32], [0x42; 20], 100),
            ))?,
        ),
        (
            "ERC-20 approve (allowance)",
            hex_tx(&sample::eth_tx(1, token, 0, approve))?,
        ),
    ];
    let mut base = None;
    for (name, tx) in cases {
        anyhow::ensure!(judge(&policy, &tx, &history, &ctx), "{name}: not allowed");
        let mut took: Vec<Duration> = (0..2000)
            .map(|_| {
                let t = Instant::now();
                let _ = judge(&policy, &tx, &history, &ctx);
                t.elapsed()
            })
            .collect();
        took.sort();
        let p50 = pct(&took, 0.5);
        let b = *base.get_or_insert(p50);
        rows.push(row(
            &format!("node decodes and judges one request: {name}, 1,000 signed in the window"),
            Some(p50),
            Some(pct(&took, 0.99)),
            format!(
                "{:.2}× the transfer",
                p50.as_secs_f64() / b.as_secs_f64().max(1e-12)
            ),
        ));
    }
    Ok(())
}
