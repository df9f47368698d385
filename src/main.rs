//! Entry point: flags, configuration, logging, the listeners, then
//! [`hami_webui_server::server::run`] until SIGTERM or SIGINT.
//!
//! Exit status: 0 after a graceful stop, 2 for unusable configuration or snapshot file (one
//! line on stderr naming the key or item), 1 when the server could not start.
//!
//! `--healthcheck` is a different program sharing the binary: it probes a running server's
//! `/health_check` and exits 0 or 1 before anything else is read or started.

use std::process::ExitCode;

use hami_webui_server::cli::Cli;
use hami_webui_server::cluster::ClusterSource;
use hami_webui_server::config::Config;
use hami_webui_server::http::public::healthcheck;
use hami_webui_server::server::{self, Listeners, ServeError};
use hami_webui_server::telemetry::{self, REVISION, VERSION};

fn main() -> ExitCode {
    hami_webui_server::memory::tune_allocator();
    let cli = Cli::parse_args();
    if cli.healthcheck {
        return probe(&cli);
    }
    let loaded = match Config::load(&cli.conf) {
        Ok(config) => config.with_web_flags(&cli.web_flags()),
        Err(error) => Err(error),
    };
    let config = match loaded {
        Ok(config) => config,
        Err(error) => {
            eprintln!("config: {error}");
            return ExitCode::from(2);
        }
    };
    let source = match &cli.snapshot {
        None => ClusterSource::Kubernetes,
        Some(path) => match hami_webui_server::cluster::snapshot_file::load(path) {
            Ok(objects) => ClusterSource::SnapshotFile(objects),
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
    if let (Some(path), ClusterSource::SnapshotFile(export)) = (&cli.snapshot, &source) {
        tracing::info!(
            file = %path.display(), nodes = export.counts.nodes, pods = export.counts.pods,
            "serving a cluster snapshot; no Kubernetes contact"
        );
    }
    let serving = actix_rt::System::new().block_on(async {
        let listeners = Listeners::bind(&config)?;
        server::run(config, source, listeners, server::stop_signal()).await
    });
    match serving {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "server failed");
            eprintln!("{error}");
            match &error {
                ServeError::Web(web) if web.is_configuration() => ExitCode::from(2),
                // A TLS or credential file named in `prometheus.*` that cannot be used.
                ServeError::QueryClient(_) => ExitCode::from(2),
                _ => ExitCode::from(1),
            }
        }
    }
}

/// `--healthcheck`: asks `--healthcheck-url`, or this configuration's own public
/// `/health_check`. The configuration file is only consulted for the port, and a missing
/// or broken one falls back to upstream's `:3000`, so the probe never fails for reasons
/// the server itself would not.
fn probe(cli: &Cli) -> ExitCode {
    let url = cli.healthcheck_url.clone().unwrap_or_else(|| {
        let listen = cli.listen_address.clone().unwrap_or_else(|| {
            Config::load(&cli.conf)
                .map(|c| c.web.listen_address)
                .unwrap_or_else(|_| ":3000".to_string())
        });
        healthcheck::default_url(&listen)
    });
    match healthcheck::run(&url) {
        Ok(_) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error}");
            ExitCode::from(1)
        }
    }
}
