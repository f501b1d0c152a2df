"""The command line as a user types it, each command in its own process."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from monitor import __version__
from monitor.simulator import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, Fault, FaultKind, Simulator
from tests.conftest import API_TOKEN, DaemonFactory
from tests.support import free_port, wait_for

ROOT = Path(__file__).resolve().parent.parent
APP = 1400000001


def cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=ROOT,
    )


async def acli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI without blocking the loop that serves the simulator or the daemon."""
    return await asyncio.to_thread(cli, *args, env=env)


class TestCheckConfig:
    @pytest.mark.parametrize("name", ["monitor.example.yaml", "demo.yaml"])
    def test_shipped_configs_are_valid(self, name: str) -> None:
        result = cli("check-config", "--syntax-only", "-c", f"config/{name}")
        assert result.returncode == 0, result.stderr
        assert "accounts" in result.stdout

    def test_every_error_is_listed_with_line_and_key_path_and_exit_1(self, tmp_path: Path) -> None:
        path = tmp_path / "bad.yaml"
        path.write_text("polling:\n  interval: 15 seconds\n  jittr: 5%\nmetrics:\n  per_task: 7\n")
        result = cli("check-config", "-c", str(path))
        assert result.returncode == 1
        assert f"{path}:2: polling.interval" in result.stderr
        assert f"{path}:3: polling.jittr" in result.stderr
        assert f"{path}:5: metrics.per_task" in result.stderr
        assert "Traceback" not in result.stderr

    def test_the_config_path_can_come_from_the_environment(self) -> None:
        result = cli(
            "check-config", "--syntax-only", env={"TRTC_MONITOR_CONFIG": "config/demo.yaml"}
        )
        assert result.returncode == 0, result.stderr


class TestDescribe:
    async def test_one_call_prints_the_response_as_json(
        self, simulator: Simulator, tmp_path: Path
    ) -> None:
        task_id = simulator.add_task(APP)
        config = tmp_path / "c.yaml"
        config.write_text(
            f'accounts:\n  default:\n    endpoint: "{simulator.url}"\n'
            "    secret_id_env: SIM_ID\n    secret_key_env: SIM_KEY\n"
        )
        env = {"SIM_ID": DEFAULT_SECRET_ID, "SIM_KEY": DEFAULT_SECRET_KEY}
        args = ("describe", "--sdk-app-id", str(APP), "--task-id", task_id)
        result = await acli(*args, "--region", "ap-mumbai", "-c", str(config), env=env)
        assert result.returncode == 0, result.stderr
        body = json.loads(result.stdout)
        assert body["Response"]["TaskId"] == task_id
        assert body["Response"]["Status"] in ("Idle", "InProgress")
        assert body["Response"]["RequestId"]
        assert DEFAULT_SECRET_KEY not in result.stdout + result.stderr

    async def test_an_api_error_exits_1_with_its_code_and_request_id(
        self, simulator: Simulator, tmp_path: Path
    ) -> None:
        config = tmp_path / "c.yaml"
        config.write_text(
            f'accounts:\n  default:\n    endpoint: "{simulator.url}"\n'
            "    secret_id_env: SIM_ID\n    secret_key_env: SIM_KEY\n"
        )
        env = {"SIM_ID": DEFAULT_SECRET_ID, "SIM_KEY": "wrong-key-123456"}
        result = await acli(
            "describe", "--sdk-app-id", "1", "--task-id", "x", "--region", "ap-beijing",
            "-c", str(config), env=env,
        )  # fmt: skip
        assert result.returncode == 1
        assert "AuthFailure.SignatureFailure" in result.stderr
        assert "RequestId: " in result.stderr
        assert "RequestId: -" not in result.stderr
        assert "wrong-key-123456" not in result.stderr

    async def test_a_transport_failure_is_reported_in_one_line(
        self, simulator: Simulator, tmp_path: Path
    ) -> None:
        simulator.faults.add(Fault(FaultKind.HTTP_ERROR, status=502))
        config = tmp_path / "c.yaml"
        config.write_text(
            f'accounts:\n  default:\n    endpoint: "{simulator.url}"\n'
            "    secret_id_env: SIM_ID\n    secret_key_env: SIM_KEY\n"
        )
        env = {"SIM_ID": DEFAULT_SECRET_ID, "SIM_KEY": DEFAULT_SECRET_KEY}
        result = await acli(
            "describe", "--sdk-app-id", "1", "--task-id", "x", "--region", "ap-beijing",
            "-c", str(config), env=env,
        )  # fmt: skip
        assert result.returncode == 1
        assert "Transport.HTTP502" in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1

    def test_an_unknown_region_is_a_usage_error(self) -> None:
        result = cli("describe", "--sdk-app-id", "1", "--task-id", "x", "--region", "mars-1")
        assert result.returncode == 2
        assert "--region must be one of" in result.stderr


class TestTasksCommands:
    async def test_add_list_show_remove_through_the_api(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url)
        task_id = simulator.add_task(APP)
        env = {"TRTC_MONITOR_API_TOKEN": API_TOKEN}
        url = ("--url", running.url)
        added = await acli(
            "tasks", *url, "add", "--sdk-app-id", str(APP), "--task-id", task_id,
            "--region", "ap-shanghai", "--label", "room=r-42", "--interval", "2s", env=env,
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        assert json.loads(added.stdout)["labels"] == {"room": "r-42"}

        listed = await acli("tasks", *url, "list", "--label", "room=r-42")
        assert listed.returncode == 0, listed.stderr
        assert task_id[:36] in listed.stdout

        shown = await acli("tasks", *url, "show", "--sdk-app-id", str(APP), "--task-id", task_id)
        assert json.loads(shown.stdout)["region"] == "ap-shanghai"

        removed = await acli(
            "tasks", *url, "remove", "--sdk-app-id", str(APP), "--task-id", task_id, env=env
        )
        assert removed.returncode == 0, removed.stderr
        assert json.loads(removed.stdout)["status"] == "Removed"

    async def test_a_missing_token_is_reported_from_the_api(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url)
        result = await acli(
            "tasks", "--url", running.url, "add", "--sdk-app-id", "1", "--task-id", "t",
            "--region", "ap-beijing", env={"TRTC_MONITOR_API_TOKEN": ""},
        )  # fmt: skip
        assert result.returncode == 1
        assert "HTTP 401" in result.stderr

    def test_an_unreachable_daemon_is_one_clear_line(self) -> None:
        port = free_port()
        result = cli("tasks", "--url", f"http://127.0.0.1:{port}", "list")
        assert result.returncode == 1
        assert "cannot reach the daemon" in result.stderr
        assert "Traceback" not in result.stderr


class TestMisc:
    def test_version(self) -> None:
        result = cli("version")
        assert result.returncode == 0
        assert result.stdout.strip() == f"trtc-monitor {__version__}"

    def test_no_command_is_a_usage_error(self) -> None:
        assert cli().returncode == 2

    def test_simulate_serves_until_stopped(self, tmp_path: Path) -> None:
        port = free_port()
        with (tmp_path / "sim.log").open("w") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "monitor", "simulate", "--listen", f"127.0.0.1:{port}"],
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
            try:
                import urllib.request

                def up() -> bool:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/-/sim/") as r:
                        return bool(r.status == 200)

                wait_for(up, timeout=20, what="simulator")
            finally:
                process.terminate()
                process.wait(timeout=10)
        assert str(port) in (tmp_path / "sim.log").read_text()

    def test_simulate_with_a_bad_scenario_exits_2(self, tmp_path: Path) -> None:
        scenario = tmp_path / "s.yaml"
        scenario.write_text("tasks:\n  - idle: -1\n")
        result = cli("simulate", "--listen", "127.0.0.1:0", "--scenario", str(scenario))
        assert result.returncode == 2
        assert "Traceback" not in result.stderr
