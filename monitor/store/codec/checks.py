"""Stored records checked as they are read, so that no record can break a read.

A store may hold what the daemon would never write today: a time out of any date's range
(written by a version that let a callback's far-future time in, or by hand), a value of the
wrong type, text that is not JSON. Every reader of a task (the API, the page, metrics, the
alert sweep) formats its times as dates, so one such value used to answer 500 on every page
that held the task, and make the sweep raise. Both stores pass what they decode through here:
a time that cannot be a date becomes unknown (None; 0.0 where the field is required, which
every reader shows as unknown too), a record that cannot be decoded at all is left out of the
read. Each repair is logged once per record and field, not on every read.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import structlog

from monitor.models import MAX_WALL_TIME, MIN_WALL_TIME, Task, Transition, wall_time
from monitor.store.base import AlertRecord
from monitor.uploads import NO_UPLOAD, UploadState

__all__ = [
    "checked_alert",
    "checked_task",
    "checked_transition",
    "checked_upload_json",
    "decoded",
    "decoded_upload",
    "note_repair",
]

log = structlog.get_logger("monitor.store")

T = TypeVar("T")

_LO: Final = MIN_WALL_TIME
_HI: Final = MAX_WALL_TIME
# Records whose repair was logged: bounded, so a store full of bad records cannot grow it.
_MAX_NOTED: Final = 10_000
_noted: set[tuple[str, str, str]] = set()

_UPLOAD_TIMES: Final = (
    "started_at",
    "stopped_at",
    "finished_at",
    "cos_finished_at",
    "vod_stopped_at",
)


def note_repair(store: str, record: str, field: str, value: object) -> None:
    """Log, once per (store, record, field), that a stored value was unreadable."""
    key = (store, record, field)
    if key in _noted:
        return
    if len(_noted) >= _MAX_NOTED:
        _noted.clear()
    _noted.add(key)
    shown = repr(value)
    log.warning(
        "store_record_unreadable",
        store=store,
        record=record,
        field=field,
        value=shown if len(shown) <= 80 else shown[:77] + "...",
        shown_as="null",
    )


def _ok(value: object) -> bool:
    return wall_time(value) is not None


def _upload_ok(state: UploadState) -> bool:
    return all(
        getattr(state, name) is None or _ok(getattr(state, name)) for name in _UPLOAD_TIMES
    ) and all(_ok(f.at) for f in state.failures)


def checked_upload_json(data: object, store: str, record: str) -> dict[str, Any] | None:
    """A stored upload state's JSON with every time a date can show (the others None)."""
    if not isinstance(data, Mapping):
        if data is not None:
            note_repair(store, record, "upload", data)
        return None
    out = dict(data)
    for name in _UPLOAD_TIMES:
        value = out.get(name)
        if value is not None and not _ok(value):
            note_repair(store, record, f"upload.{name}", value)
            out[name] = None
    failures = out.get("failures")
    if failures is not None:
        kept = []
        for failure in failures if isinstance(failures, list) else ():
            if isinstance(failure, Mapping) and not _ok(failure.get("at")):
                note_repair(store, record, "upload.failures.at", failure.get("at"))
                failure = {**failure, "at": 0.0}
            kept.append(failure)
        out["failures"] = kept
    return out


def checked_task(task: Task, store: str) -> Task:
    """``task`` with every time a date can show: an unreadable one becomes unknown."""
    try:
        if (
            _LO <= task.registered_at <= _HI
            and _LO <= task.status_since <= _HI
            and (task.last_error_at is None or _LO <= task.last_error_at <= _HI)
            and (task.last_success_at is None or _LO <= task.last_success_at <= _HI)
            and (task.ended_at is None or _LO <= task.ended_at <= _HI)
            and (task.upload is NO_UPLOAD or _upload_ok(task.upload))
        ):
            return task
    except TypeError:
        pass
    record = str(task.key)
    for name in ("registered_at", "status_since"):
        value = getattr(task, name)
        if not _ok(value):
            note_repair(store, record, name, value)
            setattr(task, name, 0.0)
    for name in ("last_error_at", "last_success_at", "ended_at"):
        value = getattr(task, name)
        if value is not None and not _ok(value):
            note_repair(store, record, name, value)
            setattr(task, name, None)
    if task.upload is not NO_UPLOAD and not _upload_ok(task.upload):
        task.upload = UploadState.from_json(
            checked_upload_json(task.upload.to_json(), store, record)
        )
    return task


def checked_transition(transition: Transition, store: str) -> Transition:
    at = transition.at
    if _ok(at):
        return transition
    note_repair(store, f"{transition.key} #{transition.seq}", "at", at)
    return dataclasses.replace(transition, at=0.0)


def checked_alert(record: AlertRecord, store: str) -> AlertRecord:
    starts, ends = record.starts_at, record.ends_at
    sent = record.last_sent_at
    if (
        _ok(starts)
        and (ends is None or _ok(ends))
        and isinstance(sent, dict)
        and all(_ok(v) for v in sent.values())
    ):
        return record
    name = f"alert {record.fingerprint}"
    if not _ok(starts):
        note_repair(store, name, "starts_at", starts)
        starts = 0.0
    if ends is not None and not _ok(ends):
        note_repair(store, name, "ends_at", ends)
        ends = None
    clean_sent: dict[str, float] = {}
    for receiver, at in sent.items() if isinstance(sent, dict) else ():
        if _ok(at):
            clean_sent[receiver] = at
        else:
            note_repair(store, name, "last_sent_at", at)
    return dataclasses.replace(record, starts_at=starts, ends_at=ends, last_sent_at=clean_sent)


def decoded(decode: Callable[[], T], store: str, record: str) -> T | None:
    """``decode()``, or None (logged once) when the stored record cannot be decoded at all."""
    try:
        return decode()
    except (ValueError, TypeError, KeyError, IndexError, AttributeError) as exc:
        note_repair(store, record, "record", type(exc).__name__)
        return None


def decoded_upload(data: object, store: str, record: str) -> UploadState:
    """A stored upload state; an unreadable one (or part of one) is left out, logged once."""
    if data is None:
        return NO_UPLOAD
    try:
        return UploadState.from_json(checked_upload_json(data, store, record))
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        note_repair(store, record, "upload", type(exc).__name__)
        return NO_UPLOAD
