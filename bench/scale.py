"""Scale (docs/testing.md, issue 14): a fleet of 100,000 tasks and /metrics for 10,000.

Prints, in one run, every figure of the scale table in ``bench/RESULTS.md``:

1. /metrics for 10,000 tasks rendered in this process: prometheus_client's encoders (the
   reference), the text written directly, and the kept per-task text (first scrape, then a
   scrape after 1% of the tasks changed), with gzip; whether all give the same bytes;
2. a real daemon process (``python -m monitor run``) started on a store of 100,000 tasks: time
   from process start to ``/-/ready`` answering 200, and its resident memory then;
3. the same with 10,000 tasks listed in the YAML file and an empty store;
4. ``GET /-/healthy`` latency while ``/metrics`` (OpenMetrics, gzip, as Prometheus asks) is
   scraped back to back at 10,000 tasks, against idle; the event loop's longest stall, measured
   inside the daemon by a ticker; the scrape's own time;
5. registering 10,000 tasks through the API: 1,000 specs per request, and one per request;
6. the limiter's work per grant at a limit of 20 and of 10,000 requests per window.

The tasks look like a polled fleet: 48-character TaskIds like Tencent's, two user labels, seven
in ten recording with one file in their last answer. Daemons poll a closed loopback port
(polls fail at once; nothing leaves the machine), every 15 s.

    python bench/scale.py [--tasks 100000] [--render-tasks 10000] [--repeat 3]

``--pressure`` prints only the rows of issue 22 that are this script's, each against the real
command (``python -m monitor run``) in its own process: resident memory and restart to ready
with ``--tasks`` stored, and bulk registration of ``--bulk-tasks`` in arrays of 1,000.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import gzip
import itertools
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import aiohttp

from monitor.config import parse_config
from monitor.daemon import Daemon
from monitor.http.server import start_server
from monitor.log import configure_logging
from monitor.metrics import BucketGauge, MonitorMetrics, StateView
from monitor.metrics.scrape import Exposition, gzip_parts
from monitor.models import REGIONS, Status, Task, storage_file_summary
from monitor.ratelimit.window import WindowBudget
from monitor.simulator import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY
from monitor.store.sqlite import SqliteStore

APP = 1400000001
NOW = time.time()
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
PROMETHEUS_ACCEPT = (
    "application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.3,*/*;q=0.1"
)
TOKEN = "bench-token-0123456789"  # noqa: S105 (a loopback daemon of this run only)


def fleet_task(i: int, rng: random.Random, own_labels: bool = False) -> Task:
    """Task number ``i`` of a fleet that has been polled for a while; ``own_labels``: every
    task has a label set of its own (as this bench had until 2026-11-29)."""
    task_id = base64.urlsafe_b64encode(rng.randbytes(36)).decode()
    room = f"room-{i // 4}"
    kind = i % 10
    status = Status.IN_PROGRESS if kind < 7 else Status.IDLE if kind < 9 else Status.PENDING
    task = Task(
        sdk_app_id=APP,
        task_id=task_id,
        region=REGIONS[i % len(REGIONS)],
        account="default",
        # A room's four tasks belong to one customer, so they share a label set (until
        # 2026-11-29 every task had its own, unlike any real fleet: see RESULTS.md).
        labels={"room": room, "customer": f"customer-{(i if own_labels else i // 4) % 97}"},
        registered_at=NOW - 7200,
        status=status,
        # Idle for under two minutes: older, the restart would fire idle alerts that a daemon
        # running all along would have sent (and stored) already.
        status_since=NOW - (i % 120 if status is Status.IDLE else i % 3600),
    )
    if status is Status.PENDING:
        return task
    request_id = str(uuid.UUID(int=rng.getrandbits(128)))
    files = (
        [
            {
                "UserId": "",
                "FileName": f"{APP}_{room}_{task_id[:12]}.m3u8",
                "TrackType": "audio_video",
                "BeginTimeStamp": int((NOW - 3600) * 1000),
            }
        ]
        if status is Status.IN_PROGRESS
        else None
    )
    # What the tracker keeps of such an answer (apply_poll).
    count, summary = storage_file_summary(files)
    task.answer_status = status
    task.answer_request_id = request_id
    task.answer_files = summary
    task.last_request_id = request_id
    task.last_success_at = NOW - i % 15
    task.storage_files = count or 0
    task.consecutive_errors = 1 if i % 50 == 0 else 0
    return task


def spec_of(task: Task) -> dict[str, Any]:
    return {
        "sdk_app_id": task.sdk_app_id,
        "task_id": task.task_id,
        "region": task.region,
        "account": task.account,
        "labels": task.labels,
    }


def mib(n: float) -> str:
    return f"{n / 2**20:.1f} MiB"


def ms(seconds: float) -> str:
    return f"{seconds * 1000:.1f} ms"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: connections to it are refused


def config_text(db: Path, listen: str, tasks: Sequence[Task] = ()) -> str:
    lines = [
        "server:",
        f'  listen: "{listen}"',
        "  api_token_env: BENCH_TOKEN",
        f"storage: {{path: {db}}}",
        "accounts:",
        "  default: {secret_id_env: BENCH_ID, secret_key_env: BENCH_KEY,",
        f'             endpoint: "http://127.0.0.1:{free_port()}"}}',
        "polling: {interval: 15s}",
        "logging: {format: json, level: error}",
        "metrics: {per_task: true, labels: [room, customer]}",
    ]
    if tasks:
        lines.append("tasks:")
        lines.extend(
            f"  - {{sdk_app_id: {t.sdk_app_id}, task_id: '{t.task_id}', region: {t.region}, "
            f"labels: {{room: {t.labels['room']}, customer: {t.labels['customer']}}}}}"
            for t in tasks
        )
    return "\n".join(lines) + "\n"


def bench_env() -> dict[str, str]:
    return {
        **os.environ,
        "BENCH_ID": DEFAULT_SECRET_ID,
        "BENCH_KEY": DEFAULT_SECRET_KEY,
        "BENCH_TOKEN": TOKEN,
    }


# ---------------------------------------------------------------------------------------------
# 1. rendering, in this process


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    walls = []
    for _ in range(repeat):
        wall = time.perf_counter()
        fn()
        walls.append(time.perf_counter() - wall)
    return walls


def render_figures(tasks: list[Task], repeat: int) -> None:
    metrics = MonitorMetrics()
    for region in REGIONS:
        metrics.api_requests.labels("default", region, "ok", "").inc(1000)
        metrics.transitions.labels("default", region, "Idle", "InProgress").inc(10)
    for _ in range(100):
        metrics.api_duration.labels("default").observe(0.05)
        metrics.poll_delay.labels("default").observe(0.2)

    def view_of(table: list[Task]) -> StateView:
        return StateView(
            tasks=table,
            info_labels=["room", "customer"],
            buckets=[BucketGauge("default", "trtc.tencentcloudapi.com", 20.0, 19.6)],
            required_rate={"default": len(table) / 15.0},
        )

    view = view_of(tasks)
    exposition = Exposition(metrics)
    reference = metrics.render_reference(view, OPENMETRICS)[0]
    direct = metrics.render(view, OPENMETRICS)[0]

    async def cached(table_view: StateView) -> tuple[bytes, float, float]:
        started = time.perf_counter()
        rendered = await exposition.render(table_view, OPENMETRICS)
        took = time.perf_counter() - started
        started = time.perf_counter()
        packed = await Exposition.gzip(rendered)
        took_gzip = time.perf_counter() - started
        assert gzip.decompress(packed) == rendered.body()
        return rendered.body(), took, took_gzip

    cold_body, cold, gzip_took = asyncio.run(cached(view))
    warm_runs = [asyncio.run(cached(view)) for _ in range(repeat)]
    # 1% of the tasks change (a poll answered, a status moved): their records are replaced.
    changed = list(tasks)
    for i in range(0, len(changed), 100):
        changed[i] = replace(changed[i], consecutive_errors=changed[i].consecutive_errors + 1)
    changed_view = view_of(changed)
    changed_runs = [asyncio.run(cached(changed_view)) for _ in range(1)]
    expected_changed = metrics.render_reference(changed_view, OPENMETRICS)[0]

    # What the kept text costs: what a first scrape leaves allocated once its body is gone.
    kept = Exposition(metrics)
    tracemalloc.start()
    asyncio.run(kept.render(view, OPENMETRICS))
    kept_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()

    ref_walls = timed(lambda: metrics.render_reference(view, OPENMETRICS), repeat)
    direct_walls = timed(lambda: metrics.render(view, OPENMETRICS), repeat)
    lib_gzip = timed(lambda: gzip.compress(reference, compresslevel=1), repeat)
    own_gzip = timed(lambda: gzip_parts([reference]), repeat)

    print(
        f"1. /metrics, {len(tasks):,} tasks, OpenMetrics, per-task series with info labels "
        f"room, customer ({len(reference):,} bytes; best of {repeat})"
    )
    print(f"   prometheus_client families       {min(ref_walls):7.3f} s")
    print(f"   text written directly (sync)     {min(direct_walls):7.3f} s")
    print(
        f"   kept per-task text, first scrape {cold:7.3f} s "
        f"(the text kept: {mib(kept_bytes)}, {kept_bytes / len(tasks):,.0f} B per task)"
    )
    print(f"   kept per-task text, again        {min(r[1] for r in warm_runs):7.3f} s")
    print(f"   kept, after 1% of tasks changed  {changed_runs[0][1]:7.3f} s")
    print(
        f"   gzip level 1 of the body          {gzip_took:7.3f} s in the thread "
        f"(gzip.compress: {min(lib_gzip):.3f} s, zlib parts: {min(own_gzip):.3f} s)"
    )
    print(
        f"   longest slice on the loop        {ms(exposition.longest_slice)} "
        f"(CPU {ms(exposition.longest_slice_cpu)}); "
        f"identical to prometheus_client: direct {direct == reference}, kept "
        f"{cold_body == reference and all(r[0] == reference for r in warm_runs)}, "
        f"after changes {changed_runs[0][0] == expected_changed}"
    )


# ---------------------------------------------------------------------------------------------
# children: the daemon in a fresh process


async def child_serve(db: Path, listen_file: Path) -> None:
    """A daemon with its HTTP server and a ticker measuring the loop's stalls; serves until
    its stdin closes, then prints the stalls as JSON."""
    configure_logging("json", "error", [DEFAULT_SECRET_KEY], stream=open(os.devnull, "w"))  # noqa: SIM115
    os.environ.update(bench_env())
    config = parse_config(config_text(db, "127.0.0.1:0"))
    daemon = Daemon(config)
    await daemon.start()
    runner, url = await start_server(daemon, "127.0.0.1:0")
    lags: list[float] = []
    marks: list[tuple[str, int]] = []
    pauses: list[float] = []
    began = [0.0]

    def collected(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
        else:
            pauses.append(time.perf_counter() - began[0])

    gc.callbacks.append(collected)

    long_ones: list[tuple[float, float, float]] = []

    async def ticker() -> None:
        while True:
            before = time.perf_counter()
            own, everyone = time.thread_time(), time.process_time()
            await asyncio.sleep(0.001)
            lag = time.perf_counter() - before - 0.001
            lags.append(lag)
            if lag > 0.010:
                # Was the loop busy (its own CPU), waiting for the GIL (the process's CPU
                # grew), or not running at all (neither grew)?
                long_ones.append((lag, time.thread_time() - own, time.process_time() - everyone))

    async def commands() -> None:
        loop = asyncio.get_running_loop()
        while True:
            line = await loop.run_in_executor(None, sys.stdin.readline)
            if not line:
                return
            marks.append((line.strip(), len(lags)))

    ticking = asyncio.create_task(ticker())
    listen_file.write_text(url)
    await commands()
    ticking.cancel()
    await runner.cleanup()
    await daemon.stop()
    spans = {}
    for (name, start), (_, end) in itertools.pairwise(marks):
        window = lags[start:end]
        spans[name] = {"max": max(window, default=0.0), "p99": pct(window or [0.0], 0.99)}
    spans["longest_slice"] = {
        "max": daemon.exposition.longest_slice,
        "p99": daemon.exposition.longest_slice_cpu,
    }
    spans["gc"] = {"max": max(pauses, default=0.0), "p99": float(len(pauses))}
    worst = max(long_ones, default=(0.0, 0.0, 0.0))
    spans["worst"] = {"max": worst[0], "p99": worst[1], "process": worst[2]}
    print(json.dumps(spans))


async def wait_ready(url: str, proc: subprocess.Popen[Any], timeout: float = 120.0) -> float:
    started = time.perf_counter()
    async with aiohttp.ClientSession() as session:
        while time.perf_counter() - started < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"daemon exited with {proc.returncode}")
            try:
                async with session.get(f"{url}/-/ready") as r:
                    if r.status == 200:
                        return time.perf_counter()
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.005)
    raise RuntimeError("daemon not ready in time")


def rss_of(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS")


def cpu_of(pid: int) -> float:
    """CPU seconds the process has used so far (user and system, every thread): unlike wall
    time, hardly moved by other work on a shared machine."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def process_start(
    db: Path,
    tasks: Sequence[Task] = (),
    settle: float = 0.0,
    cpu: list[float] | None = None,
) -> tuple[float, int]:
    """Seconds from process start to /-/ready answering 200, and the resident memory then
    (``settle`` seconds later: the larger of the two). ``cpu``, when given, gets the CPU
    seconds the process used until ready appended."""
    port = free_port()
    cfg = db.with_suffix(".yaml")
    cfg.write_text(config_text(db, f"127.0.0.1:{port}", tasks))
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--config", str(cfg)],
        env=bench_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        ready = asyncio.run(wait_ready(f"http://127.0.0.1:{port}", proc))
        rss = rss_of(proc.pid)
        if cpu is not None:
            cpu.append(cpu_of(proc.pid))
        if settle:
            time.sleep(settle)
            rss = max(rss, rss_of(proc.pid))
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return ready - started, rss


# ---------------------------------------------------------------------------------------------
# 4 and 5: against a serving daemon


async def probe(session: aiohttp.ClientSession, url: str, count: int) -> list[float]:
    out = []
    for _ in range(count):
        started = time.perf_counter()
        async with session.get(f"{url}/-/healthy") as r:
            await r.read()
        out.append(time.perf_counter() - started)
        await asyncio.sleep(0.005)
    return out


async def scrape_once(session: aiohttp.ClientSession, url: str) -> tuple[float, int]:
    headers = {"Accept": PROMETHEUS_ACCEPT, "Accept-Encoding": "gzip"}
    started = time.perf_counter()
    async with session.get(f"{url}/metrics", headers=headers, auto_decompress=False) as r:
        body = await r.read()
    return time.perf_counter() - started, len(body)


async def stall_figures(url: str, mark: Callable[[str], None], probes: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session:
        await probe(session, url, 20)  # connection warm
        mark("idle")
        idle = await probe(session, url, probes)
        mark("scrapes")
        first, size = await scrape_once(session, url)
        scrapes: list[float] = []
        stop = asyncio.Event()

        async def scraper() -> None:
            while not stop.is_set():
                scrapes.append((await scrape_once(session, url))[0])

        scraping = asyncio.create_task(scraper())
        busy = await probe(session, url, probes)
        stop.set()
        await scraping
        mark("end")
    return {"idle": idle, "busy": busy, "first": first, "scrapes": scrapes, "size": size}


async def bulk_figures(url: str, tasks: list[Task]) -> dict[str, float]:
    auth = {"Authorization": f"Bearer {TOKEN}"}
    async with aiohttp.ClientSession(headers=auth) as session:
        bulk = tasks[:10_000]
        started = time.perf_counter()
        per_request = []
        for at in range(0, len(bulk), 1000):
            one = time.perf_counter()
            body = [spec_of(t) for t in bulk[at : at + 1000]]
            async with session.post(f"{url}/api/v1/tasks", json=body) as r:
                answer = await r.json()
                assert answer["created"] == len(body), answer
            per_request.append(time.perf_counter() - one)
        bulk_s = time.perf_counter() - started
        singles = tasks[10_000:11_000]
        started = time.perf_counter()
        for t in singles:
            async with session.post(f"{url}/api/v1/tasks", json=spec_of(t)) as r:
                assert r.status == 201
        single_s = time.perf_counter() - started
    return {
        "bulk_rate": len(bulk) / bulk_s,
        "bulk_best": 1000 / min(per_request),
        "single_rate": len(singles) / single_s,
    }


def serve(db: Path) -> tuple[subprocess.Popen[str], str, Path]:
    listen_file = db.with_suffix(".url")
    proc = subprocess.Popen(
        [sys.executable, __file__, "--child", "serve", "--db", str(db), "--url", str(listen_file)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 120
    while not listen_file.exists() or not listen_file.read_text():
        if time.time() > deadline or proc.poll() is not None:
            raise RuntimeError("serving daemon did not start")
        time.sleep(0.05)
    return proc, listen_file.read_text(), listen_file


def blackbox_bulk(work: Path, tasks: list[Task]) -> dict[str, float]:
    """Bulk registration against ``python -m monitor run`` (its own process, an empty store):
    ``tasks`` in arrays of 1,000 from one client, one request after the other."""
    db = work / "bulk.db"
    port = free_port()
    cfg = db.with_suffix(".yaml")
    cfg.write_text(config_text(db, f"127.0.0.1:{port}"))
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [sys.executable, "-m", "monitor", "run", "--config", str(cfg)],
        env=bench_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )

    async def post_all() -> dict[str, float]:
        await wait_ready(url, proc)
        auth = {"Authorization": f"Bearer {TOKEN}"}
        bodies = [[spec_of(t) for t in tasks[at : at + 1000]] for at in range(0, len(tasks), 1000)]
        async with aiohttp.ClientSession(headers=auth) as session:
            per_request = []
            cpu = cpu_of(proc.pid)
            started = time.perf_counter()
            for body in bodies:
                one = time.perf_counter()
                async with session.post(f"{url}/api/v1/tasks", json=body) as r:
                    answer = await r.json()
                    assert answer["created"] == len(body), answer
                per_request.append(time.perf_counter() - one)
            took = time.perf_counter() - started
            cpu = cpu_of(proc.pid) - cpu
        return {
            "bulk_rate": len(tasks) / took,
            "bulk_cpu_per_1000": cpu / len(tasks) * 1000,
            "bulk_best": 1000 / min(per_request),
            "bulk_median": 1000 / statistics.median(per_request),
        }

    try:
        return asyncio.run(post_all())
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def pressure(args: argparse.Namespace) -> dict[str, Any]:
    """The scale rows of issue 22, each against ``python -m monitor run`` in its own process:
    resident memory and restart to ready with ``--tasks`` stored, bulk registration."""
    rng = random.Random(1)
    tasks = [fleet_task(i, rng) for i in range(args.tasks)]
    with tempfile.TemporaryDirectory(prefix="trtc-scale-") as tmp:
        db = Path(tmp) / "fleet.db"
        asyncio.run(write_store(db, tasks))
        starts = [process_start(db, settle=args.settle) for _ in range(args.repeat)]
        bulk = blackbox_bulk(Path(tmp), tasks[: args.bulk_tasks])
    return {
        "tasks": args.tasks,
        "ready": [s for s, _ in starts],
        "rss": [r for _, r in starts],
        "settle": args.settle,
        "bulk_tasks": args.bulk_tasks,
        **bulk,
    }


def report_pressure(f: dict[str, Any]) -> None:
    print(
        f"{f['tasks']:,} tasks stored; `python -m monitor run`, {len(f['ready'])} starts\n"
        f"   restart to /-/ready 200: best {min(f['ready']):.2f} s, median "
        f"{statistics.median(f['ready']):.2f} s (all: {', '.join(f'{s:.2f}' for s in f['ready'])})"
        f"; goal <= 2 s\n"
        f"   resident memory (at ready and {f['settle']:g} s later, the larger): median "
        f"{mib(statistics.median(f['rss']))} (all: {', '.join(mib(r) for r in f['rss'])}); "
        f"goal <= 150 MiB\n"
        f"   bulk registration, {f['bulk_tasks']:,} tasks in arrays of 1,000, one client: "
        f"{f['bulk_rate']:,.0f} tasks/s (median request {f['bulk_median']:,.0f}/s, best "
        f"{f['bulk_best']:,.0f}/s); goal >= 20,000 tasks/s"
    )


# ---------------------------------------------------------------------------------------------
# 6. the limiter


def limiter_figures() -> list[tuple[int, float]]:
    rows = []
    for limit in (20, 10_000):
        budget = WindowBudget(limit, 1.0)
        now, grants = 0.0, 200_000
        started = time.perf_counter()
        for _ in range(grants):
            now += budget.delay(now)
            budget.record(now)
            budget.sent(now, now + 0.0001)
        rows.append((limit, (time.perf_counter() - started) / grants))
    return rows


# ---------------------------------------------------------------------------------------------


async def write_store(db: Path, tasks: list[Task]) -> float:
    store = SqliteStore(db)
    await store.open()
    started = time.perf_counter()
    for i in range(0, len(tasks), 10_000):
        await store.save_tasks(tasks[i : i + 10_000])
    took = time.perf_counter() - started
    await store.close()
    return took


def main(args: argparse.Namespace) -> None:
    began = time.perf_counter()
    print(
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, "
        f"load average {os.getloadavg()[0]:.2f} at start\n"
    )
    rng = random.Random(1)
    tasks = [fleet_task(i, rng, args.own_labels) for i in range(args.tasks)]
    render_figures(tasks[: args.render_tasks], args.repeat)

    with tempfile.TemporaryDirectory(prefix="trtc-scale-") as tmp:
        db = Path(tmp) / "fleet.db"
        wrote = asyncio.run(write_store(db, tasks))
        size = sum(p.stat().st_size for p in Path(tmp).iterdir())
        starts = [process_start(db) for _ in range(args.repeat)]
        print(
            f"\n2. store of {args.tasks:,} tasks (written in {wrote:.1f} s, {mib(size)}); "
            f"`python -m monitor run`, process start to /-/ready 200 (best of {args.repeat})\n"
            f"   ready in {min(s for s, _ in starts):.2f} s "
            f"(all: {', '.join(f'{s:.2f}' for s, _ in starts)}); resident memory then "
            f"{mib(min(r for _, r in starts))}"
        )

        yaml_db = Path(tmp) / "yaml.db"
        yaml_tasks = tasks[: args.render_tasks]
        first = process_start(yaml_db, yaml_tasks)  # stores them
        again = process_start(yaml_db, yaml_tasks)  # already stored
        print(
            f"\n3. {len(yaml_tasks):,} tasks listed in the YAML, empty store: ready in "
            f"{first[0]:.2f} s; again on that store {again[0]:.2f} s"
        )

        small_db = Path(tmp) / "render.db"
        asyncio.run(write_store(small_db, tasks[: args.render_tasks]))
        proc, url, _ = serve(small_db)
        assert proc.stdin is not None

        def mark(name: str) -> None:
            assert proc.stdin is not None
            proc.stdin.write(name + "\n")
            proc.stdin.flush()

        figures = asyncio.run(stall_figures(url, mark, args.probes))
        proc.stdin.close()
        assert proc.stdout is not None
        out = proc.stdout.read()
        proc.wait(timeout=60)
        stalls = json.loads(out.strip().splitlines()[-1])
        idle, busy = figures["idle"], figures["busy"]
        print(
            f"\n4. {args.render_tasks:,} tasks, /metrics scraped back to back as Prometheus asks "
            f"(OpenMetrics, gzip; {figures['size']:,} bytes)\n"
            f"   scrape: first {figures['first']:.3f} s, then median "
            f"{statistics.median(figures['scrapes']):.3f} s over {len(figures['scrapes'])}\n"
            f"   GET /-/healthy idle:           p99 {ms(pct(idle, 0.99))}, max {ms(max(idle))}\n"
            f"   GET /-/healthy during scrapes: p99 {ms(pct(busy, 0.99))}, max {ms(max(busy))}"
            f"  ({len(busy)} probes)\n"
            f"   loop stall (1 ms ticker in the daemon): idle max {ms(stalls['idle']['max'])}; "
            f"during scrapes p99 {ms(stalls['scrapes']['p99'])}, max "
            f"{ms(stalls['scrapes']['max'])}; longest scrape slice "
            f"{ms(stalls['longest_slice']['max'])} (CPU {ms(stalls['longest_slice']['p99'])}); "
            "longest collection "
            f"{ms(stalls['gc']['max'])} of {stalls['gc']['p99']:.0f}\n"
            f"   the longest stall: {ms(stalls['worst']['max'])}, of which the loop's own CPU "
            f"{ms(stalls['worst']['p99'])}, the whole process's {ms(stalls['worst']['process'])}"
        )

        api_db = Path(tmp) / "api.db"
        proc, url, _ = serve(api_db)
        bulk = asyncio.run(bulk_figures(url, tasks))
        assert proc.stdin is not None
        proc.stdin.close()
        assert proc.stdout is not None
        proc.stdout.read()
        proc.wait(timeout=60)
        print(
            f"\n5. registration through the API: 10,000 tasks in requests of 1,000: "
            f"{bulk['bulk_rate']:,.0f} tasks/s (best request {bulk['bulk_best']:,.0f}/s); "
            f"one per request: {bulk['single_rate']:,.0f} tasks/s"
        )

    print("\n6. limiter, per grant (delay + record + send receipt)")
    for limit, each in limiter_figures():
        print(f"   limit {limit:>6,} per window: {each * 1e6:.2f} µs")
    print(f"\nwhole run {time.perf_counter() - began:.0f} s")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--render-tasks", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--probes", type=int, default=400)
    parser.add_argument(
        "--own-labels", action="store_true", help="a label set per task, none shared"
    )
    parser.add_argument(
        "--pressure",
        action="store_true",
        help="only the issue-22 rows (memory, restart, bulk registration), black-box",
    )
    parser.add_argument("--settle", type=float, default=3.0, help="with --pressure")
    parser.add_argument("--bulk-tasks", type=int, default=20_000, help="with --pressure")
    parser.add_argument("--json", type=Path, help="with --pressure: also write the figures here")
    parser.add_argument("--child", choices=("serve",), help=argparse.SUPPRESS)
    parser.add_argument("--db", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--url", type=Path, help=argparse.SUPPRESS)
    parsed = parser.parse_args()
    if parsed.child == "serve":
        asyncio.run(child_serve(parsed.db, parsed.url))
    elif parsed.pressure:
        print(f"load average {os.getloadavg()[0]:.2f} at start", flush=True)
        figures = pressure(parsed)
        report_pressure(figures)
        if parsed.json:
            parsed.json.write_text(json.dumps(figures))
    else:
        main(parsed)
