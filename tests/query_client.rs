//! The `QueryClient` actor against real upstreams (Prometheus, VictoriaMetrics) and against
//! test servers that stall, stream without end, demand TLS or count what reaches them.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use actix::Addr;
use hami_webui_server::config::{
    AuthorizationConfig, BasicAuthConfig, PrometheusConfig, TlsConfig,
};
use hami_webui_server::query_client::{
    Lane, Query, QueryClient, QueryData, QueryError, QueryOutput, RunQuery,
};
use hami_webui_server::telemetry::SelfMetrics;

use support::process::free_port;
use support::upstream::{
    fixture_values, one_sample_json, query_api, CountingProxy, FixtureExporter, Prometheus,
    StalledServer, StubReply, StubServer, TestPki, VictoriaMetrics, FIXTURE_EXPOSITION,
};

fn config(address: &str) -> PrometheusConfig {
    PrometheusConfig {
        address: address.to_string(),
        timeout: Duration::from_secs(10),
        lookup_timeout: Duration::from_secs(5),
        auth: None,
        tls: TlsConfig::default(),
        authorization: None,
        basic_auth: None,
        max_concurrency: 8,
        max_queue: 256,
        max_response_bytes: 64 << 20,
        path_prefix: String::new(),
    }
}

fn start(config: &PrometheusConfig) -> (Addr<QueryClient>, SelfMetrics) {
    let metrics = SelfMetrics::new().expect("self-metrics");
    let addr = QueryClient::start(config, &metrics).expect("query client starts");
    (addr, metrics)
}

fn instant(expr: &str) -> RunQuery {
    RunQuery {
        query: Query::Instant {
            expr: expr.to_string(),
            time: None,
        },
        deadline: None,
        lane: Lane::Interactive,
    }
}

async fn run(client: &Addr<QueryClient>, msg: RunQuery) -> Result<Arc<QueryOutput>, QueryError> {
    client.send(msg).await.expect("actor answers")
}

fn now_secs() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// `device_uuid → value` of a vector, sorted.
fn by_device(data: &QueryData) -> Vec<(String, f64)> {
    let QueryData::Vector(samples) = data else {
        panic!("expected a vector, got {data:?}");
    };
    let mut out: Vec<(String, f64)> = samples
        .iter()
        .map(|s| {
            let uuid = s.metric.get("device_uuid").expect("device_uuid label");
            (uuid.to_string(), s.value)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// Every point of every series equals the fixture's value for its device.
fn assert_matrix_matches_fixture(data: &QueryData, family: &str, min_points: usize) {
    let QueryData::Matrix(series) = data else {
        panic!("expected a matrix, got {data:?}");
    };
    let expected: BTreeMap<String, f64> = fixture_values(family).into_iter().collect();
    assert_eq!(series.len(), expected.len(), "{series:?}");
    for s in series {
        let want = expected[s.metric.get("device_uuid").expect("device_uuid label")];
        assert!(s.values.len() >= min_points, "{s:?}");
        assert!(s.values.iter().all(|&(_, v)| v == want), "{s:?}");
        assert!(
            s.values.windows(2).all(|w| w[0].0 < w[1].0),
            "time order: {s:?}"
        );
    }
}

#[actix_rt::test]
async fn prometheus_instant_and_range_results_equal_the_fixture_and_errors_keep_its_message() {
    let exporter = FixtureExporter::start(FIXTURE_EXPOSITION);
    let prometheus = Prometheus::start(&[&exporter.target()]);
    prometheus.wait_for_series("hami_memory_size", 2, Duration::from_secs(20));
    let (client, metrics) = start(&config(&prometheus.url()));

    for family in ["hami_core_size", "hami_memory_size"] {
        let out = run(&client, instant(family)).await.expect("instant query");
        assert_eq!(by_device(&out.data), fixture_values(family));
        assert!(out.warnings.is_empty());
    }

    let end = now_secs();
    let range = RunQuery {
        query: Query::Range {
            expr: "hami_core_size".into(),
            start: end - 5.0,
            end,
            step: Duration::from_secs(1),
        },
        deadline: Some(Instant::now() + Duration::from_secs(5)),
        lane: Lane::Refresh,
    };
    let out = run(&client, range).await.expect("range query");
    assert_matrix_matches_fixture(&out.data, "hami_core_size", 1);

    // Bad PromQL: the upstream's own error, word for word.
    let direct = query_api(prometheus.port, "sum(hami_core_size");
    assert!(direct.is_none(), "the API refuses it with 400");
    let err = run(&client, instant("sum(hami_core_size"))
        .await
        .expect_err("bad PromQL fails");
    let QueryError::Upstream {
        status,
        error_type,
        message,
    } = err
    else {
        panic!("expected Upstream, got {err:?}");
    };
    assert_eq!((status, error_type.as_str()), (400, "bad_data"));
    assert!(message.contains("parse error"), "{message}");
    let own = support::process::request(
        prometheus.port,
        "GET",
        "/api/v1/query?query=sum%28hami_core_size",
        &[],
        b"",
    )
    .expect("direct query")
    .json();
    assert_eq!(own["error"].as_str(), Some(message.as_str()));

    let text = metrics.render();
    assert!(
        text.contains(r#"hami_webui_upstream_requests_total{kind="instant",outcome="success"} 2"#),
        "{text}"
    );
    assert!(text.contains(r#"outcome="upstream_error"} 1"#), "{text}");
    assert!(text.contains("hami_webui_upstream_request_duration_seconds_bucket"));
}

#[actix_rt::test]
async fn victoria_metrics_instant_and_range_results_equal_the_fixture() {
    let vm = VictoriaMetrics::start();
    // Twelve points 10 s apart, ending 10 s ago, aligned to the step.
    let last = ((now_secs() as i64 - 10) / 10) * 10;
    let first = last - 110;
    let mut import = String::new();
    for t in (first..=last).step_by(10) {
        for line in FIXTURE_EXPOSITION.lines().filter(|l| !l.starts_with('#')) {
            import.push_str(&format!("{line} {}\n", t * 1000));
        }
    }
    vm.import(&import);
    let (client, _) = start(&config(&vm.url()));

    for family in ["hami_core_size", "hami_memory_size"] {
        let out = run(&client, instant(family)).await.expect("instant query");
        assert_eq!(by_device(&out.data), fixture_values(family));
    }
    let range = RunQuery {
        query: Query::Range {
            expr: "hami_memory_size".into(),
            start: first as f64,
            end: last as f64,
            step: Duration::from_secs(10),
        },
        deadline: None,
        lane: Lane::Interactive,
    };
    let out = run(&client, range).await.expect("range query");
    assert_matrix_matches_fixture(&out.data, "hami_memory_size", 12);

    let err = run(&client, instant("sum(hami_core_size"))
        .await
        .expect_err("bad MetricsQL fails");
    assert!(
        matches!(&err, QueryError::Upstream { status, message, .. } if *status >= 400 && message.contains("sum(hami_core_size")),
        "{err:?}"
    );
}

#[actix_rt::test]
async fn stalled_upstream_times_out_within_the_deadline() {
    let stalled = StalledServer::start();
    let (client, metrics) = start(&config(&stalled.url()));
    let started = Instant::now();
    let mut msg = instant("up");
    msg.deadline = Some(started + Duration::from_millis(400));
    let err = run(&client, msg).await.expect_err("no answer");
    let elapsed = started.elapsed();
    assert_eq!(err, QueryError::Timeout);
    assert!(elapsed >= Duration::from_millis(400), "{elapsed:?}");
    assert!(elapsed < Duration::from_millis(500), "{elapsed:?}");
    assert!(metrics
        .render()
        .contains(r#"hami_webui_upstream_requests_total{kind="instant",outcome="timeout"} 1"#));
    assert!(metrics.render().contains("hami_webui_upstream_inflight 0"));
}

#[actix_rt::test]
async fn stalled_answer_after_the_request_was_read_also_times_out() {
    let stub = StubServer::start(StubReply::Stall);
    let (client, _) = start(&config(&stub.url()));
    let started = Instant::now();
    let mut msg = instant("up");
    msg.deadline = Some(started + Duration::from_millis(300));
    assert_eq!(run(&client, msg).await, Err(QueryError::Timeout));
    assert!(started.elapsed() < Duration::from_millis(400));
}

#[actix_rt::test]
async fn upstream_down_is_unreachable_within_one_second() {
    let (client, _) = start(&config(&format!("http://127.0.0.1:{}", free_port())));
    let started = Instant::now();
    let err = run(&client, instant("up"))
        .await
        .expect_err("nothing listens");
    assert!(matches!(err, QueryError::Unreachable(_)), "{err:?}");
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[actix_rt::test]
async fn oversized_response_is_refused_while_streaming() {
    let total = 512u64 << 20;
    let stub = StubServer::start(StubReply::Endless { total });
    let mut cfg = config(&stub.url());
    cfg.max_response_bytes = 1 << 20;
    let (client, metrics) = start(&cfg);
    let err = run(&client, instant("up")).await.expect_err("too large");
    assert_eq!(err, QueryError::TooLarge { limit: 1 << 20 });
    // The server stops when we hang up; it never gets to send the whole body.
    let settled = support::process::wait_for(Duration::from_secs(5), || {
        let a = stub.bytes_sent();
        std::thread::sleep(Duration::from_millis(50));
        (a == stub.bytes_sent()).then_some(a)
    })
    .expect("server stops writing");
    assert!(settled < 64 << 20, "server wrote {settled} bytes");
    assert!(metrics.render().contains(r#"outcome="too_large"} 1"#));

    // A declared Content-Length beyond the limit is refused before reading the body.
    let big = format!("{{\"pad\":\"{}\"}}", "x".repeat(2 << 20));
    stub.set_reply(StubReply::Json(200, big));
    let err = run(&client, instant("up2")).await.expect_err("too large");
    assert_eq!(err, QueryError::TooLarge { limit: 1 << 20 });
}

#[actix_rt::test]
async fn request_carries_path_prefix_form_and_remaining_timeout() {
    let stub = StubServer::start(StubReply::Json(200, one_sample_json("7")));
    let mut cfg = config(&format!("{}/", stub.url()));
    cfg.path_prefix = "/select/0/prometheus".into();
    let (client, _) = start(&cfg);
    let mut msg = instant("sum(up)");
    msg.deadline = Some(Instant::now() + Duration::from_secs(5));
    let out = run(&client, msg).await.expect("answer");
    assert!(matches!(&out.data, QueryData::Vector(v) if v[0].value == 7.0));
    let seen = &stub.requests()[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/select/0/prometheus/api/v1/query");
    assert_eq!(seen.form("query").as_deref(), Some("sum(up)"));
    assert_eq!(seen.form("time"), None);
    let timeout = seen.form("timeout").expect("timeout parameter");
    let timeout =
        hami_webui_server::config::duration::parse_go_duration(&timeout).expect("Go duration");
    assert!(
        timeout <= Duration::from_secs(5) && timeout > Duration::from_secs(4),
        "{timeout:?}"
    );
    assert_eq!(seen.header("authorization"), None);
}

#[actix_rt::test]
async fn servers_refusing_post_are_asked_again_with_get() {
    let stub = StubServer::start(StubReply::Json(405, "{}".into()));
    let (client, _) = start(&config(&stub.url()));
    // The stub answers 405 to everything: the POST and the GET retry both reach it, and
    // the caller gets the upstream's status.
    let pending = run(&client, instant("up"));
    let err = pending.await.expect_err("405 twice");
    assert!(
        matches!(err, QueryError::Upstream { status: 405, .. }),
        "{err:?}"
    );
    let seen = stub.requests();
    assert_eq!(seen.len(), 2, "{seen:?}");
    assert_eq!(
        (seen[0].method.as_str(), seen[1].method.as_str()),
        ("POST", "GET")
    );
    assert!(
        seen[1].path.starts_with("/api/v1/query?query=up&timeout="),
        "{}",
        seen[1].path
    );
}

#[actix_rt::test]
async fn verbatim_auth_header_is_sent() {
    let stub = StubServer::start(StubReply::Json(200, one_sample_json("1")));
    let mut cfg = config(&stub.url());
    cfg.auth = Some("Token abc".into());
    let (client, _) = start(&cfg);
    run(&client, instant("up")).await.expect("answer");
    assert_eq!(
        stub.requests()[0].header("authorization"),
        Some("Token abc")
    );
}

#[actix_rt::test]
async fn rotated_authorization_credentials_file_is_picked_up() {
    let stub = StubServer::start(StubReply::Json(200, one_sample_json("1")));
    let dir = tempfile::tempdir().expect("temp dir");
    let token = dir.path().join("token");
    std::fs::write(&token, "first-token\n").expect("write token");
    let mut cfg = config(&stub.url());
    cfg.authorization = Some(AuthorizationConfig {
        scheme: "Bearer".into(),
        credentials_file: token.clone(),
    });
    let (client, _) = start(&cfg);
    run(&client, instant("a")).await.expect("answer");
    std::fs::write(&token, "second-token-rotated\n").expect("rotate token");
    run(&client, instant("b")).await.expect("answer");
    let seen = stub.requests();
    assert_eq!(seen[0].header("authorization"), Some("Bearer first-token"));
    assert_eq!(
        seen[1].header("authorization"),
        Some("Bearer second-token-rotated")
    );

    // A vanished file is an error that names the file, not the secret.
    std::fs::remove_file(&token).expect("remove token");
    let err = run(&client, instant("c"))
        .await
        .expect_err("no credentials");
    let text = err.to_string();
    assert!(
        text.contains("token") && !text.contains("second-token"),
        "{text}"
    );
}

#[actix_rt::test]
async fn rotated_basic_auth_files_are_picked_up() {
    use base64::Engine as _;
    let stub = StubServer::start(StubReply::Json(200, one_sample_json("1")));
    let dir = tempfile::tempdir().expect("temp dir");
    let (user, pass) = (dir.path().join("user"), dir.path().join("pass"));
    std::fs::write(&user, "alice\n").expect("write user");
    std::fs::write(&pass, "old-password").expect("write password");
    let mut cfg = config(&stub.url());
    cfg.basic_auth = Some(BasicAuthConfig {
        username_file: user.clone(),
        password_file: pass.clone(),
    });
    let (client, _) = start(&cfg);
    run(&client, instant("a")).await.expect("answer");
    std::fs::write(&pass, "new-password-2").expect("rotate password");
    run(&client, instant("b")).await.expect("answer");
    let basic = |s: &str| {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(s)
        )
    };
    let seen = stub.requests();
    assert_eq!(
        seen[0].header("authorization"),
        Some(basic("alice:old-password").as_str())
    );
    assert_eq!(
        seen[1].header("authorization"),
        Some(basic("alice:new-password-2").as_str())
    );
}

fn tls_config(pki: &TestPki) -> TlsConfig {
    TlsConfig {
        ca_file: Some(pki.ca_file.clone()),
        ..TlsConfig::default()
    }
}

#[actix_rt::test]
async fn tls_is_verified_against_ca_file_and_refused_without_it() {
    let pki = TestPki::new();
    let stub = StubServer::start_tls(StubReply::Json(200, one_sample_json("3")), &pki, false);

    let mut cfg = config(&stub.url());
    cfg.tls = tls_config(&pki);
    let (client, _) = start(&cfg);
    run(&client, instant("up"))
        .await
        .expect("verified with ca_file");

    let (unverified, _) = start(&config(&stub.url()));
    let started = Instant::now();
    let err = run(&unverified, instant("up"))
        .await
        .expect_err("unknown CA");
    assert!(
        matches!(&err, QueryError::Unreachable(m) if m.to_lowercase().contains("certificate")),
        "{err:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(1));

    let mut insecure = config(&stub.url());
    insecure.tls.insecure_skip_verify = true;
    let (client, _) = start(&insecure);
    run(&client, instant("up"))
        .await
        .expect("accepted without verification");
}

#[actix_rt::test]
async fn server_name_overrides_the_verified_name() {
    let pki = TestPki::new();
    let stub = StubServer::start_tls(StubReply::Json(200, one_sample_json("3")), &pki, false);
    let mut cfg = config(&stub.url());
    cfg.tls = tls_config(&pki);
    cfg.tls.server_name = Some("metrics.internal".into());
    let (client, _) = start(&cfg);
    run(&client, instant("up"))
        .await
        .expect("name in the certificate");
    assert_eq!(
        stub.requests()[0].header("host"),
        Some(format!("127.0.0.1:{}", stub.port).as_str())
    );

    cfg.tls.server_name = Some("elsewhere.example".into());
    let (client, _) = start(&cfg);
    let err = run(&client, instant("up"))
        .await
        .expect_err("name not in the certificate");
    assert!(matches!(err, QueryError::Unreachable(_)), "{err:?}");
}

#[actix_rt::test]
async fn client_certificate_is_presented_to_a_server_requiring_one() {
    let pki = TestPki::new();
    let stub = StubServer::start_tls(StubReply::Json(200, one_sample_json("3")), &pki, true);

    let mut cfg = config(&stub.url());
    cfg.tls = tls_config(&pki);
    let (without, _) = start(&cfg);
    let err = run(&without, instant("up"))
        .await
        .expect_err("no client certificate");
    assert!(matches!(err, QueryError::Unreachable(_)), "{err:?}");

    cfg.tls.cert_file = Some(pki.client_cert_file.clone());
    cfg.tls.key_file = Some(pki.client_key_file.clone());
    let (with, _) = start(&cfg);
    run(&with, instant("up"))
        .await
        .expect("client certificate accepted");
}

#[actix_rt::test]
async fn unreadable_tls_files_fail_at_start_naming_the_key() {
    let mut cfg = config("https://127.0.0.1:1");
    cfg.tls.ca_file = Some("/nonexistent/ca.pem".into());
    let metrics = SelfMetrics::new().expect("self-metrics");
    let err = QueryClient::start(&cfg, &metrics).expect_err("bad CA file");
    assert!(
        err.to_string()
            .starts_with("prometheus.tls.ca_file: /nonexistent/ca.pem"),
        "{err}"
    );
}

#[actix_rt::test]
async fn identical_concurrent_queries_share_one_upstream_request() {
    let stub = StubServer::start(StubReply::Json(200, one_sample_json("5")));
    let proxy = CountingProxy::start(stub.port);
    proxy.set_delay(Duration::from_millis(300));
    let (client, metrics) = start(&config(&proxy.url()));

    let answers =
        futures::future::join_all((0..100).map(|_| run(&client, instant("sum(up)")))).await;
    let first = answers[0].clone().expect("answer");
    for answer in &answers {
        let out = answer.as_ref().expect("every caller gets the answer");
        assert!(Arc::ptr_eq(out, &first), "one shared result");
    }
    assert_eq!(proxy.request_count(), 1);
    assert!(metrics
        .render()
        .contains("hami_webui_upstream_coalesced_total 99"));

    // Once answered, the same query goes upstream again (no caching).
    run(&client, instant("sum(up)")).await.expect("answer");
    assert_eq!(proxy.request_count(), 2);
}

#[actix_rt::test]
async fn different_concurrent_queries_never_exceed_max_concurrency_at_the_proxy() {
    let stub = StubServer::start(StubReply::Json(200, one_sample_json("5")));
    let proxy = CountingProxy::start(stub.port);
    proxy.set_delay(Duration::from_millis(40));
    let mut cfg = config(&proxy.url());
    cfg.max_concurrency = 4;
    let (client, _) = start(&cfg);

    let answers = futures::future::join_all((0..100).map(|i| {
        let lane = if i % 3 == 0 {
            Lane::Refresh
        } else {
            Lane::Interactive
        };
        let mut msg = instant(&format!("up{{i=\"{i}\"}}"));
        msg.lane = lane;
        run(&client, msg)
    }))
    .await;
    assert!(answers.iter().all(Result::is_ok), "{answers:?}");
    assert_eq!(proxy.request_count(), 100);
    assert!(proxy.max_in_flight() <= 4, "{}", proxy.max_in_flight());
    assert!(proxy.max_in_flight() >= 2, "requests did run in parallel");
}

#[actix_rt::test]
async fn callers_beyond_the_queue_are_refused_at_once() {
    let stub = StubServer::start(StubReply::Json(200, one_sample_json("5")));
    let proxy = CountingProxy::start(stub.port);
    proxy.set_delay(Duration::from_millis(300));
    let mut cfg = config(&proxy.url());
    cfg.max_concurrency = 1;
    cfg.max_queue = 2;
    let (client, metrics) = start(&cfg);

    let started = Instant::now();
    let pending: Vec<_> = (0..5)
        .map(|i| client.send(instant(&format!("q{i}"))))
        .collect();
    let answers = futures::future::join_all(pending).await;
    let outcomes: Vec<_> = answers
        .into_iter()
        .map(|a| a.expect("actor answers").map(|_| ()))
        .collect();
    assert_eq!(
        outcomes,
        vec![
            Ok(()),
            Ok(()),
            Ok(()),
            Err(QueryError::Overloaded),
            Err(QueryError::Overloaded)
        ]
    );
    assert_eq!(proxy.max_in_flight(), 1);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(metrics.render().contains(r#"outcome="overloaded"} 2"#));
}
