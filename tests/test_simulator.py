"""The TRTC simulator: pure parts directly, the wire format through a raw signed client."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import io
import json
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from aiohttp import web

from monitor.models import Status
from monitor.simulator import (
    DEFAULT_SECRET_ID,
    DEFAULT_SECRET_KEY,
    CallbackSettings,
    ControlError,
    Fault,
    FaultKind,
    Life,
    LifeRange,
    ManualClock,
    Scenario,
    ScenarioError,
    Simulator,
    SimulatorControl,
    load_scenario,
    parse_scenario,
    serve,
)
from monitor.simulator.arrivals import SlidingWindowCounter, max_in_window
from monitor.simulator.callbacks import build_body, sign
from monitor.simulator.faults import FaultInjector, fault_from_mapping
from monitor.simulator.lifecycle import SimTask, plan
from monitor.simulator.protocol import (
    SignedRequest,
    check_common,
    parse_create,
    verify,
)
from monitor.trtc.signing import authorization, parse_authorization

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "config" / "scenario.example.yaml"
APP = 1400000001
DESCRIBE = "DescribeCloudRecording"
CREATE_PARAMS: dict[str, Any] = {
    "SdkAppId": APP,
    "RoomId": "8848",
    "UserId": "recorder_8848",
    "UserSig": "sig",
    "RecordParams": {"RecordMode": 2, "MaxIdleTime": 30},
    "StorageParams": {"CloudStorage": {"Vendor": 0, "Bucket": "b", "Region": "ap-guangzhou"}},
}


# --------------------------------------------------------------------------- helpers


@dataclass
class Answer:
    status: int
    content_type: str
    text: str

    @property
    def json(self) -> dict[str, Any]:
        return json.loads(self.text)  # type: ignore[no-any-return]

    @property
    def response(self) -> dict[str, Any]:
        return self.json["Response"]  # type: ignore[no-any-return]

    @property
    def code(self) -> str:
        return str(self.response.get("Error", {}).get("Code", ""))


@dataclass
class Client:
    """A raw TRTC client: signs with monitor.trtc.signing and sends with aiohttp."""

    session: aiohttp.ClientSession
    url: str
    clock: Callable[[], float] = time.time
    secret_id: str = DEFAULT_SECRET_ID
    secret_key: str = DEFAULT_SECRET_KEY
    defaults: dict[str, str] = field(default_factory=dict)

    @property
    def host(self) -> str:
        return self.url.split("//", 1)[1]

    async def call(
        self,
        action: str,
        params: dict[str, Any] | None = None,
        *,
        body: bytes | None = None,
        headers: dict[str, str] | None = None,
        timestamp: int | None = None,
        secret_id: str | None = None,
        secret_key: str | None = None,
        timeout: float = 10.0,
    ) -> Answer:
        raw = body if body is not None else json.dumps(params or {}).encode()
        ts = int(self.clock()) if timestamp is None else timestamp
        h = {
            "Content-Type": "application/json",
            "Host": self.host,
            "X-TC-Action": action,
            "X-TC-Version": "2019-07-22",
            "X-TC-Region": "ap-guangzhou",
            "X-TC-Timestamp": str(ts),
            "X-TC-Language": "en-US",
            "Authorization": authorization(
                secret_id or self.secret_id, secret_key or self.secret_key, raw, self.host, ts
            ),
            **self.defaults,
            **(headers or {}),
        }
        async with self.session.post(
            self.url + "/",
            data=raw,
            headers=h,
            timeout=aiohttp.ClientTimeout(total=timeout),
        ) as resp:
            return Answer(resp.status, resp.headers.get("Content-Type", ""), await resp.text())

    async def describe(self, task_id: str, app: int = APP) -> Answer:
        return await self.call(DESCRIBE, {"SdkAppId": app, "TaskId": task_id})


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
async def sim(clock: ManualClock) -> AsyncIterator[Simulator]:
    s = Simulator(clock=clock, seed=1)
    await s.start()
    yield s
    await s.stop()


@pytest.fixture
def client(sim: Simulator, session: aiohttp.ClientSession, clock: ManualClock) -> Client:
    return Client(session, sim.url, clock=clock.time)


@dataclass
class Receiver:
    """A loopback callback receiver that records what arrives."""

    url: str
    received: asyncio.Queue[tuple[dict[str, str], bytes]]
    status: list[int]


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    received: asyncio.Queue[tuple[dict[str, str], bytes]] = asyncio.Queue()
    status = [200]

    async def handle(request: web.Request) -> web.Response:
        received.put_nowait((dict(request.headers), await request.read()))
        return web.Response(status=status[0])

    app = web.Application()
    app.router.add_post("/cb", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    yield Receiver(f"http://127.0.0.1:{port}/cb", received, status)
    await runner.cleanup()


async def next_callback(receiver: Receiver, key: str) -> dict[str, Any]:
    headers, body = await asyncio.wait_for(receiver.received.get(), 10)
    expected = base64.b64encode(hmac.new(key.encode(), body, hashlib.sha256).digest()).decode()
    assert headers["Sign"] == expected
    assert headers["Content-Type"] == "application/json"
    event: dict[str, Any] = json.loads(body)
    assert headers["SdkAppId"] == str(APP)
    return event


async def eventually(check: Callable[[], Awaitable[bool]], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        await asyncio.sleep(0.02)


# --------------------------------------------------------------------------- pure parts


class TestSlidingWindow:
    def test_the_arrival_past_the_limit_within_one_second_is_counted_over_it(self) -> None:
        counter = SlidingWindowCounter(1.0)
        counts = [counter.hit(("AKID", DESCRIBE), 100.0 + i * 0.04) for i in range(21)]
        assert counts[19] == 20
        assert counts[20] == 21

    def test_arrivals_exactly_one_window_apart_do_not_share_a_window(self) -> None:
        counter = SlidingWindowCounter(1.0)
        assert counter.hit(("a", "x"), 10.0) == 1
        assert counter.hit(("a", "x"), 10.5) == 2
        assert counter.hit(("a", "x"), 11.0) == 2  # 10.0 is outside (10.0, 11.0]

    def test_keys_are_counted_separately(self) -> None:
        counter = SlidingWindowCounter(1.0)
        for _ in range(5):
            counter.hit(("a", DESCRIBE), 1.0)
        assert counter.hit(("b", DESCRIBE), 1.0) == 1
        assert counter.hit(("a", "CreateCloudRecording"), 1.0) == 1

    def test_max_in_window_finds_the_densest_second(self) -> None:
        times = [0.0, 0.1, 0.2, 1.15, 1.2, 1.25, 1.3, 3.0]
        assert max_in_window(times, 1.0) == 4  # (0.3, 1.3]
        assert max_in_window(times, 1.2) == 5  # (0.1, 1.3]
        assert max_in_window(times, 0.1) == 2
        assert max_in_window([], 1.0) == 0

    def test_max_in_window_matches_a_brute_force_count(self) -> None:
        rng = random.Random(5)
        times = sorted(rng.uniform(0, 20) for _ in range(300))
        brute = max(sum(1 for u in times if t - 1.0 < u <= t) for t in times)
        assert max_in_window(times, 1.0) == brute


class TestLifecycle:
    def test_a_life_goes_idle_in_progress_exited_then_gone(self) -> None:
        task = SimTask.create(
            APP, "t", Life(idle=1, in_progress=2, exited=3), 100.0, 0.0, room_id=1, user_id="u"
        )
        assert [task.api_status(t) for t in (100.0, 100.99, 101.0, 102.99, 103.0, 105.99)] == [
            Status.IDLE,
            Status.IDLE,
            Status.IN_PROGRESS,
            Status.IN_PROGRESS,
            Status.EXITED,
            Status.EXITED,
        ]
        assert task.api_status(106.0) is None

    def test_an_idle_hang_stays_idle_whatever_max_idle_time_says(self) -> None:
        task = SimTask.create(
            APP, "t", Life(hang_idle=True), 0.0, 0.0, room_id=1, user_id="u", max_idle_time=5
        )
        assert task.api_status(1e9) is Status.IDLE

    def test_a_task_idle_for_max_idle_time_exits_with_leave_code_99(self) -> None:
        p = plan(Life(idle=60, exited=2), created=10.0, max_idle_time=30)
        assert p.in_progress_at == float("inf")
        assert (p.exited_at, p.gone_at, p.leave_code) == (40.0, 42.0, 99)

    def test_stopping_an_idle_task_skips_in_progress_and_only_counts_once(self) -> None:
        task = SimTask.create(APP, "t", Life(idle=5, exited=1), 0.0, 0.0, room_id=1, user_id="u")
        assert task.stop(2.0, 0)
        assert not task.stop(2.5, 3)
        assert task.leave_code == 0
        assert task.api_status(2.0) is Status.EXITED
        assert task.api_status(6.0) is None  # never InProgress, gone at 3.0

    def test_finishing_a_task_makes_it_vanish_at_once(self) -> None:
        task = SimTask.create(APP, "t", Life(idle=0), 0.0, 0.0, room_id=1, user_id="u")
        assert task.finish(4.0)
        assert task.api_status(4.0) is None
        assert not task.finish(5.0)

    def test_an_expired_task_is_invisible_while_its_life_goes_on(self) -> None:
        task = SimTask.create(
            APP, "t", Life(idle=0), 0.0, 0.0, room_id=1, user_id="u", expire_after=10
        )
        assert task.api_status(9.9) is Status.IN_PROGRESS
        assert task.api_status(10.0) is None
        assert task.info(10.0)["phase"] == "IN_PROGRESS"

    def test_random_lives_are_reproducible_from_a_seed_and_within_bounds(self) -> None:
        bounds = LifeRange(idle=(1, 2), in_progress=(10, 20), exited=(3, 4), leave_codes=(1, 99))
        lives = [bounds.draw(random.Random(42)) for _ in range(2)]
        assert lives[0] == lives[1]
        many = [bounds.draw(random.Random(i)) for i in range(50)]
        assert all(1 <= x.idle <= 2 and 3 <= x.exited <= 4 for x in many)
        assert all(x.in_progress is not None and 10 <= x.in_progress <= 20 for x in many)
        assert {x.leave_code for x in many} == {1, 99}

    def test_a_negative_duration_is_refused(self) -> None:
        with pytest.raises(ValueError, match="idle"):
            Life(idle=-1)


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


class TestFaultInjector:
    def test_a_certain_fault_fires_on_every_request_and_its_count_runs_out(self) -> None:
        inj = FaultInjector(random.Random(0))
        inj.add(Fault(FaultKind.DROP, count=2))
        kinds = [
            d.fault.kind if d.fault else None for d in (inj.decide(DESCRIBE, "t") for _ in range(3))
        ]
        assert kinds == [FaultKind.DROP, FaultKind.DROP, None]
        assert len(inj) == 0
        assert inj.fired == {"drop": 2}

    def test_a_fault_limited_to_task_ids_spares_other_tasks_and_actions(self) -> None:
        inj = FaultInjector()
        inj.add(
            Fault(
                FaultKind.INTERNAL_ERROR, task_ids=frozenset({"a"}), actions=frozenset({DESCRIBE})
            )
        )
        assert inj.decide(DESCRIBE, "b").fault is None
        assert inj.decide("DeleteCloudRecording", "a").fault is None
        assert inj.decide(DESCRIBE, "a").fault is not None

    def test_latencies_add_up_and_the_first_other_fault_decides(self) -> None:
        inj = FaultInjector()
        inj.add(Fault(FaultKind.LATENCY, latency=0.1))
        inj.add(Fault(FaultKind.THROTTLE, count=1))
        inj.add(Fault(FaultKind.LATENCY, latency=0.2))
        inj.add(Fault(FaultKind.DROP, count=1))
        first = inj.decide(DESCRIBE, "t")
        assert first.delay == pytest.approx(0.3)
        assert first.fault is not None
        assert first.fault.kind is FaultKind.THROTTLE
        second = inj.decide(DESCRIBE, "t")  # the drop's count was not used up before
        assert second.fault is not None
        assert second.fault.kind is FaultKind.DROP

    def test_probabilistic_faults_repeat_with_the_same_seed(self) -> None:
        def run(seed: int) -> list[bool]:
            inj = FaultInjector(random.Random(seed))
            inj.add(Fault(FaultKind.INTERNAL_ERROR, probability=0.3))
            return [inj.decide(DESCRIBE, "t").fault is not None for _ in range(200)]

        assert run(3) == run(3)
        assert 30 < sum(run(3)) < 90

    def test_a_fault_from_plain_data_names_a_bad_key(self) -> None:
        with pytest.raises(ValueError, match=r"^probability:"):
            fault_from_mapping({"kind": "drop", "probability": 2})
        with pytest.raises(ValueError, match=r"^kind:"):
            fault_from_mapping({"kind": "meteor"})
        with pytest.raises(ValueError, match=r"^colour:"):
            fault_from_mapping({"kind": "drop", "colour": "red"})


# --------------------------------------------------------------------------- over the wire


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


class TestFaultsOnTheWire:
    async def test_latency_delays_the_answer_then_answers_normally(
        self, sim: Simulator, client: Client
    ) -> None:
        sim.faults.add(Fault(FaultKind.LATENCY, latency=0.2))
        started = time.monotonic()
        answer = await client.describe("t")
        assert time.monotonic() - started >= 0.2
        assert answer.code == "FailedOperation.TaskNotExist"
        assert list(sim.arrivals)[-1].fault == "latency"

    async def test_a_timeout_holds_the_request_past_the_client_timeout(
        self, sim: Simulator, client: Client
    ) -> None:
        sim.faults.add(Fault(FaultKind.TIMEOUT, hold=30))
        with pytest.raises(TimeoutError):
            await client.call(DESCRIBE, {"SdkAppId": APP, "TaskId": "t"}, timeout=0.3)
        assert [a.code for a in sim.arrivals] == ["!timeout"]

    async def test_stopping_ends_a_held_request_promptly(
        self, clock: ManualClock, session: aiohttp.ClientSession
    ) -> None:
        sim = Simulator(clock=clock, faults=[Fault(FaultKind.TIMEOUT, hold=60)])
        await sim.start()
        client = Client(session, sim.url, clock=clock.time)
        pending = asyncio.create_task(client.describe("t"))

        async def arrived() -> bool:
            return len(sim.arrivals) == 1

        await eventually(arrived)
        await asyncio.wait_for(sim.stop(), 10)  # well under the 60 s hold
        with pytest.raises(aiohttp.ClientError):
            await asyncio.wait_for(pending, 10)

    async def test_a_dropped_connection_gets_no_answer(
        self, sim: Simulator, client: Client
    ) -> None:
        sim.faults.add(Fault(FaultKind.DROP, count=1))
        with pytest.raises(aiohttp.ServerDisconnectedError):
            await client.describe("t")
        assert (await client.describe("t")).code == "FailedOperation.TaskNotExist"
        assert [a.code for a in sim.arrivals] == ["!drop", "FailedOperation.TaskNotExist"]

    async def test_an_http_error_is_a_5xx_with_an_html_body(
        self, sim: Simulator, client: Client
    ) -> None:
        sim.faults.add(Fault(FaultKind.HTTP_ERROR, status=503))
        answer = await client.describe("t")
        assert answer.status == 503
        assert answer.content_type.startswith("text/html")
        assert "<html>" in answer.text

    @pytest.mark.parametrize("body", ["not_json", "no_response", "truncated"])
    async def test_a_malformed_body_is_200_json_typed_but_not_the_envelope(
        self, sim: Simulator, client: Client, body: str
    ) -> None:
        sim.faults.add(Fault(FaultKind.MALFORMED, body=body))
        answer = await client.describe("t")
        assert (answer.status, answer.content_type) == (200, "application/json")
        try:
            parsed = json.loads(answer.text)
        except ValueError:
            return
        assert "Response" not in parsed

    async def test_internal_and_other_errors_answer_their_code(
        self, sim: Simulator, client: Client
    ) -> None:
        sim.faults.add(Fault(FaultKind.INTERNAL_ERROR, count=1))
        sim.faults.add(Fault(FaultKind.ERROR, code="InternalError.CRInternalError", count=1))
        sim.faults.add(Fault(FaultKind.ERROR, code="ServiceUnavailable", message="busy", count=1))
        answers = [await client.describe("t") for _ in range(3)]
        assert [a.code for a in answers] == [
            "InternalError",
            "InternalError.CRInternalError",
            "ServiceUnavailable",
        ]
        assert answers[2].response["Error"]["Message"] == "busy"

    async def test_a_throttling_storm_answers_request_limit_exceeded_at_any_rate(
        self, sim: Simulator, client: Client
    ) -> None:
        sim.faults.add(Fault(FaultKind.THROTTLE, count=2))
        codes = [(await client.describe("t")).code for _ in range(3)]
        assert codes == [
            "RequestLimitExceeded",
            "RequestLimitExceeded",
            "FailedOperation.TaskNotExist",
        ]
        assert sim.throttled == 0  # the strict counter did not throttle anyone
        assert sim.faults.fired == {"throttle": 2}

    async def test_bad_credentials_answer_secret_id_not_found_even_for_valid_signatures(
        self, sim: Simulator, client: Client
    ) -> None:
        sim.faults.add(Fault(FaultKind.BAD_CREDENTIALS))
        assert (await client.describe("t")).code == "AuthFailure.SecretIdNotFound"

    async def test_faults_limited_to_a_task_leave_other_tasks_alone(
        self, sim: Simulator, client: Client
    ) -> None:
        sim.add_task(APP, "victim", Life(idle=0))
        sim.add_task(APP, "bystander", Life(idle=0))
        sim.faults.add(Fault(FaultKind.INTERNAL_ERROR, task_ids=frozenset({"victim"})))
        assert (await client.describe("victim")).code == "InternalError"
        assert (await client.describe("bystander")).response["Status"] == "InProgress"


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


# --------------------------------------------------------------------------- control surface


class TestControlSurface:
    async def test_tasks_can_be_added_exited_and_ended_over_http(
        self, sim: Simulator, session: aiohttp.ClientSession, clock: ManualClock
    ) -> None:
        base = sim.url + "/-/sim"
        async with session.post(
            base + "/tasks", json={"sdk_app_id": APP, "task_id": "h1", "idle": "2s", "exited": 1}
        ) as resp:
            assert resp.status == 201
            assert await resp.json() == {"sdk_app_id": APP, "task_id": "h1"}
        clock.advance(2)
        assert sim.task_status(APP, "h1") is Status.IN_PROGRESS
        async with session.post(
            base + "/tasks/exit", json={"sdk_app_id": APP, "task_id": "h1", "leave_code": 99}
        ) as resp:
            body = await resp.json()
            assert body["changed"] is True
            assert body["task"]["status"] == "Exited"
            assert body["task"]["leave_code"] == 99
        async with session.post(
            base + "/tasks/end", json={"sdk_app_id": APP, "task_id": "h1"}
        ) as resp:
            assert (await resp.json())["task"]["phase"] == "GONE"
        async with session.get(
            base + "/tasks", params={"sdk_app_id": str(APP), "task_id": "h1"}
        ) as resp:
            assert (await resp.json())["status"] is None

    async def test_bad_control_requests_get_json_errors(
        self, sim: Simulator, session: aiohttp.ClientSession
    ) -> None:
        base = sim.url + "/-/sim"
        async with session.post(base + "/tasks", json={"sdk_app_id": APP, "idle": "soon"}) as resp:
            assert resp.status == 400
            assert "idle" in (await resp.json())["error"]["message"]
        async with session.post(
            base + "/tasks/exit", json={"sdk_app_id": APP, "task_id": "zz"}
        ) as resp:
            assert resp.status == 404
        async with session.post(base + "/tasks", data=b"{not json") as resp:
            assert resp.status == 400
        sim.add_task(APP, "dup")
        async with session.post(
            base + "/tasks", json={"sdk_app_id": APP, "task_id": "dup"}
        ) as resp:
            assert resp.status == 409
        async with session.post(base + "/faults", json={"kind": "drop", "probability": 3}) as resp:
            assert resp.status == 400
            assert "probability" in (await resp.json())["error"]["message"]
        async with session.patch(base + "/settings", json={"rate_limt": 5}) as resp:
            assert resp.status == 400

    async def test_the_control_client_drives_faults_settings_and_stats(
        self, sim: Simulator, client: Client, clock: ManualClock
    ) -> None:
        async with SimulatorControl(sim.url) as control:
            task_id = await control.add_task(APP, idle=0, in_progress="1m")
            assert (await control.task(APP, task_id))["status"] == "InProgress"
            fault_id = await control.add_fault("error", code="InternalError", count=5)
            assert (await client.describe(task_id)).code == "InternalError"
            listed = await control.faults()
            assert listed["faults"][0]["remaining"] == 4
            await control.remove_fault(fault_id)
            await control.add_fault("latency", latency="10ms")
            await control.clear_faults()
            assert (await client.describe(task_id)).response["Status"] == "InProgress"
            clock.advance(1.0)  # the first two fall out of the window of the next three
            for _ in range(3):
                await client.describe(task_id)
            stats = await control.stats()
            assert stats["arrivals"] == 5
            assert stats["actions"][DESCRIBE]["max_in_window"] == 3
            assert (await control.stats(window=1.5))["actions"][DESCRIBE]["max_in_window"] == 5
            assert stats["actions"][DESCRIBE]["codes"] == {"InternalError": 1, "": 4}
            assert stats["throttled"] == 0
            assert stats["first_wall"] <= stats["last_wall"]
            assert stats["faults_fired"] == {"error": 1}
            assert (await control.settings(rate_limit=2, clock_skew=-400))["rate_limit"] == 2
            assert (await client.describe(task_id)).code == "AuthFailure.SignatureExpire"
            await control.settings(clock_skew=0)
            await control.reset_stats()
            codes = [(await client.describe(task_id)).code for _ in range(3)]
            assert codes == ["", "", "RequestLimitExceeded"]
            assert (await control.stats())["throttled"] == 1
            assert await control.exit_task(APP, task_id) is True
            assert await control.end_task(APP, task_id) is True
            assert len(await control.tasks()) == 1
            with pytest.raises(ControlError) as caught:
                await control.exit_task(APP, "missing")
            assert caught.value.status == 404

    async def test_the_index_lists_the_control_endpoints(
        self, sim: Simulator, session: aiohttp.ClientSession
    ) -> None:
        async with session.get(sim.url + "/-/sim/") as resp:
            body = await resp.json()
        assert "POST /-/sim/faults" in body["endpoints"]
        assert body["settings"]["rate_limit"] == 20


# --------------------------------------------------------------------------- scenarios


class TestScenario:
    def test_the_documented_example_loads_and_builds_its_tasks(self) -> None:
        scenario = load_scenario(EXAMPLE, env={"TRTC_CALLBACK_KEY": "cb-key-1"})
        assert scenario.seed == 7
        assert scenario.credentials[0].secret_id == "AKIDSIMULATOR"
        assert "simulator-secret-key" not in repr(scenario)
        assert scenario.callback is not None
        assert scenario.callback.key == "cb-key-1"
        assert "cb-key-1" not in repr(scenario)
        assert scenario.random_life.idle == (0.5, 2.0)
        assert [f.kind for f in scenario.faults] == [
            FaultKind.LATENCY,
            FaultKind.INTERNAL_ERROR,
            FaultKind.DROP,
        ]
        assert scenario.faults[0].latency == pytest.approx(0.02)
        clock = ManualClock()
        sim = Simulator.from_scenario(scenario, clock=clock)
        assert sim.task_status(APP, "demo-idle-hang") is Status.IDLE
        clock.advance(30)
        assert sim.task_status(APP, "demo-idle-timeout") is Status.EXITED
        assert sim.task_info(APP, "demo-idle-timeout")["leave_code"] == 99  # type: ignore[index]
        assert sim.task_status(APP, "demo-normal") is Status.IN_PROGRESS
        clock.advance(600)
        assert sim.task_status(APP, "demo-expiring") is None
        assert sim.task_status(APP, "demo-idle-hang") is Status.IDLE

    def test_an_empty_scenario_gives_the_defaults(self) -> None:
        assert parse_scenario(None) == Scenario()
        assert parse_scenario({"max_tasks_per_app": None}).max_tasks_per_app is None

    @pytest.mark.parametrize(
        ("data", "key"),
        [
            ({"rate_limt": 5}, "rate_limt"),
            ({"rate_limit": 0}, "rate_limit"),
            ({"rate_window": "1 second"}, "rate_window"),
            ({"ended_code": "NotFound"}, "ended_code"),
            (
                {"tasks": [{"sdk_app_id": APP}, {"sdk_app_id": APP, "idle": "soon"}]},
                "tasks[1].idle",
            ),
            ({"tasks": [{"task_id": "x"}]}, "tasks[0].sdk_app_id"),
            ({"tasks": [{"sdk_app_id": APP, "task_id": "a"}] * 2}, "tasks[1].task_id"),
            ({"tasks": [{"sdk_app_id": APP, "hang_idle": "yes"}]}, "tasks[0].hang_idle"),
            ({"faults": [{"kind": "drop", "probability": 1.5}]}, "faults[0].probability"),
            ({"faults": [{"kind": "latency", "latency": "fast"}]}, "faults[0].latency"),
            ({"faults": [{"kind": "error"}]}, "faults[0].code"),
            ({"callback": {"url": "ftp://x", "key": "k"}}, "callback.url"),
            ({"callback": {"url": "http://x"}}, "callback.key"),
            ({"callback": {"url": "http://x", "key_env": "NOPE_NOT_SET"}}, "callback.key_env"),
            (
                {"callback": {"url": "http://x", "key": "k", "events": [301, 999]}},
                "callback.events[1]",
            ),
            ({"credentials": [{"secret_id": "A"}]}, "credentials[0].secret_key"),
            ({"random_life": {"idle": [5, 1]}}, "random_life.idle"),
            ({"random_life": {"hang_idle": 2}}, "random_life.hang_idle"),
            ([1, 2], "(top level)"),
        ],
    )
    def test_an_invalid_scenario_names_the_offending_key(self, data: object, key: str) -> None:
        with pytest.raises(ScenarioError) as caught:
            parse_scenario(data, source="s.yaml", env={})
        assert caught.value.key == key
        assert str(caught.value).startswith(f"s.yaml: {key}: ")

    def test_a_secret_from_the_environment_never_shows_in_errors(self) -> None:
        data = {"credentials": [{"secret_id": "A", "secret_key_env": "K", "token": 5}]}
        with pytest.raises(ScenarioError) as caught:
            parse_scenario(data, env={"K": "very-secret-value"})
        assert caught.value.key == "credentials[0].token"
        assert "very-secret-value" not in str(caught.value)

    def test_a_yaml_syntax_error_names_its_line(self, tmp_path: Path) -> None:
        path = tmp_path / "bad.yaml"
        path.write_text("rate_limit: 20\ntasks: [\n  {sdk_app_id: 1,\n")
        with pytest.raises(ScenarioError, match=r"bad\.yaml: line \d+: not valid YAML"):
            load_scenario(path)

    def test_a_missing_file_is_a_clear_error(self, tmp_path: Path) -> None:
        with pytest.raises(ScenarioError, match="cannot read"):
            load_scenario(tmp_path / "nope.yaml")

    def test_durations_accept_prometheus_syntax_and_negative_skew(self) -> None:
        scenario = parse_scenario(
            {
                "rate_window": "1500ms",
                "clock_skew": "-10m",
                "hour_length": "1m30s",
                "tasks": [{"sdk_app_id": APP, "in_progress": "2h", "exited": 0.5}],
            }
        )
        assert scenario.rate_window == 1.5
        assert scenario.clock_skew == -600
        assert scenario.hour_length == 90
        life = scenario.tasks[0].life
        assert life is not None
        assert (life.in_progress, life.exited) == (7200, 0.5)

    def test_credentials_and_tokens_from_a_scenario_are_enforced(self, tmp_path: Path) -> None:
        path = tmp_path / "s.yaml"
        path.write_text(
            yaml.safe_dump(
                {"credentials": [{"secret_id": "AKIDX", "secret_key_env": "SK", "token": "tk"}]}
            )
        )
        sim = Simulator.from_scenario(load_scenario(path, env={"SK": "sk-value"}))
        assert sim.credentials == {"AKIDX": "sk-value"}
        assert sim.tokens == {"AKIDX": "tk"}


# --------------------------------------------------------------------------- callbacks


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


def unused_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --------------------------------------------------------------------------- standalone


class TestServe:
    async def test_serve_prints_where_it_listens_and_the_demo_credentials(
        self, session: aiohttp.ClientSession
    ) -> None:
        out = io.StringIO()
        task = asyncio.create_task(serve("127.0.0.1:0", None, out=out))

        async def printed() -> bool:
            await asyncio.sleep(0)
            return "accepts SecretId" in out.getvalue()

        await eventually(printed)
        text = out.getvalue()
        url = text.split("listening on ", 1)[1].split()[0]
        assert f"SecretId {DEFAULT_SECRET_ID}, SecretKey {DEFAULT_SECRET_KEY}" in text
        answer = await Client(session, url).describe("t")
        assert answer.code == "FailedOperation.TaskNotExist"
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        with pytest.raises(aiohttp.ClientConnectionError):
            await Client(session, url).describe("t")

    async def test_serve_never_prints_a_scenario_secret(self, tmp_path: Path) -> None:
        path = tmp_path / "s.yaml"
        path.write_text(
            yaml.safe_dump(
                {"credentials": [{"secret_id": "AKIDMINE", "secret_key": "mine-secret"}]}
            )
        )
        out = io.StringIO()
        task = asyncio.create_task(serve("127.0.0.1:0", path, out=out))

        async def printed() -> bool:
            await asyncio.sleep(0)
            return "accepts SecretId" in out.getvalue()

        await eventually(printed)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert "AKIDMINE" in out.getvalue()
        assert "mine-secret" not in out.getvalue()

    async def test_a_bad_listen_address_is_refused(self) -> None:
        with pytest.raises(ValueError, match="listen"):
            await serve("localhost", None)

    def test_importing_the_package_starts_nothing(self) -> None:
        code = (
            "import asyncio, threading, monitor.simulator; "
            "assert threading.active_count() == 1; "
            "print('ok')"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=False
        )
        assert result.stdout.strip() == "ok", result.stderr
