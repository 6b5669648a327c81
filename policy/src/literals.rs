//! Literal values in policy files: amounts, durations and timestamps.
//!
//! Amounts are integers in base units. TOML integers stop at 2^63, less than 10 ETH in wei,
//! so an amount may also be a string of digits (underscores allowed as separators). Floats are
//! refused: there is no floating point anywhere in the engine.

use toml::value::{Datetime, Offset};
use toml::Value;

/// Parses an amount in base units.
pub(crate) fn amount(value: &Value) -> Result<u128, String> {
    const EXPECTED: &str = "expected an amount in base units: an integer or a string of digits";
    match value {
        Value::Integer(i) => u128::try_from(*i).map_err(|_| format!("{EXPECTED}, found `{i}`")),
        Value::String(s) => digits(s).ok_or_else(|| format!("{EXPECTED}, found `\"{s}\"`")),
        other => Err(format!("{EXPECTED}, found {}", describe(other))),
    }
}

fn digits(s: &str) -> Option<u128> {
    let trimmed: String = s.chars().filter(|c| *c != '_').collect();
    let well_formed = !trimmed.is_empty()
        && trimmed.bytes().all(|b| b.is_ascii_digit())
        && !s.starts_with('_')
        && !s.ends_with('_')
        && !s.contains("__");
    if well_formed {
        trimmed.parse().ok()
    } else {
        None
    }
}

/// Parses a duration: integer seconds, or a string such as `90s`, `30m`, `48h` or `7d`.
pub(crate) fn duration(value: &Value) -> Result<u64, String> {
    const EXPECTED: &str =
        "expected a duration: seconds as an integer, or a string such as `30m`, `48h` or `7d`";
    let secs = match value {
        Value::Integer(i) => u64::try_from(*i).ok(),
        Value::String(s) => duration_str(s),
        _ => None,
    };
    secs.ok_or_else(|| format!("{EXPECTED}, found {}", describe(value)))
}

fn duration_str(s: &str) -> Option<u64> {
    // The unit is the last character, which may be multi-byte in a hostile file.
    let (unit_at, _) = s.char_indices().last()?;
    let (number, unit) = s.split_at(unit_at);
    if number.is_empty() || !number.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = number.parse().ok()?;
    let scale = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        _ => return None,
    };
    n.checked_mul(scale)
}

/// Formats seconds the way a policy file would write them.
pub(crate) fn format_duration(secs: u64) -> String {
    match secs {
        0 => "0s".to_string(),
        s if s % 3_600 == 0 => format!("{}h", s / 3_600),
        s if s % 60 == 0 => format!("{}m", s / 60),
        s => format!("{s}s"),
    }
}

/// Parses a point in time: unix seconds, or a TOML offset date-time such as
/// `2024-05-01T00:00:00Z`.
pub(crate) fn timestamp(value: &Value) -> Result<u64, String> {
    const EXPECTED: &str =
        "expected a time: unix seconds, or a date-time with an offset such as `2024-05-01T00:00:00Z`";
    let secs = match value {
        Value::Integer(i) => u64::try_from(*i).ok(),
        Value::Datetime(dt) => datetime_secs(dt),
        _ => None,
    };
    secs.ok_or_else(|| format!("{EXPECTED}, found {}", describe(value)))
}

fn datetime_secs(dt: &Datetime) -> Option<u64> {
    let (date, time, offset) = (dt.date?, dt.time?, dt.offset?);
    let days = days_from_civil(i64::from(date.year), date.month.into(), date.day.into());
    let secs_of_day =
        i64::from(time.hour) * 3_600 + i64::from(time.minute) * 60 + i64::from(time.second);
    let offset_secs = match offset {
        Offset::Z => 0,
        Offset::Custom { minutes } => i64::from(minutes) * 60,
    };
    let unix = days
        .checked_mul(86_400)?
        .checked_add(secs_of_day)?
        .checked_sub(offset_secs)?;
    u64::try_from(unix).ok()
}

/// Days since 1970-01-01 in the proleptic Gregorian calendar (H. Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Describes a TOML value in an error message.
pub(crate) fn describe(value: &Value) -> String {
    match value {
        Value::String(s) => format!("`\"{s}\"`"),
        Value::Integer(i) => format!("`{i}`"),
        Value::Float(f) => format!("the float `{f}`"),
        Value::Boolean(b) => format!("`{b}`"),
        Value::Datetime(d) => format!("`{d}`"),
        Value::Array(_) => "an array".to_string(),
        Value::Table(_) => "a table".to_string(),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    fn v(src: &str) -> Value {
        let t: toml::Table = toml::from_str(&format!("x = {src}")).unwrap();
        t["x"].clone()
    }

    #[test]
    fn amounts() {
        assert_eq!(amount(&v("0")), Ok(0));
        assert_eq!(amount(&v("\"1_000_000\"")), Ok(1_000_000));
        assert_eq!(
            amount(&v("\"340282366920938463463374607431768211455\"")),
            Ok(u128::MAX)
        );
        assert!(amount(&v("\"340282366920938463463374607431768211456\"")).is_err());
        assert!(amount(&v("-1")).is_err());
        assert!(amount(&v("1.5")).unwrap_err().contains("float"));
        assert!(amount(&v("\"1e18\"")).is_err());
        assert!(amount(&v("\"_1\"")).is_err());
        assert!(amount(&v("\"\"")).is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(duration(&v("\"48h\"")), Ok(172_800));
        // Found by the `policy_parse` fuzz target: a multi-byte last character panicked.
        for bad in ["\"1é\"", "\"é\"", "\"12€\""] {
            assert!(duration(&v(bad)).is_err(), "{bad}");
        }
        assert_eq!(duration(&v("\"30m\"")), Ok(1_800));
        assert_eq!(duration(&v("\"7d\"")), Ok(604_800));
        assert_eq!(duration(&v("90")), Ok(90));
        assert!(duration(&v("\"h\"")).is_err());
        assert!(duration(&v("\"1w\"")).is_err());
        assert!(duration(&v("\"-1h\"")).is_err());
        assert!(duration(&v("\"99999999999999999999d\"")).is_err());
        assert_eq!(format_duration(86_400), "24h");
        assert_eq!(format_duration(90), "90s");
        assert_eq!(format_duration(1_800), "30m");
    }

    #[test]
    fn timestamps() {
        assert_eq!(timestamp(&v("1970-01-01T00:00:00Z")), Ok(0));
        assert_eq!(timestamp(&v("2024-05-01T00:00:00Z")), Ok(1_714_521_600));
        assert_eq!(
            timestamp(&v("2024-05-01T02:00:00+02:00")),
            Ok(1_714_521_600)
        );
        assert_eq!(timestamp(&v("1714521600")), Ok(1_714_521_600));
        assert!(timestamp(&v("2024-05-01T00:00:00")).is_err(), "no offset");
        assert!(timestamp(&v("2024-05-01")).is_err());
        assert!(timestamp(&v("1960-01-01T00:00:00Z")).is_err());
    }
}
