"""What the metrics tests share: tasks, rendering and parsing an exposition, a live scrape."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from prometheus_client.metrics_core import Metric
from prometheus_client.openmetrics import parser as openmetrics_parser
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample

from monitor.metrics import MonitorMetrics, StateView
from monitor.models import Status, Task, TaskKey
from tests.conftest import RunningDaemon
from tests.support import wait_for_async

APP = 1400000001
TASK_FAMILIES = (
    "trtc_recording_task_status",
    "trtc_recording_task_info",
    "trtc_recording_task_status_since_timestamp_seconds",
    "trtc_recording_task_last_success_timestamp_seconds",
    "trtc_recording_task_consecutive_errors",
    "trtc_recording_task_storage_files",
)
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def make_task(task_id: str, status: Status = Status.IN_PROGRESS, **fields: Any) -> Task:
    fields.setdefault("region", "ap-guangzhou")
    fields.setdefault("account", "default")
    return Task(
        sdk_app_id=APP,
        task_id=task_id,
        status=status,
        status_since=1_700_000_000.0,
        registered_at=1_700_000_000.0,
        **fields,
    )


def render(view: StateView, accept: str | None = None) -> tuple[str, str]:
    body, content_type = MonitorMetrics().render(view, accept)
    return body.decode(), content_type


def openmetrics_families(text: str) -> list[Metric]:
    parsed: list[Metric] = list(
        openmetrics_parser.text_string_to_metric_families(text)  # type: ignore[no-untyped-call]
    )
    return parsed


def families(text: str) -> dict[str, Metric]:
    return {family.name: family for family in text_string_to_metric_families(text)}


def samples(text: str, name: str) -> list[Sample]:
    return [
        s
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


def by_task(found: list[Sample]) -> dict[str, list[Sample]]:
    grouped: dict[str, list[Sample]] = defaultdict(list)
    for sample in found:
        grouped[sample.labels["task_id"]].append(sample)
    return grouped


async def scrape(running: RunningDaemon, accept: str | None = None) -> str:
    headers = {"Accept": accept} if accept else {}
    async with running.session.get(f"{running.url}/metrics", headers=headers) as response:
        assert response.status == 200
        return await response.text()


async def register(running: RunningDaemon, task_id: str, **fields: Any) -> None:
    response = await running.register(APP, task_id, **fields)
    async with response:
        assert response.status == 201, await response.text()


async def wait_status(running: RunningDaemon, task_id: str, status: Status) -> None:
    async def reached() -> bool:
        task = running.daemon.registry.get(TaskKey(APP, task_id))
        return task is not None and task.status is status

    await wait_for_async(reached, timeout=10, what=f"{task_id} to be {status}")
