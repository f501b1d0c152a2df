"""What the deployment tests share: the paths under deploy/, the series the monitor exports,
and readers for the rules, dashboard, manifests, Dockerfile and unit.

promtool, amtool and prometheus-alertmanager come from the Debian packages that `make test`
installs; without them the tests that need them fail under CI and are skipped elsewhere.
"""

from __future__ import annotations

import configparser
import fnmatch
import json
import os
import re
import shutil
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

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
# High availability: several replicas on one Redis

K8S_HA = K8S / "ha"
