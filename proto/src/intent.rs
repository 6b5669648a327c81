//! The withdrawal intent: what a settlement transaction *does*, decoded by each node itself.
//!
//! The policy engine evaluates intents, never raw transactions. Amounts are integers in the
//! asset's base units (wei, satoshi, token units) and serialise as decimal strings so that JSON
//! consumers never round them through a float.

use serde::{Deserialize, Serialize};

/// Which chain (and which network of it) a transaction is valid on.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "chain", rename_all = "snake_case", deny_unknown_fields)]
pub enum ChainRef {
    /// An EVM chain, identified by its EIP-155 chain id.
    Ethereum {
        /// EIP-155 chain id (1 = mainnet, 11155111 = sepolia, ...).
        chain_id: u64,
    },
    /// Bitcoin, identified by network.
    Bitcoin {
        /// `mainnet`, `testnet`, `signet` or `regtest`.
        network: String,
    },
}

/// What is being moved.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Asset {
    /// The chain's native coin (ETH, BTC).
    Native,
    /// An ERC-20 token, identified by its contract address (lowercase 0x-hex).
    Erc20 {
        /// Token contract address.
        contract: String,
    },
}

impl Asset {
    /// A stable textual id used in policy files: `native` or `erc20:0x…`.
    pub fn id(&self) -> String {
        match self {
            Asset::Native => "native".to_string(),
            Asset::Erc20 { contract } => format!("erc20:{contract}"),
        }
    }
}

/// What kind of action the transaction performs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntentKind {
    /// A plain value transfer (native coin or a decoded token transfer).
    Transfer,
    /// Calldata that is not a recognised transfer; policy refuses it unless explicitly allowed.
    ContractCall,
    /// A message signature (proof of reserves), not a transaction.
    Message,
    /// EIP-712 typed data (a permit, an order); the policy's `[typed_data]` judges it.
    TypedData,
}

/// One payment: a destination and an amount in base units.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Payment {
    /// Destination address, normalised (lowercase 0x-hex for EVM, the address string for Bitcoin).
    pub destination: String,
    /// Amount in base units.
    #[serde(with = "u128_string")]
    pub amount: u128,
}

/// A decoded withdrawal: the only thing policy ever looks at.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WithdrawalIntent {
    /// The custody key being used.
    pub key_id: String,
    /// Segregated client account, if the request names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub account: Option<String>,
    /// Chain and network.
    pub chain: ChainRef,
    /// Transfer, contract call or message.
    pub kind: IntentKind,
    /// Asset moved.
    pub asset: Asset,
    /// External payments (change back to the custody key is excluded).
    pub payments: Vec<Payment>,
    /// Outputs paying back to the custody key.
    #[serde(default)]
    pub change: Vec<Payment>,
    /// Maximum fee the transaction can cost, in the chain's native base units.
    #[serde(with = "u128_string")]
    pub fee: u128,
    /// A contract call's calldata (lowercase 0x-hex, selector first), which the policy decodes
    /// with the ABI its officers signed (`[contracts]`). Absent for transfers and messages, so
    /// their canonical bytes are what they always were.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub calldata: Option<String>,
    /// EIP-712 typed data (its JSON, as the node parsed it), which the policy judges with its
    /// `[typed_data]` entries. Absent for everything else.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub typed_data: Option<String>,
}

impl WithdrawalIntent {
    /// Total of all external payments, or `None` on overflow (callers must fail closed).
    pub fn total_amount(&self) -> Option<u128> {
        self.payments
            .iter()
            .try_fold(0u128, |acc, p| acc.checked_add(p.amount))
    }

    /// Canonical bytes: deterministic JSON (struct fields in declaration order, no maps).
    pub fn canonical_bytes(&self) -> Vec<u8> {
        // Serialising a struct of strings, integers and vectors cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }
}

/// Serde helper: `u128` as a decimal string.
pub mod u128_string {
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    /// Serialise as a decimal string.
    pub fn serialize<S: Serializer>(v: &u128, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.to_string())
    }

    /// Parse a decimal string (digits only, no sign, no exponent).
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u128, D::Error> {
        let s = String::deserialize(d)?;
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(D::Error::custom(format!(
                "expected a decimal integer string, found `{s}`"
            )));
        }
        s.parse::<u128>()
            .map_err(|_| D::Error::custom(format!("amount `{s}` does not fit in 128 bits")))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn amounts_round_trip_as_strings() {
        let p = Payment {
            destination: "0xabc".into(),
            amount: u128::MAX,
        };
        let j = serde_json::to_string(&p).unwrap();
        assert!(j.contains("\"340282366920938463463374607431768211455\""));
        let back: Payment = serde_json::from_str(&j).unwrap();
        assert_eq!(back, p);
        assert!(serde_json::from_str::<Payment>(r#"{"destination":"x","amount":"-1"}"#).is_err());
        assert!(serde_json::from_str::<Payment>(r#"{"destination":"x","amount":1}"#).is_err());
    }
}
