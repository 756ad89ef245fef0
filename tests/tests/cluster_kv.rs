//! etcd 3.4 KV semantics through a real etcd client against a real
//! three-member cluster: revisions and key metadata, Range (single key,
//! prefix, from-key, all keys, limit, old revisions, sorting, keys-only,
//! count-only, revision filters, serializable reads), Put and DeleteRange
//! options, Txn compares and branches, compaction, request limits, the
//! error codes and messages clients match on, writes through followers,
//! Maintenance.Status and Cluster.MemberList.
//!
//! One cluster serves the whole file; each step works under its own key
//! prefix and computes revisions relative to what it observed, except the
//! first, which checks a fresh cluster's revisions. Compaction runs last.
//!
//! Needs `target/<profile>/sett` (`cargo build -p sett-server --bin sett`).

#[path = "../src/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use cluster::{assert_grpc_err, kv_rows, put, rev, text, Cluster, ClusterOptions};
use etcd_client::{
    Client, CompactionOptions, Compare, CompareOp, DeleteOptions, GetOptions, GetResponse,
    KeyValue, PutOptions, SortOrder, SortTarget, Txn, TxnOp, TxnOpResponse, TxnResponse,
};
use std::time::{Duration, Instant};

/// Bound on polling a follower's serializable reads.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

const KEY_NOT_PROVIDED: &str = "etcdserver: key is not provided";
const KEY_NOT_FOUND: &str = "etcdserver: key not found";
const DUPLICATE_KEY: &str = "etcdserver: duplicate key given in txn request";
const TOO_MANY_OPS: &str = "etcdserver: too many operations in txn request";
const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
const FUTURE_REV: &str = "etcdserver: mvcc: required revision is a future revision";
const TOO_LARGE: &str = "etcdserver: request is too large";
const VALUE_PROVIDED: &str = "etcdserver: value is provided";
const LEASE_PROVIDED: &str = "etcdserver: lease is provided";

// ---- small helpers ----

fn keys(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter().map(|kv| text(kv.key())).collect()
}

fn values(kvs: &[KeyValue]) -> Vec<String> {
    kvs.iter().map(|kv| text(kv.value())).collect()
}

async fn get(c: &mut Client, key: &str, opts: Option<GetOptions>) -> GetResponse {
    c.get(key, opts)
        .await
        .unwrap_or_else(|e| panic!("get {key}: {e}"))
}

async fn current_rev(c: &mut Client) -> i64 {
    rev(get(c, "\0", Some(GetOptions::new().with_count_only()))
        .await
        .header())
}

fn txn_gets(resp: &TxnResponse) -> Vec<GetResponse> {
    resp.op_responses()
        .into_iter()
        .filter_map(|r| match r {
            TxnOpResponse::Get(g) => Some(g),
            _ => None,
        })
        .collect()
}

async fn txn_ok(c: &mut Client, txn: Txn) -> TxnResponse {
    c.txn(txn).await.unwrap_or_else(|e| panic!("txn: {e}"))
}

// ---- the steps ----

/// A new cluster is at revision 1; the first put gets revision 2.
async fn fresh_revisions(c: &mut Client) {
    let resp = get(c, "fresh/none", None).await;
    let header = resp.header().expect("header");
    assert_eq!(header.revision(), 1, "a new cluster is at revision 1");
    assert_ne!(header.cluster_id(), 0, "cluster_id");
    assert_ne!(header.member_id(), 0, "member_id");
    assert_ne!(header.raft_term(), 0, "raft_term");
    assert!(resp.kvs().is_empty());
    assert_eq!(resp.count(), 0);
    assert!(!resp.more());

    let r = put(c, "fresh/k", "v1").await;
    assert_eq!(r, 2, "the first put gets revision 2");
    let resp = get(c, "fresh/k", None).await;
    assert_eq!(rev(resp.header()), 2);
    assert_eq!(
        kv_rows(resp.kvs()),
        vec![("fresh/k".into(), "v1".into(), 2, 2, 1, 0)],
        "key, value, create_revision, mod_revision, version, lease"
    );
    assert_eq!(resp.count(), 1);

    let r = put(c, "fresh/k", "v2").await;
    assert_eq!(r, 3);
    let resp = get(c, "fresh/k", None).await;
    assert_eq!(
        kv_rows(resp.kvs()),
        vec![("fresh/k".into(), "v2".into(), 2, 3, 2, 0)]
    );
    // A read does not move the revision.
    assert_eq!(current_rev(c).await, 3);
}

/// Single key, prefix, range, from-key, all keys, limit, old revisions.
async fn range_basics(c: &mut Client) {
    let mut revs = Vec::new();
    for k in ["r/a", "r/b", "r/c", "r/d", "r/e"] {
        revs.push(put(c, k, &format!("val-{k}")).await);
    }
    // "r0" is the prefix end of "r/": excluded from the prefix.
    put(c, "r0", "outside").await;

    let one = get(c, "r/b", None).await;
    assert_eq!(keys(one.kvs()), ["r/b"]);
    assert_eq!(values(one.kvs()), ["val-r/b"]);
    assert_eq!(one.kvs()[0].mod_revision(), revs[1]);
    assert_eq!(one.count(), 1);

    let missing = get(c, "r/zz", None).await;
    assert!(missing.kvs().is_empty());
    assert_eq!(missing.count(), 0);

    let prefix = get(c, "r/", Some(GetOptions::new().with_prefix())).await;
    assert_eq!(keys(prefix.kvs()), ["r/a", "r/b", "r/c", "r/d", "r/e"]);
    assert_eq!(prefix.count(), 5);
    assert!(!prefix.more());
    let mods: Vec<i64> = prefix.kvs().iter().map(|kv| kv.mod_revision()).collect();
    assert_eq!(mods, revs);

    let range = get(c, "r/b", Some(GetOptions::new().with_range("r/d"))).await;
    assert_eq!(keys(range.kvs()), ["r/b", "r/c"], "range_end is exclusive");
    assert_eq!(range.count(), 2);

    let from = get(c, "r/c", Some(GetOptions::new().with_from_key())).await;
    let from_keys = keys(from.kvs());
    assert_eq!(from_keys[..4], ["r/c", "r/d", "r/e", "r0"]);
    assert!(from_keys.windows(2).all(|w| w[0] < w[1]), "{from_keys:?}");
    assert_eq!(from.count() as usize, from_keys.len());

    let all = get(c, "\0", Some(GetOptions::new().with_all_keys())).await;
    let all_keys = keys(all.kvs());
    for k in ["fresh/k", "r/a", "r/e", "r0"] {
        assert!(
            all_keys.contains(&k.to_owned()),
            "{k} missing from {all_keys:?}"
        );
    }
    assert!(all_keys.windows(2).all(|w| w[0] < w[1]), "{all_keys:?}");
    assert_eq!(all.count() as usize, all_keys.len());
    // The same request spelled as etcdctl `get "" --from-key` sends it.
    let all2 = get(c, "\0", Some(GetOptions::new().with_range("\0"))).await;
    assert_eq!(keys(all2.kvs()), all_keys);

    let limited = get(c, "r/", Some(GetOptions::new().with_prefix().with_limit(2))).await;
    assert_eq!(keys(limited.kvs()), ["r/a", "r/b"]);
    assert!(limited.more(), "more is set when results were cut");
    assert_eq!(limited.count(), 5, "count is the total number of matches");
    let exact = get(c, "r/", Some(GetOptions::new().with_prefix().with_limit(5))).await;
    assert_eq!(exact.kvs().len(), 5);
    assert!(!exact.more());
    let unlimited = get(c, "r/", Some(GetOptions::new().with_prefix().with_limit(0))).await;
    assert_eq!(unlimited.kvs().len(), 5, "limit 0 means no limit");

    // Old revisions.
    let before = put(c, "r/a", "val-r/a-2").await;
    let old = get(c, "r/a", Some(GetOptions::new().with_revision(before - 1))).await;
    assert_eq!(values(old.kvs()), ["val-r/a"]);
    assert_eq!(old.kvs()[0].mod_revision(), revs[0]);
    assert_eq!(old.kvs()[0].version(), 1);
    assert_eq!(
        rev(old.header()),
        before,
        "header.revision is the current revision even for an old read"
    );
    let older = get(
        c,
        "r/",
        Some(GetOptions::new().with_prefix().with_revision(revs[2])),
    )
    .await;
    assert_eq!(keys(older.kvs()), ["r/a", "r/b", "r/c"]);
    let now = get(c, "r/a", Some(GetOptions::new().with_revision(before))).await;
    assert_eq!(values(now.kvs()), ["val-r/a-2"]);
    assert_eq!(now.kvs()[0].version(), 2);
    let zero = get(c, "r/a", Some(GetOptions::new().with_revision(0))).await;
    assert_eq!(
        values(zero.kvs()),
        ["val-r/a-2"],
        "revision 0 is the latest"
    );

    assert_grpc_err(
        c.get("r/a", Some(GetOptions::new().with_revision(before + 100)))
            .await,
        "OutOfRange",
        FUTURE_REV,
    );
    assert_grpc_err(c.get("", None).await, "InvalidArgument", KEY_NOT_PROVIDED);
}

/// Binary keys, the all-0xff prefix, empty and inverted ranges.
async fn range_edges(c: &mut Client) {
    let r1 = rev(c
        .put(vec![0xff, 0x00], "ff00", None)
        .await
        .expect("put ff00")
        .header());
    c.put(vec![0xff, 0xff, 0x01], "ffff01", None)
        .await
        .expect("put ffff01");
    c.put(vec![0xfe, 0xff], "feff", None)
        .await
        .expect("put feff");

    // The prefix of "\xff" has no upper bound: range_end "\0".
    let resp = c
        .get(vec![0xff], Some(GetOptions::new().with_prefix()))
        .await
        .expect("prefix ff");
    let got: Vec<Vec<u8>> = resp.kvs().iter().map(|kv| kv.key().to_vec()).collect();
    assert_eq!(got, vec![vec![0xff, 0x00], vec![0xff, 0xff, 0x01]]);
    let resp = c
        .get(vec![0xfe], Some(GetOptions::new().with_prefix()))
        .await
        .expect("prefix fe");
    assert_eq!(values(resp.kvs()), ["feff"], "prefix fe ends at ff");
    let resp = c.get(vec![0xff, 0x00], None).await.expect("get ff00");
    assert_eq!(resp.kvs()[0].mod_revision(), r1);

    // A range whose end is not above its start is empty.
    let inverted = get(c, "r/d", Some(GetOptions::new().with_range("r/b"))).await;
    assert!(inverted.kvs().is_empty());
    assert_eq!(inverted.count(), 0);
    let empty = get(c, "r/b", Some(GetOptions::new().with_range("r/b"))).await;
    assert!(empty.kvs().is_empty());
    // Deleting an inverted range deletes nothing.
    let resp = c
        .delete("r/d", Some(DeleteOptions::new().with_range("r/b")))
        .await
        .expect("delete inverted range");
    assert_eq!(resp.deleted(), 0);

    c.delete(vec![0xfe], Some(DeleteOptions::new().with_from_key()))
        .await
        .expect("delete from fe");
}

/// Sort orders and targets, keys-only, count-only, revision filters.
async fn range_sort_and_filters(c: &mut Client) {
    // Final state: s/a "x3" (create a1, mod a1, version 1),
    // s/b "x1c" (create b1, mod b3, version 3), s/c "x2b" (create c1, mod c2, version 2).
    put(c, "s/c", "x2").await;
    let a1 = put(c, "s/a", "x3").await;
    let b1 = put(c, "s/b", "x1").await;
    put(c, "s/b", "x1b").await;
    let c2 = put(c, "s/c", "x2b").await;
    let b3 = put(c, "s/b", "x1c").await;

    let sorted = |target, order| GetOptions::new().with_prefix().with_sort(target, order);
    let cases = [
        (SortTarget::Key, SortOrder::Ascend, ["s/a", "s/b", "s/c"]),
        (SortTarget::Key, SortOrder::Descend, ["s/c", "s/b", "s/a"]),
        (
            SortTarget::Version,
            SortOrder::Ascend,
            ["s/a", "s/c", "s/b"],
        ),
        (
            SortTarget::Version,
            SortOrder::Descend,
            ["s/b", "s/c", "s/a"],
        ),
        (SortTarget::Create, SortOrder::Ascend, ["s/c", "s/a", "s/b"]),
        (
            SortTarget::Create,
            SortOrder::Descend,
            ["s/b", "s/a", "s/c"],
        ),
        (SortTarget::Mod, SortOrder::Ascend, ["s/a", "s/c", "s/b"]),
        (SortTarget::Mod, SortOrder::Descend, ["s/b", "s/c", "s/a"]),
        (SortTarget::Value, SortOrder::Ascend, ["s/b", "s/c", "s/a"]),
        (SortTarget::Value, SortOrder::Descend, ["s/a", "s/c", "s/b"]),
        // Order NONE with a target other than KEY sorts ascending.
        (SortTarget::Version, SortOrder::None, ["s/a", "s/c", "s/b"]),
        (SortTarget::Value, SortOrder::None, ["s/b", "s/c", "s/a"]),
        (SortTarget::Key, SortOrder::None, ["s/a", "s/b", "s/c"]),
    ];
    for (target, order, expected) in cases {
        let resp = get(c, "s/", Some(sorted(target, order))).await;
        assert_eq!(keys(resp.kvs()), expected, "sort by {target:?} {order:?}");
        assert_eq!(resp.count(), 3);
        assert!(!resp.more());
    }
    // Sorting happens before the limit cuts.
    let top = get(
        c,
        "s/",
        Some(sorted(SortTarget::Create, SortOrder::Descend).with_limit(2)),
    )
    .await;
    assert_eq!(keys(top.kvs()), ["s/b", "s/a"]);
    assert!(top.more());
    assert_eq!(top.count(), 3);

    let ko = get(
        c,
        "s/",
        Some(GetOptions::new().with_prefix().with_keys_only()),
    )
    .await;
    assert_eq!(keys(ko.kvs()), ["s/a", "s/b", "s/c"]);
    assert!(ko.kvs().iter().all(|kv| kv.value().is_empty()), "keys_only");
    assert_eq!(ko.kvs()[1].mod_revision(), b3);
    assert_eq!(ko.kvs()[1].version(), 3);

    let co = get(
        c,
        "s/",
        Some(GetOptions::new().with_prefix().with_count_only()),
    )
    .await;
    assert!(co.kvs().is_empty(), "count_only returns no kvs");
    assert_eq!(co.count(), 3);
    assert!(!co.more());

    let cases: [(GetOptions, &[&str]); 6] = [
        (GetOptions::new().with_min_mod_revision(c2), &["s/b", "s/c"]),
        (GetOptions::new().with_max_mod_revision(a1), &["s/a"]),
        (
            GetOptions::new().with_min_create_revision(a1),
            &["s/a", "s/b"],
        ),
        (
            GetOptions::new().with_max_create_revision(a1),
            &["s/a", "s/c"],
        ),
        (
            GetOptions::new()
                .with_min_mod_revision(a1)
                .with_max_mod_revision(c2),
            &["s/a", "s/c"],
        ),
        (GetOptions::new().with_min_create_revision(b1 + 1), &[]),
    ];
    for (i, (opts, expected)) in cases.into_iter().enumerate() {
        let resp = get(c, "s/", Some(opts.with_prefix())).await;
        assert_eq!(keys(resp.kvs()), expected, "revision filter case {i}");
        assert!(!resp.more(), "revision filter case {i}");
        assert_eq!(
            resp.count(),
            3,
            "count is taken before filtering (case {i})"
        );
    }
    // A filter combined with a limit: filter first, then cut.
    let resp = get(
        c,
        "s/",
        Some(
            GetOptions::new()
                .with_prefix()
                .with_min_mod_revision(c2)
                .with_limit(1),
        ),
    )
    .await;
    assert_eq!(keys(resp.kvs()), ["s/b"]);
    assert!(resp.more());
}

/// Serializable and linearizable reads on a follower.
async fn follower_reads(cluster: &Cluster, leader: usize, follower: usize) {
    let mut lc = cluster.client(leader).await;
    let mut fc = cluster.client(follower).await;
    let r = put(&mut lc, "f/k", "from-leader").await;
    // A linearizable read on a follower sees every write acknowledged
    // before it started.
    let lin = get(&mut fc, "f/k", None).await;
    assert_eq!(values(lin.kvs()), ["from-leader"]);
    assert!(rev(lin.header()) >= r);
    // A serializable read answers from the follower's own state: it
    // catches up without a request through the leader.
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let ser = get(&mut fc, "f/k", Some(GetOptions::new().with_serializable())).await;
        if values(ser.kvs()) == ["from-leader"] {
            assert_eq!(ser.kvs()[0].mod_revision(), r);
            assert_eq!(
                ser.header().expect("header").member_id(),
                cluster.member_id(follower),
                "answered by the follower"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "serializable read on follower never saw the write: {:?}",
            kv_rows(ser.kvs())
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Writes sent to a follower are carried out (forwarded to the leader).
async fn follower_writes(cluster: &Cluster, leader: usize, follower: usize) {
    let mut lc = cluster.client(leader).await;
    let mut fc = cluster.client(follower).await;
    let r = put(&mut fc, "fw/a", "via-follower").await;
    let seen = get(&mut lc, "fw/a", None).await;
    assert_eq!(values(seen.kvs()), ["via-follower"]);
    assert_eq!(seen.kvs()[0].mod_revision(), r);

    let t = txn_ok(
        &mut fc,
        Txn::new()
            .when([Compare::value("fw/a", CompareOp::Equal, "via-follower")])
            .and_then([TxnOp::put("fw/b", "txn-via-follower", None)]),
    )
    .await;
    assert!(t.succeeded());
    let seen = get(&mut lc, "fw/b", None).await;
    assert_eq!(values(seen.kvs()), ["txn-via-follower"]);
    assert_eq!(seen.kvs()[0].mod_revision(), rev(t.header()));

    let d = fc
        .delete("fw/a", Some(DeleteOptions::new().with_prev_key()))
        .await
        .expect("delete via follower");
    assert_eq!(d.deleted(), 1);
    assert!(get(&mut lc, "fw/a", None).await.kvs().is_empty());
}

/// Put options and their errors.
async fn put_options(c: &mut Client) {
    let r1 = put(c, "p/k", "v1").await;
    let resp = c
        .put("p/k", "v2", Some(PutOptions::new().with_prev_key()))
        .await
        .expect("put prev_kv");
    let r2 = rev(resp.header());
    assert_eq!(r2, r1 + 1);
    let prev = resp.prev_key().expect("prev_kv of an existing key");
    assert_eq!(
        kv_rows(std::slice::from_ref(prev)),
        vec![("p/k".into(), "v1".into(), r1, r1, 1, 0)]
    );
    let resp = c
        .put("p/new", "n", Some(PutOptions::new().with_prev_key()))
        .await
        .expect("put prev_kv of a new key");
    assert!(resp.prev_key().is_none(), "no prev_kv for a new key");
    let r3 = rev(resp.header());

    // ignore_value keeps the value and bumps version and mod_revision.
    let resp = c
        .put(
            "p/k",
            "",
            Some(PutOptions::new().with_ignore_value().with_prev_key()),
        )
        .await
        .expect("put ignore_value");
    let r4 = rev(resp.header());
    assert_eq!(r4, r3 + 1);
    assert_eq!(
        values(std::slice::from_ref(resp.prev_key().unwrap())),
        ["v2"]
    );
    let now = get(c, "p/k", None).await;
    assert_eq!(
        kv_rows(now.kvs()),
        vec![("p/k".into(), "v2".into(), r1, r4, 3, 0)]
    );

    // ignore_lease keeps the (absent) lease and writes the value.
    let r5 = rev(c
        .put("p/k", "v3", Some(PutOptions::new().with_ignore_lease()))
        .await
        .expect("put ignore_lease")
        .header());
    let now = get(c, "p/k", None).await;
    assert_eq!(
        kv_rows(now.kvs()),
        vec![("p/k".into(), "v3".into(), r1, r5, 4, 0)]
    );

    // Errors leave the revision alone.
    assert_grpc_err(
        c.put("p/missing", "", Some(PutOptions::new().with_ignore_value()))
            .await,
        "InvalidArgument",
        KEY_NOT_FOUND,
    );
    assert_grpc_err(
        c.put(
            "p/missing",
            "x",
            Some(PutOptions::new().with_ignore_lease()),
        )
        .await,
        "InvalidArgument",
        KEY_NOT_FOUND,
    );
    assert_grpc_err(
        c.put("p/k", "x", Some(PutOptions::new().with_ignore_value()))
            .await,
        "InvalidArgument",
        VALUE_PROVIDED,
    );
    assert_grpc_err(
        c.put(
            "p/k",
            "x",
            Some(PutOptions::new().with_ignore_lease().with_lease(7)),
        )
        .await,
        "InvalidArgument",
        LEASE_PROVIDED,
    );
    assert_grpc_err(
        c.put("", "x", None).await,
        "InvalidArgument",
        KEY_NOT_PROVIDED,
    );
    assert_eq!(
        current_rev(c).await,
        r5,
        "failed puts do not move the revision"
    );
    assert!(get(c, "p/missing", None).await.kvs().is_empty());

    // An empty value is a value.
    let r6 = put(c, "p/empty", "").await;
    let e = get(c, "p/empty", None).await;
    assert_eq!(
        kv_rows(e.kvs()),
        vec![("p/empty".into(), "".into(), r6, r6, 1, 0)]
    );
}

/// DeleteRange: single key, prefix, range, prev_kv, `deleted`, revisions.
async fn delete_range(c: &mut Client) {
    let mut revs = Vec::new();
    for k in ["d/a", "d/b", "d/c", "d/d", "d/e"] {
        revs.push(put(c, k, &format!("val-{k}")).await);
    }
    let resp = c
        .delete("d/a", Some(DeleteOptions::new().with_prev_key()))
        .await
        .expect("delete d/a");
    let r_del = rev(resp.header());
    assert_eq!(r_del, revs[4] + 1);
    assert_eq!(resp.deleted(), 1);
    assert_eq!(
        kv_rows(resp.prev_kvs()),
        vec![("d/a".into(), "val-d/a".into(), revs[0], revs[0], 1, 0)]
    );

    // Deleting nothing is not a modification.
    let resp = c.delete("d/a", None).await.expect("delete missing");
    assert_eq!(resp.deleted(), 0);
    assert!(resp.prev_kvs().is_empty());
    assert_eq!(
        rev(resp.header()),
        r_del,
        "an empty delete keeps the revision"
    );

    // Without prev_kv nothing comes back but the count.
    let resp = c
        .delete("d/b", Some(DeleteOptions::new().with_range("d/c")))
        .await
        .expect("delete range");
    assert_eq!(resp.deleted(), 1);
    assert!(resp.prev_kvs().is_empty());
    let r_b = rev(resp.header());
    assert_eq!(r_b, r_del + 1);

    // A prefix delete of several keys is one revision.
    let resp = c
        .delete(
            "d/",
            Some(DeleteOptions::new().with_prefix().with_prev_key()),
        )
        .await
        .expect("delete prefix");
    assert_eq!(resp.deleted(), 3);
    assert_eq!(keys(resp.prev_kvs()), ["d/c", "d/d", "d/e"]);
    assert_eq!(values(resp.prev_kvs()), ["val-d/c", "val-d/d", "val-d/e"]);
    let r_all = rev(resp.header());
    assert_eq!(r_all, r_b + 1);
    let gone = get(c, "d/", Some(GetOptions::new().with_prefix())).await;
    assert!(gone.kvs().is_empty());
    assert_eq!(gone.count(), 0);

    // History still has them.
    let old = get(
        c,
        "d/",
        Some(GetOptions::new().with_prefix().with_revision(r_all - 1)),
    )
    .await;
    assert_eq!(keys(old.kvs()), ["d/c", "d/d", "d/e"]);

    // Re-creating a deleted key starts a new life: version 1, new create_revision.
    let r_new = put(c, "d/a", "again").await;
    let again = get(c, "d/a", None).await;
    assert_eq!(
        kv_rows(again.kvs()),
        vec![("d/a".into(), "again".into(), r_new, r_new, 1, 0)]
    );
    assert_grpc_err(
        c.delete("", None).await,
        "InvalidArgument",
        KEY_NOT_PROVIDED,
    );
}

/// Txn: compares on every target and result, branches, reads inside
/// transactions, nested transactions, compare ranges and the limits.
async fn txn_semantics(c: &mut Client) {
    let created = put(c, "t/k", "v1").await;
    let modded = put(c, "t/k", "v2").await;
    // t/k: value v2, version 2, create `created`, mod `modded`.

    let check = |cmp: Compare, expected: bool, what: &'static str| (cmp, expected, what);
    let cases = [
        check(
            Compare::version("t/k", CompareOp::Equal, 2),
            true,
            "version = 2",
        ),
        check(
            Compare::version("t/k", CompareOp::Equal, 1),
            false,
            "version = 1",
        ),
        check(
            Compare::version("t/k", CompareOp::Greater, 1),
            true,
            "version > 1",
        ),
        check(
            Compare::version("t/k", CompareOp::Greater, 2),
            false,
            "version > 2",
        ),
        check(
            Compare::version("t/k", CompareOp::Less, 3),
            true,
            "version < 3",
        ),
        check(
            Compare::version("t/k", CompareOp::Less, 2),
            false,
            "version < 2",
        ),
        check(
            Compare::version("t/k", CompareOp::NotEqual, 1),
            true,
            "version != 1",
        ),
        check(
            Compare::version("t/k", CompareOp::NotEqual, 2),
            false,
            "version != 2",
        ),
        check(
            Compare::create_revision("t/k", CompareOp::Equal, created),
            true,
            "create =",
        ),
        check(
            Compare::create_revision("t/k", CompareOp::Less, created),
            false,
            "create <",
        ),
        check(
            Compare::create_revision("t/k", CompareOp::Greater, created - 1),
            true,
            "create >",
        ),
        check(
            Compare::create_revision("t/k", CompareOp::NotEqual, created),
            false,
            "create !=",
        ),
        check(
            Compare::mod_revision("t/k", CompareOp::Equal, modded),
            true,
            "mod =",
        ),
        check(
            Compare::mod_revision("t/k", CompareOp::Greater, created),
            true,
            "mod >",
        ),
        check(
            Compare::mod_revision("t/k", CompareOp::Less, modded),
            false,
            "mod <",
        ),
        check(
            Compare::mod_revision("t/k", CompareOp::NotEqual, created),
            true,
            "mod !=",
        ),
        check(
            Compare::value("t/k", CompareOp::Equal, "v2"),
            true,
            "value =",
        ),
        check(
            Compare::value("t/k", CompareOp::Equal, "v1"),
            false,
            "value = old",
        ),
        check(
            Compare::value("t/k", CompareOp::Greater, "v1"),
            true,
            "value >",
        ),
        check(
            Compare::value("t/k", CompareOp::Less, "v1"),
            false,
            "value <",
        ),
        check(
            Compare::value("t/k", CompareOp::Less, "v3"),
            true,
            "value < v3",
        ),
        check(
            Compare::value("t/k", CompareOp::NotEqual, "v2"),
            false,
            "value !=",
        ),
        check(
            Compare::lease("t/k", CompareOp::Equal, 0),
            true,
            "lease = 0",
        ),
        // A missing key compares as zero, except on its value.
        check(
            Compare::version("t/missing", CompareOp::Equal, 0),
            true,
            "missing version = 0",
        ),
        check(
            Compare::create_revision("t/missing", CompareOp::Equal, 0),
            true,
            "missing create = 0",
        ),
        check(
            Compare::mod_revision("t/missing", CompareOp::Less, 1),
            true,
            "missing mod < 1",
        ),
        check(
            Compare::value("t/missing", CompareOp::Equal, ""),
            false,
            "missing value = ''",
        ),
        check(
            Compare::value("t/missing", CompareOp::NotEqual, "x"),
            false,
            "missing value != x",
        ),
    ];
    let before = current_rev(c).await;
    for (cmp, expected, what) in cases {
        let resp = txn_ok(
            c,
            Txn::new()
                .when([cmp])
                .and_then([TxnOp::get("t/k", None)])
                .or_else([TxnOp::get("t/k", None), TxnOp::get("t/missing", None)]),
        )
        .await;
        assert_eq!(resp.succeeded(), expected, "compare {what}");
        let gets = txn_gets(&resp);
        assert_eq!(
            gets.len(),
            if expected { 1 } else { 2 },
            "{what}: branch taken"
        );
        assert_eq!(values(gets[0].kvs()), ["v2"]);
    }
    assert_eq!(
        current_rev(c).await,
        before,
        "read-only txns do not move the revision"
    );

    // Several compares: all must hold.
    let resp = txn_ok(
        c,
        Txn::new().when([
            Compare::version("t/k", CompareOp::Equal, 2),
            Compare::value("t/k", CompareOp::Equal, "nope"),
        ]),
    )
    .await;
    assert!(!resp.succeeded());
    // No compares: success; no ops: no revision.
    let resp = txn_ok(c, Txn::new()).await;
    assert!(resp.succeeded());
    assert!(resp.op_responses().is_empty());
    assert_eq!(rev(resp.header()), before);

    // Writes in one txn share one revision; reads inside see earlier ops.
    let resp = txn_ok(
        c,
        Txn::new()
            .when([Compare::value("t/k", CompareOp::Equal, "v2")])
            .and_then([
                TxnOp::put("t/x", "x1", None),
                TxnOp::put("t/y", "y1", Some(PutOptions::new().with_prev_key())),
                TxnOp::delete("t/k", Some(DeleteOptions::new().with_prev_key())),
                TxnOp::get("t/", Some(GetOptions::new().with_prefix())),
            ]),
    )
    .await;
    assert!(resp.succeeded());
    let r = rev(resp.header());
    assert_eq!(r, before + 1, "one revision per txn");
    let ops = resp.op_responses();
    assert_eq!(ops.len(), 4);
    match &ops[0] {
        TxnOpResponse::Put(p) => assert_eq!(rev(p.header()), r),
        other => panic!("expected a put response, got {other:?}"),
    }
    match &ops[1] {
        TxnOpResponse::Put(p) => assert!(p.prev_key().is_none()),
        other => panic!("expected a put response, got {other:?}"),
    }
    match &ops[2] {
        TxnOpResponse::Delete(d) => {
            assert_eq!(d.deleted(), 1);
            assert_eq!(values(d.prev_kvs()), ["v2"]);
        }
        other => panic!("expected a delete response, got {other:?}"),
    }
    match &ops[3] {
        TxnOpResponse::Get(g) => {
            assert_eq!(
                kv_rows(g.kvs()),
                vec![
                    ("t/x".into(), "x1".into(), r, r, 1, 0),
                    ("t/y".into(), "y1".into(), r, r, 1, 0)
                ],
                "a range after writes in the same txn sees them"
            );
        }
        other => panic!("expected a range response, got {other:?}"),
    }
    let after = get(c, "t/", Some(GetOptions::new().with_prefix())).await;
    assert_eq!(keys(after.kvs()), ["t/x", "t/y"]);

    // Failure branch with writes.
    let resp = txn_ok(
        c,
        Txn::new()
            .when([Compare::version("t/x", CompareOp::Greater, 5)])
            .and_then([TxnOp::put("t/then", "1", None)])
            .or_else([TxnOp::put("t/else", "1", None)]),
    )
    .await;
    assert!(!resp.succeeded());
    assert!(get(c, "t/then", None).await.kvs().is_empty());
    assert_eq!(get(c, "t/else", None).await.kvs()[0].mod_revision(), r + 1);

    // Nested txn.
    let inner = Txn::new()
        .when([Compare::value("t/x", CompareOp::Equal, "x1")])
        .and_then([TxnOp::put("t/nested", "n", None), TxnOp::get("t/x", None)])
        .or_else([TxnOp::put("t/nested-else", "n", None)]);
    let resp = txn_ok(
        c,
        Txn::new()
            .when([Compare::version("t/y", CompareOp::Equal, 1)])
            .and_then([TxnOp::put("t/outer", "o", None), TxnOp::txn(inner)]),
    )
    .await;
    assert!(resp.succeeded());
    let rn = rev(resp.header());
    assert_eq!(rn, r + 2);
    let ops = resp.op_responses();
    assert_eq!(ops.len(), 2);
    match &ops[1] {
        TxnOpResponse::Txn(t) => {
            assert!(t.succeeded(), "inner compare holds");
            let inner_ops = t.op_responses();
            assert_eq!(inner_ops.len(), 2);
            assert_eq!(values(txn_gets(t)[0].kvs()), ["x1"]);
        }
        other => panic!("expected a txn response, got {other:?}"),
    }
    assert_eq!(get(c, "t/nested", None).await.kvs()[0].mod_revision(), rn);
    assert_eq!(get(c, "t/outer", None).await.kvs()[0].mod_revision(), rn);
    assert!(get(c, "t/nested-else", None).await.kvs().is_empty());

    // Compares over a range: every key in it must satisfy the compare.
    let pa = put(c, "t/p/a", "1").await;
    let pb = put(c, "t/p/b", "2").await;
    let ranged = |cmp: Compare, expected: bool, what: &'static str| (cmp, expected, what);
    let cases = [
        ranged(
            Compare::version("t/p/", CompareOp::Greater, 0).with_prefix(),
            true,
            "all versions > 0",
        ),
        ranged(
            Compare::mod_revision("t/p/", CompareOp::Less, pb).with_prefix(),
            false,
            "not all mods < pb",
        ),
        ranged(
            Compare::mod_revision("t/p/", CompareOp::Less, pb + 1).with_prefix(),
            true,
            "all mods < pb+1",
        ),
        ranged(
            Compare::create_revision("t/p/", CompareOp::Greater, pa - 1).with_prefix(),
            true,
            "all creates > pa-1",
        ),
        ranged(
            Compare::value("t/p/", CompareOp::Equal, "1").with_prefix(),
            false,
            "not all values 1",
        ),
        ranged(
            Compare::value("t/p/a", CompareOp::Equal, "1").with_range("t/p/b"),
            true,
            "range [a, b)",
        ),
        ranged(
            Compare::version("t/q/", CompareOp::Equal, 0).with_prefix(),
            true,
            "empty range compares as zero",
        ),
    ];
    for (cmp, expected, what) in cases {
        let resp = txn_ok(c, Txn::new().when([cmp])).await;
        assert_eq!(resp.succeeded(), expected, "compare {what}");
    }

    // Limits and errors; none of them moves the revision.
    let rev_before_errors = current_rev(c).await;
    assert_grpc_err(
        c.txn(Txn::new().and_then([
            TxnOp::put("t/dup", "1", None),
            TxnOp::put("t/dup", "2", None),
        ]))
        .await,
        "InvalidArgument",
        DUPLICATE_KEY,
    );
    assert_grpc_err(
        c.txn(Txn::new().and_then([
            TxnOp::put("t/dup/a", "1", None),
            TxnOp::delete("t/dup/", Some(DeleteOptions::new().with_prefix())),
        ]))
        .await,
        "InvalidArgument",
        DUPLICATE_KEY,
    );
    // The same key in both branches is fine: only one of them runs.
    let resp = txn_ok(
        c,
        Txn::new()
            .when([Compare::version("t/dup", CompareOp::Equal, 0)])
            .and_then([TxnOp::put("t/dup", "then", None)])
            .or_else([TxnOp::put("t/dup", "else", None)]),
    )
    .await;
    assert!(resp.succeeded());
    let rev_dup = rev(resp.header());
    assert_eq!(rev_dup, rev_before_errors + 1);

    let ops = |n: usize| -> Vec<TxnOp> {
        (0..n)
            .map(|i| TxnOp::put(format!("t/many/{i:03}"), "v", None))
            .collect()
    };
    assert_grpc_err(
        c.txn(Txn::new().and_then(ops(129))).await,
        "InvalidArgument",
        TOO_MANY_OPS,
    );
    assert_grpc_err(
        c.txn(Txn::new().when([]).and_then([]).or_else(ops(129)))
            .await,
        "InvalidArgument",
        TOO_MANY_OPS,
    );
    let resp = txn_ok(c, Txn::new().and_then(ops(128))).await;
    assert_eq!(rev(resp.header()), rev_dup + 1, "128 ops are allowed");
    let many = get(
        c,
        "t/many/",
        Some(GetOptions::new().with_prefix().with_count_only()),
    )
    .await;
    assert_eq!(many.count(), 128);

    assert_grpc_err(
        c.txn(Txn::new().and_then([TxnOp::put("", "v", None)]))
            .await,
        "InvalidArgument",
        KEY_NOT_PROVIDED,
    );
    assert_grpc_err(
        c.txn(Txn::new().and_then([TxnOp::get(
            "t/x",
            Some(GetOptions::new().with_revision(rev_dup + 1000)),
        )]))
        .await,
        "OutOfRange",
        FUTURE_REV,
    );
    assert_eq!(current_rev(c).await, rev_dup + 1);
}

/// A request over 1.5 MiB is refused before it reaches the log.
async fn request_too_large(c: &mut Client) {
    let before = current_rev(c).await;
    let big = "x".repeat(1_600_000);
    assert_grpc_err(
        c.put("big/k", big.as_str(), None).await,
        "InvalidArgument",
        TOO_LARGE,
    );
    assert_eq!(current_rev(c).await, before);
    // Just under the limit is fine.
    let fits = "y".repeat(1_500_000);
    let r = put(c, "big/k", &fits).await;
    assert_eq!(r, before + 1);
    let back = get(c, "big/k", None).await;
    assert_eq!(back.kvs()[0].value().len(), fits.len());
    c.delete("big/k", None).await.expect("delete big/k");
}

/// Status and MemberList on every member agree with the harness.
async fn status_and_members(cluster: &Cluster) {
    let mut leaders = Vec::new();
    for i in 0..cluster.len() {
        let st = cluster.status(i).await.expect("status");
        assert_eq!(
            st.header().expect("header").member_id(),
            cluster.member_id(i)
        );
        assert!(st.raft_term() > 0);
        assert!(st.raft_index() > 0);
        leaders.push(st.leader());
    }
    assert!(leaders.iter().all(|&l| l == leaders[0]), "{leaders:?}");
    assert!(cluster.index_of(leaders[0]).is_some());

    let mut c = cluster.client(0).await;
    let list = c.member_list().await.expect("member list");
    assert_eq!(
        cluster::listed_members(&list),
        cluster.expected_member_list()
    );
}

/// Compaction: reads below it fail, at it succeed; errors for repeated and
/// future compactions; physical compaction.
async fn compaction(c: &mut Client) {
    let mut revs = Vec::new();
    for i in 1..=5 {
        revs.push(put(c, "c/k", &format!("v{i}")).await);
    }
    let resp = c.compact(revs[2], None).await.expect("compact");
    assert_eq!(
        rev(resp.header()),
        revs[4],
        "compaction does not move the revision"
    );

    assert_grpc_err(
        c.get("c/k", Some(GetOptions::new().with_revision(revs[1])))
            .await,
        "OutOfRange",
        COMPACTED,
    );
    let at = get(c, "c/k", Some(GetOptions::new().with_revision(revs[2]))).await;
    assert_eq!(values(at.kvs()), ["v3"]);
    assert_eq!(at.kvs()[0].version(), 3);
    // Keys still live keep their history from before the compaction point.
    let fresh = get(c, "fresh/k", None).await;
    assert_eq!(fresh.kvs()[0].create_revision(), 2);

    assert_grpc_err(c.compact(revs[2], None).await, "OutOfRange", COMPACTED);
    assert_grpc_err(c.compact(revs[1], None).await, "OutOfRange", COMPACTED);
    assert_grpc_err(
        c.compact(revs[4] + 100, None).await,
        "OutOfRange",
        FUTURE_REV,
    );

    let resp = c
        .compact(revs[3], Some(CompactionOptions::new().with_physical()))
        .await
        .expect("physical compaction");
    assert_eq!(rev(resp.header()), revs[4]);
    assert_grpc_err(
        c.get("c/k", Some(GetOptions::new().with_revision(revs[2])))
            .await,
        "OutOfRange",
        COMPACTED,
    );
    assert_grpc_err(
        c.txn(Txn::new().and_then([TxnOp::get(
            "c/k",
            Some(GetOptions::new().with_revision(revs[2])),
        )]))
        .await,
        "OutOfRange",
        COMPACTED,
    );
    let at = get(c, "c/k", Some(GetOptions::new().with_revision(revs[3]))).await;
    assert_eq!(values(at.kvs()), ["v4"]);
    let now = get(c, "c/k", None).await;
    assert_eq!(
        kv_rows(now.kvs()),
        vec![("c/k".into(), "v5".into(), revs[0], revs[4], 5, 0)]
    );
}

#[test]
fn etcd_kv_semantics() {
    let started = Instant::now();
    let cluster = Cluster::start(ClusterOptions::default());
    eprintln!(
        "cluster up in {:?} at {}",
        started.elapsed(),
        cluster.dir().display()
    );
    let rt = cluster::runtime();
    rt.block_on(async {
        let leader = cluster.leader().await;
        let follower = (leader + 1) % cluster.len();
        let mut c = cluster.client(leader).await;
        let mut f = cluster.client(follower).await;

        let step = Instant::now();
        fresh_revisions(&mut c).await;
        range_basics(&mut c).await;
        range_edges(&mut c).await;
        range_sort_and_filters(&mut f).await;
        follower_reads(&cluster, leader, follower).await;
        follower_writes(&cluster, leader, follower).await;
        put_options(&mut c).await;
        delete_range(&mut f).await;
        txn_semantics(&mut c).await;
        request_too_large(&mut c).await;
        status_and_members(&cluster).await;
        compaction(&mut c).await;
        eprintln!("steps done in {:?}", step.elapsed());
    });
}
