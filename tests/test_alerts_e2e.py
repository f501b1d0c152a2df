"""Alerts end to end: the daemon polling the simulator on loopback, notifying real receivers
(a real Alertmanager, webhook servers in the test), in process and as a separate process."""

from __future__ import annotations

import asyncio
import json
import re
import signal
import sqlite3
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from monitor.alerts import (
    MONITOR_AUTH_FAILURE,
    MONITOR_OVER_BUDGET,
    TASK_ERROR,
    TASK_EXITED,
    TASK_IDLE,
    TASK_STALE,
)
from monitor.models import Source, Status, TaskKey
from monitor.simulator import DEFAULT_SECRET_ID, Fault, FaultKind, Life, Simulator, sign
from monitor.simulator.callbacks import build_body
from monitor.store import AlertRecord
from tests.conftest import API_TOKEN, DaemonFactory, RunningDaemon
from tests.support import alertmanager, free_port, http_json, wait_for_async
from tests.test_process import daemon_process, get_json, until_ready, write_config
from tests.test_receivers import Sink, serving

APP = 1400000001
CALLBACK_KEY = "cbKey0123456789abcdef"
WRONG_SECRET_KEY = "not-the-simulator-secret-key"
# Thresholds small enough for seconds-long tests; the base config polls every 1 s with a 2 s
# request timeout.
THRESHOLDS: dict[str, Any] = {
    "error": {"consecutive": 2},
    "stale": {"after": "3s"},
    "idle": {"after": "2s"},
}
RECORDING = Life(idle=0.2, in_progress=None, exited=30)
# Recording from the start: the first poll already sees InProgress.
LIVE = Life(idle=0.0, in_progress=None, exited=30)


# ------------------------------------------------------------------------------ helpers


def alerts_yaml(*receivers: dict[str, Any]) -> str:
    """The ``alerts:`` section (JSON is YAML) with the fast thresholds and these receivers."""
    return "alerts: " + json.dumps({**THRESHOLDS, "receivers": list(receivers)}) + "\n"


def webhook(url: str, name: str = "hook", **settings: Any) -> dict[str, Any]:
    return {"type": "webhook", "name": name, "url": url, **settings}


def notices(
    sink: Sink,
    alertname: str | None = None,
    task_id: str | None = None,
    status: str | None = None,
) -> list[dict[str, Any]]:
    """Every alert of every webhook payload the sink received, in order, filtered."""
    return [
        alert
        for _, _, payload in sink.requests
        for alert in payload["alerts"]
        if (alertname is None or alert["labels"]["alertname"] == alertname)
        and (task_id is None or alert["labels"].get("task_id") == task_id)
        and (status is None or alert["status"] == status)
    ]


def firing(running: RunningDaemon, alertname: str, task_id: str | None = None) -> list[AlertRecord]:
    return [
        r
        for r in running.daemon.alerts.firing()
        if r.alertname == alertname and (task_id is None or r.labels.get("task_id") == task_id)
    ]


async def api_alerts(running: RunningDaemon) -> list[dict[str, Any]]:
    async with running.session.get(f"{running.url}/api/v1/alerts") as r:
        assert r.status == 200
        alerts: list[dict[str, Any]] = (await r.json())["alerts"]
        return alerts


async def delete_task(running: RunningDaemon, task_id: str) -> None:
    async with running.session.delete(
        f"{running.url}/api/v1/tasks/{APP}/{task_id}", headers=running.auth()
    ) as r:
        assert r.status == 200


async def register(
    running: RunningDaemon,
    task_id: str,
    labels: dict[str, str] | None = None,
    interval: str | None = None,
) -> None:
    extra: dict[str, object] = {}
    if labels is not None:
        extra["labels"] = labels
    if interval is not None:
        extra["interval"] = interval
    response = await running.register(APP, task_id, "ap-guangzhou", **extra)
    assert response.status == 201, await response.text()


def task_of(running: RunningDaemon, task_id: str) -> Any:
    task = running.daemon.registry.get(TaskKey(APP, task_id))
    assert task is not None
    return task


async def reach(running: RunningDaemon, task_ids: Iterable[str], status: Status) -> None:
    ids = list(task_ids)

    async def there() -> bool:
        return all(task_of(running, t).status is status for t in ids)

    await wait_for_async(there, timeout=15, what=f"{len(ids)} task(s) {status.value}")


def polls(simulator: Simulator, task_id: str) -> int:
    return sum(1 for a in list(simulator.arrivals) if a.task_id == task_id)


async def polled_more(simulator: Simulator, task_id: str, more: int, timeout: float = 15) -> None:
    """Wait until ``task_id`` has been polled ``more`` further times."""
    target = polls(simulator, task_id) + more

    async def enough() -> bool:
        return polls(simulator, task_id) >= target

    await wait_for_async(enough, timeout=timeout, what=f"{more} more polls of {task_id}")


def samples(text: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Samples of one metric from an exposition, keyed by their sorted labels."""
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


async def scrape(session: aiohttp.ClientSession, base: str) -> str:
    async with session.get(f"{base}/metrics") as r:
        assert r.status == 200
        return await r.text()


async def notification_count(running: RunningDaemon, receiver: str, outcome: str) -> float:
    counts = samples(await scrape(running.session, running.url), "trtc_monitor_notifications_total")
    return counts.get((("outcome", outcome), ("receiver", receiver)), 0.0)


async def alertmanager_alerts(base: str) -> list[dict[str, Any]]:
    """What Alertmanager itself lists, with its default filters (``GET /api/v2/alerts``)."""
    answer: list[dict[str, Any]] = await asyncio.to_thread(http_json, f"{base}/api/v2/alerts")
    return answer


# ------------------------------------------------------------------------------ Alertmanager


class TestAlertmanager:
    async def test_an_exit_seen_by_a_poll_reaches_alertmanager_and_resolves_when_deleted(
        self, simulator: Simulator, make_daemon: DaemonFactory, tmp_path: Path
    ) -> None:
        with alertmanager(tmp_path) as am:
            receiver = {"type": "alertmanager", "name": "am", "urls": [am.url], "resend": "30s"}
            running = await make_daemon(simulator.url, alerts_yaml(receiver))
            task_id = simulator.add_task(APP, life=Life(idle=0.5, in_progress=1.0, exited=30))
            await register(running, task_id, labels={"room": "r-42"})

            async def shown() -> dict[str, Any] | None:
                for alert in await alertmanager_alerts(am.url):
                    labels = alert["labels"]
                    if (labels.get("alertname"), labels.get("task_id")) == (TASK_EXITED, task_id):
                        return alert if alert["status"]["state"] == "active" else None
                return None

            alert = await wait_for_async(shown, timeout=20, what="the exit in Alertmanager")
            assert alert["labels"] == {
                "alertname": TASK_EXITED,
                "severity": "critical",
                "account": "default",
                "region": "ap-guangzhou",
                "sdk_app_id": str(APP),
                "task_id": task_id,
                "room": "r-42",
            }
            [last] = await running.daemon.tracker.transitions(TaskKey(APP, task_id), limit=1)
            assert (last.to_status, last.source) == (Status.EXITED, Source.POLL)
            assert last.from_status in (Status.IDLE, Status.IN_PROGRESS)
            annotations = alert["annotations"]
            assert annotations["summary"].endswith("stopped: Exited")
            assert task_id in annotations["summary"]
            assert f"went from {last.from_status.value} to Exited" in annotations["description"]
            assert "no leave code" in annotations["description"]
            # The daemon's own API shows the same alert.
            [own] = [a for a in await api_alerts(running) if a["labels"].get("task_id") == task_id]
            assert own["alertname"] == TASK_EXITED
            assert own["labels"] == alert["labels"]

            await delete_task(running, task_id)
            # Resolved at once by the deletion, not by some later sweep.
            assert not [a for a in await api_alerts(running) if a["alertname"] == TASK_EXITED]

            async def gone_from_alertmanager() -> bool:
                # Alertmanager 0.25 leaves alerts whose endsAt has passed out of its listing.
                return not any(
                    a["labels"].get("task_id") == task_id for a in await alertmanager_alerts(am.url)
                )

            await wait_for_async(gone_from_alertmanager, timeout=15, what="the resolve")
            assert not firing(running, TASK_EXITED)


# ------------------------------------------------------------------------------ expected stops


class TestExpectedStops:
    async def test_a_task_deregistered_before_it_stops_raises_no_exit_alert(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        async with serving(Sink()) as sink:
            running = await make_daemon(simulator.url, alerts_yaml(webhook(sink.url)))
            quiet = simulator.add_task(APP, life=RECORDING)
            control = simulator.add_task(APP, life=RECORDING)
            await register(running, quiet)
            await register(running, control)
            await reach(running, (quiet, control), Status.IN_PROGRESS)

            await delete_task(running, quiet)
            assert simulator.exit_task(APP, quiet)
            assert simulator.exit_task(APP, control)

            # The same stop of a task still registered is alerted and delivered...
            async def control_notified() -> bool:
                return bool(notices(sink, TASK_EXITED, control, "firing"))

            await wait_for_async(control_notified, timeout=15, what="the control's exit")
            # ...and after several more polls and a sweep, the deregistered one still is not.
            await polled_more(simulator, control, 3)
            await running.daemon.sweep_alerts()
            await running.daemon.alerts.drain()
            assert task_of(running, quiet).status is Status.REMOVED
            assert [r.labels["task_id"] for r in firing(running, TASK_EXITED)] == [control]
            assert notices(sink, task_id=quiet) == []

    async def test_a_302_with_leave_code_3_alerts_at_once_and_one_with_leave_code_0_never(
        self, simulator: Simulator, make_daemon: DaemonFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TEST_CALLBACK_KEY", CALLBACK_KEY)
        extra = "callbacks:\n  key_env: TEST_CALLBACK_KEY\n" + alerts_yaml()
        running = await make_daemon(simulator.url, extra)
        kicked = simulator.add_task(APP, life=LIVE)
        stopped = simulator.add_task(APP, life=LIVE)
        for task_id in (kicked, stopped):
            # Polled once now, then rarely: the callback, not a poll, must see the stop.
            await register(running, task_id, interval="60s")
        await reach(running, (kicked, stopped), Status.IN_PROGRESS)

        async def recorder_left(task_id: str, leave_code: int) -> None:
            assert simulator.exit_task(APP, task_id, leave_code=leave_code)
            now = time.time()
            raw = build_body(
                302,
                room_id="room-1",
                user_id="recorder_1",
                task_id=task_id,
                payload={"LeaveCode": leave_code},
                event_wall=now,
                callback_wall=now,
            )
            headers = {
                "Content-Type": "application/json",
                "Sign": sign(CALLBACK_KEY, raw),
                "SdkAppId": str(APP),
            }
            async with running.session.post(
                f"{running.url}/callbacks/trtc", data=raw, headers=headers
            ) as r:
                assert r.status == 200

        await recorder_left(kicked, 3)
        # Firing as soon as the callback is acknowledged: no poll or sweep in between.
        [alert] = firing(running, TASK_EXITED, kicked)
        assert "leave code 3" in alert.annotations["description"]
        assert "(seen by callback)" in alert.annotations["description"]

        before = polls(simulator, stopped)
        posted_at = time.time()
        await recorder_left(stopped, 0)
        assert task_of(running, stopped).status is Status.EXITED

        async def confirmed_by_a_poll() -> bool:
            last = task_of(running, stopped).last_success_at
            return polls(simulator, stopped) > before and last is not None and last > posted_at

        await wait_for_async(confirmed_by_a_poll, timeout=15, what="the confirming poll")
        await running.daemon.sweep_alerts()
        assert task_of(running, stopped).status is Status.EXITED
        assert firing(running, TASK_EXITED, stopped) == []
        assert [r.labels["task_id"] for r in firing(running, TASK_EXITED)] == [kicked]


# ------------------------------------------------------------------------------ task conditions


class TestTaskConditions:
    async def test_the_error_alert_fires_at_the_configured_failure_count_and_resolves_on_success(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        async with serving(Sink()) as sink:
            running = await make_daemon(simulator.url, alerts_yaml(webhook(sink.url)))
            task_id = simulator.add_task(APP, life=RECORDING)
            await register(running, task_id)
            await reach(running, [task_id], Status.IN_PROGRESS)
            fault = simulator.faults.add(
                Fault(FaultKind.INTERNAL_ERROR, task_ids=frozenset({task_id}))
            )

            async def fired() -> list[AlertRecord] | None:
                return firing(running, TASK_ERROR, task_id) or None

            [alert] = await wait_for_async(fired, timeout=15, what="the error alert")
            # Decided by the second failed poll, not the first and not later.
            assert "2 failed polls in a row" in alert.annotations["summary"]
            assert "InternalError" in alert.annotations["description"]
            assert alert.labels["severity"] == "warning"
            failed = [a for a in simulator.arrivals if a.task_id == task_id and a.code]
            assert len(failed) >= 2
            assert {a.code for a in failed} == {"InternalError"}

            simulator.faults.remove(fault)

            async def resolved() -> bool:
                return not firing(running, TASK_ERROR, task_id)

            await wait_for_async(resolved, timeout=15, what="the error alert to resolve")
            assert task_of(running, task_id).consecutive_errors == 0
            assert task_of(running, task_id).status is Status.IN_PROGRESS

            async def resolve_delivered() -> bool:
                return bool(notices(sink, TASK_ERROR, task_id, "resolved"))

            await wait_for_async(resolve_delivered, timeout=15, what="the resolve notification")
            assert len(notices(sink, TASK_ERROR, task_id, "firing")) == 1

    async def test_the_stale_alert_fires_when_polls_time_out_and_resolves_on_a_good_poll(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url, alerts_yaml())
        task_id = simulator.add_task(APP, life=RECORDING)
        await register(running, task_id)
        await reach(running, [task_id], Status.IN_PROGRESS)
        task = task_of(running, task_id)
        # Held past the daemon's 2 s request timeout: every poll times out.
        fault = simulator.faults.add(
            Fault(FaultKind.TIMEOUT, hold=5.0, task_ids=frozenset({task_id}))
        )

        async def fired() -> list[AlertRecord] | None:
            return firing(running, TASK_STALE, task_id) or None

        [alert] = await wait_for_async(fired, timeout=20, what="the stale alert")
        task = task_of(running, task_id)  # records are replaced on every change, not edited
        last_success = task.last_success_at
        assert last_success is not None
        assert alert.starts_at - last_success > 3.0  # not before stale.after
        assert "stale after 3s" in alert.annotations["description"]
        assert task.last_error_code == "Transport.Timeout"
        assert task.status is Status.IN_PROGRESS

        simulator.faults.remove(fault)

        async def resolved() -> bool:
            return not firing(running, TASK_STALE, task_id)

        await wait_for_async(resolved, timeout=15, what="the stale alert to resolve")
        task = task_of(running, task_id)
        assert task.last_success_at is not None
        assert task.last_success_at > last_success

    async def test_the_idle_alert_fires_for_a_hung_task_and_resolves_when_it_leaves_idle(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url, alerts_yaml())
        task_id = simulator.add_task(APP, life=Life(idle=0.2, hang_idle=True, exited=30))
        await register(running, task_id, labels={"room": "r-7"})
        await reach(running, [task_id], Status.IDLE)
        task = task_of(running, task_id)

        async def fired() -> list[AlertRecord] | None:
            return firing(running, TASK_IDLE, task_id) or None

        [alert] = await wait_for_async(fired, timeout=15, what="the idle alert")
        assert alert.starts_at - task.status_since > 2.0  # not before idle.after
        assert alert.labels["room"] == "r-7"
        assert alert.labels["severity"] == "warning"

        assert simulator.exit_task(APP, task_id, leave_code=3)

        async def moved_on() -> bool:
            return not firing(running, TASK_IDLE, task_id) and bool(
                firing(running, TASK_EXITED, task_id)
            )

        await wait_for_async(moved_on, timeout=15, what="idle resolved, exit firing")
        assert task_of(running, task_id).status is Status.EXITED


# ------------------------------------------------------------------------------ monitor alerts


class TestMonitorConditions:
    async def test_rejected_credentials_fire_an_account_alert_until_calls_succeed(
        self, simulator: Simulator, make_daemon: DaemonFactory, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        # make_daemon set the right key when the fixture was set up; the factory reads it now.
        monkeypatch.setenv("TEST_SECRET_KEY", WRONG_SECRET_KEY)
        running = await make_daemon(simulator.url, alerts_yaml())
        task_id = simulator.add_task(APP, life=RECORDING)
        await register(running, task_id)

        async def fired() -> list[AlertRecord] | None:
            return firing(running, MONITOR_AUTH_FAILURE) or None

        [alert] = await wait_for_async(fired, timeout=20, what="the auth alert")
        assert alert.labels == {
            "alertname": MONITOR_AUTH_FAILURE,
            "severity": "critical",
            "account": "default",
        }
        assert alert.task is None
        assert "account default" in alert.annotations["summary"]
        assert task_of(running, task_id).status is Status.PENDING  # never observed
        shown = json.dumps(await api_alerts(running)) + await scrape(running.session, running.url)
        assert WRONG_SECRET_KEY not in shown
        assert WRONG_SECRET_KEY not in repr(running.daemon.alerts.firing())

        # The account's key is changed to the one the daemon holds: calls succeed again, and
        # the next sweep (run here rather than waited for) resolves the alert.
        simulator.credentials[DEFAULT_SECRET_ID] = WRONG_SECRET_KEY
        await reach(running, [task_id], Status.IN_PROGRESS)
        await running.daemon.sweep_alerts()
        assert firing(running, MONITOR_AUTH_FAILURE) == []

    async def test_intervals_needing_more_than_the_budget_fire_over_budget_until_they_fit(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        running = await make_daemon(simulator.url, alerts_yaml())
        ids = [simulator.add_task(APP, life=RECORDING) for _ in range(30)]
        for task_id in ids:
            await register(running, task_id)

        async def fired() -> list[AlertRecord] | None:
            return firing(running, MONITOR_OVER_BUDGET) or None

        # 30 tasks every second against 20 requests/s less the 2% guard.
        [alert] = await wait_for_async(fired, timeout=20, what="the over-budget alert")
        assert alert.labels == {
            "alertname": MONITOR_OVER_BUDGET,
            "severity": "warning",
            "account": "default",
        }
        needs = re.search(r"needs ([0-9.]+) req/s", alert.annotations["summary"])
        assert needs is not None
        assert float(needs[1]) > 19.6
        assert "(19.6 req/s)" in alert.annotations["summary"]
        required = samples(
            await scrape(running.session, running.url), "trtc_monitor_poll_required_rate"
        )
        assert required[(("account", "default"),)] == 30.0

        # Half of them deregistered: 15 requests/s fit. The next sweep (run here rather than
        # waited for) resolves the alert.
        for task_id in ids[:15]:
            await delete_task(running, task_id)
        await running.daemon.sweep_alerts()
        assert firing(running, MONITOR_OVER_BUDGET) == []


# ------------------------------------------------------------------------------ robustness


class TestRobustness:
    async def test_a_storm_of_transient_faults_changes_no_status_and_raises_no_exit_alert(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        async with serving(Sink()) as sink:
            running = await make_daemon(simulator.url, alerts_yaml(webhook(sink.url)))
            ids = [simulator.add_task(APP, life=RECORDING) for _ in range(10)]
            for task_id in ids:
                await register(running, task_id)
            await reach(running, ids, Status.IN_PROGRESS)
            history = {t: await running.daemon.tracker.transitions(TaskKey(APP, t)) for t in ids}

            # The first rule that fires decides a request, so the later ones get higher odds:
            # each kind answers about 15% of the polls and a quarter still succeed.
            storm = [
                Fault(FaultKind.INTERNAL_ERROR, probability=0.15),
                Fault(FaultKind.TIMEOUT, probability=0.18, hold=3.0),
                Fault(FaultKind.DROP, probability=0.21),
                Fault(FaultKind.HTTP_ERROR, probability=0.27, status=502),
                Fault(FaultKind.MALFORMED, probability=0.375, body="no_response"),
            ]
            rules = [simulator.faults.add(f) for f in storm]

            async def every_kind_hit_often() -> bool:
                fired = simulator.faults.fired
                return all(fired.get(f.kind.value, 0) >= 2 for f in storm)

            await wait_for_async(every_kind_hit_often, timeout=30, what="the storm")
            for rule in rules:
                simulator.faults.remove(rule)

            async def all_healthy() -> bool:
                return all(task_of(running, t).consecutive_errors == 0 for t in ids)

            await wait_for_async(all_healthy, timeout=15, what="recovery after the storm")
            await running.daemon.sweep_alerts()
            await running.daemon.alerts.drain()

            for task_id in ids:
                assert task_of(running, task_id).status is Status.IN_PROGRESS
                assert (
                    await running.daemon.tracker.transitions(TaskKey(APP, task_id))
                    == history[task_id]
                )
            assert firing(running, TASK_EXITED) == []
            assert notices(sink, TASK_EXITED) == []
            # The storm was felt: the health alerts did their job meanwhile.
            assert notices(sink, TASK_ERROR, status="firing")

    async def test_unreachable_receivers_do_not_hold_up_polling_and_are_counted_as_failures(
        self, simulator: Simulator, make_daemon: DaemonFactory
    ) -> None:
        closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
        hung = Sink(hold=asyncio.Event())  # accepts, never answers
        async with serving(hung):
            receivers = [
                {"type": "alertmanager", "name": "am-down", "urls": [closed]},
                webhook(f"{closed}/hook", name="hook-down"),
                webhook(hung.url, name="hook-hung", timeout="60s"),
            ]
            running = await make_daemon(simulator.url, alerts_yaml(*receivers))
            steady = simulator.add_task(APP, life=RECORDING)
            leaving = simulator.add_task(APP, life=Life(idle=0.2, in_progress=0.5, exited=30))
            await register(running, steady)
            await register(running, leaving)

            async def failing() -> bool:
                return (
                    await notification_count(running, "am-down", "failure") >= 1
                    and await notification_count(running, "hook-down", "failure") >= 1
                    and bool(hung.requests)
                )

            await wait_for_async(failing, timeout=20, what="failed deliveries")
            [alert] = firing(running, TASK_EXITED, leaving)
            hung_worker = running.daemon.alerts.receivers["hook-hung"]
            assert alert.fingerprint in hung_worker.pending

            # While one delivery hangs and the others fail and retry, polling goes on.
            await polled_more(simulator, steady, 4, timeout=10)
            assert alert.fingerprint in hung_worker.pending
            assert len(hung.requests) == 1
            for name in ("am-down", "hook-down"):
                assert await notification_count(running, name, "failure") >= 2, name  # retried
                assert await notification_count(running, name, "success") == 0, name
            assert task_of(running, steady).consecutive_errors == 0
            assert [r.fingerprint for r in firing(running, TASK_EXITED)] == [alert.fingerprint]


# ------------------------------------------------------------------------------ restart


def sent_to(db: Path, task_id: str) -> dict[str, float]:
    """The stored ``last_sent_at`` of the task's exit alert: receiver -> time."""
    with sqlite3.connect(db) as conn:
        rows = list(
            conn.execute(
                "SELECT last_sent_at FROM alerts WHERE alertname = ? AND task_id = ?",
                (TASK_EXITED, task_id),
            )
        )
    if not rows:
        return {}
    sent: dict[str, float] = json.loads(rows[0][0])
    return sent


class TestRestart:
    async def test_after_kill_9_a_delivered_alert_is_not_sent_again_before_its_resend(
        self, simulator: Simulator, tmp_path: Path
    ) -> None:
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        log = tmp_path / "daemon.log"
        task_id = simulator.add_task(APP, life=Life(idle=0.5, in_progress=1.0, exited=60))
        async with serving(Sink()) as sink, aiohttp.ClientSession() as session:
            extra = alerts_yaml(webhook(sink.url, resend="30s"))
            config = write_config(tmp_path, simulator.url, port, extra)

            def fired() -> list[dict[str, Any]]:
                return notices(sink, TASK_EXITED, task_id, "firing")

            with daemon_process(config, log) as first:
                await until_ready(session, base, first)
                async with session.post(
                    f"{base}/api/v1/tasks",
                    json={"sdk_app_id": APP, "task_id": task_id, "region": "ap-guangzhou"},
                    headers={"Authorization": f"Bearer {API_TOKEN}"},
                ) as r:
                    assert r.status == 201

                async def delivered_and_recorded() -> bool:
                    return bool(fired()) and "hook" in await asyncio.to_thread(
                        sent_to, tmp_path / "monitor.db", task_id
                    )

                await wait_for_async(delivered_and_recorded, timeout=20, what="the delivery")
                first.send_signal(signal.SIGKILL)
                await asyncio.to_thread(first.wait)
            assert len(fired()) == 1

            with daemon_process(config, log) as second:
                await until_ready(session, base, second)
                gauge = samples(await scrape(session, base), "trtc_monitor_alerts_firing")
                assert gauge[(("alertname", TASK_EXITED),)] == 1.0
                listed = await get_json(session, f"{base}/api/v1/alerts")
                assert [a["labels"]["task_id"] for a in listed["alerts"]] == [task_id]
                # Six polls of the task since the restart: past the first periodic sweep (5 s),
                # well within the 30 s resend.
                await polled_more(simulator, task_id, 6, timeout=20)
                assert len(fired()) == 1
                gauge = samples(await scrape(session, base), "trtc_monitor_alerts_firing")
                assert gauge[(("alertname", TASK_EXITED),)] == 1.0
                second.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(second.wait, 10) == 0
        assert len(fired()) == 1
