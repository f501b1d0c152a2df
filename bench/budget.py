"""Budget use (docs/testing.md): 2,000 tasks at 15 s, five regions, one account, 20 req/s.

The simulator runs in its own process (as Tencent's servers would) with its strict per-second
arrival counter; the daemon runs here. Prints the sustained sending rate as a share of the
limit, the throttled answers, the most arrivals seen in any one second, and the oldest
observation age against tasks / rate.

    python bench/budget.py [--tasks 2000] [--interval 15] [--duration 300] [--json out.json]

``--cost`` measures instead the CPU per completed poll of the daemon (this process: every
thread, the store's included) against the official SDK's async client
(``tencentcloud...trtc_client_async``) in this same process, afterwards, against the same
simulator process: each sends at ``--cost-rate`` requests per second (the simulator's own limit
set far above it) for ``--cost-window`` seconds after a warm-up; the ratio is the daemon's CPU per
poll over the SDK's per call. ``--profile N`` adds cProfile to both windows (the main thread
only: the event loop) and prints the top N functions by own time per poll, and own time per
poll by area (sign, send, parse, record, metrics, loop); profiled figures are not the ratio.

    python bench/budget.py --cost [--cost-tasks 1000] [--cost-rate 100] [--profile 25]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import json
import os
import pstats
import resource
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

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


def write_scenario(path: Path, tasks: int, rate_limit: int = 20) -> list[str]:
    ids = [f"bench-{i:05d}" for i in range(tasks)]
    path.write_text(
        yaml.safe_dump(
            {
                "seed": 1,
                "rate_limit": rate_limit,
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
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "tasks": args.tasks,
                    "duration": args.duration,
                    "rate_share": rate / 20,
                    "throttled": whole["throttled"],
                    "throttled_after_warmup": describe.get("codes", {}).get(
                        "RequestLimitExceeded", 0
                    ),
                    "max_in_window": whole["actions"].get(DESCRIBE, {}).get("max_in_window", 0),
                    "oldest": oldest,
                    "oldest_ratio": oldest / (args.tasks / 20),
                    "warmup": warmup,
                    "span": span,
                }
            )
        )


# ---------------------------------------------------------------------------------------------
# --cost: CPU per completed poll, the daemon against the official SDK's async client

AREAS = (  # the first whose marker is in a profiled function's file or name
    ("sign", ("signing", "hmac", "hashlib", "sign.py")),
    ("parse", ("json", "pydantic", "abstract_model", "models.py")),
    ("metrics", ("prometheus_client", "monitor/metrics")),
    ("record", ("monitor/store", "monitor/tracker", "monitor/tracking", "monitor/journal",
                "monitor/registry", "monitor/alerts", "monitor/events", "structlog", "sqlite")),
    ("send", ("aiohttp", "httpx", "httpcore", "yarl", "multidict", "anyio", "socket",
              "monitor/trtc", "ssl")),
    ("schedule", ("monitor/scheduler", "monitor/deadline_queue", "monitor/ratelimit",
                  "monitor/poller", "monitor/daemon")),
    ("loop", ("asyncio", "selectors")),
)  # fmt: skip


IDLE = "<method 'poll' of 'select.epoll'"


def area_of(where: str) -> str:
    for area, markers in AREAS:
        if any(m in where for m in markers):
            return area
    return "other"


def profile_summary(stats: pstats.Stats, polls: int, top: int, title: str) -> None:
    every: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    # Waiting in epoll is the loop idle, not work: left out of every figure.
    raw = {k: v for k, v in every.items() if not k[2].startswith(IDLE)}
    rows = sorted(raw.items(), key=lambda kv: kv[1][2], reverse=True)
    total = sum(v[2] for v in raw.values())
    print(
        f"\n{title}: {polls} polls, profiled own time {total / polls * 1e6:.0f} µs per poll "
        "(main thread only, waits in epoll left out, cProfile overhead included)"
    )
    by_area: dict[str, float] = {}
    for (path, _, name), v in raw.items():
        key = area_of(f"{path}:{name}")
        by_area[key] = by_area.get(key, 0.0) + v[2]
    print(
        "   by area, µs per poll: "
        + ", ".join(
            f"{a} {t / polls * 1e6:.0f}" for a, t in sorted(by_area.items(), key=lambda x: -x[1])
        )
    )
    print(f"   {'µs/poll':>8} {'calls/poll':>10}  function")
    for (path, line, name), (_, ncalls, tt, _ct, _) in rows[:top]:
        short = "/".join(Path(path).parts[-2:]) if path != "~" else ""
        print(f"   {tt / polls * 1e6:8.1f} {ncalls / polls:10.2f}  {short}:{line}({name})")


def answered(daemon: Daemon) -> int:
    total = 0
    for m in daemon.metrics.registry.collect():
        if m.name == "trtc_monitor_api_requests":
            total += sum(int(x.value) for x in m.samples if x.name.endswith("_total"))
    return total


def cpu_now() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


async def cost(args: argparse.Namespace) -> dict[str, Any]:
    from tencentcloud.common import credential
    from tencentcloud.common.profile.client_profile import ClientProfile
    from tencentcloud.common.profile.http_profile import HttpProfile
    from tencentcloud.trtc.v20190722 import models, trtc_client_async

    workdir = Path(tempfile.mkdtemp(prefix="trtc-bench-cost-"))
    ids = write_scenario(workdir / "scenario.yaml", args.cost_tasks, rate_limit=100_000)
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
    # Over budget at the cost rate (interval: twice the rotation), so the limiter sends all
    # the time, at 98% of the rate with the default guard.
    interval = max(1.0, args.cost_tasks / args.cost_rate / 2)
    config = parse_config(
        f"""
storage: {{path: {workdir / "monitor.db"}}}
accounts:
  default: {{secret_id_env: BENCH_ID, secret_key_env: BENCH_KEY, endpoint: "{sim_url}",
             rate_limit: {args.cost_rate}}}
polling: {{interval: {int(interval * 1000)}ms, jitter: 10%}}
"""
    )
    figures: dict[str, Any] = {"rate": args.cost_rate, "window": args.cost_window}
    profiler = cProfile.Profile() if args.profile else None
    try:
        await wait_up(sim_url)
        daemon = Daemon(config)
        await daemon.start()
        await daemon.tracker.register_many(
            [
                TaskSpec(sdk_app_id=APP, task_id=t, region=REGIONS[i % len(REGIONS)])
                for i, t in enumerate(ids)
            ]
        )
        # Warm-up: every task polled at least once (its first transitions recorded).
        await asyncio.sleep(args.cost_tasks / (args.cost_rate * 0.98) + 3.0)
        polls0, cpu0 = answered(daemon), cpu_now()
        if profiler:
            profiler.enable()
        await asyncio.sleep(args.cost_window)
        if profiler:
            profiler.disable()
        polls, cpu = answered(daemon) - polls0, cpu_now() - cpu0
        await daemon.stop()
        figures["daemon_polls"], figures["daemon_cpu"] = polls, cpu
        if profiler:
            profile_summary(pstats.Stats(profiler), polls, args.profile, "daemon, poll path")
            profiler = cProfile.Profile()

        http = HttpProfile(protocol="http", endpoint=f"127.0.0.1:{port}", reqTimeout=10)
        cred = credential.Credential(DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY)
        client = trtc_client_async.TrtcClient(cred, "ap-singapore", ClientProfile(httpProfile=http))
        done = [0]
        errors = [0]
        in_flight = asyncio.Semaphore(64)

        async def describe(task_id: str) -> None:
            try:
                req = models.DescribeCloudRecordingRequest()
                req.SdkAppId = APP
                req.TaskId = task_id
                await client.DescribeCloudRecording(req)
                done[0] += 1
            except Exception:
                errors[0] += 1
            finally:
                in_flight.release()

        async def paced(seconds: float) -> None:
            """One call every 1 / (98% of the rate) s, as the daemon's limiter sends."""
            step = 1.0 / (args.cost_rate * 0.98)
            loop = asyncio.get_running_loop()
            started, sent = loop.time(), 0
            pending: set[asyncio.Task[None]] = set()
            while loop.time() - started < seconds:
                await in_flight.acquire()
                t = asyncio.create_task(describe(ids[sent % len(ids)]))
                pending.add(t)
                t.add_done_callback(pending.discard)
                sent += 1
                await asyncio.sleep(max(0.0, started + sent * step - loop.time()))
            await asyncio.gather(*pending)

        async with client:
            await paced(3.0)  # warm: connections, imports
            done[0] = errors[0] = 0
            cpu0 = cpu_now()
            if profiler:
                profiler.enable()
            await paced(args.cost_window)
            if profiler:
                profiler.disable()
            cpu = cpu_now() - cpu0
        figures["sdk_calls"], figures["sdk_cpu"], figures["sdk_errors"] = done[0], cpu, errors[0]
        if profiler:
            profile_summary(pstats.Stats(profiler), done[0], args.profile, "SDK async client")
    finally:
        sim.terminate()
        sim.wait()
    per_poll = figures["daemon_cpu"] / max(figures["daemon_polls"], 1)
    per_call = figures["sdk_cpu"] / max(figures["sdk_calls"], 1)
    figures["ratio"] = per_poll / per_call if per_call else None
    print(
        f"\ndaemon            {figures['daemon_polls']} polls answered in "
        f"{args.cost_window:g} s, CPU {figures['daemon_cpu']:.2f} s = {per_poll * 1e3:.2f} ms "
        "per poll (every thread of the process)\n"
        f"SDK async client  {figures['sdk_calls']} calls ({figures['sdk_errors']} failed), CPU "
        f"{figures['sdk_cpu']:.2f} s = {per_call * 1e3:.2f} ms per call\n"
        f"ratio             {figures['ratio']:.2f} x (goal <= 0.25 x)"
        + (" (profiled: not the figure)" if args.profile else "")
    )
    if args.json:
        args.json.write_text(json.dumps(figures))
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--interval", type=float, default=15.0)
    parser.add_argument("--duration", type=float, default=300.0)
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument(
        "--cost",
        action="store_true",
        help="instead: CPU per completed poll, the daemon against the SDK's async client",
    )
    parser.add_argument("--cost-tasks", type=int, default=1000)
    parser.add_argument("--cost-rate", type=int, default=100, help="requests per second")
    parser.add_argument("--cost-window", type=float, default=20.0, help="seconds measured")
    parser.add_argument(
        "--profile", type=int, default=0, help="with --cost: cProfile, print the top N by own time"
    )
    parsed = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} at start", flush=True)
    asyncio.run(cost(parsed) if parsed.cost else main(parsed))
