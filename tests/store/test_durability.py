"""The store contract for crashes and upgrades (both backends; migrations SQLite only)."""

from __future__ import annotations

import asyncio
import signal
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from monitor.models import Status
from monitor.store import SCHEMA_VERSION, SqliteStore
from tests.store.helpers import (
    APP,
    KEY_PREFIX,
    Backend,
    reopened,
)

CHILD = """
import asyncio
import sys
from pathlib import Path

from monitor.models import Source, Status, Task, Transition
from monitor.store import SqliteStore
from monitor.store.redis import RedisStore


async def main() -> None:
    target = sys.argv[1]
    if target.startswith("sqlite:"):
        store = SqliteStore(Path(target.removeprefix("sqlite:")))
    else:
        store = RedisStore(target, sys.argv[2])
    await store.open()
    i = 0
    while True:
        task = Task(1400000001, f"t-{i}", "ap-guangzhou", "default", registered_at=float(i))
        await store.save_task(task)
        print(f"acked task {task.task_id}", flush=True)
        for n, to in enumerate((Status.IDLE, Status.IN_PROGRESS, Status.EXITED)):
            transition = Transition(
                task.sdk_app_id, task.task_id, task.status, to, float(i) + n, Source.POLL,
                request_id=f"req-{i}-{n}",
            )
            task.status = to
            recorded = await store.record_transition(task, transition)
            print(f"acked {recorded.seq} {task.task_id} {to.value}", flush=True)
        i += 1


asyncio.run(main())
"""


class TestCrashDurability:
    async def test_every_acknowledged_write_survives_kill_9(
        self, tmp_path: Path, backend: Backend
    ) -> None:
        script = tmp_path / "writer.py"
        script.write_text(textwrap.dedent(CHILD))
        child = await asyncio.create_subprocess_exec(
            sys.executable,
            str(script),
            backend.target,
            KEY_PREFIX,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        assert child.stdout is not None
        lines: list[str] = []
        try:
            while sum(1 for line in lines if not line.startswith("acked task")) < 300:
                line = await asyncio.wait_for(child.stdout.readline(), timeout=60)
                if not line:
                    assert child.stderr is not None
                    pytest.fail(f"writer died: {(await child.stderr.read()).decode()}")
                lines.append(line.decode().strip())
        finally:
            child.send_signal(signal.SIGKILL)
            await child.wait()
        # Acks already in the pipe were printed after their write returned: they count too.
        rest = await child.stdout.read()
        lines += [line for line in rest.decode().splitlines() if line]
        assert child.returncode == -signal.SIGKILL

        acked_tasks = {line.split()[2] for line in lines if line.startswith("acked task")}
        acked = [line.split() for line in lines if not line.startswith("acked task")]
        acked_seqs = {int(parts[1]): (parts[2], parts[3]) for parts in acked}
        last_acked = max(acked_seqs)

        store = await reopened(backend)
        try:
            tasks = {t.task_id: t for t in await store.load_tasks()}
            history = await store.recent_transitions(last_acked + 1000)
        finally:
            await store.close()

        stored = {t.seq: (t.task_id, t.to_status.value) for t in history}
        assert acked_tasks <= set(tasks)
        for seq in range(1, last_acked + 1):
            assert seq in stored, f"acknowledged transition {seq} was lost"
        for seq, fact in acked_seqs.items():
            assert stored[seq] == fact
        # Each task's state is the one its newest stored transition left it in.
        newest: dict[str, str] = {}
        for t in sorted(history, key=lambda t: t.seq or 0):
            newest[t.task_id] = t.to_status.value
        for task_id, task in tasks.items():
            assert task.status.value == newest.get(task_id, Status.PENDING.value)


class TestUpgrade:
    async def test_a_version_1_file_is_upgraded_in_place_keeping_its_tasks(
        self, tmp_path: Path
    ) -> None:
        from monitor.store.sqlite.schema import MIGRATIONS as _MIGRATIONS

        path = tmp_path / "v1.db"
        side = sqlite3.connect(path)
        side.executescript(_MIGRATIONS[0])
        side.execute(
            "INSERT INTO tasks VALUES (?, 't-1', 'ap-beijing', 'default', '{}', NULL, 1.0, "
            "'api', 'InProgress', 2.0, 0, NULL, NULL, 3.0, NULL, NULL, NULL, '{}', NULL)",
            (APP,),
        )
        side.execute("PRAGMA user_version = 1")
        side.commit()
        side.close()
        async with SqliteStore(path) as store:
            [task] = await store.load_tasks()
        assert (task.task_id, task.status, task.last_success_at) == ("t-1", Status.IN_PROGRESS, 3.0)
        assert task.observed_at == 0.0
        side = sqlite3.connect(path)
        assert side.execute("PRAGMA user_version").fetchone() == (SCHEMA_VERSION,)
        side.close()
