"""Factories and the backend description the store suite shares."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis

from monitor.models import Kind, Source, Status, Task, TaskKey, Transition, storage_file_summary
from monitor.store import AlertRecord, Store
from monitor.uploads import NO_UPLOAD, FileKind, UploadEvent, UploadFile, apply_upload_event

APP = 1400000001


def make_task(
    task_id: str = "t-1",
    status: Status = Status.PENDING,
    at: float = 1000.0,
    sdk_app_id: int = APP,
    **fields: Any,
) -> Task:
    return Task(
        sdk_app_id=sdk_app_id,
        task_id=task_id,
        region="ap-guangzhou",
        account="default",
        registered_at=at,
        status=status,
        status_since=at,
        **fields,
    )


def move(
    task: Task,
    to: Status,
    at: float,
    source: Source = Source.POLL,
    request_id: str | None = None,
    **detail: Any,
) -> Transition:
    """What the tracker does: change the task's status and describe the change."""
    transition = Transition(
        sdk_app_id=task.sdk_app_id,
        task_id=task.task_id,
        from_status=task.status,
        to_status=to,
        at=at,
        source=source,
        request_id=request_id,
        detail=dict(detail),
    )
    task.status = to
    task.status_since = at
    task.ended_at = at if task.final else None
    return transition


def full_task() -> Task:
    """A task whose every field differs from its default, with unicode and nested JSON."""
    return Task(
        sdk_app_id=APP,
        task_id="任务-42 ✓",
        region="ap-singapore",
        account="账号-b",
        labels={"room": "房间-42", "customer": "acme", "empty": "", "emoji": "🎥"},
        interval=7.5,
        registered_at=1_700_000_000.125,
        source=Source.CALLBACK,
        status=Status.ENDED,
        status_since=1_700_000_100.5,
        consecutive_errors=2,
        last_error_code="InternalError",
        last_error_at=1_700_000_090.0,
        last_success_at=1_700_000_080.0,
        last_request_id="6b0b1c4e-请求",
        storage_files=1,
        answer_status=Status.EXITED,
        answer_request_id="6b0b1c4e-请求",
        answer_files=storage_file_summary(
            [{"FileName": "a.m3u8", "TrackType": "audio_video", "UserId": "用户"}]
        )[1],
        extra={"leave_code": 2, "files": ["x.mp4"], "vod": {"FileId": "5285890781763144364"}},
        ended_at=1_700_000_100.5,
        observed_at=1_700_000_100.25,
        recorder_key="relay_42-a",
        answer_recorder_key="relay_42-b",
        kind=Kind.WEB,
        upload=apply_upload_event(
            NO_UPLOAD,
            UploadEvent(
                308,
                code="InvalidParameter",
                message="密钥 invalid",
                files=(UploadFile(FileKind.COS, "文件.m3u8", begin_ms=1),),
                at=1_700_000_050.25,
            ),
            1_700_000_051.0,
        ).state,
    )


def alert(
    fingerprint: str, task: TaskKey | None = None, state: str = "firing", **fields: Any
) -> AlertRecord:
    return AlertRecord(
        fingerprint=fingerprint,
        alertname="RecordingTaskExited" if task else "RecordingMonitorThrottled",
        labels={"alertname": "RecordingTaskExited", "severity": "critical", "room": "房间"},
        annotations={"summary": "task exited", "description": "InProgress -> Exited"},
        state="firing" if state == "firing" else "resolved",
        starts_at=1000.0,
        task=task,
        **fields,
    )


KEY_PREFIX = "test-store:"


@dataclass(frozen=True)
class Backend:
    """One backend under test: ``make`` builds a new, closed store over the same data."""

    name: str
    make: Callable[[], Store]
    location: str  # what the store's error messages name
    schema_version: str
    # The argument the crash-test writer takes to build the same store.
    target: str


RedisSync = Callable[[Backend], redis.Redis]


async def reopened(backend: Backend) -> Store:
    s = backend.make()
    await s.open()
    return s
