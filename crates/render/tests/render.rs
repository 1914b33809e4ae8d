//! Golden tests of `render`: built-in files, the built-in `oci` class configurations, selection,
//! merging, exclusions, params and errors.

use std::collections::BTreeMap;

use base64::Engine as _;
use connectors_model::{
    Configuration, Connector, ConnectorClass, ConnectorSpec, ObjectMeta, ParamSpec, SecretString,
    builtin_oci_class,
};
use connectors_render::{
    RenderConnector, RenderError, RenderRequest, parse_configuration_names, render,
};
use serde_json::{Value as Json, json};

const TOKEN: &str = "eyJhbGciOiJSUzI1NiJ9.CANARY-payload.sig_x-y";
const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----\n";
const PROXY: &str = "http://127.0.0.1:8080";

fn connector(ns: &str, name: &str, class: &str) -> Connector {
    Connector {
        api_version: "connectors.alauda.io/v1alpha1".into(),
        kind: "Connector".into(),
        metadata: ObjectMeta {
            name: name.into(),
            namespace: Some(ns.into()),
            ..ObjectMeta::default()
        },
        spec: ConnectorSpec {
            connector_class_name: class.into(),
            address: format!("https://{name}.example.com"),
            ..ConnectorSpec::default()
        },
        status: None,
    }
}

fn path_address(c: &Connector) -> String {
    format!(
        "{PROXY}/namespaces/{}/connectors/{}",
        c.metadata.namespace_or_default(),
        c.metadata.name
    )
}

fn host_address(c: &Connector) -> String {
    let ns = c.metadata.namespace_or_default();
    let name = &c.metadata.name;
    format!("http://c-{name}.{ns}.svc.cluster.local/namespaces/{ns}/connectors/{name}")
}

fn class(name: &str, configurations: Vec<Configuration>) -> ConnectorClass {
    let mut c = ConnectorClass::default();
    c.metadata.name = name.into();
    c.spec.configurations = configurations;
    c
}

fn configuration(name: &str, files: &[(&str, &str)]) -> Configuration {
    Configuration {
        name: name.into(),
        data: files
            .iter()
            .map(|(f, t)| ((*f).to_owned(), (*t).to_owned()))
            .collect(),
        params: Vec::new(),
    }
}

fn request<'a>(
    connectors: Vec<RenderConnector<'a>>,
    token: &'a SecretString,
    names: &str,
    params: Option<Json>,
) -> RenderRequest<'a> {
    RenderRequest {
        connectors,
        token,
        ca_cert_pem: PEM,
        class_proxy_address: PROXY.into(),
        configuration_names: parse_configuration_names(names),
        configuration_params: params,
    }
}

fn rc<'a>(c: &'a Connector, class: &'a ConnectorClass, address: String) -> RenderConnector<'a> {
    RenderConnector {
        connector: c,
        class,
        proxy_address: address,
    }
}

fn text(files: &BTreeMap<String, Vec<u8>>, name: &str) -> String {
    String::from_utf8(
        files
            .get(name)
            .unwrap_or_else(|| panic!("no {name}"))
            .clone(),
    )
    .expect("utf-8")
}

fn names(files: &BTreeMap<String, Vec<u8>>) -> Vec<&str> {
    files.keys().map(String::as_str).collect()
}

const BUILTINS: [&str; 8] = [
    ".env",
    "ca.cert",
    "ca.crt",
    "connector.status.proxyAddress",
    "context.proxy.caCert",
    "context.token",
    "http.proxy",
    "https.proxy",
];

#[test]
fn builtin_files_for_one_connector() {
    let token = SecretString::new(TOKEN);
    let oci = builtin_oci_class();
    let hub = connector("team-a", "hub", "oci");
    let files = render(&request(
        vec![rc(&hub, &oci, path_address(&hub))],
        &token,
        "",
        None,
    ))
    .expect("render");
    assert_eq!(names(&files), BUILTINS);
    let url = format!("http://team-a%2Fhub:{TOKEN}@127.0.0.1:8080");
    assert_eq!(text(&files, "http.proxy"), url);
    assert_eq!(text(&files, "https.proxy"), url);
    assert_eq!(
        text(&files, ".env"),
        format!(
            "export http_proxy='{url}'\nexport https_proxy='{url}'\nexport no_proxy='localhost,127.0.0.1'\n\
             export HTTP_PROXY='{url}'\nexport HTTPS_PROXY='{url}'\nexport NO_PROXY='localhost,127.0.0.1'\n"
        )
    );
    assert_eq!(text(&files, "context.token"), TOKEN);
    for pem in ["context.proxy.caCert", "ca.crt", "ca.cert"] {
        assert_eq!(text(&files, pem), PEM);
    }
    assert_eq!(
        text(&files, "connector.status.proxyAddress"),
        "http://127.0.0.1:8080/namespaces/team-a/connectors/hub"
    );
}

#[test]
fn builtin_files_for_two_connectors() {
    let token = SecretString::new(TOKEN);
    let oci = builtin_oci_class();
    let hub = connector("team-a", "hub", "oci");
    let quay = connector("team-b", "quay", "oci");
    let files = render(&request(
        vec![
            rc(&hub, &oci, host_address(&hub)),
            rc(&quay, &oci, host_address(&quay)),
        ],
        &token,
        "",
        None,
    ))
    .expect("render");
    assert_eq!(names(&files), BUILTINS);
    // The forward proxy is the class's, whatever the connectors' reverse addresses are.
    let url = format!("http://team-a%2Fhub,team-b%2Fquay:{TOKEN}@127.0.0.1:8080");
    assert_eq!(text(&files, "http.proxy"), url);
    assert_eq!(text(&files, "https.proxy"), url);
    assert!(text(&files, ".env").contains(&format!("export HTTPS_PROXY='{url}'\n")));
    assert_eq!(
        text(&files, "connector.status.proxyAddress"),
        "http://c-quay.team-b.svc.cluster.local/namespaces/team-b/connectors/quay"
    );
}

#[test]
fn env_file_is_sourceable_and_shell_safe() {
    // A token with a quote, a space and a `$` must survive `source .env` unchanged.
    let odd = "it's a $tok";
    let token = SecretString::new(odd);
    let oci = builtin_oci_class();
    let hub = connector("team-a", "hub", "oci");
    let files = render(&request(
        vec![rc(&hub, &oci, path_address(&hub))],
        &token,
        "",
        None,
    ))
    .expect("render");
    let script = format!(
        "{}printf '%s|%s|%s' \"$http_proxy\" \"$HTTPS_PROXY\" \"$no_proxy\"\n",
        text(&files, ".env")
    );
    let out = std::process::Command::new("sh")
        .arg("-c")
        .arg(&script)
        .output()
        .expect("run sh");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let url = text(&files, "http.proxy");
    // The password part is URL-escaped (the space and the quote); the shell gives it back as is.
    assert_eq!(url, "http://team-a%2Fhub:it%27s%20a%20$tok@127.0.0.1:8080");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("{url}|{url}|localhost,127.0.0.1")
    );
}

fn decode_auth(auth: &str) -> String {
    String::from_utf8(
        base64::engine::general_purpose::STANDARD
            .decode(auth)
            .expect("base64"),
    )
    .expect("utf-8")
}

#[test]
fn oci_configurations_for_one_connector() {
    let token = SecretString::new(TOKEN);
    let oci = builtin_oci_class();
    let hub = connector("team-a", "hub", "oci");
    let files = render(&request(
        vec![rc(&hub, &oci, path_address(&hub))],
        &token,
        "registry-config,buildkitd",
        None,
    ))
    .expect("render");
    let auth = base64::engine::general_purpose::STANDARD.encode(format!("connectors:{TOKEN}"));
    assert_eq!(
        text(&files, "config.json"),
        format!("{{\"auths\":{{\"127.0.0.1:8080\":{{\"auth\":\"{auth}\"}}}}}}\n")
    );
    let config: Json = serde_json::from_slice(&files["config.json"]).expect("valid JSON");
    assert_eq!(
        decode_auth(
            config["auths"]["127.0.0.1:8080"]["auth"]
                .as_str()
                .unwrap_or_default()
        ),
        format!("connectors:{TOKEN}")
    );
    assert_eq!(
        text(&files, "buildkitd.toml"),
        "insecure-entitlements = [ \"network.host\", \"security.insecure\" ]\n\n\
         [registry.\"127.0.0.1:8080\"]\n  http = true\n"
    );
    let toml: toml::Table = text(&files, "buildkitd.toml").parse().expect("valid TOML");
    assert_eq!(
        toml["insecure-entitlements"],
        toml::Value::Array(vec!["network.host".into(), "security.insecure".into()])
    );
    assert_eq!(
        toml["registry"]["127.0.0.1:8080"]["http"],
        toml::Value::Boolean(true)
    );
    // The built-in files are still there.
    for b in BUILTINS {
        assert!(files.contains_key(b), "{b}");
    }
    // docker-config is the legacy name of registry-config.
    let legacy = render(&request(
        vec![rc(&hub, &oci, path_address(&hub))],
        &token,
        "docker-config",
        None,
    ))
    .expect("render");
    assert_eq!(legacy["config.json"], files["config.json"]);
}

#[test]
fn oci_configurations_for_two_connectors() {
    let token = SecretString::new(TOKEN);
    let oci = builtin_oci_class();
    let hub = connector("team-a", "hub", "oci");
    let quay = connector("team-b", "quay", "oci");
    // Per-connector hosts: one entry each, in sorted order.
    let files = render(&request(
        vec![
            rc(&quay, &oci, host_address(&quay)),
            rc(&hub, &oci, host_address(&hub)),
        ],
        &token,
        "registry-config,buildkitd",
        None,
    ))
    .expect("render");
    let config: Json = serde_json::from_slice(&files["config.json"]).expect("valid JSON");
    let auths = config["auths"].as_object().expect("auths");
    let hosts: Vec<&str> = auths.keys().map(String::as_str).collect();
    assert_eq!(
        hosts,
        [
            "c-hub.team-a.svc.cluster.local",
            "c-quay.team-b.svc.cluster.local"
        ]
    );
    for entry in auths.values() {
        assert_eq!(
            decode_auth(entry["auth"].as_str().unwrap_or_default()),
            format!("connectors:{TOKEN}")
        );
    }
    assert_eq!(
        text(&files, "buildkitd.toml"),
        "insecure-entitlements = [ \"network.host\", \"security.insecure\" ]\n\n\
         [registry.\"c-hub.team-a.svc.cluster.local\"]\n  http = true\n\n\
         [registry.\"c-quay.team-b.svc.cluster.local\"]\n  http = true\n"
    );
    let toml: toml::Table = text(&files, "buildkitd.toml").parse().expect("valid TOML");
    assert_eq!(toml["registry"].as_table().map(toml::Table::len), Some(2));

    // Path-format addresses share the proxy host: a single entry.
    let files = render(&request(
        vec![
            rc(&hub, &oci, path_address(&hub)),
            rc(&quay, &oci, path_address(&quay)),
        ],
        &token,
        "registry-config,buildkitd",
        None,
    ))
    .expect("render");
    let config: Json = serde_json::from_slice(&files["config.json"]).expect("valid JSON");
    assert_eq!(
        config["auths"].as_object().map(serde_json::Map::len),
        Some(1)
    );
    let toml: toml::Table = text(&files, "buildkitd.toml").parse().expect("valid TOML");
    assert_eq!(toml["registry"].as_table().map(toml::Table::len), Some(1));
}

#[test]
fn exclusions_apply_last() {
    let token = SecretString::new(TOKEN);
    let oci = builtin_oci_class();
    let hub = connector("team-a", "hub", "oci");
    let one = || vec![rc(&hub, &oci, path_address(&hub))];
    let files = render(&request(one(), &token, "!ca.cert, !context.token", None)).expect("render");
    let want: Vec<&str> = BUILTINS
        .iter()
        .copied()
        .filter(|f| *f != "ca.cert" && *f != "context.token")
        .collect();
    assert_eq!(names(&files), want);
    // Exclusions reach rendered files too, and unknown names are ignored.
    let files = render(&request(
        one(),
        &token,
        "registry-config,buildkitd,!config.json,!no-such-file",
        None,
    ))
    .expect("render");
    assert!(!files.contains_key("config.json"));
    assert!(files.contains_key("buildkitd.toml"));
    // Excluding everything the configuration renders is fine: it was found.
    let files = render(&request(
        one(),
        &token,
        "registry-config,!config.json",
        None,
    ))
    .expect("render");
    assert_eq!(names(&files), BUILTINS);
}

#[test]
fn class_file_overrides_builtin() {
    let token = SecretString::new(TOKEN);
    let custom = class(
        "custom",
        vec![configuration(
            "proxy",
            &[
                ("http.proxy", "custom {{ .connectorclass.proxyAddress }}"),
                ("extra.txt", "{{ .connectorclass.metadata.name }}"),
            ],
        )],
    );
    let c = connector("ns", "x", "custom");
    let files = render(&request(
        vec![rc(&c, &custom, path_address(&c))],
        &token,
        "proxy",
        None,
    ))
    .expect("render");
    assert_eq!(text(&files, "http.proxy"), "custom http://127.0.0.1:8080");
    assert_eq!(text(&files, "extra.txt"), "custom");
    assert!(text(&files, "https.proxy").starts_with("http://ns%2Fx:"));
}

#[test]
fn params_defaults_and_required() {
    let token = SecretString::new(TOKEN);
    let mut conf = configuration(
        "settings",
        &[(
            "settings.txt",
            "{{ .configurations.mirror }}/{{ .configurations.repo }}/{{ index .configurations \"extra\" }}",
        )],
    );
    conf.params = vec![
        ParamSpec {
            name: Some("mirror".into()),
            default: Some(json!("maven-public")),
            ..ParamSpec::default()
        },
        ParamSpec {
            name: Some("repo".into()),
            ..ParamSpec::default()
        },
    ];
    let maven = class("maven", vec![conf]);
    let c = connector("ns", "m", "maven");
    let run = |params: Option<Json>| {
        render(&request(
            vec![rc(&c, &maven, path_address(&c))],
            &token,
            "settings",
            params,
        ))
    };
    let files = run(Some(json!({"settings": {"repo": "r"}}))).expect("render");
    assert_eq!(text(&files, "settings.txt"), "maven-public/r/<no value>");
    let files = run(Some(
        json!({"settings": {"repo": "r", "mirror": "m", "extra": "e"}, "other": {"x": "y"}}),
    ))
    .expect("render");
    assert_eq!(text(&files, "settings.txt"), "m/r/e");
    for missing in [
        None,
        Some(json!({})),
        Some(json!(null)),
        Some(json!({"settings": {}})),
    ] {
        assert_eq!(
            run(missing),
            Err(RenderError::MissingParam {
                configuration: "settings".into(),
                param: "repo".into()
            })
        );
    }
    for bad in [
        json!([1]),
        json!({"settings": "x"}),
        json!({"settings": {"repo": 1}}),
    ] {
        let e = run(Some(bad.clone())).expect_err("bad params");
        assert!(matches!(e, RenderError::BadParams(_)), "{bad}: {e:?}");
    }
}

#[test]
fn template_errors_are_reported_without_the_token() {
    let token = SecretString::new(TOKEN);
    let broken = class(
        "broken",
        vec![
            configuration("parse", &[("bad.conf", "line1\n{{ foo }}")]),
            configuration(
                "exec",
                &[("leak.conf", "{{ range .context.token }}{{ end }}")],
            ),
            configuration(
                "url",
                &[(
                    "u.conf",
                    "{{ urlParse (printf \"http://x:%s@h h\" .context.token) }}",
                )],
            ),
        ],
    );
    let c = connector("ns", "b", "broken");
    let run = |names: &str| {
        render(&request(
            vec![rc(&c, &broken, path_address(&c))],
            &token,
            names,
            None,
        ))
    };
    let e = run("parse").expect_err("parse error");
    assert_eq!(
        e,
        RenderError::Template {
            file: "bad.conf".into(),
            configuration: "parse".into(),
            message: "template: bad.conf:2: function \"foo\" not defined".into()
        }
    );
    assert_eq!(
        e.to_string(),
        "failed to generate configuration: template: bad.conf:2: function \"foo\" not defined (configuration \"parse\")"
    );
    for names in ["exec", "url"] {
        let e = run(names).expect_err("exec error");
        let RenderError::Template { message, .. } = &e else {
            panic!("{e:?}")
        };
        assert!(message.contains("***"), "{message}");
        assert!(!format!("{e} {e:?}").contains(TOKEN), "{e}");
        assert!(!format!("{e}").contains("CANARY"), "{e}");
    }
}

#[test]
fn no_configuration_and_no_connectors() {
    let token = SecretString::new(TOKEN);
    let oci = builtin_oci_class();
    let hub = connector("team-a", "hub", "oci");
    let e = render(&request(
        vec![rc(&hub, &oci, path_address(&hub))],
        &token,
        "nope, !ca.crt, other",
        None,
    ))
    .expect_err("nothing found");
    assert_eq!(
        e,
        RenderError::NoConfiguration {
            names: vec!["nope".into(), "other".into()]
        }
    );
    assert!(e.to_string().starts_with("no config generated"), "{e}");
    // A partial miss is fine.
    let files = render(&request(
        vec![rc(&hub, &oci, path_address(&hub))],
        &token,
        "nope,buildkitd",
        None,
    ))
    .expect("render");
    assert!(files.contains_key("buildkitd.toml"));
    assert_eq!(
        render(&request(Vec::new(), &token, "", None)),
        Err(RenderError::NoConnectors)
    );
    let mut r = request(vec![rc(&hub, &oci, path_address(&hub))], &token, "", None);
    r.class_proxy_address = String::new();
    assert!(matches!(
        render(&r),
        Err(RenderError::InvalidProxyAddress { .. })
    ));
}

#[test]
fn merge_order() {
    let token = SecretString::new(TOKEN);
    let x = class(
        "x",
        vec![
            configuration("a", &[("f.txt", "from a"), ("a.txt", "A")]),
            configuration("b", &[("f.txt", "from b")]),
            configuration("cfg", &[("same.txt", "class x")]),
        ],
    );
    let y = class("y", vec![configuration("cfg", &[("same.txt", "class y")])]);
    let cx = connector("ns", "cx", "x");
    let cy = connector("ns", "cy", "y");
    let run = |order: &[(&Connector, &ConnectorClass)], names: &str| {
        let cs = order
            .iter()
            .map(|(c, cl)| rc(c, cl, path_address(c)))
            .collect();
        render(&request(cs, &token, names, None)).expect("render")
    };
    // Later configurations overwrite same-named files.
    let files = run(&[(&cx, &x)], "a,b");
    assert_eq!(text(&files, "f.txt"), "from b");
    assert_eq!(text(&files, "a.txt"), "A");
    assert_eq!(text(&run(&[(&cx, &x)], "b,a"), "f.txt"), "from a");
    // Different classes, same file: the class of the later connector wins.
    assert_eq!(
        text(&run(&[(&cx, &x), (&cy, &y)], "cfg"), "same.txt"),
        "class y"
    );
    assert_eq!(
        text(&run(&[(&cy, &y), (&cx, &x)], "cfg"), "same.txt"),
        "class x"
    );
}

#[test]
fn own_class_with_multi_connector_templates() {
    let token = SecretString::new(TOKEN);
    let tmpl = concat!(
        "{{- $u := urlParse .connectorclass.proxyAddress -}}\n",
        "{{- $users := list -}}\n",
        "{{- range $i, $c := .connectors }}{{ $users = append $users (printf \"%s%%2F%s\" $c.metadata.namespace $c.metadata.name) }}{{ end -}}\n",
        "proxy={{ $u.scheme }}://{{ join \",\" $users }}:{{ .context.token }}@{{ $u.host }}\n",
        "{{- range $i, $c := .connectors }}\n",
        "[{{ $i }}] {{ $c.name }} {{ $c.namespace }} {{ (urlParse $c.status.proxyAddress).hostname }} {{ $c.spec.address | trimPrefix \"https://\" }}\n",
        "{{- end }}\n",
        "last={{ .connector.metadata.name }} count={{ len .connectors }}\n",
        "basic={{ printf \":%s\" .context.token | b64enc }}\n",
        "ca={{ .context.proxy.caCert | trim | splitList \"\\n\" | first }}\n",
        "mirror={{ .configurations.mirror | default \"none\" }}\n",
    );
    let git = class(
        "git",
        vec![configuration("gitconfig", &[("out.txt", tmpl)])],
    );
    let oci = builtin_oci_class();
    let one = connector("team-a", "one", "git");
    let two = connector("team-b", "two", "git");
    let other = connector("team-c", "registry", "oci");
    let files = render(&request(
        vec![
            rc(&one, &git, host_address(&one)),
            rc(&other, &oci, path_address(&other)),
            rc(&two, &git, host_address(&two)),
        ],
        &token,
        "gitconfig,registry-config",
        None,
    ))
    .expect("render");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!(":{TOKEN}"));
    assert_eq!(
        text(&files, "out.txt"),
        format!(
            "proxy=http://team-a%2Fone,team-b%2Ftwo:{TOKEN}@127.0.0.1:8080\n\
             [0] one team-a c-one.team-a.svc.cluster.local one.example.com\n\
             [1] two team-b c-two.team-b.svc.cluster.local two.example.com\n\
             last=two count=2\n\
             basic={basic}\n\
             ca=-----BEGIN CERTIFICATE-----\n\
             mirror=none\n"
        )
    );
    // The oci class only saw its own connector.
    let config: Json = serde_json::from_slice(&files["config.json"]).expect("valid JSON");
    assert_eq!(
        config["auths"]
            .as_object()
            .map(|m| m.keys().cloned().collect::<Vec<_>>()),
        Some(vec!["127.0.0.1:8080".to_owned()])
    );
    // The built-in proxy URL lists every mounted connector, in order.
    assert_eq!(
        text(&files, "http.proxy"),
        format!("http://team-a%2Fone,team-c%2Fregistry,team-b%2Ftwo:{TOKEN}@127.0.0.1:8080")
    );
}

#[test]
fn connector_json_shape() {
    let token = SecretString::new(TOKEN);
    let tmpl = "{{ .connector | toJson }}";
    let shape = class("shape", vec![configuration("s", &[("c.json", tmpl)])]);
    let mut c = connector("", "n", "shape");
    c.metadata.namespace = None;
    c.status = Some(json!({"conditions": [{"type": "Ready"}]}));
    let files = render(&request(
        vec![rc(
            &c,
            &shape,
            "http://p/namespaces/default/connectors/n".into(),
        )],
        &token,
        "s",
        None,
    ))
    .expect("render");
    let v: Json = serde_json::from_slice(&files["c.json"]).expect("json");
    assert_eq!(
        v,
        json!({
            "apiVersion": "connectors.alauda.io/v1alpha1",
            "kind": "Connector",
            "metadata": {"name": "n", "namespace": "default"},
            "spec": {"connectorClassName": "shape", "address": "https://n.example.com"},
            "status": {"conditions": [{"type": "Ready"}], "proxyAddress": "http://p/namespaces/default/connectors/n"},
            "name": "n",
            "namespace": "default"
        })
    );
}
