use super::*;

const SECRET: &str = "cluster-secret-0123456789";
const TOKENS: &str =
    "reader-token-0123456 reader\nwriter-token-0123456 writer\nadmin-token-01234567 admin\n";

fn auth(secret: bool, tokens: bool) -> Auth {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("tokens");
    std::fs::write(&token_file, TOKENS).unwrap();
    let config = SecurityConfig {
        cluster_secret: secret.then(|| ClusterSecret::new(SECRET).unwrap()),
        tls: None,
        token_file: tokens.then_some(token_file),
    };
    Auth::new(&config, None).unwrap()
}

fn headers(pairs: &[(&'static str, &str)]) -> http::HeaderMap {
    let mut map = http::HeaderMap::new();
    for (k, v) in pairs {
        map.insert(*k, v.parse().unwrap());
    }
    map
}

fn code(auth: &Auth, path: &str, pairs: &[(&'static str, &str)]) -> tonic::Code {
    match auth.check(path, &headers(pairs), None) {
        Ok(()) => tonic::Code::Ok,
        Err(status) => status.code(),
    }
}

const VOTE: &str = "/taskd.v1.RaftService/Vote";
const STATUS: &str = "/taskd.v1.RaftService/GetClusterStatus";
const REMOVE: &str = "/taskd.v1.RaftService/RemoveNode";
const GET: &str = "/taskd.v1.TaskService/GetTask";
const CREATE: &str = "/taskd.v1.TaskService/CreateTask";
const HEALTH: &str = "/grpc.health.v1.Health/Check";

#[test]
fn peer_calls_need_the_secret() {
    use tonic::Code::*;
    let a = auth(true, true);
    assert_eq!(code(&a, VOTE, &[]), Unauthenticated);
    assert_eq!(
        code(
            &a,
            VOTE,
            &[(CLUSTER_SECRET_HEADER, "wrong-secret-0123456789")]
        ),
        PermissionDenied
    );
    assert_eq!(code(&a, VOTE, &[(CLUSTER_SECRET_HEADER, SECRET)]), Ok);
    assert_eq!(
        code(
            &a,
            VOTE,
            &[("authorization", "Bearer admin-token-01234567")]
        ),
        PermissionDenied
    );
    assert_eq!(code(&a, HEALTH, &[]), Ok);
}

#[test]
fn each_role_gets_exactly_its_calls() {
    use tonic::Code::*;
    let a = auth(true, true);
    let bearer = |t: &str| format!("Bearer {t}");
    let reader = bearer("reader-token-0123456");
    let writer = bearer("writer-token-0123456");
    let admin = bearer("admin-token-01234567");
    let table = [
        (GET, [Ok, Ok, Ok]),
        (CREATE, [PermissionDenied, Ok, Ok]),
        (STATUS, [Ok, Ok, Ok]),
        (REMOVE, [PermissionDenied, PermissionDenied, Ok]),
        (VOTE, [PermissionDenied, PermissionDenied, PermissionDenied]),
    ];
    for (path, codes) in table {
        for (token, want) in [&reader, &writer, &admin].into_iter().zip(codes) {
            assert_eq!(
                code(&a, path, &[("authorization", token)]),
                want,
                "{path} {token}"
            );
        }
        assert_eq!(
            code(&a, path, &[]),
            Unauthenticated,
            "{path} without a token"
        );
        assert_eq!(
            code(
                &a,
                path,
                &[("authorization", "Bearer unknown-token-0123456")]
            ),
            Unauthenticated,
            "{path} with an unknown token"
        );
    }
    // Peers may read the status and make admin calls, not client calls.
    let peer = [(CLUSTER_SECRET_HEADER, SECRET)];
    assert_eq!(code(&a, STATUS, &peer), Ok);
    assert_eq!(code(&a, REMOVE, &peer), Ok);
    assert_eq!(code(&a, CREATE, &peer), Unauthenticated);
}

#[test]
fn what_is_not_configured_stays_open() {
    use tonic::Code::*;
    let open = auth(false, false);
    for path in [VOTE, STATUS, REMOVE, GET, CREATE] {
        assert_eq!(code(&open, path, &[]), Ok, "{path}");
    }
    // A secret but no tokens: clients are open, admin calls are not.
    let secret_only = auth(true, false);
    assert_eq!(code(&secret_only, CREATE, &[]), Ok);
    assert_eq!(code(&secret_only, REMOVE, &[]), Unauthenticated);
    assert_eq!(
        code(&secret_only, REMOVE, &[(CLUSTER_SECRET_HEADER, SECRET)]),
        Ok
    );
    assert_eq!(code(&secret_only, VOTE, &[]), Unauthenticated);
}

#[test]
fn peer_calls_only_on_the_peer_listener() {
    let a = auth(false, false);
    let public = ConnInfo {
        remote: None,
        peer_certs: None,
        peer_listener: false,
    };
    let refused = a.check(VOTE, &headers(&[]), Some(&public)).unwrap_err();
    assert_eq!(refused.code(), tonic::Code::PermissionDenied);
    assert!(a.check(GET, &headers(&[]), Some(&public)).is_ok());
}
