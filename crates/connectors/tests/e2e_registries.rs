//! Registries beside Debian's docker-registry 2.8 as upstreams: CNCF distribution v3 (its Go module, built
//! by `testground/distribution/build.sh`) with htpasswd and with token auth (the token server in
//! `connectors-testkit`), and go-containerregistry's registry (`crane registry serve`, built by
//! `testground/crane/build.sh`), a second implementation (zot's module is not served here).
//!
//! Against each: skopeo and crane (a Go client) in reverse and forward mode, push and pull, digests checked
//! on the registry directly; then, through the reverse proxy, a chunked upload with `Content-Range`, a
//! cross-repository mount, and the tag list with `n`/`last` following the rewritten `Link` header.
//!
//! The peers are built only when asked: without them each test prints one line naming this tier and
//! `scripts/test.sh --all`, and passes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use bytes::Bytes;
use common::*;
use connectors_testkit::peers::peer_dir;
use connectors_testkit::{
    Access, GgcrRegistry, ImageInfo, OciLayout, Output, Registry, Skopeo, TestCa, TokenServer,
    ensure_hosts_entry, http, sha256_digest,
};

const TIER: &str = "e2e_registries (registry tier)";
const HOST: &str = "registry.test";
const C: &str = "up";

/// How the test reaches the upstream directly (the oracle).
enum DirectAuth<'a> {
    None,
    Basic,
    Bearer(&'a TokenServer),
}

struct Upstream<'a> {
    /// `registry.test:PORT`
    name: String,
    /// `http://127.0.0.1:PORT` or `https://…`
    url: String,
    tls: Option<&'a TestCa>,
    auth: DirectAuth<'a>,
    /// The connector's catalog entry.
    spec: ConnectorSpec<'a>,
    /// Whether the registry mounts across repositories (else it answers a mount with 202 and a normal
    /// upload session, which the OCI spec allows).
    mounts: bool,
    /// Whether the registry sends a `Link` header on a truncated tag list (crane's does not: the client
    /// pages with `last` itself).
    link: bool,
    /// The registry's log (printed when the test fails).
    log: Box<dyn Fn() -> String + 'a>,
}

fn peers() -> Option<(PathBuf, PathBuf)> {
    let crane = peer_dir(TIER, "crane")?;
    let dist = peer_dir(TIER, "distribution")?;
    Some((crane.join("crane"), dist.join("registry")))
}

fn hosts() {
    ensure_hosts_entry(HOST)
        .expect("the registry tests need `127.0.0.1 registry.test` in /etc/hosts");
}

impl Upstream<'_> {
    fn auth_header(&self, repo: &str) -> Option<String> {
        use base64::Engine;
        match &self.auth {
            DirectAuth::None => None,
            DirectAuth::Basic => Some(format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{CANARY}"))
            )),
            DirectAuth::Bearer(tokens) => Some(format!(
                "Bearer {}",
                tokens.mint_token(USER, &[Access::repository(repo, &["pull", "push"])], 300)
            )),
        }
    }

    /// HEAD `path` (`/v2/<repo>/…`) on the registry itself: status and headers (curl, which speaks TLS).
    fn direct_head(&self, work: &Path, repo: &str, path: &str) -> (u16, String) {
        let mut cmd = Command::new("curl");
        cmd.args(["-sS", "-o", "/dev/null", "-D", "-", "-I"]);
        if let Some(ca) = self.tls {
            let pem = work.join("upstream-ca.pem");
            std::fs::write(&pem, ca.ca_cert_pem()).unwrap();
            cmd.arg("--cacert").arg(pem);
        }
        if let Some(h) = self.auth_header(repo) {
            cmd.args(["-H", &format!("Authorization: {h}")]);
        }
        cmd.args([
            "-H",
            "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
             application/vnd.docker.distribution.manifest.v2+json",
        ]);
        let out = cmd
            .arg(format!("{}{path}", self.url))
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .output()
            .expect("run curl");
        let head = String::from_utf8_lossy(&out.stdout).into_owned();
        let status = head
            .lines()
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        (status, head)
    }

    fn direct_digest(&self, work: &Path, repo: &str, tag: &str) -> Option<String> {
        let (status, head) = self.direct_head(work, repo, &format!("/v2/{repo}/manifests/{tag}"));
        if status == 404 {
            return None;
        }
        assert_eq!(status, 200, "direct HEAD {repo}:{tag}: {head}");
        head.lines().find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("docker-content-digest")
                .then(|| v.trim().to_owned())
        })
    }
}

#[track_caller]
fn clean(out: Output, what: &str) -> Output {
    assert_no_canary(&out.stdout, what);
    assert_no_canary(&out.stderr, what);
    out.assert_success(what);
    out
}

fn crane(bin: &Path, args: &[&str], env: &[(&str, &str)], home: &Path) -> Output {
    let out = Command::new(bin)
        .args(args)
        .env_clear()
        .env("HOME", home)
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .envs(env.iter().copied())
        .output()
        .expect("run crane");
    Output {
        status: out.status,
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        timed_out: false,
    }
}

/// The whole matrix against one upstream.
fn matrix(up: &Upstream, crane_bin: &Path) {
    let mut resolve = vec![format!(
        "--resolve={HOST}:{}:127.0.0.1",
        up.name.rsplit(':').next().unwrap_or_default()
    )];
    resolve.dedup();
    let args: Vec<&str> = resolve.iter().map(String::as_str).collect();
    let proxy = ProxyUnderTest::start(&up.spec.yaml(), &args);
    let token = proxy.token(&format!("{NS}/{C}"));
    let work = tempfile::Builder::new()
        .prefix("e2e-registries-")
        .tempdir()
        .unwrap();
    let w = work.path();
    let home = w.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let image = OciLayout::build(w.join("img"), "v1", &[64 * 1024, 1024 * 1024 + 3]);
    let want = image.manifest_digest.clone();
    let prefix = format!("{}/namespaces/{NS}/connectors/{C}", proxy.host_port());

    // --- reverse mode: skopeo push + pull
    let _dbg = DumpOnPanic(&proxy, &up.log);
    let auth = proxy_authfile(w, &proxy, &token);
    let auth = auth.to_str().unwrap();
    let skopeo = Skopeo::new();
    clean(
        skopeo.run(&[
            "copy",
            "--preserve-digests",
            "--dest-tls-verify=false",
            "--dest-authfile",
            auth,
            &image.oci_ref(),
            &format!("docker://{prefix}/team/app:v1"),
        ]),
        "skopeo push (reverse)",
    );
    assert_eq!(up.direct_digest(w, "team/app", "v1"), Some(want.clone()));
    let pulled = w.join("pulled-skopeo");
    clean(
        skopeo.run(&[
            "copy",
            "--src-tls-verify=false",
            "--src-authfile",
            auth,
            &format!("docker://{prefix}/team/app:v1"),
            &format!("dir:{}", pulled.display()),
        ]),
        "skopeo pull (reverse)",
    );
    assert_eq!(
        sha256_digest(&std::fs::read(pulled.join("manifest.json")).unwrap()),
        want
    );

    // --- reverse mode: crane push + pull (config.json = the proxy token only)
    let docker_config = w.join("docker");
    std::fs::create_dir_all(&docker_config).unwrap();
    std::fs::copy(auth, docker_config.join("config.json")).unwrap();
    let dc = docker_config.to_str().unwrap();
    let img_dir = image.path.to_str().unwrap();
    clean(
        crane(
            crane_bin,
            &[
                "--insecure",
                "push",
                img_dir,
                &format!("{prefix}/team/crane:v1"),
            ],
            &[("DOCKER_CONFIG", dc)],
            &home,
        ),
        "crane push (reverse)",
    );
    assert_eq!(up.direct_digest(w, "team/crane", "v1"), Some(want.clone()));
    let out = clean(
        crane(
            crane_bin,
            &[
                "--insecure",
                "pull",
                "--format",
                "oci",
                &format!("{prefix}/team/crane:v1"),
                w.join("pulled-crane").to_str().unwrap(),
            ],
            &[("DOCKER_CONFIG", dc)],
            &home,
        ),
        "crane pull (reverse)",
    );
    drop(out);
    assert!(w.join("pulled-crane/index.json").is_file());

    // --- forward mode: skopeo and crane keep the registry's own name
    let https_proxy = proxy_url(&proxy, &[C], &token);
    let certs = proxy_cert_dir(&proxy);
    let certs = certs.to_str().unwrap();
    let ca_file = proxy.state_dir().join("ca.crt");
    let fwd = |repo: &str| format!("{}/{repo}", up.name);
    let fskopeo = Skopeo::new()
        .env("HTTPS_PROXY", &https_proxy)
        .env("HTTP_PROXY", &https_proxy);
    let (dest_tls, src_tls, crane_insecure): (Vec<&str>, Vec<&str>, Vec<&str>) = if up.tls.is_some()
    {
        (
            vec!["--dest-cert-dir", certs],
            vec!["--src-cert-dir", certs],
            vec![],
        )
    } else {
        (
            vec!["--dest-tls-verify=false"],
            vec!["--src-tls-verify=false"],
            vec!["--insecure"],
        )
    };
    let dest = format!("docker://{}", fwd("team/fwd:v1"));
    let src = image.oci_ref();
    let mut a = vec!["copy", "--preserve-digests"];
    a.extend(&dest_tls);
    a.extend([src.as_str(), dest.as_str()]);
    clean(fskopeo.run(&a), "skopeo push (forward)");
    assert_eq!(up.direct_digest(w, "team/fwd", "v1"), Some(want.clone()));
    let pulled = w.join("pulled-fwd");
    let target = format!("dir:{}", pulled.display());
    let mut a = vec!["copy"];
    a.extend(&src_tls);
    a.extend([dest.as_str(), target.as_str()]);
    clean(fskopeo.run(&a), "skopeo pull (forward)");
    assert_eq!(
        sha256_digest(&std::fs::read(pulled.join("manifest.json")).unwrap()),
        want
    );
    let cenv = [
        ("HTTPS_PROXY", https_proxy.as_str()),
        ("HTTP_PROXY", https_proxy.as_str()),
        ("SSL_CERT_FILE", ca_file.to_str().unwrap()),
    ];
    let mut a = crane_insecure.clone();
    let cdest = fwd("team/crane-fwd:v1");
    a.extend(["push", img_dir, cdest.as_str()]);
    clean(crane(crane_bin, &a, &cenv, &home), "crane push (forward)");
    assert_eq!(
        up.direct_digest(w, "team/crane-fwd", "v1"),
        Some(want.clone())
    );
    let mut a = crane_insecure.clone();
    let out_dir = w.join("pulled-crane-fwd");
    a.extend([
        "pull",
        "--format",
        "oci",
        cdest.as_str(),
        out_dir.to_str().unwrap(),
    ]);
    clean(crane(crane_bin, &a, &cenv, &home), "crane pull (forward)");
    assert!(out_dir.join("index.json").is_file());

    // --- protocol details through the reverse proxy
    let bearer = format!("Bearer {token}");
    chunked_upload(up, &proxy, &bearer, w);
    cross_repo_mount(up, &proxy, &bearer, w, &image);
    tags_pagination(up, &proxy, &bearer, &image);

    proxy.assert_log_clean();
}

fn chunked_upload(up: &Upstream, proxy: &ProxyUnderTest, bearer: &str, w: &Path) {
    let mut rng = connectors_testkit::PseudoRandom::from_label("chunked-registries");
    let data = rng.bytes(1024 * 1024 + 300 * 1024);
    let digest = sha256_digest(&data);
    let (first, second) = data.split_at(1024 * 1024);
    let r = http::send_blocking(
        "POST",
        &proxy.v2_url(C, "team/chunked/blobs/uploads/"),
        &[("Authorization", bearer), ("Content-Length", "0")],
        Bytes::new(),
    )
    .expect("POST upload");
    assert_response_clean(&r, "POST upload");
    assert_eq!(r.status, 202, "{}", r.text());
    let mut location = r.header("location").expect("Location").to_owned();
    let prefix = format!("/v2/namespaces/{NS}/connectors/{C}/team/chunked/blobs/uploads/");
    assert!(location.starts_with(&prefix), "Location: {location}");
    let mut offset = 0usize;
    for chunk in [first, second] {
        let range = format!("{}-{}", offset, offset + chunk.len() - 1);
        let r = http::send_blocking(
            "PATCH",
            &format!("http://{}{location}", proxy.host_port()),
            &[
                ("Authorization", bearer),
                ("Content-Type", "application/octet-stream"),
                ("Content-Range", &range),
            ],
            Bytes::copy_from_slice(chunk),
        )
        .expect("PATCH");
        assert_response_clean(&r, "PATCH");
        assert_eq!(r.status, 202, "PATCH {range}: {}", r.text());
        offset += chunk.len();
        location = r.header("location").expect("Location").to_owned();
        assert!(location.starts_with(&prefix), "Location: {location}");
    }
    let sep = if location.contains('?') { '&' } else { '?' };
    let r = http::send_blocking(
        "PUT",
        &format!(
            "http://{}{location}{sep}digest={}",
            proxy.host_port(),
            digest.replace(':', "%3A")
        ),
        &[("Authorization", bearer), ("Content-Length", "0")],
        Bytes::new(),
    )
    .expect("PUT");
    assert_eq!(r.status, 201, "PUT: {}", r.text());
    let (status, head) = up.direct_head(
        w,
        "team/chunked",
        &format!("/v2/team/chunked/blobs/{digest}"),
    );
    assert_eq!(status, 200, "chunked blob on the registry: {head}");
}

fn cross_repo_mount(
    up: &Upstream,
    proxy: &ProxyUnderTest,
    bearer: &str,
    w: &Path,
    image: &ImageInfo,
) {
    let layer = &image.layer_digests[0];
    let r = http::send_blocking(
        "POST",
        &proxy.v2_url(
            C,
            &format!(
                "team/mounted/blobs/uploads/?mount={layer}&from=namespaces%2F{NS}%2Fconnectors%2F{C}%2Fteam%2Fapp"
            ),
        ),
        &[("Authorization", bearer), ("Content-Length", "0")],
        Bytes::new(),
    )
    .expect("POST mount");
    assert_response_clean(&r, "mount");
    let want = if up.mounts { 201 } else { 202 };
    assert_eq!(r.status, want, "mount: {} {:?}", r.text(), r.headers);
    let location = r.header("location").unwrap_or_default();
    assert!(
        location.starts_with(&format!(
            "/v2/namespaces/{NS}/connectors/{C}/team/mounted/blobs/"
        )) || location.starts_with(&format!(
            "http://{}/v2/namespaces/{NS}/connectors/{C}/team/mounted/blobs/",
            proxy.host_port()
        )),
        "Location not rewritten: {location}"
    );
    if up.mounts {
        let (status, head) = up.direct_head(
            w,
            "team/mounted",
            &format!("/v2/team/mounted/blobs/{layer}"),
        );
        assert_eq!(status, 200, "mounted blob on the registry: {head}");
    }
}

fn tags_pagination(up: &Upstream, proxy: &ProxyUnderTest, bearer: &str, image: &ImageInfo) {
    let mut want: Vec<String> = vec!["v1".to_owned()];
    for tag in ["t1", "t2", "t3", "t4"] {
        let r = http::send_blocking(
            "PUT",
            &proxy.v2_url(C, &format!("team/app/manifests/{tag}")),
            &[
                ("Authorization", bearer),
                ("Content-Type", "application/vnd.oci.image.manifest.v1+json"),
            ],
            Bytes::copy_from_slice(&image.manifest),
        )
        .expect("PUT manifest");
        assert_eq!(r.status, 201, "PUT manifest {tag}: {}", r.text());
        want.push(tag.to_owned());
    }
    want.sort();
    let mut got: Vec<String> = Vec::new();
    let mut url = proxy.v2_url(C, "team/app/tags/list?n=2");
    let mut pages = 0;
    loop {
        pages += 1;
        assert!(pages <= 10, "tag list does not end");
        let r = http::send_blocking("GET", &url, &[("Authorization", bearer)], Bytes::new())
            .expect("GET tags");
        assert_response_clean(&r, "tags/list");
        assert_eq!(r.status, 200, "{url}: {}", r.text());
        let page: Vec<String> = r.json()["tags"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        assert!(page.len() <= 2, "n=2 gave {page:?}");
        let last = page.last().cloned();
        let full = page.len() == 2;
        got.extend(page);
        let Some(link) = r.header("link") else {
            match last {
                // crane's registry sends no Link: the client pages itself with `last`, through the proxy
                Some(last) if !up.link && full => {
                    url = proxy.v2_url(C, &format!("team/app/tags/list?n=2&last={last}"));
                    continue;
                }
                _ => break,
            }
        };
        assert!(up.link, "unexpected Link {link}");
        let target = link
            .split_once('<')
            .and_then(|(_, rest)| rest.split_once('>'))
            .map(|(t, _)| t.to_owned())
            .unwrap_or_else(|| panic!("bad Link {link}"));
        assert!(
            target.starts_with(&format!(
                "/v2/namespaces/{NS}/connectors/{C}/team/app/tags/list?"
            )),
            "Link not rewritten: {link}"
        );
        assert!(target.contains("last="), "{link}");
        url = format!("http://{}{target}", proxy.host_port());
    }
    assert!(pages >= 3, "n=2 over 5 tags took {pages} page(s): no Link?");
    assert_eq!(got, want);
}

#[test]
fn distribution_v3_htpasswd_upstream() {
    let Some((crane_bin, dist)) = peers() else {
        return;
    };
    hosts();
    let ca = TestCa::new();
    let registry = Registry::builder()
        .binary(&dist)
        .htpasswd(USER, CANARY)
        .tls(&ca)
        .start();
    let name = format!("{HOST}:{}", registry.port());
    let mut spec = ConnectorSpec::new(C, format!("https://{name}"));
    spec.ca_pem = Some(ca.ca_cert_pem().to_owned());
    let up = Upstream {
        name,
        url: registry.url(),
        tls: Some(&ca),
        auth: DirectAuth::Basic,
        spec,
        mounts: true,
        link: true,
        log: Box::new(|| registry.log()),
    };
    matrix(&up, &crane_bin);
}

#[test]
fn distribution_v3_token_upstream() {
    let Some((crane_bin, dist)) = peers() else {
        return;
    };
    hosts();
    let ca = TestCa::new();
    let tokens = TokenServer::builder().user(USER, CANARY).x5c(true).start();
    let registry = Registry::builder()
        .binary(&dist)
        .token(&tokens)
        .tls(&ca)
        .start();
    let name = format!("{HOST}:{}", registry.port());
    let mut spec = ConnectorSpec::new(C, format!("https://{name}"));
    spec.ca_pem = Some(ca.ca_cert_pem().to_owned());
    spec.extensions.push(tokens.url());
    let up = Upstream {
        name,
        url: registry.url(),
        tls: Some(&ca),
        auth: DirectAuth::Bearer(&tokens),
        spec,
        mounts: true,
        link: true,
        log: Box::new(|| registry.log()),
    };
    matrix(&up, &crane_bin);
    assert!(
        tokens
            .requests()
            .iter()
            .all(|r| r.username.as_deref() == Some(USER)),
        "every token request carried the connector's user"
    );
}

#[test]
fn ggcr_registry_upstream() {
    let Some((crane_bin, _)) = peers() else {
        return;
    };
    hosts();
    let registry = GgcrRegistry::start(&crane_bin);
    let name = format!("{HOST}:{}", registry.port());
    let mut spec = ConnectorSpec::new(C, format!("http://{name}"));
    spec.password = None;
    let up = Upstream {
        name,
        url: registry.url(),
        tls: None,
        auth: DirectAuth::None,
        spec,
        mounts: false,
        link: false,
        log: Box::new(|| registry.log()),
    };
    matrix(&up, &crane_bin);
}

struct DumpOnPanic<'a>(&'a ProxyUnderTest, &'a dyn Fn() -> String);
impl Drop for DumpOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- proxy log ---\n{}", self.0.log());
            eprintln!("--- registry log ---\n{}", (self.1)());
        }
    }
}
