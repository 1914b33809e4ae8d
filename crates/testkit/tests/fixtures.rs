//! Proves each fixture against the real thing: docker-registry, skopeo, the token server.

use std::net::TcpStream;
use std::path::Path;

use bytes::Bytes;
use connectors_testkit::http::{self, StatusCode, StreamingBody};
use connectors_testkit::{
    AuthFile, ImageInfo, OciLayout, Registry, Skopeo, TestCa, TokenServer, assert_success,
    ensure_hosts_entry, sha256_digest,
};

/// A password that must never show up in a registry log.
const CANARY: &str = "canary-Pw-9f3e1c";

fn image(dir: &Path, tag: &str) -> ImageInfo {
    OciLayout::build(dir.join("layout"), tag, &[1024, 200_000])
}

/// `dir:` output of skopeo: manifest.json plus one file per blob, named by the digest's hex.
fn assert_dir_matches(out: &Path, img: &ImageInfo) {
    let manifest = std::fs::read(out.join("manifest.json")).expect("dir:/manifest.json");
    assert_eq!(
        sha256_digest(&manifest),
        img.manifest_digest,
        "manifest digest preserved"
    );
    for d in img.layer_digests.iter().chain([&img.config_digest]) {
        let hex = d.trim_start_matches("sha256:");
        let pulled = std::fs::read(out.join(hex)).unwrap_or_else(|e| panic!("blob {d}: {e}"));
        assert_eq!(pulled, std::fs::read(img.blob_path(d)).unwrap(), "blob {d}");
    }
}

#[test]
fn noauth_registry_roundtrip_oci_to_registry_to_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let img = image(tmp.path(), "v1");
    let reg = Registry::start();
    assert!(reg.url().starts_with("http://127.0.0.1:"));
    assert_eq!(reg.host_port(), format!("127.0.0.1:{}", reg.port()));
    let sk = Skopeo::new();

    let inspect = sk.run(&["inspect", &img.oci_ref()]);
    assert_success(&inspect, "skopeo inspect oci:");
    assert!(
        inspect.stdout.contains("\"Architecture\": \"amd64\""),
        "{}",
        inspect.stdout
    );

    let dest = format!("docker://{}/test/noauth:v1", reg.host_port());
    sk.run(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        &img.oci_ref(),
        &dest,
    ])
    .assert_success("push oci: → no-auth registry");
    let out = tmp.path().join("pulled");
    sk.run(&[
        "copy",
        "--src-tls-verify=false",
        &dest,
        &format!("dir:{}", out.display()),
    ])
    .assert_success("pull registry → dir:");
    assert_dir_matches(&out, &img);

    // The registry really stored it, and says so in its access log.
    assert!(
        reg.data_dir()
            .join("docker/registry/v2/repositories/test/noauth")
            .is_dir()
    );
    let log = reg.log();
    assert!(log.contains("PUT /v2/test/noauth/manifests/v1"), "{log}");

    // Raw HTTP against it.
    let resp = http::send_blocking(
        "GET",
        &format!("{}/v2/test/noauth/manifests/v1", reg.url()),
        &[("Accept", "application/vnd.oci.image.manifest.v1+json")],
        Bytes::new(),
    )
    .unwrap();
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(
        resp.header("docker-content-digest"),
        Some(img.manifest_digest.as_str())
    );
    assert_eq!(resp.body, img.manifest);

    // Config as intended: deletes enabled, no background upload purging.
    let del = http::send_blocking(
        "DELETE",
        &format!(
            "{}/v2/test/noauth/manifests/{}",
            reg.url(),
            img.manifest_digest
        ),
        &[],
        Bytes::new(),
    )
    .unwrap();
    assert_eq!(del.status, StatusCode::ACCEPTED, "{}", del.text());
    assert!(!reg.log().contains("upload purge"), "{}", reg.log());
}

#[test]
fn htpasswd_registry_needs_credentials_and_never_logs_the_password() {
    let tmp = tempfile::tempdir().unwrap();
    let img = image(tmp.path(), "v1");
    let reg = Registry::builder()
        .htpasswd("alice", CANARY)
        .htpasswd("bob", "other")
        .start();
    let sk = Skopeo::new();
    let dest = format!("docker://{}/test/basic:v1", reg.host_port());

    let denied = sk.run(&["copy", "--dest-tls-verify=false", &img.oci_ref(), &dest]);
    assert!(!denied.success(), "push without credentials must fail");
    assert!(
        denied.stderr.contains("authentication required") || denied.stderr.contains("unauthorized"),
        "{}",
        denied.stderr
    );
    let wrong = sk.run(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "alice:wrong",
        &img.oci_ref(),
        &dest,
    ]);
    assert!(!wrong.success(), "push with a wrong password must fail");

    let creds = format!("alice:{CANARY}");
    sk.run(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        &creds,
        &img.oci_ref(),
        &dest,
    ])
    .assert_success("push with --dest-creds");

    // Pull with an auth.json instead.
    let authfile = AuthFile::write(tmp.path().join("auth"), &reg.host_port(), "alice", CANARY);
    let out = tmp.path().join("pulled");
    sk.run(&[
        "copy",
        "--src-tls-verify=false",
        "--authfile",
        authfile.to_str().unwrap(),
        &dest,
        &format!("dir:{}", out.display()),
    ])
    .assert_success("pull with --authfile");
    let manifest = std::fs::read(out.join("manifest.json")).unwrap();
    let pushed: serde_json::Value = serde_json::from_slice(&manifest).unwrap();
    assert_eq!(pushed["layers"].as_array().unwrap().len(), 2);

    let resp =
        http::send_blocking("GET", &format!("{}/v2/", reg.url()), &[], Bytes::new()).unwrap();
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    assert!(
        resp.header("www-authenticate")
            .unwrap()
            .starts_with("Basic realm=")
    );

    let log = reg.log();
    assert!(
        log.contains("alice"),
        "the access log names the user:\n{log}"
    );
    assert!(
        !log.contains(CANARY),
        "password leaked into the registry log:\n{log}"
    );
}

#[test]
fn token_registry_with_token_server() {
    let tmp = tempfile::tempdir().unwrap();
    let img = image(tmp.path(), "v1");
    let ts = TokenServer::builder().user("tokuser", "tokpass").start();
    let reg = Registry::builder().token(&ts).start();
    let sk = Skopeo::new();
    let dest = format!("docker://{}/test/token:v1", reg.host_port());

    // The registry challenges with our realm/service.
    let resp =
        http::send_blocking("GET", &format!("{}/v2/", reg.url()), &[], Bytes::new()).unwrap();
    assert_eq!(resp.status, StatusCode::UNAUTHORIZED);
    let challenge = resp.header("www-authenticate").unwrap();
    assert!(
        challenge.contains(&format!("realm=\"{}\"", ts.realm())),
        "{challenge}"
    );
    assert!(
        challenge.contains("service=\"test-registry\""),
        "{challenge}"
    );

    sk.run(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "tokuser:tokpass",
        &img.oci_ref(),
        &dest,
    ])
    .assert_success("push through token auth");

    let reqs = ts.requests();
    let push_req = reqs
        .iter()
        .find(|r| {
            r.scopes
                .iter()
                .any(|s| s == "repository:test/token:pull,push")
        })
        .unwrap_or_else(|| panic!("no push-scope token request recorded: {reqs:#?}"));
    assert_eq!(push_req.method, "GET");
    assert_eq!(push_req.username.as_deref(), Some("tokuser"));
    assert!(push_req.password_ok);
    assert_eq!(push_req.status, 200);
    assert_eq!(push_req.service.as_deref(), Some("test-registry"));
    assert_eq!(push_req.granted[0].actions, vec!["pull", "push"]);

    // Wrong password: 401 from the token server, recorded as such.
    ts.clear_requests();
    let bad = sk.run(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "tokuser:nope",
        &img.oci_ref(),
        &dest,
    ]);
    assert!(!bad.success());
    let reqs = ts.requests();
    assert!(
        reqs.iter()
            .any(|r| r.status == 401 && !r.password_ok && r.username.as_deref() == Some("tokuser")),
        "{reqs:#?}"
    );

    // Anonymous: a token without access → the registry refuses; with anonymous_pull it works.
    let anon_inspect = || sk.run(&["inspect", "--tls-verify=false", &dest]);
    let denied = anon_inspect();
    assert!(!denied.success(), "anonymous pull must fail by default");
    ts.set_anonymous_pull(true);
    let ok = anon_inspect();
    assert_success(&ok, "anonymous inspect with anonymous_pull");
    assert!(ok.stdout.contains(&img.manifest_digest) || ok.stdout.contains("Digest"));
    let anon = ts.requests().into_iter().last().unwrap();
    assert_eq!(anon.username, None);
    assert_eq!(anon.granted[0].actions, vec!["pull"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn post_only_token_server_answers_get_with_405_and_post_tokens_work() {
    let tmp = tempfile::tempdir().unwrap();
    let img = image(tmp.path(), "v1");
    let ts = TokenServer::builder()
        .user("u", "p")
        .expires_in(120)
        .start();
    let reg = Registry::builder().token(&ts).start();
    let sk = Skopeo::new();
    let dest = format!("docker://{}/test/post:v1", reg.host_port());
    sk.run_async(&[
        "copy",
        "--dest-tls-verify=false",
        "--dest-creds",
        "u:p",
        &img.oci_ref(),
        &dest,
    ])
    .await
    .assert_success("push (GET tokens still allowed)");

    ts.set_post_only(true);
    let get = http::send(
        "GET",
        &format!(
            "{}?service=test-registry&scope=repository:test/post:pull",
            ts.realm()
        ),
        &[("Authorization", "Basic dTpw")],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(get.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(get.header("allow"), Some("POST"));
    // skopeo only does GET with a password, so it now fails.
    let failed = sk
        .run_async(&["inspect", "--tls-verify=false", "--creds", "u:p", &dest])
        .await;
    assert!(!failed.success(), "skopeo cannot fall back to POST");

    let form = "grant_type=password&username=u&password=p&service=test-registry\
                &scope=repository%3Atest%2Fpost%3Apull+repository%3Aother%3Apull&client_id=testkit";
    let headers = [("Content-Type", "application/x-www-form-urlencoded")];
    let post = http::send("POST", &ts.realm(), &headers, Bytes::from(form))
        .await
        .unwrap();
    assert_eq!(post.status, StatusCode::OK, "{}", post.text());
    let body = post.json();
    assert_eq!(body["expires_in"], 120);
    assert!(
        body.get("token").is_none(),
        "POST answers like real OAuth2 servers: {body}"
    );
    let token = body["access_token"].as_str().unwrap().to_owned();

    let last = ts.requests().into_iter().last().unwrap();
    assert_eq!(last.method, "POST");
    assert_eq!(last.grant_type.as_deref(), Some("password"));
    assert_eq!(last.client_id.as_deref(), Some("testkit"));
    assert_eq!(
        last.scopes,
        vec!["repository:test/post:pull", "repository:other:pull"]
    );

    // The registry accepts the POST-issued token.
    let auth = format!("Bearer {token}");
    let manifest = http::send(
        "GET",
        &format!("{}/v2/test/post/manifests/v1", reg.url()),
        &[
            ("Authorization", &auth),
            ("Accept", "application/vnd.oci.image.manifest.v1+json"),
        ],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(manifest.status, StatusCode::OK, "{}", manifest.text());

    let bad = http::send(
        "POST",
        &ts.realm(),
        &headers,
        Bytes::from("grant_type=password&username=u&password=x&service=test-registry"),
    )
    .await
    .unwrap();
    assert_eq!(bad.status, StatusCode::UNAUTHORIZED);
    assert_eq!(bad.json()["error"], "invalid_grant");
}

#[test]
fn tls_registry_trusted_through_cert_dir() {
    let tmp = tempfile::tempdir().unwrap();
    let img = image(tmp.path(), "v1");
    let ca = TestCa::new();
    let reg = Registry::builder()
        .tls(&ca)
        .htpasswd("alice", CANARY)
        .start();
    assert!(reg.url().starts_with("https://127.0.0.1:"));
    let certs = ca.write_cert_dir(tmp.path().join("certs"));
    let certs = certs.to_str().unwrap();
    let sk = Skopeo::new();
    let creds = format!("alice:{CANARY}");

    let untrusted = sk.run(&[
        "copy",
        "--dest-creds",
        &creds,
        &img.oci_ref(),
        &format!("docker://{}/test/tls:v1", reg.host_port()),
    ]);
    assert!(!untrusted.success());
    assert!(
        untrusted
            .stderr
            .contains("certificate signed by unknown authority"),
        "{}",
        untrusted.stderr
    );

    for host in [reg.host_port(), format!("localhost:{}", reg.port())] {
        let dest = format!("docker://{host}/test/tls:v1");
        sk.run(&[
            "copy",
            "--dest-cert-dir",
            certs,
            "--dest-creds",
            &creds,
            &img.oci_ref(),
            &dest,
        ])
        .assert_success(&format!("push over TLS to {host}"));
    }
    let out = tmp.path().join("pulled");
    sk.run(&[
        "copy",
        "--preserve-digests",
        "--src-cert-dir",
        certs,
        "--src-creds",
        &creds,
        &format!("docker://{}/test/tls:v1", reg.host_port()),
        &format!("dir:{}", out.display()),
    ])
    .assert_success("pull over TLS");
    assert!(out.join("manifest.json").is_file());
    assert!(!reg.log().contains(CANARY));
}

#[test]
fn stop_makes_the_port_refuse_and_restart_brings_it_back() {
    let mut reg = Registry::start();
    let url = format!("{}/v2/", reg.url());
    assert_eq!(
        http::send_blocking("GET", &url, &[], Bytes::new())
            .unwrap()
            .status,
        StatusCode::OK
    );
    assert!(reg.is_running());

    reg.stop();
    assert!(!reg.is_running());
    let err = TcpStream::connect(reg.addr()).expect_err("port must refuse after stop()");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
    let err = http::send_blocking("GET", &url, &[], Bytes::new()).unwrap_err();
    assert!(matches!(err, http::HttpError::Connect { .. }), "{err}");
    reg.stop(); // idempotent

    reg.restart();
    assert_eq!(
        http::send_blocking("GET", &url, &[], Bytes::new())
            .unwrap()
            .status,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streamed_chunked_blob_upload_with_raw_http() {
    let reg = Registry::start();
    let start = http::send(
        "POST",
        &format!("{}/v2/test/upload/blobs/uploads/", reg.url()),
        &[],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(start.status, StatusCode::ACCEPTED, "{}", start.text());
    let absolute = |loc: &str| {
        if loc.starts_with('/') {
            format!("{}{loc}", reg.url())
        } else {
            loc.to_owned()
        }
    };
    let loc = absolute(start.header("location").unwrap());

    // Chunk 1: Content-Length + Content-Range, streamed in 100 kB frames.
    let first = StreamingBody::new(3 * 1024 * 1024)
        .chunk_size(100_000)
        .seed(1);
    let range = format!("0-{}", first.len() - 1);
    let r1 = http::send_streaming(
        "PATCH",
        &loc,
        &[
            ("Content-Type", "application/octet-stream"),
            ("Content-Range", &range),
        ],
        first.clone(),
    )
    .await
    .unwrap();
    assert_eq!(r1.status, StatusCode::ACCEPTED, "{}", r1.text());
    assert_eq!(r1.header("range"), Some(range.as_str()));
    let loc = absolute(r1.header("location").unwrap());

    // Chunk 2: Transfer-Encoding: chunked.
    let second = StreamingBody::new(1024 * 1024 + 7)
        .chunk_size(4096)
        .seed(2)
        .chunked();
    let r2 = http::send_streaming(
        "PATCH",
        &loc,
        &[("Content-Type", "application/octet-stream")],
        second.clone(),
    )
    .await
    .unwrap();
    assert_eq!(r2.status, StatusCode::ACCEPTED, "{}", r2.text());
    let total = first.len() + second.len();
    assert_eq!(
        r2.header("range"),
        Some(format!("0-{}", total - 1).as_str())
    );
    let loc = absolute(r2.header("location").unwrap());

    let mut all = first.to_bytes().to_vec();
    all.extend_from_slice(&second.to_bytes());
    let digest = sha256_digest(&all);
    let sep = if loc.contains('?') { '&' } else { '?' };
    let done = http::send(
        "PUT",
        &format!("{loc}{sep}digest={digest}"),
        &[],
        Bytes::new(),
    )
    .await
    .unwrap();
    assert_eq!(done.status, StatusCode::CREATED, "{}", done.text());

    let blob_url = format!("{}/v2/test/upload/blobs/{digest}", reg.url());
    let head = http::send("HEAD", &blob_url, &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(
        head.header("content-length"),
        Some(total.to_string().as_str())
    );
    let got = http::send("GET", &blob_url, &[], Bytes::new())
        .await
        .unwrap();
    assert_eq!(got.body.len() as u64, total);
    assert_eq!(sha256_digest(&got.body), digest);
}

#[test]
fn skopeo_blob_info_cache_is_isolated_per_run() {
    // With a shared cache, the second push would try a cross-repo mount (TESTGROUND G3).
    let tmp = tempfile::tempdir().unwrap();
    let img = image(tmp.path(), "v1");
    let reg = Registry::start();
    let sk = Skopeo::new();
    for repo in ["test/one", "test/two"] {
        sk.run(&[
            "copy",
            "--dest-tls-verify=false",
            &img.oci_ref(),
            &format!("docker://{}/{repo}:v1", reg.host_port()),
        ])
        .assert_success("push");
    }
    let log = reg.log();
    assert!(log.contains("POST /v2/test/two/blobs/uploads/"), "{log}");
    assert!(
        !log.contains("mount="),
        "cross-repo mount attempted; cache not isolated:\n{log}"
    );
}

#[test]
fn skopeo_env_reaches_skopeo_and_hosts_entry_maps_a_name() {
    if let Err(e) = ensure_hosts_entry("registry.test") {
        eprintln!("skipping: {e}");
        return;
    }
    ensure_hosts_entry("registry.test").expect("idempotent");
    let hosts = std::fs::read_to_string("/etc/hosts").unwrap();
    assert_eq!(
        hosts
            .lines()
            .filter(|l| l.split_whitespace().any(|h| h == "registry.test"))
            .count(),
        1,
        "{hosts}"
    );

    let tmp = tempfile::tempdir().unwrap();
    let img = image(tmp.path(), "v1");
    let reg = Registry::start();
    let dest = format!("docker://registry.test:{}/test/named:v1", reg.port());
    Skopeo::new()
        .run(&["copy", "--dest-tls-verify=false", &img.oci_ref(), &dest])
        .assert_success("push to a name mapped in /etc/hosts");

    // A dead proxy given through env() is used for the name (Go never proxies loopback IPs).
    let dead = format!("http://127.0.0.1:{}", connectors_testkit::free_port());
    let out = Skopeo::new()
        .env("HTTP_PROXY", &dead)
        .env("HTTPS_PROXY", &dead)
        .run(&["inspect", "--tls-verify=false", &dest]);
    assert!(!out.success());
    assert!(out.stderr.contains("proxyconnect"), "{}", out.stderr);
}
