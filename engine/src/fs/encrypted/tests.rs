use super::*;
use crate::fs::MemFs;
use crate::options::EncryptionKey;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::PathBuf;

fn dir() -> PathBuf {
    PathBuf::from("/db")
}

fn setup() -> (MemFs, Arc<dyn Fs>) {
    let raw = MemFs::new();
    raw.create_dir_all(&dir()).unwrap();
    let opts = Options {
        encryption_key: Some(EncryptionKey([0x5a; 32])),
        ..Options::new(dir())
    };
    let fs = wrap(Arc::new(raw.clone()), &opts).unwrap();
    (raw, fs)
}

fn raw_bytes(raw: &MemFs, path: &Path) -> Vec<u8> {
    (*raw.read_all(path).unwrap()).as_ref().to_vec()
}

fn set_raw(raw: &MemFs, path: &Path, bytes: &[u8]) {
    let f = raw.create(path).unwrap();
    f.append(bytes).unwrap();
}

fn unwrap_engine_error(e: io::Error) -> Error {
    Error::from(e)
}

/// Appends of mixed sizes, checked against a plain copy through every read
/// path: random positional reads, `read_all`, and a reopened handle.
#[test]
fn reads_match_a_model() {
    let (_raw, fs) = setup();
    let path = dir().join("000001.vlog");
    let f = fs.create(&path).unwrap();
    let mut rng = StdRng::seed_from_u64(7);
    let mut model = Vec::new();
    for n in 0..60 {
        let len = match n % 4 {
            0 => rng.gen_range(1..50),
            1 => rng.gen_range(50..5000),
            2 => rng.gen_range(FRAME_MAX_BYTES - 10..FRAME_MAX_BYTES + 10),
            _ => rng.gen_range(1..3 * FRAME_MAX_BYTES + 100),
        };
        let data: Vec<u8> = (0..len).map(|_| rng.gen()).collect();
        f.append(&data).unwrap();
        model.extend_from_slice(&data);
        assert_eq!(f.len().unwrap(), model.len() as u64);
    }
    f.sync().unwrap();
    let check = |f: &dyn FsFile, rng: &mut StdRng| {
        for _ in 0..500 {
            let off = rng.gen_range(0..model.len());
            let len = rng.gen_range(0..(model.len() - off).min(40_000));
            let mut buf = vec![0u8; len];
            f.read_exact_at(&mut buf, off as u64).unwrap();
            assert_eq!(buf, model[off..off + len]);
        }
        let mut all = vec![0u8; model.len()];
        f.read_exact_at(&mut all, 0).unwrap();
        assert_eq!(all, model);
        let mut one = [0u8; 1];
        let err = f.read_exact_at(&mut one, model.len() as u64).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::UnexpectedEof);
    };
    check(&*f, &mut rng);
    assert_eq!((*fs.read_all(&path).unwrap()).as_ref(), &model[..]);
    let reopened = fs.open(&path).unwrap();
    assert_eq!(reopened.len().unwrap(), model.len() as u64);
    check(&*reopened, &mut rng);
}

#[test]
fn plaintext_never_reaches_the_inner_file() {
    let (raw, fs) = setup();
    let path = dir().join("MANIFEST");
    let f = fs.create(&path).unwrap();
    let secret = b"top-secret-value-0123456789".repeat(100);
    f.append(&secret).unwrap();
    let bytes = raw_bytes(&raw, &path);
    assert!(bytes.starts_with(&FILE_MAGIC));
    assert!(!bytes
        .windows(16)
        .any(|w| secret.windows(16).any(|s| s == w)));
    // Files and the registry are hidden or encrypted; the listing is plain.
    assert_eq!(fs.list(&dir()).unwrap(), vec!["MANIFEST".to_string()]);
    assert!(raw.exists(&dir().join(REGISTRY_NAME)));
}

/// Cutting the inner file anywhere inside the last append reads as if the
/// append had never happened; the next append replaces the torn bytes.
#[test]
fn torn_last_append_disappears() {
    let (raw, fs) = setup();
    let path = dir().join("000001.vlog");
    let f = fs.create(&path).unwrap();
    f.append(b"first").unwrap();
    f.append(&vec![7u8; 2 * FRAME_MAX_BYTES + 5]).unwrap();
    drop(f);
    let whole = raw_bytes(&raw, &path);
    let first_end = FILE_HEADER_LEN as usize + 5 + FRAME_OVERHEAD as usize;
    for cut in [
        whole.len() - 1,
        whole.len() - 17,
        first_end + 30,
        first_end + 1,
    ] {
        set_raw(&raw, &path, &whole[..cut]);
        let f = fs.open(&path).unwrap();
        assert_eq!(f.len().unwrap(), 5, "cut at {cut}");
        assert_eq!((*fs.read_all(&path).unwrap()).as_ref(), b"first");
        f.append(b"second").unwrap();
        let mut buf = [0u8; 11];
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"firstsecond");
        drop(f);
        let f = fs.open(&path).unwrap();
        assert_eq!(f.len().unwrap(), 11);
        assert_eq!(
            raw_bytes(&raw, &path).len(),
            first_end + 6 + FRAME_OVERHEAD as usize
        );
    }
}

#[test]
fn a_creation_cut_short_reads_empty() {
    let (raw, fs) = setup();
    let path = dir().join("000002.vlog");
    for keep in [0, 3, 39] {
        let f = fs.create(&path).unwrap();
        f.append(b"data").unwrap();
        drop(f);
        let bytes = raw_bytes(&raw, &path);
        set_raw(&raw, &path, &bytes[..keep]);
        let f = fs.open(&path).unwrap();
        assert_eq!(f.len().unwrap(), 0);
        assert!((*fs.read_all(&path).unwrap()).as_ref().is_empty());
        f.truncate(0).unwrap();
        f.append(b"again").unwrap();
        drop(f);
        let f = fs.open(&path).unwrap();
        let mut buf = [0u8; 5];
        f.read_exact_at(&mut buf, 0).unwrap();
        assert_eq!(&buf, b"again");
    }
}

#[test]
fn truncate_only_at_append_boundaries() {
    let (_raw, fs) = setup();
    let f = fs.create(&dir().join("MANIFEST")).unwrap();
    f.append(b"aaaa").unwrap();
    f.append(&vec![b'b'; FRAME_MAX_BYTES + 1]).unwrap();
    f.append(b"cc").unwrap();
    let end_b = 4 + FRAME_MAX_BYTES as u64 + 1;
    for bad in [1, 5, 4 + FRAME_MAX_BYTES as u64, end_b + 1, end_b + 3] {
        assert!(f.truncate(bad).is_err(), "{bad}");
    }
    let mut buf = [0u8; 2];
    f.read_exact_at(&mut buf, end_b).unwrap(); // fills the frame cache
    f.truncate(end_b).unwrap();
    f.append(b"dd").unwrap();
    f.read_exact_at(&mut buf, end_b).unwrap();
    assert_eq!(&buf, b"dd", "the cache was dropped with the cut frame");
    f.truncate(4).unwrap();
    assert_eq!(f.len().unwrap(), 4);
    f.truncate(0).unwrap();
    assert_eq!(f.len().unwrap(), 0);
    f.append(b"z").unwrap();
    let mut one = [0u8; 1];
    f.read_exact_at(&mut one, 0).unwrap();
    assert_eq!(&one, b"z");
}

/// Any flipped byte before the last append is an error on read, never
/// different data.
#[test]
fn flipped_bytes_are_errors() {
    let (raw, fs) = setup();
    let path = dir().join("000003.sst");
    let f = fs.create(&path).unwrap();
    let a: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
    f.append(&a).unwrap();
    f.append(b"last append").unwrap();
    drop(f);
    let good = raw_bytes(&raw, &path);
    let last_start = good.len() - 11 - FRAME_OVERHEAD as usize;
    for i in (0..last_start).step_by(7) {
        let mut bad = good.clone();
        bad[i] ^= 0x04;
        set_raw(&raw, &path, &bad);
        let mut all = vec![0u8; a.len() + 11];
        let outcome = fs.open(&path).and_then(|f| f.read_exact_at(&mut all, 0));
        let err = unwrap_engine_error(outcome.expect_err("open or read must fail"));
        assert!(
            matches!(err, Error::Encryption(_)) || err.is_corruption(),
            "byte {i}: {err}"
        );
        assert!(fs.read_all(&path).is_err(), "byte {i}");
    }
}

#[test]
fn frames_cannot_be_reordered_or_moved_between_files() {
    let (raw, fs) = setup();
    let (p1, p2) = (dir().join("1.sst"), dir().join("2.sst"));
    for p in [&p1, &p2] {
        let f = fs.create(p).unwrap();
        f.append(b"0123456789").unwrap();
        f.append(b"abcdefghij").unwrap();
    }
    let (b1, b2) = (raw_bytes(&raw, &p1), raw_bytes(&raw, &p2));
    let h = FILE_HEADER_LEN as usize;
    let fl = 10 + FRAME_OVERHEAD as usize;
    // Swap the two frames of file 1.
    let mut swapped = b1[..h].to_vec();
    swapped.extend_from_slice(&b1[h + fl..]);
    swapped.extend_from_slice(&b1[h..h + fl]);
    set_raw(&raw, &p1, &swapped);
    assert!(fs.read_all(&p1).is_err());
    // File 2's header (its key) over file 1's frames.
    let mut mixed = b2[..h].to_vec();
    mixed.extend_from_slice(&b1[h..]);
    set_raw(&raw, &p1, &mixed);
    assert!(fs.read_all(&p1).is_err());
}

#[test]
fn plain_files_are_refused() {
    let (raw, fs) = setup();
    let path = dir().join("000009.vlog");
    set_raw(
        &raw,
        &path,
        b"SETTVLOG plain value log bytes, not encrypted at all",
    );
    let err = unwrap_engine_error(fs.open(&path).unwrap_err());
    assert!(
        matches!(&err, Error::Encryption(m) if m.contains("not encrypted")),
        "{err}"
    );
    let err = unwrap_engine_error(fs.read_all(&path).err().expect("plain file refused"));
    assert!(matches!(&err, Error::Encryption(_)), "{err}");
    set_raw(&raw, &path, b"SETTVLOG");
    assert!(fs.open(&path).is_err());
}

/// Readers on several threads while one thread appends.
#[test]
fn concurrent_reads_during_appends() {
    let (_raw, fs) = setup();
    let f = fs.create(&dir().join("000001.vlog")).unwrap();
    let record = |i: u32| -> Vec<u8> {
        let len = 100 + (i as usize * 37) % 3000;
        (0..len).map(|j| (i as usize + j) as u8).collect()
    };
    let done = std::sync::atomic::AtomicBool::new(false);
    let offsets = Mutex::new(Vec::<(u64, u32)>::new());
    std::thread::scope(|s| {
        for _ in 0..3 {
            s.spawn(|| {
                let mut rng = StdRng::seed_from_u64(1);
                while !done.load(std::sync::atomic::Ordering::Acquire) {
                    let Some((off, i)) = ({
                        let o = offsets.lock();
                        (!o.is_empty()).then(|| o[rng.gen_range(0..o.len())])
                    }) else {
                        continue;
                    };
                    let want = record(i);
                    let mut buf = vec![0u8; want.len()];
                    f.read_exact_at(&mut buf, off).unwrap();
                    assert_eq!(buf, want);
                }
            });
        }
        for i in 0..2000u32 {
            let off = f.len().unwrap();
            f.append(&record(i)).unwrap();
            offsets.lock().push((off, i));
        }
        done.store(true, std::sync::atomic::Ordering::Release);
    });
}
