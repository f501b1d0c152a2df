"""Alerts end to end into a real Alertmanager: the daemon polling the simulator on loopback,
an exit reaching Alertmanager and resolving."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from monitor.alerts import TASK_EXITED
from monitor.models import Source, Status, TaskKey
from monitor.simulator import Life, Simulator
from tests.alerts_e2e_support import (
    APP,
    alertmanager_alerts,
    alerts_yaml,
    api_alerts,
    delete_task,
    firing,
    register,
)
from tests.conftest import DaemonFactory
from tests.support import alertmanager, wait_for_async

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
