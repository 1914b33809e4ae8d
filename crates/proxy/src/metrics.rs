//! Counters, gauges and a histogram for the admin listener's `/metrics`, in the Prometheus text
//! exposition format (version 0.0.4).
//!
//! The hot path only touches atomics: a request's series is found under two read locks (connector,
//! then mode/operation/status) and created once, the first time that combination is seen. Labels are
//! bounded: the connector label is empty unless the catalog knows the connector, operations are a
//! fixed set and statuses are HTTP codes.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};
use std::time::Duration;

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

#[derive(Default)]
struct ConnectorSeries {
    requests: RwLock<HashMap<(&'static str, &'static str, u16), AtomicU64>>,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
}

/// Everything `/metrics` reports, shared by all worker threads.
pub struct Metrics {
    connectors: RwLock<HashMap<String, Arc<ConnectorSeries>>>,
    latency_buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    latency_count: AtomicU64,
    latency_sum_us: AtomicU64,
    auth_failures: [AtomicU64; AUTH_REASONS.len()],
    open_connections: AtomicI64,
    in_flight: AtomicI64,
    open_tunnels: AtomicI64,
    tunnel_bytes_up: AtomicU64,
    tunnel_bytes_down: AtomicU64,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            connectors: RwLock::default(),
            latency_buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            latency_count: AtomicU64::new(0),
            latency_sum_us: AtomicU64::new(0),
            auth_failures: std::array::from_fn(|_| AtomicU64::new(0)),
            open_connections: AtomicI64::new(0),
            in_flight: AtomicI64::new(0),
            open_tunnels: AtomicI64::new(0),
            tunnel_bytes_up: AtomicU64::new(0),
            tunnel_bytes_down: AtomicU64::new(0),
        }
    }
}

/// Decrements a gauge when dropped.
pub struct GaugeGuard {
    metrics: Arc<Metrics>,
    gauge: Gauge,
}

#[derive(Clone, Copy)]
enum Gauge {
    Connections,
    InFlight,
    Tunnels,
}

impl Metrics {
    pub fn new() -> Arc<Self> {
        Arc::default()
    }

    fn gauge(&self, g: Gauge) -> &AtomicI64 {
        match g {
            Gauge::Connections => &self.open_connections,
            Gauge::InFlight => &self.in_flight,
            Gauge::Tunnels => &self.open_tunnels,
        }
    }

    fn enter(self: &Arc<Self>, gauge: Gauge) -> GaugeGuard {
        self.gauge(gauge).fetch_add(1, Relaxed);
        GaugeGuard {
            metrics: self.clone(),
            gauge,
        }
    }

    /// A client connection is open until the guard drops.
    pub fn connection(self: &Arc<Self>) -> GaugeGuard {
        self.enter(Gauge::Connections)
    }

    /// A request is in flight (its response body included) until the guard drops.
    pub fn request(self: &Arc<Self>) -> GaugeGuard {
        self.enter(Gauge::InFlight)
    }

    /// A tunnel or an intercepted connection is open until the guard drops.
    pub fn tunnel(self: &Arc<Self>) -> GaugeGuard {
        self.enter(Gauge::Tunnels)
    }

    /// Open client connections, requests in flight, open tunnels and intercepted connections.
    pub fn open(&self) -> (i64, i64, i64) {
        (
            self.open_connections.load(Relaxed),
            self.in_flight.load(Relaxed),
            self.open_tunnels.load(Relaxed),
        )
    }

    fn series(&self, connector: &str) -> Arc<ConnectorSeries> {
        if let Some(s) = self
            .connectors
            .read()
            .ok()
            .and_then(|m| m.get(connector).cloned())
        {
            return s;
        }
        let mut map = self.connectors.write().unwrap_or_else(|e| e.into_inner());
        map.entry(connector.to_owned()).or_default().clone()
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
        let series = self.series(connector);
        series.bytes_in.fetch_add(bytes_in, Relaxed);
        series.bytes_out.fetch_add(bytes_out, Relaxed);
        let key = (mode, operation, status);
        if let Ok(map) = series.requests.read()
            && let Some(c) = map.get(&key)
        {
            c.fetch_add(1, Relaxed);
            return;
        }
        let mut map = series.requests.write().unwrap_or_else(|e| e.into_inner());
        map.entry(key).or_default().fetch_add(1, Relaxed);
    }

    /// Time from sending a request upstream to its response headers.
    pub fn upstream_latency(&self, elapsed: Duration) {
        let secs = elapsed.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Relaxed);
            }
        }
        self.latency_count.fetch_add(1, Relaxed);
        self.latency_sum_us
            .fetch_add(elapsed.as_micros() as u64, Relaxed);
    }

    /// A caller refused for `reason` (one of [`AUTH_REASONS`]).
    pub fn auth_failure(&self, reason: &str) {
        if let Some(i) = AUTH_REASONS.iter().position(|r| *r == reason) {
            self.auth_failures[i].fetch_add(1, Relaxed);
        }
    }

    /// Bytes a closed tunnel carried.
    pub fn tunnel_bytes(&self, up: u64, down: u64) {
        self.tunnel_bytes_up.fetch_add(up, Relaxed);
        self.tunnel_bytes_down.fetch_add(down, Relaxed);
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(4096);
        let mut connectors: Vec<(String, Arc<ConnectorSeries>)> = self
            .connectors
            .read()
            .map(|m| m.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
            .unwrap_or_default();
        connectors.sort_by(|a, b| a.0.cmp(&b.0));

        out.push_str("# HELP connectors_requests_total Requests answered, by connector, mode, operation and HTTP status.\n");
        out.push_str("# TYPE connectors_requests_total counter\n");
        for (name, s) in &connectors {
            let mut rows: Vec<_> = s
                .requests
                .read()
                .map(|m| m.iter().map(|(k, v)| (*k, v.load(Relaxed))).collect())
                .unwrap_or_default();
            rows.sort();
            for ((mode, op, status), n) in rows {
                let _ = writeln!(
                    out,
                    "connectors_requests_total{{connector=\"{}\",mode=\"{mode}\",operation=\"{op}\",status=\"{status}\"}} {n}",
                    escape(name)
                );
            }
        }
        out.push_str("# HELP connectors_bytes_total Body bytes of requests (in, from clients) and responses (out, to clients), by connector.\n");
        out.push_str("# TYPE connectors_bytes_total counter\n");
        for (name, s) in &connectors {
            let name = escape(name);
            let _ = writeln!(
                out,
                "connectors_bytes_total{{connector=\"{name}\",direction=\"in\"}} {}",
                s.bytes_in.load(Relaxed)
            );
            let _ = writeln!(
                out,
                "connectors_bytes_total{{connector=\"{name}\",direction=\"out\"}} {}",
                s.bytes_out.load(Relaxed)
            );
        }
        out.push_str("# HELP connectors_tunnel_bytes_total Bytes carried by tunnels to destinations that are not connectors.\n");
        out.push_str("# TYPE connectors_tunnel_bytes_total counter\n");
        let _ = writeln!(
            out,
            "connectors_tunnel_bytes_total{{direction=\"up\"}} {}",
            self.tunnel_bytes_up.load(Relaxed)
        );
        let _ = writeln!(
            out,
            "connectors_tunnel_bytes_total{{direction=\"down\"}} {}",
            self.tunnel_bytes_down.load(Relaxed)
        );

        out.push_str("# HELP connectors_upstream_duration_seconds Time from sending a request to the registry to its response headers (token fetches and one retry included).\n");
        out.push_str("# TYPE connectors_upstream_duration_seconds histogram\n");
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.latency_buckets) {
            let _ = writeln!(
                out,
                "connectors_upstream_duration_seconds_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Relaxed)
            );
        }
        let count = self.latency_count.load(Relaxed);
        let _ = writeln!(
            out,
            "connectors_upstream_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
        );
        let _ = writeln!(
            out,
            "connectors_upstream_duration_seconds_sum {}",
            self.latency_sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "connectors_upstream_duration_seconds_count {count}");

        out.push_str("# HELP connectors_auth_failures_total Callers turned away, by reason.\n");
        out.push_str("# TYPE connectors_auth_failures_total counter\n");
        for (reason, n) in AUTH_REASONS.iter().zip(&self.auth_failures) {
            let _ = writeln!(
                out,
                "connectors_auth_failures_total{{reason=\"{reason}\"}} {}",
                n.load(Relaxed)
            );
        }

        let (hits, misses) = connectors_registry::token::cache_stats();
        counter(
            &mut out,
            "connectors_token_cache_hits_total",
            "Registry tokens served from the cache.",
            hits,
        );
        counter(
            &mut out,
            "connectors_token_cache_misses_total",
            "Registry tokens not in the cache (fetched, or waited for while another request fetched them).",
            misses,
        );
        let (hits, misses) = crate::ca::cache_stats();
        counter(
            &mut out,
            "connectors_certificate_cache_hits_total",
            "Forward mode: intercepted connections served with a cached leaf certificate.",
            hits,
        );
        counter(
            &mut out,
            "connectors_certificate_cache_misses_total",
            "Forward mode: leaf certificates minted.",
            misses,
        );

        gauge(
            &mut out,
            "connectors_open_connections",
            "Client connections open now.",
            self.open_connections.load(Relaxed),
        );
        gauge(
            &mut out,
            "connectors_requests_in_flight",
            "Requests being served now (until their response body ends).",
            self.in_flight.load(Relaxed),
        );
        gauge(
            &mut out,
            "connectors_open_tunnels",
            "Forward mode: tunnels and intercepted connections open now.",
            self.open_tunnels.load(Relaxed),
        );
        out
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.metrics.gauge(self.gauge).fetch_sub(1, Relaxed);
    }
}

fn counter(out: &mut String, name: &str, help: &str, value: u64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}"
    );
}

fn gauge(out: &mut String, name: &str, help: &str, value: i64) {
    let _ = writeln!(
        out,
        "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
    );
}

/// A label value as the exposition format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
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
        drop(g);
        assert!(m.render().contains("connectors_open_connections 0\n"));
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').expect("name value");
            assert!(value.parse::<f64>().is_ok(), "{line}");
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
