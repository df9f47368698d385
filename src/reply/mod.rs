//! Builders of the REST replies the HAMi-WebUI frontend reads, and the request messages it
//! sends: snapshot (+ metrics-store values) in, reply structs out, JSON exactly as the Go
//! backend rendered it through protobuf JSON (every field present, camelCase names, proto
//! field order, `[]` for empty lists).
//!
//! Pure: no actor, no I/O, no HTTP type. The handlers in [`crate::http`] gather the inputs
//! (a snapshot, the store's answers), call one of these and serialize; their errors become
//! HTTP answers in [`crate::error`].
//!
//! - [`request`]: kratos-compatible decoding of bodies and query strings.
//! - [`cards`], [`nodes`], [`containers`], [`summary`]: one file per group of routes;
//!   [`workloads`] and [`scheduling`] serve upstream 2.0's workload list and pod diagnosis;
//!   [`monitor`] the PromQL pass-through, guarded by [`query_guard`].
//! - [`upstream`]: the list routes' two batched PromQL lookups and how their answers apply.
//! - [`allocation`]: how a container's slices are described.
//! - [`protojson`], [`times`]: scalar and time renderings (and parsings) shared by the replies.

pub mod allocation;
pub mod cards;
pub mod containers;
pub mod device_config;
pub mod monitor;
pub mod nodes;
pub mod protojson;
pub mod query_guard;
pub mod request;
pub mod scheduling;
pub mod summary;
pub mod times;
pub mod upstream;
pub mod workloads;
