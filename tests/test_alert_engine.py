"""The alert engine on a real SQLite store, with a fake clock and receivers on loopback."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from monitor.alerts import ALERT_NAMES, AlertEngine, RetryPolicy
from monitor.alerts.engine import SWEEP_CHUNK
from monitor.alerts.payloads import rfc3339
from monitor.config import AlertsConfig
from monitor.metrics import MonitorMetrics
from monitor.models import Outcome, Source, Status, Task, Transition
from monitor.secrets import Secret
from monitor.status_rules import apply_poll, apply_removal
from monitor.store import AlertRecord, SqliteStore
from monitor.trtc.client import CallResult
from tests.support import alertmanager, http_json
from tests.test_receivers import Sink, serving

T0 = 1_700_000_000.0
APP = 1400000001
RESEND = 60.0


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def make_task(task_id: str = "t-1", status: Status = Status.IN_PROGRESS, **fields: Any) -> Task:
    defaults: dict[str, Any] = {
        "region": "ap-guangzhou",
        "account": "default",
        "labels": {"room": "r-42"},
        "registered_at": T0,
        "status_since": T0,
        "last_success_at": T0,
        # Seen running: a status answer came (RecordingTaskNotFound is for tasks never seen).
        "answer_status": Status.IN_PROGRESS,
    }
    defaults.update(fields)
    return Task(sdk_app_id=APP, task_id=task_id, status=status, **defaults)


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

    def __init__(self, store: SqliteStore, clock: Clock, metrics: MonitorMetrics) -> None:
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


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(tmp_path / "monitor.db") as s:
        yield s


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    async with serving(Sink()) as s:
        yield s


@pytest.fixture
async def harness(store: SqliteStore) -> AsyncIterator[Harness]:
    h = Harness(store, Clock(), MonitorMetrics())
    try:
        yield h
    finally:
        for engine in h.engines:
            await engine.stop()


async def settle(engine: AlertEngine) -> None:
    await asyncio.wait_for(engine.drain(), timeout=15)


def stored_row(db: Path) -> list[tuple[str, str]]:
    with sqlite3.connect(db) as conn:
        return list(conn.execute("SELECT alertname, state FROM alerts"))


class TestFiringAndDelivery:
    async def test_an_exit_is_stored_before_it_is_sent(
        self, harness: Harness, sink: Sink, tmp_path: Path
    ) -> None:
        sink.probe = lambda: stored_row(tmp_path / "monitor.db")
        engine = await harness.engine(am_config(sink.url))
        task = make_task()
        stored = await harness.transition(task, Status.EXITED, request_id="req-exit")
        await engine.evaluate_task(task, stored)
        await settle(engine)
        [alert] = alerts_sent(sink)
        assert sink.probed == [[("RecordingTaskExited", "firing")]]
        assert alert["labels"] == {
            "alertname": "RecordingTaskExited",
            "severity": "critical",
            "account": "default",
            "region": "ap-guangzhou",
            "sdk_app_id": str(APP),
            "task_id": "t-1",
            "room": "r-42",
        }
        assert "from InProgress to Exited" in alert["annotations"]["description"]
        assert "req-exit" in alert["annotations"]["description"]
        assert alert["startsAt"] == rfc3339(T0)
        assert alert["endsAt"] == rfc3339(T0 + 4 * RESEND)
        [record] = await harness.store.load_alerts()
        assert (record.state, record.last_sent_at) == ("firing", {"am": T0})

    async def test_after_a_restart_nothing_is_resent_before_the_resend_is_due(
        self, harness: Harness, sink: Sink
    ) -> None:
        config = am_config(sink.url)
        engine = await harness.engine(config)
        task = make_task()
        await engine.evaluate_task(task, await harness.transition(task, Status.EXITED))
        await settle(engine)
        assert len(alerts_sent(sink)) == 1

        harness.clock.now = T0 + 30
        engine = await harness.restart(engine, config)
        await engine.sweep([task])
        await settle(engine)
        assert len(alerts_sent(sink)) == 1
        assert harness.gauge("RecordingTaskExited") == 1  # known to the new process too

        harness.clock.now = T0 + RESEND
        await engine.sweep([task])
        await settle(engine)
        first, again = alerts_sent(sink)
        assert again["labels"] == first["labels"]
        assert again["startsAt"] == first["startsAt"]
        assert again["endsAt"] == rfc3339(T0 + RESEND + 4 * RESEND)
        [record] = await harness.store.load_alerts()
        assert record.last_sent_at == {"am": T0 + RESEND}

    async def test_a_resolve_is_delivered_once_and_then_the_record_goes(
        self, harness: Harness, sink: Sink
    ) -> None:
        engine = await harness.engine(am_config(sink.url))
        task = make_task()
        await engine.evaluate_task(task, await harness.transition(task, Status.EXITED))
        await settle(engine)
        harness.clock.now = T0 + 10
        removal = apply_removal(task, harness.clock.now)
        assert removal is not None
        await engine.evaluate_task(task, await harness.store.record_transition(task, removal))
        await settle(engine)
        _, resolved = alerts_sent(sink)
        assert resolved["endsAt"] == rfc3339(T0 + 10)
        assert await harness.store.load_alerts() == []
        assert engine.firing() == []
        for step in range(1, 4):
            harness.clock.now = T0 + 10 + step * RESEND
            await engine.sweep([task])
            await settle(engine)
        assert len(alerts_sent(sink)) == 2

    async def test_an_exit_stored_before_a_crash_is_alerted_exactly_once(
        self, harness: Harness, sink: Sink
    ) -> None:
        task = make_task()
        await harness.store.save_task(task)
        await harness.transition(task, Status.EXITED, request_id="req-before-crash")
        # The process died here: the transition is stored, no alert record exists.
        config = am_config(sink.url)
        engine = await harness.engine(config)
        await engine.sweep([task])
        await engine.sweep([task])
        await settle(engine)
        [alert] = alerts_sent(sink)
        assert "from InProgress to Exited" in alert["annotations"]["description"]
        assert "req-before-crash" in alert["annotations"]["description"]

        harness.clock.now = T0 + 5
        engine = await harness.restart(engine, config)
        await engine.sweep([task])
        await settle(engine)
        assert len(alerts_sent(sink)) == 1

    async def test_exited_then_ended_stays_one_alert_with_a_fresh_description(
        self, harness: Harness, sink: Sink
    ) -> None:
        engine = await harness.engine(am_config(sink.url))
        task = make_task()
        await engine.evaluate_task(task, await harness.transition(task, Status.EXITED))
        await settle(engine)
        harness.clock.now = T0 + 5
        ended = await harness.transition(
            task, Status.ENDED, request_id="req-gone", code="ResourceNotFound"
        )
        await engine.evaluate_task(task, ended)
        await settle(engine)
        [record] = engine.firing()
        assert record.starts_at == T0
        assert "from Exited to Ended" in record.annotations["description"]
        assert len(alerts_sent(sink)) == 1  # no new page for the same stop
        harness.clock.now = T0 + RESEND
        await engine.sweep([task])
        await settle(engine)
        resent = alerts_sent(sink)[-1]
        assert "ResourceNotFound" in resent["annotations"]["description"]
        assert resent["startsAt"] == rfc3339(T0)

    async def test_a_failed_delivery_is_tried_again_after_a_pause(
        self, harness: Harness, sink: Sink
    ) -> None:
        sink.statuses = [500]
        engine = await harness.engine(am_config(sink.url))
        task = make_task()
        await engine.evaluate_task(task, await harness.transition(task, Status.EXITED))
        await settle(engine)
        await engine.sweep([task])
        await settle(engine)
        assert len(sink.requests) == 1  # not hammering a failing receiver
        assert (await harness.store.load_alerts())[0].last_sent_at == {}
        harness.clock.now = T0 + 31
        await engine.sweep([task])
        await settle(engine)
        assert len(sink.requests) == 2
        assert (await harness.store.load_alerts())[0].last_sent_at == {"am": T0 + 31}

    async def test_a_resolve_owed_before_a_restart_is_delivered_after_it(
        self, harness: Harness, sink: Sink
    ) -> None:
        config = am_config(sink.url)
        engine = await harness.engine(config)
        task = make_task()
        await engine.evaluate_task(task, await harness.transition(task, Status.EXITED))
        await settle(engine)
        sink.statuses = [503]
        harness.clock.now = T0 + 10
        removal = apply_removal(task, harness.clock.now)
        assert removal is not None
        await engine.evaluate_task(task, await harness.store.record_transition(task, removal))
        await settle(engine)
        [owed] = await harness.store.load_alerts()
        assert (owed.state, owed.resolved_sent) == ("resolved", set())

        engine = await harness.restart(engine, config)
        await settle(engine)
        resolved = alerts_sent(sink)[-1]
        assert len(sink.requests) == 3
        assert resolved["endsAt"] == rfc3339(T0 + 10)
        assert await harness.store.load_alerts() == []

    async def test_a_receiver_that_never_heard_an_alert_is_not_told_it_resolved(
        self, harness: Harness, sink: Sink
    ) -> None:
        sink.statuses = [500]
        engine = await harness.engine(am_config(sink.url))
        task = make_task()
        await engine.evaluate_task(task, await harness.transition(task, Status.EXITED))
        await settle(engine)
        removal = apply_removal(task, harness.clock.now)
        assert removal is not None
        await engine.evaluate_task(task, await harness.store.record_transition(task, removal))
        await settle(engine)
        assert len(sink.requests) == 1
        assert await harness.store.load_alerts() == []

    async def test_a_webhook_without_resend_hears_fire_and_resolve_once(
        self, harness: Harness, sink: Sink
    ) -> None:
        config = AlertsConfig.model_validate(
            {
                "stale": {"enabled": False},  # hours pass without polls in this test
                "receivers": [{"type": "webhook", "name": "hook", "url": f"{sink.url}/hook"}],
            }
        )
        headers = {"hook": {"X-Token": Secret("tok-1")}}  # as resolve_secrets gives them
        engine = await harness.engine(config, webhook_headers=headers)
        task = make_task()
        await engine.evaluate_task(task, await harness.transition(task, Status.EXITED))
        for step in range(1, 4):
            harness.clock.now = T0 + step * 3600
            await engine.sweep([task])
        await settle(engine)
        removal = apply_removal(task, harness.clock.now)
        assert removal is not None
        await engine.evaluate_task(task, await harness.store.record_transition(task, removal))
        await settle(engine)
        statuses = [body["status"] for _, _, body in sink.requests]
        assert statuses == ["firing", "resolved"]
        assert all(headers["X-Token"] == "tok-1" for _, headers, _ in sink.requests)
        assert sink.requests[0][2]["version"] == "4"


class TestConditionsOverTime:
    async def test_stale_and_idle_fire_with_time_and_resolve_on_a_good_poll(
        self, harness: Harness
    ) -> None:
        engine = await harness.engine(AlertsConfig())
        task = make_task(status=Status.IDLE)
        harness.clock.now = T0 + 46
        await engine.sweep([task])
        assert [r.alertname for r in engine.firing()] == ["RecordingTaskStale"]
        harness.clock.now = T0 + 301
        await engine.sweep([task])
        assert sorted(r.alertname for r in engine.firing()) == [
            "RecordingTaskIdle",
            "RecordingTaskStale",
        ]
        harness.clock.now = T0 + 302
        apply_poll(task, ok("InProgress"), harness.clock.now)
        await engine.evaluate_task(task)
        assert engine.firing() == []
        assert await harness.store.load_alerts() == []  # no receiver: nothing owed

    async def test_the_monitors_own_downtime_does_not_make_tasks_stale(
        self, harness: Harness
    ) -> None:
        harness.clock.now = T0 + 600  # started ten minutes after the last observation
        engine = await harness.engine(AlertsConfig())
        task = make_task()
        await engine.sweep([task])
        assert engine.firing() == []
        harness.clock.now = T0 + 646
        await engine.sweep([task])
        assert [r.alertname for r in engine.firing()] == ["RecordingTaskStale"]

    async def test_a_standing_stale_alert_survives_a_restart(
        self, harness: Harness, sink: Sink
    ) -> None:
        config = am_config(sink.url)
        engine = await harness.engine(config)
        task = make_task()
        harness.clock.now = T0 + 100
        await engine.sweep([task])
        await settle(engine)
        harness.clock.now = T0 + 110
        engine = await harness.restart(engine, config)
        await engine.sweep([task])
        await settle(engine)
        [record] = engine.firing()
        assert (record.alertname, record.starts_at) == ("RecordingTaskStale", T0 + 100)
        assert len(alerts_sent(sink)) == 1

    async def test_errors_fire_once_however_many_polls_fail(self, harness: Harness) -> None:
        engine = await harness.engine(AlertsConfig())
        task = make_task()
        with capture_logs() as logs:
            for i in range(6):
                failure = CallResult(Outcome.TRANSIENT, "InternalError", request_id=f"req-{i}")
                apply_poll(task, failure, T0 + i)
                await engine.evaluate_task(task)
            [record] = engine.firing()
            apply_poll(task, ok("InProgress"), T0 + 7)
            await engine.evaluate_task(task)
        assert record.alertname == "RecordingTaskError"
        # Described as it was when it fired: the third failure in a row.
        assert "InternalError" in record.annotations["description"]
        assert "req-2" in record.annotations["description"]
        events = [e["event"] for e in logs]
        assert events.count("alert_firing") == 1
        assert events.count("alert_resolved") == 1
        assert engine.firing() == []

    async def test_tasks_left_out_of_the_sweep_have_their_alerts_resolved(
        self, harness: Harness
    ) -> None:
        engine = await harness.engine(AlertsConfig())
        task = make_task(status=Status.EXITED)
        await engine.sweep([task])
        assert len(engine.firing()) == 1
        await engine.sweep([])
        assert engine.firing() == []

    async def test_disabling_an_alert_by_reload_resolves_it(self, harness: Harness) -> None:
        engine = await harness.engine(AlertsConfig())
        task = make_task(status=Status.EXITED)
        await engine.sweep([task])
        assert len(engine.firing()) == 1
        engine.configure(AlertsConfig.model_validate({"exit": {"enabled": False}}))
        await engine.sweep([task])
        assert engine.firing() == []

    async def test_a_receiver_added_by_reload_hears_the_alerts_already_firing(
        self, harness: Harness, sink: Sink
    ) -> None:
        engine = await harness.engine(am_config(sink.url))
        task = make_task()
        await engine.evaluate_task(task, await harness.transition(task, Status.EXITED))
        await settle(engine)
        async with serving(Sink()) as hook:
            receivers = [
                {"type": "alertmanager", "name": "am", "urls": [sink.url], "resend": "1m"},
                {"type": "webhook", "name": "hook", "url": hook.url},
            ]
            engine.configure(AlertsConfig.model_validate({"receivers": receivers}))
            assert sorted(engine.receivers) == ["am", "hook"]
            harness.clock.now = T0 + 5
            await engine.sweep([task])
            await settle(engine)
            [(_, _, payload)] = hook.requests
            assert payload["alerts"][0]["labels"]["alertname"] == "RecordingTaskExited"
            assert len(sink.requests) == 1  # the first receiver is not due yet
            engine.configure(AlertsConfig.model_validate({"receivers": receivers[1:]}))
            assert sorted(engine.receivers) == ["hook"]

    async def test_a_purged_task_has_its_alert_resolved(self, harness: Harness, sink: Sink) -> None:
        engine = await harness.engine(am_config(sink.url))
        task = make_task()
        await harness.store.save_task(task)
        await engine.evaluate_task(task, await harness.transition(task, Status.ENDED))
        await settle(engine)
        harness.clock.now = T0 + 86_400
        purged = await harness.store.purge(before=harness.clock.now - 3600)
        assert purged == [task.key]
        await engine.on_purged(purged)
        await settle(engine)
        assert [a["endsAt"] for a in alerts_sent(sink)][-1] == rfc3339(T0 + 86_400)
        assert engine.firing() == []
        assert await harness.store.load_alerts() == []


class TestMonitorAlerts:
    async def test_rejected_credentials_fire_until_a_call_succeeds(self, harness: Harness) -> None:
        engine = await harness.engine(AlertsConfig())
        engine.on_api_outcome("acc", Outcome.AUTH, T0, "AuthFailure.SecretIdNotFound")
        await engine.sweep([])
        [record] = engine.firing()
        assert record.labels == {
            "alertname": "RecordingMonitorAuthFailure",
            "severity": "critical",
            "account": "acc",
        }
        assert "AuthFailure.SecretIdNotFound" in record.annotations["description"]
        engine.on_api_outcome("acc", Outcome.TRANSIENT, T0 + 1)
        await engine.sweep([])
        assert len(engine.firing()) == 1
        engine.on_api_outcome("acc", Outcome.OK, T0 + 2)
        await engine.sweep([])
        assert engine.firing() == []

    async def test_throttling_fires_and_resolves_five_minutes_after_the_last(
        self, harness: Harness
    ) -> None:
        engine = await harness.engine(AlertsConfig())
        engine.on_api_outcome("acc", Outcome.THROTTLED, T0)
        await engine.sweep([])
        assert [r.alertname for r in engine.firing()] == ["RecordingMonitorThrottled"]
        harness.clock.now = T0 + 299
        await engine.sweep([])
        assert len(engine.firing()) == 1
        harness.clock.now = T0 + 300
        await engine.sweep([])
        assert engine.firing() == []

    async def test_over_budget_follows_the_required_rate(self, harness: Harness) -> None:
        engine = await harness.engine(AlertsConfig())
        engine.set_budget("acc", required=133.3, budget=19.0)
        await engine.sweep([])
        [record] = engine.firing()
        assert (record.alertname, record.labels["severity"]) == (
            "RecordingMonitorOverBudget",
            "warning",
        )
        engine.set_budget("acc", required=10.0, budget=19.0)
        await engine.sweep([])
        assert engine.firing() == []

    async def test_a_monitor_alert_survives_a_restart_until_the_condition_is_seen_again(
        self, harness: Harness, sink: Sink
    ) -> None:
        config = am_config(sink.url)
        engine = await harness.engine(config)
        engine.on_api_outcome("acc", Outcome.AUTH, T0)
        await engine.sweep([])
        await settle(engine)
        engine = await harness.restart(engine, config)
        await engine.sweep([])
        await settle(engine)
        assert [r.alertname for r in engine.firing()] == ["RecordingMonitorAuthFailure"]
        assert len(alerts_sent(sink)) == 1
        engine.on_api_outcome("acc", Outcome.ENDED, T0 + 1)
        await engine.sweep([])
        await settle(engine)
        assert engine.firing() == []
        assert alerts_sent(sink)[-1]["endsAt"] == rfc3339(T0)

    async def test_a_forgotten_account_has_its_alerts_resolved(self, harness: Harness) -> None:
        engine = await harness.engine(AlertsConfig())
        engine.set_budget("old", required=50.0, budget=20.0)
        await engine.sweep([])
        assert len(engine.firing()) == 1
        engine.forget_account("old")
        await engine.sweep([])
        assert engine.firing() == []


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


class TestStateAndMetrics:
    async def test_the_firing_gauge_has_every_alert_name(self, harness: Harness) -> None:
        engine = await harness.engine(AlertsConfig())
        assert {name: harness.gauge(name) for name in ALERT_NAMES} == dict.fromkeys(
            ALERT_NAMES, 0.0
        )
        tasks = [make_task(f"t-{i}", status=Status.EXITED) for i in range(3)]
        await engine.sweep(tasks)
        assert harness.gauge("RecordingTaskExited") == 3
        assert harness.gauge("RecordingTaskIdle") == 0
        await engine.sweep(tasks[1:])
        assert harness.gauge("RecordingTaskExited") == 2

    async def test_a_sweep_without_changes_does_not_touch_the_store(self, tmp_path: Path) -> None:
        clock = Clock(T0 + 10)
        tasks = [make_task(f"t-{i}") for i in range(2000)]
        for task in tasks[:10]:
            task.status = Status.EXITED
        store = CountingStore(tmp_path / "count.db")
        await store.open()
        engine = AlertEngine(
            AlertsConfig(), store, MonitorMetrics(), interval_of=lambda t: 15.0, clock=clock
        )
        await engine.start()
        try:
            await engine.sweep(tasks)
            assert store.writes == 10
            clock.now += 5
            await engine.sweep(tasks)
            await engine.sweep(tasks)
            assert store.writes == 10
        finally:
            await engine.stop()
            await store.close()

    async def test_alerts_that_change_while_a_sweep_yields_are_not_undone_by_it(
        self, harness: Harness
    ) -> None:
        tasks = [make_task(f"t-{i:05}") for i in range(3 * SWEEP_CHUNK)]
        early, late = tasks[0], tasks[-1]
        late.status = Status.ENDED
        late.ended_at = T0
        reached_second_chunk = asyncio.Event()

        def interval_of(task: Task) -> float:
            if task is tasks[SWEEP_CHUNK]:
                reached_second_chunk.set()
            return 15.0

        engine = await harness.engine(AlertsConfig(), interval_of=interval_of)
        sweeping = asyncio.create_task(engine.sweep(tasks))
        await reached_second_chunk.wait()  # resumes only when the sweep yields again
        assert not sweeping.done()
        # Meanwhile (before the sweep gets the loop back): a not-yet-scanned task is purged,
        # and an already-scanned one exits.
        await engine.on_purged([late.key])
        exit_ = Transition(APP, early.task_id, early.status, Status.EXITED, T0, Source.POLL)
        early.status = Status.EXITED
        await engine.evaluate_task(early, exit_)
        await sweeping
        assert [(r.alertname, r.labels["task_id"]) for r in engine.firing()] == [
            ("RecordingTaskExited", early.task_id)
        ]

    async def test_firing_answers_copies(self, harness: Harness) -> None:
        engine = await harness.engine(AlertsConfig())
        await engine.sweep([make_task(status=Status.EXITED)])
        [record] = engine.firing()
        record.labels["task_id"] = "changed"
        assert engine.firing()[0].labels["task_id"] == "t-1"


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


async def eventually_async(probe: Any, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not await probe():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {probe}")
        await asyncio.sleep(0.1)


class TestHandover:
    """Two replicas' engines on one store: a task's alerts move with its ownership."""

    async def test_an_owner_change_neither_repeats_an_exit_alert_nor_loses_its_resolve(
        self, harness: Harness, sink: Sink
    ) -> None:
        owner = {"a"}
        config = am_config(sink.url)
        a = await harness.engine(config, owns=lambda key: "a" in owner)
        b = await harness.engine(config, owns=lambda key: "b" in owner)
        task = make_task()
        stored = await harness.transition(task, Status.EXITED, request_id="req-exit")
        await a.evaluate_task(task, stored)
        await b.evaluate_task(task, stored)  # not b's task: nothing
        await settle(a)
        assert [x["labels"]["alertname"] for x in alerts_sent(sink)] == ["RecordingTaskExited"]
        assert b.firing() == []

        # b takes the task over: a saves and drops its record, b loads it as a left it.
        owner.clear()
        await a.release([task.key])
        owner.add("b")
        assert await b.adopt([task.key]) == 1
        assert a.firing() == []
        [record] = b.firing()
        assert record.last_sent_at  # a's delivery is known: nothing to send again
        harness.clock.now += 5.0
        await b.sweep([task])
        await a.sweep([task])
        await settle(b)
        assert len(alerts_sent(sink)) == 1

        # The new owner resolves it when the task is removed.
        harness.clock.now += 5.0
        apply_removal(task, harness.clock.now)
        removed = await harness.transition(task, Status.REMOVED)
        await b.evaluate_task(task, removed)
        await a.evaluate_task(task, removed)
        await settle(b)
        sent = alerts_sent(sink)
        assert len(sent) == 2
        assert sent[1]["labels"]["alertname"] == "RecordingTaskExited"
        assert sent[1]["endsAt"] != sent[0]["endsAt"]
        assert b.firing() == []

    async def test_monitor_level_alerts_come_from_the_leader_only(
        self, harness: Harness, sink: Sink
    ) -> None:
        leader = {"a"}
        config = am_config(sink.url)
        a = await harness.engine(config, leads=lambda: "a" in leader)
        b = await harness.engine(config, leads=lambda: "b" in leader)
        for engine in (a, b):
            engine.on_api_outcome("default", Outcome.AUTH, harness.clock.now, "AuthFailure")
            await engine.sweep([])
        assert [r.alertname for r in a.firing()] == ["RecordingMonitorAuthFailure"]
        assert b.firing() == []
        await settle(a)
        await settle(b)
        names = [x["labels"]["alertname"] for x in alerts_sent(sink)]
        assert names == ["RecordingMonitorAuthFailure"]
