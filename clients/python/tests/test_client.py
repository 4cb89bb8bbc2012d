"""The blocking TaskClient against a live 3-node cluster: every RPC, every error class,
idempotent creates, and retries across a node killed with SIGKILL."""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid

import grpc
import pytest

from taskd_client import (
    ConflictError,
    InvalidArgumentError,
    NotFoundError,
    ReadConsistency,
    Task,
    TaskClient,
    TaskdError,
    TaskOrder,
    TaskPriority,
    TaskStatus,
    UnavailableError,
)

from conftest import eventually, free_ports

UTC = dt.timezone.utc


@pytest.fixture
def client(endpoints):
    with TaskClient(endpoints) as c:
        yield c


def stale_get(client, task_id):
    """A STALE get_task, or None while the node has not applied the create yet."""
    try:
        return client.get_task(task_id, consistency="READ_CONSISTENCY_STALE")
    except NotFoundError:
        return None


def eventually_stale(probe):
    """Polls a STALE read until it has caught up (the probe returns non-None)."""
    return eventually("a STALE read to catch up", probe, deadline=30.0)


def test_create_then_get_returns_every_field(client, label):
    """create_task sends every field; get_task (both consistencies) returns them."""
    deadline = dt.datetime(2030, 1, 31, 17, 0, tzinfo=UTC)
    task = client.create_task(
        title="Write the release notes",
        description="for 0.1",
        status=TaskStatus.TASK_STATUS_IN_PROGRESS,
        priority=TaskPriority.TASK_PRIORITY_HIGH,
        deadline=deadline,
        assignee="ada",
        labels=[label, "docs"],
    )
    assert isinstance(task, Task)
    assert task.id and task.version == 1
    assert task.title == "Write the release notes"
    assert task.description == "for 0.1"
    assert task.status == TaskStatus.TASK_STATUS_IN_PROGRESS
    assert task.priority == TaskPriority.TASK_PRIORITY_HIGH
    assert task.deadline.ToDatetime(tzinfo=UTC) == deadline
    assert task.assignee == "ada"
    assert list(task.labels) == [label, "docs"]
    assert task.HasField("create_time") and task.HasField("update_time")

    assert client.get_task(task.id) == task
    assert client.get_task(task.id, consistency=ReadConsistency.READ_CONSISTENCY_LINEARIZABLE) == task
    # A STALE read may lag behind the write, but only by being NOT_FOUND: once it
    # answers, it answers with the very task that was written.
    assert eventually_stale(lambda: stale_get(client, task.id)) == task


def test_create_defaults_and_naive_deadline_is_utc(client):
    """Unset status means TODO; a naive datetime is taken as UTC."""
    task = client.create_task(title="defaults", deadline=dt.datetime(2031, 5, 1, 12, 30))
    assert task.status == TaskStatus.TASK_STATUS_TODO
    assert task.priority == TaskPriority.TASK_PRIORITY_UNSPECIFIED
    assert task.deadline.ToDatetime(tzinfo=UTC) == dt.datetime(2031, 5, 1, 12, 30, tzinfo=UTC)


def test_same_request_id_returns_the_same_task(client, endpoints):
    """The same request_id twice, even through another node, creates one task."""
    request_id = uuid.uuid4().hex
    first = client.create_task(title="once", request_id=request_id)
    with TaskClient(list(reversed(endpoints))) as other:
        second = other.create_task(title="once", request_id=request_id)
    assert second.id == first.id
    assert second == first


def test_list_follows_pages_and_filters(client, label):
    """list_tasks yields every match across pages (more tasks than page_size), and each
    filter narrows the result."""
    base = dt.datetime(2030, 6, 1, tzinfo=UTC)
    created = []
    for i in range(7):
        created.append(
            client.create_task(
                title=f"list {i}",
                labels=[label] + (["even"] if i % 2 == 0 else []),
                assignee="ada" if i < 3 else "grace",
                status=TaskStatus.TASK_STATUS_DONE if i == 6 else None,
                # Deadlines in reverse creation order, so the two orders differ.
                deadline=base + dt.timedelta(days=10 - i),
            )
        )
    ids = [t.id for t in created]

    everything = list(client.list_tasks(label=label, page_size=2))
    assert [t.id for t in everything] == ids  # creation order is the default

    by_deadline = list(client.list_tasks(label=label, order_by=TaskOrder.TASK_ORDER_DEADLINE, page_size=3))
    assert [t.id for t in by_deadline] == list(reversed(ids))

    assert [t.id for t in client.list_tasks(label=label, assignee="ada")] == ids[:3]
    assert [t.id for t in client.list_tasks(label=label, status=TaskStatus.TASK_STATUS_DONE)] == ids[6:]
    before = base + dt.timedelta(days=6)  # strictly before: tasks 5 (day 5) and 6 (day 4)
    assert [t.id for t in client.list_tasks(label=label, deadline_before=before)] == ids[5:]
    after = base + dt.timedelta(days=8)  # strictly after: tasks 0 (day 10) and 1 (day 9)
    assert [t.id for t in client.list_tasks(label=label, deadline_after=after)] == ids[:2]
    # A STALE list may lag, showing a prefix of the creates (each one whole), never
    # anything else; it catches up to all seven.
    def stale_list():
        stale = list(client.list_tasks(label=label, consistency=ReadConsistency.READ_CONSISTENCY_STALE, page_size=1000))
        assert stale == created[: len(stale)], "a STALE list shows whole, known tasks in order"
        return stale if len(stale) == len(created) else None

    assert eventually_stale(stale_list) == created
    assert list(client.list_tasks(label="no-such-label-" + label)) == []


def test_list_rejects_unknown_filter_before_any_call(client):
    with pytest.raises(TypeError, match="colour"):
        client.list_tasks(colour="red")


def test_update_changes_only_the_given_fields(client, label):
    """The mask is the keyword arguments given; None clears a field; version moves."""
    task = client.create_task(
        title="update me", assignee="ada", labels=[label], deadline=dt.datetime(2030, 1, 1, tzinfo=UTC)
    )
    updated = client.update_task(
        task.id, expected_version=1, status=TaskStatus.TASK_STATUS_IN_PROGRESS, assignee="grace"
    )
    assert updated.version == 2
    assert updated.status == TaskStatus.TASK_STATUS_IN_PROGRESS
    assert updated.assignee == "grace"
    assert updated.title == "update me" and list(updated.labels) == [label]
    assert updated.HasField("deadline")

    cleared = client.update_task(task.id, deadline=None, labels=[label, "x"], title="renamed")
    assert cleared.version == 3
    assert not cleared.HasField("deadline")
    assert list(cleared.labels) == [label, "x"] and cleared.title == "renamed"
    assert client.get_task(task.id) == cleared


def test_update_rejects_unknown_field_before_any_call(client):
    with pytest.raises(TypeError, match="version"):
        client.update_task("whatever", version=3)


def test_delete_then_get_is_not_found(client):
    task = client.create_task(title="delete me")
    assert client.delete_task(task.id, expected_version=1) is None
    with pytest.raises(NotFoundError) as info:
        client.get_task(task.id)
    assert info.value.code == grpc.StatusCode.NOT_FOUND
    assert task.id in info.value.message
    with pytest.raises(NotFoundError):
        client.delete_task(task.id)


def test_not_found_on_update(client):
    with pytest.raises(NotFoundError):
        client.update_task("0190f0f0-0000-7000-8000-000000000000", title="x")


def test_invalid_argument_names_the_fields(client):
    with pytest.raises(InvalidArgumentError) as info:
        client.create_task(title="   ", labels=["has space"])
    error = info.value
    assert isinstance(error, TaskdError)
    assert error.code == grpc.StatusCode.INVALID_ARGUMENT
    fields = [v.field for v in error.field_violations]
    assert "title" in fields, error.field_violations
    assert any(f.startswith("labels") for f in fields), error.field_violations
    assert all(v.description for v in error.field_violations)


def test_version_mismatch_is_conflict_with_current_version(client):
    task = client.create_task(title="conflict")
    client.update_task(task.id, title="v2")
    with pytest.raises(ConflictError) as info:
        client.update_task(task.id, expected_version=1, title="stale")
    assert info.value.code == grpc.StatusCode.ABORTED
    assert info.value.current_version == 2
    assert info.value.expected_version == 1
    with pytest.raises(ConflictError) as info:
        client.delete_task(task.id, expected_version=5)
    assert info.value.current_version == 2
    assert client.get_task(task.id).title == "v2"


def test_all_endpoints_down_is_unavailable():
    """Nothing listens on any endpoint: every attempt fails, then UnavailableError."""
    dead = [f"127.0.0.1:{p}" for p in free_ports(3)]
    with TaskClient(",".join(dead), max_attempts=4, max_backoff=0.2, timeout=2) as client:
        with pytest.raises(UnavailableError) as info:
            client.get_task("x")
        assert info.value.code == grpc.StatusCode.UNAVAILABLE
        assert "4 attempts" in info.value.message
        with pytest.raises(UnavailableError):
            client.create_task(title="nowhere")


def test_timeout_bounds_the_retries():
    """The deadline covers every attempt and pause: many attempts allowed, 1 s given."""
    dead = [f"127.0.0.1:{p}" for p in free_ports(2)]
    with TaskClient(dead, max_attempts=1000, initial_backoff=0.05, max_backoff=0.2, timeout=1) as client:
        started = time.monotonic()
        with pytest.raises(UnavailableError):
            client.list_tasks().__next__()
        assert time.monotonic() - started < 2


def test_endpoints_string_and_list():
    assert TaskClient("a:1, http://b:2,c:3").endpoints == ["a:1", "b:2", "c:3"]
    assert TaskClient(["a:1"]).endpoints == ["a:1"]
    with pytest.raises(ValueError):
        TaskClient("")


def test_retry_across_a_killed_node_never_duplicates(cluster, label):
    """The client's current endpoint is the leader, which is SIGKILLed while creates run:
    every create returns a task or raises a TaskdError; afterwards no title exists twice
    and every returned task is stored."""
    victim = cluster.leader()
    others = [a for i, a in sorted(cluster.addresses.items()) if i != victim]
    client = TaskClient([cluster.addresses[victim], *others])
    assert client.current_endpoint == cluster.addresses[victim]

    n, kill_after = 30, 10
    killed = threading.Event()
    tenth_done = threading.Event()

    def killer():
        tenth_done.wait()
        cluster.kill(victim)
        killed.set()

    thread = threading.Thread(target=killer)
    thread.start()
    returned: dict[str, Task] = {}
    after_kill: list[str] = []
    failures: list[TaskdError] = []
    try:
        for i in range(n):
            title = f"{label} create {i}"
            started_after_kill = killed.is_set()
            try:
                returned[title] = client.create_task(title=title, labels=[label])
                if started_after_kill:
                    after_kill.append(title)
            except TaskdError as e:  # allowed; anything else fails the test
                failures.append(e)
            if i + 1 == kill_after:
                tenth_done.set()  # the kill lands while the next creates are in flight
    finally:
        tenth_done.set()
        thread.join()
    assert killed.is_set()
    print(f"node {victim} killed: {len(returned)} creates returned, {len(failures)} raised {failures}")
    assert client.current_endpoint != cluster.addresses[victim], "the client moved on"
    # Work went on after the fault: creates that started once the node was dead were
    # acknowledged (by the new leader), not only the ones before the kill.
    assert len(after_kill) >= (n - kill_after) // 2, (after_kill, failures)

    try:
        stored = list(client.list_tasks(label=label, page_size=7))
        titles = [t.title for t in stored]
        assert len(titles) == len(set(titles)), f"a title stored twice: {sorted(titles)}"
        stored_ids = {t.id for t in stored}
        for title, task in returned.items():
            assert task.id in stored_ids, f"{title} was returned but is not stored"
        assert len(stored) <= n
    finally:
        client.close()
        cluster.restart(victim)


def test_every_write_carries_a_request_id_and_unknown_outcomes_are_retried():
    """Updates and deletes get a fresh request_id (fixed for all attempts), so UNKNOWN with
    reason OUTCOME_UNKNOWN may be retried; a bare UNKNOWN is an answer, not retried."""
    from google.protobuf import any_pb2
    from google.rpc import error_details_pb2, status_pb2

    from taskd_client import _common

    assert _common.update_request("t", 0, {"title": "x"}).request_id
    assert _common.delete_request("t", 0).request_id
    assert _common.update_request("t", 0, {"title": "x"}).request_id != _common.update_request(
        "t", 0, {"title": "x"}
    ).request_id

    detail = any_pb2.Any()
    detail.Pack(error_details_pb2.ErrorInfo(reason="OUTCOME_UNKNOWN", domain="taskd.v1"))
    unknown = status_pb2.Status(code=2, message="may have applied", details=[detail])
    assert _common.retryable(grpc.StatusCode.UNKNOWN, unknown)
    assert not _common.retryable(grpc.StatusCode.UNKNOWN, status_pb2.Status(code=2))
    assert not _common.retryable(grpc.StatusCode.DEADLINE_EXCEEDED, unknown)
    assert _common.retryable(grpc.StatusCode.UNAVAILABLE)
