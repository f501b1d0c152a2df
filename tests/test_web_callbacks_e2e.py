"""Web-page recording callbacks (event group 8) on the callback path, end to end: a start
registers the task as ``kind: web`` (auto_register), a stop records the exit at once and raises
the exit alert, a replay changes nothing, and a start the callbacks' account's site cannot poll
is counted and refused."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from monitor.models import Kind, Source, Status, TaskKey
from monitor.simulator import Life, Simulator
from tests.alerts_e2e_support import firing
from tests.callbacks_support import callback_counts
from tests.conftest import DaemonFactory, RunningDaemon, daemon_config_text
from tests.daemon_support import APP, CALLBACK_KEY, post_callback
from tests.support import wait_for_async

WEB_CALLBACKS = "callbacks:\n  key_env: TEST_CALLBACK_KEY\n  region: ap-singapore\n"


def web_body(event_type: int, task_id: str, status: int = 1) -> bytes:
    ms = int(time.time() * 1000)
    body = {
        "EventGroupId": 8,
        "EventType": event_type,
        "CallbackTs": ms,
        "EventInfo": {
            "EventMsTs": ms,
            "TaskId": task_id,
            "Payload": {"Status": status, "EventMessage": "x"},
        },
    }
    return json.dumps(body).encode()


@pytest.fixture(autouse=True)
def _callback_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_CALLBACK_KEY", CALLBACK_KEY)


async def start(
    simulator: Simulator, make_daemon: DaemonFactory, tmp_path: Path, callbacks: str
) -> RunningDaemon:
    return await make_daemon(text=daemon_config_text(simulator.url, tmp_path / "m.db", callbacks))


class TestWebCallbacks:
    async def test_start_registers_a_web_task_and_stop_raises_the_exit_alert_at_once(
        self, simulator: Simulator, make_daemon: DaemonFactory, tmp_path: Path
    ) -> None:
        running = await start(simulator, make_daemon, tmp_path, WEB_CALLBACKS)
        task_id = simulator.add_task(APP, life=Life(idle=0, in_progress=600), kind="web")
        status, _ = await post_callback(running, web_body(801, task_id))
        assert status == 200
        key = TaskKey(APP, task_id)
        task = running.daemon.registry.get(key)
        assert task is not None
        assert task.kind is Kind.WEB
        assert task.source is Source.CALLBACK

        async def in_progress() -> bool:
            t = running.daemon.registry.get(key)
            return t is not None and t.status is Status.IN_PROGRESS

        await wait_for_async(in_progress, timeout=20, what="the web task polled")
        simulator.exit_task(APP, task_id)  # the page stops being recorded, as 802 says
        stop = web_body(802, task_id)
        assert (await post_callback(running, stop))[0] == 200
        # Recorded at once, by the callback (the confirming poll may already see it gone).
        stopped = running.daemon.registry.get(key)
        assert stopped is not None
        assert stopped.status in (Status.EXITED, Status.ENDED)

        async def alerted() -> bool:
            return bool(firing(running, "RecordingTaskExited", task_id))

        await wait_for_async(alerted, timeout=10, what="the exit alert")
        assert (await post_callback(running, stop))[0] == 200  # the same body again
        store = running.daemon._store
        assert store is not None
        history = await store.transitions(key)
        exits = [t for t in history if t.source is Source.CALLBACK and t.to_status is Status.EXITED]
        assert len(exits) == 1  # the replay recorded nothing
        counts = await callback_counts(running)
        assert counts[("802", "duplicate")] == 1.0

    async def test_a_start_the_account_s_site_cannot_poll_is_counted_and_refused(
        self, simulator: Simulator, make_daemon: DaemonFactory, tmp_path: Path
    ) -> None:
        # The international site serves web-page recording in ap-singapore only.
        callbacks = "callbacks:\n  key_env: TEST_CALLBACK_KEY\n  region: ap-guangzhou\n"
        running = await start(simulator, make_daemon, tmp_path, callbacks)
        status, _ = await post_callback(running, web_body(801, "w-1"))
        assert status == 200
        assert running.daemon.registry.get(TaskKey(APP, "w-1")) is None
        counts = await callback_counts(running)
        assert counts[("801", "refused")] == 1.0
