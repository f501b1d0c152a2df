"""The official Tencent Cloud SDK as a client of the simulator.

The SDK is the oracle: if it signs, sends, parses and raises as it does against the real
service, the simulator speaks the real protocol. The synchronous client talks to a simulator
running on its own loop in a background thread; the SDK itself is never patched.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from tencentcloud.common import credential
from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
    TencentCloudSDKException,
)
from tencentcloud.common.profile.client_profile import ClientProfile
from tencentcloud.common.profile.http_profile import HttpProfile
from tencentcloud.trtc.v20190722 import models, trtc_client

from monitor.simulator import (
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
    Fault,
    FaultKind,
    Life,
    LifeRange,
    ManualClock,
    Simulator,
    ThreadedSimulator,
)

APP = 1400000001
CREATE: dict[str, Any] = {
    "SdkAppId": APP,
    "RoomId": "8848",
    "UserId": "recorder_8848",
    "UserSig": "user-sig",
    "RecordParams": {"RecordMode": 2, "MaxIdleTime": 30},
    "StorageParams": {
        "CloudStorage": {
            "Vendor": 0,
            "Region": "ap-guangzhou",
            "Bucket": "bucket",
            "AccessKey": "ak",
            "SecretKey": "sk",
        }
    },
    "ResourceExpiredHour": 72,
}


def endpoint(url: str) -> str:
    return url.split("//", 1)[1]


def make_client(
    url: str,
    secret_id: str = DEFAULT_SECRET_ID,
    secret_key: str = DEFAULT_SECRET_KEY,
    token: str | None = None,
    region: str = "ap-guangzhou",
) -> Any:
    http = HttpProfile(protocol="http", endpoint=endpoint(url), reqTimeout=10)
    cred = credential.Credential(secret_id, secret_key, token)
    return trtc_client.TrtcClient(cred, region, ClientProfile(httpProfile=http, language="en-US"))


def describe(client: Any, task_id: str) -> Any:
    req = models.DescribeCloudRecordingRequest()
    req.SdkAppId = APP
    req.TaskId = task_id
    return client.DescribeCloudRecording(req)


def error_of(call: Any, *args: Any) -> TencentCloudSDKException:
    with pytest.raises(TencentCloudSDKException) as caught:
        call(*args)
    return caught.value


@pytest.fixture
def clock() -> ManualClock:
    # Frozen unless a test advances it: "within one second" is then exact, not hoped for.
    return ManualClock()


@pytest.fixture
def server(clock: ManualClock) -> Iterator[ThreadedSimulator]:
    sim = Simulator(clock=clock, seed=3, random_life=LifeRange(idle=(1, 1), exited=(2, 2)))
    threaded = ThreadedSimulator(sim)
    threaded.start()
    yield threaded
    threaded.stop()


@pytest.fixture
def client(server: ThreadedSimulator) -> Any:
    return make_client(server.url)


class TestSdkClient:
    def test_create_describe_delete_then_describe_answers_the_ended_code(
        self, server: ThreadedSimulator, client: Any, clock: ManualClock
    ) -> None:
        req = models.CreateCloudRecordingRequest()
        req.from_json_string(json.dumps(CREATE))
        created = client.CreateCloudRecording(req)
        assert created.TaskId
        assert uuid.UUID(created.RequestId).version == 4

        assert describe(client, created.TaskId).Status == "Idle"
        clock.advance(1)
        running = describe(client, created.TaskId)
        assert running.Status == "InProgress"
        assert running.TaskId == created.TaskId
        assert running.StorageFileList[0].TrackType == "audio_video"
        assert running.StorageFileList[0].FileName.endswith(".m3u8")

        delete = models.DeleteCloudRecordingRequest()
        delete.SdkAppId = APP
        delete.TaskId = created.TaskId
        assert client.DeleteCloudRecording(delete).TaskId == created.TaskId
        assert describe(client, created.TaskId).Status == "Exited"

        clock.advance(2)
        ended = error_of(describe, client, created.TaskId)
        assert ended.get_code() == "FailedOperation.TaskNotExist"
        assert uuid.UUID(ended.get_request_id()).version == 4
        assert server.sim.task_info(APP, created.TaskId)["status"] is None  # type: ignore[index]

    def test_modify_is_understood(self, server: ThreadedSimulator, client: Any) -> None:
        task_id = server.call(server.sim.add_task, APP, "mod-1", Life(idle=0))
        req = models.ModifyCloudRecordingRequest()
        req.SdkAppId = APP
        req.TaskId = task_id
        req.SubscribeStreamUserIds = models.SubscribeStreamUserIds()
        assert client.ModifyCloudRecording(req).TaskId == task_id

    def test_a_wrong_secret_key_is_a_signature_failure(self, server: ThreadedSimulator) -> None:
        bad = make_client(server.url, secret_key="not-the-key")
        err = error_of(describe, bad, "any")
        assert err.get_code() == "AuthFailure.SignatureFailure"
        assert "not-the-key" not in str(err)

    def test_an_unknown_secret_id_is_not_found(self, server: ThreadedSimulator) -> None:
        bad = make_client(server.url, secret_id="AKIDNOBODY")
        assert error_of(describe, bad, "any").get_code() == "AuthFailure.SecretIdNotFound"

    def test_a_clock_ten_minutes_off_expires_the_signature(
        self, server: ThreadedSimulator, client: Any
    ) -> None:
        server.sim.clock_skew = 600
        assert error_of(describe, client, "any").get_code() == "AuthFailure.SignatureExpire"
        server.sim.clock_skew = -600
        assert error_of(describe, client, "any").get_code() == "AuthFailure.SignatureExpire"

    def test_the_21st_request_within_one_second_is_throttled_and_not_retried(
        self, server: ThreadedSimulator, client: Any
    ) -> None:
        server.call(server.sim.add_task, APP, "busy", Life(idle=0))
        for _ in range(20):
            assert describe(client, "busy").Status == "InProgress"
        err = error_of(describe, client, "busy")
        assert err.get_code() == "RequestLimitExceeded"
        assert "`21`" in err.get_message()
        # exactly one arrival per call: the SDK did not retry the throttled request
        assert len(server.sim.arrivals) == 21
        assert server.sim.throttled == 1
        assert server.sim.max_in_window("DescribeCloudRecording") == 21

    def test_temporary_credentials_send_their_token(self, server: ThreadedSimulator) -> None:
        server.sim.tokens[DEFAULT_SECRET_ID] = "session-token"
        wrong = make_client(server.url, token="stale-token")
        assert error_of(describe, wrong, "t").get_code() == "AuthFailure.TokenFailure"
        right = make_client(server.url, token="session-token")
        assert error_of(describe, right, "t").get_code() == "FailedOperation.TaskNotExist"

    def test_an_unsupported_region_is_refused(self, server: ThreadedSimulator) -> None:
        far = make_client(server.url, region="eu-frankfurt")
        assert error_of(describe, far, "t").get_code() == "UnsupportedRegion"

    def test_missing_parameters_are_named(self, client: Any) -> None:
        req = models.DescribeCloudRecordingRequest()
        req.SdkAppId = APP
        err = error_of(client.DescribeCloudRecording, req)
        assert err.get_code() == "MissingParameter.TaskId"

    @pytest.mark.parametrize(
        ("fault", "code"),
        [
            (Fault(FaultKind.INTERNAL_ERROR), "InternalError"),
            (Fault(FaultKind.HTTP_ERROR, status=502), "ServerNetworkError"),
            (Fault(FaultKind.DROP), "ClientNetworkError"),
            (Fault(FaultKind.THROTTLE), "RequestLimitExceeded"),
            (Fault(FaultKind.BAD_CREDENTIALS), "AuthFailure.SecretIdNotFound"),
        ],
    )
    def test_injected_faults_reach_the_sdk_as_the_real_failures_would(
        self, server: ThreadedSimulator, client: Any, fault: Fault, code: str
    ) -> None:
        server.call(server.sim.faults.add, fault)
        assert error_of(describe, client, "t").get_code() == code


class TestSdkAsyncClient:
    async def test_the_async_client_creates_and_describes_against_the_simulator(self) -> None:
        trtc_client_async = pytest.importorskip("tencentcloud.trtc.v20190722.trtc_client_async")
        async with Simulator(random_life=LifeRange(idle=(0, 0))) as sim:
            http = HttpProfile(protocol="http", endpoint=endpoint(sim.url), reqTimeout=10)
            cred = credential.Credential(DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY)
            client = trtc_client_async.TrtcClient(
                cred, "ap-singapore", ClientProfile(httpProfile=http)
            )
            async with client:
                req = models.CreateCloudRecordingRequest()
                req.from_json_string(json.dumps(CREATE))
                created = await client.CreateCloudRecording(req)
                desc = models.DescribeCloudRecordingRequest()
                desc.SdkAppId = APP
                desc.TaskId = created.TaskId
                assert (await client.DescribeCloudRecording(desc)).Status == "InProgress"
                sim.end_task(APP, created.TaskId)
                with pytest.raises(TencentCloudSDKException) as caught:
                    await client.DescribeCloudRecording(desc)
                assert caught.value.get_code() == "FailedOperation.TaskNotExist"
