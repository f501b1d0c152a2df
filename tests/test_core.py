"""The core's promises: the order of effects, the order of observations, serialised reloads,
clear store failures, replayed callbacks, one validator, and the shape of the import graph."""

from __future__ import annotations

import ast
import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import monitor.daemon as daemon_module
import monitor.reload as reload_module
from monitor.alerts import TASK_ERROR, TASK_EXITED
from monitor.config import ConfigError, check_config, load_config, parse_config, resolve_secrets
from monitor.daemon import Daemon
from monitor.events import EventBus
from monitor.http.server import start_server
from monitor.models import Outcome, Source, Status, Task, TaskKey, Transition
from monitor.poller import ACCOUNT_GONE
from monitor.registry import TaskRegistry
from monitor.simulator import (
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
    Fault,
    FaultKind,
    Life,
    Simulator,
    sign,
)
from monitor.simulator.arrivals import max_in_window
from monitor.simulator.callbacks import build_body
from monitor.store import SqliteStore, StoreError
from monitor.taskspec import TaskSpec, ValidationError, validate_spec
from monitor.tracker import Tracker
from monitor.trtc.client import CallResult
from tests.conftest import API_TOKEN, DaemonFactory, RunningDaemon, daemon_config_text
from tests.support import free_port, wait_for_async
from tests.test_alerts_e2e import alerts_yaml, notices, register, task_of, webhook
from tests.test_process import daemon_env, daemon_process, until_ready, write_config
from tests.test_receivers import Sink, serving

APP = 1400000001
CALLBACK_KEY = "cbKey0123456789abcdef"
LIVE = Life(idle=0.0, in_progress=None, exited=30)
CALLBACKS = "callbacks:\n  key_env: TEST_CALLBACK_KEY\n"
MONITOR = Path(__file__).resolve().parents[1] / "monitor"


# ------------------------------------------------------------------------------ a failing store


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


@pytest.fixture
def flaky(monkeypatch: pytest.MonkeyPatch) -> list[FlakyStore]:
    """Daemons started in this test get a FlakyStore around their SQLite store."""
    made: list[FlakyStore] = []

    def factory(config: Any, redis_url: Any = None) -> FlakyStore:
        store = FlakyStore(SqliteStore(config.path))
        made.append(store)
        return store

    monkeypatch.setattr(daemon_module, "new_store", factory)
    monkeypatch.setenv("TEST_CALLBACK_KEY", CALLBACK_KEY)
    return made


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    async with serving(Sink()) as s:
        yield s


async def stored_task(store: FlakyStore, task_id: str) -> Task:
    [task] = [t for t in await store.inner.load_tasks() if t.task_id == task_id]
    return task


async def stored_transitions(store: FlakyStore, task_id: str) -> list[Transition]:
    return await store.inner.transitions(TaskKey(APP, task_id), newest_first=False)


async def reach(running: RunningDaemon, task_id: str, status: Status) -> None:
    async def reached() -> bool:
        return task_of(running, task_id).status is status

    await wait_for_async(reached, timeout=15, what=f"{task_id} to reach {status.value}")


async def post_callback(running: RunningDaemon, raw: bytes) -> tuple[int, Any]:
    headers = {
        "Content-Type": "application/json",
        "Sign": sign(CALLBACK_KEY, raw),
        "SdkAppId": str(APP),
    }
    async with running.session.post(
        f"{running.url}/callbacks/trtc", data=raw, headers=headers
    ) as r:
        return r.status, await r.json()


def stop_body(task_id: str, *, at: float | None = None, sent: float | None = None) -> bytes:
    at = time.time() if at is None else at
    return build_body(
        302,
        room_id="room-1",
        user_id="recorder_1",
        task_id=task_id,
        payload={"LeaveCode": 3},
        event_wall=at,
        callback_wall=at if sent is None else sent,
    )


# ------------------------------------------------------------------------------ order of effects


class TestAFailedStoreWriteChangesNothing:
    async def test_a_poll_transition_not_stored_is_not_applied_alerted_or_lost(
        self,
        simulator: Simulator,
        make_daemon: DaemonFactory,
        flaky: list[FlakyStore],
        sink: Sink,
    ) -> None:
        running = await make_daemon(simulator.url, alerts_yaml(webhook(sink.url)))
        [store] = flaky
        task_id = simulator.add_task(APP, life=LIVE)
        await register(running, task_id)
        await reach(running, task_id, Status.IN_PROGRESS)

        store.armed.add("record_transition")
        assert simulator.exit_task(APP, task_id, leave_code=3)

        async def tried() -> bool:
            return store.failures.get("record_transition", 0) >= 2  # two polls, both refused

        await wait_for_async(tried, timeout=15, what="polls that cannot store the exit")
        assert task_of(running, task_id).status is Status.IN_PROGRESS
        assert (await stored_task(store, task_id)).status is Status.IN_PROGRESS
        await running.daemon.sweep_alerts()
        assert notices(sink, TASK_EXITED) == []
        assert [r for r in running.daemon.alerts.firing() if r.alertname == TASK_EXITED] == []

        store.armed.clear()
        await reach(running, task_id, Status.EXITED)
        assert (await stored_task(store, task_id)).status is Status.EXITED

        async def alerted() -> bool:
            return bool(notices(sink, TASK_EXITED, task_id, "firing"))

        await wait_for_async(alerted, timeout=15, what="the exit alert")
        await running.daemon.sweep_alerts()
        history = [(t.from_status, t.to_status) for t in await stored_transitions(store, task_id)]
        assert history == [
            (Status.PENDING, Status.IN_PROGRESS),
            (Status.IN_PROGRESS, Status.EXITED),
        ]
        assert len(notices(sink, TASK_EXITED, task_id, "firing")) == 1

    async def test_a_callback_exit_not_stored_is_a_503_and_its_redelivery_applies_once(
        self,
        simulator: Simulator,
        make_daemon: DaemonFactory,
        flaky: list[FlakyStore],
        sink: Sink,
    ) -> None:
        running = await make_daemon(simulator.url, CALLBACKS + alerts_yaml(webhook(sink.url)))
        [store] = flaky
        task_id = simulator.add_task(APP, life=LIVE)
        await register(running, task_id, interval="60s")  # the callback, not a poll, sees it
        await reach(running, task_id, Status.IN_PROGRESS)
        assert simulator.exit_task(APP, task_id, leave_code=3)

        store.armed.add("record_transition")
        raw = stop_body(task_id)
        status, answer = await post_callback(running, raw)
        assert status == 503
        assert answer["error"]["code"] == "store_unavailable"
        assert task_of(running, task_id).status is Status.IN_PROGRESS
        assert (await stored_task(store, task_id)).status is Status.IN_PROGRESS
        await running.daemon.sweep_alerts()
        assert notices(sink, TASK_EXITED) == []

        store.armed.clear()
        assert await post_callback(running, raw) == (200, {"status": "ok"})  # TRTC's retry
        assert task_of(running, task_id).status is Status.EXITED

        async def alerted() -> bool:
            return bool(notices(sink, TASK_EXITED, task_id, "firing"))

        await wait_for_async(alerted, timeout=15, what="the exit alert")
        exits = [
            t for t in await stored_transitions(store, task_id) if t.to_status is Status.EXITED
        ]
        assert [t.source for t in exits] == [Source.CALLBACK]
        await running.daemon.sweep_alerts()
        assert len(notices(sink, TASK_EXITED, task_id, "firing")) == 1

    async def test_a_removal_not_stored_is_a_503_and_resolves_nothing_until_it_is(
        self,
        simulator: Simulator,
        make_daemon: DaemonFactory,
        flaky: list[FlakyStore],
        sink: Sink,
    ) -> None:
        running = await make_daemon(simulator.url, alerts_yaml(webhook(sink.url)))
        [store] = flaky
        task_id = simulator.add_task(APP, life=LIVE)
        await register(running, task_id)
        await reach(running, task_id, Status.IN_PROGRESS)
        assert simulator.exit_task(APP, task_id, leave_code=3)

        async def alerted() -> bool:
            return bool(notices(sink, TASK_EXITED, task_id, "firing"))

        await wait_for_async(alerted, timeout=15, what="the exit alert")
        url = f"{running.url}/api/v1/tasks/{APP}/{task_id}"

        store.armed.add("record_transition")
        async with running.session.delete(url, headers=running.auth()) as r:
            assert r.status == 503
            assert (await r.json())["error"]["code"] == "store_unavailable"
        status = task_of(running, task_id).status
        assert status in (Status.EXITED, Status.ENDED)
        assert (await stored_task(store, task_id)).status is status
        await running.daemon.sweep_alerts()
        assert notices(sink, TASK_EXITED, task_id, "resolved") == []

        store.armed.clear()
        async with running.session.delete(url, headers=running.auth()) as r:
            assert r.status == 200
        assert task_of(running, task_id).status is Status.REMOVED
        removals = [
            t for t in await stored_transitions(store, task_id) if t.to_status is Status.REMOVED
        ]
        assert len(removals) == 1

        async def resolved() -> bool:
            return bool(notices(sink, TASK_EXITED, task_id, "resolved"))

        await wait_for_async(resolved, timeout=15, what="the resolve")
        await running.daemon.sweep_alerts()
        assert len(notices(sink, TASK_EXITED, task_id, "resolved")) == 1

    async def test_an_alert_whose_state_cannot_be_saved_is_not_sent_until_it_is_then_once(
        self,
        simulator: Simulator,
        make_daemon: DaemonFactory,
        flaky: list[FlakyStore],
        sink: Sink,
    ) -> None:
        running = await make_daemon(simulator.url, alerts_yaml(webhook(sink.url)))
        [store] = flaky
        task_id = simulator.add_task(APP, life=LIVE)
        await register(running, task_id)
        await reach(running, task_id, Status.IN_PROGRESS)

        store.armed.add("save_alerts")
        assert simulator.exit_task(APP, task_id, leave_code=3)
        await reach(running, task_id, Status.EXITED)  # the transition itself is stored

        async def decided() -> bool:
            return bool(store.failures.get("save_alerts"))

        await wait_for_async(decided, timeout=15, what="the alert decision")
        await running.daemon.sweep_alerts()  # its save fails again: still nothing sent
        await running.daemon.alerts.drain()
        assert notices(sink, TASK_EXITED) == []
        assert await store.inner.load_alerts() == []

        store.armed.clear()
        await running.daemon.sweep_alerts()
        await running.daemon.alerts.drain()
        await running.daemon.sweep_alerts()
        await running.daemon.alerts.drain()
        assert len(notices(sink, TASK_EXITED, task_id, "firing")) == 1
        [record] = await store.inner.load_alerts()
        assert record.alertname == TASK_EXITED


# ------------------------------------------------------------------------------ observation order


def _answer(status: str) -> CallResult:
    return CallResult(Outcome.OK, "", request_id="r-1", response={"Status": status})


class TestAnOlderAnswerNeverOverridesANewerObservation:
    async def test_the_tracker_keeps_a_callback_exit_against_a_poll_sent_before_it(
        self, tmp_path: Path
    ) -> None:
        store = SqliteStore(tmp_path / "m.db")
        await store.open()
        try:
            registry = TaskRegistry()
            clock = [1000.0]
            tracker = Tracker(
                store, registry, EventBus(), clock=lambda: clock[0], mono=lambda: clock[0]
            )
            key = TaskKey(APP, "t-1")
            spec = TaskSpec(sdk_app_id=APP, task_id="t-1", region="ap-guangzhou")
            await tracker.register(spec, Source.API)
            await tracker.observe_poll(key, _answer("InProgress"), sent_at=1000.0)
            sent_before = 1001.0  # a poll goes out ...
            clock[0] = 1002.0
            assert await tracker.observe_exit(key, 3, {}, at=1001.5)  # ... the recorder stops
            clock[0] = 1003.0
            applied = await tracker.observe_poll(
                key, _answer("InProgress"), sent_before, sent_tick=sent_before
            )
            assert applied.outdated
            assert applied.transition is None
            task = registry.get(key)
            assert task is not None
            assert task.status is Status.EXITED
            # A poll sent after the stop is news, whatever it says.
            applied = await tracker.observe_poll(key, _answer("Exited"), sent_at=1003.0)
            assert not applied.outdated
            history = [t.to_status for t in await store.transitions(key, newest_first=False)]
            assert history == [Status.IN_PROGRESS, Status.EXITED]
        finally:
            await store.close()

    async def test_a_poll_in_flight_across_a_302_does_not_flip_the_task_back(
        self, simulator: Simulator, make_daemon: DaemonFactory, sink: Sink
    ) -> None:
        os.environ["TEST_CALLBACK_KEY"] = CALLBACK_KEY
        try:
            running = await make_daemon(simulator.url, CALLBACKS + alerts_yaml(webhook(sink.url)))
        finally:
            del os.environ["TEST_CALLBACK_KEY"]
        task_id = simulator.add_task(APP, life=LIVE)
        await register(running, task_id)
        await reach(running, task_id, Status.IN_PROGRESS)
        # The next poll is held 1.5 s by the simulator, which answers InProgress after it.
        simulator.faults.add(
            Fault(FaultKind.LATENCY, latency=1.5, count=1, task_ids=frozenset({task_id}))
        )

        def delayed() -> bool:
            return any(
                a.task_id == task_id and a.fault == FaultKind.LATENCY.value
                for a in list(simulator.arrivals)
            )

        async def in_flight() -> bool:
            return delayed()

        await wait_for_async(in_flight, timeout=10, what="a poll held by the simulator")
        status, _ = await post_callback(running, stop_body(task_id))
        assert status == 200
        assert task_of(running, task_id).status is Status.EXITED
        # Every later poll fails (no status): only the held answer could flip the task back.
        simulator.faults.add(Fault(FaultKind.INTERNAL_ERROR, task_ids=frozenset({task_id})))

        async def held_answer_back() -> bool:
            return bool(task_of(running, task_id).consecutive_errors >= 1)

        await wait_for_async(held_answer_back, timeout=15, what="the held answer and a later poll")
        assert task_of(running, task_id).status is Status.EXITED
        history = [
            (t.from_status, t.to_status)
            for t in await running.daemon.tracker.transitions(TaskKey(APP, task_id))
        ]
        assert history[0] == (Status.IN_PROGRESS, Status.EXITED)
        assert Status.IN_PROGRESS not in [to for _, to in history[:1]]
        await running.daemon.sweep_alerts()
        await running.daemon.alerts.drain()
        assert len(notices(sink, TASK_EXITED, task_id, "firing")) == 1
        assert notices(sink, TASK_EXITED, task_id, "resolved") == []


# ------------------------------------------------------------------------------ reload


class Reloadable:
    """A daemon started from a file, as ``trtc-monitor run`` starts it."""

    def __init__(self, path: Path, daemon: Daemon, url: str, runner: Any) -> None:
        self.path, self.daemon, self.url, self.runner = path, daemon, url, runner

    async def post_reload(self, session: aiohttp.ClientSession) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {API_TOKEN}"}
        async with session.post(f"{self.url}/-/reload", headers=headers) as r:
            return r.status, await r.json()


@pytest.fixture
async def from_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Any]:
    monkeypatch.setenv("TEST_SECRET_ID", DEFAULT_SECRET_ID)
    monkeypatch.setenv("TEST_SECRET_KEY", DEFAULT_SECRET_KEY)
    monkeypatch.setenv("TEST_API_TOKEN", API_TOKEN)
    started: list[Reloadable] = []

    async def start(text: str) -> Reloadable:
        path = tmp_path / "monitor.yaml"
        path.write_text(text)
        daemon = Daemon(load_config(path), path)
        await daemon.start()
        runner, url = await start_server(daemon, daemon.config.server.listen)
        started.append(Reloadable(path, daemon, url, runner))
        return started[-1]

    try:
        yield start
    finally:
        for item in started:
            await item.runner.cleanup()
            await item.daemon.stop()


def with_rate(text: str, rate: int) -> str:
    return text.replace('    endpoint: "', f'    rate_limit: {rate}\n    endpoint: "', 1)


class TestReload:
    async def test_a_lower_rate_limit_takes_effect_on_what_is_sent(
        self, simulator: Simulator, from_file: Any, tmp_path: Path
    ) -> None:
        text = daemon_config_text(simulator.url, tmp_path / "m.db")
        running = await from_file(with_rate(text, 20))
        async with aiohttp.ClientSession() as session:
            specs = [
                {
                    "sdk_app_id": APP,
                    "task_id": simulator.add_task(APP, life=LIVE),
                    "region": "ap-guangzhou",
                    "interval": "1s",
                }
                for _ in range(60)
            ]  # 60 requests a second wanted: both budgets run full
            async with session.post(
                f"{running.url}/api/v1/tasks",
                json=specs,
                headers={"Authorization": f"Bearer {API_TOKEN}"},
            ) as r:
                assert r.status == 200
            await asyncio.sleep(3.0)
            before = [a.mono for a in list(simulator.arrivals)]
            running.path.write_text(with_rate(text, 10))
            status, answer = await running.post_reload(session)
            assert (status, answer["status"]) == (200, "reloaded")
            reloaded = time.monotonic()
            await asyncio.sleep(4.0)
        after = [a.mono for a in list(simulator.arrivals) if a.mono > reloaded + 1.0]
        assert max_in_window(before, 1.0) > 10  # the old budget was in use ...
        assert len(after) > 10
        assert max_in_window(after, 1.0) <= 10  # ... and the new one holds
        [limiter] = [running.daemon.budget.limiter(b) for b in running.daemon.budget.buckets()]
        assert limiter.limit == 10

    async def test_a_broken_file_keeps_everything_as_it_was(
        self, simulator: Simulator, from_file: Any, tmp_path: Path
    ) -> None:
        text = daemon_config_text(simulator.url, tmp_path / "m.db")
        running = await from_file(text)
        config_before = running.daemon.config
        running.path.write_text(text.replace("interval: 1s", "interval: soon"))
        async with aiohttp.ClientSession() as session:
            status, answer = await running.post_reload(session)
        assert status == 422
        assert answer["error"]["code"] == "reload_failed"
        assert any("polling.interval" in e for e in answer["error"]["errors"])
        assert running.daemon.config is config_before
        assert running.daemon.metrics.config_reload_ok._value.get() == 0

    async def test_a_missing_secret_fails_the_reload_before_anything_changes(
        self, simulator: Simulator, from_file: Any, tmp_path: Path
    ) -> None:
        text = daemon_config_text(simulator.url, tmp_path / "m.db")
        running = await from_file(with_rate(text, 20))
        changed = with_rate(text, 5).replace("TEST_SECRET_KEY", "TEST_NO_SUCH_VARIABLE")
        running.path.write_text(changed)
        result = await running.daemon.reload()
        assert not result.ok
        assert any("TEST_NO_SUCH_VARIABLE" in e for e in result.errors)
        assert running.daemon.budget.accounts["default"].limiter.limit == 20

    async def test_a_removed_account_turns_its_tasks_polls_into_errors(
        self, simulator: Simulator, from_file: Any, tmp_path: Path
    ) -> None:
        text = daemon_config_text(simulator.url, tmp_path / "m.db")
        other = (
            "  other:\n    secret_id_env: TEST_SECRET_ID\n    secret_key_env: TEST_SECRET_KEY\n"
            f'    endpoint: "{simulator.url}"\n'
        )
        with_other = text.replace("polling:", other + "polling:", 1)
        alerts = alerts_yaml()
        running = await from_file(with_other + alerts)
        task_id = simulator.add_task(APP, life=LIVE)
        spec = TaskSpec(sdk_app_id=APP, task_id=task_id, region="ap-guangzhou", account="other")
        await running.daemon.tracker.register(spec, Source.API)
        key = TaskKey(APP, task_id)

        async def polled() -> bool:
            task = running.daemon.registry.get(key)
            return task is not None and task.status is Status.IN_PROGRESS

        await wait_for_async(polled, timeout=15, what="the task polled with its account")
        running.path.write_text(text + alerts)
        assert (await running.daemon.reload()).ok

        async def erroring() -> bool:
            await running.daemon.sweep_alerts()
            return any(
                r.alertname == TASK_ERROR and r.labels.get("task_id") == task_id
                for r in running.daemon.alerts.firing()
            )

        await wait_for_async(erroring, timeout=20, what="the task error alert")
        task = running.daemon.registry.get(key)
        assert task is not None
        assert task.last_error_code == ACCOUNT_GONE
        assert task.status is Status.IN_PROGRESS

    async def test_a_static_task_added_to_the_file_is_registered_and_polled(
        self, simulator: Simulator, from_file: Any, tmp_path: Path
    ) -> None:
        text = daemon_config_text(simulator.url, tmp_path / "m.db")
        running = await from_file(text)
        task_id = simulator.add_task(APP, life=LIVE)
        tasks = f"tasks:\n  - {{sdk_app_id: {APP}, task_id: {task_id}, region: ap-mumbai}}\n"
        running.path.write_text(text + tasks)
        assert (await running.daemon.reload()).ok

        async def polled() -> bool:
            task = running.daemon.registry.get(TaskKey(APP, task_id))
            return task is not None and task.status is Status.IN_PROGRESS

        await wait_for_async(polled, timeout=15, what="the static task polled")

    async def test_keys_that_need_a_restart_are_reported_not_ignored(
        self, simulator: Simulator, from_file: Any, tmp_path: Path
    ) -> None:
        text = daemon_config_text(simulator.url, tmp_path / "m.db")
        running = await from_file(text)
        moved = text.replace('"127.0.0.1:0"', f'"127.0.0.1:{free_port()}"').replace(
            str(tmp_path / "m.db"), str(tmp_path / "elsewhere.db")
        )
        running.path.write_text(moved)
        async with aiohttp.ClientSession() as session:
            status, answer = await running.post_reload(session)
        assert status == 200
        assert answer["restart_required"] == ["server.listen", "storage"]

    async def test_sighup_and_post_reload_at_once_run_one_after_the_other(
        self,
        simulator: Simulator,
        from_file: Any,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        running = await from_file(daemon_config_text(simulator.url, tmp_path / "m.db"))
        stop = asyncio.Event()
        running.daemon.install_signal_handlers(stop)
        spans: list[tuple[float, float]] = []
        real_load = load_config

        def slow_load(path: Path) -> Any:
            start = time.monotonic()
            time.sleep(0.5)  # in the reload's worker thread: wide open to interleaving
            config = real_load(path)
            spans.append((start, time.monotonic()))
            return config

        monkeypatch.setattr(reload_module, "load_config", slow_load)
        async with aiohttp.ClientSession() as session:
            os.kill(os.getpid(), signal.SIGHUP)
            status, _ = await running.post_reload(session)
        assert status == 200

        async def both() -> bool:
            return len(spans) == 2

        await wait_for_async(both, timeout=10, what="both reloads")
        (_, first_end), (second_start, _) = sorted(spans)
        assert first_end <= second_start


# ------------------------------------------------------------------------------ unusable stores


def run_daemon(config: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", "run", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=daemon_env(),
        check=False,
    )


class TestUnusableStore:
    @pytest.mark.parametrize("case", ["directory", "not_sqlite", "parent_is_a_file"])
    def test_run_exits_2_with_one_line_naming_the_path(self, tmp_path: Path, case: str) -> None:
        if case == "directory":
            db = tmp_path / "data"
            db.mkdir()
            reason = "is a directory"
        elif case == "not_sqlite":
            db = tmp_path / "notes.db"
            db.write_text("these are my notes, not a database\n" * 50)
            reason = "not a SQLite database"
        else:
            blocker = tmp_path / "file"
            blocker.write_text("x")
            db = blocker / "sub" / "m.db"
            reason = "cannot create its directory"
        config = write_config(tmp_path, "http://127.0.0.1:9", free_port())
        config.write_text(config.read_text().replace(str(tmp_path / "monitor.db"), str(db)))
        done = run_daemon(config)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr + done.stdout
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, done.stderr
        assert str(db) in errors[0]
        assert reason in errors[0]

    async def test_a_second_daemon_on_the_same_file_is_refused_naming_the_lock(
        self, simulator: Simulator, tmp_path: Path
    ) -> None:
        port = free_port()
        config = write_config(tmp_path, simulator.url, port)
        with daemon_process(config, tmp_path / "first.log") as first:
            async with aiohttp.ClientSession() as session:
                await until_ready(session, f"http://127.0.0.1:{port}", first)
            second = tmp_path / "second.yaml"
            second.write_text(config.read_text().replace(str(port), str(free_port())))
            done = await asyncio.to_thread(run_daemon, second)
            assert first.poll() is None  # the first one is undisturbed
        assert done.returncode == 2
        assert "Traceback" not in done.stderr
        [line] = [x for x in done.stderr.splitlines() if x.startswith("error:")]
        assert "in use by another running monitor" in line
        assert str(tmp_path / "monitor.db.lock") in line


# ------------------------------------------------------------------------------ replays


class TestReplayedCallbacks:
    async def test_a_signed_callback_an_hour_old_changes_nothing_and_is_counted_stale(
        self, simulator: Simulator, make_daemon: DaemonFactory, flaky: list[FlakyStore]
    ) -> None:
        running = await make_daemon(simulator.url, CALLBACKS)
        hour_ago = time.time() - 3600
        status, answer = await post_callback(running, stop_body("t-replayed", at=hour_ago))
        assert status == 403
        assert answer["error"]["code"] == "stale_callback"
        assert len(running.daemon.registry) == 0
        assert running.daemon.metrics.callbacks.labels("302", "stale")._value.get() == 1
        assert await flaky[0].inner.load_tasks() == []

        fresh = time.time() - 60  # within max_age (10m): works as before
        assert await post_callback(running, stop_body("t-fresh", at=fresh)) == (
            200,
            {"status": "ok"},
        )
        history = await running.daemon.tracker.transitions(TaskKey(APP, "t-fresh"))
        assert [(t.to_status, t.source) for t in history][-1] == (Status.EXITED, Source.CALLBACK)

    async def test_max_age_is_configurable(
        self, simulator: Simulator, make_daemon: DaemonFactory, flaky: list[FlakyStore]
    ) -> None:
        running = await make_daemon(simulator.url, CALLBACKS + "  max_age: 30s\n")
        status, _ = await post_callback(running, stop_body("t-1", at=time.time() - 60))
        assert status == 403
        assert len(running.daemon.registry) == 0


# ------------------------------------------------------------------------------ one validator


class TestOneValidator:
    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("interval", "100ms"),
            ("interval", "25h"),
            ("task_id", "a/b"),
            ("region", "ap-nowhere"),
            ("labels", {"status": "x"}),
        ],
    )
    def test_yaml_and_the_api_refuse_the_same_specs_with_the_same_words(
        self, field: str, value: Any
    ) -> None:
        spec = {"sdk_app_id": APP, "task_id": "t-1", "region": "ap-guangzhou", field: value}
        with pytest.raises(ValidationError) as api:
            validate_spec(spec, ["default"])
        with pytest.raises(ConfigError) as yaml:
            parse_config("tasks:\n  - " + json.dumps(spec) + "\n")
        [line] = yaml.value.errors
        assert api.value.message in line
        assert f"tasks[0].{api.value.field}" in line

    def test_a_numeric_label_is_text_in_yaml_and_refused_in_json(self) -> None:
        config = parse_config(
            f"tasks:\n  - {{sdk_app_id: {APP}, task_id: t, region: ap-beijing, "
            "labels: {room: 42}}\n"
        )
        assert config.tasks[0].labels == {"room": "42"}
        with pytest.raises(ValidationError) as info:
            validate_spec(
                {"sdk_app_id": APP, "task_id": "t", "region": "ap-beijing", "labels": {"r": 4}},
                ["default"],
            )
        assert info.value.field == "labels.r"


# ------------------------------------------------------------------------------ secrets as names


class TestSecretLookingNames:
    SECRET = "Zq8vR2mX4kLp9TnW3bYc7HdF6sJa"

    def test_a_secret_typed_where_a_variable_name_goes_is_reported_without_echoing_it(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "m.yaml"
        path.write_text(
            "accounts:\n  default:\n"
            f"    secret_id_env: TEST_SECRET_ID\n    secret_key_env: {self.SECRET}\n"
        )
        code, text = check_config(path, environ={"TEST_SECRET_ID": "AKIDx"}, syntax_only=True)
        assert code == 0
        assert self.SECRET not in text
        assert "secret_key_env" in text
        assert "looks like a secret" in text
        assert self.SECRET[:4] in text
        config = load_config(path)
        with pytest.raises(ConfigError) as info:
            resolve_secrets(config, environ={"TEST_SECRET_ID": "AKIDx"})
        assert self.SECRET not in str(info.value)
        assert "looks like a secret" in str(info.value)

    def test_ordinary_names_are_shown_in_full(self, tmp_path: Path) -> None:
        path = tmp_path / "m.yaml"
        path.write_text(
            "accounts:\n  default:\n"
            "    secret_id_env: TEST_SECRET_ID\n    secret_key_env: TENCENTCLOUD_SECRET_KEY_PROD\n"
        )
        code, text = check_config(path, environ={"TEST_SECRET_ID": "AKIDx"}, syntax_only=True)
        assert code == 0
        assert "TENCENTCLOUD_SECRET_KEY_PROD" in text
        assert "looks like a secret" not in text


# ------------------------------------------------------------------------------ the import graph


def _imports(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _called(path: Path) -> set[str]:
    """Names of the functions and methods a module calls."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            if isinstance(node.func, ast.Attribute):
                names.add(node.func.attr)
            elif isinstance(node.func, ast.Name):
                names.add(node.func.id)
    return names


class TestImportGraph:
    def test_no_http_module_imports_the_daemon(self) -> None:
        offenders = {
            str(path.relative_to(MONITOR)): sorted(
                n
                for n in _imports(path)
                if n == "monitor.daemon" or n.startswith("monitor.daemon.")
            )
            for path in (MONITOR / "http").rglob("*.py")
        }
        assert {k: v for k, v in offenders.items() if v} == {}
        assert len(offenders) >= 5  # the walk did find the package

    def test_the_daemon_holds_no_polling_callback_or_alert_logic(self) -> None:
        path = MONITOR / "daemon.py"
        forbidden = (
            "monitor.status_rules",  # status and health rules
            "monitor.callbacks",  # signature, parsing, dedupe, effects
            "monitor.alerts.rules",  # alert conditions
            "monitor.scheduler",  # the deadline queue
            "monitor.trtc.signing",
        )
        used = _imports(path)
        assert sorted(n for n in used if n.startswith(forbidden)) == []
        # What polling, callbacks and alerting do, called from the daemon, would be their logic
        # living there.
        logic = {
            "describe_cloud_recording",
            "observe_poll",
            "observe_exit",
            "note_facts",
            "apply_poll",
            "apply_callback",
            "evaluate_task",
            "on_throttled",
            "reschedule",
            "retry",
            "record_transition",
        }
        assert sorted(_called(path) & logic) == []

    def test_only_the_factories_name_a_backend(self) -> None:
        named: dict[str, list[str]] = {}
        for path in MONITOR.rglob("*.py"):
            rel = str(path.relative_to(MONITOR))
            text = path.read_text()
            for backend in ("SqliteStore", "LocalRateLimiter"):
                if backend in text:
                    named.setdefault(backend, []).append(rel)
        assert sorted(named["SqliteStore"]) == [
            "store/__init__.py",
            "store/factory.py",
            "store/sqlite.py",
        ]
        assert sorted(named["LocalRateLimiter"]) == [
            "ratelimit/__init__.py",
            "ratelimit/factory.py",
            "ratelimit/local.py",
        ]
