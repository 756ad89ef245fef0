//! A member's Prometheus metrics, served on `--listen-metrics-urls`
//! (`GET /metrics`, and `GET /health` for etcd's health check).
//!
//! Series that etcd has keep etcd's names, so its dashboards and alerts
//! work unchanged; the others are named `sett_*`. Two kinds:
//! - **events**, counted where they happen through the [`Metrics`] handle
//!   every part of the member shares (leader changes, proposals, applies,
//!   gRPC calls, watchers, lease grants);
//! - **state**, read when scraped ([`Sources`]): the Raft metrics, the
//!   engines' statistics (sync latencies, sizes, tables per level) and the
//!   store's revisions, keys and leases. Nothing is sampled in between, so
//!   a scrape shows the state at that moment.
//!
//! - [`grpc`]: the per-call series of the client services
//!   (go-grpc-prometheus' names and labels).
//! - [`http`]: the HTTP/1.1 server of `/metrics` and `/health`.
//!
//! Thread-safety: [`Metrics`] is shared behind an `Arc`; every series is
//! atomic, the sources are set once at start.

pub mod grpc;
pub mod http;

use crate::raft::types::Raft;
use crate::raft::{LogStore, MvccApplier};
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

/// The series of one member and what is read at scrape time.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    sources: Arc<Sources>,
    leader_changes: Counter,
    proposals_pending: Gauge,
    proposals_failed: Counter,
    apply_duration: Histogram,
    watchers: Gauge,
    watch_streams: Gauge,
    leases_granted: Counter,
    /// What the gRPC health service reports for the member as a whole.
    ready: AtomicBool,
    grpc: grpc::GrpcSeries,
}

/// What a scrape reads: set once while the member starts.
#[derive(Default)]
pub struct Sources {
    raft: OnceLock<Raft>,
    log: OnceLock<LogStore>,
    state: OnceLock<Arc<dyn StateSource>>,
}

impl std::fmt::Debug for Sources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sources")
            .field("raft", &self.raft.get().is_some())
            .field("log", &self.log.get().is_some())
            .field("state", &self.state.get().is_some())
            .finish()
    }
}

/// A state machine that can report its store for a scrape.
pub trait StateSource: Send + Sync + 'static {
    /// The store's state now.
    fn sample(&self) -> StateSample;
}

/// The state of a member's store at one moment.
#[derive(Debug, Clone, Default)]
pub struct StateSample {
    /// The engine's statistics.
    pub engine: sett_engine::Stats,
    /// The store's revision.
    pub revision: i64,
    /// The revision compacted up to.
    pub compact_revision: i64,
    /// Keys live at the current revision.
    pub keys: u64,
    /// Leases granted and not revoked.
    pub leases: u64,
}

impl StateSource for MvccApplier {
    fn sample(&self) -> StateSample {
        let store = self.store();
        StateSample {
            engine: store.db().stats(),
            revision: store.current_revision(),
            compact_revision: store.compacted_revision(),
            keys: store.live_key_count() as u64,
            leases: store.leases().map_or(0, |l| l.len() as u64),
        }
    }
}

/// Buckets of `sett_apply_duration_seconds`: 100 µs doubling to ~3.3 s.
fn apply_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0001, 2.0, 16)
}

impl Metrics {
    /// Fresh series; the scrape-time sources are attached with
    /// [`Metrics::attach_raft`], [`Metrics::attach_log`] and
    /// [`Metrics::attach_state`].
    pub fn new() -> Metrics {
        let mut registry = Registry::default();
        let leader_changes = Counter::default();
        registry.register(
            "etcd_server_leader_changes_seen",
            "The number of leader changes seen.",
            leader_changes.clone(),
        );
        let proposals_pending = Gauge::default();
        registry.register(
            "etcd_server_proposals_pending",
            "The number of writes this member has proposed (or forwarded to the leader) \
             that have no result yet.",
            proposals_pending.clone(),
        );
        let proposals_failed = Counter::default();
        registry.register(
            "etcd_server_proposals_failed",
            "The number of failed proposals (no leader, leader changed, timed out).",
            proposals_failed.clone(),
        );
        let apply_duration = Histogram::new(apply_buckets());
        registry.register(
            "sett_apply_duration_seconds",
            "Time to apply one batch of committed entries to the state machine.",
            apply_duration.clone(),
        );
        let watchers = Gauge::default();
        registry.register(
            "etcd_debugging_mvcc_watcher_total",
            "Total number of watchers.",
            watchers.clone(),
        );
        let watch_streams = Gauge::default();
        registry.register(
            "etcd_debugging_mvcc_watch_stream_total",
            "Total number of watch streams.",
            watch_streams.clone(),
        );
        let leases_granted = Counter::default();
        registry.register(
            "etcd_debugging_lease_granted",
            "The number of leases granted through this member.",
            leases_granted.clone(),
        );
        let grpc = grpc::GrpcSeries::register(&mut registry);
        let sources = Arc::new(Sources::default());
        registry.register_collector(Box::new(StateCollector(sources.clone())));
        Metrics {
            registry,
            sources,
            leader_changes,
            proposals_pending,
            proposals_failed,
            apply_duration,
            watchers,
            watch_streams,
            leases_granted,
            ready: AtomicBool::new(false),
            grpc,
        }
    }

    /// Reads term, leader, applied index from `raft`, and counts leader
    /// changes until it stops.
    pub fn attach_raft(self: &Arc<Self>, raft: Raft) {
        let mut rx = raft.metrics();
        if self.sources.raft.set(raft).is_err() {
            return;
        }
        let me = self.clone();
        tokio::spawn(async move {
            let mut leader = rx.borrow_and_update().current_leader;
            while rx.changed().await.is_ok() {
                let now = rx.borrow_and_update().current_leader;
                if now.is_some() && now != leader {
                    me.leader_changes.inc();
                }
                if now.is_some() {
                    leader = now;
                }
            }
        });
    }

    /// Reads the commit index and the log's fsync latencies from `log`.
    pub fn attach_log(&self, log: LogStore) {
        let _ = self.sources.log.set(log);
    }

    /// Reads the store's state from `state`.
    pub fn attach_state(&self, state: Arc<dyn StateSource>) {
        let _ = self.sources.state.set(state);
    }

    /// A proposal starts; it counts as pending until the guard drops.
    pub fn proposal_started(&self) -> PendingProposal<'_> {
        self.proposals_pending.inc();
        PendingProposal(&self.proposals_pending)
    }

    /// A proposal failed.
    pub fn proposal_failed(&self) {
        self.proposals_failed.inc();
    }

    /// A batch of entries took `took` to apply.
    pub fn applied(&self, took: Duration) {
        self.apply_duration.observe(took.as_secs_f64());
    }

    /// A watch stream opened; the guard keeps its watcher count.
    pub fn watch_stream(&self) -> WatchStreamGauge {
        self.watch_streams.inc();
        WatchStreamGauge {
            streams: self.watch_streams.clone(),
            watchers: self.watchers.clone(),
            reported: 0,
        }
    }

    /// A lease was granted.
    pub fn lease_granted(&self) {
        self.leases_granted.inc();
    }

    /// Sets what `/health` reports (the gRPC health service's status of
    /// the member as a whole).
    pub fn set_ready(&self, ready: bool) {
        self.ready.store(ready, Ordering::Release);
    }

    /// Whether the member is ready (see [`Metrics::set_ready`]).
    pub fn ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// The per-call gRPC series.
    pub(crate) fn grpc(&self) -> &grpc::GrpcSeries {
        &self.grpc
    }

    /// Every series in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// Counts a proposal as pending while alive.
#[derive(Debug)]
pub struct PendingProposal<'a>(&'a Gauge);

impl Drop for PendingProposal<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// One watch stream's share of the watch gauges; gives it back on drop.
#[derive(Debug)]
pub struct WatchStreamGauge {
    streams: Gauge,
    watchers: Gauge,
    reported: i64,
}

impl WatchStreamGauge {
    /// The stream now has `n` watchers.
    pub fn set_watchers(&mut self, n: usize) {
        let n = i64::try_from(n).unwrap_or(i64::MAX);
        if n != self.reported {
            self.watchers.inc_by(n - self.reported);
            self.reported = n;
        }
    }
}

impl Drop for WatchStreamGauge {
    fn drop(&mut self) {
        self.watchers.dec_by(self.reported);
        self.streams.dec();
    }
}

/// Encodes the scrape-time series.
#[derive(Debug)]
struct StateCollector(Arc<Sources>);

fn gauge(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let g = ConstGauge::new(value);
    g.encode(encoder.encode_descriptor(name, help, None, g.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    value: u64,
) -> Result<(), std::fmt::Error> {
    let c = ConstCounter::new(value);
    c.encode(encoder.encode_descriptor(name, help, None, c.metric_type())?)
}

/// An engine's sync latencies as a histogram in seconds.
fn sync_histogram(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    latency: &sett_engine::SyncLatency,
) -> Result<(), std::fmt::Error> {
    let bounds = sett_engine::SYNC_LATENCY_BOUNDS_US
        .iter()
        .map(|us| *us as f64 / 1e6)
        .chain(std::iter::once(f64::INFINITY));
    let buckets: Vec<(f64, u64)> = bounds.zip(latency.counts.iter().copied()).collect();
    let mut m = encoder.encode_descriptor(name, help, None, MetricType::Histogram)?;
    m.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
        latency.sum_ns as f64 / 1e9,
        latency.count(),
        &buckets,
        None,
    )
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl prometheus_client::collector::Collector for StateCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let e = &mut encoder;
        let committed = self.0.log.get().map(LogStore::committed_index);
        if let Some(raft) = self.0.raft.get() {
            let (leader, term, applied, me) = {
                let m = raft.metrics();
                let m = m.borrow();
                (
                    m.current_leader,
                    m.current_term,
                    m.last_applied.map_or(0, |l| l.index),
                    m.id,
                )
            };
            gauge(
                e,
                "etcd_server_has_leader",
                "Whether or not a leader exists. 1 is existence, 0 is not.",
                i64::from(leader.is_some()),
            )?;
            gauge(
                e,
                "etcd_server_is_leader",
                "Whether or not this member is a leader. 1 if is, 0 otherwise.",
                i64::from(leader == Some(me)),
            )?;
            gauge(
                e,
                "sett_raft_term",
                "The Raft term this member is in.",
                to_i64(term),
            )?;
            gauge(
                e,
                "sett_raft_applied_index",
                "The index of the last log entry applied to the state machine.",
                to_i64(applied),
            )?;
            gauge(
                e,
                "etcd_server_proposals_applied_total",
                "The total number of consensus proposals applied.",
                to_i64(applied),
            )?;
            if let Some(c) = committed {
                gauge(
                    e,
                    "sett_raft_commit_index",
                    "The index of the last log entry known to be committed.",
                    to_i64(c),
                )?;
                gauge(
                    e,
                    "etcd_server_proposals_committed_total",
                    "The total number of consensus proposals committed.",
                    to_i64(c),
                )?;
            }
        }
        if let Some(log) = self.0.log.get() {
            let stats = log.db().stats();
            sync_histogram(
                e,
                "etcd_disk_wal_fsync_duration_seconds",
                "The latency distributions of fsync called by the Raft log.",
                &stats.sync_latency,
            )?;
            gauge(
                e,
                "sett_raft_log_bytes",
                "Bytes the Raft log's database occupies on disk (tables and value log).",
                to_i64(stats.bytes_per_level.iter().sum::<u64>() + stats.vlog_bytes),
            )?;
        }
        if let Some(state) = self.0.state.get() {
            let s = state.sample();
            let db = &s.engine;
            sync_histogram(
                e,
                "etcd_disk_backend_commit_duration_seconds",
                "The latency distributions of the state machine engine's syncs \
                 (memtable flushes, new tables, value-log GC).",
                &db.sync_latency,
            )?;
            let size = db.bytes_per_level.iter().sum::<u64>() + db.vlog_bytes;
            gauge(
                e,
                "etcd_mvcc_db_total_size_in_bytes",
                "Total size of the underlying database physically allocated in bytes \
                 (tables and value log; what --quota-backend-bytes counts).",
                to_i64(size),
            )?;
            gauge(
                e,
                "etcd_debugging_mvcc_keys_total",
                "Total number of keys.",
                to_i64(s.keys),
            )?;
            gauge(
                e,
                "etcd_debugging_mvcc_current_revision",
                "The current revision of store.",
                s.revision,
            )?;
            gauge(
                e,
                "etcd_debugging_mvcc_compact_revision",
                "The revision of the last compaction in store.",
                s.compact_revision,
            )?;
            gauge(
                e,
                "sett_mvcc_leases",
                "Leases granted and not yet revoked or expired.",
                to_i64(s.leases),
            )?;
            engine_series(e, db)?;
        }
        Ok(())
    }
}

/// The state machine engine's own statistics.
fn engine_series(
    e: &mut DescriptorEncoder,
    db: &sett_engine::Stats,
) -> Result<(), std::fmt::Error> {
    {
        let mut m = e.encode_descriptor(
            "sett_engine_tables",
            "Tables per LSM level in the state machine's engine.",
            None,
            MetricType::Gauge,
        )?;
        for (level, n) in db.tables_per_level.iter().enumerate() {
            let labels = [("level", level.to_string())];
            ConstGauge::new(to_i64(*n as u64)).encode(m.encode_family(&labels)?)?;
        }
    }
    {
        let mut m = e.encode_descriptor(
            "sett_engine_table_bytes",
            "Table bytes per LSM level in the state machine's engine.",
            None,
            MetricType::Gauge,
        )?;
        for (level, n) in db.bytes_per_level.iter().enumerate() {
            let labels = [("level", level.to_string())];
            ConstGauge::new(to_i64(*n)).encode(m.encode_family(&labels)?)?;
        }
    }
    gauge(
        e,
        "sett_engine_value_log_bytes",
        "Bytes in the state machine engine's value-log files.",
        to_i64(db.vlog_bytes),
    )?;
    gauge(
        e,
        "sett_engine_memtable_bytes",
        "Bytes held by the state machine engine's memtables (active and frozen).",
        to_i64(db.memtable_bytes),
    )?;
    gauge(
        e,
        "sett_engine_immutable_memtables",
        "Frozen memtables waiting for flush.",
        to_i64(db.immutable_memtables as u64),
    )?;
    counter(
        e,
        "sett_engine_flushes",
        "Memtables flushed to L0 since the engine opened.",
        db.flushes,
    )?;
    counter(
        e,
        "sett_engine_compactions",
        "Compactions run since the engine opened.",
        db.compactions,
    )?;
    counter(
        e,
        "sett_engine_write_stalls",
        "Commit groups that waited because L0 was full.",
        db.write_stalls,
    )?;
    counter(
        e,
        "sett_engine_block_cache_hits",
        "Block-cache lookups that hit.",
        db.cache_hits,
    )?;
    counter(
        e,
        "sett_engine_block_cache_misses",
        "Block-cache lookups that missed.",
        db.cache_misses,
    )?;
    Ok(())
}
