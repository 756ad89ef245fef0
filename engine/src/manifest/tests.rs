//! Manifest tests against a model: reopen, torn tails, flipped bytes, crash
//! images at every file-system step, and injected I/O failures.

use super::manifest::{Manifest, ManifestOptions, MANIFEST_FILE, MANIFEST_TMP_FILE};
use super::record::{encode_record, file_header};
use super::state::ManifestState;
use super::{ManifestEdit, TableMeta};
use crate::fs::{FaultFs, FileBytes, Fs, FsFile, MemFs, PosixFs};
use crate::Error;
use parking_lot::Mutex;
use std::any::Any;
use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

fn dir() -> &'static Path {
    Path::new("/db")
}

fn manifest_path() -> PathBuf {
    dir().join(MANIFEST_FILE)
}

/// Thresholds small enough that a few dozen edits trigger a rewrite.
fn small_opts() -> ManifestOptions {
    ManifestOptions {
        rewrite_min_bytes: 512,
        rewrite_ratio: 2,
    }
}

fn file_bytes(fs: &dyn Fs, path: &Path) -> Vec<u8> {
    let b: FileBytes = fs.read_all(path).unwrap();
    (*b).as_ref().to_vec()
}

/// A fresh in-memory file system whose durable `MANIFEST` holds `bytes`.
fn fs_with_manifest(bytes: &[u8]) -> Arc<dyn Fs> {
    let fs = MemFs::new();
    fs.create_dir_all(dir()).unwrap();
    let f = fs.create(&manifest_path()).unwrap();
    f.append(bytes).unwrap();
    f.sync().unwrap();
    fs.sync_dir(dir()).unwrap();
    Arc::new(fs)
}

/// xorshift64*: deterministic, dependency-free randomness for tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn table(id: u64, level: u32, max_version: u64) -> TableMeta {
    TableMeta {
        id,
        level,
        size: id * 1000 + 17,
        smallest: format!("key-{id:06}-a").into_bytes(),
        largest: format!("key-{id:06}-z").into_bytes(),
        max_version,
    }
}

/// Generates one valid batch against `model` and applies it to `model`.
struct Workload {
    rng: Rng,
    model: ManifestState,
    next_id: u64,
    version: u64,
    vlog: (u32, u64),
}

impl Workload {
    fn new(seed: u64) -> Workload {
        Workload {
            rng: Rng(seed | 1),
            model: ManifestState::default(),
            next_id: 1,
            version: 0,
            vlog: (0, 0),
        }
    }

    fn batch(&mut self) -> Vec<ManifestEdit> {
        let n = 1 + self.rng.below(4);
        let mut edits = Vec::new();
        for _ in 0..n {
            let edit = match self.rng.below(6) {
                0 | 1 => {
                    self.version += self.rng.below(100);
                    let id = self.next_id;
                    self.next_id += 1 + self.rng.below(3);
                    ManifestEdit::AddTable(table(id, self.rng.below(7) as u32, self.version))
                }
                2 if !self.model.tables.is_empty() => {
                    let k = self.rng.below(self.model.tables.len() as u64) as usize;
                    let id = *self.model.tables.keys().nth(k).unwrap();
                    ManifestEdit::DeleteTable { id }
                }
                3 => {
                    self.vlog.1 += self.rng.below(1 << 20);
                    if self.rng.below(4) == 0 {
                        self.vlog = (self.vlog.0 + 1, self.rng.below(100));
                    }
                    ManifestEdit::VlogHead {
                        fid: self.vlog.0,
                        offset: self.vlog.1,
                    }
                }
                4 => {
                    self.next_id += self.rng.below(3);
                    ManifestEdit::NextFileId(self.next_id)
                }
                _ => {
                    self.version += self.rng.below(10);
                    ManifestEdit::MaxVersion(self.version)
                }
            };
            self.model.apply_edit(&edit).unwrap();
            edits.push(edit);
        }
        edits
    }
}

fn open(fs: &Arc<dyn Fs>, opts: ManifestOptions) -> crate::Result<(Manifest, ManifestState)> {
    Manifest::open_with(fs.clone(), dir(), opts)
}

#[test]
fn fresh_open_creates_a_durable_empty_manifest() {
    let fault = FaultFs::new();
    let fs: Arc<dyn Fs> = Arc::new(fault.clone());
    let (m, state) = Manifest::open(fs.clone(), dir()).unwrap();
    assert_eq!(state, ManifestState::default());
    assert_eq!(m.state(), &state);
    assert!(!fs.exists(&dir().join(MANIFEST_TMP_FILE)));
    let img: Arc<dyn Fs> = Arc::new(fault.crash());
    assert_eq!(
        file_bytes(&*img, &manifest_path()).len() as u64,
        m.file_len()
    );
    let (_, again) = Manifest::open(img, dir()).unwrap();
    assert_eq!(again, state);
}

#[test]
fn round_trip_and_reopen_after_many_applies() {
    let fs: Arc<dyn Fs> = Arc::new(MemFs::new());
    let mut w = Workload::new(1);
    let (mut m, _) = Manifest::open(fs.clone(), dir()).unwrap();
    for i in 0..300 {
        m.apply(&w.batch()).unwrap();
        assert_eq!(m.state(), &w.model);
        if i % 100 == 99 {
            drop(m);
            let (m2, state) = Manifest::open(fs.clone(), dir()).unwrap();
            assert_eq!(state, w.model);
            m = m2;
        }
    }
    assert_eq!(
        m.rewrites(),
        0,
        "default thresholds must not rewrite a small file"
    );
    assert!(!w.model.tables.is_empty());
}

#[test]
fn rewrite_keeps_state_and_bounds_the_file() {
    let fs: Arc<dyn Fs> = Arc::new(MemFs::new());
    let mut w = Workload::new(2);
    let (mut m, _) = open(&fs, small_opts()).unwrap();
    let mut len_max = 0;
    for _ in 0..600 {
        m.apply(&w.batch()).unwrap();
        len_max = len_max.max(m.file_len());
    }
    assert!(m.rewrites() >= 3, "only {} rewrites", m.rewrites());
    assert_eq!(
        file_bytes(&*fs, &manifest_path()).len() as u64,
        m.file_len()
    );
    drop(m);
    let (mut m, state) = open(&fs, small_opts()).unwrap();
    assert_eq!(state, w.model);
    m.rewrite().unwrap();
    m.apply(&w.batch()).unwrap();
    drop(m);
    assert_eq!(open(&fs, small_opts()).unwrap().1, w.model);
    assert!(!fs.exists(&dir().join(MANIFEST_TMP_FILE)));
}

/// Builds a manifest and returns (bytes before the last apply, state before
/// it, all bytes, state after it).
fn two_versions(batches: usize) -> (Vec<u8>, ManifestState, Vec<u8>, ManifestState) {
    let fs: Arc<dyn Fs> = Arc::new(MemFs::new());
    let mut w = Workload::new(3);
    let (mut m, _) = Manifest::open(fs.clone(), dir()).unwrap();
    for _ in 0..batches {
        m.apply(&w.batch()).unwrap();
    }
    let before = (file_bytes(&*fs, &manifest_path()), w.model.clone());
    // A last batch with an AddTable, so the record is long enough to tear
    // in interesting places.
    let mut last = w.batch();
    let t = ManifestEdit::AddTable(table(10_000, 1, 5));
    w.model.apply_edit(&t).unwrap();
    last.push(t);
    m.apply(&last).unwrap();
    (
        before.0,
        before.1,
        file_bytes(&*fs, &manifest_path()),
        w.model,
    )
}

#[test]
fn torn_tail_at_every_offset_recovers_the_previous_state() {
    let (prev, prev_state, full, full_state) = two_versions(5);
    assert!(full.len() > prev.len() + 20);
    assert_eq!(
        open(&fs_with_manifest(&full), small_opts()).unwrap().1,
        full_state
    );
    let extra = vec![ManifestEdit::AddTable(table(20_000, 0, 1))];
    let mut after_extra = prev_state.clone();
    after_extra.apply_edit(&extra[0]).unwrap();
    for cut in prev.len()..full.len() {
        let fs = fs_with_manifest(&full[..cut]);
        let (mut m, state) = open(&fs, ManifestOptions::default()).unwrap();
        assert_eq!(state, prev_state, "cut at {cut}");
        assert_eq!(
            file_bytes(&*fs, &manifest_path()),
            prev,
            "cut at {cut}: tail not cut off"
        );
        m.apply(&extra).unwrap();
        drop(m);
        assert_eq!(
            open(&fs, ManifestOptions::default()).unwrap().1,
            after_extra,
            "cut at {cut}"
        );
    }
}

#[test]
fn garbage_after_the_last_record_is_cut_off() {
    let (_, _, full, full_state) = two_versions(3);
    for tail in [
        vec![0u8; 64],
        vec![0xff; 7],
        b"\x05\x00\x00\x00garbage".to_vec(),
    ] {
        let mut bytes = full.clone();
        bytes.extend_from_slice(&tail);
        let fs = fs_with_manifest(&bytes);
        assert_eq!(open(&fs, ManifestOptions::default()).unwrap().1, full_state);
        assert_eq!(file_bytes(&*fs, &manifest_path()), full);
    }
}

#[test]
fn flipped_byte_anywhere_is_corruption_or_a_prefix_never_a_panic() {
    let (prev, prev_state, full, full_state) = two_versions(4);
    let mut recovered = 0;
    for pos in 0..full.len() {
        for mask in [0x01u8, 0x80, 0xff] {
            let mut bytes = full.clone();
            bytes[pos] ^= mask;
            let result = open(&fs_with_manifest(&bytes), ManifestOptions::default());
            if pos < prev.len() {
                let err = result.map(|(_, s)| s).unwrap_err();
                assert!(err.is_corruption(), "pos {pos} mask {mask:#x}: {err}");
            } else {
                let (_, state) = result.unwrap_or_else(|e| panic!("pos {pos} mask {mask:#x}: {e}"));
                assert_eq!(state, prev_state, "pos {pos} mask {mask:#x}");
                assert_ne!(state, full_state);
                recovered += 1;
            }
        }
    }
    assert_eq!(recovered, 3 * (full.len() - prev.len()));
}

#[test]
fn corruption_names_file_and_record_offset() {
    let (prev, _, mut full, _) = two_versions(2);
    // Damage the first record (the snapshot written at creation).
    full[16 + 9] ^= 0x10;
    match open(&fs_with_manifest(&full), ManifestOptions::default())
        .map(|(_, s)| s)
        .unwrap_err()
    {
        Error::Corruption {
            file,
            offset,
            reason,
        } => {
            assert_eq!(file, manifest_path());
            assert_eq!(offset, 16);
            assert!(reason.contains("checksum"), "{reason}");
        }
        e => panic!("unexpected {e}"),
    }
    assert!(prev.len() > 16);
}

#[test]
fn replayed_edits_that_do_not_apply_are_corruption() {
    let cases: Vec<Vec<Vec<ManifestEdit>>> = vec![
        vec![
            vec![ManifestEdit::AddTable(table(1, 0, 0))],
            vec![ManifestEdit::AddTable(table(1, 0, 0))],
        ],
        vec![
            vec![ManifestEdit::NextFileId(4)],
            vec![ManifestEdit::DeleteTable { id: 3 }],
        ],
    ];
    for batches in cases {
        let mut bytes = file_header().to_vec();
        let mut last_off = 0;
        for b in &batches {
            last_off = bytes.len();
            encode_record(b, &mut bytes);
        }
        match open(&fs_with_manifest(&bytes), ManifestOptions::default())
            .map(|(_, s)| s)
            .unwrap_err()
        {
            Error::Corruption { offset, .. } => assert_eq!(offset, last_off as u64),
            e => panic!("unexpected {e}"),
        }
    }
}

#[test]
fn refused_edits_write_nothing_and_keep_the_manifest_usable() {
    let fs: Arc<dyn Fs> = Arc::new(MemFs::new());
    let (mut m, _) = Manifest::open(fs.clone(), dir()).unwrap();
    m.apply(&[ManifestEdit::AddTable(table(1, 0, 3))]).unwrap();
    let (len, state) = (m.file_len(), m.state().clone());
    let bad: Vec<Vec<ManifestEdit>> = vec![
        vec![ManifestEdit::AddTable(table(1, 2, 0))],
        vec![ManifestEdit::DeleteTable { id: 2 }],
        vec![
            ManifestEdit::NextFileId(50),
            ManifestEdit::DeleteTable { id: 1 },
            ManifestEdit::DeleteTable { id: 1 },
        ],
    ];
    for edits in bad {
        assert!(m.apply(&edits).unwrap_err().is_corruption(), "{edits:?}");
        assert_eq!((m.file_len(), m.state()), (len, &state));
        assert!(!m.is_poisoned());
    }
    m.apply(&[]).unwrap();
    assert_eq!(m.file_len(), len);
    // Add and delete inside one batch is fine.
    m.apply(&[
        ManifestEdit::AddTable(table(2, 0, 0)),
        ManifestEdit::DeleteTable { id: 2 },
    ])
    .unwrap();
    assert_eq!(m.state().tables.len(), 1);
    assert_eq!(m.state().next_file_id, 3);
}

#[test]
fn leftover_tmp_file_is_removed_at_open() {
    let fs: Arc<dyn Fs> = Arc::new(MemFs::new());
    let (mut m, _) = Manifest::open(fs.clone(), dir()).unwrap();
    m.apply(&[ManifestEdit::MaxVersion(9)]).unwrap();
    drop(m);
    let tmp = dir().join(MANIFEST_TMP_FILE);
    fs.create(&tmp).unwrap().append(b"half a rewrite").unwrap();
    let (_, state) = Manifest::open(fs.clone(), dir()).unwrap();
    assert_eq!(state.max_version, 9);
    assert!(!fs.exists(&tmp));
}

#[test]
fn crash_image_after_every_apply_holds_the_edit() {
    let mut fault = FaultFs::new();
    let mut w = Workload::new(4);
    let (mut m, _) = open(&(Arc::new(fault.clone()) as Arc<dyn Fs>), small_opts()).unwrap();
    let mut rewrites = 0;
    for i in 0..400 {
        m.apply(&w.batch()).unwrap();
        let img = fault.crash();
        let (m2, state) = open(&(Arc::new(img.clone()) as Arc<dyn Fs>), small_opts()).unwrap();
        assert_eq!(state, w.model, "apply {i}");
        if i % 37 == 0 {
            // Carry on from the crash image.
            rewrites += m.rewrites();
            (fault, m) = (img, m2);
        }
    }
    rewrites += m.rewrites();
    assert!(rewrites >= 3, "only {rewrites} rewrites");
}

/// A file-system step the probe can watch or fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Op {
    Create,
    Append,
    Sync,
    Truncate,
    Rename,
    Remove,
    SyncDir,
}

/// Shared state of a [`ProbeFs`]: crash images taken around every step,
/// step counts, and one-shot injected failures.
#[derive(Debug, Default)]
struct Probe {
    /// Tag stored with each image (the test sets it to the apply number).
    epoch: AtomicUsize,
    /// (epoch, step, taken after the step?, image).
    images: Mutex<Vec<(usize, Op, bool, FaultFs)>>,
    counts: Mutex<HashMap<Op, usize>>,
    /// The next step of each listed kind fails (an append first writes half).
    fail: Mutex<Vec<Op>>,
    capture: std::sync::atomic::AtomicBool,
}

/// Wraps a [`FaultFs`], taking a crash image before and after every
/// mutating step and failing steps on request.
#[derive(Debug, Clone)]
struct ProbeFs {
    inner: FaultFs,
    probe: Arc<Probe>,
}

#[derive(Debug)]
struct ProbeFile {
    inner: Arc<dyn FsFile>,
    fs: ProbeFs,
}

impl ProbeFs {
    fn new(capture: bool) -> ProbeFs {
        let probe = Probe::default();
        probe.capture.store(capture, Ordering::SeqCst);
        ProbeFs {
            inner: FaultFs::new(),
            probe: Arc::new(probe),
        }
    }

    fn snap(&self, op: Op, after: bool) {
        if self.probe.capture.load(Ordering::SeqCst) {
            let epoch = self.probe.epoch.load(Ordering::SeqCst);
            self.probe
                .images
                .lock()
                .push((epoch, op, after, self.inner.crash()));
        }
    }

    fn count(&self, op: Op) -> usize {
        self.probe.counts.lock().get(&op).copied().unwrap_or(0)
    }

    fn fail_next(&self, op: Op) {
        self.probe.fail.lock().push(op);
    }

    fn step<T>(&self, op: Op, f: impl FnOnce(bool) -> io::Result<T>) -> io::Result<T> {
        self.snap(op, false);
        let fail = {
            let mut fail = self.probe.fail.lock();
            let hit = fail.iter().position(|&o| o == op);
            hit.map(|i| fail.remove(i)).is_some()
        };
        let r = f(fail);
        *self.probe.counts.lock().entry(op).or_default() += 1;
        self.snap(op, true);
        if fail {
            return Err(io::Error::other(format!("injected {op:?} failure")));
        }
        r
    }

    fn wrap(&self, inner: Arc<dyn FsFile>) -> Arc<dyn FsFile> {
        Arc::new(ProbeFile {
            inner,
            fs: self.clone(),
        })
    }
}

impl Fs for ProbeFs {
    fn create(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        let f = self.step(Op::Create, |fail| {
            if fail {
                Err(io::ErrorKind::Other.into())
            } else {
                self.inner.create(path)
            }
        })?;
        Ok(self.wrap(f))
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn FsFile>> {
        Ok(self.wrap(self.inner.open(path)?))
    }
    fn read_all(&self, path: &Path) -> io::Result<FileBytes> {
        self.inner.read_all(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.step(Op::Rename, |fail| {
            if fail {
                Ok(())
            } else {
                self.inner.rename(from, to)
            }
        })
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        self.step(Op::Remove, |fail| {
            if fail {
                Ok(())
            } else {
                self.inner.remove(path)
            }
        })
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.inner.list(dir)
    }
    fn exists(&self, path: &Path) -> bool {
        self.inner.exists(path)
    }
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.step(Op::SyncDir, |fail| {
            if fail {
                Ok(())
            } else {
                self.inner.sync_dir(dir)
            }
        })
    }
    fn lock(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        self.inner.lock(path)
    }
    fn lock_shared(&self, path: &Path) -> io::Result<Box<dyn Any + Send + Sync>> {
        self.inner.lock_shared(path)
    }
}

impl FsFile for ProbeFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn append(&self, data: &[u8]) -> io::Result<()> {
        self.fs.step(Op::Append, |fail| {
            if fail {
                self.inner.append(&data[..data.len() / 2])
            } else {
                self.inner.append(data)
            }
        })
    }
    fn sync(&self) -> io::Result<()> {
        self.fs.step(
            Op::Sync,
            |fail| if fail { Ok(()) } else { self.inner.sync() },
        )
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn truncate(&self, len: u64) -> io::Result<()> {
        self.fs.step(Op::Truncate, |fail| {
            if fail {
                Ok(())
            } else {
                self.inner.truncate(len)
            }
        })
    }
    fn path(&self) -> &Path {
        self.inner.path()
    }
}

#[test]
fn crash_at_every_step_opens_to_the_state_before_or_after() {
    let probe = ProbeFs::new(true);
    let fs: Arc<dyn Fs> = Arc::new(probe.clone());
    let mut w = Workload::new(5);
    let mut models = vec![ManifestState::default()];
    let (mut m, _) = open(&fs, small_opts()).unwrap();
    for i in 1..=80 {
        probe.probe.epoch.store(i, Ordering::SeqCst);
        m.apply(&w.batch()).unwrap();
        models.push(w.model.clone());
    }
    assert!(m.rewrites() >= 2, "only {} rewrites", m.rewrites());
    probe.probe.capture.store(false, Ordering::SeqCst);

    let images = std::mem::take(&mut *probe.probe.images.lock());
    let mut durable_epoch = 0;
    let mut during_rewrite = 0;
    for (n, (epoch, op, after, img)) in images.into_iter().enumerate() {
        let fs: Arc<dyn Fs> = Arc::new(img);
        let (_, state) = open(&fs, small_opts())
            .unwrap_or_else(|e| panic!("image {n} (epoch {epoch}, {op:?}, after {after}): {e}"));
        // Once the appended record is synced, every later image of the same
        // apply — including those taken mid-rewrite — must hold it.
        if op == Op::Sync && after {
            durable_epoch = epoch;
        }
        if durable_epoch == epoch {
            assert_eq!(
                state, models[epoch],
                "image {n} (epoch {epoch}, {op:?}, after {after})"
            );
            during_rewrite += usize::from(matches!(op, Op::Create | Op::Rename | Op::SyncDir));
        } else {
            assert!(epoch > 0);
            assert!(
                state == models[epoch - 1] || state == models[epoch],
                "image {n} (epoch {epoch}, {op:?}, after {after})"
            );
        }
    }
    assert!(
        during_rewrite >= 6,
        "only {during_rewrite} images taken mid-rewrite"
    );
}

/// Applies batches until one of them makes the manifest start a rewrite.
fn apply_until_rewrite_starts(
    m: &mut Manifest,
    probe: &ProbeFs,
    w: &mut Workload,
) -> crate::Result<()> {
    let creates = probe.count(Op::Create);
    for _ in 0..1000 {
        m.apply(&w.batch())?;
        if probe.count(Op::Create) > creates {
            return Ok(());
        }
    }
    panic!("no rewrite started");
}

#[test]
fn crash_before_the_rename_is_dir_synced_opens_to_the_applied_state() {
    let probe = ProbeFs::new(false);
    let fs: Arc<dyn Fs> = Arc::new(probe.clone());
    let mut w = Workload::new(6);
    let (mut m, _) = open(&fs, small_opts()).unwrap();
    // Fail the directory sync so the rename is live but not durable.
    probe.fail_next(Op::SyncDir);
    apply_until_rewrite_starts(&mut m, &probe, &mut w).unwrap();
    assert!(fs.exists(&manifest_path()) && !fs.exists(&dir().join(MANIFEST_TMP_FILE)));
    let img: Arc<dyn Fs> = Arc::new(probe.inner.crash());
    assert_eq!(open(&img, small_opts()).unwrap().1, w.model);
    // The live directory (renamed file in place) opens the same way.
    assert_eq!(open(&fs, small_opts()).unwrap().1, w.model);
    // The manifest cannot know which file survives, so it refuses edits.
    assert!(m.is_poisoned());
    assert!(matches!(m.apply(&w.batch()), Err(Error::Poisoned(_))));
}

#[test]
fn failed_rename_keeps_the_old_manifest_in_use() {
    let probe = ProbeFs::new(false);
    let fs: Arc<dyn Fs> = Arc::new(probe.clone());
    let mut w = Workload::new(7);
    let (mut m, _) = open(&fs, small_opts()).unwrap();
    probe.fail_next(Op::Rename);
    apply_until_rewrite_starts(&mut m, &probe, &mut w).unwrap();
    assert_eq!(m.rewrites(), 0);
    assert!(!m.is_poisoned());
    assert!(!fs.exists(&dir().join(MANIFEST_TMP_FILE)));
    for _ in 0..5 {
        m.apply(&w.batch()).unwrap();
    }
    assert!(m.rewrites() >= 1, "the next apply retries the rewrite");
    let img: Arc<dyn Fs> = Arc::new(probe.inner.crash());
    assert_eq!(open(&img, small_opts()).unwrap().1, w.model);

    // A direct rewrite call reports the failure.
    probe.fail_next(Op::Create);
    assert!(m.rewrite().is_err());
    assert!(!m.is_poisoned());
    m.apply(&w.batch()).unwrap();
    assert_eq!(open(&fs, small_opts()).unwrap().1, w.model);
}

#[test]
fn failed_append_poisons_and_reopen_drops_the_partial_record() {
    for op in [Op::Append, Op::Sync] {
        let probe = ProbeFs::new(false);
        let fs: Arc<dyn Fs> = Arc::new(probe.clone());
        let mut w = Workload::new(8);
        let (mut m, _) = Manifest::open(fs.clone(), dir()).unwrap();
        for _ in 0..5 {
            m.apply(&w.batch()).unwrap();
        }
        let (before, len) = (w.model.clone(), m.file_len());
        probe.fail_next(op);
        let batch = w.batch();
        assert!(matches!(m.apply(&batch), Err(Error::Io(_))), "{op:?}");
        assert!(m.is_poisoned());
        assert_eq!(m.state(), &before);
        assert!(matches!(m.apply(&batch), Err(Error::Poisoned(_))));
        assert!(matches!(m.rewrite(), Err(Error::Poisoned(_))));
        drop(m);
        let (mut m, state) = Manifest::open(fs.clone(), dir()).unwrap();
        match op {
            // Half a record was written: it is the torn tail.
            Op::Append => {
                assert_eq!(state, before);
                assert_eq!(m.file_len(), len);
            }
            // The whole record was written; only the sync "failed".
            _ => assert_eq!(state, w.model),
        }
        m.apply(&[ManifestEdit::NextFileId(1 << 40)]).unwrap();
    }
}

#[test]
fn posix_round_trip_and_torn_tail() {
    let tmp = tempfile::tempdir().unwrap();
    let fs: Arc<dyn Fs> = Arc::new(PosixFs);
    let mut w = Workload::new(9);
    let (mut m, _) = Manifest::open_with(fs.clone(), tmp.path(), small_opts()).unwrap();
    for _ in 0..200 {
        m.apply(&w.batch()).unwrap();
    }
    assert!(m.rewrites() >= 1);
    let len = m.file_len();
    drop(m);
    let path = tmp.path().join(MANIFEST_FILE);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    // A torn append: a record header promising more than follows.
    {
        use std::io::Write;
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap();
        f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, 5, 6]).unwrap();
    }
    let (mut m, state) = Manifest::open_with(fs.clone(), tmp.path(), small_opts()).unwrap();
    assert_eq!(state, w.model);
    assert_eq!(std::fs::metadata(&path).unwrap().len(), len);
    m.apply(&w.batch()).unwrap();
    drop(m);
    assert_eq!(Manifest::open(fs, tmp.path()).unwrap().1, w.model);
}
