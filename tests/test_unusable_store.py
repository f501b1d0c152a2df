"""A store that cannot be used at start: the daemon exits 2 with one line naming the path."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path

import aiohttp
import pytest

from monitor.simulator import (
    Simulator,
)
from tests.support import free_port
from tests.test_process import daemon_env, daemon_process, until_ready, write_config


def run_daemon(config: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "monitor", "run", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=daemon_env(),
        check=False,
    )


class TestUnusableStore:
    @pytest.mark.parametrize("case", ["directory", "not_sqlite", "parent_is_a_file"])
    def test_run_exits_2_with_one_line_naming_the_path(self, tmp_path: Path, case: str) -> None:
        if case == "directory":
            db = tmp_path / "data"
            db.mkdir()
            reason = "is a directory"
        elif case == "not_sqlite":
            db = tmp_path / "notes.db"
            db.write_text("these are my notes, not a database\n" * 50)
            reason = "not a SQLite database"
        else:
            blocker = tmp_path / "file"
            blocker.write_text("x")
            db = blocker / "sub" / "m.db"
            reason = "cannot create its directory"
        config = write_config(tmp_path, "http://127.0.0.1:9", free_port())
        config.write_text(config.read_text().replace(str(tmp_path / "monitor.db"), str(db)))
        done = run_daemon(config)
        assert done.returncode == 2, done.stderr
        assert "Traceback" not in done.stderr + done.stdout
        errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, done.stderr
        assert str(db) in errors[0]
        assert reason in errors[0]

    async def test_a_second_daemon_on_the_same_file_is_refused_naming_the_lock(
        self, simulator: Simulator, tmp_path: Path
    ) -> None:
        port = free_port()
        config = write_config(tmp_path, simulator.url, port)
        with daemon_process(config, tmp_path / "first.log") as first:
            async with aiohttp.ClientSession() as session:
                await until_ready(session, f"http://127.0.0.1:{port}", first)
            second = tmp_path / "second.yaml"
            second.write_text(config.read_text().replace(str(port), str(free_port())))
            done = await asyncio.to_thread(run_daemon, second)
            assert first.poll() is None  # the first one is undisturbed
        assert done.returncode == 2
        assert "Traceback" not in done.stderr
        [line] = [x for x in done.stderr.splitlines() if x.startswith("error:")]
        assert "in use by another running monitor" in line
        assert str(tmp_path / "monitor.db.lock") in line
