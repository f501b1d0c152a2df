"""What a verified, new recording callback does to the monitor (docs/callbacks.md).

301 registers the task (with ``auto_register``), 302 records an exit at once, confirmed by the
next poll; 310/311/312 leave the files they report on the task; the rest are logged. Every
change goes through the tracker, so it is stored before it is applied or alerted on; the pure
helpers here only say what the change is.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol

import structlog

from monitor.callbacks.parse import (
    MAX_FILES,
    MP4_FINISHED,
    RECORDER_STARTED,
    RECORDER_STOPPED,
    VOD_COMMITTED,
    VOD_FINISHED,
    Callback,
    Kind,
)
from monitor.callbacks.web import WebEffect, web_effect
from monitor.models import Kind as ModelKind
from monitor.models import Source, Task, TaskKey, Transition
from monitor.taskspec import MAX_LABEL_VALUE, TaskSpec
from monitor.uploads import UploadChange, UploadEvent

__all__ = [
    "CallbackSettings",
    "CallbackTarget",
    "apply_callback",
    "event_time",
    "exit_detail",
    "log_event",
    "task_facts",
    "task_labels",
]

log = structlog.get_logger("monitor.callbacks")

_WARNING_EVENTS = frozenset({308, 309})


class CallbackTarget(Protocol):
    """What callbacks act on: the task table, through the tracker's order of effects."""

    def get(self, key: TaskKey) -> Task | None: ...

    async def register(self, spec: TaskSpec, source: Source) -> tuple[Task, bool]: ...

    async def observe_exit(
        self, key: TaskKey, leave_code: int | None, detail: dict[str, Any], at: float
    ) -> Transition | None: ...

    async def note_facts(self, key: TaskKey, facts: dict[str, Any]) -> bool: ...

    async def observe_upload(self, key: TaskKey, event: UploadEvent) -> UploadChange | None: ...


class CallbackSettings(Protocol):
    """The ``callbacks`` section of the configuration, as far as effects need it."""

    @property
    def auto_register(self) -> bool: ...

    @property
    def account(self) -> str: ...

    @property
    def region(self) -> str: ...


def task_labels(event: Callback) -> dict[str, str]:
    """Labels of a task registered from a callback: its room and its recording user."""
    labels: dict[str, str] = {}
    for name, value in (("room", event.room_id), ("user", event.user_id)):
        if value:
            labels[name] = value[:MAX_LABEL_VALUE]
    return labels


def exit_detail(event: Callback) -> dict[str, Any]:
    """The detail of the Exited transition a 302 records (the tracker adds ``leave_code``)."""
    detail: dict[str, Any] = {"leave_code": event.leave_code}
    if event.event_ts is not None:
        detail["event_ts"] = event.event_ts
    elif event.event_ms_ts is not None:
        detail["event_ts"] = event.event_ms_ts // 1000
    return {k: v for k, v in detail.items() if v is not None}


def _merge(old: object, new: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """``old`` with ``new`` entries added or replaced by ``key``; bounded, oldest dropped."""
    merged: dict[Any, dict[str, Any]] = {}
    if isinstance(old, list):
        for entry in old:
            if isinstance(entry, dict) and isinstance(entry.get(key), str | None):
                merged[entry.get(key)] = entry
    for entry in new:
        merged.pop(entry.get(key), None)  # re-inserted last: the newest are kept
        merged[entry.get(key)] = entry
    return list(merged.values())[-MAX_FILES:]


def task_facts(event: Callback, extra: Mapping[str, Any]) -> dict[str, Any] | None:
    """What a 310/311/312 adds to the task's ``extra`` (merged with what is already there)."""
    if event.event_type == MP4_FINISHED:
        facts: dict[str, Any] = {
            "mp4_files": _merge(extra.get("mp4_files"), list(event.files), "FileName")
        }
        if event.status is not None:
            facts["mp4_status"] = event.status
        return facts
    if event.event_type == VOD_COMMITTED:
        vod = event.vod or {}
        facts = {}
        if "FileId" in vod:
            facts["vod_file_id"] = vod["FileId"]
        if "VideoUrl" in vod:
            facts["vod_video_url"] = vod["VideoUrl"]
        if vod:
            facts["vod_files"] = _merge(extra.get("vod_files"), [vod], "FileId")
        if event.status is not None:
            facts["vod_commit_status"] = event.status
        return facts or None
    if event.event_type == VOD_FINISHED:
        facts = {"vod_finished": True}
        if event.status is not None:
            facts["vod_status"] = event.status
        return facts
    return None


def event_time(event: Callback, now: float) -> float:
    """When the event happened, by TRTC's clock, never later than ``now``: the wall-clock time
    of the observation, for people. It orders nothing: the tracker stamps the callback on its
    monotonic clock as it records it, so neither TRTC's clock nor a step of ours can make a
    poll's answer look newer or older than the callback."""
    if event.event_ms_ts is not None:
        at = event.event_ms_ts / 1000.0
    elif event.event_ts is not None:
        at = float(event.event_ts)
    else:
        return now
    return min(at, now)


async def apply_callback(
    target: CallbackTarget, settings: CallbackSettings, event: Callback, now: float
) -> str:
    """Act on one verified, new recording event; returns what happened, for the log.

    Then every event 301-312 feeds the task's upload state. An upload event of an unknown task
    registers it with ``auto_register`` (its 301 was missed: the files still deserve to be
    followed), and is otherwise ``not_registered``.
    """
    if event.kind is Kind.WEB:
        return await _apply_web(target, settings, event, now)
    key = event.key
    registered = False
    if event.event_type not in (RECORDER_STARTED, RECORDER_STOPPED) and target.get(key) is None:
        if not settings.auto_register:
            return "not_registered"
        # Known tasks, removed ones included, are never registered again here.
        await _register(target, settings, event)
        registered = True
    effect = await _apply_status(target, settings, event, now)
    if event.upload is not None and target.get(key) is not None:
        await target.observe_upload(key, event.upload)
    return f"registered_and_{effect}" if registered else effect


async def _apply_status(
    target: CallbackTarget, settings: CallbackSettings, event: Callback, now: float
) -> str:
    key = event.key
    if event.event_type == RECORDER_STARTED:
        if event.status not in (None, 0):
            return "start_failed"
        if target.get(key) is not None:
            # Known, including removed: a user's removal outranks a late or repeated 301.
            return "already_registered"
        if not settings.auto_register:
            return "not_registered"
        await _register(target, settings, event)
        return "registered"
    if event.event_type == RECORDER_STOPPED:
        registered = False
        if target.get(key) is None and settings.auto_register:
            # The 301 was missed (monitor down, lost delivery): register now so the exit is
            # recorded and alerted on rather than dropped. Known tasks, removed ones included,
            # are never re-registered here.
            await _register(target, settings, event)
            registered = True
        if target.get(key) is None:
            return "not_registered"
        transition = await target.observe_exit(
            key, event.leave_code, exit_detail(event), event_time(event, now)
        )
        if transition is None:
            return "exit_already_known"
        return "registered_and_exit_recorded" if registered else "exit_recorded"
    task = target.get(key)
    facts = task_facts(event, task.extra if task is not None else {})
    if facts is None:
        return "logged"
    if not await target.note_facts(key, facts):
        return "not_registered"
    return "facts_noted"


async def _apply_web(
    target: CallbackTarget, settings: CallbackSettings, event: Callback, now: float
) -> str:
    """A group-8 event, handled like its group-3 counterpart: a start registers the task (as
    ``kind: web``) with ``auto_register``, a stop records the exit at once (and registers a task
    whose start was missed), an upload event feeds the upload state."""
    key = event.key
    effect = web_effect(event)
    registered = False
    if (
        effect in (WebEffect.STARTED, WebEffect.STOPPED, WebEffect.UPLOAD)
        and target.get(key) is None
    ):
        if not settings.auto_register:
            return "not_registered"
        await _register(target, settings, event, ModelKind.WEB)
        registered = True
    if effect is WebEffect.STARTED:
        result = "registered" if registered else "already_registered"
    elif effect is WebEffect.STOPPED:
        transition = await target.observe_exit(
            key, None, exit_detail(event), event_time(event, now)
        )
        result = "exit_recorded" if transition is not None else "exit_already_known"
    elif effect is WebEffect.START_FAILED:
        result = "start_failed"
    elif effect is WebEffect.UPLOAD:
        task = target.get(key)
        facts = task_facts(event, task.extra if task is not None else {})
        result = "facts_noted" if facts and await target.note_facts(key, facts) else "logged"
    else:
        result = "logged"
    if event.upload is not None and target.get(key) is not None:
        await target.observe_upload(key, event.upload)
    if registered and result != "registered":
        return f"registered_and_{result}"
    return result


async def _register(
    target: CallbackTarget,
    settings: CallbackSettings,
    event: Callback,
    kind: ModelKind = ModelKind.CLOUD,
) -> None:
    spec = TaskSpec(
        sdk_app_id=event.sdk_app_id,
        task_id=event.task_id,
        region=settings.region,
        account=settings.account,
        labels=task_labels(event),
        kind=kind,
    )
    await target.register(spec, Source.CALLBACK)


def log_event(event: Callback, effect: str) -> None:
    fields: dict[str, Any] = {
        "event_type": event.event_type,
        "callback": event.name,
        "effect": effect,
        "sdk_app_id": event.sdk_app_id,
        "task_id": event.task_id,
        "room_id": event.room_id,
        "user_id": event.user_id,
        "event_ts": event.event_ts,
        "status": event.status,
        "leave_code": event.leave_code,
        "file_name": event.file_name,
        "files": len(event.files) if event.event_type == MP4_FINISHED else None,
        "vod_file_id": (event.vod or {}).get("FileId"),
    }
    fields = {k: v for k, v in fields.items() if v is not None}
    failed = effect == "start_failed" or event.event_type in _WARNING_EVENTS
    if failed:
        log.warning("recording_callback", **fields)
    else:
        log.info("recording_callback", **fields)
