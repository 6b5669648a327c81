//! Presignatures: what nodes report when they make one, and how the coordinator combines the
//! partial signatures issued from one into an ECDSA signature.
//!
//! A presignature is made by an interactive CGGMP24 session among exactly t nodes (a *subset*)
//! and can later sign one message without interaction: each node issues a partial signature
//! for a digest it computed itself from the decoded transaction. The coordinator checks each
//! partial against the public commitments the nodes reported when the presignature was made
//! (so a bad partial names its node), sums them, and verifies the result with libsecp256k1.

use generic_ec::{coords::AlwaysHasAffineX, curves::Secp256k1, NonZero, Point, Scalar};
use serde::{Deserialize, Serialize};

use crate::wire::serde_bytes_vec;

/// Id of a presignature: the id of the session that made it (ids never repeat).
pub type PresigId = [u8; 32];

/// Public data of a presignature; every party of the presign session reports the same.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresigPublic {
    /// Compressed Γ (the nonce commitment; r is its x coordinate).
    #[serde(with = "serde_bytes_vec")]
    pub gamma: Vec<u8>,
    /// Per party, in session order: compressed Δ̃ⱼ and S̃ⱼ.
    pub commitments: Vec<PresigCommitment>,
}

/// One party's commitments, which its partial signature must satisfy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PresigCommitment {
    /// Compressed Δ̃ⱼ.
    #[serde(with = "serde_bytes_vec")]
    pub delta: Vec<u8>,
    /// Compressed S̃ⱼ.
    #[serde(with = "serde_bytes_vec")]
    pub s: Vec<u8>,
}

/// Why partial signatures did not combine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CombineError {
    /// The stored public data does not parse.
    #[error("the presignature's public data is malformed")]
    Malformed,
    /// Not one partial per party.
    #[error("expected {expected} partial signatures, got {got}")]
    Count {
        /// Parties of the presignature.
        expected: usize,
        /// Partials given.
        got: usize,
    },
    /// These parties' partials do not satisfy their commitments.
    #[error("partial signatures of parties {0:?} do not match their commitments")]
    Invalid(Vec<usize>),
}

fn point(bytes: &[u8]) -> Result<Point<Secp256k1>, CombineError> {
    Point::from_bytes(bytes).map_err(|_| CombineError::Malformed)
}

/// Combines one partial signature per party (session order) into a low-s `(r, s)` for
/// `digest`. Mirrors cggmp24's `PartialSignature::combine`, naming the parties whose partial
/// fails its check instead of returning nothing. The caller still verifies the result with
/// libsecp256k1.
pub fn combine(
    public: &PresigPublic,
    partials: &[[u8; 32]],
    digest: &[u8; 32],
) -> Result<([u8; 32], [u8; 32]), CombineError> {
    if partials.len() != public.commitments.len() || partials.is_empty() {
        return Err(CombineError::Count {
            expected: public.commitments.len(),
            got: partials.len(),
        });
    }
    let gamma = NonZero::from_point(point(&public.gamma)?).ok_or(CombineError::Malformed)?;
    let r = gamma.x().to_scalar();
    let m = Scalar::<Secp256k1>::from_be_bytes_mod_order(digest);
    let mut sigmas = Vec::with_capacity(partials.len());
    let mut bad = Vec::new();
    for (j, (p, c)) in partials.iter().zip(&public.commitments).enumerate() {
        let sigma = Scalar::<Secp256k1>::from_be_bytes(p).ok();
        let ok = match sigma {
            Some(sigma) => sigma * gamma == m * point(&c.delta)? + r * point(&c.s)?,
            None => false,
        };
        match (ok, sigma) {
            (true, Some(sigma)) => sigmas.push(sigma),
            _ => bad.push(j),
        }
    }
    if !bad.is_empty() {
        return Err(CombineError::Invalid(bad));
    }
    let s: Scalar<Secp256k1> = sigmas.iter().sum();
    let neg = -s;
    let s = if neg < s { neg } else { s };
    let mut r_out = [0u8; 32];
    let mut s_out = [0u8; 32];
    r_out.copy_from_slice(&r.to_be_bytes());
    s_out.copy_from_slice(&s.to_be_bytes());
    Ok((r_out, s_out))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    type S = Scalar<Secp256k1>;

    /// A 2-party presignature built from its definition: Σk̃ᵢ = k, Σχ̃ᵢ = k·x, Γ = k⁻¹·G,
    /// Δ̃ᵢ = k̃ᵢ·Γ and S̃ᵢ = χ̃ᵢ·Γ; then σᵢ = k̃ᵢ·m + r·χ̃ᵢ sums to s = k(m + r·x).
    fn fixture() -> (PresigPublic, Vec<S>, Vec<S>, [u8; 33]) {
        let x = S::from_be_bytes_mod_order([7u8; 32]);
        let k = S::from_be_bytes_mod_order([9u8; 32]);
        let gamma = Point::generator() * k.invert().unwrap();
        let k1 = S::from_be_bytes_mod_order([3u8; 32]);
        let c1 = S::from_be_bytes_mod_order([5u8; 32]);
        let k_parts = vec![k1, k - k1];
        let chi_parts = vec![c1, k * x - c1];
        let commitments = k_parts
            .iter()
            .zip(&chi_parts)
            .map(|(ki, ci)| PresigCommitment {
                delta: (gamma * ki).to_bytes(true).to_vec(),
                s: (gamma * ci).to_bytes(true).to_vec(),
            })
            .collect();
        let public = PresigPublic {
            gamma: gamma.to_bytes(true).to_vec(),
            commitments,
        };
        let pk: [u8; 33] = (Point::generator() * x)
            .to_bytes(true)
            .as_bytes()
            .try_into()
            .unwrap();
        (public, k_parts, chi_parts, pk)
    }

    fn partials(public: &PresigPublic, k: &[S], chi: &[S], digest: &[u8; 32]) -> Vec<[u8; 32]> {
        let gamma = NonZero::from_point(point(&public.gamma).unwrap()).unwrap();
        let r = gamma.x().to_scalar();
        let m = S::from_be_bytes_mod_order(digest);
        k.iter()
            .zip(chi)
            .map(|(ki, ci)| {
                (ki * m + r * ci)
                    .to_be_bytes()
                    .as_bytes()
                    .try_into()
                    .unwrap()
            })
            .collect()
    }

    #[test]
    fn honest_partials_combine_into_a_signature_libsecp256k1_accepts() {
        let (public, k, chi, pk) = fixture();
        let digest = [0x42u8; 32];
        let p = partials(&public, &k, &chi, &digest);
        let (r, s) = combine(&public, &p, &digest).unwrap();
        let v = crate::sig::verify(&pk, &digest, &r, &s);
        assert!(v.is_ok(), "{v:?}");
    }

    #[test]
    fn a_tampered_partial_names_its_party_and_a_wrong_count_is_refused() {
        let (public, k, chi, _) = fixture();
        let digest = [0x42u8; 32];
        let mut p = partials(&public, &k, &chi, &digest);
        p[1][31] ^= 1;
        assert_eq!(
            combine(&public, &p, &digest),
            Err(CombineError::Invalid(vec![1]))
        );
        assert!(matches!(
            combine(&public, &p[..1], &digest),
            Err(CombineError::Count {
                expected: 2,
                got: 1
            })
        ));
        // Partials issued for another digest fail every check.
        let other = partials(&public, &k, &chi, &[0x43u8; 32]);
        assert_eq!(
            combine(&public, &other, &digest),
            Err(CombineError::Invalid(vec![0, 1]))
        );
        let mut broken = public.clone();
        broken.gamma = vec![1, 2, 3];
        assert_eq!(combine(&broken, &p, &digest), Err(CombineError::Malformed));
    }
}
