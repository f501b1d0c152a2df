"""The status page (docs/http-api.md) at scale: render time, and what serving it costs polling.

Prints, in one run:

* render time of ``/`` (build and render, the work done in the page thread) for 10,000 and
  100,000 tasks: the first page, a filtered page, a label filter and the last page; and of a
  task page with 500 transitions;
* a real daemon polling 10,000 tasks (by default) against the simulator, over budget so the
  limiter sends all the time: the event loop's longest stall and its 99th percentile, and the
  simulator's arrival rate, in phases of equal length: polling alone; polling while a
  separate process loads ``/`` once a second, then back to back; polling while the page is
  rendered on the event loop once a second instead of in the page thread (what the design
  avoids, for comparison).

    python bench/status_page.py [--tasks 10000,100000] [--live-tasks 10000] [--phase 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import random
import statistics
import string
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from multidict import MultiDict

from monitor.config import parse_config
from monitor.daemon import Daemon
from monitor.http.server import start_server
from monitor.http.status_page import AccountBudget
from monitor.http.status_page.query import parse_query
from monitor.http.status_page.rendering import (
    Overview,
    new_environment,
    render_overview,
    render_task,
)
from monitor.http.status_page.view import upload_view
from monitor.log import configure_logging
from monitor.models import REGIONS, Source, Status, Task, Transition
from monitor.simulator import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, Life, Simulator
from monitor.simulator.threaded import ThreadedSimulator
from monitor.store.sqlite import SqliteStore

APP = 1400000001
NOW = time.time()
STATUS_MIX = (Status.IN_PROGRESS,) * 7 + (Status.IDLE, Status.IDLE, Status.PENDING)
# A client in its own process, so its work does not compete with the daemon for the GIL.
CLIENT = """
import sys, time, urllib.request
url, until, pause = sys.argv[1], time.monotonic() + float(sys.argv[2]), float(sys.argv[3])
took = []
while time.monotonic() < until:
    t = time.perf_counter()
    with urllib.request.urlopen(url, timeout=30) as answer:
        answer.read()
    took.append(time.perf_counter() - t)
    time.sleep(pause)
took.sort()
print(len(took), took[len(took) // 2], took[-1])
"""


def fleet(n: int, rng: random.Random) -> list[Task]:
    alphabet = string.ascii_letters + string.digits + "-_"
    tasks = []
    for i in range(n):
        status = STATUS_MIX[i % len(STATUS_MIX)]
        tasks.append(
            Task(
                sdk_app_id=APP,
                task_id="".join(rng.choices(alphabet, k=48)),
                region=REGIONS[i % len(REGIONS)],
                account="default",
                labels={"room": f"room-{i // 4}", "customer": f"customer-{i % 97}"},
                registered_at=NOW - 3600,
                status=status,
                status_since=NOW - (i % 600),
                last_success_at=NOW - 1 if status is not Status.PENDING else None,
            )
        )
    return tasks


def history(task: Task, n: int) -> list[Transition]:
    cycle = (Status.IDLE, Status.IN_PROGRESS)
    out, status = [], Status.PENDING
    for i in range(n):
        to = cycle[i % 2]
        out.append(Transition(APP, task.task_id, status, to, NOW - 3600 + i * 7, Source.POLL))
        status = to
    return list(reversed(out))  # newest first, as the store answers


def median_time(fn: Callable[[], object], repeat: int) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def render_figures(sizes: Sequence[int], repeat: int) -> None:
    env = new_environment()
    budgets = [AccountBudget("default", 640.0, 19.4, 20.0, 19.4)]
    print("render time of / (build and render, median of", repeat, "runs)")
    print(f"  {'tasks':>8}  {'query':<28} {'time':>9}  {'bytes':>8}")
    for n in sizes:
        tasks = fleet(n, random.Random(1))
        last = -(-n // 50)
        for label, params in (
            ("first page", []),
            ("status=Idle", [("status", "Idle")]),
            ("label=customer:customer-5", [("label", "customer:customer-5")]),
            (f"middle page ({last // 2})", [("page", str(last // 2))]),
            (f"last page ({last})", [("page", str(last))]),
        ):
            query, _ = parse_query(MultiDict(params))
            view = Overview(tasks, budgets, [], [], query, [], NOW, 10)
            took, body = median_time(lambda v=view: render_overview(env, v), repeat)  # type: ignore[misc]
            print(f"  {n:>8,}  {label:<28} {took * 1000:>7.1f} ms  {len(str(body)):>8,}")
    task = fleet(1, random.Random(2))[0]
    hist = history(task, 500)
    took, body = median_time(
        lambda: render_task(env, task, hist, upload_view(task), NOW, 10), repeat
    )
    print(f"  task page, 500 transitions            {took * 1000:>7.1f} ms  {len(str(body)):>8,}")


# ---------------------------------------------------------------------------------------------


class LoopWatch:
    """Lateness of a 5 ms sleep on the loop: how long the loop was kept from running it."""

    def __init__(self) -> None:
        self.lags: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            started = time.perf_counter()
            await asyncio.sleep(0.005)
            self.lags.append(time.perf_counter() - started - 0.005)

    def start(self) -> None:
        self.lags = []
        self._task = asyncio.ensure_future(self._run())

    async def stop(self) -> tuple[float, float]:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        lags = sorted(self.lags)
        return lags[-1], lags[int(len(lags) * 0.99)]


def arrivals(sim: ThreadedSimulator) -> int:
    stats = sim.call(sim.sim.stats)
    count: int = stats["actions"].get("DescribeCloudRecording", {}).get("arrivals", 0)
    return count


async def live_figures(n: int, phase: float) -> None:
    rng = random.Random(3)
    tasks = fleet(n, rng)
    for task in tasks:  # polled at once and then every 15 s: far over the 20/s budget
        task.status, task.status_since, task.last_success_at = Status.PENDING, NOW, None
    sim = Simulator(seed=1, rate_limit=20, max_tasks_per_app=None)
    for task in tasks:
        sim.add_task(APP, task.task_id, life=Life(idle=0.5, in_progress=None))
    threaded = ThreadedSimulator(sim)
    url = threaded.start()
    with tempfile.TemporaryDirectory(prefix="trtc-page-bench-") as tmp:
        db = Path(tmp) / "monitor.db"
        store = SqliteStore(db)
        await store.open()
        for i in range(0, n, 10_000):
            await store.save_tasks(tasks[i : i + 10_000])
        await store.close()
        os.environ.update(BENCH_SECRET_ID=DEFAULT_SECRET_ID, BENCH_SECRET_KEY=DEFAULT_SECRET_KEY)
        config = parse_config(
            f"""
server: {{listen: "127.0.0.1:0"}}
storage: {{path: {db}}}
accounts:
  default:
    secret_id_env: BENCH_SECRET_ID
    secret_key_env: BENCH_SECRET_KEY
    endpoint: "{url}"
polling: {{interval: 15s, timeout: 5s}}
logging: {{format: json, level: warning}}
"""
        )
        configure_logging("json", "warning", [DEFAULT_SECRET_KEY], stream=open(os.devnull, "w"))  # noqa: SIM115
        daemon = Daemon(config)
        await daemon.start()
        runner, base = await start_server(daemon, config.server.listen)
        watch = LoopWatch()
        await asyncio.sleep(3)  # past the start: the first polls of a fresh daemon
        print(f"\na real daemon polling {n:,} tasks (required {n / 15:.0f}/s, budget 20/s)")
        print(f"  {'phase (' + str(phase) + ' s each)':<44} {'max stall':>10} {'p99':>8}  polls/s")

        def client(pause: float) -> str:
            out = subprocess.run(
                [sys.executable, "-c", CLIENT, base + "/", str(phase), str(pause)],
                capture_output=True,
                text=True,
                check=True,
            ).stdout.split()
            return f"{out[0]} pages, median {float(out[1]) * 1000:.0f} ms, max " + (
                f"{float(out[2]) * 1000:.0f} ms"
            )

        def line(label: str, worst: float, p99: float, rate: float, extra: str = "") -> None:
            print(
                f"  {label:<44} {worst * 1000:>7.1f} ms {p99 * 1000:>5.1f} ms  {rate:>6.1f}{extra}"
            )

        def begin() -> tuple[int, float]:
            watch.start()
            return arrivals(threaded), time.perf_counter()

        def polls_per_second(mark: tuple[int, float]) -> float:
            # Over the phase's real length: a client process takes a moment to start and end.
            return (arrivals(threaded) - mark[0]) / (time.perf_counter() - mark[1])

        mark = begin()
        await asyncio.sleep(phase)
        line("polling alone", *await watch.stop(), polls_per_second(mark))

        for label, pause in (("a client loading / once a second", 1.0), ("... back to back", 0.0)):
            mark = begin()
            served = await asyncio.to_thread(client, pause)
            line(label, *await watch.stop(), polls_per_second(mark), f"  ({served})")

        # For comparison: the same page rendered on the loop, once a second.
        env = new_environment()
        query, _ = parse_query(MultiDict())
        mark = begin()
        deadline = time.monotonic() + phase
        while time.monotonic() < deadline:
            view = Overview(daemon.registry.tasks(), [], [], [], query, [], time.time(), 10)
            render_overview(env, view)
            await asyncio.sleep(1.0)
        line(
            "(comparison) rendered on the loop, 1/s",
            *await watch.stop(),
            polls_per_second(mark),
        )
        await runner.cleanup()
        await daemon.stop()
    threaded.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", default="10000,100000", help="sizes for render times")
    parser.add_argument("--live-tasks", type=int, default=10_000)
    parser.add_argument("--phase", type=float, default=10.0, help="seconds per live phase")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} at start\n"
    )
    render_figures([int(s) for s in args.tasks.split(",")], args.repeat)
    if args.live_tasks:
        asyncio.run(live_figures(args.live_tasks, args.phase))


if __name__ == "__main__":
    main()
