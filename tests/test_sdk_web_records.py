"""The official SDK as a client of the simulator's newer answers: DescribeCloudRecording with a
RecorderKey, and StartWebRecord / DescribeWebRecord / StopWebRecord."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from tencentcloud.common.exception.tencent_cloud_sdk_exception import (
    TencentCloudSDKException,
)
from tencentcloud.trtc.v20190722 import models

from monitor.simulator import Life, LifeRange, ManualClock, Simulator, ThreadedSimulator
from tests.test_sdk_against_simulator import make_client

APP = 1400000001


@pytest.fixture
def server() -> Iterator[ThreadedSimulator]:
    sim = Simulator(clock=ManualClock(), seed=5, random_life=LifeRange(idle=(0, 0)))
    threaded = ThreadedSimulator(sim)
    threaded.start()
    yield threaded
    threaded.stop()


def code_of(call: Any, request: Any) -> str:
    with pytest.raises(TencentCloudSDKException) as caught:
        call(request)
    return str(caught.value.get_code())


class TestRecorderKey:
    def test_the_sdk_sends_the_key_and_reads_it_back(self, server: ThreadedSimulator) -> None:
        task_id = server.call(server.sim.add_task, APP, "relay-1", Life(idle=0), recorder_key="rk")
        client = make_client(server.url)
        req = models.DescribeCloudRecordingRequest()
        req.from_json_string(json.dumps({"SdkAppId": APP, "TaskId": task_id, "RecorderKey": "rk"}))
        answer = client.DescribeCloudRecording(req)
        assert answer.RecorderKey == "rk"
        assert answer.Status == "InProgress"
        req.RecorderKey = "not-this-one"
        assert code_of(client.DescribeCloudRecording, req) == "InvalidParameter"


class TestWebRecords:
    def test_start_describe_by_both_keys_stop(self, server: ThreadedSimulator) -> None:
        client = make_client(server.url, region="ap-singapore")
        start = models.StartWebRecordRequest()
        start.from_json_string(
            json.dumps(
                {
                    "SdkAppId": APP,
                    "RecordUrl": "https://class.example.com/1",
                    "RecordId": "class-1",
                    "MaxDurationLimit": 1800,
                    "StorageParams": {"CloudVod": {"TencentVod": {}}},
                }
            )
        )
        started = client.StartWebRecord(start)
        assert started.TaskId
        assert started.RequestId
        assert code_of(client.StartWebRecord, start) == "FailedOperation.TaskExist"

        by_task = models.DescribeWebRecordRequest()
        by_task.TaskId = started.TaskId
        described = client.DescribeWebRecord(by_task)
        assert (described.Status, described.RecordId) == (1, "class-1")
        by_record = models.DescribeWebRecordRequest()
        by_record.SdkAppId = APP
        by_record.RecordId = "class-1"
        assert client.DescribeWebRecord(by_record).TaskId == started.TaskId

        stop = models.StopWebRecordRequest()
        stop.TaskId = started.TaskId
        assert client.StopWebRecord(stop).RequestId
        assert code_of(client.DescribeWebRecord, by_task) == "FailedOperation.TaskNotExist"
