//! Rotating a cluster's certificates to a new CA with SIGHUP alone.

use taskd::proto::{CreateTaskRequest, GetTaskRequest, ReadConsistency};

use crate::pki::Ca;
use crate::secure_cluster::{SecureCluster, Secured, READER, WRITER};
use crate::support::eventually;

/// Every node gets a certificate from a new CA, trusts only that CA for
/// its peers, and reloads on SIGHUP. A node restarted afterwards (which
/// knows only the new files) is then reached by the others: their new
/// connections present the reloaded certificates, not the ones they
/// started with. It catches up and serves a write made after the rotation.
#[tokio::test]
async fn peers_present_reloaded_certificates() {
    let secured = Secured {
        tls: true,
        tokens: true,
        ..Default::default()
    };
    let mut cluster = SecureCluster::start(3, secured, &[]).await;
    let leader = cluster.wait_for_leader().await;
    let restarted = *cluster.members.keys().find(|id| **id != leader).unwrap();

    let rotated = Ca::new("rotated node CA");
    let staging = tempfile::tempdir().unwrap();
    let fresh = rotated.issue(staging.path(), "node");
    std::fs::copy(&fresh.cert, &cluster.node_cert.cert).unwrap();
    std::fs::copy(&fresh.key, &cluster.node_cert.key).unwrap();
    std::fs::write(cluster.path("ca.pem"), rotated.pem()).unwrap();
    for node in cluster.nodes.values() {
        node.signal("HUP");
    }
    cluster.ca = rotated;
    // Clients now need the new CA: the nodes serve the new certificate.
    eventually("every node serves the new certificate", || async {
        for addr in cluster.members.values() {
            cluster.status(addr).await?;
        }
        Some(())
    })
    .await;

    cluster.kill_9(restarted);
    cluster.spawn(restarted);
    let writer_addr = cluster.members[&leader].clone();
    let created = eventually("a write after the rotation", || async {
        cluster
            .tasks(&writer_addr, Some(WRITER))
            .create_task(CreateTaskRequest {
                title: "after the rotation".into(),
                request_id: "rotation-1".into(),
                ..Default::default()
            })
            .await
            .ok()
            .map(|r| r.into_inner().task.unwrap().id)
    })
    .await;
    let addr = cluster.members[&restarted].clone();
    eventually("the restarted node has the write", || async {
        cluster
            .tasks(&addr, Some(READER))
            .get_task(GetTaskRequest {
                id: created.clone(),
                consistency: ReadConsistency::Stale as i32,
            })
            .await
            .ok()
    })
    .await;
}
