//! Component tests of the reverse proxy against an in-process FAKE registry ([`FakeRegistry`]) that
//! each test scripts: header rewriting, the token flow, the 401 retry, and the error paths a real
//! registry will not produce on demand (token endpoint failures, resets mid-body, slow bodies, hung
//! answers, realms on foreign hosts).
//!
//! Every test runs the real `Proxy` on a loopback port and talks to it over HTTP/1.1; nothing leaves
//! `127.0.0.1`. Sleeps only create slowness; no assertion depends on how long something took.

mod support;

use std::time::Duration;

use bytes::Bytes;
use connectors_registry::{ResolveOverrides, UpstreamAccess};
use connectors_testkit::http::{self, StreamingBody};
use hyper::Method;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::{
    ConnectorSpec, Ctx, FakeRegistry, ProxyUnderTest, Reply, Seen, USER, assert_clean,
    bearer_challenge, connector_basic, grants, issue_token, oci_error, pattern,
};

const MIB: usize = 1 << 20;

/// A registry with an open `/v2/` (no authentication) that answers everything else with `route`,
/// or 404.
fn open_registry(route: impl Fn(&Ctx) -> Option<Reply>) -> impl Fn(&Ctx) -> Reply {
    move |ctx| {
        if ctx.req.path() == "/v2/" {
            return Reply::ok().json(serde_json::json!({}));
        }
        route(ctx).unwrap_or_else(|| Reply::status(404))
    }
}

/// A registry that wants Basic: `/v2/` is `401 Basic` without credentials.
fn basic_registry(route: impl Fn(&Ctx) -> Option<Reply>) -> impl Fn(&Ctx) -> Reply {
    move |ctx| {
        if ctx.req.header("authorization") != Some(connector_basic().as_str()) {
            return Reply::status(401).header("www-authenticate", r#"Basic realm="fake""#);
        }
        if ctx.req.path() == "/v2/" {
            return Reply::ok().json(serde_json::json!({}));
        }
        route(ctx).unwrap_or_else(|| Reply::status(404))
    }
}

/// A distribution-style token-auth registry whose realm is `<its own origin>/token`: `/v2/` is a
/// Bearer challenge, `/token` issues tokens naming their scopes, everything else goes to `route`;
/// `None` from `route` means "not allowed": a plain challenge.
fn token_registry(route: impl Fn(&Ctx) -> Option<Reply>) -> impl Fn(&Ctx) -> Reply {
    move |ctx| {
        let challenge =
            || Reply::status(401).header("www-authenticate", bearer_challenge(&ctx.origin));
        match ctx.req.path() {
            "/token" => issue_token(ctx),
            "/v2/" if ctx.req.bearer().is_some() => Reply::ok(),
            "/v2/" => challenge(),
            _ => route(ctx).unwrap_or_else(challenge),
        }
    }
}

fn targets(seen: &[Seen]) -> Vec<&str> {
    seen.iter().map(|s| s.target.as_str()).collect()
}

// 1 ------------------------------------------------------------------------------------------

/// Pagination `Link` headers point into the proxy's namespace, whether the registry wrote them
/// relative or absolute; links to other hosts stay as they are; the query reaches the registry.
#[tokio::test]
async fn link_headers_are_rewritten_into_the_proxy_namespace() {
    let fake = FakeRegistry::start(open_registry(|ctx| {
        if ctx.req.path() != "/v2/team/app/tags/list" {
            return None;
        }
        let last = ctx.req.query("last");
        let reply = Reply::ok();
        Some(match last.first().map(String::as_str) {
            None => reply
                .header("link", r#"</v2/team/app/tags/list?last=a&n=1>; rel="next""#)
                .json(serde_json::json!({"name": "team/app", "tags": ["a"]})),
            Some("a") => reply
                .header(
                    "link",
                    format!(
                        r#"<{}/v2/team/app/tags/list?last=b&n=1>; rel="next", <http://docs.example/paging>; rel="help""#,
                        ctx.origin
                    ),
                )
                .json(serde_json::json!({"name": "team/app", "tags": ["b"]})),
            Some(_) => reply.json(serde_json::json!({"name": "team/app", "tags": []})),
        })
    }))
    .await;
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("reg", fake.origin())]).await;

    let first = proxy.get("reg", "team/app/tags/list?n=1").await;
    assert_eq!(first.status, 200, "{}", first.text());
    assert_eq!(
        first.header("link"),
        Some(r#"</v2/namespaces/team-a/connectors/reg/team/app/tags/list?last=a&n=1>; rel="next""#)
    );
    assert_eq!(first.json()["tags"][0], "a");

    let second = proxy.get("reg", "team/app/tags/list?last=a&n=1").await;
    assert_eq!(second.status, 200, "{}", second.text());
    assert_eq!(
        second.header("link"),
        Some(
            r#"</v2/namespaces/team-a/connectors/reg/team/app/tags/list?last=b&n=1>; rel="next", <http://docs.example/paging>; rel="help""#
        ),
        "the absolute link to the registry is rewritten, the one to another host is not"
    );

    let third = proxy.get("reg", "team/app/tags/list?last=b&n=1").await;
    assert_eq!(third.status, 200);
    assert_eq!(third.header("link"), None);

    assert_eq!(
        targets(&fake.requests_to("/v2/team/app/tags/list")),
        [
            "/v2/team/app/tags/list?n=1",
            "/v2/team/app/tags/list?last=a&n=1",
            "/v2/team/app/tags/list?last=b&n=1"
        ]
    );
}

/// An address with a path prefix: requests go under the prefix, and links under the prefix come
/// back without it.
#[tokio::test]
async fn an_address_path_prefix_is_kept_upstream_and_stripped_from_links() {
    let fake = FakeRegistry::start(|ctx| match ctx.req.path() {
        "/mirror/v2/" => Reply::ok(),
        "/mirror/v2/team/app/tags/list" => Reply::ok()
            .header(
                "link",
                r#"</mirror/v2/team/app/tags/list?last=a&n=1>; rel="next""#,
            )
            .json(serde_json::json!({"name": "team/app", "tags": ["a"]})),
        _ => Reply::status(404),
    })
    .await;
    let address = format!("{}/mirror", fake.origin());
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("mirror", address)]).await;

    let r = proxy.get("mirror", "team/app/tags/list?n=1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(
        r.header("link"),
        Some(
            r#"</v2/namespaces/team-a/connectors/mirror/team/app/tags/list?last=a&n=1>; rel="next""#
        )
    );
    assert_eq!(
        targets(&fake.requests()),
        ["/mirror/v2/", "/mirror/v2/team/app/tags/list?n=1"]
    );
}

// 2 ------------------------------------------------------------------------------------------

/// A blob GET redirected to another host — object storage, or a mirror whose paths also start with
/// `/v2/` — reaches the client as a 307 with the `Location` untouched; the proxy does not follow it,
/// and the other host gets nothing (so no credentials either).
#[tokio::test]
async fn redirects_to_another_host_pass_through_unfollowed() {
    let storage = FakeRegistry::start(|_| Reply::ok().body("blob from storage")).await;
    let to_bucket = format!(
        "{}/bucket/x?sig=AbC%2Bd%3D&X-Amz-Expires=300",
        storage.origin()
    );
    let to_mirror = format!("{}/v2/team/app/blobs/sha256:2222", storage.origin());
    let (bucket, mirror) = (to_bucket.clone(), to_mirror.clone());
    let fake = FakeRegistry::start(basic_registry(move |ctx| {
        let location = match ctx.req.path() {
            "/v2/team/app/blobs/sha256:1111" => bucket.clone(),
            "/v2/team/app/blobs/sha256:2222" => mirror.clone(),
            _ => return None,
        };
        Some(
            Reply::status(307)
                .header("location", location)
                .header("docker-content-digest", "sha256:1111"),
        )
    }))
    .await;
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("reg", fake.origin())]).await;

    for (digest, location) in [("sha256:1111", &to_bucket), ("sha256:2222", &to_mirror)] {
        let r = proxy.get("reg", &format!("team/app/blobs/{digest}")).await;
        assert_eq!(r.status, 307, "{}", r.text());
        assert_eq!(r.header("location"), Some(location.as_str()));
        assert_eq!(r.header("docker-content-digest"), Some("sha256:1111"));
        let blob = fake.requests_to(&format!("/v2/team/app/blobs/{digest}"));
        assert_eq!(blob.len(), 1);
        assert_eq!(
            blob[0].header("authorization"),
            Some(connector_basic().as_str())
        );
    }
    assert!(
        storage.requests().is_empty(),
        "the proxy followed a redirect: {:?}",
        storage.requests()
    );
}

/// A `Location` on the registry itself (absolute or relative) comes back in the proxy's namespace.
#[tokio::test]
async fn locations_on_the_registry_are_rewritten() {
    let fake = FakeRegistry::start(open_registry(|ctx| match ctx.req.path() {
        "/v2/team/app/blobs/uploads/" => Some(
            Reply::status(202)
                .header(
                    "location",
                    format!("{}/v2/team/app/blobs/uploads/u-1?_state=s%3D1", ctx.origin),
                )
                .header("range", "0-0")
                .header("docker-upload-uuid", "u-1"),
        ),
        "/v2/team/app/blobs/uploads/u-1" => Some(
            Reply::status(201)
                .header("location", "/v2/team/app/blobs/sha256:2222")
                .header("docker-content-digest", "sha256:2222"),
        ),
        _ => None,
    }))
    .await;
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("reg", fake.origin())]).await;

    let r = proxy
        .send("POST", "reg", "team/app/blobs/uploads/", &[], Bytes::new())
        .await
        .expect("POST");
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some("/v2/namespaces/team-a/connectors/reg/team/app/blobs/uploads/u-1?_state=s%3D1")
    );
    assert_eq!(r.header("range"), Some("0-0"));
    assert_eq!(r.header("docker-upload-uuid"), Some("u-1"));

    let r = proxy
        .send(
            "PUT",
            "reg",
            "team/app/blobs/uploads/u-1?_state=s%3D1&digest=sha256:2222",
            &[("content-type", "application/octet-stream")],
            Bytes::from_static(b"hello"),
        )
        .await
        .expect("PUT");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some("/v2/namespaces/team-a/connectors/reg/team/app/blobs/sha256:2222")
    );
    let put = fake.requests_to("/v2/team/app/blobs/uploads/u-1");
    assert_eq!(
        targets(&put),
        ["/v2/team/app/blobs/uploads/u-1?_state=s%3D1&digest=sha256:2222"]
    );
    assert_eq!(put[0].body_len, 5);
}

// 3 ------------------------------------------------------------------------------------------

/// The token flow: Basic credentials, `service` and the request's scope go to the realm; the
/// registry gets the Bearer token; the token is reused; a push asks for `pull,push`.
#[tokio::test]
async fn bearer_tokens_are_fetched_with_the_connector_credentials_and_cached() {
    let fake = FakeRegistry::start(token_registry(|ctx| {
        match (&ctx.req.method, ctx.req.path()) {
            (&Method::GET, "/v2/team/app/manifests/v1")
                if grants(&ctx.req, "repository:team/app:pull") =>
            {
                Some(
                    Reply::ok()
                        .header("docker-content-digest", "sha256:3333")
                        .json(serde_json::json!({"schemaVersion": 2})),
                )
            }
            (&Method::POST, "/v2/team/app/blobs/uploads/")
                if grants(&ctx.req, "repository:team/app:pull,push") =>
            {
                Some(Reply::status(202).header("location", "/v2/team/app/blobs/uploads/u-9"))
            }
            _ => None,
        }
    }))
    .await;
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("reg", fake.origin())]).await;

    let r = proxy.get("reg", "team/app/manifests/v1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("docker-content-digest"), Some("sha256:3333"));

    let tokens = fake.requests_to("/token");
    assert_eq!(tokens.len(), 1, "{:?}", targets(&tokens));
    let t = &tokens[0];
    assert_eq!(t.method, Method::GET);
    assert_eq!(t.header("authorization"), Some(connector_basic().as_str()));
    assert_eq!(t.query("service"), ["svc"]);
    assert_eq!(t.query("scope"), ["repository:team/app:pull"]);
    let manifest = fake.requests_to("/v2/team/app/manifests/v1");
    assert_eq!(
        manifest[0].header("authorization"),
        Some("Bearer t1|repository:team/app:pull")
    );

    // The same request again: the cached token, no second token request.
    let r = proxy.get("reg", "team/app/manifests/v1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(fake.requests_to("/token").len(), 1);
    let manifest = fake.requests_to("/v2/team/app/manifests/v1");
    assert_eq!(manifest.len(), 2);
    assert_eq!(manifest[1].bearer(), manifest[0].bearer());

    // A push needs pull and push.
    let r = proxy
        .send("POST", "reg", "team/app/blobs/uploads/", &[], Bytes::new())
        .await
        .expect("POST");
    assert_eq!(r.status, 202, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some("/v2/namespaces/team-a/connectors/reg/team/app/blobs/uploads/u-9")
    );
    let tokens = fake.requests_to("/token");
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[1].query("scope"), ["repository:team/app:pull,push"]);
    assert_eq!(
        tokens[1].header("authorization"),
        Some(connector_basic().as_str())
    );

    // The scheme was learned once.
    assert_eq!(fake.requests_to("/v2/").len(), 1);
}

// 4 ------------------------------------------------------------------------------------------

/// `insufficient_scope` naming more scopes: a new token with all of them, one retry, success.
#[tokio::test]
async fn a_401_naming_wider_scopes_gets_a_new_token_and_one_retry() {
    let fake = FakeRegistry::start(token_registry(|ctx| {
        if ctx.req.path() != "/v2/team/app/manifests/v1" {
            return None;
        }
        if grants(&ctx.req, "repository:team/app:pull")
            && grants(&ctx.req, "repository:team/base:pull")
        {
            return Some(Reply::ok().json(serde_json::json!({"schemaVersion": 2})));
        }
        Some(Reply::status(401).header(
            "www-authenticate",
            format!(
                r#"Bearer realm="{}/token",service="svc",scope="repository:team/app:pull repository:team/base:pull",error="insufficient_scope""#,
                ctx.origin
            ),
        ))
    }))
    .await;
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("reg", fake.origin())]).await;

    let r = proxy.get("reg", "team/app/manifests/v1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("www-authenticate"), None);

    let tokens = fake.requests_to("/token");
    assert_eq!(tokens.len(), 2, "{:?}", targets(&tokens));
    assert_eq!(tokens[0].query("scope"), ["repository:team/app:pull"]);
    let mut wider = tokens[1].query("scope");
    wider.sort();
    assert_eq!(
        wider,
        ["repository:team/app:pull", "repository:team/base:pull"]
    );
    let manifest = fake.requests_to("/v2/team/app/manifests/v1");
    assert_eq!(manifest.len(), 2, "exactly one retry");
    assert!(grants(&manifest[1], "repository:team/base:pull"));
}

/// A 401 to an upload whose body was streamed (more than 1 MiB) cannot be retried: the registry
/// sees it once and the client gets a 403 with an OCI error. A small body that gets a 401 is sent
/// again.
#[tokio::test]
async fn a_401_to_a_streamed_body_is_not_retried() {
    let fake = FakeRegistry::start(token_registry(|ctx| {
        let insufficient = || {
            Reply::status(401).header(
                "www-authenticate",
                format!(
                    r#"Bearer realm="{}/token",service="svc",scope="repository:team/app:pull,push",error="insufficient_scope""#,
                    ctx.origin
                ),
            )
        };
        match (ctx.req.path(), ctx.earlier) {
            ("/v2/team/app/blobs/uploads/big", _) => Some(insufficient()),
            ("/v2/team/app/blobs/uploads/small", 0) => Some(insufficient()),
            ("/v2/team/app/blobs/uploads/small", _) => Some(
                Reply::status(202)
                    .header("location", "/v2/team/app/blobs/uploads/small")
                    .header("range", "0-999"),
            ),
            _ => None,
        }
    }))
    .await;
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("reg", fake.origin())]).await;
    let auth = proxy.authorization();

    let big = 2 * MIB as u64;
    let r = http::send_streaming(
        "PATCH",
        &proxy.url("reg", "team/app/blobs/uploads/big"),
        &[
            ("authorization", auth.as_str()),
            ("content-type", "application/octet-stream"),
            ("content-range", &format!("0-{}", big - 1)),
        ],
        StreamingBody::new(big),
    )
    .await
    .expect("PATCH (big)");
    assert_clean(&r);
    assert_eq!(r.status, 403, "{}", r.text());
    let (code, message) = oci_error(&r);
    assert_eq!(code, "DENIED", "{message}");
    assert!(message.contains("insufficient_scope"), "{message}");
    assert_eq!(r.header("www-authenticate"), None);
    let seen = fake.requests_to("/v2/team/app/blobs/uploads/big");
    assert_eq!(seen.len(), 1, "a streamed body was sent twice");
    assert_eq!(seen[0].body_len, big);
    assert!(seen[0].body_complete);

    let r = proxy
        .send(
            "PATCH",
            "reg",
            "team/app/blobs/uploads/small",
            &[("content-range", "0-999")],
            Bytes::from(vec![7u8; 1000]),
        )
        .await
        .expect("PATCH (small)");
    assert_eq!(r.status, 202, "{}", r.text());
    let seen = fake.requests_to("/v2/team/app/blobs/uploads/small");
    assert_eq!(seen.len(), 2, "a held body is retried once");
    assert!(seen.iter().all(|s| s.body_len == 1000));
}

// 5 ------------------------------------------------------------------------------------------

/// A token endpoint that fails: 500 and garbage give 502 naming the realm; a 401 from the realm
/// gives 403 DENIED naming the token endpoint. The registry request is never sent without a token.
#[tokio::test]
async fn token_endpoint_failures_become_clear_errors() {
    type Case = (&'static str, fn() -> Reply, u16, &'static str, &'static str);
    let cases: [Case; 4] = [
        (
            "500",
            || Reply::status(500).body("internal error"),
            502,
            "UNAVAILABLE",
            "HTTP 500",
        ),
        (
            "garbage",
            || {
                Reply::ok()
                    .header("content-type", "application/json")
                    .body("{<html>not json")
            },
            502,
            "UNAVAILABLE",
            "not token JSON",
        ),
        (
            "no-token",
            || Reply::ok().json(serde_json::json!({"expires_in": 60})),
            502,
            "UNAVAILABLE",
            "no token",
        ),
        (
            "401",
            || Reply::status(401).header("www-authenticate", r#"Basic realm="token-realm-secret""#),
            403,
            "DENIED",
            "token endpoint",
        ),
    ];
    for (name, token_reply, status, want_code, want_text) in cases {
        let fake = FakeRegistry::start(move |ctx| match ctx.req.path() {
            "/token" => token_reply(),
            "/v2/" => Reply::status(401).header("www-authenticate", bearer_challenge(&ctx.origin)),
            _ => Reply::ok(),
        })
        .await;
        let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("reg", fake.origin())]).await;
        let realm = format!("{}/token", fake.origin());

        let r = proxy.get("reg", "team/app/manifests/v1").await;
        assert_eq!(r.status, status, "{name}: {}", r.text());
        let (code, message) = oci_error(&r);
        assert_eq!(code, want_code, "{name}: {message}");
        assert!(message.contains(&realm), "{name}: {message}");
        assert!(message.contains(want_text), "{name}: {message}");
        assert_eq!(r.header("www-authenticate"), None, "{name}");
        assert!(
            fake.requests_to("/v2/team/app/manifests/v1").is_empty(),
            "{name}: the registry request went out without a token"
        );
        assert!(!fake.requests_to("/token").is_empty(), "{name}");
    }
}

// 6 ------------------------------------------------------------------------------------------

/// The registry announces 10 MiB, sends 1 MiB and drops the connection: the client must not see a
/// complete, successful body, and the proxy goes on serving.
#[tokio::test]
async fn an_upstream_reset_mid_body_is_not_passed_off_as_complete() {
    let declared = 10 * MIB;
    let fake = FakeRegistry::start(open_registry(move |ctx| match ctx.req.path() {
        "/v2/team/app/blobs/sha256:big" => Some(
            Reply::ok()
                .header("content-type", "application/octet-stream")
                .reset_after(declared as u64, MIB),
        ),
        "/v2/team/app/blobs/sha256:small" => Some(Reply::ok().body("fine")),
        _ => None,
    }))
    .await;
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("reg", fake.origin())]).await;

    let outcome = proxy
        .send("GET", "reg", "team/app/blobs/sha256:big", &[], Bytes::new())
        .await;
    // The headers (200, Content-Length: 10 MiB) are on their way before the reset, so the only honest
    // signal left is to cut the client's connection short: an HTTP client then reports an incomplete
    // body. A 200 that ends cleanly would pass a truncated blob off as whole.
    match &outcome {
        Err(e) => eprintln!("client saw a connection error, as it should: {e}"),
        Ok(r) => assert!(
            !r.status.is_success(),
            "a truncated body reached the client as a clean {} with {} of {declared} bytes",
            r.status,
            r.body.len()
        ),
    }
    assert_eq!(fake.requests_to("/v2/team/app/blobs/sha256:big").len(), 1);

    for _ in 0..2 {
        let r = proxy.get("reg", "team/app/blobs/sha256:small").await;
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.text(), "fine");
    }
}

// 7 ------------------------------------------------------------------------------------------

/// Client credentials, hop-by-hop headers and forwarding headers never reach the registry; the
/// registry's challenges and hop-by-hop headers never reach the client.
#[tokio::test]
async fn credentials_and_hop_by_hop_headers_stay_on_their_side() {
    // A registry without authentication: the proxy adds no `Authorization`, so none may arrive.
    let open = FakeRegistry::start(open_registry(|ctx| {
        (ctx.req.path() == "/v2/team/app/manifests/v1")
            .then(|| Reply::ok().json(serde_json::json!({"schemaVersion": 2})))
    }))
    .await;
    let fake = FakeRegistry::start(basic_registry(|ctx| match ctx.req.path() {
        "/v2/team/app/manifests/v1" => Some(
            Reply::ok()
                .header("www-authenticate", r#"Basic realm="upstream-secret-realm""#)
                .header("connection", "x-upstream-private")
                .header("x-upstream-private", "1")
                .header("docker-content-digest", "sha256:4444")
                .header("oci-subject", "sha256:5555")
                .json(serde_json::json!({"schemaVersion": 2})),
        ),
        "/v2/team/denied/manifests/v1" => Some(
            Reply::status(401).header("www-authenticate", r#"Basic realm="upstream-secret-realm""#),
        ),
        _ => None,
    }))
    .await;
    let proxy = ProxyUnderTest::start(&[
        ConnectorSpec::new("reg", fake.origin()),
        ConnectorSpec::new("open", open.origin()),
    ])
    .await;
    let client_headers = [
        ("proxy-authorization", "Basic Y2xpZW50OnByb3h5LXNlY3JldA=="),
        ("connection", "x-client-private"),
        ("x-client-private", "client-secret"),
        ("x-forwarded-host", "evil.example"),
        ("x-forwarded-proto", "https"),
        ("forwarded", "host=evil.example"),
        ("cookie", "session=client-cookie"),
        ("accept", "application/vnd.oci.image.manifest.v1+json"),
        ("x-end-to-end", "kept"),
    ];

    let r = proxy
        .send(
            "GET",
            "reg",
            "team/app/manifests/v1",
            &client_headers,
            Bytes::new(),
        )
        .await
        .expect("GET");
    assert_clean(&r);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("www-authenticate"), None);
    assert_eq!(r.header("x-upstream-private"), None);
    assert_eq!(r.header("docker-content-digest"), Some("sha256:4444"));
    assert_eq!(r.header("oci-subject"), Some("sha256:5555"));

    let seen = &fake.requests_to("/v2/team/app/manifests/v1")[0];
    assert_eq!(
        seen.header("authorization"),
        Some(connector_basic().as_str()),
        "the registry must get the connector's credentials, not the client's"
    );
    for name in [
        "proxy-authorization",
        "x-client-private",
        "x-forwarded-host",
        "x-forwarded-proto",
        "forwarded",
        "cookie",
    ] {
        assert_eq!(seen.header(name), None, "{name} reached the registry");
    }
    for (name, value) in &seen.headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        assert!(
            !value.contains(proxy.token()),
            "the proxy token reached the registry in {name}"
        );
    }
    assert_eq!(
        seen.header("accept"),
        Some("application/vnd.oci.image.manifest.v1+json")
    );
    assert_eq!(seen.header("x-end-to-end"), Some("kept"));
    assert_eq!(seen.header("host"), Some(fake.addr().to_string().as_str()));

    let r = proxy
        .send(
            "GET",
            "open",
            "team/app/manifests/v1",
            &client_headers,
            Bytes::new(),
        )
        .await
        .expect("GET (open)");
    assert_eq!(r.status, 200, "{}", r.text());
    let seen = &open.requests_to("/v2/team/app/manifests/v1")[0];
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.header("proxy-authorization"), None);
    assert_eq!(seen.header("x-client-private"), None);

    // The registry rejects the connector's credentials: the client learns that, not the challenge.
    let r = proxy.get("reg", "team/denied/manifests/v1").await;
    assert_eq!(r.status, 403, "{}", r.text());
    assert_eq!(r.header("www-authenticate"), None);
    assert!(!r.text().contains("upstream-secret-realm"), "{}", r.text());
    let (code, message) = oci_error(&r);
    assert_eq!(code, "DENIED");
    assert!(message.contains("secret"), "{message}");
}

// 8 ------------------------------------------------------------------------------------------

/// An address that is not a registry (`/v2/` answers 404 HTML): 502 asking whether the address is
/// right; nothing else is sent there.
#[tokio::test]
async fn an_address_that_is_not_a_registry_gives_502() {
    let fake = FakeRegistry::start(|_| {
        Reply::status(404)
            .header("content-type", "text/html")
            .body("<html><body>Not Found</body></html>")
    })
    .await;
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("web", fake.origin())]).await;

    let r = proxy.get("web", "team/app/manifests/v1").await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"));
    let (code, message) = oci_error(&r);
    assert_eq!(code, "UNAVAILABLE");
    assert!(
        message.contains(&format!(
            "is {} the address of an OCI registry?",
            fake.origin()
        )),
        "{message}"
    );
    assert!(message.contains("404"), "{message}");
    assert_eq!(targets(&fake.requests()), ["/v2/"]);
}

// 9 ------------------------------------------------------------------------------------------

/// A slow body (4 MiB in 64 KiB pieces with pauses) arrives whole and intact.
#[tokio::test]
async fn a_slow_body_arrives_whole() {
    let total = 4 * MIB;
    let fake = FakeRegistry::start(open_registry(move |ctx| {
        (ctx.req.path() == "/v2/team/app/blobs/sha256:slow").then(|| {
            Reply::ok()
                .header("content-type", "application/octet-stream")
                .slow_body(total, 64 * 1024, Duration::from_millis(10))
        })
    }))
    .await;
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("reg", fake.origin())]).await;

    let r = proxy.get("reg", "team/app/blobs/sha256:slow").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some(total.to_string().as_str()));
    assert_eq!(r.body.len(), total);
    assert!(r.body[..] == pattern(0, total)[..], "the body was altered");
}

/// `HEAD` on a blob keeps the registry's `Content-Length` and `Docker-Content-Digest`, and the proxy
/// does not wait for a body that a HEAD response never has.
#[tokio::test]
async fn head_keeps_the_length_and_sends_no_body() {
    let fake = FakeRegistry::start(open_registry(|ctx| {
        (ctx.req.path() == "/v2/team/app/blobs/sha256:7777").then(|| {
            Reply::ok()
                .header("content-length", (10 * MIB).to_string())
                .header("docker-content-digest", "sha256:7777")
        })
    }))
    .await;
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("reg", fake.origin())]).await;

    for _ in 0..2 {
        let r = proxy
            .send(
                "HEAD",
                "reg",
                "team/app/blobs/sha256:7777",
                &[],
                Bytes::new(),
            )
            .await
            .expect("HEAD");
        assert_eq!(r.status, 200);
        assert_eq!(
            r.header("content-length"),
            Some((10 * MIB).to_string().as_str())
        );
        assert_eq!(r.header("docker-content-digest"), Some("sha256:7777"));
        assert!(r.body.is_empty());
    }
    let seen = fake.requests_to("/v2/team/app/blobs/sha256:7777");
    assert!(seen.iter().all(|s| s.method == Method::HEAD));
}

// 10 -----------------------------------------------------------------------------------------

/// A realm over plain HTTP on another port that is not one of the connector's addresses gets no
/// credentials: 502 naming `addressExtensions`, and the realm gets no request. Listed as an
/// extension, the same realm is used.
#[tokio::test]
async fn a_plain_http_realm_elsewhere_needs_an_address_extension() {
    let realm_host = FakeRegistry::start(|ctx| match ctx.req.path() {
        "/token" => issue_token(ctx),
        _ => Reply::status(404),
    })
    .await;
    let realm = format!("{}/token", realm_host.origin());
    let challenge = format!(r#"Bearer realm="{realm}",service="svc""#);
    let fake = FakeRegistry::start(move |ctx| match ctx.req.path() {
        "/v2/team/app/manifests/v1" if grants(&ctx.req, "repository:team/app:pull") => {
            Reply::ok().json(serde_json::json!({"schemaVersion": 2}))
        }
        _ => Reply::status(401).header("www-authenticate", challenge.clone()),
    })
    .await;
    let proxy = ProxyUnderTest::start(&[
        ConnectorSpec::new("strict", fake.origin()),
        ConnectorSpec::new("extended", fake.origin()).extension(realm_host.origin()),
    ])
    .await;

    let r = proxy.get("strict", "team/app/manifests/v1").await;
    assert_eq!(r.status, 502, "{}", r.text());
    let (_, message) = oci_error(&r);
    assert!(message.contains("addressExtensions"), "{message}");
    assert!(message.contains(&realm), "{message}");
    assert!(
        realm_host.requests().is_empty(),
        "the foreign realm was asked: {:?}",
        realm_host.requests()
    );
    assert!(fake.requests_to("/v2/team/app/manifests/v1").is_empty());

    let r = proxy.get("extended", "team/app/manifests/v1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let tokens = realm_host.requests_to("/token");
    assert_eq!(tokens.len(), 1);
    assert_eq!(
        tokens[0].header("authorization"),
        Some(connector_basic().as_str())
    );
    assert_eq!(tokens[0].query("account"), [USER]);
}

/// The same rule holds when the realm comes from a `401` to a request rather than from the `/v2/`
/// probe: a registry that points its retry at a foreign plain-HTTP realm gets no credentials sent
/// there, and the client gets a 502 naming `addressExtensions`.
#[tokio::test]
async fn a_retry_challenge_naming_a_foreign_realm_gets_no_credentials() {
    let foreign = FakeRegistry::start(issue_token).await;
    let foreign_challenge = format!(
        r#"Bearer realm="{}/token",service="svc",scope="repository:team/app:pull",error="insufficient_scope""#,
        foreign.origin()
    );
    let fake = FakeRegistry::start(token_registry(move |ctx| {
        (ctx.req.path() == "/v2/team/app/manifests/v1")
            .then(|| Reply::status(401).header("www-authenticate", foreign_challenge.clone()))
    }))
    .await;
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("reg", fake.origin())]).await;

    let r = proxy.get("reg", "team/app/manifests/v1").await;
    assert_eq!(r.status, 502, "{}", r.text());
    let (_, message) = oci_error(&r);
    assert!(message.contains("addressExtensions"), "{message}");
    assert!(
        foreign.requests().is_empty(),
        "credentials went to a foreign realm: {:?}",
        foreign.requests()
    );
    assert_eq!(fake.requests_to("/v2/team/app/manifests/v1").len(), 1);
}

/// Tokens are used until shortly before `expires_in`, then fetched again.
#[tokio::test]
async fn an_expired_token_is_fetched_again() {
    let fake = FakeRegistry::start(|ctx| match ctx.req.path() {
        "/token" => Reply::ok().json(serde_json::json!({
            "token": format!("short-{}|repository:team/app:pull", ctx.earlier + 1),
            "expires_in": 1
        })),
        "/v2/team/app/manifests/v1" if grants(&ctx.req, "repository:team/app:pull") => {
            Reply::ok().json(serde_json::json!({"schemaVersion": 2}))
        }
        _ => Reply::status(401).header("www-authenticate", bearer_challenge(&ctx.origin)),
    })
    .await;
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("reg", fake.origin())]).await;

    assert_eq!(proxy.get("reg", "team/app/manifests/v1").await.status, 200);
    // Past the token's whole lifetime: it cannot still be in use.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(proxy.get("reg", "team/app/manifests/v1").await.status, 200);
    assert_eq!(fake.requests_to("/token").len(), 2);
    let bearers: Vec<String> = fake
        .requests_to("/v2/team/app/manifests/v1")
        .iter()
        .filter_map(|s| s.bearer().map(str::to_owned))
        .collect();
    assert_eq!(
        bearers,
        [
            "short-1|repository:team/app:pull",
            "short-2|repository:team/app:pull"
        ]
    );
}

// 11 -----------------------------------------------------------------------------------------

/// `GARBAGE` instead of a request gets a 400 or a close, and a client stalled in the middle of its
/// headers does not hold up anyone else; the proxy serves the next request.
#[tokio::test]
async fn garbage_and_stalled_requests_do_not_stop_the_proxy() {
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("reg", "http://127.0.0.1:9")]).await;

    // A client that sends half a request head and waits.
    let mut stalled = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    stalled
        .write_all(b"GET /v2/ HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("write");

    let mut garbage = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    garbage.write_all(b"GARBAGE\r\n\r\n").await.expect("write");
    let mut answer = Vec::new();
    // A safety net, not a threshold: the proxy answers at once.
    let read = tokio::time::timeout(Duration::from_secs(20), garbage.read_to_end(&mut answer))
        .await
        .expect("the proxy neither answered nor closed the garbage connection");
    let answer = String::from_utf8_lossy(&answer);
    eprintln!("answer to GARBAGE: {read:?} {answer:?}");
    assert!(
        read.is_err() || answer.is_empty() || answer.starts_with("HTTP/1.1 400"),
        "{answer}"
    );

    let auth = proxy.authorization();
    let r = http::send(
        "GET",
        &format!("http://{}/v2/", proxy.addr),
        &[("authorization", auth.as_str())],
        Bytes::new(),
    )
    .await
    .expect("ping");
    assert_eq!(r.status, 200, "{}", r.text());
    let r = http::send(
        "GET",
        &format!("http://{}/healthz", proxy.addr),
        &[],
        Bytes::new(),
    )
    .await
    .expect("healthz");
    assert_eq!(r.status, 200);
    drop(stalled);
}

// 12 -----------------------------------------------------------------------------------------

/// A registry that never answers a bodiless request gives 504 (with the headers timeout shortened
/// for the test); a request with a body may take longer than that timeout.
#[tokio::test]
async fn a_hung_registry_gives_504_but_slow_uploads_are_not_cut() {
    let fake = FakeRegistry::start(open_registry(|ctx| match ctx.req.path() {
        "/v2/team/app/manifests/hang" => Some(Reply::hang()),
        "/v2/team/app/manifests/v1" => Some(
            Reply::status(201)
                .header("location", "/v2/team/app/manifests/sha256:6666")
                .after(Duration::from_millis(1500)),
        ),
        _ => None,
    }))
    .await;
    let silent = FakeRegistry::start(|_| Reply::hang()).await;
    let upstream = UpstreamAccess::new(ResolveOverrides::default())
        .with_headers_timeout(Duration::from_secs(1));
    let proxy = ProxyUnderTest::start_with(
        &[
            ConnectorSpec::new("reg", fake.origin()),
            ConnectorSpec::new("silent", silent.origin()),
        ],
        upstream,
    )
    .await;

    // Even the `/v2/` probe may not wait forever.
    let r = proxy.get("silent", "team/app/manifests/v1").await;
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(targets(&silent.requests()), ["/v2/"]);

    let r = proxy.get("reg", "team/app/manifests/hang").await;
    assert_eq!(r.status, 504, "{}", r.text());
    let (code, message) = oci_error(&r);
    assert_eq!(code, "UNAVAILABLE");
    assert!(message.contains("did not answer"), "{message}");
    assert!(message.contains(&fake.addr().to_string()), "{message}");

    let r = proxy
        .send(
            "PUT",
            "reg",
            "team/app/manifests/v1",
            &[("content-type", "application/vnd.oci.image.manifest.v1+json")],
            Bytes::from_static(br#"{"schemaVersion":2}"#),
        )
        .await
        .expect("PUT");
    assert_eq!(r.status, 201, "{}", r.text());
    assert_eq!(
        r.header("location"),
        Some("/v2/namespaces/team-a/connectors/reg/team/app/manifests/sha256:6666")
    );
}

// 13 -----------------------------------------------------------------------------------------

/// A realm that does not serve the GET form (404) gets the OAuth2 password-grant POST with the
/// connector's credentials, the service and the scope; its `access_token` is used.
#[tokio::test]
async fn a_realm_without_the_get_form_gets_the_oauth2_post() {
    let fake = FakeRegistry::start(|ctx| match (&ctx.req.method, ctx.req.path()) {
        (&Method::GET, "/token") => Reply::status(404),
        (&Method::POST, "/token") => {
            Reply::ok().json(serde_json::json!({"access_token": "oauth-token", "expires_in": 300}))
        }
        (_, "/v2/team/app/manifests/v1") if ctx.req.bearer() == Some("oauth-token") => {
            Reply::ok().json(serde_json::json!({"schemaVersion": 2}))
        }
        _ => Reply::status(401).header("www-authenticate", bearer_challenge(&ctx.origin)),
    })
    .await;
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("reg", fake.origin())]).await;

    let r = proxy.get("reg", "team/app/manifests/v1").await;
    assert_eq!(r.status, 200, "{}", r.text());
    let posts: Vec<Seen> = fake
        .requests_to("/token")
        .into_iter()
        .filter(|s| s.method == Method::POST)
        .collect();
    assert_eq!(posts.len(), 1);
    let post = &posts[0];
    assert_eq!(
        post.header("content-type"),
        Some("application/x-www-form-urlencoded")
    );
    assert_eq!(post.form("grant_type"), ["password"]);
    assert_eq!(post.form("username"), [USER]);
    assert_eq!(post.form("password"), [support::PASSWORD]);
    assert_eq!(post.form("service"), ["svc"]);
    assert_eq!(post.form("scope"), ["repository:team/app:pull"]);
}

// 14 -----------------------------------------------------------------------------------------

/// A client that announces 4 MiB, sends 2 MiB of an upload and stops: the registry is not handed a
/// complete upload, and the proxy goes on serving.
#[tokio::test]
async fn a_client_that_stops_mid_upload_does_not_complete_it_upstream() {
    let fake = FakeRegistry::start(open_registry(|ctx| match ctx.req.path() {
        "/v2/team/app/blobs/uploads/u-1" => {
            Some(Reply::status(202).header("range", format!("0-{}", ctx.req.body_len.max(1) - 1)))
        }
        "/v2/team/app/manifests/v1" => Some(Reply::ok().body("fine")),
        _ => None,
    }))
    .await;
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("reg", fake.origin())]).await;
    let declared = 4 * MIB;

    let mut client = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    let head = format!(
        "PATCH /v2/namespaces/team-a/connectors/reg/team/app/blobs/uploads/u-1 HTTP/1.1\r\n\
         Host: {}\r\nAuthorization: {}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {declared}\r\n\r\n",
        proxy.addr,
        proxy.authorization()
    );
    client.write_all(head.as_bytes()).await.expect("head");
    client
        .write_all(&pattern(0, 2 * MIB))
        .await
        .expect("half the body");
    client.shutdown().await.expect("shutdown");
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(30), client.read_to_end(&mut answer))
        .await
        .expect("the proxy neither answered nor closed");
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        read.is_err() || !answer.starts_with("HTTP/1.1 2"),
        "{answer}"
    );

    // Whether the registry saw the request start depends on how far the proxy got; it must never
    // have seen it end.
    let seen = fake.requests_to("/v2/team/app/blobs/uploads/u-1");
    assert!(
        seen.iter()
            .all(|s| !s.body_complete && s.body_len < declared as u64),
        "the registry got a whole body the client never sent: {seen:?}"
    );

    let r = proxy.get("reg", "team/app/manifests/v1").await;
    assert_eq!(r.status, 200, "{}", r.text());
}

/// A request body the client breaks (a malformed chunk) is the client's fault: 400 saying the
/// request body could not be read — not a 502 that blames the registry.
#[tokio::test]

async fn a_broken_request_body_is_blamed_on_the_client() {
    let fake = FakeRegistry::start(open_registry(|ctx| {
        (ctx.req.path() == "/v2/team/app/blobs/uploads/u-1").then(|| Reply::status(202))
    }))
    .await;
    let proxy = ProxyUnderTest::start(&[ConnectorSpec::new("reg", fake.origin())]).await;

    let mut client = tokio::net::TcpStream::connect(proxy.addr)
        .await
        .expect("connect");
    let request = format!(
        "PATCH /v2/namespaces/team-a/connectors/reg/team/app/blobs/uploads/u-1 HTTP/1.1\r\n\
         Host: {}\r\nAuthorization: {}\r\nContent-Type: application/octet-stream\r\n\
         Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz-not-a-chunk-size\r\n",
        proxy.addr,
        proxy.authorization()
    );
    client.write_all(request.as_bytes()).await.expect("write");
    let mut answer = Vec::new();
    // The client keeps its side open; the proxy answers and closes.
    tokio::time::timeout(Duration::from_secs(30), client.read_to_end(&mut answer))
        .await
        .expect("the proxy neither answered nor closed")
        .expect("read");
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
    assert!(!answer.contains("cannot reach registry"), "{answer}");
    assert!(
        fake.requests_to("/v2/team/app/blobs/uploads/u-1")
            .iter()
            .all(|s| !s.body_complete)
    );
}
