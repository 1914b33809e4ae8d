//! What an operator sees, end to end: the real binary with `--admin-listen`, `--audit-log` and
//! `--log-format json`, a real docker-registry (htpasswd, the canary password) and skopeo pushing and
//! pulling through the proxy. Checks /healthz, /readyz (ready, then not ready first on SIGTERM),
//! /metrics, one JSON access line per request, the audit log's records, and the canary nowhere.

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use connectors_testkit::{OciLayout, Registry, Skopeo, http};

fn free_addr() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").to_string()
}

fn admin_get(admin: &str, path: &str) -> http::Response {
    http::send_blocking("GET", &format!("http://{admin}{path}"), &[], Bytes::new())
        .unwrap_or_else(|e| panic!("GET {path} on the admin listener: {e}"))
}

fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

/// Waits (up to a minute) until the admin listener answers.
fn wait_admin(admin: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while http::send_blocking("GET", &format!("http://{admin}/healthz"), &[], Bytes::new()).is_err()
    {
        assert!(
            Instant::now() < deadline,
            "the admin listener never answered"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn admin_endpoints_metrics_json_access_log_and_audit_log() {
    let registry = Registry::builder().htpasswd(USER, CANARY).start();
    let admin = free_addr();
    let work = tempfile::tempdir().unwrap();
    let audit_path = work.path().join("audit.log");
    let proxy = ProxyUnderTest::start(
        &ConnectorSpec::new("reg", registry.url()).yaml(),
        &[
            "--admin-listen",
            &admin,
            "--audit-log",
            audit_path.to_str().unwrap(),
            "--log-format",
            "json",
            "--shutdown-delay",
            "30s",
        ],
    );
    wait_admin(&admin);
    assert_eq!(admin_get(&admin, "/healthz").status, 200);
    let ready = admin_get(&admin, "/readyz");
    assert_eq!(ready.status, 200, "{}", ready.text());
    assert_eq!(admin_get(&admin, "/nope").status, 404);

    // push and pull one image with skopeo through the proxy
    let skopeo = Skopeo::new();
    let token = proxy.token(&format!("{NS}/reg"));
    let auth = proxy_authfile(work.path(), &proxy, &token);
    let auth = auth.to_str().unwrap();
    let image = OciLayout::build(work.path().join("v1"), "v1", &[64 * 1024, 1024 * 1024]);
    let dest = proxy.image_ref("reg", "team/app:v1");
    let layout = image.oci_ref();
    skopeo
        .run(&[
            "copy",
            "--dest-tls-verify=false",
            "--dest-authfile",
            auth,
            &layout,
            &dest,
        ])
        .assert_success("push through the proxy");
    let pulled = format!("dir:{}", work.path().join("pulled").display());
    skopeo
        .run(&[
            "copy",
            "--src-tls-verify=false",
            "--src-authfile",
            auth,
            &dest,
            &pulled,
        ])
        .assert_success("pull through the proxy");
    // one refused request: no token
    let r = http::send_blocking(
        "GET",
        &proxy.v2_url("reg", "team/app/manifests/v1"),
        &[],
        Bytes::new(),
    )
    .expect("send");
    assert_eq!(r.status, 401);

    let metrics = admin_get(&admin, "/metrics");
    assert_eq!(metrics.status, 200);
    assert_eq!(
        metrics.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let text = metrics.text();
    let requests = |op: &str, status: u16| {
        metric(
            &text,
            &format!(
                "connectors_requests_total{{connector=\"{NS}/reg\",mode=\"reverse\",operation=\"{op}\",status=\"{status}\"}}"
            ),
        )
        .unwrap_or(0.0)
    };
    assert!(requests("push", 201) >= 3.0, "{text}"); // two blobs, config, manifest
    assert!(requests("pull", 200) >= 3.0, "{text}");
    assert!(
        metric(
            &text,
            &format!("connectors_bytes_total{{connector=\"{NS}/reg\",direction=\"in\"}}")
        )
        .is_some_and(|b| b >= (1024 * 1024 + 64 * 1024) as f64),
        "{text}"
    );
    assert!(
        metric(
            &text,
            &format!("connectors_bytes_total{{connector=\"{NS}/reg\",direction=\"out\"}}")
        )
        .is_some_and(|b| b >= (1024 * 1024 + 64 * 1024) as f64),
        "{text}"
    );
    // skopeo's first `GET /v2/` carries no credentials (it waits for the challenge), and so did our
    // request: every 401 of an unnamed caller is a `missing` failure.
    let unnamed_401: f64 = ["other", "ping"]
        .iter()
        .filter_map(|op| {
            metric(
                &text,
                &format!(
                    "connectors_requests_total{{connector=\"\",mode=\"reverse\",operation=\"{op}\",status=\"401\"}}"
                ),
            )
        })
        .sum();
    assert!(unnamed_401 >= 1.0, "{text}");
    assert_eq!(
        metric(&text, "connectors_auth_failures_total{reason=\"missing\"}"),
        Some(unnamed_401),
        "{text}"
    );
    assert!(metric(&text, "connectors_upstream_duration_seconds_count").is_some_and(|n| n >= 6.0));
    assert!(text.contains("# TYPE connectors_upstream_duration_seconds histogram"));

    // the audit log: one JSON object per registry operation, the pushes and pulls among them
    let audit = std::fs::read_to_string(&audit_path).expect("audit log");
    assert_no_canary(&audit, "the audit log");
    assert!(
        !audit.contains(&token),
        "the proxy token reached the audit log"
    );
    let records: Vec<serde_json::Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("audit line {l:?}: {e}")))
        .collect();
    let manifest_push = records
        .iter()
        .find(|r| r["operation"] == "push" && r["method"] == "PUT" && r["reference"] == "v1")
        .unwrap_or_else(|| panic!("no manifest push in {audit}"));
    assert_eq!(manifest_push["principal"], "e2e"); // the subject common::issue_token gives
    assert_eq!(manifest_push["connector"], format!("{NS}/reg"));
    assert_eq!(manifest_push["repository"], "team/app");
    assert_eq!(manifest_push["status"], 201);
    assert_eq!(manifest_push["mode"], "reverse");
    assert!(
        records.iter().any(|r| r["operation"] == "pull"
            && r["status"] == 200
            && r["bytes_out"].as_u64().is_some_and(|b| b >= 1024 * 1024)
            && r["reference"]
                .as_str()
                .is_some_and(|d| d.starts_with("sha256:"))),
        "no pull of the 1 MiB layer in {audit}"
    );

    // the access log: JSON lines; one per request with stable field names
    let log = proxy.log();
    assert_no_canary(&log, "the proxy's log");
    let access: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["target"] == "connectors::access")
        .collect();
    assert!(access.len() >= records.len(), "{log}");
    for line in &access {
        let f = &line["fields"];
        for key in [
            "mode",
            "method",
            "path",
            "status",
            "connector",
            "operation",
            "principal",
            "bytes_in",
            "bytes",
            "complete",
            "total_ms",
        ] {
            assert!(!f[key].is_null(), "access line without {key}: {line}");
        }
    }
    assert!(
        log.lines()
            .all(|l| serde_json::from_str::<serde_json::Value>(l).is_ok()),
        "a log line that is not JSON:\n{log}"
    );

    // SIGTERM: readiness turns false while the proxy still serves (the 30 s shutdown delay)
    proxy.terminate();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if admin_get(&admin, "/readyz").status == 503 {
            break;
        }
        assert!(Instant::now() < deadline, "/readyz never turned 503");
        std::thread::sleep(Duration::from_millis(20));
    }
    let r = http::send_blocking(
        "GET",
        &proxy.v2_url("reg", "team/app/manifests/v1"),
        &[
            ("Authorization", &format!("Bearer {token}")),
            ("Accept", "application/vnd.oci.image.manifest.v1+json"),
        ],
        Bytes::new(),
    )
    .expect("the proxy still accepts while not ready");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(admin_get(&admin, "/healthz").status, 200);
}
