//! One typed [`Config`], built once at start from the Go backend's YAML file (`--conf`) and
//! `HAMI_WEBUI__<SECTION>__<KEY>` environment overrides, validated before anything starts.
//!
//! The file format is the Go backend's (both the 8f42445 and the 2.0 generation), so an
//! operator's existing ConfigMap loads unchanged. Loading happens in two steps: the `config`
//! crate merges file and environment into [`RawConfig`] (every value optional, durations as
//! text), then [`Config::from_raw`] applies defaults and validates, naming the exact key of
//! any bad value. Keys we do not know are collected, not rejected, so the caller can warn once.

mod build;
pub mod duration;
mod file;
pub mod selector;
mod web;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::device::{AnnotationlessPodMode, Vendor};

pub use file::RawConfig;
pub use web::{
    frame_ancestors_policy, normalize_base_path, parse_frame_ancestors_json, WebConfig, WebFlags,
};

/// The environment prefix; `HAMI_WEBUI__SERVER__HTTP__ADDR` overrides `server.http.addr`.
pub const ENV_PREFIX: &str = "HAMI_WEBUI";

/// Why the configuration cannot be used. Every variant names the key (or file) at fault so
/// the one line printed at exit tells the operator what to fix.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file is missing, unreadable or not YAML of the expected shape.
    #[error("{path}: {source}")]
    File {
        path: String,
        #[source]
        source: config::ConfigError,
    },
    /// A key holds a value of the wrong type (a map where a string belongs, …).
    #[error("{0}")]
    Shape(String),
    /// A key holds a value of the right type that we cannot use.
    #[error("{key}: {reason}")]
    Invalid { key: String, reason: String },
}

impl ConfigError {
    pub(crate) fn invalid(key: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self::Invalid {
            key: key.into(),
            reason: reason.to_string(),
        }
    }
}

/// Everything the process is configured with, after defaults and validation.
#[derive(Debug, Clone)]
pub struct Config {
    pub server: ServerConfig,
    pub prometheus: PrometheusConfig,
    pub exporter: ExporterConfig,
    /// Vendor → label selector for the nodes whose devices we inventory. Vendors the Go
    /// backend knew and that are absent here match every node, as in Go; see
    /// [`NodeSelectors`].
    pub node_selectors: NodeSelectors,
    pub scheduling: SchedulingConfig,
    pub device_config: DeviceConfigRef,
    pub ascend: AscendConfig,
    pub kubernetes: KubernetesConfig,
    /// The public listener: web console, `/api/vgpu`, `/health_check` (upstream 2.0's web
    /// entry; see [`crate::http::public`]).
    pub web: WebConfig,
    /// Limits on what a caller may ask of the metrics store through the PromQL pass-through.
    pub monitor: MonitorConfig,
    /// Which replica publishes the device families.
    pub leader_election: LeaderElectionConfig,
    /// Keys present in the sources that no part of the server reads, for one warning.
    pub unknown_keys: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub http: HttpConfig,
    /// Whether the file configured gRPC, which we accept but do not serve (upstream 2.0
    /// dropped it too); used only for one log line.
    pub grpc_configured: bool,
    /// Zone in which times are rendered and range-query times parsed. The Go backend used
    /// the process's local zone (the chart sets `TZ`); so does the default here.
    pub timezone: jiff::tz::TimeZone,
    /// How long in-flight requests may run after SIGTERM before the process exits anyway;
    /// below Kubernetes' default 30 s grace period.
    pub shutdown_timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Listen address of the internal listener (`/v1/*`, `/metrics`, `/readyz`, `/livez`).
    pub addr: String,
    /// Per-request deadline, as Go's kratos server applied it.
    pub timeout: Duration,
    /// Limits on what one client connection may hold; see [`ConnectionLimits`].
    pub limits: ConnectionLimits,
    /// Threads serving each listener's connections (ours). See [`default_workers`].
    pub workers: usize,
    /// Send buffer (`SO_SNDBUF`, bytes) of a `GET /metrics` connection on the internal
    /// listener (ours; 0 leaves the kernel's autotuning). See [`crate::http::direct_scrape`].
    pub scrape_send_buffer: usize,
    /// How long a list reply that depends on the metrics store may be served again to an
    /// identical request (ours; `0s` rebuilds every such reply). Replies built from the
    /// cluster snapshot alone are reused until the snapshot changes, whatever this says.
    pub reply_cache_ttl: Duration,
    /// How long after the cluster changed the previous reply may still be served while its
    /// successor is built in the background (ours; `0s` makes every request after a change
    /// wait for the new build).
    pub reply_max_staleness: Duration,
    /// How long after its store values aged out (`reply_cache_ttl`) a card or node list may
    /// still be served while newer values are fetched in the background (ours). Those values
    /// are capacity gauges the store itself holds a scrape interval old; the default is
    /// Prometheus's default scrape interval, so that a browser coming back after a pause is
    /// not the one that waits for the store. `0s` makes it wait.
    pub reply_store_staleness: Duration,
}

/// What idle, slow or numerous clients may hold, so that a thousand idle sockets or a
/// slowloris cannot starve the probes and the frontend (ours; not in the Go config).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// Time a client has to send a complete request head; slower ones are disconnected.
    pub client_request_timeout: Duration,
    /// Time a client has to send a whole request body once its head arrived; slower ones
    /// get `408` and the connection is closed (a trickled body held a descriptor forever).
    pub body_timeout: Duration,
    /// How long an idle keep-alive connection stays open.
    pub keep_alive: Duration,
    /// Concurrent connections per worker thread; further ones wait in the accept backlog.
    pub max_connections: usize,
}

/// The default of `server.http.workers`: one per core, and at least [`MIN_WORKERS`].
///
/// A reply is copied into its connection's buffer and then to the socket on the thread that
/// serves the connection, and the largest ones take milliseconds (at 10,000 GPUs a gzip
/// scrape is 15 MB, the container list 3.8 MB). With one worker per core on a two-core
/// node, eight Prometheus scrapes queued four deep behind each other and behind whatever
/// else ran on the node: `/metrics` p99 was 118–138 ms against 44–54 ms for a bare
/// thread-per-connection server sending the same bytes. With eight workers the kernel
/// shares the cores between the transfers as it does for that server: 62–68 ms, and the
/// peak RSS did not move (each worker is an event loop; an idle one holds a few KiB).
pub fn default_workers(cores: usize) -> usize {
    cores.max(MIN_WORKERS)
}

/// See [`default_workers`].
pub const MIN_WORKERS: usize = 8;

/// The default of `server.http.scrape_send_buffer`: 128 KiB, which the kernel doubles.
/// Small enough that a scrape's bytes are still in the CPU caches when the kernel hands them
/// on (the measurements are in [`crate::http::direct_scrape`]); at 256 KiB in flight, a
/// scraper 1 ms away still receives 250 MB/s, a 15 MB scrape in 60 ms.
pub const DEFAULT_SCRAPE_SEND_BUFFER: usize = 128 * 1024;

#[derive(Debug, Clone)]
pub struct PrometheusConfig {
    pub address: String,
    /// Default deadline of one upstream query.
    pub timeout: Duration,
    /// Deadline of the capacity lookups the card and node lists make (ours): past it the
    /// lists answer from the snapshot alone, so a slow or trickling store cannot hold the
    /// console's main pages for the whole `timeout`.
    pub lookup_timeout: Duration,
    /// Deprecated upstream: sent verbatim as the `Authorization` header when set.
    pub auth: Option<String>,
    pub tls: TlsConfig,
    pub authorization: Option<AuthorizationConfig>,
    pub basic_auth: Option<BasicAuthConfig>,
    /// Upper bound on requests in flight to the upstream at once: the guard against the
    /// seed's vmselect OOM.
    pub max_concurrency: usize,
    /// Callers waiting for a slot beyond this get `Overloaded` at once instead of queueing.
    pub max_queue: usize,
    /// Responses larger than this are refused while streaming, never buffered whole.
    pub max_response_bytes: usize,
    /// Path inserted before `/api/v1/…`, e.g. `/select/0/prometheus` for a VictoriaMetrics
    /// cluster.
    pub path_prefix: String,
}

#[derive(Debug, Clone, Default)]
pub struct TlsConfig {
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub server_name: Option<String>,
    /// Off unless the operator asks: the 8f42445 backend never verified certificates.
    pub insecure_skip_verify: bool,
}

#[derive(Debug, Clone)]
pub struct AuthorizationConfig {
    /// Scheme sent before the credentials (`Bearer` when unset, as Prometheus does).
    pub scheme: String,
    /// Read at each use (cached by modification time), so rotated tokens are picked up.
    pub credentials_file: PathBuf,
}

#[derive(Debug, Clone)]
pub struct BasicAuthConfig {
    pub username_file: PathBuf,
    pub password_file: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ExporterConfig {
    /// Time between the starts of two metrics refresh cycles.
    pub interval: Duration,
    /// Deadline of one refresh cycle.
    pub timeout: Duration,
    /// Cycles a family keeps its last good values after its query failed.
    pub stale_cycles: u32,
    /// Least time between two askings of the windowed queries (ours; the vGPU monitor's
    /// ten-minute means). Each costs the store the most of a cycle's queries: at 10,000 GPUs
    /// VictoriaMetrics spends 2.0–2.5 CPU-s on it, as much as on all the others together,
    /// while a ten-minute mean moves little in 30 s. At the default interval (30 s) it is
    /// asked every cycle as before; a shorter interval no longer multiplies its cost. A
    /// failed answer is asked again at the next cycle whatever this says. `0s`: every cycle.
    pub window_refresh: Duration,
}

#[derive(Debug, Clone, Default)]
pub struct SchedulingConfig {
    /// Exact resource names that mark a pending pod as asking for a GPU; empty = HAMi's.
    pub resource_names: Vec<String>,
}

/// Where HAMi's device ConfigMap lives (upstream 2.0's `device_config`).
#[derive(Debug, Clone)]
pub struct DeviceConfigRef {
    pub enabled: bool,
    pub namespace: String,
    pub name: String,
    pub key: String,
}

#[derive(Debug, Clone)]
pub struct AscendConfig {
    pub annotationless_pod_mode: AnnotationlessPodMode,
}

#[derive(Debug, Clone)]
pub struct KubernetesConfig {
    /// How long a watcher may keep failing before `/readyz` reports it; below this the last
    /// known state is served as if nothing happened.
    pub unready_after: Duration,
}

/// Leadership among replicas through a `coordination.k8s.io/v1` Lease (ours): only the
/// leader refreshes and publishes the device and container families of `/metrics`.
/// Durations follow client-go's (15 s / 10 s / 2 s), and must keep
/// `lease_duration > renew_deadline > retry_period`.
#[derive(Debug, Clone)]
pub struct LeaderElectionConfig {
    /// Off: this replica always publishes (one replica, or `--snapshot`).
    pub enabled: bool,
    pub lease_name: String,
    /// The release namespace (`POD_NAMESPACE`, else the service account's, else `default`).
    pub namespace: String,
    /// This replica's name in the Lease (`POD_NAME`, else `HOSTNAME`, which Kubernetes sets
    /// to the pod name).
    pub identity: String,
    /// How long a Lease that stopped being renewed keeps others waiting.
    pub lease_duration: Duration,
    /// How long the leader keeps leading without a successful renewal.
    pub renew_deadline: Duration,
    /// Time between two tries to acquire or renew.
    pub retry_period: Duration,
}

/// What the PromQL pass-through (`/v1/monitor/query/*`) lets a caller send upstream (ours;
/// not in the Go config). Checked before anything leaves the process.
#[derive(Debug, Clone)]
pub struct MonitorConfig {
    /// Metric-name prefixes a pass-through query may select; empty allows every metric. Each
    /// selector of the parsed query must be confined to one of them, so `{job="x"}` or a
    /// `__name__` regex that could reach other metrics is refused.
    pub allowed_metric_prefixes: Vec<String>,
    /// Longest query text accepted, in bytes.
    pub max_query_length: usize,
}

impl Default for MonitorConfig {
    fn default() -> Self {
        Self {
            allowed_metric_prefixes: Vec::new(),
            max_query_length: DEFAULT_MAX_QUERY_LENGTH,
        }
    }
}

/// Default of `monitor.max_query_length`: 16 KiB, far above the frontend's longest query.
pub const DEFAULT_MAX_QUERY_LENGTH: usize = 16 << 10;

/// The parsed `node_selectors`: which vendors' decoders run on which nodes.
#[derive(Debug, Clone, Default)]
pub struct NodeSelectors {
    /// Vendors with an explicit or default selector, in `Vendor::ALL` order.
    pub by_vendor: Vec<(Vendor, kube::core::Selector)>,
    /// The configured text per vendor, for logs and the readiness page.
    pub text: BTreeMap<Vendor, String>,
}

impl NodeSelectors {
    /// The selector for `vendor`, or `None` when the vendor is only detected by its
    /// annotations (vendors the Go backend never knew and that the file does not name).
    pub fn get(&self, vendor: Vendor) -> Option<&kube::core::Selector> {
        self.by_vendor
            .iter()
            .find(|(v, _)| *v == vendor)
            .map(|(_, s)| s)
    }
}

impl Config {
    /// Loads `path` (YAML) with the process environment's overrides.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Self::load_with_env(path, std::env::vars())
    }

    /// As [`Config::load`], with the environment given explicitly so tests do not race on
    /// the process environment.
    pub fn load_with_env(
        path: &Path,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let env: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        let merged = config::Config::builder()
            .add_source(config::File::from(path).format(config::FileFormat::Yaml))
            .add_source(
                config::Environment::with_prefix(ENV_PREFIX)
                    .prefix_separator("__")
                    .separator("__")
                    .list_separator(",")
                    .with_list_parse_key("scheduling.resource_names")
                    .with_list_parse_key("web.frame_ancestors")
                    .with_list_parse_key("monitor.allowed_metric_prefixes")
                    // Needed for the list key above; scalars convert back to text where a
                    // string is expected.
                    .try_parsing(true)
                    .source(Some(env)),
            )
            .build()
            .map_err(|source| ConfigError::File {
                path: path.display().to_string(),
                source,
            })?;
        let mut unknown = Vec::new();
        let raw: RawConfig = serde_ignored::deserialize(merged, |key| {
            let key = key.to_string();
            if !file::LEGACY_IGNORED
                .iter()
                .any(|legacy| key.starts_with(legacy))
            {
                unknown.push(key);
            }
        })
        .map_err(|e: config::ConfigError| ConfigError::Shape(e.to_string()))?;
        let mut config = Config::from_raw(raw)?;
        config.unknown_keys = unknown;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn load(yaml: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let mut file = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        file.write_all(yaml.as_bytes()).unwrap();
        Config::load_with_env(
            file.path(),
            env.iter().map(|(k, v)| (k.to_string(), v.to_string())),
        )
    }

    /// The config file the 8f42445 Go backend ships.
    const GO_1X: &str = "server:\n  http:\n    addr: 0.0.0.0:8000\n    timeout: 60s\n  grpc:\n    addr: 0.0.0.0:9000\n    timeout: 60s\nprometheus:\n  address: http://localhost:9090\n  timeout: 1m\nexporter:\n  interval: 30s\n  timeout: 60s\nnode_selectors:\n  NVIDIA: gpu=on\n  Ascend: ascend=on\n  DCU: dcu=on\n  MLU: mlu=on\n  Metax: metax-tech.com/gpu.installed=true\n";

    #[test]
    fn go_backend_file_loads_without_unknown_keys() {
        let config = load(GO_1X, &[]).unwrap();
        assert_eq!(config.server.http.addr, "0.0.0.0:8000");
        assert_eq!(config.server.http.timeout, Duration::from_secs(60));
        assert!(config.server.grpc_configured);
        assert_eq!(config.prometheus.timeout, Duration::from_secs(60));
        assert_eq!(config.exporter.interval, Duration::from_secs(30));
        assert_eq!(config.node_selectors.text[&Vendor::Nvidia], "gpu=on");
        assert!(config.unknown_keys.is_empty(), "{:?}", config.unknown_keys);
    }

    #[test]
    fn upstream_2_0_file_loads() {
        let yaml = r#"
server:
  http: {network: tcp, addr: "0.0.0.0:8000", timeout: 60s}
  timezone: Asia/Shanghai
prometheus:
  address: https://prom.example:9090
  timeout: 1m
  tls: {ca_file: /etc/ca.pem, server_name: prom, insecure_skip_verify: false}
  authorization: {type: Bearer, credentials_file: /etc/token}
exporter: {interval: 30s, timeout: 60s}
node_selectors: {NVIDIA: gpu=on, HCU: hcu=on, AMD: amd.com/gpu.family}
scheduling: {resource_names: [nvidia.com/gpu, nvidia.com/gpumem]}
device_config: {enabled: true, namespace: kube-system, name: hami-scheduler-device, key: device-config.yaml}
ascend: {annotationless_pod_mode: template}
"#;
        let config = load(yaml, &[]).unwrap();
        let auth = config.prometheus.authorization.unwrap();
        assert_eq!(auth.scheme, "Bearer");
        assert_eq!(config.prometheus.tls.server_name.as_deref(), Some("prom"));

        assert_eq!(config.scheduling.resource_names.len(), 2);
        assert_eq!(
            config.ascend.annotationless_pod_mode,
            AnnotationlessPodMode::Template
        );
        assert!(config.unknown_keys.is_empty(), "{:?}", config.unknown_keys);
    }

    #[test]
    fn workers_are_read_and_default_to_one_per_core_but_at_least_eight() {
        assert_eq!(default_workers(1), MIN_WORKERS);
        assert_eq!(default_workers(2), MIN_WORKERS);
        assert_eq!(default_workers(64), 64);
        let config = load("server:\n  http:\n    workers: 3\n", &[]).unwrap();
        assert_eq!(config.server.http.workers, 3);
    }

    #[test]
    fn the_scrape_send_buffer_defaults_to_128_kib_and_0_leaves_the_kernels() {
        let config = load("", &[]).unwrap();
        assert_eq!(config.server.http.scrape_send_buffer, 128 * 1024);
        for (yaml, bytes) in [("0", 0), ("1048576", 1 << 20)] {
            let text = format!("server:\n  http:\n    scrape_send_buffer: {yaml}\n");
            let config = load(&text, &[]).unwrap();
            assert_eq!(config.server.http.scrape_send_buffer, bytes);
        }
        let error = load("server:\n  http:\n    scrape_send_buffer: -1\n", &[]).unwrap_err();
        assert!(
            error.to_string().contains("server.http.scrape_send_buffer"),
            "{error}"
        );
    }

    #[test]
    fn defaults_apply_to_an_empty_file() {
        let config = load("", &[]).unwrap();
        assert_eq!(config.server.http.addr, "0.0.0.0:8000");
        assert_eq!(config.server.http.timeout, Duration::from_secs(60));
        assert_eq!(config.prometheus.timeout, Duration::from_secs(60));
        assert_eq!(config.exporter.interval, Duration::from_secs(30));
        assert_eq!(config.exporter.timeout, Duration::from_secs(60));
        assert_eq!(config.exporter.window_refresh, Duration::from_secs(30));
        assert_eq!(config.prometheus.max_concurrency, 8);
        assert_eq!(config.prometheus.lookup_timeout, Duration::from_secs(5));
        assert_eq!(config.prometheus.max_queue, 256);
        assert_eq!(config.prometheus.max_response_bytes, 64 << 20);
        assert!(!config.prometheus.tls.insecure_skip_verify);
        assert_eq!(config.kubernetes.unready_after, Duration::from_secs(300));
        assert_eq!(config.server.shutdown_timeout, Duration::from_secs(25));
        let limits = config.server.http.limits;
        assert_eq!(limits.client_request_timeout, Duration::from_secs(5));
        assert_eq!(limits.keep_alive, Duration::from_secs(75));
        assert_eq!(limits.max_connections, 10_000);
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(config.server.http.workers, cores.max(MIN_WORKERS));
        // Go vendors without a key match every node; HCU/AMD get upstream 2.0 defaults.
        assert_eq!(config.node_selectors.text[&Vendor::Nvidia], "gpu=on");
        assert_eq!(config.node_selectors.text[&Vendor::Hcu], "hcu=on");
        assert!(config.node_selectors.get(Vendor::Biren).is_none());
    }

    #[test]
    fn bad_duration_names_the_key_in_file_and_env() {
        let err = load("exporter:\n  interval: abc\n", &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "exporter.interval: invalid duration \"abc\""
        );
        let err = load("", &[("HAMI_WEBUI__EXPORTER__INTERVAL", "abc")]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "exporter.interval: invalid duration \"abc\""
        );
    }

    #[test]
    fn environment_overrides_the_file() {
        let config = load(
            GO_1X,
            &[
                ("HAMI_WEBUI__SERVER__HTTP__ADDR", "127.0.0.1:8080"),
                ("HAMI_WEBUI__PROMETHEUS__ADDRESS", "http://vm:8428"),
                ("HAMI_WEBUI__PROMETHEUS__MAX_CONCURRENCY", "3"),
                ("HAMI_WEBUI__NODE_SELECTORS__NVIDIA", "nvidia=yes"),
                ("HAMI_WEBUI__SCHEDULING__RESOURCE_NAMES", "a/b,c/d"),
                ("OTHER__SERVER__HTTP__ADDR", "ignored"),
            ],
        )
        .unwrap();
        assert_eq!(config.server.http.addr, "127.0.0.1:8080");
        assert_eq!(config.prometheus.address, "http://vm:8428");
        assert_eq!(config.prometheus.max_concurrency, 3);
        assert_eq!(config.node_selectors.text[&Vendor::Nvidia], "nvidia=yes");
        assert_eq!(config.scheduling.resource_names, ["a/b", "c/d"]);
    }

    #[test]
    fn unknown_keys_are_reported_not_rejected() {
        let config = load(
            "server:\n  http:\n    adr: x\nfoo: 1\nexporter_concurrency_limit: 16\n",
            &[],
        )
        .unwrap();
        let mut keys = config.unknown_keys.clone();
        keys.sort();
        assert_eq!(keys, ["foo", "server.http.adr"]);
    }

    #[test]
    fn invalid_values_name_their_key() {
        let cases = [
            ("server:\n  http:\n    addr: nonsense\n", "server.http.addr"),
            (
                "prometheus:\n  address: localhost:9090\n",
                "prometheus.address",
            ),
            (
                "prometheus:\n  max_concurrency: 0\n",
                "prometheus.max_concurrency",
            ),
            ("server:\n  http:\n    workers: 0\n", "server.http.workers"),
            (
                "node_selectors:\n  NVIDIA: \"gpu in (a\"\n",
                "node_selectors.NVIDIA",
            ),
            (
                "node_selectors:\n  Nvidiaa: gpu=on\n",
                "node_selectors.Nvidiaa",
            ),
            (
                "ascend:\n  annotationless_pod_mode: maybe\n",
                "ascend.annotationless_pod_mode",
            ),
            (
                "prometheus:\n  basic_auth:\n    username_file: /u\n",
                "prometheus.basic_auth.password_file",
            ),
            (
                "prometheus:\n  tls:\n    cert_file: /c\n",
                "prometheus.tls.key_file",
            ),
            ("web:\n  listen_address: \"3000\"\n", "web.listen_address"),
            ("web:\n  base_path: /a/../b/\n", "web.base_path"),
            (
                "web:\n  frame_ancestors: [\"https://*.example.com\"]\n",
                "web.frame_ancestors",
            ),
        ];
        for (yaml, key) in cases {
            let err = load(yaml, &[]).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{key}: ")),
                "{yaml:?} gave {err:?}"
            );
        }
    }

    #[test]
    fn web_defaults_are_upstream_2_0s() {
        let web = load("", &[]).unwrap().web;
        assert!(web.enabled);
        assert_eq!(web.listen_address, ":3000");
        assert_eq!(web.bind_address(), "0.0.0.0:3000");
        assert_eq!(web.static_dir, PathBuf::from("/apps/public"));
        assert!(!web.static_dir_explicit);
        assert_eq!(web.base_path, "/");
        assert_eq!(web.frame_ancestors, None);
        assert!(load(GO_1X, &[]).unwrap().unknown_keys.is_empty());
    }

    #[test]
    fn web_section_from_file_and_env() {
        let yaml = "web:\n  enabled: false\n  listen_address: 127.0.0.1:3100\n  static_dir: /srv/ui\n  base_path: hami\n  frame_ancestors: [\"'self'\", \"https://portal.example.com\"]\n";
        let config = load(yaml, &[]).unwrap();
        assert!(config.unknown_keys.is_empty(), "{:?}", config.unknown_keys);
        let web = config.web;
        assert!(!web.enabled);
        assert_eq!(web.bind_address(), "127.0.0.1:3100");
        assert_eq!(web.static_dir, PathBuf::from("/srv/ui"));
        assert!(web.static_dir_explicit);
        assert_eq!(web.base_path, "/hami/");
        assert_eq!(
            web.frame_ancestors.as_deref(),
            Some("frame-ancestors 'self' https://portal.example.com")
        );
        let denied = load("web:\n  frame_ancestors: []\n", &[]).unwrap().web;
        assert_eq!(
            denied.frame_ancestors.as_deref(),
            Some("frame-ancestors 'none'")
        );
        let env = load(
            "",
            &[
                ("HAMI_WEBUI__WEB__BASE_PATH", "/gpu/"),
                ("HAMI_WEBUI__WEB__ENABLED", "false"),
                ("HAMI_WEBUI__WEB__FRAME_ANCESTORS", "'self'"),
            ],
        )
        .unwrap()
        .web;
        assert_eq!(env.base_path, "/gpu/");
        assert!(!env.enabled);
        assert_eq!(
            env.frame_ancestors.as_deref(),
            Some("frame-ancestors 'self'")
        );
    }

    #[test]
    fn web_flags_override_the_file_and_name_themselves() {
        let config = load("web:\n  base_path: /file/\n  frame_ancestors: []\n", &[]).unwrap();
        let config = config
            .with_web_flags(&WebFlags {
                listen_address: Some("127.0.0.1:3200".into()),
                static_dir: Some(PathBuf::from("/flag/public")),
                base_path: Some("/flag-ui".into()),
                frame_ancestors_json: Some("null".into()),
            })
            .unwrap();
        assert_eq!(config.web.listen_address, "127.0.0.1:3200");
        assert_eq!(config.web.static_dir, PathBuf::from("/flag/public"));
        assert!(config.web.static_dir_explicit);
        assert_eq!(config.web.base_path, "/flag-ui/");
        assert_eq!(config.web.frame_ancestors, None);
        // No flags: the file's values stay.
        let kept = load("web:\n  base_path: /file/\n", &[])
            .unwrap()
            .with_web_flags(&WebFlags::default())
            .unwrap();
        assert_eq!(kept.web.base_path, "/file/");
        for (flags, key) in [
            (
                WebFlags {
                    listen_address: Some("nonsense".into()),
                    ..WebFlags::default()
                },
                "--listen-address",
            ),
            (
                WebFlags {
                    base_path: Some("/%2e%2e/".into()),
                    ..WebFlags::default()
                },
                "--base-path",
            ),
            (
                WebFlags {
                    frame_ancestors_json: Some("{}".into()),
                    ..WebFlags::default()
                },
                "--frame-ancestors-json",
            ),
            (
                WebFlags {
                    frame_ancestors_json: Some("[\"*\"]".into()),
                    ..WebFlags::default()
                },
                "--frame-ancestors-json",
            ),
        ] {
            let err = load("", &[])
                .unwrap()
                .with_web_flags(&flags)
                .unwrap_err()
                .to_string();
            assert!(err.starts_with(&format!("{key}: ")), "{err}");
        }
    }

    #[test]
    fn monitor_limits_default_to_allow_all_and_16_kib() {
        let monitor = load("", &[]).unwrap().monitor;
        assert!(monitor.allowed_metric_prefixes.is_empty());
        assert_eq!(monitor.max_query_length, 16_384);
    }

    #[test]
    fn monitor_limits_from_file_and_env() {
        let yaml = "monitor:\n  allowed_metric_prefixes: [hami_, \" kube_ \", \"\"]\n  max_query_length: 4096\n";
        let config = load(yaml, &[]).unwrap();
        assert!(config.unknown_keys.is_empty(), "{:?}", config.unknown_keys);
        assert_eq!(config.monitor.allowed_metric_prefixes, ["hami_", "kube_"]);
        assert_eq!(config.monitor.max_query_length, 4096);
        let env = load(
            "",
            &[
                (
                    "HAMI_WEBUI__MONITOR__ALLOWED_METRIC_PREFIXES",
                    "hami_,DCGM_",
                ),
                ("HAMI_WEBUI__MONITOR__MAX_QUERY_LENGTH", "100"),
            ],
        )
        .unwrap()
        .monitor;
        assert_eq!(env.allowed_metric_prefixes, ["hami_", "DCGM_"]);
        assert_eq!(env.max_query_length, 100);
    }

    #[test]
    fn bad_monitor_limits_name_their_key() {
        for (yaml, key) in [
            (
                "monitor:\n  allowed_metric_prefixes: [\"hami.*\"]\n",
                "monitor.allowed_metric_prefixes",
            ),
            (
                "monitor:\n  allowed_metric_prefixes: [\"1abc\"]\n",
                "monitor.allowed_metric_prefixes",
            ),
            (
                "monitor:\n  max_query_length: 0\n",
                "monitor.max_query_length",
            ),
        ] {
            let err = load(yaml, &[]).unwrap_err().to_string();
            assert!(
                err.starts_with(&format!("{key}: ")),
                "{yaml:?} gave {err:?}"
            );
        }
        assert!(load("monitor:\n  max_query_length: [1]\n", &[]).is_err());
    }

    #[test]
    fn unreadable_file_is_an_error_naming_it() {
        let err = Config::load_with_env(Path::new("/nonexistent/config.yaml"), Vec::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("/nonexistent/config.yaml"), "{err}");
    }

    #[test]
    fn wrong_shape_is_an_error_not_a_panic() {
        assert!(load("server: 5\n", &[]).is_err());
        assert!(load("prometheus:\n  max_queue: [1]\n", &[]).is_err());
        assert!(load(": : :\n", &[]).is_err());
    }

    #[test]
    fn leader_election_has_client_go_durations_and_refuses_an_unsafe_order() {
        let le = load("", &[]).unwrap().leader_election;
        assert!(!le.enabled);
        assert_eq!(le.lease_name, "hami-webui-server");
        assert_eq!(
            (le.lease_duration, le.renew_deadline, le.retry_period),
            (
                Duration::from_secs(15),
                Duration::from_secs(10),
                Duration::from_secs(2)
            )
        );
        let yaml = "leader_election:\n  enabled: true\n  namespace: hami\n  identity: r1\n  lease_duration: 4s\n  renew_deadline: 3s\n  retry_period: 500ms\n";
        let le = load(yaml, &[]).unwrap().leader_election;
        assert_eq!(
            (le.enabled, le.namespace.as_str(), le.identity.as_str()),
            (true, "hami", "r1")
        );
        assert_eq!(le.retry_period, Duration::from_millis(500));
        // A leader must step down before anyone may take over, and try more than once first.
        for bad in [
            "renew_deadline: 15s",
            "renew_deadline: 20s",
            "retry_period: 10s",
            "lease_duration: 0s",
            "retry_period: soon",
        ] {
            let error = load(&format!("leader_election:\n  {bad}\n"), &[]).unwrap_err();
            assert!(
                error.to_string().contains("leader_election."),
                "{bad}: {error}"
            );
        }
        let from_env = load("", &[("HAMI_WEBUI__LEADER_ELECTION__ENABLED", "true")]).unwrap();
        assert!(from_env.leader_election.enabled);
    }
}
