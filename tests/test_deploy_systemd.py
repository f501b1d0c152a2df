"""The systemd unit under deploy/ and its environment file example."""

from __future__ import annotations

import shlex
from pathlib import Path

from tests.deploy_support import ENV_EXAMPLE, UNIT, systemd_unit

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
