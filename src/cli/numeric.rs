//! Numeric flags, read alike in every command: a refusal says the same words for the same kind
//! of number, and clap puts the flag and the value before them (`invalid value '0' for
//! '--limit <LIMIT>': …`).

/// What every count is told: a batch, a limit, a token budget of 0 leaves nothing to do.
const COUNT: &str = "expected a whole number, 1 or more";
const WHOLE: &str = "expected a whole number, 0 or more";

/// `--batch-size`, `--limit`, `--max-new-tokens`.
pub fn count(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err(format!("{COUNT}: 0 leaves nothing to do")),
        Ok(n) => Ok(n),
        Err(e) => Err(refusal(text, COUNT, usize::MAX as u128, e)),
    }
}

/// `--seed` and run ids.
pub fn whole(text: &str) -> Result<u64, String> {
    text.parse::<u64>().map_err(|e| refusal(text, WHOLE, u64::MAX as u128, e))
}

/// `--temperature`: 0 is greedy, above it samples.
pub fn temperature(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(t) if t.is_finite() && t >= 0.0 => Ok(t),
        _ => Err("expected a number, 0 or more (0 is greedy decoding)".into()),
    }
}

/// What a size is told.
const SIZE: &str =
    "expected a size such as 600MB, 1.5GB or 2GiB (units: B, kB, MB, GB, TB, KiB, MiB, GiB, TiB)";

/// `--kv-budget`: a number of bytes with a unit, decimal (MB = 10⁶) or binary (MiB = 2²⁰).
pub fn bytes(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = (&t[..split], t[split..].trim());
    let scale: u64 = match unit.to_ascii_lowercase().as_str() {
        "b" => 1,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        "" => return Err(format!("{SIZE}: give a unit")),
        _ => return Err(SIZE.to_string()),
    };
    let value: f64 = number.parse().map_err(|_| SIZE.to_string())?;
    let bytes = value * scale as f64;
    if !bytes.is_finite() || bytes >= u64::MAX as f64 {
        return Err(format!("{SIZE}: {text} is too large"));
    }
    match bytes.round() as u64 {
        0 => Err(format!("{SIZE}: 0 leaves no room for any cache")),
        b => Ok(b),
    }
}

/// The expectation, and what is wrong when the text is a number all the same.
fn refusal(text: &str, expected: &str, max: u128, e: std::num::ParseIntError) -> String {
    use std::num::IntErrorKind;
    match e.kind() {
        IntErrorKind::PosOverflow => format!("{expected}, at most {max}"),
        _ if text.starts_with('-') && text[1..].parse::<u128>().is_ok() => {
            format!("{expected}: negative numbers mean nothing here")
        }
        _ => expected.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_seeds_and_temperatures_are_refused_alike() {
        assert_eq!(count("16"), Ok(16));
        assert_eq!(
            count("0").unwrap_err(),
            "expected a whole number, 1 or more: 0 leaves nothing to do"
        );
        assert_eq!(
            count("-2").unwrap_err(),
            "expected a whole number, 1 or more: negative numbers mean nothing here"
        );
        assert_eq!(count("1.5").unwrap_err(), COUNT);
        assert_eq!(count("").unwrap_err(), COUNT);
        assert!(count("99999999999999999999999").unwrap_err().contains("at most"));
        assert_eq!(whole("0"), Ok(0));
        assert_eq!(
            whole("-1").unwrap_err(),
            "expected a whole number, 0 or more: negative numbers mean nothing here"
        );
        assert_eq!(temperature("0.7"), Ok(0.7));
        for bad in ["-0.5", "nan", "inf", "warm"] {
            assert!(temperature(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sizes_take_decimal_and_binary_units() {
        assert_eq!(bytes("600MB"), Ok(600_000_000));
        assert_eq!(bytes("1.5 GB"), Ok(1_500_000_000));
        assert_eq!(bytes("2GiB"), Ok(2 << 30));
        assert_eq!(bytes("512mib"), Ok(512 << 20));
        assert_eq!(bytes("4096B"), Ok(4096));
        assert_eq!(bytes("600").unwrap_err(), format!("{SIZE}: give a unit"));
        assert_eq!(bytes("0MB").unwrap_err(), format!("{SIZE}: 0 leaves no room for any cache"));
        for bad in ["-5MB", "MB", "1.2.3GB", "5 parsecs", "1e3MB", ""] {
            assert!(bytes(bad).is_err(), "{bad}");
        }
        assert!(bytes("99999999999TB").unwrap_err().contains("too large"));
    }
}
