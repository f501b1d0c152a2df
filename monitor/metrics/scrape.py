"""Scrapes of /metrics that never stall the event loop: each task's series text is kept.

Rendering 10,000 tasks' series is about 0.1 s of Python; run in a worker thread it still holds
the GIL, and every time the event loop gives the GIL up (to wait for I/O) it waits up to a
switch interval to get it back, so a health check answered during a scrape took tens of
milliseconds. Here the Python work is made small and cut into slices on the loop instead:

* each task's lines (:func:`monitor.metrics.writer.task_lines`, encoded) are kept in a cache and
  rebuilt only when the task's record is not the one they were built from. Records in the
  table are never changed in place, only replaced (:mod:`monitor.registry`), so an identity
  check sees every change of any field;
* a scrape walks the snapshot in slices of a couple of milliseconds, yielding to the loop
  between them, joining the kept bytes family by family in parts of ``_PART`` tasks;
* compression (zlib releases the GIL while it deflates) runs in a worker thread.

The bytes are those of :meth:`monitor.metrics.MonitorMetrics.render` for the same snapshot.
A scraper asking for a label name escaping that changes the family names gets that slow path,
in the worker thread.
"""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from prometheus_client.exposition import choose_encoder

from monitor.metrics.instruments import MonitorMetrics
from monitor.metrics.state import StateView
from monitor.metrics.writer import (
    TASK_FAMILIES,
    SeriesLayout,
    count_lines,
    series_layout,
    syntax_of,
    task_lines,
)
from monitor.models import Status, Task

__all__ = ["Exposition", "Rendered", "SeriesCache", "gzip_parts"]

# Longest stretch of Python a scrape runs on the loop before it yields.
_SLICE_SECONDS = 0.001
# Tasks checked between two looks at the clock.
_CHECK_EVERY = 16
# Tasks per joined part: small enough that one join (a memory copy holding the GIL) is well
# under a millisecond, large enough that the parts are few.
_PART = 500

# One thread compresses: scrapes never pile up threads.
_COMPRESS_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="metrics-gzip")

Lines = tuple[bytes, bytes, bytes, bytes, bytes, bytes, bytes]


def _encoded(task: Task, layout: SeriesLayout) -> Lines:
    # "replace": a lone surrogate (which JSON lets in) becomes "?" instead of failing the scrape.
    a, b, c, d, e, f, g = (text.encode("utf-8", "replace") for text in task_lines(task, layout))
    return a, b, c, d, e, f, g


class SeriesCache:
    """Each task's encoded lines, by the identity of the record they were built from.

    Lines are found by ``id(record)``, and the records of the scrape that built them are held
    until the next scrape replaces them: while a record is held no other object can have its
    id, and a scrape's snapshot is taken while the cache's records are held, so a task of the
    snapshot finds only lines built from that very record. A replaced record (any change to
    any field) has a new id and gets new lines; a task that is gone, and the lines of a
    replaced record, are forgotten at the next scrape.

    Nothing here refers to a record from a container the garbage collector must walk again and
    again: the lines dict holds ints and tuples of bytes, which the collector stops tracking,
    and the records are one list (the snapshot). Tuples of (record, lines) were 10,000 more
    objects in every full collection, which then took over 10 ms.
    """

    __slots__ = ("_layout", "_lines", "_records")

    def __init__(self) -> None:
        self._layout: SeriesLayout | None = None
        self._lines: dict[int, Lines] = {}
        self._records: Sequence[Task] = ()

    def __len__(self) -> int:
        return len(self._lines)

    def begin(self, layout: SeriesLayout) -> dict[int, Lines]:
        """The lines a scrape in ``layout`` may reuse; call it in the same step (no await in
        between) as the snapshot of the tasks is taken."""
        return self._lines if layout == self._layout else {}

    def end(self, layout: SeriesLayout, lines: dict[int, Lines], records: Sequence[Task]) -> None:
        self._layout = layout
        self._lines = lines
        self._records = records


@dataclass(frozen=True, slots=True)
class Rendered:
    """One scrape's body as parts (to be written or compressed in turn)."""

    parts: list[bytes]
    content_type: str

    def __len__(self) -> int:
        return sum(len(p) for p in self.parts)

    def body(self) -> bytes:
        return b"".join(self.parts)


def gzip_parts(parts: Sequence[bytes], level: int = 1) -> bytes:
    """The parts gzip-compressed as one member. Level 1: a large exposition shrinks about
    sevenfold for little CPU. Run it in a thread: zlib releases the GIL while it deflates."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, 31)
    out = [compressor.compress(part) for part in parts]
    out.append(compressor.flush())
    return b"".join(out)


class Exposition:
    """Renders scrapes of one daemon, keeping each task's series text between them."""

    def __init__(self, metrics: MonitorMetrics) -> None:
        self._metrics = metrics
        self._cache = SeriesCache()
        # The longest stretch a scrape has held the loop, in seconds, by the wall clock (which
        # counts the time the process was not running at all) and by this thread's CPU time:
        # the bench reports both.
        self.longest_slice = 0.0
        self.longest_slice_cpu = 0.0
        self._cpu_started = 0.0

    @property
    def cached_tasks(self) -> int:
        return len(self._cache)

    async def render(self, view: StateView, accept: str | None) -> Rendered:
        """Everything for one scrape, as ``MonitorMetrics.render`` would encode it."""
        encoder, content_type = choose_encoder(accept or "")
        syntax = syntax_of(encoder)
        if syntax is None:
            body, content_type = await asyncio.get_running_loop().run_in_executor(
                _COMPRESS_POOL, self._metrics.render_reference, view, accept
            )
            return Rendered([body], content_type)
        started = time.perf_counter()
        self._cpu_started = time.thread_time()
        head, tail = self._metrics.encode_around(view, encoder, syntax)
        parts = [head]
        counts: dict[tuple[str, str, Status], int] = {}
        tasks = view.tasks
        if view.per_task:
            layout = series_layout(view, syntax)
            columns, started = await self._task_columns(tasks, layout, counts, started)
            for family, column in zip(TASK_FAMILIES, columns, strict=True):
                parts.append(syntax.header(family).encode())
                for at in range(0, len(column), _PART):
                    parts.append(b"".join(column[at : at + _PART]))
                    started = await self._yield_if_due(started)
        else:
            for task in tasks:
                group = (task.account, task.region, task.status)
                counts[group] = counts.get(group, 0) + 1
        if view.fleet is not None:
            # Several replicas: the fleet counts cover every task, not this replica's own.
            counts = {}
            for n, task in enumerate(view.fleet):
                if n % (_CHECK_EVERY * 64) == 0 and n:
                    started = await self._yield_if_due(started)
                group = (task.account, task.region, task.status)
                counts[group] = counts.get(group, 0) + 1
        if view.export_fleet:
            parts.append(count_lines(counts, syntax).encode("utf-8", "replace"))
        parts.append(tail)
        self._note(started)
        return Rendered(parts, content_type)

    async def _task_columns(
        self,
        tasks: Sequence[Task],
        layout: SeriesLayout,
        counts: dict[tuple[str, str, Status], int],
        started: float,
    ) -> tuple[tuple[list[bytes], ...], float]:
        # Held by the cache until the next scrape: a copy, so no caller can drop a record.
        tasks = tuple(tasks)
        old = self._cache.begin(layout)
        new: dict[int, Lines] = {}
        columns: tuple[list[bytes], ...] = tuple([] for _ in TASK_FAMILIES)
        status, info, since, success, errors, files, uploads = columns
        for n, task in enumerate(tasks):
            if n % _CHECK_EVERY == 0 and n:
                started = await self._yield_if_due(started)
            lines = old.get(id(task))
            if lines is None:
                lines = _encoded(task, layout)
            new[id(task)] = lines
            status.append(lines[0])
            info.append(lines[1])
            since.append(lines[2])
            if lines[3]:
                success.append(lines[3])
            errors.append(lines[4])
            if lines[5]:
                files.append(lines[5])
            uploads.append(lines[6])
            group = (task.account, task.region, task.status)
            counts[group] = counts.get(group, 0) + 1
        self._cache.end(layout, new, tasks)
        return columns, started

    async def _yield_if_due(self, started: float) -> float:
        now = time.perf_counter()
        if now - started < _SLICE_SECONDS:
            return started
        self._note(started, now)
        await asyncio.sleep(0)
        self._cpu_started = time.thread_time()
        return time.perf_counter()

    def _note(self, started: float, now: float | None = None) -> None:
        held = (time.perf_counter() if now is None else now) - started
        self.longest_slice = max(self.longest_slice, held)
        cpu = time.thread_time() - self._cpu_started
        self.longest_slice_cpu = max(self.longest_slice_cpu, cpu)

    @staticmethod
    async def gzip(rendered: Rendered) -> bytes:
        """The body gzip-compressed in the worker thread."""
        return await asyncio.get_running_loop().run_in_executor(
            _COMPRESS_POOL, gzip_parts, rendered.parts
        )
