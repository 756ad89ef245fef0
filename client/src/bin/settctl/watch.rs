//! `watch KEY [RANGE_END]`: prints events until Ctrl-C or until the
//! server cancels the watch.

use crate::conn::{status_error, Conn};
use crate::exit::{coded, INTERRUPTED};
use crate::kv::range_of;
use crate::output::{self, print_json, print_kv, Format, Json, Obj};
use anyhow::{anyhow, bail, Result};
use clap::Args;
use sett_proto::etcdserverpb::{watch_request, WatchCreateRequest, WatchRequest, WatchResponse};
use sett_proto::mvccpb::{event::EventType, Event};

/// `watch`.
#[derive(Debug, Args)]
pub struct WatchArgs {
    /// The key, or the start of the range.
    key: String,
    /// The end of the range (exclusive).
    range_end: Option<String>,
    /// Watch on a prefix if prefix is set.
    #[arg(long)]
    prefix: bool,
    /// Revision to start watching.
    #[arg(long, default_value_t = 0)]
    rev: i64,
    /// Get the previous key-value pair before the event happens.
    #[arg(long)]
    prev_kv: bool,
}

/// `watch`.
pub async fn run(conn: &Conn, format: Format, a: WatchArgs) -> Result<()> {
    let format = format.no_table()?;
    let (key, range_end) = range_of(&a.key, a.range_end.as_deref(), a.prefix, false)?;
    let create = WatchRequest {
        request_union: Some(watch_request::RequestUnion::CreateRequest(
            WatchCreateRequest {
                key: key.into(),
                range_end: range_end.into(),
                start_revision: a.rev,
                prev_kv: a.prev_kv,
                ..Default::default()
            },
        )),
    };
    // The request stream stays open (and the watch alive) while `_keep`
    // lives.
    let (tx, rx) = tokio::sync::mpsc::channel::<WatchRequest>(1);
    tx.send(create).await?;
    let _keep = tx;
    let mut client = conn.watch();
    let opened = tokio::time::timeout(
        conn.command_timeout(),
        client.watch(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
    .await
    .map_err(|_| anyhow!("context deadline exceeded (watch not opened in time)"))?;
    let mut stream = opened.map_err(|s| status_error(&s))?.into_inner();
    loop {
        let next = tokio::select! {
            next = stream.message() => next,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let resp = match next {
            Ok(Some(resp)) => resp,
            Ok(None) => bail!("watch stream closed by the server"),
            Err(s) => return Err(status_error(&s)),
        };
        if resp.created && resp.events.is_empty() && !resp.canceled {
            continue;
        }
        if resp.canceled {
            println!("watch was canceled ({})", cancel_reason(&resp));
        }
        match format {
            Format::Json => print_json(&watch_json(&resp)),
            _ => print_events(&resp.events),
        }
        if resp.canceled {
            return Err(coded(INTERRUPTED, "watch is canceled by the server"));
        }
    }
}

/// Why the server canceled a watch, in etcd's words.
fn cancel_reason(resp: &WatchResponse) -> String {
    if resp.compact_revision != 0 {
        return "etcdserver: mvcc: required revision has been compacted".to_owned();
    }
    if resp.cancel_reason.is_empty() {
        "<nil>".to_owned()
    } else {
        resp.cancel_reason.clone()
    }
}

/// Prints events as etcdctl's simple format does: the type, the previous
/// record if any, the record.
fn print_events(events: &[Event]) {
    for e in events {
        let kind = if e.r#type == EventType::Delete as i32 {
            "DELETE"
        } else {
            "PUT"
        };
        println!("{kind}");
        if let Some(prev) = &e.prev_kv {
            print_kv(prev, false);
        }
        if let Some(kv) = &e.kv {
            print_kv(kv, false);
        }
    }
}

/// An event in etcdctl's JSON.
fn event_json(e: &Event) -> Json {
    Obj::new()
        .int("type", i64::from(e.r#type))
        .opt("kv", e.kv.as_ref().map(output::kv))
        .opt("prev_kv", e.prev_kv.as_ref().map(output::kv))
        .done()
}

/// A watch response as etcdctl prints Go's `clientv3.WatchResponse`.
fn watch_json(resp: &WatchResponse) -> Json {
    let header = output::header_obj(resp.header.as_ref()).done();
    let events = if resp.events.is_empty() {
        Json::null()
    } else {
        Json::array(resp.events.iter().map(event_json))
    };
    Obj::new()
        .always("Header", header)
        .always("Events", events)
        .always("CompactRevision", Json::num(resp.compact_revision))
        .always("Canceled", Json::bool(resp.canceled))
        .always("Created", Json::bool(resp.created))
        .done()
}
