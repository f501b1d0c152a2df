"""TC3-HMAC-SHA256 signing: published vectors and the official SDK as the oracle."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tencentcloud.common.abstract_client_async import AbstractClient as SdkAsyncClient
from tencentcloud.common.sign import Sign

from monitor.trtc.signing import (
    authorization,
    canonical_request,
    parse_authorization,
    signature,
    string_to_sign,
    utc_date,
)

SECRET_ID = "AKIDEXAMPLE1234567890"
SECRET_KEY = "SECRETKEYEXAMPLE1234567890"
BODY = b'{"SdkAppId": 1400000001, "TaskId": "task-abc123"}'


class TestPublishedVectors:
    @pytest.mark.parametrize(
        ("timestamp", "host", "expected"),
        [
            (
                1700000000,
                "trtc.tencentcloudapi.com",
                "f626e54299e6d01dcd9f9275a99ec714c0578f5c53c04d35e96fb4e7f44604bf",
            ),
            (
                1700000000,
                "trtc.ap-singapore.tencentcloudapi.com",
                "bc94fd5ab9877a7fd5425739f0df2b707d42120a0e005aeddd68bf4b6d27db1c",
            ),
            (
                1700000000,
                "trtc.intl.tencentcloudapi.com",
                "974801be99949f7948085cd19a895c21f3bd6c3424509bbdb809a203dfec0c7f",
            ),
            (
                1700006399,
                "trtc.tencentcloudapi.com",
                "634443266d4317ca10c6b4705188de84fb9e4aa317d5d0bf7f0daa9e37f76975",
            ),
            (
                1700006400,
                "trtc.tencentcloudapi.com",
                "5778c537482c619917948c1de43b25925dfe97d1aaf41444ef7d84861db6e69b",
            ),
        ],
    )
    def test_signature_matches_the_reference_vector(
        self, timestamp: int, host: str, expected: str
    ) -> None:
        assert signature(SECRET_KEY, BODY, host, timestamp) == expected

    def test_compact_body_signs_its_own_bytes(self) -> None:
        compact = b'{"SdkAppId":1400000001,"TaskId":"task-abc123"}'
        assert (
            signature(SECRET_KEY, compact, "trtc.tencentcloudapi.com", 1700000000)
            == "13154a2077a9aff348009291b8d3eec9d4079de409f84f3bf8b0fbbc8578984d"
        )

    def test_tencent_published_cvm_example_matches(self) -> None:
        body = json.dumps(
            {"Limit": 1, "Filters": [{"Values": ["\u672a\u547d\u540d"], "Name": "instance-name"}]}
        ).encode()
        sig = signature(
            "Gu5t9xGARNpq86cd98joQYCN3EXAMPLE",
            body,
            "cvm.tencentcloudapi.com",
            1551113065,
            service="cvm",
            content_type="application/json; charset=utf-8",
        )
        assert sig == "72e494ea809ad7a8c8f7a4507b9bddcbaa8e581f516e8da2f66e2c5a96525168"

    def test_the_date_in_the_scope_is_the_utc_date_of_the_timestamp(self) -> None:
        assert utc_date(1700006399) == "2023-11-14"
        assert utc_date(1700006400) == "2023-11-15"
        assert "\n2023-11-15/trtc/tc3_request\n" in string_to_sign(
            BODY, "trtc.tencentcloudapi.com", 1700006400
        )


def sdk_signature(secret_key: str, body: bytes, host: str, timestamp: int) -> str:
    headers = {
        "Content-Type": "application/json",
        "Host": host,
        "X-TC-Timestamp": str(timestamp),
    }
    result: str = SdkAsyncClient._get_tc3_signature(
        "POST", "/", "", body, headers, utc_date(timestamp), "trtc", secret_key, {}
    )
    return result


# Around midnight UTC (the date in the scope flips), and anywhere up to 2100.
MIDNIGHTS = st.integers(min_value=19000, max_value=47000).map(lambda d: d * 86400)
TIMESTAMPS = st.one_of(
    st.builds(lambda m, off: m + off, MIDNIGHTS, st.integers(-3, 3)),
    st.integers(min_value=0, max_value=4_102_444_800),
)
HOSTS = st.one_of(
    st.sampled_from(
        [
            "trtc.tencentcloudapi.com",
            "trtc.intl.tencentcloudapi.com",
            "trtc.ap-mumbai.tencentcloudapi.com",
            "127.0.0.1:8080",
        ]
    ),
    st.from_regex(
        r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z0-9]{1,10}){0,3}(:[0-9]{1,5})?", fullmatch=True
    ),
)
BODIES = st.one_of(
    st.builds(
        lambda app, task: json.dumps({"SdkAppId": app, "TaskId": task}).encode(),
        st.integers(min_value=0, max_value=2**32),
        st.text(),
    ),
    st.builds(
        lambda d: json.dumps(d, ensure_ascii=False).encode("utf-8"),
        st.dictionaries(st.text(max_size=8), st.one_of(st.text(), st.integers(), st.none())),
    ),
)
KEYS = st.text(min_size=1, max_size=64).filter(lambda k: "\x00" not in k)


class TestAgainstOfficialSdk:
    @settings(max_examples=300, deadline=None)
    @given(key=KEYS, body=BODIES, host=HOSTS, timestamp=TIMESTAMPS)
    def test_signature_equals_the_sdk_signature(
        self, key: str, body: bytes, host: str, timestamp: int
    ) -> None:
        assert signature(key, body, host, timestamp) == sdk_signature(key, body, host, timestamp)

    @settings(max_examples=100, deadline=None)
    @given(key=KEYS, date=st.dates().map(str), text=st.text())
    def test_key_derivation_equals_sign_tc3(self, key: str, date: str, text: str) -> None:
        import hashlib
        import hmac

        def h(k: bytes, m: str) -> bytes:
            return hmac.new(k, m.encode(), hashlib.sha256).digest()

        k_signing = h(h(h(("TC3" + key).encode(), date), "trtc"), "tc3_request")
        ours = hmac.new(k_signing, text.encode(), hashlib.sha256).hexdigest()
        assert ours == Sign.sign_tc3(key, date, "trtc", text)


class TestAuthorizationHeader:
    def test_header_has_the_sdk_layout_and_parses_back(self) -> None:
        header = authorization(SECRET_ID, SECRET_KEY, BODY, "trtc.tencentcloudapi.com", 1700000000)
        assert header == (
            "TC3-HMAC-SHA256 Credential=AKIDEXAMPLE1234567890/2023-11-14/trtc/tc3_request, "
            "SignedHeaders=content-type;host, "
            "Signature=f626e54299e6d01dcd9f9275a99ec714c0578f5c53c04d35e96fb4e7f44604bf"
        )
        parsed = parse_authorization(header)
        assert parsed is not None
        assert parsed.secret_id == SECRET_ID
        assert parsed.date == "2023-11-14"
        assert parsed.service == "trtc"
        assert parsed.signed_headers == "content-type;host"

    @pytest.mark.parametrize(
        "header",
        [
            "",
            "Bearer abc",
            "TC3-HMAC-SHA256 Credential=AKID/2023-11-14/trtc, SignedHeaders=x, Signature=y",
            "TC3-HMAC-SHA256 Credential=AKID/2023-11-14/trtc/tc3_request",
            "TC3-HMAC-SHA256 garbage",
        ],
    )
    def test_malformed_headers_do_not_parse(self, header: str) -> None:
        assert parse_authorization(header) is None

    def test_only_content_type_and_host_are_signed(self) -> None:
        request = canonical_request(BODY, "trtc.tencentcloudapi.com")
        assert request.splitlines()[3:6] == [
            "content-type:application/json",
            "host:trtc.tencentcloudapi.com",
            "",
        ]
