//! Metrics stores for integration tests: the real ones (Prometheus, VictoriaMetrics) and
//! small servers that misbehave on purpose. Everything listens on 127.0.0.1, on free ports,
//! and stops when dropped. Waits poll with deadlines; nothing sleeps hoping for the best.
//!
//! Public API (for every test binary that talks to an upstream):
//!
//! | Item | What it gives |
//! |---|---|
//! | [`FixtureExporter::start(text)`] | an exporter serving `text` at `/metrics`; [`FixtureExporter::set_text`] changes it at runtime; `.target()` is `127.0.0.1:PORT` for a scrape config |
//! | [`FIXTURE_EXPOSITION`], [`fixture_values`] | a small `hami_*` exposition and its values by `device_uuid` |
//! | [`Prometheus::start(&[target])`] | a real `/usr/bin/prometheus` scraping the targets every second; `.url()`; [`Prometheus::wait_for_series`] waits until a query returns data; [`Prometheus::start_with_rules`] also loads rule files |
//! | [`VictoriaMetrics::start()`] | a real `victoria-metrics`; [`VictoriaMetrics::import`] loads exposition text (optionally with ms timestamps) and flushes it, so it is queryable at once |
//! | [`CountingProxy::start(port)`] | an HTTP proxy to `127.0.0.1:port` counting requests and the most in flight at once (measured here, not by the client); [`CountingProxy::set_delay`] holds each request so overlaps are observable; [`CountingProxy::requests`] returns what it saw |
//! | [`StubServer::start(reply)`] | a programmable HTTP server ([`StubReply`]: JSON, stall, endless stream) recording every request; [`StubServer::start_tls`] serves it over TLS ([`TestPki`]) |
//! | [`StalledServer::start()`] | accepts connections and never answers |
//! | [`TestPki::new()`] | an rcgen CA, a server certificate for `localhost`/`127.0.0.1` and a client certificate, written as PEM files |
//! | [`query_api`] | one GET against an upstream's `/api/v1/query`, returning the JSON |
//!
//! A missing binary fails the test with the Debian package to install; it never skips.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::process::{free_port, request, wait_for};

/// A small exposition of the families the frontend charts, two devices on one node.
pub const FIXTURE_EXPOSITION: &str = "\
# TYPE hami_core_size gauge
hami_core_size{device_uuid=\"GPU-fixture-0\",node=\"node-a\"} 100
hami_core_size{device_uuid=\"GPU-fixture-1\",node=\"node-a\"} 50
# TYPE hami_memory_size gauge
hami_memory_size{device_uuid=\"GPU-fixture-0\",node=\"node-a\"} 81920
hami_memory_size{device_uuid=\"GPU-fixture-1\",node=\"node-a\"} 40960
";

/// `(device_uuid, value)` of `family` in [`FIXTURE_EXPOSITION`], sorted.
pub fn fixture_values(family: &str) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = FIXTURE_EXPOSITION
        .lines()
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .filter_map(|l| {
            let uuid = l.split("device_uuid=\"").nth(1)?.split('"').next()?;
            let value = l.rsplit(' ').next()?.parse().ok()?;
            Some((uuid.to_string(), value))
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Fails the test naming the Debian package when `binary` is not installed.
fn require_binary(binary: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|dir| dir.join(binary))
        .find(|candidate| candidate.is_file())
        .unwrap_or_else(|| {
            panic!("`{binary}` not found on PATH: install the Debian package `{package}` (apt-get install {package}), or run `bash .ci/run`")
        })
}

/// A percent-encoding of a query-string value.
pub fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One instant query through the upstream's HTTP API (not through our client), for
/// readiness checks and for comparing against what our client returns.
pub fn query_api(port: u16, expr: &str) -> Option<serde_json::Value> {
    let reply = request(
        port,
        "GET",
        &format!("/api/v1/query?query={}", encode(expr)),
        &[],
        b"",
    )
    .ok()?;
    (reply.status == 200).then(|| serde_json::from_slice(&reply.body).ok())?
}

/// A child process killed on drop, with its output in a file for failure messages.
struct ChildProcess {
    child: Child,
    log: PathBuf,
}

impl ChildProcess {
    fn spawn(mut command: Command, log: PathBuf) -> Self {
        let file = std::fs::File::create(&log).expect("log file");
        let err = file.try_clone().expect("log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(file)
            .stderr(err)
            .spawn()
            .expect("spawn upstream");
        Self { child, log }
    }

    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A real Prometheus scraping the given targets every second.
pub struct Prometheus {
    pub port: u16,
    process: ChildProcess,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus and waits (up to 20 s) until it is ready to answer queries.
    /// Scrapes and evaluates every second, so tests see new values quickly.
    pub fn start(targets: &[&str]) -> Self {
        Self::start_with_intervals(targets, "1s", "1s")
    }

    /// [`start`](Self::start) with the given `scrape_interval` and `evaluation_interval`. The
    /// evaluation interval is also a subquery's default resolution (`[10m:]`), so it decides
    /// how much work such a query is.
    pub fn start_with_intervals(targets: &[&str], scrape: &str, evaluation: &str) -> Self {
        Self::start_with_rules(targets, scrape, evaluation, &[])
    }

    /// [`start_with_intervals`](Self::start_with_intervals) that also loads `rule_files`
    /// (recording rules and alerts, evaluated every `evaluation`).
    pub fn start_with_rules(
        targets: &[&str],
        scrape: &str,
        evaluation: &str,
        rule_files: &[&Path],
    ) -> Self {
        let binary = require_binary("prometheus", "prometheus");
        let dir = tempfile::tempdir().expect("temp dir");
        let targets: Vec<String> = targets.iter().map(|t| format!("'{t}'")).collect();
        let mut config = format!(
            "global:\n  scrape_interval: {scrape}\n  evaluation_interval: {evaluation}\nscrape_configs:\n  - job_name: fixture\n    static_configs:\n      - targets: [{}]\n",
            targets.join(", ")
        );
        if !rule_files.is_empty() {
            config.push_str("rule_files:\n");
            for file in rule_files {
                config.push_str(&format!("  - '{}'\n", file.display()));
            }
        }
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let port = free_port();
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn")
            .current_dir(dir.path());
        let process = ChildProcess::spawn(command, dir.path().join("prometheus.log"));
        let prometheus = Self {
            port,
            process,
            _dir: dir,
        };
        let ready = wait_for(Duration::from_secs(20), || {
            request(port, "GET", "/-/ready", &[], b"")
                .ok()
                .filter(|r| r.status == 200)
        });
        assert!(
            ready.is_some(),
            "Prometheus did not become ready within 20 s:\n{}",
            prometheus.process.log_text()
        );
        prometheus
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Waits until `expr` returns at least `series` series (scrapes happen every second).
    pub fn wait_for_series(&self, expr: &str, series: usize, deadline: Duration) {
        let found = wait_for(deadline, || {
            let json = query_api(self.port, expr)?;
            let n = json["data"]["result"].as_array()?.len();
            (n >= series).then_some(())
        });
        assert!(
            found.is_some(),
            "Prometheus had no {series} series for {expr} within {deadline:?}:\n{}",
            self.process.log_text()
        );
    }
}

/// A real single-node VictoriaMetrics.
pub struct VictoriaMetrics {
    pub port: u16,
    process: ChildProcess,
    _dir: tempfile::TempDir,
}

impl VictoriaMetrics {
    /// Starts VictoriaMetrics and waits (up to 20 s) for `/health`.
    pub fn start() -> Self {
        let binary = require_binary("victoria-metrics", "victoria-metrics");
        let dir = tempfile::tempdir().expect("temp dir");
        let port = free_port();
        let mut command = Command::new(binary);
        command
            .arg(format!("-httpListenAddr=127.0.0.1:{port}"))
            .arg(format!(
                "-storageDataPath={}",
                dir.path().join("data").display()
            ))
            .arg("-search.latencyOffset=0s")
            .arg("-search.disableCache")
            .arg("-loggerLevel=ERROR")
            .current_dir(dir.path());
        let process = ChildProcess::spawn(command, dir.path().join("vm.log"));
        let vm = Self {
            port,
            process,
            _dir: dir,
        };
        let healthy = wait_for(Duration::from_secs(20), || {
            request(port, "GET", "/health", &[], b"")
                .ok()
                .filter(|r| r.status == 200)
        });
        assert!(
            healthy.is_some(),
            "VictoriaMetrics did not become healthy within 20 s:\n{}",
            vm.process.log_text()
        );
        vm
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Imports exposition text (lines may carry millisecond timestamps) and flushes it so
    /// queries see it at once.
    pub fn import(&self, exposition: &str) {
        let reply = request(
            self.port,
            "POST",
            "/api/v1/import/prometheus",
            &[("Content-Type", "text/plain")],
            exposition.as_bytes(),
        )
        .expect("import into VictoriaMetrics");
        assert!(
            reply.status / 100 == 2,
            "import failed: {} {}",
            reply.status,
            reply.text()
        );
        let flush =
            request(self.port, "GET", "/internal/force_flush", &[], b"").expect("force_flush");
        assert_eq!(flush.status, 200, "force_flush: {}", flush.text());
    }
}

/// One HTTP request as a test server saw it.
#[derive(Debug, Clone)]
pub struct SeenRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl SeenRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// Whether the client asked to close the connection after this exchange.
    pub fn wants_close(&self) -> bool {
        self.header("connection")
            .is_some_and(|v| v.eq_ignore_ascii_case("close"))
    }

    /// A form parameter of the (url-encoded) body, decoded.
    pub fn form(&self, key: &str) -> Option<String> {
        let body = String::from_utf8_lossy(&self.body);
        body.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == key).then(|| decode(v))
        })
    }
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                match u8::from_str_radix(hex, 16) {
                    Ok(b) => {
                        out.push(b);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Reads one request (head + `Content-Length` body); `None` at EOF or on garbage.
fn read_request(reader: &mut impl BufRead) -> Option<SeenRequest> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    for _ in 0..200 {
        let mut header = String::new();
        if reader.read_line(&mut header).ok()? == 0 {
            return None;
        }
        let header = header.trim_end();
        if header.is_empty() {
            break;
        }
        let (k, v) = header.split_once(':')?;
        headers.push((k.trim().to_string(), v.trim().to_string()));
    }
    let length = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    reader.read_exact(&mut body).ok()?;
    Some(SeenRequest {
        method,
        path,
        headers,
        body,
    })
}

fn write_response(stream: &mut impl Write, status: u16, content_type: &str, body: &[u8]) -> bool {
    let head = format!(
        "HTTP/1.1 {status} X\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).is_ok()
        && stream.write_all(body).is_ok()
        && stream.flush().is_ok()
}

/// Accept loop on a nonblocking listener, stopped by `stop`; each connection gets a thread.
fn serve(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    on_connection: impl Fn(TcpStream) + Send + Sync + 'static,
) {
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let on_connection = Arc::new(on_connection);
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((stream, _)) => {
                    let _ = stream.set_nonblocking(false);
                    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
                    let handler = Arc::clone(&on_connection);
                    std::thread::spawn(move || handler(stream));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    });
}

fn bind() -> (TcpListener, u16) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let port = listener.local_addr().expect("local addr").port();
    (listener, port)
}

/// An exporter serving a settable exposition at any path.
pub struct FixtureExporter {
    pub port: u16,
    text: Arc<Mutex<String>>,
    scrapes: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl FixtureExporter {
    pub fn start(text: &str) -> Self {
        let (listener, port) = bind();
        let text = Arc::new(Mutex::new(text.to_string()));
        let scrapes = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (t, s) = (Arc::clone(&text), Arc::clone(&scrapes));
        serve(listener, Arc::clone(&stop), move |stream| {
            let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
            let mut writer = stream;
            for _ in 0..10_000 {
                let Some(request) = read_request(&mut reader) else {
                    return;
                };
                s.fetch_add(1, Ordering::Relaxed);
                let body = t.lock().map(|b| b.clone()).unwrap_or_default();
                let sent = write_response(
                    &mut writer,
                    200,
                    "text/plain; version=0.0.4",
                    body.as_bytes(),
                );
                if !sent || request.wants_close() {
                    return;
                }
            }
        });
        Self {
            port,
            text,
            scrapes,
            stop,
        }
    }

    /// `127.0.0.1:PORT`, for a scrape config.
    pub fn target(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// Replaces the exposition served from the next scrape on.
    pub fn set_text(&self, text: &str) {
        if let Ok(mut t) = self.text.lock() {
            *t = text.to_string();
        }
    }

    pub fn scrapes(&self) -> usize {
        self.scrapes.load(Ordering::Relaxed)
    }
}

impl Drop for FixtureExporter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Counts of a [`CountingProxy`].
#[derive(Default)]
struct ProxyState {
    requests: AtomicUsize,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    delay_ms: AtomicU64,
    seen: Mutex<Vec<SeenRequest>>,
}

/// An HTTP proxy to `127.0.0.1:target` that counts requests and concurrency. Each request
/// is forwarded on a fresh connection (`Connection: close`, no compression) and answered to
/// the client with a `Content-Length`, so keep-alive clients work unchanged.
pub struct CountingProxy {
    pub port: u16,
    state: Arc<ProxyState>,
    stop: Arc<AtomicBool>,
}

impl CountingProxy {
    pub fn start(target: u16) -> Self {
        let (listener, port) = bind();
        let state = Arc::new(ProxyState::default());
        let stop = Arc::new(AtomicBool::new(false));
        let s = Arc::clone(&state);
        serve(listener, Arc::clone(&stop), move |stream| {
            let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
            let mut writer = stream;
            for _ in 0..10_000 {
                let Some(seen) = read_request(&mut reader) else {
                    return;
                };
                s.requests.fetch_add(1, Ordering::SeqCst);
                let now = s.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                s.max_in_flight.fetch_max(now, Ordering::SeqCst);
                if let Ok(mut list) = s.seen.lock() {
                    list.push(seen.clone());
                }
                let delay = s.delay_ms.load(Ordering::Relaxed);
                if delay > 0 {
                    std::thread::sleep(Duration::from_millis(delay));
                }
                let answer = forward(target, &seen);
                s.in_flight.fetch_sub(1, Ordering::SeqCst);
                let ok = match answer {
                    Some((status, content_type, body)) => {
                        write_response(&mut writer, status, &content_type, &body)
                    }
                    None => {
                        write_response(&mut writer, 502, "text/plain", b"proxy: upstream failed")
                    }
                };
                if !ok {
                    return;
                }
            }
        });
        Self { port, state, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Holds every request this long before forwarding it.
    pub fn set_delay(&self, delay: Duration) {
        self.state
            .delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }

    /// Requests received so far.
    pub fn request_count(&self) -> usize {
        self.state.requests.load(Ordering::SeqCst)
    }

    /// The most requests that were in flight at once.
    pub fn max_in_flight(&self) -> usize {
        self.state.max_in_flight.load(Ordering::SeqCst)
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.state
            .seen
            .lock()
            .map(|l| l.clone())
            .unwrap_or_default()
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// Sends `seen` to `127.0.0.1:target`; returns status, content type and decoded body.
fn forward(target: u16, seen: &SeenRequest) -> Option<(u16, String, Vec<u8>)> {
    let skip = [
        "connection",
        "accept-encoding",
        "host",
        "content-length",
        "te",
    ];
    let headers: Vec<(&str, &str)> = seen
        .headers
        .iter()
        .filter(|(k, _)| !skip.contains(&k.to_ascii_lowercase().as_str()))
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let reply = request(target, &seen.method, &seen.path, &headers, &seen.body).ok()?;
    let content_type = reply
        .header("content-type")
        .unwrap_or("application/json")
        .to_string();
    Some((reply.status, content_type, reply.body))
}

/// What a [`StubServer`] answers to every request.
#[derive(Debug, Clone)]
pub enum StubReply {
    /// This status and JSON body.
    Json(u16, String),
    /// Read the request, then never answer (the connection stays open).
    Stall,
    /// A 200 JSON-looking chunked body of `total` bytes, written in 64 KiB chunks until the
    /// client hangs up; bytes written are counted ([`StubServer::bytes_sent`]).
    Endless { total: u64 },
    /// `302 Found` with this `Location`.
    Redirect(String),
}

/// A programmable HTTP(S) server that records every request.
pub struct StubServer {
    pub port: u16,
    tls: bool,
    seen: Arc<Mutex<Vec<SeenRequest>>>,
    reply: Arc<Mutex<StubReply>>,
    bytes_sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

/// A vector answer with one sample, as Prometheus writes it.
pub fn one_sample_json(value: &str) -> String {
    format!(
        r#"{{"status":"success","data":{{"resultType":"vector","result":[{{"metric":{{"job":"stub"}},"value":[1700000000,"{value}"]}}]}}}}"#
    )
}

impl StubServer {
    pub fn start(reply: StubReply) -> Self {
        Self::launch(reply, None)
    }

    /// The same over TLS with `pki`'s server certificate; with `require_client_cert` the
    /// handshake fails unless the client presents a certificate signed by `pki`'s CA.
    pub fn start_tls(reply: StubReply, pki: &TestPki, require_client_cert: bool) -> Self {
        Self::launch(reply, Some(pki.server_config(require_client_cert)))
    }

    fn launch(reply: StubReply, tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let (listener, port) = bind();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let reply = Arc::new(Mutex::new(reply));
        let bytes_sent = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let is_tls = tls.is_some();
        let (seen2, reply2, bytes2) = (
            Arc::clone(&seen),
            Arc::clone(&reply),
            Arc::clone(&bytes_sent),
        );
        serve(listener, Arc::clone(&stop), move |stream| match &tls {
            Some(config) => {
                let Ok(conn) = rustls::ServerConnection::new(Arc::clone(config)) else {
                    return;
                };
                let tls_stream = rustls::StreamOwned::new(conn, stream);
                stub_connection(tls_stream, &seen2, &reply2, &bytes2);
            }
            None => stub_connection(stream, &seen2, &reply2, &bytes2),
        });
        Self {
            port,
            tls: is_tls,
            seen,
            reply,
            bytes_sent,
            stop,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// Changes the answer for the next requests.
    pub fn set_reply(&self, reply: StubReply) {
        if let Ok(mut r) = self.reply.lock() {
            *r = reply;
        }
    }

    pub fn requests(&self) -> Vec<SeenRequest> {
        self.seen.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn bytes_sent(&self) -> u64 {
        self.bytes_sent.load(Ordering::SeqCst)
    }
}

impl Drop for StubServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn stub_connection<S: Read + Write>(
    stream: S,
    seen: &Mutex<Vec<SeenRequest>>,
    reply: &Mutex<StubReply>,
    bytes_sent: &AtomicU64,
) {
    let mut reader = BufReader::new(stream);
    for _ in 0..10_000 {
        let Some(request) = read_request(&mut reader) else {
            return;
        };
        let close = request.wants_close();
        if let Ok(mut list) = seen.lock() {
            list.push(request);
        }
        let current = reply.lock().map(|r| r.clone()).unwrap_or(StubReply::Stall);
        let stream = reader.get_mut();
        match current {
            StubReply::Json(status, body) => {
                if !write_response(stream, status, "application/json", body.as_bytes()) || close {
                    return;
                }
            }
            StubReply::Redirect(location) => {
                let head = format!(
                    "HTTP/1.1 302 Found\r\nLocation: {location}\r\nContent-Length: 0\r\n\r\n"
                );
                if stream.write_all(head.as_bytes()).is_err() || close {
                    return;
                }
            }
            StubReply::Stall => {
                // Hold the connection until the client gives up (bounded at 60 s).
                let mut sink = [0u8; 1024];
                let end = Instant::now() + Duration::from_secs(60);
                while Instant::now() < end {
                    match stream.read(&mut sink) {
                        Ok(0) => return,
                        Ok(_) => {}
                        Err(e)
                            if e.kind() == std::io::ErrorKind::WouldBlock
                                || e.kind() == std::io::ErrorKind::TimedOut => {}
                        Err(_) => return,
                    }
                }
                return;
            }
            StubReply::Endless { total } => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
                if stream.write_all(head.as_bytes()).is_err() {
                    return;
                }
                let chunk = vec![b' '; 64 * 1024];
                let framed =
                    [format!("{:x}\r\n", chunk.len()).as_bytes(), &chunk, b"\r\n"].concat();
                let mut sent = 0u64;
                while sent < total {
                    if stream.write_all(&framed).is_err() {
                        return;
                    }
                    sent += chunk.len() as u64;
                    bytes_sent.fetch_add(chunk.len() as u64, Ordering::SeqCst);
                }
                let _ = stream.write_all(b"0\r\n\r\n");
                return;
            }
        }
    }
}

/// Accepts connections and never answers (nor reads).
pub struct StalledServer {
    pub port: u16,
    stop: Arc<AtomicBool>,
}

impl StalledServer {
    pub fn start() -> Self {
        let (listener, port) = bind();
        let stop = Arc::new(AtomicBool::new(false));
        let held: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        serve(listener, Arc::clone(&stop), move |stream| {
            if let Ok(mut list) = held.lock() {
                list.push(stream);
            }
        });
        Self { port, stop }
    }

    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for StalledServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A throw-away PKI: CA, server certificate (`localhost`, `127.0.0.1`, and the extra name
/// `metrics.internal` for server-name overrides) and a client certificate, as PEM files.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    pub ca_file: PathBuf,
    pub client_cert_file: PathBuf,
    pub client_key_file: PathBuf,
    server_chain: Vec<rustls::pki_types::CertificateDer<'static>>,
    server_key_der: Vec<u8>,
    ca_der: rustls::pki_types::CertificateDer<'static>,
}

impl TestPki {
    pub fn new() -> Self {
        use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair, KeyUsagePurpose};
        let dir = tempfile::tempdir().expect("temp dir");
        let ca_key = KeyPair::generate().expect("CA key");
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "hami-webui test CA");
        let ca_cert = ca_params.self_signed(&ca_key).expect("CA cert");
        let issuer = Issuer::new(ca_params, ca_key);

        let server_key = KeyPair::generate().expect("server key");
        let server_params = CertificateParams::new(vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "metrics.internal".to_string(),
        ])
        .expect("server params");
        let server_cert = server_params
            .signed_by(&server_key, &issuer)
            .expect("server cert");

        let client_key = KeyPair::generate().expect("client key");
        let mut client_params =
            CertificateParams::new(vec!["hami-webui".to_string()]).expect("client params");
        client_params
            .extended_key_usages
            .push(rcgen::ExtendedKeyUsagePurpose::ClientAuth);
        let client_cert = client_params
            .signed_by(&client_key, &issuer)
            .expect("client cert");

        let write = |name: &str, text: String| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write PEM");
            path
        };
        let ca_file = write("ca.pem", ca_cert.pem());
        let client_cert_file = write("client.pem", client_cert.pem());
        let client_key_file = write("client-key.pem", client_key.serialize_pem());
        Self {
            ca_file,
            client_cert_file,
            client_key_file,
            server_chain: vec![server_cert.der().clone()],
            server_key_der: server_key.serialize_der(),
            ca_der: ca_cert.der().clone(),
            dir,
        }
    }

    fn server_config(&self, require_client_cert: bool) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .expect("TLS versions");
        let builder = if require_client_cert {
            let mut roots = rustls::RootCertStore::empty();
            roots.add(self.ca_der.clone()).expect("CA root");
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
                Arc::new(roots),
                provider,
            )
            .build()
            .expect("client verifier");
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(self.server_key_der.clone().into());
        let config = builder
            .with_single_cert(self.server_chain.clone(), key)
            .expect("server cert");
        Arc::new(config)
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Default for TestPki {
    fn default() -> Self {
        Self::new()
    }
}
