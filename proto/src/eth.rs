//! Ethereum: EIP-1559 (EIP-2718 type 2) transactions, decoded and hashed by each node itself.

use alloy_consensus::{
    transaction::RlpEcdsaDecodableTx, SignableTransaction, Transaction, TxEip1559,
};
use alloy_primitives::{Address, Signature as EthSignature, TxKind, U256};

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
    /// Calldata with an ERC-20 `transfer`, `transferFrom` or `approve` selector that is not the
    /// canonical ABI encoding: a token may still execute it, so it must not pass as a mere call.
    #[error("non-canonical erc-20 `{function}` calldata: {problem}")]
    Erc20NonCanonical {
        /// The function its selector names.
        function: &'static str,
        /// What differs from the canonical encoding.
        problem: String,
    },
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
            EthTxError::Erc20NonCanonical { .. } => "tx.erc20_non_canonical",
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

/// The ERC-20 functions that move or authorise moving tokens: selector, name, and whether
/// each 32-byte argument word is an address.
const ERC20_FUNCTIONS: [([u8; 4], &str, &[bool]); 3] = [
    (ERC20_TRANSFER, "transfer", &[true, false]),
    (
        [0x23, 0xb8, 0x72, 0xdd],
        "transferFrom",
        &[true, true, false],
    ),
    ([0x09, 0x5e, 0xa7, 0xb3], "approve", &[true, false]),
];

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

    /// Decodes what the transaction does into a withdrawal intent. `sender` is the address
    /// that signs (the key's, or the account's first address): a contract creation pays its
    /// value to the address derived from it and the nonce.
    pub fn intent(&self, key_id: &str, sender: &[u8; 20]) -> Result<WithdrawalIntent, EthTxError> {
        let fee = u128::from(self.tx.gas_limit)
            .checked_mul(self.tx.max_fee_per_gas)
            .ok_or(EthTxError::AmountOverflow("gas_limit * max_fee_per_gas"))?;
        let value = u256_to_u128(self.tx.value, "value")?;
        let input = self.tx.input();
        check_erc20_canonical(input)?;
        let (kind, asset, payments) = match self.tx.to {
            // Every transaction that can move value carries it, even 0, to where it goes.
            TxKind::Create => (
                IntentKind::ContractCall,
                Asset::Native,
                vec![Payment {
                    destination: lower_hex_addr(
                        Address::from(*sender).create(self.tx.nonce).as_slice(),
                    ),
                    amount: value,
                }],
            ),
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
            calldata: match (kind, self.tx.to) {
                (IntentKind::ContractCall, TxKind::Call(_)) => {
                    Some(format!("0x{}", hex::encode(input)))
                }
                _ => None,
            },
            typed_data: None,
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

/// Refuses calldata whose selector is an ERC-20 `transfer`, `transferFrom` or `approve` but
/// whose arguments are not exactly the canonical words (no trailing bytes, clean addresses).
fn check_erc20_canonical(input: &[u8]) -> Result<(), EthTxError> {
    let Some((selector, args)) = input.split_first_chunk::<4>() else {
        return Ok(());
    };
    let Some((_, function, words)) = ERC20_FUNCTIONS.iter().find(|(s, ..)| s == selector) else {
        return Ok(());
    };
    let refuse = |problem: String| EthTxError::Erc20NonCanonical { function, problem };
    let want = 32 * words.len();
    if args.len() < want {
        return Err(refuse(format!(
            "the arguments are {} bytes, short of the {want} its {} words need",
            args.len(),
            words.len()
        )));
    }
    if args.len() > want {
        return Err(refuse(format!(
            "{} trailing bytes after its {} argument words",
            args.len() - want,
            words.len()
        )));
    }
    for (i, (word, is_address)) in args.chunks_exact(32).zip(words.iter()).enumerate() {
        if *is_address && word[..12].iter().any(|b| *b != 0) {
            return Err(refuse(format!(
                "argument {i} is an address word with dirty high bytes `0x{}`",
                hex::encode(&word[..12])
            )));
        }
    }
    Ok(())
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
    address_bytes(compressed).map(|a| lower_hex_addr(&a))
}

/// The 20-byte Ethereum address of a compressed secp256k1 public key.
pub fn address_bytes(compressed: &[u8; 33]) -> Result<[u8; 20], secp256k1::Error> {
    use sha3::{Digest, Keccak256};
    let pk = secp256k1::PublicKey::from_slice(compressed)?;
    let uncompressed = pk.serialize_uncompressed();
    let hash = Keccak256::digest(&uncompressed[1..]);
    let mut out = [0u8; 20];
    out.copy_from_slice(&hash[12..]);
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use alloy_primitives::{Address, Bytes};

    /// The signing key's address in these tests.
    const SENDER: [u8; 20] = [0x5e; 20];

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
        let intent = tx.intent("k", &SENDER).unwrap();
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
        let intent = UnsignedEip1559::decode(&raw)
            .unwrap()
            .intent("k", &SENDER)
            .unwrap();
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
        let intent = UnsignedEip1559::decode(&raw)
            .unwrap()
            .intent("k", &SENDER)
            .unwrap();
        assert_eq!(intent.kind, IntentKind::ContractCall);
    }

    fn create_tx(nonce: u64, value: u128) -> Vec<u8> {
        let tx = TxEip1559 {
            chain_id: 1,
            nonce,
            gas_limit: 1_000_000,
            max_fee_per_gas: 30_000_000_000,
            max_priority_fee_per_gas: 1_000_000_000,
            to: TxKind::Create,
            value: U256::from(value),
            access_list: Default::default(),
            input: Bytes::from(vec![0x60, 0x00, 0x60, 0x00, 0xf3]),
        };
        let mut out = Vec::new();
        tx.encode_for_signing(&mut out);
        out
    }

    /// A creation moves its value to the new contract: the intent must carry it.
    #[test]
    fn contract_creation_carries_its_value() {
        // The beacon deposit contract, created by this sender at nonce 0 (on-chain fact).
        let deployer: [u8; 20] = hex::decode("b20a608c624ca5003905aa834de7156c68b2e1d0")
            .unwrap()
            .try_into()
            .unwrap();
        let tx = UnsignedEip1559::decode(&create_tx(0, 7_000_000)).unwrap();
        let intent = tx.intent("k", &deployer).unwrap();
        assert_eq!(intent.kind, IntentKind::ContractCall);
        assert_eq!(intent.asset, Asset::Native);
        assert_eq!(
            intent.payments,
            vec![Payment {
                destination: "0x00000000219ab540356cbb839cbe05303d7705fa".into(),
                amount: 7_000_000,
            }]
        );
        // A value of 0 is still a payment; the address follows the sender and the nonce.
        let tx = UnsignedEip1559::decode(&create_tx(1, 0)).unwrap();
        let p = tx.intent("k", &deployer).unwrap().payments;
        assert_eq!(p.len(), 1);
        assert_eq!(p[0].amount, 0);
        assert_eq!(
            p[0].destination,
            "0xe33c6e89e69d085897f98e92b06ebd541d1daa99"
        );
        let other = tx.intent("k", &SENDER).unwrap().payments;
        assert_ne!(other[0].destination, p[0].destination);
    }

    fn call(selector: [u8; 4], words: &[[u8; 32]], extra: &[u8]) -> Vec<u8> {
        let mut data = selector.to_vec();
        for w in words {
            data.extend_from_slice(w);
        }
        data.extend_from_slice(extra);
        sample_tx([0x33; 20], 0, data)
    }

    fn addr_word(fill: u8) -> [u8; 32] {
        let mut w = [0u8; 32];
        w[12..].fill(fill);
        w
    }

    fn amount_word(n: u64) -> [u8; 32] {
        U256::from(n).to_be_bytes::<32>()
    }

    fn refusal(raw: &[u8]) -> EthTxError {
        UnsignedEip1559::decode(raw)
            .unwrap()
            .intent("k", &SENDER)
            .unwrap_err()
    }

    /// Padded, dirty or short ERC-20 calldata is refused instead of passing as a mere call.
    #[test]
    fn non_canonical_erc20_calldata_is_refused() {
        const FROM: [u8; 4] = [0x23, 0xb8, 0x72, 0xdd];
        const APPROVE: [u8; 4] = [0x09, 0x5e, 0xa7, 0xb3];
        let (to, amt) = (addr_word(0x22), amount_word(1234));
        let mut dirty = to;
        dirty[0] = 0x01;
        let cases = [
            (
                call(ERC20_TRANSFER, &[to, amt], &[0]),
                "transfer",
                "1 trailing bytes",
            ),
            (
                call(ERC20_TRANSFER, &[to, amt, amt], &[]),
                "transfer",
                "32 trailing bytes",
            ),
            (
                call(ERC20_TRANSFER, &[dirty, amt], &[]),
                "transfer",
                "dirty high bytes",
            ),
            (call(ERC20_TRANSFER, &[to], &[0; 31]), "transfer", "short"),
            (call(ERC20_TRANSFER, &[], &[]), "transfer", "short"),
            (
                call(FROM, &[to, to, amt], &[0; 4]),
                "transferFrom",
                "trailing",
            ),
            (
                call(FROM, &[to, dirty, amt], &[]),
                "transferFrom",
                "argument 1",
            ),
            (call(FROM, &[to, amt], &[]), "transferFrom", "short"),
            (call(APPROVE, &[dirty, amt], &[]), "approve", "argument 0"),
            (call(APPROVE, &[to, amt], &[0xff]), "approve", "trailing"),
        ];
        for (raw, function, what) in cases {
            let err = refusal(&raw);
            assert_eq!(err.code(), "tx.erc20_non_canonical", "{function}: {what}");
            let text = err.to_string();
            assert!(
                text.contains(&format!("`{function}`")) && text.contains(what),
                "{text}"
            );
        }
        // Canonical `transferFrom` and `approve` stay contract calls; `transfer` a transfer.
        for raw in [
            call(FROM, &[to, addr_word(0x44), amt], &[]),
            call(APPROVE, &[to, amt], &[]),
        ] {
            let intent = UnsignedEip1559::decode(&raw)
                .unwrap()
                .intent("k", &SENDER)
                .unwrap();
            assert_eq!(intent.kind, IntentKind::ContractCall);
        }
        let raw = call(ERC20_TRANSFER, &[to, amt], &[]);
        let intent = UnsignedEip1559::decode(&raw)
            .unwrap()
            .intent("k", &SENDER)
            .unwrap();
        assert_eq!(intent.kind, IntentKind::Transfer);
        // A high amount word is an amount, not an address: only `amount.overflow` applies.
        let raw = call(ERC20_TRANSFER, &[to, [0xff; 32]], &[]);
        assert_eq!(refusal(&raw).code(), "amount.overflow");
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
