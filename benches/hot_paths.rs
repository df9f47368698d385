//! Criterion benches of the pure hot paths at 150, 1,000 and 10,000 GPUs (synthetic NVIDIA
//! clusters, 8 GPUs per node, 4 allocations per GPU): decoding nodes and pods, usage
//! computation, the list replies (built and serialized, as a handler does) and one refresh
//! cycle's `/metrics` state (build + render, and build + gzip as the refresher publishes it,
//! after an unchanged cycle and from cold) from query results shaped like the upstream's.
//!
//! ```sh
//! cargo bench --bench hot_paths            # all sizes
//! cargo bench --bench hot_paths -- 150     # one size (criterion filter)
//! # One test-mode run of one bench at one size, e.g. for instruction counts:
//! HOT_PATHS_GPUS=1000 valgrind --tool=callgrind --collect-atstart=no \
//!     --toggle-collect='*publish_once*' target/release/deps/hot_paths-<hash> exposition/publish
//! ```

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use hami_webui_server::cluster::inventory::{build_inventory, node_entry, IdentityMap};
use hami_webui_server::cluster::snapshot::{compute_usage, ClusterSnapshot};
use hami_webui_server::cluster::tracked_pod::pod_record;
use hami_webui_server::config::NodeSelectors;
use hami_webui_server::device::DeviceContext;
use hami_webui_server::device::Vendor;
use hami_webui_server::metrics::publication::{expose, Exposition};
use hami_webui_server::metrics::{build_cycle, CycleQuery, QueryResults, VectorAnswer};
use hami_webui_server::query_client::Sample;
use hami_webui_server::reply::{cards, containers, nodes};
use hami_webui_server::synthetic::{ClusterShape, DEVICES_PER_NODE};
use jiff::tz::TimeZone;
use k8s_openapi::api::core::v1::{Node, Pod};

/// 150, 1,000 and 10,000 GPUs (rounded up to whole 8-GPU nodes).
const SIZES: [usize; 3] = [150, 1_000, 10_000];

/// One cluster, typed as the caches hold it.
struct Cluster {
    shape: ClusterShape,
    nodes: Vec<Node>,
    pods: Vec<Pod>,
    snapshot: ClusterSnapshot,
}

fn cluster(gpus: usize) -> Cluster {
    let shape = ClusterShape::gpus(gpus.div_ceil(DEVICES_PER_NODE));
    let mut nodes = Vec::new();
    let mut pods = Vec::new();
    for object in shape.objects() {
        if object["kind"] == "Node" {
            nodes.push(serde_json::from_value(object).expect("node"));
        } else {
            pods.push(serde_json::from_value(object).expect("pod"));
        }
    }
    let selectors = NodeSelectors::default();
    let entries: Vec<_> = nodes
        .iter()
        .map(|n| node_entry(n, &selectors, &DeviceContext::default()).0)
        .collect();
    let inventory = Arc::new(build_inventory(
        entries.iter(),
        &IdentityMap::new(),
        Default::default(),
    ));
    let records: Vec<_> = pods
        .iter()
        .filter_map(|p| {
            pod_record(p, jiff::Timestamp::UNIX_EPOCH, &DeviceContext::default())
                .0
                .map(Arc::new)
        })
        .collect();
    let snapshot = ClusterSnapshot::build(1, inventory, records.to_vec(), Vec::new());
    assert_eq!(
        snapshot.inventory.device_count(),
        shape.nodes * DEVICES_PER_NODE
    );
    Cluster {
        shape,
        nodes,
        pods,
        snapshot,
    }
}

fn sample(labels: &[(&str, &str)], value: f64) -> Sample {
    Sample {
        metric: labels.iter().copied().collect(),
        timestamp: 0.0,
        value,
    }
}

/// Parses `name{k="v",...} value` lines of the synthetic exposition.
fn series(text: &str) -> Vec<(String, HashMap<String, String>, f64)> {
    text.lines()
        .filter_map(|line| {
            let (head, value) = line.rsplit_once(' ')?;
            let (name, labels) = head.split_once('{')?;
            let labels = labels
                .strip_suffix('}')?
                .split("\",")
                .filter_map(|p| {
                    let (k, v) = p.split_once("=\"")?;
                    Some((k.to_string(), v.trim_end_matches('"').to_string()))
                })
                .collect();
            Some((name.to_string(), labels, value.parse().ok()?))
        })
        .collect()
}

/// What the upstream answers to the NVIDIA queries of a cycle for this cluster.
fn query_results(shape: &ClusterShape) -> QueryResults {
    let mut device = Vec::new();
    let mut info = Vec::new();
    let mut core = Vec::new();
    let mut memory = Vec::new();
    for (name, labels, value) in series(&shape.exposition()) {
        let l = |k: &str| labels.get(k).map(String::as_str).unwrap_or_default();
        if name.starts_with("DCGM_") {
            device.push(sample(&[("__name__", &name), ("UUID", l("UUID"))], value));
            if name == "DCGM_FI_DEV_POWER_USAGE" {
                info.push(sample(
                    &[
                        ("UUID", l("UUID")),
                        ("DCGM_FI_DRIVER_VERSION", l("DCGM_FI_DRIVER_VERSION")),
                        ("device", l("device")),
                    ],
                    1.0,
                ));
            }
        } else {
            let key = [
                ("device_uuid", l("device_uuid")),
                ("namespace", l("namespace")),
                ("pod", l("pod")),
                ("container", l("container")),
            ];
            match name.as_str() {
                "hami_container_device_utilization_ratio" => core.push(sample(&key, value)),
                "hami_vgpu_memory_used_bytes" => memory.push(sample(&key, value)),
                _ => {}
            }
        }
    }
    QueryResults::from([
        (
            CycleQuery::Device(Vendor::Nvidia),
            Ok(VectorAnswer::from(device)),
        ),
        (
            CycleQuery::Info(Vendor::Nvidia),
            Ok(VectorAnswer::from(info)),
        ),
        (
            CycleQuery::TaskCore(Vendor::Nvidia),
            Ok(VectorAnswer::from(core)),
        ),
        (
            CycleQuery::TaskMemory(Vendor::Nvidia),
            Ok(VectorAnswer::from(memory)),
        ),
    ])
}

/// What the refresher does off the actor for one cycle: build the state, then compress its
/// text (families unchanged since `previous` keep their compressed bytes).
#[inline(never)]
fn publish_once(
    snapshot: &ClusterSnapshot,
    results: &QueryResults,
    previous: &Exposition,
) -> usize {
    let next = build_cycle(snapshot, results, &previous.state, 3);
    let published = expose(Arc::new(next), previous);
    published.text_len + published.gzip.len()
}

fn hot_paths(c: &mut Criterion) {
    let zone = TimeZone::UTC;
    // Test mode (`cargo test`/`cargo nextest run --all-targets` run each bench once, without
    // `--bench`): the smallest cluster is enough to show the benches still work.
    let measuring = std::env::args().any(|a| a == "--bench");
    let sizes = if measuring { &SIZES[..] } else { &SIZES[..1] };
    // `HOT_PATHS_GPUS=1000` picks one size, e.g. for a single test-mode run under callgrind.
    let chosen: Option<usize> = std::env::var("HOT_PATHS_GPUS")
        .ok()
        .and_then(|v| v.parse().ok());
    let sizes: Vec<usize> = match chosen {
        Some(gpus) => vec![gpus],
        None => sizes.to_vec(),
    };
    for gpus in sizes {
        let cluster = cluster(gpus);
        let selectors = NodeSelectors::default();

        let mut group = c.benchmark_group(format!("{gpus}_gpus"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(2));

        group.bench_function(BenchmarkId::new("decode", "nodes+pods"), |b| {
            b.iter(|| {
                let entries: Vec<_> = cluster
                    .nodes
                    .iter()
                    .map(|n| node_entry(n, &selectors, &DeviceContext::default()).0)
                    .collect();
                let records: Vec<_> = cluster
                    .pods
                    .iter()
                    .filter_map(|p| {
                        pod_record(p, jiff::Timestamp::UNIX_EPOCH, &DeviceContext::default()).0
                    })
                    .collect();
                black_box((entries, records))
            })
        });
        group.bench_function(BenchmarkId::new("snapshot", "inventory+usage"), |b| {
            let entries: Vec<_> = cluster
                .nodes
                .iter()
                .map(|n| node_entry(n, &selectors, &DeviceContext::default()).0)
                .collect();
            b.iter(|| {
                let inventory = Arc::new(build_inventory(
                    entries.iter(),
                    &IdentityMap::new(),
                    Default::default(),
                ));
                black_box(ClusterSnapshot::build(
                    2,
                    inventory,
                    cluster.snapshot.pods.to_vec(),
                    Vec::new(),
                ))
            })
        });
        group.bench_function(BenchmarkId::new("usage", "compute_usage"), |b| {
            b.iter(|| {
                black_box(compute_usage(
                    &cluster.snapshot.inventory,
                    &cluster.snapshot.pods,
                ))
            })
        });
        group.bench_function(BenchmarkId::new("reply", "gpus"), |b| {
            b.iter(|| {
                let reply =
                    cards::gpu_list(&cluster.snapshot, &Default::default(), &Default::default());
                black_box(serde_json::to_vec(&reply).expect("json"))
            })
        });
        group.bench_function(BenchmarkId::new("reply", "nodes"), |b| {
            b.iter(|| {
                let reply = nodes::node_list(
                    &cluster.snapshot,
                    &Default::default(),
                    &Default::default(),
                    &zone,
                );
                black_box(serde_json::to_vec(&reply).expect("json"))
            })
        });
        group.bench_function(BenchmarkId::new("reply", "containers"), |b| {
            b.iter(|| {
                let reply =
                    containers::container_list(&cluster.snapshot, &Default::default(), &zone);
                black_box(serde_json::to_vec(&reply).expect("json"))
            })
        });
        let results = query_results(&cluster.shape);
        let state = build_cycle(&cluster.snapshot, &results, &Default::default(), 3);
        assert!(state.series_count() > 0);
        group.bench_function(BenchmarkId::new("exposition", "build_cycle+render"), |b| {
            b.iter(|| {
                let next = build_cycle(&cluster.snapshot, &results, &state, 3);
                black_box(next.render())
            })
        });
        // A cycle after an unchanged one (label sets and compressed families reused), and
        // a first cycle (everything rendered and compressed: the cost when every value moves).
        let published = expose(Arc::new(state.clone()), &Exposition::default());
        group.bench_function(BenchmarkId::new("exposition", "publish"), |b| {
            b.iter(|| black_box(publish_once(&cluster.snapshot, &results, &published)))
        });
        let cold = Exposition::default();
        group.bench_function(BenchmarkId::new("exposition", "publish_cold"), |b| {
            b.iter(|| black_box(publish_once(&cluster.snapshot, &results, &cold)))
        });
        group.finish();
    }
}

criterion_group!(benches, hot_paths);
criterion_main!(benches);
