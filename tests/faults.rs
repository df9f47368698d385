//! Upstream faults end to end: the real binary on a synthetic cluster, its metrics store a
//! programmable server that answers healthy, with HTTP 500s, with invalid JSON, with a
//! 200 MB body, a byte at a time, or resets the connection mid-body. Through every fault the
//! list routes answer 200 from the caches, `/readyz` stays 200, memory stays bounded by
//! `prometheus.max_response_bytes`, and a refresh cycle succeeds again soon after the
//! upstream heals.

mod support;

use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hami_webui_server::synthetic::ClusterShape;
use support::process::{request, wait_for, Launch, ServerProcess};

/// What the upstream does with the next requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// An empty result of the right type.
    Healthy,
    /// HTTP 500 with a Prometheus error body.
    ServerError,
    /// HTTP 200 with a body that is not JSON to its end.
    InvalidJson,
    /// HTTP 200 with a chunked body of [`HUGE_BYTES`], written until the client hangs up.
    Huge,
    /// The healthy answer, one byte every 200 ms.
    Trickle,
    /// Headers promising 100 kB, 1 kB of body, then a reset (the request body is left
    /// unread, so closing sends RST).
    ResetMidBody,
}

const MODES: [Mode; 6] = [
    Mode::Healthy,
    Mode::ServerError,
    Mode::InvalidJson,
    Mode::Huge,
    Mode::Trickle,
    Mode::ResetMidBody,
];

const HUGE_BYTES: u64 = 200 << 20;

struct FaultyUpstream {
    port: u16,
    mode: Arc<AtomicU8>,
    bytes_sent: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
}

impl FaultyUpstream {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let port = listener.local_addr().expect("local addr").port();
        listener.set_nonblocking(true).expect("nonblocking");
        let upstream = Self {
            port,
            mode: Arc::new(AtomicU8::new(Mode::Healthy as u8)),
            bytes_sent: Arc::default(),
            stop: Arc::default(),
        };
        let (mode, sent, stop) = (
            Arc::clone(&upstream.mode),
            Arc::clone(&upstream.bytes_sent),
            Arc::clone(&upstream.stop),
        );
        std::thread::spawn(move || {
            let started = Instant::now();
            while !stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(300) {
                let Ok((stream, _)) = listener.accept() else {
                    std::thread::sleep(Duration::from_millis(2));
                    continue;
                };
                let (mode, sent, stop) = (Arc::clone(&mode), Arc::clone(&sent), Arc::clone(&stop));
                std::thread::spawn(move || serve(stream, &mode, &sent, &stop));
            }
        });
        upstream
    }

    fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for FaultyUpstream {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn healthy_body(head: &str) -> String {
    let kind = if head.contains("query_range") {
        "matrix"
    } else {
        "vector"
    };
    format!(r#"{{"status":"success","data":{{"resultType":"{kind}","result":[]}}}}"#)
}

/// One connection: requests answered per the mode current when each arrives.
fn serve(stream: TcpStream, mode: &AtomicU8, sent: &AtomicU64, stop: &AtomicBool) {
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let mut reader = BufReader::new(stream.try_clone().expect("clone stream"));
    let mut writer = stream;
    for _ in 0..10_000 {
        let Some((head, length)) = support::wire::read_head(&mut reader) else {
            return;
        };
        let current = MODES[usize::from(mode.load(Ordering::SeqCst))];
        if current == Mode::ResetMidBody {
            let _ = writer.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n",
            );
            let _ = writer.write_all(
                b"{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[",
            );
            let _ = writer.write_all(&[b' '; 1000]);
            let _ = writer.flush();
            // Unread request bytes make the close a reset.
            return;
        }
        let mut body = vec![0; length.min(1 << 20)];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let healthy = healthy_body(&head);
        let ok = match current {
            Mode::Healthy => respond(&mut writer, 200, &healthy),
            Mode::ServerError => respond(
                &mut writer,
                500,
                r#"{"status":"error","errorType":"internal","error":"injected failure"}"#,
            ),
            Mode::InvalidJson => respond(
                &mut writer,
                200,
                r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"#,
            ),
            Mode::Huge => {
                huge(&mut writer, sent);
                return;
            }
            Mode::Trickle => {
                let head = format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                    healthy.len()
                );
                if writer.write_all(head.as_bytes()).is_err() {
                    return;
                }
                for byte in healthy.bytes() {
                    if stop.load(Ordering::Relaxed) || writer.write_all(&[byte]).is_err() {
                        return;
                    }
                    let _ = writer.flush();
                    std::thread::sleep(Duration::from_millis(200));
                }
                true
            }
            Mode::ResetMidBody => unreachable!("answered above"),
        };
        if !ok {
            return;
        }
    }
}

fn respond(writer: &mut TcpStream, status: u16, body: &str) -> bool {
    write!(
        writer,
        "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .is_ok()
}

/// A chunked 200 of [`HUGE_BYTES`] in 64 KiB chunks, stopping when the client hangs up.
fn huge(writer: &mut TcpStream, sent: &AtomicU64) {
    let head =
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
    if writer.write_all(head.as_bytes()).is_err() {
        return;
    }
    let mut chunk =
        b"{\"status\":\"success\",\"data\":{\"resultType\":\"vector\",\"result\":[".to_vec();
    chunk.resize(64 << 10, b' ');
    let framed = [
        format!("{:x}\r\n", chunk.len()).into_bytes(),
        chunk,
        b"\r\n".to_vec(),
    ]
    .concat();
    let mut total = 0u64;
    while total < HUGE_BYTES {
        if writer.write_all(&framed).is_err() {
            return;
        }
        total += 64 << 10;
        sent.fetch_add(64 << 10, Ordering::SeqCst);
    }
    let _ = writer.write_all(b"0\r\n\r\n");
}

const MAX_RESPONSE_BYTES: u64 = 8 << 20;

/// The tests measure latency and memory: one at a time on a small machine.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The server on a synthetic cluster, at most `max_concurrency` upstream requests at once.
fn start_server(
    upstream: &FaultyUpstream,
    max_concurrency: usize,
) -> (ServerProcess, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let cluster = dir.path().join("cluster.json");
    let shape = ClusterShape {
        nodes: 4,
        allocations_per_device: 1,
        vendor_mix: true,
    };
    std::fs::write(&cluster, shape.list().to_string()).expect("write cluster");
    let cluster_arg = cluster.to_string_lossy().into_owned();
    let config = format!(
        "server:\n  http:\n    timeout: 10s\nprometheus:\n  address: {}\n  timeout: 2s\n  lookup_timeout: 500ms\n  max_concurrency: {max_concurrency}\n  max_response_bytes: {MAX_RESPONSE_BYTES}\nexporter:\n  interval: 1s\n  timeout: 3s\n",
        upstream.url()
    );
    let server = ServerProcess::start(Launch {
        config_yaml: &config,
        args: &["--snapshot", &cluster_arg],
        ..Launch::default()
    });
    assert!(
        server.wait_live(Duration::from_secs(10)),
        "{}",
        server.log()
    );
    (server, dir)
}

const LIST_ROUTES: [&str; 3] = ["/v1/gpus", "/v1/nodes", "/v1/containers"];

/// The slowest of one POST to each list route; each must be a 200 with a non-empty list.
fn slowest_list_reply(server: &ServerProcess) -> Duration {
    let mut slowest = Duration::ZERO;
    for route in LIST_ROUTES {
        let started = Instant::now();
        let reply = request(
            server.port,
            "POST",
            route,
            &[("Content-Type", "application/json")],
            b"{}",
        )
        .unwrap_or_else(|e| panic!("{route}: {e}"));
        let took = started.elapsed();
        assert_eq!(reply.status, 200, "{route}: {}", reply.text());
        let json = reply.json();
        let items = json
            .get("list")
            .or_else(|| json.get("items"))
            .and_then(|v| v.as_array())
            .map_or(0, Vec::len);
        assert!(items > 0, "{route} answered an empty list: {json}");
        slowest = slowest.max(took);
    }
    slowest
}

fn cycles(server: &ServerProcess, outcome: &str) -> f64 {
    let text = server.get("/metrics").map(|r| r.text()).unwrap_or_default();
    let prefix = format!("hami_webui_refresh_cycles_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(prefix.as_str()))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

fn failed_cycles(server: &ServerProcess) -> f64 {
    ["partial", "timeout", "skipped"]
        .iter()
        .map(|o| cycles(server, o))
        .sum()
}

fn vm_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// Waits until a cycle fully succeeds; returns how long that took.
fn time_to_ok_cycle(server: &ServerProcess, deadline: Duration) -> Duration {
    let before = cycles(server, "ok");
    let started = Instant::now();
    wait_for(deadline, || (cycles(server, "ok") > before).then_some(()))
        .unwrap_or_else(|| panic!("no successful cycle within {deadline:?}:\n{}", server.log()));
    started.elapsed()
}

#[test]
fn list_routes_readiness_and_recovery_survive_every_upstream_fault() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let upstream = FaultyUpstream::start();
    let (server, _dir) = start_server(&upstream, 2);
    time_to_ok_cycle(&server, Duration::from_secs(10));
    // Normal latency: the slowest of a few healthy rounds.
    let normal = (0..5)
        .map(|_| slowest_list_reply(&server))
        .max()
        .expect("rounds");
    let allowed = (normal * 2).max(Duration::from_millis(250));
    let mut report = vec![format!("normal {normal:?}")];

    for fault in [
        Mode::ServerError,
        Mode::InvalidJson,
        Mode::ResetMidBody,
        Mode::Huge,
        Mode::Trickle,
    ] {
        upstream.set(fault);
        let failed = failed_cycles(&server);
        wait_for(Duration::from_secs(10), || {
            (failed_cycles(&server) >= failed + 1.0).then_some(())
        })
        .unwrap_or_else(|| panic!("{fault:?}: no failed cycle:\n{}", server.log()));
        let slowest = (0..3)
            .map(|_| slowest_list_reply(&server))
            .max()
            .expect("rounds");
        // The lists' capacity lookups go to the upstream (as in Go) and fall back when they
        // fail. A trickling upstream holds them until `prometheus.lookup_timeout` (500 ms); a
        // huge answer until `max_response_bytes` (8 MiB) has been read and refused.
        let bound = match fault {
            Mode::Trickle => Duration::from_millis(500) + allowed,
            Mode::Huge => Duration::from_secs(2),
            _ => allowed,
        };
        assert!(
            slowest <= bound,
            "{fault:?}: lists took {slowest:?} (normal {normal:?})"
        );
        assert_eq!(
            server.get("/readyz").expect("readyz").status,
            200,
            "{fault:?}"
        );
        upstream.set(Mode::Healthy);
        // A cycle caught in the fault ends by its deadline (exporter.timeout, 3 s); the next
        // one starts within the interval (1 s).
        let recovery = time_to_ok_cycle(&server, Duration::from_secs(6));
        report.push(format!(
            "{fault:?}: lists {slowest:?}, recovery {recovery:?}"
        ));
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn a_200_mb_response_costs_at_most_twice_max_response_bytes_of_memory() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let upstream = FaultyUpstream::start();
    // One upstream request at a time: the bound is per response in flight.
    let (server, _dir) = start_server(&upstream, 1);
    time_to_ok_cycle(&server, Duration::from_secs(10));
    let pid = server.pid();
    let before = vm_rss_kib(pid);
    upstream.set(Mode::Huge);
    let mut peak = before;
    let failed = failed_cycles(&server);
    // Three cycles of refused 200 MB answers, plus the lists' lookups.
    let done = wait_for(Duration::from_secs(20), || {
        peak = peak.max(vm_rss_kib(pid));
        let _ = slowest_list_reply(&server);
        peak = peak.max(vm_rss_kib(pid));
        (failed_cycles(&server) >= failed + 3.0).then_some(())
    });
    assert!(done.is_some(), "no failed cycles:\n{}", server.log());
    upstream.set(Mode::Healthy);
    time_to_ok_cycle(&server, Duration::from_secs(6));
    let after = vm_rss_kib(pid);
    let sent = upstream.bytes_sent.load(Ordering::SeqCst);
    let limit_kib = 2 * MAX_RESPONSE_BYTES / 1024;
    eprintln!(
        "VmRSS before {before} KiB, peak {peak} KiB, after {after} KiB; upstream wrote {} MiB",
        sent >> 20
    );
    assert!(sent >= MAX_RESPONSE_BYTES, "the huge answers were sent");
    assert!(
        after.saturating_sub(before) <= limit_kib,
        "RSS grew {} KiB (limit {limit_kib} KiB)",
        after - before
    );
}
