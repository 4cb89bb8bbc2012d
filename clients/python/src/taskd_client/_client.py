"""The blocking client, on ``grpc``. Request building and retry rules: ``_common``."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator
from typing import Any, Optional, Union

import grpc
from grpc_status import rpc_status

from . import _common
from ._common import EnumLike, RetryPolicy, TimeLike
from ._errors import error_for, status_from_trailers
from ._proto.taskd.v1 import taskd_pb2 as pb
from ._proto.taskd.v1 import taskd_pb2_grpc as pb_grpc


class TaskClient:
    """A client of a taskd cluster, safe to share between threads.

    ``endpoints``: every node's ``host:port``, as a list or one comma-separated string.
    ``https://host:port`` endpoints, or ``root_certificates`` (PEM bytes of the CA that
    signed the nodes' certificates; without it gRPC's default roots are trusted), make
    every channel TLS; ``private_key`` and ``certificate_chain`` (PEM bytes) are the
    client certificate for nodes that require one, and turn TLS on too. ``token`` is sent
    as ``authorization: Bearer TOKEN`` with every call; UNAUTHENTICATED and
    PERMISSION_DENIED raise :class:`UnauthenticatedError` / :class:`PermissionDeniedError`
    at once, without retries.
    A call goes to the current endpoint (the first one to begin with); on UNAVAILABLE (no
    leader or quorum yet, node unreachable) the client moves on to the next endpoint and
    retries, with exponential backoff and full jitter, for at most ``max_attempts``
    attempts. ``timeout`` (seconds) is the call's deadline: it covers every attempt and
    every pause, and is sent to the server. Any node serves any call (followers forward
    to the leader).

    Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        endpoints: Union[str, Iterable[str]],
        *,
        timeout: float = 10.0,
        max_attempts: int = 11,
        initial_backoff: float = 0.1,
        max_backoff: float = 2.0,
        root_certificates: Optional[bytes] = None,
        private_key: Optional[bytes] = None,
        certificate_chain: Optional[bytes] = None,
        token: Optional[str] = None,
    ) -> None:
        connection = _common.connection(
            endpoints,
            root_certificates=root_certificates,
            private_key=private_key,
            certificate_chain=certificate_chain,
            token=token,
        )
        self._endpoints = connection.endpoints
        self._metadata = connection.metadata
        self._timeout = timeout
        self._policy = RetryPolicy(max_attempts, initial_backoff, max_backoff)
        if connection.credentials is None:
            self._channels = [
                grpc.insecure_channel(e, options=_common.CHANNEL_OPTIONS) for e in self._endpoints
            ]
        else:
            self._channels = [
                grpc.secure_channel(e, connection.credentials, options=_common.CHANNEL_OPTIONS)
                for e in self._endpoints
            ]
        self._stubs = [pb_grpc.TaskServiceStub(c) for c in self._channels]
        self._current = 0
        self._lock = threading.Lock()

    # ---- the API --------------------------------------------------------------------

    def create_task(
        self,
        *,
        title: str,
        description: str = "",
        status: Optional[EnumLike] = None,
        priority: Optional[EnumLike] = None,
        deadline: Optional[TimeLike] = None,
        assignee: str = "",
        labels: Iterable[str] = (),
        request_id: Optional[str] = None,
    ) -> pb.Task:
        """Creates a task and returns it. ``request_id`` (default: a fresh random one) is
        sent on every attempt, so a retry never creates a second task."""
        request = _common.create_request(
            title=title,
            description=description,
            status=status,
            priority=priority,
            deadline=deadline,
            assignee=assignee,
            labels=labels,
            request_id=request_id,
        )
        return self._call("CreateTask", request).task

    def get_task(self, id: str, *, consistency: Optional[EnumLike] = None) -> pb.Task:
        """The task with ``id``; :class:`NotFoundError` if there is none."""
        return self._call("GetTask", _common.get_request(id, consistency)).task

    def list_tasks(self, **filters: Any) -> Iterator[pb.Task]:
        """Every task matching ``filters`` (see ``_common.LIST_FILTERS``), fetching page
        after page lazily. An unknown filter raises TypeError at once."""
        first = _common.list_request(filters)
        return self._pages(first)

    def update_task(self, id: str, *, expected_version: int = 0, **fields: Any) -> pb.Task:
        """Changes exactly the ``fields`` given (None clears one, e.g. ``deadline=None``)
        and returns the task. ``expected_version`` 0 changes whatever version the task is
        at; otherwise a different version raises :class:`ConflictError`. Every attempt sends
        one fresh request_id, so a retry after an attempt that was applied but whose answer
        was lost gets that attempt's result: the update applies once."""
        request = _common.update_request(id, expected_version, fields)
        return self._call("UpdateTask", request).task

    def delete_task(self, id: str, *, expected_version: int = 0) -> None:
        """Deletes the task; :class:`NotFoundError` if there is none.

        Every attempt sends one request_id, so a retry of an attempt that was applied but
        whose answer was lost succeeds too, instead of raising NotFoundError."""
        self._call("DeleteTask", _common.delete_request(id, expected_version))

    # ---- plumbing -------------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        return list(self._endpoints)

    @property
    def current_endpoint(self) -> str:
        """The endpoint the next call goes to first."""
        return self._endpoints[self._current]

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def __enter__(self) -> "TaskClient":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _pages(self, request: pb.ListTasksRequest) -> Iterator[pb.Task]:
        while True:
            response = self._call("ListTasks", request)
            yield from response.tasks
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token

    def _rotate_from(self, index: int) -> None:
        # Only the first of several concurrent failures on one endpoint moves on.
        with self._lock:
            if self._current == index:
                self._current = (index + 1) % len(self._endpoints)

    def _call(self, method: str, request: Any) -> Any:
        attempts = _common.Attempts(self._policy, self._timeout)
        while True:
            index = self._current
            timeout = attempts.start()
            try:
                return getattr(self._stubs[index], method)(request, timeout=timeout, metadata=self._metadata)
            except grpc.RpcError as e:
                code, message = e.code(), e.details() or ""
                if not _common.retryable(code, _status(e)):
                    raise error_for(code, message, _status(e)) from e
                self._rotate_from(index)
                pause = attempts.pause()
                if pause is None:
                    message = attempts.gave_up(self._endpoints[index], message)
                    raise error_for(code, message, _status(e)) from e
                time.sleep(pause)


def _status(error: grpc.RpcError):
    """The ``google.rpc.Status`` details of a failed call, if the server sent any."""
    try:
        return rpc_status.from_call(error)
    except ValueError:  # code/message differ from the details: decode them anyway
        return status_from_trailers(error.trailing_metadata())
    except AttributeError:  # not a grpc.Call
        return None
