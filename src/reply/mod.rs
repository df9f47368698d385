//! Builders of the REST replies the HAMi-WebUI frontend reads, and the request messages
//! it sends: snapshot (+ metrics-store overrides) in, reply structs out, JSON exactly as the
//! Go backend rendered it through protobuf JSON (every field present, camelCase names, proto
//! field order, `[]` for empty lists). Apart from [`context`] no actor and no I/O: the handlers in [`crate::http`] ask
//! for a snapshot, call one of these, and serialize.
//!
//! - [`request`]: kratos-compatible decoding of bodies and query strings.
//! - [`cards`], [`nodes`], [`containers`], [`summary`]: one file per group of routes;
//!   [`workloads`] and [`scheduling`] serve upstream 2.0's workload list and pod diagnosis.
//! - [`context`]: the handlers' access to configuration, snapshot and metrics store.
//! - [`upstream`]: the list routes' two batched PromQL lookups and their fallbacks.
//! - [`protojson`], [`times`]: scalar and time renderings shared by the replies.

pub mod allocation;
pub mod cache;
pub mod cards;
pub mod containers;
pub mod context;
pub mod nodes;
pub mod protojson;
pub mod request;
pub mod scheduling;
pub mod summary;
pub mod times;
pub mod upstream;
pub mod workloads;
