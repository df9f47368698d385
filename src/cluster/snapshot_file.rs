//! Offline mode's input: a `kubectl get nodes,pods -A -o json` List (or YAML), read once at
//! start instead of watching a cluster; HAMi's device ConfigMap and HAMi-DRA's
//! ResourceSlices and ResourceClaims may be in it too.
//!
//! Used for the demo cluster, for reproducing a customer's view from an export, and for
//! tests. A malformed file stops start-up with the file, the item index and what is wrong;
//! kinds we do not use are skipped.

use std::cell::RefCell;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

use futures::stream::{self, BoxStream, StreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Node, Pod};
use k8s_openapi::api::resource::v1::{ResourceClaim, ResourceSlice};
use kube::runtime::watcher::Event;
use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor,
};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::mpsc;

use crate::cluster::watch::WatchItem;

/// Why a snapshot file cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("snapshot: {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("snapshot: {path}: not JSON or YAML: {message}")]
    Syntax { path: String, message: String },
    #[error("snapshot: {path}: {message}")]
    Shape { path: String, message: String },
    #[error("snapshot: {path}: items[{index}] ({kind} {name:?}): {message}")]
    Item {
        path: String,
        index: usize,
        kind: String,
        name: String,
        message: String,
    },
}

/// The objects of a snapshot file, by kind, decoded.
#[derive(Debug, Default)]
pub struct ClusterExport {
    pub nodes: Vec<Node>,
    pub pods: Vec<Pod>,
    pub config_maps: Vec<ConfigMap>,
    pub resource_slices: Vec<ResourceSlice>,
    pub resource_claims: Vec<ResourceClaim>,
}

/// A snapshot file checked at load, to be read again as the caches take its objects.
///
/// A 10,000-GPU export of real-sized pods is over 100 MB of JSON; holding its text (or its
/// items' text) set the process's peak memory for its whole life. A JSON file is therefore
/// read twice, as a stream, one item at a time: once at load to report a malformed item
/// before serving, and again when the caches start ([`SnapshotObjects::into_streams`]).
/// YAML, rare and small, is converted once and its items kept as JSON text.
#[derive(Debug)]
pub struct SnapshotObjects {
    /// Used items by kind, as counted at load.
    pub counts: ItemCounts,
    source: ObjectSource,
}

#[derive(Debug)]
enum ObjectSource {
    File(PathBuf),
    Items(Vec<(ItemKind, Box<RawValue>)>),
}

/// Used items of a snapshot file, by kind.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ItemCounts {
    pub nodes: usize,
    pub pods: usize,
    pub config_maps: usize,
    pub resource_slices: usize,
    pub resource_claims: usize,
}

impl ItemCounts {
    fn add(&mut self, kind: ItemKind) {
        match kind {
            ItemKind::Node => self.nodes += 1,
            ItemKind::Pod => self.pods += 1,
            ItemKind::ConfigMap => self.config_maps += 1,
            ItemKind::ResourceSlice => self.resource_slices += 1,
            ItemKind::ResourceClaim => self.resource_claims += 1,
        }
    }
}

/// The watch streams a snapshot replays: each kind's objects as one initial list, then
/// nothing more (the stream stays open so the caches keep serving them).
pub struct SnapshotStreams {
    pub nodes: BoxStream<'static, WatchItem<Node>>,
    pub pods: BoxStream<'static, WatchItem<Pod>>,
    pub config_maps: BoxStream<'static, WatchItem<ConfigMap>>,
    pub resource_slices: BoxStream<'static, WatchItem<ResourceSlice>>,
    pub resource_claims: BoxStream<'static, WatchItem<ResourceClaim>>,
}

/// Decoded objects in flight from the reading thread to a cache, at most; the reader waits
/// for the cache beyond that, so memory does not grow with the file.
const IN_FLIGHT: usize = 256;

/// Reads and checks a snapshot file for serving: every item is decoded once, as it is read,
/// to report a malformed one at start; nothing of it is kept (see [`SnapshotObjects`]).
pub fn load(path: &Path) -> Result<SnapshotObjects, SnapshotFileError> {
    let name = path.display().to_string();
    let read_error = |source| SnapshotFileError::Read {
        path: name.clone(),
        source,
    };
    let mut file =
        std::io::BufReader::with_capacity(1 << 16, std::fs::File::open(path).map_err(read_error)?);
    if !starts_like_json(&mut file).map_err(read_error)? {
        let mut text = String::new();
        file.read_to_string(&mut text).map_err(read_error)?;
        let mut counts = ItemCounts::default();
        let mut items = Vec::new();
        visit_items(&name, &text, |kind, raw| {
            check(kind, raw)?;
            counts.add(kind);
            items.push((kind, raw.to_owned()));
            Ok(())
        })?;
        return Ok(SnapshotObjects {
            counts,
            source: ObjectSource::Items(items),
        });
    }
    let mut counts = ItemCounts::default();
    stream_json_items(&name, file, |kind, raw| {
        check(kind, raw)?;
        counts.add(kind);
        Ok(())
    })?;
    Ok(SnapshotObjects {
        counts,
        source: ObjectSource::File(path.to_path_buf()),
    })
}

/// Whether the first non-blank byte opens a JSON object or array (else: YAML).
fn starts_like_json(reader: &mut impl std::io::BufRead) -> std::io::Result<bool> {
    loop {
        let buffer = reader.fill_buf()?;
        let Some(first) = buffer.first().copied() else {
            return Ok(false);
        };
        if first.is_ascii_whitespace() {
            reader.consume(1);
            continue;
        }
        return Ok(first == b'{' || first == b'[');
    }
}

/// Decodes one item as its kind, only to report it when it is malformed.
fn check(kind: ItemKind, raw: &RawValue) -> Result<(), serde_json::Error> {
    let text = raw.get();
    match kind {
        ItemKind::Node => serde_json::from_str::<IgnoredTyped<Node>>(text).map(drop),
        ItemKind::Pod => serde_json::from_str::<IgnoredTyped<Pod>>(text).map(drop),
        ItemKind::ConfigMap => serde_json::from_str::<IgnoredTyped<ConfigMap>>(text).map(drop),
        ItemKind::ResourceSlice => {
            serde_json::from_str::<IgnoredTyped<ResourceSlice>>(text).map(drop)
        }
        ItemKind::ResourceClaim => {
            serde_json::from_str::<IgnoredTyped<ResourceClaim>>(text).map(drop)
        }
    }
}

/// A decoded object dropped as soon as it is made.
struct IgnoredTyped<K>(std::marker::PhantomData<K>);

impl<'de, K: Deserialize<'de>> Deserialize<'de> for IgnoredTyped<K> {
    fn deserialize<D: de::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        K::deserialize(deserializer).map(|_| IgnoredTyped(std::marker::PhantomData))
    }
}

impl SnapshotObjects {
    /// The objects as watch streams. A JSON file is read again on a thread of its own and
    /// each object decoded as it is read, at most [`IN_FLIGHT`] of a kind ahead of its cache;
    /// an object that fails now (the file changed since it was loaded) is logged and left
    /// out, as is everything when the file cannot be read again.
    pub fn into_streams(self) -> SnapshotStreams {
        let (nodes_tx, nodes) = mpsc::channel(IN_FLIGHT);
        let (pods_tx, pods) = mpsc::channel(IN_FLIGHT);
        let (config_maps_tx, config_maps) = mpsc::channel(IN_FLIGHT);
        let (resource_slices_tx, resource_slices) = mpsc::channel(IN_FLIGHT);
        let (resource_claims_tx, resource_claims) = mpsc::channel(IN_FLIGHT);
        let senders = Senders {
            nodes: nodes_tx,
            pods: pods_tx,
            config_maps: config_maps_tx,
            resource_slices: resource_slices_tx,
            resource_claims: resource_claims_tx,
        };
        let source = self.source;
        let reader = move || match source {
            ObjectSource::Items(items) => {
                for (kind, raw) in items {
                    senders.send(kind, &raw);
                }
            }
            ObjectSource::File(path) => {
                let name = path.display().to_string();
                let replayed = std::fs::File::open(&path)
                    .map_err(|error| error.to_string())
                    .and_then(|file| {
                        let file = std::io::BufReader::with_capacity(1 << 16, file);
                        stream_json_items(&name, file, |kind, raw| {
                            senders.send(kind, raw);
                            Ok(())
                        })
                        .map_err(|error| error.to_string())
                    });
                if let Err(error) = replayed {
                    tracing::error!(%error, "snapshot file could not be read again; objects left out");
                }
            }
        };
        if let Err(error) = std::thread::Builder::new()
            .name("snapshot-reader".into())
            .spawn(reader)
        {
            tracing::error!(%error, "cannot start the snapshot reader; serving an empty cluster");
        }
        SnapshotStreams {
            nodes: replay_channel(nodes),
            pods: replay_channel(pods),
            config_maps: replay_channel(config_maps),
            resource_slices: replay_channel(resource_slices),
            resource_claims: replay_channel(resource_claims),
        }
    }
}

/// The reading thread's ends of the per-kind channels.
struct Senders {
    nodes: mpsc::Sender<Node>,
    pods: mpsc::Sender<Pod>,
    config_maps: mpsc::Sender<ConfigMap>,
    resource_slices: mpsc::Sender<ResourceSlice>,
    resource_claims: mpsc::Sender<ResourceClaim>,
}

impl Senders {
    fn send(&self, kind: ItemKind, raw: &RawValue) {
        match kind {
            ItemKind::Node => forward(&self.nodes, raw),
            ItemKind::Pod => forward(&self.pods, raw),
            ItemKind::ConfigMap => forward(&self.config_maps, raw),
            ItemKind::ResourceSlice => forward(&self.resource_slices, raw),
            ItemKind::ResourceClaim => forward(&self.resource_claims, raw),
        }
    }
}

/// Decodes `raw` and hands it to its cache, waiting while that cache is [`IN_FLIGHT`]
/// objects behind. A cache that is gone (the system is stopping) is not waited for.
fn forward<K: DeserializeOwned>(sender: &mpsc::Sender<K>, raw: &RawValue) {
    match serde_json::from_str::<K>(raw.get()) {
        Ok(object) => {
            let _ = sender.blocking_send(object);
        }
        Err(error) => tracing::warn!(%error, "snapshot object left out"),
    }
}

/// One initial list of what arrives on `objects`, ended when the reader is done; the
/// stream then stays open.
fn replay_channel<K: Send + 'static>(
    objects: mpsc::Receiver<K>,
) -> BoxStream<'static, WatchItem<K>> {
    let applied = stream::unfold(objects, |mut objects| async move {
        objects
            .recv()
            .await
            .map(|object| (Ok(Event::InitApply(object)), objects))
    });
    stream::once(async { Ok(Event::Init) })
        .chain(applied)
        .chain(stream::once(async { Ok(Event::InitDone) }))
        .chain(stream::pending())
        .boxed()
}

/// Parses the text of a snapshot file into typed objects; `path` is only used in messages.
pub fn parse(path: &str, text: &str) -> Result<ClusterExport, SnapshotFileError> {
    let mut export = ClusterExport::default();
    visit_items(path, text, |kind, raw| {
        let raw = raw.get();
        match kind {
            ItemKind::Node => serde_json::from_str(raw).map(|o| export.nodes.push(o)),
            ItemKind::Pod => serde_json::from_str(raw).map(|o| export.pods.push(o)),
            ItemKind::ConfigMap => serde_json::from_str(raw).map(|o| export.config_maps.push(o)),
            ItemKind::ResourceSlice => {
                serde_json::from_str(raw).map(|o| export.resource_slices.push(o))
            }
            ItemKind::ResourceClaim => {
                serde_json::from_str(raw).map(|o| export.resource_claims.push(o))
            }
        }
    })?;
    Ok(export)
}

/// The kinds a snapshot contributes; other kinds are skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ItemKind {
    Node,
    Pod,
    ConfigMap,
    ResourceSlice,
    ResourceClaim,
}

/// Calls `each` with every used item's raw JSON text; its error is reported with the item's
/// index, kind and name. YAML is rare and small; it is read into a `Value` and rewritten as
/// JSON so both take the same path.
fn visit_items(
    path: &str,
    text: &str,
    each: impl FnMut(ItemKind, &RawValue) -> Result<(), serde_json::Error>,
) -> Result<(), SnapshotFileError> {
    let trimmed = text.trim_start();
    if !(trimmed.starts_with('{') || trimmed.starts_with('[')) {
        let syntax = |message: String| SnapshotFileError::Syntax {
            path: path.into(),
            message,
        };
        let document: Value = serde_saphyr::from_str(text).map_err(|e| syntax(e.to_string()))?;
        let json = serde_json::to_string(&document).map_err(|e| syntax(e.to_string()))?;
        return stream_json_items(path, json.as_bytes(), each);
    }
    stream_json_items(path, text.as_bytes(), each)
}

/// Reads a JSON List (or a bare array of objects) from `reader` and calls `each` with every
/// used item, one at a time: never more than one item's text is held, however large the
/// file. Items of a typed list (`PodList`) may omit their own kind when the list's `kind`
/// comes before its `items`, as the API server writes it.
fn stream_json_items<R: Read>(
    path: &str,
    reader: R,
    each: impl FnMut(ItemKind, &RawValue) -> Result<(), serde_json::Error>,
) -> Result<(), SnapshotFileError> {
    let walk = RefCell::new(ItemWalk {
        path,
        each,
        implied: None,
        index: 0,
        saw_items: false,
        failure: None,
    });
    let mut deserializer = serde_json::Deserializer::from_reader(reader);
    let outcome = Document(&walk)
        .deserialize(&mut deserializer)
        .and_then(|()| deserializer.end());
    let walk = walk.into_inner();
    if let Some(failure) = walk.failure {
        return Err(failure);
    }
    match outcome {
        Err(error) => Err(SnapshotFileError::Syntax {
            path: path.into(),
            message: error.to_string(),
        }),
        Ok(()) if !walk.saw_items => Err(not_a_list(path)),
        Ok(()) => Ok(()),
    }
}

fn not_a_list(path: &str) -> SnapshotFileError {
    SnapshotFileError::Shape {
        path: path.into(),
        message: "expected a List object with an `items` array".into(),
    }
}

/// The walk through one document: where it is, and the first failure that stopped it.
struct ItemWalk<'p, F> {
    path: &'p str,
    each: F,
    /// The item kind a typed list (`PodList`) implies.
    implied: Option<String>,
    index: usize,
    saw_items: bool,
    failure: Option<SnapshotFileError>,
}

impl<F> ItemWalk<'_, F>
where
    F: FnMut(ItemKind, &RawValue) -> Result<(), serde_json::Error>,
{
    /// Classifies one item and hands a used one to `each`.
    fn item(&mut self, item: &RawValue) -> Result<(), SnapshotFileError> {
        let index = self.index;
        self.index += 1;
        // Not an object, or a `metadata` that is not one: no kind or name to report.
        let head: ItemHead = serde_json::from_str(item.get()).unwrap_or_default();
        let kind = head
            .kind
            .as_ref()
            .and_then(Value::as_str)
            .or(self.implied.as_deref())
            .unwrap_or_default();
        let name = head
            .metadata
            .as_ref()
            .and_then(|m| m.get("name"))
            .and_then(Value::as_str)
            .unwrap_or_default();
        let item_error = |message: String| SnapshotFileError::Item {
            path: self.path.into(),
            index,
            kind: kind.to_string(),
            name: name.to_string(),
            message,
        };
        let used = match kind {
            "Node" => ItemKind::Node,
            "Pod" => ItemKind::Pod,
            "ConfigMap" => ItemKind::ConfigMap,
            "ResourceSlice" => ItemKind::ResourceSlice,
            "ResourceClaim" => ItemKind::ResourceClaim,
            "" => return Err(item_error("item has no kind".into())),
            other => {
                tracing::debug!(
                    index,
                    kind = other,
                    "snapshot item of an unused kind skipped"
                );
                return Ok(());
            }
        };
        (self.each)(used, item).map_err(|e| item_error(e.to_string()))
    }
}

/// Records why the walk stops; the deserializer is then unwound with a placeholder error.
fn stop<F, E: de::Error>(walk: &RefCell<ItemWalk<'_, F>>, failure: SnapshotFileError) -> E {
    walk.borrow_mut().failure.get_or_insert(failure);
    E::custom("snapshot walk stopped")
}

/// The top level: a List object, or a bare array of items.
struct Document<'w, 'p, F>(&'w RefCell<ItemWalk<'p, F>>);

/// A List's `items`.
struct Items<'w, 'p, F>(&'w RefCell<ItemWalk<'p, F>>);

/// Seeds and visitors of the two levels; every shape but the expected one ends the walk
/// with "expected a List".
macro_rules! walk_level {
    ($level:ident, $expecting:literal) => {
        impl<'de, F> DeserializeSeed<'de> for $level<'_, '_, F>
        where
            F: FnMut(ItemKind, &RawValue) -> Result<(), serde_json::Error>,
        {
            type Value = ();

            fn deserialize<D: de::Deserializer<'de>>(
                self,
                deserializer: D,
            ) -> Result<(), D::Error> {
                deserializer.deserialize_any(self)
            }
        }

        impl<F> $level<'_, '_, F> {
            fn refuse<E: de::Error>(self) -> Result<(), E> {
                let path = self.0.borrow().path;
                Err(stop(self.0, not_a_list(path)))
            }
        }

        impl<'de, F> Visitor<'de> for $level<'_, '_, F>
        where
            F: FnMut(ItemKind, &RawValue) -> Result<(), serde_json::Error>,
        {
            type Value = ();

            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str($expecting)
            }

            fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
                self.refuse()
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
                self.refuse()
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
                self.refuse()
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
                self.refuse()
            }
            fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
                self.refuse()
            }
            fn visit_unit<E: de::Error>(self) -> Result<(), E> {
                self.refuse()
            }
            fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
                self.seq(seq)
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<(), A::Error> {
                self.map(map)
            }
        }
    };
}

walk_level!(Document, "a List object with an `items` array");
walk_level!(Items, "an array of objects");

impl<'de, F> Document<'_, '_, F>
where
    F: FnMut(ItemKind, &RawValue) -> Result<(), serde_json::Error>,
{
    fn seq<A: SeqAccess<'de>>(self, seq: A) -> Result<(), A::Error> {
        Items(self.0).seq(seq)
    }

    fn map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "kind" => {
                    let kind: Option<Value> = map.next_value()?;
                    self.0.borrow_mut().implied = kind
                        .as_ref()
                        .and_then(Value::as_str)
                        .and_then(|k| k.strip_suffix("List"))
                        .filter(|k| !k.is_empty())
                        .map(str::to_string);
                }
                "items" => map.next_value_seed(Items(self.0))?,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(())
    }
}

impl<'de, F> Items<'_, '_, F>
where
    F: FnMut(ItemKind, &RawValue) -> Result<(), serde_json::Error>,
{
    fn map<A: MapAccess<'de>>(self, _: A) -> Result<(), A::Error> {
        self.refuse()
    }

    fn seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.0.borrow_mut().saw_items = true;
        while let Some(item) = seq.next_element::<Box<RawValue>>()? {
            let handled = self.0.borrow_mut().item(&item);
            if let Err(failure) = handled {
                return Err(stop(self.0, failure));
            }
        }
        Ok(())
    }
}

/// What an error message names of an item; the rest of the item is skipped unread.
#[derive(Deserialize, Default)]
struct ItemHead {
    #[serde(default)]
    kind: Option<Value>,
    #[serde(default)]
    metadata: Option<Value>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_kubectl_list_in_json_and_yaml() {
        let json = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Node","metadata":{"name":"n1","uid":"u1"}},
            {"apiVersion":"v1","kind":"Pod","metadata":{"name":"p1","namespace":"d"}},
            {"apiVersion":"v1","kind":"Service","metadata":{"name":"s"}}]}"#;
        let export = parse("f.json", json).unwrap();
        assert_eq!((export.nodes.len(), export.pods.len()), (1, 1));

        let yaml = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Node\n  metadata:\n    name: n1\n";
        assert_eq!(parse("f.yaml", yaml).unwrap().nodes.len(), 1);
    }

    #[test]
    fn item_errors_keep_their_kind_and_name_and_odd_items_are_reported() {
        let json = r#"[{"kind":"Node","metadata":{"name":"n\u0031"},"spec":5}]"#;
        let err = parse("f", json).unwrap_err().to_string();
        assert!(err.contains("items[0] (Node \"n1\")"), "{err}");
        let err = parse("f", r#"{"kind":"List","items":[7]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("items[0] ( \"\"): item has no kind"), "{err}");
        let err = parse("f", r#"{"kind":"PodList","items":[{"metadata":3}]}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("items[0] (Pod \"\")"), "{err}");
    }

    #[actix_rt::test]
    async fn load_checks_every_item_and_the_streams_replay_the_used_ones() {
        use futures::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.json");
        let pods: Vec<String> = (0..600)
            .map(|i| format!(r#"{{"kind":"Pod","metadata":{{"name":"p{i}","namespace":"d"}}}}"#))
            .collect();
        std::fs::write(
            &path,
            format!(
                r#"{{"kind":"List","items":[{{"kind":"Node","metadata":{{"name":"n1"}}}},
                {{"kind":"Service","metadata":{{"name":"s"}}}},{}],"metadata":{{}}}}"#,
                pods.join(",")
            ),
        )
        .unwrap();
        let objects = load(&path).unwrap();
        assert_eq!((objects.counts.nodes, objects.counts.pods), (1, 600));
        // More pods than the reader may hold ahead of the cache: all arrive, in order.
        let streams = objects.into_streams();
        let names = |events: Vec<WatchItem<Pod>>| -> Vec<String> {
            events
                .into_iter()
                .filter_map(|event| match event {
                    Ok(Event::InitApply(pod)) => pod.metadata.name,
                    _ => None,
                })
                .collect()
        };
        let pod_events: Vec<_> = streams.pods.take(602).collect().await;
        assert!(matches!(pod_events.first(), Some(Ok(Event::Init))));
        assert!(matches!(pod_events.last(), Some(Ok(Event::InitDone))));
        let replayed = names(pod_events);
        assert_eq!(replayed.len(), 600);
        assert_eq!(replayed[599], "p599");
        let node_events: Vec<_> = streams.nodes.take(3).collect().await;
        assert!(
            matches!(&node_events[1], Ok(Event::InitApply(n)) if n.metadata.name.as_deref() == Some("n1"))
        );

        std::fs::write(
            &path,
            r#"[{"kind":"Pod","metadata":{"name":"bad"},"spec":{"containers":"nope"}}]"#,
        )
        .unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("items[0] (Pod \"bad\"): "), "{err}");
    }

    #[actix_rt::test]
    async fn a_yaml_file_is_replayed_from_its_items() {
        use futures::StreamExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cluster.yaml");
        std::fs::write(
            &path,
            "kind: List\nitems:\n- kind: Node\n  metadata:\n    name: n1\n",
        )
        .unwrap();
        let objects = load(&path).unwrap();
        assert_eq!(objects.counts.nodes, 1);
        let events: Vec<_> = objects.into_streams().nodes.take(3).collect().await;
        assert!(
            matches!(&events[1], Ok(Event::InitApply(n)) if n.metadata.name.as_deref() == Some("n1"))
        );
        assert!(matches!(events[2], Ok(Event::InitDone)));
    }

    #[test]
    fn items_are_read_whatever_the_order_of_the_lists_keys() {
        // `kind` after `items` (kubectl's order): items name their own kind.
        let json = r#"{"apiVersion":"v1","items":[{"kind":"Pod","metadata":{"name":"p"}}],"kind":"List","metadata":{"resourceVersion":""}}"#;
        assert_eq!(parse("f", json).unwrap().pods.len(), 1);
        // A typed list's implied kind applies to the items after it.
        let json = r#"{"kind":"PodList","metadata":{},"items":[{"metadata":{"name":"p"}}]}"#;
        assert_eq!(parse("f", json).unwrap().pods.len(), 1);
        let json = r#"{"items":[{"metadata":{"name":"p"}}],"kind":"PodList"}"#;
        let err = parse("f", json).unwrap_err().to_string();
        assert!(err.contains("item has no kind"), "{err}");
        // Trailing text after the document is a syntax error, not ignored.
        assert!(parse("f", r#"{"kind":"List","items":[]} {}"#).is_err());
    }

    #[test]
    fn typed_lists_imply_the_item_kind() {
        let json = r#"{"kind":"PodList","items":[{"metadata":{"name":"p"}}]}"#;
        assert_eq!(parse("f", json).unwrap().pods.len(), 1);
    }

    #[test]
    fn errors_name_file_index_and_problem() {
        let json = r#"{"kind":"List","items":[{"kind":"Node","metadata":{"name":"ok"}},
            {"kind":"Pod","metadata":{"name":"bad"},"spec":{"containers":"nope"}}]}"#;
        let err = parse("demo.json", json).unwrap_err().to_string();
        assert!(
            err.starts_with("snapshot: demo.json: items[1] (Pod \"bad\"): "),
            "{err}"
        );

        let err = parse("x.json", "{\"kind\":\"List\"}")
            .unwrap_err()
            .to_string();
        assert!(err.contains("items"), "{err}");
        assert!(parse("x.json", "{not json").is_err());
        assert!(parse("x.yaml", "a: [b").is_err());
        let err = parse("x.yaml", "5").unwrap_err().to_string();
        assert!(err.contains("expected a List"), "{err}");
        let err = parse("x.json", r#"{"kind":"List","items":5}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("expected a List"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_text_never_panics(text in "\\PC{0,200}") {
            let _ = parse("fuzz", &text);
        }

        #[test]
        fn arbitrary_items_never_panic(kind in "(Node|Pod|ConfigMap|List|)", body in "\\PC{0,120}") {
            let text = format!("{{\"kind\":\"List\",\"items\":[{{\"kind\":\"{kind}\",\"metadata\":{body}}}]}}");
            let _ = parse("fuzz", &text);
        }
    }
}
