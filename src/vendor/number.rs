//! Integer parsing for annotation fields and Kubernetes quantities. Everything here comes
//! from outside the process, so every conversion is checked and nothing can panic.

use super::{snippet, DecodeError};

/// Whether a string looks like a (possibly signed) run of decimal digits; used to tell an
/// overflowing number apart from text that is not a number at all.
fn is_integer_literal(s: &str) -> bool {
    let digits = s.strip_prefix(['+', '-']).unwrap_or(s);
    !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// Strict parse: annotation fields HAMi itself writes with `%d`, where anything but an i32
/// means the annotation is corrupt.
pub(crate) fn parse_i32(field: &'static str, raw: &str) -> Result<i32, DecodeError> {
    let s = raw.trim();
    match s.parse::<i64>() {
        Ok(v) => i32::try_from(v).map_err(|_| overflow(field, raw)),
        Err(_) if is_integer_literal(s) => Err(overflow(field, raw)),
        Err(_) => Err(DecodeError::BadNumber {
            field,
            value: snippet(raw),
        }),
    }
}

/// Lenient parse for legacy CSV registrations: the Go backend turned unparsable numbers
/// into 0, which we keep; a well-formed number that does not fit an i32 is still an error
/// (Go silently wrapped it).
pub(crate) fn parse_i32_or_zero(field: &'static str, raw: &str) -> Result<i32, DecodeError> {
    match parse_i32(field, raw) {
        Ok(v) => Ok(v),
        Err(DecodeError::BadNumber { .. }) => Ok(0),
        Err(e) => Err(e),
    }
}

/// Go's `strconv.ParseBool`, which is what HAMi and the Go backend used for health.
pub(crate) fn parse_go_bool(raw: &str) -> Option<bool> {
    match raw {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

pub(crate) fn overflow(field: &'static str, raw: &str) -> DecodeError {
    DecodeError::Overflow {
        field,
        value: snippet(raw),
    }
}

/// Longest mantissa we accept; anything longer cannot be an i64 and would only cost time.
const MAX_MANTISSA_DIGITS: usize = 38;

/// Parses a Kubernetes quantity (`4`, `1k`, `2Ki`, `500m`, `1e3`) as an integer, like Go's
/// `Quantity.AsInt64`: `Ok(None)` when the value is well formed but not a whole number.
pub(crate) fn parse_quantity(field: &'static str, raw: &str) -> Result<Option<i64>, DecodeError> {
    let bad = || DecodeError::BadNumber {
        field,
        value: snippet(raw),
    };
    let s = raw.trim();
    let (negative, rest) = match s.as_bytes().first() {
        Some(b'-') => (true, &s[1..]),
        Some(b'+') => (false, &s[1..]),
        _ => (false, s),
    };
    let number_end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let (number, suffix) = rest.split_at(number_end);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() {
        return Err(bad());
    }
    if frac_part.contains('.') {
        return Err(bad());
    }
    let (decimal_exp, binary_exp): (i64, u32) = match suffix {
        "" => (0, 0),
        "n" => (-9, 0),
        "u" => (-6, 0),
        "m" => (-3, 0),
        "k" => (3, 0),
        "M" => (6, 0),
        "G" => (9, 0),
        "T" => (12, 0),
        "P" => (15, 0),
        "E" => (18, 0),
        "Ki" => (0, 10),
        "Mi" => (0, 20),
        "Gi" => (0, 30),
        "Ti" => (0, 40),
        "Pi" => (0, 50),
        "Ei" => (0, 60),
        _ => {
            let exp = suffix
                .strip_prefix(['e', 'E'])
                .filter(|e| is_integer_literal(e))
                .ok_or_else(bad)?;
            // Exponents this large either overflow or leave a fraction; clamp to keep maths small.
            let exp = exp
                .parse::<i64>()
                .unwrap_or(if exp.starts_with('-') { -100 } else { 100 });
            (exp.clamp(-100, 100), 0)
        }
    };
    let digits = format!("{int_part}{frac_part}");
    let digits = digits.trim_start_matches('0');
    if digits.is_empty() {
        return Ok(Some(0));
    }
    if digits.len() > MAX_MANTISSA_DIGITS {
        return Err(overflow(field, raw));
    }
    let mantissa: i128 = digits.parse().map_err(|_| bad())?;
    let frac_len = i64::try_from(frac_part.len()).unwrap_or(i64::MAX);
    let exp10 = decimal_exp.saturating_sub(frac_len);
    let mut value = mantissa
        .checked_mul(1i128 << binary_exp)
        .ok_or_else(|| overflow(field, raw))?;
    if exp10 >= 0 {
        for _ in 0..exp10 {
            value = value.checked_mul(10).ok_or_else(|| overflow(field, raw))?;
        }
    } else {
        for _ in 0..exp10.unsigned_abs() {
            if value % 10 != 0 {
                return Ok(None);
            }
            value /= 10;
        }
    }
    let value = if negative { -value } else { value };
    i64::try_from(value)
        .map(Some)
        .map_err(|_| overflow(field, raw))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strict_parse_separates_garbage_from_overflow() {
        assert_eq!(parse_i32("f", " 42 ").unwrap(), 42);
        assert_eq!(parse_i32("f", "-7").unwrap(), -7);
        assert!(matches!(
            parse_i32("f", "x1"),
            Err(DecodeError::BadNumber { .. })
        ));
        assert!(matches!(
            parse_i32("f", "2147483648"),
            Err(DecodeError::Overflow { .. })
        ));
        assert!(matches!(
            parse_i32("f", "99999999999999999999999"),
            Err(DecodeError::Overflow { .. })
        ));
    }

    #[test]
    fn lenient_parse_turns_garbage_into_zero_but_keeps_overflow() {
        assert_eq!(parse_i32_or_zero("f", "abc").unwrap(), 0);
        assert_eq!(parse_i32_or_zero("f", "").unwrap(), 0);
        assert!(parse_i32_or_zero("f", "3000000000").is_err());
    }

    #[test]
    fn go_bool_accepts_go_spellings_only() {
        assert_eq!(parse_go_bool("True"), Some(true));
        assert_eq!(parse_go_bool("0"), Some(false));
        assert_eq!(parse_go_bool("yes"), None);
    }

    #[test]
    fn quantities_parse_like_kubernetes() {
        let cases = [
            ("4", Some(4)),
            ("1k", Some(1000)),
            ("2Ki", Some(2048)),
            ("1500m", None),
            ("2000m", Some(2)),
            ("1e3", Some(1000)),
            ("1E", Some(1_000_000_000_000_000_000)),
            ("0.5", None),
            ("1.5k", Some(1500)),
            ("-3", Some(-3)),
            ("0", Some(0)),
            ("000", Some(0)),
            ("1e-2", None),
        ];
        for (raw, want) in cases {
            assert_eq!(parse_quantity("q", raw).unwrap(), want, "{raw}");
        }
    }

    #[test]
    fn quantities_reject_garbage_and_overflow() {
        for raw in ["", "abc", "1x", "1..2", "."] {
            assert!(
                matches!(parse_quantity("q", raw), Err(DecodeError::BadNumber { .. })),
                "{raw}"
            );
        }
        for raw in [
            "10E",
            "9Ei",
            "1e100",
            "123456789012345678901234567890123456789012",
        ] {
            assert!(
                matches!(parse_quantity("q", raw), Err(DecodeError::Overflow { .. })),
                "{raw}"
            );
        }
    }
}
