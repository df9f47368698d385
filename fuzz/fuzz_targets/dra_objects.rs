//! HAMi-DRA's decoders (`vendor::dra::decode_slice`, `decode_claim`) and the join of claims
//! to pods and devices (`cluster::claims::snapshot_with_claims`) on every ResourceSlice,
//! ResourceClaim, Node and Pod of a List read from the input, as a cluster's watchers would
//! feed them. Malformed objects are reported, never a panic.
#![no_main]

use std::sync::Arc;

use hami_webui_server::cluster::claims::snapshot_with_claims;
use hami_webui_server::cluster::inventory::{build_inventory_with_dra, node_entry};
use hami_webui_server::cluster::snapshot_file;
use hami_webui_server::cluster::tracked_pod::pod_record;
use hami_webui_server::config::NodeSelectors;
use hami_webui_server::device::DeviceContext;
use hami_webui_server::vendor::dra::{decode_claim, decode_slice};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(export) = snapshot_file::parse("fuzz.json", text) else {
        return;
    };
    let context = DeviceContext::default();
    let entries: Vec<_> = export
        .nodes
        .iter()
        .map(|n| node_entry(n, &NodeSelectors::default(), &context).0)
        .collect();
    let slices: Vec<_> = export
        .resource_slices
        .iter()
        .filter_map(|s| decode_slice(s).0)
        .collect();
    let slice_refs: Vec<_> = slices.iter().collect();
    let (inventory, _) = build_inventory_with_dra(
        entries.iter(),
        &slice_refs,
        |_| None,
        &Default::default(),
        Arc::new(DeviceContext::default()),
    );
    let claims: Vec<_> = export
        .resource_claims
        .iter()
        .filter_map(|c| decode_claim(c).0.map(Arc::new))
        .collect();
    let now = k8s_openapi::jiff::Timestamp::UNIX_EPOCH;
    let pods: Vec<_> = export
        .pods
        .iter()
        .filter_map(|p| pod_record(p, now, &context).0.map(Arc::new))
        .collect();
    let (snapshot, _) = snapshot_with_claims(1, Arc::new(inventory), pods, Vec::new(), &claims);
    assert_eq!(snapshot.usage.len(), snapshot.inventory.device_count());
});

