//! `put`, `get`, `del` and `compaction`, with etcdctl 3.4's flags and
//! output.

use crate::conn::Conn;
use crate::exit::{coded, BAD_ARGS, BAD_FEATURE};
use crate::output::{self, print_json, print_kv, Format, Json, Obj};
use anyhow::Result;
use clap::Args;
use sett_proto::etcdserverpb::{
    range_request::{SortOrder, SortTarget},
    CompactionRequest, DeleteRangeRequest, DeleteRangeResponse, PutRequest, PutResponse,
    RangeRequest, RangeResponse,
};
use std::io::Read;

/// `put KEY [VALUE]`.
#[derive(Debug, Args)]
pub struct PutArgs {
    /// The key.
    key: String,
    /// The value; read from standard input when omitted.
    value: Option<String>,
    /// Lease ID (in hexadecimal) to attach to the key.
    #[arg(long, default_value = "0")]
    lease: String,
    /// Return the previous key-value pair before modification.
    #[arg(long)]
    prev_kv: bool,
    /// Update the key using its current value.
    #[arg(long)]
    ignore_value: bool,
    /// Update the key using its current lease.
    #[arg(long)]
    ignore_lease: bool,
}

/// `get KEY [RANGE_END]`.
#[derive(Debug, Args)]
pub struct GetArgs {
    /// The key, or the start of the range.
    key: String,
    /// The end of the range (exclusive).
    range_end: Option<String>,
    /// Linearizable (l) or Serializable (s).
    #[arg(long, default_value = "l")]
    consistency: String,
    /// Order of results; ASCEND or DESCEND (ASCEND by default).
    #[arg(long, default_value = "")]
    order: String,
    /// Sort target; CREATE, KEY, MODIFY, VALUE, or VERSION.
    #[arg(long, default_value = "")]
    sort_by: String,
    /// Maximum number of results.
    #[arg(long, default_value_t = 0)]
    limit: i64,
    /// Get keys with matching prefix.
    #[arg(long)]
    prefix: bool,
    /// Get keys that are greater than or equal to the given key using byte
    /// compare.
    #[arg(long)]
    from_key: bool,
    /// Specify the kv revision.
    #[arg(long, default_value_t = 0)]
    rev: i64,
    /// Get only the keys.
    #[arg(long)]
    keys_only: bool,
    /// Get only the count.
    #[arg(long)]
    count_only: bool,
    /// Only write values when using the "simple" output format.
    #[arg(long)]
    print_value_only: bool,
}

/// `del KEY [RANGE_END]`.
#[derive(Debug, Args)]
pub struct DelArgs {
    /// The key, or the start of the range.
    key: String,
    /// The end of the range (exclusive).
    range_end: Option<String>,
    /// Delete keys with matching prefix.
    #[arg(long)]
    prefix: bool,
    /// Return deleted key-value pairs.
    #[arg(long)]
    prev_kv: bool,
    /// Delete keys that are greater than or equal to the given key using
    /// byte compare.
    #[arg(long)]
    from_key: bool,
}

/// `compaction REVISION`.
#[derive(Debug, Args)]
pub struct CompactionArgs {
    /// The revision to compact up to.
    revision: String,
    /// Wait until the compaction is physically applied.
    #[arg(long)]
    physical: bool,
}

/// The end of the range holding every key that starts with `key`
/// (`\0`, meaning "to the end", when no such bound exists).
pub fn prefix_end(key: &[u8]) -> Vec<u8> {
    let mut end = key.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// Key and range end of a range given as etcdctl takes it.
pub fn range_of(
    key: &str,
    range_end: Option<&str>,
    prefix: bool,
    from_key: bool,
) -> Result<(Vec<u8>, Vec<u8>)> {
    if prefix && from_key {
        return Err(coded(
            BAD_ARGS,
            "`--prefix` and `--from-key` cannot be set at the same time, choose one",
        ));
    }
    let mut k = key.as_bytes().to_vec();
    if prefix {
        if range_end.is_some() {
            return Err(coded(
                BAD_ARGS,
                "too many arguments, only accept one argument when `--prefix` is set.",
            ));
        }
        if k.is_empty() {
            return Ok((vec![0], vec![0]));
        }
        let end = prefix_end(&k);
        return Ok((k, end));
    }
    if from_key {
        if range_end.is_some() {
            return Err(coded(
                BAD_ARGS,
                "too many arguments, only accept one argument when `--from-key` is set.",
            ));
        }
        if k.is_empty() {
            k = vec![0];
        }
        return Ok((k, vec![0]));
    }
    Ok((
        k,
        range_end.map(|e| e.as_bytes().to_vec()).unwrap_or_default(),
    ))
}

/// Parses a lease ID written in hexadecimal, with etcdctl's message.
pub fn parse_lease_id(s: &str, what: &str) -> Result<i64> {
    i64::from_str_radix(s, 16).map_err(|_| {
        coded(
            BAD_ARGS,
            format!(
                "{what} (strconv.ParseInt: parsing {s:?}: invalid syntax), expecting ID in Hex"
            ),
        )
    })
}

/// `put`.
pub async fn put(conn: &Conn, format: Format, a: PutArgs) -> Result<()> {
    let format = format.no_table()?;
    let lease = parse_lease_id(&a.lease, "bad lease ID")?;
    let value = match a.value {
        Some(v) => v.into_bytes(),
        None if a.ignore_value => Vec::new(),
        None => {
            let mut buf = Vec::new();
            std::io::stdin().read_to_end(&mut buf)?;
            buf
        }
    };
    let req = PutRequest {
        key: a.key.into_bytes().into(),
        value: value.into(),
        lease,
        prev_kv: a.prev_kv,
        ignore_value: a.ignore_value,
        ignore_lease: a.ignore_lease,
    };
    let resp = conn.call(conn.kv().put(req)).await?;
    print_put(format, &resp);
    Ok(())
}

/// Prints a put response.
pub fn print_put(format: Format, resp: &PutResponse) {
    match format {
        Format::Json => print_json(&put_json(resp)),
        _ => {
            println!("OK");
            if let Some(kv) = &resp.prev_kv {
                print_kv(kv, false);
            }
        }
    }
}

/// A put response in etcdctl's JSON.
pub fn put_json(resp: &PutResponse) -> Json {
    Obj::new()
        .opt("header", output::header(resp.header.as_ref()))
        .opt("prev_kv", resp.prev_kv.as_ref().map(output::kv))
        .done()
}

/// Builds the range request of `get` (also used by `txn`'s `get` ops).
pub fn range_request(a: &GetArgs) -> Result<RangeRequest> {
    let (key, range_end) = range_of(&a.key, a.range_end.as_deref(), a.prefix, a.from_key)?;
    let serializable = match a.consistency.as_str() {
        "l" => false,
        "s" => true,
        other => {
            return Err(coded(
                BAD_FEATURE,
                format!("unknown consistency flag {other:?}"),
            ))
        }
    };
    let mut order = match a.order.to_uppercase().as_str() {
        "ASCEND" => SortOrder::Ascend,
        "DESCEND" => SortOrder::Descend,
        "" => SortOrder::None,
        _ => return Err(coded(BAD_FEATURE, format!("bad sort order {}", a.order))),
    };
    let target = match a.sort_by.to_uppercase().as_str() {
        "CREATE" => SortTarget::Create,
        "KEY" => SortTarget::Key,
        "MODIFY" => SortTarget::Mod,
        "VALUE" => SortTarget::Value,
        "VERSION" => SortTarget::Version,
        "" => SortTarget::Key,
        _ => return Err(coded(BAD_FEATURE, format!("bad sort target {}", a.sort_by))),
    };
    if target == SortTarget::Key && order == SortOrder::Ascend {
        // Ascending by key is the natural order; asking for it would make
        // the server sort the whole range before applying the limit.
        order = SortOrder::None;
    }
    Ok(RangeRequest {
        key: key.into(),
        range_end: range_end.into(),
        limit: a.limit,
        revision: a.rev,
        sort_order: order as i32,
        sort_target: target as i32,
        serializable,
        keys_only: a.keys_only,
        count_only: a.count_only,
        ..Default::default()
    })
}

/// `get`.
pub async fn get(conn: &Conn, format: Format, a: GetArgs) -> Result<()> {
    let format = format.no_table()?;
    let req = range_request(&a)?;
    let resp = conn.call(conn.kv().range(req)).await?;
    match format {
        Format::Json => print_json(&range_json(&resp)),
        _ if a.count_only => println!("{}", resp.count),
        _ => print_range(&resp, a.print_value_only),
    }
    Ok(())
}

/// Prints a range response's records in the simple format.
pub fn print_range(resp: &RangeResponse, value_only: bool) {
    for kv in &resp.kvs {
        print_kv(kv, value_only);
    }
}

/// A range response in etcdctl's JSON.
pub fn range_json(resp: &RangeResponse) -> Json {
    Obj::new()
        .opt("header", output::header(resp.header.as_ref()))
        .opt("kvs", output::kvs(&resp.kvs))
        .flag("more", resp.more)
        .int("count", resp.count)
        .done()
}

/// Builds the delete request of `del` (also used by `txn`).
pub fn delete_request(a: &DelArgs) -> Result<DeleteRangeRequest> {
    let (key, range_end) = range_of(&a.key, a.range_end.as_deref(), a.prefix, a.from_key)?;
    Ok(DeleteRangeRequest {
        key: key.into(),
        range_end: range_end.into(),
        prev_kv: a.prev_kv,
    })
}

/// `del`.
pub async fn del(conn: &Conn, format: Format, a: DelArgs) -> Result<()> {
    let format = format.no_table()?;
    let req = delete_request(&a)?;
    let resp = conn.call(conn.kv().delete_range(req)).await?;
    match format {
        Format::Json => print_json(&delete_json(&resp)),
        _ => print_delete(&resp),
    }
    Ok(())
}

/// Prints a delete response in the simple format: the count, then the
/// previous records.
pub fn print_delete(resp: &DeleteRangeResponse) {
    println!("{}", resp.deleted);
    for kv in &resp.prev_kvs {
        print_kv(kv, false);
    }
}

/// A delete response in etcdctl's JSON.
pub fn delete_json(resp: &DeleteRangeResponse) -> Json {
    Obj::new()
        .opt("header", output::header(resp.header.as_ref()))
        .int("deleted", resp.deleted)
        .opt("prev_kvs", output::kvs(&resp.prev_kvs))
        .done()
}

/// `compaction`.
pub async fn compaction(conn: &Conn, a: CompactionArgs) -> Result<()> {
    let revision: i64 = a.revision.parse().map_err(|_| {
        anyhow::anyhow!(
            "bad revision argument (strconv.ParseInt: parsing {:?}: invalid syntax)",
            a.revision
        )
    })?;
    let req = CompactionRequest {
        revision,
        physical: a.physical,
    };
    conn.call(conn.kv().compact(req)).await?;
    println!("compacted revision {revision}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ends() {
        assert_eq!(prefix_end(b"ab"), b"ac");
        assert_eq!(prefix_end(b"a\xff"), b"b");
        assert_eq!(prefix_end(b"\xff\xff"), b"\0");
    }

    #[test]
    fn ranges() {
        assert_eq!(
            range_of("k", None, true, false).unwrap(),
            (b"k".to_vec(), b"l".to_vec())
        );
        assert_eq!(
            range_of("", None, false, true).unwrap(),
            (b"\0".to_vec(), b"\0".to_vec())
        );
        assert!(range_of("k", Some("z"), true, false).is_err());
        assert!(range_of("k", None, true, true).is_err());
    }

    #[test]
    fn lease_ids() {
        assert_eq!(
            parse_lease_id("2040a1ff44a85f21", "x").unwrap(),
            0x2040a1ff44a85f21
        );
        assert!(parse_lease_id("zz", "bad lease ID")
            .unwrap_err()
            .to_string()
            .contains("expecting ID in Hex"));
    }
}
