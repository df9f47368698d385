//! The part both caches share: turning a kube-rs watcher's event stream into a keyed store
//! of decoded records, with kube's relist semantics, and the streams themselves (live
//! watchers, or a snapshot file replayed as one initial list).
//!
//! A relist (first start, `410 Gone`, reconnect after a long outage) is buffered from
//! `Init` to `InitDone` and then *replaces* the store, so objects deleted while we were not
//! watching disappear and readers never see a half-listed state.

use std::collections::HashMap;
use std::fmt::Debug;
use std::time::Duration;

use actix::prelude::*;
use futures::stream::{self, BoxStream, StreamExt};
use kube::api::{Api, ListParams};
use kube::runtime::watcher::{self, Event};
use kube::runtime::WatchStreamExt;
use kube::Resource;
use serde::de::DeserializeOwned;

/// The item type of every stream a cache consumes.
pub type WatchItem<K> = Result<Event<K>, watcher::Error>;

/// A keyed store of decoded records fed by watcher events.
#[derive(Debug)]
pub struct KeyedStore<R> {
    live: HashMap<String, R>,
    /// Records of a relist in progress; swapped in at `InitDone`.
    relist: Option<HashMap<String, R>>,
}

impl<R> Default for KeyedStore<R> {
    fn default() -> Self {
        Self {
            live: HashMap::new(),
            relist: None,
        }
    }
}

/// What one event did to the store, for the caller's bookkeeping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreChange {
    /// The live records changed.
    Changed,
    /// A relist began (records buffer aside; the live ones stay visible).
    RelistStarted,
    /// A relist completed and replaced the live records.
    RelistDone,
    /// Nothing visible changed (buffered item, or a no-op).
    Unchanged,
}

impl<R: PartialEq> KeyedStore<R> {
    /// Applies one event. `decode` gives an object's key and its record, or `None` when the
    /// object is not tracked (which removes any record under that key); it is shown the live
    /// record under the object's key, so what a decoder first saw of an object can outlive
    /// its changes.
    pub fn apply<K>(
        &mut self,
        event: Event<K>,
        mut decode: impl FnMut(&K, Option<&R>) -> (String, Option<R>),
        key_of: impl Fn(&K) -> String,
    ) -> StoreChange {
        match event {
            Event::Init => {
                self.relist = Some(HashMap::new());
                StoreChange::RelistStarted
            }
            Event::InitApply(object) => {
                let (key, record) = decode(&object, self.live.get(&key_of(&object)));
                match (&mut self.relist, record) {
                    (Some(buffer), Some(record)) => {
                        buffer.insert(key, record);
                        StoreChange::Unchanged
                    }
                    (Some(_), None) => StoreChange::Unchanged,
                    // An InitApply without Init should not happen; treat it as a live change.
                    (None, record) => self.upsert(key, record),
                }
            }
            Event::InitDone => {
                if let Some(buffer) = self.relist.take() {
                    self.live = buffer;
                }
                StoreChange::RelistDone
            }
            Event::Apply(object) => {
                let (key, record) = decode(&object, self.live.get(&key_of(&object)));
                self.upsert(key, record)
            }
            Event::Delete(object) => {
                let key = key_of(&object);
                if self.live.remove(&key).is_some() {
                    StoreChange::Changed
                } else {
                    StoreChange::Unchanged
                }
            }
        }
    }

    fn upsert(&mut self, key: String, record: Option<R>) -> StoreChange {
        match record {
            Some(record) => {
                if self.live.get(&key) == Some(&record) {
                    StoreChange::Unchanged
                } else {
                    self.live.insert(key, record);
                    StoreChange::Changed
                }
            }
            None => {
                if self.live.remove(&key).is_some() {
                    StoreChange::Changed
                } else {
                    StoreChange::Unchanged
                }
            }
        }
    }
}

impl<R> KeyedStore<R> {
    pub fn values(&self) -> impl Iterator<Item = &R> + '_ {
        self.live.values()
    }

    pub fn get(&self, key: &str) -> Option<&R> {
        self.live.get(key)
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

/// The store key of a Kubernetes object: its UID, else `namespace/name`.
pub fn object_key<K: Resource>(object: &K) -> String {
    let meta = object.meta();
    match &meta.uid {
        Some(uid) if !uid.is_empty() => uid.clone(),
        _ => format!(
            "{}/{}",
            meta.namespace.as_deref().unwrap_or_default(),
            meta.name.as_deref().unwrap_or_default()
        ),
    }
}

/// A live watcher on every object of `api`: the initial list served from the API server's
/// cache (`resourceVersion=0`), then a watch with bookmarks, re-established with kube-rs'
/// capped exponential backoff after any error.
pub fn live<K>(api: Api<K>) -> BoxStream<'static, WatchItem<K>>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
{
    let config = watcher::Config::default().any_semantic();
    watcher::watcher(api, config).default_backoff().boxed()
}

/// Objects loaded from a file, replayed as one initial list; the stream then stays open so
/// the cache keeps serving them.
pub fn replay<K: Send + 'static>(objects: Vec<K>) -> BoxStream<'static, WatchItem<K>> {
    let events = std::iter::once(Event::Init)
        .chain(objects.into_iter().map(Event::InitApply))
        .chain(std::iter::once(Event::InitDone))
        .map(Ok);
    stream::iter(events).chain(stream::pending()).boxed()
}

/// Resolves once the API server serves `api`'s resource: at once unless it answers 404
/// (the group or version is absent); then one line (naming `what`) says so, and it is
/// asked again every `interval`. Any other answer resolves too: the watcher reports it.
pub async fn until_served<K>(api: Api<K>, what: &'static str, interval: Duration)
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    let mut told = false;
    loop {
        match api.list_metadata(&ListParams::default().limit(1)).await {
            Err(kube::Error::Api(status)) if status.code == 404 => {
                if !told {
                    tracing::info!(
                        api = what,
                        "not served by this API server: its devices are not shown (asked again every {}s)",
                        interval.as_secs()
                    );
                    told = true;
                }
            }
            _ => {
                if told {
                    tracing::info!(api = what, "now served: watching it");
                }
                return;
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// Resolves once `api` can be listed again; used to notice recovery after watch errors
/// when no event would otherwise tell us.
pub async fn until_listable<K>(api: Api<K>)
where
    K: Resource + Clone + DeserializeOwned + Debug,
{
    loop {
        if api
            .list_metadata(&ListParams::default().limit(1))
            .await
            .is_ok()
        {
            return;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

/// Problems found when a cache publishes (a claim naming an unknown device, a slice for an
/// unknown node) are found again at every publication; each is counted the first time only.
/// Bounded: past [`CountedProblems::LIMIT`] distinct problems the memory starts over.
#[derive(Debug, Default)]
pub struct CountedProblems {
    seen: std::collections::HashSet<String>,
}

impl CountedProblems {
    pub const LIMIT: usize = 10_000;

    /// Whether `problem` is new (and remembers it).
    pub fn first_time(&mut self, problem: &str) -> bool {
        if self.seen.contains(problem) {
            return false;
        }
        if self.seen.len() >= Self::LIMIT {
            self.seen.clear();
        }
        self.seen.insert(problem.to_string())
    }
}

/// The `type` label of `hami_webui_watch_events_total` for an event.
pub fn event_type<K>(event: &Event<K>) -> &'static str {
    match event {
        Event::Init => "init",
        Event::InitApply(_) => "init_apply",
        Event::InitDone => "init_done",
        Event::Apply(_) => "apply",
        Event::Delete(_) => "delete",
    }
}

/// An actor fed by one watcher: what the shared handling of watch errors needs of it.
pub trait Watching<K>: Actor<Context = Context<Self>>
where
    K: Resource + Clone + DeserializeOwned + Debug + 'static,
{
    fn health(&mut self) -> &mut WatchHealth;

    /// The API to probe during an outage; `None` in snapshot mode.
    fn api(&self) -> Option<Api<K>>;

    /// A watch error: counted, and on the first of a streak a recovery probe that marks the
    /// watch restored as soon as the API lists again (the watcher's own backoff may wait
    /// longer before its next event).
    fn on_watch_error(&mut self, error: &watcher::Error, ctx: &mut Context<Self>) {
        if !self.health().on_error(error) {
            return;
        }
        if let Some(api) = self.api() {
            ctx.spawn(
                until_listable(api)
                    .into_actor(self)
                    .map(|_, act, _| act.health().restored()),
            );
        }
    }
}

/// The bookkeeping both caches do around their watch stream: event and error counters,
/// relist counting, readiness, and one log line per state change (lost / restored), not per
/// retry.
pub struct WatchHealth {
    source: &'static str,
    board: std::sync::Arc<crate::readiness::ReadinessBoard>,
    metrics: crate::telemetry::SelfMetrics,
    relists: u64,
    synced: bool,
    failing: bool,
}

impl WatchHealth {
    pub fn new(
        source: &'static str,
        board: std::sync::Arc<crate::readiness::ReadinessBoard>,
        metrics: crate::telemetry::SelfMetrics,
    ) -> Self {
        Self {
            source,
            board,
            metrics,
            relists: 0,
            synced: false,
            failing: false,
        }
    }

    /// Records a watch error. Returns true when this error starts a failure streak, so the
    /// caller can start a recovery probe.
    pub fn on_error(&mut self, error: &watcher::Error) -> bool {
        self.metrics
            .watch_events
            .with_label_values(&[self.source, "error"])
            .inc();
        self.board.mark_failing(self.source);
        if self.failing {
            return false;
        }
        self.failing = true;
        if self.synced {
            tracing::warn!(resource = self.source, %error, "Kubernetes watch lost; serving the last known state");
        } else {
            tracing::warn!(resource = self.source, %error, "Kubernetes API not reachable yet; retrying");
        }
        true
    }

    /// Records an event; any event proves the watch works again.
    pub fn on_event<K>(&mut self, event: &Event<K>) {
        self.metrics
            .watch_events
            .with_label_values(&[self.source, event_type(event)])
            .inc();
        if matches!(event, Event::Init) {
            self.relists += 1;
            if self.relists > 1 {
                self.metrics
                    .watch_restarts
                    .with_label_values(&[self.source])
                    .inc();
            }
        }
        self.restored();
    }

    /// The initial list (or a relist) completed.
    pub fn on_synced(&mut self, objects: usize) {
        if !self.synced {
            tracing::info!(resource = self.source, objects, "initial list synced");
        }
        self.synced = true;
        self.board.mark_synced(self.source);
        self.restored();
    }

    /// The API answered again (an event arrived, or the recovery probe succeeded).
    pub fn restored(&mut self) {
        if !self.failing {
            return;
        }
        self.failing = false;
        if self.board.mark_recovered(self.source) {
            tracing::info!(resource = self.source, "Kubernetes watch restored");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(v: &(String, i32), _: Option<&i32>) -> (String, Option<i32>) {
        (v.0.clone(), (v.1 >= 0).then_some(v.1))
    }
    fn key(v: &(String, i32)) -> String {
        v.0.clone()
    }
    fn obj(k: &str, v: i32) -> (String, i32) {
        (k.to_string(), v)
    }

    #[test]
    fn relist_replaces_and_drops_objects_missing_from_it() {
        let mut store = KeyedStore::default();
        store.apply(Event::Apply(obj("a", 1)), decode, key);
        store.apply(Event::Apply(obj("b", 2)), decode, key);
        assert_eq!(
            store.apply(Event::Init, decode, key),
            StoreChange::RelistStarted
        );
        store.apply(Event::InitApply(obj("a", 3)), decode, key);
        assert_eq!(store.get("b"), Some(&2), "old state visible until InitDone");
        assert_eq!(
            store.apply(Event::InitDone, decode, key),
            StoreChange::RelistDone
        );
        assert_eq!(store.get("a"), Some(&3));
        assert_eq!(store.get("b"), None);
    }

    #[test]
    fn untracked_update_removes_and_identical_update_is_unchanged() {
        let mut store = KeyedStore::default();
        assert_eq!(
            store.apply(Event::Apply(obj("a", 1)), decode, key),
            StoreChange::Changed
        );
        assert_eq!(
            store.apply(Event::Apply(obj("a", 1)), decode, key),
            StoreChange::Unchanged
        );
        assert_eq!(
            store.apply(Event::Apply(obj("a", -1)), decode, key),
            StoreChange::Changed
        );
        assert!(store.is_empty());
        assert_eq!(
            store.apply(Event::Delete(obj("a", 1)), decode, key),
            StoreChange::Unchanged
        );
    }

    #[test]
    fn decoders_see_the_live_record_of_the_object_while_relisted_too() {
        let mut store = KeyedStore::default();
        let mut seen = Vec::new();
        let mut remember = |v: &(String, i32), before: Option<&i32>| {
            seen.push(before.copied());
            decode(v, before)
        };
        store.apply(Event::Apply(obj("a", 1)), &mut remember, key);
        store.apply(Event::Apply(obj("a", 2)), &mut remember, key);
        store.apply(Event::Init, &mut remember, key);
        store.apply(Event::InitApply(obj("a", 3)), &mut remember, key);
        assert_eq!(seen, [None, Some(1), Some(2)]);
    }
}
