//! Ethereum: EIP-1559 (EIP-2718 type 2) transactions, decoded and hashed by each node itself.

use alloy_consensus::{
    transaction::RlpEcdsaDecodableTx, SignableTransaction, Transaction, TxEip1559,
};
use alloy_primitives::{Signature as EthSignature, TxKind, U256};

use crate::intent::{Asset, ChainRef, IntentKind, Payment, WithdrawalIntent};

/// The largest unsigned transaction accepted, in bytes (calldata included).
pub const MAX_TX_BYTES: usize = 128 * 1024;

/// Why an Ethereum transaction was refused. Each variant maps to a stable API code.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EthTxError {
    /// Exactly 32 bytes: a bare digest, not a transaction.
    #[error("refusing a bare 32-byte digest: send the unsigned transaction, never its hash")]
    BareDigest,
    /// Empty input.
    #[error("the unsigned transaction is empty")]
    Empty,
    /// Over [`MAX_TX_BYTES`].
    #[error("the unsigned transaction is {0} bytes, over the {MAX_TX_BYTES}-byte limit")]
    TooLarge(usize),
    /// First byte is not `0x02`.
    #[error("unsupported transaction type `0x{0:02x}`: only EIP-1559 (type 0x02) is accepted")]
    UnsupportedType(u8),
    /// RLP did not decode.
    #[error("malformed EIP-1559 transaction: {0}")]
    Rlp(String),
    /// Bytes after the RLP list.
    #[error("{0} trailing bytes after the EIP-1559 transaction")]
    TrailingBytes(usize),
    /// Decoded, but re-encoding gives other bytes.
    #[error("non-canonical EIP-1559 encoding")]
    NonCanonical,
    /// A value does not fit the engine's integer range.
    #[error("amount overflow: {0}")]
    AmountOverflow(&'static str),
}

impl EthTxError {
    /// Stable machine code for API errors.
    pub fn code(&self) -> &'static str {
        match self {
            EthTxError::BareDigest => "request.bare_digest",
            EthTxError::Empty | EthTxError::Rlp(_) | EthTxError::TrailingBytes(_) => "tx.malformed",
            EthTxError::NonCanonical => "tx.non_canonical",
            EthTxError::TooLarge(_) => "tx.too_large",
            EthTxError::UnsupportedType(_) => "tx.unsupported_type",
            EthTxError::AmountOverflow(_) => "amount.overflow",
        }
    }
}

/// An unsigned EIP-1559 transaction that decoded canonically.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsignedEip1559 {
    tx: TxEip1559,
}

/// ERC-20 `transfer(address,uint256)` selector.
const ERC20_TRANSFER: [u8; 4] = [0xa9, 0x05, 0x9c, 0xbb];

impl UnsignedEip1559 {
    /// Decodes `0x02 || rlp([...])`, refusing anything that does not re-encode to the same bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, EthTxError> {
        match bytes.len() {
            0 => return Err(EthTxError::Empty),
            32 => return Err(EthTxError::BareDigest),
            n if n > MAX_TX_BYTES => return Err(EthTxError::TooLarge(n)),
            _ => {}
        }
        if bytes[0] != 0x02 {
            return Err(EthTxError::UnsupportedType(bytes[0]));
        }
        let mut rest = &bytes[1..];
        let tx = TxEip1559::rlp_decode(&mut rest).map_err(|e| EthTxError::Rlp(e.to_string()))?;
        if !rest.is_empty() {
            return Err(EthTxError::TrailingBytes(rest.len()));
        }
        let this = Self { tx };
        if this.signing_preimage() != bytes {
            return Err(EthTxError::NonCanonical);
        }
        Ok(this)
    }

    /// The bytes whose keccak256 is signed: `0x02 || rlp(fields)`.
    pub fn signing_preimage(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.tx.encode_for_signing(&mut out);
        out
    }

    /// keccak256 of the signing preimage.
    pub fn signing_hash(&self) -> [u8; 32] {
        self.tx.signature_hash().0
    }

    /// EIP-155 chain id.
    pub fn chain_id(&self) -> u64 {
        self.tx.chain_id
    }

    /// Decodes what the transaction does into a withdrawal intent.
    pub fn intent(&self, key_id: &str) -> Result<WithdrawalIntent, EthTxError> {
        let fee = u128::from(self.tx.gas_limit)
            .checked_mul(self.tx.max_fee_per_gas)
            .ok_or(EthTxError::AmountOverflow("gas_limit * max_fee_per_gas"))?;
        let value = u256_to_u128(self.tx.value, "value")?;
        let input = self.tx.input();
        let (kind, asset, payments) = match self.tx.to {
            TxKind::Create => (IntentKind::ContractCall, Asset::Native, vec![]),
            TxKind::Call(to) if input.is_empty() => (
                IntentKind::Transfer,
                Asset::Native,
                vec![Payment {
                    destination: lower_hex_addr(to.as_slice()),
                    amount: value,
                }],
            ),
            TxKind::Call(to) => match decode_erc20_transfer(input) {
                Some((recipient, amount)) if value == 0 => (
                    IntentKind::Transfer,
                    Asset::Erc20 {
                        contract: lower_hex_addr(to.as_slice()),
                    },
                    vec![Payment {
                        destination: recipient,
                        amount: u256_to_u128(amount, "erc20 amount")?,
                    }],
                ),
                _ => (
                    IntentKind::ContractCall,
                    Asset::Native,
                    vec![Payment {
                        destination: lower_hex_addr(to.as_slice()),
                        amount: value,
                    }],
                ),
            },
        };
        Ok(WithdrawalIntent {
            key_id: key_id.to_string(),
            account: None,
            chain: ChainRef::Ethereum {
                chain_id: self.tx.chain_id,
            },
            kind,
            asset,
            payments,
            change: vec![],
            fee,
        })
    }

    /// The raw signed transaction, EIP-2718 encoded, ready to broadcast.
    pub fn encode_signed(&self, r: [u8; 32], s: [u8; 32], y_parity: bool) -> Vec<u8> {
        let sig = EthSignature::new(U256::from_be_bytes(r), U256::from_be_bytes(s), y_parity);
        let signed = self.tx.clone().into_signed(sig);
        let mut out = Vec::new();
        signed.eip2718_encode(&mut out);
        out
    }
}

fn decode_erc20_transfer(input: &[u8]) -> Option<(String, U256)> {
    if input.len() != 4 + 64 || input[..4] != ERC20_TRANSFER {
        return None;
    }
    let addr_word = &input[4..36];
    // The address is left-padded with zeros; dirty high bytes mean it is not a clean transfer.
    if addr_word[..12].iter().any(|b| *b != 0) {
        return None;
    }
    let amount = U256::from_be_slice(&input[36..68]);
    Some((lower_hex_addr(&addr_word[12..]), amount))
}

fn u256_to_u128(v: U256, what: &'static str) -> Result<u128, EthTxError> {
    u128::try_from(v).map_err(|_| EthTxError::AmountOverflow(what))
}

fn lower_hex_addr(bytes: &[u8]) -> String {
    format!("0x{}", hex::encode(bytes))
}

/// The Ethereum address (lowercase 0x-hex) of a compressed secp256k1 public key.
pub fn address_from_pubkey(compressed: &[u8; 33]) -> Result<String, secp256k1::Error> {
    use sha3::{Digest, Keccak256};
    let pk = secp256k1::PublicKey::from_slice(compressed)?;
    let uncompressed = pk.serialize_uncompressed();
    let hash = Keccak256::digest(&uncompressed[1..]);
    Ok(lower_hex_addr(&hash[12..]))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use alloy_primitives::{Address, Bytes};

    pub(crate) fn sample_tx(to: [u8; 20], value: u128, input: Vec<u8>) -> Vec<u8> {
        let tx = TxEip1559 {
            chain_id: 11155111,
            nonce: 7,
            gas_limit: 21_000,
            max_fee_per_gas: 30_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            to: TxKind::Call(Address::from(to)),
            value: U256::from(value),
            access_list: Default::default(),
            input: Bytes::from(input),
        };
        let mut out = Vec::new();
        tx.encode_for_signing(&mut out);
        out
    }

    #[test]
    fn native_transfer_round_trips_and_decodes_to_intent() {
        let raw = sample_tx([0x11; 20], 5, vec![]);
        let tx = UnsignedEip1559::decode(&raw).unwrap();
        assert_eq!(tx.signing_preimage(), raw);
        let intent = tx.intent("k").unwrap();
        assert_eq!(intent.kind, IntentKind::Transfer);
        assert_eq!(intent.payments[0].amount, 5);
        assert_eq!(
            intent.payments[0].destination,
            format!("0x{}", "11".repeat(20))
        );
        assert_eq!(intent.fee, 21_000 * 30_000_000_000);
    }

    #[test]
    fn erc20_transfer_decodes_real_recipient_and_amount() {
        let mut data = ERC20_TRANSFER.to_vec();
        data.extend_from_slice(&[0u8; 12]);
        data.extend_from_slice(&[0x22; 20]);
        data.extend_from_slice(&U256::from(1234u64).to_be_bytes::<32>());
        let raw = sample_tx([0x33; 20], 0, data);
        let intent = UnsignedEip1559::decode(&raw).unwrap().intent("k").unwrap();
        assert_eq!(intent.kind, IntentKind::Transfer);
        assert_eq!(intent.asset.id(), format!("erc20:0x{}", "33".repeat(20)));
        assert_eq!(
            intent.payments[0].destination,
            format!("0x{}", "22".repeat(20))
        );
        assert_eq!(intent.payments[0].amount, 1234);
    }

    #[test]
    fn other_calldata_is_a_contract_call() {
        let raw = sample_tx([0x33; 20], 0, vec![1, 2, 3, 4]);
        let intent = UnsignedEip1559::decode(&raw).unwrap().intent("k").unwrap();
        assert_eq!(intent.kind, IntentKind::ContractCall);
    }

    #[test]
    fn refusals_have_stable_codes() {
        assert_eq!(
            UnsignedEip1559::decode(&[0xab; 32]).unwrap_err().code(),
            "request.bare_digest"
        );
        assert_eq!(
            UnsignedEip1559::decode(&[]).unwrap_err().code(),
            "tx.malformed"
        );
        assert_eq!(
            UnsignedEip1559::decode(&[0x01, 0xc0]).unwrap_err().code(),
            "tx.unsupported_type"
        );
        let mut raw = sample_tx([0x11; 20], 5, vec![]);
        raw.push(0);
        assert_eq!(
            UnsignedEip1559::decode(&raw).unwrap_err().code(),
            "tx.malformed"
        );
        let raw = sample_tx([0x11; 20], 5, vec![]);
        assert!(UnsignedEip1559::decode(&raw[..raw.len() - 3]).is_err());
    }

    #[test]
    fn address_matches_known_vector() {
        // Private key 1 -> G; its address is well known.
        let g = secp256k1::PublicKey::from_secret_key_global(
            &secp256k1::SecretKey::from_slice(&[[0u8; 31].as_slice(), &[1]].concat()).unwrap(),
        );
        assert_eq!(
            address_from_pubkey(&g.serialize()).unwrap(),
            "0x7e5f4552091a69125d5dfcb7b8c2659029395bdf"
        );
    }
}
