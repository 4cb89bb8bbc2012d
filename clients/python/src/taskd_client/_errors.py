"""The exceptions every client method raises, one class per gRPC outcome a caller handles.

Every failure of a call is a :class:`TaskdError`; the subclasses name the outcomes worth
telling apart. The server's richer details (``google.rpc.Status`` in the
``grpc-status-details-bin`` trailer) are decoded into attributes: the field violations
of a ``google.rpc.BadRequest`` and the current version of an ``ErrorInfo``.
"""

from __future__ import annotations

from typing import NamedTuple, Optional

import grpc
from google.rpc import error_details_pb2, status_pb2

__all__ = [
    "TaskdError",
    "NotFoundError",
    "InvalidArgumentError",
    "AlreadyExistsError",
    "ConflictError",
    "UnavailableError",
    "DeadlineExceededError",
    "OutcomeUnknownError",
    "UnauthenticatedError",
    "PermissionDeniedError",
    "FieldViolation",
    "reason",
]


class FieldViolation(NamedTuple):
    """One bad field of a request, as the server named it (e.g. ``"title"``)."""

    field: str
    description: str


class TaskdError(Exception):
    """A failed call: ``code`` is the :class:`grpc.StatusCode`, ``message`` the server's text.

    ``status`` is the decoded ``google.rpc.Status`` when the server sent details, else None.
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        message: str,
        status: Optional[status_pb2.Status] = None,
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.status = status


class NotFoundError(TaskdError):
    """No task has the id (NOT_FOUND)."""


class InvalidArgumentError(TaskdError):
    """The request was rejected before anything changed (INVALID_ARGUMENT).

    ``field_violations`` lists every bad field (:class:`FieldViolation`), from the
    server's ``google.rpc.BadRequest`` details; empty if it sent none.
    """

    def __init__(self, code, message, status=None) -> None:
        super().__init__(code, message, status)
        self.field_violations: list[FieldViolation] = [
            FieldViolation(v.field, v.description)
            for bad in _details(status, error_details_pb2.BadRequest)
            for v in bad.field_violations
        ]


class AlreadyExistsError(TaskdError):
    """ALREADY_EXISTS: e.g. a create's request_id made a task that has been deleted since."""


class ConflictError(TaskdError):
    """The task is not at ``expected_version`` (ABORTED); nothing was changed.

    ``current_version`` (int, or None if the server did not say) comes from the
    ``google.rpc.ErrorInfo`` details, as does ``expected_version``.
    """

    def __init__(self, code, message, status=None) -> None:
        super().__init__(code, message, status)
        metadata: dict[str, str] = {}
        for info in _details(status, error_details_pb2.ErrorInfo):
            metadata.update(info.metadata)
        self.current_version: Optional[int] = _int_or_none(metadata.get("current_version"))
        self.expected_version: Optional[int] = _int_or_none(metadata.get("expected_version"))


class UnavailableError(TaskdError):
    """No node could serve the call (UNAVAILABLE): every retry found no leader, no quorum,
    or no reachable endpoint."""


class DeadlineExceededError(TaskdError):
    """The call's deadline passed (DEADLINE_EXCEEDED). A write may still be applied later;
    a write retried with the same ``request_id`` never applies twice."""


class OutcomeUnknownError(TaskdError):
    """UNKNOWN with ErrorInfo reason OUTCOME_UNKNOWN: the write was proposed but no outcome
    came back, and the retries ran out. It may have been applied: read before acting."""


class UnauthenticatedError(TaskdError):
    """The server does not know who is calling (UNAUTHENTICATED): no token, or one it does
    not accept. Not retried: pass a valid ``token``."""


class PermissionDeniedError(TaskdError):
    """The caller's role may not make this call (PERMISSION_DENIED), e.g. a reader token
    creating a task. Not retried."""


OUTCOME_UNKNOWN = "OUTCOME_UNKNOWN"


def reason(status: Optional[status_pb2.Status]) -> Optional[str]:
    """The ``google.rpc.ErrorInfo`` reason of a failed call, if the server sent one."""
    for info in _details(status, error_details_pb2.ErrorInfo):
        return info.reason
    return None


_BY_CODE: dict[grpc.StatusCode, type[TaskdError]] = {
    grpc.StatusCode.NOT_FOUND: NotFoundError,
    grpc.StatusCode.INVALID_ARGUMENT: InvalidArgumentError,
    grpc.StatusCode.ALREADY_EXISTS: AlreadyExistsError,
    grpc.StatusCode.ABORTED: ConflictError,
    grpc.StatusCode.FAILED_PRECONDITION: ConflictError,
    grpc.StatusCode.UNAVAILABLE: UnavailableError,
    grpc.StatusCode.DEADLINE_EXCEEDED: DeadlineExceededError,
    grpc.StatusCode.UNAUTHENTICATED: UnauthenticatedError,
    grpc.StatusCode.PERMISSION_DENIED: PermissionDeniedError,
}


def error_for(
    code: grpc.StatusCode, message: str, status: Optional[status_pb2.Status] = None
) -> TaskdError:
    """The :class:`TaskdError` subclass for ``code``, details decoded from ``status``."""
    if code == grpc.StatusCode.UNKNOWN and reason(status) == OUTCOME_UNKNOWN:
        return OutcomeUnknownError(code, message, status)
    return _BY_CODE.get(code, TaskdError)(code, message, status)


def status_from_trailers(metadata) -> Optional[status_pb2.Status]:
    """Decodes ``grpc-status-details-bin`` from trailing metadata; None if absent or bad."""
    for key, value in metadata or ():
        if key == "grpc-status-details-bin":
            try:
                return status_pb2.Status.FromString(value)
            except Exception:  # a malformed trailer must not hide the call's own error
                return None
    return None


def _details(status: Optional[status_pb2.Status], message_type):
    if status is None:
        return
    for any_detail in status.details:
        if any_detail.Is(message_type.DESCRIPTOR):
            detail = message_type()
            any_detail.Unpack(detail)
            yield detail


def _int_or_none(text: Optional[str]) -> Optional[int]:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None
