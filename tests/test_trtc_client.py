"""Our TRTC client against the simulator: every outcome class, and the wire details."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from monitor.models import Outcome, Status
from monitor.secrets import Credentials
from monitor.simulator import DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, Fault, FaultKind, Simulator
from monitor.trtc.client import (
    CODE_CONNECTION,
    CODE_MALFORMED,
    CODE_TIMEOUT,
    CallResult,
    Endpoint,
    TrtcClient,
    classify_body,
    new_session,
)

APP = 1400000001
GOOD = Credentials(DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_session() as s:
        yield s


async def describe(
    session: aiohttp.ClientSession,
    sim: Simulator,
    task_id: str,
    credentials: Credentials = GOOD,
    region: str = "ap-guangzhou",
    timeout: float = 2.0,
) -> CallResult:
    client = TrtcClient(session, timeout=timeout)
    return await client.describe_cloud_recording(
        endpoint=Endpoint.parse(sim.url),
        credentials=credentials,
        region=region,
        sdk_app_id=APP,
        task_id=task_id,
    )


class TestOutcomes:
    async def test_ok_carries_the_status_files_and_request_id(
        self, simulator: Simulator, session: aiohttp.ClientSession
    ) -> None:
        task_id = simulator.add_task(APP)
        result = await describe(session, simulator, task_id)
        assert result.outcome is Outcome.OK
        assert result.code == ""
        assert result.status in (Status.IDLE, Status.IN_PROGRESS)
        assert result.request_id
        assert result.http_status == 200

    async def test_an_ended_task_is_ended(
        self, simulator: Simulator, session: aiohttp.ClientSession
    ) -> None:
        task_id = simulator.add_task(APP)
        simulator.end_task(APP, task_id)
        result = await describe(session, simulator, task_id)
        assert (result.outcome, result.code) == (Outcome.ENDED, "FailedOperation.TaskNotExist")
        assert result.request_id

    async def test_the_twenty_first_request_in_a_second_is_throttled(
        self, simulator: Simulator, session: aiohttp.ClientSession
    ) -> None:
        task_id = simulator.add_task(APP)
        results = [await describe(session, simulator, task_id) for _ in range(21)]
        assert [r.outcome for r in results[:20]] == [Outcome.OK] * 20
        assert results[20].outcome is Outcome.THROTTLED
        assert results[20].code == "RequestLimitExceeded"
        assert results[20].request_id

    async def test_a_wrong_key_is_auth_and_never_shows_the_key(
        self, simulator: Simulator, session: aiohttp.ClientSession
    ) -> None:
        wrong = Credentials(DEFAULT_SECRET_ID, "not-the-key-12345")
        result = await describe(session, simulator, "t", credentials=wrong)
        assert (result.outcome, result.code) == (Outcome.AUTH, "AuthFailure.SignatureFailure")
        assert "not-the-key-12345" not in repr(result)
        assert "not-the-key-12345" not in repr(wrong)

    async def test_an_unknown_region_is_invalid(
        self, simulator: Simulator, session: aiohttp.ClientSession
    ) -> None:
        result = await describe(session, simulator, "t", region="eu-frankfurt")
        assert (result.outcome, result.code) == (Outcome.INVALID, "UnsupportedRegion")

    @pytest.mark.parametrize(
        ("fault", "code"),
        [
            (Fault(FaultKind.INTERNAL_ERROR), "InternalError"),
            (Fault(FaultKind.HTTP_ERROR, status=502), "Transport.HTTP502"),
            (Fault(FaultKind.MALFORMED, body="not_json"), CODE_MALFORMED),
            (Fault(FaultKind.MALFORMED, body="no_response"), CODE_MALFORMED),
            (Fault(FaultKind.MALFORMED, body="truncated"), CODE_MALFORMED),
            (Fault(FaultKind.DROP), CODE_CONNECTION),
            (Fault(FaultKind.TIMEOUT, hold=5.0), CODE_TIMEOUT),
        ],
    )
    async def test_faults_are_transient_with_a_code_that_says_which(
        self, simulator: Simulator, session: aiohttp.ClientSession, fault: Fault, code: str
    ) -> None:
        task_id = simulator.add_task(APP)
        simulator.faults.add(fault)
        result = await describe(session, simulator, task_id, timeout=0.5)
        assert (result.outcome, result.code) == (Outcome.TRANSIENT, code)

    async def test_the_client_makes_exactly_one_attempt(
        self, simulator: Simulator, session: aiohttp.ClientSession
    ) -> None:
        simulator.faults.add(Fault(FaultKind.HTTP_ERROR, status=503))
        await describe(session, simulator, "t")
        assert len(simulator.arrivals) == 1

    async def test_a_session_token_is_sent_as_x_tc_token(
        self, simulator: Simulator, session: aiohttp.ClientSession
    ) -> None:
        simulator.tokens = {DEFAULT_SECRET_ID: "session-token-abc"}
        task_id = simulator.add_task(APP)
        without = await describe(session, simulator, task_id)
        assert (without.outcome, without.code) == (Outcome.AUTH, "AuthFailure.TokenFailure")
        with_token = Credentials(DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY, "session-token-abc")
        assert (await describe(session, simulator, task_id, credentials=with_token)).ok


def error_body(code: str) -> bytes:
    return b'{"Response": {"Error": {"Code": "%s"}, "RequestId": "r"}}' % code.encode()


class TestClassifyBody:
    @pytest.mark.parametrize(
        ("code", "outcome"),
        [
            ("ResourceNotFound", Outcome.ENDED),
            ("FailedOperation.RestrictedFrequency", Outcome.THROTTLED),
            ("RequestLimitExceeded.UinLimitExceeded", Outcome.THROTTLED),
            ("ServiceUnavailable", Outcome.TRANSIENT),
            ("InternalError.CRInternalError", Outcome.TRANSIENT),
            ("AuthFailure.SecretIdNotFound", Outcome.AUTH),
            ("MissingParameter.TaskId", Outcome.INVALID),
            ("UnsupportedRegion", Outcome.INVALID),
        ],
    )
    def test_every_error_code_has_one_outcome(self, code: str, outcome: Outcome) -> None:
        result = classify_body(error_body(code), {"ResourceNotFound"}, 200, 0.01)
        assert (result.outcome, result.code, result.request_id) == (outcome, code, "r")

    def test_a_success_is_ok(self) -> None:
        result = classify_body(b'{"Response": {"Status": "Idle", "RequestId": "r"}}', (), 200, 0)
        assert (result.outcome, result.code, result.status) == (Outcome.OK, "", Status.IDLE)

    @pytest.mark.parametrize(
        "body", [b'{"Response": {"Error": {}}}', b"[1, 2]", b"\xff\xfe", b'{"Response": 3}']
    )
    def test_malformed_bodies_are_transient(self, body: bytes) -> None:
        result = classify_body(body, (), 200, 0.01)
        assert (result.outcome, result.code) == (Outcome.TRANSIENT, CODE_MALFORMED)

    def test_a_non_200_answer_is_transient_whatever_its_body(self) -> None:
        body = b'{"Response": {"Status": "Idle"}}'
        result = classify_body(body, (), 500, 0.01)
        assert (result.outcome, result.code) == (Outcome.TRANSIENT, "Transport.HTTP500")


class TestEndpoint:
    @pytest.mark.parametrize(
        ("text", "region", "url", "host"),
        [
            ("trtc.tencentcloudapi.com", "ap-mumbai", "https://trtc.tencentcloudapi.com/",
             "trtc.tencentcloudapi.com"),
            ("https://trtc.intl.tencentcloudapi.com", "ap-beijing",
             "https://trtc.intl.tencentcloudapi.com/", "trtc.intl.tencentcloudapi.com"),
            ("trtc.{region}.tencentcloudapi.com", "ap-singapore",
             "https://trtc.ap-singapore.tencentcloudapi.com/",
             "trtc.ap-singapore.tencentcloudapi.com"),
            ("http://127.0.0.1:8080", "ap-beijing", "http://127.0.0.1:8080/", "127.0.0.1:8080"),
        ],
    )  # fmt: skip
    def test_endpoint_forms(self, text: str, region: str, url: str, host: str) -> None:
        endpoint = Endpoint.parse(text)
        assert endpoint.url(region) == url
        assert endpoint.host(region) == host
        assert endpoint.per_region == ("{region}" in text)

    @pytest.mark.parametrize("text", ["ftp://x", "https://host/path", "https://", "http://h?q=1"])
    def test_bad_endpoints_are_refused(self, text: str) -> None:
        with pytest.raises(ValueError, match="endpoint"):
            Endpoint.parse(text)


class TestSendHook:
    async def test_the_send_hook_runs_once_per_attempt_before_the_request(
        self, simulator: Simulator, session: aiohttp.ClientSession
    ) -> None:
        seen: list[int] = []
        client = TrtcClient(session, on_send=lambda: seen.append(len(simulator.arrivals)))
        task_id = simulator.add_task(APP)
        for _ in range(3):
            await client.describe_cloud_recording(
                endpoint=Endpoint.parse(simulator.url),
                credentials=GOOD,
                region="ap-beijing",
                sdk_app_id=APP,
                task_id=task_id,
            )
        assert seen == [0, 1, 2]  # each time, before that request had arrived
