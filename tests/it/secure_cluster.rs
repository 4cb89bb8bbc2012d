//! `SecureCluster`: real `taskd serve` processes with any of a cluster
//! secret, TLS (certificates from [`crate::pki`]), mutual TLS and client
//! tokens, and clients that present what each test asks for.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;

use taskd::proto::raft_service_client::RaftServiceClient;
use taskd::proto::task_service_client::TaskServiceClient;
use taskd::proto::{GetClusterStatusRequest, GetClusterStatusResponse};
use taskd::security::peer::{Credentials, Dialer, PeerChannel};
use taskd::security::ClusterSecret;
use tonic::transport::{Certificate, ClientTlsConfig, Identity};

use crate::pki::{Ca, CertFiles};
use crate::process::{free_ports, TaskdProcess};
use crate::support::{eventually, init_tracing};

pub(crate) const SECRET: &str = "it-cluster-secret-0123456789abcdef";
pub(crate) const READER: &str = "reader-token-0123456789";
pub(crate) const WRITER: &str = "writer-token-0123456789";
pub(crate) const ADMIN: &str = "admin-token-01234567890";

/// What a cluster is secured with.
#[derive(Clone, Copy, Default)]
pub(crate) struct Secured {
    pub secret: bool,
    /// TLS, peers checked against the same CA that signs the servers.
    pub tls: bool,
    /// `--tls-client-ca-file`: every client needs a certificate.
    pub client_certs: bool,
    pub tokens: bool,
    /// Each node on a fresh MySQL database instead of SQLite.
    pub mysql: bool,
}

pub(crate) struct SecureCluster {
    pub members: BTreeMap<u64, String>,
    pub nodes: BTreeMap<u64, TaskdProcess>,
    pub secured: Secured,
    /// Signs the nodes' certificates; also the peer CA.
    pub ca: Ca,
    pub node_cert: CertFiles,
    pub client_cert: CertFiles,
    /// Extra flags for every node.
    pub extra_args: Vec<String>,
    /// Node id → its MySQL database (`Secured::mysql`).
    pub database_urls: BTreeMap<u64, String>,
    // Last: the processes die (drop) before their files go.
    pub dir: tempfile::TempDir,
}

impl SecureCluster {
    /// Starts `n` nodes and waits until they agree on a leader.
    pub(crate) async fn start(n: u64, secured: Secured, extra_args: &[&str]) -> Self {
        init_tracing();
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = Ca::new("taskd test node CA");
        let client_ca = Ca::new("taskd test client CA");
        let node_cert = ca.issue(dir.path(), "node");
        let client_cert = client_ca.issue(dir.path(), "client");
        ca.write(dir.path(), "ca.pem");
        client_ca.write(dir.path(), "client-ca.pem");
        std::fs::write(dir.path().join("secret"), SECRET).unwrap();
        std::fs::write(
            dir.path().join("tokens"),
            format!("# test tokens\n{READER} reader\n{WRITER} writer\n{ADMIN} admin\n"),
        )
        .unwrap();
        let members: BTreeMap<u64, String> = (1..=n)
            .zip(free_ports(n as usize))
            .map(|(id, port)| (id, format!("127.0.0.1:{port}")))
            .collect();
        let db = crate::support::unique_name("taskd_sec");
        let database_urls = if secured.mysql {
            members
                .keys()
                .map(|id| {
                    (
                        *id,
                        format!("{}/{db}_n{id}", crate::support::mysql_server_url()),
                    )
                })
                .collect()
        } else {
            BTreeMap::new()
        };
        let mut cluster = Self {
            database_urls,
            members,
            nodes: BTreeMap::new(),
            secured,
            ca,
            node_cert,
            client_cert,
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            dir,
        };
        for id in 1..=n {
            cluster.spawn(id);
        }
        cluster.wait_for_leader().await;
        cluster
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn args(&self, id: u64) -> Vec<String> {
        let initial = self
            .members
            .iter()
            .map(|(id, addr)| format!("{id}={addr}"))
            .collect::<Vec<_>>()
            .join(",");
        let mut args: Vec<String> = vec![
            "serve".into(),
            "--node-id".into(),
            id.to_string(),
            "--listen".into(),
            self.members[&id].clone(),
            "--data-dir".into(),
            self.path(&format!("node{id}")).display().to_string(),
            "--initial-cluster".into(),
            initial,
        ];
        let path = |name: &str| self.path(name).display().to_string();
        if let Some(url) = self.database_urls.get(&id) {
            args.extend(["--database-url".into(), url.clone()]);
        }
        if self.secured.secret {
            args.extend(["--cluster-secret-file".into(), path("secret")]);
        }
        if self.secured.tls {
            args.extend([
                "--tls-cert-file".into(),
                self.node_cert.cert.display().to_string(),
                "--tls-key-file".into(),
                self.node_cert.key.display().to_string(),
                "--peer-ca-file".into(),
                path("ca.pem"),
            ]);
        }
        if self.secured.client_certs {
            args.extend(["--tls-client-ca-file".into(), path("client-ca.pem")]);
        }
        if self.secured.tokens {
            args.extend(["--auth-token-file".into(), path("tokens")]);
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    pub(crate) fn spawn(&mut self, id: u64) {
        let process = TaskdProcess::spawn(
            &format!("secured node {id}"),
            &self.args(id),
            &self.path(&format!("node{id}.stderr")),
            Stdio::null(),
        );
        self.nodes.insert(id, process);
    }

    /// Stops every node and drops its MySQL database, if it has one.
    pub(crate) async fn drop_databases(mut self) {
        for node in self.nodes.values_mut() {
            node.kill_9();
        }
        use sqlx::migrate::MigrateDatabase;
        for url in self.database_urls.values() {
            let _ = sqlx::MySql::drop_database(url).await;
        }
    }

    pub(crate) fn kill_9(&mut self, id: u64) {
        self.nodes.get_mut(&id).expect("running node").kill_9();
        self.nodes.remove(&id);
    }

    /// How a well-configured client dials: the node CA when TLS is on, the
    /// client certificate when required, and `token`.
    pub(crate) fn dialer(&self, token: Option<&str>) -> Dialer {
        let mut credentials = Credentials::default();
        if let Some(token) = token {
            credentials = credentials.bearer_token(token);
        }
        Dialer::new(self.client_tls(self.secured.client_certs), credentials)
    }

    /// TLS as a client that trusts the node CA, with or without a certificate.
    pub(crate) fn client_tls(&self, with_cert: bool) -> Option<ClientTlsConfig> {
        if !self.secured.tls {
            return None;
        }
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(self.ca.pem()));
        if with_cert {
            tls = tls.identity(Identity::from_pem(
                std::fs::read(&self.client_cert.cert).unwrap(),
                std::fs::read(&self.client_cert.key).unwrap(),
            ));
        }
        Some(tls)
    }

    /// A dialer presenting the cluster secret, as a member does.
    pub(crate) fn peer_dialer(&self, secret: &str) -> Dialer {
        let secret = ClusterSecret::new(secret).expect("a valid secret");
        Dialer::new(
            self.client_tls(self.secured.client_certs),
            Credentials::default().cluster_secret(&secret),
        )
    }

    pub(crate) fn tasks(&self, addr: &str, token: Option<&str>) -> TaskServiceClient<PeerChannel> {
        TaskServiceClient::new(self.dialer(token).channel(addr).unwrap())
    }

    pub(crate) fn raft(&self, addr: &str, token: Option<&str>) -> RaftServiceClient<PeerChannel> {
        RaftServiceClient::new(self.dialer(token).channel(addr).unwrap())
    }

    /// A node's status as a reader sees it (or anyone, without tokens).
    pub(crate) async fn status(&self, addr: &str) -> Option<GetClusterStatusResponse> {
        let token = self.secured.tokens.then_some(READER);
        self.raft(addr, token)
            .get_cluster_status(GetClusterStatusRequest {})
            .await
            .ok()
            .map(|r| r.into_inner())
    }

    /// Waits until every running node names the same running leader.
    pub(crate) async fn wait_for_leader(&self) -> u64 {
        let running: Vec<(u64, String)> = self
            .nodes
            .keys()
            .map(|id| (*id, self.members[id].clone()))
            .collect();
        eventually("one leader among the running secured nodes", || async {
            let mut leaders = BTreeSet::new();
            for (_, addr) in &running {
                leaders.insert(self.status(addr).await?.leader_id);
            }
            let leader = *leaders.first()?;
            (leaders.len() == 1 && running.iter().any(|(id, _)| *id == leader)).then_some(leader)
        })
        .await
    }

    /// The (leader, term) every running node reports.
    pub(crate) async fn leader_and_term(&self) -> BTreeSet<(u64, u64)> {
        let mut seen = BTreeSet::new();
        for id in self.nodes.keys() {
            let status = self.status(&self.members[id]).await.expect("status");
            seen.insert((status.leader_id, status.term));
        }
        seen
    }
}
