"""RecordingUploadFailed and RecordingUploadOverdue: the pure conditions and the engine."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest

from monitor.alerts import AlertEngine, RetryPolicy
from monitor.alerts.conditions import (
    EXITED,
    FAILED_UPLOAD,
    OVERDUE_UPLOAD,
    Thresholds,
    stopped_at,
    task_alerts,
    upload_failed_firing,
    upload_overdue_firing,
)
from monitor.alerts.kinds import NO_TASK_ALERT
from monitor.alerts.task_rules import upload_failed_annotations, upload_overdue_annotations
from monitor.config import AlertsConfig
from monitor.metrics import MonitorMetrics
from monitor.models import Status, Task
from monitor.store import SqliteStore
from monitor.uploads import NO_UPLOAD, UploadEvent, UploadState, apply_upload_event
from tests.support import ManualClock
from tests.test_receivers import Sink, serving

T0 = 1_700_000_000.0
APP = 1400000001
DEADLINE = 1800.0
TH = Thresholds(upload_deadline=DEADLINE)


def upload(
    *events: tuple[int, int | None, float], code: str = "", message: str = ""
) -> UploadState:
    state = NO_UPLOAD
    for event_type, status, at in events:
        event = UploadEvent(event_type, status, code, message, at=at)
        state = apply_upload_event(state, event, at).state
    return state


def make_task(
    status: Status = Status.IN_PROGRESS, state: UploadState = NO_UPLOAD, **fields: Any
) -> Task:
    return Task(
        sdk_app_id=APP,
        task_id="t-up",
        region="ap-guangzhou",
        account="default",
        labels={"room": "r-9"},
        registered_at=T0,
        status=status,
        status_since=fields.pop("status_since", T0),
        last_success_at=T0,
        upload=state,
        **fields,
    )


def interval(task: Task) -> float:
    return 15.0


UPLOADING_STOPPED = upload((303, 0, T0), (302, None, T0 + 100))
FAILED = upload((303, 0, T0), (308, None, T0 + 50), code="InvalidParameter", message="AK bad")


class TestConditions:
    def test_a_failed_upload_fires_in_every_status_but_removed(self) -> None:
        for status in Status:
            task = make_task(status, FAILED)
            expected = status is not Status.REMOVED
            assert upload_failed_firing(task) is expected
            bits = task_alerts(task, T0 + 60, TH, interval)
            assert bool(bits & FAILED_UPLOAD) is expected, status

    def test_an_ended_task_with_a_failed_upload_also_keeps_its_exit_alert(self) -> None:
        bits = task_alerts(make_task(Status.ENDED, FAILED), T0 + 60, TH, interval)
        assert bits & EXITED
        assert bits & FAILED_UPLOAD

    def test_overdue_fires_after_the_deadline_from_the_stop_callback_not_before(self) -> None:
        task = make_task(Status.EXITED, UPLOADING_STOPPED, status_since=T0 + 400)
        assert stopped_at(task) == T0 + 100  # the callback's time, not the poll's
        at_deadline = T0 + 100 + DEADLINE
        assert not upload_overdue_firing(task, at_deadline, DEADLINE)
        assert not task_alerts(task, at_deadline, TH, interval) & OVERDUE_UPLOAD
        assert upload_overdue_firing(task, at_deadline + 1, DEADLINE)
        assert task_alerts(task, at_deadline + 1, TH, interval) & OVERDUE_UPLOAD

    def test_without_a_stop_callback_the_stopped_status_starts_the_clock(self) -> None:
        state = upload((303, 0, T0))
        for status in (Status.EXITED, Status.ENDED, Status.EXPIRED):
            task = make_task(status, state, status_since=T0 + 500)
            assert stopped_at(task) == T0 + 500
            assert not task_alerts(task, T0 + 500 + DEADLINE, TH, interval) & OVERDUE_UPLOAD
            assert task_alerts(task, T0 + 501 + DEADLINE, TH, interval) & OVERDUE_UPLOAD
        running = make_task(Status.IN_PROGRESS, state)
        assert stopped_at(running) is None
        assert not task_alerts(running, T0 + 100 * DEADLINE, TH, interval) & OVERDUE_UPLOAD

    def test_a_finish_or_a_removal_ends_the_overdue_condition(self) -> None:
        late = T0 + 10 * DEADLINE
        finished = upload((305, 0, T0 + 5000), (303, 0, T0), (302, None, T0 + 100))
        assert not task_alerts(make_task(Status.ENDED, finished), late, TH, interval) & (
            OVERDUE_UPLOAD | FAILED_UPLOAD
        )
        removed = make_task(Status.REMOVED, UPLOADING_STOPPED)
        assert task_alerts(removed, late, TH, interval) == NO_TASK_ALERT

    def test_disabled_upload_alerts_never_fire(self) -> None:
        off = Thresholds(upload_enabled=False)
        late = T0 + 10 * DEADLINE
        both = FAILED_UPLOAD | OVERDUE_UPLOAD
        assert not task_alerts(make_task(Status.IN_PROGRESS, FAILED), late, off, interval) & both
        stopped = make_task(Status.EXITED, UPLOADING_STOPPED)
        assert not task_alerts(stopped, late, off, interval) & both
        assert task_alerts(stopped, late, TH, interval) & OVERDUE_UPLOAD

    def test_the_hot_path_agrees_with_the_plain_conditions(self) -> None:
        states = [NO_UPLOAD, upload((303, 0, T0)), UPLOADING_STOPPED, FAILED, upload((305, 0, T0))]
        for status in Status:
            for state in states:
                for now in (T0 + 10, T0 + 100 + DEADLINE + 1, T0 + 600 + DEADLINE):
                    task = make_task(status, state, status_since=T0 + 600)
                    bits = task_alerts(task, now, TH, interval)
                    assert bool(bits & FAILED_UPLOAD) == upload_failed_firing(task)
                    assert bool(bits & OVERDUE_UPLOAD) == upload_overdue_firing(task, now, DEADLINE)


class TestAnnotations:
    def test_the_failure_names_the_event_the_code_and_the_message(self) -> None:
        text = upload_failed_annotations(make_task(Status.IN_PROGRESS, FAILED))
        assert "event 308" in text["summary"]
        assert "InvalidParameter" in text["summary"]
        assert "event 308 (upload error)" in text["description"]
        assert "code InvalidParameter" in text["description"]
        assert "'AK bad'" in text["description"]
        assert "t-up" in text["description"]

    def test_later_failures_of_the_same_episode_are_mentioned(self) -> None:
        state = apply_upload_event(FAILED, UploadEvent(305, 1, at=T0 + 70), T0 + 70).state
        text = upload_failed_annotations(make_task(Status.ENDED, state))
        assert "code InvalidParameter" in text["summary"] + text["description"]
        assert "Since then: event 305 (HLS upload stopped), code Status 1" in text["description"]

    def test_overdue_says_when_it_stopped_and_the_deadline(self) -> None:
        task = make_task(Status.EXITED, UPLOADING_STOPPED)
        text = upload_overdue_annotations(task, T0 + 100 + 2000, DEADLINE)
        assert "33m20s" in text["summary"]
        assert "within 30m" in text["description"]
        assert "2023-11-14T22:15:00Z" in text["description"]  # T0 + 100


# --------------------------------------------------------------------------- the engine


@pytest.fixture
async def sink() -> AsyncIterator[Sink]:
    async with serving(Sink()) as s:
        yield s


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    async with SqliteStore(tmp_path / "monitor.db") as s:
        yield s


def config(url: str, **upload_settings: Any) -> AlertsConfig:
    return AlertsConfig.model_validate(
        {
            "receivers": [{"type": "alertmanager", "name": "am", "urls": [url]}],
            "upload": {"deadline": "30m", **upload_settings},
            # only the alerts under test
            **{name: {"enabled": False} for name in ("exit", "error", "stale", "idle")},
        }
    )


async def start(store: SqliteStore, clock: ManualClock, url: str) -> AlertEngine:
    engine = AlertEngine(
        config(url),
        store,
        MonitorMetrics(),
        interval_of=interval,
        clock=clock,
        retry=RetryPolicy(attempts=1, base=0.01),
    )
    await engine.start()
    return engine


def names(alerts: Iterable[Any]) -> list[str]:
    return sorted(a.alertname for a in alerts)


class TestEngine:
    async def test_a_failure_fires_once_and_a_later_recovery_resolves_it(
        self, store: SqliteStore, sink: Sink
    ) -> None:
        clock = ManualClock()
        engine = await start(store, clock, sink.url)
        try:
            task = make_task(Status.IN_PROGRESS, FAILED)
            await engine.evaluate_task(task)
            await engine.evaluate_task(task)  # a repeat changes nothing
            assert names(engine.firing()) == ["RecordingUploadFailed"]
            [record] = engine.firing()
            assert record.labels["severity"] == "critical"
            assert "code InvalidParameter" in record.annotations["description"]
            clock.now = T0 + 600
            recovered = apply_upload_event(
                task.upload, UploadEvent(305, 2, at=T0 + 600), T0 + 600
            ).state
            task.upload = recovered
            await engine.evaluate_task(task)
            assert engine.firing() == []
            await engine.drain()
            bodies = [a for _, _, body in sink.requests for a in body]
            assert [a["labels"]["alertname"] for a in bodies] == ["RecordingUploadFailed"] * 2
            assert bodies[1]["endsAt"] == "2023-11-14T22:23:20.000Z"  # resolved at T0 + 600
        finally:
            await engine.stop()

    async def test_a_later_failure_of_the_same_episode_is_added_to_the_firing_alert(
        self, store: SqliteStore, sink: Sink
    ) -> None:
        clock = ManualClock()
        engine = await start(store, clock, sink.url)
        try:
            task = make_task(Status.IN_PROGRESS, FAILED)
            await engine.evaluate_task(task)
            task.upload = apply_upload_event(
                task.upload, UploadEvent(305, 1, at=T0 + 70), T0 + 70
            ).state
            await engine.evaluate_task(task)
            [record] = engine.firing()
            assert record.starts_at == T0  # the same alert
            assert "code InvalidParameter" in record.annotations["description"]
            assert "Since then: event 305" in record.annotations["description"]
            [saved] = [r for r in await store.load_alerts() if r.alertname == record.alertname]
            assert saved.annotations == record.annotations
        finally:
            await engine.stop()

    async def test_overdue_fires_after_the_deadline_and_survives_a_restart(
        self, store: SqliteStore, sink: Sink
    ) -> None:
        clock = ManualClock()
        engine = await start(store, clock, sink.url)
        task = make_task(Status.EXITED, UPLOADING_STOPPED, status_since=T0 + 100)
        try:
            clock.now = T0 + 100 + DEADLINE
            await engine.sweep([task])
            assert engine.firing() == []
            clock.now = T0 + 101 + DEADLINE
            await engine.sweep([task])
            assert names(engine.firing()) == ["RecordingUploadOverdue"]
            await engine.drain()
        finally:
            await engine.stop()
        assert len(sink.requests) == 1
        engine = await start(store, clock, sink.url)  # a new process, same store
        try:
            await engine.sweep([task])
            assert names(engine.firing()) == ["RecordingUploadOverdue"]
            await engine.drain()
            assert len(sink.requests) == 1  # not sent again
            clock.now += 60
            task.upload = apply_upload_event(
                task.upload, UploadEvent(305, 0, at=clock.now), clock.now
            ).state
            await engine.evaluate_task(task)
            assert engine.firing() == []
        finally:
            await engine.stop()
