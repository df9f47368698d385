//! [`ReplyCache`]: serialized list replies kept per (route, request), each built in the
//! background while the previous one is still served, so that no list request waits for a
//! rebuild after the cluster changes.
//!
//! At 10,000 GPUs one unfiltered container list is 40,000 items, about 150 ms of a core to
//! build and serialize; the frontend's pages poll the same lists from every open browser, and
//! pods change many times a second. A kept reply is served by reference while it is current
//! (built from the request's snapshot generation or newer and, for replies that also carry
//! metrics-store values, younger than `server.http.reply_cache_ttl`). Once it is not, it is
//! still served while one build of its successor runs in the background: for at most
//! `server.http.reply_max_staleness` after the cluster changed, and for at most
//! `server.http.reply_store_staleness` after its store values aged out (stale-while-
//! revalidate, RFC 5861: those values, capacity gauges, are themselves a scrape interval
//! old). Requests that find nothing servable wait for that build.
//! There is never more than one build per list in flight, however fast the cluster changes:
//! a change that arrives during a build is picked up by the next one.
//!
//! The cache belongs to the HTTP layer and holds only finished bytes: no actor shares it, and
//! its lock is held for map bookkeeping, never across a build.

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use bytes::Bytes;
use tokio::sync::watch;

use crate::background::BuildThread;
use crate::error::ApiError;
use crate::http::encoding::EncodedBody;
use crate::http::list_pieces::ListPieces;

/// Entries kept at most, whatever their size: the frontend asks a handful of distinct lists.
const MAX_ENTRIES: usize = 256;
/// Bytes of finished replies kept at most (a 10,000-GPU container list is about 20 MB).
const MAX_BYTES: usize = 96 << 20;
/// Builds one request waits for at most before it takes what the last one made: a build
/// that started before the request's snapshot is awaited, then one that started after it.
const MAX_WAITS: usize = 3;

/// Which routes' replies may be reused, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Built from the snapshot alone: current for as long as the snapshot generation lasts.
    Snapshot,
    /// Also carries metrics-store values: current for the snapshot generation and at most the
    /// configured time to live.
    WithUpstream,
}

/// The cluster snapshot a request is answered from.
#[derive(Debug, Clone, Copy)]
pub struct SnapshotVersion {
    pub generation: u64,
    /// When it was published, superseding the one before.
    pub published: Instant,
}

/// A version published now (tests, and callers that cannot tell).
impl From<u64> for SnapshotVersion {
    fn from(generation: u64) -> Self {
        SnapshotVersion {
            generation,
            published: Instant::now(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ReplyKey {
    route: &'static str,
    request: String,
}

/// One finished reply.
struct Kept {
    generation: u64,
    /// When its build started: its store values are at least this recent.
    started: Instant,
    freshness: Freshness,
    body: EncodedBody,
}

impl Kept {
    fn size(&self) -> usize {
        self.body.size()
    }

    /// When a newer snapshot than its own superseded it, as a request of `version` tells: at
    /// the latest when that version was published.
    fn superseded_since(&self, version: SnapshotVersion, now: Instant) -> Option<Instant> {
        (version.generation > self.generation).then_some(version.published.min(now))
    }

    /// When its store values aged out (`ttl` after its build started), if they have.
    fn expired_since(&self, ttl: Duration, now: Instant) -> Option<Instant> {
        match self.freshness {
            Freshness::Snapshot => None,
            Freshness::WithUpstream => Some(self.started + ttl).filter(|at| *at <= now),
        }
    }
}

/// What a build hands to the requests waiting for it.
type Outcome = Option<Result<Arc<Kept>, Arc<str>>>;

/// The one build of a list in flight.
#[derive(Clone)]
struct Flight {
    generation: u64,
    started: Instant,
    done: watch::Receiver<Outcome>,
}

/// A list's kept reply and its build in flight.
#[derive(Default)]
struct Entry {
    kept: Option<Arc<Kept>>,
    /// When a newer snapshot superseded `kept`: as the first request for a newer generation
    /// told, or (when newer generations were asked for during its build) the start of its
    /// build, whichever came first.
    superseded_since: Option<Instant>,
    /// The newest generation asked for.
    newest: u64,
    /// When the first snapshot newer than the build in flight was published, as the first
    /// request that saw one tells: the start of its result's staleness.
    first_newer: Option<Instant>,
    flight: Option<Flight>,
}

/// A kept reply as one client takes it.
#[derive(Debug, Clone)]
pub enum ReplyBody {
    /// A small reply, kept plain.
    Plain(Bytes),
    /// The kept gzip, for a client that takes it.
    Gzip(Bytes),
    /// The kept gzip, to be inflated as sent for a client that does not take gzip.
    Inflate { packed: Bytes, plain_len: usize },
}

impl ReplyBody {
    fn of(body: &EncodedBody, gzip: bool) -> Self {
        match body {
            EncodedBody::Plain(bytes) => ReplyBody::Plain(bytes.clone()),
            EncodedBody::Gzip { packed, .. } if gzip => ReplyBody::Gzip(packed.clone()),
            EncodedBody::Gzip { packed, plain_len } => ReplyBody::Inflate {
                packed: packed.clone(),
                plain_len: *plain_len,
            },
        }
    }
}

/// What one request does, decided under the lock.
enum Step {
    Serve(Arc<Kept>),
    Wait(Flight),
}

/// Finished list replies, shared by every worker of both listeners.
pub struct ReplyCache {
    ttl: Duration,
    max_staleness: Duration,
    store_staleness: Duration,
    max_bytes: usize,
    entries: Mutex<HashMap<ReplyKey, Entry>>,
    /// Builds started since the start, for the tests and the load driver's reading.
    builds: AtomicU64,
    /// Per route: builds in flight now, and the most there ever were at once.
    flights: Mutex<HashMap<&'static str, (u64, u64)>>,
    /// Where builds do their CPU work.
    build_thread: Arc<BuildThread>,
    /// What builds keep of their work for the next one, for lists built in pieces.
    list_pieces: Arc<ListPieces>,
}

impl ReplyCache {
    /// `ttl` bounds the age of replies with metrics-store values (zero disables reuse of
    /// those); `max_staleness` how long after the cluster changed a reply may still be served
    /// while its successor is built, and `store_staleness` the same after its store values
    /// aged out.
    pub fn new(ttl: Duration, max_staleness: Duration, store_staleness: Duration) -> Self {
        Self::with_limit(ttl, max_staleness, store_staleness, MAX_BYTES)
    }

    fn with_limit(
        ttl: Duration,
        max_staleness: Duration,
        store_staleness: Duration,
        max_bytes: usize,
    ) -> Self {
        ReplyCache {
            ttl,
            max_staleness,
            store_staleness,
            max_bytes,
            entries: Mutex::new(HashMap::new()),
            builds: AtomicU64::new(0),
            flights: Mutex::new(HashMap::new()),
            build_thread: Arc::new(BuildThread::new("reply-builder")),
            list_pieces: Arc::default(),
        }
    }

    /// The thread builds do their CPU work on, below the request threads' priority.
    pub fn build_thread(&self) -> Arc<BuildThread> {
        Arc::clone(&self.build_thread)
    }

    /// The pieces lists built in pieces keep between builds; belongs with the replies they
    /// were built into, so a fresh cache starts without them.
    pub fn list_pieces(&self) -> Arc<ListPieces> {
        Arc::clone(&self.list_pieces)
    }

    /// Builds started so far.
    pub fn builds_started(&self) -> u64 {
        self.builds.load(Ordering::Relaxed)
    }

    /// The most builds of `route` that were ever in flight at once: with one distinct
    /// request of it asked for, at most one however fast the cluster changes.
    pub fn most_builds_in_flight(&self, route: &str) -> u64 {
        self.count_flights().get(route).map_or(0, |(_, most)| *most)
    }

    fn count_flights(&self) -> MutexGuard<'_, HashMap<&'static str, (u64, u64)>> {
        self.flights
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The reply of `route` for `request` (any text that is equal exactly when the decoded
    /// requests are) at snapshot `generation`, gzipped when `gzip` (the client accepts it):
    /// the kept one while it may be served, else the one being built. `build` runs only when
    /// no build of this list is in flight, as a task of its own that outlives the request;
    /// a failed build is not kept and the next request starts another.
    pub async fn get_or_build_encoded<F, Fut>(
        self: &Arc<Self>,
        route: &'static str,
        request: String,
        version: impl Into<SnapshotVersion>,
        freshness: Freshness,
        gzip: bool,
        build: F,
    ) -> Result<ReplyBody, ApiError>
    where
        F: FnOnce() -> Fut + 'static,
        Fut: Future<Output = Result<EncodedBody, ApiError>> + 'static,
    {
        if freshness == Freshness::WithUpstream && self.ttl.is_zero() {
            // Nothing is kept: built for this request alone.
            return Ok(ReplyBody::of(&build().await?, gzip));
        }
        let version = version.into();
        let generation = version.generation;
        let key = ReplyKey { route, request };
        let mut build = Some(build);
        let mut kept = None;
        for _ in 0..MAX_WAITS {
            match self.step(&key, version, freshness, &mut build) {
                Step::Serve(reply) => {
                    kept = Some(reply);
                    break;
                }
                Step::Wait(mut flight) => {
                    let outcome = flight
                        .done
                        .wait_for(Option::is_some)
                        .await
                        .map_err(|_| ApiError::Unavailable("the server is stopping"))?
                        .clone();
                    let reply = match outcome {
                        Some(Ok(reply)) => reply,
                        Some(Err(message)) => return Err(ApiError::ReplyBuild(message)),
                        None => return Err(ApiError::Unavailable("the server is stopping")),
                    };
                    // Built from the request's snapshot or newer, or started recently enough.
                    let current = flight.generation >= generation
                        || flight.started.elapsed() < self.max_staleness;
                    kept = Some(reply);
                    if current {
                        break;
                    }
                }
            }
        }
        match kept {
            Some(kept) => Ok(ReplyBody::of(&kept.body, gzip)),
            None => Err(ApiError::Unavailable("no reply could be built")),
        }
    }

    /// Serves the kept reply when it may be, starts a build when it is not current and none
    /// is in flight, and otherwise names the build to wait for.
    fn step<F, Fut>(
        self: &Arc<Self>,
        key: &ReplyKey,
        version: SnapshotVersion,
        freshness: Freshness,
        build: &mut Option<F>,
    ) -> Step
    where
        F: FnOnce() -> Fut + 'static,
        Fut: Future<Output = Result<EncodedBody, ApiError>> + 'static,
    {
        let now = Instant::now();
        let mut entries = self.lock();
        let generation = version.generation;
        let entry = entries.entry(key.clone()).or_default();
        entry.newest = entry.newest.max(generation);
        if entry
            .flight
            .as_ref()
            .is_some_and(|flight| generation > flight.generation)
        {
            entry.first_newer.get_or_insert(version.published.min(now));
        }
        if let Some(kept) = entry.kept.clone() {
            if let Some(since) = kept.superseded_since(version, now) {
                entry.superseded_since.get_or_insert(since);
            }
            let superseded = entry.superseded_since;
            let expired = kept.expired_since(self.ttl, now);
            if superseded.is_none() && expired.is_none() {
                return Step::Serve(kept);
            }
            let flight = self.ensure_flight(key, entry, generation, freshness, build, now);
            if self.servable(superseded, expired, now) {
                return Step::Serve(kept);
            }
            return Step::Wait(flight);
        }
        let flight = self.ensure_flight(key, entry, generation, freshness, build, now);
        Step::Wait(flight)
    }

    /// Whether a reply superseded and expired at these times (if at all) may still be served
    /// while its successor is built.
    fn servable(
        &self,
        superseded: Option<Instant>,
        expired: Option<Instant>,
        now: Instant,
    ) -> bool {
        let within = |since: Option<Instant>, bound: Duration| {
            since.is_none_or(|since| now.saturating_duration_since(since) < bound)
        };
        within(superseded, self.max_staleness) && within(expired, self.store_staleness)
    }

    /// The build in flight for this list; a new one from `build` when there is none. A
    /// request that already handed its build over (it waited once and found the reply not
    /// current) and finds none in flight gets a flight that reports the kept reply.
    fn ensure_flight<F, Fut>(
        self: &Arc<Self>,
        key: &ReplyKey,
        entry: &mut Entry,
        generation: u64,
        freshness: Freshness,
        build: &mut Option<F>,
        now: Instant,
    ) -> Flight
    where
        F: FnOnce() -> Fut + 'static,
        Fut: Future<Output = Result<EncodedBody, ApiError>> + 'static,
    {
        if let Some(flight) = &entry.flight {
            return flight.clone();
        }
        let (report, done) = watch::channel(None);
        let flight = Flight {
            generation,
            started: now,
            done,
        };
        let Some(build) = build.take() else {
            let outcome = entry
                .kept
                .clone()
                .ok_or_else(|| Arc::from("no reply was built"));
            let _ = report.send(Some(outcome));
            return flight;
        };
        entry.flight = Some(flight.clone());
        entry.first_newer = None;
        self.builds.fetch_add(1, Ordering::Relaxed);
        {
            let mut flights = self.count_flights();
            let (now, most) = flights.entry(key.route).or_default();
            *now += 1;
            *most = (*most).max(*now);
        }
        let cache = Arc::clone(self);
        let key = key.clone();
        actix_rt::spawn(async move {
            let outcome = match build().await {
                Ok(body) => Ok(Arc::new(Kept {
                    generation,
                    started: now,
                    freshness,
                    body,
                })),
                Err(error) => Err(Arc::from(error.to_string())),
            };
            cache.land(&key, generation, now, &outcome);
            let _ = report.send(Some(outcome));
        });
        flight
    }

    /// Keeps a finished build's reply (unless a newer one landed first) and ends its flight.
    fn land(
        &self,
        key: &ReplyKey,
        generation: u64,
        started: Instant,
        outcome: &Result<Arc<Kept>, Arc<str>>,
    ) {
        let now = Instant::now();
        if let Some((now, _)) = self.count_flights().get_mut(key.route) {
            *now = now.saturating_sub(1);
        }
        let mut entries = self.lock();
        let Some(entry) = entries.get_mut(key) else {
            return;
        };
        entry.flight = None;
        let first_newer = entry.first_newer.take();
        if let Ok(reply) = outcome {
            let newer_kept = entry
                .kept
                .as_ref()
                .is_some_and(|kept| kept.generation > generation);
            if !newer_kept {
                entry.kept = Some(Arc::clone(reply));
                // Newer generations asked for during the build: superseded since the first of
                // them was published (after the build started), as far as a request told.
                entry.superseded_since = (entry.newest > generation)
                    .then(|| first_newer.unwrap_or(started).max(started));
            }
        }
        self.evict(&mut entries, now);
    }

    /// Drops what can no longer be served and is not being built, then the oldest replies
    /// while over the bounds. A build in flight keeps its entry; their number is bounded by
    /// the number of entries.
    fn evict(&self, entries: &mut HashMap<ReplyKey, Entry>, now: Instant) {
        entries.retain(|_, entry| {
            let servable = entry.kept.as_ref().is_some_and(|kept| {
                let expired = kept.expired_since(self.ttl, now);
                self.servable(entry.superseded_since, expired, now)
            });
            servable || entry.flight.is_some()
        });
        let size = |entry: &Entry| entry.kept.as_ref().map_or(0, |kept| kept.size());
        let mut total: usize = entries.values().map(size).sum();
        while entries.len() > MAX_ENTRIES || total > self.max_bytes {
            let Some(oldest) = entries
                .iter()
                .filter(|(_, entry)| entry.flight.is_none())
                .min_by_key(|(_, entry)| entry.kept.as_ref().map(|kept| kept.started))
                .map(|(key, _)| key.clone())
            else {
                break;
            };
            if let Some(entry) = entries.remove(&oldest) {
                total = total.saturating_sub(size(&entry));
            }
        }
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<ReplyKey, Entry>> {
        // Only map bookkeeping happens under the lock; a panic there leaves a usable map.
        self.entries
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use tokio::sync::Semaphore;

    const MINUTE: Duration = Duration::from_secs(60);

    /// Store values are served stale for as long as a superseded reply.
    fn cache(ttl: Duration, max_staleness: Duration) -> Arc<ReplyCache> {
        Arc::new(ReplyCache::new(ttl, max_staleness, max_staleness))
    }

    /// Counts builds and the most that ran at once; a build may be held at a gate.
    #[derive(Clone, Default)]
    struct Builds {
        started: Arc<AtomicUsize>,
        running: Arc<AtomicUsize>,
        most_at_once: Arc<AtomicUsize>,
    }

    impl Builds {
        fn making(
            &self,
            text: &str,
            gate: Option<Arc<Semaphore>>,
        ) -> impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = Result<EncodedBody, ApiError>>>>
               + 'static {
            let builds = self.clone();
            let text = EncodedBody::Plain(Bytes::from(text.to_string()));
            move || {
                Box::pin(async move {
                    builds.started.fetch_add(1, Ordering::SeqCst);
                    let now = builds.running.fetch_add(1, Ordering::SeqCst) + 1;
                    builds.most_at_once.fetch_max(now, Ordering::SeqCst);
                    if let Some(gate) = gate {
                        let _pass = gate.acquire().await;
                    }
                    actix_rt::task::yield_now().await;
                    builds.running.fetch_sub(1, Ordering::SeqCst);
                    Ok(text)
                })
            }
        }

        fn started(&self) -> usize {
            self.started.load(Ordering::SeqCst)
        }
    }

    async fn ask(
        cache: &Arc<ReplyCache>,
        request: &str,
        generation: u64,
        freshness: Freshness,
        build: impl FnOnce() -> std::pin::Pin<Box<dyn Future<Output = Result<EncodedBody, ApiError>>>>
            + 'static,
    ) -> Result<Bytes, ApiError> {
        cache
            .get_or_build_encoded(
                "/v1/x",
                request.to_string(),
                generation,
                freshness,
                false,
                build,
            )
            .await
            .map(|reply| match reply {
                ReplyBody::Plain(bytes) | ReplyBody::Gzip(bytes) => bytes,
                ReplyBody::Inflate { packed, .. } => packed,
            })
    }

    /// A snapshot-only reply for `request` at `generation`, offering an ungated build of
    /// `text`.
    fn plain<'a>(
        cache: &'a Arc<ReplyCache>,
        request: &'a str,
        generation: u64,
        builds: &Builds,
        text: &str,
    ) -> impl Future<Output = Result<Bytes, ApiError>> + 'a {
        ask(
            cache,
            request,
            generation,
            Freshness::Snapshot,
            builds.making(text, None),
        )
    }

    /// Asks (offering a build of `wanted`) until the reply reads `wanted`, failing after five
    /// seconds; the distinct replies seen, in order.
    async fn until_reply(
        cache: &Arc<ReplyCache>,
        generation: u64,
        freshness: Freshness,
        builds: &Builds,
        wanted: &str,
    ) -> Vec<Bytes> {
        let deadline = Instant::now() + Duration::from_secs(5);
        let mut seen: Vec<Bytes> = Vec::new();
        loop {
            let reply = ask(
                cache,
                "{}",
                generation,
                freshness,
                builds.making(wanted, None),
            )
            .await
            .unwrap();
            if seen.last() != Some(&reply) {
                seen.push(reply.clone());
            }
            if reply == wanted {
                return seen;
            }
            assert!(Instant::now() < deadline, "never served {wanted:?}");
            actix_rt::time::sleep(Duration::from_millis(2)).await;
        }
    }

    #[actix_rt::test]
    async fn concurrent_identical_requests_build_once() {
        let cache = cache(MINUTE, Duration::from_secs(1));
        let builds = Builds::default();
        let requests = (0..32).map(|_| plain(&cache, "{}", 7, &builds, "reply"));
        let replies = futures::future::join_all(requests).await;
        assert!(replies
            .iter()
            .all(|r| r.as_deref().ok() == Some(&b"reply"[..])));
        assert_eq!(builds.started(), 1);
    }

    #[actix_rt::test]
    async fn after_a_change_the_kept_reply_is_served_while_one_build_runs() {
        let cache = cache(MINUTE, MINUTE);
        let builds = Builds::default();
        let first = plain(&cache, "{}", 1, &builds, "a");
        assert_eq!(first.await.unwrap(), "a");

        // The snapshot changes and the next build is held: the first request after the
        // change is answered at once, from the reply built before it arrived.
        let gate = Arc::new(Semaphore::new(0));
        let held = builds.making("b", Some(gate.clone()));
        assert_eq!(
            ask(&cache, "{}", 2, Freshness::Snapshot, held)
                .await
                .unwrap(),
            "a"
        );
        // A burst of fifty more changes, each with a request: all served the kept reply,
        // and none starts a second build while the first is in flight.
        for generation in 3..53 {
            let build = builds.making("never", None);
            let reply = ask(&cache, "{}", generation, Freshness::Snapshot, build);
            assert_eq!(reply.await.unwrap(), "a");
        }
        assert_eq!(cache.builds_started(), 2);

        // Released, the held build lands and is served, and the generations asked for
        // meanwhile are picked up by exactly one more build.
        gate.add_permits(1);
        let seen = until_reply(&cache, 52, Freshness::Snapshot, &builds, "c").await;
        assert_eq!(seen, ["a", "b", "c"]);
        assert_eq!(cache.builds_started(), 3);
        assert_eq!(builds.started(), 3);
        assert_eq!(builds.most_at_once.load(Ordering::SeqCst), 1);
    }

    #[actix_rt::test]
    async fn without_staleness_a_request_waits_for_the_build_of_its_generation() {
        let cache = cache(MINUTE, Duration::ZERO);
        let builds = Builds::default();
        let first = plain(&cache, "{}", 1, &builds, "a");
        assert_eq!(first.await.unwrap(), "a");
        let again = plain(&cache, "{}", 1, &builds, "z");
        assert_eq!(again.await.unwrap(), "a");
        let newer = plain(&cache, "{}", 2, &builds, "b");
        assert_eq!(newer.await.unwrap(), "b");
        let other = plain(&cache, "{n}", 2, &builds, "c");
        assert_eq!(other.await.unwrap(), "c");
        assert_eq!(builds.started(), 3);
    }

    #[actix_rt::test]
    async fn the_staleness_bound_ends_serving_the_kept_reply() {
        let cache = cache(MINUTE, Duration::from_millis(40));
        let builds = Builds::default();
        let first = plain(&cache, "{}", 1, &builds, "a");
        assert_eq!(first.await.unwrap(), "a");
        let gate = Arc::new(Semaphore::new(0));
        let held = builds.making("b", Some(gate.clone()));
        assert_eq!(
            ask(&cache, "{}", 2, Freshness::Snapshot, held)
                .await
                .unwrap(),
            "a"
        );
        // Past the bound a request waits for the build in flight instead.
        actix_rt::time::sleep(Duration::from_millis(60)).await;
        let waiting = plain(&cache, "{}", 2, &builds, "x");
        let release = async {
            actix_rt::task::yield_now().await;
            gate.add_permits(1);
        };
        let (reply, ()) = futures::join!(waiting, release);
        assert_eq!(reply.unwrap(), "b");
        assert_eq!(builds.started(), 2);
    }

    #[actix_rt::test]
    async fn staleness_counts_from_when_the_newer_snapshot_was_published() {
        let cache = cache(MINUTE, Duration::from_secs(1));
        let builds = Builds::default();
        let first = plain(&cache, "{}", 1, &builds, "a");
        assert_eq!(first.await.unwrap(), "a");
        // Nobody asked while the cluster changed ten seconds ago: the first request waits
        // for the new build instead of getting a reply ten seconds out of date.
        let Some(published) = Instant::now().checked_sub(Duration::from_secs(10)) else {
            return; // A machine up for less than ten seconds: nothing to show.
        };
        let version = SnapshotVersion {
            generation: 2,
            published,
        };
        let reply = cache
            .get_or_build_encoded(
                "/v1/x",
                "{}".into(),
                version,
                Freshness::Snapshot,
                false,
                builds.making("b", None),
            )
            .await
            .unwrap();
        assert!(matches!(reply, ReplyBody::Plain(b) if b == "b"));
    }

    #[actix_rt::test]
    async fn upstream_replies_age_out_in_the_background_and_zero_ttl_never_reuses() {
        let cache = cache(Duration::from_millis(30), Duration::from_secs(1));
        let builds = Builds::default();
        let first = ask(
            &cache,
            "{}",
            1,
            Freshness::WithUpstream,
            builds.making("old", None),
        );
        assert_eq!(first.await.unwrap(), "old");
        until_reply(&cache, 1, Freshness::WithUpstream, &builds, "new").await;

        let uncached = self::cache(Duration::ZERO, Duration::from_secs(1));
        for text in ["one", "two"] {
            let reply = ask(
                &uncached,
                "{}",
                1,
                Freshness::WithUpstream,
                builds.making(text, None),
            );
            assert_eq!(reply.await.unwrap(), text);
        }
    }

    #[actix_rt::test]
    async fn aged_out_store_values_are_served_while_newer_ones_are_fetched() {
        // Store values age out after 10 ms; a reply with them is served for a minute after
        // that, while a superseded one would be served for 10 ms only.
        let cache = Arc::new(ReplyCache::new(
            Duration::from_millis(10),
            Duration::from_millis(10),
            MINUTE,
        ));
        let builds = Builds::default();
        let upstream = |text: &str, gate: Option<Arc<Semaphore>>| {
            ask(
                &cache,
                "{}",
                1,
                Freshness::WithUpstream,
                builds.making(text, gate),
            )
        };
        assert_eq!(upstream("old", None).await.unwrap(), "old");
        actix_rt::time::sleep(Duration::from_millis(40)).await;
        // Long past both the time to live and the staleness bound after a change: the first
        // request is answered from the kept reply, and its successor is built meanwhile.
        let gate = Arc::new(Semaphore::new(0));
        assert_eq!(upstream("new", Some(gate.clone())).await.unwrap(), "old");
        assert_eq!(upstream("never", None).await.unwrap(), "old");
        assert_eq!(cache.builds_started(), 2);
        gate.add_permits(1);
        until_reply(&cache, 1, Freshness::WithUpstream, &builds, "new").await;
        assert_eq!(builds.most_at_once.load(Ordering::SeqCst), 1);

        // Without that allowance the request after the expiry waits for fresh values.
        let strict = Arc::new(ReplyCache::new(
            Duration::from_millis(10),
            MINUTE,
            Duration::ZERO,
        ));
        let ask_strict = |text: &str| {
            ask(
                &strict,
                "{}",
                1,
                Freshness::WithUpstream,
                builds.making(text, None),
            )
        };
        assert_eq!(ask_strict("old").await.unwrap(), "old");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
        assert_eq!(ask_strict("new").await.unwrap(), "new");
    }

    #[actix_rt::test]
    async fn a_gzipped_reply_goes_as_kept_to_gzip_clients_and_inflated_to_the_rest() {
        let cache = cache(MINUTE, Duration::from_secs(1));
        let packed = Bytes::from_static(b"\x1f\x8b packed");
        let built = EncodedBody::Gzip {
            packed: packed.clone(),
            plain_len: 5000,
        };
        let build = move || async move { Ok(built) };
        let gzip = cache
            .get_or_build_encoded("/v1/x", "{}".into(), 1, Freshness::Snapshot, true, build)
            .await
            .unwrap();
        assert!(matches!(&gzip, ReplyBody::Gzip(b) if b.as_ptr() == packed.as_ptr()));
        let never = || async { Err(ApiError::Unavailable("not built again")) };
        let plain = cache
            .get_or_build_encoded("/v1/x", "{}".into(), 1, Freshness::Snapshot, false, never)
            .await
            .unwrap();
        assert!(matches!(plain, ReplyBody::Inflate { packed: p, plain_len: 5000 } if p == packed));
    }

    #[actix_rt::test]
    async fn a_failed_build_reaches_its_waiters_and_is_not_kept() {
        let cache = cache(MINUTE, Duration::from_secs(1));
        let failing =
            || -> std::pin::Pin<Box<dyn Future<Output = Result<EncodedBody, ApiError>>>> {
                Box::pin(async { Err(ApiError::Unavailable("store down")) })
            };
        let failed = futures::future::join_all(
            (0..4).map(|_| ask(&cache, "{}", 1, Freshness::Snapshot, failing)),
        )
        .await;
        assert!(failed.iter().all(
            |reply| matches!(reply, Err(ApiError::ReplyBuild(m)) if m.contains("store down"))
        ));
        let builds = Builds::default();
        let next = plain(&cache, "{}", 1, &builds, "ok");
        assert_eq!(next.await.unwrap(), "ok");
    }

    #[actix_rt::test]
    async fn kept_bytes_stay_under_the_bound() {
        let cache = Arc::new(ReplyCache::with_limit(MINUTE, MINUTE, MINUTE, 1_000));
        let builds = Builds::default();
        let text = "x".repeat(400);
        for n in 0..10 {
            let request = format!("{n}");
            let reply = ask(
                &cache,
                &request,
                1,
                Freshness::Snapshot,
                builds.making(&text, None),
            );
            assert_eq!(reply.await.unwrap().len(), 400);
        }
        let kept: usize = cache
            .lock()
            .values()
            .map(|entry| entry.kept.as_ref().map_or(0, |kept| kept.size()))
            .sum();
        assert!(kept <= 1_000, "kept {kept} bytes");
        assert!(cache.len() <= 3, "kept {} entries", cache.len());
    }
}
