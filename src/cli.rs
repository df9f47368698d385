//! Command-line flags, compatible with the Go backend's (`--conf PATH`, also Go's single-dash
//! `-conf PATH`) so its Deployment arguments work unchanged.

use std::ffi::OsString;
use std::path::PathBuf;

use clap::Parser;

use crate::config::WebFlags;
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

    /// Public listener of the web console and `/api/vgpu` (Go style: `:3000` = every
    /// interface). Overrides `web.listen_address`.
    #[arg(long, env = "HAMI_WEBUI_LISTEN_ADDRESS")]
    pub listen_address: Option<String>,

    /// Built HAMi-WebUI frontend to serve (default `/apps/public`). Overrides
    /// `web.static_dir`.
    #[arg(long, env = "HAMI_WEBUI_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,

    /// External URL prefix of the console, e.g. `/hami/`. Overrides `web.base_path`.
    #[arg(long, env = "HAMI_WEBUI_BASE_PATH")]
    pub base_path: Option<String>,

    /// Sites allowed to frame the console: JSON `null` (no policy), `[]` (none) or an array
    /// such as `["'self'","https://portal.example.com"]`. Overrides `web.frame_ancestors`.
    #[arg(long, env = "HAMI_WEBUI_FRAME_ANCESTORS_JSON")]
    pub frame_ancestors_json: Option<String>,

    /// Probe a running server's `/health_check` and exit 0 (2xx) or 1; starts nothing.
    #[arg(long)]
    pub healthcheck: bool,

    /// URL for `--healthcheck` (default: this configuration's public port on 127.0.0.1).
    #[arg(long, env = "HAMI_WEBUI_HEALTHCHECK_URL")]
    pub healthcheck_url: Option<String>,
}

impl Cli {
    /// Parses the process arguments, first rewriting Go-style single-dash long flags.
    pub fn parse_args() -> Self {
        Self::parse_from(go_style_flags(std::env::args_os()))
    }

    /// The web flags given, to lay over the configuration file's `web.*` keys.
    pub fn web_flags(&self) -> WebFlags {
        WebFlags {
            listen_address: self.listen_address.clone(),
            static_dir: self.static_dir.clone(),
            base_path: self.base_path.clone(),
            frame_ancestors_json: self.frame_ancestors_json.clone(),
        }
    }
}

/// Go's `flag` package accepts `-conf x` as well as `--conf x`; clap would read `-conf` as
/// four short flags. Rewrite the long names we know from single to double dash.
pub fn go_style_flags(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    const LONG: [&str; 11] = [
        "conf",
        "config",
        "snapshot",
        "log-format",
        "version",
        "listen-address",
        "static-dir",
        "base-path",
        "frame-ancestors-json",
        "healthcheck",
        "healthcheck-url",
    ];
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
    fn upstream_2_0_web_flags_in_both_spellings() {
        let cli = parse(&[
            "server",
            "-listen-address=:3200",
            "--static-dir",
            "/flag/public",
            "-base-path",
            "/flag-ui/",
            r#"--frame-ancestors-json=["'self'"]"#,
            "-healthcheck",
            "-healthcheck-url=http://127.0.0.1:3200/health_check",
        ]);
        assert_eq!(cli.listen_address.as_deref(), Some(":3200"));
        assert_eq!(cli.static_dir, Some(PathBuf::from("/flag/public")));
        assert_eq!(cli.base_path.as_deref(), Some("/flag-ui/"));
        assert_eq!(cli.frame_ancestors_json.as_deref(), Some(r#"["'self'"]"#));
        assert!(cli.healthcheck);
        assert_eq!(
            cli.healthcheck_url.as_deref(),
            Some("http://127.0.0.1:3200/health_check")
        );
        let flags = cli.web_flags();
        assert_eq!(flags.base_path.as_deref(), Some("/flag-ui/"));
        let plain = parse(&["server"]);
        assert!(!plain.healthcheck);
        assert!(plain.web_flags().listen_address.is_none());
    }

    #[test]
    fn unknown_log_format_is_rejected() {
        assert!(Cli::try_parse_from(["server", "--log-format", "xml"]).is_err());
    }
}
