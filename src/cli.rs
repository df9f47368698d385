//! Command-line flags, compatible with the Go backend's (`--conf PATH`, also Go's single-dash
//! `-conf PATH`) so its Deployment arguments work unchanged.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

use crate::telemetry::LogFormat;

/// `--version` text: crate version and the git revision it was built from.
const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    " (revision ",
    env!("HAMI_WEBUI_REVISION"),
    ")"
);

#[derive(Debug, Clone, Parser)]
#[command(
    name = "hami-webui-server",
    version = LONG_VERSION,
    about = "Backend for HAMi-WebUI: device inventory, REST API and /metrics for HAMi clusters"
)]
pub struct Cli {
    /// Configuration file (the Go backend's YAML format).
    #[arg(
        long = "conf",
        visible_alias = "config",
        default_value = "config/config.yaml"
    )]
    pub conf: PathBuf,

    /// Serve a `kubectl get nodes,pods -A -o json` List file instead of watching a cluster.
    #[arg(long)]
    pub snapshot: Option<PathBuf>,

    /// Log line format.
    #[arg(long, value_enum, default_value = "text")]
    pub log_format: LogFormat,
}

impl Cli {
    /// Parses the process arguments, first rewriting Go-style single-dash long flags.
    pub fn parse_args() -> Self {
        Self::parse_from(go_style_flags(std::env::args_os()))
    }
}

/// Go's `flag` package accepts `-conf x` as well as `--conf x`; clap would read `-conf` as
/// four short flags. Rewrite the long names we know from single to double dash.
pub fn go_style_flags(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    const LONG: [&str; 5] = ["conf", "config", "snapshot", "log-format", "version"];
    args.into_iter()
        .map(|arg| {
            let Some(text) = arg.to_str() else { return arg };
            let Some(rest) = text.strip_prefix('-').filter(|r| !r.starts_with('-')) else {
                return arg;
            };
            let name = rest.split('=').next().unwrap_or_default();
            if LONG.contains(&name) {
                OsString::from(format!("-{text}"))
            } else {
                arg
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Cli {
        Cli::try_parse_from(go_style_flags(args.iter().map(OsString::from))).unwrap()
    }

    #[test]
    fn go_and_gnu_spellings_of_conf_are_accepted() {
        for args in [
            &["server", "--conf", "/apps/config/config.yaml"][..],
            &["server", "-conf", "/apps/config/config.yaml"],
            &["server", "-conf=/apps/config/config.yaml"],
            &["server", "--config", "/apps/config/config.yaml"],
        ] {
            assert_eq!(
                parse(args).conf,
                PathBuf::from("/apps/config/config.yaml"),
                "{args:?}"
            );
        }
    }

    #[test]
    fn defaults() {
        let cli = parse(&["server"]);
        assert_eq!(cli.conf, PathBuf::from("config/config.yaml"));
        assert_eq!(cli.log_format, LogFormat::Text);
        assert!(cli.snapshot.is_none());
    }

    #[test]
    fn unknown_log_format_is_rejected() {
        assert!(Cli::try_parse_from(["server", "--log-format", "xml"]).is_err());
    }
}
