"""Relay recordings end to end: a task registered with a RecorderKey is polled with it, and
the key and the answer's RecorderKey show in the API, the status page and the info series."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from monitor.config import load_config
from monitor.models import Outcome
from monitor.simulator import Life, Simulator
from monitor.status_rules import apply_poll
from monitor.taskspec import ValidationError, validate_spec
from monitor.trtc.client import CallResult
from tests.conftest import DaemonFactory, RunningDaemon
from tests.support import T0, make_task, wait_for_async

APP = 1400000001
LONG = Life(idle=0.5, in_progress=600)


async def task_json(running: RunningDaemon, task_id: str) -> dict[str, Any]:
    async with running.session.get(f"{running.url}/api/v1/tasks/{APP}/{task_id}") as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


async def answered(running: RunningDaemon, task_id: str) -> dict[str, Any]:
    async def polled() -> dict[str, Any] | None:
        body = await task_json(running, task_id)
        health = body["health"]
        return body if health["last_success_at"] or health["last_error_code"] else None

    return await wait_for_async(polled, timeout=20, what=f"a poll of {task_id}")


class TestRelayRecording:
    async def test_the_key_is_sent_and_the_answer_s_key_shown_everywhere(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url)
        task_id = simulator.add_task(APP, life=LONG, recorder_key="relay_room-7")
        answer = await running.register(APP, task_id, recorder_key="relay_room-7")
        assert answer.status == 201
        assert (await answer.json())["recorder_key"] == "relay_room-7"
        body = await answered(running, task_id)
        assert body["health"]["last_error_code"] is None
        assert body["recorder_key"] == "relay_room-7"
        assert body["answer_recorder_key"] == "relay_room-7"
        async with running.session.get(f"{running.url}/metrics") as r:
            text = await r.text()
        (info,) = [
            line
            for line in text.splitlines()
            if line.startswith("trtc_recording_task_info{") and task_id in line
        ]
        assert 'recorder_key="relay_room-7"' in info
        async with running.session.get(f"{running.url}/tasks/{APP}/{task_id}") as r:
            page = await r.text()
        assert r.status == 200
        assert 'id="recorder-key">relay_room-7<' in page
        assert 'id="answer-recorder-key">relay_room-7<' in page
        async with running.session.get(f"{running.url}/api/v1/tasks") as r:
            listed = await r.json()
        (row,) = [t for t in listed["tasks"] if t["task_id"] == task_id]
        assert row["recorder_key"] == "relay_room-7"

    async def test_a_wrong_key_is_sent_too_and_the_simulator_refuses_it(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        # Only a key actually sent can be refused: the task with the right key is answered.
        running = await make_daemon(simulator.url)
        task_id = simulator.add_task(APP, life=LONG, recorder_key="right")
        assert (await running.register(APP, task_id, recorder_key="wrong")).status == 201
        body = await answered(running, task_id)
        assert body["health"]["last_error_code"] == "InvalidParameter"
        assert body["answer_recorder_key"] is None

    async def test_a_task_without_a_key_shows_none_and_an_empty_label(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url)
        task_id = simulator.add_task(APP, life=LONG)
        assert (await running.register(APP, task_id)).status == 201
        body = await answered(running, task_id)
        assert body["recorder_key"] is None
        assert body["answer_recorder_key"] is None
        async with running.session.get(f"{running.url}/metrics") as r:
            text = await r.text()
        assert (
            f'kind="cloud",recorder_key="",region="ap-guangzhou",sdk_app_id="{APP}",task_id="{task_id}"'
            in (text)
        )

    async def test_bulk_registration_takes_the_key_and_a_bad_one_is_refused(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url)
        a = simulator.add_task(APP, life=LONG, recorder_key="k-a")
        b = simulator.add_task(APP, life=LONG)
        items = [
            {"sdk_app_id": APP, "task_id": a, "region": "ap-guangzhou", "recorder_key": "k-a"},
            {"sdk_app_id": APP, "task_id": b, "region": "ap-guangzhou"},
        ]
        url = f"{running.url}/api/v1/tasks"
        async with running.session.post(url, json=items, headers=running.auth()) as r:
            assert r.status in (200, 201, 207)
        assert (await task_json(running, a))["recorder_key"] == "k-a"
        assert (await task_json(running, b))["recorder_key"] is None
        bad = await running.register(APP, "other", recorder_key="no spaces allowed")
        assert bad.status == 422
        assert "recorder_key" in (await bad.json())["error"]["message"]
        again = await running.register(APP, a, recorder_key="k-b")
        assert again.status == 409
        assert (await again.json())["error"]["fields"] == ["recorder_key"]


def test_the_key_is_validated_as_tencent_allows_it() -> None:
    base = {"sdk_app_id": APP, "task_id": "t", "region": "ap-guangzhou"}
    assert validate_spec({**base, "recorder_key": "a_B-9" * 25}, None).recorder_key == "a_B-9" * 25
    for bad in ("", "a" * 129, "a b", "ключ", 7):
        with pytest.raises(ValidationError) as caught:
            validate_spec({**base, "recorder_key": bad}, None)
        assert caught.value.field == "recorder_key"


def test_the_yaml_task_list_takes_the_key(tmp_path: Path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(
        "accounts:\n  default:\n    secret_id: a\n    secret_key: b\n"
        "tasks:\n  - sdk_app_id: 1400000001\n    task_id: t-1\n    region: ap-guangzhou\n"
        "    recorder_key: relay-1\n"
    )
    (spec,) = load_config(path).tasks
    assert spec.recorder_key == "relay-1"


def test_each_answer_sets_the_kept_key_and_one_without_clears_it() -> None:
    task = make_task("relay", recorder_key="k")
    with_key = {"Status": "InProgress", "RecorderKey": "k", "StorageFileList": []}
    apply_poll(task, CallResult(Outcome.OK, "", request_id="r1", response=with_key), T0)
    assert task.answer_recorder_key == "k"
    without = {"Status": "InProgress", "StorageFileList": []}
    apply_poll(task, CallResult(Outcome.OK, "", request_id="r2", response=without), T0 + 1)
    assert task.answer_recorder_key is None


class TestTheCommandLine:
    async def test_tasks_add_sends_the_recorder_key_and_the_kind(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        from tests.conftest import API_TOKEN
        from tests.test_cli_edges import acli

        running = await make_daemon(simulator.url)
        task_id = simulator.add_task(APP, life=LONG, recorder_key="relay-cli")
        added = await acli(
            "tasks", "--url", running.url, "add", "--sdk-app-id", str(APP), "--task-id",
            task_id, "--region", "ap-guangzhou", "--recorder-key", "relay-cli",
            "--kind", "cloud", env={"TRTC_MONITOR_API_TOKEN": API_TOKEN},
        )  # fmt: skip
        assert added.returncode == 0, added.stderr
        body = await task_json(running, task_id)
        assert (body["recorder_key"], body["kind"]) == ("relay-cli", "cloud")
        refused = await acli(
            "tasks", "--url", running.url, "add", "--sdk-app-id", str(APP), "--task-id",
            "t-bad-key", "--region", "ap-guangzhou", "--recorder-key", "no spaces allowed",
            env={"TRTC_MONITOR_API_TOKEN": API_TOKEN},
        )  # fmt: skip
        assert refused.returncode != 0
        assert "recorder_key" in refused.stderr
