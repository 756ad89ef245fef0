//! Runs the built `settctl` binary on temporary databases: backup,
//! incremental backup, restore, check, info, stream, gc, and the failures
//! that must exit non-zero with a plain message.

use sett_engine::{Db, IterOptions, Options};
use std::path::Path;
use std::process::{Command, Output};

/// The tests run one at a time. The engine's directory lock is a `flock`
/// on an open file; a child that another test thread forks in the moment
/// before its `exec` holds a copy of that file, so a database this thread
/// has just closed can still look locked to the `settctl` it starts next.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn one_at_a_time() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner())
}

fn settctl(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_settctl"))
        .args(args)
        .output()
        .expect("settctl runs")
}

/// Runs settctl, expecting success; returns stdout.
fn ok(args: &[&str]) -> String {
    let out = settctl(args);
    assert!(
        out.status.success(),
        "settctl {args:?} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Runs settctl, expecting failure; returns stderr.
fn fails(args: &[&str]) -> String {
    let out = settctl(args);
    assert!(!out.status.success(), "settctl {args:?} succeeded");
    assert_eq!(out.status.code(), Some(1));
    String::from_utf8(out.stderr).unwrap()
}

fn write(dir: &Path, round: u32, keys: u32) {
    let mut o = Options::new(dir);
    o.sync_writes = false;
    let db = Db::open(o).unwrap();
    for chunk in (0..keys).collect::<Vec<_>>().chunks(1000) {
        db.update(|t| {
            for &i in chunk {
                let key = format!("key{i:06}").into_bytes();
                if (i + round).is_multiple_of(10) {
                    t.delete(key)?;
                } else if i.is_multiple_of(50) {
                    t.set(key, vec![round as u8; 4000])?; // in the value log
                } else {
                    t.set(key, format!("v{round}-{i}").into_bytes())?;
                }
            }
            Ok(())
        })
        .unwrap();
    }
    db.close().unwrap();
}

fn latest(dir: &Path) -> Vec<(Vec<u8>, Vec<u8>)> {
    let mut o = Options::new(dir);
    o.read_only = true;
    let db = Db::open(o).unwrap();
    let txn = db.begin_read();
    let mut it = txn.iter(IterOptions::default());
    it.rewind().unwrap();
    let mut out = Vec::new();
    while it.valid() {
        out.push((it.item().key().to_vec(), it.item().value().unwrap()));
        it.next().unwrap();
    }
    out
}

/// The number after `--since ` in a backup's output.
fn next_since(stdout: &str) -> String {
    let rest = stdout
        .split("--since ")
        .nth(1)
        .unwrap_or_else(|| panic!("no --since in {stdout:?}"));
    rest.chars().take_while(char::is_ascii_digit).collect()
}

#[test]
fn backup_restore_check_info() {
    let _serial = one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    let (src, dst) = (p("src"), p("dst"));
    write(Path::new(&src), 0, 5000);

    let out = ok(&["engine", "backup", "--dir", &src, "--out", &p("full.bak")]);
    assert!(out.contains("(full)"), "{out}");
    let since = next_since(&out);
    assert!(!Path::new(&p("full.bak.partial")).exists());
    // An existing output file is never overwritten.
    let err = fails(&["engine", "backup", "--dir", &src, "--out", &p("full.bak")]);
    assert!(err.contains("exists"), "{err}");

    write(Path::new(&src), 1, 3000);
    let out = ok(&[
        "engine",
        "backup",
        "--dir",
        &src,
        "--out",
        &p("inc.bak"),
        "--since",
        &since,
    ]);
    assert!(
        out.contains(&format!("incremental since ts {since}")),
        "{out}"
    );

    let out = ok(&[
        "engine",
        "restore",
        "--dir",
        &dst,
        "--in",
        &p("full.bak"),
        "--in",
        &p("inc.bak"),
    ]);
    assert!(out.contains("applied"), "{out}");
    assert_eq!(latest(Path::new(&dst)), latest(Path::new(&src)));

    let out = ok(&["engine", "check", "--dir", &dst]);
    assert!(out.starts_with("ok: "), "{out}");
    assert!(out.contains("tables") && out.contains("entries"), "{out}");

    let out = ok(&["engine", "info", "--dir", &dst]);
    assert!(out.contains("timestamp"), "{out}");
    assert!(out.contains("L0") && out.contains("L6"), "{out}");
    assert!(out.contains("value log"), "{out}");

    // Restoring again into the now non-empty directory is refused.
    let err = fails(&["engine", "restore", "--dir", &dst, "--in", &p("full.bak")]);
    assert!(err.contains("not empty"), "{err}");
    // The incremental out of order is refused, and leaves no directory.
    let err = fails(&[
        "engine",
        "restore",
        "--dir",
        &p("lone"),
        "--in",
        &p("inc.bak"),
    ]);
    assert!(err.contains("full backup"), "{err}");
    assert!(!Path::new(&p("lone")).exists());
    // A truncated backup is refused as corrupt.
    let bytes = std::fs::read(p("full.bak")).unwrap();
    std::fs::write(p("cut.bak"), &bytes[..bytes.len() / 2]).unwrap();
    let err = fails(&[
        "engine",
        "restore",
        "--dir",
        &p("cut"),
        "--in",
        &p("cut.bak"),
    ]);
    assert!(err.contains("truncated"), "{err}");
    assert!(!Path::new(&p("cut")).exists());
}

#[test]
fn stream_gc_and_failures() {
    let _serial = one_at_a_time();
    let tmp = tempfile::tempdir().unwrap();
    let p = |name: &str| tmp.path().join(name).to_str().unwrap().to_string();
    let src = p("src");
    write(Path::new(&src), 0, 2000);
    write(Path::new(&src), 1, 2000);

    let out = ok(&["engine", "stream", "--dir", &src, "--workers", "1"]);
    let lines: Vec<&str> = out.lines().collect();
    let want = latest(Path::new(&src));
    assert_eq!(lines.len(), want.len());
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    for (line, (k, v)) in lines.iter().zip(&want) {
        assert_eq!(*line, format!("{}\t{}", hex(k), hex(v)));
    }
    let out = ok(&["engine", "stream", "--dir", &src, "--prefix", "key0001"]);
    assert_eq!(out.lines().count(), 90); // key000100..=key000199, 10 deleted
    let out = ok(&["engine", "stream", "--dir", &src, "--all-versions"]);
    assert!(
        out.lines().any(|l| l.ends_with("\t-")),
        "no deletion markers"
    );

    let out = ok(&["engine", "gc", "--dir", &src, "--ratio", "0.5", "--compact"]);
    assert!(out.contains("gc done"), "{out}");
    assert_eq!(latest(Path::new(&src)), want);
    ok(&["engine", "check", "--dir", &src]);

    // Plain errors and exit code 1.
    let err = fails(&["engine", "info", "--dir", &p("missing")]);
    assert!(err.starts_with("settctl: error: no sett database"), "{err}");
    assert!(!Path::new(&p("missing")).exists());
    let err = fails(&["engine", "gc", "--dir", &src, "--ratio", "1.5"]);
    assert!(err.contains("--ratio"), "{err}");

    // A damaged table fails the check.
    let sst = std::fs::read_dir(&src)
        .unwrap()
        .map(|e| e.unwrap().path())
        .find(|p| p.extension().is_some_and(|e| e == "sst"))
        .expect("a table");
    let mut bytes = std::fs::read(&sst).unwrap();
    bytes[10] ^= 0xff;
    std::fs::write(&sst, bytes).unwrap();
    let err = fails(&["engine", "check", "--dir", &src]);
    assert!(err.contains("corrupt"), "{err}");
}
