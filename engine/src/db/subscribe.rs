//! Change subscriptions: callers receive the writes under the prefixes
//! they watch, after each commit group is applied.
//!
//! Guarantees: a subscription receives, per commit, one [`Commit`] with
//! every write of that commit under its prefixes (keys in order), commits
//! in commit order (timestamp order; in managed mode, the order commits
//! reached the commit thread), each only after it is visible to readers,
//! and nothing else — no value-log GC rewrites, no commits that failed.
//! Every commit that becomes visible after `subscribe` returns is
//! delivered (a few just before may be too): to follow a prefix from a
//! consistent state, subscribe, then read a snapshot, then apply the
//! commits whose version is above the snapshot's read timestamp.
//!
//! Slow subscribers: each subscription has a bounded queue (of commits).
//! The commit thread never waits for a subscriber: if a queue is full, the
//! subscription is cancelled — it keeps what is queued, then reports
//! [`Error::SubscriptionLagged`], so a subscriber can tell a gap from an
//! orderly end. Matching costs the commit thread a prefix test per entry
//! and subscription, plus a copy of each matching value.

use super::coalesce::Batcher;
use super::{Db, DbInner, WriteRequest};
use crate::format::META_DELETE;
use crate::{Error, Result};
use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError};
use parking_lot::RwLock;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

/// Commits queued per subscription by [`Db::subscribe`].
pub const DEFAULT_SUBSCRIPTION_CAPACITY: usize = 1024;
/// How often a blocked `recv` looks whether the database closed.
const CLOSE_POLL: Duration = Duration::from_millis(50);

/// State the optional features keep per open database: change
/// subscribers and the open coalescing batch.
#[derive(Debug, Default)]
pub(crate) struct Extras {
    pub(crate) subscribers: Arc<Subscribers>,
    pub(crate) batcher: Batcher,
}

/// One committed write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    /// The key.
    pub key: Vec<u8>,
    /// The value written (empty for a deletion).
    pub value: Vec<u8>,
    /// The commit timestamp.
    pub version: u64,
    /// The writer's user byte.
    pub user_meta: u8,
    /// Expiry in Unix seconds; 0 = never.
    pub expires_at: u64,
    /// True for a deletion.
    pub deleted: bool,
}

/// The writes of one commit under a subscription's prefixes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    /// The commit timestamp.
    pub version: u64,
    /// The matching writes, in key order (never empty).
    pub changes: Vec<Change>,
}

/// The registry the commit thread publishes to.
#[derive(Debug, Default)]
pub(crate) struct Subscribers {
    list: RwLock<Vec<Sub>>,
    /// `list.len()`, readable without the lock.
    count: AtomicUsize,
    next_id: AtomicU64,
}

#[derive(Debug)]
struct Sub {
    id: u64,
    prefixes: Vec<Vec<u8>>,
    tx: Sender<Commit>,
    lagged: Arc<AtomicBool>,
}

impl Subscribers {
    fn remove(&self, ids: &[u64]) {
        let mut list = self.list.write();
        list.retain(|s| !ids.contains(&s.id));
        self.count.store(list.len(), Ordering::Release);
    }
}

/// A live subscription from [`Db::subscribe`]; dropping it unsubscribes.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    rx: Receiver<Commit>,
    lagged: Arc<AtomicBool>,
    registry: Arc<Subscribers>,
    db: Weak<DbInner>,
}

impl Db {
    /// Subscribes to every write under any of `prefixes` (an empty prefix
    /// matches everything) with a queue of
    /// [`DEFAULT_SUBSCRIPTION_CAPACITY`] commits. See the module docs for
    /// ordering and the slow-subscriber policy.
    pub fn subscribe(&self, prefixes: Vec<Vec<u8>>) -> Result<Subscription> {
        self.subscribe_with_capacity(prefixes, DEFAULT_SUBSCRIPTION_CAPACITY)
    }

    /// [`Db::subscribe`] with a queue of `capacity` commits.
    pub fn subscribe_with_capacity(
        &self,
        prefixes: Vec<Vec<u8>>,
        capacity: usize,
    ) -> Result<Subscription> {
        if prefixes.is_empty() || capacity == 0 {
            return Err(Error::InvalidArgument(
                "a subscription needs at least one prefix and a capacity".into(),
            ));
        }
        let inner = self.inner();
        if inner.is_closing() {
            return Err(Error::Closed);
        }
        let registry = inner.extras.subscribers.clone();
        let (tx, rx) = crossbeam_channel::bounded(capacity);
        let lagged = Arc::new(AtomicBool::new(false));
        let id = registry.next_id.fetch_add(1, Ordering::Relaxed);
        {
            let mut list = registry.list.write();
            list.push(Sub {
                id,
                prefixes,
                tx,
                lagged: lagged.clone(),
            });
            registry.count.store(list.len(), Ordering::Release);
        }
        Ok(Subscription {
            id,
            rx,
            lagged,
            registry,
            db: Arc::downgrade(inner),
        })
    }
}

impl Subscription {
    fn ended(&self) -> Error {
        if self.lagged.load(Ordering::Acquire) {
            Error::SubscriptionLagged
        } else {
            Error::Closed
        }
    }

    fn db_gone(&self) -> bool {
        self.db.upgrade().is_none_or(|db| db.is_closing())
    }

    /// Waits for the next commit. [`Error::SubscriptionLagged`] once the
    /// queue overflowed (after what was queued), [`Error::Closed`] once
    /// the database closed and the queue is empty.
    pub fn recv(&self) -> Result<Commit> {
        loop {
            if let Some(c) = self.recv_timeout(CLOSE_POLL)? {
                return Ok(c);
            }
        }
    }

    /// Like [`Subscription::recv`], giving up with `Ok(None)` after
    /// `timeout`.
    pub fn recv_timeout(&self, timeout: Duration) -> Result<Option<Commit>> {
        let deadline = Instant::now() + timeout;
        loop {
            let wait = deadline
                .saturating_duration_since(Instant::now())
                .min(CLOSE_POLL);
            match self.rx.recv_timeout(wait) {
                Ok(c) => return Ok(Some(c)),
                Err(RecvTimeoutError::Disconnected) => return Err(self.ended()),
                Err(RecvTimeoutError::Timeout) => {
                    if self.db_gone() {
                        // The commit thread has stopped; take what it sent last.
                        return match self.rx.try_recv() {
                            Ok(c) => Ok(Some(c)),
                            Err(_) => Err(self.ended()),
                        };
                    }
                    if Instant::now() >= deadline {
                        return Ok(None);
                    }
                }
            }
        }
    }

    /// The next queued commit, if any, without waiting.
    pub fn try_recv(&self) -> Result<Option<Commit>> {
        match self.rx.try_recv() {
            Ok(c) => Ok(Some(c)),
            Err(crossbeam_channel::TryRecvError::Empty) if !self.db_gone() => Ok(None),
            Err(_) => Err(self.ended()),
        }
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.registry.remove(&[self.id]);
    }
}

impl DbInner {
    /// Called by the commit thread after `group` is applied and visible.
    pub(crate) fn publish(&self, group: &[WriteRequest]) {
        let registry = &self.extras.subscribers;
        if registry.count.load(Ordering::Acquire) == 0 {
            return;
        }
        let mut cancelled = Vec::new();
        {
            let list = registry.list.read();
            for sub in list.iter() {
                let commits = group.iter().filter(|r| !r.rewrite && !r.entries.is_empty());
                for req in commits {
                    let changes: Vec<Change> = req
                        .entries
                        .iter()
                        .filter(|e| sub.prefixes.iter().any(|p| e.key.starts_with(p)))
                        .map(|e| Change {
                            key: e.key.clone(),
                            value: e.value.clone(),
                            version: e.version,
                            user_meta: e.user_meta,
                            expires_at: e.expires_at,
                            deleted: e.meta & META_DELETE != 0,
                        })
                        .collect();
                    if changes.is_empty() {
                        continue;
                    }
                    let commit = Commit {
                        version: req.commit_ts,
                        changes,
                    };
                    match sub.tx.try_send(commit) {
                        Ok(()) => {}
                        Err(TrySendError::Full(_)) => {
                            // Cancel before anything later can be sent, so
                            // the subscriber never sees a gap unannounced.
                            sub.lagged.store(true, Ordering::Release);
                            cancelled.push(sub.id);
                            break;
                        }
                        Err(TrySendError::Disconnected(_)) => {
                            cancelled.push(sub.id);
                            break;
                        }
                    }
                }
            }
        }
        if !cancelled.is_empty() {
            registry.remove(&cancelled);
        }
    }
}
