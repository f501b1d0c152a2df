"""`trtc-monitor tasks` against a main port behind TLS and basic auth: the login from
TRTC_MONITOR_BASIC_AUTH, the token in X-API-Token, a private CA from --cacert."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

from monitor.simulator import Simulator
from tests.test_listeners import write_config
from tests.test_prometheus_tls import PASSWORD, TOKEN, USER, env, pki, web_config_text
from tests.tls_support import Ca, served_daemon

__all__ = ["env", "pki"]  # fixtures used here


def tasks(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", "tasks", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


async def test_tasks_commands_log_in_send_the_token_and_trust_the_given_ca(
    tmp_path: Path, simulator: Simulator, pki: tuple[Ca, Ca]
) -> None:
    ca, server = pki
    web = tmp_path / "web-config.yml"
    web.write_text(web_config_text(server, {USER: PASSWORD}))
    config = write_config(tmp_path, simulator.url, "127.0.0.1:0")
    base_env = {"PATH": "/usr/bin:/bin", "TRTC_MONITOR_API_TOKEN": TOKEN}
    async with served_daemon(config, web) as served:
        url = ["--url", served.main, "--cacert", str(ca.cert)]
        add = [
            "add",
            "--sdk-app-id",
            "1400000001",
            "--task-id",
            "t-cli",
            "--region",
            "ap-guangzhou",
        ]
        # Without the login: the daemon's 401, said in one line.
        refused = await asyncio.to_thread(tasks, *url, *add, env=base_env)
        assert refused.returncode != 0
        assert "Traceback" not in refused.stderr
        login = {**base_env, "TRTC_MONITOR_BASIC_AUTH": f"{USER}:{PASSWORD}"}
        added = await asyncio.to_thread(tasks, *url, *add, env=login)
        assert added.returncode == 0, added.stderr
        shown = await asyncio.to_thread(
            tasks, *url, "show", "--sdk-app-id", "1400000001", "--task-id", "t-cli", env=login
        )
        assert shown.returncode == 0, shown.stderr
        assert json.loads(shown.stdout)["task_id"] == "t-cli"
        # A CA it was not told to trust: refused by TLS, no traceback.
        untrusted = await asyncio.to_thread(
            tasks,
            "--url",
            served.main,
            "show",
            "--sdk-app-id",
            "1400000001",
            "--task-id",
            "t-cli",
            env=login,
        )
        assert untrusted.returncode != 0
        assert "Traceback" not in untrusted.stderr
        assert PASSWORD not in added.stdout + added.stderr + shown.stderr + untrusted.stderr
