//! The nodes' network: one Linux network namespace per node, each joined by
//! a veth pair to a bridge in the root namespace, on a private /24. The
//! harness (root namespace) owns `.254`; node K is `.K`. Partitions are nft
//! rules inside the nodes' namespaces, so the harness's own clients always
//! reach every node.
//!
//! Every name carries the harness's prefix and pid, so that a later run can
//! tell its own leftovers (a dead pid) from another live run's, and remove
//! them ([`remove_leftovers`]).

use std::collections::BTreeSet;
use std::io::Write;
use std::net::Ipv4Addr;
use std::process::{Command, Stdio};

/// Namespaces are named `taskd-chaos-<pid>-n<K>`.
pub const NS_PREFIX: &str = "taskd-chaos-";
/// Bridges `tcb<pid>`, veths `tcv<pid>n<K>` (interface names: 15 bytes at most).
const BRIDGE_PREFIX: &str = "tcb";
const VETH_PREFIX: &str = "tcv";
/// The nft table of partitions, inside each node's namespace.
const NFT_TABLE: &str = "taskd_chaos";

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("{0}")]
    Missing(String),
    #[error("`{command}` failed: {stderr}")]
    Command { command: String, stderr: String },
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        command: String,
        source: std::io::Error,
    },
}

/// Runs a command, returning its stdout, or its stderr as the error.
pub fn run(program: &str, args: &[&str]) -> Result<String, NetError> {
    run_with_input(program, args, None)
}

fn run_with_input(program: &str, args: &[&str], input: Option<&str>) -> Result<String, NetError> {
    let command = format!("{program} {}", args.join(" "));
    let mut child = Command::new(program)
        .args(args)
        .stdin(if input.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| NetError::Spawn {
            command: command.clone(),
            source,
        })?;
    if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
        stdin
            .write_all(text.as_bytes())
            .map_err(|source| NetError::Spawn {
                command: command.clone(),
                source,
            })?;
    }
    let out = child.wait_with_output().map_err(|source| NetError::Spawn {
        command: command.clone(),
        source,
    })?;
    if !out.status.success() {
        return Err(NetError::Command {
            command,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Fails, saying what is missing, unless this process can build namespaces:
/// root, `ip` and `nft`. Never degrade to a run without them.
pub fn check_prerequisites() -> Result<(), NetError> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    if unsafe { libc::geteuid() } != 0 {
        return Err(NetError::Missing(
            "taskd-chaos needs root: it creates network namespaces, a bridge and nft rules \
             (run it as root, e.g. with sudo)"
                .into(),
        ));
    }
    for (tool, package) in [("ip", "iproute2"), ("nft", "nftables")] {
        if run(tool, &["-V"]).is_err() {
            return Err(NetError::Missing(format!(
                "`{tool}` not found: install {package} (apt-get install -y {package})"
            )));
        }
    }
    Ok(())
}

fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}

/// The pid in a name `<prefix><pid>…`, if it has one.
fn owner_pid(name: &str, prefix: &str) -> Option<u32> {
    let rest = name.strip_prefix(prefix)?;
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// Removes namespaces and links that an earlier, dead run left behind.
pub fn remove_leftovers() -> Vec<String> {
    let mut removed = Vec::new();
    let me = std::process::id();
    let dead = |pid: Option<u32>| pid.is_some_and(|p| p != me && !pid_alive(p));
    if let Ok(list) = run("ip", &["netns", "list"]) {
        for name in list.lines().filter_map(|l| l.split_whitespace().next()) {
            if dead(owner_pid(name, NS_PREFIX)) && run("ip", &["netns", "del", name]).is_ok() {
                removed.push(format!("netns {name}"));
            }
        }
    }
    if let Ok(list) = run("ip", &["-o", "link", "show"]) {
        for line in list.lines() {
            let Some(name) = line.split(':').nth(1).map(|n| n.trim()) else {
                continue;
            };
            let name = name.split('@').next().unwrap_or(name);
            let pid = owner_pid(name, BRIDGE_PREFIX).or_else(|| owner_pid(name, VETH_PREFIX));
            if dead(pid) && run("ip", &["link", "del", name]).is_ok() {
                removed.push(format!("link {name}"));
            }
        }
    }
    removed
}

/// The namespaces, veths and bridge of one run; removed on drop.
#[derive(Debug)]
pub struct Network {
    pid: u32,
    /// The third octet of the run's 10.213.X.0/24.
    subnet: u8,
    nodes: usize,
    created: Vec<String>,
    bridge_up: bool,
}

impl Network {
    /// Builds the bridge and `nodes` namespaces. On error, whatever was built
    /// is removed again (by drop).
    pub fn create(nodes: usize) -> Result<Self, NetError> {
        let pid = std::process::id();
        let subnet = free_subnet(pid)?;
        let mut net = Network {
            pid,
            subnet,
            nodes,
            created: Vec::new(),
            bridge_up: false,
        };
        let bridge = net.bridge();
        run("ip", &["link", "add", &bridge, "type", "bridge"]).map_err(|e| {
            NetError::Missing(format!(
                "cannot create a bridge (is this a container without CAP_NET_ADMIN?): {e}"
            ))
        })?;
        net.bridge_up = true;
        let host = format!("{}/24", net.host_addr());
        run("ip", &["addr", "add", &host, "dev", &bridge])?;
        run("ip", &["link", "set", &bridge, "up"])?;
        for k in 1..=nodes {
            let ns = net.ns(k);
            run("ip", &["netns", "add", &ns]).map_err(|e| {
                NetError::Missing(format!("cannot create network namespace {ns}: {e}"))
            })?;
            net.created.push(ns.clone());
            let veth = format!("{VETH_PREFIX}{pid}n{k}");
            run(
                "ip",
                &[
                    "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ],
            )?;
            run("ip", &["link", "set", &veth, "master", &bridge, "up"])?;
            let addr = format!("{}/24", net.addr(k));
            run("ip", &["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            run("ip", &["-n", &ns, "link", "set", "eth0", "up"])?;
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn bridge(&self) -> String {
        format!("{BRIDGE_PREFIX}{}", self.pid)
    }

    /// Node `k`'s namespace (1-based).
    pub fn ns(&self, k: usize) -> String {
        format!("{NS_PREFIX}{}-n{k}", self.pid)
    }

    /// Node `k`'s address on the bridge.
    pub fn addr(&self, k: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.subnet, k as u8)
    }

    /// The harness's own address on the bridge.
    pub fn host_addr(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, 213, self.subnet, 254)
    }

    /// Makes every node drop what it receives from the nodes in
    /// `drops[node]` (1-based on both sides); nodes not named accept all.
    /// Replaces any earlier partition.
    pub fn partition(&self, drops: &[(usize, BTreeSet<usize>)]) -> Result<(), NetError> {
        self.heal()?;
        for (node, from) in drops.iter().filter(|(_, from)| !from.is_empty()) {
            let sources: Vec<String> = from.iter().map(|k| self.addr(*k).to_string()).collect();
            let rules = format!(
                "table inet {NFT_TABLE} {{\n  chain input {{\n    type filter hook input priority 0; policy accept;\n    ip saddr {{ {} }} drop\n  }}\n}}\n",
                sources.join(", ")
            );
            let ns = self.ns(*node);
            run_with_input(
                "ip",
                &["netns", "exec", &ns, "nft", "-f", "-"],
                Some(&rules),
            )?;
        }
        Ok(())
    }

    /// Removes every partition rule.
    pub fn heal(&self) -> Result<(), NetError> {
        for k in 1..=self.nodes {
            run(
                "ip",
                &["netns", "exec", &self.ns(k), "nft", "flush", "ruleset"],
            )?;
        }
        Ok(())
    }
}

/// A 10.213.X.0/24 no interface of this machine uses yet.
fn free_subnet(pid: u32) -> Result<u8, NetError> {
    let used = run("ip", &["-o", "-4", "addr", "show"])?;
    let start = (pid % 250) as u8 + 1;
    (0..250u8)
        .map(|i| (start - 1 + i) % 250 + 1)
        .find(|x| !used.contains(&format!("10.213.{x}.")))
        .ok_or_else(|| NetError::Missing("no free 10.213.X.0/24 subnet on this machine".into()))
}

impl Drop for Network {
    fn drop(&mut self) {
        // A namespace outlives `ip netns del` while a process in it is still
        // dying, and its veth with it: remove the veths first, explicitly.
        for k in 1..=self.created.len() {
            let _ = run(
                "ip",
                &["link", "del", &format!("{VETH_PREFIX}{}n{k}", self.pid)],
            );
        }
        for ns in self.created.drain(..) {
            if let Err(e) = run("ip", &["netns", "del", &ns]) {
                eprintln!("taskd-chaos: cleanup: {e}");
            }
        }
        if self.bridge_up {
            if let Err(e) = run("ip", &["link", "del", &self.bridge()]) {
                eprintln!("taskd-chaos: cleanup: {e}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owner_pids_come_from_the_prefixed_names() {
        assert_eq!(owner_pid("taskd-chaos-1234-n2", NS_PREFIX), Some(1234));
        assert_eq!(owner_pid("tcv99n1", VETH_PREFIX), Some(99));
        assert_eq!(owner_pid("eth0", VETH_PREFIX), None);
        assert_eq!(owner_pid("taskd-chaos-x", NS_PREFIX), None);
    }
}
