//! Three members in one process talking real gRPC over 127.0.0.1: a leader
//! is elected, writes replicate, a follower forwards a write to the leader,
//! a message for another cluster is refused, and a member stopped while
//! the leader purged its log restarts from its data directory alone and
//! catches up through a snapshot streamed over gRPC; a member started with
//! `--initial-cluster-state existing` joins once the leader adds it.

use prost::Message;
use sett_proto::etcdserverpb::PutRequest;
use sett_proto::sett::raft::v1 as pb;
use sett_server::config::{ClusterState, Flags, MemberConfig};
use sett_server::network::ForwardError;
use sett_server::node::{bind, Node};
use sett_server::raft::types::{SnapshotMeta, Vote};
use sett_server::raft::{KvApplier, NodeId, Request};
use sett_server::testing::runtime;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

const WAIT: Option<Duration> = Some(Duration::from_secs(30));
const TIMEOUT: Duration = Duration::from_secs(10);

type Member = Node<KvApplier>;

fn put(k: &str, v: &str) -> Request {
    Request::Put(
        PutRequest {
            key: k.as_bytes().to_vec().into(),
            value: v.as_bytes().to_vec().into(),
            ..PutRequest::default()
        }
        .encode_to_vec(),
    )
}

fn value(m: &Member, k: &str) -> Option<String> {
    m.applier()
        .get(k.as_bytes())
        .unwrap()
        .map(|v| String::from_utf8(v).unwrap())
}

fn flags(name: &str, dir: &Path, peer: SocketAddr, cluster: &str) -> Flags {
    Flags {
        name: Some(name.into()),
        data_dir: Some(dir.to_owned()),
        listen_peer_urls: Some(format!("http://{peer}")),
        initial_advertise_peer_urls: Some(format!("http://{peer}")),
        initial_cluster: Some(cluster.into()),
        initial_cluster_token: Some("net-cluster-test".into()),
        heartbeat_interval: Some(50),
        election_timeout: Some(500),
        snapshot_count: Some(40),
        experimental_snapshot_catchup_entries: Some(0),
        ..Flags::default()
    }
}

async fn start(cfg: MemberConfig, listener: tokio::net::TcpListener) -> Member {
    Node::start_with_listeners(cfg, |d| KvApplier::open(d), vec![listener])
        .await
        .unwrap()
}

async fn applied(m: &Member, index: u64) {
    m.raft()
        .wait(WAIT)
        .applied_index_at_least(Some(index), "applied")
        .await
        .unwrap();
}

#[test]
fn grpc_cluster_replicates_forwards_snapshots_and_restarts() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let dir4 = tempfile::tempdir().unwrap();
    let rt = runtime();
    rt.block_on(async {
        let listeners: Vec<_> = (0..3)
            .map(|_| bind("127.0.0.1:0".parse().unwrap()).unwrap())
            .collect();
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().unwrap()).collect();
        let cluster = (0..3)
            .map(|i| format!("n{i}=http://{}", addrs[i]))
            .collect::<Vec<_>>()
            .join(",");
        let mut members: Vec<Option<Member>> = Vec::new();
        for (i, l) in listeners.into_iter().enumerate() {
            let cfg = flags(&format!("n{i}"), dirs[i].path(), addrs[i], &cluster)
                .resolve()
                .unwrap();
            members.push(Some(start(cfg, l).await));
        }

        // A leader is elected and every member sees it.
        let metrics = members[0]
            .as_ref()
            .unwrap()
            .raft()
            .wait(WAIT)
            .metrics(|m| m.current_leader.is_some(), "leader elected")
            .await
            .unwrap();
        let leader_id: NodeId = metrics.current_leader.unwrap();
        let leader = members
            .iter()
            .position(|m| m.as_ref().unwrap().config().node_id == leader_id)
            .unwrap();
        let followers: Vec<usize> = (0..3).filter(|&i| i != leader).collect();

        // A write on the leader replicates to every state machine.
        let resp = members[leader]
            .as_ref()
            .unwrap()
            .raft()
            .client_write(put("a", "1"))
            .await
            .unwrap();
        for m in members.iter().flatten() {
            applied(m, resp.log_id.index).await;
            assert_eq!(value(m, "a").as_deref(), Some("1"));
        }

        // A follower forwards a write to the leader over gRPC.
        let follower = members[followers[0]].as_ref().unwrap();
        let resp = follower.write(put("b", "2"), TIMEOUT).await.unwrap();
        for m in members.iter().flatten() {
            applied(m, resp.log_id.index).await;
            assert_eq!(value(m, "b").as_deref(), Some("2"));
        }

        // A follower given a forwarded write refuses and names the leader.
        let other = members[followers[1]].as_ref().unwrap();
        let err = follower
            .network()
            .forward(
                other.config().node_id,
                &other.config().own_node(),
                &put("c", "3"),
                TIMEOUT,
            )
            .await
            .unwrap_err();
        match err {
            ForwardError::Remote(e) => {
                let fwd = e.forward_to_leader().expect("ForwardToLeader");
                assert_eq!(fwd.leader_id, Some(leader_id));
            }
            other => panic!("expected ForwardToLeader, got {other}"),
        }

        // A message from another cluster, or for another member, is
        // refused before its payload is looked at.
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", addrs[leader]))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut raw = pb::raft_client::RaftClient::new(channel);
        let wrong_cluster = pb::VoteRequest {
            header: Some(pb::PeerHeader {
                cluster_id: 1,
                from: 9,
                to: leader_id,
            }),
            payload: b"not decoded".to_vec().into(),
        };
        let status = raw.vote(wrong_cluster).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);
        let wrong_member = pb::VoteRequest {
            header: Some(pb::PeerHeader {
                cluster_id: members[leader].as_ref().unwrap().config().cluster_id,
                from: 9,
                to: leader_id.wrapping_add(1),
            }),
            payload: b"not decoded".to_vec().into(),
        };
        let status = raw.vote(wrong_member).await.unwrap_err();
        assert_eq!(status.code(), tonic::Code::FailedPrecondition);

        // A snapshot stream whose trailer disagrees with what arrived, or
        // that ends without a trailer, installs nothing.
        let follower_addr = addrs[followers[0]];
        let follower_id = members[followers[0]].as_ref().unwrap().config().node_id;
        let cluster_id = members[leader].as_ref().unwrap().config().cluster_id;
        let channel = tonic::transport::Endpoint::from_shared(format!("http://{follower_addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut raw = pb::raft_client::RaftClient::new(channel);
        let snapshot_stream = |trailer: Option<pb::SnapshotTrailer>| {
            use pb::install_snapshot_request::Chunk;
            let header = pb::SnapshotHeader {
                peer: Some(pb::PeerHeader {
                    cluster_id,
                    from: 9,
                    to: follower_id,
                }),
                vote: postcard::to_allocvec(&Vote::new(0, 9)).unwrap().into(),
                meta: postcard::to_allocvec(&SnapshotMeta::default())
                    .unwrap()
                    .into(),
            };
            let mut msgs = vec![
                Chunk::Header(header),
                Chunk::Data(b"not a snapshot".to_vec().into()),
            ];
            msgs.extend(trailer.map(Chunk::Trailer));
            tokio_stream::iter(
                msgs.into_iter()
                    .map(|c| pb::InstallSnapshotRequest { chunk: Some(c) }),
            )
        };
        let status = raw
            .install_snapshot(snapshot_stream(Some(pb::SnapshotTrailer {
                chunk_count: 2,
                size_bytes: 14,
            })))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::DataLoss);
        let status = raw
            .install_snapshot(snapshot_stream(None))
            .await
            .unwrap_err();
        assert_eq!(status.code(), tonic::Code::Aborted);
        let m = members[followers[0]]
            .as_ref()
            .unwrap()
            .raft()
            .metrics()
            .borrow()
            .clone();
        assert!(m.snapshot.is_none(), "nothing installed");

        // Stop a follower; the others go on writing past several snapshots
        // and purge the log it would need.
        let lagging = followers[1];
        members[lagging].take().unwrap().shutdown().await.unwrap();
        let mut last = 0;
        for i in 0..150 {
            last = members[leader]
                .as_ref()
                .unwrap()
                .raft()
                .client_write(put(&format!("k{i:03}"), &format!("v{i}")))
                .await
                .unwrap()
                .log_id
                .index;
        }
        let m = members[leader]
            .as_ref()
            .unwrap()
            .raft()
            .wait(WAIT)
            .metrics(
                |m| m.purged.is_some_and(|p| p.index > resp.log_id.index),
                "leader purged the log the stopped member lacks",
            )
            .await
            .unwrap();
        assert!(m.snapshot.is_some());

        // Restart it from its data directory alone: identity, URLs and
        // timeouts come from member.json.
        let cfg = Flags {
            data_dir: Some(dirs[lagging].path().to_owned()),
            ..Flags::default()
        }
        .resolve()
        .unwrap();
        assert_eq!(cfg.name, format!("n{lagging}"));
        assert_eq!(
            cfg.listen_peer_urls,
            vec![format!("http://{}", addrs[lagging])]
        );
        let restarted = Node::start(cfg, |d| KvApplier::open(d)).await.unwrap();
        assert_eq!(value(&restarted, "b").as_deref(), Some("2"));
        applied(&restarted, last).await;
        let m = restarted.raft().metrics().borrow().clone();
        let snap = m.snapshot.expect("caught up through a snapshot");
        assert!(snap.index > resp.log_id.index);
        for i in 0..150 {
            assert_eq!(
                value(&restarted, &format!("k{i:03}")),
                Some(format!("v{i}"))
            );
        }
        members[lagging] = Some(restarted);

        // The restarted member takes part in new writes (and forwards).
        let resp = members[lagging]
            .as_ref()
            .unwrap()
            .write(put("z", "26"), TIMEOUT)
            .await
            .unwrap();
        for m in members.iter().flatten() {
            applied(m, resp.log_id.index).await;
            assert_eq!(value(m, "z").as_deref(), Some("26"));
        }

        // A fourth member started with `--initial-cluster-state existing`
        // waits uninitialized until the leader adds it, then catches up.
        let l4 = bind("127.0.0.1:0".parse().unwrap()).unwrap();
        let a4 = l4.local_addr().unwrap();
        let mut f4 = flags("n3", dir4.path(), a4, &format!("{cluster},n3=http://{a4}"));
        f4.initial_cluster_state = Some(ClusterState::Existing);
        let joined = start(f4.resolve().unwrap(), l4).await;
        assert!(!joined.raft().is_initialized().await.unwrap());
        let leader_raft = members[leader].as_ref().unwrap().raft().clone();
        let added = leader_raft
            .add_learner(joined.config().node_id, joined.config().own_node(), true)
            .await
            .unwrap();
        applied(&joined, added.log_id.index).await;
        assert_eq!(value(&joined, "z").as_deref(), Some("26"));
        assert_eq!(value(&joined, "k149").as_deref(), Some("v149"));
        members.push(Some(joined));

        for m in members.into_iter().flatten() {
            m.shutdown().await.unwrap();
        }
    });
}
