"""The alert engine follows the task conditions over time: fire, keep, resolve on the sweep."""

from __future__ import annotations

from structlog.testing import capture_logs

from monitor.alerts.payloads import rfc3339
from monitor.config import AlertsConfig
from monitor.models import Outcome, Status
from monitor.status_rules import apply_poll
from monitor.trtc.client import CallResult
from tests.alerts.engine_support import (
    Harness,
    alerts_sent,
    am_config,
    ok,
    settle,
)
from tests.support import T0, make_task
from tests.test_receivers import Sink, serving


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
