"""Chat-robot receivers against local stand-ins of the platforms, over real HTTP on loopback.

Where a test needs a platform's per-minute limit, the stand-in's window and the receiver's
``rate_window`` are scaled down together (a minute becomes two seconds), so the test runs in
seconds while the receiver must still never go past the stand-in's limit.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from monitor.alerts import AlertEngine, RetryPolicy
from monitor.alerts.payloads import Notice
from monitor.alerts.receivers import DeliveryContext, ReceiverWorker
from monitor.alerts.robots.worker import RobotWorker
from monitor.alerts.worker_factory import build_worker
from monitor.config import AlertsConfig, RobotSecrets
from monitor.metrics import MonitorMetrics
from monitor.models import Source, Status, Task, TaskKey, Transition
from monitor.secrets import Secret
from monitor.simulator import Life, Simulator
from monitor.status_rules import apply_removal
from monitor.store import SqliteStore
from tests.conftest import DaemonFactory, daemon_config_text
from tests.robot_standins import DINGTALK_TOKEN, WECOM_KEY, StandIn, serving
from tests.support import wait_for_async
from tests.test_robots import exit_notice

APP = 1400000001

FAST = RetryPolicy(attempts=3, base=0.01, cap=0.02)
# TRTC TaskIds are long opaque strings; long ones make realistic, large messages.
LONG_ID = ("-gd8dRoNXbsJGz8SJeXyf3B8R4EtVvcNv8kiYRzzuvtX8bq4KnHk0aUFNYIrsBHXmfdA" * 4)[:250]

Results = list[tuple[list[Notice], list[Notice]]]


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


class Bench:
    """Workers built from configuration entries, their results and metrics."""

    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session
        self.metrics = MonitorMetrics()
        self.results: Results = []
        self.workers: list[ReceiverWorker] = []

    async def on_result(
        self, worker: ReceiverWorker, delivered: list[Notice], failed: list[Notice]
    ) -> None:
        self.results.append((delivered, failed))

    def worker(
        self,
        standin: StandIn,
        secret: str | None = None,
        throttle: RetryPolicy | None = None,
        **entry: Any,
    ) -> RobotWorker:
        receiver = {"type": standin.platform, "name": "robot", "url_env": "X", **entry}
        config = AlertsConfig.model_validate({"receivers": [receiver]}).receivers[0]
        robot = RobotSecrets(
            Secret(standin.robot_url()), Secret(secret) if secret is not None else None
        )
        context = DeliveryContext(
            session=self.session,
            notifications=self.metrics.notifications,
            clock=time.time,
            on_result=self.on_result,
            retry=FAST,
        )
        worker = build_worker(config, context, robot=robot)
        assert isinstance(worker, RobotWorker)
        if throttle is not None:
            worker.throttle = throttle
        worker.start()
        self.workers.append(worker)
        return worker

    def delivered(self) -> list[str]:
        return [n.fingerprint for delivered, _ in self.results for n in delivered]

    def failed(self) -> list[str]:
        return [n.fingerprint for _, failed in self.results for n in failed]

    def count(self, outcome: str) -> float:
        value = self.metrics.registry.get_sample_value(
            "trtc_monitor_notifications_total", {"receiver": "robot", "outcome": outcome}
        )
        return value or 0.0

    async def close(self) -> None:
        for worker in self.workers:
            await worker.stop(grace=0.0)


@pytest.fixture
async def bench(session: aiohttp.ClientSession) -> AsyncIterator[Bench]:
    b = Bench(session)
    try:
        yield b
    finally:
        await b.close()


async def settle(worker: ReceiverWorker, timeout: float = 30.0) -> None:
    await asyncio.wait_for(worker.drain(), timeout)


class TestSigning:
    @pytest.mark.parametrize("platform", ["dingtalk", "feishu"])
    async def test_a_signed_robot_is_accepted(self, bench: Bench, platform: str) -> None:
        async with serving(StandIn(platform, secret="SEC-right-secret")) as standin:
            worker = bench.worker(standin, secret="SEC-right-secret", group_wait="0s")
            worker.enqueue(exit_notice())
            await settle(worker)
        assert standin.refused == []
        assert len(standin.accepted) == 1
        assert bench.delivered() == ["fp-t-1"]
        assert bench.count("success") == 1

    @pytest.mark.parametrize(("platform", "code"), [("dingtalk", "310000"), ("feishu", "19021")])
    async def test_a_wrong_secret_is_refused_and_counted_as_a_failed_delivery(
        self, bench: Bench, platform: str, code: str
    ) -> None:
        async with serving(StandIn(platform, secret="SEC-right-secret")) as standin:
            worker = bench.worker(standin, secret="SEC-wrong-secret", group_wait="0s")
            with capture_logs() as logs:
                worker.enqueue(exit_notice())
                await settle(worker)
        # A bad signature does not get better by asking again: one request, then reported.
        assert standin.refused_codes() == [code]
        assert standin.accepted == []
        assert (bench.delivered(), bench.failed()) == ([], ["fp-t-1"])
        assert (bench.count("failure"), bench.count("success")) == (1, 0)
        [failed] = [e for e in logs if e["event"] == "notification_failed"]
        assert failed["code"] == code
        shown = repr(logs)
        for secret in ("SEC-wrong-secret", DINGTALK_TOKEN, "/open-apis/bot/v2/hook/"):
            assert secret not in shown

    async def test_an_unsigned_request_to_a_signed_robot_is_refused(self, bench: Bench) -> None:
        async with serving(StandIn("dingtalk", secret="SEC-right-secret")) as standin:
            worker = bench.worker(standin, group_wait="0s")
            worker.enqueue(exit_notice())
            await settle(worker)
        assert standin.refused_codes() == ["310000"]
        assert bench.failed() == ["fp-t-1"]


class TestStandIns:
    @pytest.mark.parametrize(
        ("platform", "body", "answer"),
        [
            (
                "wecom",
                {"msgtype": "markdown", "markdown": {"content": "字" * 1366}},  # 4,098 bytes
                {"errcode": 40058, "errmsg": "markdown.content exceed max length 4096"},
            ),
            (
                "dingtalk",
                {"msgtype": "markdown", "markdown": {"title": "t", "text": "x" * 20_000}},
                {"errcode": 460101, "errmsg": "message too long"},
            ),
            (
                "feishu",
                {"msg_type": "interactive", "card": {"x": "x" * 20_480}},
                {"code": 19036, "data": {}, "msg": "request body too large"},
            ),
        ],
    )
    async def test_an_oversized_message_is_refused_with_the_platforms_code(
        self, session: aiohttp.ClientSession, platform: str, body: Any, answer: Any
    ) -> None:
        async with serving(StandIn(platform)) as standin:
            response = await session.post(standin.robot_url(), json=body)
            assert await response.json() == answer
            response.release()
        assert standin.accepted == []

    async def test_slack_refuses_more_than_fifty_blocks(
        self, session: aiohttp.ClientSession
    ) -> None:
        section = {"type": "section", "text": {"type": "plain_text", "text": "x"}}
        async with serving(StandIn("slack")) as standin:
            body = {"text": "t", "blocks": [section] * 51}
            async with session.post(standin.robot_url(), json=body) as response:
                assert (response.status, await response.text()) == (400, "invalid_blocks")
            body = {"text": "t", "blocks": [section] * 50}
            async with session.post(standin.robot_url(), json=body) as response:
                assert (response.status, await response.text()) == (200, "ok")


class TestPacing:
    async def test_the_wecom_standin_refuses_the_21st_message_within_its_window(
        self, session: aiohttp.ClientSession
    ) -> None:
        # The stand-in is strict, so the next test means something.
        body = {"msgtype": "markdown", "markdown": {"content": "x"}}
        async with serving(StandIn("wecom", limit=20, window=60.0)) as standin:
            for _ in range(21):
                async with session.post(standin.robot_url(), json=body) as answer:
                    last = await answer.json()
        assert len(standin.accepted) == 20
        assert last == {"errcode": 45009, "errmsg": "api freq out of limit"}

    async def test_a_hundred_alerts_in_one_second_reach_a_wecom_robot_grouped_and_unrefused(
        self, bench: Bench
    ) -> None:
        # 20 a minute, scaled: 20 per 2 s at the stand-in and in the receiver's configuration.
        async with serving(StandIn("wecom", limit=20, window=2.0)) as standin:
            worker = bench.worker(
                standin, group_wait="300ms", rate_limit=20, rate_window="2s", queue_size=1000
            )
            notices = [exit_notice(f"{LONG_ID}-{i:03d}", room=f"会议室-{i}") for i in range(100)]
            for start in range(0, 100, 10):  # ten every 100 ms: a hundred within one second
                for n in notices[start : start + 10]:
                    assert worker.enqueue(n)
                await asyncio.sleep(0.1)
            await settle(worker, timeout=60)
        # More messages than the limit allows in one window: the pacing was needed.
        assert 20 < len(standin.accepted) < 100
        assert standin.refused == []
        assert sorted(bench.delivered()) == sorted(n.fingerprint for n in notices)
        assert bench.failed() == []
        contents = [r.body["markdown"]["content"] for r in standin.accepted]
        assert max(len(c.encode()) for c in contents) <= 4096
        for n in notices:  # every alert is in exactly one message
            assert sum(n.task.task_id in c for c in contents if n.task) == 1
        assert bench.count("success") == len(standin.accepted)
        assert bench.count("throttled") == 0

    async def test_feishu_is_kept_under_five_a_second_by_default(self, bench: Bench) -> None:
        async with serving(
            StandIn("feishu", limit=100, window=60.0, burst_limit=5, burst_window=1.0)
        ) as standin:
            worker = bench.worker(standin, group_wait="200ms", template="$description")
            # Each alert alone fills most of a 20 KB card: one message each.
            notices = [
                Notice(
                    f"fp-{i}",
                    "RecordingTaskExited",
                    {"alertname": "RecordingTaskExited"},
                    {"description": f"{i} " + "x" * 12_000},
                    True,
                    1_700_000_000.0,
                )
                for i in range(12)
            ]
            for n in notices:
                worker.enqueue(n)
            await settle(worker)
        assert standin.refused == []
        assert len(standin.accepted) == 12
        assert sorted(bench.delivered()) == sorted(n.fingerprint for n in notices)


class TestBackOff:
    async def test_dingtalk_answering_130101_for_a_while_gets_everything_afterwards(
        self, bench: Bench
    ) -> None:
        async with serving(StandIn("dingtalk", limit=20, window=2.0)) as standin:
            standin.too_fast_until = time.monotonic() + 1.5
            worker = bench.worker(
                standin,
                throttle=RetryPolicy(attempts=1, base=0.2, cap=0.4),
                group_wait="0s",
                rate_limit=20,
                rate_window="2s",
            )
            notices = [exit_notice(f"t-{i}") for i in range(30)]
            with capture_logs() as logs:
                for n in notices:
                    worker.enqueue(n)
                    await asyncio.sleep(0.02)
                await settle(worker)
        codes = standin.refused_codes()
        assert codes
        assert set(codes) == {"130101"}
        assert sorted(bench.delivered()) == sorted(n.fingerprint for n in notices)
        assert bench.failed() == []
        # Backed off: about one request per pause while throttled, not a hammering.
        assert len(codes) <= 1.5 / 0.2 + 2
        assert bench.count("throttled") == len(codes)
        assert bench.count("failure") == 0
        assert [e["event"] for e in logs].count("notification_throttled") >= 1

    async def test_slack_429_waits_the_retry_after_it_names(self, bench: Bench) -> None:
        async with serving(StandIn("slack", limit=50, window=1.0, retry_after=1)) as standin:
            standin.too_fast_until = time.monotonic() + 1.5
            worker = bench.worker(standin, group_wait="0s")
            worker.enqueue(exit_notice())
            await settle(worker)
        refused = [at for code, at in standin.refused if code == "429"]
        assert len(refused) == 2
        assert refused[1] - refused[0] >= 0.95  # Retry-After: 1
        assert standin.accepted[0].at - refused[1] >= 0.95
        assert bench.delivered() == ["fp-t-1"]

    async def test_a_throttled_robot_stops_promptly(self, bench: Bench) -> None:
        async with serving(StandIn("wecom")) as standin:
            standin.too_fast_until = time.monotonic() + 3600
            worker = bench.worker(
                standin, throttle=RetryPolicy(attempts=1, base=600.0), group_wait="0s"
            )
            worker.enqueue(exit_notice())
            while not standin.refused:
                await asyncio.sleep(0.01)
            await asyncio.wait_for(worker.stop(grace=0.1), timeout=5)
        assert standin.refused_codes() == ["45009"]
        assert bench.delivered() == []

    async def test_a_group_still_gathering_goes_out_when_the_robot_stops(
        self, bench: Bench
    ) -> None:
        async with serving(StandIn("slack")) as standin:
            worker = bench.worker(standin, group_wait="1h")
            worker.enqueue(exit_notice())
            await asyncio.sleep(0.05)
            assert standin.accepted == []  # still gathering
            await asyncio.wait_for(worker.stop(grace=5.0), timeout=10)
        assert len(standin.accepted) == 1
        assert bench.delivered() == ["fp-t-1"]

    async def test_enqueueing_never_waits_for_a_throttled_robot(self, bench: Bench) -> None:
        async with serving(StandIn("wecom")) as standin:
            standin.too_fast_until = time.monotonic() + 3600
            worker = bench.worker(
                standin, throttle=RetryPolicy(attempts=1, base=600.0), group_wait="0s", queue_size=5
            )
            worker.enqueue(exit_notice("first"))
            while not standin.refused:
                await asyncio.sleep(0.01)
            # enqueue is synchronous: a full queue drops its oldest, counted, and returns.
            assert all(worker.enqueue(exit_notice(f"t-{i}")) for i in range(8))
        assert worker.queued() == 5
        assert bench.count("dropped") == 3


class TestThroughTheEngine:
    async def test_resolved_is_sent_once_and_marked_and_hostile_text_renders_safely(
        self, tmp_path: Path, session: aiohttp.ClientSession
    ) -> None:
        now = [1_700_000_000.0]
        config = AlertsConfig.model_validate(
            {"receivers": [{"type": "wecom", "name": "team", "url_env": "X", "group_wait": 0}]}
        )
        hostile = "会议室 *东京* [x](http://evil.example) <at>"
        task = Task(
            sdk_app_id=1400000001,
            task_id="t-1",
            region="ap-guangzhou",
            account="default",
            labels={"room": hostile},
            status=Status.IN_PROGRESS,
            registered_at=now[0],
            status_since=now[0],
            last_success_at=now[0],
        )
        async with (
            serving(StandIn("wecom")) as standin,
            SqliteStore(tmp_path / "monitor.db") as store,
        ):
            engine = AlertEngine(
                config,
                store,
                MonitorMetrics(),
                interval_of=lambda task: 15.0,
                clock=lambda: now[0],
                session=session,
                external_url="https://mon.example",
                robot_secrets={"team": RobotSecrets(Secret(standin.robot_url()))},
                retry=FAST,
            )
            await engine.start()
            try:
                transition = Transition(
                    task.sdk_app_id,
                    task.task_id,
                    task.status,
                    Status.EXITED,
                    now[0],
                    Source.POLL,
                    request_id="req-exit-1",
                )
                task.status, task.status_since = Status.EXITED, now[0]
                stored = await store.record_transition(task, transition)
                await engine.evaluate_task(task, stored)
                await asyncio.wait_for(engine.drain(), 15)
                now[0] += 10
                removal = apply_removal(task, now[0])
                assert removal is not None
                await engine.evaluate_task(task, await store.record_transition(task, removal))
                await asyncio.wait_for(engine.drain(), 15)
                for _ in range(3):  # later sweeps owe nothing more
                    now[0] += 60
                    await engine.sweep([task])
                    await asyncio.wait_for(engine.drain(), 15)
            finally:
                await engine.stop()
        assert standin.refused == []
        fired, resolved = (r.body["markdown"]["content"] for r in standin.accepted)
        assert "FIRING" in fired
        assert "RESOLVED" not in fired
        assert "InProgress → Exited" in fired
        assert "req-exit-1" in fired
        assert "[Open in monitor](https://mon.example/api/v1/tasks/1400000001/t-1)" in fired
        assert "RESOLVED" in resolved.split("\n")[0]
        assert "FIRING" not in resolved
        for content in (fired, resolved):
            assert "会议室 \\*东京\\* \\[x\\](http://evil.example) &lt;at&gt;" in content
            assert "[x](" not in content
            assert "<at>" not in content
        assert TaskKey(1400000001, "t-1") == task.key
        assert WECOM_KEY not in repr(engine)

    async def test_reload_keeps_a_robot_unless_its_url_or_secret_changed(
        self, tmp_path: Path, session: aiohttp.ClientSession
    ) -> None:
        config = AlertsConfig.model_validate(
            {"receivers": [{"type": "dingtalk", "name": "dt", "url_env": "X"}]}
        )
        first = {"dt": RobotSecrets(Secret("http://127.0.0.1:9/robot/send?access_token=a"))}
        async with SqliteStore(tmp_path / "monitor.db") as store:
            engine = AlertEngine(
                config,
                store,
                MonitorMetrics(),
                interval_of=lambda task: 15.0,
                session=session,
                robot_secrets=first,
            )
            await engine.start()
            try:
                worker = engine.receivers["dt"]
                engine.configure(config, robot_secrets=dict(first), external_url="https://m")
                assert engine.receivers["dt"] is worker
                assert worker.external_url == "https://m"
                signed = {"dt": RobotSecrets(first["dt"].url, Secret("SEC-new"))}
                engine.configure(config, robot_secrets=signed)
                assert engine.receivers["dt"] is not worker
                with capture_logs() as logs:
                    engine.configure(config, robot_secrets={})
                assert "dt" not in engine.receivers
                assert [e["event"] for e in logs] == ["receiver_not_started"]
            finally:
                await engine.stop()


class TestThroughTheDaemon:
    async def test_an_exit_reaches_a_signed_dingtalk_robot_once_and_its_resolve_once(
        self,
        simulator: Simulator,
        make_daemon: DaemonFactory,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
    ) -> None:
        async with serving(StandIn("dingtalk", secret="SEC-right-secret")) as standin:
            monkeypatch.setenv("TEST_ROBOT_URL", standin.robot_url())
            monkeypatch.setenv("TEST_ROBOT_SECRET", "SEC-right-secret")
            text = daemon_config_text(simulator.url, tmp_path / "m.db").replace(
                "server:\n", "server:\n  external_url: http://monitor.example:9877\n", 1
            )
            running = await make_daemon(
                text=text + "alerts:\n  receivers:\n"
                "    - {type: dingtalk, name: ops, url_env: TEST_ROBOT_URL,"
                " secret_env: TEST_ROBOT_SECRET, group_wait: 0s}\n",
            )
            task_id = simulator.add_task(APP, life=Life(idle=0.0, in_progress=None, exited=30))
            answer = await running.register(APP, task_id, "ap-guangzhou", labels={"room": "r*1"})
            assert answer.status == 201
            key = TaskKey(APP, task_id)

            async def recording() -> bool:
                task = running.daemon.registry.get(key)
                return task is not None and task.status is Status.IN_PROGRESS

            await wait_for_async(recording, timeout=15, what="the task recording")
            assert simulator.exit_task(APP, task_id, leave_code=3)

            async def told() -> bool:
                return len(standin.accepted) >= 1

            await wait_for_async(told, timeout=15, what="the robot message")
            [fired] = standin.accepted
            text = json.dumps(fired.body, ensure_ascii=False)
            assert "RecordingTaskExited" in text
            assert task_id in text
            assert "http://monitor.example:9877" in text
            async with running.session.delete(
                f"{running.url}/api/v1/tasks/{APP}/{task_id}", headers=running.auth()
            ) as r:
                assert r.status == 200

            async def resolved() -> bool:
                return len(standin.accepted) >= 2

            await wait_for_async(resolved, timeout=15, what="the resolved message")
            for _ in range(3):
                await running.daemon.sweep_alerts()
            await running.daemon.alerts.drain()
            assert len(standin.accepted) == 2
            assert "RESOLVED" in json.dumps(standin.accepted[1].body, ensure_ascii=False).upper()
            assert standin.refused == []
