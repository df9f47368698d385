//! The configuration sources as written: the Go backend's YAML keys (both generations) and
//! their `HAMI_WEBUI__*` overrides, every value optional and durations as text. Only this
//! shape is deserialized by serde; [`super::Config::from_raw`] gives it meaning.

use std::collections::BTreeMap;

use serde::Deserialize;

/// The sources as written: every field optional, durations as text. Only this shape is
/// deserialized by serde; meaning is given by [`Config::from_raw`].
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct RawConfig {
    pub(super) server: RawServer,
    pub(super) prometheus: RawPrometheus,
    pub(super) exporter: RawExporter,
    pub(super) node_selectors: BTreeMap<String, Option<String>>,
    pub(super) scheduling: RawScheduling,
    pub(super) device_config: RawDeviceConfig,
    pub(super) ascend: RawAscend,
    pub(super) kubernetes: RawKubernetes,
    pub(super) web: RawWeb,
    pub(super) monitor: RawMonitor,
    pub(super) leader_election: RawLeaderElection,
    /// Keys of an unmerged upstream pull request that appear in some published files;
    /// accepted and ignored so those files load without a warning.
    pub(super) exporter_concurrency_limit: Option<serde::de::IgnoredAny>,
    pub(super) metrics_generate_interval: Option<serde::de::IgnoredAny>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawServer {
    pub(super) http: RawListener,
    pub(super) grpc: Option<RawListener>,
    pub(super) timezone: Option<String>,
    pub(super) shutdown_timeout: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawListener {
    pub(super) network: Option<String>,
    pub(super) addr: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) client_request_timeout: Option<String>,
    pub(super) keep_alive: Option<String>,
    pub(super) reply_cache_ttl: Option<String>,
    pub(super) reply_max_staleness: Option<String>,
    pub(super) reply_store_staleness: Option<String>,
    pub(super) body_timeout: Option<String>,
    pub(super) max_connections: Option<i64>,
    pub(super) workers: Option<i64>,
    pub(super) scrape_send_buffer: Option<i64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawPrometheus {
    pub(super) address: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) lookup_timeout: Option<String>,
    pub(super) auth: Option<String>,
    pub(super) tls: RawTls,
    pub(super) authorization: RawAuthorization,
    pub(super) basic_auth: RawBasicAuth,
    pub(super) max_concurrency: Option<i64>,
    pub(super) max_queue: Option<i64>,
    pub(super) max_response_bytes: Option<i64>,
    pub(super) path_prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawTls {
    pub(super) ca_file: Option<String>,
    pub(super) cert_file: Option<String>,
    pub(super) key_file: Option<String>,
    pub(super) server_name: Option<String>,
    pub(super) insecure_skip_verify: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawAuthorization {
    #[serde(rename = "type")]
    pub(super) scheme: Option<String>,
    pub(super) credentials_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawBasicAuth {
    pub(super) username_file: Option<String>,
    pub(super) password_file: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawExporter {
    pub(super) interval: Option<String>,
    pub(super) timeout: Option<String>,
    pub(super) stale_cycles: Option<i64>,
    pub(super) window_refresh: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawScheduling {
    pub(super) resource_names: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawDeviceConfig {
    pub(super) enabled: Option<bool>,
    pub(super) namespace: Option<String>,
    pub(super) name: Option<String>,
    pub(super) key: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawAscend {
    pub(super) annotationless_pod_mode: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawKubernetes {
    pub(super) unready_after: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawWeb {
    pub(super) enabled: Option<bool>,
    pub(super) listen_address: Option<String>,
    pub(super) static_dir: Option<String>,
    pub(super) base_path: Option<String>,
    /// `null`/absent: no policy; `[]`: no framing; a list: these sources.
    pub(super) frame_ancestors: Option<Vec<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawMonitor {
    pub(super) allowed_metric_prefixes: Option<Vec<String>>,
    pub(super) max_query_length: Option<i64>,
}

/// Keys of an unmerged upstream pull request found in some published config files;
/// accepted silently.
pub(super) const LEGACY_IGNORED: [&str; 2] =
    ["exporter_concurrency_limit", "metrics_generate_interval"];

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RawLeaderElection {
    pub(super) enabled: Option<bool>,
    pub(super) lease_name: Option<String>,
    pub(super) namespace: Option<String>,
    pub(super) identity: Option<String>,
    pub(super) lease_duration: Option<String>,
    pub(super) renew_deadline: Option<String>,
    pub(super) retry_period: Option<String>,
}
