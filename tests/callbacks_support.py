"""What the callback tests share: the application, key and path, a callback body as TRTC
writes it, and the reads of a live daemon after a callback."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from monitor.callbacks.parse import Callback, parse_callback
from monitor.models import Source, TaskKey
from monitor.simulator import sign
from monitor.simulator.callbacks import build_body
from tests.conftest import RunningDaemon

APP = 1400000001
KEY = "cbKey0123456789abcdef"
PATH = "/callbacks/trtc"
DESCRIBE = "DescribeCloudRecording"
EXTRA = """
callbacks:
  key_env: TEST_CALLBACK_KEY
  auto_register: true
  account: default
  region: ap-guangzhou
"""
# The vector of reference/TRTC.md: key 123654 over this exact body (tabs and newlines).
DOC_KEY = "123654"
DOC_BODY = (
    b'{\n\t"EventGroupId":\t2,\n\t"EventType":\t204,\n\t"CallbackTs":\t1664209748188,\n'
    b'\t"EventInfo":\t{\n\t\t"RoomId":\t8489,\n\t\t"EventTs":\t1664209748,\n'
    b'\t\t"EventMsTs":\t1664209748180,\n\t\t"UserId":\t"user_85034614",\n\t\t"Reason":\t0\n\t}\n}'
)
DOC_SIGN = "kkoFeO3Oh2ZHnjtg8tEAQhtXK16/KI05W3BQff8IvGA="


def body(
    event_type: int,
    task_id: str = "task-1",
    payload: dict[str, Any] | None = None,
    *,
    room_id: str | int = "room-1",
    user_id: str = "recorder_1",
    at: float | None = None,
    sent: float | None = None,
) -> bytes:
    """A callback body exactly as the simulator (and TRTC) builds it; sent just now unless
    ``at`` says when the event was (a daemon refuses messages older than its max_age)."""
    if at is None:
        at = time.time()
    return build_body(
        event_type,
        room_id=room_id,
        user_id=user_id,
        task_id=task_id,
        payload=payload or {},
        event_wall=at,
        callback_wall=at + 0.05 if sent is None else sent,
    )


def parsed(raw: bytes, header: str | None = str(APP)) -> Callback:
    return parse_callback(raw, header)


async def post(
    running: RunningDaemon,
    raw: bytes,
    *,
    key: str | None = KEY,
    signature: str | None = None,
    app: int | None = APP,
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Sign"] = signature or sign(key, raw)
    if app is not None:
        headers["SdkAppId"] = str(app)
    async with running.session.post(f"{running.url}{PATH}", data=raw, headers=headers) as r:
        return r.status, await r.json(content_type=None)


async def callback_counts(running: RunningDaemon) -> dict[tuple[str, str], float]:
    """``trtc_monitor_callbacks_total`` as Prometheus scrapes it."""
    async with running.session.get(f"{running.url}/metrics") as r:
        text = await r.text()
    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "trtc_monitor_callbacks_total":
                counts[(sample.labels["event_type"], sample.labels["outcome"])] = sample.value
    return counts


async def task_api(running: RunningDaemon, task_id: str) -> dict[str, Any]:
    async with running.session.get(f"{running.url}/api/v1/tasks/{APP}/{task_id}") as r:
        assert r.status == 200
        result: dict[str, Any] = await r.json()
        return result


async def callback_transitions(running: RunningDaemon, task_id: str) -> list[Any]:
    history = await running.daemon.tracker.transitions(TaskKey(APP, task_id))
    return [t for t in history if t.source is Source.CALLBACK]
