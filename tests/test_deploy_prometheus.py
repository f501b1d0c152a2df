"""Prometheus artefacts under deploy/: the alert rules (with promtool's own unit tests) and
the scrape configuration, checked with the real tools users run on them.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.deploy_support import (
    EXPORTED_SERIES,
    PRODUCT_ALERTS,
    PROMETHEUS_YML,
    RULE_FILES,
    RULE_TESTS,
    RULES,
    RULES_DIR,
    RULES_TEST,
    TASK_LABELS,
    UPLOAD_RULES,
    UPLOAD_RULES_TEST,
    alert_rules,
    load_yaml,
    metric_names,
    require_tool,
    run,
)

# ---------------------------------------------------------------------------------------------
# Prometheus alert rules


class TestAlertRules:
    @pytest.mark.parametrize("path", RULE_FILES, ids=lambda p: p.name)
    def test_promtool_accepts_the_rules_file(self, path: Path) -> None:
        result = run([require_tool("promtool"), "check", "rules", str(path)])
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout

    @pytest.mark.parametrize("path", RULE_TESTS, ids=lambda p: p.name)
    def test_promtool_unit_tests_of_the_rules_pass(self, path: Path) -> None:
        result = run([require_tool("promtool"), "test", "rules", path.name], cwd=RULES_DIR)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout

    def test_the_upload_unit_tests_fail_when_the_deadline_is_wrong(self, tmp_path: Path) -> None:
        # Proves the unit tests pin alerts.upload.deadline's default (30m) to the minute.
        text = UPLOAD_RULES.read_text(encoding="utf-8")
        assert "for: 30m" in text
        (tmp_path / UPLOAD_RULES.name).write_text(
            text.replace("for: 30m", "for: 29m"), encoding="utf-8"
        )
        shutil.copy(UPLOAD_RULES_TEST, tmp_path / UPLOAD_RULES_TEST.name)
        result = run(
            [require_tool("promtool"), "test", "rules", UPLOAD_RULES_TEST.name], cwd=tmp_path
        )
        assert result.returncode != 0
        assert "RecordingUploadOverdue" in result.stdout + result.stderr

    def test_the_unit_tests_fail_when_a_threshold_is_wrong(self, tmp_path: Path) -> None:
        # Proves the unit tests pin the thresholds: two errors in a row must not alert.
        text = RULES.read_text(encoding="utf-8")
        assert "trtc_recording_task_consecutive_errors >= 3" in text
        (tmp_path / RULES.name).write_text(
            text.replace(
                "trtc_recording_task_consecutive_errors >= 3",
                "trtc_recording_task_consecutive_errors >= 2",
            ),
            encoding="utf-8",
        )
        shutil.copy(RULES_TEST, tmp_path / RULES_TEST.name)
        result = run([require_tool("promtool"), "test", "rules", RULES_TEST.name], cwd=tmp_path)
        assert result.returncode != 0
        assert "RecordingTaskError" in result.stdout + result.stderr

    def test_every_alert_of_the_product_is_defined(self) -> None:
        names = {rule.get("alert") for rule in alert_rules()}
        assert sorted(PRODUCT_ALERTS - names) == []
        assert {"TRTCMonitorDown", "RecordingMonitorConfigReloadFailed"} <= names

    def test_every_alert_has_a_severity_summary_and_description(self) -> None:
        for rule in alert_rules():
            assert rule["labels"]["severity"] in {"critical", "warning"}, rule["alert"]
            assert rule["annotations"]["summary"].strip(), rule["alert"]
            assert rule["annotations"]["description"].strip(), rule["alert"]

    def test_exits_credentials_and_monitor_down_page_and_the_rest_warn(self) -> None:
        severity = {rule["alert"]: rule["labels"]["severity"] for rule in alert_rules()}
        critical = {
            "RecordingTaskExited",
            "RecordingMonitorAuthFailure",
            # No credentials at all blind the monitor to the account's tasks just the same.
            "RecordingMonitorNoCredentials",
            "TRTCMonitorDown",
            # alerts.upload.severity: critical (a recording that never reaches storage is lost)
            "RecordingUploadFailed",
            "RecordingUploadOverdue",
            # With several replicas: tasks nobody watches, a replica that polls nothing.
            "TRTCMonitorTasksUnowned",
            "TRTCMonitorStoreDown",
        }
        assert {name for name, level in severity.items() if level == "critical"} == critical

    def test_rules_use_only_exported_metrics(self) -> None:
        for rule in alert_rules():
            names = metric_names(rule["expr"])
            assert names, rule["alert"]
            assert names <= EXPORTED_SERIES | {"up"}, (rule["alert"], names - EXPORTED_SERIES)

    def test_every_alert_is_unit_tested_both_firing_and_not_firing(self) -> None:
        firing: set[str] = set()
        silent: set[str] = set()
        for case in (c for path in RULE_TESTS for c in load_yaml(path)["tests"]):
            for check in case.get("alert_rule_test", []):
                (firing if check.get("exp_alerts") else silent).add(check["alertname"])
        names = {rule["alert"] for rule in alert_rules()}
        assert sorted(names - firing) == []
        assert sorted(names - silent) == []

    def test_task_alerts_keep_the_task_labels(self) -> None:
        # Every firing expectation of a task alert names the task it is about.
        for case in (c for path in RULE_TESTS for c in load_yaml(path)["tests"]):
            for check in case.get("alert_rule_test", []):
                if not check["alertname"].startswith("RecordingTask"):
                    continue
                for alert in check.get("exp_alerts") or []:
                    assert set(TASK_LABELS) <= set(alert["exp_labels"]), check


class TestToolRequirement:
    def test_a_missing_tool_fails_under_ci(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.setenv("CI", "true")
        with pytest.raises(pytest.fail.Exception, match="make system-deps"):
            require_tool("no-such-tool-for-trtc-monitor")

    def test_a_missing_tool_skips_outside_ci(self, monkeypatch: pytest.MonkeyPatch) -> None:
        monkeypatch.delenv("CI", raising=False)
        with pytest.raises(pytest.skip.Exception, match="make system-deps"):
            require_tool("no-such-tool-for-trtc-monitor")


class TestMetricNameExtraction:
    def test_it_sees_through_functions_aggregations_matchers_and_joins(self) -> None:
        expr = (
            'histogram_quantile(0.99, sum by (le, account) (rate(foo_bucket{a="b:c"}[5m]))) '
            "> on (account) group_left (room) max without (x) (bar_info) and bool baz offset 1m"
        )
        assert metric_names(expr) == {"foo_bucket", "bar_info", "baz"}

    def test_it_ignores_numbers_and_durations(self) -> None:
        assert metric_names("time() - last_seen > 1e3 and up == 0") == {"last_seen", "up"}


# ---------------------------------------------------------------------------------------------
# Prometheus configuration


class TestPrometheusConfig:
    def test_promtool_accepts_the_config_and_finds_the_rule_file(self) -> None:
        result = run(
            [require_tool("promtool"), "check", "config", PROMETHEUS_YML.name],
            cwd=PROMETHEUS_YML.parent,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert f"{len(RULE_FILES)} rule files found" in result.stdout
        for path in RULE_FILES:
            rules = [rule for group in load_yaml(path)["groups"] for rule in group["rules"]]
            assert f"{path.name}\n  SUCCESS: {len(rules)} rules found" in result.stdout

    def test_it_scrapes_the_daemon_as_job_trtc_monitor_every_15s(self) -> None:
        config = load_yaml(PROMETHEUS_YML)
        jobs = {job["job_name"]: job for job in config["scrape_configs"]}
        job = jobs["trtc-monitor"]
        assert job.get("scrape_interval", config["global"]["scrape_interval"]) == "15s"
        targets = [t for sc in job["static_configs"] for t in sc["targets"]]
        assert targets
        assert all(t.endswith(":9877") for t in targets)
        assert config["alerting"]["alertmanagers"]
        # The down alert selects this job name.
        assert 'up{job="trtc-monitor"}' in RULES.read_text(encoding="utf-8")
