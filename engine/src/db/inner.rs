//! Shared state of an open database and its recovery.

use super::write::WriteRequest;
use crate::format::{key_hash, key_with_version, ValueStruct};
use crate::fs::Fs;
use crate::levels::{Levels, Version};
use crate::manifest::Manifest;
use crate::memtable::Memtable;
use crate::options::Options;
use crate::table::{BlockCache, IndexCache, Table, TableBuilder, TableOptions};
use crate::txn::Oracle;
use crate::vlog::ValueLog;
use crate::{Error, Result};
use crossbeam_channel::Sender;
use parking_lot::{Condvar, Mutex, RwLock};
use std::any::Any;
use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// The memtables: one taking writes, older ones waiting to be flushed.
#[derive(Debug)]
pub(crate) struct MemState {
    pub(crate) active: Arc<Memtable>,
    /// Frozen memtables, oldest first.
    pub(crate) immutables: VecDeque<Arc<Memtable>>,
}

impl MemState {
    /// All memtables, newest first.
    pub(crate) fn newest_first(&self) -> Vec<Arc<Memtable>> {
        let mut v = Vec::with_capacity(1 + self.immutables.len());
        v.push(self.active.clone());
        v.extend(self.immutables.iter().rev().cloned());
        v
    }
}

/// Everything an open database shares between its handle, transactions
/// and background threads.
#[derive(Debug)]
pub(crate) struct DbInner {
    pub(crate) opts: Options,
    pub(crate) fs: Arc<dyn Fs>,
    pub(crate) dir: PathBuf,
    /// The directory lock; released at close.
    pub(crate) dir_lock: Mutex<Option<Box<dyn Any + Send + Sync>>>,
    /// `None` when opened read-only.
    manifest: Mutex<Option<Manifest>>,
    pub(crate) vlog: ValueLog,
    pub(crate) mem: RwLock<MemState>,
    pub(crate) levels: Levels,
    pub(crate) oracle: Oracle,
    pub(crate) cache: Option<Arc<BlockCache>>,
    /// Decoded table indexes, bounded; `None` keeps them with their tables.
    pub(crate) index_cache: Option<Arc<IndexCache>>,
    next_file_id: AtomicU64,
    pub(crate) write_tx: Mutex<Option<Sender<WriteRequest>>>,
    pub(crate) flush_tx: Mutex<Option<Sender<Arc<Memtable>>>>,
    state_lock: Mutex<()>,
    state_cv: Condvar,
    bg_error: Mutex<Option<String>>,
    pub(crate) closing: AtomicBool,
    /// Counters for `Db::stats`.
    pub(crate) metrics: super::metrics::Metrics,
    pub(crate) threads: Mutex<Vec<JoinHandle<()>>>,
    /// Subscribers and the open coalescing batch (`subscribe.rs`).
    pub(crate) extras: super::subscribe::Extras,
}

/// Takes the directory lock (shared when read-only), retrying until
/// `opts.lock_timeout` passes.
fn take_lock(
    fs: &dyn Fs,
    dir: &std::path::Path,
    opts: &Options,
) -> Result<Box<dyn Any + Send + Sync>> {
    let path = dir.join("LOCK");
    let deadline = opts.lock_timeout.map(|t| std::time::Instant::now() + t);
    loop {
        let r = if opts.read_only {
            fs.lock_shared(&path)
        } else {
            fs.lock(&path)
        };
        match r {
            Ok(g) => return Ok(g),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if deadline.is_none_or(|d| std::time::Instant::now() >= d) {
                    return Err(Error::Locked(dir.to_path_buf()));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(Error::Io(e)),
        }
    }
}

/// Name of table file `id`.
pub(crate) fn table_name(id: u64) -> String {
    format!("{id:06}.sst")
}

impl DbInner {
    /// Opens (or creates) the database and replays the value log. No
    /// background thread runs yet.
    pub(crate) fn open(opts: Options) -> Result<DbInner> {
        opts.validate()?;
        let dir = opts.dir.clone();
        let raw_fs = opts.file_system();
        raw_fs.create_dir_all(&dir)?;
        let lock = take_lock(&*raw_fs, &dir, &opts)?;
        let fs = crate::fs::encrypted::wrap(raw_fs, &opts)?;
        let (manifest, state) = if opts.read_only {
            (None, Manifest::read_state(&*fs, &dir)?)
        } else {
            let (m, s) = Manifest::open(fs.clone(), &dir)?;
            (Some(m), s)
        };
        // Uncompressed blocks are read in place from the table's mapping,
        // so the operating system's page cache is their cache; copying
        // them into a second cache would only double their memory. The
        // block cache holds decompressed blocks.
        let use_cache = opts.block_cache_size > 0 && opts.compression != crate::Compression::None;
        let cache = use_cache.then(|| Arc::new(BlockCache::new(opts.block_cache_size)));
        let index_cache =
            (opts.index_cache_size > 0).then(|| Arc::new(IndexCache::new(opts.index_cache_size)));

        let mut version = Version {
            levels: vec![Vec::new(); opts.max_levels],
        };
        let mut max_version = state.max_version;
        for meta in state.tables.values() {
            let path = dir.join(table_name(meta.id));
            let data = fs.read_all(&path).map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    Error::corruption(&path, 0, "table listed in the manifest is missing")
                }
                _ => Error::Io(e),
            })?;
            let table = Table::open_with(meta.id, path, data, cache.clone(), index_cache.clone())?;
            max_version = max_version.max(table.max_version());
            let level = meta.level as usize;
            if level >= version.levels.len() {
                return Err(Error::InvalidOptions(format!(
                    "database has tables at level {level}; open it with max_levels > {level}"
                )));
            }
            version.levels[level].push(Arc::new(table));
        }
        version.levels[0].sort_by_key(|t| std::cmp::Reverse(t.id()));
        for l in version.levels.iter_mut().skip(1) {
            l.sort_by(|a, b| crate::format::compare_keys(a.smallest(), b.smallest()));
        }
        if let Some(bad) = version.check_invariants() {
            return Err(Error::corruption(dir.join("MANIFEST"), 0, bad));
        }
        // Files a crash left behind: tables never recorded, temporaries.
        let names = if opts.read_only {
            Vec::new()
        } else {
            fs.list(&dir)?
        };
        for name in names {
            let stray_table = name
                .strip_suffix(".sst")
                .and_then(|n| n.parse::<u64>().ok())
                .is_some_and(|id| !state.tables.contains_key(&id));
            if stray_table || name.ends_with(".tmp") && name != "MANIFEST.tmp" {
                tracing::info!(file = %name, "removing file left by an interrupted operation");
                fs.remove(&dir.join(&name))?;
            }
        }

        let vlog = ValueLog::open(fs.clone(), &dir, opts.vlog_file_size, opts.read_only)?;
        let mem = Memtable::new(state.vlog_head);
        let threshold = opts.value_threshold;
        let mut replayed = 0u64;
        let end = vlog.replay(state.vlog_head, |e, vp| {
            let vs = ValueStruct::for_log_entry(
                e.meta,
                e.user_meta,
                e.expires_at,
                &e.value,
                threshold,
                vp,
            );
            if vs.pointer().is_none() {
                // The log copy is garbage once this memtable is flushed.
                vlog.discard
                    .add_replayed(vp.fid, vp.offset, u64::from(vp.len));
            }
            max_version = max_version.max(e.version);
            mem.insert(key_with_version(&e.key, e.version), vs.encode());
            replayed += 1;
        })?;
        vlog.discard.set_counted(end);
        mem.set_vlog_end(end);
        if replayed > 0 {
            tracing::info!(entries = replayed, "replayed value log");
        }
        let next_file_id = state
            .next_file_id
            .max(state.tables.keys().max().map_or(1, |m| m + 1));

        Ok(DbInner {
            fs,
            dir,
            dir_lock: Mutex::new(Some(lock)),
            manifest: Mutex::new(manifest),
            vlog,
            mem: RwLock::new(MemState {
                active: Arc::new(mem),
                immutables: VecDeque::new(),
            }),
            levels: Levels::new(version),
            oracle: Oracle::new(max_version, opts.managed),
            cache,
            index_cache,
            next_file_id: AtomicU64::new(next_file_id),
            write_tx: Mutex::new(None),
            flush_tx: Mutex::new(None),
            state_lock: Mutex::new(()),
            state_cv: Condvar::new(),
            bg_error: Mutex::new(None),
            closing: AtomicBool::new(false),
            metrics: super::metrics::Metrics::default(),
            threads: Mutex::new(Vec::new()),
            extras: Default::default(),
            opts,
        })
    }

    /// Records `edits` in the manifest (durably, atomically).
    pub(crate) fn apply_edits(&self, edits: &[crate::manifest::ManifestEdit]) -> Result<()> {
        match &mut *self.manifest.lock() {
            Some(m) => m.apply(edits),
            None => Err(Error::ReadOnly),
        }
    }

    /// Where value-log replay would start after a crash: the manifest's
    /// head. Everything before it is in tables.
    pub(crate) fn replay_head(&self) -> Option<(u32, u64)> {
        self.manifest.lock().as_ref().map(|m| m.state().vlog_head)
    }

    /// Table-building options from the database options.
    pub(crate) fn table_options(&self) -> TableOptions {
        TableOptions::from_options(&self.opts)
    }

    /// The next unused file number (without taking it).
    pub(crate) fn next_file_id(&self) -> u64 {
        self.next_file_id.load(Ordering::SeqCst)
    }

    /// Makes everything appended to the value log durable, timing the
    /// sync for [`crate::Stats::sync_latency`].
    pub(crate) fn sync_vlog(&self) -> Result<()> {
        let started = std::time::Instant::now();
        self.vlog.sync()?;
        self.metrics.record_sync(started.elapsed());
        Ok(())
    }

    /// Writes a finished table to a new file, syncs it and opens it. The
    /// caller syncs the directory and records the table in the manifest.
    pub(crate) fn write_table(&self, builder: TableBuilder) -> Result<Arc<Table>> {
        let id = self.next_file_id.fetch_add(1, Ordering::SeqCst);
        let path = self.dir.join(table_name(id));
        let bytes = builder.finish();
        let file = self.fs.create(&path)?;
        file.append(&bytes)?;
        let started = std::time::Instant::now();
        file.sync()?;
        self.metrics.record_sync(started.elapsed());
        drop(file);
        let data = self.fs.read_all(&path)?;
        Ok(Arc::new(Table::open_with(
            id,
            path,
            data,
            self.cache.clone(),
            self.index_cache.clone(),
        )?))
    }

    /// The newest version of `key` visible at `read_ts`, tombstones
    /// included: `(version, value)`.
    pub(crate) fn get_at(&self, key: &[u8], read_ts: u64) -> Result<Option<(u64, ValueStruct)>> {
        // Memtables before tables: a flush publishes its table before it
        // retires the memtable, so this order never misses an entry.
        let mems = self.mem.read().newest_first();
        let decode = |ver: u64, raw: Vec<u8>| -> Result<Option<(u64, ValueStruct)>> {
            let vs = ValueStruct::decode(&raw)
                .ok_or_else(|| Error::corruption(&self.dir, 0, "undecodable value in the tree"))?;
            Ok(Some((ver, vs)))
        };
        for m in &mems {
            if let Some((ver, raw)) = m.get(key, read_ts) {
                return decode(ver, raw);
            }
        }
        let version = self.levels.current();
        match version.get(key, key_hash(key), read_ts)? {
            Some((ver, raw)) => decode(ver, raw),
            None => Ok(None),
        }
    }

    /// The value an LSM entry stands for, reading the value log if needed.
    pub(crate) fn resolve_value(&self, vs: &ValueStruct) -> Result<Vec<u8>> {
        match vs.pointer() {
            Some(vp) => self.vlog.read_value(vp),
            None => Ok(vs.payload.clone()),
        }
    }

    /// Fails if a background error has put the database in a failed state.
    pub(crate) fn check_bg_error(&self) -> Result<()> {
        match &*self.bg_error.lock() {
            Some(msg) => Err(Error::Poisoned(msg.clone())),
            None => Ok(()),
        }
    }

    /// Records a background failure; later writes are refused.
    pub(crate) fn set_bg_error(&self, msg: String) {
        tracing::error!(error = %msg, "background failure; refusing further writes");
        let mut e = self.bg_error.lock();
        if e.is_none() {
            *e = Some(msg);
        }
        drop(e);
        self.notify_state_change();
    }

    /// Wakes everyone waiting for flush or compaction progress.
    pub(crate) fn notify_state_change(&self) {
        let _g = self.state_lock.lock();
        self.state_cv.notify_all();
    }

    /// Waits until notified or `timeout` passes.
    pub(crate) fn wait_state_change(&self, timeout: Duration) {
        let mut g = self.state_lock.lock();
        self.state_cv.wait_for(&mut g, timeout);
    }

    /// True once close has begun.
    pub(crate) fn is_closing(&self) -> bool {
        self.closing.load(Ordering::Acquire)
    }
}
