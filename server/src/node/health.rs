//! The gRPC health service (`grpc.health.v1.Health`) on the client URLs.
//!
//! Two service names answer:
//! - `""` (the member as a whole, what `grpc_health_probe` and Kubernetes'
//!   `grpc` probes ask by default): `SERVING` while a linearizable read
//!   would succeed on this member, i.e. it knows a leader, that leader
//!   confirms its leadership with a quorum (ReadIndex), and this member
//!   has applied the leader's commit index. Checked every
//!   [`CHECK_INTERVAL`] with the election timeout as the bound; it turns
//!   `NOT_SERVING` as soon as the member sees no leader, when a check
//!   fails, and when the member stops. It starts `NOT_SERVING`.
//! - [`LIVENESS_SERVICE`]: `SERVING` while the process serves gRPC, whether
//!   or not the cluster has a quorum (a liveness probe must not restart
//!   members for an outage elsewhere).
//!
//! Any other name is answered with `NOT_FOUND`, as the health protocol
//! says. The member's status also feeds `/health` on the metrics URLs
//! ([`crate::metrics::http`]).

use super::Proposer;
use std::time::Duration;
use tonic_health::pb::health_server::{Health, HealthServer};
use tonic_health::server::HealthReporter;
use tonic_health::ServingStatus;

/// The service name that reports only that the process serves.
pub const LIVENESS_SERVICE: &str = "liveness";

/// How often the readiness of the member is checked.
pub const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// The health service, and the task that keeps its statuses current until
/// `stopped` turns true. `check_timeout` bounds one readiness check.
pub(crate) fn service(
    proposer: Proposer,
    check_timeout: Duration,
    stopped: tokio::sync::watch::Receiver<bool>,
) -> HealthServer<impl Health> {
    let (reporter, server) = tonic_health::server::health_reporter();
    tokio::spawn(track(reporter, proposer, check_timeout, stopped));
    server
}

async fn track(
    reporter: HealthReporter,
    proposer: Proposer,
    check_timeout: Duration,
    mut stopped: tokio::sync::watch::Receiver<bool>,
) {
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    reporter
        .set_service_status(LIVENESS_SERVICE, ServingStatus::Serving)
        .await;
    let mut metrics = proposer.raft().metrics();
    let mut tick = tokio::time::interval(CHECK_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last = ServingStatus::NotServing;
    loop {
        let check = tokio::select! {
            _ = tick.tick() => true,
            changed = metrics.changed() => {
                if changed.is_err() {
                    break;
                }
                // Between checks, only the loss of the leader is acted on
                // (metrics change with every applied entry).
                if metrics.borrow_and_update().current_leader.is_some() {
                    continue;
                }
                false
            }
            stop = stopped.wait_for(|s| *s) => {
                drop(stop);
                break;
            }
        };
        let status = if check {
            match proposer.read_barrier(check_timeout).await {
                Ok(()) => ServingStatus::Serving,
                Err(e) => {
                    tracing::debug!("health: not serving: {e}");
                    ServingStatus::NotServing
                }
            }
        } else {
            ServingStatus::NotServing
        };
        if status != last {
            tracing::info!(?status, "health status changed");
            last = status;
        }
        proposer
            .metrics()
            .set_ready(status == ServingStatus::Serving);
        reporter.set_service_status("", status).await;
    }
    proposer.metrics().set_ready(false);
    reporter
        .set_service_status("", ServingStatus::NotServing)
        .await;
    reporter
        .set_service_status(LIVENESS_SERVICE, ServingStatus::NotServing)
        .await;
}
