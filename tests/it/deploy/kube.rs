//! The Kubernetes manifests: the StatefulSet and the objects around it, and
//! its shell wrapper run for each pod name.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use serde_yaml_ng::Value;

use super::files::{pod_containers, setting, Deploy, PodContainer};
use super::model::{at, invocations, parse_members, port_of, repo_root, seq, string_map, text};

pub fn check_kubernetes(deploy: &Deploy) -> Vec<String> {
    let mut problems = Vec::new();
    let sets: Vec<_> = deploy.objects("StatefulSet").collect();
    let [(file, sts)] = sets[..] else {
        return vec![format!(
            "deploy/kubernetes: {} StatefulSets, expected one",
            sets.len()
        )];
    };
    let name = at(sts, &["metadata", "name"])
        .and_then(text)
        .unwrap_or_default();
    let origin = format!("{file} StatefulSet {name}");
    let namespace = at(sts, &["metadata", "namespace"])
        .and_then(text)
        .unwrap_or("default".into());
    let replicas = at(sts, &["spec", "replicas"])
        .and_then(Value::as_u64)
        .unwrap_or(1);
    if replicas != 3 {
        problems.push(format!("{origin}: replicas {replicas}, expected 3"));
    }
    if at(sts, &["spec", "podManagementPolicy"]).and_then(Value::as_str) != Some("Parallel") {
        problems.push(format!("{origin}: podManagementPolicy is not Parallel: with OrderedReady pod 0 waits for a readiness that needs a quorum"));
    }
    let selector = string_map(at(sts, &["spec", "selector", "matchLabels"]));
    let pod_labels = string_map(at(sts, &["spec", "template", "metadata", "labels"]));
    if selector.is_empty() || !is_subset(&selector, &pod_labels) {
        problems.push(format!(
            "{origin}: selector {selector:?} does not select its pods {pod_labels:?}"
        ));
    }

    // The headless Service that names the pods, and the other Services.
    let service_name = at(sts, &["spec", "serviceName"])
        .and_then(text)
        .unwrap_or_default();
    match deploy.object("Service", &service_name) {
        Some(svc) if at(svc, &["spec", "clusterIP"]).and_then(Value::as_str) == Some("None") => {
            if at(svc, &["spec", "publishNotReadyAddresses"]).and_then(Value::as_bool) != Some(true)
            {
                problems.push(format!("{origin}: headless Service {service_name} hides not-ready pods, whose peers must find them to elect a leader"));
            }
        }
        _ => problems.push(format!(
            "{origin}: serviceName {service_name:?} is not a headless Service (clusterIP: None)"
        )),
    }

    // At most one pod down by choice.
    let pdbs: Vec<_> = deploy
        .objects("PodDisruptionBudget")
        .filter(|(_, p)| string_map(at(p, &["spec", "selector", "matchLabels"])) == selector)
        .collect();
    match pdbs[..] {
        [(_, pdb)] if at(pdb, &["spec", "maxUnavailable"]).and_then(Value::as_u64) == Some(1) => {}
        _ => problems.push(format!(
            "{origin}: no PodDisruptionBudget with maxUnavailable 1 selecting {selector:?}"
        )),
    }

    let containers: Vec<_> = pod_containers(deploy)
        .into_iter()
        .filter(|c| {
            std::ptr::eq(
                c.pod_spec,
                at(sts, &["spec", "template", "spec"]).unwrap_or(&Value::Null),
            )
        })
        .filter(|c| c.invocations().iter().any(|i| i.is(&["serve"])))
        .collect();
    let [container] = &containers[..] else {
        problems.push(format!(
            "{origin}: {} containers run `taskd serve`, expected one",
            containers.len()
        ));
        return problems;
    };
    let env = container.literal_env();
    let image = &deploy.image;
    let serve = container
        .invocations()
        .into_iter()
        .find(|i| i.is(&["serve"]))
        .unwrap();
    let get = |flag: &str| setting(&serve, &env, image, flag);

    // Non-root, probes, data claim.
    let non_root = |v: Option<&Value>| {
        at(v.unwrap_or(&Value::Null), &["runAsNonRoot"]).and_then(Value::as_bool)
    };
    let pod_security = at(container.pod_spec, &["securityContext"]);
    let own_security = at(container.container, &["securityContext"]);
    if non_root(own_security).or(non_root(pod_security)) != Some(true) {
        problems.push(format!("{}: runAsNonRoot is not true", container.origin));
    }
    let listen_port = get("--listen").and_then(|a| port_of(&a));
    let metrics_port = get("--metrics-listen").and_then(|a| port_of(&a));
    let declared: BTreeSet<u16> = seq(at(container.container, &["ports"]))
        .iter()
        .filter_map(|p| at(p, &["containerPort"])?.as_u64()?.try_into().ok())
        .collect();
    for (what, port) in [
        ("--listen", listen_port),
        ("--metrics-listen", metrics_port),
    ] {
        match port {
            Some(p) if declared.contains(&p) && image.exposed.contains(&p) => {}
            _ => problems.push(format!(
                "{}: {what} port {port:?} is not both a containerPort {declared:?} and EXPOSEd",
                container.origin
            )),
        }
    }
    for probe in ["readinessProbe", "livenessProbe"] {
        if at(container.container, &[probe]).is_none() {
            problems.push(format!("{}: no {probe}", container.origin));
        }
    }
    for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
        let Some(spec) = at(container.container, &[probe]) else {
            continue;
        };
        let (kind, expected) = if let Some(http) = at(spec, &["httpGet"]) {
            (
                format!(
                    "httpGet {}",
                    at(http, &["path"]).and_then(text).unwrap_or_default()
                ),
                metrics_port,
            )
        } else if at(spec, &["grpc"]).is_some() {
            ("grpc".into(), listen_port)
        } else {
            continue;
        };
        let port = at(spec, &[kind.split(' ').next().unwrap(), "port"])
            .and_then(|p| container.resolve_port(p));
        if port.is_none() || port != expected {
            problems.push(format!(
                "{}: {probe} {kind} on port {port:?}, but taskd serves it on {expected:?}",
                container.origin
            ));
        }
    }
    let data_dir = get("--data-dir").unwrap_or_default();
    let claims: BTreeSet<String> = seq(at(sts, &["spec", "volumeClaimTemplates"]))
        .iter()
        .filter_map(|c| at(c, &["metadata", "name"]).and_then(text))
        .collect();
    if !mounts(container)
        .iter()
        .any(|(path, volume)| *path == data_dir && claims.contains(volume))
    {
        problems.push(format!(
            "{}: its data directory {data_dir:?} is not a volumeClaimTemplate",
            container.origin
        ));
    }
    problems.extend(check_secret_files(deploy, container, &env));
    problems.extend(check_services(deploy, container, &pod_labels));

    // The wrapper, run as each pod: ids 1..=replicas, each advertising its entry.
    let Some(script) = container.script() else {
        problems.push(format!(
            "{}: no `sh -c` wrapper deriving the node id from the pod name",
            container.origin
        ));
        return problems;
    };
    let mut databases = BTreeSet::new();
    for ordinal in 0..replicas {
        let pod = format!("{name}-{ordinal}");
        for mysql in [None, Some("mysql://u:p@mysql:3306")] {
            let argv = match run_wrapper(&script, &pod, &env, mysql) {
                Ok(argv) => argv,
                Err(e) => {
                    problems.push(format!("{}: the wrapper as {pod}: {e}", container.origin));
                    continue;
                }
            };
            let Some(call) = invocations(&format!("{} as {pod}", container.origin), &argv).pop()
            else {
                continue;
            };
            let get = |flag: &str| setting(&call, &env, image, flag);
            let members = parse_members(&get("--initial-cluster").unwrap_or_default());
            let expected: BTreeMap<u64, String> = (0..replicas)
                .map(|i| {
                    (
                        i + 1,
                        format!(
                            "{name}-{i}.{service_name}.{namespace}.svc.cluster.local:{}",
                            listen_port.unwrap_or(0)
                        ),
                    )
                })
                .collect();
            if members != expected {
                problems.push(format!(
                    "{}: --initial-cluster {members:?}, expected {expected:?}",
                    call.origin
                ));
            }
            let id = get("--node-id");
            if id != Some((ordinal + 1).to_string()) {
                problems.push(format!(
                    "{}: --node-id {id:?}, expected {}",
                    call.origin,
                    ordinal + 1
                ));
            }
            let advertise = get("--advertise");
            if advertise.as_ref() != expected.get(&(ordinal + 1)) {
                problems.push(format!(
                    "{}: --advertise {advertise:?} is not its own entry",
                    call.origin
                ));
            }
            if mysql.is_some() && !databases.insert(get("--database-url")) {
                problems.push(format!(
                    "{}: --database-url {:?} is another pod's too",
                    call.origin,
                    get("--database-url")
                ));
            }
        }
    }

    // Prometheus: the ServiceMonitor scrapes one Service's named metrics port.
    for (file, monitor) in deploy.objects("ServiceMonitor") {
        let wanted = string_map(at(monitor, &["spec", "selector", "matchLabels"]));
        let selected: Vec<_> = deploy
            .objects("Service")
            .filter(|(_, s)| is_subset(&wanted, &string_map(at(s, &["metadata", "labels"]))))
            .map(|(_, s)| s)
            .collect();
        let [svc] = selected[..] else {
            problems.push(format!(
                "{file}: ServiceMonitor selects {} Services, expected one",
                selected.len()
            ));
            continue;
        };
        for endpoint in seq(at(monitor, &["spec", "endpoints"])) {
            let port = at(endpoint, &["port"]).and_then(text);
            if !seq(at(svc, &["spec", "ports"]))
                .iter()
                .any(|p| at(p, &["name"]).and_then(text) == port)
            {
                problems.push(format!(
                    "{file}: ServiceMonitor port {port:?} is no port of the Service it selects"
                ));
            }
        }
    }
    for (file, kustomization) in deploy.objects("Kustomization") {
        for resource in seq(at(kustomization, &["resources"]))
            .iter()
            .filter_map(text)
        {
            let dir = repo_root().join(file).parent().unwrap().to_path_buf();
            if !dir.join(&resource).exists() {
                problems.push(format!("{file}: resource {resource} does not exist"));
            }
        }
    }
    problems
}

fn is_subset(small: &BTreeMap<String, String>, big: &BTreeMap<String, String>) -> bool {
    small.iter().all(|(k, v)| big.get(k) == Some(v))
}

/// Mount path → volume name.
fn mounts(container: &PodContainer<'_>) -> Vec<(String, String)> {
    seq(at(container.container, &["volumeMounts"]))
        .iter()
        .filter_map(|m| {
            Some((
                at(m, &["mountPath"]).and_then(text)?,
                at(m, &["name"]).and_then(text)?,
            ))
        })
        .collect()
}

/// Every `TASKD_…_FILE` (and TASKD_CACERT) is a key of a mounted Secret
/// that the manifests define, and the cluster secret and TLS are set.
fn check_secret_files(
    deploy: &Deploy,
    container: &PodContainer<'_>,
    env: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for needed in [
        "TASKD_CLUSTER_SECRET_FILE",
        "TASKD_TLS_CERT_FILE",
        "TASKD_TLS_KEY_FILE",
        // taskd refuses TLS without the CA it checks its peers against.
        "TASKD_PEER_CA_FILE",
    ] {
        if !env.contains_key(needed) {
            problems.push(format!("{}: no {needed}", container.origin));
        }
    }
    let volumes = seq(at(container.pod_spec, &["volumes"]));
    for (var, path) in env
        .iter()
        .filter(|(k, _)| k.ends_with("_FILE") || *k == "TASKD_CACERT")
    {
        let found = mounts(container).into_iter().find_map(|(mount, volume)| {
            let key = path.strip_prefix(&format!("{}/", mount.trim_end_matches('/')))?;
            let volume = volumes
                .iter()
                .find(|v| at(v, &["name"]).and_then(text).as_deref() == Some(volume.as_str()))?;
            Some((
                at(volume, &["secret", "secretName"]).and_then(text)?,
                key.to_string(),
            ))
        });
        let defined = found.as_ref().and_then(|(secret, key)| {
            let secret = deploy.object("Secret", secret)?;
            Some(
                at(secret, &["stringData", key])
                    .or(at(secret, &["data", key]))
                    .is_some(),
            )
        });
        if defined != Some(true) {
            problems.push(format!(
                "{}: {var}={path} is not a key of a mounted Secret defined here ({found:?})",
                container.origin
            ));
        }
    }
    problems
}

/// Services that select the pods reach named or numbered container ports,
/// and each has a port named `metrics`.
fn check_services(
    deploy: &Deploy,
    container: &PodContainer<'_>,
    pod_labels: &BTreeMap<String, String>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (file, svc) in deploy.objects("Service") {
        let selector = string_map(at(svc, &["spec", "selector"]));
        if selector.is_empty() || !is_subset(&selector, pod_labels) {
            continue;
        }
        let name = at(svc, &["metadata", "name"])
            .and_then(text)
            .unwrap_or_default();
        let ports = seq(at(svc, &["spec", "ports"]));
        for port in ports {
            let target = at(port, &["targetPort"])
                .or(at(port, &["port"]))
                .unwrap_or(&Value::Null);
            if container.resolve_port(target).is_none() {
                problems.push(format!(
                    "{file} Service {name}: targetPort {target:?} is no port of {}",
                    container.origin
                ));
            }
        }
        if !ports
            .iter()
            .any(|p| at(p, &["name"]).and_then(Value::as_str) == Some("metrics"))
        {
            problems.push(format!("{file} Service {name}: no port named metrics"));
        }
    }
    problems
}

/// The container's `sh -c` script run as pod `pod`, with `taskd` a stand-in
/// that prints its arguments: what the real container would start.
fn run_wrapper(
    script: &str,
    pod: &str,
    env: &BTreeMap<String, String>,
    mysql_server_url: Option<&str>,
) -> Result<Vec<String>, String> {
    let bin = tempfile::tempdir().map_err(|e| e.to_string())?;
    let stand_in = bin.path().join("taskd");
    std::fs::write(
        &stand_in,
        "#!/bin/sh\nfor a in taskd \"$@\"; do printf '%s\\n' \"$a\"; done\n",
    )
    .map_err(|e| e.to_string())?;
    std::fs::set_permissions(
        &stand_in,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .map_err(|e| e.to_string())?;
    let mut command = Command::new("/bin/sh");
    command
        .arg("-c")
        .arg(script)
        .env_clear()
        .env("PATH", format!("{}:/usr/bin:/bin", bin.path().display()))
        .env("HOSTNAME", pod)
        .env("POD_NAME", pod)
        .envs(env);
    if let Some(url) = mysql_server_url {
        command.env("MYSQL_SERVER_URL", url);
    }
    let output = command.output().map_err(|e| e.to_string())?;
    if !output.status.success() {
        return Err(format!(
            "exit {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(str::to_string)
        .collect())
}
