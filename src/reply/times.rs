//! The two time renderings of the REST replies, in the configured zone (`server.timezone`;
//! Go used the process's local zone): node creation as `YYYY-MM-DD HH:MM:SS`, container
//! creation as RFC 3339 without fraction. The frontend shows both strings as they are.
//! Also the other direction: a range query's times and step, parsed as Go's `time` package
//! parses them, with Go's error texts.

use std::time::Duration;

use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::config::duration::parse_go_duration;
use crate::echo::echo;

/// Go's `2006-01-02 15:04:05` of the instant in `zone`. A node without a creation time
/// renders Go's zero time, as Go did.
pub fn node_time(time: Option<Timestamp>, zone: &TimeZone) -> String {
    match time {
        Some(t) => t
            .to_zoned(zone.clone())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string(),
        None => "0001-01-01 00:00:00".to_string(),
    }
}

/// Go's `time.RFC3339` of the instant in `zone`: whole seconds, `Z` for a zero offset, else
/// `±HH:MM` (seconds of historical offsets dropped, as Go drops them).
pub fn rfc3339(time: Timestamp, zone: &TimeZone) -> String {
    let zoned = time.to_zoned(zone.clone());
    let local = zoned.strftime("%Y-%m-%dT%H:%M:%S");
    let offset = zoned.offset().seconds();
    if offset == 0 {
        return format!("{local}Z");
    }
    let sign = if offset < 0 { '-' } else { '+' };
    let minutes = offset.unsigned_abs() / 60;
    format!("{local}{sign}{:02}:{:02}", minutes / 60, minutes % 60)
}

/// Go's `time.DateTime`, the layout of `range.start` and `range.end`.
const LAYOUT: &str = "2006-01-02 15:04:05";

/// A time or duration of a request that does not parse, worded exactly as Go's `time`
/// package words it (the frontend shows the text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct GoTimeError(pub String);

/// A range query's `step`, as Go's `time.ParseDuration` reads it.
pub fn parse_step(text: &str) -> Result<Duration, GoTimeError> {
    parse_go_duration(text).map_err(|_| go_duration_error(text))
}

/// The text of Go's `time.ParseDuration` error for `text` (which failed to parse): Go names
/// a missing or unknown unit, and says "invalid duration" for everything else.
fn go_duration_error(text: &str) -> GoTimeError {
    let quoted = format!(
        "\"{}\"",
        echo(text).replace('\\', "\\\\").replace('"', "\\\"")
    );
    let mut rest = text.strip_prefix(['+', '-']).unwrap_or(text);
    // Bounded by the input: every round consumes at least one byte or returns.
    while !rest.is_empty() {
        let number_len = rest
            .bytes()
            .take_while(|b| b.is_ascii_digit() || *b == b'.')
            .count();
        if !rest[..number_len].bytes().any(|b| b.is_ascii_digit()) {
            break;
        }
        let tail = &rest[number_len..];
        let unit_len = tail
            .char_indices()
            .find(|(_, c)| c.is_ascii_digit() || *c == '.')
            .map_or(tail.len(), |(i, _)| i);
        let unit = &tail[..unit_len];
        if unit.is_empty() {
            return GoTimeError(format!("time: missing unit in duration {quoted}"));
        }
        if !["ns", "us", "µs", "μs", "ms", "s", "m", "h"].contains(&unit) {
            return GoTimeError(format!(
                "time: unknown unit \"{unit}\" in duration {quoted}"
            ));
        }
        rest = &tail[unit_len..];
    }
    GoTimeError(format!("time: invalid duration {quoted}"))
}

/// Go's `time.ParseInLocation(time.DateTime, text, zone)`: `YYYY-MM-DD HH:MM:SS` with an
/// optional fractional-seconds suffix (`.123` or `,123`), hour of one or two digits, every
/// other field of exactly its width. Errors are Go's texts, which the frontend shows.
pub fn parse_datetime(text: &str, zone: &TimeZone) -> Result<Timestamp, GoTimeError> {
    go_datetime(text, zone).map_err(GoTimeError)
}

fn go_datetime(text: &str, zone: &TimeZone) -> Result<Timestamp, String> {
    // Go quotes the whole input; a long one is cut to a prefix and its length.
    let quote = |s: &str| format!("\"{}\"", echo(s).replace('\\', "\\\\").replace('"', "\\\""));
    let mismatch = |rest: &str, elem: &str| {
        format!(
            "parsing time {} as {}: cannot parse {} as {}",
            quote(text),
            quote(LAYOUT),
            quote(rest),
            quote(elem)
        )
    };
    let out_of_range = |what: &str| format!("parsing time {}: {what} out of range", quote(text));

    let mut rest = text;
    let literal = |rest: &mut &str, lit: &str| -> Result<(), String> {
        match rest.strip_prefix(lit) {
            Some(tail) => {
                *rest = tail;
                Ok(())
            }
            None => Err(mismatch(rest, lit)),
        }
    };
    // Go's `getnum`: one or two digits; `fixed` demands two.
    let number = |rest: &mut &str, elem: &str, fixed: bool| -> Result<i64, String> {
        let bytes = rest.as_bytes();
        let digit = |i: usize| bytes.get(i).is_some_and(u8::is_ascii_digit);
        let width = match (digit(0), digit(1)) {
            (false, _) => return Err(mismatch(rest, elem)),
            (true, false) if fixed => return Err(mismatch(rest, elem)),
            (true, false) => 1,
            (true, true) => 2,
        };
        let value = rest[..width]
            .parse::<i64>()
            .map_err(|_| mismatch(rest, elem))?;
        *rest = &rest[width..];
        Ok(value)
    };

    let year = match rest.get(..4) {
        Some(digits) if digits.bytes().all(|b| b.is_ascii_digit()) => {
            rest = &rest[4..];
            digits.parse::<i64>().map_err(|_| mismatch(text, "2006"))?
        }
        _ => return Err(mismatch(rest, "2006")),
    };
    literal(&mut rest, "-")?;
    let month = number(&mut rest, "01", true)?;
    if !(1..=12).contains(&month) {
        return Err(out_of_range("month"));
    }
    literal(&mut rest, "-")?;
    let day = number(&mut rest, "02", true)?;
    literal(&mut rest, " ")?;
    let hour = number(&mut rest, "15", false)?;
    if !(0..24).contains(&hour) {
        return Err(out_of_range("hour"));
    }
    literal(&mut rest, ":")?;
    let minute = number(&mut rest, "04", true)?;
    if !(0..60).contains(&minute) {
        return Err(out_of_range("minute"));
    }
    literal(&mut rest, ":")?;
    let second = number(&mut rest, "05", true)?;
    if !(0..60).contains(&second) {
        return Err(out_of_range("second"));
    }
    let mut nanos: i64 = 0;
    let bytes = rest.as_bytes();
    if bytes.len() >= 2 && (bytes[0] == b'.' || bytes[0] == b',') && bytes[1].is_ascii_digit() {
        let digits = bytes[1..].iter().take_while(|b| b.is_ascii_digit()).count();
        // Go reads at most nine digits and skips the others.
        for (i, b) in bytes[1..=digits].iter().take(9).enumerate() {
            nanos += i64::from(b - b'0') * 10i64.pow(8 - i as u32);
        }
        rest = &rest[1 + digits..];
    }
    if !rest.is_empty() {
        return Err(format!(
            "parsing time {}: extra text: {}",
            quote(text),
            quote(rest)
        ));
    }
    let date = i16::try_from(year)
        .ok()
        .and_then(|y| jiff::civil::Date::new(y, month as i8, day as i8).ok())
        .ok_or_else(|| out_of_range("day"))?;
    let datetime = date.to_datetime(
        jiff::civil::Time::new(hour as i8, minute as i8, second as i8, nanos as i32)
            .map_err(|_| out_of_range("second"))?,
    );
    zone.to_ambiguous_zoned(datetime)
        .compatible()
        .map(|z| z.timestamp())
        // Only a time beyond the supported range fails here (the zone library's own text
        // stays out of the reply).
        .map_err(|_| out_of_range("time"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    #[test]
    fn renders_in_the_configured_zone() {
        let shanghai = TimeZone::get("Asia/Shanghai").unwrap();
        assert_eq!(
            node_time(Some(at("2025-03-01T02:20:30Z")), &shanghai),
            "2025-03-01 10:20:30"
        );
        assert_eq!(
            rfc3339(at("2025-03-01T02:20:30.75Z"), &shanghai),
            "2025-03-01T10:20:30+08:00"
        );
        let new_york = TimeZone::get("America/New_York").unwrap();
        assert_eq!(
            rfc3339(at("2025-03-01T02:20:30Z"), &new_york),
            "2025-02-28T21:20:30-05:00"
        );
        assert_eq!(
            rfc3339(at("2025-03-01T02:20:30Z"), &TimeZone::UTC),
            "2025-03-01T02:20:30Z"
        );
        assert_eq!(node_time(None, &TimeZone::UTC), "0001-01-01 00:00:00");
    }

    fn shanghai() -> TimeZone {
        TimeZone::get("Asia/Shanghai").unwrap()
    }

    #[test]
    fn datetimes_parse_in_the_configured_zone() {
        let table: &[(&str, i64)] = &[
            // 2025-05-01 10:00:00 +08:00
            ("2025-05-01 10:00:00", 1_746_064_800_000),
            ("2025-05-01 10:00:00.250", 1_746_064_800_250),
            ("2025-05-01 10:00:00,5", 1_746_064_800_500),
            ("2025-05-01 9:00:00", 1_746_061_200_000),
            ("2024-02-29 00:00:00", 1_709_136_000_000),
        ];
        for (text, ms) in table {
            let t = parse_datetime(text, &shanghai()).unwrap();
            assert_eq!(t.as_millisecond(), *ms, "{text}");
        }
        let utc = parse_datetime("1970-01-01 00:00:01", &TimeZone::UTC).unwrap();
        assert_eq!(utc.as_millisecond(), 1000);
    }

    #[test]
    fn datetime_errors_are_gos_texts() {
        let layout = "\"2006-01-02 15:04:05\"";
        let table: Vec<(&str, String)> = vec![
            (
                "",
                format!("parsing time \"\" as {layout}: cannot parse \"\" as \"2006\""),
            ),
            (
                "2025/05/01 10:00:00",
                format!(
                    "parsing time \"2025/05/01 10:00:00\" as {layout}: cannot parse \"/05/01 10:00:00\" as \"-\""
                ),
            ),
            (
                "2025-5-01 10:00:00",
                format!(
                    "parsing time \"2025-5-01 10:00:00\" as {layout}: cannot parse \"5-01 10:00:00\" as \"01\""
                ),
            ),
            (
                "2025-13-01 10:00:00",
                "parsing time \"2025-13-01 10:00:00\": month out of range".to_string(),
            ),
            (
                "2025-02-30 10:00:00",
                "parsing time \"2025-02-30 10:00:00\": day out of range".to_string(),
            ),
            (
                "2025-05-01 24:00:00",
                "parsing time \"2025-05-01 24:00:00\": hour out of range".to_string(),
            ),
            (
                "2025-05-01 10:00:00Z",
                "parsing time \"2025-05-01 10:00:00Z\": extra text: \"Z\"".to_string(),
            ),
            (
                "2025-05-01T10:00:00",
                format!(
                    "parsing time \"2025-05-01T10:00:00\" as {layout}: cannot parse \"T10:00:00\" as \" \""
                ),
            ),
        ];
        for (text, expected) in table {
            assert_eq!(parse_datetime(text, &shanghai()).unwrap_err().0, expected);
        }
    }

    #[test]
    fn duration_errors_are_gos_texts() {
        let table = [
            ("", "time: invalid duration \"\""),
            ("1d", "time: unknown unit \"d\" in duration \"1d\""),
            ("1h5x", "time: unknown unit \"x\" in duration \"1h5x\""),
            ("10", "time: missing unit in duration \"10\""),
            ("abc", "time: invalid duration \"abc\""),
            ("-1m", "time: invalid duration \"-1m\""),
        ];
        for (text, expected) in table {
            assert!(parse_go_duration(text).is_err(), "{text}");
            assert_eq!(go_duration_error(text).0, expected, "{text}");
        }
    }
}
