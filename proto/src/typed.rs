//! EIP-712 typed data, as `eth_signTypedData_v4` takes it: each node parses the JSON, checks it
//! is well formed and unambiguous, and computes the signed preimage
//! `0x19 0x01 ‖ domainSeparator ‖ hashStruct(message)` itself (alloy `dyn-abi`).

use alloy_dyn_abi::{DynSolType, DynSolValue, TypedData};

/// The largest typed-data document accepted, in bytes of JSON.
pub const MAX_TYPED_DATA_BYTES: usize = 64 * 1024;
/// The longest array in a message.
pub const MAX_ARRAY: usize = 256;
/// The deepest nesting of structs and arrays in a message.
pub const MAX_DEPTH: usize = 8;

/// The domain fields EIP-712 defines, in the order of `EIP712Domain`.
const DOMAIN_FIELDS: [&str; 5] = ["name", "version", "chainId", "verifyingContract", "salt"];

/// Why typed data was refused. Every variant is the API code `typed_data.malformed`.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TypedDataError {
    /// Over [`MAX_TYPED_DATA_BYTES`].
    #[error("typed data of {0} bytes is over the {MAX_TYPED_DATA_BYTES}-byte limit")]
    TooLarge(usize),
    /// Not `eth_signTypedData_v4` JSON, an unknown or cyclic type, a value that does not fit.
    #[error("typed data does not parse: {0}")]
    Parse(String),
    /// A domain field EIP-712 does not define, or an `EIP712Domain` type that disagrees with it.
    #[error("typed data domain: {0}")]
    Domain(String),
    /// A field the type does not declare, an array too long or a message nested too deep.
    #[error("typed data message: {0}")]
    Message(String),
}

impl TypedDataError {
    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        "typed_data.malformed"
    }
}

/// Typed data that parsed, with the 66-byte preimage of its signing hash.
#[derive(Debug, Clone)]
pub struct Typed {
    /// The parsed document.
    pub data: TypedData,
    /// `0x19 0x01 ‖ domainSeparator ‖ hashStruct(message)`.
    pub preimage: Vec<u8>,
}

/// Parses and checks `eth_signTypedData_v4` JSON.
pub fn decode(bytes: &[u8]) -> Result<Typed, TypedDataError> {
    if bytes.len() > MAX_TYPED_DATA_BYTES {
        return Err(TypedDataError::TooLarge(bytes.len()));
    }
    let json: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| TypedDataError::Parse(e.to_string()))?;
    // `eth_signTypedData_v4` clients often pass the document as a JSON string.
    let json = match json {
        serde_json::Value::String(s) => {
            serde_json::from_str(&s).map_err(|e| TypedDataError::Parse(e.to_string()))?
        }
        other => other,
    };
    check_domain(&json)?;
    let data: TypedData =
        serde_json::from_value(json.clone()).map_err(|e| TypedDataError::Parse(e.to_string()))?;
    if data.primary_type == "EIP712Domain" {
        return Err(TypedDataError::Parse(
            "the primary type is `EIP712Domain`: that signs a domain, not a message".into(),
        ));
    }
    let value = data
        .coerce()
        .map_err(|e| TypedDataError::Parse(e.to_string()))?;
    let message = json.get("message").unwrap_or(&serde_json::Value::Null);
    exact(&value, message, 0, &data.primary_type)?;
    let hash_struct = data
        .hash_struct()
        .map_err(|e| TypedDataError::Parse(e.to_string()))?;
    let mut preimage = vec![0x19, 0x01];
    preimage.extend_from_slice(data.domain.separator().as_slice());
    preimage.extend_from_slice(hash_struct.as_slice());
    Ok(Typed { data, preimage })
}

/// The domain names only EIP-712's fields, and an `EIP712Domain` type, when given, declares
/// exactly the fields present (else a wallet and this node could hash different domains).
fn check_domain(json: &serde_json::Value) -> Result<(), TypedDataError> {
    let Some(domain) = json.get("domain").and_then(|d| d.as_object()) else {
        return Err(TypedDataError::Domain("no `domain` object".into()));
    };
    if let Some(k) = domain.keys().find(|k| !DOMAIN_FIELDS.contains(&k.as_str())) {
        return Err(TypedDataError::Domain(format!(
            "`{k}` is not an EIP-712 domain field"
        )));
    }
    let present: Vec<&str> = DOMAIN_FIELDS
        .into_iter()
        .filter(|f| domain.contains_key(*f))
        .collect();
    if let Some(declared) = json
        .pointer("/types/EIP712Domain")
        .and_then(|t| t.as_array())
    {
        let names: Vec<&str> = declared
            .iter()
            .filter_map(|f| f.get("name").and_then(|n| n.as_str()))
            .collect();
        if names != present {
            return Err(TypedDataError::Domain(format!(
                "`EIP712Domain` declares {names:?}, the domain has {present:?}"
            )));
        }
    }
    Ok(())
}

/// Every object of the message has exactly its type's fields; arrays and nesting are bounded.
fn exact(
    v: &DynSolValue,
    json: &serde_json::Value,
    depth: usize,
    at: &str,
) -> Result<(), TypedDataError> {
    if depth > MAX_DEPTH {
        return Err(TypedDataError::Message(format!(
            "`{at}` is nested deeper than {MAX_DEPTH} levels"
        )));
    }
    match v {
        DynSolValue::CustomStruct {
            prop_names, tuple, ..
        } => {
            let obj = json
                .as_object()
                .ok_or_else(|| TypedDataError::Message(format!("`{at}` is not an object")))?;
            if let Some(extra) = obj.keys().find(|k| !prop_names.contains(k)) {
                return Err(TypedDataError::Message(format!(
                    "`{at}` has a field `{extra}` its type does not declare"
                )));
            }
            for (name, field) in prop_names.iter().zip(tuple) {
                let inner = obj.get(name).unwrap_or(&serde_json::Value::Null);
                exact(field, inner, depth + 1, &format!("{at}.{name}"))?;
            }
            Ok(())
        }
        DynSolValue::Array(items) | DynSolValue::FixedArray(items) => {
            if items.len() > MAX_ARRAY {
                return Err(TypedDataError::Message(format!(
                    "`{at}` has {} elements, over {MAX_ARRAY}",
                    items.len()
                )));
            }
            let arr = json
                .as_array()
                .ok_or_else(|| TypedDataError::Message(format!("`{at}` is not an array")))?;
            for (i, (item, j)) in items.iter().zip(arr).enumerate() {
                exact(item, j, depth + 1, &format!("{at}[{i}]"))?;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The intent of typed data: no payments (a permit's allowance is counted by the policy, which
/// reads the document), on the domain's chain (0 when the domain names none).
pub fn intent(key_id: &str, t: &Typed, json: &[u8]) -> crate::intent::WithdrawalIntent {
    use crate::intent::{Asset, ChainRef, IntentKind, WithdrawalIntent};
    let chain_id = t
        .data
        .domain
        .chain_id
        .and_then(|c| u64::try_from(c).ok())
        .unwrap_or(0);
    WithdrawalIntent {
        key_id: key_id.to_string(),
        account: None,
        chain: ChainRef::Ethereum { chain_id },
        kind: IntentKind::TypedData,
        asset: Asset::Native,
        payments: vec![],
        change: vec![],
        fee: 0,
        calldata: None,
        typed_data: Some(String::from_utf8_lossy(json).into_owned()),
    }
}

/// The declared type of a message field, for display (`uint256`, `Person`, `Person[]`).
pub fn type_name(t: &DynSolType) -> String {
    match t {
        DynSolType::CustomStruct { name, .. } => name.clone(),
        DynSolType::Array(inner) => format!("{}[]", type_name(inner)),
        DynSolType::FixedArray(inner, n) => format!("{}[{n}]", type_name(inner)),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    use super::*;

    /// The example of EIP-712 itself, with the signing hash the EIP's reference implementation
    /// (`Example.js`) prints.
    pub const MAIL: &str = r#"{
      "types": {
        "EIP712Domain": [
          {"name": "name", "type": "string"},
          {"name": "version", "type": "string"},
          {"name": "chainId", "type": "uint256"},
          {"name": "verifyingContract", "type": "address"}
        ],
        "Person": [{"name": "name", "type": "string"}, {"name": "wallet", "type": "address"}],
        "Mail": [
          {"name": "from", "type": "Person"},
          {"name": "to", "type": "Person"},
          {"name": "contents", "type": "string"}
        ]
      },
      "primaryType": "Mail",
      "domain": {
        "name": "Ether Mail",
        "version": "1",
        "chainId": 1,
        "verifyingContract": "0xCcCCccccCCCCcCCCCCCcCcCccCcCCCcCcccccccC"
      },
      "message": {
        "from": {"name": "Cow", "wallet": "0xCD2a3d9F938E13CD947Ec05AbC7FE734Df8DD826"},
        "to": {"name": "Bob", "wallet": "0xbBbBBBBbbBBBbbbBbbBbbbbBBbBbbbbBbBbbBBbB"},
        "contents": "Hello, Bob!"
      }
    }"#;

    fn digest(t: &Typed) -> String {
        use sha3::Digest as _;
        hex::encode(sha3::Keccak256::digest(&t.preimage))
    }

    #[test]
    fn the_eip_712_example_hashes_as_the_reference_implementation_does() {
        let t = decode(MAIL.as_bytes()).unwrap();
        assert_eq!(
            digest(&t),
            "be609aee343fb3c4b28e1df9e632fca64fcfaede20f02e86244efddf30957bd2"
        );
        assert_eq!(t.preimage.len(), 66);
    }

    #[test]
    fn malformed_typed_data_is_refused_with_a_reason() {
        let cases: [(&str, &str, &str); 6] = [
            (
                r#""contents": "Hello, Bob!""#,
                r#""contents": "Hello, Bob!", "bcc": "Eve""#,
                "field `bcc` its type does not declare",
            ),
            (
                r#""contents": "Hello, Bob!""#,
                r#""x": 1"#,
                "does not parse",
            ),
            (
                r#""primaryType": "Mail""#,
                r#""primaryType": "Parcel""#,
                "does not parse",
            ),
            (
                r#"{"name": "wallet", "type": "address"}]"#,
                r#"{"name": "wallet", "type": "address"}, {"name": "boss", "type": "Mail"}]"#,
                "does not parse",
            ),
            (
                r#""version": "1","#,
                r#""version": "1", "color": "red","#,
                "not an EIP-712 domain field",
            ),
            (
                r#"{"name": "version", "type": "string"},"#,
                "",
                "`EIP712Domain` declares",
            ),
        ];
        for (from, to, want) in cases {
            assert!(MAIL.contains(from), "{from}");
            let text = MAIL.replacen(from, to, 1);
            let e = decode(text.as_bytes()).unwrap_err();
            assert!(e.to_string().contains(want), "{to}: {e}");
            assert_eq!(e.code(), "typed_data.malformed");
        }
        let huge = vec![b' '; MAX_TYPED_DATA_BYTES + 1];
        assert!(matches!(decode(&huge), Err(TypedDataError::TooLarge(_))));
    }

    #[test]
    fn long_arrays_are_refused() {
        let items: Vec<String> = (0..=MAX_ARRAY).map(|i| i.to_string()).collect();
        let text = format!(
            r#"{{"types": {{"EIP712Domain": [{{"name": "chainId", "type": "uint256"}}], "Batch": [{{"name": "ids", "type": "uint256[]"}}]}},
            "primaryType": "Batch", "domain": {{"chainId": 1}}, "message": {{"ids": [{}]}}}}"#,
            items.join(",")
        );
        let e = decode(text.as_bytes()).unwrap_err();
        assert!(e.to_string().contains("over 256"), "{e}");
    }
}
