//! Limits over real gRPC on a one-member cluster: the space quota raises
//! the NOSPACE alarm and refuses growing writes until it is disarmed, and
//! a watch response larger than the request size limit is split into
//! fragments when the watcher asks for it.

use sett_proto::etcdserverpb::alarm_request::AlarmAction;
use sett_proto::etcdserverpb::kv_client::KvClient;
use sett_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use sett_proto::etcdserverpb::request_op::Request as Op;
use sett_proto::etcdserverpb::watch_client::WatchClient;
use sett_proto::etcdserverpb::watch_request::RequestUnion;
use sett_proto::etcdserverpb::{
    AlarmMember, AlarmRequest, AlarmType, CompactionRequest, DeleteRangeRequest, PutRequest,
    RequestOp, TxnRequest, WatchCreateRequest, WatchRequest,
};
use sett_server::testing::{runtime, SingleMember};
use std::time::Duration;

const NO_SPACE: &str = "etcdserver: mvcc: database space exceeded";
const QUOTA: u64 = 256 * 1024;
const VALUE: usize = 16 * 1024;
const WAIT: Duration = Duration::from_secs(30);

fn put(key: &str, len: usize) -> PutRequest {
    PutRequest {
        key: key.as_bytes().to_vec().into(),
        value: vec![b'v'; len].into(),
        ..PutRequest::default()
    }
}

#[test]
fn quota_raises_nospace_until_disarmed() {
    runtime().block_on(async {
        let one = SingleMember::start_with(|f| f.quota_backend_bytes = Some(QUOTA))
            .await
            .unwrap();
        let channel = one.channel().await;
        let mut kv = KvClient::new(channel.clone());
        let mut mt = MaintenanceClient::new(channel);

        // Fill past the quota: some put is refused with etcd's error.
        let mut refused = None;
        for i in 0..(4 * QUOTA as usize / VALUE) {
            if let Err(s) = kv.put(put(&format!("big/{i}"), VALUE)).await {
                refused = Some(s);
                break;
            }
        }
        let s = refused.expect("the quota was never enforced");
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        assert_eq!(s.message(), NO_SPACE);

        // The alarm is listed with this member's id.
        let member_id = one.node.config().node_id;
        let nospace = AlarmMember {
            member_id,
            alarm: AlarmType::Nospace as i32,
        };
        let list = mt
            .alarm(AlarmRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert_eq!(list.alarms, vec![nospace]);

        // While it is raised: small puts, txns with a put and lease grants
        // are refused by the state machine; deletes and compaction apply.
        let s = kv.put(put("small", 1)).await.unwrap_err();
        assert_eq!(s.message(), NO_SPACE);
        let txn = TxnRequest {
            success: vec![RequestOp {
                request: Some(Op::RequestPut(put("t", 1))),
            }],
            ..TxnRequest::default()
        };
        let s = kv.txn(txn).await.unwrap_err();
        assert_eq!(s.code(), tonic::Code::ResourceExhausted);
        let deleted = kv
            .delete_range(DeleteRangeRequest {
                key: "big/".into(),
                range_end: "big0".into(),
                prev_kv: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert!(deleted.deleted > 0);
        let rev = deleted.header.unwrap().revision;
        kv.compact(CompactionRequest {
            revision: rev,
            physical: true,
        })
        .await
        .unwrap();

        // Disarming clears it; the answer names the alarm cleared.
        let cleared = mt
            .alarm(AlarmRequest {
                action: AlarmAction::Deactivate as i32,
                member_id,
                alarm: AlarmType::Nospace as i32,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(cleared.alarms, vec![nospace]);
        let list = mt
            .alarm(AlarmRequest::default())
            .await
            .unwrap()
            .into_inner();
        assert!(list.alarms.is_empty());
        // A write that fits raises nothing (or, if the value log still
        // holds the deleted values, is refused again with the same error).
        match kv.put(put("small", 1)).await {
            Ok(_) => {}
            Err(s) => assert_eq!(s.message(), NO_SPACE),
        }
        one.node.shutdown().await.unwrap();
    });
}

#[test]
fn large_watch_responses_are_fragmented_on_request() {
    const LIMIT: u64 = 64 * 1024;
    const EVENTS: usize = 10;
    const LEN: usize = 16 * 1024;
    runtime().block_on(async {
        let one = SingleMember::start_with(|f| f.max_request_bytes = Some(LIMIT))
            .await
            .unwrap();
        let channel = one.channel().await;
        let mut kv = KvClient::new(channel.clone());
        // EVENTS puts of LEN bytes (160 KiB in all), each under the limit;
        // a watch from the first replays them in one read.
        let mut rev = 0;
        for i in 0..EVENTS {
            let r = kv
                .put(put(&format!("f/{i}"), LEN))
                .await
                .unwrap()
                .into_inner();
            if i == 0 {
                rev = r.header.unwrap().revision;
            }
        }
        for fragment in [true, false] {
            let (tx, rx) = tokio::sync::mpsc::channel(4);
            tx.send(WatchRequest {
                request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                    key: "f/".into(),
                    range_end: "f0".into(),
                    start_revision: rev,
                    fragment,
                    ..WatchCreateRequest::default()
                })),
            })
            .await
            .unwrap();
            let mut stream = WatchClient::new(channel.clone())
                .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
                .await
                .unwrap()
                .into_inner();
            let created = stream.message().await.unwrap().unwrap();
            assert!(created.created);
            let mut events = 0;
            let mut responses = Vec::new();
            while events < EVENTS {
                let resp = tokio::time::timeout(WAIT, stream.message())
                    .await
                    .expect("watch events in time")
                    .unwrap()
                    .unwrap();
                events += resp.events.len();
                responses.push(resp);
            }
            assert_eq!(events, EVENTS);
            if fragment {
                assert!(responses.len() > 1, "one response of {EVENTS} events");
                let (last, rest) = responses.split_last().unwrap();
                assert!(rest.iter().all(|r| r.fragment) && !last.fragment);
                for r in &responses {
                    assert!(prost::Message::encoded_len(r) as u64 <= LIMIT + 1024);
                }
            } else {
                assert_eq!(responses.len(), 1);
                assert!(!responses[0].fragment);
            }
            drop(tx);
        }
        one.node.shutdown().await.unwrap();
    });
}
