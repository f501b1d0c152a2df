"""Deployment artefacts under deploy/, checked with the real tools users run on them.

promtool, amtool and prometheus-alertmanager come from the Debian packages that `make test`
installs; without them these tests fail under CI and are skipped elsewhere.
"""

from __future__ import annotations

import configparser
import fnmatch
import http.server
import json
import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
import tomllib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from monitor.config import Config, parse_config

ROOT = Path(__file__).resolve().parent.parent
DEPLOY = ROOT / "deploy"
RULES_DIR = DEPLOY / "prometheus" / "rules"
RULES = RULES_DIR / "trtc-recording.rules.yml"
RULES_TEST = RULES_DIR / "trtc-recording.rules.test.yml"
UPLOAD_RULES = RULES_DIR / "trtc-recording-uploads.rules.yml"
UPLOAD_RULES_TEST = RULES_DIR / "trtc-recording-uploads.rules.test.yml"
HA_RULES = RULES_DIR / "trtc-recording-ha.rules.yml"
HA_RULES_TEST = RULES_DIR / "trtc-recording-ha.rules.test.yml"
RULE_FILES = (RULES, UPLOAD_RULES, HA_RULES)
RULE_TESTS = (RULES_TEST, UPLOAD_RULES_TEST, HA_RULES_TEST)
PROMETHEUS_YML = DEPLOY / "prometheus" / "prometheus.yml"
ALERTMANAGER_YML = DEPLOY / "alertmanager" / "alertmanager.yml"
DASHBOARD = DEPLOY / "grafana" / "trtc-recording-monitor.json"
K8S = DEPLOY / "kubernetes"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = DEPLOY / "Dockerfile.dockerignore"
UNIT = DEPLOY / "systemd" / "trtc-monitor.service"
ENV_EXAMPLE = DEPLOY / "systemd" / "trtc-monitor.env.example"

# The exported metrics (the product's metric contract); histograms also expose
# _bucket, _sum and _count series.
GAUGES_AND_COUNTERS = frozenset(
    {
        "trtc_recording_task_status",
        "trtc_recording_task_info",
        "trtc_recording_task_status_since_timestamp_seconds",
        "trtc_recording_task_last_success_timestamp_seconds",
        "trtc_recording_task_consecutive_errors",
        "trtc_recording_task_storage_files",
        "trtc_recording_tasks",
        "trtc_recording_transitions_total",
        "trtc_monitor_api_requests_total",
        "trtc_monitor_ratelimit_limit",
        "trtc_monitor_ratelimit_effective_rate",
        "trtc_monitor_poll_required_rate",
        "trtc_monitor_alerts_firing",
        "trtc_monitor_notifications_total",
        "trtc_monitor_callbacks_total",
        "trtc_monitor_config_last_reload_successful",
        "trtc_monitor_build_info",
        "trtc_recording_task_upload_state",
        "trtc_recording_uploads_total",
        "trtc_monitor_cluster_replicas",
        "trtc_monitor_owned_tasks",
        "trtc_monitor_replica_info",
        "trtc_monitor_store_up",
        "trtc_monitor_credentials_expiry_timestamp_seconds",
        "trtc_monitor_credentials_refresh_total",
    }
)
HISTOGRAMS = frozenset(
    {
        "trtc_monitor_api_request_duration_seconds",
        "trtc_monitor_ratelimit_wait_seconds",
        "trtc_monitor_poll_delay_seconds",
    }
)
EXPORTED_SERIES = GAUGES_AND_COUNTERS | {
    f"{name}{suffix}" for name in HISTOGRAMS for suffix in ("_bucket", "_sum", "_count")
}

PRODUCT_ALERTS = frozenset(
    {
        "RecordingTaskExited",
        "RecordingTaskError",
        "RecordingTaskStale",
        "RecordingTaskIdle",
        "RecordingMonitorAuthFailure",
        "RecordingMonitorThrottled",
        "RecordingMonitorOverBudget",
        "RecordingUploadFailed",
        "RecordingUploadOverdue",
        "RecordingMonitorCredentialsExpiring",
    }
)
TASK_LABELS = ("account", "region", "sdk_app_id", "task_id")

PROMQL_KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "Inf", "NaN"}
)


# ---------------------------------------------------------------------------------------------
# helpers


def require_tool(name: str) -> str:
    """Path of a system binary; missing is a failure under CI and a skip elsewhere."""
    debian = Path("/usr/bin") / name
    found = shutil.which(name) or (str(debian) if debian.exists() else None)
    if found is None:
        message = (
            f"{name} is not installed: run `make system-deps` (Debian packages prometheus "
            "and prometheus-alertmanager)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


def run(args: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(args, cwd=cwd, capture_output=True, text=True, timeout=60, check=False)


def load_yaml(path: Path) -> Any:
    with path.open(encoding="utf-8") as f:
        return yaml.safe_load(f)


def load_yaml_docs(path: Path) -> list[Any]:
    with path.open(encoding="utf-8") as f:
        return [doc for doc in yaml.safe_load_all(f) if doc is not None]


def metric_names(expr: str) -> set[str]:
    """Series names a PromQL expression selects (a lexical approximation, enough for checks)."""
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    text = re.sub(r"'(?:\\.|[^'\\])*'", "''", text)
    text = re.sub(r"`[^`]*`", "", text)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", text)
    text = re.sub(r"\b(?:group_left|group_right)\b", " ", text)
    names: set[str] = set()
    for match in re.finditer(r"(?<![\w.:])[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        if text[match.end() :].lstrip().startswith("(") or word in PROMQL_KEYWORDS:
            continue  # a function or aggregation, or an operator
        names.add(word)
    return names


def alert_rules() -> list[dict[str, Any]]:
    return [
        rule
        for path in RULE_FILES
        for group in load_yaml(path)["groups"]
        for rule in group["rules"]
    ]


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return data


def dashboard_panels() -> list[dict[str, Any]]:
    panels: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        panels.append(panel)
        panels.extend(panel.get("panels", []))  # panels inside collapsed rows
    return panels


def dashboard_queries() -> list[tuple[str, str]]:
    """(where, expr) for every PromQL query of the dashboard."""
    return [
        (f"panel {panel['id']} {panel['title']!r} target {target['refId']}", target["expr"])
        for panel in dashboard_panels()
        for target in panel.get("targets", [])
    ]


def grafana_to_promql(expr: str) -> str:
    """Fill Grafana's variables with what Grafana would send to Prometheus."""
    expr = expr.replace("$__rate_interval", "1m").replace("${__rate_interval}", "1m")
    return re.sub(r"\$\{?(?:account|region)\}?", ".*", expr)


def manifests() -> dict[str, dict[str, Any]]:
    """Kubernetes objects by kind, from every manifest file."""
    objects: dict[str, dict[str, Any]] = {}
    for path in sorted(K8S.glob("*.yaml")):
        for doc in load_yaml_docs(path):
            objects[doc["kind"]] = doc
    return objects


def container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = deployment["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    return containers[0]


def configmap_config() -> dict[str, Any]:
    config: dict[str, Any] = yaml.safe_load(manifests()["ConfigMap"]["data"]["monitor.yaml"])
    return config


def env_names_read_by(config: dict[str, Any]) -> set[str]:
    """Every environment variable a monitor.yaml names through a *_env key."""
    names: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if isinstance(key, str) and key.endswith("_env") and isinstance(value, str):
                    names.add(value)
                walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    walk(config)
    return names


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    joined = re.sub(r"\\\n", " ", DOCKERFILE.read_text(encoding="utf-8"))
    instructions = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            instructions.append((word.upper(), rest.strip()))
    return instructions


def dockerfile(instruction: str) -> list[str]:
    return [args for word, args in dockerfile_instructions() if word == instruction]


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last matching pattern wins; a leading '!' re-includes."""
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.removeprefix("!").rstrip("/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatchcase(prefix, pattern) for prefix in prefixes):
            ignored = not negate
    return ignored


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def systemd_unit() -> configparser.ConfigParser:
    # systemd allows repeated keys (the last wins for most), hence strict=False.
    parser = configparser.ConfigParser(strict=False, interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read(UNIT, encoding="utf-8")
    return parser


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


# ---------------------------------------------------------------------------------------------
# Alertmanager


def loopback_copy(tmp_path: Path) -> Path:
    """The example config with every receiver pointed at a closed loopback port."""
    config = load_yaml(ALERTMANAGER_YML)
    sink = f"http://127.0.0.1:{free_port()}/hook"
    for receiver in config["receivers"]:
        for webhook in receiver.get("webhook_configs", []):
            webhook["url"] = sink
    path = tmp_path / "alertmanager.yml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


@pytest.fixture
def alertmanager(tmp_path: Path) -> Iterator[str]:
    binary = require_tool("prometheus-alertmanager")
    port = free_port()
    # A file, not a pipe: nobody drains a pipe while the tests run.
    log = (tmp_path / "alertmanager.log").open("w")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={loopback_copy(tmp_path)}",
            f"--storage.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",  # no gossip: a single local instance
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 20
        while True:
            if proc.poll() is not None:
                log.flush()
                pytest.fail(f"alertmanager exited: {(tmp_path / 'alertmanager.log').read_text()}")
            try:
                if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail("alertmanager did not become ready within 20s")
            time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


class TestAlertmanagerConfig:
    def test_amtool_accepts_the_config(self) -> None:
        result = run([require_tool("amtool"), "check-config", str(ALERTMANAGER_YML)])
        assert result.returncode == 0, result.stdout + result.stderr
        assert "SUCCESS" in result.stdout

    @pytest.mark.parametrize(
        ("labels", "receiver"),
        [
            (["alertname=RecordingTaskExited", "severity=critical", "account=default"], "pager"),
            (["alertname=TRTCMonitorDown", "severity=critical"], "pager"),
            (["alertname=RecordingTaskIdle", "severity=warning", "account=default"], "chat"),
            (["alertname=RecordingMonitorThrottled", "severity=warning"], "chat"),
        ],
    )
    def test_critical_alerts_go_to_the_pager_and_warnings_to_chat(
        self, labels: list[str], receiver: str
    ) -> None:
        result = run(
            [
                require_tool("amtool"),
                "config",
                "routes",
                "test",
                f"--config.file={ALERTMANAGER_YML}",
                f"--verify.receivers={receiver}",
                *labels,
            ]
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.strip() == receiver

    def test_task_alerts_are_grouped_by_alertname_account_and_app(self) -> None:
        route = load_yaml(ALERTMANAGER_YML)["route"]
        assert route["group_by"] == ["alertname", "account", "sdk_app_id"]

    def test_rejected_or_missing_credentials_silence_task_errors_and_staleness_of_that_account(
        self, alertmanager: str
    ) -> None:
        now = datetime.now(UTC)
        window = {
            "startsAt": now.isoformat(),
            "endsAt": (now + timedelta(hours=1)).isoformat(),
        }

        def alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
            return {
                "labels": {"alertname": name, "severity": severity, **labels},
                "annotations": {"summary": name},
                **window,
            }

        task = {"region": "ap-guangzhou", "sdk_app_id": "1400000001", "task_id": "t1"}
        sent = [
            alert("RecordingMonitorAuthFailure", "critical", account="a"),
            alert("RecordingTaskError", "warning", account="a", **task),
            alert("RecordingTaskStale", "warning", account="a", **task),
            alert("RecordingTaskIdle", "warning", account="a", **task),
            alert("RecordingTaskError", "warning", account="b", **task),
            alert("RecordingTaskStale", "warning", account="b", **task),
            alert("RecordingMonitorOverBudget", "warning", account="c"),
            alert("RecordingTaskStale", "warning", account="c", **task),
            alert("RecordingTaskError", "warning", account="c", **task),
            alert("RecordingMonitorNoCredentials", "critical", account="d"),
            alert("RecordingTaskError", "warning", account="d", **task),
            alert("RecordingTaskStale", "warning", account="d", **task),
        ]
        response = httpx.post(f"{alertmanager}/api/v2/alerts", json=sent, timeout=5)
        assert response.status_code == 200, response.text

        expected = {
            ("RecordingMonitorAuthFailure", "a"): "active",
            ("RecordingTaskError", "a"): "suppressed",
            ("RecordingTaskStale", "a"): "suppressed",
            ("RecordingTaskIdle", "a"): "active",
            ("RecordingTaskError", "b"): "active",
            ("RecordingTaskStale", "b"): "active",
            ("RecordingMonitorOverBudget", "c"): "active",
            ("RecordingTaskStale", "c"): "suppressed",
            ("RecordingTaskError", "c"): "active",
            ("RecordingMonitorNoCredentials", "d"): "active",
            ("RecordingTaskError", "d"): "suppressed",
            ("RecordingTaskStale", "d"): "suppressed",
        }
        # The inhibitor learns of source alerts asynchronously: poll until it settles.
        states: dict[tuple[str, str], str] = {}
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            listed = httpx.get(f"{alertmanager}/api/v2/alerts", timeout=5).json()
            states = {
                (a["labels"]["alertname"], a["labels"]["account"]): a["status"]["state"]
                for a in listed
            }
            if states == expected:
                break
            time.sleep(0.2)
        assert states == expected


# ---------------------------------------------------------------------------------------------
# Grafana


class TestGrafanaDashboard:
    def test_it_is_json_with_a_datasource_variable_and_account_and_region_filters(self) -> None:
        variables = {v["name"]: v for v in dashboard()["templating"]["list"]}
        assert variables["DS_PROMETHEUS"]["type"] == "datasource"
        assert variables["DS_PROMETHEUS"]["query"] == "prometheus"
        for name in ("account", "region"):
            assert variables[name]["type"] == "query"
            query = variables[name]["query"]["query"]
            found = re.fullmatch(r"label_values\((\w+)(?:\{[^}]*\})?, (\w+)\)", query)
            assert found, query
            assert found.group(1) in EXPORTED_SERIES
            assert found.group(2) == name

    def test_every_panel_queries_the_datasource_variable(self) -> None:
        for panel in dashboard_panels():
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]

    def test_every_query_names_only_exported_metrics(self) -> None:
        for where, expr in dashboard_queries():
            names = metric_names(expr)
            assert names, where
            assert names <= EXPORTED_SERIES, (where, names - EXPORTED_SERIES)

    def test_every_query_is_valid_promql(self, tmp_path: Path) -> None:
        rules = [
            {"record": f"grafana:query_{i}", "expr": grafana_to_promql(expr)}
            for i, (_, expr) in enumerate(dashboard_queries())
        ]
        assert all("$" not in rule["expr"] for rule in rules)
        path = tmp_path / "dashboard-queries.rules.yml"
        path.write_text(yaml.safe_dump({"groups": [{"name": "g", "rules": rules}]}))
        result = run([require_tool("promtool"), "check", "rules", str(path)])
        assert result.returncode == 0, result.stdout + result.stderr

    def test_the_account_filter_applies_to_every_metric_that_has_an_account_label(self) -> None:
        no_account_label = {
            "trtc_monitor_alerts_firing",
            "trtc_monitor_notifications_total",
            "trtc_monitor_callbacks_total",
            "trtc_monitor_config_last_reload_successful",
            "trtc_monitor_build_info",
        }
        checked = 0
        for where, expr in dashboard_queries():
            for name, matchers in re.findall(r"(trtc_\w+)(\{[^}]*\})?", expr):
                if name not in no_account_label:
                    assert 'account=~"$account"' in matchers, (where, name)
                    checked += 1
        assert checked

    def test_it_shows_tasks_transitions_api_budget_delay_alerts_notifications_callbacks(
        self,
    ) -> None:
        used: set[str] = set()
        for _, expr in dashboard_queries():
            used |= metric_names(expr)
        required = {
            "trtc_recording_tasks",
            "trtc_recording_transitions_total",
            "trtc_monitor_api_requests_total",
            "trtc_monitor_api_request_duration_seconds_bucket",
            "trtc_monitor_ratelimit_limit",
            "trtc_monitor_ratelimit_effective_rate",
            "trtc_monitor_poll_required_rate",
            "trtc_monitor_poll_delay_seconds_bucket",
            "trtc_monitor_alerts_firing",
            "trtc_monitor_notifications_total",
            "trtc_monitor_callbacks_total",
        }
        assert sorted(required - used) == []

    def test_panels_have_unique_ids_and_fit_the_grid(self) -> None:
        panels = dashboard_panels()
        ids = [panel["id"] for panel in panels]
        assert len(ids) == len(set(ids))
        for panel in panels:
            grid = panel["gridPos"]
            assert grid["x"] + grid["w"] <= 24, panel["title"]


# ---------------------------------------------------------------------------------------------
# Kubernetes


class TestKubernetesManifests:
    def test_every_manifest_parses_into_named_objects(self) -> None:
        files = sorted(K8S.glob("*.yaml"))
        assert files
        for path in files:
            docs = load_yaml_docs(path)
            assert docs, path.name
            for doc in docs:
                assert doc["apiVersion"], path.name
                assert doc["kind"], path.name
                if doc["kind"] != "Kustomization":
                    assert doc["metadata"]["name"], path.name
                    assert "namespace" not in doc["metadata"], path.name

    def test_the_kustomization_lists_existing_files_and_not_the_placeholder_secret(self) -> None:
        resources = load_yaml(K8S / "kustomization.yaml")["resources"]
        for name in resources:
            assert (K8S / name).is_file(), name
        assert {"deployment.yaml", "service.yaml", "configmap.yaml", "pvc.yaml"} <= set(resources)
        assert "secret.example.yaml" not in resources

    def test_the_deployment_probes_ready_and_healthy_on_the_http_port(self) -> None:
        main = container(manifests()["Deployment"])
        ports = {port["name"]: port["containerPort"] for port in main["ports"]}
        assert ports == {"http": 9877}
        assert main["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http"}
        assert main["livenessProbe"]["httpGet"] == {"path": "/-/healthy", "port": "http"}

    def test_the_deployment_runs_one_non_root_replica_with_a_read_only_root(self) -> None:
        deployment = manifests()["Deployment"]
        spec = deployment["spec"]
        assert spec["replicas"] == 1
        assert spec["strategy"]["type"] == "Recreate"
        pod = spec["template"]["spec"]
        main = container(deployment)
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] != 0
        assert main["securityContext"]["readOnlyRootFilesystem"] is True
        assert main["securityContext"]["allowPrivilegeEscalation"] is False
        assert main["resources"]["requests"]
        assert main["resources"]["limits"]
        assert main["args"] == ["run", "-c", "/etc/trtc-monitor/monitor.yaml"]

    def test_the_store_and_config_are_mounted_where_monitor_yaml_expects_them(self) -> None:
        objects = manifests()
        deployment = objects["Deployment"]
        volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"]["volumes"]}
        mounts = {m["mountPath"]: m for m in container(deployment)["volumeMounts"]}
        store_dir = str(Path(configmap_config()["storage"]["path"]).parent)
        data = volumes[mounts[store_dir]["name"]]
        assert not mounts[store_dir].get("readOnly", False)
        assert (
            data["persistentVolumeClaim"]["claimName"]
            == objects["PersistentVolumeClaim"]["metadata"]["name"]
        )
        config_dir = mounts["/etc/trtc-monitor"]
        assert (
            volumes[config_dir["name"]]["configMap"]["name"]
            == objects["ConfigMap"]["metadata"]["name"]
        )
        assert configmap_config()["server"]["listen"].endswith(":9877")

    def test_credentials_come_from_the_secret_into_the_env_vars_the_config_reads(self) -> None:
        objects = manifests()
        secret = objects["Secret"]
        env = {e["name"]: e for e in container(objects["Deployment"])["env"]}
        for name in env_names_read_by(configmap_config()):
            ref = env[name]["valueFrom"]["secretKeyRef"]
            assert ref["name"] == secret["metadata"]["name"], name
            assert ref["key"] in secret["stringData"], name
        assert {"TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY"} <= set(env)
        assert "secret_key:" not in (K8S / "configmap.yaml").read_text(encoding="utf-8")

    def test_the_secret_example_holds_only_marked_placeholders(self) -> None:
        for key, value in manifests()["Secret"]["stringData"].items():
            assert value.startswith("REPLACE_ME"), key

    def test_the_service_exposes_port_9877_named_http_to_the_pods(self) -> None:
        objects = manifests()
        service = objects["Service"]
        assert [(p["name"], p["port"]) for p in service["spec"]["ports"]] == [("http", 9877)]
        pod_labels = objects["Deployment"]["spec"]["template"]["metadata"]["labels"]
        assert service["spec"]["selector"].items() <= pod_labels.items()
        selector = objects["Deployment"]["spec"]["selector"]["matchLabels"]
        assert selector.items() <= pod_labels.items()

    def test_the_service_monitor_scrapes_the_http_port_of_the_service(self) -> None:
        objects = manifests()
        monitor = objects["ServiceMonitor"]
        service_labels = objects["Service"]["metadata"]["labels"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= service_labels.items()
        assert [e["port"] for e in monitor["spec"]["endpoints"]] == ["http"]
        assert service_labels[monitor["spec"]["jobLabel"]] == "trtc-monitor"

    def test_the_configmap_config_passes_check_config(self, tmp_path: Path) -> None:
        path = tmp_path / "monitor.yaml"
        path.write_text(manifests()["ConfigMap"]["data"]["monitor.yaml"], encoding="utf-8")
        env = {
            **os.environ,
            **dict.fromkeys(env_names_read_by(configmap_config()), "placeholder"),
        }
        result = subprocess.run(
            [sys.executable, "-m", "monitor", "check-config", "-c", str(path)],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr


# ---------------------------------------------------------------------------------------------
# Container image


class TestDockerfile:
    def test_the_image_is_python_3_11_slim_and_runs_trtc_monitor_as_a_non_root_user(self) -> None:
        assert dockerfile("FROM")[-1] == "python:3.11-slim"
        user = dockerfile("USER")[-1]
        assert user.split(":")[0] not in {"root", "0"}
        assert json.loads(dockerfile("ENTRYPOINT")[-1]) == ["trtc-monitor"]
        assert json.loads(dockerfile("CMD")[-1]) == ["run", "-c", "/etc/trtc-monitor/monitor.yaml"]
        assert dockerfile("EXPOSE") == ["9877"]
        assert json.loads(dockerfile("VOLUME")[-1]) == ["/var/lib/trtc-monitor"]

    def test_the_entrypoint_is_the_console_script_of_the_package(self) -> None:
        project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
        assert "trtc-monitor" in project["project"]["scripts"]
        assert any(re.search(r"\bpip wheel\b.*\s/src\b", args) for args in dockerfile("RUN"))
        assert any("trtc-recording-monitor" in args for args in dockerfile("RUN"))

    def test_every_copied_source_is_in_the_build_context(self) -> None:
        patterns = [
            line.strip()
            for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")
        ]
        for args in dockerfile("COPY"):
            if "--from=" in args:
                continue  # from an earlier stage, not from the build context
            *sources, _ = shlex.split(args)
            sources = [s for s in sources if not s.startswith("--")]
            assert sources, args
            for source in sources:
                if source == "README*":
                    continue  # optional by design: setuptools only warns without a readme
                matches = [
                    p.relative_to(ROOT).as_posix()
                    for p in ROOT.glob(source)
                    if not dockerignored(p.relative_to(ROOT).as_posix(), patterns)
                ]
                assert matches, f"COPY source {source} is missing or ignored"
        assert not dockerignored("monitor/cli.py", patterns)
        assert dockerignored(".venv/bin/python", patterns)

    def test_the_healthcheck_passes_on_a_healthy_endpoint_and_fails_otherwise(self) -> None:
        (check,) = dockerfile("HEALTHCHECK")
        command = json.loads(check[check.index("CMD") + 3 :].strip())
        assert command[0] == "python"
        assert "/-/healthy" in command[-1]

        healthy = True

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                ok = healthy and self.path == "/-/healthy"
                self.send_response(200 if ok else 503)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        port = server.server_address[1]
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()

        def probe() -> int:
            script = command[-1].replace("127.0.0.1:9877", f"127.0.0.1:{port}")
            assert script != command[-1]
            return run([sys.executable, *command[1:-1], script]).returncode

        try:
            assert probe() == 0
            healthy = False
            assert probe() != 0
        finally:
            server.shutdown()
            server.server_close()
            thread.join()
        assert probe() != 0  # nothing listening


# ---------------------------------------------------------------------------------------------
# systemd


class TestSystemdUnit:
    def test_the_unit_runs_trtc_monitor_run_and_reloads_with_sighup(self) -> None:
        service = systemd_unit()["Service"]
        exec_start = shlex.split(service["ExecStart"])
        assert Path(exec_start[0]).is_absolute()
        assert Path(exec_start[0]).name == "trtc-monitor"
        assert exec_start[1:3] == ["run", "-c"]
        assert "trtc-monitor run" in service["ExecStart"]
        assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
        assert service["Restart"] == "on-failure"

    def test_the_unit_is_hardened_and_keeps_its_state_in_the_state_directory(self) -> None:
        service = systemd_unit()["Service"]
        assert service.get("DynamicUser") == "yes" or service.get("User") not in {None, "root"}
        assert service["StateDirectory"] == "trtc-monitor"
        assert service["NoNewPrivileges"] == "yes"
        assert service["ProtectSystem"] == "strict"
        assert service["ProtectHome"] == "yes"
        assert service["PrivateTmp"] == "yes"
        assert service["CapabilityBoundingSet"] == ""

    def test_credentials_come_from_the_environment_file_with_placeholders(self) -> None:
        service = systemd_unit()["Service"]
        assert service["EnvironmentFile"].lstrip("-") == "/etc/trtc-monitor/trtc-monitor.env"
        values = dict(
            line.split("=", 1)
            for line in ENV_EXAMPLE.read_text(encoding="utf-8").splitlines()
            if line and not line.startswith("#")
        )
        assert {"TENCENTCLOUD_SECRET_ID", "TENCENTCLOUD_SECRET_KEY"} <= set(values)
        assert all(value.startswith("REPLACE_ME") for value in values.values())
        assert "SECRET" not in "".join(
            line
            for line in UNIT.read_text(encoding="utf-8").splitlines()
            if line.startswith("Environment=")
        )


# ---------------------------------------------------------------------------------------------
# High availability: several replicas on one Redis

K8S_HA = K8S / "ha"
COMPOSE_HA = DEPLOY / "compose" / "compose.ha.yaml"
COMPOSE_HA_CONFIG = DEPLOY / "compose" / "monitor.ha.yaml"


def ha_objects() -> dict[tuple[str, str], dict[str, Any]]:
    """The HA manifests' objects by (kind, name)."""
    objects: dict[tuple[str, str], dict[str, Any]] = {}
    for path in sorted(K8S_HA.glob("*.yaml")):
        for doc in load_yaml_docs(path):
            if doc["kind"] != "Kustomization":
                objects[(doc["kind"], doc["metadata"]["name"])] = doc
    return objects


def _valid_config(text: str) -> Config:
    return parse_config(text)


class TestHighAvailabilityManifests:
    def test_the_kustomization_lists_every_file_but_the_placeholder_secret(self) -> None:
        resources = load_yaml(K8S_HA / "kustomization.yaml")["resources"]
        for name in resources:
            assert (K8S_HA / name).is_file(), name
        listed = set(resources) | {"secret.example.yaml", "kustomization.yaml"}
        assert {p.name for p in K8S_HA.glob("*.yaml")} == listed

    def test_redis_keeps_an_every_second_aof_on_its_own_volume(self) -> None:
        objects = ha_objects()
        redis = objects[("StatefulSet", "trtc-monitor-redis")]
        (main,) = redis["spec"]["template"]["spec"]["containers"]
        args = main["args"]
        assert args[args.index("--appendonly") + 1] == "yes"
        assert args[args.index("--appendfsync") + 1] == "everysec"
        assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
        data_dir = args[args.index("--dir") + 1]
        (claim,) = redis["spec"]["volumeClaimTemplates"]
        mounts = {m["mountPath"]: m["name"] for m in main["volumeMounts"]}
        assert mounts[data_dir] == claim["metadata"]["name"]
        service = objects[("Service", "trtc-monitor-redis")]
        assert service["spec"]["selector"] == redis["spec"]["selector"]["matchLabels"]

    def test_the_daemon_runs_two_replicas_guarded_by_a_disruption_budget(self) -> None:
        objects = ha_objects()
        deployment = objects[("Deployment", "trtc-monitor")]
        spec = deployment["spec"]
        assert spec["replicas"] >= 2
        assert spec["strategy"]["type"] == "RollingUpdate"
        pdb = objects[("PodDisruptionBudget", "trtc-monitor")]
        assert pdb["spec"]["selector"]["matchLabels"] == spec["selector"]["matchLabels"]
        assert 0 < pdb["spec"]["minAvailable"] < spec["replicas"]
        service = objects[("Service", "trtc-monitor")]
        assert service["spec"]["selector"] == spec["selector"]["matchLabels"]
        pod = spec["template"]["spec"]
        assert "persistentVolumeClaim" not in json.dumps(pod["volumes"])
        (main,) = pod["containers"]
        assert main["readinessProbe"]["httpGet"] == {"path": "/-/ready", "port": "http"}

    def test_the_config_is_valid_uses_redis_and_every_variable_comes_from_the_secret(
        self,
    ) -> None:
        objects = ha_objects()
        text = objects[("ConfigMap", "trtc-monitor")]["data"]["monitor.yaml"]
        config = _valid_config(text)
        assert config.storage.backend == "redis"
        assert config.cluster.member_timeout >= 2 * config.cluster.heartbeat
        (main,) = objects[("Deployment", "trtc-monitor")]["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e for e in main["env"]}
        secret = objects[("Secret", "trtc-monitor")]
        for name in env_names_read_by(yaml.safe_load(text)):
            assert env[name]["valueFrom"]["secretKeyRef"]["key"] in secret["stringData"], name
        redis = objects[("StatefulSet", "trtc-monitor-redis")]["spec"]["template"]["spec"]
        (redis_main,) = redis["containers"]
        (password,) = redis_main["env"]
        assert password["valueFrom"]["secretKeyRef"]["key"] in secret["stringData"]
        assert all(v.startswith("REPLACE_ME") for v in secret["stringData"].values())


class TestHighAvailabilityCompose:
    def test_three_replicas_share_one_redis_with_an_every_second_aof(self) -> None:
        compose = load_yaml(COMPOSE_HA)
        services = compose["services"]
        monitors = [name for name in services if name.startswith("monitor-")]
        assert len(monitors) == 3
        command = services["redis"]["command"]
        assert command[command.index("--appendfsync") + 1] == "everysec"
        assert command[command.index("--appendonly") + 1] == "yes"
        assert any(v.endswith(":/data") for v in services["redis"]["volumes"])
        published = [services[m]["ports"][0].split(":")[1] for m in monitors]
        assert len(set(published)) == 3
        for name in monitors:
            service = services[name]
            assert service["command"] == ["run", "-c", "/etc/trtc-monitor/monitor.yaml"]
            assert service["depends_on"]["redis"]["condition"] == "service_healthy"
            assert all(p.startswith("127.0.0.1:") for p in service["ports"])

    def test_the_replicas_config_is_valid_and_gets_every_variable_it_reads(self) -> None:
        text = COMPOSE_HA_CONFIG.read_text(encoding="utf-8")
        config = _valid_config(text)
        assert config.storage.backend == "redis"
        compose = load_yaml(COMPOSE_HA)
        env = compose["services"]["monitor-1"]["environment"]
        assert env_names_read_by(yaml.safe_load(text)) <= set(env)
        assert "@redis:6379/" in env["TRTC_MONITOR_REDIS_URL"]
        mounts = compose["services"]["monitor-1"]["volumes"]
        assert f"./{COMPOSE_HA_CONFIG.name}:/etc/trtc-monitor/monitor.yaml:ro" in mounts
