//! The partition shapes: which node drops what it receives from which.

use std::collections::BTreeSet;

use crate::nemesis::Nemesis;

/// Per node (1-based), the nodes whose packets it drops.
pub type Drops = Vec<(usize, BTreeSet<usize>)>;

/// Drop rules that cut `a` and `b` apart, both ways.
pub fn cut(a: &[usize], b: &[usize], drops: &mut Drops) {
    for (side, other) in [(a, b), (b, a)] {
        for &x in side {
            drops.push((x, other.iter().copied().collect()));
        }
    }
}

/// The rules of one partition shape over the nodes in `order` (a seeded
/// shuffle of 1..=n), with the targets and a line for the timeline.
/// `leader` is the node PartitionLeader isolates, if one is known.
pub fn shape(
    shape: Nemesis,
    order: &[usize],
    leader: Option<usize>,
) -> Result<(Drops, Vec<usize>, String), String> {
    let n = order.len();
    let mut drops = Vec::new();
    let targets;
    let detail;
    match shape {
        Nemesis::PartitionOne | Nemesis::PartitionLeader => {
            let x = leader.unwrap_or(order[0]);
            let rest: Vec<usize> = (1..=n).filter(|&k| k != x).collect();
            cut(&[x], &rest, &mut drops);
            targets = vec![x];
            detail = format!("isolate slot {x}");
        }
        Nemesis::PartitionHalves => {
            let (minority, rest) = order.split_at(n / 2);
            cut(minority, rest, &mut drops);
            targets = minority.to_vec();
            detail = format!("halves {minority:?} | {rest:?}");
        }
        Nemesis::PartitionBridge => {
            let bridge = order[0];
            let (a, b) = order[1..].split_at((n - 1) / 2);
            cut(a, b, &mut drops);
            targets = vec![bridge];
            detail = format!("{a:?} | {b:?}, bridged by slot {bridge}");
        }
        Nemesis::PartitionOneWay => {
            let x = order[0];
            drops.push((x, (1..=n).filter(|&k| k != x).collect()));
            targets = vec![x];
            detail = format!("slot {x} hears nobody, is heard by all");
        }
        Nemesis::PartitionRing => {
            for (i, &x) in order.iter().enumerate() {
                let left = order[(i + n - 1) % n];
                let right = order[(i + 1) % n];
                let hidden = (1..=n).filter(|&k| k != x && k != left && k != right);
                drops.push((x, hidden.collect()));
            }
            targets = order.to_vec();
            detail = format!("ring {order:?}");
        }
        other => return Err(format!("{other:?} is not a partition")),
    }
    Ok((drops, targets, detail))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hears(drops: &Drops, node: usize, from: usize) -> bool {
        !drops
            .iter()
            .any(|(x, set)| *x == node && set.contains(&from))
    }

    #[test]
    fn the_ring_gives_every_node_a_different_majority() {
        let order = [3, 1, 4, 5, 2];
        let (drops, _, _) = shape(Nemesis::PartitionRing, &order, None).unwrap();
        let mut seen = BTreeSet::new();
        for x in 1..=5 {
            let view: BTreeSet<usize> =
                (1..=5).filter(|&y| y == x || hears(&drops, x, y)).collect();
            assert_eq!(view.len(), 3, "node {x} sees {view:?}");
            assert!(seen.insert(view));
        }
    }

    #[test]
    fn the_bridge_sees_both_halves_which_do_not_see_each_other() {
        let (drops, targets, _) = shape(Nemesis::PartitionBridge, &[2, 1, 3], None).unwrap();
        assert_eq!(targets, vec![2]);
        assert!(hears(&drops, 2, 1) && hears(&drops, 2, 3));
        assert!(hears(&drops, 1, 2) && hears(&drops, 3, 2));
        assert!(!hears(&drops, 1, 3) && !hears(&drops, 3, 1));
    }

    #[test]
    fn one_way_only_deafens_the_target() {
        let (drops, _, _) = shape(Nemesis::PartitionOneWay, &[1, 2, 3], None).unwrap();
        assert!(!hears(&drops, 1, 2) && !hears(&drops, 1, 3));
        assert!(hears(&drops, 2, 1) && hears(&drops, 3, 1));
    }
}
