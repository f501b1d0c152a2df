"""Driving a running daemon's callbacks, shared by the tests of the order of effects, of the
order of observations and of replayed callbacks."""

from __future__ import annotations

import time
from typing import Any

import pytest

from monitor.models import Status
from monitor.simulator import Life, sign
from monitor.simulator.callbacks import build_body
from tests.alerts_e2e_support import task_of
from tests.conftest import RunningDaemon
from tests.support import FlakyStore, use_flaky_stores, wait_for_async

APP = 1400000001
CALLBACK_KEY = "cbKey0123456789abcdef"
LIVE = Life(idle=0.0, in_progress=None, exited=30)
CALLBACKS = "callbacks:\n  key_env: TEST_CALLBACK_KEY\n"


def flaky_with_callbacks(monkeypatch: pytest.MonkeyPatch) -> list[FlakyStore]:
    """FlakyStores for the daemons of this test, and the callback key they read."""
    made = use_flaky_stores(monkeypatch)
    monkeypatch.setenv("TEST_CALLBACK_KEY", CALLBACK_KEY)
    return made


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
