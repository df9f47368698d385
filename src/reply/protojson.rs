//! The scalar renderings of protobuf JSON (Go's `protojson`, as kratos emitted it) that serde
//! does not produce by itself: `float` fields in their shortest float32 form and `int64`
//! fields as strings. Also Go's boolean parser, which a string filter is read with.
//!
//! The frontend compares and displays these values, so a `12.0` where Go wrote `12`, or a
//! number where Go wrote a string, is a visible difference.

use serde::{Serialize, Serializer};

/// A proto `float` field: rendered like protojson renders a float32. NaN and infinities
/// become the strings `"NaN"`, `"Infinity"`, `"-Infinity"`; integral values carry no `.0`;
/// other values use the shortest decimal that reads back as the same float32, in plain
/// notation unless the magnitude is below 1e-6 (exponent form, e.g. `1e-7`).
///
/// Two spellings differ from Go's while denoting the same number: magnitudes of 1e21 and
/// above lose Go's `+` (`1e21` for `1e+21`), and fractions between 1e-6 and 1e-5 take exponent
/// form (`2.5e-6` for `0.0000025`). No value these replies carry comes near either range.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Float32(pub f32);

impl Serialize for Float32 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_nan() {
            return serializer.serialize_str("NaN");
        }
        if v.is_infinite() {
            return serializer.serialize_str(if v > 0.0 { "Infinity" } else { "-Infinity" });
        }
        let magnitude = v.abs();
        // Rust prints the shortest decimal that reads back as this float32, in plain
        // notation, as Go's `AppendFloat(.., 'f', -1, 32)` does (1e20 is `100000000000000000000`,
        // not the float's exact `100000002004087734272`).
        let shortest = format!("{v}");
        if v.fract() == 0.0 && magnitude < 1e21 {
            if let Ok(integral) = shortest.parse::<i128>() {
                return serializer.serialize_i128(integral);
            }
        }
        // A fraction: the float64 nearest to that decimal prints as the same digits (it has
        // far more precision), and a float64 is the only fraction serde_json writes.
        serializer.serialize_f64(shortest.parse::<f64>().unwrap_or(f64::from(v)))
    }
}

/// A proto `int64` field: a JSON string of decimal digits (e.g. `"1717000000000"`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Int64(pub i64);

impl Serialize for Int64 {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// Go's `strconv.ParseBool`: the node list's `isSchedulable` filter is a string read this
/// way, and anything else (including `""`) means "no filter".
pub fn parse_go_bool(text: &str) -> Option<bool> {
    match text {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(v: f32) -> String {
        serde_json::to_string(&Float32(v)).unwrap()
    }

    #[test]
    fn float32_renders_like_protojson() {
        let table: &[(f32, &str)] = &[
            (0.0, "0"),
            (12.0, "12"),
            (-3.0, "-3"),
            (12.5, "12.5"),
            (0.1, "0.1"),
            (1.0 / 3.0, "0.33333334"),
            (66.66667, "66.66667"),
            (16_777_217.0, "16777216"),
            (1e20, "100000000000000000000"),
            (1e-7, "1e-7"),
            (1.5e-7, "1.5e-7"),
            (f32::NAN, "\"NaN\""),
            (f32::INFINITY, "\"Infinity\""),
            (f32::NEG_INFINITY, "\"-Infinity\""),
        ];
        for (value, expected) in table {
            assert_eq!(render(*value), *expected, "{value}");
        }
    }

    #[test]
    fn float32_between_1e6_and_1e5_reads_back_equal() {
        let text = render(2.5e-6);
        assert_eq!(text.parse::<f32>().unwrap(), 2.5e-6);
    }

    #[test]
    fn int64_is_a_string() {
        assert_eq!(
            serde_json::to_string(&Int64(1_717_000_000_000)).unwrap(),
            "\"1717000000000\""
        );
        assert_eq!(serde_json::to_string(&Int64(-5)).unwrap(), "\"-5\"");
    }

    #[test]
    fn go_bool_accepts_exactly_strconv_forms() {
        for yes in ["1", "t", "T", "TRUE", "true", "True"] {
            assert_eq!(parse_go_bool(yes), Some(true));
        }
        for no in ["0", "f", "F", "FALSE", "false", "False"] {
            assert_eq!(parse_go_bool(no), Some(false));
        }
        for other in ["", " true", "yes", "tRUE", "2"] {
            assert_eq!(parse_go_bool(other), None);
        }
    }
}
