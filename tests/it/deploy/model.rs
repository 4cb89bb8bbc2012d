//! What the deployment files say, read into plain values: the Dockerfile's
//! final stage, the YAML documents, the `taskd …` command lines inside them,
//! and the flags and environment variables `taskd … --help` lists.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_yaml_ng::Value;

use crate::process::TASKD;

/// The repository root (where Cargo.toml, Dockerfile and deploy/ are).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()))
}

/// Every document of a YAML file (`---`-separated), merge keys (`<<: *x`)
/// applied as docker compose applies them.
pub fn yaml_documents(name: &str, text: &str) -> Result<Vec<Value>, String> {
    use serde::Deserialize;
    let mut documents = Vec::new();
    for document in serde_yaml_ng::Deserializer::from_str(text) {
        let mut value = Value::deserialize(document).map_err(|e| format!("{name}: {e}"))?;
        value.apply_merge().map_err(|e| format!("{name}: {e}"))?;
        if !value.is_null() {
            documents.push(value);
        }
    }
    Ok(documents)
}

/// `value[k0][k1]…`, or None where a key is missing.
pub fn at<'a>(value: &'a Value, path: &[&str]) -> Option<&'a Value> {
    path.iter().try_fold(value, |v, key| v.get(*key))
}

/// A scalar as text (numbers and booleans too), as a shell or Kubernetes reads it.
pub fn text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

pub fn seq(value: Option<&Value>) -> &[Value] {
    value
        .and_then(Value::as_sequence)
        .map_or(&[], Vec::as_slice)
}

/// Labels (or any string map) as a sorted map.
pub fn string_map(value: Option<&Value>) -> BTreeMap<String, String> {
    let Some(mapping) = value.and_then(Value::as_mapping) else {
        return BTreeMap::new();
    };
    mapping
        .iter()
        .filter_map(|(k, v)| Some((text(k)?, text(v)?)))
        .collect()
}

/// The port of `host:port`.
pub fn port_of(addr: &str) -> Option<u16> {
    addr.rsplit_once(':')?.1.parse().ok()
}

pub fn host_of(addr: &str) -> Option<&str> {
    Some(addr.rsplit_once(':')?.0)
}

/// `id=host:port,…` as a map (entries that do not parse left out).
pub fn parse_members(initial: &str) -> BTreeMap<u64, String> {
    initial
        .split(',')
        .filter_map(|m| m.split_once('='))
        .filter_map(|(id, addr)| Some((id.trim().parse().ok()?, addr.trim().to_string())))
        .collect()
}

/// One `taskd SUBCOMMAND --flag value …` found in a manifest.
#[derive(Debug, Clone)]
pub struct Invocation {
    /// Where it was found, for messages.
    pub origin: String,
    /// `["serve"]`, `["cluster", "health"]`, …
    pub subcommand: Vec<String>,
    /// Flag name (with `--`) and its value, in order.
    pub flags: Vec<(String, Option<String>)>,
}

impl Invocation {
    pub fn is(&self, subcommand: &[&str]) -> bool {
        self.subcommand == subcommand
    }

    pub fn flag(&self, name: &str) -> Option<&str> {
        self.flags
            .iter()
            .find(|(n, _)| n == name)
            .and_then(|(_, v)| v.as_deref())
    }
}

/// The `taskd` command lines in an argument vector: from each `taskd` (or
/// `…/taskd`) word up to the end or a shell separator.
pub fn invocations(origin: &str, words: &[String]) -> Vec<Invocation> {
    let mut found = Vec::new();
    let mut i = 0;
    while i < words.len() {
        if words[i] != "taskd" && !words[i].ends_with("/taskd") {
            i += 1;
            continue;
        }
        i += 1;
        let mut subcommand = Vec::new();
        while i < words.len() && subcommand.len() < 2 && is_word(&words[i]) {
            subcommand.push(words[i].clone());
            i += 1;
        }
        let mut flags = Vec::new();
        while i < words.len() && !is_separator(&words[i]) {
            let word = &words[i];
            i += 1;
            let Some(flag) = word.strip_prefix("--") else {
                continue;
            };
            let (name, value) = match flag.split_once('=') {
                Some((name, value)) => (name, Some(value.to_string())),
                None if i < words.len()
                    && !words[i].starts_with('-')
                    && !is_separator(&words[i]) =>
                {
                    i += 1;
                    (flag, Some(words[i - 1].clone()))
                }
                None => (flag, None),
            };
            flags.push((format!("--{name}"), value));
        }
        found.push(Invocation {
            origin: origin.to_string(),
            subcommand,
            flags,
        });
    }
    found
}

fn is_word(word: &str) -> bool {
    !word.is_empty()
        && word.chars().all(|c| c.is_ascii_lowercase() || c == '-')
        && !word.starts_with('-')
}

fn is_separator(word: &str) -> bool {
    matches!(word, ";" | "&&" | "||" | "|" | "&" | "\n")
}

/// A shell script's words, enough to find `taskd …` lines in it: line
/// continuations joined, quotes dropped, `;` and new lines kept as separators.
pub fn shell_words(script: &str) -> Vec<String> {
    let mut words = Vec::new();
    for line in script.replace("\\\n", " ").lines() {
        for word in line.split_whitespace() {
            let (word, separator) = match word.strip_suffix(';') {
                Some(w) => (w, true),
                None => (word, false),
            };
            let word = word.replace(['"', '\''], "");
            if !word.is_empty() {
                words.push(word);
            }
            if separator {
                words.push(";".into());
            }
        }
        words.push("\n".into());
    }
    words
}

/// The final stage of a Dockerfile: what the image is.
#[derive(Debug, Clone, Default)]
pub struct Image {
    /// Each stage's `RUN` lines, all stages.
    pub runs: Vec<String>,
    pub env: BTreeMap<String, String>,
    pub exposed: BTreeSet<u16>,
    pub volumes: Vec<String>,
    pub user: Option<String>,
    pub entrypoint: Vec<String>,
    /// The HEALTHCHECK's command words.
    pub healthcheck: Vec<String>,
}

pub fn parse_dockerfile(text: &str) -> Result<Image, String> {
    let mut image = Image::default();
    let joined = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n")
        .replace("\\\n", " ");
    for line in joined.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (instruction, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
        let rest = rest.trim();
        match instruction.to_ascii_uppercase().as_str() {
            "FROM" => {
                let runs = std::mem::take(&mut image.runs);
                image = Image {
                    runs,
                    ..Image::default()
                };
            }
            "RUN" => image.runs.push(rest.to_string()),
            "ENV" => {
                for pair in rest.split_whitespace() {
                    let (k, v) = pair
                        .split_once('=')
                        .ok_or_else(|| format!("ENV {rest:?}: write ENV KEY=VALUE"))?;
                    image
                        .env
                        .insert(k.to_string(), v.trim_matches('"').to_string());
                }
            }
            "EXPOSE" => {
                for port in rest.split_whitespace() {
                    let port = port.trim_end_matches("/tcp");
                    let port = port.parse().map_err(|_| format!("EXPOSE {port:?}"))?;
                    image.exposed.insert(port);
                }
            }
            "VOLUME" => image.volumes = exec_form(rest).unwrap_or_else(|_| vec![rest.to_string()]),
            "USER" => image.user = Some(rest.to_string()),
            "ENTRYPOINT" => image.entrypoint = exec_form(rest)?,
            "HEALTHCHECK" => {
                let (_, command) = rest
                    .split_once("CMD ")
                    .ok_or_else(|| format!("HEALTHCHECK {rest:?} has no CMD"))?;
                let command = command.trim();
                image.healthcheck = exec_form(command).unwrap_or_else(|_| shell_words(command));
            }
            _ => {}
        }
    }
    Ok(image)
}

fn exec_form(text: &str) -> Result<Vec<String>, String> {
    serde_json::from_str(text).map_err(|e| format!("{text:?} is not a JSON array: {e}"))
}

/// What one `taskd … --help` lists: flag names and `TASKD_…` variables.
#[derive(Debug, Clone, Default)]
pub struct Cli {
    pub flags: BTreeSet<String>,
    pub envs: BTreeSet<String>,
}

impl Cli {
    /// Runs this build's `taskd ARGS --help`.
    pub fn of(args: &[&str]) -> Cli {
        let output = Command::new(TASKD)
            .args(args)
            .arg("--help")
            .env("NO_COLOR", "1")
            .output()
            .unwrap_or_else(|e| panic!("run taskd {args:?} --help: {e}"));
        assert!(
            output.status.success(),
            "taskd {args:?} --help failed: {output:?}"
        );
        Cli::parse(&String::from_utf8_lossy(&output.stdout))
    }

    /// Flags are the option lines' first `--name` (not flags a description
    /// mentions); variables are clap's `[env: NAME=…]`.
    pub fn parse(help: &str) -> Cli {
        let mut cli = Cli::default();
        for line in help.lines() {
            let line = line.trim_start();
            let line = match line.strip_prefix('-') {
                Some(rest) if !rest.starts_with('-') => rest.split_once(", ").map_or("", |x| x.1),
                _ => line,
            };
            if let Some(rest) = line.strip_prefix("--") {
                let name: String = rest
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                    .collect();
                cli.flags.insert(format!("--{name}"));
            }
        }
        for (start, _) in help.match_indices("[env: ") {
            let name: String = help[start + 6..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            cli.envs.insert(name);
        }
        cli
    }

    pub fn union(mut self, other: &Cli) -> Cli {
        self.flags.extend(other.flags.iter().cloned());
        self.envs.extend(other.envs.iter().cloned());
        self
    }
}
