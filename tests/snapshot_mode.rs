//! Offline snapshot mode end to end: the real binary serving a `kubectl get -o json` List,
//! ready at once, with the cache counts and decode errors the fixture implies.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::fixtures::{node, nvidia_node, nvidia_pod, pod};
use support::process::{Launch, ServerProcess};

/// Value of one sample in an exposition, by exact series text (`name{labels}`).
fn sample(exposition: &str, series: &str) -> Option<f64> {
    exposition
        .lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

fn list(items: Vec<Value>) -> String {
    json!({"apiVersion": "v1", "kind": "List", "items": items}).to_string()
}

fn to_value<T: serde::Serialize>(object: T) -> Value {
    serde_json::to_value(object).unwrap()
}

fn start_with_snapshot(text: &str) -> ServerProcess {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cluster.json");
    std::fs::write(&path, text).unwrap();
    let path_arg = path.to_string_lossy().into_owned();
    let server = ServerProcess::start(Launch {
        args: &["--snapshot", &path_arg],
        ..Launch::default()
    });
    // The file is read at start; the directory may go once the server is ready.
    assert!(
        server.wait_live(Duration::from_secs(10)),
        "{}",
        server.log()
    );
    let ready = support::process::wait_for(Duration::from_secs(10), || {
        server.get("/readyz").ok().filter(|r| r.status == 200)
    });
    assert!(ready.is_some(), "not ready:\n{}", server.log());
    drop(dir);
    server
}

#[test]
fn hand_built_snapshot_gives_the_expected_counts_and_errors() {
    let two_vendors = node(
        "mixed",
        json!({"gpu": "on", "dcu": "on"}),
        json!({
            "hami.io/node-nvidia-register": "GPU-m0,10,15360,100,NVIDIA-Tesla T4,0,true:",
            "hami.io/node-dcu-register": "DCU-0,4,65520,100,DCU,0,true,0,hami-core:DCU-1,4,65520,100,DCU,0,true,1,hami-core:"
        }),
    );
    let malformed = node(
        "broken",
        json!({"gpu": "on"}),
        json!({"hami.io/node-nvidia-register": "[{\"id\": \"GPU-x\", \"count\": "}),
    );
    let two_containers: Value = {
        let mut p = to_value(nvidia_pod(
            "ml",
            "sidecar",
            "gpu-a",
            &[("GPU-gpu-a-1", 1024, 10)],
        ));
        p["spec"]["containers"]
            .as_array_mut()
            .unwrap()
            .push(json!({"name": "logger", "image": "fluent-bit"}));
        p["metadata"]["annotations"]["hami.io/vgpu-devices-allocated"] =
            json!("GPU-gpu-a-1,NVIDIA,1024,10:;;");
        p
    };
    let items = vec![
        to_value(nvidia_node("gpu-a", 2)),
        to_value(two_vendors),
        to_value(malformed),
        to_value(node("cpu", json!({}), json!({}))),
        to_value(nvidia_pod(
            "ml",
            "train",
            "gpu-a",
            &[("GPU-gpu-a-0", 4096, 30)],
        )),
        to_value(pod(
            "hygon",
            "dcu-job",
            "mixed",
            json!({"hami.io/vgpu-node": "mixed", "hami.io/dcu-devices-allocated": "DCU-1,DCU,2000,60:;"}),
            "Running",
        )),
        two_containers,
        to_value(pod(
            "ml",
            "done",
            "gpu-a",
            json!({"hami.io/vgpu-node": "gpu-a", "hami.io/vgpu-devices-allocated": "GPU-gpu-a-0,NVIDIA,1,1:;"}),
            "Succeeded",
        )),
        to_value(pod("default", "web", "cpu", json!({}), "Running")),
    ];
    let server = start_with_snapshot(&list(items));
    let text = server.get("/metrics").unwrap().text();
    let objects = |resource: &str| {
        sample(
            &text,
            &format!("hami_webui_cache_objects{{resource=\"{resource}\"}}"),
        )
    };
    // gpu-a, mixed and broken are selected; cpu is not.
    assert_eq!(objects("nodes"), Some(3.0), "{text}");
    // 2 (gpu-a) + 1 NVIDIA + 2 DCU (mixed) + 0 (broken annotation).
    assert_eq!(objects("devices"), Some(5.0), "{text}");
    // train, dcu-job, sidecar; not the Succeeded pod nor the pod HAMi did not place.
    assert_eq!(objects("pods"), Some(3.0), "{text}");
    // sidecar's logger has no allocation.
    assert_eq!(objects("containers"), Some(3.0), "{text}");
    let errors: f64 = text
        .lines()
        .filter(|l| {
            l.starts_with("hami_webui_decode_errors_total{") && l.contains("vendor=\"NVIDIA\"")
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum();
    assert_eq!(errors, 1.0, "{text}");
}

#[test]
fn demo_cluster_is_served_and_ready() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/examples/demo-cluster.json"
    ))
    .unwrap();
    let server = start_with_snapshot(&text);
    let metrics = server.get("/metrics").unwrap().text();
    let nodes =
        sample(&metrics, "hami_webui_cache_objects{resource=\"nodes\"}").unwrap_or_default();
    let pods = sample(&metrics, "hami_webui_cache_objects{resource=\"pods\"}").unwrap_or_default();
    assert!(nodes >= 10.0 && pods >= 30.0, "{metrics}");
    let log = server.log();
    assert!(log.contains("no Kubernetes contact"), "{log}");
    assert!(
        !log.contains("not reachable") && !log.contains("watch lost"),
        "{log}"
    );
    // The file's HAMi-DRA slice and claims: two DRA cards, one share each.
    let cards = support::process::request(
        server.port,
        "POST",
        "/v1/gpus",
        &[("Content-Type", "application/json")],
        b"{}",
    )
    .unwrap()
    .json();
    let dra: Vec<(i64, i64)> = cards["list"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["draDriver"] == "hami-core-gpu.project-hami.io")
        .map(|c| {
            (
                c["vgpuUsed"].as_i64().unwrap(),
                c["memoryUsed"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(dra, [(1, 16384), (1, 8192)], "{cards}");
}

#[test]
fn malformed_snapshot_exits_2_naming_file_and_item() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(
        &path,
        list(vec![
            json!({"kind": "Node", "metadata": {"name": "ok"}}),
            json!({"kind": "Pod", "metadata": {"name": "p"}, "spec": {"containers": 5}}),
        ]),
    )
    .unwrap();
    let conf = dir.path().join("config.yaml");
    std::fs::write(&conf, "").unwrap();
    let output = std::process::Command::new(support::process::BINARY)
        .arg("--conf")
        .arg(&conf)
        .arg("--snapshot")
        .arg(&path)
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("bad.json") && stderr.contains("items[1]"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
}
