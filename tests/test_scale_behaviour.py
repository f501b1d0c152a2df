"""What the fleet-scale work must not change: the bytes of a scrape, what a restart restores,
and the limiter's guarantees at a large limit. (Speed is measured in bench/scale.py.)"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import json
import random
import sqlite3
import time
from collections import deque
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import monitor.config.loading as config_module
import monitor.metrics.scrape as exposition_module
from monitor.config import ConfigError
from monitor.metrics import BucketGauge, MonitorMetrics, StateView
from monitor.metrics.scrape import Exposition, gzip_parts
from monitor.models import REGIONS, Source, Status, Task, TaskKey, storage_file_summary
from monitor.ratelimit.window import WindowBudget
from monitor.simulator import Life, Simulator
from monitor.simulator.callbacks import build_body, sign
from monitor.store import SqliteStore
from monitor.uploads import UploadPhase, UploadState
from tests.conftest import DaemonFactory, RunningDaemon, daemon_config_text
from tests.support import wait_for_async
from tests.test_ratelimit import max_in_any_window

APP = 1400000001
OPENMETRICS = "application/openmetrics-text; version=1.0.0"
ACCEPTS = (None, OPENMETRICS, "text/plain; version=0.0.4", "*/*")


def make_task(i: int, status: Status = Status.IN_PROGRESS, **fields: Any) -> Task:
    base: dict[str, Any] = {
        "sdk_app_id": APP + i % 3,
        "task_id": f"t-{i:04d}",
        "region": REGIONS[i % len(REGIONS)],
        "account": ("default", "账号-b")[i % 2],
        "labels": {"room": f"r-{i // 3}", "customer": 'a"b\\c\nd' if i % 7 == 0 else "acme"},
        "registered_at": 1_700_000_000.0,
        "status": status,
        "status_since": 1_700_000_000.0 + i,
    }
    return Task(**{**base, **fields})


def render_cached(exposition: Exposition, view: StateView, accept: str | None) -> bytes:
    async def go() -> bytes:
        return (await exposition.render(view, accept)).body()

    return asyncio.run(go())


def view_of(tasks: list[Task], info: tuple[str, ...] = ("room", "customer")) -> StateView:
    return StateView(
        tasks=tasks,
        info_labels=list(info),
        buckets=[BucketGauge("default", "trtc.tencentcloudapi.com", 20.0, 19.6)],
        required_rate={"default": 1.5},
    )


# One change of a task record, as the tracker makes them: a new record replaces the old one.
CHANGES: dict[str, Any] = {
    "status": st.sampled_from(list(Status)),
    "status_since": st.floats(0, 2e9, allow_nan=False),
    "consecutive_errors": st.integers(0, 5000),
    "last_success_at": st.none() | st.floats(0, 2e9, allow_nan=False),
    "storage_files": st.none() | st.integers(0, 2000),
    "labels": st.dictionaries(
        st.sampled_from(["room", "customer", "other"]), st.text(max_size=8), max_size=3
    ),
    "last_request_id": st.none() | st.text(max_size=10),
    "region": st.sampled_from(REGIONS),
    "upload": st.builds(UploadState, state=st.sampled_from(list(UploadPhase))),
}


@st.composite
def change(draw: st.DrawFn) -> tuple[str, int, dict[str, Any]]:
    kind = draw(st.sampled_from(["replace", "drop", "add", "same"]))
    index = draw(st.integers(0, 10_000))
    fields = draw(st.dictionaries(st.sampled_from(sorted(CHANGES)), st.just(None), max_size=3))
    return kind, index, {name: draw(CHANGES[name]) for name in fields}


class TestKeptSeriesText:
    @settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        size=st.integers(0, 60),
        rounds=st.lists(st.lists(change(), max_size=12), min_size=1, max_size=4),
        accept=st.sampled_from(ACCEPTS),
        info=st.sampled_from([(), ("room",), ("customer", "room", "nope")]),
    )
    def test_every_scrape_is_byte_for_byte_prometheus_client_after_random_changes(
        self,
        size: int,
        rounds: list[list[tuple[str, int, dict[str, Any]]]],
        accept: str | None,
        info: tuple[str, ...],
    ) -> None:
        metrics = MonitorMetrics()
        exposition = Exposition(metrics)
        tasks = [make_task(i, list(Status)[i % 7]) for i in range(size)]
        added = size
        for changes in [[], *rounds]:
            for kind, index, fields in changes:
                if kind == "add" or not tasks:
                    tasks.append(make_task(added, **fields))
                    added += 1
                elif kind == "drop":
                    tasks.pop(index % len(tasks))
                elif kind == "replace":
                    at = index % len(tasks)
                    tasks[at] = dataclasses.replace(tasks[at], **fields)
                else:  # the same record again: nothing to rebuild, nothing to change
                    pass
            view = view_of(list(tasks), info)
            expected = metrics.render_reference(view, accept)[0]
            assert render_cached(exposition, view, accept) == expected
            assert metrics.render(view, accept)[0] == expected

    def test_without_per_task_series_only_the_counts_follow_the_table(self) -> None:
        metrics = MonitorMetrics()
        exposition = Exposition(metrics)
        view = dataclasses.replace(view_of([make_task(i) for i in range(20)]), per_task=False)
        for accept in ACCEPTS:
            assert (
                render_cached(exposition, view, accept) == metrics.render_reference(view, accept)[0]
            )

    def test_a_scraper_asking_for_another_name_escaping_gets_the_reference_bytes(self) -> None:
        metrics = MonitorMetrics()
        accept = f"{OPENMETRICS}; escaping=dots"
        view = view_of([make_task(i) for i in range(5)])
        assert (
            render_cached(Exposition(metrics), view, accept)
            == metrics.render_reference(view, accept)[0]
        )


class TestCacheInvalidation:
    """A task's lines are rebuilt exactly when its record is replaced: any field, any change."""

    @pytest.fixture
    def built(self, monkeypatch: pytest.MonkeyPatch) -> list[str]:
        seen: list[str] = []
        real = exposition_module._encoded

        def counting(task: Task, layout: Any) -> Any:
            seen.append(task.task_id)
            return real(task, layout)

        monkeypatch.setattr(exposition_module, "_encoded", counting)
        return seen

    def test_an_unchanged_record_is_not_rebuilt(self, built: list[str]) -> None:
        exposition = Exposition(MonitorMetrics())
        tasks = [make_task(i) for i in range(30)]
        render_cached(exposition, view_of(tasks), OPENMETRICS)
        assert len(built) == 30
        built.clear()
        render_cached(exposition, view_of(tasks), OPENMETRICS)
        assert built == []
        assert exposition.cached_tasks == 30

    @pytest.mark.parametrize(
        "name", [f.name for f in dataclasses.fields(Task) if f.init and f.name != "_key"]
    )
    def test_replacing_a_record_rebuilds_its_lines_whatever_field_changed(
        self, built: list[str], name: str
    ) -> None:
        # Identity, not equality: a field added to Task later (an upload state) is covered
        # without the cache knowing it, and so is a replacement that changes no value at all.
        exposition = Exposition(MonitorMetrics())
        tasks = [make_task(i) for i in range(10)]
        render_cached(exposition, view_of(tasks), None)
        built.clear()
        tasks[4] = dataclasses.replace(tasks[4], **{name: getattr(tasks[4], name)})
        render_cached(exposition, view_of(tasks), None)
        assert built == [tasks[4].task_id]

    @pytest.mark.parametrize(
        ("field", "value", "series"),
        [
            ("status", Status.EXITED, 'status="Exited",task_id="t-0004"} 1.0'),
            ("consecutive_errors", 7, 'task_id="t-0004"} 7.0'),
            ("last_success_at", 1_800_000_000.0, 'task_id="t-0004"} 1.8e+09'),
            ("labels", {"room": "moved"}, 'room="moved"'),
            ("storage_files", 12, 'task_id="t-0004"} 12.0'),
            (
                "upload",
                UploadState(state=UploadPhase.FAILED),
                'state="failed",task_id="t-0004"} 1.0',
            ),
        ],
    )
    def test_a_change_of_status_health_or_labels_shows_in_the_next_scrape(
        self, field: str, value: object, series: str
    ) -> None:
        metrics = MonitorMetrics()
        exposition = Exposition(metrics)
        tasks = [make_task(i) for i in range(10)]
        before = render_cached(exposition, view_of(tasks), None).decode()
        assert series not in before
        changed: dict[str, Any] = {field: value}
        tasks[4] = dataclasses.replace(tasks[4], **changed)
        after = render_cached(exposition, view_of(tasks), None)
        assert series in after.decode()
        assert after == metrics.render_reference(view_of(tasks), None)[0]

    def test_a_gone_task_leaves_the_cache_at_the_next_scrape(self) -> None:
        exposition = Exposition(MonitorMetrics())
        tasks = [make_task(i) for i in range(10)]
        render_cached(exposition, view_of(tasks), None)
        render_cached(exposition, view_of(tasks[:3]), None)
        assert exposition.cached_tasks == 3

    def test_the_gzip_of_the_parts_is_the_body(self) -> None:
        parts = [b"a" * 100_000, "é\n".encode() * 1000, b"", b"# EOF\n"]
        assert gzip.decompress(gzip_parts(parts)) == b"".join(parts)


# ------------------------------------------------------------------------------ the store


class TestLeanRecords:
    async def test_a_whole_answer_stored_by_an_earlier_version_loads_cut_down(
        self, tmp_path: Path
    ) -> None:
        path = tmp_path / "m.db"
        store = SqliteStore(path)
        await store.open()
        await store.save_task(make_task(1))
        await store.close()
        whole = {
            "TaskId": "t-0001",
            "Status": "InProgress",
            "StorageFileList": [
                {
                    "UserId": "",
                    "FileName": "a.m3u8",
                    "TrackType": "audio_video",
                    "BeginTimeStamp": 1700000000000,
                    "Undocumented": "x" * 1000,
                },
                "not a file",
            ],
            "RequestId": "req-1",
        }
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE tasks SET last_response = ?", (json.dumps(whole),))
        store = SqliteStore(path)
        await store.open()
        (task,) = await store.load_tasks()
        await store.close()
        assert task.last_response == {
            "Status": "InProgress",
            "StorageFileList": [
                {
                    "UserId": "",
                    "FileName": "a.m3u8",
                    "TrackType": "audio_video",
                    "BeginTimeStamp": 1700000000000,
                }
            ],
            "RequestId": "req-1",
        }

    @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        status=st.sampled_from(sorted(Status)),
        request_id=st.none() | st.text(max_size=20),
        files=st.none()
        | st.lists(
            st.fixed_dictionaries(
                {"FileName": st.text(max_size=12)}, optional={"UserId": st.text(max_size=5)}
            ),
            max_size=3,
        ),
    )
    def test_the_kept_answer_comes_back_as_it_was_for_any_text(
        self,
        tmp_path_factory: pytest.TempPathFactory,
        status: Status,
        request_id: str | None,
        files: list[dict[str, str]] | None,
    ) -> None:
        count, summary = storage_file_summary(files)
        task = make_task(
            2,
            answer_status=status,
            answer_request_id=request_id,
            answer_files=summary,
            storage_files=count,
            last_request_id=request_id,
        )

        async def round_trip() -> Task:
            store = SqliteStore(tmp_path_factory.mktemp("s") / "m.db")
            await store.open()
            try:
                await store.save_task(task)
                (loaded,) = await store.load_tasks()
            finally:
                await store.close()
            return loaded

        loaded = asyncio.run(round_trip())
        assert loaded == task
        assert loaded.last_response == {
            "Status": status.value,
            "StorageFileList": files,
            "RequestId": request_id,
        }

    async def test_a_load_shares_equal_label_sets_and_strings_between_tasks(
        self, tmp_path: Path
    ) -> None:
        store = SqliteStore(tmp_path / "m.db")
        await store.open()
        tasks = [
            dataclasses.replace(make_task(i), labels={"room": f"r-{i // 2}"}) for i in range(6)
        ]
        await store.save_tasks(tasks)
        loaded = await store.load_tasks()
        await store.close()
        assert loaded == sorted(tasks, key=lambda t: t.key)
        by_id = {t.task_id: t for t in loaded}
        assert by_id["t-0000"].labels is by_id["t-0001"].labels
        assert by_id["t-0000"].labels is not by_id["t-0002"].labels
        assert by_id["t-0000"].region is not None
        regions = {id(t.region) for t in loaded if t.region == REGIONS[0]}
        assert len(regions) == 1


# ------------------------------------------------------------------------------ restart


CALLBACK_KEY = "cbKey0123456789abcdef"


async def task_answer(running: RunningDaemon, task_id: str) -> dict[str, Any]:
    async with running.session.get(f"{running.url}/api/v1/tasks/{APP}/{task_id}") as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


async def listed(running: RunningDaemon) -> dict[str, Any]:
    async with running.session.get(f"{running.url}/api/v1/tasks?limit=1000") as r:
        body: dict[str, Any] = await r.json()
        return body


class TestRestart:
    async def test_a_restart_restores_every_field_the_task_api_shows(
        self,
        simulator: Simulator,
        make_daemon: DaemonFactory,
        tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch,
    ) -> None:
        monkeypatch.setenv("TEST_CALLBACK_KEY", CALLBACK_KEY)
        db = tmp_path / "restart.db"
        extra = "callbacks:\n  key_env: TEST_CALLBACK_KEY\n"
        running = await make_daemon(simulator.url, extra, db)
        recording = simulator.add_task(APP, life=Life(idle=0.0, in_progress=None))
        idle = simulator.add_task(APP, life=Life(idle=600))
        answer = await running.register(
            APP, recording, "ap-guangzhou", labels={"room": "房间 1", "customer": "acme"}
        )
        assert answer.status == 201
        answer = await running.register(APP, idle, "ap-shanghai", interval="30s")
        assert answer.status == 201

        async def polled() -> bool:
            a, b = await task_answer(running, recording), await task_answer(running, idle)
            return bool(a["status"] == "InProgress" and b["status"] == "Idle")

        await wait_for_async(polled, timeout=15, what="both tasks polled")
        now = time.time()
        raw = build_body(
            310,
            room_id="room-1",
            user_id="recorder_1",
            task_id=recording,
            payload={"Status": 0, "FileMessage": [{"FileName": "a.mp4", "UserId": "u1"}]},
            event_wall=now,
            callback_wall=now,
        )
        headers = {
            "Content-Type": "application/json",
            "Sign": sign(CALLBACK_KEY, raw),
            "SdkAppId": str(APP),
        }
        async with running.session.post(
            f"{running.url}/callbacks/trtc", data=raw, headers=headers
        ) as r:
            assert r.status == 200, await r.text()
        assert (await task_answer(running, recording))["extra"]["mp4_files"]

        # Stop polling first, so nothing changes between the two reads and the restart.
        await running.daemon.poller.stop()
        before = {t: await task_answer(running, t) for t in (recording, idle)}
        page = await listed(running)
        assert before[recording]["last_response"]["StorageFileList"] is not None
        assert before[recording]["health"]["last_request_id"]
        await running.stop()

        again = await make_daemon(simulator.url, extra, db)
        await again.daemon.poller.stop()
        after = {t: await task_answer(again, t) for t in (recording, idle)}
        for body in (*before.values(), *after.values()):
            body.pop("recent_transitions")  # their own endpoint; stored as they happen
        assert after == before
        assert await listed(again) == page


# ------------------------------------------------------------------------------ the limiter


class MinScanBudget:
    """The limiter's cap as first written: the earliest send by a scan of the log."""

    def __init__(self, limit: int, cap_window: float) -> None:
        self.limit = limit
        self.cap_window = cap_window
        self.sends: deque[float] = deque(maxlen=limit)

    def cap(self, now: float) -> float:
        if len(self.sends) < self.limit:
            return 0.0
        return max(0.0, min(self.sends) + self.cap_window - now)

    def record(self, now: float) -> None:
        self.sends.append(now)

    def sent(self, granted: float, at: float) -> bool:
        for i in range(len(self.sends) - 1, -1, -1):
            if self.sends[i] == granted:
                self.sends[i] = max(granted, at)
                return True
        return False


class TestLimiterAtLargeLimits:
    @pytest.mark.parametrize("limit", [1, 3, 20, 2000])
    def test_the_cap_equals_a_scan_of_the_log_with_receipts_in_any_order(self, limit: int) -> None:
        rng = random.Random(limit)
        budget = WindowBudget(limit, 1.0, guard=0.0)
        model = MinScanBudget(limit, 1.0)
        now = 0.0
        unconfirmed: list[float] = []
        for _ in range(limit * 6 + 50):
            now += rng.choice([0.0, rng.random() / limit, rng.random() * 0.3])
            # guard 0: the schedule never waits less than the cap, so compare the cap alone
            assert budget.delay(now) >= model.cap(now) - 1e-12
            now += budget.delay(now)
            assert model.cap(now) == 0.0
            budget.record(now)
            model.record(now)
            unconfirmed.append(now)
            # receipts come late and out of order, some after their grant left the log
            while unconfirmed and rng.random() < 0.6:
                granted = unconfirmed.pop(rng.randrange(len(unconfirmed)))
                at = granted + rng.random() * rng.choice([0.0, 0.01, 0.5])
                assert budget.sent(granted, at) == model.sent(granted, at)
            if len(model.sends) == limit:
                assert budget._mins[0][1] == min(model.sends)

    def test_no_window_holds_more_than_a_large_limit_of_actual_sends(self) -> None:
        limit = 5000
        budget = WindowBudget(limit, 1.0, guard=0.02)
        rng = random.Random(5)
        now, sends = 0.0, []
        for _ in range(limit * 4):
            now += budget.delay(now)
            budget.record(now)
            at = now + rng.random() * 0.02
            budget.sent(now, at)
            sends.append(at)
        assert max_in_any_window(sends, 1.0 / 0.98 * (1 - 1e-9)) <= limit
        assert budget.sends_in_window(now) <= limit
        assert len(sends) == limit * 4


def test_a_record_replaced_with_another_identity_has_its_own_key() -> None:
    # The key is kept on the record as a cache; it must never outlive the identity.
    task = make_task(3, source=Source.CALLBACK)
    moved = dataclasses.replace(task, task_id="elsewhere")
    assert moved.key == TaskKey(task.sdk_app_id, "elsewhere")
    assert task.key == TaskKey(task.sdk_app_id, "t-0003")


# ------------------------------------------------------------------------------ the YAML file


class TestConfigParsers:
    """libyaml parses large files; the Python parser words errors. Both give one Config."""

    def test_libyaml_and_the_python_parser_give_the_same_configuration(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        assert config_module._FAST_LOADER is not None, "PyYAML without libyaml"
        text = daemon_config_text("http://127.0.0.1:9", Path("/tmp/never.db"), "tasks:\n")
        text += "".join(
            f"  - {{sdk_app_id: {APP}, task_id: 'extra-{i}', region: ap-mumbai, "
            f"labels: {{room: 'r {i}', n: {i}}}, interval: {i % 5 + 1}s}}\n"
            for i in range(50)
        )
        text += "metrics:\n  labels: [room]\n"
        fast = config_module.parse_config(text, "f.yaml")
        monkeypatch.setattr(config_module, "_FAST_LOADER", None)
        slow = config_module.parse_config(text, "f.yaml")
        assert fast == slow
        assert fast._lines == slow._lines
        assert len(fast.tasks) == 50

    @pytest.mark.parametrize(
        "text",
        ["server: [1, 2\n", "tasks:\n  - {sdk_app_id: 1, task_id: a}\n  - {a: b}}\n", "\tx: 1\n"],
    )
    def test_invalid_yaml_is_reported_as_the_python_parser_words_it(
        self, monkeypatch: pytest.MonkeyPatch, text: str
    ) -> None:
        with pytest.raises(ConfigError) as fast:
            config_module.parse_config(text, "f.yaml")
        monkeypatch.setattr(config_module, "_FAST_LOADER", None)
        with pytest.raises(ConfigError) as slow:
            config_module.parse_config(text, "f.yaml")
        assert fast.value.errors == slow.value.errors
        assert "invalid YAML" in fast.value.errors[0]

    def test_errors_in_a_valid_file_name_their_line_with_either_parser(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        text = "accounts:\n  default: {secret_id_env: A, secret_key_env: B}\ntasks:\n"
        text += "  - {sdk_app_id: 1, task_id: ok, region: ap-mumbai}\n"
        text += "  - {sdk_app_id: 1, task_id: bad, region: mars}\n"
        with pytest.raises(ConfigError) as fast:
            config_module.parse_config(text, "f.yaml")
        monkeypatch.setattr(config_module, "_FAST_LOADER", None)
        with pytest.raises(ConfigError) as slow:
            config_module.parse_config(text, "f.yaml")
        assert fast.value.errors == slow.value.errors
        assert any(e.startswith("f.yaml:5:") for e in fast.value.errors)


class TestServedScrapes:
    async def test_head_plain_and_gzip_scrapes_on_one_connection(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url)
        running.daemon.registry.put_many(make_task(i) for i in range(40))
        url = f"{running.url}/metrics"
        plain = {"Accept-Encoding": "identity"}
        # One connection: a HEAD answer that carried a body would corrupt the next answer.
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            async with session.head(url, headers=plain) as r:
                assert r.status == 200
                assert await r.read() == b""
            async with session.get(url, headers=plain) as r:
                assert r.status == 200
                assert "Content-Encoding" not in r.headers
                body = await r.read()
                assert int(r.headers["Content-Length"]) == len(body)
            async with session.get(
                url, headers={"Accept-Encoding": "gzip"}, auto_decompress=False
            ) as r:
                assert r.headers["Content-Encoding"] == "gzip"
                unpacked = gzip.decompress(await r.read())
        assert body.count(b"trtc_recording_task_status{") == 7 * 40
        assert unpacked.count(b"trtc_recording_task_status{") == 7 * 40
