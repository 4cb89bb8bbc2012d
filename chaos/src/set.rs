//! The set workload's check: after healing, every acknowledged create is
//! present exactly once (under the id it was acknowledged with), every
//! create with an unknown outcome at most once, and nothing is present that
//! was never attempted.

use std::collections::BTreeMap;

/// What a client saw of one create, keyed by the unique value it carried.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Acknowledged with this task id.
    Acknowledged(String),
    /// Timed out or lost: may or may not have been applied.
    Unknown,
}

/// One thing wrong with a replica's final set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SetViolation {
    /// An acknowledged create is missing.
    Lost { value: String },
    /// A value is present more than once.
    Duplicated { value: String, ids: Vec<String> },
    /// An acknowledged create is present under another id.
    WrongId {
        value: String,
        acknowledged: String,
        found: String,
    },
    /// A value no client ever sent.
    NeverAttempted { value: String },
}

/// Checks one replica's final contents (value, id) against the attempts.
pub fn check(
    attempts: &BTreeMap<String, Attempt>,
    found: &[(String, String)],
) -> Result<(), Vec<SetViolation>> {
    let mut by_value: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for (value, id) in found {
        by_value.entry(value).or_default().push(id);
    }
    let mut violations = Vec::new();
    for (value, ids) in &by_value {
        let value = value.to_string();
        match attempts.get(&value) {
            None => violations.push(SetViolation::NeverAttempted { value }),
            Some(_) if ids.len() > 1 => violations.push(SetViolation::Duplicated {
                value,
                ids: ids.iter().map(|i| i.to_string()).collect(),
            }),
            Some(Attempt::Acknowledged(id)) if id != ids[0] => {
                violations.push(SetViolation::WrongId {
                    value,
                    acknowledged: id.clone(),
                    found: ids[0].to_string(),
                })
            }
            Some(_) => {}
        }
    }
    for (value, attempt) in attempts {
        if matches!(attempt, Attempt::Acknowledged(_)) && !by_value.contains_key(value.as_str()) {
            violations.push(SetViolation::Lost {
                value: value.clone(),
            });
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

    fn attempts() -> BTreeMap<String, Attempt> {
        BTreeMap::from([
            ("a".into(), Attempt::Acknowledged("id-a".into())),
            ("b".into(), Attempt::Unknown),
            ("c".into(), Attempt::Unknown),
        ])
    }

    fn found(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(v, i)| (v.to_string(), i.to_string()))
            .collect()
    }

    /// Acknowledged once, unknown at most once: fine.
    #[test]
    fn acknowledged_once_and_unknown_at_most_once_pass() {
        assert_eq!(
            check(&attempts(), &found(&[("a", "id-a"), ("b", "id-b")])),
            Ok(())
        );
        assert_eq!(check(&attempts(), &found(&[("a", "id-a")])), Ok(()));
    }

    /// Each kind of violation is reported, all at once.
    #[test]
    fn every_violation_is_reported() {
        let violations = check(
            &attempts(),
            &found(&[("b", "x"), ("b", "y"), ("z", "id-z"), ("c", "id-c")]),
        )
        .unwrap_err();
        assert_eq!(
            violations,
            vec![
                SetViolation::Duplicated {
                    value: "b".into(),
                    ids: vec!["x".into(), "y".into()]
                },
                SetViolation::NeverAttempted { value: "z".into() },
                SetViolation::Lost { value: "a".into() },
            ]
        );
        let wrong = check(&attempts(), &found(&[("a", "other")])).unwrap_err();
        assert_eq!(
            wrong,
            vec![SetViolation::WrongId {
                value: "a".into(),
                acknowledged: "id-a".into(),
                found: "other".into()
            }]
        );
    }
}
