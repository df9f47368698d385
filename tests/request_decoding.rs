//! Property test: the REST request decoders (`src/reply/request.rs`) never panic, whatever
//! JSON body or query string a caller sends to any route's request message; bad input is a
//! `400 CODEC` error, never a crash. Bodies mix the schemas' own field names (so nested
//! messages and typed fields are reached) with arbitrary keys, values and raw bytes.

use hami_webui_server::reply::cards::{GpuRequest, GpusRequest};
use hami_webui_server::reply::containers::{ContainerRequest, ContainersRequest};
use hami_webui_server::reply::monitor::{InstantRequest, RangeRequest};
use hami_webui_server::reply::nodes::{NodeRequest, NodesRequest};
use hami_webui_server::reply::request::{
    bind_query, decode_body, into_request, CodecError, FieldKind, MessageSchema, ProtoRequest,
};
use hami_webui_server::reply::summary::{SummaryRequest, UsageFilter};
use proptest::prelude::*;
use serde_json::{Map, Value};

/// Every field name (proto and JSON) of `schema` and the messages nested in it.
fn names(schema: &'static MessageSchema, out: &mut Vec<&'static str>) {
    for field in schema.fields {
        out.push(field.proto);
        out.push(field.json);
        if let FieldKind::Message(inner) = field.kind {
            names(inner, out);
        }
    }
}

fn all_names() -> Vec<&'static str> {
    let mut out = Vec::new();
    for schema in [
        InstantRequest::SCHEMA,
        RangeRequest::SCHEMA,
        GpusRequest::SCHEMA,
        GpuRequest::SCHEMA,
        NodesRequest::SCHEMA,
        NodeRequest::SCHEMA,
        ContainersRequest::SCHEMA,
        ContainerRequest::SCHEMA,
        SummaryRequest::SCHEMA,
        UsageFilter::SCHEMA,
    ] {
        names(schema, &mut out);
    }
    out.sort_unstable();
    out.dedup();
    out
}

fn key() -> impl Strategy<Value = String> {
    let known: Vec<String> = all_names().into_iter().map(str::to_string).collect();
    prop_oneof![
        3 => proptest::sample::select(known),
        1 => "[a-zA-Z_.\\[\\]]{0,12}",
        1 => any::<String>(),
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(Value::from(2_147_483_648i64)),
        Just(Value::from(-2_147_483_649i64)),
        Just(Value::from(1e20)),
        "[0-9eE+.-]{0,12}".prop_map(Value::from),
        any::<String>().prop_map(Value::from),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            proptest::collection::vec((key(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn query_string() -> impl Strategy<Value = String> {
    let pair = (key(), "[a-zA-Z0-9%&=+.\\-]{0,8}").prop_map(|(k, v)| format!("{k}={v}"));
    prop_oneof![
        proptest::collection::vec(pair, 0..8).prop_map(|pairs| pairs.join("&")),
        any::<String>(),
    ]
}

/// Decodes `body` and `query` as `T` as the extractors do: the first failure, if any. Every
/// failure is a `CodecError` (the `400 CODEC` answer) by type; what matters here is that
/// nothing panics.
fn decode_as<T: ProtoRequest>(body: &[u8], query: &str) -> Result<(), CodecError> {
    let mut message = decode_body(T::SCHEMA, body)?;
    bind_query(T::SCHEMA, query, &mut message)?;
    into_request::<T>(message).map(drop)
}

/// [`decode_as`] for every route's request message.
fn decode_everywhere(body: &[u8], query: &str) -> Vec<Result<(), CodecError>> {
    vec![
        decode_as::<InstantRequest>(body, query),
        decode_as::<RangeRequest>(body, query),
        decode_as::<GpusRequest>(body, query),
        decode_as::<GpuRequest>(body, query),
        decode_as::<NodesRequest>(body, query),
        decode_as::<NodeRequest>(body, query),
        decode_as::<ContainersRequest>(body, query),
        decode_as::<ContainerRequest>(body, query),
        decode_as::<SummaryRequest>(body, query),
        decode_as::<UsageFilter>(body, query),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_json_bodies_never_panic(body in json(), query in query_string()) {
        let _ = decode_everywhere(body.to_string().as_bytes(), &query);
    }

    #[test]
    fn arbitrary_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = decode_everywhere(&body, "");
    }
}

#[test]
fn deeply_nested_bodies_are_codec_errors() {
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let deep_object = format!("{}1{}", "{\"filters\":".repeat(50_000), "}".repeat(50_000));
    for body in [deep, deep_object] {
        for outcome in decode_everywhere(body.as_bytes(), "") {
            // Refused by the JSON parser's depth limit, not accepted and not a crash.
            match outcome {
                Err(CodecError::Syntax(error)) => {
                    assert!(error.to_string().contains("recursion limit"), "{error}")
                }
                other => panic!("a 100,000-deep body was not refused as too deep: {other:?}"),
            }
        }
    }
    // Just below the parser's limit the same shape decodes.
    let shallow = format!("{}1{}", "{\"filters\":".repeat(2), "}".repeat(2));
    assert!(decode_as::<GpusRequest>(shallow.as_bytes(), "").is_ok());
}
