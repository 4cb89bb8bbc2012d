//! deploy/gen-secrets.sh, run: its output against what the files name.

use std::collections::BTreeSet;
use std::process::Command;

use serde_yaml_ng::Value;

use super::files::{Deploy, COMPOSE};
use super::model::{at, repo_root, string_map, text};

/// Runs deploy/gen-secrets.sh into a temporary directory: it makes every file
/// the compose file mounts and the `kubectl create secret` lines (README and
/// secret.yaml) name, for exactly the Secret's keys; its certificates verify
/// against its CA; and it refuses to overwrite a set it made.
pub fn check_gen_secrets(deploy: &Deploy) -> Vec<String> {
    let root = repo_root();
    let dir = tempfile::tempdir().expect("temp dir");
    let out = dir.path().join("secrets");
    let run = || {
        Command::new("bash")
            .arg(root.join("deploy/gen-secrets.sh"))
            .arg(&out)
            .output()
            .expect("run bash")
    };
    let first = run();
    if !first.status.success() {
        return vec![format!(
            "gen-secrets.sh failed (it needs openssl): {}",
            String::from_utf8_lossy(&first.stderr)
        )];
    }
    let mut problems = Vec::new();
    if run().status.success() {
        problems.push("gen-secrets.sh overwrote an existing set of secrets".into());
    }
    let secrets = at(&deploy.compose, &["secrets"]).and_then(Value::as_mapping);
    for (name, spec) in secrets.into_iter().flatten() {
        let file = at(spec, &["file"]).and_then(text).unwrap_or_default();
        let made = file
            .strip_prefix("./secrets/")
            .is_some_and(|f| out.join(f).is_file());
        if !made {
            problems.push(format!(
                "{COMPOSE}: secret {name:?} file {file:?} is not one gen-secrets.sh makes"
            ));
        }
    }
    let secret_keys: BTreeSet<String> = deploy
        .objects("Secret")
        .flat_map(|(_, s)| string_map(at(s, &["stringData"])).into_keys())
        .collect();
    for doc in ["README.md", "deploy/kubernetes/secret.yaml"] {
        let text = std::fs::read_to_string(root.join(doc)).unwrap_or_default();
        let mut keys = BTreeSet::new();
        for (start, _) in text.match_indices("--from-file=") {
            let arg: String = text[start + 12..]
                .chars()
                .take_while(|c| !c.is_whitespace() && *c != '\\')
                .collect();
            let Some((key, path)) = arg.split_once('=') else {
                continue;
            };
            keys.insert(key.to_string());
            if !path
                .strip_prefix("deploy/secrets/")
                .is_some_and(|f| out.join(f).is_file())
            {
                problems.push(format!(
                    "{doc}: --from-file={arg}: gen-secrets.sh makes no such file"
                ));
            }
        }
        if keys != secret_keys {
            problems.push(format!("{doc}: `kubectl create secret` makes keys {keys:?}, the Secret has {secret_keys:?}"));
        }
    }
    let secret = std::fs::read_to_string(out.join("cluster-secret")).unwrap_or_default();
    if secret.trim().len() < 16 {
        problems.push("gen-secrets.sh: the cluster secret is shorter than 16 characters".into());
    }
    let tokens = std::fs::read_to_string(out.join("tokens")).unwrap_or_default();
    for line in tokens.lines() {
        if !matches!(
            line.split_whitespace().collect::<Vec<_>>()[..],
            [_, "reader" | "writer" | "admin"]
        ) {
            problems.push(format!(
                "gen-secrets.sh: token line {line:?} is not `TOKEN ROLE`"
            ));
        }
    }
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "crt") && !path.ends_with("ca.crt") {
            let verify = Command::new("openssl")
                .args(["verify", "-CAfile"])
                .arg(out.join("ca.crt"))
                .arg(&path)
                .output()
                .expect("run openssl");
            if !verify.status.success() {
                problems.push(format!(
                    "gen-secrets.sh: {} does not verify: {verify:?}",
                    path.display()
                ));
            }
        }
    }
    problems
}
