//! grpc-go's answers to requests refused before a handler runs, which is
//! what etcd's clients see from etcd: tonic's status is rewritten into
//! grpc-go's code and message shape.
//!
//! - A message past the receive limit: tonic answers OutOfRange
//!   `Error, decoded message length too large: found N bytes, the limit
//!   is: M bytes`; grpc-go ResourceExhausted
//!   `grpc: received message larger than max (N vs. M)`.
//! - A message that does not decode: both answer Internal; grpc-go's
//!   message is `grpc: error unmarshalling request: <decoder error>` for a
//!   unary call, `grpc: failed to unmarshal the received message <decoder
//!   error>` on a stream (the decoder's own text cannot match Go's).
//!
//! [`GrpcGoErrors`] rewrites trailers-only answers (status in the response
//! headers): that is how a unary call refused before its handler ends. A
//! streaming call's refused request reaches its handler as an error, which
//! [`stream_error`] translates.

use tonic::codegen::http::{HeaderMap, HeaderValue, Request, Response};
use tonic::codegen::{BoxFuture, Context, Poll, Service};
use tonic::server::NamedService;
use tonic::{Code, Status};

const TONIC_TOO_LARGE: &str = "Error, decoded message length too large: found ";
const TONIC_UNDECODABLE: &str = "failed to decode Protobuf message";
/// grpc-go's prefixes for an undecodable message: unary, streaming.
const GO_UNDECODABLE_UNARY: &str = "grpc: error unmarshalling request: ";
const GO_UNDECODABLE_STREAM: &str = "grpc: failed to unmarshal the received message ";

/// Wraps a gRPC service; see the module docs.
#[derive(Debug, Clone)]
pub(crate) struct GrpcGoErrors<S>(pub(crate) S);

impl<S: NamedService> NamedService for GrpcGoErrors<S> {
    const NAME: &'static str = S::NAME;
}

impl<S, B, R> Service<Request<B>> for GrpcGoErrors<S>
where
    S: Service<Request<B>, Response = Response<R>>,
    S::Future: Send + 'static,
{
    type Response = Response<R>;
    type Error = S::Error;
    type Future = BoxFuture<Response<R>, S::Error>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, req: Request<B>) -> Self::Future {
        let answer = self.0.call(req);
        Box::pin(async move {
            let mut resp = answer.await?;
            rewrite(resp.headers_mut());
            Ok(resp)
        })
    }
}

/// Rewrites a trailers-only status in `headers` into grpc-go's.
fn rewrite(headers: &mut HeaderMap) {
    let Some(code) = headers
        .get("grpc-status")
        .map(|c| Code::from_bytes(c.as_bytes()))
    else {
        return;
    };
    let Some(message) = headers.get("grpc-message").map(|m| decode(m.as_bytes())) else {
        return;
    };
    let Some((code, message)) = translate(code, &message, GO_UNDECODABLE_UNARY) else {
        return;
    };
    if let Ok(m) = HeaderValue::from_str(&encode(&message)) {
        headers.insert("grpc-status", HeaderValue::from(code as i32));
        headers.insert("grpc-message", m);
    }
}

/// grpc-go's answer to a streaming call's request that tonic refused
/// (the status a stream's receiving side yields).
pub(crate) fn stream_error(status: Status) -> Status {
    match translate(status.code(), status.message(), GO_UNDECODABLE_STREAM) {
        Some((code, message)) => Status::new(code, message),
        None => status,
    }
}

/// grpc-go's code and message where tonic's `code` and `message` are its
/// own refusal of a request (`undecodable` heads grpc-go's message for an
/// undecodable one); `None` for any other status.
fn translate(code: Code, message: &str, undecodable: &str) -> Option<(Code, String)> {
    match code {
        Code::OutOfRange => too_large(message).map(|m| (Code::ResourceExhausted, m)),
        Code::Internal if message.starts_with(TONIC_UNDECODABLE) => {
            Some((Code::Internal, format!("{undecodable}{message}")))
        }
        _ => None,
    }
}

/// grpc-go's message for tonic's receive-limit message, if it is one.
fn too_large(message: &str) -> Option<String> {
    let rest = message.strip_prefix(TONIC_TOO_LARGE)?;
    let (found, rest) = rest.split_once(" bytes, the limit is: ")?;
    let limit = rest.strip_suffix(" bytes")?;
    let (found, limit): (u64, u64) = (found.parse().ok()?, limit.parse().ok()?);
    Some(format!(
        "grpc: received message larger than max ({found} vs. {limit})"
    ))
}

/// gRPC's percent-decoding of `grpc-message`.
fn decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let hex = raw
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (raw[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// gRPC's percent-encoding: everything outside printable ASCII, and `%`.
fn encode(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    for b in message.bytes() {
        if (0x20..0x7f).contains(&b) && b != b'%' && b != b' ' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limit_message_becomes_grpc_go_s() {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static("11"));
        let tonic =
            "Error, decoded message length too large: found 700 bytes, the limit is: 600 bytes";
        h.insert(
            "grpc-message",
            HeaderValue::from_str(&encode(tonic)).unwrap(),
        );
        rewrite(&mut h);
        assert_eq!(h["grpc-status"], "8");
        assert_eq!(
            decode(h["grpc-message"].as_bytes()),
            "grpc: received message larger than max (700 vs. 600)"
        );
    }

    #[test]
    fn stream_errors_translate() {
        let tonic = Status::internal("failed to decode Protobuf message: buffer underflow");
        let go = stream_error(tonic);
        assert_eq!(go.code(), Code::Internal);
        assert_eq!(
            go.message(),
            "grpc: failed to unmarshal the received message \
             failed to decode Protobuf message: buffer underflow"
        );
        let etcd = Status::out_of_range("etcdserver: mvcc: required revision has been compacted");
        assert_eq!(stream_error(etcd.clone()).message(), etcd.message());
    }

    #[test]
    fn other_statuses_stay() {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", HeaderValue::from_static("11"));
        let etcd = encode("etcdserver: mvcc: required revision is a future revision");
        h.insert("grpc-message", HeaderValue::from_str(&etcd).unwrap());
        let before = h.clone();
        rewrite(&mut h);
        assert_eq!(h, before);
    }
}
