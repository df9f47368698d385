//! High availability end to end: several real server processes against the test API server,
//! one Lease, and every replica's `/metrics` sampled every 100 ms for the whole test, so a
//! moment with two publishers of the device families would be seen.
//!
//! Timings are shortened (Lease 4 s, renew deadline 3 s, retry 500 ms, refresh every 2 s);
//! every bound the tests assert is the one the issue names, in these settings.

mod support;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use support::fixtures::{nvidia_node, nvidia_pod};
use support::kube_api::{ApiServerThread, TestApiServer};
use support::process::{request, wait_for, Launch, ServerProcess};
use support::upstream::{StubReply, StubServer};

const NAMESPACE: &str = "hami";
const LEASE: &str = "hami-webui-server";
const LEASE_DURATION: Duration = Duration::from_secs(4);
const RENEW_DEADLINE: Duration = Duration::from_secs(3);
const RETRY_PERIOD: Duration = Duration::from_millis(500);
const INTERVAL: Duration = Duration::from_secs(2);
const SAMPLE_EVERY: Duration = Duration::from_millis(100);
/// Bounds the sampler even if a test forgets to stop it: five minutes of rounds.
const MAX_ROUNDS: usize = 3_000;

/// An empty instant vector for every query: cycles succeed and publish the families the
/// cluster alone determines.
fn store() -> StubServer {
    StubServer::start(StubReply::Json(
        200,
        r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#.to_string(),
    ))
}

fn cluster(api: &TestApiServer) {
    api.apply_node(nvidia_node("gpu-a", 2));
    api.apply_pod(nvidia_pod(
        "team",
        "trainer",
        "gpu-a",
        &[("GPU-gpu-a-0", 4096, 30)],
    ));
}

fn replica(api: &TestApiServer, store: &StubServer, name: &str) -> ServerProcess {
    let config = format!(
        "prometheus:\n  address: {store}\n\
         exporter:\n  interval: {interval}ms\n\
         leader_election:\n  enabled: true\n  lease_name: {LEASE}\n  namespace: {NAMESPACE}\n  \
         lease_duration: {lease}ms\n  renew_deadline: {renew}ms\n  retry_period: {retry}ms\n",
        store = store.url(),
        interval = INTERVAL.as_millis(),
        lease = LEASE_DURATION.as_millis(),
        renew = RENEW_DEADLINE.as_millis(),
        retry = RETRY_PERIOD.as_millis(),
    );
    let api_url = api.base_url();
    let server = ServerProcess::start(Launch {
        config_yaml: &config,
        env: &[("POD_NAME", name)],
        api_server: &api_url,
        ..Launch::default()
    });
    assert!(
        server.wait_live(Duration::from_secs(20)),
        "{name} never answered:\n{}",
        server.log()
    );
    server
}

/// A series of a device or container family: `hami_*` but not the server's own
/// `hami_webui_*`.
fn publishes_device_families(exposition: &str) -> bool {
    exposition
        .lines()
        .any(|line| line.starts_with("hami_") && !line.starts_with("hami_webui_"))
}

fn self_metric(exposition: &str, name: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// Every replica's `/metrics` at (nearly) one instant: the requests of a round go out
/// together, one thread each. `None`: the replica did not answer (killed or stopped).
#[derive(Debug, Clone)]
struct Round {
    at: Instant,
    publishing: Vec<Option<bool>>,
}

impl Round {
    fn publishers(&self) -> Vec<usize> {
        (0..self.publishing.len())
            .filter(|i| self.publishing[*i] == Some(true))
            .collect()
    }
}

struct Sampler {
    stop: Arc<AtomicBool>,
    rounds: Arc<Mutex<Vec<Round>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Sampler {
    fn start(ports: Vec<u16>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let rounds = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (stop, rounds) = (Arc::clone(&stop), Arc::clone(&rounds));
            std::thread::spawn(move || {
                for _ in 0..MAX_ROUNDS {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let at = Instant::now();
                    let publishing = std::thread::scope(|scope| {
                        let asks: Vec<_> = ports
                            .iter()
                            .map(|port| {
                                scope.spawn(move || {
                                    let reply = request(*port, "GET", "/metrics", &[], b"").ok()?;
                                    (reply.status == 200)
                                        .then(|| publishes_device_families(&reply.text()))
                                })
                            })
                            .collect();
                        asks.into_iter()
                            .map(|ask| ask.join().ok().flatten())
                            .collect()
                    });
                    rounds
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(Round { at, publishing });
                    std::thread::sleep(SAMPLE_EVERY.saturating_sub(at.elapsed()));
                }
            })
        };
        Sampler {
            stop,
            rounds,
            thread: Some(thread),
        }
    }

    fn rounds(&self) -> Vec<Round> {
        self.rounds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The first round at or after `since` satisfying `check`, polled until `deadline`.
    fn first_round(
        &self,
        since: Instant,
        deadline: Duration,
        check: impl Fn(&Round) -> bool,
    ) -> Option<Round> {
        wait_for(deadline, || {
            self.rounds()
                .into_iter()
                .find(|round| round.at >= since && check(round))
        })
    }

    /// Stops sampling and fails the test if any round ever saw two publishers.
    fn finish(mut self) -> Vec<Round> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            thread.join().expect("sampler thread");
        }
        let rounds = self.rounds();
        let doubled: Vec<&Round> = rounds.iter().filter(|r| r.publishers().len() > 1).collect();
        assert!(
            doubled.is_empty(),
            "{} of {} rounds saw two publishers, first: {:?}",
            doubled.len(),
            rounds.len(),
            doubled.first()
        );
        rounds
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The longest time between two sampling rounds: the "every 100 ms" claim, as achieved.
fn widest_gap(rounds: &[Round]) -> Duration {
    rounds
        .windows(2)
        .map(|pair| pair[1].at.duration_since(pair[0].at))
        .max()
        .unwrap_or_default()
}

fn logs(replicas: &[ServerProcess]) -> String {
    replicas
        .iter()
        .enumerate()
        .map(|(i, r)| format!("--- replica-{i}\n{}", r.log()))
        .collect()
}

/// The node list through REST must come from the replica's own caches.
fn assert_serves_rest(replica: &ServerProcess, what: &str) {
    let reply = request(
        replica.port,
        "POST",
        "/v1/nodes",
        &[("Content-Type", "application/json")],
        b"{}",
    )
    .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(reply.status, 200, "{what}: {}", reply.text());
    let body = reply.text();
    assert!(body.contains("gpu-a"), "{what}: {body}");
}

#[test]
fn one_of_three_replicas_publishes_and_another_takes_over_after_sigkill_and_sigterm() {
    let api = ApiServerThread::start();
    cluster(&api);
    let store = store();
    let mut replicas: Vec<ServerProcess> = (0..3)
        .map(|i| replica(&api, &store, &format!("replica-{i}")))
        .collect();
    let sampler = Sampler::start(replicas.iter().map(|r| r.port).collect());

    let started = Instant::now();
    let first = sampler
        .first_round(started, Duration::from_secs(30), |r| {
            r.publishers().len() == 1
        })
        .unwrap_or_else(|| panic!("no replica ever published:\n{}", logs(&replicas)));
    let leader = first.publishers()[0];
    assert_eq!(
        api.lease_holder(NAMESPACE, LEASE),
        Some(format!("replica-{leader}")),
        "the publisher holds the Lease"
    );
    // Followers serve the console's lists and are ready; their /metrics says who leads.
    for (i, replica) in replicas.iter().enumerate() {
        assert_serves_rest(replica, &format!("replica-{i}"));
        let ready = replica.get("/readyz").expect("readyz");
        assert_eq!(ready.status, 200, "replica-{i} not ready: {}", ready.text());
        let text = replica.get("/metrics").expect("metrics").text();
        let expected = if i == leader { 1.0 } else { 0.0 };
        assert_eq!(
            self_metric(&text, "hami_webui_leader"),
            Some(expected),
            "replica-{i}"
        );
    }

    // SIGKILL: nothing is released; a follower waits out the Lease.
    let killed_at = Instant::now();
    replicas[leader].kill();
    let bound = LEASE_DURATION + INTERVAL;
    let after_kill = sampler
        .first_round(killed_at, bound + Duration::from_secs(10), |r| {
            r.publishers().iter().any(|p| *p != leader)
        })
        .unwrap_or_else(|| panic!("nobody took over:\n{}", logs(&replicas)));
    let failover = after_kill.at.duration_since(killed_at);
    let second = after_kill.publishers()[0];
    assert!(
        failover <= bound,
        "failover after SIGKILL took {failover:?}, bound {bound:?}"
    );

    // SIGTERM: the leader releases the Lease; the last replica takes it at its next try.
    let terminated_at = Instant::now();
    replicas[second].terminate();
    let bound = RETRY_PERIOD + INTERVAL;
    let after_term = sampler
        .first_round(terminated_at, bound + Duration::from_secs(10), |r| {
            r.publishers().iter().any(|p| *p != leader && *p != second)
        })
        .unwrap_or_else(|| panic!("nobody took over after SIGTERM:\n{}", logs(&replicas)));
    let handover = after_term.at.duration_since(terminated_at);
    assert!(
        handover <= bound,
        "hand-over after SIGTERM took {handover:?}, bound {bound:?}"
    );
    let exited = replicas[second].wait_exit(Duration::from_secs(15));
    assert_eq!(
        exited.and_then(|s| s.code()),
        Some(0),
        "{}",
        logs(&replicas)
    );
    let third = after_term.publishers()[0];
    assert_eq!(
        api.lease_holder(NAMESPACE, LEASE),
        Some(format!("replica-{third}"))
    );
    let text = replicas[third].get("/metrics").expect("metrics").text();
    assert_eq!(self_metric(&text, "hami_webui_leader"), Some(1.0));

    let rounds = sampler.finish();
    let widest = widest_gap(&rounds);
    eprintln!(
        "{} rounds, widest gap {widest:?}; failover after SIGKILL {failover:?}, hand-over after SIGTERM {handover:?}",
        rounds.len()
    );
    assert!(
        widest <= Duration::from_secs(1),
        "sampling stalled for {widest:?}"
    );
}

#[test]
fn an_unreachable_api_server_stops_publication_and_rest_still_answers() {
    let api = ApiServerThread::start();
    cluster(&api);
    let store = store();
    let replicas: Vec<ServerProcess> = (0..2)
        .map(|i| replica(&api, &store, &format!("replica-{i}")))
        .collect();
    let sampler = Sampler::start(replicas.iter().map(|r| r.port).collect());
    let leader = sampler
        .first_round(Instant::now(), Duration::from_secs(30), |r| {
            r.publishers().len() == 1
        })
        .unwrap_or_else(|| panic!("no replica ever published:\n{}", logs(&replicas)))
        .publishers()[0];

    let outage = Instant::now();
    api.stop();
    let bound = RENEW_DEADLINE;
    let silent = sampler
        .first_round(outage, bound + Duration::from_secs(10), |r| {
            r.publishers().is_empty()
        })
        .unwrap_or_else(|| panic!("the leader kept publishing:\n{}", logs(&replicas)));
    let stopped_after = silent.at.duration_since(outage);
    // One sampling period of slack: the round that sees it starts up to 100 ms late.
    assert!(
        stopped_after <= bound + SAMPLE_EVERY,
        "publication stopped {stopped_after:?} after the outage began, bound {bound:?}"
    );
    // Past the Lease, nobody may have started publishing: nobody can reach the Lease.
    let quiet_until = outage + LEASE_DURATION + INTERVAL;
    wait_for(Duration::from_secs(15), || {
        (Instant::now() >= quiet_until).then_some(())
    });
    assert!(sampler
        .rounds()
        .iter()
        .filter(|r| r.at >= silent.at)
        .all(|r| r.publishers().is_empty()));
    for (i, replica) in replicas.iter().enumerate() {
        assert_serves_rest(replica, &format!("replica-{i} during the outage"));
    }

    let back = Instant::now();
    api.restart();
    let resumed = sampler
        .first_round(back, Duration::from_secs(30), |r| r.publishers().len() == 1)
        .unwrap_or_else(|| panic!("publication never resumed:\n{}", logs(&replicas)));
    let holder = api.lease_holder(NAMESPACE, LEASE);
    assert_eq!(
        holder,
        Some(format!("replica-{}", resumed.publishers()[0])),
        "the publisher holds the Lease (the leader before the outage was replica-{leader})"
    );
    let rounds = sampler.finish();
    eprintln!(
        "{} rounds; publication stopped {stopped_after:?} into the outage, resumed {:?} after it",
        rounds.len(),
        resumed.at.duration_since(back)
    );
}

#[test]
fn conflicts_a_deleted_lease_and_a_stranger_holding_it_are_survived() {
    let api = ApiServerThread::start();
    cluster(&api);
    let store = store();
    // The first creates lose a race that never happened: 409 until the store says otherwise.
    api.force_lease_conflicts(3);
    let replicas = vec![replica(&api, &store, "replica-0")];
    let sampler = Sampler::start(vec![replicas[0].port]);
    let leads = |r: &Round| r.publishers() == [0];
    let idle = |r: &Round| r.publishers().is_empty();
    sampler
        .first_round(Instant::now(), Duration::from_secs(30), leads)
        .unwrap_or_else(|| panic!("never led after conflicts:\n{}", logs(&replicas)));
    assert!(api.lease_conflicts_answered() >= 3);

    // 409 on two renewals in a row: still within the renew deadline, so it keeps leading.
    let renew_conflicts = Instant::now();
    api.force_lease_conflicts(2);
    wait_for(Duration::from_secs(10), || {
        (api.lease_conflicts_answered() >= 5).then_some(())
    })
    .unwrap_or_else(|| panic!("renewals never hit the conflicts:\n{}", logs(&replicas)));
    let version = |api: &TestApiServer| -> Option<u64> {
        api.lease(NAMESPACE, LEASE)?["metadata"]["resourceVersion"]
            .as_str()?
            .parse()
            .ok()
    };
    let after_conflicts = version(&api).expect("lease");
    wait_for(Duration::from_secs(10), || {
        version(&api).filter(|v| *v > after_conflicts)
    })
    .unwrap_or_else(|| panic!("no renewal after the conflicts:\n{}", logs(&replicas)));
    assert!(
        sampler
            .rounds()
            .iter()
            .filter(|r| r.at >= renew_conflicts)
            .all(leads),
        "two conflicting renewals interrupted publication:\n{}",
        logs(&replicas)
    );

    // Deleted by hand: created again at the next try.
    api.delete_lease(NAMESPACE, LEASE);
    let recreated = wait_for(Duration::from_secs(10), || {
        api.lease_holder(NAMESPACE, LEASE)
    });
    assert_eq!(
        recreated.as_deref(),
        Some("replica-0"),
        "{}",
        logs(&replicas)
    );

    // A stranger takes it and never renews: publication stops at the next try, and resumes
    // once the stranger's own duration passed without a renewal.
    let stranger_seconds = 2;
    let taken = Instant::now();
    api.set_lease_holder(NAMESPACE, LEASE, "stranger", stranger_seconds);
    let yielded = sampler
        .first_round(taken, Duration::from_secs(10), idle)
        .unwrap_or_else(|| panic!("kept publishing under a stranger:\n{}", logs(&replicas)));
    assert!(yielded.at.duration_since(taken) <= RETRY_PERIOD + SAMPLE_EVERY * 2);
    let regained = sampler
        .first_round(yielded.at, Duration::from_secs(20), leads)
        .unwrap_or_else(|| panic!("never took over from the stranger:\n{}", logs(&replicas)));
    let waited = regained.at.duration_since(taken);
    assert!(
        waited >= Duration::from_secs(2),
        "took over after {waited:?}, before the stranger's Lease ran out"
    );
    assert_eq!(
        api.lease_holder(NAMESPACE, LEASE).as_deref(),
        Some("replica-0")
    );
    let lease = api.lease(NAMESPACE, LEASE).expect("lease");
    assert!(
        lease["spec"]["leaseTransitions"].as_i64() >= Some(2),
        "{lease}"
    );

    let text = replicas[0].get("/metrics").expect("metrics").text();
    let transitions = self_metric(&text, "hami_webui_leader_transitions_total");
    // Gained, lost to the stranger, gained again.
    assert_eq!(transitions, Some(3.0), "{text}");
    sampler.finish();
    let log = replicas[0].log();
    assert!(!log.contains("panicked"), "{log}");
}
