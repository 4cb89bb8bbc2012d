"""Python client of taskd, a Raft-replicated gRPC task service.

    from taskd_client import TaskClient, TaskStatus, NotFoundError

    with TaskClient("127.0.0.1:50051,127.0.0.1:50052,127.0.0.1:50053") as client:
        task = client.create_task(title="Write the release notes", labels=["docs"])
        client.update_task(task.id, status=TaskStatus.TASK_STATUS_DONE)

:class:`TaskClient` blocks; :class:`AsyncTaskClient` has the same methods as coroutines.
``https://`` endpoints or ``root_certificates=`` connect over TLS; ``token=`` is sent as
``authorization: Bearer`` on every call.
Methods return the generated protobuf messages (:class:`Task`); every failure raises a
:class:`TaskdError`. Enum arguments take the generated values (``TaskStatus.TASK_STATUS_DONE``,
plain ints) or their names (``"TASK_STATUS_DONE"``). ``pb`` is the whole generated module
(``taskd.v1``), e.g. for the request messages.
"""

from ._aio import AsyncTaskClient
from ._client import TaskClient
from ._errors import (
    AlreadyExistsError,
    ConflictError,
    DeadlineExceededError,
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    OutcomeUnknownError,
    PermissionDeniedError,
    TaskdError,
    UnauthenticatedError,
    UnavailableError,
)
from ._proto.taskd.v1 import taskd_pb2 as pb
from ._proto.taskd.v1 import taskd_pb2_grpc as pb_grpc

Task = pb.Task
TaskStatus = pb.TaskStatus
TaskPriority = pb.TaskPriority
ReadConsistency = pb.ReadConsistency
TaskOrder = pb.TaskOrder

__version__ = "0.1.0"

__all__ = [
    "TaskClient",
    "AsyncTaskClient",
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
    "Task",
    "TaskStatus",
    "TaskPriority",
    "ReadConsistency",
    "TaskOrder",
    "pb",
    "pb_grpc",
]
