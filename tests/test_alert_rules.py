"""The desired alerts: identity, labels, and everything a task or an account asks for in one
call, tested as pure functions."""

from __future__ import annotations

import dataclasses
import re

from monitor.alerts.conditions import (
    ERROR,
    EXITED,
    STALE,
    STALE_NEW,
    AccountHealth,
    Thresholds,
    observe_credentials,
    observe_outcome,
    task_alerts,
)
from monitor.alerts.kinds import (
    MONITOR_AUTH_FAILURE,
    MONITOR_CREDENTIALS_EXPIRING,
    MONITOR_OVER_BUDGET,
    MONITOR_THROTTLED,
    NO_TASK_ALERT,
    TASK_ALERTS,
    TASK_ERROR,
    TASK_EXITED,
    TASK_KINDS,
    TASK_STALE,
    TaskKind,
)
from monitor.alerts.rules import (
    account_alerts,
    account_fingerprint,
    account_labels,
    desired_task_alerts,
    task_fingerprint,
    task_labels,
)
from monitor.alerts.settings import thresholds_of
from monitor.alerts.task_rules import (
    RULE_OF,
    TASK_RULES,
    error_annotations,
    exit_annotations,
    severity_of,
)
from monitor.config import AlertsConfig
from monitor.models import Outcome, Status, Task, TaskKey
from tests.support import T0, make_task
from tests.test_import_graph import MONITOR, import_graph


class TestIdentityAndLabels:
    def test_fingerprints_look_like_alertmanagers_and_depend_on_identity_only(self) -> None:
        key = TaskKey(1400000001, "t-1")
        fp = task_fingerprint(TASK_EXITED, key)
        assert re.fullmatch(r"[0-9a-f]{16}", fp)
        assert fp == task_fingerprint(TASK_EXITED, TaskKey(1400000001, "t-1"))
        assert fp != task_fingerprint(TASK_ERROR, key)
        assert fp != task_fingerprint(TASK_EXITED, TaskKey(1400000002, "t-1"))
        assert account_fingerprint(MONITOR_THROTTLED, "a") != account_fingerprint(
            MONITOR_THROTTLED, "b"
        )

    def test_task_alerts_carry_the_spec_labels_and_the_users_labels(self) -> None:
        t = make_task(labels={"room": "r-42", "customer": "acme", "empty": ""})
        labels = task_labels(TASK_EXITED, "critical", t)
        assert labels == {
            "alertname": "RecordingTaskExited",
            "severity": "critical",
            "account": "default",
            "region": "ap-guangzhou",
            "sdk_app_id": "1400000001",
            "task_id": "t-1",
            "room": "r-42",
            "customer": "acme",
        }

    def test_user_labels_cannot_shadow_the_monitors_labels(self) -> None:
        t = make_task(labels={"severity": "none", "task_id": "other", "__meta": "x"})
        labels = task_labels(TASK_EXITED, "critical", t)
        assert labels["severity"] == "critical"
        assert labels["task_id"] == "t-1"
        assert "__meta" not in labels

    def test_monitor_alerts_carry_alertname_severity_and_account(self) -> None:
        assert account_labels(MONITOR_AUTH_FAILURE, "acc") == {
            "alertname": "RecordingMonitorAuthFailure",
            "severity": "critical",
            "account": "acc",
        }
        assert account_labels(MONITOR_OVER_BUDGET, "acc")["severity"] == "warning"


def interval_15(task: Task) -> float:
    return 15.0


class TestDesiredAlerts:
    def test_a_task_asks_for_all_its_alerts_in_one_call(self) -> None:
        th = Thresholds(severity={**Thresholds().severity, TASK_EXITED: "page"})
        t = make_task(status=Status.EXITED, consecutive_errors=5, last_success_at=T0 - 1000)
        kinds = task_alerts(t, T0, th, interval_15)
        assert kinds == EXITED | ERROR | STALE | STALE_NEW
        desired = desired_task_alerts(kinds, t, T0, th, interval_15)
        # STALE_NEW qualifies STALE: it is no alert of its own.
        assert [d.alertname for d in desired] == [TASK_EXITED, TASK_ERROR, TASK_STALE]
        exited = desired[0]
        assert exited.fingerprint == task_fingerprint(TASK_EXITED, t.key)
        assert exited.labels == task_labels(TASK_EXITED, "page", t)
        assert exited.annotations == exit_annotations(t, None, th.expected_leave_codes)
        (error,) = desired_task_alerts(ERROR, t, T0, th, interval_15)
        assert error.annotations == error_annotations(t, 3)

    def test_an_account_answers_only_what_was_seen(self) -> None:
        health = AccountHealth()
        assert account_alerts("acc", health, T0, Thresholds()) == []
        observe_outcome(health, Outcome.THROTTLED, T0)
        health.required_rate, health.budget_rate = 5.0, 20.0
        verdicts = {v.alertname: v for v in account_alerts("acc", health, T0 + 1, Thresholds())}
        assert sorted(verdicts) == [MONITOR_OVER_BUDGET, MONITOR_THROTTLED]
        assert verdicts[MONITOR_OVER_BUDGET].desired is None
        throttled = verdicts[MONITOR_THROTTLED].desired
        assert throttled is not None
        assert throttled.fingerprint == account_fingerprint(MONITOR_THROTTLED, "acc")
        assert throttled.labels == account_labels(MONITOR_THROTTLED, "acc")

    def test_expiring_credentials_take_their_severity_and_can_be_disabled(self) -> None:
        health = AccountHealth()
        observe_credentials(health, failing=True, expires_at=T0 + 60, source="sts", error="x")
        on = Thresholds(credentials_severity="critical")
        (verdict,) = account_alerts("acc", health, T0, on)
        assert verdict.alertname == MONITOR_CREDENTIALS_EXPIRING
        assert verdict.desired is not None
        assert verdict.desired.labels["severity"] == "critical"
        off = Thresholds(credentials_enabled=False)
        (verdict,) = account_alerts("acc", health, T0, off)
        assert verdict.desired is None  # a disabled alert resolves: a verdict, not silence


class TestKinds:
    def test_every_kind_but_the_qualifier_is_an_alert(self) -> None:
        assert [name for _, name in TASK_KINDS] == list(TASK_ALERTS)
        assert {kind for kind, _ in TASK_KINDS} | {STALE_NEW} == set(TaskKind)
        assert STALE_NEW not in RULE_OF
        assert RULE_OF[STALE].alertname == TASK_STALE
        assert all(RULE_OF[kind].alertname == name for kind, name in TASK_KINDS)

    def test_the_sweeps_answer_is_a_kind_whatever_holds(self) -> None:
        quiet = task_alerts(make_task(), T0, Thresholds(), interval_15)
        assert quiet is NO_TASK_ALERT
        assert not quiet


class TestSettings:
    def test_the_thresholds_follow_the_alerts_section(self) -> None:
        config = AlertsConfig.model_validate(
            {
                "exit": {"severity": "page", "expected_leave_codes": [0]},
                "error": {"consecutive": 7},
                "stale": {"after": "2m"},
                "credentials": {"enabled": False, "before": "1h", "severity": "critical"},
            }
        )
        th = thresholds_of(config)
        assert severity_of(RULE_OF[EXITED], th) == "page"
        assert severity_of(RULE_OF[TaskKind.NOT_FOUND], th) == "warning"
        assert th.expected_leave_codes == frozenset({0})
        assert th.consecutive == 7
        assert th.stale_after.seconds(15.0) == 120.0
        assert (th.credentials_enabled, th.credentials_before) == (False, 3600.0)
        assert th.credentials_severity == "critical"
        multiple = thresholds_of(AlertsConfig.model_validate({"stale": {"after": "4x"}}))
        assert multiple.stale_after.seconds(15.0) == 60.0

    def test_the_defaults_match_the_configurations(self) -> None:
        configured = thresholds_of(AlertsConfig())
        # Thresholds() names no severity: each alert has its rule's default.
        assert dataclasses.replace(configured, severity={}) == Thresholds()
        assert {r.alertname: severity_of(r, configured) for r in TASK_RULES} == {
            r.alertname: severity_of(r, Thresholds()) for r in TASK_RULES
        }

    def test_the_rules_do_not_import_the_configuration_or_the_metrics(self) -> None:
        graph = import_graph(MONITOR)
        reached: set[str] = set()
        todo = ["monitor.alerts.rules"]
        while todo:
            module = todo.pop()
            if module not in reached:
                reached.add(module)
                todo.extend(graph.get(module, ()))
        assert {
            "monitor.alerts.conditions",
            "monitor.alerts.task_rules",
            "monitor.alerts.texts",
        } <= reached
        assert (
            sorted(
                m
                for m in reached
                if m.split(".")[:2] in (["monitor", "config"], ["monitor", "metrics"])
            )
            == []
        )
        assert "monitor.alerts.engine" not in reached
