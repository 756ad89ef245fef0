//! Pins the exact bytes that key messages encode to. A wrong field number,
//! a wrong scalar type (e.g. `sint64` for `int64`) or a misplaced oneof
//! member changes the bytes and fails here; etcd clients match fields by
//! number, so these bytes are the compatibility contract.

use prost::bytes::Bytes;
use prost::Message;
use sett_proto::authpb;
use sett_proto::etcdserverpb as pb;
use sett_proto::mvccpb;

fn enc<M: Message>(m: &M) -> Vec<u8> {
    m.encode_to_vec()
}

fn b(s: &'static str) -> Bytes {
    Bytes::from_static(s.as_bytes())
}

fn header() -> Option<pb::ResponseHeader> {
    Some(pb::ResponseHeader::default())
}

#[test]
fn key_value_fields_1_to_6() {
    let kv = mvccpb::KeyValue {
        key: b("k"),
        create_revision: 2,
        mod_revision: 3,
        version: 4,
        value: b("v"),
        lease: 6,
    };
    let bytes = enc(&kv);
    assert_eq!(
        bytes,
        [0x0a, 1, b'k', 0x10, 2, 0x18, 3, 0x20, 4, 0x2a, 1, b'v', 0x30, 6]
    );
    assert_eq!(mvccpb::KeyValue::decode(&bytes[..]).unwrap(), kv);
}

#[test]
fn event_type_kv_prev_kv() {
    let ev = mvccpb::Event {
        r#type: mvccpb::event::EventType::Delete as i32,
        kv: Some(mvccpb::KeyValue {
            key: b("a"),
            ..Default::default()
        }),
        prev_kv: Some(mvccpb::KeyValue {
            key: b("b"),
            ..Default::default()
        }),
    };
    assert_eq!(
        enc(&ev),
        [0x08, 1, 0x12, 3, 0x0a, 1, b'a', 0x1a, 3, 0x0a, 1, b'b']
    );
    assert_eq!(mvccpb::event::EventType::Put as i32, 0);
}

#[test]
fn response_header_fields() {
    let h = pb::ResponseHeader {
        cluster_id: 1,
        member_id: 2,
        revision: 3,
        raft_term: 4,
    };
    assert_eq!(enc(&h), [0x08, 1, 0x10, 2, 0x18, 3, 0x20, 4]);
}

#[test]
fn range_request_all_thirteen_fields() {
    use pb::range_request::{SortOrder, SortTarget};
    let r = pb::RangeRequest {
        key: b("a"),
        range_end: b("b"),
        limit: 5,
        revision: 7,
        sort_order: SortOrder::Descend as i32,
        sort_target: SortTarget::Value as i32,
        serializable: true,
        keys_only: true,
        count_only: true,
        min_mod_revision: 10,
        max_mod_revision: 11,
        min_create_revision: 12,
        max_create_revision: 13,
    };
    assert_eq!(
        enc(&r),
        [
            0x0a, 1, b'a', 0x12, 1, b'b', 0x18, 5, 0x20, 7, 0x28, 2, 0x30, 4, 0x38, 1, 0x40, 1,
            0x48, 1, 0x50, 10, 0x58, 11, 0x60, 12, 0x68, 13
        ]
    );
    assert_eq!(SortTarget::Mod as i32, 3);
}

#[test]
fn range_response_fields() {
    let r = pb::RangeResponse {
        header: header(),
        kvs: vec![mvccpb::KeyValue::default()],
        more: true,
        count: 9,
    };
    assert_eq!(enc(&r), [0x0a, 0, 0x12, 0, 0x18, 1, 0x20, 9]);
}

#[test]
fn put_and_delete_range_fields() {
    let p = pb::PutRequest {
        key: b("k"),
        value: b("v"),
        lease: 3,
        prev_kv: true,
        ignore_value: true,
        ignore_lease: true,
    };
    assert_eq!(
        enc(&p),
        [0x0a, 1, b'k', 0x12, 1, b'v', 0x18, 3, 0x20, 1, 0x28, 1, 0x30, 1]
    );
    let pr = pb::PutResponse {
        header: header(),
        prev_kv: Some(Default::default()),
    };
    assert_eq!(enc(&pr), [0x0a, 0, 0x12, 0]);

    let d = pb::DeleteRangeRequest {
        key: b("k"),
        range_end: b("l"),
        prev_kv: true,
    };
    assert_eq!(enc(&d), [0x0a, 1, b'k', 0x12, 1, b'l', 0x18, 1]);
    let dr = pb::DeleteRangeResponse {
        header: header(),
        deleted: 2,
        prev_kvs: vec![Default::default()],
    };
    assert_eq!(enc(&dr), [0x0a, 0, 0x10, 2, 0x1a, 0]);
}

#[test]
fn compare_range_end_is_field_64() {
    let c = pb::Compare {
        range_end: b("z"),
        ..Default::default()
    };
    // (64 << 3) | 2 = 514 = varint 0x82 0x04.
    assert_eq!(enc(&c), [0x82, 0x04, 1, b'z']);
}

#[test]
fn compare_fields_and_target_union() {
    use pb::compare::{CompareResult, CompareTarget, TargetUnion};
    let c = pb::Compare {
        result: CompareResult::NotEqual as i32,
        target: CompareTarget::Lease as i32,
        key: b("k"),
        ..Default::default()
    };
    assert_eq!(enc(&c), [0x08, 3, 0x10, 4, 0x1a, 1, b'k']);

    let cases: [(TargetUnion, &[u8]); 5] = [
        (TargetUnion::Version(1), &[0x20, 1]),
        (TargetUnion::CreateRevision(1), &[0x28, 1]),
        (TargetUnion::ModRevision(1), &[0x30, 1]),
        (TargetUnion::Value(b("v")), &[0x3a, 1, b'v']),
        (TargetUnion::Lease(1), &[0x40, 1]),
    ];
    for (union, bytes) in cases {
        let c = pb::Compare {
            target_union: Some(union),
            ..Default::default()
        };
        assert_eq!(enc(&c), bytes, "{c:?}");
    }
    assert_eq!(CompareTarget::Value as i32, 3);
    assert_eq!(CompareResult::Less as i32, 2);
}

#[test]
fn request_op_and_response_op_oneofs() {
    use pb::request_op::Request;
    use pb::response_op::Response;
    let reqs = [
        (Request::RequestRange(Default::default()), 0x0a),
        (Request::RequestPut(Default::default()), 0x12),
        (Request::RequestDeleteRange(Default::default()), 0x1a),
        (Request::RequestTxn(Default::default()), 0x22),
    ];
    for (r, tag) in reqs {
        assert_eq!(enc(&pb::RequestOp { request: Some(r) }), [tag, 0]);
    }
    let resps = [
        (Response::ResponseRange(Default::default()), 0x0a),
        (Response::ResponsePut(Default::default()), 0x12),
        (Response::ResponseDeleteRange(Default::default()), 0x1a),
        (Response::ResponseTxn(Default::default()), 0x22),
    ];
    for (r, tag) in resps {
        assert_eq!(enc(&pb::ResponseOp { response: Some(r) }), [tag, 0]);
    }
}

#[test]
fn txn_and_compaction_fields() {
    let t = pb::TxnRequest {
        compare: vec![Default::default()],
        success: vec![Default::default()],
        failure: vec![Default::default()],
    };
    assert_eq!(enc(&t), [0x0a, 0, 0x12, 0, 0x1a, 0]);
    let tr = pb::TxnResponse {
        header: header(),
        succeeded: true,
        responses: vec![Default::default()],
    };
    assert_eq!(enc(&tr), [0x0a, 0, 0x10, 1, 0x1a, 0]);
    let c = pb::CompactionRequest {
        revision: 5,
        physical: true,
    };
    assert_eq!(enc(&c), [0x08, 5, 0x10, 1]);
}

#[test]
fn watch_request_oneof() {
    use pb::watch_request::RequestUnion;
    let cases = [
        (RequestUnion::CreateRequest(Default::default()), 0x0a),
        (RequestUnion::CancelRequest(Default::default()), 0x12),
        (RequestUnion::ProgressRequest(Default::default()), 0x1a),
    ];
    for (u, tag) in cases {
        assert_eq!(
            enc(&pb::WatchRequest {
                request_union: Some(u)
            }),
            [tag, 0]
        );
    }
    assert_eq!(enc(&pb::WatchCancelRequest { watch_id: 3 }), [0x08, 3]);
}

#[test]
fn watch_create_request_fields_1_to_8() {
    use pb::watch_create_request::FilterType;
    let w = pb::WatchCreateRequest {
        key: b("k"),
        range_end: b("l"),
        start_revision: 3,
        progress_notify: true,
        filters: vec![FilterType::Noput as i32, FilterType::Nodelete as i32],
        prev_kv: true,
        watch_id: 7,
        fragment: true,
    };
    assert_eq!(
        enc(&w),
        [
            0x0a, 1, b'k', 0x12, 1, b'l', 0x18, 3, 0x20, 1, // filters: packed repeated enum
            0x2a, 2, 0, 1, 0x30, 1, 0x38, 7, 0x40, 1
        ]
    );
}

#[test]
fn watch_response_events_are_field_11() {
    let w = pb::WatchResponse {
        header: header(),
        watch_id: 2,
        created: true,
        canceled: true,
        compact_revision: 5,
        cancel_reason: "x".into(),
        fragment: true,
        events: vec![Default::default()],
    };
    assert_eq!(
        enc(&w),
        [
            0x0a, 0, 0x10, 2, 0x18, 1, 0x20, 1, 0x28, 5, 0x32, 1, b'x', 0x38,
            1, // events: (11 << 3) | 2
            0x5a, 0
        ]
    );
}

#[test]
fn progress_response_watch_id_minus_one_is_int64() {
    // int64 (not sint64): -1 is a ten-byte varint.
    let w = pb::WatchResponse {
        watch_id: -1,
        ..Default::default()
    };
    assert_eq!(
        enc(&w),
        [0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
    );
}

#[test]
fn lease_fields() {
    assert_eq!(
        enc(&pb::LeaseGrantRequest { ttl: 1, id: 2 }),
        [0x08, 1, 0x10, 2]
    );
    let g = pb::LeaseGrantResponse {
        header: header(),
        id: 2,
        ttl: 3,
        error: "e".into(),
    };
    assert_eq!(enc(&g), [0x0a, 0, 0x10, 2, 0x18, 3, 0x22, 1, b'e']);
    assert_eq!(enc(&pb::LeaseRevokeRequest { id: 4 }), [0x08, 4]);
    assert_eq!(enc(&pb::LeaseKeepAliveRequest { id: 4 }), [0x08, 4]);
    let k = pb::LeaseKeepAliveResponse {
        header: header(),
        id: 2,
        ttl: 3,
    };
    assert_eq!(enc(&k), [0x0a, 0, 0x10, 2, 0x18, 3]);
    assert_eq!(
        enc(&pb::LeaseTimeToLiveRequest { id: 4, keys: true }),
        [0x08, 4, 0x10, 1]
    );
    let t = pb::LeaseTimeToLiveResponse {
        header: header(),
        id: 2,
        ttl: 3,
        granted_ttl: 4,
        keys: vec![b("k")],
    };
    assert_eq!(enc(&t), [0x0a, 0, 0x10, 2, 0x18, 3, 0x20, 4, 0x2a, 1, b'k']);
    let l = pb::LeaseLeasesResponse {
        header: header(),
        leases: vec![pb::LeaseStatus { id: 9 }],
    };
    assert_eq!(enc(&l), [0x0a, 0, 0x12, 2, 0x08, 9]);
}

#[test]
fn member_fields() {
    let m = pb::Member {
        id: 1,
        name: "n".into(),
        peer_ur_ls: vec!["p".into()],
        client_ur_ls: vec!["c".into()],
        is_learner: true,
    };
    assert_eq!(
        enc(&m),
        [0x08, 1, 0x12, 1, b'n', 0x1a, 1, b'p', 0x22, 1, b'c', 0x28, 1]
    );
    let add = pb::MemberAddRequest {
        peer_ur_ls: vec!["p".into()],
        is_learner: true,
    };
    assert_eq!(enc(&add), [0x0a, 1, b'p', 0x10, 1]);
    let added = pb::MemberAddResponse {
        header: header(),
        member: Some(Default::default()),
        members: vec![Default::default()],
    };
    assert_eq!(enc(&added), [0x0a, 0, 0x12, 0, 0x1a, 0]);
    let upd = pb::MemberUpdateRequest {
        id: 1,
        peer_ur_ls: vec!["p".into()],
    };
    assert_eq!(enc(&upd), [0x08, 1, 0x12, 1, b'p']);
    let list = pb::MemberListResponse {
        header: header(),
        members: vec![Default::default()],
    };
    assert_eq!(enc(&list), [0x0a, 0, 0x12, 0]);
}

#[test]
fn status_response_fields() {
    let s = pb::StatusResponse {
        header: header(),
        version: "3".into(),
        db_size: 3,
        leader: 4,
        raft_index: 5,
        raft_term: 6,
        raft_applied_index: 7,
        errors: vec!["e".into()],
        db_size_in_use: 9,
        is_learner: true,
    };
    assert_eq!(
        enc(&s),
        [
            0x0a, 0, 0x12, 1, b'3', 0x18, 3, 0x20, 4, 0x28, 5, 0x30, 6, 0x38, 7, 0x42, 1, b'e',
            0x48, 9, 0x50, 1
        ]
    );
}

#[test]
fn alarm_hash_snapshot_move_leader_fields() {
    let a = pb::AlarmRequest {
        action: pb::alarm_request::AlarmAction::Deactivate as i32,
        member_id: 7,
        alarm: pb::AlarmType::Corrupt as i32,
    };
    assert_eq!(enc(&a), [0x08, 2, 0x10, 7, 0x18, 2]);
    let m = pb::AlarmMember {
        member_id: 7,
        alarm: pb::AlarmType::Nospace as i32,
    };
    assert_eq!(enc(&m), [0x08, 7, 0x10, 1]);
    let r = pb::AlarmResponse {
        header: header(),
        alarms: vec![Default::default()],
    };
    assert_eq!(enc(&r), [0x0a, 0, 0x12, 0]);

    assert_eq!(enc(&pb::HashKvRequest { revision: 3 }), [0x08, 3]);
    let h = pb::HashKvResponse {
        header: header(),
        hash: 1,
        compact_revision: 2,
    };
    assert_eq!(enc(&h), [0x0a, 0, 0x10, 1, 0x18, 2]);
    let h = pb::HashResponse {
        header: header(),
        hash: 1,
    };
    assert_eq!(enc(&h), [0x0a, 0, 0x10, 1]);

    let s = pb::SnapshotResponse {
        header: header(),
        remaining_bytes: 2,
        blob: b("x"),
    };
    assert_eq!(enc(&s), [0x0a, 0, 0x10, 2, 0x1a, 1, b'x']);
    assert_eq!(enc(&pb::MoveLeaderRequest { target_id: 5 }), [0x08, 5]);
}

#[test]
fn auth_fields() {
    let p = authpb::Permission {
        perm_type: authpb::permission::Type::Readwrite as i32,
        key: b("k"),
        range_end: b("l"),
    };
    assert_eq!(enc(&p), [0x08, 2, 0x12, 1, b'k', 0x1a, 1, b'l']);
    let u = authpb::User {
        name: b("n"),
        password: b("p"),
        roles: vec!["r".into()],
        options: Some(authpb::UserAddOptions { no_password: true }),
    };
    assert_eq!(
        enc(&u),
        [0x0a, 1, b'n', 0x12, 1, b'p', 0x1a, 1, b'r', 0x22, 2, 0x08, 1]
    );
    let r = authpb::Role {
        name: b("n"),
        key_permission: vec![Default::default()],
    };
    assert_eq!(enc(&r), [0x0a, 1, b'n', 0x12, 0]);

    let add = pb::AuthUserAddRequest {
        name: "n".into(),
        password: "p".into(),
        options: Some(Default::default()),
        hashed_password: "h".into(),
    };
    assert_eq!(
        enc(&add),
        [0x0a, 1, b'n', 0x12, 1, b'p', 0x1a, 0, 0x22, 1, b'h']
    );
    let grant = pb::AuthRoleGrantPermissionRequest {
        name: "r".into(),
        perm: Some(p),
    };
    assert_eq!(enc(&grant)[..3], [0x0a, 1, b'r']);
    assert_eq!(enc(&grant)[3], 0x12);
    let revoke = pb::AuthRoleRevokePermissionRequest {
        role: "r".into(),
        key: b("k"),
        range_end: b("l"),
    };
    assert_eq!(enc(&revoke), [0x0a, 1, b'r', 0x12, 1, b'k', 0x1a, 1, b'l']);
    let grant_role = pb::AuthUserGrantRoleRequest {
        user: "u".into(),
        role: "r".into(),
    };
    assert_eq!(enc(&grant_role), [0x0a, 1, b'u', 0x12, 1, b'r']);
    let token = pb::AuthenticateResponse {
        header: header(),
        token: "t".into(),
    };
    assert_eq!(enc(&token), [0x0a, 0, 0x12, 1, b't']);
    let status = pb::AuthStatusResponse {
        header: header(),
        enabled: true,
        auth_revision: 4,
    };
    assert_eq!(enc(&status), [0x0a, 0, 0x10, 1, 0x18, 4]);
}

#[test]
fn unknown_fields_from_newer_etcd_are_skipped() {
    // etcd 3.6 adds StatusResponse.storageVersion = 11 (string); a 3.6
    // client-side message must still decode.
    let mut bytes = enc(&pb::StatusResponse {
        leader: 4,
        ..Default::default()
    });
    bytes.extend_from_slice(&[0x5a, 1, b'x']);
    let s = pb::StatusResponse::decode(&bytes[..]).unwrap();
    assert_eq!(s.leader, 4);
}

#[test]
fn sett_native_messages_are_pinned() {
    use sett_proto::sett::v1 as native;
    let c = native::CommitRequest {
        txn: Some(native::TxnHandle {
            id: 1,
            read_revision: 2,
        }),
        reads: vec![native::KeyRange {
            key: b("a"),
            range_end: Bytes::new(),
        }],
        writes: vec![native::Write {
            op: Some(native::write::Op::Delete(native::Delete {
                key: b("d"),
                range_end: Bytes::new(),
            })),
        }],
    };
    assert_eq!(
        enc(&c),
        [
            0x0a, 4, 0x08, 1, 0x10, 2, // txn
            0x12, 3, 0x0a, 1, b'a', // reads
            0x1a, 5, 0x12, 3, 0x0a, 1, b'd' // writes: delete is op 2
        ]
    );
    let e = native::ErrorDetail {
        reason: native::ErrorReason::Conflict as i32,
        key: b("k"),
        revision: 9,
    };
    assert_eq!(enc(&e), [0x08, 1, 0x12, 1, b'k', 0x18, 9]);
}

#[test]
fn sett_raft_snapshot_chunks_are_pinned() {
    use sett_proto::sett::raft::v1 as raft;
    let first = raft::InstallSnapshotRequest {
        chunk: Some(raft::install_snapshot_request::Chunk::Header(
            raft::SnapshotHeader {
                peer: Some(raft::PeerHeader {
                    cluster_id: 1,
                    from: 2,
                    to: 3,
                }),
                vote: b("v"),
                meta: b("m"),
            },
        )),
    };
    assert_eq!(
        enc(&first),
        [0x0a, 14, 0x0a, 6, 0x08, 1, 0x10, 2, 0x18, 3, 0x12, 1, b'v', 0x1a, 1, b'm']
    );
    let data = raft::InstallSnapshotRequest {
        chunk: Some(raft::install_snapshot_request::Chunk::Data(b("x"))),
    };
    assert_eq!(enc(&data), [0x12, 1, b'x']);
    let last = raft::InstallSnapshotRequest {
        chunk: Some(raft::install_snapshot_request::Chunk::Trailer(
            raft::SnapshotTrailer {
                chunk_count: 1,
                size_bytes: 1,
            },
        )),
    };
    assert_eq!(enc(&last), [0x1a, 4, 0x08, 1, 0x10, 1]);
}
