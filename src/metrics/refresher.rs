//! `MetricsRefresher`: the actor that runs refresh cycles and publishes what `/metrics` serves.
//!
//! A cycle takes the current `ClusterSnapshot`, sends the fixed list of batched queries of
//! `metrics::queries` to the `QueryClient` (all under the cycle's deadline,
//! `exporter.timeout`), builds a complete new state aside (`metrics::build_cycle`, on
//! its own lower-priority thread, [`BuildThread`]), compresses its text once (`metrics::publication::expose`: one gzip
//! member per family, a
//! family whose series did not change keeps the previous cycle's member), and swaps the
//! published `Arc` in one step. A scrape ([`GetExposition`]) gets the last published `Arc`
//! at once: it never waits for a cycle or for the metrics store; a plain scrape renders the
//! text of that same state as it streams it, so no ~100 MB text is kept. One cycle at a
//! time: a tick during a cycle is dropped and counted; a cycle that misses its deadline
//! publishes nothing.
//!
//! Windowed queries ([`CycleQuery::is_windowed`], the vGPU monitor's ten-minute subqueries)
//! are the exception to "every answer is this cycle's": once the refresher holds an answer,
//! a cycle publishes with it and asks the query again after publishing, so the next cycle
//! has a newer one. Their families therefore trail the others by up to one interval, and a
//! cycle's wall time no longer includes the store's costliest evaluation.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix::prelude::*;

use crate::background::BuildThread;
use crate::cluster::inventory::IdentityMap;
use crate::cluster::leader_election::LeadershipChanged;
use crate::cluster::node_cache::SetIdentities;
use crate::cluster::pod_cache::{GetSnapshot, PodCache};
use crate::config::ExporterConfig;
use crate::device::Vendor;
use crate::metrics::publication::{expose, Exposition};
use crate::metrics::refresh_metrics::{now_unix, CycleOutcome, RefreshMetrics};
use crate::metrics::{self, CycleQuery, CycleQueryError, QueryResults, VectorAnswer};
use crate::query_client::{Lane, Query, RunQuery};
use crate::readiness::{Readiness, ReadinessBoard};
use crate::telemetry::SelfMetrics;

/// The last published exposition; answered at once.
#[derive(Message)]
#[rtype(result = "Arc<Exposition>")]
pub struct GetExposition;

/// Start a cycle now unless one is running (sent by the interval timer and by tests).
#[derive(Message)]
#[rtype(result = "()")]
pub struct StartCycle;

pub struct MetricsRefresher {
    config: ExporterConfig,
    pods: Addr<PodCache>,
    queries: Recipient<RunQuery>,
    /// Where exporter identities learnt in a cycle go (the node cache).
    identities: Recipient<SetIdentities>,
    board: Arc<ReadinessBoard>,
    metrics: RefreshMetrics,
    /// The last published cycle (its state is the reference for carried-over families).
    published: Arc<Exposition>,
    /// The newest answers of windowed queries ([`CycleQuery::is_windowed`]): the next cycle
    /// publishes with them instead of waiting for the store to evaluate the window again.
    window: QueryResults,
    /// A windowed query asked after the last publication is still out.
    window_in_flight: bool,
    /// When the windowed queries were last asked; they are asked again only once
    /// `exporter.window_refresh` has passed (or an answer failed).
    window_asked_at: Option<Instant>,
    running: bool,
    first_cycle_started: bool,
    /// The last published cycle had failed queries (logged once per failing streak).
    queries_failing: bool,
    /// This replica publishes the device families: always without leader election, else
    /// while the `LeaderElector` says it leads. A follower only learns exporter identities
    /// (its REST lists must show the ids the leader's `/metrics` does) and publishes nothing.
    leading: bool,
    /// Leadership was gained while a refresh was running: a publishing cycle follows it.
    cycle_after_this: bool,
    /// Where a cycle's state is built and compressed: below the request threads' priority,
    /// so the workers sending scrapes and lists keep the cores while it runs. Scrapes are
    /// served the last published exposition meanwhile, so none waits for it.
    builds: Arc<BuildThread>,
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
            published: Arc::new(Exposition::default()),
            window: QueryResults::new(),
            window_in_flight: false,
            window_asked_at: None,
            running: false,
            first_cycle_started: false,
            queries_failing: false,
            leading: true,
            cycle_after_this: false,
            builds: Arc::new(BuildThread::new("cycle-builder")),
        })
    }

    /// Starts as a follower under leader election: publishes nothing until
    /// [`LeadershipChanged`] says it leads.
    pub fn following(mut self) -> Self {
        self.leading = false;
        self
    }

    fn start_cycle(&mut self, ctx: &mut Context<Self>) {
        if self.running {
            if self.leading {
                self.finish(CycleOutcome::Skipped);
            }
            tracing::debug!("refresh tick skipped: previous cycle still running");
            return;
        }
        self.running = true;
        self.first_cycle_started = true;
        if !self.leading {
            self.learn_identities(ctx);
            return;
        }
        let started = Instant::now();
        let deadline = started + self.config.timeout;
        let pods = self.pods.clone();
        let queries = self.queries.clone();
        let previous = Arc::clone(&self.published);
        let held = self.window.clone();
        let stale_cycles = self.config.stale_cycles;
        let builds = Arc::clone(&self.builds);
        let work = async move {
            tokio::time::timeout_at(
                deadline.into(),
                run_cycle(
                    pods,
                    queries,
                    previous,
                    held,
                    stale_cycles,
                    deadline,
                    builds,
                ),
            )
            .await
        };
        ctx.spawn(work.into_actor(self).map(move |outcome, act, ctx| {
            act.running = false;
            let elapsed = started.elapsed();
            act.metrics.observe_duration(elapsed);
            match outcome {
                Ok(Some(cycle)) => {
                    act.publish(cycle, ctx);
                    act.after_refresh(ctx);
                }
                Ok(None) => {
                    tracing::warn!("refresh cycle could not read the cluster snapshot");
                    act.finish(CycleOutcome::Timeout);
                    act.after_refresh(ctx);
                }
                Err(_) => {
                    tracing::warn!(timeout = ?act.config.timeout, "refresh cycle missed its deadline; keeping the last published state");
                    act.finish(CycleOutcome::Timeout);
                    act.after_refresh(ctx);
                }
            }
        }));
    }

    /// A follower's refresh: the identity queries only (at most one per vendor), for the
    /// node cache; nothing is built or published.
    fn learn_identities(&mut self, ctx: &mut Context<Self>) {
        let deadline = Instant::now() + self.config.timeout;
        let work = identity_refresh(self.pods.clone(), self.queries.clone(), deadline);
        let work = async move { tokio::time::timeout_at(deadline.into(), work).await };
        ctx.spawn(work.into_actor(self).map(|learnt, act, ctx| {
            act.running = false;
            if let Ok(Some(identities)) = learnt {
                act.identities.do_send(SetIdentities(identities));
            }
            act.after_refresh(ctx);
        }));
    }

    /// A cycle asked for while another refresh ran starts now.
    fn after_refresh(&mut self, ctx: &mut Context<Self>) {
        if std::mem::take(&mut self.cycle_after_this) && self.leading {
            self.start_cycle(ctx);
        }
    }

    fn publish(&mut self, cycle: FinishedCycle, ctx: &mut Context<Self>) {
        if let Some(identities) = cycle.identities {
            self.identities.do_send(SetIdentities(identities));
        }
        if !self.leading {
            // Leadership was lost while the cycle ran: another replica publishes now.
            return;
        }
        // Keep the windowed answers of the queries this cycle planned, newest first.
        let planned: std::collections::HashSet<CycleQuery> = cycle
            .window_asked
            .keys()
            .copied()
            .chain(cycle.window_reused.iter().map(|(q, _)| *q))
            .collect();
        self.window.retain(|q, _| planned.contains(q));
        if !cycle.window_asked.is_empty() {
            self.window_asked_at = Some(cycle.started);
        }
        self.window.extend(cycle.window_asked);
        self.ask_window(cycle.window_reused, ctx);
        self.metrics
            .published(cycle.queries, cycle.exposition.series);
        self.published = cycle.exposition;
        let outcome = if cycle.failed_queries == 0 {
            CycleOutcome::Ok
        } else {
            CycleOutcome::Partial
        };
        self.note_store_health(outcome, cycle.failed_queries, cycle.queries);
        self.finish(outcome);
    }

    /// Asks the windowed queries a cycle answered from held answers, so the next cycle has
    /// newer ones; one batch at a time, bounded by `exporter.timeout`. A failed answer
    /// replaces the held one: the next cycle then carries the family over as for any failed
    /// query (`exporter.stale_cycles`).
    fn ask_window(&mut self, plan: Plan, ctx: &mut Context<Self>) {
        let held_ok = plan
            .iter()
            .all(|(q, _)| self.window.get(q).is_some_and(|a| a.is_ok()));
        if plan.is_empty()
            || self.window_in_flight
            || (held_ok
                && !window_due(
                    self.window_asked_at,
                    self.config.window_refresh,
                    Instant::now(),
                ))
        {
            return;
        }
        self.window_in_flight = true;
        self.window_asked_at = Some(Instant::now());
        let deadline = Instant::now() + self.config.timeout;
        let keys: Vec<CycleQuery> = plan.iter().map(|(q, _)| *q).collect();
        let asked = ask_all(self.queries.clone(), plan, deadline);
        let work = async move {
            match tokio::time::timeout_at(deadline.into(), asked).await {
                Ok(answers) => answers,
                Err(_) => keys
                    .into_iter()
                    .map(|q| (q, Err(CycleQueryError::Deadline)))
                    .collect(),
            }
        };
        ctx.spawn(work.into_actor(self).map(|answers, act, _| {
            act.window_in_flight = false;
            act.window.extend(answers);
        }));
    }

    /// One WARN when cycles start failing queries and one INFO when they succeed again, not a
    /// line per cycle (a server without a reachable store would write one every interval);
    /// `hami_webui_refresh_cycles_total{outcome}` counts every cycle.
    fn note_store_health(&mut self, outcome: CycleOutcome, failed: usize, of: usize) {
        let failing = outcome == CycleOutcome::Partial;
        match (failing, self.queries_failing) {
            (true, false) => tracing::warn!(
                failed,
                of,
                "refresh queries failing; families carried over for exporter.stale_cycles"
            ),
            (false, true) => tracing::info!("refresh queries succeed again"),
            (true, true) => {
                tracing::debug!(failed, of, "refresh cycle published with failed queries")
            }
            (false, false) => {}
        }
        self.queries_failing = failing;
    }

    fn finish(&mut self, outcome: CycleOutcome) {
        self.metrics.record(outcome, now_unix());
    }
}

/// Queries with their expressions, as `metrics::queries::plan` gives them.
type Plan = Vec<(CycleQuery, String)>;

/// The result of a cycle that finished in time.
struct FinishedCycle {
    exposition: Arc<Exposition>,
    queries: usize,
    failed_queries: usize,
    identities: Option<IdentityMap>,
    /// Windowed queries the cycle asked itself (no answer was held), with their answers.
    window_asked: QueryResults,
    /// Windowed queries the cycle answered from held answers: asked again after publication.
    window_reused: Plan,
    /// When the cycle sent its queries.
    started: Instant,
}

/// Splits a cycle's plan into the queries to ask now and the windowed queries answered from
/// `held` (every windowed query without a held answer is asked now, so a first cycle
/// publishes complete).
fn split_plan(plan: Plan, held: &QueryResults) -> (Plan, Plan) {
    plan.into_iter()
        .partition(|(q, _)| !(q.is_windowed() && held.contains_key(q)))
}

/// Asks every query of `plan` at once on the refresh lane, each bounded by `deadline`.
async fn ask_all(
    queries: Recipient<RunQuery>,
    plan: Plan,
    deadline: Instant,
) -> Vec<(CycleQuery, Result<VectorAnswer, CycleQueryError>)> {
    futures::future::join_all(plan.into_iter().map(|(id, expr)| {
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
                // Shared with the query client, not copied.
                Ok(Ok(output)) => VectorAnswer::new(output).ok_or(CycleQueryError::NotAVector),
                Ok(Err(error)) => {
                    tracing::debug!(query = ?id, %error, "refresh query failed");
                    Err(CycleQueryError::Store(error))
                }
                Err(_) => Err(CycleQueryError::ClientGone),
            };
            (id, result)
        }
    }))
    .await
}

/// Whether windowed queries last asked at `asked_at` are due again at `now`.
fn window_due(asked_at: Option<Instant>, refresh: Duration, now: Instant) -> bool {
    asked_at.is_none_or(|at| now.saturating_duration_since(at) >= refresh)
}

/// One cycle: snapshot, queries (concurrently, each bounded by the cycle deadline), build and
/// render off the actor's thread. Windowed queries with a `held` answer are not waited for.
/// `None` when the snapshot could not be read.
async fn run_cycle(
    pods: Addr<PodCache>,
    queries: Recipient<RunQuery>,
    previous: Arc<Exposition>,
    held: QueryResults,
    stale_cycles: u32,
    deadline: Instant,
    builds: Arc<BuildThread>,
) -> Option<FinishedCycle> {
    let snapshot = pods.send(GetSnapshot).await.ok()?;
    let vendors = vendors_present(&snapshot);
    let alloc_types = alloc_types(&snapshot);
    let plan = metrics::queries::plan(&vendors, &alloc_types);
    let count = plan.len();
    let (ask_now, window_reused) = split_plan(plan, &held);
    let started = Instant::now();
    let mut results: QueryResults = ask_all(queries, ask_now, deadline)
        .await
        .into_iter()
        .collect();
    let window_asked: QueryResults = results
        .iter()
        .filter(|(q, _)| q.is_windowed())
        .map(|(q, r)| (*q, r.clone()))
        .collect();
    for (query, _) in &window_reused {
        if let Some(answer) = held.get(query) {
            results.insert(*query, answer.clone());
        }
    }
    let failed = results.values().filter(|r| r.is_err()).count();
    let built = builds
        .run(move || {
            // The last cycle's transient and its replaced exposition are free by now.
            crate::memory::release_free_pages();
            let state = metrics::build_cycle(&snapshot, &results, &previous.state, stale_cycles);
            let identities = metrics::identity_overrides(&snapshot, &results);
            // The answers go before compressing: they are the cycle's largest transient.
            drop(results);
            let exposition = expose(Arc::new(state), &previous);
            (exposition, identities)
        })
        .await?;
    Some(FinishedCycle {
        exposition: Arc::new(built.0),
        queries: count,
        failed_queries: failed,
        identities: built.1,
        window_asked,
        window_reused,
        started,
    })
}

/// The vendors with a device in the snapshot: whose queries a refresh plans.
fn vendors_present(
    snapshot: &crate::cluster::snapshot::ClusterSnapshot,
) -> std::collections::BTreeSet<Vendor> {
    snapshot
        .inventory
        .iter_devices()
        .map(|d| d.vendor)
        .collect()
}

/// A follower's refresh: the identity answers of the vendors present, as a map for the node
/// cache; `None` when none came back.
async fn identity_refresh(
    pods: Addr<PodCache>,
    queries: Recipient<RunQuery>,
    deadline: Instant,
) -> Option<IdentityMap> {
    let snapshot = pods.send(GetSnapshot).await.ok()?;
    let vendors = vendors_present(&snapshot);
    let plan: Plan = metrics::queries::plan(&vendors, &Default::default())
        .into_iter()
        .filter(|(q, _)| matches!(q, CycleQuery::Identity(_)))
        .collect();
    if plan.is_empty() {
        return None;
    }
    let results: QueryResults = ask_all(queries, plan, deadline).await.into_iter().collect();
    metrics::identity_overrides(&snapshot, &results)
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

impl Handler<LeadershipChanged> for MetricsRefresher {
    type Result = ();

    /// Gained: a publishing cycle at once. Lost: the device families are withdrawn at once
    /// (before another replica may lead), so `/metrics` carries the self-metrics only.
    fn handle(&mut self, msg: LeadershipChanged, ctx: &mut Context<Self>) {
        let leading = msg.0;
        if leading == self.leading {
            return;
        }
        self.leading = leading;
        if leading {
            if !self.first_cycle_started {
                // The caches are not ready yet: the first cycle starts when they are.
                return;
            }
            if self.running {
                self.cycle_after_this = true;
            } else {
                self.start_cycle(ctx);
            }
        } else {
            self.published = Arc::new(Exposition::default());
            self.window.clear();
            self.metrics.published(0, 0);
        }
    }
}

impl Handler<StartCycle> for MetricsRefresher {
    type Result = ();
    fn handle(&mut self, _: StartCycle, ctx: &mut Context<Self>) {
        self.start_cycle(ctx);
    }
}

/// The allocation types held by containers (borrowed while scanning: ~40,000 allocations at
/// 10,000 GPUs, a handful of types).
fn alloc_types(
    snapshot: &crate::cluster::snapshot::ClusterSnapshot,
) -> std::collections::BTreeSet<String> {
    let types: std::collections::BTreeSet<&str> = snapshot
        .pods
        .iter()
        .flat_map(|p| p.containers.iter())
        .flat_map(|c| c.allocations.iter())
        .map(|a| a.alloc_type.as_str())
        .collect();
    types.into_iter().map(String::from).collect()
}

/// Which queries a cycle issues for a snapshot (exposed for tests and benchmarks).
pub fn planned_queries(snapshot: &crate::cluster::snapshot::ClusterSnapshot) -> Vec<CycleQuery> {
    let vendors = snapshot
        .inventory
        .iter_devices()
        .map(|d| d.vendor)
        .collect();
    metrics::queries::plan(&vendors, &alloc_types(snapshot))
        .into_iter()
        .map(|(q, _)| q)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{build_cycle, VectorAnswer};
    use crate::query_client::Sample;
    use std::io::Read as _;

    fn gunzip(bytes: &[u8]) -> String {
        let mut text = String::new();
        flate2::read::MultiGzDecoder::new(bytes)
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    fn cluster() -> crate::cluster::snapshot::ClusterSnapshot {
        cluster_of(2)
    }

    #[test]
    fn windowed_queries_are_due_once_their_refresh_time_passed() {
        let now = Instant::now();
        let refresh = Duration::from_secs(30);
        assert!(window_due(None, refresh, now), "never asked");
        let asked = now - Duration::from_secs(29);
        assert!(!window_due(Some(asked), refresh, now));
        assert!(window_due(
            Some(asked),
            refresh,
            now + Duration::from_secs(1)
        ));
        assert!(
            window_due(Some(now), Duration::ZERO, now),
            "0s: every cycle"
        );
    }

    fn cluster_of(nodes: usize) -> crate::cluster::snapshot::ClusterSnapshot {
        crate::synthetic::ClusterShape::gpus(nodes).snapshot()
    }

    fn utilisation(
        snapshot: &crate::cluster::snapshot::ClusterSnapshot,
        util: f64,
    ) -> QueryResults {
        let samples = snapshot
            .inventory
            .iter_devices()
            .map(|d| Sample {
                metric: [
                    ("__name__", "DCGM_FI_DEV_GPU_UTIL"),
                    ("UUID", d.id.as_str()),
                ]
                .into_iter()
                .collect(),
                timestamp: 0.0,
                value: util,
            })
            .collect::<Vec<_>>();
        QueryResults::from([(
            CycleQuery::Device(Vendor::Nvidia),
            Ok(VectorAnswer::from(samples)),
        )])
    }

    fn answer(value: f64) -> Result<VectorAnswer, CycleQueryError> {
        VectorAnswer::new(Arc::new(crate::query_client::QueryOutput {
            data: crate::query_client::QueryData::Vector(vec![Sample {
                metric: Default::default(),
                timestamp: 0.0,
                value,
            }]),
            warnings: Vec::new(),
        }))
        .ok_or(CycleQueryError::NotAVector)
    }

    #[test]
    fn a_held_window_answer_is_not_asked_in_the_cycle_and_anything_else_is() {
        let snapshot = cluster();
        let plan = |s: &crate::cluster::snapshot::ClusterSnapshot| {
            let vendors = s.inventory.iter_devices().map(|d| d.vendor).collect();
            metrics::queries::plan(&vendors, &alloc_types(s))
        };
        let window = CycleQuery::TaskCore(Vendor::Nvidia);
        let all = plan(&snapshot);
        assert!(all.iter().any(|(q, _)| *q == window), "{all:?}");

        // Nothing held (first cycle): everything is asked.
        let (now, reused) = split_plan(all.clone(), &QueryResults::new());
        assert_eq!(now, all);
        assert!(reused.is_empty());

        // A held window answer, even a failed one, is reused; a held answer of any other
        // query is not a reason to skip it.
        for held_answer in [answer(0.5), Err(CycleQueryError::Deadline)] {
            let held: QueryResults = [
                (window, held_answer),
                (CycleQuery::TaskMemory(Vendor::Nvidia), answer(1.0)),
            ]
            .into_iter()
            .collect();
            let (now, reused) = split_plan(all.clone(), &held);
            assert_eq!(reused.iter().map(|(q, _)| *q).collect::<Vec<_>>(), [window]);
            assert_eq!(now.len(), all.len() - 1);
            assert!(now.iter().all(|(q, _)| !q.is_windowed()));
        }
    }

    #[test]
    fn gzip_and_plain_carry_the_same_text_and_unchanged_families_are_not_recompressed() {
        let snapshot = cluster();
        let first = build_cycle(
            &snapshot,
            &utilisation(&snapshot, 40.0),
            &Default::default(),
            3,
        );
        let text = first.render();
        let first = expose(Arc::new(first), &Exposition::default());
        assert_eq!(gunzip(&first.gzip), text);
        assert_eq!(first.text_len, text.len());
        assert_eq!(first.compressed_families, first.state.families().len());

        let same = build_cycle(&snapshot, &utilisation(&snapshot, 40.0), &first.state, 3);
        let same = expose(Arc::new(same), &first);
        assert_eq!(same.compressed_families, 0);
        assert_eq!(gunzip(&same.gzip), text);

        let busier = build_cycle(&snapshot, &utilisation(&snapshot, 50.0), &same.state, 3);
        let busier_text = busier.render();
        let busier = expose(Arc::new(busier), &same);
        // The four core utilisation families changed; the rest kept their members.
        assert_eq!(busier.compressed_families, 4);
        assert_eq!(gunzip(&busier.gzip), busier_text);
        assert_eq!(busier.text_len, busier_text.len());
    }

    #[test]
    fn every_publication_of_a_failing_sequence_is_self_consistent() {
        let snapshot = cluster();
        let mut published = Exposition::default();
        let phases = [40.0, 41.0, -1.0, -1.0, -1.0, -1.0, 42.0, -1.0, 42.0, 43.0];
        for (cycle, util) in phases.into_iter().enumerate() {
            let results = if util < 0.0 {
                QueryResults::from([(
                    CycleQuery::Device(Vendor::Nvidia),
                    Err(CycleQueryError::Deadline),
                )])
            } else {
                utilisation(&snapshot, util)
            };
            let state = build_cycle(&snapshot, &results, &published.state, 3);
            let text = state.render();
            published = expose(Arc::new(state), &published);
            assert_eq!(gunzip(&published.gzip), text, "cycle {cycle}");
            assert_eq!(published.text_len, text.len(), "cycle {cycle}");
            let streamed: Vec<u8> = Arc::clone(&published.state)
                .text_chunks(333)
                .flatten()
                .collect();
            assert_eq!(streamed, text.as_bytes(), "cycle {cycle}");
            let carried = (2..=4).contains(&cycle) || cycle >= 6;
            assert_eq!(
                text.contains("hami_memory_used{"),
                util >= 0.0 || carried,
                "cycle {cycle}: {text}"
            );
        }
    }
}
