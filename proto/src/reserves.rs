//! Proof of reserves per account: a report of every address of the chosen accounts, each with a
//! threshold-signed attestation, that an auditor checks offline (`policy reserves-verify`).
//!
//! The check needs nothing but the report: each address key is re-derived from the master
//! public key and chain code along its path (so every address provably belongs to that one
//! key), each address is re-encoded from its key, the attestation text is rebuilt, and each
//! signature is verified with libsecp256k1: EIP-191 `personal_sign` for Ethereum, BIP-322
//! "simple" for Bitcoin P2WPKH.

use serde::{Deserialize, Serialize};

use crate::{btc, hd::Xpub, message, sig};

/// Report format version.
pub const REPORT_VERSION: u32 = 1;

/// The text each address signs: it names the key, the account, the chain, the address and the
/// auditor's statement (a date or a nonce), so an attestation cannot be reused elsewhere.
pub fn attestation(
    key_id: &str,
    account: &str,
    chain: &str,
    address: &str,
    statement: &str,
) -> String {
    format!(
        "{ATTESTATION_HEADER}\nkey: {key_id}\naccount: {account}\nchain: {chain}\naddress: {address}\nstatement: {statement}"
    )
}

/// The first line of every attestation.
const ATTESTATION_HEADER: &str = "custody proof of reserves";

/// The fields of an attestation text, as [`parse_attestation`] reads them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attestation {
    /// The key id.
    pub key_id: String,
    /// The account name.
    pub account: String,
    /// `ethereum`, or a Bitcoin network name.
    pub chain: String,
    /// The attesting address.
    pub address: String,
    /// The auditor's statement (one line of 1-512 bytes).
    pub statement: String,
}

/// Parses exactly the text [`attestation`] builds, and nothing else: six lines in order, each
/// field well-formed, and rebuilding the text from the fields gives the same bytes. The error
/// says what is wrong.
pub fn parse_attestation(text: &str) -> Result<Attestation, String> {
    let lines: Vec<&str> = text.split('\n').collect();
    let [header, key, account, chain, address, statement] = lines.as_slice() else {
        return Err(format!(
            "an attestation has 6 lines, this text has {}",
            lines.len()
        ));
    };
    if *header != ATTESTATION_HEADER {
        return Err(format!("the first line is not `{ATTESTATION_HEADER}`"));
    }
    let field = |line: &str, name: &str| -> Result<String, String> {
        line.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(": "))
            .map(str::to_string)
            .ok_or_else(|| format!("expected the line `{name}: …`"))
    };
    let parsed = Attestation {
        key_id: field(key, "key")?,
        account: field(account, "account")?,
        chain: field(chain, "chain")?,
        address: field(address, "address")?,
        statement: field(statement, "statement")?,
    };
    if !crate::api::valid_key_id(&parsed.key_id) {
        return Err("`key` is not a valid key id".into());
    }
    if !crate::api::valid_key_id(&parsed.account) {
        return Err("`account` is not a valid account name".into());
    }
    if parsed.chain != "ethereum" && parsed.chain.parse::<btc::Network>().is_err() {
        return Err(format!("unknown chain `{}`", parsed.chain));
    }
    let address_ok = !parsed.address.is_empty()
        && parsed.address.len() <= 100
        && parsed.address.bytes().all(|b| b.is_ascii_alphanumeric());
    if !address_ok {
        return Err("`address` is not an address".into());
    }
    let st = &parsed.statement;
    if st.trim().is_empty() || st.len() > 512 {
        return Err("`statement` is one line of 1-512 bytes".into());
    }
    let rebuilt = attestation(
        &parsed.key_id,
        &parsed.account,
        &parsed.chain,
        &parsed.address,
        &parsed.statement,
    );
    if rebuilt != text {
        return Err("the text is not in canonical form".into());
    }
    Ok(parsed)
}

/// A whole report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReservesReport {
    /// [`REPORT_VERSION`].
    pub version: u32,
    /// The key.
    pub key_id: String,
    /// Master public key (compressed, hex).
    pub master_public_key: String,
    /// Master chain code (hex).
    pub master_chain_code: String,
    /// The auditor's statement every attestation includes.
    pub statement: String,
    /// When the report was assembled (unix seconds, coordinator clock).
    pub generated_at: u64,
    /// One entry per address.
    pub entries: Vec<ReserveEntry>,
}

/// One address and its attestation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ReserveEntry {
    /// Account name.
    pub account: String,
    /// `ethereum`, or the Bitcoin network (`mainnet`, `testnet`, `signet`, `regtest`).
    pub chain: String,
    /// The address.
    pub address: String,
    /// Derivation path from the master key, e.g. `m/3/0`.
    pub path: String,
    /// The address's public key (compressed, hex).
    pub public_key: String,
    /// The attestation text that was signed.
    pub message: String,
    /// Ethereum: 65-byte `r || s || v` (v = 27 + y parity), 0x-hex, as `personal_sign` returns.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub eip191_signature: Option<String>,
    /// Bitcoin: BIP-322 simple signature (base64 witness).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bip322_signature: Option<String>,
}

/// Why a report does not verify. Each names the entry (by address) and what failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReserveError {
    /// Unsupported version.
    #[error("report version {0} is not supported (expected {REPORT_VERSION})")]
    Version(u32),
    /// Malformed master key.
    #[error("master key: {0}")]
    Master(String),
    /// One entry fails.
    #[error("entry {index} ({address}): {reason}")]
    Entry {
        /// Position in `entries`.
        index: usize,
        /// The entry's address.
        address: String,
        /// What failed.
        reason: String,
    },
}

/// Parses `m/a/i` (non-hardened indexes only).
pub fn parse_path(path: &str) -> Option<Vec<u32>> {
    let mut parts = path.split('/');
    if parts.next()? != "m" {
        return None;
    }
    parts
        .map(|p| {
            p.parse::<u32>()
                .ok()
                .filter(|i| *i < crate::hd::MAX_ACCOUNTS)
        })
        .collect()
}

/// Verifies every entry of a report; returns the number of attestations checked.
pub fn verify(report: &ReservesReport) -> Result<usize, ReserveError> {
    if report.version != REPORT_VERSION {
        return Err(ReserveError::Version(report.version));
    }
    let master_pk =
        hex::decode(&report.master_public_key).map_err(|e| ReserveError::Master(e.to_string()))?;
    let master_cc =
        hex::decode(&report.master_chain_code).map_err(|e| ReserveError::Master(e.to_string()))?;
    let master =
        Xpub::new(&master_pk, &master_cc).map_err(|e| ReserveError::Master(e.to_string()))?;
    for (index, e) in report.entries.iter().enumerate() {
        verify_entry(report, &master, e).map_err(|reason| ReserveError::Entry {
            index,
            address: e.address.clone(),
            reason,
        })?;
    }
    Ok(report.entries.len())
}

fn verify_entry(report: &ReservesReport, master: &Xpub, e: &ReserveEntry) -> Result<(), String> {
    let path = parse_path(&e.path).ok_or_else(|| format!("path `{}` is not m/a/i", e.path))?;
    let derived = master.derive(&path).map_err(|err| err.to_string())?;
    if hex::encode(derived.public_key) != e.public_key {
        return Err(format!(
            "public key is not the master key's child {}",
            e.path
        ));
    }
    let pk = derived.public_key;
    let want = attestation(
        &report.key_id,
        &e.account,
        &e.chain,
        &e.address,
        &report.statement,
    );
    if e.message != want {
        return Err("the signed message is not the attestation for this address".into());
    }
    match e.chain.as_str() {
        "ethereum" => verify_eth(&pk, e),
        network => verify_btc(&pk, network, e),
    }
}

fn verify_eth(pk: &[u8; 33], e: &ReserveEntry) -> Result<(), String> {
    let address = crate::eth::address_from_pubkey(pk).map_err(|err| err.to_string())?;
    if address != e.address {
        return Err(format!("the key's ethereum address is {address}"));
    }
    let hex_sig = e
        .eip191_signature
        .as_deref()
        .ok_or("no `eip191_signature`")?;
    let bytes = hex::decode(hex_sig.trim_start_matches("0x")).map_err(|err| err.to_string())?;
    let (r, s, v) = split_rsv(&bytes).ok_or("an eip-191 signature is 65 bytes")?;
    let checked = sig::verify(pk, &message::eip191_hash(e.message.as_bytes()), &r, &s)
        .map_err(|err| err.to_string())?;
    if v != 27 + checked.recovery_id {
        return Err("`v` does not recover the address".into());
    }
    Ok(())
}

/// `r || s || v` of a 65-byte signature.
fn split_rsv(b: &[u8]) -> Option<([u8; 32], [u8; 32], u8)> {
    let (r, rest) = b.split_first_chunk::<32>()?;
    let (s, v) = rest.split_first_chunk::<32>()?;
    match v {
        [v] => Some((*r, *s, *v)),
        _ => None,
    }
}

fn verify_btc(pk: &[u8; 33], network: &str, e: &ReserveEntry) -> Result<(), String> {
    let net: btc::Network = network
        .parse()
        .map_err(|err: btc::BtcError| err.to_string())?;
    let address = btc::p2wpkh_address(pk, net).map_err(|err| err.to_string())?;
    if address != e.address {
        return Err(format!("the key's p2wpkh address is {address}"));
    }
    let b64 = e
        .bip322_signature
        .as_deref()
        .ok_or("no `bip322_signature`")?;
    let (r, s, witness_pk) = message::parse_bip322_simple(b64).map_err(|err| err.to_string())?;
    if &witness_pk != pk {
        return Err("the bip-322 witness names another public key".into());
    }
    let sighash = message::bip322_to_sign(e.message.as_bytes(), pk)
        .and_then(|t| t.sighash())
        .map_err(|err| err.to_string())?;
    sig::verify(pk, &sighash, &r, &s).map_err(|err| err.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn paths_and_signature_shapes_parse_strictly() {
        assert_eq!(parse_path("m/3/1"), Some(vec![3, 1]));
        for bad in ["3/1", "m/3'/1", "m/2147483648", "m//1", "x/1", "m/-1"] {
            assert_eq!(parse_path(bad), None, "{bad}");
        }
        assert!(split_rsv(&[0u8; 64]).is_none());
        assert!(split_rsv(&[0u8; 66]).is_none());
        assert_eq!(split_rsv(&[1u8; 65]).map(|x| x.2), Some(1));
    }

    #[test]
    fn attestations_parse_strictly_and_round_trip() {
        let text = attestation(
            "it-key",
            "client-a",
            "regtest",
            "bcrt1qabc",
            "block 100, n 7",
        );
        let a = parse_attestation(&text).unwrap();
        assert_eq!(
            (a.key_id.as_str(), a.account.as_str(), a.chain.as_str()),
            ("it-key", "client-a", "regtest")
        );
        assert_eq!(
            (a.address.as_str(), a.statement.as_str()),
            ("bcrt1qabc", "block 100, n 7")
        );
        let eth = attestation("k", "a", "ethereum", &format!("0x{}", "ab".repeat(20)), "s");
        assert!(parse_attestation(&eth).is_ok());
        let bad = [
            String::new(),
            "proof of reserves: acme custody, 2026-11-24".into(),
            hex::encode([0xab; 32]),
            format!("{text}\n"),
            format!(" {text}"),
            text.replace("key: ", "key:"),
            text.replace("account: client-a", "account: client a"),
            text.replace("chain: regtest", "chain: litecoin"),
            text.replace("address: bcrt1qabc", "address: "),
            text.replace("address: bcrt1qabc", "address: bcrt1q abc"),
            text.replace("statement: block 100, n 7", "statement:  "),
            text.replace(
                "statement: block 100, n 7",
                &format!("statement: {}", "x".repeat(513)),
            ),
            text.replace("\naccount", "\r\naccount"),
            text.replace(
                "chain: regtest\naddress: bcrt1qabc",
                "address: bcrt1qabc\nchain: regtest",
            ),
        ];
        for b in &bad {
            assert!(parse_attestation(b).is_err(), "{b:?}");
        }
    }

    #[test]
    fn an_unknown_version_or_a_bad_master_key_is_refused() {
        let mut r = ReservesReport {
            version: 2,
            key_id: "k".into(),
            master_public_key: "02".repeat(33),
            master_chain_code: "00".repeat(32),
            statement: "s".into(),
            generated_at: 0,
            entries: vec![],
        };
        assert_eq!(verify(&r), Err(ReserveError::Version(2)));
        r.version = REPORT_VERSION;
        r.master_public_key = "zz".into();
        assert!(matches!(verify(&r), Err(ReserveError::Master(_))));
    }
}
