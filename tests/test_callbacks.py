"""TRTC recording callbacks: signature, parsing, duplicates, and their effect on a live daemon."""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from monitor.callbacks.dedupe import DeliveryCache
from monitor.callbacks.effects import exit_detail, task_facts, task_labels
from monitor.callbacks.parse import (
    MAX_FILES,
    Callback,
    CallbackInvalid,
    Kind,
    delivery_key,
    event_label,
    parse_callback,
)
from monitor.callbacks.signature import sign_body, verify_signature
from monitor.http.callbacks import MAX_BODY_BYTES
from monitor.models import Source, Status, TaskKey
from monitor.simulator import CallbackSettings, Life, Simulator, sign
from monitor.simulator.callbacks import build_body
from tests.conftest import DaemonFactory, RunningDaemon
from tests.support import free_port, wait_for_async

APP = 1400000001
KEY = "cbKey0123456789abcdef"
PATH = "/callbacks/trtc"
DESCRIBE = "DescribeCloudRecording"
EXTRA = """
callbacks:
  key_env: TEST_CALLBACK_KEY
  auto_register: true
  account: default
  region: ap-guangzhou
"""

# The vector of reference/TRTC.md: key 123654 over this exact body (tabs and newlines).
DOC_KEY = "123654"
DOC_BODY = (
    b'{\n\t"EventGroupId":\t2,\n\t"EventType":\t204,\n\t"CallbackTs":\t1664209748188,\n'
    b'\t"EventInfo":\t{\n\t\t"RoomId":\t8489,\n\t\t"EventTs":\t1664209748,\n'
    b'\t\t"EventMsTs":\t1664209748180,\n\t\t"UserId":\t"user_85034614",\n\t\t"Reason":\t0\n\t}\n}'
)
DOC_SIGN = "kkoFeO3Oh2ZHnjtg8tEAQhtXK16/KI05W3BQff8IvGA="


def body(
    event_type: int,
    task_id: str = "task-1",
    payload: dict[str, Any] | None = None,
    *,
    room_id: str | int = "room-1",
    user_id: str = "recorder_1",
    at: float | None = None,
    sent: float | None = None,
) -> bytes:
    """A callback body exactly as the simulator (and TRTC) builds it; sent just now unless
    ``at`` says when the event was (a daemon refuses messages older than its max_age)."""
    if at is None:
        at = time.time()
    return build_body(
        event_type,
        room_id=room_id,
        user_id=user_id,
        task_id=task_id,
        payload=payload or {},
        event_wall=at,
        callback_wall=at + 0.05 if sent is None else sent,
    )


def parsed(raw: bytes, header: str | None = str(APP)) -> Callback:
    return parse_callback(raw, header)


# ------------------------------------------------------------------------------ pure parts


class TestSignature:
    def test_the_documented_example_verifies(self) -> None:
        assert sign_body(DOC_KEY, DOC_BODY) == DOC_SIGN
        assert verify_signature(DOC_KEY, DOC_BODY, DOC_SIGN)

    def test_a_changed_byte_a_wrong_key_or_no_header_do_not_verify(self) -> None:
        changed = DOC_BODY.replace(b"8489", b"8488")
        assert not verify_signature(DOC_KEY, changed, DOC_SIGN)
        assert not verify_signature("123655", DOC_BODY, DOC_SIGN)
        assert not verify_signature(DOC_KEY, DOC_BODY, None)
        assert not verify_signature(None, DOC_BODY, DOC_SIGN)
        assert not verify_signature("", DOC_BODY, DOC_SIGN)

    def test_a_non_ascii_header_is_refused_without_raising(self) -> None:
        assert not verify_signature(
            DOC_KEY, DOC_BODY, "kkoFeO3Oh2ZHnjtg8tEAQhtXK16/KI05W3BQff8Iv\u00e9="
        )

    @given(key=st.text(min_size=1, max_size=32), raw=st.binary(max_size=512))
    def test_it_agrees_with_the_simulators_signer(self, key: str, raw: bytes) -> None:
        assert sign_body(key, raw) == sign(key, raw)
        assert verify_signature(key, raw, sign(key, raw))


class TestEventLabel:
    def test_known_types_keep_their_number_and_everything_else_shares_two_words(self) -> None:
        assert [event_label(t) for t in (301, 302, 312)] == ["301", "302", "312"]
        assert {event_label(t) for t in (0, 204, 300, 313, 99999, -1)} == {"other"}
        assert event_label(None) == "none"


class TestParsing:
    def test_a_simulator_302_is_read_with_its_leave_code_and_times(self) -> None:
        event = parsed(body(302, "t-1", {"LeaveCode": 3}, at=1_700_000_000.25))
        assert event.kind is Kind.RECORDING
        assert (event.sdk_app_id, event.task_id, event.event_type) == (APP, "t-1", 302)
        assert event.leave_code == 3
        assert event.event_ts == 1_700_000_000
        assert event.event_ms_ts == 1_700_000_000_250
        assert exit_detail(event) == {"leave_code": 3, "event_ts": 1_700_000_000}

    def test_room_id_and_event_ts_are_read_in_both_of_their_shapes(self) -> None:
        numeric = {
            "EventGroupId": 3,
            "EventType": 301,
            "CallbackTs": 1664209748188,
            "EventInfo": {
                "RoomId": 8489,
                "EventTs": "1664209748",
                "UserId": "rec",
                "TaskId": "t-2",
                "Payload": {"Status": 0},
            },
        }
        event = parsed(json.dumps(numeric).encode())
        assert event.room_id == "8489"
        assert event.event_ts == 1664209748
        assert task_labels(event) == {"room": "8489", "user": "rec"}
        numeric["EventInfo"]["RoomId"] = "r-42"  # type: ignore[index]
        numeric["EventInfo"]["EventTs"] = 1664209748  # type: ignore[index]
        event = parsed(json.dumps(numeric).encode())
        assert (event.room_id, event.event_ts) == ("r-42", 1664209748)

    def test_numbers_sent_as_strings_are_tolerated(self) -> None:
        raw = json.dumps(
            {
                "EventGroupId": "3",
                "EventType": "302",
                "EventInfo": {"TaskId": "t", "Payload": {"LeaveCode": "99"}},
            }
        ).encode()
        event = parsed(raw)
        assert (event.event_type, event.leave_code) == (302, 99)

    def test_sdk_app_id_comes_from_the_header_or_the_body_and_both_must_agree(self) -> None:
        raw = body(301)
        assert parsed(raw, " 1400000001 ").sdk_app_id == APP
        with_app = json.loads(raw)
        with_app["SdkAppId"] = APP
        assert parsed(json.dumps(with_app).encode(), None).sdk_app_id == APP
        with pytest.raises(CallbackInvalid, match="disagree"):
            parsed(json.dumps(with_app).encode(), "1400000002")
        with pytest.raises(CallbackInvalid, match="missing"):
            parsed(raw, None)
        for bad in ("0", "-5", "abc", "1.5", "", "99999999999999999999999"):
            with pytest.raises(CallbackInvalid, match="SdkAppId header"):
                parsed(raw, bad)

    def test_wrong_shapes_are_invalid_and_name_the_field(self) -> None:
        cases: list[tuple[Any, str]] = [
            ([1, 2], "JSON object"),
            ({"EventType": 301}, "EventGroupId"),
            ({"EventGroupId": 3, "EventType": True}, "EventType"),
            ({"EventGroupId": 3, "EventType": 302, "EventInfo": []}, "EventInfo"),
            ({"EventGroupId": 3, "EventType": 302, "EventInfo": {"TaskId": "a/b"}}, "TaskId"),
            (
                {"EventGroupId": 3, "EventType": 302, "EventInfo": {"TaskId": "t", "Payload": 1}},
                "Payload",
            ),
            (
                {
                    "EventGroupId": 3,
                    "EventType": 302,
                    "EventInfo": {"TaskId": "t", "Payload": {"LeaveCode": "three"}},
                },
                "LeaveCode",
            ),
            (
                {"EventGroupId": 3, "EventType": 302, "EventInfo": {"TaskId": "t", "EventTs": -1}},
                "EventTs",
            ),
            (
                {"EventGroupId": 3, "EventType": 301, "EventInfo": {"TaskId": "t", "RoomId": {}}},
                "RoomId",
            ),
            (
                {
                    "EventGroupId": 3,
                    "EventType": 310,
                    "EventInfo": {"TaskId": "t", "Payload": {"FileMessage": {"a": 1}}},
                },
                "FileMessage",
            ),
            (
                {
                    "EventGroupId": 3,
                    "EventType": 311,
                    "EventInfo": {"TaskId": "t", "Payload": {"TencentVod": {"VideoUrl": 5}}},
                },
                "VideoUrl",
            ),
        ]
        for data, field in cases:
            with pytest.raises(CallbackInvalid, match=field):
                parsed(json.dumps(data).encode())

    def test_the_metric_label_of_an_invalid_body_is_its_type_once_known(self) -> None:
        with pytest.raises(CallbackInvalid) as no_type:
            parsed(b"{not json")
        assert no_type.value.label == "none"
        with pytest.raises(CallbackInvalid) as typed:
            parsed(json.dumps({"EventGroupId": 3, "EventType": 302, "EventInfo": 7}).encode())
        assert typed.value.label == "302"

    def test_non_json_constants_and_deep_nesting_are_invalid_not_errors(self) -> None:
        for raw in (
            b'{"EventGroupId": 3, "EventType": 302, "EventInfo": {"EventTs": NaN}}',
            b"[" * 60_000,
            b"\xff\xfe\x00garbage",
            b"",
        ):
            with pytest.raises(CallbackInvalid):
                parsed(raw)

    def test_other_groups_are_ignored_and_unknown_recording_types_are_marked_unknown(self) -> None:
        assert parsed(DOC_BODY, None).kind is Kind.IGNORED
        assert parsed(body(399), str(APP)).kind is Kind.UNKNOWN

    def test_hostile_text_is_made_safe_to_store_and_show(self) -> None:
        raw = json.dumps(
            {
                "EventGroupId": 3,
                "EventType": 301,
                "EventInfo": {"TaskId": "t", "RoomId": "a\ud800b\n" + "x" * 5000, "UserId": "u"},
            }
        ).encode()
        event = parsed(raw)
        assert event.room_id is not None
        event.room_id.encode("utf-8")  # no lone surrogate left
        assert "\n" not in event.room_id
        assert len(task_labels(event)["room"]) == 256


class TestDeliveryKey:
    def test_a_retry_sent_later_and_reserialised_is_the_same_delivery(self) -> None:
        at = 1_700_000_000.0  # one event, sent twice
        first = json.loads(body(302, payload={"LeaveCode": 3}, at=at, sent=at + 0.1))
        retry = json.loads(body(302, payload={"LeaveCode": 3}, at=at, sent=at + 10.1))
        assert first["CallbackTs"] != retry["CallbackTs"]
        reordered = dict(reversed(list(retry.items())))
        assert delivery_key(APP, first) == delivery_key(APP, reordered)

    def test_different_events_apps_or_payloads_are_different_deliveries(self) -> None:
        at = 1_700_000_000.0
        base = json.loads(body(302, payload={"LeaveCode": 3}, at=at))
        keys = {
            delivery_key(APP, base),
            delivery_key(APP + 1, base),
            delivery_key(APP, json.loads(body(302, payload={"LeaveCode": 0}, at=at))),
            delivery_key(APP, json.loads(body(302, payload={"LeaveCode": 3}, at=at + 1))),
            delivery_key(APP, json.loads(body(302, "task-2", {"LeaveCode": 3}, at=at))),
        }
        assert len(keys) == 5


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class TestDeliveryCache:
    def test_a_delivery_is_new_once_within_its_lifetime_and_new_again_after(self) -> None:
        clock = FakeClock()
        cache = DeliveryCache(ttl=60.0, clock=clock)
        assert cache.claim(b"a")
        clock.now += 59.0
        assert not cache.claim(b"a")
        clock.now += 1.0
        assert cache.claim(b"a")

    def test_it_holds_at_most_max_entries_forgetting_the_oldest(self) -> None:
        clock = FakeClock()
        cache = DeliveryCache(ttl=60.0, max_entries=3, clock=clock)
        for key in (b"1", b"2", b"3", b"4"):
            clock.now += 1.0
            assert cache.claim(key)
        assert len(cache) == 3
        assert cache.claim(b"1")  # evicted, so new again
        assert not cache.claim(b"4")

    def test_expired_entries_are_dropped_so_the_size_follows_the_traffic(self) -> None:
        clock = FakeClock()
        cache = DeliveryCache(ttl=10.0, clock=clock)
        for i in range(100):
            cache.claim(str(i).encode())
        clock.now += 10.0
        cache.claim(b"fresh")
        assert len(cache) == 1

    def test_a_released_claim_can_be_claimed_again(self) -> None:
        cache = DeliveryCache(clock=FakeClock())
        assert cache.claim(b"a")
        cache.release(b"a")
        assert cache.claim(b"a")


class TestTaskFacts:
    def test_mp4_files_of_successive_310s_are_merged_by_file_name(self) -> None:
        def mp4(*names: str) -> Callback:
            files = [{"FileName": n, "UserId": "u", "TrackType": "audio_video"} for n in names]
            return parsed(body(310, payload={"Status": 0, "FileMessage": files}))

        first = task_facts(mp4("a.mp4", "b.mp4"), {})
        assert first is not None
        second = task_facts(mp4("b.mp4", "c.mp4"), first)
        assert second is not None
        assert [f["FileName"] for f in second["mp4_files"]] == ["a.mp4", "b.mp4", "c.mp4"]
        assert second["mp4_status"] == 0

    def test_the_kept_file_list_is_bounded(self) -> None:
        names = [f"f{i}.mp4" for i in range(MAX_FILES + 50)]
        facts: dict[str, Any] = {}
        for chunk in (names[:MAX_FILES], names[MAX_FILES:]):
            files = [{"FileName": n} for n in chunk]
            new = task_facts(parsed(body(310, payload={"FileMessage": files})), facts)
            assert new is not None
            facts = new
        assert len(facts["mp4_files"]) == MAX_FILES
        assert facts["mp4_files"][-1]["FileName"] == names[-1]

    def test_a_vod_commit_keeps_the_file_id_and_url_and_a_vod_finish_is_noted(self) -> None:
        vod = {"FileId": "5285890784246869", "VideoUrl": "http://vod.example/x.mp4", "UserId": "u"}
        facts = task_facts(parsed(body(311, payload={"Status": 0, "TencentVod": vod})), {})
        assert facts is not None
        assert facts["vod_file_id"] == vod["FileId"]
        assert facts["vod_video_url"] == vod["VideoUrl"]
        assert facts["vod_files"] == [vod]
        assert task_facts(parsed(body(312, payload={"Status": 0})), {}) == {
            "vod_finished": True,
            "vod_status": 0,
        }

    def test_other_events_leave_no_facts(self) -> None:
        for event_type in (301, 302, 303, 307, 308):
            assert task_facts(parsed(body(event_type)), {}) is None


# ------------------------------------------------------------------------------ live endpoint


@pytest.fixture
async def running(
    simulator: Simulator, make_daemon: DaemonFactory, monkeypatch: pytest.MonkeyPatch
) -> RunningDaemon:
    monkeypatch.setenv("TEST_CALLBACK_KEY", KEY)
    return await make_daemon(simulator.url, EXTRA)


async def post(
    running: RunningDaemon,
    raw: bytes,
    *,
    key: str | None = KEY,
    signature: str | None = None,
    app: int | None = APP,
) -> tuple[int, Any]:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["Sign"] = signature or sign(key, raw)
    if app is not None:
        headers["SdkAppId"] = str(app)
    async with running.session.post(f"{running.url}{PATH}", data=raw, headers=headers) as r:
        return r.status, await r.json(content_type=None)


async def callback_counts(running: RunningDaemon) -> dict[tuple[str, str], float]:
    """``trtc_monitor_callbacks_total`` as Prometheus scrapes it."""
    async with running.session.get(f"{running.url}/metrics") as r:
        text = await r.text()
    counts: dict[tuple[str, str], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "trtc_monitor_callbacks_total":
                counts[(sample.labels["event_type"], sample.labels["outcome"])] = sample.value
    return counts


async def task_api(running: RunningDaemon, task_id: str) -> dict[str, Any]:
    async with running.session.get(f"{running.url}/api/v1/tasks/{APP}/{task_id}") as r:
        assert r.status == 200
        result: dict[str, Any] = await r.json()
        return result


async def callback_transitions(running: RunningDaemon, task_id: str) -> list[Any]:
    history = await running.daemon.tracker.transitions(TaskKey(APP, task_id))
    return [t for t in history if t.source is Source.CALLBACK]


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


# ------------------------------------------------------------------------------ with the simulator

SimPair = tuple[Simulator, RunningDaemon]
PairFactory = Callable[[frozenset[int]], Awaitable[SimPair]]


@pytest.fixture
async def sim_pair(
    make_daemon: DaemonFactory, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[PairFactory]:
    """A daemon polling a simulator that sends it signed callbacks.

    Each needs the other's address: the simulator's port is chosen first, the daemon started
    against it, and the simulator then started on that port aiming its callbacks at the daemon.
    """
    monkeypatch.setenv("TEST_CALLBACK_KEY", KEY)
    sims: list[Simulator] = []

    async def factory(events: frozenset[int]) -> SimPair:
        port = free_port()
        running = await make_daemon(f"http://127.0.0.1:{port}", EXTRA)
        settings = CallbackSettings(url=f"{running.url}{PATH}", key=KEY, events=events)
        sim = Simulator(seed=7, callback=settings)
        sims.append(sim)
        await sim.start(port=port)
        return sim, running

    try:
        yield factory
    finally:
        for sim in sims:
            await sim.stop()


def describes(sim: Simulator, task_id: str) -> list[float]:
    return [a.wall for a in sim.arrivals if a.action == DESCRIBE and a.task_id == task_id]


class TestWithTheSimulator:
    async def test_a_301_from_the_simulator_registers_a_task_that_is_then_polled(
        self, sim_pair: PairFactory
    ) -> None:
        sim, running = await sim_pair(frozenset({301, 302}))
        task_id = sim.add_task(APP, life=Life(idle=60.0), room_id=8489, user_id="rec_1")
        key = TaskKey(APP, task_id)

        async def polled() -> bool:
            task = running.daemon.registry.get(key)
            return task is not None and task.status is not Status.PENDING

        await wait_for_async(polled, timeout=10, what="the task to be registered and polled")
        task = running.daemon.registry.get(key)
        assert task is not None
        assert task.status is Status.IDLE
        assert task.source is Source.CALLBACK
        assert task.labels == {"room": "8489", "user": "rec_1"}
        assert describes(sim, task_id)
        assert sim.callback_stats["delivered"] == 1
        assert (await callback_counts(running))[("301", "accepted")] == 1

    @pytest.mark.parametrize("leave_code", [3, 0])
    async def test_a_302_records_the_exit_at_once_and_a_confirming_poll_follows(
        self, sim_pair: PairFactory, leave_code: int
    ) -> None:
        # Only 302 is sent, so the task keeps the 60 s interval it is registered with here.
        sim, running = await sim_pair(frozenset({302}))
        task_id = sim.add_task(APP, life=Life(idle=600.0, exited=30.0))
        assert (await running.register(APP, task_id, interval="60s")).status == 201
        key = TaskKey(APP, task_id)

        async def observed() -> bool:
            task = running.daemon.registry.get(key)
            return task is not None and task.status is Status.IDLE

        await wait_for_async(observed, timeout=10, what="the first poll")
        assert len(describes(sim, task_id)) == 1
        assert sim.exit_task(APP, task_id, leave_code=leave_code)

        async def exited() -> bool:
            task = running.daemon.registry.get(key)
            return task is not None and task.status is Status.EXITED

        await wait_for_async(exited, timeout=10, what="the callback's exit")
        [exit_] = await callback_transitions(running, task_id)
        assert (exit_.from_status, exit_.to_status) == (Status.IDLE, Status.EXITED)
        assert exit_.detail["leave_code"] == leave_code
        assert isinstance(exit_.detail["event_ts"], int)

        async def confirmed() -> list[float] | None:
            walls = describes(sim, task_id)
            return walls if len(walls) >= 2 else None

        walls = await wait_for_async(confirmed, timeout=10, what="the confirming poll")
        # The exit was known from the callback before the simulator was polled again; the
        # next regular poll was a minute away.
        assert exit_.at <= walls[1]
        assert walls[1] - walls[0] < 60.0
        task = running.daemon.registry.get(key)
        assert task is not None
        assert task.status is Status.EXITED  # the poll confirms: no further transition
        assert task.extra["leave_code"] == leave_code
        api = await task_api(running, task_id)
        assert api["recent_transitions"][0]["source"] == "callback"
        assert api["recent_transitions"][0]["detail"]["leave_code"] == leave_code
