//! Verifiable secret redistribution (Desmedt–Jajodia with Feldman commitments, as in
//! Wong–Wang–Wing): the arithmetic of `docs/lifecycle.md` steps 2–7 and 9, generic over the
//! curve so that Schnorr and Ed25519 keys reuse it. No I/O, no networking: the ceremony around
//! it (orders, envelopes, agreement on commitments, epochs) is built on top.
//!
//! Share points are 1-based, as cggmp24's threshold DKG sets them (`I = 1..=n`).

use cggmp24::generic_ec::{Curve, NonZero, Point, Scalar, SecretScalar};
use cggmp24::key_share::{DirtyIncompleteKeyShare, DirtyKeyInfo, VssSetup};
use generic_ec_zkp::polynomial::{lagrange_coefficient_at_zero, Polynomial};
use rand::{CryptoRng, RngCore};

/// A redistribution step that failed, naming the party at fault where there is one.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VssError {
    /// The dealer quorum or the new group is malformed (duplicate, zero or missing points).
    #[error("bad party set: {0}")]
    Set(&'static str),
    /// `t'` is 0 or above `n'`.
    #[error("threshold {t} is not between 1 and the {n} new parties")]
    Threshold {
        /// t'.
        t: u16,
        /// n'.
        n: u16,
    },
    /// A dealer's commitments do not have `t'` terms.
    #[error("dealer {dealer} committed to {got} coefficients, not {want}")]
    Degree {
        /// The dealer's share point.
        dealer: u16,
        /// Number of commitments received.
        got: usize,
        /// t'.
        want: usize,
    },
    /// A dealer's constant term is not its Lagrange-weighted public share: it tried to change
    /// the secret.
    #[error("dealer {dealer}'s constant term is not its weighted public share")]
    Constant {
        /// The dealer's share point.
        dealer: u16,
    },
    /// A sub-share does not match its dealer's commitments.
    #[error("dealer {dealer}'s sub-share for party {receiver} does not match its commitments")]
    SubShare {
        /// The dealer's share point.
        dealer: u16,
        /// The receiver's new share point.
        receiver: u16,
    },
    /// The constant terms do not add up to the key's public key.
    #[error("the dealers' constant terms do not add up to the public key")]
    PublicKey,
    /// A new share or public share came out zero (negligible unless a party cheats).
    #[error("a new share is zero")]
    Zero,
    /// The new key share failed the `key-share` crate's validation.
    #[error("the new key share is invalid: {0}")]
    Invalid(String),
}

fn point<E: Curve>(i: u16) -> Result<NonZero<Scalar<E>>, VssError> {
    NonZero::from_scalar(Scalar::from(i)).ok_or(VssError::Set("share point 0"))
}

fn distinct(points: &[u16]) -> Result<(), VssError> {
    let mut v = points.to_vec();
    v.sort_unstable();
    v.dedup();
    if v.len() != points.len() || v.first() == Some(&0) || v.is_empty() {
        return Err(VssError::Set(
            "share points must be distinct, non-zero and present",
        ));
    }
    Ok(())
}

/// `λ_i` at zero over the dealer quorum `dealers` (share points), for dealer `me`.
pub fn lagrange<E: Curve>(dealers: &[u16], me: u16) -> Result<Scalar<E>, VssError> {
    distinct(dealers)?;
    let j = dealers
        .iter()
        .position(|d| *d == me)
        .ok_or(VssError::Set("the dealer is not in the quorum"))?;
    let xs = dealers
        .iter()
        .map(|d| point::<E>(*d))
        .collect::<Result<Vec<_>, _>>()?;
    lagrange_coefficient_at_zero(j, &xs)
        .map(|l| *l.as_ref())
        .ok_or(VssError::Set("no Lagrange coefficient"))
}

/// One dealer's output: public commitments `C_k = a_k·G` (`a_0 = λ_i·x_i`) and one sub-share
/// per new party, in the order of `new_points`.
pub struct Dealing<E: Curve> {
    /// Feldman commitments, `t'` of them.
    pub commitments: Vec<Point<E>>,
    /// `g_i(j)` for each new party `j`. Secret: each goes to its receiver only.
    pub sub_shares: Vec<SecretScalar<E>>,
}

/// Deals dealer `me`'s Lagrange-weighted share `x` to `new_points` with threshold `new_t`.
pub fn deal<E: Curve>(
    rng: &mut (impl RngCore + CryptoRng),
    dealers: &[u16],
    me: u16,
    x: &SecretScalar<E>,
    new_t: u16,
    new_points: &[u16],
) -> Result<Dealing<E>, VssError> {
    check_new_group(new_t, new_points)?;
    let lambda = lagrange::<E>(dealers, me)?;
    let mut weighted = lambda * x;
    let f = Polynomial::sample_with_const_term(
        rng,
        usize::from(new_t) - 1,
        SecretScalar::new(&mut weighted),
    );
    let commitments = (&f * &Point::generator()).into_coefs();
    let sub_shares = new_points
        .iter()
        .map(|j| {
            let mut v: Scalar<E> = f.value(&Scalar::<E>::from(*j));
            SecretScalar::new(&mut v)
        })
        .collect();
    Ok(Dealing {
        commitments,
        sub_shares,
    })
}

fn check_new_group(new_t: u16, new_points: &[u16]) -> Result<(), VssError> {
    distinct(new_points)?;
    let n = u16::try_from(new_points.len()).map_err(|_| VssError::Set("too many parties"))?;
    if new_t == 0 || new_t > n {
        return Err(VssError::Threshold { t: new_t, n });
    }
    Ok(())
}

/// Checks a dealer's commitments publicly: `t'` of them, and a constant term equal to
/// `λ_i·X_i` (so the dealer cannot change the secret).
pub fn check_commitments<E: Curve>(
    dealers: &[u16],
    dealer: u16,
    public_share: &Point<E>,
    commitments: &[Point<E>],
    new_t: u16,
) -> Result<(), VssError> {
    if commitments.len() != usize::from(new_t) {
        return Err(VssError::Degree {
            dealer,
            got: commitments.len(),
            want: usize::from(new_t),
        });
    }
    let lambda = lagrange::<E>(dealers, dealer)?;
    if commitments.first() != Some(&(public_share * lambda)) {
        return Err(VssError::Constant { dealer });
    }
    Ok(())
}

/// Checks that public shares `X_1..X_n` (points `1..=n`) lie on one polynomial of degree
/// `t−1` through `public_key` at zero: every `t` consecutive shares (cyclically) interpolate to
/// it. Public data only. A party that reports its own `X_i` falsely (to commit to a constant
/// term that changes the key) breaks this when `n > t`; when `n = t` any vector is consistent
/// with some key, and only the holders of the old shares can tell.
pub fn check_public_shares<E: Curve>(
    public_key: &Point<E>,
    public_shares: &[Point<E>],
    t: u16,
) -> Result<(), VssError> {
    let n = public_shares.len();
    let t = usize::from(t);
    if t == 0 || t > n {
        return Err(VssError::Threshold {
            t: t as u16,
            n: n as u16,
        });
    }
    for start in 0..n {
        let idx: Vec<usize> = (0..t).map(|k| (start + k) % n).collect();
        let points: Vec<u16> = idx.iter().map(|i| *i as u16 + 1).collect();
        let mut sum = Point::<E>::zero();
        for (i, p) in idx.iter().zip(&points) {
            sum += public_shares[*i] * lagrange::<E>(&points, *p)?;
        }
        if &sum != public_key {
            return Err(VssError::PublicKey);
        }
        if t == n {
            break;
        }
    }
    Ok(())
}

/// `Σ_k j^k·C_k`: the public value of a dealer's polynomial at `j`.
fn eval<E: Curve>(commitments: &[Point<E>], j: u16) -> Point<E> {
    Polynomial::from_coefs(commitments.to_vec()).value(&Scalar::<E>::from(j))
}

/// Checks the sub-share that `receiver` got from `dealer` against the dealer's commitments.
pub fn check_sub_share<E: Curve>(
    dealer: u16,
    receiver: u16,
    commitments: &[Point<E>],
    sub_share: &SecretScalar<E>,
) -> Result<(), VssError> {
    if Point::generator() * sub_share != eval(commitments, receiver) {
        return Err(VssError::SubShare { dealer, receiver });
    }
    Ok(())
}

/// The new public shares `X'_j = Σ_i C_i(j)`, in the order of `new_points`, after checking that
/// the dealers' constant terms add up to `public_key`. `all` holds every dealer's commitments
/// (already passed through [`check_commitments`]).
pub fn new_public_shares<E: Curve>(
    all: &[Vec<Point<E>>],
    public_key: &Point<E>,
    new_points: &[u16],
) -> Result<Vec<NonZero<Point<E>>>, VssError> {
    let sum: Point<E> = all.iter().filter_map(|c| c.first()).sum();
    if &sum != public_key {
        return Err(VssError::PublicKey);
    }
    new_points
        .iter()
        .map(|j| {
            let x: Point<E> = all.iter().map(|c| eval(c, *j)).sum();
            NonZero::from_point(x).ok_or(VssError::Zero)
        })
        .collect()
}

/// A receiver's new share: the sum of its (checked) sub-shares.
pub fn new_share<E: Curve>(
    sub_shares: &[SecretScalar<E>],
) -> Result<NonZero<SecretScalar<E>>, VssError> {
    let mut sum: Scalar<E> = sub_shares.iter().sum();
    NonZero::<SecretScalar<E>>::try_from(SecretScalar::new(&mut sum)).map_err(|_| VssError::Zero)
}

/// Builds the receiver's new core key share for the same key (public key and chain code of
/// `old`) and validates it with the `key-share` crate before anyone stores it.
pub fn build_core_share<E: Curve>(
    old: &DirtyKeyInfo<E>,
    new_t: u16,
    new_points: &[u16],
    me: u16,
    public_shares: Vec<NonZero<Point<E>>>,
    x: NonZero<SecretScalar<E>>,
) -> Result<cggmp24::key_share::IncompleteKeyShare<E>, VssError> {
    check_new_group(new_t, new_points)?;
    let i = new_points
        .iter()
        .position(|p| *p == me)
        .and_then(|p| u16::try_from(p).ok())
        .ok_or(VssError::Set("the receiver is not in the new group"))?;
    let indexes = new_points
        .iter()
        .map(|p| point::<E>(*p))
        .collect::<Result<Vec<_>, _>>()?;
    let dirty = DirtyIncompleteKeyShare {
        i,
        key_info: DirtyKeyInfo {
            curve: Default::default(),
            shared_public_key: old.shared_public_key,
            public_shares,
            vss_setup: Some(VssSetup {
                min_signers: new_t,
                I: indexes,
            }),
            chain_code: old.chain_code,
        },
        x,
    };
    cggmp24::key_share::Validate::validate(dirty).map_err(|e| VssError::Invalid(e.to_string()))
}
