//! Every vendor's node decoder (`vendor::decode_node_devices`) on one node built from the
//! input (format: `hami_webui_server_fuzz::node_from_text`). A decoder may refuse the node
//! with a `DecodeError`; it must not panic, hang or allocate without bound.
#![no_main]

use hami_webui_server::device::{DeviceContext, Vendor};
use hami_webui_server::vendor::{decode_node_devices, MAX_DEVICES_PER_NODE};
use hami_webui_server_fuzz::node_from_text;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let node = node_from_text(&String::from_utf8_lossy(data));
    for vendor in Vendor::ALL {
        if let Ok(devices) = decode_node_devices(vendor, &node, &DeviceContext::default()) {
            assert!(
                devices.len() <= MAX_DEVICES_PER_NODE,
                "{vendor:?}: {} devices",
                devices.len()
            );
        }
    }
});
