//! One operation of each workload, and the watch-latency run.

use super::stats::{self, Latency, Report};
use super::{BenchArgs, Workload};
use anyhow::{bail, Context, Result};
use bytes::Bytes;
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use sett_client::Transactions;
use sett_proto::etcdserverpb::kv_client::KvClient;
use sett_proto::etcdserverpb::request_op::Request;
use sett_proto::etcdserverpb::watch_client::WatchClient;
use sett_proto::etcdserverpb::watch_request::RequestUnion;
use sett_proto::etcdserverpb::{
    PutRequest, RangeRequest, RequestOp, TxnRequest, WatchCreateRequest, WatchRequest,
};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tonic::transport::Channel;

/// `len` random bytes (the value every put writes).
pub fn random_value(len: usize) -> Bytes {
    let mut rng = SmallRng::seed_from_u64(0x5e77);
    (0..len).map(|_| rng.gen::<u8>()).collect()
}

/// What a successful operation reports besides its latency.
pub struct Outcome {
    pub retries: u64,
}

/// One client's operation generator.
pub struct Op {
    workload: Workload,
    args: Arc<BenchArgs>,
    kv: KvClient<Channel>,
    txns: Transactions,
    rng: SmallRng,
}

impl Op {
    pub fn new(workload: Workload, args: &Arc<BenchArgs>, conn: Channel, client: usize) -> Op {
        Op {
            workload,
            args: args.clone(),
            kv: KvClient::new(conn.clone()).max_decoding_message_size(usize::MAX),
            txns: Transactions::new(conn).with_max_attempts(1000),
            rng: SmallRng::seed_from_u64(0xbe7c_0000 + client as u64),
        }
    }

    /// The key operation `n` touches.
    fn key(&mut self, n: u64) -> Bytes {
        let k = if self.args.sequential_keys {
            n % self.args.key_space
        } else {
            self.rng.gen_range(0..self.args.key_space)
        };
        self.args.key(k)
    }

    fn serializable(&self) -> bool {
        self.args.consistency == "s"
    }

    pub async fn put(&mut self, key: Bytes, value: Bytes) -> Result<()> {
        self.kv
            .put(PutRequest {
                key,
                value,
                ..PutRequest::default()
            })
            .await?;
        Ok(())
    }

    /// Runs operation number `n`.
    pub async fn run(&mut self, n: u64, value: Bytes) -> Result<Outcome> {
        let mut retries = 0;
        match self.workload {
            Workload::Put => {
                let key = self.key(n);
                self.put(key, value).await?;
            }
            Workload::Range => {
                let key = self.key(n);
                let req = if self.args.limit > 0 {
                    RangeRequest {
                        key,
                        range_end: self.args.key(self.args.key_space),
                        limit: self.args.limit,
                        serializable: self.serializable(),
                        ..RangeRequest::default()
                    }
                } else {
                    RangeRequest {
                        key,
                        serializable: self.serializable(),
                        ..RangeRequest::default()
                    }
                };
                self.kv.range(req).await?;
            }
            Workload::TxnPut => {
                let mut success = Vec::with_capacity(self.args.txn_ops);
                for _ in 0..self.args.txn_ops {
                    let key = self.key(n);
                    success.push(RequestOp {
                        request: Some(Request::RequestPut(PutRequest {
                            key,
                            value: value.clone(),
                            ..PutRequest::default()
                        })),
                    });
                }
                // A txn may not put one key twice; with several ops per
                // txn and random keys a repeat is possible, so keep one.
                success.sort_by(|a, b| op_key(a).cmp(op_key(b)));
                success.dedup_by(|a, b| op_key(a) == op_key(b));
                self.kv
                    .txn(TxnRequest {
                        success,
                        ..TxnRequest::default()
                    })
                    .await?;
            }
            Workload::TxnMixed => {
                let key = self.key(n);
                let read_share = self.args.rw_ratio / (self.args.rw_ratio + 1.0);
                let request = if self.rng.gen_bool(read_share) {
                    Request::RequestRange(RangeRequest {
                        key,
                        serializable: self.serializable(),
                        ..RangeRequest::default()
                    })
                } else {
                    Request::RequestPut(PutRequest {
                        key,
                        value: value.clone(),
                        ..PutRequest::default()
                    })
                };
                self.kv
                    .txn(TxnRequest {
                        success: vec![RequestOp {
                            request: Some(request),
                        }],
                        ..TxnRequest::default()
                    })
                    .await?;
            }
            Workload::NativeTxn => {
                let (read, write) = (self.key(n), self.key(n));
                let attempts = AtomicU64::new(0);
                self.txns
                    .update(|tx| {
                        attempts.fetch_add(1, Ordering::Relaxed);
                        let (read, write, value) = (read.clone(), write.clone(), value.clone());
                        async move {
                            tx.get(read).await?;
                            tx.put(write, value);
                            Ok(())
                        }
                    })
                    .await?;
                retries = attempts.load(Ordering::Relaxed).saturating_sub(1);
            }
            Workload::WatchLatency => bail!("watch-latency is not a request workload"),
        }
        Ok(Outcome { retries })
    }
}

fn op_key(op: &RequestOp) -> &[u8] {
    match &op.request {
        Some(Request::RequestPut(p)) => &p.key,
        _ => &[],
    }
}

/// The key every watch-latency watcher watches and every put writes.
const WATCH_KEY: &[u8] = b"bench-watch-latency";

/// Opens `streams` watch streams with `watchers_per_stream` watchers each
/// on one key, then puts it `total` times at `rate` per second (default
/// 100); each event's latency is the time from the start of its put to
/// its arrival. Events are matched to puts by the sequence number at the
/// start of the value.
pub async fn watch_latency(
    args: &Arc<BenchArgs>,
    conns: &[Channel],
    timeout: Duration,
) -> Result<Report> {
    let watchers = args.streams * args.watchers_per_stream;
    let expected = args.total * watchers as u64;
    let sent: Arc<Vec<Mutex<Option<Instant>>>> =
        Arc::new((0..args.total).map(|_| Mutex::new(None)).collect());
    let delivered = Arc::new(AtomicU64::new(0));
    let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<Result<()>>(args.streams);
    let mut tasks = Vec::new();
    for s in 0..args.streams {
        let (args, sent, delivered, ready_tx) = (
            args.clone(),
            sent.clone(),
            delivered.clone(),
            ready_tx.clone(),
        );
        let mut client = WatchClient::new(conns[s % conns.len()].clone());
        tasks.push(tokio::spawn(async move {
            let mut hist = stats::histogram();
            let (req_tx, req_rx) = tokio::sync::mpsc::channel(args.watchers_per_stream + 1);
            for _ in 0..args.watchers_per_stream {
                let create = WatchRequest {
                    request_union: Some(RequestUnion::CreateRequest(WatchCreateRequest {
                        key: Bytes::from_static(WATCH_KEY),
                        ..WatchCreateRequest::default()
                    })),
                };
                req_tx.send(create).await.expect("receiver is alive");
            }
            let mut stream = match client
                .watch(tokio_stream::wrappers::ReceiverStream::new(req_rx))
                .await
            {
                Ok(r) => r.into_inner(),
                Err(e) => {
                    let _ = ready_tx.send(Err(e.into())).await;
                    return hist;
                }
            };
            let mut created = 0;
            let mut mine = 0u64;
            let want = args.total * args.watchers_per_stream as u64;
            while mine < want {
                let resp = match stream.message().await {
                    Ok(Some(r)) => r,
                    Ok(None) | Err(_) => break,
                };
                if resp.created {
                    created += 1;
                    if created == args.watchers_per_stream {
                        let _ = ready_tx.send(Ok(())).await;
                    }
                }
                for ev in &resp.events {
                    let Some(kv) = &ev.kv else { continue };
                    let Some(seq) = sequence(&kv.value) else {
                        continue;
                    };
                    let at = sent
                        .get(seq as usize)
                        .and_then(|m| *m.lock().expect("not poisoned"));
                    if let Some(at) = at {
                        stats::record(&mut hist, at.elapsed());
                        mine += 1;
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            drop(req_tx);
            hist
        }));
    }
    drop(ready_tx);
    for _ in 0..args.streams {
        match ready_rx.recv().await {
            Some(Ok(())) => {}
            Some(Err(e)) => return Err(e.context("opening a watch stream")),
            None => bail!("a watch stream ended before its watchers were created"),
        }
    }

    let rate = if args.rate == 0 { 100 } else { args.rate };
    let pb = crate::progress::count(args.total, "watch puts");
    let mut kv = KvClient::new(conns[0].clone());
    let start = Instant::now();
    let (mut put_errors, mut first_error) = (0u64, None);
    for seq in 0..args.total {
        let due = start + Duration::from_secs_f64(seq as f64 / rate as f64);
        tokio::time::sleep_until(due.into()).await;
        let mut value = format!("{seq:020}").into_bytes();
        value.resize(args.val_size.max(value.len()), b'.');
        let value = Bytes::from(value);
        *sent[seq as usize].lock().expect("not poisoned") = Some(Instant::now());
        let put = kv.put(PutRequest {
            key: Bytes::from_static(WATCH_KEY),
            value,
            ..PutRequest::default()
        });
        match tokio::time::timeout(timeout, put).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                put_errors += 1;
                first_error.get_or_insert_with(|| e.to_string());
            }
            Err(_) => {
                put_errors += 1;
                first_error.get_or_insert_with(|| "put timed out".to_string());
            }
        }
        pb.inc(1);
    }
    pb.finish_and_clear();
    // Give the last events time to arrive, then stop waiting.
    let deadline = Instant::now() + timeout;
    while delivered.load(Ordering::Relaxed) < expected - put_errors * watchers as u64
        && Instant::now() < deadline
    {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let seconds = start.elapsed().as_secs_f64();
    let mut hist = stats::histogram();
    for t in tasks {
        if t.is_finished() {
            hist.add(&t.await.context("watch task")?)
                .expect("same bounds");
        } else {
            t.abort();
        }
    }
    let ops = hist.len();
    let missing = expected.saturating_sub(ops + put_errors * watchers as u64);
    if missing > 0 && first_error.is_none() {
        first_error = Some(format!("{missing} events never arrived"));
    }
    Ok(Report {
        workload: super::workload_name(args),
        clients: watchers,
        conns: args.conns,
        ops,
        errors: put_errors + missing,
        retries: 0,
        seconds,
        ops_per_sec: ops as f64 / seconds,
        latency_us: Latency::of(&hist),
        first_error,
    })
}

/// The sequence number a watch-latency value starts with.
fn sequence(value: &[u8]) -> Option<u64> {
    let digits = value.get(..20)?;
    std::str::from_utf8(digits).ok()?.parse().ok()
}
