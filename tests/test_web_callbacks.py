"""Group-8 (web-page recording) callbacks, and 305's two spellings of its status, parsed."""

from __future__ import annotations

import json

import pytest

from monitor.callbacks.parse import CallbackInvalid, Kind, parse_callback
from monitor.callbacks.web import WebEffect, parse_any_callback, web_effect

APP = "1400000001"


def web_event(event_type: int, payload: dict[str, object], **info: object) -> bytes:
    return json.dumps(
        {
            "EventGroupId": 8,
            "EventType": event_type,
            "CallbackTs": 1622186275913,
            "EventInfo": {
                "EventMsTs": 1622186275757,
                "TaskId": "web-task-1",
                "Payload": payload,
                **info,
            },
        }
    ).encode()


class TestGroup8:
    def test_without_asking_group_8_stays_ignored(self) -> None:
        parsed = parse_callback(web_event(801, {"Status": 1}), APP)
        assert parsed.kind is Kind.IGNORED
        # ... and the reader of both groups hands any other group to the group-3 reader.
        group3 = web_event(801, {"Status": 1}).replace(b'"EventGroupId": 8', b'"EventGroupId": 1')
        assert parse_any_callback(group3, APP).kind is Kind.IGNORED

    def test_the_page_example_of_801_reads_as_a_started_web_task(self) -> None:
        parsed = parse_any_callback(web_event(801, {"Status": 1, "EventMessage": "Success"}), APP)
        assert parsed.kind is Kind.WEB
        assert (parsed.group, parsed.sdk_app_id, parsed.task_id) == (8, 1400000001, "web-task-1")
        assert parsed.event_ms_ts == 1622186275757
        assert parsed.event_ts == 1622186275
        assert parsed.event_message == "Success"
        assert web_effect(parsed) is WebEffect.STARTED
        assert parsed.upload is None

    @pytest.mark.parametrize(
        ("event_type", "status", "effect"),
        [
            (801, 2, WebEffect.START_FAILED),
            (801, 3, WebEffect.INTERMEDIATE),
            (801, 4, WebEffect.INTERMEDIATE),
            (801, 5, WebEffect.STOPPED),
            (801, 9, WebEffect.UNKNOWN),
            (802, 1, WebEffect.STOPPED),
            (803, 2, WebEffect.INTERMEDIATE),
            (804, 1, WebEffect.STOPPED),
            (804, 2, WebEffect.STOPPED),
            (312, 0, WebEffect.UPLOAD),
        ],
    )
    def test_each_event_and_status_has_its_effect(
        self, event_type: int, status: int, effect: WebEffect
    ) -> None:
        parsed = parse_any_callback(web_event(event_type, {"Status": status}), APP)
        assert web_effect(parsed) is effect

    def test_a_failed_start_is_an_upload_failure(self) -> None:
        body = web_event(801, {"Status": 2, "EventMessage": "Goto url timeout"})
        upload = parse_any_callback(body, APP).upload
        assert upload is not None
        assert (upload.event_type, upload.status, upload.message) == (301, 1, "Goto url timeout")

    def test_the_vod_commit_carries_its_file(self) -> None:
        payload = {"Status": 0, "TencentVod": {"FileId": 5285890781, "VideoUrl": "https://v/x.mp4"}}
        parsed = parse_any_callback(web_event(311, payload), APP)
        assert parsed.upload is not None
        assert parsed.upload.files[0].file_id == "5285890781"

    def test_an_unknown_type_of_group_8_is_unknown(self) -> None:
        assert parse_any_callback(web_event(899, {}), APP).kind is Kind.UNKNOWN

    @pytest.mark.parametrize(
        ("body", "message"),
        [
            (web_event(802, {"Status": 1}, TaskId=""), "TaskId"),
            (web_event(802, {"Status": "x"}), "Status"),
            (web_event(802, {"Status": 1}, EventMsTs=-1), "EventMsTs"),
        ],
    )
    def test_a_bad_field_is_named(self, body: bytes, message: str) -> None:
        with pytest.raises(CallbackInvalid, match=message):
            parse_any_callback(body, APP)

    def test_the_app_header_is_required(self) -> None:
        with pytest.raises(CallbackInvalid, match="SdkAppId"):
            parse_any_callback(web_event(802, {"Status": 1}), None)


class Test305:
    @pytest.mark.parametrize("field", ["Status", "LeaveCode"])
    def test_either_spelling_gives_the_status(self, field: str) -> None:
        body = json.dumps(
            {
                "EventGroupId": 3,
                "EventType": 305,
                "CallbackTs": 1752580150082,
                "EventInfo": {
                    "RoomId": "635055",
                    "EventTs": 1752580150,
                    "TaskId": "t-305",
                    "Payload": {field: 1},
                },
            }
        ).encode()
        parsed = parse_callback(body, APP)
        assert parsed.status == 1
        assert parsed.upload is not None
        assert parsed.upload.status == 1
