"""The demo's two upload stories and how it narrates upload changes."""

from __future__ import annotations

import io

from monitor.config import load_config
from monitor.demo import Narrator, stories
from monitor.models import Task
from monitor.simulator.lifecycle import UploadFault
from monitor.uploads import NO_UPLOAD, UploadEvent, apply_upload_event
from tests.config_support import DEMO


def test_the_demo_has_a_failing_vod_upload_and_one_that_never_finishes() -> None:
    by_room = {story.room: story for story in stories()}
    fails = by_room["vod-fails"]
    assert fails.vod
    assert fails.upload is not None
    assert fails.upload.fault is UploadFault.VOD_COMMIT_ERROR
    stuck = by_room["upload-stuck"]
    assert not stuck.vod
    assert stuck.upload is not None
    assert stuck.upload.finish is False
    assert "RecordingUploadFailed" in fails.shows
    assert "RecordingUploadOverdue" in stuck.shows


def test_the_demo_config_has_a_deadline_that_shows_within_a_minute() -> None:
    deadline = load_config(DEMO).alerts.upload.deadline
    stuck = {story.room: story for story in stories()}["upload-stuck"]
    stop = stuck.life.idle + (stuck.life.in_progress or 0)
    assert stop + deadline < 60


def test_the_narrator_prints_one_line_per_upload_change_naming_the_failure() -> None:
    out = io.StringIO()
    narrator = Narrator(out, started=0.0)
    task = Task(sdk_app_id=1, task_id="t", region="ap-guangzhou", account="demo")
    task.labels["room"] = "vod-fails"
    narrator.on_upload(task)  # none: nothing to say
    task.upload = apply_upload_event(NO_UPLOAD, UploadEvent(311, 2, message="quota"), 1.0).state
    narrator.on_upload(task)
    narrator.on_upload(task)  # unchanged: said once
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert "vod-fails" in lines[0]
    assert "none -> failed" in lines[0]
    assert "event 311 (VOD commit), code Status 2" in lines[0]
