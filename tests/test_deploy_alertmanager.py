"""The Alertmanager configuration under deploy/, checked with amtool and a real
prometheus-alertmanager on a loopback port.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.deploy_support import ALERTMANAGER_YML, free_port, load_yaml, require_tool, run

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
