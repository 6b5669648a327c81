//! The example policy, the docs and the canonical hash.

use policy::{tags, Policy};

const EXAMPLE: &str = include_str!("../../../examples/policy.toml");
const DOCS: &str = include_str!("../../../docs/policy.md");

#[test]
fn the_example_policy_is_valid_and_warns_only_about_split_withdrawals() {
    let p = Policy::from_toml(EXAMPLE, "examples/policy.toml").unwrap();
    assert_eq!(p.name(), Some("acme-hot-wallets"));
    // ETH's 1h window and BTC's 24h window reach their lowest tiers: documented under
    // "Limits and what the policy does not guarantee".
    let got: Vec<(&str, Option<usize>)> = p.warnings().iter().map(|w| (w.tag, w.line)).collect();
    assert_eq!(
        got,
        [
            (tags::WARN_TIER_SPLIT, Some(42)),
            (tags::WARN_TIER_SPLIT, Some(81))
        ],
        "{:?}",
        p.warnings()
    );
}

#[test]
fn every_rule_tag_is_documented() {
    for tag in tags::ALL {
        assert!(
            DOCS.contains(&format!("### `{tag}`")),
            "docs/policy.md has no section for `{tag}`"
        );
    }
}

#[test]
fn every_warning_tag_is_documented() {
    for tag in tags::WARNINGS {
        assert!(
            DOCS.contains(&format!("| `{tag}` |")),
            "docs/policy.md lists no warning `{tag}`"
        );
    }
}

#[test]
fn every_example_line_is_documented() {
    // Each key the example sets appears in the line-by-line walkthrough.
    for line in EXAMPLE.lines() {
        let line = line.trim();
        if let Some((key, _)) = line.split_once(" = ") {
            assert!(
                DOCS.contains(&format!("`{key}")),
                "docs/policy.md does not explain `{key}`"
            );
        }
        if line.starts_with('[') {
            assert!(
                DOCS.contains(&format!("`{line}`")),
                "docs/policy.md does not explain `{line}`"
            );
        }
    }
}

fn hash(text: &str) -> String {
    Policy::from_toml(text, "p.toml")
        .unwrap()
        .hash()
        .to_string()
}

#[test]
fn the_hash_ignores_formatting_but_not_content() {
    let base = hash(EXAMPLE);
    let stripped: String = EXAMPLE
        .lines()
        .map(|l| {
            if l.trim_start().starts_with('#') {
                ""
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert_eq!(hash(&stripped), base, "comments");
    assert_eq!(hash(&EXAMPLE.replace(" = ", "=")), base, "whitespace");
    assert_eq!(
        hash(&EXAMPLE.replace(
            "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed",
            "0x5aaeb6053f3e94c9b9a09f33669435e7ef1beaed"
        )),
        base,
        "address case"
    );
    assert_eq!(
        hash(&EXAMPLE.replace("max_fee = 500_000", "max_fee = \"500000\"")),
        base,
        "amount spelling"
    );
    assert_eq!(
        hash(&EXAMPLE.replace("max_age = \"72h\"", "max_age = \"3d\"")),
        base,
        "duration spelling"
    );
    // Reordering whole tables changes nothing either.
    let (head, tail) = EXAMPLE.split_at(EXAMPLE.find("[keys.eth-hot-1]").unwrap());
    let (keys, rest) = tail.split_at(tail.find("[destinations]").unwrap());
    let reordered = format!("{head}{rest}\n{keys}");
    assert_eq!(hash(&reordered), base, "table order");
    assert_ne!(hash(&EXAMPLE.replace("version = 3", "version = 4")), base);
    assert_ne!(
        hash(&EXAMPLE.replace("delay = \"6h\"", "delay = \"7h\"")),
        base
    );
}
