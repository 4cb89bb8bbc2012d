//! `taskd recover --force-new-cluster`: a majority lost for good, and the
//! way back on the one survivor.

use std::collections::BTreeMap;
use std::process::Command;

use taskd::proto::ReadConsistency;

use crate::process::{
    cluster_status, create_acknowledged, free_ports, get_task, spawn_node, wait_for_leader,
    wait_serving, TASKD,
};
use crate::support::init_tracing;

/// Two of three nodes die for good: no write can commit. `taskd recover
/// --force-new-cluster` on the stopped survivor's data, then a start with
/// `--initial-cluster` naming only it, gives a one-node cluster that serves
/// every task acknowledged before and takes writes again. Without the flag
/// the command refuses and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn force_new_cluster_brings_back_a_lone_survivor() {
    init_tracing();
    let dir = tempfile::tempdir().expect("temp dir");
    let ports = free_ports(3);
    let members: BTreeMap<u64, String> = (1..=3)
        .map(|id| (id, format!("127.0.0.1:{}", ports[id as usize - 1])))
        .collect();
    let mut nodes: BTreeMap<u64, _> = members
        .keys()
        .map(|id| (*id, spawn_node(dir.path(), *id, &members)))
        .collect();
    wait_for_leader(&members).await;
    let mut acknowledged = Vec::new();
    for i in 0..10 {
        acknowledged.push(create_acknowledged(&members[&1], &format!("before the loss {i}")).await);
    }
    // Node 1 must hold them all before the others die (a write is
    // acknowledged once a majority has it, not every node).
    crate::process::wait_all_applied(&members).await;
    for id in [2, 3] {
        nodes.remove(&id).expect("node").kill_9();
    }
    let mut survivor = nodes.remove(&1).expect("node 1");
    survivor.signal("TERM");
    survivor.wait_exit().await;

    let data_dir = dir.path().join("node1");
    let refused = Command::new(TASKD)
        .args(["recover", "--data-dir"])
        .arg(&data_dir)
        .output()
        .expect("run taskd recover");
    assert!(
        !refused.status.success(),
        "recover without --force-new-cluster must refuse"
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("--force-new-cluster"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
    let recovered = Command::new(TASKD)
        .args(["recover", "--force-new-cluster", "--data-dir"])
        .arg(&data_dir)
        .output()
        .expect("run taskd recover");
    assert!(
        recovered.status.success(),
        "recover: {}",
        String::from_utf8_lossy(&recovered.stderr)
    );

    let alone = BTreeMap::from([(1, members[&1].clone())]);
    let _node = spawn_node(dir.path(), 1, &alone);
    wait_serving(&alone[&1]).await;
    for id in &acknowledged {
        get_task(&alone[&1], id, ReadConsistency::Linearizable).await;
    }
    create_acknowledged(&alone[&1], "after the recovery").await;
    let status = cluster_status(&alone[&1]).await.expect("status");
    assert_eq!(status.leader_id, 1);
    let ids: Vec<u64> = status.members.iter().map(|m| m.node_id).collect();
    assert_eq!(ids, vec![1], "a one-node cluster");
}
