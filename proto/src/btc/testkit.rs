//! Test-only builders: a plain secp256k1 key standing in for the MPC key, and PSBTs spending it.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use bitcoin::absolute::LockTime;
use bitcoin::psbt::Psbt;
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, CompressedPublicKey, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness,
};
use secp256k1::{Message, SecretKey, SECP256K1};

/// A test key: the secret exists only in tests.
pub(crate) struct TestKey {
    pub sk: SecretKey,
    pub pubkey: [u8; 33],
    pub script: ScriptBuf,
}

/// A deterministic key from a one-byte seed.
pub(crate) fn key(seed: u8) -> TestKey {
    let sk = SecretKey::from_slice(&[seed; 32]).unwrap();
    let pk = CompressedPublicKey(sk.public_key(SECP256K1));
    TestKey {
        sk,
        pubkey: pk.to_bytes(),
        script: ScriptBuf::new_p2wpkh(&pk.wpubkey_hash()),
    }
}

impl TestKey {
    /// A low-s ECDSA signature over `digest`, as compact `(r, s)`.
    pub fn sign(&self, digest: [u8; 32]) -> ([u8; 32], [u8; 32]) {
        let sig = SECP256K1.sign_ecdsa(&Message::from_digest(digest), &self.sk);
        let c = sig.serialize_compact();
        (c[..32].try_into().unwrap(), c[32..].try_into().unwrap())
    }

    /// An output paying this key.
    pub fn output(&self, sat: u64) -> TxOut {
        TxOut {
            value: Amount::from_sat(sat),
            script_pubkey: self.script.clone(),
        }
    }
}

/// A funding transaction whose output 0 pays `script` `sat`; `salt` makes txids distinct.
pub(crate) fn funding_tx(script: &ScriptBuf, sat: u64, salt: u32) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::from_consensus(salt),
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: ScriptBuf::from_bytes(vec![0x51, 0x51]),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value: Amount::from_sat(sat),
            script_pubkey: script.clone(),
        }],
    }
}

/// A PSBT spending one funding output of `key` per amount in `inputs`, paying `outputs`.
/// Every input has `witness_utxo` and `non_witness_utxo` (its funding transaction), as decoding
/// requires.
pub(crate) fn spend(key: &TestKey, inputs: &[u64], outputs: Vec<TxOut>) -> Psbt {
    let funding: Vec<Transaction> = inputs
        .iter()
        .enumerate()
        .map(|(i, sat)| funding_tx(&key.script, *sat, i as u32 + 1))
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
        output: outputs,
    };
    let mut psbt = Psbt::from_unsigned_tx(tx).unwrap();
    for (input, f) in psbt.inputs.iter_mut().zip(funding) {
        input.witness_utxo = Some(f.output[0].clone());
        input.non_witness_utxo = Some(f);
    }
    psbt
}

/// `psbt` without any `non_witness_utxo`: what a wallet trusting `witness_utxo` would send.
pub(crate) fn without_prev_txs(mut psbt: Psbt) -> Psbt {
    for input in &mut psbt.inputs {
        input.non_witness_utxo = None;
    }
    psbt
}

/// The usual case: 3 inputs of `key` to one external payment plus change.
pub(crate) fn three_in_two_out(key: &TestKey) -> Psbt {
    let other = self::key(0x42);
    spend(
        key,
        &[50_000, 70_000, 30_000],
        vec![other.output(120_000), key.output(29_000)],
    )
}
