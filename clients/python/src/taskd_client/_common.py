"""What the sync and the asyncio client share: endpoints, request building, the retry policy.

The clients only differ in how they wait (``time.sleep`` / ``asyncio.sleep``) and how they
call (``grpc`` / ``grpc.aio``); everything that decides *what* is sent and *whether* a
failure is retried lives here.
"""

from __future__ import annotations

import datetime as _dt
import random
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Optional, Union

import grpc
from google.protobuf import field_mask_pb2, timestamp_pb2
from google.rpc import status_pb2

from ._errors import OUTCOME_UNKNOWN, reason
from ._proto.taskd.v1 import taskd_pb2 as pb

TimeLike = Union[_dt.datetime, timestamp_pb2.Timestamp]
EnumLike = Union[int, str]

#: The writable fields of a task: the keyword arguments ``update_task`` accepts.
UPDATABLE_FIELDS = ("title", "description", "status", "priority", "deadline", "assignee", "labels")
#: The keyword arguments ``list_tasks`` accepts.
LIST_FILTERS = (
    "status",
    "assignee",
    "label",
    "deadline_before",
    "deadline_after",
    "order_by",
    "consistency",
    "page_size",
)

#: Channel options: large pages (up to 1000 tasks) fit, and a node that comes back is
#: reconnected to within seconds rather than gRPC's default of up to two minutes.
CHANNEL_OPTIONS = (
    ("grpc.max_receive_message_length", 64 * 1024 * 1024),
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 2000),
)


def parse_endpoints(endpoints: Union[str, Iterable[str]]) -> list[str]:
    """``"a:1,b:2"`` or ``["a:1", "http://b:2"]`` → ``["a:1", "b:2"]``; at least one."""
    if isinstance(endpoints, str):
        endpoints = endpoints.split(",")
    parsed = [e.strip().removeprefix("http://") for e in endpoints if e and e.strip()]
    for e in parsed:
        if "://" in e or ":" not in e:
            raise ValueError(f"endpoint {e!r}: expected host:port or http://host:port (no TLS yet)")
    if not parsed:
        raise ValueError("at least one endpoint (host:port) is required")
    return parsed


# ---- retry policy ---------------------------------------------------------------------


@dataclass(frozen=True)
class RetryPolicy:
    """Bounded exponential backoff with full jitter: the pause after the n-th failed attempt
    (1-based) is a random time in ``[0, min(max_backoff, initial_backoff * 2**(n-1))]``.

    The defaults (11 attempts, i.e. 10 retries as in the Rust client; 0.1 s doubling to
    2 s: about 7.5 s of pauses on average) outlast a leader election (election timeout
    1.5-3 s, more after a split vote), so a call survives the loss of the leader within
    its 10 s deadline.
    """

    max_attempts: int = 11
    initial_backoff: float = 0.1
    max_backoff: float = 2.0

    def pause(self, failed_attempts: int) -> float:
        cap = min(self.max_backoff, self.initial_backoff * (2 ** (failed_attempts - 1)))
        return random.uniform(0, cap)


def retryable(code: grpc.StatusCode, status: Optional[status_pb2.Status] = None) -> bool:
    """UNAVAILABLE (no leader or quorum yet, or the node could not be reached: refused,
    reset), or UNKNOWN with ErrorInfo reason OUTCOME_UNKNOWN (a write proposed without an
    outcome). Every method may be retried: every write carries the same request_id on each
    attempt, so it never applies twice. Any other answer is final, DEADLINE_EXCEEDED
    included (the call's one deadline has passed)."""
    if code == grpc.StatusCode.UNAVAILABLE:
        return True
    return code == grpc.StatusCode.UNKNOWN and reason(status) == OUTCOME_UNKNOWN


class Attempts:
    """One call's attempts: the deadline ``timeout`` seconds after the call started, which
    covers every attempt and every pause, and the pauses between attempts."""

    def __init__(self, policy: RetryPolicy, timeout: float) -> None:
        self._policy = policy
        self._started = time.monotonic()
        self._deadline = self._started + timeout
        self.count = 0

    def start(self) -> float:
        """Counts an attempt; returns the time left, its gRPC timeout."""
        self.count += 1
        return max(0.0, self._deadline - time.monotonic())

    def pause(self) -> Optional[float]:
        """The pause before the next attempt, or None when the call must give up: no
        attempts left, or the pause would end past the deadline."""
        if self.count >= self._policy.max_attempts:
            return None
        pause = self._policy.pause(self.count)
        if time.monotonic() + pause >= self._deadline:
            return None
        return pause

    def gave_up(self, endpoint: str, message: str) -> str:
        elapsed = time.monotonic() - self._started
        return f"{endpoint}: {message} (gave up after {self.count} attempts in {elapsed:.1f} s)"


# ---- request building ----------------------------------------------------------------


def to_timestamp(value: Optional[TimeLike], name: str) -> Optional[timestamp_pb2.Timestamp]:
    """A datetime (aware; naive means UTC) or a Timestamp → a Timestamp; None stays None."""
    if value is None:
        return None
    if isinstance(value, timestamp_pb2.Timestamp):
        return value
    if isinstance(value, _dt.datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=_dt.timezone.utc)
        ts = timestamp_pb2.Timestamp()
        ts.FromDatetime(value)
        return ts
    raise TypeError(f"{name} must be a datetime or a google.protobuf.Timestamp, not {type(value).__name__}")


def _enum(value: Optional[EnumLike], enum_type, name: str) -> int:
    """An enum int (``TaskStatus.TASK_STATUS_DONE``) or its name (``"TASK_STATUS_DONE"``);
    None means UNSPECIFIED (0)."""
    if value is None:
        return 0
    if isinstance(value, str):
        try:
            return enum_type.Value(value)
        except ValueError:
            raise ValueError(f"{name}: {value!r} is not one of {', '.join(enum_type.keys())}") from None
    if isinstance(value, int) and not isinstance(value, bool):
        return int(value)
    raise TypeError(f"{name} must be a {enum_type.DESCRIPTOR.name} value (int) or name (str)")


def _labels(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)):
        raise TypeError("labels must be a list of strings, not one string")
    return list(value)


def new_request_id() -> str:
    return uuid.uuid4().hex


def create_request(
    *,
    title: str,
    description: str = "",
    status: Optional[EnumLike] = None,
    priority: Optional[EnumLike] = None,
    deadline: Optional[TimeLike] = None,
    assignee: str = "",
    labels: Iterable[str] = (),
    request_id: Optional[str] = None,
) -> pb.CreateTaskRequest:
    """The request a create sends, on every attempt: the request_id is fixed here."""
    return pb.CreateTaskRequest(
        title=title,
        description=description,
        status=_enum(status, pb.TaskStatus, "status"),
        priority=_enum(priority, pb.TaskPriority, "priority"),
        deadline=to_timestamp(deadline, "deadline"),
        assignee=assignee,
        labels=_labels(labels),
        request_id=new_request_id() if request_id is None else request_id,
    )


def get_request(id: str, consistency: Optional[EnumLike]) -> pb.GetTaskRequest:
    return pb.GetTaskRequest(id=id, consistency=_enum(consistency, pb.ReadConsistency, "consistency"))


def list_request(filters: Mapping[str, Any]) -> pb.ListTasksRequest:
    """The first page's request; raises TypeError for an unknown filter."""
    unknown = sorted(set(filters) - set(LIST_FILTERS))
    if unknown:
        raise TypeError(
            f"list_tasks() got unexpected filter(s) {', '.join(unknown)}; "
            f"known: {', '.join(LIST_FILTERS)}"
        )
    f = dict(filters)
    return pb.ListTasksRequest(
        page_size=int(f.get("page_size") or 0),
        status=_enum(f.get("status"), pb.TaskStatus, "status"),
        assignee=f.get("assignee") or "",
        label=f.get("label") or "",
        deadline_before=to_timestamp(f.get("deadline_before"), "deadline_before"),
        deadline_after=to_timestamp(f.get("deadline_after"), "deadline_after"),
        order_by=_enum(f.get("order_by"), pb.TaskOrder, "order_by"),
        consistency=_enum(f.get("consistency"), pb.ReadConsistency, "consistency"),
    )


def update_request(id: str, expected_version: int, fields: Mapping[str, Any]) -> pb.UpdateTaskRequest:
    """The mask is exactly the fields given; None clears a field (e.g. ``deadline=None``).
    Raises TypeError for a field that is not writable."""
    unknown = sorted(set(fields) - set(UPDATABLE_FIELDS))
    if unknown:
        raise TypeError(
            f"update_task() got unexpected field(s) {', '.join(unknown)}; "
            f"writable: {', '.join(UPDATABLE_FIELDS)}"
        )
    task = pb.Task(id=id)
    for name, value in fields.items():
        if name == "deadline":
            ts = to_timestamp(value, "deadline")
            if ts is not None:
                task.deadline.CopyFrom(ts)
        elif name == "status":
            task.status = _enum(value, pb.TaskStatus, "status")
        elif name == "priority":
            task.priority = _enum(value, pb.TaskPriority, "priority")
        elif name == "labels":
            task.labels.extend(_labels(value))
        elif value is not None:
            setattr(task, name, value)
    paths = [name for name in UPDATABLE_FIELDS if name in fields]
    return pb.UpdateTaskRequest(
        task=task,
        update_mask=field_mask_pb2.FieldMask(paths=paths),
        expected_version=expected_version,
        request_id=new_request_id(),
    )


def delete_request(id: str, expected_version: int) -> pb.DeleteTaskRequest:
    """Like every write, with a request_id fixed here for all its attempts."""
    return pb.DeleteTaskRequest(id=id, expected_version=expected_version, request_id=new_request_id())
