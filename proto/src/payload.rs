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
    message, wire,
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
            PayloadError::AddressIndex(..) => "account.address_index",
            PayloadError::SignatureCount(..) => "internal",
        }
    }
}

fn strip0x(s: &str) -> &str {
    s.strip_prefix("0x").unwrap_or(s)
}

impl SignPayload {
    /// Builds a payload from an API body, checking that exactly the right fields are present.
    pub fn from_body(b: &SignRequestBody) -> Result<Self, PayloadError> {
        let shape = |m: &str| Err(PayloadError::Shape(m.to_string()));
        if b.address_index.is_some()
            && (b.account.is_none() || b.message.is_none() || b.chain != "bitcoin")
        {
            return shape("`address_index` is for bitcoin messages of an `account` only");
        }
        let msg_bytes = |m: &String| m.as_bytes().to_vec();
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
                shape("send exactly one of `unsigned_tx` (ethereum), `psbt` (bitcoin) or `message`")
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
        let body = match self {
            SignPayload::EthTx(b) => Body::EthTx(UnsignedEip1559::decode(b)?),
            SignPayload::BtcPsbt { network, psbt } => {
                let net: btc::Network = network.parse()?;
                let account = spend.account.as_ref().map(|(n, _)| n.as_str());
                Body::BtcPsbt(Box::new(UnsignedPsbt::decode_for(
                    psbt,
                    net,
                    &spend.keys,
                    account,
                )?))
            }
            SignPayload::EthMessage(m) => Body::EthMessage(m.clone()),
            SignPayload::BtcMessage {
                network,
                message,
                address_index,
            } => {
                let net: btc::Network = network.parse()?;
                let key = *address_index as usize;
                if key >= spend.keys.len() {
                    return Err(PayloadError::AddressIndex(*address_index, spend.keys.len()));
                }
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
}

enum Body {
    /// EIP-1559 transaction.
    EthTx(UnsignedEip1559),
    /// PSBT.
    BtcPsbt(Box<UnsignedPsbt>),
    /// EIP-191 message.
    EthMessage(Vec<u8>),
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
            Body::EthTx(_) | Body::EthMessage(_) => 0,
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

    /// The withdrawal intent.
    pub fn intent(&self, key_id: &str) -> Result<WithdrawalIntent, PayloadError> {
        let mut intent = match &self.body {
            Body::EthTx(t) => t.intent(key_id)?,
            Body::BtcPsbt(p) => p.intent(key_id)?,
            Body::EthMessage(m) => {
                message::message_intent(key_id, ChainRef::Ethereum { chain_id: 0 }, m)
            }
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
            Body::EthMessage(_) => Finalized {
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
