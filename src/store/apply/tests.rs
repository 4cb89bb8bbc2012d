use crate::domain::{
    Command, CommandResult, Rejection, Task, TaskPatch, TaskStatus, REQUEST_ID_TTL_MICROS,
};

use super::super::testutil::{
    apply, create, each_backend, new_task, refuse_poisoned_titles, write_sync_mode,
};
use super::super::{SmMeta, Store};

fn update(id: &str, expected_version: u64, now: i64, patch: TaskPatch) -> Command {
    Command::UpdateTask {
        id: id.to_owned(),
        expected_version,
        now,
        patch,
        request_id: None,
    }
}

fn delete(id: &str, expected_version: u64, now: i64) -> Command {
    Command::DeleteTask {
        id: id.to_owned(),
        expected_version,
        now,
        request_id: None,
    }
}

fn task_of(result: &CommandResult) -> &Task {
    match result {
        CommandResult::Task(task) => task,
        other => panic!("expected a task, got {other:?}"),
    }
}

fn titled(title: &str) -> TaskPatch {
    TaskPatch {
        title: Some(title.to_owned()),
        ..TaskPatch::default()
    }
}

/// Create, conditional update, version mismatch, not found, delete — each
/// in its own batch, with `sm_meta` written alongside.
#[tokio::test]
async fn apply_create_update_delete() {
    each_backend(async |store: Store| {
        let mut spec = new_task("write tests");
        spec.labels = vec!["b".into(), "a".into()];
        spec.deadline = Some(5_000);
        let created = apply(&store, &[create("t1", None, 100, spec)]).await;
        let t1 = task_of(&created[0]).clone();
        assert_eq!((t1.version, t1.create_time, t1.update_time), (1, 100, 100));
        assert_eq!(t1.labels, vec!["b", "a"]);
        assert_eq!(store.get_task("t1").await.unwrap(), Some(t1.clone()));
        assert_eq!(
            store.sm_meta().await.unwrap().last_applied,
            Some(b"1".to_vec())
        );

        let patch = TaskPatch {
            status: Some(TaskStatus::Done),
            deadline: Some(None),
            ..titled("tests written")
        };
        let updated = apply(&store, &[update("t1", 1, 200, patch)]).await;
        let t1v2 = task_of(&updated[0]).clone();
        assert_eq!(
            (t1v2.version, t1v2.update_time, t1v2.create_time),
            (2, 200, 100)
        );
        assert_eq!((t1v2.status, t1v2.deadline), (TaskStatus::Done, None));
        assert_eq!(store.get_task("t1").await.unwrap(), Some(t1v2.clone()));

        // update_time never goes back, even if a proposer's clock does.
        let late = apply(&store, &[update("t1", 0, 150, titled("x"))]).await;
        assert_eq!(task_of(&late[0]).update_time, 200);
        assert_eq!(task_of(&late[0]).version, 3);

        let rejected = apply(
            &store,
            &[
                update("t1", 1, 300, titled("stale")),
                update("nope", 0, 300, titled("missing")),
                delete("t1", 2, 300),
                delete("nope", 0, 300),
            ],
        )
        .await;
        let mismatch = |expected| {
            CommandResult::Rejected(Rejection::VersionMismatch {
                id: "t1".into(),
                expected,
                current: 3,
            })
        };
        let not_found = CommandResult::Rejected(Rejection::NotFound { id: "nope".into() });
        assert_eq!(
            rejected,
            vec![mismatch(1), not_found.clone(), mismatch(2), not_found]
        );
        assert_eq!(store.get_task("t1").await.unwrap().unwrap().version, 3);

        let deleted = apply(&store, &[delete("t1", 3, 400)]).await;
        assert_eq!(deleted, vec![CommandResult::Deleted { id: "t1".into() }]);
        assert_eq!(store.get_task("t1").await.unwrap(), None);
        assert!(store.export().await.unwrap().tasks.is_empty());
    })
    .await;
}

/// Within one batch later entries see earlier ones; blank entries give None
/// and the batch's meta is stored.
#[tokio::test]
async fn apply_batch_sees_its_own_writes() {
    each_backend(async |store: Store| {
        let commands = [
            create("t1", None, 10, new_task("one")),
            update("t1", 1, 11, titled("one+")),
            create("t2", None, 12, new_task("two")),
            delete("t1", 2, 13),
            update("t1", 0, 14, titled("gone")),
        ];
        let entries = [
            None,
            Some(&commands[0]),
            Some(&commands[1]),
            None,
            Some(&commands[2]),
            Some(&commands[3]),
            Some(&commands[4]),
        ];
        let meta = SmMeta {
            last_applied: Some(b"log-7".to_vec()),
            membership: Some(b"members".to_vec()),
        };
        let results = store.apply_batch(&entries, &meta).await.unwrap();
        assert_eq!(results.len(), 7);
        assert_eq!(results[0], CommandResult::None);
        assert_eq!(task_of(&results[2]).version, 2);
        assert_eq!(results[3], CommandResult::None);
        assert_eq!(results[5], CommandResult::Deleted { id: "t1".into() });
        assert_eq!(
            results[6],
            CommandResult::Rejected(Rejection::NotFound { id: "t1".into() })
        );
        assert_eq!(store.get_task("t1").await.unwrap(), None);
        assert_eq!(store.get_task("t2").await.unwrap().unwrap().title, "two");
        assert_eq!(store.sm_meta().await.unwrap(), meta);

        // A batch of blanks only still advances the meta.
        let meta2 = SmMeta {
            last_applied: Some(b"log-8".to_vec()),
            membership: None,
        };
        assert_eq!(
            store.apply_batch(&[None], &meta2).await.unwrap(),
            vec![CommandResult::None]
        );
        assert_eq!(store.sm_meta().await.unwrap(), meta2);
    })
    .await;
}

/// The same request_id returns the same (current) task, in one batch and
/// across batches; once that task is deleted the retry is rejected.
#[tokio::test]
async fn apply_request_id_dedupe() {
    each_backend(async |store: Store| {
        let results = apply(
            &store,
            &[
                create("t1", Some("r1"), 10, new_task("first")),
                create("t2", Some("r1"), 11, new_task("first")),
            ],
        )
        .await;
        assert_eq!(task_of(&results[1]), task_of(&results[0]));
        assert_eq!(store.get_task("t2").await.unwrap(), None);

        apply(&store, &[update("t1", 0, 20, titled("changed"))]).await;
        let retry = apply(&store, &[create("t3", Some("r1"), 30, new_task("first"))]).await;
        assert_eq!(task_of(&retry[0]).title, "changed");
        assert_eq!(task_of(&retry[0]).version, 2);
        assert_eq!(store.get_task("t3").await.unwrap(), None);

        apply(&store, &[delete("t1", 0, 40)]).await;
        let retry = apply(&store, &[create("t4", Some("r1"), 50, new_task("first"))]).await;
        assert_eq!(
            retry,
            vec![CommandResult::Rejected(Rejection::RequestIdTaskDeleted {
                request_id: "r1".into(),
                id: "t1".into(),
            })]
        );
        // Different request ids, or none, never collide.
        let other = apply(
            &store,
            &[
                create("t5", Some("r2"), 60, new_task("a")),
                create("t6", None, 60, new_task("b")),
                create("t7", None, 60, new_task("c")),
            ],
        )
        .await;
        let ids: Vec<&str> = other.iter().map(|r| task_of(r).id.as_str()).collect();
        assert_eq!(ids, vec!["t5", "t6", "t7"]);
    })
    .await;
}

fn with_request_id(mut command: Command, key: &str) -> Command {
    match &mut command {
        Command::CreateTask { request_id, .. }
        | Command::UpdateTask { request_id, .. }
        | Command::DeleteTask { request_id, .. } => *request_id = Some(key.to_owned()),
    }
    command
}

/// An update or delete retried with its request_id returns the first
/// result, in the same batch and in a later one, and changes nothing more:
/// an unconditional update bumps the version once, a conditional one is
/// not rejected by its own first success, a delete is not NOT_FOUND.
#[tokio::test]
async fn apply_update_and_delete_request_ids() {
    each_backend(async |store: Store| {
        apply(&store, &[create("t1", None, 10, new_task("first"))]).await;
        let bump = with_request_id(update("t1", 0, 20, titled("bumped")), "u1");
        let results = apply(&store, &[bump.clone(), bump.clone()]).await;
        assert_eq!(task_of(&results[0]).version, 2);
        assert_eq!(results[1], results[0]);
        let later = apply(&store, std::slice::from_ref(&bump)).await;
        assert_eq!(later[0], results[0]);
        assert_eq!(store.get_task("t1").await.unwrap().unwrap().version, 2);

        let cas = with_request_id(update("t1", 2, 30, titled("cas")), "u2");
        let first = apply(&store, std::slice::from_ref(&cas)).await;
        assert_eq!(task_of(&first[0]).version, 3);
        assert_eq!(apply(&store, &[cas]).await, first, "not ABORTED by itself");

        let rejected = with_request_id(update("t1", 1, 40, titled("stale")), "u3");
        let first = apply(&store, std::slice::from_ref(&rejected)).await;
        assert!(matches!(
            first[0],
            CommandResult::Rejected(Rejection::VersionMismatch { .. })
        ));
        apply(&store, &[update("t1", 0, 45, titled("moved"))]).await;
        assert_eq!(apply(&store, &[rejected]).await, first, "the first result");

        let gone = with_request_id(delete("t1", 0, 50), "d1");
        let first = apply(&store, std::slice::from_ref(&gone)).await;
        assert_eq!(first, vec![CommandResult::Deleted { id: "t1".into() }]);
        assert_eq!(apply(&store, &[gone]).await, first, "not NOT_FOUND");
        assert_eq!(store.get_task("t1").await.unwrap(), None);
    })
    .await;
}

/// A request_id reused for a different request (another kind of write,
/// another task, other values) is REQUEST_ID_REUSED and changes nothing;
/// the first request's retry still gets its first result.
#[tokio::test]
async fn apply_request_id_reused_for_another_request() {
    each_backend(async |store: Store| {
        apply(&store, &[create("t1", Some("k"), 10, new_task("first"))]).await;
        apply(&store, &[create("t2", None, 10, new_task("second"))]).await;
        let reused = |request_id: &str| {
            vec![CommandResult::Rejected(Rejection::RequestIdReused {
                request_id: request_id.into(),
            })]
        };
        for other in [
            create("t3", Some("k"), 20, new_task("other title")),
            with_request_id(update("t1", 0, 20, titled("x")), "k"),
            with_request_id(delete("t1", 0, 20), "k"),
        ] {
            assert_eq!(apply(&store, &[other]).await, reused("k"));
        }
        let retitle = with_request_id(update("t2", 0, 30, titled("y")), "u");
        apply(&store, std::slice::from_ref(&retitle)).await;
        for other in [
            with_request_id(update("t2", 0, 40, titled("z")), "u"),
            with_request_id(update("t2", 2, 40, titled("y")), "u"),
            with_request_id(update("t1", 0, 40, titled("y")), "u"),
        ] {
            assert_eq!(apply(&store, &[other]).await, reused("u"));
        }
        let t1 = store.get_task("t1").await.unwrap().unwrap();
        assert_eq!((t1.title.as_str(), t1.version), ("first", 1));
        let t2 = store.get_task("t2").await.unwrap().unwrap();
        assert_eq!((t2.title.as_str(), t2.version), ("y", 2));
        assert_eq!(store.get_task("t3").await.unwrap(), None);
        let retried = apply(&store, &[retitle]).await;
        assert_eq!(task_of(&retried[0]), &t2);
    })
    .await;
}

/// Request ids expire TTL after their creation, measured by the commands'
/// `now`: deleted at the end of a batch, and not honoured inside a batch
/// whose earlier entries already passed the TTL.
#[tokio::test]
async fn apply_request_id_expiry() {
    each_backend(async |store: Store| {
        const T: i64 = 1_000_000;
        apply(
            &store,
            &[
                create("t1", Some("old"), T, new_task("old")),
                create("t2", Some("edge"), T + 10, new_task("edge")),
            ],
        )
        .await;
        // Exactly at the TTL "edge" is still live; "old" is 10µs past it.
        let now = T + 10 + REQUEST_ID_TTL_MICROS;
        let results = apply(
            &store,
            &[
                update("nothing", 0, now, TaskPatch::default()),
                create("t3", Some("old"), now, new_task("old again")),
                create("t4", Some("edge"), now, new_task("edge")),
            ],
        )
        .await;
        assert_eq!(task_of(&results[1]).id, "t3", "expired id makes a new task");
        assert_eq!(task_of(&results[2]).id, "t2", "live id dedupes");

        let request_ids: Vec<(String, String)> = store
            .export()
            .await
            .unwrap()
            .request_ids
            .into_iter()
            .map(|r| (r.request_id, r.task_id))
            .collect();
        assert_eq!(
            request_ids,
            vec![("edge".into(), "t2".into()), ("old".into(), "t3".into())]
        );

        // A later batch expires "edge" (the physical delete).
        apply(&store, &[delete("t3", 0, now + 1)]).await;
        let left: Vec<String> = store
            .export()
            .await
            .unwrap()
            .request_ids
            .into_iter()
            .map(|r| r.request_id)
            .collect();
        assert_eq!(left, vec!["old"]);
    })
    .await;
}

/// Applies relax SQLite's sync only while they run: afterwards, also after
/// an apply the database refused, the connection that log appends and
/// votes use is back at `synchronous = FULL` (2).
#[tokio::test]
async fn applies_leave_the_write_connection_synchronous() {
    each_backend(async |store: Store| {
        let full = match store.backend() {
            crate::store::Backend::Sqlite => Some(2),
            crate::store::Backend::Mysql => None,
        };
        assert_eq!(write_sync_mode(&store).await, full);
        apply(&store, &[create("t1", None, 10, new_task("fine"))]).await;
        assert_eq!(write_sync_mode(&store).await, full);
        refuse_poisoned_titles(&store).await;
        let poisoned = [create("t2", None, 20, new_task("poison"))];
        let entries: Vec<Option<&Command>> = poisoned.iter().map(Some).collect();
        assert!(store
            .apply_batch(&entries, &SmMeta::default())
            .await
            .is_err());
        assert_eq!(write_sync_mode(&store).await, full);
    })
    .await;
}
