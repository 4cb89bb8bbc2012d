//! TLS, mutual TLS and bearer tokens, end to end: real `taskd serve`
//! processes (single-node clusters on loopback) started with certificates made
//! at run time and a token file, and the client and taskctl talking to them.
//!
//! The `taskd` binary is `$TASKD_BIN`, else the one beside this build's
//! `taskctl` (`cargo build --bin taskd` with the same features).

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};
use taskd_client::{pb, ClientOptions, Error, TaskClient};

const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef";
const WRITER_TOKEN: &str = "writer-token-0123456789abcdef";
const READER_TOKEN: &str = "reader-token-0123456789abcdef";
/// How long a fresh node may take to elect itself and serve.
const READY_DEADLINE: Duration = Duration::from_secs(60);

/// Two CAs and what they signed, all PEM: the nodes' CA (clients trust it;
/// it is also the node's `--peer-ca-file`, as nodes present their server
/// certificate to each other) and, apart from it as the server asks, the
/// clients' CA (`--tls-client-ca-file`) with one client certificate.
struct Pki {
    ca: String,
    server_cert: String,
    server_key: String,
    client_ca: String,
    client_cert: String,
    client_key: String,
}

impl Pki {
    fn generate(name: &str) -> Pki {
        let (ca, node_issuer) = new_ca(&format!("{name} nodes"));
        let (client_ca, client_issuer) = new_ca(&format!("{name} clients"));
        let (server_cert, server_key) = leaf(
            &node_issuer,
            vec!["localhost".into(), "127.0.0.1".into()],
            "taskd node",
            vec![
                ExtendedKeyUsagePurpose::ServerAuth,
                ExtendedKeyUsagePurpose::ClientAuth,
            ],
        );
        let (client_cert, client_key) = leaf(
            &client_issuer,
            Vec::new(),
            "taskd test client",
            vec![ExtendedKeyUsagePurpose::ClientAuth],
        );
        Pki {
            ca,
            server_cert,
            server_key,
            client_ca,
            client_cert,
            client_key,
        }
    }
}

/// A self-signed CA: its PEM, and the issuer that signs with it.
fn new_ca(common_name: &str) -> (String, Issuer<'static, KeyPair>) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("self-signed CA");
    (cert.pem(), Issuer::new(params, key))
}

/// A certificate `issuer` signs for `sans`: its PEM and its key's PEM.
fn leaf(
    issuer: &Issuer<'_, KeyPair>,
    sans: Vec<String>,
    common_name: &str,
    usages: Vec<ExtendedKeyUsagePurpose>,
) -> (String, String) {
    let key = KeyPair::generate().expect("leaf key");
    let mut params = CertificateParams::new(sans).expect("leaf params");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = usages;
    let cert = params.signed_by(&key, issuer).expect("sign leaf");
    (cert.pem(), key.serialize_pem())
}

/// One `taskd serve` process with TLS and a token file. Killed on drop; a
/// panicking test prints its stderr.
struct SecureNode {
    child: Child,
    address: String,
    dir: tempfile::TempDir,
}

impl SecureNode {
    /// Starts a single-node cluster serving TLS with `pki`'s server
    /// certificate and the three test tokens; with `require_client_cert`, only
    /// clients with a certificate from `pki`'s clients' CA get in.
    fn start(pki: &Pki, require_client_cert: bool) -> SecureNode {
        let dir = tempfile::tempdir().expect("temp dir");
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).expect("write test file");
            path.to_string_lossy().into_owned()
        };
        let cert = write("node.pem", &pki.server_cert);
        let key = write("node.key", &pki.server_key);
        let ca = write("ca.pem", &pki.ca);
        let client_ca = write("client-ca.pem", &pki.client_ca);
        let tokens = write(
            "tokens",
            &format!(
                "# token role\n{ADMIN_TOKEN} admin\n{WRITER_TOKEN} writer\n{READER_TOKEN} reader\n"
            ),
        );
        let address = free_address();
        let mut args = vec![
            "serve".to_string(),
            "--node-id".into(),
            "1".into(),
            "--listen".into(),
            address.clone(),
            "--data-dir".into(),
            dir.path().join("data").to_string_lossy().into_owned(),
            "--initial-cluster".into(),
            format!("1={address}"),
            "--tls-cert-file".into(),
            cert,
            "--tls-key-file".into(),
            key,
            // The server wants a peer CA with TLS, even for a lone node.
            "--peer-ca-file".into(),
            ca,
            "--auth-token-file".into(),
            tokens,
        ];
        if require_client_cert {
            args.extend(["--tls-client-ca-file".into(), client_ca]);
        }
        let stderr = std::fs::File::create(dir.path().join("stderr")).expect("stderr file");
        let mut command = Command::new(taskd_bin());
        command
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .env("NO_COLOR", "1");
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("TASKD_") {
                command.env_remove(name);
            }
        }
        let child = command.spawn().expect("start taskd serve");
        SecureNode {
            child,
            address,
            dir,
        }
    }

    fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr")).unwrap_or_default()
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Polls until `client` gets an answer to a List (TLS is up and the node
    /// has a leader); fails at once if the process exits, and with the last
    /// error after the deadline.
    async fn wait_ready(&mut self, client: &TaskClient) {
        let client = client.with_options(client.options().clone().timeout(Duration::from_secs(1)));
        let deadline = tokio::time::Instant::now() + READY_DEADLINE;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                panic!("taskd exited with {status}:\n{}", self.stderr());
            }
            let error = match client.list_tasks(pb::ListTasksRequest::default()).await {
                Ok(_) => return,
                Err(error) => error,
            };
            assert!(
                tokio::time::Instant::now() < deadline,
                "the TLS node at {} did not answer within {READY_DEADLINE:?}; last error: {error}",
                self.address
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for SecureNode {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!(
                "---- taskd stderr ({}) ----\n{}",
                self.address,
                self.stderr()
            );
        }
    }
}

fn taskd_bin() -> PathBuf {
    let path = std::env::var_os("TASKD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_BIN_EXE_taskctl")).with_file_name("taskd"));
    assert!(
        path.is_file(),
        "no taskd binary at {}: build it (`cargo build --bin taskd` with the test's features) \
         or set TASKD_BIN",
        path.display()
    );
    path
}

/// A loopback address that was free a moment ago.
fn free_address() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind port 0");
    listener.local_addr().expect("local addr").to_string()
}

/// Options that give up fast: failures here are final, not transient.
fn quick() -> ClientOptions {
    ClientOptions::default()
        .timeout(Duration::from_secs(3))
        .backoff(Duration::from_millis(20), Duration::from_millis(200))
}

fn new_task(title: &str) -> pb::CreateTaskRequest {
    pb::CreateTaskRequest {
        title: title.into(),
        ..Default::default()
    }
}

/// With the node's CA a client gets in over TLS (by `https://`, and by TLS
/// settings on a plain `host:port`); a plaintext client, a client trusting
/// only the system's roots and one trusting another CA do not. Tokens decide
/// the rest: a reader may Get and List but not Create (PERMISSION_DENIED, not
/// retried), a wrong or missing token is UNAUTHENTICATED.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_tokens() {
    let pki = Pki::generate("taskd test");
    let mut node = SecureNode::start(&pki, false);
    let https = format!("https://{}", node.address);
    let writer = TaskClient::connect_with(
        [https.clone()],
        quick().ca_certificate(pki.ca.clone()).token(WRITER_TOKEN),
    )
    .unwrap();
    node.wait_ready(&writer).await;

    let task = writer
        .create_task(new_task("over TLS"))
        .await
        .expect("a writer creates over TLS");
    assert_eq!(writer.get_task(&task.id).await.expect("get").id, task.id);

    // TLS settings make a plain `host:port` TLS too; the DNS SAN matches.
    let localhost = node.address.replace("127.0.0.1", "localhost");
    let by_settings = TaskClient::connect_with(
        [localhost],
        quick().ca_certificate(pki.ca.clone()).token(READER_TOKEN),
    )
    .unwrap();
    assert!(by_settings
        .current_endpoint()
        .starts_with("https://localhost:"));
    assert_eq!(
        by_settings.get_task(&task.id).await.expect("get").id,
        task.id
    );

    // The node serves TLS only.
    let plaintext =
        TaskClient::connect_with([node.address.clone()], quick().token(WRITER_TOKEN)).unwrap();
    let result = plaintext.get_task(&task.id).await;
    // The node closes the connection: no answer, a read never "may have applied".
    assert!(
        matches!(result, Err(Error::Unavailable { .. })),
        "plaintext got an answer: {result:?}"
    );
    // Its certificate is not one the system trusts, nor one another CA signed.
    let other_ca = Pki::generate("another");
    for options in [quick(), quick().ca_certificate(other_ca.ca.clone())] {
        let client = TaskClient::connect_with([https.clone()], options.token(WRITER_TOKEN));
        let Ok(client) = client else {
            // A machine without system roots refuses `https://` without a CA at once.
            assert!(
                matches!(client, Err(Error::InvalidOptions { .. })),
                "{client:?}"
            );
            continue;
        };
        let result = client.get_task(&task.id).await;
        // A transport failure (retried until the deadline) that says why.
        let Err(Error::Unavailable { message }) = &result else {
            panic!("an untrusted server answered, or not as unreachable: {result:?}");
        };
        assert!(message.contains("invalid peer certificate"), "{message}");
    }

    // A reader reads; its create is refused as such, not retried into UNAVAILABLE.
    let reader = TaskClient::connect_with(
        [https.clone()],
        quick().ca_certificate(pki.ca.clone()).token(READER_TOKEN),
    )
    .unwrap();
    assert_eq!(
        reader.get_task(&task.id).await.expect("reader gets").id,
        task.id
    );
    let listed = reader
        .list_all_tasks(pb::ListTasksRequest::default())
        .await
        .expect("reader lists");
    assert!(listed.iter().any(|t| t.id == task.id));
    let denied = reader.create_task(new_task("not allowed")).await;
    assert!(
        matches!(denied, Err(Error::PermissionDenied { .. })),
        "{denied:?}"
    );

    // A token the node does not know, or none at all.
    let no_token =
        TaskClient::connect_with([https.clone()], quick().ca_certificate(pki.ca.clone())).unwrap();
    let wrong_token = no_token.with_options(
        quick()
            .ca_certificate(pki.ca.clone())
            .token("not-a-known-token-0123456789"),
    );
    for client in [&no_token, &wrong_token] {
        let result = client.get_task(&task.id).await;
        assert!(
            matches!(result, Err(Error::Unauthenticated { .. })),
            "{result:?}"
        );
    }
}

/// With `--tls-client-ca-file` a client without a certificate, or with one
/// from another CA, is turned away; one with a certificate from that CA works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutual_tls() {
    let pki = Pki::generate("taskd mtls");
    let mut node = SecureNode::start(&pki, true);
    let https = format!("https://{}", node.address);
    let with_cert = TaskClient::connect_with(
        [https.clone()],
        quick()
            .ca_certificate(pki.ca.clone())
            .identity(pki.client_cert.clone(), pki.client_key.clone())
            .token(WRITER_TOKEN),
    )
    .unwrap();
    node.wait_ready(&with_cert).await;
    let task = with_cert
        .create_task(new_task("with a client certificate"))
        .await
        .expect("create with a client certificate");

    let stranger = Pki::generate("stranger");
    let without_cert = quick().ca_certificate(pki.ca.clone());
    let foreign_cert = quick()
        .ca_certificate(pki.ca.clone())
        .identity(stranger.client_cert.clone(), stranger.client_key.clone());
    for options in [without_cert, foreign_cert] {
        let client =
            TaskClient::connect_with([https.clone()], options.token(WRITER_TOKEN)).unwrap();
        let result = client.get_task(&task.id).await;
        // Refused at the handshake: never an answer.
        assert!(
            matches!(result, Err(Error::Unavailable { .. })),
            "a client the node cannot verify got in: {result:?}"
        );
    }
}

/// taskctl with `--cacert` and the token in TASKD_TOKEN creates and lists;
/// a reader's create exits 10 (permission denied), a bad token exits 9.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn taskctl_over_tls_with_a_token() {
    let pki = Pki::generate("taskctl");
    let mut node = SecureNode::start(&pki, false);
    let https = format!("https://{}", node.address);
    let admin = TaskClient::connect_with(
        [https.clone()],
        quick().ca_certificate(pki.ca.clone()).token(ADMIN_TOKEN),
    )
    .unwrap();
    node.wait_ready(&admin).await;
    let ca_file = node.path("ca.pem");

    let taskctl = |token: &str, args: &[&str]| {
        let output = Command::new(env!("CARGO_BIN_EXE_taskctl"))
            .arg("--endpoints")
            .arg(&https)
            .arg("--cacert")
            .arg(&ca_file)
            .args(["--timeout", "3s"])
            .args(args)
            .env_remove("TASKD_ENDPOINTS")
            .env_remove("TASKD_TIMEOUT")
            .env_remove("TASKD_CERT")
            .env_remove("TASKD_KEY")
            .env("TASKD_TOKEN", token)
            .output()
            .expect("taskctl runs");
        (
            output.status.code().expect("taskctl exited"),
            String::from_utf8_lossy(&output.stdout).into_owned(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };

    let (code, stdout, stderr) = taskctl(WRITER_TOKEN, &["create", "--title", "from taskctl"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let (code, stdout, stderr) = taskctl(READER_TOKEN, &["list", "-o", "json"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("from taskctl"), "{stdout}");

    let (code, _, stderr) = taskctl(READER_TOKEN, &["create", "--title", "refused"]);
    assert_eq!(code, 10, "{stderr}");
    assert!(
        stderr.starts_with("taskctl: permission denied: "),
        "{stderr}"
    );
    let (code, _, stderr) = taskctl("wrong-token-0123456789abcdef", &["list"]);
    assert_eq!(code, 9, "{stderr}");
    assert!(stderr.starts_with("taskctl: unauthenticated: "), "{stderr}");
    assert!(
        !stderr.contains("wrong-token"),
        "the token leaked: {stderr}"
    );
}
