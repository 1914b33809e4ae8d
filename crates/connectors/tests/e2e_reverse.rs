//! Reverse mode end to end: a real `docker-registry` (htpasswd, token and TLS modes), the real
//! `connectors` binary, and skopeo holding nothing but a proxy token.

mod common;

use bytes::Bytes;
use common::*;
use connectors_testkit::{
    ImageInfo, OciLayout, Output, Registry, Skopeo, TestCa, TokenServer, http, sha256_digest,
};

/// How skopeo reaches the registry directly (the oracle), with the real credentials.
struct Direct {
    host_port: String,
    tls_args: Vec<String>,
}

impl Direct {
    fn inspect_digest(&self, skopeo: &Skopeo, repo_tag: &str) -> Output {
        let creds = format!("{USER}:{CANARY}");
        let image = format!("docker://{}/{repo_tag}", self.host_port);
        let mut args: Vec<&str> = vec!["inspect", "--format", "{{.Digest}}", "--creds", &creds];
        args.extend(self.tls_args.iter().map(String::as_str));
        args.push(&image);
        skopeo.run(&args)
    }
}

fn run_clean(skopeo: &Skopeo, args: &[&str], what: &str) -> Output {
    let out = skopeo.run(args);
    assert_no_canary(&out.stdout, &format!("{what} (stdout)"));
    assert_no_canary(&out.stderr, &format!("{what} (stderr)"));
    out.assert_success(what);
    out
}

/// Push, inspect, pull, list tags and delete through the proxy; compare with the registry itself.
fn push_pull_roundtrip(proxy: &ProxyUnderTest, connector: &str, direct: &Direct) -> ImageInfo {
    let work = tempfile::tempdir().unwrap();
    let skopeo = Skopeo::new();
    let token = proxy.token(&format!("{NS}/{connector}"));
    let auth = proxy_authfile(work.path(), proxy, &token);
    let auth = auth.to_str().unwrap();
    let image = OciLayout::build(
        work.path().join("v1"),
        "v1",
        &[64 * 1024, 3 * 1024 * 1024 + 17],
    );
    let other = OciLayout::build(work.path().join("v2"), "v2", &[200 * 1024]);

    // push (the proxy is plain HTTP, so skopeo must be allowed to use http)
    for (img, tag) in [(&image, "team/app:v1"), (&other, "team/app:v2")] {
        let dest = proxy.image_ref(connector, tag);
        run_clean(
            &skopeo,
            &[
                "copy",
                "--preserve-digests",
                "--dest-tls-verify=false",
                "--dest-authfile",
                auth,
                &img.oci_ref(),
                &dest,
            ],
            &format!("push {tag} through the proxy"),
        );
    }

    // the registry itself has exactly what we pushed
    let direct_digest = direct.inspect_digest(&skopeo, "team/app:v1");
    direct_digest.assert_success("direct inspect");
    assert_eq!(
        direct_digest.stdout.trim(),
        image.manifest_digest,
        "digest in the registry"
    );

    // inspect through the proxy
    let src = proxy.image_ref(connector, "team/app:v1");
    let out = run_clean(
        &skopeo,
        &[
            "inspect",
            "--format",
            "{{.Digest}}",
            "--tls-verify=false",
            "--authfile",
            auth,
            &src,
        ],
        "inspect through the proxy",
    );
    assert_eq!(
        out.stdout.trim(),
        image.manifest_digest,
        "digest through the proxy"
    );

    // pull through the proxy: manifest and every layer byte-identical
    let pulled = work.path().join("pulled");
    run_clean(
        &skopeo,
        &[
            "copy",
            "--src-tls-verify=false",
            "--src-authfile",
            auth,
            &src,
            &format!("dir:{}", pulled.display()),
        ],
        "pull through the proxy",
    );
    let manifest = std::fs::read(pulled.join("manifest.json")).unwrap();
    assert_eq!(
        sha256_digest(&manifest),
        image.manifest_digest,
        "pulled manifest"
    );
    for layer in &image.layer_digests {
        let bytes = std::fs::read(pulled.join(layer.trim_start_matches("sha256:"))).unwrap();
        assert_eq!(&sha256_digest(&bytes), layer, "pulled layer");
    }

    // list tags
    let repo = proxy.image_ref(connector, "team/app");
    let out = run_clean(
        &skopeo,
        &["list-tags", "--tls-verify=false", "--authfile", auth, &repo],
        "list-tags",
    );
    let tags: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        tags["Tags"],
        serde_json::json!(["v1", "v2"]),
        "{}",
        out.stdout
    );

    // delete v2 through the proxy; the registry no longer has it, v1 is untouched
    let v2 = proxy.image_ref(connector, "team/app:v2");
    run_clean(
        &skopeo,
        &["delete", "--tls-verify=false", "--authfile", auth, &v2],
        "delete through the proxy",
    );
    let gone = direct.inspect_digest(&skopeo, "team/app:v2");
    assert!(
        !gone.success(),
        "v2 still in the registry after delete: {}",
        gone.stdout
    );
    assert_eq!(
        direct.inspect_digest(&skopeo, "team/app:v1").stdout.trim(),
        image.manifest_digest
    );
    image
}

#[test]
fn skopeo_through_the_proxy_to_an_htpasswd_registry() {
    let registry = Registry::builder().htpasswd(USER, CANARY).start();
    let proxy = ProxyUnderTest::start(&ConnectorSpec::new("reg", registry.url()).yaml(), &[]);
    let direct = Direct {
        host_port: registry.host_port(),
        tls_args: vec!["--tls-verify=false".into()],
    };
    let image = push_pull_roundtrip(&proxy, "reg", &direct);

    // Registry-to-registry copy through the proxy: pull and push in one skopeo run.
    let token = proxy.token(&format!("{NS}/reg"));
    let work = tempfile::tempdir().unwrap();
    let auth = proxy_authfile(work.path(), &proxy, &token);
    let auth = auth.to_str().unwrap();
    run_clean(
        &Skopeo::new(),
        &[
            "copy",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            "--authfile",
            auth,
            &proxy.image_ref("reg", "team/app:v1"),
            &proxy.image_ref("reg", "team/app:v3"),
        ],
        "copy v1 to v3 through the proxy",
    );
    // (registry 2.8 ignores `n` and sends no `Link`; Link rewriting is covered by the component tests)
    let bearer = format!("Bearer {token}");
    let r = http::send_blocking(
        "GET",
        &proxy.v2_url("reg", "team/app/tags/list"),
        &[("Authorization", &bearer)],
        Bytes::new(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    let mut tags: Vec<String> = serde_json::from_value(r.json()["tags"].clone()).unwrap();
    tags.sort();
    assert_eq!(tags, ["v1", "v3"]);
    assert_eq!(
        r.json()["name"],
        "team/app",
        "the registry's own repository name comes back unchanged"
    );
    assert_response_clean(&r, "tags/list response");

    // A blob GET streams the exact bytes.
    let layer = &image.layer_digests[1];
    let r = http::send_blocking(
        "GET",
        &proxy.v2_url("reg", &format!("team/app/blobs/{layer}")),
        &[("Authorization", &bearer)],
        Bytes::new(),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(&sha256_digest(&r.body), layer);
    assert_eq!(r.header("docker-content-digest"), Some(layer.as_str()));
    proxy.assert_log_clean();
    assert!(
        proxy.log().contains("connectors::access"),
        "no access log lines:\n{}",
        proxy.log()
    );
}

#[test]
fn skopeo_through_the_proxy_to_a_token_auth_registry() {
    let tokens = TokenServer::builder().user(USER, CANARY).start();
    let registry = Registry::builder().token(&tokens).start();
    let mut spec = ConnectorSpec::new("tok", registry.url());
    // the realm is plain HTTP on another port: it must be one of the connector's addresses to get credentials
    spec.extensions.push(tokens.url());
    let proxy = ProxyUnderTest::start(&spec.yaml(), &[]);
    let direct = Direct {
        host_port: registry.host_port(),
        tls_args: vec!["--tls-verify=false".into()],
    };
    let image = push_pull_roundtrip(&proxy, "tok", &direct);

    // Cross-repository mount through the proxy: `from` names the source in the proxy's namespace.
    tokens.clear_requests();
    let token = proxy.token(&format!("{NS}/tok"));
    let bearer = format!("Bearer {token}");
    let layer = &image.layer_digests[0];
    let url = proxy.v2_url(
        "tok",
        &format!("team/copy/blobs/uploads/?mount={layer}&from=namespaces%2F{NS}%2Fconnectors%2Ftok%2Fteam%2Fapp"),
    );
    let r = http::send_blocking(
        "POST",
        &url,
        &[("Authorization", &bearer), ("Content-Length", "0")],
        Bytes::new(),
    )
    .unwrap();
    assert_eq!(r.status, 201, "mount: {}", r.text());
    assert_eq!(r.header("docker-content-digest"), Some(layer.as_str()));
    let location = r.header("location").unwrap_or_default().to_owned();
    assert!(
        location.starts_with(&format!(
            "/v2/namespaces/{NS}/connectors/tok/team/copy/blobs/"
        )),
        "Location not rewritten: {location}"
    );
    // the token asked for pull on the source as well
    let asked: Vec<String> = tokens
        .requests()
        .iter()
        .flat_map(|r| r.scopes.clone())
        .collect();
    assert!(
        asked.iter().any(|s| s == "repository:team/app:pull"),
        "scopes asked: {asked:?}"
    );
    let r = http::send_blocking(
        "HEAD",
        &proxy.v2_url("tok", &format!("team/copy/blobs/{layer}")),
        &[("Authorization", &bearer)],
        Bytes::new(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "mounted blob missing");
    // every token request carried the connector's user, never an anonymous one
    assert!(
        tokens
            .requests()
            .iter()
            .all(|r| r.username.as_deref() == Some(USER)),
        "{:?}",
        tokens.requests()
    );
    proxy.assert_log_clean();
}

#[test]
fn oauth2_post_fallback_when_the_realm_refuses_get() {
    let tokens = TokenServer::builder()
        .user(USER, CANARY)
        .post_only(true)
        .start();
    let registry = Registry::builder().token(&tokens).start();
    let mut spec = ConnectorSpec::new("tok", registry.url());
    spec.extensions.push(tokens.url());
    let proxy = ProxyUnderTest::start(&spec.yaml(), &[]);
    let work = tempfile::tempdir().unwrap();
    let skopeo = Skopeo::new();
    let auth = proxy_authfile(work.path(), &proxy, &proxy.token(&format!("{NS}/tok")));
    let image = OciLayout::build(work.path().join("img"), "v1", &[4096]);
    run_clean(
        &skopeo,
        &[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-authfile",
            auth.to_str().unwrap(),
            &image.oci_ref(),
            &proxy.image_ref("tok", "team/post:v1"),
        ],
        "push with an OAuth2-only realm",
    );
    let methods: Vec<String> = tokens.requests().iter().map(|r| r.method.clone()).collect();
    assert!(
        methods.iter().any(|m| m == "POST"),
        "no POST token request: {methods:?}"
    );
    proxy.assert_log_clean();
}

#[test]
fn skopeo_through_the_proxy_to_a_tls_registry_with_a_private_ca() {
    let ca = TestCa::new();
    let registry = Registry::builder().htpasswd(USER, CANARY).tls(&ca).start();
    let mut spec = ConnectorSpec::new("tls", registry.url());
    spec.ca_pem = Some(ca.ca_cert_pem().to_owned());
    let proxy = ProxyUnderTest::start(&spec.yaml(), &[]);
    let certs = tempfile::tempdir().unwrap();
    let cert_dir = ca.write_cert_dir(certs.path());
    let direct = Direct {
        host_port: registry.host_port(),
        tls_args: vec!["--cert-dir".into(), cert_dir.display().to_string()],
    };
    push_pull_roundtrip(&proxy, "tls", &direct);
    proxy.assert_log_clean();
}

#[test]
fn chunked_upload_with_content_range_through_the_proxy() {
    let registry = Registry::builder().htpasswd(USER, CANARY).start();
    let proxy = ProxyUnderTest::start(&ConnectorSpec::new("reg", registry.url()).yaml(), &[]);
    let bearer = format!("Bearer {}", proxy.token(&format!("{NS}/reg")));
    let auth = [("Authorization", bearer.as_str())];
    // 2 MiB streams through; the 700 KiB tail is small enough to be held (and replayable)
    let mut rng = connectors_testkit::PseudoRandom::from_label("chunked");
    let data = rng.bytes(2 * 1024 * 1024 + 700 * 1024);
    let digest = sha256_digest(&data);
    let (first, second) = data.split_at(2 * 1024 * 1024);

    let r = http::send_blocking(
        "POST",
        &proxy.v2_url("reg", "team/chunked/blobs/uploads/"),
        &[auth[0], ("Content-Length", "0")],
        Bytes::new(),
    )
    .unwrap();
    assert_eq!(r.status, 202, "{}", r.text());
    let mut location = r.header("location").unwrap().to_owned();
    assert!(
        location.starts_with(&format!(
            "/v2/namespaces/{NS}/connectors/reg/team/chunked/blobs/uploads/"
        )),
        "{location}"
    );

    let mut offset = 0usize;
    for chunk in [first, second] {
        let range = format!("{}-{}", offset, offset + chunk.len() - 1);
        let url = format!("http://{}{location}", proxy.host_port());
        let r = http::send_blocking(
            "PATCH",
            &url,
            &[
                auth[0],
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", &range),
            ],
            Bytes::copy_from_slice(chunk),
        )
        .unwrap();
        assert_eq!(r.status, 202, "PATCH {range}: {}", r.text());
        assert_eq!(
            r.header("range"),
            Some(format!("0-{}", offset + chunk.len() - 1).as_str())
        );
        offset += chunk.len();
        location = r.header("location").unwrap().to_owned();
        assert!(location.starts_with("/v2/namespaces/"), "{location}");
    }
    let sep = if location.contains('?') { '&' } else { '?' };
    let url = format!(
        "http://{}{location}{sep}digest={}",
        proxy.host_port(),
        digest.replace(':', "%3A")
    );
    let r = http::send_blocking(
        "PUT",
        &url,
        &[auth[0], ("Content-Length", "0")],
        Bytes::new(),
    )
    .unwrap();
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(r.header("docker-content-digest"), Some(digest.as_str()));

    // the registry has the blob, byte for byte
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{CANARY}"))
    );
    let r = http::send_blocking(
        "GET",
        &format!("{}/v2/team/chunked/blobs/{digest}", registry.url()),
        &[("Authorization", &basic)],
        Bytes::new(),
    )
    .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), data.len());
    assert_eq!(sha256_digest(&r.body), digest);
    proxy.assert_log_clean();
}
