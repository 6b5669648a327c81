//! EIP-712 typed data (`[typed_data]`), end to end through `proto`'s decoder and the engine.
//! The documents are `eth_signTypedData_v4` JSON as a wallet or a venue sends them; the
//! reference hash of EIP-712's own example is checked in `proto::typed`.

use policy::{counted_intent, evaluate, tags, EvalContext, Outcome, Policy, Verdict};
use proto::intent::{Asset, Payment, WithdrawalIntent};

const TOKEN: &str = "0x3333333333333333333333333333333333333333";
const ROUTER: &str = "0x5555555555555555555555555555555555555555";
const EXCHANGE: &str = "0x1111111111111111111111111111111111111111";
const STRANGER: &str = "0x6666666666666666666666666666666666666666";
const MAX: &str = "115792089237316195423570985008687907853269984665640564039457584007913129639935";

const POLICY: &str = r#"
version = 1

[chains.eth]
id = "ethereum:1"
max_fee = 1_000_000
contract_calls = true

[assets.usdc]
chain = "eth"
asset = "erc20:0x3333333333333333333333333333333333333333"
per_tx = 1000
unlimited_spenders = ["0x5555555555555555555555555555555555555555"]

[keys.hot]
assets = ["usdc"]

[destinations]
require_allowlist = true

[[destinations.allow]]
chain = "eth"
address = "0x1111111111111111111111111111111111111111"
label = "exchange"

[[destinations.allow]]
chain = "eth"
address = "0x5555555555555555555555555555555555555555"
label = "router"

[typed_data.usdc-permit]
chain = "eth"
verifying_contract = "0x3333333333333333333333333333333333333333"
name = "USD Coin"
version = "2"
primary_type = "Permit"
permit = "usdc"
fields.spender = { allowlisted = true }
fields.deadline = { max = 2_000_000 }
"#;

fn permit(contract: &str, spender: &str, value: &str) -> String {
    format!(
        r#"{{
      "types": {{
        "EIP712Domain": [
          {{"name": "name", "type": "string"}},
          {{"name": "version", "type": "string"}},
          {{"name": "chainId", "type": "uint256"}},
          {{"name": "verifyingContract", "type": "address"}}
        ],
        "Permit": [
          {{"name": "owner", "type": "address"}},
          {{"name": "spender", "type": "address"}},
          {{"name": "value", "type": "uint256"}},
          {{"name": "nonce", "type": "uint256"}},
          {{"name": "deadline", "type": "uint256"}}
        ]
      }},
      "primaryType": "Permit",
      "domain": {{"name": "USD Coin", "version": "2", "chainId": 1, "verifyingContract": "{contract}"}},
      "message": {{
        "owner": "0x5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e5e",
        "spender": "{spender}",
        "value": "{value}",
        "nonce": 0,
        "deadline": 1500000
      }}
    }}"#
    )
}

fn intent(json: &str) -> WithdrawalIntent {
    let t = proto::typed::decode(json.as_bytes()).unwrap();
    proto::typed::intent("hot", &t, json.as_bytes())
}

fn ctx() -> EvalContext {
    EvalContext {
        now: 1_000_000,
        request_id: "req-1".into(),
        payload_hash: [7; 32],
        first_seen: 1_000_000,
        frozen: false,
        request_expires_at: None,
    }
}

fn policy() -> Policy {
    Policy::from_toml(POLICY, "t.toml").unwrap_or_else(|e| panic!("{}", e.render(POLICY)))
}

fn judge(json: &str) -> policy::Decision {
    evaluate(&intent(json), &policy(), &[], &[], &ctx())
}

/// The intent `json` is counted as a payment of `amount` of the test token to `to`.
fn assert_counted(json: &str, p: &Policy, to: &str, amount: u128) {
    let i = intent(json);
    let counted = counted_intent(&i, p);
    assert_eq!(
        counted.asset,
        Asset::Erc20 {
            contract: TOKEN.into()
        }
    );
    assert_eq!(
        counted.payments,
        vec![Payment {
            destination: to.into(),
            amount
        }]
    );
}

fn denies(d: &policy::Decision, tag: &str) {
    match &d.outcome {
        Outcome::Deny { rules } => assert!(rules.iter().any(|t| t == tag), "{tag}: {d:#?}"),
        other => panic!("expected a deny by {tag}, got {other:?}: {d:#?}"),
    }
}

#[test]
fn typed_data_field_a_permit_to_an_allowlisted_spender_is_an_allowance_counted_to_it() {
    let json = permit(TOKEN, EXCHANGE, "600");
    let d = judge(&json);
    assert!(d.is_allow(), "{d:#?}");
    let call = d.call.as_ref().unwrap();
    assert_eq!(call.contract, "usdc-permit");
    assert!(call
        .function
        .starts_with("Permit(address owner, address spender, uint256 value"));
    assert_eq!(call.allowance.as_ref().unwrap().amount, "600");
    assert_counted(&json, &policy(), EXCHANGE, 600);
    // Over the token's per_tx, like a transfer.
    denies(&judge(&permit(TOKEN, EXCHANGE, "1001")), tags::LIMIT_PER_TX);
}

#[test]
fn typed_data_domain_a_permit_for_a_foreign_verifying_contract_is_refused() {
    let d = judge(&permit(STRANGER, EXCHANGE, "5"));
    denies(&d, tags::TYPED_DATA_DOMAIN);
    assert!(d.call.is_none());
    // Another name or version is another domain.
    let renamed = permit(TOKEN, EXCHANGE, "5").replace("\"USD Coin\"", "\"USD Coin Bridged\"");
    denies(&judge(&renamed), tags::TYPED_DATA_DOMAIN);
    // A domain that names no verifying contract cannot be bound to any entry.
    let json = permit(TOKEN, EXCHANGE, "5")
        .replace(
            ", \"verifyingContract\": \"0x3333333333333333333333333333333333333333\"",
            "",
        )
        .replace(
            ",\n          {\"name\": \"verifyingContract\", \"type\": \"address\"}",
            "",
        );
    denies(&judge(&json), tags::TYPED_DATA_DOMAIN);
}

#[test]
fn typed_data_field_constraints_and_the_primary_type_are_enforced() {
    let d = judge(&permit(TOKEN, STRANGER, "5"));
    denies(&d, tags::TYPED_DATA_FIELD);
    let reason = &d.rule(tags::TYPED_DATA_FIELD).unwrap().reason;
    assert!(reason.contains("field `spender`"), "{reason}");
    let late = permit(TOKEN, EXCHANGE, "5").replace("1500000", "2000001");
    denies(&judge(&late), tags::TYPED_DATA_FIELD);
    let other = permit(TOKEN, EXCHANGE, "5").replace("\"Permit\"", "\"Order\"");
    let d = judge(&other);
    denies(&d, tags::TYPED_DATA_FIELD);
    assert!(d
        .rule(tags::TYPED_DATA_FIELD)
        .unwrap()
        .reason
        .contains("primary type is `Order`"));
}

#[test]
fn allowance_unlimited_a_permit_of_the_maximum_is_refused_unless_the_spender_is_named() {
    denies(
        &judge(&permit(TOKEN, EXCHANGE, MAX)),
        tags::ALLOWANCE_UNLIMITED,
    );
    let d = judge(&permit(TOKEN, ROUTER, MAX));
    assert!(d.is_allow(), "{d:#?}");
    assert_eq!(
        d.rule(tags::ALLOWANCE_UNLIMITED).unwrap().verdict,
        Verdict::Pass
    );
}

#[test]
fn typed_data_without_an_entry_is_refused_and_other_intents_skip_these_rules() {
    let text = POLICY.split("[typed_data.usdc-permit]").next().unwrap();
    let p = Policy::from_toml(text, "t.toml").unwrap();
    let d = evaluate(&intent(&permit(TOKEN, EXCHANGE, "5")), &p, &[], &[], &ctx());
    denies(&d, tags::TYPED_DATA_DOMAIN);
    assert_eq!(
        d.rule(tags::CONTRACT_UNKNOWN).unwrap().verdict,
        Verdict::NotApplicable
    );
}

#[test]
fn broken_typed_data_entries_are_parse_errors() {
    let cases: [(&str, &str, &str); 5] = [
        (
            "contract_calls = true\n",
            "",
            "which does not allow contract calls",
        ),
        ("permit = \"usdc\"\n", "", "give `permit = \"usdc\"`"),
        (
            "permit = \"usdc\"",
            "permit = \"eth\"",
            "`permit`: `eth` is not an erc20 asset",
        ),
        (
            "primary_type = \"Permit\"",
            "primary_type = \"Per mit\"",
            "is not a type name",
        ),
        (
            "fields.deadline = { max = 2_000_000 }",
            "fields.deadline = { }",
            "no constraint",
        ),
    ];
    for (from, to, want) in cases {
        assert!(POLICY.contains(from), "{from}");
        let text = POLICY.replacen(from, to, 1);
        let e = Policy::from_toml(&text, "t.toml").unwrap_err();
        assert!(e.message.contains(want), "{from} -> {to}: {e}");
    }
}

const PERMIT2: &str = "0x000000000022d473030f116ddee9f6b43ac78ba3";
const MAX_UINT160: &str = "1461501637330902918203684832716283019655932542975";

/// The test policy with Permit2's domain allowed for three primary types (one entry each).
fn with_permit2() -> Policy {
    let text = format!(
        r#"{POLICY}
[typed_data.permit2-single]
chain = "eth"
verifying_contract = "{PERMIT2}"
name = "Permit2"
primary_type = "PermitSingle"

[typed_data.permit2-batch]
chain = "eth"
verifying_contract = "{PERMIT2}"
name = "Permit2"
primary_type = "PermitBatch"

[typed_data.permit2-transfer]
chain = "eth"
verifying_contract = "{PERMIT2}"
name = "Permit2"
primary_type = "PermitTransferFrom"

[typed_data.permit2-other]
chain = "eth"
verifying_contract = "{PERMIT2}"
name = "Permit2"
primary_type = "Other"
"#
    );
    Policy::from_toml(&text, "t.toml").unwrap_or_else(|e| panic!("{}", e.render(&text)))
}

/// A Permit2 document: `primary` with `body` (JSON fields) and `types` (extra type entries).
fn permit2_doc(primary: &str, fields: &str, types: &str, message: &str) -> String {
    format!(
        r#"{{
      "types": {{
        "EIP712Domain": [
          {{"name": "name", "type": "string"}},
          {{"name": "chainId", "type": "uint256"}},
          {{"name": "verifyingContract", "type": "address"}}
        ],
        "{primary}": [{fields}]{types}
      }},
      "primaryType": "{primary}",
      "domain": {{"name": "Permit2", "chainId": 1, "verifyingContract": "{PERMIT2}"}},
      "message": {{{message}}}
    }}"#
    )
}

const DETAILS: &str = r#", "PermitDetails": [
          {"name": "token", "type": "address"}, {"name": "amount", "type": "uint160"},
          {"name": "expiration", "type": "uint48"}, {"name": "nonce", "type": "uint48"}]"#;

fn permit_single(token: &str, spender: &str, amount: &str) -> String {
    permit2_doc(
        "PermitSingle",
        r#"{"name": "details", "type": "PermitDetails"}, {"name": "spender", "type": "address"},
           {"name": "sigDeadline", "type": "uint256"}"#,
        DETAILS,
        &format!(
            r#""details": {{"token": "{token}", "amount": "{amount}", "expiration": 1900000000, "nonce": 0}},
               "spender": "{spender}", "sigDeadline": 1900000000"#
        ),
    )
}

fn judge_permit2(json: &str) -> policy::Decision {
    evaluate(&intent(json), &with_permit2(), &[], &[], &ctx())
}

#[test]
fn allowance_unlimited_a_permit2_permit_single_is_an_allowance_counted_to_its_spender() {
    let json = permit_single(TOKEN, EXCHANGE, "600");
    let d = judge_permit2(&json);
    assert!(d.is_allow(), "{d:#?}");
    let call = d.call.as_ref().unwrap();
    assert_eq!(call.contract, "permit2-single");
    let allowance = call.allowance.as_ref().unwrap();
    assert_eq!(
        (allowance.token.as_str(), allowance.spender.as_str()),
        (TOKEN, EXCHANGE)
    );
    assert_eq!(allowance.amount, "600");
    assert_counted(&json, &with_permit2(), EXCHANGE, 600);
    // Counted like a transfer: over per_tx, to a spender off the allowlist, of a token the
    // policy does not name.
    denies(
        &judge_permit2(&permit_single(TOKEN, EXCHANGE, "1001")),
        tags::LIMIT_PER_TX,
    );
    denies(
        &judge_permit2(&permit_single(TOKEN, STRANGER, "5")),
        tags::DEST_ALLOW,
    );
    denies(
        &judge_permit2(&permit_single(STRANGER, EXCHANGE, "5")),
        tags::SCOPE_ASSET,
    );
    // The uint160 maximum is unlimited: refused unless the spender is named.
    let d = judge_permit2(&permit_single(TOKEN, EXCHANGE, MAX_UINT160));
    denies(&d, tags::ALLOWANCE_UNLIMITED);
    assert!(d.call.unwrap().allowance.unwrap().unlimited);
    assert!(judge_permit2(&permit_single(TOKEN, ROUTER, MAX_UINT160)).is_allow());
}

#[test]
fn typed_data_field_a_permit2_batch_or_a_type_without_a_token_is_refused() {
    let batch = |n: usize| {
        let items: Vec<String> = (0..n)
            .map(|_| {
                format!(
                    r#"{{"token": "{TOKEN}", "amount": "5", "expiration": 1900000000, "nonce": 0}}"#
                )
            })
            .collect();
        permit2_doc(
            "PermitBatch",
            r#"{"name": "details", "type": "PermitDetails[]"}, {"name": "spender", "type": "address"},
               {"name": "sigDeadline", "type": "uint256"}"#,
            DETAILS,
            &format!(
                r#""details": [{}], "spender": "{EXCHANGE}", "sigDeadline": 1900000000"#,
                items.join(", ")
            ),
        )
    };
    // A batch of one token reads as that token's allowance; of two it is refused.
    let d = judge_permit2(&batch(1));
    assert!(d.is_allow(), "{d:#?}");
    let d = judge_permit2(&batch(2));
    denies(&d, tags::TYPED_DATA_FIELD);
    let reason = &d.rule(tags::TYPED_DATA_FIELD).unwrap().reason;
    assert!(reason.contains("covers 2 tokens"), "{reason}");
    denies(&judge_permit2(&batch(0)), tags::TYPED_DATA_FIELD);
    // A Permit2 type the officers named, but that names no token and amount: not signed.
    let other = permit2_doc(
        "Other",
        r#"{"name": "spender", "type": "address"}"#,
        "",
        &format!(r#""spender": "{EXCHANGE}""#),
    );
    let d = judge_permit2(&other);
    denies(&d, tags::TYPED_DATA_FIELD);
    let reason = &d.rule(tags::TYPED_DATA_FIELD).unwrap().reason;
    assert!(
        reason.contains("names no `details` or `permitted`"),
        "{reason}"
    );
    // A primary type no entry of the domain signs: every entry is named in the refusal.
    let unknown = permit_single(TOKEN, EXCHANGE, "5").replace("PermitSingle", "PermitOdd");
    let d = judge_permit2(&unknown);
    denies(&d, tags::TYPED_DATA_FIELD);
    let reason = &d.rule(tags::TYPED_DATA_FIELD).unwrap().reason;
    assert!(
        reason.contains("`[typed_data.permit2-transfer]` signs `PermitTransferFrom`"),
        "{reason}"
    );
}

#[test]
fn allowance_unlimited_a_permit2_transfer_counts_its_permitted_amount() {
    let doc = |amount: &str| {
        permit2_doc(
            "PermitTransferFrom",
            r#"{"name": "permitted", "type": "TokenPermissions"}, {"name": "spender", "type": "address"},
               {"name": "nonce", "type": "uint256"}, {"name": "deadline", "type": "uint256"}"#,
            r#", "TokenPermissions": [{"name": "token", "type": "address"}, {"name": "amount", "type": "uint256"}]"#,
            &format!(
                r#""permitted": {{"token": "{TOKEN}", "amount": "{amount}"}}, "spender": "{EXCHANGE}",
                   "nonce": 7, "deadline": 1900000000"#
            ),
        )
    };
    let d = judge_permit2(&doc("250"));
    assert!(d.is_allow(), "{d:#?}");
    assert_eq!(d.call.as_ref().unwrap().contract, "permit2-transfer");
    assert_counted(&doc("250"), &with_permit2(), EXCHANGE, 250);
    denies(&judge_permit2(&doc(MAX)), tags::ALLOWANCE_UNLIMITED);
}
