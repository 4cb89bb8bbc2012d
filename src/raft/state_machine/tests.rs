//! The state machine over real databases: entries that carry batches of
//! writes, applied the way openraft hands them over.

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, LogId};

use super::StateMachine;
use crate::domain::{BatchResults, Command, CommandResult, Rejection, TaskPatch, WriteBatch};
use crate::raft::Entry;
use crate::store::testutil::{create, each_backend, new_task, refuse_poisoned_titles};
use crate::store::Store;

fn log_id(index: u64) -> LogId<u64> {
    LogId::new(CommittedLeaderId::new(1, 1), index)
}

fn batch(index: u64, writes: Vec<Command>) -> Entry {
    Entry {
        log_id: log_id(index),
        payload: EntryPayload::Normal(WriteBatch { writes }),
    }
}

fn retitle(id: &str, expected_version: u64, now: i64, title: &str) -> Command {
    Command::UpdateTask {
        id: id.into(),
        expected_version,
        now,
        patch: TaskPatch {
            title: Some(title.into()),
            ..TaskPatch::default()
        },
        request_id: None,
    }
}

fn task_id(result: &CommandResult) -> &str {
    match result {
        CommandResult::Task(task) => &task.id,
        other => panic!("expected a task, got {other:?}"),
    }
}

/// One entry's writes each get their own result, in order: accepted and
/// rejected writes mix in one batch, a request_id retried inside the batch
/// and in a later entry returns the first task, and a blank entry in
/// between gets an empty result list.
#[tokio::test]
async fn each_write_of_a_batch_keeps_its_own_result() {
    each_backend(async |store: Store| {
        let mut sm = StateMachine::new(store.clone()).await.unwrap();
        let first = batch(
            1,
            vec![
                create("t1", Some("rid-1"), 100, new_task("one")),
                retitle("t1", 1, 101, "one, v2"),
                retitle("t1", 1, 102, "stale write"),
                create("t2", Some("rid-1"), 103, new_task("one")),
                retitle("missing", 0, 104, "nobody"),
                create("t3", None, 105, new_task("three")),
            ],
        );
        let blank = Entry {
            log_id: log_id(2),
            payload: EntryPayload::Blank,
        };
        let later = batch(3, vec![create("t4", Some("rid-1"), 200, new_task("one"))]);
        let results: Vec<BatchResults> = sm.apply(vec![first, blank, later]).await.unwrap();

        assert_eq!(results.len(), 3, "one result list per entry");
        let r = &results[0].results;
        assert_eq!(r.len(), 6);
        assert_eq!(task_id(&r[0]), "t1");
        assert!(matches!(&r[1], CommandResult::Task(t) if t.version == 2 && t.title == "one, v2"));
        assert_eq!(
            r[2],
            CommandResult::Rejected(Rejection::VersionMismatch {
                id: "t1".into(),
                expected: 1,
                current: 2
            })
        );
        assert!(matches!(&r[3], CommandResult::Task(t) if t.id == "t1" && t.version == 2));
        assert_eq!(
            r[4],
            CommandResult::Rejected(Rejection::NotFound {
                id: "missing".into()
            })
        );
        assert_eq!(task_id(&r[5]), "t3");
        assert!(results[1].results.is_empty(), "a blank entry has no writes");
        assert_eq!(task_id(&results[2].results[0]), "t1");

        // What the results say is what the tables hold.
        let dump = store.export().await.unwrap();
        let ids: Vec<&str> = dump.tasks.iter().map(|t| t.id.as_str()).collect();
        assert_eq!(ids, vec!["t1", "t3"]);
        assert_eq!(dump.tasks[0].title, "one, v2");
        let (applied, _) = sm.applied_state().await.unwrap();
        assert_eq!(applied, Some(log_id(3)));
    })
    .await;
}

/// A batch applies all or nothing: when the database refuses one write
/// of an entry after earlier statements of its transaction ran (the labels
/// of the batch's tasks were already deleted), none of the entry's writes
/// is visible, the earlier task keeps its labels, `last_applied` does not
/// move.
#[tokio::test]
async fn a_batch_applies_atomically() {
    each_backend(async |store: Store| {
        let mut sm = StateMachine::new(store.clone()).await.unwrap();
        let mut labelled = new_task("before");
        labelled.labels = vec!["keep".into()];
        sm.apply(vec![batch(1, vec![create("t0", None, 10, labelled)])])
            .await
            .unwrap();
        refuse_poisoned_titles(&store).await;
        let before = store.export().await.unwrap();

        let failing = [
            create("t1", None, 20, new_task("fine")),
            retitle("t0", 1, 21, "changed"),
            create("t2", None, 22, new_task("poison")),
        ];
        let entries: Vec<Option<&Command>> = failing.iter().map(Some).collect();
        let meta = crate::store::SmMeta {
            last_applied: Some(b"would-be-2".to_vec()),
            membership: None,
        };
        assert!(store.apply_batch(&entries, &meta).await.is_err());
        assert_eq!(
            store.export().await.unwrap(),
            before,
            "nothing of the batch is visible"
        );
        let t0 = store.get_task("t0").await.unwrap().unwrap();
        assert_eq!(
            (t0.title.as_str(), t0.labels.clone()),
            ("before", vec!["keep".to_string()])
        );
    })
    .await;
}
