"""The alert engine delivers each change once it is stored: fire, resend, retry, resolve."""

from __future__ import annotations

from pathlib import Path

from monitor.alerts.payloads import rfc3339
from monitor.config import AlertsConfig
from monitor.models import Status
from monitor.secrets import Secret
from monitor.status_rules import apply_removal
from tests.alerts.engine_support import (
    RESEND,
    Harness,
    alerts_sent,
    am_config,
    settle,
    stored_row,
)
from tests.support import APP, T0, make_task
from tests.test_receivers import Sink


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
