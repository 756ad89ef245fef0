//! `lease grant | revoke | timetolive | list | keep-alive`.

use crate::conn::{status_error, Conn};
use crate::exit::{coded, BAD_ARGS};
use crate::kv::parse_lease_id;
use crate::output::{self, print_json, Format, Json, Obj};
use anyhow::{anyhow, Result};
use clap::{Args, Subcommand};
use sett_proto::etcdserverpb::{
    LeaseGrantRequest, LeaseKeepAliveRequest, LeaseKeepAliveResponse, LeaseLeasesRequest,
    LeaseRevokeRequest, LeaseTimeToLiveRequest,
};
use std::time::Duration;

/// The lease commands.
#[derive(Debug, Subcommand)]
pub enum LeaseCommand {
    /// Creates leases.
    Grant {
        /// Time to live in seconds.
        ttl: String,
    },
    /// Revokes leases.
    Revoke {
        /// Lease ID in hexadecimal.
        id: String,
    },
    /// Get lease information.
    Timetolive(TtlArgs),
    /// List all active leases.
    List,
    /// Keeps leases alive (renew).
    KeepAlive(KeepAliveArgs),
}

/// `lease timetolive`.
#[derive(Debug, Args)]
pub struct TtlArgs {
    /// Lease ID in hexadecimal.
    id: String,
    /// Get keys attached to this lease.
    #[arg(long)]
    keys: bool,
}

/// `lease keep-alive`.
#[derive(Debug, Args)]
pub struct KeepAliveArgs {
    /// Lease ID in hexadecimal.
    id: String,
    /// Resets the keep-alive time to its original value and exits
    /// immediately.
    #[arg(long)]
    once: bool,
}

fn lease_arg(s: &str) -> Result<i64> {
    parse_lease_id(s, "bad lease ID arg")
}

/// Runs a lease command.
pub async fn run(conn: &Conn, format: Format, cmd: LeaseCommand) -> Result<()> {
    let format = format.no_table()?;
    let json = format == Format::Json;
    match cmd {
        LeaseCommand::Grant { ttl } => {
            let ttl_secs: i64 = ttl.parse().map_err(|_| {
                coded(
                    BAD_ARGS,
                    format!("bad TTL (strconv.ParseInt: parsing {ttl:?}: invalid syntax)"),
                )
            })?;
            let resp = conn
                .call(conn.lease().lease_grant(LeaseGrantRequest {
                    ttl: ttl_secs,
                    id: 0,
                }))
                .await
                .map_err(|e| anyhow!("failed to grant lease ({e})"))?;
            if json {
                print_json(
                    &output::header_obj(resp.header.as_ref())
                        .always("ID", Json::num(resp.id))
                        .always("TTL", Json::num(resp.ttl))
                        .always("Error", Json::str(&resp.error))
                        .done(),
                );
            } else {
                println!("lease {:016x} granted with TTL({}s)", resp.id, resp.ttl);
            }
        }
        LeaseCommand::Revoke { id } => {
            let id = lease_arg(&id)?;
            let resp = conn
                .call(conn.lease().lease_revoke(LeaseRevokeRequest { id }))
                .await
                .map_err(|e| anyhow!("failed to revoke lease ({e})"))?;
            if json {
                print_json(
                    &Obj::new()
                        .opt("header", output::header(resp.header.as_ref()))
                        .done(),
                );
            } else {
                println!("lease {id:016x} revoked");
            }
        }
        LeaseCommand::Timetolive(a) => {
            let id = lease_arg(&a.id)?;
            let resp = conn
                .call(
                    conn.lease()
                        .lease_time_to_live(LeaseTimeToLiveRequest { id, keys: a.keys }),
                )
                .await?;
            if json {
                let keys = if resp.keys.is_empty() {
                    Json::null()
                } else {
                    Json::array(resp.keys.iter().map(|k| Json::str(&output::b64(k))))
                };
                print_json(
                    &output::header_obj(resp.header.as_ref())
                        .always("id", Json::num(resp.id))
                        .always("ttl", Json::num(resp.ttl))
                        .always("granted-ttl", Json::num(resp.granted_ttl))
                        .always("keys", keys)
                        .done(),
                );
            } else if resp.granted_ttl == 0 && resp.ttl == -1 {
                println!("lease {:016x} already expired", resp.id);
            } else {
                let mut text = format!(
                    "lease {:016x} granted with TTL({}s), remaining({}s)",
                    resp.id, resp.granted_ttl, resp.ttl
                );
                if a.keys {
                    let keys: Vec<String> = resp
                        .keys
                        .iter()
                        .map(|k| String::from_utf8_lossy(k).into_owned())
                        .collect();
                    text.push_str(&format!(", attached keys([{}])", keys.join(" ")));
                }
                println!("{text}");
            }
        }
        LeaseCommand::List => {
            let resp = conn
                .call(conn.lease().lease_leases(LeaseLeasesRequest {}))
                .await?;
            if json {
                let leases = resp
                    .leases
                    .iter()
                    .map(|l| Obj::new().always("id", Json::num(l.id)).done());
                print_json(
                    &output::header_obj(resp.header.as_ref())
                        .always("leases", Json::array(leases))
                        .done(),
                );
            } else {
                println!("found {} leases", resp.leases.len());
                for l in &resp.leases {
                    println!("{:016x}", l.id);
                }
            }
        }
        LeaseCommand::KeepAlive(a) => keep_alive(conn, json, a).await?,
    }
    Ok(())
}

fn print_keep_alive(json: bool, resp: &LeaseKeepAliveResponse) {
    if json {
        print_json(
            &output::header_obj(resp.header.as_ref())
                .always("ID", Json::num(resp.id))
                .always("TTL", Json::num(resp.ttl))
                .done(),
        );
    } else {
        println!("lease {:016x} keepalived with TTL({})", resp.id, resp.ttl);
    }
}

/// `lease keep-alive`: one renewal with `--once`, else renewals at a third
/// of the TTL until the lease is gone or Ctrl-C.
async fn keep_alive(conn: &Conn, json: bool, a: KeepAliveArgs) -> Result<()> {
    let id = lease_arg(&a.id)?;
    let (tx, rx) = tokio::sync::mpsc::channel::<LeaseKeepAliveRequest>(1);
    tx.send(LeaseKeepAliveRequest { id }).await?;
    let mut client = conn.lease();
    let opened = tokio::time::timeout(
        conn.command_timeout(),
        client.lease_keep_alive(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
    .await
    .map_err(|_| anyhow!("context deadline exceeded (keep-alive stream not opened in time)"))?;
    let mut stream = opened.map_err(|s| status_error(&s))?.into_inner();
    loop {
        let next = tokio::select! {
            next = tokio::time::timeout(conn.command_timeout(), stream.message()) => next,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let resp = match next {
            Ok(Ok(Some(resp))) => resp,
            Ok(Ok(None)) => {
                return Err(anyhow!("keep-alive stream closed by the server"));
            }
            Ok(Err(s)) => return Err(status_error(&s)),
            Err(_) => return Err(anyhow!("context deadline exceeded")),
        };
        if resp.ttl <= 0 {
            if a.once {
                return Err(anyhow!("etcdserver: requested lease not found"));
            }
            if !json {
                println!("lease {id:016x} expired or revoked.");
            }
            return Ok(());
        }
        print_keep_alive(json, &resp);
        if a.once {
            return Ok(());
        }
        let pause = Duration::from_secs_f64((resp.ttl as f64 / 3.0).max(0.5));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = tokio::signal::ctrl_c() => return Ok(()),
        }
        tx.send(LeaseKeepAliveRequest { id }).await?;
    }
}
