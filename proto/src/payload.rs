//! What a sign request asks to be signed, decoded the same way by the coordinator (to validate
//! and to assemble the result) and by every node (to decide and to compute digests itself).
//!
//! A payload needs one signature per *part*: one for an Ethereum transaction or a message, one
//! per input for a Bitcoin PSBT. For each part the payload yields a [`Preimage`]: the bytes
//! whose hash is signed, never the hash alone.

use serde::{Deserialize, Serialize};

use crate::{
    api::SignRequestBody,
    btc::{self, UnsignedPsbt},
    eth::UnsignedEip1559,
    hd::SpendKeys,
    intent::{ChainRef, WithdrawalIntent},
    message, typed, wire,
};

/// A request as it travels to nodes: raw bytes exactly as the client sent them (decoded from
/// hex/base64/UTF-8 by the coordinator, re-decoded by every node).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SignPayload {
    /// Unsigned EIP-1559 transaction.
    EthTx(#[serde(with = "wire::serde_bytes_vec")] Vec<u8>),
    /// Unsigned PSBT spending P2WPKH outputs of the key.
    BtcPsbt {
        /// `mainnet`, `testnet`, `signet` or `regtest`.
        network: String,
        /// BIP-174 bytes.
        #[serde(with = "wire::serde_bytes_vec")]
        psbt: Vec<u8>,
    },
    /// EIP-191 `personal_sign` of a UTF-8 message (proof of reserves).
    EthMessage(#[serde(with = "wire::serde_bytes_vec")] Vec<u8>),
    /// EIP-712 typed data: the JSON document (`eth_signTypedData_v4`).
    EthTypedData(#[serde(with = "wire::serde_bytes_vec")] Vec<u8>),
    /// BIP-322 simple signature of a UTF-8 message for the key's P2WPKH address.
    BtcMessage {
        /// Network of the address.
        network: String,
        /// The message.
        #[serde(with = "wire::serde_bytes_vec")]
        message: Vec<u8>,
        /// For an account: which of its addresses (`m/a/i`) signs; 0 otherwise.
        #[serde(default)]
        address_index: u32,
    },
}

/// How a part's preimage is hashed into the signed digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Preimage {
    /// Ethereum: keccak256(bytes).
    Keccak(Vec<u8>),
    /// Bitcoin: sha256(sha256(bytes)).
    Sha256d(Vec<u8>),
}

impl Preimage {
    /// The 32-byte digest that is signed.
    pub fn digest(&self) -> [u8; 32] {
        use sha2::Digest as _;
        match self {
            Preimage::Keccak(b) => sha3::Keccak256::digest(b).into(),
            Preimage::Sha256d(b) => sha2::Sha256::digest(sha2::Sha256::digest(b)).into(),
        }
    }
}

/// Why a request does not decode. `code()` is the stable API code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    /// Wrong combination of fields.
    #[error("{0}")]
    Shape(String),
    /// Bad hex/base64/UTF-8.
    #[error("{1}")]
    Encoding(&'static str, String),
    /// Chain not supported.
    #[error("chain `{0}` is not supported (supported: ethereum, bitcoin)")]
    Chain(String),
    /// Ethereum decoding.
    #[error(transparent)]
    Eth(#[from] crate::eth::EthTxError),
    /// Bitcoin decoding.
    #[error(transparent)]
    Btc(#[from] btc::BtcError),
    /// A message that is not a proof-of-reserves attestation for the signing key.
    #[error(transparent)]
    Message(#[from] message::MessageError),
    /// EIP-712 typed data that does not parse or is ambiguous.
    #[error(transparent)]
    TypedData(#[from] typed::TypedDataError),
    /// An account address index past the account's window.
    #[error("`address_index` {0} is out of range: an account has addresses 0..{1}")]
    AddressIndex(u32, usize),
    /// Signature count does not match the parts.
    #[error("expected {0} signatures, got {1}")]
    SignatureCount(usize, usize),
}

impl PayloadError {
    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            PayloadError::Shape(_) => "request.invalid",
            PayloadError::Encoding(code, _) => code,
            PayloadError::Chain(_) => "chain.unsupported",
            PayloadError::Eth(e) => e.code(),
            PayloadError::Btc(e) => e.code(),
            PayloadError::Message(e) => e.code(),
            PayloadError::TypedData(e) => e.code(),
            PayloadError::AddressIndex(..) => "account.address_index",
            PayloadError::SignatureCount(..) => "internal",
        }
    }
}

fn strip0x(s: &str) -> &str {
    s.strip_prefix("0x").unwrap_or(s)
}

impl SignPayload {
    /// Hash of exactly what is to be signed: approvals and ledger entries are bound to it, so
    /// one request id can never stand for two different payloads unnoticed. Every field is
    /// length-prefixed (u64 big-endian) after a variant tag.
    pub fn payload_hash(&self) -> [u8; 32] {
        use sha2::{Digest, Sha256};
        let mut h = Sha256::new();
        h.update(b"custody/payload/v1\0");
        let mut field = |bytes: &[u8]| {
            h.update((bytes.len() as u64).to_be_bytes());
            h.update(bytes);
        };
        match self {
            SignPayload::EthTx(tx) => {
                field(b"eth_tx");
                field(tx);
            }
            SignPayload::BtcPsbt { network, psbt } => {
                field(b"btc_psbt");
                field(network.as_bytes());
                field(psbt);
            }
            SignPayload::EthMessage(m) => {
                field(b"eth_message");
                field(m);
            }
            SignPayload::EthTypedData(d) => {
                field(b"eth_typed_data");
                field(d);
            }
            SignPayload::BtcMessage {
                network,
                message,
                address_index,
            } => {
                field(b"btc_message");
                field(network.as_bytes());
                field(message);
                field(&address_index.to_be_bytes());
            }
        }
        h.finalize().into()
    }

    /// Builds a payload from an API body, checking that exactly the right fields are present.
    pub fn from_body(b: &SignRequestBody) -> Result<Self, PayloadError> {
        let shape = |m: &str| Err(PayloadError::Shape(m.to_string()));
        if b.address_index.is_some()
            && (b.account.is_none() || b.message.is_none() || b.chain != "bitcoin")
        {
            return shape("`address_index` is for bitcoin messages of an `account` only");
        }
        let msg_bytes = |m: &String| m.as_bytes().to_vec();
        if let Some(t) = &b.typed_data {
            if b.chain != "ethereum"
                || b.unsigned_tx.is_some()
                || b.psbt.is_some()
                || b.message.is_some()
                || b.network.is_some()
            {
                return shape("`typed_data` is an ethereum request on its own (no `unsigned_tx`, `psbt`, `message` or `network`)");
            }
            // The document as JSON text; each node parses it again.
            let bytes = serde_json::to_vec(t)
                .map_err(|e| PayloadError::Shape(format!("`typed_data`: {e}")))?;
            return Ok(SignPayload::EthTypedData(bytes));
        }
        match (b.chain.as_str(), &b.unsigned_tx, &b.psbt, &b.message) {
            ("ethereum", Some(tx), None, None) => {
                if b.network.is_some() {
                    return shape("`network` is for bitcoin requests only");
                }
                let bytes = hex::decode(strip0x(tx)).map_err(|_| {
                    PayloadError::Encoding(
                        "tx.malformed_hex",
                        "`unsigned_tx` is not valid hex".into(),
                    )
                })?;
                Ok(SignPayload::EthTx(bytes))
            }
            ("ethereum", None, None, Some(m)) => Ok(SignPayload::EthMessage(msg_bytes(m))),
            ("bitcoin", None, Some(p), None) => {
                use bitcoin::base64::Engine as _;
                let psbt = bitcoin::base64::engine::general_purpose::STANDARD
                    .decode(p.trim())
                    .map_err(|_| {
                        PayloadError::Encoding(
                            "psbt.malformed_base64",
                            "`psbt` is not valid base64".into(),
                        )
                    })?;
                Ok(SignPayload::BtcPsbt {
                    network: network(b)?,
                    psbt,
                })
            }
            ("bitcoin", None, None, Some(m)) => Ok(SignPayload::BtcMessage {
                network: network(b)?,
                message: msg_bytes(m),
                address_index: b.address_index.unwrap_or(0),
            }),
            ("ethereum" | "bitcoin", ..) => {
                shape("send exactly one of `unsigned_tx` (ethereum), `psbt` (bitcoin), `message` or `typed_data` (ethereum)")
            }
            (other, ..) => Err(PayloadError::Chain(other.to_string())),
        }
    }

    /// Decodes the payload for a key's master public key, validating everything a node would.
    pub fn decode(&self, pubkey: &[u8; 33]) -> Result<Decoded, PayloadError> {
        self.decode_for(&SpendKeys::master(*pubkey))
    }

    /// Decodes the payload for the master key or an account's address keys: every PSBT input
    /// must spend one of them.
    pub fn decode_for(&self, spend: &SpendKeys) -> Result<Decoded, PayloadError> {
        let account = spend.account.as_ref().map(|(n, _)| n.as_str());
        let mut attested_key = None;
        let body = match self {
            SignPayload::EthTx(b) => Body::EthTx(UnsignedEip1559::decode(b)?),
            SignPayload::BtcPsbt { network, psbt } => {
                let net: btc::Network = network.parse()?;
                Body::BtcPsbt(Box::new(UnsignedPsbt::decode_for(
                    psbt,
                    net,
                    &spend.keys,
                    account,
                )?))
            }
            SignPayload::EthMessage(m) => {
                // An Ethereum account signs with its first address.
                let key = spend.keys.first().ok_or(btc::BtcError::InvalidPubkey)?;
                let address = crate::eth::address_from_pubkey(key)
                    .map_err(|_| btc::BtcError::InvalidPubkey)?;
                let a = message::check_attestation(m, "ethereum", &address, account)?;
                attested_key = Some(a.key_id);
                Body::EthMessage(m.clone())
            }
            SignPayload::EthTypedData(d) => {
                Body::EthTypedData(Box::new(typed::decode(d)?), d.clone())
            }
            SignPayload::BtcMessage {
                network,
                message,
                address_index,
            } => {
                let net: btc::Network = network.parse()?;
                let key = *address_index as usize;
                let Some(pubkey) = spend.keys.get(key) else {
                    return Err(PayloadError::AddressIndex(*address_index, spend.keys.len()));
                };
                let address = btc::p2wpkh_address(pubkey, net)?;
                let a = message::check_attestation(message, net.as_str(), &address, account)?;
                attested_key = Some(a.key_id);
                Body::BtcMessage {
                    network: net,
                    message: message.clone(),
                    key,
                }
            }
        };
        Ok(Decoded {
            body,
            spend: spend.clone(),
            attested_key,
        })
    }
}

fn network(b: &SignRequestBody) -> Result<String, PayloadError> {
    let n = b
        .network
        .clone()
        .ok_or_else(|| PayloadError::Shape("bitcoin requests need `network`".into()))?;
    n.parse::<btc::Network>()?;
    Ok(n)
}

/// A decoded payload, with the keys it spends from.
pub struct Decoded {
    body: Body,
    spend: SpendKeys,
    /// For a message: the key id its attestation names, which must be the request's.
    attested_key: Option<String>,
}

enum Body {
    /// EIP-1559 transaction.
    EthTx(UnsignedEip1559),
    /// PSBT.
    BtcPsbt(Box<UnsignedPsbt>),
    /// EIP-191 message.
    EthMessage(Vec<u8>),
    /// EIP-712 typed data, parsed, and its JSON.
    EthTypedData(Box<typed::Typed>, Vec<u8>),
    /// BIP-322 message, for candidate key `key`.
    BtcMessage {
        network: btc::Network,
        message: Vec<u8>,
        key: usize,
    },
}

/// The result of a signed request, for the API.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finalized {
    /// Raw signed transaction (transactions only).
    pub signed_tx: Option<Vec<u8>>,
    /// BIP-322 simple signature, base64 (Bitcoin messages only).
    pub bip322_signature: Option<String>,
}

impl Decoded {
    /// Signatures needed.
    pub fn parts(&self) -> usize {
        match &self.body {
            Body::BtcPsbt(p) => p.input_count(),
            _ => 1,
        }
    }

    /// The candidate key that signs part `i` (an Ethereum account uses its first address).
    fn key_index(&self, i: usize) -> Result<usize, PayloadError> {
        Ok(match &self.body {
            Body::BtcPsbt(p) => p.input_key(i)?,
            Body::BtcMessage { key, .. } => *key,
            Body::EthTx(_) | Body::EthMessage(_) | Body::EthTypedData(..) => 0,
        })
    }

    /// The public key that signs part `i` and its derivation path from the master key
    /// (empty for the master key itself).
    pub fn signer(&self, i: usize) -> Result<([u8; 33], Vec<u32>), PayloadError> {
        let k = self.key_index(i)?;
        let key = self.spend.keys.get(k).copied().ok_or_else(|| {
            PayloadError::Shape(format!("part {i} names key {k}, which is not known"))
        })?;
        Ok((key, self.spend.path(k)))
    }

    /// The account the payload spends from, if any.
    pub fn account(&self) -> Option<String> {
        self.spend.account_name()
    }

    /// The transaction this payload signs, to recognise it under another request id: a PSBT's
    /// unsigned txid (internal byte order), an EIP-1559 transaction's signing hash. `None` for
    /// a message.
    pub fn transaction_id(&self) -> Option<[u8; 32]> {
        match &self.body {
            Body::EthTx(t) => Some(t.signing_hash()),
            Body::BtcPsbt(p) => Some(p.txid()),
            Body::EthMessage(_) | Body::EthTypedData(..) | Body::BtcMessage { .. } => None,
        }
    }

    /// The withdrawal intent.
    pub fn intent(&self, key_id: &str) -> Result<WithdrawalIntent, PayloadError> {
        if let Some(named) = self.attested_key.as_deref().filter(|k| *k != key_id) {
            return Err(message::MessageError::Format(format!(
                "the attestation names key `{named}`, the request `{key_id}`"
            ))
            .into());
        }
        let mut intent = match &self.body {
            Body::EthTx(t) => {
                let (pubkey, _) = self.signer(0)?;
                let sender =
                    crate::eth::address_bytes(&pubkey).map_err(|_| btc::BtcError::InvalidPubkey)?;
                t.intent(key_id, &sender)?
            }
            Body::BtcPsbt(p) => p.intent(key_id)?,
            Body::EthMessage(m) => {
                message::message_intent(key_id, ChainRef::Ethereum { chain_id: 0 }, m)
            }
            Body::EthTypedData(t, json) => typed::intent(key_id, t, json),
            Body::BtcMessage {
                network,
                message: m,
                ..
            } => message::message_intent(
                key_id,
                ChainRef::Bitcoin {
                    network: network.to_string(),
                },
                m,
            ),
        };
        intent.account = self.account();
        Ok(intent)
    }

    /// The preimage signed for part `i`.
    pub fn preimage(&self, i: usize) -> Result<Preimage, PayloadError> {
        Ok(match &self.body {
            Body::EthTx(t) => Preimage::Keccak(t.signing_preimage()),
            Body::BtcPsbt(p) => Preimage::Sha256d(p.sighash_preimage(i)?),
            Body::EthMessage(m) => Preimage::Keccak(message::eip191_preimage(m)),
            Body::EthTypedData(t, _) => Preimage::Keccak(t.preimage.clone()),
            Body::BtcMessage { message: m, .. } => {
                let (pubkey, _) = self.signer(i)?;
                Preimage::Sha256d(message::bip322_sighash_preimage(m, &pubkey)?)
            }
        })
    }

    /// Assembles the output from one verified (r, s, recovery id) per part.
    pub fn finalize(&self, sigs: &[([u8; 32], [u8; 32], u8)]) -> Result<Finalized, PayloadError> {
        if sigs.len() != self.parts() {
            return Err(PayloadError::SignatureCount(self.parts(), sigs.len()));
        }
        let rs: Vec<([u8; 32], [u8; 32])> = sigs.iter().map(|(r, s, _)| (*r, *s)).collect();
        Ok(match &self.body {
            Body::EthTx(t) => Finalized {
                signed_tx: Some(t.encode_signed(rs[0].0, rs[0].1, sigs[0].2 == 1)),
                bip322_signature: None,
            },
            Body::BtcPsbt(p) => Finalized {
                signed_tx: Some(p.finalize(&rs)?),
                bip322_signature: None,
            },
            Body::EthMessage(_) | Body::EthTypedData(..) => Finalized {
                signed_tx: None,
                bip322_signature: None,
            },
            Body::BtcMessage { .. } => Finalized {
                signed_tx: None,
                bip322_signature: Some(message::bip322_simple_signature(
                    &self.signer(0)?.0,
                    &rs[0].0,
                    &rs[0].1,
                )?),
            },
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::btc::testkit::{key, three_in_two_out};
    use crate::reserves::attestation;
    use alloy_consensus::{SignableTransaction, TxEip1559};
    use alloy_primitives::{Address, Bytes, TxKind, U256};
    use bitcoin::hashes::Hash as _;

    fn eth_tx(to: TxKind, nonce: u64, value: u128) -> SignPayload {
        let tx = TxEip1559 {
            chain_id: 1,
            nonce,
            gas_limit: 100_000,
            max_fee_per_gas: 10,
            max_priority_fee_per_gas: 1,
            to,
            value: U256::from(value),
            access_list: Default::default(),
            input: Bytes::new(),
        };
        let mut out = Vec::new();
        tx.encode_for_signing(&mut out);
        SignPayload::EthTx(out)
    }

    fn psbt(p: &bitcoin::Psbt) -> SignPayload {
        SignPayload::BtcPsbt {
            network: "regtest".into(),
            psbt: p.serialize(),
        }
    }

    #[test]
    fn transaction_id_names_the_transaction_not_the_request() {
        let k = key(7);
        let p = three_in_two_out(&k);
        let id = psbt(&p).decode(&k.pubkey).unwrap().transaction_id();
        assert_eq!(id, Some(p.unsigned_tx.compute_txid().to_byte_array()));
        // Other PSBT metadata, same transaction: the same id.
        let mut annotated = p.clone();
        annotated.inputs[0].sighash_type = Some(bitcoin::EcdsaSighashType::All.into());
        assert_ne!(annotated.serialize(), p.serialize());
        let again = psbt(&annotated).decode(&k.pubkey).unwrap().transaction_id();
        assert_eq!(again, id);
        let mut other = p.clone();
        other.unsigned_tx.output[0].value = bitcoin::Amount::from_sat(119_000);
        let other = psbt(&other).decode(&k.pubkey).unwrap().transaction_id();
        assert!(other.is_some() && other != id);

        let eth = eth_tx(TxKind::Call(Address::repeat_byte(0x11)), 3, 5);
        let SignPayload::EthTx(raw) = &eth else {
            unreachable!()
        };
        let want = crate::eth::UnsignedEip1559::decode(raw)
            .unwrap()
            .signing_hash();
        let decoded = eth.decode(&k.pubkey).unwrap();
        assert_eq!(decoded.transaction_id(), Some(want));
        assert_eq!(Some(decoded.preimage(0).unwrap().digest()), Some(want));
        let next = eth_tx(TxKind::Call(Address::repeat_byte(0x11)), 4, 5);
        assert_ne!(next.decode(&k.pubkey).unwrap().transaction_id(), Some(want));

        let addr = crate::eth::address_from_pubkey(&k.pubkey).unwrap();
        let msg = attestation("k", "a", "ethereum", &addr, "s");
        let m = SignPayload::EthMessage(msg.into_bytes());
        assert_eq!(m.decode(&k.pubkey).unwrap().transaction_id(), None);
    }

    /// A creation pays its value to the address the signing key creates at that nonce.
    #[test]
    fn contract_creation_pays_the_signing_keys_create_address() {
        let k = key(7);
        let sender = Address::from(crate::eth::address_bytes(&k.pubkey).unwrap());
        let intent = eth_tx(TxKind::Create, 9, 1_000)
            .decode(&k.pubkey)
            .unwrap()
            .intent("k")
            .unwrap();
        assert_eq!(intent.payments.len(), 1);
        assert_eq!(intent.payments[0].amount, 1_000);
        assert_eq!(
            intent.payments[0].destination,
            format!("{:#x}", sender.create(9))
        );
    }

    fn message_code(p: &SignPayload, spend: &SpendKeys, key_id: &str) -> Option<&'static str> {
        match p.decode_for(spend) {
            Err(e) => Some(e.code()),
            Ok(d) => d.intent(key_id).err().map(|e| e.code()),
        }
    }

    /// Messages are proof-of-reserves attestations for the signing key, or nothing.
    #[test]
    fn only_attestations_for_the_signing_key_are_signed_as_messages() {
        let k = key(7);
        let master = SpendKeys::master(k.pubkey);
        let eth_addr = crate::eth::address_from_pubkey(&k.pubkey).unwrap();
        let btc_addr = btc::p2wpkh_address(&k.pubkey, btc::Network::Regtest).unwrap();
        let eth = |m: String| SignPayload::EthMessage(m.into_bytes());
        let btc = |m: String, address_index| SignPayload::BtcMessage {
            network: "regtest".into(),
            message: m.into_bytes(),
            address_index,
        };
        let good_eth = attestation("k", "a", "ethereum", &eth_addr, "block 100");
        let good_btc = attestation("k", "a", "regtest", &btc_addr, "block 100");
        assert_eq!(message_code(&eth(good_eth.clone()), &master, "k"), None);
        assert_eq!(message_code(&btc(good_btc.clone(), 0), &master, "k"), None);

        let hash = hex::encode([0xab; 32]);
        let other = key(9);
        let other_eth = crate::eth::address_from_pubkey(&other.pubkey).unwrap();
        let refused = [
            eth(hash.clone()),
            eth(format!("0x{hash}")),
            btc(hash, 0),
            eth("I authorise the transfer of everything".into()),
            eth(format!("{good_eth}\n")),
            eth(good_eth.replace("custody", "Custody")),
            eth(attestation("k", "a", "ethereum", &other_eth, "s")),
            eth(attestation("k", "a", "regtest", &eth_addr, "s")),
            btc(attestation("k", "a", "ethereum", &btc_addr, "s"), 0),
            btc(attestation("k", "a", "mainnet", &btc_addr, "s"), 0),
            btc(good_eth.clone(), 0),
            SignPayload::EthMessage(vec![0xff, 0xfe]),
        ];
        for p in &refused {
            assert_eq!(
                message_code(p, &master, "k"),
                Some("message.format"),
                "{p:?}"
            );
        }
        // The key the text names is the request's.
        assert_eq!(
            message_code(&eth(good_eth), &master, "other-key"),
            Some("message.format")
        );
        // An account signs only attestations naming it, each with its own address.
        let acct = SpendKeys {
            account: Some(("a".into(), 0)),
            keys: vec![k.pubkey, other.pubkey],
        };
        let second = btc::p2wpkh_address(&other.pubkey, btc::Network::Regtest).unwrap();
        let second = attestation("k", "a", "regtest", &second, "s");
        assert_eq!(message_code(&btc(second.clone(), 1), &acct, "k"), None);
        assert_eq!(
            message_code(&btc(second, 0), &acct, "k"),
            Some("message.format")
        );
        let renamed = attestation("k", "b", "regtest", &btc_addr, "s");
        assert_eq!(
            message_code(&btc(renamed, 0), &acct, "k"),
            Some("message.format")
        );
    }
}
