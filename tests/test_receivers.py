"""Alert delivery: payload shapes, and workers against real HTTP servers on loopback."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from monitor.alerts.payloads import (
    ZERO_TIME,
    Notice,
    alertmanager_alerts,
    generator_url,
    rfc3339,
    webhook_payloads,
)
from monitor.alerts.receivers import (
    AlertmanagerWorker,
    DeliveryContext,
    ReceiverWorker,
    WebhookWorker,
)
from monitor.alerts.retry import RetryPolicy
from monitor.alerts.worker_factory import build_worker
from monitor.config import AlertsConfig
from monitor.metrics import MonitorMetrics
from monitor.models import TaskKey
from tests.support import free_port

T0 = 1_700_000_000.0
FAST = RetryPolicy(attempts=3, base=0.01, cap=0.02)


def notice(
    fp: str = "0123456789abcdef",
    alertname: str = "RecordingTaskExited",
    firing: bool = True,
    starts_at: float = T0,
    ends_at: float | None = None,
    **labels: str,
) -> Notice:
    return Notice(
        fingerprint=fp,
        alertname=alertname,
        labels={"alertname": alertname, "severity": "critical", **labels},
        annotations={"summary": f"{alertname} {fp}", "description": "d"},
        firing=firing,
        starts_at=starts_at,
        ends_at=ends_at,
        task=TaskKey(1400000001, "t/1"),
    )


# --- a recording HTTP server on loopback --------------------------------------------------------


@dataclass
class Sink:
    """Records every request; answers with the queued statuses, then 200."""

    url: str = ""
    requests: list[tuple[str, dict[str, str], Any]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    hold: asyncio.Event | None = None
    # Called on every request, its answers kept: what the world looked like at that moment.
    probe: Callable[[], Any] | None = None
    probed: list[Any] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append((request.path, dict(request.headers), body))
        if self.probe is not None:
            self.probed.append(self.probe())
        if self.hold is not None:
            await self.hold.wait()
        status = self.statuses.pop(0) if self.statuses else 200
        return web.Response(status=status, text="ok")


@asynccontextmanager
async def serving(s: Sink) -> AsyncIterator[Sink]:
    """Serve ``s`` on a free loopback port for the duration of the block."""
    app = web.Application()
    app.router.add_route("POST", "/{tail:.*}", s.handle)
    runner = web.AppRunner(app, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    s.url = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        yield s
    finally:
        if s.hold is not None:
            s.hold.set()
        await runner.cleanup()


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    async with serving(Sink()) as s:
        yield s


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


Results = list[tuple[str, list[Notice], list[Notice]]]


def recorder(
    results: Results,
) -> Callable[[ReceiverWorker, list[Notice], list[Notice]], Awaitable[None]]:
    async def on_result(
        worker: ReceiverWorker, delivered: list[Notice], failed: list[Notice]
    ) -> None:
        results.append((worker.name, delivered, failed))

    return on_result


def make_worker(
    receiver: dict[str, Any],
    session: aiohttp.ClientSession,
    metrics: MonitorMetrics,
    results: Results,
    headers: dict[str, str] | None = None,
    external_url: str = "",
) -> ReceiverWorker:
    config = AlertsConfig.model_validate({"receivers": [receiver]}).receivers[0]
    context = DeliveryContext(
        session=session,
        notifications=metrics.notifications,
        clock=lambda: T0 + 100,
        on_result=recorder(results),
        retry=FAST,
        external_url=external_url,
    )
    return build_worker(config, context, headers=headers)


def count(metrics: MonitorMetrics, receiver: str, outcome: str) -> float:
    value = metrics.registry.get_sample_value(
        "trtc_monitor_notifications_total", {"receiver": receiver, "outcome": outcome}
    )
    return value or 0.0


async def eventually(probe: Callable[[], object], timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not probe():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {probe}")
        await asyncio.sleep(0.01)


# --- payloads (pure) ----------------------------------------------------------------------------


class TestAlertmanagerPayload:
    def test_firing_alerts_end_in_the_future_and_resolved_ones_at_their_resolve(self) -> None:
        body = alertmanager_alerts(
            [notice(), notice(fp="f2", firing=False, ends_at=T0 + 30)], now=T0 + 60, hold=240
        )
        assert body[0]["startsAt"] == "2023-11-14T22:13:20.000Z"
        assert body[0]["endsAt"] == rfc3339(T0 + 300)
        assert body[1]["endsAt"] == rfc3339(T0 + 30)
        assert body[0]["labels"]["alertname"] == "RecordingTaskExited"
        assert body[0]["annotations"]["summary"] == "RecordingTaskExited 0123456789abcdef"
        assert set(body[0]) == {"labels", "annotations", "startsAt", "endsAt"}

    def test_the_generator_url_points_at_the_task_in_the_monitors_api(self) -> None:
        body = alertmanager_alerts([notice()], now=T0, hold=60, external_url="http://m:9877/")
        assert body[0]["generatorURL"] == "http://m:9877/api/v1/tasks/1400000001/t%2F1"
        monitor = Notice("f", "RecordingMonitorThrottled", {}, {}, True, T0)
        assert generator_url("http://m:9877", monitor) == "http://m:9877/api/v1/alerts"

    def test_times_are_rfc3339_in_utc_with_milliseconds(self) -> None:
        assert rfc3339(T0 + 0.25) == "2023-11-14T22:13:20.250Z"


class TestWebhookPayload:
    def test_the_shape_is_alertmanagers_webhook_version_4(self) -> None:
        [(members, payload)] = webhook_payloads(
            [notice(fp="a", room="r1"), notice(fp="b", room="r2")], "hook", "http://m"
        )
        assert len(members) == 2
        assert payload["version"] == "4"
        assert payload["groupKey"] == '{}:{alertname="RecordingTaskExited"}'
        assert payload["truncatedAlerts"] == 0
        assert payload["status"] == "firing"
        assert payload["receiver"] == "hook"
        assert payload["groupLabels"] == {"alertname": "RecordingTaskExited"}
        assert payload["commonLabels"] == {
            "alertname": "RecordingTaskExited",
            "severity": "critical",
        }
        assert payload["commonAnnotations"] == {"description": "d"}
        assert payload["externalURL"] == "http://m"
        first = payload["alerts"][0]
        assert set(first) == {
            "status", "labels", "annotations", "startsAt", "endsAt", "generatorURL", "fingerprint"
        }  # fmt: skip
        assert (first["status"], first["endsAt"], first["fingerprint"]) == (
            "firing",
            ZERO_TIME,
            "a",
        )

    def test_alerts_are_grouped_by_name_and_a_group_of_resolved_alerts_is_resolved(self) -> None:
        groups = webhook_payloads(
            [
                notice(fp="a", firing=False, ends_at=T0 + 5),
                notice(fp="b", alertname="RecordingTaskIdle"),
            ],
            "hook",
        )
        by_name = {p["groupLabels"]["alertname"]: p for _, p in groups}
        resolved = by_name["RecordingTaskExited"]
        assert resolved["status"] == "resolved"
        assert resolved["alerts"][0]["endsAt"] == rfc3339(T0 + 5)
        assert by_name["RecordingTaskIdle"]["status"] == "firing"


# --- workers against loopback servers -----------------------------------------------------------


class TestWebhookDelivery:
    async def test_the_payload_and_the_configured_headers_arrive(
        self, sink: Sink, session: aiohttp.ClientSession
    ) -> None:
        metrics, results = MonitorMetrics(), Results()
        worker = make_worker(
            {"type": "webhook", "name": "hook", "url": f"{sink.url}/hooks/abc"},
            session, metrics, results,
            headers={"Authorization": "Bearer s3cret-token", "X-Tenant": "acme"},
            external_url="http://monitor:9877",
        )  # fmt: skip
        worker.start()
        try:
            assert worker.enqueue(notice(room="r-42"))
            await eventually(lambda: results)
        finally:
            await worker.stop()
        [(path, headers, body)] = sink.requests
        assert path == "/hooks/abc"
        assert headers["Authorization"] == "Bearer s3cret-token"
        assert headers["X-Tenant"] == "acme"
        assert headers["Content-Type"] == "application/json"
        assert body["version"] == "4"
        assert body["receiver"] == "hook"
        assert body["externalURL"] == "http://monitor:9877"
        assert body["alerts"][0]["labels"]["room"] == "r-42"
        assert results[0][0] == "hook"
        assert [n.fingerprint for n in results[0][1]] == ["0123456789abcdef"]
        assert count(metrics, "hook", "success") == 1
        assert worker.pending == {}

    async def test_a_server_error_is_retried_and_then_delivered(
        self, sink: Sink, session: aiohttp.ClientSession
    ) -> None:
        metrics, results = MonitorMetrics(), Results()
        sink.statuses = [503, 502]
        worker = make_worker(
            {"type": "webhook", "name": "h", "url": sink.url}, session, metrics, results
        )
        worker.start()
        try:
            worker.enqueue(notice())
            await eventually(lambda: results)
        finally:
            await worker.stop()
        assert len(sink.requests) == 3
        assert (count(metrics, "h", "failure"), count(metrics, "h", "success")) == (2, 1)
        assert results[0][2] == []

    async def test_a_client_error_is_not_retried(
        self, sink: Sink, session: aiohttp.ClientSession
    ) -> None:
        metrics, results = MonitorMetrics(), Results()
        sink.statuses = [400]
        worker = make_worker(
            {"type": "webhook", "name": "h", "url": sink.url}, session, metrics, results
        )
        worker.start()
        try:
            worker.enqueue(notice())
            await eventually(lambda: results)
        finally:
            await worker.stop()
        assert len(sink.requests) == 1
        assert count(metrics, "h", "failure") == 1
        assert [n.fingerprint for n in results[0][2]] == ["0123456789abcdef"]
        assert "0123456789abcdef" in worker.retry_at  # the engine tries again later


class TestAlertmanagerDelivery:
    async def test_every_listed_alertmanager_gets_the_alerts(
        self, session: aiohttp.ClientSession
    ) -> None:
        metrics, results = MonitorMetrics(), Results()
        sinks = [Sink(), Sink(statuses=[500, 500, 500])]
        async with serving(sinks[0]), serving(sinks[1]):
            receiver = {"type": "alertmanager", "name": "am", "urls": [s.url for s in sinks]}
            worker = make_worker({**receiver, "resend": "1m"}, session, metrics, results)
            assert isinstance(worker, AlertmanagerWorker)
            worker.start()
            try:
                worker.enqueue(notice())
                await eventually(lambda: results)
            finally:
                await worker.stop()
        assert [r[0] for r in sinks[0].requests] == ["/api/v2/alerts"]
        assert len(sinks[1].requests) == 3  # retried: one answering is enough to deliver
        [alert] = sinks[0].requests[0][2]
        assert alert["endsAt"] == rfc3339(T0 + 100 + 4 * 60)
        assert len(results[0][1]) == 1  # delivered, because one Alertmanager accepted
        assert (count(metrics, "am", "success"), count(metrics, "am", "failure")) == (1, 3)


class TestUnreachableReceiver:
    async def test_it_never_blocks_the_caller_and_its_failures_are_counted(
        self, session: aiohttp.ClientSession
    ) -> None:
        metrics, results = MonitorMetrics(), Results()
        closed = free_port()  # nothing listens there: connections are refused
        worker = make_worker(
            {"type": "alertmanager", "name": "down", "urls": [f"http://127.0.0.1:{closed}"]},
            session, metrics, results,
        )  # fmt: skip
        ticks = 0
        stop = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not stop.is_set():
                ticks += 1
                await asyncio.sleep(0.001)

        ticking = asyncio.create_task(ticker())
        worker.start()
        try:
            await asyncio.sleep(0)
            started = ticks
            for i in range(5):
                # Synchronous: it returns without giving the loop a chance to run anything.
                assert worker.enqueue(notice(fp=f"fp-{i}"))
            assert ticks == started
            await eventually(lambda: results)
            assert ticks > started  # the loop kept running while deliveries failed
        finally:
            stop.set()
            await ticking
            await worker.stop()
        assert count(metrics, "down", "failure") == FAST.attempts
        assert count(metrics, "down", "success") == 0
        assert {n.fingerprint for n in results[0][2]} == {f"fp-{i}" for i in range(5)}
        assert set(worker.retry_at) == {f"fp-{i}" for i in range(5)}

    async def test_failures_are_logged_without_the_url_path_or_the_headers(
        self, session: aiohttp.ClientSession
    ) -> None:
        metrics, results = MonitorMetrics(), Results()
        closed = free_port()
        worker = make_worker(
            {"type": "webhook", "name": "h", "url": f"http://127.0.0.1:{closed}/hook/T0KEN-PATH"},
            session, metrics, results,
            headers={"Authorization": "Bearer very-secret-value"},
        )  # fmt: skip
        with capture_logs() as logs:
            worker.start()
            try:
                worker.enqueue(notice())
                await eventually(lambda: results)
            finally:
                await worker.stop()
        failed = [e for e in logs if e["event"] == "notification_failed"]
        assert failed
        assert failed[0]["target"] == f"http://127.0.0.1:{closed}"
        text = json.dumps(logs, default=str) + repr(worker)
        assert "very-secret-value" not in text
        assert "T0KEN-PATH" not in text


class TestQueue:
    async def test_a_full_queue_drops_the_oldest_and_counts_it(
        self, sink: Sink, session: aiohttp.ClientSession
    ) -> None:
        metrics, results = MonitorMetrics(), Results()
        worker = make_worker(
            {"type": "webhook", "name": "q", "url": sink.url, "queue_size": 2},
            session, metrics, results,
        )  # fmt: skip
        assert isinstance(worker, WebhookWorker)
        for i in range(5):
            assert worker.enqueue(notice(fp=f"n{i}"))
        assert count(metrics, "q", "dropped") == 3
        assert worker.queued() == 2
        assert not worker.has_room()
        assert set(worker.pending) == {"n3", "n4"}
        assert set(worker.retry_at) == {"n0", "n1", "n2"}  # tried again later by the engine
        worker.start()
        try:
            await eventually(lambda: results)
        finally:
            await worker.stop()
        delivered = [a["fingerprint"] for _, _, body in sink.requests for a in body["alerts"]]
        assert delivered == ["n3", "n4"]

    async def test_stop_gives_up_on_a_hanging_receiver_within_its_grace(
        self, sink: Sink, session: aiohttp.ClientSession
    ) -> None:
        metrics, results = MonitorMetrics(), Results()
        sink.hold = asyncio.Event()  # the server never answers
        worker = make_worker(
            {"type": "webhook", "name": "h", "url": sink.url, "timeout": "10m"},
            session, metrics, results,
        )  # fmt: skip
        worker.start()
        worker.enqueue(notice())
        await eventually(lambda: sink.requests)
        # Without the grace, stop would wait for the ten-minute request timeout.
        await asyncio.wait_for(worker.stop(grace=0.05), timeout=30)
        assert not worker.enqueue(notice(fp="late"))
        assert results == []
