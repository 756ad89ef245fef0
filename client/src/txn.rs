//! Interactive serializable transactions over `sett.v1` (see
//! `proto/proto/sett/v1/sett.proto`).
//!
//! [`Transactions::update`] runs a closure in a transaction and commits
//! it, running the closure again from scratch when the commit loses a
//! conflict (Badger's `Update` pattern); [`Transactions::view`] runs a
//! read-only one. Inside the closure a [`Txn`] reads at its read revision,
//! recording what it read, and buffers writes; a read sees the
//! transaction's own earlier writes.

use crate::auth::Chan;
use bytes::Bytes;
use prost::Message;
use sett_proto::mvccpb::KeyValue;
use sett_proto::sett::v1::sett_client::SettClient;
use sett_proto::sett::v1::write::Op;
use sett_proto::sett::v1::{
    BeginRequest, CommitRequest, Delete, ErrorDetail, ErrorReason, GetRequest, KeyRange, Put,
    RangeRequest, RollbackRequest, TxnHandle, Write,
};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tonic::transport::Channel;

/// Why a transaction failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TxnError {
    /// The commit lost a conflict (or its read revision was compacted)
    /// more times than allowed.
    #[error("transaction aborted after {attempts} attempts: {last}")]
    Conflict {
        /// Attempts made.
        attempts: usize,
        /// The last abort's status.
        last: tonic::Status,
    },
    /// The server refused a call (bad input, no leader, ...).
    #[error("{0}")]
    Status(#[from] tonic::Status),
    /// The closure failed; the transaction was rolled back.
    #[error("{0}")]
    Aborted(String),
}

/// What an abort's status says, if it is a retryable conflict.
fn retryable(status: &tonic::Status) -> bool {
    if status.code() != tonic::Code::Aborted {
        return false;
    }
    let reason = ErrorDetail::decode(status.details()).map_or(0, |d| d.reason);
    reason == ErrorReason::Conflict as i32 || reason == ErrorReason::Compacted as i32
}

#[derive(Debug, Default)]
struct State {
    reads: Vec<KeyRange>,
    /// Buffered writes by key: `Some(value)` = put, `None` = delete.
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
    /// Range deletes, in order.
    range_deletes: Vec<(Vec<u8>, Vec<u8>)>,
}

/// One attempt of a transaction: reads at its read revision, buffered
/// writes. Cheap to clone (clones share the transaction).
#[derive(Debug, Clone)]
pub struct Txn {
    client: SettClient<Chan>,
    handle: TxnHandle,
    state: Arc<Mutex<State>>,
}

impl Txn {
    /// The revision every read of this transaction observes.
    pub fn read_revision(&self) -> i64 {
        self.handle.read_revision
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The value of `key`: this transaction's own write if it made one,
    /// else the value at the read revision (recorded in the read set).
    pub async fn get(&self, key: impl Into<Vec<u8>>) -> Result<Option<Bytes>, tonic::Status> {
        let key = key.into();
        {
            let st = self.state();
            if let Some(w) = st.writes.get(&key) {
                return Ok(w.clone().map(Bytes::from));
            }
            if st.range_deletes.iter().any(|(k, e)| in_range(&key, k, e)) {
                return Ok(None);
            }
        }
        let resp = self
            .client
            .clone()
            .get(GetRequest {
                txn: Some(self.handle),
                key: key.clone().into(),
            })
            .await?
            .into_inner();
        self.state().reads.push(KeyRange {
            key: key.into(),
            range_end: Bytes::new(),
        });
        Ok(resp.kv.map(|kv| kv.value))
    }

    /// Keys in `[key, range_end)` at the read revision (etcd's range
    /// conventions), at most `limit` (0 = all); what the answer covers is
    /// recorded in the read set. Own buffered writes are not merged in.
    pub async fn range(
        &self,
        key: impl Into<Vec<u8>>,
        range_end: impl Into<Vec<u8>>,
        limit: i64,
    ) -> Result<Vec<KeyValue>, tonic::Status> {
        let resp = self
            .client
            .clone()
            .range(RangeRequest {
                txn: Some(self.handle),
                key: key.into().into(),
                range_end: range_end.into().into(),
                limit,
                ..RangeRequest::default()
            })
            .await?
            .into_inner();
        if let Some(covered) = resp.covered {
            self.state().reads.push(covered);
        }
        Ok(resp.kvs)
    }

    /// Buffers a put of `key`.
    pub fn put(&self, key: impl Into<Vec<u8>>, value: impl Into<Vec<u8>>) {
        self.state().writes.insert(key.into(), Some(value.into()));
    }

    /// Buffers a delete of `key`.
    pub fn delete(&self, key: impl Into<Vec<u8>>) {
        self.state().writes.insert(key.into(), None);
    }

    /// Buffers a delete of every key in `[key, range_end)` (etcd's range
    /// conventions), replacing buffered writes of keys in it. A put of a
    /// key in the range after this is refused at commit (an etcd Txn may
    /// not write one key twice).
    pub fn delete_range(&self, key: impl Into<Vec<u8>>, range_end: impl Into<Vec<u8>>) {
        let (key, end) = (key.into(), range_end.into());
        let mut st = self.state();
        st.writes.retain(|k, _| !in_range(k, &key, &end));
        st.range_deletes.push((key, end));
    }

    /// The commit request: the read set and the writes.
    fn commit_request(&self) -> CommitRequest {
        let st = self.state();
        let mut writes: Vec<Write> = st
            .writes
            .iter()
            .map(|(k, v)| Write {
                op: Some(match v {
                    Some(v) => Op::Put(Put {
                        key: k.clone().into(),
                        value: v.clone().into(),
                        lease: 0,
                    }),
                    None => Op::Delete(Delete {
                        key: k.clone().into(),
                        range_end: Bytes::new(),
                    }),
                }),
            })
            .collect();
        writes.extend(st.range_deletes.iter().map(|(k, e)| Write {
            op: Some(Op::Delete(Delete {
                key: k.clone().into(),
                range_end: e.clone().into(),
            })),
        }));
        CommitRequest {
            txn: Some(self.handle),
            reads: st.reads.clone(),
            writes,
        }
    }
}

/// Whether `k` is in the range `key` / `end` (etcd's conventions: empty
/// `end` = `key` only, `"\0"` = every key from `key` on).
fn in_range(k: &[u8], key: &[u8], end: &[u8]) -> bool {
    match end {
        [] => k == key,
        [0] => k >= key,
        _ => k >= key && k < end,
    }
}

/// Runs transactions against one `sett.v1` endpoint (or a balanced
/// channel over several).
#[derive(Debug, Clone)]
pub struct Transactions {
    client: SettClient<Chan>,
    max_attempts: usize,
    backoff: Duration,
}

/// Attempts [`Transactions::update`] makes by default.
pub const DEFAULT_MAX_ATTEMPTS: usize = 100;
/// First pause between two attempts; doubles up to 64 times this.
const BACKOFF_BASE: Duration = Duration::from_millis(1);

impl Transactions {
    /// Transactions over `channel` (calls carry no token).
    pub fn new(channel: Channel) -> Transactions {
        Transactions::over(crate::TokenInterceptor::default().wrap(channel))
    }

    /// Transactions over `chan`, whose calls carry its token.
    pub(crate) fn over(chan: Chan) -> Transactions {
        Transactions {
            client: SettClient::new(chan),
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            backoff: BACKOFF_BASE,
        }
    }

    /// Sets how many attempts [`Transactions::update`] makes.
    pub fn with_max_attempts(mut self, n: usize) -> Transactions {
        self.max_attempts = n.max(1);
        self
    }

    /// Starts a transaction (linearizable read revision).
    pub async fn begin(&self) -> Result<Txn, tonic::Status> {
        let resp = self
            .client
            .clone()
            .begin(BeginRequest::default())
            .await?
            .into_inner();
        let handle = resp
            .txn
            .ok_or_else(|| tonic::Status::internal("Begin answered no transaction"))?;
        Ok(Txn {
            client: self.client.clone(),
            handle,
            state: Arc::default(),
        })
    }

    /// Commits `txn`; the commit revision (0 if it wrote nothing).
    pub async fn commit(&self, txn: &Txn) -> Result<i64, tonic::Status> {
        let resp = self
            .client
            .clone()
            .commit(txn.commit_request())
            .await?
            .into_inner();
        Ok(resp.commit_revision)
    }

    /// Runs `f` in a transaction and commits what it wrote; on a conflict
    /// runs `f` again in a new transaction, up to the attempt limit, with a
    /// growing pause. An error from `f` rolls back and is returned.
    pub async fn update<T, F, Fut>(&self, mut f: F) -> Result<T, TxnError>
    where
        F: FnMut(Txn) -> Fut,
        Fut: Future<Output = Result<T, TxnError>>,
    {
        let mut pause = self.backoff;
        let mut last = None;
        for attempt in 0..self.max_attempts {
            if attempt > 0 {
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(self.backoff * 64);
            }
            let txn = self.begin().await?;
            let out = match f(txn.clone()).await {
                Ok(out) => out,
                Err(e) => {
                    self.rollback(&txn).await;
                    return Err(e);
                }
            };
            match self.commit(&txn).await {
                Ok(_) => return Ok(out),
                Err(s) if retryable(&s) => last = Some(s),
                Err(s) => return Err(s.into()),
            }
        }
        Err(TxnError::Conflict {
            attempts: self.max_attempts,
            last: last.unwrap_or_else(|| tonic::Status::aborted("no attempt made")),
        })
    }

    /// Runs `f` in a read-only transaction (nothing is committed).
    pub async fn view<T, F, Fut>(&self, f: F) -> Result<T, TxnError>
    where
        F: FnOnce(Txn) -> Fut,
        Fut: Future<Output = Result<T, TxnError>>,
    {
        let txn = self.begin().await?;
        let out = f(txn.clone()).await;
        self.rollback(&txn).await;
        out
    }

    async fn rollback(&self, txn: &Txn) {
        // Nothing is held on the server; this only tells it.
        let _ = self
            .client
            .clone()
            .rollback(RollbackRequest {
                txn: Some(txn.handle),
            })
            .await;
    }
}
