"""Web-page recordings (``kind: web``) polled end to end: DescribeWebRecord by TaskId through
the account's budget for that action, its answers read into the monitor's statuses, and the
task shown with its kind in the API and the info series."""

from __future__ import annotations

from typing import Any

from monitor.models import Kind, Outcome
from monitor.ratelimit.factory import BucketKey
from monitor.simulator import Life, Simulator
from monitor.trtc.client import CallResult
from monitor.trtc.web import web_answer
from tests.conftest import DaemonFactory, RunningDaemon
from tests.support import make_task, wait_for_async

APP = 1400000001
WEB = "DescribeWebRecord"
CLOUD = "DescribeCloudRecording"


async def task_json(running: RunningDaemon, task_id: str) -> dict[str, Any]:
    async with running.session.get(f"{running.url}/api/v1/tasks/{APP}/{task_id}") as r:
        assert r.status == 200
        body: dict[str, Any] = await r.json()
        return body


async def reach(running: RunningDaemon, task_id: str, status: str) -> dict[str, Any]:
    async def there() -> dict[str, Any] | None:
        body = await task_json(running, task_id)
        return body if body["status"] == status else None

    return await wait_for_async(there, timeout=20, what=f"{task_id} to reach {status}")


class TestWebRecording:
    async def test_registered_polled_and_ended_by_poll(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url)
        task_id = simulator.add_task(APP, life=Life(idle=0, in_progress=600), kind="web")
        answer = await running.register(APP, task_id, region="ap-singapore", kind="web")
        assert answer.status == 201
        assert (await answer.json())["kind"] == "web"
        body = await reach(running, task_id, "InProgress")
        assert body["last_response"]["Status"] == "InProgress"
        assert simulator.stats()["actions"][WEB]["arrivals"] >= 1
        assert CLOUD not in simulator.stats()["actions"]  # never asked as a cloud task
        async with running.session.get(f"{running.url}/metrics") as r:
            text = await r.text()
        (info,) = [
            line
            for line in text.splitlines()
            if line.startswith("trtc_recording_task_info{") and task_id in line
        ]
        assert 'kind="web"' in info
        assert f'action="{WEB}"' in text  # its own budget's gauges
        simulator.end_task(APP, task_id)  # StopWebRecord, or the page's life over
        await reach(running, task_id, "Ended")

    async def test_a_web_task_outside_the_site_s_web_regions_is_refused(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url)
        refused = await running.register(APP, "w", region="ap-guangzhou", kind="web")
        assert refused.status == 422
        message = (await refused.json())["error"]["message"]
        assert "web-page recording" in message
        assert "ap-singapore" in message

    async def test_each_action_draws_on_a_budget_of_its_own(
        self, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon("http://127.0.0.1:9")  # nothing registered: nothing sent
        budget = running.daemon.budget
        cloud = budget.bucket_of(make_task("c", region="ap-singapore"))
        web = budget.bucket_of(make_task("w", region="ap-singapore", kind=Kind.WEB))
        assert (cloud.action, web.action) == (CLOUD, WEB)
        assert cloud.host == web.host
        assert budget.limiter(cloud) is not budget.limiter(web)
        # The cloud budget keeps its earlier name (a shared limiter's key).
        assert str(cloud) == "default@127.0.0.1:9"
        assert str(BucketKey("a", "h", WEB)) == f"a@h/{WEB}"


def test_web_answers_are_read_into_the_monitor_s_statuses() -> None:
    recording = web_answer(
        CallResult(Outcome.OK, "", request_id="r", response={"Status": 1, "TaskId": "t"})
    )
    assert recording.status is not None
    assert recording.status.value == "InProgress"
    assert recording.response is not None
    assert recording.response["WebStatus"] == 1
    other = web_answer(CallResult(Outcome.OK, "", request_id="r", response={"Status": 2}))
    assert other.status is not None
    assert other.status.value == "Exited"
    failed = CallResult(Outcome.TRANSIENT, "InternalError")
    assert web_answer(failed) is failed
