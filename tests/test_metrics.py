"""Metrics of a running daemon: scraped over HTTP, read by a real Prometheus, compressed."""

from __future__ import annotations

import asyncio
import gzip
import subprocess
import urllib.parse
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import pytest

from monitor.http.server import accepts_gzip
from monitor.metrics import Rendered, StateView
from monitor.models import REGIONS, Status, TaskKey
from monitor.simulator import DEFAULT_SECRET_KEY, Life, Simulator
from tests.conftest import API_TOKEN, DaemonFactory
from tests.metrics_support import (
    APP,
    by_task,
    make_task,
    register,
    samples,
    scrape,
    wait_status,
)
from tests.support import Proc, prometheus, promql, require_binary, wait_for, wait_for_async


class TestLiveDaemon:
    async def test_a_daemon_alone_is_one_replica_with_its_store_up_and_every_task_owned(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url)
        simulator.add_task(APP, "one", life=Life(idle=600))
        await register(running, "one")
        await wait_status(running, "one", Status.IDLE)

        async def owned() -> str | None:
            text = await scrape(running)
            return text if 'trtc_monitor_owned_tasks{account="default"} 1.0' in text else None

        text = await wait_for_async(owned, timeout=15, what="the owned-task gauge")
        (replicas,) = samples(text, "trtc_monitor_cluster_replicas")
        (up,) = samples(text, "trtc_monitor_store_up")
        (info,) = samples(text, "trtc_monitor_replica_info")
        assert (replicas.value, up.value, info.value) == (1.0, 1.0, 1.0)
        assert info.labels["backend"] == "sqlite"
        assert info.labels["replica"]
        assert samples(text, "trtc_recording_tasks")

    async def test_a_purged_task_and_its_series_disappear(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url)
        simulator.add_task(APP, "kept", life=Life(idle=600))
        simulator.add_task(APP, "purged", life=Life(idle=600))
        await register(running, "kept")
        await register(running, "purged", region="ap-mumbai")
        await wait_status(running, "purged", Status.IDLE)
        await wait_status(running, "kept", Status.IDLE)
        assert 'task_id="purged"' in await scrape(running)

        async with running.session.delete(
            f"{running.url}/api/v1/tasks/{APP}/purged", headers=running.auth()
        ) as response:
            assert response.status == 200
        text = await scrape(running)
        status = {
            s.labels["status"]: s.value
            for s in by_task(samples(text, "trtc_recording_task_status"))["purged"]
        }
        assert status["Removed"] == 1.0
        # Nothing is purged within the retention ...
        assert await running.daemon.purge() == []
        # ... and everything ended is once it has passed.
        real_clock = running.daemon.clock
        retention = running.daemon.config.storage.retention
        running.daemon.clock = lambda: real_clock() + retention + 60.0
        try:
            assert await running.daemon.purge() == [TaskKey(APP, "purged")]
        finally:
            running.daemon.clock = real_clock
        text = await scrape(running)
        assert 'task_id="purged"' not in text
        assert 'task_id="kept"' in text
        # Its region had no other task: its fleet counts go too.
        assert 'region="ap-mumbai"' not in "\n".join(
            line for line in text.splitlines() if line.startswith("trtc_recording_tasks{")
        )

    async def test_promtool_finds_nothing_wrong_with_a_live_scrape(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        promtool = require_binary("promtool")
        running = await make_daemon(simulator.url, "metrics:\n  labels: [room, customer]\n")
        simulator.add_task(APP, "idle", life=Life(idle=600))
        simulator.add_task(APP, "recording", life=Life(idle=0.0))
        await register(running, "idle", labels={"room": 'r "1"\\', "customer": "acme"})
        await register(running, "recording", region="ap-singapore", labels={"room": "r-2"})
        await register(running, "unknown", region="ap-beijing")
        await register(running, "removed")
        async with running.session.delete(
            f"{running.url}/api/v1/tasks/{APP}/removed", headers=running.auth()
        ) as response:
            assert response.status == 200
        await wait_status(running, "idle", Status.IDLE)
        await wait_status(running, "recording", Status.IN_PROGRESS)
        await wait_status(running, "unknown", Status.ENDED)
        text = await scrape(running)
        assert "trtc_monitor_api_request_duration_seconds_bucket" in text
        assert API_TOKEN not in text
        assert DEFAULT_SECRET_KEY not in text
        check = subprocess.run(
            [promtool, "check", "metrics"],
            input=text,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert (check.returncode, check.stdout, check.stderr) == (0, "", "")

    async def test_a_real_prometheus_scrapes_the_daemon_and_answers_promql(
        self, simulator: Simulator, make_daemon: DaemonFactory, tmp_path: Path
    ) -> None:
        require_binary("prometheus")
        running = await make_daemon(simulator.url)
        simulator.add_task(APP, "rec-1", life=Life(idle=0.0))
        simulator.add_task(APP, "idle-1", life=Life(idle=600))
        await register(running, "rec-1", region="ap-shanghai")
        await register(running, "idle-1")
        await wait_status(running, "rec-1", Status.IN_PROGRESS)
        await wait_status(running, "idle-1", Status.IDLE)
        target = urllib.parse.urlsplit(running.url).netloc
        # Prometheus is driven from a thread: the daemon shares this event loop and must keep
        # answering scrapes while the test waits.
        context: AbstractContextManager[Proc] = prometheus(tmp_path, target)
        server = await asyncio.to_thread(context.__enter__)
        try:
            query = 'trtc_recording_task_status{status="InProgress"} == 1'

            def answered() -> list[dict[str, Any]] | None:
                return promql(server.url, query) or None

            result = await asyncio.to_thread(wait_for, answered, 30, 0.5, query)
        finally:
            await asyncio.to_thread(context.__exit__, None, None, None)
        assert len(result) == 1
        labels = result[0]["metric"]
        assert labels["task_id"] == "rec-1"
        assert labels["sdk_app_id"] == str(APP)
        assert labels["region"] == "ap-shanghai"
        assert labels["account"] == "default"
        assert labels["job"] == "trtc-monitor"

    async def test_a_large_scrape_renders_while_the_event_loop_keeps_running(
        self, simulator: Simulator, make_daemon: DaemonFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        running = await make_daemon(simulator.url)
        daemon = running.daemon
        for i in range(10_000):
            task = make_task(f"bulk-{i:05d}", list(Status)[i % 7], region=REGIONS[i % 5])
            daemon.registry.put(task)

        ticks = 0
        during: list[tuple[int, int]] = []
        real_render = daemon.exposition.render

        async def observed_render(view: StateView, accept: str | None) -> Rendered:
            start = ticks
            result = await real_render(view, accept)
            during.append((start, ticks))
            return result

        monkeypatch.setattr(daemon.exposition, "render", observed_render)

        async def ticker() -> None:
            nonlocal ticks
            while True:
                ticks += 1
                await asyncio.sleep(0)

        ticking = asyncio.create_task(ticker())
        try:
            text = await scrape(running)
        finally:
            ticking.cancel()
        ((start, end),) = during
        assert end > start, "the event loop did not run while the exposition was rendered"
        assert text.count("trtc_recording_task_status{") == 7 * 10_000


class TestCompression:
    @pytest.mark.parametrize(
        ("header", "expected"),
        [
            ("gzip", True),
            ("deflate, gzip;q=1.0, *;q=0.5", True),
            ("GZIP", True),
            ("gzip;q=0", False),
            ("identity", False),
            ("", False),
        ],
    )
    def test_gzip_is_used_only_when_the_client_accepts_it(
        self, header: str, expected: bool
    ) -> None:
        assert accepts_gzip(header) is expected

    async def test_a_gzip_scrape_decompresses_to_the_plain_one(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url)
        await running.register(1400000001, simulator.add_task(1400000001))
        url = f"{running.url}/metrics"
        async with running.session.get(
            url, headers={"Accept-Encoding": "gzip"}, auto_decompress=False
        ) as r:
            assert r.headers["Content-Encoding"] == "gzip"
            packed = await r.read()
        async with running.session.get(url, headers={"Accept-Encoding": "identity"}) as r:
            assert "Content-Encoding" not in r.headers
            plain = await r.read()
        unpacked = gzip.decompress(packed)
        assert len(packed) < len(plain)
        # Counters may move between the two scrapes; the task series must not.
        task_lines = [x for x in unpacked.splitlines() if x.startswith(b"trtc_recording_task_info")]
        assert task_lines
        assert task_lines == [
            x for x in plain.splitlines() if x.startswith(b"trtc_recording_task_info")
        ]
