//! The controller's conditions for one Connector against a real `docker-registry` (htpasswd and
//! token auth): class missing, Secret missing or of the wrong type, registry down, wrong password,
//! and Ready — the cases of issue 5.

use connectors_controller::conditions::{CONDITION_TYPES, reason};
use connectors_controller::{Condition, ConditionStatus, Observed, evaluate};
use connectors_model::{Connector, ConnectorClass, Secret, builtin_oci_class};
use connectors_registry::{ResolveOverrides, UpstreamAccess};
use connectors_testkit::{Registry, TokenServer};
use serde_json::json;

const USER: &str = "ci-user";
/// A canary: it must never show up in a condition message.
const PASSWORD: &str = "Canary-Pw-7f3a9d2e";

fn connector(address: &str, secret: Option<&str>) -> Connector {
    let mut auth = json!({"name": "tokenAuth"});
    if let Some(s) = secret {
        auth["secretRef"] = json!({"name": s});
    }
    serde_json::from_value(json!({
        "apiVersion": "connectors.alauda.io/v1alpha1",
        "kind": "Connector",
        "metadata": {"name": "registry", "namespace": "team-a", "generation": 3},
        "spec": {"connectorClassName": "oci", "address": address, "auth": auth},
    }))
    .unwrap()
}

fn secret(name: &str, type_: &str, password: &str) -> Secret {
    serde_json::from_value(json!({
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": name, "namespace": "team-a"},
        "type": type_,
        "stringData": {"username": USER, "password": password},
    }))
    .unwrap()
}

async fn conditions(
    connector: &Connector,
    class: Option<&ConnectorClass>,
    secrets: Vec<Secret>,
) -> Vec<Condition> {
    let access = UpstreamAccess::new(ResolveOverrides::default());
    let out = evaluate(
        &access,
        Observed {
            connector,
            class,
            secrets,
            proxy_service: Ok(()),
        },
    )
    .await;
    let types: Vec<&str> = out.iter().map(|c| c.type_.as_str()).collect();
    assert_eq!(types, CONDITION_TYPES, "all six conditions, in order");
    for c in &out {
        assert!(
            !c.message.contains(PASSWORD),
            "condition {} leaks the password: {}",
            c.type_,
            c.message
        );
    }
    out
}

fn get<'a>(conditions: &'a [Condition], type_: &str) -> &'a Condition {
    conditions.iter().find(|c| c.type_ == type_).unwrap()
}

const TOKEN_TYPE: &str = "cpaas.io/distribution-registry-token";

#[tokio::test]
async fn a_connector_moves_through_every_condition() {
    let registry = Registry::builder().htpasswd(USER, PASSWORD).start();
    let oci = builtin_oci_class();
    let good = secret("creds", TOKEN_TYPE, PASSWORD);

    // Ready: class, Secret, registry and credentials all fine.
    let c = connector(&registry.url(), Some("creds"));
    let out = conditions(&c, Some(&oci), vec![good.clone()]).await;
    for cond in &out {
        assert_eq!(cond.status, ConditionStatus::True, "{cond:?}");
    }
    assert!(
        get(&out, "AuthReady").message.contains(USER),
        "says whose credentials were accepted"
    );

    // Class missing.
    let out = conditions(&c, None, vec![good.clone()]).await;
    let class = get(&out, "ConnectorClassReady");
    assert_eq!(class.status, ConditionStatus::False);
    assert_eq!(class.reason, reason::CLASS_NOT_FOUND);
    assert_eq!(
        class.message,
        r#"connectorclass.connectors.alauda.io "oci" not found"#
    );
    assert_eq!(get(&out, "Ready").reason, reason::CLASS_NOT_FOUND);

    // Secret missing.
    let out = conditions(&c, Some(&oci), vec![]).await;
    let s = get(&out, "SecretReady");
    assert_eq!(
        (s.status, s.reason.as_str()),
        (ConditionStatus::False, reason::SECRET_NOT_FOUND)
    );
    assert!(
        s.message.contains("creds"),
        "names the Secret: {}",
        s.message
    );
    assert_eq!(get(&out, "LivenessReady").status, ConditionStatus::Unknown);
    assert_eq!(get(&out, "Ready").status, ConditionStatus::False);

    // Secret of the wrong type.
    let out = conditions(&c, Some(&oci), vec![secret("creds", "Opaque", PASSWORD)]).await;
    let s = get(&out, "SecretReady");
    assert_eq!(s.status, ConditionStatus::False);
    assert!(
        s.message.contains("Opaque"),
        "says which type is wrong: {}",
        s.message
    );

    // Wrong password: reachable, authentication fails.
    let out = conditions(&c, Some(&oci), vec![secret("creds", TOKEN_TYPE, "wrong")]).await;
    assert_eq!(get(&out, "LivenessReady").status, ConditionStatus::True);
    let auth = get(&out, "AuthReady");
    assert_eq!(
        (auth.status, auth.reason.as_str()),
        (ConditionStatus::False, reason::AUTHENTICATION_FAILED)
    );
    assert_eq!(get(&out, "Ready").reason, reason::AUTHENTICATION_FAILED);

    // No Secret at all: optional for the oci class, anonymous access is refused by this registry.
    let anonymous = connector(&registry.url(), None);
    let out = conditions(&anonymous, Some(&oci), vec![]).await;
    assert_eq!(get(&out, "SecretReady").reason, reason::SECRET_OPTIONAL);
    assert_eq!(get(&out, "AuthReady").status, ConditionStatus::False);

    // Registry down.
    let url = registry.url();
    drop(registry);
    let out = conditions(&connector(&url, Some("creds")), Some(&oci), vec![good]).await;
    let live = get(&out, "LivenessReady");
    assert_eq!(
        (live.status, live.reason.as_str()),
        (ConditionStatus::False, reason::CONNECTION_FAILED)
    );
    assert_eq!(get(&out, "Ready").reason, reason::CONNECTION_FAILED);
}

#[tokio::test]
async fn token_auth_with_a_repository_parameter() {
    let tokens = TokenServer::builder().user(USER, PASSWORD).start();
    let registry = Registry::builder().token(&tokens).start();
    let mut c = connector(&registry.url(), Some("creds"));
    c.spec.auth.as_mut().unwrap().params =
        vec![connectors_model::Param::new("repository", "team/app")];
    // The token server is plain HTTP on another port: listed as an extension so that it may
    // receive the connector's credentials.
    c.spec.address_extensions =
        serde_json::from_value(json!([{"name": "token", "value": tokens.url()}])).unwrap();
    let out = conditions(
        &c,
        Some(&builtin_oci_class()),
        vec![secret("creds", TOKEN_TYPE, PASSWORD)],
    )
    .await;
    assert!(get(&out, "Ready").is_true(), "{out:#?}");
    assert!(
        tokens
            .requests()
            .iter()
            .any(|r| r.scopes.iter().any(|s| s == "repository:team/app:pull")),
        "the auth probe asked for the repository's pull scope"
    );

    let out = conditions(
        &c,
        Some(&builtin_oci_class()),
        vec![secret("creds", TOKEN_TYPE, "wrong")],
    )
    .await;
    assert_eq!(get(&out, "AuthReady").reason, reason::AUTHENTICATION_FAILED);
}
