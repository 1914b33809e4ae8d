//! Graceful shutdown with a real registry and the real binary: a 1 GiB blob upload in flight when SIGTERM
//! arrives completes, digest verified by the registry; a new connection is refused; the process exits 0.
//!
//! The 1 GiB is produced while it is sent (never held in memory) and stored once, by the registry, on disk.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use connectors_testkit::Registry;
use connectors_testkit::http::{self, StreamingBody};

const GIB: u64 = 1 << 30;

#[test]
fn sigterm_lets_a_1_gib_upload_in_flight_complete_and_refuses_new_connections() {
    let registry = Registry::builder().htpasswd(USER, CANARY).start();
    let mut proxy = ProxyUnderTest::start(
        &ConnectorSpec::new("reg", registry.url()).yaml(),
        &["--shutdown-grace", "300s"],
    );
    let bearer = format!("Bearer {}", proxy.token(&format!("{NS}/reg")));
    let r = http::send_blocking(
        "POST",
        &proxy.v2_url("reg", "team/big/blobs/uploads/"),
        &[("Authorization", &bearer), ("Content-Length", "0")],
        Bytes::new(),
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    let location = r.header("location").expect("upload location").to_owned();

    // 1 GiB in 1 MiB pieces with a pause before each: at least 2 s on the wire, so SIGTERM (after 1 s)
    // finds it in flight (the test asserts that it does).
    let body = StreamingBody::new(GIB)
        .chunk_size(1 << 20)
        .seed(7)
        .delay(Duration::from_millis(2));
    let addr = proxy.addr();
    let digest = body.digest();
    let separator = if location.contains('?') { '&' } else { '?' };
    let url = format!(
        "http://{}{location}{separator}digest={digest}",
        proxy.host_port()
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let upload = rt.spawn({
        let bearer = bearer.clone();
        async move {
            let mut connection = http::Connection::open(addr).await?;
            // a debug build on a shared machine moves 1 GiB in minutes, not seconds
            connection.set_timeout(Duration::from_secs(900));
            connection
                .send_streaming(
                    "PUT",
                    &url,
                    &[
                        ("Authorization", &bearer),
                        ("Content-Type", "application/octet-stream"),
                    ],
                    body,
                )
                .await
        }
    });
    std::thread::sleep(Duration::from_secs(1));
    assert!(!upload.is_finished(), "the upload ended before SIGTERM");
    proxy.terminate();
    std::thread::sleep(Duration::from_millis(300));

    proxy.assert_refuses_new_connections();

    let r = rt
        .block_on(upload)
        .unwrap()
        .expect("the upload in flight failed");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));
    let status = proxy
        .wait_exit(Duration::from_secs(60))
        .expect("the proxy did not exit after the upload");
    assert!(status.success(), "exit status {status}");
    proxy.assert_log_clean();

    // the registry has the blob whole (asked directly: the proxy is gone)
    let r = http::send_blocking(
        "HEAD",
        &format!("{}/v2/team/big/blobs/{digest}", registry.url()),
        &[(
            "Authorization",
            &format!(
                "Basic {}",
                base64::Engine::encode(
                    &base64::engine::general_purpose::STANDARD,
                    format!("{USER}:{CANARY}")
                )
            ),
        )],
        Bytes::new(),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(GIB.to_string().as_str()));
}
