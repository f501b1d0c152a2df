"""TRTC recording callbacks read alone: the signature, the event label and the parsing of
every field."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from monitor.callbacks.effects import exit_detail, task_labels
from monitor.callbacks.parse import CallbackInvalid, Kind, event_label
from monitor.callbacks.signature import sign_body, verify_signature
from monitor.simulator import sign
from tests.callbacks_support import APP, DOC_BODY, DOC_KEY, DOC_SIGN, body, parsed

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
