//! Bitcoin: BIP-174 PSBTs spending P2WPKH outputs of the custody key, decoded and hashed by each
//! node itself.
//!
//! A node never signs a digest it was handed. It decodes the PSBT, checks that every input is the
//! custody key's own P2WPKH output with a committed amount, derives the withdrawal intent that
//! policy evaluates, and computes each input's BIP-143 preimage itself.

use std::fmt;
use std::str::FromStr;

use bitcoin::hashes::{sha256d, Hash};
use bitcoin::{
    Address, Amount, CompressedPublicKey, EcdsaSighashType, Script, ScriptBuf, Transaction, Witness,
};

mod psbt;
mod sign;

pub use psbt::UnsignedPsbt;

/// The largest PSBT accepted, in bytes (previous transactions included).
pub const MAX_PSBT_BYTES: usize = 2 * 1024 * 1024;

/// Consensus limit on any amount: 21 million BTC in satoshi.
pub const MAX_MONEY_SAT: u64 = 21_000_000 * 100_000_000;

/// A Bitcoin network, as named in [`crate::intent::ChainRef::Bitcoin`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Network {
    /// Bitcoin mainnet (`bc1…`).
    Mainnet,
    /// Testnet3 (`tb1…`).
    Testnet,
    /// Signet (`tb1…`).
    Signet,
    /// Regtest (`bcrt1…`).
    Regtest,
}

impl Network {
    /// Every network the API signs for, in this order. Policy files accept exactly these
    /// (`bitcoin:<name>`), so a policy cannot name a network no request can carry.
    pub const ALL: [Network; 4] = [
        Network::Mainnet,
        Network::Testnet,
        Network::Signet,
        Network::Regtest,
    ];

    /// The lowercase name used in intents and policy files.
    pub fn as_str(self) -> &'static str {
        match self {
            Network::Mainnet => "mainnet",
            Network::Testnet => "testnet",
            Network::Signet => "signet",
            Network::Regtest => "regtest",
        }
    }

    fn params(self) -> bitcoin::Network {
        match self {
            Network::Mainnet => bitcoin::Network::Bitcoin,
            Network::Testnet => bitcoin::Network::Testnet,
            Network::Signet => bitcoin::Network::Signet,
            Network::Regtest => bitcoin::Network::Regtest,
        }
    }
}

impl fmt::Display for Network {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Network {
    type Err = BtcError;

    /// Accepts exactly `mainnet`, `testnet`, `signet` or `regtest`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "mainnet" => Ok(Network::Mainnet),
            "testnet" => Ok(Network::Testnet),
            "signet" => Ok(Network::Signet),
            "regtest" => Ok(Network::Regtest),
            other => Err(BtcError::UnknownNetwork(other.to_string())),
        }
    }
}

/// Why a Bitcoin request was refused. Each variant maps to a stable API code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BtcError {
    /// Not one of the four network names.
    #[error("unknown bitcoin network `{0}`: expected `mainnet`, `testnet`, `signet` or `regtest`")]
    UnknownNetwork(String),
    /// The custody public key is not a valid compressed secp256k1 point.
    #[error("the custody public key is not a valid compressed secp256k1 point")]
    InvalidPubkey,
    /// Exactly 32 bytes: a bare digest, not a PSBT.
    #[error("refusing a bare 32-byte digest: send the unsigned psbt, never a hash")]
    BareDigest,
    /// Over [`MAX_PSBT_BYTES`].
    #[error("the psbt is {0} bytes, over the {MAX_PSBT_BYTES}-byte limit")]
    TooLarge(usize),
    /// Empty, truncated, not base64, or not BIP-174.
    #[error("malformed psbt: {0}")]
    Malformed(String),
    /// Decoded, but re-encoding gives other bytes (reordered, duplicated or padded maps).
    #[error("non-canonical psbt encoding: re-serialising it gives other bytes")]
    NonCanonical,
    /// The transaction spends nothing.
    #[error("the psbt has no inputs")]
    NoInputs,
    /// The transaction pays nothing (invalid by consensus).
    #[error("the psbt has no outputs")]
    NoOutputs,
    /// The same outpoint is spent twice (invalid by consensus, and it double-counts the amount).
    #[error("input {0} spends the same outpoint as an earlier input")]
    DuplicateInput(usize),
    /// An input lacks `witness_utxo`, so its amount is not known.
    #[error("input {0} has no `witness_utxo`: its amount and script are unknown")]
    MissingUtxo(usize),
    /// An input lacks `non_witness_utxo`: its amount would rest on `witness_utxo` alone, which
    /// a BIP-143 signature commits to only for its own input (CVE-2020-14199, the segwit fee
    /// attack: two cheap-looking signings of one transaction splice into one paying a huge fee).
    #[error(
        "input {0} has no `non_witness_utxo`: include the previous transaction it spends, so its amount is proven"
    )]
    MissingPrevTx(usize),
    /// An input does not spend the custody key's P2WPKH script.
    #[error("input {input} spends script `{script}`, not the custody key's p2wpkh script")]
    InputNotOwned {
        /// Input index.
        input: usize,
        /// The script it spends, hex.
        script: String,
    },
    /// An input does not spend one of the named account's addresses (`m/a/0..8`): it belongs
    /// to another account, to the master key or to someone else.
    #[error(
        "input {input} spends script `{script}`, which is not one of account `{account}`'s p2wpkh addresses"
    )]
    InputNotInAccount {
        /// Input index.
        input: usize,
        /// The account the request names.
        account: String,
        /// The script it spends, hex.
        script: String,
    },
    /// An input asks for a sighash type other than `SIGHASH_ALL`.
    #[error("input {input} asks for sighash type `0x{sighash:x}`: only sighash_all is signed")]
    SighashNotAll {
        /// Input index.
        input: usize,
        /// The requested type.
        sighash: u32,
    },
    /// `non_witness_utxo` contradicts the input's outpoint or its `witness_utxo`.
    #[error("input {input}: `non_witness_utxo` contradicts the input ({what})")]
    UtxoMismatch {
        /// Input index.
        input: usize,
        /// Which field disagrees.
        what: &'static str,
    },
    /// An input already carries signatures or a final witness.
    #[error("input {0} already carries signatures or a final script")]
    AlreadySigned(usize),
    /// An amount or a sum of amounts is out of range.
    #[error("amount overflow: {0}")]
    AmountOverflow(&'static str),
    /// The outputs spend more than the inputs provide.
    #[error("outputs total {outputs} sat, more than the {inputs} sat of the inputs")]
    OutputsExceedInputs {
        /// Sum of input amounts.
        inputs: u64,
        /// Sum of output amounts.
        outputs: u64,
    },
    /// An input index past the end.
    #[error("input index {index} is out of range: the transaction has {count} inputs")]
    InputIndex {
        /// Requested index.
        index: usize,
        /// Number of inputs.
        count: usize,
    },
    /// `finalize` needs exactly one signature per input.
    #[error("expected {expected} signatures, one per input, got {got}")]
    SignatureCount {
        /// Number of inputs.
        expected: usize,
        /// Number given.
        got: usize,
    },
    /// A signature that does not parse or does not verify against the input's sighash.
    #[error("signature {0} is invalid for its input's sighash and the custody key")]
    InvalidSignature(usize),
    /// A signature with a high `s` (non-standard under BIP-146 LOW_S).
    #[error("signature {0} has a high `s`: only low-s signatures are relayed")]
    HighS(usize),
    /// Something that should never happen.
    #[error("internal error: {0}")]
    Bug(String),
}

impl BtcError {
    /// Stable machine code for API errors.
    pub fn code(&self) -> &'static str {
        match self {
            BtcError::UnknownNetwork(_) => "chain.unknown_network",
            BtcError::InvalidPubkey => "key.invalid_pubkey",
            BtcError::BareDigest => "request.bare_digest",
            BtcError::TooLarge(_) => "psbt.too_large",
            BtcError::Malformed(_) => "psbt.malformed",
            BtcError::NonCanonical => "psbt.non_canonical",
            BtcError::NoInputs => "psbt.no_inputs",
            BtcError::NoOutputs => "psbt.no_outputs",
            BtcError::DuplicateInput(_) => "psbt.duplicate_input",
            BtcError::MissingUtxo(_) => "psbt.missing_utxo",
            BtcError::MissingPrevTx(_) => "psbt.missing_prev_tx",
            BtcError::InputNotOwned { .. } => "psbt.input_not_owned",
            BtcError::InputNotInAccount { .. } => "account.input_not_owned",
            BtcError::SighashNotAll { .. } => "psbt.sighash_not_all",
            BtcError::UtxoMismatch { .. } => "psbt.utxo_mismatch",
            BtcError::AlreadySigned(_) => "psbt.already_signed",
            BtcError::AmountOverflow(_) | BtcError::OutputsExceedInputs { .. } => "amount.overflow",
            BtcError::InputIndex { .. } => "request.input_index",
            BtcError::SignatureCount { .. } => "request.signature_count",
            BtcError::InvalidSignature(_) => "signature.invalid",
            BtcError::HighS(_) => "signature.high_s",
            BtcError::Bug(_) => "internal.bug",
        }
    }
}

/// Parses a compressed public key, refusing anything that is not a curve point.
pub(crate) fn custody_key(pubkey: &[u8; 33]) -> Result<CompressedPublicKey, BtcError> {
    CompressedPublicKey::from_slice(pubkey).map_err(|_| BtcError::InvalidPubkey)
}

/// The P2WPKH `scriptPubKey` (`OP_0 <hash160(pubkey)>`) of a compressed public key.
pub fn p2wpkh_script(pubkey: &[u8; 33]) -> Result<Vec<u8>, BtcError> {
    let key = custody_key(pubkey)?;
    Ok(ScriptBuf::new_p2wpkh(&key.wpubkey_hash()).into_bytes())
}

/// The bech32 P2WPKH address of a compressed public key on `network`.
pub fn p2wpkh_address(pubkey: &[u8; 33], network: Network) -> Result<String, BtcError> {
    let key = custody_key(pubkey)?;
    Ok(Address::p2wpkh(&key, network.params()).to_string())
}

/// The address of an output script, or `script:<hex>` for one that has none (e.g. `OP_RETURN`).
pub(crate) fn destination(script: &Script, network: Network) -> String {
    match Address::from_script(script, network.params()) {
        Ok(addr) => addr.to_string(),
        Err(_) => format!("script:{}", hex::encode(script.as_bytes())),
    }
}

/// The BIP-143 signing preimage of a P2WPKH input with `SIGHASH_ALL`.
///
/// The script code is the P2PKH script of the key hash, as BIP-143 specifies for P2WPKH.
pub(crate) fn segwit_v0_preimage(
    tx: &Transaction,
    input: usize,
    key: &CompressedPublicKey,
    amount: Amount,
) -> Result<Vec<u8>, BtcError> {
    if input >= tx.input.len() {
        return Err(BtcError::InputIndex {
            index: input,
            count: tx.input.len(),
        });
    }
    let script_code = ScriptBuf::new_p2pkh(&key.pubkey_hash());
    let mut out = Vec::with_capacity(182);
    bitcoin::sighash::SighashCache::new(tx)
        .segwit_v0_encode_signing_data_to(
            &mut out,
            input,
            &script_code,
            amount,
            EcdsaSighashType::All,
        )
        .map_err(|e| BtcError::Bug(format!("bip-143 encoding failed: {e}")))?;
    Ok(out)
}

/// `SHA256(SHA256(data))`: the digest an ECDSA signature in Bitcoin commits to.
pub(crate) fn sha256d(data: &[u8]) -> [u8; 32] {
    sha256d::Hash::hash(data).to_byte_array()
}

/// Parses a compact `(r, s)`, refusing values not below the curve order and high `s`.
/// `index` names the signature in errors.
pub(crate) fn parse_low_s(
    (r, s): &([u8; 32], [u8; 32]),
    index: usize,
) -> Result<secp256k1::ecdsa::Signature, BtcError> {
    let mut compact = [0u8; 64];
    compact[..32].copy_from_slice(r);
    compact[32..].copy_from_slice(s);
    let sig = secp256k1::ecdsa::Signature::from_compact(&compact)
        .map_err(|_| BtcError::InvalidSignature(index))?;
    let mut normalized = sig;
    normalized.normalize_s();
    if normalized != sig {
        return Err(BtcError::HighS(index));
    }
    Ok(sig)
}

/// The P2WPKH witness stack `[DER(sig) || 0x01, pubkey]`.
pub(crate) fn witness_stack(
    key: &CompressedPublicKey,
    sig: secp256k1::ecdsa::Signature,
) -> Witness {
    let sig = bitcoin::ecdsa::Signature {
        signature: sig,
        sighash_type: EcdsaSighashType::All,
    };
    Witness::p2wpkh(&sig, &key.0)
}

/// Checks a compact `(r, s)` against `digest` and the key, then builds the P2WPKH witness.
pub(crate) fn p2wpkh_witness(
    key: &CompressedPublicKey,
    digest: [u8; 32],
    sig: &([u8; 32], [u8; 32]),
    index: usize,
) -> Result<Witness, BtcError> {
    let sig = parse_low_s(sig, index)?;
    let msg = secp256k1::Message::from_digest(digest);
    secp256k1::SECP256K1
        .verify_ecdsa(&msg, &sig, &key.0)
        .map_err(|_| BtcError::InvalidSignature(index))?;
    Ok(witness_stack(key, sig))
}

#[cfg(test)]
pub(crate) mod testkit;

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use bitcoin::consensus::deserialize;

    fn hex32(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    #[test]
    fn networks_parse_exactly_and_unknown_names_are_refused() {
        for n in ["mainnet", "testnet", "signet", "regtest"] {
            assert_eq!(n.parse::<Network>().unwrap().to_string(), n);
        }
        let all: Vec<&str> = Network::ALL.iter().map(|n| n.as_str()).collect();
        assert_eq!(all, ["mainnet", "testnet", "signet", "regtest"]);
        for bad in ["bitcoin", "Mainnet", "testnet4", "", " mainnet"] {
            let err = bad.parse::<Network>().unwrap_err();
            assert_eq!(err.code(), "chain.unknown_network");
            assert!(err.to_string().contains(&format!("`{bad}`")));
        }
    }

    /// Private key 1 (the generator) has well-known P2WPKH addresses.
    #[test]
    fn p2wpkh_address_and_script_of_the_generator() {
        let g: [u8; 33] =
            hex::decode("0279be667ef9dcbbac55a06295ce870b07029bfcdb2dce28d959f2815b16f81798")
                .unwrap()
                .try_into()
                .unwrap();
        assert_eq!(
            p2wpkh_address(&g, Network::Mainnet).unwrap(),
            "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4"
        );
        assert_eq!(
            p2wpkh_address(&g, Network::Testnet).unwrap(),
            "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"
        );
        assert!(p2wpkh_address(&g, Network::Regtest)
            .unwrap()
            .starts_with("bcrt1q"));
        assert_eq!(
            hex::encode(p2wpkh_script(&g).unwrap()),
            "0014751e76e8199196d454941c45d1b3a323f1433bd6"
        );
        let mut not_a_point = g;
        not_a_point[0] = 0x05;
        assert_eq!(
            p2wpkh_script(&not_a_point).unwrap_err().code(),
            "key.invalid_pubkey"
        );
    }

    /// BIP-143, "Native P2WPKH" example: the second input (P2WPKH, 6 BTC) of the unsigned tx.
    #[test]
    fn bip143_native_p2wpkh_vector() {
        let tx: Transaction = deserialize(
            &hex::decode(
                "0100000002fff7f7881a8099afa6940d42d1e7f6362bec38171ea3edf433541db4e4ad969f00000000\
                 00eeffffffef51e1b804cc89d182d279655c3aa89e815b1b309fe287d9b2b55d57b90ec68a0100000000\
                 ffffffff02202cb206000000001976a9148280b37df378db99f66f85c95a783a76ac7a6d5988ac909351\
                 0d000000001976a9143bde42dbee7e4dbe6a21b2d50ce2f0167faa815988ac11000000",
            )
            .unwrap(),
        )
        .unwrap();
        let pubkey: [u8; 33] =
            hex::decode("025476c2e83188368da1ff3e292e7acafcdb3566bb0ad253f62fc70f07aeee6357")
                .unwrap()
                .try_into()
                .unwrap();
        assert_eq!(
            hex::encode(p2wpkh_script(&pubkey).unwrap()),
            "00141d0f172a0ecb48aee1be1f2687d2963ae33f71a1"
        );
        let key = custody_key(&pubkey).unwrap();
        let preimage = segwit_v0_preimage(&tx, 1, &key, Amount::from_sat(600_000_000)).unwrap();
        assert_eq!(
            hex::encode(&preimage),
            "0100000096b827c8483d4e9b96712b6713a7b68d6e8003a781feba36c31143470b4efd3752b0a642eea2fb\
             7ae638c36f6252b6750293dbe574a806984b8e4d8548339a3bef51e1b804cc89d182d279655c3aa89e815b\
             1b309fe287d9b2b55d57b90ec68a010000001976a9141d0f172a0ecb48aee1be1f2687d2963ae33f71a188\
             ac0046c32300000000ffffffff863ef3e1a92afbfdb97f31ad0fc7683ee943e9abcf2501590ff8f6551f47\
             e5e51100000001000000"
        );
        assert_eq!(
            sha256d(&preimage),
            hex32("c37af31116d1b27caf68aae9e3ac82f1477929014d5b917657d0eb49478cb670")
        );
        // The node hands the MPC library SHA256(preimage), which hashes once more.
        use sha2::{Digest, Sha256};
        let once = Sha256::digest(&preimage);
        assert_eq!(
            Sha256::digest(once).as_slice(),
            hex32("c37af31116d1b27caf68aae9e3ac82f1477929014d5b917657d0eb49478cb670")
        );
        assert_eq!(
            segwit_v0_preimage(&tx, 2, &key, Amount::ZERO)
                .unwrap_err()
                .code(),
            "request.input_index"
        );
    }
}
