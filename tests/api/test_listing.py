"""Listing tasks through the API (docs/http-api.md): filters, labels and pages."""

from __future__ import annotations

from pathlib import Path

import pytest

from monitor.simulator import Life, Simulator
from tests.api.api_support import APP, Answer, Client
from tests.conftest import DaemonFactory, daemon_config_text
from tests.support import wait_for_async


class TestListing:
    async def test_filters_by_status_region_account_and_labels(
        self,
        make_daemon: DaemonFactory,
        simulator: Simulator,
        tmp_path: Path,
        answers: list[Answer],
    ) -> None:
        second_account = (
            "accounts:\n"
            "  other:\n"
            "    secret_id_env: TEST_SECRET_ID\n"
            "    secret_key_env: TEST_SECRET_KEY\n"
            f'    endpoint: "{simulator.url}"\n'
        )
        text = daemon_config_text(simulator.url, tmp_path / "m.db").replace(
            "accounts:\n", second_account, 1
        )
        api = Client(await make_daemon(text=text), answers)
        idle = simulator.add_task(APP, "idle-1", life=Life(idle=600))
        simulator.add_task(APP, "other-1", life=Life(idle=600))
        await api.register(idle, labels={"room": "a", "customer": "acme"})
        await api.register("unknown-1", region="ap-mumbai", labels={"room": "a"})
        await api.register("other-1", region="ap-mumbai", account="other", labels={"room": "b"})

        async def settled() -> bool:
            tasks = api.running.daemon.registry.tasks()
            statuses = {task.task_id: task.status.value for task in tasks}
            return statuses == {"idle-1": "Idle", "other-1": "Idle", "unknown-1": "Ended"}

        await wait_for_async(settled, timeout=10, what="first polls")

        async def ids(query: str) -> list[str]:
            return [t["task_id"] for t in (await api.listing(query))["tasks"]]

        assert await ids("") == ["idle-1", "other-1", "unknown-1"]
        assert await ids("?status=Idle") == ["idle-1", "other-1"]
        assert await ids("?status=Ended") == ["unknown-1"]
        assert await ids("?region=ap-mumbai") == ["other-1", "unknown-1"]
        assert await ids("?account=other") == ["other-1"]
        assert await ids("?account=nobody") == []
        assert await ids("?label=room:a") == ["idle-1", "unknown-1"]
        assert await ids("?label=room:a&label=customer:acme") == ["idle-1"]
        assert await ids("?label=room:b&region=ap-mumbai&account=other") == ["other-1"]
        assert await ids("?label=room:c") == []

    async def test_pages_with_limit_offset_next_offset_and_total(self, api: Client) -> None:
        for i in range(5):
            await api.register(f"page-{i}")
        first = await api.listing("?limit=2")
        assert first["total"] == 5
        assert [t["task_id"] for t in first["tasks"]] == ["page-0", "page-1"]
        assert first["next_offset"] == 2
        seen: list[str] = []
        offset: int | None = 0
        while offset is not None:
            page = await api.listing(f"?limit=2&offset={offset}")
            assert page["total"] == 5
            seen += [t["task_id"] for t in page["tasks"]]
            offset = page["next_offset"]
        assert seen == [f"page-{i}" for i in range(5)]
        past = await api.listing("?offset=10")
        assert (past["tasks"], past["total"], past["next_offset"]) == ([], 5, None)
        default = await api.listing()
        assert len(default["tasks"]) == 5
        assert default["next_offset"] is None

    @pytest.mark.parametrize(
        ("query", "name"),
        [
            ("status=Running", "status"),
            ("region=mars-1", "region"),
            ("label=room", "label"),
            ("label=1bad:x", "label"),
            ("limit=0", "limit"),
            ("limit=1001", "limit"),
            ("limit=-1", "limit"),
            ("limit=ten", "limit"),
            ("limit=%C2%B2", "limit"),
            ("limit=" + "9" * 5000, "limit"),
            ("offset=-5", "offset"),
            ("offset=1.5", "offset"),
        ],
    )
    async def test_bad_filters_and_page_parameters_are_400_naming_the_parameter(
        self, api: Client, query: str, name: str
    ) -> None:
        answer = await api.call("GET", f"/api/v1/tasks?{query}", token=None)
        assert answer.status == 400
        assert answer.message.startswith(f"{name}:")
