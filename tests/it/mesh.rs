//! Service-mesh friendliness: plain h2c on one port, health Watch, client
//! deadlines honoured, graceful shutdown that does not hang on open streams.

use std::sync::atomic::{AtomicBool, Ordering};

use taskd::server::DRAIN_TIMEOUT;
use taskd::store::Backend;
use tokio_stream::StreamExt;
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

use crate::support::{create_request, run_on, TestCluster};

/// A Health/Watch stream sees SERVING, then NOT_SERVING while the node is
/// stopping (before the stop is over), and then the server ends the stream
/// (cleanly, status OK) before `DRAIN_TIMEOUT`. A stream the server did not
/// end would be left open until the drain gives up after `DRAIN_TIMEOUT`
/// and the node closes, i.e. it would have held up the stop.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn health_watch_follows_shutdown() {
    run_on(Backend::Sqlite, 3, async |cluster: &mut TestCluster| {
        let node = cluster.follower().await;
        let channel =
            tonic::transport::Channel::from_shared(format!("http://{}", cluster.addr(node)))
                .unwrap()
                .connect_lazy();
        let mut stream = HealthClient::new(channel)
            .watch(HealthCheckRequest {
                service: "taskd.v1.TaskService".into(),
            })
            .await
            .expect("watch")
            .into_inner();
        let mut statuses = Vec::new();
        while statuses.last() != Some(&(ServingStatus::Serving as i32)) {
            let update = stream.next().await.expect("an update").expect("a status");
            statuses.push(update.status);
        }
        let stopped = AtomicBool::new(false);
        let stop = async {
            cluster.stop_node(node).await;
            stopped.store(true, Ordering::SeqCst);
        };
        let watch = async {
            let mut rest = Vec::new();
            loop {
                match stream.next().await {
                    Some(Ok(update)) => {
                        if update.status == ServingStatus::NotServing as i32 {
                            assert!(
                                !stopped.load(Ordering::SeqCst),
                                "NOT_SERVING arrived while the node was stopping, not after"
                            );
                        }
                        rest.push(update.status);
                    }
                    Some(Err(status)) => {
                        panic!("the stream was cut, not ended, after {rest:?}: {status:?}")
                    }
                    None => return rest,
                }
            }
        };
        let stopping = std::time::Instant::now();
        let ((), (rest, ended_after)) = tokio::join!(stop, async {
            let rest = watch.await;
            (rest, stopping.elapsed())
        });
        assert!(
            ended_after < DRAIN_TIMEOUT,
            "the server ended the stream itself, {ended_after:?} into the stop, before \
             the drain would have given up on it ({DRAIN_TIMEOUT:?})"
        );
        assert_eq!(
            rest.last(),
            Some(&(ServingStatus::NotServing as i32)),
            "the stream's last word before its clean end was NOT_SERVING: {rest:?}"
        );
        cluster.restart_node(node).await;
    })
    .await
}

/// A client deadline shorter than taskd's own wait is honoured with
/// DEADLINE_EXCEEDED (not UNAVAILABLE, not CANCELLED) when no leader can be found.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn client_deadline_is_deadline_exceeded() {
    run_on(Backend::Sqlite, 3, async |cluster: &mut TestCluster| {
        let leader = cluster.wait_for_leader().await;
        let survivor = cluster.follower().await;
        for id in cluster.running_ids() {
            if id != survivor {
                cluster.stop_node(id).await;
            }
        }
        let _ = leader;
        let mut request = tonic::Request::new(create_request("too late"));
        request.set_timeout(std::time::Duration::from_millis(400));
        let err = cluster
            .client(survivor)
            .await
            .create_task(request)
            .await
            .expect_err("no leader");
        assert_eq!(err.code(), Code::DeadlineExceeded, "{err:?}");
    })
    .await
}

/// A call in flight when the node is told to stop is finished, not cut: it
/// gets the server's own answer (here an unknown outcome for want of a
/// quorum, after taskd's bounded wait) instead of a broken connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shutdown_drains_in_flight_calls() {
    run_on(Backend::Sqlite, 3, async |cluster: &mut TestCluster| {
        let leader = cluster.wait_for_leader().await;
        for id in cluster.running_ids() {
            if id != leader {
                cluster.stop_node(id).await;
            }
        }
        let mut client = cluster.client(leader).await;
        let in_flight =
            tokio::spawn(async move { client.create_task(create_request("in flight")).await });
        // The call is in flight once the leader has appended it to its log.
        crate::support::eventually("the create reached the leader's log", || async {
            let status = cluster.status(leader).await?;
            (status.last_log_index > status.last_applied_index).then_some(())
        })
        .await;
        cluster.stop_node(leader).await;
        let err = in_flight.await.expect("join").expect_err("no quorum");
        assert_eq!(err.code(), Code::Unknown, "{err:?}");
        assert!(
            std::error::Error::source(&err).is_none(),
            "an answer, not a broken connection: {err:?}"
        );
        assert!(
            err.message().contains("quorum"),
            "taskd's own answer: {}",
            err.message()
        );
    })
    .await
}
