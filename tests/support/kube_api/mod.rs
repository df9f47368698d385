//! An in-process Kubernetes API server for integration tests: nodes, pods, configmaps,
//! events and DRA's ResourceSlices and ResourceClaims over the real list/watch wire
//! protocol, and the Leases leader election writes, reached through a generated kubeconfig.
//!
//! No real API server can run on the test machines, yet the production code talks to the
//! cluster only through kube-rs watchers built from a kubeconfig. This module speaks enough of
//! the protocol (discovery, paged lists, chunked watch streams with replay, bookmarks,
//! `410 Expired`, `403 Forbidden`) that both `kube::runtime::watcher` and a real `kubectl`
//! work against it unchanged. Tests drive it through [`TestApiServer`]; the HTTP handlers only
//! read the shared store, so every change a test makes is ordered by one revision counter.
//!
//! [`selectors`] parses label and field selectors, [`store`] keeps objects, change log and
//! watches, [`http`] answers the protocol, [`lease`] keeps and serves Leases; this file is the control API tests use.
// Each test binary compiles this module but uses only part of it.
#![allow(dead_code)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::dev::{ServerHandle, Service};
use actix_web::web;
use actix_web::{App, HttpServer};
use k8s_openapi::api::core::v1::{ConfigMap, Event, Node, Pod};
use k8s_openapi::api::resource::v1::{ResourceClaim, ResourceSlice};
use serde_json::Value;

mod http;
mod lease;
mod selectors;
mod store;
mod thread;

use http::*;
pub use selectors::*;
use store::*;
// Only the binaries whose tests block their own thread use it.
#[allow(unused_imports)]
pub use thread::ApiServerThread;

/// How many changes a watch can be resumed across; older revisions answer `410 Expired`,
/// as a real API server does once etcd has compacted them.
pub(super) const EVENT_LOG_CAPACITY: usize = 10_000;
/// Real servers pick 30–60 minutes when the client gives no `timeoutSeconds`.
pub(super) const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(1800);
pub(super) const MAX_WATCH_TIMEOUT: Duration = Duration::from_secs(3600);
pub(super) const DEFAULT_BOOKMARK_INTERVAL: Duration = Duration::from_secs(1);
/// Bounds the wait for the kernel to release the port between `stop()` and `restart()`.
pub(super) const REBIND_DEADLINE: Duration = Duration::from_secs(10);

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

    pub fn apply_resource_slice(&self, slice: ResourceSlice) {
        self.apply_typed(ResourceKind::ResourceSlice, slice);
    }

    pub fn delete_resource_slice(&self, name: &str) {
        self.shared
            .lock()
            .delete(ResourceKind::ResourceSlice, "", name);
    }

    pub fn apply_resource_claim(&self, claim: ResourceClaim) {
        self.apply_typed(ResourceKind::ResourceClaim, claim);
    }

    pub fn delete_resource_claim(&self, namespace: &str, name: &str) {
        self.shared
            .lock()
            .delete(ResourceKind::ResourceClaim, namespace, name);
    }

    /// Off: `resource.k8s.io/v1` answers 404 everywhere and is left out of discovery, as on
    /// a cluster without DRA.
    pub fn set_dra_served(&self, served: bool) {
        self.shared.lock().dra_served = served;
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

    /// The Lease as stored, or `None`.
    pub fn lease(&self, namespace: &str, name: &str) -> Option<Value> {
        let key = (namespace.to_owned(), name.to_owned());
        self.shared.lock().leases.objects.get(&key).cloned()
    }

    /// The Lease's `spec.holderIdentity`; `None` when there is no Lease or no holder.
    pub fn lease_holder(&self, namespace: &str, name: &str) -> Option<String> {
        self.lease(namespace, name)?
            .pointer("/spec/holderIdentity")
            .and_then(Value::as_str)
            .filter(|holder| !holder.is_empty())
            .map(str::to_owned)
    }

    /// `kubectl delete lease`: gone until someone creates it again.
    pub fn delete_lease(&self, namespace: &str, name: &str) {
        let key = (namespace.to_owned(), name.to_owned());
        let mut state = self.shared.lock();
        if state.leases.objects.remove(&key).is_some() {
            state.revision += 1;
        }
    }

    /// Creates or overwrites the Lease as held by `holder`, renewed now, as another process
    /// would write it.
    pub fn set_lease_holder(&self, namespace: &str, name: &str, holder: &str, seconds: i32) {
        let renewed = k8s_openapi::jiff::Timestamp::now().to_string();
        let mut state = self.shared.lock();
        let transitions = state
            .leases
            .objects
            .get(&(namespace.to_owned(), name.to_owned()))
            .and_then(|lease| {
                lease
                    .pointer("/spec/leaseTransitions")
                    .and_then(Value::as_i64)
            })
            .unwrap_or(0);
        let lease = serde_json::json!({
            "metadata": { "name": name },
            "spec": {
                "holderIdentity": holder,
                "leaseDurationSeconds": seconds,
                "acquireTime": renewed,
                "renewTime": renewed,
                "leaseTransitions": transitions + 1,
            },
        });
        state.store_lease(self.shared.port, namespace, lease);
    }

    /// The next `count` Lease creates or updates answer `409 Conflict`.
    pub fn force_lease_conflicts(&self, count: usize) {
        self.shared.lock().leases.forced_conflicts = count;
    }

    /// Lease writes answered `409` so far (forced or a genuinely stale precondition).
    pub fn lease_conflicts_answered(&self) -> usize {
        self.shared.lock().leases.conflicts_answered
    }
}
