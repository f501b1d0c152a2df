"""Budget use (SPEC section 11): 2,000 tasks at 15 s, five regions, one account, 20 req/s.

The simulator runs in its own process (as Tencent's servers would) with its strict per-second
arrival counter; the daemon runs here. Prints the sustained sending rate as a share of the
limit, the throttled answers, the most arrivals seen in any one second, and the oldest
observation age against tasks / rate.

    python bench/budget.py [--tasks 2000] [--interval 15] [--duration 300]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import yaml

from monitor.config import parse_config
from monitor.daemon import Daemon
from monitor.log import configure_logging
from monitor.models import REGIONS
from monitor.simulator import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, SimulatorControl
from monitor.taskspec import TaskSpec

APP = 1400000001
DESCRIBE = "DescribeCloudRecording"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def write_scenario(path: Path, tasks: int) -> list[str]:
    ids = [f"bench-{i:05d}" for i in range(tasks)]
    path.write_text(
        yaml.safe_dump(
            {
                "seed": 1,
                "rate_limit": 20,
                "rate_window": "1s",
                "max_tasks_per_app": None,
                "tasks": [
                    {"sdk_app_id": APP, "task_id": t, "idle": "1s", "in_progress": None}
                    for t in ids
                ],
            }
        )
    )
    return ids


async def wait_up(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        for _ in range(200):
            try:
                async with session.get(f"{url}/-/sim/") as r:
                    if r.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.05)
    raise RuntimeError("simulator did not start")


async def main(args: argparse.Namespace) -> None:
    workdir = Path(tempfile.mkdtemp(prefix="trtc-bench-"))
    ids = write_scenario(workdir / "scenario.yaml", args.tasks)
    port = free_port()
    sim_url = f"http://127.0.0.1:{port}"
    sim = subprocess.Popen(
        [sys.executable, "-m", "monitor", "simulate", "--listen", f"127.0.0.1:{port}",
         "--scenario", str(workdir / "scenario.yaml")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )  # fmt: skip
    configure_logging("json", "warning", [DEFAULT_SECRET_KEY], stream=open(os.devnull, "w"))  # noqa: SIM115
    os.environ.update(BENCH_ID=DEFAULT_SECRET_ID, BENCH_KEY=DEFAULT_SECRET_KEY)
    config = parse_config(
        f"""
storage: {{path: {workdir / "monitor.db"}}}
accounts:
  default: {{secret_id_env: BENCH_ID, secret_key_env: BENCH_KEY, endpoint: "{sim_url}"}}
polling: {{interval: {int(args.interval * 1000)}ms, jitter: 10%}}
"""
    )
    try:
        await wait_up(sim_url)
        daemon = Daemon(config)
        await daemon.start()
        started = time.time()
        cpu0 = resource.getrusage(resource.RUSAGE_SELF)
        for i, task_id in enumerate(ids):
            await daemon.tracker.register(
                TaskSpec(sdk_app_id=APP, task_id=task_id, region=REGIONS[i % len(REGIONS)])
            )
        rate_target = 20 * (1 - config.accounts["default"].rate_guard)
        rotation = args.tasks / rate_target
        warmup = min(rotation * 1.1, args.duration / 2)
        print(
            f"{args.tasks} tasks, interval {args.interval}s: required "
            f"{args.tasks / args.interval:.1f} req/s against a budget of 20 req/s; "
            f"one rotation = {rotation:.0f}s; measuring after {warmup:.0f}s of warm-up",
            flush=True,
        )
        oldest = 0.0
        while (elapsed := time.time() - started) < args.duration:
            await asyncio.sleep(1.0)
            now = time.time()
            if elapsed >= warmup:
                age = max(
                    now - (t.last_success_at or t.registered_at) for t in daemon.registry.tasks()
                )
                oldest = max(oldest, age)
            if int(elapsed) % 30 == 0:
                print(f"  {elapsed:5.0f}s  oldest observation {oldest:6.1f}s", flush=True)
        ended = time.time()
        cpu1 = resource.getrusage(resource.RUSAGE_SELF)
        outcomes: dict[str, int] = {}
        for m in daemon.metrics.registry.collect():
            if m.name == "trtc_monitor_api_requests":
                for sample in m.samples:
                    if sample.name.endswith("_total"):
                        key = f"{sample.labels['outcome']} {sample.labels['code']}".strip()
                        outcomes[key] = outcomes.get(key, 0) + int(sample.value)
        polls = sum(outcomes.values())
        await daemon.stop()
        async with SimulatorControl(sim_url) as control:
            measured = await control.stats(since=started + warmup, until=ended)
            whole = await control.stats()
    finally:
        sim.terminate()
        sim.wait()

    describe = measured["actions"].get(DESCRIBE, {})
    span = ended - (started + warmup)
    rate = describe.get("arrivals", 0) / span
    bound = 1.15 * args.tasks / 20
    cpu = (cpu1.ru_utime + cpu1.ru_stime) - (cpu0.ru_utime + cpu0.ru_stime)
    print(
        f"\nsending rate      {rate:.2f} req/s = {rate / 20:.1%} of the limit "
        f"(over {span:.0f}s after warm-up; bar >= 97%)\n"
        f"throttled         {whole['throttled']} RequestLimitExceeded answers in the whole run, "
        f"{describe.get('codes', {}).get('RequestLimitExceeded', 0)} after warm-up (bar: 0)\n"
        f"max in any 1s     {whole['actions'].get(DESCRIBE, {}).get('max_in_window', 0)} "
        f"arrivals (limit 20)\n"
        f"oldest observation {oldest:.1f}s vs tasks/rate = {args.tasks / 20:.1f}s: "
        f"{oldest / (args.tasks / 20):.3f}x (bar <= 1.15x = {bound:.1f}s)\n"
        f"daemon CPU        {cpu:.1f}s for {polls} polls = {cpu / max(polls, 1) * 1e3:.2f} ms/poll"
        " (registration included)\n"
        f"answers           {dict(sorted(outcomes.items()))}"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=15.0)
    parser.add_argument("--duration", type=float, default=300.0)
    asyncio.run(main(parser.parse_args()))
