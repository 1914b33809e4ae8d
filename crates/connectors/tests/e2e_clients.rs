//! The clients people use, for real: crane, oras, regctl, helm, ko, BuildKit and containerd's ctr (built
//! from their Go modules by `testground/<peer>/build.sh`), each in reverse and in forward mode, push and pull, driven by the command
//! blocks of its `docs/<client>.md` page and nothing else: the files `connectors render` writes
//! (`config.json`, `.env`, `ca.crt`) and the insecure switches the page documents (plain HTTP to the
//! reverse proxy). Digests are checked on the registry directly; the registry password appears in no
//! output, rendered file or proxy log line.
//!
//! The peers are built only when asked: without them each test prints one line naming this tier and
//! `scripts/test.sh --all`, and passes.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use connectors_testkit::peers::{DocRunner, peer_dir};
use connectors_testkit::{ImageInfo, OciLayout, Output, Registry, TestCa, ensure_hosts_entry};

const TIER: &str = "e2e_clients (client tier)";
const HOST: &str = "registry.test";

/// A TLS registry with a password, a proxy with the connector `team-a/registry` for it, and a work folder
/// holding `./image` (an OCI layout tagged `v1`), `hello.txt` and `sig.txt`.
struct Setup {
    ca: TestCa,
    registry: Registry,
    proxy: ProxyUnderTest,
    work: tempfile::TempDir,
    image: ImageInfo,
}

impl Setup {
    fn new() -> Setup {
        ensure_hosts_entry(HOST)
            .expect("the client tests need `127.0.0.1 registry.test` in /etc/hosts");
        let ca = TestCa::new();
        let registry = Registry::builder().htpasswd(USER, CANARY).tls(&ca).start();
        let mut spec = ConnectorSpec::new("registry", format!("https://{}", reg_name(&registry)));
        spec.ca_pem = Some(ca.ca_cert_pem().to_owned());
        let proxy = ProxyUnderTest::start(
            &spec.yaml(),
            &[&format!("--resolve={HOST}:{}:127.0.0.1", registry.port())],
        );
        let work = tempfile::Builder::new()
            .prefix("e2e-clients-")
            .tempdir()
            .expect("tempdir");
        let image = OciLayout::build(
            work.path().join("image"),
            "v1",
            &[64 * 1024, 1024 * 1024 + 5],
        );
        std::fs::write(work.path().join("hello.txt"), "hello through the proxy\n").unwrap();
        std::fs::write(work.path().join("sig.txt"), "a signature, of sorts\n").unwrap();
        Setup {
            ca,
            registry,
            proxy,
            work,
            image,
        }
    }

    fn rendered(&self) -> PathBuf {
        self.work.path().join("mnt-connectors")
    }

    /// The docs page's runner: `PROXY`, `/mnt/connectors`, `registry.example.com`, the peer and
    /// `connectors` on `PATH`, the catalog and state folder of the running proxy.
    fn doc(&self, page: &str, peer: &Path) -> DocRunner {
        let connectors_bin = Path::new(env!("CARGO_BIN_EXE_connectors"))
            .parent()
            .expect("the binary's folder");
        DocRunner::new(page, self.work.path())
            .path(peer)
            .path(connectors_bin)
            .env("PROXY", self.proxy.host_port())
            .env("CONNECTORS_CATALOG", self.proxy.catalog_path())
            .env("CONNECTORS_STATE_DIR", self.proxy.state_dir())
            .replace("/mnt/connectors", &self.rendered().display().to_string())
            .replace("registry.example.com", &reg_name(&self.registry))
    }

    /// Runs a section and checks that no output carries the canary.
    fn run(&self, doc: &mut DocRunner, heading: &str) -> Output {
        let out = doc.run(heading);
        assert_no_canary(&out.stdout, &format!("`## {heading}` (stdout)"));
        assert_no_canary(&out.stderr, &format!("`## {heading}` (stderr)"));
        out
    }

    /// Renders, and checks every rendered file is free of the canary.
    fn render(&self, doc: &mut DocRunner) {
        self.run(doc, "Render the files");
        for entry in std::fs::read_dir(self.rendered()).expect("rendered folder") {
            let path = entry.expect("entry").path();
            if path.is_file() {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                assert_no_canary(&text, &path.display().to_string());
            }
        }
    }

    /// The digest of `repo:ref` as the registry itself reports it (asked directly, with the password and
    /// the registry's own CA), or `None` when it has no such manifest.
    fn direct_digest(&self, repo_ref: &str) -> Option<String> {
        let (repo, reference) = match repo_ref.split_once('@') {
            Some(x) => x,
            None => repo_ref.rsplit_once(':').expect("repo:tag"),
        };
        let ca = self.work.path().join("registry-ca.pem");
        std::fs::write(&ca, self.ca.ca_cert_pem()).unwrap();
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-D", "-", "-I", "--cacert"])
            .arg(&ca)
            .args(["-u", &format!("{USER}:{CANARY}")])
            .args([
                "-H",
                "Accept: application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json, \
                 application/vnd.docker.distribution.manifest.v2+json, application/vnd.docker.distribution.manifest.list.v2+json",
            ])
            .arg(format!(
                "{}/v2/{repo}/manifests/{reference}",
                self.registry.url()
            ))
            .env_remove("HTTPS_PROXY")
            .env_remove("https_proxy")
            .output()
            .expect("run curl (apt-get install curl)");
        let head = String::from_utf8_lossy(&out.stdout).into_owned();
        let status = head.lines().next().unwrap_or_default();
        if status.contains(" 404") {
            return None;
        }
        assert!(status.contains(" 200"), "direct HEAD {repo_ref}: {head}");
        head.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(':')?;
                k.eq_ignore_ascii_case("docker-content-digest")
                    .then(|| v.trim().to_owned())
            })
            .or_else(|| panic!("no Docker-Content-Digest for {repo_ref}: {head}"))
    }

    fn finish(&self, doc: &DocRunner) {
        // DUMP_ACCESS=1 (with --nocapture) prints the proxy's access lines: how the "on the wire"
        // sections of the docs pages were gathered.
        if std::env::var_os("DUMP_ACCESS").is_some() {
            for l in self
                .proxy
                .log()
                .lines()
                .filter(|l| l.contains("connectors::access"))
            {
                eprintln!("ACCESS {l}");
            }
        }
        doc.assert_all_ran();
        let log = self.proxy.log();
        assert!(
            log.contains("operation=\"intercept\""),
            "forward mode was not intercepted by the proxy:\n{log}"
        );
        self.proxy.assert_log_clean();
    }
}

fn reg_name(registry: &Registry) -> String {
    format!("{HOST}:{}", registry.port())
}

/// The `Digest: sha256:…` lines oras prints, in order.
fn digest_lines(text: &str) -> Vec<String> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("Digest: "))
        .map(|d| d.trim().to_owned())
        .collect()
}

fn file_text(path: PathBuf) -> String {
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn crane_reverse_and_forward_push_pull() {
    let Some(peer) = peer_dir(TIER, "crane") else {
        return;
    };
    let s = Setup::new();
    let mut doc = s.doc("crane.md", &peer);
    s.render(&mut doc);
    let want = s.image.manifest_digest.clone();

    let out = s.run(&mut doc, "Reverse mode");
    assert!(out.stdout.contains(&want), "crane digest: {}", out.stdout);
    assert!(s.work.path().join("pulled/index.json").is_file());
    assert_eq!(
        file_text(s.work.path().join("manifest.json")).as_bytes(),
        s.image.manifest.as_slice()
    );
    assert_eq!(s.direct_digest("team/copy:v1"), Some(want.clone()));
    assert_eq!(s.direct_digest("team/copy:v2"), Some(want.clone()));
    assert_eq!(
        s.direct_digest("team/app:v1"),
        None,
        "crane delete went through"
    );

    let out = s.run(&mut doc, "Forward mode");
    assert!(out.stdout.contains(&want), "crane digest: {}", out.stdout);
    assert_eq!(s.direct_digest("team/fwd:v1"), Some(want.clone()));
    assert_eq!(s.direct_digest("team/fwd:v2"), Some(want));
    assert!(s.work.path().join("pulled-fwd/index.json").is_file());
    s.finish(&doc);
}

#[test]
fn oras_reverse_and_forward_push_pull_attach() {
    let Some(peer) = peer_dir(TIER, "oras") else {
        return;
    };
    let s = Setup::new();
    let mut doc = s.doc("oras.md", &peer);
    s.render(&mut doc);

    let out = s.run(&mut doc, "Reverse mode");
    let digests = digest_lines(&out.stdout);
    let pushed = digests.first().expect("oras push prints Digest:").clone();
    assert_eq!(s.direct_digest("team/notes:v1"), Some(pushed.clone()));
    assert_eq!(s.direct_digest("team/notes-copy:v1"), Some(pushed.clone()));
    assert_eq!(
        file_text(s.work.path().join("pulled/hello.txt")),
        "hello through the proxy\n"
    );
    assert!(
        out.stdout.contains("application/vnd.example.signature"),
        "oras discover shows the attached signature:\n{}",
        out.stdout
    );
    // docker-registry 2.8 has no referrers API: oras fell back to the tag schema `sha256-<hex>`
    let fallback = format!("team/notes:{}", pushed.replace(':', "-"));
    assert!(
        s.direct_digest(&fallback).is_some(),
        "referrers fallback tag {fallback} missing"
    );

    let out = s.run(&mut doc, "Forward mode");
    let pushed = digest_lines(&out.stdout)
        .first()
        .expect("oras push prints Digest:")
        .clone();
    assert_eq!(s.direct_digest("team/notes:fwd"), Some(pushed));
    assert_eq!(
        file_text(s.work.path().join("pulled-fwd/hello.txt")),
        "hello through the proxy\n"
    );
    assert!(out.stdout.contains("application/vnd.example.signature"));
    s.finish(&doc);
}

#[test]
fn regctl_reverse_and_forward_push_pull_artifact() {
    let Some(peer) = peer_dir(TIER, "regclient") else {
        return;
    };
    let s = Setup::new();
    let mut doc = s.doc("regctl.md", &peer);
    s.render(&mut doc);
    let want = s.image.manifest_digest.clone();

    let out = s.run(&mut doc, "Reverse mode");
    assert!(
        out.stdout.contains(&want),
        "regctl image digest: {}",
        out.stdout
    );
    assert_eq!(s.direct_digest("team/app:v1"), Some(want.clone()));
    assert_eq!(s.direct_digest("team/copy:v1"), Some(want.clone()));
    assert!(s.work.path().join("pulled/index.json").is_file());
    assert!(
        out.stdout.contains("application/vnd.example.notes"),
        "regctl artifact list shows the artifact:\n{}",
        out.stdout
    );

    let out = s.run(&mut doc, "Forward mode");
    assert!(
        out.stdout.contains(&want),
        "regctl image digest: {}",
        out.stdout
    );
    assert_eq!(s.direct_digest("team/fwd:v1"), Some(want));
    assert!(s.work.path().join("pulled-fwd/index.json").is_file());
    assert!(out.stdout.contains("application/vnd.example.notes"));
    s.finish(&doc);
}

#[test]
fn helm_reverse_and_forward_push_pull_chart() {
    let Some(peer) = peer_dir(TIER, "helm") else {
        return;
    };
    let s = Setup::new();
    let chart = s.work.path().join("mychart");
    std::fs::create_dir_all(chart.join("templates")).unwrap();
    std::fs::write(
        chart.join("Chart.yaml"),
        "apiVersion: v2\nname: mychart\nversion: 0.1.0\ndescription: pushed through the proxy\n",
    )
    .unwrap();
    std::fs::write(
        chart.join("templates/cm.yaml"),
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: hello\ndata:\n  a: b\n",
    )
    .unwrap();
    let mut doc = s.doc("helm.md", &peer);
    s.render(&mut doc);

    let out = s.run(&mut doc, "Reverse mode");
    let all = format!("{}{}", out.stdout, out.stderr);
    let pushed = digest_lines(&all)
        .first()
        .expect("helm push prints Digest:")
        .clone();
    assert_eq!(s.direct_digest("team/charts/mychart:0.1.0"), Some(pushed));
    assert!(
        out.stdout.contains("description: pushed through the proxy"),
        "helm show chart:\n{}",
        out.stdout
    );
    let tgz = std::fs::read(s.work.path().join("mychart-0.1.0.tgz")).unwrap();
    assert_eq!(
        std::fs::read(s.work.path().join("pulled/mychart-0.1.0.tgz")).unwrap(),
        tgz
    );

    let out = s.run(&mut doc, "Forward mode");
    let all = format!("{}{}", out.stdout, out.stderr);
    let pushed = digest_lines(&all)
        .first()
        .expect("helm push prints Digest:")
        .clone();
    assert_eq!(
        s.direct_digest("team/charts-fwd/mychart:0.1.0"),
        Some(pushed)
    );
    assert!(s.work.path().join("pulled-fwd/mychart-0.1.0.tgz").is_file());
    s.finish(&doc);
}

#[test]
fn ko_reverse_and_forward_build_and_push() {
    let Some(peer) = peer_dir(TIER, "ko") else {
        return;
    };
    let go = which("go").expect("ko builds Go programs: `go` must be on PATH");
    let s = Setup::new();
    // a tiny Go program, and the base image in the registry (pushed directly, with the password)
    let w = s.work.path();
    std::fs::create_dir_all(w.join("cmd/hello")).unwrap();
    std::fs::write(w.join("go.mod"), "module example.com/hello\n\ngo 1.22\n").unwrap();
    std::fs::write(
        w.join("cmd/hello/main.go"),
        "package main\n\nimport \"fmt\"\n\nfunc main() { fmt.Println(\"hello from ko\") }\n",
    )
    .unwrap();
    let ca_dir = s.ca.write_cert_dir(w.join("registry-ca"));
    connectors_testkit::Skopeo::new()
        .run(&[
            "copy",
            "--preserve-digests",
            "--dest-creds",
            &format!("{USER}:{CANARY}"),
            "--dest-cert-dir",
            ca_dir.to_str().unwrap(),
            &s.image.oci_ref(),
            &format!("docker://{}/team/base:v1", s.registry.host_port()),
        ])
        .assert_success("seed the base image");
    let gocache = Command::new(&go)
        .args(["env", "GOCACHE"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    let mut doc = s
        .doc("ko.md", &peer)
        .path(go.parent().expect("go's folder"))
        .env("GOTOOLCHAIN", "local")
        .env("GOFLAGS", "-mod=mod")
        .env("GOCACHE", &gocache);
    s.render(&mut doc);

    let out = s.run(&mut doc, "Reverse mode");
    let digest = ko_digest(&out.stdout);
    assert_eq!(s.direct_digest("team/hello:latest"), Some(digest));

    let out = s.run(&mut doc, "Forward mode");
    let digest = ko_digest(&out.stdout);
    assert_eq!(s.direct_digest("team/hello-fwd:latest"), Some(digest));
    s.finish(&doc);
}

/// The `…@sha256:…` reference ko prints last on stdout.
fn ko_digest(stdout: &str) -> String {
    stdout
        .lines()
        .rev()
        .find_map(|l| l.trim().rsplit_once('@').map(|(_, d)| d.to_owned()))
        .unwrap_or_else(|| panic!("ko printed no image reference:\n{stdout}"))
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .chain([
            PathBuf::from("/usr/local/go/bin"),
            PathBuf::from("/usr/lib/go/bin"),
        ])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

#[test]
fn buildkit_reverse_and_forward_build_from_and_push() {
    let Some(peer) = peer_dir(TIER, "buildkit") else {
        return;
    };
    let s = Setup::new();
    let ca_dir = s.ca.write_cert_dir(s.work.path().join("registry-ca"));
    connectors_testkit::Skopeo::new()
        .run(&[
            "copy",
            "--preserve-digests",
            "--dest-creds",
            &format!("{USER}:{CANARY}"),
            "--dest-cert-dir",
            ca_dir.to_str().unwrap(),
            &s.image.oci_ref(),
            &format!("docker://{}/team/base:v1", s.registry.host_port()),
        ])
        .assert_success("seed the base image");
    let mut doc = s.doc("buildkit.md", &peer);
    s.render(&mut doc);

    let out = s.run(&mut doc, "Reverse mode");
    let built = s
        .direct_digest("team/built:v1")
        .unwrap_or_else(|| panic!("buildkit pushed nothing:\n{}", out.stderr));
    assert!(
        out.stderr.contains(&built),
        "buildctl names the pushed digest:\n{}",
        out.stderr
    );
    let log = file_text(s.work.path().join("bk.log"));
    assert_no_canary(&log, "buildkitd's log (reverse)");

    let out = s.run(&mut doc, "Forward mode");
    let built = s
        .direct_digest("team/built-fwd:v1")
        .unwrap_or_else(|| panic!("buildkit pushed nothing:\n{}", out.stderr));
    assert!(out.stderr.contains(&built), "{}", out.stderr);
    let log = file_text(s.work.path().join("bk-fwd.log"));
    assert_no_canary(&log, "buildkitd's log (forward)");
    s.finish(&doc);
}

/// A containerd daemon as root in `dir` (own root, state and sockets; `native` snapshotter; the CRI
/// plug-ins off). Killed on drop.
struct Containerd(std::process::Child);

impl Containerd {
    fn start(bin: &Path, dir: &Path) -> (Containerd, PathBuf) {
        let sock = dir.join("ctrd.sock");
        let config = dir.join("config.toml");
        std::fs::write(
            &config,
            format!(
                "version = 3\nroot = \"{root}\"\nstate = \"{state}\"\n\
                 disabled_plugins = [\"io.containerd.grpc.v1.cri\", \"io.containerd.cri.v1.runtime\", \"io.containerd.cri.v1.images\"]\n\
                 [grpc]\n  address = \"{sock}\"\n[ttrpc]\n  address = \"{sock}.ttrpc\"\n",
                root = dir.join("root").display(),
                state = dir.join("state").display(),
                sock = sock.display(),
            ),
        )
        .unwrap();
        let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
        let child = Command::new(bin)
            .arg("--config")
            .arg(&config)
            .env_remove("HTTPS_PROXY")
            .env_remove("HTTP_PROXY")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        let daemon = Containerd(child);
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        while !sock.exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "containerd did not create its socket:\n{}",
                std::fs::read_to_string(dir.join("containerd.log")).unwrap_or_default()
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        (daemon, sock)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn ctr_reverse_and_forward_pull_push_with_hosts_toml() {
    let Some(peer) = peer_dir(TIER, "containerd") else {
        return;
    };
    let s = Setup::new();
    let ca_dir = s.ca.write_cert_dir(s.work.path().join("registry-ca"));
    connectors_testkit::Skopeo::new()
        .run(&[
            "copy",
            "--preserve-digests",
            "--dest-creds",
            &format!("{USER}:{CANARY}"),
            "--dest-cert-dir",
            ca_dir.to_str().unwrap(),
            &s.image.oci_ref(),
            &format!("docker://{}/team/app:v1", s.registry.host_port()),
        ])
        .assert_success("seed the image");
    let ctrd_dir = s.work.path().join("ctrd");
    std::fs::create_dir_all(&ctrd_dir).unwrap();
    let (_daemon, sock) = Containerd::start(&peer.join("containerd"), &ctrd_dir);
    let mut doc = s
        .doc("ctr.md", &peer)
        .env("CONTAINERD_ADDRESS", &sock)
        .env("CONTAINERD_SNAPSHOTTER", "native");
    s.render(&mut doc);
    let want = s.image.manifest_digest.clone();

    s.run(&mut doc, "Reverse mode");
    assert_eq!(s.direct_digest("team/ctr:v1"), Some(want.clone()));

    s.run(&mut doc, "Forward mode");
    assert_eq!(s.direct_digest("team/ctr-fwd:v1"), Some(want));
    let log = file_text(ctrd_dir.join("containerd.log"));
    assert_no_canary(&log, "containerd's log");
    s.finish(&doc);
}
