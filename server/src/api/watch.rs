//! `etcdserverpb.Watch`: one bidirectional stream carries many watches,
//! served from this member's applied store.
//!
//! Each stream is one task ([`Session`]) that owns its watchers. A watcher
//! is a key range plus `next`, the first revision it has not been sent.
//! Whenever the store's revision moves (or a watcher is created behind
//! it), the session reads the event log from `next` — O(events since
//! `next`), never a scan of the keys — and sends what matches. Watchers
//! with the same `next` share one read of the log. A read returns at most
//! [`EVENTS_PER_READ`] matching events (whole revisions), and the session
//! looks at its client's requests between two rounds of reads.
//!
//! Flow control is the gRPC stream's: responses go through a bounded
//! queue, and a session whose client reads slowly waits on it. Writers
//! never wait for watchers, and a slow session only falls behind (its
//! watchers' `next` stays old) and later catches up from the log; if the
//! log was compacted past `next` meanwhile, the watcher is cancelled with
//! `compact_revision` set, as etcd does.
//!
//! etcd's rules kept here: `start_revision` 0 watches from the next
//! revision, otherwise from `start_revision` inclusive; an empty key means
//! `"\0"`; a `range_end` of `"\0"` means every key from `key` on; a
//! client-chosen `watch_id` already in use, or an empty range, is refused
//! with a created and cancelled response carrying the reason and
//! `watch_id` -1; a zero `watch_id` gets the
//! stream's next free id (starting at 0); a progress request is answered
//! with `watch_id` -1 and the revision every watcher of the stream has
//! been sent up to (the current one once all are caught up); `fragment`
//! splits a
//! response larger than the request size limit holding several events.
//!
//! When the member stops, every stream ends at once with etcd's
//! `etcdserver: server stopped` (Unavailable); clients resume elsewhere.

use super::ApiContext;
use crate::mvcc::{EtcdError, KeyRange, MvccError, MvccStore};
use prost::Message;
use sett_proto::etcdserverpb::watch_create_request::FilterType;
use sett_proto::etcdserverpb::watch_request::RequestUnion;
use sett_proto::etcdserverpb::watch_server::Watch;
use sett_proto::etcdserverpb::{WatchCreateRequest, WatchRequest, WatchResponse};
use sett_proto::mvccpb::event::EventType;
use sett_proto::mvccpb::Event;
use std::collections::BTreeMap;
use std::pin::Pin;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_stream::StreamExt;
use tonic::{Request as GrpcRequest, Response as GrpcResponse, Status, Streaming};

/// Most events one log read returns (it never splits a revision, so it
/// may return more).
pub(crate) const EVENTS_PER_READ: usize = 1000;
/// Pause before reading again when a snapshot install closed the store.
const STORE_SWITCH_PAUSE: Duration = Duration::from_millis(10);
/// Responses queued towards one client before the session waits.
const OUT_QUEUE: usize = 128;
/// The `watch_id` of a progress response to a progress request.
const PROGRESS_WATCH_ID: i64 = -1;
/// Pump rounds a progress request may run before it is answered.
const PROGRESS_CATCH_UP_ROUNDS: usize = 16;
/// etcd's message for a client-chosen id already in use.
const DUPLICATE_WATCH_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
/// etcd's message for a range with nothing in it (`key >= range_end`).
const EMPTY_RANGE: &str = "mvcc: watcher range is empty";
/// The `watch_id` of a refused create.
const REFUSED_WATCH_ID: i64 = -1;

/// The Watch service of one member.
#[derive(Debug, Clone)]
pub(crate) struct WatchService {
    ctx: ApiContext,
    progress_interval: Duration,
}

impl WatchService {
    pub(crate) fn new(ctx: ApiContext, progress_interval: Duration) -> WatchService {
        WatchService {
            ctx,
            progress_interval,
        }
    }
}

type ResponseStream =
    Pin<Box<dyn tokio_stream::Stream<Item = Result<WatchResponse, Status>> + Send>>;

#[tonic::async_trait]
impl Watch for WatchService {
    type WatchStream = ResponseStream;

    async fn watch(
        &self,
        request: GrpcRequest<Streaming<WatchRequest>>,
    ) -> Result<GrpcResponse<ResponseStream>, Status> {
        let caller = self.ctx.caller(&request).await?;
        let incoming = request.into_inner();
        let (tx, rx) = mpsc::channel(OUT_QUEUE);
        let session = Session {
            caller,
            ctx: self.ctx.clone(),
            out: tx,
            watchers: BTreeMap::new(),
            next_auto_id: 0,
            gauge: self.ctx.proposer().metrics().watch_stream(),
        };
        tokio::spawn(session.run(incoming, self.progress_interval));
        Ok(GrpcResponse::new(Box::pin(self.ctx.until_stopped(rx))))
    }
}

/// The cancel reason of a watch refused for lack of read permission
/// (etcd's gRPC error as text).
const PERMISSION_DENIED_REASON: &str =
    "rpc error: code = PermissionDenied desc = etcdserver: permission denied";

/// One watch of a stream.
#[derive(Debug)]
struct Watcher {
    range: KeyRange,
    /// The first revision not yet sent.
    next: i64,
    no_put: bool,
    no_delete: bool,
    prev_kv: bool,
    fragment: bool,
    progress_notify: bool,
    /// Whether anything was sent since the last progress tick.
    sent_since_tick: bool,
}

impl Watcher {
    fn wants(&self, ev: &Event) -> bool {
        let is_put = ev.r#type == EventType::Put as i32;
        if (is_put && self.no_put) || (!is_put && self.no_delete) {
            return false;
        }
        ev.kv
            .as_ref()
            .is_some_and(|kv| self.range.contains(&kv.key))
    }
}

/// The stream went away (the client left); the session ends.
struct Gone;

struct Session {
    /// Who opened the stream (each watch needs read permission on its
    /// range when it is created).
    caller: super::auth::Caller,
    ctx: ApiContext,
    out: mpsc::Sender<Result<WatchResponse, Status>>,
    watchers: BTreeMap<i64, Watcher>,
    next_auto_id: i64,
    /// This stream's share of the watch metrics (kept current with
    /// `watchers`; given back when the session ends).
    gauge: crate::metrics::WatchStreamGauge,
}

impl Session {
    async fn run(mut self, mut incoming: Streaming<WatchRequest>, progress_interval: Duration) {
        let mut stores = self.ctx.inner.applier.subscribe_store();
        let mut store = stores.borrow_and_update().clone();
        let mut revisions = store.subscribe();
        let out = self.out.clone();
        let stopped = self.ctx.stopped();
        tokio::pin!(stopped);
        let mut progress = tokio::time::interval_at(
            tokio::time::Instant::now() + progress_interval,
            progress_interval,
        );
        loop {
            let Ok(behind) = self.pump(&store).await else {
                return;
            };
            let step = tokio::select! {
                // Still behind: another round right away, unless a request
                // or a signal is ready first.
                () = std::future::ready(()), if behind => Ok(()),
                msg = incoming.next() => match msg {
                    Some(Ok(req)) => self.handle(req, &store).await,
                    // A request refused by the gRPC layer ends the stream
                    // with grpc-go's status, as in etcd.
                    Some(Err(e)) => {
                        let _ = out.send(Err(super::grpc_go::stream_error(e))).await;
                        Err(Gone)
                    }
                    // The client closed its side.
                    None => Err(Gone),
                },
                // The session holds the store, so its sender outlives this
                // receiver: only a new revision wakes this branch.
                _ = revisions.changed() => Ok(()),
                changed = stores.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    store = stores.borrow_and_update().clone();
                    revisions = store.subscribe();
                    Ok(())
                }
                _ = progress.tick() => self.progress_tick(&store).await,
                () = out.closed() => Err(Gone),
                // The member stops: the response stream ends with
                // `server stopped` and the client's requests are dropped.
                () = &mut stopped => Err(Gone),
            };
            if step.is_err() {
                return;
            }
        }
    }

    async fn send(&self, mut resp: WatchResponse, revision: i64) -> Result<(), Gone> {
        self.ctx.fill_header(&mut resp, Some(revision));
        self.out.send(Ok(resp)).await.map_err(|_| Gone)
    }

    async fn handle(&mut self, req: WatchRequest, store: &MvccStore) -> Result<(), Gone> {
        let current = store.current_revision();
        match req.request_union {
            Some(RequestUnion::CreateRequest(c)) => self.create(c, current).await,
            Some(RequestUnion::CancelRequest(c)) => {
                // etcd answers only a cancel of a watch that exists.
                if self.watchers.remove(&c.watch_id).is_some() {
                    self.gauge.set_watchers(self.watchers.len());
                    let resp = WatchResponse {
                        watch_id: c.watch_id,
                        canceled: true,
                        ..WatchResponse::default()
                    };
                    self.send(resp, current).await?;
                }
                Ok(())
            }
            Some(RequestUnion::ProgressRequest(_)) => {
                // Deliver what is already applied first (a bounded number
                // of rounds), so a write this member acknowledged is
                // covered by the answer.
                for _ in 0..PROGRESS_CATCH_UP_ROUNDS {
                    if !self.pump(store).await? {
                        break;
                    }
                }
                let current = store.current_revision();
                // The revision every watcher of the stream has been sent
                // up to: a client takes it as "all events up to here
                // delivered", so it may not run ahead of the slowest one.
                let revision = self
                    .watchers
                    .values()
                    .map(|w| w.next - 1)
                    .min()
                    .map_or(current, |r| r.min(current));
                let resp = WatchResponse {
                    watch_id: PROGRESS_WATCH_ID,
                    ..WatchResponse::default()
                };
                self.send(resp, revision).await
            }
            None => Ok(()),
        }
    }

    async fn create(&mut self, c: WatchCreateRequest, current: i64) -> Result<(), Gone> {
        let key: &[u8] = if c.key.is_empty() { &[0] } else { &c.key };
        let empty_range =
            !c.range_end.is_empty() && c.range_end.as_ref() != [0] && key >= c.range_end.as_ref();
        let refusal = if empty_range {
            Some(EMPTY_RANGE)
        } else if c.watch_id != 0 && self.watchers.contains_key(&c.watch_id) {
            Some(DUPLICATE_WATCH_ID)
        } else {
            None
        };
        if refusal.is_none()
            && self
                .ctx
                .require_read(&self.caller, key, &c.range_end)
                .await
                .is_err()
        {
            // etcd 3.4: created and canceled at once, with id -1 and the
            // gRPC error's text as reason.
            let resp = WatchResponse {
                watch_id: REFUSED_WATCH_ID,
                created: true,
                canceled: true,
                cancel_reason: PERMISSION_DENIED_REASON.to_owned(),
                ..WatchResponse::default()
            };
            return self.send(resp, current).await;
        }
        if let Some(reason) = refusal {
            let resp = WatchResponse {
                watch_id: REFUSED_WATCH_ID,
                created: true,
                canceled: true,
                cancel_reason: reason.to_owned(),
                ..WatchResponse::default()
            };
            return self.send(resp, current).await;
        }
        let id = if c.watch_id != 0 {
            c.watch_id
        } else {
            while self.watchers.contains_key(&self.next_auto_id) {
                self.next_auto_id += 1;
            }
            let id = self.next_auto_id;
            self.next_auto_id += 1;
            id
        };
        let has = |f: FilterType| c.filters.contains(&(f as i32));
        let watcher = Watcher {
            range: KeyRange::new(key, &c.range_end),
            next: if c.start_revision > 0 {
                c.start_revision
            } else {
                current + 1
            },
            no_put: has(FilterType::Noput),
            no_delete: has(FilterType::Nodelete),
            prev_kv: c.prev_kv,
            fragment: c.fragment,
            progress_notify: c.progress_notify,
            sent_since_tick: false,
        };
        self.watchers.insert(id, watcher);
        self.gauge.set_watchers(self.watchers.len());
        let resp = WatchResponse {
            watch_id: id,
            created: true,
            ..WatchResponse::default()
        };
        self.send(resp, current).await
    }

    /// One round of catching up: one bounded read for each group of
    /// watchers that are behind the current revision. Returns whether
    /// some watcher is still behind (the caller runs another round after
    /// looking at the client's requests, so a steady stream of writes
    /// cannot starve them).
    async fn pump(&mut self, store: &MvccStore) -> Result<bool, Gone> {
        let current = store.current_revision();
        // Group the watchers that are behind by their next revision.
        let mut groups: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
        for (id, w) in &self.watchers {
            if w.next <= current {
                groups.entry(w.next).or_default().push(*id);
            }
        }
        for (next, ids) in groups {
            self.catch_up(store, next, &ids, current).await?;
        }
        let current = store.current_revision();
        Ok(self.watchers.values().any(|w| w.next <= current))
    }

    /// One log read from `next` for the watchers `ids`, sent to each.
    async fn catch_up(
        &mut self,
        store: &MvccStore,
        next: i64,
        ids: &[i64],
        current: i64,
    ) -> Result<(), Gone> {
        let read = if let [only] = ids {
            let w = &self.watchers[only];
            let (key, end) = w.range.as_request();
            store.events_since(next, &key, &end, w.prev_kv, EVENTS_PER_READ)
        } else {
            let prev_kv = ids.iter().any(|id| self.watchers[id].prev_kv);
            store.events_since(next, &[0], &[0], prev_kv, EVENTS_PER_READ)
        };
        let events = match read {
            Ok(evs) => evs,
            Err(MvccError::Etcd(e)) if e == EtcdError::COMPACTED => {
                let compacted = store.compacted_revision();
                for id in ids {
                    self.watchers.remove(id);
                    self.gauge.set_watchers(self.watchers.len());
                    let resp = WatchResponse {
                        watch_id: *id,
                        canceled: true,
                        compact_revision: compacted,
                        ..WatchResponse::default()
                    };
                    self.send(resp, current).await?;
                }
                return Ok(());
            }
            Err(MvccError::Storage(sett_engine::Error::Closed)) => {
                // A snapshot install closed this store; the new one is
                // announced in a moment and the loop switches to it.
                tokio::time::sleep(STORE_SWITCH_PAUSE).await;
                return Ok(());
            }
            Err(e) => {
                // The store failed: end the stream; the client reconnects
                // and resumes.
                tracing::warn!("watch read failed: {e}");
                let _ = self.out.send(Err(e.to_status())).await;
                return Err(Gone);
            }
        };
        let last = events
            .last()
            .and_then(|e| e.kv.as_ref())
            .map_or(0, |kv| kv.mod_revision);
        // A read that stopped at the limit ends with a whole revision;
        // otherwise it covered everything up to (at least) `current`.
        let new_next = if events.len() >= EVENTS_PER_READ {
            last + 1
        } else {
            current.max(last) + 1
        };
        let header_rev = current.max(last);
        let drop_some = crate::debug_faults::enabled(crate::debug_faults::Fault::DropWatchEvent);
        for id in ids {
            let Some(w) = self.watchers.get_mut(id) else {
                continue;
            };
            w.next = new_next;
            let mine: Vec<Event> = events
                .iter()
                .filter(|e| w.wants(e))
                .filter(|e| !drop_some || e.kv.as_ref().map_or(0, |kv| kv.mod_revision) % 16 != 0)
                .map(|e| {
                    let mut e = e.clone();
                    if !w.prev_kv {
                        e.prev_kv = None;
                    }
                    e
                })
                .collect();
            if mine.is_empty() {
                continue;
            }
            w.sent_since_tick = true;
            let fragment = w.fragment;
            let limit = self.ctx.inner.max_request_bytes;
            for resp in split(*id, mine, fragment, limit) {
                self.send(resp, header_rev).await?;
            }
        }
        Ok(())
    }

    /// Progress notifications: an empty response for each caught-up
    /// watcher that asked for them and got nothing since the last tick.
    async fn progress_tick(&mut self, store: &MvccStore) -> Result<(), Gone> {
        let current = store.current_revision();
        let mut due = Vec::new();
        for (id, w) in &mut self.watchers {
            if w.progress_notify && !w.sent_since_tick && w.next > current {
                due.push(*id);
            }
            w.sent_since_tick = false;
        }
        for id in due {
            let resp = WatchResponse {
                watch_id: id,
                ..WatchResponse::default()
            };
            self.send(resp, current).await?;
        }
        Ok(())
    }
}

/// The responses carrying `events` for watch `id`: one, or with
/// `fragment` and an encoding above `limit`, several of at most `limit`
/// bytes each (at least one event each), all but the last flagged
/// `fragment`.
fn split(id: i64, events: Vec<Event>, fragment: bool, limit: usize) -> Vec<WatchResponse> {
    let whole = WatchResponse {
        watch_id: id,
        events,
        ..WatchResponse::default()
    };
    if !fragment || whole.events.len() < 2 || whole.encoded_len() <= limit {
        return vec![whole];
    }
    let mut out = Vec::new();
    let mut cur: Vec<Event> = Vec::new();
    let mut size = 0usize;
    for ev in whole.events {
        let n = ev.encoded_len() + 8;
        if !cur.is_empty() && size + n > limit {
            out.push(std::mem::take(&mut cur));
            size = 0;
        }
        size += n;
        cur.push(ev);
    }
    out.push(cur);
    let parts = out.len();
    out.into_iter()
        .enumerate()
        .map(|(i, events)| WatchResponse {
            watch_id: id,
            events,
            fragment: i + 1 < parts,
            ..WatchResponse::default()
        })
        .collect()
}
