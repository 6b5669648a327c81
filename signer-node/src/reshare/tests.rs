#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use cggmp24::generic_ec::{NonZero, Point, Scalar, SecretScalar};
use cggmp24::key_share::DirtyKeyInfo;
use cggmp24::supported_curves::Secp256k1;
use generic_ec_zkp::polynomial::{lagrange_coefficient_at_zero, Polynomial};
use rand::rngs::OsRng;

use super::vss::{self, VssError};

type E = Secp256k1;

/// A t-of-n sharing of a random secret, as a DKG leaves it (test-only dealer).
struct Old {
    secret: Scalar<E>,
    shares: Vec<SecretScalar<E>>,
    info: DirtyKeyInfo<E>,
}

fn old(t: u16, n: u16) -> Old {
    let f = Polynomial::<SecretScalar<E>>::sample(&mut OsRng, usize::from(t) - 1);
    let secret: Scalar<E> = f.value(&Scalar::<E>::zero());
    let shares: Vec<SecretScalar<E>> = (1..=n)
        .map(|i| {
            let mut v: Scalar<E> = f.value(&Scalar::<E>::from(i));
            SecretScalar::new(&mut v)
        })
        .collect();
    let public_shares = shares
        .iter()
        .map(|s| NonZero::from_point(Point::generator() * s).unwrap())
        .collect();
    let info = DirtyKeyInfo {
        curve: Default::default(),
        shared_public_key: NonZero::from_point(Point::generator() * secret).unwrap(),
        public_shares,
        vss_setup: None,
        chain_code: Some([7u8; 32]),
    };
    Old {
        secret,
        shares,
        info,
    }
}

fn interpolate(points: &[u16], values: &[Scalar<E>]) -> Scalar<E> {
    let xs: Vec<NonZero<Scalar<E>>> = points
        .iter()
        .map(|p| NonZero::from_scalar(Scalar::from(*p)).unwrap())
        .collect();
    (0..points.len())
        .map(|j| *lagrange_coefficient_at_zero(j, &xs).unwrap().as_ref() * values[j])
        .sum()
}

/// New shares and new public shares, in the order of the new group.
type Redistributed = (Vec<NonZero<SecretScalar<E>>>, Vec<NonZero<Point<E>>>);

/// Runs the redistribution from `dealers` to `new_points`, checking every step; returns the
/// new shares and public shares.
fn redistribute(o: &Old, dealers: &[u16], new_t: u16, new_points: &[u16]) -> Redistributed {
    let dealings: Vec<vss::Dealing<E>> = dealers
        .iter()
        .map(|d| {
            let x = &o.shares[usize::from(*d) - 1];
            vss::deal(&mut OsRng, dealers, *d, x, new_t, new_points).unwrap()
        })
        .collect();
    for (d, dealing) in dealers.iter().zip(&dealings) {
        let public = *o.info.public_shares[usize::from(*d) - 1];
        vss::check_commitments(dealers, *d, &public, &dealing.commitments, new_t).unwrap();
    }
    let all: Vec<Vec<Point<E>>> = dealings.iter().map(|d| d.commitments.clone()).collect();
    let publics = vss::new_public_shares(&all, &o.info.shared_public_key, new_points).unwrap();
    let shares = new_points
        .iter()
        .enumerate()
        .map(|(k, j)| {
            let subs: Vec<SecretScalar<E>> = dealers
                .iter()
                .zip(&dealings)
                .map(|(d, dealing)| {
                    vss::check_sub_share(*d, *j, &dealing.commitments, &dealing.sub_shares[k])
                        .unwrap();
                    dealing.sub_shares[k].clone()
                })
                .collect();
            vss::new_share(&subs).unwrap()
        })
        .collect();
    (shares, publics)
}

#[test]
fn two_of_three_reshared_to_three_of_five_keeps_the_secret_and_validates() {
    let o = old(2, 3);
    let new_points = [1, 2, 3, 4, 5];
    let (shares, publics) = redistribute(&o, &[1, 3], 3, &new_points);
    // Any three new shares give the old secret; two do not.
    for set in [[0usize, 1, 2], [2, 3, 4], [0, 2, 4]] {
        let pts: Vec<u16> = set.iter().map(|k| new_points[*k]).collect();
        let vals: Vec<Scalar<E>> = set.iter().map(|k| *shares[*k].as_ref()).collect();
        assert_eq!(interpolate(&pts, &vals), o.secret);
    }
    let two: Vec<Scalar<E>> = [0usize, 1].iter().map(|k| *shares[*k].as_ref()).collect();
    assert_ne!(interpolate(&[1, 2], &two), o.secret);
    // Every receiver's key share passes key-share's validation, with the same key and chain code.
    for (k, x) in shares.into_iter().enumerate() {
        let share =
            vss::build_core_share(&o.info, 3, &new_points, new_points[k], publics.clone(), x)
                .unwrap();
        assert_eq!(share.shared_public_key, o.info.shared_public_key);
        assert_eq!(share.chain_code, o.info.chain_code);
        assert_eq!(share.min_signers(), 3);
    }
}

#[test]
fn a_refresh_gives_new_shares_that_old_shares_cannot_join() {
    let o = old(2, 3);
    let (shares, _) = redistribute(&o, &[2, 3], 2, &[1, 2, 3]);
    for (new, old) in shares.iter().zip(&o.shares) {
        let (new, old): (&Scalar<E>, &Scalar<E>) = (new.as_ref(), old.as_ref());
        assert_ne!(new, old, "a refresh changes every share");
    }
    let new_pair = [*shares[0].as_ref(), *shares[1].as_ref()];
    assert_eq!(interpolate(&[1, 2], &new_pair), o.secret);
    // One old share and one new share are useless together.
    let mixed = [*o.shares[0].as_ref(), *shares[1].as_ref()];
    assert_ne!(interpolate(&[1, 2], &mixed), o.secret);
}

#[test]
fn a_dealer_that_changes_its_constant_term_is_named() {
    let o = old(2, 3);
    let dealers = [1, 2];
    let mut wrong = *o.shares[1].as_ref() + Scalar::<E>::one();
    let wrong = SecretScalar::new(&mut wrong);
    let d = vss::deal(&mut OsRng, &dealers, 2, &wrong, 2, &[1, 2, 3]).unwrap();
    let public = *o.info.public_shares[1];
    assert_eq!(
        vss::check_commitments(&dealers, 2, &public, &d.commitments, 2),
        Err(VssError::Constant { dealer: 2 })
    );
    // Even if every party skipped that check, the sum check at the end would catch it.
    let honest = vss::deal(&mut OsRng, &dealers, 1, &o.shares[0], 2, &[1, 2, 3]).unwrap();
    assert_eq!(
        vss::new_public_shares(
            &[honest.commitments, d.commitments],
            &o.info.shared_public_key,
            &[1, 2, 3]
        )
        .unwrap_err(),
        VssError::PublicKey
    );
}

#[test]
fn a_wrong_sub_share_names_its_dealer_and_receiver() {
    let o = old(2, 3);
    let d = vss::deal(&mut OsRng, &[1, 3], 3, &o.shares[2], 2, &[1, 2, 4]).unwrap();
    let mut bad = *d.sub_shares[2].as_ref() + Scalar::<E>::one();
    let bad = SecretScalar::new(&mut bad);
    assert_eq!(
        vss::check_sub_share(3, 4, &d.commitments, &bad),
        Err(VssError::SubShare {
            dealer: 3,
            receiver: 4
        })
    );
    // A sub-share meant for another receiver fails too.
    assert!(vss::check_sub_share(3, 4, &d.commitments, &d.sub_shares[1]).is_err());
    assert!(vss::check_sub_share(3, 4, &d.commitments, &d.sub_shares[2]).is_ok());
}

#[test]
fn malformed_groups_and_degrees_are_refused() {
    let o = old(2, 3);
    let x = &o.shares[0];
    let deal =
        |dealers: &[u16], t, new: &[u16]| vss::deal(&mut OsRng, dealers, 1, x, t, new).map(|_| ());
    assert_eq!(
        deal(&[1, 2], 4, &[1, 2, 3]),
        Err(VssError::Threshold { t: 4, n: 3 })
    );
    assert_eq!(
        deal(&[1, 2], 0, &[1, 2, 3]),
        Err(VssError::Threshold { t: 0, n: 3 })
    );
    assert!(matches!(
        deal(&[1, 2], 2, &[1, 1, 3]),
        Err(VssError::Set(_))
    ));
    assert!(matches!(
        deal(&[1, 1], 2, &[1, 2, 3]),
        Err(VssError::Set(_))
    ));
    assert!(matches!(
        deal(&[2, 3], 2, &[1, 2, 3]),
        Err(VssError::Set(_))
    ));
    assert!(matches!(
        deal(&[0, 1], 2, &[1, 2, 3]),
        Err(VssError::Set(_))
    ));
    let d = vss::deal(&mut OsRng, &[1, 2], 1, x, 3, &[1, 2, 3]).unwrap();
    let public = *o.info.public_shares[0];
    assert_eq!(
        vss::check_commitments(&[1, 2], 1, &public, &d.commitments, 2),
        Err(VssError::Degree {
            dealer: 1,
            got: 3,
            want: 2
        })
    );
}

#[test]
fn a_public_share_reported_falsely_breaks_the_vector_when_n_exceeds_t() {
    let o = old(2, 3);
    let y: Point<E> = *o.info.shared_public_key;
    let publics: Vec<Point<E>> = o.info.public_shares.iter().map(|p| **p).collect();
    assert_eq!(vss::check_public_shares::<E>(&y, &publics, 2), Ok(()));
    for liar in 0..3 {
        let mut lied = publics.clone();
        lied[liar] += Point::generator().to_point();
        assert_eq!(
            vss::check_public_shares::<E>(&y, &lied, 2),
            Err(VssError::PublicKey),
            "party {liar}'s false public share"
        );
    }
    assert_eq!(
        vss::check_public_shares::<E>(&(y + Point::generator()), &publics, 2),
        Err(VssError::PublicKey),
        "another key"
    );
    // n = t: any vector is consistent with the key it interpolates to.
    let o = old(3, 3);
    let publics: Vec<Point<E>> = o.info.public_shares.iter().map(|p| **p).collect();
    let y: Point<E> = *o.info.shared_public_key;
    assert_eq!(vss::check_public_shares::<E>(&y, &publics, 3), Ok(()));
    assert!(matches!(
        vss::check_public_shares::<E>(&y, &publics, 4),
        Err(VssError::Threshold { .. })
    ));
}
