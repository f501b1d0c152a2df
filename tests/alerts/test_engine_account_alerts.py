"""The alert engine's monitor-level alerts: credentials, throttling, budget, forgotten accounts."""

from __future__ import annotations

from monitor.alerts.payloads import rfc3339
from monitor.config import AlertsConfig
from monitor.models import Outcome
from tests.alerts.engine_support import (
    Harness,
    alerts_sent,
    am_config,
    settle,
)
from tests.support import T0
from tests.test_receivers import Sink


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
