//! `eth_signTypedData_v4` vectors from another implementation: each document in
//! `vectors/eip712.json` with the signing hash MetaMask's `@metamask/eth-sig-util` computed for
//! it (`vectors/eip712-gen.js` wrote the file). The nodes' own parser and hasher
//! (`custody_proto::typed::decode`, alloy `dyn-abi` plus this project's checks) must accept every
//! document and reach the same hash, given as an object and as the JSON string wallets pass.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use sha3::Digest;

#[test]
fn every_vector_hashes_as_eth_sig_util_does() {
    let file: serde_json::Value =
        serde_json::from_str(include_str!("vectors/eip712.json")).unwrap();
    let vectors = file["vectors"].as_array().unwrap();
    assert!(vectors.len() >= 8, "{} vectors", vectors.len());
    for v in vectors {
        let name = v["name"].as_str().unwrap();
        let doc = &v["typed_data"];
        let as_string = serde_json::Value::String(doc.to_string());
        for input in [doc, &as_string] {
            let bytes = serde_json::to_vec(input).unwrap();
            let typed = custody_proto::typed::decode(&bytes)
                .unwrap_or_else(|e| panic!("{name}: refused: {e}"));
            assert_eq!(typed.preimage.len(), 66, "{name}");
            assert_eq!(&typed.preimage[..2], &[0x19, 0x01], "{name}");
            let hash = format!(
                "0x{}",
                hex::encode(sha3::Keccak256::digest(&typed.preimage))
            );
            assert_eq!(hash, v["hash"].as_str().unwrap(), "{name}");
        }
    }
}

/// Changing any one value of a vector changes the hash: the comparison above is not passing
/// on a part of the document that the hash ignores.
#[test]
fn a_changed_value_changes_the_hash() {
    let file: serde_json::Value =
        serde_json::from_str(include_str!("vectors/eip712.json")).unwrap();
    let v = &file["vectors"][2]; // the EIP-2612 permit
    let mut doc = v["typed_data"].clone();
    doc["message"]["value"] = serde_json::json!("1000000001");
    let typed = custody_proto::typed::decode(&serde_json::to_vec(&doc).unwrap()).unwrap();
    let hash = format!(
        "0x{}",
        hex::encode(sha3::Keccak256::digest(&typed.preimage))
    );
    assert_ne!(hash, v["hash"].as_str().unwrap());
}
