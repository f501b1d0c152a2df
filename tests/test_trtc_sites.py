"""The client's side of the second round of TRTC facts: both sites' hosts and regions, the
new error codes, RecorderKey and DescribeWebRecord, against the simulator."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from monitor.models import Outcome, Status
from monitor.secrets import Credentials
from monitor.simulator import (
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
    Fault,
    FaultKind,
    Life,
    Simulator,
)
from monitor.trtc.client import Endpoint, TrtcClient, new_session
from monitor.trtc.errors import classify_code
from monitor.trtc.sites import (
    CHINA_HOST,
    INTERNATIONAL_HOST,
    Site,
    site_info,
    site_of_host,
)
from monitor.trtc.web import describe_web_record, describe_web_result, web_params, web_status

APP = 1400000001
GOOD = Credentials(DEFAULT_SECRET_ID, DEFAULT_SECRET_KEY)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with new_session() as s:
        yield s


class TestSites:
    def test_each_site_has_its_default_host_and_regions(self) -> None:
        intl = site_info(Site.INTERNATIONAL)
        china = site_info("china")
        assert intl.default_host == INTERNATIONAL_HOST == "trtc.intl.tencentcloudapi.com"
        assert china.default_host == CHINA_HOST == "trtc.tencentcloudapi.com"
        assert intl.regions == (
            "ap-beijing",
            "ap-guangzhou",
            "ap-mumbai",
            "ap-shanghai",
            "ap-singapore",
        )
        assert china.regions == ("ap-beijing", "ap-guangzhou", "ap-shanghai")
        assert not china.serves("ap-mumbai")
        assert intl.serves("ap-mumbai")

    def test_web_recording_regions_are_narrower(self) -> None:
        assert site_info(Site.INTERNATIONAL).web_regions == ("ap-singapore",)
        assert not site_info(Site.INTERNATIONAL).serves("ap-guangzhou", web=True)
        assert site_info(Site.CHINA).serves("ap-shanghai", web=True)

    def test_an_unknown_site_names_the_sites(self) -> None:
        with pytest.raises(ValueError, match="international, china"):
            site_info("mars")

    @pytest.mark.parametrize(
        ("host", "site"),
        [
            ("trtc.intl.tencentcloudapi.com", Site.INTERNATIONAL),
            ("TRTC.tencentcloudapi.com:443", Site.CHINA),
            ("127.0.0.1:8080", None),
            ("trtc.ap-beijing.tencentcloudapi.com", None),
        ],
    )
    def test_a_host_tells_its_site(self, host: str, site: Site | None) -> None:
        assert site_of_host(host) is site


class TestNewCodes:
    def test_a_failed_task_query_is_transient(self) -> None:
        assert classify_code("FailedOperation.QueryTaskInfoFailed") is Outcome.TRANSIENT

    @pytest.mark.parametrize(
        "code",
        [
            "FailedOperation.TaskExist",
            "UnsupportedOperation.TaskLimit",
            "InvalidParameter.RecordId",
        ],
    )
    def test_answers_about_the_request_are_invalid(self, code: str) -> None:
        assert classify_code(code) is Outcome.INVALID

    def test_an_operator_may_still_call_one_an_ended_code(self) -> None:
        assert classify_code("FailedOperation.TaskExist", ["FailedOperation.TaskExist"]) is (
            Outcome.ENDED
        )

    @pytest.mark.parametrize(
        ("code", "outcome"),
        [
            ("FailedOperation.QueryTaskInfoFailed", Outcome.TRANSIENT),
            ("FailedOperation.TaskExist", Outcome.INVALID),
            ("UnsupportedOperation.TaskLimit", Outcome.INVALID),
            ("InvalidParameter.RecordId", Outcome.INVALID),
        ],
    )
    async def test_injected_into_the_simulator_they_reach_the_client_classified(
        self, simulator: Simulator, session: aiohttp.ClientSession, code: str, outcome: Outcome
    ) -> None:
        task_id = simulator.add_task(APP, life=Life(idle=0))
        simulator.faults.add(Fault(FaultKind.ERROR, code=code, count=1))
        result = await TrtcClient(session).describe_cloud_recording(
            endpoint=Endpoint.parse(simulator.url),
            credentials=GOOD,
            region="ap-guangzhou",
            sdk_app_id=APP,
            task_id=task_id,
        )
        assert (result.outcome, result.code) == (outcome, code)
        assert result.message  # the simulator's message for the code


class TestRecorderKey:
    async def test_the_key_is_sent_and_the_answer_shows_it(
        self, simulator: Simulator, session: aiohttp.ClientSession
    ) -> None:
        task_id = simulator.add_task(APP, life=Life(idle=0), recorder_key="relay-key-1")
        client = TrtcClient(session)
        args: dict[str, Any] = {
            "endpoint": Endpoint.parse(simulator.url),
            "credentials": GOOD,
            "region": "ap-guangzhou",
            "sdk_app_id": APP,
            "task_id": task_id,
        }
        result = await client.describe_cloud_recording(**args, recorder_key="relay-key-1")
        assert result.outcome is Outcome.OK
        assert result.recorder_key == "relay-key-1"
        assert result.status is Status.IN_PROGRESS
        # Sent only when given: a wrong one is refused, so the simulator saw what we sent.
        wrong = await client.describe_cloud_recording(**args, recorder_key="other")
        assert (wrong.outcome, wrong.code) == (Outcome.INVALID, "InvalidParameter")

    async def test_a_task_without_a_key_answers_none(
        self, simulator: Simulator, session: aiohttp.ClientSession
    ) -> None:
        task_id = simulator.add_task(APP, life=Life(idle=0))
        result = await TrtcClient(session).describe_cloud_recording(
            endpoint=Endpoint.parse(simulator.url),
            credentials=GOOD,
            region="ap-guangzhou",
            sdk_app_id=APP,
            task_id=task_id,
        )
        assert result.ok
        assert result.recorder_key is None


class TestDescribeWebRecord:
    def test_status_one_is_in_progress_and_anything_else_exited(self) -> None:
        assert web_status({"Status": 1}) is Status.IN_PROGRESS
        assert web_status({"Status": 0}) is Status.EXITED
        assert web_status({"Status": "1"}) is None
        assert web_status({"Status": True}) is None
        assert web_status({}) is None

    def test_the_request_is_by_task_id_or_by_record_id(self) -> None:
        assert web_params(task_id="t") == {"TaskId": "t"}
        assert web_params(sdk_app_id=APP, record_id="r") == {"SdkAppId": APP, "RecordId": "r"}
        with pytest.raises(ValueError, match="SdkAppId and a RecordId"):
            web_params(record_id="r")
        with pytest.raises(ValueError, match="not both"):
            web_params(task_id="t", record_id="r")

    async def test_a_web_recording_is_polled_to_its_end(
        self, simulator: Simulator, session: aiohttp.ClientSession
    ) -> None:
        task_id = simulator.add_task(APP, life=Life(idle=0), kind="web", record_id="lesson-1")
        client = TrtcClient(session)
        where: dict[str, Any] = {
            "endpoint": Endpoint.parse(simulator.url),
            "credentials": GOOD,
            "region": "ap-singapore",
        }
        by_task = await describe_web_record(client, **where, task_id=task_id)
        assert by_task.outcome is Outcome.OK
        assert web_status(by_task.response) is Status.IN_PROGRESS
        assert by_task.response is not None
        assert by_task.response["RecordId"] == "lesson-1"
        by_record = await describe_web_record(client, **where, sdk_app_id=APP, record_id="lesson-1")
        assert by_record.response is not None
        assert by_record.response["TaskId"] == task_id
        simulator.end_task(APP, task_id)
        ended = await describe_web_record(client, **where, task_id=task_id)
        assert (ended.outcome, ended.code) == (Outcome.ENDED, "FailedOperation.TaskNotExist")

    async def test_an_answer_without_status_is_malformed(
        self, simulator: Simulator, session: aiohttp.ClientSession
    ) -> None:
        # StopWebRecord answers no Status: read as a DescribeWebRecord answer it is malformed.
        task_id = simulator.add_task(APP, life=Life(idle=0), kind="web")
        client = TrtcClient(session)
        raw = await client.call(
            endpoint=Endpoint.parse(simulator.url),
            credentials=GOOD,
            action="StopWebRecord",
            region="ap-singapore",
            params={"TaskId": task_id},
        )
        assert raw.ok
        assert describe_web_result(raw).code == "Transport.MalformedResponse"
