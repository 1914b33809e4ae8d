//! KubeReview against the fake API server (no real one can run here).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use connectors_identity::{AuthErrorKind, Authenticator, Authorizer};
use connectors_kube::{KubeReview, KubeReviewConfig};
use connectors_kubefake::{FakeApiServer, FakeRule, FakeUser};
use connectors_model::{ConnectorRef, SecretString};
use serde_json::json;

const GROUP: &str = "connectors.alauda.io";

fn review(fake: &FakeApiServer, ttl: Duration) -> KubeReview {
    let config = kube::Config::new(fake.url().parse().unwrap());
    let client = kube::Client::try_from(config).unwrap();
    KubeReview::new(
        client,
        KubeReviewConfig {
            ttl,
            ..Default::default()
        },
    )
}

/// A JWT-shaped token (unsigned: only the fake reads it, and KubeReview only reads `exp`).
fn jwt(name: &str, exp: Option<u64>) -> String {
    let enc = |v: serde_json::Value| {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let claims = match exp {
        Some(exp) => json!({"sub": name, "exp": exp}),
        None => json!({"sub": name}),
    };
    format!("{}.{}.sig", enc(json!({"alg": "RS256"})), enc(claims))
}

fn prod() -> ConnectorRef {
    "team-a/prod".parse().unwrap()
}

fn setup(fake: &FakeApiServer, token: &str) {
    fake.add_token(
        token,
        FakeUser::service_account("team-a", "builder").with_audiences(&["connectors-proxy"]),
    );
    // Granted to the ServiceAccounts group: proves the groups from the TokenReview reach the SAR.
    fake.allow(
        FakeRule::group("system:serviceaccounts:team-a", "get", GROUP, "connectors")
            .namespace("team-a")
            .name("prod"),
    );
}

#[tokio::test]
async fn allowed_denied_and_cached() {
    let fake = FakeApiServer::start().await.unwrap();
    let token = jwt("builder", None);
    setup(&fake, &token);
    let kr = review(&fake, Duration::from_secs(60));
    let principal = kr
        .authenticate(&SecretString::new(token.clone()))
        .await
        .unwrap();
    assert_eq!(principal.subject, "system:serviceaccount:team-a:builder");
    kr.authorize(&principal, &prod()).await.unwrap();
    let other: ConnectorRef = "team-a/other".parse().unwrap();
    let err = kr.authorize(&principal, &other).await.unwrap_err();
    assert_eq!(err.kind(), AuthErrorKind::Forbidden);
    let msg = err.to_string();
    assert!(
        msg.contains("team-a/other") && msg.contains("get on connectors.connectors.alauda.io"),
        "{msg}"
    );

    // Second round: served from the cache, no new reviews.
    let sars = fake.request_count("create subjectaccessreviews");
    let trs = fake.request_count("create tokenreviews");
    let again = kr
        .authenticate(&SecretString::new(token.clone()))
        .await
        .unwrap();
    kr.authorize(&again, &prod()).await.unwrap();
    assert_eq!(fake.request_count("create subjectaccessreviews"), sars);
    assert_eq!(fake.request_count("create tokenreviews"), trs);
    assert_eq!(kr.cache_stats().hits, 2);

    // Down: the cached decision still serves; an uncached one fails closed.
    fake.set_down(true);
    kr.authorize(&again, &prod()).await.unwrap();
    let third: ConnectorRef = "team-a/third".parse().unwrap();
    let err = kr.authorize(&again, &third).await.unwrap_err();
    assert_eq!(err.kind(), AuthErrorKind::Unavailable, "{err}");
    let err = kr
        .authenticate(&SecretString::new(jwt("new", None)))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), AuthErrorKind::Unavailable, "{err}");
}

#[tokio::test]
async fn unauthenticated_and_audience_mismatch() {
    let fake = FakeApiServer::start().await.unwrap();
    fake.add_token(
        "wrong-aud",
        FakeUser::service_account("team-a", "x").with_audiences(&["vault"]),
    );
    fake.add_token("api-default", FakeUser::service_account("team-a", "y"));
    let kr = review(&fake, Duration::from_secs(10));
    for token in ["unknown", "wrong-aud"] {
        let err = kr
            .authenticate(&SecretString::new(token))
            .await
            .unwrap_err();
        assert_eq!(err.kind(), AuthErrorKind::Unauthenticated, "{token}: {err}");
        assert!(!err.to_string().contains(token));
    }
    // A token for the API server's default audience (kubectl create token) is accepted too.
    let p = kr
        .authenticate(&SecretString::new("api-default"))
        .await
        .unwrap();
    assert_eq!(p.subject, "system:serviceaccount:team-a:y");
    let audiences: Vec<_> = fake
        .reviews_received()
        .iter()
        .map(|r| r["audiences"].clone())
        .collect();
    assert!(
        audiences.contains(&json!(["connectors-proxy"])),
        "{audiences:?}"
    );
}

#[tokio::test]
async fn flag_on_requires_the_proxy_subresource() {
    let fake = FakeApiServer::start().await.unwrap();
    let token = jwt("builder", None);
    setup(&fake, &token);
    fake.put(json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "connectors-config", "namespace": "connectors-system"},
        "data": {"enable-connector-proxy-permissions": "true"}}))
        .unwrap();
    let kr = review(&fake, Duration::from_secs(60));
    let p = kr.authenticate(&SecretString::new(token)).await.unwrap();
    let err = kr.authorize(&p, &prod()).await.unwrap_err();
    assert!(err.to_string().contains("connectors/proxy"), "{err}");
    fake.allow(
        FakeRule::user(&p.subject, "*", GROUP, "connectors")
            .subresource("proxy")
            .name("prod"),
    );
    let kr = review(&fake, Duration::from_secs(60));
    kr.authorize(&p, &prod()).await.unwrap();
}

#[tokio::test]
async fn cache_never_outlives_the_token() {
    let fake = FakeApiServer::start().await.unwrap();
    // Expires in 2 s, far below the 600 s TTL.
    let exp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 2;
    let token = jwt("builder", Some(exp));
    setup(&fake, &token);
    let kr = review(&fake, Duration::from_secs(600));
    let p = kr
        .authenticate(&SecretString::new(token.clone()))
        .await
        .unwrap();
    kr.authorize(&p, &prod()).await.unwrap();
    // Wait past exp (whole seconds, so the check cannot race the clock).
    while SystemTime::now() < UNIX_EPOCH + Duration::from_secs(exp + 1) {
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let trs = fake.request_count("create tokenreviews");
    let sars = fake.request_count("create subjectaccessreviews");
    kr.authenticate(&SecretString::new(token)).await.unwrap();
    kr.authorize(&p, &prod()).await.unwrap();
    assert!(fake.request_count("create tokenreviews") > trs);
    assert!(fake.request_count("create subjectaccessreviews") > sars);
}
