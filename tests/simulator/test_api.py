"""The recording API over the wire: envelope, actions, rate limit, real clock."""

from __future__ import annotations

import uuid
from typing import Any

import aiohttp
import pytest

from monitor.simulator import (
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
    Life,
    LifeRange,
    ManualClock,
    Simulator,
)
from tests.simulator.helpers import APP, CREATE_PARAMS, DESCRIBE, Client, eventually


class TestWireFormat:
    async def test_answers_are_http_200_exact_json_content_type_with_a_uuid_request_id(
        self, sim: Simulator, client: Client
    ) -> None:
        task_id = sim.add_task(APP, "t1", Life(idle=5))
        answer = await client.describe(task_id)
        assert answer.status == 200
        assert answer.content_type == "application/json"
        assert uuid.UUID(answer.response["RequestId"]).version == 4
        assert answer.response["TaskId"] == "t1"
        assert answer.response["Status"] == "Idle"
        assert answer.response["StorageFileList"] is None
        error = await client.describe("nope")
        assert error.content_type == "application/json"
        assert set(error.response) == {"Error", "RequestId"}
        assert set(error.response["Error"]) == {"Code", "Message"}

    async def test_create_describe_delete_walk_a_task_to_its_end(
        self, sim: Simulator, client: Client, clock: ManualClock
    ) -> None:
        sim.random_life = LifeRange(idle=(1, 1), exited=(2, 2))
        created = await client.call("CreateCloudRecording", CREATE_PARAMS)
        task_id = created.response["TaskId"]
        assert (await client.describe(task_id)).response["Status"] == "Idle"
        clock.advance(1.0)
        answer = await client.describe(task_id)
        assert answer.response["Status"] == "InProgress"
        [file] = answer.response["StorageFileList"]
        assert file["TrackType"] == "audio_video"
        assert isinstance(file["BeginTimeStamp"], int)
        deleted = await client.call("DeleteCloudRecording", {"SdkAppId": APP, "TaskId": task_id})
        assert deleted.response["TaskId"] == task_id
        assert (await client.describe(task_id)).response["Status"] == "Exited"
        clock.advance(2.0)
        assert (await client.describe(task_id)).code == "FailedOperation.TaskNotExist"
        assert (
            await client.call("DeleteCloudRecording", {"SdkAppId": APP, "TaskId": task_id})
        ).code == "FailedOperation.TaskNotExist"

    async def test_modify_answers_the_task_id_while_the_task_is_visible(
        self, sim: Simulator, client: Client
    ) -> None:
        sim.add_task(APP, "m", Life(idle=0))
        answer = await client.call("ModifyCloudRecording", {"SdkAppId": APP, "TaskId": "m"})
        assert answer.response["TaskId"] == "m"
        assert sim.task_info(APP, "m")["modifications"] == 1  # type: ignore[index]

    @pytest.mark.parametrize(
        "ended_code",
        ["ResourceNotFound", "FailedOperation.TaskNotExist", "FailedOperation.TaskFinished"],
    )
    async def test_ended_and_never_seen_tasks_answer_the_configured_ended_code(
        self, sim: Simulator, client: Client, ended_code: str
    ) -> None:
        sim.ended_code = ended_code
        sim.add_task(APP, "e", Life(idle=0))
        sim.end_task(APP, "e")
        assert (await client.describe("e")).code == ended_code
        assert (await client.describe("never-seen")).code == ended_code
        assert (await client.describe("e", app=APP + 1)).code == ended_code

    async def test_a_task_past_its_resource_expired_hour_answers_the_ended_code(
        self, sim: Simulator, client: Client, clock: ManualClock
    ) -> None:
        sim.hour_length = 1.0
        sim.random_life = LifeRange(idle=(0, 0))
        created = await client.call(
            "CreateCloudRecording", {**CREATE_PARAMS, "ResourceExpiredHour": 6}
        )
        task_id = created.response["TaskId"]
        clock.advance(5.9)
        assert (await client.describe(task_id)).response["Status"] == "InProgress"
        clock.advance(0.1)
        assert (await client.describe(task_id)).code == "FailedOperation.TaskNotExist"
        assert sim.task_info(APP, task_id)["phase"] == "IN_PROGRESS"  # type: ignore[index]

    async def test_a_created_task_nobody_publishes_into_ends_after_max_idle_time(
        self, sim: Simulator, client: Client, clock: ManualClock
    ) -> None:
        sim.random_life = LifeRange(idle=(600, 600), exited=(1, 1))
        params = {**CREATE_PARAMS, "RecordParams": {"RecordMode": 2, "MaxIdleTime": 5}}
        task_id = (await client.call("CreateCloudRecording", params)).response["TaskId"]
        clock.advance(5)
        assert (await client.describe(task_id)).response["Status"] == "Exited"
        assert sim.task_info(APP, task_id)["leave_code"] == 99  # type: ignore[index]

    async def test_create_past_the_concurrency_limit_is_refused(
        self, sim: Simulator, client: Client
    ) -> None:
        sim.max_tasks_per_app = 2
        codes = [(await client.call("CreateCloudRecording", CREATE_PARAMS)).code for _ in range(3)]
        assert codes == ["", "", "FailedOperation.RestrictedConcurrency"]

    @pytest.mark.parametrize(
        ("headers", "body", "code"),
        [
            ({"X-TC-Action": "StartMCUMixTranscode"}, None, "InvalidAction"),
            ({"X-TC-Action": ""}, None, "MissingParameter"),
            ({"X-TC-Version": "2018-01-01"}, None, "NoSuchVersion"),
            ({"X-TC-Region": "eu-frankfurt"}, None, "UnsupportedRegion"),
            ({"X-TC-Region": ""}, None, "MissingParameter"),
            ({}, b"[1, 2]", "InvalidParameter"),
            ({}, b"not json", "InvalidParameter"),
            ({}, b'{"TaskId": "t"}', "MissingParameter.SdkAppId"),
            ({}, b'{"SdkAppId": "1400000001", "TaskId": "t"}', "InvalidParameter.SdkAppId"),
            ({}, b'{"SdkAppId": 1400000001}', "MissingParameter.TaskId"),
            ({}, b'{"SdkAppId": 1400000001, "TaskId": 5}', "InvalidParameter.TaskId"),
        ],
    )
    async def test_bad_requests_get_the_service_error_codes(
        self, client: Client, headers: dict[str, str], body: bytes | None, code: str
    ) -> None:
        answer = await client.call(
            DESCRIBE, {"SdkAppId": APP, "TaskId": "t"}, headers=headers, body=body
        )
        assert answer.status == 200
        assert answer.code == code

    @pytest.mark.parametrize(
        ("change", "code"),
        [
            ({"headers": {"Authorization": ""}}, "AuthFailure.InvalidAuthorization"),
            (
                {"headers": {"Authorization": "TC3-HMAC-SHA256 nonsense"}},
                "AuthFailure.InvalidAuthorization",
            ),
            ({"secret_id": "AKIDUNKNOWN"}, "AuthFailure.SecretIdNotFound"),
            ({"secret_key": "not-the-key"}, "AuthFailure.SignatureFailure"),
            ({"headers": {"Host": "trtc.tencentcloudapi.com"}}, "AuthFailure.SignatureFailure"),
            ({"timestamp_offset": -600}, "AuthFailure.SignatureExpire"),
        ],
    )
    async def test_authentication_failures_get_the_real_codes(
        self, client: Client, clock: ManualClock, change: dict[str, Any], code: str
    ) -> None:
        offset = change.pop("timestamp_offset", 0)
        answer = await client.call(
            DESCRIBE,
            {"SdkAppId": APP, "TaskId": "t"},
            timestamp=int(clock.time()) + offset,
            **change,
        )
        assert answer.code == code
        assert DEFAULT_SECRET_KEY not in answer.text

    async def test_the_signature_is_checked_against_the_host_header_sent(
        self, sim: Simulator, session: aiohttp.ClientSession, clock: ManualClock
    ) -> None:
        # A client that addresses the simulator under another name signs that name.
        alias = Client(session, sim.url, clock=clock.time)
        answer = await alias.call(
            DESCRIBE,
            {"SdkAppId": APP, "TaskId": "t"},
            headers={"Host": "localhost"},
        )
        assert answer.code == "AuthFailure.SignatureFailure"

    async def test_a_skewed_server_clock_expires_signatures(
        self, sim: Simulator, client: Client
    ) -> None:
        sim.clock_skew = 600
        assert (await client.describe("t")).code == "AuthFailure.SignatureExpire"
        sim.clock_skew = 200
        assert (await client.describe("t")).code == "FailedOperation.TaskNotExist"

    async def test_temporary_credentials_need_their_token(
        self, sim: Simulator, client: Client
    ) -> None:
        sim.tokens[DEFAULT_SECRET_ID] = "session-token"
        assert (await client.describe("t")).code == "AuthFailure.TokenFailure"
        answer = await client.call(
            DESCRIBE, {"SdkAppId": APP, "TaskId": "t"}, headers={"X-TC-Token": "session-token"}
        )
        assert answer.code == "FailedOperation.TaskNotExist"
        assert "session-token" not in answer.text


class TestRateLimit:
    async def test_the_21st_arrival_within_one_second_is_throttled_with_tencents_message(
        self, sim: Simulator, client: Client, clock: ManualClock
    ) -> None:
        sim.add_task(APP, "r", Life(idle=0))
        codes = []
        for _ in range(21):
            codes.append((await client.describe("r")).code)
            clock.advance(0.04)
        assert codes[:20] == [""] * 20
        assert codes[20] == "RequestLimitExceeded"
        assert sim.throttled == 1
        assert sim.max_in_window(DESCRIBE) == 21
        last = list(sim.arrivals)[-1]
        assert (last.action, last.code, last.task_id) == (DESCRIBE, "RequestLimitExceeded", "r")

    async def test_the_throttle_message_counts_like_tencents(
        self, sim: Simulator, client: Client
    ) -> None:
        for _ in range(20):
            await client.describe("x")
        answer = await client.describe("x")
        assert answer.response["Error"]["Message"] == (
            "Your current request times equals to `21` in a second, "
            "which exceeds the frequency limit `20` for a second."
        )

    async def test_the_window_slides_so_a_steady_rate_at_the_limit_is_never_throttled(
        self, sim: Simulator, client: Client, clock: ManualClock
    ) -> None:
        sim.rate_limit = 16
        for _ in range(48):
            assert (await client.describe("x")).code == "FailedOperation.TaskNotExist"
            clock.advance(0.0625)  # exactly 16 per second, no float drift
        assert sim.throttled == 0
        assert sim.max_in_window(DESCRIBE) == 16

    async def test_the_limit_is_per_secret_id_and_per_action(
        self, sim: Simulator, client: Client
    ) -> None:
        sim.credentials["AKIDSECOND"] = "second-key"
        for _ in range(20):
            await client.describe("x")
        other = await client.call(
            DESCRIBE,
            {"SdkAppId": APP, "TaskId": "x"},
            secret_id="AKIDSECOND",
            secret_key="second-key",
        )
        assert other.code == "FailedOperation.TaskNotExist"
        delete = await client.call("DeleteCloudRecording", {"SdkAppId": APP, "TaskId": "x"})
        assert delete.code == "FailedOperation.TaskNotExist"
        assert (await client.describe("x")).code == "RequestLimitExceeded"
        assert sim.max_in_window(DESCRIBE, secret_id=DEFAULT_SECRET_ID) == 21
        assert sim.max_in_window(DESCRIBE, secret_id="AKIDSECOND") == 1

    async def test_the_arrival_log_records_every_request_and_can_be_reset(
        self, sim: Simulator, client: Client, clock: ManualClock
    ) -> None:
        await client.describe("a")
        await client.call(DESCRIBE, {}, headers={"X-TC-Region": "mars"})
        log = list(sim.arrivals)
        assert [(a.action, a.region, a.code) for a in log] == [
            (DESCRIBE, "ap-guangzhou", "FailedOperation.TaskNotExist"),
            (DESCRIBE, "mars", "UnsupportedRegion"),
        ]
        assert log[0].wall == pytest.approx(clock.time())
        assert log[0].secret_id == DEFAULT_SECRET_ID
        sim.reset_stats()
        assert len(sim.arrivals) == 0
        assert sim.max_in_window(DESCRIBE) == 0


class TestRealClock:
    async def test_short_lives_run_on_the_system_clock(
        self, session: aiohttp.ClientSession
    ) -> None:
        async with Simulator() as sim:
            client = Client(session, sim.url)
            sim.add_task(APP, "quick", Life(idle=0.05, in_progress=0.1, exited=0.1))
            seen: list[str] = []

            async def gone() -> bool:
                answer = await client.describe("quick")
                status = answer.response.get("Status") or answer.code
                if not seen or seen[-1] != status:
                    seen.append(status)
                return status == "FailedOperation.TaskNotExist"

            await eventually(gone)
            assert seen[-1] == "FailedOperation.TaskNotExist"
            assert "Exited" in seen or sim.task_info(APP, "quick")["phase"] == "GONE"  # type: ignore[index]
            assert sim.task_status(APP, "quick") is None
