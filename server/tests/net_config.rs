//! Member flags: parsing as etcd spells them, validation errors, node ids,
//! and restart from `member.json`. (Environment variables are tested in
//! `net_config_env.rs`, alone in their process.)

use clap::Parser;
use sett_server::config::{
    node_id, parse_initial_cluster, AutoCompactionMode, ClusterState, ConfigError, Flags, LogLevel,
    MemberConfig,
};

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    flags: Flags,
}

fn parse(args: &[&str]) -> Flags {
    Cli::try_parse_from(std::iter::once("sett").chain(args.iter().copied()))
        .unwrap()
        .flags
}

fn three(dir: &std::path::Path, name: &str) -> Vec<String> {
    vec![
        "--name".into(),
        name.into(),
        "--data-dir".into(),
        dir.to_str().unwrap().into(),
        "--initial-advertise-peer-urls".into(),
        format!("http://10.0.0.{}:2380", &name[1..]),
        "--initial-cluster".into(),
        "m1=http://10.0.0.1:2380,m2=http://10.0.0.2:2380,m3=http://10.0.0.3:2380".into(),
        "--initial-cluster-token".into(),
        "tok".into(),
    ]
}

fn resolve(args: &[String]) -> Result<MemberConfig, ConfigError> {
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    parse(&refs).resolve()
}

#[test]
fn etcd_flags_parse() {
    let f = parse(&[
        "--name",
        "infra0",
        "--data-dir",
        "/d",
        "--listen-client-urls",
        "http://10.0.1.10:2379,http://127.0.0.1:2379",
        "--initial-cluster-state",
        "existing",
        "--heartbeat-interval",
        "200",
        "--election-timeout",
        "2000",
        "--snapshot-count",
        "5000",
        "--max-request-bytes",
        "1024",
        "--quota-backend-bytes",
        "8589934592",
        "--auto-compaction-mode",
        "revision",
        "--auto-compaction-retention",
        "1000",
        "--log-level",
        "debug",
    ]);
    assert_eq!(f.name.as_deref(), Some("infra0"));
    assert_eq!(f.initial_cluster_state, Some(ClusterState::Existing));
    assert_eq!(f.heartbeat_interval, Some(200));
    assert_eq!(f.election_timeout, Some(2000));
    assert_eq!(f.snapshot_count, Some(5000));
    assert_eq!(f.quota_backend_bytes, Some(8 << 30));
    assert_eq!(f.auto_compaction_mode, Some(AutoCompactionMode::Revision));
    assert_eq!(f.log_level, Some(LogLevel::Debug));
    let bad = Cli::try_parse_from(["sett", "--initial-cluster-state", "old"]);
    assert!(bad.is_err());
}

#[test]
fn defaults_follow_etcd() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = resolve(&["--data-dir".into(), dir.path().to_str().unwrap().into()]).unwrap();
    assert_eq!(cfg.name, "default");
    assert_eq!(cfg.listen_client_urls, vec!["http://localhost:2379"]);
    assert_eq!(cfg.listen_peer_urls, vec!["http://localhost:2380"]);
    assert_eq!(cfg.heartbeat_interval_ms, 100);
    assert_eq!(cfg.election_timeout_ms, 1000);
    assert_eq!(cfg.max_request_bytes, 1_572_864);
    assert_eq!(cfg.quota_backend_bytes, 2 << 30);
    assert_eq!(cfg.initial_cluster_state, ClusterState::New);
    assert_eq!(cfg.initial_members.len(), 1);
    assert!(cfg.initial_members.contains_key(&cfg.node_id));
}

#[test]
fn members_agree_on_ids() {
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let cfgs: Vec<MemberConfig> = (1..=3)
        .map(|i| resolve(&three(dirs[i - 1].path(), &format!("m{i}"))).unwrap())
        .collect();
    for c in &cfgs {
        assert_eq!(c.cluster_id, cfgs[0].cluster_id);
        assert_eq!(
            c.initial_members.keys().collect::<Vec<_>>(),
            cfgs[0].initial_members.keys().collect::<Vec<_>>()
        );
        assert_eq!(c.node_id, node_id(&c.name, "tok"));
    }
    let ids: std::collections::BTreeSet<_> = cfgs.iter().map(|c| c.node_id).collect();
    assert_eq!(ids.len(), 3);
    // Another token, another cluster and other ids.
    assert_ne!(node_id("m1", "tok"), node_id("m1", "other"));
}

fn err_text(args: Vec<String>) -> String {
    resolve(&args).unwrap_err().to_string()
}

#[test]
fn validation_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let base = three(dir.path(), "m1");

    let mut a = base.clone();
    a[1] = "m9".into();
    a[5] = "http://10.0.0.9:2380".into();
    assert!(err_text(a).contains(r#"couldn't find local name "m9" in the initial cluster"#));

    let mut a = base.clone();
    a[5] = "http://10.0.0.7:2380".into();
    assert!(err_text(a).contains("missing from --initial-advertise-peer-urls"));

    let mut a = base.clone();
    a[7] = "m1=http://10.0.0.1:2380,m2=ftp://x:1".into();
    assert!(err_text(a).contains("--initial-cluster"));

    let mut a = base.clone();
    a[7] = "m1=http://10.0.0.1:2380,m2".into();
    assert!(err_text(a).contains("is not name=url"));

    let mut a = base.clone();
    a[5] = "http://10.0.0.1".into();
    assert!(err_text(a).contains("must name a port"));

    let mut a = base.clone();
    a.extend(["--listen-peer-urls".into(), "https://1.2.3.4:2380".into()]);
    assert_eq!(
        err_text(a),
        "--listen-peer-urls: TLS key/cert (--peer-cert-file, --peer-key-file) must be \
         provided for peer url https://1.2.3.4:2380 with HTTPS scheme"
    );

    let mut a = base.clone();
    a.extend(["--listen-client-urls".into(), "unixs://x:1".into()]);
    assert!(err_text(a).contains("URL scheme must be http or https"));

    let mut a = base.clone();
    a.extend(["--listen-client-urls".into(), "not a url".into()]);
    assert!(err_text(a).contains("--listen-client-urls"));

    let mut a = base.clone();
    a.extend(["--heartbeat-interval".into(), "300".into()]);
    assert_eq!(
        err_text(a),
        "--election-timeout[1000ms] should be at least as 5 times as --heartbeat-interval[300ms]"
    );

    let mut a = base.clone();
    a.extend(["--election-timeout".into(), "60000".into()]);
    assert!(err_text(a).contains("less than 50 seconds"));

    let mut a = base.clone();
    a.extend(["--auto-compaction-retention".into(), "soon".into()]);
    assert!(err_text(a).contains("--auto-compaction-retention"));

    let mut a = base.clone();
    a.extend(["--snapshot-count".into(), "0".into()]);
    assert!(err_text(a).contains("--snapshot-count"));

    let dup = parse_initial_cluster("a=http://h:1,b=http://h:1").unwrap_err();
    assert!(dup.to_string().contains("more than once"));
    let multi = parse_initial_cluster("a=http://h:1,a=http://h:2").unwrap();
    assert_eq!(multi["a"], vec!["http://h:1", "http://h:2"]);
}

#[test]
fn restart_reads_member_json() {
    let dir = tempfile::tempdir().unwrap();
    let first = resolve(&three(dir.path(), "m2")).unwrap();
    first.save().unwrap();

    // Only the data dir: everything comes back.
    let again = resolve(&["--data-dir".into(), dir.path().to_str().unwrap().into()]).unwrap();
    assert_eq!(again, first);

    // Runtime flags override the stored values; identity stays.
    let tuned = resolve(&[
        "--data-dir".into(),
        dir.path().to_str().unwrap().into(),
        "--election-timeout".into(),
        "3000".into(),
        "--initial-cluster-token".into(),
        "ignored".into(),
    ])
    .unwrap();
    assert_eq!(tuned.election_timeout_ms, 3000);
    assert_eq!(tuned.node_id, first.node_id);
    assert_eq!(tuned.cluster_id, first.cluster_id);

    // Another name on this data dir is refused.
    let err = resolve(&[
        "--data-dir".into(),
        dir.path().to_str().unwrap().into(),
        "--name".into(),
        "m3".into(),
    ])
    .unwrap_err();
    assert!(err.to_string().contains("belongs to member \"m2\""));
}
