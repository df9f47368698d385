//! `SchedulingEvents`: the actor that reads one pod's events for `GET /v1/scheduling/pod`
//! and keeps them for a few seconds.
//!
//! Events are not watched (a cluster has far more of them than pods); each detail request
//! asks this actor ([`GetPodEvents`]). A fresh cache entry answers at once; otherwise one
//! bounded list runs — `involvedObject.uid` field selector, at most [`MAX_PAGES`] pages of
//! [`PAGE_SIZE`], [`READ_TIMEOUT`] overall — and every request for the same pod that arrives
//! meanwhile waits for that same read, so repeated clicks cost one list per [`TTL`]. The read
//! runs on the actor's context, not the caller's: a caller that gives up does not cancel it.
//! A failed read answers with its status (`forbidden`, `timeout`, `limited`, `error`) and is
//! kept only [`ERROR_TTL`].

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use actix::prelude::*;
use futures::channel::oneshot;
use k8s_openapi::api::core::v1::Event;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, ListParams};

use crate::cluster::scheduling::bounded_text;

/// Events per list page.
pub const PAGE_SIZE: u32 = 200;
/// Pages read before the answer is cut off (`events_incomplete`).
pub const MAX_PAGES: usize = 3;
/// Events kept per pod, newest first.
pub const MAX_ITEMS: usize = 50;
/// Longest event message kept, in bytes.
pub const MAX_MESSAGE: usize = 4 * 1024;
/// Budget of one read, all pages together.
pub const READ_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a successful read is served from the cache.
pub const TTL: Duration = Duration::from_secs(15);
/// How long a failed read is served from the cache.
pub const ERROR_TTL: Duration = Duration::from_secs(2);
/// Pods whose events are kept at most.
pub const CACHE_ITEMS: usize = 128;
/// Approximate bytes of cached events at most.
pub const CACHE_BYTES: usize = 8 * 1024 * 1024;
/// Reads running at once; a further pod's read answers `limited` so event reads can never
/// crowd out the watches on the same API server.
pub const MAX_CONCURRENT_READS: usize = 2;

/// One event about a pod, as the detail view shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulingEvent {
    pub uid: String,
    pub reason: String,
    pub type_: String,
    pub message: String,
    /// Reporting component (`source.component`, else `reportingController`).
    pub source: String,
    pub last_observed_at: Option<Timestamp>,
    pub count: i32,
    pub message_truncated: bool,
}

/// The outcome of reading one pod's events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodEvents {
    /// Newest first, at most [`MAX_ITEMS`].
    pub items: Vec<SchedulingEvent>,
    /// `available`, `empty`, `forbidden`, `timeout`, `limited` or `error`.
    pub status: &'static str,
    /// Some events may be missing: the bounds cut them off or the read failed.
    pub incomplete: bool,
    pub fetched_at: Option<Timestamp>,
}

impl PodEvents {
    /// No events: the read failed with this status (or could not run at all).
    pub fn failed(status: &'static str) -> Self {
        PodEvents {
            items: Vec::new(),
            status,
            incomplete: true,
            fetched_at: Some(Timestamp::now()),
        }
    }

    fn ttl(&self) -> Duration {
        match self.status {
            "available" | "empty" => TTL,
            _ => ERROR_TTL,
        }
    }

    /// What the cache counts against [`CACHE_BYTES`].
    fn weight(&self) -> usize {
        self.items
            .iter()
            .map(|e| 128 + e.uid.len() + e.reason.len() + e.message.len() + e.source.len())
            .sum::<usize>()
            + 64
    }
}

/// The event as shown: message bounded, last observation from the series, then
/// `lastTimestamp`, `eventTime`, `firstTimestamp`, creation; a count of at least 1.
pub fn normalize_event(event: &Event) -> SchedulingEvent {
    let (message, message_truncated) =
        bounded_text(event.message.as_deref().unwrap_or_default(), MAX_MESSAGE);
    let source = event
        .source
        .as_ref()
        .and_then(|s| s.component.clone())
        .filter(|c| !c.is_empty())
        .or_else(|| event.reporting_component.clone())
        .unwrap_or_default();
    let last_observed_at = event
        .series
        .as_ref()
        .and_then(|s| s.last_observed_time.as_ref())
        .map(|t| t.0)
        .or_else(|| event.last_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.event_time.as_ref().map(|t| t.0))
        .or_else(|| event.first_timestamp.as_ref().map(|t| t.0))
        .or_else(|| event.metadata.creation_timestamp.as_ref().map(|t| t.0));
    let count = match &event.series {
        Some(series) => series.count.unwrap_or_default(),
        None => event.count.unwrap_or_default(),
    };
    SchedulingEvent {
        uid: event.metadata.uid.clone().unwrap_or_default(),
        reason: event.reason.clone().unwrap_or_default(),
        type_: event.type_.clone().unwrap_or_default(),
        message,
        source,
        last_observed_at,
        count: count.max(1),
        message_truncated,
    }
}

/// Sorts newest first (ties by UID), keeps [`MAX_ITEMS`], and calls an available read
/// without events `empty`.
pub fn finish_read(
    mut items: Vec<SchedulingEvent>,
    status: &'static str,
    mut incomplete: bool,
    fetched_at: Timestamp,
) -> PodEvents {
    items.sort_by(|a, b| {
        b.last_observed_at
            .cmp(&a.last_observed_at)
            .then_with(|| a.uid.cmp(&b.uid))
    });
    if items.len() > MAX_ITEMS {
        items.truncate(MAX_ITEMS);
        items.shrink_to_fit();
        incomplete = true;
    }
    let status = if items.is_empty() && status == "available" {
        "empty"
    } else {
        status
    };
    PodEvents {
        items,
        status,
        incomplete,
        fetched_at: Some(fetched_at),
    }
}

/// The status a failed list answers with.
pub fn error_status(error: &kube::Error) -> &'static str {
    match error {
        kube::Error::Api(status) => match (status.code, status.reason.as_str()) {
            (401 | 403, _) => "forbidden",
            (429, _) => "limited",
            (504, _) | (_, "Timeout" | "ServerTimeout") => "timeout",
            _ => "error",
        },
        _ => "error",
    }
}

/// Lists the events of pod `uid` in `namespace`, within the bounds above.
pub async fn read_events(api: Api<Event>, namespace: &str, uid: &str) -> PodEvents {
    let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
    let mut params = ListParams::default()
        .fields(&format!("involvedObject.uid={uid}"))
        .limit(PAGE_SIZE);
    let mut items = Vec::new();
    let mut status = "available";
    let mut incomplete = false;
    for page in 0..MAX_PAGES {
        let list = match tokio::time::timeout_at(deadline, api.list(&params)).await {
            Err(_) => {
                (status, incomplete) = ("timeout", true);
                break;
            }
            Ok(Err(error)) => {
                tracing::debug!(%error, namespace, uid, "pod events not read");
                (status, incomplete) = (error_status(&error), true);
                break;
            }
            Ok(Ok(list)) => list,
        };
        // The server applied the selector; this guards against one that ignores it.
        items.extend(
            list.items
                .iter()
                .filter(|e| {
                    e.involved_object.uid.as_deref() == Some(uid)
                        && e.metadata.namespace.as_deref() == Some(namespace)
                })
                .map(normalize_event),
        );
        match list.metadata.continue_.filter(|c| !c.is_empty()) {
            None => break,
            Some(token) => {
                if page + 1 == MAX_PAGES {
                    incomplete = true;
                }
                params.continue_token = Some(token);
            }
        }
    }
    finish_read(items, status, incomplete, Timestamp::now())
}

/// The events of one pod: from the cache while fresh, else from one shared read.
#[derive(Message)]
#[rtype(result = "PodEvents")]
pub struct GetPodEvents {
    pub namespace: String,
    pub uid: String,
}

struct CacheEntry {
    events: PodEvents,
    expires: Instant,
    weight: usize,
}

pub struct SchedulingEvents {
    /// `None` when serving a snapshot file: every answer is `error`.
    client: Option<kube::Client>,
    cache: HashMap<String, CacheEntry>,
    /// Insertion order of `cache`, oldest first, for eviction.
    order: VecDeque<String>,
    bytes: usize,
    /// Callers waiting for the read in flight for a key.
    waiting: HashMap<String, Vec<oneshot::Sender<PodEvents>>>,
}

impl SchedulingEvents {
    pub fn new(client: Option<kube::Client>) -> Self {
        SchedulingEvents {
            client,
            cache: HashMap::new(),
            order: VecDeque::new(),
            bytes: 0,
            waiting: HashMap::new(),
        }
    }

    fn cached(&self, key: &str) -> Option<PodEvents> {
        let entry = self.cache.get(key)?;
        (Instant::now() < entry.expires).then(|| entry.events.clone())
    }

    fn remember(&mut self, key: String, events: PodEvents) {
        let weight = events.weight();
        if weight > CACHE_BYTES {
            return;
        }
        if let Some(old) = self.cache.remove(&key) {
            self.bytes -= old.weight;
            self.order.retain(|k| k != &key);
        }
        while self.cache.len() >= CACHE_ITEMS || self.bytes + weight > CACHE_BYTES {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(old) = self.cache.remove(&oldest) {
                self.bytes -= old.weight;
            }
        }
        let expires = Instant::now() + events.ttl();
        self.bytes += weight;
        self.order.push_back(key.clone());
        self.cache.insert(
            key,
            CacheEntry {
                events,
                expires,
                weight,
            },
        );
    }

    fn read_done(&mut self, key: String, events: PodEvents) {
        for waiter in self.waiting.remove(&key).unwrap_or_default() {
            let _ = waiter.send(events.clone());
        }
        self.remember(key, events);
    }
}

impl Actor for SchedulingEvents {
    type Context = Context<Self>;
}

impl Handler<GetPodEvents> for SchedulingEvents {
    type Result = ResponseFuture<PodEvents>;

    fn handle(&mut self, msg: GetPodEvents, ctx: &mut Context<Self>) -> Self::Result {
        let key = format!("{}/{}", msg.namespace, msg.uid);
        if let Some(events) = self.cached(&key) {
            return Box::pin(std::future::ready(events));
        }
        let Some(client) = self.client.clone() else {
            return Box::pin(std::future::ready(PodEvents::failed("error")));
        };
        let (tx, rx) = oneshot::channel();
        let answer =
            Box::pin(async move { rx.await.unwrap_or_else(|_| PodEvents::failed("error")) });
        if let Some(waiters) = self.waiting.get_mut(&key) {
            waiters.push(tx);
            return answer;
        }
        if self.waiting.len() >= MAX_CONCURRENT_READS {
            let events = PodEvents::failed("limited");
            self.remember(key, events.clone());
            return Box::pin(std::future::ready(events));
        }
        self.waiting.insert(key.clone(), vec![tx]);
        let api: Api<Event> = Api::namespaced(client, &msg.namespace);
        ctx.spawn(
            async move { read_events(api, &msg.namespace, &msg.uid).await }
                .into_actor(self)
                .map(move |events, act, _| act.read_done(key, events)),
        );
        answer
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(value: serde_json::Value) -> Event {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn normalization_prefers_the_series_and_bounds_the_message() {
        let e = event(json!({
            "metadata": {"uid": "e1", "namespace": "dev", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "involvedObject": {"uid": "u"},
            "reason": "FailedScheduling", "type": "Warning",
            "message": "显".repeat(1500), "reportingComponent": "hami-scheduler",
            "lastTimestamp": "2026-01-01T00:00:05Z",
            "series": {"count": 5, "lastObservedTime": "2026-01-01T00:00:09.000000Z"}
        }));
        let got = normalize_event(&e);
        assert_eq!(got.source, "hami-scheduler");
        assert_eq!(got.count, 5);
        assert!(got.message_truncated && got.message.len() <= MAX_MESSAGE);
        assert_eq!(
            got.last_observed_at,
            Some("2026-01-01T00:00:09Z".parse().unwrap())
        );
        let plain = normalize_event(&event(json!({
            "metadata": {"uid": "e2", "creationTimestamp": "2026-01-01T00:00:00Z"},
            "involvedObject": {}, "source": {"component": "default-scheduler"}
        })));
        assert_eq!(plain.count, 1);
        assert_eq!(plain.source, "default-scheduler");
        assert_eq!(
            plain.last_observed_at,
            Some("2026-01-01T00:00:00Z".parse().unwrap())
        );
    }

    #[test]
    fn finishing_sorts_newest_first_and_caps() {
        let items: Vec<SchedulingEvent> = (0..60)
            .map(|i| SchedulingEvent {
                uid: format!("{i:02}"),
                reason: String::new(),
                type_: String::new(),
                message: String::new(),
                source: String::new(),
                last_observed_at: Some(Timestamp::from_second(i).unwrap()),
                count: 1,
                message_truncated: false,
            })
            .collect();
        let done = finish_read(items, "available", false, Timestamp::UNIX_EPOCH);
        assert_eq!(done.items.len(), MAX_ITEMS);
        assert_eq!(done.items[0].uid, "59");
        assert!(done.incomplete);
        let empty = finish_read(Vec::new(), "available", false, Timestamp::UNIX_EPOCH);
        assert_eq!((empty.status, empty.incomplete), ("empty", false));
        let failed = finish_read(Vec::new(), "forbidden", true, Timestamp::UNIX_EPOCH);
        assert_eq!(failed.status, "forbidden");
    }

    #[test]
    fn the_cache_stays_within_its_bounds() {
        let mut actor = SchedulingEvents::new(None);
        for i in 0..1000 {
            actor.remember(
                i.to_string(),
                PodEvents {
                    items: Vec::new(),
                    status: "empty",
                    incomplete: false,
                    fetched_at: None,
                },
            );
        }
        assert!(actor.cache.len() <= CACHE_ITEMS);
        assert_eq!(actor.order.len(), actor.cache.len());
        assert!(actor.bytes <= CACHE_BYTES);
        assert!(actor.cached("999").is_some());
        assert!(actor.cached("0").is_none());
    }
}
