"""PATCH /api/v1/tasks/{sdk_app_id}/{task_id} and `trtc-monitor tasks update`: labels and the
interval change through the store first, then memory, then the poll schedule, at once."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

import monitor.daemon as daemon_module
from monitor.models import TaskKey
from monitor.simulator import Life, Simulator
from monitor.store import SqliteStore
from tests.conftest import API_TOKEN, DaemonFactory, RunningDaemon
from tests.support import FlakyStore, wait_for_async
from tests.test_cli import acli

APP = 1400000001


@pytest.fixture
def stores(monkeypatch: pytest.MonkeyPatch) -> list[FlakyStore]:
    """Daemons started in the test get a real SQLite store whose writes can be made to fail."""
    made: list[FlakyStore] = []

    def factory(config: Any, redis_url: Any = None) -> FlakyStore:
        store = FlakyStore(SqliteStore(config.path))
        made.append(store)
        return store

    monkeypatch.setattr(daemon_module, "new_store", factory)
    return made


@pytest.fixture
async def running(
    simulator: Simulator, make_daemon: DaemonFactory, stores: list[FlakyStore]
) -> RunningDaemon:
    return await make_daemon(simulator.url)


async def call(
    running: RunningDaemon, method: str, path: str, body: Any = None, *, token: bool = True
) -> tuple[int, Any]:
    async with running.session.request(
        method,
        f"{running.url}{path}",
        json=body,
        headers=running.auth() if token else {},
    ) as answer:
        return answer.status, await answer.json()


def task_path(task_id: str) -> str:
    return f"/api/v1/tasks/{APP}/{task_id}"


Register = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def register(running: RunningDaemon, simulator: Simulator) -> Register:
    """Register a task the simulator keeps idle for ten minutes: it stays scheduled."""

    async def add(task_id: str, **extra: Any) -> dict[str, Any]:
        simulator.add_task(APP, task_id, life=Life(idle=600))
        return await register_in(running, task_id, **extra)

    return add


async def register_in(running: RunningDaemon, task_id: str, **extra: Any) -> dict[str, Any]:
    answer = await running.register(APP, task_id, labels={"room": "r1"}, **extra)
    assert answer.status == 201, await answer.text()
    body: dict[str, Any] = await answer.json()
    return body


def polls_of(simulator: Simulator, task_id: str) -> int:
    return sum(
        1 for a in simulator.arrivals.select("DescribeCloudRecording") if a.task_id == task_id
    )


async def polled(simulator: Simulator, task_id: str, times: int, what: str) -> None:
    async def enough() -> bool | None:
        return polls_of(simulator, task_id) >= times or None

    await wait_for_async(enough, timeout=15, what=what)


class TestLabels:
    async def test_labels_are_replaced_whole_and_kept_across_a_restart(
        self,
        running: RunningDaemon,
        register: Register,
        make_daemon: DaemonFactory,
        simulator: Simulator,
    ) -> None:
        await register("t-1")
        status, body = await call(
            running, "PATCH", task_path("t-1"), {"labels": {"customer": "acme", "tier": ""}}
        )
        assert status == 200, body
        assert body["labels"] == {"customer": "acme", "tier": ""}
        assert (await call(running, "GET", task_path("t-1")))[1]["labels"] == body["labels"]
        db = running.daemon.config.storage.path
        await running.stop()
        again = await make_daemon(simulator.url, db=Path(db))
        assert (await call(again, "GET", task_path("t-1")))[1]["labels"] == {
            "customer": "acme",
            "tier": "",
        }

    async def test_an_empty_object_removes_every_label_and_interval_stays(
        self, running: RunningDaemon, register: Register
    ) -> None:
        await register("t-1", interval="30s")
        status, body = await call(running, "PATCH", task_path("t-1"), {"labels": {}})
        assert status == 200, body
        assert (body["labels"], body["interval_seconds"]) == ({}, 30.0)


class TestInterval:
    async def test_the_poll_schedule_follows_a_new_interval_at_once(
        self, running: RunningDaemon, register: Register, simulator: Simulator
    ) -> None:
        task_id = "slow-1"
        await register(task_id, interval="1h")
        await polled(simulator, task_id, 1, "the first poll")
        before = polls_of(simulator, task_id)
        scheduler = running.daemon.poller.scheduler
        key = TaskKey(APP, task_id)
        assert scheduler.interval_of(key) == 3600.0

        status, body = await call(running, "PATCH", task_path(task_id), {"interval": 1})
        assert status == 200, body
        assert body["interval_seconds"] == 1.0
        assert scheduler.interval_of(key) == 1.0
        # Polled again within seconds, not an hour after the first poll.
        await polled(simulator, task_id, before + 2, "polls at the new interval")

    async def test_null_goes_back_to_the_configured_interval(
        self, running: RunningDaemon, register: Register
    ) -> None:
        await register("t-1", interval="1h")
        status, body = await call(running, "PATCH", task_path("t-1"), {"interval": None})
        assert status == 200, body
        assert body["interval_seconds"] is None
        assert running.daemon.poller.scheduler.interval_of(TaskKey(APP, "t-1")) == 1.0

    @pytest.mark.parametrize(("text", "seconds"), [("90s", 90.0), ("1h30m", 5400.0), (15, 15.0)])
    async def test_the_interval_is_taken_as_at_registration(
        self, running: RunningDaemon, register: Register, text: Any, seconds: float
    ) -> None:
        await register("t-1")
        status, body = await call(running, "PATCH", task_path("t-1"), {"interval": text})
        assert status == 200, body
        assert body["interval_seconds"] == seconds


class TestRefusals:
    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"colour": "red"}, "colour"),
            ({"region": "ap-mumbai"}, "region"),
            ({"labels": {"account": "x"}}, "labels.account"),
            ({"labels": {"__x": "y"}}, "labels.__x"),
            ({"labels": {"room": 1}}, "labels.room"),
            ({"labels": None}, "labels"),
            ({"interval": "100ms"}, "interval"),
            ({"interval": 0.5}, "interval"),
            ({"interval": "25h"}, "interval"),
            ({"interval": True}, "interval"),
        ],
    )
    async def test_bad_fields_are_422_naming_the_field_and_change_nothing(
        self, running: RunningDaemon, register: Register, body: dict[str, Any], field: str
    ) -> None:
        await register("t-1", interval="30s")
        status, answer = await call(running, "PATCH", task_path("t-1"), body)
        assert status == 422, answer
        assert answer["error"]["code"] == "invalid"
        assert answer["error"]["message"].startswith(f"{field}:")
        task = (await call(running, "GET", task_path("t-1")))[1]
        assert (task["labels"], task["interval_seconds"]) == ({"room": "r1"}, 30.0)

    async def test_a_body_that_is_not_an_object_is_400(
        self, running: RunningDaemon, register: Register
    ) -> None:
        await register("t-1")
        assert (await call(running, "PATCH", task_path("t-1"), ["labels"]))[0] == 400

    async def test_without_the_token_it_is_401(
        self, running: RunningDaemon, register: Register
    ) -> None:
        await register("t-1")
        status, _ = await call(running, "PATCH", task_path("t-1"), {"labels": {}}, token=False)
        assert status == 401

    async def test_an_unknown_task_is_404(self, running: RunningDaemon) -> None:
        status, body = await call(running, "PATCH", task_path("nope"), {"labels": {}})
        assert (status, body["error"]["code"]) == (404, "not_found")

    async def test_a_removed_task_is_409_removed(
        self, running: RunningDaemon, register: Register
    ) -> None:
        await register("t-1")
        assert (await call(running, "DELETE", task_path("t-1")))[0] == 200
        status, body = await call(running, "PATCH", task_path("t-1"), {"labels": {}})
        assert (status, body["error"]["code"]) == (409, "removed")
        assert (await call(running, "GET", task_path("t-1")))[1]["labels"] == {"room": "r1"}

    async def test_a_failed_store_write_is_503_and_changes_nothing(
        self, running: RunningDaemon, register: Register, stores: list[FlakyStore]
    ) -> None:
        await register("t-1", interval="30s")
        key = TaskKey(APP, "t-1")
        stores[0].armed.add("save_task")
        status, body = await call(
            running, "PATCH", task_path("t-1"), {"labels": {"room": "r2"}, "interval": 5}
        )
        assert status == 503, body
        assert body["error"]["code"] == "store_unavailable"
        assert stores[0].failures["save_task"] == 1
        task = (await call(running, "GET", task_path("t-1")))[1]
        assert (task["labels"], task["interval_seconds"]) == ({"room": "r1"}, 30.0)
        assert running.daemon.poller.scheduler.interval_of(key) == 30.0
        stored = await stores[0].inner.load_task(key)
        assert stored is not None
        assert stored.labels == {"room": "r1"}

        stores[0].armed.clear()
        status, body = await call(running, "PATCH", task_path("t-1"), {"interval": 5})
        assert status == 200, body
        assert running.daemon.poller.scheduler.interval_of(key) == 5.0


class TestCli:
    async def test_tasks_update_changes_labels_and_interval(
        self, running: RunningDaemon, register: Register
    ) -> None:
        await register("t-1")
        env = {"TRTC_MONITOR_API_TOKEN": API_TOKEN}
        result = await acli(
            "tasks", "--url", running.url, "update", str(APP), "t-1",
            "--label", "room=r2", "--label", "customer=a=b", "--interval", "1m30s",
            env=env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        task = (await call(running, "GET", task_path("t-1")))[1]
        assert task["labels"] == {"room": "r2", "customer": "a=b"}
        assert task["interval_seconds"] == 90.0

        result = await acli(
            "tasks", "--url", running.url, "update", str(APP), "t-1", "--clear-labels",
            "--interval", "default", env=env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        task = (await call(running, "GET", task_path("t-1")))[1]
        assert (task["labels"], task["interval_seconds"]) == ({}, None)

    async def test_tasks_update_refuses_bad_input_and_reports_api_errors(
        self, running: RunningDaemon
    ) -> None:
        env = {"TRTC_MONITOR_API_TOKEN": API_TOKEN}
        base = ("tasks", "--url", running.url, "update", str(APP))
        nothing = await acli(*base, "t-1", env=env)
        assert nothing.returncode == 2
        assert "nothing to change" in nothing.stderr
        bad = await acli(*base, "t-1", "--interval", "100ms", env=env)
        assert bad.returncode == 2
        assert "interval" in bad.stderr
        missing = await acli(*base, "nope", "--label", "a=b", env=env)
        assert missing.returncode == 1
        assert "HTTP 404" in missing.stderr
