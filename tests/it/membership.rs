//! Membership and leadership changes on running clusters: replacing a
//! node, joining, transferring leadership, a removed node coming back, a
//! rolling restart — each under a continuous write load whose every
//! acknowledged create must end up exactly once on every member.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use taskd::cluster::join::JoinAs;
use taskd::proto::{self, NodeRole};
use taskd::raft::SnapshotTuning;
use taskd::store::Backend;
use tonic::Code;

use crate::support::{create_n, eventually, TestCluster};
use crate::writers::{assert_every_node_consistent, stored_tasks, Via, Writers};

const WRITERS: usize = 4;

fn writers_on(cluster: &TestCluster, nodes: &[u64]) -> Writers {
    let addrs = nodes
        .iter()
        .map(|id| cluster.addr(*id).to_string())
        .collect();
    Writers::start(
        "",
        WRITERS,
        Via::Grpc {
            addrs,
            request_ids: true,
        },
    )
}

fn running_members(cluster: &TestCluster) -> BTreeMap<u64, String> {
    cluster
        .running_ids()
        .into_iter()
        .map(|id| (id, cluster.addr(id).to_string()))
        .collect()
}

/// The voters and learners the leader reports.
async fn membership(cluster: &TestCluster) -> (BTreeSet<u64>, BTreeSet<u64>) {
    let leader = cluster.wait_for_leader().await;
    let status = cluster.status(leader).await.expect("leader status");
    let voters = status.members.iter().filter(|m| m.voter).map(|m| m.node_id);
    let learners = status
        .members
        .iter()
        .filter(|m| !m.voter)
        .map(|m| m.node_id);
    (voters.collect(), learners.collect())
}

async fn change_voters(cluster: &TestCluster, via: u64, voters: &[u64]) {
    cluster
        .raft_client(via)
        .await
        .change_membership(proto::ChangeMembershipRequest {
            voter_ids: voters.to_vec(),
        })
        .await
        .expect("change membership");
}

/// Replacing a dead machine: remove node 3, add node 4 (it joins as a
/// learner and catches up), promote it. Writes are acknowledged in every
/// phase, and afterwards the members hold each acknowledged create once.
async fn replace_a_node_under_writes(cluster: &mut TestCluster) {
    let writers = writers_on(cluster, &[1, 2]);
    writers.wait_acked(20).await;

    let removed = cluster
        .raft_client(1)
        .await
        .remove_node(proto::RemoveNodeRequest { node_id: 3 })
        .await
        .expect("remove node 3")
        .into_inner();
    assert!(removed.members.iter().all(|m| m.node_id != 3));
    let status = eventually("the removed node 3 says it was removed", || async {
        let s = cluster.status(3).await?;
        (!s.not_serving_reason.is_empty()).then_some(s)
    })
    .await;
    assert_eq!(status.role(), NodeRole::NotAMember, "{status:?}");
    cluster.stop_node(3).await;
    let acked = writers.acked();
    writers.wait_acked(acked + 20).await;

    cluster.join_node(4, JoinAs::Learner).await;
    let added = cluster
        .raft_client(2)
        .await
        .add_learner(proto::AddLearnerRequest {
            node_id: 4,
            address: cluster.addr(4).to_string(),
            wait_timeout: None,
        })
        .await
        .expect("add learner (a no-op after the join: waits for the catch-up)")
        .into_inner();
    assert!(added.caught_up, "the learner caught up: {added:?}");
    assert_eq!(
        membership(cluster).await,
        (BTreeSet::from([1, 2]), BTreeSet::from([4]))
    );
    change_voters(cluster, 4, &[1, 2, 4]).await;
    assert_eq!(
        membership(cluster).await,
        (BTreeSet::from([1, 2, 4]), BTreeSet::new())
    );
    let acked = writers.acked();
    writers.wait_acked(acked + 20).await;

    let seen = writers.stop().await;
    cluster.wait_converged().await;
    assert_every_node_consistent(&running_members(cluster), &seen.outcomes).await;
}

/// A node started with `--join-as voter` on a cluster whose log was
/// compacted catches up by snapshot, becomes a voter by itself, and holds
/// exactly what the others hold.
async fn a_joining_voter_catches_up_by_snapshot(cluster: &mut TestCluster) {
    create_n(cluster, 1, "before join", 150).await;
    let leader = cluster.wait_for_leader().await;
    eventually("the leader purged its log", || async {
        (cluster.status(leader).await?.last_purged_index > 0).then_some(())
    })
    .await;
    cluster.join_node(4, JoinAs::Voter).await;
    eventually("node 4 is a voter", || async {
        membership(cluster).await.0.contains(&4).then_some(())
    })
    .await;
    create_n(cluster, 4, "after join", 10).await;
    cluster.wait_converged().await;
    let expected = stored_tasks(cluster.addr(1)).await;
    assert_eq!(expected.len(), 160);
    assert_eq!(stored_tasks(cluster.addr(4)).await, expected);
    let status = cluster.status(4).await.expect("status");
    assert_eq!(status.role(), NodeRole::Follower);
    assert!(status.not_serving_reason.is_empty());
}

/// TransferLeadership moves the leader to the node asked for, or to the
/// most up-to-date other voter; writes in flight are held, not failed.
async fn transfer_leadership_under_writes(cluster: &mut TestCluster) {
    let writers = writers_on(cluster, &[1, 2, 3]);
    writers.wait_acked(20).await;
    let leader = cluster.wait_for_leader().await;
    let target = cluster.follower().await;
    let moved = cluster
        .raft_client(leader)
        .await
        .transfer_leadership(proto::TransferLeadershipRequest { node_id: target })
        .await
        .expect("transfer")
        .into_inner();
    assert_eq!(moved.leader_id, target);
    assert_eq!(cluster.wait_for_leader().await, target);
    let held = moved.writes_held.expect("writes_held");
    eprintln!(
        "transfer {leader} -> {target}: writes held {:.1} ms",
        held.seconds as f64 * 1e3 + held.nanos as f64 / 1e6
    );

    // Asked of a follower, with 0: forwarded, and somebody else leads.
    let acked = writers.acked();
    writers.wait_acked(acked + 20).await;
    let follower = cluster.follower().await;
    let moved = cluster
        .raft_client(follower)
        .await
        .transfer_leadership(proto::TransferLeadershipRequest { node_id: 0 })
        .await
        .expect("transfer to any")
        .into_inner();
    assert_ne!(moved.leader_id, target);
    assert_eq!(cluster.wait_for_leader().await, moved.leader_id);

    let acked = writers.acked();
    writers.wait_acked(acked + 20).await;
    let seen = writers.stop().await;
    cluster.wait_converged().await;
    assert_every_node_consistent(&running_members(cluster), &seen.outcomes).await;
    assert_eq!(
        seen.outcomes
            .values()
            .filter(|o| matches!(o, taskd_chaos::set::Attempt::Unknown))
            .count(),
        0
    );
}

crate::on_both_backends!(
    replace_a_node_under_writes,
    transfer_leadership_under_writes
);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_joining_voter_catches_up_by_snapshot_sqlite() {
    let snapshots = SnapshotTuning {
        every: 50,
        keep_logs: 10,
        ..SnapshotTuning::default()
    };
    let mut cluster = TestCluster::start_with(3, Backend::Sqlite, snapshots).await;
    a_joining_voter_catches_up_by_snapshot(&mut cluster).await;
    cluster.shutdown().await;
}

/// Bad admin requests get the right code, a message that says what is
/// wrong, and change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn bad_admin_requests_are_refused_and_change_nothing() {
    let cluster = TestCluster::start(3, Backend::Sqlite).await;
    let before = membership(&cluster).await;
    let mut raft = cluster.raft_client(cluster.follower().await).await;
    let cases: Vec<(&str, Result<(), tonic::Status>, Code)> = vec![
        (
            "node id 0",
            raft.add_learner(proto::AddLearnerRequest {
                node_id: 0,
                address: "127.0.0.1:1".into(),
                wait_timeout: None,
            })
            .await
            .map(drop),
            Code::InvalidArgument,
        ),
        (
            "address without a port",
            raft.add_learner(proto::AddLearnerRequest {
                node_id: 9,
                address: "nohost".into(),
                wait_timeout: None,
            })
            .await
            .map(drop),
            Code::InvalidArgument,
        ),
        (
            "a member under another address",
            raft.add_learner(proto::AddLearnerRequest {
                node_id: 2,
                address: "127.0.0.1:1".into(),
                wait_timeout: None,
            })
            .await
            .map(drop),
            Code::FailedPrecondition,
        ),
        (
            "no voters",
            raft.change_membership(proto::ChangeMembershipRequest { voter_ids: vec![] })
                .await
                .map(drop),
            Code::InvalidArgument,
        ),
        (
            "a voter that is not a member",
            raft.change_membership(proto::ChangeMembershipRequest {
                voter_ids: vec![1, 2, 9],
            })
            .await
            .map(drop),
            Code::FailedPrecondition,
        ),
        (
            "removing a stranger",
            raft.remove_node(proto::RemoveNodeRequest { node_id: 9 })
                .await
                .map(drop),
            Code::FailedPrecondition,
        ),
        (
            "leadership to a stranger",
            raft.transfer_leadership(proto::TransferLeadershipRequest { node_id: 9 })
                .await
                .map(drop),
            Code::FailedPrecondition,
        ),
    ];
    for (what, result, code) in cases {
        let status = result.expect_err(what);
        assert_eq!(status.code(), code, "{what}: {status:?}");
        assert!(!status.message().is_empty(), "{what}");
    }
    assert_eq!(membership(&cluster).await, before);
    cluster.shutdown().await;
}

/// A node removed while it was down, restarted on its old data, still
/// believes it is a voter and stands for election: the members refuse it
/// as a stranger, so the cluster's term does not move, and the node says
/// in its status why it does not serve.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_removed_node_restarted_on_old_data_does_not_disturb_the_cluster() {
    let mut cluster = TestCluster::start(3, Backend::Sqlite).await;
    let leader = cluster.wait_for_leader().await;
    let gone = cluster.follower().await;
    cluster.stop_node(gone).await;
    cluster
        .raft_client(leader)
        .await
        .remove_node(proto::RemoveNodeRequest { node_id: gone })
        .await
        .expect("remove the stopped node");
    let stayed: Vec<u64> = cluster.running_ids();
    let term = cluster.status(leader).await.expect("status").term;

    cluster.restart_node(gone).await;
    let status = eventually("the removed node knows it was removed", || async {
        let s = cluster.status(gone).await?;
        (!s.not_serving_reason.is_empty()).then_some(s)
    })
    .await;
    assert_eq!(status.role(), NodeRole::NotAMember, "{status:?}");
    assert!(status.not_serving_reason.contains("removed"), "{status:?}");
    // It has stood for election (that is how it learned): nobody followed.
    for id in &stayed {
        let s = cluster.status(*id).await.expect("status");
        assert_eq!((s.term, s.leader_id), (term, leader), "node {id}");
    }
    let mut health = tonic_health::pb::health_client::HealthClient::new(crate::process::channel(
        cluster.addr(gone),
    ));
    let reply = health
        .check(tonic_health::pb::HealthCheckRequest::default())
        .await
        .expect("health")
        .into_inner();
    assert_eq!(
        reply.status(),
        tonic_health::pb::health_check_response::ServingStatus::NotServing
    );
    // Calls to it fail at once, saying why, so that clients go elsewhere.
    let refused = cluster
        .client(gone)
        .await
        .list_tasks(proto::ListTasksRequest {
            consistency: proto::ReadConsistency::Stale.into(),
            ..Default::default()
        })
        .await
        .expect_err("a removed node serves nothing");
    assert_eq!(refused.code(), Code::Unavailable);
    assert!(refused.message().contains("removed"), "{refused:?}");
    create_n(&cluster, leader, "after", 5).await;
    cluster.stop_node(gone).await;
    cluster.shutdown().await;
}

/// A rolling restart (each node stopped as on SIGTERM, then started again
/// on its data) under continuous writes: a stopping leader hands over
/// first, so writers see few failed attempts (each retried once on the
/// next node); every acknowledged create is there once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rolling_restart_under_writes_loses_nothing() {
    let mut cluster = TestCluster::start(3, Backend::Sqlite).await;
    let writers = writers_on(&cluster, &[1, 2, 3]);
    writers.wait_acked(20).await;
    // The leader last, so that its hand-over is exercised with a full cluster.
    let leader = cluster.wait_for_leader().await;
    let mut order: Vec<u64> = cluster
        .running_ids()
        .into_iter()
        .filter(|id| *id != leader)
        .collect();
    order.push(leader);
    for id in order {
        cluster.stop_node(id).await;
        let acked = writers.acked();
        writers.wait_acked(acked + 10).await;
        cluster.restart_node(id).await;
        cluster.wait_converged().await;
    }
    let seen = writers.stop().await;
    cluster.wait_converged().await;
    eprintln!(
        "rolling restart: {} creates, {} failed attempts retried, {} creates failed twice",
        seen.outcomes.len(),
        seen.retries,
        seen.failed_twice
    );
    assert_eq!(
        seen.failed_twice, 0,
        "a retry-once client would have failed"
    );
    assert_every_node_consistent(&running_members(&cluster), &seen.outcomes).await;
    assert_eq!(
        seen.outcomes
            .values()
            .filter(|o| matches!(o, taskd_chaos::set::Attempt::Unknown))
            .count(),
        0
    );
    cluster.shutdown().await;
}

/// A stopping leader hands leadership over before it stops: when its
/// stop returns, another node already leads. (Without the hand-over the
/// followers would still be waiting out the dead leader's lease.)
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_stopping_leader_hands_over_first() {
    let mut cluster = TestCluster::start(3, Backend::Sqlite).await;
    let leader = cluster.wait_for_leader().await;
    cluster.stop_node(leader).await;
    let mut leaders = Vec::new();
    for id in cluster.running_ids() {
        leaders.push(cluster.status(id).await.expect("status").leader_id);
    }
    assert!(
        leaders.iter().any(|l| *l != leader && *l != 0),
        "no new leader at the moment the old one stopped: {leaders:?}"
    );
    let next = cluster.wait_for_leader().await;
    tokio::time::timeout(Duration::from_secs(5), create_n(&cluster, next, "after", 1))
        .await
        .expect("writes go on");
    cluster.shutdown().await;
}

/// With 5 voters the target needs followers' votes too (they refuse inside
/// openraft's leader lease): the transfer still moves leadership to the
/// asked node, and removing the leader hands over, then removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn transfer_and_leader_removal_with_five_voters() {
    let mut cluster = TestCluster::start(5, Backend::Sqlite).await;
    let writers = writers_on(&cluster, &[1, 2, 3, 4, 5]);
    writers.wait_acked(20).await;
    for _ in 0..2 {
        let leader = cluster.wait_for_leader().await;
        let target = cluster.follower().await;
        let moved = cluster
            .raft_client(leader)
            .await
            .transfer_leadership(proto::TransferLeadershipRequest { node_id: target })
            .await
            .expect("transfer")
            .into_inner();
        assert_eq!(moved.leader_id, target);
        assert_eq!(cluster.wait_for_leader().await, target);
    }
    let leader = cluster.wait_for_leader().await;
    let left = cluster
        .raft_client(leader)
        .await
        .remove_node(proto::RemoveNodeRequest { node_id: leader })
        .await
        .expect("remove the leader")
        .into_inner();
    assert!(left.members.iter().all(|m| m.node_id != leader));
    cluster.stop_node(leader).await;
    let acked = writers.acked();
    writers.wait_acked(acked + 20).await;
    let seen = writers.stop().await;
    cluster.wait_converged().await;
    assert_every_node_consistent(&running_members(&cluster), &seen.outcomes).await;
    cluster.shutdown().await;
}
