//! hami-webui-server: a drop-in Rust backend for HAMi-WebUI.
//!
//! Map of the crate, from the top layer down; a module imports only from layers below it
//! (`tests/layout.rs` checks that no module imports form a cycle):
//!
//! - [`server`]: wiring. `start` starts the actors and returns the `AppState`; `run` serves it
//!   on bound listeners until a shutdown future resolves. `main` adds flags and signals.
//! - [`http`]: the actix-web layer. One app builder (`http::app`) for the internal listener
//!   (`/v1/*`, `/metrics`, `/readyz`, `/livez`) and every test; `http::public` for the public
//!   listener (the console, `/api/vgpu/v1/*`, `/health_check`); extractors, content
//!   negotiation and the kept replies. [`error`] maps every error to HTTP, once.
//! - [`reply`]: pure builders of the REST replies from a snapshot (and the store's answers),
//!   JSON as the Go backend rendered it; request decoding; the PromQL guard.
//! - [`metrics`]: the `MetricsRefresher` actor running refresh cycles, and the pure builders
//!   of the `/metrics` device and container families from a snapshot and batched answers.
//! - [`query_client`]: the `QueryClient` actor, the one thing that talks to Prometheus or
//!   VictoriaMetrics.
//! - [`cluster`]: the `NodeCache`, `PodCache`, catalog and event actors fed by kube-rs
//!   watchers (or a `--snapshot` file), and the immutable `ClusterSnapshot` they publish.
//! - [`vendor`]: pure decoders, one module per vendor, from Kubernetes objects to the device
//!   model; [`catalog`]: the pure parser of HAMi's device ConfigMap.
//! - [`config`]: one typed `Config` from the `--conf` YAML file and `HAMI_WEBUI__*`
//!   overrides, with every default; [`cli`]: the flags.
//! - [`device`]: the plain device model every other part speaks; [`echo`]: how client text
//!   is quoted in errors and logs (a prefix and its length); [`readiness`]: what
//!   `/readyz` waits for; [`telemetry`]: self-metrics and logging; [`memory`]: allocator
//!   tuning.
//! - `synthetic` (feature `synthetic`, tests and benches only): generated clusters and
//!   exporter data.

pub mod background;
pub mod catalog;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod device;
pub mod echo;
pub mod error;
pub mod http;
pub mod memory;
pub mod metrics;
pub mod query_client;
pub mod readiness;
pub mod reply;
pub mod server;
#[cfg(any(test, feature = "synthetic"))]
pub mod synthetic;
pub mod telemetry;
pub mod vendor;
