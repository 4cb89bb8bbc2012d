//! The deployment files loaded once, and the containers in them that run
//! `taskd`: their command lines, environment, ports and mounted files.

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

use super::model::{
    at, invocations, parse_dockerfile, read, repo_root, seq, shell_words, string_map, text,
    yaml_documents, Image, Invocation,
};

/// Everything under test, parsed; tests break copies of it in memory.
#[derive(Debug, Clone)]
pub struct Deploy {
    pub image: Image,
    pub dockerignore: String,
    pub gitignore: String,
    /// deploy/docker-compose.yml.
    pub compose: Value,
    /// Every document of every deploy/kubernetes/*.yaml, with its file name.
    pub kubernetes: Vec<(String, Value)>,
}

pub const COMPOSE: &str = "deploy/docker-compose.yml";

impl Deploy {
    /// Reads the repository's files; every YAML file under deploy/ must parse.
    pub fn load() -> Deploy {
        let root = repo_root();
        let image = parse_dockerfile(&read(&root.join("Dockerfile"))).expect("Dockerfile");
        let mut yaml = BTreeMap::new();
        let mut errors = Vec::new();
        for path in yaml_files(&root.join("deploy")) {
            let name = path.strip_prefix(&root).unwrap().display().to_string();
            match yaml_documents(&name, &read(&path)) {
                Ok(documents) => drop(yaml.insert(name, documents)),
                Err(e) => errors.push(e),
            }
        }
        assert!(
            errors.is_empty(),
            "YAML that does not parse:\n{}",
            errors.join("\n")
        );
        let compose = yaml
            .remove(COMPOSE)
            .and_then(|mut d| (d.len() == 1).then(|| d.remove(0)))
            .expect("deploy/docker-compose.yml: one document");
        let kubernetes = yaml
            .into_iter()
            .filter(|(name, _)| name.starts_with("deploy/kubernetes/"))
            .flat_map(|(name, documents)| documents.into_iter().map(move |d| (name.clone(), d)))
            .collect();
        Deploy {
            image,
            dockerignore: read(&root.join(".dockerignore")),
            gitignore: read(&root.join(".gitignore")),
            compose,
            kubernetes,
        }
    }

    /// The Kubernetes objects of a kind, with their file names.
    pub fn objects<'a>(&'a self, kind: &'a str) -> impl Iterator<Item = (&'a str, &'a Value)> + 'a {
        self.kubernetes
            .iter()
            .filter(move |(_, v)| at(v, &["kind"]).and_then(Value::as_str) == Some(kind))
            .map(|(file, v)| (file.as_str(), v))
    }

    pub fn object<'a>(&'a self, kind: &'a str, name: &str) -> Option<&'a Value> {
        self.objects(kind)
            .map(|(_, v)| v)
            .find(|v| at(v, &["metadata", "name"]).and_then(Value::as_str) == Some(name))
    }

    pub fn object_mut(&mut self, kind: &str, name: &str) -> &mut Value {
        self.kubernetes
            .iter_mut()
            .map(|(_, v)| v)
            .find(|v| {
                at(v, &["kind"]).and_then(Value::as_str) == Some(kind)
                    && at(v, &["metadata", "name"]).and_then(Value::as_str) == Some(name)
            })
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    }
}

fn yaml_files(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            // deploy/secrets/ holds generated keys, not manifests.
            if path.file_name().is_some_and(|n| n != "secrets") {
                files.extend(yaml_files(&path));
            }
        } else if path.extension().is_some_and(|e| e == "yml" || e == "yaml") {
            files.push(path);
        }
    }
    files.sort();
    files
}

/// One compose service that runs `taskd serve`.
#[derive(Debug, Clone)]
pub struct ComposeNode {
    pub name: String,
    pub serve: Invocation,
    pub env: BTreeMap<String, String>,
    pub health: Vec<Invocation>,
    /// Container-side ports of `ports:`.
    pub published: Vec<u16>,
    /// Mount path in the container → top-level secret name.
    pub secrets: BTreeMap<String, String>,
    /// Services this one waits for until they are healthy.
    pub waits_for_healthy: Vec<String>,
}

/// Every `taskd` command line of a compose service: its command (after the
/// image's entrypoint) and its health check. Non-taskd services give none.
pub fn compose_invocations(service: &str, spec: &Value, image: &Image) -> Vec<Invocation> {
    let origin = format!("{COMPOSE} services.{service}");
    let entrypoint = match at(spec, &["entrypoint"]) {
        Some(e) => words(e),
        None if runs_taskd_image(spec) => image.entrypoint.clone(),
        None => Vec::new(),
    };
    let command = at(spec, &["command"]).map(words).unwrap_or_default();
    let mut found = invocations(
        &format!("{origin}.command"),
        &[entrypoint, command].concat(),
    );
    if let Some(test) = at(spec, &["healthcheck", "test"]) {
        let mut test = words(test);
        if test.first().is_some_and(|w| w.starts_with("CMD")) {
            test.remove(0);
        }
        found.extend(invocations(&format!("{origin}.healthcheck"), &test));
    }
    found
}

fn runs_taskd_image(spec: &Value) -> bool {
    at(spec, &["build"]).is_some()
        || at(spec, &["image"])
            .and_then(Value::as_str)
            .is_some_and(|i| i.split(':').next() == Some("taskd"))
}

/// A command as words: a YAML list as is, a string as a shell would split it.
pub fn words(value: &Value) -> Vec<String> {
    match value {
        Value::Sequence(items) => items.iter().filter_map(text).collect(),
        other => text(other).map(|s| shell_words(&s)).unwrap_or_default(),
    }
}

/// A compose `environment:` (a map or a list of `KEY=VALUE`).
pub fn compose_env(spec: &Value) -> BTreeMap<String, String> {
    match at(spec, &["environment"]) {
        Some(Value::Sequence(items)) => items
            .iter()
            .filter_map(text)
            .map(|kv| match kv.split_once('=') {
                Some((k, v)) => (k.to_string(), v.to_string()),
                None => (kv, String::new()),
            })
            .collect(),
        other => string_map(other),
    }
}

pub fn compose_nodes(deploy: &Deploy) -> Vec<ComposeNode> {
    let mut nodes = Vec::new();
    let services = at(&deploy.compose, &["services"]).and_then(Value::as_mapping);
    for (name, spec) in services.into_iter().flatten() {
        let name = text(name).unwrap_or_default();
        let found = compose_invocations(&name, spec, &deploy.image);
        let Some(serve) = found.iter().find(|i| i.is(&["serve"])).cloned() else {
            continue;
        };
        let published = seq(at(spec, &["ports"]))
            .iter()
            .filter_map(|p| match p {
                Value::Mapping(_) => at(p, &["target"]).and_then(text),
                other => text(other).and_then(|s| s.rsplit(':').next().map(str::to_string)),
            })
            .filter_map(|p| p.trim_end_matches("/tcp").parse().ok())
            .collect();
        let secrets = seq(at(spec, &["secrets"]))
            .iter()
            .filter_map(|s| {
                let source = at(s, &["source"]).and_then(text).or_else(|| text(s))?;
                let target = at(s, &["target"]).and_then(text).unwrap_or(source.clone());
                let path = if target.starts_with('/') {
                    target
                } else {
                    format!("/run/secrets/{target}")
                };
                Some((path, source))
            })
            .collect();
        let waits_for_healthy = at(spec, &["depends_on"])
            .and_then(Value::as_mapping)
            .into_iter()
            .flatten()
            .filter(|(_, v)| {
                at(v, &["condition"]).and_then(Value::as_str) == Some("service_healthy")
            })
            .filter_map(|(k, _)| text(k))
            .collect();
        nodes.push(ComposeNode {
            env: compose_env(spec),
            health: found
                .into_iter()
                .filter(|i| i.is(&["cluster", "health"]))
                .collect(),
            name,
            serve,
            published,
            secrets,
            waits_for_healthy,
        });
    }
    nodes
}

/// A setting of a node: its flag, else its `TASKD_…` variable, else the image's.
pub fn setting(
    serve: &Invocation,
    env: &BTreeMap<String, String>,
    image: &Image,
    flag: &str,
) -> Option<String> {
    let var = format!(
        "TASKD_{}",
        flag.trim_start_matches("--")
            .replace('-', "_")
            .to_uppercase()
    );
    serve
        .flag(flag)
        .map(str::to_string)
        .or_else(|| env.get(&var).cloned())
        .or_else(|| image.env.get(&var).cloned())
}

/// A container of a Kubernetes pod template, with the object it is in.
#[derive(Debug, Clone)]
pub struct PodContainer<'a> {
    pub origin: String,
    pub pod_spec: &'a Value,
    pub container: &'a Value,
}

/// Every container of every workload (StatefulSet, Deployment, Pod, …).
pub fn pod_containers(deploy: &Deploy) -> Vec<PodContainer<'_>> {
    let mut found = Vec::new();
    for (file, object) in &deploy.kubernetes {
        let pod_spec = at(object, &["spec", "template", "spec"])
            .or_else(|| at(object, &["spec", "jobTemplate", "spec", "template", "spec"]))
            .or_else(|| {
                (at(object, &["kind"]).and_then(Value::as_str) == Some("Pod"))
                    .then(|| at(object, &["spec"]))
                    .flatten()
            });
        let Some(pod_spec) = pod_spec else { continue };
        let name = at(object, &["metadata", "name"])
            .and_then(text)
            .unwrap_or_default();
        for list in ["initContainers", "containers"] {
            for container in seq(at(pod_spec, &[list])) {
                let cname = at(container, &["name"]).and_then(text).unwrap_or_default();
                found.push(PodContainer {
                    origin: format!("{file} {name} {list}.{cname}"),
                    pod_spec,
                    container,
                });
            }
        }
    }
    found
}

impl PodContainer<'_> {
    /// Command and args as one argument vector; `sh -c SCRIPT` as the script's words.
    pub fn argv(&self) -> Vec<String> {
        let argv: Vec<String> = [
            at(self.container, &["command"]),
            at(self.container, &["args"]),
        ]
        .into_iter()
        .flatten()
        .flat_map(words)
        .collect();
        match argv.iter().position(|w| w == "-c") {
            Some(i) if argv[0].ends_with("sh") => {
                argv[i + 1..].iter().flat_map(|s| shell_words(s)).collect()
            }
            _ => argv,
        }
    }

    /// The `sh -c` script, if the container runs one.
    pub fn script(&self) -> Option<String> {
        let argv: Vec<String> = [
            at(self.container, &["command"]),
            at(self.container, &["args"]),
        ]
        .into_iter()
        .flatten()
        .flat_map(words)
        .collect();
        let i = argv.iter().position(|w| w == "-c")?;
        argv[0]
            .ends_with("sh")
            .then(|| argv.get(i + 1).cloned())
            .flatten()
    }

    /// `env:` with literal values (a `valueFrom` reads as None).
    pub fn env(&self) -> BTreeMap<String, Option<String>> {
        seq(at(self.container, &["env"]))
            .iter()
            .filter_map(|e| {
                Some((
                    at(e, &["name"]).and_then(text)?,
                    at(e, &["value"]).and_then(text),
                ))
            })
            .collect()
    }

    pub fn literal_env(&self) -> BTreeMap<String, String> {
        self.env()
            .into_iter()
            .filter_map(|(k, v)| Some((k, v?)))
            .collect()
    }

    /// The `taskd` command lines in its command, args and exec probes.
    pub fn invocations(&self) -> Vec<Invocation> {
        let mut found = invocations(&format!("{} command", self.origin), &self.argv());
        for probe in ["readinessProbe", "livenessProbe", "startupProbe"] {
            if let Some(command) = at(self.container, &[probe, "exec", "command"]) {
                found.extend(invocations(
                    &format!("{} {probe}", self.origin),
                    &words(command),
                ));
            }
        }
        found
    }

    /// A named or numbered container port, as a number.
    pub fn resolve_port(&self, port: &Value) -> Option<u16> {
        if let Some(n) = port.as_u64() {
            return u16::try_from(n).ok();
        }
        let name = port.as_str()?;
        seq(at(self.container, &["ports"]))
            .iter()
            .find(|p| at(p, &["name"]).and_then(Value::as_str) == Some(name))
            .and_then(|p| at(p, &["containerPort"])?.as_u64())
            .and_then(|n| u16::try_from(n).ok())
    }
}
