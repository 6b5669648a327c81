//! Per-input BIP-143 digests of a decoded PSBT, and assembling the signed transaction.

use bitcoin::consensus::encode::serialize;

use super::{p2wpkh_witness, segwit_v0_preimage, sha256d, BtcError, UnsignedPsbt};

impl UnsignedPsbt {
    /// The BIP-143 signing preimage of input `input` (P2WPKH, `SIGHASH_ALL`).
    ///
    /// The node signs `SHA256(SHA256(preimage))`: it hands the MPC library `SHA256(preimage)`,
    /// which hashes once more.
    pub fn sighash_preimage(&self, input: usize) -> Result<Vec<u8>, BtcError> {
        let amount = self.input_amount(input)?;
        segwit_v0_preimage(&self.psbt.unsigned_tx, input, self.key_of(input)?, amount)
    }

    /// `SHA256(SHA256(preimage))` of input `input`: the digest the signature commits to.
    pub fn sighash(&self, input: usize) -> Result<[u8; 32], BtcError> {
        Ok(sha256d(&self.sighash_preimage(input)?))
    }

    /// Builds the fully signed transaction from one low-s `(r, s)` per input, in input order.
    ///
    /// Each signature is verified against its input's sighash and the custody key first, so a
    /// transaction that would not validate is never returned.
    pub fn finalize(&self, sigs: &[([u8; 32], [u8; 32])]) -> Result<Vec<u8>, BtcError> {
        if sigs.len() != self.input_count() {
            return Err(BtcError::SignatureCount {
                expected: self.input_count(),
                got: sigs.len(),
            });
        }
        let mut tx = self.psbt.unsigned_tx.clone();
        for (i, sig) in sigs.iter().enumerate() {
            let witness = p2wpkh_witness(self.key_of(i)?, self.sighash(i)?, sig, i)?;
            if let Some(txin) = tx.input.get_mut(i) {
                txin.witness = witness;
            }
        }
        Ok(serialize(&tx))
    }

    /// [`UnsignedPsbt::finalize`], as lowercase hex (what `sendrawtransaction` takes).
    pub fn finalize_hex(&self, sigs: &[([u8; 32], [u8; 32])]) -> Result<String, BtcError> {
        self.finalize(sigs).map(hex::encode)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::btc::testkit::{key, three_in_two_out};
    use crate::btc::Network;
    use bitcoin::consensus::deserialize;
    use bitcoin::Transaction;

    const FLAGS: u32 = bitcoinconsensus::VERIFY_P2SH
        | bitcoinconsensus::VERIFY_DERSIG
        | bitcoinconsensus::VERIFY_NULLDUMMY
        | bitcoinconsensus::VERIFY_CHECKLOCKTIMEVERIFY
        | bitcoinconsensus::VERIFY_CHECKSEQUENCEVERIFY
        | bitcoinconsensus::VERIFY_WITNESS;

    /// Bitcoin Core's interpreter checks input `i` of `raw` spending `script` worth `sat`.
    fn core_verify(script: &[u8], sat: u64, raw: &[u8], i: usize) -> bool {
        bitcoinconsensus::verify_with_flags(script, sat, raw, None, i, FLAGS).is_ok()
    }

    #[test]
    fn signed_transaction_passes_bitcoin_core_consensus() {
        let k = key(7);
        let psbt = three_in_two_out(&k);
        let amounts: Vec<u64> = psbt
            .inputs
            .iter()
            .map(|i| i.witness_utxo.as_ref().unwrap().value.to_sat())
            .collect();
        let tx = UnsignedPsbt::decode(&psbt.serialize(), Network::Regtest, &k.pubkey).unwrap();
        let sigs: Vec<_> = (0..tx.input_count())
            .map(|i| k.sign(tx.sighash(i).unwrap()))
            .collect();
        let raw = tx.finalize(&sigs).unwrap();
        assert_eq!(tx.finalize_hex(&sigs).unwrap(), hex::encode(&raw));

        let signed: Transaction = deserialize(&raw).unwrap();
        assert_eq!(signed.compute_txid(), psbt.unsigned_tx.compute_txid());
        for (i, sat) in amounts.iter().enumerate() {
            assert_eq!(signed.input[i].witness.len(), 2);
            assert_eq!(signed.input[i].witness.nth(1).unwrap(), k.pubkey);
            assert_eq!(signed.input[i].witness.nth(0).unwrap().last(), Some(&0x01));
            assert!(core_verify(k.script.as_bytes(), *sat, &raw, i), "input {i}");
        }
        // BIP-143 commits to the amount: the same signature is invalid for another amount.
        assert!(!core_verify(k.script.as_bytes(), amounts[1] + 1, &raw, 1));
        assert!(!core_verify(k.script.as_bytes(), amounts[1] - 1, &raw, 1));
        // And to the spent script.
        assert!(!core_verify(key(9).script.as_bytes(), amounts[0], &raw, 0));
    }

    #[test]
    fn finalize_refuses_wrong_count_bad_and_high_s_signatures() {
        let k = key(7);
        let tx = UnsignedPsbt::decode(
            &three_in_two_out(&k).serialize(),
            Network::Regtest,
            &k.pubkey,
        )
        .unwrap();
        let sigs: Vec<_> = (0..3).map(|i| k.sign(tx.sighash(i).unwrap())).collect();
        assert_eq!(
            tx.finalize(&sigs[..2]).unwrap_err().code(),
            "request.signature_count"
        );
        // Signatures in the wrong order do not verify.
        let swapped = vec![sigs[1], sigs[0], sigs[2]];
        assert_eq!(
            tx.finalize(&swapped).unwrap_err(),
            BtcError::InvalidSignature(0)
        );
        // A signature by another key.
        let mut other = sigs.clone();
        other[2] = key(9).sign(tx.sighash(2).unwrap());
        assert_eq!(tx.finalize(&other).unwrap_err().code(), "signature.invalid");
        // r or s not below the curve order.
        let mut overflow = sigs.clone();
        overflow[1].1 = [0xff; 32];
        assert_eq!(
            tx.finalize(&overflow).unwrap_err().code(),
            "signature.invalid"
        );
        // The high-s twin of a valid signature: valid ECDSA, but non-standard.
        let mut high = sigs.clone();
        high[0].1 = negate_scalar(&sigs[0].1);
        assert_eq!(tx.finalize(&high).unwrap_err(), BtcError::HighS(0));
        assert_eq!(tx.sighash(3).unwrap_err().code(), "request.input_index");
    }

    /// `n - s` for the secp256k1 group order `n`.
    fn negate_scalar(s: &[u8; 32]) -> [u8; 32] {
        let sk = secp256k1::SecretKey::from_slice(s).unwrap();
        sk.negate().secret_bytes()
    }
}
