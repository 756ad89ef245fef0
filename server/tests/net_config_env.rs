//! `SETT_*` environment variables stand in for the flags (alone in this
//! test binary: the environment is process-wide).

use clap::Parser;
use sett_server::config::{ClusterState, Flags};

#[derive(Debug, Parser)]
struct Cli {
    #[command(flatten)]
    flags: Flags,
}

#[test]
fn env_vars_set_flags_and_flags_win() {
    let dir = tempfile::tempdir().unwrap();
    let vars = [
        ("SETT_NAME", "e1"),
        ("SETT_DATA_DIR", dir.path().to_str().unwrap()),
        ("SETT_INITIAL_ADVERTISE_PEER_URLS", "http://127.0.0.1:12380"),
        (
            "SETT_INITIAL_CLUSTER",
            "e1=http://127.0.0.1:12380,e2=http://127.0.0.1:22380",
        ),
        ("SETT_INITIAL_CLUSTER_STATE", "existing"),
        ("SETT_HEARTBEAT_INTERVAL", "20"),
        ("SETT_ELECTION_TIMEOUT", "200"),
    ];
    for (k, v) in vars {
        std::env::set_var(k, v);
    }
    let f = Cli::try_parse_from(["sett"]).unwrap().flags;
    let cfg = f.resolve().unwrap();
    assert_eq!(cfg.name, "e1");
    assert_eq!(cfg.initial_members.len(), 2);
    assert_eq!(cfg.initial_cluster_state, ClusterState::Existing);
    assert_eq!(cfg.heartbeat_interval_ms, 20);
    assert_eq!(cfg.election_timeout_ms, 200);

    let f = Cli::try_parse_from(["sett", "--election-timeout", "900"])
        .unwrap()
        .flags;
    assert_eq!(f.resolve().unwrap().election_timeout_ms, 900);

    std::env::set_var("SETT_ELECTION_TIMEOUT", "50");
    let err = Cli::try_parse_from(["sett"])
        .unwrap()
        .flags
        .resolve()
        .unwrap_err();
    assert!(err.to_string().contains("at least as 5 times"));
    for (k, _) in vars {
        std::env::remove_var(k);
    }
}
