//! Sequences: unique, increasing `u64`s handed out from leases.
//!
//! The key holds `be64(end of the newest lease)`. Taking a lease is a
//! serializable transaction that reads the key and writes `end +
//! bandwidth`, followed by a value-log sync, so a lease is durable before
//! any of its numbers is handed out; after a crash or reopen, leasing
//! starts above every number ever handed out. Unused numbers of a lease
//! are skipped unless [`Sequence::release`] gives them back.
//!
//! Invariant: a number is handed out at most once per key, across all
//! handles, threads and processes, as long as nothing else writes the key
//! ([`crate::Db::drop_all`] and [`crate::Db::drop_prefix`] do — after
//! those, numbers may repeat).
//!
//! Thread-safety: a `Sequence` is `Send + Sync`; `next` takes a short lock
//! and, once per `bandwidth` numbers, a commit and an fsync.

use crate::db::Db;
use crate::{Error, Result};
use parking_lot::Mutex;

/// A source of unique numbers; see the module docs. Get one with
/// [`Db::get_sequence`].
#[derive(Debug)]
pub struct Sequence {
    db: Db,
    key: Vec<u8>,
    bandwidth: u64,
    lease: Mutex<Lease>,
}

#[derive(Debug, Clone, Copy)]
struct Lease {
    /// The next number to hand out.
    next: u64,
    /// One past the last number of the lease.
    end: u64,
}

fn decode(raw: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = raw.try_into().map_err(|_| {
        Error::InvalidArgument(format!(
            "the key holds {} bytes, not a sequence (8)",
            raw.len()
        ))
    })?;
    Ok(u64::from_be_bytes(bytes))
}

impl Db {
    /// A sequence stored under `key` that leases `bandwidth` numbers per
    /// durable update. The first lease is taken here. Several handles may
    /// share one key (each leases its own ranges).
    pub fn get_sequence(&self, key: impl Into<Vec<u8>>, bandwidth: u64) -> Result<Sequence> {
        let key = key.into();
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if bandwidth == 0 {
            return Err(Error::InvalidArgument(
                "sequence bandwidth must be at least 1".into(),
            ));
        }
        let seq = Sequence {
            db: self.clone(),
            key,
            bandwidth,
            lease: Mutex::new(Lease { next: 0, end: 0 }),
        };
        *seq.lease.lock() = seq.take_lease()?;
        Ok(seq)
    }
}

impl Sequence {
    /// Leases the next `bandwidth` numbers and makes the lease durable.
    fn take_lease(&self) -> Result<Lease> {
        let (start, end) = self.db.update_retrying(|txn| {
            let start = match txn.get(&self.key)? {
                Some(item) => decode(&item.value()?)?,
                None => 0,
            };
            let end = start
                .checked_add(self.bandwidth)
                .ok_or_else(|| Error::InvalidArgument("sequence exhausted".into()))?;
            txn.set(self.key.clone(), end.to_be_bytes().to_vec())?;
            Ok((start, end))
        })?;
        // The commit is applied but may not be on disk yet; a number from
        // a lease lost in a crash could be handed out again.
        if !self.db.inner().opts.sync_writes {
            self.db.inner().vlog.sync()?;
        }
        assert!(start < end);
        Ok(Lease { next: start, end })
    }

    /// The next number: larger than every number this handle gave before,
    /// and never given by any handle of this key before.
    #[allow(clippy::should_implement_trait)] // fallible, and not an iterator
    pub fn next(&self) -> Result<u64> {
        let mut lease = self.lease.lock();
        if lease.next >= lease.end {
            let fresh = self.take_lease()?;
            if fresh.next < lease.end {
                // Only a write of the key from outside (drop_all, a plain
                // set) can do this; refuse rather than repeat numbers.
                return Err(Error::InvalidArgument(
                    "the sequence key was rewritten by someone else; numbers could repeat".into(),
                ));
            }
            *lease = fresh;
        }
        let n = lease.next;
        lease.next += 1;
        Ok(n)
    }

    /// Gives the unused rest of the current lease back, if no other handle
    /// has leased since (otherwise those numbers are skipped). The next
    /// call to [`Sequence::next`] takes a new lease. Also done on drop.
    pub fn release(&self) -> Result<()> {
        let mut lease = self.lease.lock();
        if lease.next >= lease.end {
            return Ok(());
        }
        let Lease { next, end } = *lease;
        self.db.update_retrying(|txn| {
            let current = match txn.get(&self.key)? {
                Some(item) => decode(&item.value()?)?,
                None => 0,
            };
            if current == end {
                txn.set(self.key.clone(), next.to_be_bytes().to_vec())?;
            }
            Ok(())
        })?;
        lease.end = next;
        Ok(())
    }
}

impl Drop for Sequence {
    fn drop(&mut self) {
        if let Err(e) = self.release() {
            tracing::debug!(error = %e, "releasing a sequence on drop failed; its rest is skipped");
        }
    }
}
