"""The task alert rules table: one record per rule, read by the rules, the settings and the
names, so that a rule is added in one place."""

from __future__ import annotations

from monitor.alerts.conditions import STALE_NEW, TaskKind, Thresholds
from monitor.alerts.kinds import TASK_ALERTS, TASK_SEVERITY
from monitor.alerts.rules import desired_task_alerts
from monitor.alerts.settings import thresholds_of
from monitor.alerts.task_rules import RULE_OF, TASK_RULES, severity_of
from monitor.config import AlertsConfig
from monitor.models import Status
from tests.support import T0, make_task


def interval_15(task: object) -> float:
    return 15.0


class TestTheTable:
    def test_every_kind_but_the_qualifier_has_one_rule_with_its_own_name(self) -> None:
        kinds = [rule.kind for rule in TASK_RULES]
        assert sorted(kinds, key=lambda k: k.value) == sorted(
            set(TaskKind) - {STALE_NEW}, key=lambda k: k.value
        )
        assert len({rule.alertname for rule in TASK_RULES}) == len(TASK_RULES)
        assert tuple(rule.alertname for rule in TASK_RULES) == TASK_ALERTS
        assert {rule.alertname: rule.severity for rule in TASK_RULES} == TASK_SEVERITY

    def test_each_rule_says_what_its_record_holds(self) -> None:
        task = make_task(status=Status.IDLE, status_since=T0 - 4000, consecutive_errors=9)
        for rule in TASK_RULES:
            (desired,) = desired_task_alerts(rule.kind, task, T0, Thresholds(), interval_15)
            assert desired.alertname == rule.alertname
            assert desired.labels["severity"] == rule.severity
            assert set(desired.annotations) == {"summary", "description"}
            assert desired.annotations["summary"]


class TestSettingsFromTheTable:
    def test_a_rule_with_a_section_takes_its_severity_from_it_the_others_keep_theirs(
        self,
    ) -> None:
        sections = {r.section for r in TASK_RULES if r.section is not None}
        config = AlertsConfig.model_validate({s: {"severity": "page"} for s in sections})
        th = thresholds_of(config)
        for rule in TASK_RULES:
            expected = "page" if rule.section is not None else rule.severity
            assert severity_of(rule, th) == expected
        assert RULE_OF[TaskKind.NOT_FOUND].section is None

    def test_every_threshold_is_read_from_the_key_it_names(self) -> None:
        config = AlertsConfig.model_validate(
            {
                "exit": {"enabled": False, "expected_leave_codes": [5]},
                "error": {"enabled": False, "consecutive": 11},
                "stale": {"enabled": False, "after": "7m"},
                "idle": {"enabled": False, "after": "9m"},
                "upload": {"enabled": False, "deadline": "1h"},
                "credentials": {"enabled": False, "before": "2h", "severity": "critical"},
            }
        )
        th = thresholds_of(config)
        assert (th.exit_enabled, th.expected_leave_codes) == (False, frozenset({5}))
        assert (th.error_enabled, th.consecutive) == (False, 11)
        assert (th.stale_enabled, th.stale_after.seconds(15.0)) == (False, 420.0)
        assert (th.idle_enabled, th.idle_after) == (False, 540.0)
        assert (th.upload_enabled, th.upload_deadline) == (False, 3600.0)
        assert (th.credentials_enabled, th.credentials_before) == (False, 7200.0)
        assert th.credentials_severity == "critical"
