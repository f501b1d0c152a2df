"""Scale (SPEC section 11): 100,000 registered tasks, and /metrics for 10,000 of them.

Prints, in one run:

* /metrics for 10,000 tasks with per-task series, in both formats: render time (wall and the
  rendering thread's CPU), peak memory allocated while rendering, and bytes, for the reference
  path (every series a prometheus_client family) against the text written directly (the path
  served), and whether both give the same bytes;
* resident memory of 100,000 tasks loaded from a real SqliteStore into the daemon's table with
  a real PollScheduler entry each, and of a real Daemon started on that store, per task;
* restart time: ``SqliteStore.load_tasks()`` of 100,000 tasks, and the whole ``Daemon.start``.

Memory and restart are measured in fresh child processes (this script, ``--child``), so nothing
this process allocated before counts. The tasks look like a polled fleet: 48-character TaskIds
like Tencent's, two user labels, and (seven in ten recording) the last DescribeCloudRecording
answer with its StorageFileList, which the daemon keeps per task; none is due an alert. The
daemon's endpoint is a closed loopback port: polls that start before it is stopped fail at
once, and nothing leaves the machine.

    python bench/scale.py [--tasks 100000] [--render-tasks 10000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from monitor.config import parse_config
from monitor.daemon import Daemon
from monitor.log import configure_logging
from monitor.metrics import BucketGauge, MonitorMetrics, StateView
from monitor.models import REGIONS, Status, Task, TaskKey, storage_file_summary
from monitor.ratelimit import AsyncRateLimiter
from monitor.scheduler import PollScheduler
from monitor.simulator import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY
from monitor.store.sqlite import SqliteStore

APP = 1400000001
NOW = time.time()
OPENMETRICS = "application/openmetrics-text; version=1.0.0"


def fleet_task(i: int, rng: random.Random) -> Task:
    """Task number ``i`` of a fleet that has been polled for a while."""
    task_id = base64.urlsafe_b64encode(rng.randbytes(36)).decode()
    room = f"room-{i // 4}"
    kind = i % 10
    status = Status.IN_PROGRESS if kind < 7 else Status.IDLE if kind < 9 else Status.PENDING
    task = Task(
        sdk_app_id=APP,
        task_id=task_id,
        region=REGIONS[i % len(REGIONS)],
        account="default",
        labels={"room": room, "customer": f"customer-{i % 97}"},
        registered_at=NOW - 7200,
        status=status,
        # Idle for under two minutes: older, the restart would fire idle alerts that a daemon
        # running all along would have sent (and stored) already.
        status_since=NOW - (i % 120 if status is Status.IDLE else i % 3600),
    )
    if status is Status.PENDING:
        return task
    request_id = str(uuid.UUID(int=rng.getrandbits(128)))
    files = (
        [
            {
                "UserId": "",
                "FileName": f"{APP}_{room}_{task_id[:12]}.m3u8",
                "TrackType": "audio_video",
                "BeginTimeStamp": int((NOW - 3600) * 1000),
            }
        ]
        if status is Status.IN_PROGRESS
        else None
    )
    # What the tracker keeps of such an answer (apply_poll).
    count, summary = storage_file_summary(files)
    task.answer_status = status
    task.answer_request_id = request_id
    task.answer_files = summary
    task.last_request_id = request_id
    task.last_success_at = NOW - i % 15
    task.storage_files = count or 0
    task.consecutive_errors = 1 if i % 50 == 0 else 0
    return task


def rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


# ---------------------------------------------------------------------------------------------
# children: one measurement each, in a fresh process


async def child_table(db: Path) -> dict[str, Any]:
    """The daemon's core table, built as Daemon.start builds it, without the rest."""
    rss0 = rss_bytes()
    store = SqliteStore(db)
    await store.open()
    started = time.perf_counter()
    loaded = await store.load_tasks()
    load = time.perf_counter() - started
    await store.close()
    tasks: dict[TaskKey, Task] = {}
    for task in loaded:
        tasks[task.key] = task
    del loaded
    rss_tasks = rss_bytes()

    async def never(key: TaskKey) -> None:
        raise AssertionError("the scheduler is never started here")

    scheduler: PollScheduler[TaskKey] = PollScheduler(never)
    bucket = "default@trtc.tencentcloudapi.com"
    scheduler.add_bucket(bucket, AsyncRateLimiter(20, 1.0, key=bucket))
    now = time.time()
    for task in tasks.values():
        if not task.final:
            last = task.last_success_at or task.registered_at
            scheduler.add(task.key, bucket, 15.0, due_in=last + 15.0 - now)
    rss_scheduled = rss_bytes()

    # Again, on a table already in memory: the cold load above paid for first-time imports.
    store = SqliteStore(db)
    await store.open()
    again = []
    for _ in range(2):
        started = time.perf_counter()
        await store.load_tasks()
        again.append(time.perf_counter() - started)
    await store.close()
    return {
        "tasks": len(tasks),
        "scheduled": len(scheduler),
        "load_s": load,
        "load_again_s": again,
        "rss0": rss0,
        "rss_tasks": rss_tasks,
        "rss_scheduled": rss_scheduled,
    }


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: connections to it are refused


async def child_daemon(db: Path) -> dict[str, Any]:
    """A real daemon started on the store; stopped as soon as it is ready."""
    configure_logging("json", "error", [DEFAULT_SECRET_KEY], stream=open(os.devnull, "w"))  # noqa: SIM115
    os.environ.update(BENCH_ID=DEFAULT_SECRET_ID, BENCH_KEY=DEFAULT_SECRET_KEY)
    config = parse_config(
        f"""
storage: {{path: {db}}}
accounts:
  default: {{secret_id_env: BENCH_ID, secret_key_env: BENCH_KEY,
             endpoint: "http://127.0.0.1:{closed_port()}"}}
polling: {{interval: 15s}}
"""
    )
    rss0 = rss_bytes()
    daemon = Daemon(config)
    started = time.perf_counter()
    await daemon.start()
    ready = time.perf_counter() - started
    rss_ready = rss_bytes()
    tasks = len(daemon.registry)
    firing = len(daemon.alerts.firing())
    started = time.perf_counter()
    await daemon.stop()
    stop = time.perf_counter() - started
    return {
        "tasks": tasks,
        "firing": firing,
        "start_s": ready,
        "stop_s": stop,
        "rss0": rss0,
        "rss": rss_ready,
    }


def run_child(kind: str, db: Path) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, __file__, "--child", kind, "--db", str(db)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


# ---------------------------------------------------------------------------------------------
# /metrics


def timed(fn: Callable[[], tuple[bytes, str]], repeat: int) -> tuple[list[float], list[float]]:
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.thread_time()
        fn()
        cpus.append(time.thread_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return walls, cpus


def peak(fn: Callable[[], tuple[bytes, str]]) -> int:
    tracemalloc.start()
    try:
        fn()
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def render_figures(tasks: list[Task], repeat: int) -> None:
    metrics = MonitorMetrics()
    # Some instrumentation, as a running daemon has.
    for region in REGIONS:
        metrics.api_requests.labels("default", region, "ok", "").inc(1000)
        metrics.transitions.labels("default", region, "Idle", "InProgress").inc(10)
    for _ in range(100):
        metrics.api_duration.labels("default").observe(0.05)
        metrics.poll_delay.labels("default").observe(0.2)
    view = StateView(
        tasks=tasks,
        info_labels=["room", "customer"],
        buckets=[BucketGauge("default", "trtc.tencentcloudapi.com", 20.0, 19.6)],
        required_rate={"default": len(tasks) / 15.0},
    )
    print(
        f"/metrics, {len(tasks):,} tasks with per-task series and info labels room, customer "
        f"(best / median of {repeat}; CPU = the rendering thread's CPU time)"
    )
    for name, accept in (("text 0.0.4", None), ("OpenMetrics", OPENMETRICS)):
        reference = metrics.render_reference(view, accept)[0]
        fast = metrics.render(view, accept)[0]
        rows = []
        for path, fn in (
            ("prometheus_client", partial(metrics.render_reference, view, accept)),
            ("direct text", partial(metrics.render, view, accept)),
        ):
            walls, cpus = timed(fn, repeat)
            rows.append((path, walls, cpus, peak(fn)))
        print(f"  {name}: {len(fast):,} bytes, identical to the reference: {fast == reference}")
        for path, walls, cpus, top in rows:
            print(
                f"    {path:18s} wall {min(walls):6.3f} / {statistics.median(walls):6.3f} s   "
                f"CPU {min(cpus):6.3f} s   peak allocated {mib(top)}"
            )
        ratio = statistics.median(rows[0][1]) / statistics.median(rows[1][1])
        print(f"    ratio (median wall)  {ratio:.1f}x faster")


# ---------------------------------------------------------------------------------------------


async def write_store(db: Path, tasks: list[Task]) -> float:
    store = SqliteStore(db)
    await store.open()
    started = time.perf_counter()
    for i in range(0, len(tasks), 10_000):
        await store.save_tasks(tasks[i : i + 10_000])
    took = time.perf_counter() - started
    await store.close()
    return took


def main(args: argparse.Namespace) -> None:
    began = time.perf_counter()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} at start\n"
    )
    rng = random.Random(1)
    tasks = [fleet_task(i, rng) for i in range(args.tasks)]

    render_figures(tasks[: args.render_tasks], args.repeat)

    with tempfile.TemporaryDirectory(prefix="trtc-scale-") as tmp:
        db = Path(tmp) / "monitor.db"
        wrote = asyncio.run(write_store(db, tasks))
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
        print(
            f"\nstore: {args.tasks:,} tasks written in {wrote:.1f} s "
            f"({mib(size)} on disk, WAL included)"
        )
        table = run_child("table", db)
        daemon = run_child("daemon", db)

    n = table["tasks"]
    per_task = (table["rss_tasks"] - table["rss0"]) / n
    per_entry = (table["rss_scheduled"] - table["rss_tasks"]) / table["scheduled"]
    total = (table["rss_scheduled"] - table["rss0"]) / n
    print(
        f"\nresident memory (VmRSS, fresh process; {n:,} tasks, {table['scheduled']:,} scheduled)\n"
        f"  before loading          {mib(table['rss0'])}\n"
        f"  tasks loaded, in table  {mib(table['rss_tasks'])}  = {per_task:,.0f} B per task\n"
        f"  + scheduler entries     {mib(table['rss_scheduled'])}  "
        f"= {per_entry:,.0f} B per entry; {total:,.0f} B per task in all\n"
        f"  real daemon, started    {mib(daemon['rss'])}  (from {mib(daemon['rss0'])}: "
        f"{(daemon['rss'] - daemon['rss0']) / daemon['tasks']:,.0f} B per task)\n"
        f"\nrestart ({n:,} tasks)\n"
        f"  SqliteStore.load_tasks  {table['load_s']:.2f} s cold, "
        f"{' s, '.join(f'{t:.2f}' for t in table['load_again_s'])} s again\n"
        f"  Daemon.start to ready   {daemon['start_s']:.2f} s (store open and load, scheduler, "
        f"alert sweep; {daemon['firing']} alerts firing); stop {daemon['stop_s']:.2f} s"
    )
    own = resource.getrusage(resource.RUSAGE_SELF)
    print(
        f"\nthis process: max RSS {mib(own.ru_maxrss * 1024)}; "
        f"whole run {time.perf_counter() - began:.0f} s"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--render-tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--child", choices=("table", "daemon"), help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.child == "table":
        print(json.dumps(asyncio.run(child_table(parsed.db))))
    elif parsed.child == "daemon":
        print(json.dumps(asyncio.run(child_daemon(parsed.db))))
    else:
        main(parsed)
