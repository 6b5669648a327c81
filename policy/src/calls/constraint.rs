//! Argument constraints: `eq`, `one_of`, `min`, `max`, `allowlisted` and `prefix`.
//!
//! Values are kept in one canonical text per type (lowercase 0x-hex addresses and bytes,
//! decimal integers, `true`/`false`, strings as written), normalised when the policy is
//! parsed, so a constraint compares the decoded value's text with the policy's.

use alloy_dyn_abi::DynSolValue;
use alloy_primitives::U256;
use serde::{Serialize, Serializer};

/// A bound of `min`/`max`: up to 2^256 - 1, serialised in decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Bound(pub U256);

impl Serialize for Bound {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0.to_string())
    }
}

/// The constraints on one argument; every one given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct ArgRule {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eq: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub one_of: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub min: Option<Bound>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max: Option<Bound>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub allowlisted: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

/// The canonical text of an elementary value (what `eq`, `one_of` and `prefix` compare).
pub(crate) fn plain(v: &DynSolValue) -> Option<String> {
    Some(match v {
        DynSolValue::Address(a) => format!("0x{}", hex::encode(a)),
        DynSolValue::Bool(b) => b.to_string(),
        DynSolValue::Int(i, _) => i.to_string(),
        DynSolValue::Uint(u, _) => u.to_string(),
        DynSolValue::FixedBytes(w, n) => format!("0x{}", hex::encode(&w[..(*n).min(32)])),
        DynSolValue::Bytes(b) => format!("0x{}", hex::encode(b)),
        DynSolValue::String(s) => s.clone(),
        _ => return None,
    })
}

impl ArgRule {
    /// Checks a decoded value; the error says which constraint fails and why.
    pub(crate) fn check(
        &self,
        v: &DynSolValue,
        allowlisted: &dyn Fn(&str) -> bool,
    ) -> Result<(), String> {
        let text = plain(v).ok_or_else(|| "is not an elementary value".to_string())?;
        let shown = super::decode::render(v, 80);
        if let Some(want) = &self.eq {
            if &text != want {
                return Err(format!("`{shown}` is not `{want}` (`eq`)"));
            }
        }
        if !self.one_of.is_empty() && !self.one_of.contains(&text) {
            return Err(format!(
                "`{shown}` is not one of `{}` (`one_of`)",
                self.one_of.join("`, `")
            ));
        }
        if self.min.is_some() || self.max.is_some() {
            let DynSolValue::Uint(n, _) = v else {
                return Err("`min`/`max` apply to unsigned integers only".into());
            };
            if let Some(Bound(min)) = self.min {
                if *n < min {
                    return Err(format!("`{n}` is below `{min}` (`min`)"));
                }
            }
            if let Some(Bound(max)) = self.max {
                if *n > max {
                    return Err(format!("`{n}` is above `{max}` (`max`)"));
                }
            }
        }
        if self.allowlisted {
            if !matches!(v, DynSolValue::Address(_)) {
                return Err("`allowlisted` applies to addresses only".into());
            }
            if !allowlisted(&text) {
                return Err(format!(
                    "`{text}` is not on the allowlist in force (`allowlisted`)"
                ));
            }
        }
        if let Some(prefix) = &self.prefix {
            if !text.starts_with(prefix.as_str()) {
                return Err(format!(
                    "`{shown}` does not start with `{prefix}` (`prefix`)"
                ));
            }
        }
        Ok(())
    }
}
