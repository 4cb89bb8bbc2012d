"""A live 3-node taskd cluster of real ``taskd serve`` processes, shared by the session.

The binary is ``$TASKD_BIN``, else ``<repo>/target/debug/taskd`` (``cargo build --bin
taskd``). Each node has its own SQLite data directory under pytest's temporary directory
and writes its stderr to a file there; a test that fails prints the tail of every file.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path
from typing import Callable, Optional, TypeVar

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from taskd_client import pb, pb_grpc

REPO = Path(__file__).resolve().parents[3]
STARTUP_DEADLINE = 60.0  # seconds: a debug build elects a leader in a few
T = TypeVar("T")


def eventually(what: str, probe: Callable[[], Optional[T]], deadline: float = STARTUP_DEADLINE) -> T:
    """Polls ``probe`` until it returns something other than None; fails after ``deadline``."""
    end = time.monotonic() + deadline
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"timed out after {deadline:.0f} s waiting for {what}")
        time.sleep(0.05)


def free_ports(n: int) -> list[int]:
    """``n`` loopback ports that were free a moment ago (bound to port 0, then closed)."""
    sockets = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def taskd_bin() -> Path:
    path = Path(os.environ.get("TASKD_BIN") or REPO / "target" / "debug" / "taskd")
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(
            f"taskd binary not found at {path}: build it with `cargo build --bin taskd` "
            "or point TASKD_BIN at one",
            pytrace=False,
        )
    return path


class Cluster:
    """Three ``taskd serve`` processes; ``kill`` (SIGKILL) and ``restart`` one at will."""

    def __init__(self, binary: Path, base_dir: Path) -> None:
        self.binary = binary
        self.base_dir = base_dir
        self.addresses: dict[int, str] = {
            node_id: f"127.0.0.1:{port}" for node_id, port in zip((1, 2, 3), free_ports(3))
        }
        self.processes: dict[int, subprocess.Popen] = {}

    @property
    def endpoints(self) -> list[str]:
        return [self.addresses[i] for i in sorted(self.addresses)]

    def stderr_path(self, node_id: int) -> Path:
        return self.base_dir / f"node{node_id}.stderr"

    def start(self, node_id: int) -> None:
        initial_cluster = ",".join(f"{i}={a}" for i, a in sorted(self.addresses.items()))
        args = [
            str(self.binary), "serve",
            "--node-id", str(node_id),
            "--listen", self.addresses[node_id],
            "--data-dir", str(self.base_dir / f"node{node_id}"),
            "--initial-cluster", initial_cluster,
        ]  # fmt: skip
        # Only the flags count: no TASKD_* variable of the caller's environment.
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKD_")}
        env["NO_COLOR"] = "1"
        with open(self.stderr_path(node_id), "ab") as stderr:
            self.processes[node_id] = subprocess.Popen(
                args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=env
            )

    def kill(self, node_id: int) -> None:
        """SIGKILL, then reap."""
        process = self.processes[node_id]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=30)

    def restart(self, node_id: int) -> None:
        """Starts a killed node again from its own data directory and waits until it serves."""
        assert self.processes[node_id].poll() is not None, f"node {node_id} still runs"
        self.start(node_id)
        self.wait_serving()

    def is_serving(self, address: str) -> bool:
        with grpc.insecure_channel(address) as channel:
            try:
                response = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=1
                )
            except grpc.RpcError:
                return False
        return response.status == health_pb2.HealthCheckResponse.SERVING

    def cluster_status(self, node_id: int) -> Optional[pb.GetClusterStatusResponse]:
        with grpc.insecure_channel(self.addresses[node_id]) as channel:
            try:
                return pb_grpc.RaftServiceStub(channel).GetClusterStatus(
                    pb.GetClusterStatusRequest(), timeout=1
                )
            except grpc.RpcError:
                return None

    def wait_serving(self) -> None:
        """Until every running node is SERVING and they all name the same leader."""
        running = [i for i, p in self.processes.items() if p.poll() is None]

        def probe() -> Optional[bool]:
            for node_id, process in self.processes.items():
                if node_id in running and process.poll() is not None:
                    raise AssertionError(f"node {node_id} exited with {process.returncode}\n{self.tails()}")
            if not all(self.is_serving(self.addresses[i]) for i in running):
                return None
            return self.leader_among(running) is not None or None

        eventually(f"nodes {running} SERVING with one leader", probe)

    def leader_among(self, node_ids: list[int]) -> Optional[int]:
        leaders = set()
        for node_id in node_ids:
            status = self.cluster_status(node_id)
            if status is None:
                return None
            leaders.add(status.leader_id)
        leader = leaders.pop() if len(leaders) == 1 else 0
        return leader if leader in node_ids else None

    def leader(self) -> int:
        running = [i for i, p in self.processes.items() if p.poll() is None]
        return eventually("one leader", lambda: self.leader_among(running))

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                process.kill()
                process.wait(timeout=30)

    def tails(self, lines: int = 30) -> str:
        out = []
        for node_id in sorted(self.addresses):
            path = self.stderr_path(node_id)
            text = path.read_text(errors="replace").splitlines() if path.exists() else []
            out.append(f"---- node {node_id} stderr ({path}) ----\n" + "\n".join(text[-lines:]))
        return "\n".join(out)


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory):
    binary = taskd_bin()
    c = Cluster(binary, tmp_path_factory.mktemp("taskd"))
    try:
        for node_id in sorted(c.addresses):
            c.start(node_id)
        c.wait_serving()
        yield c
    finally:
        c.stop_all()


@pytest.fixture(scope="session")
def endpoints(cluster: Cluster) -> list[str]:
    return cluster.endpoints


@pytest.fixture
def label() -> str:
    """A label no other test uses: list filters on it see only this test's tasks."""
    return "t-" + uuid.uuid4().hex[:12]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test that used the cluster shows the tail of every node's stderr."""
    outcome = yield
    report = outcome.get_result()
    if report.when == "call" and report.failed and "cluster" in getattr(item, "fixturenames", ()):
        cluster = item.funcargs.get("cluster")
        if cluster is not None:
            report.sections.append(("taskd nodes", cluster.tails()))
