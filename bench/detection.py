"""Detection (docs/testing.md): how soon an exit made in the simulator shows in the daemon.

200 tasks at a 15 s interval (13.3 req/s, within the 20 req/s budget). Exits are made at random
moments in the simulator; the delay is measured from the exit to the daemon's Exited transition
(the moment ``trtc_recording_task_status`` changes). Once by polling alone, once with the
recording callbacks on. Bars: polling within interval + 1 s at the 99th percentile, callbacks
within 1 s.

    python bench/detection.py [--tasks 200] [--exits 60] [--interval 15]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import tempfile
import time
from pathlib import Path

from monitor.config import parse_config
from monitor.daemon import Daemon
from monitor.events import TransitionRecorded
from monitor.http.server import start_server
from monitor.log import configure_logging
from monitor.models import REGIONS, Status
from monitor.simulator import (
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
    CallbackSettings,
    Life,
    Simulator,
)
from monitor.taskspec import TaskSpec

APP = 1400000001
KEY = "benchcallbackkey0123456789abcdef"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def measure(args: argparse.Namespace, callbacks: bool) -> list[float]:
    workdir = Path(tempfile.mkdtemp(prefix="trtc-detect-"))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    sim = Simulator(
        seed=3,
        max_tasks_per_app=None,
        callback=CallbackSettings(url=f"{base}/callbacks/trtc", key=KEY, events=frozenset({302}))
        if callbacks
        else None,
    )
    await sim.start()
    extra = "callbacks: {key_env: BENCH_CB_KEY, auto_register: false}\n" if callbacks else ""
    config = parse_config(
        f"""
server: {{listen: "127.0.0.1:{port}"}}
storage: {{path: {workdir / "monitor.db"}}}
accounts:
  default: {{secret_id_env: BENCH_ID, secret_key_env: BENCH_KEY, endpoint: "{sim.url}"}}
polling: {{interval: {int(args.interval * 1000)}ms, interval_by_status: {{}}, jitter: 10%}}
{extra}"""
    )
    daemon = Daemon(config)
    seen: dict[str, float] = {}

    def on_transition(event: TransitionRecorded) -> None:
        task, t = event.task, event.transition
        # Exited, or straight to Ended when the short Exited phase fell between two polls.
        if t.to_status in (Status.EXITED, Status.ENDED, Status.EXPIRED):
            seen.setdefault(task.task_id, time.monotonic())

    daemon.bus.subscribe(TransitionRecorded, on_transition)
    await daemon.start()
    runner, _ = await start_server(daemon, config.server.listen)
    try:
        ids = [sim.add_task(APP, life=Life(idle=0.5, in_progress=None)) for _ in range(args.tasks)]
        for i, task_id in enumerate(ids):
            await daemon.tracker.register(
                TaskSpec(sdk_app_id=APP, task_id=task_id, region=REGIONS[i % len(REGIONS)])
            )
        await asyncio.sleep(args.interval * 1.5)  # every task observed in progress
        rng = random.Random(5)
        made: dict[str, float] = {}
        for task_id in rng.sample(ids, args.exits):
            await asyncio.sleep(rng.uniform(0.05, 0.4))
            sim.exit_task(APP, task_id, leave_code=3)
            made[task_id] = time.monotonic()
        deadline = time.monotonic() + args.interval * 2 + 5
        while len(seen.keys() & made.keys()) < len(made) and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        missing = len(made.keys() - seen.keys())
        if missing:
            print(f"  {missing} exits not seen within {args.interval * 2 + 5:.0f}s")
        return [seen[t] - made[t] for t in made if t in seen]
    finally:
        await runner.cleanup()
        await daemon.stop()
        await sim.stop()


async def main(args: argparse.Namespace) -> None:
    configure_logging("json", "warning", [DEFAULT_SECRET_KEY, KEY], stream=open(os.devnull, "w"))  # noqa: SIM115
    os.environ.update(BENCH_ID=DEFAULT_SECRET_ID, BENCH_KEY=DEFAULT_SECRET_KEY, BENCH_CB_KEY=KEY)
    print(
        f"{args.tasks} tasks at {args.interval:g}s ({args.tasks / args.interval:.1f} req/s of a "
        f"20 req/s budget), {args.exits} exits made in the simulator"
    )
    for label, callbacks, bar in (
        ("polling only", False, args.interval + 1),
        ("with callbacks", True, 1.0),
    ):
        delays = await measure(args, callbacks)
        print(
            f"{label:<15} p50 {percentile(delays, 0.5):6.2f}s  p99 {percentile(delays, 0.99):6.2f}s"
            f"  max {max(delays):6.2f}s  (bar: p99 <= {bar:g}s, {len(delays)} exits seen)"
        )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=200)
    parser.add_argument("--exits", type=int, default=60)
    parser.add_argument("--interval", type=float, default=15.0)
    asyncio.run(main(parser.parse_args()))
