"""Two versions of the daemon side by side in one run (issue 22): before and after a change.

The machine is shared, so a figure taken an hour after another says little about the code; here
both versions run in the same minutes, alternately, on the same store and config, and the
ratios are printed with the load (``uptime``) before and after each step. ``--before`` is a
directory holding another version's ``monitor/`` package (and ``bench/``), for instance one
made with ``git archive main monitor bench | tar -x -C /tmp/before``; ``--after`` likewise
(default: this tree; a copy keeps edits made meanwhile out of the run).

* restart to ready and resident memory: ``--tasks`` stored in SQLite (``bench/scale.py``'s
  fleet and config), ``python -m monitor run`` started ``--repeat`` times per version, the two
  versions alternating (``bench/scale.py``'s ``process_start``);
* bulk registration: ``--bulk-tasks`` in arrays of 1,000, one client, each version on an empty
  store (``bench/scale.py``'s ``blackbox_bulk``), alternating, ``--repeat`` times;
* with ``--only ...,cost``: ``bench/budget.py --cost`` of each version (each tree's own script), one
  after the other, ``--cost-runs`` times: daemon CPU per completed poll against the SDK's
  async client, the ratio of the two ratios.

    python bench/versus.py --before /tmp/before [--tasks 100000] [--repeat 3]
        [--only restart,bulk,cost]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.scale import blackbox_bulk, fleet_task, process_start, write_store

AFTER = Path(__file__).resolve().parents[1]


def uptime() -> str:
    try:
        out = subprocess.run(["uptime"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return "load unknown"
    return "load " + out.strip().rsplit("load average:", 1)[-1].strip()


@contextmanager
def version(tree: Path) -> Iterator[None]:
    """The daemons started meanwhile (``python -m monitor``) import ``tree``'s package."""
    saved_cwd, saved_path = os.getcwd(), os.environ.get("PYTHONPATH")
    os.chdir(tree)
    os.environ["PYTHONPATH"] = str(tree)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        if saved_path is None:
            os.environ.pop("PYTHONPATH", None)
        else:
            os.environ["PYTHONPATH"] = saved_path


def alternate(
    trees: dict[str, Path], repeat: int, run: Callable[[str], Any]
) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {name: [] for name in trees}
    for i in range(repeat):
        for name, tree in trees.items():
            before = uptime()
            with version(tree):
                figure = run(name)
            out[name].append(figure)
            print(f"   {name:<6} run {i + 1}: {figure}  ({before} -> {uptime()})", flush=True)
    return out


def fresh_start(pristine: Path, db: Path, settle: float, cpus: list[float]) -> tuple[float, int]:
    """A start on a copy of the untouched store: a daemon that ran on it has polled, stored
    health and alerts, and the next start would load more than the first did."""
    for stale in db.parent.glob(db.name + "*"):
        stale.unlink()
    shutil.copyfile(pristine, db)
    return process_start(db, settle=settle, cpu=cpus)


def cost_of(tree: Path, work: Path, name: str, i: int) -> dict[str, Any]:
    out = work / f"cost-{name}-{i}.json"
    with version(tree):
        subprocess.run(
            [sys.executable, str(tree / "bench" / "budget.py"), "--cost", "--json", str(out)],
            check=True,
            stdout=subprocess.DEVNULL,
        )
    figures: dict[str, Any] = json.loads(out.read_text())
    return figures


def main(args: argparse.Namespace) -> None:
    trees = {"before": args.before.resolve(), "after": args.after.resolve()}
    print(f"before: {trees['before']}\nafter:  {trees['after']}\nstart: {uptime()}")
    rng = random.Random(1)
    fleet = [fleet_task(i, rng) for i in range(args.tasks)]
    result: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="trtc-versus-") as tmp:
        work = Path(tmp)
        db, pristine = work / "fleet.db", work / "pristine.db"
        starts: dict[str, list[Any]] = {name: [(math.nan, math.nan, math.nan)] for name in trees}
        cpus: list[float] = []
        if "restart" in args.only:
            asyncio.run(write_store(pristine, fleet))
            print(f"\nrestart to ready and resident memory, {args.tasks:,} tasks stored")
            starts = alternate(
                trees,
                args.repeat,
                lambda name: (*fresh_start(pristine, db, args.settle, cpus), cpus[-1]),
            )
        bulk: dict[str, list[Any]] = {name: [{"bulk_rate": math.nan}] for name in trees}
        if "bulk" in args.only:
            print(f"\nbulk registration, {args.bulk_tasks:,} tasks in arrays of 1,000")
            bulk = alternate(
                trees,
                args.repeat,
                lambda name: blackbox_bulk(
                    Path(tempfile.mkdtemp(dir=work, prefix=name)), fleet[: args.bulk_tasks]
                ),
            )
        result = {
            name: {
                "ready": statistics.median(s for s, _, _ in starts[name]),
                "rss": statistics.median(r for _, r, _ in starts[name]),
                "ready_cpu": statistics.median(c for _, _, c in starts[name]),
                "bulk": statistics.median(b["bulk_rate"] for b in bulk[name]),
                "bulk_cpu": statistics.median(b.get("bulk_cpu_per_1000", 0) for b in bulk[name]),
            }
            for name in trees
        }
        if "cost" in args.only:
            print("\nCPU per completed poll (bench/budget.py --cost of each version)")
            costs: dict[str, list[float]] = {name: [] for name in trees}
            for i in range(args.cost_runs):
                for name, tree in trees.items():
                    before = uptime()
                    figures = cost_of(tree, work, name, i)
                    costs[name].append(figures["ratio"])
                    daemon = figures["daemon_cpu"] / max(figures["daemon_polls"], 1) * 1e3
                    sdk = figures["sdk_cpu"] / max(figures["sdk_calls"], 1) * 1e3
                    print(
                        f"   {name:<6} run {i + 1}: {figures['ratio']:.3f} x (daemon {daemon:.2f} "
                        f"ms per poll, SDK {sdk:.2f} ms per call)  ({before} -> {uptime()})",
                        flush=True,
                    )
            for name in trees:
                result[name]["cost"] = statistics.median(costs[name])
    b, a = result["before"], result["after"]
    print(f"\nmedians (end: {uptime()})")
    rows = [
        ("restart to ready, s", "ready", "restart"),
        ("CPU until ready, s", "ready_cpu", "restart"),
        ("resident memory, MiB", "rss", "restart"),
        ("bulk registration, tasks/s", "bulk", "bulk"),
        ("bulk: daemon CPU s per 1,000", "bulk_cpu", "bulk"),
    ]
    for label, field, step in rows:
        if step in args.only:
            scale = 1 / 2**20 if field == "rss" else 1.0
            before, after = b[field] * scale, a[field] * scale
            print(f"   {label:<30} {before:10.3f} -> {after:10.3f}  ({after / before:.3f} x)")
    if "cost" in args.only:
        print(f"   CPU per poll / SDK {b['cost']:.3f} x -> {a['cost']:.3f} x "
              f"({a['cost'] / b['cost']:.2f} x)")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--after", type=Path, default=AFTER, help="default: this tree")
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--bulk-tasks", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--settle", type=float, default=3.0)
    parser.add_argument(
        "--only",
        type=lambda text: set(text.split(",")),
        default={"restart", "bulk"},
        help="steps, comma-separated: restart, bulk, cost (default: restart,bulk)",
    )
    parser.add_argument("--cost-runs", type=int, default=2)
    parser.add_argument("--json", type=Path)
    main(parser.parse_args())
