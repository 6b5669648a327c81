//! One transaction, one request: the same unsigned transaction under a second request id is
//! refused by the nodes that signed it (`request.tx_reused`), so two ids can never each pass
//! the limits alone for one payout (finding 1 of the review, the second half of its fix).

use custody_tests::sample;
use proto::api::RequestStatus;
use serde_json::json;

use crate::common::{rid, shared, KEY};
use crate::signing::{assert_valid_signature, submit};

#[test]
fn same_transaction_under_two_request_ids_is_refused() {
    let s = shared();
    let tx = sample::eth_transfer(4242, [0x24; 20], 4242);
    let first = json!({"request_id": rid("reuse-a"), "key_id": KEY, "chain": "ethereum",
                       "unsigned_tx": tx});
    let r = submit(&s, &first);
    assert_valid_signature(&s, &r);
    let (st, again) = s.cluster.api.post("/v1/sign-requests", &first).unwrap();
    assert!(st == 200 || st == 202, "{again}");
    let again = s
        .cluster
        .wait_request(
            first["request_id"].as_str().unwrap(),
            std::time::Duration::from_secs(30),
        )
        .unwrap();
    assert_eq!(
        again.signature, r.signature,
        "a repeated id returns the same result"
    );

    let second = json!({"request_id": rid("reuse-b"), "key_id": KEY, "chain": "ethereum",
                        "unsigned_tx": tx});
    let r2 = submit(&s, &second);
    assert_eq!(r2.status, RequestStatus::Denied, "{r2:?}");
    assert!(r2.signature.is_none() && r2.signed_tx.is_none(), "{r2:?}");
    assert_eq!(
        r2.error.as_ref().map(|e| e.code.as_str()),
        Some("request.tx_reused"),
        "{r2:?}"
    );
    let refusing = r2
        .verdicts
        .values()
        .filter(|v| v.code.as_deref() == Some("request.tx_reused"))
        .count();
    assert!(
        refusing >= 2,
        "every signer of the first id refuses: {r2:?}"
    );
}
