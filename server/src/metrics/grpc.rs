//! Per-call series of the client services, named and labelled as
//! go-grpc-prometheus names them (what etcd exports):
//! `grpc_server_started_total`, `grpc_server_handled_total` and
//! `grpc_server_handling_seconds`, labelled `grpc_type` (`unary`,
//! `client_stream`, `server_stream`, `bidi_stream`), `grpc_service`,
//! `grpc_method` and, once handled, `grpc_code` (`OK`, `NotFound`, ...).
//!
//! [`instrument`] wraps the client [`Routes`] in a middleware. A call is
//! started when its request arrives and handled when its status is known:
//! from the response headers for a trailers-only answer (how tonic sends
//! an error), else from the trailers at the end of the response body.
//! A body dropped before its end (the client went away) counts as
//! `Canceled`, one that ends without a status as `Unknown`. Handling time
//! runs until then, so a stream's time is its whole life.

use super::Metrics;
use axum::body::Body;
use axum::middleware::Next;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use std::collections::HashMap;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;
use tonic::service::Routes;

/// `grpc_type`, `grpc_service`, `grpc_method`.
type CallLabels = [(&'static str, String); 3];
/// [`CallLabels`] plus `grpc_code`.
type HandledLabels = [(&'static str, String); 4];

/// The per-call series.
#[derive(Debug)]
pub(crate) struct GrpcSeries {
    started: Family<CallLabels, Counter>,
    handled: Family<HandledLabels, Counter>,
    handling: Family<CallLabels, Histogram, fn() -> Histogram>,
    /// `grpc_type` by `(service, method)`.
    types: HashMap<(String, String), &'static str>,
}

/// go-grpc-prometheus' default buckets (Prometheus' `DefBuckets`).
const HANDLING_BUCKETS_SECS: [f64; 11] = [
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

fn handling_histogram() -> Histogram {
    Histogram::new(HANDLING_BUCKETS_SECS)
}

impl GrpcSeries {
    /// Registers the series in `registry`.
    pub(crate) fn register(registry: &mut Registry) -> GrpcSeries {
        let s = GrpcSeries {
            started: Family::default(),
            handled: Family::default(),
            handling: Family::new_with_constructor(handling_histogram as fn() -> Histogram),
            types: method_types(),
        };
        registry.register(
            "grpc_server_started",
            "Total number of RPCs started on the server.",
            s.started.clone(),
        );
        registry.register(
            "grpc_server_handled",
            "Total number of RPCs completed on the server, regardless of success or failure.",
            s.handled.clone(),
        );
        registry.register(
            "grpc_server_handling_seconds",
            "Histogram of response latency (seconds) of gRPC that had been application-level \
             handled by the server.",
            s.handling.clone(),
        );
        s
    }
}

/// The kind of a method, as `grpc_type` names it.
fn method_type(client_streaming: bool, server_streaming: bool) -> &'static str {
    match (client_streaming, server_streaming) {
        (false, false) => "unary",
        (true, false) => "client_stream",
        (false, true) => "server_stream",
        (true, true) => "bidi_stream",
    }
}

/// The parts of `google.protobuf.FileDescriptorSet` needed to know each
/// method's kind (field numbers from descriptor.proto).
mod descriptor {
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct FileSet {
        #[prost(message, repeated, tag = "1")]
        pub(super) file: Vec<File>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct File {
        #[prost(string, optional, tag = "2")]
        pub(super) package: Option<String>,
        #[prost(message, repeated, tag = "6")]
        pub(super) service: Vec<Service>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Service {
        #[prost(string, optional, tag = "1")]
        pub(super) name: Option<String>,
        #[prost(message, repeated, tag = "2")]
        pub(super) method: Vec<Method>,
    }
    #[derive(Clone, PartialEq, prost::Message)]
    pub(super) struct Method {
        #[prost(string, optional, tag = "1")]
        pub(super) name: Option<String>,
        #[prost(bool, optional, tag = "5")]
        pub(super) client_streaming: Option<bool>,
        #[prost(bool, optional, tag = "6")]
        pub(super) server_streaming: Option<bool>,
    }
}

/// `grpc_type` of every method the client URLs serve, by
/// `(service, method)`, from the services' own descriptors.
fn method_types() -> HashMap<(String, String), &'static str> {
    use prost::Message as _;
    let sets: [&[u8]; 4] = [
        sett_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ];
    let mut out = HashMap::new();
    for bytes in sets {
        let Ok(set) = descriptor::FileSet::decode(bytes) else {
            tracing::warn!("a service descriptor set does not decode; calls count as unary");
            continue;
        };
        for file in set.file {
            let package = file.package.unwrap_or_default();
            for svc in file.service {
                let service = match svc.name {
                    Some(n) if package.is_empty() => n,
                    Some(n) => format!("{package}.{n}"),
                    None => continue,
                };
                for m in svc.method {
                    let Some(name) = m.name else { continue };
                    let kind = method_type(
                        m.client_streaming.unwrap_or(false),
                        m.server_streaming.unwrap_or(false),
                    );
                    out.insert((service.clone(), name), kind);
                }
            }
        }
    }
    out
}

/// The name go-grpc-prometheus gives a status code (Go's `codes.Code`
/// string).
pub(crate) fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code;
    match code {
        Code::Ok => "OK",
        Code::Cancelled => "Canceled",
        Code::Unknown => "Unknown",
        Code::InvalidArgument => "InvalidArgument",
        Code::DeadlineExceeded => "DeadlineExceeded",
        Code::NotFound => "NotFound",
        Code::AlreadyExists => "AlreadyExists",
        Code::PermissionDenied => "PermissionDenied",
        Code::ResourceExhausted => "ResourceExhausted",
        Code::FailedPrecondition => "FailedPrecondition",
        Code::Aborted => "Aborted",
        Code::OutOfRange => "OutOfRange",
        Code::Unimplemented => "Unimplemented",
        Code::Internal => "Internal",
        Code::Unavailable => "Unavailable",
        Code::DataLoss => "DataLoss",
        Code::Unauthenticated => "Unauthenticated",
    }
}

/// The status in a `grpc-status` header or trailer.
fn status_of(headers: &axum::http::HeaderMap) -> Option<tonic::Code> {
    let v = headers.get("grpc-status")?;
    Some(tonic::Code::from_bytes(v.as_bytes()))
}

/// `routes` with every call counted in `metrics`.
pub fn instrument(routes: Routes, metrics: Arc<Metrics>) -> Routes {
    let router = routes
        .into_axum_router()
        .route_layer(axum::middleware::from_fn_with_state(metrics, observe));
    Routes::from(router)
}

/// One call between its start and its status.
struct Call {
    metrics: Arc<Metrics>,
    labels: CallLabels,
    started: Instant,
    /// Known once the headers or trailers carried a status.
    code: Option<tonic::Code>,
    /// Whether the response body reached its end.
    ended: bool,
}

impl Drop for Call {
    fn drop(&mut self) {
        let code = match (self.code, self.ended) {
            (Some(c), _) => c,
            (None, true) => tonic::Code::Unknown,
            (None, false) => tonic::Code::Cancelled,
        };
        let [t, s, m] = self.labels.clone();
        let series = self.metrics.grpc();
        series
            .handled
            .get_or_create(&[t, s, m, ("grpc_code", code_name(code).to_owned())])
            .inc();
        series
            .handling
            .get_or_create(&self.labels)
            .observe(self.started.elapsed().as_secs_f64());
    }
}

async fn observe(
    axum::extract::State(metrics): axum::extract::State<Arc<Metrics>>,
    req: axum::extract::Request,
    next: Next,
) -> axum::response::Response {
    let path = req.uri().path();
    let Some((service, method)) = path.strip_prefix('/').and_then(|p| p.split_once('/')) else {
        return next.run(req).await;
    };
    let kind = metrics
        .grpc()
        .types
        .get(&(service.to_owned(), method.to_owned()))
        .copied()
        .unwrap_or("unary");
    let labels: CallLabels = [
        ("grpc_type", kind.to_owned()),
        ("grpc_service", service.to_owned()),
        ("grpc_method", method.to_owned()),
    ];
    metrics.grpc().started.get_or_create(&labels).inc();
    let mut call = Call {
        metrics,
        labels,
        started: Instant::now(),
        code: None,
        ended: false,
    };
    let resp = next.run(req).await;
    if let Some(code) = status_of(resp.headers()) {
        // Trailers-only: the status is already final.
        call.code = Some(code);
        drop(call);
        return resp;
    }
    let (parts, body) = resp.into_parts();
    axum::response::Response::from_parts(parts, Body::new(Observed { inner: body, call }))
}

/// A response body that reports its call's status when its trailers
/// pass (or when it is dropped).
struct Observed {
    inner: Body,
    call: Call,
}

impl http_body::Body for Observed {
    type Data = axum::body::Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        let polled = http_body::Body::poll_frame(Pin::new(&mut this.inner), cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(code) = frame.trailers_ref().and_then(status_of) {
                    this.call.code = Some(code);
                }
            }
            Poll::Ready(Some(Err(_))) => {
                this.call.code.get_or_insert(tonic::Code::Internal);
            }
            Poll::Ready(None) => this.call.ended = true,
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        http_body::Body::is_end_stream(&self.inner)
    }

    fn size_hint(&self) -> http_body::SizeHint {
        http_body::Body::size_hint(&self.inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn method_kinds_come_from_the_descriptors() {
        let t = &method_types();
        let kind = |s: &str, m: &str| t.get(&(s.to_owned(), m.to_owned())).copied();
        assert_eq!(kind("etcdserverpb.KV", "Put"), Some("unary"));
        assert_eq!(kind("etcdserverpb.Watch", "Watch"), Some("bidi_stream"));
        assert_eq!(
            kind("etcdserverpb.Lease", "LeaseKeepAlive"),
            Some("bidi_stream")
        );
        assert_eq!(
            kind("etcdserverpb.Maintenance", "Snapshot"),
            Some("server_stream")
        );
        assert_eq!(
            kind("grpc.health.v1.Health", "Watch"),
            Some("server_stream")
        );
        assert_eq!(
            kind(
                "grpc.reflection.v1.ServerReflection",
                "ServerReflectionInfo"
            ),
            Some("bidi_stream")
        );
        assert_eq!(kind("etcdserverpb.KV", "NoSuchMethod"), None);
    }
}
