//! Sample unsigned transactions for the devnet and the tests.

use alloy_consensus::{SignableTransaction, TxEip1559};
use alloy_primitives::{Address, Bytes, TxKind, U256};
use sha3::Digest;

/// An unsigned EIP-1559 ETH transfer on Sepolia, hex with `0x`.
pub fn eth_transfer(nonce: u64, to: [u8; 20], wei: u128) -> String {
    eth_tx(nonce, to, wei, vec![])
}

/// An unsigned EIP-1559 transaction with calldata on Sepolia, hex with `0x`.
pub fn eth_tx(nonce: u64, to: [u8; 20], wei: u128, input: Vec<u8>) -> String {
    eth_tx_on(11_155_111, nonce, to, wei, input)
}

/// An unsigned EIP-1559 transaction on chain `chain_id`, hex with `0x`.
pub fn eth_tx_on(chain_id: u64, nonce: u64, to: [u8; 20], wei: u128, input: Vec<u8>) -> String {
    let tx = TxEip1559 {
        chain_id,
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

/// The devnet policy's settlement vault (`[contracts.vault]`).
pub const VAULT: [u8; 20] = [0x44; 20];

/// Calldata of `settle(bytes32 batch, address to, uint256 amount)`, the vault's settlement call,
/// laid out word by word (the nodes decode it with the ABI in their policy).
pub fn settle_calldata(batch: [u8; 32], to: [u8; 20], amount: u128) -> Vec<u8> {
    let mut data = sha3::Keccak256::digest(b"settle(bytes32,address,uint256)")[..4].to_vec();
    data.extend_from_slice(&batch);
    data.extend_from_slice(&[0u8; 12]);
    data.extend_from_slice(&to);
    data.extend_from_slice(&[0u8; 16]);
    data.extend_from_slice(&amount.to_be_bytes());
    data
}

/// An EIP-2612 `Permit` of the devnet's test token (`[typed_data.test-token-permit]`), as
/// `eth_signTypedData_v4` takes it: `owner` lets `spender` move `value` base units.
pub fn permit_typed_data(
    verifying_contract: [u8; 20],
    owner: &str,
    spender: [u8; 20],
    value: u128,
) -> serde_json::Value {
    serde_json::json!({
        "types": {
            "EIP712Domain": [
                {"name": "name", "type": "string"},
                {"name": "version", "type": "string"},
                {"name": "chainId", "type": "uint256"},
                {"name": "verifyingContract", "type": "address"}
            ],
            "Permit": [
                {"name": "owner", "type": "address"},
                {"name": "spender", "type": "address"},
                {"name": "value", "type": "uint256"},
                {"name": "nonce", "type": "uint256"},
                {"name": "deadline", "type": "uint256"}
            ]
        },
        "primaryType": "Permit",
        "domain": {
            "name": "Test Token",
            "version": "1",
            "chainId": 11_155_111,
            "verifyingContract": format!("0x{}", hex::encode(verifying_contract))
        },
        "message": {
            "owner": owner,
            "spender": format!("0x{}", hex::encode(spender)),
            "value": value.to_string(),
            "nonce": 0,
            "deadline": 4_102_444_800u64
        }
    })
}

/// An unsigned ERC-20 `transfer(to, amount)` call to `token`, hex with `0x`.
pub fn erc20_transfer(nonce: u64, token: [u8; 20], to: [u8; 20], amount: u128) -> String {
    let mut data = vec![0xa9, 0x05, 0x9c, 0xbb];
    data.extend_from_slice(&[0u8; 12]);
    data.extend_from_slice(&to);
    data.extend_from_slice(&[0u8; 16]);
    data.extend_from_slice(&amount.to_be_bytes());
    eth_tx(nonce, token, 0, data)
}

/// A regtest PSBT spending `amounts` (satoshi) from outputs paying `custody_script` to one
/// external P2WPKH output of `pay` satoshi plus `change` back to the custody script. Each spent
/// output is output 0 of a made-up funding transaction that the input carries as
/// `non_witness_utxo` (nodes require it: CVE-2020-14199), with the same output as `witness_utxo`.
pub fn btc_psbt(custody_script: &[u8], amounts: &[u64], pay: u64, change: u64) -> bitcoin::Psbt {
    let inputs: Vec<(&[u8], u64)> = amounts.iter().map(|sat| (custody_script, *sat)).collect();
    btc_psbt_from(&inputs, pay, custody_script, change)
}

/// A made-up funding transaction whose output 0 pays `script` `sat`; `salt` (the input's
/// position) makes the txids of a PSBT's inputs distinct.
pub fn funding_tx(script: &[u8], sat: u64, salt: u32) -> bitcoin::Transaction {
    use bitcoin::{
        absolute::LockTime, hashes::Hash, transaction::Version, Amount, OutPoint, ScriptBuf,
        Sequence, Transaction, TxIn, TxOut, Txid, Witness,
    };
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::new(Txid::from_byte_array([salt as u8 + 1; 32]), salt),
            script_sig: ScriptBuf::new(),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(sat),
            script_pubkey: ScriptBuf::from_bytes(script.to_vec()),
        }],
    }
}

/// A regtest PSBT spending one made-up output per `(script, satoshi)` input, paying `pay`
/// satoshi to an external P2WPKH address and `change` to `change_script`. Every input carries
/// its funding transaction ([`funding_tx`]) as `non_witness_utxo`.
pub fn btc_psbt_from(
    inputs: &[(&[u8], u64)],
    pay: u64,
    change_script: &[u8],
    change: u64,
) -> bitcoin::Psbt {
    use bitcoin::{
        absolute::LockTime, hashes::Hash, transaction::Version, Amount, OutPoint, ScriptBuf,
        Sequence, Transaction, TxIn, TxOut, WPubkeyHash, Witness,
    };
    let funding: Vec<Transaction> = inputs
        .iter()
        .enumerate()
        .map(|(k, (script, sat))| funding_tx(script, *sat, k as u32))
        .collect();
    let tx = Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: funding
            .iter()
            .map(|f| TxIn {
                previous_output: OutPoint::new(f.compute_txid(), 0),
                script_sig: ScriptBuf::new(),
                sequence: Sequence::ENABLE_RBF_NO_LOCKTIME,
                witness: Witness::new(),
            })
            .collect(),
        output: vec![
            TxOut {
                value: Amount::from_sat(pay),
                script_pubkey: ScriptBuf::new_p2wpkh(&WPubkeyHash::from_byte_array([0x22; 20])),
            },
            TxOut {
                value: Amount::from_sat(change),
                script_pubkey: ScriptBuf::from_bytes(change_script.to_vec()),
            },
        ],
    };
    let mut p = bitcoin::Psbt {
        unsigned_tx: tx,
        version: 0,
        xpub: Default::default(),
        proprietary: Default::default(),
        unknown: Default::default(),
        inputs: vec![Default::default(); inputs.len()],
        outputs: vec![Default::default(); 2],
    };
    for (input, f) in p.inputs.iter_mut().zip(funding) {
        input.witness_utxo = f.output.first().cloned();
        input.non_witness_utxo = Some(f);
    }
    p
}
