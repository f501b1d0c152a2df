"""TUIKit envelopes (TUICallKit's ``Call.CallbackAfterRecordChanged``, TUILiveKit's
``Follow.CallbackAfterCloudRecordingChanged``) on the callback path, end to end: authenticated
with ``callbacks.tuikit_token`` the Chat way, a 302 raises the exit alert at once; an
unauthenticated, stale or replayed envelope changes nothing."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from monitor.models import Source, Status, TaskKey
from monitor.simulator import Life, Simulator
from monitor.simulator.tuikit import wrap
from tests.alerts_e2e_support import firing
from tests.callbacks_support import callback_counts
from tests.conftest import DaemonFactory, RunningDaemon, daemon_config_text
from tests.daemon_support import APP, CALLBACK_KEY, stop_body
from tests.support import wait_for_async

TOKEN = "chatWebhookToken-0123456789"
CALLBACKS = "callbacks:\n  key_env: TEST_CALLBACK_KEY\n  tuikit_token_env: TEST_TUIKIT_TOKEN\n"


@pytest.fixture(autouse=True)
def _keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TEST_CALLBACK_KEY", CALLBACK_KEY)
    monkeypatch.setenv("TEST_TUIKIT_TOKEN", TOKEN)


async def post(running: RunningDaemon, url: str, raw: bytes) -> tuple[int, Any]:
    async with running.session.post(
        url, data=raw, headers={"Content-Type": "application/json"}
    ) as r:
        return r.status, await r.json()


async def running_task(
    simulator: Simulator, make_daemon: DaemonFactory, tmp_path: Path
) -> tuple[RunningDaemon, str]:
    running = await make_daemon(
        text=daemon_config_text(simulator.url, tmp_path / "m.db", CALLBACKS)
    )
    task_id = simulator.add_task(APP, life=Life(idle=0, in_progress=600, exited=600))
    assert (await running.register(APP, task_id)).status == 201

    async def in_progress() -> bool:
        task = running.daemon.registry.get(TaskKey(APP, task_id))
        return task is not None and task.status is Status.IN_PROGRESS

    await wait_for_async(in_progress, timeout=20, what="the task polled")
    return running, task_id


async def callback_exits(running: RunningDaemon, task_id: str) -> int:
    store = running.daemon._store
    assert store is not None
    history = await store.transitions(TaskKey(APP, task_id))
    return sum(1 for t in history if t.source is Source.CALLBACK and t.to_status is Status.EXITED)


@pytest.mark.parametrize("envelope", ["tuicallkit", "tuilivekit"])
async def test_a_302_raises_the_exit_alert_at_once_and_a_replay_changes_nothing(
    envelope: str, simulator: Simulator, make_daemon: DaemonFactory, tmp_path: Path
) -> None:
    running, task_id = await running_task(simulator, make_daemon, tmp_path)
    simulator.exit_task(APP, task_id)
    now = time.time()
    wrapped = wrap(
        envelope, f"{running.url}/callbacks/trtc", TOKEN, APP, stop_body(task_id, at=now), now
    )
    assert wrapped is not None
    url, raw, _ = wrapped
    assert await post(running, url, raw) == (200, {"status": "ok"})
    task = running.daemon.registry.get(TaskKey(APP, task_id))
    assert task is not None
    assert task.status is Status.EXITED  # at once, from the envelope

    async def alerted() -> bool:
        return bool(firing(running, "RecordingTaskExited", task_id))

    await wait_for_async(alerted, timeout=10, what="the exit alert")
    assert await post(running, url, raw) == (200, {"status": "ok"})  # the same delivery again
    assert await callback_exits(running, task_id) == 1
    assert (await callback_counts(running))[("302", "duplicate")] == 1.0


async def test_unauthenticated_and_stale_envelopes_change_nothing(
    simulator: Simulator, make_daemon: DaemonFactory, tmp_path: Path
) -> None:
    running, task_id = await running_task(simulator, make_daemon, tmp_path)
    now = time.time()
    base = f"{running.url}/callbacks/trtc"
    body = stop_body(task_id, at=now)
    wrong = wrap("tuicallkit", base, "not-the-token", APP, body, now)
    assert wrong is not None
    status, answer = await post(running, wrong[0], wrong[1])
    assert status == 401
    assert TOKEN not in str(answer)
    unsigned_url = wrong[0].split("&Sign=")[0]
    assert (await post(running, unsigned_url, wrong[1]))[0] == 401
    old = now - 3600  # signed correctly, but an hour ago: a captured delivery replayed
    stale = wrap("tuilivekit", base, TOKEN, APP, stop_body(task_id, at=now), old)
    assert stale is not None
    assert (await post(running, stale[0], stale[1]))[0] == 403
    task = running.daemon.registry.get(TaskKey(APP, task_id))
    assert task is not None
    assert task.status is Status.IN_PROGRESS
    assert await callback_exits(running, task_id) == 0
    assert not firing(running, "RecordingTaskExited", task_id)
    counts = await callback_counts(running)
    assert counts[("none", "unauthorized")] == 2.0
    assert counts[("none", "stale")] == 1.0
