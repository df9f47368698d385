//! Runs the real `hami-webui-server` binary as a child process on a free loopback port, with
//! its own config file, kubeconfig and environment, and talks to it over HTTP.
//!
//! Tests poll conditions with deadlines through [`wait_for`]; nothing here sleeps for a
//! fixed time hoping something happened.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

pub const BINARY: &str = env!("CARGO_BIN_EXE_hami-webui-server");

/// A port nothing listens on right now (bound and released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// Polls `check` every 20 ms until it returns `Some` or `deadline` passes.
pub fn wait_for<T>(deadline: Duration, mut check: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + deadline;
    loop {
        if let Some(value) = check() {
            return Some(value);
        }
        if Instant::now() >= end {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A kubeconfig for an API server at `server` (no credentials).
pub fn write_kubeconfig(dir: &Path, server: &str) -> PathBuf {
    let path = dir.join("kubeconfig");
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: test\n  cluster:\n    server: {server}\ncontexts:\n- name: test\n  context:\n    cluster: test\n    user: test\ncurrent-context: test\nusers:\n- name: test\n  user: {{}}\n"
    );
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

/// One HTTP/1.1 exchange; enough for probing our own server without an async runtime.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one request with `Connection: close` and reads the whole reply.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Reply> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    // Head and body leave in one segment; two small writes would meet Nagle's algorithm and
    // delayed ACKs and add ~40 ms to every timed request with a body.
    stream.set_nodelay(true)?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\nContent-Length: {}\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut message = head.into_bytes();
    message.extend_from_slice(body);
    stream.write_all(&message)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_reply(&raw)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "bad HTTP reply"))
}

pub fn get(port: u16, path: &str) -> std::io::Result<Reply> {
    request(port, "GET", path, &[], b"")
}

fn parse_reply(raw: &[u8]) -> Option<Reply> {
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..split]).ok()?;
    let mut lines = head.split("\r\n");
    let status = lines.next()?.split_whitespace().nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[split + 4..].to_vec();
    let chunked = headers.iter().any(|(k, v)| {
        k.eq_ignore_ascii_case("transfer-encoding") && v.eq_ignore_ascii_case("chunked")
    });
    if chunked {
        body = dechunk(&body)?;
    }
    Some(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n")?;
        let size_text = std::str::from_utf8(&data[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// The server under test. Killed when dropped; its stderr goes to a file for assertions.
pub struct ServerProcess {
    child: Child,
    pub port: u16,
    pub log_path: PathBuf,
    _dir: tempfile::TempDir,
}

/// How to start the server.
pub struct Launch<'a> {
    /// Body of the `--conf` file.
    pub config_yaml: &'a str,
    /// Extra arguments after `--conf FILE`.
    pub args: &'a [&'a str],
    /// Extra environment; `KUBECONFIG`, `HOME` and the listen address are set by `start`.
    pub env: &'a [(&'a str, &'a str)],
    /// API server URL for the generated kubeconfig.
    pub api_server: &'a str,
}

impl Default for Launch<'_> {
    fn default() -> Self {
        Self {
            config_yaml: "",
            args: &[],
            env: &[],
            // Port 9 (discard) is never served on loopback here: a closed port.
            api_server: "http://127.0.0.1:9",
        }
    }
}

impl ServerProcess {
    pub fn start(launch: Launch<'_>) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("config.yaml");
        std::fs::write(&conf, launch.config_yaml).expect("write config");
        let kubeconfig = write_kubeconfig(dir.path(), launch.api_server);
        let port = free_port();
        let log_path = dir.path().join("server.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let mut command = Command::new(BINARY);
        command
            .arg("--conf")
            .arg(&conf)
            .args(launch.args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", dir.path())
            .env("KUBECONFIG", &kubeconfig)
            .env("RUST_LOG", "info")
            .env(
                "HAMI_WEBUI__SERVER__HTTP__ADDR",
                format!("127.0.0.1:{port}"),
            )
            .envs(launch.env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log);
        let child = command.spawn().expect("spawn server");
        Self {
            child,
            port,
            log_path,
            _dir: dir,
        }
    }

    pub fn dir(&self) -> &Path {
        self._dir.path()
    }

    pub fn get(&self, path: &str) -> std::io::Result<Reply> {
        get(self.port, path)
    }

    /// Waits until the listener answers `/livez`.
    pub fn wait_live(&self, deadline: Duration) -> bool {
        wait_for(deadline, || {
            self.get("/livez").ok().filter(|r| r.status == 200)
        })
        .is_some()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM (through `kill`, to avoid unsafe code here).
    pub fn terminate(&self) {
        let status = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -TERM failed");
    }

    /// SIGKILL: no shutdown path runs, as when the node dies.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn wait_exit(&mut self, deadline: Duration) -> Option<ExitStatus> {
        wait_for(deadline, || self.child.try_wait().ok().flatten())
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs the binary to completion (for start-up failures), returning status and stderr.
pub fn run_to_exit(config_yaml: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().expect("temp dir");
    let conf = dir.path().join("config.yaml");
    std::fs::write(&conf, config_yaml).expect("write config");
    let output = Command::new(BINARY)
        .arg("--conf")
        .arg(&conf)
        .env_clear()
        .env("HOME", dir.path())
        .env(
            "HAMI_WEBUI__SERVER__HTTP__ADDR",
            format!("127.0.0.1:{}", free_port()),
        )
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("run server");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}
