//! Records the git revision the binary is built from, for `--version` and
//! `hami_webui_build_info`. An explicit `HAMI_WEBUI_REVISION` (container builds have no
//! `.git`) wins; without either the revision is `unknown`.

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=HAMI_WEBUI_REVISION");
    println!("cargo:rerun-if-changed=.git/HEAD");
    println!("cargo:rerun-if-changed=.git/refs/heads");
    let revision = std::env::var("HAMI_WEBUI_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()
                .filter(|out| out.status.success())
                .and_then(|out| String::from_utf8(out.stdout).ok())
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
        })
        .unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=HAMI_WEBUI_REVISION={revision}");
}
