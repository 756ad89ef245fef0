//! `endpoint status | health`: one call per endpoint, each over its own
//! connection; `--cluster` takes the endpoints from the member list.

use crate::conn::Conn;
use crate::member::cluster_endpoints;
use crate::output::{self, go_duration, human_bytes, print_json, table, Format, Json, Obj};
use crate::Global;
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use sett_proto::etcdserverpb::{
    HashKvRequest, HashKvResponse, RangeRequest, StatusRequest, StatusResponse,
};
use std::time::Instant;

/// The endpoint commands.
#[derive(Debug, Subcommand)]
pub enum EndpointCommand {
    /// Checks the healthiness of endpoints specified in `--endpoints`
    /// flag.
    Health(EndpointArgs),
    /// Prints out the status of endpoints specified in `--endpoints` flag.
    Status(EndpointArgs),
    /// Prints the KV history hash for each endpoint in `--endpoints`.
    Hashkv(HashKvArgs),
}

/// Flags of `endpoint hashkv`.
#[derive(Debug, Args)]
pub struct HashKvArgs {
    /// Use all endpoints from the cluster member list.
    #[arg(long)]
    cluster: bool,
    /// Maximum revision to hash (default: all revisions).
    #[arg(long, default_value_t = 0)]
    rev: i64,
}

/// Flags of the endpoint commands.
#[derive(Debug, Args)]
pub struct EndpointArgs {
    /// Use all endpoints from the cluster member list.
    #[arg(long)]
    cluster: bool,
}

/// The endpoints a command goes to.
pub async fn endpoints(global: &Global, cluster: bool) -> Result<Vec<String>> {
    if !cluster {
        return Ok(global.endpoints.clone());
    }
    let conn = Conn::open(global).await?;
    cluster_endpoints(&conn).await
}

/// Runs an endpoint command.
pub async fn run(global: &Global, format: Format, cmd: EndpointCommand) -> Result<()> {
    match cmd {
        EndpointCommand::Status(a) => {
            status(global, format, endpoints(global, a.cluster).await?).await
        }
        EndpointCommand::Hashkv(a) => {
            hashkv(global, format, endpoints(global, a.cluster).await?, a.rev).await
        }
        EndpointCommand::Health(a) => {
            health(global, format, endpoints(global, a.cluster).await?).await
        }
    }
}

async fn status_of(global: &Global, ep: &str) -> Result<StatusResponse> {
    let conn = Conn::open_one(ep, global).await?;
    conn.call(conn.maintenance().status(StatusRequest {})).await
}

async fn status(global: &Global, format: Format, eps: Vec<String>) -> Result<()> {
    let mut ok: Vec<(String, StatusResponse)> = Vec::new();
    let mut failed = false;
    for ep in eps {
        match status_of(global, &ep).await {
            Ok(s) => ok.push((ep, s)),
            Err(e) => {
                eprintln!("Failed to get the status of endpoint {ep} ({e:#})");
                failed = true;
            }
        }
    }
    let rows: Vec<Vec<String>> = ok
        .iter()
        .map(|(ep, s)| {
            let id = s.header.as_ref().map_or(0, |h| h.member_id);
            vec![
                ep.clone(),
                format!("{id:x}"),
                s.version.clone(),
                human_bytes(u64::try_from(s.db_size).unwrap_or(0)),
                (s.leader == id).to_string(),
                s.is_learner.to_string(),
                s.raft_term.to_string(),
                s.raft_index.to_string(),
                s.raft_applied_index.to_string(),
                s.errors.join(", "),
            ]
        })
        .collect();
    match format {
        Format::Simple => {
            for row in &rows {
                println!("{}", row.join(", "));
            }
        }
        Format::Table => print!(
            "{}",
            table(
                &[
                    "ENDPOINT",
                    "ID",
                    "VERSION",
                    "DB SIZE",
                    "IS LEADER",
                    "IS LEARNER",
                    "RAFT TERM",
                    "RAFT INDEX",
                    "RAFT APPLIED INDEX",
                    "ERRORS",
                ],
                &rows
            )
        ),
        Format::Json => {
            let items = ok.iter().map(|(ep, s)| {
                Obj::new()
                    .always("Endpoint", Json::str(ep))
                    .always("Status", status_json(s))
                    .done()
            });
            print_json(&Json::array(items));
        }
    }
    if failed {
        bail!("failed to get the status of some endpoints");
    }
    Ok(())
}

/// A status response in etcdctl's JSON.
fn status_json(s: &StatusResponse) -> Json {
    Obj::new()
        .opt("header", output::header(s.header.as_ref()))
        .str("version", &s.version)
        .int("dbSize", s.db_size)
        .uint("leader", s.leader)
        .uint("raftIndex", s.raft_index)
        .uint("raftTerm", s.raft_term)
        .uint("raftAppliedIndex", s.raft_applied_index)
        .opt(
            "errors",
            Some(Json::array(s.errors.iter().map(|e| Json::str(e)))),
        )
        .int("dbSizeInUse", s.db_size_in_use)
        .flag("isLearner", s.is_learner)
        .done()
}

/// One endpoint's health.
struct Health {
    ep: String,
    healthy: bool,
    took: String,
    error: String,
}

async fn check(global: &Global, ep: &str) -> Health {
    let start = Instant::now();
    let result = async {
        let conn = Conn::open_one(ep, global).await?;
        // A linearizable read goes through the leader's ReadIndex: it only
        // succeeds when the member is part of a working quorum.
        conn.call(conn.kv().range(RangeRequest {
            key: b"health".to_vec().into(),
            ..Default::default()
        }))
        .await?;
        anyhow::Ok(())
    }
    .await;
    let took = go_duration(start.elapsed());
    match result {
        Ok(()) => Health {
            ep: ep.to_owned(),
            healthy: true,
            took,
            error: String::new(),
        },
        Err(e) => Health {
            ep: ep.to_owned(),
            healthy: false,
            took,
            error: format!("{e:#}"),
        },
    }
}

async fn health(global: &Global, format: Format, eps: Vec<String>) -> Result<()> {
    // Every endpoint is checked at once, so unreachable ones cost one
    // timeout in all, not one each.
    let handles: Vec<_> = eps
        .into_iter()
        .map(|ep| {
            let global = global.clone();
            tokio::spawn(async move { check(&global, &ep).await })
        })
        .collect();
    let mut results: Vec<Health> = Vec::with_capacity(handles.len());
    for h in handles {
        results.push(h.await?);
    }
    match format {
        Format::Simple => {
            for h in &results {
                if h.healthy {
                    eprintln!(
                        "{} is healthy: successfully committed proposal: took = {}",
                        h.ep, h.took
                    );
                } else {
                    eprintln!(
                        "{} is unhealthy: failed to commit proposal: {}",
                        h.ep, h.error
                    );
                }
            }
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = results
                .iter()
                .map(|h| {
                    vec![
                        h.ep.clone(),
                        h.healthy.to_string(),
                        h.took.clone(),
                        h.error.clone(),
                    ]
                })
                .collect();
            print!("{}", table(&["ENDPOINT", "HEALTH", "TOOK", "ERROR"], &rows));
        }
        Format::Json => {
            let items = results.iter().map(|h| {
                Obj::new()
                    .always("endpoint", Json::str(&h.ep))
                    .always("health", Json::bool(h.healthy))
                    .always("took", Json::str(&h.took))
                    .str("error", &h.error)
                    .done()
            });
            print_json(&Json::array(items));
        }
    }
    if results.iter().any(|h| !h.healthy) {
        bail!("unhealthy cluster");
    }
    Ok(())
}

async fn hashkv(global: &Global, format: Format, eps: Vec<String>, revision: i64) -> Result<()> {
    let mut ok: Vec<(String, HashKvResponse)> = Vec::new();
    let mut failed = false;
    for ep in eps {
        let result = async {
            let conn = Conn::open_one(&ep, global).await?;
            conn.call(conn.maintenance().hash_kv(HashKvRequest { revision }))
                .await
        }
        .await;
        match result {
            Ok(h) => ok.push((ep, h)),
            Err(e) => {
                eprintln!("Failed to get the hash of endpoint {ep} ({e:#})");
                failed = true;
            }
        }
    }
    match format {
        Format::Simple => {
            for (ep, h) in &ok {
                println!("{ep}, {}", h.hash);
            }
        }
        Format::Table => {
            let rows: Vec<Vec<String>> = ok
                .iter()
                .map(|(ep, h)| vec![ep.clone(), h.hash.to_string()])
                .collect();
            print!("{}", table(&["ENDPOINT", "HASH"], &rows));
        }
        Format::Json => {
            let items = ok.iter().map(|(ep, h)| {
                Obj::new()
                    .always("Endpoint", Json::str(ep))
                    .always(
                        "HashKV",
                        Obj::new()
                            .opt("header", output::header(h.header.as_ref()))
                            .uint("hash", u64::from(h.hash))
                            .int("compact_revision", h.compact_revision)
                            .done(),
                    )
                    .done()
            });
            print_json(&Json::array(items));
        }
    }
    if failed {
        bail!("failed to get the hash of some endpoints");
    }
    Ok(())
}
