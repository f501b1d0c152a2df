"""What the status page's tests share: tasks, transitions and a ``StatusSource`` in memory."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from monitor.http.status_page import AccountBudget
from monitor.models import REGIONS, Source, Status, Task, TaskKey, Transition
from monitor.store.base import AlertRecord
from monitor.uploads import (
    FileKind,
    UploadFile,
    UploadPhase,
    UploadState,
)

APP = 1400000001
T0 = 1_800_000_000.0
# What a hostile or careless registrant might put in a label or an id.
NASTY = "<script>alert('x')</script>\"quoted\" & 'single' — é漢字🎥"
NASTY_ID = "<img src=x onerror=alert(1)>\"'"


def make_task(task_id: str, status: Status = Status.IN_PROGRESS, **fields: Any) -> Task:
    fields.setdefault("region", "ap-guangzhou")
    fields.setdefault("account", "default")
    fields.setdefault("registered_at", T0)
    fields.setdefault("status_since", T0)
    return Task(sdk_app_id=fields.pop("sdk_app_id", APP), task_id=task_id, status=status, **fields)


def move(task: Task, to: Status, at: float, source: Source = Source.POLL) -> Transition:
    t = Transition(task.sdk_app_id, task.task_id, task.status, to, at, source, f"req-{at}")
    task.status = to
    task.status_since = at
    return t


@dataclass
class FakeSource:
    """A ``StatusSource`` in memory: what a test puts in is what the page must show."""

    table: dict[TaskKey, Task] = field(default_factory=dict)
    history: dict[TaskKey, list[Transition]] = field(default_factory=dict)  # oldest first
    budget_list: list[AccountBudget] = field(default_factory=list)
    alerts: list[AlertRecord] = field(default_factory=list)

    def add(self, task: Task, *transitions: Transition) -> Task:
        self.table[task.key] = task
        self.history.setdefault(task.key, []).extend(transitions)
        return task

    def tasks(self) -> Sequence[Task]:
        return list(self.table.values())

    def task(self, key: TaskKey) -> Task | None:
        return self.table.get(key)

    def budgets(self) -> Sequence[AccountBudget]:
        return list(self.budget_list)

    def firing_alerts(self) -> Sequence[AlertRecord]:
        return list(self.alerts)

    async def recent_transitions(self, limit: int) -> Sequence[Transition]:
        every = [t for ts in self.history.values() for t in ts]
        return sorted(every, key=lambda t: t.at, reverse=True)[:limit]

    async def transitions(self, key: TaskKey, limit: int) -> Sequence[Transition]:
        return list(reversed(self.history.get(key, [])))[:limit]


def nasty_source(now: float = T0 + 600) -> FakeSource:
    """Hostile ids and labels, an over-budget account beside a healthy one, a firing alert."""
    source = FakeSource()
    hostile = make_task(NASTY_ID, labels={"room": NASTY, "team": "a"}, last_error_code="<b>E</b>")
    hostile.upload = UploadState(
        state=UploadPhase.UPLOADING,
        files=(
            UploadFile(FileKind.MP4, name="<i>x</i>.mp4", user_id=NASTY),
            UploadFile(FileKind.VOD, file_id="f1", url="javascript:alert(1)"),
            UploadFile(FileKind.VOD, file_id="f2", url="https://vod.example.invalid/v.mp4"),
        ),
        started_at=T0 + 20,
    )
    hostile.status = Status.PENDING
    t1 = move(hostile, Status.IDLE, T0 + 10)
    t2 = move(hostile, Status.IN_PROGRESS, T0 + 70, Source.CALLBACK)
    t3 = move(hostile, Status.EXITED, T0 + 400, Source.API)
    source.add(hostile, t1, t2, t3)
    for i in range(7):
        source.add(make_task(f"plain-{i}", region=REGIONS[i % 2], labels={"team": "b"}))
    source.budget_list = [
        AccountBudget("default", required=3.0, capacity=19.4, limit=20.0, effective=19.4),
        AccountBudget("busy", required=40.0, capacity=19.4, limit=20.0, effective=12.0),
    ]
    source.alerts = [
        AlertRecord(
            fingerprint="f" * 16,
            alertname="RecordingTaskExited",
            labels={"severity": "critical", "room": NASTY},
            annotations={"summary": f"stopped {NASTY}"},
            state="firing",
            starts_at=now - 30,
            task=hostile.key,
        )
    ]
    return source
