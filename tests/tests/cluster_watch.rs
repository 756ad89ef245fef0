//! etcd 3.4 Watch semantics through a real etcd client against a real
//! three-member cluster: single-key, prefix and from-key watches; event
//! contents (create/mod revision, version, DELETE tombstones); replay from
//! an old `start_revision` and waiting for a future one; the
//! NOPUT/NODELETE filters and `prev_kv`; client-chosen and duplicate watch
//! ids; empty ranges; progress requests and progress notifications;
//! cancel; watches cancelled by compaction; watches served by followers,
//! and a follower's watches after a write made through it; a reader that
//! stops polling while writers go on; many watchers (1,000 on one key,
//! 10,000 on distinct keys); resuming a watch after a reconnect, also on
//! another member after the serving one was SIGKILLed, and replay on that
//! member once restarted.
//!
//! Every step checks what a watcher receives against a model of the
//! writes it made: the exact list of events, in order, each exactly once.
//! A step reads until every watcher has as many events as the model
//! predicts, then sends a progress request and asserts that nothing but
//! the progress response follows (a progress response at revision R
//! promises that everything up to R was delivered).
//!
//! One cluster serves the whole file; each step works under its own key
//! prefix (`w1/`, `w2/`, …), reads the revisions it needs from the
//! responses of its own writes, and runs as a task of its own, so that a
//! failing step is reported and the later ones still run. The member kill
//! runs last. Every wait is bounded by a timeout; no assertion is about
//! timing.
//!
//! Needs `target/<profile>/sett` (`cargo build -p sett-server --bin sett`).
//! `SETT_CLUSTER_BIN=/usr/bin/etcd` runs the same steps against etcd.

#[path = "../src/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use cluster::{assert_steps_passed, put, rev, step, text, Cluster, ClusterOptions};
use etcd_client::{
    Client, DeleteOptions, Event, EventType, GetOptions, Txn, TxnOp, WatchFilterType, WatchOptions,
    WatchResponse, WatchStream,
};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::time::timeout;

/// Bound on waiting for one watch response.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(30);
/// Bound on a whole batch of writes made by one writer task.
const WRITER_TIMEOUT: Duration = Duration::from_secs(300);
/// The `watch_id` of the answer to a progress request.
const PROGRESS_WATCH_ID: i64 = -1;
/// etcd's cancel reason for a client-chosen id already in use.
const DUPLICATE_WATCH_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
/// `--experimental-watch-progress-notify-interval` of the cluster.
const PROGRESS_NOTIFY_SECS: u64 = 1;
/// Most empty responses (progress notifications) tolerated while reading.
const EMPTY_RESPONSES_MAX: usize = 1_000;

// ---- events and the model they are checked against ----

/// An event reduced to what the tests compare.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ev {
    put: bool,
    key: String,
    value: String,
    create_rev: i64,
    mod_rev: i64,
    version: i64,
    /// `(value, mod_revision)` of the previous kv, when it was asked for.
    prev: Option<(String, i64)>,
}

fn ev(e: &Event) -> Ev {
    let kv = e.kv().expect("an event carries its kv");
    Ev {
        put: e.event_type() == EventType::Put,
        key: text(kv.key()),
        value: text(kv.value()),
        create_rev: kv.create_revision(),
        mod_rev: kv.mod_revision(),
        version: kv.version(),
        prev: e.prev_kv().map(|p| (text(p.value()), p.mod_revision())),
    }
}

/// The live keys of the store and every event the writes produced, in
/// revision order (and, within a revision, in the order etcd emits them).
#[derive(Debug, Default)]
struct Model {
    /// key → (value, create revision, mod revision, version)
    live: BTreeMap<String, (String, i64, i64, i64)>,
    events: Vec<Ev>,
}

impl Model {
    fn put(&mut self, key: &str, value: &str, rev: i64) {
        let prev = self.live.get(key).cloned();
        let (create_rev, version) = match &prev {
            Some((_, create, _, version)) => (*create, version + 1),
            None => (rev, 1),
        };
        self.live
            .insert(key.to_owned(), (value.to_owned(), create_rev, rev, version));
        self.events.push(Ev {
            put: true,
            key: key.to_owned(),
            value: value.to_owned(),
            create_rev,
            mod_rev: rev,
            version,
            prev: prev.map(|(v, _, m, _)| (v, m)),
        });
    }

    fn delete(&mut self, key: &str, rev: i64) {
        let Some((value, _, mod_rev, _)) = self.live.remove(key) else {
            return;
        };
        // A DELETE event's kv is a tombstone: the key and the deletion
        // revision, nothing else.
        self.events.push(Ev {
            put: false,
            key: key.to_owned(),
            value: String::new(),
            create_rev: 0,
            mod_rev: rev,
            version: 0,
            prev: Some((value, mod_rev)),
        });
    }

    /// Deletes every live key starting with `prefix`, in key order.
    fn delete_prefix(&mut self, prefix: &str, rev: i64) {
        let keys: Vec<String> = self
            .live
            .range(prefix.to_owned()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(k, _)| k.clone())
            .collect();
        for k in keys {
            self.delete(&k, rev);
        }
    }

    /// What a watcher on `range` should receive from revision `from` on.
    fn expect(&self, range: impl Fn(&str) -> bool, from: i64, view: View) -> Vec<Ev> {
        self.events
            .iter()
            .filter(|e| e.mod_rev >= from && range(&e.key))
            .filter(|e| if e.put { !view.no_put } else { !view.no_delete })
            .map(|e| {
                let mut e = e.clone();
                if !view.prev_kv {
                    e.prev = None;
                }
                e
            })
            .collect()
    }
}

/// A watcher's options as far as the model cares.
#[derive(Debug, Clone, Copy, Default)]
struct View {
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
}

const PLAIN: View = View {
    no_put: false,
    no_delete: false,
    prev_kv: false,
};

// ---- client helpers ----

async fn delete(c: &mut Client, key: &str, opts: Option<DeleteOptions>) -> i64 {
    let resp = c
        .delete(key, opts)
        .await
        .unwrap_or_else(|e| panic!("delete {key}: {e}"));
    rev(resp.header())
}

async fn current_rev(c: &mut Client) -> i64 {
    let resp = c
        .get("\0", Some(GetOptions::new().with_count_only()))
        .await
        .expect("count-only get");
    rev(resp.header())
}

/// Puts and deletes applied both to the cluster and to the model.
async fn m_put(c: &mut Client, m: &mut Model, key: &str, value: &str) -> i64 {
    let r = put(c, key, value).await;
    m.put(key, value, r);
    r
}

async fn m_delete(c: &mut Client, m: &mut Model, key: &str) -> i64 {
    let r = delete(c, key, None).await;
    m.delete(key, r);
    r
}

async fn m_delete_prefix(c: &mut Client, m: &mut Model, prefix: &str) -> i64 {
    let r = delete(c, prefix, Some(DeleteOptions::new().with_prefix())).await;
    m.delete_prefix(prefix, r);
    r
}

/// One txn putting every `(key, value)`; all share one revision.
async fn m_put_all(c: &mut Client, m: &mut Model, kvs: &[(String, String)]) -> i64 {
    let ops: Vec<TxnOp> = kvs
        .iter()
        .map(|(k, v)| TxnOp::put(k.as_str(), v.as_str(), None))
        .collect();
    let resp = c
        .txn(Txn::new().and_then(ops))
        .await
        .unwrap_or_else(|e| panic!("txn of {} puts: {e}", kvs.len()));
    assert!(resp.succeeded(), "a txn without compares succeeds");
    let r = rev(resp.header());
    for (k, v) in kvs {
        m.put(k, v, r);
    }
    r
}

// ---- watch helpers ----

/// The next response on `stream`, bounded by [`RESPONSE_TIMEOUT`].
async fn recv(stream: &mut WatchStream, what: &str) -> WatchResponse {
    match timeout(RESPONSE_TIMEOUT, stream.message()).await {
        Ok(Ok(Some(r))) => r,
        Ok(Ok(None)) => panic!("{what}: the watch stream ended"),
        Ok(Err(e)) => panic!("{what}: watch stream error: {e}"),
        Err(_) => panic!("{what}: no watch response within {RESPONSE_TIMEOUT:?}"),
    }
}

/// Reads the created response of a watch just requested; returns its id.
async fn created(stream: &mut WatchStream, what: &str) -> i64 {
    let r = recv(stream, what).await;
    assert!(
        r.created() && !r.canceled() && r.events().is_empty(),
        "{what}: expected a created response, got {r:?}"
    );
    r.watch_id()
}

/// Opens a stream with one watch; returns it and the watch id.
async fn open(c: &mut Client, key: &str, opts: WatchOptions, what: &str) -> (WatchStream, i64) {
    let mut stream = c
        .watch(key, Some(opts))
        .await
        .unwrap_or_else(|e| panic!("{what}: open watch stream: {e}"));
    let id = created(&mut stream, what).await;
    (stream, id)
}

/// Adds a watch to an open stream; returns its id.
async fn add(stream: &mut WatchStream, key: &str, opts: WatchOptions, what: &str) -> i64 {
    stream
        .watch(key, Some(opts))
        .await
        .unwrap_or_else(|e| panic!("{what}: send create: {e}"));
    created(stream, what).await
}

/// Reads until every watch in `want` has at least its count of events;
/// returns each watch's events in the order received. Fails on a cancel,
/// on a created response, and on events of a watch not in `want`.
async fn collect(
    stream: &mut WatchStream,
    want: &BTreeMap<i64, usize>,
    what: &str,
) -> BTreeMap<i64, Vec<Ev>> {
    let mut got: BTreeMap<i64, Vec<Ev>> = want.keys().map(|id| (*id, Vec::new())).collect();
    let mut empty = 0usize;
    while want.iter().any(|(id, n)| got[id].len() < *n) {
        let r = recv(stream, what).await;
        assert!(
            !r.canceled() && !r.created(),
            "{what}: unexpected response {r:?}"
        );
        if r.events().is_empty() {
            empty += 1;
            assert!(
                empty <= EMPTY_RESPONSES_MAX,
                "{what}: too many empty responses"
            );
            continue;
        }
        let list = got
            .get_mut(&r.watch_id())
            .unwrap_or_else(|| panic!("{what}: events for unknown watch: {r:?}"));
        list.extend(r.events().iter().map(ev));
        let header_rev = rev(r.header());
        let last = list.last().map_or(0, |e| e.mod_rev);
        assert!(
            header_rev >= last,
            "{what}: header revision {header_rev} below the events' revision {last}"
        );
    }
    got
}

/// Sends a progress request and reads until its answer, failing on any
/// event before it: everything expected was already read. The answer has
/// watch id -1 and a revision of at least `min_rev`; returns it.
async fn expect_quiet(stream: &mut WatchStream, min_rev: i64, what: &str) -> i64 {
    stream
        .request_progress()
        .await
        .unwrap_or_else(|e| panic!("{what}: progress request: {e}"));
    for _ in 0..EMPTY_RESPONSES_MAX {
        let r = recv(stream, what).await;
        assert!(
            r.events().is_empty(),
            "{what}: events beyond the expected ones: {:?}",
            r.events().iter().map(ev).collect::<Vec<_>>()
        );
        assert!(
            !r.canceled() && !r.created(),
            "{what}: unexpected response {r:?}"
        );
        if r.watch_id() == PROGRESS_WATCH_ID {
            let at = rev(r.header());
            assert!(
                at >= min_rev,
                "{what}: progress at revision {at}, below {min_rev}"
            );
            return at;
        }
    }
    panic!("{what}: no answer to the progress request");
}

/// Asserts that `got` is exactly `want`, naming the first difference.
#[track_caller]
fn assert_events(got: &[Ev], want: &[Ev], what: &str) {
    if got == want {
        return;
    }
    let at = got
        .iter()
        .zip(want)
        .position(|(g, w)| g != w)
        .unwrap_or(got.len().min(want.len()));
    panic!(
        "{what}: {} events received, {} expected; first difference at #{at}:\n  got  {:?}\n  want {:?}",
        got.len(),
        want.len(),
        got.get(at),
        want.get(at)
    );
}

fn prefix_of(p: &'static str) -> impl Fn(&str) -> bool {
    move |k: &str| k.starts_with(p)
}

// ---- the steps ----

/// One stream, three watches: a single key, a prefix and a from-key range
/// (`range_end = "\0"`), over puts, overwrites, deletes, a multi-key txn
/// and a range delete.
async fn key_prefix_from_key(mut client: Client) {
    let c = &mut client;
    let what = "key/prefix/from-key";
    let (mut stream, w_key) = open(c, "w1/k", WatchOptions::new(), what).await;
    let w_prefix = add(&mut stream, "w1/", WatchOptions::new().with_prefix(), what).await;
    let w_from = add(
        &mut stream,
        "w1/j",
        WatchOptions::new().with_from_key(),
        what,
    )
    .await;
    let ids = [w_key, w_prefix, w_from];
    let mut distinct = ids.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), 3, "{what}: watch ids {ids:?} not distinct");

    let mut m = Model::default();
    let from = current_rev(c).await + 1;
    m_put(c, &mut m, "w1/a", "a1").await;
    m_put(c, &mut m, "w1/k", "k1").await;
    m_put(c, &mut m, "w1/k", "k2").await;
    m_put(c, &mut m, "w1/z", "z1").await;
    m_put(c, &mut m, "w0/k", "outside every range").await;
    m_delete(c, &mut m, "w1/k").await;
    // Two puts in one txn: one revision, two events, in op order.
    m_put_all(
        c,
        &mut m,
        &[("w1/m".into(), "m1".into()), ("w1/a".into(), "a2".into())],
    )
    .await;
    // Beyond the prefix but inside the from-key range.
    m_put(c, &mut m, "w2x", "only from-key").await;
    // A range delete: one revision, one event per key, in key order.
    m_delete_prefix(c, &mut m, "w1/").await;
    let last = m_put(c, &mut m, "w1/k", "k3").await;

    let want_key = m.expect(|k| k == "w1/k", from, PLAIN);
    let want_prefix = m.expect(prefix_of("w1/"), from, PLAIN);
    let want_from = m.expect(|k| k >= "w1/j", from, PLAIN);
    assert_eq!(want_key.len(), 4);
    assert_eq!(want_prefix.len(), 11);
    assert_eq!(want_from.len(), 9);
    let want = BTreeMap::from([
        (w_key, want_key.len()),
        (w_prefix, want_prefix.len()),
        (w_from, want_from.len()),
    ]);
    let got = collect(&mut stream, &want, what).await;
    assert_events(&got[&w_key], &want_key, "single-key watch");
    assert_events(&got[&w_prefix], &want_prefix, "prefix watch");
    assert_events(&got[&w_from], &want_from, "from-key watch");
    expect_quiet(&mut stream, last, what).await;
}

/// A watch from an old `start_revision` replays the history in order,
/// then follows new writes.
async fn replay(mut client: Client) {
    let c = &mut client;
    let what = "replay";
    let mut m = Model::default();
    let mut revs = Vec::new();
    for i in 1..=5 {
        revs.push(m_put(c, &mut m, "w2/k", &format!("v{i}")).await);
    }
    m_put(c, &mut m, "w2/other", "o1").await;
    m_delete(c, &mut m, "w2/k").await;
    m_put(c, &mut m, "w2/k", "again").await;

    // From the second put: four puts, a delete and a re-creation.
    let (mut key_stream, w_key) = open(
        c,
        "w2/k",
        WatchOptions::new().with_start_revision(revs[1]),
        what,
    )
    .await;
    // From the very first put, the whole prefix, with previous kvs.
    let (mut prefix_stream, w_prefix) = open(
        c,
        "w2/",
        WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_start_revision(revs[0]),
        what,
    )
    .await;
    m_put(c, &mut m, "w2/k", "live1").await;
    let last = m_put(c, &mut m, "w2/other", "o2").await;

    let want_key = m.expect(|k| k == "w2/k", revs[1], PLAIN);
    assert_eq!(want_key.len(), 7);
    let with_prev = View {
        prev_kv: true,
        ..PLAIN
    };
    let want_prefix = m.expect(prefix_of("w2/"), revs[0], with_prev);
    assert_eq!(want_prefix.len(), 10);
    let got = collect(
        &mut key_stream,
        &BTreeMap::from([(w_key, want_key.len())]),
        what,
    )
    .await;
    assert_events(&got[&w_key], &want_key, "replay of one key");
    // The last write is outside this watch's range; the step's member is
    // only known to have applied up to the last event of the range (see
    // `follower_applies_own_writes` for the stronger guarantee).
    let key_last = want_key.last().expect("events").mod_rev;
    expect_quiet(&mut key_stream, key_last, what).await;
    let got = collect(
        &mut prefix_stream,
        &BTreeMap::from([(w_prefix, want_prefix.len())]),
        what,
    )
    .await;
    assert_events(&got[&w_prefix], &want_prefix, "replay of a prefix");
    expect_quiet(&mut prefix_stream, last, what).await;
}

/// NOPUT, NODELETE and `prev_kv`, each on its own watch of one stream.
async fn filters_and_prev_kv(mut client: Client) {
    let c = &mut client;
    let what = "filters";
    let (mut stream, w_noput) = open(
        c,
        "w3/",
        WatchOptions::new()
            .with_prefix()
            .with_filters([WatchFilterType::NoPut]),
        what,
    )
    .await;
    let w_nodel = add(
        &mut stream,
        "w3/",
        WatchOptions::new()
            .with_prefix()
            .with_filters([WatchFilterType::NoDelete]),
        what,
    )
    .await;
    let w_prev = add(
        &mut stream,
        "w3/",
        WatchOptions::new().with_prefix().with_prev_key(),
        what,
    )
    .await;
    let w_both = add(
        &mut stream,
        "w3/",
        WatchOptions::new()
            .with_prefix()
            .with_prev_key()
            .with_filters([WatchFilterType::NoPut, WatchFilterType::NoDelete]),
        what,
    )
    .await;

    let mut m = Model::default();
    let from = current_rev(c).await + 1;
    m_put(c, &mut m, "w3/a", "a1").await;
    m_put(c, &mut m, "w3/a", "a2").await;
    m_delete(c, &mut m, "w3/a").await;
    m_put(c, &mut m, "w3/b", "b1").await;
    m_put(c, &mut m, "w3/a", "a3").await;
    m_delete_prefix(c, &mut m, "w3/").await;
    let last = m_put(c, &mut m, "w3/c", "c1").await;

    let all = prefix_of("w3/");
    let no_put = View {
        no_put: true,
        ..PLAIN
    };
    let no_delete = View {
        no_delete: true,
        ..PLAIN
    };
    let with_prev = View {
        prev_kv: true,
        ..PLAIN
    };
    let want_noput = m.expect(&all, from, no_put);
    let want_nodel = m.expect(&all, from, no_delete);
    let want_prev = m.expect(&all, from, with_prev);
    assert_eq!(want_noput.len(), 3);
    assert_eq!(want_nodel.len(), 5);
    assert_eq!(want_prev.len(), 8);
    assert!(want_noput.iter().all(|e| !e.put));
    assert!(want_nodel.iter().all(|e| e.put));
    // The model's previous kvs, spelled out once: the second put of w3/a
    // follows "a1", every delete carries the value it removed, a creation
    // has none.
    let prevs: Vec<Option<&str>> = want_prev
        .iter()
        .map(|e| e.prev.as_ref().map(|(v, _)| v.as_str()))
        .collect();
    assert_eq!(
        prevs,
        [
            None,
            Some("a1"),
            Some("a2"),
            None,
            None,
            Some("a3"),
            Some("b1"),
            None
        ]
    );
    let want = BTreeMap::from([
        (w_noput, want_noput.len()),
        (w_nodel, want_nodel.len()),
        (w_prev, want_prev.len()),
        (w_both, 0),
    ]);
    let got = collect(&mut stream, &want, what).await;
    assert_events(&got[&w_noput], &want_noput, "NOPUT watch");
    assert_events(&got[&w_nodel], &want_nodel, "NODELETE watch");
    assert_events(&got[&w_prev], &want_prev, "prev_kv watch");
    assert_events(&got[&w_both], &[], "NOPUT+NODELETE watch");
    expect_quiet(&mut stream, last, what).await;
}

/// Client-chosen ids, a duplicate id, automatic ids next to chosen ones,
/// a progress request and cancel.
async fn ids_progress_cancel(mut client: Client) {
    let c = &mut client;
    let what = "watch ids";
    let chosen = 7;
    let (mut stream, id) = open(c, "w4/a", WatchOptions::new().with_watch_id(chosen), what).await;
    assert_eq!(id, chosen, "{what}: the client-chosen id is used");

    stream
        .watch("w4/b", Some(WatchOptions::new().with_watch_id(chosen)))
        .await
        .expect("send a duplicate create");
    let dup = recv(&mut stream, what).await;
    assert!(
        dup.created() && dup.canceled(),
        "{what}: a duplicate id is answered created and cancelled: {dup:?}"
    );
    assert_eq!(dup.cancel_reason(), DUPLICATE_WATCH_ID, "{dup:?}");

    // An automatic id never collides with a chosen one.
    let auto = add(&mut stream, "w4/b", WatchOptions::new(), what).await;
    assert_ne!(auto, chosen, "{what}: automatic id reuses a chosen one");
    assert!(auto >= 0, "{what}: automatic ids are not negative: {auto}");

    let mut m = Model::default();
    let from = current_rev(c).await + 1;
    m_put(c, &mut m, "w4/a", "a1").await;
    m_put(c, &mut m, "w4/b", "b1").await;
    let last = m_put(c, &mut m, "w4/a", "a2").await;
    let want_a = m.expect(|k| k == "w4/a", from, PLAIN);
    let want_b = m.expect(|k| k == "w4/b", from, PLAIN);
    let got = collect(
        &mut stream,
        &BTreeMap::from([(chosen, want_a.len()), (auto, want_b.len())]),
        what,
    )
    .await;
    assert_events(&got[&chosen], &want_a, "watch with a chosen id");
    assert_events(&got[&auto], &want_b, "watch with an automatic id");

    // Progress: watch id -1 and the store's current revision.
    let now = current_rev(c).await;
    assert_eq!(now, last);
    let at = expect_quiet(&mut stream, now, "progress request").await;
    assert_eq!(at, now, "progress response carries the current revision");

    // Cancel: answered with canceled=true for that id; no more events.
    stream.cancel(chosen).await.expect("send cancel");
    let r = recv(&mut stream, "cancel").await;
    assert!(
        r.canceled() && r.watch_id() == chosen && r.events().is_empty(),
        "cancel answered with {r:?}"
    );
    assert_eq!(r.compact_revision(), 0, "{r:?}");
    m_put(c, &mut m, "w4/a", "after cancel").await;
    let last = m_put(c, &mut m, "w4/b", "b2").await;
    let want_b = m.expect(|k| k == "w4/b", last, PLAIN);
    let got = collect(&mut stream, &BTreeMap::from([(auto, 1)]), "after cancel").await;
    assert_events(&got[&auto], &want_b, "watch left after a cancel");
    expect_quiet(&mut stream, last, "after cancel").await;

    // Checked last so that a mismatch does not hide the rest of the step:
    // etcd 3.4 reports the failed watch as -1 (mvcc's Watch returns -1
    // with ErrWatcherDuplicateID, and the v3rpc layer sends that id).
    assert_eq!(dup.watch_id(), -1, "{what}: id of a refused watch: {dup:?}");
}

/// Edge cases of creating and cancelling: a start revision in the future
/// waits for it; a range whose end is not after its key is refused; a
/// cancel of an id that does not exist is not answered.
async fn create_edge_cases(mut client: Client) {
    let c = &mut client;
    let what = "future start revision";
    let now = current_rev(c).await;
    let (mut stream, id) = open(
        c,
        "w11/k",
        WatchOptions::new().with_start_revision(now + 3),
        what,
    )
    .await;
    let mut m = Model::default();
    let mut last = 0;
    for i in 0..5 {
        last = m_put(c, &mut m, "w11/k", &format!("v{i}")).await;
    }
    let want = m.expect(|k| k == "w11/k", now + 3, PLAIN);
    assert_eq!(want.len(), 3, "{what}: model");
    let got = collect(&mut stream, &BTreeMap::from([(id, want.len())]), what).await;
    assert_events(&got[&id], &want, what);

    let what = "cancel of an unknown id";
    stream.cancel(id + 1000).await.expect("send cancel");
    expect_quiet(&mut stream, last, what).await;

    // etcd refuses a watch on an empty range [key, end) with key >= end:
    // created and cancelled at once, with mvcc's reason.
    let what = "empty range";
    stream
        .watch("w11/b", Some(WatchOptions::new().with_range("w11/a")))
        .await
        .expect("send create");
    let r = recv(&mut stream, what).await;
    assert!(
        r.created() && r.canceled() && r.events().is_empty(),
        "{what}: a watch on [w11/b, w11/a) is refused: {r:?}"
    );
    assert_eq!(
        r.cancel_reason(),
        "mvcc: watcher range is empty",
        "{what}: {r:?}"
    );
    assert_eq!(r.watch_id(), -1, "{what}: id of a refused watch: {r:?}");
}

/// A watch from below the compaction point is cancelled with
/// `compact_revision`; one from the compaction point on replays.
async fn compaction(mut client: Client) {
    let c = &mut client;
    let what = "compaction";
    let mut m = Model::default();
    let mut revs = Vec::new();
    for i in 1..=4 {
        revs.push(m_put(c, &mut m, "w5/k", &format!("v{i}")).await);
    }
    let at = revs[2];
    c.compact(at, None).await.expect("compact");

    let mut stream = c
        .watch(
            "w5/k",
            Some(WatchOptions::new().with_start_revision(revs[0])),
        )
        .await
        .expect("open watch stream");
    let mut r = recv(&mut stream, what).await;
    if r.created() && !r.canceled() {
        // etcd confirms the watch first, then cancels it.
        r = recv(&mut stream, what).await;
    }
    assert!(
        r.canceled() && r.events().is_empty(),
        "{what}: a watch from a compacted revision is cancelled: {r:?}"
    );
    assert_eq!(
        r.compact_revision(),
        at,
        "{what}: compact_revision of the cancel: {r:?}"
    );
    drop(stream);

    // From the compaction point itself the history is still there.
    let (mut stream, id) = open(c, "w5/k", WatchOptions::new().with_start_revision(at), what).await;
    let last = m_put(c, &mut m, "w5/k", "v5").await;
    let want = m.expect(|k| k == "w5/k", at, PLAIN);
    assert_eq!(want.len(), 3);
    let got = collect(&mut stream, &BTreeMap::from([(id, want.len())]), what).await;
    assert_events(&got[&id], &want, "watch from the compaction point");
    expect_quiet(&mut stream, last, what).await;
}

/// A watch served by a follower sees the writes made through the leader.
async fn follower_watch(mut leader_client: Client, mut follower_client: Client) {
    let leader = &mut leader_client;
    let follower = &mut follower_client;
    let what = "follower watch";
    let (mut stream, id) = open(follower, "w6/", WatchOptions::new().with_prefix(), what).await;
    let mut m = Model::default();
    let from = current_rev(leader).await + 1;
    for i in 0..20 {
        m_put(leader, &mut m, &format!("w6/k{}", i % 4), &format!("v{i}")).await;
    }
    m_delete(leader, &mut m, "w6/k1").await;
    let last = m_delete_prefix(leader, &mut m, "w6/").await;
    let want = m.expect(prefix_of("w6/"), from, PLAIN);
    assert_eq!(want.len(), 24);
    let got = collect(&mut stream, &BTreeMap::from([(id, want.len())]), what).await;
    assert_events(&got[&id], &want, what);
    expect_quiet(&mut stream, last, what).await;
}

/// Read part of a watch, drop the stream, reconnect from the last seen
/// revision + 1: together the two streams hold every event exactly once.
async fn resume(mut client: Client) {
    let c = &mut client;
    let what = "resume";
    let (mut stream, id) = open(c, "w7/", WatchOptions::new().with_prefix(), what).await;
    let mut m = Model::default();
    let from = current_rev(c).await + 1;
    for i in 0..20 {
        m_put(c, &mut m, &format!("w7/k{}", i % 6), &format!("a{i}")).await;
    }
    // Read whole responses until at least ten events are in.
    let mut seen: Vec<Ev> = Vec::new();
    while seen.len() < 10 {
        let r = recv(&mut stream, what).await;
        assert!(!r.canceled() && !r.created(), "{what}: {r:?}");
        assert!(r.events().is_empty() || r.watch_id() == id, "{what}: {r:?}");
        seen.extend(r.events().iter().map(ev));
    }
    drop(stream);
    let last_seen = seen.last().expect("events read").mod_rev;
    for i in 20..30 {
        m_put(c, &mut m, &format!("w7/k{}", i % 6), &format!("b{i}")).await;
    }
    m_delete(c, &mut m, "w7/k0").await;
    let (mut stream, id) = open(
        c,
        "w7/",
        WatchOptions::new()
            .with_prefix()
            .with_start_revision(last_seen + 1),
        what,
    )
    .await;
    let last = m_put(c, &mut m, "w7/k0", "c").await;
    let want = m.expect(prefix_of("w7/"), from, PLAIN);
    assert_eq!(want.len(), 32);
    let rest = want.len() - seen.len();
    let got = collect(&mut stream, &BTreeMap::from([(id, rest)]), what).await;
    seen.extend(got[&id].iter().cloned());
    assert_events(&seen, &want, "events of both streams");
    expect_quiet(&mut stream, last, what).await;
}

/// A watcher whose reader stops polling does not hold up writers; once
/// it reads again it receives every event, in order, without gaps.
async fn slow_reader(cluster: Arc<Cluster>, leader: usize, mut client: Client) {
    let c = &mut client;
    const WRITERS: usize = 8;
    const PUTS_PER_WRITER: usize = 250;
    const VALUE_BYTES: usize = 2048;
    let what = "slow reader";
    let started = Instant::now();
    let (mut stream, id) = open(c, "w8/", WatchOptions::new().with_prefix(), what).await;
    let from = current_rev(c).await + 1;

    // The stream is not polled while the writers run.
    let done = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let mut wc = cluster
            .client(if w % 2 == 0 { leader } else { (leader + 1) % 3 })
            .await;
        let done = Arc::clone(&done);
        tasks.push(tokio::spawn(async move {
            let mut writes = Vec::with_capacity(PUTS_PER_WRITER);
            let body = async {
                for i in 0..PUTS_PER_WRITER {
                    let key = format!("w8/w{w}/k{}", i % 10);
                    let value = format!("{w}:{i}:{}", "x".repeat(VALUE_BYTES));
                    let r = put(&mut wc, &key, &value).await;
                    done.fetch_add(1, Ordering::Relaxed);
                    writes.push((r, key, value));
                }
            };
            timeout(WRITER_TIMEOUT, body)
                .await
                .unwrap_or_else(|_| panic!("writer {w} did not finish its puts"));
            writes
        }));
    }
    let mut writes = Vec::new();
    for t in tasks {
        writes.extend(t.await.expect("writer task"));
    }
    let total = WRITERS * PUTS_PER_WRITER;
    assert_eq!(
        done.load(Ordering::Relaxed),
        total,
        "{what}: every put completed while the watcher did not read"
    );
    let writes_done = started.elapsed();

    writes.sort_unstable();
    let mut m = Model::default();
    for (r, key, value) in &writes {
        m.put(key, value, *r);
    }
    let last = writes.last().expect("writes").0;
    let want = m.expect(prefix_of("w8/"), from, PLAIN);
    assert_eq!(want.len(), total);
    let got = collect(&mut stream, &BTreeMap::from([(id, want.len())]), what).await;
    assert_events(&got[&id], &want, what);
    expect_quiet(&mut stream, last, what).await;
    eprintln!(
        "{what}: {total} puts of {VALUE_BYTES} bytes done in {writes_done:?} while the watcher \
         did not read; all events read after {:?}",
        started.elapsed()
    );
}

/// Opens one stream on `client` with `keys.len()` watches (one per key)
/// and reads every created response; returns the stream and the ids in
/// the order of `keys`.
async fn open_many(
    mut client: Client,
    keys: Vec<String>,
    what: String,
) -> (WatchStream, Vec<(i64, String)>) {
    let mut stream = client
        .watch(keys[0].as_str(), None)
        .await
        .unwrap_or_else(|e| panic!("{what}: open watch stream: {e}"));
    // Send every create first, then read the answers: one create at a
    // time would cost a round trip per watch.
    for k in &keys[1..] {
        stream
            .watch(k.as_str(), None)
            .await
            .unwrap_or_else(|e| panic!("{what}: send create: {e}"));
    }
    let mut ids = Vec::with_capacity(keys.len());
    for k in keys {
        let id = created(&mut stream, &what).await;
        ids.push((id, k));
    }
    let mut distinct: Vec<i64> = ids.iter().map(|(id, _)| *id).collect();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), ids.len(), "{what}: watch ids not distinct");
    (stream, ids)
}

/// 1,000 watchers on one key (10 streams of 100) and 10,000 watchers on
/// distinct keys (10 streams of 1,000), spread over the members: each
/// receives every event of its key exactly once, in order.
async fn many_watchers(cluster: Arc<Cluster>, mut client: Client) {
    let c = &mut client;
    const STREAMS: usize = 10;
    const HOT_PER_STREAM: usize = 100;
    const KEYS_PER_STREAM: usize = 1_000;
    const KEYS_PER_TXN: usize = 100;
    let started = Instant::now();

    // -- 1,000 watchers on one key --
    let hot = "w9/hot";
    let mut opening = Vec::new();
    for i in 0..STREAMS {
        let client = cluster.client(i % cluster.len()).await;
        let keys = vec![hot.to_owned(); HOT_PER_STREAM];
        opening.push(tokio::spawn(open_many(
            client,
            keys,
            format!("hot stream {i}"),
        )));
    }
    let mut hot_streams = Vec::new();
    for t in opening {
        hot_streams.push(t.await.expect("open hot stream"));
    }
    let opened = started.elapsed();
    let mut m = Model::default();
    let from = current_rev(c).await + 1;
    for i in 0..10 {
        m_put(c, &mut m, hot, &format!("v{i}")).await;
    }
    let last = m_delete(c, &mut m, hot).await;
    let want = m.expect(|k| k == hot, from, PLAIN);
    assert_eq!(want.len(), 11);
    let mut reading = Vec::new();
    for (i, (mut stream, ids)) in hot_streams.into_iter().enumerate() {
        let counts: BTreeMap<i64, usize> = ids.iter().map(|(id, _)| (*id, want.len())).collect();
        let want = want.clone();
        reading.push(tokio::spawn(async move {
            let what = format!("hot stream {i}");
            let got = collect(&mut stream, &counts, &what).await;
            for (id, evs) in &got {
                assert_events(evs, &want, &format!("{what}, watch {id}"));
            }
            expect_quiet(&mut stream, last, &what).await;
            got.len()
        }));
    }
    let mut watchers = 0;
    for t in reading {
        watchers += t.await.expect("hot stream reader");
    }
    assert_eq!(watchers, STREAMS * HOT_PER_STREAM);
    eprintln!(
        "{watchers} watchers on one key: opened in {opened:?}, all events checked after {:?}",
        started.elapsed()
    );

    // -- 10,000 watchers on distinct keys --
    let started = Instant::now();
    let key = |s: usize, k: usize| format!("w10/s{s:02}/k{k:04}");
    let mut opening = Vec::new();
    for s in 0..STREAMS {
        let client = cluster.client(s % cluster.len()).await;
        let keys: Vec<String> = (0..KEYS_PER_STREAM).map(|k| key(s, k)).collect();
        opening.push(tokio::spawn(open_many(client, keys, format!("stream {s}"))));
    }
    let mut streams = Vec::new();
    for t in opening {
        streams.push(t.await.expect("open stream"));
    }
    let opened = started.elapsed();

    // Readers run while the writes go on.
    let mut reading = Vec::new();
    for (s, (mut stream, ids)) in streams.into_iter().enumerate() {
        reading.push(tokio::spawn(async move {
            let counts: BTreeMap<i64, usize> = ids.iter().map(|(id, _)| (*id, 3)).collect();
            let got = collect(&mut stream, &counts, &format!("stream {s}")).await;
            (stream, ids, got)
        }));
    }
    let mut m = Model::default();
    let from = current_rev(c).await + 1;
    for round in ["v1", "v2"] {
        for s in 0..STREAMS {
            for chunk in (0..KEYS_PER_STREAM)
                .collect::<Vec<_>>()
                .chunks(KEYS_PER_TXN)
            {
                let kvs: Vec<(String, String)> = chunk
                    .iter()
                    .map(|&k| (key(s, k), format!("{round}-{s}-{k}")))
                    .collect();
                m_put_all(c, &mut m, &kvs).await;
            }
        }
    }
    // Stream s's last event is the delete of its prefix: a member serving
    // it has applied at least that far once the events are in.
    let mut last = Vec::with_capacity(STREAMS);
    for s in 0..STREAMS {
        last.push(m_delete_prefix(c, &mut m, &format!("w10/s{s:02}/")).await);
    }
    let writes_done = started.elapsed();
    let mut per_key: BTreeMap<String, Vec<Ev>> = BTreeMap::new();
    for e in m.expect(|_| true, from, PLAIN) {
        per_key.entry(e.key.clone()).or_default().push(e);
    }
    assert_eq!(per_key.len(), STREAMS * KEYS_PER_STREAM);
    let mut watchers = 0;
    for (t, last) in reading.into_iter().zip(last) {
        let (mut stream, ids, got) = t.await.expect("stream reader");
        for (id, k) in &ids {
            assert_events(&got[id], &per_key[k], &format!("watch {id} on {k}"));
            watchers += 1;
        }
        expect_quiet(&mut stream, last, "distinct keys").await;
    }
    assert_eq!(watchers, STREAMS * KEYS_PER_STREAM);
    eprintln!(
        "{watchers} watchers on distinct keys: opened in {opened:?}, writes done after \
         {writes_done:?}, all events checked after {:?}",
        started.elapsed()
    );
}

/// etcd answers a write made through a follower only once that follower
/// has applied it, so the member's watches are at least that far: a
/// progress request right after the write reports its revision or a later
/// one, and a watch opened right after it (no start revision) starts
/// after the write and never delivers it.
async fn follower_applies_own_writes(mut follower: Client) {
    const ROUNDS: usize = 50;
    let f = &mut follower;
    let what = "progress after an own write";
    let (mut stream, _) = open(f, "w13/unrelated", WatchOptions::new(), what).await;
    let mut behind = Vec::new();
    for i in 0..ROUNDS {
        let r = put(f, "w13/k", &format!("v{i}")).await;
        let at = expect_quiet(&mut stream, 0, what).await;
        if at < r {
            behind.push((r, at));
        }
    }
    let what = "watch opened after an own write";
    let mut own = Vec::new();
    for i in 0..ROUNDS {
        let r = put(f, "w13/own", &format!("a{i}")).await;
        let (mut w, id) = open(f, "w13/own", WatchOptions::new(), what).await;
        let next = put(f, "w13/own", &format!("b{i}")).await;
        let got = collect(&mut w, &BTreeMap::from([(id, 1)]), what).await;
        let first = got[&id][0].mod_rev;
        if first != next {
            own.push((r, first));
        }
    }
    assert!(
        behind.is_empty() && own.is_empty(),
        "writes through a follower answered before that follower applied them: \
         {} of {ROUNDS} progress answers below the revision just written \
         (written, progress): {behind:?}; {} of {ROUNDS} watches opened after a write \
         delivered that write (written, first event): {own:?}",
        behind.len(),
        own.len()
    );
}

/// With `progress_notify`, an idle watch receives empty responses
/// carrying its own id and the current revision (the cluster runs with a
/// one-second `--experimental-watch-progress-notify-interval`).
async fn progress_notify(mut client: Client) {
    let c = &mut client;
    let what = "progress notify";
    let (mut stream, id) = open(
        c,
        "w14/idle",
        WatchOptions::new().with_progress_notify(),
        what,
    )
    .await;
    let now = put(c, "w14/elsewhere", "v").await;
    for _ in 0..EMPTY_RESPONSES_MAX {
        let r = recv(&mut stream, what).await;
        assert!(
            r.events().is_empty() && !r.canceled() && !r.created() && r.watch_id() == id,
            "{what}: expected an empty response for watch {id}, got {r:?}"
        );
        if rev(r.header()) >= now {
            assert_eq!(rev(r.header()), now, "{what}: the current revision");
            return;
        }
    }
    panic!("{what}: no notification at revision {now}");
}

/// Kills the member serving a watch halfway through: a new stream on
/// another member from the last revision seen + 1 misses nothing and
/// repeats nothing; once restarted, the member replays the whole history
/// of the step from its own log. Returns the cluster.
async fn resume_after_kill(mut cluster: Cluster) -> Cluster {
    let what = "resume after a kill";
    let leader = cluster.leader().await;
    let serving = (leader + 1) % cluster.len();
    let other = (leader + 2) % cluster.len();
    let mut c = cluster.client(leader).await;
    let mut s = cluster.client(serving).await;
    let (mut stream, id) = open(&mut s, "w12/", WatchOptions::new().with_prefix(), what).await;
    let mut m = Model::default();
    let from = current_rev(&mut c).await + 1;
    for i in 0..20 {
        m_put(&mut c, &mut m, &format!("w12/k{}", i % 5), &format!("a{i}")).await;
    }
    let mut seen: Vec<Ev> = Vec::new();
    while seen.len() < 10 {
        let r = recv(&mut stream, what).await;
        assert!(!r.canceled() && !r.created(), "{what}: {r:?}");
        assert!(r.events().is_empty() || r.watch_id() == id, "{what}: {r:?}");
        seen.extend(r.events().iter().map(ev));
    }
    cluster.kill(serving);
    drop(stream);
    drop(s);
    for i in 20..30 {
        m_put(&mut c, &mut m, &format!("w12/k{}", i % 5), &format!("b{i}")).await;
    }
    let last = m_delete_prefix(&mut c, &mut m, "w12/").await;
    let want = m.expect(prefix_of("w12/"), from, PLAIN);
    assert_eq!(want.len(), 35);

    let last_seen = seen.last().expect("events read").mod_rev;
    let mut o = cluster.client(other).await;
    let (mut stream, id) = open(
        &mut o,
        "w12/",
        WatchOptions::new()
            .with_prefix()
            .with_start_revision(last_seen + 1),
        what,
    )
    .await;
    let rest = want.len() - seen.len();
    let got = collect(&mut stream, &BTreeMap::from([(id, rest)]), what).await;
    seen.extend(got[&id].iter().cloned());
    assert_events(&seen, &want, "events before and after the kill");
    expect_quiet(&mut stream, last, what).await;

    cluster.restart(serving);
    cluster.wait_ready(serving).await;
    let mut s = cluster.client(serving).await;
    let (mut stream, id) = open(
        &mut s,
        "w12/",
        WatchOptions::new().with_prefix().with_start_revision(from),
        "replay on the restarted member",
    )
    .await;
    let got = collect(
        &mut stream,
        &BTreeMap::from([(id, want.len())]),
        "replay on the restarted member",
    )
    .await;
    assert_events(&got[&id], &want, "replay on the restarted member");
    expect_quiet(&mut stream, last, "replay on the restarted member").await;
    cluster
}

#[test]
fn etcd_watch_semantics() {
    let started = Instant::now();
    let cluster = Arc::new(Cluster::start(ClusterOptions {
        extra_args: vec![format!(
            "--experimental-watch-progress-notify-interval={PROGRESS_NOTIFY_SECS}s"
        )],
        ..ClusterOptions::default()
    }));
    eprintln!(
        "cluster up in {:?} at {}",
        started.elapsed(),
        cluster.dir().display()
    );
    let rt = cluster::runtime();
    let (failures, cluster) = rt.block_on(async move {
        let leader = cluster.leader().await;
        let follower = (leader + 1) % cluster.len();
        let c = cluster.client(leader).await;
        let f = cluster.client(follower).await;
        let mut failures = Vec::new();
        let fs = &mut failures;
        step(fs, "key, prefix, from-key", key_prefix_from_key(c.clone())).await;
        step(fs, "replay", replay(f.clone())).await;
        step(fs, "filters and prev_kv", filters_and_prev_kv(c.clone())).await;
        step(fs, "ids, progress, cancel", ids_progress_cancel(c.clone())).await;
        step(fs, "create edge cases", create_edge_cases(c.clone())).await;
        step(fs, "compaction", compaction(c.clone())).await;
        step(fs, "follower watch", follower_watch(c.clone(), f.clone())).await;
        step(fs, "resume", resume(c.clone())).await;
        step(fs, "progress notify", progress_notify(f.clone())).await;
        let own = follower_applies_own_writes(f.clone());
        step(fs, "follower applies own writes", own).await;
        let slow = slow_reader(Arc::clone(&cluster), leader, c.clone());
        step(fs, "slow reader", slow).await;
        step(fs, "many watchers", many_watchers(Arc::clone(&cluster), c)).await;
        // Every step has ended, so its handle on the cluster is gone.
        let cluster = Arc::try_unwrap(cluster).expect("the steps hold no cluster handle");
        let cluster = step(fs, "resume after a kill", resume_after_kill(cluster)).await;
        (failures, cluster)
    });
    eprintln!("watch steps done in {:?}", started.elapsed());
    assert_steps_passed(&failures);
    drop(cluster);
}
