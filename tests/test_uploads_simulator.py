"""The simulator's upload callbacks: whole sequences for COS, MP4 and VOD, and every failure."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web

from monitor.simulator import Life, ManualClock, Simulator, SimulatorControl, parse_scenario
from monitor.simulator.callbacks import ALL_EVENTS, CallbackSettings
from monitor.simulator.lifecycle import INF, SimTask, TaskSpec, UploadFault, UploadPlan
from monitor.simulator.scenario import ScenarioError, parse_task, parse_upload
from monitor.uploads import (
    NO_UPLOAD,
    FileKind,
    UploadEvent,
    UploadFile,
    UploadPhase,
    UploadState,
    apply_upload_event,
)

APP = 1400000001
KEY = "upload-callback-key"


def sim_task(vod: bool = False, **plan: Any) -> SimTask:
    return SimTask.create(
        TaskSpec(APP, vod=vod, upload=UploadPlan(**plan)),
        created=100.0,
        created_wall=1_700_000_000.0,
        task_id="task-up",
        life=Life(idle=1, in_progress=10, exited=2),
        room_id="r1",
        user_id="bot",
    )


def upload_event(event_type: int, payload: dict[str, Any], at: float) -> UploadEvent:
    """The upload fields of a simulated callback, read the way TRTC documents them."""
    files: list[UploadFile] = []
    if event_type == 307:
        files.append(
            UploadFile(
                FileKind.COS,
                payload["FileName"],
                payload["UserId"],
                payload["TrackType"],
                begin_ms=payload["BeginTimeStamp"],
            )
        )
    for entry in payload.get("FileList", []):
        files.append(
            UploadFile(
                FileKind.MP4,
                entry["FileName"],
                entry["UserId"],
                entry["TrackType"],
                media_id=entry["MediaId"],
                begin_ms=entry["StartTimeStamp"],
                end_ms=entry["EndTimeStamp"],
            )
        )
    vod = payload.get("TencentVod")
    if vod:
        files.append(UploadFile(FileKind.VOD, file_id=vod["FileId"], url=vod["VideoUrl"]))
    return UploadEvent(
        event_type,
        payload.get("Status"),
        code=payload.get("Code", ""),
        message=payload.get("Message") or payload.get("Errmsg") or payload.get("Url", ""),
        files=tuple(files),
        at=at,
    )


def final_state(task: SimTask) -> UploadState:
    state = NO_UPLOAD
    for event in task.timeline():
        if event.at < INF:
            state = apply_upload_event(
                state, upload_event(event.event_type, event.payload, event.at), event.at
            ).state
    return state


def types(task: SimTask) -> list[int]:
    return [e.event_type for e in task.timeline() if e.at < INF]


class TestSequences:
    def test_a_cos_recording_sends_start_slice_m3u8_stop_and_finish(self) -> None:
        task = sim_task()
        assert types(task) == [301, 303, 307, 304, 302, 305]
        state = final_state(task)
        assert state.state is UploadPhase.DONE
        assert [f.kind for f in state.files] == [FileKind.COS]
        assert state.files[0].name.endswith(".m3u8")

    def test_a_cos_recording_with_mp4_also_sends_310_with_its_file_list(self) -> None:
        task = sim_task(mp4=True)
        assert types(task) == [301, 303, 307, 304, 302, 305, 310]
        state = final_state(task)
        assert state.state is UploadPhase.DONE
        assert {f.kind for f in state.files} == {FileKind.COS, FileKind.MP4}

    def test_a_vod_recording_sends_the_commit_with_file_id_and_url_then_312(self) -> None:
        task = sim_task(vod=True)
        assert types(task) == [301, 302, 311, 312]
        state = final_state(task)
        assert state.state is UploadPhase.DONE
        (vod,) = state.files
        assert vod.file_id.isdigit()
        assert vod.url.endswith(".mp4")

    def test_events_come_in_time_order_and_the_upload_ends_when_the_task_is_gone(self) -> None:
        task = sim_task(mp4=True)
        times = [e.at for e in task.timeline()]
        assert times == sorted(times)
        assert task.timeline()[-1].at == task.gone_at

    def test_a_recording_that_never_started_uploads_nothing(self) -> None:
        task = sim_task()
        task.stop(100.5, 3)  # before it went InProgress
        assert types(task) == [301, 302]


class TestFailures:
    def test_stranded_cos_files_send_305_status_1(self) -> None:
        task = sim_task(fault=UploadFault.STRANDED)
        finish = [e for e in task.timeline() if e.event_type == 305]
        assert [e.payload for e in finish] == [{"Status": 1}]
        state = final_state(task)
        assert state.state is UploadPhase.FAILED
        assert state.failure is not None
        assert (state.failure.event_type, state.failure.code) == (305, "Status 1")

    def test_an_upload_error_sends_308_with_the_storage_code_and_message(self) -> None:
        task = sim_task(
            fault=UploadFault.UPLOAD_ERROR, error_code="NoSuchBucket", error_message="no bucket"
        )
        (error,) = [e for e in task.timeline() if e.event_type == 308]
        assert error.payload == {"Code": "NoSuchBucket", "Message": "no bucket"}
        state = final_state(task)
        assert state.state is UploadPhase.FAILED
        assert state.failure is not None
        assert (state.failure.code, state.failure.message) == ("NoSuchBucket", "no bucket")

    def test_a_vod_commit_error_sends_311_status_2_with_errmsg_then_312_status_1(self) -> None:
        task = sim_task(vod=True, fault=UploadFault.VOD_COMMIT_ERROR, error_message="vod down")
        commit, stopped = (e for e in task.timeline() if e.event_type in (311, 312))
        assert (commit.payload["Status"], commit.payload["Errmsg"]) == (2, "vod down")
        assert stopped.payload == {"Status": 1}
        state = final_state(task)
        assert state.state is UploadPhase.FAILED
        assert state.failure is not None
        assert state.failure.event_type == 311

    def test_stranded_vod_files_send_311_status_1(self) -> None:
        task = sim_task(vod=True, fault=UploadFault.STRANDED)
        (commit,) = [e for e in task.timeline() if e.event_type == 311]
        assert commit.payload["Status"] == 1
        assert final_state(task).state is UploadPhase.FAILED

    def test_an_mp4_error_sends_310_status_2_after_a_good_hls_upload(self) -> None:
        task = sim_task(fault=UploadFault.MP4_ERROR)
        hls, mp4 = (e for e in task.timeline() if e.event_type in (305, 310))
        assert (hls.payload["Status"], mp4.payload["Status"]) == (0, 2)
        state = final_state(task)
        assert state.state is UploadPhase.FAILED
        assert state.failure is not None
        assert state.failure.event_type == 310

    def test_an_image_error_sends_309_with_the_url(self) -> None:
        task = sim_task(fault=UploadFault.IMAGE_ERROR)
        (image,) = [e for e in task.timeline() if e.event_type == 309]
        assert image.payload["Url"].startswith("https://")
        state = NO_UPLOAD
        for event in task.timeline():
            state = apply_upload_event(
                state, upload_event(event.event_type, event.payload, event.at), event.at
            ).state
            if event.event_type == 309:
                assert state.state is UploadPhase.FAILED
        # The files reached storage all the same: the 305 that says so resolves it.
        assert state.state is UploadPhase.DONE

    @pytest.mark.parametrize("vod", [False, True])
    def test_a_missing_finish_leaves_the_upload_started_and_unfinished(self, vod: bool) -> None:
        task = sim_task(vod=vod, finish=False)
        sent = types(task)
        assert 305 not in sent
        assert 312 not in sent
        state = final_state(task)
        assert state.state is UploadPhase.UPLOADING
        assert state.stopped_at == task.exited_at

    def test_stranded_files_recovered_later_send_305_status_2(self) -> None:
        task = sim_task(fault=UploadFault.STRANDED, recover_after=30)
        recovered = task.timeline()[-1]
        assert (recovered.event_type, recovered.payload, recovered.at) == (
            305,
            {"Status": 2},
            task.gone_at + 30,
        )
        assert final_state(task).state is UploadPhase.DONE

    def test_a_recorder_that_failed_to_start_sends_301_status_1_and_no_upload(self) -> None:
        task = sim_task(fault=UploadFault.START_FAILED)
        assert [(e.event_type, e.payload) for e in task.timeline() if e.at < INF] == [
            (301, {"Status": 1}),
            (302, {"LeaveCode": 3}),
        ]
        state = final_state(task)
        assert state.state is UploadPhase.FAILED
        assert state.failure is not None
        assert state.failure.event_type == 301

    def test_an_upload_that_could_not_start_sends_303_status_1_then_stranded(self) -> None:
        task = sim_task(fault=UploadFault.UPLOAD_START_FAILED)
        assert types(task) == [301, 303, 302, 305]
        assert task.timeline()[1].payload == {"Status": 1}
        state = final_state(task)
        assert state.state is UploadPhase.FAILED
        assert state.failure is not None
        assert state.failure.event_type == 303  # the cause is named, not the stranded files

    def test_stranded_mp4_files_send_310_status_1(self) -> None:
        task = sim_task(mp4=True, fault=UploadFault.STRANDED)
        (mp4,) = [e for e in task.timeline() if e.event_type == 310]
        assert mp4.payload["Status"] == 1

    def test_impossible_plans_are_refused(self) -> None:
        with pytest.raises(ValueError, match="VOD"):
            sim_task(vod=False, fault=UploadFault.VOD_COMMIT_ERROR)
        with pytest.raises(ValueError, match="MP4"):
            sim_task(vod=True, mp4=True)
        with pytest.raises(ValueError, match="COS"):
            sim_task(vod=True, fault=UploadFault.UPLOAD_START_FAILED)


class TestScenarioKeys:
    def test_a_task_takes_every_upload_key(self) -> None:
        spec = parse_task(
            {
                "sdk_app_id": APP,
                "mp4": True,
                "upload_failure": "upload_error",
                "upload_error_code": "AccessDenied",
                "upload_error_message": "denied",
                "upload_finish": False,
                "upload_recover_after": "1m",
            }
        )
        assert spec.upload == UploadPlan(
            mp4=True,
            fault=UploadFault.UPLOAD_ERROR,
            error_code="AccessDenied",
            error_message="denied",
            finish=False,
            recover_after=60.0,
        )

    def test_an_unknown_failure_names_the_key_and_the_choices(self) -> None:
        with pytest.raises(
            ScenarioError,
            match=r"upload_failure: must be one of none, start_failed, upload_start_failed",
        ):
            parse_task({"sdk_app_id": APP, "upload_failure": "boom"})

    def test_a_vod_commit_error_on_a_cos_task_is_refused_with_its_key(self) -> None:
        with pytest.raises(ScenarioError) as caught:
            parse_scenario({"tasks": [{"sdk_app_id": APP, "upload_failure": "vod_commit_error"}]})
        assert caught.value.key == "tasks[0].upload_failure"

    def test_callbacks_can_enable_every_event(self) -> None:
        scenario = parse_scenario(
            {"callback": {"url": "http://127.0.0.1:1/cb", "key": "k", "events": "all"}}
        )
        assert scenario.callback is not None
        assert scenario.callback.events == ALL_EVENTS == frozenset(range(301, 313))

    def test_the_upload_switch_takes_only_upload_keys(self) -> None:
        assert parse_upload({"upload_finish": False}, vod=True) == UploadPlan(finish=False)
        with pytest.raises(ScenarioError, match="unknown key"):
            parse_upload({"idle": 1}, vod=False)


# --------------------------------------------------------------------------- over HTTP


@dataclass
class Receiver:
    url: str
    received: asyncio.Queue[tuple[dict[str, str], bytes]]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    received: asyncio.Queue[tuple[dict[str, str], bytes]] = asyncio.Queue()

    async def handle(request: web.Request) -> web.Response:
        received.put_nowait((dict(request.headers), await request.read()))
        return web.Response()

    app = web.Application()
    app.router.add_post("/cb", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield Receiver(f"http://127.0.0.1:{runner.addresses[0][1]}/cb", received)
    await runner.cleanup()


async def take(receiver: Receiver, count: int) -> list[dict[str, Any]]:
    out = []
    for _ in range(count):
        headers, body = await asyncio.wait_for(receiver.received.get(), 10)
        digest = hmac.new(KEY.encode(), body, hashlib.sha256).digest()
        assert headers["Sign"] == base64.b64encode(digest).decode()
        out.append(json.loads(body))
    return out


class TestOverHttp:
    async def test_a_vod_recording_delivers_its_whole_signed_sequence(
        self, receiver: Receiver
    ) -> None:
        clock = ManualClock()
        settings = CallbackSettings(url=receiver.url, key=KEY, events=ALL_EVENTS)
        async with Simulator(callback=settings, clock=clock) as sim:
            sim.add_task(APP, "vod-1", Life(idle=0, in_progress=5, exited=1), vod=True)
            clock.advance(10)
            sim.run_due_events()
            bodies = await take(receiver, 4)
        assert [b["EventType"] for b in bodies] == [301, 302, 311, 312]
        commit = bodies[2]["EventInfo"]["Payload"]
        assert commit["Status"] == 0
        assert set(commit["TencentVod"]) >= {"FileId", "VideoUrl"}
        assert all(b["EventInfo"]["TaskId"] == "vod-1" for b in bodies)
        stamps = [b["EventInfo"]["EventMsTs"] for b in bodies]
        assert stamps == sorted(stamps)

    async def test_the_control_switch_makes_a_running_recording_fail_its_upload(
        self, receiver: Receiver
    ) -> None:
        clock = ManualClock()
        settings = CallbackSettings(url=receiver.url, key=KEY, events=ALL_EVENTS)
        async with Simulator(callback=settings, clock=clock) as sim:
            sim.add_task(APP, "cos-1", Life(idle=0, in_progress=5, exited=1))
            assert [b["EventType"] for b in await take(receiver, 4)] == [301, 303, 307, 304]
            async with SimulatorControl(sim.url) as control:
                info = await control.set_upload(
                    APP, "cos-1", upload_failure="upload_error", upload_error_code="AccessDenied"
                )
                assert info["upload"]["fault"] == "upload_error"
                with pytest.raises(Exception, match="400"):
                    await control.set_upload(APP, "cos-1", upload_failure="vod_commit_error")
                with pytest.raises(Exception, match="404"):
                    await control.set_upload(APP, "nope", upload_finish=False)
            clock.advance(10)
            sim.run_due_events()
            rest = await take(receiver, 3)
        assert [b["EventType"] for b in rest] == [302, 308, 305]
        assert rest[1]["EventInfo"]["Payload"]["Code"] == "AccessDenied"
        assert rest[2]["EventInfo"]["Payload"] == {"Status": 1}

    async def test_a_task_added_through_the_control_surface_takes_upload_keys(
        self, receiver: Receiver
    ) -> None:
        settings = CallbackSettings(url=receiver.url, key=KEY, events=frozenset({311, 312}))
        async with Simulator(callback=settings) as sim, SimulatorControl(sim.url) as control:
            await control.add_task(
                APP, "vod-2", idle=0, in_progress=0, exited=0, vod=True, upload_finish=False
            )
            (commit,) = await take(receiver, 1)
            info = await control.task(APP, "vod-2")
        assert commit["EventType"] == 311
        assert info["upload"]["finish"] is False
        assert info["callbacks_sent"] == ["311"]
