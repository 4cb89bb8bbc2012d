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
from dataclasses import dataclass, field
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
    """``"a:1,b:2"`` or ``["a:1", "http://b:2", "https://c:3"]`` → ``["a:1", "b:2", "c:3"]``;
    at least one. Whether to use TLS is :func:`wants_tls`'s answer."""
    return [address for address, _ in _split_endpoints(endpoints)]


def wants_tls(endpoints: Union[str, Iterable[str]], root_certificates: Optional[bytes]) -> bool:
    """TLS when a CA is given or any endpoint says ``https://``. Endpoints that say
    ``http://`` next to ``https://`` ones are a mistake: one client has one kind of channel."""
    schemes = {scheme for _, scheme in _split_endpoints(endpoints)}
    if "https" in schemes and "http" in schemes:
        raise ValueError("endpoints mix http:// and https://: use one scheme for a cluster")
    return root_certificates is not None or "https" in schemes


def _split_endpoints(endpoints: Union[str, Iterable[str]]) -> list[tuple[str, Optional[str]]]:
    if isinstance(endpoints, str):
        endpoints = endpoints.split(",")
    parsed: list[tuple[str, Optional[str]]] = []
    for e in endpoints:
        e = (e or "").strip()
        if not e:
            continue
        scheme: Optional[str] = None
        if "://" in e:
            scheme, e = e.split("://", 1)
            scheme = scheme.lower()
            if scheme not in ("http", "https"):
                raise ValueError(f"endpoint {e!r}: expected host:port, http://host:port or https://host:port")
        if "://" in e or ":" not in e:
            raise ValueError(f"endpoint {e!r}: expected host:port, http://host:port or https://host:port")
        parsed.append((e, scheme))
    if not parsed:
        raise ValueError("at least one endpoint (host:port) is required")
    return parsed


@dataclass(frozen=True)
class Connection:
    """How a client reaches its endpoints: their addresses, the TLS credentials (None for
    plaintext) and the metadata every call carries. ``repr`` leaves the token out."""

    endpoints: list[str]
    credentials: Optional[grpc.ChannelCredentials] = field(default=None, repr=False)
    metadata: Optional[tuple[tuple[str, str], ...]] = field(default=None, repr=False)

    @property
    def tls(self) -> bool:
        return self.credentials is not None


def connection(
    endpoints: Union[str, Iterable[str]],
    *,
    root_certificates: Optional[bytes] = None,
    private_key: Optional[bytes] = None,
    certificate_chain: Optional[bytes] = None,
    token: Optional[str] = None,
) -> Connection:
    """Checks a client's arguments and decides TLS: on when an endpoint says ``https://`` or
    any certificate is given (a plaintext channel would silently drop it)."""
    if not isinstance(endpoints, str):
        endpoints = list(endpoints)
    addresses = parse_endpoints(endpoints)
    tls = wants_tls(endpoints, root_certificates) or private_key is not None or certificate_chain is not None
    credentials = channel_credentials(root_certificates, private_key, certificate_chain) if tls else None
    return Connection(addresses, credentials, auth_metadata(token))


def channel_credentials(
    root_certificates: Optional[bytes],
    private_key: Optional[bytes],
    certificate_chain: Optional[bytes],
) -> grpc.ChannelCredentials:
    """TLS credentials: the CA(s) that signed the nodes' certificates (None: gRPC's default
    roots) and, for nodes that require client certificates, a key with its certificate chain
    (all PEM bytes, as :func:`grpc.ssl_channel_credentials` takes them)."""
    if (private_key is None) != (certificate_chain is None):
        raise ValueError("private_key and certificate_chain go together (a client certificate)")
    for name, value in (
        ("root_certificates", root_certificates),
        ("private_key", private_key),
        ("certificate_chain", certificate_chain),
    ):
        if value is not None and not isinstance(value, bytes):
            raise TypeError(f"{name} must be PEM bytes (e.g. Path(...).read_bytes()), not {type(value).__name__}")
    return grpc.ssl_channel_credentials(
        root_certificates=root_certificates,
        private_key=private_key,
        certificate_chain=certificate_chain,
    )


def auth_metadata(token: Optional[str]) -> Optional[tuple[tuple[str, str], ...]]:
    """The ``authorization: Bearer TOKEN`` metadata every call carries; None without a token.

    Per-call metadata rather than gRPC call credentials, which gRPC refuses on plaintext
    channels: a token works with either kind of channel (the server decides whether it
    accepts tokens over plaintext)."""
    if token is None:
        return None
    token = token.strip()
    if not token or not all(33 <= ord(c) <= 126 for c in token):
        raise ValueError("token must be non-empty printable ASCII without spaces")
    return (("authorization", f"Bearer {token}"),)


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
    included (the call's one deadline has passed), and so are UNAUTHENTICATED and
    PERMISSION_DENIED: the same token gets the same answer."""
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
