"""Registering tasks through the API (docs/http-api.md), one at a time and in bulk, against a
real daemon and the simulator on loopback."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from monitor.simulator import Life, Simulator
from tests.api.api_support import APP, Client, arrivals_of
from tests.support import wait_for_async

# ---------------------------------------------------------------------------------------------
# registration and reading


class TestRegistration:
    async def test_registering_answers_201_with_the_task_and_again_200_with_the_same_task(
        self, api: Client
    ) -> None:
        first = await api.register("t-1", labels={"room": "r-1"}, interval="5s")
        assert first.status == 201
        task = first.json
        assert (task["sdk_app_id"], task["task_id"], task["region"]) == (
            APP,
            "t-1",
            "ap-guangzhou",
        )
        assert task["account"] == "default"
        assert task["labels"] == {"room": "r-1"}
        assert task["interval_seconds"] == 5.0
        assert task["status"] == "Pending"

        again = await api.register("t-1", labels={"room": "r-1"}, interval="5s")
        assert again.status == 200
        assert again.json["registered_at"] == task["registered_at"]
        assert again.json["task_id"] == "t-1"
        assert len(api.running.daemon.registry) == 1

    async def test_concurrent_registrations_of_one_task_create_it_once(self, api: Client) -> None:
        answers = await asyncio.gather(*(api.register("same") for _ in range(5)))
        assert sorted(a.status for a in answers) == [200, 200, 200, 200, 201]
        assert len({a.json["registered_at"] for a in answers}) == 1

    async def test_a_polled_task_shows_status_health_and_transitions_with_request_ids(
        self, api: Client, simulator: Simulator
    ) -> None:
        task_id = simulator.add_task(APP, "live-1", life=Life(idle=600))
        assert (await api.register(task_id)).status == 201

        async def observed() -> dict[str, Any] | None:
            body = await api.task(task_id)
            return body if body["status"] == "Idle" else None

        body = await wait_for_async(observed, timeout=10, what="the first poll")
        assert body["health"]["consecutive_errors"] == 0
        assert body["health"]["last_success_at"] is not None
        assert body["health"]["last_request_id"]
        assert body["last_response"]["Status"] == "Idle"
        recent = body["recent_transitions"]
        assert [(t["from"], t["to"], t["source"]) for t in recent] == [("Pending", "Idle", "poll")]
        assert recent[0]["request_id"]
        assert recent[0]["seq"] is not None
        assert arrivals_of(simulator, task_id) >= 1

    async def test_the_transitions_endpoint_returns_the_full_history_newest_first(
        self, api: Client, simulator: Simulator
    ) -> None:
        task_id = simulator.add_task(APP, "short-1", life=Life(idle=0.6, in_progress=600))
        await api.register(task_id)

        async def in_progress() -> bool:
            status: str = (await api.task(task_id))["status"]
            return status == "InProgress"

        await wait_for_async(in_progress, timeout=10, what="InProgress")
        assert (await api.call("DELETE", f"/api/v1/tasks/{APP}/{task_id}")).status == 200
        answer = await api.call("GET", f"/api/v1/tasks/{APP}/{task_id}/transitions", token=None)
        assert answer.status == 200
        history = answer.json
        assert (history["sdk_app_id"], history["task_id"]) == (APP, task_id)
        steps = [(t["from"], t["to"], t["source"]) for t in history["transitions"]]
        assert steps == [
            ("InProgress", "Removed", "api"),
            ("Idle", "InProgress", "poll"),
            ("Pending", "Idle", "poll"),
        ]
        seqs = [t["seq"] for t in history["transitions"]]
        assert seqs == sorted(seqs, reverse=True)

    async def test_deleting_marks_the_task_removed_and_stops_polling_it(
        self, api: Client, simulator: Simulator
    ) -> None:
        gone = simulator.add_task(APP, "gone-1", life=Life(idle=600))
        kept = simulator.add_task(APP, "kept-1", life=Life(idle=600))
        await api.register(gone)
        await api.register(kept)

        async def both_polled() -> bool:
            return arrivals_of(simulator, gone) >= 1 and arrivals_of(simulator, kept) >= 1

        await wait_for_async(both_polled, timeout=10, what="both tasks polled")
        answer = await api.call("DELETE", f"/api/v1/tasks/{APP}/{gone}")
        assert answer.status == 200
        assert answer.json["status"] == "Removed"
        assert (await api.task(gone))["status"] == "Removed"

        # A poll already on the wire may still land: count from the next poll of the other task.
        start = arrivals_of(simulator, kept)

        async def kept_polled(times: int) -> bool:
            return arrivals_of(simulator, kept) >= start + times

        await wait_for_async(lambda: kept_polled(1), timeout=10, what="kept task polled")
        baseline = arrivals_of(simulator, gone)
        await wait_for_async(lambda: kept_polled(3), timeout=10, what="kept task polled twice")
        assert arrivals_of(simulator, gone) == baseline
        # Deleting again is harmless and answers the removed task.
        again = await api.call("DELETE", f"/api/v1/tasks/{APP}/{gone}")
        assert again.status == 200
        assert again.json["status"] == "Removed"


# ---------------------------------------------------------------------------------------------
# listing


class TestBulkRegistration:
    async def test_an_array_with_invalid_items_is_refused_whole_naming_each_by_index(
        self, api: Client
    ) -> None:
        bad = {7: {"region": "ap-nowhere"}, 500: {"interval": "100ms"}, 999: {"colour": "red"}}
        specs: list[Any] = [
            {"sdk_app_id": APP, "task_id": f"bulk-{i:04d}", "region": "ap-mumbai", **bad.get(i, {})}
            for i in range(1000)
        ]
        specs[3] = "not an object"
        answer = await api.call("POST", "/api/v1/tasks", body=specs)
        assert answer.status == 422, answer
        problems = {p["index"]: p["message"] for p in answer.json["error"]["items"]}
        assert sorted(problems) == [3, 7, 500, 999]
        assert problems[7].startswith("region:")
        assert problems[500].startswith("interval:")
        assert problems[999].startswith("colour:")
        assert len(api.running.daemon.registry) == 0
        assert await api.running.daemon.store.load_tasks() == []

        # Without the invalid items: registered in one go, answered by index.
        valid = [s for i, s in enumerate(specs) if i not in (3, *bad)]
        body = (await api.call("POST", "/api/v1/tasks", body=valid)).json
        assert (body["created"], body["existing"], body["invalid"]) == (996, 0, 0)
        results = body["results"]
        assert [r["index"] for r in results] == list(range(996))
        assert results[0]["status"] == 201
        assert results[0]["task"]["task_id"] == "bulk-0000"
        assert len(api.running.daemon.registry) == 996
        stored = await api.running.daemon.store.load_tasks()
        assert len(stored) == 996

        # Idempotent: the same array again registers nothing new.
        again = (await api.call("POST", "/api/v1/tasks", body=valid)).json
        assert (again["created"], again["existing"], again["conflicts"]) == (0, 996, 0)
        assert len(api.running.daemon.registry) == 996

    async def test_an_array_repeating_a_task_registers_it_once(self, api: Client) -> None:
        spec = {"sdk_app_id": APP, "task_id": "twice", "region": "ap-mumbai"}
        body = (await api.call("POST", "/api/v1/tasks", body=[spec, spec])).json
        assert [r["status"] for r in body["results"]] == [201, 200]

    @pytest.mark.parametrize(("size", "status"), [(0, 400), (1001, 422)])
    async def test_an_empty_or_too_long_array_is_refused_whole(
        self, api: Client, size: int, status: int
    ) -> None:
        specs = [
            {"sdk_app_id": APP, "task_id": f"t{i}", "region": "ap-mumbai"} for i in range(size)
        ]
        answer = await api.call("POST", "/api/v1/tasks", body=specs)
        assert answer.status == status
        assert len(api.running.daemon.registry) == 0
