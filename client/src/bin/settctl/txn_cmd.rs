//! `txn`: etcdctl's transaction syntax, read from standard input.
//!
//! ```text
//! mod("k1") > "0"          compares, one a line: TARGET("KEY") OP "VALUE"
//! value("k2") = "v2"       (TARGET: value|val, version|ver, mod|m,
//!                           create|c, lease; OP: = != < >)
//!                          blank line
//! put k3 v3                success ops: put/get/del with their flags
//! get k --prefix
//!                          blank line
//! put x y                  failure ops
//!                          blank line (or end of input)
//! ```
//!
//! `-i` prints a prompt before each section.

use crate::conn::Conn;
use crate::exit::{coded, INVALID_INPUT};
use crate::kv;
use crate::output::{self, print_json, Format, Json, Obj};
use anyhow::Result;
use clap::{Args, Parser};
use sett_proto::etcdserverpb::{
    compare::{CompareResult, CompareTarget, TargetUnion},
    request_op, response_op, Compare, PutRequest, RequestOp, TxnRequest, TxnResponse,
};
use std::io::BufRead;

/// `txn [-i]`.
#[derive(Debug, Args)]
pub struct TxnArgs {
    /// Input transaction in interactive mode.
    #[arg(short, long)]
    interactive: bool,
}

/// One op line of a transaction, parsed with the flags of the command of
/// the same name.
#[derive(Debug, Parser)]
#[command(no_binary_name = true)]
enum OpLine {
    /// A put.
    Put(TxnPut),
    /// A range read.
    Get(kv::GetArgs),
    /// A delete.
    #[command(alias = "delete")]
    Del(kv::DelArgs),
}

/// A put inside a transaction (both key and value are required).
#[derive(Debug, Args)]
struct TxnPut {
    key: String,
    value: String,
    #[arg(long, default_value = "0")]
    lease: String,
    #[arg(long)]
    prev_kv: bool,
    #[arg(long)]
    ignore_value: bool,
    #[arg(long)]
    ignore_lease: bool,
}

/// `txn`.
pub async fn run(conn: &Conn, format: Format, a: TxnArgs) -> Result<()> {
    let format = format.no_table()?;
    let stdin = std::io::stdin();
    let mut input = stdin.lock();
    let req = read_txn(&mut input, a.interactive)?;
    let resp = conn.call(conn.kv().txn(req)).await?;
    match format {
        Format::Json => print_json(&txn_json(&resp)),
        _ => print_txn(&resp),
    }
    Ok(())
}

/// Reads a whole transaction in etcdctl's syntax.
pub fn read_txn(input: &mut impl BufRead, interactive: bool) -> Result<TxnRequest> {
    let prompt = |s: &str| {
        if interactive {
            println!("{s}");
        }
    };
    prompt("compares:");
    let compare = section(input)?
        .iter()
        .map(|l| parse_compare(l))
        .collect::<Result<Vec<_>>>()?;
    prompt("success requests (get, put, del):");
    let success = section(input)?
        .iter()
        .map(|l| parse_op(l))
        .collect::<Result<Vec<_>>>()?;
    prompt("failure requests (get, put, del):");
    let failure = section(input)?
        .iter()
        .map(|l| parse_op(l))
        .collect::<Result<Vec<_>>>()?;
    Ok(TxnRequest {
        compare,
        success,
        failure,
    })
}

/// The lines of one section: up to a blank line or the end of input.
fn section(input: &mut impl BufRead) -> Result<Vec<String>> {
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        if input.read_line(&mut line)? == 0 {
            return Ok(lines);
        }
        let line = line.trim();
        if line.is_empty() {
            return Ok(lines);
        }
        lines.push(line.to_owned());
    }
}

/// Reads a Go-style double-quoted (or back-quoted) string at the start of
/// `s`; returns it and the rest of `s`.
fn quoted(s: &str) -> Option<(String, &str)> {
    let mut chars = s.char_indices();
    let (_, q) = chars.next()?;
    if q == '`' {
        let end = s[1..].find('`')? + 1;
        return Some((s[1..end].to_owned(), &s[end + 1..]));
    }
    if q != '"' {
        return None;
    }
    let mut out = String::new();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &s[i + 1..])),
            '\\' => {
                let (_, e) = chars.next()?;
                match e {
                    'n' => out.push('\n'),
                    't' => out.push('\t'),
                    'r' => out.push('\r'),
                    '0' => out.push('\0'),
                    'a' => out.push('\x07'),
                    'b' => out.push('\x08'),
                    'f' => out.push('\x0c'),
                    'v' => out.push('\x0b'),
                    'x' | 'u' | 'U' => {
                        let n = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let mut code = 0u32;
                        for _ in 0..n {
                            let (_, h) = chars.next()?;
                            code = code * 16 + h.to_digit(16)?;
                        }
                        out.push(char::from_u32(code)?);
                    }
                    other => out.push(other),
                }
            }
            c => out.push(c),
        }
    }
    None
}

/// Parses `TARGET("KEY") OP "VALUE"`.
pub fn parse_compare(line: &str) -> Result<Compare> {
    let malformed = || coded(INVALID_INPUT, format!("malformed comparison: {line}"));
    let (target, rest) = line.split_once('(').ok_or_else(malformed)?;
    let (key, rest) = quoted(rest.trim_start()).ok_or_else(malformed)?;
    let rest = rest.strip_prefix(')').ok_or_else(malformed)?.trim_start();
    let (op, rest) = rest.split_once(char::is_whitespace).ok_or_else(malformed)?;
    let (val, rest) = quoted(rest.trim_start()).ok_or_else(malformed)?;
    if !rest.trim().is_empty() {
        return Err(malformed());
    }
    let result = match op {
        "=" | "==" => CompareResult::Equal,
        "!=" => CompareResult::NotEqual,
        "<" => CompareResult::Less,
        ">" => CompareResult::Greater,
        _ => {
            return Err(coded(
                INVALID_INPUT,
                format!("malformed comparison: {line} (unknown op {op})"),
            ))
        }
    };
    let int = |radix: u32| {
        i64::from_str_radix(&val, radix).map_err(|_| {
            coded(
                INVALID_INPUT,
                format!("invalid txn compare request: {line}"),
            )
        })
    };
    let (target, union) = match target.trim() {
        "ver" | "version" => (CompareTarget::Version, TargetUnion::Version(int(10)?)),
        "c" | "create" => (CompareTarget::Create, TargetUnion::CreateRevision(int(10)?)),
        "m" | "mod" => (CompareTarget::Mod, TargetUnion::ModRevision(int(10)?)),
        "val" | "value" => (
            CompareTarget::Value,
            TargetUnion::Value(val.clone().into_bytes().into()),
        ),
        "lease" => (CompareTarget::Lease, TargetUnion::Lease(int(16)?)),
        other => {
            return Err(coded(
                INVALID_INPUT,
                format!("malformed comparison: {line} (unknown target {other})"),
            ))
        }
    };
    Ok(Compare {
        result: result as i32,
        target: target as i32,
        key: key.into_bytes().into(),
        range_end: Default::default(),
        target_union: Some(union),
    })
}

/// Splits an op line into words: whitespace separated, `"…"` with Go
/// escapes, `'…'` taken literally.
fn words(line: &str) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = line.trim_start();
    while !rest.is_empty() {
        if rest.starts_with('"') {
            let (w, r) = quoted(rest)
                .ok_or_else(|| coded(INVALID_INPUT, format!("invalid txn request: {line}")))?;
            out.push(w);
            rest = r;
        } else if let Some(r) = rest.strip_prefix('\'') {
            let end = r
                .find('\'')
                .ok_or_else(|| coded(INVALID_INPUT, format!("invalid txn request: {line}")))?;
            out.push(r[..end].to_owned());
            rest = &r[end + 1..];
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            out.push(rest[..end].to_owned());
            rest = &rest[end..];
        }
        rest = rest.trim_start();
    }
    Ok(out)
}

/// Parses one op line (`put K V`, `get K [END] [flags]`, `del K [END]
/// [flags]`).
pub fn parse_op(line: &str) -> Result<RequestOp> {
    let invalid = || coded(INVALID_INPUT, format!("invalid txn request: {line}"));
    let w = words(line)?;
    if w.len() < 2 {
        return Err(invalid());
    }
    let op = OpLine::try_parse_from(&w).map_err(|_| invalid())?;
    let request = match op {
        OpLine::Put(p) => request_op::Request::RequestPut(PutRequest {
            key: p.key.into_bytes().into(),
            value: p.value.into_bytes().into(),
            lease: kv::parse_lease_id(&p.lease, "bad lease ID")?,
            prev_kv: p.prev_kv,
            ignore_value: p.ignore_value,
            ignore_lease: p.ignore_lease,
        }),
        OpLine::Get(g) => request_op::Request::RequestRange(kv::range_request(&g)?),
        OpLine::Del(d) => request_op::Request::RequestDeleteRange(kv::delete_request(&d)?),
    };
    Ok(RequestOp {
        request: Some(request),
    })
}

/// Prints a txn response as etcdctl's simple format does.
pub fn print_txn(resp: &TxnResponse) {
    println!("{}", if resp.succeeded { "SUCCESS" } else { "FAILURE" });
    for r in &resp.responses {
        println!();
        match &r.response {
            Some(response_op::Response::ResponsePut(p)) => kv::print_put(Format::Simple, p),
            Some(response_op::Response::ResponseRange(g)) => kv::print_range(g, false),
            Some(response_op::Response::ResponseDeleteRange(d)) => kv::print_delete(d),
            Some(response_op::Response::ResponseTxn(t)) => print_txn(t),
            None => println!("unexpected response {r:?}"),
        }
    }
}

/// A txn response in etcdctl's JSON.
pub fn txn_json(resp: &TxnResponse) -> Json {
    let ops = resp.responses.iter().map(|r| {
        let inner = match &r.response {
            Some(response_op::Response::ResponsePut(p)) => {
                Some(Obj::new().always("ResponsePut", kv::put_json(p)).done())
            }
            Some(response_op::Response::ResponseRange(g)) => {
                Some(Obj::new().always("ResponseRange", kv::range_json(g)).done())
            }
            Some(response_op::Response::ResponseDeleteRange(d)) => Some(
                Obj::new()
                    .always("ResponseDeleteRange", kv::delete_json(d))
                    .done(),
            ),
            Some(response_op::Response::ResponseTxn(t)) => {
                Some(Obj::new().always("ResponseTxn", txn_json(t)).done())
            }
            None => None,
        };
        Obj::new()
            .always("Response", inner.unwrap_or_else(Json::null))
            .done()
    });
    Obj::new()
        .opt("header", output::header(resp.header.as_ref()))
        .flag("succeeded", resp.succeeded)
        .opt("responses", Some(Json::array(ops)))
        .done()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_three_sections() {
        let text = "mod(\"k1\") > \"0\"\nvalue(\"k2\") = \"v 2\"\n\nput k3 v3\nget k --prefix\n\ndel \"x y\" --prev-kv\n\n";
        let req = read_txn(&mut text.as_bytes(), false).unwrap();
        assert_eq!(req.compare.len(), 2);
        assert_eq!(
            req.compare[1].target_union,
            Some(TargetUnion::Value(b"v 2".to_vec().into()))
        );
        assert_eq!(req.success.len(), 2);
        assert_eq!(req.failure.len(), 1);
        match &req.failure[0].request {
            Some(request_op::Request::RequestDeleteRange(d)) => {
                assert_eq!(&d.key[..], b"x y");
                assert!(d.prev_kv);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejects_bad_lines() {
        assert!(parse_compare("bad").is_err());
        assert!(parse_compare("foo(\"k\") = \"1\"").is_err());
        assert!(parse_compare("mod(\"k\") = \"x\"").is_err());
        assert!(parse_op("put onlykey").is_err());
        assert!(parse_op("frob a b").is_err());
    }
}
