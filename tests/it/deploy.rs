//! The container image, the docker compose cluster and the Kubernetes
//! manifests under deploy/, checked as files: no image is built and no
//! cluster started here (no Docker engine, no Kubernetes). The checks are
//! functions from the parsed files to a list of problems, so the last test
//! can show that each one rejects a broken copy.

mod checks;
mod edit;
mod files;
mod kube;
mod model;
mod secrets;

use checks::{check_compose, check_flags, check_image};
use edit::{compose_command_mut, compose_env_mut, container_mut, set_flag};
use files::Deploy;
use kube::check_kubernetes;
use model::Cli;

/// What this build's `taskd` accepts: `serve`'s and `cluster health`'s flags
/// and variables, plus the global ones `taskd --help` lists.
fn taskd_clis() -> (Cli, Cli) {
    let global = Cli::of(&[]);
    let serve = Cli::of(&["serve"]).union(&global);
    let health = Cli::of(&["cluster", "health"]).union(&global);
    (serve, health)
}

fn assert_no_problems(what: &str, problems: Vec<String>) {
    assert!(problems.is_empty(), "{what}:\n  {}", problems.join("\n  "));
}

/// Every `--flag` and `TASKD_…` variable the Dockerfile, the compose file and
/// the Kubernetes manifests give taskd is one its `--help` lists (`serve` for
/// nodes, `cluster health` for health checks): a typo or a flag this build
/// lacks would otherwise surface only when a container fails to start.
#[test]
fn deploy_flags_are_ones_taskd_lists() {
    let (serve, health) = taskd_clis();
    assert_no_problems(
        "flags taskd does not list",
        check_flags(&Deploy::load(), &serve, &health),
    );
}

/// The image: a locked release build, a non-root user, /data as a volume,
/// the gRPC and metrics ports exposed, a health check through taskd's own
/// CLI on the listen port, and neither secrets nor target/ in the context.
#[test]
fn deploy_image_is_sound() {
    assert_no_problems("Dockerfile", check_image(&Deploy::load()));
}

/// The compose nodes form one cluster: the same --initial-cluster naming each
/// node's service and listen port, unique ids, each advertising its own entry,
/// each on its own healthy MariaDB and volume, all with the cluster secret and
/// TLS mounted, ports and health checks agreeing.
#[test]
fn deploy_compose_forms_one_cluster() {
    assert_no_problems(files::COMPOSE, check_compose(&Deploy::load()));
}

/// The StatefulSet: 3 replicas behind a headless Service, started in parallel,
/// a PodDisruptionBudget of one, probes on the right ports, non-root, a data
/// claim, secrets mounted from the Secret's keys; and its shell wrapper, run
/// for each pod name, gives node ids 1–3 advertising their own entries.
#[test]
fn deploy_kubernetes_is_sound() {
    assert_no_problems("deploy/kubernetes", check_kubernetes(&Deploy::load()));
}

/// deploy/gen-secrets.sh makes every file the compose file mounts and the
/// Kubernetes instructions name, and its certificates verify against its CA.
#[test]
fn deploy_gen_secrets_makes_every_mounted_file() {
    let problems = secrets::check_gen_secrets(&Deploy::load());
    assert_no_problems("deploy/gen-secrets.sh", problems);
}

/// Each check rejects a deliberately broken copy of the files, so a passing
/// check above means something.
#[test]
fn deploy_checks_reject_broken_manifests() {
    let good = Deploy::load();
    let (serve, health) = taskd_clis();
    let rejects = |what: &str, problems: Vec<String>, expected: &str| {
        assert!(
            problems.iter().any(|p| p.contains(expected)),
            "{what}: expected a problem mentioning {expected:?}, got {problems:#?}"
        );
    };

    let mut d = good.clone();
    compose_command_mut(&mut d, "taskd-2").push("--no-such-flag=1".into());
    compose_env_mut(&mut d, "taskd-2").insert("TASKD_NO_SUCH_VARIABLE".into(), "1".into());
    let problems = check_flags(&d, &serve, &health);
    rejects("unknown flag", problems.clone(), "--no-such-flag");
    rejects("unknown variable", problems, "TASKD_NO_SUCH_VARIABLE");

    let mut d = good.clone();
    d.image.exposed.remove(&9090);
    rejects("metrics port not exposed", check_image(&d), "9090");
    let mut d = good.clone();
    d.image.user = Some("root".into());
    rejects("root user", check_image(&d), "root");
    let mut d = good.clone();
    d.dockerignore = "target/\n".into();
    rejects(
        "secrets in the build context",
        check_image(&d),
        ".dockerignore",
    );

    let mut d = good.clone();
    set_flag(
        compose_command_mut(&mut d, "taskd-2"),
        "--initial-cluster",
        "1=taskd-1:50051,2=taskd-2:50051",
    );
    rejects(
        "different --initial-cluster",
        check_compose(&d),
        "--initial-cluster",
    );
    let mut d = good.clone();
    set_flag(
        compose_command_mut(&mut d, "taskd-3"),
        "--database-url",
        "mysql://taskd:x@mariadb-1:3306/taskd",
    );
    rejects("shared database", check_compose(&d), "mariadb-1");
    let mut d = good.clone();
    set_flag(compose_command_mut(&mut d, "taskd-3"), "--node-id", "2");
    rejects("duplicate node id", check_compose(&d), "--node-id Some(2)");
    let mut d = good.clone();
    set_flag(
        compose_command_mut(&mut d, "taskd-1"),
        "--advertise",
        "taskd-1:50052",
    );
    rejects("advertise not its entry", check_compose(&d), "--advertise");
    let mut d = good.clone();
    set_flag(
        compose_command_mut(&mut d, "taskd-1"),
        "--metrics-listen",
        "0.0.0.0:9100",
    );
    rejects("metrics port not published", check_compose(&d), "9100");
    let mut d = good.clone();
    compose_env_mut(&mut d, "taskd-1").remove("TASKD_CLUSTER_SECRET_FILE");
    rejects(
        "no cluster secret",
        check_compose(&d),
        "--cluster-secret-file",
    );

    let statefulset = |d: &mut Deploy| d.object_mut("StatefulSet", "taskd").clone();
    let mut d = good.clone();
    d.object_mut("StatefulSet", "taskd")["spec"]["replicas"] = 2.into();
    rejects("2 replicas", check_kubernetes(&d), "replicas");
    let mut d = good.clone();
    d.object_mut("StatefulSet", "taskd")["spec"]["serviceName"] = "taskd-client".into();
    rejects("not the headless Service", check_kubernetes(&d), "headless");
    let mut d = good.clone();
    d.object_mut("PodDisruptionBudget", "taskd")["spec"]["maxUnavailable"] = 2.into();
    rejects("PDB of 2", check_kubernetes(&d), "maxUnavailable");
    let mut d = good.clone();
    let mut sts = statefulset(&mut d);
    container_mut(&mut sts)
        .as_mapping_mut()
        .unwrap()
        .remove("readinessProbe");
    *d.object_mut("StatefulSet", "taskd") = sts;
    rejects("no readiness probe", check_kubernetes(&d), "readinessProbe");
    let mut d = good.clone();
    let mut sts = statefulset(&mut d);
    container_mut(&mut sts)["ports"][1]["containerPort"] = 9091.into();
    *d.object_mut("StatefulSet", "taskd") = sts;
    rejects("metrics port moved", check_kubernetes(&d), "9090");
    let mut d = good.clone();
    d.object_mut("StatefulSet", "taskd")["spec"]["template"]["spec"]["securityContext"]
        ["runAsNonRoot"] = false.into();
    rejects("may run as root", check_kubernetes(&d), "runAsNonRoot");
    let mut d = good.clone();
    let mut sts = statefulset(&mut d);
    let command = &mut container_mut(&mut sts)["command"][2];
    *command = command
        .as_str()
        .unwrap()
        .replace("ordinal + 1", "ordinal")
        .into();
    *d.object_mut("StatefulSet", "taskd") = sts;
    rejects("node ids from 0", check_kubernetes(&d), "--node-id");
}
