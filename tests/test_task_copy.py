"""``Task.copy``: the record the tracker changes and puts in place of the old one holds every
field of the old one, and changing the copy leaves the old one as it was."""

from __future__ import annotations

import dataclasses

from monitor.models import Kind, Source, Status, Task, TaskKey
from monitor.uploads import NO_UPLOAD


def every_field_set() -> Task:
    """A record whose every field holds a value of its own, none the default."""
    task = Task(sdk_app_id=1400000001, task_id="t-1", region="ap-beijing", account="acct")
    values = {
        "labels": {"room": "r1"},
        "interval": 7.5,
        "registered_at": 1_700_000_001.0,
        "source": Source.CALLBACK,
        "status": Status.IN_PROGRESS,
        "status_since": 1_700_000_002.0,
        "consecutive_errors": 3,
        "last_error_code": "InternalError",
        "last_error_at": 1_700_000_003.0,
        "last_success_at": 1_700_000_004.0,
        "last_request_id": "req-1",
        "storage_files": 2,
        "answer_status": Status.IN_PROGRESS,
        "answer_request_id": "req-2",
        "answer_files": '[{"FileName":"a.mp4"}]',
        "extra": {"vod": "v1"},
        "upload": dataclasses.replace(NO_UPLOAD, stopped_at=1_700_000_005.0),
        "ended_at": 1_700_000_006.0,
        "observed_at": 1_700_000_007.0,
        "recorder_key": "rk-1",
        "answer_recorder_key": "rk-2",
        "kind": Kind.WEB,
        "seen_mono": 11.0,
        "polled_mono": 12.0,
        "since_mono": 13.0,
        "stopped_mono": 14.0,
        "_key": TaskKey(1400000001, "t-1"),
    }
    for f in dataclasses.fields(Task):
        if f.name in values:
            setattr(task, f.name, values[f.name])
    # A field added to Task later must be given a value above, or this fails.
    names = {f.name for f in dataclasses.fields(Task)}
    assert names - {"sdk_app_id", "task_id", "region", "account"} == set(values)
    return task


class TestCopy:
    def test_every_field_is_the_same_object_in_the_copy(self) -> None:
        task = every_field_set()
        copy = task.copy()
        assert copy is not task
        for f in dataclasses.fields(Task):
            assert getattr(copy, f.name) is getattr(task, f.name), f.name
        assert copy == task
        assert copy == dataclasses.replace(task)

    def test_changing_the_copy_leaves_the_original_as_it_was(self) -> None:
        task = every_field_set()
        copy = task.copy()
        copy.status = Status.EXITED
        copy.consecutive_errors = 0
        copy.seen_mono = 99.0
        assert task.status is Status.IN_PROGRESS
        assert task.consecutive_errors == 3
        assert task.seen_mono == 11.0
        assert copy.key == task.key
