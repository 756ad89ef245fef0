//! Leader handover on a graceful stop.
//!
//! openraft 0.9 has no leadership transfer, and its followers refuse
//! votes while their leader lease runs (`election_timeout_max` counted
//! from the last message they had from the leader). Left alone, a
//! follower campaigns only when its own election timer fires, which for
//! a follower that knew a leader is the lease plus a randomized election
//! timeout: writes stop for about 2.5 election timeouts after the
//! leader's last heartbeat.
//!
//! A stopping leader shortens that to about one lease:
//!
//! 1. the member stops serving (no new proposals from clients or from
//!    followers' forwarded writes; calls in flight finish);
//! 2. [`choose_successor`]: the leader picks the voter whose replication
//!    has matched the highest log index and waits, bounded, until it has
//!    matched the leader's last index, so that every other voter will
//!    grant it its vote;
//! 3. the Raft group stops: no more heartbeats, the leases start running
//!    out;
//! 4. [`hand_over`] sends the successor `TakeOver` on the peer transport,
//!    saying how long ago heartbeats stopped;
//! 5. the successor ([`campaign`]) starts an election right after the
//!    lease counted from its own last message from the leader has run out
//!    (the other voters heard that leader at about the same time), and
//!    tries again a few times, a heartbeat interval apart, should a vote
//!    still meet a running lease.
//!
//! Every step is bounded and only an optimisation: when one fails, the
//! followers' own election timers elect a leader as before.

use crate::network::GrpcNetworkFactory;
use crate::raft::types::Raft;
use crate::raft::{NodeId, SettNode};
use openraft::ServerState;
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The follower a stopping leader hands over to.
#[derive(Debug, Clone)]
pub struct Successor {
    /// Its node id.
    pub id: NodeId,
    /// Its address.
    pub node: SettNode,
    /// The leader's last log index, which the successor has matched.
    pub last_log_index: u64,
}

/// On the leader: the voter to hand over to, once it has matched the
/// leader's whole log (waited for at most `bound`); `None` when this
/// member does not lead, leads alone, or no voter caught up in time.
pub async fn choose_successor(raft: &Raft, me: NodeId, bound: Duration) -> Option<Successor> {
    let best = |m: &openraft::RaftMetrics<NodeId, SettNode>| -> Option<(NodeId, u64)> {
        let replication = m.replication.as_ref()?;
        m.membership_config
            .membership()
            .voter_ids()
            .filter(|id| *id != me)
            .map(|id| {
                let matched = replication
                    .get(&id)
                    .copied()
                    .flatten()
                    .map_or(0, |l| l.index);
                (id, matched)
            })
            .max_by_key(|(_, matched)| *matched)
    };
    {
        let m = raft.metrics();
        let m = m.borrow();
        if m.state != ServerState::Leader || best(&m).is_none() {
            return None;
        }
    }
    let caught_up = raft
        .wait(Some(bound))
        .metrics(
            |m| {
                m.state != ServerState::Leader
                    || best(m).is_some_and(|(_, matched)| Some(matched) >= m.last_log_index)
            },
            "a follower matched the leader's log",
        )
        .await;
    let m = match caught_up {
        Ok(m) => m,
        Err(e) => {
            tracing::info!("no follower caught up for a handover: {e}");
            return None;
        }
    };
    if m.state != ServerState::Leader {
        return None;
    }
    let (id, matched) = best(&m)?;
    let node = m.membership_config.membership().get_node(&id)?.clone();
    Some(Successor {
        id,
        node,
        last_log_index: matched,
    })
}

/// On the leader, once its Raft group has stopped (at `stopped`): asks
/// `successor` to campaign. Failures are logged only.
pub async fn hand_over(
    network: &GrpcNetworkFactory,
    successor: &Successor,
    stopped: Instant,
    timeout: Duration,
) {
    let ago_ms = u64::try_from(stopped.elapsed().as_millis()).unwrap_or(u64::MAX);
    match network
        .take_over(
            successor.id,
            &successor.node,
            ago_ms,
            successor.last_log_index,
            timeout,
        )
        .await
    {
        Ok(()) => tracing::info!(
            successor = format_args!("{:x}", successor.id),
            "leadership handed over"
        ),
        Err(e) => tracing::info!(
            successor = format_args!("{:x}", successor.id),
            "handover not taken: {e}"
        ),
    }
}

/// When this member last accepted an AppendEntries (a heartbeat or
/// entries) from a leader, kept by the peer service. Cheap to clone.
#[derive(Debug, Clone, Default)]
pub struct LastHeard(Arc<Mutex<Option<Instant>>>);

impl LastHeard {
    /// Records an accepted AppendEntries, now.
    pub fn touch(&self) {
        *self.0.lock() = Some(Instant::now());
    }

    /// When the last one was accepted.
    pub fn get(&self) -> Option<Instant> {
        *self.0.lock()
    }
}

/// Elections tried by a successor before it leaves the rest to its
/// election timer.
const CAMPAIGN_ATTEMPTS: u32 = 5;
/// Slack after the lease, for the other voters having heard the leader a
/// little later than this member.
const LEASE_SLACK: Duration = Duration::from_millis(10);

/// On the successor: checks a `TakeOver` from `from` (it must be the
/// leader this member knows, and this member a voter holding the
/// leader's last index), then campaigns in the background; `Err` says
/// why not.
pub fn accept(
    raft: &Raft,
    from: NodeId,
    last_heard: &LastHeard,
    stopped_ms_ago: u64,
    last_log_index: u64,
) -> Result<(), String> {
    let me = raft.metrics().borrow().id;
    {
        let m = raft.metrics();
        let m = m.borrow();
        if m.current_leader != Some(from) {
            return Err(format!(
                "member {me:x} follows {:?}, not {from:x}",
                m.current_leader
            ));
        }
        if !m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == me)
        {
            return Err(format!("member {me:x} is not a voter"));
        }
        if m.last_log_index.unwrap_or(0) < last_log_index {
            return Err(format!(
                "member {me:x} holds log index {:?}, behind {last_log_index}",
                m.last_log_index
            ));
        }
    }
    let now = Instant::now();
    let stopped = now
        .checked_sub(Duration::from_millis(stopped_ms_ago))
        .unwrap_or(now);
    // The lease runs from the last message from the leader; the leader's
    // own account (later than its last heartbeat) only when none was
    // recorded.
    let lease_start = last_heard.get().unwrap_or(stopped);
    tokio::spawn(campaign(raft.clone(), from, lease_start));
    Ok(())
}

/// Starts elections once the leader lease counted from `lease_start` has
/// run out, until this member leads, another member than `old_leader`
/// does, or [`CAMPAIGN_ATTEMPTS`] elections have been tried.
async fn campaign(raft: Raft, old_leader: NodeId, lease_start: Instant) {
    let config = raft.config().clone();
    let lease = Duration::from_millis(config.election_timeout_max);
    let retry = Duration::from_millis(config.heartbeat_interval.max(1));
    tokio::time::sleep_until((lease_start + lease + LEASE_SLACK).into()).await;
    let me = raft.metrics().borrow().id;
    for attempt in 1..=CAMPAIGN_ATTEMPTS {
        let leader = raft.metrics().borrow().current_leader;
        if leader.is_some_and(|l| l != old_leader) {
            tracing::debug!(?leader, "a new leader is known; handover campaign done");
            return;
        }
        if let Err(e) = raft.trigger().elect().await {
            tracing::debug!("handover campaign: {e}");
            return;
        }
        let won = raft
            .wait(Some(retry))
            .metrics(
                |m| m.current_leader.is_some_and(|l| l != old_leader),
                "a new leader",
            )
            .await;
        match won {
            Ok(m) if m.current_leader == Some(me) => {
                tracing::info!(attempt, "took over as leader");
                return;
            }
            Ok(_) => return,
            Err(_) => tracing::debug!(attempt, "handover election not won yet"),
        }
    }
    tracing::info!("handover elections not won; the election timers take over");
}
