//! The cluster side: watchers turning the API server (or a `--snapshot` file) into events, the
//! `NodeCache` and `PodCache` actors that decode them, and the immutable [`snapshot`] every
//! reader gets.

pub mod allocation;
pub mod catalog_watcher;
pub mod claims;
pub mod interning;
pub mod inventory;
pub mod kubernetes;
pub mod leader_election;
pub mod node_cache;
pub mod pod_cache;
pub mod publish;
pub mod scheduling;
pub mod scheduling_events;
pub mod snapshot;
pub mod snapshot_file;
pub mod tracked_pod;
pub mod watch;

use std::sync::Arc;

use actix::prelude::*;
use k8s_openapi::api::resource::v1::{ResourceClaim, ResourceSlice};
use kube::api::Api;

use crate::config::Config;
use crate::readiness::ReadinessBoard;
use crate::telemetry::SelfMetrics;
use catalog_watcher::{self as catalog_watch, DeviceCatalogWatcher, SubscribeCatalog};
use node_cache::NodeCache;
use pod_cache::PodCache;
use scheduling::SchedulingResources;
use scheduling_events::SchedulingEvents;
use snapshot_file::{ClusterExport, SnapshotObjects};

/// Where the cluster state comes from.
pub enum ClusterSource {
    /// Watch the API server found by in-cluster config or kubeconfig.
    Kubernetes,
    /// Watch through a client built by the caller (tests build one from a kubeconfig file
    /// without touching the process environment).
    Client(kube::Client),
    /// Serve objects given by the caller (tests); no Kubernetes contact at all.
    Snapshot(ClusterExport),
    /// Serve the file loaded at start (`--snapshot`); no Kubernetes contact at all.
    SnapshotFile(SnapshotObjects),
}

/// The running cluster actors.
#[derive(Clone)]
pub struct Caches {
    pub nodes: Addr<NodeCache>,
    pub pods: Addr<PodCache>,
    /// HAMi's device ConfigMap (`device_config`), watched from the same source.
    pub catalog: Addr<DeviceCatalogWatcher>,
    /// One pod's events for `GET /v1/scheduling/pod`, read per request from the same API
    /// server and briefly cached.
    pub events: Addr<SchedulingEvents>,
    /// The API client the watchers use; `None` in snapshot mode or when none could be built.
    pub client: Option<kube::Client>,
}

/// Readiness sources: one per watcher.
pub const SOURCES: [&str; 2] = [node_cache::SOURCE, pod_cache::SOURCE];

/// Starts the node and pod caches and the device catalog on the current actix system. With a
/// Kubernetes source whose client cannot be built, the caches start empty and never sync (the
/// catalog stays `loading`); the error is logged.
pub async fn start(
    config: &Config,
    metrics: &SelfMetrics,
    board: &Arc<ReadinessBoard>,
    source: ClusterSource,
) -> Caches {
    let device_config = &config.device_config;
    let mut catalog_source = (futures::StreamExt::boxed(futures::stream::pending()), None);
    let mut events_client = None;
    let mut dra = DraSources::off();
    let (node_events, pod_events, node_api, pod_api) = match source {
        ClusterSource::Snapshot(export) => {
            catalog_source.0 = watch::replay(export.config_maps);
            dra = DraSources::replayed(
                watch::replay(export.resource_slices),
                watch::replay(export.resource_claims),
            );
            (
                watch::replay(export.nodes),
                watch::replay(export.pods),
                None,
                None,
            )
        }
        ClusterSource::SnapshotFile(objects) => {
            let streams = objects.into_streams();
            catalog_source.0 = streams.config_maps;
            dra = DraSources::replayed(streams.resource_slices, streams.resource_claims);
            (streams.nodes, streams.pods, None, None)
        }
        ClusterSource::Kubernetes | ClusterSource::Client(_) => match client_for(source).await {
            Ok(client) => {
                events_client = Some(client.clone());
                if catalog_watch::is_enabled(device_config) {
                    let api = Api::namespaced(client.clone(), &device_config.namespace);
                    catalog_source = (
                        catalog_watch::live(api.clone(), &device_config.name),
                        Some(api),
                    );
                }
                dra = DraSources::live(&client);
                let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
                let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::all(client);
                (
                    watch::live(nodes.clone()),
                    watch::live(pods.clone()),
                    Some(nodes),
                    Some(pods),
                )
            }
            Err(error) => {
                tracing::error!(%error, "cannot reach Kubernetes; serving an empty cluster");
                (
                    futures::StreamExt::boxed(futures::stream::pending()),
                    futures::StreamExt::boxed(futures::stream::pending()),
                    None,
                    None,
                )
            }
        },
    };
    let catalog =
        DeviceCatalogWatcher::new(device_config.clone(), catalog_source.0, catalog_source.1)
            .start();
    let pods = PodCache::new(metrics.clone(), Arc::clone(board), pod_events, pod_api)
        .with_scheduling_resources(SchedulingResources::new(&config.scheduling.resource_names))
        .with_resource_claims(dra.claims, dra.claim_api)
        .start();
    let events = SchedulingEvents::new(events_client.clone()).start();
    let nodes = NodeCache::new(
        config.node_selectors.clone(),
        metrics.clone(),
        Arc::clone(board),
        node_events,
        node_api,
    )
    .with_annotationless_pod_mode(config.ascend.annotationless_pod_mode)
    .with_resource_slices(dra.slices, dra.slice_api)
    .start();
    nodes.do_send(node_cache::Subscribe(pods.clone().recipient()));
    catalog.do_send(SubscribeCatalog(nodes.clone().recipient()));
    Caches {
        nodes,
        pods,
        catalog,
        client: events_client.clone(),
        events,
    }
}

async fn client_for(source: ClusterSource) -> Result<kube::Client, kubernetes::KubeClientError> {
    match source {
        ClusterSource::Client(client) => Ok(client),
        _ => kubernetes::client().await,
    }
}

/// How long a cluster that does not serve `resource.k8s.io/v1` waits before it is asked
/// again (DRA can be enabled on a running cluster).
pub const DRA_PROBE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);

/// HAMi-DRA's two watch streams (ResourceSlices for the node cache, ResourceClaims for the
/// pod cache) and their APIs for recovery probes.
struct DraSources {
    slices: futures::stream::BoxStream<'static, watch::WatchItem<ResourceSlice>>,
    claims: futures::stream::BoxStream<'static, watch::WatchItem<ResourceClaim>>,
    slice_api: Option<Api<ResourceSlice>>,
    claim_api: Option<Api<ResourceClaim>>,
}

impl DraSources {
    fn off() -> Self {
        Self::replayed(
            futures::StreamExt::boxed(futures::stream::pending()),
            futures::StreamExt::boxed(futures::stream::pending()),
        )
    }

    fn replayed(
        slices: futures::stream::BoxStream<'static, watch::WatchItem<ResourceSlice>>,
        claims: futures::stream::BoxStream<'static, watch::WatchItem<ResourceClaim>>,
    ) -> Self {
        Self {
            slices,
            claims,
            slice_api: None,
            claim_api: None,
        }
    }

    /// Both watchers start once the API server lists ResourceSlices. While it answers 404
    /// (no `resource.k8s.io/v1`: a cluster without DRA, or older than 1.34), one line says so
    /// and nothing is watched; any other answer starts the watchers, which report their own
    /// errors.
    fn live(client: &kube::Client) -> Self {
        use futures::{FutureExt, StreamExt};
        let slice_api: Api<ResourceSlice> = Api::all(client.clone());
        let claim_api: Api<ResourceClaim> = Api::all(client.clone());
        let served =
            watch::until_served(slice_api.clone(), "resource.k8s.io/v1", DRA_PROBE_INTERVAL)
                .boxed()
                .shared();
        let slices = {
            let api = slice_api.clone();
            futures::stream::once(served.clone())
                .flat_map(move |_| watch::live(api.clone()))
                .boxed()
        };
        let claims = {
            let api = claim_api.clone();
            futures::stream::once(served)
                .flat_map(move |_| watch::live(api.clone()))
                .boxed()
        };
        Self {
            slices,
            claims,
            slice_api: Some(slice_api),
            claim_api: Some(claim_api),
        }
    }
}
