"""Helpers for tests that run real processes: free ports, waiting, Prometheus, Alertmanager."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import pytest

from monitor.models import Status, Task
from monitor.store import SqliteStore, StoreError

T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def require_binary(name: str) -> str:
    """The path of a real tool; in CI a missing tool fails the test instead of skipping it."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed; `make test` installs it (Debian package)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


def wait_for(
    probe: Callable[[], T | None], timeout: float = 15.0, interval: float = 0.1, what: str = ""
) -> T:
    """Poll ``probe`` until it returns something other than None/False; fail after timeout."""
    deadline = time.monotonic() + timeout
    last_error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
        except Exception as exc:  # the service may still be starting
            last_error = exc
            value = None
        if value is not None and value is not False:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out waiting for {what or probe}: last error {last_error!r}")


def http_json(url: str, method: str = "GET", body: Any = None, token: str | None = None) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method=method)
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as answer:
        return json.loads(answer.read())


def http_status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            status: int = answer.status
            return status
    except urllib.error.HTTPError as exc:
        return exc.code


@dataclass
class Proc:
    process: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@contextmanager
def run_process(
    argv: list[str], url: str, log_path: Path, ready_path: str, env: dict[str, str] | None = None
) -> Iterator[Proc]:
    """Start a server process, wait until ``url + ready_path`` answers 200, stop it after."""
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            argv, stdout=log_file, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        proc = Proc(process, url, log_path)
        try:
            wait_for(
                lambda: process.poll() is None and http_status(url + ready_path) == 200,
                timeout=30,
                what=f"{argv[0]} at {url}{ready_path}; log:\n{log_path}",
            )
            yield proc
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()


@contextmanager
def prometheus(tmp: Path, target: str, rule_files: Sequence[Path] = ()) -> Iterator[Proc]:
    """A real Prometheus scraping ``target`` (host:port) every second."""
    binary = require_binary("prometheus")
    port = free_port()
    config = tmp / "prometheus.yml"
    rules = "".join(f"\n  - {p}" for p in rule_files)
    config.write_text(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
        + (f"rule_files:{rules}\n" if rule_files else "")
        + "scrape_configs:\n  - job_name: trtc-monitor\n"
        f"    static_configs:\n      - targets: ['{target}']\n"
    )
    (tmp / "tsdb").mkdir(exist_ok=True)
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.tsdb.path={tmp / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with run_process(argv, f"http://127.0.0.1:{port}", tmp / "prometheus.log", "/-/ready") as p:
        yield p


def promql(base: str, query: str) -> list[dict[str, Any]]:
    from urllib.parse import quote

    answer = http_json(f"{base}/api/v1/query?query={quote(query)}")
    assert answer["status"] == "success", answer
    result: list[dict[str, Any]] = answer["data"]["result"]
    return result


@contextmanager
def alertmanager(tmp: Path, config_text: str | None = None) -> Iterator[Proc]:
    """A real Alertmanager with a do-nothing route, on a free loopback port."""
    binary = require_binary("prometheus-alertmanager")
    port = free_port()
    config = tmp / "alertmanager.yml"
    config.write_text(
        config_text
        or "route:\n  receiver: blackhole\n  group_wait: 1s\n  group_interval: 1s\n"
        "receivers:\n  - name: blackhole\n"
    )
    argv = [
        binary,
        f"--config.file={config}",
        f"--storage.path={tmp / 'am-data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    with run_process(argv, f"http://127.0.0.1:{port}", tmp / "alertmanager.log", "/-/ready") as p:
        yield p


PYTHON = sys.executable


async def wait_for_async(
    probe: Callable[[], Awaitable[T | None]],
    timeout: float = 15.0,
    interval: float = 0.1,
    what: str = "",
) -> T:
    """``wait_for`` for coroutine probes, without blocking the event loop."""
    import asyncio

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await probe()
        if value is not None and value is not False:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}")


# --------------------------------------------------------------------------- tasks and time

# The wall-clock start of tests on a manual clock, and the SdkAppId their tasks belong to.
T0 = 1_700_000_000.0
APP = 1400000001


class ManualClock:
    """A clock that says ``now`` until a test moves it (``clock.now = ...``)."""

    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_task(task_id: str = "t-1", status: Status = Status.IN_PROGRESS, **fields: Any) -> Task:
    """A task of ``APP`` in ap-guangzhou, registered, in its status and last observed at
    ``T0``, seen running (a status answer came); ``fields`` override any of that."""
    defaults: dict[str, Any] = {
        "sdk_app_id": APP,
        "region": "ap-guangzhou",
        "account": "default",
        "labels": {"room": "r-42"},
        "registered_at": T0,
        "status_since": T0,
        "last_success_at": T0,
        # Seen running: a status answer came (RecordingTaskNotFound is for tasks never seen).
        "answer_status": Status.IN_PROGRESS,
    }
    defaults.update(fields)
    return Task(task_id=task_id, status=status, **defaults)


class FlakyStore:
    """The real SQLite store, except that armed methods raise ``StoreError`` while armed.

    A test double of the store protocol: every call goes through to the real store unless its
    method is armed, so what is stored is exactly what a real daemon would have stored.
    """

    def __init__(self, inner: SqliteStore) -> None:
        self.inner = inner
        self.armed: set[str] = set()
        self.failures: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        method = getattr(self.inner, name)
        if not callable(method) or name.startswith("_"):
            return method

        async def call(*args: Any, **kwargs: Any) -> Any:
            if name in self.armed:
                self.failures[name] = self.failures.get(name, 0) + 1
                raise StoreError(f"store {self.inner.path}: disk I/O error (test)")
            return await method(*args, **kwargs)

        return call


def use_flaky_stores(monkeypatch: pytest.MonkeyPatch) -> list[FlakyStore]:
    """Daemons started from now on in this test get a FlakyStore around their SQLite store."""
    made: list[FlakyStore] = []

    def factory(config: Any, redis_url: Any = None) -> FlakyStore:
        store = FlakyStore(SqliteStore(config.path))
        made.append(store)
        return store

    monkeypatch.setattr("monitor.daemon.new_store", factory)
    return made
