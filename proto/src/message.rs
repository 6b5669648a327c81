//! Proof-of-reserves messages: the digests a node signs for EIP-191 and BIP-322 "simple".
//!
//! As with transactions, a node never signs a digest it was handed: it rebuilds the preimage
//! from the message itself. Policy sees a [`WithdrawalIntent`] of kind
//! [`IntentKind::Message`], which a dedicated scope gates.

use bitcoin::absolute::LockTime;
use bitcoin::consensus::encode::serialize;
use bitcoin::opcodes::all::OP_RETURN;
use bitcoin::script::Builder;
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, CompressedPublicKey, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness,
};
use sha2::{Digest, Sha256};

use crate::btc::{
    custody_key, p2wpkh_witness, parse_low_s, segwit_v0_preimage, sha256d, witness_stack, BtcError,
};
use crate::intent::{Asset, ChainRef, IntentKind, WithdrawalIntent};
use crate::reserves::{parse_attestation, Attestation};

/// Why a message is not signed. `code()` is the stable API code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MessageError {
    /// Not a proof-of-reserves attestation for the signing key: nodes sign no other message,
    /// so a message signature can never stand in for a transaction, a hash or a login.
    #[error("only proof-of-reserves attestations are signed: {0}")]
    Format(String),
}

impl MessageError {
    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            MessageError::Format(_) => "message.format",
        }
    }
}

/// Checks that `message` is an attestation text ([`crate::reserves::parse_attestation`]) on
/// `chain` (`ethereum` or the Bitcoin network) naming `address`, the signing key's own, and,
/// for an account's request, that account.
pub fn check_attestation(
    message: &[u8],
    chain: &str,
    address: &str,
    account: Option<&str>,
) -> Result<Attestation, MessageError> {
    let bad = |m: String| MessageError::Format(m);
    let text = std::str::from_utf8(message).map_err(|_| bad("the message is not utf-8".into()))?;
    let a = parse_attestation(text).map_err(bad)?;
    if a.chain != chain {
        return Err(bad(format!(
            "the attestation is for chain `{}`, the request for `{chain}`",
            a.chain
        )));
    }
    if a.address != address {
        return Err(bad(format!(
            "the attestation names address `{}`, the signing key's is `{address}`",
            a.address
        )));
    }
    if let Some(account) = account.filter(|n| *n != a.account) {
        return Err(bad(format!(
            "the attestation names account `{}`, the request `{account}`",
            a.account
        )));
    }
    Ok(a)
}

/// The BIP-340 tag of the BIP-322 message hash.
pub const BIP322_TAG: &[u8] = b"BIP0322-signed-message";

/// `"\x19Ethereum Signed Message:\n" || decimal(len) || message`: Keccak-256 of it is signed
/// (EIP-191 version `0x45`, what `personal_sign` does).
pub fn eip191_preimage(message: &[u8]) -> Vec<u8> {
    let mut out = b"\x19Ethereum Signed Message:\n".to_vec();
    out.extend_from_slice(message.len().to_string().as_bytes());
    out.extend_from_slice(message);
    out
}

/// Keccak-256 of [`eip191_preimage`].
pub fn eip191_hash(message: &[u8]) -> [u8; 32] {
    use sha3::Keccak256;
    Keccak256::digest(eip191_preimage(message)).into()
}

/// The BIP-322 message hash: `SHA256(SHA256(tag) || SHA256(tag) || message)`.
pub fn bip322_message_hash(message: &[u8]) -> [u8; 32] {
    let tag = Sha256::digest(BIP322_TAG);
    Sha256::new()
        .chain_update(tag)
        .chain_update(tag)
        .chain_update(message)
        .finalize()
        .into()
}

/// The two virtual transactions of a BIP-322 proof for the custody key's P2WPKH address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bip322ToSign {
    key: CompressedPublicKey,
    to_spend: Transaction,
    to_sign: Transaction,
}

/// Builds `to_spend` and the unsigned `to_sign` exactly as BIP-322 specifies, with the custody
/// key's P2WPKH script as the message challenge.
pub fn bip322_to_sign(message: &[u8], pubkey: &[u8; 33]) -> Result<Bip322ToSign, BtcError> {
    let key = custody_key(pubkey)?;
    let challenge = ScriptBuf::new_p2wpkh(&key.wpubkey_hash());
    let to_spend = Transaction {
        version: Version(0),
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            // All-zero txid, index 0xFFFFFFFF.
            previous_output: OutPoint::null(),
            script_sig: Builder::new()
                .push_int(0)
                .push_slice(bip322_message_hash(message))
                .into_script(),
            sequence: Sequence::ZERO,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::ZERO,
            script_pubkey: challenge,
        }],
    };
    let to_sign = Transaction {
        version: Version(0),
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::new(to_spend.compute_txid(), 0),
            script_sig: ScriptBuf::new(),
            sequence: Sequence::ZERO,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::ZERO,
            script_pubkey: Builder::new().push_opcode(OP_RETURN).into_script(),
        }],
    };
    Ok(Bip322ToSign {
        key,
        to_spend,
        to_sign,
    })
}

impl Bip322ToSign {
    /// The BIP-143 preimage of `to_sign`'s input 0 (amount 0, `SIGHASH_ALL`).
    pub fn sighash_preimage(&self) -> Result<Vec<u8>, BtcError> {
        segwit_v0_preimage(&self.to_sign, 0, &self.key, Amount::ZERO)
    }

    /// `SHA256(SHA256(preimage))`: the digest the signature commits to.
    pub fn sighash(&self) -> Result<[u8; 32], BtcError> {
        Ok(sha256d(&self.sighash_preimage()?))
    }

    /// The consensus-encoded `to_spend` transaction.
    pub fn to_spend_bytes(&self) -> Vec<u8> {
        serialize(&self.to_spend)
    }

    /// `to_spend`'s txid, in the usual (byte-reversed) hex.
    pub fn to_spend_txid(&self) -> String {
        self.to_spend.compute_txid().to_string()
    }

    /// The unsigned `to_sign`'s txid (a segwit txid, so the signature does not change it).
    pub fn to_sign_txid(&self) -> String {
        self.to_sign.compute_txid().to_string()
    }

    /// The signed `to_sign` transaction (BIP-322 "full" form), after checking the signature.
    pub fn signed_to_sign(&self, r: &[u8; 32], s: &[u8; 32]) -> Result<Vec<u8>, BtcError> {
        let mut tx = self.to_sign.clone();
        let witness = p2wpkh_witness(&self.key, self.sighash()?, &(*r, *s), 0)?;
        if let Some(input) = tx.input.first_mut() {
            input.witness = witness;
        }
        Ok(serialize(&tx))
    }

    /// The BIP-322 "simple" signature, after checking it against this message's sighash.
    pub fn simple_signature(&self, r: &[u8; 32], s: &[u8; 32]) -> Result<String, BtcError> {
        let witness = p2wpkh_witness(&self.key, self.sighash()?, &(*r, *s), 0)?;
        Ok(encode_witness(&witness))
    }
}

/// The BIP-143 preimage of `to_sign` for `message` and the custody key.
pub fn bip322_sighash_preimage(message: &[u8], pubkey: &[u8; 33]) -> Result<Vec<u8>, BtcError> {
    bip322_to_sign(message, pubkey)?.sighash_preimage()
}

/// The BIP-322 "simple" signature: base64 of the consensus-encoded witness stack
/// `[DER(sig) || 0x01, pubkey]`.
///
/// This checks the key and that `(r, s)` is a low-s signature, but not what it signs: use
/// [`Bip322ToSign::simple_signature`] to verify it against the message too.
pub fn bip322_simple_signature(
    pubkey: &[u8; 33],
    r: &[u8; 32],
    s: &[u8; 32],
) -> Result<String, BtcError> {
    let key = custody_key(pubkey)?;
    let sig = parse_low_s(&(*r, *s), 0)?;
    Ok(encode_witness(&witness_stack(&key, sig)))
}

/// `(r, s, public key)` of a BIP-322 simple signature.
pub type Bip322Parts = ([u8; 32], [u8; 32], [u8; 33]);

/// Parses a BIP-322 "simple" P2WPKH signature into `(r, s)` and the witness's public key.
/// Anything but a two-item witness `[DER(sig) || 0x01, 33-byte key]` is malformed.
pub fn parse_bip322_simple(b64: &str) -> Result<Bip322Parts, BtcError> {
    use bitcoin::base64::{engine::general_purpose::STANDARD, Engine};
    let bad = |m: &str| BtcError::Malformed(format!("bip-322 signature: {m}"));
    let bytes = STANDARD.decode(b64.trim()).map_err(|_| bad("not base64"))?;
    let witness: Witness =
        bitcoin::consensus::deserialize(&bytes).map_err(|_| bad("not a witness"))?;
    let items: Vec<&[u8]> = witness.iter().collect();
    let [sig, pk] = items.as_slice() else {
        return Err(bad("a p2wpkh witness has two items"));
    };
    let sig = bitcoin::ecdsa::Signature::from_slice(sig).map_err(|_| bad("bad DER signature"))?;
    if sig.sighash_type != bitcoin::EcdsaSighashType::All {
        return Err(bad("sighash type is not ALL"));
    }
    let compact = sig.signature.serialize_compact();
    let (mut r, mut s) = ([0u8; 32], [0u8; 32]);
    r.copy_from_slice(&compact[..32]);
    s.copy_from_slice(&compact[32..]);
    let pk: [u8; 33] = (*pk).try_into().map_err(|_| bad("key is not 33 bytes"))?;
    Ok((r, s, pk))
}

fn encode_witness(witness: &Witness) -> String {
    use bitcoin::base64::{engine::general_purpose::STANDARD, Engine};
    STANDARD.encode(serialize(witness))
}

/// The intent of a message signature: no payments, no fee. A policy scope gates it.
pub fn message_intent(key_id: &str, chain: ChainRef, _message: &[u8]) -> WithdrawalIntent {
    WithdrawalIntent {
        key_id: key_id.to_string(),
        account: None,
        chain,
        kind: IntentKind::Message,
        asset: Asset::Native,
        payments: vec![],
        change: vec![],
        fee: 0,
        calldata: None,
        typed_data: None,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::btc::{p2wpkh_address, testkit::key, Network};

    fn hex32(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// The BIP-322 test-vector key (`L3VFeEujGtevx9w18HD1fhRbCH67Az2dpCymeRE1SoPK6XQtaN2k`).
    const BIP322_WIF: &str = "L3VFeEujGtevx9w18HD1fhRbCH67Az2dpCymeRE1SoPK6XQtaN2k";

    fn bip322_key() -> (secp256k1::SecretKey, [u8; 33]) {
        let sk = bitcoin::PrivateKey::from_wif(BIP322_WIF).unwrap().inner;
        (sk, sk.public_key(secp256k1::SECP256K1).serialize())
    }

    #[test]
    fn eip191_matches_personal_sign() {
        assert_eq!(
            eip191_preimage(b"hello"),
            b"\x19Ethereum Signed Message:\n5hello"
        );
        assert_eq!(eip191_preimage(b""), b"\x19Ethereum Signed Message:\n0");
        // ethers.js `hashMessage("Hello World")`.
        assert_eq!(
            eip191_hash(b"Hello World"),
            hex32("a1de988600a42c4b4ab089b619297c17d53cffae5d5120d82d8a92d0bb3b78f2")
        );
        let long = vec![b'a'; 1234];
        assert!(eip191_preimage(&long).starts_with(b"\x19Ethereum Signed Message:\n1234aaa"));
    }

    #[test]
    fn bip322_message_hashes_match_the_bip() {
        assert_eq!(
            bip322_message_hash(b""),
            hex32("c90c269c4f8fcbe6880f72a721ddfbf1914268a794cbb21cfafee13770ae19f1")
        );
        assert_eq!(
            bip322_message_hash(b"Hello World"),
            hex32("f0eb03b1a75ac6d9847f55c624a99169b5dccba2a31f5b23bea77ba270de0a7a")
        );
    }

    #[test]
    fn bip322_virtual_transactions_match_the_bip() {
        let (_, pubkey) = bip322_key();
        assert_eq!(
            p2wpkh_address(&pubkey, Network::Mainnet).unwrap(),
            "bc1q9vza2e8x573nczrlzms0wvx3gsqjx7vavgkx0l"
        );
        let vectors = [
            (
                &b""[..],
                "c5680aa69bb8d860bf82d4e9cd3504b55dde018de765a91bb566283c545a99a7",
                "1e9654e951a5ba44c8604c4de6c67fd78a27e81dcadcfe1edf638ba3aaebaed6",
            ),
            (
                b"Hello World",
                "b79d196740ad5217771c1098fc4a4b51e0535c32236c71f1ea4d61a2d603352b",
                "88737ae86f2077145f93cc4b153ae9a1cb8d56afa511988c149c5c8c9d93bddf",
            ),
        ];
        for (message, to_spend, to_sign) in vectors {
            let v = bip322_to_sign(message, &pubkey).unwrap();
            assert_eq!(v.to_spend_txid(), to_spend);
            assert_eq!(v.to_sign_txid(), to_sign);
        }
    }

    /// RFC 6979 signing is deterministic, so the BIP's own "Hello World" signature comes out.
    #[test]
    fn bip322_simple_signature_reproduces_the_bip_vector() {
        let (sk, pubkey) = bip322_key();
        let v = bip322_to_sign(b"Hello World", &pubkey).unwrap();
        assert_eq!(
            bip322_sighash_preimage(b"Hello World", &pubkey).unwrap(),
            v.sighash_preimage().unwrap()
        );
        let sig = secp256k1::SECP256K1
            .sign_ecdsa(&secp256k1::Message::from_digest(v.sighash().unwrap()), &sk)
            .serialize_compact();
        let (r, s) = (sig[..32].try_into().unwrap(), sig[32..].try_into().unwrap());
        let simple = bip322_simple_signature(&pubkey, &r, &s).unwrap();
        assert_eq!(simple, v.simple_signature(&r, &s).unwrap());
        assert_eq!(
            simple,
            "AkgwRQIhAOzyynlqt93lOKJr+wmmxIens//zPzl9tqIOua93wO6MAiBi5n5EyAcPScOjf1lAqIUIQtr3zKNeavYa\
             bHyR8eGhowEhAsfxIAMZZEKUPYWI4BruhAQjzFT8FSFSajuFwrDL1Yhy"
        );
        // A signature over another message is refused by the checking form.
        let other = bip322_to_sign(b"Hello World!", &pubkey).unwrap();
        assert_eq!(
            other.simple_signature(&r, &s).unwrap_err().code(),
            "signature.invalid"
        );
    }

    /// Bitcoin Core's interpreter accepts `to_sign` spending `to_spend`'s output.
    #[test]
    fn bip322_signature_passes_bitcoin_core_consensus() {
        let k = key(7);
        let v = bip322_to_sign(b"proof of reserves 2025-01-01", &k.pubkey).unwrap();
        let (r, s) = k.sign(v.sighash().unwrap());
        let signed = v.signed_to_sign(&r, &s).unwrap();
        let flags = bitcoinconsensus::VERIFY_ALL_PRE_TAPROOT;
        let spk = crate::btc::p2wpkh_script(&k.pubkey).unwrap();
        assert!(bitcoinconsensus::verify_with_flags(&spk, 0, &signed, None, 0, flags).is_ok());
        assert!(bitcoinconsensus::verify_with_flags(&spk, 1, &signed, None, 0, flags).is_err());
        let to_spend: Transaction = bitcoin::consensus::deserialize(&v.to_spend_bytes()).unwrap();
        assert_eq!(to_spend.output[0].script_pubkey.as_bytes(), spk);
    }

    #[test]
    fn message_format_refuses_anything_but_the_named_attestation() {
        let addr = "0x7e5f4552091a69125d5dfcb7b8c2659029395bdf";
        let text = crate::reserves::attestation("k", "a", "ethereum", addr, "s");
        let ok = check_attestation(text.as_bytes(), "ethereum", addr, Some("a")).unwrap();
        assert_eq!(ok.key_id, "k");
        for (msg, chain, address, account) in [
            (&[0xab; 32][..], "ethereum", addr, None),
            (
                b"proof of reserves: acme custody, 2026-11-24",
                "ethereum",
                addr,
                None,
            ),
            (text.as_bytes(), "mainnet", addr, None),
            (text.as_bytes(), "ethereum", "0x00", None),
            (text.as_bytes(), "ethereum", addr, Some("b")),
        ] {
            let err = check_attestation(msg, chain, address, account).unwrap_err();
            assert_eq!(err.code(), "message.format");
            assert!(err
                .to_string()
                .starts_with("only proof-of-reserves attestations are signed: "));
        }
    }

    #[test]
    fn message_intent_has_no_payments_and_no_fee() {
        let chain = ChainRef::Bitcoin {
            network: "mainnet".into(),
        };
        let intent = message_intent("k", chain.clone(), b"hi");
        assert_eq!(intent.kind, IntentKind::Message);
        assert_eq!(intent.chain, chain);
        assert!(intent.payments.is_empty() && intent.change.is_empty());
        assert_eq!(intent.fee, 0);
    }
}
