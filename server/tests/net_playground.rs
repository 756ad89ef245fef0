//! `sett playground` runs three member processes of the `sett` binary on
//! 127.0.0.1, prints their URLs, stops them cleanly on SIGTERM, and a
//! second run with the same directory restarts the same cluster.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Bound on waiting for the playground to come up or go down.
const WAIT: Duration = Duration::from_secs(60);

/// Starts the playground and returns it with the lines of its URL table.
fn start(dir: &Path) -> (Child, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_sett"))
        .args(["playground", "--dir"])
        .arg(dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut table = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if line.starts_with("Ctrl-C") {
            break;
        }
        if line.starts_with('m') {
            table.push(line);
        }
    }
    (child, table)
}

fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        assert!(Instant::now() < deadline, "playground did not stop");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn terminate(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

#[test]
fn playground_starts_three_members_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let (mut child, table) = start(dir.path());
    assert_eq!(table.len(), 3, "{table:?}");
    for (i, line) in table.iter().enumerate() {
        assert!(line.starts_with(&format!("m{}", i + 1)), "{line}");
        assert_eq!(line.matches("http://127.0.0.1:").count(), 2, "{line}");
    }
    // Every member writes its resolved configuration before serving.
    let deadline = Instant::now() + WAIT;
    for name in ["m1", "m2", "m3"] {
        while !dir.path().join(name).join("member.json").exists() {
            assert!(Instant::now() < deadline, "{name} did not start");
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    terminate(&child);
    assert!(wait_exit(&mut child).success());

    // The same directory restarts the same cluster on the same URLs.
    let (mut again, table2) = start(dir.path());
    assert_eq!(table2, table);
    terminate(&again);
    assert!(wait_exit(&mut again).success());
}
