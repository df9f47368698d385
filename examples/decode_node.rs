//! Decodes one Node (JSON, as `kubectl get node NAME -o json` prints it) from standard input
//! and prints the devices every vendor's decoder finds on it, with any decode errors — the
//! quickest way to see how this server reads a node's HAMi annotations.
//!
//! ```sh
//! kubectl get node gpu-node-1 -o json | cargo run --example decode_node
//! ```

use std::io::Read;

use hami_webui_server::device::{DeviceContext, Vendor};
use hami_webui_server::vendor::decode_node_devices;
use k8s_openapi::api::core::v1::Node;

fn main() {
    let mut text = String::new();
    if let Err(e) = std::io::stdin().read_to_string(&mut text) {
        eprintln!("cannot read standard input: {e}");
        std::process::exit(2);
    }
    let node: Node = match serde_json::from_str(&text) {
        Ok(node) => node,
        Err(e) => {
            eprintln!("not a Node: {e}");
            std::process::exit(2);
        }
    };
    for vendor in Vendor::ALL {
        match decode_node_devices(vendor, &node, &DeviceContext::default()) {
            Ok(devices) if devices.is_empty() => {}
            Ok(devices) => {
                for d in devices {
                    println!(
                        "{:<10} id={} alias={} type={} count={} devmem={}MiB devcore={} health={}",
                        vendor.provider(),
                        d.id,
                        d.alias_id,
                        d.device_type,
                        d.count,
                        d.devmem,
                        d.devcore,
                        d.health
                    );
                }
            }
            Err(e) => println!("{:<10} error ({}): {e}", vendor.provider(), e.kind()),
        }
    }
}
