//! Command line and the request plan derived from it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use base64::Engine;
use clap::Parser;
use http::{HeaderName, HeaderValue, Method};
use percent_encoding::percent_decode_str;
use url::Url;

/// HTTP/1.1 load generator for the Connectors benchmarks (bench/run).
///
/// Keeps N connections busy (keep-alive) for a fixed time or number of requests and prints one JSON
/// object: requests, errors, req/s and latency percentiles (p50/p90/p99/p99.9, milliseconds).
/// With --new-conn every request opens a fresh connection (TCP, CONNECT and TLS included in its latency).
#[derive(Parser, Debug, Clone)]
#[command(name = "connectors-loadgen", version)]
pub struct Args {
    /// Target URL (http:// or https://). Through a proxy, https:// targets are tunnelled with CONNECT.
    #[arg(env = "LOADGEN_URL")]
    pub url: String,

    /// Request method: GET or HEAD.
    #[arg(short = 'm', long, default_value = "GET", env = "LOADGEN_METHOD")]
    pub method: String,

    /// Concurrent connections (each runs one request at a time).
    #[arg(short = 'c', long, default_value_t = 10, env = "LOADGEN_CONNECTIONS")]
    pub connections: usize,

    /// How long to run, e.g. 10s, 500ms (ignored when --requests is given).
    #[arg(short = 'd', long, default_value = "10s", value_parser = humantime::parse_duration, env = "LOADGEN_DURATION")]
    pub duration: Duration,

    /// Stop after this many requests in total instead of after --duration.
    #[arg(short = 'n', long, env = "LOADGEN_REQUESTS")]
    pub requests: Option<u64>,

    /// Extra request header "Name: value" (repeatable).
    #[arg(short = 'H', long = "header")]
    pub headers: Vec<String>,

    /// HTTP proxy, e.g. http://user:password@127.0.0.1:8080 (user and password percent-decoded and sent
    /// as Proxy-Authorization: Basic). http:// targets go in absolute form, https:// targets via CONNECT.
    #[arg(short = 'x', long, env = "LOADGEN_PROXY")]
    pub proxy: Option<String>,

    /// PEM file of CA certificates to trust for https:// targets (default: none, so it is required for https).
    #[arg(long, env = "LOADGEN_CACERT")]
    pub cacert: Option<PathBuf>,

    /// Connect to this address instead of resolving the target's host (direct requests only), like curl --resolve.
    #[arg(long, env = "LOADGEN_CONNECT_TO")]
    pub connect_to: Option<SocketAddr>,

    /// Open a new connection for every request (measures connection set-up: TCP, CONNECT, TLS handshake).
    #[arg(long, env = "LOADGEN_NEW_CONN")]
    pub new_conn: bool,

    /// Runtime worker threads of the load generator itself.
    #[arg(long, default_value_t = 1, env = "LOADGEN_THREADS")]
    pub threads: usize,

    /// Per-request timeout (a request that takes longer counts as an error).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration, env = "LOADGEN_TIMEOUT")]
    pub timeout: Duration,
}

/// How to reach the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// TCP to the target (or --connect-to); origin-form requests.
    Direct { addr: String },
    /// TCP to the proxy; absolute-form requests (http:// targets).
    ProxyAbsolute { proxy: String, auth: Option<String> },
    /// TCP to the proxy, CONNECT host:port, then TLS to the target; origin-form requests.
    ProxyConnect { proxy: String, auth: Option<String> },
}

/// Everything a worker needs, validated.
#[derive(Debug, Clone)]
pub struct Plan {
    pub method: Method,
    pub tls: bool,
    /// host:port of the target (Host header, CONNECT authority)
    pub authority: String,
    /// host name for TLS (SNI and certificate check)
    pub host: String,
    /// what goes on the request line
    pub request_target: String,
    pub route: Route,
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

pub fn parse_header(s: &str) -> Result<(HeaderName, HeaderValue)> {
    let (name, value) = s
        .split_once(':')
        .with_context(|| format!("header {s:?}: expected \"Name: value\""))?;
    let name = HeaderName::from_bytes(name.trim().as_bytes())
        .with_context(|| format!("header {s:?}: invalid name"))?;
    let value = HeaderValue::from_str(value.trim())
        .with_context(|| format!("header {s:?}: invalid value"))?;
    Ok((name, value))
}

/// `Basic base64(user:password)` from a URL's (percent-encoded) userinfo; None without a user.
pub fn basic_from_userinfo(u: &Url) -> Result<Option<String>> {
    if u.username().is_empty() && u.password().is_none() {
        return Ok(None);
    }
    let user = percent_decode_str(u.username())
        .decode_utf8()
        .context("proxy user is not UTF-8")?;
    let pass = percent_decode_str(u.password().unwrap_or(""))
        .decode_utf8()
        .context("proxy password is not UTF-8")?;
    let b64 = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
    Ok(Some(format!("Basic {b64}")))
}

fn host_port(u: &Url, what: &str) -> Result<(String, u16)> {
    let host = u
        .host_str()
        .with_context(|| format!("{what} {u} has no host"))?
        .to_string();
    let port = u
        .port_or_known_default()
        .with_context(|| format!("{what} {u} has no port"))?;
    Ok((host, port))
}

impl Args {
    pub fn plan(&self) -> Result<Plan> {
        let method = match self.method.to_ascii_uppercase().as_str() {
            "GET" => Method::GET,
            "HEAD" => Method::HEAD,
            m => bail!("--method {m}: only GET and HEAD are supported"),
        };
        if self.connections == 0 {
            bail!("--connections must be at least 1");
        }
        if self.threads == 0 {
            bail!("--threads must be at least 1");
        }
        let url = Url::parse(&self.url).with_context(|| format!("target URL {:?}", self.url))?;
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            s => bail!("target URL scheme {s}: use http or https"),
        };
        if tls && self.cacert.is_none() {
            bail!(
                "an https:// target needs --cacert (the CA that signed the server's or the proxy's certificate)"
            );
        }
        if !url.username().is_empty() || url.password().is_some() {
            bail!("put target credentials in a header (-H 'Authorization: …'), not in the URL");
        }
        let (host, port) = host_port(&url, "target URL")?;
        let authority = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        let origin_form = match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_string(),
        };
        let mut headers = Vec::new();
        for h in &self.headers {
            headers.push(parse_header(h)?);
        }
        let (route, request_target) = match &self.proxy {
            None => {
                let addr = match self.connect_to {
                    Some(a) => a.to_string(),
                    None => authority.clone(),
                };
                (Route::Direct { addr }, origin_form)
            }
            Some(p) => {
                if self.connect_to.is_some() {
                    bail!(
                        "--connect-to applies to direct requests only (the proxy resolves the target)"
                    );
                }
                let pu = Url::parse(p).with_context(|| format!("--proxy {p:?}"))?;
                if pu.scheme() != "http" {
                    bail!(
                        "--proxy {}: only http:// proxies are supported",
                        pu.scheme()
                    );
                }
                let auth = basic_from_userinfo(&pu)?;
                let (ph, pp) = host_port(&pu, "--proxy")?;
                let proxy = format!("{ph}:{pp}");
                if tls {
                    (Route::ProxyConnect { proxy, auth }, origin_form)
                } else {
                    let mut abs = url.clone();
                    abs.set_fragment(None);
                    (Route::ProxyAbsolute { proxy, auth }, abs.to_string())
                }
            }
        };
        Ok(Plan {
            method,
            tls,
            authority,
            host,
            request_target,
            route,
            headers,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Args {
        let mut all = vec!["connectors-loadgen"];
        all.extend_from_slice(v);
        Args::try_parse_from(all).expect("valid arguments")
    }

    #[test]
    fn defaults_and_flags() {
        let a = args(&["http://127.0.0.1:5000/v2/"]);
        assert_eq!(a.connections, 10);
        assert_eq!(a.duration, Duration::from_secs(10));
        assert_eq!(a.requests, None);
        assert!(!a.new_conn);
        let a = args(&[
            "-m",
            "head",
            "-c",
            "100",
            "-d",
            "1500ms",
            "-n",
            "7",
            "--new-conn",
            "http://h/x",
        ]);
        assert_eq!(a.connections, 100);
        assert_eq!(a.duration, Duration::from_millis(1500));
        assert_eq!(a.requests, Some(7));
        assert!(a.new_conn);
        assert_eq!(a.plan().expect("plan").method, Method::HEAD);
    }

    #[test]
    fn bad_arguments_are_refused() {
        assert!(Args::try_parse_from(["connectors-loadgen", "-c", "x", "http://h/"]).is_err());
        assert!(Args::try_parse_from(["connectors-loadgen", "-d", "ten", "http://h/"]).is_err());
        assert!(args(&["-m", "POST", "http://h/"]).plan().is_err());
        assert!(args(&["-c", "0", "http://h/"]).plan().is_err());
        assert!(args(&["ftp://h/"]).plan().is_err());
        assert!(
            args(&["https://h/"]).plan().is_err(),
            "https without --cacert"
        );
        assert!(args(&["http://u:p@h/"]).plan().is_err());
        assert!(args(&["-x", "https://p:1/", "http://h/"]).plan().is_err());
        assert!(
            args(&[
                "-x",
                "http://p:1/",
                "--connect-to",
                "127.0.0.1:1",
                "http://h/"
            ])
            .plan()
            .is_err()
        );
        assert!(args(&["-H", "no colon", "http://h/"]).plan().is_err());
    }

    #[test]
    fn headers() {
        let (n, v) =
            parse_header("Accept:  application/vnd.oci.image.manifest.v1+json ").expect("header");
        assert_eq!(n, http::header::ACCEPT);
        assert_eq!(v, "application/vnd.oci.image.manifest.v1+json");
        let (n, v) = parse_header("Authorization: Basic a2V5OnZhbA==").expect("header");
        assert_eq!(n, http::header::AUTHORIZATION);
        assert_eq!(v, "Basic a2V5OnZhbA==");
        assert!(parse_header(": x").is_err());
    }

    #[test]
    fn direct_plan() {
        let p = args(&["http://127.0.0.1:5000/v2/a/manifests/v1?x=1"])
            .plan()
            .expect("plan");
        assert!(!p.tls);
        assert_eq!(p.authority, "127.0.0.1:5000");
        assert_eq!(p.request_target, "/v2/a/manifests/v1?x=1");
        assert_eq!(
            p.route,
            Route::Direct {
                addr: "127.0.0.1:5000".into()
            }
        );
        let p = args(&[
            "--cacert",
            "/ca.pem",
            "--connect-to",
            "127.0.0.1:5443",
            "https://registry.test:5443/v2/",
        ])
        .plan()
        .expect("plan");
        assert!(p.tls);
        assert_eq!(p.host, "registry.test");
        assert_eq!(p.authority, "registry.test:5443");
        assert_eq!(
            p.route,
            Route::Direct {
                addr: "127.0.0.1:5443".into()
            }
        );
    }

    #[test]
    fn proxy_plans_decode_the_user() {
        // the forward proxy's user is "<ns>/<connector>", percent-encoded in the URL
        let p = args(&[
            "-x",
            "http://bench%2Freg:tok@127.0.0.1:9000",
            "--cacert",
            "/ca",
            "https://registry.test:5443/v2/",
        ])
        .plan()
        .expect("plan");
        let want = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("bench/reg:tok")
        );
        assert_eq!(
            p.route,
            Route::ProxyConnect {
                proxy: "127.0.0.1:9000".into(),
                auth: Some(want)
            }
        );
        assert_eq!(p.request_target, "/v2/");
        let p = args(&["-x", "http://127.0.0.1:9000", "http://fake.test:81/v2/x"])
            .plan()
            .expect("plan");
        assert_eq!(
            p.route,
            Route::ProxyAbsolute {
                proxy: "127.0.0.1:9000".into(),
                auth: None
            }
        );
        assert_eq!(p.request_target, "http://fake.test:81/v2/x");
        assert_eq!(p.authority, "fake.test:81");
    }
}
