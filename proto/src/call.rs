//! A contract call as a node decoded it with the ABI of its signed policy: what the verdict
//! view, `policy eval` and `policy approve` show, so that people see what they approve.

use serde::{Deserialize, Serialize};

/// One decoded call: the contract as the policy names it, the function and its arguments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CallView {
    /// `[contracts.<name>]`, or `erc20:<asset>` / `permit2` for a built-in allowance.
    pub contract: String,
    /// The contract address (lowercase 0x-hex).
    pub address: String,
    /// The function with its named parameters, e.g. `settle(bytes32 batch, address to, uint256 amount)`.
    pub function: String,
    /// The arguments in order.
    pub args: Vec<ArgView>,
    /// Calls nested in this one (a `multicall`'s), each decoded and judged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[cfg_attr(feature = "openapi", schema(no_recursion))]
    pub inner: Vec<CallView>,
    /// The allowance this call grants, for ERC-20 `approve`/`increaseAllowance` and Permit2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowance: Option<AllowanceView>,
}

/// One decoded argument, rendered canonically: addresses and bytes as lowercase 0x-hex,
/// integers in decimal, booleans as `true`/`false`, arrays and tuples as `[a, b]` / `(a, b)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ArgView {
    /// The parameter's name in the policy's ABI (`arg<i>` when it has none).
    pub name: String,
    /// Its Solidity type.
    #[serde(rename = "type")]
    pub ty: String,
    /// Its value.
    pub value: String,
}

/// An ERC-20 allowance: `spender` may move up to `amount` of `token` from the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AllowanceView {
    /// The token's contract address.
    pub token: String,
    /// Who may spend.
    pub spender: String,
    /// The amount in base units (decimal; up to 2^256 - 1).
    pub amount: String,
    /// The amount is the type's maximum: no limit at all.
    pub unlimited: bool,
}

impl CallView {
    /// One line per call, for terminals: `vault.settle(batch=0x…, to=0x…, amount=500) at 0x…`, inner
    /// calls indented below it.
    pub fn lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.push_lines(0, &mut out);
        out
    }

    fn push_lines(&self, depth: usize, out: &mut Vec<String>) {
        let name = self.function.split('(').next().unwrap_or(&self.function);
        let args: Vec<String> = self
            .args
            .iter()
            .map(|a| format!("{}={}", a.name, a.value))
            .collect();
        let mut line = format!(
            "{}{}.{name}({}) at {}",
            "  ".repeat(depth),
            self.contract,
            args.join(", "),
            self.address
        );
        if let Some(a) = &self.allowance {
            let amount = if a.unlimited { "unlimited" } else { &a.amount };
            line.push_str(&format!(
                " -> allowance of {amount} of {} to {}",
                a.token, a.spender
            ));
        }
        out.push(line);
        for c in &self.inner {
            c.push_lines(depth + 1, out);
        }
    }
}
