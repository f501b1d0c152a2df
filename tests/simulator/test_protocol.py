"""The simulator's request checks: TC3 verification and parameters, pure."""

from __future__ import annotations

from typing import Any

import pytest

from monitor.simulator.protocol import SignedRequest, check_common, parse_create, verify
from monitor.trtc.signing import authorization, parse_authorization
from tests.simulator.helpers import CREATE_PARAMS, DESCRIBE


class TestVerification:
    BODY = b'{"SdkAppId": 1400000001, "TaskId": "t"}'
    HOST = "127.0.0.1:9999"
    NOW = 1_700_000_000

    def signed(self, **over: Any) -> SignedRequest:
        key = over.pop("key", "k1")
        ts = over.pop("ts", self.NOW)
        sid = over.pop("sid", "AKID1")
        body = over.pop("body", self.BODY)
        header = authorization(sid, key, self.BODY, self.HOST, ts)
        base: dict[str, Any] = {
            "auth": parse_authorization(header),
            "timestamp": str(ts),
            "host": self.HOST,
            "content_type": "application/json",
            "body": body,
            "token": "",
        }
        base.update(over)
        return SignedRequest(**base)

    def code(self, req: SignedRequest, tokens: dict[str, str] | None = None) -> str:
        err = verify(req, {"AKID1": "k1"}, tokens or {}, float(self.NOW))
        return "" if err is None else err.code

    def test_a_correct_signature_passes(self) -> None:
        assert self.code(self.signed()) == ""

    @pytest.mark.parametrize(
        ("change", "code"),
        [
            ({"auth": None}, "AuthFailure.InvalidAuthorization"),
            ({"sid": "AKIDOTHER"}, "AuthFailure.SecretIdNotFound"),
            ({"key": "wrong"}, "AuthFailure.SignatureFailure"),
            ({"body": b'{"SdkAppId": 1, "TaskId": "t"}'}, "AuthFailure.SignatureFailure"),
            ({"host": "trtc.tencentcloudapi.com"}, "AuthFailure.SignatureFailure"),
            ({"content_type": "application/json; charset=utf-8"}, "AuthFailure.SignatureFailure"),
            ({"ts": NOW - 301}, "AuthFailure.SignatureExpire"),
            ({"ts": NOW + 301}, "AuthFailure.SignatureExpire"),
            ({"timestamp": ""}, "MissingParameter"),
        ],
    )
    def test_each_verification_failure_has_the_service_code(
        self, change: dict[str, Any], code: str
    ) -> None:
        assert self.code(self.signed(**change)) == code

    def test_a_timestamp_within_five_minutes_passes(self) -> None:
        assert self.code(self.signed(ts=self.NOW - 300)) == ""

    def test_a_required_token_must_match(self) -> None:
        tokens = {"AKID1": "tok"}
        assert self.code(self.signed(), tokens) == "AuthFailure.TokenFailure"
        assert self.code(self.signed(token="nope"), tokens) == "AuthFailure.TokenFailure"
        assert self.code(self.signed(token="tok"), tokens) == ""

    def test_errors_never_carry_the_secret_key(self) -> None:
        err = verify(self.signed(key="wrong"), {"AKID1": "k1"}, {}, float(self.NOW))
        assert err is not None
        assert "k1" not in err.message

    def test_action_and_version_are_checked(self) -> None:
        assert check_common("", "2019-07-22") is not None
        assert check_common("DescribeRoomInfo", "2019-07-22").code == "InvalidAction"  # type: ignore[union-attr]
        assert check_common(DESCRIBE, "2018-01-01").code == "NoSuchVersion"  # type: ignore[union-attr]
        assert check_common(DESCRIBE, "2019-07-22") is None

    @pytest.mark.parametrize(
        ("drop", "code"),
        [
            ("RoomId", "MissingParameter.RoomId"),
            ("UserId", "MissingParameter.UserId"),
            ("UserSig", "MissingParameter.UserSig"),
            ("SdkAppId", "MissingParameter.SdkAppId"),
            ("RecordParams", "MissingParameter.RecordParams"),
            ("StorageParams", "MissingParameter.StorageParams"),
        ],
    )
    def test_create_names_its_missing_parameter(self, drop: str, code: str) -> None:
        params = {k: v for k, v in CREATE_PARAMS.items() if k != drop}
        result = parse_create(params)
        assert getattr(result, "code", None) == code

    def test_create_refuses_out_of_range_expiry_and_reads_vod(self) -> None:
        bad = parse_create({**CREATE_PARAMS, "ResourceExpiredHour": 5})
        assert getattr(bad, "code", None) == "InvalidParameter.OutOfRange"
        ok = parse_create({**CREATE_PARAMS, "StorageParams": {"CloudVod": {}}})
        assert getattr(ok, "vod", None) is True
        assert getattr(ok, "room_id", None) == 8848
