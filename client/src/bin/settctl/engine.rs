//! `settctl engine …`: offline tools for one database directory.

use crate::progress;
use anyhow::{bail, ensure, Context, Result};
use clap::{Args, Subcommand};
use sett_engine::{BackupOptions, Db, GcOutcome, Options, StreamOptions};
use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

/// Most value-log GC rounds one `gc` call runs.
const GC_ROUNDS_MAX: usize = 100_000;

#[derive(Debug, Subcommand)]
pub enum EngineCommand {
    /// Levels, tables, value-log files, timestamps and counters.
    Info(DirArg),
    /// Verifies every table block, the level invariants, the order of all
    /// entries and every readable value-log value; exits non-zero on the
    /// first problem.
    Check(DirArg),
    /// Writes a full (or, with --since, incremental) backup of a snapshot.
    Backup(BackupArgs),
    /// Restores a full backup into a new directory, then applies the
    /// incremental backups given after it, in order.
    Restore(RestoreArgs),
    /// Exports the newest value of every key as `hex(key) TAB hex(value)`
    /// lines (see --help).
    Stream(StreamArgs),
    /// Runs value-log garbage collection until no file qualifies.
    Gc(GcArgs),
}

#[derive(Debug, Args)]
pub struct DirArg {
    /// The database directory.
    #[arg(long)]
    dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct BackupArgs {
    /// The database directory (opened read-only).
    #[arg(long)]
    dir: PathBuf,
    /// The backup file to create; must not exist.
    #[arg(long)]
    out: PathBuf,
    /// Incremental: only changes after this timestamp, the "snapshot ts"
    /// printed by the previous backup of the chain. 0 = full backup.
    #[arg(long, default_value_t = 0)]
    since: u64,
    /// Threads reading the database.
    #[arg(long, default_value_t = 2)]
    workers: usize,
}

#[derive(Debug, Args)]
pub struct RestoreArgs {
    /// The directory to create; must not exist or be empty.
    #[arg(long)]
    dir: PathBuf,
    /// Backup files: the full backup first, then its incrementals in
    /// order. Repeat the flag for each file.
    #[arg(long = "in", required = true)]
    inputs: Vec<PathBuf>,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Output: one line per entry, `hex(key) TAB hex(value)`, lowercase hex. \
With --all-versions: `hex(key) TAB version TAB hex(value)`, where a deletion marker has `-` as \
its value. Lines are in key order within each key range; with more than one worker, ranges \
interleave: pipe through `LC_ALL=C sort` (hex keys sort like the bytes) or use --workers 1 for \
fully sorted output. Totals go to stderr."
)]
pub struct StreamArgs {
    /// The database directory (opened read-only).
    #[arg(long)]
    dir: PathBuf,
    /// Only keys starting with this prefix (as UTF-8 bytes; `hex:` + hex
    /// digits for binary).
    #[arg(long, default_value = "")]
    prefix: String,
    /// Threads reading the database.
    #[arg(long, default_value_t = 2)]
    workers: usize,
    /// Every version (deletions and expired entries included), not just
    /// the newest live value.
    #[arg(long)]
    all_versions: bool,
    /// Write to this file instead of stdout.
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// The database directory (opened for writing).
    #[arg(long)]
    dir: PathBuf,
    /// Collect a value-log file when at least this share of it is garbage.
    #[arg(long, default_value_t = 0.5)]
    ratio: f64,
    /// Compact the tree first, so that GC sees every dropped version.
    #[arg(long)]
    compact: bool,
}

/// Runs one engine tool.
pub fn run(cmd: EngineCommand) -> Result<()> {
    match cmd {
        EngineCommand::Info(a) => info(&a.dir),
        EngineCommand::Check(a) => check(&a.dir),
        EngineCommand::Backup(a) => backup(a),
        EngineCommand::Restore(a) => restore(a),
        EngineCommand::Stream(a) => stream(a),
        EngineCommand::Gc(a) => gc(a),
    }
}

/// Opens an existing database, read-only unless `write`.
fn open(dir: &Path, write: bool) -> Result<Db> {
    ensure!(
        dir.join("MANIFEST").is_file(),
        "no sett database at {} (no MANIFEST file)",
        dir.display()
    );
    let mut opts = Options::new(dir);
    opts.read_only = !write;
    Db::open(opts).with_context(|| format!("opening {}", dir.display()))
}

fn mib(bytes: u64) -> String {
    if bytes >= 1 << 30 {
        format!("{:.2} GiB", bytes as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.1} MiB", bytes as f64 / (1u64 << 20) as f64)
    }
}

/// Files in `dir` whose name ends with `suffix`, with their sizes, by name.
fn files_with_suffix(dir: &Path, suffix: &str) -> Result<Vec<(String, u64)>> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e?;
        let name = e.file_name().to_string_lossy().into_owned();
        if name.ends_with(suffix) {
            out.push((name, e.metadata()?.len()));
        }
    }
    out.sort();
    Ok(out)
}

fn info(dir: &Path) -> Result<()> {
    let db = open(dir, false)?;
    let s = db.stats();
    let mut out = std::io::stdout().lock();
    writeln!(out, "database     {}", dir.display())?;
    writeln!(out, "timestamp    {} (newest commit)", s.visible_ts)?;
    writeln!(out, "level  tables        size")?;
    for (l, (n, b)) in s
        .tables_per_level
        .iter()
        .zip(&s.bytes_per_level)
        .enumerate()
    {
        writeln!(out, "L{l:<5} {n:>6} {:>11}", mib(*b))?;
    }
    let tables: usize = s.tables_per_level.iter().sum();
    let table_bytes: u64 = s.bytes_per_level.iter().sum();
    writeln!(
        out,
        "tables       {tables} ({}), {} entries (all versions)",
        mib(table_bytes),
        s.table_entries
    )?;
    let vlogs = files_with_suffix(dir, ".vlog")?;
    writeln!(
        out,
        "value log    {} files ({})",
        vlogs.len(),
        mib(vlogs.iter().map(|v| v.1).sum())
    )?;
    for (name, len) in &vlogs {
        writeln!(out, "  {name}  {}", mib(*len))?;
    }
    let manifest = std::fs::metadata(dir.join("MANIFEST"))?.len();
    writeln!(out, "manifest     {manifest} bytes")?;
    writeln!(
        out,
        "memtable     {} frozen memtables waiting for flush",
        s.immutable_memtables
    )?;
    db.close()?;
    Ok(())
}

fn check(dir: &Path) -> Result<()> {
    let db = open(dir, false)?;
    let pb = progress::spinner("checking");
    let start = Instant::now();
    let report = db.check();
    pb.finish_and_clear();
    let report = report.with_context(|| format!("check of {} failed", dir.display()))?;
    println!(
        "ok: {} verified in {:.1}s",
        dir.display(),
        start.elapsed().as_secs_f64()
    );
    println!(
        "  {} tables: every block checksummed, index, filter and meta consistent",
        report.tables
    );
    println!("  level invariants: tables in order, no overlap below L0");
    println!("  {} entries (all versions) in key order", report.entries);
    println!(
        "  {} value-log values read and checksummed",
        report.vlog_values
    );
    db.close()?;
    Ok(())
}

fn backup(a: BackupArgs) -> Result<()> {
    ensure!(
        !a.out.exists(),
        "{} exists; choose a new file name",
        a.out.display()
    );
    let db = open(&a.dir, false)?;
    // Write beside the target, then rename: a failed backup never leaves a
    // file under the final name.
    let partial = PathBuf::from(format!("{}.partial", a.out.display()));
    let file = File::create(&partial).with_context(|| format!("creating {}", partial.display()))?;
    let pb = progress::bytes(None, "backup");
    let result = db.backup_with(
        pb.wrap_write(BufWriter::with_capacity(1 << 20, &file)),
        BackupOptions {
            since_ts: a.since,
            workers: a.workers.max(1),
            ..BackupOptions::default()
        },
    );
    pb.finish_and_clear();
    let summary = match result.and_then(|s| file.sync_all().map(|()| s).map_err(Into::into)) {
        Ok(s) => s,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e).context("backup failed");
        }
    };
    std::fs::rename(&partial, &a.out)?;
    db.close()?;
    let kind = if summary.since_ts == 0 {
        "full".to_string()
    } else {
        format!("incremental since ts {}", summary.since_ts)
    };
    println!("backup written: {} ({kind})", a.out.display());
    println!(
        "  snapshot ts {}  (next incremental: --since {})",
        summary.read_ts, summary.read_ts
    );
    println!(
        "  {} entries, {} of keys and values, {} bytes",
        summary.entries,
        mib(summary.kv_bytes),
        summary.bytes
    );
    Ok(())
}

fn restore(a: RestoreArgs) -> Result<()> {
    let open_input = |path: &Path| -> Result<(BufReader<File>, u64)> {
        let f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let len = f.metadata()?.len();
        Ok((BufReader::with_capacity(1 << 20, f), len))
    };
    let (first, rest) = a.inputs.split_first().expect("clap requires one --in");
    let (r, len) = open_input(first)?;
    let pb = progress::bytes(Some(len), "restore");
    let result = Db::restore_into(Options::new(&a.dir), pb.wrap_read(r));
    pb.finish_and_clear();
    let (db, s) = result.with_context(|| format!("restoring {}", first.display()))?;
    println!(
        "restored {}: full backup at ts {}, {} entries",
        first.display(),
        s.read_ts,
        s.entries
    );
    for path in rest {
        let (r, len) = open_input(path)?;
        let pb = progress::bytes(Some(len), "apply");
        let result = db.load_backup(pb.wrap_read(r));
        pb.finish_and_clear();
        let s = result.with_context(|| {
            format!(
                "applying {} (the database in {} stays as restored so far, at ts {})",
                path.display(),
                a.dir.display(),
                db.stats().visible_ts
            )
        })?;
        println!(
            "applied {}: changes after ts {} up to ts {}, {} entries",
            path.display(),
            s.since_ts,
            s.read_ts,
            s.entries
        );
    }
    let ts = db.stats().visible_ts;
    db.close()?;
    println!("database {} is at ts {ts}", a.dir.display());
    Ok(())
}

fn parse_prefix(p: &str) -> Result<Vec<u8>> {
    let Some(hex) = p.strip_prefix("hex:") else {
        return Ok(p.as_bytes().to_vec());
    };
    ensure!(
        hex.len().is_multiple_of(2),
        "--prefix hex: needs an even number of digits"
    );
    (0..hex.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&hex[i..i + 2], 16)
                .with_context(|| format!("--prefix: bad hex digits {:?}", &hex[i..i + 2]))
        })
        .collect()
}

fn push_hex(out: &mut Vec<u8>, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)]);
        out.push(DIGITS[usize::from(b & 15)]);
    }
}

fn stream(a: StreamArgs) -> Result<()> {
    let db = open(&a.dir, false)?;
    let sink: Box<dyn Write> = match &a.out {
        Some(p) => Box::new(File::create(p).with_context(|| format!("creating {}", p.display()))?),
        None => Box::new(std::io::stdout().lock()),
    };
    let mut w = BufWriter::with_capacity(1 << 20, sink);
    let pb = progress::items("stream", "entries");
    let mut line = Vec::new();
    let start = Instant::now();
    let summary = db
        .stream(StreamOptions {
            prefix: parse_prefix(&a.prefix)?,
            workers: a.workers.max(1),
            all_versions: a.all_versions,
            ..StreamOptions::default()
        })
        .run(|batch| {
            for e in &batch.entries {
                line.clear();
                push_hex(&mut line, &e.key);
                line.push(b'\t');
                if a.all_versions {
                    line.extend_from_slice(e.version.to_string().as_bytes());
                    line.push(b'\t');
                }
                if a.all_versions && e.deleted {
                    line.push(b'-');
                } else {
                    push_hex(&mut line, &e.value);
                }
                line.push(b'\n');
                w.write_all(&line)?;
            }
            pb.inc(batch.entries.len() as u64);
            Ok(())
        });
    pb.finish_and_clear();
    let summary = summary.context("stream failed")?;
    match w.flush() {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r?,
    }
    eprintln!(
        "streamed {} entries ({} of keys and values) at ts {} from {} ranges in {:.1}s",
        summary.entries,
        mib(summary.bytes),
        summary.read_ts,
        summary.ranges,
        start.elapsed().as_secs_f64()
    );
    db.close()?;
    Ok(())
}

fn gc(a: GcArgs) -> Result<()> {
    ensure!(
        a.ratio > 0.0 && a.ratio <= 1.0,
        "--ratio must be in (0, 1], got {}",
        a.ratio
    );
    let db = open(&a.dir, true)?;
    if a.compact {
        let pb = progress::spinner("compacting");
        let r = db.compact();
        pb.finish_and_clear();
        r.context("compaction before GC failed")?;
    } else {
        db.flush()?;
    }
    let mut collected = 0usize;
    for _ in 0..GC_ROUNDS_MAX {
        match db
            .run_value_log_gc(a.ratio)
            .context("value-log GC failed")?
        {
            GcOutcome::Collected(r) => {
                collected += 1;
                println!(
                    "collected {:06}.vlog: {} reclaimed, {} live entries ({}) rewritten",
                    r.fid,
                    mib(r.file_bytes),
                    r.rewritten_entries,
                    mib(r.rewritten_bytes)
                );
            }
            GcOutcome::NothingToDo => break,
            GcOutcome::AlreadyRunning => bail!("another value-log GC is running"),
            other => bail!("unexpected GC outcome {other:?}"),
        }
    }
    let s = db.value_log_gc_stats();
    db.close()?;
    println!(
        "gc done: {collected} files collected, {} reclaimed, {} entries rewritten (ratio {})",
        mib(s.bytes_reclaimed),
        s.entries_rewritten,
        a.ratio
    );
    Ok(())
}
