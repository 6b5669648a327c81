//! Chain references and destination addresses as written in policy files.
//!
//! Addresses are validated for the chain they belong to and normalised, so that the allowlist
//! and the denylist compare them byte for byte: EVM addresses become lowercase 0x-hex (a mixed
//! case address must carry a valid EIP-55 checksum), bech32 addresses become lowercase and
//! base58 addresses are kept as written after their checksum is verified.

use proto::{btc::Network, intent::ChainRef};
use sha2::{Digest, Sha256};
use sha3::Keccak256;

/// What a chain reference may be: the Bitcoin networks are the API's ([`Network::ALL`]), so a
/// policy cannot name a network that no request can carry.
fn expected() -> String {
    let networks: Vec<&str> = Network::ALL.iter().map(|n| n.as_str()).collect();
    format!(
        "expected `ethereum:<chain id>` or `bitcoin:<{}>`",
        networks.join("|")
    )
}

/// Parses `ethereum:<chain id>` or `bitcoin:<network>`.
pub(crate) fn parse_chain(s: &str) -> Result<ChainRef, String> {
    match s.split_once(':') {
        Some(("ethereum", id)) => match id.parse::<u64>() {
            Ok(chain_id) if chain_id > 0 && !id.starts_with('0') => {
                Ok(ChainRef::Ethereum { chain_id })
            }
            // EIP-191 messages are not bound to any chain: their intent carries chain id 0.
            Ok(0) if id == "0" => Ok(ChainRef::Ethereum { chain_id: 0 }),
            _ => Err(format!(
                "{}, found `{s}`: the chain id must be a positive integer (or 0 for EIP-191 messages)",
                expected()
            )),
        },
        Some(("bitcoin", net)) => match net.parse::<Network>() {
            Ok(network) => Ok(ChainRef::Bitcoin {
                network: network.as_str().to_string(),
            }),
            Err(_) => Err(format!(
                "{}, found `{s}`: the API signs for no bitcoin network `{net}`",
                expected()
            )),
        },
        _ => Err(format!("{}, found `{s}`", expected())),
    }
}

/// The policy-file spelling of a chain.
pub(crate) fn chain_name(chain: &ChainRef) -> String {
    match chain {
        ChainRef::Ethereum { chain_id } => format!("ethereum:{chain_id}"),
        ChainRef::Bitcoin { network } => format!("bitcoin:{network}"),
    }
}

struct BitcoinParams {
    hrp: &'static str,
    p2pkh: u8,
    p2sh: u8,
}

fn bitcoin_params(network: &str) -> Option<BitcoinParams> {
    let (hrp, p2pkh, p2sh) = match network.parse::<Network>().ok()? {
        Network::Mainnet => ("bc", 0x00, 0x05),
        Network::Testnet | Network::Signet => ("tb", 0x6f, 0xc4),
        Network::Regtest => ("bcrt", 0x6f, 0xc4),
    };
    Some(BitcoinParams { hrp, p2pkh, p2sh })
}

/// Validates an address for `chain` and returns its normalised form.
pub(crate) fn normalise(chain: &ChainRef, address: &str) -> Result<String, String> {
    match chain {
        ChainRef::Ethereum { .. } => evm(address),
        ChainRef::Bitcoin { network } => {
            let params = bitcoin_params(network)
                .ok_or_else(|| format!("unknown bitcoin network `{network}`"))?;
            bitcoin(&params, address)
        }
    }
}

fn evm(address: &str) -> Result<String, String> {
    let hex_part = address
        .strip_prefix("0x")
        .filter(|h| h.len() == 40 && h.bytes().all(|b| b.is_ascii_hexdigit()))
        .ok_or_else(|| {
            format!("malformed ethereum address `{address}`: expected 0x and 40 hex digits")
        })?;
    let lower = hex_part.to_ascii_lowercase();
    let mixed = hex_part != lower && hex_part != hex_part.to_ascii_uppercase();
    if mixed && eip55(&lower) != hex_part {
        return Err(format!(
            "ethereum address `{address}` has an invalid EIP-55 checksum"
        ));
    }
    Ok(format!("0x{lower}"))
}

fn eip55(lower: &str) -> String {
    let hash = Keccak256::digest(lower.as_bytes());
    lower
        .chars()
        .enumerate()
        .map(|(i, c)| {
            let nibble = (hash[i / 2] >> (if i % 2 == 0 { 4 } else { 0 })) & 0x0f;
            if c.is_ascii_alphabetic() && nibble >= 8 {
                c.to_ascii_uppercase()
            } else {
                c
            }
        })
        .collect()
}

fn bitcoin(params: &BitcoinParams, address: &str) -> Result<String, String> {
    let lower = address.to_ascii_lowercase();
    if lower.starts_with(&format!("{}1", params.hrp)) {
        if address != lower && address != address.to_ascii_uppercase() {
            return Err(format!("malformed bitcoin address `{address}`: mixed case"));
        }
        segwit(params.hrp, &lower)
            .map(|()| lower.clone())
            .map_err(|why| format!("malformed bitcoin address `{address}`: {why}"))
    } else {
        base58check(address)
            .filter(|v| v.len() == 21 && (v[0] == params.p2pkh || v[0] == params.p2sh))
            .map(|_| address.to_string())
            .ok_or_else(|| {
                format!(
                    "malformed bitcoin address `{address}`: expected a `{}1…` segwit address or a base58check address of this network",
                    params.hrp
                )
            })
    }
}

const BECH32_CHARSET: &[u8] = b"qpzry9x8gf2tvdw0s3jn54khce6mua7l";

fn polymod(values: &[u8]) -> u32 {
    const GEN: [u32; 5] = [
        0x3b6a_57b2,
        0x2650_8e6d,
        0x1ea1_19fa,
        0x3d42_33dd,
        0x2a14_62b3,
    ];
    let mut chk: u32 = 1;
    for v in values {
        let top = chk >> 25;
        chk = ((chk & 0x01ff_ffff) << 5) ^ u32::from(*v);
        for (i, g) in GEN.iter().enumerate() {
            if (top >> i) & 1 == 1 {
                chk ^= g;
            }
        }
    }
    chk
}

/// Checks a lowercase segwit address: bech32 for v0, bech32m for v1+, BIP-173/350 lengths.
fn segwit(hrp: &str, address: &str) -> Result<(), &'static str> {
    let data_part = address.get(hrp.len() + 1..).ok_or("too short")?;
    if address.len() > 90 || data_part.len() < 6 + 1 {
        return Err("wrong length");
    }
    let data: Vec<u8> = data_part
        .bytes()
        .map(|c| BECH32_CHARSET.iter().position(|x| *x == c).map(|p| p as u8))
        .collect::<Option<_>>()
        .ok_or("invalid bech32 character")?;
    let mut values: Vec<u8> = hrp.bytes().map(|b| b >> 5).collect();
    values.push(0);
    values.extend(hrp.bytes().map(|b| b & 31));
    values.extend(&data);
    let version = data[0];
    let constant = if version == 0 { 1 } else { 0x2bc8_30a3 };
    if polymod(&values) != constant {
        return Err("bad checksum");
    }
    let program = convert_bits(&data[1..data.len() - 6]).ok_or("bad padding")?;
    let ok_len = match version {
        0 => program.len() == 20 || program.len() == 32,
        1..=16 => (2..=40).contains(&program.len()),
        _ => false,
    };
    if ok_len {
        Ok(())
    } else {
        Err("wrong witness version or program length")
    }
}

fn convert_bits(data: &[u8]) -> Option<Vec<u8>> {
    let (mut acc, mut bits, mut out) = (0u32, 0u32, Vec::new());
    for v in data {
        acc = (acc << 5) | u32::from(*v);
        bits += 5;
        while bits >= 8 {
            bits -= 8;
            out.push(((acc >> bits) & 0xff) as u8);
        }
    }
    (bits < 5 && (acc << (8 - bits)) & 0xff == 0).then_some(out)
}

/// Decodes base58check and returns the payload without its checksum.
fn base58check(s: &str) -> Option<Vec<u8>> {
    const ALPHABET: &[u8] = b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz";
    if s.is_empty() || s.len() > 64 {
        return None;
    }
    let mut bytes: Vec<u8> = Vec::new();
    for c in s.bytes() {
        let mut carry = ALPHABET.iter().position(|a| *a == c)? as u32;
        for b in bytes.iter_mut().rev() {
            carry += u32::from(*b) * 58;
            *b = (carry & 0xff) as u8;
            carry >>= 8;
        }
        while carry > 0 {
            bytes.insert(0, (carry & 0xff) as u8);
            carry >>= 8;
        }
    }
    let zeros = s.bytes().take_while(|c| *c == b'1').count();
    let mut full = vec![0u8; zeros];
    full.extend(bytes);
    let split = full.len().checked_sub(4)?;
    let (payload, checksum) = full.split_at(split);
    let digest = Sha256::digest(Sha256::digest(payload));
    (digest[..4] == *checksum).then(|| payload.to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn btc(net: &str) -> ChainRef {
        ChainRef::Bitcoin {
            network: net.into(),
        }
    }

    #[test]
    fn chains_parse_and_print() {
        assert_eq!(
            parse_chain("ethereum:1"),
            Ok(ChainRef::Ethereum { chain_id: 1 })
        );
        assert_eq!(parse_chain("bitcoin:mainnet"), Ok(btc("mainnet")));
        assert_eq!(
            parse_chain("ethereum:0"),
            Ok(ChainRef::Ethereum { chain_id: 0 })
        );
        for bad in [
            "ethereum:00",
            "ethereum:01",
            "ethereum:x",
            "bitcoin:moon",
            "bitcoin:testnet4",
            "bitcoin:Mainnet",
            "solana:1",
            "ethereum",
        ] {
            assert!(parse_chain(bad).is_err(), "{bad}");
        }
        assert_eq!(chain_name(&btc("signet")), "bitcoin:signet");
        // Exactly the API's networks: each one parses, and the error names them all.
        for n in proto::btc::Network::ALL {
            let name = format!("bitcoin:{}", n.as_str());
            assert_eq!(parse_chain(&name), Ok(btc(n.as_str())));
        }
        let err = parse_chain("bitcoin:testnet4").err().unwrap_or_default();
        assert!(
            err.contains("`bitcoin:<mainnet|testnet|signet|regtest>`")
                && err.contains("`testnet4`"),
            "{err}"
        );
    }

    #[test]
    fn evm_addresses() {
        let eth = ChainRef::Ethereum { chain_id: 1 };
        let good = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAed";
        assert_eq!(normalise(&eth, good), Ok(good.to_ascii_lowercase()));
        assert!(normalise(&eth, &good.to_ascii_lowercase()).is_ok());
        let bad_checksum = "0x5aAeb6053F3E94C9b9A09f33669435E7Ef1BeAeD";
        assert!(
            normalise(&eth, bad_checksum).is_err(),
            "a bad checksum is refused"
        );
        assert!(normalise(&eth, "0x1234").is_err());
        assert!(normalise(&eth, "5aaeb6053f3e94c9b9a09f33669435e7ef1beaed").is_err());
    }

    #[test]
    fn bitcoin_addresses() {
        let main = btc("mainnet");
        for ok in [
            "BC1QW508D6QEJXTDG4Y5R3ZARVARY0C5XW7KV8F3T4",
            "bc1p5d7rjq7g6rdk2yhzks9smlaqtedr4dekq08ge8ztwac72sfr9rusxg3297",
            "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2",
            "3J98t1WpEZ73CNmQviecrnyiWrnqRhWNLy",
        ] {
            assert!(normalise(&main, ok).is_ok(), "{ok}");
        }
        for bad in [
            "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5",
            "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN3",
            "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx",
            "bc1zw508d6qejxtdg4y5r3zarvaryvqyzf3du",
        ] {
            assert!(normalise(&main, bad).is_err(), "{bad}");
        }
        assert!(normalise(
            &btc("testnet"),
            "tb1qw508d6qejxtdg4y5r3zarvary0c5xw7kxpjzsx"
        )
        .is_ok());
    }
}
