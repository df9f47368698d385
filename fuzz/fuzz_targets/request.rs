//! REST request decoding as kratos did it (`reply::request::decode_body`, `bind_query`,
//! `into_request`) for every route's request message, on a query string and a body from
//! the input (format: `hami_webui_server_fuzz::split_request`). Bad input is a `CodecError`
//! (the `400 CODEC` answer, by type), never a panic.
#![no_main]

use hami_webui_server::reply::monitor::{InstantRequest, RangeRequest};
use hami_webui_server::reply::cards::{GpuRequest, GpusRequest};
use hami_webui_server::reply::containers::{ContainerRequest, ContainersRequest};
use hami_webui_server::reply::nodes::{NodeRequest, NodesRequest};
use hami_webui_server::reply::request::{bind_query, decode_body, into_request, ProtoRequest};
use hami_webui_server::reply::summary::{SummaryRequest, UsageFilter};
use hami_webui_server_fuzz::split_request;
use libfuzzer_sys::fuzz_target;

/// Decodes as the extractors do: body, then the query bound over it, then the typed message.
fn decode_as<T: ProtoRequest>(body: &[u8], query: &str) {
    let result = decode_body(T::SCHEMA, body).and_then(|mut message| {
        bind_query(T::SCHEMA, query, &mut message)?;
        into_request::<T>(message).map(drop)
    });
    // Any error must render as a message (the reply's text).
    if let Err(error) = result {
        let _ = error.to_string();
    }
}

fuzz_target!(|data: &[u8]| {
    let (query, body) = split_request(data);
    decode_as::<InstantRequest>(body, &query);
    decode_as::<RangeRequest>(body, &query);
    decode_as::<GpusRequest>(body, &query);
    decode_as::<GpuRequest>(body, &query);
    decode_as::<NodesRequest>(body, &query);
    decode_as::<NodeRequest>(body, &query);
    decode_as::<ContainersRequest>(body, &query);
    decode_as::<ContainerRequest>(body, &query);
    decode_as::<SummaryRequest>(body, &query);
    decode_as::<UsageFilter>(body, &query);
});
