"""The derived TC3 signing key is kept per secret, UTC day and service: every signature is still
the one the full derivation gives, across a change of day and of secret."""

from __future__ import annotations

import hashlib
import hmac
import time

from monitor.trtc.signing import signature, string_to_sign, utc_date


def derived(secret_key: str, body: bytes, host: str, timestamp: int) -> str:
    """TC3's derivation written out in full, with no cache."""

    def mac(key: bytes, msg: str) -> bytes:
        return hmac.new(key, msg.encode(), hashlib.sha256).digest()

    date = time.strftime("%Y-%m-%d", time.gmtime(timestamp))
    key = mac(mac(mac(("TC3" + secret_key).encode(), date), "trtc"), "tc3_request")
    sts = string_to_sign(body, host, timestamp)
    return hmac.new(key, sts.encode(), hashlib.sha256).hexdigest()


BODY = b'{"SdkAppId":1400000001,"TaskId":"t-1"}'
HOST = "trtc.tencentcloudapi.com"
MIDNIGHT = 1_765_152_000  # 2025-12-08T00:00:00Z


class TestSigningKeyCache:
    def test_each_side_of_midnight_signs_with_its_own_day(self) -> None:
        for timestamp in (MIDNIGHT - 1, MIDNIGHT, MIDNIGHT - 1, MIDNIGHT + 86_399, MIDNIGHT):
            assert signature("key-a", BODY, HOST, timestamp) == derived(
                "key-a", BODY, HOST, timestamp
            )
        assert utc_date(MIDNIGHT - 1) == "2025-12-07"
        assert utc_date(MIDNIGHT) == "2025-12-08"

    def test_a_new_secret_signs_with_its_own_key_the_same_day(self) -> None:
        first = signature("key-a", BODY, HOST, MIDNIGHT + 5)
        second = signature("key-b", BODY, HOST, MIDNIGHT + 5)
        assert first == derived("key-a", BODY, HOST, MIDNIGHT + 5)
        assert second == derived("key-b", BODY, HOST, MIDNIGHT + 5)
        assert first != second

    def test_dates_before_the_epoch_and_far_ahead_are_the_calendar_dates(self) -> None:
        for timestamp in (-1, -86_401, 0, 253_402_300_799):
            expected = time.strftime("%Y-%m-%d", time.gmtime(timestamp))
            assert utc_date(timestamp) == expected
