"""Where the bytes of a task go (issue 22): 100,000 tasks loaded by a daemon, broken down.

A store of ``--tasks`` tasks shaped like a polled fleet (those of ``bench/scale.py``:
48-character ids, two labels, seven in ten recording with one file in their last answer) is
written to a temporary SQLite file; then, in this process with ``tracemalloc`` on, a daemon is
started on it (``Daemon.start``: the store read into the task table, the scheduler filled, the
first alert sweep; no HTTP server; its polls go to a closed loopback port). Prints:

0. the resident memory of ``python -m monitor run`` on an empty store (what is not tasks);

1. resident memory of this process before and after (tracemalloc's own bookkeeping included,
   so larger than a daemon's), and the bytes tracemalloc saw allocated by the start;
2. tracemalloc's top allocation sites (file:line) and files, with bytes per task;
3. the task table: ``sys.getsizeof`` of a record and, field by field over all records, the
   bytes its values hold (objects shared between records counted once), how many distinct
   objects and distinct values there are (sharing by identity: interned or deduplicated);
4. the table's dict and keys, and the scheduler's queue (every object reachable from it that
   the table does not already hold), by type, with bytes per entry.

    python bench/memory.py [--tasks 100000] [--top 15]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import os
import random
import sys
import tempfile
import time
import tracemalloc
import types
from collections import Counter
from collections.abc import Iterable
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scale import (
    bench_env,
    config_text,
    fleet_task,
    mib,
    process_start,
    rss_of,
    write_store,
)
from monitor.config import parse_config
from monitor.daemon import Daemon
from monitor.log import configure_logging
from monitor.models import Task
from monitor.simulator import DEFAULT_SECRET_KEY

# Not data of a task: shared program objects, never counted.
SKIP = (type, types.ModuleType, types.FunctionType, types.BuiltinFunctionType, types.CodeType,
        types.MethodType, types.FrameType)  # fmt: skip


def deep(roots: Iterable[object], seen: set[int]) -> Counter[str]:
    """Bytes by type name of everything reachable from ``roots`` not yet in ``seen`` (which
    grows); counts under ``"#" + type name``."""
    out: Counter[str] = Counter()
    stack = list(roots)
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, SKIP):
            continue
        seen.add(id(obj))
        name = type(obj).__name__
        out[name] += sys.getsizeof(obj)
        out["#" + name] += 1
        stack.extend(gc.get_referents(obj))
    return out


def total(c: Counter[str]) -> int:
    return sum(v for k, v in c.items() if not k.startswith("#"))


def by_type_rows(c: Counter[str], per: int, top: int) -> None:
    rows = sorted(((v, k) for k, v in c.items() if not k.startswith("#")), reverse=True)
    for size, name in rows[:top]:
        print(
            f"   {name:<24} {c['#' + name]:>10,} objects {mib(size):>10} "
            f"{size / per:8.1f} B per task"
        )


def find_one(type_name: str) -> object | None:
    """An object of that type name; the daemon freezes what it loaded (``gc.freeze``), which
    hides it from ``gc.get_objects``, so this unfreezes first (the figures are taken)."""
    gc.unfreeze()
    found: object | None = next(
        (o for o in gc.get_objects() if type(o).__name__ == type_name), None
    )
    return found


async def load(db: Path) -> tuple[Daemon, float]:
    configure_logging("json", "error", [DEFAULT_SECRET_KEY], stream=open(os.devnull, "w"))  # noqa: SIM115
    os.environ.update(bench_env())
    daemon = Daemon(parse_config(config_text(db, "127.0.0.1:0")))
    started = time.perf_counter()
    await daemon.start()
    return daemon, time.perf_counter() - started


def main(args: argparse.Namespace) -> None:
    rng = random.Random(1)
    fleet = [fleet_task(i, rng) for i in range(args.tasks)]
    n = args.tasks
    with tempfile.TemporaryDirectory(prefix="trtc-memory-") as tmp:
        db = Path(tmp) / "fleet.db"
        asyncio.run(write_store(db, fleet))
        del fleet
        empty = Path(tmp) / "empty.db"
        baseline = process_start(empty, settle=2.0)[1]
        print(
            f"0. `python -m monitor run` on an empty store (the same config): resident memory "
            f"{mib(baseline)}: the interpreter, its libraries and the daemon before any task"
        )
        gc.collect()
        rss0 = rss_of(os.getpid())
        tracemalloc.start(1)
        before = tracemalloc.take_snapshot()
        loop = asyncio.new_event_loop()
        daemon, took = loop.run_until_complete(load(db))
        gc.collect()
        after = tracemalloc.take_snapshot()
        traced = tracemalloc.get_traced_memory()[0]
        tracemalloc.stop()
        rss1 = rss_of(os.getpid())
        try:
            report(daemon, before, after, rss0, rss1, traced, took, n, args.top)
        finally:
            loop.run_until_complete(daemon.stop())
            loop.close()


def report(
    daemon: Daemon,
    before: tracemalloc.Snapshot,
    after: tracemalloc.Snapshot,
    rss0: int,
    rss1: int,
    traced: int,
    took: float,
    n: int,
    top: int,
) -> None:
    tasks = daemon.registry.tasks()
    print(
        f"python {sys.version.split()[0]}; {len(tasks):,} tasks loaded by Daemon.start in "
        f"{took:.1f} s (tracemalloc on)\n"
        f"1. resident memory {mib(rss0)} before, {mib(rss1)} after: "
        f"+{mib(rss1 - rss0)} = {(rss1 - rss0) / n:,.0f} B per task (tracemalloc's own "
        f"bookkeeping included); traced by tracemalloc now {mib(traced)}"
    )
    diff = after.compare_to(before, "lineno")
    grown = sum(d.size_diff for d in diff)
    print(
        f"\n2. allocated by the start and still held: {mib(grown)} = {grown / n:,.0f} B per task;"
        f" top {top} sites"
    )
    print(f"   {'B/task':>8} {'blocks':>10}  site")
    for d in diff[:top]:
        frame = d.traceback[0]
        where = "/".join(Path(frame.filename).parts[-2:])
        print(f"   {d.size_diff / n:8.1f} {d.count_diff:>10,}  {where}:{frame.lineno}")
    files = after.compare_to(before, "filename")
    print("   by file: " + ", ".join(
        f"{'/'.join(Path(d.traceback[0].filename).parts[-2:])} {d.size_diff / n:.0f} B"
        for d in files[:8]
    ))  # fmt: skip

    one = tasks[len(tasks) // 2]
    print(
        f"\n3. one record: sys.getsizeof(Task) = {sys.getsizeof(one)} B "
        f"({len(dataclasses.fields(Task))} fields, slots: {hasattr(Task, '__slots__')}); "
        f"its task_id {sys.getsizeof(one.task_id)} B, labels dict {sys.getsizeof(one.labels)} B"
    )
    print(
        f"   {'field':<20} {'B/task':>8} {'objects':>9} {'values':>9}  "
        "(values held, shared objects counted once)"
    )
    in_table: set[int] = set()
    record_bytes = sum(sys.getsizeof(t) for t in tasks)
    in_table.update(id(t) for t in tasks)
    print(f"   {'(the records)':<20} {record_bytes / n:8.1f} {len(tasks):>9,}")
    field_total = 0
    for f in dataclasses.fields(Task):
        values = [getattr(t, f.name) for t in tasks]
        objects = {id(v) for v in values}
        try:
            distinct = len({repr(v) if isinstance(v, dict | list) else v for v in values})
        except TypeError:
            distinct = -1
        size = total(deep(values, in_table))
        field_total += size
        print(f"   {f.name:<20} {size / n:8.1f} {len(objects):>9,} {distinct:>9,}")
    table = getattr(daemon.registry, "_tasks", None)
    table_bytes = total(deep([table], in_table)) if table is not None else 0
    print(
        f"   {'the table dict+keys':<20} {table_bytes / n:8.1f}\n"
        f"   table in all: {mib(record_bytes + field_total + table_bytes)} = "
        f"{(record_bytes + field_total + table_bytes) / n:,.0f} B per task"
    )

    queue = find_one("DeadlineQueue")
    if queue is None:
        print("\n4. scheduler: no DeadlineQueue found (renamed?): not broken down")
        return
    sched = deep([queue], in_table)
    print(
        f"\n4. the scheduler's queue ({type(queue).__module__}.DeadlineQueue), what the table "
        f"does not hold already: {mib(total(sched))} = {total(sched) / n:,.1f} B per task"
    )
    by_type_rows(sched, n, top)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--top", type=int, default=15)
    print(f"load average {os.getloadavg()[0]:.2f} at start", flush=True)
    main(parser.parse_args())
