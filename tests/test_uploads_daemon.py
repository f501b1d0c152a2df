"""Upload callbacks on a live daemon: parsing, state, alerts, metrics, restarts, the CLI."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from monitor.callbacks.parse import parse_callback
from monitor.cli import main as cli_main
from monitor.config import parse_config
from monitor.daemon import Daemon
from monitor.http.server import start_server
from monitor.models import Outcome, Status, TaskKey
from monitor.simulator import Life, Simulator, sign
from monitor.simulator.callbacks import build_body
from monitor.trtc.client import CallResult
from monitor.uploads import FileKind, UploadFile, UploadPhase
from tests.conftest import DaemonFactory, RunningDaemon, daemon_config_text

APP = 1400000001
KEY = "cbKey0123456789abcdef"
PATH = "/callbacks/trtc"
UPLOAD_FAILED = "RecordingUploadFailed"
UPLOAD_OVERDUE = "RecordingUploadOverdue"


def callbacks_yaml(auto_register: bool = True, deadline: str = "30m") -> str:
    return f"""
callbacks:
  key_env: TEST_CALLBACK_KEY
  auto_register: {"true" if auto_register else "false"}
  account: default
  region: ap-guangzhou
alerts:
  upload: {{deadline: {deadline}}}
"""


def body(
    event_type: int, task_id: str, payload: dict[str, Any] | None = None, at: float | None = None
) -> bytes:
    at = time.time() if at is None else at
    return build_body(
        event_type,
        room_id="room-7",
        user_id="recorder_7",
        task_id=task_id,
        payload=payload or {},
        event_wall=at,
        callback_wall=at + 0.05,
    )


async def post(running: RunningDaemon, raw: bytes) -> int:
    headers = {"Content-Type": "application/json", "Sign": sign(KEY, raw), "SdkAppId": str(APP)}
    async with running.session.post(f"{running.url}{PATH}", data=raw, headers=headers) as r:
        await r.read()
        return r.status


async def send(running: RunningDaemon, task_id: str, *events: tuple[int, dict[str, Any]]) -> None:
    start = time.time()
    for i, (event_type, payload) in enumerate(events):
        assert await post(running, body(event_type, task_id, payload, at=start + i * 0.01)) == 200


async def task_api(running: RunningDaemon, task_id: str) -> dict[str, Any]:
    async with running.session.get(f"{running.url}/api/v1/tasks/{APP}/{task_id}") as r:
        assert r.status == 200
        result: dict[str, Any] = await r.json()
        return result


def firing(running: RunningDaemon, alertname: str, task_id: str) -> list[Any]:
    return [
        r
        for r in running.daemon.alerts.firing()
        if r.alertname == alertname and r.labels.get("task_id") == task_id
    ]


async def counter(running: RunningDaemon, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    async with running.session.get(f"{running.url}/metrics") as r:
        text = await r.text()
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


async def upload_outcomes(running: RunningDaemon) -> dict[str, float]:
    counts = await counter(running, "trtc_recording_uploads_total")
    return {dict(labels)["outcome"]: value for labels, value in counts.items()}


@pytest.fixture
async def running(
    make_daemon: DaemonFactory, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
) -> RunningDaemon:
    monkeypatch.setenv("TEST_CALLBACK_KEY", KEY)
    return await make_daemon(simulator.url, callbacks_yaml())


VOD = {"FileId": "5285890781234567", "VideoUrl": "https://vod.example.com/a.mp4"}
Events = tuple[tuple[int, dict[str, Any]], ...]
COS_SEQUENCE: Events = (
    (301, {"Status": 0}),
    (303, {"Status": 0}),
    (307, {"FileName": "a.m3u8", "UserId": "", "TrackType": "audio_video", "BeginTimeStamp": 1}),
    (304, {"Status": 0}),
    (302, {"LeaveCode": 0}),
    (305, {"Status": 0}),
    (310, {"Status": 0, "FileList": [{"FileName": "a.mp4", "TrackType": "audio_video"}]}),
)
VOD_SEQUENCE: Events = (
    (301, {"Status": 0}),
    (302, {"LeaveCode": 0}),
    (311, {"Status": 0, "TencentVod": VOD}),
    (312, {"Status": 0}),
)
# Every failure of docs/callbacks.md, with the code and the words its alert must show.
FAILURES: list[tuple[int, dict[str, Any], str, str]] = [
    (301, {"Status": 1}, "Status 1", "failed to start"),
    (303, {"Status": 1}, "Status 1", "could not start"),
    (305, {"Status": 1}, "Status 1", "stranded"),
    (
        308,
        {"Code": "InvalidParameter", "Message": "AccessKey invalid"},
        "InvalidParameter",
        "AccessKey invalid",
    ),
    (309, {"Url": "https://img.example.com/w.png?sign=abc"}, "", "https://img.example.com/w.png"),
    (310, {"Status": 2}, "Status 2", "stopped on an error"),
    (311, {"Status": 2, "Errmsg": "vod quota exceeded"}, "Status 2", "vod quota exceeded"),
    (312, {"Status": 1}, "Status 1", "ended on an error"),
]


class TestParsing:
    def test_a_308_carries_the_storage_code_and_message(self) -> None:
        event = parse_callback(
            body(308, "t", {"Code": "NoSuchBucket", "Message": "gone"}), str(APP)
        )
        assert event.upload is not None
        assert (event.upload.code, event.upload.message) == ("NoSuchBucket", "gone")
        assert event.upload.at == pytest.approx(event.event_ms_ts / 1000)  # type: ignore[operator]

    def test_a_311_carries_its_vod_file_and_errmsg(self) -> None:
        event = parse_callback(
            body(311, "t", {"Status": 1, "Errmsg": "stuck", "TencentVod": VOD}), str(APP)
        )
        assert event.upload is not None
        assert event.upload.message == "stuck"
        assert event.upload.files == (
            UploadFile(FileKind.VOD, file_id=VOD["FileId"], url=VOD["VideoUrl"]),
        )

    def test_a_310_reads_file_list_and_the_older_file_message(self) -> None:
        for name in ("FileList", "FileMessage"):
            payload = {"Status": 0, name: [{"FileName": "x.mp4", "StartTimeStamp": 5}]}
            event = parse_callback(body(310, "t", payload), str(APP))
            assert event.upload is not None
            assert event.upload.files == (UploadFile(FileKind.MP4, "x.mp4", begin_ms=5),)

    def test_a_309_keeps_the_image_address_without_its_query(self) -> None:
        event = parse_callback(
            body(309, "t", {"Url": "https://i.example/a.png?sig=s3cr3t"}), str(APP)
        )
        assert event.upload is not None
        assert event.upload.message == "https://i.example/a.png"

    def test_a_307_reports_its_slice(self) -> None:
        payload = {"FileName": "s.m3u8", "UserId": 42, "TrackType": "audio", "BeginTimeStamp": 9}
        event = parse_callback(body(307, "t", payload), str(APP))
        assert event.upload is not None
        assert event.upload.files == (
            UploadFile(FileKind.COS, "s.m3u8", "42", "audio", begin_ms=9),
        )

    def test_a_wrongly_typed_upload_field_is_refused_with_its_name(self) -> None:
        from monitor.callbacks.parse import CallbackInvalid

        with pytest.raises(CallbackInvalid, match=r"Payload.Code"):
            parse_callback(body(308, "t", {"Code": ["x"]}), str(APP))


class TestOnTheDaemon:
    async def test_a_cos_recording_with_mp4_ends_done_with_its_files_and_no_alert(
        self, running: RunningDaemon
    ) -> None:
        await send(running, "t-cos", *COS_SEQUENCE)
        upload = (await task_api(running, "t-cos"))["upload"]
        assert upload["state"] == "done"
        assert [(f["kind"], f["name"]) for f in upload["files"]] == [
            ("cos", "a.m3u8"),
            ("mp4", "a.mp4"),
        ]
        assert upload["failure"] is None
        assert not firing(running, UPLOAD_FAILED, "t-cos")
        assert (await upload_outcomes(running)).get("done") == 1

    async def test_a_vod_recording_ends_done_with_its_file_id_and_url(
        self, running: RunningDaemon
    ) -> None:
        await send(running, "t-vod", *VOD_SEQUENCE)
        upload = (await task_api(running, "t-vod"))["upload"]
        assert upload["state"] == "done"
        assert upload["files"] == [
            {"kind": "vod", "file_id": VOD["FileId"], "url": VOD["VideoUrl"]}
        ]
        assert upload["stopped_at"] is not None
        await running.daemon.sweep_alerts()
        assert not [r for r in running.daemon.alerts.firing() if "Upload" in r.alertname]

    @pytest.mark.parametrize(("event_type", "payload", "code", "words"), FAILURES)
    async def test_every_failure_raises_the_alert_with_its_code_and_message_and_a_305_2_resolves(
        self,
        running: RunningDaemon,
        event_type: int,
        payload: dict[str, Any],
        code: str,
        words: str,
    ) -> None:
        task_id = f"t-fail-{event_type}"
        assert (await running.register(APP, task_id)).status == 201
        await send(running, task_id, (event_type, payload))
        [alert] = firing(running, UPLOAD_FAILED, task_id)
        text = alert.annotations["summary"] + alert.annotations["description"]
        assert f"event {event_type}" in text
        assert code in text
        assert words in text
        assert "sign=abc" not in text
        assert alert.labels["severity"] == "critical"
        upload = (await task_api(running, task_id))["upload"]
        assert (upload["state"], upload["failure"]["event_type"]) == ("failed", event_type)
        await asyncio.sleep(0.02)  # a later event time
        await send(running, task_id, (305, {"Status": 2}))
        assert not firing(running, UPLOAD_FAILED, task_id)
        assert (await task_api(running, task_id))["upload"]["state"] == "done"
        outcomes = await upload_outcomes(running)
        assert (outcomes["failed"], outcomes["recovered"]) == (1, 1)

    async def test_removing_the_task_resolves_its_upload_alert_and_a_late_event_keeps_it_so(
        self, running: RunningDaemon
    ) -> None:
        await send(running, "t-gone", (303, {"Status": 0}), (305, {"Status": 1}))
        assert firing(running, UPLOAD_FAILED, "t-gone")
        async with running.session.delete(
            f"{running.url}/api/v1/tasks/{APP}/t-gone", headers=running.auth()
        ) as r:
            assert r.status == 200
        assert not firing(running, UPLOAD_FAILED, "t-gone")
        # Another failure of a removed task is recorded but pages nobody.
        await send(running, "t-gone", (308, {"Code": "E", "Message": "m"}))
        task = running.daemon.registry.get(TaskKey(APP, "t-gone"))
        assert task is not None
        assert len(task.upload.failures) == 2
        await running.daemon.sweep_alerts()
        assert not firing(running, UPLOAD_FAILED, "t-gone")

    async def test_repeated_and_reordered_events_change_nothing_twice(
        self, running: RunningDaemon
    ) -> None:
        start = time.time()
        timed = [body(t, "t-order", p, at=start + i) for i, (t, p) in enumerate(COS_SEQUENCE)]
        for raw in reversed(timed):
            assert await post(running, raw) == 200
        once = (await task_api(running, "t-order"))["upload"]
        # TRTC's retries: the same events again, re-sent later (another CallbackTs).
        for raw in timed:
            again = json.loads(raw)
            again["CallbackTs"] += 5000
            assert await post(running, json.dumps(again).encode()) == 200
        assert (await task_api(running, "t-order"))["upload"] == once
        assert once["state"] == "done"
        assert await upload_outcomes(running) == {"done": 1}
        # A failure from before the finish, delivered late, does not fail a finished upload.
        late = body(308, "t-order", {"Code": "Slow", "Message": "retry"}, at=start + 3.5)
        assert await post(running, late) == 200
        assert (await task_api(running, "t-order"))["upload"]["state"] == "done"

    async def test_a_restart_keeps_the_upload_state(
        self,
        make_daemon: DaemonFactory,
        simulator: Simulator,
        tmp_path: Path,
        running: RunningDaemon,
    ) -> None:
        await send(running, "t-keep", (303, {"Status": 0}), (308, {"Code": "E", "Message": "m"}))
        before = (await task_api(running, "t-keep"))["upload"]
        await running.stop()
        again = await make_daemon(simulator.url, callbacks_yaml(), db=tmp_path / "monitor.db")
        assert (await task_api(again, "t-keep"))["upload"] == before
        assert before["state"] == "failed"
        await again.daemon.sweep_alerts()
        assert firing(again, UPLOAD_FAILED, "t-keep")

    async def test_a_poll_answer_arriving_during_an_upload_write_keeps_both(
        self, running: RunningDaemon, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # Recording in the simulator, so the daemon's own polls keep the task alive.
        simulator.add_task(APP, "t-race", Life(idle=0))
        await send(running, "t-race", (303, {"Status": 0}))
        key = TaskKey(APP, "t-race")
        tracker, store = running.daemon.tracker, running.daemon.store
        original = store.save_task
        polls: list[asyncio.Future[Any]] = []
        exited = CallResult(
            Outcome.OK,
            "",
            request_id="req-race",
            response={"TaskId": "t-race", "Status": "Exited", "RequestId": "req-race"},
        )

        async def save_task(task: Any) -> None:
            if task.upload.state is UploadPhase.FAILED and not polls:
                # A poll answer comes back while the upload change is being stored.
                polls.append(asyncio.ensure_future(tracker.observe_poll(key, exited, time.time())))
                await asyncio.sleep(0.05)
            await original(task)

        monkeypatch.setattr(store, "save_task", save_task)
        await send(running, "t-race", (308, {"Code": "E", "Message": "m"}))
        assert polls
        applied = await polls[0]
        assert applied.transition is not None
        [stored] = [t for t in await store.load_tasks() if t.task_id == "t-race"]
        assert stored.upload.state is UploadPhase.FAILED
        assert stored.status is Status.EXITED
        live = running.daemon.registry.get(key)
        assert live is not None
        assert (live.upload, live.status) == (stored.upload, stored.status)

    async def test_the_cli_shows_the_upload_state_and_files(
        self, running: RunningDaemon, capsys: pytest.CaptureFixture[str]
    ) -> None:
        await send(running, "t-cli", *VOD_SEQUENCE)
        capsys.readouterr()  # the daemon's own log lines so far
        code = await asyncio.to_thread(
            cli_main,
            ["tasks", "--url", running.url, "show", "--sdk-app-id", str(APP), "--task-id", "t-cli"],
        )
        assert code == 0
        lines = capsys.readouterr().out.splitlines()
        # The daemon logs to the same stdout here: the task is the block from "{" to "}".
        start = lines.index("{")
        shown = json.loads("\n".join(lines[start : lines.index("}", start) + 1]))
        assert shown["upload"]["state"] == "done"
        assert shown["upload"]["files"][0]["file_id"] == VOD["FileId"]

    async def test_metrics_show_one_upload_state_per_task(self, running: RunningDaemon) -> None:
        await send(running, "t-m", (303, {"Status": 0}))
        series = await counter(running, "trtc_recording_task_upload_state")
        mine = {dict(k)["state"]: v for k, v in series.items() if dict(k)["task_id"] == "t-m"}
        assert mine == {"none": 0, "uploading": 1, "done": 0, "failed": 0}


class TestRegistration:
    async def test_a_task_registered_after_its_301_picks_up_later_upload_events(
        self, make_daemon: DaemonFactory, simulator: Simulator, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TEST_CALLBACK_KEY", KEY)
        running = await make_daemon(simulator.url, callbacks_yaml(auto_register=False))
        await send(running, "t-late", (301, {"Status": 0}), (303, {"Status": 0}))
        assert running.daemon.registry.get(TaskKey(APP, "t-late")) is None
        counts = await counter(running, "trtc_monitor_callbacks_total")
        assert counts[(("event_type", "303"), ("outcome", "unregistered"))] == 1
        assert (await running.register(APP, "t-late")).status == 201
        await send(running, "t-late", (304, {"Status": 0}), (305, {"Status": 1}))
        upload = (await task_api(running, "t-late"))["upload"]
        assert upload["state"] == "failed"
        assert firing(running, UPLOAD_FAILED, "t-late")

    async def test_an_upload_event_of_an_unknown_task_registers_it_with_auto_register(
        self, running: RunningDaemon
    ) -> None:
        await send(running, "t-auto", (311, {"Status": 0, "TencentVod": VOD}))
        task = running.daemon.registry.get(TaskKey(APP, "t-auto"))
        assert task is not None
        assert task.labels == {"room": "room-7", "user": "recorder_7"}
        assert task.upload.state is UploadPhase.UPLOADING


class ManualClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


class TestOverdue:
    async def test_overdue_fires_after_the_deadline_not_before_and_a_late_finish_resolves_it(
        self, simulator: Simulator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TEST_SECRET_ID", "AKIDSIMULATOR")
        monkeypatch.setenv("TEST_SECRET_KEY", "simulator-secret-key")
        monkeypatch.setenv("TEST_API_TOKEN", "x" * 24)
        monkeypatch.setenv("TEST_CALLBACK_KEY", KEY)
        config = parse_config(
            daemon_config_text(simulator.url, tmp_path / "m.db", callbacks_yaml(deadline="10m"))
        )
        clock = ManualClock()
        daemon = Daemon(config, clock=clock)
        await daemon.start()
        runner: web.AppRunner | None = None
        try:
            runner, url = await start_server(daemon, config.server.listen)
            import aiohttp

            async with aiohttp.ClientSession() as session:
                running = RunningDaemon(daemon, url, runner, session)
                stopped = clock.now = float(int(clock.now))  # whole ms in EventMsTs
                steps: tuple[tuple[int, dict[str, Any], float], ...] = (
                    (303, {"Status": 0}, stopped - 60),
                    (302, {"LeaveCode": 0}, stopped),
                )
                for event_type, payload, at in steps:
                    assert await post(running, body(event_type, "t-over", payload, at=at)) == 200
                clock.now = stopped + 600  # exactly the deadline: not yet
                await daemon.sweep_alerts()
                assert not firing(running, UPLOAD_OVERDUE, "t-over")
                clock.now = stopped + 601
                await daemon.sweep_alerts()
                [alert] = firing(running, UPLOAD_OVERDUE, "t-over")
                assert "within 10m" in alert.annotations["description"]
                assert (await upload_outcomes(running)).get("overdue") == 1
                await daemon.sweep_alerts()
                assert (await upload_outcomes(running)).get("overdue") == 1  # counted once
                finished = body(305, "t-over", {"Status": 0}, at=stopped + 700)
                assert await post(running, finished) == 200
                assert not firing(running, UPLOAD_OVERDUE, "t-over")
                assert (await task_api(running, "t-over"))["upload"]["state"] == "done"
        finally:
            if runner is not None:
                await runner.cleanup()
            await daemon.stop()
