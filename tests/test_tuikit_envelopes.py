"""The recording events as TUICallKit and TUILiveKit deliver them: the Chat webhook
authentication and the unwrapping into the group-3 event, pure and against the simulator."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from urllib.parse import parse_qsl, urlsplit

import pytest
from aiohttp import web

from monitor.callbacks.parse import CallbackInvalid, Kind, parse_callback
from monitor.callbacks.tuikit import (
    CALL_RECORD_CHANGED,
    LIVE_RECORDING_CHANGED,
    chat_sign,
    check_chat_auth,
    parse_tuikit,
    request_time,
)
from monitor.simulator import CallbackSettings, Life, ManualClock, Simulator

APP = 1400000001
TOKEN = "chat-webhook-token"
TASK = "task-tuikit-1"
EVENT = {
    "EventGroupId": 3,
    "EventType": 302,
    "CallbackTs": 1774425607091,
    "EventInfo": {
        "RoomId": "1280586498",
        "EventTs": 1774425607,
        "EventMsTs": 1774425607077,
        "UserId": "callkit_record",
        "TaskId": TASK,
        "Payload": {"LeaveCode": 1},
    },
}


def query(command: str, at: int = 1774425607, token: str = TOKEN) -> dict[str, str]:
    return {
        "SdkAppid": str(APP),
        "CallbackCommand": command,
        "contenttype": "json",
        "ClientIP": "127.0.0.1",
        "OptPlatform": "RESTAPI",
        "RequestTime": str(at),
        "Sign": chat_sign(token, str(at)),
    }


def call_body(event: dict[str, object] = EVENT) -> bytes:
    return json.dumps(
        {
            "CallId": "f6273604-3806-4abb-bc7e-090cd9208ee6",
            "Callback": {**event, "KitType": 2},
            "CallbackCommand": CALL_RECORD_CHANGED,
            "EventTime": 1774425607149,
        }
    ).encode()


def live_body(event: dict[str, object] = EVENT) -> bytes:
    return json.dumps({"CallbackCommand": LIVE_RECORDING_CHANGED, **event}).encode()


class TestChatAuthentication:
    def test_the_sign_is_hex_sha256_of_token_and_request_time(self) -> None:
        expected = hashlib.sha256(b"chat-webhook-token1774425607").hexdigest()
        assert chat_sign(TOKEN, "1774425607") == expected

    def test_a_signed_query_passes_and_gives_its_time(self) -> None:
        check = check_chat_auth(TOKEN, query(CALL_RECORD_CHANGED), b"{}")
        assert check.ok
        assert check.request_time == 1774425607

    @pytest.mark.parametrize(
        ("token", "change", "why"),
        [
            (None, {}, "no webhook authentication token"),
            ("", {}, "no webhook authentication token"),
            (TOKEN, {"Sign": None}, "no Sign"),
            (TOKEN, {"RequestTime": None}, "no valid RequestTime"),
            (TOKEN, {"RequestTime": "12a"}, "no valid RequestTime"),
            (TOKEN, {"RequestTime": "1774425608"}, "does not match"),
            (TOKEN, {"Sign": "0" * 64}, "does not match"),
            (TOKEN, {"Sign": "é"}, "does not match"),
            ("another-token", {}, "does not match"),
        ],
    )
    def test_anything_else_is_refused_with_a_reason(
        self, token: str | None, change: dict[str, str | None], why: str
    ) -> None:
        q: dict[str, str] = query(CALL_RECORD_CHANGED)
        for name, value in change.items():
            if value is None:
                q.pop(name)
            else:
                q[name] = value
        check = check_chat_auth(token, q, b"{}")
        assert not check.ok
        assert why in check.reason
        assert TOKEN not in check.reason

    def test_request_time_reads_only_plain_seconds(self) -> None:
        assert request_time({"RequestTime": "1700000000"}) == 1700000000
        assert request_time({"RequestTime": "-5"}) is None
        assert request_time({"RequestTime": "9" * 40}) is None
        assert request_time({}) is None


class TestUnwrapping:
    @pytest.mark.parametrize(
        ("command", "body"),
        [(CALL_RECORD_CHANGED, call_body()), (LIVE_RECORDING_CHANGED, live_body())],
    )
    def test_both_envelopes_give_the_group_3_event(self, command: str, body: bytes) -> None:
        parsed = parse_tuikit(query(command), body)
        direct = parse_callback(json.dumps(EVENT).encode(), str(APP))
        assert parsed.kind is Kind.RECORDING
        assert parsed.sdk_app_id == APP
        assert (parsed.event_type, parsed.task_id, parsed.leave_code) == (302, TASK, 1)
        # The same event delivered by TRTC itself is the same delivery: dedupe works across.
        assert parsed.delivery == direct.delivery
        assert parsed == direct

    def test_the_app_comes_from_the_query(self) -> None:
        q = query(LIVE_RECORDING_CHANGED)
        q["SdkAppid"] = "1400000002"
        assert parse_tuikit(q, live_body()).sdk_app_id == 1400000002

    @pytest.mark.parametrize(
        ("change", "body", "message"),
        [
            ({"CallbackCommand": "Group.CallbackAfterSendMsg"}, call_body(), "CallbackCommand"),
            ({"SdkAppid": None}, call_body(), "SdkAppid"),
            ({"SdkAppid": "0"}, call_body(), "SdkAppId"),
            ({}, b"not json", "not valid JSON"),
            ({}, b"[]", "JSON object"),
            ({}, json.dumps({"CallbackCommand": CALL_RECORD_CHANGED}).encode(), "Callback"),
            ({}, live_body(), "disagree"),
            ({}, call_body({**EVENT, "EventGroupId": 8}), "group 3"),
            ({}, call_body({**EVENT, "EventInfo": {"TaskId": ""}}), "TaskId"),
        ],
    )
    def test_what_cannot_be_read_is_refused_naming_why(
        self, change: dict[str, str | None], body: bytes, message: str
    ) -> None:
        q: dict[str, str] = query(CALL_RECORD_CHANGED)
        for name, value in change.items():
            if value is None:
                q.pop(name)
            else:
                q[name] = value
        with pytest.raises(CallbackInvalid, match=message):
            parse_tuikit(q, body)


@pytest.fixture
async def tuikit_receiver() -> AsyncIterator[tuple[str, list[tuple[dict[str, str], bytes]]]]:
    received: list[tuple[dict[str, str], bytes]] = []

    async def handle(request: web.Request) -> web.Response:
        received.append((dict(request.query), await request.read()))
        return web.json_response({"ActionStatus": "OK", "ErrorCode": 0, "ErrorInfo": ""})

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook?team=a", received
    await runner.cleanup()


class TestSimulatorDelivery:
    @pytest.mark.parametrize("envelope", ["tuicallkit", "tuilivekit"])
    async def test_the_simulator_wraps_and_signs_as_the_monitor_reads(
        self,
        tuikit_receiver: tuple[str, list[tuple[dict[str, str], bytes]]],
        envelope: str,
    ) -> None:
        url, received = tuikit_receiver
        settings = CallbackSettings(url=url, key=TOKEN, envelope=envelope)
        sim = Simulator(clock=ManualClock(), seed=4, callback=settings)
        await sim.start()
        try:
            task_id = sim.add_task(APP, life=Life(idle=0))
            sim.exit_task(APP, task_id, leave_code=5)
            await sim.drain_callbacks()
        finally:
            await sim.stop()
        assert len(received) == 2
        events = []
        for q, body in received:
            assert q["team"] == "a"  # the configured URL's own query is kept
            assert q["contenttype"] == "json"
            assert check_chat_auth(TOKEN, q, body).ok
            assert not check_chat_auth("wrong", q, body).ok
            events.append(parse_tuikit(q, body))
        assert [(e.event_type, e.task_id) for e in events] == [(301, task_id), (302, task_id)]
        assert events[1].leave_code == 5
        wrapped = json.loads(received[1][1])
        if envelope == "tuicallkit":
            assert wrapped["CallbackCommand"] == CALL_RECORD_CHANGED
            assert wrapped["Callback"]["KitType"] == 2
            assert {"CallId", "EventTime"} <= set(wrapped)
        else:
            assert wrapped["CallbackCommand"] == LIVE_RECORDING_CHANGED
            assert wrapped["EventGroupId"] == 3

    def test_an_unknown_envelope_is_refused(self) -> None:
        with pytest.raises(ValueError, match="envelope"):
            CallbackSettings(url="http://127.0.0.1:1/x", key=TOKEN, envelope="soap")

    def test_sent_queries_parse_back(self) -> None:
        from monitor.simulator.tuikit import wrap

        out = wrap("tuilivekit", "http://h/x", TOKEN, APP, json.dumps(EVENT).encode(), 1700000000)
        assert out is not None
        q = dict(parse_qsl(urlsplit(out[0]).query))
        assert q["Sign"] == chat_sign(TOKEN, "1700000000")
        web_event = json.dumps({**EVENT, "EventGroupId": 8}).encode()
        assert wrap("tuilivekit", "http://h/x", TOKEN, APP, web_event, 1700000000) is None
