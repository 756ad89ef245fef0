//! The gRPC health service (`grpc.health.v1.Health`) that readiness and
//! liveness probes use, against a real three-member cluster:
//!
//! 1. once the cluster is up, Check("") on every member reaches SERVING,
//!    and Check("liveness") is SERVING;
//! 2. a name the member does not report is NOT_FOUND;
//! 3. after two members stop, the survivor (with no quorum, so no leader)
//!    reaches NOT_SERVING for "" while "liveness" stays SERVING.
//!
//! Statuses are polled until they reach the expected value within a
//! bound; no test depends on how fast they get there.
//!
//! Needs `target/<profile>/sett` (`cargo build -p sett-server --bin sett`).

#[path = "../src/cluster.rs"]
#[allow(dead_code)]
mod cluster;

use cluster::{run_scenario, Cluster, ClusterOptions};
use std::time::{Duration, Instant};
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

/// Bound on a member's status reaching the expected value.
const STATUS_TIMEOUT: Duration = Duration::from_secs(60);
/// Pause between two checks.
const POLL: Duration = Duration::from_millis(200);
/// Bound on one Check call.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// One Check of `service` on `url`: the status, or the gRPC error code.
async fn check(url: &str, service: &str) -> Result<ServingStatus, String> {
    let call = async {
        let channel = tonic::transport::Endpoint::from_shared(url.to_owned())
            .map_err(|e| format!("endpoint: {e}"))?
            .connect()
            .await
            .map_err(|e| format!("connect: {e}"))?;
        let mut client = HealthClient::new(channel);
        let resp = client
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .map_err(|s| format!("{:?}: {}", s.code(), s.message()))?;
        Ok(resp.into_inner().status())
    };
    tokio::time::timeout(CALL_TIMEOUT, call)
        .await
        .unwrap_or_else(|_| Err("timed out".into()))
}

/// Polls member `i` until Check(`service`) is `want`.
async fn wait_status(c: &Cluster, i: usize, service: &str, want: ServingStatus) {
    let deadline = Instant::now() + STATUS_TIMEOUT;
    loop {
        let got = check(&c.client_url(i), service).await;
        if got == Ok(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "member {}: Check({service:?}) is {got:?}, not {want:?}, after {STATUS_TIMEOUT:?}; log tail:\n{}",
            c.name(i),
            c.log_tail(i)
        );
        tokio::time::sleep(POLL).await;
    }
}

#[test]
fn health_tracks_leader_and_quorum() {
    run_scenario("health_tracks_leader_and_quorum", async {
        let mut c = Cluster::start(ClusterOptions::default());
        for i in 0..c.len() {
            c.wait_ready(i).await;
        }
        for i in 0..c.len() {
            wait_status(&c, i, "", ServingStatus::Serving).await;
            assert_eq!(
                check(&c.client_url(i), "liveness").await,
                Ok(ServingStatus::Serving),
                "member {}",
                c.name(i)
            );
        }
        let unknown = check(&c.client_url(0), "no.such.Service").await;
        assert!(
            matches!(&unknown, Err(e) if e.starts_with("NotFound")),
            "unknown service: {unknown:?}"
        );

        // Stop the leader and one other member: the survivor has no quorum.
        let leader = c.leader().await;
        let survivor = (0..c.len()).find(|&i| i != leader).expect("a follower");
        for i in 0..c.len() {
            if i != survivor {
                c.stop(i);
            }
        }
        wait_status(&c, survivor, "", ServingStatus::NotServing).await;
        assert_eq!(
            check(&c.client_url(survivor), "liveness").await,
            Ok(ServingStatus::Serving)
        );
    });
}
