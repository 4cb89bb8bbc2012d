//! STALE reads' check: they are not linearizable, but a node never shows a
//! value that was never written, and never goes back in time: per node, the
//! versions it returns for a task never decrease.

use std::collections::HashSet;

use crate::checker::State;

/// One thing wrong with one node's STALE reads of one task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StaleViolation {
    /// The read returned a value no write carried.
    NeverWritten { read: usize, seen: State },
    /// The read returned an older version than an earlier read on the node.
    WentBack {
        read: usize,
        seen: State,
        after: State,
    },
}

/// Checks one node's STALE reads of one task, in the order they completed,
/// against every value any write of the task carried (plus the initial one).
pub fn check(written: &HashSet<String>, reads: &[State]) -> Result<(), Vec<StaleViolation>> {
    let mut violations = Vec::new();
    let mut newest: Option<&State> = None;
    for (read, seen) in reads.iter().enumerate() {
        if !written.contains(&seen.value) {
            violations.push(StaleViolation::NeverWritten {
                read,
                seen: seen.clone(),
            });
        }
        match newest {
            Some(after) if seen.version < after.version => {
                violations.push(StaleViolation::WentBack {
                    read,
                    seen: seen.clone(),
                    after: after.clone(),
                })
            }
            _ => newest = Some(seen),
        }
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(violations)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(value: &str, version: u64) -> State {
        State::new(value, version)
    }

    /// Lagging but monotonic reads of written values pass; going back and
    /// inventing a value are both caught.
    #[test]
    fn stale_reads_must_be_written_and_monotonic() {
        let written: HashSet<String> = ["a", "b", "c"].map(String::from).into();
        assert_eq!(
            check(&written, &[st("a", 1), st("a", 1), st("c", 3)]),
            Ok(())
        );
        let back = check(&written, &[st("b", 2), st("a", 1)]).unwrap_err();
        assert_eq!(
            back,
            vec![StaleViolation::WentBack {
                read: 1,
                seen: st("a", 1),
                after: st("b", 2)
            }]
        );
        let invented = check(&written, &[st("z", 2)]).unwrap_err();
        assert_eq!(
            invented,
            vec![StaleViolation::NeverWritten {
                read: 0,
                seen: st("z", 2)
            }]
        );
    }
}
