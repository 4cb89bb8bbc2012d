"""The asyncio client against the live cluster: every method, errors, paging."""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid

import grpc
import pytest

from taskd_client import (
    AsyncTaskClient,
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    Task,
    TaskOrder,
    TaskStatus,
    UnavailableError,
)

from conftest import free_ports

UTC = dt.timezone.utc
pytestmark = pytest.mark.asyncio


async def test_every_method(endpoints, label):
    async with AsyncTaskClient(",".join(endpoints)) as client:
        deadline = dt.datetime(2030, 3, 1, tzinfo=UTC)
        task = await client.create_task(
            title="async", labels=[label], deadline=deadline, priority="TASK_PRIORITY_LOW"
        )
        assert isinstance(task, Task) and task.version == 1
        assert task.deadline.ToDatetime(tzinfo=UTC) == deadline

        assert await client.get_task(task.id) == task
        # STALE may lag (NOT_FOUND) but never shows anything but the written task.
        for _ in range(600):
            try:
                stale = await client.get_task(task.id, consistency="READ_CONSISTENCY_STALE")
                break
            except NotFoundError:
                await asyncio.sleep(0.05)
        else:
            raise AssertionError("a STALE get did not catch up in 30 s")
        assert stale == task

        updated = await client.update_task(
            task.id, expected_version=1, status=TaskStatus.TASK_STATUS_DONE, deadline=None
        )
        assert updated.version == 2 and updated.status == TaskStatus.TASK_STATUS_DONE
        assert not updated.HasField("deadline")

        listed = [t async for t in client.list_tasks(label=label)]
        assert listed == [updated]

        assert await client.delete_task(task.id, expected_version=2) is None
        with pytest.raises(NotFoundError):
            await client.get_task(task.id)


async def test_list_pages(endpoints, label):
    async with AsyncTaskClient(endpoints) as client:
        ids = [(await client.create_task(title=f"page {i}", labels=[label])).id for i in range(5)]
        listed = [t.id async for t in client.list_tasks(label=label, page_size=2, order_by=TaskOrder.TASK_ORDER_CREATE_TIME)]
        assert listed == ids
        with pytest.raises(TypeError):
            client.list_tasks(nope=1)


async def test_request_id_is_idempotent(endpoints):
    async with AsyncTaskClient(endpoints) as client:
        request_id = uuid.uuid4().hex
        first = await client.create_task(title="async once", request_id=request_id)
        second = await client.create_task(title="async once", request_id=request_id)
        assert first == second


async def test_errors(endpoints):
    async with AsyncTaskClient(endpoints) as client:
        with pytest.raises(InvalidArgumentError) as info:
            await client.create_task(title="")
        assert [v.field for v in info.value.field_violations] == ["title"]

        task = await client.create_task(title="async conflict")
        with pytest.raises(ConflictError) as conflict:
            await client.update_task(task.id, expected_version=7, title="x")
        assert conflict.value.current_version == 1
        assert conflict.value.code == grpc.StatusCode.ABORTED

        with pytest.raises(NotFoundError):
            await client.delete_task("0190f0f0-0000-7000-8000-000000000000")
        with pytest.raises(TypeError):
            await client.update_task(task.id, colour="red")


async def test_all_endpoints_down_is_unavailable():
    dead = [f"127.0.0.1:{p}" for p in free_ports(2)]
    async with AsyncTaskClient(dead, max_attempts=3, max_backoff=0.1, timeout=2) as client:
        with pytest.raises(UnavailableError) as info:
            await client.get_task("x")
        assert "3 attempts" in info.value.message
