//! `member list | add | remove | promote`.

use crate::conn::Conn;
use crate::exit::{coded, BAD_ARGS};
use crate::output::{self, print_json, table, Format, Json, Obj};
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use sett_proto::etcdserverpb::{
    Member, MemberAddRequest, MemberListRequest, MemberPromoteRequest, MemberRemoveRequest,
    ResponseHeader,
};

/// The member commands.
#[derive(Debug, Subcommand)]
pub enum MemberCommand {
    /// Lists all members in the cluster.
    List,
    /// Adds a member into the cluster.
    Add(AddArgs),
    /// Removes a member from the cluster.
    Remove {
        /// Member ID in hexadecimal.
        id: String,
    },
    /// Promotes a non-voting member in the cluster.
    Promote {
        /// Member ID in hexadecimal.
        id: String,
    },
}

/// `member add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The new member's name.
    name: String,
    /// Comma separated peer URLs for the new member.
    #[arg(long, default_value = "")]
    peer_urls: String,
    /// Indicates if the new member is raft learner.
    #[arg(long)]
    learner: bool,
}

/// Parses a member ID written in hexadecimal, with etcdctl's message.
fn member_id(s: &str) -> Result<u64> {
    u64::from_str_radix(s, 16).map_err(|_| {
        coded(
            BAD_ARGS,
            format!(
            "bad member ID arg (strconv.ParseUint: parsing {s:?}: invalid syntax), expecting ID in Hex"
            ),
        )
    })
}

/// A member in etcdctl's JSON.
fn member_json(m: &Member) -> Json {
    let strs = |v: &[String]| Some(Json::array(v.iter().map(|s| Json::str(s))));
    Obj::new()
        .uint("ID", m.id)
        .str("name", &m.name)
        .opt("peerURLs", strs(&m.peer_ur_ls))
        .opt("clientURLs", strs(&m.client_ur_ls))
        .flag("isLearner", m.is_learner)
        .done()
}

/// A response that carries a member list, in etcdctl's JSON.
fn members_json(header: Option<&ResponseHeader>, member: Option<&Member>, list: &[Member]) -> Json {
    Obj::new()
        .opt("header", output::header(header))
        .opt("member", member.map(member_json))
        .opt("members", Some(Json::array(list.iter().map(member_json))))
        .done()
}

/// The rows of `member list`.
fn member_rows(list: &[Member]) -> Vec<Vec<String>> {
    list.iter()
        .map(|m| {
            vec![
                format!("{:x}", m.id),
                if m.name.is_empty() {
                    "unstarted"
                } else {
                    "started"
                }
                .to_owned(),
                m.name.clone(),
                m.peer_ur_ls.join(","),
                m.client_ur_ls.join(","),
                m.is_learner.to_string(),
            ]
        })
        .collect()
}

/// Runs a member command.
pub async fn run(conn: &Conn, format: Format, cmd: MemberCommand) -> Result<()> {
    match cmd {
        MemberCommand::List => {
            let resp = conn
                .call(conn.cluster().member_list(MemberListRequest {
                    linearizable: false,
                }))
                .await?;
            match format {
                Format::Json => {
                    print_json(&members_json(resp.header.as_ref(), None, &resp.members))
                }
                Format::Table => print!(
                    "{}",
                    table(
                        &[
                            "ID",
                            "STATUS",
                            "NAME",
                            "PEER ADDRS",
                            "CLIENT ADDRS",
                            "IS LEARNER"
                        ],
                        &member_rows(&resp.members)
                    )
                ),
                Format::Simple => {
                    for row in member_rows(&resp.members) {
                        println!("{}", row.join(", "));
                    }
                }
            }
        }
        MemberCommand::Add(a) => {
            let format = format.no_table()?;
            if a.peer_urls.is_empty() {
                return Err(coded(BAD_ARGS, "member peer urls not provided"));
            }
            let urls: Vec<String> = a.peer_urls.split(',').map(str::to_owned).collect();
            let resp = conn
                .call(conn.cluster().member_add(MemberAddRequest {
                    peer_ur_ls: urls,
                    is_learner: a.learner,
                }))
                .await?;
            let member = resp.member.clone().unwrap_or_default();
            let cluster_id = resp.header.as_ref().map_or(0, |h| h.cluster_id);
            if format == Format::Json {
                print_json(&members_json(
                    resp.header.as_ref(),
                    resp.member.as_ref(),
                    &resp.members,
                ));
                return Ok(());
            }
            println!("Member {:16x} added to cluster {cluster_id:16x}", member.id);
            let mut conf = Vec::new();
            for m in &resp.members {
                let name = if m.id == member.id { &a.name } else { &m.name };
                for u in &m.peer_ur_ls {
                    conf.push(format!("{name}={u}"));
                }
            }
            println!();
            println!("ETCD_NAME={:?}", a.name);
            println!("ETCD_INITIAL_CLUSTER={:?}", conf.join(","));
            println!(
                "ETCD_INITIAL_ADVERTISE_PEER_URLS={:?}",
                member.peer_ur_ls.join(",")
            );
            println!("ETCD_INITIAL_CLUSTER_STATE=\"existing\"");
        }
        MemberCommand::Remove { id } => {
            let format = format.no_table()?;
            let id = member_id(&id)?;
            let resp = conn
                .call(conn.cluster().member_remove(MemberRemoveRequest { id }))
                .await?;
            if format == Format::Json {
                print_json(&members_json(resp.header.as_ref(), None, &resp.members));
            } else {
                let cluster_id = resp.header.as_ref().map_or(0, |h| h.cluster_id);
                println!("Member {id:16x} removed from cluster {cluster_id:16x}");
            }
        }
        MemberCommand::Promote { id } => {
            let format = format.no_table()?;
            let id = member_id(&id)?;
            let resp = conn
                .call(conn.cluster().member_promote(MemberPromoteRequest { id }))
                .await?;
            if format == Format::Json {
                print_json(&members_json(resp.header.as_ref(), None, &resp.members));
            } else {
                let cluster_id = resp.header.as_ref().map_or(0, |h| h.cluster_id);
                println!("Member {id:16x} promoted in cluster {cluster_id:16x}");
            }
        }
    }
    Ok(())
}

/// The client URLs of every member (for `--cluster`), in list order,
/// without repeats.
pub async fn cluster_endpoints(conn: &Conn) -> Result<Vec<String>> {
    let resp = conn
        .call(conn.cluster().member_list(MemberListRequest {
            linearizable: false,
        }))
        .await?;
    let mut out: Vec<String> = Vec::new();
    for m in &resp.members {
        for u in &m.client_ur_ls {
            if !out.contains(u) {
                out.push(u.clone());
            }
        }
    }
    if out.is_empty() {
        bail!("no client URLs in the member list");
    }
    Ok(out)
}
