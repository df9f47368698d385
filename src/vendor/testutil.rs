//! Builders for the Kubernetes objects decoder tests feed in, so each test states only the
//! annotations and capacities it is about.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Node, NodeStatus, Pod, PodSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

use super::PRIORITY_RESOURCE;

fn string_map(pairs: &[(&str, &str)]) -> Option<BTreeMap<String, String>> {
    (!pairs.is_empty()).then(|| {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    })
}

/// A node named `name` (UID `uid-<name>`) with the given annotations and capacities.
pub(crate) fn node(name: &str, annotations: &[(&str, &str)], capacity: &[(&str, &str)]) -> Node {
    Node {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            uid: Some(format!("uid-{name}")),
            annotations: string_map(annotations),
            ..ObjectMeta::default()
        },
        status: Some(NodeStatus {
            capacity: (!capacity.is_empty()).then(|| {
                capacity
                    .iter()
                    .map(|(k, v)| (k.to_string(), Quantity(v.to_string())))
                    .collect()
            }),
            ..NodeStatus::default()
        }),
        ..Node::default()
    }
}

/// A node carrying a single annotation; the common case in vendor tests.
pub(crate) fn annotated_node(key: &str, value: &str) -> Node {
    node("node-a", &[(key, value)], &[])
}

fn container(name: &str) -> Container {
    Container {
        name: name.to_string(),
        image: Some(format!("img-{name}")),
        ..Container::default()
    }
}

/// A pod with the given annotations, init containers and regular containers (image
/// `img-<name>`).
pub(crate) fn pod(annotations: &[(&str, &str)], init: &[&str], containers: &[&str]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some("pod-a".into()),
            namespace: Some("default".into()),
            uid: Some("pod-uid".into()),
            annotations: string_map(annotations),
            ..ObjectMeta::default()
        },
        spec: Some(PodSpec {
            init_containers: (!init.is_empty())
                .then(|| init.iter().map(|n| container(n)).collect()),
            containers: containers.iter().map(|n| container(n)).collect(),
            ..PodSpec::default()
        }),
        ..Pod::default()
    }
}

/// Sets (or clears) the `nvidia.com/priority` limit and request of container `index`.
pub(crate) fn with_priority(
    pod: &mut Pod,
    index: usize,
    limit: Option<&str>,
    request: Option<&str>,
) {
    let quantity = |v: Option<&str>| {
        v.map(|v| BTreeMap::from([(PRIORITY_RESOURCE.to_string(), Quantity(v.to_string()))]))
    };
    if let Some(c) = pod.spec.as_mut().and_then(|s| s.containers.get_mut(index)) {
        c.resources = Some(ResourceRequirements {
            limits: quantity(limit),
            requests: quantity(request),
            ..ResourceRequirements::default()
        });
    }
}
