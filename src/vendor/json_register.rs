//! The JSON node registration HAMi uses for NVIDIA (from 2.8), Ascend and most newer
//! vendors: an array of objects with `id`, `index`, `count`, `devmem`, `devcore`, `type`,
//! `numa`, `mode`, `health`. It mirrors Go's `encoding/json` as HAMi and the Go backend
//! used it: keys match case-insensitively (last one wins), absent or `null` fields keep their
//! zero value (HAMi omits zeros), unknown keys (`migProfiles`, `devicevendor`, `custominfo`)
//! are ignored, `null` array elements are skipped, a top-level `null` is an empty list, and
//! a value of the wrong JSON type or out of range fails the whole annotation.
//!
//! The field readers are shared with the other JSON formats (Metax sGPU, Enflame DRS).

use serde_json::{Map, Value};

use super::{snippet, DecodeError, Registered};

/// Decodes a JSON registration.
pub(crate) fn decode(value: &str) -> Result<Vec<Registered>, DecodeError> {
    decode_value(&parse(value)?)
}

/// Parses JSON text; `serde_json` bounds nesting depth, so hostile input cannot overflow
/// the stack.
pub(crate) fn parse(value: &str) -> Result<Value, DecodeError> {
    serde_json::from_str(value).map_err(DecodeError::Json)
}

/// Decodes an already parsed registration.
pub(crate) fn decode_value(value: &Value) -> Result<Vec<Registered>, DecodeError> {
    array_of_objects(value)?
        .into_iter()
        .map(|fields| {
            let mut device = Registered::default();
            for (key, value) in fields {
                match key.to_ascii_lowercase().as_str() {
                    "id" => set(&mut device.id, string("id", value)?),
                    "index" => set(&mut device.index, non_negative("index", value)?),
                    "count" => set(&mut device.count, int("count", value)?),
                    "devmem" => set(&mut device.devmem, int("devmem", value)?),
                    "devcore" => set(&mut device.devcore, int("devcore", value)?),
                    "type" => set(&mut device.device_type, string("type", value)?),
                    "numa" => set(&mut device.numa, int("numa", value)?),
                    "mode" => set(&mut device.mode, string("mode", value)?),
                    "health" => set(&mut device.health, boolean("health", value)?),
                    _ => {}
                }
            }
            Ok(device)
        })
        .collect()
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

fn shape(what: &str, value: &Value) -> DecodeError {
    DecodeError::JsonShape(format!("{what}, got {}", snippet(&value.to_string())))
}

/// The objects of a JSON array (`null` elements skipped; a `null` array is empty).
pub(crate) fn array_of_objects(value: &Value) -> Result<Vec<&Map<String, Value>>, DecodeError> {
    match value {
        Value::Null => Ok(Vec::new()),
        Value::Array(items) => items
            .iter()
            .filter(|item| !item.is_null())
            .map(|item| {
                item.as_object()
                    .ok_or_else(|| shape("array element must be an object", item))
            })
            .collect(),
        other => Err(shape("expected an array", other)),
    }
}

/// An i32 field: JSON integers only (Go rejects `1.5` and `1e3` for integer fields).
pub(crate) fn int(field: &'static str, value: &Value) -> Result<Option<i32>, DecodeError> {
    match value {
        Value::Null => Ok(None),
        Value::Number(n) => match n.as_i64() {
            Some(v) => i32::try_from(v)
                .map(Some)
                .map_err(|_| overflow(field, value)),
            None if n.is_u64() => Err(overflow(field, value)),
            None => Err(shape(&format!("{field} must be an integer"), value)),
        },
        other => Err(shape(&format!("{field} must be a number"), other)),
    }
}

/// An unsigned integer field (Go `uint`), kept as i32 in the model.
pub(crate) fn non_negative(field: &'static str, value: &Value) -> Result<Option<i32>, DecodeError> {
    match int(field, value)? {
        Some(v) if v < 0 => Err(shape(&format!("{field} must not be negative"), value)),
        other => Ok(other),
    }
}

pub(crate) fn string(field: &'static str, value: &Value) -> Result<Option<String>, DecodeError> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) => Ok(Some(s.clone())),
        other => Err(shape(&format!("{field} must be a string"), other)),
    }
}

pub(crate) fn boolean(field: &'static str, value: &Value) -> Result<Option<bool>, DecodeError> {
    match value {
        Value::Null => Ok(None),
        Value::Bool(b) => Ok(Some(*b)),
        other => Err(shape(&format!("{field} must be a boolean"), other)),
    }
}

fn overflow(field: &'static str, value: &Value) -> DecodeError {
    DecodeError::Overflow {
        field,
        value: snippet(&value.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_hami_json_with_omitted_zero_values() {
        let value = r#"[{"id":"GPU-4a1f9c2e-7b3d-4e8a-9c1d-2e3f4a5b6c7d","count":10,"devmem":81920,"devcore":100,"type":"NVIDIA A100-SXM4-80GB","mode":"hami-core","health":true},{"id":"GPU-9e8d7c6b-5a4f-4e3d-8c2b-1a0f9e8d7c6b","index":1,"count":10,"devmem":81920,"devcore":100,"type":"NVIDIA A100-SXM4-80GB","numa":1,"mode":"hami-core","health":true}]"#;
        let devices = decode(value).unwrap();
        assert_eq!(devices.len(), 2);
        assert_eq!((devices[0].index, devices[0].numa), (0, 0));
        assert_eq!((devices[1].index, devices[1].numa), (1, 1));
        assert_eq!(devices[1].devmem, 81920);
        assert_eq!(devices[1].device_type, "NVIDIA A100-SXM4-80GB");
        assert!(devices[1].health);
    }

    #[test]
    fn keys_match_case_insensitively_and_unknown_keys_are_ignored() {
        let value = r#"[{"ID":"x","DevMem":5,"Health":true,"migProfiles":[{"name":"1g.10gb"}],"devicevendor":"NVIDIA","custominfo":{"a":1}}]"#;
        let d = &decode(value).unwrap()[0];
        assert_eq!((d.id.as_str(), d.devmem, d.health), ("x", 5, true));
    }

    #[test]
    fn nulls_are_zero_values_and_empty_lists() {
        assert_eq!(decode("null").unwrap(), vec![]);
        assert_eq!(decode("[]").unwrap(), vec![]);
        let devices = decode(r#"[null,{"id":"a","count":null}]"#).unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].count, 0);
    }

    #[test]
    fn wrong_shapes_and_ranges_fail() {
        let cases = [
            ("{}", "json_shape"),
            (r#"[1]"#, "json_shape"),
            (r#"[{"count":"10"}]"#, "json_shape"),
            (r#"[{"count":1.5}]"#, "json_shape"),
            (r#"[{"health":"true"}]"#, "json_shape"),
            (r#"[{"index":-1}]"#, "json_shape"),
            (r#"[{"devmem":4294967296}]"#, "overflow"),
            (r#"[{"devmem":18446744073709551615}]"#, "overflow"),
            ("[{", "bad_json"),
            ("", "bad_json"),
        ];
        for (value, kind) in cases {
            assert_eq!(decode(value).unwrap_err().kind(), kind, "{value}");
        }
    }

    #[test]
    fn deep_nesting_is_an_error_not_a_crash() {
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert_eq!(decode(&deep).unwrap_err().kind(), "bad_json");
    }
}
