"""PATCH with several replicas on one Redis: a change made on any replica reaches the task's
owner, whose poll schedule follows the new interval at once, and every replica's reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.support import wait_for_async
from tests.test_ha import APP, AUTH, DESCRIBE, REGIONS, cluster, polls_by_task


async def test_a_change_made_on_another_replica_reaches_the_owner_at_once(
    tmp_path: Path,
) -> None:
    async with cluster(tmp_path) as (group, control):
        for name in ("r0", "r1"):
            group.add(name).start()
        await group.until_all_see(2)
        while True:
            task_id = await control.add_task(APP, idle=600)
            if group.owner(task_id) == "r1":
                break
        other, owner = group.by_name("r0"), group.by_name("r1")
        spec = {"sdk_app_id": APP, "task_id": task_id, "region": REGIONS[0], "interval": "1h"}
        assert await group.register(other, [spec]) == 201

        async def polls() -> int:
            return len(polls_by_task(await control.arrivals(action=DESCRIBE)).get(task_id, []))

        async def first_poll() -> bool:
            return await polls() >= 1

        await wait_for_async(first_poll, timeout=10, what="the owner's first poll")
        before = await polls()

        body: dict[str, Any] = {"labels": {"room": "moved"}, "interval": 1}
        async with group.session.patch(
            f"{other.url}/api/v1/tasks/{APP}/{task_id}", json=body, headers=AUTH
        ) as answer:
            assert answer.status == 200, await answer.text()

        async def polled_again() -> bool:
            return await polls() >= before + 2  # an hour early: the owner follows the change

        await wait_for_async(polled_again, timeout=15, what="polls at the new interval")

        async def owner_sees_it() -> bool:
            task = await group.task(owner, task_id)
            return bool(task["labels"] == {"room": "moved"} and task["interval_seconds"] == 1.0)

        await wait_for_async(owner_sees_it, timeout=10, what="the owner to read the change")
