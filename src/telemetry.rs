//! The process's own metrics (`hami_webui_*` self-metrics and the process collector) and the
//! logging setup.
//!
//! Self-metrics are rendered on every scrape, unlike the device families which the refresher
//! publishes pre-rendered: they are few, and they must say how the process is doing *now*.
//! Everything here is registered once at start; the handles are cheap clones over atomics, so
//! actors and handlers record into them without any shared lock.
//!
//! The log never carries raw client input: the text format escapes control characters, the
//! HTTP library's complaints about malformed requests are counted and throttled to WARN, and
//! client errors are cut and throttled by `http::logging` ([`Throttle`]).

use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use prometheus::{
    GaugeVec, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry,
};
use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};
use tracing_subscriber::fmt::FormatFields;

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
        registry.register(Box::new(CLIENT_ERRORS.clone()))?;

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

/// Client errors (4xx) by route pattern and kratos reason, and requests refused before
/// routing (`route=""`, `reason="MALFORMED_REQUEST"`). One counter for the process, shown by
/// every registry: the logging layer that counts malformed requests has no state to hold it.
pub static CLIENT_ERRORS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    IntCounterVec::new(
        Opts::new(
            "hami_webui_client_errors_total",
            "Requests answered with a client error, by route pattern and reason.",
        ),
        &["route", "reason"],
    )
    // A fixed, valid name and label set: cannot fail.
    .unwrap_or_else(|_| unreachable!("static metric definition"))
});

/// At most `per_window` log lines of one kind every `window`; what is held back is counted
/// and reported on the next line written, so a flood of bad requests costs a few lines and
/// a counter, not a line per request.
pub struct Throttle {
    window: Duration,
    per_window: u32,
    state: Mutex<ThrottleState>,
}

struct ThrottleState {
    window_start: Option<Instant>,
    written: u32,
    held_back: u64,
}

impl Throttle {
    pub const fn new(window: Duration, per_window: u32) -> Self {
        Throttle {
            window,
            per_window,
            state: Mutex::new(ThrottleState {
                window_start: None,
                written: 0,
                held_back: 0,
            }),
        }
    }

    /// `Some(held back since the last line)` when a line may be written now.
    pub fn admit(&self) -> Option<u64> {
        self.admit_at(Instant::now())
    }

    fn admit_at(&self, now: Instant) -> Option<u64> {
        // A panic while holding this lock leaves counts that are still usable.
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        let expired = state
            .window_start
            .is_none_or(|start| now.saturating_duration_since(start) >= self.window);
        if expired {
            state.window_start = Some(now);
            state.written = 0;
        }
        if state.written >= self.per_window {
            state.held_back += 1;
            return None;
        }
        state.written += 1;
        Some(std::mem::take(&mut state.held_back))
    }
}

/// Whether an event is the HTTP library's complaint about a malformed request (a bad head,
/// an HTTP/2 preface on the HTTP/1 port): the client's fault, which it logs at ERROR. It logs
/// through `log`, so its target is in the event's fields.
fn is_malformed_request(event: &tracing::Event<'_>) -> bool {
    use tracing_log::NormalizeEvent;
    let normalized = event.normalized_metadata();
    let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
    *meta.level() == tracing::Level::ERROR && meta.target().starts_with("actix_http::h1")
}

/// The per-layer filter keeping [`is_malformed_request`] events out of the log writer.
struct NotMalformed;

impl<S> tracing_subscriber::layer::Filter<S> for NotMalformed {
    fn enabled(
        &self,
        _: &tracing::Metadata<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        true
    }

    fn event_enabled(
        &self,
        event: &tracing::Event<'_>,
        _: &tracing_subscriber::layer::Context<'_, S>,
    ) -> bool {
        !is_malformed_request(event)
    }
}

/// Lines about malformed requests: a few per minute, the rest counted.
static MALFORMED_LOG: Throttle = Throttle::new(Duration::from_secs(60), 5);

/// Takes the HTTP library's ERROR lines about malformed requests out of the log: each is
/// counted in [`CLIENT_ERRORS`] and a few are written again at WARN (throttled).
struct MalformedRequests;

impl<S: tracing::Subscriber> tracing_subscriber::Layer<S> for MalformedRequests {
    fn on_event(&self, event: &tracing::Event<'_>, _: tracing_subscriber::layer::Context<'_, S>) {
        if !is_malformed_request(event) {
            return;
        }
        CLIENT_ERRORS
            .with_label_values(&["", "MALFORMED_REQUEST"])
            .inc();
        if let Some(held_back) = MALFORMED_LOG.admit() {
            let mut message = MessageText(String::new());
            event.record(&mut message);
            tracing::warn!(
                target: "hami_webui_server::http",
                error = %crate::echo::Echo(&message.0),
                held_back,
                "malformed request refused"
            );
        }
    }
}

/// The `message` field of an event.
struct MessageText(String);

impl tracing::field::Visit for MessageText {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }
}

/// The text log's field formatting: the default, then every control character as an escape
/// (`\n`, `\r`, `\u{0}`…), so that no value can start a forged line or put raw control bytes
/// in the log. (The JSON format escapes by itself.)
struct EscapedFields;

impl<'writer> FormatFields<'writer> for EscapedFields {
    fn format_fields<R: RecordFields>(
        &self,
        mut writer: Writer<'writer>,
        fields: R,
    ) -> std::fmt::Result {
        let mut text = String::new();
        DefaultFields::new().format_fields(Writer::new(&mut text), fields)?;
        write_escaped(&mut writer, &text)
    }
}

/// `text` with its control characters (but tab) escaped.
fn write_escaped(out: &mut impl std::fmt::Write, text: &str) -> std::fmt::Result {
    for c in text.chars() {
        match c {
            '\n' => out.write_str("\\n")?,
            '\r' => out.write_str("\\r")?,
            '\t' => out.write_char('\t')?,
            c if c.is_control() => write!(out, "\\u{{{:x}}}", u32::from(c))?,
            c => out.write_char(c)?,
        }
    }
    Ok(())
}

/// Installs the global tracing subscriber. `RUST_LOG` selects levels (default `info`).
pub fn init_logging(format: LogFormat) {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{EnvFilter, Layer};
    let env = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let fmt = match format {
        LogFormat::Text => fmt
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .fmt_fields(EscapedFields)
            .with_filter(NotMalformed)
            .boxed(),
        LogFormat::Json => fmt
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .with_filter(NotMalformed)
            .boxed(),
    };
    // `MalformedRequests` writes its own line while handling an event: it must come after the
    // writer has handled (and filtered) that event, so it is the outermost layer.
    let result = tracing_subscriber::registry()
        .with(env)
        .with(fmt)
        .with(MalformedRequests)
        .try_init();
    if let Err(e) = result {
        eprintln!("logging already initialised: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_in_the_text_log() {
        let mut out = String::new();
        write_escaped(
            &mut out,
            "uid=\n2026-12-05T00:00:00Z ERROR INJECTED\u{1b}[31m\0end\tok",
        )
        .unwrap();
        assert_eq!(
            out,
            "uid=\\n2026-12-05T00:00:00Z ERROR INJECTED\\u{1b}[31m\\u{0}end\tok"
        );
        assert!(!out.contains('\n') && !out.contains('\u{1b}') && !out.contains('\0'));
    }

    #[test]
    fn a_throttle_writes_a_few_lines_per_window_and_counts_the_rest() {
        let throttle = Throttle::new(Duration::from_secs(10), 2);
        let t0 = Instant::now();
        assert_eq!(throttle.admit_at(t0), Some(0));
        assert_eq!(throttle.admit_at(t0), Some(0));
        for _ in 0..5 {
            assert_eq!(throttle.admit_at(t0 + Duration::from_secs(1)), None);
        }
        // The next window's first line reports the five held back.
        assert_eq!(throttle.admit_at(t0 + Duration::from_secs(11)), Some(5));
        assert_eq!(throttle.admit_at(t0 + Duration::from_secs(11)), Some(0));
    }
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
