//! Request decoding as kratos did it for the Go backend, so every request the frontend (or a
//! script written against the Go backend) sends means the same here.
//!
//! A request message is described by a [`MessageSchema`] (its proto fields with their proto
//! and JSON names and kinds). The body and the query string are first normalized against
//! the schema into a JSON object keyed by proto names — accepting both spellings, dropping
//! unknown fields, enforcing the protojson types — and only then deserialized into the typed
//! request struct, which therefore cannot fail on shape. The query string is bound after the
//! body and wins, as in kratos (`filters.nodeName=x` reaches a nested field).
//!
//! The actix extractors built on [`decode_body`] and [`bind_query`] are in
//! `crate::http::extract`; nothing here knows about HTTP beyond the bytes it is given.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde_json::{Map, Value};

use crate::echo::echo;
#[cfg(doc)]
use crate::echo::Echo;

/// What a proto field holds; only the kinds the frontend's requests use.
#[derive(Debug, Clone, Copy)]
pub enum FieldKind {
    String,
    Int32,
    Message(&'static MessageSchema),
}

/// One proto field: protojson accepts both names.
#[derive(Debug)]
pub struct FieldSchema {
    pub proto: &'static str,
    pub json: &'static str,
    pub kind: FieldKind,
}

/// The fields of one request message, in proto order.
#[derive(Debug)]
pub struct MessageSchema {
    pub fields: &'static [FieldSchema],
}

impl MessageSchema {
    fn field(&self, name: &str) -> Option<&FieldSchema> {
        self.fields
            .iter()
            .find(|f| f.proto == name)
            .or_else(|| self.fields.iter().find(|f| f.json == name))
    }
}

/// A request message: its schema, and a serde shape keyed by proto names whose every field
/// has a default (a missing `filters` object then means "no filters", where Go panicked).
pub trait ProtoRequest: DeserializeOwned + Default {
    const SCHEMA: &'static MessageSchema;
}

/// Shorthand for a string field whose proto and JSON names are given.
pub const fn string(proto: &'static str, json: &'static str) -> FieldSchema {
    FieldSchema {
        proto,
        json,
        kind: FieldKind::String,
    }
}

/// Why a request message could not be decoded: kratos' `CODEC` error, worded as its
/// decoders worded it so that scripts written against the Go backend read the same text.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// The body is not JSON.
    #[error("body unmarshal proto: syntax error: {0}")]
    Syntax(#[source] serde_json::Error),
    /// The body is not an object, or a field has the wrong type or is given twice.
    #[error("body unmarshal proto: {0}")]
    Field(String),
    /// The query string is not a list of `key=value` pairs.
    #[error("query unmarshal Query deserialize error: {0}")]
    Query(#[source] serde_urlencoded::de::Error),
    /// A query key is repeated, names a path through a non-message field, or its value
    /// does not parse as the field's type.
    #[error("{0}")]
    QueryField(String),
    /// The `Content-Type` does not select the JSON codec.
    #[error("unregister Content-Type: {0}")]
    ContentType(String),
    /// The body could not be read to its end, or does not fit the message.
    #[error("body unmarshal {0}")]
    Body(String),
}

/// Normalizes a JSON body against `schema`. An empty body is an empty message.
pub fn decode_body(schema: &MessageSchema, body: &[u8]) -> Result<Map<String, Value>, CodecError> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Json>(body).map_err(CodecError::Syntax)? {
        Json::Object(pairs) => normalize(schema, pairs).map_err(CodecError::Field),
        other => Err(CodecError::Field(format!(
            "unexpected token {}",
            echo(other.into_value())
        ))),
    }
}

/// A JSON value whose objects keep every key in order, a repeated one included: protojson
/// rejects a field given twice, and `serde_json::Value` would keep only the last.
#[derive(Debug)]
enum Json {
    Scalar(Value),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn into_value(self) -> Value {
        match self {
            Json::Scalar(value) => value,
            Json::Array(items) => Value::Array(items.into_iter().map(Json::into_value).collect()),
            Json::Object(pairs) => Value::Object(
                pairs
                    .into_iter()
                    .map(|(k, v)| (k, v.into_value()))
                    .collect(),
            ),
        }
    }
}

impl<'de> serde::Deserialize<'de> for Json {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct JsonVisitor;

        impl<'de> serde::de::Visitor<'de> for JsonVisitor {
            type Value = Json;

            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON value")
            }

            fn visit_bool<E>(self, v: bool) -> Result<Json, E> {
                Ok(Json::Scalar(Value::Bool(v)))
            }

            fn visit_i64<E>(self, v: i64) -> Result<Json, E> {
                Ok(Json::Scalar(Value::from(v)))
            }

            fn visit_u64<E>(self, v: u64) -> Result<Json, E> {
                Ok(Json::Scalar(Value::from(v)))
            }

            fn visit_f64<E>(self, v: f64) -> Result<Json, E> {
                Ok(Json::Scalar(Value::from(v)))
            }

            fn visit_str<E>(self, v: &str) -> Result<Json, E> {
                Ok(Json::Scalar(Value::String(v.to_string())))
            }

            fn visit_string<E>(self, v: String) -> Result<Json, E> {
                Ok(Json::Scalar(Value::String(v)))
            }

            fn visit_unit<E>(self) -> Result<Json, E> {
                Ok(Json::Scalar(Value::Null))
            }

            fn visit_none<E>(self) -> Result<Json, E> {
                Ok(Json::Scalar(Value::Null))
            }

            fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Json, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Json::Array(items))
            }

            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Json, A::Error> {
                let mut pairs = Vec::new();
                while let Some(pair) = map.next_entry()? {
                    pairs.push(pair);
                }
                Ok(Json::Object(pairs))
            }
        }

        deserializer.deserialize_any(JsonVisitor)
    }
}

/// protojson's rules for one object: both names, unknown fields ignored, a field given twice
/// (under either name, or the same name twice) rejected, `null` = unset, strict scalar types.
/// Values quoted in an error are cut to a short prefix ([`Echo`]).
fn normalize(
    schema: &MessageSchema,
    pairs: Vec<(String, Json)>,
) -> Result<Map<String, Value>, String> {
    let mut out = Map::new();
    let mut seen: Vec<&'static str> = Vec::new();
    for (key, value) in pairs {
        let Some(field) = schema.field(&key) else {
            continue;
        };
        if seen.contains(&field.proto) {
            return Err(format!("duplicate field {:?}", field.json));
        }
        seen.push(field.proto);
        let normalized = match (field.kind, value) {
            (_, Json::Scalar(Value::Null)) => continue,
            (FieldKind::String, Json::Scalar(Value::String(s))) => Value::String(s),
            (FieldKind::Int32, value) => Value::from(int32_from_json(field, &value.into_value())?),
            (FieldKind::Message(inner), Json::Object(o)) => Value::Object(normalize(inner, o)?),
            (FieldKind::String, other) => {
                return Err(format!(
                    "invalid value for string field {}: {}",
                    field.json,
                    echo(other.into_value())
                ))
            }
            (FieldKind::Message(_), other) => {
                return Err(format!(
                    "invalid value for message field {}: {}",
                    field.json,
                    echo(other.into_value())
                ))
            }
        };
        out.insert(field.proto.to_string(), normalized);
    }
    Ok(out)
}

/// An int32 field takes a JSON number or a string holding one, integral and in range.
fn int32_from_json(field: &FieldSchema, value: &Value) -> Result<i32, String> {
    let invalid = || {
        format!(
            "invalid value for int32 field {}: {}",
            field.json,
            echo(value)
        )
    };
    let number = match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    }
    .ok_or_else(invalid)?;
    if number.fract() != 0.0 || number < f64::from(i32::MIN) || number > f64::from(i32::MAX) {
        return Err(invalid());
    }
    Ok(number as i32)
}

/// Binds a raw query string onto `message`, kratos' form rules: keys are proto or JSON
/// names, nested through dots; unknown keys and empty values are ignored; a key given more
/// than once is an error; a path through a non-message field is an error.
pub fn bind_query(
    schema: &'static MessageSchema,
    query: &str,
    message: &mut Map<String, Value>,
) -> Result<(), CodecError> {
    if query.is_empty() {
        return Ok(());
    }
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query).map_err(CodecError::Query)?;
    let mut grouped: Vec<(String, Vec<String>)> = Vec::new();
    let mut index: HashMap<String, usize> = HashMap::new();
    for (key, value) in pairs {
        match index.get(&key) {
            Some(&i) => grouped[i].1.push(value),
            None => {
                index.insert(key.clone(), grouped.len());
                grouped.push((key, vec![value]));
            }
        }
    }
    for (key, values) in grouped {
        bind_one(schema, &key, &values, message)?;
    }
    Ok(())
}

fn bind_one(
    schema: &'static MessageSchema,
    key: &str,
    values: &[String],
    message: &mut Map<String, Value>,
) -> Result<(), CodecError> {
    let segments: Vec<&str> = key.split('.').collect();
    let mut current = schema;
    let mut path: Vec<&'static FieldSchema> = Vec::new();
    for (i, segment) in segments.iter().enumerate() {
        let Some(field) = current.field(segment) else {
            return Ok(());
        };
        path.push(field);
        if i + 1 < segments.len() {
            match field.kind {
                FieldKind::Message(inner) => current = inner,
                _ => {
                    return Err(CodecError::QueryField(format!(
                        "invalid path: {:?} is not a message",
                        echo(segment)
                    )))
                }
            }
        }
    }
    let Some((last, parents)) = path.split_last() else {
        return Ok(());
    };
    if values.len() > 1 {
        return Err(CodecError::QueryField(format!(
            "too many values for field {:?}: {}",
            last.proto,
            echo(values.join(", "))
        )));
    }
    let raw = values.first().map_or("", String::as_str);
    if raw.is_empty() {
        return Ok(());
    }
    let value = match last.kind {
        FieldKind::String => Value::String(raw.to_string()),
        FieldKind::Int32 => Value::from(raw.parse::<i32>().map_err(|e| {
            CodecError::QueryField(format!(
                "parsing field {:?}: {:?}: {e}",
                last.proto,
                echo(raw)
            ))
        })?),
        FieldKind::Message(_) => {
            return Err(CodecError::QueryField(format!(
                "field {:?} is a message, not a value",
                last.proto
            )))
        }
    };
    let mut target = message;
    for parent in parents {
        let slot = target
            .entry(parent.proto.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        target = match slot {
            Value::Object(object) => object,
            _ => return Ok(()),
        };
    }
    target.insert(last.proto.to_string(), value);
    Ok(())
}

/// Turns a normalized message into the typed request.
pub fn into_request<T: ProtoRequest>(message: Map<String, Value>) -> Result<T, CodecError> {
    serde_json::from_value(Value::Object(message)).map_err(|e| CodecError::Body(e.to_string()))
}

/// Whether a `Content-Type` selects the JSON codec: kratos picked the codec by the subtype
/// (`application/json`, parameters such as `charset` ignored).
pub fn is_json_content_type(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    essence
        .split_once('/')
        .is_some_and(|(_, subtype)| subtype.trim().eq_ignore_ascii_case("json"))
}

#[cfg(test)]
mod tests {
    use super::*;

    static INNER: MessageSchema = MessageSchema {
        fields: &[
            string("node_name", "nodeName"),
            string("uid", "uid"),
            FieldSchema {
                proto: "pageNo",
                json: "pageNo",
                kind: FieldKind::Int32,
            },
        ],
    };
    static OUTER: MessageSchema = MessageSchema {
        fields: &[
            FieldSchema {
                proto: "filters",
                json: "filters",
                kind: FieldKind::Message(&INNER),
            },
            string("pod_uid", "podUid"),
        ],
    };

    fn body(text: &str) -> Result<Value, String> {
        decode_body(&OUTER, text.as_bytes())
            .map(Value::Object)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn both_names_are_accepted_and_unknown_fields_ignored() {
        assert_eq!(
            body(r#"{"filters":{"nodeName":"a","x":1},"pod_uid":"p","extra":[1]}"#).unwrap(),
            serde_json::json!({"filters":{"node_name":"a"},"pod_uid":"p"})
        );
    }

    #[test]
    fn strict_types_and_duplicates_are_rejected() {
        assert!(body(r#"{"podUid":1}"#).is_err());
        assert!(body(r#"{"podUid":"a","pod_uid":"b"}"#).is_err());
        assert!(body(r#"{"filters":"x"}"#).is_err());
        assert!(body(r#"[1]"#).is_err());
        assert!(body(r#"{"#).is_err());
        assert!(body(r#"{"filters":{"pageNo":1.5}}"#).is_err());
        assert!(body(r#"{"filters":{"pageNo":"x"}}"#).is_err());
    }

    #[test]
    fn a_field_given_twice_under_one_name_is_rejected_as_protojson_does() {
        assert_eq!(
            body(r#"{"filters":{"nodeName":"a"},"filters":{"nodeName":"b"}}"#),
            Err("body unmarshal proto: duplicate field \"filters\"".to_string())
        );
        assert_eq!(
            body(r#"{"filters":{"uid":"a","uid":"b"}}"#),
            Err("body unmarshal proto: duplicate field \"uid\"".to_string())
        );
        // Unknown fields are discarded, given twice or not.
        assert!(body(r#"{"other":1,"other":2,"podUid":"p"}"#).is_ok());
    }

    #[test]
    fn quoted_values_are_cut_to_a_prefix_with_their_length() {
        let huge = format!(r#"{{"filters":"{}"}}"#, "y".repeat(1_048_000));
        let message = body(&huge).unwrap_err();
        assert!(message.len() < 400, "{} bytes", message.len());
        assert!(message.contains("(1048002 bytes)"), "{message}");
        let many = (0..10_000)
            .map(|i| format!("podUid={i}"))
            .collect::<Vec<_>>();
        let mut message = Map::new();
        let error = bind_query(&OUTER, &many.join("&"), &mut message).unwrap_err();
        assert!(error.to_string().len() < 400, "{error}");
    }

    #[test]
    fn null_is_unset_and_int32_takes_numeric_strings() {
        assert_eq!(
            body(r#"{"filters":null,"podUid":null}"#).unwrap(),
            serde_json::json!({})
        );
        assert_eq!(
            body(r#"{"filters":{"pageNo":"7"}}"#).unwrap(),
            serde_json::json!({"filters":{"pageNo":7}})
        );
        assert_eq!(body("").unwrap(), serde_json::json!({}));
    }

    #[test]
    fn query_binds_nested_fields_and_wins_over_the_body() {
        let mut message = decode_body(&OUTER, br#"{"filters":{"uid":"body"}}"#).unwrap();
        bind_query(
            &OUTER,
            "filters.uid=query&filters.node_name=n&podUid=&unknown=1&filters.nope=2",
            &mut message,
        )
        .unwrap();
        assert_eq!(
            Value::Object(message),
            serde_json::json!({"filters":{"uid":"query","node_name":"n"}})
        );
    }

    #[test]
    fn query_errors_name_the_field() {
        let mut message = Map::new();
        for bad in [
            "podUid=a&podUid=b",
            "podUid.x=1",
            "filters=x",
            "filters.pageNo=x",
        ] {
            let error = bind_query(&OUTER, bad, &mut message).unwrap_err();
            assert!(matches!(error, CodecError::QueryField(_)), "{bad}: {error}");
        }
    }

    #[test]
    fn json_content_types() {
        for yes in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
        ] {
            assert!(is_json_content_type(yes), "{yes}");
        }
        for no in [
            "",
            "text/plain",
            "application/x-www-form-urlencoded",
            "json",
        ] {
            assert!(!is_json_content_type(no), "{no}");
        }
    }
}
