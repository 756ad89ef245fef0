//! The engine-backed Raft log store: inclusive truncate and purge, the
//! purge point and vote across reopen, and acknowledged appends and votes
//! surviving a SIGKILL of the writing process.

use openraft::storage::{RaftLogReader, RaftLogStorage, RaftLogStorageExt};
use openraft::{CommittedLeaderId, EntryPayload};
use prost::Message;
use sett_engine::fs::FaultFs;
use sett_engine::Options;
use sett_proto::etcdserverpb::PutRequest;
use sett_server::raft::types::Vote;
use sett_server::raft::{Entry, LogId, LogStore, Request};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;

fn log_id(term: u64, index: u64) -> LogId {
    LogId::new(CommittedLeaderId::new(term, 1), index)
}

fn put(term: u64, index: u64) -> Entry {
    let req = PutRequest {
        key: format!("k{index}").into_bytes().into(),
        value: vec![b'v'; (index % 7) as usize * 300].into(),
        ..PutRequest::default()
    };
    Entry {
        log_id: log_id(term, index),
        payload: EntryPayload::Normal(Request::Put(req.encode_to_vec())),
    }
}

fn indexes(entries: &[Entry]) -> Vec<u64> {
    entries.iter().map(|e| e.log_id.index).collect()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

#[test]
fn truncate_and_purge_are_inclusive_and_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("raft");
    rt().block_on(async {
        let mut log = LogStore::open(&path).unwrap();
        log.blocking_append((0..=20).map(|i| put(1, i)))
            .await
            .unwrap();
        assert_eq!(
            indexes(&log.try_get_log_entries(..).await.unwrap()),
            (0..=20).collect::<Vec<_>>()
        );

        // truncate(15) removes 15 and everything after it.
        log.truncate(log_id(1, 15)).await.unwrap();
        let st = log.get_log_state().await.unwrap();
        assert_eq!(st.last_log_id, Some(log_id(1, 14)));
        assert_eq!(st.last_purged_log_id, None);
        assert!(log.try_get_log_entries(15..).await.unwrap().is_empty());

        // purge(5) removes 5 and everything before it.
        log.purge(log_id(1, 5)).await.unwrap();
        let st = log.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id, Some(log_id(1, 5)));
        assert_eq!(st.last_log_id, Some(log_id(1, 14)));
        assert_eq!(
            indexes(&log.try_get_log_entries(0..100).await.unwrap()),
            (6..=14).collect::<Vec<_>>()
        );
        assert_eq!(
            indexes(&log.try_get_log_entries(7..=9).await.unwrap()),
            vec![7, 8, 9]
        );
        log.save_vote(&Vote::new(3, 2)).await.unwrap();
        log.close().unwrap();

        let mut log = LogStore::open(&path).unwrap();
        let st = log.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id, Some(log_id(1, 5)));
        assert_eq!(st.last_log_id, Some(log_id(1, 14)));
        assert_eq!(log.read_vote().await.unwrap(), Some(Vote::new(3, 2)));

        // Purge everything: the log is empty and reports the purge point.
        log.purge(log_id(1, 14)).await.unwrap();
        assert!(log.try_get_log_entries(..).await.unwrap().is_empty());
        log.close().unwrap();

        let mut log = LogStore::open(&path).unwrap();
        let st = log.get_log_state().await.unwrap();
        assert_eq!(st.last_purged_log_id, Some(log_id(1, 14)));
        assert_eq!(st.last_log_id, Some(log_id(1, 14)));
        // The log continues after the purge point, with a new term.
        log.blocking_append((15..=17).map(|i| put(2, i)))
            .await
            .unwrap();
        let st = log.get_log_state().await.unwrap();
        assert_eq!(st.last_log_id, Some(log_id(2, 17)));
        assert_eq!(
            indexes(&log.try_get_log_entries(..).await.unwrap()),
            vec![15, 16, 17]
        );
        log.close().unwrap();
    });
}

#[test]
fn truncate_then_append_replaces_the_suffix() {
    let dir = tempfile::tempdir().unwrap();
    rt().block_on(async {
        let mut log = LogStore::open(dir.path()).unwrap();
        log.blocking_append((1..=10).map(|i| put(1, i)))
            .await
            .unwrap();
        log.truncate(log_id(1, 6)).await.unwrap();
        log.blocking_append((6..=8).map(|i| put(2, i)))
            .await
            .unwrap();
        let got = log.try_get_log_entries(..).await.unwrap();
        assert_eq!(indexes(&got), (1..=8).collect::<Vec<_>>());
        assert!(got[..5].iter().all(|e| e.log_id.leader_id.term == 1));
        assert!(got[5..].iter().all(|e| e.log_id.leader_id.term == 2));
        assert_eq!(
            log.get_log_state().await.unwrap().last_log_id,
            Some(log_id(2, 8))
        );
        log.close().unwrap();
    });
}

fn on_fault_fs(fs: &FaultFs) -> Options {
    Options {
        fs: Some(Arc::new(fs.clone())),
        memtable_size: 1 << 20,
        ..Options::new("/raft")
    }
}

/// What a store must show after a power cut.
#[derive(Debug, Default, Clone, PartialEq)]
struct Model {
    entries: Vec<Entry>,
    last_purged: Option<LogId>,
    vote: Option<Vote>,
}

/// Opens the power-cut image of `fs` and compares it with `model`.
async fn check_crash_image(fs: &FaultFs, model: &Model, step: &str) {
    let image = fs.crash();
    let mut log = LogStore::open_with(on_fault_fs(&image)).unwrap();
    let got = Model {
        entries: log.try_get_log_entries(..).await.unwrap(),
        last_purged: log.get_log_state().await.unwrap().last_purged_log_id,
        vote: log.read_vote().await.unwrap(),
    };
    assert!(
        got == *model,
        "after {step}: image differs from acknowledged state"
    );
    let st = log.get_log_state().await.unwrap();
    let want_last = model.entries.last().map(|e| e.log_id).or(model.last_purged);
    assert_eq!(st.last_log_id, want_last, "after {step}");
    log.close().unwrap();
}

/// Every acknowledged operation is in the image a power cut leaves right
/// after it: the callback and the returns come after the fsync.
#[test]
fn acknowledged_operations_survive_a_power_cut() {
    let fs = FaultFs::new();
    rt().block_on(async {
        let mut log = LogStore::open_with(on_fault_fs(&fs)).unwrap();
        let mut model = Model::default();
        for start in (1..=30u64).step_by(3) {
            let batch: Vec<Entry> = (start..start + 3).map(|i| put(1, i)).collect();
            log.blocking_append(batch.clone()).await.unwrap();
            model.entries.extend(batch);
            check_crash_image(&fs, &model, &format!("append {start}")).await;
        }
        log.save_vote(&Vote::new(2, 1)).await.unwrap();
        model.vote = Some(Vote::new(2, 1));
        check_crash_image(&fs, &model, "vote").await;

        log.truncate(log_id(1, 25)).await.unwrap();
        model.entries.retain(|e| e.log_id.index < 25);
        check_crash_image(&fs, &model, "truncate").await;

        let batch: Vec<Entry> = (25..=40).map(|i| put(2, i)).collect();
        log.blocking_append(batch.clone()).await.unwrap();
        model.entries.extend(batch);
        check_crash_image(&fs, &model, "append after truncate").await;

        for upto in [10u64, 30, 40] {
            let id = model
                .entries
                .iter()
                .find(|e| e.log_id.index == upto)
                .unwrap()
                .log_id;
            log.purge(id).await.unwrap();
            model.entries.retain(|e| e.log_id.index > upto);
            model.last_purged = Some(id);
            check_crash_image(&fs, &model, &format!("purge {upto}")).await;
        }
        log.save_vote(&Vote::new(3, 2)).await.unwrap();
        model.vote = Some(Vote::new(3, 2));
        check_crash_image(&fs, &model, "second vote").await;
        log.close().unwrap();
    });
}

const CHILD_DIR_ENV: &str = "SETT_RAFT_LOG_CHILD_DIR";

/// Runs only as the child of `acknowledged_appends_survive_sigkill`:
/// appends one entry and saves one vote at a time, printing an
/// acknowledgement after each has returned, until killed.
#[test]
fn child_appends_until_killed() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    rt().block_on(async {
        let mut log = LogStore::open(Path::new(&dir)).unwrap();
        for i in 1..100_000u64 {
            log.blocking_append([put(i, i)]).await.unwrap();
            log.save_vote(&Vote::new(i, 1)).await.unwrap();
            println!("acked {i}");
        }
    });
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_appends_until_killed",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_DIR_ENV, dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut acked = 0u64;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    while acked < 200 {
        let line = lines.next().expect("child stopped early").unwrap();
        if let Some(n) = line.strip_prefix("acked ") {
            acked = n.parse().unwrap();
        }
    }
    child.kill().unwrap(); // SIGKILL: no clean close
    child.wait().unwrap();
    // Acknowledgements printed after the last one read may be lost with
    // the pipe; the store must hold at least everything read.
    rt().block_on(async {
        let mut log = LogStore::open(dir.path()).unwrap();
        let entries = log.try_get_log_entries(..).await.unwrap();
        assert!(
            entries.len() as u64 >= acked,
            "{} entries, {acked} acked",
            entries.len()
        );
        assert_eq!(
            indexes(&entries),
            (1..=entries.len() as u64).collect::<Vec<_>>()
        );
        for e in &entries {
            assert_eq!(e, &put(e.log_id.index, e.log_id.index));
        }
        let vote = log.read_vote().await.unwrap().expect("vote survives");
        assert!(
            vote >= Vote::new(acked, 1),
            "vote {vote} older than acked {acked}"
        );
        log.db().check().unwrap();
        log.close().unwrap();
    });
}
