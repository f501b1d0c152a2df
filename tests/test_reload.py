"""Reloads: everything is read and validated first, then swapped; a failure leaves the
running configuration whole; SIGHUP and ``POST /-/reload`` run one after the other."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

import monitor.reload as reload_module
from monitor.alerts import TASK_ERROR
from monitor.config import load_config
from monitor.daemon import Daemon
from monitor.http.server import start_server
from monitor.models import Source, Status, TaskKey
from monitor.poller import ACCOUNT_GONE
from monitor.simulator import (
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
    Simulator,
)
from monitor.simulator.arrivals import max_in_window
from monitor.taskspec import TaskSpec
from tests.alerts_e2e_support import alerts_yaml
from tests.conftest import API_TOKEN, daemon_config_text
from tests.daemon_support import (
    APP,
    LIVE,
)
from tests.support import free_port, wait_for_async


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
