//! Linearizability of one task used as a register.
//!
//! The model is a task's title (the register's value) and its version: an
//! unconditional UpdateTask writes and bumps the version, an UpdateTask with
//! `expected_version` is a compare-and-set on the version, a GetTask reads
//! both. A history is a list of operations with the times they were invoked
//! and completed (any clock that only moves forward, read on the client).
//!
//! The search is Wing & Gong's, with Lowe's memoization: repeatedly pick an
//! operation that could take effect first (invoked before every pending
//! operation's completion), apply it to the model, and backtrack when its
//! observed result disagrees; a (set of linearized operations, model state)
//! pair already explored is never explored again.
//!
//! An operation whose outcome is unknown (a timeout, a connection lost
//! after the request was sent) may take effect at any time after it was
//! invoked, or never: it has no completion time and no result to match.

use std::collections::HashSet;

/// What the model holds: the register's value and the task's version.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct State {
    pub value: String,
    pub version: u64,
}

impl State {
    pub fn new(value: &str, version: u64) -> Self {
        Self {
            value: value.into(),
            version,
        }
    }
}

/// One call on the register.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Read,
    /// Unconditional write of `value`.
    Write {
        value: String,
    },
    /// Write `value` only if the version is `expected_version`.
    Cas {
        expected_version: u64,
        value: String,
    },
}

/// What a call returned, when the client knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A read saw this; a write or CAS left the task at this state.
    Ok(State),
    /// A CAS found another version and changed nothing.
    Rejected,
}

/// One operation of a history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Operation {
    pub call: Call,
    pub invoked: u64,
    /// `None` while the outcome is unknown: it may take effect any time
    /// after `invoked`, or never.
    pub completed: Option<(u64, Outcome)>,
}

impl Operation {
    pub fn known(call: Call, invoked: u64, completed: u64, outcome: Outcome) -> Self {
        Self {
            call,
            invoked,
            completed: Some((completed, outcome)),
        }
    }

    pub fn unknown(call: Call, invoked: u64) -> Self {
        Self {
            call,
            invoked,
            completed: None,
        }
    }

    fn completed_at(&self) -> u64 {
        self.completed.as_ref().map_or(u64::MAX, |(t, _)| *t)
    }

    /// The state after this operation takes effect on `state`, if what the
    /// client observed agrees with it.
    fn step(&self, state: &State) -> Option<State> {
        let next = match &self.call {
            Call::Read => state.clone(),
            Call::Write { value } => State {
                value: value.clone(),
                version: state.version + 1,
            },
            Call::Cas {
                expected_version,
                value,
            } => {
                if state.version != *expected_version {
                    return match &self.completed {
                        Some((_, Outcome::Ok(_))) => None,
                        _ => Some(state.clone()),
                    };
                }
                State {
                    value: value.clone(),
                    version: state.version + 1,
                }
            }
        };
        match &self.completed {
            None => Some(next),
            Some((_, Outcome::Ok(seen))) => (seen == &next).then_some(next),
            Some((_, Outcome::Rejected)) => None,
        }
    }
}

/// Why a history is not linearizable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The longest prefix of operations (indexes into the history) that
    /// could be linearized before the search ran out of candidates.
    pub longest_prefix: Vec<usize>,
}

/// Whether `history`, starting from `initial`, is linearizable.
pub fn check(initial: &State, history: &[Operation]) -> Result<(), Violation> {
    let n = history.len();
    let words = n.div_ceil(64).max(1);
    let mut seen: HashSet<(Vec<u64>, State)> = HashSet::new();
    // Depth-first: each frame is (linearized set, state, order so far).
    let mut stack = vec![(vec![0u64; words], initial.clone(), Vec::new())];
    let mut longest: Vec<usize> = Vec::new();
    let must_finish = |done: &[u64]| {
        (0..n).all(|i| history[i].completed.is_none() || done[i / 64] & (1 << (i % 64)) != 0)
    };
    while let Some((done, state, order)) = stack.pop() {
        if must_finish(&done) {
            return Ok(());
        }
        if order.len() > longest.len() {
            longest.clone_from(&order);
        }
        if !seen.insert((done.clone(), state.clone())) {
            continue;
        }
        let pending = |i: usize| done[i / 64] & (1 << (i % 64)) == 0;
        // An operation can go next only if it was invoked before every
        // pending operation completed.
        let horizon = (0..n)
            .filter(|&i| pending(i))
            .map(|i| history[i].completed_at())
            .min()
            .unwrap_or(u64::MAX);
        for i in (0..n).filter(|&i| pending(i) && history[i].invoked < horizon) {
            if let Some(next) = history[i].step(&state) {
                let mut done = done.clone();
                done[i / 64] |= 1 << (i % 64);
                let mut order = order.clone();
                order.push(i);
                stack.push((done, next, order));
            }
        }
    }
    Err(Violation {
        longest_prefix: longest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn st(value: &str, version: u64) -> State {
        State::new(value, version)
    }

    fn write(value: &str) -> Call {
        Call::Write {
            value: value.into(),
        }
    }

    fn cas(expected_version: u64, value: &str) -> Call {
        Call::Cas {
            expected_version,
            value: value.into(),
        }
    }

    fn ok(value: &str, version: u64) -> Outcome {
        Outcome::Ok(st(value, version))
    }

    const START: fn() -> State = || st("a", 1);

    /// Sequential histories: right results pass, a wrong one fails.
    #[test]
    fn sequential_histories() {
        let good = [
            Operation::known(write("b"), 0, 1, ok("b", 2)),
            Operation::known(Call::Read, 2, 3, ok("b", 2)),
            Operation::known(cas(2, "c"), 4, 5, ok("c", 3)),
            Operation::known(cas(2, "d"), 6, 7, Outcome::Rejected),
            Operation::known(Call::Read, 8, 9, ok("c", 3)),
        ];
        assert_eq!(check(&START(), &good), Ok(()));
        let mut bad = good.to_vec();
        bad[4] = Operation::known(Call::Read, 8, 9, ok("b", 2));
        assert!(check(&START(), &bad).is_err());
    }

    /// The textbook stale read: a write completed, and a read that began
    /// after it still returns the old value. Not linearizable.
    #[test]
    fn stale_read_after_a_completed_write_is_caught() {
        let history = [
            Operation::known(write("b"), 0, 10, ok("b", 2)),
            Operation::known(Call::Read, 11, 12, ok("a", 1)),
        ];
        let violation = check(&START(), &history).unwrap_err();
        assert_eq!(violation.longest_prefix, vec![0]);
    }

    /// Overlapping operations may take effect in either order: a read that
    /// overlaps a write may see the old or the new value.
    #[test]
    fn concurrent_operations_may_order_either_way() {
        for seen in [ok("a", 1), ok("b", 2)] {
            let history = [
                Operation::known(write("b"), 0, 10, ok("b", 2)),
                Operation::known(Call::Read, 5, 6, seen),
            ];
            assert_eq!(check(&START(), &history), Ok(()));
        }
    }

    /// Two reads that both overlap one write may not see new-then-old when
    /// the second read starts after the first ended (Herlihy & Wing's
    /// classic non-linearizable register history).
    #[test]
    fn new_then_old_reads_are_caught() {
        let history = [
            Operation::known(write("b"), 0, 100, ok("b", 2)),
            Operation::known(Call::Read, 10, 20, ok("b", 2)),
            Operation::known(Call::Read, 30, 40, ok("a", 1)),
        ];
        assert!(check(&START(), &history).is_err());
    }

    /// Two CAS calls that expect the same version cannot both succeed.
    #[test]
    fn two_winning_cas_on_one_version_are_caught() {
        let history = [
            Operation::known(cas(1, "b"), 0, 10, ok("b", 2)),
            Operation::known(cas(1, "c"), 0, 10, ok("c", 2)),
        ];
        assert!(check(&START(), &history).is_err());
        let one_wins = [
            Operation::known(cas(1, "b"), 0, 10, ok("b", 2)),
            Operation::known(cas(1, "c"), 0, 10, Outcome::Rejected),
        ];
        assert_eq!(check(&START(), &one_wins), Ok(()));
    }

    /// An operation with an unknown outcome may take effect later, or never,
    /// but not before it was invoked.
    #[test]
    fn unknown_outcomes_may_apply_later_or_never() {
        let applied_later = [
            Operation::unknown(write("b"), 0),
            Operation::known(Call::Read, 5, 6, ok("a", 1)),
            Operation::known(Call::Read, 50, 60, ok("b", 2)),
        ];
        assert_eq!(check(&START(), &applied_later), Ok(()));
        let never = [
            Operation::unknown(write("b"), 0),
            Operation::known(Call::Read, 50, 60, ok("a", 1)),
        ];
        assert_eq!(check(&START(), &never), Ok(()));
        let before_invoked = [
            Operation::known(Call::Read, 0, 5, ok("b", 2)),
            Operation::unknown(write("b"), 10),
        ];
        assert!(check(&START(), &before_invoked).is_err());
    }

    /// A value nobody wrote is never linearizable.
    #[test]
    fn a_value_never_written_is_caught() {
        let history = [
            Operation::unknown(write("b"), 0),
            Operation::known(Call::Read, 5, 6, ok("z", 2)),
        ];
        assert!(check(&START(), &history).is_err());
    }

    /// Memoization keeps a wide concurrent history fast: 12 writers that
    /// all overlap, then a read of the last value.
    #[test]
    fn wide_concurrency_is_searched_quickly() {
        let mut history: Vec<Operation> = (0..12)
            .map(|i| Operation::unknown(write(&format!("w{i}")), 0))
            .collect();
        history.push(Operation::known(Call::Read, 100, 101, ok("w7", 2)));
        assert_eq!(check(&START(), &history), Ok(()));
        history.push(Operation::known(Call::Read, 200, 201, ok("w3", 2)));
        assert!(check(&START(), &history).is_err());
    }
}
