"""Uploads end to end: the simulator sends each recording's signed callbacks to the daemon,
which alerts a real Alertmanager about a failed VOD upload and one that never finishes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from monitor.models import TaskKey
from monitor.simulator import CallbackSettings, Life, Simulator
from monitor.simulator.callbacks import ALL_EVENTS
from monitor.simulator.lifecycle import UploadFault, UploadPlan
from monitor.uploads import UploadPhase
from tests.conftest import DaemonFactory, daemon_config_text
from tests.support import alertmanager, free_port, http_json, wait_for_async

APP = 1400000001
KEY = "cbKey0123456789abcdef"
# Recording for a second, then gone half a second after it stops; leave code 0 (stopped
# through the API) is an expected stop, so only upload alerts are in play.
LIFE = Life(idle=0.0, in_progress=1.0, exited=0.5, leave_code=0)


async def alertmanager_alerts(base: str) -> list[dict[str, Any]]:
    answer: list[dict[str, Any]] = await asyncio.to_thread(http_json, f"{base}/api/v2/alerts")
    return answer


class TestUploadsEndToEnd:
    async def test_a_failed_and_an_unfinished_upload_reach_alertmanager_and_resolve(
        self, make_daemon: DaemonFactory, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        monkeypatch.setenv("TEST_CALLBACK_KEY", KEY)
        port = free_port()
        callbacks = CallbackSettings(
            url=f"http://127.0.0.1:{port}/callbacks/trtc",
            key=KEY,
            events=ALL_EVENTS,
            retry_interval=0.2,
            retry_for=10.0,
        )
        with alertmanager(tmp_path) as am:
            async with Simulator(seed=3, callback=callbacks) as sim:
                receiver = {"type": "alertmanager", "name": "am", "urls": [am.url]}
                extra = (
                    "callbacks:\n  key_env: TEST_CALLBACK_KEY\n  auto_register: true\n"
                    "alerts: "
                    + json.dumps({"upload": {"deadline": "2s"}, "receivers": [receiver]})
                    + "\n"
                )
                text = daemon_config_text(sim.url, tmp_path / "monitor.db", extra).replace(
                    '"127.0.0.1:0"', f'"127.0.0.1:{port}"'
                )
                running = await make_daemon(text=text)

                sim.add_task(APP, "vod-ok", LIFE, vod=True)
                sim.add_task(
                    APP,
                    "vod-fail",
                    LIFE,
                    vod=True,
                    upload=UploadPlan(
                        fault=UploadFault.VOD_COMMIT_ERROR, error_message="VOD quota exceeded"
                    ),
                )
                sim.add_task(APP, "cos-stuck", LIFE, upload=UploadPlan(finish=False))

                async def shown(name: str, task_id: str) -> dict[str, Any] | None:
                    for alert in await alertmanager_alerts(am.url):
                        labels = alert["labels"]
                        if (labels.get("alertname"), labels.get("task_id")) == (name, task_id):
                            return alert if alert["status"]["state"] == "active" else None
                    return None

                failed = await wait_for_async(
                    lambda: shown("RecordingUploadFailed", "vod-fail"),
                    timeout=30,
                    what="RecordingUploadFailed in Alertmanager",
                )
                assert failed["labels"]["severity"] == "critical"
                text = failed["annotations"]["summary"] + failed["annotations"]["description"]
                assert "event 311 (VOD commit)" in text
                assert "code Status 2" in text
                assert "VOD quota exceeded" in text

                overdue = await wait_for_async(
                    lambda: shown("RecordingUploadOverdue", "cos-stuck"),
                    timeout=30,
                    what="RecordingUploadOverdue in Alertmanager",
                )
                assert "within 2s" in overdue["annotations"]["description"]

                ok = running.daemon.registry.get(TaskKey(APP, "vod-ok"))
                assert ok is not None
                assert ok.upload.state is UploadPhase.DONE
                assert [f.kind.value for f in ok.upload.files] == ["vod"]
                uploads = {
                    a["labels"]["task_id"]
                    for a in await alertmanager_alerts(am.url)
                    if a["labels"]["alertname"].startswith("RecordingUpload")
                }
                assert uploads == {"vod-fail", "cos-stuck"}

                # The stranded files make it after all, and the late "finished" arrives.
                sim.set_upload(
                    APP,
                    "vod-fail",
                    UploadPlan(fault=UploadFault.VOD_COMMIT_ERROR, recover_after=0.0),
                )
                sim.set_upload(APP, "cos-stuck", UploadPlan(finish=True))

                async def both_resolved() -> bool:
                    names = {
                        (a["labels"]["alertname"], a["labels"].get("task_id"))
                        for a in await alertmanager_alerts(am.url)
                    }
                    return not names & {
                        ("RecordingUploadFailed", "vod-fail"),
                        ("RecordingUploadOverdue", "cos-stuck"),
                    }

                await wait_for_async(both_resolved, timeout=30, what="both resolves")
                for task_id in ("vod-fail", "cos-stuck"):
                    task = running.daemon.registry.get(TaskKey(APP, task_id))
                    assert task is not None
                    assert task.upload.state is UploadPhase.DONE
                assert not [
                    r
                    for r in running.daemon.alerts.firing()
                    if r.alertname.startswith("RecordingUp")
                ]
