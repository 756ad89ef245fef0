//! Backups: a hot, consistent snapshot of the database written to any
//! `std::io::Write` as a versioned, checksummed stream of frames, and the
//! restore that rebuilds a database from a full backup and the chain of
//! incremental backups taken after it. The byte layout is documented in
//! `docs/engine-format.md` ("Backup format").

mod fingerprint;
mod format;
mod read;
mod write;

pub use read::RestoreSummary;
// For `crate::fuzzing` (the stream decoder without a database behind it).
pub(crate) use fingerprint::Fingerprint;
pub(crate) use format::{encode_frame, Header, Trailer};
pub(crate) use read::FrameReader;
pub use write::{BackupOptions, BackupSummary};
