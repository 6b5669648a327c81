//! Decoding and checking a BIP-174 PSBT that spends the custody key's P2WPKH outputs.

use std::collections::BTreeSet;

use bitcoin::psbt::Psbt;
use bitcoin::{CompressedPublicKey, ScriptBuf};

use super::{custody_key, destination, BtcError, Network, MAX_MONEY_SAT, MAX_PSBT_BYTES};
use crate::intent::{Asset, ChainRef, IntentKind, Payment, WithdrawalIntent};

/// `SIGHASH_ALL`, the only sighash type signed.
const SIGHASH_ALL: u32 = 0x01;

/// A PSBT whose every input is a checked P2WPKH output of the custody key.
///
/// Construct it only through [`UnsignedPsbt::decode`]: every digest and the intent are then
/// computed from what the node itself decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnsignedPsbt {
    pub(super) psbt: Psbt,
    pub(super) network: Network,
    /// The keys the inputs may spend (the master key, or an account's address keys).
    pub(super) keys: Vec<CompressedPublicKey>,
    /// Their P2WPKH scripts, in the same order.
    scripts: Vec<ScriptBuf>,
    /// For each input, the index into `keys` of the key it spends.
    input_keys: Vec<usize>,
    /// Sum of the inputs minus sum of the outputs, checked at decode.
    fee: u64,
}

impl UnsignedPsbt {
    /// Decodes a binary BIP-174 PSBT and checks every input against the custody key.
    ///
    /// The encoding must be canonical (re-serialising it gives the same bytes), so that every
    /// node and every audit record see one and the same PSBT.
    pub fn decode(
        bytes: &[u8],
        network: Network,
        custody_pubkey: &[u8; 33],
    ) -> Result<Self, BtcError> {
        Self::decode_for(bytes, network, &[*custody_pubkey], None)
    }

    /// Decodes a PSBT whose every input must spend one of `pubkeys` (an account's address
    /// keys, named `account` in errors; or the master key alone).
    pub fn decode_for(
        bytes: &[u8],
        network: Network,
        pubkeys: &[[u8; 33]],
        account: Option<&str>,
    ) -> Result<Self, BtcError> {
        match bytes.len() {
            0 => return Err(BtcError::Malformed("the psbt is empty".into())),
            32 => return Err(BtcError::BareDigest),
            n if n > MAX_PSBT_BYTES => return Err(BtcError::TooLarge(n)),
            _ => {}
        }
        let keys = pubkeys
            .iter()
            .map(custody_key)
            .collect::<Result<Vec<_>, _>>()?;
        let psbt = Psbt::deserialize(bytes).map_err(|e| BtcError::Malformed(e.to_string()))?;
        if psbt.serialize() != bytes {
            return Err(BtcError::NonCanonical);
        }
        let scripts: Vec<ScriptBuf> = keys
            .iter()
            .map(|k| ScriptBuf::new_p2wpkh(&k.wpubkey_hash()))
            .collect();
        let (fee, input_keys) = check(&psbt, &scripts, account)?;
        Ok(Self {
            psbt,
            network,
            keys,
            scripts,
            input_keys,
            fee,
        })
    }

    /// Decodes a base64 PSBT (the usual text form), then as [`UnsignedPsbt::decode`].
    pub fn decode_base64(
        s: &str,
        network: Network,
        custody_pubkey: &[u8; 33],
    ) -> Result<Self, BtcError> {
        use bitcoin::base64::{engine::general_purpose::STANDARD, Engine};
        // 4 base64 characters carry 3 bytes: refuse before allocating.
        if s.len() / 4 * 3 > MAX_PSBT_BYTES + 3 {
            return Err(BtcError::TooLarge(s.len() / 4 * 3));
        }
        let bytes = STANDARD
            .decode(s.trim())
            .map_err(|e| BtcError::Malformed(format!("invalid base64: {e}")))?;
        Self::decode(&bytes, network, custody_pubkey)
    }

    /// Re-serialises the PSBT (BIP-174 binary).
    pub fn encode(&self) -> Vec<u8> {
        self.psbt.serialize()
    }

    /// Number of inputs, hence of signatures `finalize` needs.
    pub fn input_count(&self) -> usize {
        self.psbt.inputs.len()
    }

    /// The network the addresses in the intent are rendered for.
    pub fn network(&self) -> Network {
        self.network
    }

    /// The fee in satoshi: inputs minus outputs.
    pub fn fee_sat(&self) -> u64 {
        self.fee
    }

    /// The unsigned transaction's txid, in internal byte order (segwit: signatures leave it
    /// unchanged, so it names the transaction before and after signing).
    pub fn txid(&self) -> [u8; 32] {
        use bitcoin::hashes::Hash as _;
        self.psbt.unsigned_tx.compute_txid().to_byte_array()
    }

    /// What the transaction does: payments to others, change back to the custody script, fee.
    pub fn intent(&self, key_id: &str) -> Result<WithdrawalIntent, BtcError> {
        let (change, payments): (Vec<_>, Vec<_>) = self
            .psbt
            .unsigned_tx
            .output
            .iter()
            .partition(|out| self.scripts.contains(&out.script_pubkey));
        let to_payment = |out: &bitcoin::TxOut| Payment {
            destination: destination(&out.script_pubkey, self.network),
            amount: u128::from(out.value.to_sat()),
        };
        Ok(WithdrawalIntent {
            key_id: key_id.to_string(),
            account: None,
            chain: ChainRef::Bitcoin {
                network: self.network.as_str().to_string(),
            },
            kind: IntentKind::Transfer,
            asset: Asset::Native,
            payments: payments.into_iter().map(to_payment).collect(),
            change: change.into_iter().map(to_payment).collect(),
            fee: u128::from(self.fee),
            calldata: None,
            typed_data: None,
        })
    }

    /// The index (into the keys given at decode) of the key input `index` spends.
    pub fn input_key(&self, index: usize) -> Result<usize, BtcError> {
        self.input_keys
            .get(index)
            .copied()
            .ok_or(BtcError::InputIndex {
                index,
                count: self.input_count(),
            })
    }

    /// The key input `index` spends.
    pub(super) fn key_of(&self, index: usize) -> Result<&CompressedPublicKey, BtcError> {
        let k = self.input_key(index)?;
        self.keys
            .get(k)
            .ok_or_else(|| BtcError::Bug(format!("input {index} names key {k}")))
    }

    /// The amount of input `index`, from its checked `witness_utxo`.
    pub(super) fn input_amount(&self, index: usize) -> Result<bitcoin::Amount, BtcError> {
        self.psbt
            .inputs
            .get(index)
            .and_then(|i| i.witness_utxo.as_ref())
            .map(|u| u.value)
            .ok_or(BtcError::InputIndex {
                index,
                count: self.input_count(),
            })
    }
}

/// Every check on the decoded PSBT; returns the fee and the key each input spends.
fn check(
    psbt: &Psbt,
    scripts: &[ScriptBuf],
    account: Option<&str>,
) -> Result<(u64, Vec<usize>), BtcError> {
    let tx = &psbt.unsigned_tx;
    if tx.input.is_empty() {
        return Err(BtcError::NoInputs);
    }
    if tx.output.is_empty() {
        return Err(BtcError::NoOutputs);
    }
    let mut seen = BTreeSet::new();
    let mut inputs_sum = 0u64;
    let mut input_keys = Vec::with_capacity(tx.input.len());
    for (i, (txin, input)) in tx.input.iter().zip(&psbt.inputs).enumerate() {
        if !seen.insert(txin.previous_output) {
            return Err(BtcError::DuplicateInput(i));
        }
        if !input.partial_sigs.is_empty()
            || input.final_script_witness.is_some()
            || input.final_script_sig.is_some()
            || input.tap_key_sig.is_some()
            || !input.tap_script_sigs.is_empty()
        {
            return Err(BtcError::AlreadySigned(i));
        }
        if let Some(ty) = input.sighash_type {
            if ty.to_u32() != SIGHASH_ALL {
                return Err(BtcError::SighashNotAll {
                    input: i,
                    sighash: ty.to_u32(),
                });
            }
        }
        let utxo = input
            .witness_utxo
            .as_ref()
            .ok_or(BtcError::MissingUtxo(i))?;
        let Some(k) = scripts.iter().position(|s| *s == utxo.script_pubkey) else {
            let script = hex::encode(utxo.script_pubkey.as_bytes());
            return Err(match account {
                Some(account) => BtcError::InputNotInAccount {
                    input: i,
                    account: account.to_string(),
                    script,
                },
                None => BtcError::InputNotOwned { input: i, script },
            });
        };
        input_keys.push(k);
        // BIP-143 commits to each input's own amount only: without the previous transaction, two
        // requests lying about different inputs of one transaction would each look cheap, and
        // their signatures splice into a transaction paying a huge fee (CVE-2020-14199).
        let prev = input
            .non_witness_utxo
            .as_ref()
            .ok_or(BtcError::MissingPrevTx(i))?;
        if prev.compute_txid() != txin.previous_output.txid {
            return Err(BtcError::UtxoMismatch {
                input: i,
                what: "txid",
            });
        }
        let vout = usize::try_from(txin.previous_output.vout).unwrap_or(usize::MAX);
        match prev.output.get(vout) {
            None => {
                return Err(BtcError::UtxoMismatch {
                    input: i,
                    what: "vout",
                })
            }
            Some(out) if out.value != utxo.value => {
                return Err(BtcError::UtxoMismatch {
                    input: i,
                    what: "amount",
                })
            }
            Some(out) if out.script_pubkey != utxo.script_pubkey => {
                return Err(BtcError::UtxoMismatch {
                    input: i,
                    what: "script",
                })
            }
            Some(_) => {}
        }
        inputs_sum = add_money(inputs_sum, utxo.value.to_sat(), "sum of inputs")?;
    }
    let mut outputs_sum = 0u64;
    for out in &tx.output {
        outputs_sum = add_money(outputs_sum, out.value.to_sat(), "sum of outputs")?;
    }
    let fee = inputs_sum
        .checked_sub(outputs_sum)
        .ok_or(BtcError::OutputsExceedInputs {
            inputs: inputs_sum,
            outputs: outputs_sum,
        })?;
    Ok((fee, input_keys))
}

/// Adds two amounts, refusing any value or sum over 21 million BTC.
fn add_money(acc: u64, sat: u64, what: &'static str) -> Result<u64, BtcError> {
    if sat > MAX_MONEY_SAT {
        return Err(BtcError::AmountOverflow("an amount over 21 million btc"));
    }
    acc.checked_add(sat)
        .filter(|sum| *sum <= MAX_MONEY_SAT)
        .ok_or(BtcError::AmountOverflow(what))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;
    use crate::btc::testkit::{key, spend, three_in_two_out, without_prev_txs};
    use bitcoin::psbt::PsbtSighashType;
    use bitcoin::{Amount, EcdsaSighashType, OutPoint, TxOut};

    const NET: Network = Network::Regtest;

    fn decode(psbt: &Psbt, pubkey: &[u8; 33]) -> Result<UnsignedPsbt, BtcError> {
        UnsignedPsbt::decode(&psbt.serialize(), NET, pubkey)
    }

    fn code(psbt: &Psbt, pubkey: &[u8; 33]) -> &'static str {
        decode(psbt, pubkey).unwrap_err().code()
    }

    #[test]
    fn decodes_to_intent_with_payments_change_and_fee() {
        let k = key(7);
        let other = key(0x42);
        let psbt = three_in_two_out(&k);
        let tx = decode(&psbt, &k.pubkey).unwrap();
        assert_eq!(tx.input_count(), 3);
        let intent = tx.intent("key-1").unwrap();
        assert_eq!(intent.key_id, "key-1");
        assert_eq!(
            intent.chain,
            ChainRef::Bitcoin {
                network: "regtest".into()
            }
        );
        assert_eq!(intent.kind, IntentKind::Transfer);
        assert_eq!(intent.asset, Asset::Native);
        let other_addr = crate::btc::p2wpkh_address(&other.pubkey, NET).unwrap();
        let own_addr = crate::btc::p2wpkh_address(&k.pubkey, NET).unwrap();
        assert_eq!(
            intent.payments,
            vec![Payment {
                destination: other_addr,
                amount: 120_000
            }]
        );
        assert_eq!(
            intent.change,
            vec![Payment {
                destination: own_addr,
                amount: 29_000
            }]
        );
        assert_eq!(intent.fee, 150_000 - 149_000);
        // Mainnet renders the same script as a `bc1` address.
        let main = UnsignedPsbt::decode(&psbt.serialize(), Network::Mainnet, &k.pubkey).unwrap();
        let dest = &main.intent("k").unwrap().payments[0].destination;
        assert!(dest.starts_with("bc1q"), "{dest}");
    }

    #[test]
    fn script_without_address_is_rendered_as_hex() {
        let k = key(7);
        let op_return = TxOut {
            value: Amount::ZERO,
            script_pubkey: ScriptBuf::new_op_return([0xde, 0xad]),
        };
        let psbt = spend(&k, &[10_000], vec![op_return, k.output(9_000)]);
        let intent = decode(&psbt, &k.pubkey).unwrap().intent("k").unwrap();
        assert_eq!(intent.payments[0].destination, "script:6a02dead");
        assert_eq!(intent.payments[0].amount, 0);
        assert_eq!(intent.fee, 1_000);
    }

    #[test]
    fn decode_encode_round_trips_and_base64_agrees() {
        let k = key(7);
        let built = [
            spend(&k, &[1, 2, 3], vec![k.output(5)]),
            spend(&k, &[4, 5, 6], vec![k.output(5), k.output(7)]),
            three_in_two_out(&k),
        ];
        for psbt in built {
            let bytes = psbt.serialize();
            let tx = UnsignedPsbt::decode(&bytes, NET, &k.pubkey).unwrap();
            assert_eq!(tx.encode(), bytes);
            let b64 = psbt.to_string();
            let from_text = UnsignedPsbt::decode_base64(&b64, NET, &k.pubkey).unwrap();
            assert_eq!(from_text, tx);
        }
        let err = UnsignedPsbt::decode_base64("cHNidP8*", NET, &k.pubkey).unwrap_err();
        assert_eq!(err.code(), "psbt.malformed");
    }

    #[test]
    fn sighash_other_than_all_is_refused() {
        let k = key(7);
        let refused = [
            EcdsaSighashType::None,
            EcdsaSighashType::Single,
            EcdsaSighashType::AllPlusAnyoneCanPay,
            EcdsaSighashType::NonePlusAnyoneCanPay,
            EcdsaSighashType::SinglePlusAnyoneCanPay,
        ];
        for ty in refused {
            let mut psbt = three_in_two_out(&k);
            psbt.inputs[1].sighash_type = Some(PsbtSighashType::from(ty));
            let err = decode(&psbt, &k.pubkey).unwrap_err();
            assert_eq!(err.code(), "psbt.sighash_not_all", "{ty:?}");
            assert_eq!(
                err,
                BtcError::SighashNotAll {
                    input: 1,
                    sighash: ty as u32
                }
            );
        }
        let mut psbt = three_in_two_out(&k);
        psbt.inputs[0].sighash_type = Some(PsbtSighashType::from(EcdsaSighashType::All));
        assert!(decode(&psbt, &k.pubkey).is_ok());
    }

    #[test]
    fn input_not_owned_or_without_utxo_is_refused() {
        let k = key(7);
        let stranger = key(9);
        let psbt = three_in_two_out(&k);
        let err = decode(&psbt, &stranger.pubkey).unwrap_err();
        assert_eq!(err.code(), "psbt.input_not_owned");
        let mut psbt = three_in_two_out(&k);
        psbt.inputs[2].witness_utxo = Some(stranger.output(30_000));
        psbt.inputs[2].non_witness_utxo = None;
        assert_eq!(code(&psbt, &k.pubkey), "psbt.input_not_owned");
        let mut psbt = three_in_two_out(&k);
        psbt.inputs[0].witness_utxo = None;
        assert_eq!(code(&psbt, &k.pubkey), "psbt.missing_utxo");
    }

    /// The segwit fee attack: `witness_utxo` understates an amount that the previous
    /// transaction proves.
    #[test]
    fn witness_utxo_contradicting_non_witness_utxo_is_refused() {
        let k = key(7);
        let mut psbt = three_in_two_out(&k);
        psbt.inputs[1].witness_utxo = Some(k.output(69_000));
        let err = decode(&psbt, &k.pubkey).unwrap_err();
        assert_eq!(err.code(), "psbt.utxo_mismatch");
        assert_eq!(
            err,
            BtcError::UtxoMismatch {
                input: 1,
                what: "amount"
            }
        );
        let mut psbt = three_in_two_out(&k);
        let swapped = psbt.inputs[0].non_witness_utxo.clone();
        psbt.inputs[1].non_witness_utxo = swapped;
        assert_eq!(code(&psbt, &k.pubkey), "psbt.utxo_mismatch");
        let mut psbt = three_in_two_out(&k);
        let mut prev = psbt.inputs[1].non_witness_utxo.clone().unwrap();
        prev.output[0].script_pubkey = key(9).script;
        psbt.unsigned_tx.input[1].previous_output = OutPoint::new(prev.compute_txid(), 0);
        psbt.inputs[1].non_witness_utxo = Some(prev);
        assert_eq!(
            decode(&psbt, &k.pubkey).unwrap_err(),
            BtcError::UtxoMismatch {
                input: 1,
                what: "script"
            }
        );
    }

    /// CVE-2020-14199: `witness_utxo` alone is never trusted; every input must carry the
    /// previous transaction that proves its amount.
    #[test]
    fn psbt_without_prev_tx_is_refused() {
        let k = key(7);
        let err = decode(&without_prev_txs(three_in_two_out(&k)), &k.pubkey).unwrap_err();
        assert_eq!(err, BtcError::MissingPrevTx(0));
        assert_eq!(err.code(), "psbt.missing_prev_tx");
        let mut psbt = three_in_two_out(&k);
        psbt.inputs[1].non_witness_utxo = None;
        let err = decode(&psbt, &k.pubkey).unwrap_err();
        assert_eq!(err, BtcError::MissingPrevTx(1));
        let text = err.to_string();
        assert!(
            text.contains("input 1") && text.contains("previous transaction"),
            "{text}"
        );
        // Two requests for one transaction, each understating another input, without the
        // previous transactions: both refused, so no pair of signatures can be spliced.
        for lie in [0, 1] {
            let mut psbt = without_prev_txs(three_in_two_out(&k));
            psbt.inputs[lie].witness_utxo = Some(k.output(1_000));
            assert_eq!(
                code(&psbt, &k.pubkey),
                "psbt.missing_prev_tx",
                "lie on {lie}"
            );
        }
        assert!(decode(&three_in_two_out(&k), &k.pubkey).is_ok());
    }

    #[test]
    fn outputs_over_inputs_and_overflow_are_refused() {
        let k = key(7);
        let psbt = spend(&k, &[1_000, 2_000], vec![k.output(3_001)]);
        let err = decode(&psbt, &k.pubkey).unwrap_err();
        assert_eq!(err.code(), "amount.overflow");
        assert_eq!(
            err,
            BtcError::OutputsExceedInputs {
                inputs: 3_000,
                outputs: 3_001
            }
        );
        let psbt = spend(&k, &[u64::MAX, 1], vec![k.output(1)]);
        assert_eq!(code(&psbt, &k.pubkey), "amount.overflow");
        let psbt = spend(&k, &[MAX_MONEY_SAT, 1], vec![k.output(1)]);
        assert_eq!(code(&psbt, &k.pubkey), "amount.overflow");
        let psbt = spend(&k, &[5], vec![k.output(u64::MAX), k.output(2)]);
        assert_eq!(code(&psbt, &k.pubkey), "amount.overflow");
    }

    #[test]
    fn signed_inputs_are_refused() {
        let k = key(7);
        let mut psbt = three_in_two_out(&k);
        psbt.inputs[0].final_script_witness = Some(bitcoin::Witness::from_slice(&[[1u8]]));
        assert_eq!(code(&psbt, &k.pubkey), "psbt.already_signed");
        let mut psbt = three_in_two_out(&k);
        let sig = bitcoin::ecdsa::Signature::sighash_all(
            secp256k1::SECP256K1.sign_ecdsa(&secp256k1::Message::from_digest([1; 32]), &k.sk),
        );
        let pk = bitcoin::PublicKey::from_slice(&k.pubkey).unwrap();
        psbt.inputs[2].partial_sigs.insert(pk, sig);
        assert_eq!(code(&psbt, &k.pubkey), "psbt.already_signed");
    }

    #[test]
    fn garbage_truncated_and_digests_are_refused() {
        let k = key(7);
        let bytes = three_in_two_out(&k).serialize();
        for cut in [1, 5, 6, 40, bytes.len() / 2, bytes.len() - 1] {
            let err = UnsignedPsbt::decode(&bytes[..cut], NET, &k.pubkey).unwrap_err();
            assert_eq!(err.code(), "psbt.malformed", "cut at {cut}");
        }
        let err = UnsignedPsbt::decode(&[0xab; 32], NET, &k.pubkey).unwrap_err();
        assert_eq!(err.code(), "request.bare_digest");
        for garbage in [&b""[..], b"psbt", b"not a psbt at all", &[0xff; 100]] {
            let err = UnsignedPsbt::decode(garbage, NET, &k.pubkey).unwrap_err();
            assert_eq!(err.code(), "psbt.malformed");
        }
        let mut trailing = bytes.clone();
        trailing.push(0);
        assert!(UnsignedPsbt::decode(&trailing, NET, &k.pubkey).is_err());
        let huge = vec![0u8; MAX_PSBT_BYTES + 1];
        let err = UnsignedPsbt::decode(&huge, NET, &k.pubkey).unwrap_err();
        assert_eq!(err.code(), "psbt.too_large");
    }

    #[test]
    fn empty_and_duplicate_inputs_are_refused() {
        let k = key(7);
        // A transaction without inputs is ambiguous with the segwit marker: refused either way.
        let psbt = spend(&k, &[], vec![k.output(1)]);
        let no_inputs = code(&psbt, &k.pubkey);
        assert!(
            ["psbt.no_inputs", "psbt.malformed"].contains(&no_inputs),
            "{no_inputs}"
        );
        let psbt = spend(&k, &[10], vec![]);
        assert_eq!(code(&psbt, &k.pubkey), "psbt.no_outputs");
        let mut psbt = spend(&k, &[10, 10], vec![k.output(15)]);
        psbt.unsigned_tx.input[1].previous_output = psbt.unsigned_tx.input[0].previous_output;
        assert_eq!(code(&psbt, &k.pubkey), "psbt.duplicate_input");
    }
}
