//! Writes a synthetic HAMi cluster: a `kubectl get -o json` List for `--snapshot` and the
//! matching exporter exposition (dcgm-exporter, HAMi vGPU monitor; DCU and Ascend exporters
//! with `--mix`) for a Prometheus or VictoriaMetrics to scrape or import.
//!
//! ```sh
//! cargo run --example synthetic_cluster -- --nodes 1250 --out /tmp/cluster   # 10,000 GPUs
//! cargo run --release -- --snapshot /tmp/cluster/cluster.json
//! ```

use std::path::PathBuf;

use clap::Parser;
use hami_webui_server::synthetic::{ClusterShape, DEVICES_PER_NODE};

#[derive(Parser)]
struct Args {
    /// GPU nodes (8 devices each).
    #[arg(long, default_value_t = 19)]
    nodes: usize,
    /// Average allocations per device.
    #[arg(long, default_value_t = 4)]
    allocations_per_device: usize,
    /// Mix in Hygon DCU and Ascend nodes.
    #[arg(long)]
    mix: bool,
    /// Output directory (created): cluster.json and exporter.prom.
    #[arg(long, default_value = "target/synthetic")]
    out: PathBuf,
}

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let shape = ClusterShape {
        nodes: args.nodes,
        allocations_per_device: args.allocations_per_device,
        vendor_mix: args.mix,
    };
    std::fs::create_dir_all(&args.out)?;
    std::fs::write(args.out.join("cluster.json"), shape.list().to_string())?;
    std::fs::write(args.out.join("exporter.prom"), shape.exposition())?;
    println!(
        "{} nodes, {} devices, {} pods written to {}",
        shape.nodes,
        shape.nodes * DEVICES_PER_NODE,
        shape.pod_layout().len(),
        args.out.display()
    );
    Ok(())
}
