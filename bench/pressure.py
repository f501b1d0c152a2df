"""The fleet under pressure (issue 22): every figure of its table in one run, beside its goal.

Runs, one after the other, each in its own process with a time limit, on loopback only:

* ``bench/scale.py --pressure``: resident memory and restart to ready with 100,000 stored tasks,
  bulk registration through ``POST /api/v1/tasks`` (``python -m monitor run`` each time);
* ``bench/scrape.py``: ``/-/healthy`` p99 while a real Prometheus scrapes 10,000 tasks, against
  the idle p99 of the same run, and the event loop's longest stall (a probe in the daemon);
* ``bench/ha.py``: three replicas over budget, ``kill -9`` of one, its tasks polled again;
* ``bench/budget.py --cost``: daemon CPU per completed poll against the SDK's async client;
* ``bench/budget.py``: the budget bars (share of the limit, throttles, oldest observation).

Prints the date, the commit, the machine's load (``uptime``) before and after each run, each
script's own output, and at the end one table: figure, measured, goal, met or missed. A run that
fails or overruns its limit is reported as such in the table; the others still run.

    python bench/pressure.py [--quick] [--only scale,scrape,ha,cost,budget]

``--quick`` shortens the runs that take minutes (budget 150 s instead of 300 s, ha 60 s + 45 s
after the kill instead of 90 s + 60 s): their figures are then less settled.
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
STEPS = ("scale", "scrape", "ha", "cost", "budget")


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "uptime unavailable"


def commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(BENCH), "log", "-1", "--format=%h %s"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(BENCH.parent), "status", "--porcelain", "monitor"],
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return out + (" (monitor/ modified)" if dirty else "")


def step(name: str, argv: list[str], limit: float, out: Path) -> dict[str, Any] | None:
    print(f"\n=== {name}: {' '.join(argv)}\n    before: {uptime()}", flush=True)
    started = time.monotonic()
    try:
        code = subprocess.run(
            [sys.executable, *argv, "--json", str(out)], timeout=limit, check=False
        ).returncode
    except subprocess.TimeoutExpired:
        code = -1
        print(f"    {name}: over its limit of {limit:.0f} s, stopped")
    print(f"    after:  {uptime()} ({time.monotonic() - started:.0f} s, exit {code})", flush=True)
    if code != 0 or not out.exists():
        return None
    figures: dict[str, Any] = json.loads(out.read_text())
    return figures


def verdict(ok: bool | None) -> str:
    return "n/a" if ok is None else "met" if ok else "missed"


Row = tuple[str, str, str, str]


def rows_of(f: dict[str, dict[str, Any] | None]) -> list[Row]:
    rows: list[Row] = []

    def add(step_name: str, figure: str, goal: str, fill: Callable[[dict[str, Any]], Row]) -> None:
        if step_name not in f:
            rows.append((figure, "not run", goal, "n/a"))
            return
        got = f[step_name]
        if got is None:
            rows.append((figure, "run failed (see above)", goal, "n/a"))
        else:
            rows.append(fill(got))

    def median(values: list[float]) -> float:
        ordered = sorted(values)
        return ordered[len(ordered) // 2]

    mem = "resident memory, 100,000 tasks (median of starts)"
    add("scale", mem, "<= 150 MiB", lambda s: (
        mem, f"{median(s['rss']) / 2**20:.1f} MiB", "<= 150 MiB",
        verdict(median(s["rss"]) <= 150 * 2**20)))  # fmt: skip
    ready = "restart to ready, 100,000 tasks (median of starts)"
    add("scale", ready, "<= 2 s", lambda s: (
        ready, f"{median(s['ready']):.2f} s (best {min(s['ready']):.2f})", "<= 2 s",
        verdict(median(s["ready"]) <= 2.0)))  # fmt: skip
    bulk = "bulk registration, arrays of 1,000, one client"
    add("scale", bulk, ">= 20,000 tasks/s", lambda s: (
        bulk, f"{s['bulk_rate']:,.0f} tasks/s", ">= 20,000 tasks/s",
        verdict(s["bulk_rate"] >= 20_000)))  # fmt: skip
    healthy = "/-/healthy p99 while Prometheus scrapes 10,000"
    add("scrape", healthy, "<= 2 x idle p99 + 5 ms", lambda s: (
        healthy, f"{s['busy_p99'] * 1e3:.1f} ms (idle p99 {s['idle_p99'] * 1e3:.1f} ms)",
        f"<= {s['healthy_goal'] * 1e3:.1f} ms",
        verdict(s["busy_p99"] <= s["healthy_goal"])))  # fmt: skip
    stall = "event loop's longest stall during scrapes"
    add("scrape", stall, "a few ms (no number set)", lambda s: (
        stall, f"{s['loop_busy_max'] * 1e3:.1f} ms (idle {s['loop_idle_max'] * 1e3:.1f} ms)",
        "a few ms (no number set)", "n/a"))  # fmt: skip
    ha = "killed replica's tasks polled again (ha.py)"
    add("ha", ha, "each <= bound", lambda s: (
        ha, f"first {s['first'] or 0:.1f} s, last {s['last'] or 0:.1f} s, "
        f"{s['missed']} of {s['victim_tasks']} over", f"each <= {s['bound']:.1f} s",
        verdict(s["missed"] == 0)))  # fmt: skip
    cost = "daemon CPU per poll / SDK async client's"
    add("cost", cost, "<= 0.25 x", lambda s: (
        cost, f"{s['ratio']:.2f} x ({s['daemon_cpu'] / max(s['daemon_polls'], 1) * 1e3:.2f} vs "
        f"{s['sdk_cpu'] / max(s['sdk_calls'], 1) * 1e3:.2f} ms)", "<= 0.25 x",
        verdict(s["ratio"] <= 0.25)))  # fmt: skip
    share = "budget: sending rate, share of the limit"
    add("budget", share, ">= 97%", lambda s: (
        share, f"{s['rate_share']:.1%}", ">= 97%", verdict(s["rate_share"] >= 0.97)))  # fmt: skip
    throttles = "budget: RequestLimitExceeded"
    add("budget", throttles, "0", lambda s: (
        throttles, f"{s['throttled']} ({s['throttled_after_warmup']} after warm-up)", "0",
        verdict(s["throttled"] == 0)))  # fmt: skip
    oldest = "budget: oldest observation / (tasks / rate)"
    add("budget", oldest, "<= 1.15 x", lambda s: (
        oldest, f"{s['oldest_ratio']:.3f} x ({s['oldest']:.1f} s)", "<= 1.15 x",
        verdict(s["oldest_ratio"] <= 1.15)))  # fmt: skip
    return rows


def table(rows: list[Row]) -> str:
    head: Row = ("figure", "measured", "goal", "")
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(4)]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in [head, *rows]]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def main(args: argparse.Namespace) -> None:
    only = set(args.only.split(",")) if args.only else set(STEPS)
    unknown = only - set(STEPS)
    if unknown:
        raise SystemExit(f"unknown steps: {', '.join(sorted(unknown))}")
    budget_s, ha_s, after_kill = (150, 60, 45) if args.quick else (300, 90, 60)
    plan: dict[str, tuple[list[str], float]] = {
        "scale": ([str(BENCH / "scale.py"), "--pressure"], 600),
        "scrape": ([str(BENCH / "scrape.py")], 300),
        "ha": (
            [str(BENCH / "ha.py"), "--duration", str(ha_s), "--after-kill", str(after_kill)],
            ha_s + after_kill + 240,
        ),
        "cost": ([str(BENCH / "budget.py"), "--cost"], 300),
        "budget": ([str(BENCH / "budget.py"), "--duration", str(budget_s)], budget_s + 240),
    }
    print(
        f"{datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC; commit {commit()}; "
        f"python {sys.version.split()[0]}\n{uptime()}"
    )
    results: dict[str, dict[str, Any] | None] = {}
    with tempfile.TemporaryDirectory(prefix="trtc-pressure-") as tmp:
        for name in STEPS:
            if name in only:
                argv, limit = plan[name]
                results[name] = step(name, argv, limit, Path(tmp) / f"{name}.json")
    print(f"\n{uptime()}\n\n{table(rows_of(results))}")
    if args.json:
        args.json.write_text(json.dumps(results))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter budget and ha runs")
    parser.add_argument("--only", help=f"a comma-separated subset of {','.join(STEPS)}")
    parser.add_argument("--json", type=Path, help="also write every step's figures here")
    main(parser.parse_args())
