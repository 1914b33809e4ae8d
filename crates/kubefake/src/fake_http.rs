//! HTTP routing of the fake API server.
// Error responses are built once per request and returned at once; boxing them buys nothing.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::{broadcast, mpsc};

use crate::merge::merge_patch;
use crate::store::{Event, Replay, rfc3339_now};
use crate::{FAKE_RESOURCES, FakeResource, State};

type Body = BoxBody<Bytes, Infallible>;

pub(crate) async fn serve(listener: TcpListener, state: Arc<State>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        if *state.down.borrow() {
            // "Down": the connection is closed at once, as by a server that is not there.
            drop(stream);
            continue;
        }
        let state = Arc::clone(&state);
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let state = Arc::clone(&state);
                async move {
                    let resp = handle(req, state).await;
                    if resp.status() == StatusCode::SERVICE_UNAVAILABLE {
                        // A request on a connection opened before the switch: abort the connection too, so that
                        // clients see a network error (which kube-rs does not retry) rather than a 503.
                        return Err(FakeDown);
                    }
                    Ok(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

#[derive(Debug)]
struct FakeDown;

impl std::fmt::Display for FakeDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("the fake API server is switched down")
    }
}

impl std::error::Error for FakeDown {}

fn full(status: StatusCode, body: &Value) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn status_body(code: StatusCode, reason: &str, message: &str) -> Value {
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
        "message": message, "reason": reason, "code": code.as_u16(),
    })
}

fn fail(code: StatusCode, reason: &str, message: impl AsRef<str>) -> Response<Body> {
    full(code, &status_body(code, reason, message.as_ref()))
}

/// Where a request goes.
struct Target {
    res: &'static FakeResource,
    namespace: Option<String>,
    name: Option<String>,
    subresource: Option<String>,
}

fn route(path: &str) -> Result<Target, Response<Body>> {
    let segs: Vec<String> = path
        .trim_matches('/')
        .split('/')
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let not_found = || {
        fail(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("the fake API server does not serve {path}"),
        )
    };
    let (group, version, rest) = match segs.first().map(String::as_str) {
        Some("api") if segs.len() >= 3 => ("", segs[1].as_str(), &segs[2..]),
        Some("apis") if segs.len() >= 4 => (segs[1].as_str(), segs[2].as_str(), &segs[3..]),
        _ => return Err(not_found()),
    };
    let (namespace, rest) = if rest.len() >= 3 && rest[0] == "namespaces" {
        (Some(rest[1].clone()), &rest[2..])
    } else {
        (None, rest)
    };
    let plural = rest[0].as_str();
    let res = FAKE_RESOURCES
        .iter()
        .chain(REVIEWS)
        .find(|r| r.group == group && r.version == version && r.plural == plural)
        .ok_or_else(not_found)?;
    if rest.len() > 3 || (!res.namespaced && namespace.is_some()) {
        return Err(not_found());
    }
    Ok(Target {
        res,
        namespace,
        name: rest.get(1).cloned(),
        subresource: rest.get(2).cloned(),
    })
}

const REVIEWS: &[FakeResource] = &[
    FakeResource {
        group: "authentication.k8s.io",
        version: "v1",
        plural: "tokenreviews",
        kind: "TokenReview",
        namespaced: false,
        status_subresource: false,
    },
    FakeResource {
        group: "authorization.k8s.io",
        version: "v1",
        plural: "subjectaccessreviews",
        kind: "SubjectAccessReview",
        namespaced: false,
        status_subresource: false,
    },
];

fn query(req: &Request<Incoming>) -> Vec<(String, String)> {
    url::form_urlencoded::parse(req.uri().query().unwrap_or_default().as_bytes())
        .into_owned()
        .collect()
}

fn param<'a>(q: &'a [(String, String)], key: &str) -> Option<&'a str> {
    q.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
}

async fn handle(req: Request<Incoming>, state: Arc<State>) -> Response<Body> {
    let path = req.uri().path().to_owned();
    let q = query(&req);
    let target = if path == "/version" {
        None
    } else {
        match route(&path) {
            Ok(t) => Some(t),
            Err(resp) => {
                state.count(format!("{} {path}", req.method()));
                return resp;
            }
        }
    };
    let content_type = req
        .headers()
        .get(hyper::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let method = req.method().clone();
    let verb = match (&method, &target) {
        (_, None) => "get",
        (&Method::GET, Some(t)) if t.name.is_none() => {
            if matches!(param(&q, "watch"), Some("true" | "1")) {
                "watch"
            } else {
                "list"
            }
        }
        (&Method::GET, _) => "get",
        (&Method::POST, _) => "create",
        (&Method::PUT, _) => "update",
        (&Method::PATCH, _) if content_type.starts_with("application/apply-patch") => "apply",
        (&Method::PATCH, _) => "patch",
        (&Method::DELETE, _) => "delete",
        _ => "unknown",
    };
    let call = match &target {
        None => "get version".to_owned(),
        Some(t) => match &t.subresource {
            Some(sub) => format!("{verb} {}/{sub}", t.res.plural),
            None => format!("{verb} {}", t.res.plural),
        },
    };
    state.count(call.clone());
    if *state.down.borrow() {
        return fail(
            StatusCode::SERVICE_UNAVAILABLE,
            "ServiceUnavailable",
            "the fake API server is switched down",
        );
    }
    if state.forbidden().contains(&call) {
        return fail(
            StatusCode::FORBIDDEN,
            "Forbidden",
            format!("the fake API server forbids {call:?} (FakeHandle::forbid_call)"),
        );
    }
    let Some(t) = target else {
        return full(
            StatusCode::OK,
            &json!({"major": "1", "minor": "33", "gitVersion": "v1.33.0-fake", "platform": "linux/amd64"}),
        );
    };
    if let Some(sub) = &t.subresource
        && !(sub == "status" && t.res.status_subresource)
    {
        return fail(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!(
                "the fake API server does not serve the {sub} subresource of {}",
                t.res.plural
            ),
        );
    }
    let body = match req.into_body().collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return fail(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("reading the body: {e}"),
            );
        }
    };
    match verb {
        "list" => list(&state, &t, &q),
        "watch" => watch(&state, &t, &q),
        "get" => get(&state, &t),
        "create" => create(&state, &t, &body),
        "update" => update(&state, &t, &body),
        "patch" | "apply" => patch(&state, &t, &body, &content_type, &q),
        "delete" => delete(&state, &t),
        _ => fail(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "method not allowed",
        ),
    }
}

fn ns_key(t: &Target) -> String {
    if t.res.namespaced {
        t.namespace.clone().unwrap_or_default()
    } else {
        String::new()
    }
}

fn not_found(t: &Target) -> Response<Body> {
    let name = t.name.as_deref().unwrap_or_default();
    fail(
        StatusCode::NOT_FOUND,
        "NotFound",
        format!("{}.{} \"{name}\" not found", t.res.plural, t.res.group).replace(". \"", " \""),
    )
}

/// Label and field selectors, as far as the fake understands them.
struct Selectors {
    labels: Vec<(String, Option<String>, bool)>,
    fields: Vec<(String, String, bool)>,
}

impl Selectors {
    fn parse(q: &[(String, String)]) -> Result<Self, Response<Body>> {
        let split = |s: &str| -> Vec<(String, Option<String>, bool)> {
            s.split(',')
                .filter(|p| !p.trim().is_empty())
                .map(|p| {
                    if let Some((k, v)) = p.split_once("!=") {
                        (k.trim().to_owned(), Some(v.trim().to_owned()), false)
                    } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                        (k.trim().to_owned(), Some(v.trim().to_owned()), true)
                    } else {
                        (p.trim().to_owned(), None, true)
                    }
                })
                .collect()
        };
        let labels = split(param(q, "labelSelector").unwrap_or_default());
        let mut fields = Vec::new();
        for (k, v, eq) in split(param(q, "fieldSelector").unwrap_or_default()) {
            if !matches!(k.as_str(), "metadata.name" | "metadata.namespace") {
                return Err(fail(
                    StatusCode::BAD_REQUEST,
                    "BadRequest",
                    format!(
                        "field selector {k:?} is not supported by the fake API server (metadata.name and metadata.namespace are)"
                    ),
                ));
            }
            fields.push((k, v.unwrap_or_default(), eq));
        }
        Ok(Self { labels, fields })
    }

    fn matches(&self, object: &Value) -> bool {
        let meta = &object["metadata"];
        self.labels.iter().all(|(k, v, eq)| {
            let got = meta["labels"][k].as_str();
            match v {
                None => got.is_some(),
                Some(v) => (got == Some(v.as_str())) == *eq,
            }
        }) && self.fields.iter().all(|(k, v, eq)| {
            let field = k.trim_start_matches("metadata.");
            (meta[field].as_str().unwrap_or_default() == v) == *eq
        })
    }
}

fn list(state: &State, t: &Target, q: &[(String, String)]) -> Response<Body> {
    let sel = match Selectors::parse(q) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let store = state.store();
    let items: Vec<Value> = store
        .list(t.res, t.namespace.as_deref())
        .into_iter()
        .filter(|o| sel.matches(o))
        .cloned()
        .collect();
    full(
        StatusCode::OK,
        &json!({
            "apiVersion": t.res.api_version(),
            "kind": format!("{}List", t.res.kind),
            "metadata": {"resourceVersion": store.resource_version().to_string()},
            "items": items,
        }),
    )
}

fn event_line(kind: &str, object: &Value) -> Bytes {
    let mut line = json!({"type": kind, "object": object}).to_string();
    line.push('\n');
    Bytes::from(line)
}

fn watch(state: &Arc<State>, t: &Target, q: &[(String, String)]) -> Response<Body> {
    let sel = match Selectors::parse(q) {
        Ok(s) => s,
        Err(resp) => return resp,
    };
    let rv = param(q, "resourceVersion").unwrap_or_default();
    let (initial, live) = {
        let store = state.store();
        let live = state.events.subscribe();
        let initial: Vec<Bytes> = match rv.parse::<u64>() {
            // No version (or "0"): the current objects as ADDED, then what follows.
            Err(_) | Ok(0) => store
                .list(t.res, t.namespace.as_deref())
                .into_iter()
                .filter(|o| sel.matches(o))
                .map(|o| event_line("ADDED", o))
                .collect(),
            Ok(rv) => match store.replay(t.res, t.namespace.as_deref(), rv) {
                Replay::Events(events) => events
                    .iter()
                    .filter(|e| sel.matches(&e.object))
                    .map(|e| event_line(e.kind, &e.object))
                    .collect(),
                Replay::Gone => vec![event_line(
                    "ERROR",
                    &status_body(
                        StatusCode::GONE,
                        "Expired",
                        &format!(
                            "too old resource version: {rv} ({})",
                            store.resource_version()
                        ),
                    ),
                )],
            },
        };
        (initial, live)
    };
    let (tx, rx) = mpsc::channel::<Bytes>(64);
    let plural = t.res.plural;
    let namespace = t.namespace.clone();
    let mut down = state.down.subscribe();
    tokio::spawn(async move {
        for line in initial {
            if tx.send(line).await.is_err() {
                return;
            }
        }
        let mut live: broadcast::Receiver<Arc<Event>> = live;
        loop {
            tokio::select! {
                () = async { let _ = down.wait_for(|d| *d).await; } => return,
                event = live.recv() => match event {
                    Ok(e) => {
                        if e.plural != plural
                            || namespace.as_ref().is_some_and(|n| *n != e.namespace)
                            || !sel.matches(&e.object)
                        {
                            continue;
                        }
                        if tx.send(event_line(e.kind, &e.object)).await.is_err() {
                            return;
                        }
                    }
                    // Lagged or closed: end the stream; the client watches again from its last version.
                    Err(_) => return,
                },
                () = tx.closed() => return,
            }
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
    });
    let mut resp = Response::new(StreamBody::new(stream).boxed());
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn get(state: &State, t: &Target) -> Response<Body> {
    let name = t.name.as_deref().unwrap_or_default();
    match state.store().get(t.res, &ns_key(t), name) {
        Some(o) => full(StatusCode::OK, o),
        None => not_found(t),
    }
}

fn parse_body(body: &[u8], yaml: bool) -> Result<Value, Response<Body>> {
    let parsed = if yaml {
        serde_yaml_ng::from_slice::<Value>(body).map_err(|e| e.to_string())
    } else {
        serde_json::from_slice::<Value>(body).map_err(|e| e.to_string())
    };
    match parsed {
        Ok(v) if v.is_object() => Ok(v),
        Ok(_) => Err(fail(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the body must be an object",
        )),
        Err(e) => Err(fail(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            format!("the body does not parse: {e}"),
        )),
    }
}

fn create(state: &State, t: &Target, body: &[u8]) -> Response<Body> {
    let mut object = match parse_body(body, false) {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    if t.name.is_some() {
        return fail(
            StatusCode::METHOD_NOT_ALLOWED,
            "MethodNotAllowed",
            "POST goes to the collection",
        );
    }
    if REVIEWS.iter().any(|r| std::ptr::eq(r, t.res)) {
        let status = if t.res.plural == "tokenreviews" {
            state.reviews().token_review(&object["spec"])
        } else {
            state.reviews().access_review(&object["spec"])
        };
        object["status"] = status;
        object["metadata"] = json!({"creationTimestamp": null});
        return full(StatusCode::CREATED, &object);
    }
    let ns = ns_key(t);
    let mut name = object["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    if name.is_empty()
        && let Some(prefix) = object["metadata"]["generateName"].as_str()
    {
        name = format!("{prefix}{:05}", state.store().resource_version() + 1);
    }
    if name.is_empty() {
        return fail(
            StatusCode::UNPROCESSABLE_ENTITY,
            "Invalid",
            "metadata.name: Required value: name or generateName is required",
        );
    }
    if t.res.namespaced
        && let Some(body_ns) = object["metadata"]["namespace"].as_str()
        && body_ns != ns
    {
        return fail(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the namespace of the provided object does not match the namespace sent on the request",
        );
    }
    let mut store = state.store();
    if store.get(t.res, &ns, &name).is_some() {
        return fail(
            StatusCode::CONFLICT,
            "AlreadyExists",
            format!("{}.{} \"{name}\" already exists", t.res.plural, t.res.group),
        );
    }
    if t.res.status_subresource
        && let Some(m) = object.as_object_mut()
    {
        m.remove("status");
    }
    let stored = store.upsert(t.res, &ns, &name, object, &state.events);
    full(StatusCode::CREATED, &stored)
}

/// Keeps what a write to the main resource or to `/status` may not change.
fn keep_protected(t: &Target, old: &Value, mut new: Value) -> Value {
    if !t.res.status_subresource {
        return new;
    }
    if t.subresource.as_deref() == Some("status") {
        let mut kept = old.clone();
        kept["status"] = new["status"].take();
        kept
    } else {
        match old.get("status") {
            Some(s) => new["status"] = s.clone(),
            None => {
                if let Some(m) = new.as_object_mut() {
                    m.remove("status");
                }
            }
        }
        new
    }
}

fn update(state: &State, t: &Target, body: &[u8]) -> Response<Body> {
    let object = match parse_body(body, false) {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let ns = ns_key(t);
    let name = t.name.clone().unwrap_or_default();
    if object["metadata"]["name"]
        .as_str()
        .is_some_and(|n| n != name)
    {
        return fail(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "the name of the object does not match the name on the URL",
        );
    }
    let mut store = state.store();
    let Some(old) = store.get(t.res, &ns, &name).cloned() else {
        return not_found(t);
    };
    if let Some(rv) = object["metadata"]["resourceVersion"].as_str()
        && !rv.is_empty()
        && Some(rv) != old["metadata"]["resourceVersion"].as_str()
    {
        return fail(
            StatusCode::CONFLICT,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {}.{} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
                t.res.plural, t.res.group
            ),
        );
    }
    let object = keep_protected(t, &old, object);
    let stored = store.upsert(t.res, &ns, &name, object, &state.events);
    full(StatusCode::OK, &stored)
}

fn patch(
    state: &State,
    t: &Target,
    body: &[u8],
    content_type: &str,
    q: &[(String, String)],
) -> Response<Body> {
    let apply = content_type.starts_with("application/apply-patch");
    if content_type.starts_with("application/json-patch") {
        return fail(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "UnsupportedMediaType",
            "the fake API server does not support JSON patches; use a merge patch or server-side apply",
        );
    }
    let manager = param(q, "fieldManager").unwrap_or_default().to_owned();
    if apply && manager.is_empty() {
        return fail(
            StatusCode::BAD_REQUEST,
            "BadRequest",
            "PATCH requests with the apply content type require fieldManager",
        );
    }
    let patch = match parse_body(body, apply) {
        Ok(v) => v,
        Err(resp) => return resp,
    };
    let ns = ns_key(t);
    let name = t.name.clone().unwrap_or_default();
    let mut store = state.store();
    let old = match store.get(t.res, &ns, &name) {
        Some(o) => o.clone(),
        None if apply && t.subresource.is_none() => json!({"metadata": {"name": name}}),
        None => return not_found(t),
    };
    let mut new = old.clone();
    merge_patch(&mut new, &patch);
    if apply {
        let operation_scope = t.subresource.clone().unwrap_or_default();
        let entry = json!({
            "manager": manager, "operation": "Apply", "apiVersion": t.res.api_version(),
            "time": rfc3339_now(), "fieldsType": "FieldsV1", "fieldsV1": {},
            "subresource": operation_scope,
        });
        let mut fields: Vec<Value> = old["metadata"]["managedFields"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        fields.retain(|f| {
            !(f["manager"] == entry["manager"] && f["subresource"] == entry["subresource"])
        });
        fields.push(entry);
        new["metadata"]["managedFields"] = Value::Array(fields);
    }
    let new = if store.get(t.res, &ns, &name).is_some() {
        let mut kept = keep_protected(t, &old, new.clone());
        if apply {
            kept["metadata"]["managedFields"] = new["metadata"]["managedFields"].clone();
        }
        kept
    } else {
        new
    };
    let stored = store.upsert(t.res, &ns, &name, new, &state.events);
    full(StatusCode::OK, &stored)
}

fn delete(state: &State, t: &Target) -> Response<Body> {
    let name = t.name.clone().unwrap_or_default();
    match state
        .store()
        .delete(t.res, &ns_key(t), &name, &state.events)
    {
        Some(o) => full(StatusCode::OK, &o),
        None => not_found(t),
    }
}
