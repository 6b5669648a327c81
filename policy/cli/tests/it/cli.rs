//! The `policy` binary as a security officer uses it, pinned by snapshots.

use std::fs;
use std::path::PathBuf;

use crate::snapshot::{assert_snapshot, crate_dir, run, transcript};

const EXAMPLE: &str = "../examples/policy.toml";
const INTENT: &str = "../examples/policy-intent.json";
const HISTORY: &str = "../examples/policy-history.json";
const APPROVALS: &str = "../examples/policy-approvals.json";

#[test]
fn check_diagnostics_for_broken_policies() {
    let dir = crate_dir().join("tests/broken");
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 10, "{names:?}");
    for name in names {
        let file = format!("tests/broken/{name}");
        let t = transcript(&["check", &file]);
        assert!(t.contains("exit: 1\n"), "{t}");
        assert_snapshot(&format!("check-{}", name.trim_end_matches(".toml")), &t);
    }
}

#[test]
fn check_json_reports_errors_with_positions() {
    let (code, stdout, _) = run(&["check", "tests/broken/unknown_group.toml", "--json"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["errors"][0]["line"], 17);
    assert_eq!(v["errors"][0]["column"], 27);
}

#[test]
fn check_prints_warnings_and_the_policy_stays_valid() {
    let file = "tests/fixtures/warnings.toml";
    let t = transcript(&["check", file]);
    assert!(t.contains("exit: 0\n"), "{t}");
    assert_snapshot("check-warnings", &t);
    let (code, stdout, _) = run(&["check", file, "--json"]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(v["valid"], true);
    let warnings = v["warnings"].as_array().unwrap();
    let tags: Vec<&str> = warnings
        .iter()
        .map(|w| w["tag"].as_str().unwrap())
        .collect();
    assert_eq!(
        tags,
        [
            "warn.allowlist_not_required",
            "warn.tier_split",
            "warn.velocity_missing",
            "warn.key_frozen",
            "warn.cooldown_unused",
            "warn.allow_and_deny",
            "warn.velocity_missing",
            "warn.allowlist_ignored",
        ]
    );
    assert_eq!(warnings[0]["line"], serde_json::Value::Null, "file-wide");
    assert_eq!(
        (&warnings[1]["line"], &warnings[1]["column"]),
        (&19.into(), &7.into())
    );
    assert!(warnings[6]["message"]
        .as_str()
        .unwrap()
        .starts_with("`[accounts.client-a.limits.eth]` has no velocity window"));
}

#[test]
fn check_and_hash_the_example() {
    assert_snapshot("check-example", &transcript(&["check", EXAMPLE]));
    let (code, hash, _) = run(&["hash", EXAMPLE]);
    assert_eq!(code, 0);
    let (_, json, _) = run(&["hash", EXAMPLE, "--json"]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["hash"].as_str().unwrap(), hash.trim());
    assert_eq!(v["version"], 3);
}

#[test]
fn eval_table_defer_allow_and_deny() {
    let base = [
        "eval",
        EXAMPLE,
        "--intent",
        INTENT,
        "--history",
        HISTORY,
        "--request-id",
        "req-42",
    ];
    let defer = [
        &base[..],
        &["--first-seen", "1717243200", "--now", "1717243200"],
    ]
    .concat();
    assert_snapshot("eval-example-defer", &transcript(&defer));
    let allow = [
        &base[..],
        &[
            "--approvals",
            APPROVALS,
            "--first-seen",
            "1717243200",
            "--now",
            "1717246800",
        ],
    ]
    .concat();
    assert_snapshot("eval-example-allow", &transcript(&allow));
    let deny = [
        "eval",
        EXAMPLE,
        "--intent",
        "tests/fixtures/intent-deny.json",
        "--now",
        "1717243200",
        "--frozen",
    ];
    assert_snapshot("eval-example-deny", &transcript(&deny));
}

#[test]
fn eval_json_is_the_audit_form() {
    let args = [
        "eval",
        EXAMPLE,
        "--intent",
        INTENT,
        "--history",
        HISTORY,
        "--request-id",
        "req-42",
        "--now",
        "1717243200",
        "--json",
    ];
    let t = transcript(&args);
    assert_snapshot("eval-example-json", &t);
    let (code, a, _) = run(&args);
    let (_, b, _) = run(&args);
    assert_eq!(code, 3, "deferred");
    assert_eq!(a, b);
    let v: serde_json::Value = serde_json::from_str(&a).unwrap();
    assert_eq!(v["outcome"]["kind"], "defer");
    assert_eq!(v["outcome"]["missing_approvals"]["treasury"], 2);
}

#[test]
fn usage_and_io_errors_exit_2() {
    let (code, _, err) = run(&["check", "tests/broken/does-not-exist.toml"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("error: cannot read `tests/broken/does-not-exist.toml`"),
        "{err}"
    );
    let (code, _, _) = run(&["frobnicate"]);
    assert_eq!(code, 2);
    let (code, _, err) = run(&[
        "eval",
        EXAMPLE,
        "--intent",
        "tests/fixtures/intent-bad.json",
        "--now",
        "1",
    ]);
    assert_eq!(code, 2);
    assert_snapshot("eval-bad-intent", &err);
}

fn tmp(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("policy-cli-{name}-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn keygen_sign_verify_as_officers() {
    let dir = tmp("officers");
    let p = |n: &str| dir.join(n).display().to_string();
    let mut officers = Vec::new();
    for n in ["o1.key", "o2.key", "o3.key"] {
        let (code, stdout, _) = run(&["keygen", "--out", &p(n)]);
        assert_eq!(code, 0);
        officers.push(stdout.trim().to_string());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                fs::metadata(p(n)).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
    }
    let (code, _, err) = run(&["keygen", "--out", &p("o1.key")]);
    assert_eq!(code, 2, "never overwrites a key: {err}");
    assert_eq!(
        run(&["pubkey", "--key", &p("o2.key")]).1.trim(),
        officers[1]
    );

    fs::copy(crate_dir().join(EXAMPLE), p("policy.toml")).unwrap();
    let bundle = p("policy.bundle.json");
    assert_eq!(
        run(&["sign", &p("policy.toml"), "--key", &p("o1.key")]).0,
        0
    );
    let pinned = officers.join(",");
    let verify = |threshold: &str| {
        run(&[
            "verify",
            &bundle,
            "--officers",
            &pinned,
            "--threshold",
            threshold,
        ])
    };
    let (code, _, err) = verify("2");
    assert_eq!(code, 1);
    assert!(
        err.contains("only 1 of the required 2 pinned officers signed"),
        "{err}"
    );
    // The second officer signs the bundle itself.
    assert_eq!(run(&["sign", &bundle, "--key", &p("o2.key")]).0, 0);
    let (code, out, _) = verify("2");
    assert_eq!(code, 0, "{out}");
    assert!(
        out.starts_with(
            "ok: 2 of 3 pinned officers signed (`acme-hot-wallets` version 3, threshold 2)"
        ),
        "{out}"
    );
    assert_eq!(
        verify("4").0,
        1,
        "a threshold above the pinned officers is refused"
    );
    let (code, _, err) = run(&[
        "verify",
        &bundle,
        "--officers",
        &pinned,
        "--threshold",
        "2",
        "--installed-version",
        "3",
    ]);
    assert_eq!(code, 1);
    assert!(err.contains("does not increase"), "{err}");
    // Officers can also be pinned through a file.
    fs::write(
        p("officers.txt"),
        format!("# pinned\n{}\n", officers.join("\n")),
    )
    .unwrap();
    let (code, json, _) = run(&[
        "verify",
        &bundle,
        "--officers",
        &p("officers.txt"),
        "--threshold",
        "2",
        "--json",
    ]);
    assert_eq!(code, 0);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["signers"].as_array().unwrap().len(), 2);
}

#[test]
fn sign_refuses_a_readable_key_file() {
    let dir = tmp("perm");
    let key = dir.join("k.key");
    fs::write(&key, format!("{}\n", "01".repeat(32))).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let (code, _, err) = run(&[
            "sign",
            EXAMPLE,
            "--key",
            &key.display().to_string(),
            "--out",
            &dir.join("b.json").display().to_string(),
        ]);
        assert_eq!(code, 2);
        assert!(err.contains("chmod 600"), "{err}");
    }
}

/// `policy approve` of a request that names an `account`: the approver derives the account's
/// keys from the master key and chain code, so the input must be the account's and the intent
/// it signs names the account (as every node's does).
#[test]
fn approve_an_account_request_with_keys_derived_here() {
    use bitcoin::{
        absolute::LockTime, hashes::Hash, transaction::Version, Amount, OutPoint, ScriptBuf,
        Sequence, Transaction, TxIn, TxOut, Txid, Witness,
    };
    const G: &str = "0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798";
    let cc = hex::encode([7u8; 32]);
    let master = proto::hd::Xpub::new(&hex::decode(G).unwrap(), &[7u8; 32]).unwrap();
    let acct = proto::hd::AccountKeys::derive(&master, 2).unwrap();
    let keys = acct.address_key_bytes().unwrap();
    let script = |i: usize| ScriptBuf::from_bytes(proto::btc::p2wpkh_script(&keys[i]).unwrap());
    let out = |sat: u64, script_pubkey: ScriptBuf| TxOut {
        value: Amount::from_sat(sat),
        script_pubkey,
    };
    // The deposit spent, carried as `non_witness_utxo` (nodes require it: CVE-2020-14199).
    let funding = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::new(Txid::from_byte_array([1; 32]), 0),
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![out(10_000, script(0))],
    };
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::new(funding.compute_txid(), 0),
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
            witness: Witness::new(),
        }],
        output: vec![
            out(
                5_000,
                ScriptBuf::new_p2wpkh(&bitcoin::WPubkeyHash::from_byte_array([0x22; 20])),
            ),
            out(4_000, script(1)),
        ],
    };
    let mut psbt = bitcoin::Psbt::from_unsigned_tx(tx).unwrap();
    psbt.inputs[0].witness_utxo = Some(out(10_000, script(0)));
    psbt.inputs[0].non_witness_utxo = Some(funding);
    let dir = std::env::temp_dir().join(format!("policy-acct-approve-{}", std::process::id()));
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).unwrap();
    let body = dir.join("request.json");
    fs::write(
        &body,
        serde_json::json!({"request_id": "acct-approve-1", "key_id": "hot", "chain": "bitcoin",
            "network": "regtest", "account": "client-a", "psbt": psbt.to_string()})
        .to_string(),
    )
    .unwrap();
    let key = dir.join("approver.key");
    assert_eq!(run(&["keygen", "--out", key.to_str().unwrap()]).0, 0);
    let approve = |extra: &[&str]| {
        let mut args = vec![
            "approve",
            EXAMPLE,
            "--sign-request",
            body.to_str().unwrap(),
            "--public-key",
            G,
            "--key",
            key.to_str().unwrap(),
            "--expires-at",
            "4102444800",
        ];
        args.extend_from_slice(extra);
        run(&args)
    };
    let (code, _, err) = approve(&[]);
    assert_ne!(code, 0);
    assert!(err.contains("--account-index"), "{err}");
    let (code, _, err) = approve(&["--chain-code", &cc, "--account-index", "3"]);
    assert_ne!(code, 0, "account 3 does not own the input");
    assert!(err.contains("not one of account `client-a`"), "{err}");
    let (code, stdout, err) = approve(&["--chain-code", &cc, "--account-index", "2"]);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("\"account\":\"client-a\""), "{err}");
    assert!(
        err.contains("\"change\":[{"),
        "the change to m/2/1 is the account's: {err}"
    );
    let approval: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(approval["expires_at"], 4102444800u64);
    let _ = fs::remove_dir_all(dir);
}
