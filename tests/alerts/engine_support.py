"""What the alert engine's tests share: the engine on a real SQLite store with a manual clock
(``Harness``) and helpers to drive and inspect it. The fixtures are in ``conftest.py``."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from monitor.alerts import AlertEngine, RetryPolicy
from monitor.config import AlertsConfig
from monitor.metrics import MonitorMetrics
from monitor.models import Outcome, Source, Status, Task, Transition
from monitor.store import AlertRecord, SqliteStore
from monitor.trtc.client import CallResult
from tests.support import ManualClock
from tests.test_receivers import Sink

RESEND = 60.0


def ok(status: str, request_id: str = "req-ok") -> CallResult:
    return CallResult(
        Outcome.OK, "", request_id=request_id, response={"Status": status, "RequestId": request_id}
    )


def am_config(url: str, **alerts: Any) -> AlertsConfig:
    return AlertsConfig.model_validate(
        {"receivers": [{"type": "alertmanager", "name": "am", "urls": [url], "resend": "1m"}]}
        | alerts
    )


def alerts_sent(sink: Sink) -> list[dict[str, Any]]:
    """Every alert of every Alertmanager request the sink received, in order."""
    return [alert for _, _, body in sink.requests for alert in body]


class Harness:
    """Engines on one store; the store stays open across engine restarts."""

    def __init__(self, store: SqliteStore, clock: ManualClock, metrics: MonitorMetrics) -> None:
        self.store = store
        self.clock = clock
        self.metrics = metrics
        self.engines: list[AlertEngine] = []

    async def engine(self, config: AlertsConfig, **kwargs: Any) -> AlertEngine:
        engine = AlertEngine(
            config,
            self.store,
            self.metrics,
            interval_of=kwargs.pop("interval_of", lambda task: 15.0),
            clock=self.clock,
            retry=RetryPolicy(attempts=1, base=0.01),
            redeliver_after=30.0,
            **kwargs,
        )
        await engine.start()
        self.engines.append(engine)
        return engine

    async def restart(self, engine: AlertEngine, config: AlertsConfig) -> AlertEngine:
        await engine.stop()
        self.metrics = MonitorMetrics()  # a new process
        return await self.engine(config)

    async def transition(
        self, task: Task, to: Status, source: Source = Source.POLL, **kwargs: Any
    ) -> Transition:
        """Move the task as the tracker would, and store it: what the daemon does first."""
        transition = Transition(
            task.sdk_app_id,
            task.task_id,
            task.status,
            to,
            self.clock.now,
            source,
            request_id=kwargs.pop("request_id", None),
            detail=kwargs,
        )
        task.status, task.status_since = to, self.clock.now
        task.ended_at = self.clock.now if task.final else None
        return await self.store.record_transition(task, transition)

    def gauge(self, alertname: str) -> float | None:
        return self.metrics.registry.get_sample_value(
            "trtc_monitor_alerts_firing", {"alertname": alertname}
        )


async def settle(engine: AlertEngine) -> None:
    await asyncio.wait_for(engine.drain(), timeout=15)


def stored_row(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT alertname, state FROM alerts"))


class CountingStore(SqliteStore):
    """The real store, counting the alert writes it is asked for."""

    writes = 0

    async def save_alert(self, record: AlertRecord) -> None:
        self.writes += 1
        await super().save_alert(record)

    async def save_alerts(self, records: Sequence[AlertRecord]) -> None:
        self.writes += len(records)
        await super().save_alerts(records)

    async def delete_alert(self, fingerprint: str) -> None:
        self.writes += 1
        await super().delete_alert(fingerprint)


async def eventually_async(probe: Any, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await probe():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {probe}")
        await asyncio.sleep(0.1)
