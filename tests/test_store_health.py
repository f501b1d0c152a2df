"""Store health: a store that knows it is gone or cannot write, says so, refuses writes,
recovers by itself, and never loses what it acknowledged.

The SQLite store compares the files it holds with what their paths name (removed, replaced)
and marks itself down when a write fails for the disk (full, read-only). The daemon then
reports not ready and ``trtc_monitor_store_up 0``, answers writes with 503 and records no poll;
a full disk recovers by itself, a removed file is saved beside the path for the operator to
put back before a restart. Disk-full cases use a real tmpfs of fixed size (needs root).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from monitor.models import Source, Status, Task
from monitor.simulator import Life, Simulator, sign
from monitor.simulator.callbacks import build_body
from monitor.store.redis import RedisStore
from monitor.store.sqlite import SqliteStore
from tests.conftest import API_TOKEN, daemon_config_text
from tests.redis_server import RedisServer
from tests.support import free_port, wait_for_async
from tests.test_process import daemon_env, until_ready

APP = 1400000001
CALLBACK_KEY = "cbKey0123456789abcdef"
CALLBACKS = """
callbacks:
  key_env: TEST_CALLBACK_KEY
  auto_register: true
  account: default
  region: ap-guangzhou
"""
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


def task(task_id: str) -> Task:
    return Task(
        sdk_app_id=APP,
        task_id=task_id,
        region="ap-guangzhou",
        account="default",
        labels={},
        interval=None,
        registered_at=1000.0,
        source=Source.API,
        status=Status.PENDING,
        status_since=1000.0,
    )


def rescued(directory: Path, name: str) -> list[Path]:
    return sorted(directory.glob(f"{name}.rescued-*"))


async def stored_ids(path: Path) -> set[str]:
    async with SqliteStore(path) as store:
        return {t.task_id for t in await store.load_tasks()}


def remove_store_files(db: Path) -> None:
    """``rm state.db*``: the database, its -wal and -shm, and the lock file."""
    for path in db.parent.glob(db.name + "*"):
        path.unlink()


# --- a real filesystem of fixed size ---------------------------------------------------------


@contextlib.contextmanager
def small_disk(directory: Path, size: str = "8m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``directory``: a disk that really fills up."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    directory.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(directory)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield directory
    finally:
        subprocess.run(["umount", "-l", str(directory)], check=False)


def fill(directory: Path) -> Path:
    """Write a file until the disk is full; the file is returned to free the space later."""
    filler = directory / "filler"
    chunk = b"\0" * 4096
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while True:
            try:
                os.write(fd, chunk)
            except OSError:
                break
    finally:
        os.close(fd)
    return filler


# --- the store alone -------------------------------------------------------------------------


class TestTheSqliteProbe:
    async def test_a_healthy_store_is_up(self, tmp_path: Path) -> None:
        async with SqliteStore(tmp_path / "a.db") as store:
            await store.save_task(task("t1"))
            health = await store.probe()
            assert health.up
            assert not health.restart
            assert health.reason == ""

    async def test_a_removed_file_is_noticed_refused_and_its_content_saved_beside_it(
        self, tmp_path: Path
    ) -> None:
        db = tmp_path / "a.db"
        store = SqliteStore(db)
        await store.open()
        try:
            await store.save_tasks([task(f"t{i}") for i in range(50)])
            remove_store_files(db)
            health = await store.probe()
            assert not health.up
            assert health.restart
            assert "removed" in health.reason
            with pytest.raises(Exception, match="writes are refused until a restart"):
                await store.save_task(task("late"))
            # Never quietly started afresh at the path.
            assert not db.exists()
            # Reads still answer from what the daemon holds.
            assert len(await store.load_tasks()) == 50
        finally:
            await store.close()
        assert not db.exists()
        (copy,) = rescued(tmp_path, "a.db")
        assert str(copy) in health.reason
        assert await stored_ids(copy) == {f"t{i}" for i in range(50)}

    async def test_a_replaced_file_is_noticed_and_never_written(self, tmp_path: Path) -> None:
        db = tmp_path / "a.db"
        other = tmp_path / "other.db"
        async with SqliteStore(other) as elsewhere:
            await elsewhere.save_task(task("theirs"))
        store = SqliteStore(db)
        await store.open()
        try:
            await store.save_task(task("mine"))
            os.replace(other, db)
            before = db.read_bytes()
            health = await store.probe()
            assert not health.up
            assert health.restart
            assert "replaced" in health.reason
            with pytest.raises(Exception, match="refused"):
                await store.save_task(task("late"))
        finally:
            await store.close()
        assert db.read_bytes() == before  # the file put there was not touched
        (copy,) = rescued(tmp_path, "a.db")
        assert await stored_ids(copy) == {"mine"}
        assert await stored_ids(db) == {"theirs"}

    async def test_a_write_right_after_the_removal_is_not_acknowledged(
        self, tmp_path: Path
    ) -> None:
        """No probe ran yet: the write lands in the removed file, and its commit's check
        answers an error instead of an acknowledgement (the copy has it anyway)."""
        db = tmp_path / "a.db"
        store = SqliteStore(db)
        await store.open()
        try:
            await store.save_task(task("before"))
            remove_store_files(db)
            with pytest.raises(Exception, match="removed"):
                await store.save_task(task("during"))
            assert not (await store.probe()).up
        finally:
            await store.close()
        (copy,) = rescued(tmp_path, "a.db")
        assert "before" in await stored_ids(copy)

    async def test_a_removed_write_ahead_log_is_noticed(self, tmp_path: Path) -> None:
        db = tmp_path / "a.db"
        store = SqliteStore(db)
        await store.open()
        try:
            await store.save_task(task("t1"))
            (tmp_path / "a.db-wal").unlink()
            health = await store.probe()
            assert not health.up
            assert "write-ahead log" in health.reason
        finally:
            await store.close()
        # The clean close folded the log into the file, which kept everything.
        assert await stored_ids(db) == {"t1"}

    async def test_a_removed_lock_file_is_noticed(self, tmp_path: Path) -> None:
        db = tmp_path / "a.db"
        async with SqliteStore(db) as store:
            store.lock_path.unlink()
            health = await store.probe()
            assert not health.up
            assert "lock file" in health.reason

    async def test_a_full_disk_marks_it_down_and_freed_space_brings_it_back(
        self, tmp_path: Path
    ) -> None:
        with small_disk(tmp_path / "disk") as disk:
            store = SqliteStore(disk / "a.db")
            await store.open()
            try:
                await store.save_task(task("t0"))
                filler = fill(disk)
                with pytest.raises(Exception, match="full"):
                    await store.save_tasks([task(f"t{i}") for i in range(1, 200)])
                health = await store.probe()
                assert not health.up
                assert not health.restart
                assert "full" in health.reason
                # Refused while down, even a write small enough to fit somewhere.
                with pytest.raises(Exception, match="cannot write"):
                    await store.save_task(task("small"))
                filler.unlink()
                assert (await store.probe()).up
                await store.save_tasks([task(f"t{i}") for i in range(1, 200)])
            finally:
                await store.close()
            assert await stored_ids(disk / "a.db") == {f"t{i}" for i in range(200)}

    async def test_a_closed_store_is_down(self, tmp_path: Path) -> None:
        store = SqliteStore(tmp_path / "a.db")
        assert not (await store.probe()).up


class TestTheRedisProbe:
    async def test_up_while_redis_answers_down_when_it_does_not(
        self, redis_server: RedisServer
    ) -> None:
        store = RedisStore(redis_server.url, "health-test:")
        await store.open()
        try:
            assert (await store.probe()).up
            redis_server.stop()
            health = await store.probe()
            assert not health.up
            assert "does not answer" in health.reason
        finally:
            await store.close()


# --- the daemon as its own process -------------------------------------------------------------


class Daemon:
    def __init__(self, tmp: Path, endpoint: str, db: Path) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = tmp / "daemon.log"
        self.config = tmp / "monitor.yaml"
        self.config.write_text(
            daemon_config_text(endpoint, db, CALLBACKS).replace(
                '"127.0.0.1:0"', f'"127.0.0.1:{self.port}"'
            )
        )

    @contextlib.asynccontextmanager
    async def running(
        self, session: aiohttp.ClientSession
    ) -> AsyncIterator[subprocess.Popen[bytes]]:
        env = daemon_env()
        env["TEST_CALLBACK_KEY"] = CALLBACK_KEY
        with self.log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "monitor", "run", "-c", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
            )
            try:
                await until_ready(session, self.base, process)
                yield process
            finally:
                if process.poll() is None:
                    process.kill()
                    process.wait()

    async def stop(self, process: subprocess.Popen[bytes]) -> None:
        process.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(process.wait, 15) == 0

    async def register(self, session: aiohttp.ClientSession, task_id: str) -> tuple[int, Any]:
        body = {"sdk_app_id": APP, "task_id": task_id, "region": "ap-guangzhou"}
        async with session.post(f"{self.base}/api/v1/tasks", json=body, headers=AUTH) as r:
            return r.status, await r.json()

    async def callback(self, session: aiohttp.ClientSession, task_id: str) -> tuple[int, Any]:
        now = time.time()
        raw = build_body(
            301,
            room_id="room-1",
            user_id="recorder_1",
            task_id=task_id,
            payload={"Status": 0},
            event_wall=now,
            callback_wall=now + 0.05,
        )
        headers = {
            "Content-Type": "application/json",
            "Sign": sign(CALLBACK_KEY, raw),
            "SdkAppId": str(APP),
        }
        async with session.post(f"{self.base}/callbacks/trtc", data=raw, headers=headers) as r:
            return r.status, await r.json(content_type=None)

    async def ready(self, session: aiohttp.ClientSession) -> int:
        async with session.get(f"{self.base}/-/ready") as r:
            return r.status

    async def store_up(self, session: aiohttp.ClientSession) -> float:
        async with session.get(f"{self.base}/metrics") as r:
            text = await r.text()
        (line,) = [x for x in text.splitlines() if x.startswith("trtc_monitor_store_up ")]
        return float(line.split()[1])

    async def status(self, session: aiohttp.ClientSession, task_id: str) -> str:
        async with session.get(f"{self.base}/api/v1/tasks/{APP}/{task_id}") as r:
            body = await r.json()
            return str(body["status"])

    async def until_down(self, session: aiohttp.ClientSession) -> None:
        async def down() -> bool:
            return await self.ready(session) == 503 and await self.store_up(session) == 0

        await wait_for_async(down, timeout=15, what="not ready and store_up 0")

    async def until_up(self, session: aiohttp.ClientSession) -> None:
        async def up() -> bool:
            return await self.ready(session) == 200 and await self.store_up(session) == 1

        await wait_for_async(up, timeout=15, what="ready and store_up 1")


def assert_refused(status: int, body: Any) -> None:
    assert status == 503, body
    assert body["error"]["code"] == "store_unavailable"


class TestDaemonWhenItsFileIsRemoved:
    async def test_not_ready_refuses_writes_and_a_restart_on_the_saved_copy_loses_nothing(
        self, simulator: Simulator, tmp_path: Path
    ) -> None:
        db = tmp_path / "data" / "monitor.db"
        daemon = Daemon(tmp_path, simulator.url, db)
        acknowledged: set[str] = set()
        async with aiohttp.ClientSession() as session:
            async with daemon.running(session) as first:
                for _i in range(20):
                    task_id = simulator.add_task(APP, life=Life(idle=0.5, in_progress=None))
                    status, _ = await daemon.register(session, task_id)
                    assert status == 201
                    acknowledged.add(task_id)
                remove_store_files(db)
                # Keep registering until the daemon refuses: every 201 meanwhile must survive.
                answers: list[int] = []
                deadline = time.monotonic() + 15
                while time.monotonic() < deadline:
                    task_id = f"after-rm-{len(answers)}"
                    status, body = await daemon.register(session, task_id)
                    answers.append(status)
                    if status == 201:
                        acknowledged.add(task_id)
                    elif status == 503:
                        assert_refused(status, body)
                        break
                    else:
                        raise AssertionError((status, body))
                    await asyncio.sleep(0.05)
                assert answers[-1] == 503, "writes into the removed file kept being acknowledged"
                await daemon.until_down(session)
                assert_refused(*await daemon.register(session, "while-down"))
                assert_refused(*await daemon.callback(session, "by-callback"))
                one = f"{daemon.base}/api/v1/tasks/{APP}/{sorted(acknowledged)[0]}"
                async with session.delete(one, headers=AUTH) as r:
                    assert r.status == 503
                async with session.patch(one, json={"labels": {"a": "b"}}, headers=AUTH) as r:
                    assert_refused(r.status, await r.json())
                # Still down a while later (never started afresh at the path), reads answer.
                await asyncio.sleep(2)
                assert await daemon.ready(session) == 503
                assert not db.exists()
                async with session.get(f"{daemon.base}/api/v1/tasks?limit=1000") as r:
                    listed = {t["task_id"] for t in (await r.json())["tasks"]}
                assert acknowledged <= listed
                await daemon.stop(first)

            log = daemon.log.read_text()
            assert log.count('"store_down"') == 1, log
            assert "store_rescued" in log
            # The README's procedure: stop, move the saved copy into place, start.
            (copy,) = rescued(db.parent, db.name)
            for leftover in ("-wal", "-shm"):
                db.with_name(db.name + leftover).unlink(missing_ok=True)
            shutil.move(copy, db)
            async with daemon.running(session) as second:
                async with session.get(f"{daemon.base}/api/v1/tasks?limit=1000") as r:
                    listed = {t["task_id"] for t in (await r.json())["tasks"]}
                assert acknowledged <= listed
                assert await daemon.store_up(session) == 1
                await daemon.stop(second)
            # A clean stop leaves one self-contained file.
            assert not db.with_name(db.name + "-wal").exists()


class TestDaemonDurability:
    async def test_every_acknowledged_registration_survives_kill_9(
        self, simulator: Simulator, tmp_path: Path
    ) -> None:
        db = tmp_path / "monitor.db"
        daemon = Daemon(tmp_path, simulator.url, db)
        async with aiohttp.ClientSession() as session:
            async with daemon.running(session) as first:
                acknowledged = set()
                for i in range(30):
                    status, _ = await daemon.register(session, f"burst-{i}")
                    assert status == 201
                    acknowledged.add(f"burst-{i}")
                first.kill()  # right after the last acknowledgement, no clean stop
                first.wait()
            assert acknowledged <= await stored_ids(db)


class TestDaemonOnAFullDisk:
    async def test_down_while_full_polls_not_recorded_and_back_by_itself_when_freed(
        self, simulator: Simulator, tmp_path: Path
    ) -> None:
        with small_disk(tmp_path / "disk") as disk:
            db = disk / "monitor.db"
            daemon = Daemon(tmp_path, simulator.url, db)
            async with aiohttp.ClientSession() as session, daemon.running(session) as process:
                task_id = simulator.add_task(APP, life=Life(idle=0.5, in_progress=None, exited=600))
                assert (await daemon.register(session, task_id))[0] == 201

                async def recording() -> bool:
                    return await daemon.status(session, task_id) == "InProgress"

                await wait_for_async(recording, timeout=15, what="task InProgress")
                filler = fill(disk)
                # The polls' writes fail on the full disk: the store goes down by itself.
                await daemon.until_down(session)
                assert_refused(*await daemon.register(session, "while-full"))
                assert_refused(*await daemon.callback(session, "by-callback"))
                # A change seen by polls meanwhile is not recorded...
                assert simulator.exit_task(APP, task_id)
                await asyncio.sleep(3)
                assert await daemon.status(session, task_id) == "InProgress"
                assert await daemon.ready(session) == 503
                # ...until space is freed: back without a restart, and the poll records it.
                filler.unlink()
                await daemon.until_up(session)

                async def exited() -> bool:
                    return await daemon.status(session, task_id) == "Exited"

                await wait_for_async(exited, timeout=15, what="the exit recorded")
                assert (await daemon.register(session, "after-freed"))[0] == 201
                assert (await daemon.callback(session, "cb-after-freed"))[0] == 200
                await daemon.stop(process)
            log = daemon.log.read_text()
            assert log.count('"store_down"') >= 1
            assert '"store_up"' in log
            assert "poll_not_recorded" in log
            with sqlite3.connect(db) as conn:
                ids = {row[0] for row in conn.execute("SELECT task_id FROM tasks")}
            assert {task_id, "after-freed", "cb-after-freed"} <= ids
            assert "while-full" not in ids
