"""Injected faults: which requests they hit, and how they look on the wire."""

from __future__ import annotations

import asyncio
import json
import random
import time

import aiohttp
import pytest

from monitor.simulator import Fault, FaultKind, Life, ManualClock, Simulator
from monitor.simulator.faults import FaultInjector, fault_from_mapping
from tests.simulator.helpers import APP, DESCRIBE, Client, eventually


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
