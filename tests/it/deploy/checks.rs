//! The checks: each takes the parsed files and returns the problems it finds,
//! one sentence each, empty when all is well.

use std::collections::{BTreeMap, BTreeSet};

use serde_yaml_ng::Value;

use super::files::{
    compose_env, compose_invocations, compose_nodes, pod_containers, setting, words, Deploy,
    COMPOSE,
};
use super::model::{at, host_of, invocations, parse_members, port_of, seq, text, Cli, Invocation};

/// Flags and `TASKD_…` variables against what `taskd … --help` lists.
pub fn check_flags(deploy: &Deploy, serve: &Cli, health: &Cli) -> Vec<String> {
    let mut found = invocations("Dockerfile HEALTHCHECK", &deploy.image.healthcheck);
    let mut envs: Vec<(String, String)> = deploy
        .image
        .env
        .keys()
        .map(|k| ("Dockerfile ENV".to_string(), k.clone()))
        .collect();
    let services = at(&deploy.compose, &["services"]).and_then(Value::as_mapping);
    for (name, spec) in services.into_iter().flatten() {
        let name = text(name).unwrap_or_default();
        found.extend(compose_invocations(&name, spec, &deploy.image));
        let origin = format!("{COMPOSE} services.{name}.environment");
        envs.extend(compose_env(spec).into_keys().map(|k| (origin.clone(), k)));
    }
    for container in pod_containers(deploy) {
        found.extend(container.invocations());
        envs.extend(
            container
                .env()
                .into_keys()
                .map(|k| (container.origin.clone(), k)),
        );
    }
    let mut problems = Vec::new();
    if found.is_empty() {
        problems.push("no `taskd` command line found anywhere".into());
    }
    for call in &found {
        let cli = match call
            .subcommand
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>()[..]
        {
            ["serve"] => serve,
            ["cluster", "health"] => health,
            _ => {
                problems.push(format!(
                    "{}: taskd {:?} is not checked here",
                    call.origin, call.subcommand
                ));
                continue;
            }
        };
        for (flag, _) in &call.flags {
            if !cli.flags.contains(flag) {
                problems.push(format!(
                    "{}: `taskd {}` has no flag {flag}",
                    call.origin,
                    call.subcommand.join(" ")
                ));
            }
        }
    }
    let known: BTreeSet<&String> = serve.envs.iter().chain(&health.envs).collect();
    for (origin, var) in envs.iter().filter(|(_, v)| v.starts_with("TASKD_")) {
        if !known.contains(var) {
            problems.push(format!("{origin}: taskd reads no variable {var}"));
        }
    }
    problems
}

/// The Dockerfile's final image and build, and what the build context leaves out.
pub fn check_image(deploy: &Deploy) -> Vec<String> {
    let image = &deploy.image;
    let mut problems = Vec::new();
    let build = image.runs.iter().find(|r| r.contains("cargo build"));
    for needed in ["--release", "--locked", "--bin taskd"] {
        if !build.is_some_and(|b| b.contains(needed)) {
            problems.push(format!("Dockerfile: no `cargo build` with {needed}"));
        }
    }
    if image
        .entrypoint
        .last()
        .is_none_or(|e| e != "taskd" && !e.ends_with("/taskd"))
    {
        problems.push(format!(
            "Dockerfile: ENTRYPOINT {:?} is not taskd",
            image.entrypoint
        ));
    }
    let uid = image.user.as_deref().and_then(|u| u.split(':').next());
    if uid.is_none_or(|u| u == "root" || u == "0") {
        problems.push(format!("Dockerfile: USER {:?} runs as root", image.user));
    }
    let data_dir = image.env.get("TASKD_DATA_DIR");
    if data_dir.is_none_or(|d| !image.volumes.contains(d)) {
        problems.push(format!(
            "Dockerfile: TASKD_DATA_DIR {data_dir:?} is not a VOLUME ({:?})",
            image.volumes
        ));
    }
    let mut listen_port = None;
    for var in ["TASKD_LISTEN", "TASKD_METRICS_LISTEN"] {
        let port = image.env.get(var).and_then(|a| port_of(a));
        match port {
            Some(p) if image.exposed.contains(&p) => {}
            _ => problems.push(format!(
                "Dockerfile: {var}'s port {port:?} is not in EXPOSE {:?}",
                image.exposed
            )),
        }
        listen_port = listen_port.or(port);
    }
    let health = invocations("HEALTHCHECK", &image.healthcheck);
    match health.iter().find(|i| i.is(&["cluster", "health"])) {
        None => problems.push("Dockerfile: HEALTHCHECK is not `taskd cluster health`".into()),
        Some(call) => problems.extend(check_health_call(call, listen_port)),
    }
    let ignored: BTreeSet<&str> = deploy
        .dockerignore
        .lines()
        .map(|l| l.trim().trim_end_matches('/'))
        .collect();
    for needed in ["target", ".git", "deploy"] {
        if !ignored.contains(needed) {
            problems.push(format!(
                ".dockerignore: {needed}/ is sent to the build (secrets or gigabytes)"
            ));
        }
    }
    if !deploy
        .gitignore
        .lines()
        .any(|l| l.trim().trim_matches('/') == "deploy/secrets")
    {
        problems.push(".gitignore: deploy/secrets/ could be committed".into());
    }
    problems
}

/// A health probe: loopback, the node's listen port, a bounded call.
fn check_health_call(call: &Invocation, listen_port: Option<u16>) -> Vec<String> {
    let mut problems = Vec::new();
    let endpoint = call.flag("--endpoints").unwrap_or("127.0.0.1:50051");
    if !matches!(host_of(endpoint), Some("127.0.0.1" | "localhost"))
        || port_of(endpoint) != listen_port
    {
        problems.push(format!(
            "{}: probes {endpoint}, not the node's own port {listen_port:?}",
            call.origin
        ));
    }
    if call.flag("--timeout").is_none() {
        problems.push(format!(
            "{}: no --timeout (the default is 60 s)",
            call.origin
        ));
    }
    problems
}

/// The compose file's nodes form one cluster and agree with their services.
pub fn check_compose(deploy: &Deploy) -> Vec<String> {
    let mut problems = Vec::new();
    let nodes = compose_nodes(deploy);
    if nodes.len() < 3 || nodes.len() % 2 == 0 {
        problems.push(format!(
            "{COMPOSE}: {} taskd nodes; a cluster needs an odd number, at least 3",
            nodes.len()
        ));
    }
    let services = at(&deploy.compose, &["services"]);
    let top_secrets = at(&deploy.compose, &["secrets"]);
    let mut founders: Option<(String, String)> = None;
    let mut ids = BTreeMap::new();
    let mut databases = BTreeMap::new();
    let mut volumes = BTreeMap::new();
    for node in &nodes {
        let get = |flag: &str| setting(&node.serve, &node.env, &deploy.image, flag);
        let origin = format!("{COMPOSE} services.{}", node.name);
        let listen = get("--listen").unwrap_or_default();
        let listen_port = port_of(&listen);
        let metrics_port = get("--metrics-listen").and_then(|a| port_of(&a));
        let initial = get("--initial-cluster").unwrap_or_default();
        match &founders {
            None => founders = Some((node.name.clone(), initial.clone())),
            Some((first, theirs)) if *theirs != initial => problems.push(format!(
                "{origin}: --initial-cluster {initial:?} differs from {first}'s {theirs:?}"
            )),
            Some(_) => {}
        }
        let members = parse_members(&initial);
        let own = format!("{}:{}", node.name, listen_port.unwrap_or(0));
        let id: Option<u64> = get("--node-id").and_then(|i| i.parse().ok());
        match (id, members.get(&id.unwrap_or(0))) {
            (Some(id), Some(entry)) if *entry == own => {
                if let Some(other) = ids.insert(id, node.name.clone()) {
                    problems.push(format!("{origin}: node id {id} is also {other}'s"));
                }
            }
            (id, entry) => problems.push(format!(
                "{origin}: --node-id {id:?} names {entry:?} in --initial-cluster, not {own}"
            )),
        }
        let advertise = get("--advertise");
        if advertise.as_deref() != Some(own.as_str()) {
            problems.push(format!(
                "{origin}: --advertise {advertise:?} is not its own entry {own}"
            ));
        }
        // Its own MariaDB, waited for until healthy, never a lossy one.
        let url = get("--database-url").unwrap_or_default();
        let db_host = url
            .strip_prefix("mysql://")
            .and_then(|rest| rest.split('/').next())
            .map(|auth_host| auth_host.rsplit('@').next().unwrap_or(auth_host))
            .and_then(|hp| hp.split(':').next())
            .unwrap_or_default()
            .to_string();
        let db_image = services
            .and_then(|s| at(s, &[&db_host, "image"]))
            .and_then(Value::as_str);
        if !db_image.is_some_and(|i| i.starts_with("mariadb") || i.starts_with("mysql")) {
            problems.push(format!(
                "{origin}: --database-url {url:?} is not a MariaDB/MySQL service of this file"
            ));
        }
        if let Some(other) = databases.insert(db_host.clone(), node.name.clone()) {
            problems.push(format!(
                "{origin}: shares database server {db_host} with {other}"
            ));
        }
        if !node.waits_for_healthy.contains(&db_host) {
            problems.push(format!(
                "{origin}: does not wait for {db_host} to be healthy (depends_on)"
            ));
        }
        let db_spec = services.and_then(|s| at(s, &[&db_host]));
        if db_spec.is_some_and(|s| at(s, &["healthcheck", "test"]).is_none()) {
            problems.push(format!(
                "{COMPOSE} services.{db_host}: no healthcheck to wait for"
            ));
        }
        let db_command = db_spec
            .and_then(|s| at(s, &["command"]))
            .map(words)
            .unwrap_or_default()
            .join(" ");
        if db_command
            .replace('_', "-")
            .contains("innodb-flush-log-at-trx-commit")
            && !db_command.contains("commit=1")
        {
            problems.push(format!(
                "{COMPOSE} services.{db_host}: innodb_flush_log_at_trx_commit other than 1"
            ));
        }
        if get("--unsafe-allow-lossy-database").is_some()
            || node
                .serve
                .flags
                .iter()
                .any(|(f, _)| f == "--unsafe-allow-lossy-database")
        {
            problems.push(format!("{origin}: --unsafe-allow-lossy-database"));
        }
        // Its own volume at its data directory.
        let data_dir = get("--data-dir").unwrap_or_default();
        let volume = seq(services.and_then(|s| at(s, &[&node.name, "volumes"])))
            .iter()
            .filter_map(text)
            .find_map(|v| {
                v.split_once(':')
                    .filter(|(_, target)| *target == data_dir)
                    .map(|(src, _)| src.to_string())
            });
        match volume {
            None => problems.push(format!(
                "{origin}: no volume at its data directory {data_dir:?}"
            )),
            Some(v) => {
                if let Some(other) = volumes.insert(v.clone(), node.name.clone()) {
                    problems.push(format!("{origin}: shares volume {v} with {other}"));
                }
            }
        }
        // The cluster secret and TLS, each a mounted secret made from a file.
        for flag in [
            "--cluster-secret-file",
            "--tls-cert-file",
            "--tls-key-file",
            // taskd refuses TLS without the CA it checks its peers against.
            "--peer-ca-file",
            "--auth-token-file",
        ] {
            let Some(path) = get(flag) else {
                problems.push(format!("{origin}: no {flag}"));
                continue;
            };
            match node.secrets.get(&path) {
                Some(secret) if top_secrets.and_then(|s| at(s, &[secret, "file"])).is_some() => {}
                _ => problems.push(format!(
                    "{origin}: {flag} {path} is not a mounted file secret"
                )),
            }
        }
        // Ports: exposed by the image, published, probed, advertised.
        for (what, port) in [
            ("--listen", listen_port),
            ("--metrics-listen", metrics_port),
        ] {
            match port {
                Some(p) if deploy.image.exposed.contains(&p) && node.published.contains(&p) => {}
                _ => problems.push(format!(
                    "{origin}: {what} port {port:?} is not both EXPOSEd and published ({:?})",
                    node.published
                )),
            }
        }
        for p in &node.published {
            if Some(*p) != listen_port && Some(*p) != metrics_port {
                problems.push(format!(
                    "{origin}: publishes {p}, which taskd does not listen on"
                ));
            }
        }
        if node.health.is_empty() {
            problems.push(format!("{origin}: no `taskd cluster health` healthcheck"));
        }
        for call in &node.health {
            problems.extend(check_health_call(call, listen_port));
            let cacert = call
                .flag("--cacert")
                .map(str::to_string)
                .or_else(|| node.env.get("TASKD_CACERT").cloned());
            if !cacert.is_some_and(|c| node.secrets.contains_key(&c)) {
                problems.push(format!(
                    "{}: TLS is on but the health check has no mounted --cacert/TASKD_CACERT",
                    call.origin
                ));
            }
        }
    }
    if let Some((_, initial)) = founders {
        let members = parse_members(&initial);
        if members.len() != nodes.len() || members.keys().any(|id| !ids.contains_key(id)) {
            problems.push(format!(
                "{COMPOSE}: --initial-cluster {initial:?} names other nodes than the {} services",
                nodes.len()
            ));
        }
    }
    problems
}
