"""Scrapes by a real Prometheus (issue 22): ``/-/healthy`` and the event loop while it scrapes.

One run, everything on loopback, every process its own:

* the daemon, ``trtc-monitor run`` through ``bench/loopprobe.py`` (the real command in its own
  process, with a 5 ms loop-lag probe added to its event loop; the daemon's code unchanged),
  on a store of 10,000 tasks (48-character ids, two labels) with per-task series and both
  labels as info labels; its polls go to a closed loopback port and fail at once;
* Debian's ``prometheus`` scraping it every ``--interval`` seconds (OpenMetrics, gzip, as it
  asks by default), its data in a temporary directory.

Phases: idle (no scraper) then scraping (Prometheus up, after its first scrape). In each, one
client sends ``GET /-/healthy`` every 5 ms; the probe inside the daemon gives the loop's
longest stall. Prints the idle p99, the p99 while scraped against 2 x idle p99 + 5 ms, the
loop's longest stall in each phase, and Prometheus's own scrape count and durations.

    python bench/scrape.py [--tasks 10000] [--interval 2] [--phase 30] [--json out.json]

``--slow-ms N`` runs the daemon's loop in asyncio's debug mode and lists the callbacks that held
it longer than N ms while scraped (attribution only: debug mode slows the daemon, so the
figures of such a run are not the baseline).

``--stacks-ms N`` samples the loop thread's stack while the loop is N ms or more overdue
(``bench/loopprobe.py``'s watchdog) and lists the stacks seen most often while scraped, and
idle, by sample count: the function that holds the loop, not only its task.

``--time-alerts`` times the alert sweep's synchronous steps in place (``bench/loopprobe.py``)
and prints each step's longest call (for the task scan: the longest stretch between two yields)
and its calls, per phase.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.loopprobe import read_probe
from bench.scale import (
    bench_env,
    config_text,
    fleet_task,
    free_port,
    ms,
    pct,
    wait_ready,
    write_store,
)

LAUNCHER = Path(__file__).resolve().parent / "loopprobe.py"


def prometheus_config(target: str, interval: float) -> str:
    return (
        "global:\n"
        f"  scrape_interval: {interval:g}s\n"
        f"  scrape_timeout: {interval:g}s\n"
        "scrape_configs:\n"
        "  - job_name: trtc-monitor\n"
        f"    static_configs: [{{targets: ['{target}']}}]\n"
    )


async def healthy_for(url: str, seconds: float) -> tuple[list[float], float, float]:
    """``GET /-/healthy`` every 5 ms for ``seconds``: latencies, and the phase's wall span."""
    out: list[float] = []
    async with aiohttp.ClientSession() as session:
        for _ in range(20):  # the connection warm
            async with session.get(f"{url}/-/healthy") as r:
                await r.read()
        since = time.time()
        while time.time() - since < seconds:
            started = time.perf_counter()
            async with session.get(f"{url}/-/healthy") as r:
                await r.read()
            out.append(time.perf_counter() - started)
            await asyncio.sleep(0.005)
    return out, since, time.time()


async def prom_query(session: aiohttp.ClientSession, url: str, query: str) -> float | None:
    async with session.get(f"{url}/api/v1/query", params={"query": query}) as r:
        answer = await r.json()
    result = answer.get("data", {}).get("result", [])
    return float(result[0]["value"][1]) if result else None


async def until_scraped(url: str, within: float) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            try:
                if await prom_query(session, url, 'up{job="trtc-monitor"}') == 1.0:
                    return
            except (aiohttp.ClientError, OSError, ValueError):
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError("prometheus did not scrape the daemon in time")


async def prom_figures(url: str, seconds: float) -> dict[str, float | None]:
    window = f"[{int(seconds)}s]"
    job = '{job="trtc-monitor"}'
    async with aiohttp.ClientSession() as session:
        return {
            "scrapes": await prom_query(session, url, f"count_over_time(up{job}{window})"),
            "up_min": await prom_query(session, url, f"min_over_time(up{job}{window})"),
            "duration_avg": await prom_query(
                session, url, f"avg_over_time(scrape_duration_seconds{job}{window})"
            ),
            "duration_max": await prom_query(
                session, url, f"max_over_time(scrape_duration_seconds{job}{window})"
            ),
            "samples": await prom_query(session, url, f"scrape_samples_scraped{job}"),
        }


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(args: argparse.Namespace) -> dict[str, Any]:
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        raise SystemExit("prometheus is not on the PATH (Debian package prometheus)")
    rng = random.Random(1)
    tasks = [fleet_task(i, rng) for i in range(args.tasks)]
    with tempfile.TemporaryDirectory(prefix="trtc-scrape-") as tmp:
        work = Path(tmp)
        db = work / "fleet.db"
        asyncio.run(write_store(db, tasks))
        port, prom_port = free_port(), free_port()
        cfg = work / "monitor.yaml"
        cfg.write_text(config_text(db, f"127.0.0.1:{port}"))
        probe_file = work / "probe.txt"
        url, prom_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{prom_port}"
        env = bench_env()
        if args.slow_ms:
            env["LOOPPROBE_SLOW_MS"] = str(args.slow_ms)
        if args.stacks_ms:
            env["LOOPPROBE_STACKS_MS"] = str(args.stacks_ms)
        if args.time_alerts:
            env["LOOPPROBE_TIME_ALERTS"] = "1"
        daemon = subprocess.Popen(
            [sys.executable, str(LAUNCHER), str(probe_file), "run", "--config", str(cfg)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(work / "daemon.log").open("wb"),
        )
        prom: subprocess.Popen[bytes] | None = None
        try:
            asyncio.run(wait_ready(url, daemon))
            time.sleep(3.0)  # the first alert sweep and polls settle
            idle, idle_from, idle_to = asyncio.run(healthy_for(url, args.phase / 2))
            (work / "prometheus.yml").write_text(
                prometheus_config(f"127.0.0.1:{port}", args.interval)
            )
            prom = subprocess.Popen(
                [prometheus, f"--config.file={work / 'prometheus.yml'}",
                 f"--storage.tsdb.path={work / 'tsdb'}",
                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                stdout=subprocess.DEVNULL,
                stderr=(work / "prometheus.log").open("wb"),
            )  # fmt: skip
            asyncio.run(until_scraped(prom_url, 60))
            busy, busy_from, busy_to = asyncio.run(healthy_for(url, args.phase))
            scraped = asyncio.run(prom_figures(prom_url, busy_to - busy_from))
        finally:
            if prom is not None:
                stop(prom)
            stop(daemon)
        loop_idle = read_probe(probe_file, idle_from, idle_to)
        loop_busy = read_probe(probe_file, busy_from, busy_to)
        slow_log = probe_file.with_suffix(".slow.log")
        slow = slow_callbacks(slow_log, busy_from, busy_to) if slow_log.exists() else []
        phases = (("idle", idle_from, idle_to), ("scraped", busy_from, busy_to))
        alerts_log = probe_file.with_suffix(".alerts.log")
        steps = {
            phase: alert_steps(alerts_log, since, until) if alerts_log.exists() else {}
            for phase, since, until in phases
        }
        stacks_log = probe_file.with_suffix(".stacks.log")
        stacks = {
            phase: held_stacks(stacks_log, since, until) if stacks_log.exists() else []
            for phase, since, until in (
                ("idle", idle_from, idle_to),
                ("scraped", busy_from, busy_to),
            )
        }
    idle_p99, busy_p99 = pct(idle, 0.99), pct(busy, 0.99)
    return {
        "tasks": args.tasks,
        "interval": args.interval,
        "idle_p99": idle_p99,
        "idle_max": max(idle),
        "idle_probes": len(idle),
        "busy_p99": busy_p99,
        "busy_max": max(busy),
        "busy_probes": len(busy),
        "healthy_goal": 2 * idle_p99 + 0.005,
        "loop_idle_max": loop_idle["max"],
        "loop_busy_max": loop_busy["max"],
        "loop_busy_max_cpu": loop_busy["cpu"],
        "prometheus": scraped,
        "slow_callbacks": slow,
        "stacks": stacks,
        "alert_steps": steps,
    }


def alert_steps(path: Path, since: float, until: float) -> dict[str, tuple[float, int]]:
    """Per timed step within the phase: (its longest, in ms; its calls)."""
    out: dict[str, tuple[float, int]] = {}
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        try:
            when, label, longest, calls = float(parts[0]), parts[1], float(parts[2]), int(parts[3])
        except (ValueError, IndexError):
            continue
        if since <= when <= until + 1.0:
            was, n = out.get(label, (0.0, 0))
            out[label] = (max(was, longest), n + calls)
    return out


def held_stacks(path: Path, since: float, until: float) -> list[tuple[int, float, str]]:
    """The watchdog's samples within the phase grouped by stack: (samples, the longest overdue
    seen with it in ms, the stack), most samples first."""
    seen: dict[str, tuple[int, float]] = {}
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split(" ", 2)
        try:
            when, overdue = float(parts[0]), float(parts[1])
        except (ValueError, IndexError):
            continue
        if since <= when <= until and len(parts) == 3:
            count, longest = seen.get(parts[2], (0, 0.0))
            seen[parts[2]] = (count + 1, max(longest, overdue))
    return sorted(((n, ms_, st) for st, (n, ms_) in seen.items()), reverse=True)


def slow_callbacks(path: Path, since: float, until: float) -> list[tuple[float, str]]:
    """asyncio's "Executing <callback> took N seconds" lines within the phase, longest first:
    (seconds, the callback as asyncio names it)."""
    found = []
    for line in path.read_text(errors="replace").splitlines():
        at, _, text = line.partition(" ")
        took = text.rsplit(" took ", 1)
        try:
            when, seconds = float(at), float(took[1].split()[0])
        except (ValueError, IndexError):
            continue
        if since <= when <= until:
            found.append((seconds, took[0].removeprefix("Executing ")))
    return sorted(found, reverse=True)


def report(f: dict[str, Any]) -> None:
    p = f["prometheus"]

    def num(v: float | None, fmt: str) -> str:
        return "?" if v is None else format(v, fmt)

    print(
        f"{f['tasks']:,} tasks with per-task series, Prometheus every {f['interval']:g} s\n"
        f"GET /-/healthy idle           p99 {ms(f['idle_p99'])}, max {ms(f['idle_max'])} "
        f"({f['idle_probes']} probes)\n"
        f"GET /-/healthy while scraped  p99 {ms(f['busy_p99'])}, max {ms(f['busy_max'])} "
        f"({f['busy_probes']} probes); goal <= 2 x idle p99 + 5 ms = {ms(f['healthy_goal'])}: "
        f"{'met' if f['busy_p99'] <= f['healthy_goal'] else 'missed'}\n"
        f"event loop's longest stall    idle {ms(f['loop_idle_max'])}, while scraped "
        f"{ms(f['loop_busy_max'])} (the loop's own CPU in it {ms(f['loop_busy_max_cpu'])})\n"
        f"prometheus                    {num(p['scrapes'], '.0f')} scrapes in the phase, "
        f"up min {num(p['up_min'], '.0f')}, scrape duration avg "
        f"{num(p['duration_avg'], '.3f')} s, max {num(p['duration_max'], '.3f')} s, "
        f"{num(p['samples'], ',.0f')} samples per scrape"
    )
    if f["slow_callbacks"]:
        print(
            f"slow callbacks while scraped (asyncio debug mode: {len(f['slow_callbacks'])}; "
            "the longest ten)"
        )
        for seconds, what in f["slow_callbacks"][:10]:
            print(f"   {ms(seconds):>9}  {what[:160]}")
    for phase, steps in f.get("alert_steps", {}).items():
        for label, (longest, calls) in sorted(steps.items()):
            print(f"alert step ({phase}) {label:<26} longest {longest:8.1f} ms, {calls} calls")
    for phase, stacks in f.get("stacks", {}).items():
        if stacks:
            total = sum(n for n, _, _ in stacks)
            print(f"loop held ({phase}): {total} samples, the stacks seen most (samples, longest)")
            for n, longest, stack in stacks[:8]:
                print(f"   {n:>5}  {longest:7.1f} ms  {stack[-400:]}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=10_000)
    parser.add_argument("--interval", type=float, default=2.0, help="scrape interval, s")
    parser.add_argument("--phase", type=float, default=30.0, help="scraping phase, s")
    parser.add_argument(
        "--slow-ms",
        type=float,
        default=0.0,
        help="name the callbacks holding the loop longer (asyncio debug mode: slows the daemon)",
    )
    parser.add_argument(
        "--stacks-ms",
        type=float,
        default=0.0,
        help="sample the loop thread's stack while the loop is this overdue (names the holder)",
    )
    parser.add_argument(
        "--time-alerts",
        action="store_true",
        help="time the alert sweep's synchronous steps in place (names how long each holds)",
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parsed = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} at start", flush=True)
    figures = run(parsed)
    report(figures)
    if parsed.json:
        parsed.json.write_text(json.dumps(figures))
