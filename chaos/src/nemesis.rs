//! The nemeses: a schedule of faults drawn from the seed (the same seed
//! gives the same schedule), and the code that injects and heals each one.
//! One fault at a time; every fault heals before the run's final phase.
//!
//! While it waits, the nemesis also supervises: a node process that ends by
//! itself (a node that exits when its store fails, as a supervised service
//! would) is started again, and the restart is on the timeline.

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::cluster::Cluster;
use crate::partition;

/// A kind of fault. `partition` stands for every partition shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Nemesis {
    // kill -9 one node, a minority, a majority or all, then restart them.
    Kill,
    // SIGSTOP one node or a majority, then SIGCONT.
    Pause,
    // Any of the partition shapes below, at random.
    Partition,
    // Cut one node off from the others.
    PartitionOne,
    // Cut the current leader off (found with GetClusterStatus).
    PartitionLeader,
    // A minority and a majority that cannot see each other.
    PartitionHalves,
    // Two halves, and one node that sees both.
    PartitionBridge,
    // One node hears nobody, but the others still hear it.
    PartitionOneWay,
    // Five nodes in a ring, each seeing its two neighbours: every node sees
    // a majority, no two the same one (needs --nodes 5).
    PartitionRing,
    // kill -9 a node's MariaDB (or a majority's), then restart it.
    MysqlKill,
    // Fill one node's disk (its files live on a small tmpfs), then free it.
    DiskFull,
    // Cut a node off until it lags past the purged log, heal, and kill -9
    // it while the snapshot it needs is installed; restart it.
    SnapshotKill,
    // Any of the membership changes below, at random.
    Membership,
    // Remove a voter, wipe it, start a new node (new id) in its place that
    // joins as a voter.
    MembershipReplace,
    // The same, but the new node joins as a learner and is then promoted.
    MembershipLearner,
    // Transfer leadership to a voter or to whichever is most up to date.
    MembershipTransfer,
}

impl Nemesis {
    pub fn name(self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_default()
    }
}

/// The default mix for a backend.
pub fn default_mix(mysql: bool) -> Vec<Nemesis> {
    let mut mix = vec![Nemesis::Kill, Nemesis::Pause, Nemesis::Partition];
    if mysql {
        mix.push(Nemesis::MysqlKill);
    }
    mix
}

/// One scheduled fault.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Fault {
    /// When it starts, from the run's start.
    #[serde(with = "millis")]
    pub at: Duration,
    /// How long it holds before it heals.
    #[serde(with = "millis")]
    pub hold: Duration,
    pub nemesis: Nemesis,
    /// Seeds the choice of targets, so that they too follow the seed.
    pub pick: u64,
}

mod millis {
    pub fn serialize<S: serde::Serializer>(
        d: &std::time::Duration,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis() as u64)
    }
}

/// The quiet end of a run: no fault starts or holds in it.
pub fn final_phase(duration: Duration) -> Duration {
    (duration / 6).max(Duration::from_secs(5))
}

/// The faults of a run, from the seed alone.
pub fn schedule(seed: u64, mix: &[Nemesis], nodes: usize, duration: Duration) -> Vec<Fault> {
    let mut kinds: Vec<Nemesis> = mix
        .iter()
        .flat_map(|n| match n {
            Nemesis::Partition => {
                let mut shapes = vec![
                    Nemesis::PartitionOne,
                    Nemesis::PartitionLeader,
                    Nemesis::PartitionHalves,
                    Nemesis::PartitionBridge,
                    Nemesis::PartitionOneWay,
                ];
                if nodes == 5 {
                    shapes.push(Nemesis::PartitionRing);
                }
                shapes
            }
            Nemesis::Membership => vec![
                Nemesis::MembershipReplace,
                Nemesis::MembershipLearner,
                Nemesis::MembershipTransfer,
            ],
            other => vec![*other],
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    let mut rng = fastrand::Rng::with_seed(seed);
    let end = duration.saturating_sub(final_phase(duration));
    let mut at = Duration::from_secs(2);
    let mut faults = Vec::new();
    while !kinds.is_empty() {
        let hold = Duration::from_millis(rng.u64(2_000..=6_000));
        if at + hold > end {
            break;
        }
        faults.push(Fault {
            at,
            hold,
            nemesis: kinds[rng.usize(..kinds.len())],
            pick: rng.u64(..),
        });
        at += hold + Duration::from_millis(rng.u64(1_000..=3_000));
    }
    faults
}

/// What happened, for the timeline.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    pub what: String,
    pub targets: Vec<usize>,
    pub start_us: u64,
    pub end_us: u64,
    pub detail: String,
}

/// `count` distinct nodes (1-based) out of `n`.
fn some_nodes(rng: &mut fastrand::Rng, n: usize, count: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (1..=n).collect();
    rng.shuffle(&mut all);
    all.truncate(count);
    all.sort();
    all
}

/// Injects the faults of `schedule` into `cluster`, then heals everything.
pub async fn run(
    cluster: &mut Cluster,
    faults: &[Fault],
    start: Instant,
    end: Instant,
) -> Vec<Event> {
    let us = |t: Instant| t.duration_since(start).as_micros() as u64;
    let quiet = end - final_phase(end - start);
    let mut events = Vec::new();
    for fault in faults {
        supervise_until(cluster, start + fault.at, start, &mut events).await;
        // A fault that ran long (a membership change waits for its node to
        // catch up) delays the rest: none may reach into the quiet phase.
        if Instant::now() + fault.hold > quiet {
            break;
        }
        let began = Instant::now();
        let (targets, detail) = match inject(cluster, fault, quiet).await {
            Ok(done) => done,
            Err(e) => (Vec::new(), format!("could not inject: {e}")),
        };
        supervise_until(cluster, began + fault.hold, start, &mut events).await;
        let healed = heal(cluster, fault.nemesis, &targets).await;
        events.push(Event {
            what: fault.nemesis.name(),
            targets,
            start_us: us(began),
            end_us: us(Instant::now()),
            detail: if healed.is_empty() {
                detail
            } else {
                format!("{detail}; heal: {healed}")
            },
        });
    }
    supervise_until(cluster, end, start, &mut events).await;
    events
}

async fn inject(
    cluster: &mut Cluster,
    fault: &Fault,
    quiet: Instant,
) -> Result<(Vec<usize>, String), String> {
    let n = cluster.nodes.len();
    let mut rng = fastrand::Rng::with_seed(fault.pick);
    let majority = n / 2 + 1;
    match fault.nemesis {
        Nemesis::Kill => {
            let count = match rng.u8(..10) {
                0..=4 => 1,
                5..=6 => n / 2,
                7..=8 => majority,
                _ => n,
            };
            let targets = some_nodes(&mut rng, n, count);
            for &k in &targets {
                cluster.nodes[k - 1].kill().await;
            }
            Ok((targets, "kill -9".into()))
        }
        Nemesis::Pause => {
            let count = if rng.bool() { 1 } else { majority };
            let targets = some_nodes(&mut rng, n, count);
            for &k in &targets {
                cluster.nodes[k - 1].pause();
            }
            Ok((targets, "SIGSTOP".into()))
        }
        Nemesis::MysqlKill => {
            if cluster.dbs.is_empty() {
                return Err("mysql-kill needs --backend mysql".into());
            }
            let count = if rng.u8(..10) < 7 { 1 } else { majority };
            let targets = some_nodes(&mut rng, n, count);
            for &k in &targets {
                cluster.dbs[k - 1].kill().await;
            }
            Ok((targets, "kill -9 mariadbd".into()))
        }
        Nemesis::SnapshotKill => {
            let x = some_nodes(&mut rng, n, 1)[0];
            let rest: Vec<usize> = (1..=n).filter(|&k| k != x).collect();
            let mut drops = Vec::new();
            partition::cut(&[x], &rest, &mut drops);
            cluster.net.partition(&drops).map_err(|e| e.to_string())?;
            // Long enough for the others to snapshot and purge past it.
            tokio::time::sleep(fault.hold / 2).await;
            cluster.net.heal().map_err(|e| e.to_string())?;
            let behind = crate::cluster::cluster_status(cluster.clients[x - 1].clone()).await;
            // The install starts within a heartbeat or two; the kill lands
            // somewhere inside it (the seed decides where).
            tokio::time::sleep(Duration::from_millis(rng.u64(20..400))).await;
            cluster.nodes[x - 1].kill().await;
            let applied = behind.map_or(0, |s| s.last_applied_index);
            Ok((
                vec![x],
                format!("cut off, healed at applied {applied}, kill -9 during catch-up"),
            ))
        }
        Nemesis::MembershipReplace | Nemesis::MembershipLearner | Nemesis::MembershipTransfer => {
            crate::membership::inject(cluster, fault.nemesis, &mut rng, quiet).await
        }
        Nemesis::DiskFull => {
            let targets = some_nodes(&mut rng, n, 1);
            let written = cluster.fill_disk(targets[0]).await?;
            Ok((
                targets,
                format!("disk full ({} MiB written)", written >> 20),
            ))
        }
        shape => {
            let mut order: Vec<usize> = (1..=n).collect();
            rng.shuffle(&mut order);
            let leader = match shape {
                Nemesis::PartitionLeader => cluster.leader().await,
                _ => None,
            };
            let (drops, targets, detail) = partition::shape(shape, &order, leader)?;
            cluster.net.partition(&drops).map_err(|e| e.to_string())?;
            Ok((targets, detail))
        }
    }
}

/// Undoes one fault; returns what went wrong, if anything.
async fn heal(cluster: &mut Cluster, nemesis: Nemesis, targets: &[usize]) -> String {
    let mut problems = Vec::new();
    match nemesis {
        Nemesis::Kill | Nemesis::SnapshotKill => {
            for &k in targets {
                if let Err(e) = cluster.nodes[k - 1].start() {
                    problems.push(format!("restart node {k}: {e}"));
                }
            }
        }
        Nemesis::Pause => targets.iter().for_each(|&k| cluster.nodes[k - 1].resume()),
        Nemesis::DiskFull => {
            for &k in targets {
                if let Err(e) = cluster.free_disk(k) {
                    problems.push(format!("free disk {k}: {e}"));
                }
            }
        }
        Nemesis::MysqlKill => {
            for &k in targets {
                if let Err(e) = cluster.dbs[k - 1].start().await {
                    problems.push(format!("restart mariadb {k}: {e}"));
                }
            }
        }
        Nemesis::Membership
        | Nemesis::MembershipReplace
        | Nemesis::MembershipLearner
        | Nemesis::MembershipTransfer => {
            if let Err(e) = crate::membership::restore(cluster).await {
                problems.push(e);
            }
        }
        _ => {
            if let Err(e) = cluster.net.heal() {
                problems.push(e.to_string());
            }
        }
    }
    problems.join("; ")
}

/// Waits until `until`, restarting node processes that ended by themselves.
async fn supervise_until(
    cluster: &mut Cluster,
    until: Instant,
    start: Instant,
    events: &mut Vec<Event>,
) {
    loop {
        for (i, node) in cluster.nodes.iter_mut().enumerate() {
            if let Some(status) = node.exited() {
                let at = start.elapsed().as_micros() as u64;
                let restarted = node.start().map_err(|e| e.to_string());
                events.push(Event {
                    what: "exited".into(),
                    targets: vec![i + 1],
                    start_us: at,
                    end_us: at,
                    detail: format!(
                        "node {} (slot {}) exited by itself ({status}); supervisor restart: {restarted:?}",
                        node.spec.id,
                        i + 1
                    ),
                });
            }
        }
        let now = Instant::now();
        if now >= until {
            return;
        }
        tokio::time::sleep((until - now).min(Duration::from_millis(200))).await;
    }
}

/// Heals whatever may still be broken (also after an aborted schedule).
pub async fn heal_all(cluster: &mut Cluster) -> Vec<String> {
    let mut problems = Vec::new();
    if cluster.small_disks {
        for k in 1..=cluster.nodes.len() {
            if let Err(e) = cluster.free_disk(k) {
                problems.push(format!("free disk {k}: {e}"));
            }
        }
    }
    if let Err(e) = cluster.net.heal() {
        problems.push(e.to_string());
    }
    for db in cluster.dbs.iter_mut() {
        if !db.running() {
            if let Err(e) = db.start().await {
                problems.push(e.to_string());
            }
        }
    }
    for (i, node) in cluster.nodes.iter_mut().enumerate() {
        node.resume();
        if !node.is_up() {
            if let Err(e) = node.start() {
                problems.push(format!("node {}: {e}", i + 1));
            }
        }
    }
    if cluster.next_id > cluster.nodes.len() as u64 + 1 {
        if let Err(e) = crate::membership::restore(cluster).await {
            problems.push(e);
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_decides_the_schedule() {
        let mix = default_mix(true);
        let a = schedule(7, &mix, 3, Duration::from_secs(90));
        assert_eq!(a, schedule(7, &mix, 3, Duration::from_secs(90)));
        assert_ne!(a, schedule(8, &mix, 3, Duration::from_secs(90)));
        let quiet = Duration::from_secs(90) - final_phase(Duration::from_secs(90));
        assert!(a.iter().all(|f| f.at + f.hold <= quiet));
        assert!(a.len() >= 8, "{} faults", a.len());
    }

    #[test]
    fn partition_expands_to_shapes_and_the_ring_needs_five() {
        let three = schedule(1, &[Nemesis::Partition], 3, Duration::from_secs(600));
        assert!(three.iter().all(|f| f.nemesis != Nemesis::PartitionRing));
        assert!(three.iter().all(|f| f.nemesis != Nemesis::Partition));
        let five = schedule(1, &[Nemesis::Partition], 5, Duration::from_secs(600));
        assert!(five.iter().any(|f| f.nemesis == Nemesis::PartitionRing));
    }

    #[test]
    fn membership_expands_to_its_three_changes() {
        let faults = schedule(3, &[Nemesis::Membership], 3, Duration::from_secs(600));
        let kinds: std::collections::BTreeSet<Nemesis> = faults.iter().map(|f| f.nemesis).collect();
        let expected = [
            Nemesis::MembershipReplace,
            Nemesis::MembershipLearner,
            Nemesis::MembershipTransfer,
        ];
        assert_eq!(kinds, expected.into_iter().collect());
    }
}
