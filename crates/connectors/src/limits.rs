//! `connectors up` flags for the proxy's request limits and timeouts (defaults and reasons in
//! `connectors_proxy::limits` and docs/security.md).

use std::time::Duration;

use clap::Args;
use clap::builder::TypedValueParser as _;
use connectors_proxy::limits::{
    DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTORS_PER_REQUEST, DEFAULT_MAX_HEADER_BYTES,
    DEFAULT_MAX_HEADERS, DEFAULT_MAX_URI_BYTES, Limits,
};

#[derive(Args, Clone)]
#[command(next_help_heading = "Limits")]
pub struct LimitArgs {
    /// Largest request line plus headers, in bytes; larger requests get 431 (up to twice this, with a
    /// message saying which limit; beyond that hyper closes the connection with a bare 431).
    #[arg(long, env = "CONNECTORS_MAX_HEADER_BYTES", default_value_t = DEFAULT_MAX_HEADER_BYTES, value_parser = clap::value_parser!(u32).range(8192..).map(|v| v as usize))]
    max_header_bytes: usize,
    /// Most header fields in one request; more get 431.
    #[arg(long, env = "CONNECTORS_MAX_HEADERS", default_value_t = DEFAULT_MAX_HEADERS, value_parser = clap::value_parser!(u32).range(8..).map(|v| v as usize))]
    max_headers: usize,
    /// Longest request target (path and query), in bytes; longer ones get 414.
    #[arg(long, env = "CONNECTORS_MAX_URI_BYTES", default_value_t = DEFAULT_MAX_URI_BYTES, value_parser = clap::value_parser!(u32).range(256..).map(|v| v as usize))]
    max_uri_bytes: usize,
    /// Longest forward-mode Proxy-Authorization value, in bytes; longer ones get 407.
    #[arg(long, env = "CONNECTORS_MAX_PROXY_AUTHORIZATION_BYTES", default_value_t = connectors_identity::MAX_CREDENTIALS_LEN, value_parser = clap::value_parser!(u32).range(256..).map(|v| v as usize))]
    max_proxy_authorization_bytes: usize,
    /// Most connectors one forward-proxy URL (`http://<ns>%2F<a>,<ns>%2F<b>…:<token>@proxy`) may name; more
    /// get 400.
    #[arg(long, env = "CONNECTORS_MAX_CONNECTORS_PER_REQUEST", default_value_t = DEFAULT_MAX_CONNECTORS_PER_REQUEST, value_parser = clap::value_parser!(u32).range(1..).map(|v| v as usize))]
    max_connectors_per_request: usize,
    /// Most client connections open at once (all threads together); one more gets 503 with Retry-After
    /// and is closed.
    #[arg(long, env = "CONNECTORS_MAX_CONNECTIONS", default_value_t = DEFAULT_MAX_CONNECTIONS, value_parser = clap::value_parser!(u32).range(1..).map(|v| v as usize))]
    max_connections: usize,
    /// How long a client may take to send a request's headers, and how long an idle kept-alive connection
    /// stays open; then the connection is closed (slowloris).
    #[arg(long, env = "CONNECTORS_HEADER_READ_TIMEOUT", default_value = "30s", value_parser = humantime::parse_duration)]
    header_read_timeout: Duration,
    /// How long an upload may send no byte, or a client leave a response unread, before it is given up.
    /// Only silence counts: a slow transfer that keeps moving is never cut.
    #[arg(long, env = "CONNECTORS_IDLE_TIMEOUT", default_value = "60s", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
}

impl LimitArgs {
    pub fn limits(&self) -> Limits {
        let mut limits = Limits::default();
        limits.max_header_bytes = self.max_header_bytes;
        limits.max_headers = self.max_headers;
        limits.max_uri_bytes = self.max_uri_bytes;
        limits.max_proxy_authorization_bytes = self.max_proxy_authorization_bytes;
        limits.max_connectors_per_request = self.max_connectors_per_request;
        limits.max_connections = self.max_connections;
        limits.header_read_timeout = self.header_read_timeout;
        limits.idle_timeout = self.idle_timeout;
        limits
    }
}
