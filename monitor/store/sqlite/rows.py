"""The SQLite store's statements and rows: the codec's values, dicts and lists as JSON text.

Every statement is spelt here (the task statements from the codec's field names), and every
row is built and read here, so the store itself only runs them.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from typing import Any, Final, TypeVar

from monitor.models import Task, Transition
from monitor.slices import Slices
from monitor.store.base import AlertRecord
from monitor.store.codec import (
    HEALTH_FIELDS,
    STATE_FIELDS,
    TASK_FIELDS,
    TRANSITION_FIELDS,
    alert_of,
    alert_values,
    answer_text,
    decoded,
    dumps,
    health_values,
    loads_dict,
    state_values,
    transition_of,
    transition_values,
)

T = TypeVar("T")

STORE: Final = "sqlite"
# Rows converted on the event loop between two yields: small enough to keep each step to a
# few milliseconds, large enough that yielding costs nothing measurable.
_CHUNK: Final = 500

# Task statements name their columns in the codec's order (the table's own column order is
# the schema's): a row is the codec's state values followed by its health values. Assembled
# from the codec's field names only (constants, never input): hence the noqa S608 below.
_TASK_COLUMNS: Final = ", ".join(TASK_FIELDS)
_TASK_UPDATES: Final = ", ".join(f"{name} = excluded.{name}" for name in TASK_FIELDS[2:])
UPSERT_TASK: Final = (
    f"INSERT INTO tasks ({_TASK_COLUMNS}) VALUES ({', '.join('?' * len(TASK_FIELDS))}) "  # noqa: S608
    f"ON CONFLICT (sdk_app_id, task_id) DO UPDATE SET {_TASK_UPDATES}"
)
UPDATE_HEALTH: Final = (
    "UPDATE tasks SET "  # noqa: S608
    + ", ".join(f"{name} = ?" for name in HEALTH_FIELDS)
    + " WHERE sdk_app_id = ? AND task_id = ?"
)
SELECT_TASKS: Final = f"SELECT {_TASK_COLUMNS} FROM tasks ORDER BY sdk_app_id, task_id"  # noqa: S608
SELECT_TASK: Final = f"SELECT {_TASK_COLUMNS} FROM tasks WHERE sdk_app_id = ? AND task_id = ?"  # noqa: S608

DELETE_TASK_ALERTS: Final = "DELETE FROM alerts WHERE sdk_app_id = ? AND task_id = ?"
# Transitions go with their task by ON DELETE CASCADE.
DELETE_TASK: Final = "DELETE FROM tasks WHERE sdk_app_id = ? AND task_id = ?"

# Purgeable: in a final status and ended before the cutoff. Both, because a task that ended and
# was registered again is live even if a stale ended_at were left behind.
SELECT_PURGEABLE: Final = """
    SELECT sdk_app_id, task_id FROM tasks
    WHERE ended_at < ? AND status IN ('Ended', 'Expired', 'Removed')
    ORDER BY sdk_app_id, task_id
"""
DELETE_PURGEABLE_ALERTS: Final = """
    DELETE FROM alerts WHERE task_id IS NOT NULL AND EXISTS (
        SELECT 1 FROM tasks
        WHERE tasks.sdk_app_id = alerts.sdk_app_id AND tasks.task_id = alerts.task_id
            AND tasks.ended_at < ? AND tasks.status IN ('Ended', 'Expired', 'Removed')
    )
"""
DELETE_PURGEABLE: Final = """
    DELETE FROM tasks WHERE ended_at < ? AND status IN ('Ended', 'Expired', 'Removed')
"""

INSERT_TRANSITION: Final = """
    INSERT INTO transitions
        (sdk_app_id, task_id, from_status, to_status, at, source, request_id, detail)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""
# LIMIT -1 is SQLite for "no limit".
SELECT_TASK_TRANSITIONS_NEWEST: Final = """
    SELECT seq, sdk_app_id, task_id, from_status, to_status, at, source, request_id, detail
    FROM transitions WHERE sdk_app_id = ? AND task_id = ? ORDER BY seq DESC LIMIT ?
"""
SELECT_TASK_TRANSITIONS_OLDEST: Final = """
    SELECT seq, sdk_app_id, task_id, from_status, to_status, at, source, request_id, detail
    FROM transitions WHERE sdk_app_id = ? AND task_id = ? ORDER BY seq ASC LIMIT ?
"""
SELECT_RECENT_TRANSITIONS: Final = """
    SELECT seq, sdk_app_id, task_id, from_status, to_status, at, source, request_id, detail
    FROM transitions ORDER BY seq DESC LIMIT ?
"""

UPSERT_ALERT: Final = """
    INSERT OR REPLACE INTO alerts (
        fingerprint, alertname, sdk_app_id, task_id, labels, annotations, state, starts_at,
        ends_at, last_sent_at, resolved_sent
    ) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
"""
SELECT_ALERTS: Final = """
    SELECT
        fingerprint, alertname, sdk_app_id, task_id, labels, annotations, state, starts_at,
        ends_at, last_sent_at, resolved_sent
    FROM alerts ORDER BY fingerprint
"""
DELETE_ALERT: Final = "DELETE FROM alerts WHERE fingerprint = ?"


def _text_or_empty(value: dict[str, Any]) -> str:
    return dumps(value) if value else "{}"


def task_row(task: Task) -> list[Any]:
    row = state_values(task)
    row[_LABELS] = _text_or_empty(row[_LABELS])
    row[_EXTRA] = _text_or_empty(row[_EXTRA])
    if row[_UPLOAD] is not None:
        row[_UPLOAD] = dumps(row[_UPLOAD])
    row.extend(health_values(task, answer_text))
    return row


def health_row(task: Task) -> list[Any]:
    row = health_values(task, answer_text)
    row.append(task.sdk_app_id)
    row.append(task.task_id)
    return row


_LABELS: Final = STATE_FIELDS.index("labels")
_EXTRA: Final = STATE_FIELDS.index("extra")
_UPLOAD: Final = STATE_FIELDS.index("upload")
_DETAIL: Final = TRANSITION_FIELDS.index("detail")


def row_name(row: Any) -> str:
    return f"{row[0]}/{row[1]}"


def transition_row(t: Transition) -> list[Any]:
    row = transition_values(t)
    row[_DETAIL] = dumps(row[_DETAIL])
    return row


def transition_from_row(row: tuple[Any, ...]) -> Transition | None:
    def decode() -> Transition:
        values = list(row[1:])
        values[_DETAIL] = loads_dict(values[_DETAIL])
        return transition_of(row[0], values, STORE)

    return decoded(decode, STORE, f"transition #{row[0]}")


def alert_row(r: AlertRecord) -> tuple[Any, ...]:
    (alertname, labels, annotations, state, starts_at, ends_at, task, last_sent_at, resolved) = (
        alert_values(r)
    )
    return (
        r.fingerprint,
        alertname,
        None if task is None else task[0],
        None if task is None else task[1],
        dumps(labels),
        dumps(annotations),
        state,
        starts_at,
        ends_at,
        dumps(last_sent_at),
        dumps(resolved),
    )


def alert_from_row(row: tuple[Any, ...]) -> AlertRecord | None:
    def decode() -> AlertRecord:
        (fingerprint, alertname, app, task_id, labels, annotations, state, starts, ends) = row[:9]
        values = (
            alertname,
            loads_dict(labels),
            loads_dict(annotations),
            state,
            starts,
            ends,
            None if task_id is None else (app, task_id),
            loads_dict(row[9]),
            json.loads(row[10]),
        )
        return alert_of(fingerprint, values, STORE)

    return decoded(decode, STORE, f"alert {row[0]}")


async def converted(items: Sequence[T], convert: Callable[[T], Sequence[Any]]) -> list[Any]:
    """Convert on the event loop in slices of a few milliseconds, so a large batch never
    stalls it."""
    rows: list[Any] = []
    slices = Slices(most=_CHUNK)
    for item in items:
        if slices.due():
            await slices.pause()
        rows.append(convert(item))
    return rows
