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
frames of ``monitor/`` and ``apscheduler/`` and the three innermost whatever their module. This
names the function that holds the loop (debug mode names only the task). The watchdog needs
the GIL to sample, so it catches a stall only where the loop thread lets it go (every switch
interval, 5 ms): it names, it does not measure.

With ``LOOPPROBE_TIME_ALERTS`` set, the alert sweep's synchronous steps are timed in place
(wrapped in this process only): every call of each step below, and for the per-task step the
sum of its calls within one stretch of the loop (between two probe ticks, so one chunk of the
sweep's task scan). Each second's longest are appended to ``PROBE_FILE`` with the suffix
``.alerts.log``: ``<wall time> <step> <longest ms> <calls>``.
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
    innermost = 0  # the innermost frames are kept whatever their module: what runs now
    while frame is not None:
        file = frame.f_code.co_filename
        mine = "/monitor/" in file or "/apscheduler/" in file
        if mine or innermost < 3:
            if "/monitor/" in file:
                short = file[file.rfind("/monitor/") + 1 :]
            else:
                short = "apscheduler" if mine else "/".join(file.split("/")[-2:])
            names.append(f"{short}:{frame.f_lineno} {frame.f_code.co_name}")
        innermost += 1
        frame = frame.f_back
    return " < ".join(reversed(names))


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


_TIMED: dict[str, list[float]] = {}  # step -> [longest this second, calls, stretch so far]


def _timed(owner: Any, name: str, label: str, *, stretch: bool = False) -> None:
    """Wrap ``owner.name`` (a synchronous function) to time it (module docstring)."""
    original = getattr(owner, name)
    _TIMED[label] = [0.0, 0.0, 0.0, 0.0]  # longest, calls, stretch, tick the stretch is of

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            took = time.perf_counter() - started
            entry = _TIMED[label]
            entry[1] += 1
            if stretch:
                if entry[3] != _last_tick[0]:
                    entry[2], entry[3] = 0.0, _last_tick[0]
                entry[2] += took
                took = entry[2]
            entry[0] = max(entry[0], took)

    setattr(owner, name, wrapper)


def time_alerts() -> None:
    from monitor.alerts import delivery, engine, reconcile, state
    from monitor.store.sqlite import rows

    _timed(reconcile.Reconciler, "task", "sweep_task_scan_stretch", stretch=True)
    _timed(reconcile.Reconciler, "fire", "Reconciler.fire")
    _timed(reconcile.Reconciler, "resolve", "Reconciler.resolve")
    _timed(delivery.Deliveries, "send", "Deliveries.send")
    _timed(delivery.Deliveries, "deliver_due", "Deliveries.deliver_due")
    _timed(state.AlertBook, "fire", "AlertBook.fire")
    _timed(rows, "alert_row", "rows.alert_row_stretch", stretch=True)
    _ = engine


async def report_alerts(path: Path) -> None:
    with path.with_suffix(".alerts.log").open("a", buffering=1) as out:
        while True:
            await asyncio.sleep(1.0)
            now = time.time()
            for label, entry in _TIMED.items():
                if entry[1]:
                    out.write(f"{now:.3f} {label} {entry[0] * 1000:.2f} {entry[1]:.0f}\n")
                entry[0], entry[1] = 0.0, 0.0


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
            helpers = []
            if os.environ.get("LOOPPROBE_TIME_ALERTS"):
                time_alerts()
                helpers.append(asyncio.create_task(report_alerts(path)))
            probing = asyncio.create_task(probe(path))
            try:
                return await main
            finally:
                probing.cancel()
                for helper in helpers:
                    helper.cancel()

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
