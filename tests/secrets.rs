//! No credential ever leaves the process in a log line, an error body or `/metrics`: the real
//! binary at `RUST_LOG=trace` with every kind of Prometheus credential (`auth`, the
//! `authorization` and `basic_auth` files, a TLS client key) and a kubeconfig token, driven
//! through failures (a 401 upstream, bad PromQL, the upstream going down, a TLS handshake
//! that fails, a Kubernetes API that refuses the token), then every output is searched for
//! every secret.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine;
use serde_json::json;

use hami_webui_server::synthetic::ClusterShape;
use support::process::{free_port, request, wait_for, BINARY};
use support::upstream::{StubReply, StubServer, TestPki};

const AUTH: &str = "Bearer sekret-verbatim-auth-5d1e";
const TOKEN: &str = "sekret-credentials-file-token-77ab";
const USERNAME: &str = "sekret-basic-user-3c9f";
const PASSWORD: &str = "sekret-basic-password-e04d";
const KUBE_TOKEN: &str = "sekret-kubeconfig-token-a8b2";

const UNAUTHORIZED: &str =
    r#"{"status":"error","errorType":"unauthorized","error":"missing or bad credentials"}"#;
const KUBE_UNAUTHORIZED: &str = r#"{"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure","message":"Unauthorized","reason":"Unauthorized","code":401}"#;

/// What one server run produced, to be searched.
struct Outputs {
    texts: Vec<(String, String)>,
}

impl Outputs {
    fn assert_free_of(&self, secrets: &[String]) {
        for (what, text) in &self.texts {
            for secret in secrets {
                assert!(
                    !text.contains(secret.as_str()),
                    "{what} contains the secret {secret:?}:\n{}",
                    excerpt(text, secret)
                );
            }
        }
    }
}

fn excerpt(text: &str, needle: &str) -> String {
    let at = text.find(needle).unwrap_or(0);
    let start = text[..at]
        .char_indices()
        .rev()
        .nth(300)
        .map_or(0, |(i, _)| i);
    let end = (at + needle.len() + 300).min(text.len());
    let end = (end..=text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..end].to_string()
}

/// Every form a secret could leak in: as written, and `user:password` base64-encoded as the
/// `Authorization: Basic` header carries it; for the TLS key, every line of its PEM body.
fn secret_forms(key_file: &Path) -> Vec<String> {
    let mut forms: Vec<String> = [AUTH, TOKEN, USERNAME, PASSWORD, KUBE_TOKEN]
        .iter()
        .map(|s| s.to_string())
        .collect();
    forms.push("sekret-verbatim-auth-5d1e".into());
    forms.push(base64::engine::general_purpose::STANDARD.encode(format!("{USERNAME}:{PASSWORD}")));
    let pem = std::fs::read_to_string(key_file).expect("read key");
    forms.extend(
        pem.lines()
            .filter(|l| !l.starts_with("-----") && l.len() >= 16)
            .map(str::to_string),
    );
    forms
}

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write file");
    path
}

/// A kubeconfig whose user authenticates with [`KUBE_TOKEN`].
fn kubeconfig_with_token(dir: &Path, server: &str) -> PathBuf {
    write(
        dir,
        "kubeconfig",
        &format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\nusers:\n- name: test\n  user:\n    token: {KUBE_TOKEN}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\ncurrent-context: test\n"
        ),
    )
}

struct Run {
    child: Child,
    port: u16,
    stdout: PathBuf,
    stderr: PathBuf,
}

impl Run {
    /// The binary at trace level with `prometheus_yaml` as its `prometheus:` section and a
    /// kubeconfig whose token is [`KUBE_TOKEN`], for the API at `api_server` (which refuses
    /// it); `None`: the inventory comes from a synthetic `--snapshot` instead, so that the
    /// refresher's cycles run against the upstream.
    fn start(dir: &Path, prometheus_yaml: &str, api_server: Option<&str>) -> Run {
        let conf = write(
            dir,
            "config.yaml",
            &format!(
                "prometheus:\n{prometheus_yaml}  timeout: 2s\nexporter:\n  interval: 1s\n  timeout: 3s\nkubernetes:\n  unready_after: 1h\nweb:\n  enabled: false\n"
            ),
        );
        let kubeconfig = kubeconfig_with_token(dir, api_server.unwrap_or("http://127.0.0.1:9"));
        let mut args = vec!["--conf".to_string(), conf.display().to_string()];
        if api_server.is_none() {
            let shape = ClusterShape {
                nodes: 2,
                allocations_per_device: 1,
                vendor_mix: false,
            };
            let cluster = write(dir, "cluster.json", &shape.list().to_string());
            args.extend(["--snapshot".to_string(), cluster.display().to_string()]);
        }
        let port = free_port();
        let stdout = dir.join("stdout.log");
        let stderr = dir.join("stderr.log");
        let child = Command::new(BINARY)
            .args(&args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir)
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "trace")
            .env("RUST_BACKTRACE", "1")
            .env(
                "HAMI_WEBUI__SERVER__HTTP__ADDR",
                format!("127.0.0.1:{port}"),
            )
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).expect("stdout file"))
            .stderr(std::fs::File::create(&stderr).expect("stderr file"))
            .spawn()
            .expect("spawn server");
        let run = Run {
            child,
            port,
            stdout,
            stderr,
        };
        wait_for(Duration::from_secs(15), || {
            support::process::get(port, "/livez")
                .ok()
                .filter(|r| r.status == 200)
        })
        .unwrap_or_else(|| panic!("server did not start:\n{}", run.stderr_text()));
        run
    }

    fn stderr_text(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.stderr).unwrap_or_default()).into_owned()
    }

    fn post(&self, path: &str, body: &str) -> String {
        let reply = request(
            self.port,
            "POST",
            path,
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        )
        .expect("request");
        format!("{} {}", reply.status, reply.text())
    }

    /// Pass-through queries (a valid one and bad PromQL), the list routes, `/readyz` and
    /// `/metrics`: every reply, as text.
    fn drive(&self) -> Vec<(String, String)> {
        let mut replies = Vec::new();
        for query in ["hami_core_util", "sum(rate(", "up{job=\"x\"}"] {
            let body = json!({"query": query}).to_string();
            replies.push((
                format!("instant {query}"),
                self.post("/v1/monitor/query/instant-vector", &body),
            ));
            let range = json!({"query": query, "range": {"start": "2025-05-01 00:00:00", "end": "2025-05-01 01:00:00", "step": "1m"}});
            replies.push((
                format!("range {query}"),
                self.post("/v1/monitor/query/range-vector", &range.to_string()),
            ));
        }
        for route in ["/v1/gpus", "/v1/nodes", "/v1/containers"] {
            replies.push((route.to_string(), self.post(route, "{}")));
        }
        for path in ["/metrics", "/readyz", "/livez", "/v1/nope"] {
            let text = support::process::get(self.port, path)
                .map(|r| format!("{} {}", r.status, r.text()))
                .unwrap_or_default();
            replies.push((path.to_string(), text));
        }
        replies
    }

    /// Waits for `cycles` failed refresh cycles, so every failure was logged at least once.
    fn wait_for_failed_cycles(&self, cycles: f64) {
        wait_for(Duration::from_secs(15), || {
            let text = support::process::get(self.port, "/metrics").ok()?.text();
            let failed: f64 = text
                .lines()
                .filter(|l| l.starts_with("hami_webui_refresh_cycles_total{"))
                .filter(|l| !l.contains("outcome=\"ok\""))
                .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
                .sum();
            (failed >= cycles).then_some(())
        })
        .unwrap_or_else(|| panic!("no failed cycles:\n{}", self.stderr_text()));
    }

    /// Stops the server (SIGTERM, then kill) and returns its outputs with `replies`.
    fn finish(mut self, mut replies: Vec<(String, String)>) -> Outputs {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let exited = wait_for(Duration::from_secs(10), || {
            self.child.try_wait().ok().flatten()
        });
        if exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        let stdout =
            String::from_utf8_lossy(&std::fs::read(&self.stdout).unwrap_or_default()).into_owned();
        let stderr = self.stderr_text();
        assert!(
            stderr.lines().count() > 50,
            "trace logging is on:\n{stderr}"
        );
        replies.push(("stdout".into(), stdout));
        replies.push(("stderr".into(), stderr));
        Outputs { texts: replies }
    }
}

/// The Kubernetes API stub: refuses every request with 401 (and records the token).
fn kube_api() -> StubServer {
    StubServer::start(StubReply::Json(401, KUBE_UNAUTHORIZED.into()))
}

fn sent_authorization(upstream: &StubServer, check: impl Fn(&str) -> bool) -> bool {
    upstream
        .requests()
        .iter()
        .any(|r| r.header("authorization").is_some_and(&check))
}

#[test]
fn credentials_file_token_never_leaks_through_401_bad_promql_and_an_upstream_going_down() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let upstream = StubServer::start(StubReply::Json(401, UNAUTHORIZED.into()));
    let token = write(dir.path(), "token", &format!("{TOKEN}\n"));
    let prometheus = format!(
        "  address: {}\n  authorization:\n    type: Bearer\n    credentials_file: {}\n",
        upstream.url(),
        token.display()
    );
    let run = Run::start(dir.path(), &prometheus, None);
    run.wait_for_failed_cycles(2.0);
    let mut replies = run.drive();
    assert!(sent_authorization(&upstream, |v| v == format!("Bearer {TOKEN}")));
    // The failures reached the caller: the upstream's 401 as the contract's 523 body.
    let instant = &replies[0].1;
    assert!(
        instant.starts_with("523 ") && instant.contains("unauthorized"),
        "{instant}"
    );
    // The upstream goes away: connections are refused from now on.
    drop(upstream);
    run.wait_for_failed_cycles(4.0);
    replies.extend(run.drive());
    run.finish(replies)
        .assert_free_of(&secret_forms(&pki.client_key_file));
}

#[test]
fn basic_auth_files_never_leak() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let upstream = StubServer::start(StubReply::Json(401, UNAUTHORIZED.into()));
    let user = write(dir.path(), "user", USERNAME);
    let password = write(dir.path(), "password", &format!("{PASSWORD}\n"));
    let prometheus = format!(
        "  address: {}\n  basic_auth:\n    username_file: {}\n    password_file: {}\n",
        upstream.url(),
        user.display(),
        password.display()
    );
    let run = Run::start(dir.path(), &prometheus, None);
    run.wait_for_failed_cycles(2.0);
    let replies = run.drive();
    assert!(sent_authorization(&upstream, |v| v.starts_with("Basic ")));
    run.finish(replies)
        .assert_free_of(&secret_forms(&pki.client_key_file));
}

#[test]
fn verbatim_auth_and_tls_client_key_never_leak_over_mutual_tls() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let upstream = StubServer::start_tls(StubReply::Json(401, UNAUTHORIZED.into()), &pki, true);
    let prometheus = format!(
        "  address: {}\n  auth: \"{AUTH}\"\n  tls:\n    ca_file: {}\n    cert_file: {}\n    key_file: {}\n",
        upstream.url(),
        pki.ca_file.display(),
        pki.client_cert_file.display(),
        pki.client_key_file.display()
    );
    let run = Run::start(dir.path(), &prometheus, None);
    run.wait_for_failed_cycles(2.0);
    let replies = run.drive();
    assert!(sent_authorization(&upstream, |v| v == AUTH));
    run.finish(replies)
        .assert_free_of(&secret_forms(&pki.client_key_file));
}

#[test]
fn tls_failure_and_a_refused_kubeconfig_token_leak_nothing() {
    let pki = TestPki::new();
    let dir = tempfile::tempdir().expect("temp dir");
    let api = kube_api();
    // The server's CA is not trusted (no ca_file): every handshake fails.
    let upstream = StubServer::start_tls(StubReply::Json(200, "{}".into()), &pki, true);
    let token = write(dir.path(), "token", TOKEN);
    let prometheus = format!(
        "  address: {}\n  authorization:\n    credentials_file: {}\n  tls:\n    cert_file: {}\n    key_file: {}\n",
        upstream.url(),
        token.display(),
        pki.client_cert_file.display(),
        pki.client_key_file.display()
    );
    let run = Run::start(dir.path(), &prometheus, Some(&api.url()));
    // No inventory (the API refuses the token), so no refresh cycle: the pass-through drives
    // the failing handshakes, the watchers the 401s.
    wait_for(Duration::from_secs(10), || {
        (api.requests().len() >= 3).then_some(())
    })
    .expect("the watchers call the API");
    let replies = run.drive();
    assert!(upstream.requests().is_empty());
    assert!(
        sent_authorization(&api, |v| v == format!("Bearer {KUBE_TOKEN}")),
        "the kubeconfig token was never used"
    );
    assert!(run.stderr_text().contains("Unauthorized"));
    run.finish(replies)
        .assert_free_of(&secret_forms(&pki.client_key_file));
}
