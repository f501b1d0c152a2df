"""What the end-to-end alert tests share: the alerts section and receivers, the notices a
webhook got, the tasks registered, polled and reaching a status, the alerts firing and
scraped metrics."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterable
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from monitor.models import Status, TaskKey
from monitor.simulator import Life, Simulator
from monitor.store import AlertRecord
from tests.conftest import RunningDaemon
from tests.support import http_json, wait_for_async
from tests.test_receivers import Sink

APP = 1400000001
CALLBACK_KEY = "cbKey0123456789abcdef"
WRONG_SECRET_KEY = "not-the-simulator-secret-key"
# Thresholds small enough for seconds-long tests; the base config polls every 1 s with a 2 s
# request timeout.
THRESHOLDS: dict[str, Any] = {
    "error": {"consecutive": 2},
    "stale": {"after": "3s"},
    "idle": {"after": "2s"},
}
RECORDING = Life(idle=0.2, in_progress=None, exited=30)
# Recording from the start: the first poll already sees InProgress.
LIVE = Life(idle=0.0, in_progress=None, exited=30)


# ------------------------------------------------------------------------------ helpers


def alerts_yaml(*receivers: dict[str, Any]) -> str:
    """The ``alerts:`` section (JSON is YAML) with the fast thresholds and these receivers."""
    return "alerts: " + json.dumps({**THRESHOLDS, "receivers": list(receivers)}) + "\n"


def webhook(url: str, name: str = "hook", **settings: Any) -> dict[str, Any]:
    return {"type": "webhook", "name": name, "url": url, **settings}


def notices(
    sink: Sink,
    alertname: str | None = None,
    task_id: str | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    """Every alert of every webhook payload the sink received, in order, filtered."""
    return [
        alert
        for _, _, payload in sink.requests
        for alert in payload["alerts"]
        if (alertname is None or alert["labels"]["alertname"] == alertname)
        and (task_id is None or alert["labels"].get("task_id") == task_id)
        and (status is None or alert["status"] == status)
    ]


def firing(running: RunningDaemon, alertname: str, task_id: str | None = None) -> list[AlertRecord]:
    return [
        r
        for r in running.daemon.alerts.firing()
        if r.alertname == alertname and (task_id is None or r.labels.get("task_id") == task_id)
    ]


async def api_alerts(running: RunningDaemon) -> list[dict[str, Any]]:
    async with running.session.get(f"{running.url}/api/v1/alerts") as r:
        assert r.status == 200
        alerts: list[dict[str, Any]] = (await r.json())["alerts"]
        return alerts


async def delete_task(running: RunningDaemon, task_id: str) -> None:
    async with running.session.delete(
        f"{running.url}/api/v1/tasks/{APP}/{task_id}", headers=running.auth()
    ) as r:
        assert r.status == 200


async def register(
    running: RunningDaemon,
    task_id: str,
    labels: dict[str, str] | None = None,
    interval: str | None = None,
) -> None:
    extra: dict[str, object] = {}
    if labels is not None:
        extra["labels"] = labels
    if interval is not None:
        extra["interval"] = interval
    response = await running.register(APP, task_id, "ap-guangzhou", **extra)
    assert response.status == 201, await response.text()


def task_of(running: RunningDaemon, task_id: str) -> Any:
    task = running.daemon.registry.get(TaskKey(APP, task_id))
    assert task is not None
    return task


async def reach(running: RunningDaemon, task_ids: Iterable[str], status: Status) -> None:
    ids = list(task_ids)

    async def there() -> bool:
        return all(task_of(running, t).status is status for t in ids)

    await wait_for_async(there, timeout=15, what=f"{len(ids)} task(s) {status.value}")


def polls(simulator: Simulator, task_id: str) -> int:
    return sum(1 for a in list(simulator.arrivals) if a.task_id == task_id)


async def polled_more(simulator: Simulator, task_id: str, more: int, timeout: float = 15) -> None:
    """Wait until ``task_id`` has been polled ``more`` further times."""
    target = polls(simulator, task_id) + more

    async def enough() -> bool:
        return polls(simulator, task_id) >= target

    await wait_for_async(enough, timeout=timeout, what=f"{more} more polls of {task_id}")


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of one metric from an exposition, keyed by their sorted labels."""
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


async def scrape(session: aiohttp.ClientSession, base: str) -> str:
    async with session.get(f"{base}/metrics") as r:
        assert r.status == 200
        return await r.text()


async def notification_count(running: RunningDaemon, receiver: str, outcome: str) -> float:
    counts = samples(await scrape(running.session, running.url), "trtc_monitor_notifications_total")
    return counts.get((("outcome", outcome), ("receiver", receiver)), 0.0)


async def alertmanager_alerts(base: str) -> list[dict[str, Any]]:
    """What Alertmanager itself lists, with its default filters (``GET /api/v2/alerts``)."""
    answer: list[dict[str, Any]] = await asyncio.to_thread(http_json, f"{base}/api/v2/alerts")
    return answer
