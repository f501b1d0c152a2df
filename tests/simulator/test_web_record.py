"""Web-page recordings in the simulator: the three actions, their lifecycle, their group-8
callbacks, and the regions each site serves them in."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator

import aiohttp
import pytest

from monitor.callbacks.parse import Kind
from monitor.callbacks.web import WebEffect, parse_any_callback, web_effect
from monitor.simulator import CallbackSettings, Life, ManualClock, Simulator
from monitor.simulator.lifecycle import UploadFault, UploadPlan
from monitor.trtc.signing import authorization
from monitor.trtc.sites import Site
from tests.simulator.helpers import APP, Client, Receiver, next_callback

KEY = "web-callback-key"
START = {"SdkAppId": APP, "RecordUrl": "https://class.example.com/room/1"}


async def start(client: Client, **extra: object) -> str:
    answer = await client.call("StartWebRecord", {**START, **extra}, headers=SINGAPORE)
    assert answer.code == "", answer.text
    task_id = answer.response["TaskId"]
    assert isinstance(task_id, str)
    assert task_id
    return task_id


SINGAPORE = {"X-TC-Region": "ap-singapore"}


class TestActions:
    async def test_start_describe_stop_then_the_ended_code(
        self, client: Client, sim: Simulator, clock: ManualClock
    ) -> None:
        task_id = await start(client, RecordId="lesson-7")
        described = await client.call("DescribeWebRecord", {"TaskId": task_id}, headers=SINGAPORE)
        assert described.response["Status"] == 1
        assert described.response["RecordId"] == "lesson-7"
        assert "TaskId" not in described.response
        assert described.response["RequestId"]
        by_record = await client.call(
            "DescribeWebRecord", {"SdkAppId": APP, "RecordId": "lesson-7"}, headers=SINGAPORE
        )
        assert by_record.response["TaskId"] == task_id
        assert by_record.response["Status"] == 1
        stopped = await client.call("StopWebRecord", {"TaskId": task_id}, headers=SINGAPORE)
        assert stopped.code == ""
        assert set(stopped.response) == {"RequestId"}
        after = await client.call("DescribeWebRecord", {"TaskId": task_id}, headers=SINGAPORE)
        assert after.code == "FailedOperation.TaskNotExist"
        again = await client.call("StopWebRecord", {"TaskId": task_id}, headers=SINGAPORE)
        assert again.code == "FailedOperation.TaskNotExist"
        info = sim.task_info(APP, task_id)
        assert info is not None
        assert info["kind"] == "web"
        assert info["record_id"] == "lesson-7"

    async def test_a_record_id_starts_one_task_only(self, client: Client) -> None:
        await start(client, RecordId="once")
        twice = await client.call(
            "StartWebRecord", {**START, "RecordId": "once"}, headers=SINGAPORE
        )
        assert twice.code == "FailedOperation.TaskExist"

    @pytest.mark.parametrize(
        ("params", "code"),
        [
            ({"SdkAppId": APP}, "MissingParameter.RecordUrl"),
            ({**START, "RecordId": "x" * 32}, "InvalidParameter.RecordId"),
            ({**START, "MaxDurationLimit": 60}, "InvalidParameter.OutOfRange"),
            ({"RecordUrl": "https://a.example"}, "MissingParameter.SdkAppId"),
        ],
    )
    async def test_start_checks_its_parameters(
        self, client: Client, params: dict[str, object], code: str
    ) -> None:
        assert (await client.call("StartWebRecord", params, headers=SINGAPORE)).code == code

    @pytest.mark.parametrize(
        ("params", "code"),
        [
            ({}, "MissingParameter"),
            ({"RecordId": "r"}, "MissingParameter.SdkAppId"),
            ({"SdkAppId": APP, "RecordId": 5}, "InvalidParameter.RecordId"),
            ({"SdkAppId": APP, "RecordId": "never"}, "FailedOperation.TaskNotExist"),
            ({"TaskId": ""}, "InvalidParameter.TaskId"),
        ],
    )
    async def test_describe_checks_its_parameters(
        self, client: Client, params: dict[str, object], code: str
    ) -> None:
        assert (await client.call("DescribeWebRecord", params, headers=SINGAPORE)).code == code

    async def test_the_task_limit_is_unsupported_operation(
        self, client: Client, sim: Simulator
    ) -> None:
        sim.max_tasks_per_app = 1
        await start(client)
        full = await client.call("StartWebRecord", START, headers=SINGAPORE)
        assert full.code == "UnsupportedOperation.TaskLimit"

    async def test_each_action_has_its_own_rate_limit(self, client: Client, sim: Simulator) -> None:
        task_id = sim.add_task(APP, life=Life(idle=0), kind="web")
        for _ in range(sim.rate_limit):
            ok = await client.call("DescribeWebRecord", {"TaskId": task_id}, headers=SINGAPORE)
            assert ok.code == ""
        limited = await client.call("DescribeWebRecord", {"TaskId": task_id}, headers=SINGAPORE)
        assert limited.code == "RequestLimitExceeded"
        # Another action of the same credential still has its whole budget.
        assert (await client.describe(sim.add_task(APP))).code == ""


@pytest.fixture
async def web_sim(clock: ManualClock, receiver: Receiver) -> AsyncIterator[Simulator]:
    s = Simulator(clock=clock, seed=2, callback=CallbackSettings(url=receiver.url, key=KEY))
    await s.start()
    yield s
    await s.stop()


class TestCallbacks:
    async def test_start_stop_and_upload_arrive_as_group_8(
        self, web_sim: Simulator, clock: ManualClock, receiver: Receiver
    ) -> None:
        task_id = web_sim.add_task(APP, life=Life(idle=0, exited=1), kind="web")
        await web_sim.drain_callbacks()
        started = await next_callback(receiver, KEY)
        assert (started["EventGroupId"], started["EventType"]) == (8, 801)
        assert started["EventInfo"]["TaskId"] == task_id
        assert started["EventInfo"]["Payload"] == {"Status": 1, "EventMessage": "Success"}
        assert "RoomId" not in started["EventInfo"]
        web_sim.exit_task(APP, task_id, leave_code=0)  # as StopWebRecord does
        await web_sim.drain_callbacks()
        stopped = await next_callback(receiver, KEY)
        assert (stopped["EventType"], stopped["EventInfo"]["Payload"]["Status"]) == (802, 1)
        clock.advance(1)
        await web_sim.drain_callbacks()
        commit = await next_callback(receiver, KEY)
        finished = await next_callback(receiver, KEY)
        assert (commit["EventGroupId"], commit["EventType"]) == (8, 311)
        assert commit["EventInfo"]["Payload"]["TencentVod"]["FileId"]
        assert (finished["EventType"], finished["EventInfo"]["Payload"]["Status"]) == (312, 0)

    async def test_the_monitor_parser_reads_them_as_web_events(
        self, web_sim: Simulator, receiver: Receiver
    ) -> None:
        task_id = web_sim.add_task(APP, life=Life(idle=0), kind="web")
        web_sim.end_task(APP, task_id)  # a life that ended by itself: the resource limit
        await web_sim.drain_callbacks()
        effects = []
        for _ in range(4):
            headers, body = await receiver.received.get()
            parsed = parse_any_callback(body, headers["SdkAppId"])
            assert parsed.kind is Kind.WEB
            assert parsed.task_id == task_id
            effects.append((parsed.event_type, web_effect(parsed)))
        assert effects == [
            (801, WebEffect.STARTED),
            (804, WebEffect.STOPPED),
            (311, WebEffect.UPLOAD),
            (312, WebEffect.UPLOAD),
        ]

    async def test_a_failed_start_sends_801_status_2_only(
        self, web_sim: Simulator, receiver: Receiver
    ) -> None:
        plan = UploadPlan(fault=UploadFault.START_FAILED)
        web_sim.add_task(APP, life=Life(idle=0), kind="web", upload=plan)
        await web_sim.drain_callbacks()
        failed = await next_callback(receiver, KEY)
        assert (failed["EventType"], failed["EventInfo"]["Payload"]["Status"]) == (801, 2)
        assert receiver.received.empty()


class TestSites:
    """A request signed for a site's host gets that site's regions."""

    async def call_as(
        self,
        session: aiohttp.ClientSession,
        sim: Simulator,
        clock: ManualClock,
        host: str,
        action: str,
        region: str,
        params: dict[str, object],
    ) -> str:
        client = Client(session, sim.url, clock=clock.time)
        # Sign for the site's host and send it there on loopback, as a proxy would.
        signed = Client(session, f"http://{host}", clock=clock.time)
        body = json.dumps(params).encode()

        ts = int(clock.time())
        headers = {
            "Host": host,
            "X-TC-Region": region,
            "Authorization": authorization(signed.secret_id, signed.secret_key, body, host, ts),
        }
        answer = await client.call(action, body=body, headers=headers, timestamp=ts)
        return answer.code

    @pytest.mark.parametrize(
        ("host", "region", "code"),
        [
            ("trtc.tencentcloudapi.com", "ap-mumbai", "UnsupportedRegion"),
            ("trtc.tencentcloudapi.com", "ap-beijing", ""),
            ("trtc.intl.tencentcloudapi.com", "ap-mumbai", ""),
            ("trtc.intl.tencentcloudapi.com", "ap-frankfurt", "UnsupportedRegion"),
        ],
    )
    async def test_cloud_recording_regions_follow_the_site(
        self,
        session: aiohttp.ClientSession,
        sim: Simulator,
        clock: ManualClock,
        host: str,
        region: str,
        code: str,
    ) -> None:
        task_id = sim.add_task(APP)
        params = {"SdkAppId": APP, "TaskId": task_id}
        assert (
            await self.call_as(session, sim, clock, host, "DescribeCloudRecording", region, params)
            == code
        )

    @pytest.mark.parametrize(
        ("host", "region", "code"),
        [
            ("trtc.intl.tencentcloudapi.com", "ap-guangzhou", "UnsupportedRegion"),
            ("trtc.intl.tencentcloudapi.com", "ap-singapore", ""),
            ("trtc.tencentcloudapi.com", "ap-singapore", "UnsupportedRegion"),
            ("trtc.tencentcloudapi.com", "ap-shanghai", ""),
        ],
    )
    async def test_web_recording_regions_are_each_sites_own(
        self,
        session: aiohttp.ClientSession,
        sim: Simulator,
        clock: ManualClock,
        host: str,
        region: str,
        code: str,
    ) -> None:
        assert (
            await self.call_as(session, sim, clock, host, "StartWebRecord", region, START) == code
        )

    async def test_loopback_takes_the_default_site(self, client: Client, sim: Simulator) -> None:
        task_id = sim.add_task(APP)
        mumbai = {"X-TC-Region": "ap-mumbai"}
        assert (
            await client.call(
                "DescribeCloudRecording", {"SdkAppId": APP, "TaskId": task_id}, headers=mumbai
            )
        ).code == ""
        sim.default_site = Site.CHINA
        assert (
            await client.call(
                "DescribeCloudRecording", {"SdkAppId": APP, "TaskId": task_id}, headers=mumbai
            )
        ).code == "UnsupportedRegion"


class TestKindsApart:
    async def test_the_cloud_actions_do_not_see_a_web_task(
        self, client: Client, sim: Simulator
    ) -> None:
        web_id = sim.add_task(APP, life=Life(idle=0), kind="web")
        assert (await client.describe(web_id)).code == "FailedOperation.TaskNotExist"
        cloud_id = sim.add_task(APP, life=Life(idle=0))
        answer = await client.call("DescribeWebRecord", {"TaskId": cloud_id}, headers=SINGAPORE)
        assert answer.code == "FailedOperation.TaskNotExist"
