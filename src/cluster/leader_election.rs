//! `LeaderElector`: the actor that owns this replica's claim on a `coordination.k8s.io/v1`
//! Lease, so that exactly one of several replicas refreshes and publishes the device and
//! container families of `/metrics` (two publishers would double every `sum(...)`).
//!
//! The rules are client-go's, written on `Api<Lease>` with `resourceVersion` preconditions
//! (a replace that lost a race answers `409`): every `retry_period` a replica reads the
//! Lease; it takes it when nobody holds it, when the holder released it, or when the record
//! has not changed for `lease_duration` *as observed on this replica's own clock* (no clock
//! of another node is trusted); the holder renews it. A holder that could not renew for
//! `renew_deadline` (< `lease_duration`) stops leading before anyone else may take over, so
//! there is never a moment with two publishers. On shutdown the holder releases the Lease
//! (clears the holder), and a follower takes over at its next try.
//!
//! The pure [`decide`] says what to do with a Lease as read; the actor only does the I/O and
//! tells its subscribers ([`LeadershipChanged`]) when leadership is gained or lost.

use std::time::{Duration, Instant};

use actix::prelude::*;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, PostParams};
use prometheus::{IntCounter, IntGauge};

use crate::config::LeaderElectionConfig;
use crate::telemetry::SelfMetrics;

/// Leadership was gained (`true`) or lost (`false`).
#[derive(Message, Debug, Clone, Copy, PartialEq, Eq)]
#[rtype(result = "()")]
pub struct LeadershipChanged(pub bool);

/// Release the Lease if held (shutdown); answered when done or failed.
#[derive(Message)]
#[rtype(result = "()")]
pub struct Release;

/// The holder fields of a Lease as read, the part every replica compares.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LeaseRecord {
    pub holder: String,
    pub renew_time: Option<Timestamp>,
    pub lease_duration_seconds: i32,
    pub transitions: i32,
}

impl LeaseRecord {
    fn of(lease: &Lease) -> Self {
        let spec = lease.spec.clone().unwrap_or_default();
        LeaseRecord {
            holder: spec.holder_identity.unwrap_or_default(),
            renew_time: spec.renew_time.map(|t| t.0),
            lease_duration_seconds: spec.lease_duration_seconds.unwrap_or_default(),
            transitions: spec.lease_transitions.unwrap_or_default(),
        }
    }
}

/// When this replica last saw the Lease's record change (its own clock).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Observation {
    pub record: LeaseRecord,
    pub at: Instant,
}

/// What to do with the Lease as read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// There is none: create it, held by us.
    Create,
    /// We hold it: write a new renew time.
    Renew,
    /// Nobody holds it, or its holder stopped renewing: take it over.
    TakeOver,
    /// Someone else holds it and renewed recently enough.
    Follow,
}

/// The client-go rule for one read of the Lease. `observed` is updated when the record
/// differs from the last one seen (and timed `now`); the holder's renewal is judged by how
/// long this replica has seen the same record, never by the renew time's wall clock.
pub fn decide(
    lease: Option<&LeaseRecord>,
    me: &str,
    observed: &mut Option<Observation>,
    now: Instant,
    lease_duration: Duration,
) -> Decision {
    let Some(record) = lease else {
        *observed = None;
        return Decision::Create;
    };
    if observed.as_ref().is_none_or(|o| &o.record != record) {
        *observed = Some(Observation {
            record: record.clone(),
            at: now,
        });
    }
    if record.holder == me {
        return Decision::Renew;
    }
    if record.holder.is_empty() {
        return Decision::TakeOver;
    }
    let seen_at = observed.as_ref().map_or(now, |o| o.at);
    // The holder's own duration when it wrote one, else ours.
    let duration = u64::try_from(record.lease_duration_seconds)
        .ok()
        .filter(|s| *s > 0)
        .map_or(lease_duration, Duration::from_secs);
    if now.saturating_duration_since(seen_at) >= duration {
        Decision::TakeOver
    } else {
        Decision::Follow
    }
}

/// Why one try at the Lease failed.
#[derive(Debug, thiserror::Error)]
pub enum ElectionError {
    /// Another replica changed the Lease between our read and our write (`409`).
    #[error("the Lease changed under us")]
    Conflict,
    #[error("Kubernetes API: {0}")]
    Api(#[from] kube::Error),
}

/// `hami_webui_leader`: 1 while this replica publishes the device families. Registered with
/// value 1 by a replica without leader election, which always publishes.
pub fn leader_gauge(metrics: &SelfMetrics) -> Result<IntGauge, prometheus::Error> {
    metrics.register_gauge(
        "hami_webui_leader",
        "1 while this replica publishes the device families (it holds the Lease, or leader election is off), else 0.",
    )
}

/// The elector's self-metrics.
struct ElectionMetrics {
    leader: IntGauge,
    transitions: IntCounter,
}

pub struct LeaderElector {
    api: Api<Lease>,
    settings: LeaderElectionConfig,
    identity: String,
    observed: Option<Observation>,
    /// Whether we lead (and our subscribers publish).
    leading: bool,
    /// When we last wrote the Lease as its holder.
    last_renewed: Option<Instant>,
    /// A try is in flight; ticks meanwhile are skipped.
    trying: bool,
    /// The Lease was released for shutdown: no more tries, and one in flight is ignored.
    released: bool,
    subscribers: Vec<Recipient<LeadershipChanged>>,
    metrics: ElectionMetrics,
}

impl LeaderElector {
    pub fn new(
        api: Api<Lease>,
        settings: LeaderElectionConfig,
        subscribers: Vec<Recipient<LeadershipChanged>>,
        metrics: &SelfMetrics,
    ) -> Result<Self, prometheus::Error> {
        let leader = leader_gauge(metrics)?;
        let transitions = IntCounter::new(
            "hami_webui_leader_transitions_total",
            "Times this replica gained or lost leadership.",
        )?;
        metrics.registry.register(Box::new(transitions.clone()))?;
        Ok(LeaderElector {
            api,
            identity: settings.identity.clone(),
            settings,
            observed: None,
            leading: false,
            last_renewed: None,
            trying: false,
            released: false,
            subscribers,
            metrics: ElectionMetrics {
                leader,
                transitions,
            },
        })
    }

    fn set_leading(&mut self, leading: bool) {
        if self.leading == leading {
            return;
        }
        self.leading = leading;
        self.metrics.leader.set(i64::from(leading));
        self.metrics.transitions.inc();
        if leading {
            tracing::info!(lease = %self.settings.lease_name, identity = %self.identity, "leading: publishing the device families");
        } else {
            tracing::warn!(lease = %self.settings.lease_name, identity = %self.identity, "no longer leading: the device families are left to the leader");
        }
        for subscriber in &self.subscribers {
            subscriber.do_send(LeadershipChanged(leading));
        }
    }

    /// Steps down when the last renewal is older than `renew_deadline`: before anyone else
    /// may take the Lease (they wait `lease_duration` from the last change they saw).
    fn check_deadline(&mut self, now: Instant) {
        let expired = self
            .last_renewed
            .is_none_or(|t| now.saturating_duration_since(t) >= self.settings.renew_deadline);
        if self.leading && expired {
            self.set_leading(false);
        }
    }

    fn tick(&mut self, ctx: &mut Context<Self>) {
        self.check_deadline(Instant::now());
        if self.trying || self.released {
            return;
        }
        self.trying = true;
        let api = self.api.clone();
        let name = self.settings.lease_name.clone();
        let identity = self.identity.clone();
        let duration = self.settings.lease_duration;
        let mut observed = self.observed.clone();
        let attempt = async move {
            let result =
                try_acquire_or_renew(&api, &name, &identity, &mut observed, duration).await;
            (result, observed)
        };
        ctx.spawn(
            attempt
                .into_actor(self)
                .map(|(result, observed), act, ctx| {
                    act.trying = false;
                    act.observed = observed;
                    if act.released {
                        return;
                    }
                    match result {
                        Ok(true) => {
                            let renewed = Instant::now();
                            act.last_renewed = Some(renewed);
                            act.set_leading(true);
                            // Step down exactly at the deadline if no renewal comes before it.
                            ctx.run_later(act.settings.renew_deadline, |act, _| {
                                act.check_deadline(Instant::now())
                            });
                        }
                        Ok(false) => act.set_leading(false),
                        Err(ElectionError::Conflict) => {
                            tracing::debug!("Lease conflict; reading it again next try");
                            act.check_deadline(Instant::now());
                        }
                        Err(error) => {
                            tracing::debug!(%error, "Lease try failed");
                            act.check_deadline(Instant::now());
                        }
                    }
                }),
        );
    }
}

/// One try: read the Lease, decide, write. `Ok(true)`: we hold it now.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    name: &str,
    identity: &str,
    observed: &mut Option<Observation>,
    lease_duration: Duration,
) -> Result<bool, ElectionError> {
    let current = api.get_opt(name).await?;
    let record = current.as_ref().map(LeaseRecord::of);
    let decision = decide(
        record.as_ref(),
        identity,
        observed,
        Instant::now(),
        lease_duration,
    );
    let seconds = i32::try_from(lease_duration.as_secs()).unwrap_or(i32::MAX);
    let now = MicroTime(Timestamp::now());
    match (decision, current) {
        (Decision::Follow, _) => Ok(false),
        (Decision::Create, _) => {
            let lease = Lease {
                metadata: ObjectMeta {
                    name: Some(name.to_string()),
                    ..ObjectMeta::default()
                },
                spec: Some(LeaseSpec {
                    holder_identity: Some(identity.to_string()),
                    lease_duration_seconds: Some(seconds),
                    acquire_time: Some(now.clone()),
                    renew_time: Some(now),
                    lease_transitions: Some(0),
                    ..LeaseSpec::default()
                }),
            };
            write(api.create(&PostParams::default(), &lease).await)?;
            Ok(true)
        }
        (decision, Some(mut lease)) => {
            let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
            if decision == Decision::TakeOver {
                spec.holder_identity = Some(identity.to_string());
                spec.acquire_time = Some(now.clone());
                spec.lease_transitions = Some(spec.lease_transitions.unwrap_or_default() + 1);
            }
            spec.lease_duration_seconds = Some(seconds);
            spec.renew_time = Some(now);
            // The read's resourceVersion travels with the object: a concurrent write wins
            // and ours answers 409.
            let written = write(api.replace(name, &PostParams::default(), &lease).await)?;
            *observed = Some(Observation {
                record: LeaseRecord::of(&written),
                at: Instant::now(),
            });
            Ok(true)
        }
        // Decided on a Lease that was read, so it exists.
        (_, None) => Ok(false),
    }
}

/// A write's result, a `409` as [`ElectionError::Conflict`].
fn write(result: Result<Lease, kube::Error>) -> Result<Lease, ElectionError> {
    result.map_err(|error| match &error {
        kube::Error::Api(status) if status.code == 409 => ElectionError::Conflict,
        _ => ElectionError::Api(error),
    })
}

/// Clears the holder if it is us, so a follower takes over at its next try instead of after
/// a whole `lease_duration`. A renewal still in flight may win the race once: the release
/// then reads the Lease again.
async fn release(api: Api<Lease>, name: String, identity: String) -> Result<(), ElectionError> {
    let mut attempts = 0;
    loop {
        attempts += 1;
        match release_once(&api, &name, &identity).await {
            Err(ElectionError::Conflict) if attempts < 3 => continue,
            done => return done,
        }
    }
}

async fn release_once(api: &Api<Lease>, name: &str, identity: &str) -> Result<(), ElectionError> {
    let Some(mut lease) = api.get_opt(name).await? else {
        return Ok(());
    };
    let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
    if spec.holder_identity.as_deref() != Some(identity) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(MicroTime(Timestamp::now()));
    write(api.replace(name, &PostParams::default(), &lease).await)?;
    Ok(())
}

impl Actor for LeaderElector {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        self.metrics.leader.set(0);
        self.tick(ctx);
        ctx.run_interval(self.settings.retry_period, |act, ctx| act.tick(ctx));
    }
}

impl Handler<Release> for LeaderElector {
    type Result = ResponseActFuture<Self, ()>;

    fn handle(&mut self, _: Release, _: &mut Context<Self>) -> Self::Result {
        let was_leading = self.leading;
        self.released = true;
        self.last_renewed = None;
        // The subscribers have withdrawn the device families before the Lease is released:
        // the moment another replica may lead, this one no longer publishes.
        let stopped: Vec<_> = if was_leading {
            self.leading = false;
            self.metrics.leader.set(0);
            self.metrics.transitions.inc();
            tracing::info!(lease = %self.settings.lease_name, "releasing the Lease for shutdown");
            self.subscribers
                .iter()
                .map(|s| s.send(LeadershipChanged(false)))
                .collect()
        } else {
            Vec::new()
        };
        let released = release(
            self.api.clone(),
            self.settings.lease_name.clone(),
            self.identity.clone(),
        );
        Box::pin(
            async move {
                if !was_leading {
                    return;
                }
                futures::future::join_all(stopped).await;
                if let Err(error) = released.await {
                    tracing::warn!(%error, "could not release the Lease; a follower takes over after lease_duration");
                }
            }
            .into_actor(self),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(holder: &str, transitions: i32) -> LeaseRecord {
        LeaseRecord {
            holder: holder.to_string(),
            renew_time: None,
            lease_duration_seconds: 15,
            transitions,
        }
    }

    const DURATION: Duration = Duration::from_secs(15);

    #[test]
    fn no_lease_is_created_and_our_own_is_renewed() {
        let mut observed = None;
        let now = Instant::now();
        assert_eq!(
            decide(None, "a", &mut observed, now, DURATION),
            Decision::Create
        );
        let mine = record("a", 0);
        assert_eq!(
            decide(Some(&mine), "a", &mut observed, now, DURATION),
            Decision::Renew
        );
    }

    #[test]
    fn another_holder_is_followed_until_its_record_stands_still_for_the_lease_duration() {
        let mut observed = None;
        let t0 = Instant::now();
        let theirs = record("b", 0);
        assert_eq!(
            decide(Some(&theirs), "a", &mut observed, t0, DURATION),
            Decision::Follow
        );
        let t1 = t0 + Duration::from_secs(14);
        assert_eq!(
            decide(Some(&theirs), "a", &mut observed, t1, DURATION),
            Decision::Follow
        );
        // A renewal (a new renew time) restarts the wait.
        let renewed = LeaseRecord {
            renew_time: Some(Timestamp::UNIX_EPOCH),
            ..theirs.clone()
        };
        assert_eq!(
            decide(Some(&renewed), "a", &mut observed, t1, DURATION),
            Decision::Follow
        );
        let t2 = t1 + Duration::from_secs(14);
        assert_eq!(
            decide(Some(&renewed), "a", &mut observed, t2, DURATION),
            Decision::Follow
        );
        let t3 = t1 + Duration::from_secs(15);
        assert_eq!(
            decide(Some(&renewed), "a", &mut observed, t3, DURATION),
            Decision::TakeOver
        );
    }

    #[test]
    fn a_released_lease_is_taken_at_once() {
        let mut observed = None;
        let released = record("", 3);
        assert_eq!(
            decide(
                Some(&released),
                "a",
                &mut observed,
                Instant::now(),
                DURATION
            ),
            Decision::TakeOver
        );
    }

    #[test]
    fn the_holders_own_duration_applies() {
        let mut observed = None;
        let t0 = Instant::now();
        let short = LeaseRecord {
            lease_duration_seconds: 2,
            ..record("b", 0)
        };
        assert_eq!(
            decide(Some(&short), "a", &mut observed, t0, DURATION),
            Decision::Follow
        );
        let later = t0 + Duration::from_secs(2);
        assert_eq!(
            decide(Some(&short), "a", &mut observed, later, DURATION),
            Decision::TakeOver
        );
    }
}
