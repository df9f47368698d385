//! One shared copy of the values that repeat across tracked pods ([`PodInterner`]).
//!
//! At 10,000 GPUs the pod cache keeps some 26,000 pods, and most of what each keeps repeats
//! across them: a running container's status evidence reads like every other's, the pods of
//! a workload carry the same tolerations and affinity, and resources are asked for under the
//! same few names and quantities. Kept per pod, those copies were some 40 MB of the cache
//! (a heap profile at 10,000 GPUs: tolerations as JSON 13 MB, status evidence twice per
//! container 20 MB). The cache passes every freshly decoded pod through [`PodInterner::share`],
//! which swaps each such value for the copy it already holds.
//!
//! Values no pod uses any more are dropped by [`PodInterner::prune`], which runs by itself
//! once the table has grown by its own size since the last pass, so the table stays within
//! twice what the tracked pods use.

use std::collections::HashSet;
use std::hash::Hash;
use std::sync::Arc;

use crate::cluster::scheduling::StatusDetail;
use crate::cluster::tracked_pod::TrackedPod;

/// Inserts between two prunes at least, so a small cluster does not prune on every pod.
const MIN_PRUNE_INTERVAL: usize = 4096;

/// The shared copies of the repeating values of tracked pods.
#[derive(Debug, Default)]
pub struct PodInterner {
    texts: HashSet<Arc<str>>,
    details: HashSet<Arc<StatusDetail>>,
    inserted_since_prune: usize,
    /// Values held right after the last prune.
    kept_at_prune: usize,
}

impl PodInterner {
    /// Replaces the repeating values of a freshly decoded pod with the shared copies. The
    /// pod's own `Arc`s are still unshared here (it was just decoded); a record already
    /// shared elsewhere is left as it is.
    pub fn share(&mut self, tracked: &mut TrackedPod) {
        if let Some(record) = tracked.record.as_mut().and_then(Arc::get_mut) {
            for container in &mut record.containers {
                self.detail(&mut container.status_detail);
            }
        }
        if let Some(view) = tracked.scheduling.as_mut().and_then(Arc::get_mut) {
            for (name, value) in &mut view.constraints {
                self.text(name);
                self.text(value);
            }
            for request in &mut view.requests {
                self.detail(&mut request.status_detail);
                for resource in &mut request.resources {
                    self.text(&mut resource.name);
                    self.text(&mut resource.value);
                }
            }
        }
        if self.inserted_since_prune > MIN_PRUNE_INTERVAL.max(self.kept_at_prune) {
            self.prune();
        }
    }

    /// Drops the values only this table still holds.
    pub fn prune(&mut self) {
        self.texts.retain(|t| Arc::strong_count(t) > 1);
        self.details.retain(|d| Arc::strong_count(d) > 1);
        self.inserted_since_prune = 0;
        self.kept_at_prune = self.len();
    }

    /// Distinct values held.
    pub fn len(&self) -> usize {
        self.texts.len() + self.details.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn text(&mut self, value: &mut Arc<str>) {
        intern(&mut self.texts, value, &mut self.inserted_since_prune);
    }

    fn detail(&mut self, value: &mut Arc<StatusDetail>) {
        intern(&mut self.details, value, &mut self.inserted_since_prune);
    }
}

fn intern<T: Hash + Eq + ?Sized>(
    table: &mut HashSet<Arc<T>>,
    value: &mut Arc<T>,
    inserted: &mut usize,
) {
    match table.get(value) {
        Some(shared) => *value = Arc::clone(shared),
        None => {
            table.insert(Arc::clone(value));
            *inserted += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::scheduling::SchedulingResources;
    use crate::cluster::tracked_pod::track_pod;
    use crate::device::DeviceContext;
    use k8s_openapi::api::core::v1::Pod;
    use k8s_openapi::jiff::Timestamp;
    use serde_json::json;

    fn tracked(name: &str, toleration: &str) -> TrackedPod {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "ns", "uid": name,
                "annotations": {"hami.io/vgpu-node": "n",
                    "hami.io/vgpu-devices-allocated": "GPU-a,NVIDIA,10,1:;"}},
            "spec": {"nodeName": "n",
                "tolerations": [{"key": toleration, "operator": "Exists"}],
                "containers": [{"name": "main", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
            "status": {"phase": "Running",
                "containerStatuses": [{"name": "main", "ready": true, "restartCount": 0,
                    "image": "i", "imageID": "", "state": {"running": {}}}]}
        }))
        .unwrap();
        let resources = SchedulingResources::default();
        track_pod(
            &pod,
            Timestamp::UNIX_EPOCH,
            &resources,
            &DeviceContext::default(),
        )
        .0
        .unwrap()
    }

    fn toleration(t: &TrackedPod) -> &Arc<str> {
        let view = t.scheduling.as_ref().unwrap();
        &view
            .constraints
            .iter()
            .find(|(n, _)| &**n == "tolerations")
            .unwrap()
            .1
    }

    #[test]
    fn equal_values_of_different_pods_become_one_copy_and_others_stay_apart() {
        let mut interner = PodInterner::default();
        let mut a = tracked("a", "gpu");
        let mut b = tracked("b", "gpu");
        let mut c = tracked("c", "other");
        for t in [&mut a, &mut b, &mut c] {
            interner.share(t);
        }
        assert!(Arc::ptr_eq(toleration(&a), toleration(&b)));
        assert!(!Arc::ptr_eq(toleration(&a), toleration(&c)));
        assert_eq!(
            &**toleration(&c),
            r#"[{"key":"other","operator":"Exists"}]"#
        );
        let detail =
            |t: &TrackedPod| Arc::clone(&t.record.as_ref().unwrap().containers[0].status_detail);
        let request =
            |t: &TrackedPod| Arc::clone(&t.scheduling.as_ref().unwrap().requests[0].status_detail);
        // The record and the scheduling view of one container, and the same container state
        // of another pod, hold one copy.
        assert!(Arc::ptr_eq(&detail(&a), &request(&a)));
        assert!(Arc::ptr_eq(&detail(&a), &detail(&c)));
        assert_eq!(detail(&a).container_state, "Running");
    }

    #[test]
    fn pruning_drops_values_no_pod_holds_and_keeps_the_rest() {
        let mut interner = PodInterner::default();
        let mut kept = tracked("a", "kept");
        interner.share(&mut kept);
        let mut gone = tracked("b", "gone");
        interner.share(&mut gone);
        let before = interner.len();
        drop(gone);
        interner.prune();
        assert_eq!(
            interner.len(),
            before - 1,
            "only the dropped toleration goes"
        );
        let mut again = tracked("c", "kept");
        interner.share(&mut again);
        assert!(Arc::ptr_eq(toleration(&kept), toleration(&again)));
    }

    #[test]
    fn the_table_prunes_itself_once_it_has_doubled() {
        let mut interner = PodInterner::default();
        for i in 0..3 * MIN_PRUNE_INTERVAL {
            let mut t = tracked("p", &format!("t{i}"));
            interner.share(&mut t);
        }
        // Every pod was dropped at once: what is left are the values inserted since the
        // last prune and the ones still shared.
        assert!(
            interner.len() <= 2 * MIN_PRUNE_INTERVAL + 8,
            "{}",
            interner.len()
        );
    }
}
