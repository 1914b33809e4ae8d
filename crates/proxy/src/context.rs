//! The per-request context ([`RequestContext`]) that the phases ([`crate::phases`]) fill in, and the response
//! tail that ends every request of both modes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use connectors_identity::Principal;
use http::{Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Body;

use crate::body::{Counted, ProxyBody};
use crate::error::{ProxyError, Side};

/// What the proxy knows about one request, filled in by each phase as it learns it: who is calling, which
/// connector, repository and operation, what moved and how long the upstream took. Its last step,
/// [`RequestContext::respond`], writes one access log line, the request's metrics and its audit record when
/// the response body ends (or the client goes away). Never holds a credential or a token.
#[derive(Default)]
pub(crate) struct RequestContext {
    pub method: String,
    pub path: String,
    pub principal: String,
    /// The pod the principal stands for, when the authenticator says.
    pub pod: Option<String>,
    pub connector: String,
    /// The catalog knows `connector` (only then is it a metrics label).
    pub known: bool,
    pub repository: String,
    /// The tag or digest the request names.
    pub reference: String,
    pub operation: &'static str,
    /// Forward mode (CONNECT, intercepted, absolute-form) rather than reverse.
    pub forward: bool,
    pub upstream_ms: u64,
    /// Request body bytes: counted here when held, in `bytes_in_stream` when streamed.
    pub bytes_in: u64,
    pub bytes_in_stream: Option<Arc<AtomicU64>>,
    /// Why the caller was refused, when it was (a [`crate::metrics::AUTH_REASONS`] entry).
    pub auth_failure: Option<&'static str>,
    pub ops: Option<crate::Ops>,
    pub _in_flight: Option<crate::metrics::GaugeGuard>,
    /// When the request arrived.
    pub started: Option<Instant>,
}

impl RequestContext {
    /// The context of a request, counted as in flight until it is written.
    pub(crate) fn start(ops: &crate::Ops, method: String, path: String) -> Self {
        RequestContext {
            method,
            path,
            _in_flight: Some(ops.metrics.request()),
            ops: Some(ops.clone()),
            started: Some(Instant::now()),
            ..RequestContext::default()
        }
    }

    /// The last phase, the one response tail of both modes: an error becomes its response (and a warning
    /// with its cause chain when it is not the client's), and the log line, metrics and audit record are
    /// written when the response body ends.
    pub(crate) fn respond(
        self,
        result: Result<Response<ProxyBody>, ProxyError>,
    ) -> Response<ProxyBody> {
        let response = result.unwrap_or_else(|e| {
            if e.side() != Side::Client {
                tracing::warn!(connector = %self.connector, side = ?e.side(), error = %e.chain(), "request failed");
            }
            e.into_response()
        });
        self.finish(response)
    }

    pub(crate) fn set_principal(&mut self, principal: &Principal) {
        self.principal = principal.subject.clone();
        self.pod = principal
            .extra
            .get("authentication.kubernetes.io/pod-name")
            .and_then(|v| v.first())
            .cloned();
    }

    /// The response tail for a response the proxy wrote itself (the splice fast path, [`crate::splice`]):
    /// the same log line, metrics and audit record, with the body bytes the client was sent.
    pub(crate) fn record(self, status: StatusCode, bytes: u64, complete: bool) {
        let started = self.started.unwrap_or_else(Instant::now);
        self.write(status, bytes, complete, started);
    }

    fn finish(self, response: Response<ProxyBody>) -> Response<ProxyBody> {
        let started = self.started.unwrap_or_else(Instant::now);
        let status = response.status();
        if response.body().is_end_stream() || self.method == "HEAD" {
            self.write(status, 0, true, started);
            return response;
        }
        let (parts, body) = response.into_parts();
        let counted = Counted::new(body, move |bytes, complete| {
            self.write(status, bytes, complete, started)
        });
        Response::from_parts(parts, counted.boxed_unsync())
    }

    fn write(&self, status: StatusCode, bytes: u64, complete: bool, started: Instant) {
        let bytes_in = self.bytes_in
            + self
                .bytes_in_stream
                .as_ref()
                .map_or(0, |n| n.load(Ordering::Relaxed));
        let total_ms = started.elapsed().as_millis() as u64;
        let mode = if self.forward { "forward" } else { "reverse" };
        let operation = crate::metrics::operation(&self.method, self.operation);
        tracing::info!(
            target: "connectors::access",
            mode,
            method = %self.method,
            path = %self.path,
            status = status.as_u16(),
            connector = %self.connector,
            repository = %self.repository,
            reference = %self.reference,
            operation,
            principal = %self.principal,
            bytes_in,
            bytes,
            complete,
            upstream_ms = self.upstream_ms,
            total_ms,
            "request"
        );
        let Some(ops) = &self.ops else { return };
        let connector = if self.known {
            self.connector.as_str()
        } else {
            ""
        };
        ops.metrics
            .request_done(connector, mode, operation, status.as_u16(), bytes_in, bytes);
        if let Some(reason) = self.auth_failure {
            ops.metrics.auth_failure(reason);
        }
        if let Some(audit) = &ops.audit
            && (!self.repository.is_empty() || matches!(operation, "ping" | "intercept"))
        {
            audit.write(&crate::audit::AuditRecord {
                time: crate::audit::timestamp(std::time::SystemTime::now()),
                mode,
                principal: &self.principal,
                pod: self.pod.as_deref(),
                connector: &self.connector,
                repository: &self.repository,
                reference: &self.reference,
                operation,
                method: &self.method,
                status: status.as_u16(),
                bytes_in,
                bytes_out: bytes,
                complete,
                duration_ms: total_ms,
            });
        }
    }
}
