//! The token-cache and certificate-cache counters of `/metrics`. They are process-wide, so this file
//! holds a single test (its own process): the counts it sees are its own.

mod support;

use connectors_proxy::ca::ProxyCa;
use support::{
    ConnectorSpec, FakeRegistry, ProxyUnderTest, Reply, bearer_challenge, grants, issue_token,
};

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

#[tokio::test]
async fn token_and_certificate_cache_hits_and_misses_are_counted() {
    let fake = FakeRegistry::start(|ctx| match ctx.req.path() {
        "/token" => issue_token(ctx),
        "/v2/team/app/manifests/v1" if grants(&ctx.req, "repository:team/app:pull") => {
            Reply::ok().body("fine")
        }
        _ => Reply::status(401).header("www-authenticate", bearer_challenge(&ctx.origin)),
    })
    .await;
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("reg", fake.origin())]).await;

    assert_eq!(proxy.get("reg", "team/app/manifests/v1").await.status, 200);
    let first = proxy.metrics_text();
    let misses = metric(&first, "connectors_token_cache_misses_total");
    assert!(misses >= 1.0, "{first}");
    assert_eq!(fake.requests_to("/token").len(), 1);

    assert_eq!(proxy.get("reg", "team/app/manifests/v1").await.status, 200);
    let second = proxy.metrics_text();
    assert_eq!(
        fake.requests_to("/token").len(),
        1,
        "the token was fetched again"
    );
    assert!(
        metric(&second, "connectors_token_cache_hits_total")
            > metric(&first, "connectors_token_cache_hits_total"),
        "{second}"
    );
    assert_eq!(
        metric(&second, "connectors_token_cache_misses_total"),
        misses
    );

    let state = tempfile::tempdir().expect("tempdir");
    let ca = ProxyCa::load_or_create(state.path()).expect("CA");
    ca.server_config("registry.test").expect("leaf");
    let minted = proxy.metrics_text();
    assert_eq!(
        metric(&minted, "connectors_certificate_cache_misses_total"),
        1.0
    );
    assert_eq!(
        metric(&minted, "connectors_certificate_cache_hits_total"),
        0.0
    );
    ca.server_config("REGISTRY.test").expect("leaf again");
    let reused = proxy.metrics_text();
    assert_eq!(
        metric(&reused, "connectors_certificate_cache_misses_total"),
        1.0
    );
    assert_eq!(
        metric(&reused, "connectors_certificate_cache_hits_total"),
        1.0
    );
}
