//! Readable input formats shared by the fuzz targets in `fuzz_targets/`: a fuzz input is
//! text turned into the Kubernetes object or HTTP request a decoder receives.
//!
//! Objects are written as lines so that seeds stay readable and libFuzzer's dictionary
//! (`fuzz/annotations.dict`) can splice real annotation names in: `key=value` sets an
//! annotation, and a few reserved prefixes (never valid annotation keys) set the other
//! fields the decoders read. A line without `=` is ignored. Values cannot contain a newline;
//! every decoder under test treats values as opaque text up to its own separators, so no
//! path is out of reach for that.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, NodeStatus, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// Containers a pod input may ask for; enough for every alignment rule, small enough that
/// an input cannot make the target allocate for long.
pub const MAX_CONTAINERS: usize = 16;

/// `(key, value)` of every line of `text` that has a `=`.
fn pairs(text: &str) -> impl Iterator<Item = (&str, &str)> {
    text.lines().filter_map(|line| line.split_once('='))
}

/// A node from lines: `key=value` an annotation, `capacity:key=value` an entry of
/// `status.capacity`, `.name=` and `.uid=` its metadata (default `fuzz-node`, `fuzz-uid`).
pub fn node_from_text(text: &str) -> Node {
    let mut node = Node::default();
    node.metadata.name = Some("fuzz-node".into());
    node.metadata.uid = Some("fuzz-uid".into());
    let mut annotations = BTreeMap::new();
    let mut capacity = BTreeMap::new();
    for (key, value) in pairs(text) {
        if let Some(resource) = key.strip_prefix("capacity:") {
            capacity.insert(resource.to_string(), Quantity(value.to_string()));
        } else if key == ".name" {
            node.metadata.name = Some(value.to_string());
        } else if key == ".uid" {
            node.metadata.uid = Some(value.to_string());
        } else {
            annotations.insert(key.to_string(), value.to_string());
        }
    }
    node.metadata.annotations = Some(annotations);
    node.status = Some(NodeStatus {
        capacity: Some(capacity),
        ..NodeStatus::default()
    });
    node
}

/// A pod from lines: `key=value` an annotation, `.containers=N` and `.init=N` how many
/// regular and init containers it has (default 1 and 0, at most [`MAX_CONTAINERS`]),
/// `.priority=Q` the `nvidia.com/priority` limit of every container, `.node=` its
/// `spec.nodeName`.
pub fn pod_from_text(text: &str) -> Pod {
    let mut pod = Pod::default();
    pod.metadata.name = Some("fuzz-pod".into());
    pod.metadata.namespace = Some("default".into());
    pod.metadata.uid = Some("fuzz-pod-uid".into());
    let mut annotations = BTreeMap::new();
    let (mut regular, mut init) = (1usize, 0usize);
    let mut priority = None;
    let mut node_name = None;
    let count = |value: &str| {
        value
            .trim()
            .parse::<usize>()
            .unwrap_or(0)
            .min(MAX_CONTAINERS)
    };
    for (key, value) in pairs(text) {
        match key {
            ".containers" => regular = count(value),
            ".init" => init = count(value),
            ".priority" => priority = Some(value.to_string()),
            ".node" => node_name = Some(value.to_string()),
            _ => {
                annotations.insert(key.to_string(), value.to_string());
            }
        }
    }
    let container = |prefix: &str, i: usize| Container {
        name: format!("{prefix}{i}"),
        image: Some("cuda:12".into()),
        resources: priority.as_ref().map(|q| ResourceRequirements {
            limits: Some(BTreeMap::from([(
                "nvidia.com/priority".to_string(),
                Quantity(q.clone()),
            )])),
            ..ResourceRequirements::default()
        }),
        ..Container::default()
    };
    pod.metadata.annotations = Some(annotations);
    pod.spec = Some(PodSpec {
        node_name,
        containers: (0..regular).map(|i| container("main-", i)).collect(),
        init_containers: (init > 0).then(|| (0..init).map(|i| container("init-", i)).collect()),
        ..PodSpec::default()
    });
    pod
}

/// A request input: the query string up to the first newline, the body after it (raw
/// bytes, so invalid UTF-8 and broken JSON reach the body decoder too). Without a newline
/// the whole input is the body.
pub fn split_request(data: &[u8]) -> (String, &[u8]) {
    match data.iter().position(|&b| b == b'\n') {
        Some(end) => (
            String::from_utf8_lossy(&data[..end]).into_owned(),
            &data[end + 1..],
        ),
        None => (String::new(), data),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_lines_reach_annotations_capacity_and_metadata() {
        let node = node_from_text(
            "hami.io/node-nvidia-register=[{\"id\":\"GPU-0\"}]\ncapacity:enflame.com/gcu=8\n.name=n1\nignored",
        );
        assert_eq!(node.metadata.name.as_deref(), Some("n1"));
        let annotations = node.metadata.annotations.unwrap();
        assert_eq!(
            annotations["hami.io/node-nvidia-register"],
            "[{\"id\":\"GPU-0\"}]"
        );
        assert_eq!(annotations.len(), 1);
        let capacity = node.status.unwrap().capacity.unwrap();
        assert_eq!(capacity["enflame.com/gcu"].0, "8");
    }

    #[test]
    fn pod_lines_shape_containers() {
        let pod = pod_from_text(".containers=3\n.init=99\n.priority=1\nhami.io/vgpu-node=n1");
        let spec = pod.spec.unwrap();
        assert_eq!(spec.containers.len(), 3);
        assert_eq!(spec.init_containers.unwrap().len(), MAX_CONTAINERS);
        assert_eq!(pod.metadata.annotations.unwrap()["hami.io/vgpu-node"], "n1");
    }

    #[test]
    fn request_splits_at_the_first_newline() {
        assert_eq!(
            split_request(b"a=1\n{}\n"),
            ("a=1".to_string(), &b"{}\n"[..])
        );
        assert_eq!(split_request(b"{}"), (String::new(), &b"{}"[..]));
    }
}
