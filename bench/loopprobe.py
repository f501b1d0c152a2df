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

With ``LOOPPROBE_SLOW_MS`` set, the loop also runs in asyncio's debug mode with
``slow_callback_duration`` at that many milliseconds, and asyncio's warnings naming each slower
callback go to ``PROBE_FILE`` with the suffix ``.slow.log`` (one line each, wall time first).
Debug mode slows the daemon: such a run names the stalls, it does not measure them.

With ``LOOPPROBE_STACKS_MS`` set, a watchdog thread looks at the loop every millisecond and,
while the probe is that many milliseconds or more overdue, samples the loop thread's stack
(``sys._current_frames``) and appends it to ``PROBE_FILE`` with the suffix ``.stacks.log``: one
line per sample, ``<wall time> <ms overdue> <frames, outermost first, " < " between>``, the
frames of ``monitor/`` and ``apscheduler/`` only. This names the function that holds the loop
(debug mode names only the task). The watchdog needs the GIL to sample, so it catches a stall
only where the loop thread lets it go (every switch interval, 5 ms): it names, it does not
measure.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import threading
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")
PERIOD = 0.005
# When the probe last woke (perf_counter): the watchdog's view of the loop.
_last_tick = [0.0]


async def probe(path: Path) -> None:
    with path.open("a", buffering=1) as out:
        second = time.time()
        ticks, worst, worst_cpu = 0, 0.0, 0.0
        while True:
            before = time.perf_counter()
            _last_tick[0] = before
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


def _frames(frame: Any) -> str:
    names = []
    while frame is not None:
        file = frame.f_code.co_filename
        if "/monitor/" in file or "/apscheduler/" in file:
            short = file[file.rfind("/monitor/") + 1 :] if "/monitor/" in file else "apscheduler"
            names.append(f"{short}:{frame.f_lineno} {frame.f_code.co_name}")
        frame = frame.f_back
    return " < ".join(reversed(names)) or "(outside monitor/)"


def watchdog(path: Path, loop_thread: int, threshold: float) -> None:
    """Sample the loop thread's stack while the probe is ``threshold`` s overdue (docstring)."""
    with path.with_suffix(".stacks.log").open("a", buffering=1) as out:
        while True:
            time.sleep(0.001)
            overdue = time.perf_counter() - _last_tick[0] - PERIOD
            if _last_tick[0] and overdue >= threshold:
                frame = sys._current_frames().get(loop_thread)
                if frame is not None:
                    out.write(f"{time.time():.3f} {overdue * 1000:.1f} {_frames(frame)}\n")


def main(argv: list[str]) -> int:
    path = Path(argv[0])
    original = asyncio.run

    def run_with_probe(main: Coroutine[Any, Any, T], **kwargs: Any) -> T:
        async def wrapped() -> T:
            slow_ms = float(os.environ.get("LOOPPROBE_SLOW_MS", "0"))
            if slow_ms > 0:
                # Attribution: asyncio's debug mode names every callback that held the loop
                # longer than this (debug mode costs time itself: not for the figures).
                handler = logging.FileHandler(path.with_suffix(".slow.log"))
                handler.setFormatter(logging.Formatter("%(created).3f %(message)s"))
                asyncio_log = logging.getLogger("asyncio")
                asyncio_log.addHandler(handler)
                asyncio_log.setLevel(logging.WARNING)
                asyncio_log.propagate = False
                loop = asyncio.get_running_loop()
                loop.set_debug(True)
                loop.slow_callback_duration = slow_ms / 1000
            stacks_ms = float(os.environ.get("LOOPPROBE_STACKS_MS", "0"))
            if stacks_ms > 0:
                threading.Thread(
                    target=watchdog,
                    args=(path, threading.get_ident(), stacks_ms / 1000),
                    daemon=True,
                ).start()
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
