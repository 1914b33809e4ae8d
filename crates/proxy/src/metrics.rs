//! Counters, gauges and a histogram for the admin listener's `/metrics`, kept and rendered by
//! `prometheus-client` in the Prometheus text exposition format (version 0.0.4).
//!
//! Every metric belongs to one [`Metrics`] (one per proxy process, shared by its worker threads); nothing
//! is process-wide. The caches of other crates count into counters this registry owns: the token cache
//! through [`Metrics::token_cache`], the certificate cache through [`Metrics::certificate`]. Labels are
//! bounded: the connector label is empty unless the catalog knows the connector, operations are a
//! fixed set and statuses are HTTP codes.

use std::sync::Arc;
use std::time::Duration;

use connectors_registry::token::CacheCounters;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

/// The `Content-Type` of `/metrics`.
pub use prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upper bounds (seconds) of the upstream latency histogram's buckets.
pub const LATENCY_BUCKETS: [f64; 12] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Why a caller was turned away (the `reason` label of `connectors_auth_failures_total`).
pub const AUTH_REASONS: [&str; 6] = [
    "missing",
    "malformed",
    "expired",
    "bad_signature",
    "not_allowed",
    "unavailable",
];

/// The operation a request performs, from its method and the distribution endpoint it names (the
/// `operation` label and the audit log's `operation` field).
pub fn operation(method: &str, endpoint: &str) -> &'static str {
    match endpoint {
        "manifest" | "blob" => match method {
            "GET" | "HEAD" => "pull",
            "DELETE" => "delete",
            _ => "push",
        },
        "upload" => match method {
            "DELETE" => "delete",
            "GET" | "HEAD" => "upload_status",
            _ => "push",
        },
        "tags" | "referrers" => "list",
        "ping" => "ping",
        "intercept" => "intercept",
        "tunnel" => "tunnel",
        "extension" => "extension",
        "forward" => "forward",
        _ => "other",
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    connector: String,
    mode: &'static str,
    operation: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct BytesLabels {
    connector: String,
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DirectionLabels {
    direction: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

/// Everything `/metrics` reports, shared by all worker threads.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    bytes: Family<BytesLabels, Counter>,
    tunnel_bytes: Family<DirectionLabels, Counter>,
    upstream_duration: Histogram,
    auth_failures: Family<ReasonLabels, Counter>,
    token_cache: CacheCounters,
    certificate_cache: CacheCounters,
    open_connections: Gauge,
    in_flight: Gauge,
    open_tunnels: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics {
            registry: Registry::default(),
            requests: Family::default(),
            bytes: Family::default(),
            tunnel_bytes: Family::default(),
            upstream_duration: Histogram::new(LATENCY_BUCKETS),
            auth_failures: Family::default(),
            token_cache: CacheCounters::default(),
            certificate_cache: CacheCounters::default(),
            open_connections: Gauge::default(),
            in_flight: Gauge::default(),
            open_tunnels: Gauge::default(),
        };
        // The series of fixed label sets exist from the start, at 0.
        for reason in AUTH_REASONS {
            let _ = m.auth_failures.get_or_create(&ReasonLabels { reason });
        }
        for direction in ["up", "down"] {
            let _ = m.tunnel_bytes.get_or_create(&DirectionLabels { direction });
        }
        m.register()
    }
}

/// Decrements a gauge when dropped.
pub struct GaugeGuard(Gauge);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    /// Registers every metric under its name (counters get their `_total` when encoded) and help text
    /// (which gets a final period).
    fn register(mut self) -> Self {
        let r = &mut self.registry;
        r.register(
            "connectors_requests",
            "Requests answered, by connector, mode, operation and HTTP status",
            self.requests.clone(),
        );
        r.register(
            "connectors_bytes",
            "Body bytes of requests (in, from clients) and responses (out, to clients), by connector",
            self.bytes.clone(),
        );
        r.register(
            "connectors_tunnel_bytes",
            "Bytes carried by tunnels to destinations that are not connectors",
            self.tunnel_bytes.clone(),
        );
        r.register(
            "connectors_upstream_duration_seconds",
            "Time from sending a request to the registry to its response headers (token fetches and one \
             retry included)",
            self.upstream_duration.clone(),
        );
        r.register(
            "connectors_auth_failures",
            "Callers turned away, by reason",
            self.auth_failures.clone(),
        );
        r.register(
            "connectors_token_cache_hits",
            "Registry tokens served from the cache",
            self.token_cache.hits.clone(),
        );
        r.register(
            "connectors_token_cache_misses",
            "Registry tokens not in the cache (fetched, or waited for while another request fetched them)",
            self.token_cache.misses.clone(),
        );
        r.register(
            "connectors_certificate_cache_hits",
            "Forward mode: intercepted connections served with a cached leaf certificate",
            self.certificate_cache.hits.clone(),
        );
        r.register(
            "connectors_certificate_cache_misses",
            "Forward mode: leaf certificates minted",
            self.certificate_cache.misses.clone(),
        );
        r.register(
            "connectors_open_connections",
            "Client connections open now",
            self.open_connections.clone(),
        );
        r.register(
            "connectors_requests_in_flight",
            "Requests being served now (until their response body ends)",
            self.in_flight.clone(),
        );
        r.register(
            "connectors_open_tunnels",
            "Forward mode: tunnels and intercepted connections open now",
            self.open_tunnels.clone(),
        );
        self
    }

    fn enter(gauge: &Gauge) -> GaugeGuard {
        gauge.inc();
        GaugeGuard(gauge.clone())
    }

    /// A client connection is open until the guard drops.
    pub fn connection(&self) -> GaugeGuard {
        Self::enter(&self.open_connections)
    }

    /// A request is in flight (its response body included) until the guard drops.
    pub fn request(&self) -> GaugeGuard {
        Self::enter(&self.in_flight)
    }

    /// A tunnel or an intercepted connection is open until the guard drops.
    pub fn tunnel(&self) -> GaugeGuard {
        Self::enter(&self.open_tunnels)
    }

    /// Open client connections, requests in flight, open tunnels and intercepted connections.
    pub fn open(&self) -> (i64, i64, i64) {
        (
            self.open_connections.get(),
            self.in_flight.get(),
            self.open_tunnels.get(),
        )
    }

    /// One finished request. `connector` is empty when the catalog does not know it.
    pub fn request_done(
        &self,
        connector: &str,
        mode: &'static str,
        operation: &'static str,
        status: u16,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        self.requests
            .get_or_create(&RequestLabels {
                connector: connector.to_owned(),
                mode,
                operation,
                status,
            })
            .inc();
        for (direction, n) in [("in", bytes_in), ("out", bytes_out)] {
            self.bytes
                .get_or_create(&BytesLabels {
                    connector: connector.to_owned(),
                    direction,
                })
                .inc_by(n);
        }
    }

    /// Time from sending a request upstream to its response headers.
    pub fn upstream_latency(&self, elapsed: Duration) {
        self.upstream_duration.observe(elapsed.as_secs_f64());
    }

    /// A caller refused for `reason` (one of [`AUTH_REASONS`]; others are not counted).
    pub fn auth_failure(&self, reason: &str) {
        if let Some(reason) = AUTH_REASONS.iter().find(|r| **r == reason) {
            self.auth_failures
                .get_or_create(&ReasonLabels { reason })
                .inc();
        }
    }

    /// Bytes a closed tunnel carried.
    pub fn tunnel_bytes(&self, up: u64, down: u64) {
        for (direction, n) in [("up", up), ("down", down)] {
            self.tunnel_bytes
                .get_or_create(&DirectionLabels { direction })
                .inc_by(n);
        }
    }

    /// The counters the registry token caches count into (see
    /// [`connectors_registry::UpstreamAccess::with_token_cache_counters`]).
    pub fn token_cache(&self) -> CacheCounters {
        self.token_cache.clone()
    }

    /// One leaf certificate taken from the CA for an intercepted connection: minted now, or cached.
    pub fn certificate(&self, minted: bool) {
        if minted {
            self.certificate_cache.misses.inc();
        } else {
            self.certificate_cache.hits.inc();
        }
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operations_follow_method_and_endpoint() {
        assert_eq!(operation("GET", "manifest"), "pull");
        assert_eq!(operation("HEAD", "blob"), "pull");
        assert_eq!(operation("PUT", "manifest"), "push");
        assert_eq!(operation("PATCH", "upload"), "push");
        assert_eq!(operation("DELETE", "manifest"), "delete");
        assert_eq!(operation("GET", "tags"), "list");
        assert_eq!(operation("CONNECT", "intercept"), "intercept");
        assert_eq!(operation("GET", ""), "other");
    }

    #[test]
    fn render_is_the_text_format() {
        let m = Metrics::new();
        m.request_done("team-a/r", "reverse", "pull", 200, 0, 10);
        m.request_done("team-a/r", "reverse", "pull", 200, 0, 5);
        m.request_done("", "reverse", "other", 404, 0, 0);
        m.upstream_latency(Duration::from_millis(30));
        m.auth_failure("expired");
        let g = m.connection();
        let text = m.render();
        assert!(text.contains(
            "connectors_requests_total{connector=\"team-a/r\",mode=\"reverse\",operation=\"pull\",status=\"200\"} 2\n"
        ));
        assert!(
            text.contains("connectors_bytes_total{connector=\"team-a/r\",direction=\"out\"} 15\n")
        );
        assert!(text.contains("connectors_upstream_duration_seconds_bucket{le=\"0.025\"} 0\n"));
        assert!(text.contains("connectors_upstream_duration_seconds_bucket{le=\"0.05\"} 1\n"));
        assert!(text.contains("connectors_auth_failures_total{reason=\"expired\"} 1\n"));
        assert!(text.contains("connectors_open_connections 1\n"));
        assert!(text.contains("# TYPE connectors_requests_total counter\n"));
        assert!(text.contains("# TYPE connectors_upstream_duration_seconds histogram\n"));
        assert!(text.contains("# TYPE connectors_open_connections gauge\n"));
        assert!(text.contains("connectors_tunnel_bytes_total{direction=\"up\"} 0\n"));
        assert!(text.contains("connectors_certificate_cache_misses_total 0\n"));
        drop(g);
        assert!(m.render().contains("connectors_open_connections 0\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').expect("name value");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.request_done("a\"b\\c\nd", "reverse", "pull", 200, 0, 0);
        assert!(
            m.render()
                .contains("connectors_requests_total{connector=\"a\\\"b\\\\c\\nd\",")
        );
    }
}
