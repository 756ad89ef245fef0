//! Resumable watches: [`Watch::watch`] returns a [`WatchStream`] that
//! survives broken streams.
//!
//! A [`WatchStream`] tracks the revision up to which it has delivered
//! everything: the highest event revision handed out, or (before any
//! event) the revision the watch was created at, advanced by progress
//! notifications. When its stream breaks (the member stopped or was
//! killed, the connection reset, the member lost its leader and cancelled
//! the watch), it opens a new stream to the next configured endpoint, with
//! capped exponential pauses, and creates the watch again from the next
//! revision, dropping any event it already delivered: the caller sees
//! every revision once, in order, without gaps. If that revision was
//! compacted meanwhile, [`WatchStream::next`] fails with
//! [`Error::Compacted`] (as etcd cancels such a watch). Resuming gives up
//! after [`crate::ConnectOptions::watch_resume_timeout`].
//!
//! The watch is cancelled when the stream is dropped (the gRPC stream is
//! reset, which ends the server's watch) or by [`WatchStream::cancel`].

use crate::client::Client;
use crate::error::Error;
use crate::kv::prefix_range_end;
use crate::retry::Backoff;
use sett_proto::etcdserverpb::watch_client::WatchClient;
use sett_proto::etcdserverpb::watch_create_request::FilterType;
use sett_proto::etcdserverpb::watch_request::RequestUnion;
use sett_proto::etcdserverpb::{
    WatchCancelRequest, WatchCreateRequest, WatchProgressRequest, WatchRequest, WatchResponse,
};
use sett_proto::mvccpb::Event;
use std::time::Instant;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::Code;

/// Requests queued towards one watch stream.
const REQUEST_QUEUE: usize = 8;
/// etcd's cancel reason when a member loses its leader.
const NO_LEADER_REASON: &str = "etcdserver: no leader";

/// Options of [`Watch::watch`]; the default watches the key alone from
/// the next revision on.
#[derive(Debug, Clone, Default)]
pub struct WatchOptions {
    /// Every key starting with the key.
    pub prefix: bool,
    /// Every key from the key on.
    pub from_key: bool,
    /// Keys in `[key, range_end)`.
    pub range_end: Option<Vec<u8>>,
    /// First revision to deliver (0: the next one).
    pub start_revision: i64,
    /// Events carry the previous key-value.
    pub prev_kv: bool,
    /// Ask for periodic progress notifications (responses without events).
    pub progress_notify: bool,
    /// Event types not to deliver.
    pub filters: Vec<FilterType>,
}

impl WatchOptions {
    /// The defaults.
    pub fn new() -> WatchOptions {
        WatchOptions::default()
    }

    /// Every key starting with the key.
    pub fn with_prefix(mut self) -> WatchOptions {
        self.prefix = true;
        self
    }

    /// Every key from the key on.
    pub fn with_from_key(mut self) -> WatchOptions {
        self.from_key = true;
        self
    }

    /// Keys in `[key, end)`.
    pub fn with_range_end(mut self, end: impl Into<Vec<u8>>) -> WatchOptions {
        self.range_end = Some(end.into());
        self
    }

    /// Leaves out events of type `filter` (puts or deletes).
    pub fn with_filter(mut self, filter: FilterType) -> WatchOptions {
        self.filters.push(filter);
        self
    }

    /// Starts at `revision`.
    pub fn with_start_revision(mut self, revision: i64) -> WatchOptions {
        self.start_revision = revision;
        self
    }

    /// Events carry the previous key-value.
    pub fn with_prev_kv(mut self) -> WatchOptions {
        self.prev_kv = true;
        self
    }

    /// Asks for progress notifications.
    pub fn with_progress_notify(mut self) -> WatchOptions {
        self.progress_notify = true;
        self
    }

    /// The create request for `key` (without a start revision).
    fn to_request(&self, key: Vec<u8>) -> Result<WatchCreateRequest, Error> {
        let range_end = match (self.prefix, self.from_key, &self.range_end) {
            (false, false, None) => Vec::new(),
            (true, false, None) => prefix_range_end(&key),
            (false, true, None) => vec![0],
            (false, false, Some(end)) => end.clone(),
            _ => {
                return Err(Error::InvalidArgument(
                    "at most one of prefix, from_key and range_end may be set".to_owned(),
                ))
            }
        };
        Ok(WatchCreateRequest {
            key: key.into(),
            range_end: range_end.into(),
            start_revision: self.start_revision,
            progress_notify: self.progress_notify,
            filters: self.filters.iter().map(|f| *f as i32).collect(),
            prev_kv: self.prev_kv,
            watch_id: 0,
            fragment: false,
        })
    }
}

/// Handle on the Watch service of a [`Client`]; cheap to clone.
#[derive(Debug, Clone)]
pub struct Watch {
    client: Client,
}

impl Watch {
    pub(crate) fn new(client: Client) -> Watch {
        Watch { client }
    }

    /// Watches `key` (or the range the options name); returns once the
    /// server has created the watch.
    pub async fn watch(
        &self,
        key: impl Into<Vec<u8>>,
        opts: WatchOptions,
    ) -> Result<WatchStream, Error> {
        let create = opts.to_request(key.into())?;
        let mut stream = WatchStream {
            client: self.client.clone(),
            position: Position::new(create.start_revision),
            create,
            conn: None,
            next_endpoint: 0,
            done: false,
            resumes: 0,
            conn_opened: false,
        };
        stream.reconnect().await?;
        Ok(stream)
    }
}

/// One open gRPC watch stream.
#[derive(Debug)]
struct Conn {
    requests: mpsc::Sender<WatchRequest>,
    responses: tonic::Streaming<WatchResponse>,
    watch_id: i64,
}

/// How far a watch has delivered, which decides where it resumes.
///
/// Invariants: `last_delivered` only grows; once anything was delivered
/// or the watch was created, `resume_from > last_delivered`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Position {
    /// The revision to (re)create the watch at (0: the next one).
    resume_from: i64,
    /// The highest event revision delivered (0: none yet).
    last_delivered: i64,
}

impl Position {
    fn new(start_revision: i64) -> Position {
        Position {
            resume_from: start_revision,
            last_delivered: 0,
        }
    }

    /// The watch was created with the store at `revision`: a watch from
    /// "now" delivers everything after it, also across resumes.
    fn created(&mut self, revision: i64) {
        if self.resume_from == 0 {
            self.resume_from = revision + 1;
        }
    }

    /// Drops already delivered events from `resp` and advances; `None`
    /// if nothing is left to hand out. Events out of revision order break
    /// the protocol (and would defeat resuming): an error.
    fn deliver(&mut self, mut resp: WatchResponse) -> Result<Option<WatchResponse>, Error> {
        if resp.events.is_empty() {
            // A progress notification: nothing up to its revision is left.
            let rev = resp.header.as_ref().map_or(0, |h| h.revision);
            if rev > 0 {
                self.resume_from = self.resume_from.max(rev + 1);
            }
            return Ok(Some(resp));
        }
        let last = self.last_delivered;
        resp.events.retain(|e| event_revision(e) > last);
        if resp.events.is_empty() {
            return Ok(None);
        }
        let mut newest = last;
        for e in &resp.events {
            let rev = event_revision(e);
            if rev < newest {
                return Err(Error::Protocol(format!(
                    "watch events out of order: revision {rev} after {newest}"
                )));
            }
            newest = rev;
        }
        self.last_delivered = newest;
        self.resume_from = self.resume_from.max(newest + 1);
        debug_assert!(self.resume_from > self.last_delivered);
        Ok(Some(resp))
    }
}

/// The revision of an event (its kv's mod revision; deletes carry the
/// delete's revision there).
fn event_revision(e: &Event) -> i64 {
    e.kv.as_ref().map_or(0, |kv| kv.mod_revision)
}

/// A watch that resumes across broken streams; see the module docs.
#[derive(Debug)]
pub struct WatchStream {
    client: Client,
    /// The create request, its start revision replaced on each resume.
    create: WatchCreateRequest,
    /// What was delivered, and where a resume starts.
    position: Position,
    conn: Option<Conn>,
    /// The configured endpoint tried by the next resume.
    next_endpoint: usize,
    /// Cancelled, or failed for good.
    done: bool,
    /// Streams opened after the first one.
    resumes: u64,
    /// Whether a stream was ever opened.
    conn_opened: bool,
}

/// Whether a failed watch call is worth another stream.
fn resumable(status: &tonic::Status) -> bool {
    !matches!(
        status.code(),
        Code::InvalidArgument
            | Code::PermissionDenied
            | Code::Unauthenticated
            | Code::FailedPrecondition
            | Code::OutOfRange
            | Code::Unimplemented
            | Code::NotFound
    )
}

impl WatchStream {
    /// The server's id of the watch on the current stream (a resumed
    /// watch gets a new one).
    pub fn watch_id(&self) -> i64 {
        self.conn.as_ref().map_or(-1, |c| c.watch_id)
    }

    /// How many times the watch was resumed on a new stream.
    pub fn resumes(&self) -> u64 {
        self.resumes
    }

    /// The highest event revision delivered so far (0: none yet).
    pub fn last_revision(&self) -> i64 {
        self.position.last_delivered
    }

    /// The next response that carries events, or a progress notification
    /// (a response without events: everything up to its header revision
    /// has been delivered). Events already delivered before a resume are
    /// dropped from it. `Ok(None)` once the watch was cancelled.
    pub async fn next(&mut self) -> Result<Option<WatchResponse>, Error> {
        loop {
            if self.done {
                return Ok(None);
            }
            if self.conn.is_none() {
                self.reconnect().await?;
            }
            let conn = self.conn.as_mut().expect("connected above");
            let resp = match conn.responses.message().await {
                Ok(Some(resp)) => resp,
                Ok(None) => {
                    self.conn = None;
                    continue;
                }
                Err(status) if resumable(&status) => {
                    self.conn = None;
                    continue;
                }
                Err(status) => {
                    self.done = true;
                    self.conn = None;
                    return Err(Error::Status(status));
                }
            };
            if resp.canceled {
                self.conn = None;
                if resp.compact_revision != 0 {
                    self.done = true;
                    return Err(Error::Compacted {
                        compact_revision: resp.compact_revision,
                    });
                }
                if resp.cancel_reason == NO_LEADER_REASON {
                    continue;
                }
                self.done = true;
                return Err(Error::WatchCanceled {
                    reason: resp.cancel_reason,
                });
            }
            if resp.created {
                continue;
            }
            if let Some(resp) = self.deliver(resp)? {
                return Ok(Some(resp));
            }
        }
    }

    /// The events of the next response that carries any (progress
    /// notifications are skipped); `Ok(None)` once the watch was
    /// cancelled.
    pub async fn next_events(&mut self) -> Result<Option<Vec<Event>>, Error> {
        while let Some(resp) = self.next().await? {
            if !resp.events.is_empty() {
                return Ok(Some(resp.events));
            }
        }
        Ok(None)
    }

    /// Drops already delivered events from `resp` and advances the
    /// resume point; `None` if nothing is left to hand out.
    fn deliver(&mut self, resp: WatchResponse) -> Result<Option<WatchResponse>, Error> {
        self.position.deliver(resp).inspect_err(|_| {
            self.done = true;
            self.conn = None;
        })
    }

    /// Asks the server for a progress notification on the current stream.
    pub async fn request_progress(&mut self) -> Result<(), Error> {
        if self.conn.is_none() {
            self.reconnect().await?;
        }
        let conn = self.conn.as_ref().expect("connected above");
        let req = WatchRequest {
            request_union: Some(RequestUnion::ProgressRequest(WatchProgressRequest {})),
        };
        if conn.requests.send(req).await.is_err() {
            // The stream is gone; the next `next()` resumes it.
            self.conn = None;
        }
        Ok(())
    }

    /// Cancels the watch: tells the server and waits (bounded by the
    /// request timeout) for its confirmation. Events still in flight are
    /// discarded.
    pub async fn cancel(mut self) -> Result<(), Error> {
        self.done = true;
        let Some(mut conn) = self.conn.take() else {
            return Ok(());
        };
        let req = WatchRequest {
            request_union: Some(RequestUnion::CancelRequest(WatchCancelRequest {
                watch_id: conn.watch_id,
            })),
        };
        if conn.requests.send(req).await.is_err() {
            return Ok(());
        }
        let bound = self.client.options().request_timeout;
        let wait = async {
            loop {
                match conn.responses.message().await {
                    Ok(Some(r)) if r.canceled && r.watch_id == conn.watch_id => return Ok(()),
                    Ok(Some(_)) => {}
                    Ok(None) => return Ok(()),
                    Err(s) => return Err(Error::Status(s)),
                }
            }
        };
        tokio::time::timeout(bound, wait)
            .await
            .map_err(|_| Error::Timeout(bound))?
    }

    /// Opens a stream to the next endpoint and creates the watch at the
    /// resume point, retrying with pauses until
    /// [`crate::ConnectOptions::watch_resume_timeout`].
    async fn reconnect(&mut self) -> Result<(), Error> {
        let opts = self.client.options().clone();
        let deadline = Instant::now() + opts.watch_resume_timeout;
        let mut backoff = Backoff::with(opts.retry.initial_backoff, opts.retry.max_backoff);
        let n = self.client.endpoints().len();
        loop {
            let i = self.next_endpoint % n;
            self.next_endpoint = (i + 1) % n;
            let mut create = self.create.clone();
            create.start_revision = self.position.resume_from;
            let open = self.open(i, create);
            let err = match tokio::time::timeout(opts.request_timeout, open).await {
                Ok(Ok(conn)) => {
                    if self.conn_opened {
                        self.resumes += 1;
                    }
                    self.conn_opened = true;
                    self.conn = Some(conn);
                    return Ok(());
                }
                Ok(Err(e @ (Error::Compacted { .. } | Error::WatchCanceled { .. }))) => {
                    self.done = true;
                    return Err(e);
                }
                Ok(Err(Error::Status(s))) if !resumable(&s) => {
                    self.done = true;
                    return Err(Error::Status(s));
                }
                Ok(Err(e)) => e,
                Err(_) => Error::Timeout(opts.request_timeout),
            };
            let pause = backoff.next_pause();
            if Instant::now() + pause >= deadline {
                self.done = true;
                return Err(err);
            }
            tokio::time::sleep(pause).await;
        }
    }

    /// One attempt: a stream to configured endpoint `i` with the watch
    /// created on it.
    async fn open(&mut self, i: usize, create: WatchCreateRequest) -> Result<Conn, Error> {
        let channel = self.client.chan(self.client.endpoint_channel(i));
        let (tx, rx) = mpsc::channel(REQUEST_QUEUE);
        let first = WatchRequest {
            request_union: Some(RequestUnion::CreateRequest(create)),
        };
        tx.send(first)
            .await
            .map_err(|_| Error::Protocol("watch request queue closed".to_owned()))?;
        let mut responses = WatchClient::new(channel)
            .watch(ReceiverStream::new(rx))
            .await?
            .into_inner();
        loop {
            let Some(resp) = responses.message().await? else {
                return Err(Error::Status(tonic::Status::unavailable(
                    "watch stream closed before the watch was created",
                )));
            };
            if resp.canceled {
                if resp.compact_revision != 0 {
                    return Err(Error::Compacted {
                        compact_revision: resp.compact_revision,
                    });
                }
                if resp.cancel_reason == NO_LEADER_REASON {
                    return Err(Error::Status(tonic::Status::unavailable(NO_LEADER_REASON)));
                }
                return Err(Error::WatchCanceled {
                    reason: resp.cancel_reason,
                });
            }
            if resp.created {
                let rev = resp.header.as_ref().map_or(0, |h| h.revision);
                self.position.created(rev);
                return Ok(Conn {
                    requests: tx,
                    responses,
                    watch_id: resp.watch_id,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sett_proto::etcdserverpb::ResponseHeader;
    use sett_proto::mvccpb::KeyValue;

    fn resp(revs: &[i64], header: i64) -> WatchResponse {
        WatchResponse {
            header: Some(ResponseHeader {
                revision: header,
                ..ResponseHeader::default()
            }),
            events: revs
                .iter()
                .map(|&r| Event {
                    kv: Some(KeyValue {
                        mod_revision: r,
                        ..KeyValue::default()
                    }),
                    ..Event::default()
                })
                .collect(),
            ..WatchResponse::default()
        }
    }

    fn revs(r: &WatchResponse) -> Vec<i64> {
        r.events.iter().map(event_revision).collect()
    }

    #[test]
    fn a_watch_from_now_resumes_after_its_creation_revision() {
        let mut p = Position::new(0);
        p.created(10);
        assert_eq!(p.resume_from, 11);
        // A second creation (a resume) does not move it back.
        p.created(5);
        assert_eq!(p.resume_from, 11);
        let mut q = Position::new(7);
        q.created(10);
        assert_eq!(q.resume_from, 7, "an explicit start revision is kept");
    }

    #[test]
    fn replayed_events_are_dropped_and_new_ones_advance() {
        let mut p = Position::new(0);
        p.created(1);
        let r = p.deliver(resp(&[2, 3, 3], 3)).unwrap().expect("new events");
        assert_eq!(revs(&r), vec![2, 3, 3]);
        assert_eq!((p.last_delivered, p.resume_from), (3, 4));
        // After a resume the server may replay what was delivered.
        assert!(p.deliver(resp(&[2, 3], 3)).unwrap().is_none());
        let r = p.deliver(resp(&[3, 4, 5], 5)).unwrap().expect("partly new");
        assert_eq!(revs(&r), vec![4, 5]);
        assert_eq!((p.last_delivered, p.resume_from), (5, 6));
        assert!(matches!(
            p.deliver(resp(&[7, 6], 7)),
            Err(Error::Protocol(_))
        ));
        assert_eq!((p.last_delivered, p.resume_from), (5, 6));
    }

    #[test]
    fn progress_notifications_advance_the_resume_point_only() {
        let mut p = Position::new(0);
        p.created(1);
        let r = p.deliver(resp(&[], 9)).unwrap().expect("progress");
        assert!(r.events.is_empty());
        assert_eq!((p.last_delivered, p.resume_from), (0, 10));
        p.deliver(resp(&[], 4)).unwrap();
        assert_eq!(p.resume_from, 10, "an older progress does not move back");
    }
}
