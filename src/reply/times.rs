//! The two time renderings of the REST replies, in the configured zone (`server.timezone`;
//! Go used the process's local zone): node creation as `YYYY-MM-DD HH:MM:SS`, container
//! creation as RFC 3339 without fraction. The frontend shows both strings as they are.

use jiff::tz::TimeZone;
use jiff::Timestamp;

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
}
