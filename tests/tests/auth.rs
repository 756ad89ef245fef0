//! etcd v3 authentication and authorization on real three-member sett
//! clusters, through the `etcd-client` crate (and raw gRPC for tokens no
//! client would send), with a reference etcd 3.4 for the answers:
//!
//! - `permissions_matrix_matches_etcd`: enabling without root fails (both
//!   of etcd's messages); users root, a reader of prefix `/a/`, a writer
//!   of prefix `/b/`, a read-write user of the single key `/k` and a user
//!   with no role each try ranges, puts, deletes (with and without
//!   `prev_kv`), txns (compares and ops, a txn mixing allowed and
//!   forbidden keys, a nested txn), lease revokes with attached keys,
//!   member list, status and user management through a different member
//!   each. Every answer must be the expected one, and the same as a real
//!   etcd 3.4 gives for the same setup, except where sett is stricter
//!   (Compact needs role root). Then: requests without a token or with an
//!   unknown one, bad passwords and password-less users, watches (events
//!   on an allowed prefix; a forbidden range refused as etcd refuses it),
//!   a permission granted through one member used at once through the
//!   others, a user's token dying with a password change, and disabling
//!   auth giving open access back.
//! - `auth_state_survives_restarts_and_snapshots`: users, roles and the
//!   enabled flag survive a restart of every member (tokens do not:
//!   clients get `invalid auth token` and authenticate again), and reach
//!   a member that was down while they changed and catches up from a
//!   snapshot.
//!
//! - `etcdctl_auth_sequence_matches_etcd`: one etcdctl 3.4 sequence
//!   (users, roles, permissions, `auth enable` adding role root by
//!   itself, commands with and without `--user`) gives the same exit
//!   codes and output on etcd and on sett; settctl's user and role
//!   commands print what etcdctl prints.
//!
//! Needs `target/<profile>/sett`, `target/<profile>/settctl` and
//! `/usr/bin/etcd`, `/usr/bin/etcdctl` 3.4.

#[path = "../src/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use cluster::{run_scenario, text, Cluster, ClusterOptions};
use etcd_client::{
    Client, Compare, CompareOp, ConnectOptions, DeleteOptions, Error, GetOptions, Permission,
    PutOptions, Txn, TxnOp, UserAddOptions, WatchOptions,
};
use sett_tests::etcd_ref::{etcdctl, normalize, run_bounded, CtlOutput, EtcdRef};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const TIMEOUT: Duration = Duration::from_secs(15);
/// Bound on waiting for a watch event or a member to catch up.
const CONVERGE_TIMEOUT: Duration = Duration::from_secs(30);

const ROOT_PW: &str = "rootpw";
const DENIED: (&str, &str) = ("PermissionDenied", "etcdserver: permission denied");
const USER_EMPTY: (&str, &str) = ("InvalidArgument", "etcdserver: user name is empty");
const INVALID_TOKEN: (&str, &str) = ("Unauthenticated", "etcdserver: invalid auth token");
const AUTH_FAILED: (&str, &str) = (
    "InvalidArgument",
    "etcdserver: authentication failed, invalid user ID or password",
);

/// What one call gave: `Ok` or `(code, message)`.
type Outcome = Result<(), (String, String)>;

fn outcome<T>(r: Result<T, Error>) -> Outcome {
    match r {
        Ok(_) => Ok(()),
        Err(Error::GRpcStatus(s)) => Err((format!("{:?}", s.code()), s.message().to_owned())),
        Err(e) => Err(("client".to_owned(), e.to_string())),
    }
}

fn err(e: (&str, &str)) -> Outcome {
    Err((e.0.to_owned(), e.1.to_owned()))
}

fn options() -> ConnectOptions {
    ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(3))
        .with_timeout(TIMEOUT)
}

async fn anonymous(url: &str) -> Client {
    Client::connect([url], Some(options()))
        .await
        .unwrap_or_else(|e| panic!("connect to {url}: {e}"))
}

async fn login(url: &str, user: &str, password: &str) -> Result<Client, Error> {
    Client::connect([url], Some(options().with_user(user, password))).await
}

async fn user(url: &str, user: &str, password: &str) -> Client {
    login(url, user, password)
        .await
        .unwrap_or_else(|e| panic!("authenticate {user} at {url}: {e}"))
}

/// A Range of `key` with gRPC metadata `token` set to `token` (what no
/// client library sends on its own).
async fn range_with_token(url: &str, token: &str, key: &str) -> Outcome {
    use sett_client::etcdserverpb::kv_client::KvClient;
    use sett_client::etcdserverpb::RangeRequest;
    let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
        .expect("endpoint")
        .connect()
        .await
        .expect("connect");
    let mut req = tonic::Request::new(RangeRequest {
        key: key.as_bytes().to_vec().into(),
        ..RangeRequest::default()
    });
    req.metadata_mut()
        .insert("token", token.parse().expect("ascii token"));
    match KvClient::new(channel).range(req).await {
        Ok(_) => Ok(()),
        Err(s) => Err((format!("{:?}", s.code()), s.message().to_owned())),
    }
}

/// The users of the matrix: name, password, roles.
const USERS: [(&str, &str); 5] = [
    ("root", ROOT_PW),
    ("reader", "rpw"),
    ("writer", "wpw"),
    ("single", "spw"),
    ("nobody", "npw"),
];

/// Creates the users and roles of the matrix and the keys they touch, then
/// enables auth; checks etcd's two refusals of enabling on the way.
async fn set_up(c: &mut Client) {
    assert_eq!(
        outcome(c.auth_enable().await),
        err(("FailedPrecondition", "etcdserver: root user does not exist")),
        "enable without a root user"
    );
    for (name, pw) in USERS {
        c.user_add(name, pw, None).await.expect("user add");
    }
    assert_eq!(
        outcome(c.user_add("root", "x", None).await),
        err(("FailedPrecondition", "etcdserver: user name already exists"))
    );
    c.user_add("np", "", Some(UserAddOptions::new().with_no_pwd()))
        .await
        .expect("user add without password");
    assert_eq!(
        outcome(c.auth_enable().await),
        err((
            "FailedPrecondition",
            "etcdserver: root user does not have root role"
        )),
        "enable while root lacks role root"
    );
    // As `etcdctl auth enable` does: role root exists as a role too.
    c.role_add("root").await.expect("role add root");
    c.user_grant_role("root", "root").await.expect("grant root");
    c.role_add("ro-a").await.expect("role add");
    c.role_grant_permission("ro-a", Permission::read("/a/").with_prefix())
        .await
        .expect("grant");
    c.role_add("wo-b").await.expect("role add");
    c.role_grant_permission("wo-b", Permission::write("/b/").with_prefix())
        .await
        .expect("grant");
    c.role_add("rw-k").await.expect("role add");
    c.role_grant_permission("rw-k", Permission::read_write("/k"))
        .await
        .expect("grant");
    for (u, r) in [("reader", "ro-a"), ("writer", "wo-b"), ("single", "rw-k")] {
        c.user_grant_role(u, r).await.expect("grant role");
    }
    assert_eq!(
        outcome(c.user_grant_role("reader", "nope").await),
        err(("FailedPrecondition", "etcdserver: role name not found"))
    );
    assert_eq!(
        outcome(c.user_revoke_role("reader", "wo-b").await),
        err((
            "FailedPrecondition",
            "etcdserver: role is not granted to the user"
        ))
    );
    for (k, v) in [("/a/1", "a1"), ("/b/1", "b1"), ("/k", "k"), ("/z", "z")] {
        c.put(k, v, None).await.expect("seed");
    }
    c.auth_enable().await.expect("enable");
}

/// One operation of the matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Op {
    GetA,
    GetPrefixA,
    GetB,
    GetK,
    GetFromKey,
    PutA,
    PutB,
    PutK,
    PutZ,
    DeleteB,
    DeletePrevKvB,
    TxnCompareAPutB,
    TxnPutsB,
    TxnMixed,
    TxnNestedReadA,
    LeaseRevokeB,
    LeaseRevokeA,
    LeaseGrant,
    MemberList,
    Status,
    UserGetSelf,
    UserList,
    RoleGetOwn,
}

const OPS: [Op; 23] = [
    Op::GetA,
    Op::GetPrefixA,
    Op::GetB,
    Op::GetK,
    Op::GetFromKey,
    Op::PutA,
    Op::PutB,
    Op::PutK,
    Op::PutZ,
    Op::DeleteB,
    Op::DeletePrevKvB,
    Op::TxnCompareAPutB,
    Op::TxnPutsB,
    Op::TxnMixed,
    Op::TxnNestedReadA,
    Op::LeaseRevokeB,
    Op::LeaseRevokeA,
    Op::LeaseGrant,
    Op::MemberList,
    Op::Status,
    Op::UserGetSelf,
    Op::UserList,
    Op::RoleGetOwn,
];

/// Which operations each user may make (all others are denied).
fn allowed(user: &str, op: Op) -> bool {
    use Op::*;
    let anyone = matches!(op, LeaseGrant | MemberList | Status | UserGetSelf);
    anyone
        || match user {
            "root" => true,
            "reader" => matches!(op, GetA | GetPrefixA | RoleGetOwn),
            "writer" => matches!(op, PutB | DeleteB | TxnPutsB | LeaseRevokeB | RoleGetOwn),
            "single" => matches!(op, GetK | PutK | RoleGetOwn),
            _ => false,
        }
}

fn own_role(user: &str) -> &'static str {
    match user {
        "reader" => "ro-a",
        "writer" => "wo-b",
        "single" => "rw-k",
        _ => "root",
    }
}

/// Runs `op` as `user` through `c`; `root` is a root client for the
/// preparation of lease revokes.
async fn run_op(c: &mut Client, root: &mut Client, user: &str, op: Op) -> Outcome {
    let tag = format!("{user}-{op:?}");
    match op {
        Op::GetA => outcome(c.get("/a/1", None).await),
        Op::GetPrefixA => outcome(c.get("/a/", Some(GetOptions::new().with_prefix())).await),
        Op::GetB => outcome(c.get("/b/1", None).await),
        Op::GetK => outcome(c.get("/k", None).await),
        Op::GetFromKey => outcome(c.get("/", Some(GetOptions::new().with_from_key())).await),
        Op::PutA => outcome(c.put(format!("/a/{tag}"), "v", None).await),
        Op::PutB => outcome(c.put(format!("/b/{tag}"), "v", None).await),
        Op::PutK => outcome(c.put("/k", "v", None).await),
        Op::PutZ => outcome(c.put("/z", "v", None).await),
        Op::DeleteB => outcome(c.delete(format!("/b/{tag}"), None).await),
        Op::DeletePrevKvB => outcome(
            c.delete(
                format!("/b/{tag}"),
                Some(DeleteOptions::new().with_prev_key()),
            )
            .await,
        ),
        Op::TxnCompareAPutB => {
            let t = Txn::new()
                .when([Compare::value("/a/1", CompareOp::Equal, "a1")])
                .and_then([TxnOp::put(format!("/b/{tag}"), "v", None)]);
            outcome(c.txn(t).await)
        }
        Op::TxnPutsB => {
            let t = Txn::new().and_then([
                TxnOp::put(format!("/b/{tag}-1"), "v", None),
                TxnOp::put(format!("/b/{tag}-2"), "v", None),
            ]);
            outcome(c.txn(t).await)
        }
        Op::TxnMixed => {
            let t = Txn::new().and_then([
                TxnOp::put(format!("/b/{tag}"), "v", None),
                TxnOp::put(format!("/a/{tag}"), "v", None),
            ]);
            let r = outcome(c.txn(t).await);
            if r.is_err() {
                // Denied as a whole: the allowed half was not written.
                let got = root.get(format!("/b/{tag}"), None).await.expect("root get");
                assert!(got.kvs().is_empty(), "{tag}: half of a denied txn applied");
            }
            r
        }
        Op::TxnNestedReadA => {
            let inner = Txn::new().and_then([TxnOp::get("/a/1", None)]);
            let t = Txn::new().and_then([
                TxnOp::put(format!("/b/{tag}"), "v", None),
                TxnOp::txn(inner),
            ]);
            outcome(c.txn(t).await)
        }
        Op::LeaseRevokeB | Op::LeaseRevokeA => {
            let lease = root.lease_grant(60, None).await.expect("grant").id();
            let prefix = if op == Op::LeaseRevokeB { "/b/" } else { "/a/" };
            for i in 0..2 {
                root.put(
                    format!("{prefix}{tag}-{i}"),
                    "v",
                    Some(PutOptions::new().with_lease(lease)),
                )
                .await
                .expect("put with lease");
            }
            let r = outcome(c.lease_revoke(lease).await);
            let left = root
                .get(
                    format!("{prefix}{tag}-"),
                    Some(GetOptions::new().with_prefix()),
                )
                .await
                .expect("root get")
                .kvs()
                .len();
            assert_eq!(left, if r.is_ok() { 0 } else { 2 }, "{tag}: attached keys");
            r
        }
        Op::LeaseGrant => outcome(c.lease_grant(30, None).await),
        Op::MemberList => outcome(c.member_list().await),
        Op::Status => outcome(c.status().await),
        Op::UserGetSelf => outcome(c.user_get(user).await),
        Op::UserList => outcome(c.user_list().await),
        Op::RoleGetOwn => outcome(c.role_get(own_role(user)).await),
    }
}

/// Runs every operation as every user, user `i` through `urls[i %
/// urls.len()]`; returns the outcomes.
async fn run_matrix(urls: &[String]) -> BTreeMap<(String, Op), Outcome> {
    let mut root = user(&urls[0], "root", ROOT_PW).await;
    let mut out = BTreeMap::new();
    for (i, (name, pw)) in USERS.iter().enumerate() {
        let mut c = user(&urls[i % urls.len()], name, pw).await;
        for op in OPS {
            let r = run_op(&mut c, &mut root, name, op).await;
            out.insert(((*name).to_owned(), op), r);
        }
    }
    out
}

/// The watch answers of `user`: events under `/a/` after a root put, or
/// the refusal of the watch.
async fn watch_as(url: &str, root_url: &str, name: &str, pw: &str) -> String {
    let mut c = user(url, name, pw).await;
    let mut stream = c
        .watch("/a/", Some(WatchOptions::new().with_prefix()))
        .await
        .expect("watch call");
    let created = tokio::time::timeout(TIMEOUT, stream.message())
        .await
        .expect("created response in time")
        .expect("watch stream")
        .expect("a response");
    if created.canceled() {
        return format!(
            "refused: created={} canceled={} id={} reason={:?}",
            created.created(),
            created.canceled(),
            created.watch_id(),
            created.cancel_reason()
        );
    }
    let mut root = user(root_url, "root", ROOT_PW).await;
    let key = format!("/a/watched-by-{name}");
    root.put(key.as_str(), "w", None).await.expect("root put");
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let m = tokio::time::timeout(left, stream.message())
            .await
            .expect("event in time")
            .expect("watch stream")
            .expect("a response");
        if let Some(e) = m.events().iter().find(|e| e.kv().is_some()) {
            return format!("event {}", text(e.kv().expect("kv").key()));
        }
    }
}

/// The checks outside the matrix that give the same answers on etcd and
/// on sett (run on both, compared).
async fn common_checks(urls: &[String]) -> Vec<(String, Outcome)> {
    let u0 = &urls[0];
    let u1 = &urls[1 % urls.len()];
    let mut out = Vec::new();
    let mut anon = anonymous(u0).await;
    out.push((
        "get without token".into(),
        outcome(anon.get("/a/1", None).await),
    ));
    out.push((
        "put without token".into(),
        outcome(anon.put("/a/1", "x", None).await),
    ));
    out.push((
        "unknown token".into(),
        range_with_token(u0, "no-such-token.1", "/a/1").await,
    ));
    out.push((
        "wrong password".into(),
        outcome(login(u1, "reader", "wrong").await),
    ));
    out.push((
        "unknown user".into(),
        outcome(login(u1, "ghost", "x").await),
    ));
    out.push((
        "no-password user".into(),
        outcome(login(u1, "np", "").await),
    ));
    let mut root = user(u0, "root", ROOT_PW).await;
    out.push((
        "delete root".into(),
        outcome(root.user_delete("root").await),
    ));
    out.push((
        "revoke root from root".into(),
        outcome(root.user_revoke_role("root", "root").await),
    ));
    out.push((
        "delete role root".into(),
        outcome(root.role_delete("root").await),
    ));
    out.push((
        "role add existing".into(),
        outcome(root.role_add("ro-a").await),
    ));
    out.push((
        "user delete unknown".into(),
        outcome(root.user_delete("ghost").await),
    ));
    out.push((
        "revoke missing permission".into(),
        outcome(root.role_revoke_permission("ro-a", "/nope", None).await),
    ));
    let perms = root.role_get("ro-a").await.expect("role get");
    out.push((
        format!(
            "role get ro-a: {:?}",
            perms
                .permissions()
                .iter()
                .map(|p| (p.get_type(), text(p.key()), text(p.range_end())))
                .collect::<Vec<_>>()
        ),
        Ok(()),
    ));
    let users = root.user_list().await.expect("user list");
    out.push((format!("user list: {:?}", users.users()), Ok(())));
    out
}

#[test]
fn permissions_matrix_matches_etcd() {
    run_scenario("permissions_matrix_matches_etcd", async {
        // The reference: a single-member etcd 3.4 with the same setup.
        let etcd_dir = tempfile::tempdir().expect("tempdir");
        let etcd = EtcdRef::start(etcd_dir.path());
        let etcd_urls = vec![etcd.client_url().to_owned()];
        set_up(&mut anonymous(&etcd_urls[0]).await).await;
        let want_matrix = run_matrix(&etcd_urls).await;
        let want_common = common_checks(&etcd_urls).await;
        let want_watch = watch_as(&etcd_urls[0], &etcd_urls[0], "writer", "wpw").await;
        drop(etcd);

        let cluster = Cluster::start(ClusterOptions {
            extra_args: vec!["--bcrypt-cost=4".to_owned()],
            ..ClusterOptions::default()
        });
        let urls = cluster.client_urls();
        set_up(&mut anonymous(&urls[0]).await).await;
        let got_matrix = run_matrix(&urls).await;

        let mut wrong = Vec::new();
        for ((name, op), got) in &got_matrix {
            let expected = if allowed(name, *op) {
                Ok(())
            } else {
                err(DENIED)
            };
            // Where sett is stricter than etcd 3.4 (which does not look
            // into nested txns), the expectation is sett's; everywhere
            // else etcd's answer must match as well.
            let etcd = &want_matrix[&(name.clone(), *op)];
            let stricter = *op == Op::TxnNestedReadA && name == "writer" && etcd.is_ok();
            if *got != expected || (etcd != got && !stricter) {
                wrong.push(format!(
                    "{name} {op:?}: sett {got:?}, expected {expected:?}, etcd {etcd:?}"
                ));
            }
        }
        assert!(wrong.is_empty(), "matrix mismatches:\n{}", wrong.join("\n"));

        let got_common = common_checks(&urls).await;
        assert_eq!(got_common, want_common, "answers differ from etcd 3.4");
        let expected_first: Vec<Outcome> = vec![
            err(USER_EMPTY),
            err(USER_EMPTY),
            err(INVALID_TOKEN),
            err(AUTH_FAILED),
            err(AUTH_FAILED),
            err((
                "Unknown",
                "auth: authentication failed, password was given for no password user",
            )),
        ];
        let first: Vec<Outcome> = got_common.iter().take(6).map(|(_, o)| o.clone()).collect();
        assert_eq!(first, expected_first);

        // Watches: the reader's prefix delivers events (through member 1),
        // the writer's watch of the same prefix is refused as etcd does.
        let reader_watch = watch_as(&urls[1], &urls[0], "reader", "rpw").await;
        assert_eq!(reader_watch, "event /a/watched-by-reader");
        let writer_watch = watch_as(&urls[2], &urls[0], "writer", "wpw").await;
        assert_eq!(writer_watch, want_watch, "refused watch differs from etcd");
        assert!(writer_watch.starts_with("refused"), "{writer_watch}");

        // Compact needs role root (etcd 3.4 lets any user compact).
        let mut reader = user(&urls[1], "reader", "rpw").await;
        assert_eq!(outcome(reader.compact(2, None).await), err(DENIED));
        let mut root = user(&urls[0], "root", ROOT_PW).await;
        root.compact(2, None).await.expect("root compacts");

        // A grant through member 0 is in force on every member as soon as
        // it is acknowledged.
        root.role_grant_permission("ro-a", Permission::read("/b/").with_prefix())
            .await
            .expect("grant");
        for url in &urls {
            let mut r = user(url, "reader", "rpw").await;
            r.get("/b/1", None)
                .await
                .unwrap_or_else(|e| panic!("reader reads /b/1 at {url} after the grant: {e}"));
        }
        root.role_revoke_permission(
            "ro-a",
            "/b/",
            Some(etcd_client::RoleRevokePermissionOptions::new().with_prefix()),
        )
        .await
        .expect("revoke");
        for url in &urls {
            let mut r = user(url, "reader", "rpw").await;
            assert_eq!(outcome(r.get("/b/1", None).await), err(DENIED), "{url}");
        }

        // A password change ends the user's tokens on every member.
        let mut readers = Vec::new();
        for url in &urls {
            readers.push(user(url, "reader", "rpw").await);
        }
        root.user_change_password("reader", "rpw2")
            .await
            .expect("change password");
        for r in &mut readers {
            assert_eq!(outcome(r.get("/a/1", None).await), err(INVALID_TOKEN));
        }
        assert_eq!(
            outcome(login(&urls[2], "reader", "rpw").await),
            err(AUTH_FAILED)
        );
        user(&urls[2], "reader", "rpw2")
            .await
            .get("/a/1", None)
            .await
            .expect("new password works");

        // Disabling gives open access back.
        root.auth_disable().await.expect("disable");
        let mut anon = anonymous(&urls[1]).await;
        anon.put("/z", "open", None).await.expect("open put");
        anon.get("/b/1", None).await.expect("open get");
        assert_eq!(
            outcome(login(&urls[1], "root", ROOT_PW).await),
            err((
                "FailedPrecondition",
                "etcdserver: authentication is not enabled"
            ))
        );
    });
}

/// Polls until `name` (password `pw`) can read `key` through `url`
/// (serializable, from that member's own state).
async fn wait_readable(url: &str, name: &str, pw: &str, key: &str, details: impl Fn() -> String) {
    let deadline = Instant::now() + CONVERGE_TIMEOUT;
    loop {
        let last = match login(url, name, pw).await {
            Ok(mut c) => outcome(
                c.get(key, Some(GetOptions::new().with_serializable()))
                    .await,
            ),
            Err(e) => outcome::<()>(Err(e)),
        };
        if last.is_ok() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{name} cannot read {key} at {url}: {last:?}\n{}",
            details()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[test]
fn auth_state_survives_restarts_and_snapshots() {
    run_scenario("auth_state_survives_restarts_and_snapshots", async {
        let mut cluster = Cluster::start(ClusterOptions {
            snapshot_count: 50,
            snapshot_catchup_entries: 10,
            extra_args: vec!["--bcrypt-cost=4".to_owned()],
            ..ClusterOptions::default()
        });
        let urls = cluster.client_urls();
        set_up(&mut anonymous(&urls[0]).await).await;
        let mut reader = user(&urls[1], "reader", "rpw").await;
        reader.get("/a/1", None).await.expect("reader reads");
        // sett's own client: authenticates at connect, sends the token
        // with every call (native transactions included).
        let sc = sett_client::Client::connect(
            urls.clone(),
            sett_client::ConnectOptions::new().with_user("reader", "rpw"),
        )
        .await
        .expect("sett-client connects as reader");
        let got = sc
            .kv()
            .get("/a/1", sett_client::GetOptions::new())
            .await
            .expect("sett-client reads /a/1");
        assert_eq!(got.kvs.len(), 1);
        let denied = sc
            .kv()
            .put("/a/1", "x", sett_client::PutOptions::new())
            .await
            .expect_err("reader may not write");
        assert_eq!(
            denied.status().map(|s| (s.code(), s.message().to_owned())),
            Some((tonic::Code::PermissionDenied, DENIED.1.to_owned()))
        );
        let txns = sc.transactions();
        let txn = txns.begin().await.expect("begin");
        assert!(txn.get("/a/1").await.expect("native get").is_some());
        txn.put("/a/2", "x");
        let refused = txns.commit(&txn).await.expect_err("native write refused");
        assert_eq!(refused.code(), tonic::Code::PermissionDenied);
        let txn = txns.begin().await.expect("begin");
        assert_eq!(
            txn.get("/b/1")
                .await
                .expect_err("native read refused")
                .code(),
            tonic::Code::PermissionDenied
        );

        // Every member restarts: users and roles persist, tokens do not.
        for i in 0..cluster.len() {
            cluster.stop(i);
        }
        for i in 0..cluster.len() {
            cluster.restart(i);
        }
        wait_readable(&urls[0], "reader", "rpw", "/a/1", || {
            cluster.all_log_tails()
        })
        .await;
        assert_eq!(
            outcome(reader.get("/a/1", None).await),
            err(INVALID_TOKEN),
            "a token from before the restart"
        );
        // sett-client authenticates again by itself.
        let got = sc
            .kv()
            .get("/a/1", sett_client::GetOptions::new())
            .await
            .expect("sett-client reads after the restart");
        assert_eq!(got.kvs.len(), 1);
        for url in &urls {
            let mut r = user(url, "reader", "rpw").await;
            r.get("/a/1", None)
                .await
                .expect("reader reads after restart");
            assert_eq!(outcome(r.get("/b/1", None).await), err(DENIED));
        }
        assert_eq!(
            outcome(anonymous(&urls[2]).await.get("/a/1", None).await),
            err(USER_EMPTY)
        );

        // Member 2 is down while users, roles and many keys change; it
        // catches up from a snapshot (its log has been purged past it).
        cluster.stop(2);
        let mut root = user(&urls[0], "root", ROOT_PW).await;
        root.user_add("late", "lpw", None).await.expect("user add");
        root.role_add("late-role").await.expect("role add");
        root.role_grant_permission("late-role", Permission::read("/late/").with_prefix())
            .await
            .expect("grant");
        root.user_grant_role("late", "late-role")
            .await
            .expect("grant role");
        root.user_delete("writer").await.expect("user delete");
        for i in 0..200 {
            root.put(format!("/late/{i}"), "v", None)
                .await
                .expect("put");
        }
        cluster.restart(2);
        wait_readable(&urls[2], "late", "lpw", "/late/1", || cluster.log_tail(2)).await;
        // The state machine's store moves to a new directory only when a
        // snapshot is installed.
        assert!(
            cluster.log_contains(2, "sm/db-2/MANIFEST"),
            "member 2 caught up without a snapshot:\n{}",
            cluster.log_tail(2)
        );
        let mut late = user(&urls[2], "late", "lpw").await;
        assert_eq!(
            outcome(
                late.get("/a/1", Some(GetOptions::new().with_serializable()))
                    .await
            ),
            err(DENIED)
        );
        assert_eq!(
            outcome(login(&urls[2], "writer", "wpw").await),
            err(AUTH_FAILED)
        );
        let mut root2 = user(&urls[2], "root", ROOT_PW).await;
        let users = root2.user_list().await.expect("user list on member 2");
        assert!(
            users.users().iter().any(|u| u == "late"),
            "{:?}",
            users.users()
        );
        assert!(
            !users.users().iter().any(|u| u == "writer"),
            "{:?}",
            users.users()
        );
    });
}

/// The etcdctl sequence: `(args, must succeed on etcd)`.
const CTL_SEQUENCE: &[(&[&str], bool)] = &[
    (&["auth", "enable"], false),
    (&["user", "add", "root", "--new-user-password=rootpw"], true),
    (&["user", "add", "root", "--new-user-password=x"], false),
    (&["role", "add", "app"], true),
    (
        &["role", "grant-permission", "app", "read", "/a/", "--prefix"],
        true,
    ),
    (
        &["role", "grant-permission", "app", "readwrite", "/k"],
        true,
    ),
    (
        &["role", "grant-permission", "app", "write", "/w", "/wz"],
        true,
    ),
    (
        &[
            "role",
            "grant-permission",
            "app",
            "read",
            "/f",
            "--from-key",
        ],
        true,
    ),
    (&["role", "get", "app"], true),
    (&["user", "add", "u", "--new-user-password=upw"], true),
    (&["user", "grant-role", "u", "app"], true),
    (&["user", "grant-role", "u", "missing"], false),
    (&["user", "get", "u"], true),
    (&["put", "/a/1", "v"], true),
    (&["auth", "enable"], true),
    (&["get", "/a/1"], false),
    (&["--user", "root:bad", "get", "/a/1"], false),
    (&["--user", "u:upw", "get", "/a/1"], true),
    (&["--user", "u:upw", "get", "/a/", "--prefix"], true),
    (&["--user", "u:upw", "put", "/a/2", "v"], false),
    (&["--user", "u:upw", "put", "/k", "v"], true),
    (&["--user", "u:upw", "del", "/w1"], true),
    (&["--user", "u:upw", "get", "/b"], false),
    (&["--user", "u:upw", "user", "list"], false),
    (&["--user", "u:upw", "user", "get", "u"], true),
    (&["--user", "root:rootpw", "role", "get", "root"], true),
    (&["--user", "root:rootpw", "user", "list"], true),
    (&["--user", "root:rootpw", "role", "list"], true),
    (
        &["--user", "root:rootpw", "user", "get", "u", "--detail"],
        true,
    ),
    (
        &[
            "--user",
            "root:rootpw",
            "role",
            "revoke-permission",
            "app",
            "/k",
        ],
        true,
    ),
    (
        &[
            "--user",
            "root:rootpw",
            "role",
            "revoke-permission",
            "app",
            "/k",
        ],
        false,
    ),
    (
        &["--user", "root:rootpw", "user", "revoke-role", "u", "app"],
        true,
    ),
    (&["--user", "root:rootpw", "user", "delete", "root"], false),
    (&["--user", "root:rootpw", "role", "delete", "root"], false),
    (&["--user", "root:rootpw", "user", "delete", "u"], true),
    (&["--user", "root:rootpw", "auth", "disable"], true),
    (&["get", "/a/1"], true),
];

/// What one run of the sequence gave, normalised.
fn run_ctl_sequence(endpoint: &str) -> Vec<CtlOutput> {
    CTL_SEQUENCE
        .iter()
        .map(|(args, _)| {
            let raw = etcdctl(endpoint, args, None);
            CtlOutput {
                code: raw.code,
                stdout: normalize(&raw.stdout, &[endpoint]),
                stderr: normalize(&raw.stderr, &[endpoint]),
            }
        })
        .collect()
}

/// Runs settctl against `endpoint`.
fn settctl(endpoint: &str, args: &[&str]) -> CtlOutput {
    let mut cmd = std::process::Command::new(cluster::built_binary("settctl"));
    cmd.arg(format!("--endpoints={endpoint}")).args(args);
    run_bounded(cmd, None, TIMEOUT, &format!("settctl {args:?}"))
}

#[test]
fn etcdctl_auth_sequence_matches_etcd() {
    run_scenario("etcdctl_auth_sequence_matches_etcd", async {
        let etcd_dir = tempfile::tempdir().expect("tempdir");
        let etcd = EtcdRef::start(etcd_dir.path());
        let want = run_ctl_sequence(etcd.client_url());
        drop(etcd);
        for ((args, ok), out) in CTL_SEQUENCE.iter().zip(&want) {
            assert_eq!(
                out.code == 0,
                *ok,
                "etcd disagrees with the sequence: {args:?} {out:?}"
            );
        }

        let cluster = Cluster::start(ClusterOptions {
            extra_args: vec!["--bcrypt-cost=4".to_owned()],
            ..ClusterOptions::default()
        });
        let url = cluster.client_url(1);
        let got = run_ctl_sequence(&url);
        let mut report = String::new();
        for (((args, _), w), g) in CTL_SEQUENCE.iter().zip(&want).zip(&got) {
            if w != g {
                report.push_str(&format!(
                    "\n=== etcdctl {args:?}\n--- etcd: {w:?}\n--- sett: {g:?}\n"
                ));
            }
        }
        assert!(report.is_empty(), "sett differs from etcd 3.4:{report}");

        // settctl prints what etcdctl prints, and authenticates the same way.
        let root = ["--user", "root:rootpw"];
        let steps: &[&[&str]] = &[
            &["user", "add", "s", "--new-user-password=spw"],
            &["role", "add", "srole"],
            &[
                "role",
                "grant-permission",
                "srole",
                "readwrite",
                "/s/",
                "--prefix",
            ],
            &["user", "grant-role", "s", "srole"],
            &["role", "get", "srole"],
            &["user", "get", "s"],
            &["user", "list"],
            &["auth", "enable"],
            &["role", "list"],
        ];
        for step in steps {
            let args: Vec<&str> = root.iter().chain(step.iter()).copied().collect();
            let out = settctl(&url, &args);
            assert_eq!(out.code, 0, "settctl {args:?}: {out:?}");
            if matches!(step[0], "user" | "role") && matches!(step[1], "get" | "list") {
                let ctl = etcdctl(&url, &args, None);
                assert_eq!(out.stdout, ctl.stdout, "settctl {args:?} vs etcdctl");
            }
        }
        let denied = settctl(&url, &["get", "/s/1"]);
        assert_ne!(denied.code, 0);
        assert!(
            denied.stderr.contains("etcdserver: user name is empty"),
            "{denied:?}"
        );
        let put = settctl(
            &url,
            &["--user", "s", "--password", "spw", "put", "/s/1", "v"],
        );
        assert_eq!(put.code, 0, "{put:?}");
        let refused = settctl(&url, &["--user", "s:spw", "put", "/t", "v"]);
        assert!(
            refused.stderr.contains("etcdserver: permission denied"),
            "{refused:?}"
        );
        let status = settctl(&url, &["--user", "s:spw", "auth", "status"]);
        assert_eq!(status.code, 0, "{status:?}");
        assert!(
            status.stdout.starts_with("Authentication Status: true\n"),
            "{status:?}"
        );
    });
}
