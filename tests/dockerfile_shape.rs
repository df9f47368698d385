//! The container image's contract, checked without a container engine: the Dockerfile's shape
//! (stages, locked and cached build, the frontend built from a pinned upstream tag, non-root
//! user, binary, config and console paths, ports, health check, entrypoint) and the binary
//! started the way the image starts it, with the image's paths mapped onto the source tree,
//! serving the demo cluster until `/readyz` is 200 and passing the image's own HEALTHCHECK.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use support::process::{free_port, get, wait_for, BINARY};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One Dockerfile instruction: keyword (upper case) and its argument text, continuation lines
/// joined and comments dropped.
#[derive(Debug, Clone)]
struct Instruction {
    keyword: String,
    args: String,
}

/// The instructions of one stage, from its `FROM` on.
#[derive(Debug)]
struct Stage {
    from: String,
    name: Option<String>,
    instructions: Vec<Instruction>,
}

impl Stage {
    fn all(&self, keyword: &str) -> impl Iterator<Item = &Instruction> {
        let keyword = keyword.to_string();
        self.instructions
            .iter()
            .filter(move |i| i.keyword == keyword)
    }

    fn last(&self, keyword: &str) -> Option<&Instruction> {
        self.all(keyword).last()
    }
}

fn parse_instructions(text: &str) -> Vec<Instruction> {
    let mut out = Vec::new();
    let mut pending = String::new();
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && pending.is_empty()) {
            continue;
        }
        if let Some(body) = trimmed.strip_suffix('\\') {
            pending.push_str(body);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let full = std::mem::take(&mut pending);
        let (keyword, args) = full.split_once(char::is_whitespace).unwrap_or((&full, ""));
        out.push(Instruction {
            keyword: keyword.to_ascii_uppercase(),
            args: args.split_whitespace().collect::<Vec<_>>().join(" "),
        });
    }
    out
}

/// Splits instructions into stages; instructions before the first `FROM` (global `ARG`s) are
/// returned first.
fn stages(instructions: &[Instruction]) -> (Vec<Instruction>, Vec<Stage>) {
    let mut global = Vec::new();
    let mut stages: Vec<Stage> = Vec::new();
    for instruction in instructions {
        if instruction.keyword == "FROM" {
            let words: Vec<&str> = instruction
                .args
                .split_whitespace()
                .filter(|w| !w.starts_with("--"))
                .collect();
            let name = match words.as_slice() {
                [_, as_kw, name] if as_kw.eq_ignore_ascii_case("as") => Some(name.to_string()),
                _ => None,
            };
            stages.push(Stage {
                from: words.first().map(|w| w.to_string()).unwrap_or_default(),
                name,
                instructions: Vec::new(),
            });
        } else if let Some(stage) = stages.last_mut() {
            stage.instructions.push(instruction.clone());
        } else {
            global.push(instruction.clone());
        }
    }
    (global, stages)
}

fn dockerfile() -> (Vec<Instruction>, Vec<Stage>) {
    let text = std::fs::read_to_string(root().join("Dockerfile")).expect("read Dockerfile");
    stages(&parse_instructions(&text))
}

/// The exec-form (JSON array) argument of ENTRYPOINT or CMD.
fn exec_form(instruction: &Instruction) -> Vec<String> {
    serde_json::from_str(&instruction.args).unwrap_or_else(|e| {
        panic!(
            "{} is not exec form ({e}): {}",
            instruction.keyword, instruction.args
        )
    })
}

fn final_stage(stages: &[Stage]) -> &Stage {
    stages.last().expect("at least one stage")
}

fn build_stage(stages: &[Stage]) -> &Stage {
    stages
        .iter()
        .find(|s| s.all("RUN").any(|r| r.args.contains("cargo build")))
        .expect("a stage that runs cargo build")
}

#[test]
fn multi_stage_with_a_locked_release_build_and_cached_dependencies() {
    let (_, stages) = dockerfile();
    assert!(stages.len() >= 2, "multi-stage: {} stages", stages.len());
    let build = build_stage(&stages);
    let cargo_runs: Vec<&Instruction> = build
        .all("RUN")
        .filter(|r| r.args.contains("cargo build"))
        .collect();
    for run in &cargo_runs {
        assert!(
            run.args.contains("cargo build --release --locked"),
            "release and --locked: {}",
            run.args
        );
    }
    // Dependency caching: one build against the manifests alone, before the sources arrive.
    assert_eq!(
        cargo_runs.len(),
        2,
        "a dependency build and the crate build"
    );
    let position = |pred: &dyn Fn(&Instruction) -> bool| {
        build
            .instructions
            .iter()
            .position(pred)
            .expect("instruction present")
    };
    let copy_manifests = position(&|i| {
        i.keyword == "COPY" && i.args.contains("Cargo.toml") && i.args.contains("Cargo.lock")
    });
    let deps_build = position(&|i| i.keyword == "RUN" && i.args.contains("cargo build"));
    let copy_sources = position(&|i| i.keyword == "COPY" && i.args.starts_with("src "));
    assert!(
        copy_manifests < deps_build && deps_build < copy_sources,
        "manifests, dependency build, then sources"
    );
    // The revision reaches build.rs, which reads HAMI_WEBUI_REVISION.
    assert!(build
        .all("ARG")
        .any(|a| a.args.starts_with("HAMI_WEBUI_REVISION")));
    assert!(cargo_runs[1].args.contains("HAMI_WEBUI_REVISION="));
}

#[test]
fn runtime_stage_is_non_root_with_both_binary_paths_config_and_port() {
    let (global, stages) = dockerfile();
    let runtime = final_stage(&stages);
    assert!(runtime.name.is_none(), "the last stage is the image");

    // Non-root, the uid the charts run as.
    let user = runtime.last("USER").expect("USER in the runtime stage");
    let uid = user.args.split(':').next().unwrap();
    assert_eq!(uid, "65532", "USER {}", user.args);

    // Base image: minimal, as a default ARG.
    let base = runtime.from.trim_start_matches("${").trim_end_matches('}');
    let default_base = global
        .iter()
        .filter(|i| i.keyword == "ARG")
        .find_map(|i| i.args.strip_prefix(&format!("{base}=")))
        .unwrap_or(&runtime.from);
    assert!(
        default_base.contains("distroless/cc") || default_base.contains("-slim"),
        "minimal base: {default_base}"
    );

    // The binary tree: /apps/hami-webui, and /apps/server as a symlink to it.
    let copy_binary = runtime
        .all("COPY")
        .find(|c| c.args.starts_with("--from=binary "))
        .expect("COPY --from=binary in the runtime stage");
    assert!(
        copy_binary.args.ends_with("/out/ /apps/"),
        "{}",
        copy_binary.args
    );
    let build = build_stage(&stages);
    let layout = build
        .all("RUN")
        .map(|r| r.args.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(layout.contains("target/release/hami-webui-server /out/hami-webui"));
    assert!(layout.contains("ln -s hami-webui /out/server"));

    // Default configuration at the charts' mount point.
    assert!(runtime
        .all("COPY")
        .any(|c| c.args == "config/config.yaml /apps/config/config.yaml"));

    let exposed: Vec<&str> = runtime
        .all("EXPOSE")
        .flat_map(|e| e.args.split_whitespace())
        .collect();
    assert!(exposed.contains(&"8000"), "EXPOSE 8000: {exposed:?}");
    assert!(exposed.contains(&"3000"), "EXPOSE 3000: {exposed:?}");

    // The 2.0 image's entrypoint and arguments.
    let entrypoint = exec_form(runtime.last("ENTRYPOINT").expect("ENTRYPOINT"));
    assert_eq!(entrypoint, ["/apps/hami-webui"]);
    let cmd = exec_form(runtime.last("CMD").expect("CMD"));
    assert_eq!(cmd, ["--conf", "/apps/config/config.yaml"]);

    // Nothing in the runtime stage needs a shell or writes to the filesystem.
    assert!(
        runtime.all("RUN").next().is_none(),
        "no RUN in the runtime stage"
    );
}

#[test]
fn dockerignore_keeps_what_the_build_needs() {
    let text = std::fs::read_to_string(root().join(".dockerignore")).expect("read .dockerignore");
    let patterns: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    for needed in ["src", "config", "Cargo.toml", "Cargo.lock", "build.rs"] {
        assert!(
            !patterns.contains(&needed),
            "{needed} must stay in the context"
        );
    }
    assert!(patterns.contains(&"target") && patterns.contains(&".git"));
    assert!(
        patterns.contains(&"!target/image"),
        "the prebuilt tree stays"
    );
    assert!(
        patterns.contains(&"!target/image-public"),
        "the prebuilt frontend stays"
    );
}

/// The default of a global `ARG name=value`.
fn global_arg<'a>(global: &'a [Instruction], name: &str) -> Option<&'a str> {
    global
        .iter()
        .filter(|i| i.keyword == "ARG")
        .find_map(|i| i.args.strip_prefix(&format!("{name}=")))
}

fn stage<'a>(stages: &'a [Stage], name: &str) -> &'a Stage {
    stages
        .iter()
        .find(|s| s.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("a stage named {name}"))
}

#[test]
fn frontend_is_built_from_upstreams_sources_at_a_pinned_tag() {
    let (global, stages) = dockerfile();
    let build = stage(&stages, "frontend-build");

    // A Node.js image, by default the official one.
    let base = build.from.trim_start_matches("${").trim_end_matches('}');
    let image = global_arg(&global, base).unwrap_or(&build.from);
    assert!(image.contains("node:"), "node stage base: {image}");

    // Upstream's repository at a release tag: v2.0.0, the app version of chart 2.0.0 —
    // never a branch, whose content moves.
    let reference = build
        .all("ARG")
        .find_map(|a| a.args.strip_prefix("HAMI_WEBUI_FRONTEND_REF="))
        .expect("ARG HAMI_WEBUI_FRONTEND_REF=<tag> in the frontend stage");
    assert_eq!(reference, "v2.0.0", "pinned upstream tag");
    let fetch = build
        .instructions
        .iter()
        .find(|i| i.args.contains("github.com/Project-HAMi/HAMi-WebUI"))
        .expect("the frontend stage fetches upstream's repository");
    assert!(
        fetch.args.contains("${HAMI_WEBUI_FRONTEND_REF}"),
        "fetched at the pinned ref: {}",
        fetch.args
    );
    let text = std::fs::read_to_string(root().join("Dockerfile")).unwrap();
    assert!(
        text.contains("v2.0.0") && text.contains("d3c5a3eda072e804538d3502f1c822fa5ee7ed0f"),
        "the choice of tag (and the commit of upstream's v2.0.0 image) is recorded"
    );

    // Upstream's package manager and build: pnpm with its lockfile, Vite in packages/web.
    let runs = build
        .all("RUN")
        .map(|r| r.args.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        runs.contains("corepack enable"),
        "pnpm through corepack: {runs}"
    );
    assert!(
        runs.contains("pnpm install --frozen-lockfile"),
        "locked install: {runs}"
    );
    assert!(
        runs.contains("pnpm --filter hami-webui-web run build"),
        "the web package's build: {runs}"
    );
    assert!(
        runs.contains("data-hami-webui-base"),
        "the build's index.html carries the base-path marker the server rewrites: {runs}"
    );
    assert!(
        runs.contains("/out/public"),
        "the site is collected in /out/public"
    );

    // The offline path: a prebuilt site, chosen like the prebuilt binary.
    assert_eq!(global_arg(&global, "FRONTEND_FROM"), Some("build"));
    let prebuilt = stage(&stages, "frontend-prebuilt");
    assert!(prebuilt
        .all("COPY")
        .any(|c| c.args == "target/image-public/ /out/public/"));
    let select = stage(&stages, "frontend");
    assert_eq!(select.from, "frontend-${FRONTEND_FROM}");
    assert!(select.instructions.is_empty());
}

#[test]
fn runtime_stage_serves_the_console_from_apps_public_and_checks_its_own_health() {
    let (_, stages) = dockerfile();
    let runtime = final_stage(&stages);
    assert!(
        runtime
            .all("COPY")
            .any(|c| c.args == "--from=frontend /out/public/ /apps/public/"),
        "the console at /apps/public (the server's default --static-dir)"
    );
    // Root-owned and read-only for the server: no --chown to the runtime user.
    assert!(runtime.all("COPY").all(|c| !c.args.contains("--chown")));

    let healthcheck = runtime.last("HEALTHCHECK").expect("HEALTHCHECK");
    let (options, command) = healthcheck
        .args
        .split_once("CMD ")
        .expect("HEALTHCHECK [options] CMD [...]");
    assert!(
        options.split_whitespace().all(|o| o.starts_with("--")),
        "{options}"
    );
    let command: Vec<String> = serde_json::from_str(command).expect("exec form");
    assert_eq!(command, ["/apps/hami-webui", "--healthcheck"]);
}

/// Kills the child when the test ends, however it ends.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Maps a path inside the image onto the source tree.
fn local_path(image_path: &str) -> String {
    match image_path.strip_prefix("/apps/config/") {
        Some(rest) => root().join("config").join(rest).display().to_string(),
        None => image_path.to_string(),
    }
}

#[test]
fn binary_serves_the_demo_cluster_with_the_images_arguments_and_config() {
    let (_, stages) = dockerfile();
    let runtime = final_stage(&stages);
    let cmd = exec_form(runtime.last("CMD").expect("CMD"));
    let mut args: Vec<String> = cmd.iter().map(|a| local_path(a)).collect();
    let conf = Path::new(&args[1]);
    assert!(
        conf.is_file(),
        "the image's config exists in the tree: {conf:?}"
    );
    args.push("--snapshot".into());
    args.push(
        root()
            .join("examples/demo-cluster.json")
            .display()
            .to_string(),
    );

    let home = tempfile::tempdir().unwrap();
    let log_path = home.path().join("server.log");
    // /apps/public: a minimal console, as the frontend stage would leave it.
    let public = home.path().join("public");
    std::fs::create_dir(&public).unwrap();
    std::fs::write(
        public.join("index.html"),
        "<!doctype html><html><head><base data-hami-webui-base href=\"/\"></head><body></body></html>\n",
    )
    .unwrap();
    let port = free_port();
    let public_port = free_port();
    // The image's environment, with its two listeners on loopback test ports.
    let env = [
        ("PATH", std::env::var("PATH").unwrap_or_default()),
        ("HOME", home.path().display().to_string()),
        ("RUST_LOG", "info".to_string()),
        (
            "HAMI_WEBUI__SERVER__HTTP__ADDR",
            format!("127.0.0.1:{port}"),
        ),
        (
            "HAMI_WEBUI_LISTEN_ADDRESS",
            format!("127.0.0.1:{public_port}"),
        ),
        ("HAMI_WEBUI_STATIC_DIR", public.display().to_string()),
    ];
    let child = Command::new(BINARY)
        .args(&args)
        .current_dir(root())
        .env_clear()
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log_path).unwrap())
        .spawn()
        .expect("start the server");
    let mut server = Running(child);
    let log = || std::fs::read_to_string(&log_path).unwrap_or_default();

    let ready = wait_for(Duration::from_secs(30), || {
        if let Ok(Some(status)) = server.0.try_wait() {
            panic!("server exited early ({status}): {}", log());
        }
        get(port, "/readyz").ok().filter(|r| r.status == 200)
    });
    assert!(ready.is_some(), "/readyz 200 within 30 s; log:\n{}", log());
    let live = get(port, "/livez").expect("/livez");
    assert_eq!(live.status, 200, "/livez: {}", live.text());
    let metrics = get(port, "/metrics").expect("/metrics");
    assert_eq!(metrics.status, 200);
    assert!(
        !log().contains("unknown configuration keys"),
        "the image's config has no unknown key: {}",
        log()
    );

    // The public listener serves the console and /health_check...
    let health = wait_for(Duration::from_secs(30), || {
        get(public_port, "/health_check")
            .ok()
            .filter(|r| r.status == 200)
    });
    assert!(
        health.is_some(),
        "/health_check 200 on the public port; log:\n{}",
        log()
    );
    let index = get(public_port, "/").expect("/");
    assert_eq!(index.status, 200);
    assert!(
        index.text().contains("data-hami-webui-base"),
        "{}",
        index.text()
    );

    // ...and the image's HEALTHCHECK command, run as the image runs it (working directory
    // /apps, the tree's root here; same environment), passes against it.
    let runtime = final_stage(&stages);
    let healthcheck = runtime.last("HEALTHCHECK").expect("HEALTHCHECK");
    let command: Vec<String> =
        serde_json::from_str(healthcheck.args.split_once("CMD ").unwrap().1).unwrap();
    let probe = |env: &[(&str, String)]| {
        Command::new(BINARY)
            .args(command[1..].iter().map(|a| local_path(a)))
            .current_dir(root())
            .env_clear()
            .envs(env.iter().cloned())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .expect("run the health check")
    };
    assert!(
        probe(&env).success(),
        "HEALTHCHECK passes against the running server"
    );
    drop(server);
    assert_eq!(
        probe(&env).code(),
        Some(1),
        "HEALTHCHECK fails once the server is gone"
    );
}
