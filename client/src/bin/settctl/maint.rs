//! `defrag` and `alarm list | disarm`.

use crate::conn::Conn;
use crate::endpoint::endpoints;
use crate::output::{print_json, Format, Json, Obj};
use crate::{output, Global};
use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use sett_proto::etcdserverpb::{
    alarm_request::AlarmAction, AlarmMember, AlarmRequest, AlarmResponse, AlarmType,
    DefragmentRequest,
};

/// `defrag`.
#[derive(Debug, Args)]
pub struct DefragArgs {
    /// Use all endpoints from the cluster member list.
    #[arg(long)]
    cluster: bool,
}

/// The alarm commands.
#[derive(Debug, Subcommand)]
pub enum AlarmCommand {
    /// Lists all alarms.
    List,
    /// Disarms all alarms.
    Disarm,
}

/// `defrag`: one member after the other.
pub async fn defrag(global: &Global, a: DefragArgs) -> Result<()> {
    let mut failed = false;
    for ep in endpoints(global, a.cluster).await? {
        let result = async {
            let conn = Conn::open_one(&ep, global).await?;
            conn.call(conn.maintenance().defragment(DefragmentRequest {}))
                .await
        }
        .await;
        match result {
            Ok(_) => println!("Finished defragmenting etcd member[{ep}]"),
            Err(e) => {
                eprintln!("Failed to defragment etcd member[{ep}] ({e:#})");
                failed = true;
            }
        }
    }
    if failed {
        bail!("failed to defragment some members");
    }
    Ok(())
}

/// An alarm as Go's protobuf text form prints it (`memberID:… alarm:NOSPACE `).
fn alarm_text(a: &AlarmMember) -> String {
    let mut s = String::new();
    if a.member_id != 0 {
        s.push_str(&format!("memberID:{} ", a.member_id));
    }
    if a.alarm != 0 {
        let name = AlarmType::try_from(a.alarm)
            .map(|t| t.as_str_name().to_owned())
            .unwrap_or_else(|_| a.alarm.to_string());
        s.push_str(&format!("alarm:{name} "));
    }
    s
}

/// Prints the alarms of a response.
fn print_alarms(format: Format, header: bool, resp: &AlarmResponse) {
    if format == Format::Json {
        let alarms = resp.alarms.iter().map(|a| {
            Obj::new()
                .uint("memberID", a.member_id)
                .int("alarm", i64::from(a.alarm))
                .done()
        });
        let mut obj = Obj::new();
        if header {
            obj = obj.opt("header", output::header(resp.header.as_ref()));
        }
        print_json(&obj.opt("alarms", Some(Json::array(alarms))).done());
        return;
    }
    for a in &resp.alarms {
        println!("{}", alarm_text(a));
    }
}

/// Runs an alarm command.
pub async fn alarm(conn: &Conn, format: Format, cmd: AlarmCommand) -> Result<()> {
    let format = format.no_table()?;
    let list = conn
        .call(conn.maintenance().alarm(AlarmRequest {
            action: AlarmAction::Get as i32,
            member_id: 0,
            alarm: AlarmType::None as i32,
        }))
        .await?;
    match cmd {
        AlarmCommand::List => print_alarms(format, true, &list),
        AlarmCommand::Disarm => {
            // Like etcd's client: disarm each listed alarm and report what
            // the server disarmed.
            let mut done = AlarmResponse::default();
            for a in &list.alarms {
                let resp = conn
                    .call(conn.maintenance().alarm(AlarmRequest {
                        action: AlarmAction::Deactivate as i32,
                        member_id: a.member_id,
                        alarm: a.alarm,
                    }))
                    .await?;
                done.alarms.extend(resp.alarms);
            }
            print_alarms(format, false, &done);
        }
    }
    Ok(())
}
