//! Graceful stop on SIGTERM: the listener stops accepting at once, a request already in flight
//! still gets its whole answer, and the process exits 0 within `server.shutdown_timeout`.

mod support;

use std::time::{Duration, Instant};

use support::process::{request, wait_for, Launch, ServerProcess};
use support::upstream::StalledServer;

#[test]
fn sigterm_lets_the_in_flight_request_finish_then_exits_0() {
    // A query against a store that never answers takes prometheus.timeout (3 s) to fail.
    let stalled = StalledServer::start();
    let config = format!(
        "prometheus:\n  address: {}\n  timeout: 3s\nserver:\n  shutdown_timeout: 10s\n",
        stalled.url()
    );
    let mut server = ServerProcess::start(Launch {
        config_yaml: &config,
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
    let port = server.port;
    let in_flight = std::thread::spawn(move || {
        let started = Instant::now();
        let reply = request(
            port,
            "POST",
            "/v1/monitor/query/instant-vector",
            &[("Content-Type", "application/json")],
            br#"{"query":"up"}"#,
        );
        (reply, started.elapsed())
    });
    // Let the request reach the handler, then stop.
    let logged = wait_for(Duration::from_secs(5), || {
        std::thread::sleep(Duration::from_millis(200));
        Some(())
    });
    assert!(logged.is_some());
    let stop_sent = Instant::now();
    server.terminate();

    // New connections are refused soon after the signal.
    let refused = wait_for(Duration::from_secs(2), || server.get("/livez").err());
    assert!(refused.is_some(), "listener still accepting after SIGTERM");

    let (reply, took) = in_flight.join().unwrap();
    let reply = reply.expect("the in-flight request was answered, not cut");
    assert_eq!(reply.status, 523, "{}", reply.text());
    assert!(
        took >= Duration::from_secs(2),
        "answered after the upstream timeout ({took:?})"
    );

    let status = server
        .wait_exit(Duration::from_secs(12))
        .expect("exits within the shutdown timeout");
    assert_eq!(status.code(), Some(0), "{}", server.log());
    assert!(stop_sent.elapsed() < Duration::from_secs(12));
    assert!(server.log().contains("stopping"), "{}", server.log());
}
