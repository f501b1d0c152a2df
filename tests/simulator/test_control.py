"""The control surface under /-/sim/."""

from __future__ import annotations

import aiohttp
import pytest

from monitor.models import Status
from monitor.simulator import ControlError, ManualClock, Simulator, SimulatorControl
from tests.simulator.helpers import APP, DESCRIBE, Client


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
