"""The daemon as users run it: a separate `trtc-monitor run` process, signals and kill -9."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.simulator import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, Life, Simulator
from tests.conftest import API_TOKEN, daemon_config_text
from tests.support import free_port, wait_for_async

APP = 1400000001


def daemon_env() -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        TEST_SECRET_ID=DEFAULT_SECRET_ID,
        TEST_SECRET_KEY=DEFAULT_SECRET_KEY,
        TEST_API_TOKEN=API_TOKEN,
    )
    return env


def write_config(tmp: Path, endpoint: str, port: int, extra: str = "") -> Path:
    text = daemon_config_text(endpoint, tmp / "monitor.db", extra).replace(
        '"127.0.0.1:0"', f'"127.0.0.1:{port}"'
    )
    path = tmp / "monitor.yaml"
    path.write_text(text)
    return path


@contextmanager
def daemon_process(config: Path, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "-c", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=daemon_env(),
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


async def get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as r:
        return await r.json()


async def until_ready(session: aiohttp.ClientSession, base: str, process: Any) -> None:
    async def ready() -> bool:
        assert process.poll() is None, "daemon exited"
        try:
            async with session.get(f"{base}/-/ready") as r:
                return r.status == 200
        except aiohttp.ClientError:
            return False

    await wait_for_async(ready, timeout=30, what="daemon ready")


class TestCrashAndRestart:
    async def test_kill_9_loses_no_task_status_or_transition_and_polling_resumes(
        self, simulator: Simulator, tmp_path: Path
    ) -> None:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        config = write_config(tmp_path, simulator.url, port)
        log = tmp_path / "daemon.log"
        lives = {
            "recording": Life(idle=0.5, in_progress=None),
            "short": Life(idle=0.5, in_progress=1.0, exited=1.0),
            "hanging": Life(idle=0.5, hang_idle=True),
        }
        ids = {name: simulator.add_task(APP, life=life) for name, life in lives.items()}
        async with aiohttp.ClientSession() as session:
            with daemon_process(config, log) as first:
                await until_ready(session, base, first)
                for task_id in ids.values():
                    async with session.post(
                        f"{base}/api/v1/tasks",
                        json={"sdk_app_id": APP, "task_id": task_id, "region": "ap-beijing"},
                        headers={"Authorization": f"Bearer {API_TOKEN}"},
                    ) as r:
                        assert r.status == 201

                async def short_ended() -> bool:
                    body = await get_json(session, f"{base}/api/v1/tasks/{APP}/{ids['short']}")
                    return bool(body["status"] == "Ended")

                await wait_for_async(short_ended, timeout=20, what="short task Ended")
                before = {
                    name: await get_json(
                        session, f"{base}/api/v1/tasks/{APP}/{task_id}/transitions"
                    )
                    for name, task_id in ids.items()
                }
                first.send_signal(signal.SIGKILL)
                first.wait()

            arrivals_at_crash = len(simulator.arrivals)
            with daemon_process(config, log) as second:
                await until_ready(session, base, second)
                listing = await get_json(session, f"{base}/api/v1/tasks")
                statuses = {t["task_id"]: t["status"] for t in listing["tasks"]}
                assert statuses == {
                    ids["recording"]: "InProgress",
                    ids["short"]: "Ended",
                    ids["hanging"]: "Idle",
                }
                for name, task_id in ids.items():
                    after = await get_json(
                        session, f"{base}/api/v1/tasks/{APP}/{task_id}/transitions"
                    )
                    # Every acknowledged transition survived (a poll may have added more).
                    assert (
                        after["transitions"][-len(before[name]["transitions"]) :]
                        == (before[name]["transitions"])
                    )

                async def polled_again() -> bool:
                    return any(
                        a.task_id == ids["recording"]
                        for a in list(simulator.arrivals)[arrivals_at_crash:]
                    )

                await wait_for_async(polled_again, timeout=10, what="polling after restart")
                second.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(second.wait, 10) == 0
        text = log.read_text()
        assert "task_transition" in text  # the log is real, and...
        for secret in (DEFAULT_SECRET_KEY, API_TOKEN):
            assert secret not in text  # ...no configured secret is in it


class TestSignals:
    async def test_sigterm_stops_the_daemon_gracefully_within_seconds(
        self, simulator: Simulator, tmp_path: Path
    ) -> None:
        port = free_port()
        config = write_config(tmp_path, simulator.url, port)
        async with aiohttp.ClientSession() as session:
            with daemon_process(config, tmp_path / "daemon.log") as process:
                await until_ready(session, f"http://127.0.0.1:{port}", process)
                process.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(process.wait, 5) == 0
        assert "daemon_stopped" in (tmp_path / "daemon.log").read_text()

    async def test_sighup_reloads_and_a_broken_file_keeps_the_old_configuration(
        self, simulator: Simulator, tmp_path: Path
    ) -> None:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        config = write_config(tmp_path, simulator.url, port)
        good = config.read_text()
        async with aiohttp.ClientSession() as session:
            with daemon_process(config, tmp_path / "daemon.log") as process:
                await until_ready(session, base, process)

                async def reload_flag() -> str:
                    async with session.get(f"{base}/metrics") as r:
                        text = await r.text()
                    line = next(
                        x
                        for x in text.splitlines()
                        if x.startswith("trtc_monitor_config_last_reload_successful ")
                    )
                    return line.split()[1]

                config.write_text(good.replace("interval: 1s", "intervl: 1s"))
                process.send_signal(signal.SIGHUP)
                await wait_for_async(
                    lambda: _equals(reload_flag(), "0.0"), timeout=10, what="failed reload"
                )
                assert process.poll() is None  # still running on the old configuration
                async with session.get(f"{base}/-/ready") as r:
                    assert r.status == 200

                config.write_text(good.replace("interval: 1s", "interval: 2s"))
                process.send_signal(signal.SIGHUP)
                await wait_for_async(
                    lambda: _equals(reload_flag(), "1.0"), timeout=10, what="good reload"
                )
        log = (tmp_path / "daemon.log").read_text()
        assert "config_reload_failed" in log
        assert "intervl" in log
        assert "config_reloaded" in log


async def _equals(value: Any, expected: str) -> bool:
    return bool(await value == expected)


class TestRunRefusesBadConfiguration:
    @pytest.mark.parametrize(
        ("text", "needle"),
        [
            ("polling:\n  intervl: 5s\n", "polling.intervl"),
            ("polling:\n  interval: soon\n", "polling.interval"),
            ("accounts:\n  default:\n    rate_limit: many\n", "accounts.default.rate_limit"),
        ],
    )
    def test_run_with_an_invalid_file_exits_2_without_a_traceback(
        self, tmp_path: Path, text: str, needle: str
    ) -> None:
        path = tmp_path / "bad.yaml"
        path.write_text(text)
        result = subprocess.run(
            [sys.executable, "-m", "monitor", "run", "-c", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            env=daemon_env(),
        )
        assert result.returncode == 2
        assert needle in result.stderr
        assert f"{path}:" in result.stderr
        assert "Traceback" not in result.stderr + result.stdout
        assert not (tmp_path / "data").exists()

    def test_run_with_missing_credentials_exits_2_naming_the_variable(self, tmp_path: Path) -> None:
        path = tmp_path / "monitor.yaml"
        path.write_text(
            "accounts:\n  default:\n    secret_id_env: NOPE_ID\n    secret_key_env: NOPE_KEY\n"
        )
        env = {k: v for k, v in daemon_env().items() if not k.startswith("NOPE")}
        result = subprocess.run(
            [sys.executable, "-m", "monitor", "run", "-c", str(path)],
            capture_output=True,
            text=True,
            timeout=30,
            env=env,
        )
        assert result.returncode == 2
        assert "NOPE_KEY" in result.stderr
        assert "Traceback" not in result.stderr
