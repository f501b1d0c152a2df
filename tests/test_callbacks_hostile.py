"""Hostile but signed callbacks against a running daemon: impossible times, one captured body
sent under many SdkAppId headers, replays inside max_age, per-application keys. Afterwards
every read path answers and nothing fires that should not."""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from monitor.events import EventBus, TaskObserved
from monitor.http.callbacks import RECEIVER
from monitor.models import Source, Status, Task, TaskKey
from monitor.simulator import Life, Simulator
from tests.callbacks_support import APP, EXTRA, KEY, body, callback_counts, post
from tests.conftest import DaemonFactory, RunningDaemon, daemon_config_text
from tests.redis_server import RedisServer

INT64_MAX = 9223372036854775807
LIVE = Life(idle=0.0, in_progress=None, exited=30)  # recording until the test ends


@pytest.fixture
async def running(
    simulator: Simulator, make_daemon: DaemonFactory, monkeypatch: pytest.MonkeyPatch
) -> RunningDaemon:
    monkeypatch.setenv("TEST_CALLBACK_KEY", KEY)
    return await make_daemon(simulator.url, EXTRA)


def with_times(raw: bytes, **times: Any) -> bytes:
    """``raw`` with some of its times replaced (``CallbackTs`` at the top, the rest in
    ``EventInfo``), serialised as TRTC does."""
    data = json.loads(raw)
    for name, value in times.items():
        (data if name == "CallbackTs" else data["EventInfo"])[name] = value
    return json.dumps(data).encode()


async def read_everything(running: RunningDaemon) -> None:
    """Every read path a person or Prometheus uses answers, none with a 5xx."""
    paths = [
        "/api/v1/tasks",
        "/api/v1/tasks?status=Removed",
        "/api/v1/tasks?limit=1&offset=1",
        "/api/v1/alerts",
        f"/api/v1/tasks/{APP}/t-known",
        f"/api/v1/tasks/{APP}/t-known/transitions",
        "/",
        f"/tasks/{APP}/t-known",
        "/metrics",
    ]
    for path in paths:
        async with running.session.get(f"{running.url}{path}") as r:
            await r.read()
            assert r.status < 500, (path, r.status)


def firing_names(running: RunningDaemon) -> list[tuple[str, Any]]:
    return [(r.alertname, r.task) for r in running.daemon.fleet_alerts.firing()]


class TestImpossibleTimes:
    @pytest.mark.parametrize(
        ("event_type", "times"),
        [
            (308, {"EventMsTs": INT64_MAX}),
            (302, {"EventMsTs": 9999999999999}),
            (302, {"EventTs": 99999999999}),
            (301, {"CallbackTs": 9999999999999}),
            (310, {"CallbackTs": INT64_MAX}),
        ],
        ids=["308-int64", "302-ms-2286", "302-s-5138", "301-callback-2286", "310-int64"],
    )
    async def test_a_far_future_time_is_refused_and_changes_nothing(
        self,
        running: RunningDaemon,
        simulator: Simulator,
        event_type: int,
        times: dict[str, int],
    ) -> None:
        simulator.add_task(APP, "t-known", life=LIVE)
        assert (await running.register(APP, "t-known", interval="60s")).status == 201
        before = running.daemon.registry.get(TaskKey(APP, "t-known"))
        assert before is not None
        raw = with_times(body(event_type, "t-known", {"LeaveCode": 4, "Status": 0}), **times)
        with capture_logs() as logs:
            status, answer = await post(running, raw)
        assert status == 400, answer
        assert answer["error"]["code"] == "bad_request"
        counts = await callback_counts(running)
        assert counts[(str(event_type), "invalid")] == 1
        assert not any(outcome == "accepted" for _, outcome in counts)
        after = running.daemon.registry.get(TaskKey(APP, "t-known"))
        assert after is not None
        assert (after.upload, after.extra) == (before.upload, before.extra)
        assert after.status is not Status.EXITED
        history = await running.daemon.tracker.transitions(TaskKey(APP, "t-known"))
        assert [t for t in history if t.source is Source.CALLBACK] == []
        [line] = [e for e in logs if e["event"] == "recording_callback_future"]
        assert line["field"].split(".")[-1] in times
        assert KEY not in repr(logs)
        # An unknown task is not registered by it either.
        raw = with_times(body(event_type, "t-new", {"LeaveCode": 4, "Status": 0}), **times)
        assert (await post(running, raw))[0] == 400
        assert running.daemon.registry.get(TaskKey(APP, "t-new")) is None
        await read_everything(running)
        await running.daemon.sweep_alerts()
        assert firing_names(running) == []

    async def test_a_file_time_in_the_future_is_refused_but_a_long_recording_is_not(
        self, running: RunningDaemon
    ) -> None:
        files = [{"FileName": "a.mp4", "StartTimeStamp": INT64_MAX, "EndTimeStamp": 1}]
        raw = body(310, "t-file", {"Status": 0, "FileList": files})
        assert (await post(running, raw))[0] == 400
        assert running.daemon.registry.get(TaskKey(APP, "t-file")) is None
        # A six-hour recording's MP4: its start is long past, which is fine.
        start = int((time.time() - 6 * 3600) * 1000)
        files = [{"FileName": "a.mp4", "StartTimeStamp": start, "EndTimeStamp": start + 1}]
        assert (await post(running, body(310, "t-file", {"Status": 0, "FileList": files})))[
            0
        ] == 200
        assert running.daemon.registry.get(TaskKey(APP, "t-file")) is not None

    async def test_an_old_event_time_is_stale_and_a_small_skew_is_taken(
        self, running: RunningDaemon
    ) -> None:
        now = time.time()
        old = body(302, "t-old", {"LeaveCode": 4}, at=now - 700, sent=now)
        status, answer = await post(running, old)
        assert (status, answer["error"]["code"]) == (403, "stale_callback")
        assert (await callback_counts(running))[("302", "stale")] == 1
        ahead = body(301, "t-ahead", {"Status": 0}, at=now + 120, sent=now + 120)
        assert (await post(running, ahead))[0] == 200
        assert running.daemon.registry.get(TaskKey(APP, "t-ahead")) is not None


class TestOneBodyManyHeaders:
    async def test_200_sdk_app_id_swaps_of_one_signed_body_register_one_task(
        self, running: RunningDaemon, simulator: Simulator
    ) -> None:
        simulator.add_task(APP, "t-swap", life=LIVE)
        raw = body(301, "t-swap", {"Status": 0})  # the body names no SdkAppId: the header does
        assert "SdkAppId" not in json.loads(raw)
        assert await post(running, raw, app=APP) == (200, {"status": "ok"})
        with capture_logs() as logs:
            statuses = [(await post(running, raw, app=APP + i))[0] for i in range(1, 200)]
        assert statuses == [403] * 199
        # Logged, but not once per swap: one line a minute with the count.
        [line] = [e for e in logs if e["event"] == "recording_callback_mismatch"]
        assert line["refused"] == 1
        assert KEY not in repr(logs)
        assert [t.key for t in running.daemon.registry.tasks()] == [TaskKey(APP, "t-swap")]
        counts = await callback_counts(running)
        assert counts[("301", "accepted")] == 1
        assert counts[("301", "mismatch")] == 199
        # The genuine retry (same header) is still a harmless duplicate.
        assert await post(running, raw, app=APP) == (200, {"status": "ok"})
        assert (await callback_counts(running))[("301", "duplicate")] == 1
        swapped = running.daemon.registry.get(TaskKey(APP, "t-swap"))
        assert swapped is not None
        assert swapped.status is not Status.EXITED
        history = await running.daemon.tracker.transitions(TaskKey(APP, "t-swap"))
        assert [t for t in history if t.source is Source.CALLBACK] == []
        await read_everything(running)
        await running.daemon.sweep_alerts()
        assert firing_names(running) == []


class TestReplays:
    async def test_a_replay_inside_max_age_but_minutes_later_is_a_duplicate(
        self, running: RunningDaemon
    ) -> None:
        from monitor.callbacks.dedupe import DeliveryCache, LocalDeliveries

        receiver = running.runner.app[RECEIVER]
        mono = [1000.0]
        wall = [time.time()]
        receiver.deliveries = LocalDeliveries(DeliveryCache(clock=lambda: mono[0]))
        receiver.context = dataclasses.replace(receiver.context, clock=lambda: wall[0])
        raw = body(302, "t-replay", {"LeaveCode": 4}, at=wall[0])
        assert (await post(running, raw))[0] == 200
        for step in (301.0, 200.0):  # 301 s, then 501 s after the first: inside max_age
            mono[0] += step
            wall[0] += step
            assert await post(running, raw) == (200, {"status": "ok"})
        history = await running.daemon.tracker.transitions(TaskKey(APP, "t-replay"))
        assert len([t for t in history if t.source is Source.CALLBACK]) == 1
        counts = await callback_counts(running)
        assert (counts[("302", "accepted")], counts[("302", "duplicate")]) == (1, 2)
        # Past max_age it is refused as stale, never applied again.
        mono[0] += 100.0
        wall[0] += 100.0
        assert (await post(running, raw))[0] == 403
        history = await running.daemon.tracker.transitions(TaskKey(APP, "t-replay"))
        assert len([t for t in history if t.source is Source.CALLBACK]) == 1


APP_B = APP + 1
KEY_B = "cbKeyB0123456789abcdef"
APPS = f"""
callbacks:
  key_env: TEST_CALLBACK_KEY
  auto_register: true
  apps:
    {APP}: {{}}
    {APP_B}: {{key_env: TEST_CALLBACK_KEY_B}}
"""


class TestPerApplicationKeys:
    @pytest.fixture
    async def apps(
        self, simulator: Simulator, make_daemon: DaemonFactory, monkeypatch: pytest.MonkeyPatch
    ) -> RunningDaemon:
        monkeypatch.setenv("TEST_CALLBACK_KEY", KEY)
        monkeypatch.setenv("TEST_CALLBACK_KEY_B", KEY_B)
        return await make_daemon(simulator.url, APPS)

    async def test_each_application_is_checked_with_its_own_key_and_others_are_refused(
        self, apps: RunningDaemon
    ) -> None:
        raw = body(301, "t-a", {"Status": 0})
        assert (await post(apps, raw, key=KEY_B, app=APP))[0] == 401  # B's key, A's header
        assert (await post(apps, raw, key=KEY, app=APP))[0] == 200
        raw_b = body(301, "t-b", {"Status": 0})
        assert (await post(apps, raw_b, key=KEY, app=APP_B))[0] == 401
        assert (await post(apps, raw_b, key=KEY_B, app=APP_B))[0] == 200
        # Without a header, the key that signs the body says which application it is.
        raw_c = body(301, "t-c", {"Status": 0})
        assert (await post(apps, raw_c, key=KEY_B, app=None))[0] == 200
        # An application not listed: 403 whatever the key, never registered.
        for key in (KEY, KEY_B):
            status, answer = await post(apps, body(301, "t-x", {"Status": 0}), key=key, app=7)
            assert status == 403, answer
        keys = {t.key for t in apps.daemon.registry.tasks()}
        assert keys == {TaskKey(APP, "t-a"), TaskKey(APP_B, "t-b"), TaskKey(APP_B, "t-c")}
        assert (await callback_counts(apps))[("none", "unauthorized")] == 4

    async def test_a_reload_takes_a_changed_application_key(
        self,
        apps: RunningDaemon,
        simulator: Simulator,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
    ) -> None:
        config = tmp_path / "monitor.yaml"
        config.write_text(daemon_config_text(simulator.url, tmp_path / "monitor.db", APPS))
        apps.daemon.config_path = config
        monkeypatch.setenv("TEST_CALLBACK_KEY_B", "cbKeyBnew0123456789")
        assert (await apps.daemon.reload()).ok
        raw = body(301, "t-new-key", {"Status": 0})
        assert (await post(apps, raw, key=KEY_B, app=APP_B))[0] == 401
        assert (await post(apps, raw, key="cbKeyBnew0123456789", app=APP_B))[0] == 200


class TestEventBus:
    async def test_a_failing_subscriber_is_logged_by_name_and_the_others_still_hear(
        self,
    ) -> None:
        bus = EventBus()
        heard: list[str] = []

        def broken(event: TaskObserved) -> None:
            raise RuntimeError("boom")

        async def listener(event: TaskObserved) -> None:
            heard.append(event.task.task_id)

        bus.subscribe(TaskObserved, broken)
        bus.subscribe(TaskObserved, listener)
        with capture_logs() as logs:
            await bus.publish(TaskObserved(Task(APP, "t-bus", "ap-guangzhou", "default")))
        assert heard == ["t-bus"]
        [line] = [e for e in logs if e["event"] == "event_handler_failed"]
        assert "broken" in line["subscriber"]
        assert line["event_kind"] == "TaskObserved"


def replica_config(simulator: Simulator, tmp_path: Path, name: str) -> str:
    text = daemon_config_text(simulator.url, tmp_path / f"{name}.db", EXTRA)
    text = text.replace(
        "storage:\n", "storage:\n  backend: redis\n  redis:\n    url_env: TEST_REDIS_URL\n"
    )
    return text + f"cluster:\n  replica_id: {name}\n"


class TestReplicas:
    async def test_replicas_on_one_redis_share_what_they_have_seen(
        self,
        redis_server: RedisServer,  # before make_daemon: stopped after the daemons are
        simulator: Simulator,
        make_daemon: DaemonFactory,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
    ) -> None:
        monkeypatch.setenv("TEST_REDIS_URL", redis_server.url)
        monkeypatch.setenv("TEST_CALLBACK_KEY", KEY)
        a = await make_daemon(text=replica_config(simulator, tmp_path, "replica-a"))
        b = await make_daemon(text=replica_config(simulator, tmp_path, "replica-b"))
        simulator.add_task(APP, "t-ha", life=LIVE)
        raw = body(301, "t-ha", {"Status": 0})
        assert await post(a, raw) == (200, {"status": "ok"})
        # The retry reaches the other replica: a duplicate there.
        assert await post(b, raw) == (200, {"status": "ok"})
        assert (await callback_counts(b))[("301", "duplicate")] == 1
        # Header swaps sent to either replica are refused.
        for running in (a, b):
            for app in (APP + 1, APP + 2):
                assert (await post(running, raw, app=app))[0] == 403
        assert (await callback_counts(b))[("301", "mismatch")] == 2
        for running in (a, b):
            tasks = await running.daemon.store.load_tasks()
            assert [t.key for t in tasks] == [TaskKey(APP, "t-ha")]
