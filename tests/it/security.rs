//! Issue 9's security on real processes: RaftService for members only,
//! TLS and mutual TLS, client tokens and roles, a refused open start.

use std::process::{Command, Stdio};

use openraft::Vote;
use taskd::proto::raft_service_client::RaftServiceClient;
use taskd::proto::{
    CreateTaskRequest, GetClusterStatusRequest, GetTaskRequest, ListTasksRequest,
    RemoveNodeRequest, VoteRequest,
};
use taskd::security::peer::{Credentials, Dialer};
use tonic::transport::{Certificate, ClientTlsConfig};
use tonic::Code;

use crate::process::{free_ports, TASKD};
use crate::secure_cluster::{SecureCluster, Secured, ADMIN, READER, SECRET, WRITER};
use crate::support::eventually;

/// An encoded openraft vote request for `term`: granted, it would depose
/// the leader.
pub(crate) fn vote_payload(term: u64, candidate: u64) -> Vec<u8> {
    let request = openraft::raft::VoteRequest::<u64>::new(Vote::new(term, candidate), None);
    taskd::raft::codec::encode(&request).unwrap()
}

/// Without credentials a RaftService Vote is UNAUTHENTICATED, with the
/// wrong secret PERMISSION_DENIED, and a client token proves no membership
/// either (PERMISSION_DENIED); the cluster keeps its leader and term
/// throughout. With the right secret the same call is served (a stale
/// term, so the vote is refused by Raft, not by the door).
#[tokio::test]
async fn vote_needs_cluster_credentials() {
    let secured = Secured {
        secret: true,
        tokens: true,
        ..Default::default()
    };
    let cluster = SecureCluster::start(3, secured, &[]).await;
    let before = cluster.leader_and_term().await;
    assert_eq!(before.len(), 1, "one leader and term: {before:?}");
    let (_, term) = *before.first().unwrap();
    let target = cluster.members[&1].clone();
    let attack = || VoteRequest {
        payload: vote_payload(term + 100, 2),
    };

    let anonymous = Dialer::default();
    let wrong = cluster.peer_dialer("not-the-cluster-secret-0123");
    let admin = cluster.dialer(Some(ADMIN));
    for (who, dialer, want) in [
        ("no credentials", &anonymous, Code::Unauthenticated),
        ("a wrong secret", &wrong, Code::PermissionDenied),
        ("an admin token", &admin, Code::PermissionDenied),
    ] {
        let mut client = RaftServiceClient::new(dialer.channel(&target).unwrap());
        let refused = client.vote(attack()).await.expect_err(who);
        assert_eq!(refused.code(), want, "{who}: {refused:?}");
        let mut append = RaftServiceClient::new(dialer.channel(&target).unwrap());
        let refused = append
            .append_entries(taskd::proto::AppendEntriesRequest { payload: vec![1] })
            .await
            .expect_err(who);
        assert_eq!(
            refused.code(),
            want,
            "AppendEntries with {who}: {refused:?}"
        );
    }
    let after = cluster.leader_and_term().await;
    assert_eq!(before, after, "the refused votes moved the cluster");

    let mut member = RaftServiceClient::new(cluster.peer_dialer(SECRET).channel(&target).unwrap());
    member
        .vote(VoteRequest {
            payload: vote_payload(0, 2),
        })
        .await
        .expect("a member's vote request is served");
    assert_eq!(cluster.leader_and_term().await, before);
}

/// A cluster with a secret, TLS between everyone and client tokens takes
/// writes through any node (forwarded calls keep the writer's identity),
/// and goes on after its leader is killed, losing no acknowledged write.
#[tokio::test]
async fn secured_cluster_takes_writes_and_survives_killing_the_leader() {
    secured_cluster_survives(false).await;
}

/// The same on MySQL, a database per node.
#[tokio::test]
async fn secured_cluster_on_mysql_survives_killing_the_leader() {
    secured_cluster_survives(true).await;
}

async fn secured_cluster_survives(mysql: bool) {
    let secured = Secured {
        secret: true,
        tls: true,
        tokens: true,
        mysql,
        ..Default::default()
    };
    let mut cluster = SecureCluster::start(3, secured, &[]).await;
    let leader = cluster.wait_for_leader().await;
    let mut ids = Vec::new();
    for (round, id) in cluster.members.keys().enumerate() {
        let mut client = cluster.tasks(&cluster.members[id], Some(WRITER));
        let created = client
            .create_task(CreateTaskRequest {
                title: format!("before {round} via {id}"),
                request_id: format!("before-{round}"),
                ..Default::default()
            })
            .await
            .unwrap_or_else(|s| panic!("create via node {id}: {s:?}"));
        ids.push(created.into_inner().task.unwrap().id);
    }
    cluster.kill_9(leader);
    let new_leader = cluster.wait_for_leader().await;
    assert_ne!(new_leader, leader);
    let survivor = cluster
        .nodes
        .keys()
        .copied()
        .find(|id| *id != new_leader)
        .unwrap();
    let addr = cluster.members[&survivor].clone();
    let request = CreateTaskRequest {
        title: "after the kill".into(),
        request_id: "after-kill".into(),
        ..Default::default()
    };
    let created = eventually("a write after the leader's death", || {
        let mut client = cluster.tasks(&addr, Some(WRITER));
        let request = request.clone();
        async move {
            match client.create_task(request).await {
                Ok(r) => Some(r.into_inner().task.unwrap().id),
                Err(s) if matches!(s.code(), Code::Unavailable | Code::DeadlineExceeded) => None,
                Err(s) => panic!("create after the kill: {s:?}"),
            }
        }
    })
    .await;
    ids.push(created);
    let mut reader = cluster.tasks(&addr, Some(READER));
    for id in &ids {
        reader
            .get_task(GetTaskRequest {
                id: id.clone(),
                consistency: 0,
            })
            .await
            .unwrap_or_else(|s| panic!("acknowledged task {id} lost: {s:?}"));
    }
    cluster.drop_databases().await;
}

/// Each role gets exactly its calls, on a follower too (which forwards
/// writes with the caller's token, and judges admin calls itself).
#[tokio::test]
async fn each_role_gets_exactly_its_calls() {
    let secured = Secured {
        secret: true,
        tokens: true,
        ..Default::default()
    };
    let cluster = SecureCluster::start(3, secured, &[]).await;
    let leader = cluster.wait_for_leader().await;
    let follower = *cluster.members.keys().find(|id| **id != leader).unwrap();
    let addr = cluster.members[&follower].clone();
    let mut n = 0;
    for (token, may_write, may_admin) in [
        (READER, false, false),
        (WRITER, true, false),
        (ADMIN, true, true),
    ] {
        let mut tasks = cluster.tasks(&addr, Some(token));
        n += 1;
        let create = tasks
            .create_task(CreateTaskRequest {
                title: format!("by {token}"),
                request_id: format!("role-{n}"),
                ..Default::default()
            })
            .await;
        match (&create, may_write) {
            (Ok(_), true) => {}
            (Err(s), false) if s.code() == Code::PermissionDenied => {}
            _ => panic!("{token} create: {create:?}"),
        }
        tasks
            .list_tasks(ListTasksRequest::default())
            .await
            .unwrap_or_else(|s| panic!("{token} list: {s:?}"));
        let mut raft = cluster.raft(&addr, Some(token));
        raft.get_cluster_status(GetClusterStatusRequest {})
            .await
            .unwrap_or_else(|s| panic!("{token} status: {s:?}"));
        // Removing a node that never existed: an admin is let in (and
        // refused by the cluster for the id), anyone else is not.
        let remove = raft.remove_node(RemoveNodeRequest { node_id: 77 }).await;
        match remove {
            Err(s) if s.code() == Code::PermissionDenied => assert!(!may_admin, "{token}: {s:?}"),
            other => assert!(may_admin, "{token} remove: {other:?}"),
        }
    }
    for (who, token) in [
        ("no token", None),
        ("an unknown token", Some("nobody-token-0123456789")),
    ] {
        let refused = cluster
            .tasks(&addr, token)
            .list_tasks(ListTasksRequest::default())
            .await
            .expect_err(who);
        assert_eq!(refused.code(), Code::Unauthenticated, "{who}: {refused:?}");
    }
    // Health and reflection stay open.
    assert!(crate::process::is_serving(&addr).await);
}

/// Plaintext calls to a TLS node fail, so do clients that trust another
/// CA; clients with the CA connect. With --tls-client-ca-file, a client
/// without a certificate is refused at the handshake.
#[tokio::test]
async fn tls_and_mutual_tls() {
    let secured = Secured {
        secret: true,
        tls: true,
        client_certs: true,
        ..Default::default()
    };
    let cluster = SecureCluster::start(1, secured, &[]).await;
    let addr = cluster.members[&1].clone();
    let health = |dialer: Dialer| {
        let addr = addr.clone();
        async move {
            tonic_health::pb::health_client::HealthClient::new(dialer.channel(&addr).unwrap())
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
        }
    };
    let plaintext = health(Dialer::default()).await;
    assert!(plaintext.is_err(), "plaintext to a TLS node: {plaintext:?}");
    let other_ca = crate::pki::Ca::new("another CA");
    let stranger = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(other_ca.pem()));
    let untrusted = health(Dialer::new(Some(stranger), Credentials::default())).await;
    assert!(untrusted.is_err(), "a client of another CA: {untrusted:?}");
    let no_cert = health(Dialer::new(
        cluster.client_tls(false),
        Credentials::default(),
    ))
    .await;
    assert!(
        no_cert.is_err(),
        "mTLS without a client certificate: {no_cert:?}"
    );
    health(Dialer::new(
        cluster.client_tls(true),
        Credentials::default(),
    ))
    .await
    .expect("a client with the CA and a certificate");
}

/// A certificate reload on SIGHUP takes effect for new connections, with
/// no restart.
#[tokio::test]
async fn certificates_reload_on_sighup() {
    let secured = Secured {
        secret: true,
        tls: true,
        ..Default::default()
    };
    let cluster = SecureCluster::start(1, secured, &[]).await;
    let addr = cluster.members[&1].clone();
    let trusts = |ca: String| {
        let addr = addr.clone();
        async move {
            let tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
            let dialer = Dialer::new(Some(tls), Credentials::default());
            tonic_health::pb::health_client::HealthClient::new(dialer.channel(&addr).unwrap())
                .check(tonic_health::pb::HealthCheckRequest::default())
                .await
                .is_ok()
        }
    };
    assert!(trusts(cluster.ca.pem()).await);
    let rotated = crate::pki::Ca::new("rotated CA");
    assert!(
        !trusts(rotated.pem()).await,
        "served a certificate of the new CA already"
    );
    // Replace the files in place, as a certificate manager does.
    let staging = tempfile::tempdir().unwrap();
    let fresh = rotated.issue(staging.path(), "node");
    std::fs::copy(&fresh.cert, &cluster.node_cert.cert).unwrap();
    std::fs::copy(&fresh.key, &cluster.node_cert.key).unwrap();
    std::fs::write(cluster.path("ca.pem"), rotated.pem()).unwrap();
    cluster.nodes[&1].signal("HUP");
    eventually("the node serves the reloaded certificate", || {
        let trusted = trusts(rotated.pem());
        async move { trusted.await.then_some(()) }
    })
    .await;
    assert!(
        !trusts(cluster.ca.pem()).await,
        "still serving the old certificate"
    );
}

/// `taskd serve` on a non-loopback address without cluster credentials
/// refuses to start and says what to add; `--insecure-no-cluster-auth` is
/// the explicit way out.
#[tokio::test]
async fn open_listen_without_cluster_credentials_refuses_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_ports(1)[0];
    let args = |extra: &[&str]| {
        let mut args = vec![
            "serve".to_string(),
            "--node-id".into(),
            "1".into(),
            "--listen".into(),
            format!("0.0.0.0:{port}"),
            "--advertise".into(),
            format!("127.0.0.1:{port}"),
            "--data-dir".into(),
            dir.path().join("n1").display().to_string(),
            "--initial-cluster".into(),
            format!("1=127.0.0.1:{port}"),
        ];
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    };
    let refused = Command::new(TASKD)
        .args(args(&[]))
        .env_remove("TASKD_CLUSTER_SECRET_FILE")
        .stdin(Stdio::null())
        .output()
        .expect("run taskd");
    assert!(!refused.status.success(), "started open to the network");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("--cluster-secret-file") && stderr.contains("--insecure-no-cluster-auth"),
        "the error says what to add: {stderr}"
    );
    assert!(
        !dir.path().join("n1").exists(),
        "a refused start wrote data"
    );

    let mut open = crate::process::TaskdProcess::spawn(
        "open node",
        &args(&["--insecure-no-cluster-auth"]),
        &dir.path().join("open.stderr"),
        Stdio::null(),
    );
    crate::process::wait_serving(&format!("127.0.0.1:{port}")).await;
    open.kill_9();
}
