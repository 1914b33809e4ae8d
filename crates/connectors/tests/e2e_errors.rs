//! Error paths of reverse mode with a real registry and the real binary: each gives the status that README.md's
//! error table names, an OCI error body whose message says what to fix, and never the registry password.

mod common;

use bytes::Bytes;
use common::*;
use connectors_testkit::http::{self, Response};
use connectors_testkit::{Registry, TokenServer};

fn get(url: &str, authorization: Option<&str>) -> Response {
    let headers: Vec<(&str, &str)> = authorization
        .map(|a| vec![("Authorization", a)])
        .unwrap_or_default();
    let r = http::send_blocking("GET", url, &headers, Bytes::new())
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    assert_response_clean(&r, url);
    r
}

/// The single OCI error of a response: (code, message).
#[track_caller]
fn oci_error(r: &Response) -> (String, String) {
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "{}",
        r.text()
    );
    let body = r.json();
    let e = &body["errors"][0];
    (
        e["code"].as_str().unwrap_or_default().to_owned(),
        e["message"].as_str().unwrap_or_default().to_owned(),
    )
}

struct Setup {
    registry: Registry,
    _stopped: Registry,
    proxy: ProxyUnderTest,
}

fn setup() -> Setup {
    let registry = Registry::builder().htpasswd(USER, CANARY).start();
    let mut stopped = Registry::start();
    let stopped_url = stopped.url();
    stopped.stop();
    let mut wrong = ConnectorSpec::new("wrongpw", registry.url());
    let wrong_password = format!("{CANARY}-wrong");
    wrong.password = Some(&wrong_password);
    let mut no_secret = ConnectorSpec::new("nosecret", registry.url());
    no_secret.password = None;
    let catalog = [
        ConnectorSpec::new("reg", registry.url()).yaml(),
        ConnectorSpec::new("other", registry.url()).yaml(),
        wrong.yaml(),
        ConnectorSpec::new("gone", stopped_url).yaml(),
        no_secret.yaml(),
        // a connector whose secret does not exist: unusable, never anonymous
        format!(
            "apiVersion: connectors.alauda.io/v1alpha1\nkind: Connector\nmetadata:\n  name: missing\n  namespace: {NS}\nspec:\n  connectorClassName: oci\n  address: {}\n  auth:\n    name: tokenAuth\n    secretRef:\n      name: does-not-exist\n",
            registry.url()
        ),
    ]
    .concat();
    let proxy = ProxyUnderTest::start(&catalog, &[]);
    Setup {
        registry,
        _stopped: stopped,
        proxy,
    }
}

#[test]
fn reverse_mode_error_paths() {
    let Setup {
        registry, proxy, ..
    } = setup();
    let manifest = |c: &str| proxy.v2_url(c, "team/app/manifests/v1");
    let token = proxy.token(&format!(
        "{NS}/reg,{NS}/wrongpw,{NS}/gone,{NS}/nosecret,{NS}/missing,{NS}/nothere"
    ));
    let bearer = format!("Bearer {token}");

    // The ping: 401 with a challenge without a token, 200 with one.
    let r = get(&format!("http://{}/v2/", proxy.host_port()), None);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Basic realm="connectors""#)
    );
    let r = get(&format!("http://{}/v2/", proxy.host_port()), Some(&bearer));
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("docker-distribution-api-version"),
        Some("registry/2.0")
    );

    // No token.
    let r = get(&manifest("reg"), None);
    assert_eq!(r.status, 401);
    assert_eq!(
        r.header("www-authenticate"),
        Some(r#"Basic realm="connectors""#)
    );
    let (code, message) = oci_error(&r);
    assert_eq!(code, "UNAUTHORIZED");
    assert!(message.contains("no proxy token"), "{message}");

    // A token signed by another proxy (another state folder).
    let foreign_state = tempfile::tempdir().unwrap();
    let foreign = issue_token(foreign_state.path(), &format!("{NS}/reg"), "10m");
    let r = get(&manifest("reg"), Some(&format!("Bearer {foreign}")));
    assert_eq!(r.status, 401);
    let (code, message) = oci_error(&r);
    assert_eq!(code, "UNAUTHORIZED");
    assert!(message.contains("signature"), "{message}");
    assert!(
        !message.contains(&foreign),
        "the token is echoed: {message}"
    );

    // Garbage instead of a token, as Basic password.
    use base64::Engine;
    let basic_garbage = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("user:not-a-token")
    );
    let r = get(&manifest("reg"), Some(&basic_garbage));
    assert_eq!(r.status, 401);
    assert_eq!(oci_error(&r).0, "UNAUTHORIZED");

    // An expired token.
    let short = proxy.token_with(&format!("{NS}/reg"), "1s");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let r = get(&manifest("reg"), Some(&format!("Bearer {short}")));
    assert_eq!(r.status, 401);
    let (_, message) = oci_error(&r);
    assert!(message.contains("expired"), "{message}");

    // A valid token for another connector.
    let other_only = proxy.token(&format!("{NS}/other"));
    let r = get(&manifest("reg"), Some(&format!("Bearer {other_only}")));
    assert_eq!(r.status, 403);
    let (code, message) = oci_error(&r);
    assert_eq!(code, "DENIED");
    assert!(message.contains("team-a/reg"), "{message}");

    // An unknown connector.
    let r = get(&manifest("nothere"), Some(&bearer));
    assert_eq!(r.status, 404);
    let (code, message) = oci_error(&r);
    assert_eq!(code, "NAME_UNKNOWN");
    assert!(message.contains("team-a/nothere"), "{message}");

    // The registry is stopped.
    let r = get(&manifest("gone"), Some(&bearer));
    assert_eq!(r.status, 502, "{}", r.text());
    let (_, message) = oci_error(&r);
    assert!(message.contains("cannot reach registry"), "{message}");

    // The registry rejects the connector's password: a clear error that does not leak it.
    let r = get(&manifest("wrongpw"), Some(&bearer));
    assert_eq!(r.status, 403, "{}", r.text());
    let (code, message) = oci_error(&r);
    assert_eq!(code, "DENIED");
    assert!(
        message.contains("rejected the credentials of connector team-a/wrongpw"),
        "{message}"
    );
    assert!(
        r.header("www-authenticate").is_none(),
        "the upstream challenge reached the client"
    );

    // An anonymous connector against a registry that needs a login: denied, saying it is anonymous.
    let r = get(&manifest("nosecret"), Some(&bearer));
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(oci_error(&r).1.contains("no secret"), "{}", r.text());

    // A connector whose secret is missing is unusable (fail closed), and says which secret.
    let r = get(&manifest("missing"), Some(&bearer));
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(oci_error(&r).1.contains("does-not-exist"), "{}", r.text());

    // Paths that are not the distribution API.
    let r = get(&proxy.v2_url("reg", "team/app/nonsense"), Some(&bearer));
    assert_eq!(r.status, 400);
    let r = get(
        &format!(
            "http://{}/v2/namespaces/Team/connectors/x/app/manifests/v1",
            proxy.host_port()
        ),
        Some(&bearer),
    );
    assert_eq!(r.status, 400);

    // The proxy keeps serving after all of that.
    let r = get(&format!("http://{}/v2/", proxy.host_port()), Some(&bearer));
    assert_eq!(r.status, 200);
    let r = get(&format!("{}/v2/", registry.url()), None);
    assert_eq!(r.status, 401, "the registry itself still wants credentials");
    proxy.assert_log_clean();
}

#[test]
fn token_endpoint_rejecting_the_password_is_denied_without_a_leak() {
    let tokens = TokenServer::builder()
        .user(USER, "the-real-password")
        .start();
    let registry = Registry::builder().token(&tokens).start();
    let mut spec = ConnectorSpec::new("tok", registry.url());
    spec.extensions.push(tokens.url());
    let proxy = ProxyUnderTest::start(&spec.yaml(), &[]);
    let bearer = format!("Bearer {}", proxy.token(&format!("{NS}/tok")));
    let r = get(&proxy.v2_url("tok", "team/app/manifests/v1"), Some(&bearer));
    assert_eq!(r.status, 403, "{}", r.text());
    let (code, message) = oci_error(&r);
    assert_eq!(code, "DENIED");
    assert!(message.contains("token endpoint"), "{message}");
    assert!(
        tokens.requests().iter().any(|t| t.status == 401),
        "the token server saw no rejected request"
    );
    proxy.assert_log_clean();
}

#[test]
fn plain_http_realm_on_a_foreign_port_gets_no_credentials() {
    let tokens = TokenServer::builder().user(USER, CANARY).start();
    let registry = Registry::builder().token(&tokens).start();
    // no address extension for the token server: the proxy must not send the password there
    let proxy = ProxyUnderTest::start(&ConnectorSpec::new("tok", registry.url()).yaml(), &[]);
    let bearer = format!("Bearer {}", proxy.token(&format!("{NS}/tok")));
    let r = get(&proxy.v2_url("tok", "team/app/manifests/v1"), Some(&bearer));
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(
        oci_error(&r).1.contains("addressExtensions"),
        "{}",
        r.text()
    );
    assert!(
        tokens.requests().is_empty(),
        "credentials went to the realm: {:?}",
        tokens.requests()
    );
    proxy.assert_log_clean();
}

#[test]
fn check_command_reports_each_connector_in_one_line() {
    let Setup {
        proxy,
        registry: _registry,
        ..
    } = setup();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_connectors"))
        .args(["check", "--catalog"])
        .arg(proxy.catalog_path())
        .args([
            &format!("{NS}/reg"),
            &format!("{NS}/wrongpw"),
            &format!("{NS}/gone"),
            &format!("{NS}/missing"),
        ])
        .env("CONNECTORS_LOG", "debug")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_no_canary(&stdout, "check output");
    assert_no_canary(&stderr, "check log");
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{stdout}");
    assert!(
        lines[0].starts_with("ok    team-a/reg: registry") && lines[0].contains("accepted"),
        "{stdout}"
    );
    assert!(
        lines[1].starts_with("FAIL  team-a/wrongpw: reachable, but authentication failed"),
        "{stdout}"
    );
    assert!(
        lines[2].starts_with("FAIL  team-a/gone: unreachable"),
        "{stdout}"
    );
    assert!(
        lines[3].starts_with("FAIL  team-a/missing: not usable")
            && lines[3].contains("does-not-exist"),
        "{stdout}"
    );

    let ok = std::process::Command::new(env!("CARGO_BIN_EXE_connectors"))
        .args(["check", "--catalog"])
        .arg(proxy.catalog_path())
        .arg(format!("{NS}/reg"))
        .output()
        .unwrap();
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
}

#[test]
fn catalog_edits_apply_without_a_restart_and_a_broken_edit_keeps_the_last_good_state() {
    let registry = Registry::builder().htpasswd(USER, CANARY).start();
    let wrong_password = format!("{CANARY}-wrong");
    let mut spec = ConnectorSpec::new("reg", registry.url());
    spec.password = Some(&wrong_password);
    let proxy = ProxyUnderTest::start(&spec.yaml(), &[]);
    let bearer = format!("Bearer {}", proxy.token(&format!("{NS}/reg")));
    let url = proxy.v2_url("reg", "team/app/tags/list");
    assert_eq!(
        get(&url, Some(&bearer)).status,
        403,
        "the wrong password is refused"
    );

    // fix the password in the Secret: the running proxy picks it up
    std::fs::write(
        proxy.catalog_path(),
        ConnectorSpec::new("reg", registry.url()).yaml(),
    )
    .unwrap();
    let fixed = wait_for_status(&url, &bearer, 404);
    assert_eq!(
        fixed, 404,
        "after the edit the registry accepts the connector (unknown repository is 404)"
    );

    // a broken edit: logged, and the last good state keeps serving
    std::fs::write(
        proxy.catalog_path(),
        "kind: Connector\nspec: [not, a, map\n",
    )
    .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !proxy.log().contains("keeping the last good state") {
        assert!(
            std::time::Instant::now() < deadline,
            "no log line about the broken catalog:\n{}",
            proxy.log()
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(
        get(&url, Some(&bearer)).status,
        404,
        "still serving from the last good catalog"
    );
    proxy.assert_log_clean();
}

/// Polls until `url` answers `want` (the catalog is re-read every 200 ms in these tests); returns the last status.
fn wait_for_status(url: &str, bearer: &str, want: u16) -> u16 {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        let status = get(url, Some(bearer)).status.as_u16();
        if status == want || std::time::Instant::now() > deadline {
            return status;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn sigterm_lets_an_upload_in_flight_finish_and_refuses_new_connections() {
    use connectors_testkit::http::StreamingBody;
    let registry = Registry::builder().htpasswd(USER, CANARY).start();
    let mut proxy = ProxyUnderTest::start(&ConnectorSpec::new("reg", registry.url()).yaml(), &[]);
    let bearer = format!("Bearer {}", proxy.token(&format!("{NS}/reg")));
    let r = http::send_blocking(
        "POST",
        &proxy.v2_url("reg", "team/slow/blobs/uploads/"),
        &[("Authorization", &bearer), ("Content-Length", "0")],
        Bytes::new(),
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    let url = format!(
        "http://{}{}",
        proxy.host_port(),
        r.header("location").unwrap()
    );

    // 48 MiB in 1 MiB pieces, 50 ms apart: about 2.5 s on the wire; SIGTERM arrives after 0.5 s.
    let body = StreamingBody::new(48 << 20)
        .chunk_size(1 << 20)
        .delay(std::time::Duration::from_millis(50));
    let len = body.len();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let upload = rt.spawn({
        let bearer = bearer.clone();
        async move {
            http::send_streaming(
                "PATCH",
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
    std::thread::sleep(std::time::Duration::from_millis(500));
    proxy.terminate();
    std::thread::sleep(std::time::Duration::from_millis(300));

    // no new connection is served once shutdown has begun
    proxy.assert_refuses_new_connections();

    // the upload in flight completes
    let r = rt
        .block_on(upload)
        .unwrap()
        .expect("the upload in flight failed");
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(r.header("range"), Some(format!("0-{}", len - 1).as_str()));
    let status = proxy
        .wait_exit(std::time::Duration::from_secs(20))
        .expect("the proxy did not exit after the upload");
    assert!(status.success(), "exit status {status}");
    proxy.assert_log_clean();
}
