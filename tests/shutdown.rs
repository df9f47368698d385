//! Graceful stop: the listener stops accepting at once, a request already in flight still
//! gets its whole answer, and the server ends within `server.shutdown_timeout` — on SIGTERM
//! for the process, and in process when `server::run`'s shutdown future resolves.

mod support;

use std::net::TcpListener;
use std::time::{Duration, Instant};

use hami_webui_server::cluster::{snapshot_file, ClusterSource};
use hami_webui_server::server::{self, Listeners};
use support::app;
use support::process::{request, wait_for, Launch, ServerProcess};
use support::upstream::{StalledServer, StubReply, StubServer};

const DEMO: &str = include_str!("../examples/demo-cluster.json");

/// `request` off the actix thread, which runs the caches the request needs.
async fn request_async(
    port: u16,
    method: &'static str,
    path: &'static str,
    body: &'static [u8],
) -> std::io::Result<support::process::Reply> {
    let headers = [("Content-Type", "application/json")];
    actix_rt::task::spawn_blocking(move || request(port, method, path, &headers, body))
        .await
        .expect("request thread")
}

#[actix_rt::test]
async fn run_serves_until_its_shutdown_future_resolves_then_drains() {
    // A pass-through query against a store that reads and never answers fails after
    // prometheus.timeout (2 s): the in-flight request of this test.
    let store = StubServer::start(StubReply::Stall);
    let config = app::config(&format!(
        "prometheus:\n  address: {}\n  timeout: 2s\nserver:\n  shutdown_timeout: 10s\nexporter:\n  interval: 1h\n",
        store.url()
    ));
    let internal = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = internal.local_addr().expect("addr").port();
    let export = snapshot_file::parse("demo-cluster.json", DEMO).expect("demo");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = actix_rt::spawn(server::run(
        config,
        ClusterSource::Snapshot(export),
        Listeners {
            internal,
            public: None,
        },
        async {
            let _ = stopped.await;
        },
    ));

    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let ready = request_async(port, "GET", "/readyz", b"").await;
        if ready.is_ok_and(|r| r.status == 200) {
            break;
        }
        assert!(Instant::now() < deadline, "never ready");
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let listed = request_async(port, "POST", "/v1/gpus", b"{}")
        .await
        .expect("gpus");
    assert_eq!(listed.status, 200, "{}", listed.text());

    let in_flight = actix_rt::spawn(request_async(
        port,
        "POST",
        "/v1/monitor/query/instant-vector",
        br#"{"query":"up"}"#,
    ));
    // Stop once the query has reached the store, i.e. the request is inside its handler.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !store
        .requests()
        .iter()
        .any(|r| String::from_utf8_lossy(&r.body).contains("query=up"))
    {
        assert!(
            Instant::now() < deadline,
            "the query never reached the store"
        );
        actix_rt::time::sleep(Duration::from_millis(20)).await;
    }
    let stop_sent = Instant::now();
    stop.send(()).expect("server running");

    let reply = in_flight
        .await
        .expect("request task")
        .expect("the in-flight request was answered, not cut");
    assert_eq!(reply.status, 523, "{}", reply.text());
    let ended = actix_rt::time::timeout(Duration::from_secs(12), serving)
        .await
        .expect("run returns within the shutdown timeout")
        .expect("run task");
    assert!(ended.is_ok(), "{ended:?}");
    assert!(stop_sent.elapsed() < Duration::from_secs(12));
    assert!(
        request_async(port, "GET", "/livez", b"").await.is_err(),
        "the listener still accepts after run returned"
    );
}

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
