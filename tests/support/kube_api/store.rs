//! The server's state: the objects of every kind at one revision counter, the change log
//! watches resume from (and expire out of), and the registered watches.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_web::web::Bytes;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use super::*;

/// The resources this server knows; everything else is a 404, as for an unknown CRD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum ResourceKind {
    Node,
    Pod,
    ConfigMap,
    Event,
    ResourceSlice,
    ResourceClaim,
}

/// The DRA group, served unless a test turns it off (a cluster older than 1.34, or without
/// DRA).
pub(super) const DRA_GROUP: &str = "resource.k8s.io";

impl ResourceKind {
    pub(super) const ALL: [ResourceKind; 6] = [
        Self::Node,
        Self::Pod,
        Self::ConfigMap,
        Self::Event,
        Self::ResourceSlice,
        Self::ResourceClaim,
    ];

    pub(super) fn index(self) -> usize {
        match self {
            Self::Node => 0,
            Self::Pod => 1,
            Self::ConfigMap => 2,
            Self::Event => 3,
            Self::ResourceSlice => 4,
            Self::ResourceClaim => 5,
        }
    }

    pub(super) fn plural(self) -> &'static str {
        match self {
            Self::Node => "nodes",
            Self::Pod => "pods",
            Self::ConfigMap => "configmaps",
            Self::Event => "events",
            Self::ResourceSlice => "resourceslices",
            Self::ResourceClaim => "resourceclaims",
        }
    }

    pub(super) fn kind(self) -> &'static str {
        match self {
            Self::Node => "Node",
            Self::Pod => "Pod",
            Self::ConfigMap => "ConfigMap",
            Self::Event => "Event",
            Self::ResourceSlice => "ResourceSlice",
            Self::ResourceClaim => "ResourceClaim",
        }
    }

    /// `""` for the core group.
    pub(super) fn group(self) -> &'static str {
        match self {
            Self::ResourceSlice | Self::ResourceClaim => DRA_GROUP,
            _ => "",
        }
    }

    pub(super) fn api_version(self) -> &'static str {
        match self {
            Self::ResourceSlice | Self::ResourceClaim => "resource.k8s.io/v1",
            _ => "v1",
        }
    }

    pub(super) fn namespaced(self) -> bool {
        !matches!(self, Self::Node | Self::ResourceSlice)
    }

    pub(super) fn short_names(self) -> &'static [&'static str] {
        match self {
            Self::Node => &["no"],
            Self::Pod => &["po"],
            Self::ConfigMap => &["cm"],
            Self::Event => &["ev"],
            Self::ResourceSlice | Self::ResourceClaim => &[],
        }
    }

    /// The kind with this plural in this group (`""`: core).
    pub(super) fn from_plural(group: &str, plural: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|kind| kind.plural() == plural && kind.group() == group)
    }
}

/// `(namespace, name)`; namespace is "" for cluster-scoped kinds. Ordered so that a continue
/// token can simply name the last key served.
pub(super) type ObjectKey = (String, String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One entry of the event log that watches replay from.
pub(super) struct Change {
    pub(super) revision: u64,
    pub(super) kind: ResourceKind,
    pub(super) change: ChangeType,
    pub(super) object: Arc<Value>,
    /// Kept so a watch whose selector stops (or starts) matching sees DELETED (or ADDED),
    /// as the real watch cache does.
    pub(super) previous: Option<Arc<Value>>,
}

impl Change {
    pub(super) fn event_type(&self, filter: &ObjectFilter) -> Option<&'static str> {
        let now = filter.matches(&self.object);
        if self.change == ChangeType::Deleted {
            return now.then_some("DELETED");
        }
        let before = self.previous.as_ref().is_some_and(|p| filter.matches(p));
        match (before, now) {
            (false, true) => Some("ADDED"),
            (true, true) => Some("MODIFIED"),
            (true, false) => Some("DELETED"),
            (false, false) => None,
        }
    }
}

pub(super) enum WatchFrame {
    Line(Bytes),
    End,
}

/// An open watch stream. Frames are pushed while the store lock is held, so a stream sees
/// changes in revision order and a bookmark never overtakes an event it covers.
pub(super) struct WatchRegistration {
    pub(super) kind: ResourceKind,
    pub(super) filter: ObjectFilter,
    pub(super) tx: mpsc::UnboundedSender<WatchFrame>,
}

/// Everything the handlers and the test control API share, behind one lock: the revision
/// counter must order objects, the log and watch fan-out together.
pub(super) struct ApiState {
    pub(super) revision: u64,
    /// A watch may resume from revision N only if N >= compacted (nothing after N was lost).
    pub(super) compacted: u64,
    /// Set by `expire()` until the next list: changes in that window are never logged, so a
    /// client can learn about them only by re-listing.
    pub(super) expired_until_list: bool,
    pub(super) objects: [BTreeMap<ObjectKey, Arc<Value>>; 6],
    pub(super) log: VecDeque<Change>,
    pub(super) watches: Vec<WatchRegistration>,
    pub(super) next_uid: u64,
    pub(super) forbidden: HashSet<String>,
    pub(super) requests: HashMap<String, usize>,
    pub(super) bookmark_interval: Duration,
    pub(super) leases: lease::LeaseStore,
    /// Whether `resource.k8s.io/v1` is served (404 for everything under it when not).
    pub(super) dra_served: bool,
}

pub(super) struct Shared {
    pub(super) port: u16,
    pub(super) state: Mutex<ApiState>,
}

impl Shared {
    pub(super) fn lock(&self) -> MutexGuard<'_, ApiState> {
        // A panicking test thread must not take every later request down with it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

pub(super) fn watch_line(event_type: &str, object: &Value) -> Bytes {
    let mut line = format!("{{\"type\":\"{event_type}\",\"object\":").into_bytes();
    // Serialising a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut line, object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

pub(super) fn bookmark_line(kind: ResourceKind, revision: u64, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({ "resourceVersion": revision.to_string() });
    if initial_events_end {
        metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    let object =
        json!({ "kind": kind.kind(), "apiVersion": kind.api_version(), "metadata": metadata });
    watch_line("BOOKMARK", &object)
}

pub(super) fn status_object(code: u16, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    })
}

pub(super) fn expired_message(requested: u64, oldest: u64) -> String {
    format!("too old resource version: {requested} ({oldest})")
}

/// Seconds-precision RFC 3339, the format Kubernetes uses for `metav1.Time`.
pub(super) fn now_rfc3339() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

impl ApiState {
    pub(super) fn new() -> Self {
        Self {
            revision: 1,
            compacted: 0,
            expired_until_list: false,
            objects: Default::default(),
            log: VecDeque::new(),
            watches: Vec::new(),
            next_uid: 1,
            forbidden: HashSet::new(),
            requests: HashMap::new(),
            bookmark_interval: DEFAULT_BOOKMARK_INTERVAL,
            leases: lease::LeaseStore::default(),
            dra_served: true,
        }
    }

    /// Create or replace; panics on an object without a name because that is a broken test.
    pub(super) fn apply(&mut self, kind: ResourceKind, port: u16, mut object: Value) {
        let Some(metadata) = object.get_mut("metadata").and_then(Value::as_object_mut) else {
            panic!("{} without metadata: {object}", kind.kind());
        };
        let Some(name) = metadata
            .get("name")
            .and_then(Value::as_str)
            .map(str::to_owned)
        else {
            panic!("{} without metadata.name", kind.kind());
        };
        let namespace = if kind.namespaced() {
            let ns = metadata
                .get("namespace")
                .and_then(Value::as_str)
                .filter(|ns| !ns.is_empty())
                .unwrap_or("default")
                .to_owned();
            metadata.insert("namespace".into(), Value::String(ns.clone()));
            ns
        } else {
            metadata.remove("namespace");
            String::new()
        };
        let key = (namespace, name);
        let previous = self.objects[kind.index()].get(&key).cloned();
        let inherited = |field: &str| {
            previous
                .as_ref()
                .and_then(|p| p["metadata"].get(field).cloned())
        };
        if metadata.get("uid").is_none_or(Value::is_null) {
            let uid = inherited("uid").unwrap_or_else(|| {
                self.next_uid += 1;
                Value::String(format!("{port:08x}-0000-4000-8000-{:012x}", self.next_uid))
            });
            metadata.insert("uid".into(), uid);
        }
        if metadata.get("creationTimestamp").is_none_or(Value::is_null) {
            let created =
                inherited("creationTimestamp").unwrap_or_else(|| Value::String(now_rfc3339()));
            metadata.insert("creationTimestamp".into(), created);
        }
        self.revision += 1;
        metadata.insert(
            "resourceVersion".into(),
            Value::String(self.revision.to_string()),
        );
        object["kind"] = Value::String(kind.kind().into());
        object["apiVersion"] = Value::String(kind.api_version().into());

        let object = Arc::new(object);
        self.objects[kind.index()].insert(key, Arc::clone(&object));
        let change = if previous.is_some() {
            ChangeType::Modified
        } else {
            ChangeType::Added
        };
        self.record(Change {
            revision: self.revision,
            kind,
            change,
            object,
            previous,
        });
    }

    pub(super) fn delete(&mut self, kind: ResourceKind, namespace: &str, name: &str) {
        let key = (
            if kind.namespaced() { namespace } else { "" }.to_owned(),
            name.to_owned(),
        );
        let Some(previous) = self.objects[kind.index()].remove(&key) else {
            return;
        };
        self.revision += 1;
        // The DELETED event carries the deletion revision, which is what watchers resume from.
        let mut object = (*previous).clone();
        object["metadata"]["resourceVersion"] = Value::String(self.revision.to_string());
        let object = Arc::new(object);
        self.record(Change {
            revision: self.revision,
            kind,
            change: ChangeType::Deleted,
            object,
            previous: Some(previous),
        });
    }

    pub(super) fn record(&mut self, change: Change) {
        let mut rendered: [Option<Bytes>; 3] = Default::default();
        self.watches.retain(|watch| {
            if watch.kind != change.kind {
                return !watch.tx.is_closed();
            }
            let Some(event_type) = change.event_type(&watch.filter) else {
                return !watch.tx.is_closed();
            };
            let slot = match event_type {
                "ADDED" => 0,
                "MODIFIED" => 1,
                _ => 2,
            };
            let line = rendered[slot].get_or_insert_with(|| watch_line(event_type, &change.object));
            watch.tx.send(WatchFrame::Line(line.clone())).is_ok()
        });
        if self.expired_until_list {
            self.compacted = self.revision;
            return;
        }
        self.log.push_back(change);
        if self.log.len() > EVENT_LOG_CAPACITY {
            if let Some(dropped) = self.log.pop_front() {
                self.compacted = self.compacted.max(dropped.revision);
            }
        }
    }

    pub(super) fn expire(&mut self) {
        self.compacted = self.revision;
        self.log.clear();
        self.expired_until_list = true;
        let error = status_object(410, "Expired", &expired_message(0, self.revision));
        let line = watch_line("ERROR", &error);
        for watch in self.watches.drain(..) {
            let _ = watch.tx.send(WatchFrame::Line(line.clone()));
            let _ = watch.tx.send(WatchFrame::End);
        }
    }

    pub(super) fn cut_watches(&mut self) {
        for watch in self.watches.drain(..) {
            let _ = watch.tx.send(WatchFrame::End);
        }
    }

    pub(super) fn matching<'a>(
        &'a self,
        kind: ResourceKind,
        filter: &'a ObjectFilter,
        after: Option<&ObjectKey>,
    ) -> impl Iterator<Item = (&'a ObjectKey, &'a Arc<Value>)> + 'a {
        let start = match after {
            Some(key) => Bound::Excluded(key.clone()),
            None => match &filter.namespace {
                Some(ns) => Bound::Included((ns.clone(), String::new())),
                None => Bound::Unbounded,
            },
        };
        let namespace = filter.namespace.clone();
        self.objects[kind.index()]
            .range((start, Bound::Unbounded))
            .take_while(move |(key, _)| namespace.as_ref().is_none_or(|ns| &key.0 == ns))
            .filter(move |(_, object)| filter.matches(object))
    }
}
