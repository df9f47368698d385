//! An in-process Kubernetes API server for integration tests: nodes, pods, configmaps and
//! events over the real list/watch wire protocol, reached through a generated kubeconfig.
//!
//! No real API server can run on the test machines, yet the production code talks to the
//! cluster only through kube-rs watchers built from a kubeconfig. This module speaks enough of
//! the protocol (discovery, paged lists, chunked watch streams with replay, bookmarks,
//! `410 Expired`, `403 Forbidden`) that both `kube::runtime::watcher` and a real `kubectl`
//! work against it unchanged. Tests drive it through [`TestApiServer`]; the HTTP handlers only
//! read the shared store, so every change a test makes is ordered by one revision counter.
// Each test binary compiles this module but uses only part of it.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::TcpListener;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use actix_web::dev::{ServerHandle, Service};
use actix_web::http::StatusCode;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, ResponseError};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod};
use serde_json::{json, Map, Value};
use tokio::sync::mpsc;

/// How many changes a watch can be resumed across; older revisions answer `410 Expired`,
/// as a real API server does once etcd has compacted them.
const EVENT_LOG_CAPACITY: usize = 10_000;
/// Real servers pick 30–60 minutes when the client gives no `timeoutSeconds`.
const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);
const MAX_WATCH_TIMEOUT: Duration = Duration::from_secs(3600);
const DEFAULT_BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);
/// Bounds the wait for the kernel to release the port between `stop()` and `restart()`.
const REBIND_DEADLINE: Duration = Duration::from_secs(10);

/// The resources this server knows; everything else is a 404, as for an unknown CRD.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum ResourceKind {
    Node,
    Pod,
    ConfigMap,
    Event,
}

impl ResourceKind {
    const ALL: [ResourceKind; 4] = [Self::Node, Self::Pod, Self::ConfigMap, Self::Event];

    fn index(self) -> usize {
        match self {
            Self::Node => 0,
            Self::Pod => 1,
            Self::ConfigMap => 2,
            Self::Event => 3,
        }
    }

    fn plural(self) -> &'static str {
        match self {
            Self::Node => "nodes",
            Self::Pod => "pods",
            Self::ConfigMap => "configmaps",
            Self::Event => "events",
        }
    }

    fn kind(self) -> &'static str {
        match self {
            Self::Node => "Node",
            Self::Pod => "Pod",
            Self::ConfigMap => "ConfigMap",
            Self::Event => "Event",
        }
    }

    fn namespaced(self) -> bool {
        !matches!(self, Self::Node)
    }

    fn short_names(self) -> &'static [&'static str] {
        match self {
            Self::Node => &["no"],
            Self::Pod => &["po"],
            Self::ConfigMap => &["cm"],
            Self::Event => &["ev"],
        }
    }

    fn from_plural(plural: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|kind| kind.plural() == plural)
    }
}

// ---------------------------------------------------------------------------------------------
// Selectors
// ---------------------------------------------------------------------------------------------

/// A selector the server cannot parse; answered with `400 BadRequest` like the real server.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unable to parse requirement: {0}")]
pub struct SelectorError(String);

/// One clause of a label selector, in the forms `kubectl -l` accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    Equals {
        key: String,
        value: String,
    },
    NotEquals {
        key: String,
        value: String,
    },
    In {
        key: String,
        values: BTreeSet<String>,
    },
    NotIn {
        key: String,
        values: BTreeSet<String>,
    },
    Exists {
        key: String,
    },
    DoesNotExist {
        key: String,
    },
    GreaterThan {
        key: String,
        value: i64,
    },
    LessThan {
        key: String,
        value: i64,
    },
}

impl Requirement {
    fn matches<'a>(&self, label: &impl Fn(&str) -> Option<&'a str>) -> bool {
        match self {
            Self::Equals { key, value } => label(key) == Some(value.as_str()),
            Self::NotEquals { key, value } => label(key) != Some(value.as_str()),
            Self::In { key, values } => label(key).is_some_and(|v| values.contains(v)),
            Self::NotIn { key, values } => !label(key).is_some_and(|v| values.contains(v)),
            Self::Exists { key } => label(key).is_some(),
            Self::DoesNotExist { key } => label(key).is_none(),
            Self::GreaterThan { key, value } => label(key)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v > *value),
            Self::LessThan { key, value } => label(key)
                .and_then(|v| v.parse::<i64>().ok())
                .is_some_and(|v| v < *value),
        }
    }
}

/// A parsed `labelSelector`: requirements joined by commas, all of which must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector {
    pub requirements: Vec<Requirement>,
}

impl LabelSelector {
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        let mut cursor = Cursor { text, pos: 0 };
        let mut requirements = Vec::new();
        cursor.skip_ws();
        if cursor.at_end() {
            return Ok(Self { requirements });
        }
        // Each turn consumes at least one character or fails, so text.len() bounds the loop.
        for _ in 0..=text.len() {
            requirements.push(cursor.requirement()?);
            cursor.skip_ws();
            if cursor.at_end() {
                return Ok(Self { requirements });
            }
            if !cursor.eat(",") {
                return Err(cursor.error("expected ','"));
            }
        }
        Err(cursor.error("selector too long"))
    }

    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.matches_with(|key| labels.get(key).map(String::as_str))
    }

    fn matches_with<'a>(&self, label: impl Fn(&str) -> Option<&'a str>) -> bool {
        self.requirements.iter().all(|req| req.matches(&label))
    }

    fn matches_object(&self, object: &Value) -> bool {
        let labels = object
            .pointer("/metadata/labels")
            .and_then(Value::as_object);
        self.matches_with(|key| labels.and_then(|l| l.get(key)).and_then(Value::as_str))
    }
}

/// Hand-rolled scanner: the grammar is tiny and error positions help debug test selectors.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn skip_ws(&mut self) {
        let rest = self.rest();
        self.pos += rest.len() - rest.trim_start().len();
    }

    fn eat(&mut self, token: &str) -> bool {
        if self.rest().starts_with(token) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    fn word(&mut self) -> &'a str {
        let rest = self.rest();
        let len = rest
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/')))
            .unwrap_or(rest.len());
        self.pos += len;
        &rest[..len]
    }

    fn error(&self, what: &str) -> SelectorError {
        SelectorError(format!(
            "{what} at position {} in {:?}",
            self.pos, self.text
        ))
    }

    fn requirement(&mut self) -> Result<Requirement, SelectorError> {
        self.skip_ws();
        if self.eat("!") {
            self.skip_ws();
            let key = self.key()?;
            return Ok(Requirement::DoesNotExist { key });
        }
        let key = self.key()?;
        self.skip_ws();
        if self.at_end() || self.rest().starts_with(',') {
            return Ok(Requirement::Exists { key });
        }
        if self.eat("==") || self.eat("=") {
            let value = self.value()?;
            return Ok(Requirement::Equals { key, value });
        }
        if self.eat("!=") {
            let value = self.value()?;
            return Ok(Requirement::NotEquals { key, value });
        }
        if self.eat(">") {
            let value = self.integer()?;
            return Ok(Requirement::GreaterThan { key, value });
        }
        if self.eat("<") {
            let value = self.integer()?;
            return Ok(Requirement::LessThan { key, value });
        }
        let start = self.pos;
        match self.word() {
            "in" => Ok(Requirement::In {
                key,
                values: self.value_set()?,
            }),
            "notin" => Ok(Requirement::NotIn {
                key,
                values: self.value_set()?,
            }),
            _ => {
                self.pos = start;
                Err(self.error("expected one of =, ==, !=, in, notin, >, <"))
            }
        }
    }

    fn key(&mut self) -> Result<String, SelectorError> {
        let key = self.word();
        if valid_label_key(key) {
            Ok(key.to_owned())
        } else {
            Err(self.error(&format!("invalid label key {key:?}")))
        }
    }

    fn value(&mut self) -> Result<String, SelectorError> {
        self.skip_ws();
        let value = self.word();
        if valid_label_value(value) {
            Ok(value.to_owned())
        } else {
            Err(self.error(&format!("invalid label value {value:?}")))
        }
    }

    fn integer(&mut self) -> Result<i64, SelectorError> {
        self.skip_ws();
        let word = self.word();
        word.parse()
            .map_err(|_| self.error(&format!("expected an integer, found {word:?}")))
    }

    fn value_set(&mut self) -> Result<BTreeSet<String>, SelectorError> {
        self.skip_ws();
        if !self.eat("(") {
            return Err(self.error("expected '('"));
        }
        self.skip_ws();
        if self.eat(")") {
            return Err(self.error("values set can't be empty"));
        }
        let mut values = BTreeSet::new();
        for _ in 0..=self.text.len() {
            values.insert(self.value()?);
            self.skip_ws();
            if self.eat(")") {
                return Ok(values);
            }
            if !self.eat(",") {
                return Err(self.error("expected ',' or ')'"));
            }
        }
        Err(self.error("unterminated value set"))
    }
}

/// `[prefix/]name`, where name is a label value that may not be empty.
fn valid_label_key(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let prefix_ok = prefix.is_none_or(|p| {
        !p.is_empty()
            && p.len() <= 253
            && p.split('.')
                .all(|part| !part.contains('_') && !part.is_empty() && valid_label_value(part))
    });
    prefix_ok && !name.is_empty() && valid_label_value(name)
}

fn valid_label_value(value: &str) -> bool {
    let bytes = value.as_bytes();
    value.is_empty()
        || (value.len() <= 63
            && bytes
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
            && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
            && bytes.last().is_some_and(u8::is_ascii_alphanumeric))
}

/// A parsed `fieldSelector`: `path=value`, `path==value` or `path!=value`, comma-joined.
///
/// Any dotted path into the object is accepted (a missing field reads as ""), which covers
/// `metadata.name`, `spec.nodeName` and `involvedObject.*` without a table per kind.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector {
    pub terms: Vec<FieldTerm>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldTerm {
    pub path: String,
    pub value: String,
    pub negated: bool,
}

impl FieldSelector {
    pub fn parse(text: &str) -> Result<Self, SelectorError> {
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let terms = text
            .split(',')
            .map(|term| {
                let (path, value, negated) = if let Some((p, v)) = term.split_once("!=") {
                    (p, v, true)
                } else if let Some((p, v)) = term.split_once("==") {
                    (p, v, false)
                } else if let Some((p, v)) = term.split_once('=') {
                    (p, v, false)
                } else {
                    return Err(SelectorError(format!(
                        "invalid field selector term {term:?}"
                    )));
                };
                let path = path.trim();
                if path.is_empty() {
                    return Err(SelectorError(format!("empty field name in {term:?}")));
                }
                Ok(FieldTerm {
                    path: path.to_owned(),
                    value: value.trim().to_owned(),
                    negated,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { terms })
    }

    pub fn matches_object(&self, object: &Value) -> bool {
        self.terms.iter().all(|term| {
            let pointer = format!("/{}", term.path.replace('.', "/"));
            let actual = match object.pointer(&pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (actual == term.value) != term.negated
        })
    }
}

/// Which objects one request sees: its URL scope plus its selectors.
#[derive(Debug, Clone, Default)]
struct ObjectFilter {
    namespace: Option<String>,
    name: Option<String>,
    labels: LabelSelector,
    fields: FieldSelector,
}

impl ObjectFilter {
    fn matches(&self, object: &Value) -> bool {
        let field = |path: &str| object.pointer(path).and_then(Value::as_str).unwrap_or("");
        self.namespace
            .as_deref()
            .is_none_or(|ns| field("/metadata/namespace") == ns)
            && self
                .name
                .as_deref()
                .is_none_or(|name| field("/metadata/name") == name)
            && self.labels.matches_object(object)
            && self.fields.matches_object(object)
    }
}

// ---------------------------------------------------------------------------------------------
// Store
// ---------------------------------------------------------------------------------------------

/// `(namespace, name)`; namespace is "" for cluster-scoped kinds. Ordered so that a continue
/// token can simply name the last key served.
type ObjectKey = (String, String);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChangeType {
    Added,
    Modified,
    Deleted,
}

/// One entry of the event log that watches replay from.
struct Change {
    revision: u64,
    kind: ResourceKind,
    change: ChangeType,
    object: Arc<Value>,
    /// Kept so a watch whose selector stops (or starts) matching sees DELETED (or ADDED),
    /// as the real watch cache does.
    previous: Option<Arc<Value>>,
}

impl Change {
    fn event_type(&self, filter: &ObjectFilter) -> Option<&'static str> {
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

enum WatchFrame {
    Line(Bytes),
    End,
}

/// An open watch stream. Frames are pushed while the store lock is held, so a stream sees
/// changes in revision order and a bookmark never overtakes an event it covers.
struct WatchRegistration {
    kind: ResourceKind,
    filter: ObjectFilter,
    tx: mpsc::UnboundedSender<WatchFrame>,
}

/// Everything the handlers and the test control API share, behind one lock: the revision
/// counter must order objects, the log and watch fan-out together.
struct ApiState {
    revision: u64,
    /// A watch may resume from revision N only if N >= compacted (nothing after N was lost).
    compacted: u64,
    /// Set by `expire()` until the next list: changes in that window are never logged, so a
    /// client can learn about them only by re-listing.
    expired_until_list: bool,
    objects: [BTreeMap<ObjectKey, Arc<Value>>; 4],
    log: VecDeque<Change>,
    watches: Vec<WatchRegistration>,
    next_uid: u64,
    forbidden: HashSet<String>,
    requests: HashMap<String, usize>,
    bookmark_interval: Duration,
}

struct Shared {
    port: u16,
    state: Mutex<ApiState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, ApiState> {
        // A panicking test thread must not take every later request down with it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn watch_line(event_type: &str, object: &Value) -> Bytes {
    let mut line = format!("{{\"type\":\"{event_type}\",\"object\":").into_bytes();
    // Serialising a Value into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut line, object);
    line.extend_from_slice(b"}\n");
    Bytes::from(line)
}

fn bookmark_line(kind: ResourceKind, revision: u64, initial_events_end: bool) -> Bytes {
    let mut metadata = json!({ "resourceVersion": revision.to_string() });
    if initial_events_end {
        metadata["annotations"] = json!({ "k8s.io/initial-events-end": "true" });
    }
    let object = json!({ "kind": kind.kind(), "apiVersion": "v1", "metadata": metadata });
    watch_line("BOOKMARK", &object)
}

fn status_object(code: u16, reason: &str, message: &str) -> Value {
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

fn expired_message(requested: u64, oldest: u64) -> String {
    format!("too old resource version: {requested} ({oldest})")
}

/// Seconds-precision RFC 3339, the format Kubernetes uses for `metav1.Time`.
fn now_rfc3339() -> String {
    let now = k8s_openapi::jiff::Timestamp::now();
    k8s_openapi::jiff::Timestamp::from_second(now.as_second())
        .unwrap_or(now)
        .to_string()
}

impl ApiState {
    fn new() -> Self {
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
        }
    }

    /// Create or replace; panics on an object without a name because that is a broken test.
    fn apply(&mut self, kind: ResourceKind, port: u16, mut object: Value) {
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
        object["apiVersion"] = Value::String("v1".into());

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

    fn delete(&mut self, kind: ResourceKind, namespace: &str, name: &str) {
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

    fn record(&mut self, change: Change) {
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

    fn expire(&mut self) {
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

    fn cut_watches(&mut self) {
        for watch in self.watches.drain(..) {
            let _ = watch.tx.send(WatchFrame::End);
        }
    }

    fn matching<'a>(
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

// ---------------------------------------------------------------------------------------------
// HTTP
// ---------------------------------------------------------------------------------------------

/// Every failure a handler can answer, rendered once as a `metav1.Status` body.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
struct ApiFailure {
    code: u16,
    reason: &'static str,
    message: String,
}

impl ApiFailure {
    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            code: 400,
            reason: "BadRequest",
            message: message.into(),
        }
    }

    fn not_found(message: impl Into<String>) -> Self {
        Self {
            code: 404,
            reason: "NotFound",
            message: message.into(),
        }
    }

    fn expired(message: impl Into<String>) -> Self {
        Self {
            code: 410,
            reason: "Expired",
            message: message.into(),
        }
    }
}

impl From<SelectorError> for ApiFailure {
    fn from(err: SelectorError) -> Self {
        Self::bad_request(err.to_string())
    }
}

impl ResponseError for ApiFailure {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(status_object(
            self.code,
            self.reason,
            &self.message,
        ))
    }
}

/// The URL part of a resource request: which kind, and optionally namespace and name.
struct Scope {
    kind: ResourceKind,
    namespace: Option<String>,
    name: Option<String>,
}

impl Scope {
    fn from_request(req: &HttpRequest) -> Result<Self, ApiFailure> {
        let info = req.match_info();
        let plural = info.get("plural").unwrap_or_default();
        let namespace = info.get("namespace").map(str::to_owned);
        let name = info.get("name").map(str::to_owned);
        let not_found =
            || ApiFailure::not_found("the server could not find the requested resource");
        let kind = ResourceKind::from_plural(plural).ok_or_else(not_found)?;
        // Namespaced kinds have no cluster-level item path; cluster kinds have no namespace path.
        if (namespace.is_some() && !kind.namespaced())
            || (kind.namespaced() && namespace.is_none() && name.is_some())
        {
            return Err(not_found());
        }
        Ok(Self {
            kind,
            namespace,
            name,
        })
    }

    fn check_allowed(&self, state: &ApiState, verb: &str) -> Result<(), ApiFailure> {
        let plural = self.kind.plural();
        if !state.forbidden.contains(plural) {
            return Ok(());
        }
        let place = match &self.namespace {
            Some(ns) => format!("in the namespace \"{ns}\""),
            None => "at the cluster scope".to_owned(),
        };
        Err(ApiFailure {
            code: 403,
            reason: "Forbidden",
            message: format!(
                "{plural} is forbidden: User \"system:anonymous\" cannot {verb} resource \"{plural}\" in API group \"\" {place}"
            ),
        })
    }
}

/// The query parameters of list and watch requests that this server honours.
struct ListQuery {
    labels: LabelSelector,
    fields: FieldSelector,
    limit: Option<usize>,
    continue_token: Option<String>,
    resource_version: Option<String>,
    exact_match: bool,
    watch: bool,
    bookmarks: bool,
    send_initial_events: bool,
    timeout: Duration,
}

fn flag(params: &HashMap<String, String>, key: &str) -> bool {
    params.get(key).is_some_and(|v| v == "true" || v == "1")
}

impl ListQuery {
    fn parse(query: &str) -> Result<Self, ApiFailure> {
        let params = web::Query::<HashMap<String, String>>::from_query(query)
            .map_err(|err| ApiFailure::bad_request(format!("malformed query string: {err}")))?
            .into_inner();
        let text = |key: &str| params.get(key).map(String::as_str).unwrap_or("");
        let number = |key: &str| -> Result<Option<u64>, ApiFailure> {
            match params.get(key).filter(|v| !v.is_empty()) {
                None => Ok(None),
                Some(v) => v
                    .parse()
                    .map(Some)
                    .map_err(|_| ApiFailure::bad_request(format!("invalid {key}: {v:?}"))),
            }
        };
        let timeout = match number("timeoutSeconds")? {
            Some(secs) => Duration::from_secs(secs).min(MAX_WATCH_TIMEOUT),
            None => DEFAULT_WATCH_TIMEOUT,
        };
        Ok(Self {
            labels: LabelSelector::parse(text("labelSelector"))?,
            fields: FieldSelector::parse(text("fieldSelector"))?,
            limit: number("limit")?
                .filter(|&n| n > 0)
                .map(|n| usize::try_from(n).unwrap_or(usize::MAX)),
            continue_token: params.get("continue").filter(|v| !v.is_empty()).cloned(),
            resource_version: params
                .get("resourceVersion")
                .filter(|v| !v.is_empty())
                .cloned(),
            exact_match: text("resourceVersionMatch") == "Exact",
            watch: flag(&params, "watch"),
            bookmarks: flag(&params, "allowWatchBookmarks"),
            send_initial_events: flag(&params, "sendInitialEvents"),
            timeout,
        })
    }

    fn filter(&self, scope: &Scope) -> ObjectFilter {
        ObjectFilter {
            namespace: scope.namespace.clone(),
            name: scope.name.clone(),
            labels: self.labels.clone(),
            fields: self.fields.clone(),
        }
    }
}

fn parse_revision(text: &str) -> Result<u64, ApiFailure> {
    text.parse()
        .map_err(|_| ApiFailure::bad_request(format!("invalid resource version: {text:?}")))
}

/// `{revision}/{namespace}/{name}`: the list's revision plus the last key served. Names and
/// namespaces never contain '/', so the split is unambiguous.
fn parse_continue(token: &str) -> Result<(u64, ObjectKey), ApiFailure> {
    let bad = || ApiFailure::bad_request(format!("invalid continue token: {token:?}"));
    let mut parts = token.splitn(3, '/');
    let revision = parts.next().and_then(|r| r.parse().ok()).ok_or_else(bad)?;
    let namespace = parts.next().ok_or_else(bad)?;
    let name = parts.next().ok_or_else(bad)?;
    Ok((revision, (namespace.to_owned(), name.to_owned())))
}

fn json_response(body: &Value) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(body.to_string())
}

async fn version() -> HttpResponse {
    json_response(&json!({
        "major": "1",
        "minor": "33",
        "emulationMajor": "1",
        "emulationMinor": "33",
        "minCompatibilityMajor": "1",
        "minCompatibilityMinor": "32",
        "gitVersion": "v1.33.0",
        "gitCommit": "60a317eadfcb839692a68eab88b2096f4d708f4f",
        "gitTreeState": "clean",
        "buildDate": "2025-04-23T13:00:00Z",
        "goVersion": "go1.24.2",
        "compiler": "gc",
        "platform": "linux/amd64",
    }))
}

async fn core_versions(shared: web::Data<Shared>) -> HttpResponse {
    json_response(&json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            { "clientCIDR": "0.0.0.0/0", "serverAddress": format!("127.0.0.1:{}", shared.port) }
        ],
    }))
}

async fn core_resources() -> HttpResponse {
    let resources: Vec<Value> = ResourceKind::ALL
        .into_iter()
        .map(|kind| {
            let mut resource = json!({
                "name": kind.plural(),
                "singularName": kind.kind().to_lowercase(),
                "namespaced": kind.namespaced(),
                "kind": kind.kind(),
                "verbs": ["get", "list", "watch"],
                "shortNames": kind.short_names(),
            });
            if kind == ResourceKind::Pod {
                resource["categories"] = json!(["all"]);
            }
            resource
        })
        .collect();
    json_response(&json!({
        "kind": "APIResourceList",
        "groupVersion": "v1",
        "resources": resources,
    }))
}

async fn group_list() -> HttpResponse {
    json_response(&json!({ "kind": "APIGroupList", "apiVersion": "v1", "groups": [] }))
}

async fn unknown_path(req: HttpRequest) -> HttpResponse {
    let failure = if req.method() == actix_web::http::Method::GET {
        ApiFailure::not_found("the server could not find the requested resource")
    } else {
        ApiFailure {
            code: 405,
            reason: "MethodNotAllowed",
            message: format!(
                "the server does not allow this method on the requested resource: {}",
                req.method()
            ),
        }
    };
    failure.error_response()
}

async fn collection(
    req: HttpRequest,
    shared: web::Data<Shared>,
) -> Result<HttpResponse, ApiFailure> {
    let scope = Scope::from_request(&req)?;
    let query = ListQuery::parse(req.query_string())?;
    if query.watch {
        watch(scope, query, shared.into_inner())
    } else {
        list(scope, query, &shared)
    }
}

async fn item(req: HttpRequest, shared: web::Data<Shared>) -> Result<HttpResponse, ApiFailure> {
    let scope = Scope::from_request(&req)?;
    let query = ListQuery::parse(req.query_string())?;
    if query.watch {
        return watch(scope, query, shared.into_inner());
    }
    let state = shared.lock();
    scope.check_allowed(&state, "get")?;
    let key = (
        scope.namespace.clone().unwrap_or_default(),
        scope.name.clone().unwrap_or_default(),
    );
    match state.objects[scope.kind.index()].get(&key) {
        Some(object) => Ok(json_response(object)),
        None => Err(ApiFailure::not_found(format!(
            "{} \"{}\" not found",
            scope.kind.plural(),
            key.1
        ))),
    }
}

fn list(scope: Scope, query: ListQuery, shared: &Shared) -> Result<HttpResponse, ApiFailure> {
    let filter = query.filter(&scope);
    let (revision, items, next) = {
        let mut state = shared.lock();
        scope.check_allowed(&state, "list")?;
        let (revision, after) = match &query.continue_token {
            Some(token) => {
                let (revision, after) = parse_continue(token)?;
                if revision < state.compacted {
                    return Err(ApiFailure::expired(
                        "The provided continue parameter is too old to display a consistent list result. \
                         You can start a new list without the continue parameter.",
                    ));
                }
                (revision, Some(after))
            }
            None => {
                if let Some(requested) = &query.resource_version {
                    let requested = parse_revision(requested)?;
                    // Only history is missing: an exact read of an older revision is gone.
                    if query.exact_match && requested != state.revision {
                        return Err(ApiFailure::expired(expired_message(
                            requested,
                            state.revision,
                        )));
                    }
                }
                (state.revision, None)
            }
        };
        state.expired_until_list = false;
        let limit = query.limit.unwrap_or(usize::MAX);
        let mut items: Vec<Arc<Value>> = Vec::new();
        let mut next = None;
        let mut last_key = None;
        for (key, object) in state.matching(scope.kind, &filter, after.as_ref()) {
            if items.len() == limit {
                next = last_key.take();
                break;
            }
            items.push(Arc::clone(object));
            last_key = Some(key.clone());
        }
        (revision, items, next)
    };

    // Serialise outside the lock: 100k pods take a while and watches must keep flowing.
    let mut metadata = Map::new();
    metadata.insert(
        "resourceVersion".into(),
        Value::String(revision.to_string()),
    );
    if let Some((ns, name)) = next {
        metadata.insert(
            "continue".into(),
            Value::String(format!("{revision}/{ns}/{name}")),
        );
    }
    let mut body = String::with_capacity(64 + items.len() * 512);
    let _ = write!(
        body,
        "{{\"kind\":\"{}List\",\"apiVersion\":\"v1\",\"metadata\":{},\"items\":[",
        scope.kind.kind(),
        Value::Object(metadata)
    );
    for (i, object) in items.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        let _ = write!(body, "{object}");
    }
    body.push_str("]}");
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .body(body))
}

fn watch(scope: Scope, query: ListQuery, shared: Arc<Shared>) -> Result<HttpResponse, ApiFailure> {
    let filter = query.filter(&scope);
    let kind = scope.kind;
    let (tx, rx) = mpsc::unbounded_channel();
    let bookmark_interval = {
        let mut state = shared.lock();
        scope.check_allowed(&state, "watch")?;
        let send = |line: Bytes| {
            let _ = tx.send(WatchFrame::Line(line));
        };
        let start = match query.resource_version.as_deref() {
            None | Some("0") => None,
            Some(text) => Some(parse_revision(text)?),
        };
        match start {
            Some(start) if start < state.compacted => {
                // Real servers answer 200 and then a 410 ERROR event for a compacted watch.
                let status =
                    status_object(410, "Expired", &expired_message(start, state.compacted));
                send(watch_line("ERROR", &status));
                let _ = tx.send(WatchFrame::End);
            }
            Some(start) => {
                let first = state.log.partition_point(|change| change.revision <= start);
                for change in state
                    .log
                    .range(first..)
                    .filter(|change| change.kind == kind)
                {
                    if let Some(event_type) = change.event_type(&filter) {
                        send(watch_line(event_type, &change.object));
                    }
                }
                state.watches.push(WatchRegistration {
                    kind,
                    filter,
                    tx: tx.clone(),
                });
            }
            None => {
                // No revision (or "0"): synthetic ADDED for the current state, then live events.
                for (_, object) in state.matching(kind, &filter, None) {
                    send(watch_line("ADDED", object));
                }
                if query.send_initial_events {
                    send(bookmark_line(kind, state.revision, true));
                }
                state.watches.push(WatchRegistration {
                    kind,
                    filter,
                    tx: tx.clone(),
                });
            }
        }
        state.bookmark_interval
    };

    let deadline = tokio::time::Instant::now() + query.timeout;
    let bookmarks = query.bookmarks.then(|| {
        let mut ticks = tokio::time::interval_at(
            tokio::time::Instant::now() + bookmark_interval,
            bookmark_interval,
        );
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticks
    });
    let stream = WatchStream {
        kind,
        rx,
        tx,
        shared,
        deadline,
        bookmarks,
    };
    let body = futures::stream::unfold(stream, |mut stream| async move {
        let line = stream.next_line().await?;
        Some((Ok::<_, Infallible>(line), stream))
    });
    Ok(HttpResponse::Ok()
        .content_type("application/json")
        .streaming(body))
}

/// The consumer half of one watch: drains its channel until cut, timed out or disconnected.
struct WatchStream {
    kind: ResourceKind,
    rx: mpsc::UnboundedReceiver<WatchFrame>,
    /// Lets the stream enqueue its own bookmarks behind events already pushed to it.
    tx: mpsc::UnboundedSender<WatchFrame>,
    shared: Arc<Shared>,
    deadline: tokio::time::Instant,
    bookmarks: Option<tokio::time::Interval>,
}

impl WatchStream {
    async fn next_line(&mut self) -> Option<Bytes> {
        // A bookmark tick enqueues one frame, which the next turn returns; two turns suffice,
        // the bound only guards against a logic error.
        for _ in 0..4 {
            let tick = async {
                match self.bookmarks.as_mut() {
                    Some(ticks) => {
                        ticks.tick().await;
                    }
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                biased;
                frame = self.rx.recv() => return match frame {
                    Some(WatchFrame::Line(line)) => Some(line),
                    Some(WatchFrame::End) | None => None,
                },
                () = tokio::time::sleep_until(self.deadline) => return None,
                () = tick => {
                    // Under the lock, so every change up to this revision is already queued.
                    let state = self.shared.lock();
                    let _ = self.tx.send(WatchFrame::Line(bookmark_line(self.kind, state.revision, false)));
                }
            }
        }
        None
    }
}

fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/version", web::get().to(version))
        .route("/version/", web::get().to(version))
        .route("/api", web::get().to(core_versions))
        .route("/api/v1", web::get().to(core_resources))
        .route("/apis", web::get().to(group_list))
        .route(
            "/api/v1/namespaces/{namespace}/{plural}/{name}",
            web::get().to(item),
        )
        .route(
            "/api/v1/namespaces/{namespace}/{plural}",
            web::get().to(collection),
        )
        .route("/api/v1/{plural}/{name}", web::get().to(item))
        .route("/api/v1/{plural}", web::get().to(collection));
}

// ---------------------------------------------------------------------------------------------
// Control API
// ---------------------------------------------------------------------------------------------

/// A running test API server and the knobs a test turns. Clones share the same server.
#[derive(Clone)]
pub struct TestApiServer {
    shared: Arc<Shared>,
    /// `None` while stopped; a std mutex because it is only held to swap the handle.
    handle: Arc<Mutex<Option<ServerHandle>>>,
}

impl TestApiServer {
    /// Must run inside an actix system (e.g. `#[actix_rt::test]`): the server task is spawned
    /// on it.
    pub async fn start() -> TestApiServer {
        let listener =
            TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 for the test API server");
        let port = listener
            .local_addr()
            .expect("local address of the test API server")
            .port();
        let server = TestApiServer {
            shared: Arc::new(Shared {
                port,
                state: Mutex::new(ApiState::new()),
            }),
            handle: Arc::new(Mutex::new(None)),
        };
        server.serve(listener);
        server
    }

    fn serve(&self, listener: TcpListener) {
        let data = web::Data::from(Arc::clone(&self.shared));
        let counter = Arc::clone(&self.shared);
        let server = HttpServer::new(move || {
            let counter = Arc::clone(&counter);
            App::new()
                .app_data(data.clone())
                .wrap_fn(move |req, srv| {
                    *counter
                        .lock()
                        .requests
                        .entry(req.path().to_owned())
                        .or_default() += 1;
                    srv.call(req)
                })
                .configure(routes)
                .default_service(web::to(unknown_path))
        })
        .workers(2)
        .disable_signals()
        .shutdown_timeout(0)
        .listen(listener)
        .expect("listen on the test API server socket")
        .run();
        *self.handle.lock().unwrap_or_else(|p| p.into_inner()) = Some(server.handle());
        actix_rt::spawn(server);
    }

    pub fn port(&self) -> u16 {
        self.shared.port
    }

    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.shared.port)
    }

    /// Writes `dir/kubeconfig` with one cluster, user and context pointing at this server.
    pub fn write_kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        let text = format!(
            "apiVersion: v1\n\
             kind: Config\n\
             clusters:\n\
             - name: test-api\n  cluster:\n    server: {url}\n\
             users:\n\
             - name: test-user\n  user: {{}}\n\
             contexts:\n\
             - name: test-api\n  context:\n    cluster: test-api\n    user: test-user\n    namespace: default\n\
             current-context: test-api\n\
             preferences: {{}}\n",
            url = self.base_url()
        );
        std::fs::write(&path, text).expect("write kubeconfig");
        path
    }

    fn apply_typed(&self, kind: ResourceKind, object: impl serde::Serialize) {
        let value = serde_json::to_value(object).expect("serialise test object");
        self.shared.lock().apply(kind, self.shared.port, value);
    }

    pub fn apply_node(&self, node: Node) {
        self.apply_typed(ResourceKind::Node, node);
    }

    pub fn delete_node(&self, name: &str) {
        self.shared.lock().delete(ResourceKind::Node, "", name);
    }

    pub fn apply_pod(&self, pod: Pod) {
        self.apply_typed(ResourceKind::Pod, pod);
    }

    pub fn delete_pod(&self, namespace: &str, name: &str) {
        self.shared
            .lock()
            .delete(ResourceKind::Pod, namespace, name);
    }

    /// One lock for the whole batch; each pod still gets its own revision and event.
    pub fn apply_many_pods(&self, pods: Vec<Pod>) {
        let values: Vec<Value> = pods
            .into_iter()
            .map(|pod| serde_json::to_value(pod).expect("serialise test pod"))
            .collect();
        let mut state = self.shared.lock();
        for value in values {
            state.apply(ResourceKind::Pod, self.shared.port, value);
        }
    }

    pub fn apply_configmap(&self, configmap: ConfigMap) {
        self.apply_typed(ResourceKind::ConfigMap, configmap);
    }

    pub fn delete_configmap(&self, namespace: &str, name: &str) {
        self.shared
            .lock()
            .delete(ResourceKind::ConfigMap, namespace, name);
    }

    /// Events often come without a name in tests; one is made up from the involved object.
    pub fn add_event(&self, event: Event) {
        let mut value = serde_json::to_value(event).expect("serialise test event");
        let mut state = self.shared.lock();
        if value
            .pointer("/metadata/name")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            let involved = value
                .pointer("/involvedObject/name")
                .and_then(Value::as_str)
                .unwrap_or("event");
            let name = format!("{involved}.{:x}", state.revision + 1);
            value["metadata"]["name"] = Value::String(name);
        }
        state.apply(ResourceKind::Event, self.shared.port, value);
    }

    /// The revision of the latest change, as lists report it.
    pub fn revision(&self) -> u64 {
        self.shared.lock().revision
    }

    pub fn expire(&self) {
        self.shared.lock().expire();
    }

    pub fn cut_watches(&self) {
        self.shared.lock().cut_watches();
    }

    pub fn open_watches(&self) -> usize {
        let mut state = self.shared.lock();
        state.watches.retain(|watch| !watch.tx.is_closed());
        state.watches.len()
    }

    pub fn set_bookmark_interval(&self, interval: Duration) {
        self.shared.lock().bookmark_interval = interval.max(Duration::from_millis(10));
    }

    /// Stops listening; state, port and the event log survive for `restart()`.
    pub async fn stop(&self) {
        self.cut_watches();
        let handle = self.handle.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(handle) = handle {
            handle.stop(false).await;
        }
    }

    pub async fn restart(&self) {
        self.stop().await;
        let addr = ("127.0.0.1", self.shared.port);
        let deadline = std::time::Instant::now() + REBIND_DEADLINE;
        let listener = loop {
            match TcpListener::bind(addr) {
                Ok(listener) => break listener,
                Err(err) if std::time::Instant::now() >= deadline => {
                    panic!("could not rebind 127.0.0.1:{}: {err}", self.shared.port)
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        };
        self.serve(listener);
    }

    /// Requests whose path (without query) starts with `path_prefix`.
    pub fn request_count(&self, path_prefix: &str) -> usize {
        let state = self.shared.lock();
        state
            .requests
            .iter()
            .filter(|(path, _)| path.starts_with(path_prefix))
            .map(|(_, n)| n)
            .sum()
    }

    /// `resource` is a plural such as "configmaps"; its requests then answer 403 Forbidden.
    pub fn set_forbidden(&self, resource: &str, forbidden: bool) {
        let mut state = self.shared.lock();
        if forbidden {
            state.forbidden.insert(resource.to_owned());
        } else {
            state.forbidden.remove(resource);
        }
    }
}
