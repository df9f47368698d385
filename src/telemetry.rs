//! The process's own metrics (`hami_webui_*` self-metrics and the process collector) and the
//! logging setup.
//!
//! Self-metrics are rendered on every scrape, unlike the device families which the refresher
//! publishes pre-rendered: they are few, and they must say how the process is doing *now*.
//! Everything here is registered once at start; the handles are cheap clones over atomics, so
//! actors and handlers record into them without any shared lock.

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};

/// Version and revision the binary was built from, for `--version` and `hami_webui_build_info`.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
pub const REVISION: &str = env!("HAMI_WEBUI_REVISION");

/// The self-metrics registry and the handles the rest of the process records into.
#[derive(Clone)]
pub struct SelfMetrics {
    pub registry: Registry,
    /// Malformed annotations, per vendor and failure kind; the object itself is kept.
    pub decode_errors: IntCounterVec,
    /// Objects the caches hold: `nodes` (selected), `devices`, `pods` (tracked),
    /// `containers` (of tracked pods, with at least one allocation).
    pub cache_objects: IntGaugeVec,
    /// Watcher events by resource and kind of event.
    pub watch_events: IntCounterVec,
    /// Relists after the first (410 Gone, reconnects after a long outage).
    pub watch_restarts: IntCounterVec,
    /// When a cache last published a changed state, Unix seconds.
    pub cache_last_change: GaugeVec,

    // ---- Upstream query client (`query_client`) ----
    /// Upstream requests by `kind` (`instant`, `range`) and `outcome` (`success`,
    /// `timeout`, `unreachable`, `upstream_error`, `too_large`, `decode_error`,
    /// `overloaded`); coalesced callers are not counted here.
    pub upstream_requests: IntCounterVec,
    /// Time from sending a request to having its answer (or giving up), by `kind`.
    pub upstream_duration: HistogramVec,
    /// Requests to the upstream in flight now; never above `prometheus.max_concurrency`.
    pub upstream_inflight: IntGauge,
    /// Callers that joined an identical request in flight instead of sending their own.
    pub upstream_coalesced: IntCounter,
}

impl SelfMetrics {
    /// Registers every self-metric. Fails only if two metrics share a name, which is a bug
    /// caught by the tests, not something input can cause.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let build_info = IntGaugeVec::new(
            Opts::new(
                "hami_webui_build_info",
                "Version and git revision of the running hami-webui-server; always 1.",
            ),
            &["version", "revision"],
        )?;
        build_info.with_label_values(&[VERSION, REVISION]).set(1);
        registry.register(Box::new(build_info))?;

        let decode_errors = IntCounterVec::new(
            Opts::new(
                "hami_webui_decode_errors_total",
                "Node or pod annotations that could not be decoded, by vendor and kind of error.",
            ),
            &["vendor", "kind"],
        )?;
        registry.register(Box::new(decode_errors.clone()))?;

        let cache_objects = IntGaugeVec::new(
            Opts::new(
                "hami_webui_cache_objects",
                "Objects held by the cluster caches: nodes, devices, pods, containers.",
            ),
            &["resource"],
        )?;
        registry.register(Box::new(cache_objects.clone()))?;
        let watch_events = IntCounterVec::new(
            Opts::new(
                "hami_webui_watch_events_total",
                "Kubernetes watch events received, by resource and event type.",
            ),
            &["resource", "type"],
        )?;
        registry.register(Box::new(watch_events.clone()))?;
        let watch_restarts = IntCounterVec::new(
            Opts::new(
                "hami_webui_watch_restarts_total",
                "Re-lists of a Kubernetes resource after the initial one.",
            ),
            &["resource"],
        )?;
        registry.register(Box::new(watch_restarts.clone()))?;
        let cache_last_change = GaugeVec::new(
            Opts::new(
                "hami_webui_cache_last_change_timestamp_seconds",
                "Unix time at which a cache last published a changed state.",
            ),
            &["resource"],
        )?;
        registry.register(Box::new(cache_last_change.clone()))?;

        // ---- Upstream query client (`query_client`) ----
        let upstream_requests = IntCounterVec::new(
            Opts::new(
                "hami_webui_upstream_requests_total",
                "Requests to Prometheus/VictoriaMetrics, by query kind and outcome.",
            ),
            &["kind", "outcome"],
        )?;
        registry.register(Box::new(upstream_requests.clone()))?;
        let upstream_duration = HistogramVec::new(
            HistogramOpts::new(
                "hami_webui_upstream_request_duration_seconds",
                "Duration of requests to Prometheus/VictoriaMetrics, by query kind.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            &["kind"],
        )?;
        registry.register(Box::new(upstream_duration.clone()))?;
        let upstream_inflight = IntGauge::new(
            "hami_webui_upstream_inflight",
            "Requests to Prometheus/VictoriaMetrics in flight now.",
        )?;
        registry.register(Box::new(upstream_inflight.clone()))?;
        let upstream_coalesced = IntCounter::new(
            "hami_webui_upstream_coalesced_total",
            "Queries answered by joining an identical request already in flight.",
        )?;
        registry.register(Box::new(upstream_coalesced.clone()))?;

        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;

        Ok(Self {
            registry,
            decode_errors,
            cache_objects,
            watch_events,
            watch_restarts,
            cache_last_change,
            upstream_requests,
            upstream_duration,
            upstream_inflight,
            upstream_coalesced,
        })
    }

    /// Registers a gauge owned by a later part (the refresher) in the same registry.
    pub fn register_gauge(&self, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
        let gauge = IntGauge::new(name, help)?;
        self.registry.register(Box::new(gauge.clone()))?;
        Ok(gauge)
    }

    /// Counts a decode failure; the caller keeps everything else of the object.
    pub fn count_decode_error(&self, vendor: crate::device::Vendor, kind: &str) {
        self.decode_errors
            .with_label_values(&[vendor.provider(), kind])
            .inc();
    }

    /// Records that `resource`'s cache just published a changed state.
    pub fn mark_cache_change(&self, resource: &str) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs_f64())
            .unwrap_or_default();
        self.cache_last_change
            .with_label_values(&[resource])
            .set(now);
    }

    /// The exposition text of every self-metric, as served at `/metrics`.
    pub fn render(&self) -> String {
        let families = self.registry.gather();
        prometheus::TextEncoder::new()
            .encode_to_string(&families)
            .unwrap_or_else(|e| format!("# self-metrics could not be encoded: {e}\n"))
    }
}

/// How log lines are written: human-readable text, or one JSON object per line for log
/// pipelines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Installs the global tracing subscriber. `RUST_LOG` selects levels (default `info`).
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_info_and_decode_errors_render() {
        let metrics = SelfMetrics::new().unwrap();
        metrics
            .decode_errors
            .with_label_values(&["NVIDIA", "csv_fields"])
            .inc();
        let text = metrics.render();
        assert!(text.contains(&format!(
            "hami_webui_build_info{{revision=\"{REVISION}\",version=\"{VERSION}\"}} 1"
        )));
        assert!(text
            .contains("hami_webui_decode_errors_total{kind=\"csv_fields\",vendor=\"NVIDIA\"} 1"));
        assert!(text.contains("process_resident_memory_bytes"));
    }
}
