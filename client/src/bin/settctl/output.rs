//! How the cluster commands print: etcdctl 3.4's `simple`, `json` and
//! `table` formats.
//!
//! `json` is what etcdctl's `json.Marshal` of the Go response structs
//! gives: snake_case or camelCase names as etcd's `.proto` files spell
//! them, zero values left out, `bytes` fields in base64, 64-bit integers as
//! plain numbers. `table` is etcdctl's bordered table (header centred,
//! cells right-aligned) and exists only for `member list` and the
//! `endpoint` commands, as in etcdctl; other commands refuse it.

use crate::exit::{coded, BAD_FEATURE};
use anyhow::Result;
use base64::Engine as _;
use sett_proto::etcdserverpb::ResponseHeader;
use sett_proto::mvccpb::KeyValue;
use std::time::Duration;

/// The `-w` output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Plain lines (the default).
    Simple,
    /// One JSON document per response.
    Json,
    /// A bordered table.
    Table,
}

impl Format {
    /// Parses `-w`; etcdctl's other formats (`fields`, `protobuf`) are not
    /// offered.
    pub fn parse(s: &str) -> Result<Format> {
        match s {
            "simple" => Ok(Format::Simple),
            "json" => Ok(Format::Json),
            "table" => Ok(Format::Table),
            "fields" | "protobuf" => Err(coded(
                BAD_FEATURE,
                format!("{s} not supported as output format"),
            )),
            _ => Err(coded(BAD_FEATURE, "unsupported output format")),
        }
    }

    /// Refuses `table` for a command that has no table form (checked
    /// before the command runs).
    pub fn no_table(self) -> Result<Format> {
        if self == Format::Table {
            return Err(coded(BAD_FEATURE, "table not supported as output format"));
        }
        Ok(self)
    }
}

/// A JSON value already written out (fields keep the order they were
/// added in, as Go's encoder keeps struct order).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Json(pub String);

impl Json {
    /// A number.
    pub fn num(v: impl std::fmt::Display) -> Json {
        Json(v.to_string())
    }

    /// A string, escaped as Go's `encoding/json` escapes it.
    pub fn str(v: &str) -> Json {
        Json(go_string(v))
    }

    /// A boolean.
    pub fn bool(v: bool) -> Json {
        Json(v.to_string())
    }

    /// `null`.
    pub fn null() -> Json {
        Json("null".to_owned())
    }

    /// An array.
    pub fn array(items: impl IntoIterator<Item = Json>) -> Json {
        let parts: Vec<String> = items.into_iter().map(|j| j.0).collect();
        Json(format!("[{}]", parts.join(",")))
    }

    /// Whether this is an empty array.
    fn is_empty_array(&self) -> bool {
        self.0 == "[]"
    }
}

impl std::fmt::Display for Json {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A string in double quotes with Go's escapes (`<`, `>` and `&` as
/// `\u003c`-style escapes, control characters as `\u00XX`).
fn go_string(v: &str) -> String {
    let mut out = String::with_capacity(v.len() + 2);
    out.push('"');
    for c in v.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '<' | '>' | '&' | '\u{2028}' | '\u{2029}' => {
                out.push_str(&format!("\\u{:04x}", c as u32));
            }
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON object built field by field, leaving zero values out like Go's
/// `omitempty`.
#[derive(Debug, Default)]
pub struct Obj(Vec<(String, Json)>);

impl Obj {
    /// An empty object.
    pub fn new() -> Obj {
        Obj(Vec::new())
    }

    /// Adds a signed integer unless it is zero.
    pub fn int(self, name: &str, v: i64) -> Obj {
        if v == 0 {
            return self;
        }
        self.always(name, Json::num(v))
    }

    /// Adds an unsigned integer unless it is zero.
    pub fn uint(self, name: &str, v: u64) -> Obj {
        if v == 0 {
            return self;
        }
        self.always(name, Json::num(v))
    }

    /// Adds `true`; `false` is left out.
    pub fn flag(self, name: &str, v: bool) -> Obj {
        if !v {
            return self;
        }
        self.always(name, Json::bool(true))
    }

    /// Adds a string unless it is empty.
    pub fn str(self, name: &str, v: &str) -> Obj {
        if v.is_empty() {
            return self;
        }
        self.always(name, Json::str(v))
    }

    /// Adds bytes in base64 unless they are empty.
    pub fn bytes(self, name: &str, v: &[u8]) -> Obj {
        if v.is_empty() {
            return self;
        }
        self.always(name, Json::str(&b64(v)))
    }

    /// Adds a value unless it is `None` or an empty array.
    pub fn opt(self, name: &str, v: Option<Json>) -> Obj {
        match v {
            Some(v) if !v.is_empty_array() => self.always(name, v),
            _ => self,
        }
    }

    /// Adds a value as it is (no `omitempty`).
    pub fn always(mut self, name: &str, v: Json) -> Obj {
        self.0.push((name.to_owned(), v));
        self
    }

    /// The finished object.
    pub fn done(self) -> Json {
        let parts: Vec<String> = self
            .0
            .into_iter()
            .map(|(k, v)| format!("{}:{}", go_string(&k), v.0))
            .collect();
        Json(format!("{{{}}}", parts.join(",")))
    }
}

/// Base64 (standard alphabet, padded), as Go encodes `[]byte`.
pub fn b64(v: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(v)
}

/// The fields of a response header.
pub fn header_obj(h: Option<&ResponseHeader>) -> Obj {
    let h = h.cloned().unwrap_or_default();
    Obj::new()
        .uint("cluster_id", h.cluster_id)
        .uint("member_id", h.member_id)
        .int("revision", h.revision)
        .uint("raft_term", h.raft_term)
}

/// A response header as the `header` field of a response (`None` when the
/// response has none).
pub fn header(h: Option<&ResponseHeader>) -> Option<Json> {
    h.map(|h| header_obj(Some(h)).done())
}

/// A key-value record.
pub fn kv(kv: &KeyValue) -> Json {
    Obj::new()
        .bytes("key", &kv.key)
        .int("create_revision", kv.create_revision)
        .int("mod_revision", kv.mod_revision)
        .int("version", kv.version)
        .bytes("value", &kv.value)
        .int("lease", kv.lease)
        .done()
}

/// A list of key-value records.
pub fn kvs(list: &[KeyValue]) -> Option<Json> {
    Some(Json::array(list.iter().map(kv)))
}

/// Prints one JSON document on its own line.
pub fn print_json(v: &Json) {
    println!("{v}");
}

/// Prints a key-value record as etcdctl does: the key on one line (unless
/// `value_only`), the value on the next.
pub fn print_kv(kv: &KeyValue, value_only: bool) {
    if !value_only {
        println!("{}", String::from_utf8_lossy(&kv.key));
    }
    println!("{}", String::from_utf8_lossy(&kv.value));
}

/// Renders etcdctl's bordered table: the header centred, cells aligned
/// right, one space of padding each side.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line: String = {
        let mut s = String::from("+");
        for w in &widths {
            s.push_str(&"-".repeat(w + 2));
            s.push('+');
        }
        s.push('\n');
        s
    };
    let mut out = line.clone();
    out.push('|');
    for (h, w) in header.iter().zip(&widths) {
        let gap = w - h.chars().count();
        let left = gap / 2;
        out.push_str(&format!(
            " {}{}{} |",
            " ".repeat(left),
            h,
            " ".repeat(gap - left)
        ));
    }
    out.push('\n');
    out.push_str(&line);
    for row in rows {
        out.push('|');
        for (cell, w) in row.iter().zip(&widths) {
            out.push_str(&format!(" {cell:>w$} |"));
        }
        out.push('\n');
    }
    out.push_str(&line);
    out
}

/// A byte count in SI units, as Go's `humanize.Bytes` writes it
/// (`20 kB`, `1.2 MB`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 7] = ["B", "kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 10 {
        return format!("{n} B");
    }
    let mut e = 0usize;
    let mut scale = 1f64;
    while e + 1 < UNITS.len() && (n as f64) >= scale * 1000.0 {
        scale *= 1000.0;
        e += 1;
    }
    let val = ((n as f64) / scale * 10.0 + 0.5).floor() / 10.0;
    if val < 10.0 {
        format!("{val:.1} {}", UNITS[e])
    } else {
        format!("{val:.0} {}", UNITS[e])
    }
}

/// A duration as Go's `time.Duration.String` writes it (`1.5ms`,
/// `2.000123s`).
pub fn go_duration(d: Duration) -> String {
    let ns = d.as_nanos();
    if ns == 0 {
        return "0s".to_owned();
    }
    let (value, unit, scale) = if ns < 1_000 {
        return format!("{ns}ns");
    } else if ns < 1_000_000 {
        (ns, "µs", 1_000u128)
    } else if ns < 1_000_000_000 {
        (ns, "ms", 1_000_000u128)
    } else {
        (ns, "s", 1_000_000_000u128)
    };
    let whole = value / scale;
    let frac = value % scale;
    if frac == 0 {
        return format!("{whole}{unit}");
    }
    let digits = scale.ilog10() as usize;
    let frac = format!("{frac:0digits$}");
    format!("{whole}.{}{unit}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_like_humanize() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(9), "9 B");
        assert_eq!(human_bytes(20480), "20 kB");
        assert_eq!(human_bytes(1_234_567), "1.2 MB");
        assert_eq!(human_bytes(999), "999 B");
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(Duration::from_nanos(5_659_239)), "5.659239ms");
        assert_eq!(go_duration(Duration::from_millis(2)), "2ms");
        assert_eq!(go_duration(Duration::from_micros(15)), "15µs");
        assert_eq!(go_duration(Duration::from_millis(1500)), "1.5s");
    }

    #[test]
    fn table_layout() {
        let t = table(
            &["ID", "STATUS"],
            &[vec!["2e1259d415f2a040".into(), "started".into()]],
        );
        assert_eq!(
            t,
            "+------------------+---------+\n\
             |        ID        | STATUS  |\n\
             +------------------+---------+\n\
             | 2e1259d415f2a040 | started |\n\
             +------------------+---------+\n"
        );
    }

    #[test]
    fn omitempty() {
        let v = Obj::new().int("a", 0).int("b", 2).str("c", "").done();
        assert_eq!(v.to_string(), r#"{"b":2}"#);
        assert_eq!(Json::str("a<\"\n").0, r#""a\u003c\"\n""#);
    }
}
