"""Transitions and alert records: each one's stored fields, spelt once for both stores.

A transition is stored as ``transition_values`` (in that order) plus its ``seq``, which the
store hands out; an alert record as its fingerprint plus ``alert_values``. SQLite keeps the
values in columns (the dicts and lists as JSON text, the alert's task as two columns), Redis as
one JSON list; both read back through ``transition_of`` and ``alert_of``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Final

from monitor.models import Task, TaskKey, Transition
from monitor.store.base import AlertRecord
from monitor.store.codec.checks import checked_alert, checked_transition
from monitor.store.codec.values import ALERT_STATES, SOURCES, STATUSES

__all__ = [
    "ALERT_FIELDS",
    "TRANSITION_FIELDS",
    "alert_of",
    "alert_values",
    "check_transition",
    "transition_of",
    "transition_values",
]

TRANSITION_FIELDS: Final = (
    "sdk_app_id",
    "task_id",
    "from_status",
    "to_status",
    "at",
    "source",
    "request_id",
    "detail",
)

# ``task`` is ``[sdk_app_id, task_id]`` or None.
ALERT_FIELDS: Final = (
    "alertname",
    "labels",
    "annotations",
    "state",
    "starts_at",
    "ends_at",
    "task",
    "last_sent_at",
    "resolved_sent",
)


def check_transition(task: Task, transition: Transition) -> None:
    """Raise ValueError unless ``transition`` can be recorded with ``task`` (the contract)."""
    if transition.key != task.key:
        raise ValueError(f"transition of {transition.key} recorded with task {task.key}")
    if transition.to_status is not task.status:
        raise ValueError(
            f"task {task.key} is {task.status}, not {transition.to_status}: set the new "
            "status on the task before recording the transition"
        )
    if transition.seq is not None:
        raise ValueError(f"transition {transition.seq} of {task.key} is already recorded")


def transition_values(t: Transition) -> list[Any]:
    """The stored fields of a transition, in ``TRANSITION_FIELDS`` order."""
    return [
        t.sdk_app_id,
        t.task_id,
        t.from_status.value,
        t.to_status.value,
        t.at,
        t.source.value,
        t.request_id,
        t.detail,
    ]


def transition_of(seq: int, values: Sequence[Any], store: str) -> Transition:
    """The transition ``transition_values`` stored (its time checked); raises if unreadable."""
    sdk_app_id, task_id, from_status, to_status, at, source, request_id, detail = values
    return checked_transition(
        Transition(
            sdk_app_id=sdk_app_id,
            task_id=task_id,
            from_status=STATUSES[from_status],
            to_status=STATUSES[to_status],
            at=at,
            source=SOURCES[source],
            request_id=request_id,
            detail=detail,
            seq=seq,
        ),
        store,
    )


def alert_values(r: AlertRecord) -> list[Any]:
    """The stored fields of an alert record, in ``ALERT_FIELDS`` order."""
    return [
        r.alertname,
        r.labels,
        r.annotations,
        r.state,
        r.starts_at,
        r.ends_at,
        None if r.task is None else [r.task.sdk_app_id, r.task.task_id],
        r.last_sent_at,
        sorted(r.resolved_sent),
    ]


def alert_of(fingerprint: str, values: Sequence[Any], store: str) -> AlertRecord:
    """The record ``alert_values`` stored (its times checked); raises if unreadable."""
    (
        alertname,
        labels,
        annotations,
        state,
        starts_at,
        ends_at,
        task,
        last_sent_at,
        resolved_sent,
    ) = values
    return checked_alert(
        AlertRecord(
            fingerprint=fingerprint,
            alertname=alertname,
            labels=labels,
            annotations=annotations,
            state=ALERT_STATES[state],
            starts_at=starts_at,
            ends_at=ends_at,
            task=None if task is None else TaskKey(task[0], task[1]),
            last_sent_at=last_sent_at,
            resolved_sent=set(resolved_sent),
        ),
        store,
    )
