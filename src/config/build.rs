//! Defaults and validation: [`Config::from_raw`] turns the sources as written into the typed
//! sections, naming the exact key of any value it cannot use. The one place defaults live.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::duration::parse_go_duration;
use super::file::{RawConfig, RawLeaderElection};
use super::selector::parse_selector;
use super::*;
use crate::device::{AnnotationlessPodMode, Vendor};

/// Upstream 2.0 caps `scheduling.resource_names` at this many entries.
const MAX_RESOURCE_NAMES: usize = 64;

impl Config {
    /// Applies defaults and validates; every error names its key.
    pub fn from_raw(raw: RawConfig) -> Result<Config, ConfigError> {
        let duration = |key: &str, value: Option<String>, default: Duration| match value {
            None => Ok(default),
            Some(text) if text.trim().is_empty() => Ok(default),
            Some(text) => parse_go_duration(text.trim()).map_err(|e| ConfigError::invalid(key, e)),
        };
        // Go treats an unset or non-positive exporter duration as "use the default".
        let positive = |key: &str, value: Option<String>, default: Duration| {
            duration(key, value, default).map(|d| if d.is_zero() { default } else { d })
        };
        let count = |key: &str, value: Option<i64>, default: usize, min: i64| match value {
            None => Ok(default),
            Some(n) if n >= min => usize::try_from(n).map_err(|e| ConfigError::invalid(key, e)),
            Some(n) => Err(ConfigError::invalid(
                key,
                format!("must be at least {min}, got {n}"),
            )),
        };

        let addr = non_empty(raw.server.http.addr).unwrap_or_else(|| "0.0.0.0:8000".into());
        validate_listen_addr("server.http.addr", &addr)?;
        if let Some(network) = non_empty(raw.server.http.network) {
            if !network.starts_with("tcp") {
                return Err(ConfigError::invalid(
                    "server.http.network",
                    format!("unsupported network {network:?} (only tcp)"),
                ));
            }
        }
        let server = ServerConfig {
            http: HttpConfig {
                addr,
                timeout: positive(
                    "server.http.timeout",
                    raw.server.http.timeout,
                    Duration::from_secs(60),
                )?,
                limits: ConnectionLimits {
                    client_request_timeout: positive(
                        "server.http.client_request_timeout",
                        raw.server.http.client_request_timeout,
                        Duration::from_secs(5),
                    )?,
                    body_timeout: positive(
                        "server.http.body_timeout",
                        raw.server.http.body_timeout,
                        Duration::from_secs(10),
                    )?,
                    keep_alive: positive(
                        "server.http.keep_alive",
                        raw.server.http.keep_alive,
                        Duration::from_secs(75),
                    )?,
                    max_connections: count(
                        "server.http.max_connections",
                        raw.server.http.max_connections,
                        10_000,
                        1,
                    )?,
                },
                workers: count(
                    "server.http.workers",
                    raw.server.http.workers,
                    super::default_workers(
                        std::thread::available_parallelism().map_or(1, |n| n.get()),
                    ),
                    1,
                )?,
                scrape_send_buffer: count(
                    "server.http.scrape_send_buffer",
                    raw.server.http.scrape_send_buffer,
                    super::DEFAULT_SCRAPE_SEND_BUFFER,
                    0,
                )?,
                reply_cache_ttl: duration(
                    "server.http.reply_cache_ttl",
                    raw.server.http.reply_cache_ttl,
                    Duration::from_secs(2),
                )?,
                reply_max_staleness: duration(
                    "server.http.reply_max_staleness",
                    raw.server.http.reply_max_staleness,
                    Duration::from_secs(3),
                )?,
                reply_store_staleness: duration(
                    "server.http.reply_store_staleness",
                    raw.server.http.reply_store_staleness,
                    Duration::from_secs(60),
                )?,
            },
            grpc_configured: raw.server.grpc.is_some(),
            timezone: match non_empty(raw.server.timezone) {
                None => jiff::tz::TimeZone::system(),
                Some(name) => jiff::tz::TimeZone::get(&name).map_err(|_| {
                    ConfigError::invalid("server.timezone", format!("unknown time zone {name:?}"))
                })?,
            },
            shutdown_timeout: duration(
                "server.shutdown_timeout",
                raw.server.shutdown_timeout,
                Duration::from_secs(25),
            )?,
        };

        let p = raw.prometheus;
        let address = non_empty(p.address).unwrap_or_else(|| "http://localhost:9090".into());
        validate_upstream_url("prometheus.address", &address)?;
        let authorization = match non_empty(p.authorization.credentials_file) {
            Some(file) => Some(AuthorizationConfig {
                scheme: non_empty(p.authorization.scheme).unwrap_or_else(|| "Bearer".into()),
                credentials_file: PathBuf::from(file),
            }),
            None if p.authorization.scheme.is_some() => {
                return Err(ConfigError::invalid(
                    "prometheus.authorization.credentials_file",
                    "required when prometheus.authorization.type is set",
                ))
            }
            None => None,
        };
        let basic_auth = match (
            non_empty(p.basic_auth.username_file),
            non_empty(p.basic_auth.password_file),
        ) {
            (Some(u), Some(pw)) => Some(BasicAuthConfig {
                username_file: PathBuf::from(u),
                password_file: PathBuf::from(pw),
            }),
            (None, None) => None,
            (Some(_), None) => {
                return Err(ConfigError::invalid(
                    "prometheus.basic_auth.password_file",
                    "required with username_file",
                ))
            }
            (None, Some(_)) => {
                return Err(ConfigError::invalid(
                    "prometheus.basic_auth.username_file",
                    "required with password_file",
                ))
            }
        };
        if authorization.is_some() && basic_auth.is_some() {
            return Err(ConfigError::invalid(
                "prometheus.basic_auth",
                "cannot be combined with prometheus.authorization",
            ));
        }
        let tls = TlsConfig {
            ca_file: non_empty(p.tls.ca_file).map(PathBuf::from),
            cert_file: non_empty(p.tls.cert_file).map(PathBuf::from),
            key_file: non_empty(p.tls.key_file).map(PathBuf::from),
            server_name: non_empty(p.tls.server_name),
            insecure_skip_verify: p.tls.insecure_skip_verify.unwrap_or(false),
        };
        if tls.cert_file.is_some() != tls.key_file.is_some() {
            return Err(ConfigError::invalid(
                "prometheus.tls.key_file",
                "cert_file and key_file go together",
            ));
        }
        let path_prefix = non_empty(p.path_prefix).unwrap_or_default();
        if !path_prefix.is_empty() && !path_prefix.starts_with('/') {
            return Err(ConfigError::invalid(
                "prometheus.path_prefix",
                format!("must start with '/', got {path_prefix:?}"),
            ));
        }
        let prometheus = PrometheusConfig {
            address,
            timeout: positive("prometheus.timeout", p.timeout, Duration::from_secs(60))?,
            lookup_timeout: positive(
                "prometheus.lookup_timeout",
                p.lookup_timeout,
                Duration::from_secs(5),
            )?,
            auth: p.auth.filter(|a| !a.is_empty()),
            tls,
            authorization,
            basic_auth,
            max_concurrency: count("prometheus.max_concurrency", p.max_concurrency, 8, 1)?,
            max_queue: count("prometheus.max_queue", p.max_queue, 256, 0)?,
            max_response_bytes: count(
                "prometheus.max_response_bytes",
                p.max_response_bytes,
                64 << 20,
                1024,
            )?,
            path_prefix: path_prefix.trim_end_matches('/').to_string(),
        };

        let exporter = ExporterConfig {
            interval: positive(
                "exporter.interval",
                raw.exporter.interval,
                Duration::from_secs(30),
            )?,
            timeout: positive(
                "exporter.timeout",
                raw.exporter.timeout,
                Duration::from_secs(60),
            )?,
            stale_cycles: u32::try_from(count(
                "exporter.stale_cycles",
                raw.exporter.stale_cycles,
                3,
                0,
            )?)
            .map_err(|e| ConfigError::invalid("exporter.stale_cycles", e))?,
            window_refresh: duration(
                "exporter.window_refresh",
                raw.exporter.window_refresh,
                Duration::from_secs(30),
            )?,
        };

        let node_selectors = node_selectors(raw.node_selectors)?;

        let resource_names: Vec<String> = raw
            .scheduling
            .resource_names
            .unwrap_or_default()
            .into_iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        if resource_names.len() > MAX_RESOURCE_NAMES {
            return Err(ConfigError::invalid(
                "scheduling.resource_names",
                format!(
                    "at most {MAX_RESOURCE_NAMES} names, got {}",
                    resource_names.len()
                ),
            ));
        }

        let dc = raw.device_config;
        let device_config = DeviceConfigRef {
            enabled: dc.enabled.unwrap_or(true),
            namespace: non_empty(dc.namespace).unwrap_or_else(|| "kube-system".into()),
            name: non_empty(dc.name).unwrap_or_else(|| "hami-scheduler-device".into()),
            key: non_empty(dc.key).unwrap_or_else(|| "device-config.yaml".into()),
        };

        let annotationless_pod_mode = match non_empty(raw.ascend.annotationless_pod_mode)
            .as_deref()
            .map(str::to_ascii_lowercase)
            .as_deref()
        {
            None | Some("unknown") => AnnotationlessPodMode::Unknown,
            Some("node") => AnnotationlessPodMode::Node,
            Some("template") => AnnotationlessPodMode::Template,
            Some(other) => {
                return Err(ConfigError::invalid(
                    "ascend.annotationless_pod_mode",
                    format!("invalid value {other:?} (want unknown, node or template)"),
                ))
            }
        };

        let web = web::web_config(raw.web)?;
        let monitor = MonitorConfig {
            allowed_metric_prefixes: metric_prefixes(raw.monitor.allowed_metric_prefixes)?,
            max_query_length: count(
                "monitor.max_query_length",
                raw.monitor.max_query_length,
                DEFAULT_MAX_QUERY_LENGTH,
                1,
            )?,
        };

        Ok(Config {
            server,
            prometheus,
            exporter,
            node_selectors,
            scheduling: SchedulingConfig { resource_names },
            device_config,
            ascend: AscendConfig {
                annotationless_pod_mode,
            },
            kubernetes: KubernetesConfig {
                unready_after: positive(
                    "kubernetes.unready_after",
                    raw.kubernetes.unready_after,
                    Duration::from_secs(300),
                )?,
            },
            web,
            monitor,
            leader_election: leader_election(raw.leader_election)?,
            unknown_keys: Vec::new(),
        })
    }
}

/// `monitor.allowed_metric_prefixes`: trimmed, blanks dropped, each a metric-name prefix
/// (`[a-zA-Z_:][a-zA-Z0-9_:]*`), so that matching a prefix means what it says.
fn metric_prefixes(raw: Option<Vec<String>>) -> Result<Vec<String>, ConfigError> {
    let mut prefixes = Vec::new();
    for prefix in raw.unwrap_or_default() {
        let prefix = prefix.trim();
        if prefix.is_empty() {
            continue;
        }
        let valid = prefix.char_indices().all(|(i, c)| {
            c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit())
        });
        if !valid {
            return Err(ConfigError::invalid(
                "monitor.allowed_metric_prefixes",
                format!("{prefix:?} is not a metric name prefix ([a-zA-Z_:][a-zA-Z0-9_:]*)"),
            ));
        }
        prefixes.push(prefix.to_string());
    }
    Ok(prefixes)
}

pub(super) fn non_empty(value: Option<String>) -> Option<String> {
    value
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
}

/// Builds the per-vendor selectors. Go semantics for the vendors it knew: a missing key or
/// an empty value selects every node. Upstream 2.0 gave HCU and AMD defaults. Vendors the
/// Go backend never knew get a selector only when the file names them; otherwise they are
/// detected from their own annotations, so that enabling them adds no empty nodes to lists.
fn node_selectors(raw: BTreeMap<String, Option<String>>) -> Result<NodeSelectors, ConfigError> {
    let mut configured: BTreeMap<Vendor, String> = BTreeMap::new();
    for (key, value) in raw {
        let vendor = Vendor::from_provider(&key).ok_or_else(|| {
            ConfigError::invalid(
                format!("node_selectors.{key}"),
                format!(
                    "unknown vendor {key:?} (known: {})",
                    Vendor::ALL.map(Vendor::provider).join(", ")
                ),
            )
        })?;
        configured.insert(vendor, value.unwrap_or_default());
    }
    let mut selectors = NodeSelectors::default();
    for vendor in Vendor::ALL {
        let text = match configured.remove(&vendor) {
            Some(text) => text,
            None if vendor.known_to_go_backend() => vendor
                .default_node_selector()
                .map(str::to_string)
                .unwrap_or_default(),
            None => continue,
        };
        let selector = parse_selector(&text).map_err(|e| {
            ConfigError::invalid(format!("node_selectors.{}", vendor.provider()), e)
        })?;
        selectors.by_vendor.push((vendor, selector));
        selectors.text.insert(vendor, text);
    }
    Ok(selectors)
}

pub(super) fn validate_listen_addr(key: &str, addr: &str) -> Result<(), ConfigError> {
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| {
        ConfigError::invalid(key, format!("invalid address {addr:?} (want host:port)"))
    })?;
    port.parse::<u16>()
        .map_err(|_| ConfigError::invalid(key, format!("invalid port in {addr:?}")))?;
    if host.contains(char::is_whitespace) {
        return Err(ConfigError::invalid(
            key,
            format!("invalid host in {addr:?}"),
        ));
    }
    Ok(())
}

fn validate_upstream_url(key: &str, url: &str) -> Result<(), ConfigError> {
    let rest = url
        .strip_prefix("http://")
        .or_else(|| url.strip_prefix("https://"))
        .ok_or_else(|| {
            ConfigError::invalid(
                key,
                format!("invalid URL {url:?} (want http:// or https://)"),
            )
        })?;
    let host = rest.split('/').next().unwrap_or_default();
    if host.is_empty() || url.contains(char::is_whitespace) {
        return Err(ConfigError::invalid(key, format!("invalid URL {url:?}")));
    }
    Ok(())
}

/// `leader_election.*`; names and namespace default from the pod's environment.
fn leader_election(raw: RawLeaderElection) -> Result<LeaderElectionConfig, ConfigError> {
    let positive = |key: &str, value: Option<String>, default: Duration| match non_empty(value) {
        None => Ok(default),
        Some(text) => match parse_go_duration(&text) {
            Ok(d) if !d.is_zero() => Ok(d),
            Ok(_) => Err(ConfigError::invalid(key, "must be positive")),
            Err(e) => Err(ConfigError::invalid(key, e)),
        },
    };
    let lease_duration = positive(
        "leader_election.lease_duration",
        raw.lease_duration,
        Duration::from_secs(15),
    )?;
    let renew_deadline = positive(
        "leader_election.renew_deadline",
        raw.renew_deadline,
        Duration::from_secs(10),
    )?;
    let retry_period = positive(
        "leader_election.retry_period",
        raw.retry_period,
        Duration::from_secs(2),
    )?;
    if renew_deadline >= lease_duration {
        return Err(ConfigError::invalid(
            "leader_election.renew_deadline",
            "must be shorter than lease_duration (a leader must step down before others may take over)",
        ));
    }
    if retry_period >= renew_deadline {
        return Err(ConfigError::invalid(
            "leader_election.retry_period",
            "must be shorter than renew_deadline",
        ));
    }
    let env = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let namespace = non_empty(raw.namespace)
        .or_else(|| env("POD_NAMESPACE"))
        .or_else(|| {
            std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                .ok()
                .map(|n| n.trim().to_string())
                .filter(|n| !n.is_empty())
        })
        .unwrap_or_else(|| "default".into());
    let identity = non_empty(raw.identity)
        .or_else(|| env("POD_NAME"))
        .or_else(|| env("HOSTNAME"))
        .unwrap_or_else(|| format!("hami-webui-server-{}", std::process::id()));
    Ok(LeaderElectionConfig {
        enabled: raw.enabled.unwrap_or(false),
        lease_name: non_empty(raw.lease_name).unwrap_or_else(|| "hami-webui-server".into()),
        namespace,
        identity,
        lease_duration,
        renew_deadline,
        retry_period,
    })
}
