"""Alerts end to end across a kill -9 of the daemon as a separate process: what was
delivered is not sent again before its resend."""

from __future__ import annotations

import asyncio
import json
import signal
import sqlite3
from pathlib import Path
from typing import Any

import aiohttp

from monitor.alerts import TASK_EXITED
from monitor.simulator import Life, Simulator
from tests.alerts_e2e_support import (
    APP,
    alerts_yaml,
    notices,
    polled_more,
    samples,
    scrape,
    webhook,
)
from tests.conftest import API_TOKEN
from tests.support import free_port, wait_for_async
from tests.test_process import daemon_process, get_json, until_ready, write_config
from tests.test_receivers import Sink, serving

# ------------------------------------------------------------------------------ restart


def sent_to(db: Path, task_id: str) -> dict[str, float]:
    """The stored ``last_sent_at`` of the task's exit alert: receiver -> time."""
    with sqlite3.connect(db) as conn:
        rows = list(
            conn.execute(
                "SELECT last_sent_at FROM alerts WHERE alertname = ? AND task_id = ?",
                (TASK_EXITED, task_id),
            )
        )
    if not rows:
        return {}
    sent: dict[str, float] = json.loads(rows[0][0])
    return sent


class TestRestart:
    async def test_after_kill_9_a_delivered_alert_is_not_sent_again_before_its_resend(
        self, simulator: Simulator, tmp_path: Path
    ) -> None:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = tmp_path / "daemon.log"
        task_id = simulator.add_task(APP, life=Life(idle=0.5, in_progress=1.0, exited=60))
        async with serving(Sink()) as sink, aiohttp.ClientSession() as session:
            extra = alerts_yaml(webhook(sink.url, resend="30s"))
            config = write_config(tmp_path, simulator.url, port, extra)

            def fired() -> list[dict[str, Any]]:
                return notices(sink, TASK_EXITED, task_id, "firing")

            with daemon_process(config, log) as first:
                await until_ready(session, base, first)
                async with session.post(
                    f"{base}/api/v1/tasks",
                    json={"sdk_app_id": APP, "task_id": task_id, "region": "ap-guangzhou"},
                    headers={"Authorization": f"Bearer {API_TOKEN}"},
                ) as r:
                    assert r.status == 201

                async def delivered_and_recorded() -> bool:
                    return bool(fired()) and "hook" in await asyncio.to_thread(
                        sent_to, tmp_path / "monitor.db", task_id
                    )

                await wait_for_async(delivered_and_recorded, timeout=20, what="the delivery")
                first.send_signal(signal.SIGKILL)
                await asyncio.to_thread(first.wait)
            assert len(fired()) == 1

            with daemon_process(config, log) as second:
                await until_ready(session, base, second)
                gauge = samples(await scrape(session, base), "trtc_monitor_alerts_firing")
                assert gauge[(("alertname", TASK_EXITED),)] == 1.0
                listed = await get_json(session, f"{base}/api/v1/alerts")
                assert [a["labels"]["task_id"] for a in listed["alerts"]] == [task_id]
                # Six polls of the task since the restart: past the first periodic sweep (5 s),
                # well within the 30 s resend.
                await polled_more(simulator, task_id, 6, timeout=20)
                assert len(fired()) == 1
                gauge = samples(await scrape(session, base), "trtc_monitor_alerts_firing")
                assert gauge[(("alertname", TASK_EXITED),)] == 1.0
                second.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(second.wait, 10) == 0
        assert len(fired()) == 1
