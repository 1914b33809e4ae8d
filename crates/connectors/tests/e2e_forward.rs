//! Forward mode end to end: clients keep the registry's own address and set `HTTPS_PROXY`; the proxy
//! intercepts TLS for connector hosts (trusted through its CA, no `--tls-verify=false`) and injects the
//! connector's credentials there, and only there. Real TLS registries, skopeo, buildah and podman.
//!
//! Go clients never proxy loopback addresses, so registries are addressed as `registry.test:<port>`
//! (an `/etc/hosts` entry the suite adds) and the proxy is told where that is with `--resolve`.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::*;
use connectors_testkit::{
    OciLayout, Output, Registry, Skopeo, TestCa, TokenServer, ensure_hosts_entry, sha256_digest,
};
use http_body_util::{BodyExt, Empty};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const HOST: &str = "registry.test";

fn hosts() {
    ensure_hosts_entry(HOST)
        .expect("the forward-mode tests need `127.0.0.1 registry.test` in /etc/hosts");
}

fn name(registry: &Registry) -> String {
    format!("{HOST}:{}", registry.port())
}

fn resolve_arg(registry: &Registry) -> String {
    format!("--resolve={HOST}:{}:127.0.0.1", registry.port())
}

#[track_caller]
fn clean_success(out: &Output, what: &str) {
    assert_no_canary(&out.stdout, what);
    assert_no_canary(&out.stderr, what);
    out.assert_success(what);
}

/// A TLS registry that wants a password, and a connector for it whose CA is the test CA.
fn tls_connector<'a>(connector: &'a str, registry: &Registry, ca: &TestCa) -> ConnectorSpec<'a> {
    let mut spec = ConnectorSpec::new(connector, format!("https://{}", name(registry)));
    spec.ca_pem = Some(ca.ca_cert_pem().to_owned());
    spec
}

#[test]
fn skopeo_buildah_podman_push_and_pull_through_https_proxy() {
    hosts();
    let ca = TestCa::new();
    let registry = Registry::builder().htpasswd(USER, CANARY).tls(&ca).start();
    let proxy = ProxyUnderTest::start(
        &tls_connector("fwd", &registry, &ca).yaml(),
        &[&resolve_arg(&registry)],
    );
    let token = proxy.token(&format!("{NS}/fwd"));
    let https_proxy = proxy_url(&proxy, &["fwd"], &token);
    let certs = proxy_cert_dir(&proxy);
    let certs = certs.to_str().unwrap();
    let work = tempfile::tempdir().unwrap();
    let reg = name(&registry);

    // skopeo: push and pull with no registry credentials, trusting only the proxy CA
    let skopeo = Skopeo::new().env("HTTPS_PROXY", &https_proxy);
    let image = OciLayout::build(
        work.path().join("img"),
        "v1",
        &[128 * 1024, 2 * 1024 * 1024],
    );
    let dest = format!("docker://{reg}/team/app:v1");
    clean_success(
        &skopeo.run(&[
            "copy",
            "--preserve-digests",
            "--dest-cert-dir",
            certs,
            &image.oci_ref(),
            &dest,
        ]),
        "skopeo push via HTTPS_PROXY",
    );
    let pulled = work.path().join("pulled");
    clean_success(
        &skopeo.run(&[
            "copy",
            "--src-cert-dir",
            certs,
            &dest,
            &format!("dir:{}", pulled.display()),
        ]),
        "skopeo pull via HTTPS_PROXY",
    );
    assert_eq!(
        sha256_digest(&std::fs::read(pulled.join("manifest.json")).unwrap()),
        image.manifest_digest
    );
    let out = skopeo.run(&[
        "inspect",
        "--format",
        "{{.Digest}}",
        "--cert-dir",
        certs,
        &dest,
    ]);
    clean_success(&out, "skopeo inspect via HTTPS_PROXY");
    assert_eq!(out.stdout.trim(), image.manifest_digest);

    // the registry has it (asked directly, with the password and the registry's own CA)
    let direct_certs = ca.write_cert_dir(work.path().join("registry-ca"));
    let creds = format!("{USER}:{CANARY}");
    let out = Skopeo::new().run(&[
        "inspect",
        "--format",
        "{{.Digest}}",
        "--creds",
        &creds,
        "--cert-dir",
        direct_certs.to_str().unwrap(),
        &format!("docker://{}/team/app:v1", registry.host_port()),
    ]);
    out.assert_success("direct inspect");
    assert_eq!(out.stdout.trim(), image.manifest_digest);

    // buildah: build from scratch, push through the proxy
    let env = [("HTTPS_PROXY", https_proxy.as_str())];
    let bwork = work.path().join("buildah");
    buildah_image(&bwork, "localhost/team/built:v1");
    let built = format!("docker://{reg}/team/built:v1");
    clean_success(
        &container_tool(
            "buildah",
            &bwork,
            &[
                "push",
                "--cert-dir",
                certs,
                "localhost/team/built:v1",
                &built,
            ],
            &env,
        ),
        "buildah push via HTTPS_PROXY",
    );

    // podman: pull what buildah pushed, tag, push it back under another name
    let pwork = work.path().join("podman");
    std::fs::create_dir_all(&pwork).unwrap();
    let built_ref = format!("{reg}/team/built:v1");
    clean_success(
        &container_tool(
            "podman",
            &pwork,
            &["pull", "--cert-dir", certs, &built_ref],
            &env,
        ),
        "podman pull via HTTPS_PROXY",
    );
    let retag = format!("{reg}/team/podman:v1");
    container_tool("podman", &pwork, &["tag", &built_ref, &retag], &env)
        .assert_success("podman tag");
    clean_success(
        &container_tool(
            "podman",
            &pwork,
            &["push", "--cert-dir", certs, &retag],
            &env,
        ),
        "podman push via HTTPS_PROXY",
    );
    let out = skopeo.run(&[
        "list-tags",
        "--cert-dir",
        certs,
        &format!("docker://{reg}/team/podman"),
    ]);
    clean_success(&out, "list-tags of podman's push");
    assert!(out.stdout.contains("\"v1\""), "{}", out.stdout);

    // The intercepted requests are in the access log, attributed to the connector.
    let log = proxy.log();
    assert!(
        log.contains("operation=\"intercept\""),
        "no intercepted CONNECT in the log:\n{log}"
    );
    proxy.assert_log_clean();
}

#[test]
fn tls_verify_false_also_works_through_the_forward_proxy() {
    hosts();
    let ca = TestCa::new();
    let registry = Registry::builder().htpasswd(USER, CANARY).tls(&ca).start();
    let proxy = ProxyUnderTest::start(
        &tls_connector("fwd", &registry, &ca).yaml(),
        &[&resolve_arg(&registry)],
    );
    let https_proxy = proxy_url(&proxy, &["fwd"], &proxy.token(&format!("{NS}/fwd")));
    let work = tempfile::tempdir().unwrap();
    let image = OciLayout::build(work.path().join("img"), "v1", &[4096]);
    let skopeo = Skopeo::new().env("HTTPS_PROXY", &https_proxy);
    // the one place in the suite that turns verification off: the path users of the published docs take
    clean_success(
        &skopeo.run(&[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            &image.oci_ref(),
            &format!("docker://{}/team/insecure:v1", name(&registry)),
        ]),
        "skopeo push with --dest-tls-verify=false",
    );
    proxy.assert_log_clean();
}

#[test]
fn one_process_pulls_from_a_and_pushes_to_b_while_a_third_registry_is_tunnelled() {
    hosts();
    let ca = TestCa::new();
    let reg_a = Registry::builder().htpasswd(USER, CANARY).tls(&ca).start();
    let tokens = TokenServer::builder().user(USER, CANARY).start();
    let reg_b = Registry::builder().token(&tokens).tls(&ca).start();
    let reg_c = Registry::builder().tls(&ca).start(); // not a connector, no auth
    let mut spec_b = tls_connector("b", &reg_b, &ca);
    spec_b.extensions.push(tokens.url());
    let catalog = [tls_connector("a", &reg_a, &ca).yaml(), spec_b.yaml()].concat();
    let proxy = ProxyUnderTest::start(&catalog, &[&resolve_arg(&reg_a), &resolve_arg(&reg_b)]);
    let token = proxy.token(&format!("{NS}/a,{NS}/b"));
    let https_proxy = proxy_url(&proxy, &["a", "b"], &token);
    let certs = proxy_cert_dir(&proxy);
    let certs = certs.to_str().unwrap();
    let work = tempfile::tempdir().unwrap();
    let test_ca_only = ca.write_cert_dir(work.path().join("test-ca"));
    let test_ca_only = test_ca_only.to_str().unwrap();

    // seed A (through the proxy) and C (directly: it is nobody's connector)
    let image = OciLayout::build(work.path().join("img"), "v1", &[64 * 1024]);
    let skopeo = Skopeo::new().env("HTTPS_PROXY", &https_proxy);
    let a_ref = format!("docker://{}/team/app:v1", name(&reg_a));
    clean_success(
        &skopeo.run(&[
            "copy",
            "--preserve-digests",
            "--dest-cert-dir",
            certs,
            &image.oci_ref(),
            &a_ref,
        ]),
        "seed A",
    );
    let c_image = OciLayout::build(work.path().join("c"), "v1", &[8 * 1024]);
    Skopeo::new()
        .run(&[
            "copy",
            "--preserve-digests",
            "--dest-cert-dir",
            test_ca_only,
            &c_image.oci_ref(),
            &format!("docker://{}/public/base:v1", reg_c.host_port()),
        ])
        .assert_success("seed C directly");

    // A → B in one skopeo process, both connectors named in one proxy URL
    let b_ref = format!("docker://{}/team/app:v1", name(&reg_b));
    clean_success(
        &skopeo.run(&[
            "copy",
            "--preserve-digests",
            "--src-cert-dir",
            certs,
            "--dest-cert-dir",
            certs,
            &a_ref,
            &b_ref,
        ]),
        "copy A → B through the proxy",
    );
    let out = skopeo.run(&[
        "inspect",
        "--format",
        "{{.Digest}}",
        "--cert-dir",
        certs,
        &b_ref,
    ]);
    clean_success(&out, "inspect B");
    assert_eq!(out.stdout.trim(), image.manifest_digest);
    assert!(
        tokens
            .requests()
            .iter()
            .all(|r| r.username.as_deref() == Some(USER)),
        "{:?}",
        tokens.requests()
    );

    // C through the same proxy: tunnelled, not intercepted. The client verifies C's own certificate
    // with the test CA alone, which the proxy's CA could never satisfy, so no one in between read or
    // changed a byte, and no credential could have been added.
    let c_ref = format!("docker://{HOST}:{}/public/base:v1", reg_c.port());
    let out = skopeo.run(&[
        "copy",
        "--src-cert-dir",
        test_ca_only,
        &c_ref,
        &format!("dir:{}", work.path().join("c-out").display()),
    ]);
    clean_success(&out, "pull from C through the tunnel");
    let log = proxy.log();
    assert!(
        log.contains(&format!(
            "path={HOST}:{} operation=\"tunnel\"",
            reg_c.port()
        )),
        "no tunnel for C in the log:\n{log}"
    );
    proxy.assert_log_clean();
}

/// Opens `CONNECT host:port` on the proxy with `proxy_auth`; returns the status line's code and the
/// stream.
async fn raw_connect(
    proxy: &ProxyUnderTest,
    target: &str,
    proxy_auth: Option<&str>,
) -> (u16, String, tokio::net::TcpStream) {
    let mut stream = tokio::net::TcpStream::connect(proxy.addr()).await.unwrap();
    let mut req = format!("CONNECT {target} HTTP/1.1\r\nHost: {target}\r\n");
    if let Some(a) = proxy_auth {
        req.push_str(&format!("Proxy-Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    stream.write_all(req.as_bytes()).await.unwrap();
    // read the response head (and a small body if any)
    let mut buf = vec![0u8; 4096];
    let mut head = Vec::new();
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "proxy closed the CONNECT without an answer");
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&head).into_owned();
            let code: u16 = text[9..12].parse().unwrap();
            let content_length: usize = text
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length:")
                        .map(|v| v.trim().parse().unwrap_or(0))
                })
                .unwrap_or(0);
            while head.len() < end + 4 + content_length {
                let n = stream.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                head.extend_from_slice(&buf[..n]);
            }
            return (code, String::from_utf8_lossy(&head).into_owned(), stream);
        }
    }
}

fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn client_tls(ca_pem: &str) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for cert in rustls_pki_types::pem::PemObject::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// `GET path` over an established TLS stream; (status, body).
async fn https_get<S>(stream: S, host: &str, path: &str) -> (u16, String)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(path)
        .header("host", host)
        .body(Empty::<Bytes>::new())
        .unwrap();
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread")]
async fn forward_mode_error_paths() {
    hosts();
    let ca = TestCa::new();
    let registry = Registry::builder().htpasswd(USER, CANARY).tls(&ca).start();
    let untrusted = Registry::builder()
        .htpasswd(USER, CANARY)
        .tls(&TestCa::new())
        .start();
    let mut no_ca = ConnectorSpec::new("noca", format!("https://{}", name(&untrusted)));
    no_ca.ca_pem = None;
    let catalog = [
        tls_connector("fwd", &registry, &ca).yaml(),
        ConnectorSpec::new("other", "https://other.test").yaml(),
        no_ca.yaml(),
    ]
    .concat();
    let proxy = ProxyUnderTest::start(
        &catalog,
        &[&resolve_arg(&registry), &resolve_arg(&untrusted)],
    );
    let target = name(&registry);
    let proxy_ca = std::fs::read_to_string(proxy.state_dir().join("ca.crt")).unwrap();
    let token = proxy.token(&format!("{NS}/fwd,{NS}/noca"));

    // no proxy credentials → 407 with a challenge
    let (code, head, _) = raw_connect(&proxy, &target, None).await;
    assert_eq!(code, 407, "{head}");
    assert!(
        head.to_ascii_lowercase()
            .contains("proxy-authenticate: basic realm=\"connectors\""),
        "{head}"
    );
    // a wrong token → 407
    let (code, head, _) = raw_connect(
        &proxy,
        &target,
        Some(&basic(&format!("{NS}/fwd"), "not-a-token")),
    )
    .await;
    assert_eq!(code, 407, "{head}");
    // a token signed elsewhere → 407, saying so
    let foreign_state = tempfile::tempdir().unwrap();
    let foreign = issue_token(foreign_state.path(), &format!("{NS}/fwd"), "10m");
    let (code, head, _) = raw_connect(
        &proxy,
        &target,
        Some(&basic(&format!("{NS}/fwd"), &foreign)),
    )
    .await;
    assert_eq!(code, 407, "{head}");
    assert!(head.contains("signature"), "{head}");
    // a valid token, but not for a named connector → 403
    let (code, head, _) = raw_connect(
        &proxy,
        &target,
        Some(&basic(&format!("{NS}/fwd,{NS}/other"), &token)),
    )
    .await;
    assert_eq!(code, 403, "{head}");
    assert!(head.contains("team-a/other"), "{head}");
    assert_no_canary(&head, "403 response");

    // SNI mismatch → the handshake is refused
    let auth = basic(&format!("{NS}/fwd"), &token);
    let (code, head, stream) = raw_connect(&proxy, &target, Some(&auth)).await;
    assert_eq!(code, 200, "{head}");
    let tls = client_tls(&proxy_ca);
    let wrong_sni = rustls_pki_types::ServerName::try_from("other.test").unwrap();
    assert!(
        tls.connect(wrong_sni, stream).await.is_err(),
        "a TLS handshake with another SNI succeeded"
    );
    // the right SNI works, and the registry answers through it with the connector's credentials
    let (_, _, stream) = raw_connect(&proxy, &target, Some(&auth)).await;
    let tls_stream = tls
        .connect(
            rustls_pki_types::ServerName::try_from(HOST).unwrap(),
            stream,
        )
        .await
        .expect("TLS with the proxy CA");
    let (status, body) = https_get(tls_stream, &target, "/v2/team/none/tags/list").await;
    assert_eq!(
        status, 404,
        "the registry (authenticated by the proxy) should say the repository is unknown: {body}"
    );
    assert_no_canary(&body, "inner response");

    // upstream certificate not trusted → 502 naming the host
    let noca_target = name(&untrusted);
    let (code, head, stream) = raw_connect(
        &proxy,
        &noca_target,
        Some(&basic(&format!("{NS}/noca"), &token)),
    )
    .await;
    assert_eq!(code, 200, "{head}");
    let tls_stream = tls
        .connect(
            rustls_pki_types::ServerName::try_from(HOST).unwrap(),
            stream,
        )
        .await
        .unwrap();
    let (status, body) = https_get(tls_stream, &noca_target, "/v2/team/app/manifests/v1").await;
    assert_eq!(status, 502, "{body}");
    assert!(
        body.contains(&noca_target) && body.contains("TLS"),
        "{body}"
    );

    // --forward-policy deny is exercised in its own proxy
    drop(proxy);
    let denying = ProxyUnderTest::start(
        &tls_connector("fwd", &registry, &ca).yaml(),
        &["--forward-policy", "deny"],
    );
    let token = denying.token(&format!("{NS}/fwd"));
    let (code, head, _) = raw_connect(
        &denying,
        "elsewhere.test:443",
        Some(&basic(&format!("{NS}/fwd"), &token)),
    )
    .await;
    assert_eq!(code, 403, "{head}");
    denying.assert_log_clean();
}

#[test]
fn absolute_form_http_requests_get_credentials_only_for_the_connector() {
    let registry = Registry::builder().htpasswd(USER, CANARY).start();
    let open = Registry::start();
    let proxy = ProxyUnderTest::start(&ConnectorSpec::new("plain", registry.url()).yaml(), &[]);
    let token = proxy.token(&format!("{NS}/plain"));
    let auth = basic(&format!("{NS}/plain"), &token);
    let headers = [("Proxy-Authorization", auth.as_str())];
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // the connector's registry: the proxy logs in for us
        let r = connectors_testkit::http::send_via_proxy(
            proxy.addr(),
            "GET",
            &format!("{}/v2/", registry.url()),
            &headers,
            Bytes::new(),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
        let r = connectors_testkit::http::send_via_proxy(
            proxy.addr(),
            "GET",
            &format!("{}/v2/x/tags/list", registry.url()),
            &headers,
            Bytes::new(),
        )
        .await
        .unwrap();
        assert_eq!(
            r.status,
            404,
            "authenticated upstream says unknown repository: {}",
            r.text()
        );
        assert_response_clean(&r, "absolute-form response");
        // another registry: forwarded without credentials (it needs none, and its log shows none)
        let r = connectors_testkit::http::send_via_proxy(
            proxy.addr(),
            "GET",
            &format!("{}/v2/", open.url()),
            &headers,
            Bytes::new(),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 200);
        // no proxy credentials → 407
        let r = connectors_testkit::http::send_via_proxy(
            proxy.addr(),
            "GET",
            &format!("{}/v2/", registry.url()),
            &[],
            Bytes::new(),
        )
        .await
        .unwrap();
        assert_eq!(r.status, 407);
    });
    proxy.assert_log_clean();
}

/// Sends `req` on an intercepted connection and collects the answer; the body is read in pieces with
/// a pause after the first ones when `slow` (the proxy then has to hold back, its TLS buffers full).
async fn send_collect(
    sender: &mut hyper::client::conn::http1::SendRequest<http_body_util::Full<Bytes>>,
    req: http::Request<http_body_util::Full<Bytes>>,
    slow: bool,
) -> (u16, http::HeaderMap, Vec<u8>) {
    sender
        .ready()
        .await
        .expect("the intercepted connection stays open");
    let resp = sender.send_request(req).await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let mut body = resp.into_body();
    let mut bytes = Vec::new();
    let mut frames = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.unwrap().into_data() {
            bytes.extend_from_slice(&data);
        }
        frames += 1;
        if slow && frames <= 3 {
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }
    }
    (status, headers, bytes)
}

/// A blob of 48 MiB and some bytes goes up and comes back down through one intercepted connection
/// (the proxy reads the client's TLS ahead and hands hyper many records per read, and queues up to a
/// few hundred KiB of records per write; see `connectors_registry::bufio`): the bytes are exact
/// whole, read slowly, and as ranges across those sizes.
#[tokio::test(flavor = "multi_thread")]
async fn big_blobs_cross_the_forward_proxy_byte_exact() {
    use http_body_util::Full;
    hosts();
    let ca = TestCa::new();
    let registry = Registry::builder().htpasswd(USER, CANARY).tls(&ca).start();
    let proxy = ProxyUnderTest::start(
        &tls_connector("fwd", &registry, &ca).yaml(),
        &[&resolve_arg(&registry)],
    );
    let target = name(&registry);
    let proxy_ca = std::fs::read_to_string(proxy.state_dir().join("ca.crt")).unwrap();
    let auth = basic(&format!("{NS}/fwd"), &proxy.token(&format!("{NS}/fwd")));
    let (code, head, stream) = raw_connect(&proxy, &target, Some(&auth)).await;
    assert_eq!(code, 200, "{head}");
    let tls = client_tls(&proxy_ca)
        .connect(
            rustls_pki_types::ServerName::try_from(HOST).unwrap(),
            stream,
        )
        .await
        .expect("TLS with the proxy CA");
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tls))
            .await
            .unwrap();
    tokio::spawn(conn);

    // Not a multiple of any buffer or record size; bytes that do not repeat at those periods.
    let len = 48 * 1024 * 1024 + 12_345;
    let mut blob = Vec::with_capacity(len);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    while blob.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        blob.extend_from_slice(&x.to_le_bytes());
    }
    blob.truncate(len);
    let digest = sha256_digest(&blob);
    let blob = Bytes::from(blob);

    let request = |method: &str, path: &str, body: Bytes| {
        http::Request::builder()
            .method(method)
            .uri(path)
            .header("host", &target)
            .body(Full::new(body))
            .unwrap()
    };
    let (status, headers, body) = send_collect(
        &mut sender,
        request("POST", "/v2/team/big/blobs/uploads/", Bytes::new()),
        false,
    )
    .await;
    assert_eq!(status, 202, "{}", String::from_utf8_lossy(&body));
    let location = headers["location"].to_str().unwrap().to_owned();
    let location = match location.split_once(&target) {
        Some((_, path)) => path.to_owned(),
        None => location,
    };
    let sep = if location.contains('?') { '&' } else { '?' };
    let mut put = request(
        "PUT",
        &format!("{location}{sep}digest={digest}"),
        blob.clone(),
    );
    put.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/octet-stream"),
    );
    let (status, _, body) = send_collect(&mut sender, put, false).await;
    assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));

    let path = format!("/v2/team/big/blobs/{digest}");
    for slow in [false, true] {
        let (status, _, body) =
            send_collect(&mut sender, request("GET", &path, Bytes::new()), slow).await;
        assert_eq!(status, 200);
        assert_eq!(body.len(), len, "slow: {slow}");
        assert!(body == blob, "the pulled bytes differ (slow: {slow})");
    }
    for (first, last) in [
        (0, 0),
        (65_535, 65_536),
        (16_383, 262_145),
        (1_000_000, 9_000_000),
        (len - 70_000, len - 1),
    ] {
        let mut get = request("GET", &path, Bytes::new());
        get.headers_mut().insert(
            "range",
            http::HeaderValue::from_str(&format!("bytes={first}-{last}")).unwrap(),
        );
        let (status, _, body) = send_collect(&mut sender, get, false).await;
        assert_eq!(status, 206, "range {first}-{last}");
        assert!(body == blob[first..=last], "range {first}-{last} differs");
    }
    proxy.assert_log_clean();
}
