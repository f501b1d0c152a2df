"""The alert engine against a real Alertmanager."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from monitor.alerts import AlertEngine
from monitor.metrics import MonitorMetrics
from monitor.models import Source, Status, Transition
from monitor.status_rules import apply_removal
from monitor.store import SqliteStore
from tests.alerts.engine_support import (
    am_config,
    eventually_async,
    settle,
)
from tests.support import APP, alertmanager, http_json, make_task


class TestRealAlertmanager:
    async def test_it_shows_the_exit_alert_with_its_labels_and_drops_it_after_resolve(
        self, tmp_path: Path
    ) -> None:
        with alertmanager(tmp_path) as am:
            async with SqliteStore(tmp_path / "monitor.db") as store:
                config = am_config(am.url)
                engine = AlertEngine(
                    config,
                    store,
                    MonitorMetrics(),
                    interval_of=lambda t: 15.0,
                    external_url="http://127.0.0.1:9877",
                )
                await engine.start()
                try:
                    now = time.time()
                    task = make_task(
                        registered_at=now - 60, status_since=now - 60, last_success_at=now - 1
                    )
                    task.labels = {"room": "r-42", "customer": "acme"}
                    await store.save_task(task)
                    task.status, task.status_since = Status.EXITED, now
                    transition = Transition(
                        APP, "t-1", Status.IN_PROGRESS, Status.EXITED, now, Source.CALLBACK,
                        detail={"leave_code": 3},
                    )  # fmt: skip
                    task.extra["leave_code"] = 3
                    stored = await store.record_transition(task, transition)
                    await engine.evaluate_task(task, stored)
                    await settle(engine)

                    async def active() -> list[dict[str, Any]]:
                        url = f"{am.url}/api/v2/alerts?active=true"
                        answer: list[dict[str, Any]] = await asyncio.to_thread(http_json, url)
                        return answer

                    found: list[dict[str, Any]] = []

                    async def shows_alert() -> bool:
                        found[:] = await active()
                        return bool(found)

                    await eventually_async(shows_alert)
                    [alert] = found
                    assert alert["labels"] == {
                        "alertname": "RecordingTaskExited",
                        "severity": "critical",
                        "account": "default",
                        "region": "ap-guangzhou",
                        "sdk_app_id": str(APP),
                        "task_id": "t-1",
                        "room": "r-42",
                        "customer": "acme",
                    }
                    assert alert["status"]["state"] == "active"
                    assert "bot kicked by the server" in alert["annotations"]["description"]
                    assert (
                        alert["generatorURL"] == "http://127.0.0.1:9877/api/v1/tasks/1400000001/t-1"
                    )

                    removal = apply_removal(task, time.time())
                    assert removal is not None
                    await engine.evaluate_task(task, await store.record_transition(task, removal))
                    await settle(engine)

                    async def gone() -> bool:
                        return await active() == []

                    await eventually_async(gone)
                finally:
                    await engine.stop()
