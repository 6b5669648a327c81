//! Bundles through the library API.

use ed25519_dalek::SigningKey;
use policy::{Bundle, BundleError, OfficerSignature};

const EXAMPLE: &str = include_str!("../../../examples/policy.toml");

fn officer(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

fn pinned() -> Vec<[u8; 32]> {
    (1..=3)
        .map(|n| officer(n).verifying_key().to_bytes())
        .collect()
}

fn signed_by(who: &[u8]) -> Bundle {
    let mut b = Bundle::new(EXAMPLE.to_string());
    for n in who {
        b.sign(&officer(*n)).unwrap();
    }
    b
}

#[test]
fn k_of_m_officers() {
    let b = signed_by(&[1, 3]);
    let policy = b.verify(&pinned(), 2).unwrap();
    assert_eq!(policy.version(), 3);
    assert!(matches!(
        b.verify(&pinned(), 3),
        Err(BundleError::NotEnoughSignatures {
            valid: 2,
            threshold: 3,
            ..
        })
    ));
}

#[test]
fn duplicate_and_unpinned_signatures_do_not_count() {
    let mut b = signed_by(&[1, 9]);
    let dup = b.signatures[0].clone();
    b.signatures.push(dup);
    assert!(matches!(
        b.verify(&pinned(), 2),
        Err(BundleError::NotEnoughSignatures { valid: 1, .. })
    ));
    assert_eq!(b.inspect(&pinned()).unwrap().ignored, 2);
}

#[test]
fn a_signature_is_bound_to_the_canonical_policy() {
    let b = signed_by(&[1, 2]);
    // Comments and whitespace change nothing.
    let mut reformatted = b.clone();
    reformatted.policy_toml = format!(
        "# reviewed by security\n\n{}\n\n",
        b.policy_toml.replace(" = ", "   =   ")
    );
    assert!(reformatted.verify(&pinned(), 2).is_ok());
    // A changed limit voids every signature.
    let mut edited = b.clone();
    edited.policy_toml = b
        .policy_toml
        .replace("per_tx = 200_000_000", "per_tx = 300_000_000");
    assert_ne!(edited.policy_toml, b.policy_toml);
    assert!(matches!(
        edited.verify(&pinned(), 1),
        Err(BundleError::NotEnoughSignatures { valid: 0, .. })
    ));
    // A forged signature does not count.
    let mut forged = signed_by(&[1]);
    forged.signatures.push(OfficerSignature {
        officer: pinned()[1],
        signature: [7; 64],
    });
    assert!(forged.verify(&pinned(), 2).is_err());
}

#[test]
fn thresholds_and_versions() {
    let b = signed_by(&[1, 2]);
    assert!(matches!(
        b.verify(&pinned(), 0),
        Err(BundleError::InvalidThreshold { .. })
    ));
    assert!(matches!(
        b.verify(&pinned(), 4),
        Err(BundleError::InvalidThreshold { .. })
    ));
    assert!(b.verify_upgrade(&pinned(), 2, Some(2)).is_ok());
    assert_eq!(
        b.verify_upgrade(&pinned(), 2, Some(3)).unwrap_err(),
        BundleError::VersionNotIncreasing {
            installed: 3,
            proposed: 3
        }
    );
}

#[test]
fn bundles_round_trip_through_json_and_reject_bad_policies() {
    let b = signed_by(&[1]);
    assert_eq!(Bundle::from_json(&b.to_json()).unwrap(), b);
    assert!(matches!(
        Bundle::from_json("{}"),
        Err(BundleError::Malformed(_))
    ));
    let mut bad = Bundle::new("version = 0\n".into());
    let err = bad.sign(&officer(1)).unwrap_err();
    assert_eq!(err.to_string(), "invalid policy in bundle: <bundle>/policy_toml:1:11: expected `version` to be a positive integer, found `0`");
}
