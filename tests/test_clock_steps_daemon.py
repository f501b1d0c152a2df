"""A step of the wall clock under a running daemon (libfaketime, Debian package ``faketime``).

The daemon runs as its own ``trtc-monitor run`` process with libfaketime preloaded: its wall
clock (``time.time``) follows an offset the test rewrites in a file while it runs, its
monotonic clock stays real. The simulator is a process of its own on the real clock, as TRTC
would be. An exit in a window after the clock was set back, and after it was set forward,
must be recorded and alerted within one poll interval plus a few seconds: the order of
observations must not come from the wall clock.
"""

from __future__ import annotations

import glob
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.alerts import TASK_EXITED, TASK_STALE
from monitor.simulator import SimulatorControl
from tests.alerts_e2e_support import notices, webhook
from tests.conftest import API_TOKEN, daemon_config_text
from tests.support import free_port, wait_for_async
from tests.test_ha import simulator_process
from tests.test_process import daemon_env
from tests.test_receivers import Sink, serving

APP = 1400000001
INTERVAL = 2.0
STEP = 240  # seconds; within the 300 s a TC3 signature's timestamp may be off
# What "within one interval plus a few seconds" allows on a shared, busy machine.
DETECTED_WITHIN = INTERVAL + 8.0
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def libfaketime() -> str:
    """The preload library of the Debian package ``faketime``; missing fails under CI."""
    found = sorted(glob.glob("/usr/lib/*/faketime/libfaketime.so.1"))
    if not found:
        message = "libfaketime is not installed: run `make system-deps` (Debian package faketime)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found[0]


class FakeClock:
    """The wall-clock offset of the processes started with :meth:`env`, changed at will."""

    def __init__(self, directory: Path) -> None:
        self.path = directory / "faketime.rc"
        self.set(0)

    def set(self, offset: int) -> None:
        # Written whole, then renamed: the daemon reads the file on every clock call.
        part = self.path.with_suffix(".tmp")
        part.write_text(f"{offset:+d}\n")
        part.replace(self.path)

    def env(self) -> dict[str, str]:
        return {
            "LD_PRELOAD": libfaketime(),
            "FAKETIME_TIMESTAMP_FILE": str(self.path),
            "FAKETIME_NO_CACHE": "1",
            # Both spellings: the monotonic clock stays real (the event loop runs on it). With
            # it, this libfaketime (0.9.10) fails time.sleep with EINVAL (an absolute monotonic
            # deadline it shifts anyway): the daemon never calls it, asyncio's waits work.
            "FAKETIME_DONT_FAKE_MONOTONIC": "1",
            "DONT_FAKE_MONOTONIC": "1",
        }


@contextmanager
def faked_daemon(config: Path, log: Path, clock: FakeClock) -> Iterator[subprocess.Popen[bytes]]:
    env = daemon_env()
    env.update(clock.env())
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "monitor", "run", "-c", str(config)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            yield process
        finally:
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def config_text(sim_url: str, db: Path, port: int, sink_url: str) -> str:
    alerts = {
        # Stale only after many intervals: a busy machine must not make one real.
        "stale": {"after": "40s"},
        "receivers": [webhook(sink_url)],
    }
    text = daemon_config_text(sim_url, db, "alerts: " + json.dumps(alerts) + "\n")
    return text.replace('"127.0.0.1:0"', f'"127.0.0.1:{port}"').replace(
        "interval: 1s", f"interval: {int(INTERVAL)}s"
    )


class Daemon:
    def __init__(self, session: aiohttp.ClientSession, url: str, log: Path) -> None:
        self.session = session
        self.url = url
        self.log = log

    async def task(self, task_id: str) -> dict[str, Any]:
        async with self.session.get(f"{self.url}/api/v1/tasks/{APP}/{task_id}") as r:
            assert r.status == 200, await r.text()
            body: dict[str, Any] = await r.json()
            return body

    async def transitions(self, task_id: str) -> list[dict[str, Any]]:
        async with self.session.get(
            f"{self.url}/api/v1/tasks/{APP}/{task_id}/transitions", headers=AUTH
        ) as r:
            assert r.status == 200, await r.text()
            history: list[dict[str, Any]] = (await r.json())["transitions"]
            return history

    async def register(self, task_id: str) -> None:
        spec = {"sdk_app_id": APP, "task_id": task_id, "region": "ap-guangzhou"}
        async with self.session.post(f"{self.url}/api/v1/tasks", json=spec, headers=AUTH) as r:
            assert r.status == 201, await r.text()

    async def status_is(self, task_id: str, status: str) -> bool:
        return bool((await self.task(task_id))["status"] == status)

    def outdated_answers(self) -> int:
        return self.log.read_text(errors="replace").count("poll_answer_outdated")


async def polled_since(control: SimulatorControl, task_id: str, since: float) -> bool:
    """The simulator (real clock) took a poll of the task after ``since`` (its clock)."""
    arrivals = await control.arrivals(action="DescribeCloudRecording", since=since)
    return any(a["task_id"] == task_id for a in arrivals)


class TestAWallClockStepUnderTheDaemon:
    async def test_an_exit_after_a_step_back_or_forward_is_recorded_and_alerted_in_time(
        self, tmp_path: Path
    ) -> None:
        clock = FakeClock(tmp_path)
        port = free_port()
        config = tmp_path / "monitor.yaml"
        log = tmp_path / "daemon.log"
        async with serving(Sink()) as sink:
            with simulator_process(tmp_path) as sim_url:
                config.write_text(config_text(sim_url, tmp_path / "monitor.db", port, sink.url))
                async with (
                    aiohttp.ClientSession() as session,
                    SimulatorControl(sim_url) as control,
                ):

                    async def sim_up() -> bool:
                        try:
                            await control.tasks()
                        except (aiohttp.ClientError, OSError):
                            return False
                        return True

                    await wait_for_async(sim_up, timeout=20, what="the simulator process")
                    with faked_daemon(config, log, clock) as process:
                        daemon = Daemon(session, f"http://127.0.0.1:{port}", log)

                        async def ready() -> bool:
                            assert process.poll() is None, log.read_text()[-3000:]
                            try:
                                async with session.get(f"{daemon.url}/-/ready") as r:
                                    return r.status == 200
                            except aiohttp.ClientError:
                                return False

                        await wait_for_async(ready, timeout=30, what="the daemon to be ready")
                        ids = {}
                        for name in ("back", "forward"):
                            ids[name] = await control.add_task(APP, idle=0, exited=600)
                            await daemon.register(ids[name])
                        for task_id in ids.values():
                            await wait_for_async(
                                partial(daemon.status_is, task_id, "InProgress"),
                                timeout=20,
                                what="the task seen recording",
                            )

                        for name, offset in (("back", -STEP), ("forward", STEP)):
                            task_id = ids[name]
                            clock.set(offset)
                            stepped = time.time()
                            # Polls sent after the step have come back before the exit.
                            for _ in range(2):
                                mark = time.time()
                                await wait_for_async(
                                    partial(polled_since, control, task_id, mark),
                                    timeout=20,
                                    what="a poll after the step",
                                )
                            assert await daemon.status_is(task_id, "InProgress")
                            assert await control.exit_task(APP, task_id)
                            exited = time.monotonic()
                            await wait_for_async(
                                partial(daemon.status_is, task_id, "Exited"),
                                timeout=DETECTED_WITHIN,
                                what=f"the exit after the step {name} to be recorded",
                            )

                            async def alerted(t: str = task_id) -> bool:
                                return bool(notices(sink, TASK_EXITED, task_id=t, status="firing"))

                            left = max(1.0, DETECTED_WITHIN - (time.monotonic() - exited))
                            await wait_for_async(
                                alerted, timeout=left, what=f"the exit alert after the step {name}"
                            )
                            history = [
                                (t["from"], t["to"]) for t in await daemon.transitions(task_id)
                            ]
                            # Newest first: never flipped back by an older answer.
                            assert history == [
                                ("InProgress", "Exited"),
                                ("Pending", "InProgress"),
                            ]
                            assert time.time() - stepped < STEP  # all inside the stepped window
                        outdated = daemon.outdated_answers()
                        assert process.poll() is None, log.read_text()[-3000:]
                # The forward step aged no task: nothing went stale.
                assert notices(sink, TASK_STALE) == []
        # Answers dropped as older than a newer observation: none came in this test's order
        # of events (no callback, one poll in flight per task), whatever the clock did.
        assert outdated == 0
