//! The membership nemesis, through taskd's admin RPCs only (RemoveNode,
//! ChangeMembership, TransferLeadership, GetClusterStatus):
//!
//! - `membership-replace`: remove a voter, wipe its slot, and start a new
//!   node there under a new id with `--join … --join-as voter`;
//! - `membership-learner`: the same, but the new node joins as a learner
//!   and the harness promotes it with ChangeMembership;
//! - `membership-transfer`: TransferLeadership to a voter, or to 0 (taskd
//!   picks the most up-to-date one).
//!
//! Each change starts only on a cluster whose every slot answers and whose
//! voters are exactly the slots' nodes, caught up: one fault at a time, and
//! never a membership change on top of a lost quorum. Each ends with the
//! voter count back at the slot count, so that the other nemeses' quorum
//! math holds.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use taskd_client::pb;

use crate::cluster::{Cluster, NodeClient};
use crate::nemesis::Nemesis;

/// How far (in log entries) a voter may trail the leader and still count
/// as caught up: under load a healthy follower is a few batches behind;
/// a node still replaying after a restart is further.
const CAUGHT_UP_LAG: u64 = 500;
/// How long a change waits for a healthy cluster before it gives up.
const HEALTHY_WAIT: Duration = Duration::from_secs(15);
/// The bound on each step of a change (remove, join, promote); a change
/// also ends at the quiet phase of the run, whichever comes first.
const STEP: Duration = Duration::from_secs(40);
/// How long RemoveNode of the leader may take before the harness kills the
/// leader instead (see [`remove`]).
const REMOVE_LEADER: Duration = Duration::from_secs(15);
const RPC_TIMEOUT: Duration = Duration::from_secs(10);
const POLL: Duration = Duration::from_millis(200);

fn voters(s: &pb::GetClusterStatusResponse) -> BTreeSet<u64> {
    s.members
        .iter()
        .filter(|m| m.voter)
        .map(|m| m.node_id)
        .collect()
}

fn members(s: &pb::GetClusterStatusResponse) -> BTreeSet<u64> {
    s.members.iter().map(|m| m.node_id).collect()
}

fn request<T>(message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.set_timeout(RPC_TIMEOUT);
    r
}

/// Waits until every slot answers, the leader's voters are exactly the
/// slots' nodes, and each has caught up; answers the leader's status.
async fn wait_healthy(
    cluster: &Cluster,
    quiet: Instant,
) -> Result<(usize, pb::GetClusterStatusResponse), String> {
    let deadline = quiet.min(Instant::now() + HEALTHY_WAIT);
    let mut last;
    loop {
        let answered = cluster.statuses().await.iter().all(Option::is_some);
        let slots: BTreeSet<u64> = cluster.ids.all().into_iter().collect();
        last = match cluster.leader_status().await {
            None => "no leader".to_string(),
            Some(_) if !answered => "not every node answers".to_string(),
            Some((k, s)) => {
                let lagging: Vec<u64> = s
                    .members
                    .iter()
                    .filter(|m| m.matched_index + CAUGHT_UP_LAG < s.last_log_index)
                    .map(|m| m.node_id)
                    .collect();
                if members(&s) != slots || voters(&s) != slots {
                    format!("members {:?}, slots run {slots:?}", s.members)
                } else if !lagging.is_empty() {
                    format!("nodes {lagging:?} lag behind the leader")
                } else {
                    return Ok((k, s));
                }
            }
        };
        if Instant::now() >= deadline {
            return Err(format!("cluster not healthy in time: {last}"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// A client for an admin call: the leader's slot unless it is `avoid`'s
/// (admin calls are forwarded to the leader from any member).
async fn admin_client(cluster: &Cluster, avoid: usize) -> NodeClient {
    let k = match cluster.leader_status().await {
        Some((k, _)) if k != avoid => k,
        _ => (1..=cluster.nodes.len()).find(|&k| k != avoid).unwrap_or(1),
    };
    cluster.clients[k - 1].clone()
}

/// Polls the leader's status until `done` holds, with `act` (an admin call
/// that may be repeated) between polls; the last error on timeout.
async fn until<F, A, Fut>(
    cluster: &Cluster,
    deadline: Instant,
    what: &str,
    done: F,
    act: A,
) -> Result<(), String>
where
    F: Fn(&pb::GetClusterStatusResponse) -> bool,
    A: Fn(NodeClient, pb::GetClusterStatusResponse) -> Fut,
    Fut: std::future::Future<Output = Result<(), tonic::Status>>,
{
    let deadline = deadline.min(Instant::now() + STEP);
    let mut last = String::from("no leader");
    loop {
        if let Some((k, s)) = cluster.leader_status().await {
            if done(&s) {
                return Ok(());
            }
            if let Err(e) = act(cluster.clients[k - 1].clone(), s).await {
                last = crate::history::describe(&e);
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("{what}: not done in time: {last}"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Removes node `id` (slot `k`), until the leader no longer lists it;
/// `deadline` bounds it. A leader asked to remove itself hands over first;
/// the call is forwarded.
async fn remove(cluster: &Cluster, k: usize, id: u64, deadline: Instant) -> Result<(), String> {
    let mut last = String::new();
    loop {
        let mut client = admin_client(cluster, k).await;
        if let Err(e) = client
            .raft
            .remove_node(request(pb::RemoveNodeRequest { node_id: id }))
            .await
        {
            last = crate::history::describe(&e);
        }
        if let Some((_, s)) = cluster.leader_status().await {
            if !members(&s).contains(&id) {
                return Ok(());
            }
        }
        if Instant::now() >= deadline {
            return Err(format!("remove node {id}: not done in time: {last}"));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Makes `id` a voter beside the current voters.
async fn promote(cluster: &Cluster, id: u64, deadline: Instant) -> Result<(), String> {
    until(
        cluster,
        deadline,
        &format!("promote node {id}"),
        |s| voters(s).contains(&id),
        |mut c, s| async move {
            let mut ids = voters(&s);
            ids.insert(id);
            let change = pb::ChangeMembershipRequest {
                voter_ids: ids.into_iter().collect(),
            };
            c.raft.change_membership(request(change)).await.map(|_| ())
        },
    )
    .await
}

/// Injects one membership change, done by `quiet` (the run's quiet phase);
/// the slots it touched and what it did.
pub async fn inject(
    cluster: &mut Cluster,
    nemesis: Nemesis,
    rng: &mut fastrand::Rng,
    quiet: Instant,
) -> Result<(Vec<usize>, String), String> {
    let began = Instant::now();
    let (leader_slot, status) = wait_healthy(cluster, quiet)
        .await
        .map_err(|e| format!("skipped: {e}"))?;
    let n = cluster.nodes.len();
    if nemesis == Nemesis::MembershipTransfer {
        let others: Vec<u64> = voters(&status)
            .into_iter()
            .filter(|&v| v != status.node_id)
            .collect();
        let target = if rng.u8(..3) == 0 {
            0
        } else {
            others[rng.usize(..others.len())]
        };
        let mut client = cluster.clients[rng.usize(..n)].clone();
        let moved = client
            .raft
            .transfer_leadership(request(pb::TransferLeadershipRequest { node_id: target }))
            .await
            .map_err(|e| {
                format!(
                    "transfer from node {} to {target}: {}",
                    status.node_id,
                    crate::history::describe(&e)
                )
            })?
            .into_inner();
        let held = moved
            .writes_held
            .map_or(0.0, |d| d.seconds as f64 * 1e3 + f64::from(d.nanos) / 1e6);
        let to = cluster.ids.slot_of(moved.leader_id);
        return Ok((
            std::iter::once(leader_slot).chain(to).collect(),
            format!(
                "leader node {} -> node {} (asked for {target}), term {}, writes held {held:.1} ms",
                status.node_id, moved.leader_id, moved.term
            ),
        ));
    }
    let as_voter = nemesis == Nemesis::MembershipReplace;
    let k = rng.usize(1..=n);
    let old = cluster.ids.get(k);
    let was = if old == status.node_id {
        " (the leader)"
    } else {
        ""
    };
    let mut was = was.to_string();
    if old == status.node_id {
        // Removing the leader makes it hand leadership over first. Should
        // that not finish, the leader is killed (it is about to be wiped
        // anyway) and the next leader removes it: a dead node replaced.
        // The stuck RemoveNode stays in the detail and the findings.
        let first = remove(cluster, k, old, quiet.min(Instant::now() + REMOVE_LEADER)).await;
        if let Err(e) = first {
            cluster.nodes[k - 1].kill().await;
            was = format!("{was}, killed after RemoveNode of the leader failed ({e})");
            remove(cluster, k, old, quiet).await?;
        }
    } else {
        remove(cluster, k, old, quiet).await?;
    }
    let new = cluster.replace_process(k, as_voter).await?;
    let detail = |how: &str| {
        format!(
            "slot {k}: removed node {old}{was}; node {new} {how} in {:.1}s",
            began.elapsed().as_secs_f64()
        )
    };
    if as_voter {
        until(
            cluster,
            quiet,
            &format!("node {new} joins as a voter"),
            |s| voters(s).contains(&new),
            |_, _| async { Ok(()) },
        )
        .await
        .map_err(|e| format!("{}: {e}", detail("started")))?;
        return Ok((vec![k], detail("joined as a voter")));
    }
    until(
        cluster,
        quiet,
        &format!("node {new} joins as a learner"),
        |s| members(s).contains(&new),
        |_, _| async { Ok(()) },
    )
    .await
    .map_err(|e| format!("{}: {e}", detail("started")))?;
    promote(cluster, new, quiet)
        .await
        .map_err(|e| format!("{}: {e}", detail("joined as a learner")))?;
    Ok((vec![k], detail("joined as a learner, promoted")))
}

/// Brings the membership back to "the slots' nodes are the voters, and
/// nothing else is a member", whatever a change left half done: removes
/// members no slot runs, promotes the slots' learners. Waits for a node
/// still joining.
pub async fn restore(cluster: &Cluster) -> Result<(), String> {
    let want: BTreeSet<u64> = cluster
        .ids
        .all()
        .into_iter()
        .filter(|&id| id != 0)
        .collect();
    until(
        cluster,
        Instant::now() + STEP,
        &format!("voters back to {want:?}"),
        |s| members(s) == want && voters(s) == want,
        |mut c, s| {
            let want = want.clone();
            async move {
                // A member no slot runs: a removal that did not finish.
                if let Some(id) = members(&s).into_iter().find(|m| !want.contains(m)) {
                    let r = pb::RemoveNodeRequest { node_id: id };
                    return c.raft.remove_node(request(r)).await.map(|_| ());
                }
                let present: BTreeSet<u64> = want.intersection(&members(&s)).copied().collect();
                if present != voters(&s) && !present.is_empty() {
                    let change = pb::ChangeMembershipRequest {
                        voter_ids: present.into_iter().collect(),
                    };
                    return c.raft.change_membership(request(change)).await.map(|_| ());
                }
                Ok(())
            }
        },
    )
    .await
}
