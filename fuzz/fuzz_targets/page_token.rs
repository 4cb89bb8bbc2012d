//! ListTasks page tokens (`api::list`): any token string is either one this
//! service made (then it resumes where it was made) or INVALID_ARGUMENT on
//! `page_token` alone; a token made for one request resumes exactly after
//! its task, and is refused as soon as any filter or the order differs.
#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use prost_types::Timestamp;
use taskd::api::list::ListRequest;
use taskd::domain::{Task, TaskPriority, TaskStatus};
use taskd::proto;
use taskd_fuzz::invalid_fields;

#[derive(Arbitrary, Debug)]
struct Input {
    page_size: i32,
    status: i32,
    assignee: String,
    label: String,
    deadline_before: Option<(i64, i32)>,
    deadline_after: Option<(i64, i32)>,
    order_by: i32,
    /// A token as a client might send it: garbage, or a mangled real one.
    token: String,
    /// The last task of the page the real token is made for.
    id: String,
    create_time: i64,
    deadline: Option<i64>,
}

fn ts((seconds, nanos): (i64, i32)) -> Timestamp {
    Timestamp { seconds, nanos }
}

fn fields(req: &proto::ListTasksRequest) -> Option<Vec<String>> {
    ListRequest::parse(req).err().map(|e| {
        invalid_fields(
            e,
            &[
                "page_size",
                "page_token",
                "status",
                "deadline_before",
                "deadline_after",
                "order_by",
            ],
        )
    })
}

fuzz_target!(|input: Input| {
    let base = proto::ListTasksRequest {
        page_size: input.page_size,
        page_token: String::new(),
        status: input.status,
        assignee: input.assignee.clone(),
        label: input.label.clone(),
        deadline_before: input.deadline_before.map(ts),
        deadline_after: input.deadline_after.map(ts),
        order_by: input.order_by,
        consistency: 0,
    };
    let Ok(first) = ListRequest::parse(&base) else {
        return;
    };

    // A token we did not make is refused on page_token alone; one that
    // parses must resume somewhere.
    let foreign = proto::ListTasksRequest {
        page_token: input.token.clone(),
        ..base.clone()
    };
    match ListRequest::parse(&foreign) {
        Ok(parsed) => assert_eq!(parsed.query.after.is_some(), !input.token.is_empty()),
        Err(e) => {
            assert_eq!(invalid_fields(e, &["page_token"]), ["page_token"]);
        }
    }

    // A real token resumes right after the task it was made from.
    let last = Task {
        id: input.id.clone(),
        title: "t".into(),
        description: String::new(),
        status: TaskStatus::Todo,
        priority: TaskPriority::Unspecified,
        deadline: input.deadline,
        assignee: String::new(),
        labels: vec![],
        create_time: input.create_time,
        update_time: input.create_time,
        version: 1,
    };
    let token = first.next_page_token(&last);
    let next = proto::ListTasksRequest {
        page_token: token.clone(),
        ..base.clone()
    };
    let resumed = ListRequest::parse(&next).expect("our own token is accepted");
    assert_eq!(resumed.query.after, Some(first.query.cursor_of(&last)));
    assert_eq!(resumed.query.limit, first.query.limit);
    // The page size is not part of the binding: a client may change it.
    let resized = proto::ListTasksRequest {
        page_size: if base.page_size == 1 { 2 } else { 1 },
        ..next.clone()
    };
    assert!(ListRequest::parse(&resized).is_ok());

    // Any other filter or order: the same token is refused.
    let later = |s: &Option<Timestamp>| {
        Some(s.map_or(
            Timestamp {
                seconds: 0,
                nanos: 0,
            },
            |t| Timestamp {
                seconds: if t.seconds > 0 {
                    t.seconds - 1
                } else {
                    t.seconds + 1
                },
                nanos: t.nanos,
            },
        ))
    };
    let variants = [
        proto::ListTasksRequest {
            status: if base.status == 1 { 2 } else { 1 },
            ..next.clone()
        },
        proto::ListTasksRequest {
            assignee: format!("{}x", base.assignee),
            ..next.clone()
        },
        proto::ListTasksRequest {
            label: format!("{}x", base.label),
            ..next.clone()
        },
        proto::ListTasksRequest {
            deadline_before: later(&base.deadline_before),
            ..next.clone()
        },
        proto::ListTasksRequest {
            deadline_after: later(&base.deadline_after),
            ..next.clone()
        },
        proto::ListTasksRequest {
            order_by: if base.order_by == 2 { 1 } else { 2 },
            ..next.clone()
        },
    ];
    for variant in variants {
        let untokened = proto::ListTasksRequest {
            page_token: String::new(),
            ..variant.clone()
        };
        if ListRequest::parse(&untokened).is_err() {
            continue;
        }
        // The variant is itself a valid request: only the token is wrong.
        assert_eq!(
            fields(&variant),
            Some(vec!["page_token".to_string()]),
            "a token was accepted with other filters: {variant:?}"
        );
    }
});
