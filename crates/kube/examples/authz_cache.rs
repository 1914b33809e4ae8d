//! The proxy's authorization cache under a steady load: many requests from a set of workloads
//! (ServiceAccount tokens) to a set of connectors, authenticated and authorized by [`KubeReview`]
//! against the FAKE API server, as the proxy does for every request.
//!
//! ```sh
//! cargo run --release -p connectors-kube --example authz_cache -- [SECONDS] [WORKLOADS] [CONNECTORS]
//! ```
//! Prints one JSON line: requests, requests/s, cache hit rate, TokenReviews and SubjectAccessReviews
//! the API server received.

use std::sync::Arc;
use std::time::{Duration, Instant};

use connectors_identity::{Authenticator, Authorizer};
use connectors_kube::{KubeReview, KubeReviewConfig};
use connectors_kubefake::{FakeApiServer, FakeRule, FakeUser};
use connectors_model::{ConnectorRef, SecretString};

#[tokio::main]
async fn main() {
    let arg = |i: usize, default: u64| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let seconds = arg(1, 30);
    let workloads = arg(2, 50) as usize;
    let connectors = arg(3, 10) as usize;

    let fake = FakeApiServer::start().await.expect("fake API server");
    for w in 0..workloads {
        fake.add_token(
            format!("token-{w}"),
            FakeUser::service_account("team-a", &format!("sa-{w}"))
                .with_audiences(&["connectors-proxy"]),
        );
    }
    fake.allow(FakeRule::group(
        "system:serviceaccounts:team-a",
        "get",
        "connectors.alauda.io",
        "connectors",
    ));
    let client = kube::Client::try_from(kube::Config::new(fake.url().parse().unwrap())).unwrap();
    let review = Arc::new(KubeReview::new(client, KubeReviewConfig::default()));

    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for t in 0..20usize {
        let review = review.clone();
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            let mut denied = 0u64;
            while Instant::now() < deadline {
                let w = (t * 7 + n as usize * 13) % workloads;
                let c = (t + n as usize) % connectors;
                let token = SecretString::new(format!("token-{w}"));
                let connector = ConnectorRef::new("team-a", format!("c{c}")).unwrap();
                let ok = match review.authenticate(&token).await {
                    Ok(principal) => review.authorize(&principal, &connector).await.is_ok(),
                    Err(_) => false,
                };
                if !ok {
                    denied += 1;
                }
                n += 1;
            }
            (n, denied)
        }));
    }
    let (mut total, mut denied) = (0u64, 0u64);
    for t in tasks {
        let (n, d) = t.await.unwrap();
        total += n;
        denied += d;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let stats = review.cache_stats();
    println!(
        "{}",
        serde_json::json!({
            "seconds": seconds,
            "workloads": workloads,
            "connectors": connectors,
            "ttl_seconds": KubeReviewConfig::default().ttl.as_secs(),
            "requests": total,
            "denied": denied,
            "requests_per_second": (total as f64 / elapsed).round(),
            "cache_hits": stats.hits,
            "cache_misses": stats.misses,
            "hit_rate": (stats.hit_rate() * 10000.0).round() / 10000.0,
            "tokenreviews": fake.request_count("create tokenreviews"),
            "subjectaccessreviews": fake.request_count("create subjectaccessreviews"),
        })
    );
}
