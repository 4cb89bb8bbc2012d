//! Peers apart: `--peer-listen` keeps peer RPCs off the public port, and
//! peer certificates alone are cluster credentials.

use std::process::Stdio;

use taskd::proto::raft_service_client::RaftServiceClient;
use taskd::proto::{CreateTaskRequest, GetClusterStatusRequest, GetTaskRequest, VoteRequest};
use taskd::security::peer::{Credentials, Dialer};
use tonic::Code;

use crate::process::free_ports;
use crate::secure_cluster::{SecureCluster, Secured, ADMIN, READER, WRITER};
use crate::security::vote_payload;

/// With `--peer-listen`, peers talk on a port of their own (the member
/// addresses), the public port refuses peer RPCs, and clients on the
/// public ports are served, a follower's writes forwarded to the leader.
#[tokio::test]
async fn peer_rpcs_on_a_port_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let ports = free_ports(6);
    let public: Vec<String> = ports[..3]
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let peer: Vec<String> = ports[3..]
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .collect();
    let initial = (0..3)
        .map(|i| format!("{}={}", i + 1, peer[i]))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes = Vec::new();
    for i in 0..3 {
        let args: Vec<String> = [
            "serve",
            "--node-id",
            &(i + 1).to_string(),
            "--listen",
            &public[i],
            "--peer-listen",
            &peer[i],
            "--data-dir",
            &dir.path().join(format!("n{i}")).display().to_string(),
            "--initial-cluster",
            &initial,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        nodes.push(crate::process::TaskdProcess::spawn(
            &format!("node {} with a peer port", i + 1),
            &args,
            &dir.path().join(format!("n{i}.stderr")),
            Stdio::null(),
        ));
    }
    for addr in &public {
        crate::process::wait_serving(addr).await;
    }
    for addr in &public {
        let mut client = taskd::proto::task_service_client::TaskServiceClient::new(
            crate::process::channel(addr),
        );
        client
            .create_task(CreateTaskRequest {
                title: format!("via {addr}"),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("create via the public port {addr}: {s:?}"));
        let mut raft = RaftServiceClient::new(crate::process::channel(addr));
        let refused = raft
            .vote(VoteRequest {
                payload: vote_payload(0, 2),
            })
            .await
            .expect_err("a Vote on the public port");
        assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
        raft.get_cluster_status(GetClusterStatusRequest {})
            .await
            .expect("status on the public port");
    }
    let status = RaftServiceClient::new(crate::process::channel(&public[0]))
        .get_cluster_status(GetClusterStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    let addresses: Vec<&str> = status.members.iter().map(|m| m.address.as_str()).collect();
    assert_eq!(
        addresses,
        peer.iter().map(String::as_str).collect::<Vec<_>>()
    );
    drop(nodes);
}

/// Peer mTLS alone is a cluster credential: three TLS nodes without a
/// secret form a cluster (their certificates come from --peer-ca-file),
/// and replicate a write; a TLS client without a peer certificate may not
/// vote.
#[tokio::test]
async fn peer_certificates_are_cluster_credentials() {
    let secured = Secured {
        tls: true,
        tokens: true,
        ..Default::default()
    };
    let cluster = SecureCluster::start(3, secured, &[]).await;
    let addr = cluster.members[&2].clone();
    let created = cluster
        .tasks(&addr, Some(WRITER))
        .create_task(CreateTaskRequest {
            title: "over peer mTLS".into(),
            ..Default::default()
        })
        .await
        .expect("a write through a follower")
        .into_inner()
        .task
        .unwrap();
    for addr in cluster.members.values() {
        cluster
            .tasks(addr, Some(READER))
            .get_task(GetTaskRequest {
                id: created.id.clone(),
                consistency: 0,
            })
            .await
            .unwrap_or_else(|s| panic!("read at {addr}: {s:?}"));
    }
    let mut stranger = RaftServiceClient::new(cluster.dialer(Some(ADMIN)).channel(&addr).unwrap());
    let refused = stranger
        .vote(VoteRequest {
            payload: vote_payload(0, 2),
        })
        .await
        .expect_err("a Vote without a peer certificate");
    assert_eq!(refused.code(), Code::PermissionDenied, "{refused:?}");
    let anonymous = Dialer::new(cluster.client_tls(false), Credentials::default());
    let refused = RaftServiceClient::new(anonymous.channel(&addr).unwrap())
        .vote(VoteRequest {
            payload: vote_payload(0, 2),
        })
        .await
        .expect_err("a Vote with no credential at all");
    assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
}
