"""Several replicas on one Redis (docs/high-availability.md), as users run them: `trtc-monitor run`
processes sharing a real `redis-server`, the simulator as a process of its own (its arrival
log is TRTC's view of the fleet), a capturing webhook sink for alerts."""

from __future__ import annotations

import asyncio
import itertools
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import aiohttp

from monitor.alerts import TASK_EXITED
from monitor.callbacks.signature import sign_body as sign
from monitor.cluster.ownership import Ownership
from monitor.models import REGIONS as MODEL_REGIONS
from monitor.models import TaskKey
from monitor.simulator import SimulatorControl
from tests.alerts_e2e_support import alerts_yaml, notices, webhook
from tests.conftest import API_TOKEN, daemon_config_text
from tests.daemon_support import stop_body
from tests.deploy_support import require_tool
from tests.redis_server import RedisServer, running_redis
from tests.support import free_port, wait_for_async
from tests.test_process import daemon_env
from tests.test_receivers import Sink, serving

APP = 1400000001
CALLBACK_KEY = "cbKey0123456789abcdef"
DESCRIBE = "DescribeCloudRecording"
REGIONS = MODEL_REGIONS[:5]
HEARTBEAT = 0.5
MEMBER_TIMEOUT = 2.0
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


@contextmanager
def simulator_process(tmp: Path) -> Iterator[str]:
    port = free_port()
    with (
        (tmp / "sim.log").open("wb") as log,
        subprocess.Popen(
            [sys.executable, "-m", "monitor", "simulate", "--listen", f"127.0.0.1:{port}"],
            stdout=subprocess.DEVNULL,
            stderr=log,
        ) as sim,
    ):
        try:
            yield f"http://127.0.0.1:{port}"
        finally:
            sim.terminate()
            sim.wait(timeout=10)


class Replica:
    """One `trtc-monitor run` process of the cluster."""

    def __init__(self, name: str, config: Path, log: Path, env: dict[str, str]) -> None:
        self.name = name
        self.config = config
        self.log = log
        self.env = env
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "monitor", "run", "-c", str(self.config)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
            )

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


class Cluster:
    def __init__(
        self, tmp: Path, redis: RedisServer, sim_url: str, session: aiohttp.ClientSession
    ) -> None:
        self.tmp = tmp
        self.redis = redis
        self.sim_url = sim_url
        self.session = session
        self.replicas: list[Replica] = []

    def add(self, name: str, extra: str = "") -> Replica:
        port = free_port()
        text = daemon_config_text(self.sim_url, self.tmp / "unused.db", extra)
        text = text.replace('"127.0.0.1:0"', f'"127.0.0.1:{port}"').replace(
            "storage:\n", "storage:\n  backend: redis\n  redis:\n    url_env: TEST_REDIS_URL\n"
        )
        text += (
            f"cluster:\n  replica_id: {name}\n  heartbeat: {int(HEARTBEAT * 1000)}ms\n"
            f"  member_timeout: {int(MEMBER_TIMEOUT * 1000)}ms\n"
            "callbacks:\n  key_env: TEST_CALLBACK_KEY\n"
        )
        config = self.tmp / f"{name}.yaml"
        config.write_text(text)
        env = daemon_env()
        env.update(TEST_REDIS_URL=self.redis.url, TEST_CALLBACK_KEY=CALLBACK_KEY)
        replica = Replica(name, config, self.tmp / f"{name}.log", env)
        replica.port = port
        self.replicas.append(replica)
        return replica

    @property
    def names(self) -> list[str]:
        return [r.name for r in self.replicas]

    def owner(self, task_id: str, members: list[str] | None = None) -> str:
        ownership = Ownership("observer", members if members is not None else self.names)
        owner = ownership.owner_of(TaskKey(APP, task_id))
        assert owner is not None
        return owner

    def by_name(self, name: str) -> Replica:
        return next(r for r in self.replicas if r.name == name)

    async def status(self, replica: Replica, path: str) -> int:
        try:
            async with self.session.get(f"{replica.url}{path}") as r:
                return r.status
        except aiohttp.ClientError:
            return 0

    async def metrics(self, replica: Replica) -> str:
        async with self.session.get(f"{replica.url}/metrics") as r:
            assert r.status == 200
            return await r.text()

    async def until_all_see(self, count: int, live: list[Replica] | None = None) -> None:
        """Every live replica is ready and sees ``count`` replicas."""
        for replica in live if live is not None else self.replicas:

            async def sees(replica: Replica = replica) -> bool:
                assert replica.process is not None
                assert replica.process.poll() is None, replica.log.read_text()[-3000:]
                if await self.status(replica, "/-/ready") != 200:
                    return False
                text = await self.metrics(replica)
                return f"trtc_monitor_cluster_replicas {float(count)}" in text

            await wait_for_async(sees, timeout=30, what=f"{replica.name} to see {count}")

    async def register(self, replica: Replica, specs: list[dict[str, Any]]) -> int:
        """One task: the answer's status; several: 201 when every one was created."""
        body: Any = specs if len(specs) > 1 else specs[0]
        async with self.session.post(f"{replica.url}/api/v1/tasks", json=body, headers=AUTH) as r:
            answer = await r.json()
            if len(specs) == 1 or r.status != 200:
                return r.status
            return 201 if answer["created"] == len(specs) else 200

    async def task(self, replica: Replica, task_id: str) -> dict[str, Any]:
        async with self.session.get(
            f"{replica.url}/api/v1/tasks/{APP}/{task_id}", headers=AUTH
        ) as r:
            assert r.status == 200, await r.text()
            body: dict[str, Any] = await r.json()
            return body

    async def transitions(self, replica: Replica, task_id: str) -> list[dict[str, Any]]:
        async with self.session.get(
            f"{replica.url}/api/v1/tasks/{APP}/{task_id}/transitions", headers=AUTH
        ) as r:
            assert r.status == 200, await r.text()
            history: list[dict[str, Any]] = (await r.json())["transitions"]
            return history

    async def callback(self, replica: Replica, raw: bytes) -> int:
        headers = {"Content-Type": "application/json", "Sign": sign(CALLBACK_KEY, raw)}
        headers["SdkAppId"] = str(APP)
        async with self.session.post(
            f"{replica.url}/callbacks/trtc", data=raw, headers=headers
        ) as r:
            await r.read()
            return r.status

    def stop(self) -> None:
        for replica in self.replicas:
            replica.stop()


@asynccontextmanager
async def cluster(
    tmp: Path, *, appendonly: bool = False
) -> AsyncIterator[tuple[Cluster, SimulatorControl]]:
    with (
        running_redis(tmp / "redis", appendonly=appendonly) as redis,
        simulator_process(tmp) as sim_url,
    ):
        async with aiohttp.ClientSession() as session, SimulatorControl(sim_url) as control:

            async def up() -> bool:
                try:
                    await control.tasks()
                except (aiohttp.ClientError, OSError):
                    return False
                return True

            await wait_for_async(up, timeout=20, what="the simulator process")
            group = Cluster(tmp, redis, sim_url, session)
            try:
                yield group, control
            finally:
                group.stop()


def polls_by_task(arrivals: list[dict[str, Any]]) -> dict[str, list[float]]:
    out: dict[str, list[float]] = defaultdict(list)
    for a in arrivals:
        if a["action"] == DESCRIBE:
            out[a["task_id"]].append(a["mono"])
    return out


def owned_total(text: str) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("trtc_monitor_owned_tasks{")
    )


class TestWorkSplit:
    async def test_three_replicas_over_budget_share_it_and_never_poll_a_task_twice(
        self, tmp_path: Path
    ) -> None:
        async with cluster(tmp_path) as (group, control):
            guard = "    rate_guard: 10%\n"
            for name in ("r0", "r1", "r2"):
                replica = group.add(name)
                replica.config.write_text(
                    replica.config.read_text().replace(
                        f'    endpoint: "{group.sim_url}"\n',
                        f'    endpoint: "{group.sim_url}"\n{guard}',
                    )
                )
                replica.start()
            await group.until_all_see(3)
            specs = []
            for i in range(300):
                task_id = await control.add_task(APP, idle=600)
                specs.append({"sdk_app_id": APP, "task_id": task_id, "region": REGIONS[i % 5]})
            await control.reset_stats()
            assert await group.register(group.replicas[0], specs) == 201
            await asyncio.sleep(8.0)
            stats = await control.stats(window=1.0)
            arrivals = await control.arrivals(action=DESCRIBE)
            texts = [await group.metrics(r) for r in group.replicas]

        describe = stats["actions"][DESCRIBE]
        assert describe["arrivals"] > 40  # several seconds' worth, from the three of them
        assert describe["max_in_window"] <= 20
        assert not [c for c in describe["codes"] if c.startswith("RequestLimitExceeded")]
        # Membership was stable all along: no task was polled twice within half its interval.
        for task_id, times in polls_by_task(arrivals).items():
            times.sort()
            gaps = [b - a for a, b in itertools.pairwise(times)]
            assert all(gap >= 0.5 for gap in gaps), (task_id, gaps)
        # Each replica polls its share; together every live task once.
        owned = [owned_total(text) for text in texts]
        assert sum(owned) == 300
        assert all(n > 0 for n in owned)
        # The fleet series come from one replica; the per-task ones from each owner.
        fleet = [t for t in texts if "\ntrtc_recording_tasks{" in t]
        assert len(fleet) == 1
        per_task = sum(t.count("trtc_recording_task_info{") for t in texts)
        assert per_task == 300
        for text in texts:
            lint = subprocess.run(
                [require_tool("promtool"), "check", "metrics"],
                input=text,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert lint.returncode == 0, lint.stdout + lint.stderr
            assert 'trtc_monitor_replica_info{backend="redis"' in text
            assert "trtc_monitor_store_up 1.0" in text
        # The monitor's own alerts come from one replica: the fleet needs 300/s of 20/s.
        over = 'trtc_monitor_alerts_firing{alertname="RecordingMonitorOverBudget"} 1.0'
        assert sum(over in text for text in texts) == 1


class TestMonitorAlerts:
    async def test_the_leader_weighs_the_whole_fleet_against_the_shared_budget(
        self, tmp_path: Path
    ) -> None:
        async with cluster(tmp_path) as (group, control):
            for name in ("r0", "r1", "r2"):
                group.add(name).start()
            await group.until_all_see(3)
            # 12 tasks per replica at 1 s: each replica's share (12/s) fits the budget of
            # 20/s, the fleet's 36/s does not.
            share: Counter[str] = Counter()
            ids: list[str] = []
            i = 0
            while len(ids) < 36:
                task_id = f"ob-{i:03d}"
                i += 1
                owner = group.owner(task_id)
                if share[owner] < 12:
                    share[owner] += 1
                    ids.append(task_id)
            for task_id in ids:
                await control.add_task(APP, task_id, idle=600)
            specs = [{"sdk_app_id": APP, "task_id": t, "region": REGIONS[0]} for t in ids]
            assert await group.register(group.replicas[0], specs) == 201
            over = 'trtc_monitor_alerts_firing{alertname="RecordingMonitorOverBudget"} 1.0'

            async def fired() -> bool:
                texts = [await group.metrics(r) for r in group.replicas]
                return sum(over in text for text in texts) == 1

            await wait_for_async(fired, timeout=20, what="the over-budget alert on the leader")
            texts = [await group.metrics(r) for r in group.replicas]

        assert [owned_total(text) for text in texts] == [12.0, 12.0, 12.0]
        assert sum(over in text for text in texts) == 1


class TestTakeover:
    async def test_a_killed_replicas_tasks_are_polled_again_and_no_exit_alert_repeats(
        self, tmp_path: Path
    ) -> None:
        async with serving(Sink()) as sink, cluster(tmp_path) as (group, control):
            for name in ("r0", "r1", "r2"):
                group.add(name, alerts_yaml(webhook(sink.url))).start()
            await group.until_all_see(3)
            ids = [await control.add_task(APP, idle=0, exited=600) for _ in range(15)]
            specs = [{"sdk_app_id": APP, "task_id": t, "region": REGIONS[0]} for t in ids]
            assert await group.register(group.replicas[1], specs) == 201
            victim = group.by_name("r0")
            mine = [t for t in ids if group.owner(t) == "r0"]
            assert mine, "rendezvous hashing gave r0 none of 15 tasks"

            async def recording() -> bool:
                # Another replica learns of the registration through the change feed, within
                # a second: until then it may not know a task at all.
                for t in ids:
                    url = f"{group.replicas[2].url}/api/v1/tasks/{APP}/{t}"
                    async with group.session.get(url) as r:
                        if r.status == 404:
                            return False
                        assert r.status == 200, await r.text()
                        if (await r.json())["status"] != "InProgress":
                            return False
                return True

            await wait_for_async(recording, timeout=20, what="every task recording")
            # Exits the victim alerts on before it dies.
            before = mine[: max(1, len(mine) // 2)]
            for task_id in before:
                await control.exit_task(APP, task_id)

            async def alerted() -> bool:
                sent = {a["labels"]["task_id"] for a in notices(sink, TASK_EXITED)}
                return set(before) <= sent

            await wait_for_async(alerted, timeout=20, what="the victim's exit alerts")
            await control.reset_stats()
            killed_at = time.monotonic()
            killed_wall = time.time()
            victim.kill()
            survivors = [r for r in group.replicas if r is not victim]
            await group.until_all_see(2, survivors)
            # Exits after the takeover are alerted by the new owners.
            after = mine[len(before) :]
            for task_id in after:
                await control.exit_task(APP, task_id)

            async def all_alerted() -> bool:
                sent = {a["labels"]["task_id"] for a in notices(sink, TASK_EXITED)}
                return set(before) | set(after) <= sent

            await wait_for_async(all_alerted, timeout=20, what="exit alerts after takeover")
            await asyncio.sleep(3.0)  # room for a repeat to show
            arrivals = await control.arrivals(action=DESCRIBE)
            elapsed_since_kill = time.monotonic() - killed_at

        firing = Counter(
            a["labels"]["task_id"] for a in notices(sink, TASK_EXITED, status="firing")
        )
        assert set(firing) == set(before) | set(after)
        assert all(n == 1 for n in firing.values()), firing
        assert elapsed_since_kill > MEMBER_TIMEOUT + 1.0
        first_after: dict[str, float] = {}
        for arrival in arrivals:  # in arrival order; the simulator shares this machine's clock
            if arrival["wall"] > killed_wall + 0.1:  # not the killed replica's last requests
                first_after.setdefault(arrival["task_id"], arrival["wall"] - killed_wall)
        for task_id in mine:
            assert task_id in first_after, f"{task_id} of the killed replica was never polled"
        # Each polled again within member_timeout + one interval (1 s) of the kill, with 3 s of
        # room for a heartbeat's granularity and the takeover's reload on a loaded machine.
        late = {t: round(first_after[t], 2) for t in mine if first_after[t] > MEMBER_TIMEOUT + 4.0}
        assert not late, late


class TestChangesReachTheOwner:
    async def test_registered_on_one_and_stopped_on_another_polled_at_once_alerted_once(
        self, tmp_path: Path
    ) -> None:
        async with serving(Sink()) as sink, cluster(tmp_path) as (group, control):
            for name in ("r0", "r1", "r2"):
                group.add(name, alerts_yaml(webhook(sink.url))).start()
            await group.until_all_see(3)
            # A task owned by r2, registered on r0, its stop posted to r1.
            while True:
                task_id = await control.add_task(APP, idle=0, exited=600)
                if group.owner(task_id) == "r2":
                    break
            a, b, owner = group.by_name("r0"), group.by_name("r1"), group.by_name("r2")
            await control.reset_stats()
            assert (
                await group.register(
                    a, [{"sdk_app_id": APP, "task_id": task_id, "region": REGIONS[0]}]
                )
                == 201
            )

            async def polled() -> bool:
                return bool(polls_by_task(await control.arrivals(action=DESCRIBE)).get(task_id))

            await wait_for_async(polled, timeout=5, what="the owner to poll the new task")

            async def recording() -> bool:
                return bool((await group.task(b, task_id))["status"] == "InProgress")

            await wait_for_async(recording, timeout=10, what="the task recording, seen on r1")
            await control.exit_task(APP, task_id)
            assert await group.callback(b, stop_body(task_id)) == 200

            async def exited_everywhere() -> bool:
                states = [(await group.task(r, task_id))["status"] for r in (a, b, owner)]
                return all(s == "Exited" for s in states)

            await wait_for_async(exited_everywhere, timeout=10, what="Exited on every replica")

            async def alerted() -> bool:
                return bool(notices(sink, TASK_EXITED, task_id=task_id))

            await wait_for_async(alerted, timeout=15, what="the exit alert")

            async def listed_everywhere() -> bool:
                # Any replica lists the fleet's firing alerts, not only the ones it sent.
                for replica in (a, b, owner):
                    async with group.session.get(f"{replica.url}/api/v1/alerts") as r:
                        names = [
                            (x["alertname"], x["labels"].get("task_id"))
                            for x in (await r.json())["alerts"]
                        ]
                    if (TASK_EXITED, task_id) not in names:
                        return False
                    async with group.session.get(f"{replica.url}/") as page:
                        if TASK_EXITED not in await page.text():  # the status page too
                            return False
                return True

            await wait_for_async(listed_everywhere, timeout=15, what="the alert on every replica")
            history = await group.transitions(a, task_id)

        exits = [t for t in history if t["to"] == "Exited"]
        assert len(exits) == 1
        assert len(notices(sink, TASK_EXITED, task_id=task_id, status="firing")) == 1


class TestRedisOutage:
    async def test_replicas_refuse_writes_while_redis_is_down_and_lose_nothing(
        self, tmp_path: Path
    ) -> None:
        async with cluster(tmp_path, appendonly=True) as (group, control):
            for name in ("r0", "r1"):
                group.add(name).start()
            await group.until_all_see(2)
            ids = [await control.add_task(APP, idle=0.5, exited=600) for _ in range(10)]
            assert (
                await group.register(
                    group.replicas[0],
                    [{"sdk_app_id": APP, "task_id": t, "region": REGIONS[0]} for t in ids],
                )
                == 201
            )
            for task_id in ids[:4]:
                await control.exit_task(APP, task_id)

            async def moved() -> bool:
                states = [(await group.task(group.replicas[1], t))["status"] for t in ids]
                return states[:4] == ["Exited"] * 4 and "Pending" not in states

            await wait_for_async(moved, timeout=20, what="transitions recorded")
            seen = {t: await group.transitions(group.replicas[1], t) for t in ids}
            await asyncio.sleep(1.5)  # appendfsync everysec: what Redis acknowledged is on disk
            group.redis.kill()

            for replica in group.replicas:

                async def not_ready(replica: Replica = replica) -> bool:
                    return await group.status(replica, "/-/ready") == 503

                await wait_for_async(not_ready, timeout=10, what=f"{replica.name} not ready")
                text = await group.metrics(replica)
                assert "trtc_monitor_store_up 0.0" in text
                new = await control.add_task(APP)
                assert (
                    await group.register(
                        replica, [{"sdk_app_id": APP, "task_id": new, "region": REGIONS[0]}]
                    )
                    == 503
                )
                assert await group.callback(replica, stop_body(ids[5])) == 503

            await control.reset_stats()
            group.redis.start()  # the same port, the same AOF
            await group.until_all_see(2)

            async def polling_again() -> bool:
                return bool(await control.arrivals(action=DESCRIBE))

            await wait_for_async(polling_again, timeout=15, what="polling to resume")
            after = {t: await group.transitions(group.replicas[0], t) for t in ids}

        for task_id, history in seen.items():
            kept = {(t["seq"], t["from"], t["to"]) for t in after[task_id]}
            assert {(t["seq"], t["from"], t["to"]) for t in history} <= kept


class TestDemo:
    def test_the_replica_demo_splits_the_work_and_narrates_the_takeover(
        self, tmp_path: Path
    ) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "monitor", "demo", "--replicas", "3"],
            capture_output=True,
            text=True,
            timeout=150,
            check=False,
            env={**daemon_env(), "TMPDIR": str(tmp_path)},
        )
        assert result.returncode == 0, result.stdout + result.stderr
        out = result.stdout
        assert "3 replicas joined" in out
        assert "kill -9 replica-1" in out
        assert "takeover after" in out
        assert "recordings were polled again" in out
        assert "replica-1 is back" in out

    def test_without_redis_server_on_the_path_it_says_so_and_exits_2(self, tmp_path: Path) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "monitor", "demo", "--replicas", "3"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={**daemon_env(), "PATH": str(tmp_path)},
        )
        assert result.returncode == 2
        assert "redis-server" in result.stderr
        assert "Traceback" not in result.stderr
