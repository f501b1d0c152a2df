"""Registering a task again: the same values are idempotent (200), other values are refused
(409 naming the fields that differ) and the registered task stays as it was."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from monitor.simulator import Simulator
from tests.conftest import DaemonFactory, RunningDaemon, daemon_config_text
from tests.test_cli import acli

APP = 1400000001


def two_accounts(endpoint: str, db: Path) -> str:
    """The test config with a second account, "other", on the same simulator."""
    text = daemon_config_text(endpoint, db)
    return text.replace(
        "polling:",
        f"""  other:
    secret_id_env: TEST_SECRET_ID
    secret_key_env: TEST_SECRET_KEY
    endpoint: "{endpoint}"
polling:""",
        1,
    )


@pytest.fixture
async def running(
    simulator: Simulator, make_daemon: DaemonFactory, tmp_path: Path
) -> RunningDaemon:
    return await make_daemon(text=two_accounts(simulator.url, tmp_path / "m.db"))


async def post(running: RunningDaemon, body: Any) -> tuple[int, Any]:
    async with running.session.post(
        f"{running.url}/api/v1/tasks", json=body, headers=running.auth()
    ) as answer:
        return answer.status, await answer.json()


async def get(running: RunningDaemon, task_id: str) -> tuple[int, Any]:
    async with running.session.get(f"{running.url}/api/v1/tasks/{APP}/{task_id}") as answer:
        return answer.status, await answer.json()


FIRST = {
    "sdk_app_id": APP,
    "task_id": "t-1",
    "region": "ap-guangzhou",
    "account": "default",
    "labels": {"room": "r1"},
    "interval": "30s",
}


class TestOneRegistration:
    async def test_the_same_values_again_answer_200_with_the_task(
        self, running: RunningDaemon
    ) -> None:
        assert (await post(running, FIRST))[0] == 201
        status, body = await post(running, FIRST)
        assert status == 200, body
        assert body["labels"] == {"room": "r1"}
        assert body["interval_seconds"] == 30.0
        # The same interval written another way is the same value.
        assert (await post(running, {**FIRST, "interval": 30}))[0] == 200

    async def test_fields_left_out_are_not_compared(self, running: RunningDaemon) -> None:
        assert (await post(running, FIRST))[0] == 201
        bare = {"sdk_app_id": APP, "task_id": "t-1", "region": "ap-guangzhou"}
        status, body = await post(running, bare)
        assert status == 200, body
        assert body["labels"] == {"room": "r1"}

    @pytest.mark.parametrize(
        ("change", "fields"),
        [
            ({"region": "ap-mumbai"}, ["region"]),
            ({"account": "other"}, ["account"]),
            ({"labels": {"room": "r2"}}, ["labels"]),
            ({"labels": {}}, ["labels"]),
            ({"interval": "1m"}, ["interval"]),
            ({"interval": None}, ["interval"]),
            (
                {"region": "ap-mumbai", "account": "other", "labels": {}, "interval": 5},
                ["region", "account", "labels", "interval"],
            ),
        ],
    )
    async def test_other_values_answer_409_naming_the_fields_and_change_nothing(
        self, running: RunningDaemon, change: dict[str, Any], fields: list[str]
    ) -> None:
        assert (await post(running, FIRST))[0] == 201
        status, body = await post(running, {**FIRST, **change})
        assert status == 409, body
        error = body["error"]
        assert error["code"] == "conflict"
        assert error["fields"] == fields
        for field in fields:
            assert field in error["message"]
        assert error["task"]["region"] == "ap-guangzhou"
        status, task = await get(running, "t-1")
        assert status == 200
        assert (task["region"], task["account"]) == ("ap-guangzhou", "default")
        assert (task["labels"], task["interval_seconds"]) == ({"room": "r1"}, 30.0)

    async def test_a_removed_task_registered_with_other_values_starts_a_new_life(
        self, running: RunningDaemon
    ) -> None:
        assert (await post(running, FIRST))[0] == 201
        async with running.session.delete(
            f"{running.url}/api/v1/tasks/{APP}/t-1", headers=running.auth()
        ) as answer:
            assert answer.status == 200
        status, body = await post(running, {**FIRST, "labels": {"room": "r9"}})
        assert status == 201, body
        assert body["labels"] == {"room": "r9"}


class TestBulk:
    async def test_each_conflicting_item_answers_409_by_index_and_the_others_go_through(
        self, running: RunningDaemon
    ) -> None:
        assert (await post(running, FIRST))[0] == 201
        items = [
            {**FIRST, "labels": {"room": "changed"}},  # conflicts with the registered task
            FIRST,  # the same values: existing
            {"sdk_app_id": APP, "task_id": "t-2", "region": "ap-mumbai"},  # new
            {"sdk_app_id": APP, "task_id": "t-2", "region": "ap-beijing"},  # differs from [2]
        ]
        status, body = await post(running, items)
        assert status == 200, body
        assert [r["status"] for r in body["results"]] == [409, 200, 201, 409]
        assert [r["index"] for r in body["results"]] == [0, 1, 2, 3]
        assert body["results"][0]["error"]["code"] == "conflict"
        assert body["results"][0]["error"]["fields"] == ["labels"]
        assert body["results"][3]["error"]["fields"] == ["region"]
        assert (body["created"], body["existing"], body["conflicts"]) == (1, 1, 2)
        assert (await get(running, "t-1"))[1]["labels"] == {"room": "r1"}
        assert (await get(running, "t-2"))[1]["region"] == "ap-mumbai"

    async def test_one_invalid_item_refuses_the_whole_array_and_registers_nothing(
        self, running: RunningDaemon
    ) -> None:
        items = [
            {"sdk_app_id": APP, "task_id": "ok-1", "region": "ap-mumbai"},
            {"sdk_app_id": APP, "task_id": "bad-1", "region": "ap-mumbai", "interval": [1]},
            {"sdk_app_id": APP, "task_id": "bad-2", "region": "ap-mumbai", "account": "nobody"},
        ]
        status, body = await post(running, items)
        assert status == 422, body
        assert body["error"]["code"] == "invalid"
        problems = body["error"]["items"]
        assert [p["index"] for p in problems] == [1, 2]
        assert problems[0]["message"].startswith("interval:")
        assert problems[1]["message"].startswith("account:")
        assert (await get(running, "ok-1"))[0] == 404


class TestCli:
    async def test_tasks_add_prints_the_fields_in_conflict_and_fails(
        self, running: RunningDaemon
    ) -> None:
        assert (await post(running, FIRST))[0] == 201
        env = {"TRTC_MONITOR_API_TOKEN": "test-api-token-0123456789"}
        args = ["tasks", "--url", running.url, "add", "--sdk-app-id", str(APP)]
        args += ["--task-id", "t-1", "--region", "ap-guangzhou", "--label", "room=r2"]
        result = await acli(*args, env=env)
        assert result.returncode == 1, result
        assert "HTTP 409" in result.stderr
        assert "fields that differ: labels" in result.stderr
        same = await acli(*args[:-1], "room=r1", "--interval", "30s", env=env)
        assert same.returncode == 0, same.stderr

    async def test_tasks_add_from_a_file_reports_each_conflict(
        self, running: RunningDaemon, tmp_path: Path
    ) -> None:
        assert (await post(running, FIRST))[0] == 201
        path = tmp_path / "tasks.yaml"
        path.write_text(
            f"- {{sdk_app_id: {APP}, task_id: t-1, region: ap-mumbai}}\n"
            f"- {{sdk_app_id: {APP}, task_id: t-3, region: ap-mumbai}}\n"
        )
        env = {"TRTC_MONITOR_API_TOKEN": "test-api-token-0123456789"}
        result = await acli("tasks", "--url", running.url, "add", "--file", str(path), env=env)
        assert result.returncode == 1, result
        assert "[0]" in result.stderr
        assert "region" in result.stderr
        assert (await get(running, "t-3"))[0] == 200

    async def test_tasks_add_sends_any_duration_as_the_seconds_the_api_takes(
        self, running: RunningDaemon
    ) -> None:
        env = {"TRTC_MONITOR_API_TOKEN": "test-api-token-0123456789"}
        result = await acli(
            "tasks", "--url", running.url, "add", "--sdk-app-id", str(APP), "--task-id", "ms-1",
            "--region", "ap-guangzhou", "--interval", "1500ms", env=env,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        assert (await get(running, "ms-1"))[1]["interval_seconds"] == 1.5
        # The API itself takes no milliseconds as text: its document says so.
        status, body = await post(
            running, {"sdk_app_id": APP, "task_id": "ms-2", "region": "ap-guangzhou",
                      "interval": "1500ms"},
        )  # fmt: skip
        assert status == 422, body
        assert body["error"]["message"].startswith("interval:")
