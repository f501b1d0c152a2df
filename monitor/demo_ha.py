"""`trtc-monitor demo --replicas N`: several replicas on one Redis, and a takeover to watch.

It starts a `redis-server` (which must be on the PATH) on a free loopback port in a fresh
temporary folder, the built-in simulator, and N `trtc-monitor run` processes sharing both;
registers recordings on one replica, shows how the replicas split them, kills one with
SIGKILL and narrates how the others take its tasks over, then brings it back.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

import aiohttp
import yaml

from monitor.cluster.ownership import Ownership
from monitor.config import parse_config
from monitor.models import TaskKey
from monitor.simulator import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, Life, Simulator

__all__ = ["run_ha_demo"]

SDK_APP_ID = 1400000001
TASKS = 30
HEARTBEAT = 1.0
MEMBER_TIMEOUT = 3.0
INTERVAL = 2.0
DESCRIBE = "DescribeCloudRecording"
REDIS_MISSING = (
    "error: `trtc-monitor demo --replicas N` runs a local redis-server, and none is on the "
    "PATH; install Redis 7 or Valkey (Debian: apt-get install redis-server), or run the "
    "single-replica demo without --replicas"
)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def replica_config(name: str, port: int, sim_url: str) -> str:
    """One replica's monitor.yaml; validated before it is written."""
    raw: dict[str, Any] = {
        "server": {"listen": f"127.0.0.1:{port}", "api_token_env": "TRTC_DEMO_API_TOKEN"},
        "storage": {"backend": "redis", "redis": {"url_env": "TRTC_DEMO_REDIS_URL"}},
        "cluster": {
            "replica_id": name,
            "heartbeat": f"{int(HEARTBEAT * 1000)}ms",
            "member_timeout": f"{int(MEMBER_TIMEOUT * 1000)}ms",
        },
        "accounts": {
            "default": {
                "secret_id_env": "TRTC_DEMO_SECRET_ID",
                "secret_key_env": "TRTC_DEMO_SECRET_KEY",
                "endpoint": sim_url,
            }
        },
        "polling": {"interval": f"{int(INTERVAL)}s", "jitter": "0%"},
        "logging": {"format": "json", "level": "info"},
    }
    text = yaml.safe_dump(raw, sort_keys=False)
    parse_config(text, source=name)
    return text


class _Replica:
    def __init__(self, name: str, port: int, config: Path, log: Path) -> None:
        self.name = name
        self.port = port
        self.config = config
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, env: dict[str, str]) -> None:
        with self.log.open("ab") as out:
            argv = [sys.executable, "-m", "monitor", "run", "-c", str(self.config)]
            self.process = _spawn(argv, out, env)

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        if self.process is not None and self.alive:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.alive:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


async def replica_gauges(session: aiohttp.ClientSession, url: str) -> tuple[int, int] | None:
    """(replicas seen, tasks owned) from the replica at ``url``; None while it is not ready."""
    try:
        async with session.get(f"{url}/-/ready") as ready:
            if ready.status != 200:
                return None
        async with session.get(f"{url}/metrics") as r:
            text = await r.text()
    except (aiohttp.ClientError, OSError):
        return None
    seen = owned = 0.0
    for line in text.splitlines():
        if line.startswith("trtc_monitor_cluster_replicas "):
            seen = float(line.rsplit(" ", 1)[1])
        elif line.startswith("trtc_monitor_owned_tasks{"):
            owned += float(line.rsplit(" ", 1)[1])
    return int(seen), int(owned)


def _spawn(argv: list[str], out: Any, env: dict[str, str] | None) -> subprocess.Popen[bytes]:
    """A child of the demo: argv is built here from fixed words, paths and port numbers."""
    sink = subprocess.DEVNULL if out is None else out
    err = subprocess.DEVNULL if out is None else subprocess.STDOUT
    return subprocess.Popen(argv, stdout=sink, stderr=err, env=env)  # noqa: S603


def _owner(task_id: str, members: list[str]) -> str | None:
    return Ownership("demo", members).owner_of(TaskKey(SDK_APP_ID, task_id))


async def _until(check: Any, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.2)
    return False


async def run_ha_demo(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    binary = shutil.which("redis-server")
    if binary is None:
        print(REDIS_MISSING, file=sys.stderr)
        return 2
    count = args.replicas
    data_dir = Path(tempfile.mkdtemp(prefix="trtc-monitor-demo-ha-"))
    started = time.time()

    def say(text: str) -> None:
        print(f"{time.time() - started:6.1f}s  {text}", file=out, flush=True)

    redis_port = _free_port()
    redis = _spawn(
        [
            *(binary, "--bind", "127.0.0.1", "--port", str(redis_port), "--dir", str(data_dir)),
            *("--save", "", "--appendonly", "yes", "--appendfsync", "everysec"),
            *("--logfile", str(data_dir / "redis.log")),
        ],
        None,
        None,
    )
    sim = Simulator(seed=7)
    await sim.start(port=_free_port())
    token = secrets.token_urlsafe(24)
    env = dict(os.environ)
    env.update(
        TRTC_DEMO_SECRET_ID=DEFAULT_SECRET_ID,
        TRTC_DEMO_SECRET_KEY=DEFAULT_SECRET_KEY,
        TRTC_DEMO_API_TOKEN=token,
        TRTC_DEMO_REDIS_URL=f"redis://127.0.0.1:{redis_port}/0",
    )
    replicas: list[_Replica] = []
    for i in range(1, count + 1):
        name, port = f"replica-{i}", _free_port()
        config = data_dir / f"{name}.yaml"
        config.write_text(replica_config(name, port, sim.url), encoding="utf-8")
        replicas.append(_Replica(name, port, config, data_dir / f"{name}.log"))
    print(
        f"trtc-monitor demo: {count} replicas sharing one Redis (127.0.0.1:{redis_port}, AOF) "
        f"and the built-in simulator ({sim.url})\n"
        + "".join(f"  {r.name:<10} {r.url}/metrics\n" for r in replicas)
        + f"  logs       {data_dir}\n",
        file=out,
        flush=True,
    )
    try:
        async with aiohttp.ClientSession() as session:
            return await _story(session, replicas, env, sim, say, token)
    finally:
        for replica in replicas:
            replica.stop()
        await sim.stop()
        redis.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            redis.wait(timeout=10)
        print(f"\nDemo over. Logs kept in {data_dir}", file=out, flush=True)


async def _story(
    session: aiohttp.ClientSession,
    replicas: list[_Replica],
    env: dict[str, str],
    sim: Simulator,
    say: Any,
    token: str,
) -> int:
    count = len(replicas)
    for replica in replicas:
        replica.start(env)

    async def all_see(live: list[_Replica], n: int) -> bool:
        views = [await replica_gauges(session, r.url) for r in live]
        return all(v is not None and v[0] == n for v in views)

    if not await _until(lambda: all_see(replicas, count), 60):
        say("the replicas did not come up; see their logs")
        return 1
    say(f"{count} replicas joined; each sees {count} live replicas")

    ids = [
        sim.add_task(SDK_APP_ID, life=Life(idle=0.0, in_progress=None, exited=600))
        for _ in range(TASKS)
    ]
    body = [{"sdk_app_id": SDK_APP_ID, "task_id": t, "region": "ap-guangzhou"} for t in ids]
    async with session.post(
        f"{replicas[0].url}/api/v1/tasks",
        json=body,
        headers={"Authorization": f"Bearer {token}"},
    ) as r:
        await r.read()
    say(f"registered {TASKS} recordings on {replicas[0].name}; the owners poll them at once")

    async def split() -> list[int] | None:
        views = [await replica_gauges(session, r.url) for r in replicas]
        owned = [v[1] for v in views if v is not None]
        return owned if len(owned) == count and sum(owned) == TASKS else None

    await _until(split, 20)
    owned = await split() or []
    say(
        "the work is split: "
        + ", ".join(f"{r.name} polls {n}" for r, n in zip(replicas, owned, strict=False))
    )
    await asyncio.sleep(2 * INTERVAL)

    victim = replicas[0]
    survivors = replicas[1:]
    killed_at = time.time()
    victim.kill()
    say(
        f"kill -9 {victim.name}; the others notice when its heartbeat is "
        f"{MEMBER_TIMEOUT:g} s old (cluster.member_timeout)"
    )

    async def taken_over() -> bool:
        views = [await replica_gauges(session, r.url) for r in survivors]
        return (
            all(v is not None and v[0] == count - 1 for v in views)
            and sum(v[1] for v in views if v is not None) == TASKS
        )

    if not await _until(taken_over, 30):
        say("the takeover did not complete; see the logs")
        return 1
    took = time.time() - killed_at
    views = [await replica_gauges(session, r.url) for r in survivors]
    say(
        f"takeover after {took:.1f} s: "
        + ", ".join(f"{r.name} polls {v[1]}" for r, v in zip(survivors, views, strict=False) if v)
    )
    await asyncio.sleep(INTERVAL + 1.0)
    theirs = [t for t in ids if _owner(t, [r.name for r in replicas]) == victim.name]
    first: dict[str, float] = {}
    for arrival in sim.arrivals.select(DESCRIBE, since=killed_at):
        first.setdefault(arrival.task_id, arrival.wall - killed_at)
    missed = [t for t in theirs if t not in first]
    if missed:
        say(f"{len(missed)} of {victim.name}'s recordings not polled since the kill")
    elif theirs:
        delays = sorted(first[t] for t in theirs)
        say(
            f"{victim.name}'s {len(theirs)} recordings were polled again "
            f"{delays[0]:.1f}-{delays[-1]:.1f} s after the kill (member_timeout "
            f"{MEMBER_TIMEOUT:g} s + at most one {INTERVAL:g} s interval)"
        )
    victim.start(env)
    if await _until(lambda: all_see(replicas, count), 30):
        views = [await replica_gauges(session, r.url) for r in replicas]
        say(
            f"{victim.name} is back and takes its share again: "
            + ", ".join(
                f"{r.name} polls {v[1]}" for r, v in zip(replicas, views, strict=False) if v
            )
        )
    return 1 if missed else 0
