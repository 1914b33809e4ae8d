//! The fake, driven by kube-rs as a client.

use futures_util::StreamExt;
use k8s_openapi::api::authentication::v1::{TokenReview, TokenReviewSpec};
use k8s_openapi::api::authorization::v1::{
    ResourceAttributes, SubjectAccessReview, SubjectAccessReviewSpec,
};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, DynamicObject, GroupVersionKind};
use kube::runtime::watcher;
use serde_json::json;

use super::*;

fn client(fake: &FakeApiServer) -> kube::Client {
    let config = kube::Config::new(fake.url().parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

fn connectors_api(client: &kube::Client, ns: &str) -> Api<DynamicObject> {
    let gvk = GroupVersionKind::gvk("connectors.alauda.io", "v1alpha1", "Connector");
    Api::namespaced_with(client.clone(), ns, &ApiResource::from_gvk(&gvk))
}

fn connector(name: &str, address: &str) -> Value {
    json!({
        "apiVersion": "connectors.alauda.io/v1alpha1", "kind": "Connector",
        "metadata": {"name": name, "namespace": "team-a"},
        "spec": {"connectorClassName": "oci", "address": address},
    })
}

#[tokio::test]
async fn crud_status_and_apply_with_kube_rs() {
    let fake = FakeApiServer::start().await.unwrap();
    let client = client(&fake);
    let api = connectors_api(&client, "team-a");

    let created: DynamicObject =
        serde_json::from_value(connector("one", "https://r.example")).unwrap();
    let created = api.create(&PostParams::default(), &created).await.unwrap();
    assert_eq!(created.metadata.generation, Some(1));
    assert!(created.metadata.uid.is_some());
    let err = api
        .create(&PostParams::default(), &created)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err:?}"
    );

    // Status goes through /status only; a spec change bumps the generation.
    let status = json!({"status": {"conditions": [{"type": "Ready", "status": "True"}]}});
    api.patch_status("one", &PatchParams::default(), &Patch::Merge(&status))
        .await
        .unwrap();
    let spec = json!({"spec": {"address": "https://other.example"}, "status": {"conditions": []}});
    let patched = api
        .patch("one", &PatchParams::default(), &Patch::Merge(&spec))
        .await
        .unwrap();
    assert_eq!(patched.metadata.generation, Some(2));
    assert_eq!(patched.data["spec"]["address"], "https://other.example");
    assert_eq!(patched.data["status"]["conditions"][0]["type"], "Ready");

    // Server-side apply (approximated as a merge) records the field manager.
    let applied = json!({
        "apiVersion": "connectors.alauda.io/v1alpha1", "kind": "Connector",
        "metadata": {"name": "two"}, "spec": {"connectorClassName": "oci", "address": "https://two.example"},
    });
    let two = api
        .patch(
            "two",
            &PatchParams::apply("fake-test"),
            &Patch::Apply(&applied),
        )
        .await
        .unwrap();
    let fields = two.metadata.managed_fields.unwrap();
    assert_eq!(fields[0].manager.as_deref(), Some("fake-test"));

    // Replace with a stale resourceVersion conflicts.
    let mut stale = created.clone();
    stale.data["spec"]["address"] = json!("https://stale.example");
    let err = api
        .replace("one", &PostParams::default(), &stale)
        .await
        .unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err:?}"
    );

    let names: Vec<String> = api
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|o| o.metadata.name)
        .collect();
    assert_eq!(names, ["one", "two"]);
    api.delete("one", &DeleteParams::default()).await.unwrap();
    let err = api.get("one").await.unwrap_err();
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
    assert!(
        fake.get(
            "connectors.alauda.io/v1alpha1",
            "Connector",
            "team-a",
            "two"
        )
        .is_some()
    );
    assert_eq!(fake.request_count("create connectors"), 2);
    assert_eq!(fake.request_count("apply connectors"), 1);
    assert_eq!(fake.request_count("patch connectors/status"), 1);
}

#[tokio::test]
async fn watcher_sees_changes_put_through_the_handle() {
    let fake = FakeApiServer::start().await.unwrap();
    fake.put(connector("a", "https://a.example")).unwrap();
    let client = client(&fake);
    let api = connectors_api(&client, "team-a");
    let mut events = watcher::watcher(api, watcher::Config::default()).boxed();
    let mut seen = Vec::new();
    let mut changed = false;
    while let Some(event) = events.next().await {
        match event.unwrap() {
            watcher::Event::InitDone => {
                fake.put(connector("a", "https://changed.example")).unwrap();
                fake.delete("connectors.alauda.io/v1alpha1", "Connector", "team-a", "a");
            }
            watcher::Event::InitApply(o) | watcher::Event::Apply(o) => {
                seen.push(format!("apply {}", o.data["spec"]["address"]));
                changed = o.data["spec"]["address"] == "https://changed.example";
            }
            watcher::Event::Delete(o) => {
                seen.push(format!("delete {}", o.metadata.name.unwrap_or_default()));
                break;
            }
            watcher::Event::Init => {}
        }
    }
    assert!(changed, "{seen:?}");
    assert_eq!(
        seen,
        [
            "apply \"https://a.example\"",
            "apply \"https://changed.example\"",
            "delete a"
        ]
    );
}

#[tokio::test]
async fn reviews_answer_from_the_tables_and_down_closes_connections() {
    let fake = FakeApiServer::start().await.unwrap();
    fake.add_token(
        "tok-1",
        FakeUser::service_account("team-a", "builder").with_audiences(&["connectors-proxy"]),
    );
    fake.allow(
        FakeRule::group(
            "system:serviceaccounts:team-a",
            "get",
            "connectors.alauda.io",
            "connectors",
        )
        .namespace("team-a")
        .name("prod"),
    );
    let client = client(&fake);
    let reviews: Api<TokenReview> = Api::all(client.clone());
    let review = |token: &str, aud: &[&str]| TokenReview {
        spec: TokenReviewSpec {
            token: Some(token.into()),
            audiences: Some(aud.iter().map(|a| a.to_string()).collect()),
        },
        ..Default::default()
    };
    let ok = reviews
        .create(
            &PostParams::default(),
            &review("tok-1", &["connectors-proxy", "x"]),
        )
        .await
        .unwrap();
    let status = ok.status.unwrap();
    assert_eq!(status.authenticated, Some(true));
    assert_eq!(status.audiences, Some(vec!["connectors-proxy".to_owned()]));
    let user = status.user.unwrap();
    assert_eq!(
        user.username.as_deref(),
        Some("system:serviceaccount:team-a:builder")
    );
    for (token, aud) in [
        ("tok-1", "https://kubernetes.default.svc.cluster.local"),
        ("nope", "connectors-proxy"),
    ] {
        let bad = reviews
            .create(&PostParams::default(), &review(token, &[aud]))
            .await
            .unwrap();
        assert_eq!(
            bad.status.unwrap().authenticated,
            Some(false),
            "{token} {aud}"
        );
    }

    let sars: Api<SubjectAccessReview> = Api::all(client.clone());
    let sar = |name: &str| SubjectAccessReview {
        spec: SubjectAccessReviewSpec {
            user: user.username.clone(),
            groups: user.groups.clone(),
            resource_attributes: Some(ResourceAttributes {
                namespace: Some("team-a".into()),
                verb: Some("get".into()),
                group: Some("connectors.alauda.io".into()),
                resource: Some("connectors".into()),
                name: Some(name.into()),
                ..Default::default()
            }),
            ..Default::default()
        },
        ..Default::default()
    };
    for (name, want) in [("prod", true), ("other", false)] {
        let answer = sars
            .create(&PostParams::default(), &sar(name))
            .await
            .unwrap();
        assert_eq!(answer.status.unwrap().allowed, want, "{name}");
    }
    assert_eq!(fake.request_count("create subjectaccessreviews"), 2);
    assert!(!format!("{:?}", fake.reviews_received()).contains("tok-1"));

    let configmaps: Api<ConfigMap> = Api::namespaced(client, "connectors-system");
    fake.set_down(true);
    let err = configmaps.get("connectors-config").await.unwrap_err();
    assert!(!matches!(err, kube::Error::Api(_)), "{err:?}");
    fake.set_down(false);
    // A pooled connection that was open while down may fail once more; the next one is fresh.
    let mut err = configmaps.get("connectors-config").await.unwrap_err();
    if !matches!(err, kube::Error::Api(_)) {
        err = configmaps.get("connectors-config").await.unwrap_err();
    }
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 404),
        "{err:?}"
    );
}
