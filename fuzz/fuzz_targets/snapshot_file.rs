//! The snapshot file reader (`snapshot_file::parse`, JSON or YAML `kubectl get -o` output)
//! on arbitrary text, then the node and pod decoders on every object it accepts, as
//! `--snapshot` does at start. A bad file is a `SnapshotFileError`, never a panic.
#![no_main]

use hami_webui_server::device::{DeviceContext, Vendor};
use hami_webui_server::cluster::snapshot_file;
use hami_webui_server::vendor::{decode_node_devices, decode_pod};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        // `snapshot_file::load` reads the file as UTF-8 and refuses anything else.
        return;
    };
    let Ok(export) = snapshot_file::parse("fuzz.json", text) else {
        return;
    };
    for node in &export.nodes {
        for vendor in Vendor::ALL {
            let _ = decode_node_devices(vendor, node, &DeviceContext::default());
        }
    }
    for pod in &export.pods {
        let _ = decode_pod(pod, &DeviceContext::default());
    }
});
