"""The asyncio client, on ``grpc.aio``: :class:`TaskClient`'s methods as coroutines.

Request building and retry rules are shared with the blocking client (``_common``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any, Optional, Union

import grpc
import grpc.aio

from . import _common
from ._common import EnumLike, RetryPolicy, TimeLike
from ._errors import error_for, status_from_trailers
from ._proto.taskd.v1 import taskd_pb2 as pb
from ._proto.taskd.v1 import taskd_pb2_grpc as pb_grpc


class AsyncTaskClient:
    """:class:`taskd_client.TaskClient` for asyncio: the same arguments, the same retries,
    every method a coroutine except :meth:`list_tasks`, an async iterator
    (``async for task in client.list_tasks(...)``).

    Create it inside the event loop that uses it; ``async with`` it, or ``await close()``.
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
                grpc.aio.insecure_channel(e, options=_common.CHANNEL_OPTIONS) for e in self._endpoints
            ]
        else:
            self._channels = [
                grpc.aio.secure_channel(e, connection.credentials, options=_common.CHANNEL_OPTIONS)
                for e in self._endpoints
            ]
        self._stubs = [pb_grpc.TaskServiceStub(c) for c in self._channels]
        self._current = 0

    # ---- the API --------------------------------------------------------------------

    async def create_task(
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
        """See :meth:`TaskClient.create_task`."""
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
        return (await self._call("CreateTask", request)).task

    async def get_task(self, id: str, *, consistency: Optional[EnumLike] = None) -> pb.Task:
        """See :meth:`TaskClient.get_task`."""
        return (await self._call("GetTask", _common.get_request(id, consistency))).task

    def list_tasks(self, **filters: Any) -> AsyncIterator[pb.Task]:
        """See :meth:`TaskClient.list_tasks`; iterate with ``async for``. An unknown filter
        raises TypeError at once."""
        first = _common.list_request(filters)
        return self._pages(first)

    async def update_task(self, id: str, *, expected_version: int = 0, **fields: Any) -> pb.Task:
        """See :meth:`TaskClient.update_task`."""
        request = _common.update_request(id, expected_version, fields)
        return (await self._call("UpdateTask", request)).task

    async def delete_task(self, id: str, *, expected_version: int = 0) -> None:
        """See :meth:`TaskClient.delete_task`."""
        await self._call("DeleteTask", _common.delete_request(id, expected_version))

    # ---- plumbing -------------------------------------------------------------------

    @property
    def endpoints(self) -> list[str]:
        return list(self._endpoints)

    @property
    def current_endpoint(self) -> str:
        """The endpoint the next call goes to first."""
        return self._endpoints[self._current]

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    async def __aenter__(self) -> "AsyncTaskClient":
        return self

    async def __aexit__(self, *exc_info: Any) -> None:
        await self.close()

    async def _pages(self, request: pb.ListTasksRequest) -> AsyncIterator[pb.Task]:
        while True:
            response = await self._call("ListTasks", request)
            for task in response.tasks:
                yield task
            if not response.next_page_token:
                return
            request.page_token = response.next_page_token

    def _rotate_from(self, index: int) -> None:
        # One event loop thread: no lock; only the first failure on an endpoint moves on.
        if self._current == index:
            self._current = (index + 1) % len(self._endpoints)

    async def _call(self, method: str, request: Any) -> Any:
        attempts = _common.Attempts(self._policy, self._timeout)
        while True:
            index = self._current
            timeout = attempts.start()
            try:
                return await getattr(self._stubs[index], method)(request, timeout=timeout, metadata=self._metadata)
            except grpc.aio.AioRpcError as e:
                code, message = e.code(), e.details() or ""
                if not _common.retryable(code, status_from_trailers(e.trailing_metadata())):
                    raise error_for(code, message, status_from_trailers(e.trailing_metadata())) from e
                self._rotate_from(index)
                pause = attempts.pause()
                if pause is None:
                    message = attempts.gave_up(self._endpoints[index], message)
                    raise error_for(code, message, status_from_trailers(e.trailing_metadata())) from e
                await asyncio.sleep(pause)
