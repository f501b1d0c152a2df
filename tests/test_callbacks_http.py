"""TRTC recording callbacks posted to a live daemon: authentication, each event's effect, and
hostile bodies that are answered and change nothing."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from structlog.testing import capture_logs

from monitor.http.callbacks import MAX_BODY_BYTES
from monitor.models import Source, Status, TaskKey
from monitor.simulator import Simulator, sign
from tests.callbacks_support import (
    APP,
    DOC_BODY,
    EXTRA,
    KEY,
    PATH,
    body,
    callback_counts,
    callback_transitions,
    post,
    task_api,
)
from tests.conftest import DaemonFactory, RunningDaemon

# ------------------------------------------------------------------------------ live endpoint


@pytest.fixture
async def running(
    simulator: Simulator, make_daemon: DaemonFactory, monkeypatch: pytest.MonkeyPatch
) -> RunningDaemon:
    monkeypatch.setenv("TEST_CALLBACK_KEY", KEY)
    return await make_daemon(simulator.url, EXTRA)


class TestAuthentication:
    async def test_a_changed_byte_a_wrong_key_or_no_header_get_401_and_change_nothing(
        self, running: RunningDaemon
    ) -> None:
        raw = body(302, "t-auth", {"LeaveCode": 3})
        changed = raw.replace(b'"LeaveCode": 3', b'"LeaveCode": 4')
        assert changed != raw
        with capture_logs() as logs:
            answers = [
                await post(running, changed, signature=sign(KEY, raw)),
                await post(running, raw, key="wrongKey0123456789"),
                await post(running, raw, key=None),
            ]
        for status, answer in answers:
            assert status == 401
            assert answer["error"]["code"] == "unauthorized"
        assert len(running.daemon.registry) == 0
        assert await running.daemon.tracker.transitions(TaskKey(APP, "t-auth")) == []
        counts = await callback_counts(running)
        assert counts[("none", "unauthorized")] == 3
        assert not any(outcome == "accepted" for _, outcome in counts)
        # Refusals are logged, rate limited, and never with the key or a signature.
        refused = [e for e in logs if e["event"] == "recording_callback_unauthorized"]
        assert len(refused) == 1
        assert KEY not in repr(logs)
        assert sign(KEY, raw) not in repr(logs)

        # The same body, correctly signed, does act: the refusals above were the signature's.
        assert await post(running, raw) == (200, {"status": "ok"})
        assert len(await callback_transitions(running, "t-auth")) == 1

    async def test_without_a_configured_key_everything_is_refused_with_one_warning(
        self, running: RunningDaemon
    ) -> None:
        # As after a reload that lost the key.
        running.daemon._keys = dataclasses.replace(running.daemon._keys, callback_key=None)
        raw = body(301, "t-nokey", {"Status": 0})
        with capture_logs() as logs:
            first = await post(running, raw)
            second = await post(running, raw)
        assert first[0] == second[0] == 401
        assert [e["event"] for e in logs].count("callback_key_missing") == 1
        assert len(running.daemon.registry) == 0
        assert (await callback_counts(running))[("none", "unauthorized")] == 2

    async def test_an_oversized_body_gets_413_before_anything_else(
        self, running: RunningDaemon
    ) -> None:
        raw = b" " * (MAX_BODY_BYTES + 1)
        status, answer = await post(running, raw)
        assert status == 413
        assert answer["error"]["code"] == "payload_too_large"

        async def chunks() -> AsyncIterator[bytes]:
            for _ in range(MAX_BODY_BYTES // 4096 + 2):
                yield b" " * 4096

        headers = {"Sign": sign(KEY, b""), "SdkAppId": str(APP)}
        async with running.session.post(
            f"{running.url}{PATH}", data=chunks(), headers=headers
        ) as r:
            assert r.status == 413  # no Content-Length: refused while reading
        assert (await callback_counts(running))[("none", "invalid")] == 2


class TestEvents:
    async def test_a_301_registers_the_task_with_the_configured_account_region_and_labels(
        self, running: RunningDaemon
    ) -> None:
        now = time.time()  # the event's times too: a daemon refuses times beyond max_age
        raw = json.dumps(
            {
                "EventGroupId": 3,
                "EventType": 301,
                "CallbackTs": int(now * 1000),
                "EventInfo": {
                    "RoomId": 8489,
                    "EventTs": str(int(now)),
                    "EventMsTs": int(now * 1000),
                    "UserId": "recorder_85034614",
                    "TaskId": "t-301",
                    "Payload": {"Status": 0},
                },
            }
        ).encode()
        assert await post(running, raw) == (200, {"status": "ok"})
        task = running.daemon.registry.get(TaskKey(APP, "t-301"))
        assert task is not None
        assert (task.account, task.region, task.source) == (
            "default",
            "ap-guangzhou",
            Source.CALLBACK,
        )
        assert task.labels == {"room": "8489", "user": "recorder_85034614"}
        assert (await callback_counts(running))[("301", "accepted")] == 1

    async def test_a_failed_start_is_counted_but_registers_nothing(
        self, running: RunningDaemon
    ) -> None:
        with capture_logs() as logs:
            assert (await post(running, body(301, "t-fail", {"Status": 1})))[0] == 200
        assert running.daemon.registry.get(TaskKey(APP, "t-fail")) is None
        assert (await callback_counts(running))[("301", "accepted")] == 1
        [line] = [e for e in logs if e["event"] == "recording_callback"]
        assert (line["log_level"], line["effect"], line["status"]) == ("warning", "start_failed", 1)

    async def test_a_302_for_an_unknown_task_registers_it_so_the_exit_is_not_lost(
        self, running: RunningDaemon
    ) -> None:
        assert (await post(running, body(302, "t-late", {"LeaveCode": 4})))[0] == 200
        task = running.daemon.registry.get(TaskKey(APP, "t-late"))
        assert task is not None
        assert task.source is Source.CALLBACK
        [exit_] = await callback_transitions(running, "t-late")
        assert (exit_.from_status, exit_.to_status) == (Status.PENDING, Status.EXITED)
        assert exit_.detail["leave_code"] == 4

    async def test_a_302_for_a_removed_task_does_not_bring_it_back(
        self, running: RunningDaemon
    ) -> None:
        assert (await running.register(APP, "t-gone", interval="60s")).status == 201
        async with running.session.delete(
            f"{running.url}/api/v1/tasks/{APP}/t-gone", headers=running.auth()
        ) as r:
            assert r.status == 200
        for raw in (body(302, "t-gone", {"LeaveCode": 0}), body(301, "t-gone", {"Status": 0})):
            assert (await post(running, raw))[0] == 200
        task = running.daemon.registry.get(TaskKey(APP, "t-gone"))
        assert task is not None
        assert task.status is Status.REMOVED
        assert await callback_transitions(running, "t-gone") == []

    async def test_the_same_302_delivered_three_times_gives_one_transition(
        self, running: RunningDaemon
    ) -> None:
        at = time.time()
        raw = body(302, "t-dup", {"LeaveCode": 3}, at=at)
        for _ in range(3):
            assert await post(running, raw) == (200, {"status": "ok"})
        # A retry sent ten seconds later carries another CallbackTs: still the same message.
        later = body(302, "t-dup", {"LeaveCode": 3}, at=at, sent=at + 10.0)
        assert later != raw
        assert await post(running, later) == (200, {"status": "ok"})
        assert len(await callback_transitions(running, "t-dup")) == 1
        counts = await callback_counts(running)
        assert counts[("302", "accepted")] == 1
        assert counts[("302", "duplicate")] == 3

    async def test_file_and_vod_results_show_in_the_task_api(self, running: RunningDaemon) -> None:
        assert (await post(running, body(301, "t-files", {"Status": 0})))[0] == 200
        files = [{"FileName": "a.mp4", "UserId": "u1", "TrackType": "audio_video"}]
        vod = {"FileId": "5285890784246869", "VideoUrl": "http://vod.example/a.mp4"}
        for raw in (
            body(307, "t-files", {"FileName": "a.m3u8", "UserId": "u1", "TrackType": "video"}),
            body(310, "t-files", {"Status": 0, "FileMessage": files}),
            body(311, "t-files", {"Status": 0, "TencentVod": vod}),
            body(312, "t-files", {"Status": 0}),
        ):
            assert await post(running, raw) == (200, {"status": "ok"})
        extra = (await task_api(running, "t-files"))["extra"]
        assert extra["mp4_files"] == files
        assert extra["vod_file_id"] == vod["FileId"]
        assert extra["vod_video_url"] == vod["VideoUrl"]
        assert extra["vod_finished"] is True
        counts = await callback_counts(running)
        for event_type in ("301", "307", "310", "311", "312"):
            assert counts[(event_type, "accepted")] == 1

    async def test_unknown_types_and_other_groups_are_acknowledged_and_counted(
        self, running: RunningDaemon
    ) -> None:
        assert await post(running, body(399, "t-x")) == (200, {"status": "ok"})
        assert await post(running, DOC_BODY) == (200, {"status": "ok"})
        counts = await callback_counts(running)
        assert counts[("other", "unknown")] == 1
        assert counts[("other", "ignored")] == 1
        assert len(running.daemon.registry) == 0

    async def test_auto_register_off_leaves_unknown_tasks_alone(
        self, simulator: Simulator, make_daemon: DaemonFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TEST_CALLBACK_KEY", KEY)
        running = await make_daemon(
            simulator.url, EXTRA.replace("auto_register: true", "auto_register: false")
        )
        assert (await post(running, body(301, "t-off", {"Status": 0})))[0] == 200
        assert (await post(running, body(302, "t-off", {"LeaveCode": 3})))[0] == 200
        assert len(running.daemon.registry) == 0
        counts = await callback_counts(running)
        assert counts[("301", "accepted")] == counts[("302", "accepted")] == 1


# ------------------------------------------------------------------------------ hostile input

JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=16,
)
ODD = JSON_VALUES | st.sampled_from(["", "301", "1664209748", "\ud800", "a/b", "\x00"])
VALID_CALLBACK = st.builds(
    lambda event_type, task_id, room: {
        "EventGroupId": 3,
        "EventType": event_type,
        "CallbackTs": int(time.time() * 1000),
        "SdkAppId": APP,
        "EventInfo": {
            "RoomId": room,
            "EventTs": int(time.time()),
            "EventMsTs": int(time.time() * 1000),
            "UserId": "recorder",
            "TaskId": task_id,
            "Payload": {
                "Status": 0,
                "LeaveCode": 3,
                "FileName": "a.m3u8",
                "FileMessage": [{"FileName": "a.mp4", "UserId": "u", "StartTimeStamp": 1}],
                "TencentVod": {"FileId": "528589", "VideoUrl": "http://vod.example/a.mp4"},
            },
        },
    },
    st.integers(301, 313),
    st.sampled_from(["fuzz-1", "fuzz-2"]),
    st.sampled_from([8489, "r-1"]),
)
# Every field the parser reads; one of them is replaced by anything at all, or removed.
FIELD_PATHS: list[tuple[str | int, ...]] = [
    ("EventGroupId",),
    ("EventType",),
    ("SdkAppId",),
    ("EventInfo",),
    ("EventInfo", "RoomId"),
    ("EventInfo", "EventTs"),
    ("EventInfo", "EventMsTs"),
    ("EventInfo", "UserId"),
    ("EventInfo", "TaskId"),
    ("EventInfo", "Payload"),
    ("EventInfo", "Payload", "Status"),
    ("EventInfo", "Payload", "LeaveCode"),
    ("EventInfo", "Payload", "FileName"),
    ("EventInfo", "Payload", "FileMessage"),
    ("EventInfo", "Payload", "FileMessage", 0),
    ("EventInfo", "Payload", "FileMessage", 0, "FileName"),
    ("EventInfo", "Payload", "FileMessage", 0, "UserId"),
    ("EventInfo", "Payload", "FileMessage", 0, "StartTimeStamp"),
    ("EventInfo", "Payload", "TencentVod"),
    ("EventInfo", "Payload", "TencentVod", "FileId"),
    ("EventInfo", "Payload", "TencentVod", "VideoUrl"),
]
REMOVED = object()


def corrupted(base: dict[str, Any], path: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    """``base`` with the field at ``path`` replaced by ``value`` (or removed)."""
    data: dict[str, Any] = json.loads(json.dumps(base))
    parent: Any = data
    for step in path[:-1]:
        parent = parent[step]
    if value is REMOVED:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return data


FUZZ = settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


async def assert_answered(running: RunningDaemon, raw: bytes, app: int | None = APP) -> int:
    status, answer = await post(running, raw, app=app)
    # 403: a corrupted time may make the message older than max_age (a replay).
    assert status in {200, 400, 403, 413}, (status, answer)
    assert answer == {"status": "ok"} or set(answer["error"]) == {"code", "message"}
    return status


class TestHostileBodies:
    @FUZZ
    @given(raw=st.binary(max_size=2048))
    async def test_random_signed_bytes_never_cause_a_server_error(
        self, running: RunningDaemon, raw: bytes
    ) -> None:
        await assert_answered(running, raw)

    @FUZZ
    @given(value=JSON_VALUES)
    async def test_random_signed_json_never_causes_a_server_error(
        self, running: RunningDaemon, value: Any
    ) -> None:
        await assert_answered(running, json.dumps(value).encode())

    @settings(FUZZ, max_examples=250)
    @given(
        base=VALID_CALLBACK,
        path=st.sampled_from(FIELD_PATHS),
        value=ODD | st.just(REMOVED),
        app=st.sampled_from([APP, None]),
    )
    async def test_a_callback_with_any_one_field_corrupted_never_causes_a_server_error(
        self,
        running: RunningDaemon,
        base: dict[str, Any],
        path: tuple[str | int, ...],
        value: Any,
        app: int | None,
    ) -> None:
        await assert_answered(running, json.dumps(corrupted(base, path, value)).encode(), app=app)

    async def test_pathological_but_signed_bodies_are_400(self, running: RunningDaemon) -> None:
        for raw in (
            b"[" * 60_000,
            b'{"EventGroupId": 3, "EventType": 302, "EventInfo": {"EventTs": Infinity}}',
            b"\xc3\x28",
            b'{"EventGroupId": 3, "EventType": 302, "EventInfo": {"TaskId": "'
            + b"9" * 5000
            + b'"}}',
        ):
            assert await assert_answered(running, raw) == 400
        assert (await callback_counts(running))[("none", "invalid")] == 3
