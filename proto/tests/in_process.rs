//! Drives generated clients against generated servers in one process, with
//! no transport: proves the code compiled without tonic's `transport`
//! feature is usable, and records the HTTP/2 paths the clients call.

use std::sync::{Arc, Mutex};

use tonic::codegen::tokio_stream::{self, StreamExt as _};
use tonic::codegen::{http, BoxStream, Context, Poll, Service};
use tonic::{Request, Response, Status, Streaming};

use sett_proto::etcdserverpb as pb;
use sett_proto::etcdserverpb::kv_server::{Kv, KvServer};
use sett_proto::etcdserverpb::lease_server::{Lease, LeaseServer};

/// Wraps a service and records the path of every request it sees.
#[derive(Debug, Clone)]
struct PathRecorder<S> {
    inner: S,
    paths: Arc<Mutex<Vec<String>>>,
}

impl<S, B> Service<http::Request<B>> for PathRecorder<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.paths.lock().unwrap().push(req.uri().path().to_owned());
        self.inner.call(req)
    }
}

fn header(revision: i64) -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader {
        revision,
        ..Default::default()
    })
}

/// Answers Range with the request's limit as the header revision.
#[derive(Debug)]
struct EchoKv;

#[tonic::async_trait]
impl Kv for EchoKv {
    async fn range(
        &self,
        request: Request<pb::RangeRequest>,
    ) -> Result<Response<pb::RangeResponse>, Status> {
        let r = request.into_inner();
        Ok(Response::new(pb::RangeResponse {
            header: header(r.limit),
            kvs: vec![sett_proto::mvccpb::KeyValue {
                key: r.key,
                ..Default::default()
            }],
            more: false,
            count: 1,
        }))
    }
    async fn put(&self, _: Request<pb::PutRequest>) -> Result<Response<pb::PutResponse>, Status> {
        Err(Status::invalid_argument("etcdserver: key is not provided"))
    }
    async fn delete_range(
        &self,
        _: Request<pb::DeleteRangeRequest>,
    ) -> Result<Response<pb::DeleteRangeResponse>, Status> {
        Err(Status::unimplemented("delete_range"))
    }
    async fn txn(&self, _: Request<pb::TxnRequest>) -> Result<Response<pb::TxnResponse>, Status> {
        Err(Status::unimplemented("txn"))
    }
    async fn compact(
        &self,
        _: Request<pb::CompactionRequest>,
    ) -> Result<Response<pb::CompactionResponse>, Status> {
        Err(Status::unimplemented("compact"))
    }
}

/// Answers each keep-alive with TTL = 10 × ID.
#[derive(Debug)]
struct EchoLease;

#[tonic::async_trait]
impl Lease for EchoLease {
    async fn lease_grant(
        &self,
        _: Request<pb::LeaseGrantRequest>,
    ) -> Result<Response<pb::LeaseGrantResponse>, Status> {
        Err(Status::unimplemented("lease_grant"))
    }
    async fn lease_revoke(
        &self,
        _: Request<pb::LeaseRevokeRequest>,
    ) -> Result<Response<pb::LeaseRevokeResponse>, Status> {
        Err(Status::unimplemented("lease_revoke"))
    }
    type LeaseKeepAliveStream = BoxStream<pb::LeaseKeepAliveResponse>;
    async fn lease_keep_alive(
        &self,
        request: Request<Streaming<pb::LeaseKeepAliveRequest>>,
    ) -> Result<Response<Self::LeaseKeepAliveStream>, Status> {
        let out = request.into_inner().map(|r| {
            r.map(|r| pb::LeaseKeepAliveResponse {
                header: header(1),
                id: r.id,
                ttl: r.id * 10,
            })
        });
        Ok(Response::new(Box::pin(out)))
    }
    async fn lease_time_to_live(
        &self,
        _: Request<pb::LeaseTimeToLiveRequest>,
    ) -> Result<Response<pb::LeaseTimeToLiveResponse>, Status> {
        Err(Status::unimplemented("lease_time_to_live"))
    }
    async fn lease_leases(
        &self,
        _: Request<pb::LeaseLeasesRequest>,
    ) -> Result<Response<pb::LeaseLeasesResponse>, Status> {
        Err(Status::unimplemented("lease_leases"))
    }
}

#[tokio::test(flavor = "current_thread")]
async fn unary_calls_use_etcd_paths_and_carry_statuses() {
    let paths = Arc::new(Mutex::new(Vec::new()));
    let service = PathRecorder {
        inner: KvServer::new(EchoKv),
        paths: paths.clone(),
    };
    let mut client = pb::kv_client::KvClient::new(service);

    let resp = client
        .range(pb::RangeRequest {
            key: "k".into(),
            limit: 7,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.header.unwrap().revision, 7);
    assert_eq!(&resp.kvs[0].key[..], b"k");

    let err = client.put(pb::PutRequest::default()).await.unwrap_err();
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert_eq!(err.message(), "etcdserver: key is not provided");

    assert_eq!(
        *paths.lock().unwrap(),
        ["/etcdserverpb.KV/Range", "/etcdserverpb.KV/Put"]
    );
}

#[tokio::test(flavor = "current_thread")]
async fn bidi_keep_alive_stream_round_trips() {
    let paths = Arc::new(Mutex::new(Vec::new()));
    let service = PathRecorder {
        inner: LeaseServer::new(EchoLease),
        paths: paths.clone(),
    };
    let mut client = pb::lease_client::LeaseClient::new(service);

    let requests = tokio_stream::iter((1..=3).map(|id| pb::LeaseKeepAliveRequest { id }));
    let mut responses = client
        .lease_keep_alive(requests)
        .await
        .unwrap()
        .into_inner();
    let mut ttls = Vec::new();
    while let Some(r) = responses.message().await.unwrap() {
        ttls.push((r.id, r.ttl));
    }
    assert_eq!(ttls, [(1, 10), (2, 20), (3, 30)]);
    assert_eq!(
        *paths.lock().unwrap(),
        ["/etcdserverpb.Lease/LeaseKeepAlive"]
    );
}
