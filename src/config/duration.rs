//! Go's duration syntax (`500ms`, `30s`, `1m`, `1h30m`, `1.5h`), the form every duration in the
//! upstream config file and in the frontend's range-query `step` is written in.
//!
//! Kept as one pure function because the Go backend's files must load unchanged and the
//! frontend's steps (`15s` … `24h`) must parse exactly as `time.ParseDuration` parses them.

use std::time::Duration;

/// Why a string is not a Go duration; the caller adds which key or field it came from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid duration {input:?}")]
pub struct DurationError {
    input: String,
}

/// Parses `time.ParseDuration` syntax: a sequence of decimal numbers, each with an optional
/// fraction and a unit (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`), with an optional leading
/// `+`. `0` alone is allowed without a unit. Negative durations are rejected: nothing we
/// configure or query can use one.
pub fn parse_go_duration(input: &str) -> Result<Duration, DurationError> {
    let err = || DurationError {
        input: input.to_string(),
    };
    let mut rest = input.strip_prefix('+').unwrap_or(input);
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(err());
    }
    let mut total_nanos: u128 = 0;
    while !rest.is_empty() {
        let int_len = rest.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, after_int) = rest.split_at(int_len);
        let (frac_part, after_num) = match after_int.strip_prefix('.') {
            Some(tail) => {
                let frac_len = tail.bytes().take_while(u8::is_ascii_digit).count();
                tail.split_at(frac_len)
            }
            None => ("", after_int),
        };
        if int_part.is_empty() && frac_part.is_empty() {
            return Err(err());
        }
        let unit_len = after_num
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(after_num.len(), |(i, _)| i);
        let (unit, tail) = after_num.split_at(unit_len);
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60 * 1_000_000_000,
            "h" => 3_600 * 1_000_000_000,
            _ => return Err(err()),
        };
        let whole: u128 = if int_part.is_empty() {
            0
        } else {
            int_part.parse().map_err(|_| err())?
        };
        let mut value = whole.checked_mul(unit_nanos).ok_or_else(err)?;
        // The fraction contributes at nanosecond precision; digits beyond it cannot matter.
        let mut scale = unit_nanos;
        for digit in frac_part.bytes().take(30) {
            scale /= 10;
            value += u128::from(digit - b'0') * scale;
        }
        total_nanos = total_nanos.checked_add(value).ok_or_else(err)?;
        rest = tail;
    }
    let secs = u64::try_from(total_nanos / 1_000_000_000).map_err(|_| err())?;
    // Go's time.Duration is an int64 of nanoseconds; anything larger is an error there too.
    if total_nanos > i64::MAX as u128 {
        return Err(err());
    }
    Ok(Duration::new(secs, (total_nanos % 1_000_000_000) as u32))
}

/// Renders a duration the way Go's `Duration.String` would for whole units, used in
/// messages and in the `timeout` parameter sent upstream (`1m30s`, `250ms`).
pub fn format_go_duration(d: Duration) -> String {
    if d.is_zero() {
        return "0s".to_string();
    }
    if d.subsec_nanos() == 0 {
        let total = d.as_secs();
        let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
        let mut out = String::new();
        if h > 0 {
            out.push_str(&format!("{h}h"));
        }
        if h > 0 || m > 0 {
            out.push_str(&format!("{m}m"));
        }
        out.push_str(&format!("{s}s"));
        return out;
    }
    format!("{}ms", d.as_millis().max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_every_form_the_config_and_frontend_use() {
        let cases = [
            ("500ms", Duration::from_millis(500)),
            ("30s", Duration::from_secs(30)),
            ("1m", Duration::from_secs(60)),
            ("1h30m", Duration::from_secs(5400)),
            ("1.5h", Duration::from_secs(5400)),
            ("24h", Duration::from_secs(86_400)),
            ("0", Duration::ZERO),
            ("+2s", Duration::from_secs(2)),
            ("1us", Duration::from_micros(1)),
            ("1µs", Duration::from_micros(1)),
            (".5s", Duration::from_millis(500)),
            ("1h0m0s", Duration::from_secs(3600)),
            ("10ns", Duration::from_nanos(10)),
        ];
        for (text, want) in cases {
            assert_eq!(parse_go_duration(text), Ok(want), "{text}");
        }
    }

    #[test]
    fn rejects_what_go_rejects() {
        for text in [
            "", "abc", "10", "1d", "-1s", "s", "1.s.", ".s", "1h ", " 1h", "1e3s",
        ] {
            assert!(parse_go_duration(text).is_err(), "{text:?} should fail");
        }
    }

    #[test]
    fn rejects_overflow_instead_of_wrapping() {
        assert!(parse_go_duration("9999999999999999999999h").is_err());
        assert!(parse_go_duration("3000000h").is_err());
    }

    #[test]
    fn error_names_the_input() {
        let err = parse_go_duration("abc").unwrap_err();
        assert_eq!(err.to_string(), "invalid duration \"abc\"");
    }

    #[test]
    fn formats_like_go_for_whole_units() {
        assert_eq!(format_go_duration(Duration::from_secs(90)), "1m30s");
        assert_eq!(format_go_duration(Duration::from_secs(3600)), "1h0m0s");
        assert_eq!(format_go_duration(Duration::from_millis(250)), "250ms");
        assert_eq!(format_go_duration(Duration::ZERO), "0s");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(text in "\\PC{0,40}") {
            let _ = parse_go_duration(&text);
        }

        #[test]
        fn round_trips_whole_seconds(secs in 0u64..10_000_000) {
            let d = Duration::from_secs(secs);
            proptest::prop_assert_eq!(parse_go_duration(&format_go_duration(d)), Ok(d));
        }
    }
}
