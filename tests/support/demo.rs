//! The demo cluster (`examples/demo-cluster.json`) as the REST tests use it: its objects,
//! the snapshot the pure path builds from them, the running service on it, and a recorded
//! metrics store standing in for the `QueryClient`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix::prelude::*;
use actix_web::test as atest;
use hami_webui_server::cluster::claims::snapshot_with_claims;
use hami_webui_server::cluster::inventory::{
    build_inventory_with_dra, node_entry, IdentityMap, NodeEntry,
};
use hami_webui_server::cluster::snapshot::ClusterSnapshot;
use hami_webui_server::cluster::snapshot_file::{self, ClusterExport};
use hami_webui_server::cluster::tracked_pod::pod_record;
use hami_webui_server::cluster::ClusterSource;
use hami_webui_server::config::Config;
use hami_webui_server::device::DeviceContext;
use hami_webui_server::http::AppState;
use hami_webui_server::query_client::{
    Query, QueryData, QueryError, QueryOutput, RunQuery, Sample,
};
use hami_webui_server::vendor::dra::{decode_claim, decode_slice, DraClaim, DraSlice};
use jiff::Timestamp;
use serde_json::Value;

use super::app::{self, closed_port_url};

pub const DEMO: &str = include_str!("../../examples/demo-cluster.json");

/// A configuration file with the zone the goldens are rendered in and the given upstream.
pub fn config_with(prometheus: &str) -> Config {
    config_timed(prometheus, "10s")
}

pub fn config_timed(prometheus: &str, timeout: &str) -> Config {
    app::config(&format!(
        "server:\n  timezone: Asia/Shanghai\n  http:\n    timeout: {timeout}\nprometheus:\n  address: {prometheus}\n  timeout: 30s\n"
    ))
}

/// [`config_with`] a metrics store nothing listens on.
pub fn config() -> Config {
    config_with(&closed_port_url())
}

pub fn demo_export() -> ClusterExport {
    snapshot_file::parse("demo-cluster.json", DEMO).expect("demo cluster parses")
}

/// Pods without `PodScheduled` get this as their scheduling time in the pure path.
pub fn fixed_now() -> Timestamp {
    "2025-12-01T00:00:00Z".parse().expect("timestamp")
}

pub fn entries(export: &ClusterExport, config: &Config) -> Vec<NodeEntry> {
    export
        .nodes
        .iter()
        .map(|n| node_entry(n, &config.node_selectors, &DeviceContext::default()).0)
        .collect()
}

/// The snapshot the caches would publish, built with the pure functions (HAMi-DRA slices
/// and claims included).
pub fn snapshot_from(entries: &[NodeEntry], export: &ClusterExport) -> ClusterSnapshot {
    let slices: Vec<DraSlice> = export
        .resource_slices
        .iter()
        .filter_map(|s| decode_slice(s).0)
        .collect();
    let slice_refs: Vec<&DraSlice> = slices.iter().collect();
    let inventory = Arc::new(
        build_inventory_with_dra(
            entries.iter(),
            &slice_refs,
            |_| None,
            &IdentityMap::new(),
            Default::default(),
        )
        .0,
    );
    let pods: Vec<_> = export
        .pods
        .iter()
        .filter_map(|p| {
            pod_record(p, fixed_now(), &DeviceContext::default())
                .0
                .map(Arc::new)
        })
        .collect();
    let claims: Vec<Arc<DraClaim>> = export
        .resource_claims
        .iter()
        .filter_map(|c| decode_claim(c).0.map(Arc::new))
        .collect();
    snapshot_with_claims(1, inventory, pods, Vec::new(), &claims).0
}

pub fn demo_snapshot() -> ClusterSnapshot {
    let export = demo_export();
    snapshot_from(&entries(&export, &config()), &export)
}

pub fn shanghai() -> jiff::tz::TimeZone {
    jiff::tz::TimeZone::get("Asia/Shanghai").expect("zone")
}

/// Starts the service on `export` and waits until its caches publish what the pure path
/// builds.
pub async fn running(export: ClusterExport, config: &Config) -> AppState {
    let expected = snapshot_from(&entries(&export, config), &export);
    let state = app::start(config.clone(), ClusterSource::Snapshot(export)).await;
    app::until_snapshot(&state, Duration::from_secs(10), "the demo snapshot", |s| {
        s.pods.len() == expected.pods.len()
            && s.inventory.nodes.len() == expected.inventory.nodes.len()
            && s.usage == expected.usage
    })
    .await;
    state
}

/// Query messages a fake metrics store received.
#[derive(Clone, Default)]
pub struct QueryLog(pub Arc<Mutex<Vec<String>>>);

/// Stands in for the `QueryClient`: records each query and answers with fixed vectors.
pub struct FakeStore {
    log: QueryLog,
    answers: HashMap<String, Vec<Sample>>,
}

impl Actor for FakeStore {
    type Context = Context<Self>;
}

impl Handler<RunQuery> for FakeStore {
    type Result = Result<Arc<QueryOutput>, QueryError>;

    fn handle(&mut self, msg: RunQuery, _: &mut Context<Self>) -> Self::Result {
        let Query::Instant { expr, .. } = msg.query else {
            return Err(QueryError::Decode("range query not expected".into()));
        };
        if let Ok(mut log) = self.log.0.lock() {
            log.push(expr.clone());
        }
        Ok(Arc::new(QueryOutput {
            data: QueryData::Vector(self.answers.get(&expr).cloned().unwrap_or_default()),
            warnings: Vec::new(),
        }))
    }
}

impl FakeStore {
    /// Started, as the handlers' metrics store: logs into `log`, answers with `answers` (an
    /// empty vector for any other expression).
    pub fn serving(log: &QueryLog, answers: HashMap<String, Vec<Sample>>) -> Recipient<RunQuery> {
        let store = FakeStore {
            log: log.clone(),
            answers,
        }
        .start();
        store.recipient::<RunQuery>()
    }
}

pub fn sample(label: &str, value: &str, v: f64) -> Sample {
    Sample {
        metric: [(label.to_string(), value.to_string())]
            .into_iter()
            .collect(),
        timestamp: 0.0,
        value: v,
    }
}

/// Status and JSON body (`null` when not JSON) of an answer.
pub async fn respond<B: actix_web::body::MessageBody>(
    response: actix_web::dev::ServiceResponse<B>,
) -> (u16, Value) {
    let status = response.status().as_u16();
    let body = atest::read_body(response).await;
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

pub fn post(path: &str, body: Value) -> atest::TestRequest {
    atest::TestRequest::post().uri(path).set_json(body)
}

/// The application the server runs, over an `AppState`.
#[macro_export]
macro_rules! app {
    ($state:expr) => {
        actix_web::test::init_service(hami_webui_server::http::app($state.clone())).await
    };
}

/// Sends a `TestRequest` to the app: status and JSON body.
#[macro_export]
macro_rules! call {
    ($app:expr, $req:expr) => {
        $crate::support::demo::respond(
            actix_web::test::call_service($app, ($req).to_request()).await,
        )
    };
}
