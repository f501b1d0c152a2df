"""Recording callbacks sent by the simulator: timing, signature, retries."""

from __future__ import annotations

import json

import aiohttp

from monitor.simulator import CallbackSettings, Life, ManualClock, Simulator
from monitor.simulator.callbacks import build_body, sign
from tests.simulator.helpers import (
    APP,
    CREATE_PARAMS,
    Client,
    Receiver,
    eventually,
    next_callback,
    unused_port,
)


class TestCallbacks:
    KEY = "callbackkey123"

    def test_the_sign_header_matches_the_published_example(self) -> None:
        body = (
            b'{\n\t"EventGroupId":\t2,\n\t"EventType":\t204,\n\t"CallbackTs":\t1664209748188,\n'
            b'\t"EventInfo":\t{\n\t\t"RoomId":\t8489,\n\t\t"EventTs":\t1664209748,\n'
            b'\t\t"EventMsTs":\t1664209748180,\n\t\t"UserId":\t"user_85034614",\n'
            b'\t\t"Reason":\t0\n\t}\n}'
        )
        assert sign("123654", body) == "kkoFeO3Oh2ZHnjtg8tEAQhtXK16/KI05W3BQff8IvGA="

    def test_a_callback_body_has_the_trtc_shape(self) -> None:
        body = json.loads(
            build_body(
                302,
                room_id="r1",
                user_id="bot",
                task_id="t1",
                payload={"LeaveCode": 3},
                event_wall=1700000000.25,
                callback_wall=1700000001.5,
            )
        )
        assert body == {
            "EventGroupId": 3,
            "EventType": 302,
            "CallbackTs": 1700000001500,
            "EventInfo": {
                "RoomId": "r1",
                "EventTs": 1700000000,
                "EventMsTs": 1700000000250,
                "UserId": "bot",
                "TaskId": "t1",
                "Payload": {"LeaveCode": 3},
            },
        }

    async def test_a_started_then_exited_task_sends_signed_301_and_302(
        self, receiver: Receiver
    ) -> None:
        settings = CallbackSettings(url=receiver.url, key=self.KEY)
        async with Simulator(callback=settings) as sim:
            sim.add_task(APP, "cb1", Life(idle=0), room_id="900", user_id="bot_900")
            started = await next_callback(receiver, self.KEY)
            assert started["EventGroupId"] == 3
            assert started["EventType"] == 301
            assert started["EventInfo"]["TaskId"] == "cb1"
            assert started["EventInfo"]["RoomId"] == "900"
            assert started["EventInfo"]["UserId"] == "bot_900"
            assert started["EventInfo"]["Payload"] == {"Status": 0}
            sim.exit_task(APP, "cb1", leave_code=3)
            stopped = await next_callback(receiver, self.KEY)
            assert stopped["EventType"] == 302
            assert stopped["EventInfo"]["Payload"] == {"LeaveCode": 3}
            assert stopped["EventInfo"]["EventMsTs"] // 1000 == stopped["EventInfo"]["EventTs"]

    async def test_a_life_that_ends_by_itself_sends_302_with_its_leave_code(
        self, receiver: Receiver
    ) -> None:
        settings = CallbackSettings(url=receiver.url, key=self.KEY, events=frozenset({302, 305}))
        async with Simulator(callback=settings) as sim:
            sim.add_task(APP, "cb2", Life(idle=0, in_progress=0.05, exited=0.05, leave_code=4))
            stopped = await next_callback(receiver, self.KEY)
            assert (stopped["EventType"], stopped["EventInfo"]["Payload"]) == (
                302,
                {"LeaveCode": 4},
            )
            finished = await next_callback(receiver, self.KEY)
            assert finished["EventType"] == 305

    async def test_delete_cloud_recording_sends_302_with_leave_code_0(
        self, receiver: Receiver, session: aiohttp.ClientSession
    ) -> None:
        settings = CallbackSettings(url=receiver.url, key=self.KEY, events=frozenset({302}))
        async with Simulator(callback=settings) as sim:
            client = Client(session, sim.url)
            task_id = (await client.call("CreateCloudRecording", CREATE_PARAMS)).response["TaskId"]
            await client.call("DeleteCloudRecording", {"SdkAppId": APP, "TaskId": task_id})
            stopped = await next_callback(receiver, self.KEY)
            assert stopped["EventInfo"]["TaskId"] == task_id
            assert stopped["EventInfo"]["RoomId"] == 8848  # numeric room: a number
            assert stopped["EventInfo"]["Payload"] == {"LeaveCode": 0}

    async def test_a_failing_receiver_is_retried_and_never_breaks_the_api(
        self, receiver: Receiver, session: aiohttp.ClientSession
    ) -> None:
        receiver.status[0] = 500
        settings = CallbackSettings(
            url=receiver.url, key=self.KEY, retry_interval=0.05, retry_for=0.12
        )
        async with Simulator(callback=settings) as sim:
            sim.add_task(APP, "cb3", Life(idle=0))
            bodies = [await next_callback(receiver, self.KEY) for _ in range(3)]
            assert {b["EventType"] for b in bodies} == {301}  # one message, delivered again

            async def gave_up() -> bool:
                return sim.callback_stats["failed"] == 1

            await eventually(gave_up)
            client = Client(session, sim.url)
            assert (await client.describe("cb3")).response["Status"] == "InProgress"
            assert sim.callback_stats["delivered"] == 0

    async def test_an_unreachable_receiver_does_not_crash_the_simulator(
        self, session: aiohttp.ClientSession
    ) -> None:
        settings = CallbackSettings(
            url=f"http://127.0.0.1:{unused_port()}/cb",
            key=self.KEY,
            retry_interval=0.01,
            retry_for=0,
        )
        async with Simulator(callback=settings) as sim:
            sim.add_task(APP, "cb4", Life(idle=0))
            await sim.drain_callbacks()
            client = Client(session, sim.url)
            assert (await client.describe("cb4")).response["Status"] == "InProgress"
            assert sim.callback_stats["delivered"] == 0
            assert sim.callback_stats["attempts"] >= 1

    async def test_with_a_manual_clock_events_fire_when_time_is_advanced(
        self, receiver: Receiver
    ) -> None:
        clock = ManualClock()
        settings = CallbackSettings(url=receiver.url, key=self.KEY, events=frozenset({302}))
        async with Simulator(callback=settings, clock=clock) as sim:
            sim.add_task(APP, "cb5", Life(idle=1, in_progress=10, leave_code=100))
            assert sim.run_due_events() == 0
            clock.advance(11)
            stopped = await next_callback(receiver, self.KEY)
            assert stopped["EventInfo"]["Payload"] == {"LeaveCode": 100}
