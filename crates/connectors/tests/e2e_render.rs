//! `connectors render` end to end: the rendered files are used exactly as a workload uses them, with
//! nothing configured by hand — `config.json` as skopeo's auth file (reverse mode), and `source .env` plus
//! `ca.crt` for buildah (forward mode).
//!
//! The render excludes `ca.cert` (`!ca.cert`): containers/image reads `*.cert` files in a `--cert-dir` as a
//! client certificate and then fails for want of `ca.key`, so a folder holding the deprecated `ca.cert`
//! cannot be a cert dir.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use connectors_testkit::{OciLayout, Registry, Skopeo, TestCa, ensure_hosts_entry};

fn render(
    proxy: &ProxyUnderTest,
    out: &Path,
    connectors: &str,
    names: &str,
) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_connectors"))
        .arg("render")
        .arg("--catalog")
        .arg(proxy.catalog_path())
        .arg("--state-dir")
        .arg(proxy.state_dir())
        .args([
            "--connectors",
            connectors,
            "--namespace",
            NS,
            "--configuration-names",
            names,
        ])
        .args(["--proxy-url", &format!("http://{}", proxy.host_port())])
        .arg("--out")
        .arg(out)
        .output()
        .expect("run connectors render")
}

#[test]
fn rendered_files_drive_skopeo_in_reverse_mode_and_buildah_in_forward_mode() {
    ensure_hosts_entry("registry.test").unwrap();
    let ca = TestCa::new();
    let registry = Registry::builder().htpasswd(USER, CANARY).tls(&ca).start();
    let mut spec = ConnectorSpec::new("reg", format!("https://registry.test:{}", registry.port()));
    spec.ca_pem = Some(ca.ca_cert_pem().to_owned());
    let proxy = ProxyUnderTest::start(
        &spec.yaml(),
        &[&format!(
            "--resolve=registry.test:{}:127.0.0.1",
            registry.port()
        )],
    );
    let work = tempfile::tempdir().unwrap();
    let out = work.path().join("mnt");

    let rendered = render(&proxy, &out, "reg", "registry-config,!ca.cert");
    assert!(
        rendered.status.success(),
        "render failed: {}",
        String::from_utf8_lossy(&rendered.stderr)
    );
    let mut names: Vec<String> = std::fs::read_dir(&out)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with(".."))
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            ".env",
            "ca.crt",
            "config.json",
            "connector.status.proxyAddress",
            "context.proxy.caCert",
            "context.token",
            "http.proxy",
            "https.proxy"
        ]
    );
    for name in &names {
        let text = std::fs::read_to_string(out.join(name)).unwrap();
        assert_no_canary(&text, name);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(out.join(name))
                .unwrap()
                .permissions()
                .mode()
                & 0o777;
            assert_eq!(mode, 0o444, "{name}");
        }
    }
    assert_eq!(
        std::fs::read_to_string(out.join("connector.status.proxyAddress")).unwrap(),
        format!(
            "http://{}/namespaces/{NS}/connectors/reg",
            proxy.host_port()
        )
    );

    // Reverse mode: config.json is the auth file, and that is all skopeo gets.
    let image = OciLayout::build(work.path().join("img"), "v1", &[32 * 1024]);
    let skopeo = Skopeo::new();
    let config = out.join("config.json");
    let push = skopeo.run(&[
        "copy",
        "--preserve-digests",
        "--dest-tls-verify=false",
        "--dest-authfile",
        config.to_str().unwrap(),
        &image.oci_ref(),
        &proxy.image_ref("reg", "team/rendered:v1"),
    ]);
    assert_no_canary(&push.stderr, "skopeo output");
    push.assert_success("skopeo push with the rendered config.json");

    // Forward mode: `. .env` sets the proxy variables, the folder holds ca.crt for --cert-dir.
    let env_text = std::fs::read_to_string(out.join(".env")).unwrap();
    assert!(
        env_text.contains("export https_proxy='http://team-a%2Freg:"),
        "{env_text}"
    );
    let bwork = work.path().join("buildah");
    buildah_image(&bwork, "localhost/team/rendered:v2");
    let dest = format!(
        "docker://registry.test:{}/team/rendered:v2",
        registry.port()
    );
    let pushed = common::container_tool_sourcing(
        "buildah",
        &bwork,
        &[
            "push",
            "--cert-dir",
            out.to_str().unwrap(),
            "localhost/team/rendered:v2",
            &dest,
        ],
        &[],
        Some(&out.join(".env")),
    );
    assert_no_canary(&pushed.stderr, "buildah output");
    pushed.assert_success("buildah push with the rendered .env and ca.crt");

    // Both arrived (asked directly, with the password and the registry's CA).
    let direct = ca.write_cert_dir(work.path().join("direct-ca"));
    let creds = format!("{USER}:{CANARY}");
    for (tag, want) in [
        ("team/rendered:v1", Some(image.manifest_digest.clone())),
        ("team/rendered:v2", None),
    ] {
        let out = Skopeo::new().run(&[
            "inspect",
            "--format",
            "{{.Digest}}",
            "--creds",
            &creds,
            "--cert-dir",
            direct.to_str().unwrap(),
            &format!("docker://{}/{tag}", registry.host_port()),
        ]);
        out.assert_success(tag);
        if let Some(want) = want {
            assert_eq!(out.stdout.trim(), want);
        }
    }
    let log = proxy.log();
    assert!(
        log.contains("operation=\"intercept\""),
        "buildah did not go through the forward proxy:\n{log}"
    );
    proxy.assert_log_clean();
}

#[test]
fn render_errors_are_clear() {
    let proxy = ProxyUnderTest::start(&ConnectorSpec::new("reg", "http://127.0.0.1:9").yaml(), &[]);
    let work = tempfile::tempdir().unwrap();
    let out = render(&proxy, &work.path().join("a"), "nothere", "");
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("connector \"team-a/nothere\" not found"),
        "{out:?}"
    );
    let out = render(
        &proxy,
        &work.path().join("b"),
        "reg",
        "no-such-configuration",
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("no-such-configuration"), "{err}");
    assert!(
        !work.path().join("b").join("http.proxy").exists(),
        "files written despite the error"
    );
}
