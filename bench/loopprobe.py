"""Bench-only launcher: ``trtc-monitor`` with a loop-lag probe, the daemon's code unchanged.

    python bench/loopprobe.py PROBE_FILE run --config monitor.yaml

Runs ``monitor.cli.main`` with the rest of the arguments, in this process, after wrapping
``asyncio.run`` so that the daemon's own event loop also runs one small coroutine: it sleeps
``PERIOD`` (5 ms) again and again and records how late each sleep wakes up. Lateness is time
the loop could not run anything else: a callback holding it, a collection, or the GIL held by
another of the daemon's threads. Every second it appends one line to ``PROBE_FILE``::

    <wall time> <ticks> <longest lateness, s> <loop thread CPU in that longest tick, s>

written and flushed at once, so the figures survive however the process ends. The parent
(``bench/scrape.py``) takes the lines that fall within a phase by their wall time. The probe
costs one wake-up every 5 ms, in the idle phase as in the busy one.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
PERIOD = 0.005


async def probe(path: Path) -> None:
    with path.open("a", buffering=1) as out:
        second = time.time()
        ticks, worst, worst_cpu = 0, 0.0, 0.0
        while True:
            before = time.perf_counter()
            cpu = time.thread_time()
            await asyncio.sleep(PERIOD)
            lag = time.perf_counter() - before - PERIOD
            ticks += 1
            if lag > worst:
                worst, worst_cpu = lag, time.thread_time() - cpu
            now = time.time()
            if now - second >= 1.0:
                out.write(f"{now:.3f} {ticks} {worst:.6f} {worst_cpu:.6f}\n")
                second, ticks, worst, worst_cpu = now, 0, 0.0, 0.0


def main(argv: list[str]) -> int:
    path = Path(argv[0])
    original = asyncio.run

    def run_with_probe(main: Coroutine[Any, Any, T], **kwargs: Any) -> T:
        async def wrapped() -> T:
            probing = asyncio.create_task(probe(path))
            try:
                return await main
            finally:
                probing.cancel()

        return original(wrapped(), **kwargs)

    asyncio.run = run_with_probe
    from monitor.cli import main as cli_main

    return cli_main(argv[1:])


def read_probe(path: Path, since: float, until: float) -> dict[str, float]:
    """The longest lateness and its loop CPU over the probe lines whose second lies wholly
    within [since, until] (a line at time t covers the second before t)."""
    worst, worst_cpu, ticks = 0.0, 0.0, 0
    if path.exists():
        for line in path.read_text().splitlines():
            parts = line.split()
            if len(parts) != 4 or not since + 1.0 <= float(parts[0]) <= until:
                continue
            ticks += int(parts[1])
            if float(parts[2]) > worst:
                worst, worst_cpu = float(parts[2]), float(parts[3])
    return {"max": worst, "cpu": worst_cpu, "ticks": float(ticks)}


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
