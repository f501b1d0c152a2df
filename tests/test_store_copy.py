"""``trtc-monitor store copy`` between real SQLite files and a real redis-server."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from monitor.cli import main
from monitor.models import Source, Status, Task, Transition
from monitor.store import AlertRecord, Store
from monitor.store.factory import describe_store_url, store_from_url
from tests.redis_server import RedisServer
from tests.support import free_port

APP = 1400000001


def make_task(task_id: str, **fields: Any) -> Task:
    return Task(APP, task_id, "ap-guangzhou", "default", registered_at=100.0, **fields)


async def fill(store: Store) -> None:
    """Tasks with histories interleaved across the fleet, health, and every kind of alert."""
    a = make_task("任务-a", labels={"room": "房间"}, interval=7.5, extra={"leave_code": 2})
    b = make_task("b", source=Source.CALLBACK)
    c = make_task("c-never-moved", answer_status=Status.IDLE, answer_request_id="req-c")
    await store.save_tasks([a, b, c])
    steps = [
        (a, Status.IDLE, Source.POLL),
        (b, Status.IN_PROGRESS, Source.CALLBACK),
        (a, Status.IN_PROGRESS, Source.POLL),
        (b, Status.EXITED, Source.CALLBACK),
        (a, Status.ENDED, Source.API),
    ]
    for i, (task, to, source) in enumerate(steps):
        transition = Transition(
            task.sdk_app_id,
            task.task_id,
            task.status,
            to,
            200.0 + i,
            source,
            request_id=f"req-{i}",
            detail={"step": i},
        )
        task.status, task.status_since = to, 200.0 + i
        task.ended_at = task.status_since if task.final else None
        await store.record_transition(task, transition)
    b.consecutive_errors, b.last_error_code, b.last_error_at = 2, "InternalError", 210.0
    b.last_success_at, b.last_request_id, b.storage_files = 205.0, "req-x", 3
    await store.save_health([b])
    await store.save_alerts(
        [
            AlertRecord(
                "fp-exit-b",
                "RecordingTaskExited",
                {"alertname": "RecordingTaskExited", "task_id": "b"},
                {"summary": "exited"},
                "firing",
                203.0,
                task=b.key,
                last_sent_at={"am": 204.0, "hook": 204.5},
            ),
            AlertRecord(
                "fp-monitor",
                "RecordingMonitorThrottled",
                {"alertname": "RecordingMonitorThrottled"},
                {},
                "resolved",
                150.0,
                ends_at=160.0,
                last_sent_at={"am": 160.0},
                resolved_sent={"am"},
            ),
        ]
    )


async def snapshot(url: str) -> dict[str, Any]:
    """Everything a store holds, with the store's own sequence numbers left out."""
    store = store_from_url(url)
    await store.open()
    try:
        tasks = await store.load_tasks()
        histories = {
            t.key: [_unseq(x) for x in await store.transitions(t.key, newest_first=False)]
            for t in tasks
        }
        recent = [_unseq(x) for x in await store.recent_transitions(100)]
        alerts = await store.load_alerts()
    finally:
        await store.close()
    return {"tasks": tasks, "histories": histories, "recent": recent, "alerts": alerts}


def _unseq(t: Transition) -> Transition:
    return Transition(
        t.sdk_app_id, t.task_id, t.from_status, t.to_status, t.at, t.source, t.request_id, t.detail
    )


def with_store(url: str, work: Any) -> None:
    async def run() -> None:
        store = store_from_url(url)
        await store.open()
        try:
            await work(store)
        finally:
            await store.close()

    asyncio.run(run())


class TestRoundTrip:
    def test_sqlite_to_redis_to_sqlite_keeps_every_task_transition_and_alert(
        self, tmp_path: Path, redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
    ) -> None:
        first, last = f"sqlite:{tmp_path / 'one.db'}", f"sqlite:{tmp_path / 'two.db'}"
        redis_url = f"{redis_server.url}?key_prefix=moved:"
        with_store(first, fill)
        original = asyncio.run(snapshot(first))
        assert len(original["recent"]) == 5
        assert len(original["tasks"]) == 3

        assert main(["store", "copy", "--from", first, "--to", redis_url]) == 0
        out = capsys.readouterr().out
        assert "copied 3 tasks, 5 transitions and 2 alert records" in out
        assert "key prefix 'moved:'" in out
        assert asyncio.run(snapshot(redis_url)) == original

        assert main(["store", "copy", "--from", redis_url, "--to", last]) == 0
        assert "copied 3 tasks, 5 transitions and 2 alert records" in capsys.readouterr().out
        assert asyncio.run(snapshot(last)) == original


class TestTargets:
    def test_a_non_empty_target_is_refused_unless_forced(
        self, tmp_path: Path, redis_server: RedisServer, capsys: pytest.CaptureFixture[str]
    ) -> None:
        source = f"sqlite:{tmp_path / 'src.db'}"
        with_store(source, fill)

        async def other(store: Store) -> None:
            await store.save_task(make_task("only-in-target"))
            await store.save_task(make_task("b", labels={"stale": "copy"}))

        with_store(redis_server.url, other)
        assert main(["store", "copy", "--from", source, "--to", redis_server.url]) == 1
        assert "not empty" in capsys.readouterr().err
        assert len(asyncio.run(snapshot(redis_server.url))["tasks"]) == 2

        args = ["store", "copy", "--from", source, "--to", redis_server.url, "--force"]
        assert main(args) == 0
        merged = asyncio.run(snapshot(redis_server.url))
        original = asyncio.run(snapshot(source))
        by_id = {t.task_id: t for t in merged["tasks"]}
        assert set(by_id) == {"任务-a", "b", "c-never-moved", "only-in-target"}
        assert by_id["b"] == next(t for t in original["tasks"] if t.task_id == "b")
        assert merged["histories"] == {**original["histories"], by_id["only-in-target"].key: []}
        # Copying again with --force replaces, it does not duplicate history.
        assert main(args) == 0
        assert asyncio.run(snapshot(redis_server.url))["histories"] == merged["histories"]

    def test_an_unreachable_redis_is_one_line_without_the_password(
        self, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        sqlite3.connect(tmp_path / "src.db").close()  # an (empty) source that exists
        source = f"sqlite:{tmp_path / 'src.db'}"
        target = f"redis://:pa55-Wq7z@127.0.0.1:{free_port()}/0"
        assert main(["store", "copy", "--from", source, "--to", target]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: store copy from sqlite:")
        assert len(err.strip().splitlines()) == 1
        assert "pa55-Wq7z" not in err

    @pytest.mark.parametrize(
        ("source", "target", "message"),
        [
            ("sqlite:a.db", "postgres://x/y", "a store URL is sqlite:PATH or redis://"),
            ("sqlite:", "sqlite:b.db", "without a path"),
            ("sqlite:a.db", "sqlite:a.db", "the same store"),
            ("redis://h/0?key_prefix=", "sqlite:b.db", "key_prefix may not be empty"),
        ],
    )
    def test_bad_urls_are_usage_errors(
        self, source: str, target: str, message: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        assert main(["store", "copy", "--from", source, "--to", target]) == 2
        assert message in capsys.readouterr().err

    def test_descriptions_never_show_a_password(self) -> None:
        described = describe_store_url("redis://user:pa55-Wq7z@cache:6380/2?key_prefix=x:")
        assert described == "redis cache:6380/2 (key prefix 'x:')"
