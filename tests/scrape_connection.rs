//! The internal listener's own path for `GET /metrics` (`http::direct_scrape`), through a
//! real socket: the same head and body as actix-web's `/metrics`, the connection closed
//! after the one answer, a request line that arrives in pieces still routed by its path,
//! and a malformed scrape request answered `400`.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use flate2::read::MultiGzDecoder;
use hami_webui_server::cluster::{snapshot_file, ClusterSource};
use hami_webui_server::server::{self, Listeners};
use support::app;
use support::process::{request, Reply};
use support::upstream::{StubReply, StubServer};

const DEMO: &str = include_str!("../examples/demo-cluster.json");
const EMPTY_VECTOR: &str = r#"{"status":"success","data":{"resultType":"vector","result":[]}}"#;

/// Serves the demo cluster on a free port with a store that answers every query with no
/// samples; returns the port once the first cycle has published device families.
async fn serve() -> (u16, StubServer, tokio::sync::oneshot::Sender<()>) {
    let store = StubServer::start(StubReply::Json(200, EMPTY_VECTOR.to_string()));
    let config = app::config(&format!(
        "prometheus:\n  address: {}\nexporter:\n  interval: 1h\n",
        store.url()
    ));
    let internal = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = internal.local_addr().expect("addr").port();
    let export = snapshot_file::parse("demo-cluster.json", DEMO).expect("demo");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    actix_rt::spawn(server::run(
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
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let scrape = off_thread(move || request(port, "GET", "/metrics", &[], b"")).await;
        if scrape.is_ok_and(|r| !published_lines(&r.body).is_empty()) {
            break;
        }
        assert!(Instant::now() < deadline, "nothing published");
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
    (port, store, stop)
}

/// Blocking socket work off the actix thread, which runs the server under test.
async fn off_thread<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    actix_rt::task::spawn_blocking(work)
        .await
        .expect("test thread")
}

/// The exposition's lines without the self-metrics, which change from scrape to scrape.
fn published_lines(body: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(body)
        .lines()
        .filter(|l| !l.contains("hami_webui_") && !l.contains("process_"))
        .filter(|l| !l.is_empty())
        .map(str::to_string)
        .collect()
}

fn gunzip(body: &[u8]) -> Vec<u8> {
    let mut plain = Vec::new();
    MultiGzDecoder::new(body)
        .read_to_end(&mut plain)
        .expect("a gzip body");
    plain
}

/// Sends `parts` with a pause between them, then reads until the server closes.
fn exchange(port: u16, parts: &[&[u8]], pause: Duration) -> Vec<u8> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    stream.set_nodelay(true).expect("nodelay");
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            std::thread::sleep(pause);
        }
        stream.write_all(part).expect("write");
    }
    let mut raw = Vec::new();
    stream
        .read_to_end(&mut raw)
        .expect("the server closes the connection");
    raw
}

/// The status line of every answer in `raw` (answers follow each other without a break).
fn status_lines(raw: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(raw)
        .split("HTTP/1.1 ")
        .skip(1)
        .map(|answer| format!("HTTP/1.1 {}", answer.lines().next().unwrap_or_default()))
        .collect()
}

fn assert_same_answer(direct: &Reply, actix: &Reply, gzip: bool) {
    assert_eq!(direct.status, 200);
    assert_eq!(actix.status, 200);
    for name in [
        "content-type",
        "content-encoding",
        "x-content-type-options",
        "cache-control",
    ] {
        assert_eq!(direct.header(name), actix.header(name), "{name}");
    }
    assert_eq!(direct.header("connection"), Some("close"));
    assert_eq!(
        direct.header("content-length"),
        Some(direct.body.len().to_string().as_str())
    );
    let (direct_text, actix_text) = if gzip {
        assert_eq!(direct.header("content-encoding"), Some("gzip"));
        (gunzip(&direct.body), gunzip(&actix.body))
    } else {
        assert_eq!(direct.header("content-encoding"), None);
        (direct.body.clone(), actix.body.clone())
    };
    let published = published_lines(&direct_text);
    assert!(!published.is_empty());
    assert_eq!(published, published_lines(&actix_text));
    assert!(String::from_utf8_lossy(&direct_text).contains("hami_webui_build_info"));
}

#[actix_rt::test]
async fn a_scrape_gets_the_same_answer_as_through_actix_web_and_its_own_closing_connection() {
    let (port, _store, _stop) = serve().await;
    for gzip in [true, false] {
        let headers: &'static [(&str, &str)] = if gzip {
            &[("Accept-Encoding", "gzip")]
        } else {
            &[]
        };
        let direct = off_thread(move || request(port, "GET", "/metrics", headers, b""))
            .await
            .expect("direct scrape");
        // Any other method on /metrics is actix-web's.
        let actix = off_thread(move || request(port, "POST", "/metrics", headers, b""))
            .await
            .expect("actix-web scrape");
        assert_same_answer(&direct, &actix, gzip);
    }

    // A scrape's connection closes after its answer even when more requests follow on it.
    let raw = off_thread(move || {
        exchange(
            port,
            &[b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\nGET /readyz HTTP/1.1\r\nHost: x\r\n\r\n"],
            Duration::ZERO,
        )
    })
    .await;
    assert_eq!(status_lines(&raw), ["HTTP/1.1 200 OK"]);
    // Other connections stay actix-web's, with keep-alive.
    let raw = off_thread(move || {
        exchange(
            port,
            &[b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\nGET /livez HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"],
            Duration::ZERO,
        )
    })
    .await;
    assert_eq!(
        status_lines(&raw).len(),
        2,
        "{}",
        String::from_utf8_lossy(&raw)
    );
}

#[actix_rt::test]
async fn a_request_line_in_pieces_is_routed_by_its_whole_path_and_a_bad_scrape_gets_400() {
    let (port, _store, _stop) = serve().await;
    let pause = Duration::from_millis(30);
    let raw = off_thread(move || {
        exchange(
            port,
            &[b"GE", b"T /met", b"rics HTTP/1.1\r\nHost: x\r\n\r\n"],
            pause,
        )
    })
    .await;
    let text = String::from_utf8_lossy(&raw);
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text:.200}");
    assert!(text.contains("\r\nconnection: close\r\n"), "{text:.400}");
    assert!(text.contains("hami_webui_build_info"));

    let raw = off_thread(move || {
        exchange(
            port,
            &[
                b"GET /met",
                b"ricsx HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
            ],
            pause,
        )
    })
    .await;
    assert_eq!(status_lines(&raw), ["HTTP/1.1 404 Not Found"]);

    let raw = off_thread(move || {
        exchange(
            port,
            &[b"GET /metrics HTTP/1.1\r\nHost: x\r\nno colon here\r\n\r\n"],
            Duration::ZERO,
        )
    })
    .await;
    assert_eq!(status_lines(&raw), ["HTTP/1.1 400 Bad Request"]);
}
