//! What idle, slow and numerous clients can do to the server: a thousand idle connections
//! must not delay the probes, and a client that trickles its request head is disconnected
//! after `server.http.client_request_timeout`.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use support::process::{Launch, ServerProcess};

#[test]
fn a_thousand_idle_connections_do_not_delay_liveness() {
    let server = ServerProcess::start(Launch {
        args: &[
            "--snapshot",
            concat!(env!("CARGO_MANIFEST_DIR"), "/examples/demo-cluster.json"),
        ],
        ..Launch::default()
    });
    assert!(
        server.wait_live(Duration::from_secs(10)),
        "{}",
        server.log()
    );
    let idle: Vec<TcpStream> = (0..1000)
        .filter_map(|_| TcpStream::connect(("127.0.0.1", server.port)).ok())
        .collect();
    assert_eq!(idle.len(), 1000, "all idle connections accepted");
    let mut slowest = Duration::ZERO;
    for _ in 0..20 {
        let started = Instant::now();
        let reply = server.get("/livez").unwrap();
        slowest = slowest.max(started.elapsed());
        assert_eq!(reply.status, 200);
    }
    assert!(
        slowest < Duration::from_millis(100),
        "/livez took {slowest:?} with 1,000 idle connections"
    );
    drop(idle);
}

#[test]
fn slowloris_request_heads_are_cut_off_after_the_client_request_timeout() {
    let server = ServerProcess::start(Launch {
        config_yaml: "server:\n  http:\n    client_request_timeout: 1s\n",
        ..Launch::default()
    });
    assert!(
        server.wait_live(Duration::from_secs(10)),
        "{}",
        server.log()
    );
    let mut stream = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    // Part of a request head, then nothing more.
    stream
        .write_all(b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Slow: ")
        .unwrap();
    let mut reply = Vec::new();
    let _ = stream.read_to_end(&mut reply);
    let closed_after = started.elapsed();
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(5),
        "closed after {closed_after:?}"
    );
    let text = String::from_utf8_lossy(&reply);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "{text}"
    );
}
