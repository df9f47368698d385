//! hami-webui-server: a drop-in Rust backend for HAMi-WebUI.
//!
//! Map of the crate:
//! - [`cli`], [`config`]: flags and one typed `Config` from the `--conf` YAML file and
//!   `HAMI_WEBUI__*` overrides; [`duration`] and [`selector`] parse the Go-syntax values in it.
//! - [`device`]: the plain device model (devices, allocations, vendors) every other part speaks.
//! - [`device_catalog`]: HAMi's device ConfigMap: the pure `vnpus` parser (Ascend models and
//!   templates) and the actor watching that one ConfigMap for `GET /v1/device-config`.
//! - [`device_metrics`]: pure: a snapshot plus one cycle's batched query results → the
//!   `/metrics` device and container families.
//! - [`vendor`]: pure decoders, one module per vendor, from Kubernetes objects to the device model.
//! - [`http`]: the actix-web layer (routes, health, `/metrics`); [`error`] is its single
//!   error-to-HTTP mapping.
//! - [`reply`]: pure builders of the REST replies from a snapshot (JSON as the Go backend renders it).
//! - [`readiness`]: what `/readyz` waits for; [`telemetry`]: self-metrics and logging.
//! - [`snapshot`]: `ClusterSnapshot`, the immutable view every reader gets; built by the
//!   actors [`node_cache`] (inventory) and [`pod_cache`] (pods, usage), fed through [`watch`]
//!   by kube-rs watchers or by a [`snapshot_file`].
//! - [`metrics_refresher`]: the actor running refresh cycles and publishing `/metrics`.
//! - [`query_client`]: the one actor that talks to Prometheus / VictoriaMetrics.
//! - [`synthetic`]: generated clusters and exporter data for tests, benchmarks and demos.
//! - [`web`]: the public listener: the HAMi-WebUI console's files, `/api/vgpu/v1/*` through
//!   the same route table, `/health_check`, and the `--healthcheck` probe.
//! - [`scheduling`]: pure: a GPU pod's scheduling stage, diagnosis, requests and 2.0 container
//!   states; [`scheduling_events`]: the actor reading (and briefly caching) one pod's events.
//! - [`kubernetes`]: the API client; [`server`]: wiring of all of the above.

pub mod catalog;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod device;
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
