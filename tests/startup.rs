//! Start-up, health, configuration errors and shutdown of the real binary: what an operator
//! sees in the first seconds, whether or not the cluster is reachable.

mod support;

use std::time::{Duration, Instant};

use support::process::{run_to_exit, Launch, ServerProcess};

#[test]
fn serves_liveness_within_a_second_while_the_api_server_is_unreachable() {
    let started = Instant::now();
    let mut server = ServerProcess::start(Launch::default());
    assert!(
        server.wait_live(Duration::from_secs(1)),
        "/livez not 200 within 1 s; log:\n{}",
        server.log()
    );
    assert!(started.elapsed() < Duration::from_secs(2));

    let ready = server.get("/readyz").unwrap();
    assert_eq!(ready.status, 503);
    assert_eq!(
        ready.json(),
        serde_json::json!({"ready": false, "waiting_for": ["nodes", "pods", "lists"]})
    );

    let metrics = server.get("/metrics").unwrap();
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = metrics.text();
    assert!(text.contains("hami_webui_build_info{"), "{text}");
    assert!(text.contains("process_resident_memory_bytes"), "{text}");

    // Still serving after several failed contacts with the API server.
    let retried = support::process::wait_for(Duration::from_secs(5), || {
        server.log().contains("not reachable yet").then_some(())
    });
    assert!(retried.is_some(), "no retry logged:\n{}", server.log());
    assert!(server.is_running());
    assert_eq!(server.get("/livez").unwrap().status, 200);
}

#[test]
fn invalid_duration_in_the_file_exits_2_naming_the_key() {
    let (code, stderr) = run_to_exit("exporter:\n  interval: abc\n", &[]);
    assert_eq!(code, Some(2), "stderr: {stderr}");
    assert_eq!(
        stderr.trim(),
        "config: exporter.interval: invalid duration \"abc\""
    );
}

#[test]
fn invalid_duration_in_the_environment_exits_2_naming_the_key() {
    let (code, stderr) = run_to_exit("", &[("HAMI_WEBUI__EXPORTER__INTERVAL", "abc")]);
    assert_eq!(code, Some(2), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("exporter.interval"), "{stderr}");
}

#[test]
fn unreadable_config_file_exits_2_without_a_backtrace() {
    let output = std::process::Command::new(support::process::BINARY)
        .args(["--conf", "/nonexistent/hami/config.yaml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.starts_with("config: "), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn unknown_routes_and_methods_get_json_errors() {
    let server = ServerProcess::start(Launch::default());
    assert!(server.wait_live(Duration::from_secs(5)));

    let missing = server.get("/v1/nope").unwrap();
    assert_eq!(missing.status, 404);
    let body = missing.json();
    assert_eq!(body["code"], 404);
    assert_eq!(body["reason"], "ROUTE_NOT_FOUND");
    assert!(body["message"].is_string());
    assert_eq!(body["metadata"], serde_json::json!({}));

    let wrong = support::process::request(server.port, "DELETE", "/livez", &[], b"").unwrap();
    assert_eq!(wrong.status, 405);
    assert_eq!(wrong.json()["reason"], "METHOD_NOT_ALLOWED");
}

#[test]
fn sigterm_stops_gracefully_with_status_0() {
    let mut server = ServerProcess::start(Launch::default());
    assert!(server.wait_live(Duration::from_secs(5)));
    server.terminate();
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("exits after SIGTERM");
    assert_eq!(status.code(), Some(0), "log:\n{}", server.log());
}

#[test]
fn json_log_format_writes_one_object_per_line() {
    let server = ServerProcess::start(Launch {
        args: &["--log-format", "json"],
        ..Launch::default()
    });
    assert!(server.wait_live(Duration::from_secs(5)));
    assert_eq!(server.get("/v1/nope").unwrap().status, 404);
    let logged = support::process::wait_for(Duration::from_secs(5), || {
        let log = server.log();
        log.contains("\"status\":404").then_some(log)
    })
    .unwrap_or_else(|| panic!("request not logged:\n{}", server.log()));
    for line in logged.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value["level"].is_string(), "{line}");
    }
}

#[test]
fn version_flag_prints_version_and_revision() {
    let output = std::process::Command::new(support::process::BINARY)
        .arg("--version")
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(
        text.contains(env!("CARGO_PKG_VERSION")) && text.contains("revision"),
        "{text}"
    );
}
