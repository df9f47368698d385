//! The refresher's self-metrics: how each cycle ended, how long it took, and when the last
//! fully successful one published. Kept apart from the actor so the bookkeeping rules (what
//! counts as a success) are tested without running cycles.

use std::time::{SystemTime, UNIX_EPOCH};

use prometheus::{Gauge, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts};

use crate::telemetry::SelfMetrics;

/// How a cycle ended, for `hami_webui_refresh_cycles_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CycleOutcome {
    Ok,
    /// Published, but some queries failed (their families were carried over or dropped).
    Partial,
    /// Missed its deadline; nothing published.
    Timeout,
    /// Not started because the previous one was still running.
    Skipped,
}

impl CycleOutcome {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Partial => "partial",
            Self::Timeout => "timeout",
            Self::Skipped => "skipped",
        }
    }
}

/// The refresher's self-metrics, registered in the shared self-metrics registry.
///
/// Two generations name overlapping things, and both are kept so that existing dashboards
/// and alerts of either work: ours, `hami_webui_refresh_*` (a counter of cycles by outcome,
/// a duration histogram, the queries of the last cycle, the last-success timestamp), and
/// upstream 2.0's unlabelled `hami_webui_metrics_refresh_*` (the last cycle's success and
/// duration, the last-success timestamp). Both last-success timestamps mean the same: the
/// last cycle that published with every query successful.
#[derive(Clone)]
pub(crate) struct RefreshMetrics {
    cycles: IntCounterVec,
    duration: Histogram,
    last_success: Gauge,
    queries: IntGauge,
    published_series: IntGauge,
    /// Upstream 2.0's unlabelled families, for its dashboards and alerts.
    success: IntGauge,
    last_duration: Gauge,
    upstream_last_success: Gauge,
}

impl RefreshMetrics {
    pub(crate) fn register(metrics: &SelfMetrics) -> Result<Self, prometheus::Error> {
        let r = &metrics.registry;
        let cycles = IntCounterVec::new(
            Opts::new(
                "hami_webui_refresh_cycles_total",
                "Metrics refresh cycles by outcome (ok, partial, timeout, skipped).",
            ),
            &["outcome"],
        )?;
        let duration = Histogram::with_opts(
            HistogramOpts::new(
                "hami_webui_refresh_duration_seconds",
                "Wall time of metrics refresh cycles.",
            )
            .buckets(vec![
                0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
        )?;
        let last_success = Gauge::new(
            "hami_webui_refresh_last_success_timestamp_seconds",
            "Unix time of the last refresh cycle that published with every query successful.",
        )?;
        let queries = IntGauge::new(
            "hami_webui_refresh_queries",
            "Upstream queries issued by the last refresh cycle.",
        )?;
        let published_series = IntGauge::new(
            "hami_webui_published_series",
            "Device and container series in the published /metrics state.",
        )?;
        let success = IntGauge::new(
            "hami_webui_metrics_refresh_success",
            "1 if the last metrics refresh cycle published with every query successful, else 0.",
        )?;
        let last_duration = Gauge::new(
            "hami_webui_metrics_refresh_duration_seconds",
            "Wall time of the last metrics refresh cycle.",
        )?;
        let upstream_last_success = Gauge::new(
            "hami_webui_metrics_refresh_last_success_timestamp_seconds",
            "Unix time of the last fully successful metrics refresh cycle.",
        )?;
        for c in [
            Box::new(cycles.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(last_success.clone()),
            Box::new(queries.clone()),
            Box::new(published_series.clone()),
            Box::new(success.clone()),
            Box::new(last_duration.clone()),
            Box::new(upstream_last_success.clone()),
        ] {
            r.register(c)?;
        }
        Ok(Self {
            cycles,
            duration,
            last_success,
            upstream_last_success,
            queries,
            published_series,
            success,
            last_duration,
        })
    }
    /// A cycle's wall time, finished or not.
    pub(crate) fn observe_duration(&self, elapsed: std::time::Duration) {
        self.duration.observe(elapsed.as_secs_f64());
        self.last_duration.set(elapsed.as_secs_f64());
    }

    /// What the last published cycle asked and published; `(0, 0)` when a follower withdrew
    /// its publication.
    pub(crate) fn published(&self, queries: usize, series: usize) {
        self.queries.set(i64::try_from(queries).unwrap_or(i64::MAX));
        self.published_series
            .set(i64::try_from(series).unwrap_or(i64::MAX));
    }

    /// Counts a finished (or skipped) cycle. Only a cycle that published with every query
    /// successful moves the last-success timestamps: a cycle whose queries all failed still
    /// publishes (carried-over families) but is no success.
    pub(crate) fn record(&self, outcome: CycleOutcome, now: f64) {
        self.cycles.with_label_values(&[outcome.as_str()]).inc();
        let full_success = outcome == CycleOutcome::Ok;
        if outcome != CycleOutcome::Skipped {
            self.success.set(i64::from(full_success));
        }
        if full_success {
            self.last_success.set(now);
            self.upstream_last_success.set(now);
        }
    }
}

pub(crate) fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_cycle_without_failed_queries_is_a_success() {
        let metrics = RefreshMetrics::register(&SelfMetrics::new().unwrap()).unwrap();
        for outcome in [
            CycleOutcome::Partial,
            CycleOutcome::Timeout,
            CycleOutcome::Skipped,
        ] {
            metrics.record(outcome, 100.0);
            assert_eq!(metrics.last_success.get(), 0.0, "{outcome:?}");
            assert_eq!(metrics.upstream_last_success.get(), 0.0, "{outcome:?}");
        }
        assert_eq!(metrics.success.get(), 0);
        metrics.record(CycleOutcome::Ok, 200.0);
        assert_eq!(
            (
                metrics.last_success.get(),
                metrics.upstream_last_success.get()
            ),
            (200.0, 200.0)
        );
        assert_eq!(metrics.success.get(), 1);
        // A skipped tick says nothing about the last cycle's success.
        metrics.record(CycleOutcome::Skipped, 300.0);
        assert_eq!(metrics.success.get(), 1);
        metrics.record(CycleOutcome::Partial, 400.0);
        assert_eq!(
            (metrics.success.get(), metrics.last_success.get()),
            (0, 200.0)
        );
        let cycles = |o: &str| metrics.cycles.with_label_values(&[o]).get();
        assert_eq!(
            (cycles("partial"), cycles("ok"), cycles("skipped")),
            (2, 1, 2)
        );
    }
}
