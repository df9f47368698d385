//! Entry point: flags, configuration, logging, then [`hami_webui_server::server::run`].
//!
//! Exit status: 0 after a graceful stop, 2 for unusable configuration or snapshot file (one
//! line on stderr naming the key or item), 1 when the server could not start.

use std::process::ExitCode;

use hami_webui_server::cli::Cli;
use hami_webui_server::config::Config;
use hami_webui_server::server::ClusterSource;
use hami_webui_server::telemetry::{self, REVISION, VERSION};

fn main() -> ExitCode {
    let cli = Cli::parse_args();
    let config = match Config::load(&cli.conf) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("config: {error}");
            return ExitCode::from(2);
        }
    };
    let source = match &cli.snapshot {
        None => ClusterSource::Kubernetes,
        Some(path) => match hami_webui_server::snapshot_file::load(path) {
            Ok(export) => ClusterSource::Snapshot(export),
            Err(error) => {
                eprintln!("{error}");
                return ExitCode::from(2);
            }
        },
    };
    telemetry::init_logging(cli.log_format);
    tracing::info!(version = VERSION, revision = REVISION, conf = %cli.conf.display(), "starting");
    if !config.unknown_keys.is_empty() {
        tracing::warn!(keys = ?config.unknown_keys, "ignoring unknown configuration keys");
    }
    if config.server.grpc_configured {
        tracing::info!("server.grpc is configured but gRPC is not served (only HTTP)");
    }
    if let (Some(path), ClusterSource::Snapshot(export)) = (&cli.snapshot, &source) {
        tracing::info!(
            file = %path.display(), nodes = export.nodes.len(), pods = export.pods.len(),
            "serving a cluster snapshot; no Kubernetes contact"
        );
    }
    match actix_rt::System::new().block_on(hami_webui_server::server::run(config, source)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server failed");
            eprintln!("{error}");
            ExitCode::from(1)
        }
    }
}
