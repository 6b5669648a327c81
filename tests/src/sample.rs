//! Sample unsigned transactions for the devnet and the tests.

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_primitives::{Address, Bytes, TxKind, U256};

/// An unsigned EIP-1559 ETH transfer on Sepolia, hex with `0x`.
pub fn eth_transfer(nonce: u64, to: [u8; 20], wei: u128) -> String {
    eth_tx(nonce, to, wei, vec![])
}

/// An unsigned EIP-1559 transaction with calldata, hex with `0x`.
pub fn eth_tx(nonce: u64, to: [u8; 20], wei: u128, input: Vec<u8>) -> String {
    let tx = TxEip1559 {
        chain_id: 11_155_111,
        nonce,
        gas_limit: 21_000,
        max_fee_per_gas: 20_000_000_000,
        max_priority_fee_per_gas: 1_000_000_000,
        to: TxKind::Call(Address::from(to)),
        value: U256::from(wei),
        access_list: Default::default(),
        input: Bytes::from(input),
    };
    let mut out = Vec::new();
    tx.encode_for_signing(&mut out);
    format!("0x{}", hex::encode(out))
}
