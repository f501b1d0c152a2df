"""Store backends and the shared limiter, side by side (docs/testing.md,
docs/high-availability.md).

Prints, for SQLite (a temp file) and Redis (a ``redis-server`` started on a free loopback port,
no persistence, so the figures are Redis's own work, not the disk's):

* ``save_tasks`` and ``load_tasks`` of N tasks that look like a polled fleet (restart time);
* sequential ``record_transition`` calls per second (one writer, as one replica);
* for Redis, the same load with redis-py's pure-Python reply parser instead of hiredis
  (a child process that cannot import hiredis), which is why hiredis is a dependency;
* the shared limiter: three limiters on three connection pools (three replicas) sharing one
  budget of 20 per second under overload for a few seconds: grants per second, and the most
  grants in any window of one second and of ``1 / (1 - guard)`` seconds.

    python bench/store_backends.py [--tasks 100000] [--transitions 2000] [--limiter-seconds 10]
"""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

if "--no-hiredis" in sys.argv:
    sys.modules["hiredis"] = None  # type: ignore[assignment]  # redis-py then parses in Python

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis.asyncio as aredis

from monitor.models import Source, Status, Task, Transition
from monitor.ratelimit.redis import RedisRateLimiter
from monitor.store import SqliteStore, Store
from monitor.store.redis import RedisKeys, RedisStore
from tests.redis_server import running_redis


def fleet(n: int) -> list[Task]:
    tasks = []
    for i in range(n):
        task = Task(
            1400000001,
            f"{i:08d}-6b0b1c4e-4c6f-4f0b-9a39-1f0f6c1d2e3f",
            "ap-guangzhou",
            "default",
            labels={"room": f"r-{i}", "customer": "acme"},
            registered_at=1_700_000_000.0 + i,
            status=Status.IN_PROGRESS if i % 10 < 7 else Status.IDLE,
        )
        if i % 10 < 7:
            task.answer_status = Status.IN_PROGRESS
            task.answer_files = f'[{{"FileName":"{i}.m3u8","TrackType":"audio_video"}}]'
        tasks.append(task)
    return tasks


async def store_figures(name: str, store: Store, n: int, transitions: int) -> None:
    tasks = fleet(n)
    await store.open()
    try:
        started = time.perf_counter()
        await store.save_tasks(tasks)
        saved = time.perf_counter() - started
        started = time.perf_counter()
        loaded = await store.load_tasks()
        load = time.perf_counter() - started
        assert len(loaded) == n
        task = tasks[0]
        started = time.perf_counter()
        for i in range(transitions):
            to = Status.EXITED if task.status is Status.IN_PROGRESS else Status.IN_PROGRESS
            t = Transition(task.sdk_app_id, task.task_id, task.status, to, float(i), Source.POLL)
            task.status = to
            await store.record_transition(task, t)
        per_second = transitions / (time.perf_counter() - started)
    finally:
        await store.close()
    print(
        f"{name:<26} save {n:,} tasks {saved:6.2f} s   load {load:6.2f} s   "
        f"record_transition {per_second:8,.0f}/s"
    )


async def limiter_figures(url: str, seconds: float) -> None:
    keys = RedisKeys("bench:")
    grants: list[float] = []
    pools = [aredis.Redis.from_url(url) for _ in range(3)]
    limiters = [
        RedisRateLimiter(
            pool,
            keys.limiter("default@host"),
            keys.limiter_sends("default@host"),
            20,
            1.0,
            key="default@host",
            on_grant=grants.append,
        )
        for pool in pools
    ]

    async def overload(limiter: RedisRateLimiter) -> None:
        async def one() -> None:
            while True:
                await limiter.acquire()

        workers = [asyncio.create_task(one()) for _ in range(10)]
        await asyncio.sleep(seconds)
        for w in workers:
            w.cancel()
        await asyncio.gather(*workers, return_exceptions=True)

    await asyncio.gather(*(overload(lim) for lim in limiters))
    for pool in pools:
        await pool.aclose()
    grants.sort()
    span = grants[-1] - grants[0]
    cap_window = 1.0 / (1 - limiters[0].guard)

    def most_within(window: float) -> int:
        return max(bisect.bisect_left(grants, t + window) - i for i, t in enumerate(grants))

    print(
        f"shared limiter, 3 replicas: {len(grants)} grants in {span:.1f} s = "
        f"{(len(grants) - 1) / span:.2f}/s "
        f"(limit 20/s, target {limiters[0].configured_rate:.1f}/s);"
        f" most in any 1 s: {most_within(1.0)}, in any {cap_window:.4f} s: "
        f"{most_within(cap_window)}"
    )


async def redis_store_only(url: str, n: int, transitions: int) -> None:
    await store_figures("redis (pure-Python parser)", RedisStore(url, "nohiredis:"), n, transitions)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--transitions", type=int, default=2000)
    parser.add_argument("--limiter-seconds", type=float, default=10.0)
    parser.add_argument("--no-hiredis", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.no_hiredis:
        asyncio.run(redis_store_only(args.url, args.tasks, args.transitions))
        return

    print(f"{os.cpu_count()} CPUs, Python {sys.version.split()[0]}")
    with tempfile.TemporaryDirectory() as tmp:
        asyncio.run(
            store_figures(
                "sqlite", SqliteStore(Path(tmp) / "bench.db"), args.tasks, args.transitions
            )
        )
        with running_redis(Path(tmp) / "redis") as server:
            asyncio.run(
                store_figures(
                    "redis (hiredis parser)", RedisStore(server.url), args.tasks, args.transitions
                )
            )
            subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "--no-hiredis",
                    "--url",
                    server.url,
                    "--tasks",
                    str(args.tasks),
                    "--transitions",
                    str(args.transitions),
                ],
                check=True,
            )
            asyncio.run(limiter_figures(server.url, args.limiter_seconds))


if __name__ == "__main__":
    main()
