//! Checks the in-process test API server (`tests/support/kube_api.rs`) against the two clients
//! that matter: kube-rs (`Api` and `runtime::watcher`, exactly as production builds them from a
//! kubeconfig) and the real `kubectl`. Every other integration test trusts this server, so its
//! list/watch semantics are pinned here: replay, 410 re-lists, restarts, cut streams, paging.

mod support;

use std::collections::BTreeMap;
use std::io::BufRead;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, ObjectReference, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::api::{Api, ListParams, VersionMatch, WatchEvent, WatchParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::runtime::{watcher, WatchStreamExt};
use kube::{Client, Config, Resource, ResourceExt};
use serde::de::DeserializeOwned;
use support::kube_api::{FieldSelector, LabelSelector, TestApiServer};

const DEADLINE: Duration = Duration::from_secs(20);

fn meta(namespace: Option<&str>, name: &str, labels: &[(&str, &str)]) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_owned()),
        namespace: namespace.map(str::to_owned),
        labels: (!labels.is_empty()).then(|| {
            labels
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect()
        }),
        ..ObjectMeta::default()
    }
}

fn node(name: &str, labels: &[(&str, &str)]) -> Node {
    Node {
        metadata: meta(None, name, labels),
        ..Node::default()
    }
}

fn pod(namespace: &str, name: &str, node_name: &str) -> Pod {
    Pod {
        metadata: meta(Some(namespace), name, &[("app", "test")]),
        spec: Some(PodSpec {
            node_name: Some(node_name.to_owned()),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

async fn client_for(server: &TestApiServer, dir: &Path) -> Client {
    let path = server.write_kubeconfig(dir);
    let kubeconfig = Kubeconfig::read_from(&path).expect("read generated kubeconfig");
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .expect("config from generated kubeconfig");
    Client::try_from(config).expect("client from kubeconfig")
}

fn key<K: Resource>(object: &K) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// What a watcher consumer would hold: applies watcher events the way a reflector does
/// (relist buffered, swapped in on `InitDone`) and remembers what happened for assertions.
struct Mirror<K> {
    objects: BTreeMap<String, K>,
    relist: Option<BTreeMap<String, K>>,
    inits: usize,
    init_dones: usize,
    errors: Vec<String>,
}

impl<K: Resource + Clone> Mirror<K> {
    fn new() -> Self {
        Self {
            objects: BTreeMap::new(),
            relist: None,
            inits: 0,
            init_dones: 0,
            errors: Vec::new(),
        }
    }

    fn apply(&mut self, event: Result<watcher::Event<K>, watcher::Error>) {
        match event {
            Ok(watcher::Event::Init) => {
                self.inits += 1;
                self.relist = Some(BTreeMap::new());
            }
            Ok(watcher::Event::InitApply(obj)) => {
                self.relist
                    .get_or_insert_with(BTreeMap::new)
                    .insert(key(&obj), obj);
            }
            Ok(watcher::Event::InitDone) => {
                self.init_dones += 1;
                self.objects = self.relist.take().unwrap_or_default();
            }
            Ok(watcher::Event::Apply(obj)) => {
                self.objects.insert(key(&obj), obj);
            }
            Ok(watcher::Event::Delete(obj)) => {
                self.objects.remove(&key(&obj));
            }
            Err(err) => self.errors.push(err.to_string()),
        }
    }

    fn names(&self) -> Vec<String> {
        self.objects.keys().cloned().collect()
    }
}

type WatchStream<K> = BoxStream<'static, Result<watcher::Event<K>, watcher::Error>>;

fn watch<K>(api: Api<K>, config: watcher::Config) -> WatchStream<K>
where
    K: Resource + Clone + DeserializeOwned + std::fmt::Debug + Send + 'static,
{
    watcher(api, config).default_backoff().boxed()
}

/// Drives `stream` into `mirror` until `done` holds; panics with the mirror's state at the
/// deadline so a failure says what was seen.
async fn drive_until<K: Resource + Clone>(
    stream: &mut WatchStream<K>,
    mirror: &mut Mirror<K>,
    what: &str,
    done: impl Fn(&Mirror<K>) -> bool,
) {
    let deadline = tokio::time::Instant::now() + DEADLINE;
    while !done(mirror) {
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(event)) => mirror.apply(event),
            Ok(None) => panic!("watch stream ended while waiting for {what}"),
            Err(_) => panic!(
                "timed out waiting for {what}: objects {:?}, inits {}, errors {:?}",
                mirror.names(),
                mirror.inits,
                mirror.errors
            ),
        }
    }
}

#[actix_rt::test]
async fn kube_client_lists_and_gets_through_generated_kubeconfig() {
    let server = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    server.apply_node(node("n1", &[]));
    server.apply_node(node("n2", &[]));
    server.apply_pod(pod("default", "p1", "n1"));
    server.apply_pod(pod("kube-system", "p2", "n2"));
    let client = client_for(&server, dir.path()).await;

    let version = client.apiserver_version().await.unwrap();
    assert_eq!(
        (version.major.as_str(), version.minor.as_str()),
        ("1", "33")
    );

    let nodes = Api::<Node>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    let names: Vec<_> = nodes.items.iter().map(ResourceExt::name_any).collect();
    assert_eq!(names, ["n1", "n2"]);
    assert_eq!(
        nodes.metadata.resource_version,
        Some(server.revision().to_string())
    );

    let pods = Api::<Pod>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(pods.items.len(), 2);
    let system = Api::<Pod>::namespaced(client.clone(), "kube-system");
    let listed = system.list(&ListParams::default()).await.unwrap();
    assert_eq!(
        listed.items.iter().map(key).collect::<Vec<_>>(),
        ["kube-system/p2"]
    );
    let p2 = system.get("p2").await.unwrap();
    assert!(p2.metadata.uid.is_some() && p2.metadata.creation_timestamp.is_some());
    let n1 = Api::<Node>::all(client.clone()).get("n1").await.unwrap();
    assert_eq!(n1.metadata.resource_version.as_deref(), Some("2"));

    let on_n2 = ListParams::default().fields("spec.nodeName=n2");
    let by_node = Api::<Pod>::all(client.clone()).list(&on_n2).await.unwrap();
    assert_eq!(
        by_node.items.iter().map(key).collect::<Vec<_>>(),
        ["kube-system/p2"]
    );

    match Api::<Pod>::namespaced(client, "default")
        .get("missing")
        .await
    {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 404),
        other => panic!("expected 404, got {other:?}"),
    }
}

#[actix_rt::test]
async fn watcher_follows_changes_through_expiry_restart_and_cut_streams() {
    let started = Instant::now();
    let server = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    server.apply_node(node("n1", &[]));
    server.apply_node(node("n2", &[]));
    server.apply_pod(pod("default", "p1", "n1"));
    server.apply_pod(pod("kube-system", "p2", "n2"));
    let client = client_for(&server, dir.path()).await;
    let mut pods = watch(Api::<Pod>::all(client.clone()), watcher::Config::default());
    let mut nodes = watch(Api::<Node>::all(client.clone()), watcher::Config::default());
    let mut pod_view = Mirror::new();
    let mut node_view = Mirror::new();

    drive_until(&mut pods, &mut pod_view, "initial pod list", |m| {
        m.init_dones == 1
    })
    .await;
    drive_until(&mut nodes, &mut node_view, "initial node list", |m| {
        m.init_dones == 1
    })
    .await;
    assert_eq!(pod_view.names(), ["default/p1", "kube-system/p2"]);
    assert_eq!(node_view.names(), ["/n1", "/n2"]);

    server.apply_pod(pod("default", "p3", "n1"));
    drive_until(&mut pods, &mut pod_view, "added pod p3", |m| {
        m.objects.contains_key("default/p3")
    })
    .await;
    server.apply_node(node("n1", &[("gpu", "true")]));
    drive_until(&mut nodes, &mut node_view, "relabelled n1", |m| {
        m.objects["/n1"]
            .labels()
            .get("gpu")
            .is_some_and(|v| v == "true")
    })
    .await;
    server.delete_pod("default", "p1");
    drive_until(&mut pods, &mut pod_view, "deleted pod p1", |m| {
        !m.objects.contains_key("default/p1")
    })
    .await;
    assert_eq!(pod_view.inits, 1, "plain changes must not cause a re-list");

    // Expiry: the node deleted while expired is only visible through the forced re-list.
    server.expire();
    server.delete_node("n2");
    drive_until(&mut nodes, &mut node_view, "re-list after expiry", |m| {
        m.init_dones == 2
    })
    .await;
    assert_eq!(node_view.names(), ["/n1"]);
    assert!(
        node_view
            .errors
            .iter()
            .any(|e| e.contains("410") || e.contains("too old")),
        "{:?}",
        node_view.errors
    );
    drive_until(&mut pods, &mut pod_view, "pod re-list after expiry", |m| {
        m.init_dones == 2
    })
    .await;
    assert_eq!(pod_view.names(), ["default/p3", "kube-system/p2"]);

    // Stop and restart: connections are refused meanwhile; the watch resumes from its revision.
    server.stop().await;
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", server.port())).is_err(),
        "stopped server still accepts"
    );
    server.apply_pod(pod("default", "p4", "n1"));
    server.restart().await;
    drive_until(&mut pods, &mut pod_view, "pod added while stopped", |m| {
        m.objects.contains_key("default/p4")
    })
    .await;
    server.apply_node(node("n3", &[]));
    drive_until(
        &mut nodes,
        &mut node_view,
        "node added after restart",
        |m| m.objects.contains_key("/n3"),
    )
    .await;

    // Cut streams: the change made before the re-watch is replayed, without a re-list.
    let inits_before = (pod_view.inits, node_view.inits);
    server.cut_watches();
    server.apply_pod(pod("default", "p5", "n3"));
    server.delete_node("n1");
    drive_until(&mut pods, &mut pod_view, "pod added across a cut", |m| {
        m.objects.contains_key("default/p5")
    })
    .await;
    drive_until(
        &mut nodes,
        &mut node_view,
        "node deleted across a cut",
        |m| !m.objects.contains_key("/n1"),
    )
    .await;
    assert_eq!(
        (pod_view.inits, node_view.inits),
        inits_before,
        "a cut stream must resume, not re-list"
    );
    assert_eq!(
        pod_view.names(),
        ["default/p3", "default/p4", "default/p5", "kube-system/p2"]
    );
    eprintln!("watcher lifecycle took {:?}", started.elapsed());
}

#[actix_rt::test]
async fn selector_watch_turns_relabels_into_adds_and_deletes() {
    let server = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    server.apply_node(node("gpu-a", &[("gpu", "true")]));
    server.apply_node(node("cpu-a", &[]));
    let client = client_for(&server, dir.path()).await;
    let config = watcher::Config::default().labels("gpu=true");
    let mut nodes = watch(Api::<Node>::all(client), config);
    let mut view = Mirror::new();
    drive_until(&mut nodes, &mut view, "initial list", |m| m.init_dones == 1).await;
    assert_eq!(view.names(), ["/gpu-a"]);

    server.apply_node(node("cpu-a", &[("gpu", "true")]));
    drive_until(&mut nodes, &mut view, "node entering the selector", |m| {
        m.objects.contains_key("/cpu-a")
    })
    .await;
    server.apply_node(node("gpu-a", &[("gpu", "false")]));
    drive_until(&mut nodes, &mut view, "node leaving the selector", |m| {
        !m.objects.contains_key("/gpu-a")
    })
    .await;
}

#[actix_rt::test]
async fn raw_watch_gets_bookmarks_timeouts_and_expiry_errors() {
    let server = TestApiServer::start().await;
    server.set_bookmark_interval(Duration::from_millis(100));
    let dir = tempfile::tempdir().unwrap();
    server.apply_node(node("n1", &[]));
    let client = client_for(&server, dir.path()).await;
    let api = Api::<Node>::all(client);

    let start = Instant::now();
    let params = WatchParams::default().timeout(2);
    let from = server.revision().to_string();
    let events: Vec<_> = api
        .watch(&params, &from)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let elapsed = start.elapsed();
    assert!(
        elapsed >= Duration::from_millis(1900) && elapsed < Duration::from_secs(10),
        "{elapsed:?}"
    );
    let bookmark = events.iter().find_map(|e| match e {
        WatchEvent::Bookmark(b) => Some(b.metadata.resource_version.clone()),
        _ => None,
    });
    assert_eq!(bookmark, Some(from.clone()));

    let mut replay = api
        .watch(&WatchParams::default().timeout(5), "1")
        .await
        .unwrap()
        .boxed();
    match replay.try_next().await.unwrap() {
        Some(WatchEvent::Added(n)) => assert_eq!(n.name_any(), "n1"),
        other => panic!("expected replayed ADDED, got {other:?}"),
    }
    drop(replay);

    server.expire();
    let mut expired = api
        .watch(&WatchParams::default().timeout(5), "1")
        .await
        .unwrap()
        .boxed();
    match expired.try_next().await.unwrap() {
        Some(WatchEvent::Error(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (410, "Expired"))
        }
        other => panic!("expected ERROR 410, got {other:?}"),
    }
    assert!(
        expired.try_next().await.unwrap().is_none(),
        "stream must end after the 410"
    );

    let exact_old = ListParams::default().at("1").matching(VersionMatch::Exact);
    match api.list(&exact_old).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 410),
        other => panic!("expected 410 for a compacted list, got {other:?}"),
    }
}

#[actix_rt::test]
async fn configmaps_events_and_forbidden_resources() {
    let server = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let client = client_for(&server, dir.path()).await;
    let configmap = |name: &str, value: &str| ConfigMap {
        metadata: meta(Some("hami"), name, &[]),
        data: Some([("k".to_owned(), value.to_owned())].into()),
        ..ConfigMap::default()
    };
    server.apply_configmap(configmap("wanted", "1"));
    server.apply_configmap(configmap("other", "1"));
    let api = Api::<ConfigMap>::namespaced(client.clone(), "hami");
    let config = watcher::Config::default().fields("metadata.name=wanted");
    let mut stream = watch(api.clone(), config);
    let mut view = Mirror::new();
    drive_until(&mut stream, &mut view, "configmap list", |m| {
        m.init_dones == 1
    })
    .await;
    assert_eq!(view.names(), ["hami/wanted"]);
    server.apply_configmap(configmap("other", "2"));
    server.apply_configmap(configmap("wanted", "2"));
    drive_until(&mut stream, &mut view, "configmap update", |m| {
        m.objects["hami/wanted"]
            .data
            .as_ref()
            .is_some_and(|d| d["k"] == "2")
    })
    .await;
    server.delete_configmap("hami", "wanted");
    drive_until(&mut stream, &mut view, "configmap delete", |m| {
        m.objects.is_empty()
    })
    .await;

    let event = |involved: &str, uid: &str| Event {
        metadata: meta(Some("default"), "", &[]),
        involved_object: ObjectReference {
            kind: Some("Pod".into()),
            name: Some(involved.into()),
            namespace: Some("default".into()),
            uid: Some(uid.into()),
            ..ObjectReference::default()
        },
        reason: Some("FailedScheduling".into()),
        ..Event::default()
    };
    for i in 0..3 {
        server.add_event(event("p1", "uid-1"));
        server.add_event(event(&format!("other-{i}"), "uid-2"));
    }
    let events = Api::<Event>::namespaced(client.clone(), "default");
    let params = ListParams::default()
        .fields("involvedObject.name=p1,involvedObject.uid=uid-1")
        .limit(2);
    let page = events.list(&params).await.unwrap();
    assert_eq!(page.items.len(), 2);
    assert!(page.metadata.continue_.is_some());
    assert_eq!(server.request_count("/api/v1/namespaces/default/events"), 1);
    let all = Api::<Event>::all(client.clone())
        .list(&ListParams::default())
        .await
        .unwrap();
    assert_eq!(all.items.len(), 6);

    server.set_forbidden("configmaps", true);
    match api.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => {
            assert_eq!((status.code, status.reason.as_str()), (403, "Forbidden"))
        }
        other => panic!("expected 403, got {other:?}"),
    }
    server.set_forbidden("configmaps", false);
    assert_eq!(
        api.list(&ListParams::default()).await.unwrap().items.len(),
        1
    );
}

#[actix_rt::test]
async fn five_thousand_pods_list_in_pages() {
    let server = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let pods = (0..5_000)
        .map(|i| pod(&format!("ns-{}", i % 7), &format!("pod-{i:05}"), "n1"))
        .collect();
    server.apply_many_pods(pods);
    let applied = started.elapsed();
    let client = client_for(&server, dir.path()).await;
    let api = Api::<Pod>::all(client.clone());

    let mut seen = 0;
    let mut pages = 0;
    let mut params = ListParams::default().limit(500);
    for _ in 0..100 {
        let page = api.list(&params).await.unwrap();
        seen += page.items.len();
        pages += 1;
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = ListParams::default().limit(500).continue_token(&token),
            None => break,
        }
    }
    assert_eq!((seen, pages), (5_000, 10));

    let mut stream = watch(api, watcher::Config::default());
    let mut view = Mirror::new();
    drive_until(&mut stream, &mut view, "paged initial list", |m| {
        m.init_dones == 1
    })
    .await;
    assert_eq!(view.objects.len(), 5_000);
    // The watcher opens its watch only when polled after InitDone.
    assert_eq!(
        server.request_count("/api/v1/pods"),
        10 + 10,
        "10 manual pages, 10 watcher pages"
    );
    eprintln!(
        "5,000 pods: applied in {applied:?}, total {:?}",
        started.elapsed()
    );
}

#[test]
fn label_selector_forms_match_like_kubernetes() {
    let labels: BTreeMap<String, String> = [
        ("app", "web"),
        ("tier", "front"),
        ("gpu", "4"),
        ("example.com/team", "ml"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    let cases = [
        ("", true),
        ("app=web", true),
        ("app==web", true),
        ("app = web", true),
        ("app=db", false),
        ("app!=db", true),
        ("app!=web", false),
        ("missing!=x", true),
        ("app", true),
        ("missing", false),
        ("!missing", true),
        ("! app", false),
        ("tier in (front,back)", true),
        ("tier in ( back , db )", false),
        ("missing in (a)", false),
        ("tier notin (back)", true),
        ("tier notin (front, back)", false),
        ("missing notin (a)", true),
        ("gpu>3", true),
        ("gpu<3", false),
        ("app>1", false),
        ("example.com/team=ml", true),
        ("app=web,tier=front", true),
        ("app=web, tier in (back)", false),
        ("app,!missing,tier notin (x),gpu>1", true),
        ("app=", false),
        ("missing=", false),
    ];
    for (text, expected) in cases {
        let selector = LabelSelector::parse(text).unwrap_or_else(|e| panic!("{text:?}: {e}"));
        assert_eq!(selector.matches(&labels), expected, "{text:?}");
    }
}

#[test]
fn malformed_label_selectors_are_rejected() {
    for text in [
        "app=web,",
        ",app",
        "app in ()",
        "app in (a",
        "app in a",
        "app notin",
        "app=we b",
        "=web",
        "app===web",
        "app>x",
        "-app=web",
        "app=web-",
        "app!",
        "a/b/c=d",
        "app(x)",
    ] {
        assert!(
            LabelSelector::parse(text).is_err(),
            "{text:?} should not parse"
        );
    }
}

#[test]
fn field_selectors_match_dotted_paths() {
    let pod = serde_json::json!({
        "metadata": { "name": "p1", "namespace": "default" },
        "spec": { "nodeName": "n1" },
        "status": { "phase": "Running" },
    });
    let cases = [
        ("", true),
        ("metadata.name=p1", true),
        ("metadata.name==p1", true),
        ("metadata.name!=p1", false),
        ("spec.nodeName=n1,status.phase=Running", true),
        ("spec.nodeName=n2", false),
        ("spec.nodeName!=n2", true),
        ("spec.missing=", true),
    ];
    for (text, expected) in cases {
        let selector = FieldSelector::parse(text).unwrap();
        assert_eq!(selector.matches_object(&pod), expected, "{text:?}");
    }
    assert!(FieldSelector::parse("metadata.name").is_err());
    assert!(FieldSelector::parse("=p1").is_err());
}

fn kubectl() -> PathBuf {
    let found = std::env::var_os("PATH")
        .into_iter()
        .flat_map(|paths| std::env::split_paths(&paths).collect::<Vec<_>>())
        .map(|dir| dir.join("kubectl"))
        .find(|path| path.is_file());
    found.unwrap_or_else(|| {
        panic!("kubectl not found on PATH; install it with `apt-get install kubernetes-client`")
    })
}

/// Kills the spawned kubectl even when an assertion fails mid-test.
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn kubectl_command(kubeconfig: &Path, cache: &Path) -> Command {
    let mut command = Command::new(kubectl());
    command
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .arg("--cache-dir")
        .arg(cache)
        .env_remove("KUBECONFIG");
    command
}

#[actix_rt::test]
async fn kubectl_gets_nodes_and_pods_as_json() {
    let server = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    server.apply_node(node("n1", &[("gpu", "true")]));
    server.apply_pod(pod("default", "p1", "n1"));
    server.apply_pod(pod("kube-system", "p2", "n1"));
    let kubeconfig = server.write_kubeconfig(dir.path());
    let mut command = kubectl_command(&kubeconfig, &dir.path().join("cache"));
    command.args([
        "get",
        "nodes,pods",
        "-A",
        "-o",
        "json",
        "--request-timeout",
        "20s",
    ]);
    let output = actix_rt::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "kubectl failed: {stderr}");
    let list: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let names: Vec<String> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|item| {
            format!(
                "{}:{}",
                item["kind"].as_str().unwrap_or(""),
                item["metadata"]["name"].as_str().unwrap_or("")
            )
        })
        .collect();
    assert_eq!(names, ["Node:n1", "Pod:p1", "Pod:p2"], "stderr: {stderr}");
}

#[actix_rt::test]
async fn kubectl_watch_prints_pod_added_after_start() {
    let server = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    server.apply_pod(pod("default", "early-pod", "n1"));
    let kubeconfig = server.write_kubeconfig(dir.path());
    let mut command = kubectl_command(&kubeconfig, &dir.path().join("cache"));
    command
        .args(["get", "pods", "-A", "--watch", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = KillOnDrop(command.spawn().expect("spawn kubectl"));
    let stdout = child.0.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    // Ends by itself once the child is killed and its stdout closes.
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                break;
            }
        }
    });

    let mut output = String::new();
    let mut wait_for = async |needle: &str| {
        let deadline = Instant::now() + DEADLINE;
        while !output.contains(needle) {
            assert!(
                Instant::now() < deadline,
                "kubectl never printed {needle:?}; output so far:\n{output}"
            );
            match rx.try_recv() {
                Ok(line) => {
                    output.push_str(&line);
                    output.push('\n');
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    };
    wait_for("\"name\": \"early-pod\"").await;
    server.apply_pod(pod("default", "late-pod", "n1"));
    wait_for("\"name\": \"late-pod\"").await;
    drop(child);
}

/// Runs kubectl off the actix thread (the test API server answers on it).
async fn run_kubectl(kubeconfig: &Path, cache: &Path, args: &[&str]) -> std::process::Output {
    let mut command = kubectl_command(kubeconfig, cache);
    command.args(args).args(["--request-timeout", "20s"]);
    actix_rt::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .unwrap()
}

#[actix_rt::test]
async fn kubectl_creates_replaces_and_deletes_leases_with_conflicts_on_stale_versions() {
    let server = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = server.write_kubeconfig(dir.path());
    let cache = dir.path().join("cache");
    let manifest = dir.path().join("lease.json");
    let lease = |holder: &str, version: Option<&str>| {
        let mut lease = serde_json::json!({
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": { "name": "leader", "namespace": "hami" },
            "spec": { "holderIdentity": holder, "leaseDurationSeconds": 15 },
        });
        if let Some(version) = version {
            lease["metadata"]["resourceVersion"] = serde_json::json!(version);
        }
        lease.to_string()
    };

    // This server publishes no OpenAPI schema, so client-side validation is off.
    std::fs::write(&manifest, lease("a", None)).unwrap();
    let manifest_arg = manifest.to_str().unwrap();
    let created = run_kubectl(
        &kubeconfig,
        &cache,
        &["create", "--validate=false", "-f", manifest_arg],
    )
    .await;
    assert!(
        created.status.success(),
        "create: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    assert_eq!(server.lease_holder("hami", "leader").as_deref(), Some("a"));

    let got = run_kubectl(
        &kubeconfig,
        &cache,
        &["get", "lease", "leader", "-n", "hami", "-o", "json"],
    )
    .await;
    assert!(
        got.status.success(),
        "get: {}",
        String::from_utf8_lossy(&got.stderr)
    );
    let read: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    let version = read["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(read["spec"]["holderIdentity"], "a");

    // A replace carrying the version just read wins; the same version again is stale.
    std::fs::write(&manifest, lease("b", Some(&version))).unwrap();
    let replaced = run_kubectl(
        &kubeconfig,
        &cache,
        &["replace", "--validate=false", "-f", manifest_arg],
    )
    .await;
    assert!(
        replaced.status.success(),
        "replace: {}",
        String::from_utf8_lossy(&replaced.stderr)
    );
    assert_eq!(server.lease_holder("hami", "leader").as_deref(), Some("b"));
    std::fs::write(&manifest, lease("c", Some(&version))).unwrap();
    let stale = run_kubectl(
        &kubeconfig,
        &cache,
        &["replace", "--validate=false", "-f", manifest_arg],
    )
    .await;
    let stderr = String::from_utf8_lossy(&stale.stderr);
    assert!(!stale.status.success());
    assert!(stderr.contains("the object has been modified"), "{stderr}");
    assert_eq!(server.lease_holder("hami", "leader").as_deref(), Some("b"));
    assert_eq!(server.lease_conflicts_answered(), 1);

    let listed = run_kubectl(&kubeconfig, &cache, &["get", "leases", "-A", "-o", "json"]).await;
    let list: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(list["items"].as_array().map(Vec::len), Some(1));

    let deleted = run_kubectl(
        &kubeconfig,
        &cache,
        &["delete", "lease", "leader", "-n", "hami"],
    )
    .await;
    assert!(
        deleted.status.success(),
        "delete: {}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    assert!(server.lease("hami", "leader").is_none());
    let missing = run_kubectl(
        &kubeconfig,
        &cache,
        &["get", "lease", "leader", "-n", "hami"],
    )
    .await;
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(!missing.status.success());
    // kubectl then looks the namespace up, which this server does not serve, so only the
    // reason is stable.
    assert!(stderr.contains("(NotFound)"), "{stderr}");
}

#[actix_rt::test]
async fn dra_resources_list_watch_expire_and_can_be_switched_off() {
    use k8s_openapi::api::resource::v1::{ResourceClaim, ResourceSlice};
    use support::fixtures::{dra_claim, dra_slice};
    let server = TestApiServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    server.apply_resource_slice(dra_slice(
        "gpu-1",
        &[("hami-gpu-0", "GPU-a", "NVIDIA A100", "80Gi")],
    ));
    server.apply_resource_claim(dra_claim(
        "team",
        "shared",
        "gpu-1",
        &[("hami-gpu-0", "30", "8Gi")],
        &[("p", "uid-p")],
    ));
    let client = client_for(&server, dir.path()).await;
    let slices = Api::<ResourceSlice>::all(client.clone());
    let claims = Api::<ResourceClaim>::namespaced(client.clone(), "team");
    let listed = slices.list(&ListParams::default()).await.unwrap();
    assert_eq!(listed.items.len(), 1);
    assert_eq!(listed.items[0].spec.driver, support::fixtures::DRA_DRIVER);
    let claim = claims.get("shared").await.unwrap();
    let results = claim
        .status
        .unwrap()
        .allocation
        .unwrap()
        .devices
        .unwrap()
        .results
        .unwrap();
    assert_eq!(
        results[0].consumed_capacity.as_ref().unwrap()["memory"].0,
        "8Gi"
    );

    // A watch sees a deallocation, and a resumed watch past compaction gets 410.
    let from = server.revision().to_string();
    let mut watch = claims
        .watch(&WatchParams::default().timeout(5), &from)
        .await
        .unwrap()
        .boxed();
    server.apply_resource_claim(dra_claim("team", "shared", "gpu-1", &[], &[]));
    match watch.try_next().await.unwrap() {
        Some(WatchEvent::Modified(c)) => {
            assert!(c.status.unwrap_or_default().allocation.is_none())
        }
        other => panic!("expected MODIFIED, got {other:?}"),
    }
    drop(watch);
    server.expire();
    let mut expired = claims
        .watch(&WatchParams::default().timeout(5), "1")
        .await
        .unwrap()
        .boxed();
    match expired.try_next().await.unwrap() {
        Some(WatchEvent::Error(status)) => assert_eq!(status.code, 410),
        other => panic!("expected ERROR 410, got {other:?}"),
    }

    let kubeconfig = server.write_kubeconfig(dir.path());
    let cache = dir.path().join("cache");
    let got = run_kubectl(
        &kubeconfig,
        &cache,
        &["get", "resourceslices,resourceclaims", "-A", "-o", "json"],
    )
    .await;
    assert!(
        got.status.success(),
        "{}",
        String::from_utf8_lossy(&got.stderr)
    );
    let list: serde_json::Value = serde_json::from_slice(&got.stdout).unwrap();
    let kinds: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["kind"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(kinds, ["ResourceSlice", "ResourceClaim"]);

    // Without DRA the group is gone from discovery and its paths answer 404.
    server.set_dra_served(false);
    match slices.list(&ListParams::default()).await {
        Err(kube::Error::Api(status)) => assert_eq!(status.code, 404),
        other => panic!("expected 404, got {other:?}"),
    }
    let fresh_cache = dir.path().join("cache-without-dra");
    let missing = run_kubectl(&kubeconfig, &fresh_cache, &["get", "resourceslices"]).await;
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("resourceslices"), "{stderr}");
}
