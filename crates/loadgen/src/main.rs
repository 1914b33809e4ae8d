//! connectors-loadgen: the HTTP/1.1 load generator of bench/run. See `--help` and bench/README.md.
#![forbid(unsafe_code)]

mod args;
mod hist;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use bytes::Bytes;
use clap::Parser;
use http::header::{HOST, PROXY_AUTHORIZATION};
use http::{HeaderValue, Request};
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use args::{Args, Plan, Route};
use hist::Histogram;

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Shared {
    plan: Plan,
    tls: Option<TlsConnector>,
    /// requests left to start (request-count mode); u64::MAX in duration mode
    budget: AtomicU64,
    deadline: Option<Instant>,
    timeout: Duration,
    new_conn: bool,
}

#[derive(Default)]
struct Tally {
    hist: Histogram,
    errors: u64,
    connections: u64,
    bytes: u64,
    statuses: BTreeMap<u16, u64>,
    first_error: Option<String>,
}

impl Tally {
    fn error(&mut self, e: impl std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(e.to_string());
        }
    }
}

fn tls_connector(path: &std::path::Path) -> Result<TlsConnector> {
    let mut roots = rustls::RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("read --cacert {}", path.display()))?;
    for c in certs {
        let c = c.with_context(|| format!("parse --cacert {}", path.display()))?;
        roots
            .add(c)
            .with_context(|| format!("--cacert {}: unusable certificate", path.display()))?;
    }
    if roots.is_empty() {
        bail!("--cacert {}: no certificates in it", path.display());
    }
    let mut cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS protocol versions")?
    .with_root_certificates(roots)
    .with_no_client_auth();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(TlsConnector::from(Arc::new(cfg)))
}

/// CONNECT through the proxy; returns the tunnel once the proxy answered 2xx.
async fn connect_tunnel(
    mut s: TcpStream,
    authority: &str,
    auth: Option<&str>,
) -> Result<TcpStream> {
    let mut req = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n");
    if let Some(a) = auth {
        req.push_str(&format!("Proxy-Authorization: {a}\r\n"));
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).await.context("send CONNECT")?;
    // read the response head byte-wise-ish: stop exactly at the blank line so no tunnel bytes are eaten
    let mut head = Vec::with_capacity(256);
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        if head.len() > 16 * 1024 {
            bail!("CONNECT response head longer than 16 KiB");
        }
        if s.read(&mut b).await.context("read CONNECT response")? == 0 {
            bail!("proxy closed the connection during CONNECT");
        }
        head.push(b[0]);
    }
    let line = String::from_utf8_lossy(&head);
    let status = line.split_whitespace().nth(1).unwrap_or("");
    if !status.starts_with('2') {
        bail!(
            "CONNECT {authority}: proxy answered {}",
            line.lines().next().unwrap_or("")
        );
    }
    Ok(s)
}

async fn open(sh: &Shared) -> Result<SendRequest<Empty<Bytes>>> {
    let plan = &sh.plan;
    let (tcp_addr, tunnel_auth) = match &plan.route {
        Route::Direct { addr } => (addr.as_str(), None),
        Route::ProxyAbsolute { proxy, .. } => (proxy.as_str(), None),
        Route::ProxyConnect { proxy, auth } => (proxy.as_str(), Some(auth.as_deref())),
    };
    let tcp = TcpStream::connect(tcp_addr)
        .await
        .with_context(|| format!("connect {tcp_addr}"))?;
    tcp.set_nodelay(true).context("TCP_NODELAY")?;
    let tcp = match tunnel_auth {
        Some(auth) => connect_tunnel(tcp, &plan.authority, auth).await?,
        None => tcp,
    };
    let io: Box<dyn Io> = match &sh.tls {
        Some(tls) => {
            let name = ServerName::try_from(plan.host.clone()).context("TLS server name")?;
            Box::new(tls.connect(name, tcp).await.context("TLS handshake")?)
        }
        None => Box::new(tcp),
    };
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .context("HTTP/1.1 handshake")?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(sender)
}

fn build_request(plan: &Plan) -> Result<Request<Empty<Bytes>>> {
    let mut b = Request::builder()
        .method(plan.method.clone())
        .uri(plan.request_target.as_str());
    b = b.header(
        HOST,
        HeaderValue::from_str(&plan.authority).context("Host header")?,
    );
    if let Route::ProxyAbsolute { auth: Some(a), .. } = &plan.route {
        b = b.header(
            PROXY_AUTHORIZATION,
            HeaderValue::from_str(a).context("Proxy-Authorization header")?,
        );
    }
    for (n, v) in &plan.headers {
        b = b.header(n, v);
    }
    b.body(Empty::new()).context("build request")
}

/// One request on `sender`; returns (status, body bytes).
async fn one(sender: &mut SendRequest<Empty<Bytes>>, plan: &Plan) -> Result<(u16, u64)> {
    sender.ready().await.context("connection not ready")?;
    let resp = sender
        .send_request(build_request(plan)?)
        .await
        .context("request")?;
    let status = resp.status().as_u16();
    let mut body = resp.into_body();
    let mut n = 0u64;
    while let Some(frame) = body.frame().await {
        if let Ok(d) = frame.context("response body")?.into_data() {
            n += d.len() as u64;
        }
    }
    Ok((status, n))
}

fn take_ticket(sh: &Shared) -> bool {
    if let Some(d) = sh.deadline
        && Instant::now() >= d
    {
        return false;
    }
    sh.budget
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |b| b.checked_sub(1))
        .is_ok()
}

async fn worker(sh: Arc<Shared>) -> Tally {
    let mut t = Tally::default();
    let mut conn: Option<SendRequest<Empty<Bytes>>> = None;
    while take_ticket(&sh) {
        let start = Instant::now();
        let attempt = async {
            if conn.as_ref().is_none_or(|c| c.is_closed()) || sh.new_conn {
                conn = Some(open(&sh).await?);
                t.connections += 1;
            }
            match conn.as_mut() {
                Some(c) => one(c, &sh.plan).await,
                None => bail!("no connection"),
            }
        };
        match tokio::time::timeout(sh.timeout, attempt).await {
            Ok(Ok((status, n))) => {
                t.hist
                    .record(start.elapsed().as_nanos().min(u128::from(u64::MAX)) as u64);
                t.bytes += n;
                *t.statuses.entry(status).or_default() += 1;
                if status >= 400 {
                    t.error(format!("HTTP status {status}"));
                }
            }
            Ok(Err(e)) => {
                t.error(format!("{e:#}"));
                conn = None;
            }
            Err(_) => {
                t.error(format!("timeout after {:?}", sh.timeout));
                conn = None;
            }
        }
        if sh.new_conn {
            conn = None;
        }
    }
    t
}

fn ms(ns: u64) -> f64 {
    (ns as f64 / 1e6 * 1000.0).round() / 1000.0
}

async fn run(a: Args) -> Result<serde_json::Value> {
    let plan = a.plan()?;
    let tls = match (&a.cacert, plan.tls) {
        (Some(p), true) => Some(tls_connector(p)?),
        _ => None,
    };
    let sh = Arc::new(Shared {
        plan,
        tls,
        budget: AtomicU64::new(a.requests.unwrap_or(u64::MAX)),
        deadline: if a.requests.is_some() {
            None
        } else {
            Some(Instant::now() + a.duration)
        },
        timeout: a.timeout,
        new_conn: a.new_conn,
    });
    let start = Instant::now();
    let tasks: Vec<_> = (0..a.connections)
        .map(|_| tokio::spawn(worker(sh.clone())))
        .collect();
    let mut all = Tally::default();
    for task in tasks {
        let t = task.await.context("worker panicked")?;
        all.hist.merge(&t.hist);
        all.errors += t.errors;
        all.connections += t.connections;
        all.bytes += t.bytes;
        for (s, n) in t.statuses {
            *all.statuses.entry(s).or_default() += n;
        }
        if all.first_error.is_none() {
            all.first_error = t.first_error;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let h = &all.hist;
    let statuses: serde_json::Map<String, serde_json::Value> = all
        .statuses
        .iter()
        .map(|(s, n)| (s.to_string(), (*n).into()))
        .collect();
    Ok(serde_json::json!({
        "method": sh.plan.method.as_str(),
        "connections": a.connections,
        "new_conn": a.new_conn,
        "duration_s": (secs * 1000.0).round() / 1000.0,
        "requests": h.len(),
        "errors": all.errors,
        "first_error": all.first_error,
        "connections_opened": all.connections,
        "bytes": all.bytes,
        "rps": if secs > 0.0 { (h.len() as f64 / secs * 10.0).round() / 10.0 } else { 0.0 },
        "statuses": statuses,
        "latency_ms": {
            "mean": ms(h.mean() as u64),
            "p50": ms(h.percentile(50.0)),
            "p90": ms(h.percentile(90.0)),
            "p99": ms(h.percentile(99.0)),
            "p999": ms(h.percentile(99.9)),
            "max": ms(h.max()),
        },
    }))
}

fn main() -> Result<()> {
    let a = Args::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(a.threads.max(1))
        .enable_all()
        .build()
        .context("start the tokio runtime")?;
    let out = rt.block_on(run(a))?;
    println!("{out}");
    Ok(())
}
