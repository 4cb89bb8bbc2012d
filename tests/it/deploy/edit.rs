//! Small edits that break an in-memory copy of the files on purpose.

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

use super::files::Deploy;

/// A compose service's `command:` list.
pub fn compose_command_mut<'a>(deploy: &'a mut Deploy, service: &str) -> &'a mut Vec<Value> {
    deploy.compose["services"][service]["command"]
        .as_sequence_mut()
        .unwrap_or_else(|| panic!("services.{service}.command is not a list"))
}

/// Sets `--flag=value` in a command list, replacing the flag if present.
pub fn set_flag(command: &mut Vec<Value>, flag: &str, value: &str) {
    let prefix = format!("{flag}=");
    command.retain(|w| !w.as_str().is_some_and(|w| w.starts_with(&prefix)));
    command.push(format!("{prefix}{value}").into());
}

/// A compose service's `environment:` as an editable map, written back on drop.
pub fn compose_env_mut<'a>(deploy: &'a mut Deploy, service: &str) -> EnvEdit<'a> {
    let spec = &mut deploy.compose["services"][service];
    let env = super::files::compose_env(spec);
    EnvEdit { spec, env }
}

pub struct EnvEdit<'a> {
    spec: &'a mut Value,
    env: BTreeMap<String, String>,
}

impl std::ops::Deref for EnvEdit<'_> {
    type Target = BTreeMap<String, String>;
    fn deref(&self) -> &Self::Target {
        &self.env
    }
}

impl std::ops::DerefMut for EnvEdit<'_> {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.env
    }
}

impl Drop for EnvEdit<'_> {
    fn drop(&mut self) {
        let map = self
            .env
            .iter()
            .map(|(k, v)| (Value::from(k.as_str()), Value::from(v.as_str())))
            .collect();
        self.spec["environment"] = Value::Mapping(map);
    }
}

/// The first container of a workload's pod template.
pub fn container_mut(workload: &mut Value) -> &mut Value {
    &mut workload["spec"]["template"]["spec"]["containers"][0]
}
