//! `MetricsRefresher`: the actor that runs refresh cycles and publishes what `/metrics` serves.
//!
//! A cycle takes the current `ClusterSnapshot`, sends the fixed list of batched queries of
//! `device_metrics::queries` to the `QueryClient` (all under the cycle's deadline,
//! `exporter.timeout`), builds a complete new state aside (`device_metrics::build_cycle`, on
//! a blocking thread), renders it to exposition bytes and a gzip copy once, and swaps the
//! published `Arc` in one step. A scrape ([`GetExposition`]) gets the last published `Arc`
//! at once: it never waits for a cycle or for the metrics store. One cycle at a time: a tick
//! during a cycle is dropped and counted; a cycle that misses its deadline publishes nothing.

use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::prelude::*;
use bytes::Bytes;
use prometheus::{Gauge, Histogram, HistogramOpts, IntCounterVec, IntGauge, Opts};

use crate::config::ExporterConfig;
use crate::device::Vendor;
use crate::device_metrics::{self, CycleQuery, CycleState, QueryResults};
use crate::node_cache::{IdentityMap, SetIdentities};
use crate::pod_cache::{GetSnapshot, PodCache};
use crate::query_client::{Lane, Query, QueryData, RunQuery};
use crate::readiness::{Readiness, ReadinessBoard};
use crate::telemetry::SelfMetrics;

/// What a scrape serves of the device families: rendered once per publication.
#[derive(Debug, Default)]
pub struct Exposition {
    pub text: Bytes,
    /// `text`, gzip-compressed once, for scrapers that accept it.
    pub gzip: Bytes,
    pub series: usize,
}

/// The last published exposition; answered at once.
#[derive(Message)]
#[rtype(result = "Arc<Exposition>")]
pub struct GetExposition;

/// Start a cycle now unless one is running (sent by the interval timer and by tests).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StartCycle;

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
#[derive(Clone)]
struct RefreshMetrics {
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
    fn register(metrics: &SelfMetrics) -> Result<Self, prometheus::Error> {
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
            "Unix time of the last published refresh cycle.",
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
}

fn now_unix() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or_default()
}

pub struct MetricsRefresher {
    config: ExporterConfig,
    pods: Addr<PodCache>,
    queries: Recipient<RunQuery>,
    /// Where exporter identities learnt in a cycle go (the node cache).
    identities: Recipient<SetIdentities>,
    board: Arc<ReadinessBoard>,
    metrics: RefreshMetrics,
    /// The last published cycle's state, the reference for carried-over families.
    state: Arc<CycleState>,
    published: Arc<Exposition>,
    running: bool,
    first_cycle_started: bool,
}

impl MetricsRefresher {
    pub fn new(
        config: ExporterConfig,
        pods: Addr<PodCache>,
        queries: Recipient<RunQuery>,
        identities: Recipient<SetIdentities>,
        board: Arc<ReadinessBoard>,
        self_metrics: &SelfMetrics,
    ) -> Result<Self, prometheus::Error> {
        Ok(Self {
            config,
            pods,
            queries,
            identities,
            board,
            metrics: RefreshMetrics::register(self_metrics)?,
            state: Arc::new(CycleState::default()),
            published: Arc::new(Exposition::default()),
            running: false,
            first_cycle_started: false,
        })
    }

    fn start_cycle(&mut self, ctx: &mut Context<Self>) {
        if self.running {
            self.metrics
                .cycles
                .with_label_values(&[CycleOutcome::Skipped.as_str()])
                .inc();
            tracing::debug!("refresh tick skipped: previous cycle still running");
            return;
        }
        self.running = true;
        self.first_cycle_started = true;
        let started = Instant::now();
        let deadline = started + self.config.timeout;
        let pods = self.pods.clone();
        let queries = self.queries.clone();
        let previous = Arc::clone(&self.state);
        let stale_cycles = self.config.stale_cycles;
        let work = async move {
            tokio::time::timeout_at(
                deadline.into(),
                run_cycle(pods, queries, previous, stale_cycles, deadline),
            )
            .await
        };
        ctx.spawn(work.into_actor(self).map(move |outcome, act, _| {
            act.running = false;
            let elapsed = started.elapsed();
            act.metrics.duration.observe(elapsed.as_secs_f64());
            act.metrics.last_duration.set(elapsed.as_secs_f64());
            match outcome {
                Ok(Some(cycle)) => act.publish(cycle),
                Ok(None) => {
                    tracing::warn!("refresh cycle could not read the cluster snapshot");
                    act.finish(CycleOutcome::Timeout, false);
                }
                Err(_) => {
                    tracing::warn!(timeout = ?act.config.timeout, "refresh cycle missed its deadline; keeping the last published state");
                    act.finish(CycleOutcome::Timeout, false);
                }
            }
        }));
    }

    fn publish(&mut self, cycle: FinishedCycle) {
        if let Some(identities) = cycle.identities {
            self.identities.do_send(SetIdentities(identities));
        }
        self.metrics.queries.set(cycle.queries as i64);
        self.metrics
            .published_series
            .set(cycle.exposition.series as i64);
        self.state = cycle.state;
        self.published = cycle.exposition;
        let outcome = if cycle.failed_queries == 0 {
            CycleOutcome::Ok
        } else {
            tracing::warn!(
                failed = cycle.failed_queries,
                of = cycle.queries,
                "refresh cycle published with failed queries"
            );
            CycleOutcome::Partial
        };
        self.finish(outcome, true);
    }

    fn finish(&mut self, outcome: CycleOutcome, published: bool) {
        self.metrics
            .cycles
            .with_label_values(&[outcome.as_str()])
            .inc();
        let full_success = outcome == CycleOutcome::Ok;
        self.metrics.success.set(i64::from(full_success));
        if published {
            let now = now_unix();
            self.metrics.last_success.set(now);
        }
        if full_success {
            // Upstream 2.0's gauge counts only fully successful cycles.
            self.metrics.upstream_last_success.set(now_unix());
        }
    }
}

/// The result of a cycle that finished in time.
struct FinishedCycle {
    state: Arc<CycleState>,
    exposition: Arc<Exposition>,
    queries: usize,
    failed_queries: usize,
    identities: Option<IdentityMap>,
}

/// One cycle: snapshot, queries (concurrently, each bounded by the cycle deadline), build and
/// render off the actor's thread. `None` when the snapshot could not be read.
async fn run_cycle(
    pods: Addr<PodCache>,
    queries: Recipient<RunQuery>,
    previous: Arc<CycleState>,
    stale_cycles: u32,
    deadline: Instant,
) -> Option<FinishedCycle> {
    let snapshot = pods.send(GetSnapshot).await.ok()?;
    let vendors: std::collections::BTreeSet<Vendor> = snapshot
        .inventory
        .iter_devices()
        .map(|d| d.vendor)
        .collect();
    let alloc_types: std::collections::BTreeSet<String> = snapshot
        .pods
        .iter()
        .flat_map(|p| p.containers.iter())
        .flat_map(|c| c.allocations.iter())
        .map(|a| a.alloc_type.clone())
        .collect();
    let plan = device_metrics::queries::plan(&vendors, &alloc_types);
    let count = plan.len();
    let answers = futures::future::join_all(plan.into_iter().map(|(id, expr)| {
        let queries = queries.clone();
        async move {
            let asked = queries
                .send(RunQuery {
                    query: Query::Instant { expr, time: None },
                    deadline: Some(deadline),
                    lane: Lane::Refresh,
                })
                .await;
            let result = match asked {
                Ok(Ok(output)) => match &output.data {
                    QueryData::Vector(samples) => Ok(samples.clone()),
                    _ => Err(()),
                },
                Ok(Err(error)) => {
                    tracing::debug!(query = ?id, %error, "refresh query failed");
                    Err(())
                }
                Err(_) => Err(()),
            };
            (id, result)
        }
    }))
    .await;
    let results: QueryResults = answers.into_iter().collect::<QueryResults>();
    let failed = results.values().filter(|r| r.is_err()).count();
    let built = tokio::task::spawn_blocking(move || {
        let state = device_metrics::build_cycle(&snapshot, &results, &previous, stale_cycles);
        let identities = device_metrics::identity_overrides(&snapshot, &results);
        let text = state.render();
        let gzip = gzip(text.as_bytes());
        let series = state.series_count();
        (
            state,
            Exposition {
                text: Bytes::from(text),
                gzip,
                series,
            },
            identities,
        )
    })
    .await
    .ok()?;
    Some(FinishedCycle {
        state: Arc::new(built.0),
        exposition: Arc::new(built.1),
        queries: count,
        failed_queries: failed,
        identities: built.2,
    })
}

/// Gzip of a published exposition; compressing once per cycle instead of once per scrape.
pub fn gzip(data: &[u8]) -> Bytes {
    // The fast level: at 10,000 GPUs the text is ~100 MB and the default level costs seconds
    // of CPU per cycle for a few percent of size.
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    if encoder.write_all(data).is_err() {
        return Bytes::new();
    }
    encoder.finish().map(Bytes::from).unwrap_or_default()
}

impl Actor for MetricsRefresher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        // The first cycle starts as soon as the caches are ready, then every interval.
        ctx.run_interval(Duration::from_millis(200), |act, ctx| {
            if !act.first_cycle_started && act.board.check() == Readiness::Ready {
                act.start_cycle(ctx);
            }
        });
        ctx.run_interval(self.config.interval, |act, ctx| {
            if act.first_cycle_started {
                act.start_cycle(ctx);
            }
        });
    }
}

impl Handler<GetExposition> for MetricsRefresher {
    type Result = Arc<Exposition>;
    fn handle(&mut self, _: GetExposition, _: &mut Context<Self>) -> Self::Result {
        Arc::clone(&self.published)
    }
}

impl Handler<StartCycle> for MetricsRefresher {
    type Result = ();
    fn handle(&mut self, _: StartCycle, ctx: &mut Context<Self>) {
        self.start_cycle(ctx);
    }
}

/// Which queries a cycle issues for a snapshot (exposed for tests and benchmarks).
pub fn planned_queries(snapshot: &crate::snapshot::ClusterSnapshot) -> Vec<CycleQuery> {
    let vendors = snapshot
        .inventory
        .iter_devices()
        .map(|d| d.vendor)
        .collect();
    let types = snapshot
        .pods
        .iter()
        .flat_map(|p| p.containers.iter())
        .flat_map(|c| c.allocations.iter())
        .map(|a| a.alloc_type.clone())
        .collect();
    device_metrics::queries::plan(&vendors, &types)
        .into_iter()
        .map(|(q, _)| q)
        .collect()
}
