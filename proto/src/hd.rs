//! Segregated accounts: non-hardened BIP-32 public derivation from a key's master public key and
//! chain code (the DKG makes both; no party ever holds the private key).
//!
//! Path scheme: account number `a` (assigned in creation order, from 0) owns the keys
//! `m/a/i` for `i` in `0..ADDRESS_WINDOW`. Its Ethereum address is that of `m/a/0`; its Bitcoin
//! P2WPKH addresses are those of `m/a/0`, `m/a/1`, ... Only non-hardened indexes are used:
//! hardened derivation needs the private key, which never exists. For secp256k1, SLIP-10
//! public derivation (what cggmp24 applies to signing) is BIP-32 public derivation.

use generic_ec::{curves::Secp256k1, NonZero, Point};
use hd_wallet::{ExtendedPublicKey, HdWallet, NonHardenedIndex, Slip10};
use serde::{Deserialize, Serialize};

/// Addresses per account, `m/a/0 .. m/a/(ADDRESS_WINDOW-1)`: a node recognises an input or a
/// change output as the account's only if it pays to one of these.
pub const ADDRESS_WINDOW: u32 = 8;

/// Account numbers are non-hardened indexes.
pub const MAX_ACCOUNTS: u32 = 1 << 31;

/// Why a derivation fails.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HdError {
    /// Not a compressed secp256k1 point.
    #[error("the master public key is not a valid compressed secp256k1 point")]
    PublicKey,
    /// No 32-byte chain code (the key was not generated HD-capable).
    #[error("the key has no 32-byte chain code: it was not generated HD-capable")]
    ChainCode,
    /// A hardened or out-of-range index.
    #[error("index {0} is hardened: only non-hardened derivation (index < 2^31) is possible")]
    Hardened(u32),
    /// Derivation reached the point at infinity (probability ~2^-128).
    #[error("derivation produced an invalid key")]
    Invalid,
}

/// An extended public key: compressed point and chain code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Xpub {
    /// Compressed SEC1 public key.
    pub public_key: [u8; 33],
    /// BIP-32 chain code.
    pub chain_code: [u8; 32],
}

impl Xpub {
    /// Parses a master key as stored (33-byte key, 32-byte chain code).
    pub fn new(public_key: &[u8], chain_code: &[u8]) -> Result<Self, HdError> {
        let public_key: [u8; 33] = public_key.try_into().map_err(|_| HdError::PublicKey)?;
        let chain_code: [u8; 32] = chain_code.try_into().map_err(|_| HdError::ChainCode)?;
        Point::<Secp256k1>::from_bytes(public_key).map_err(|_| HdError::PublicKey)?;
        Ok(Self {
            public_key,
            chain_code,
        })
    }

    fn to_epub(self) -> Result<ExtendedPublicKey<Secp256k1>, HdError> {
        let public_key =
            Point::<Secp256k1>::from_bytes(self.public_key).map_err(|_| HdError::PublicKey)?;
        Ok(ExtendedPublicKey {
            public_key,
            chain_code: self.chain_code,
        })
    }

    /// The child at `path` (non-hardened indexes only).
    pub fn derive(&self, path: &[u32]) -> Result<Xpub, HdError> {
        let mut epub = self.to_epub()?;
        for &index in path {
            let i = NonHardenedIndex::try_from(index).map_err(|_| HdError::Hardened(index))?;
            epub = <Slip10 as HdWallet<Secp256k1>>::derive_child_public_key(&epub, i);
        }
        NonZero::from_point(epub.public_key).ok_or(HdError::Invalid)?;
        let bytes = epub.public_key.to_bytes(true);
        let public_key: [u8; 33] = bytes.as_bytes().try_into().map_err(|_| HdError::Invalid)?;
        Ok(Xpub {
            public_key,
            chain_code: epub.chain_code,
        })
    }
}

/// `m/a/i` as indexes.
pub fn address_path(account: u32, index: u32) -> [u32; 2] {
    [account, index]
}

/// `m/a/i` as text.
pub fn path_text(path: &[u32]) -> String {
    let mut s = "m".to_string();
    for i in path {
        s.push('/');
        s.push_str(&i.to_string());
    }
    s
}

/// What a node derives for an account: the account-level xpub and its address keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccountKeys {
    /// Account number `a`.
    pub index: u32,
    /// Compressed public key of `m/a` (hex).
    pub public_key: String,
    /// Chain code of `m/a` (hex).
    pub chain_code: String,
    /// Compressed public keys of `m/a/0 .. m/a/(ADDRESS_WINDOW-1)` (hex), in index order.
    pub address_keys: Vec<String>,
}

impl AccountKeys {
    /// Derives an account's keys from the master xpub.
    pub fn derive(master: &Xpub, account: u32) -> Result<Self, HdError> {
        let acct = master.derive(&[account])?;
        let address_keys = (0..ADDRESS_WINDOW)
            .map(|i| acct.derive(&[i]).map(|x| hex::encode(x.public_key)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            index: account,
            public_key: hex::encode(acct.public_key),
            chain_code: hex::encode(acct.chain_code),
            address_keys,
        })
    }

    /// The address keys as bytes (`None` if one is malformed).
    pub fn address_key_bytes(&self) -> Option<Vec<[u8; 33]>> {
        self.address_keys
            .iter()
            .map(|h| hex::decode(h).ok()?.try_into().ok())
            .collect()
    }
}

/// Which keys a request may spend from: the master key, or one account's address keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpendKeys {
    /// The account's name and number, or `None` for the master key.
    pub account: Option<(String, u32)>,
    /// Candidate keys; for the master key exactly one.
    pub keys: Vec<[u8; 33]>,
}

impl SpendKeys {
    /// Only the master key.
    pub fn master(public_key: [u8; 33]) -> Self {
        Self {
            account: None,
            keys: vec![public_key],
        }
    }

    /// An account's address keys.
    pub fn account(name: &str, keys: &AccountKeys) -> Option<Self> {
        Some(Self {
            account: Some((name.to_string(), keys.index)),
            keys: keys.address_key_bytes()?,
        })
    }

    /// The derivation path of candidate key `k`, relative to the master.
    pub fn path(&self, k: usize) -> Vec<u32> {
        match &self.account {
            None => Vec::new(),
            Some((_, a)) => address_path(*a, k as u32).to_vec(),
        }
    }

    /// The account name, if any.
    pub fn account_name(&self) -> Option<String> {
        self.account.as_ref().map(|(n, _)| n.clone())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::str::FromStr;

    /// BIP-32 test vector 2: `m` and its non-hardened child `m/0` (public derivation).
    const TV2_M: &str = "xpub661MyMwAqRbcFW31YEwpkMuc5THy2PSt5bDMsktWQcFF8syAmRUapSCGu8ED9W6oDMSgv6Zz8idoc4a6mr8BDzTJY47LJhkJ8UB7WEGuduB";
    const TV2_M0: &str = "xpub69H7F5d8KSRgmmdJg2KhpAK8SR3DjMwAdkxj3ZuxV27CprR9LgpeyGmXUbC6wb7ERfvrnKZjXoUmmDznezpbZb7ap6r1D3tgFxHmwMkQTPH";
    /// BIP-32 test vector 1: `m/0H/1/2H` and its non-hardened descendants.
    const TV1_M0H12H: &str = "xpub6D4BDPcP2GT577Vvch3R8wDkScZWzQzMMUm3PWbmWvVJrZwQY4VUNgqFJPMM3No2dFDFGTsxxpG5uJh7n7epu4trkrX7x7DogT5Uv6fcLW5";
    const TV1_M0H12H2: &str = "xpub6FHa3pjLCk84BayeJxFW2SP4XRrFd1JYnxeLeU8EqN3vDfZmbqBqaGJAyiLjTAwm6ZLRQUMv1ZACTj37sR62cfN7fe5JnJ7dh8zL4fiyLHV";
    const TV1_M0H12H2B: &str = "xpub6H1LXWLaKsWFhvm6RVpEL9P4KfRZSW7abD2ttkWP3SSQvnyA8FSVqNTEcYFgJS2UaFcxupHiYkro49S8yGasTvXEYBVPamhGW6cFJodrTHy";

    fn ours(x: &bitcoin::bip32::Xpub) -> Xpub {
        Xpub::new(&x.public_key.serialize(), x.chain_code.as_bytes()).unwrap()
    }

    #[test]
    fn matches_the_official_bip32_public_chains() {
        let cases = [
            (TV2_M, vec![0u32], TV2_M0),
            (TV1_M0H12H, vec![2], TV1_M0H12H2),
            (TV1_M0H12H, vec![2, 1_000_000_000], TV1_M0H12H2B),
        ];
        for (parent, path, want) in cases {
            let parent = bitcoin::bip32::Xpub::from_str(parent).unwrap();
            let want = bitcoin::bip32::Xpub::from_str(want).unwrap();
            assert_eq!(
                ours(&parent).derive(&path).unwrap(),
                ours(&want),
                "{path:?}"
            );
        }
    }

    #[test]
    fn matches_the_bitcoin_crate_on_many_paths() {
        let secp = bitcoin::secp256k1::Secp256k1::verification_only();
        let parent = bitcoin::bip32::Xpub::from_str(TV2_M).unwrap();
        for (a, i) in [
            (0u32, 0u32),
            (1, 7),
            (7, 3),
            (1 << 30, 5),
            (MAX_ACCOUNTS - 1, 1),
        ] {
            let path = [a, i];
            let child_path: Vec<bitcoin::bip32::ChildNumber> = path
                .iter()
                .map(|&n| bitcoin::bip32::ChildNumber::from_normal_idx(n).unwrap())
                .collect();
            let theirs = parent.derive_pub(&secp, &child_path).unwrap();
            assert_eq!(ours(&parent).derive(&path).unwrap(), ours(&theirs));
        }
    }

    #[test]
    fn hardened_indexes_and_bad_keys_are_refused() {
        let x = ours(&bitcoin::bip32::Xpub::from_str(TV2_M).unwrap());
        assert_eq!(
            x.derive(&[MAX_ACCOUNTS]),
            Err(HdError::Hardened(MAX_ACCOUNTS))
        );
        assert_eq!(Xpub::new(&[5u8; 33], &[0; 32]), Err(HdError::PublicKey));
        assert_eq!(Xpub::new(&x.public_key, &[]), Err(HdError::ChainCode));
        assert_eq!(path_text(&address_path(3, 1)), "m/3/1");
    }

    #[test]
    fn account_keys_are_the_window_of_m_a_i() {
        let x = ours(&bitcoin::bip32::Xpub::from_str(TV2_M).unwrap());
        let k = AccountKeys::derive(&x, 5).unwrap();
        assert_eq!(k.address_keys.len(), ADDRESS_WINDOW as usize);
        assert_eq!(
            k.address_keys[3],
            hex::encode(x.derive(&[5, 3]).unwrap().public_key)
        );
        let spend = SpendKeys::account("c", &k).unwrap();
        assert_eq!(spend.path(3), vec![5, 3]);
        assert_eq!(SpendKeys::master(x.public_key).path(0), Vec::<u32>::new());
    }
}
