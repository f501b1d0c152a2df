"""No stored record can break a read: a record with times out of any date's range, planted
straight into each store (a real SQLite file, a real redis-server), then a daemon started on
it. Every read path answers, the bad times show as null, the alert sweep still alerts for the
other tasks, and the record can be deleted."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aredis
from structlog.testing import capture_logs

from monitor.models import Status, TaskKey
from monitor.simulator import Life, Simulator
from monitor.store.redis import RedisKeys, task_field
from tests.conftest import DaemonFactory, RunningDaemon, daemon_config_text
from tests.redis_server import RedisServer
from tests.support import wait_for_async

APP = 1400000001
LIVE = Life(idle=0.0, in_progress=None, exited=30)
HUGE = 9.2e18  # what "EventMsTs": 9223372036854775807 once became
BAD_UPLOAD = {"started_at": HUGE, "failures": [{"at": HUGE, "event_type": 308}]}


def redis_config(simulator: Simulator, tmp_path: Path) -> str:
    text = daemon_config_text(simulator.url, tmp_path / "unused.db")
    return text.replace(
        "storage:\n", "storage:\n  backend: redis\n  redis:\n    url_env: TEST_REDIS_URL\n"
    )


async def read_every_path(running: RunningDaemon) -> dict[str, Any]:
    """GET every read path; none answers 5xx. Returns the bad task as the API shows it."""
    paths = [
        "/api/v1/tasks",
        "/api/v1/tasks?limit=1",
        "/api/v1/tasks?limit=1&offset=1",
        "/api/v1/tasks?status=Removed",
        "/api/v1/alerts",
        f"/api/v1/tasks/{APP}/t-bad/transitions",
        "/",
        f"/tasks/{APP}/t-bad",
        f"/tasks/{APP}/t-removed",
        "/metrics",
    ]
    for path in paths:
        async with running.session.get(f"{running.url}{path}") as r:
            await r.read()
            assert r.status == 200, (path, r.status)
    async with running.session.get(f"{running.url}/api/v1/tasks/{APP}/t-bad") as r:
        assert r.status == 200
        shown: dict[str, Any] = await r.json()
    return shown


async def check_daemon_on_bad_records(running: RunningDaemon, simulator: Simulator) -> None:
    with capture_logs() as logs:
        shown = await read_every_path(running)
        await read_every_path(running)  # logged once, not on every read
    assert shown["registered_at"] is None
    # status_since and last_success_at are bad too, but a poll may already have replaced them.
    assert shown["upload"]["started_at"] is None
    async with running.session.get(f"{running.url}/api/v1/tasks/{APP}/t-bad/transitions") as r:
        history = (await r.json())["transitions"]
    assert any(t["at"] is None for t in history)
    # The history's bad time is logged once, not on each of the reads above.
    repaired = [e for e in logs if e["event"] == "store_record_unreadable"]
    assert [e["field"] for e in repaired] == ["at"]

    # The sweep runs and alerts for another task: one that is never seen running ends.
    assert (await running.register(APP, "t-missing", interval="1s")).status == 201

    async def exit_alert() -> bool:
        await running.daemon.sweep_alerts()
        return any(
            r.task == TaskKey(APP, "t-missing") for r in running.daemon.fleet_alerts.firing()
        )

    await wait_for_async(exit_alert, timeout=20, what="the alert for t-missing")

    async with running.session.delete(
        f"{running.url}/api/v1/tasks/{APP}/t-bad", headers=running.auth()
    ) as r:
        assert r.status == 200, await r.text()
    await read_every_path(running)


async def first_daemon(
    make_daemon: DaemonFactory,
    simulator: Simulator,
    db: Path | None = None,
    text: str | None = None,
) -> None:
    simulator.add_task(APP, "t-bad", life=LIVE)
    simulator.add_task(APP, "t-removed", life=LIVE)
    running = await make_daemon(simulator.url, "", db, text=text)
    for task_id in ("t-bad", "t-removed"):
        assert (await running.register(APP, task_id, interval="60s")).status == 201
    async with running.session.delete(
        f"{running.url}/api/v1/tasks/{APP}/t-removed", headers=running.auth()
    ) as r:
        assert r.status == 200

    async def recording() -> bool:  # so that t-bad has a transition in its history
        task = running.daemon.registry.get(TaskKey(APP, "t-bad"))
        return task is not None and task.status is Status.IN_PROGRESS

    await wait_for_async(recording, timeout=20, what="t-bad seen recording")
    await running.stop()


class TestSqlite:
    async def test_a_planted_row_with_impossible_times_breaks_no_read(
        self, simulator: Simulator, make_daemon: DaemonFactory, tmp_path: Path
    ) -> None:
        db = tmp_path / "bad.db"
        await first_daemon(make_daemon, simulator, db=db)
        with sqlite3.connect(db) as conn:
            conn.execute(
                "UPDATE tasks SET registered_at = ?, status_since = ?, last_success_at = ?,"
                " upload = ? WHERE task_id = 't-bad'",
                (HUGE, 1e300, 9223372036854775807, json.dumps(BAD_UPLOAD)),
            )
            conn.execute(
                "UPDATE tasks SET registered_at = ?, ended_at = ? WHERE task_id = 't-removed'",
                (HUGE, HUGE),
            )
            conn.execute(
                "INSERT INTO transitions (sdk_app_id, task_id, from_status, to_status, at,"
                " source, request_id, detail) VALUES (?, 't-bad', 'Pending', 'Exited', ?,"
                " 'callback', NULL, '{}')",
                (APP, HUGE),
            )
        with capture_logs() as logs:
            running = await make_daemon(simulator.url, "", db)
        repaired = [e for e in logs if e["event"] == "store_record_unreadable"]
        assert {e["field"] for e in repaired} >= {"registered_at", "status_since", "ended_at"}
        await check_daemon_on_bad_records(running, simulator)


class TestRedis:
    async def test_a_planted_hash_with_impossible_times_breaks_no_read(
        self,
        redis_server: RedisServer,  # before make_daemon: stopped after the daemons are
        simulator: Simulator,
        make_daemon: DaemonFactory,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
    ) -> None:
        monkeypatch.setenv("TEST_REDIS_URL", redis_server.url)
        await first_daemon(make_daemon, simulator, text=redis_config(simulator, tmp_path))
        keys = RedisKeys("trtc-monitor:")
        client: Any = aredis.Redis.from_url(redis_server.url)  # raw bytes keys: untyped
        try:
            for task_id in ("t-bad", "t-removed"):
                field = task_field(TaskKey(APP, task_id))
                spec = json.loads(await client.hget(keys.tasks, field))
                spec[6] = HUGE  # registered_at
                spec[9] = 1e300  # status_since
                spec[11] = HUGE if task_id == "t-removed" else spec[11]  # ended_at
                spec[12] = BAD_UPLOAD
                await client.hset(keys.tasks, field, json.dumps(spec))
                health = json.loads(await client.hget(keys.health, field) or "null") or [
                    0,
                    None,
                    None,
                    None,
                    None,
                    None,
                    None,
                    0.0,
                ]
                health[3] = 9223372036854775807  # last_success_at
                await client.hset(keys.health, field, json.dumps(health))
            # A transition of t-bad itself (its removal gave t-removed one too).
            seqs = await client.lrange(keys.task_transitions(TaskKey(APP, "t-bad")), 0, -1)
            assert seqs, "t-bad has a transition to plant a bad time in"
            seq = seqs[0]
            value = await client.hget(keys.transitions, seq)
            planted = json.loads(value)
            planted[4] = HUGE  # at
            await client.hset(keys.transitions, seq, json.dumps(planted))
        finally:
            await client.aclose()
        running = await make_daemon(text=redis_config(simulator, tmp_path))
        await check_daemon_on_bad_records(running, simulator)
