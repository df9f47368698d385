//! The public listener end to end: the real binary serving the demo cluster, with a small
//! console build (`tests/browser/spa`, copied into a temporary directory) under a base
//! path, and the internal listener beside it for comparison.
//!
//! Covers: base-path rewrite, history-mode fallback, cache headers, validators, gzip,
//! traversal attempts, the framing policy, `/api/vgpu/v1/*` answering exactly as `/v1/*`,
//! internal-only routes hidden, `/health_check`, `--healthcheck`, and a headless Chromium
//! loading the console and calling the API through it.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use support::process::{free_port, request, wait_for, Launch, Reply, ServerProcess, BINARY};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const JS: &str = "static/js/app.1a2b3c4d.js";
const CSS: &str = "static/css/app.5e6f7a8b.css";
/// A file beside (outside) the static directory that no request may ever read.
const SECRET: &str = "TOP-SECRET-OUTSIDE-THE-STATIC-DIR";
/// Keeps the REST handlers away from any Prometheus this machine may run on :9090.
const CONFIG: &str = "prometheus:\n  address: http://127.0.0.1:9\n";
const GPUS_BODY: &[u8] = br#"{"filters":{}}"#;
const JSON: (&str, &str) = ("Content-Type", "application/json");

fn fixture() -> PathBuf {
    Path::new(ROOT).join("tests/browser/spa")
}

/// Copies the fixture console into `<tmp>/public`, with [`SECRET`] in `<tmp>/secret.txt`.
fn static_dir() -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().expect("temp dir");
    std::fs::write(tmp.path().join("secret.txt"), SECRET).expect("write secret");
    let public = tmp.path().join("public");
    let mut pending = vec![(fixture(), public.clone())];
    while let Some((from, to)) = pending.pop() {
        std::fs::create_dir_all(&to).expect("mkdir");
        for entry in std::fs::read_dir(&from).expect("read fixture") {
            let entry = entry.expect("fixture entry");
            let target = to.join(entry.file_name());
            if entry.file_type().expect("file type").is_dir() {
                pending.push((entry.path(), target));
            } else {
                std::fs::copy(entry.path(), &target).expect("copy fixture");
            }
        }
    }
    (tmp, public)
}

/// A running server with its public port and the console build it serves.
struct Console {
    server: ServerProcess,
    public: u16,
    site: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Console {
    fn start(config_yaml: &str, extra: &[&str]) -> Self {
        let (tmp, site) = static_dir();
        let public = free_port();
        let snapshot = Path::new(ROOT).join("examples/demo-cluster.json");
        let mut args: Vec<String> = vec![
            "--snapshot".into(),
            snapshot.display().to_string(),
            "--static-dir".into(),
            site.display().to_string(),
            "--listen-address".into(),
            format!("127.0.0.1:{public}"),
        ];
        args.extend(extra.iter().map(|a| a.to_string()));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let server = ServerProcess::start(Launch {
            config_yaml,
            args: &args,
            ..Launch::default()
        });
        let console = Self {
            server,
            public,
            site,
            _tmp: tmp,
        };
        let up = wait_for(Duration::from_secs(20), || {
            let health = console.get("/health_check").ok()?;
            let ready = console.server.get("/readyz").ok()?;
            (health.status == 200 && ready.status == 200).then_some(())
        });
        assert!(up.is_some(), "server not up:\n{}", console.server.log());
        console
    }

    fn with_base(base: &str) -> Self {
        Self::start(CONFIG, &["--base-path", base])
    }

    fn get(&self, path: &str) -> std::io::Result<Reply> {
        request(self.public, "GET", path, &[], b"")
    }

    fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Reply {
        request(self.public, "GET", path, headers, b"").expect("public request")
    }

    fn public(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        request(self.public, method, path, &[JSON], body).expect("public request")
    }

    fn internal(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        request(self.server.port, method, path, &[JSON], body).expect("internal request")
    }

    fn file(&self, rel: &str) -> Vec<u8> {
        std::fs::read(self.site.join(rel)).expect("fixture file")
    }
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(data)
        .read_to_end(&mut out)
        .expect("valid gzip");
    out
}

fn assert_json_404(reply: &Reply, what: &str) {
    assert_eq!(reply.status, 404, "{what}: {}", reply.text());
    assert_eq!(reply.json()["reason"], "ROUTE_NOT_FOUND", "{what}");
}

#[test]
fn console_is_served_under_the_base_path_with_history_fallback() {
    let console = Console::with_base("/hami/");
    let index = console.get("/hami/").unwrap();
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(index.header("cache-control"), Some("no-cache"));
    let html = index.text();
    assert!(
        html.contains(r#"<base data-hami-webui-base href="/hami/">"#),
        "{html}"
    );
    assert!(!html.contains(r#"href="/">"#), "marker left unrewritten");
    // The default policy, without a framing directive (none configured).
    let policy = index.header("content-security-policy").unwrap_or_default();
    assert!(policy.starts_with("default-src 'self'"), "{policy}");
    assert!(!policy.contains("frame-ancestors"), "{policy}");

    for route in [
        "/hami",
        "/hami/index.html",
        "/hami/admin/vgpu/node/admin",
        "/hami/admin/vgpu/node/admin/",
        "/hami/admin/vgpu/task/admin/detail?name=x&namespace=y",
        "/hami/admin/vgpu/card/admin/GPU-0-1.2",
    ] {
        let page = console.get(route).unwrap();
        assert_eq!(page.status, 200, "{route}");
        assert_eq!(page.body, index.body, "{route} is not the console page");
        assert_eq!(page.header("cache-control"), Some("no-cache"), "{route}");
    }

    let js = console.get(&format!("/hami/{JS}")).unwrap();
    assert_eq!(js.status, 200);
    assert_eq!(js.body, console.file(JS));
    // A missing asset is a 404, not the page; so is anything outside the base path.
    for path in [
        "/hami/static/js/missing.3f2a9c1b.js",
        "/hami/missing.js",
        "/",
        "/index.html",
        &format!("/{JS}"),
        "/admin/vgpu/node/admin",
        "/hamix/",
    ] {
        assert_json_404(&console.get(path).unwrap(), path);
    }
    let post = console.public("POST", "/hami/admin", b"{}");
    assert_eq!(post.status, 405, "{}", post.text());
}

#[test]
fn hashed_assets_are_immutable_and_the_rest_revalidates() {
    let console = Console::with_base("/");
    for (path, content_type, cache) in [
        (
            JS,
            "text/javascript; charset=utf-8",
            "public, max-age=31536000, immutable",
        ),
        (
            CSS,
            "text/css; charset=utf-8",
            "public, max-age=31536000, immutable",
        ),
        ("favicon.svg", "image/svg+xml", "no-cache"),
        ("index.html", "text/html; charset=utf-8", "no-cache"),
    ] {
        let reply = console.get(&format!("/{path}")).unwrap();
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(reply.header("content-type"), Some(content_type), "{path}");
        assert_eq!(reply.header("cache-control"), Some(cache), "{path}");
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
        // Revalidation: the validator round-trips to a bodiless 304.
        let etag = reply.header("etag").expect("etag").to_string();
        let again = console.get_with(&format!("/{path}"), &[("If-None-Match", &etag)]);
        assert_eq!(again.status, 304, "{path}");
        assert!(again.body.is_empty());
        assert_eq!(again.header("etag"), Some(etag.as_str()));
        let other = console.get_with(&format!("/{path}"), &[("If-None-Match", "\"other\"")]);
        assert_eq!(other.status, 200, "{path}");
    }
}

#[test]
fn text_assets_are_gzipped_when_the_client_accepts_it() {
    let console = Console::with_base("/ui/");
    for rel in [JS, CSS] {
        let path = format!("/ui/{rel}");
        let plain = console.get_with(&path, &[]);
        assert_eq!(plain.body, console.file(rel));
        assert!(plain.header("content-encoding").is_none());
        assert_eq!(plain.header("vary"), Some("Accept-Encoding"));

        let packed = console.get_with(&path, &[("Accept-Encoding", "gzip, deflate, br")]);
        assert_eq!(packed.status, 200);
        assert_eq!(packed.header("content-encoding"), Some("gzip"), "{rel}");
        assert_eq!(packed.header("vary"), Some("Accept-Encoding"));
        assert!(packed.body.len() < plain.body.len(), "{rel} did not shrink");
        assert_eq!(gunzip(&packed.body), plain.body, "{rel}");
        assert_ne!(packed.header("etag"), plain.header("etag"));

        let refused = console.get_with(&path, &[("Accept-Encoding", "gzip;q=0, br")]);
        assert!(refused.header("content-encoding").is_none(), "{rel}");
        assert_eq!(refused.body, plain.body);
    }
    // The page is compressed after its rewrite, so the gzip form carries the base path too.
    let page = console.get_with("/ui/admin/vgpu", &[("Accept-Encoding", "gzip")]);
    assert_eq!(page.header("content-encoding"), Some("gzip"));
    let html = String::from_utf8(gunzip(&page.body)).unwrap();
    assert!(html.contains(r#"href="/ui/">"#), "{html}");
    // Too small to gain: sent as is.
    let icon = console.get_with("/ui/favicon.svg", &[("Accept-Encoding", "gzip")]);
    assert!(icon.header("content-encoding").is_none());
}

#[test]
fn traversal_attempts_are_rejected() {
    let console = Console::with_base("/hami/");
    // `public/../secret.txt` exists; none of these may reach it, nor fall back to the page.
    for path in [
        "/hami/../secret.txt",
        "/hami/static/../../secret.txt",
        "/hami/%2e%2e/secret.txt",
        "/hami/%2E%2E%2Fsecret.txt",
        "/hami/static/%2e%2e/%2e%2e/secret.txt",
        "/hami/..%2fsecret.txt",
        "/hami/.%2e/secret.txt",
        "/hami/..%5csecret.txt",
        "/hami/..\\secret.txt",
        "/hami/static\\..\\..\\secret.txt",
        "/hami/%c0%ae%c0%ae/secret.txt",
        "/hami/static//js/app.1a2b3c4d.js",
        "/hami/./index.html",
        "/hami/static/js/app.1a2b3c4d.js%00.html",
        "/hami//etc/passwd",
        "/hami/%2Fetc%2Fpasswd",
        "//etc/passwd",
        "/../../../../etc/passwd",
    ] {
        let reply = console.get(path).unwrap();
        assert!(
            reply.status == 404 || reply.status == 400,
            "{path}: {} {}",
            reply.status,
            reply.text()
        );
        assert!(!reply.text().contains(SECRET), "{path} leaked the secret");
        assert!(!reply.text().contains("root:"), "{path} leaked /etc/passwd");
        assert!(
            !reply.text().contains("<html"),
            "{path} fell back to the page"
        );
    }
    // Absolute-form request targets are judged by their path the same way.
    let absolute = format!("http://127.0.0.1:{}/hami/../secret.txt", console.public);
    let reply = console.get(&absolute).unwrap();
    assert!(
        reply.status == 404 || reply.status == 400,
        "{}",
        reply.status
    );
    assert!(!reply.text().contains(SECRET));
}

#[test]
fn frame_ancestors_policy_is_sent_on_the_page_when_configured() {
    let console = Console::start(
        CONFIG,
        &[
            "--base-path",
            "/hami/",
            "--frame-ancestors-json",
            r#"["'self'", "https://portal.example.com"]"#,
        ],
    );
    let framing = "; frame-ancestors 'self' https://portal.example.com";
    for route in ["/hami/", "/hami/admin/vgpu/node/admin"] {
        let page = console.get(route).unwrap();
        let policy = page.header("content-security-policy").unwrap_or_default();
        assert!(
            policy.starts_with("default-src 'self'"),
            "{route}: {policy}"
        );
        assert!(policy.ends_with(framing), "{route}: {policy}");
    }
    let js = console.get(&format!("/hami/{JS}")).unwrap();
    assert!(js.header("content-security-policy").is_none());

    // From the file (`[]` forbids framing), with a flag overriding the file's base path.
    let yaml = format!("{CONFIG}web:\n  base_path: /file/\n  frame_ancestors: []\n");
    let console = Console::start(&yaml, &["--base-path", "/flag/"]);
    let page = console.get("/flag/").unwrap();
    assert_eq!(page.status, 200);
    let policy = page.header("content-security-policy").unwrap_or_default();
    assert!(policy.ends_with("; frame-ancestors 'none'"), "{policy}");
    assert_json_404(&console.get("/file/").unwrap(), "/file/");
}

#[test]
fn api_on_the_public_port_is_the_internal_route_table() {
    let console = Console::with_base("/hami/");
    let cases: [(&str, &str, &[u8]); 6] = [
        ("POST", "/v1/gpus", GPUS_BODY),
        ("POST", "/v1/nodes", GPUS_BODY),
        ("GET", "/v1/gpu?uid=no-such-card", b""),
        ("POST", "/v1/gpus", b"{not json"),
        ("GET", "/v1/gpus", b""),
        ("POST", "/v1/summary", GPUS_BODY),
    ];
    for (method, path, body) in cases {
        let internal = console.internal(method, path, body);
        let public = console.public(method, &format!("/hami/api/vgpu{path}"), body);
        assert_eq!(public.status, internal.status, "{method} {path}");
        assert_eq!(
            public.json(),
            internal.json(),
            "{method} {path} differs between the ports"
        );
    }
    let gpus = console.public("POST", "/hami/api/vgpu/v1/gpus", GPUS_BODY);
    assert_eq!(gpus.status, 200, "{}", gpus.text());
    let list = gpus.json();
    assert!(
        list["list"].as_array().is_some_and(|l| !l.is_empty()),
        "the demo cluster has cards: {list}"
    );
    // Same route table, same 404 for what it does not have.
    assert_json_404(
        &console.public("GET", "/hami/api/vgpu/v1/no-such-route", b""),
        "unknown v1 route",
    );
    // The browser may take the JSON compressed; the content is the same.
    let packed = request(
        console.public,
        "POST",
        "/hami/api/vgpu/v1/gpus",
        &[JSON, ("Accept-Encoding", "gzip")],
        GPUS_BODY,
    )
    .unwrap();
    assert_eq!(packed.header("content-encoding"), Some("gzip"));
    let unpacked: Value = serde_json::from_slice(&gunzip(&packed.body)).unwrap();
    assert_eq!(unpacked, list);
}

#[test]
fn internal_only_routes_are_not_public() {
    let console = Console::with_base("/hami/");
    for path in [
        "/metrics",
        "/readyz",
        "/livez",
        "/openapi.json",
        "/v1/gpus",
        "/hami/metrics",
        "/hami/readyz",
        "/hami/livez",
        "/hami/openapi.json",
        "/hami/q/openapi.yaml",
        "/hami/api",
        "/hami/api/vgpu",
        "/hami/api/vgpu/metrics",
        "/hami/api/vgpu/readyz",
        "/hami/api/vgpu/livez",
        "/hami/api/vgpu/openapi.json",
        "/hami/api/vgpu/v2/gpus",
        "/hami/api/vgpu/v1/../metrics",
        "/hami/api/vgpu/v1/%2e%2e/metrics",
        "/hami/api/vgpu/v1%2f..%2fmetrics",
        "/hami/health_check",
    ] {
        assert_json_404(&console.get(path).unwrap(), path);
    }
    // ...while the internal port still has them.
    assert_eq!(console.server.get("/metrics").unwrap().status, 200);
}

#[test]
fn health_check_answers_get_and_head_at_the_root() {
    let console = Console::with_base("/hami/");
    let get = console.get("/health_check").unwrap();
    assert_eq!(get.status, 200);
    assert_eq!(get.text(), "OK\n");
    assert_eq!(
        get.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(get.header("cache-control"), Some("no-store"));
    let head = request(console.public, "HEAD", "/health_check", &[], b"").unwrap();
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    let post = request(console.public, "POST", "/health_check", &[], b"").unwrap();
    assert_eq!(post.status, 405);
    assert_eq!(post.header("allow"), Some("GET, HEAD"));
}

/// Runs `--healthcheck` with `args`, returning its exit code and how long it took.
fn healthcheck(args: &[&str]) -> (Option<i32>, Duration) {
    let started = Instant::now();
    let mut child = Command::new(BINARY)
        .arg("--healthcheck")
        .args(args)
        .env_clear()
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn --healthcheck");
    let status = wait_for(Duration::from_secs(15), || child.try_wait().ok().flatten());
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    (status.and_then(|s| s.code()), started.elapsed())
}

#[test]
fn healthcheck_flag_exits_0_for_a_live_server_and_1_for_a_dead_port() {
    let console = Console::with_base("/hami/");
    let url = format!("http://127.0.0.1:{}/health_check", console.public);
    assert_eq!(healthcheck(&["--healthcheck-url", &url]).0, Some(0));
    // The default URL follows the public listen address; no configuration file is needed.
    let listen = format!("127.0.0.1:{}", console.public);
    assert_eq!(
        healthcheck(&["--listen-address", &listen, "--conf", "/nonexistent.yaml"]).0,
        Some(0)
    );
    // Not 2xx is unhealthy: the base-path page is 200, a 404 is not.
    let missing = format!("http://127.0.0.1:{}/nowhere", console.public);
    assert_eq!(healthcheck(&["--healthcheck-url", &missing]).0, Some(1));

    let dead = format!("http://127.0.0.1:{}/health_check", free_port());
    let (code, took) = healthcheck(&["--healthcheck-url", &dead]);
    assert_eq!(code, Some(1));
    assert!(took < Duration::from_secs(10), "took {took:?}");
    let (code, _) = healthcheck(&["--healthcheck-url", "http://user:pw@127.0.0.1:1/x"]);
    assert_eq!(code, Some(1));
}

#[test]
fn public_listener_off_when_disabled_and_a_configured_dir_must_exist() {
    let public = free_port();
    let listen = format!("127.0.0.1:{public}");
    let (_tmp, site) = static_dir();
    let site = site.display().to_string();
    let server = ServerProcess::start(Launch {
        config_yaml: "web:\n  enabled: false\n",
        args: &["--static-dir", &site, "--listen-address", &listen],
        ..Launch::default()
    });
    assert!(
        server.wait_live(Duration::from_secs(10)),
        "{}",
        server.log()
    );
    assert!(
        request(public, "GET", "/health_check", &[], b"").is_err(),
        "public port answers though web.enabled is false"
    );
    drop(server);

    let mut server = ServerProcess::start(Launch {
        args: &[
            "--static-dir",
            "/nonexistent/public",
            "--listen-address",
            &listen,
        ],
        ..Launch::default()
    });
    let status = server.wait_exit(Duration::from_secs(10));
    assert_eq!(status.and_then(|s| s.code()), Some(2), "{}", server.log());
    assert!(server.log().contains("web.static_dir"), "{}", server.log());
}

#[test]
fn sigterm_stops_both_listeners() {
    let mut console = Console::with_base("/");
    console.server.terminate();
    let status = console.server.wait_exit(Duration::from_secs(30));
    assert_eq!(
        status.and_then(|s| s.code()),
        Some(0),
        "{}",
        console.server.log()
    );
    assert!(console.get("/health_check").is_err());
}

/// Why the browser test cannot run here, naming what to install.
fn browser_missing() -> Option<String> {
    let chromium = std::env::var("CHROMIUM_PATH").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if !Path::new(&chromium).exists() {
        return Some(format!(
            "{chromium} is missing: install the Debian package `chromium` \
             (apt-get install -y --no-install-recommends chromium)"
        ));
    }
    if !Path::new(ROOT)
        .join("tests/browser/node_modules/playwright-core/package.json")
        .exists()
    {
        return Some(
            "tests/browser/node_modules is missing the npm package `playwright-core`: \
             run `npm ci --prefix tests/browser`"
                .into(),
        );
    }
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => None,
        _ => Some("`node` is not on PATH: install Node.js 20 (Debian package `nodejs`)".into()),
    }
}

#[test]
fn browser_loads_the_console_under_a_base_path_and_calls_the_api() {
    if let Some(missing) = browser_missing() {
        panic!("browser test cannot run: {missing}");
    }
    let console = Console::with_base("/hami/");
    let page = format!(
        "http://127.0.0.1:{}/hami/admin/vgpu/node/admin",
        console.public
    );
    let out_dir = tempfile::tempdir().unwrap();
    let stdout_path = out_dir.path().join("stdout");
    let stderr_path = out_dir.path().join("stderr");
    let mut child = Command::new("node")
        .arg(Path::new(ROOT).join("tests/browser/console.mjs"))
        .arg(&page)
        .arg("/hami/")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("spawn node");
    let status = wait_for(Duration::from_secs(90), || child.try_wait().ok().flatten());
    if status.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let stdout = std::fs::read_to_string(&stdout_path).unwrap_or_default();
    let stderr = std::fs::read_to_string(&stderr_path).unwrap_or_default();
    assert!(
        status.is_some_and(|s| s.success()),
        "browser check failed ({status:?}):\n{stderr}\n{stdout}\nserver log:\n{}",
        console.server.log()
    );
    let summary: Value = serde_json::from_str(stdout.trim()).expect("summary JSON");
    assert_eq!(summary["base"], "/hami/");
    assert_eq!(summary["route"], "/admin/vgpu/node/admin");
    let seen: Value =
        serde_json::from_str(summary["resultText"].as_str().unwrap_or_default()).unwrap();
    let internal = console.internal("POST", "/v1/gpus", GPUS_BODY);
    assert_eq!(seen, internal.json(), "the browser saw other JSON");
}
