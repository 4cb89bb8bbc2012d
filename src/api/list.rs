//! ListTasks requests: filters, page size and the opaque page token.
//!
//! A page token is base64url(JSON) of the keyset position after the last task
//! returned AND the filters and order it was made for: a token sent with
//! other filters, or one we did not make, is INVALID_ARGUMENT (AIP-158).
//! The position is a (sort key, id) pair, so paging never re-reads skipped
//! rows (no OFFSET) and stays stable while tasks are inserted.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use serde::{Deserialize, Serialize};

use super::convert::{micros, Violations};
use super::error::ApiError;
use crate::domain::{Task, TaskStatus};
use crate::proto;
use crate::store::{Cursor, ListOrder, ListQuery};

pub const DEFAULT_PAGE_SIZE: u32 = 50;
pub const MAX_PAGE_SIZE: u32 = 1000;
const TOKEN_VERSION: u8 = 1;

/// What a token is bound to: everything in the request but size and token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Binding {
    status: i32,
    assignee: String,
    label: String,
    before: Option<i64>,
    after: Option<i64>,
    order: i32,
}

#[derive(Debug, Serialize, Deserialize)]
struct PageToken {
    v: u8,
    binding: Binding,
    key: i64,
    id: String,
}

/// A validated ListTasks request.
pub struct ListRequest {
    pub query: ListQuery,
    binding: Binding,
}

impl ListRequest {
    pub fn parse(req: &proto::ListTasksRequest) -> Result<Self, ApiError> {
        let mut v = Violations::default();
        let limit = match req.page_size {
            0 => DEFAULT_PAGE_SIZE,
            n if n < 0 => {
                v.add("page_size", "must not be negative");
                0
            }
            n if n as u32 > MAX_PAGE_SIZE => {
                v.add("page_size", format!("must be at most {MAX_PAGE_SIZE}"));
                0
            }
            n => n as u32,
        };
        let status = match req.status {
            0 => None,
            n => TaskStatus::from_i32(n).or_else(|| {
                v.add("status", format!("unknown TaskStatus value {n}"));
                None
            }),
        };
        let order = match proto::TaskOrder::try_from(req.order_by) {
            Ok(proto::TaskOrder::Unspecified | proto::TaskOrder::CreateTime) => {
                ListOrder::CreateTime
            }
            Ok(proto::TaskOrder::Deadline) => ListOrder::Deadline,
            Err(_) => {
                v.add(
                    "order_by",
                    format!("unknown TaskOrder value {}", req.order_by),
                );
                ListOrder::CreateTime
            }
        };
        let before = req
            .deadline_before
            .as_ref()
            .map(|ts| micros(&mut v, "deadline_before", ts));
        let after = req
            .deadline_after
            .as_ref()
            .map(|ts| micros(&mut v, "deadline_after", ts));
        let binding = Binding {
            status: req.status,
            assignee: req.assignee.clone(),
            label: req.label.clone(),
            before,
            after,
            order: req.order_by,
        };
        let cursor = if req.page_token.is_empty() {
            None
        } else {
            match decode_token(&req.page_token) {
                Some(token) if token.binding == binding => Some(Cursor {
                    key: token.key,
                    id: token.id,
                }),
                Some(_) => {
                    v.add(
                        "page_token",
                        "was made for other filters or another order_by",
                    );
                    None
                }
                None => {
                    v.add("page_token", "is not a page token of this service");
                    None
                }
            }
        };
        v.finish()?;
        let non_empty = |s: &String| (!s.is_empty()).then(|| s.clone());
        Ok(Self {
            query: ListQuery {
                status,
                assignee: non_empty(&req.assignee),
                label: non_empty(&req.label),
                deadline_before: before,
                deadline_after: after,
                order,
                after: cursor,
                limit,
            },
            binding,
        })
    }

    /// The page to answer with, from the query's rows (one more than the
    /// page size was asked for, to tell whether more follow). It stops
    /// early, with a token, rather than exceed `max_bytes` encoded: a
    /// response past what default clients accept (4 MiB) fails them with
    /// RESOURCE_EXHAUSTED, and AIP-158 allows short pages. At least one
    /// task always goes (one task is far below the bound).
    pub fn page(&self, rows: Vec<Task>, max_bytes: usize) -> proto::ListTasksResponse {
        use prost::Message;
        let limit = self.query.limit as usize;
        let more_rows = rows.len() > limit;
        let mut tasks: Vec<proto::Task> = Vec::with_capacity(rows.len().min(limit));
        let mut bytes = 0;
        let mut last = None;
        let mut stopped_early = false;
        for task in rows.into_iter().take(limit) {
            let encoded: proto::Task = task.clone().into();
            // The field's tag and length prefix come on top of the message.
            let len = encoded.encoded_len();
            let cost = len + 1 + prost::length_delimiter_len(len);
            if !tasks.is_empty() && bytes + cost > max_bytes {
                stopped_early = true;
                break;
            }
            bytes += cost;
            tasks.push(encoded);
            last = Some(task);
        }
        let next_page_token = match last {
            Some(last) if more_rows || stopped_early => self.next_page_token(&last),
            _ => String::new(),
        };
        proto::ListTasksResponse {
            tasks,
            next_page_token,
        }
    }

    /// The token that resumes after `last`, the final task of a full page.
    pub fn next_page_token(&self, last: &Task) -> String {
        let cursor = self.query.cursor_of(last);
        let token = PageToken {
            v: TOKEN_VERSION,
            binding: self.binding.clone(),
            key: cursor.key,
            id: cursor.id,
        };
        let json = serde_json::to_vec(&token).expect("a page token always serializes");
        URL_SAFE_NO_PAD.encode(json)
    }
}

fn decode_token(token: &str) -> Option<PageToken> {
    let bytes = URL_SAFE_NO_PAD.decode(token).ok()?;
    let token: PageToken = serde_json::from_slice(&bytes).ok()?;
    (token.v == TOKEN_VERSION).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TaskPriority;

    fn task() -> Task {
        Task {
            id: "0190-a".into(),
            title: "t".into(),
            description: String::new(),
            status: TaskStatus::Todo,
            priority: TaskPriority::Unspecified,
            deadline: None,
            assignee: String::new(),
            labels: vec![],
            create_time: 42,
            update_time: 42,
            version: 1,
        }
    }

    fn fields(req: &proto::ListTasksRequest) -> Vec<String> {
        match ListRequest::parse(req) {
            Err(ApiError::InvalidArgument(v)) => v.into_iter().map(|f| f.field).collect(),
            Err(other) => panic!("unexpected {other:?}"),
            Ok(_) => vec![],
        }
    }

    /// A page stops before the byte bound, with a token that resumes right
    /// after its last task; a page that fits ends without one.
    #[test]
    fn pages_stop_short_of_the_byte_bound() {
        use prost::Message;
        let list = ListRequest::parse(&proto::ListTasksRequest {
            page_size: 10,
            ..Default::default()
        })
        .unwrap();
        let rows: Vec<Task> = (0..11)
            .map(|i| Task {
                id: format!("0190-{i:02}"),
                description: "d".repeat(1000),
                ..task()
            })
            .collect();
        let full = list.page(rows.clone(), usize::MAX);
        assert_eq!(full.tasks.len(), 10);
        assert!(!full.next_page_token.is_empty(), "an 11th row follows");
        let one = full.tasks[0].encoded_len() + 3;
        let short = list.page(rows.clone(), 3 * one + one / 2);
        assert_eq!(short.tasks.len(), 3);
        assert_eq!(short.next_page_token, list.next_page_token(&rows[2]));
        assert!(short.encoded_len() <= 3 * one + one / 2 + short.next_page_token.len() + 8);
        let tiny = list.page(rows[..1].to_vec(), 1);
        assert_eq!(tiny.tasks.len(), 1, "at least one task always goes");
        assert!(tiny.next_page_token.is_empty(), "nothing follows it");
    }

    #[test]
    fn page_size_defaults_and_limits() {
        let mut req = proto::ListTasksRequest::default();
        assert_eq!(
            ListRequest::parse(&req).unwrap().query.limit,
            DEFAULT_PAGE_SIZE
        );
        req.page_size = 1000;
        assert_eq!(ListRequest::parse(&req).unwrap().query.limit, 1000);
        req.page_size = 1001;
        assert_eq!(fields(&req), ["page_size"]);
        req.page_size = -1;
        assert_eq!(fields(&req), ["page_size"]);
    }

    #[test]
    fn token_round_trips_and_is_bound_to_filters() {
        let mut req = proto::ListTasksRequest {
            label: "x".into(),
            ..Default::default()
        };
        let first = ListRequest::parse(&req).unwrap();
        req.page_token = first.next_page_token(&task());
        let second = ListRequest::parse(&req).unwrap();
        assert_eq!(
            second.query.after,
            Some(Cursor {
                key: 42,
                id: "0190-a".into()
            })
        );
        req.label = "y".into();
        assert_eq!(fields(&req), ["page_token"]);
    }

    #[test]
    fn foreign_tokens_are_rejected() {
        for token in [
            "garbage",
            "e30",
            "!!!",
            &URL_SAFE_NO_PAD.encode(b"{\"v\":9}"),
        ] {
            let req = proto::ListTasksRequest {
                page_token: token.to_string(),
                ..Default::default()
            };
            assert_eq!(fields(&req), ["page_token"], "token {token}");
        }
    }
}
